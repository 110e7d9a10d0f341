'use strict'
// node-redis (the `redis` package) against keel in RESP3 and RESP2: it sends
// HELLO and CLIENT SETINFO on connect, and decodes RESP3 maps, sets and doubles.

const { describe, it, before, after } = require('node:test')
const assert = require('node:assert/strict')
const { createClient } = require('redis')
const { startServer, within, sleep } = require('./server')

let server
const clients = []

async function connect (RESP) {
  const c = createClient({
    socket: { host: server.host, port: server.port, connectTimeout: 5000, reconnectStrategy: false },
    RESP
  })
  c.on('error', () => {})
  clients.push(c)
  await within(5000, c.connect(), 'node-redis connect')
  return c
}

before(async () => { server = await startServer() })
after(async () => {
  for (const c of clients) { try { c.destroy() } catch {} }
  if (server) await server.stop()
})

for (const RESP of [3, 2]) {
  describe(`node-redis RESP${RESP}`, { timeout: 30000 }, () => {
    const t = `{nr${RESP}}`

    it('hashes, sets and sorted sets decode to the right JS types', async () => {
      const c = await connect(RESP)
      await c.del([`${t}h`, `${t}s`, `${t}z`, `${t}l`])
      assert.equal(await c.hSet(`${t}h`, { a: '1', b: 'two' }), 2)
      assert.deepEqual({ ...(await c.hGetAll(`${t}h`)) }, { a: '1', b: 'two' })
      assert.equal(await c.hIncrBy(`${t}h`, 'a', 41), 42)
      assert.equal(await c.hIncrByFloat(`${t}h`, 'a', '0.5'), '42.5')

      assert.equal(await c.sAdd(`${t}s`, ['x', 'y', 'z']), 3)
      assert.deepEqual([...(await c.sMembers(`${t}s`))].sort(), ['x', 'y', 'z'])
      assert.equal(await c.sIsMember(`${t}s`, 'y'), 1)

      assert.equal(await c.zAdd(`${t}z`, [{ score: 1.5, value: 'a' }, { score: 3, value: 'b' }]), 2)
      assert.deepEqual(await c.zRangeWithScores(`${t}z`, 0, -1),
        [{ value: 'a', score: 1.5 }, { value: 'b', score: 3 }])
      const score = await c.zScore(`${t}z`, 'a')
      assert.equal(Number(score), 1.5)
      if (RESP === 3) assert.equal(typeof score, 'number', 'a RESP3 double must decode to a number')
      assert.equal(Number(await c.zIncrBy(`${t}z`, 2, 'a')), 3.5)

      assert.equal(await c.rPush(`${t}l`, ['1', '2', '3']), 3)
      assert.deepEqual(await c.lRange(`${t}l`, 0, -1), ['1', '2', '3'])
      assert.equal(await c.lPop(`${t}l`), '1')
    })

    it('MULTI/EXEC and WATCH', async () => {
      const c = await connect(RESP)
      const other = await connect(RESP)
      const res = await c.multi().hSet(`${t}m`, 'f', 'v').hGet(`${t}m`, 'f').zAdd(`${t}mz`, { score: 2, value: 'm' }).exec()
      assert.deepEqual(res, [1, 'v', 1])

      // a WATCHed key changed by another client aborts the transaction
      await c.set(`${t}w`, '1')
      await c.watch(`${t}w`)
      await other.set(`${t}w`, '2')
      await assert.rejects(c.multi().set(`${t}w`, '3').exec(), /WatchError|watch/i)
      assert.equal(await c.get(`${t}w`), '2')
    })

    it('blocking pop with a timeout', async () => {
      const c = await connect(RESP)
      const p = await connect(RESP)
      const pending = within(5000, c.blPop(`${t}q`, 3), 'BLPOP')
      await sleep(100)
      await p.lPush(`${t}q`, 'job')
      assert.deepEqual({ ...(await pending) }, { key: `${t}q`, element: 'job' })
      assert.equal(await within(5000, c.blPop(`${t}q`, 0.2), 'BLPOP'), null)
    })
  })
}

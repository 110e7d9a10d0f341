'use strict'
// Real-application scenarios with ioredis against keel (--shards 4), or
// through a backup of a three-node cluster (KEEL_TEST_TARGET=backup): a
// leaderboard, a session store, a job queue on BLMOVE and the rate limiter of
// the async-ratelimiter package (1.3.13: MULTI with sorted sets; the latest
// version, which sends a Lua script, is checked too when the server has EVAL).

const { describe, it, before, after } = require('node:test')
const assert = require('node:assert/strict')
const Redis = require('ioredis')
const Limiter = require('async-ratelimiter')
const { startServer, within, sleep } = require('./server')

let server
const clients = []

function client (opts = {}) {
  const c = new Redis({
    host: server.host,
    port: server.port,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null, // never reconnect: a dropped connection fails the test
    connectTimeout: 5000,
    commandTimeout: 10000, // longer than any blocking timeout used below
    enableOfflineQueue: true,
    ...opts
  })
  c.on('error', () => {}) // errors surface as rejected commands
  clients.push(c)
  return c
}

before(async () => {
  server = await startServer()
  await server.flush(client()) // through a backup: also waits until every node is empty
})

after(async () => {
  for (const c of clients) c.disconnect()
  if (server) await server.stop()
})

describe('leaderboard (sorted sets)', { timeout: 30000 }, () => {
  const lb = 'game:{lb1}:scores'

  it('ranks players by score, ties by name', async () => {
    const r = client()
    assert.equal(await r.zadd(lb, 100, 'alice', 80, 'bob', 120, 'carol', 80, 'dave'), 4)
    assert.equal(await r.zadd(lb, 'NX', 1, 'alice'), 0, 'NX must not update an existing member')
    assert.equal(await r.zscore(lb, 'alice'), '100')
    assert.equal(await r.zincrby(lb, 25, 'bob'), '105')
    assert.equal(await r.zincrby(lb, 0.5, 'dave'), '80.5')
    assert.equal(await r.zincrby(lb, -0.25, 'dave'), '80.25')
    assert.equal(await r.zadd(lb, 105, 'erin'), 1)
    assert.equal(await r.zcard(lb), 5)

    assert.deepEqual(await r.zrevrange(lb, 0, 2, 'WITHSCORES'),
      ['carol', '120', 'erin', '105', 'bob', '105'])
    assert.deepEqual(await r.zrange(lb, 0, -1), ['dave', 'alice', 'bob', 'erin', 'carol'])
    assert.equal(await r.zrank(lb, 'dave'), 0)
    assert.equal(await r.zrank(lb, 'erin'), 3)
    assert.equal(await r.zrevrank(lb, 'carol'), 0)
    assert.equal(await r.zrevrank(lb, 'dave'), 4)
    assert.equal(await r.zrank(lb, 'nobody'), null)
    assert.equal(await r.zscore(lb, 'nobody'), null)
    assert.deepEqual(await r.zmscore(lb, 'bob', 'nobody', 'dave'), ['105', null, '80.25'])
    assert.equal(await r.zcount(lb, 100, '+inf'), 4)
    assert.equal(await r.zcount(lb, '(100', 105), 2)
    assert.deepEqual(await r.zrangebyscore(lb, '-inf', '+inf', 'WITHSCORES', 'LIMIT', 1, 2),
      ['alice', '100', 'bob', '105'])
    assert.deepEqual(await r.zrevrangebyscore(lb, 110, 100), ['erin', 'bob', 'alice'])
    assert.deepEqual(await r.zrange(lb, 110, 100, 'BYSCORE', 'REV', 'LIMIT', 0, 1), ['erin'])

    // GT: only raise a score; CH counts changed members
    assert.equal(await r.zadd(lb, 'GT', 'CH', 90, 'alice', 130, 'bob'), 1)
    assert.equal(await r.zscore(lb, 'alice'), '100')
    assert.deepEqual(await r.zrevrange(lb, 0, 0, 'WITHSCORES'), ['bob', '130'])
    assert.equal(await r.zrem(lb, 'bob', 'nobody'), 1)
    assert.deepEqual(await r.zpopmin(lb), ['dave', '80.25'])
    assert.equal(await r.type(lb), 'zset')
    const s = client()
    await s.set('plain-string', 'x')
    await assert.rejects(s.zadd('plain-string', 1, 'm'), /^ReplyError: WRONGTYPE/)
    await assert.rejects(s.zincrby(lb, 'abc', 'm'), /^ReplyError: ERR value is not a valid float/)
  })

  it('takes a pipelined burst of score updates from many players', async () => {
    const r = client()
    const key = 'game:{lb2}:scores'
    const p = r.pipeline()
    const expected = new Map()
    for (let i = 0; i < 300; i++) {
      const player = `p${i % 50}`
      p.zincrby(key, i, player)
      expected.set(player, (expected.get(player) || 0) + i)
    }
    const res = await p.exec()
    assert.ok(res.every(([err]) => err === null), 'a ZINCRBY in the pipeline failed')
    assert.equal(await r.zcard(key), 50)
    const top = [...expected.entries()].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? 1 : -1)).slice(0, 3)
    assert.deepEqual(await r.zrevrange(key, 0, 2, 'WITHSCORES'), top.flatMap(([m, s]) => [m, String(s)]))
  })
})

describe('session store (hashes, expiry)', { timeout: 30000 }, () => {
  it('creates, reads, touches and destroys a session', async () => {
    const r = client()
    const data = 'session:{u42}:data'
    const meta = 'session:{u42}:meta'
    assert.equal(await r.hset(data, { user: 'alice', role: 'admin', cart: JSON.stringify([1, 2]) }), 3)
    assert.equal(await r.hset(meta, 'created', '1700000000', 'hits', '0'), 2)
    assert.equal(await r.expire(data, 1800), 1)
    assert.equal(await r.expire(meta, 1800), 1)
    const ttl = await r.ttl(data)
    assert.ok(ttl > 1790 && ttl <= 1800, `TTL ${ttl}`)
    assert.deepEqual(await r.hgetall(data), { user: 'alice', role: 'admin', cart: '[1,2]' })
    assert.equal(await r.hincrby(meta, 'hits', 1), 1)
    assert.equal(await r.hsetnx(meta, 'created', '1'), 0)
    assert.equal(await r.hget(meta, 'created'), '1700000000')

    // a request touches the session atomically: count the hit, slide the expiry
    const res = await r.multi().hincrby(meta, 'hits', 1).expire(data, 3600).expire(meta, 3600).hget(data, 'user').exec()
    assert.deepEqual(res, [[null, 2], [null, 1], [null, 1], [null, 'alice']])
    assert.ok((await r.ttl(meta)) > 3590)

    assert.equal(await r.hdel(data, 'role'), 1)
    assert.equal(await r.hdel(data, 'role'), 0)
    assert.equal(await r.hexists(data, 'role'), 0)
    assert.equal(await r.hget(data, 'role'), null)
    assert.deepEqual(await r.hmget(data, 'user', 'role'), ['alice', null])
    assert.equal(await r.hlen(data), 2)
    assert.ok((await r.ttl(data)) > 3590, 'HDEL must keep the expiry')

    // logout
    assert.equal(await r.del(data, meta), 2)
    assert.equal(await r.exists(data, meta), 0)
    assert.deepEqual(await r.hgetall(data), {})
    assert.equal(await r.ttl(data), -2)
  })

  it('lets a session expire on its own', async () => {
    const r = client()
    const key = 'session:{short}:data'
    await r.hset(key, 'user', 'bob')
    assert.equal(await r.pexpire(key, 300), 1)
    const pttl = await r.pttl(key)
    assert.ok(pttl > 0 && pttl <= 300, `PTTL ${pttl}`)
    const deadline = Date.now() + 5000
    while (Date.now() < deadline && (await r.exists(key)) === 1) await sleep(50)
    assert.equal(await r.exists(key), 0, 'session did not expire within 5 s')
    assert.deepEqual(await r.hgetall(key), {})
    assert.equal(await r.hget(key, 'user'), null)
  })

  it('keeps many sessions spread over every shard apart', async () => {
    const r = client()
    const p = r.pipeline()
    for (let i = 0; i < 64; i++) {
      p.hset(`session:{s${i}}:data`, 'user', `user${i}`, 'n', String(i))
      p.expire(`session:{s${i}}:data`, 600)
    }
    assert.ok((await p.exec()).every(([err]) => err === null))
    const keys = new Set()
    let cursor = '0'
    do {
      const [next, batch] = await r.scan(cursor, 'MATCH', 'session:{s*}:data', 'COUNT', 20)
      cursor = next
      batch.forEach(k => keys.add(k))
    } while (cursor !== '0')
    assert.equal(keys.size, 64)
    const q = r.pipeline()
    for (let i = 0; i < 64; i++) q.hgetall(`session:{s${i}}:data`)
    const all = await q.exec()
    all.forEach(([err, h], i) => {
      assert.equal(err, null)
      assert.deepEqual(h, { user: `user${i}`, n: String(i) })
    })
  })
})

describe('job queue (LPUSH + BLMOVE + LREM)', { timeout: 60000 }, () => {
  const Q = '{jobs}:queue'
  const P = '{jobs}:processing'

  it('times out on an empty queue', async () => {
    const w = client()
    const t0 = Date.now()
    const job = await within(5000, w.blmove('{jobs}:empty', '{jobs}:empty-p', 'RIGHT', 'LEFT', 0.3), 'BLMOVE')
    const dt = Date.now() - t0
    assert.equal(job, null)
    assert.ok(dt >= 250 && dt < 3000, `BLMOVE 0.3 returned after ${dt} ms`)
  })

  it('wakes a blocked worker when a job is pushed from another connection', async () => {
    const w = client()
    const producer = client()
    const pending = within(5000, w.blmove(Q, P, 'RIGHT', 'LEFT', 4), 'BLMOVE')
    await sleep(200)
    const t0 = Date.now()
    assert.equal(await producer.lpush(Q, 'wake-1'), 1)
    assert.equal(await pending, 'wake-1')
    assert.ok(Date.now() - t0 < 2000, 'worker was not woken promptly')
    assert.deepEqual(await producer.lrange(P, 0, -1), ['wake-1'])
    assert.equal(await producer.lrem(P, 1, 'wake-1'), 1)
    assert.equal(await producer.exists(Q, P), 0)
  })

  it('serves blocked workers in the order they blocked', async () => {
    const ws = [client(), client(), client()]
    const producer = client()
    await Promise.all(ws.map(w => w.ping()))
    const pending = []
    for (const w of ws) {
      pending.push(within(8000, w.blmove(Q, P, 'RIGHT', 'LEFT', 5), 'BLMOVE'))
      await sleep(100)
    }
    assert.equal(await producer.lpush(Q, 'j1', 'j2', 'j3'), 3)
    assert.deepEqual(await Promise.all(pending), ['j1', 'j2', 'j3'])
    assert.deepEqual(await producer.lrange(P, 0, -1), ['j3', 'j2', 'j1'])
    assert.equal(await producer.del(P), 1)
  })

  it('a worker that disconnects while blocked takes no job with it', async () => {
    const w = client()
    const producer = client()
    w.blmove(Q, P, 'RIGHT', 'LEFT', 5).catch(() => {})
    await sleep(150)
    w.disconnect()
    await sleep(150)
    assert.equal(await producer.lpush(Q, 'orphan'), 1)
    await sleep(50)
    assert.deepEqual(await producer.lrange(Q, 0, -1), ['orphan'])
    assert.equal(await producer.exists(P), 0)
    assert.equal(await producer.del(Q), 1)
  })

  it('processes every job exactly once with several workers', async () => {
    const N = 60
    const producer = client()
    const workers = [client(), client(), client()]
    await Promise.all(workers.map(w => w.ping()))
    let producing = true
    const got = workers.map(() => [])

    const work = async (w, i) => {
      for (;;) {
        const job = await within(5000, w.blmove(Q, P, 'RIGHT', 'LEFT', 0.5), 'BLMOVE')
        if (job === null) {
          if (!producing) return
          continue
        }
        got[i].push(Number(job.slice(4)))
        assert.equal(await w.lrem(P, 1, job), 1, `LREM of ${job} from the processing list`)
      }
    }
    const running = workers.map(work)
    await sleep(100)
    for (let j = 0; j < N; j++) {
      await producer.lpush(Q, `job-${String(j).padStart(3, '0')}`)
      if (j % 4 === 0) await sleep(5)
    }
    producing = false
    await Promise.all(running)

    const all = got.flat().sort((a, b) => a - b)
    assert.deepEqual(all, [...Array(N).keys()], 'some job was lost or processed twice')
    for (const g of got) {
      assert.ok(g.length > 0, `a worker got no job: ${JSON.stringify(got.map(x => x.length))}`)
      assert.deepEqual(g, [...g].sort((a, b) => a - b), 'a worker took jobs out of FIFO order')
    }
    assert.equal(await producer.llen(Q), 0)
    assert.equal(await producer.llen(P), 0)
  })

  it('refuses a queue key of the wrong type', async () => {
    const r = client()
    await r.set('{jobs}:not-a-list', 'x')
    await assert.rejects(within(3000, r.blmove('{jobs}:not-a-list', P, 'RIGHT', 'LEFT', 0.2)), /WRONGTYPE/)
    await assert.rejects(r.blmove(Q, P, 'UP', 'LEFT', 0.2), /ERR syntax error/)
    await assert.rejects(r.blmove(Q, P, 'RIGHT', 'LEFT', -1), /ERR timeout is negative/)
  })
})

describe('rate limiter (async-ratelimiter 1.3.13: MULTI with sorted sets)', { timeout: 30000 }, () => {
  it('allows max calls per window, then refuses', async () => {
    const db = client()
    const limiter = new Limiter({ db, max: 5, duration: 60000, namespace: 'rl' })
    const seen = []
    for (let i = 0; i < 7; i++) seen.push(await limiter.get({ id: 'user-1' }))
    assert.deepEqual(seen.map(x => x.remaining), [5, 4, 3, 2, 1, 0, 0])
    assert.ok(seen.every(x => x.total === 5))
    const nowS = Date.now() / 1000
    for (const x of seen) {
      assert.ok(x.reset > nowS + 55 && x.reset <= nowS + 61, `reset ${x.reset} vs now ${nowS}`)
    }
    // the sorted set keeps at most max entries, with a PEXPIRE of the window
    assert.equal(await db.zcard('rl:user-1'), 5)
    const pttl = await db.pttl('rl:user-1')
    assert.ok(pttl > 50000 && pttl <= 60000, `PTTL ${pttl}`)
    // another id has its own budget
    assert.equal((await limiter.get({ id: 'user-2' })).remaining, 5)
  })

  it('opens again once the window has passed', async () => {
    const db = client()
    const limiter = new Limiter({ db, max: 2, duration: 400, namespace: 'rl' })
    const a = []
    for (let i = 0; i < 3; i++) a.push((await limiter.get({ id: 'short' })).remaining)
    assert.deepEqual(a, [2, 1, 0])
    await sleep(600)
    assert.equal((await limiter.get({ id: 'short' })).remaining, 2)
  })

  it('counts concurrent callers exactly (MULTI is atomic)', async () => {
    const conns = [client(), client(), client(), client()]
    const limiters = conns.map(db => new Limiter({ db, max: 10, duration: 60000, namespace: 'rl' }))
    const results = await within(10000, Promise.all(
      Array.from({ length: 24 }, (_, i) => limiters[i % 4].get({ id: 'burst' }))), 'limiter burst')
    const remaining = results.map(x => x.remaining).sort((a, b) => b - a)
    assert.deepEqual(remaining, [10, 9, 8, 7, 6, 5, 4, 3, 2, 1, ...Array(14).fill(0)])
    assert.equal(await conns[0].zcard('rl:burst'), 10)
  })
})


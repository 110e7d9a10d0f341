'use strict'
// Rate limiters that keep their state with Lua scripts, run against keel:
//   over RESP (also with KEEL_TEST_TARGET=redis, the self-check):
//     rate-limiter-flexible (RateLimiterRedis) with ioredis and with node-redis,
//     async-ratelimiter at its latest version (a sorted-set Lua script, defined
//     with ioredis defineCommand; package alias async-ratelimiter-lua),
//     ioredis defineCommand and node-redis defineScript custom scripts
//     (EVALSHA first, EVAL after NOSCRIPT);
//   over keel's REST API (keel only): @upstash/ratelimit with @upstash/redis:
//     fixed window, sliding window, token bucket and the deny list.
// Every limiter is checked for exactness under concurrency: of many requests
// sent at once, exactly `limit` may pass.

const { describe, it, before, after } = require('node:test')
const assert = require('node:assert/strict')
const crypto = require('node:crypto')
const Redis = require('ioredis')
const { createClient, defineScript } = require('redis')
const { RateLimiterRedis, RateLimiterRes } = require('rate-limiter-flexible')
const LuaLimiter = require('async-ratelimiter-lua')
const { startServer, within, TARGET } = require('./server')

let server
const ioClients = []
const nodeClients = []

function ioredis (opts = {}) {
  const c = new Redis({
    host: server.host,
    port: server.port,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null, // a dropped connection fails the test
    connectTimeout: 5000,
    commandTimeout: 10000,
    ...opts
  })
  c.on('error', () => {})
  ioClients.push(c)
  return c
}

async function nodeRedis (opts = {}) {
  const c = createClient({
    socket: { host: server.host, port: server.port, connectTimeout: 5000, reconnectStrategy: false },
    ...opts
  })
  c.on('error', () => {})
  nodeClients.push(c)
  await within(5000, c.connect(), 'node-redis connect')
  return c
}

const sha1 = s => crypto.createHash('sha1').update(s).digest('hex')

// Splits settled results into passed values and rejection reasons.
function split (settled) {
  const ok = settled.filter(s => s.status === 'fulfilled').map(s => s.value)
  const no = settled.filter(s => s.status === 'rejected').map(s => s.reason)
  return { ok, no }
}

before(async () => {
  server = await startServer()
  await server.flush(ioredis())
})

after(async () => {
  for (const c of ioClients) c.disconnect()
  for (const c of nodeClients) { try { c.destroy() } catch {} }
  if (server) await server.stop()
})

// -- rate-limiter-flexible ---------------------------------------------------------

const flexibleClients = {
  ioredis: async () => ({ storeClient: ioredis() }),
  'node-redis': async () => ({ storeClient: await nodeRedis(), useRedisPackage: true })
}

for (const [name, makeStore] of Object.entries(flexibleClients)) {
  describe(`rate-limiter-flexible RateLimiterRedis with ${name}`, { timeout: 30000 }, () => {
    it('consumes up to the limit, then rejects with msBeforeNext', async () => {
      const store = await makeStore()
      const prefix = `rlf-${name}-seq`
      const limiter = new RateLimiterRedis({ ...store, keyPrefix: prefix, points: 5, duration: 60 })
      const seen = []
      for (let i = 0; i < 5; i++) seen.push(await limiter.consume('user-1'))
      assert.deepEqual(seen.map(r => r.remainingPoints), [4, 3, 2, 1, 0])
      assert.deepEqual(seen.map(r => r.consumedPoints), [1, 2, 3, 4, 5])
      assert.ok(seen[0].isFirstInDuration)
      assert.ok(seen.every(r => r.msBeforeNext > 0 && r.msBeforeNext <= 60000), JSON.stringify(seen))

      const refused = await limiter.consume('user-1').then(
        r => assert.fail(`the 6th consume passed: ${JSON.stringify(r)}`), e => e)
      assert.ok(refused instanceof RateLimiterRes, `rejected with ${refused}`)
      assert.equal(refused.remainingPoints, 0)
      assert.equal(refused.consumedPoints, 6)
      assert.ok(refused.msBeforeNext > 0 && refused.msBeforeNext <= 60000, `msBeforeNext ${refused.msBeforeNext}`)

      // what the script left in the server: the counter with the window as TTL
      const raw = ioredis()
      assert.equal(await raw.get(`${prefix}:user-1`), '6')
      const pttl = await raw.pttl(`${prefix}:user-1`)
      assert.ok(pttl > 0 && pttl <= 60000, `PTTL ${pttl}`)

      // another key has its own budget; get() reads without consuming
      assert.equal((await limiter.consume('user-2')).remainingPoints, 4)
      assert.equal((await limiter.get('user-2')).consumedPoints, 1)
      assert.equal(await limiter.get('nobody'), null)
    })

    it('penalty, reward, delete and consuming several points at once', async () => {
      const store = await makeStore()
      const limiter = new RateLimiterRedis({ ...store, keyPrefix: `rlf-${name}-ops`, points: 10, duration: 60 })
      assert.equal((await limiter.consume('k', 4)).consumedPoints, 4)
      assert.equal((await limiter.penalty('k', 3)).consumedPoints, 7)
      assert.equal((await limiter.reward('k', 2)).consumedPoints, 5)
      const over = await limiter.consume('k', 6).then(() => assert.fail('consume past the limit passed'), e => e)
      assert.ok(over instanceof RateLimiterRes)
      assert.equal(over.consumedPoints, 11)
      assert.equal(await limiter.delete('k'), true)
      assert.equal((await limiter.consume('k', 10)).remainingPoints, 0)
    })

    it('50 concurrent consumes with 20 points: exactly 20 pass', async () => {
      const limiters = []
      for (let i = 0; i < 5; i++) {
        limiters.push(new RateLimiterRedis({ ...(await makeStore()), keyPrefix: `rlf-${name}-burst`, points: 20, duration: 60 }))
      }
      const settled = await within(15000, Promise.allSettled(
        Array.from({ length: 50 }, (_, i) => limiters[i % 5].consume('burst'))), 'consume burst')
      const { ok, no } = split(settled)
      assert.equal(ok.length, 20)
      assert.equal(no.length, 30)
      assert.ok(no.every(e => e instanceof RateLimiterRes), `a consume failed: ${no.find(e => !(e instanceof RateLimiterRes))}`)
      assert.deepEqual(ok.map(r => r.consumedPoints).sort((a, b) => a - b), Array.from({ length: 20 }, (_, i) => i + 1))
      assert.deepEqual(no.map(r => r.consumedPoints).sort((a, b) => a - b), Array.from({ length: 30 }, (_, i) => i + 21))
      assert.equal(await ioredis().get(`rlf-${name}-burst:burst`), '50')
    })
  })
}

// -- async-ratelimiter, latest (Lua) ---------------------------------------------------

describe('async-ratelimiter latest (a Lua script through ioredis defineCommand)', { timeout: 30000 }, () => {
  it('sends EVALSHA/EVAL (not MULTI) and counts down to the limit', async () => {
    const db = ioredis()
    const limiter = new LuaLimiter({ db, max: 3, duration: 60000, namespace: 'arl' })
    assert.equal(typeof db.ratelimiter, 'function', 'the limiter defines its script as a command')
    const seen = []
    for (let i = 0; i < 5; i++) seen.push(await limiter.get({ id: 'u' }))
    assert.deepEqual(seen.map(x => x.remaining), [3, 2, 1, 0, 0])
    assert.ok(seen.every(x => x.total === 3))
    assert.ok(seen[0].reset * 1000 > Date.now() - 1000)
    assert.equal(await db.zcard('arl:u'), 3)
    const pttl = await db.pttl('arl:u')
    assert.ok(pttl > 0 && pttl <= 60000, `PTTL ${pttl}`)
    // peek reads without adding
    assert.equal((await limiter.get({ id: 'fresh', peek: true })).remaining, 3)
    assert.equal(await db.exists('arl:fresh'), 0)
  })

  it('exactly max of many concurrent callers pass', async () => {
    const conns = [ioredis(), ioredis(), ioredis(), ioredis()]
    const limiters = conns.map(db => new LuaLimiter({ db, max: 10, duration: 60000, namespace: 'arl' }))
    const results = await within(15000, Promise.all(
      Array.from({ length: 40 }, (_, i) => limiters[i % 4].get({ id: 'burst' }))), 'limiter burst')
    const passed = results.filter(x => x.remaining > 0)
    assert.equal(passed.length, 10)
    assert.deepEqual(passed.map(x => x.remaining).sort((a, b) => b - a), [10, 9, 8, 7, 6, 5, 4, 3, 2, 1])
    assert.equal(await conns[0].zcard('arl:burst'), 10)
  })
})

// -- custom scripts -----------------------------------------------------------------------

// Increments KEYS[1] unless that would pass ARGV[1]; answers {allowed, value}.
const CAPPED_INCR = `
local cap = tonumber(ARGV[1])
local v = tonumber(redis.call('get', KEYS[1]) or '0')
if v >= cap then return {0, v} end
v = redis.call('incr', KEYS[1])
if v == 1 then redis.call('pexpire', KEYS[1], ARGV[2]) end
return {1, v}
`

describe('ioredis defineCommand', { timeout: 30000 }, () => {
  it('runs the script by its SHA, reloads it after SCRIPT FLUSH, and works in pipelines', async () => {
    const r = ioredis()
    r.defineCommand('cappedIncr', { numberOfKeys: 1, lua: CAPPED_INCR })
    assert.deepEqual(await r.cappedIncr('io:c', 2, 60000), [1, 1])
    assert.deepEqual(await r.script('EXISTS', sha1(CAPPED_INCR)), [1])
    assert.deepEqual(await r.cappedIncr('io:c', 2, 60000), [1, 2])
    assert.deepEqual(await r.cappedIncr('io:c', 2, 60000), [0, 2])
    assert.equal(await r.get('io:c'), '2')
    const pttl = await r.pttl('io:c')
    assert.ok(pttl > 0 && pttl <= 60000, `PTTL ${pttl}`)

    assert.equal(await r.script('FLUSH'), 'OK')
    assert.deepEqual(await r.script('EXISTS', sha1(CAPPED_INCR)), [0])
    assert.deepEqual(await r.cappedIncr('io:d', 5, 60000), [1, 1]) // NOSCRIPT, then EVAL

    // in a pipeline after a flush, each NOSCRIPT is retried with EVAL in order
    await r.script('FLUSH')
    const res = await r.pipeline().cappedIncr('io:p', 1, 60000).cappedIncr('io:p', 1, 60000).exec()
    assert.deepEqual(res, [[null, [1, 1]], [null, [0, 1]]])
    assert.equal(await r.get('io:p'), '1')
    const loaded = await r.pipeline().cappedIncr('io:q', 5, 60000).cappedIncr('io:q', 5, 60000).get('io:q').exec()
    assert.deepEqual(loaded, [[null, [1, 1]], [null, [1, 2]], [null, '2']])
    const tx = await r.multi().cappedIncr('io:t', 3, 60000).cappedIncr('io:t', 3, 60000).exec()
    assert.deepEqual(tx, [[null, [1, 1]], [null, [1, 2]]])
  })

  it('a script error rejects with the server message', async () => {
    const r = ioredis()
    r.defineCommand('failing', { numberOfKeys: 1, lua: "return redis.call('incr', KEYS[1])" })
    await r.set('io:text', 'abc')
    await assert.rejects(r.failing('io:text'), /^ReplyError: ERR value is not an integer or out of range script: /)
    r.defineCommand('errTable', { numberOfKeys: 0, lua: "return redis.error_reply('LIMITED try later')" })
    await assert.rejects(r.errTable(), { name: 'ReplyError', message: 'LIMITED try later' })
  })

  it('exactly cap of many concurrent increments pass', async () => {
    const conns = [ioredis(), ioredis(), ioredis()]
    for (const c of conns) c.defineCommand('cappedIncr', { numberOfKeys: 1, lua: CAPPED_INCR })
    const results = await within(15000, Promise.all(
      Array.from({ length: 60 }, (_, i) => conns[i % 3].cappedIncr('io:burst', 25, 60000))), 'burst')
    const allowed = results.filter(([ok]) => ok === 1).map(([, v]) => v).sort((a, b) => a - b)
    assert.deepEqual(allowed, Array.from({ length: 25 }, (_, i) => i + 1))
    assert.ok(results.filter(([ok]) => ok === 0).every(([, v]) => v === 25))
    assert.equal(await conns[0].get('io:burst'), '25')
  })
})

describe('node-redis defineScript', { timeout: 30000 }, () => {
  const cappedIncr = defineScript({
    SCRIPT: CAPPED_INCR,
    NUMBER_OF_KEYS: 1,
    parseCommand (parser, key, cap, ttlMs) {
      parser.pushKey(key)
      parser.push(String(cap), String(ttlMs))
    },
    transformReply (reply) { return reply }
  })

  for (const RESP of [2, 3]) {
    it(`RESP${RESP}: runs by SHA, falls back to EVAL after SCRIPT FLUSH, exact under concurrency`, async () => {
      const c = await nodeRedis({ RESP, scripts: { cappedIncr } })
      const k = `nr${RESP}:c`
      assert.equal(cappedIncr.SHA1, sha1(CAPPED_INCR))
      assert.deepEqual(await c.cappedIncr(k, 2, 60000), [1, 1])
      assert.deepEqual(await c.scriptExists(cappedIncr.SHA1), [1])
      assert.deepEqual(await c.cappedIncr(k, 2, 60000), [1, 2])
      assert.deepEqual(await c.cappedIncr(k, 2, 60000), [0, 2])
      assert.equal(await c.scriptFlush(), 'OK')
      assert.deepEqual(await c.scriptExists(cappedIncr.SHA1), [0])
      assert.deepEqual(await c.cappedIncr(`nr${RESP}:d`, 2, 60000), [1, 1])
      assert.deepEqual(await c.scriptExists(cappedIncr.SHA1), [1], 'the fallback EVAL caches the script')

      const others = [await nodeRedis({ RESP, scripts: { cappedIncr } }), await nodeRedis({ RESP, scripts: { cappedIncr } })]
      const results = await within(15000, Promise.all(
        Array.from({ length: 45 }, (_, i) => others[i % 2].cappedIncr(`nr${RESP}:burst`, 15, 60000))), 'burst')
      assert.equal(results.filter(([ok]) => ok === 1).length, 15)
      assert.equal(await c.get(`nr${RESP}:burst`), '15')

      // plain EVAL / EVALSHA with keys and arguments
      assert.deepEqual(await c.eval('return {KEYS[1], ARGV[1]}', { keys: ['a'], arguments: ['b'] }), ['a', 'b'])
      const sha = await c.scriptLoad('return ARGV[1] .. ARGV[2]')
      assert.equal(await c.evalSha(sha, { arguments: ['x', 'y'] }), 'xy')
      await assert.rejects(c.evalSha('f'.repeat(40)), /^\[?.*NOSCRIPT No matching script\. Please use EVAL\./)
    })
  }
})

// -- @upstash/ratelimit over REST (keel only) ---------------------------------------------

describe('@upstash/ratelimit with @upstash/redis over keel REST', {
  timeout: 60000,
  skip: TARGET !== 'keel' && 'the REST API is served by keel only'
}, () => {
  const TOKEN = 'ratelimit-rest-token'
  let rest
  let Ratelimit
  let IpDenyList
  let UpstashRedis
  const realFetch = globalThis.fetch
  const outside = []

  before(async () => {
    // The SDKs must talk to keel only: any other destination fails the test.
    globalThis.fetch = (input, init) => {
      const url = new URL(typeof input === 'string' || input instanceof URL ? input : input.url)
      if (url.hostname !== '127.0.0.1') {
        outside.push(url.href)
        return Promise.reject(new Error(`blocked non-loopback fetch ${url.href}`))
      }
      return realFetch(input, init)
    }
    ;({ Ratelimit, IpDenyList } = require('@upstash/ratelimit'))
    ;({ Redis: UpstashRedis } = require('@upstash/redis'))
    rest = await startServer({ http: true, args: ['--http-token', TOKEN] })
  })

  after(async () => {
    globalThis.fetch = realFetch
    if (rest) await rest.stop()
    assert.deepEqual(outside, [], 'requests left loopback')
  })

  const sdk = () => new UpstashRedis({
    url: `http://127.0.0.1:${rest.httpPort}`, token: TOKEN, enableTelemetry: false
  })

  // No ephemeral cache (every request reaches keel), no timeout (a slow answer
  // must not count as a pass).
  const limiterOf = (limiter, prefix, extra = {}) =>
    new Ratelimit({ redis: sdk(), limiter, prefix, ephemeralCache: false, timeout: 0, analytics: false, ...extra })

  async function burst (rl, id, n) {
    const results = await within(20000, Promise.all(Array.from({ length: n }, () => rl.limit(id))), 'REST burst')
    for (const r of results) assert.equal(r.reason, undefined, `a result came from ${r.reason}`)
    return results
  }

  const algorithms = {
    'fixed window': () => Ratelimit.fixedWindow(5, '60 s'),
    'sliding window': () => Ratelimit.slidingWindow(5, '60 s'),
    'token bucket': () => Ratelimit.tokenBucket(1, '60 s', 5)
  }

  for (const [name, make] of Object.entries(algorithms)) {
    it(`${name}: exactly limit of 2 x limit concurrent requests pass`, async () => {
      const prefix = `up:${name.replace(' ', '-')}`
      const rl = limiterOf(make(), prefix)
      const results = await burst(rl, 'client-a', 10)
      const passed = results.filter(r => r.success)
      assert.equal(passed.length, 5, JSON.stringify(results.map(r => [r.success, r.remaining])))
      assert.deepEqual(passed.map(r => r.remaining).sort(), [0, 1, 2, 3, 4])
      assert.ok(results.every(r => r.limit === 5))
      assert.ok(results.every(r => r.reset > Date.now() - 1000), 'reset is in the future')
      // sequential follow-up: still refused; another identifier has its own budget
      assert.equal((await rl.limit('client-a')).success, false)
      assert.equal((await rl.getRemaining('client-a')).remaining, 0)
      const other = await rl.limit('client-b')
      assert.equal(other.success, true)
      assert.equal(other.remaining, 4)
      // resetUsedTokens (a SCAN + DEL script) opens it again
      await rl.resetUsedTokens('client-a')
      assert.equal((await rl.limit('client-a')).success, true)
    })
  }

  it('deny list: a listed identifier or IP is refused, others pass (no network)', async () => {
    const prefix = 'up:deny'
    const redis = sdk()
    // Marks the IP deny list (fetched from the internet otherwise) as disabled,
    // so the library never downloads it; the user deny list is a plain set.
    await IpDenyList.disableIpDenyList(redis, prefix)
    assert.equal(await redis.ttl(`${prefix}:ipDenyListStatus`), -1)
    await redis.sadd(`${prefix}:denyList:all`, 'blocked-user', '10.1.2.3')
    const rl = limiterOf(Ratelimit.fixedWindow(5, '60 s'), prefix, { enableProtection: true })

    const denied = await rl.limit('blocked-user')
    assert.equal(denied.success, false)
    assert.equal(denied.reason, 'denyList')
    assert.equal(denied.deniedValue, 'blocked-user')

    const byIp = await rl.limit('someone', { ip: '10.1.2.3' })
    assert.equal(byIp.success, false)
    assert.equal(byIp.deniedValue, '10.1.2.3')

    const fine = await rl.limit('good-user', { ip: '10.9.9.9' })
    assert.equal(fine.success, true)
    assert.equal(fine.remaining, 4)
    await fine.pending
    assert.deepEqual(outside, [])
  })
})

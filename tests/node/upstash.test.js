'use strict'
// The REST API through the unchanged @upstash/redis SDK (pointed at keel
// as UPSTASH_REDIS_REST_URL/TOKEN would point it), and over raw fetch for
// what the SDK never sends: bad bodies, tokens, limits, CORS, the path form.
// keel runs with requirepass (the REST token by default) and a read-only token.
// (REST is keel's: in the redis-server stand-in mode there is nothing to test.)

const { describe, it, before, after } = require('node:test')
const assert = require('node:assert/strict')
const { Redis } = require('@upstash/redis')
const { startServer, TARGET } = require('./server')

const TOKEN = 'rest-token-1'
const RO_TOKEN = 'read-only-token-1'
let server
let base

function sdk (token = TOKEN, opts = {}) {
  return new Redis({ url: base, token, enableTelemetry: false, ...opts })
}

async function rest (path, { method = 'POST', body, token = TOKEN, headers = {} } = {}) {
  const h = { ...headers }
  if (token) h.Authorization = `Bearer ${token}`
  const res = await fetch(base + path, {
    method,
    headers: h,
    body: body === undefined ? undefined : (typeof body === 'string' || body instanceof Uint8Array ? body : JSON.stringify(body))
  })
  const text = await res.text()
  let json
  try { json = JSON.parse(text) } catch { json = undefined }
  return { status: res.status, json, text, headers: res.headers }
}

describe('REST API with @upstash/redis', { skip: TARGET !== 'keel' && 'REST is served by keel only' }, () => {
  before(async () => {
    server = await startServer({
      http: true,
      args: ['--requirepass', TOKEN, '--http-readonly-token', RO_TOKEN, '--http-max-body', '64kb']
    })
    base = `http://127.0.0.1:${server.httpPort}`
  })

  after(async () => {
    if (server) await server.stop()
  })

  it('strings: set, get, incr, expiry, mset/mget, the caching pattern', async () => {
    const r = sdk()
    assert.equal(await r.set('s:a', 'hello'), 'OK')
    assert.equal(await r.get('s:a'), 'hello')
    assert.equal(await r.incr('s:n'), 1)
    assert.equal(await r.incrby('s:n', 41), 42)
    // The Next.js cache: SET key value EX 60, then GET.
    assert.equal(await r.set('page:/home', { html: '<h1>hi</h1>', at: 1 }, { ex: 60 }), 'OK')
    assert.deepEqual(await r.get('page:/home'), { html: '<h1>hi</h1>', at: 1 })
    const ttl = await r.ttl('page:/home')
    assert.ok(ttl > 50 && ttl <= 60, `ttl ${ttl}`)
    assert.equal(await r.mset({ 's:x': 'X', 's:y': 'Y' }), 'OK')
    assert.deepEqual(await r.mget('s:x', 's:missing', 's:y'), ['X', null, 'Y'])
    assert.equal(await r.get('s:missing'), null)
    await assert.rejects(r.incr('s:a'), /not an integer/)
  })

  it('hashes, sets and sorted sets come back in the shapes the SDK builds', async () => {
    const r = sdk()
    assert.equal(await r.hset('h:1', { name: 'ada', visits: 3 }), 2)
    assert.deepEqual(await r.hgetall('h:1'), { name: 'ada', visits: 3 })
    assert.equal(await r.hincrby('h:1', 'visits', 2), 5)
    assert.equal(await r.sadd('set:1', 'a', 'b', 'c'), 3)
    assert.deepEqual((await r.smembers('set:1')).sort(), ['a', 'b', 'c'])
    assert.equal(await r.zadd('z:1', { score: 2, member: 'two' }, { score: 1, member: 'one' }), 2)
    assert.deepEqual(await r.zrange('z:1', 0, -1, { withScores: true }), ['one', 1, 'two', 2])
  })

  it('UTF-8 and binary payloads survive base64 both ways', async () => {
    const r = sdk()
    const text = 'héllo ✓ 日本語 🚀 "quoted" \\ back'
    await r.set('u:1', text)
    assert.equal(await r.get('u:1'), text)
    // Binary: posted raw as the path form's body, read back base64-encoded.
    const bytes = new Uint8Array(256)
    for (let i = 0; i < 256; i++) bytes[i] = i
    const put = await rest('/set/bin:1', { body: bytes })
    assert.deepEqual(put.json, { result: 'OK' })
    const got = await rest('/', { body: ['GET', 'bin:1'], headers: { 'Upstash-Encoding': 'base64' } })
    assert.equal(got.status, 200)
    assert.deepEqual(new Uint8Array(Buffer.from(got.json.result, 'base64')), bytes)
    assert.equal(await r.strlen('bin:1'), 256)
  })

  it('pipelines run every command and answer each, errors in their places', async () => {
    const r = sdk()
    const p = r.pipeline()
    p.set('p:a', '1')
    p.incr('p:a')
    p.get('p:a')
    p.hset('p:h', { f: 'v' })
    const res = await p.exec()
    assert.deepEqual(res, ['OK', 2, 2, 1])
    // Raw: one {"error"} among results, HTTP 200.
    const raw = await rest('/pipeline', { body: [['SET', 'p:s', 'x'], ['INCR', 'p:s'], ['GET', 'p:s'], ['NOSUCHCMD']] })
    assert.equal(raw.status, 200)
    assert.equal(raw.json.length, 4)
    assert.deepEqual(raw.json[0], { result: 'OK' })
    assert.match(raw.json[1].error, /not an integer/)
    assert.deepEqual(raw.json[2], { result: 'x' })
    assert.match(raw.json[3].error, /unknown command/)
  })

  it('multi() is one transaction; a discarded one is one error', async () => {
    const r = sdk()
    const tx = r.multi()
    tx.set('t:a', '10')
    tx.incrby('t:a', 5)
    tx.get('t:a')
    assert.deepEqual(await tx.exec(), ['OK', 15, 15])
    const bad = await rest('/multi-exec', { body: [['SET', 't:b', '1'], ['SET', 't:b']] })
    assert.equal(bad.status, 400)
    assert.match(bad.json.error, /EXECABORT/)
    assert.equal(await r.get('t:b'), null, 'nothing of a discarded transaction is written')
    const runtime = await rest('/multi-exec', { body: [['SET', 't:c', 'v'], ['INCR', 't:c'], ['GET', 't:c']] })
    assert.equal(runtime.status, 200)
    assert.deepEqual(runtime.json[0], { result: 'OK' })
    assert.match(runtime.json[1].error, /not an integer/)
    assert.deepEqual(runtime.json[2], { result: 'v' })
  })

  it('tokens: the full one writes, the read-only one reads, others are refused', async () => {
    await sdk().set('a:k', 'v')
    const ro = sdk(RO_TOKEN)
    assert.equal(await ro.get('a:k'), 'v')
    await assert.rejects(ro.set('a:k', 'w'), /NOPERM/)
    const denied = await rest('/', { body: ['SET', 'a:k', 'w'], token: RO_TOKEN })
    assert.equal(denied.status, 403)
    assert.equal(await sdk().get('a:k'), 'v')
    await assert.rejects(sdk('wrong-token').get('a:k'), /Unauthorized/)
    const none = await rest('/get/a:k', { method: 'GET', token: null })
    assert.equal(none.status, 401)
    assert.deepEqual(none.json, { error: 'Unauthorized' })
    const query = await rest(`/get/a:k?_token=${TOKEN}`, { method: 'GET', token: null })
    assert.deepEqual(query.json, { result: 'v' })
  })

  it('the path form: segments, query parameters and numbers as written', async () => {
    const set = await rest('/set/path%2Fkey/some%20value?EX=100', { method: 'GET' })
    assert.deepEqual(set.json, { result: 'OK' })
    const ttl = await rest('/ttl/path%2Fkey', { method: 'GET' })
    assert.ok(ttl.json.result > 90 && ttl.json.result <= 100, JSON.stringify(ttl.json))
    assert.deepEqual((await rest('/get/path%2Fkey', { method: 'GET' })).json, { result: 'some value' })
    // Numbers keep their literal text.
    await rest('/', { body: '["SET", "num", 1.50]' })
    assert.deepEqual((await rest('/', { body: ['GET', 'num'] })).json, { result: '1.50' })
    await rest('/', { body: '["SET", "big", 123456789012345678901234567890]' })
    assert.deepEqual((await rest('/', { body: ['GET', 'big'] })).json, { result: '123456789012345678901234567890' })
  })

  it('bad input gets a JSON error with a 4xx status, and the node serves on', async () => {
    const cases = [
      [{ body: '{"not": "an array"' }, 400, /not valid JSON/],
      [{ body: { not: 'an array' } }, 400, /JSON array/],
      [{ body: [] }, 400, /empty command/],
      [{ body: ['SET', null] }, 400, /strings, numbers or booleans/],
      [{ body: ['NOSUCHCMD', 'x'] }, 400, /unknown command/],
      [{ body: ['BLPOP', 'q', '0'] }, 400, /not available over REST/],
      [{ body: ['WATCH', 'k'] }, 400, /not available over REST/],
      [{ body: ['SUBSCRIBE', 'ch'] }, 400, /not available over REST/],
      [{ body: ['SET', 'k'] }, 400, /wrong number of arguments/]
    ]
    for (const [req, status, msg] of cases) {
      const res = await rest('/', req)
      assert.equal(res.status, status, `${JSON.stringify(req)} -> ${res.text}`)
      assert.match(res.json.error, msg)
    }
    const big = await rest('/', { body: ['SET', 'big', 'x'.repeat(100 * 1024)] })
    assert.equal(big.status, 413)
    assert.match(big.json.error, /http-max-body/)
    const method = await rest('/', { method: 'DELETE' })
    assert.equal(method.status, 405)
    assert.deepEqual((await rest('/', { body: ['PING'] })).json, { result: 'PONG' })
  })

  it('CORS: preflight answered, the sync-token header exposed', async () => {
    const res = await fetch(base + '/', {
      method: 'OPTIONS',
      headers: { Origin: 'https://app.example', 'Access-Control-Request-Method': 'POST' }
    })
    assert.equal(res.status, 204)
    assert.equal(res.headers.get('access-control-allow-origin'), '*')
    assert.match(res.headers.get('access-control-allow-headers'), /authorization/)
    const get = await rest('/', { body: ['PING'] })
    assert.match(get.headers.get('access-control-expose-headers'), /upstash-sync-token/)
  })

  it('subscriptions stream as server-sent events until the client leaves', async () => {
    const ac = new AbortController()
    const res = await fetch(base + '/subscribe/news,alerts', {
      method: 'POST',
      headers: { Authorization: `Bearer ${TOKEN}`, Accept: 'text/event-stream' },
      signal: ac.signal
    })
    assert.equal(res.status, 200)
    assert.match(res.headers.get('content-type'), /text\/event-stream/)
    const reader = res.body.getReader()
    const decoder = new TextDecoder()
    let text = ''
    const until = async (re, what) => {
      const deadline = Date.now() + 5000
      while (!re.test(text)) {
        assert.ok(Date.now() < deadline, `no ${what} within 5 s; got ${JSON.stringify(text)}`)
        const { value, done } = await reader.read()
        assert.ok(!done, `stream ended before ${what}: ${JSON.stringify(text)}`)
        text += decoder.decode(value, { stream: true })
      }
    }
    await until(/data: subscribe,alerts,2\n\n/, 'both confirmations')
    assert.match(text, /^data: subscribe,news,1\n\n/)
    const r = sdk()
    assert.equal(await r.publish('news', 'hello'), 1)
    await until(/data: message,news,hello\n\n/, 'the message')
    await r.publish('alerts', 'two\nlines')
    await until(/data: message,alerts,two\ndata: lines\n\n/, 'the two-line message')
    ac.abort()
    await reader.cancel().catch(() => {})
    // The subscriber is gone once the stream is closed.
    const deadline = Date.now() + 5000
    while ((await r.publish('news', 'x')) !== 0) {
      assert.ok(Date.now() < deadline, 'the closed stream still counts as a subscriber')
      await new Promise(resolve => setTimeout(resolve, 50))
    }
    const pattern = await rest('/psubscribe/n*', { method: 'POST', token: 'wrong' })
    assert.equal(pattern.status, 401)
  })

  it('many short-lived clients and keep-alive requests are all served', async () => {
    const writes = []
    for (let i = 0; i < 200; i++) {
      writes.push(sdk().set(`many:${i}`, String(i)))
    }
    assert.ok((await Promise.all(writes)).every(r => r === 'OK'))
    const r = sdk()
    for (let i = 0; i < 200; i += 20) {
      assert.equal(await r.get(`many:${i}`), i)
    }
  })
})

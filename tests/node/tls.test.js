'use strict'
// ioredis and node-redis over TLS, and @upstash/redis over HTTPS: keel
// started with --tls-port, --http-tls and a test CA (examples/test_certs.rs),
// client certificates required on the TLS port (tls-auth-clients yes, the
// default). keel only: the stand-in redis-server and the backup cluster are
// started without TLS.

const { describe, it, before, after } = require('node:test')
const assert = require('node:assert/strict')
const { execFileSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const Redis = require('ioredis')
const { createClient } = require('redis')
const { startServer, within, freePort, TARGET, KEEL_BIN, HOST } = require('./server')

const skip = TARGET !== 'keel' && `keel's TLS port (target ${TARGET})`
let server, tlsPort, httpPort, certDir
const clients = []

function tlsOptions (cert = 'client') {
  const read = f => fs.readFileSync(path.join(certDir, f))
  const o = { ca: read('ca.crt'), servername: 'localhost' }
  if (cert) Object.assign(o, { cert: read(`${cert}.crt`), key: read(`${cert}.key`) })
  return o
}

before(async () => {
  if (skip) return
  certDir = fs.mkdtempSync(path.join(os.tmpdir(), 'keel-node-certs-'))
  execFileSync(path.join(path.dirname(KEEL_BIN), 'examples', 'test_certs'), [certDir])
  tlsPort = await freePort()
  httpPort = await freePort()
  server = await startServer({
    args: ['--tls-port', String(tlsPort), '--tls-cert-file', path.join(certDir, 'server.crt'),
      '--tls-key-file', path.join(certDir, 'server.key'), '--tls-ca-cert-file', path.join(certDir, 'ca.crt'),
      '--http-port', String(httpPort), '--http-tls', 'yes', '--http-token', 'full-token']
  })
})

after(async () => {
  for (const c of clients) { try { c.disconnect ? c.disconnect() : c.destroy() } catch {} }
  if (server) await server.stop()
  if (certDir) fs.rmSync(certDir, { recursive: true, force: true })
})

describe('TLS', { skip, timeout: 60000 }, () => {
  it('ioredis with tls: {} runs commands, pipelines and large values', async () => {
    const r = new Redis({ host: HOST, port: tlsPort, tls: tlsOptions(), maxRetriesPerRequest: 1, lazyConnect: true })
    clients.push(r)
    await within(5000, r.connect(), 'ioredis tls connect')
    assert.equal(await r.set('{tls}a', 'over tls'), 'OK')
    assert.equal(await r.get('{tls}a'), 'over tls')
    const p = r.pipeline()
    for (let i = 0; i < 1000; i++) p.incr('{tls}n')
    const res = await p.exec()
    assert.equal(res.length, 1000)
    assert.equal(await r.get('{tls}n'), '1000')
    const big = 'x'.repeat(2 << 20)
    await r.set('{tls}big', big)
    assert.equal((await r.get('{tls}big')).length, big.length)
  })

  it('ioredis pub/sub messages arrive over tls', async () => {
    const sub = new Redis({ host: HOST, port: tlsPort, tls: tlsOptions(), lazyConnect: true })
    const pub = new Redis({ host: HOST, port: tlsPort, tls: tlsOptions(), lazyConnect: true })
    clients.push(sub, pub)
    await sub.connect(); await pub.connect()
    const got = new Promise(resolve => sub.on('message', (ch, msg) => resolve([ch, msg])))
    await sub.subscribe('tls-news')
    assert.equal(await pub.publish('tls-news', 'hello'), 1)
    assert.deepEqual(await within(5000, got, 'message'), ['tls-news', 'hello'])
  })

  it('node-redis with socket.tls in RESP3', async () => {
    const c = createClient({
      socket: { host: HOST, port: tlsPort, tls: true, ...tlsOptions(), reconnectStrategy: false },
      RESP: 3
    })
    c.on('error', () => {})
    clients.push(c)
    await within(5000, c.connect(), 'node-redis tls connect')
    await c.hSet('{tls}h', { a: '1', b: 'two' })
    assert.deepEqual({ ...(await c.hGetAll('{tls}h')) }, { a: '1', b: 'two' })
  })

  it('@upstash/redis over HTTPS, as an ACL user and with the REST token', async () => {
    // The SDK uses fetch, which trusts the test CA only through
    // NODE_EXTRA_CA_CERTS, read when node starts: so a child node runs it.
    const admin = new Redis({ host: HOST, port: tlsPort, tls: tlsOptions(), lazyConnect: true })
    clients.push(admin)
    await admin.connect()
    assert.equal(await admin.call('ACL', 'SETUSER', 'webapp', 'on', '>web-pw', '~web:*', '+@read', '+@write'), 'OK')
    const script = `
      const { Redis } = require('@upstash/redis')
      const url = process.argv[1]
      const out = {}
      ;(async () => {
        const user = new Redis({ url, token: 'webapp:web-pw', enableTelemetry: false })
        out.set = await user.set('web:greeting', 'hello over https')
        out.get = await user.get('web:greeting')
        try { await user.set('other', 'x'); out.denied = 'no' } catch (e) { out.denied = String(e.message) }
        const full = new Redis({ url, token: 'full-token', enableTelemetry: false })
        out.full = await full.get('web:greeting')
        console.log(JSON.stringify(out))
      })().catch(e => { console.log(JSON.stringify({ error: String(e) })); process.exit(1) })
    `
    const { execFileSync } = require('node:child_process')
    const stdout = execFileSync(process.execPath, ['-e', script, `https://localhost:${httpPort}`], {
      env: { ...process.env, NODE_EXTRA_CA_CERTS: path.join(certDir, 'ca.crt') },
      cwd: __dirname,
      timeout: 30000
    }).toString()
    const out = JSON.parse(stdout.trim().split('\n').pop())
    assert.equal(out.set, 'OK')
    assert.equal(out.get, 'hello over https')
    assert.match(out.denied, /NOPERM/)
    assert.equal(out.full, 'hello over https')
    assert.equal(await admin.get('web:greeting'), 'hello over https')
  })

  it('a client without a certificate, or with one from another CA, is refused', async () => {
    for (const cert of [null, 'rogue']) {
      const r = new Redis({
        host: HOST, port: tlsPort, tls: tlsOptions(cert), lazyConnect: true,
        maxRetriesPerRequest: 0, retryStrategy: () => null
      })
      r.on('error', () => {})
      clients.push(r)
      await assert.rejects(within(5000, r.connect().then(() => r.ping()), `connect with ${cert}`))
    }
    assert.doesNotMatch(server.logTail(200), / ERROR |panicked/)
  })
})

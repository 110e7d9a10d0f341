'use strict'
// Starts the server under test for one test file and stops it afterwards.
//
//   KEEL_BIN           keel binary (default <repo>/target/debug/keel)
//   KEEL_TEST_TARGET   "keel" (default); "backup": a three-node keel cluster
//                      whose backup b takes every client (cluster.js), so the
//                      tests run through the front door; or "redis": a
//                      redis-server stands in for keel (self-check of the tests)
//   REDIS_SERVER_BIN   redis-server for stand-in mode (default: on PATH)
//   KEEL_SHARDS        keel's --shards (default 4; the cluster always has 4)
//   KEEL_START_TIMEOUT seconds to wait for PING (default 20)
//
// Each server gets a free loopback port, its own temp dir and a log file there;
// it is killed when the test file's process exits, however it exits.
//
// What a test file gets from startServer(): `host`, `port`, `name`, `alive()`,
// `logTail()`, `stop()` (throws if the server died during the tests) and
// `flush(client)` (FLUSHALL through an ioredis client; with the cluster it also
// waits until every node is empty).

const { spawn } = require('node:child_process')
const fs = require('node:fs')
const net = require('node:net')
const os = require('node:os')
const path = require('node:path')

const REPO = path.resolve(__dirname, '..', '..')
const HOST = '127.0.0.1'
const TARGET = (process.env.KEEL_TEST_TARGET || 'keel').trim().toLowerCase()
const KEEL_BIN = process.env.KEEL_BIN || path.join(REPO, 'target', 'debug', 'keel')
const REDIS_BIN = process.env.REDIS_SERVER_BIN || 'redis-server'
const SHARDS = Number(process.env.KEEL_SHARDS || 4)
const START_TIMEOUT_MS = 1000 * Number(process.env.KEEL_START_TIMEOUT || 20)

if (!['keel', 'backup', 'redis'].includes(TARGET)) {
  throw new Error(`KEEL_TEST_TARGET must be 'keel', 'backup' or 'redis', not ${JSON.stringify(TARGET)}`)
}

const live = new Set()
const killAll = () => { for (const s of live) { try { s.kill('SIGKILL') } catch {} } }
process.on('exit', killAll)
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(sig, () => { killAll(); process.kill(process.pid, sig) })
}
// Where util-linux's setpriv exists, the server also gets SIGKILL when this
// process dies in a way no handler sees (SIGKILL, a crash).
const SETPRIV = ['/usr/bin/setpriv', '/bin/setpriv'].find(p => fs.existsSync(p))

function freePort () {
  return new Promise((resolve, reject) => {
    const srv = net.createServer()
    srv.unref()
    srv.on('error', reject)
    srv.listen(0, HOST, () => {
      const { port } = srv.address()
      srv.close(() => resolve(port))
    })
  })
}

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))

// Sends one command over a fresh socket and resolves to its reply:
// { type: '+' | '-' | ':' | '$', value } (value: a string, a number for ':',
// null for a null bulk). Rejects on a socket error, a timeout or an aggregate
// reply (none of the commands sent this way answers with one).
function command (port, args, timeoutMs = 2000) {
  return new Promise((resolve, reject) => {
    const sock = net.createConnection({ host: HOST, port })
    let buf = Buffer.alloc(0)
    const done = (err, val) => { clearTimeout(t); sock.destroy(); err ? reject(err) : resolve(val) }
    const t = setTimeout(() => done(new Error(`${args[0]} timed out`)), timeoutMs)
    sock.on('connect', () => {
      const parts = [`*${args.length}\r\n`]
      for (const a of args) parts.push(`$${Buffer.byteLength(String(a))}\r\n${a}\r\n`)
      sock.write(parts.join(''))
    })
    sock.on('data', d => {
      buf = Buffer.concat([buf, d])
      const eol = buf.indexOf('\r\n')
      if (eol < 0) return
      const type = String.fromCharCode(buf[0])
      const line = buf.toString('utf8', 1, eol)
      if (type === '+' || type === '-') return done(null, { type, value: line })
      if (type === ':') return done(null, { type, value: Number(line) })
      if (type === '$') {
        const len = Number(line)
        if (len < 0) return done(null, { type, value: null })
        if (buf.length < eol + 2 + len + 2) return // wait for the rest
        return done(null, { type, value: buf.toString('utf8', eol + 2, eol + 2 + len) })
      }
      done(new Error(`${args[0]}: unexpected reply ${JSON.stringify(buf.toString('latin1', 0, 40))}`))
    })
    sock.on('error', e => done(e))
    sock.on('close', () => done(new Error(`${args[0]}: connection closed before a reply`)))
  })
}

// One raw PING; resolves to the reply line (e.g. '+PONG') or rejects.
async function ping (port, timeoutMs = 1000) {
  const { type, value } = await command(port, ['PING'], timeoutMs)
  return type + value
}

// Starts `bin args` in `dir` with stdout and stderr appended to `logPath`; the
// process is in `live` (killed on exit) until stopped.
function spawnLogged (bin, args, dir, logPath) {
  const log = fs.openSync(logPath, 'a')
  fs.writeSync(log, `\n=== start: ${bin} ${args.join(' ')}\n`)
  const proc = SETPRIV
    ? spawn(SETPRIV, ['--pdeathsig', 'KILL', '--', bin, ...args], { cwd: dir, stdio: ['ignore', log, log] })
    : spawn(bin, args, { cwd: dir, stdio: ['ignore', log, log] })
  fs.closeSync(log)
  live.add(proc)
  return proc
}

function checkKeelBin () {
  try { fs.accessSync(KEEL_BIN, fs.constants.X_OK) } catch {
    throw new Error(`keel binary ${KEEL_BIN} not found (cargo build, set KEEL_BIN, or KEEL_TEST_TARGET=redis)`)
  }
}

function argv (kind, port, dir, extra = []) {
  const common = ['--port', String(port), '--bind', HOST, '--dir', dir]
  if (kind === 'keel') return [KEEL_BIN, [...common, '--shards', String(SHARDS), ...extra]]
  return [REDIS_BIN, [...common, '--save', '', '--appendonly', 'no', '--daemonize', 'no',
    '--protected-mode', 'no', '--logfile', '']]
}

class Server {
  constructor (kind, proc, port, dir, logPath, name) {
    Object.assign(this, { kind, proc, port, dir, logPath, host: HOST })
    this.name = name || (kind === 'keel' ? `keel[shards=${SHARDS}]` : 'redis-server(stand-in)')
  }

  alive () { return this.proc.exitCode === null && this.proc.signalCode === null }

  logTail (n = 30) {
    try { return fs.readFileSync(this.logPath, 'utf8').split('\n').slice(-n).join('\n') } catch { return '(no log)' }
  }

  // Empties the keyspace: FLUSHALL through `client` (an ioredis client).
  async flush (client) {
    await client.flushall()
  }

  // Stops the server; throws if it had died on its own during the tests.
  async stop () {
    const died = this.alive() ? null : (this.proc.exitCode ?? this.proc.signalCode)
    if (this.alive()) {
      const exited = new Promise(resolve => this.proc.once('exit', resolve))
      this.proc.kill('SIGTERM')
      const t = setTimeout(() => this.proc.kill('SIGKILL'), 5000)
      await exited
      clearTimeout(t)
    }
    live.delete(this.proc)
    const tail = died !== null ? this.logTail() : '' // before the log goes with the dir
    try { fs.rmSync(this.dir, { recursive: true, force: true }) } catch {}
    if (died !== null) throw new Error(`${this.name} died during the tests (${died})\n${tail}`)
  }
}

async function startOnce (kind, opts = {}) {
  if (kind === 'keel') checkKeelBin()
  const port = await freePort()
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `keel-node-${kind}-`))
  const logPath = path.join(dir, 'server.log')
  // opts.http: also serve HTTP (REST) on a free port, as server.httpPort.
  const httpPort = opts.http ? await freePort() : 0
  const extra = [...(opts.args || []), ...(opts.http ? ['--http-port', String(httpPort)] : [])]
  const [bin, args] = argv(kind, port, dir, extra)
  const proc = spawnLogged(bin, args, dir, logPath)
  const server = new Server(kind, proc, port, dir, logPath)
  server.httpPort = httpPort
  const deadline = Date.now() + START_TIMEOUT_MS
  let last = 'not tried'
  while (Date.now() < deadline) {
    if (!server.alive()) break
    try {
      const line = await ping(port)
      // (with requirepass, a NOAUTH answer says it is up just as well)
      if (line === '+PONG' || line.startsWith('-NOAUTH')) return server
      last = `PING answered ${line}`
    } catch (e) { last = e.message }
    await sleep(50)
  }
  const tail = server.logTail()
  try { await server.stop() } catch {}
  const err = new Error(`${server.name} did not answer PING within ${START_TIMEOUT_MS / 1000}s ` +
    `(last: ${last})\n--- log ---\n${tail}`)
  err.portRace = /in use/i.test(tail)
  throw err
}

// Starts keel (the cluster for "backup", redis-server in stand-in mode);
// retries a port race. `opts` (keel only): { args: [extra flags], http:
// true for an HTTP port as server.httpPort }.
async function startServer (opts = {}) {
  if (TARGET === 'backup') return require('./cluster').startCluster()
  const kind = TARGET === 'keel' ? 'keel' : 'redis'
  let err
  for (let attempt = 0; attempt < 5; attempt++) {
    try { return await startOnce(kind, opts) } catch (e) { err = e; if (!e.portRace) break }
  }
  throw err
}

// Rejects if `promise` does not settle within `ms` (bounds every blocking call).
function within (ms, promise, what = 'operation') {
  let t
  const timeout = new Promise((resolve, reject) => {
    t = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(t))
}

module.exports = {
  startServer,
  within,
  sleep,
  TARGET,
  HOST,
  // for cluster.js
  KEEL_BIN,
  START_TIMEOUT_MS,
  Server,
  checkKeelBin,
  command,
  freePort,
  spawnLogged
}

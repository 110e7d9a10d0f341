'use strict'
// A three-node keel cluster whose backup b stands in for a single server
// (KEEL_TEST_TARGET=backup, see server.js): the client tests run unchanged
// through a backup, which forwards writes, MULTI/EXEC, WATCH, blocking pops
// and PUBLISH to the primary and serves a read itself only when that cannot
// miss the client's own earlier writes (the "front door").
//
// The cluster: a (zone z1) is the first primary, b (z2) and c (z3) its
// backups, all on 127.0.0.1, sharing one topology file ([[nodes]] with id,
// client, bus, zone). Every port is chosen up front: a node's topology entry
// names its client and bus ports, and with `--peer-port P` shard i replicates
// on P + i, so each node needs SHARDS consecutive free ports. HTTP is off
// (`--http-port 0`). If a port is taken between choosing it and a node binding
// it, the whole cluster starts again on new ports (bounded).
//
// The cluster counts as started when a is primary and streams every shard to
// both backups, b and c are backups of a with `master_link_status:up` and
// `replica_ready:1`, a write through b is acknowledged, and every node is
// empty.
//
//   KEEL_CLUSTER_READY_TIMEOUT  seconds to wait for that (default: 20, or
//                               KEEL_START_TIMEOUT if larger)

const fs = require('node:fs')
const net = require('node:net')
const os = require('node:os')
const path = require('node:path')
const {
  HOST, KEEL_BIN, START_TIMEOUT_MS, Server, checkKeelBin, command, freePort, sleep, spawnLogged
} = require('./server')

const SHARDS = 4 // per node: keys of one test spread over shards, tracked per shard by the backup
const NODES = [['a', 'z1'], ['b', 'z2'], ['c', 'z3']]
const PRIMARY = 'a'
const FRONT = 'b'
const READY_TIMEOUT_MS = Math.max(START_TIMEOUT_MS,
  1000 * Number(process.env.KEEL_CLUSTER_READY_TIMEOUT || 20))
const FLUSH_TIMEOUT_MS = 10000 // for a FLUSHALL to reach every node
const START_ATTEMPTS = 3 // whole-cluster starts, new ports each time, after a port race
const PROBE_KEY = 'node-tests:via-backup:probe'

class StartError extends Error {}

function portFree (port) {
  return new Promise(resolve => {
    const srv = net.createServer()
    srv.unref()
    srv.once('error', () => resolve(false))
    srv.listen(port, HOST, () => srv.close(() => resolve(true)))
  })
}

// The first of n consecutive ports that are free now and not in `taken`:
// starts from a port the OS hands out and checks the following ones.
async function freePortBlock (n, taken) {
  for (let i = 0; i < 200; i++) {
    const base = await freePort()
    if (base + n - 1 > 65535) continue
    const block = Array.from({ length: n }, (_, k) => base + k)
    if (block.some(p => taken.has(p))) continue
    let free = true
    for (const p of block) if (!(await portFree(p))) { free = false; break }
    if (free) return base
  }
  throw new StartError(`found no ${n} consecutive free ports`)
}

async function freePortNotIn (taken) {
  for (;;) {
    const p = await freePort()
    if (!taken.has(p)) return p
  }
}

function parseInfo (text) {
  const out = {}
  for (const line of text.split(/\r?\n/)) {
    if (!line || line.startsWith('#')) continue
    const i = line.indexOf(':')
    if (i > 0) out[line.slice(0, i)] = line.slice(i + 1)
  }
  return out
}

// One cluster member: a Server whose ports are fixed by the topology file.
class Node extends Server {
  constructor (id, zone, proc, ports, dir) {
    super('keel', proc, ports.client, dir, path.join(dir, 'server.log'), `keel[node ${id}]`)
    Object.assign(this, { id, zone, busPort: ports.bus, peerPort: ports.peer })
  }

  async info (section) {
    const { type, value } = await command(this.port, ['INFO', section])
    if (type !== '$' || value === null) throw new Error(`node ${this.id}: INFO ${section} answered ${type}${value}`)
    return parseInfo(value)
  }
}

class Cluster {
  constructor (root) {
    this.root = root
    this.nodes = new Map()
    this.kind = 'keel'
    this.host = HOST
    this.name = `keel[via backup ${FRONT} of a 3-node cluster, shards=${SHARDS}]`
  }

  get front () { return this.nodes.get(FRONT) }
  get port () { return this.front.port }

  alive () {
    return this.nodes.size > 0 && [...this.nodes.values()].every(n => n.alive())
  }

  logTail (n = 30) {
    return [...this.nodes.values()]
      .map(x => `--- node ${x.id} (${x.logPath}) ---\n${x.logTail(n)}`).join('\n')
  }

  // Starts the three nodes in root/<dir> on freshly chosen ports.
  async launch (dir) {
    fs.mkdirSync(dir, { recursive: true })
    const taken = new Set()
    const ports = {}
    for (const [id] of NODES) {
      const client = await freePortNotIn(taken)
      taken.add(client)
      const bus = await freePortNotIn(taken)
      taken.add(bus)
      const peer = await freePortBlock(SHARDS, taken)
      for (let k = 0; k < SHARDS; k++) taken.add(peer + k)
      ports[id] = { client, bus, peer }
    }
    const toml = [`primary = "${PRIMARY}"`, '']
    for (const [id, zone] of NODES) {
      toml.push('[[nodes]]', `id = "${id}"`, `client = "${HOST}:${ports[id].client}"`,
        `bus = "${HOST}:${ports[id].bus}"`, `zone = "${zone}"`, '')
    }
    const topology = path.join(dir, 'topology.toml')
    fs.writeFileSync(topology, toml.join('\n'))
    this.nodes = new Map()
    for (const [id, zone] of NODES) {
      const nodeDir = path.join(dir, id)
      fs.mkdirSync(nodeDir)
      const p = ports[id]
      const args = [topology, '--node-id', id, '--port', String(p.client), '--bind', HOST,
        '--dir', nodeDir, '--shards', String(SHARDS), '--peer-port', String(p.peer), '--http-port', '0']
      const proc = spawnLogged(KEEL_BIN, args, nodeDir, path.join(nodeDir, 'server.log'))
      this.nodes.set(id, new Node(id, zone, proc, p, nodeDir))
    }
  }

  // Why the cluster is not ready yet (null: it is). Throws if a node died.
  async notReady () {
    for (const n of this.nodes.values()) {
      if (!n.alive()) throw new StartError(`node ${n.id} exited (${n.proc.exitCode ?? n.proc.signalCode})`)
    }
    try {
      const a = this.nodes.get(PRIMARY)
      const ac = await a.info('cluster')
      if (ac.cluster_role !== 'primary') return `a: cluster_role=${ac.cluster_role}`
      const ar = await a.info('replication')
      for (const n of this.nodes.values()) {
        if (n.id === PRIMARY) continue
        for (let s = 0; s < SHARDS; s++) {
          const link = ar[`shard${s}_link_${n.id}`] || ''
          if (!link.startsWith('state=online')) return `a: shard${s}_link_${n.id}=${JSON.stringify(link)}`
        }
        const nc = await n.info('cluster')
        if (nc.cluster_role !== 'backup' || nc.cluster_primary !== PRIMARY) {
          return `${n.id}: cluster_role=${nc.cluster_role} cluster_primary=${nc.cluster_primary}`
        }
        const nr = await n.info('replication')
        if (nr.master_link_status !== 'up' || nr.replica_ready !== '1') {
          return `${n.id}: master_link_status=${nr.master_link_status} replica_ready=${nr.replica_ready}`
        }
      }
      // the front door forwards: a write through b is acknowledged by a
      const set = await command(this.port, ['SET', PROBE_KEY, '1'])
      if (set.type !== '+' || set.value !== 'OK') return `SET through ${FRONT} answered ${set.type}${set.value}`
      await command(this.port, ['DEL', PROBE_KEY])
    } catch (e) {
      return e.message
    }
    return null
  }

  async waitReady () {
    const deadline = Date.now() + READY_TIMEOUT_MS
    let why = 'not asked yet'
    while (Date.now() < deadline) {
      why = await this.notReady()
      if (why === null) return this.waitEmpty()
      await sleep(50)
    }
    throw new StartError(`cluster not ready within ${READY_TIMEOUT_MS / 1000}s (last: ${why})`)
  }

  // Waits until DBSIZE is 0 on every node.
  async waitEmpty () {
    const deadline = Date.now() + FLUSH_TIMEOUT_MS
    let sizes
    while (Date.now() < deadline) {
      sizes = {}
      for (const n of this.nodes.values()) {
        try {
          const r = await command(n.port, ['DBSIZE'])
          sizes[n.id] = r.type === ':' ? r.value : `${r.type}${r.value}`
        } catch (e) { sizes[n.id] = e.message }
      }
      if (Object.values(sizes).every(v => v === 0)) return
      await sleep(20)
    }
    throw new Error(`${this.name}: DBSIZE not 0 on every node ${FLUSH_TIMEOUT_MS / 1000}s after FLUSHALL: ` +
      JSON.stringify(sizes))
  }

  // FLUSHALL through `client` (an ioredis client connected to b: the primary
  // runs it), then waits until the flush has reached every node.
  async flush (client) {
    const reply = await client.flushall()
    if (reply !== 'OK') throw new Error(`${this.name}: FLUSHALL through ${FRONT} answered ${reply}`)
    await this.waitEmpty()
  }

  // Stops every node, backups first (so they never see the primary go);
  // throws if one had died on its own during the tests.
  async stop () {
    const tail = this.alive() ? '' : this.logTail() // before the logs go with the dirs
    const died = []
    for (const n of [...this.nodes.values()].reverse()) {
      try { await n.stop() } catch (e) { died.push(`node ${n.id}: ${e.message.split('\n')[0]}`) }
    }
    try { fs.rmSync(this.root, { recursive: true, force: true }) } catch {}
    if (died.length) throw new Error(`${this.name}: ${died.join('; ')}\n${tail}`)
  }
}

async function startCluster () {
  checkKeelBin()
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'keel-node-cluster-'))
  const cluster = new Cluster(root)
  let err
  for (let attempt = 1; attempt <= START_ATTEMPTS; attempt++) {
    try {
      await cluster.launch(path.join(root, `try${attempt}`))
      await cluster.waitReady()
      return cluster
    } catch (e) {
      err = e
      const tail = cluster.logTail()
      for (const n of cluster.nodes.values()) { try { await n.stop() } catch {} }
      if (!(e instanceof StartError) || !/in use/i.test(tail)) {
        err = new Error(`${cluster.name} failed to start: ${e.message}\n${tail}`)
        break
      }
    }
  }
  try { fs.rmSync(root, { recursive: true, force: true }) } catch {}
  throw err
}

module.exports = { startCluster }

'use strict'
// A small HTTP load generator for keel's REST API (no dependencies):
//   node bench/rest_load.js PORT MODE N CONCURRENCY [TOKEN]
// MODE: get | set | pipeline (10 commands per request) | churn (GET on a
// new connection per request). Prints requests/s and commands/s as JSON.
const http = require('node:http')

const [port, mode, n, conc, token] = [Number(process.argv[2]), process.argv[3],
  Number(process.argv[4]), Number(process.argv[5]), process.argv[6]]
const agent = new http.Agent({ keepAlive: mode !== 'churn', maxSockets: conc })
const value = 'x'.repeat(32)

function body (i) {
  const k = `key:${i % 100000}`
  if (mode === 'set') return JSON.stringify(['SET', k, value])
  if (mode === 'pipeline') {
    const cmds = []
    for (let j = 0; j < 10; j++) cmds.push(j % 2 ? ['GET', `key:${(i + j) % 100000}`] : ['SET', `key:${(i + j) % 100000}`, value])
    return JSON.stringify(cmds)
  }
  return JSON.stringify(['GET', k])
}

function one (i) {
  return new Promise((resolve, reject) => {
    const b = body(i)
    const req = http.request({
      host: '127.0.0.1',
      port,
      method: 'POST',
      path: mode === 'pipeline' ? '/pipeline' : '/',
      agent,
      headers: {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(b),
        ...(token ? { authorization: `Bearer ${token}` } : {})
      }
    }, res => {
      res.resume()
      res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`HTTP ${res.statusCode}`))))
    })
    req.on('error', reject)
    req.end(b)
  })
}

async function main () {
  let next = 0
  const t0 = process.hrtime.bigint()
  const workers = []
  for (let w = 0; w < conc; w++) {
    workers.push((async () => {
      while (next < n) await one(next++)
    })())
  }
  await Promise.all(workers)
  const secs = Number(process.hrtime.bigint() - t0) / 1e9
  const per = mode === 'pipeline' ? 10 : 1
  console.log(JSON.stringify({ mode, requests: n, secs, rps: n / secs, cmds_per_s: (n * per) / secs }))
  agent.destroy()
}
main().catch(e => { console.error(e); process.exit(1) })

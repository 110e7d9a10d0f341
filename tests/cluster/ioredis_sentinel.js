// An ioredis client in sentinel mode, run by tests/cluster/test_switchover.py
// inside a host's network namespace (NODE_PATH=tests/node/node_modules).
//
//   node ioredis_sentinel.js '{"sentinels": [[ip, port], ...], "name": "keel",
//                              "deadline": 45, "after": 100}'
//
// Writes one at a time (SET of unique keys, INCR of "ctr") through the primary
// ioredis discovers, noting for each acknowledged write the address of the
// connection that acknowledged it and the time (CLOCK_MONOTONIC, comparable
// with Python's time.monotonic()). It ends once `after` writes were
// acknowledged by another address than the first (and at least 1 s went by
// since the first of them), or at the deadline, and prints one JSON summary.
"use strict";

const Redis = require("ioredis");

const cfg = JSON.parse(process.argv[2]);
const now = () => Number(process.hrtime.bigint()) / 1e9;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const tStart = now();

const redis = new Redis({
  sentinels: cfg.sentinels.map(([host, port]) => ({ host, port })),
  name: cfg.name,
  connectTimeout: 2000,
});

const acks = [];
const errors = {};
const masters = [];
let first = null;
let newAcks = 0;
let firstNewT = null;
let done = false;

const note = (k) => {
  errors[k] = (errors[k] || 0) + 1;
};
redis.on("error", (e) => note(`event:${e.name || "Error"}`));

async function discover() {
  for (const [host, port] of cfg.sentinels) {
    const s = new Redis({ host, port, connectTimeout: 500, lazyConnect: true, maxRetriesPerRequest: 0,
                          retryStrategy: () => null });
    s.on("error", () => {});
    try {
      await s.connect();
      const r = await s.sentinel("get-master-addr-by-name", cfg.name);
      s.disconnect();
      if (r) return r;
    } catch (e) {
      s.disconnect();
    }
  }
  return null;
}

async function finish(finished) {
  if (done) return;
  done = true;
  let end = null;
  try {
    end = await Promise.race([discover(), sleep(3000).then(() => "timeout")]);
  } catch (e) {
    end = String(e);
  }
  redis.disconnect();
  // A pipe takes the summary (~100 KB) in pieces: exit once it is all out.
  process.stdout.write(JSON.stringify({ first, masters, discovered_end: end, errors, finished,
                                        new_acks: newAcks, acks }) + "\n", () => process.exit(0));
}

// Whatever a pending command does, the script reports and ends.
setTimeout(() => finish("deadline"), (cfg.deadline + 5) * 1000);

async function main() {
  let n = 0;
  while (!done && now() < tStart + cfg.deadline) {
    n += 1;
    const incr = n % 4 === 0;
    const key = incr ? "ctr" : `js:${n}`;
    const value = `v${n}`;
    let reply;
    try {
      reply = incr ? await redis.incr(key) : await redis.set(key, value);
    } catch (e) {
      note(e.name || "Error");
      await sleep(20);
      continue;
    }
    const t = now();
    if (!(incr ? Number.isInteger(reply) : reply === "OK")) {
      note("unexpected");
      continue;
    }
    const s = redis.stream;
    const addr = [s.remoteAddress, String(s.remotePort)];
    if (first === null) first = addr;
    const last = masters[masters.length - 1];
    if (!last || last[0] !== addr[0] || last[1] !== addr[1]) masters.push(addr);
    acks.push([t, incr ? "INCR" : "SET", key, incr ? reply : value, addr[0], Number(addr[1])]);
    if (addr[0] !== first[0] || addr[1] !== first[1]) {
      newAcks += 1;
      if (firstNewT === null) firstNewT = t;
      if (newAcks >= cfg.after && t - firstNewT >= 1.0) return finish("enough");
    }
  }
  return finish("deadline");
}

main().catch((e) => {
  process.stderr.write(`ioredis_sentinel: ${e && e.stack}\n`);
  process.exit(1);
});

#!/usr/bin/env python3
"""Every node is a front door (issue 12): what a backup costs when clients use
it as their door, on loopback, side by side with redis-server.

    KEEL_BIN=target/release/keel python3 bench/front_door.py [--quick] [--json FILE]
    python3 bench/front_door.py --report RUN.json     # the Markdown again, from a saved run

Servers are pinned to the last CPU (taskset), everything else (this script,
redis-benchmark, memtier_benchmark) to the others, so a server's CPU time is
its own. Every keel runs `--shards 2`; the cluster is three keel processes on
127.0.0.1 with one `[[nodes]]` topology: a (primary, zone z1, port 7301), b
(z2, 7311), c (z3, 7321), eventual consistency, default `--read-max-lag`.
Redis: one redis-server alone, and a primary with two `--replicaof` replicas.
Data: 2 x KEYS keys of 64-byte values, loaded through the primary and
replicated everywhere (equal `DEBUG DIGEST` on keel, equal offsets on Redis)
before anything is measured.

1. CPU per read. redis-benchmark `-t get -c 50` (unpipelined, random keys
   that all exist) sent to the primary, then the same sent to backup b (served
   there), REPS times alternately; also to a keel with no backups and to the
   same three Redis setups. Each node's CPU time is utime+stime of its process
   (/proc/PID/stat, every thread) before and after, divided by the reads sent.
   The sum of the three nodes' CPU per read (the whole cluster's cost of a read
   served by a backup, background work included) is set against the
   primary-alone figure.
2. Forwarding cost. redis-benchmark `-t set` with 1 connection (one write at
   a time) and with 10, sent to the primary and to backup b (which forwards
   each write to the primary): client latency p50/p99 and every node's CPU per
   write; Redis's primary as a reference (a Redis replica refuses writes).
3. Share of reads served locally under a 1:10 write:read load on backup b:
   memtier_benchmark `--ratio=1:10` when it is on PATH, else a generator of
   this script (asyncio, raw RESP, the same 1 SET : 10 GET over random keys);
   b's `INFO replication` counters before/after. Meanwhile a separate client on
   b does SET k v then GET k at once on its connection, counting reads that do
   not return its own write.
4. Bytes between backup b and the primary while b serves the reads of 1: the
   kernel's per-socket byte counters (`ss -ti`, bytes_received on both ends)
   of every TCP connection between the two processes, by the port it runs to:
   the primary's client port (forwarding links), its replication ports, the
   cluster bus. The primary's `total_connections_received` shows no link came
   and went unseen. The same during the writes of 2 shows the counter sees
   forwarded traffic when there is some.

Prints progress on stderr and a Markdown fragment (for bench/RESULTS.md) on
stdout; --json saves every figure. The machine is shared: the fragment says
how busy other processes kept it during the measured phases (/proc/stat minus
this run's processes).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from bench_common import sh  # noqa: E402

CLK = os.sysconf("SC_CLK_TCK")
HOST = "127.0.0.1"
SHARDS = 2
VALUE_SIZE = 64
READ_CONNS = 50  # redis-benchmark connections for the read phases
WRITE_CONNS = (1, 10)
MIXED_CONNS = 20  # memtier: 1 thread x 20 connections; the Python generator: 20 connections
RYW_KEYS = 1000

FULL = dict(keys=100_000, reads=400_000, writes=40_000, reps=3, mixed_s=90, idle_s=8)
QUICK = dict(keys=50_000, reads=150_000, writes=12_000, reps=1, mixed_s=20, idle_s=3)


def log(msg: str) -> None:
    print(f"[front_door {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class BenchError(Exception):
    pass


# --------------------------------------------------------------------------
# a small RESP2 client
# --------------------------------------------------------------------------

class RespError(Exception):
    pass


def encode(args) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if not isinstance(a, bytes):
            a = str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class Resp:
    def __init__(self, port: int, timeout: float = 10.0):
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.f = self.sock.makefile("rb")

    def close(self) -> None:
        try:
            self.f.close()
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def read(self):
        line = self.f.readline()
        if not line:
            raise ConnectionError("connection closed")
        t, rest = line[:1], line[1:-2]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            return RespError(rest.decode(errors="replace"))
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.f.read(n + 2)
            return data[:-2].decode(errors="replace")
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise BenchError(f"unexpected reply {line!r}")

    def call(self, *args):
        self.sock.sendall(encode(args))
        r = self.read()
        if isinstance(r, RespError):
            raise r
        return r

    def pipeline(self, cmds) -> list:
        self.sock.sendall(b"".join(encode(c) for c in cmds))
        return [self.read() for _ in cmds]

    def info(self, section: str) -> dict[str, str]:
        out = {}
        for line in self.call("INFO", section).splitlines():
            if line and not line.startswith("#") and ":" in line:
                k, v = line.split(":", 1)
                out[k] = v.strip()
        return out


def until(cond, timeout: float, what: str, interval: float = 0.1):
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        try:
            v = cond()
            if v:
                return v
        except (OSError, RespError, ConnectionError, BenchError) as e:
            last = e
        time.sleep(interval)
    raise BenchError(f"timed out after {timeout:.0f} s waiting for {what}" + (f" (last error: {last})" if last else ""))


# --------------------------------------------------------------------------
# processes, CPU and sockets
# --------------------------------------------------------------------------

def cpu_ticks(pid: int) -> int:
    """utime + stime of the whole process (every thread), in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        s = f.read()
    fields = s[s.rindex(")") + 2:].split()
    return int(fields[11]) + int(fields[12])


def busy_ticks() -> int:
    """Ticks the whole machine spent busy (not idle or waiting for I/O)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v) - v[3] - v[4]


def own_ticks() -> float:
    t = os.times()
    return (t.user + t.system + t.children_user + t.children_system) * CLK


def cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0))


def cpu_sets() -> tuple[str | None, list[int]]:
    """Servers on the last CPU this process may use, clients on the others
    (no pinning on a single CPU)."""
    mine = cpus()
    if len(mine) < 2:
        return None, mine
    return str(mine[-1]), mine[:-1]


SPAWNED: list[subprocess.Popen] = []


def spawn(cmd: list[str], **kw) -> subprocess.Popen:
    """A child that dies with this process (PR_SET_PDEATHSIG through setpriv)."""
    if shutil.which("setpriv"):
        cmd = ["setpriv", "--pdeathsig", "KILL", "--"] + cmd
    p = subprocess.Popen(cmd, **kw)
    SPAWNED.append(p)
    return p


def run_tool(cmd: list[str], timeout: float) -> str:
    p = spawn(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        raise BenchError(f"{cmd[0]} took longer than {timeout:.0f} s: {' '.join(cmd)}")
    finally:
        if p in SPAWNED:
            SPAWNED.remove(p)
    if p.returncode != 0:
        raise BenchError(f"{' '.join(cmd)} exited with {p.returncode}: {err.strip()[-500:]}")
    return out


def ss_sockets() -> list[dict]:
    """Established TCP sockets with their owner and the kernel's byte counters."""
    out = subprocess.run(["ss", "-tinpH", "state", "established"], capture_output=True, text=True,
                         timeout=10).stdout
    socks, cur = [], None
    for line in out.splitlines():
        if not line.startswith((" ", "\t")):
            parts = line.split()
            m = re.search(r"pid=(\d+)", line)
            # state is omitted with a state filter: Recv-Q Send-Q Local Peer [users]
            if len(parts) < 4:
                cur = None
                continue
            cur = {"local": parts[2], "peer": parts[3], "pid": int(m.group(1)) if m else None,
                   "rx": 0, "tx": 0}
            socks.append(cur)
        elif cur is not None:
            for k, name in (("rx", "bytes_received"), ("tx", "bytes_sent")):
                m = re.search(rf"\b{name}:(\d+)", line)
                if m:
                    cur[k] = int(m.group(1))
    return socks


def port_of(addr: str) -> int:
    return int(addr.rsplit(":", 1)[1])


def links_between(socks: list[dict], pid_a: int, pid_b: int) -> dict:
    """Every connection between processes a and b: {(a's end, b's end):
    ((a's port, b's port), bytes a->b, bytes b->a)}. Bytes are what each end
    received (retransmissions are not counted twice)."""
    by_end = {(s["local"], s["peer"]): s for s in socks}
    out = {}
    for s in socks:
        if s["pid"] != pid_a:
            continue
        t = by_end.get((s["peer"], s["local"]))
        if t is None or t["pid"] != pid_b:
            continue
        out[(s["local"], t["local"])] = ((port_of(s["local"]), port_of(t["local"])), t["rx"], s["rx"])
    return out


def link_delta(before: dict, after: dict, listening: dict[int, str]) -> dict[str, dict]:
    """Bytes per category (the label of the listening port either end has)
    that crossed between the two snapshots. A link gone by the end is missing
    from the delta (see the connection count)."""
    out: dict[str, dict] = {}
    for k, (ports, ab, ba) in after.items():
        _, ab0, ba0 = before.get(k, (ports, 0, 0))
        label = next((listening[p] for p in ports if p in listening), f"ports {ports[0]}-{ports[1]}")
        d = out.setdefault(label, {"to_primary": 0, "from_primary": 0, "links": 0})
        d["to_primary"] += ab - ab0
        d["from_primary"] += ba - ba0
        d["links"] += 1
    return out


# --------------------------------------------------------------------------
# servers
# --------------------------------------------------------------------------

class Server:
    def __init__(self, name: str, kind: str, port: int, args: list[str], workdir: Path, server_cpus):
        self.name, self.kind, self.port = name, kind, port
        self.dir = workdir / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.logf = open(self.dir / "server.log", "w")
        cmd = (["taskset", "-c", server_cpus] if server_cpus else []) + args
        self.cmd = cmd
        self.proc = spawn(cmd, cwd=self.dir, stdout=self.logf, stderr=subprocess.STDOUT,
                          stdin=subprocess.DEVNULL)
        self.pid = self.proc.pid  # setpriv and taskset exec: the server's own pid
        self.conn: Resp | None = None
        try:
            until(self._ping, 30, f"{name} to answer PING on {port}")
        except BenchError:
            raise BenchError(f"{name} did not start: {' '.join(cmd)}\n{self.log_tail()}")

    def _ping(self):
        if self.proc.poll() is not None:
            raise BenchError(f"{self.name} exited with {self.proc.returncode}\n{self.log_tail()}")
        with Resp(self.port, timeout=1) as c:
            return c.call("PING") == "PONG"

    def log_tail(self, n: int = 15) -> str:
        try:
            return "\n".join((self.dir / "server.log").read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def c(self) -> Resp:
        """A persistent connection for probes (opened once: no connection is
        made while a phase runs)."""
        if self.conn is None:
            self.conn = Resp(self.port)
        return self.conn

    def info(self, section: str) -> dict[str, str]:
        return self.c().info(section)

    def ticks(self) -> int:
        return cpu_ticks(self.pid)

    def stop(self) -> None:
        if self.conn:
            self.conn.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc in SPAWNED:
            SPAWNED.remove(self.proc)
        self.logf.close()


def keel_alone(cfg, workdir: Path) -> list[Server]:
    port = cfg.base + 60
    return [Server("keel-alone", "keel", port,
                   [cfg.keel, "--bind", HOST, "--port", str(port), "--shards", str(SHARDS), "--dir", "."],
                   workdir, cfg.server_cpus)]


def keel_cluster(cfg, workdir: Path) -> list[Server]:
    ids = [("a", cfg.base, "z1"), ("b", cfg.base + 10, "z2"), ("c", cfg.base + 20, "z3")]
    lines = ['primary = "a"', ""]
    for nid, port, zone in ids:
        lines += ["[[nodes]]", f'id = "{nid}"', f'client = "{HOST}:{port}"', f'zone = "{zone}"',
                  'region = "r1"', ""]
    topo = workdir / "topology.toml"
    topo.write_text("\n".join(lines))
    servers = []
    try:
        for nid, port, _ in ids:
            servers.append(Server(f"keel-{nid}", "keel", port,
                                  [cfg.keel, str(topo), "--node-id", nid, "--bind", HOST, "--port", str(port),
                                   "--shards", str(SHARDS), "--consistency", "eventual", "--dir", "."],
                                  workdir, cfg.server_cpus))
        a, b, c = servers
        until(lambda: a.info("cluster").get("cluster_role") == "primary", 30, "keel a to be primary")
        for s in (b, c):
            until(lambda s=s: s.info("replication").get("master_link_status") == "up", 30,
                  f"{s.name} to follow a")
    except BaseException:
        for s in servers:
            s.stop()
        raise
    return servers


def redis_alone(cfg, workdir: Path) -> list[Server]:
    port = cfg.base + 70
    return [Server("redis-alone", "redis", port, redis_args(cfg, port), workdir, cfg.server_cpus)]


def redis_args(cfg, port: int) -> list[str]:
    return [cfg.redis, "--bind", HOST, "--port", str(port), "--save", "", "--appendonly", "no",
            "--dir", ".", "--protected-mode", "no"]


def redis_cluster(cfg, workdir: Path) -> list[Server]:
    p = cfg.base + 30
    servers = []
    try:
        servers.append(Server("redis-a", "redis", p, redis_args(cfg, p), workdir, cfg.server_cpus))
        for name, port in (("redis-b", cfg.base + 40), ("redis-c", cfg.base + 50)):
            servers.append(Server(name, "redis", port, redis_args(cfg, port) + ["--replicaof", HOST, str(p)],
                                  workdir, cfg.server_cpus))
        for s in servers[1:]:
            until(lambda s=s: s.info("replication").get("master_link_status") == "up", 30,
                  f"{s.name} to follow redis-a")
    except BaseException:
        for s in servers:
            s.stop()
        raise
    return servers


def stop_all(servers) -> None:
    for s in servers:
        try:
            s.stop()
        except Exception as e:  # noqa: BLE001 — cleanup goes on
            log(f"stopping {s.name}: {e!r}")


# --------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------

def value(i: int) -> str:
    return (f"v{i}-" * 20)[:VALUE_SIZE]


def preload(primary: Server, keys: int) -> None:
    """key:%012d (redis-benchmark's -r keys) and mt:N (memtier's) for every N."""
    with Resp(primary.port, timeout=60) as c:
        batch = []
        for i in range(keys):
            batch.append(("SET", f"key:{i:012d}", value(i)))
            batch.append(("SET", f"mt:{i + 1}", value(i)))
            if len(batch) >= 2000:
                bad = [r for r in c.pipeline(batch) if r != "OK"]
                if bad:
                    raise BenchError(f"preload: {bad[:3]}")
                batch = []
        if batch:
            c.pipeline(batch)


def converged(servers: list[Server]) -> bool:
    """Every replica has all the primary has (and keel's backups are ready)."""
    if servers[0].kind == "keel":
        digests = {s.c().call("DEBUG", "DIGEST") for s in servers}
        if len(digests) != 1:
            return False
        return all(s.info("replication").get("replica_ready") == "1" for s in servers[1:])
    off = servers[0].info("replication").get("master_repl_offset")
    sizes = {s.c().call("DBSIZE") for s in servers}
    return len(sizes) == 1 and all(s.info("replication").get("slave_repl_offset") == off for s in servers[1:])


def wait_converged(servers: list[Server]) -> None:
    if len(servers) > 1:
        until(lambda: converged(servers), 120, "the replicas to catch up", interval=0.25)


# --------------------------------------------------------------------------
# measurement
# --------------------------------------------------------------------------

REPL_KEYS = ("writes_forwarded", "reads_local", "reads_forwarded_not_ready",
             "reads_forwarded_own_write", "reads_forwarded_strong")


def counters(s: Server) -> dict[str, int]:
    if s.kind != "keel":
        return {}
    i = s.info("replication")
    out = {k: int(i[k]) for k in REPL_KEYS if k in i}
    st = s.info("stats")
    out["connections_received"] = int(st.get("total_connections_received", 0))
    cl = s.info("cluster")
    out["term"] = int(cl.get("cluster_term", 0) or 0)
    m = re.search(r"calls=(\d+)", s.info("commandstats").get("cmdstat_replconf", ""))
    out["replconf_calls"] = int(m.group(1)) if m else 0
    return out


class Phase:
    """CPU of every server, the machine's other load and (optionally) the links
    between a backup and the primary, over one measured step."""

    def __init__(self, servers: list[Server], link: tuple[Server, Server] | None = None):
        self.servers, self.link = servers, link

    def __enter__(self):
        self.c0 = {s.name: counters(s) for s in self.servers}
        self.s0 = links_between(ss_sockets(), self.link[0].pid, self.link[1].pid) if self.link else None
        self.t0, self.b0, self.o0 = time.monotonic(), busy_ticks(), own_ticks()
        self.k0 = {s.name: s.ticks() for s in self.servers}
        return self

    def __exit__(self, *exc):
        if exc[0] is not None:
            return False
        k1 = {s.name: s.ticks() for s in self.servers}
        t1, b1, o1 = time.monotonic(), busy_ticks(), own_ticks()
        self.elapsed = t1 - self.t0
        self.cpu = {n: k1[n] - self.k0[n] for n in k1}
        others = (b1 - self.b0) - sum(self.cpu.values()) - (o1 - self.o0)
        self.others_cores = max(0.0, others / CLK / self.elapsed) if self.elapsed > 0 else 0.0
        if self.link:
            b, a = self.link
            ports = {a.port: "client", a.port + 10000: "replication", a.port + 10001: "replication",
                     a.port + 20000: "bus", b.port + 20000: "bus"}
            self.bytes = link_delta(self.s0, links_between(ss_sockets(), b.pid, a.pid), ports)
        c1 = {s.name: counters(s) for s in self.servers}
        self.counters = {n: {k: c1[n][k] - self.c0[n].get(k, 0) for k in c1[n]} for n in c1}
        return False

    def record(self, **extra) -> dict:
        d = {"elapsed_s": round(self.elapsed, 3), "cpu_ticks": self.cpu,
             "others_cores": round(self.others_cores, 3), "counters": self.counters}
        if self.link:
            d["bytes"] = self.bytes
        d.update(extra)
        return d


def redis_benchmark(port: int, test: str, n: int, conns: int, keys: int) -> dict:
    out = run_tool(["redis-benchmark", "-h", HOST, "-p", str(port), "-t", test, "-n", str(n),
                    "-c", str(conns), "-r", str(keys), "-d", str(VALUE_SIZE), "--csv"], timeout=600)
    lines = [line for line in out.splitlines() if line.startswith('"')]
    head = [h.strip('"') for h in lines[0].split(",")]
    for line in lines[1:]:
        row = dict(zip(head, (x.strip('"') for x in line.split(","))))
        if row["test"].upper() == test.upper():
            return {"rps": float(row["rps"]), "p50_ms": float(row["p50_latency_ms"]),
                    "p99_ms": float(row["p99_latency_ms"]), "avg_ms": float(row["avg_latency_ms"])}
    raise BenchError(f"redis-benchmark printed no {test} row:\n{out}")


def idle(servers: list[Server], seconds: float) -> dict:
    with Phase(servers) as ph:
        time.sleep(seconds)
    return ph.record()


def reads(servers: list[Server], target: Server, cfg, link=None) -> dict:
    with Phase(servers, link) as ph:
        rb = redis_benchmark(target.port, "get", cfg.reads, READ_CONNS, cfg.keys)
    return ph.record(target=target.name, requests=cfg.reads, client=rb)


def writes(servers: list[Server], target: Server, cfg, conns: int, link=None) -> dict:
    with Phase(servers, link) as ph:
        rb = redis_benchmark(target.port, "set", cfg.writes, conns, cfg.keys)
    return ph.record(target=target.name, requests=cfg.writes, conns=conns, client=rb)


def check_term(servers: list[Server], what: str, notes: list[str]) -> None:
    if servers[0].kind != "keel" or len(servers) < 2:
        return
    roles = {s.name: (s.info("cluster").get("cluster_role"), s.info("cluster").get("cluster_term"))
             for s in servers}
    if roles[servers[0].name] != ("primary", "1") or any(v[1] != "1" for v in roles.values()):
        notes.append(f"after {what}: roles/terms changed: {roles}")
        raise BenchError(f"the keel cluster changed primary during {what}: {roles}")


# --------------------------------------------------------------------------
# the read-your-writes checker and the mixed load
# --------------------------------------------------------------------------

class Checker(threading.Thread):
    """SET k v then GET k at once on one connection, again and again."""

    def __init__(self, port: int):
        super().__init__(daemon=True, name="ryw-checker")
        self.port, self.stop_ev = port, threading.Event()
        self.pairs = self.misses = self.errors = 0
        self.examples: list[str] = []
        self.error: BaseException | None = None

    def run(self):
        try:
            token = f"{os.getpid()}-{random.randrange(1 << 30)}"
            with Resp(self.port) as c:
                i = 0
                while not self.stop_ev.is_set():
                    i += 1
                    k, v = f"ryw:{i % RYW_KEYS}", f"{token}:{i}"
                    c.sock.sendall(encode(("SET", k, v)))
                    r = c.read()
                    if r != "OK":
                        self.errors += 1
                        if len(self.examples) < 5:
                            self.examples.append(f"SET {k} -> {r!r}")
                        continue
                    c.sock.sendall(encode(("GET", k)))
                    got = c.read()
                    self.pairs += 1
                    if got != v:
                        if isinstance(got, RespError):
                            self.errors += 1
                        else:
                            self.misses += 1
                        if len(self.examples) < 5:
                            self.examples.append(f"GET {k} -> {got!r} after SET {v!r}")
        except BaseException as e:  # noqa: BLE001 — reported by the caller
            self.error = e


def memtier(port: int, cfg, workdir: Path) -> dict:
    out_json = workdir / "memtier.json"
    cmd = ["memtier_benchmark", "-s", HOST, "-p", str(port), "--protocol=redis", "-t", "1",
           "-c", str(MIXED_CONNS), "--ratio=1:10", "--key-pattern=R:R", "--key-minimum=1",
           f"--key-maximum={cfg.keys}", "--key-prefix=mt:", "-d", str(VALUE_SIZE),
           f"--test-time={cfg.mixed_s}", "--distinct-client-seed", "--randomize", "--hide-histogram",
           f"--json-out-file={out_json}"]
    run_tool(cmd, timeout=cfg.mixed_s + 120)
    d = json.loads(out_json.read_text())["ALL STATS"]

    def op(x):
        p = x.get("Percentile Latencies", {})
        return {"count": int(x.get("Count", 0)), "ops_s": x.get("Ops/sec"),
                "misses_s": x.get("Misses/sec"), "p50_ms": p.get("p50.00"), "p99_ms": p.get("p99.00")}

    version = sh("memtier_benchmark", "--version").splitlines()
    return {"tool": "memtier_benchmark", "version": version[0] if version else "?", "cmd": " ".join(cmd),
            "sets": op(d["Sets"]), "gets": op(d["Gets"])}


def python_load(port: int, cfg) -> dict:
    """This script's own generator, in a process of its own (away from the
    checker's interpreter lock)."""
    args = json.dumps({"port": port, "seconds": cfg.mixed_s, "conns": MIXED_CONNS, "keys": cfg.keys})
    out = run_tool([sys.executable, str(Path(__file__).resolve()), "--python-load", args],
                   timeout=cfg.mixed_s + 120)
    r = json.loads(out)
    r["tool"] = "python"
    r["version"] = f"bench/front_door.py --python-load (asyncio, {MIXED_CONNS} connections)"
    return r


async def _load_conn(port: int, keys: int, deadline: float, st: dict, rng: random.Random):
    r, w = await asyncio.open_connection(HOST, port)
    val = b"x" * VALUE_SIZE

    async def reply():
        line = await r.readline()
        if line[:1] == b"$":
            n = int(line[1:-2])
            if n >= 0:
                await r.readexactly(n + 2)
                return True
            return False
        if line[:1] == b"-" or not line:
            st["errors"] += 1
        return None

    while time.monotonic() < deadline:
        for j in range(11):
            key = b"mt:%d" % rng.randint(1, keys)
            t0 = time.perf_counter()
            if j == 0:
                w.write(encode((b"SET", key, val)))
                await w.drain()
                await reply()
                st["set_lat"].append(time.perf_counter() - t0)
            else:
                w.write(encode((b"GET", key)))
                await w.drain()
                hit = await reply()
                st["get_lat"].append(time.perf_counter() - t0)
                if hit is False:
                    st["misses"] += 1
    w.close()


def python_load_main(spec: str) -> None:
    a = json.loads(spec)
    st = {"set_lat": [], "get_lat": [], "misses": 0, "errors": 0}

    async def main():
        deadline = time.monotonic() + a["seconds"]
        await asyncio.gather(*(_load_conn(a["port"], a["keys"], deadline, st, random.Random(i * 7919 + time.time_ns()))
                               for i in range(a["conns"])))

    t0 = time.monotonic()
    asyncio.run(main())
    el = time.monotonic() - t0

    def op(xs, misses=None):
        xs.sort()
        q = lambda p: round(xs[min(len(xs) - 1, int(p * len(xs)))] * 1000, 3) if xs else None  # noqa: E731
        return {"count": len(xs), "ops_s": round(len(xs) / el, 1), "p50_ms": q(0.50), "p99_ms": q(0.99),
                "misses_s": None if misses is None else round(misses / el, 1)}

    print(json.dumps({"sets": op(st["set_lat"]), "gets": op(st["get_lat"], st["misses"]),
                      "errors": st["errors"]}))


def mixed(servers: list[Server], backup: Server, cfg, workdir: Path) -> dict:
    checker = Checker(backup.port)
    with Phase(servers, (backup, servers[0])) as ph:
        checker.start()
        try:
            if cfg.load == "memtier":
                load = memtier(backup.port, cfg, workdir)
            else:
                load = python_load(backup.port, cfg)
        finally:
            checker.stop_ev.set()
            checker.join(30)
    if checker.error is not None:
        raise BenchError(f"read-your-writes checker failed: {checker.error!r}")
    return ph.record(target=backup.name, load=load,
                     checker={"pairs": checker.pairs, "misses": checker.misses, "errors": checker.errors,
                              "examples": checker.examples})


# --------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------

def machine() -> str:
    model = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{model}, {os.cpu_count()} CPUs, {mem:.0f} GiB, kernel {platform.release()}"


def ports_used(base: int) -> list[int]:
    ports = []
    for p in (base, base + 10, base + 20, base + 60):  # keel: client, peer (2 shards), bus, http
        ports += [p, p + 10000, p + 10001, p + 20000, p + 1000]
    ports += [base + 30, base + 40, base + 50, base + 70]  # redis
    return ports


def check_ports(base: int) -> None:
    """No listener on any port this run uses (TIME-WAIT leftovers of an
    earlier run are fine: the servers reuse the address)."""
    out = subprocess.run(["ss", "-tlnH"], capture_output=True, text=True, timeout=10).stdout
    listening = {port_of(line.split()[3]) for line in out.splitlines() if len(line.split()) >= 4}
    taken = sorted(listening & set(ports_used(base)))
    if taken:
        raise BenchError(f"ports in use: {taken} (choose another --base-port)")


def run(cfg) -> dict:
    res: dict = {"meta": {}, "keel": {}, "redis": {}, "notes": []}
    meta = res["meta"]
    meta.update(machine=machine(), keel=cfg.keel_desc, redis=sh(cfg.redis, "--version") if cfg.redis else None,
                redis_benchmark=sh("redis-benchmark", "--version"), invocation=cfg.invocation,
                mode="quick" if cfg.quick else "full", sizes=cfg.sizes, server_cpus=cfg.server_cpus,
                client_cpus=cfg.client_cpus, started=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                clk_tck=CLK)
    t_start = time.monotonic()
    work = cfg.workdir

    # --- keel alone ----------------------------------------------------------
    log("keel alone: start, load")
    servers = keel_alone(cfg, work)
    try:
        preload(servers[0], cfg.keys)
        k = res["keel"]
        k["alone_idle"] = idle(servers, cfg.idle_s)
        k["alone_reads"] = []
        for rep in range(cfg.reps):
            k["alone_reads"].append(reads(servers, servers[0], cfg))
            log(f"keel alone reads {rep + 1}/{cfg.reps}: {k['alone_reads'][-1]['client']['rps']:.0f}/s")
    finally:
        stop_all(servers)

    # --- keel cluster ----------------------------------------------------------
    log("keel cluster: start, load, converge")
    servers = keel_cluster(cfg, work)
    try:
        a, b, c = servers
        preload(a, cfg.keys)
        wait_converged(servers)
        k["cluster_idle"] = idle(servers, cfg.idle_s)
        k["reads_primary"], k["reads_backup"] = [], []
        for rep in range(cfg.reps):
            order = [(a, "reads_primary"), (b, "reads_backup")]
            if rep % 2:
                order.reverse()
            for target, key in order:
                k[key].append(reads(servers, target, cfg, link=(b, a)))
                log(f"keel reads via {target.name} {rep + 1}/{cfg.reps}: {k[key][-1]['client']['rps']:.0f}/s")
        check_term(servers, "the read phases", res["notes"])
        k["writes"] = []
        for conns in WRITE_CONNS:
            for rep in range(cfg.reps):
                order = [a, b] if rep % 2 == 0 else [b, a]
                for target in order:
                    k["writes"].append(writes(servers, target, cfg, conns, link=(b, a)))
                    w = k["writes"][-1]["client"]
                    log(f"keel SET via {target.name} c={conns} {rep + 1}/{cfg.reps}: "
                        f"p50 {w['p50_ms']} ms p99 {w['p99_ms']} ms")
        check_term(servers, "the write phases", res["notes"])
        wait_converged(servers)
        log(f"keel mixed 1:10 load on b for {cfg.mixed_s} s ({cfg.load})")
        k["mixed"] = mixed(servers, b, cfg, work)
        check_term(servers, "the mixed load", res["notes"])
        wait_converged(servers)
    finally:
        stop_all(servers)

    # --- redis ----------------------------------------------------------------
    if cfg.redis:
        r = res["redis"]
        log("redis alone")
        servers = redis_alone(cfg, work)
        try:
            preload(servers[0], cfg.keys)
            r["alone_idle"] = idle(servers, cfg.idle_s)
            r["alone_reads"] = [reads(servers, servers[0], cfg) for _ in range(cfg.reps)]
        finally:
            stop_all(servers)
        log("redis primary + 2 replicas")
        servers = redis_cluster(cfg, work)
        try:
            a, b, c = servers
            preload(a, cfg.keys)
            wait_converged(servers)
            r["cluster_idle"] = idle(servers, cfg.idle_s)
            r["reads_primary"], r["reads_backup"] = [], []
            for rep in range(cfg.reps):
                order = [(a, "reads_primary"), (b, "reads_backup")]
                if rep % 2:
                    order.reverse()
                for target, key in order:
                    r[key].append(reads(servers, target, cfg, link=(b, a)))
            r["writes"] = []
            for conns in WRITE_CONNS:
                for rep in range(cfg.reps):
                    r["writes"].append(writes(servers, a, cfg, conns))
        finally:
            stop_all(servers)
    meta["duration_s"] = round(time.monotonic() - t_start)
    return res


# --------------------------------------------------------------------------
# the report
# --------------------------------------------------------------------------

def us_per(ticks: float, n: int) -> float:
    return ticks / CLK * 1e6 / n if n else float("nan")


def pooled(phases: list[dict], name: str) -> float:
    """CPU µs per request of one server over every repetition."""
    return us_per(sum(p["cpu_ticks"][name] for p in phases), sum(p["requests"] for p in phases))


def spread(phases: list[dict], name: str) -> str:
    xs = [us_per(p["cpu_ticks"][name], p["requests"]) for p in phases]
    return "" if len(xs) < 2 else f" ({min(xs):.1f}–{max(xs):.1f})"


def fmt(x, nd=1) -> str:
    return "–" if x is None or x != x else f"{x:.{nd}f}"


def others_range(res: dict) -> str:
    xs = []
    for side in ("keel", "redis"):
        for v in res.get(side, {}).values():
            for p in (v if isinstance(v, list) else [v]):
                if isinstance(p, dict) and "others_cores" in p:
                    xs.append(p["others_cores"])
    return f"{min(xs):.2f}–{max(xs):.2f} (median {statistics.median(xs):.2f})" if xs else "?"


def idle_rate(ph: dict, name: str) -> float:
    """% of one core a server used while idle."""
    return ph["cpu_ticks"][name] / CLK / ph["elapsed_s"] * 100


def verdict(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def report(res: dict) -> str:
    m, k, r = res["meta"], res["keel"], res.get("redis") or {}
    L: list[str] = []
    L.append(f"## {m['started']} — Every node is a front door (issue 12)")
    L.append("")
    L.append(f"`{m.get('invocation') or 'bench/front_door.sh'}` ({m['mode']} mode, {m.get('duration_s', 0) / 60:.1f} min). "
             "Three keel processes on 127.0.0.1 with one `[[nodes]]` topology: a (primary, zone z1), b (z2), "
             f"c (z3), eventual consistency, `--shards {SHARDS}`, default `--read-max-lag` (1000 ms); a keel with "
             "no backups for the primary-alone figure; redis-server alone and as a primary with two replicas "
             f"beside them. Every server pinned to CPU {m['server_cpus']} (`taskset`), the clients to CPU "
             f"{','.join(map(str, m['client_cpus']))}: one core for all the servers of a setup, so CPU time, "
             "not throughput, is what compares. Data: "
             f"{m['sizes']['keys']:,} keys for redis-benchmark and {m['sizes']['keys']:,} for the 1:10 load, "
             f"{VALUE_SIZE}-byte values, replicated everywhere before anything is measured. CPU: utime+stime of "
             f"each server process (`/proc/PID/stat`, every thread, {m['clk_tck']} ticks/s) before and after a "
             "step, divided by the requests sent. Other processes kept "
             f"{others_range(res)} cores busy during the measured steps (`/proc/stat` minus this run's "
             "processes).")
    L.append("")
    L.append(f"- machine: {m['machine']}")
    L.append(f"- keel: {m['keel']}")
    if m.get("redis"):
        L.append(f"- redis: {m['redis']}")
    L.append(f"- load: {m.get('redis_benchmark')} (steps 1, 2); step 3: "
             f"{k['mixed']['load']['version']}")
    sz = m["sizes"]
    L.append(f"- sizes: {sz['reads']:,} GETs per read step (`-c {READ_CONNS}`, unpipelined, random existing "
             f"keys), {sz['writes']:,} SETs per write step, {sz['reps']} repetition(s) alternating the target; "
             f"1:10 load for {sz['mixed_s']} s; idle background measured over {sz['idle_s']} s")
    L.append("")

    # 1 -------------------------------------------------------------------
    L.append("### 1. CPU per read: a backup serving reads vs the primary")
    L.append("")
    L.append("CPU µs per GET of each server (pooled over the repetitions; range per repetition in brackets); "
             "sum: every server of the setup, background included; last column: the sum against the same "
             "server alone.")
    L.append("")
    L.append("| setup | GETs sent to | GET/s (client) | primary µs | backup b µs | backup c µs | sum µs | sum / alone |")
    L.append("|---|---|---:|---:|---:|---:|---:|---:|")
    rows = []
    for side, names, label in (("keel", ("keel-a", "keel-b", "keel-c"), "keel"),
                               ("redis", ("redis-a", "redis-b", "redis-c"), "redis")):
        d = res.get(side) or {}
        if not d.get("alone_reads"):
            continue
        alone_name = f"{side}-alone"
        alone = pooled(d["alone_reads"], alone_name)
        L.append(f"| {label} alone | the server | {statistics.median(p['client']['rps'] for p in d['alone_reads']):,.0f} | "
                 f"{alone:.2f}{spread(d['alone_reads'], alone_name)} | | | {alone:.2f} | 1.00 |")
        for key, to in (("reads_primary", "primary a"), ("reads_backup", "backup b" if side == "keel" else "replica b")):
            ph = d[key]
            per = [pooled(ph, n) for n in names]
            total = sum(per)
            L.append(f"| {label} a + b + c | {to} | {statistics.median(p['client']['rps'] for p in ph):,.0f} | "
                     + " | ".join(f"{x:.2f}{spread(ph, n)}" for x, n in zip(per, names))
                     + f" | {total:.2f} | {total / alone:.2f} |")
            rows.append((side, key, per, total, alone))
    L.append("")
    kp = [x for x in rows if x[0] == "keel"]
    if len(kp) == 2:
        (_, _, per_p, _, _), (_, _, per_b, total_b, alone) = kp
        backup_local, primary_direct = per_b[1], per_p[0]
        served = sum(p["counters"]["keel-b"].get("reads_local", 0) for p in k["reads_backup"])
        sent = sum(p["requests"] for p in k["reads_backup"])
        fwd = sum(p["counters"]["keel-b"].get(x, 0) for p in k["reads_backup"]
                  for x in ("reads_forwarded_not_ready", "reads_forwarded_own_write", "reads_forwarded_strong"))
        reps_b = [us_per(p["cpu_ticks"]["keel-b"], p["requests"]) for p in k["reads_backup"]]
        reps_a = [us_per(p["cpu_ticks"]["keel-a"], p["requests"]) for p in k["reads_primary"]]
        if backup_local <= primary_direct:
            v = verdict(True)
        elif len(reps_b) > 1 and min(reps_b) <= max(reps_a):
            v = "**not met strictly, equal within the run-to-run spread** (the repetitions' ranges overlap)"
        else:
            v = verdict(False)
        L.append(f"- A read served by backup b costs b **{backup_local:.2f} µs** against **{primary_direct:.2f} µs** "
                 f"on the primary for the same read ({backup_local / primary_direct:.2f}×): target \"no more\" {v}.")
        L.append(f"- The three nodes' CPU per read summed: **{total_b:.2f} µs** against **{alone:.2f} µs** for a "
                 f"keel alone = **{total_b / alone:.2f}×**: target ≤ 1.1× {verdict(total_b <= 1.1 * alone)}.")
        L.append(f"- b's counters over those steps: `reads_local` +{served:,} for {sent:,} GETs sent, "
                 f"forwarded +{fwd:,}.")
        ci = k.get("cluster_idle")
        if ci:
            bg = sum(ci["cpu_ticks"][n] / ci["elapsed_s"] * p["elapsed_s"] for n in ("keel-a", "keel-b", "keel-c")
                     for p in k["reads_backup"])
            L.append(f"- Of the sum, {us_per(bg, sent):.2f} µs per read is the three nodes' idle background "
                     "(their idle rate below times the steps' duration).")
    ci, ai = k.get("cluster_idle"), k.get("alone_idle")
    if ci and ai:
        L.append("- Idle background (no clients, % of one core): keel alone "
                 f"{idle_rate(ai, 'keel-alone'):.1f} %; keel a / b / c "
                 + " / ".join(f"{idle_rate(ci, n):.1f}" for n in ("keel-a", "keel-b", "keel-c")) + " %"
                 + (f"; redis alone {idle_rate(r['alone_idle'], 'redis-alone'):.1f} %, redis a / b / c "
                    + " / ".join(f"{idle_rate(r['cluster_idle'], n):.1f}" for n in ("redis-a", "redis-b", "redis-c"))
                    + " %" if r.get("cluster_idle") else "") + ". The sums above include it.")
    L.append("")

    # 2 -------------------------------------------------------------------
    L.append("### 2. Forwarding cost: SET sent to a backup vs to the primary")
    L.append("")
    L.append("redis-benchmark `-t set`, unpipelined, with 1 connection (one write at a time) and with 10; "
             "latency as the client sees it (p50/p99 are medians over the repetitions); CPU µs per SET of each "
             "server (pooled). Forwarded: b's `writes_forwarded`; link bytes: b↔a on the forwarding links per SET.")
    L.append("")
    L.append("| setup | conns | SETs sent to | SET/s | p50 µs | p99 µs | primary µs | backup b µs | backup c µs "
             "| sum µs | forwarded | link bytes/SET |")
    L.append("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    added = {}
    for side in ("keel", "redis"):
        d = res.get(side) or {}
        names = (f"{side}-a", f"{side}-b", f"{side}-c")
        for conns in WRITE_CONNS:
            for tgt in names:
                ph = [p for p in d.get("writes", []) if p["conns"] == conns and p["target"] == tgt]
                if not ph:
                    continue
                p50 = statistics.median(p["client"]["p50_ms"] for p in ph) * 1000
                p99 = statistics.median(p["client"]["p99_ms"] for p in ph) * 1000
                rps = statistics.median(p["client"]["rps"] for p in ph)
                per = [pooled(ph, n) for n in names]
                n = sum(p["requests"] for p in ph)
                fwd = sum(p["counters"].get(f"{side}-b", {}).get("writes_forwarded", 0) for p in ph)
                link = sum(p.get("bytes", {}).get("client", {}).get("to_primary", 0)
                           + p.get("bytes", {}).get("client", {}).get("from_primary", 0) for p in ph)
                to = {f"{side}-a": "primary a", f"{side}-b": "backup b"}.get(tgt, tgt)
                L.append(f"| {side} | {conns} | {to} | {rps:,.0f} | {p50:.0f} | {p99:.0f} | "
                         + " | ".join(f"{x:.2f}" for x in per) + f" | {sum(per):.2f} | "
                         + (f"{fwd:,}" if side == "keel" else "–") + " | "
                         + (f"{link / n:.0f}" if side == "keel" else "–") + " |")
                added[(side, conns, tgt)] = (p50, p99, per)
    L.append("")
    fw_ph = [p for p in k.get("writes", []) if p["target"] == "keel-b"]
    if fw_ph and "replconf_calls" in fw_ph[0]["counters"]["keel-a"]:
        rc = sum(p["counters"]["keel-a"].get("replconf_calls", 0) for p in fw_ph)
        nf = sum(p["counters"]["keel-b"].get("writes_forwarded", 0) for p in fw_ph)
        L.append(f"- For the {nf:,} SETs forwarded by b, primary a ran {rc:,} `REPLCONF` commands "
                 "(`INFO commandstats`): the `REPLCONF SEQS` that follows each forwarded write to bring back "
                 "the seqs read-your-writes needs.")
    for conns in WRITE_CONNS:
        p, bk = added.get(("keel", conns, "keel-a")), added.get(("keel", conns, "keel-b"))
        if p and bk:
            L.append(f"- {conns} connection(s): forwarding adds **{bk[0] - p[0]:+.0f} µs at p50, {bk[1] - p[1]:+.0f} µs "
                     f"at p99**; the backup spends **{bk[2][1]:.2f} µs** of CPU per forwarded SET, and the "
                     f"primary {bk[2][0]:.2f} µs per SET arriving through b against {p[2][0]:.2f} µs sent to it "
                     "directly.")
    L.append("")

    # 3 -------------------------------------------------------------------
    mx = k["mixed"]
    ld, ck, cn = mx["load"], mx["checker"], mx["counters"]["keel-b"]
    local = cn.get("reads_local", 0)
    fw = {x: cn.get(x, 0) for x in ("reads_forwarded_not_ready", "reads_forwarded_own_write", "reads_forwarded_strong")}
    total = local + sum(fw.values())
    load_reads = total - ck["pairs"]  # the checker sends a GET (counted) after each acknowledged SET
    lo = (local - ck["pairs"]) / load_reads if load_reads > 0 else float("nan")
    hi = min(local, load_reads) / load_reads if load_reads > 0 else float("nan")
    share_all = local / total if total else float("nan")
    L.append("### 3. Reads served locally under a 1:10 write:read load on a backup")
    L.append("")
    tool = ("memtier_benchmark" if ld["tool"] == "memtier_benchmark"
            else "this script's generator (memtier_benchmark not used)")
    L.append(f"{tool}: {MIXED_CONNS} connections to backup b, 1 SET : 10 GET over {m['sizes']['keys']:,} random "
             f"keys (every one present), {VALUE_SIZE}-byte values, {m['sizes']['mixed_s']} s; meanwhile one "
             "more client on b does SET k v then GET k at once on its connection (1,000 keys). b's counters "
             "over the step:")
    L.append("")
    L.append("| load SET/s | load GET/s | SET p50 / p99 ms | GET p50 / p99 ms | writes_forwarded | reads_local | "
             "forwarded: not_ready / own_write / strong | local share |")
    L.append("|---:|---:|---|---|---:|---:|---|---:|")
    L.append(f"| {fmt(ld['sets']['ops_s'], 0)} | {fmt(ld['gets']['ops_s'], 0)} | "
             f"{fmt(ld['sets']['p50_ms'], 3)} / {fmt(ld['sets']['p99_ms'], 3)} | "
             f"{fmt(ld['gets']['p50_ms'], 3)} / {fmt(ld['gets']['p99_ms'], 3)} | {cn.get('writes_forwarded', 0):,} | "
             f"{local:,} | {fw['reads_forwarded_not_ready']:,} / {fw['reads_forwarded_own_write']:,} / "
             f"{fw['reads_forwarded_strong']:,} | {share_all * 100:.2f} % |")
    L.append("")
    if abs(hi - lo) < 0.0005:
        share_txt = f"**{lo * 100:.2f} %**"
    else:
        share_txt = f"between **{lo * 100:.2f} %** and {hi * 100:.2f} %"
    L.append(f"- Share of the load's reads served by b itself: {share_txt} (the counters are per node: the "
             f"checker's {ck['pairs']:,} GETs are taken out, counted as forwarded for the lower figure and as "
             f"local for the upper one); target ≥ 95 % {verdict(lo >= 0.95)}. The load's own count of GETs: "
             f"{ld['gets']['count']:,} (counters minus the checker's: {load_reads:,}).")
    L.append(f"- Read-your-writes: {ck['pairs']:,} SET-then-GET pairs, **{ck['misses']} reads missed the "
             f"client's own write** (target 0 {verdict(ck['misses'] == 0)}), {ck['errors']} errors"
             + (f"; e.g. {'; '.join(ck['examples'][:3])}" if ck["examples"] else "") + ".")
    L.append("")

    # 4 -------------------------------------------------------------------
    L.append("### 4. Bytes between the backup and the primary per read served by the backup")
    L.append("")
    L.append("Every TCP connection between the two processes, from the kernel's per-socket counters "
             "(`ss -ti`: bytes_received at each end), over the read steps of 1 (GETs sent to b) and, for "
             "comparison, the write steps of 2 (SETs sent to b).")
    L.append("")
    L.append("| step | requests | s | forwarding links (a's client port) B | replication B | cluster bus B | "
             "other B | new connections to a | forwarding B per request |")
    L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")

    def bytes_row(label, phases, sess="keel"):
        if not phases:
            return
        tot: dict[str, int] = {}
        for p in phases:
            for cat, v in p.get("bytes", {}).items():
                tot[cat] = tot.get(cat, 0) + v["to_primary"] + v["from_primary"]
        n = sum(p["requests"] for p in phases)
        secs = sum(p["elapsed_s"] for p in phases)
        newc = sum(p["counters"].get(f"{sess}-a", {}).get("connections_received", 0) for p in phases)
        other = sum(v for c, v in tot.items() if c not in ("client", "replication", "bus"))
        L.append(f"| {label} | {n:,} | {secs:.1f} | {tot.get('client', 0):,} | {tot.get('replication', 0):,} | "
                 f"{tot.get('bus', 0):,} | {other:,} | {newc if sess == 'keel' else '–'} | "
                 f"{tot.get('client', 0) / n:.3f} |")
        return tot, n, secs

    rb = bytes_row("keel: GETs to backup b", k.get("reads_backup"))
    bytes_row("keel: SETs to backup b (1 and 10 conns)", [p for p in k.get("writes", []) if p["target"] == "keel-b"])
    if r.get("reads_backup"):
        tot: dict[str, int] = {}
        for p in r["reads_backup"]:
            for cat, v in p.get("bytes", {}).items():
                tot[cat] = tot.get(cat, 0) + v["to_primary"] + v["from_primary"]
        n = sum(p["requests"] for p in r["reads_backup"])
        secs = sum(p["elapsed_s"] for p in r["reads_backup"])
        L.append(f"| redis: GETs to replica b (replication runs on a's client port) | {n:,} | {secs:.1f} | "
                 f"{sum(tot.values()):,} (all) | | | | – | – |")
    L.append("")
    if rb:
        tot, n, secs = rb
        bg = tot.get("replication", 0) + tot.get("bus", 0)
        L.append(f"- Forwarding bytes per read served by b: **{tot.get('client', 0) / n:.3f}** (target 0 "
                 f"{verdict(tot.get('client', 0) == 0)}). Replication and bus traffic go on whatever the reads "
                 f"do: {bg / secs:,.0f} B/s here ({bg / n:.3f} B per read over these steps).")
    if res.get("notes"):
        L.append("")
        L.append("Notes: " + "; ".join(res["notes"]))
    L.append("")
    return "\n".join(L)


# --------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller steps, one repetition (~2 min)")
    ap.add_argument("--json", help="save every figure here")
    ap.add_argument("--report", nargs="+", help="print the Markdown of saved runs and exit")
    ap.add_argument("--work", help="directory for the servers' data and logs (default: a new temp dir)")
    ap.add_argument("--base-port", type=int, default=7301, help="keel a; the others follow (default 7301)")
    ap.add_argument("--load", choices=("auto", "memtier", "python"), default="auto",
                    help="step 3's load generator (auto: memtier_benchmark when on PATH)")
    ap.add_argument("--no-redis", action="store_true", help="keel only")
    ap.add_argument("--python-load", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.python_load:
        python_load_main(args.python_load)
        return 0
    if args.report:
        for f in args.report:
            print(report(json.loads(Path(f).read_text())))
        return 0

    cfg = argparse.Namespace(**(QUICK if args.quick else FULL))
    cfg.sizes = dict(QUICK if args.quick else FULL)
    cfg.quick, cfg.base = args.quick, args.base_port
    cfg.keel = os.environ.get("KEEL_BIN") or str(REPO / "target" / "release" / "keel")
    if not os.access(cfg.keel, os.X_OK):
        print(f"keel binary {cfg.keel} not found (set KEEL_BIN)", file=sys.stderr)
        return 2
    cfg.keel_desc = os.environ.get("KEEL_DESC") or f"{cfg.keel} (sha1 {sh('sha1sum', cfg.keel)[:12]})"
    cfg.redis = None if args.no_redis else shutil.which("redis-server")
    for tool in ("redis-benchmark", "ss", "taskset"):
        if not shutil.which(tool):
            print(f"{tool} not found", file=sys.stderr)
            return 2
    cfg.load = args.load
    if cfg.load == "auto":
        cfg.load = "memtier" if shutil.which("memtier_benchmark") else "python"
    cfg.invocation = os.environ.get("FRONT_DOOR_INVOCATION") or "python3 bench/front_door.py " + " ".join(sys.argv[1:])
    cfg.server_cpus, cfg.client_cpus = cpu_sets()
    if cfg.server_cpus is not None:
        os.sched_setaffinity(0, cfg.client_cpus)  # this script and every tool it runs
    cfg.workdir = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="keel-front-door."))
    cfg.workdir.mkdir(parents=True, exist_ok=True)
    try:
        check_ports(cfg.base)
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    def on_signal(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)
    log(f"work dir {cfg.workdir}; servers on CPU {cfg.server_cpus}, clients on {cfg.client_cpus}; "
        f"load generator for step 3: {cfg.load}")
    try:
        res = run(cfg)
    except BenchError as e:
        log(f"error: {e}")
        return 1
    finally:
        for p in list(SPAWNED):
            if p.poll() is None:
                p.kill()
                p.wait()
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    print(report(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Failover benchmark (issue 11): keel's own failover against Redis + Sentinel,
on the network-namespace harness of tests/cluster (three hosts in three zones,
5 ms one way between zones through the delaying relays).

    sudo KEEL_BIN=target/release/keel python3 bench/failover.py [--scenario NAME]... [--rounds N]
    python3 bench/failover.py --report RUN.json...    # the Markdown again, from saved runs

Hosts h1, h2, h3 (zones z1, z2, z3) run the servers; the clients run in a
fourth namespace `cl` (zone zc, 5 ms from every server), so every round sees
the same client latency wherever the primary is. keel: one `[[nodes]]`
topology naming every node by its relay address (client 6379, bus 26379,
replication 16379/16380 all delayed across zones), `--shards 2 --peer-port
16379 --appendonly yes`, default node-timeout (1000 ms). Redis: redis-server
on 6379 (h1 primary, h2/h3 `replicaof`, `replica-announce-ip` = relay address)
and one Sentinel per host on 26379 (`sentinel announce-ip` = relay address,
quorum 2).

Writers (two threads in `cl`) find the primary with `SENTINEL
get-master-addr-by-name keel` (keel answers it on every node's client port,
Redis on the Sentinels), SET unique keys in a tight loop, one at a time, and
record each acknowledged key and when its OK arrived; on any error (refused,
reset, timeout, -READONLY, ...) they ask again. Figures per round: the longest
time between two consecutive acks (the client-visible gap), and the
acknowledged keys missing on the new primary once the round is over.

Scenarios (--scenario, repeatable; default all, in this order):
  kill-eventual   SIGKILL of the keel primary, --consistency eventual
  kill-strong     the same, --consistency strong
  switchover      FAILOVER on the keel primary (planned), eventual
  sentinel-1000   SIGKILL of the redis primary, down-after-milliseconds 1000
  sentinel-30000  the same with Redis's default 30000
  pauses          SIGSTOP the keel primary for 0.2-0.8 s, again and again
                  (--minutes), counting term changes
  heal            isolate the keel primary for 3 s (eventual) with two writers
                  in `cl` and one inside the primary's own host, heal, time
                  until one agreed primary and equal DEBUG DIGEST everywhere
After each kill the old primary is restarted (keel: same arguments; redis:
`replicaof` the new primary) and every round starts from a healthy cluster
(one agreed primary, equal DEBUG DIGEST on every node). A keel round that does
not recover (no primary within 15 s, digests never equal) is recorded as a
failure with the nodes' state and log tails, and the cluster is rebuilt.

Prints one line per round on stderr and a Markdown fragment on stdout; --json
saves every round (default: failover-<time>.json in --out-dir).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import random
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests" / "cluster"))
sys.path.insert(0, str(HERE))

from bench_common import parse_info, sh  # noqa: E402
from harness import Cluster, HarnessError, RespError  # noqa: E402

NODES = ("h1", "h2", "h3")
CLIENT = "cl"
ZONES = {"h1": "z1", "h2": "z2", "h3": "z3", CLIENT: "zc"}
DELAY_MS = 5
PORT = 6379
PEER_PORT = 16379
BUS_PORT = 26379  # keel's cluster bus (client port + 20000); Redis's Sentinels use it too
SENTINEL_PORT = 26379
PORTS = (PORT, PEER_PORT, PEER_PORT + 1, BUS_PORT)
SHARDS = 2
DB = "keel"  # keel's database-name; the Sentinels' master name
WRITERS = 2
OP_TIMEOUT = 1.0  # s: a writer gives up on a reply after this and asks again
NEW_PRIMARY_BOUND = 15.0  # s: a keel round fails when no new primary takes writes by then
HEALTHY_BOUND = 30.0  # s: ... or when the cluster is not whole again by then
ROUNDS = {"kill-eventual": 20, "kill-strong": 20, "switchover": 20, "sentinel-1000": 20,
          "sentinel-30000": 4, "heal": 10}
KEEP = False  # --keep: keep every cluster's logs and data, not only failed ones
SCENARIOS = ["kill-eventual", "kill-strong", "switchover", "sentinel-1000", "sentinel-30000",
             "pauses", "heal"]


def log(msg: str) -> None:
    print(f"[failover {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class RoundFailure(Exception):
    """A round whose cluster did not do what it must (no primary, no convergence)."""


def pairs(reply) -> dict:
    """A flat [k, v, k, v, ...] reply (RESP2 map) as a dict."""
    if isinstance(reply, dict):
        return reply
    return {reply[i]: reply[i + 1] for i in range(0, len(reply) - 1, 2)}


def pct(xs, q: float):
    """Nearest-rank percentile (q in 0..100); None when empty."""
    xs = sorted(x for x in xs if x is not None)
    if not xs:
        return None
    return xs[max(0, math.ceil(q / 100 * len(xs)) - 1)]


# --------------------------------------------------------------------------
# probes: persistent connections from a node's own namespace to that node
# --------------------------------------------------------------------------

class Probe:
    """One connection per (host, port), made from inside the host (no delay),
    reopened after any error. Every call is bounded by `timeout`."""

    def __init__(self, c: Cluster, timeout: float = 0.5):
        self.c, self.timeout = c, timeout
        self.conns: dict = {}

    def call(self, host: str, *args, port: int = PORT, timeout: float | None = None):
        key = (host, port)
        conn = self.conns.get(key)
        try:
            if conn is None:
                conn = self.c.connect(host, host, port=port, timeout=timeout or self.timeout, direct=True)
                self.conns[key] = conn
            conn.sock.settimeout(timeout or self.timeout)
            return conn.call(*args)
        except RespError:
            raise
        except BaseException:
            self.drop(host, port)
            raise

    def drop(self, host: str, port: int = PORT) -> None:
        conn = self.conns.pop((host, port), None)
        if conn is not None:
            conn.close()

    def close(self) -> None:
        for conn in self.conns.values():
            conn.close()
        self.conns.clear()

    def info(self, host: str, section: str = "cluster") -> dict[str, str]:
        return parse_info(self.call(host, "INFO", section))

    def try_info(self, host: str, section: str = "cluster") -> dict[str, str] | None:
        try:
            return self.info(host, section)
        except (OSError, ConnectionError, RespError, HarnessError):
            return None

    def digest(self, host: str) -> str:
        return self.call(host, "DEBUG", "DIGEST", timeout=5)


# --------------------------------------------------------------------------
# writers
# --------------------------------------------------------------------------

class Writer(threading.Thread):
    """A client in `home` that asks the Sentinel endpoints for the primary and
    SETs unique keys there, one at a time; records (t, key, value, node) per OK."""

    def __init__(self, env, wid: int, home: str, tag: str, stop: threading.Event):
        super().__init__(daemon=True, name=f"writer-{tag}-{wid}")
        self.env, self.c, self.wid, self.home, self.tag, self.stop_ev = env, env.c, wid, home, tag, stop
        self.acks: list[tuple[float, str, str, str]] = []
        self.errors: dict[str, int] = {}
        self.discoveries = 0
        self.error: BaseException | None = None
        # ask the own host's endpoint first (the local writer of `heal`), else start anywhere
        self.first = NODES.index(home) if home in NODES else wid % len(NODES)

    def note(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1

    def discover(self) -> str | None:
        self.discoveries += 1
        for i in range(len(NODES)):
            h = NODES[(self.first + i) % len(NODES)]
            if self.stop_ev.is_set():
                return None
            try:
                with self.c.connect(self.home, h, port=self.env.sentinel_port, timeout=0.5) as s:
                    r = s.call("SENTINEL", "get-master-addr-by-name", DB)
            except (OSError, ConnectionError, RespError, HarnessError):
                continue
            if isinstance(r, list) and len(r) == 2 and r[0] in self.env.ip_host:
                if self.home not in NODES:
                    self.first = NODES.index(h)  # next time, the endpoint that answered
                return self.env.ip_host[r[0]]
        return None

    def run(self):
        try:
            self._run()
        except BaseException as e:  # noqa: BLE001 — reported by Load.stop
            self.error = e

    def _run(self):
        conn, node, n = None, None, 0
        while not self.stop_ev.is_set():
            if conn is None:
                node = self.discover()
                if node is None:
                    self.note("no-primary-known")
                    time.sleep(0.02)
                    continue
                try:
                    conn = self.c.connect(self.home, node, timeout=OP_TIMEOUT)
                except (OSError, HarnessError) as e:
                    self.note(f"connect:{type(e).__name__}")
                    time.sleep(0.01)
                    continue
            n += 1
            key, value = f"{self.tag}:{self.wid}:{n}", str(n)
            try:
                reply = conn.call("SET", key, value)
            except RespError as e:
                self.note(str(e).split()[0] if str(e) else "error")
                conn.close()
                conn = None
                time.sleep(0.01)
                continue
            except (OSError, ConnectionError) as e:
                self.note(type(e).__name__)
                conn.close()
                conn = None
                continue
            if reply == "OK":
                self.acks.append((time.monotonic(), key, value, node))
            else:
                self.note(f"reply:{reply!r}")
        if conn is not None:
            conn.close()


class Load:
    def __init__(self, env, tag: str, homes):
        self.ev = threading.Event()
        env.loads.append(self)
        self.writers = [Writer(env, i, h, tag, self.ev) for i, h in enumerate(homes)]
        for w in self.writers:
            w.start()

    def acks(self):
        return sorted((a for w in self.writers for a in list(w.acks)), key=lambda a: a[0])

    def count(self) -> int:
        return sum(len(w.acks) for w in self.writers)

    def first_ack(self, after: float, not_by: str | None):
        best = None
        for w in self.writers:
            for a in reversed(w.acks):
                if a[0] <= after:
                    break
                if a[3] != not_by and (best is None or a[0] < best[0]):
                    best = a
        return best

    def signal_stop(self) -> None:
        self.ev.set()

    def stop(self, timeout: float = 10.0):
        self.ev.set()
        for w in self.writers:
            w.join(timeout)
            if w.is_alive():
                raise RoundFailure(f"{w.name} still running {timeout}s after stop")
            if w.error is not None:
                raise w.error
        return self.acks()

    def errors(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for w in self.writers:
            for k, v in w.errors.items():
                out[k] = out.get(k, 0) + v
        return out


def longest_gap(acks) -> tuple[float, float]:
    """(longest time between two consecutive acks, when it began)."""
    best, at = 0.0, 0.0
    for a, b in zip(acks, acks[1:]):
        if b[0] - a[0] > best:
            best, at = b[0] - a[0], a[0]
    return best, at


def read_back(c: Cluster, node: str, acks, batch: int = 1000):
    """The acks whose key does not hold its value on `node` (pipelined GETs, local)."""
    missing = []
    with c.connect(node, node, timeout=10, direct=True) as conn:
        for at in range(0, len(acks), batch):
            chunk = acks[at:at + batch]
            conn.sock.sendall(b"".join(b"*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n" % (len(a[1]), a[1].encode())
                                       for a in chunk))
            for a in chunk:
                try:
                    r = conn.read()
                except RespError as e:
                    r = e
                if r != a[2]:
                    missing.append(a)
    return missing


def wait_until(cond, timeout: float, interval: float = 0.05):
    """cond()'s first truthy value, or None after `timeout` (errors count as not yet)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            v = cond()
            if v:
                return v
        except (OSError, ConnectionError, RespError, HarnessError):
            pass
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)


# --------------------------------------------------------------------------
# CPU used by others (this machine is shared)
# --------------------------------------------------------------------------

TICK = os.sysconf("SC_CLK_TCK")


def _busy_ticks() -> int:
    with open("/proc/stat") as f:
        v = f.readline().split()[1:]
    return int(v[0]) + int(v[1]) + int(v[2]) + int(v[5]) + int(v[6]) + int(v[7])


def _our_ticks() -> int:
    """CPU of this process, its reaped children and its live children (keel,
    redis, relays are all children: the harness forks them)."""
    t = os.times()
    total = (t.user + t.system + t.children_user + t.children_system) * TICK
    me = str(os.getpid())
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
        except OSError:
            continue
        f_ = s.rsplit(")", 1)[1].split()
        if f_[1] == me:
            total += int(f_[11]) + int(f_[12]) + int(f_[13]) + int(f_[14])
    return int(total)


class LoadMeter:
    def __init__(self):
        self.t0, self.b0, self.o0 = time.monotonic(), _busy_ticks(), _our_ticks()
        self.load0 = os.getloadavg()

    def done(self) -> dict:
        t1, b1, o1 = time.monotonic(), _busy_ticks(), _our_ticks()
        secs = t1 - self.t0
        return {"seconds": round(secs, 1),
                "ours_cores": round((o1 - self.o0) / TICK / secs, 2),
                "other_cores": round(max(0, (b1 - self.b0) - (o1 - self.o0)) / TICK / secs, 2),
                "loadavg_start": [round(x, 2) for x in self.load0],
                "loadavg_end": [round(x, 2) for x in os.getloadavg()],
                "top_others": top_others()}


def top_others(n: int = 4) -> list[str]:
    """The busiest processes that are not this run's (by %CPU over their life)."""
    out = sh("ps", "-eo", "pid,ppid,pcpu,etime,args", "--sort=-pcpu", "--no-headers")
    me = os.getpid()
    rows = []
    for line in out.splitlines():
        p = line.split(None, 4)
        if len(p) < 5 or int(p[0]) == me or int(p[1]) == me or p[4].startswith("ps "):
            continue
        if float(p[2]) < 5.0:
            break
        rows.append(f"{p[2]}% {p[4][:90]}")
        if len(rows) >= n:
            break
    return rows


# --------------------------------------------------------------------------
# keel
# --------------------------------------------------------------------------

class KeelEnv:
    engine = "keel"
    sentinel_port = PORT  # every keel node answers SENTINEL on its client port

    def __init__(self, consistency: str, extra=()):
        self.consistency, self.extra = consistency, list(extra)
        self.loads: list[Load] = []
        self.c: Cluster | None = None
        self.dirs_kept: list[str] = []

    def args(self, h: str) -> list[str]:
        return [str(self.topology), "--node-id", h, "--shards", str(SHARDS), "--peer-port", str(PEER_PORT),
                "--appendonly", "yes", "--consistency", self.consistency, *self.extra]

    def command_line(self) -> str:
        return ("keel $TOPOLOGY --node-id hN --shards 2 --peer-port 16379 --appendonly yes "
                f"--consistency {self.consistency}" + "".join(f" {a}" for a in self.extra)
                + "   # + --bind <direct ip> --port 6379 --dir <host dir> (harness)")

    def open(self) -> None:
        self.c = Cluster(ZONES, delay_ms=DELAY_MS, ports=PORTS, keep=KEEP)
        self.c.open()
        self.ip_host = {}
        for h in NODES:
            self.ip_host[self.c.relay_addr(h)[0]] = h
            self.ip_host[self.c.addr(h)[0]] = h
        lines = ['primary = "h1"', ""]
        for h in NODES:
            ip, _ = self.c.relay_addr(h)
            lines += ["[[nodes]]", f'id = "{h}"', f'client = "{ip}:{PORT}"', f'bus = "{ip}:{BUS_PORT}"',
                      f'zone = "{self.c.zone(h)}"', 'region = "r1"', ""]
        self.topology = self.c.dir / "topology.toml"
        self.topology.write_text("\n".join(lines))
        for h in NODES:
            self.c.start(h, self.args(h))
        self.probe = Probe(self.c)
        self.wait_healthy()

    def close(self, failed: bool = False) -> None:
        if self.c is None:
            return
        self.probe.close()
        if failed:
            self.dirs_kept.append(str(self.c.dir))
        try:
            self.c.close(failed=failed)
        finally:
            self.c = None

    def rebuild(self) -> None:
        self.close(failed=True)
        self.open()

    def views(self, hosts=NODES) -> dict[str, dict[str, str] | None]:
        return {h: (self.probe.try_info(h) if self.c.is_running(h) and not self.c.is_paused(h) else None)
                for h in hosts}

    @staticmethod
    def agreed(views) -> tuple[str, int] | None:
        """(primary, term) when exactly one node is primary, every node names it,
        all on one term and the others backups; else None."""
        if any(v is None for v in views.values()):
            return None
        prim = [h for h, v in views.items() if v.get("cluster_role") == "primary"]
        if len(prim) != 1:
            return None
        p = prim[0]
        if {v.get("cluster_primary") for v in views.values()} != {p}:
            return None
        if len({v.get("cluster_term") for v in views.values()}) != 1:
            return None
        if not all(v.get("cluster_role") == "backup" for h, v in views.items() if h != p):
            return None
        return p, int(views[p]["cluster_term"])

    def digests(self, hosts=NODES) -> dict[str, str]:
        return {h: self.probe.digest(h) for h in hosts}

    def healthy(self):
        r = self.agreed(self.views())
        if r is None:
            return None
        d = self.digests()
        return r if len(set(d.values())) == 1 else None

    def wait_healthy(self, timeout: float = HEALTHY_BOUND) -> tuple[str, int]:
        r = wait_until(self.healthy, timeout, 0.1)
        if r is None:
            raise RoundFailure(f"the cluster is not whole {timeout:.0f}s on (one agreed primary, equal digests)")
        self.primary, self.term = r
        return r

    def diagnostics(self) -> str:
        parts = []
        for h in NODES:
            if not self.c.is_running(h):
                state = "not running"
            elif self.c.is_paused(h):
                state = "paused"
            else:
                v = self.probe.try_info(h)
                if v is None:
                    state = "INFO cluster failed"
                else:
                    state = " ".join(f"{k}={v.get(k)}" for k in (
                        "cluster_role", "cluster_primary", "cluster_term", "cluster_failover_state",
                        "cluster_writes_paused", "cluster_elections_won", "cluster_failovers_seen"))
                    try:
                        state += " digest=" + str(self.probe.digest(h))[:12]
                    except (OSError, ConnectionError, RespError) as e:
                        state += f" digest: {e!r}"
                    r = self.probe.try_info(h, "replication")
                    if r:
                        state += " | " + " ".join(f"{k}={v}" for k, v in r.items()
                                                  if k in ("role", "master_host", "master_link_status")
                                                  or (k.startswith("shard") and "_why" not in k))
            parts.append(f"{h}: {state}\n{h} log tail:\n" + self.c.log_tail(h, 15))
        return "\n".join(parts)


# --------------------------------------------------------------------------
# redis + sentinel
# --------------------------------------------------------------------------

class RedisEnv:
    engine = "redis"
    sentinel_port = SENTINEL_PORT

    def __init__(self, down_after: int, failover_timeout: int = 10000):
        self.down_after, self.failover_timeout = down_after, failover_timeout
        self.loads: list[Load] = []
        self.c: Cluster | None = None
        self.bin = shutil.which("redis-server")
        self.dirs_kept: list[str] = []

    def args(self, h: str, master: str | None) -> list[str]:
        a = ["--replica-announce-ip", self.c.relay_addr(h)[0], "--replica-announce-port", str(PORT),
             "--save", "", "--appendonly", "no", "--protected-mode", "no", "--enable-debug-command", "yes"]
        if master:
            a += ["--replicaof", self.c.relay_addr(master)[0], str(PORT)]
        return a

    def command_line(self) -> str:
        return ("redis-server --bind <direct ip> --port 6379 --dir <host dir> --replica-announce-ip <relay ip> "
                "--replica-announce-port 6379 --save '' --appendonly no --protected-mode no "
                "--enable-debug-command yes [--replicaof <primary's relay ip> 6379]\n"
                "redis-server sentinel.conf --sentinel   # port 26379, bind <direct ip>, protected-mode no, "
                "sentinel announce-ip <relay ip>, sentinel announce-port 26379, "
                f"sentinel monitor {DB} <h1 relay ip> 6379 2, sentinel down-after-milliseconds {DB} "
                f"{self.down_after}, sentinel failover-timeout {DB} {self.failover_timeout}")

    def open(self) -> None:
        if self.bin is None:
            raise SystemExit("redis-server not found")
        self.c = Cluster(ZONES, delay_ms=DELAY_MS, ports=PORTS, keel_bin=self.bin, keep=KEEP)
        self.c.open()
        self.ip_host = {}
        for h in NODES:
            self.ip_host[self.c.relay_addr(h)[0]] = h
            self.ip_host[self.c.addr(h)[0]] = h
        for h in NODES:
            self.c.start(h, self.args(h, None if h == "h1" else "h1"))
        self.sentinels = {}
        for h in NODES:
            hd = self.c.hosts[h].dir
            conf = hd / "sentinel.conf"
            conf.write_text("\n".join([
                f"port {SENTINEL_PORT}", f"bind {self.c.addr(h)[0]}", "protected-mode no", "daemonize no",
                f"dir {hd}", f"sentinel announce-ip {self.c.relay_addr(h)[0]}",
                f"sentinel announce-port {SENTINEL_PORT}",
                f"sentinel monitor {DB} {self.c.relay_addr('h1')[0]} {PORT} 2",
                f"sentinel down-after-milliseconds {DB} {self.down_after}",
                f"sentinel failover-timeout {DB} {self.failover_timeout}", ""]))
            logf = open(hd / "sentinel.log", "ab")
            try:
                self.sentinels[h] = self.c.popen(h, [self.bin, str(conf), "--sentinel"], stdout=logf,
                                                 stderr=subprocess.STDOUT)
            finally:
                logf.close()
        self.probe = Probe(self.c)
        self.wait_healthy(60)

    def close(self, failed: bool = False) -> None:
        if self.c is None:
            return
        self.probe.close()
        if failed:
            self.dirs_kept.append(str(self.c.dir))
        try:
            self.c.close(failed=failed)
        finally:
            self.c = None

    def rebuild(self) -> None:
        self.close(failed=True)
        self.open()

    def sentinel_master(self, h: str) -> str | None:
        r = self.probe.call(h, "SENTINEL", "get-master-addr-by-name", DB, port=SENTINEL_PORT)
        return self.ip_host.get(r[0]) if isinstance(r, list) and r else None

    def healthy(self):
        ms = {h: self.sentinel_master(h) for h in NODES}
        if len(set(ms.values())) != 1 or None in ms.values():
            return None
        m = ms["h1"]
        for h in NODES:
            info = pairs(self.probe.call(h, "SENTINEL", "master", DB, port=SENTINEL_PORT))
            if info.get("flags") != "master" or info.get("num-slaves") != "2" \
                    or info.get("num-other-sentinels") != "2":
                return None
            reps = [pairs(r) for r in self.probe.call(h, "SENTINEL", "replicas", DB, port=SENTINEL_PORT)]
            if len(reps) != 2 or any(r.get("flags") != "slave" or r.get("master-link-status") != "ok"
                                     for r in reps):
                return None
        rep = self.probe.info(m, "replication")
        if rep.get("role") != "master" or rep.get("connected_slaves") != "2" \
                or sum("state=online" in v for k, v in rep.items() if k.startswith("slave")) != 2:
            return None
        for h in NODES:
            if h != m and self.probe.info(h, "replication").get("master_link_status") != "up":
                return None
        d = {h: self.probe.digest(h) for h in NODES}
        return (m, 0) if len(set(d.values())) == 1 else None

    def wait_healthy(self, timeout: float = 60.0):
        r = wait_until(self.healthy, timeout, 0.2)
        if r is None:
            raise RoundFailure(f"redis + sentinels not whole {timeout:.0f}s on")
        self.primary = r[0]
        return r

    def diagnostics(self) -> str:
        parts = []
        for h in NODES:
            try:
                r = self.probe.info(h, "replication") if self.c.is_running(h) else {}
                state = " ".join(f"{k}={v}" for k, v in r.items() if k in ("role", "master_host", "master_link_status",
                                                                          "connected_slaves"))
            except (OSError, ConnectionError, RespError) as e:
                state = f"INFO failed {e!r}"
            try:
                sm = self.sentinel_master(h)
            except (OSError, ConnectionError, RespError) as e:
                sm = repr(e)
            slog = (self.c.hosts[h].dir / "sentinel.log").read_text(errors="replace").splitlines()[-8:]
            parts.append(f"{h}: {state}; its sentinel says master={sm}\n" + self.c.log_tail(h, 8)
                         + "\nsentinel:\n" + "\n".join(slog))
        return "\n".join(parts)


# --------------------------------------------------------------------------
# the scenarios
# --------------------------------------------------------------------------

def start_load(env, tag: str, homes=None, warm: float = 1.5) -> Load:
    load = Load(env, tag, homes or [CLIENT] * WRITERS)
    if wait_until(lambda: load.count() >= 20, 10) is None:
        load.stop()
        raise RoundFailure(f"the writers got no acknowledgement within 10 s: {load.errors()}")
    time.sleep(warm)
    return load


def kill_round(env, scen: str, r: int) -> dict:
    """SIGKILL the primary under load; the gap, the time to a new primary, the
    acknowledged keys missing on it; then the old primary back."""
    c, old = env.c, env.primary
    load = start_load(env, f"{scen}:{r}")
    t_kill = time.monotonic()
    c.kill(old)
    survivors = [h for h in NODES if h != old]
    bound = NEW_PRIMARY_BOUND if env.engine == "keel" else env.down_after / 1000 + 30
    t_server = t_client = None
    deadline = t_kill + bound
    while time.monotonic() < deadline and (t_server is None or t_client is None):
        if t_server is None:
            if env.engine == "keel":
                for h in survivors:
                    v = env.probe.try_info(h)
                    if v and v.get("cluster_role") == "primary":
                        t_server = time.monotonic()
            else:
                for h in survivors + [old]:
                    try:
                        m = env.sentinel_master(h)
                    except (OSError, ConnectionError, RespError):
                        continue
                    if m and m != old:
                        t_server = time.monotonic()
                        break
        if t_client is None:
            a = load.first_ack(t_kill, not_by=old)
            if a:
                t_client = a[0]
        time.sleep(0.02)
    if t_client is None:
        load.stop()
        raise RoundFailure(f"no write acknowledged by a new primary within {bound:.0f}s of the SIGKILL "
                           f"of {old} (server side: {'a primary after %.2fs' % (t_server - t_kill) if t_server else 'no primary'}); "
                           f"writer errors {load.errors()}")
    time.sleep(1.0)
    acks = load.stop()
    if env.engine == "keel":
        r_ = wait_until(lambda: env.agreed(env.views(survivors)), NEW_PRIMARY_BOUND, 0.05)
        if r_ is None:
            raise RoundFailure(f"{survivors} do not agree on a primary after the SIGKILL of {old}")
        new, term = r_
    else:
        new = wait_until(lambda: (lambda ms: ms.pop() if len(ms) == 1 and None not in ms else None)(
            {env.sentinel_master(h) for h in NODES}), 30, 0.1)
        term = None
        if new is None:
            raise RoundFailure("the sentinels do not agree on a master")
    gap, gap_at = longest_gap(acks)
    missing = read_back(c, new, acks)
    lost_old = sum(1 for a in missing if a[3] == old)
    lost_new = len(missing) - lost_old
    res = {"round": r, "ok": True, "old": old, "new": new, "term": term,
           "gap": round(gap, 3), "gap_from": round(gap_at - t_kill, 3),
           "to_server_primary": round(t_server - t_kill, 3) if t_server else None,
           "to_first_ack": round(t_client - t_kill, 3),
           "acks": len(acks), "acks_by_old": sum(1 for a in acks if a[3] == old),
           "lost": len(missing), "lost_by_old": lost_old, "lost_by_new": lost_new,
           "last_lost_before_kill": round(max((t_kill - a[0] for a in missing), default=0), 3),
           "errors": load.errors(), "loadavg": round(os.getloadavg()[0], 2)}
    # the old primary back, the cluster whole again
    t0 = time.monotonic()
    if env.engine == "keel":
        c.restart(old)
    else:
        c.restart(old, args=env.args(old, new))
    env.wait_healthy(HEALTHY_BOUND if env.engine == "keel" else 90)
    res["rejoin"] = round(time.monotonic() - t0, 2)
    res["primary_after_rejoin"] = env.primary
    return res


def switchover_round(env: KeelEnv, scen: str, r: int) -> dict:
    c, old = env.c, env.primary
    load = start_load(env, f"{scen}:{r}")
    t0 = time.monotonic()
    reply = c.call(old, old, "FAILOVER", timeout=5)
    t_reply = time.monotonic()
    if reply != "OK":
        load.stop()
        raise RoundFailure(f"FAILOVER on {old} answered {reply!r}")
    r_ = wait_until(lambda: (lambda x: x if x and x[0] != old else None)(env.agreed(env.views())),
                    NEW_PRIMARY_BOUND, 0.02)
    if r_ is None:
        load.stop()
        raise RoundFailure(f"no agreed new primary {NEW_PRIMARY_BOUND:.0f}s after FAILOVER on {old}")
    t_agree = time.monotonic()
    new, term = r_
    a = wait_until(lambda: load.first_ack(t0, not_by=old), 10, 0.01)
    time.sleep(1.0)
    acks = load.stop()
    gap, gap_at = longest_gap(acks)
    missing = read_back(c, new, acks)
    res = {"round": r, "ok": True, "old": old, "new": new, "term": term,
           "gap": round(gap, 3), "gap_from": round(gap_at - t0, 3),
           "reply_ms": round((t_reply - t0) * 1000, 1),
           "to_agreed": round(t_agree - t0, 3),
           "to_first_ack": round(a[0] - t0, 3) if a else None,
           "acks": len(acks), "lost": len(missing), "errors": load.errors(),
           "loadavg": round(os.getloadavg()[0], 2)}
    t1 = time.monotonic()
    env.wait_healthy()
    res["settle"] = round(time.monotonic() - t1, 2)
    return res


def heal_round(env: KeelEnv, scen: str, r: int, cut_s: float = 3.0) -> dict:
    c, old = env.c, env.primary
    others = [h for h in NODES if h != old]
    # two writers in cl (they lose the old primary with the cut) and one inside
    # the old primary's host (it keeps reaching it)
    load = start_load(env, f"{scen}:{r}", homes=[CLIENT, CLIENT, old])
    m0, s0 = merge_counters(env), sync_counters(env)
    t_cut = time.monotonic()
    c.isolate(old)
    maj = wait_until(lambda: [h for h in others if (env.probe.try_info(h) or {}).get("cluster_role") == "primary"],
                     cut_s, 0.05)
    t_maj = time.monotonic() if maj else None
    time.sleep(max(0.0, t_cut + cut_s * 0.85 - time.monotonic()))
    old_view = env.probe.try_info(old) or {}
    time.sleep(max(0.0, t_cut + cut_s - time.monotonic()))
    load.signal_stop()
    c.heal()
    t_heal = time.monotonic()
    t_agree = t_conv = None
    agreed = None
    deadline = t_heal + HEALTHY_BOUND
    while time.monotonic() < deadline:
        a = env.agreed(env.views())
        if a is None:
            t_agree, agreed = None, None
        else:
            if t_agree is None:
                t_agree, agreed = time.monotonic(), a
            t_check = time.monotonic()
            try:
                d = env.digests()
            except (OSError, ConnectionError, RespError):
                d = {}
            if d and len(set(d.values())) == 1:
                t_conv = time.monotonic()  # the last digest was read by then
                digest_ms = (t_conv - t_check) * 1000
                break
        time.sleep(0.05)
    acks = load.stop()
    if t_conv is None:
        raise RoundFailure(f"{HEALTHY_BOUND:.0f}s after the heal: " +
                           ("no agreed primary" if agreed is None else f"agreed on {agreed} but digests differ"))
    new, term = agreed
    env.primary, env.term = new, term
    by_old_during = [a for a in acks if a[3] == old and a[0] >= t_cut]
    by_old_before = [a for a in acks if a[3] == old and a[0] < t_cut]
    by_majority = [a for a in acks if a[3] != old]
    miss = read_back(c, new, acks)
    miss_major = [a for a in miss if a[3] != old]
    miss_old_during = [a for a in miss if a[3] == old and a[0] >= t_cut]
    miss_old_before = [a for a in miss if a[3] == old and a[0] < t_cut]
    m1, s1 = merge_counters(env), sync_counters(env)
    return {"round": r, "ok": True, "old": old, "new": new, "term": term,
            "cut_to_majority_primary": round(t_maj - t_cut, 3) if t_maj else None,
            "old_during_cut": {k: old_view.get(k) for k in ("cluster_role", "cluster_term", "cluster_writes_paused")},
            "heal_to_agreed": round(t_agree - t_heal, 3), "heal_to_converged": round(t_conv - t_heal, 3),
            "acks": len(acks), "acks_majority": len(by_majority), "lost_majority": len(miss_major),
            "acks_old_before_cut": len(by_old_before), "lost_old_before_cut": len(miss_old_before),
            "acks_old_during_cut": len(by_old_during), "lost_old_during_cut": len(miss_old_during),
            "digest_ms": round(digest_ms, 1), "keys": int(env.probe.call(new, "DBSIZE")),
            "merge": {k: m1[k] - m0[k] for k in m0} if m0 and m1 else None,
            "sync": {k: s1[k] - s0[k] for k in s0},
            "errors": load.errors(), "loadavg": round(os.getloadavg()[0], 2)}


MERGE_FIELDS = ("cluster_merges", "cluster_merge_applied", "cluster_merge_kept_ours", "cluster_merge_lost")


def sync_counters(env) -> dict[str, int]:
    """INFO stats' resync counters (full, partial) summed over the nodes."""
    out = {"sync_full": 0, "sync_partial_ok": 0}
    for h in NODES:
        v = env.probe.info(h, "stats")
        for k in out:
            out[k] += int(v.get(k, 0))
    return out


def merge_counters(env) -> dict[str, int] | None:
    """INFO cluster's merge counters summed over the nodes (None: a build without them)."""
    out = dict.fromkeys(MERGE_FIELDS, 0)
    for h in NODES:
        v = env.probe.try_info(h)
        if v is None or MERGE_FIELDS[0] not in v:
            return None
        for k in MERGE_FIELDS:
            out[k] += int(v[k])
    return out


def pauses_run(env: KeelEnv, minutes: float, seed: int = 11) -> dict:
    """SIGSTOP the primary for 0.2-0.8 s, run 0.5-1.5 s, again, for `minutes`."""
    c = env.c
    rng = random.Random(seed)
    p0, term0 = env.primary, env.term
    counters0 = {h: env.probe.info(h) for h in NODES}
    load = start_load(env, "pauses")
    end = time.monotonic() + minutes * 60
    pauses, events = [], []
    p, term = p0, term0
    while time.monotonic() < end:
        d = rng.uniform(0.2, 0.8)
        c.pause(p)
        t0 = time.monotonic()
        time.sleep(max(0.0, t0 + d - time.monotonic()))
        c.resume(p)
        pauses.append(time.monotonic() - t0)
        time.sleep(rng.uniform(0.5, 1.5))
        views = env.views()
        terms = {h: v.get("cluster_term") if v else None for h, v in views.items()}
        roles = {h: v.get("cluster_role") if v else None for h, v in views.items()}
        if any(t is not None and int(t) != term for t in terms.values()) or roles.get(p) != "primary":
            events.append({"after_pause": len(pauses), "pause_s": round(pauses[-1], 3),
                           "at_s": round(time.monotonic() - (end - minutes * 60), 1),
                           "terms": terms, "roles": roles})
            log(f"pauses: change after pause {len(pauses)} ({pauses[-1]:.2f}s): terms {terms} roles {roles}")
            a = wait_until(lambda: env.agreed(env.views()), NEW_PRIMARY_BOUND, 0.1)
            if a:
                p, term = a
    acks = load.stop()
    gap, _ = longest_gap(acks)
    healthy = wait_until(env.healthy, HEALTHY_BOUND, 0.2)
    p_end = healthy[0] if healthy else p
    missing = read_back(c, p_end, acks)
    counters1 = {h: env.probe.info(h) for h in NODES}
    delta = {h: {k: int(counters1[h].get(k, 0)) - int(counters0[h].get(k, 0))
                 for k in ("cluster_term", "cluster_elections_won", "cluster_failovers_seen")} for h in NODES}
    if healthy:
        env.primary, env.term = healthy
    return {"minutes": minutes, "pauses": len(pauses),
            "pause_p50": round(pct(pauses, 50), 3), "pause_max": round(max(pauses), 3),
            "pause_min": round(min(pauses), 3), "pauses_over_0_7": sum(1 for x in pauses if x > 0.7),
            "primary_start": p0, "primary_end": p_end, "term_start": term0,
            "term_end": healthy[1] if healthy else None, "term_changes": events,
            "counter_deltas": delta, "acks": len(acks), "gap": round(gap, 3), "lost": len(missing),
            "errors": load.errors(), "healthy_at_end": bool(healthy)}


def run_rounds(env, scen: str, rounds: int, fn) -> dict:
    out = {"rounds": [], "failures": []}
    env.open()
    try:
        for r in range(1, rounds + 1):
            try:
                res = fn(env, scen, r)
                out["rounds"].append(res)
                log(f"{scen} round {r}: " + ", ".join(f"{k}={v}" for k, v in res.items() if k not in ("round", "ok")))
            except (RoundFailure, HarnessError, OSError, ConnectionError, RespError) as e:
                for ld in env.loads:
                    ld.signal_stop()
                diag = env.diagnostics()
                out["failures"].append({"round": r, "error": f"{type(e).__name__}: {e}", "diagnostics": diag,
                                        "dir": str(env.c.dir)})
                log(f"{scen} round {r} FAILED: {e}\n{diag}")
                env.rebuild()
                log(f"{scen}: cluster rebuilt (logs of the failed one kept in {env.dirs_kept[-1]})")
    except BaseException:
        env.close(failed=True)
        raise
    env.close()
    out["kept"] = env.dirs_kept
    return out


def run_scenario(scen: str, args) -> dict:
    rounds = args.rounds or ROUNDS.get(scen)
    meter = LoadMeter()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    if scen in ("kill-eventual", "kill-strong"):
        env = KeelEnv(scen.split("-")[1])
        out = run_rounds(env, scen, rounds, kill_round)
    elif scen == "switchover":
        env = KeelEnv("eventual")
        out = run_rounds(env, scen, rounds, switchover_round)
    elif scen.startswith("sentinel-"):
        env = RedisEnv(int(scen.split("-")[1]))
        out = run_rounds(env, scen, rounds, kill_round)
    elif scen == "heal":
        env = KeelEnv("eventual")
        out = run_rounds(env, scen, rounds, heal_round)
    elif scen == "pauses":
        env = KeelEnv("eventual")
        env.open()
        try:
            out = {"run": pauses_run(env, args.minutes), "failures": []}
        except BaseException:
            for ld in env.loads:
                ld.signal_stop()
            env.close(failed=True)
            raise
        env.close()
        log(f"pauses: {out['run']}")
    else:
        raise SystemExit(f"unknown scenario {scen}")
    out.update({"scenario": scen, "started": started, "command": env.command_line(), "load": meter.done()})
    return out


# --------------------------------------------------------------------------
# the report
# --------------------------------------------------------------------------

def fmt(x, unit="s", nd=2):
    if x is None:
        return "-"
    return f"{x:.{nd}f}"


def trio(xs, nd=2):
    return " / ".join(fmt(pct(xs, q), nd=nd) for q in (50, 99, 100))


def load_note(s) -> str:
    ld = s["load"]
    tops = "; ".join(ld["top_others"]) or "none above 5% CPU"
    return (f"{ld['seconds']:.0f} s; this run {ld['ours_cores']:.2f} cores, others {ld['other_cores']:.2f} cores "
            f"(load average {ld['loadavg_start'][0]:.2f} → {ld['loadavg_end'][0]:.2f}; busiest others at the end: {tops})")


def moved_note(rr) -> str:
    """Rounds whose primary changed again while the old one rejoined."""
    moved = [x for x in rr if x.get("primary_after_rejoin", x["new"]) != x["new"]]
    if not moved:
        return ""
    return (f"In {len(moved)} round(s) the primary moved again while the old one rejoined: "
            + ", ".join(f"round {x['round']} {x['new']} → {x['primary_after_rejoin']} (rejoin {x['rejoin']:.1f} s)"
                        for x in moved) + ". ")


def sync_note(rr) -> str:
    if not rr or "sync" not in rr[0]:
        return ""
    full = sum(x["sync"]["sync_full"] for x in rr)
    part = sum(x["sync"]["sync_partial_ok"] for x in rr)
    return (f"Resyncs from before the cut to convergence (INFO stats, all nodes, all rounds): {full} full, {part} partial. "
            f"Data set at the end of each round: {rr[0]['keys']:,} → {rr[-1]['keys']:,} keys; the "
            f"converged check's three `DEBUG DIGEST` calls took {fmt(pct([x['digest_ms'] for x in rr], 50), nd=0)} ms "
            f"(median; max {fmt(pct([x['digest_ms'] for x in rr], 100), nd=0)} ms), included in heal→converged.")


def merge_note(rr) -> str:
    ms = [x.get("merge") for x in rr]
    if not ms or any(m is None for m in ms):
        return "INFO cluster of this build has no merge counters."
    tot = {k: sum(m[k] for m in ms) for k in MERGE_FIELDS}
    return ("INFO cluster merge counters, summed over the nodes and rounds: "
            + ", ".join(f"`{k}` +{v}" for k, v in tot.items()) + ".")


def report(meta: dict, scen: dict) -> str:
    L = []
    L.append(f"- machine: {meta['machine']}")
    L.append(f"- keel: {meta['keel']}")
    L.append(f"- redis: {meta['redis']}")
    L.append(f"- harness: hosts h1, h2, h3 in zones z1, z2, z3 and the clients' host `cl` in zone zc, "
             f"{DELAY_MS} ms one way between any two zones (relays); {WRITERS} writers in `cl`, "
             f"each a tight loop of one SET at a time (op timeout {OP_TIMEOUT:.0f} s), "
             "primary found with `SENTINEL get-master-addr-by-name keel`, asked again after any error")
    L.append("")
    kills = [s for s in ("kill-eventual", "kill-strong", "sentinel-1000", "sentinel-30000") if s in scen]
    if kills:
        L.append("SIGKILL of the primary under load. Gap: the longest time between two consecutive "
                 "acknowledged SETs (both writers together) over the round. kill→primary: until a survivor "
                 "reports `cluster_role:primary` (keel) or a Sentinel names the new master (Redis). "
                 "kill→ack: until the first SET acknowledged by the new primary. Lost: acknowledged keys "
                 "missing on the new primary. p50 / p99 / max over the rounds (nearest rank: with 20 rounds "
                 "p99 is the largest).")
        L.append("")
        L.append("| scenario | rounds ok / failed | gap s p50 / p99 / max | kill→primary s | kill→ack s | "
                 "acked SETs per round | lost: rounds with loss, total, max per round |")
        L.append("|---|---|---|---|---|---:|---|")
        names = {"kill-eventual": "keel eventual", "kill-strong": "keel strong",
                 "sentinel-1000": "Redis + Sentinel, down-after 1000", "sentinel-30000": "Redis + Sentinel, down-after 30000"}
        for k in kills:
            s = scen[k]
            rr = s["rounds"]
            lost = [x["lost"] for x in rr]
            L.append(f"| {names[k]} | {len(rr)} / {len(s['failures'])} | {trio([x['gap'] for x in rr])} | "
                     f"{trio([x['to_server_primary'] for x in rr])} | {trio([x['to_first_ack'] for x in rr])} | "
                     f"{int(pct([x['acks'] for x in rr], 50) or 0)} | "
                     f"{sum(1 for x in lost if x)}, {sum(lost)}, {max(lost, default=0)} |")
        L.append("")
        for k in kills:
            s = scen[k]
            rr = s["rounds"]
            L.append(f"{names[k]} per round (gap s / lost): "
                     + ", ".join(f"{x['gap']:.2f}/{x['lost']}" for x in rr) + ".")
            L.append(f"Lost writes were acknowledged at most "
                     f"{max((x['last_lost_before_kill'] for x in rr), default=0) * 1000:.0f} ms before the kill; "
                     f"by the new primary: {sum(x['lost_by_new'] for x in rr)} lost. "
                     f"Terms after the failovers: {sorted({x['term'] for x in rr if x['term'] is not None})}. "
                     f"Old primary back and the cluster whole again (rejoin) p50 "
                     f"{fmt(pct([x['rejoin'] for x in rr], 50))} s, max {fmt(pct([x['rejoin'] for x in rr], 100))} s. "
                     + moved_note(rr) + f"Run: {load_note(s)}.")
            L.append("")
    if "switchover" in scen:
        s = scen["switchover"]
        rr = s["rounds"]
        L.append("Planned switchover: `FAILOVER` sent to the keel primary (eventual mode) under the same load. "
                 "Pause: the longest time between two consecutive acknowledged SETs; FAILOVER→agreed: until all "
                 "three nodes name the new primary on one term; →ack: the first SET acknowledged by it.")
        L.append("")
        L.append("| rounds ok / failed | write pause ms p50 / p99 / max | FAILOVER→agreed ms | FAILOVER→ack ms | "
                 "FAILOVER reply ms (median) | acked SETs per round | lost (total) |")
        L.append("|---|---|---|---|---:|---:|---:|")
        ms = lambda xs: [x * 1000 if x is not None else None for x in xs]  # noqa: E731
        L.append(f"| {len(rr)} / {len(s['failures'])} | {trio(ms([x['gap'] for x in rr]), 0)} | "
                 f"{trio(ms([x['to_agreed'] for x in rr]), 0)} | {trio(ms([x['to_first_ack'] for x in rr]), 0)} | "
                 f"{fmt(pct([x['reply_ms'] for x in rr], 50), nd=1)} | {int(pct([x['acks'] for x in rr], 50) or 0)} | "
                 f"{sum(x['lost'] for x in rr)} |")
        L.append("")
        errs: dict[str, int] = {}
        for x in rr:
            for e, n in x["errors"].items():
                errs[e] = errs.get(e, 0) + n
        per = ", ".join(f"{x['gap'] * 1000:.0f}" for x in rr)
        fwd = sum(1 for x in rr if x["to_first_ack"] is None)
        fwd_note = (f"In {fwd} round(s) no SET came back through the new primary's own connection within 10 s: "
                    "the writers stayed on the old primary, which (now a backup) forwarded their SETs to the new "
                    "one (the front door); those rounds have no FAILOVER→ack figure and last ~10 s longer "
                    "(more SETs). " if fwd else "")
        L.append(f"Per round (pause ms): {per}. {fwd_note}"
                 f"Writer errors over all rounds: {errs or 'none'}. Run: {load_note(s)}.")
        L.append("")
    if "pauses" in scen:
        s = scen["pauses"]
        p = s["run"]
        L.append("False failovers: the keel primary (eventual) SIGSTOPped for a uniform 0.2–0.8 s, then "
                 "left running 0.5–1.5 s, again and again, writers going; every node's INFO cluster sampled "
                 "after each pause.")
        L.append("")
        L.append("| duration | pauses | pause s min / p50 / max | pauses > 0.7 s | term changes | "
                 "elections won / failovers seen (all nodes) | longest write gap s | acked SETs | lost |")
        L.append("|---|---:|---|---:|---:|---|---:|---:|---:|")
        won = sum(d["cluster_elections_won"] for d in p["counter_deltas"].values())
        seen = sum(d["cluster_failovers_seen"] for d in p["counter_deltas"].values())
        tchg = (p["term_end"] - p["term_start"]) if p["term_end"] is not None else "?"
        L.append(f"| {p['minutes']:g} min | {p['pauses']} | {p['pause_min']:.2f} / {p['pause_p50']:.2f} / "
                 f"{p['pause_max']:.2f} | {p['pauses_over_0_7']} | {tchg} | {won} / {seen} | {p['gap']:.2f} | "
                 f"{p['acks']} | {p['lost']} |")
        L.append("")
        if p["term_changes"]:
            L.append("Changes seen: " + "; ".join(
                f"after pause {e['after_pause']} ({e['pause_s']:.2f} s, {e['at_s']:.0f} s in): terms {e['terms']}, "
                f"roles {e['roles']}" for e in p["term_changes"]) + ".")
        L.append(f"Primary {p['primary_start']} → {p['primary_end']}, term {p['term_start']} → {p['term_end']}. "
                 f"Run: {load_note(s)}.")
        L.append("")
    if "heal" in scen:
        s = scen["heal"]
        rr = s["rounds"]
        L.append("Heal: the keel primary (eventual) isolated (`isolate`: no packet to or from any other host, "
                 "the clients' host included) for 3 s while two writers in `cl` and one inside the primary's "
                 "own host write; the writers are told to stop and `heal()` runs; then "
                 "heal→agreed: exactly one node `cluster_role:primary`, all naming it on one term; "
                 "heal→converged: that and `DEBUG DIGEST` equal on all three.")
        L.append("")
        L.append("| rounds ok / failed | cut→majority primary s p50 / max | heal→agreed s p50 / p99 / max | "
                 "heal→converged s p50 / p99 / max | majority's acks lost | isolated primary's acks during the cut: "
                 "acked / dropped | its acks before the cut lost |")
        L.append("|---|---|---|---|---:|---|---:|")
        L.append(f"| {len(rr)} / {len(s['failures'])} | {fmt(pct([x['cut_to_majority_primary'] for x in rr], 50))} / "
                 f"{fmt(pct([x['cut_to_majority_primary'] for x in rr], 100))} | "
                 f"{trio([x['heal_to_agreed'] for x in rr])} | {trio([x['heal_to_converged'] for x in rr])} | "
                 f"{sum(x['lost_majority'] for x in rr)} of {sum(x['acks_majority'] for x in rr)} | "
                 f"{sum(x['acks_old_during_cut'] for x in rr)} / {sum(x['lost_old_during_cut'] for x in rr)} | "
                 f"{sum(x['lost_old_before_cut'] for x in rr)} of {sum(x['acks_old_before_cut'] for x in rr)} |")
        L.append("")
        views = {}
        for x in rr:
            k = ", ".join(f"`{a}:{b}`" for a, b in x["old_during_cut"].items() if a != "cluster_term")
            views[k] = views.get(k, 0) + 1
        L.append("Per round (heal→converged s / isolated primary's acks during the cut, dropped): "
                 + ", ".join(f"{x['heal_to_converged']:.2f}/{x['acks_old_during_cut']},{x['lost_old_during_cut']}"
                             for x in rr) + f". The isolated primary's INFO cluster 2.5 s into the cut: "
                 + "; ".join(f"{k} ({n} of {len(rr)} rounds)" for k, n in views.items()) + ". " + merge_note(rr)
                 + " " + sync_note(rr)
                 + f" Run: {load_note(s)}.")
        L.append("")
    fails = [(k, f) for k, s in scen.items() for f in s.get("failures", [])]
    if fails:
        L.append("Failed rounds:")
        L.append("")
        for k, f in fails:
            L.append(f"- {k} round {f['round']}: {f['error']} (logs kept in `{f['dir']}`)")
        L.append("")
    L.append("Commands:")
    L.append("")
    L.append("```")
    L.append(meta["invocation"].strip())
    by_cmd: dict[str, list[str]] = {}
    for k, s in scen.items():
        by_cmd.setdefault(s["command"], []).append(k)
    for cmd, ks in by_cmd.items():
        L.append(f"# {', '.join(ks)}:")
        L.extend(cmd.splitlines())
    L.append("```")
    return "\n".join(L)


def machine() -> str:
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem = int(open("/proc/meminfo").readline().split()[1]) // (1024 * 1024)
    except OSError:
        mem = 0
    return f"{cpu}, {os.cpu_count()} CPUs, {mem} GiB, kernel {platform.release()}"


def keel_desc(path: str) -> str:
    commit = sh("git", "-C", str(REPO), "rev-parse", "--short", "HEAD") or "unknown"
    dirty = sh("git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no", "--", "src", "shards",
               "Cargo.toml", "Cargo.lock", "build.rs")
    h = hashlib.sha1(open(path, "rb").read()).hexdigest()[:12] if os.path.exists(path) else "missing"
    built = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(os.path.getmtime(path))) if os.path.exists(path) else "?"
    return (f"commit {commit}{' (src had uncommitted changes)' if dirty else ''}, "
            f"binary sha1 {h}, built {built}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", action="append", choices=SCENARIOS + ["all"])
    ap.add_argument("--rounds", type=int, help="rounds per scenario (default: 20, sentinel-30000 4, heal 10)")
    ap.add_argument("--minutes", type=float, default=10.0, help="length of the pauses scenario")
    ap.add_argument("--json", help="where to save the rounds (default: failover-<time>.json in --out-dir)")
    ap.add_argument("--out-dir", default="/var/tmp", help="directory for the default --json (/var/tmp)")
    ap.add_argument("--keep", action="store_true", help="keep every cluster's logs and data (in $KEEL_CLUSTER_DIR)")
    ap.add_argument("--report", nargs="+", metavar="RUN.json", help="print the Markdown of saved runs and exit")
    args = ap.parse_args()

    if args.report:
        meta, scen = None, {}
        for path in args.report:
            d = json.load(open(path))
            meta = meta or d["meta"]
            scen.update(d["scenarios"])
        ordered = {k: scen[k] for k in SCENARIOS if k in scen}
        print(report(meta, ordered))
        return 0

    global KEEP
    KEEP = args.keep
    if os.geteuid() != 0:
        raise SystemExit("needs root (network namespaces): sudo python3 bench/failover.py")
    names = SCENARIOS if not args.scenario or "all" in args.scenario else [s for s in SCENARIOS if s in args.scenario]
    keel_bin = os.environ.get("KEEL_BIN") or str(REPO / "target" / "release" / "keel")
    os.environ["KEEL_BIN"] = keel_bin
    if any(not n.startswith("sentinel") for n in names) and not os.access(keel_bin, os.X_OK):
        raise SystemExit(f"KEEL_BIN={keel_bin} is not executable (cargo build --release)")
    meta = {"machine": machine(), "keel": os.environ.get("KEEL_DESC") or f"`{keel_bin}`, {keel_desc(keel_bin)}",
            "redis": sh("redis-server", "--version") or "not installed",
            "invocation": os.environ.get("FAILOVER_INVOCATION") or "python3 bench/failover.py " + " ".join(sys.argv[1:]),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    path = Path(args.json or Path(args.out_dir) / f"failover-{time.strftime('%Y%m%d-%H%M%S')}.json")
    results = {"meta": meta, "scenarios": {}}
    log(f"scenarios {names}; rounds saved to {path}")
    for scen in names:
        log(f"--- {scen}")
        results["scenarios"][scen] = run_scenario(scen, args)
        path.write_text(json.dumps(results, indent=1))
    print(report(meta, results["scenarios"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())

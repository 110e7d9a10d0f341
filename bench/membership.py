#!/usr/bin/env python3
"""Membership changes on loopback: how long a new replica takes to become a
voter per GB of data, and the longest write pause while a node joins and
while one leaves.

    python3 bench/membership.py --keel target/release/keel --work DIR [--gb 1] [--value-size 1024]

Three keel processes on 127.0.0.1, each with its own ports and data dir: n1
(zone z1, the first primary) and n2 (z2) from one `[[nodes]]` topology file;
n3 (z3) is started with the same file, which does not list it, so it boots
as a joiner. The steps:

1. n1 primary, n2 streaming every shard from it;
2. GB of data loaded into n1 (pipelined SETs of VALUE_SIZE random bytes,
   which lz4 cannot shrink), until n2 holds as many keys;
3. a writer (one connection to n1, one SET at a time, PACE s apart)
   records when each OK arrives; 3 s of it before anything changes give the
   baseline pause;
4. join: `KEEL NODE ADD n3 ...` on n1, n1's INFO cluster polled every 20 ms
   until n3 is listed as a learner, then as a voter with
   `cluster_membership:idle`; the time to voter is the figure, also per GB
   of the data loaded;
5. leave: `KEEL NODE REMOVE n2`, polled until n1 no longer lists n2 and is
   idle again;
6. the writer stops; every key it had acknowledged is read back on n3
   (which held every loaded key when it became a voter, or the run fails).

Figures: seconds from ADD to learner and to voter, seconds per GB, the
longest gap between two consecutive acks during the baseline, the join and
the leave, and the keys missing on n3 (must be 0).

Then the same with redis-server (unless --no-redis), once keel has stopped:
a primary r1 and a replica r2 (`--replicaof`, synced before loading, as n2
is), both with redis's defaults plus `--save "" --appendonly no`; the same
keys loaded into r1 until r2 holds them; the same writer on r1 (3 s of
baseline); then a fresh redis-server r3 (same settings, started and
answering PING before the clock starts, as n3 is) is sent `REPLICAOF r1`
and its INFO replication polled every 20 ms until `master_link_status:up`
and `master_sync_in_progress:0`, with DBSIZE at least the keys loaded: the
time to a ready replica (split, from the replica's log, into the RDB's transfer
and its load), and the longest write pause meanwhile (with r1's
`latest_fork_usec`). Redis 7's
defaults sync diskless (`repl-diskless-sync yes`) after waiting
`repl-diskless-sync-delay 5` s for more replicas, so a second fresh replica
r4 then joins the same way after `CONFIG SET repl-diskless-sync-delay 0` on
r1: the time without that wait. Redis has no membership to leave: no leave
figure. Every write the writer had acknowledged is read back on r3 and r4.

Prints a summary and a Markdown fragment on stdout; progress on stderr.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import platform
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "cluster"))

from harness import Conn, RespError  # noqa: E402 — the harness's RESP2 client, no namespaces used
from bench_common import parse_info  # noqa: E402

HOST = "127.0.0.1"
NODES = (("n1", "z1"), ("n2", "z2"))
JOINER = ("n3", "z3")
REGION = "r1"
BATCH = 1000  # pipelined SETs per round trip while loading
POLL = 0.02  # s between INFO polls


def log(msg: str) -> None:
    print(f"[membership {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port(avoid: set[int]) -> int:
    while True:
        s = socket.socket()
        s.bind((HOST, 0))
        p = s.getsockname()[1]
        s.close()
        if p not in avoid:
            avoid.add(p)
            return p


def free_block(n: int, avoid: set[int]) -> int:
    """n consecutive free ports (shard i replicates on peer-port + i)."""
    for _ in range(200):
        base = free_port(set(avoid))
        block = list(range(base, base + n))
        if block[-1] > 65535 or any(p in avoid for p in block):
            continue
        ok = True
        for p in block:
            s = socket.socket()
            try:
                s.bind((HOST, p))
            except OSError:
                ok = False
            finally:
                s.close()
        if ok:
            avoid.update(block)
            return base
    raise SystemExit("no block of free ports")


def members(v: dict[str, str]) -> dict[str, dict[str, str]]:
    out = {}
    for k, val in v.items():
        if k.startswith("member") and k[6:].isdigit():
            f = dict(p.split("=", 1) for p in val.split(",") if "=" in p)
            out[f.get("name", k)] = f
    return out


def _die_with_parent() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class Node:
    def __init__(self, name: str, zone: str, work: Path, keel: str, shards: int, avoid: set[int]):
        self.name, self.zone, self.keel, self.shards = name, zone, keel, shards
        self.dir = work / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port(avoid)
        self.bus = free_port(avoid)
        self.peer = free_block(shards, avoid)
        self.proc: subprocess.Popen | None = None

    @property
    def client_addr(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def bus_addr(self) -> str:
        return f"{HOST}:{self.bus}"

    def start(self, topology: Path) -> None:
        # --bus-port: the joiner is not in the topology file, and its default
        # (client port + 20000) may not exist for a port the OS handed out.
        argv = [self.keel, str(topology), "--node-id", self.name, "--bind", HOST, "--port", str(self.port),
                "--bus-port", str(self.bus), "--dir", str(self.dir / "data"), "--shards", str(self.shards),
                "--peer-port", str(self.peer), "--http-port", "0"]
        (self.dir / "data").mkdir(exist_ok=True)
        with open(self.dir / "keel.log", "ab") as out:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                         preexec_fn=_die_with_parent)
        wait(lambda: self.call("PING", timeout=0.5) == "PONG", 30, f"{self.name} to answer PING")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def connect(self, timeout: float = 5.0) -> Conn:
        s = socket.create_connection((HOST, self.port), timeout=timeout)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return Conn(s)

    def call(self, *args, timeout: float = 5.0):
        if self.proc is not None and self.proc.poll() is not None:
            raise SystemExit(f"keel {self.name} exited with {self.proc.returncode}; see {self.dir / 'keel.log'}")
        with self.connect(timeout) as c:
            return c.call(*args)

    def info(self, section: str = "cluster") -> dict[str, str]:
        return parse_info(self.call("INFO", section))


class RedisNode:
    """A redis-server on loopback with its own port and dir; duck-types Node
    for `load`, `Writer` and `wait`."""

    def __init__(self, name: str, work: Path, binary: str, avoid: set[int], extra: list[str]):
        self.name, self.binary = name, binary
        self.dir = work / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port(avoid)
        self.argv = [binary, "--port", str(self.port), "--bind", HOST, "--dir", str(self.dir),
                     "--logfile", str(self.dir / "redis.log"), "--daemonize", "no", *extra]
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        wait(lambda: self.call("PING", timeout=0.5) == "PONG", 30, f"{self.name} to answer PING")

    stop = Node.stop
    connect = Node.connect

    def call(self, *args, timeout: float = 5.0):
        if self.proc is not None and self.proc.poll() is not None:
            raise SystemExit(f"redis-server {self.name} exited with {self.proc.returncode}; "
                             f"see {self.dir / 'redis.log'}")
        with self.connect(timeout) as c:
            return c.call(*args)

    def info(self, section: str) -> dict[str, str]:
        return parse_info(self.call("INFO", section))


def redis_sync_phases(logfile: Path) -> tuple[float, float]:
    """From a replica's log, its last full sync: seconds from `Full resync
    from master` to `Loading DB in memory` (the RDB's transfer, written to
    disk), and from there to `Finished with success` (loading it)."""
    marks: dict[str, float] = {}
    for line in logfile.read_text(errors="replace").splitlines():
        for key, text in (("resync", "Full resync from master"), ("load", "sync: Loading DB in memory"),
                          ("done", "sync: Finished with success")):
            if text in line:
                # "pid:S 03 Dec 2026 21:32:18.383 * ..."
                stamp = " ".join(line.split()[1:5])
                t = time.strptime(stamp.split(".")[0], "%d %b %Y %H:%M:%S")
                marks[key] = time.mktime(t) + float("0." + stamp.split(".")[1])
    if len(marks) < 3:
        return float("nan"), float("nan")
    return marks["load"] - marks["resync"], marks["done"] - marks["load"]


def wait(cond, timeout: float, what: str, interval: float = POLL):
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            v = cond()
            if v:
                return v
        except (OSError, ConnectionError, RespError) as e:
            last = e
        if time.monotonic() >= deadline:
            raise SystemExit(f"timed out after {timeout:.0f}s waiting for {what}" + (f" ({last!r})" if last else ""))
        time.sleep(interval)


def load(node: Node, count: int, size: int) -> None:
    """`count` keys `data:<i>` of `size` random bytes, BATCH per round trip."""
    pool = os.urandom(max(1 << 22, 4 * size))
    span = len(pool) - size
    head = b"*3\r\n$3\r\nSET\r\n"
    tail = b"\r\n$%d\r\n" % size
    with node.connect(timeout=120) as c:
        for at in range(0, count, BATCH):
            n = min(BATCH, count - at)
            parts = []
            for i in range(at, at + n):
                key = b"data:%d" % i
                off = (i * 7919) % span
                parts.append(head + b"$%d\r\n%s" % (len(key), key) + tail + pool[off:off + size] + b"\r\n")
            c.sock.sendall(b"".join(parts))
            want = 5 * n
            while len(c.buf) < want:
                c._fill()
            got, c.buf = c.buf[:want], c.buf[want:]
            if got != b"+OK\r\n" * n:
                raise SystemExit(f"loading: unexpected reply near key {at}: {got[:80]!r}")
            if at and at % (100 * BATCH) == 0:
                log(f"loaded {at} keys")


class Writer(threading.Thread):
    """SETs `w:<n>` on the primary one at a time; records each ack's time."""

    def __init__(self, node: Node, pace: float):
        super().__init__(daemon=True)
        self.node, self.pace = node, pace
        self.stop_ev = threading.Event()
        self.acks: list[tuple[float, str]] = []
        self.errors: dict[str, int] = {}

    def run(self) -> None:
        conn, n = None, 0
        while not self.stop_ev.is_set():
            try:
                if conn is None:
                    conn = self.node.connect(timeout=2.0)
                n += 1
                key = f"w:{n}"
                if conn.call("SET", key, f"v{n}") == "OK":
                    self.acks.append((time.monotonic(), key))
            except (OSError, ConnectionError, RespError) as e:
                what = str(e).split()[0] if isinstance(e, RespError) else type(e).__name__
                self.errors[what] = self.errors.get(what, 0) + 1
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.01)
                continue
            if self.pace:
                time.sleep(self.pace)
        if conn is not None:
            conn.close()

    def gap(self, t0: float, t1: float) -> float:
        """Longest time between consecutive acks overlapping [t0, t1]."""
        ts = [t for t, _ in self.acks]
        before = [t for t in ts if t < t0][-1:]
        after = [t for t in ts if t > t1][:1]
        seq = before + [t for t in ts if t0 <= t <= t1] + after
        return max((b - a for a, b in zip(seq, seq[1:])), default=0.0)


def read_back(node, keys: list[str], marks: dict) -> bool:
    """Every key in `keys` exists on `node` (pipelined EXISTS, 1000 a trip)."""
    with node.connect(timeout=30) as c:
        missing = 0
        for at in range(0, len(keys), 1000):
            chunk = keys[at:at + 1000]
            for k in chunk:
                c.send("EXISTS", k)
            missing += sum(1 for _ in chunk if c.read() != 1)
    marks["missing"] = missing
    return missing == 0


def run_keel(a, count: int) -> dict:
    avoid: set[int] = set()
    nodes = [Node(n, z, a.work, a.keel, a.shards, avoid) for n, z in NODES]
    joiner = Node(*JOINER, a.work, a.keel, a.shards, avoid)
    n1, n2 = nodes
    lines = ['primary = "n1"', ""]
    for n in nodes:
        lines += ["[[nodes]]", f'id = "{n.name}"', f'client = "{n.client_addr}"', f'bus = "{n.bus_addr}"',
                  f'zone = "{n.zone}"', f'region = "{REGION}"', ""]
    topo = a.work / "topology.toml"
    topo.write_text("\n".join(lines))
    writer = None
    try:
        for n in nodes:
            n.start(topo)

        def healthy():
            if n1.info().get("cluster_role") != "primary":
                return False
            rep = n1.info("replication")
            return all(rep.get(f"shard{s}_link_n2", "").startswith("state=online") for s in range(a.shards))
        wait(healthy, 30, "n1 primary, n2 streaming from it")

        log(f"keel: loading {count} keys of {a.value_size} B ({count * a.value_size / 1e9:.2f} GB of values)")
        t = time.monotonic()
        load(n1, count, a.value_size)
        load_s = time.monotonic() - t
        wait(lambda: n2.call("DBSIZE") >= count, 600, "n2 to hold every key")
        used = int(n1.info("memory").get("used_memory", 0))
        payload_gb = count * a.value_size / 1e9
        log(f"loaded in {load_s:.1f}s; n1 used_memory {used / 1e9:.2f} GB; n2 caught up")

        joiner.start(topo)
        role = joiner.info().get("cluster_role")
        if role != "joining":
            raise SystemExit(f"n3 says cluster_role:{role}, expected joining")

        writer = Writer(n1, a.pace)
        writer.start()
        time.sleep(3.0)
        t_base = time.monotonic()

        # join (the list's version: +1 for the learner, +1 for the promotion,
        # and +1 first if the primary re-stamps the list in its term)
        v0 = int(n1.info().get("cluster_members_version", "0"))
        t_add = time.monotonic()
        r = n1.call("KEEL", "NODE", "ADD", joiner.name, joiner.client_addr, joiner.bus_addr, joiner.zone, REGION)
        if r != "OK":
            raise SystemExit(f"KEEL NODE ADD answered {r!r}")
        marks: dict[str, float] = {}

        def joined():
            v = n1.info()
            m = members(v).get(joiner.name)
            if m is not None and "learner" not in marks:
                marks["learner"] = time.monotonic()
            return (m is not None and m.get("voter") == "1" and v.get("cluster_membership") == "idle"
                    and int(v.get("cluster_members_version", "0")) >= v0 + 2)
        wait(joined, max(120.0, 900 * a.gb), "n3 to become a voter")
        t_voter = time.monotonic()
        # Promoted only once it holds the data: its key count right then.
        at_voter = joiner.call("DBSIZE")
        log(f"n3 a voter {t_voter - t_add:.2f}s after ADD, holding {at_voter} keys ({count} loaded)")
        time.sleep(1.0)

        # leave
        t_remove = time.monotonic()
        r = n1.call("KEEL", "NODE", "REMOVE", "n2")
        if r != "OK":
            raise SystemExit(f"KEEL NODE REMOVE answered {r!r}")

        def left():
            v = n1.info()
            return "n2" not in members(v) and v.get("cluster_membership") == "idle"
        wait(left, 60, "n2 to leave n1's list")
        t_left = time.monotonic()
        time.sleep(1.0)
        writer.stop_ev.set()
        writer.join(10)

        # every acknowledged write on the new voter
        keys = [k for _, k in writer.acks]
        try:
            wait(lambda: read_back(joiner, keys, marks), 30, "n3 to hold every acknowledged write", interval=0.5)
        except SystemExit as e:
            log(str(e))
        missing = marks.get("missing", -1)

        join_s = t_voter - t_add
        return {
            "payload_gb": payload_gb, "used_memory_gb": used / 1e9, "load_s": load_s,
            "to_learner_s": marks.get("learner", t_voter) - t_add, "to_voter_s": join_s,
            "s_per_gb": join_s / payload_gb if payload_gb else float("nan"),
            "leave_s": t_left - t_remove,
            "gap_baseline_ms": writer.gap(t_base - 3.0, t_base) * 1000,
            "gap_join_ms": writer.gap(t_add, t_voter) * 1000,
            "gap_leave_ms": writer.gap(t_remove, t_left) * 1000,
            "n3_keys_at_voter": at_voter, "loaded_keys": count,
            "acks": len(keys), "errors": writer.errors, "missing_on_n3": missing,
        }
    finally:
        if writer is not None:
            writer.stop_ev.set()
        for n in (*nodes, joiner):
            n.stop()


REDIS_SETTINGS = ["--save", "", "--appendonly", "no"]


def run_redis(a, count: int) -> tuple[dict, dict]:
    """r1 primary, r2 its replica; then r3 joins (defaults), r4 joins
    (repl-diskless-sync-delay 0). Returns (common figures, {r3: .., r4: ..})."""
    avoid: set[int] = set()
    r1 = RedisNode("r1", a.work, a.redis, avoid, REDIS_SETTINGS)
    r2 = RedisNode("r2", a.work, a.redis, avoid, REDIS_SETTINGS + ["--replicaof", HOST, str(r1.port)])
    joiners = [RedisNode(n, a.work, a.redis, avoid, REDIS_SETTINGS) for n in ("r3", "r4")]
    writer = None
    try:
        r1.start()
        r2.start()

        def linked(node: RedisNode) -> bool:
            v = node.info("replication")
            return v.get("master_link_status") == "up" and v.get("master_sync_in_progress") == "0"
        wait(lambda: linked(r2), 30, "r2 to replicate r1")
        settings = r1.call("CONFIG", "GET", "repl-diskless-*")
        log(f"redis: loading {count} keys of {a.value_size} B; r1 {dict(zip(settings[::2], settings[1::2]))}")
        t = time.monotonic()
        load(r1, count, a.value_size)
        load_s = time.monotonic() - t
        wait(lambda: r2.call("DBSIZE") >= count, 600, "r2 to hold every key")
        used = int(r1.info("memory").get("used_memory", 0))
        log(f"loaded in {load_s:.1f}s; r1 used_memory {used / 1e9:.2f} GB; r2 caught up")
        for j in joiners:
            j.start()

        writer = Writer(r1, a.pace)
        writer.start()
        time.sleep(3.0)
        t_base = time.monotonic()
        payload_gb = count * a.value_size / 1e9
        per: dict[str, dict] = {}
        for j in joiners:
            if j.name == "r4":
                if r1.call("CONFIG", "SET", "repl-diskless-sync-delay", "0") != "OK":
                    raise SystemExit("CONFIG SET repl-diskless-sync-delay 0 refused")
                time.sleep(1.0)
            delay = r1.call("CONFIG", "GET", "repl-diskless-sync-delay")[1]
            t0 = time.monotonic()
            r = j.call("REPLICAOF", HOST, str(r1.port))
            if r != "OK":
                raise SystemExit(f"REPLICAOF answered {r!r}")
            marks: dict[str, float] = {}

            def ready():
                v = j.info("replication")
                if v.get("master_sync_in_progress") == "1" and "syncing" not in marks:
                    marks["syncing"] = time.monotonic()
                return (v.get("master_link_status") == "up" and v.get("master_sync_in_progress") == "0"
                        and j.call("DBSIZE") >= count)
            wait(ready, max(120.0, 900 * a.gb), f"{j.name} to be a ready replica")
            t1 = time.monotonic()
            at_ready = j.call("DBSIZE")
            fork_ms = int(r1.info("stats").get("latest_fork_usec", "0")) / 1000
            transfer_s, rdb_load_s = redis_sync_phases(j.dir / "redis.log")
            log(f"{j.name} ready {t1 - t0:.2f}s after REPLICAOF (diskless delay {delay} s; RDB transfer "
                f"{transfer_s:.2f}s, load {rdb_load_s:.2f}s; r1's fork {fork_ms:.1f} ms), holding {at_ready} keys")
            per[j.name] = {
                "diskless_sync_delay": delay, "to_ready_s": t1 - t0,
                "s_per_gb": (t1 - t0) / payload_gb if payload_gb else float("nan"),
                "gap_join_ms": writer.gap(t0, t1) * 1000, "keys_at_ready": at_ready,
                "first_seen_syncing_s": marks.get("syncing", t1) - t0,
                "rdb_transfer_s": transfer_s, "rdb_load_s": rdb_load_s, "primary_fork_ms": fork_ms,
            }
            time.sleep(1.0)
        writer.stop_ev.set()
        writer.join(10)
        keys = [k for _, k in writer.acks]
        for j in joiners:
            marks = {}
            try:
                wait(lambda: read_back(j, keys, marks), 30, f"{j.name} to hold every acknowledged write", interval=0.5)
            except SystemExit as e:
                log(str(e))
            per[j.name]["missing"] = marks.get("missing", -1)
        common = {
            "payload_gb": payload_gb, "used_memory_gb": used / 1e9, "load_s": load_s,
            "gap_baseline_ms": writer.gap(t_base - 3.0, t_base) * 1000,
            "acks": len(keys), "errors": writer.errors,
        }
        return common, per
    finally:
        if writer is not None:
            writer.stop_ev.set()
        for n in (r1, r2, *joiners):
            n.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keel", required=True)
    ap.add_argument("--work", required=True, type=Path)
    ap.add_argument("--gb", type=float, default=1.0, help="payload to load, in GB (10^9 bytes of values)")
    ap.add_argument("--value-size", type=int, default=1024)
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--pace", type=float, default=0.001, help="s between the writer's SETs")
    ap.add_argument("--redis", default="redis-server", help="redis-server binary for the comparison")
    ap.add_argument("--no-redis", action="store_true", help="skip the redis-server comparison")
    a = ap.parse_args()

    count = int(a.gb * 1e9 / a.value_size)
    fig = run_keel(a, count)
    for k, v in fig.items():
        print(f"keel_{k}: {v:.3f}" if isinstance(v, float) else f"keel_{k}: {v}")
    ok = fig["missing_on_n3"] == 0 and fig["n3_keys_at_voter"] >= count

    rcommon, rper, version = None, {}, ""
    if not a.no_redis:
        version = subprocess.run([a.redis, "--version"], capture_output=True, text=True).stdout.split()
        version = next((w[2:] for w in version if w.startswith("v=")), "?")
        rcommon, rper = run_redis(a, count)
        for k, v in rcommon.items():
            print(f"redis_{k}: {v:.3f}" if isinstance(v, float) else f"redis_{k}: {v}")
        for name, d in rper.items():
            for k, v in d.items():
                print(f"redis_{name}_{k}: {v:.3f}" if isinstance(v, float) else f"redis_{name}_{k}: {v}")
            ok = ok and d["missing"] == 0 and d["keys_at_ready"] >= count

    cpu = platform.processor() or platform.machine()
    print()
    print(f"Membership changes on loopback ({os.cpu_count()} cores, {cpu}; values of {a.value_size} random bytes, "
          f"{count} keys, one writer SETting every {a.pace * 1000:.0f} ms). keel: `--shards {a.shards}`, "
          f"defaults otherwise (appendonly no); a joining node is added with KEEL NODE ADD and is ready once a voter."
          + ("" if a.no_redis else
             f" redis-server {version}: defaults plus `--save \"\" --appendonly no`; a fresh replica is sent "
             f"REPLICAOF and is ready at master_link_status:up, master_sync_in_progress:0."))
    print()
    print("| server | joiner | data (values) | primary used_memory | join → ready | per GB "
          "| longest write pause: baseline / join / leave | acked writes missing on the joiner |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| keel | n3 (ADD → voter; → learner {fig['to_learner_s']:.2f} s) | {fig['payload_gb']:.2f} GB "
          f"| {fig['used_memory_gb']:.2f} GB | {fig['to_voter_s']:.2f} s | {fig['s_per_gb']:.1f} s/GB "
          f"| {fig['gap_baseline_ms']:.0f} / {fig['gap_join_ms']:.0f} / {fig['gap_leave_ms']:.0f} ms "
          f"(REMOVE → gone {fig['leave_s']:.2f} s) | {fig['missing_on_n3']} |")
    for name, d in rper.items():
        print(f"| redis | {name} (REPLICAOF → up; diskless delay {d['diskless_sync_delay']} s) "
              f"| {rcommon['payload_gb']:.2f} GB | {rcommon['used_memory_gb']:.2f} GB | {d['to_ready_s']:.2f} s "
              f"| {d['s_per_gb']:.1f} s/GB (RDB transfer {d['rdb_transfer_s']:.1f} s, load {d['rdb_load_s']:.1f} s) "
              f"| {rcommon['gap_baseline_ms']:.0f} / {d['gap_join_ms']:.0f} / no leave "
              f"(r1's fork {d['primary_fork_ms']:.0f} ms) "
              f"| {d['missing']} |")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

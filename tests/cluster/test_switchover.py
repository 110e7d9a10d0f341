"""Planned switchover (FAILOVER), Sentinel discovery and Sentinel-aware
clients, over the cluster harness.

Every test builds its own cluster (`--shards 2`, 5 ms one way between zones)
from the helpers of test_failover.py: one `[[nodes]]` topology naming each
node by its relay address, h1 the first primary of term 1. Every node answers
Sentinel's discovery commands on its client port for the database `keel`, so
real Sentinel clients — redis-py's `redis.sentinel.Sentinel` and ioredis in
sentinel mode, each run as a process *inside* a host's namespace — find the
primary with nothing but keel, and follow it when it dies.

What is checked is what a user could see: the clients' acknowledged writes
(read back from every live node), SENTINEL and FAILOVER replies, INFO,
`+switch-master` messages, error replies. Every wait is bounded; a failure
carries every node's INFO cluster, replication state and log tail (and the
client process's output where one ran).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from harness import REPO, Cluster, RespError
from test_failover import (
    DELAY_MS, LOSS_WINDOW, PORT, PORTS, SHARDS, ZONES, Ack, Load, Writer, check, diagnostics,
    fields, info, longest_gap, missing_on, report, start_cluster, stats, until, wait_converged,
    wait_healthy, wait_one_primary,
)

HERE = Path(__file__).resolve().parent
NODE_DIR = REPO / "tests" / "node"
IOREDIS_SCRIPT = HERE / "ioredis_sentinel.js"
DB = "keel"  # keel's default --database-name
CLIENT_HOST = "h2"  # the namespace the Sentinel clients run in
KILL_AT_COUNTER = 50  # the clients' counter on h1 when h1 is SIGKILLed (~200 writes in)
CLIENT_DEADLINE = 45.0  # s: a client script gives up (and reports) after this long
CLIENT_AFTER = 100  # acks by the new primary a client script waits for before it ends
SWITCHOVER_BOUND = 10.0  # s from FAILOVER to an agreed new primary
REPL_TIMEOUT = 10  # s: keel's default --repl-timeout
MAX_GAP = 2.0  # s: sanity bound on the longest gap between acks during a switchover


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

def host_of(c: Cluster, ip: str) -> str | None:
    """The host whose relay (or direct) address is `ip`."""
    for h in c.hosts:
        if ip in (c.relay_addr(h)[0], c.addr(h)[0]):
            return h
    return None


def as_map(flat) -> dict:
    """A RESP2 map (flat [k1, v1, k2, v2, ...]) as a dict."""
    assert isinstance(flat, list) and len(flat) % 2 == 0, f"not a flat map: {flat!r}"
    return dict(zip(flat[::2], flat[1::2]))


def sentinel(c: Cluster, host: str, *args):
    return c.call(host, host, "SENTINEL", *args, timeout=2)


def relay(c: Cluster, h: str) -> list[str]:
    ip, _ = c.relay_addr(h)
    return [ip, str(PORT)]


STABLE = ("name", "ip", "port", "runid", "flags", "master-host", "master-port", "num-slaves",
          "num-other-sentinels", "quorum", "config-epoch")


def stable(m: dict) -> dict:
    """A SENTINEL entry without its timing fields (last-ping-reply...)."""
    return {k: v for k, v in m.items() if k in STABLE}


def error_of(fn) -> str | None:
    """The error reply `fn()` raised (None if it returned)."""
    try:
        fn()
    except RespError as e:
        return str(e)
    return None


class SentinelWriter(Writer):
    """A Writer that finds the primary as a Sentinel client does: by asking the
    nodes (own host first) `SENTINEL get-master-addr-by-name keel`."""

    def discover(self) -> str | None:
        order = [self.home] + [h for h in self.c.hosts if h != self.home]
        for h in order:
            if self.stop_ev.is_set():
                return None
            try:
                r = self.c.call(self.home, h, "SENTINEL", "get-master-addr-by-name", DB, timeout=0.5)
            except (OSError, ConnectionError, RespError):
                continue
            if r and host_of(self.c, r[0]):
                return host_of(self.c, r[0])
        return None


class SentinelLoad(Load):
    def __init__(self, c: Cluster, homes, **kw):  # not Load's: that one starts plain Writers
        self.ev = threading.Event()
        self.writers = [SentinelWriter(c, i, h, self.ev, **kw) for i, h in enumerate(homes)]
        for w in self.writers:
            w.start()


class Subscriber:
    """A connection SUBSCRIBEd to `+switch-master` on one node."""

    def __init__(self, c: Cluster, host: str):
        self.host = host
        self.conn = c.connect(host, host, timeout=5)
        r = self.conn.call("SUBSCRIBE", "+switch-master")
        assert r == ["subscribe", "+switch-master", 1], f"SUBSCRIBE on {host}: {r!r}"
        self.got: list[str] = []

    def wait(self, payload: str, timeout: float) -> bool:
        """Reads messages until `payload` arrives (True) or `timeout` passes."""
        deadline = time.monotonic() + timeout
        while payload not in self.got:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.conn.sock.settimeout(left)
            try:
                m = self.conn.read()
            except (OSError, TimeoutError):
                return False
            if isinstance(m, list) and len(m) == 3 and m[0] == "message":
                self.got.append(m[2])
        return True

    def close(self):
        self.conn.close()


# --------------------------------------------------------------------------
# Sentinel clients run inside a namespace (redis-py here, ioredis in
# ioredis_sentinel.js); both print one JSON summary on stdout
# --------------------------------------------------------------------------

REDIS_PY_CLIENT = r'''
import json, sys, time
from redis.exceptions import RedisError
from redis.sentinel import Sentinel

cfg = json.loads(sys.argv[1])
t_start = time.monotonic()
s = Sentinel([tuple(a) for a in cfg["sentinels"]], socket_timeout=0.5)
m = s.master_for(cfg["name"], socket_timeout=1.0, socket_connect_timeout=1.0)
acks, errors, masters = [], {}, []
first = None
new_acks, first_new_t, finished = 0, None, "deadline"
n = 0
while time.monotonic() < t_start + cfg["deadline"]:
    n += 1
    incr = n % 4 == 0
    key = "ctr" if incr else "py:%d" % n
    value = "v%d" % n
    try:
        reply = m.incr(key) if incr else m.set(key, value)
    except RedisError as e:
        k = type(e).__name__
        errors[k] = errors.get(k, 0) + 1
        time.sleep(0.02)
        continue
    t = time.monotonic()
    if reply is not True and not isinstance(reply, int):
        errors["unexpected"] = errors.get("unexpected", 0) + 1
        continue
    # One connection, used by this thread only: the pool's master address is
    # the one it connected to, so the address that acknowledged this write.
    addr = list(m.connection_pool.master_address)
    if first is None:
        first = addr
    if not masters or masters[-1] != addr:
        masters.append(addr)
    acks.append([t, "INCR" if incr else "SET", key, reply if incr else value, addr[0], int(addr[1])])
    if addr != first:
        new_acks += 1
        first_new_t = first_new_t or t
        if new_acks >= cfg["after"] and t - first_new_t >= 1.0:
            finished = "enough"
            break
try:
    end = list(s.discover_master(cfg["name"]))
except RedisError as e:
    end = repr(e)
print(json.dumps({"first": first, "masters": masters, "discovered_end": end, "errors": errors,
                  "finished": finished, "new_acks": new_acks, "acks": acks}), flush=True)
'''


def run_sentinel_client(c: Cluster, name: str, argv_of, env=None) -> dict:
    """Runs a Sentinel client in CLIENT_HOST's namespace, SIGKILLs h1 once the
    client's counter there reaches KILL_AT_COUNTER, and returns its summary
    (with `t_kill` added)."""
    cfg = {"sentinels": [[c.relay_addr(h)[0], PORT] for h in c.hosts], "name": DB,
           "deadline": CLIENT_DEADLINE, "after": CLIENT_AFTER}
    p = c.popen(CLIENT_HOST, argv_of(json.dumps(cfg)), stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, env=env)
    out: dict[str, str] = {}

    def collect():
        o, e = p.communicate()
        out["stdout"], out["stderr"] = o.decode(errors="replace"), e.decode(errors="replace")
    reader = threading.Thread(target=collect, daemon=True)
    reader.start()

    def client_state() -> str:
        reader.join(0.1)
        return (f"client exit {p.poll()}; stdout {out.get('stdout', '')[-2000:]!r}; "
                f"stderr {out.get('stderr', '')[-3000:]!r}")

    def counter():
        if p.poll() is not None:
            raise AssertionError(f"the {name} client ended early: {client_state()}\n{diagnostics(c)}")
        try:
            return int(c.call("h1", "h1", "GET", "ctr", timeout=1) or 0) >= KILL_AT_COUNTER
        except (OSError, ConnectionError, RespError):
            return False
    until(c, counter, 20, f"the {name} client's counter on h1 to reach {KILL_AT_COUNTER}")
    t_kill = time.monotonic()
    c.kill("h1")
    t_dead = time.monotonic()
    reader.join(CLIENT_DEADLINE + 15)
    check(c, not reader.is_alive(), f"the {name} client did not end within its deadline")
    check(c, p.returncode == 0, f"the {name} client failed: {client_state()}")
    try:
        summary = json.loads(out["stdout"].strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise AssertionError(f"no JSON summary from the {name} client: {client_state()}") from None
    summary["t_kill"], summary["t_dead"] = t_kill, t_dead
    summary["stderr"] = out["stderr"]
    return summary


def check_sentinel_client_followed(c: Cluster, name: str, s: dict) -> None:
    """The client's summary after h1's SIGKILL: it moved to the new primary,
    and no write it saw acknowledged is missing (those of h1's last moment
    excepted, eventual mode)."""
    t_kill = s["t_kill"]

    def addr(a):
        return [a[0], str(a[1])] if isinstance(a, list) and len(a) == 2 else a
    s["first"], s["discovered_end"] = addr(s["first"]), addr(s["discovered_end"])
    s["masters"] = [addr(m) for m in s["masters"]]
    brief = {k: v for k, v in s.items() if k not in ("acks", "stderr")}
    new, term = wait_one_primary(c, ["h2", "h3"], 10, "one primary among h2, h3", not_="h1")
    check(c, term == 2, f"term {term} after one failover")
    check(c, s["finished"] == "enough",
          f"the {name} client did not get {CLIENT_AFTER} writes acknowledged by a new primary within "
          f"{CLIENT_DEADLINE}s: {brief}\nclient stderr (tail): {s['stderr'][-2000:]}")
    check(c, s["first"] == relay(c, "h1"), f"the {name} client started on {s['first']}, not h1: {brief}")
    check(c, s["masters"] == [relay(c, "h1"), relay(c, new)],
          f"masters the {name} client wrote to: {s['masters']}; the primary is {new} {relay(c, new)}")
    check(c, s["discovered_end"] == relay(c, new),
          f"the {name} client's final discovery {s['discovered_end']}, the primary is {new}")

    acks = [Ack(t, host_of(c, ip), 0, kind, key, None, value) for t, kind, key, value, ip, _ in s["acks"]]
    old = [a for a in acks if a.node == "h1"]
    post = [a for a in acks if a.node != "h1"]
    # A reply h1 sent just before it died may arrive a relay delay later.
    late = [a for a in old if a.t > s["t_dead"] + 0.2]
    check(c, not late, f"acks by h1 after its SIGKILL (reaped at {s['t_dead']:.3f}): {late[:3]}")
    check(c, all(a.node == new for a in post), f"acks by others than h1 and {new}: {post[:3]}")
    first_new = min(a.t for a in post)
    gap, gap_at = longest_gap(acks)
    report(name, f"{len(acks)} writes acknowledged ({len(old)} by h1, {len(post)} by {new}); errors "
           f"{s['errors']}; writes resumed on {new} {first_new - t_kill:.2f}s after the SIGKILL; "
           f"longest gap {gap:.2f}s (from {gap_at - t_kill:+.2f}s)")
    wait_converged(c, ["h2", "h3"])
    for h, miss in missing_on(c, ["h2", "h3"], acks).items():
        lost_post = [a for a in miss if a.node != "h1"]
        early = [a for a in miss if a.node == "h1" and a.t < t_kill - LOSS_WINDOW]
        check(c, not lost_post, f"{h} lacks {len(lost_post)} writes {new} acknowledged to the "
              f"{name} client: {lost_post[:5]}")
        check(c, not early, f"{h} lacks {len(early)} writes h1 acknowledged more than {LOSS_WINDOW}s "
              f"before its death: {early[:5]} (kill at {t_kill:.3f})")
        report(name, f"{h}: {len(miss)} of {len(old)} writes of h1 lost (all in its last "
               f"{LOSS_WINDOW}s), all {len(post)} of {new} present")


# --------------------------------------------------------------------------
# 1, 2. Sentinel clients follow a failover
# --------------------------------------------------------------------------

def test_redis_py_sentinel_follows_a_failover():
    with Cluster(ZONES, delay_ms=DELAY_MS, ports=PORTS) as c:
        start_cluster(c)
        script = c.dir / "redis_py_sentinel.py"
        script.write_text(REDIS_PY_CLIENT)
        s = run_sentinel_client(c, "redis-py", lambda cfg: ["python3", str(script), cfg])
        check_sentinel_client_followed(c, "redis-py", s)


def test_ioredis_sentinel_follows_a_failover():
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    modules = NODE_DIR / "node_modules"
    assert (modules / "ioredis" / "package.json").exists(), \
        f"ioredis missing in {modules}: run tests/install-deps.sh (or npm ci --prefix tests/node)"
    with Cluster(ZONES, delay_ms=DELAY_MS, ports=PORTS) as c:
        start_cluster(c)
        env = {**os.environ, "NODE_PATH": str(modules)}
        s = run_sentinel_client(c, "ioredis", lambda cfg: [node, str(IOREDIS_SCRIPT), cfg], env=env)
        check_sentinel_client_followed(c, "ioredis", s)


# --------------------------------------------------------------------------
# 3. planned switchover: FAILOVER, then FAILOVER TO back
# --------------------------------------------------------------------------

def switchover(c: Cluster, load: Load, subs: list[Subscriber], name: str, old: str,
               args: tuple, want: str | None, want_term: int) -> tuple[str, float, float]:
    """FAILOVER `args` on `old`; checks the outcome, returns (new primary,
    t of the FAILOVER, t of the new primary's first ack)."""
    hosts = list(c.hosts)
    before = {h: stats(c, h) for h in hosts}
    t0 = time.monotonic()
    r = c.call(old, old, "FAILOVER", *args)
    check(c, r == "OK", f"FAILOVER {' '.join(args)} on {old}: {r!r}")
    states: list[str] = []

    def moved():
        try:
            states.append(info(c, old, "replication").get("master_failover_state", "?"))
        except (OSError, ConnectionError, RespError) as e:
            states.append(type(e).__name__)
        v = {h: info(c, h) for h in hosts}
        prim = [h for h in hosts if v[h].get("cluster_role") == "primary"]
        return prim[0] if prim and prim[0] != old else None
    until(c, moved, SWITCHOVER_BOUND, f"a new primary after FAILOVER {' '.join(args)} on {old}", 0.02)
    new, term = wait_one_primary(c, hosts, SWITCHOVER_BOUND, "one primary after the switchover", not_=old)
    check(c, want is None or new == want, f"FAILOVER {' '.join(args)}: {new} became primary, not {want}")
    check(c, term == want_term, f"term {term} after the switchover, expected {want_term}")
    log = c.hosts[old].log_path.read_text(errors="replace")
    check(c, f"FAILOVER to {new}:" in log, f"{old}'s log does not name {new} as the FAILOVER target")
    check(c, info(c, old).get("cluster_role") == "backup", f"{old} is not a backup after the switchover")
    # Writers that still talk to the old primary have their writes forwarded
    # to the new one (it is a backup now): any node's ack after the move counts.
    t_moved = time.monotonic()
    first = until(c, lambda: load.first_ack(t_moved, by_not=None), SWITCHOVER_BOUND,
                  "a write acknowledged after the switchover")

    def idle():
        return all(info(c, h).get("cluster_failover_state") == "no-failover"
                   and info(c, h, "replication").get("master_failover_state") == "no-failover" for h in hosts)
    until(c, idle, 5, "cluster_failover_state / master_failover_state back to no-failover everywhere")
    # The old primary is a backup now: it forwards a write to the new one
    # (or, while it is not yet following, refuses it with -READONLY).
    try:
        r = c.call(old, old, "SET", "on-the-old-primary", "x")
        check(c, r == "OK" and c.call(new, new, "GET", "on-the-old-primary") == "x",
              f"a write through {old} after the switchover: {r}, not on {new}")
    except RespError as e:
        check(c, str(e).startswith("READONLY"), f"a write on {old} after the switchover: {e}")

    # Every backup (the old primary included) streams from the new primary,
    # resynced partially: no full sync served anywhere.
    wait_healthy(c, new, term=want_term, timeout=15)
    after = {h: stats(c, h) for h in hosts}
    check(c, all(after[h]["sync_full"] == before[h]["sync_full"] for h in hosts),
          f"a full sync during the switchover: before {before}, after {after}")
    check(c, after[new]["sync_partial_ok"] >= before[new]["sync_partial_ok"] + SHARDS * 2,
          f"{new} did not serve partial resyncs to both backups: before {before}, after {after}")
    last = {h: {k: v for k, v in info(c, h, "replication").items() if k.endswith("last_sync")}
            for h in hosts if h != new}
    for h, ls in last.items():
        check(c, ls and all(v == "partial" for v in ls.values()), f"{h}'s last syncs: {ls}")

    payload = f"{DB} {relay(c, old)[0]} {PORT} {relay(c, new)[0]} {PORT}"
    for sub in subs:
        check(c, sub.wait(payload, 5), f"{sub.host}: no +switch-master {payload!r} (got {sub.got})")
    seen = []
    for s in states:
        if not seen or seen[-1] != s:
            seen.append(s)
    report(name, f"FAILOVER {' '.join(args) or '(no arguments)'} on {old}: {new} primary of term {term} "
           f"{time.monotonic() - t0:.2f}s later, first write acknowledged by it "
           f"{first.t - t0:.2f}s after the command; {old}'s master_failover_state went {seen}; "
           f"sync_partial_ok on {new} {before[new]['sync_partial_ok']} -> {after[new]['sync_partial_ok']}, "
           f"sync_full unchanged")
    return new, t0, first.t


def test_planned_failover_loses_nothing_and_pauses_briefly():
    name = "switchover"
    with Cluster(ZONES, delay_ms=DELAY_MS, ports=PORTS) as c:
        start_cluster(c)
        subs = [Subscriber(c, h) for h in c.hosts]
        load = SentinelLoad(c, ["h1", "h2", "h3"])
        until(c, lambda: len(load.acks()) > 50, 10, "the writers to get going")
        time.sleep(1.0)
        new, t1, f1 = switchover(c, load, subs, name, "h1", (), None, 2)
        time.sleep(1.0)
        h1_ip, _ = c.relay_addr("h1")
        back, t2, f2 = switchover(c, load, subs, name, new, ("TO", h1_ip, str(PORT)), "h1", 3)
        time.sleep(1.0)
        acks = load.stop()
        for sub in subs:
            sub.close()
        gaps = []
        for t, f in ((t1, f1), (t2, f2)):
            window = [a for a in acks if t - 1.0 <= a.t <= f + 1.0]
            gaps.append(longest_gap(window))
        report(name, f"{load.summary()}; longest gap between acks around the first switchover "
               f"{gaps[0][0] * 1000:.0f} ms, around the second {gaps[1][0] * 1000:.0f} ms "
               f"(over the whole run {longest_gap(acks)[0] * 1000:.0f} ms)")
        for (gap, at), t in zip(gaps, (t1, t2)):
            check(c, gap < MAX_GAP, f"writes stopped for {gap:.2f}s (from {at - t:+.2f}s after FAILOVER)")
        digest_ = wait_converged(c, ["h1", "h2", "h3"])
        for h, miss in missing_on(c, ["h1", "h2", "h3"], acks).items():
            check(c, not miss, f"{h} lacks {len(miss)} acknowledged writes: {miss[:5]}")
        by = {h: sum(1 for a in acks if a.node == h) for h in c.hosts}
        report(name, f"all {len(acks)} acknowledged writes on all three nodes (by node {by}), digest {digest_}")


# --------------------------------------------------------------------------
# 4. FAILOVER errors, and the SENTINEL replies
# --------------------------------------------------------------------------

def test_failover_errors():
    with Cluster(ZONES, delay_ms=DELAY_MS, ports=PORTS) as c:
        start_cluster(c)
        h2_ip, _ = c.relay_addr("h2")
        # FAILOVER errors
        want = {
            ("h2", "FAILOVER"): "ERR FAILOVER is not valid when server is a replica.",
            ("h3", "FAILOVER", "TO", h2_ip, str(PORT)): "ERR FAILOVER is not valid when server is a replica.",
            ("h1", "FAILOVER", "FORCE"):
                "ERR FAILOVER with force option requires both a timeout and target HOST and IP.",
            ("h1", "FAILOVER", "FORCE", "TIMEOUT", "100"):
                "ERR FAILOVER with force option requires both a timeout and target HOST and IP.",
            ("h1", "FAILOVER", "TO", h2_ip, str(PORT), "FORCE"):
                "ERR FAILOVER with force option requires both a timeout and target HOST and IP.",
            ("h1", "FAILOVER", "TO", "10.99.99.99", str(PORT)): "ERR FAILOVER target HOST and PORT is not a replica.",
            ("h1", "FAILOVER", "TO", h2_ip, "6380"): "ERR FAILOVER target HOST and PORT is not a replica.",
            ("h1", "FAILOVER", "TO", c.relay_addr("h1")[0], str(PORT)):
                "ERR FAILOVER target HOST and PORT is not a replica.",
            ("h1", "FAILOVER", "ABORT"): "ERR No failover in progress.",
            ("h2", "FAILOVER", "ABORT"): "ERR No failover in progress.",
        }
        got = {k: error_of(lambda k=k: c.call(k[0], k[0], *k[1:])) for k in want}
        bad = {" ".join(k): (got[k], v) for k, v in want.items() if got[k] != v}
        check(c, not bad, f"FAILOVER errors (got, want): {bad}")
        wait_healthy(c, "h1", term=1, timeout=5)
        for h in c.hosts:
            check(c, info(c, h).get("cluster_failover_state") == "no-failover", f"{h} reports a failover")

        # SENTINEL, all healthy
        ids = {h: sentinel(c, h, "myid") for h in c.hosts}
        check(c, all(re.fullmatch(r"[0-9a-f]{40}", i) for i in ids.values()) and len(set(ids.values())) == 3,
              f"SENTINEL myid: {ids}")
        for h in c.hosts:
            check(c, sentinel(c, h, "get-master-addr-by-name", DB) == relay(c, "h1"),
                  f"{h}: get-master-addr-by-name {sentinel(c, h, 'get-master-addr-by-name', DB)}")
            check(c, sentinel(c, h, "get-master-addr-by-name", "nosuch") is None, f"{h}: an unknown name")
            masters = [as_map(m) for m in sentinel(c, h, "masters")]
            check(c, len(masters) == 1, f"{h}: SENTINEL masters {masters}")
            m = masters[0]
            check(c, (m["name"], m["ip"], m["port"], m["flags"], m["num-slaves"], m["num-other-sentinels"],
                      m["quorum"], m["config-epoch"], m["runid"])
                  == (DB, *relay(c, "h1"), "master", "2", "2", "2", "1", ids["h1"]), f"{h}: SENTINEL masters {m}")
            check(c, stable(as_map(sentinel(c, h, "master", DB))) == stable(m),
                  f"{h}: SENTINEL master differs from masters")
            reps = sorted((as_map(r) for r in sentinel(c, h, "replicas", DB)), key=lambda r: r["ip"])
            check(c, [[r["ip"], r["port"]] for r in reps] == [relay(c, "h2"), relay(c, "h3")]
                  and all(r["flags"] == "slave" and [r["master-host"], r["master-port"]] == relay(c, "h1")
                          and r["master-link-status"] == "ok" for r in reps),
                  f"{h}: SENTINEL replicas {reps}")
            check(c, [stable(as_map(r)) for r in sentinel(c, h, "slaves", DB)]
                  == [stable(as_map(r)) for r in sentinel(c, h, "replicas", DB)], f"{h}: SENTINEL slaves != replicas")
            others = [o for o in c.hosts if o != h]
            sents = sorted((as_map(s) for s in sentinel(c, h, "sentinels", DB)), key=lambda s: s["ip"])
            check(c, [[s["ip"], s["port"], s["runid"], s["flags"]] for s in sents]
                  == [[*relay(c, o), ids[o], "sentinel"] for o in others], f"{h}: SENTINEL sentinels {sents}")
            q = sentinel(c, h, "ckquorum", DB)
            check(c, q.startswith("OK 3 usable Sentinels"), f"{h}: SENTINEL ckquorum {q}")
            for args in (("master", "nosuch"), ("replicas", "nosuch"), ("sentinels", "nosuch")):
                e = error_of(lambda args=args: sentinel(c, h, *args))
                check(c, e == "ERR No such master with that name", f"{h}: SENTINEL {' '.join(args)}: {e}")

        # FAILOVER ABORT while the target cannot catch up: the held write goes
        # through on h1 once aborted.
        c.pause("h2")
        try:
            assert c.call("h1", "h1", "SET", "h2-lacks-this", "1") == "OK"
            assert c.call("h1", "h1", "FAILOVER", "TO", h2_ip, str(PORT), "TIMEOUT", "20000") == "OK"
            # The command is handed to the cluster driver: its state shows a
            # moment after the +OK (sampled at once and printed).
            at_once = info(c, "h1", "replication").get("master_failover_state")
            until(c, lambda: info(c, "h1", "replication").get("master_failover_state") == "waiting-for-sync"
                  and info(c, "h1").get("cluster_failover_state") == "waiting-for-sync", 1,
                  "master_failover_state / cluster_failover_state waiting-for-sync while the target is stopped",
                  0.01)
            held = c.connect("h1", "h1", timeout=0.5)
            held.send("SET", "held", "1")
            try:
                check(c, False, f"a write answered while the FAILOVER waits: {held.read()!r}")
            except (TimeoutError, OSError):
                pass
            held.sock.settimeout(5)
            assert c.call("h1", "h1", "FAILOVER", "ABORT") == "OK"
            check(c, held.read() == "OK", "the held write after FAILOVER ABORT")
            held.close()
            check(c, info(c, "h1", "replication").get("master_failover_state") == "no-failover",
                  "master_failover_state after ABORT")
            check(c, error_of(lambda: c.call("h1", "h1", "FAILOVER", "ABORT")) == "ERR No failover in progress.",
                  "a second ABORT")
        finally:
            c.resume("h2")
        wait_healthy(c, "h1", term=1, timeout=10)

        # After h1's death: the survivors name the new primary and still list
        # h1 (a member), down.
        c.kill("h1")
        new, term = wait_one_primary(c, ["h2", "h3"], 10, "one primary among h2, h3", not_="h1")
        other = "h3" if new == "h2" else "h2"
        for h in (new, other):
            check(c, sentinel(c, h, "get-master-addr-by-name", DB) == relay(c, new),
                  f"{h}: get-master-addr-by-name after the failover")
            m = as_map(sentinel(c, h, "master", DB))
            check(c, ([m["ip"], m["port"]], m["flags"], m["config-epoch"], m["num-slaves"])
                  == (relay(c, new), "master", str(term), "2"), f"{h}: SENTINEL master {m}")
            reps = {r["ip"]: r for r in map(as_map, sentinel(c, h, "replicas", DB))}
            dead, live = reps.get(relay(c, "h1")[0]), reps.get(relay(c, other)[0])
            check(c, len(reps) == 2 and dead and live, f"{h}: SENTINEL replicas {list(reps.values())}")
            check(c, "s_down" in dead["flags"].split(",") and dead["flags"].startswith("slave")
                  and dead["master-link-status"] == "err",
                  f"{h}: the dead h1 among the replicas: {dead}")
            check(c, live["flags"] == "slave" and [live["master-host"], live["master-port"]] == relay(c, new),
                  f"{h}: {other} among the replicas: {live}")
            sents = {s["ip"]: s for s in map(as_map, sentinel(c, h, "sentinels", DB))}
            check(c, "s_down" in sents[relay(c, "h1")[0]]["flags"], f"{h}: SENTINEL sentinels {sents}")
            q = sentinel(c, h, "ckquorum", DB)
            check(c, q.startswith("OK 2 usable Sentinels"), f"{h}: SENTINEL ckquorum {q}")
        e = error_of(lambda: c.call(new, new, "FAILOVER", "TO", relay(c, "h1")[0], str(PORT)))
        check(c, e is not None and e.startswith("ERR FAILOVER target"), f"FAILOVER TO the dead h1: {e}")
        check(c, info(c, new).get("cluster_failover_state") == "no-failover", "a failover runs after the refusal")
        report("failover-errors", f"{len(want)} FAILOVER errors as Redis words them; master_failover_state "
               f"right after FAILOVER's +OK: {at_once}; after h1's death "
               f"{new} (term {term}) lists h1 as {dead['flags']}; FAILOVER TO the dead h1: {e}")


# --------------------------------------------------------------------------
# 5. no eligible replica: writes pause until FAILOVER FORCE
# --------------------------------------------------------------------------

def test_no_eligible_replica_pauses_writes_until_forced():
    name = "no-eligible"
    zones = {"h1": "z1", "h2": "z2", "h3": "z3", "h4": "z4", "h5": "z5"}
    arbiters = ("h4", "h5")
    with Cluster(zones, delay_ms=DELAY_MS, ports=PORTS) as c:
        start_cluster(c, "--consistency", "strong", "--sync-backup", "h2", arbiters=arbiters)
        with c.connect("h1", "h1") as conn:
            for i in range(100):
                assert conn.call("SET", f"before:{i}", i) == "OK"
        wait_converged(c, ["h1", "h2", "h3"])

        # h3 misses a few hundred strong-acknowledged writes (h2, the sync
        # backup, has them), then h1 and h2 die and h3 comes back. A SIGSTOP
        # of h3 would not do: the kernel and h3's relay buffer the stream
        # meanwhile and h3 reads it all after SIGCONT; cutting h3 off from h1
        # does (h3 keeps hearing h2 and the arbiters, so nobody fails over).
        c.partition(["h3"], ["h1"])
        with c.connect("h1", "h1") as conn:
            for i in range(300):
                r = conn.call("SET", f"lag:{i}", i)
                check(c, r == "OK", f"strong write lag:{i} with h3 cut off: {r!r}")
        seqs = {h: sum(int(fields(v)["seq"]) for k, v in info(c, h, "replication").items()
                       if re.fullmatch(r"shard\d+", k)) for h in ("h1", "h2", "h3")}
        check(c, seqs["h3"] < seqs["h1"] == seqs["h2"], f"write records per node (summed over shards): {seqs}")
        # The voters learn the commit point from pings: this test is about what
        # they do when they know h3 is behind it, so it lets a ping carry it
        # first. (Killing h1 and h2 within one ping of their last strong write
        # leaves the survivors unaware of it: a known gap, see the stop notes.)
        def commit_known(h):
            return sum(int(x) for x in info(c, h).get("cluster_commit", "").split(",") if x) >= seqs["h1"]
        until(c, lambda: all(commit_known(h) for h in ("h3", "h4", "h5")), 10,
              "the survivors to know the commit point", 0.05)
        h3_now = sum(int(fields(v)["seq"]) for k, v in info(c, "h3", "replication").items()
                     if re.fullmatch(r"shard\d+", k))
        check(c, h3_now < seqs["h1"], f"h3 caught up while cut off: {h3_now} of {seqs}")
        c.kill("h1")
        c.kill("h2")
        t0 = time.monotonic()
        c.heal()

        seen: list[str] = []
        n = [0]

        def paused():
            n[0] += 1
            try:
                r = c.call("h3", "h3", "SET", f"probe:{n[0]}", "x", timeout=2)
            except RespError as e:
                seen.append(str(e).split(" ", 1)[0])
                return str(e).startswith("CLUSTERDOWN")
            except (OSError, ConnectionError) as e:
                seen.append(type(e).__name__)
                return False
            seen.append(f"reply {r!r}")
            check(c, False, f"h3, missing {seqs['h1'] - seqs['h3']} strong-acknowledged write records, "
                  f"took a write {time.monotonic() - t0:.2f}s after h1 and h2 died (replies {seen}); "
                  f"GET lag:0 on h3: {c.call('h3', 'h3', 'GET', 'lag:0')!r}")
        until(c, paused, 20, "writes on h3 to meet CLUSTERDOWN", 0.2)
        t_paused = time.monotonic() - t0
        kinds = sorted(set(seen), key=seen.index)
        check(c, not any(s.startswith("reply") for s in seen), f"h3 took a write before it was forced: {seen}")
        v = info(c, "h3")
        check(c, v.get("cluster_writes_paused") == "1" and v.get("cluster_role") != "primary",
              f"h3 while paused: {v}")
        e = error_of(lambda: c.call("h3", "h3", "SET", "k", "v"))
        check(c, e is not None and e.startswith("CLUSTERDOWN Writes are paused"), f"a write on h3: {e}")
        with c.connect("h3", "h3") as conn:
            check(c, conn.call("GET", "before:7") == "7", "a read on h3 while writes are paused")
            check(c, conn.call("GET", "lag:0") is None, "h3 holds a write made while it was cut off")
        arb = {h: info(c, h).get("cluster_writes_paused") for h in arbiters}
        report(name, f"write records {seqs}; h3 paused {t_paused:.2f}s after h1 and h2 died (replies seen "
               f"{kinds}); arbiters' "
               f"cluster_writes_paused {arb}; h3 role {v.get('cluster_role')} term {v.get('cluster_term')}")

        # The operator's override.
        check(c, c.call("h3", "h3", "FAILOVER", "FORCE") == "OK", "FAILOVER FORCE on h3")
        t_force = time.monotonic()

        def forced():
            v = info(c, "h3")
            return v if v.get("cluster_role") == "primary" and v.get("cluster_writes_paused") == "0" else None
        v = until(c, forced, 10, "h3 to become primary after FAILOVER FORCE")
        opened = time.monotonic() - t_force
        check(c, v.get("cluster_forced_failovers") == "1", f"cluster_forced_failovers {v}")
        log = c.hosts["h3"].log_path.read_text(errors="replace")
        forced_lines = [ln for ln in log.splitlines() if "FORCED" in ln]
        check(c, forced_lines and " WARN " in forced_lines[0], f"h3's log has no WARN line with FORCED: {forced_lines}")
        for h in arbiters:
            check(c, info(c, h).get("cluster_primary") == "h3", f"{h} does not follow h3: {info(c, h)}")
        report(name, f"h3 primary (term {v.get('cluster_term')}) {opened:.2f}s after FAILOVER FORCE; "
               f"log: {forced_lines[0].split('  ')[-1].strip()}")

        # A write on the forced primary. Strong mode with its sync backup (h2)
        # dead: one attempt gets a little over --repl-timeout to show what
        # happens, with INFO replication as the evidence.
        rep0 = info(c, "h3", "replication")
        t_w = time.monotonic()
        try:
            outcome = c.call("h3", "h3", "SET", "after-force", "1", timeout=REPL_TIMEOUT + 3)
        except RespError as e:
            outcome = f"error reply {e}"
        except (OSError, ConnectionError) as e:
            outcome = f"{type(e).__name__}: {e}"
        took = time.monotonic() - t_w
        rep1 = info(c, "h3", "replication")
        evidence = {k: (rep0.get(k), rep1.get(k)) for k in ("role", "consistency", "sync_backup",
                                                             "strong_timeouts", "connected_slaves")}
        report(name, f"a write on the forced primary h3: {outcome!r} after {took:.2f}s; "
               f"INFO replication (before, after) {evidence}")
        check(c, outcome == "OK", f"a write on h3, forced primary of term {v.get('cluster_term')}: "
              f"{outcome!r} after {took:.2f}s; INFO replication (before, after) {evidence}")
        check(c, c.call("h3", "h3", "GET", "after-force") == "1", "h3's write read back")
        check(c, c.call("h3", "h3", "GET", "before:7") == "7", "h3 lost a write made before the lag")

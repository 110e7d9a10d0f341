"""Replication between keel nodes, over the cluster harness.

Every test builds its own cluster: hosts in zones (cross-zone paths through the
harness's delaying relay), one keel per host with `--shards 2`, the first host
the primary and the others backups (`--replicaof` its client address as seen
from the backup). The relays forward the client port and both replication
ports (`--peer-port 16379`: shard i listens on 16379 + i), so replication
traffic across zones pays the configured delay too.

What is checked is what a user could see: the data (`DEBUG DIGEST`, reads on a
backup), INFO replication and INFO stats, ROLE, WAIT, error replies; never
timing alone. Every wait is bounded; on a timeout the failure message carries
the nodes' INFO replication and log tails.
"""

from __future__ import annotations

import json
import random
import re
import statistics
import string
import threading
import time

import pytest

from harness import Cluster, Conn, HarnessError, RespError, wait_for

PORT = 6379
PEER_PORT = 16379
SHARDS = 2
PORTS = (PORT, PEER_PORT, PEER_PORT + 1)  # client port, replication ports of shards 0 and 1
DELAY_MS = 5


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

def keel_args(c: Cluster, host: str, primary: str | None = None, *extra: str,
              shards: int = SHARDS) -> list[str]:
    """keel's arguments on `host`: its id and zone, and `--replicaof` the
    primary's client address as `host` reaches it (through the relay across zones)."""
    args = ["--shards", str(shards), "--peer-port", str(PEER_PORT),
            "--node-id", host, "--zone", c.zone(host), "--region", "r1"]
    if primary is not None:
        args += ["--replicaof", f"{c.client_addr(host, primary)[0]} {PORT}"]
    return args + list(extra)


def parse_info(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and ":" in line:
            k, v = line.split(":", 1)
            out[k] = v
    return out


def info(c: Cluster, host: str, section: str = "replication") -> dict[str, str]:
    return parse_info(c.call(host, host, "INFO", section))


def fields(value: str) -> dict[str, str]:
    """`a=1,b=x` -> {"a": "1", "b": "x"}."""
    return dict(p.split("=", 1) for p in value.split(",") if "=" in p)


def link(i: dict[str, str], shard: int, backup: str) -> dict[str, str] | None:
    """The primary's view of `backup`'s stream of `shard`, from its INFO replication."""
    v = i.get(f"shard{shard}_link_{backup}")
    return fields(v) if v is not None else None


def shard_line(i: dict[str, str], shard: int) -> dict[str, str]:
    return fields(i[f"shard{shard}"])


def stats(c: Cluster, host: str) -> dict[str, int]:
    s = info(c, host, "stats")
    return {k: int(s[k]) for k in ("sync_full", "sync_partial_ok", "sync_partial_err")}


def digest(c: Cluster, host: str) -> str:
    return c.call(host, host, "DEBUG", "DIGEST")


def diagnostics(c: Cluster, hosts) -> str:
    parts = []
    for h in hosts:
        try:
            text = c.call(h, h, "INFO", "replication", timeout=2)
        except Exception as e:  # noqa: BLE001 — a diagnostic, never the failure itself
            text = f"(INFO failed: {e!r})"
        parts.append(f"--- {h} INFO replication\n{text.strip()}\n--- {h} log tail\n{c.log_tail(h, 15)}")
    return "\n".join(parts)


def until(c: Cluster, cond, timeout: float, what: str, hosts=None, interval: float = 0.1):
    """wait_for, failing the test with the nodes' state after the bound."""
    try:
        return wait_for(cond, timeout, interval, what)
    except HarnessError as e:
        raise AssertionError(f"{e}\n{diagnostics(c, hosts or list(c.hosts))}") from None


def wait_linked(c: Cluster, primary: str, backups, timeout: float = 20.0) -> None:
    """Every backup streams every shard from `primary`, online on both ends."""
    def ok():
        i = info(c, primary)
        for b in backups:
            for s in range(SHARDS):
                l = link(i, s, b)
                if l is None or l["state"] != "online":
                    return False
            if info(c, b).get("master_link_status") != "up":
                return False
        return True
    until(c, ok, timeout, f"{list(backups)} to stream from {primary}", [primary, *backups])


def wait_converged(c: Cluster, hosts, timeout: float = 30.0) -> str:
    """All `hosts` hold the same data (DEBUG DIGEST); returns the digest."""
    seen: dict[str, str] = {}

    def same():
        seen.clear()
        for h in hosts:
            seen[h] = digest(c, h)
        return len(set(seen.values())) == 1

    until(c, same, timeout, f"{list(hosts)} to converge (last digests {seen})", hosts, 0.2)
    return seen[hosts[0]]


def resp(*args) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


def pipeline(conn: Conn, cmds) -> list:
    """Sends every command at once, then reads one reply each (errors raise)."""
    conn.sock.sendall(b"".join(resp(*cmd) for cmd in cmds))
    return [conn.read() for _ in cmds]


class Worker(threading.Thread):
    """A thread whose exception is re-raised by `result()`."""

    def __init__(self, fn, *args):
        super().__init__(daemon=True)
        self.fn, self.args = fn, args
        self.value = None
        self.error: BaseException | None = None

    def run(self):
        try:
            self.value = self.fn(*self.args)
        except BaseException as e:  # noqa: BLE001 — handed to result()
            self.error = e

    def result(self, timeout: float = 60.0):
        self.join(timeout)
        if self.is_alive():
            raise AssertionError(f"{self.fn.__name__} still running after {timeout}s")
        if self.error is not None:
            raise self.error
        return self.value


def start_primary_and_backups(c: Cluster, primary: str, backups, primary_extra=(),
                              backup_extra=()) -> None:
    c.start(primary, keel_args(c, primary, None, *primary_extra))
    for b in backups:
        c.start(b, keel_args(c, b, primary, *backup_extra))
    wait_linked(c, primary, backups)


def random_text(rng: random.Random, n: int) -> str:
    return "".join(rng.choices(string.ascii_letters + string.digits, k=n))


def set_many(c: Cluster, host: str, prefix: str, n: int, size: int, seed: int, batch: int = 200) -> None:
    """SET prefix0..prefix{n-1} to incompressible values of `size` bytes, pipelined."""
    rng = random.Random(seed)
    with c.connect(host, host, timeout=20) as conn:
        for at in range(0, n, batch):
            cmds = [("SET", f"{prefix}{i}", random_text(rng, size)) for i in range(at, min(n, at + batch))]
            assert pipeline(conn, cmds) == ["OK"] * len(cmds)


# --------------------------------------------------------------------------
# 1. a mixed load converges on three zones
# --------------------------------------------------------------------------

def mixed_ops(rng: random.Random, nkeys: int) -> list[tuple]:
    """One step of a mixed write load: a few commands (a MULTI/EXEC is several)."""
    i = rng.randrange(nkeys)
    v = f"v{rng.randrange(10 ** 6)}-" * rng.randint(1, 6)
    other = lambda: rng.randrange(nkeys)  # noqa: E731
    r = rng.randrange(16)
    if r == 0:
        return [("SET", f"s:{i}", v)]
    if r == 1:
        return [("SET", f"s:{i}", v, "EX", 5000 + rng.randrange(1000))]
    if r == 2:
        return [("INCR", f"n:{i}")]
    if r == 3:
        return [("HSET", f"h:{i}", f"f{rng.randrange(8)}", v), ("HINCRBY", f"h:{i}", "cnt", 1)]
    if r == 4:
        return [("LPUSH", f"l:{i}", v, f"x{rng.randrange(100)}"), ("LTRIM", f"l:{i}", 0, 15)]
    if r == 5:
        return [("RPOP", f"l:{i}")]
    if r == 6:
        return [("SADD", f"st:{i}", f"m{rng.randrange(30)}", f"m{rng.randrange(30)}")]
    if r == 7:
        return [("SREM", f"st:{i}", f"m{rng.randrange(30)}")]
    if r == 8:
        return [("ZADD", f"z:{i}", rng.randrange(1000), f"m{rng.randrange(30)}")]
    if r == 9:
        return [("ZINCRBY", f"z:{i}", 2.5, f"m{rng.randrange(30)}")]
    if r == 10:
        key = rng.choice(["s", "h", "l", "st", "z"])
        return [("EXPIRE", f"{key}:{i}", 3000 + rng.randrange(3000))]
    if r == 11:  # expires during the test: gone on every node
        return [("SET", f"tmp:{i}", v, "PX", 200 + rng.randrange(300))]
    if r == 12:
        args = []
        for _ in range(rng.randint(2, 6)):
            args += [f"s:{other()}", v]
        return [("MSET", *args)]
    if r == 13:
        return [("MULTI",), ("INCRBY", f"n:{i}", 3), ("HSET", f"h:{other()}", "tx", v),
                ("SADD", f"st:{other()}", "tx"), ("ZADD", f"z:{other()}", 1, "tx"),
                ("SET", f"s:{other()}", v), ("EXEC",)]
    if r == 14:
        return [("DEL", f"s:{i}", f"n:{other()}")]
    return [("APPEND", f"s:{i}", "+")]


def mixed_load(c: Cluster, host: str, seed: int, steps: int, halfway: threading.Event | None = None,
               nkeys: int = 300, batch: int = 50) -> int:
    """Runs `steps` steps of mixed_ops on `host`, pipelined; returns the commands
    sent. Sets `halfway` half way through."""
    rng = random.Random(seed)
    sent = 0
    with c.connect(host, host, timeout=20) as conn:
        for at in range(0, steps, batch):
            if halfway is not None and at >= steps // 2:
                halfway.set()
            cmds = [cmd for _ in range(batch) for cmd in mixed_ops(rng, nkeys)]
            pipeline(conn, cmds)
            sent += len(cmds)
    return sent


def snapshot_of(c: Cluster, host: str, keys) -> dict:
    """The values of `keys` on `host`, read by type (order-free where Redis is)."""
    out = {}
    with c.connect(host, host) as conn:
        for k in keys:
            t = conn.call("TYPE", k)
            if t == "string":
                v = conn.call("GET", k)
            elif t == "hash":
                flat = conn.call("HGETALL", k)
                v = dict(zip(flat[::2], flat[1::2]))
            elif t == "list":
                v = conn.call("LRANGE", k, 0, -1)
            elif t == "set":
                v = sorted(conn.call("SMEMBERS", k))
            elif t == "zset":
                v = conn.call("ZRANGE", k, 0, -1, "WITHSCORES")
            else:
                v = None
            out[k] = (t, v, conn.call("PTTL", k))
    return out


def same_entry(a, b) -> bool:
    """Equal type and value, and TTLs within the time between the two reads."""
    return a[:2] == b[:2] and (a[2] == b[2] if min(a[2], b[2]) < 0 else abs(a[2] - b[2]) < 3000)


def test_mixed_load_converges_across_three_zones():
    with Cluster({"h1": "z1", "h2": "z2", "h3": "z3"}, delay_ms=DELAY_MS, ports=PORTS) as c:
        # h2 streams from the start; h3 joins half way through the load: a full
        # sync of a live dataset, with writes (and transactions) going on.
        start_primary_and_backups(c, "h1", ["h2"])
        halfway = threading.Event()
        workers = [Worker(mixed_load, c, "h1", 1, 1500, halfway), Worker(mixed_load, c, "h1", 2, 1500)]
        for w in workers:
            w.start()
        until(c, lambda: halfway.is_set() or not workers[0].is_alive(), 60, "the load to get half way")
        c.start("h3", keel_args(c, "h3", "h1"))
        joined_during_load = workers[0].is_alive()
        sent = sum(w.result(90) for w in workers)
        print(f"{sent} commands of mixed load; h3 joined during it: {joined_during_load}")
        assert sent > 3000
        assert joined_during_load
        wait_linked(c, "h1", ["h2", "h3"])

        # Let the short TTLs pass: expired keys count on no node.
        time.sleep(0.6)
        d = wait_converged(c, ["h1", "h2", "h3"])
        dbsize = c.call("h1", "h1", "DBSIZE")
        assert dbsize > 500, dbsize
        # DBSIZE counts expired keys not deleted yet; a backup deletes them
        # when the primary's deletions reach it.
        until(c, lambda: all(c.call(b, b, "DBSIZE") == c.call("h1", "h1", "DBSIZE") for b in ("h2", "h3")),
              10, "the same DBSIZE on every node")
        assert c.call("h1", "h1", "KEYS", "tmp:*") == []
        assert c.call("h2", "h2", "KEYS", "tmp:*") == []

        # The same values, type by type, TTLs included (a digest could be blind to some).
        keys = sorted(c.call("h1", "h1", "KEYS", "*"))[:: max(1, dbsize // 150)]
        want = snapshot_of(c, "h1", keys)
        for b in ("h2", "h3"):
            got = snapshot_of(c, b, keys)
            diff = [k for k in keys if not same_entry(got[k], want[k])]
            assert not diff, f"{b} differs on {diff[:5]}: {[(want[k], got[k]) for k in diff[:3]]}"
        assert digest(c, "h1") == d

        # Offsets agree: each backup applied exactly the primary's records.
        # (A key's TTL may run out on the primary just now: its deletion is
        # then on its way to the backups; read again, bounded, until it is in.)
        deadline = time.monotonic() + 10
        while True:
            p = info(c, "h1")
            infos = {b: info(c, b) for b in ("h2", "h3")}
            if all(i.get("slave_repl_offset") == p.get("master_repl_offset") for i in infos.values()) \
                    or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert p["role"] == "master"
        assert p["connected_slaves"] == "2"
        for b in ("h2", "h3"):
            i = infos[b]
            assert i["role"] == "slave"
            assert i["master_link_status"] == "up"
            assert i["slave_repl_offset"] == p["master_repl_offset"], (b, i["slave_repl_offset"])
            assert i["master_sync_last_error"] == ""
            for s in range(SHARDS):
                assert shard_line(i, s)["seq"] == shard_line(p, s)["seq"]
                assert shard_line(i, s)["history"] == shard_line(p, s)["history"]
        slaves = sorted(fields(p[f"slave{n}"])["id"] for n in range(2))
        assert slaves == ["h2", "h3"]

        assert c.call("h1", "h1", "WAIT", 2, 2000) == 2
        role = c.call("h1", "h1", "ROLE")
        assert role[0] == "master" and role[1] == int(p["master_repl_offset"])
        assert len(role[2]) == 2 and all(r[1] == str(PORT) for r in role[2]), role
        for b in ("h2", "h3"):
            r = c.call(b, b, "ROLE")
            assert r[0] == "slave" and r[3] == "connected" and r[4] == role[1], r

        # Backups refuse writes, and their data stays as it was.
        for b in ("h2", "h3"):
            with pytest.raises(RespError, match=r"^READONLY You can't write against a read only replica\."):
                c.call(b, b, "SET", "s:0", "from-a-backup")
            with pytest.raises(RespError, match=r"^READONLY"):
                c.call(b, b, "MSET", "a", "1", "b", "2")
        assert wait_converged(c, ["h1", "h2", "h3"]) == d


# --------------------------------------------------------------------------
# 2. compression: on cross-zone links only
# --------------------------------------------------------------------------

def json_value(i: int) -> str:
    doc = {
        "id": i, "type": "customer", "name": f"customer number {i}",
        "email": f"customer{i}@example.com", "active": i % 3 != 0,
        "address": {"street": "1 Main Street", "city": "Springfield", "country": "US"},
        "tags": ["gold", "newsletter", "mobile", "web"],
        "prefs": {"language": "en", "currency": "USD", "timezone": "UTC"},
    }
    return json.dumps(doc)


def test_cross_zone_links_compress_same_zone_links_do_not():
    zones = {"h1": "z1", "h2": "z2", "h3": "z3", "h4": "z1"}
    with Cluster(zones, delay_ms=DELAY_MS, ports=PORTS) as c:
        start_primary_and_backups(c, "h1", ["h2", "h3", "h4"])
        assert 250 <= len(json_value(1)) <= 400
        with c.connect("h1", "h1", timeout=20) as conn:
            for at in range(0, 3000, 100):
                cmds = [("SET", f"doc:{i}", json_value(i)) for i in range(at, at + 100)]
                assert pipeline(conn, cmds) == ["OK"] * 100
        wait_converged(c, ["h1", "h2", "h3", "h4"])

        p = info(c, "h1")
        report = {}
        for s in range(SHARDS):
            for b in ("h2", "h3", "h4"):
                l = link(p, s, b)
                pay, wire = int(l["payload_bytes"]), int(l["wire_bytes"])
                report[(s, b)] = (l["compress"], l["frames_compressed"], l["frames_raw"], pay, wire)
                assert pay > 300 * 1000, (s, b, l)  # about half of the ~1 MB of documents
                if b == "h4":  # same zone as the primary: raw frames
                    assert l["compress"] == "0", (s, b, l)
                    assert l["frames_compressed"] == "0", (s, b, l)
                    assert wire > pay, (s, b, l)  # a head per frame, nothing saved
                else:
                    assert l["compress"] == "1", (s, b, l)
                    assert int(l["frames_compressed"]) > 0, (s, b, l)
                    assert wire < pay, (s, b, l)
        print("per (shard, backup): compress, frames_compressed, frames_raw, payload, wire:", report)
        # h2 and h3 take compressed frames of the same records: a frame one
        # link encoded goes to the other as it is. h4 is alone of its kind.
        shared = {b: sum(int(link(p, s, b)["frames_shared"]) for s in range(SHARDS))
                  for b in ("h2", "h3", "h4")}
        print("frames shared:", shared)
        assert shared["h2"] + shared["h3"] > 0, shared
        assert shared["h4"] == 0, shared
        for n in range(3):
            sl = fields(p[f"slave{n}"])
            assert sl["compress"] == ("0" if sl["id"] == "h4" else "1"), sl
            if sl["id"] == "h4":
                assert int(sl["wire_bytes"]) >= int(sl["payload_bytes"]), sl
            else:
                assert int(sl["wire_bytes"]) < int(sl["payload_bytes"]), sl

        # The backups count what they received the same way.
        for b in ("h2", "h3", "h4"):
            i = info(c, b)
            for s in range(SHARDS):
                sh = shard_line(i, s)
                pay, wire = int(sh["received_payload_bytes"]), int(sh["received_wire_bytes"])
                assert pay > 300 * 1000, (b, s, sh)
                assert (wire > pay) if b == "h4" else (wire < pay), (b, s, sh)


# --------------------------------------------------------------------------
# 3, 4. resync after a partition: partial from the backlog, full beyond it
# --------------------------------------------------------------------------

def wait_link_dropped(c: Cluster, primary: str, backup: str) -> None:
    """Waits until both ends of a cut link gave it up (otherwise TCP would
    simply resume the old connection after the heal, with no resync)."""
    def dropped():
        p = info(c, primary)
        b = info(c, backup)
        return (all(link(p, s, backup) is None for s in range(SHARDS))
                and b["master_link_status"] == "down")

    until(c, dropped, 15, f"both ends of {primary}->{backup} to drop the link", [primary, backup])


def test_short_disconnect_resyncs_partially():
    with Cluster({"h1": "z1", "h2": "z2"}, delay_ms=DELAY_MS, ports=PORTS) as c:
        start_primary_and_backups(c, "h1", ["h2"], ["--repl-timeout", "2"], ["--repl-timeout", "2"])
        set_many(c, "h1", "before:", 500, 100, seed=3)
        wait_converged(c, ["h1", "h2"])
        before = stats(c, "h1")
        b_before = info(c, "h2")

        t0 = time.monotonic()
        c.partition(["h2"], ["h1"])
        set_many(c, "h1", "during:", 300, 100, seed=4)  # ~40 KB: well inside the 16 MB backlog
        wait_link_dropped(c, "h1", "h2")
        with c.connect("h1", "h1") as conn:
            for i in range(100):
                assert conn.call("INCR", "during:counter") == i + 1
        time.sleep(max(0.0, 4.0 - (time.monotonic() - t0)))
        c.heal()

        wait_linked(c, "h1", ["h2"], timeout=30)
        wait_converged(c, ["h1", "h2"])
        assert c.call("h2", "h2", "GET", "during:counter") == "100"
        after = stats(c, "h1")
        print(f"stats before {before}, after {after}")
        assert after["sync_full"] == before["sync_full"], (before, after)
        assert after["sync_partial_ok"] >= before["sync_partial_ok"] + SHARDS, (before, after)
        assert after["sync_partial_err"] == before["sync_partial_err"], (before, after)
        i = info(c, "h2")
        p = info(c, "h1")
        for s in range(SHARDS):
            assert i[f"shard{s}_last_sync"] == "partial", (s, i)
            sh, old = shard_line(i, s), shard_line(b_before, s)
            assert int(sh["partial_syncs"]) >= int(old["partial_syncs"]) + 1, (s, sh)
            assert sh["full_syncs"] == old["full_syncs"], (s, sh)
            assert link(p, s, "h2")["sync"] == "partial"
            assert f"shard{s}_link_h2_why" not in p


def test_a_damaged_frame_drops_the_link_and_resyncs_never_applies():
    # h2 is in another zone: its stream passes h1's relay, which flips one byte
    # of the next chunk on shard 0's replication port. The backup must refuse
    # the frame (crc), drop the link, redial and continue from what it applied.
    with Cluster({"h1": "z1", "h2": "z2"}, delay_ms=DELAY_MS, ports=PORTS) as c:
        start_primary_and_backups(c, "h1", ["h2"], ["--repl-timeout", "2"], ["--repl-timeout", "2"])
        set_many(c, "h1", "before:", 300, 200, seed=11)
        wait_converged(c, ["h1", "h2"])
        old = shard_line(info(c, "h2"), 0)
        before = stats(c, "h1")
        c.corrupt_next("h1", "h2", PEER_PORT)
        set_many(c, "h1", "after:", 300, 200, seed=12)

        def redialled():
            sh = shard_line(info(c, "h2"), 0)
            return int(sh["partial_syncs"]) + int(sh["full_syncs"]) > \
                int(old["partial_syncs"]) + int(old["full_syncs"])

        until(c, redialled, 30, "shard 0 of h2 redialled after the damaged frame", ["h1", "h2"])
        wait_converged(c, ["h1", "h2"])
        log = (c.hosts["h2"].log_path).read_text(errors="replace")
        # Where the flipped byte lands decides the symptom: a payload byte
        # fails the crc, a length byte makes a frame too large (or misframes
        # the stream, failing a crc further on, or stalls it until timeout).
        damage = ("crc mismatch", "is too large", "bad frame flags", "cannot decompress",
                  "malformed", "said nothing")
        why = [line for line in log.splitlines()
               if "replication link" in line and any(d in line for d in damage)]
        print("backup dropped its link:", why)
        assert why, c.log_tail("h2")
        relay_log = (c.hosts["h1"].dir / "relay.log").read_text(errors="replace")
        assert "corrupted one byte" in relay_log
        after = stats(c, "h1")
        # What it had applied was sound: it continued from there.
        assert after["sync_partial_ok"] > before["sync_partial_ok"], (before, after)
        assert after["sync_full"] == before["sync_full"], (before, after)


def live_writer(c: Cluster, host: str, stop: threading.Event) -> int:
    """INCRs a counter and SETs 500 rotating keys (~300 bytes each) until stopped."""
    n = 0
    with c.connect(host, host, timeout=20) as conn:
        while not stop.is_set():
            cmds = []
            for _ in range(10):
                n += 1
                cmds += [("INCR", "live:counter"), ("SET", f"live:{n % 500}", f"{n:08d}" * 40)]
            replies = pipeline(conn, cmds)
            assert replies[-2] == n, replies[-2:]
    return n


def test_long_disconnect_resyncs_fully():
    with Cluster({"h1": "z1", "h2": "z2"}, delay_ms=DELAY_MS, ports=PORTS) as c:
        args = ["--repl-backlog-size", "64kb", "--repl-timeout", "2"]
        start_primary_and_backups(c, "h1", ["h2"], args, args)
        set_many(c, "h1", "before:", 200, 100, seed=5)
        wait_converged(c, ["h1", "h2"])
        before = stats(c, "h1")
        b_before = info(c, "h2")

        c.partition(["h2"], ["h1"])
        wait_link_dropped(c, "h1", "h2")
        # 1.2 MB over 1200 keys, both shards: far past each shard's 64 KB backlog.
        set_many(c, "h1", "during:", 1200, 1000, seed=6)
        with c.connect("h1", "h1") as conn:
            assert conn.call("DEL", "before:0", "before:1") == 2
        # Writes go on through the full sync (records after the snapshot must
        # follow it, though they overflow the small backlog).
        stop = threading.Event()
        live = Worker(live_writer, c, "h1", stop)
        live.start()
        try:
            c.heal()
            wait_linked(c, "h1", ["h2"], timeout=30)
            time.sleep(0.5)
        finally:
            stop.set()
        n = live.result(30)
        wait_converged(c, ["h1", "h2"])
        assert c.call("h2", "h2", "GET", "live:counter") == str(n)
        assert c.call("h2", "h2", "EXISTS", "before:0", "before:1", "before:2") == 1
        assert c.call("h2", "h2", "DBSIZE") == 200 - 2 + 1200 + 1 + min(n, 500)
        after = stats(c, "h1")
        print(f"stats before {before}, after {after}")
        assert after["sync_full"] >= before["sync_full"] + 1, (before, after)
        assert after["sync_partial_err"] >= before["sync_partial_err"] + 1, (before, after)
        i = info(c, "h2")
        p = info(c, "h1")
        full = 0
        for s in range(SHARDS):
            last = i[f"shard{s}_last_sync"]
            if last.startswith("full"):
                full += 1
                assert "backlog" in last, (s, last)
                assert int(shard_line(i, s)["full_syncs"]) == int(shard_line(b_before, s)["full_syncs"]) + 1
                assert link(p, s, "h2")["sync"] == "full"
                assert "backlog" in p[f"shard{s}_link_h2_why"], p[f"shard{s}_link_h2_why"]
        # Each shard got ~600 KB, ten times its backlog: neither can resync partially.
        assert full == SHARDS, {s: i[f"shard{s}_last_sync"] for s in range(SHARDS)}


# --------------------------------------------------------------------------
# 5. a backup restarted from its own disk continues where it was
# --------------------------------------------------------------------------

def manifests_name_a_history(c: Cluster, host: str) -> bool:
    """Every shard directory's MANIFEST records a replication history: the
    snapshot a backup writes after its full sync is durable."""
    shard_dirs = sorted(p for p in c.hosts[host].data_dir.iterdir() if p.name.startswith("shard-"))
    if len(shard_dirs) != SHARDS:
        return False
    for d in shard_dirs:
        try:
            text = (d / "MANIFEST").read_text()
        except OSError:
            return False
        if not any(line.startswith("history ") for line in text.splitlines()):
            return False
    return True


def test_backup_restarted_from_its_disk_resyncs_partially():
    with Cluster({"h1": "z1", "h2": "z2"}, delay_ms=DELAY_MS, ports=PORTS) as c:
        start_primary_and_backups(c, "h1", ["h2"], (), ["--appendonly", "yes"])
        set_many(c, "h1", "a:", 800, 200, seed=7)
        wait_converged(c, ["h1", "h2"])
        until(c, lambda: manifests_name_a_history(c, "h2"), 20,
              "h2's post-sync snapshot to be durable", ["h2"])
        set_many(c, "h1", "b:", 200, 200, seed=8)  # in h2's log only, not its snapshot
        wait_converged(c, ["h1", "h2"])
        time.sleep(1.2)  # appendfsync everysec
        before = stats(c, "h1")

        c.kill("h2")
        until(c, lambda: info(c, "h1")["connected_slaves"] == "0", 15, "h1 to see h2 gone", ["h1"])
        set_many(c, "h1", "c:", 200, 200, seed=9)
        with c.connect("h1", "h1") as conn:
            assert conn.call("DEL", "a:0") == 1
        c.start("h2", c.hosts["h2"].args)
        assert c.call("h2", "h2", "EXISTS", "a:1", "b:1") == 2  # from its own disk

        wait_linked(c, "h1", ["h2"], timeout=30)
        wait_converged(c, ["h1", "h2"])
        assert c.call("h2", "h2", "DBSIZE") == 800 + 200 + 200 - 1
        after = stats(c, "h1")
        print(f"stats before {before}, after {after}")
        assert after["sync_full"] == before["sync_full"], (before, after, c.log_tail("h2"))
        assert after["sync_partial_ok"] >= before["sync_partial_ok"] + SHARDS, (before, after)
        i = info(c, "h2")
        for s in range(SHARDS):
            assert i[f"shard{s}_last_sync"] == "partial", (s, i.get(f"shard{s}_last_sync"))
            assert shard_line(i, s)["full_syncs"] == "0", (s, i[f"shard{s}"])


# --------------------------------------------------------------------------
# 6. strong mode: the sync backup holds every acknowledged write
# --------------------------------------------------------------------------

def strong_writer(c: Cluster, host: str, tid: int, stop: threading.Event, acked: dict,
                  unknown: list, latencies: list) -> None:
    """SETs unique keys until stopped or the primary is gone. A write whose
    reply came back is acknowledged; one that raised or lost its connection
    is unknown (it may or may not have happened)."""
    n = 0
    conn = None
    while not stop.is_set():
        try:
            if conn is None:
                conn = c.connect(host, host, timeout=5)
        except OSError:
            return  # the primary is gone
        key, val = f"t{tid}:{n}", f"v{tid}-{n}-{random.randrange(10 ** 9)}"
        n += 1
        t0 = time.perf_counter()
        try:
            r = conn.call("SET", key, val)
        except (OSError, ConnectionError, RespError) as e:
            unknown.append((key, val, repr(e)))
            conn.close()
            conn = None
            continue
        latencies.append(time.perf_counter() - t0)
        if r == "OK":
            acked[key] = val
        else:
            unknown.append((key, val, repr(r)))
    if conn is not None:
        conn.close()


def test_strong_mode_sync_backup_holds_every_acknowledged_write():
    with Cluster({"h1": "z1", "h2": "z2", "h3": "z3"}, delay_ms=DELAY_MS, ports=PORTS) as c:
        start_primary_and_backups(c, "h1", ["h2", "h3"],
                                  ["--consistency", "strong", "--appendonly", "yes"])
        p = info(c, "h1")
        assert p["consistency"] == "strong"
        sync = p["sync_backup"]
        assert sync in ("h2", "h3"), p
        other = "h3" if sync == "h2" else "h2"

        stop = threading.Event()
        acked: dict[str, str] = {}
        unknown: list = []
        latencies: list[float] = []
        workers = [Worker(strong_writer, c, "h1", t, stop, acked, unknown, latencies) for t in range(4)]
        for w in workers:
            w.start()
        time.sleep(2.5)
        assert info(c, "h1")["sync_backup"] == sync
        assert info(c, "h1")["strong_timeouts"] == "0"
        c.kill("h1")
        time.sleep(0.3)
        stop.set()
        for w in workers:
            w.result(30)

        print(f"{len(acked)} acknowledged, {len(unknown)} unknown; sync backup {sync}; "
              f"median write {statistics.median(latencies) * 1000:.1f} ms")
        assert len(acked) > 100, len(acked)
        # A strong write waits for the sync backup: a round trip across zones at least.
        assert statistics.median(latencies) * 1000 >= 2 * DELAY_MS * 0.9, statistics.median(latencies)

        missing = []
        wrong = []
        keys = sorted(acked)
        with c.connect(sync, sync) as conn:
            for at in range(0, len(keys), 200):
                batch = keys[at:at + 200]
                for k, v in zip(batch, conn.call("MGET", *batch)):
                    if v is None:
                        missing.append(k)
                    elif v != acked[k]:
                        wrong.append((k, v, acked[k]))
        assert not missing and not wrong, (
            f"sync backup {sync} lacks {len(missing)} of {len(acked)} acknowledged writes "
            f"(e.g. {missing[:5]}), {len(wrong)} differ (e.g. {wrong[:3]})\n{c.log_tail(sync)}")
        # (The other backup need not hold them all; how many it has is informative.)
        with c.connect(other, other) as conn:
            have = sum(v is not None for at in range(0, len(keys), 200)
                       for v in conn.call("MGET", *keys[at:at + 200]))
        print(f"the other backup {other} holds {have} of them")


def test_strong_mode_does_not_acknowledge_what_the_sync_backup_did_not_confirm():
    with Cluster({"h1": "z1", "h2": "z2", "h3": "z3"}, delay_ms=DELAY_MS, ports=PORTS) as c:
        start_primary_and_backups(c, "h1", ["h2", "h3"],
                                  ["--consistency", "strong", "--sync-backup", "h2", "--repl-timeout", "2"],
                                  ["--repl-timeout", "2"])
        assert info(c, "h1")["sync_backup"] == "h2"
        assert c.call("h1", "h1", "SET", "a", "1") == "OK"

        c.pause("h2")  # the sync backup stops confirming; h3 still streams
        try:
            t0 = time.monotonic()
            with c.connect("h1", "h1", timeout=8) as conn:
                with pytest.raises((ConnectionError, OSError)):
                    r = conn.call("SET", "b", "2")
                    raise AssertionError(f"a strong write was answered {r!r} while its sync backup was stopped")
            took = time.monotonic() - t0
            print(f"the unconfirmed write's connection closed after {took:.1f}s")
            assert 1.5 <= took <= 6, took
            assert int(info(c, "h1")["strong_timeouts"]) >= 1
            # h3 confirmed it, but h3 is not the sync backup: the write is not acknowledged.
            until(c, lambda: c.call("h3", "h3", "GET", "b") == "2", 5, "h3 to have applied b", ["h3"])
        finally:
            c.resume("h2")
        wait_linked(c, "h1", ["h2", "h3"], timeout=30)
        assert c.call("h1", "h1", "SET", "c", "3") == "OK"
        assert c.call("h2", "h2", "GET", "c") == "3"  # acknowledged: already on h2
        wait_converged(c, ["h1", "h2", "h3"])


# --------------------------------------------------------------------------
# 7. backpressure: a lagging backup slows writes down, and only while it lags
# --------------------------------------------------------------------------

def steady_writer(c: Cluster, host: str, stop: threading.Event, counts: list) -> int:
    rng = random.Random(11)
    n = 0
    with c.connect(host, host, timeout=20) as conn:
        while not stop.is_set():
            cmds = [("SET", f"bp:{(n + j) % 5000}", random_text(rng, rng.randint(100, 300)))
                    for j in range(20)]
            assert pipeline(conn, cmds) == ["OK"] * 20
            n += 20
            counts.append((time.monotonic(), n))
    return n


def delays(c: Cluster, host: str) -> list[int]:
    i = info(c, host)
    return [int(shard_line(i, s)["delay_us"]) for s in range(SHARDS)]


def test_backpressure_rises_while_a_backup_lags_and_falls_back():
    with Cluster({"h1": "z1", "h2": "z2"}, delay_ms=DELAY_MS, ports=PORTS) as c:
        # (--repl-timeout 30: the primary keeps the stopped backup's link meanwhile)
        start_primary_and_backups(c, "h1", ["h2"], ["--repl-backpressure-lag", "64kb", "--repl-timeout", "30"])
        stop = threading.Event()
        counts: list = []
        w = Worker(steady_writer, c, "h1", stop, counts)
        w.start()
        try:
            time.sleep(0.5)
            print(f"delay_us with h2 in step: {delays(c, 'h1')}")
            c.pause("h2")
            first = until(c, lambda: max(delays(c, "h1")) > 0 and delays(c, "h1"), 10,
                          "the primary to delay writes while h2 is stopped", ["h1"])

            def half():  # past the half-delay lag: at least half the 1000 us cap
                p = info(c, "h1")
                d = [int(shard_line(p, s)["delay_us"]) for s in range(SHARDS)]
                lag = [int(link(p, s, "h2")["lag_bytes"]) for s in range(SHARDS)]
                return max(d) >= 500 and (d, lag)

            during, lag = until(c, half, 15, "the write delay to reach half its cap", ["h1"])
            print(f"delay_us first {first}, then {during} at lag_bytes {lag}")
            assert max(lag) > 64 * 1024, (during, lag)
            assert max(during) <= 1000, during
            # WAIT counts no backup that has not applied the writes.
            t0 = time.monotonic()
            assert c.call("h1", "h1", "WAIT", 1, 300) == 0
            assert time.monotonic() - t0 >= 0.29
            assert w.is_alive(), "the writer failed"
        finally:
            if c.is_paused("h2"):
                c.resume("h2")
        time.sleep(0.5)
        stop.set()
        total = w.result(30)
        until(c, lambda: delays(c, "h1") == [0, 0], 15, "the write delay to fall back to 0", ["h1", "h2"])
        wait_converged(c, ["h1", "h2"])
        assert total > 0
        # And it stays 0 with the backup in step, under writes.
        set_many(c, "h1", "bp:", 500, 200, seed=12)
        wait_converged(c, ["h1", "h2"])
        assert delays(c, "h1") == [0, 0]


# --------------------------------------------------------------------------
# 8. cross-shard transactions appear whole on a backup
# --------------------------------------------------------------------------

TX_KEYS = [f"k{i}" for i in range(8)]


def tx_writer(c: Cluster, host: str, stop: threading.Event, last: list, keys=TX_KEYS) -> int:
    """Writes i = 1, 2, ... to every key at once, by MSET and MULTI/EXEC in turn."""
    i = 0
    with c.connect(host, host, timeout=20) as conn:
        while not stop.is_set():
            cmds = []
            for _ in range(10):
                i += 1
                if i % 2:
                    cmds.append(("MSET", *[a for k in keys for a in (k, i)]))
                else:
                    cmds += [("MULTI",), *[("SET", k, i) for k in keys], ("EXEC",)]
            pipeline(conn, cmds)
            last[0] = i
    return i


def tx_reader(c: Cluster, host: str, seconds: float) -> tuple[int, set]:
    """MGETs the keys on `host` for `seconds`: all nil, or all one value, and
    never going back."""
    reads = 0
    values = set()
    prev = 0
    deadline = time.monotonic() + seconds
    with c.connect(host, host, timeout=10) as conn:
        while time.monotonic() < deadline:
            got = conn.call("MGET", *TX_KEYS)
            reads += 1
            if all(v is None for v in got):
                assert prev == 0, f"read {reads}: keys gone after value {prev}"
                continue
            assert len(set(got)) == 1, f"read {reads}: a transaction seen in part: {got}"
            v = int(got[0])
            assert v >= prev, f"read {reads}: went back from {prev} to {v}"
            prev = v
            values.add(v)
    return reads, values


def test_cross_shard_transactions_are_seen_whole_on_a_backup():
    with Cluster({"h1": "z1", "h2": "z2", "h3": "z1"}, delay_ms=DELAY_MS, ports=PORTS) as c:
        start_primary_and_backups(c, "h1", ["h2", "h3"])
        stop = threading.Event()
        last = [0]
        writer = Worker(tx_writer, c, "h1", stop, last)
        readers = [Worker(tx_reader, c, b, 4.0) for b in ("h2", "h2", "h3")]
        writer.start()
        for r in readers:
            r.start()
        try:
            results = [r.result(30) for r in readers]
        finally:
            stop.set()
        n = writer.result(30)
        for (reads, values), host in zip(results, ("h2", "h2", "h3")):
            print(f"{host}: {reads} reads saw {len(values)} distinct values (writer reached {n})")
            assert reads > 100, (host, reads)
            assert len(values) > 20, (host, len(values))  # it did watch transactions arrive
        # The keys are on both shards: every transaction wrote on each.
        p = info(c, "h1")
        seqs = [int(shard_line(p, s)["seq"]) for s in range(SHARDS)]
        assert min(seqs) > 0, seqs
        wait_converged(c, ["h1", "h2", "h3"])
        for b in ("h2", "h3"):
            assert c.call(b, b, "MGET", *TX_KEYS) == [str(n)] * len(TX_KEYS)
            assert info(c, b)["barrier_waiting"] == "0"


def test_a_backup_joining_during_cross_shard_transactions_catches_up():
    """A full sync while cross-shard transactions stream. The primary must get
    each shard's snapshot started though transactions keep coming; each shard's
    snapshot is taken at its own point, so one shard's snapshot holds
    transactions whose other parts still come on the other shard's stream. The
    backup must apply those and go on streaming (then show transactions whole,
    as above)."""
    with Cluster({"h1": "z1", "h2": "z2"}, delay_ms=DELAY_MS, ports=PORTS) as c:
        c.start("h1", keel_args(c, "h1"))
        stop = threading.Event()
        last = [0]
        writer = Worker(tx_writer, c, "h1", stop, last)
        # A second stream of transactions (on other keys) makes it likelier
        # that the shards' snapshots split some.
        other = Worker(tx_writer, c, "h1", stop, [0], [f"j{i}" for i in range(8)])
        writer.start()
        other.start()
        try:
            until(c, lambda: last[0] > 300 or not writer.is_alive(), 20, "transactions to run", ["h1"])
            c.start("h2", keel_args(c, "h2", "h1"))
            wait_linked(c, "h1", ["h2"])
            p = info(c, "h1")
            target = [int(shard_line(p, s)["seq"]) for s in range(SHARDS)]

            def caught_up():
                i = info(c, "h2")
                return all(int(shard_line(i, s)["seq"]) >= target[s] for s in range(SHARDS))

            until(c, caught_up, 15,
                  f"h2 to apply what h1 had when it linked (seqs {target}); a backup stuck with "
                  f"barrier_waiting > 0 waits for transaction parts that never come", ["h1", "h2"])
            reads, values = tx_reader(c, "h2", 2.0)
            print(f"h2: {reads} reads saw {len(values)} distinct values")
            assert reads > 100 and len(values) > 10, (reads, len(values))
            assert writer.is_alive()
        finally:
            stop.set()
        n = writer.result(30)
        other.result(30)
        wait_converged(c, ["h1", "h2"])
        assert c.call("h2", "h2", "MGET", *TX_KEYS) == [str(n)] * len(TX_KEYS)
        assert info(c, "h2")["barrier_waiting"] == "0"


# --------------------------------------------------------------------------
# 9. shard-count mismatch; REPLICAOF NO ONE and back
# --------------------------------------------------------------------------

def test_shard_count_mismatch_is_refused_and_replicaof_no_one_promotes():
    with Cluster({"h1": "z1", "h2": "z2", "h3": "z3"}, delay_ms=DELAY_MS, ports=PORTS) as c:
        c.start("h1", keel_args(c, "h1"))
        c.start("h2", keel_args(c, "h2", "h1", shards=1))
        c.start("h3", keel_args(c, "h3", "h1"))
        wait_linked(c, "h1", ["h3"])
        set_many(c, "h1", "m:", 100, 50, seed=13)
        wait_converged(c, ["h1", "h3"])

        # A backup with another shard count is refused, and says why.
        def refused():
            i = info(c, "h2")
            return "shard count mismatch" in i["master_sync_last_error"] and i
        i2 = until(c, refused, 15, "h2 to report the shard count mismatch", ["h1", "h2"])
        print("h2:", i2["master_sync_last_error"])
        assert i2["role"] == "slave"
        assert i2["master_link_status"] == "down"
        assert re.search(r"\b2\b.*\b1\b", i2["master_sync_last_error"]), i2["master_sync_last_error"]
        assert c.call("h2", "h2", "DBSIZE") == 0
        p = info(c, "h1")
        assert p["connected_slaves"] == "1" and fields(p["slave0"])["id"] == "h3", p
        with pytest.raises(RespError, match="^READONLY"):
            c.call("h2", "h2", "SET", "x", "1")

        # REPLICAOF NO ONE: a primary of its own that takes writes.
        assert c.call("h2", "h2", "REPLICAOF", "NO", "ONE") == "OK"
        assert info(c, "h2")["role"] == "master"
        assert c.call("h2", "h2", "SET", "x", "1") == "OK"
        assert c.call("h2", "h2", "GET", "x") == "1"

        # The same on a backup that was streaming: it keeps its data, takes
        # writes, and no longer follows h1.
        assert c.call("h3", "h3", "REPLICAOF", "NO", "ONE") == "OK"
        until(c, lambda: info(c, "h3")["role"] == "master", 5, "h3 to be a primary", ["h3"])
        assert c.call("h3", "h3", "ROLE")[0] == "master"
        assert c.call("h3", "h3", "DBSIZE") == 100
        assert c.call("h3", "h3", "SET", "own", "h3") == "OK"
        assert c.call("h3", "h3", "INCR", "m:counter") == 1
        until(c, lambda: info(c, "h1")["connected_slaves"] == "0", 10, "h1 to lose h3's links", ["h1", "h3"])
        assert c.call("h1", "h1", "SET", "after", "1") == "OK"
        time.sleep(0.5)
        assert c.call("h3", "h3", "EXISTS", "after") == 0

        # And back: REPLICAOF at run time makes it a backup of h1 again, whose
        # data replaces what it wrote on its own.
        host, port = c.client_addr("h3", "h1")
        assert c.call("h3", "h3", "REPLICAOF", host, port) == "OK"
        wait_linked(c, "h1", ["h3"])
        wait_converged(c, ["h1", "h3"])
        assert c.call("h3", "h3", "GET", "after") == "1"
        assert c.call("h3", "h3", "EXISTS", "own", "m:counter") == 0
        with pytest.raises(RespError, match="^READONLY"):
            c.call("h3", "h3", "SET", "own", "again")


def test_a_primary_with_a_password_needs_masterauth():
    with Cluster({"h1": "z1", "h2": "z2"}, delay_ms=DELAY_MS, ports=PORTS) as c:
        c.start("h1", keel_args(c, "h1", None, "--requirepass", "pw1"), wait=False)
        c.start("h2", keel_args(c, "h2", "h1", "--repl-timeout", "2"))

        def refused(word):
            return lambda: word in info(c, "h2").get("master_sync_last_error", "")

        until(c, refused("NOAUTH"), 20, "h2 refused without masterauth", ["h2"])
        assert info(c, "h2")["master_link_status"] == "down"
        c.kill("h2")
        c.start("h2", keel_args(c, "h2", "h1", "--masterauth", "wrong", "--repl-timeout", "2"))
        until(c, refused("WRONGPASS"), 20, "h2 refused with a wrong masterauth", ["h2"])
        c.kill("h2")
        c.start("h2", keel_args(c, "h2", "h1", "--masterauth", "pw1"))
        with c.connect("h1", "h1", direct=True) as conn:
            assert conn.call("AUTH", "pw1") == "OK"
            assert conn.call("SET", "secret", "kept") == "OK"
        until(c, lambda: c.call("h2", "h2", "GET", "secret") == "kept", 20,
              "h2 to follow with masterauth", ["h2"])
        assert info(c, "h2")["master_link_status"] == "up"

"""Differential test: the same seeded random command stream goes to keel and to a
reference redis-server; every reply must match (type and value, full error text).

Run in RESP2 and RESP3 (HELLO 3), with keel at --shards 1 and --shards 4, for
several command families (see cmdgen.py). On a mismatch the failure names the
seed, the family, the command index, the command, both replies and the commands
just before it.

KEEL_DIFF_SCALE=N multiplies the stream lengths (default 1).
KEEL_DIFF_SEED_OFFSET=N shifts every seed by N (explore new streams).
KEEL_DIFF_KEEP_GOING=1 does not stop at the first mismatch: it records it,
empties both keyspaces (so one difference does not cascade) and goes on; the
test then fails listing every distinct mismatch. Use it to survey a new keel.
"""

from __future__ import annotations

import os
import random
import time

import pytest

from cmdgen import Gen, Step
from respclient import RespConnection, fmt, is_nil

SCALE = float(os.environ.get("KEEL_DIFF_SCALE", "1"))
SEED_OFFSET = int(os.environ.get("KEEL_DIFF_SEED_OFFSET", "0"))
KEEP_GOING = os.environ.get("KEEL_DIFF_KEEP_GOING", "") not in ("", "0")

# (family, seed, number of commands)
STREAMS = [
    ("mixed", 1, 3000), ("mixed", 2, 3000), ("mixed", 3, 3000),
    ("strings", 11, 2000), ("strings", 12, 2000),
    ("keys", 21, 2000), ("keys", 22, 2000),
    ("expiry", 31, 2000), ("expiry", 32, 2000),
    ("errors", 41, 1500), ("errors", 42, 1500),
]

TOLERANCE = {"ttl": 1, "pttl": 1000}


class Mismatch(AssertionError):
    pass


def signature(args, a, b) -> tuple:
    """What makes two mismatches 'the same' for the keep-going summary."""
    def shape(reply):
        if isinstance(reply, tuple) and reply and reply[0] in ("error", "blob_error"):
            return ("error", reply[1][:40])
        return reply[0] if isinstance(reply, tuple) and reply else repr(reply)[:40]
    return (bytes(args[0]).upper() if args else b"", shape(a), shape(b))


def open_conn(server, protocol: int) -> RespConnection:
    c = server.raw()
    if protocol == 3:
        hello = c.call("HELLO", "3")
        assert hello[0] == "map", f"{server.name}: HELLO 3 answered {fmt(hello)}"
        fields = {k[1]: v for k, v in hello[1] if k[0] in ("bulk", "simple")}
        assert fields.get(b"proto") == ("int", 3), f"{server.name}: HELLO 3 map {fmt(hello)}"
    return c


def _sort_key(reply):
    return repr(reply)


def replies_match(mode: str, a, b) -> bool:
    if mode in TOLERANCE:
        if a[0] == b[0] == "int" and a[1] >= 0 and b[1] >= 0:
            return abs(a[1] - b[1]) <= TOLERANCE[mode]
        return a == b
    if mode == "sorted":
        if a[0] == b[0] and a[0] in ("array", "set"):
            return sorted(a[1], key=_sort_key) == sorted(b[1], key=_sort_key)
        return a == b
    return a == b


def scan_all(conn: RespConnection, args: tuple, max_rounds: int = 10000):
    """Iterate SCAN to cursor 0. Returns ("keys", sorted unique keys) or the error/odd reply."""
    args = list(args)
    seen = set()
    cursor = args[1]
    for _ in range(max_rounds):
        args[1] = cursor
        reply = conn.call(*args)
        if reply[0] != "array" or len(reply[1]) != 2 or reply[1][0][0] != "bulk" or reply[1][1][0] != "array":
            return reply
        cursor = reply[1][0][1]
        for item in reply[1][1][1]:
            seen.add(item)
        if cursor == b"0":
            return ("scanned", sorted(seen, key=_sort_key))
    return ("scan-did-not-finish", max_rounds)


class Runner:
    """Sends steps to both servers in pipelined batches and compares replies."""

    def __init__(self, keel_conn, ref_conn, label: str):
        self.k = keel_conn
        self.r = ref_conn
        self.label = label
        self.history: list = []  # (index, args, keel reply, ref reply)
        self.mismatches: dict = {}  # signature -> (count, first report)

    def fail(self, i, step: Step, a, b, why="replies differ"):
        lines = [f"{why} [{self.label}] at command #{i} (mode {step.mode})",
                 f"  command: {fmt(step.args)}",
                 f"  keel:    {fmt(a)}",
                 f"  redis:   {fmt(b)}",
                 "  previous commands (index, command, keel reply, redis reply):"]
        for j, args, ka, rb in self.history[-10:]:
            lines.append(f"    #{j} {fmt(args, 160)} -> {fmt(ka, 120)} | {fmt(rb, 120)}")
        report = "\n".join(lines)
        if not KEEP_GOING:
            pytest.fail(report, pytrace=False)
        sig = signature(step.args, a, b)
        count, first = self.mismatches.get(sig, (0, report))
        self.mismatches[sig] = (count + 1, first)
        raise Mismatch(report)

    def resync(self):
        """After a recorded mismatch (keep-going mode): empty both keyspaces."""
        for c in (self.k, self.r):
            c.call("FLUSHDB")

    def _record(self, i, step, a, b):
        self.history.append((i, step.args, a, b))
        if len(self.history) > 50:
            del self.history[:25]

    def run_batch(self, batch):
        cmds = [s.args for _, s in batch]
        try:
            ka = self.k.pipeline(cmds)
        except (ConnectionError, OSError) as e:
            i, s = batch[0]
            self.fail(i, s, f"connection error: {e!r}", "-", "keel connection failed during a batch "
                      f"starting at #{i} ({len(batch)} commands)")
        ra = self.r.pipeline(cmds)
        for (i, step), a, b in zip(batch, ka, ra):
            if not replies_match(step.mode, a, b):
                self.fail(i, step, a, b)
            self._record(i, step, a, b)

    def run_special(self, i, step: Step):
        if step.mode == "scan":
            a, b = scan_all(self.k, step.args), scan_all(self.r, step.args)
            if a != b:
                self.fail(i, step, a, b, "SCAN iteration results differ")
        elif step.mode == "randomkey":
            a, b = self.k.call(*step.args), self.r.call(*step.args)
            if is_nil(a) or is_nil(b) or a[0] != "bulk" or b[0] != "bulk":
                if a != b:
                    self.fail(i, step, a, b, "RANDOMKEY nil-ness/type differs")
            else:
                ea = self.k.call("EXISTS", a[1])
                eb = self.r.call("EXISTS", b[1])
                if ea != ("int", 1) or eb != ("int", 1):
                    self.fail(i, step, (a, ea), (b, eb), "RANDOMKEY returned a missing key")
        else:
            raise AssertionError(step.mode)
        self._record(i, step, a, b)

    def run(self, steps, batch_rng: random.Random):
        batch = []
        for i, step in enumerate(steps):
            try:
                if step.mode in ("scan", "randomkey"):
                    if batch:
                        self.run_batch(batch)
                        batch = []
                    self.run_special(i, step)
                    continue
                batch.append((i, step))
                if len(batch) >= batch_rng.choice((1, 1, 4, 16, 64)):
                    self.run_batch(batch)
                    batch = []
            except Mismatch:
                # keep-going mode only; the rest of a failed batch is dropped
                batch = []
                self.resync()
        try:
            if batch:
                self.run_batch(batch)
        except Mismatch:
            self.resync()

    def summary(self) -> str:
        out = [f"{len(self.mismatches)} distinct mismatches [{self.label}]:"]
        for sig, (count, first) in sorted(self.mismatches.items(), key=lambda x: -x[1][0]):
            out.append(f"--- {count}x {sig}\n{first}")
        return "\n".join(out)


def final_state(conn: RespConnection):
    """Sorted (key, type, value-or-None) of the whole keyspace, for an end-of-stream check."""
    keys = conn.call("KEYS", "*")
    assert keys[0] == "array", keys
    out = []
    for k in sorted(x[1] for x in keys[1]):
        t = conn.call("TYPE", k)
        v = conn.call("GET", k) if t == ("simple", b"string") else None
        out.append((k, t, v))
    return out


@pytest.mark.parametrize("protocol", [2, 3], ids=["resp2", "resp3"])
@pytest.mark.parametrize("family,seed,n", STREAMS, ids=[f"{f}-seed{s}" for f, s, _ in STREAMS])
def test_random_stream_matches_redis(keel, ref, protocol, family, seed, n):
    seed += SEED_OFFSET
    steps = Gen(seed).stream(family, max(1, int(n * SCALE)))
    label = f"family={family} seed={seed} protocol=RESP{protocol} {keel.name}"
    with open_conn(keel, protocol) as kc, open_conn(ref, protocol) as rc:
        runner = Runner(kc, rc, label)
        runner.run(steps, random.Random(seed * 7919))
        if runner.mismatches:
            pytest.fail(runner.summary(), pytrace=False)
        a, b = final_state(kc), final_state(rc)
        if a != b:
            only_a = [x for x in a if x not in b][:10]
            only_b = [x for x in b if x not in a][:10]
            pytest.fail(f"final keyspace differs [{label}]\n  keel only: {only_a}\n  redis only: {only_b}",
                        pytrace=False)
        assert kc.pushes == rc.pushes == [], f"unexpected push messages: keel {kc.pushes[:3]} redis {rc.pushes[:3]}"
    assert keel.alive()


@pytest.mark.parametrize("protocol", [2, 3], ids=["resp2", "resp3"])
def test_short_expiries_vanish_on_both(keel, ref, protocol):
    """Keys with short PX/EX expire on both servers: lazily (GET/EXISTS) and
    actively (DBSIZE drops to 0 without the keys being touched)."""
    cmds = []
    for i in range(20):
        cmds.append(("SET", f"short:{i}", "v", "PX", str(300 + 10 * i)))
        cmds.append(("SET", f"{{tag}}short:{i}", "v", "PX", "300"))
    cmds += [("PSETEX", "pse", "300", "x"), ("SETEX", "se", "1", "y"),
             ("SET", "pexp", "z"), ("PEXPIRE", "pexp", "350"),
             ("SET", "lazy", "1", "PX", "300")]
    n_keys = 44
    with open_conn(keel, protocol) as kc, open_conn(ref, protocol) as rc:
        for name, c in (("keel", kc), ("redis", rc)):
            replies = c.pipeline(cmds)
            assert all(r in (("simple", b"OK"), ("int", 1)) for r in replies), (name, replies)
            assert c.call("DBSIZE") == ("int", n_keys), name
            ttl = c.call("PTTL", "short:19")
            assert ttl[0] == "int" and 0 < ttl[1] <= 490, (name, ttl)

        deadline = time.monotonic() + 10
        # the lazy path: reading an expired key returns nil at once
        while time.monotonic() < deadline and kc.call("PTTL", "lazy")[1] > 0:
            time.sleep(0.02)
        time.sleep(0.05)
        for name, c in (("keel", kc), ("redis", rc)):
            got = c.call("GET", "lazy")
            assert is_nil(got), f"{name}: GET of an expired key answered {got!r}"
            assert c.call("EXISTS", "lazy") == ("int", 0), name

        # the active path: without touching the keys, DBSIZE reaches 0 (bounded wait)
        sizes = {}
        while time.monotonic() < deadline:
            sizes = {name: c.call("DBSIZE") for name, c in (("keel", kc), ("redis", rc))}
            if sizes["keel"] == sizes["redis"] == ("int", 0):
                break
            time.sleep(0.1)
        assert sizes == {"keel": ("int", 0), "redis": ("int", 0)}, \
            f"expired keys not reclaimed within 10s: {sizes}"
        for name, c in (("keel", kc), ("redis", rc)):
            assert c.call("KEYS", "*") == ("array", []), name
            assert c.call("GET", "se") == (("nilbulk",) if protocol == 2 else ("null",)), name


def _shape(reply):
    """Type skeleton of a reply: tags and keys, no server-specific values."""
    tag = reply[0]
    if tag == "map":
        return ("map", [(k, _shape(v)) for k, v in reply[1]])
    if tag in ("array", "set", "push"):
        return (tag, len(reply[1]))
    if tag == "verbatim":
        return ("verbatim", reply[1])
    return (tag,)


HELLO_VALUE_KEYS = {b"server", b"version", b"id"}  # values legitimately differ


def test_hello_and_resp3_reply_types_match_redis(keel, ref):
    """HELLO negotiation and the RESP3-specific reply types (null, map, verbatim)."""
    exact = [("HELLO", "4"), ("HELLO", "abc"), ("HELLO", "3", "AUTH", "default"),
             ("GET", "nokey")]
    after3 = [("GET", "nokey"), ("MGET", "nokey", "{t}x"), ("SET", "f", "1.5"),
              ("INCRBYFLOAT", "f", "1"), ("CONFIG", "GET", "maxmemory"), ("SET", "k", "v", "GET"),
              ("GETEX", "nokey"), ("GETDEL", "nokey"), ("CONFIG", "GET", "maxmemory-policy"),
              ("EXISTS", "f"), ("TTL", "f"), ("PING",), ("ECHO", "x")]
    after2 = [("GET", "nokey"), ("MGET", "nokey", "f"), ("CONFIG", "GET", "maxmemory")]
    got = {}
    for s in (ref, keel):
        with s.raw() as c:
            r = {"exact": [c.call(*cmd) for cmd in exact]}
            r["hello3"] = c.call("HELLO", "3")
            r["after3"] = [c.call(*cmd) for cmd in after3]
            r["info"] = c.call("INFO", "server")
            r["hello2"] = c.call("HELLO", "2")
            r["after2"] = [c.call(*cmd) for cmd in after2]
            got[s.name] = r
    k, r = got[keel.name], got[ref.name]
    assert r["exact"][0] == ("error", b"NOPROTO unsupported protocol version")
    for cmd, a, b in zip(exact + after3 + after2, k["exact"] + k["after3"] + k["after2"],
                         r["exact"] + r["after3"] + r["after2"]):
        assert a == b, f"{cmd}: keel {fmt(a)} != redis {fmt(b)}"
    # HELLO 3 is a map with redis's keys in redis's order; HELLO 2 the same as a flat array
    assert _shape(k["hello3"]) == _shape(r["hello3"]), (fmt(k["hello3"], 600), fmt(r["hello3"], 600))
    fields = dict(k["hello3"][1])
    for key, value in r["hello3"][1]:
        if key[1] not in HELLO_VALUE_KEYS:
            assert fields[key] == value, (key, fields[key], value)
    assert k["hello2"][0] == "array" and len(k["hello2"][1]) == len(r["hello2"][1]), fmt(k["hello2"], 600)
    assert [x for x in k["hello2"][1][0::2]] == [x for x in r["hello2"][1][0::2]]
    # INFO is a verbatim string in RESP3
    assert k["info"][0] == "verbatim" and k["info"][1] == b"txt", fmt(k["info"])
    assert b"redis_version:" in k["info"][2]

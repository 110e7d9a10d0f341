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
    # data types (cmdgen.py: multi-key commands on one hash tag) and transactions
    ("hashes", 51, 1500), ("hashes", 52, 1500),
    ("sets", 61, 1500), ("sets", 62, 1500),
    ("zsets", 71, 2000), ("zsets", 72, 2000),
    ("lists", 81, 1500), ("lists", 82, 1500),
    ("multi", 91, 1500), ("multi", 92, 1500),
    # multi-key data-type commands over keys on different shards
    ("xshard", 101, 1000),
    # blocking commands where they do not block (data present, tiny timeouts, inside MULTI)
    ("blocking", 111, 600),
    # bitmaps (SETBIT, BITFIELD... on strings held out of line), and BITOP across shards
    ("bitmaps", 121, 2000), ("bitmaps", 122, 2000), ("bitmaps_xshard", 123, 800),
    # HyperLogLog (PFCOUNT and PFMERGE over keys on every shard in the xshard stream)
    ("hyperloglog", 131, 1000), ("hyperloglog_xshard", 132, 500),
    # geo (GEOSEARCHSTORE and GEORADIUS STORE over keys on every shard in the xshard stream)
    ("geo", 141, 1500), ("geo_xshard", 142, 600),
    # SORT / SORT_RO (BY and GET patterns over keys of every shard, STORE, inside MULTI)
    ("sort", 151, 1500), ("sort", 152, 1500),
    # streams (explicit ids; XREAD and XREADGROUP over keys on every shard in the xshard stream)
    ("streams", 161, 2000), ("streams", 162, 2000), ("streams_xshard", 163, 800),
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
    if mode in ("sorted", "unordered"):
        if a[0] == b[0] and a[0] in ("array", "set"):
            return sorted(a[1], key=_sort_key) == sorted(b[1], key=_sort_key)
        return a == b
    if mode == "map":
        if a[0] == b[0] == "map":
            return sorted(a[1], key=_sort_key) == sorted(b[1], key=_sort_key)
        if a[0] == b[0] == "array" and len(a[1]) % 2 == 0:
            return sorted(_pairs(a[1]), key=_sort_key) == sorted(_pairs(b[1]), key=_sort_key)
        return a == b
    return a == b


def _pairs(items):
    return [(items[i], items[i + 1]) for i in range(0, len(items) - 1, 2)]


def _is_error_or_nil(reply) -> bool:
    return reply[0] in ("error", "blob_error") or is_nil(reply)


def _skeleton(reply):
    """A reply with the values taken out (tags and lengths): the shape two
    random answers must share."""
    if reply[0] in ("array", "set", "push"):
        return (reply[0], tuple(_skeleton(x) for x in reply[1]))
    if reply[0] == "map":
        return ("map", tuple((_skeleton(k), _skeleton(v)) for k, v in reply[1]))
    return (reply[0],)


RAND_KIND = {b"SRANDMEMBER": "set", b"SPOP": "set", b"HRANDFIELD": "hash", b"ZRANDMEMBER": "zset"}


def key_content(conn, key, kind):
    """{element: value-reply or None} of a set / hash / zset, or None if it is not one."""
    if kind == "set":
        r = conn.call("SMEMBERS", key)
        return {x: None for x in r[1]} if r[0] in ("array", "set") else None
    if kind == "hash":
        r = conn.call("HGETALL", key)
        if r[0] == "map":
            return dict(r[1])
        return dict(_pairs(r[1])) if r[0] == "array" else None
    r = conn.call("ZRANGE", key, "0", "-1", "WITHSCORES")
    if r[0] != "array":
        return None
    if r[1] and r[1][0][0] == "array":  # RESP3: [[member, score], ...]
        return {x[1][0]: x[1][1] for x in r[1]}
    return dict(_pairs(r[1]))


def check_random_reply(args, reply, content):
    """Why `reply` cannot be an answer of SRANDMEMBER/SPOP/HRANDFIELD/ZRANDMEMBER
    `args` on a key holding `content`; None if it can."""
    if _is_error_or_nil(reply):
        return None
    if content is None:
        return "key is not of the expected type"
    if len(args) == 2:  # no count: one element
        if reply[0] != "bulk" or reply not in content:
            return "element is not in the key"
        return None
    count = int(args[2])
    with_values = len(args) > 3
    if reply[0] not in ("array", "set"):
        return f"expected an array, got {reply[0]}"
    items = reply[1]
    if with_values:
        if items and items[0][0] == "array":  # RESP3 pairs
            pairs = [tuple(x[1]) for x in items if len(x[1]) == 2]
            if len(pairs) != len(items):
                return "malformed pair"
        else:
            if len(items) % 2:
                return "odd number of items"
            pairs = _pairs(items)
    else:
        pairs = [(x, None) for x in items]
    for el, val in pairs:
        if el not in content:
            return f"{fmt(el)} is not in the key"
        if with_values and content[el] != val:
            return f"{fmt(el)} has value {fmt(content[el])}, reply says {fmt(val)}"
    if not content:  # a missing key gives an empty array for any count
        return None if not pairs else "elements from an empty key"
    if count >= 0:
        if len(pairs) != min(count, len(content)):
            return f"{len(pairs)} elements for count {count} of {len(content)}"
        if len({el for el, _ in pairs}) != len(pairs):
            return "repeated elements for a positive count"
    elif len(pairs) != -count:
        return f"{len(pairs)} elements for count {count}"
    return None


def kscan_all(conn, args, max_rounds: int = 10000):
    """Iterate SSCAN/HSCAN/ZSCAN to cursor 0: ("scanned", sorted unique elements or
    (field, value) pairs), or the first error / odd reply."""
    args = list(args)
    seen = set()
    pairs = bytes(args[0]).upper() in (b"HSCAN", b"ZSCAN")
    for _ in range(max_rounds):
        reply = conn.call(*args)
        if reply[0] != "array" or len(reply[1]) != 2 or reply[1][0][0] != "bulk" or reply[1][1][0] != "array":
            return reply
        items = reply[1][1][1]
        seen.update(_pairs(items) if pairs else items)
        args[2] = reply[1][0][1]
        if args[2] == b"0":
            return ("scanned", sorted(seen, key=_sort_key))
    return ("scan-did-not-finish", max_rounds)


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
            c.pipeline([("DISCARD",), ("UNWATCH",), ("FLUSHDB",)])

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
        elif step.mode == "kscan":
            a, b = kscan_all(self.k, step.args), kscan_all(self.r, step.args)
            if a != b:
                self.fail(i, step, a, b, "SSCAN/HSCAN/ZSCAN iteration results differ")
        elif step.mode in ("rand", "spop"):
            a, b = self.run_random(i, step)
        else:
            raise AssertionError(step.mode)
        self._record(i, step, a, b)

    def run_random(self, i, step: Step):
        kind = RAND_KIND[bytes(step.args[0]).upper()]
        key = step.args[1]
        ca, cb = key_content(self.k, key, kind), key_content(self.r, key, kind)
        if ca != cb:
            self.fail(i, step, ("content", ca), ("content", cb), f"{kind} {fmt(key)} differs before the command")
        a, b = self.k.call(*step.args), self.r.call(*step.args)
        if _is_error_or_nil(a) or _is_error_or_nil(b):
            if a != b:
                self.fail(i, step, a, b)
            return a, b
        if _skeleton(a) != _skeleton(b):
            self.fail(i, step, a, b, "random replies differ in shape or length")
        for reply in (a, b):
            why = check_random_reply(step.args, reply, ca)
            if why:
                self.fail(i, step, a, b, f"invalid random reply ({why}; key holds {fmt(list(ca or ()), 200)})")
        if step.mode == "spop":
            # make the reference pop what keel popped, so both keyspaces stay equal
            got = lambda r: {r} if r[0] == "bulk" else set(r[1])
            pa, pb = got(a), got(b)
            back, drop = [x[1] for x in pb - pa], [x[1] for x in pa - pb]
            if back:
                self.r.call("SADD", key, *back)
            if drop:
                self.r.call("SREM", key, *drop)
            ca2, cb2 = key_content(self.k, key, kind), key_content(self.r, key, kind)
            if ca2 != cb2:
                self.fail(i, step, ("after", ca2), ("after", cb2), "sets differ after SPOP")
        return a, b

    def run(self, steps, batch_rng: random.Random):
        batch = []
        for i, step in enumerate(steps):
            try:
                if step.mode in ("scan", "randomkey", "kscan", "rand", "spop"):
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
        v = None
        if t == ("simple", b"string"):
            v = conn.call("GET", k)
            # A HyperLogLog's cached count (header bytes 8..16) is written by
            # Redis's PFCOUNT and never by keel's (cmd/hyperloglog.rs): compare
            # everything else, registers and encoding byte for byte.
            if v[0] == "bulk" and v[1].startswith(b"HYLL") and len(v[1]) >= 16:
                v = ("bulk", v[1][:8] + bytes(8) + v[1][16:])
        elif t == ("simple", b"list"):
            v = conn.call("LRANGE", k, "0", "-1")
        elif t in (("simple", b"set"), ("simple", b"hash"), ("simple", b"zset")):
            content = key_content(conn, k, t[1].decode())
            v = sorted(content.items(), key=_sort_key) if content is not None else None
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
    # (a second of life: long enough that a loaded CI machine cannot make
    # them expire before DBSIZE counts them, short enough to watch go)
    cmds = []
    for i in range(20):
        cmds.append(("SET", f"short:{i}", "v", "PX", str(1000 + 10 * i)))
        cmds.append(("SET", f"{{tag}}short:{i}", "v", "PX", "1000"))
    cmds += [("PSETEX", "pse", "1000", "x"), ("SETEX", "se", "1", "y"),
             ("SET", "pexp", "z"), ("PEXPIRE", "pexp", "1050"),
             ("SET", "lazy", "1", "PX", "1000")]
    n_keys = 44
    with open_conn(keel, protocol) as kc, open_conn(ref, protocol) as rc:
        for name, c in (("keel", kc), ("redis", rc)):
            replies = c.pipeline(cmds)
            assert all(r in (("simple", b"OK"), ("int", 1)) for r in replies), (name, replies)
            assert c.call("DBSIZE") == ("int", n_keys), name
            ttl = c.call("PTTL", "short:19")
            assert ttl[0] == "int" and 0 < ttl[1] <= 1190, (name, ttl)

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

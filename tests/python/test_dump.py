"""DUMP and RESTORE through redis-py, keel to keel (keel's payload is its
own: versioned, checksummed; Redis's payloads are not accepted): every type
round-trips (strings, binary strings, HyperLogLog strings, hashes, lists,
sets, sorted sets, packed and large forms), TTL/ABSTTL/REPLACE/IDLETIME/FREQ
behave as in Redis, and argument errors match redis-server's replies. A
damaged payload (any flipped bit, any truncation) is refused with Redis's
error and keel keeps serving; a restored key survives a restart (RESTORE is
logged as the entry written).
"""

from __future__ import annotations

import random
import time

import pytest
import redis

from conftest import _checked_stop, start_keel

VERSION_ERR = "DUMP payload version or checksum are wrong"


@pytest.fixture
def keel(tmp_path):
    s = start_keel(tmp_path, shards=4)
    yield s
    _checked_stop(s)


def outcome(fn):
    try:
        return ("ok", fn())
    except redis.ResponseError as e:
        return ("err", str(e))


def fill(c, rng):
    c.set("str", "hello")
    c.set("bin", bytes(range(256)))
    c.set("int", 12345)
    c.pfadd("hll", *[f"u{i}" for i in range(50)])
    c.pfadd("hll_dense", *[f"u{i}" for i in range(5000)])
    c.hset("hash", mapping={"a": "1", "b": "", "": "x"})
    c.hset("bighash", mapping={f"f{i}": "v" * (i % 90) for i in range(600)})
    c.rpush("list", "a", "", "b", "1")
    c.rpush("biglist", *[f"e{i}" for i in range(3000)])
    c.sadd("set", "x", "y", "z")
    c.sadd("intset", *range(100))
    c.sadd("bigset", *[f"m{i}" for i in range(1000)])
    c.zadd("zset", {"a": 1.5, "b": -2, "c": 1e300, "d": 0})
    c.zadd("bigzset", {f"m{i}": rng.random() for i in range(800)})


def contents(c, key):
    t = c.type(key)
    if t == b"string":
        return (t, c.get(key))
    if t == b"hash":
        return (t, sorted(c.hgetall(key).items()))
    if t == b"list":
        return (t, c.lrange(key, 0, -1))
    if t == b"set":
        return (t, sorted(c.smembers(key)))
    if t == b"zset":
        return (t, c.zrange(key, 0, -1, withscores=True))
    return (t, None)


KEYS = ["str", "bin", "int", "hll", "hll_dense", "hash", "bighash", "list", "biglist", "set",
        "intset", "bigset", "zset", "bigzset"]


def test_every_type_round_trips(keel):
    c = keel.client()
    fill(c, random.Random(1))
    for key in KEYS:
        before = contents(c, key)
        payload = c.dump(key)
        assert payload is not None
        assert c.restore(key + ":copy", 0, payload) == b"OK"
        assert contents(c, key + ":copy") == before
        assert c.ttl(key + ":copy") == -1
        assert c.object("encoding", key + ":copy") == c.object("encoding", key)
    # HLL strings stay HLLs.
    assert c.pfcount("hll:copy") == c.pfcount("hll")
    assert c.pfcount("hll_dense:copy") == c.pfcount("hll_dense")
    assert c.dump("missing") is None


def test_restore_options(keel, ref_redis):
    k = keel.client()
    k.rpush("l", "a", "b")
    p = k.dump("l")
    with pytest.raises(redis.ResponseError, match="^BUSYKEY Target key name already exists.$"):
        k.restore("l", 0, p)
    assert k.restore("l", 0, p, replace=True)
    assert k.restore("t", 100_000, p)
    assert 90_000 <= k.pttl("t") <= 100_000
    at = int(time.time() * 1000) + 50_000
    assert k.restore("abs", at, p, absttl=True)
    assert abs(k.execute_command("PEXPIRETIME", "abs") - at) == 0
    # An expiry already past: OK, nothing created; with REPLACE the key goes.
    assert k.restore("gone", 1, p, absttl=True)
    assert k.exists("gone") == 0
    assert k.restore("l", 1, p, absttl=True, replace=True)
    assert k.exists("l") == 0
    assert k.restore("idle", 0, p, idletime=1000)
    assert k.object("idletime", "idle") >= 1000
    assert k.restore("freq", 0, p, frequency=10)
    assert k.lrange("freq", 0, -1) == [b"a", b"b"]
    # Argument errors in Redis's order, compared with redis-server (its
    # payload is of no matter: the checks come first).
    r = ref_redis.client()
    r.flushall()
    r.rpush("l", "a")
    rp = r.dump("l")
    for c, payload in ((k, p), (r, rp)):
        c.set("busy", "x")
    cases = [
        ("busy", "0", "PAYLOAD"),
        ("busy", "-1", "PAYLOAD", "REPLACE"),
        ("new", "x", "PAYLOAD"),
        ("new", "-1", "PAYLOAD"),
        ("new", "0", "PAYLOAD", "bogus"),
        ("new", "0", "PAYLOAD", "IDLETIME"),
        ("new", "0", "PAYLOAD", "IDLETIME", "-1"),
        ("new", "0", "PAYLOAD", "IDLETIME", "x"),
        ("new", "0", "PAYLOAD", "FREQ", "256"),
        ("new", "0", "PAYLOAD", "FREQ", "1", "IDLETIME", "1"),
        ("new", "0", "PAYLOAD", "IDLETIME", "1", "FREQ", "1"),
        ("new", "0", "garbage"),
        ("new", "0", ""),
    ]
    for case in cases:
        got = [outcome(lambda: c.execute_command("RESTORE", *[pl if a == "PAYLOAD" else a for a in case]))
               for c, pl in ((k, p), (r, rp))]
        assert got[0] == got[1], case
    assert outcome(lambda: k.execute_command("RESTORE", "x")) == outcome(
        lambda: r.execute_command("RESTORE", "x"))
    assert outcome(lambda: k.execute_command("DUMP")) == outcome(lambda: r.execute_command("DUMP"))


def test_damaged_payloads_are_refused(keel):
    c = keel.client()
    fill(c, random.Random(2))
    rng = random.Random(3)
    for key in ["str", "hash", "list", "set", "zset", "hll", "bigzset"]:
        p = c.dump(key)
        positions = range(len(p)) if len(p) < 200 else rng.sample(range(len(p)), 200)
        for i in positions:
            q = bytearray(p)
            q[i] ^= 1 << rng.randrange(8)
            with pytest.raises(redis.ResponseError) as e:
                c.restore("x", 0, bytes(q))
            assert str(e.value) in (VERSION_ERR, "Bad data format")
        for n in list(range(min(len(p), 40))) + [len(p) - 1, len(p) // 2]:
            with pytest.raises(redis.ResponseError, match=VERSION_ERR):
                c.restore("x", 0, p[:n])
        with pytest.raises(redis.ResponseError, match=VERSION_ERR):
            c.restore("x", 0, p + b"\x00")
    assert c.exists("x") == 0
    assert c.ping()


def test_redis_payload_is_refused(keel, ref_redis):
    r = ref_redis.client()
    r.set("s", "hello")
    with pytest.raises(redis.ResponseError, match=VERSION_ERR):
        keel.client().restore("s", 0, r.dump("s"))


def test_restored_keys_survive_a_restart(tmp_path):
    s = start_keel(tmp_path, shards=2, extra_args=["--appendonly", "yes", "--appendfsync", "always"])
    try:
        c = s.client()
        fill(c, random.Random(4))
        for key in KEYS:
            c.restore(key + ":r", 100_000, c.dump(key))
        want = {key: contents(c, key) for key in KEYS}
        s.proc.kill()
        s.proc.wait()
        s.start()
        c = s.client()
        for key in KEYS:
            assert contents(c, key + ":r") == want[key]
            assert c.ttl(key + ":r") > 0
    finally:
        _checked_stop(s)

"""HyperLogLog through redis-py, beside a reference redis-server: the same
PFADDs give the same bytes (GET) and the same PFCOUNTs, unions and merges over
keys on every shard, a value moved between the two servers with GET/SET keeps
counting, and HyperLogLogs survive a SIGKILL.

keel's PFCOUNT does not write its count into the value (see
src/cmd/hyperloglog.rs), so bytes are compared before any PFCOUNT, and after
one with the 8 cache bytes of the header set aside.
"""

from __future__ import annotations

import pytest

from conftest import TARGET, _checked_stop, start_keel


@pytest.fixture
def keel(tmp_path):
    s = start_keel(tmp_path, shards=4, extra_args=["--appendonly", "yes", "--appendfsync", "always"])
    yield s
    _checked_stop(s)


def without_cache(v: bytes) -> bytes:
    return v[:8] + bytes(8) + v[16:]


def test_same_bytes_and_counts_as_redis(keel, ref_redis):
    k, r = keel.client(), ref_redis.client()
    r.flushall()
    for c in (k, r):
        assert c.pfadd("small", "a", "b", "c") == 1
        assert c.pfadd("small", "a") == 0
        for start in range(0, 20_000, 500):
            c.pfadd("big", *[f"user:{i}" for i in range(start, start + 500)])
        c.pfadd("empty")
    for key in ("small", "big", "empty"):
        assert k.get(key) == r.get(key), key
    assert k.strlen("big") == 16 + 12288  # dense, as redis made it
    for key in ("small", "big", "empty"):
        assert k.pfcount(key) == r.pfcount(key)
        assert without_cache(k.get(key)) == without_cache(r.get(key))
    assert k.pfcount("big") == r.pfcount("big")
    assert abs(k.pfcount("big") - 20_000) < 400  # HyperLogLog's ~0.81 % error
    assert k.pfcount("small", "big", "missing") == r.pfcount("small", "big", "missing")


def test_union_and_merge_over_every_shard(keel, ref_redis):
    k, r = keel.client(), ref_redis.client()
    r.flushall()
    days = [f"visitors:{d}" for d in range(7)]
    for c in (k, r):
        for d, key in enumerate(days):
            c.pfadd(key, *[f"v{i}" for i in range(d * 1000, d * 1000 + 3000)])
        assert c.pfmerge("week", *days)
    assert k.pfcount(*days) == r.pfcount(*days)
    assert k.pfcount("week") == r.pfcount("week")
    assert without_cache(k.get("week")) == without_cache(r.get("week"))
    # A repeated PFCOUNT of an unchanged key, then one after a change.
    first = k.pfcount("week")
    assert k.pfcount("week") == first
    k.pfadd("week", *[f"new{i}" for i in range(5000)])
    assert k.pfcount("week") > first


def test_values_move_between_keel_and_redis(keel, ref_redis):
    k, r = keel.client(), ref_redis.client()
    r.flushall()
    r.pfadd("from-redis", *[f"x{i}" for i in range(5000)])
    r.pfcount("from-redis")  # redis caches the count in the value
    k.set("from-redis", r.get("from-redis"))
    assert k.pfcount("from-redis") == r.pfcount("from-redis")
    k.pfadd("from-keel", *[f"y{i}" for i in range(300)])
    r.set("from-keel", k.get("from-keel"))
    assert r.pfcount("from-keel") == k.pfcount("from-keel")
    assert r.pfadd("from-keel", "y1") == k.pfadd("from-keel", "y1") == 0


def test_errors_are_redis_errors(keel):
    k = keel.client()
    k.set("plain", "hello")
    with pytest.raises(Exception, match="WRONGTYPE Key is not a valid HyperLogLog string value"):
        k.pfadd("plain", "x")
    with pytest.raises(Exception, match="WRONGTYPE Key is not a valid HyperLogLog string value"):
        k.pfcount("plain")
    k.lpush("list", "x")
    with pytest.raises(Exception, match="WRONGTYPE Operation against a key holding the wrong kind"):
        k.pfmerge("dest", "list")
    # A damaged sparse payload: redis's INVALIDOBJ, and no crash.
    # (two runs of 16384 zero registers: twice too many registers)
    k.set("broken", b"HYLL\x01\x00\x00\x00" + bytes(7) + b"\x80" + b"\x7f\xff\x7f\xff")
    with pytest.raises(Exception, match="INVALIDOBJ Corrupted HLL object detected"):
        k.pfcount("broken")
    assert k.ping()


@pytest.mark.skipif(TARGET == "redis", reason="keel's restart after SIGKILL")
def test_hyperloglogs_survive_sigkill(keel):
    k = keel.client()
    k.pfadd("h", *[f"e{i}" for i in range(10_000)])
    k.pfmerge("m", "h", "other")
    want = (k.get("h"), k.pfcount("h"), k.pfcount("m"))
    k.close()
    keel.proc.kill()
    keel.proc.wait(10)
    keel.start()
    k = keel.client()
    assert (k.get("h"), k.pfcount("h"), k.pfcount("m")) == want


def test_hll_sparse_max_bytes_applies_as_in_redis(keel, ref_redis):
    k, r = keel.client(), ref_redis.client()
    r.flushall()
    old = r.config_get("hll-sparse-max-bytes")["hll-sparse-max-bytes"]
    try:
        for c in (k, r):
            c.config_set("hll-sparse-max-bytes", 100)
            c.pfadd("tiny", *[f"t{i}" for i in range(60)])
        assert k.strlen("tiny") == r.strlen("tiny")
        assert k.get("tiny") == r.get("tiny")
    finally:
        r.config_set("hll-sparse-max-bytes", old)


def test_pfdebug_and_pfselftest_as_redis(keel, ref_redis):
    """PFDEBUG's views (ENCODING, DECODE, GETREG, TODENSE) give redis-server's
    replies and errors for the same values; the conversions they make are
    recorded, so the dense value is what comes back after a SIGKILL."""
    raw_k, raw_r = keel.raw(), ref_redis.raw()
    raw_r.call("FLUSHALL")
    steps = [
        ("PFADD", "h", "a", "b", "c"), ("PFADD", "h2", *[f"e{i}" for i in range(200)]),
        ("PFDEBUG", "ENCODING", "h"), ("PFDEBUG", "DECODE", "h"), ("PFDEBUG", "DECODE", "h2"),
        ("PFDEBUG", "GETREG", "h"), ("PFDEBUG", "ENCODING", "h"), ("PFDEBUG", "DECODE", "h"),
        ("PFDEBUG", "TODENSE", "h"), ("PFDEBUG", "TODENSE", "h2"), ("PFDEBUG", "ENCODING", "h2"),
        ("PFCOUNT", "h2"), ("PFDEBUG", "foo", "h"), ("PFDEBUG", "GETREG", "nokey"),
        ("PFDEBUG", "GETREG", "h", "x"), ("SET", "s", "x"), ("PFDEBUG", "ENCODING", "s"),
        ("LPUSH", "l", "x"), ("PFDEBUG", "ENCODING", "l"), ("PFDEBUG",), ("PFSELFTEST",),
        ("PFSELFTEST", "x"),
    ]
    with raw_k, raw_r:
        for cmd in steps:
            assert raw_k.call(*cmd) == raw_r.call(*cmd), cmd
        dense = raw_r.call("GET", "h2")
    keel.proc.kill()
    keel.proc.wait(10)
    keel.start()
    with keel.raw() as c:
        assert c.call("PFDEBUG", "ENCODING", "h2") == ("simple", b"dense")
        got = c.call("GET", "h2")
        assert without_cache(got[1]) == without_cache(dense[1])

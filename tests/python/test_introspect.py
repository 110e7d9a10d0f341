"""OBJECT and MEMORY USAGE through redis-py, beside the reference
redis-server: encodings where keel's representation matches Redis's (it has
no intset, so sets are left out), the replies for missing keys, and the
errors in Redis's words."""

from __future__ import annotations

import time

import pytest

from conftest import _checked_stop, start_keel


@pytest.fixture
def keel(tmp_path):
    s = start_keel(tmp_path, shards=4)
    yield s
    _checked_stop(s)


def fill(c):
    c.set("int", 12345)
    c.set("short", "hello")
    c.set("long", "x" * 100)
    c.set("appended", "hello")
    c.append("appended", "!")
    c.setbit("bits", 3, 1)
    c.hset("small-hash", mapping={"a": 1})
    c.hset("big-hash", mapping={f"f{i}": i for i in range(1000)})
    c.zadd("small-zset", {"a": 1})
    c.zadd("big-zset", {f"m{i}": i for i in range(1000)})
    c.rpush("list", "a", "b")


def test_object_and_memory_usage_as_redis(keel, ref_redis):
    k, r = keel.client(), ref_redis.client()
    r.flushall()
    fill(k)
    fill(r)
    for key in ["int", "short", "long", "appended", "bits", "small-hash", "big-hash",
                "small-zset", "big-zset", "list", "missing"]:
        assert k.object("encoding", key) == r.object("encoding", key), key
    assert k.object("refcount", "long") == r.object("refcount", "long") == 1
    # Just touched: idle for no whole second (or one, on a loaded machine).
    k.get("long")
    assert k.object("idletime", "long") in (0, 1)
    assert k.object("idletime", "missing") is None and k.memory_usage("missing") is None
    for c in (k, r):
        with pytest.raises(Exception, match="An LFU maxmemory policy is not selected"):
            c.object("freq", "long")
    raw_k, raw_r = keel.raw(), ref_redis.raw()
    with raw_k, raw_r:
        for cmd in (("OBJECT", "nosuch", "x"), ("OBJECT", "ENCODING"), ("OBJECT",),
                    ("MEMORY", "USAGE", "long", "SAMPLES", "x"), ("MEMORY", "USAGE", "long", "BAD")):
            assert raw_k.call(*cmd) == raw_r.call(*cmd), cmd
        assert raw_k.call("OBJECT", "HELP")[1][0] == raw_r.call("OBJECT", "HELP")[1][0]
    # MEMORY USAGE grows with the value.
    assert 0 < k.memory_usage("short") < k.memory_usage("long") < k.memory_usage("big-hash")


def test_listpack_thresholds_apply_as_in_redis(tmp_path, ref_redis):
    """CONFIG SET of the listpack thresholds (and their ziplist aliases)
    changes when hashes and sorted sets leave the packed encoding, from the
    next write, on every core; entries stop at keel's ceiling of 255, values
    may be as long as set."""
    keel = start_keel(tmp_path, shards=4)
    try:
        k, r = keel.client(), ref_redis.client()
        r.flushall()
        try:
            for c in (k, r):
                c.config_set("hash-max-ziplist-entries", 3)
                c.config_set("hash-max-listpack-value", 8)
                c.config_set("zset-max-listpack-entries", 2)
                c.config_set("zset-max-ziplist-value", 5)
                for i in range(8):  # keys on every shard
                    c.hset(f"h{i}", mapping={"a": 1, "b": 2, "c": 3})
                    c.hset(f"h-long{i}", "f", "v" * 9)
                    c.hset(f"h-grown{i}", mapping={"a": 1, "b": 2, "c": 3})
                    c.hset(f"h-grown{i}", "d", 4)
                    c.zadd(f"z{i}", {"a": 1, "b": 2})
                    c.zadd(f"z-grown{i}", {"a": 1, "b": 2, "c": 3})
                    c.zadd(f"z-long{i}", {"abcdef": 1})
            for i in range(8):
                for key, want in ((f"h{i}", b"listpack"), (f"h-long{i}", b"hashtable"),
                                  (f"h-grown{i}", b"hashtable"), (f"z{i}", b"listpack"),
                                  (f"z-grown{i}", b"skiplist"), (f"z-long{i}", b"skiplist")):
                    assert k.object("encoding", key) == r.object("encoding", key) == want, key
            assert k.config_get("hash-max-listpack-entries") == {"hash-max-listpack-entries": "3"}
            # Above the ceiling: still packed up to 255 members, not beyond.
            k.config_set("zset-max-listpack-entries", 1000)
            k.zadd("z-big", {f"m{i}": i for i in range(255)})
            assert k.object("encoding", "z-big") == b"listpack"
            k.zadd("z-big", {"one-more": 1})
            assert k.object("encoding", "z-big") == b"skiplist"
            # Long values stay packed when allowed, in insertion order.
            for c in (k, r):
                c.config_set("hash-max-listpack-value", 100000)
                c.hset("h-long-ok", mapping={"a": "x" * 70000, "b": "1", "c": "y" * 300})
            assert k.object("encoding", "h-long-ok") == r.object("encoding", "h-long-ok") == b"listpack"
            assert k.hgetall("h-long-ok") == r.hgetall("h-long-ok")
            assert list(k.hgetall("h-long-ok")) == [b"a", b"b", b"c"]
        finally:
            for c in (k, r):
                c.config_set("hash-max-listpack-entries", 512)
                c.config_set("hash-max-listpack-value", 64)
                c.delete("h-long-ok")
                c.config_set("zset-max-listpack-entries", 128)
                c.config_set("zset-max-listpack-value", 64)
    finally:
        _checked_stop(keel)


def test_instantaneous_rates_follow_the_load(keel, ref_redis):
    """INFO stats' instantaneous_ops_per_sec and _kbps: above zero while
    commands flow, back to zero once they stop (a window of about 1.6 s)."""
    for server in (keel, ref_redis):
        c = server.client()
        busy = []
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            p = c.pipeline(transaction=False)
            for i in range(200):
                p.set(f"rate:{i}", "x" * 100)
            p.execute()
            busy.append(c.info("stats"))
        assert max(s["instantaneous_ops_per_sec"] for s in busy) > 0, server.name
        assert max(s["instantaneous_input_kbps"] for s in busy) > 0, server.name
        assert max(s["instantaneous_output_kbps"] for s in busy) > 0, server.name
        deadline = time.monotonic() + 10
        # (the INFO calls themselves are a few commands a second)
        while c.info("stats")["instantaneous_ops_per_sec"] > 20:
            assert time.monotonic() < deadline, f"{server.name}: the rate never fell"
            time.sleep(0.2)
        c.close()

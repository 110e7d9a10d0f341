"""OBJECT and MEMORY USAGE through redis-py, beside the reference
redis-server: encodings where keel's representation matches Redis's (it has
no intset, so sets are left out), the replies for missing keys, and the
errors in Redis's words."""

from __future__ import annotations

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
    assert k.object("idletime", "long") == 0
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

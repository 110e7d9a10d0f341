"""Redis 7 commands through redis-py's own methods, beside the reference
redis-server: LCS and ZINTERCARD, with their keys on different shards."""

from __future__ import annotations

import pytest

from conftest import _checked_stop, start_keel


@pytest.fixture
def keel(tmp_path):
    s = start_keel(tmp_path, shards=4)
    yield s
    _checked_stop(s)


def test_lcs_and_zintercard_as_redis(keel, ref_redis):
    k, r = keel.client(), ref_redis.client()
    r.flushall()
    for c in (k, r):
        c.mset({"key1": "ohmytext", "key2": "mynewtext", "doc:a": "the quick brown fox", "doc:b": "a quick brown dog"})
        c.zadd("z:1", {"a": 1, "b": 2, "c": 3, "d": 4})
        c.zadd("z:2", {"b": 1, "c": 2, "d": 3, "e": 4})
        c.sadd("s:1", "c", "d", "x")
    assert k.lcs("key1", "key2") == r.lcs("key1", "key2") == b"mytext"
    assert k.lcs("key1", "key2", len=True) == 6
    for kw in ({"idx": True}, {"idx": True, "minmatchlen": 4, "withmatchlen": True}):
        assert k.lcs("doc:a", "doc:b", **kw) == r.lcs("doc:a", "doc:b", **kw)
    assert k.lcs("missing", "key1") == r.lcs("missing", "key1") == b""
    assert k.zintercard(2, ["z:1", "z:2"]) == r.zintercard(2, ["z:1", "z:2"]) == 3
    assert k.zintercard(3, ["z:1", "z:2", "s:1"]) == r.zintercard(3, ["z:1", "z:2", "s:1"]) == 2
    assert k.zintercard(2, ["z:1", "z:2"], limit=1) == 1
    assert k.zintercard(2, ["z:1", "missing"]) == 0
    with pytest.raises(Exception, match="The specified keys must contain string values"):
        k.lcs("z:1", "key1")
    with pytest.raises(Exception, match="LIMIT can't be negative"):
        k.zintercard(2, ["z:1", "z:2"], limit=-1)


def test_zmpop_and_a_bzmpop_woken_from_another_connection(keel, ref_redis):
    import threading

    k, r = keel.client(), ref_redis.client()
    r.flushall()
    for c in (k, r):
        c.zadd("q:1", {"a": 1, "b": 2, "c": 3})
    assert k.zmpop(2, ["q:0", "q:1"], max=True, count=2) == r.zmpop(2, ["q:0", "q:1"], max=True, count=2)
    assert k.zmpop(1, ["q:0"], min=True) is None
    # A client blocks on two empty keys; another connection's ZADD (on
    # whichever shard the key lives) wakes it with the lowest member.
    got = {}

    def blocked():
        got["reply"] = keel.client().bzmpop(5, 2, ["wait:1", "wait:2"], min=True, count=2)

    t = threading.Thread(target=blocked)
    t.start()
    import time

    time.sleep(0.3)
    k.zadd("wait:2", {"x": 5, "y": 1, "z": 3})
    t.join(10)
    assert got["reply"] == [b"wait:2", [[b"y", b"1"], [b"z", b"3"]]]
    assert k.bzmpop(0.05, 1, ["wait:1"], max=True) is None


def test_move_between_databases_as_redis(keel, ref_redis):
    k, r = keel.client(), ref_redis.client()
    r.flushall()
    for c in (k, r):
        c.set("m", "v", ex=100)
        c.execute_command("SELECT", 0)
    assert k.move("m", 3) == r.move("m", 3) == 1
    assert k.exists("m") == r.exists("m") == 0
    k3, r3 = keel.client(db=3), ref_redis.client(db=3)
    assert k3.get("m") == b"v" and 0 < k3.ttl("m") <= 100
    assert k.move("m", 3) == r.move("m", 3) == 0  # gone from db 0
    k.set("m", "again")
    assert k.move("m", 3) == 0  # present in db 3
    def error_of(c, db):
        try:
            c.move("m", db)
        except Exception as e:  # the reply error's text
            return str(e)
        return None

    for bad in (0, 16):
        assert error_of(k, bad) == error_of(r, bad) is not None
    r3.flushall()


def test_substr_lolwut_and_helps(keel, ref_redis):
    """SUBSTR (GETRANGE's old name), LOLWUT's shape and errors, and the
    CONFIG / PUBSUB HELP replies' shape, beside redis-server."""
    raw_k, raw_r = keel.raw(), ref_redis.raw()
    with raw_k, raw_r:
        for cmd in (("SET", "s", "Hello World"), ("SUBSTR", "s", "0", "4"), ("SUBSTR", "s", "-5", "-1"),
                    ("SUBSTR", "nope", "0", "1"), ("SUBSTR", "s", "x", "1"), ("SUBSTR", "s", "0"),
                    ("LOLWUT", "VERSION", "x"), ("CONFIG", "HELP", "x"), ("PUBSUB", "HELP", "x")):
            assert raw_k.call(*cmd) == raw_r.call(*cmd), cmd
        for cmd in (("LOLWUT",), ("LOLWUT", "VERSION", "5"), ("LOLWUT", "x")):
            k, r = raw_k.call(*cmd), raw_r.call(*cmd)
            assert k[0] == r[0] == "bulk" and b"ver." in k[1] and b"ver." in r[1]
        for cmd in (("CONFIG", "HELP"), ("PUBSUB", "HELP")):
            k, r = raw_k.call(*cmd), raw_r.call(*cmd)
            assert k[0] == r[0] == "array" and k[1][0] == r[1][0]
            assert all(line[0] in ("simple", "bulk") for line in k[1])

"""Sharded pub/sub (SSUBSCRIBE, SUNSUBSCRIBE, SPUBLISH, PUBSUB SHARDCHANNELS
and SHARDNUMSUB) beside the reference redis-server: the same replies and
messages for the same session, in RESP2 and RESP3, with subscribers and
publishers on different cores (`--shards 4`); and redis-py's own sharded
pub/sub API."""

from __future__ import annotations

import time

import pytest

from conftest import _checked_stop, start_keel


@pytest.fixture
def keel(tmp_path):
    s = start_keel(tmp_path, shards=4)
    yield s
    _checked_stop(s)


def _session(server, proto: int) -> list:
    """Runs one scripted session; returns every reply and message in order."""
    seen: list = []
    subs = [server.raw(timeout=5) for _ in range(3)]
    pub = server.raw(timeout=5)
    if proto == 3:
        for c in subs + [pub]:
            c.call("HELLO", "3")
    a, b, c = subs

    def send(conn, *args, replies=1):
        conn.send(*args)
        return [conn.read_any() for _ in range(replies)]

    seen.append(send(a, "SSUBSCRIBE", "orders", "audit", replies=2))
    seen.append(send(a, "SSUBSCRIBE", "orders"))
    seen.append(send(b, "SUBSCRIBE", "orders"))
    seen.append(send(b, "SSUBSCRIBE", "orders"))
    seen.append(send(c, "PSUBSCRIBE", "*"))
    if proto == 2:
        seen.append(send(a, "GET", "x"))
    time.sleep(0.1)
    # Shard messages reach shard subscribers only; patterns never match them.
    seen.append(pub.call("SPUBLISH", "orders", "o-1"))
    seen.append(pub.call("SPUBLISH", "audit", "a-1"))
    seen.append(pub.call("SPUBLISH", "nobody", "x"))
    seen.append(pub.call("PUBLISH", "orders", "plain"))
    seen.append([a.read_any(), a.read_any()])
    seen.append([b.read_any(), b.read_any()])
    seen.append([c.read_any()])
    seen.append(pub.call("PUBSUB", "SHARDCHANNELS"))
    seen.append(pub.call("PUBSUB", "SHARDCHANNELS", "a*"))
    seen.append(pub.call("PUBSUB", "SHARDNUMSUB", "orders", "audit", "nobody"))
    seen.append(pub.call("PUBSUB", "SHARDNUMSUB"))
    seen.append(pub.call("PUBSUB", "CHANNELS"))
    seen.append(pub.call("PUBSUB", "NUMSUB", "orders"))
    # Unsubscribing: named (one not subscribed), then all, then none left.
    a.send("SUNSUBSCRIBE", "orders", "never")
    seen.append([a.read_any(), a.read_any()])
    seen.append(send(a, "SUNSUBSCRIBE"))
    seen.append(send(a, "SUNSUBSCRIBE"))
    seen.append(send(a, "PING"))
    seen.append(pub.call("SPUBLISH", "orders", "o-2"))
    seen.append([b.read_any()])
    # Argument errors and a shard subscription inside MULTI.
    seen.append(pub.call("SSUBSCRIBE"))
    seen.append(pub.call("SPUBLISH", "orders"))
    seen.append(pub.call("PUBSUB", "SHARDCHANNELS", "a", "b"))
    seen.append(pub.pipeline([("MULTI",), ("SSUBSCRIBE", "q"), ("EXEC",)]))
    for conn in subs + [pub]:
        conn.close()
    return seen


def _normalize(seen: list) -> list:
    """PUBSUB SHARDCHANNELS lists in no set order."""
    out = []
    for item in seen:
        if isinstance(item, tuple) and item and item[0] in ("array", "set"):
            kids = item[1]
            if kids and all(k[0] == "bulk" for k in kids):
                item = (item[0], sorted(kids))
        out.append(item)
    return out


@pytest.mark.parametrize("proto", [2, 3])
def test_sharded_pubsub_session_as_redis(keel, ref_redis, proto):
    ref_redis.flush()
    want = _normalize(_session(ref_redis, proto))
    got = _normalize(_session(keel, proto))
    for i, (g, w) in enumerate(zip(got, want)):
        assert g == w, f"step {i}: keel {g!r} redis {w!r}"
    assert len(got) == len(want)


def test_redis_py_sharded_pubsub(keel):
    """redis-py's ssubscribe / spublish / get_sharded_message, with many
    subscribers on connections spread over the cores."""
    client = keel.client()
    listeners = []
    for _ in range(6):
        p = keel.client().pubsub()
        p.ssubscribe("jobs")
        assert p.get_sharded_message(timeout=2)["type"] == "ssubscribe"
        listeners.append(p)
    assert client.pubsub_shardnumsub("jobs") == [(b"jobs", 6)]
    assert client.spublish("jobs", "job-1") == 6
    for p in listeners:
        m = p.get_sharded_message(timeout=2)
        assert m is not None and m["type"] == "smessage" and m["data"] == b"job-1"
        p.sunsubscribe("jobs")
        assert p.get_sharded_message(timeout=2)["type"] == "sunsubscribe"
        p.close()
    assert client.spublish("jobs", "job-2") == 0
    assert client.pubsub_shardchannels() == []

"""INFO stats keyspace_hits / keyspace_misses count what Redis counts: the
key lookups of read commands; the lookups of writes (SET, INCR, HSET...)
count as neither. Checked side by side with redis-server, both fresh."""

from __future__ import annotations

import pytest

from conftest import TARGET


def stats(server) -> tuple[int, int]:
    info = server.client().info("stats")
    return info["keyspace_hits"], info["keyspace_misses"]


@pytest.mark.skipif(TARGET != "keel", reason="compares keel with redis-server")
def test_hits_and_misses_count_reads_only(server_factory):
    servers = {"keel": server_factory("keel", shards=2), "redis": server_factory("redis")}
    got = {}
    for name, s in servers.items():
        c = s.client()
        c.set("a", "1")             # write: not counted
        c.incr("a")                 # write: not counted
        c.set("b", "x", nx=True)    # write: not counted
        c.hset("h", "f", "v")       # write: not counted
        c.append("a", "0")          # write: not counted
        assert c.get("a") == b"20"  # hit
        assert c.get("nope") is None  # miss
        assert c.mget("a", "b", "nope") == [b"20", b"x", None]  # 2 hits, 1 miss
        assert c.hget("h", "f") == b"v"  # hit
        assert c.hget("nope", "f") is None  # miss
        assert c.strlen("a") == 2   # hit
        got[name] = stats(s)
    assert got["keel"] == got["redis"] == (5, 3), got

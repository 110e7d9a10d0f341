"""SWAPDB beside redis-server, on a keel of 4 shards: keys of both databases
(on every shard) are read from the other one right after; argument errors
match; a WATCHed key of either database makes the transaction fail as in
Redis; a client blocked on a key of a swapped database is served when the
key now exists there; SWAPDB inside MULTI; the swap survives a restart
(each shard logs it).
"""

from __future__ import annotations

import threading
import time

import pytest
import redis

from conftest import _checked_stop, start_keel


@pytest.fixture
def keel(tmp_path):
    s = start_keel(tmp_path, shards=4, extra_args=["--appendonly", "yes", "--appendfsync", "always"])
    yield s
    _checked_stop(s)


def outcome(fn):
    try:
        return ("ok", fn())
    except redis.ResponseError as e:
        return ("err", str(e))


def snapshot(c, db):
    c.execute_command("SELECT", db)
    out = sorted((k, c.type(k)) for k in c.keys("*"))
    c.execute_command("SELECT", 0)
    return out


def fill(c):
    c.execute_command("SELECT", 0)
    c.mset({f"a{i}": i for i in range(40)})
    c.rpush("list0", "x", "y")
    c.execute_command("SELECT", 1)
    c.mset({f"b{i}": i for i in range(25)})
    c.hset("h1", "f", "v")
    c.expire("b3", 1000)
    c.execute_command("SELECT", 0)


def test_swap_and_errors(keel, ref_redis):
    k = redis.Redis(host=keel.host, port=keel.port, single_connection_client=True)
    r = redis.Redis(host=ref_redis.host, port=ref_redis.port, single_connection_client=True)
    r.flushall()
    for c in (k, r):
        fill(c)
    want = [snapshot(k, 0), snapshot(k, 1)]
    for c in (k, r):
        assert c.swapdb(0, 1) is True
    assert snapshot(k, 0) == want[1] and snapshot(k, 1) == want[0]
    for db in (0, 1, 2):
        assert snapshot(k, db) == snapshot(r, db)
    assert k.get("b7") == b"7" and k.exists("a1") == 0
    assert 0 < k.ttl("b3") <= 1000
    assert k.dbsize() == r.dbsize() == 26
    for c in (k, r):
        c.swapdb(1, 5)
        c.swapdb(3, 3)
    for db in (0, 1, 3, 5):
        assert snapshot(k, db) == snapshot(r, db)
    for args in [("x", "1"), ("1", "x"), ("0", "16"), ("-1", "0"), ("99999999999", "0"), ("0", "2147483648"),
                 ("1.5", "0"), ("0",), ("0", "1", "2")]:
        assert outcome(lambda: k.execute_command("SWAPDB", *args)) == outcome(
            lambda: r.execute_command("SWAPDB", *args)), args
    for c in (k, r):
        p = c.pipeline(transaction=True)
        p.set("m", "1")
        p.swapdb(0, 2)
        p.get("m")
        p.execute_command("SELECT", 2)
        p.get("m")
        p.execute_command("SELECT", 0)
    assert outcome(lambda: k.pipeline(True).swapdb(0, 2).get("m").execute()) == outcome(
        lambda: r.pipeline(True).swapdb(0, 2).get("m").execute())


def test_watch(keel, ref_redis):
    for server in (keel, ref_redis):
        c = redis.Redis(host=server.host, port=server.port)
        c.flushall()
        c.set("w", "1")
        other = redis.Redis(host=server.host, port=server.port)
        # A watched key that exists in either database fails the transaction.
        p = c.pipeline(True)
        p.watch("w")
        other.swapdb(0, 9)
        p.multi()
        p.get("w")
        with pytest.raises(redis.WatchError):
            p.execute()
        # A watched key absent from both does not.
        p = c.pipeline(True)
        p.watch("nowhere")
        other.swapdb(0, 9)
        p.multi()
        p.get("w")
        assert p.execute() == [b"1"]


def test_blocked_client_is_served(keel):
    c = keel.client()
    c.execute_command("SELECT", 0)
    c.rpush("q", "job")
    got = []

    def waiter():
        w = redis.Redis(host=keel.host, port=keel.port, db=3)
        got.append(w.blpop(["q"], timeout=10))

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.3)
    assert c.swapdb(0, 3)
    t.join(10)
    assert got == [(b"q", b"job")]
    assert c.exists("q") == 0


def test_swap_survives_restart(keel):
    c = keel.client()
    fill(c)
    want = [snapshot(c, 0), snapshot(c, 1)]
    c.swapdb(0, 1)
    c.set("after", "1")
    c.close()
    keel.proc.kill()
    keel.proc.wait(10)
    keel.start()
    c = keel.client()
    assert snapshot(c, 1) == want[0]
    assert snapshot(c, 0) == sorted(want[1] + [(b"after", b"string")])

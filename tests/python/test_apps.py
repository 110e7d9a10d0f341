"""Application scenarios with redis-py (protocol 2 and 3) against keel at
--shards 1 and --shards 4, and through a backup of a three-node keel cluster
(via-backup: the backup forwards writes, MULTI/EXEC and blocking pops to the
primary; see backup_cluster.py): a leaderboard, a session store, a job queue on
BLMOVE and the async-ratelimiter algorithm (its 1.3.x command sequence: one
MULTI of ZREMRANGEBYSCORE, ZCARD, ZADD, ZRANGE, ZRANGE, ZREMRANGEBYRANK, PEXPIRE).
The same scenarios run with ioredis in tests/node/apps.test.js.
"""

from __future__ import annotations

import threading
import time

import pytest
import redis

from conftest import BACKUP, keel_server_variant, keel_variant_id

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module", params=[1, 4, BACKUP], ids=keel_variant_id)
def keel_server(request, tmp_path_factory):
    """conftest's keel_server plus its via-backup variant: clients talk to a
    backup of a three-node cluster (backup_cluster.py)."""
    yield from keel_server_variant(request.param, tmp_path_factory)


PROTOCOLS = pytest.mark.parametrize("protocol", [2, 3], ids=["resp2", "resp3"])


def pairs(reply):
    """ZRANGE ... WITHSCORES as [(member, score)]: RESP2 gives tuples, RESP3 lists."""
    return [(m, s) for m, s in reply]


# -- leaderboard ------------------------------------------------------------------

@PROTOCOLS
def test_leaderboard(keel, protocol):
    r = keel.client(protocol, decode_responses=True)
    lb = "game:{lb}:scores"
    assert r.zadd(lb, {"alice": 100, "bob": 80, "carol": 120, "dave": 80}) == 4
    assert r.zadd(lb, {"alice": 1}, nx=True) == 0
    assert r.zincrby(lb, 25, "bob") == 105.0
    assert r.zincrby(lb, 0.5, "dave") == 80.5
    assert r.zincrby(lb, -0.25, "dave") == 80.25
    assert r.zadd(lb, {"erin": 105}) == 1
    assert r.zcard(lb) == 5
    assert pairs(r.zrevrange(lb, 0, 2, withscores=True)) == [("carol", 120.0), ("erin", 105.0), ("bob", 105.0)]
    assert r.zrange(lb, 0, -1) == ["dave", "alice", "bob", "erin", "carol"]
    assert r.zrank(lb, "dave") == 0
    assert r.zrank(lb, "erin") == 3
    assert r.zrevrank(lb, "carol") == 0
    assert r.zrank(lb, "nobody") is None
    assert r.zscore(lb, "dave") == 80.25
    assert r.zscore(lb, "nobody") is None
    assert r.zmscore(lb, ["bob", "nobody"]) == [105.0, None]
    assert r.zcount(lb, "(100", 105) == 2
    assert r.zrangebyscore(lb, "-inf", "+inf", start=1, num=2) == ["alice", "bob"]
    assert r.zrange(lb, 110, 100, byscore=True, desc=True, offset=0, num=1) == ["erin"]
    assert r.zadd(lb, {"alice": 90, "bob": 130}, gt=True, ch=True) == 1
    assert r.zscore(lb, "alice") == 100.0
    assert r.zrem(lb, "bob", "nobody") == 1
    assert pairs(r.zpopmin(lb, 1)) == [("dave", 80.25)]
    # raw score text, as clients that do not parse doubles see it
    raw = keel.client(protocol)
    assert raw.execute_command("ZINCRBY", lb, "0.5", "alice") in (b"100.5", 100.5)
    r.set("str", "x")
    with pytest.raises(redis.ResponseError, match="^WRONGTYPE"):
        r.zadd("str", {"m": 1})
    with pytest.raises(redis.ResponseError, match="^value is not a valid float"):
        r.zincrby(lb, "abc", "m")


@PROTOCOLS
def test_leaderboard_pipelined_updates(keel, protocol):
    r = keel.client(protocol, decode_responses=True)
    expected = {}
    with r.pipeline(transaction=False) as p:
        for i in range(300):
            player = f"p{i % 50}"
            p.zincrby("game:{lb2}", i, player)
            expected[player] = expected.get(player, 0) + i
        p.execute()
    assert r.zcard("game:{lb2}") == 50
    top = sorted(expected.items(), key=lambda x: -x[1])[:3]
    assert pairs(r.zrevrange("game:{lb2}", 0, 2, withscores=True)) == [(m, float(s)) for m, s in top]


# -- session store --------------------------------------------------------------------

@PROTOCOLS
def test_session_store(keel, protocol):
    r = keel.client(protocol, decode_responses=True)
    data, meta = "session:{u42}:data", "session:{u42}:meta"
    assert r.hset(data, mapping={"user": "alice", "role": "admin", "cart": "[1,2]"}) == 3
    assert r.hset(meta, mapping={"created": "1700000000", "hits": "0"}) == 2
    assert r.expire(data, 1800) and r.expire(meta, 1800)
    assert 1790 < r.ttl(data) <= 1800
    assert r.hgetall(data) == {"user": "alice", "role": "admin", "cart": "[1,2]"}
    assert r.hincrby(meta, "hits", 1) == 1
    assert r.hsetnx(meta, "created", "1") == 0
    with r.pipeline(transaction=True) as p:
        p.hincrby(meta, "hits", 1).expire(data, 3600).expire(meta, 3600).hget(data, "user")
        assert p.execute() == [2, True, True, "alice"]
    assert r.ttl(meta) > 3590
    assert r.hdel(data, "role") == 1
    assert r.hdel(data, "role") == 0
    assert not r.hexists(data, "role")
    assert r.hmget(data, ["user", "role"]) == ["alice", None]
    assert r.hlen(data) == 2
    assert sorted(r.hkeys(data)) == ["cart", "user"]
    assert r.ttl(data) > 3590, "HDEL must keep the expiry"
    assert r.delete(data, meta) == 2
    assert r.exists(data, meta) == 0
    assert r.hgetall(data) == {}
    assert r.ttl(data) == -2


@PROTOCOLS
def test_session_expires(keel, protocol):
    r = keel.client(protocol, decode_responses=True)
    key = "session:{short}:data"
    r.hset(key, "user", "bob")
    assert r.pexpire(key, 300)
    assert 0 < r.pttl(key) <= 300
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and r.exists(key):
        time.sleep(0.05)
    assert r.exists(key) == 0, "session did not expire within 5 s"
    assert r.hgetall(key) == {}


@PROTOCOLS
def test_many_sessions_over_every_shard(keel, protocol):
    r = keel.client(protocol, decode_responses=True)
    with r.pipeline(transaction=False) as p:
        for i in range(64):
            p.hset(f"session:{{s{i}}}:data", mapping={"user": f"user{i}", "n": str(i)})
            p.expire(f"session:{{s{i}}}:data", 600)
        p.execute()
    assert len(set(r.scan_iter(match="session:{s*}:data", count=20))) == 64
    with r.pipeline(transaction=False) as p:
        for i in range(64):
            p.hgetall(f"session:{{s{i}}}:data")
        assert p.execute() == [{"user": f"user{i}", "n": str(i)} for i in range(64)]


# -- job queue ---------------------------------------------------------------------------

Q, P = "{jobs}:queue", "{jobs}:processing"


@PROTOCOLS
def test_job_queue_timeout_and_wakeup(keel, protocol):
    w = keel.client(protocol, decode_responses=True)
    t0 = time.monotonic()
    assert w.blmove("{jobs}:empty", "{jobs}:empty-p", 0.3, "RIGHT", "LEFT") is None
    assert 0.25 <= time.monotonic() - t0 < 3

    got = []
    t = threading.Thread(target=lambda: got.append(w.blmove(Q, P, 4, "RIGHT", "LEFT")))
    t.start()
    time.sleep(0.2)
    producer = keel.client(protocol, decode_responses=True)
    assert producer.lpush(Q, "wake-1") == 1
    t.join(6)
    assert not t.is_alive(), "BLMOVE did not return"
    assert got == ["wake-1"]
    assert producer.lrange(P, 0, -1) == ["wake-1"]
    assert producer.lrem(P, 1, "wake-1") == 1
    assert producer.exists(Q, P) == 0


@PROTOCOLS
def test_job_queue_serves_workers_in_blocking_order(keel, protocol):
    results = {}
    threads = []
    for name in ("a", "b", "c"):
        c = keel.client(protocol, decode_responses=True)
        c.ping()
        t = threading.Thread(target=lambda c=c, name=name: results.__setitem__(name, c.blmove(Q, P, 5, "RIGHT", "LEFT")))
        t.start()
        threads.append(t)
        time.sleep(0.1)
    producer = keel.client(protocol, decode_responses=True)
    assert producer.lpush(Q, "j1", "j2", "j3") == 3
    for t in threads:
        t.join(8)
    assert results == {"a": "j1", "b": "j2", "c": "j3"}
    assert producer.lrange(P, 0, -1) == ["j3", "j2", "j1"]


@PROTOCOLS
def test_job_queue_many_workers(keel, protocol):
    n_jobs, n_workers = 60, 3
    producing = threading.Event()
    producing.set()
    got = [[] for _ in range(n_workers)]
    errors = []

    def work(i):
        c = keel.client(protocol, decode_responses=True)
        try:
            while True:
                job = c.blmove(Q, P, 0.5, "RIGHT", "LEFT")
                if job is None:
                    if not producing.is_set():
                        return
                    continue
                got[i].append(int(job[4:]))
                if c.lrem(P, 1, job) != 1:
                    errors.append(f"LREM {job} did not remove it")
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n_workers)]
    for t in threads:
        t.start()
    time.sleep(0.1)
    producer = keel.client(protocol, decode_responses=True)
    for j in range(n_jobs):
        producer.lpush(Q, f"job-{j:03d}")
        if j % 4 == 0:
            time.sleep(0.005)
    producing.clear()
    for t in threads:
        t.join(15)
    assert not any(t.is_alive() for t in threads), "workers did not finish"
    assert errors == []
    assert sorted(x for g in got for x in g) == list(range(n_jobs)), "a job was lost or processed twice"
    for g in got:
        assert g, f"a worker got no job: {[len(x) for x in got]}"
        assert g == sorted(g), "a worker took jobs out of FIFO order"
    assert producer.llen(Q) == 0 and producer.llen(P) == 0


# -- rate limiter (async-ratelimiter 1.3.x) --------------------------------------------------

def limiter_get(r, key: str, max_: int, duration_ms: int) -> dict:
    """async-ratelimiter 1.3.13's get(): the same MULTI, the same arithmetic."""
    now = time.time() * 1e6  # microseconds, fractional as in the package
    start = now - duration_ms * 1000
    with r.pipeline(transaction=True) as p:
        p.zremrangebyscore(key, 0, repr(start))
        p.zcard(key)
        p.zadd(key, {repr(now): repr(now)})
        p.zrange(key, 0, 0)
        p.zrange(key, -max_, -max_)
        p.zremrangebyrank(key, 0, -(max_ + 1))
        p.pexpire(key, duration_ms)
        res = p.execute()
    count = res[1]
    oldest = float(res[3][0])
    in_range = float(res[4][0]) if res[4] else None
    reset_micro = (oldest if in_range is None else in_range) + duration_ms * 1000
    return {"remaining": max_ - count if count < max_ else 0, "reset": int(reset_micro // 1e6), "total": max_}


@PROTOCOLS
def test_rate_limiter(keel, protocol):
    r = keel.client(protocol, decode_responses=True)
    seen = [limiter_get(r, "limit:user-1", 5, 60000) for _ in range(7)]
    assert [x["remaining"] for x in seen] == [5, 4, 3, 2, 1, 0, 0]
    now = time.time()
    assert all(now + 55 < x["reset"] <= now + 61 for x in seen), (seen, now)
    assert r.zcard("limit:user-1") == 5
    assert 50000 < r.pttl("limit:user-1") <= 60000
    assert limiter_get(r, "limit:user-2", 5, 60000)["remaining"] == 5
    # the window slides
    assert [limiter_get(r, "limit:short", 2, 400)["remaining"] for _ in range(3)] == [2, 1, 0]
    time.sleep(0.6)
    assert limiter_get(r, "limit:short", 2, 400)["remaining"] == 2


@PROTOCOLS
def test_rate_limiter_concurrent_callers(keel, protocol):
    out, errors = [], []

    def caller():
        c = keel.client(protocol, decode_responses=True)
        try:
            for _ in range(6):
                out.append(limiter_get(c, "limit:burst", 10, 60000)["remaining"])
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    threads = [threading.Thread(target=caller) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert errors == []
    assert sorted(out, reverse=True) == [10, 9, 8, 7, 6, 5, 4, 3, 2, 1] + [0] * 14
    assert keel.client(protocol).zcard("limit:burst") == 10

"""SORT and SORT_RO through redis-py, beside a reference redis-server: numeric
and ALPHA sorts of lists, sets and sorted sets, LIMIT, BY (string keys, hash
fields, a constant that keeps a list's or sorted set's own order), GET (several,
`#`, hash fields), STORE (a list; an empty result deletes the destination), and
the errors. keel runs with 4 shards, so the pattern keys live on other shards
than the sorted key: a SORT with patterns holds every shard. Replies are
compared exactly with redis-server's.
"""

from __future__ import annotations

import random

import pytest
import redis

from conftest import _checked_stop, start_keel


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


def same(k, r, fn):
    a, b = outcome(lambda: fn(k)), outcome(lambda: fn(r))
    assert a == b
    return a


def both(keel, ref_redis):
    k, r = keel.client(), ref_redis.client()
    r.flushall()
    return k, r


def test_numeric_alpha_limit(keel, ref_redis):
    k, r = both(keel, ref_redis)
    same(k, r, lambda c: c.rpush("l", 3, 1, 2, "10", "2.5", " 4", "-inf", "0x10"))
    assert same(k, r, lambda c: c.sort("l")) == ("ok", [b"-inf", b"1", b"2", b"2.5", b"3", b" 4", b"10", b"0x10"])
    same(k, r, lambda c: c.sort("l", desc=True))
    same(k, r, lambda c: c.sort("l", alpha=True))
    same(k, r, lambda c: c.sort("l", alpha=True, desc=True, start=1, num=3))
    for start, num in [(0, 0), (2, 100), (100, 2), (-5, 3), (3, -1), (0, 1)]:
        same(k, r, lambda c: c.execute_command("SORT", "l", "LIMIT", start, num))
    same(k, r, lambda c: c.sadd("s", "b", "a", "c", "10", "9"))
    same(k, r, lambda c: c.sort("s", alpha=True))
    assert same(k, r, lambda c: c.sort("s"))[0] == "err"  # "a" is not a number
    same(k, r, lambda c: c.zadd("z", {"x": 3, "y": 1, "w": 2}))
    same(k, r, lambda c: c.sort("z", alpha=True, desc=True))
    same(k, r, lambda c: c.sort("nokey"))
    same(k, r, lambda c: c.execute_command("SORT_RO", "l", "LIMIT", 1, 2, "ALPHA"))


def test_by_and_get_patterns_across_shards(keel, ref_redis):
    k, r = both(keel, ref_redis)
    rng = random.Random(7)
    ids = [str(i) for i in range(40)]
    for c in (k, r):
        c.rpush("ids", *ids)
        c.sadd("idset", *ids)
        c.zadd("idz", {i: int(i) % 7 for i in ids})
    for i in ids:
        w, name, age = rng.randint(-50, 50), f"user{rng.randint(0, 10**6):07d}", rng.randint(1, 99)
        for c in (k, r):
            c.set(f"w_{i}", w)
            if int(i) % 5:
                c.hset(f"h_{i}", mapping={"name": name, "age": age})
    for key in ("ids", "idset", "idz"):
        same(k, r, lambda c: c.sort(key, by="w_*"))
        same(k, r, lambda c: c.sort(key, by="w_*", desc=True, get=["#", "h_*->name", "w_*"]))
        same(k, r, lambda c: c.sort(key, by="h_*->age", start=5, num=10, get=["h_*->age", "#"]))
        same(k, r, lambda c: c.sort(key, by="w_*", get="nostar"))
        same(k, r, lambda c: c.execute_command("SORT_RO", key, "BY", "w_*", "GET", "h_*->name", "GET", "h_*->"))
    # A constant BY keeps a list's and a sorted set's order (DESC reverses it).
    for key in ("ids", "idz"):
        same(k, r, lambda c: c.sort(key, by="nosort"))
        same(k, r, lambda c: c.sort(key, by="nosort", desc=True, start=3, num=5, get=["#", "w_*"]))
    # A non-number weight fails the whole sort.
    same(k, r, lambda c: c.set("w_3", "abc"))
    assert same(k, r, lambda c: c.sort("ids", by="w_*")) == ("err", "One or more scores can't be converted into double")
    # ...but a missing or non-string weight counts as 0.
    same(k, r, lambda c: c.delete("w_3"))
    same(k, r, lambda c: c.rpush("w_4", "x"))
    same(k, r, lambda c: c.sort("ids", by="w_*", get="#"))


def test_store(keel, ref_redis):
    k, r = both(keel, ref_redis)
    for c in (k, r):
        c.rpush("src", *"31524")
        c.mset({f"n_{i}": f"name{i}" for i in "1234"})
        c.sadd("set", *"dcba")
        c.expire("dst", 100)
    assert same(k, r, lambda c: c.sort("src", store="dst")) == ("ok", 5)
    assert same(k, r, lambda c: c.lrange("dst", 0, -1))[1] == [b"1", b"2", b"3", b"4", b"5"]
    assert same(k, r, lambda c: c.sort("src", get=["#", "n_*"], store="dst", desc=True)) == ("ok", 10)
    same(k, r, lambda c: c.lrange("dst", 0, -1))  # "" for the missing n_5
    same(k, r, lambda c: c.ttl("dst"))
    # A set with a constant BY is sorted anyway when stored.
    assert same(k, r, lambda c: c.sort("set", by="nosort", store="dst2")) == ("ok", 4)
    assert same(k, r, lambda c: c.lrange("dst2", 0, -1))[1] == [b"a", b"b", b"c", b"d"]
    # The destination may be the source; an empty result deletes it.
    same(k, r, lambda c: c.sort("src", store="src", alpha=True, desc=True))
    same(k, r, lambda c: c.lrange("src", 0, -1))
    assert same(k, r, lambda c: c.sort("src", start=10, num=1, store="dst")) == ("ok", 0)
    assert same(k, r, lambda c: c.exists("dst")) == ("ok", 0)
    # STORE over a key of another type replaces it.
    same(k, r, lambda c: c.set("str", "x"))
    same(k, r, lambda c: c.sort("set", alpha=True, store="str"))
    same(k, r, lambda c: c.type("str"))


def test_errors(keel, ref_redis):
    k, r = both(keel, ref_redis)
    same(k, r, lambda c: c.set("str", "x"))
    same(k, r, lambda c: c.rpush("l", "1"))
    for args in [("str",), ("l", "LIMIT", "1"), ("l", "LIMIT", "x", "1"), ("l", "BY"), ("l", "GET"),
                 ("l", "STORE"), ("l", "bogus"), ("l", "ASC", "DESC", "ALPHA", "LIMIT", "0", "1", "x"),
                 ("str", "bogus"), ("l", "LIMIT", "1", "9223372036854775808")]:
        same(k, r, lambda c: c.execute_command("SORT", *args))
        same(k, r, lambda c: c.execute_command("SORT_RO", *args))
    assert same(k, r, lambda c: c.execute_command("SORT_RO", "l", "STORE", "d")) == ("err", "syntax error")
    same(k, r, lambda c: c.execute_command("SORT"))


def test_patterns_in_multi_and_scripts(keel, ref_redis):
    """Inside MULTI (EXEC holds every shard) and in scripts, the patterns'
    keys on other shards are read as well."""
    k, r = both(keel, ref_redis)
    for c in (k, r):
        c.rpush("ids", *"abcdef")
        for i, x in enumerate("fedcba"):
            c.set(f"w_{x}", i)
    for c in (k, r):
        p = c.pipeline(transaction=True)
        p.sort("ids", by="w_*", get=["#", "w_*"])
        p.sort("ids", by="w_*", store="out")
        p.lrange("out", 0, -1)
        p.execute()
    same(k, r, lambda c: c.lrange("out", 0, -1))
    script = "return redis.call('SORT', KEYS[1], 'BY', 'w_*', 'GET', '#', 'GET', 'w_*')"
    same(k, r, lambda c: c.eval(script, 1, "ids"))
    same(k, r, lambda c: c.eval("return redis.call('SORT', 'ids', 'BY', 'w_*', 'STORE', 'out2')", 0))
    same(k, r, lambda c: c.lrange("out2", 0, -1))


def test_patterns_read_one_consistent_state(keel):
    """A SORT with patterns holds every shard: while another client moves
    amounts between weight keys of different shards with atomic MSETs (the
    total stays 1000), every SORT ... GET sees a total of exactly 1000."""
    import threading

    c = keel.client()
    names = [f"acct{i}" for i in range(8)]
    c.rpush("accts", *names)
    c.mset({f"bal_{n}": 125 for n in names})
    stop = threading.Event()

    def mover():
        w = keel.client()
        rng = random.Random(5)
        bal = {n: 125 for n in names}
        while not stop.is_set():
            a, b = rng.sample(names, 2)
            amount = rng.randint(0, bal[a])
            bal[a] -= amount
            bal[b] += amount
            w.mset({f"bal_{a}": bal[a], f"bal_{b}": bal[b]})

    t = threading.Thread(target=mover)
    t.start()
    try:
        for i in range(300):
            if i % 2:
                got = c.sort("accts", by="nosort", get="bal_*")
            else:
                got = c.sort("accts", by="bal_*", get="bal_*")
            assert sum(int(x) for x in got) == 1000
        for _ in range(50):
            assert c.sort("accts", by="bal_*", get="bal_*", store="snap") == 8
            assert sum(int(x) for x in c.lrange("snap", 0, -1)) == 1000
    finally:
        stop.set()
        t.join()


def test_stored_results_survive_a_restart(tmp_path):
    """SORT ... STORE is logged as the list it wrote (whichever shards the
    patterns read): after SIGKILL the stored lists are back as they were."""
    s = start_keel(tmp_path, shards=4, extra_args=["--appendonly", "yes", "--appendfsync", "always"])
    try:
        c = s.client()
        c.rpush("ids", *range(30))
        c.sadd("tags", *"qwertyuiop")
        for i in range(30):
            c.set(f"w_{i}", (i * 7) % 30)
            c.hset(f"h_{i}", "name", f"n{(i * 11) % 30:02d}")
        assert c.sort("ids", by="w_*", get=["#", "h_*->name"], store="by_weight") == 60
        assert c.sort("ids", by="h_*->name", alpha=True, desc=True, store="by_name") == 30
        assert c.sort("tags", by="nosort", store="tags_sorted") == 10
        assert c.sort("ids", start=100, num=1, store="by_name") == 0  # deletes it
        want = {k: c.lrange(k, 0, -1) for k in ("by_weight", "tags_sorted")}
        c.close()
        s.proc.kill()
        s.proc.wait(10)
        s.start()
        c = s.client()
        assert {k: c.lrange(k, 0, -1) for k in want} == want
        assert c.exists("by_name") == 0
    finally:
        _checked_stop(s)

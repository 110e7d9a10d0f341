"""Bitmaps through redis-py: the API an application calls (setbit, bitcount,
bitpos, bitop, bitfield), a daily-active-users bitmap that grows one user at a
time, BITOP over keys on different shards, and bitmaps that survive a SIGKILL.

Every reply is also checked against redis-server where one runs beside keel
(KEEL_TEST_TARGET=redis runs the same file against redis-server only); the
random differential streams are in test_differential.py (family bitmaps).
"""

from __future__ import annotations

import pytest

from conftest import TARGET, _checked_stop, start_keel


@pytest.fixture
def server(tmp_path):
    s = start_keel(tmp_path, shards=4, extra_args=["--appendonly", "yes", "--appendfsync", "always"])
    yield s
    _checked_stop(s)


def test_the_bitmap_api_through_redis_py(server):
    c = server.client()
    assert c.setbit("b", 7, 1) == 0
    assert c.setbit("b", 7, 1) == 1
    assert c.getbit("b", 7) == 1 and c.getbit("b", 100) == 0
    assert c.get("b") == b"\x01"
    c.set("s", "foobar")
    assert c.bitcount("s") == 26
    assert c.bitcount("s", 1, 1) == 6
    assert c.bitcount("s", 5, 30, "BIT") == 17
    assert c.bitpos("s", 1) == 1
    assert c.bitpos("s", 0, 2, -1) == 16
    assert c.bitpos("s", 1, 7, 15, "BIT") == 9
    assert c.bitpos("missing", 0) == 0 and c.bitpos("missing", 1) == -1
    c.set("{t}a", b"\xff\x0f")
    c.set("{t}b", b"\x0f")
    assert c.bitop("AND", "{t}and", "{t}a", "{t}b") == 2
    assert c.get("{t}and") == b"\x0f\x00"
    assert c.bitop("NOT", "{t}not", "{t}b") == 1
    assert c.get("{t}not") == b"\xf0"
    bf = c.bitfield("f")
    bf.set("u8", 0, 200).incrby("u8", 0, 100).overflow("SAT").incrby("u8", 0, 100).get("i8", 0)
    assert bf.execute() == [0, 44, 144, -112]
    fail = c.bitfield("f", default_overflow="FAIL").incrby("u8", 0, 200)
    assert fail.execute() == [None]
    assert c.bitfield_ro("f", "u4", 0, items=[("u4", 4)]) == [9, 0]
    with pytest.raises(Exception, match="bit offset is not an integer or out of range"):
        c.setbit("b", -1, 1)
    with pytest.raises(Exception, match="WRONGTYPE"):
        c.lpush("l", "x")
        c.setbit("l", 1, 1)


def test_a_daily_active_users_bitmap_grows_one_user_at_a_time(server):
    c = server.client()
    p = c.pipeline(transaction=False)
    users = range(0, 200_000, 3)
    for u in users:
        p.setbit("dau", u, 1)
    assert p.execute()[:3] == [0, 0, 0]
    assert c.bitcount("dau") == len(users)
    assert c.strlen("dau") == (max(users) >> 3) + 1
    assert c.getbit("dau", 3) == 1 and c.getbit("dau", 4) == 0
    # The string stays a string for every string command.
    c.append("dau", b"\xff")
    assert c.bitcount("dau") == len(users) + 8
    assert c.type("dau") == b"string"


def test_bitop_over_keys_on_every_shard(server):
    c = server.client()
    keys = [f"day:{d}" for d in range(8)]
    for d, k in enumerate(keys):
        for u in range(d, 64, 8):
            c.setbit(k, u, 1)
        c.setbit(k, 100, 1)
    assert c.bitop("OR", "week", *keys) == 13
    assert c.bitcount("week") == 65
    assert c.bitop("AND", "all", *keys) == 13
    assert c.bitcount("all") == 1 and c.getbit("all", 100) == 1
    assert c.bitop("XOR", "none", "missing1", "missing2") == 0
    assert c.exists("none") == 0


@pytest.mark.skipif(TARGET == "redis", reason="keel's restart after SIGKILL")
def test_bitmaps_survive_sigkill(server):
    c = server.client()
    for u in range(0, 5000, 7):
        c.setbit("seen", u, 1)
    c.bitfield("ctr").incrby("u16", "#3", 41).execute()
    c.setrange("seen", 2000, b"tail")
    want = c.get("seen")
    c.close()
    server.proc.kill()
    server.proc.wait(10)
    server.start()
    c = server.client()
    assert c.get("seen") == want
    assert c.bitfield_ro("ctr", "u16", "#3") == [41]


def test_setbit_and_bitfield_count_a_change_only_when_the_value_changes(server, ref_redis):
    """INFO's rdb_changes_since_last_save moves as redis-server's does: a new
    key always counts, a SETBIT or BITFIELD SET to the value already there
    does not (and writes nothing to the log)."""
    def changes(c):
        return c.info("persistence")["rdb_changes_since_last_save"]

    k, r = server.client(), ref_redis.client()
    steps = [
        ("setbit", ("foo", 0, 0)), ("bitfield_set", ("foo2", 0, 0)),  # new keys
        ("setbit", ("foo", 0, 0)), ("bitfield_set", ("foo2", 0, 0)),  # no change
        ("setbit", ("foo", 0, 1)), ("setbit", ("foo", 0, 1)),
        ("bitfield_set", ("foo2", 0, 1)), ("bitfield_set", ("foo2", 0, 1)),
        ("setbit", ("foo", 100, 0)),  # grows the string
    ]
    for c in (k, r):
        c.delete("foo", "foo2")
    deltas = {}
    for name, c in (("keel", k), ("redis", r)):
        seen = []
        for op, (key, off, val) in steps:
            before = changes(c)
            if op == "setbit":
                c.setbit(key, off, val)
            else:
                c.bitfield(key).set("i5", off, val).execute()
            seen.append(changes(c) - before)
        deltas[name] = seen
    assert deltas["keel"] == deltas["redis"] == [1, 1, 0, 0, 1, 0, 1, 0, 1]
    assert k.get("foo") == r.get("foo") and k.get("foo2") == r.get("foo2")

"""Keyspace notifications beside a reference redis-server.

For a broad list of command sequences, a connection subscribes to
`__key*@*__:*` on keel and on redis-server, another connection runs the
same commands on both, and the messages each subscriber received are
compared exactly (channel, payload, order). With 4 shards the subscriber
and the writer are separate connections, so events cross cores.

Also: expired events (lazy and active), evicted events, `new` (class n),
key misses (class m), notifications off, and `notify-keyspace-events`
parsing and its canonical CONFIG GET form beside redis-server.
"""

from __future__ import annotations

import socket
import time

import pytest

from conftest import _checked_stop, start_keel
from respclient import RespConnection

PATTERN = "__key*@*__:*"
END = "__keyevent@15__:zz-end"


@pytest.fixture(scope="module", params=[1, 4], ids=["shards1", "shards4"])
def keel(request, tmp_path_factory):
    s = start_keel(tmp_path_factory.mktemp(f"keel-notify{request.param}"), shards=request.param)
    yield s
    _checked_stop(s)


@pytest.fixture(scope="module", autouse=True)
def reset_reference(ref_redis):
    """The reference server is shared by the session: leave it as found."""
    yield
    config_events(ref_redis, "")


def config_events(server, classes: str):
    with server.raw() as c:
        assert c.call("CONFIG", "SET", "notify-keyspace-events", classes) == ("simple", b"OK")


class Subscriber:
    def __init__(self, server):
        self.c = server.raw()
        self.c.send("PSUBSCRIBE", PATTERN)
        r = self.c.read_reply()
        assert r[0] == "array" and r[1][0] == ("bulk", b"psubscribe"), r

    def next(self, timeout: float):
        self.c.sock.settimeout(timeout)
        try:
            r = self.c.read_any()
        except (socket.timeout, TimeoutError):
            return None
        finally:
            self.c.sock.settimeout(10)
        items = r[1]
        assert items[0] == ("bulk", b"pmessage"), r
        return (items[2][1].decode(), items[3][1].decode())

    def until_end(self):
        """Every message up to the END marker (redis-server: one core, so
        PUBLISH after the commands arrives after their events)."""
        out = []
        while True:
            m = self.next(5)
            assert m is not None, f"no END marker; got {out}"
            if m[0] == END:
                return out
            out.append(m)

    def count(self, n: int, settle: float = 0.3):
        """`n` messages, then whatever else arrives within `settle`."""
        out = []
        deadline = time.time() + 5
        while len(out) < n and time.time() < deadline:
            m = self.next(max(0.01, deadline - time.time()))
            if m is not None and m[0] != END:
                out.append(m)
        while True:
            m = self.next(settle)
            if m is None:
                return out
            if m[0] != END:
                out.append(m)

    def close(self):
        self.c.close()


def run(server, commands, db: int = 0):
    replies = []
    with server.raw() as c:
        if db:
            c.call("SELECT", db)
        for cmd in commands:
            replies.append(c.call(*cmd))
    return replies


def events_of(server, commands, classes="KEA", expect=None):
    config_events(server, classes)
    sub = Subscriber(server)
    try:
        replies = run(server, commands)
        with server.raw() as c:
            c.call("PUBLISH", END, "x")
        if expect is None:
            msgs = sub.until_end()
        else:
            msgs = sub.count(expect)
        return replies, msgs
    finally:
        sub.close()


def compare(keel, ref, commands, classes="KEA", setup=()):
    for s in (keel, ref):
        s.flush()
        run(s, setup)
    ref_replies, ref_msgs = events_of(ref, commands, classes)
    keel_replies, keel_msgs = events_of(keel, commands, classes, expect=len(ref_msgs))
    assert keel_replies == ref_replies
    assert keel_msgs == ref_msgs
    return ref_msgs


SCRIPTS = {
    "strings": [
        ("SET", "s", "1"), ("SET", "s", "2", "EX", "100"), ("SET", "s", "3", "KEEPTTL"),
        ("SET", "s", "4", "NX"), ("SET", "s2", "x", "PX", "100000", "GET"), ("SETNX", "s3", "a"),
        ("SETNX", "s3", "b"), ("SETEX", "s4", "100", "v"), ("PSETEX", "s5", "100000", "v"),
        ("GETSET", "s", "9"), ("MSET", "m1", "a", "m2", "b"), ("MSETNX", "m3", "a", "m4", "b"),
        ("MSETNX", "m3", "a", "m5", "b"), ("APPEND", "ap", "x"), ("APPEND", "ap", "yz"),
        ("SETRANGE", "sr", "3", "abc"), ("INCR", "n"), ("INCRBY", "n", "5"), ("DECR", "n"),
        ("DECRBY", "n", "2"), ("INCRBYFLOAT", "f", "1.5"), ("GETDEL", "n"), ("GETDEL", "nope"),
        ("GETEX", "s", "EX", "50"), ("GETEX", "s", "PERSIST"), ("GETEX", "s", "PERSIST"),
        ("GETEX", "s4", "PXAT", "1"), ("SETBIT", "b", "7", "1"), ("SETBIT", "b", "7", "1"),
        ("BITFIELD", "bf", "SET", "u8", "0", "200"), ("PFADD", "h", "a", "b"), ("PFADD", "h", "a"),
        ("INCR", "s"),
    ],
    "generic": [
        ("SET", "a", "1"), ("SET", "b", "2"), ("DEL", "a", "b", "c"), ("SET", "k", "v"),
        ("EXPIRE", "k", "100"), ("PEXPIRE", "k", "100000"), ("EXPIREAT", "k", "99999999999"),
        ("PERSIST", "k"), ("PERSIST", "k"), ("EXPIRE", "k", "-1"), ("SET", "k", "v"),
        ("PEXPIREAT", "k", "1"), ("SET", "{t}x", "1"), ("RENAME", "{t}x", "{t}y"),
        ("SET", "{t}z", "2"), ("RENAME", "{t}y", "{t}z"), ("RENAMENX", "{t}z", "{t}w"),
        ("RENAMENX", "{t}w", "{t}w"), ("COPY", "{t}w", "{t}c"), ("COPY", "{t}w", "{t}c"),
        ("COPY", "{t}w", "{t}c", "REPLACE"), ("UNLINK", "{t}c", "{t}w"), ("SET", "mv", "1"),
        ("MOVE", "mv", "3"), ("SET", "mv", "1"), ("MOVE", "mv", "3"), ("EXPIRE", "nokey", "10"),
    ],
    "lists": [
        ("LPUSH", "l", "a", "b"), ("RPUSH", "l", "c"), ("LPUSHX", "l", "d"), ("RPUSHX", "nl", "d"),
        ("LINSERT", "l", "BEFORE", "a", "z"), ("LINSERT", "l", "BEFORE", "nope", "z"),
        ("LSET", "l", "0", "q"), ("LREM", "l", "0", "nope"), ("LREM", "l", "0", "z"),
        ("LTRIM", "l", "0", "10"), ("LTRIM", "l", "0", "1"), ("LPOP", "l"), ("RPOP", "l"),
        ("RPUSH", "{l}a", "1", "2", "3"), ("LMOVE", "{l}a", "{l}b", "LEFT", "RIGHT"),
        ("RPOPLPUSH", "{l}a", "{l}b"), ("LMOVE", "{l}b", "{l}b", "LEFT", "LEFT"),
        ("LMOVE", "{l}a", "{l}b", "RIGHT", "LEFT"), ("LMPOP", "2", "{l}x", "{l}b", "RIGHT", "COUNT", "2"),
        ("LMPOP", "1", "{l}b", "LEFT", "COUNT", "5"), ("RPUSH", "{b}l", "1"), ("BLPOP", "{b}l", "0"),
        ("RPUSH", "{b}l", "1", "2"), ("BRPOP", "{b}l", "0"), ("BLMOVE", "{b}l", "{b}l2", "LEFT", "LEFT", "0"),
        ("LTRIM", "{b}l2", "1", "0"), ("RPUSH", "p", "1", "2"), ("LPOP", "p", "5"),
    ],
    "hashes": [
        ("HSET", "h", "a", "1", "b", "2"), ("HSET", "h", "a", "1"), ("HMSET", "h", "c", "3"),
        ("HSETNX", "h", "a", "x"), ("HSETNX", "h", "d", "x"), ("HINCRBY", "h", "n", "2"),
        ("HINCRBYFLOAT", "h", "f", "1.5"), ("HDEL", "h", "nope"), ("HDEL", "h", "a", "b"),
        ("HDEL", "h", "c", "d", "n", "f"), ("HINCRBYFLOAT", "h2", "f", "0"),
    ],
    "sets": [
        ("SADD", "s", "a", "b", "c"), ("SADD", "s", "a"), ("SREM", "s", "nope"), ("SREM", "s", "a", "b"),
        ("SPOP", "s"), ("SADD", "{s}1", "a", "b"), ("SADD", "{s}2", "b", "c"),
        ("SMOVE", "{s}1", "{s}2", "a"), ("SMOVE", "{s}1", "{s}2", "b"), ("SMOVE", "{s}2", "{s}3", "c"),
        ("SMOVE", "{s}2", "{s}2", "a"), ("SINTERSTORE", "{s}d", "{s}2", "{s}3"),
        ("SUNIONSTORE", "{s}d", "{s}2", "{s}3"), ("SDIFFSTORE", "{s}d", "{s}2", "{s}2"),
        ("SDIFFSTORE", "{s}d", "{s}2", "{s}2"), ("SREM", "{s}2", "a"), ("SPOP", "{s}2", "10"), ("SPOP", "{s}3", "0"),
    ],
    "zsets": [
        ("ZADD", "z", "1", "a", "2", "b", "3", "c"), ("ZADD", "z", "1", "a"), ("ZADD", "z", "INCR", "5", "a"),
        ("ZADD", "z", "NX", "9", "a"), ("ZINCRBY", "z", "1", "b"), ("ZREM", "z", "nope"), ("ZREM", "z", "c"),
        ("ZADD", "z", "10", "d", "11", "e", "12", "f"), ("ZREMRANGEBYSCORE", "z", "10", "10"),
        ("ZREMRANGEBYRANK", "z", "0", "0"), ("ZREMRANGEBYLEX", "z", "-", "(a"), ("ZPOPMIN", "z"),
        ("ZPOPMAX", "z"), ("ZADD", "{z}1", "1", "a", "2", "b"), ("ZADD", "{z}2", "1", "b"),
        ("ZUNIONSTORE", "{z}d", "2", "{z}1", "{z}2"), ("ZINTERSTORE", "{z}d", "2", "{z}1", "{z}2"),
        ("ZDIFFSTORE", "{z}d", "1", "{z}2"), ("ZINTERSTORE", "{z}d", "2", "{z}1", "{z}none"),
        ("ZRANGESTORE", "{z}r", "{z}1", "0", "-1"), ("ZMPOP", "1", "{z}1", "MIN", "COUNT", "5"),
        ("BZPOPMAX", "{z}2", "0"), ("ZADD", "zz", "1", "a"), ("BZPOPMIN", "zz", "0"),
        ("GEOADD", "g", "13.361389", "38.115556", "Palermo"),
        ("GEOSEARCHSTORE", "{g}d", "{g}s", "FROMLONLAT", "0", "0", "BYRADIUS", "1", "km"),
    ],
    "edges": [
        ("ZADD", "z", "GT", "CH", "1", "a"), ("ZADD", "z", "GT", "0", "a"), ("ZADD", "z", "XX", "5", "b"),
        ("ZADD", "z", "LT", "CH", "0", "a"), ("ZINCRBY", "zn", "2", "m"), ("HSETNX", "h", "f", "1"),
        ("HSETNX", "h", "f", "2"), ("SETRANGE", "s", "0", ""), ("SETRANGE", "s2", "2", ""), ("SET", "s", "ab"),
        ("SETRANGE", "s", "0", ""), ("APPEND", "s", ""), ("APPEND", "s3", ""), ("INCRBYFLOAT", "s4", "0"),
        ("LPUSH", "l", "a"), ("LPOP", "l", "0"), ("RPOP", "l", "0"), ("SADD", "st", "a"), ("SPOP", "st", "0"),
        ("SREM", "st", "a", "b"), ("SET", "{r}k", "v"), ("RENAME", "{r}k", "{r}k"), ("COPY", "{r}k", "{r}k"),
        ("COPY", "{r}k", "{r}c", "DB", "4"), ("SET", "mv", "1"), ("SELECT", "2"), ("SET", "mv", "2"),
        ("SELECT", "0"), ("MOVE", "mv", "2"), ("SET", "ex", "1"), ("EXPIRE", "ex", "100", "NX"),
        ("EXPIRE", "ex", "100", "NX"), ("EXPIRE", "ex", "50", "GT"), ("EXPIRE", "ex", "50", "LT"),
        ("PEXPIRE", "ex", "0"), ("SET", "ex", "1", "EXAT", "1"), ("SET", "ex", "1", "PXAT", "99999999999999"),
        ("GETEX", "ex", "EX", "10"), ("GETEX", "ex"), ("GETEX", "ex", "PERSIST"), ("SET", "ex", "x", "XX", "GET"),
        ("SET", "nx", "x", "NX", "GET"), ("LPUSH", "wl", "x"), ("SET", "wl", "y", "GET"),
        ("PFADD", "{p}1", "a"), ("PFADD", "{p}2", "b"), ("PFMERGE", "{p}3", "{p}1", "{p}2"), ("PFMERGE", "{p}3", "{p}1"),
        ("PFADD", "{p}4"), ("PFADD", "{p}4"), ("BITFIELD", "bf", "GET", "u8", "0"), ("BITFIELD", "bf", "INCRBY", "u8", "0", "1"),
        ("SET", "{b}1", "a"), ("BITOP", "AND", "{b}d", "{b}1", "{b}none"), ("BITOP", "AND", "{b}d", "{b}none"),
        ("LMPOP", "1", "nolist", "LEFT"), ("ZMPOP", "1", "noz", "MIN"), ("ZADD", "{q}z", "1", "a"),
        ("ZRANGESTORE", "{q}d", "{q}z", "0", "0"), ("ZRANGESTORE", "{q}d", "{q}z", "5", "6"),
        ("LINSERT", "l2", "BEFORE", "a", "b"), ("RPUSH", "l2", "a"), ("LINSERT", "l2", "AFTER", "a", "b"),
        ("LSET", "l2", "-1", "c"), ("LREM", "l2", "-5", "a"), ("LTRIM", "l2", "5", "10"),
        ("HINCRBYFLOAT", "hf", "f", "1e3"), ("HDEL", "hf", "f"), ("DEL", "nothing"),
        ("SADD", "{u}a", "1"), ("SINTERSTORE", "{u}d", "{u}a", "{u}b"), ("SUNIONSTORE", "{u}d", "{u}a", "{u}b"),
        ("SINTERSTORE", "{u}d", "{u}a", "{u}b"),
        ("RPUSH", "{o}l", "3", "1", "2"), ("SORT", "{o}l", "STORE", "{o}d"), ("SORT", "{o}l", "STORE", "{o}d"),
        ("SORT", "{o}none", "STORE", "{o}d"), ("SORT", "{o}l", "BY", "nosort", "STORE", "{o}e"),
        ("SORT_RO", "{o}l"), ("SORT", "{o}missing"), ("SET", "sw", "1"), ("SWAPDB", "0", "1"), ("SWAPDB", "0", "1"),
    ],
    "reads_on_missing_keys": [
        ("GET", "x"), ("EXISTS", "x", "y"), ("TTL", "x"), ("TYPE", "x"), ("HGET", "x", "f"),
        ("LRANGE", "x", "0", "1"), ("STRLEN", "x"), ("SMEMBERS", "x"), ("ZSCORE", "x", "m"), ("MGET", "x", "y"),
        ("OBJECT", "ENCODING", "x"), ("GETRANGE", "x", "0", "1"), ("HGETALL", "x"), ("SCARD", "x"), ("PTTL", "x"),
        ("GETEX", "x"), ("GETDEL", "x"), ("LPOP", "x"), ("HEXISTS", "x", "a"), ("TOUCH", "x", "q"),
        ("SINTER", "{y}1", "{y}2"), ("SINTERCARD", "2", "{y}1", "{y}2"), ("SUNION", "{y}1", "{y}2"),
        ("SDIFF", "{y}1", "{y}2"), ("ZUNION", "2", "{y}1", "{y}2"), ("ZINTER", "2", "{y}1", "{y}2"),
        ("LCS", "{y}1", "{y}2"), ("MEMORY", "USAGE", "y"), ("SRANDMEMBER", "y"), ("ZRANDMEMBER", "y"),
        ("HRANDFIELD", "y"), ("PFCOUNT", "{y}1", "{y}2"), ("GETBIT", "y", "1"), ("BITCOUNT", "y"), ("BITPOS", "y", "1"),
        ("GEOPOS", "y", "a"), ("GEODIST", "y", "a", "b"), ("LINDEX", "y", "0"), ("LPOS", "y", "a"),
        ("ZRANGE", "y", "0", "1"), ("SISMEMBER", "y", "a"), ("SMISMEMBER", "y", "a"), ("ZMSCORE", "y", "a"),
        ("HMGET", "y", "a"), ("HSTRLEN", "y", "a"), ("EXPIRETIME", "y"), ("SSCAN", "y", "0"),
        ("SINTERSTORE", "{y}d", "{y}1", "{y}2"), ("SET", "x", "1", "GET"),
    ],
    "streams": [
        ("XADD", "x", "1-1", "f", "v"), ("XADD", "x", "2-1", "f", "v"), ("XADD", "x", "MAXLEN", "1", "3-1", "f", "v"),
        ("XADD", "x", "MAXLEN", "5", "4-1", "f", "v"), ("XADD", "nox", "NOMKSTREAM", "1-1", "f", "v"),
        ("XTRIM", "x", "MAXLEN", "10"), ("XTRIM", "x", "MAXLEN", "1"), ("XDEL", "x", "9-9"), ("XDEL", "x", "4-1"),
        ("XSETID", "x", "10-1"), ("XGROUP", "CREATE", "x", "g", "$"), ("XGROUP", "CREATE", "y", "g", "$", "MKSTREAM"),
        ("XGROUP", "SETID", "x", "g", "0"), ("XGROUP", "CREATECONSUMER", "x", "g", "c"),
        ("XGROUP", "CREATECONSUMER", "x", "g", "c"), ("XGROUP", "DELCONSUMER", "x", "g", "c"),
        ("XGROUP", "DESTROY", "x", "g"), ("XGROUP", "DESTROY", "x", "g"), ("DEL", "y"),
    ],
    # Consumers created by reads and claims (Redis's stream events test).
    "stream_consumers": [
        ("XGROUP", "CREATE", "s", "g", "$", "MKSTREAM"), ("XGROUP", "CREATECONSUMER", "s", "g", "Bob"),
        ("XADD", "s", "1", "f", "A"), ("XREADGROUP", "GROUP", "g", "Alice", "STREAMS", "s", ">"),
        ("XREADGROUP", "GROUP", "g", "Alice", "STREAMS", "s", ">"), ("XREADGROUP", "GROUP", "g", "Zed", "STREAMS", "s", ">"),
        ("XCLAIM", "s", "g", "Mike", "0", "1-0", "FORCE"), ("XGROUP", "DELCONSUMER", "s", "g", "Lee"),
        ("XAUTOCLAIM", "s", "g", "Bob", "0", "1-0"), ("XAUTOCLAIM", "s", "g", "Ann", "0", "1-0"),
        ("XGROUP", "DELCONSUMER", "s", "g", "Bob"),
    ],
    "errors_and_reads": [
        ("SET", "s", "v"), ("LPUSH", "s", "x"), ("GET", "s"), ("GET", "nope"), ("HSET", "s", "a", "b"),
        ("INCR", "s"), ("LLEN", "s"), ("EXISTS", "s"), ("TTL", "s"),
    ],
    "transaction": [
        ("MULTI",), ("SET", "a", "1"), ("LPUSH", "l", "x"), ("DEL", "a"), ("EXEC",),
        ("EVAL", "redis.call('set', KEYS[1], 'v'); redis.call('del', KEYS[1])", "1", "ev"),
    ],
}


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_command_events_match_redis(keel, ref, name):
    msgs = compare(keel, ref, SCRIPTS[name], "KEAnm")
    assert msgs, "the script must produce events"


@pytest.mark.parametrize("classes", ["K$", "Eg", "Kl", "Els", "Ehz", "KEn", "KEA", "KEAn", "KEm", "E$m"])
def test_class_selection_matches_redis(keel, ref, classes):
    cmds = SCRIPTS["strings"][:12] + SCRIPTS["lists"][:8] + SCRIPTS["sets"][:5] + [
        ("GET", "missing"), ("HSET", "h", "a", "1"), ("ZADD", "z", "1", "m"), ("DEL", "h", "z"),
    ]
    compare(keel, ref, cmds, classes)


def test_off_and_no_channel_letters_send_nothing(keel, ref):
    for classes in ["", "A", "g$lshzxe", "KE"]:
        assert compare(keel, ref, [("SET", "a", "1"), ("DEL", "a"), ("LPUSH", "l", "1")], classes) == []


def test_cross_shard_multi_key_commands(keel, ref):
    # Keys on different shards (with --shards 4): DEL and MSET are split,
    # RENAME and COPY move a key between shards, SUNIONSTORE gathers.
    cmds = [("MSET", "a", "1", "b", "2", "c", "3"), ("DEL", "a", "b", "nope"),
            ("RENAME", "c", "d"), ("COPY", "d", "e"), ("SADD", "s1", "x"), ("SADD", "s2", "y"),
            ("SUNIONSTORE", "dst", "s1", "s2"), ("SMOVE", "s1", "s2", "x"),
            ("RPUSH", "la", "1"), ("LMOVE", "la", "lb", "LEFT", "LEFT")]
    for s in (keel, ref):
        s.flush()
    _, ref_msgs = events_of(ref, cmds)
    _, keel_msgs = events_of(keel, cmds, expect=len(ref_msgs))
    # One command's events on several shards may interleave differently;
    # every event is there, and per key in order.
    assert sorted(keel_msgs) == sorted(ref_msgs)
    for key in ["a", "b", "c", "d", "e", "dst", "s1", "s2", "la", "lb"]:
        ch = f"__keyspace@0__:{key}"
        assert [m for m in keel_msgs if m[0] == ch] == [m for m in ref_msgs if m[0] == ch], key


def test_other_database(keel, ref):
    for s in (keel, ref):
        s.flush()
    msgs = []
    for s in (ref, keel):
        config_events(s, "KEA")
        sub = Subscriber(s)
        run(s, [("SET", "x", "1"), ("LPUSH", "l", "a"), ("DEL", "x")], db=5)
        msgs.append(sub.count(6 if s is keel else 6))
        sub.close()
    assert msgs[0] == msgs[1]
    assert ("__keyspace@5__:x", "set") in msgs[0]


def expired_events(server):
    config_events(server, "KEx")
    sub = Subscriber(server)
    try:
        run(server, [("SET", "lazy", "v", "PX", "50"), ("SET", "active", "v", "PX", "50")])
        time.sleep(0.2)
        run(server, [("GET", "lazy")])  # lazy expiry, if active has not run yet
        got = sub.count(4, settle=0.5)
    finally:
        sub.close()
    return sorted(got)


def test_expired_events(keel, ref):
    for s in (keel, ref):
        s.flush()
    want = sorted([("__keyspace@0__:lazy", "expired"), ("__keyevent@0__:expired", "lazy"),
                   ("__keyspace@0__:active", "expired"), ("__keyevent@0__:expired", "active")])
    assert expired_events(ref) == want
    assert expired_events(keel) == want


def test_active_expiry_event_reaches_other_connections(keel):
    keel.flush()
    config_events(keel, "Ex")
    subs = [Subscriber(keel) for _ in range(4)]
    try:
        run(keel, [("SET", f"k{i}", "v", "PX", "30") for i in range(8)])
        for sub in subs:
            got = sub.count(8, settle=0.2)
            assert sorted(got) == sorted(("__keyevent@0__:expired", f"k{i}") for i in range(8))
    finally:
        for sub in subs:
            sub.close()


def test_evicted_events(server_factory):
    s = server_factory("keel", shards=1)
    config_events(s, "Ee")
    sub = Subscriber(s)
    try:
        with s.raw() as c:
            for i in range(200):
                c.call("SET", f"k{i}", "x" * 1000)
            c.call("CONFIG", "SET", "maxmemory-policy", "allkeys-random")
            c.call("CONFIG", "SET", "maxmemory", "100000")
            c.call("SET", "trigger", "y")
            left = c.call("DBSIZE")[1]
        evicted = 201 - left
        assert evicted > 0
        got = sub.count(evicted, settle=0.3)
        assert len(got) == evicted
        assert all(ch == "__keyevent@0__:evicted" for ch, _ in got)
        with s.raw() as c:
            for _, key in got:
                assert c.call("EXISTS", key) == ("int", 0)
    finally:
        sub.close()


CONFIG_VALUES = ["", "A", "KEA", "AKE", "EKA", "KEAn", "nKEA", "KEAm", "Kg$", "E$lshzxetd",
                 "g$lshzxetd", "g$lshzxetdn", "mK", "Km$", "xe", "KEAmn", "lllKK", "d", "t"]


def test_config_canonical_form_matches_redis(keel, ref):
    for v in CONFIG_VALUES:
        got = []
        for s in (keel, ref):
            with s.raw() as c:
                assert c.call("CONFIG", "SET", "notify-keyspace-events", v) == ("simple", b"OK"), v
                got.append(c.call("CONFIG", "GET", "notify-keyspace-events"))
        assert got[0] == got[1], v
    for bad in ["Q", "KEA?", "k", "a"]:
        errs = []
        for s in (keel, ref):
            with s.raw() as c:
                errs.append(c.call("CONFIG", "SET", "notify-keyspace-events", bad))
        assert errs[0] == errs[1] and errs[0][0] == "error", bad


def test_resp3_subscriber_gets_pushes(keel):
    keel.flush()
    config_events(keel, "KEA")
    with keel.raw() as sub, keel.raw() as w:
        assert sub.call("HELLO", "3")[0] == "map"
        sub.send("SUBSCRIBE", "__keyevent@0__:set")
        assert sub.read_any()[0] == "push"
        w.call("SET", "r3", "v")
        m = sub.read_any()
        assert m == ("push", [("bulk", b"message"), ("bulk", b"__keyevent@0__:set"), ("bulk", b"r3")])


def test_blocked_client_served_by_a_push(keel, ref):
    """LPUSH wakes a BLPOP: the push's events, then the pop's (and the
    del of the emptied list), as Redis serves blocked clients after the
    command."""
    got = []
    for s in (keel, ref):
        s.flush()
        config_events(s, "KEAn")
        sub = Subscriber(s)
        blocked = s.raw()
        try:
            blocked.send("BLPOP", "bq", "{bq}z", "0")
            time.sleep(0.2)
            run(s, [("LPUSH", "bq", "a")])
            assert blocked.read_reply() == ("array", [("bulk", b"bq"), ("bulk", b"a")])
            got.append(sub.count(8, settle=0.3))
        finally:
            blocked.close()
            sub.close()
    assert got[0] == got[1]
    assert ("__keyspace@0__:bq", "lpop") in got[1]


def test_restore_events(keel, ref):
    """RESTORE (each server restoring its own DUMP payload): new, restore."""
    got = []
    for s in (keel, ref):
        s.flush()
        with s.raw() as c:
            c.call("SET", "k", "v")
            payload = c.call("DUMP", "k")[1]
        config_events(s, "KEAn")
        sub = Subscriber(s)
        try:
            run(s, [("RESTORE", "k2", "0", payload), ("RESTORE", "k2", "0", payload, "REPLACE"),
                    ("RESTORE", "k2", "0", payload)])
            got.append(sub.count(8 if s is keel else 8, settle=0.3))
        finally:
            sub.close()
    assert got[0] == got[1]
    assert ("__keyspace@0__:k2", "restore") in got[1]

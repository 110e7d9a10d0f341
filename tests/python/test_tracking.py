"""Client-side caching (CLIENT TRACKING) beside a reference redis-server.

- redis-py's own client-side cache (`protocol=3, cache_config=CacheConfig()`)
  against keel with 1 and 4 shards: reads are served from the cache, and a
  write by another client invalidates them.
- Raw RESP scenarios run on keel and on redis-server, comparing what each
  connection receives (replies and invalidation messages): default mode
  in RESP3, REDIRECT to a RESP2 connection subscribed to
  `__redis__:invalidate`, BCAST with PREFIX, OPTIN/OPTOUT with CLIENT
  CACHING, NOLOOP, FLUSHALL/FLUSHDB (null invalidation), expiry, MULTI,
  and the errors and CLIENT TRACKINGINFO/GETREDIR replies. With 4 shards
  the keys live on several shards and cores.
"""

from __future__ import annotations

import socket
import time

import pytest
import redis

from conftest import _checked_stop, start_keel

try:
    from redis.cache import CacheConfig
except ImportError:  # pragma: no cover - tests/requirements.txt pins redis>=5
    CacheConfig = None


@pytest.fixture(scope="module", params=[1, 4], ids=["shards1", "shards4"])
def keel(request, tmp_path_factory):
    s = start_keel(tmp_path_factory.mktemp(f"keel-tracking{request.param}"), shards=request.param)
    yield s
    _checked_stop(s)


# -- redis-py's client-side cache ----------------------------------------------

# redis-py 8 enables its cache only when HELLO reports Redis >= 7.4 (a
# version gate, not a protocol check: the cache needs nothing 7.0 lacks).
# keel reports 7.0.15, the version whose semantics it follows, so the tests
# lower the gate; everything else (CLIENT TRACKING ON on connect, the RESP3
# invalidate pushes, the cache itself) is redis-py's own code against keel.


@pytest.fixture(autouse=True)
def cache_version_gate(monkeypatch):
    proxy = getattr(redis.connection, "CacheProxyConnection", None)
    if proxy is not None and hasattr(proxy, "MIN_ALLOWED_VERSION"):
        monkeypatch.setattr(proxy, "MIN_ALLOWED_VERSION", "7.0.0")


@pytest.mark.skipif(CacheConfig is None, reason="redis-py without client-side caching")
def test_redis_py_cache_is_invalidated_by_other_clients(keel):
    keel.flush()
    cached = redis.Redis(host=keel.host, port=keel.port, protocol=3, cache_config=CacheConfig(),
                         single_connection_client=True)
    other = keel.client()
    keys = [f"user:{i}" for i in range(20)]
    try:
        for k in keys:
            other.set(k, "v1")
        assert [cached.get(k) for k in keys] == [b"v1"] * 20
        cache = cached.get_cache()
        assert cache.size == 20
        # Served from the cache: a change behind keel's back (none here) is
        # not needed; the cache holds the entries and answers.
        assert [cached.get(k) for k in keys] == [b"v1"] * 20
        for k in keys[:10]:
            other.set(k, "v2")
        other.delete(keys[10])
        deadline = time.time() + 5
        want = [b"v2"] * 10 + [None] + [b"v1"] * 9
        got = None
        while time.time() < deadline:
            got = [cached.get(k) for k in keys]
            if got == want:
                break
            time.sleep(0.05)
        assert got == want
        # A hash read through the cache, then changed.
        other.hset("h", mapping={"a": "1"})
        assert cached.hgetall("h") == {b"a": b"1"}
        other.hset("h", "b", "2")
        deadline = time.time() + 5
        while time.time() < deadline and cached.hgetall("h") != {b"a": b"1", b"b": b"2"}:
            time.sleep(0.05)
        assert cached.hgetall("h") == {b"a": b"1", b"b": b"2"}
    finally:
        cached.close()
        other.close()


@pytest.mark.skipif(CacheConfig is None, reason="redis-py without client-side caching")
def test_redis_py_cache_flushall(keel):
    keel.flush()
    cached = redis.Redis(host=keel.host, port=keel.port, protocol=3, cache_config=CacheConfig(),
                         single_connection_client=True)
    other = keel.client()
    try:
        other.set("a", "1")
        assert cached.get("a") == b"1"
        other.flushall()
        deadline = time.time() + 5
        while time.time() < deadline and cached.get("a") is not None:
            time.sleep(0.05)
        assert cached.get("a") is None
    finally:
        cached.close()
        other.close()


# -- raw protocol, beside redis-server ------------------------------------------


class Client:
    """A raw connection that keeps every reply and push, in order."""

    def __init__(self, server, resp3=False):
        self.c = server.raw()
        self.log: list = []
        if resp3:
            r = self.c.call("HELLO", "3")
            assert r[0] == "map", r
        self.id = self.c.call("CLIENT", "ID")[1]

    def call(self, *args):
        self.c.send(*args)
        while True:
            r = self.c.read_any()
            if r[0] == "push" and r[1][:1] == [("bulk", b"invalidate")]:
                self.log.append(r)
                continue
            return r

    def drain(self, wait: float = 0.3):
        """Messages arriving within `wait` seconds of the last one."""
        self.c.sock.settimeout(wait)
        try:
            while True:
                self.log.append(self.c.read_any())
        except (socket.timeout, TimeoutError):
            pass
        finally:
            self.c.sock.settimeout(10)
        out, self.log = self.log, []
        return out

    def close(self):
        self.c.close()


def norm(reply, ids):
    """Client ids differ between servers: name them."""
    if reply[0] == "int" and reply[1] in ids:
        return ("int", ids[reply[1]])
    if reply[0] in ("array", "push", "set"):
        return (reply[0], [norm(r, ids) for r in reply[1]])
    if reply[0] == "map":
        return ("map", [(norm(k, ids), norm(v, ids)) for k, v in reply[1]])
    return reply


def invalidated_keys(msgs):
    """The keys of a list of invalidation messages (RESP3 pushes or RESP2
    messages), in order; None for an invalidate-everything."""
    out = []
    for m in msgs:
        items = m[1]
        payload = items[-1]
        if payload[0] in ("null", "nilbulk", "nilarray"):
            out.append(None)
        else:
            out.extend(k[1].decode() for k in payload[1])
    return out


def both(keel, ref, scenario):
    results = []
    for s in (keel, ref):
        s.flush()
        results.append(scenario(s))
    assert results[0] == results[1]
    return results[1]


def test_default_mode_resp3(keel, ref):
    def scenario(s):
        c1, c2 = Client(s, resp3=True), Client(s)
        try:
            assert c1.call("CLIENT", "TRACKING", "ON") == ("simple", b"OK")
            c2.call("MSET", "a", "1", "b", "2", "c", "3", "d", "4")
            c1.call("GET", "a")
            c1.call("MGET", "b", "c")
            c1.call("EXISTS", "d")
            c1.call("GET", "never-written")
            c2.call("SADD", "s1", "a")
            c2.call("SADD", "s2", "b")
            c1.call("SUNION", "s1", "s2")  # keys on two shards with --shards 4
            c1.drain(0.1)
            c2.call("SET", "a", "x")
            got = [invalidated_keys(c1.drain())]
            c2.call("SADD", "s2", "c")
            got.append(invalidated_keys(c1.drain()))
            c2.call("MSET", "b", "y", "c", "y", "d", "y")
            got.append(sorted(invalidated_keys(c1.drain())))
            # Forgotten once invalidated: no second message.
            c2.call("SET", "a", "z")
            got.append(invalidated_keys(c1.drain()))
            # Read again: remembered again; DEL, EXPIRE, APPEND invalidate.
            c1.call("GET", "a")
            c1.call("GET", "b")
            c1.call("GET", "c")
            c2.call("DEL", "a")
            c2.call("EXPIRE", "b", "100")
            c2.call("APPEND", "c", "!")
            got.append(sorted(invalidated_keys(c1.drain())))
            got.append(norm(c1.call("CLIENT", "TRACKINGINFO"), {}))
            got.append(c1.call("CLIENT", "GETREDIR"))
            assert c1.call("CLIENT", "TRACKING", "OFF") == ("simple", b"OK")
            c1.call("GET", "a")
            c2.call("SET", "a", "1")
            got.append(invalidated_keys(c1.drain()))
            return got
        finally:
            c1.close()
            c2.close()

    got = both(keel, ref, scenario)
    assert got[0] == ["a"] and got[1] == ["s2"] and got[2] == ["b", "c", "d"] and got[3] == []


def test_self_invalidation_and_noloop(keel, ref):
    def scenario(s):
        got = []
        for noloop in (False, True):
            c1, c2 = Client(s, resp3=True), Client(s)
            try:
                opts = ["NOLOOP"] if noloop else []
                c1.call("CLIENT", "TRACKING", "ON", *opts)
                c1.call("GET", "k")
                c1.call("SET", "k", "mine")
                got.append(invalidated_keys(c1.drain()))
                c2.call("SET", "k", "theirs")
                got.append(invalidated_keys(c1.drain()))
                c1.call("GET", "k")
                c2.call("SET", "k", "again")
                got.append(invalidated_keys(c1.drain()))
            finally:
                c1.close()
                c2.close()
        return got

    got = both(keel, ref, scenario)
    assert got[0] == ["k"] and got[3] == []


def test_redirect_to_resp2_subscriber(keel, ref):
    def scenario(s):
        c1, sub, w = Client(s), Client(s), Client(s)
        ids = {sub.id: "SUB"}
        try:
            got = [sub.call("SUBSCRIBE", "__redis__:invalidate")]
            got.append(c1.call("CLIENT", "TRACKING", "ON", "REDIRECT", sub.id))
            got.append(norm(c1.call("CLIENT", "GETREDIR"), ids))
            got.append(norm(c1.call("CLIENT", "TRACKINGINFO"), ids))
            c1.call("GET", "x")
            c1.call("MGET", "y", "z")
            w.call("SET", "x", "1")
            w.call("SET", "y", "1")
            got.append(sub.drain())
            got.append(c1.drain(0.1))  # the tracking client itself gets nothing
            w.call("FLUSHDB")
            got.append(sub.drain())
            return got
        finally:
            c1.close()
            sub.close()
            w.close()

    got = both(keel, ref, scenario)
    assert invalidated_keys(got[4]) == ["x", "y"]
    assert invalidated_keys(got[6]) == [None]


def test_bcast_prefixes(keel, ref):
    def scenario(s):
        c1, c2, w = Client(s, resp3=True), Client(s, resp3=True), Client(s)
        try:
            got = [c1.call("CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "user:", "PREFIX", "obj:")]
            got.append(c2.call("CLIENT", "TRACKING", "ON", "BCAST"))
            got.append(norm(c1.call("CLIENT", "TRACKINGINFO"), {}))
            got.append(norm(c2.call("CLIENT", "TRACKINGINFO"), {}))
            w.call("SET", "user:1", "a")
            got.append(sorted(invalidated_keys(c1.drain())))
            got.append(sorted(invalidated_keys(c2.drain())))
            w.call("SET", "other", "a")
            w.call("MSET", "obj:1", "a", "obj:2", "b")
            w.call("LPUSH", "user:list", "x")
            got.append(sorted(invalidated_keys(c1.drain())))
            got.append(sorted(invalidated_keys(c2.drain())))
            # More prefixes on the same client; overlapping ones refused.
            got.append(c1.call("CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "cfg:"))
            got.append(c1.call("CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "use"))
            got.append(c1.call("CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "a", "PREFIX", "ab"))
            got.append(norm(c1.call("CLIENT", "TRACKINGINFO"), {}))
            w.call("SET", "cfg:x", "1")
            got.append(invalidated_keys(c1.drain()))
            c2.drain(0.1)
            # NOLOOP broadcasting: its own writes are not reported to it.
            c3 = Client(s, resp3=True)
            got.append(c3.call("CLIENT", "TRACKING", "ON", "BCAST", "NOLOOP", "PREFIX", "n:"))
            c3.call("SET", "n:1", "a")
            w.call("SET", "n:2", "a")
            got.append(invalidated_keys(c3.drain()))
            c3.close()
            # One command's keys under several prefixes: one message.
            w.call("MSET", "{t}user:9", "a", "{t}obj:9", "b", "{t}x", "c")
            c4 = Client(s, resp3=True)
            got.append(c4.call("CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "{t}user:", "PREFIX", "{t}obj:"))
            w.call("MSET", "{t}user:9", "a", "{t}obj:9", "b", "{t}x", "c")
            msgs = c4.drain()
            got.append((len(msgs), sorted(invalidated_keys(msgs))))
            # A transaction's keys: one message per prefix, after EXEC.
            w.call("MULTI")
            for k in ("{t}user:1", "{t}user:2", "{t}obj:1", "{t}obj:2", "{t}x"):
                w.call("INCR", k)
            w.call("EXEC")
            msgs = c4.drain()
            got.append(sorted(sorted(invalidated_keys([m])) for m in msgs))
            c4.close()
            return got
        finally:
            c1.close()
            c2.close()
            w.close()

    got = both(keel, ref, scenario)
    assert got[4] == ["user:1"] and got[6] == ["obj:1", "obj:2", "user:list"]
    assert got[-1] == [["{t}obj:1", "{t}obj:2"], ["{t}user:1", "{t}user:2"]]


def test_own_invalidation_follows_exec_reply(keel, ref):
    """A transaction that changes a key its own client tracks: the EXEC
    reply comes first, then the invalidation, never inside the reply."""

    def scenario(s):
        c = Client(s, resp3=True)
        try:
            c.call("CLIENT", "TRACKING", "ON")
            c.call("MSET", "{t}a", "1", "{t}b", "2")
            c.call("GET", "{t}a")
            c.call("MULTI")
            c.call("INCR", "{t}a")
            c.call("GET", "{t}b")
            c.c.send("EXEC")
            return [c.c.read_any(), c.c.read_any()]
        finally:
            c.close()

    got = both(keel, ref, scenario)
    assert got[0][0] == "array" and got[1][0] == "push"


def test_optin_optout(keel, ref):
    def scenario(s):
        got = []
        w = Client(s)
        c = Client(s, resp3=True)
        try:
            got.append(c.call("CLIENT", "TRACKING", "ON", "OPTIN"))
            c.call("GET", "a")
            got.append(c.call("CLIENT", "CACHING", "YES"))
            got.append(norm(c.call("CLIENT", "TRACKINGINFO"), {}))
            c.call("GET", "b")
            c.call("GET", "c")  # the flag held for one command only
            got.append(c.call("CLIENT", "CACHING", "NO"))
            # A whole transaction counts as one command.
            c.call("CLIENT", "CACHING", "YES")
            c.call("MULTI")
            c.call("GET", "m1")
            c.call("GET", "m2")
            c.call("EXEC")
            c.call("GET", "m3")
            for k in ["a", "b", "c", "m1", "m2", "m3"]:
                w.call("SET", k, "1")
            got.append(sorted(invalidated_keys(c.drain())))
            got.append(c.call("CLIENT", "TRACKING", "ON", "OPTOUT"))
            c.call("CLIENT", "TRACKING", "OFF")
            got.append(c.call("CLIENT", "TRACKING", "ON", "OPTOUT"))
            got.append(c.call("CLIENT", "CACHING", "YES"))
            got.append(c.call("CLIENT", "CACHING", "NO"))
            c.call("GET", "a")
            c.call("GET", "b")
            got.append(norm(c.call("CLIENT", "TRACKINGINFO"), {}))
            for k in ["a", "b"]:
                w.call("SET", k, "2")
            got.append(sorted(invalidated_keys(c.drain())))
            return got
        finally:
            c.close()
            w.close()

    got = both(keel, ref, scenario)
    assert got[4] == ["b", "m1", "m2"] and got[-1] == ["b"]


def test_flush_and_expiry_invalidate(keel, ref):
    def scenario(s):
        c, w = Client(s, resp3=True), Client(s)
        try:
            c.call("CLIENT", "TRACKING", "ON")
            w.call("SET", "e", "1", "PX", "100")
            c.call("GET", "e")
            c.call("GET", "f")
            time.sleep(0.3)
            got = [invalidated_keys(c.drain(0.5))]  # active expiry
            c.call("GET", "f")
            w.call("FLUSHALL")
            got.append(c.drain())
            w.call("FLUSHDB")
            got.append(c.drain())
            return got
        finally:
            c.close()
            w.close()

    got = both(keel, ref, scenario)
    assert got[0] == ["e"]
    assert invalidated_keys(got[1]) == [None]


ERROR_CASES = [
    ("CLIENT", "TRACKING", "ON", "PREFIX", "x"),
    ("CLIENT", "TRACKING", "ON", "BCAST", "OPTIN"),
    ("CLIENT", "TRACKING", "ON", "BCAST", "OPTOUT"),
    ("CLIENT", "TRACKING", "ON", "OPTIN", "OPTOUT"),
    ("CLIENT", "TRACKING", "ON", "REDIRECT", "987654"),
    ("CLIENT", "TRACKING", "ON", "REDIRECT", "abc"),
    ("CLIENT", "TRACKING", "ON", "REDIRECT"),
    ("CLIENT", "TRACKING", "MAYBE"),
    ("CLIENT", "TRACKING", "ON", "FOO"),
    ("CLIENT", "TRACKING"),
    ("CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "a", "PREFIX", "ab"),
    ("CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "ab", "PREFIX", "a"),
    ("CLIENT", "CACHING", "YES"),
    ("CLIENT", "CACHING", "NO"),
    ("CLIENT", "CACHING"),
    ("CLIENT", "GETREDIR"),
    ("CLIENT", "GETREDIR", "x"),
    ("CLIENT", "TRACKINGINFO"),
    ("CLIENT", "TRACKINGINFO", "x"),
    ("CLIENT", "TRACKING", "ON"),
    ("CLIENT", "CACHING", "YES"),
    ("CLIENT", "CACHING", "MAYBE"),
    ("CLIENT", "TRACKING", "ON", "BCAST"),
    ("CLIENT", "TRACKING", "ON", "OPTIN"),
    ("CLIENT", "TRACKINGINFO"),
    ("CLIENT", "TRACKING", "OFF"),
    ("CLIENT", "TRACKING", "ON", "OPTOUT", "NOLOOP"),
    ("CLIENT", "TRACKING", "ON", "OPTIN"),
    ("CLIENT", "CACHING", "NO"),
    ("CLIENT", "TRACKINGINFO"),
    ("CLIENT", "TRACKING", "OFF"),
    ("CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "p"),
    ("CLIENT", "TRACKING", "ON"),
    ("CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "q", "NOLOOP"),
    ("CLIENT", "TRACKINGINFO"),
    ("CLIENT", "TRACKING", "OFF"),
    ("CLIENT", "TRACKINGINFO"),
    ("CLIENT", "GETREDIR"),
]


@pytest.mark.parametrize("resp3", [False, True], ids=["resp2", "resp3"])
def test_errors_and_info_match_redis(keel, ref, resp3):
    def scenario(s):
        c = Client(s, resp3=resp3)
        try:
            return [norm(c.call(*cmd), {c.id: "ME"}) for cmd in ERROR_CASES]
        finally:
            c.close()

    got = both(keel, ref, scenario)
    assert any(r[0] == "error" for r in got)


def test_reset_turns_tracking_off(keel, ref):
    def scenario(s):
        c, w = Client(s, resp3=True), Client(s)
        try:
            c.call("CLIENT", "TRACKING", "ON")
            c.call("GET", "k")
            got = [c.call("RESET")]
            got.append(norm(c.call("CLIENT", "TRACKINGINFO"), {}))
            w.call("SET", "k", "1")
            got.append(c.drain())
            return got
        finally:
            c.close()
            w.close()

    both(keel, ref, scenario)


def test_broken_redirect(keel, ref):
    def scenario(s):
        c1, sub, w = Client(s, resp3=True), Client(s), Client(s)
        ids = {sub.id: "SUB"}
        try:
            sub.call("SUBSCRIBE", "__redis__:invalidate")
            c1.call("CLIENT", "TRACKING", "ON", "REDIRECT", sub.id)
            c1.call("GET", "a")
            c1.call("GET", "b")
            sub.close()
            time.sleep(0.2)
            w.call("SET", "a", "1")
            got = [norm(m, ids) for m in c1.drain()]
            got.append(norm(c1.call("CLIENT", "TRACKINGINFO"), ids))
            # Tracking on again (no redirect): mended.
            c1.call("CLIENT", "TRACKING", "ON")
            got.append(norm(c1.call("CLIENT", "TRACKINGINFO"), ids))
            c1.call("GET", "b")
            w.call("SET", "b", "1")
            got.append(invalidated_keys(c1.drain()))
            return got
        finally:
            c1.close()
            w.close()

    got = both(keel, ref, scenario)
    assert got[0] == ("push", [("bulk", b"tracking-redir-broken"), ("int", "SUB")])


def test_scripts_reads_are_tracked_for_the_caller(keel, ref):
    def scenario(s):
        got = []
        for opts in ([], ["NOLOOP"]):
            c, w = Client(s, resp3=True), Client(s)
            try:
                c.call("CLIENT", "TRACKING", "ON", *opts)
                c.call("EVAL", "return redis.call('get', KEYS[1])", "1", "sk")
                c.call("EVAL", "return redis.call('mget', KEYS[1], KEYS[2])", "2", "{t}a", "{t}b")
                w.call("SET", "sk", "1")
                w.call("SET", "{t}b", "1")
                got.append(sorted(invalidated_keys(c.drain())))
                c.call("GET", "own")
                c.call("EVAL", "return redis.call('set', KEYS[1], 'x')", "1", "own")
                got.append(invalidated_keys(c.drain()))
            finally:
                c.close()
                w.close()
        return got

    got = both(keel, ref, scenario)
    assert got[0] == ["sk", "{t}b"] and got[1] == ["own"] and got[3] == []


def test_a_script_that_reads_tracks_its_declared_keys(keel, ref):
    """A script that calls a read-only command makes its caller track the
    keys it declared (not the keys its commands named); one that only
    writes or pings tracks nothing — as Redis 7.0 does."""

    def scenario(s):
        c, w = Client(s, resp3=True), Client(s)
        got = []
        try:
            c.call("CLIENT", "TRACKING", "ON")
            for cmd, script in (
                ("EVAL", "redis.call('set', 'k3{t}', 'bar')"),
                ("EVAL", "redis.call('get', 'k3{t}')"),
                ("EVAL_RO", "redis.call('ping')"),
                ("EVAL_RO", "redis.call('get', 'k1{t}')"),
            ):
                c.call(cmd, script, "2", "k1{t}", "k2{t}")
                w.call("MSET", "k2{t}", "2", "k1{t}", "2", "k3{t}", "2")
                got.append(invalidated_keys(c.drain()))
            return got
        finally:
            c.close()
            w.close()

    got = both(keel, ref, scenario)
    assert got == [[], ["k2{t}", "k1{t}"], [], ["k2{t}", "k1{t}"]]


def test_resp2_without_redirect_gets_nothing(keel, ref):
    def scenario(s):
        c, w = Client(s), Client(s)
        try:
            got = [c.call("CLIENT", "TRACKING", "ON")]
            c.call("GET", "k")
            got.append(c.call("SUBSCRIBE", "__redis__:invalidate"))
            w.call("SET", "k", "1")
            got.append(c.drain())
            return got
        finally:
            c.close()
            w.close()

    got = both(keel, ref, scenario)
    assert got[-1] == []


def test_tracking_table_limit_and_info(keel, ref):
    """tracking-table-max-keys holds over the whole server (every shard's
    keys together): lowering it lets exactly the excess go, each key with
    an invalidation; INFO's tracking_* fields count as Redis counts."""

    def info(s):
        c = s.client()
        i = c.info()
        return {k: i[k] for k in ("tracking_clients", "tracking_total_keys",
                                  "tracking_total_items", "tracking_total_prefixes")}

    def scenario(s):
        got = []
        c, w = Client(s, resp3=True), Client(s)
        b = Client(s, resp3=True)
        try:
            c.call("CLIENT", "TRACKING", "ON")
            for i in range(120):
                c.call("GET", f"key{i}")
            got.append(info(s))
            b.call("CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "p:", "PREFIX", "q:")
            got.append(info(s))
            got.append(w.call("CONFIG", "SET", "tracking-table-max-keys", "5"))
            msgs = c.drain()
            got.append(len(invalidated_keys(msgs)))
            got.append(info(s)["tracking_total_keys"])
            # A new key past the limit lets another one go.
            c.call("GET", "newcomer")
            got.append(len(invalidated_keys(c.drain())))
            got.append(info(s)["tracking_total_keys"])
            return got
        finally:
            w.call("CONFIG", "SET", "tracking-table-max-keys", "1000000")
            for x in (c, w, b):
                x.close()

    got = both(keel, ref, scenario)
    assert got[0]["tracking_total_keys"] == 120 and got[3] == 115 and got[4] == 5


def test_redirect_to_a_resp3_connection_that_never_subscribed(keel, ref):
    """A RESP3 connection is a REDIRECT target as it is: the invalidation
    arrives as a push, even with its replies silenced."""

    def scenario(s):
        target, c, w = Client(s, resp3=True), Client(s, resp3=True), Client(s)
        try:
            got = [c.call("CLIENT", "TRACKING", "ON", "REDIRECT", target.id)]
            w.call("SET", "foo", "bar")
            c.call("GET", "foo")
            target.c.send("CLIENT", "REPLY", "OFF")
            w.call("SET", "foo", "bar2")
            got.append(target.c.read_any())
            target.c.send("CLIENT", "REPLY", "ON")
            got.append(target.c.read_any())
            got.append(target.call("PING"))
            return got
        finally:
            for x in (target, c, w):
                x.close()

    got = both(keel, ref, scenario)
    assert got[1] == ("push", [("bulk", b"invalidate"), ("array", [("bulk", b"foo")])])

"""redis-py (the most common Python client) against keel, in RESP2 and RESP3."""

from __future__ import annotations

import time

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from respclient import error_text

PROTOCOLS = pytest.mark.parametrize("protocol", [2, 3], ids=["resp2", "resp3"])


@pytest.fixture
def client_factory():
    clients = []

    def make(server, protocol=2, **kw):
        c = server.client(protocol=protocol, **kw)
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()


@PROTOCOLS
def test_session_strings_counters_and_expiry(keel, client_factory, protocol):
    r = client_factory(keel, protocol)
    assert r.ping() is True
    assert r.echo("hello") == b"hello"
    assert r.set("greeting", "hi") is True
    assert r.get("greeting") == b"hi"
    assert r.get("missing") is None
    assert r.set("greeting", "again", nx=True) is None
    assert r.set("greeting", "x", xx=True, get=True) == b"hi"
    assert r.incr("counter") == 1
    assert r.incrby("counter", 41) == 42
    assert r.decr("counter") == 41
    assert r.incrbyfloat("fl", 2.5) == 2.5
    assert r.append("greeting", "yz") == 3
    assert r.strlen("greeting") == 3
    assert r.expire("counter", 100) is True
    ttl = r.ttl("counter")
    assert 98 <= ttl <= 100
    assert 0 < r.pttl("counter") <= 100_000
    assert r.persist("counter") is True
    assert r.ttl("counter") == -1
    assert r.ttl("missing") == -2
    assert r.set("temp", "v", ex=50) is True
    assert 48 <= r.ttl("temp") <= 50
    assert r.mset({"{m}a": "1", "{m}b": "2", "c": "3", "d": "4"}) is True
    assert r.mget(["{m}a", "{m}b", "c", "d", "nope"]) == [b"1", b"2", b"3", b"4", None]
    assert r.msetnx({"c": "x", "new": "y"}) is False
    assert r.get("new") is None
    assert r.exists("c", "d", "nope") == 2
    assert r.delete("c", "d", "nope") == 2
    assert r.type("greeting") == b"string"
    assert r.getdel("greeting") == b"xyz"
    assert r.exists("greeting") == 0
    with pytest.raises(redis.ResponseError, match="not an integer"):
        r.incr("fl")
    r.hset("h", "f", "v")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        r.get("h")


@PROTOCOLS
def test_pipeline_of_1000_commands_without_transaction(keel, client_factory, protocol):
    r = client_factory(keel, protocol)
    p = r.pipeline(transaction=False)
    for i in range(500):
        p.set(f"pipe:{i}", i)
        p.incr(f"pipe:{i}")
    results = p.execute()
    assert len(results) == 1000
    assert results[0::2] == [True] * 500
    assert results[1::2] == [i + 1 for i in range(500)]
    p = r.pipeline(transaction=False)
    for i in range(1000):
        p.get(f"pipe:{i % 500}")
    values = p.execute()
    assert values == [str(i % 500 + 1).encode() for i in range(1000)]
    assert r.dbsize() == 500


@PROTOCOLS
def test_scan_iter_visits_every_key_once_per_match(keel, client_factory, protocol):
    r = client_factory(keel, protocol)
    names = {f"user:{i}" for i in range(300)} | {f"{{tag}}:{i}" for i in range(50)}
    r.mset({n: "v" for n in names})
    r.sadd("aset", "m")
    got = [k.decode() for k in r.scan_iter(count=37)]
    assert set(got) == names | {"aset"}
    assert {k.decode() for k in r.scan_iter(match="user:1*")} == {n for n in names if n.startswith("user:1")}
    assert {k.decode() for k in r.scan_iter(_type="set")} == {"aset"}
    assert sorted(k.decode() for k in r.keys("{tag}*")) == sorted(n for n in names if n.startswith("{tag}"))


@PROTOCOLS
def test_server_introspection(keel, client_factory, protocol):
    r = client_factory(keel, protocol)
    info = r.info()
    assert "redis_version" in info, sorted(info)[:20]
    assert info.get("role") == "master", info.get("role")
    assert "redis_version" in r.info("server")
    assert r.client_setname("keel-tests") is True
    assert r.client_getname() in (b"keel-tests", "keel-tests")
    cfg = r.config_get("maxmemory")
    assert set(cfg) == {b"maxmemory"} or set(cfg) == {"maxmemory"}, cfg
    seconds, micros = r.time()
    assert abs(seconds - time.time()) < 5 and 0 <= micros < 1_000_000
    r.set("a", 1)
    r.set("b", 2)
    assert r.dbsize() == 2
    assert r.flushdb() is True
    assert r.dbsize() == 0
    assert r.ping() is True
    assert r.echo(b"\x00\xffbin") == b"\x00\xffbin"


@PROTOCOLS
def test_config_get_reports_flags_given_at_start(server_factory, client_factory, protocol):
    s = server_factory("keel", shards=2, extra=["--maxmemory", "104857600",
                                                 "--maxmemory-policy", "allkeys-lru",
                                                 "--appendonly", "no"])
    r = client_factory(s, protocol, decode_responses=True)
    assert r.config_get("maxmemory") == {"maxmemory": "104857600"}
    assert r.config_get("maxmemory-policy") == {"maxmemory-policy": "allkeys-lru"}
    assert r.config_get("appendonly") == {"appendonly": "no"}


@PROTOCOLS
def test_decode_responses_and_binary_safety(keel, client_factory, protocol):
    r = client_factory(keel, protocol)
    blob = bytes(range(256)) * 4
    r.set(b"bin\x00key", blob)
    assert r.get(b"bin\x00key") == blob
    rd = client_factory(keel, protocol, decode_responses=True)
    rd.set("ключ", "значение")
    assert rd.get("ключ") == "значение"
    assert rd.mget(["ключ", "nope"]) == ["значение", None]


# -- authentication --------------------------------------------------------------

PASSWORD = "s3cret-pass"


@pytest.fixture
def auth_servers(server_factory):
    """keel and the reference redis, both started with --requirepass."""
    return (server_factory("keel", shards=2, extra=["--requirepass", PASSWORD]),
            server_factory("redis", extra=["--requirepass", PASSWORD]))


def test_requirepass_refuses_commands_before_auth_like_redis(auth_servers):
    keel, ref = auth_servers
    script = [("PING",), ("GET", "k"), ("SET", "k", "v"), ("AUTH", "wrong"),
              ("AUTH", "default", "wrong"), ("GET", "k"), ("AUTH", PASSWORD), ("SET", "k", "v"),
              ("GET", "k"), ("AUTH", "default", PASSWORD), ("PING",)]
    out = {}
    for s in auth_servers:
        with s.raw() as c:
            out[s.name] = [c.call(*cmd) for cmd in script]
    k, r = out[keel.name], out[ref.name]
    # what redis does (self-check of the script), then keel must do the same
    assert error_text(r[0]).startswith("NOAUTH")
    assert error_text(r[3]).startswith("WRONGPASS")
    assert r[7] == ("simple", b"OK") and r[8] == ("bulk", b"v")
    for i, cmd in enumerate(script):
        assert k[i] == r[i], f"{cmd}: keel {k[i]!r} != redis {r[i]!r}"


def test_hello_3_with_auth(auth_servers):
    keel, ref = auth_servers
    for s in auth_servers:
        with s.raw() as c:
            bad = c.call("HELLO", "3", "AUTH", "default", "wrong")
            assert bad[0] == "error" and bad[1].startswith(b"WRONGPASS"), (s.name, bad)
            refused = c.call("GET", "x")
            assert refused[0] == "error" and refused[1].startswith(b"NOAUTH"), (s.name, refused)
            hello = c.call("HELLO", "3", "AUTH", "default", PASSWORD)
            assert hello[0] == "map", (s.name, hello)
            fields = {kk[1]: v for kk, v in hello[1]}
            assert fields[b"proto"] == ("int", 3), (s.name, fields)
            assert b"version" in fields and b"server" in fields and b"role" in fields, (s.name, sorted(fields))
            assert c.call("GET", "x") == ("null",), s.name


@PROTOCOLS
def test_redis_py_auth(auth_servers, client_factory, protocol):
    keel, _ = auth_servers
    no_retry = Retry(NoBackoff(), 0)  # redis-py retries auth failures with backoff by default
    anon = client_factory(keel, protocol, password=None, retry=no_retry)
    with pytest.raises(redis.AuthenticationError):
        anon.get("x")
    wrong = client_factory(keel, protocol, password="nope", retry=no_retry)
    with pytest.raises(redis.AuthenticationError):
        wrong.ping()
    good = client_factory(keel, protocol)  # server.password is used
    assert good.set("x", "1") is True
    assert good.get("x") == b"1"
    user = client_factory(keel, protocol, username="default")
    assert user.get("x") == b"1"

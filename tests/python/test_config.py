"""CONFIG GET / SET / REWRITE through redis-py, beside a reference redis-server:
keel knows every parameter redis-server 7.0 lists, reads back what was set in
the same canonical form, refuses bad values with the same error texts, sets
several parameters atomically, and still applies maxmemory,
maxmemory-policy, lua-time-limit and proto-max-bulk-len.

Every test puts both servers' parameters back as it found them (the
reference redis-server is shared by the whole session).
"""

from __future__ import annotations

import subprocess
import time

import pytest
import redis

from conftest import KEEL_BIN, TARGET, _checked_stop, start_keel


def cget(c, *patterns) -> dict:
    """CONFIG GET as a dict, whatever the protocol."""
    reply = c.execute_command("CONFIG", "GET", *patterns)
    if isinstance(reply, dict):
        return dict(reply)
    return dict(zip(reply[::2], reply[1::2]))


def cset(c, *pairs):
    """CONFIG SET with any number of name/value pairs: True for OK, else the
    error text."""
    try:
        reply = c.execute_command("CONFIG", "SET", *pairs)
    except redis.ResponseError as e:
        return f"error: {e}"
    return reply in (True, "OK", b"OK") or reply


def restore(c, before: dict):
    """Sets back every parameter that changed since `before`."""
    now = cget(c, "*")
    for name, value in before.items():
        if now.get(name) != value:
            cset(c, name, value)
            now = cget(c, "*")
    assert cget(c, "*") == before


@pytest.fixture(scope="module")
def keel_server(tmp_path_factory):
    s = start_keel(tmp_path_factory.mktemp("keel-config"), shards=2)
    yield s
    _checked_stop(s)


@pytest.fixture
def k(keel_server):
    c = keel_server.client(decode_responses=True)
    before = cget(c, "*")
    yield c
    restore(c, before)
    c.close()


@pytest.fixture
def r(ref_redis):
    c = ref_redis.client(decode_responses=True)
    before = cget(c, "*")
    yield c
    restore(c, before)
    c.close()


def test_get_star_lists_every_redis_parameter_once(k, r, keel_server):
    ours, theirs = cget(k, "*"), cget(r, "*")
    # No exceptions: keel knows (applies or keeps) every parameter Redis lists.
    assert sorted(set(theirs) - set(ours)) == []
    with keel_server.raw() as c:
        _, flat = c.call("CONFIG", "GET", "*")
    names = [v for _, v in flat[::2]]
    assert len(names) == len(set(names)), "a parameter listed twice"
    # Aliases are listed under both names, with one value.
    for name, alias in [("hash-max-listpack-entries", "hash-max-ziplist-entries"),
                        ("busy-reply-threshold", "lua-time-limit"),
                        ("replica-read-only", "slave-read-only")]:
        assert ours[name] == ours[alias]
    if TARGET == "keel":
        for name in ("shards", "read-max-lag", "lua-memory-limit", "cross-core-queue-depth",
                     "max-multibulk-len"):
            assert name in ours, name


def test_defaults_are_redis_defaults(k, server_factory):
    """A fresh keel and a fresh redis-server start with the same values,
    except where keel's own configuration differs on purpose."""
    fresh = server_factory("redis").client(decode_responses=True)
    ours, theirs = cget(k, "*"), cget(fresh, "*")
    differ = {
        # Where each server runs.
        "dir", "port", "logfile",
        # The test harness starts redis-server with --protected-mode no.
        "protected-mode",
    }
    if TARGET == "keel":
        # keel's own defaults: a backlog per shard, a shorter timeout.
        differ |= {"repl-backlog-size", "repl-timeout"}
    got = {n: ours[n] for n in theirs if n not in differ and ours[n] != theirs[n]}
    assert got == {}, {n: (v, theirs[n]) for n, v in got.items()}


# (name, value) pairs set on both servers, then read back.
SAMPLE = [
    ("hash-max-listpack-entries", "16"),
    ("hash-max-ziplist-entries", "1000"),
    ("hash-max-listpack-value", "1kb"),
    ("hash-max-ziplist-value", "32"),
    ("set-max-intset-entries", "10"),
    ("zset-max-listpack-entries", "0"),
    ("zset-max-ziplist-entries", "64"),
    ("zset-max-listpack-value", "100"),
    ("zset-max-ziplist-value", "2k"),
    ("list-max-listpack-size", "-3"),
    ("list-max-ziplist-size", "128"),
    ("list-compress-depth", "2"),
    ("hll-sparse-max-bytes", "5000"),
    ("hll-sparse-max-bytes", "1KB"),
    ("stream-node-max-bytes", "8kb"),
    ("stream-node-max-entries", "50"),
    ("notify-keyspace-events", "KEA"),
    ("notify-keyspace-events", "Ex"),
    ("notify-keyspace-events", "Kg$lshzxetdn"),
    ("notify-keyspace-events", "An"),
    ("notify-keyspace-events", "mKE$lx"),
    ("notify-keyspace-events", ""),
    ("timeout", "300"),
    ("tcp-keepalive", "60"),
    ("slowlog-log-slower-than", "-1"),
    ("slowlog-log-slower-than", "5000"),
    ("slowlog-max-len", "1024"),
    ("latency-monitor-threshold", "100"),
    ("lazyfree-lazy-eviction", "yes"),
    ("lazyfree-lazy-expire", "YES"),
    ("lazyfree-lazy-server-del", "yes"),
    ("lazyfree-lazy-user-del", "yes"),
    ("lazyfree-lazy-user-flush", "yes"),
    ("replica-lazy-flush", "yes"),
    ("activerehashing", "No"),
    ("oom-score-adj", "relative"),
    ("acl-pubsub-default", "ALLCHANNELS"),
    ("repl-diskless-load", "swapdb"),
    ("maxmemory", "1gb"),
    ("maxmemory", "100mb"),
    ("maxmemory", "5k"),
    ("maxmemory-policy", "allkeys-lfu"),
    ("maxmemory-policy", "VOLATILE-TTL"),
    ("maxmemory-samples", "10"),
    ("maxmemory-clients", "5%"),
    ("maxmemory-clients", "64mb"),
    ("active-defrag-ignore-bytes", "200mb"),
    ("cluster-link-sendbuf-limit", "1g"),
    ("client-query-buffer-limit", "100mb"),
    ("proto-max-bulk-len", "1mb"),
    ("maxclients", "5000"),
    ("loglevel", "WARNING"),
    ("appendfsync", "no"),
    ("auto-aof-rewrite-percentage", "50"),
    ("auto-aof-rewrite-min-size", "32mb"),
    ("lua-time-limit", "3000"),
    ("busy-reply-threshold", "2500"),
    ("hz", "1000"),
    ("hz", "0"),
    ("save", "900 1 300 10"),
    ("save", "03600 01"),
    ("save", ""),
    ("client-output-buffer-limit", "pubsub 64mb 16mb 90"),
    ("client-output-buffer-limit", "normal 0 0 0 replica 4mb 2mb 30"),
    ("oom-score-adj-values", "0 100 900"),
    ("latency-tracking-info-percentiles", "50 90 99.99"),
    ("latency-tracking-info-percentiles", ""),
    ("shutdown-on-sigterm", "now save"),
    ("shutdown-on-sigint", "force"),
    ("shutdown-timeout", "3"),
    ("slave-priority", "50"),
    ("repl-ping-slave-period", "5"),
    ("min-slaves-max-lag", "20"),
    ("repl-timeout", "30"),
    ("masteruser", "someone"),
    ("cluster-announce-hostname", "a-b.c"),
    ("proc-title-template", "{title} {port}"),
    ("ignore-warnings", "ARM64-COW-BUG"),
    ("active-expire-effort", "5"),
    ("lfu-log-factor", "20"),
    ("tracking-table-max-keys", "100"),
    ("jemalloc-bg-thread", "no"),
]


@pytest.mark.parametrize("name,value", SAMPLE, ids=[f"{n}={v}" for n, v in SAMPLE])
def test_set_then_get_reads_back_as_redis(k, r, name, value):
    assert cset(k, name, value) == cset(r, name, value) is True
    assert cget(k, name) == cget(r, name)
    # Under its other name (a parameter with an alias) too.
    other = name.replace("ziplist", "listpack").replace("slave", "replica")
    assert cget(k, other) == cget(r, other)


def test_get_takes_several_patterns_case_insensitively(k, r):
    for args in (["hash-max-*", "zset-max-*", "timeout"],
                 ["MAXMEM*", "maxmemory"],
                 ["*keyspace*", "*LAZYFREE*", "nosuch"],
                 ["lua-time-limit", "busy-*"]):
        assert cget(k, *args) == cget(r, *args), args
    # An exact name answers under the caller's spelling, once.
    assert cget(k, "MAXMEMORY", "maxmemory") == cget(r, "MAXMEMORY", "maxmemory") == {"MAXMEMORY": "0"}
    assert cget(k, "nosuch") == cget(r, "nosuch") == {}


def test_get_answers_a_map_in_resp3(keel_server, ref_redis):
    replies = []
    for s in (keel_server, ref_redis):
        with s.client(protocol=3, decode_responses=True) as c:
            reply = c.execute_command("CONFIG", "GET", "*-max-*-entries", "maxmemory")
            assert isinstance(reply, dict)
            replies.append(reply)
    assert replies[0] == replies[1]


# (name, value) pairs both servers refuse with the same error.
INVALID = [
    ("timeout", "abc"),
    ("timeout", "01"),
    ("timeout", "-1"),
    ("timeout", "2147483648"),
    ("tcp-keepalive", "+5"),
    ("maxclients", "0"),
    ("maxclients", "-1"),
    ("slowlog-max-len", "-1"),
    ("slowlog-log-slower-than", "-2"),
    ("latency-monitor-threshold", "1.5"),
    ("hash-max-ziplist-entries", "1kb"),
    ("hash-max-listpack-entries", "-1"),
    ("hash-max-listpack-value", "-1"),
    ("zset-max-ziplist-value", "1tb"),
    ("list-max-listpack-size", "2147483648"),
    ("hll-sparse-max-bytes", "lots"),
    ("set-max-intset-entries", "9223372036854775808"),
    ("lazyfree-lazy-expire", "true"),
    ("activerehashing", "1"),
    ("maxmemory", "foo"),
    ("maxmemory", "-1"),
    ("maxmemory", "1.5gb"),
    ("maxmemory-policy", "bogus"),
    ("maxmemory-policy", ""),
    ("maxmemory-clients", "101%"),
    ("maxmemory-clients", "-5%"),
    ("proto-max-bulk-len", "1kb"),
    ("proto-max-bulk-len", "-5"),
    ("client-query-buffer-limit", "0"),
    ("appendfsync", "sometimes"),
    ("loglevel", "loud"),
    ("oom-score-adj", "maybe"),
    ("busy-reply-threshold", "-1"),
    ("lua-time-limit", "x"),
    ("auto-aof-rewrite-percentage", "-1"),
    ("auto-aof-rewrite-min-size", "big"),
    ("repl-timeout", "0"),
    ("hz", "x"),
    ("notify-keyspace-events", "Q"),
    ("notify-keyspace-events", "KE "),
    ("save", "900"),
    ("save", "0 1"),
    ("save", "900 -1"),
    ("save", "900 1 "),
    ("client-output-buffer-limit", "master 1 2 3"),
    ("client-output-buffer-limit", "normal 1 2"),
    ("client-output-buffer-limit", "normal 1 2 x"),
    ("oom-score-adj-values", "1 2"),
    ("oom-score-adj-values", "3000 0 0"),
    ("latency-tracking-info-percentiles", "101"),
    ("latency-tracking-info-percentiles", "x"),
    ("shutdown-on-sigint", "save nosave"),
    ("shutdown-on-sigint", "sometimes"),
    ("shutdown-on-sigint", ""),
    ("proc-title-template", "{nope}"),
    ("proc-title-template", "{title}"),
    ("cluster-announce-hostname", "a_b"),
    # Names, not values.
    ("nosuch", "1"),
    ("daemonize", "yes"),
    ("databases", "1"),
    ("replicaof", "no one"),
    ("slaveof", "no one"),
    ("dir", "/tmp"),
    ("dbfilename", "x.rdb"),
    ("io-threads", "4"),
]


@pytest.mark.parametrize("name,value", INVALID, ids=[f"{n}={v}" for n, v in INVALID])
def test_bad_values_are_refused_as_redis_refuses_them(k, r, name, value):
    before_k, before_r = cget(k, name), cget(r, name)
    ours, theirs = cset(k, name, value), cset(r, name, value)
    assert str(ours).startswith("error: ")
    assert ours == theirs
    assert cget(k, name) == before_k and cget(r, name) == before_r


def test_set_of_several_pairs_is_atomic(k, r):
    for c in (k, r):
        assert cset(c, "timeout", "123", "tcp-keepalive", "77", "hash-max-ziplist-entries", "5") is True
        assert cget(c, "timeout", "tcp-keepalive", "hash-max-listpack-entries") == {
            "timeout": "123", "tcp-keepalive": "77", "hash-max-listpack-entries": "5"}
    # Each bad set leaves every parameter as it was, and both servers name
    # the same culprit.
    for pairs in (["timeout", "1", "tcp-keepalive", "2", "maxmemory", "foo"],
                  ["timeout", "1", "maxmemory", "1mb", "nosuch", "1"],
                  ["maxmemory", "foo", "nosuch", "1"],  # names are checked first
                  ["timeout", "1", "daemonize", "yes"],
                  ["timeout", "1", "dir", "/tmp"],
                  ["timeout", "1", "TIMEOUT", "2"],
                  ["timeout", "1", "notify-keyspace-events", "KEA", "save", "1"],
                  ["maxmemory", "1mb", "maxmemory-policy", "allkeys-lru", "lua-time-limit", "-1"]):
        before = [cget(c, "*") for c in (k, r)]
        ours, theirs = cset(k, *pairs), cset(r, *pairs)
        assert str(ours).startswith("error: ") and ours == theirs, pairs
        assert [cget(c, "*") for c in (k, r)] == before, pairs
    # A name and its alias are two parameters to Redis: the later one wins.
    for c in (k, r):
        assert cset(c, "hash-max-ziplist-entries", "1", "hash-max-listpack-entries", "2") is True
        assert cget(c, "hash-max-ziplist-entries") == {"hash-max-ziplist-entries": "2"}


def test_argument_errors_as_redis(k, r):
    for args in (["SET", "timeout", "1", "tcp-keepalive"], ["SET", "timeout"], ["GET"],
                 ["REWRITE"], ["REWRITE", "x"], ["RESETSTAT", "x"], ["NOSUCH"]):
        errors = []
        for c in (k, r):
            with pytest.raises(redis.ResponseError) as e:
                c.execute_command("CONFIG", *args)
            errors.append(str(e.value))
        assert errors[0] == errors[1], args


def fill(server, n: int):
    """Writes n 1 KB values in pipelined batches; returns the first error."""
    with server.raw(timeout=30) as c:
        for start in range(0, n, 200):
            for rep in c.pipeline([("SET", f"fill:{i}", b"v" * 1024) for i in range(start, start + 200)]):
                if rep != ("simple", b"OK"):
                    return rep
    return None


@pytest.mark.parametrize("kind", ["keel", "redis"])
def test_maxmemory_and_policy_take_effect(server_factory, kind):
    s = server_factory(kind, shards=2)
    c = s.client(decode_responses=True)
    assert cset(c, "maxmemory", "4mb", "maxmemory-policy", "noeviction") is True
    err = fill(s, 16_000)
    assert err == ("error", b"OOM command not allowed when used memory > 'maxmemory'."), err
    # An LFU policy evicts (keel runs it as LRU) and reads back as set.
    assert cset(c, "maxmemory-policy", "allkeys-lfu") is True
    assert cget(c, "maxmemory-policy") == {"maxmemory-policy": "allkeys-lfu"}
    assert fill(s, 16_000) is None
    assert 0 < c.dbsize() < 16_000
    assert cset(c, "maxmemory", "0") is True
    assert c.set("after", "x") is True


def test_proto_max_bulk_len_takes_effect(k, keel_server):
    assert cset(k, "proto-max-bulk-len", "1mb") is True
    # A connection opened after the change (keel reads the limit when a
    # connection starts; Redis at once).
    c = keel_server.client(decode_responses=True)
    with pytest.raises(redis.ResponseError) as e:
        c.setrange("big", 2 * 1024 * 1024, "x")
    assert "string exceeds maximum allowed size (proto-max-bulk-len)" in str(e.value)
    assert c.setrange("small", 1000, "x") == 1001
    c.delete("big", "small")
    c.close()


def test_lua_time_limit_takes_effect(tmp_path_factory):
    s = start_keel(tmp_path_factory.mktemp("keel-config-busy"), shards=2)
    try:
        assert cset(s.client(decode_responses=True), "lua-time-limit", "100") is True
        runner = s.raw(timeout=10)
        started = time.monotonic()
        runner.send("EVAL", "local i = 0 while true do i = i + 1 end", "0")
        busy, late_pong = None, None
        while time.monotonic() - started < 8 and busy is None:
            with s.raw(timeout=1) as c:
                try:
                    reply = c.call("PING")
                except OSError:
                    continue  # keel: this connection landed on the busy core
                if reply[0] == "error":
                    busy = reply[1]
                    assert c.call("SCRIPT", "KILL") == ("simple", b"OK")
                elif time.monotonic() - started > 1:
                    late_pong = reply
            time.sleep(0.05)
        assert busy is not None and busy.startswith(b"BUSY"), busy
        # With the default threshold (5 s) PINGs would still get PONG here.
        assert late_pong is None
        assert runner.read_reply()[0] == "error"
        runner.close()
    finally:
        _checked_stop(s)


def test_rewrite_without_a_config_file(k, r):
    for c in (k, r):
        with pytest.raises(redis.ResponseError, match="The server is running without a config file"):
            c.execute_command("CONFIG", "REWRITE")


@pytest.mark.skipif(TARGET != "keel", reason="keel's own parameters")
def test_keel_parameters(k):
    assert cset(k, "read-max-lag", "500") is True
    assert cget(k, "read-max-lag") == {"read-max-lag": "500"}
    assert cset(k, "lua-memory-limit", "128mb") is True
    assert cget(k, "lua-memory-limit") == {"lua-memory-limit": str(128 << 20)}
    assert cset(k, "read-max-lag", "soon") == (
        "error: CONFIG SET failed (possibly related to argument 'read-max-lag') - "
        "argument couldn't be parsed into an integer")
    for name in ("shards", "cross-core-queue-depth", "max-multibulk-len", "port", "bind",
                 "appendonly"):
        now = cget(k, name)[name]
        other = "yes" if now == "no" else "2" if now in ("1", "1mb") else "1"
        assert cset(k, name, other) == (
            f"error: CONFIG SET failed (possibly related to argument '{name}') - "
            "can't set immutable config"), name
        # The value it has is the no-op it is (Redis's "CONFIG sanity").
        assert cset(k, name, now) is True, name
        assert cget(k, name) == {name: now}
    # Immutable in Redis too: refused whatever the value.
    assert cset(k, "daemonize", "no").startswith("error:")
    # The replication backlog's cap changes at runtime, as in Redis.
    before = cget(k, "repl-backlog-size")["repl-backlog-size"]
    assert cset(k, "repl-backlog-size", "2mb") is True
    assert cget(k, "repl-backlog-size") == {"repl-backlog-size": str(2 << 20)}
    assert cset(k, "repl-backlog-size", before) is True


@pytest.mark.skipif(TARGET != "keel", reason="keel's TOML configuration file")
def test_rewrite_saves_what_config_set_changed(tmp_path):
    """CONFIG REWRITE keeps the file's comments, updates a parameter the file
    sets in place and saves the rest in its [redis] table; after a restart
    CONFIG GET shows every value set, applied ones included."""
    conf = tmp_path / "keel.toml"
    conf.write_text("# my node\nmaxclients = 100   # ours\nloglevel = \"notice\"\n")
    (tmp_path / "data").mkdir()
    s = start_keel(tmp_path / "data", shards=2, extra_args=[str(conf)])
    try:
        c = s.client(decode_responses=True)
        assert c.config_get("maxclients") == {"maxclients": "100"}
        c.config_set("maxclients", 200)
        c.config_set("maxmemory", "1mb")
        c.config_set("notify-keyspace-events", "KEA")
        c.config_set("hash-max-listpack-entries", 2)
        c.config_set("slowlog-max-len", 7)
        assert c.config_rewrite() in (True, "OK")
        text = conf.read_text()
        assert text.startswith("# my node\nmaxclients = 200   # ours\n"), text
        assert "[redis]" in text and "notify-keyspace-events" in text
        s.stop()
        s.start()
        c = s.client(decode_responses=True)
        got = c.config_get("*")
        assert got["maxclients"] == "200"
        assert got["maxmemory"] == str(1 << 20)
        assert got["notify-keyspace-events"] == "AKE"
        assert got["hash-max-listpack-entries"] == "2"
        assert got["slowlog-max-len"] == "7"
        # Applied, not only shown: the threshold packs no third field.
        c.hset("h", mapping={"a": 1, "b": 2, "c": 3})
        assert c.object("encoding", "h") == "hashtable"
        # A second rewrite with nothing changed leaves the file as it is.
        assert c.config_rewrite() in (True, "OK")
        assert conf.read_text() == text
    finally:
        _checked_stop(s)


@pytest.mark.skipif(TARGET != "keel", reason="keel's TOML configuration file")
def test_a_bad_redis_table_refuses_to_start(tmp_path):
    conf = tmp_path / "keel.toml"
    conf.write_text("[redis]\nmaxmemory = \"lots\"\n")
    proc = subprocess.run([KEEL_BIN, str(conf), "--port", "0", "--dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=20)
    assert proc.returncode != 0
    assert "[redis]" in proc.stderr and "maxmemory" in proc.stderr, proc.stderr

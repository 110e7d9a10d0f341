"""The server commands operators reach for — SLOWLOG, LATENCY, MONITOR,
CLIENT KILL/PAUSE/UNPAUSE/REPLY/UNBLOCK/NO-TOUCH, MEMORY STATS/DOCTOR —
beside a private redis-server where the replies are comparable (shapes,
help and error texts), and their behaviour on a keel whose connections sit
on different cores (`--shards 2`)."""

from __future__ import annotations

import socket
import threading
import time

import pytest
import redis

from conftest import _checked_stop, start_keel


@pytest.fixture
def keel(tmp_path):
    s = start_keel(tmp_path, shards=2)
    yield s
    _checked_stop(s)


@pytest.fixture
def redis_ref(server_factory):
    """A private redis-server (these tests change its configuration)."""
    return server_factory("redis", extra=["--enable-debug-command", "yes"])


def both(keel, ref, *cmd):
    with keel.raw() as k, ref.raw() as r:
        return k.call(*cmd), r.call(*cmd)


def same(keel, ref, *cmd):
    got, want = both(keel, ref, *cmd)
    assert got == want, (cmd, got, want)
    return got


def clients_on_every_core(server, n=8):
    """Enough connections that every core of a 2-core keel has some."""
    cs = [server.client() for _ in range(n)]
    for c in cs:
        c.ping()
    return cs


# -- SLOWLOG -------------------------------------------------------------------

def test_slowlog_replies_as_redis(keel, redis_ref):
    for cmd in (("SLOWLOG", "HELP"), ("SLOWLOG", "GET", "-2"), ("SLOWLOG", "GET", "x"),
                ("SLOWLOG", "GET", "1", "2"), ("SLOWLOG", "LEN", "x"), ("SLOWLOG", "RESET", "x"),
                ("SLOWLOG", "nosuch"), ("SLOWLOG",)):
        same(keel, redis_ref, *cmd)
    logs = []
    for s in (keel, redis_ref):
        c = s.client()
        c.config_set("slowlog-log-slower-than", 0)
        c.slowlog_reset()
        c.client_setname("me")
        c.sadd("set", *range(3, 34))
        c.sadd("set", "foo", "A" * 129)
        logs.append(c.slowlog_get(2))
    k, r = logs
    for ke, re_ in zip(k, r):
        assert ke["command"] == re_["command"]
        assert ke["client_name"] == re_["client_name"] == b"me"
        assert set(ke) == set(re_)
    assert k[0]["command"].endswith(b"A... (1 more bytes)")
    assert k[1]["command"].endswith(b"31 ... (2 more arguments)")
    assert k[0]["id"] > k[1]["id"]


def test_slowlog_thresholds_and_length(keel, redis_ref):
    for s in (keel, redis_ref):
        c = s.client()
        c.config_set("slowlog-log-slower-than", 0)
        c.config_set("slowlog-max-len", 10)
        for _ in range(100):
            c.ping()
        assert c.slowlog_len() == 10
        assert len(c.slowlog_get(5)) == 5
        assert len(c.execute_command("SLOWLOG", "GET", "-1")) == 10
        c.config_set("slowlog-log-slower-than", -1)
        c.slowlog_reset()
        c.ping()
        assert c.slowlog_len() == 0
        c.config_set("slowlog-log-slower-than", 100000)
        c.ping()
        assert c.slowlog_len() == 0
        c.execute_command("DEBUG", "SLEEP", "0.2")
        (e,) = c.slowlog_get()
        assert e["command"] == b"DEBUG SLEEP 0.2" and e["duration"] >= 100000
        c.config_set("slowlog-max-len", 0)
        c.config_set("slowlog-log-slower-than", 0)
        c.ping()
        assert c.slowlog_len() == 0


def test_slowlog_merges_every_core(keel):
    admin = keel.client()
    admin.config_set("slowlog-log-slower-than", 0)
    admin.slowlog_reset()
    cs = clients_on_every_core(keel)
    addrs = {}
    for i, c in enumerate(cs):
        c.client_setname(f"c{i}")
        # Keys of both shards: some run on the connection's core, some are
        # sent to the other core's shard in a pipeline batch.
        p = c.pipeline(transaction=False)
        for j in range(6):
            p.set(f"key:{i}:{j}", j)
        p.execute()
        addrs[f"c{i}".encode()] = c.client_info()["addr"].encode()
    log = admin.slowlog_get(-1)
    sets = [e for e in log if e["command"].startswith(b"SET key:")]
    assert len(sets) == len(cs) * 6
    ids = [e["id"] for e in log]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == len(ids)
    for e in sets:
        i = int(e["command"].split(b":")[1])
        assert e["client_name"] == f"c{i}".encode()
        assert e["client_address"] == addrs[e["client_name"]]
    # The ids keep growing after a reset; LEN counts every core.
    top = ids[0]
    admin.slowlog_reset()
    cs[-1].ping()
    assert admin.slowlog_get(1)[0]["id"] > top
    assert admin.slowlog_len() == 3  # RESET (logged once done), PING, GET


# -- LATENCY -------------------------------------------------------------------

def test_latency_monitor_as_redis(keel, redis_ref):
    for cmd in (("LATENCY", "HELP"), ("LATENCY", "nosuch"), ("LATENCY", "HISTORY"),
                ("LATENCY", "GRAPH"), ("LATENCY", "GRAPH", "command"), ("LATENCY", "LATEST"),
                ("LATENCY", "DOCTOR"), ("LATENCY", "HISTORY", "command"), ("LATENCY", "RESET")):
        same(keel, redis_ref, *cmd)
    for s in (keel, redis_ref):
        c = s.client()
        c.config_set("latency-monitor-threshold", 0)
        c.execute_command("DEBUG", "SLEEP", "0.05")
        assert c.execute_command("LATENCY", "LATEST") == []
        c.config_set("latency-monitor-threshold", 20)
        c.execute_command("DEBUG", "SLEEP", "0.05")
        (name, when, last, worst), = [e for e in c.execute_command("LATENCY", "LATEST")
                                      if e[0] == b"command"]
        assert abs(when - time.time()) < 5 and 50 <= last < 1000 and worst >= last
        hist = c.execute_command("LATENCY", "HISTORY", "command")
        assert len(hist) == 1 and hist[0][1] == last
        graph = c.execute_command("LATENCY", "GRAPH", "command")
        assert graph.startswith(b"command - high %d ms, low %d ms" % (last, last))
        assert b"latency spikes" in c.execute_command("LATENCY", "DOCTOR")
        assert c.execute_command("LATENCY", "RESET", "nosuch") == 0
        assert c.execute_command("LATENCY", "RESET") == 1
        assert c.execute_command("LATENCY", "LATEST") == []
        c.config_set("latency-monitor-threshold", 0)


def test_latency_samples_from_every_core(keel):
    admin = keel.client()
    admin.config_set("latency-monitor-threshold", 10)
    threads = [threading.Thread(target=c.execute_command, args=("DEBUG", "SLEEP", "0.03"))
               for c in clients_on_every_core(keel, 4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    (e,) = admin.execute_command("LATENCY", "LATEST")
    assert e[0] == b"command" and e[3] >= 30
    # Samples of one second merge into one.
    assert 1 <= len(admin.execute_command("LATENCY", "HISTORY", "command")) <= 2


# -- MONITOR -------------------------------------------------------------------

def test_monitor_sees_other_connections_commands(keel):
    c = keel.client()
    c.set("before", "x")
    with keel.raw() as mon:
        assert mon.call("MONITOR") == ("simple", b"OK")
        time.sleep(0.05)
        others = clients_on_every_core(keel, 4)
        for i, o in enumerate(others):
            o.set(f"k{i}", 'v "q"\n')
        others[0].get("k0")
        lines = [mon.read_reply() for _ in range(4 + 4 + 1)]
        text = [l[1].decode() for l in lines]
        assert all(l[0] == "simple" for l in lines)
        assert not any("before" in t for t in text)
        sets = [t for t in text if '"SET"' in t]
        assert len(sets) == 4
        addr = others[0].client_info()["addr"]
        assert any(t.endswith(f'[0 {addr}] "SET" "k0" "v \\"q\\"\\n"') for t in sets), sets
        assert f'[0 {addr}] "GET" "k0"' in text[-1]
        when = float(text[-1].split()[0])
        assert abs(when - time.time()) < 5
        # RESET leaves MONITOR mode.
        assert mon.call("RESET") == ("simple", b"RESET")
        others[0].set("after", 1)
        assert mon.call("PING") == ("simple", b"PONG")


def test_monitor_inside_multi_is_refused_as_redis(keel, redis_ref):
    for s in (keel, redis_ref):
        with s.raw() as c:
            c.call("MULTI")
            assert c.call("MONITOR") == ("simple", b"QUEUED")
            assert c.call("EXEC") == ("array", [("error", b"ERR MONITOR isn't allowed for DENY BLOCKING client")])
            assert c.call("PING") == ("simple", b"PONG")
    same(keel, redis_ref, "MONITOR", "x")


@pytest.mark.parametrize("cmd", ["SAVE", "SHUTDOWN"])
def test_save_and_shutdown_inside_multi_are_refused_as_redis(keel, redis_ref, cmd):
    """Redis's no-multi commands: refused when queued, and EXEC aborts
    (SAVE inside EXEC would otherwise wait for shards the EXEC holds)."""
    got = []
    for s in (keel, redis_ref):
        with s.raw() as c:
            c.call("DEL", "nm")
            c.call("MULTI")
            c.call("SET", "nm", "bar")
            got.append((c.call(cmd), c.call("EXEC")[0], c.call("GET", "nm")))
    assert got[0] == got[1], got
    assert got[0][0] == ("error", b"ERR Command not allowed inside a transaction")


# -- CLIENT --------------------------------------------------------------------

CLIENT_ERRORS = [
    "client pause", "client pause abc", "client pause -1", "client pause 10 foo",
    "client pause 10 write x", "client unpause x", "client kill", "client kill 1.2.3.4:5",
    "client kill id", "client kill id abc", "client kill id 99999", "client kill type foo",
    "client kill foo bar", "client kill skipme maybe", "client kill user nouser",
    "client kill addr 1.2.3.4:5", "client kill laddr 1.2.3.4:5", "client kill type master",
    "client kill type pubsub", "client kill id 1 id", "client reply", "client reply foo",
    "client unblock", "client unblock abc", "client unblock 9999", "client unblock 9999 foo",
]


def test_client_errors_as_redis(keel, redis_ref):
    for cmd in CLIENT_ERRORS:
        same(keel, redis_ref, *cmd.split())


def test_client_kill(keel, redis_ref):
    for s in (keel, redis_ref):
        admin = s.client()
        victims = [s.raw() for _ in range(4)]
        ids = []
        for v in victims:
            ids.append(v.call("CLIENT", "ID")[1])
        assert admin.client_kill_filter(_id=ids[0]) == 1
        assert victims[0].read_until_closed() == b""
        assert victims[1].call("PING") == ("simple", b"PONG")
        addr = [l for l in admin.client_list() if l["id"] == str(ids[1])][0]["addr"]
        assert admin.client_kill(addr) is True
        assert victims[1].read_until_closed() == b""
        with pytest.raises(redis.ResponseError, match="No such client"):
            admin.client_kill(addr)
        # SKIPME yes (the default) spares the caller; TYPE normal takes the rest.
        assert admin.client_kill_filter(_type="normal") == 2
        for v in victims[2:]:
            assert v.read_until_closed() == b""
        assert admin.ping()
        with s.raw() as me:
            assert me.call("CLIENT", "KILL", "SKIPME", "no", "ID", str(me.call("CLIENT", "ID")[1])) == ("int", 1)
            assert me.read_until_closed() == b""


def test_client_kill_maxage_and_pubsub(keel):
    admin = keel.client()
    young = keel.raw()
    assert young.call("PING") == ("simple", b"PONG")
    assert admin.execute_command("CLIENT", "KILL", "MAXAGE", "100") == 0
    sub = keel.raw()
    sub.call("SUBSCRIBE", "ch")
    assert admin.client_kill_filter(_type="pubsub") == 1
    assert sub.read_until_closed() == b""
    assert young.call("PING") == ("simple", b"PONG")
    time.sleep(1.1)
    assert admin.execute_command("CLIENT", "KILL", "MAXAGE", "1") >= 1
    assert young.read_until_closed() == b""


def test_client_pause_write_holds_writes_not_reads(keel):
    admin = keel.client()
    cs = clients_on_every_core(keel, 4)
    cs[0].set("k", "old")
    assert admin.client_pause(10000, all=False)
    done = []
    threads = [threading.Thread(target=lambda c=c, i=i: done.append(c.set(f"w{i}", i)))
               for i, c in enumerate(cs)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    assert done == []
    # Reads go through on every core, and the paused clients count as blocked.
    assert [c.get("k") for c in cs] == [b"old"] * 4
    assert admin.info("clients")["blocked_clients"] == 4
    assert admin.client_unpause()
    for t in threads:
        t.join(5)
    assert done == [True] * 4
    assert admin.mget([f"w{i}" for i in range(4)]) == [b"0", b"1", b"2", b"3"]


def test_client_pause_all_ends_by_itself(keel):
    admin, other = keel.client(), keel.client()
    admin.client_pause(300)
    t0 = time.time()
    assert other.get("k") is None
    assert 0.2 < time.time() - t0 < 3


def test_client_unblock_wakes_blpop(keel, redis_ref):
    for s in (keel, redis_ref):
        admin = s.client()
        for reason, expect in ((None, None), ("ERROR", "client unblocked via CLIENT UNBLOCK")):
            with s.raw() as b:
                bid = b.call("CLIENT", "ID")[1]
                b.send("BLPOP", "nolist", 0)
                time.sleep(0.2)
                args = ["CLIENT", "UNBLOCK", bid] + ([reason] if reason else [])
                assert admin.execute_command(*args) == 1
                got = b.read_reply()
                if expect is None:
                    assert got == ("nilarray",), got
                else:
                    assert got == ("error", b"UNBLOCKED " + expect.encode())
                assert b.call("PING") == ("simple", b"PONG")
                assert admin.execute_command("CLIENT", "UNBLOCK", bid) == 0


def test_client_reply_off_and_skip(keel, redis_ref):
    for s in (keel, redis_ref):
        with s.raw() as c:
            c.send("CLIENT", "REPLY", "OFF")
            c.send("SET", "a", "1")
            c.send("CLIENT", "REPLY", "ON")
            assert c.read_reply() == ("simple", b"OK")
            c.send("CLIENT", "REPLY", "SKIP")
            c.send("INCR", "a")
            c.send("GET", "a")
            assert c.read_reply() == ("bulk", b"2")
            assert c.call("PING") == ("simple", b"PONG")


def test_client_reply_off_lets_pubsub_through(keel, redis_ref):
    """Silenced replies never silence pub/sub: (un)subscribe confirmations
    and messages arrive in RESP2 and RESP3, and an invalidation push that
    comes out with a silenced reply arrives too, as from redis-server."""
    seen = {}
    for name, s in (("keel", keel), ("redis", redis_ref)):
        got = []
        with s.raw() as c, s.raw() as pub:
            c.send("CLIENT", "REPLY", "OFF")
            c.send("PSUBSCRIBE", "ch*")
            got.append(c.read_any())
            pub.call("PUBLISH", "channel", "hello")
            got.append(c.read_any())
            c.send("PUNSUBSCRIBE", "ch*")
            got.append(c.read_any())
        with s.raw() as c, s.raw() as pub:
            c.call("HELLO", "3")
            c.send("CLIENT", "REPLY", "OFF")
            c.send("SUBSCRIBE", "channel")
            c.send("PSUBSCRIBE", "ch*")
            got += [c.read_any(), c.read_any()]
            pub.call("PUBLISH", "channel", "hello")
            got += [c.read_any(), c.read_any()]
            c.send("UNSUBSCRIBE", "channel")
            c.send("PUNSUBSCRIBE", "ch*")
            got += [c.read_any(), c.read_any()]
        with s.raw() as c, s.raw() as other:
            c.call("HELLO", "3")
            c.call("CLIENT", "TRACKING", "ON")
            c.call("GET", "tracked")
            c.send("CLIENT", "REPLY", "OFF")
            other.call("SET", "tracked", "1")
            # The invalidation reaches the silenced client by itself.
            got.append(c.read_any())
            c.send("CLIENT", "REPLY", "ON")
            got.append(c.read_any())
        seen[name] = got
    assert seen["keel"] == seen["redis"]
    assert seen["keel"][1] == (
        "array",
        [("bulk", b"pmessage"), ("bulk", b"ch*"), ("bulk", b"channel"), ("bulk", b"hello")],
    )


def test_client_no_touch(keel):
    c = keel.client()
    c.set("k", "v")
    time.sleep(2.1)
    assert c.execute_command("CLIENT", "NO-TOUCH", "ON") == b"OK"
    c.get("k")
    assert c.object("idletime", "k") >= 2
    with pytest.raises(redis.ResponseError, match="syntax error"):
        c.execute_command("CLIENT", "NO-TOUCH", "maybe")
    c.execute_command("CLIENT", "NO-TOUCH", "OFF")
    c.get("k")
    assert c.object("idletime", "k") == 0


# -- MEMORY --------------------------------------------------------------------

def test_memory_stats_and_doctor(keel, redis_ref):
    for s in (keel, redis_ref):
        s.client().mset({f"k{i}": "x" * 100 for i in range(100)})
    k, r = both(keel, redis_ref, "MEMORY", "STATS")
    kmap = dict(zip([x[1] for x in k[1][::2]], k[1][1::2]))
    rmap = dict(zip([x[1] for x in r[1][::2]], r[1][1::2]))
    assert list(kmap) == list(rmap)
    assert kmap[b"keys.count"] == ("int", 100)
    assert kmap[b"total.allocated"][1] >= 100 * 100
    assert kmap[b"peak.allocated"][1] >= kmap[b"total.allocated"][1]
    assert kmap[b"dataset.bytes"][1] + kmap[b"overhead.total"][1] == kmap[b"total.allocated"][1]
    db0 = dict(zip([x[1] for x in kmap[b"db.0"][1][::2]], kmap[b"db.0"][1][1::2]))
    assert db0[b"overhead.hashtable.main"][1] > 0
    same(keel, redis_ref, "MEMORY", "DOCTOR")
    for cmd in (("MEMORY", "STATS", "x"), ("MEMORY", "DOCTOR", "x"), ("MEMORY", "PURGE"),
                ("MEMORY", "nosuch"), ("MEMORY", "HELP")):
        same(keel, redis_ref, *cmd)
    assert keel.client().execute_command("MEMORY", "MALLOC-STATS")
    with keel.raw() as c:
        c.call("HELLO", "3")
        reply = c.call("MEMORY", "STATS")
        assert reply[0] == "map"


# -- INFO errorstats / commandstats --------------------------------------------

def test_errorstats_and_rejected_calls_as_redis(keel, redis_ref):
    def stats(s):
        c = s.client()
        c.config_resetstat()
        c.set("str", "v")
        for cmd in (("asdf",), ("set", "k"), ("lpush", "str", "x"), ("hget", "str", "f"),
                    ("get", "k", "extra"), ("incr", "str")):
            with pytest.raises(redis.ResponseError):
                c.execute_command(*cmd)
        # Keys on both shards, pipelined (some sent to the other core).
        p = c.pipeline(transaction=False)
        for i in range(8):
            p.lpush(f"str{i}", "x")
            p.set(f"str{i}", "v")
            p.lpush(f"str{i}", "x")
        p.execute(raise_on_error=False)
        errs = {k: v for k, v in c.info("errorstats").items()}
        cmd = c.info("commandstats")
        picked = {k: (v["calls"], v["rejected_calls"], v["failed_calls"])
                  for k, v in cmd.items() if k in ("cmdstat_set", "cmdstat_lpush", "cmdstat_get",
                                                    "cmdstat_incr", "cmdstat_hget")}
        return errs, picked, c.info("stats")["total_error_replies"]

    assert stats(keel) == stats(redis_ref)


def test_blocked_command_logged_once_answered(keel, redis_ref):
    for s in (keel, redis_ref):
        c = s.client()
        c.config_set("slowlog-log-slower-than", 0)
        with s.raw() as b:
            b.send("BLPOP", "l", 0)
            time.sleep(0.2)
            c.slowlog_reset()
            c.lpush("l", "foo")
            assert b.read_reply() == ("array", [("bulk", b"l"), ("bulk", b"foo")])
            time.sleep(0.05)
        newest = [e["command"] for e in c.slowlog_get(3)]
        assert b"BLPOP l 0" in newest, newest
        assert newest.index(b"BLPOP l 0") < newest.index(b"LPUSH l foo")


def test_commandstats_inside_exec_and_scripts_as_redis(keel, redis_ref):
    def stats(s):
        c = s.client()
        c.config_resetstat()
        p = c.pipeline(transaction=True)
        p.set("foo{t}", "bar")
        p.expire("foo{t}", 100)
        p.lpush("foo{t}", "x")
        p.execute(raise_on_error=False)
        c.eval("redis.call('set', KEYS[1], 0); redis.pcall('lpush', KEYS[1], 1); "
               "redis.call('expire', KEYS[1], 100)", 1, "mykey")
        cmd = c.info("commandstats")
        return ({k: (v["calls"], v["rejected_calls"], v["failed_calls"]) for k, v in cmd.items()
                 if k in ("cmdstat_set", "cmdstat_expire", "cmdstat_lpush", "cmdstat_multi",
                          "cmdstat_exec", "cmdstat_eval")},
                c.info("errorstats"))

    assert stats(keel) == stats(redis_ref)


def test_latency_histogram(keel, redis_ref):
    for s in (keel, redis_ref):
        c = s.client(protocol=3)
        c.config_resetstat()
        h = c.execute_command("LATENCY", "HISTOGRAM")
        assert list(h) == [b"config|resetstat"]
        c.set("a", "b")
        c.set("c", "d")
        c.get("a")
        c.client_id()
        c.execute_command("CLIENT", "LIST")
        h = c.execute_command("LATENCY", "HISTOGRAM", "set", "client", "nosuch", "zadd")
        assert sorted(h) == [b"client|id", b"client|list", b"set"]
        assert h[b"set"][b"calls"] == 2
        buckets = h[b"set"][b"histogram_usec"]
        # Cumulative counts over growing bucket bounds, ending at the calls.
        assert list(buckets.values()) == sorted(buckets.values())
        assert list(buckets.values())[-1] == 2
        assert list(c.execute_command("LATENCY", "HISTOGRAM", "client|id")) == [b"client|id"]
        assert c.execute_command("LATENCY", "HISTOGRAM", "blabla") == {}


def test_client_list_flags_as_redis(keel, redis_ref):
    for s in (keel, redis_ref):
        admin = s.client()
        with s.raw() as mon, s.raw() as sub, s.raw() as blocked:
            ids = {}
            for name, c in (("mon", mon), ("sub", sub), ("blocked", blocked)):
                ids[name] = str(c.call("CLIENT", "ID")[1])
            mon.call("MONITOR")
            sub.call("SUBSCRIBE", "ch")
            blocked.send("BLPOP", "nolist", 0)
            time.sleep(0.2)
            flags = {l["id"]: l["flags"] for l in admin.client_list()}
            assert flags[ids["mon"]] == "O"
            assert flags[ids["sub"]] == "P"
            assert flags[ids["blocked"]] == "b"
            assert flags[str(admin.client_id())] == "N"


def test_client_killed_while_paused_never_runs(keel):
    admin = keel.client()
    admin.client_pause(10000, all=False)
    try:
        with keel.raw() as victim:
            vid = victim.call("CLIENT", "ID")[1]
            victim.send("SET", "never", "1")
            time.sleep(0.2)
            assert admin.client_kill_filter(_id=vid) == 1
            assert victim.read_until_closed() == b""
    finally:
        admin.client_unpause()
    assert admin.get("never") is None


def test_server_commands_need_auth(server_factory):
    s = server_factory("keel", shards=2, extra=["--requirepass", "pw"])
    with s.raw() as c:
        for cmd in (("MEMORY", "STATS"), ("SLOWLOG", "GET"), ("LATENCY", "LATEST"), ("MONITOR",),
                    ("CLIENT", "KILL", "ID", "1")):
            got = c.call(*cmd)
            assert got[0] == "error" and got[1].startswith(b"NOAUTH"), (cmd, got)


def test_memory_stats_inside_multi(keel, redis_ref):
    for s in (keel, redis_ref):
        with s.raw() as c:
            c.call("MULTI")
            assert c.call("MEMORY", "STATS") == ("simple", b"QUEUED")
            assert c.call("MEMORY", "PURGE") == ("simple", b"QUEUED")
            kind, (stats, purge) = c.call("EXEC")
            assert stats[0] == "array" and stats[1][0] == ("bulk", b"peak.allocated")
            assert purge == ("simple", b"OK")

"""Streams through redis-py, beside a reference redis-server: XADD XRANGE
XREVRANGE XLEN XDEL XTRIM XREAD XSETID, consumer groups (XGROUP XREADGROUP
XACK XPENDING XCLAIM XAUTOCLAIM XINFO), errors included; a blocking XREAD and
XREADGROUP woken by an XADD from another connection; a job queue with two
consumers; streams and groups that survive a SIGKILL.

Replies are compared exactly except the fields that hold a time (idle times,
delivery and seen times), which are checked for range instead, and XINFO
STREAM's radix-tree-nodes (Redis's radix tree, keel's B-tree of blocks). The
random differential streams are in test_differential.py (families streams
and streams_xshard).
"""

from __future__ import annotations

import threading
import time

import pytest
import redis

from conftest import TARGET, _checked_stop, start_keel


def outcome(fn):
    try:
        return ("ok", fn())
    except redis.ResponseError as e:
        return ("err", str(e))


def both(k, r, *args):
    """Runs one command on keel and redis-server; the replies must match."""
    a = outcome(lambda: k.execute_command(*args))
    b = outcome(lambda: r.execute_command(*args))
    assert a == b, f"{args}: keel {a!r} redis {b!r}"
    return a


def raw(c):
    """A client that hands back replies as the server sent them (redis-py's
    stream callbacks guess options such as JUSTID from their own kwargs)."""
    c.response_callbacks = {}
    return c


@pytest.fixture
def clients(keel, ref):
    return raw(keel.client()), raw(ref.client())


def test_entries_ranges_and_trims_match_redis(clients):
    k, r = clients
    for i in range(1, 260):
        both(k, r, "XADD", "s", f"{i}-{i % 3}", "f", str(i), *(["g", "x"] if i % 7 == 0 else []))
    for args in [
        ("XLEN", "s"), ("XRANGE", "s", "-", "+", "COUNT", "5"), ("XREVRANGE", "s", "+", "-", "COUNT", "3"),
        ("XRANGE", "s", "(10-1", "(20-2"), ("XRANGE", "s", "50", "50"), ("XRANGE", "s", "-", "+", "COUNT", "0"),
        ("XDEL", "s", "3-0", "4-1", "999-0"), ("XLEN", "s"),
        ("XADD", "s", "MAXLEN", "~", "120", "300-0", "a", "b"), ("XLEN", "s"),
        ("XTRIM", "s", "MINID", "~", "200"), ("XTRIM", "s", "MINID", "=", "200"),
        ("XRANGE", "s", "-", "(201"), ("XADD", "s", "100-0", "late", "1"), ("XADD", "s", "0-0", "a", "b"),
        ("XADD", "s", "300-*", "a", "b"), ("XADD", "new", "NOMKSTREAM", "*", "a", "b"), ("EXISTS", "new"),
        ("XSETID", "s", "1-0"), ("XSETID", "s", "400-0", "ENTRIESADDED", "1"),
        ("XSETID", "s", "400-0", "ENTRIESADDED", "1000", "MAXDELETEDID", "350-0"), ("XADD", "s", "350-0", "a", "b"),
        ("XTRIM", "s", "MAXLEN", "0"), ("XLEN", "s"), ("TYPE", "s"), ("XRANGE", "s", "-", "+"),
        ("XADD", "s", "MAXLEN", "=", "1", "LIMIT", "5", "*", "a", "b"),
        ("XTRIM", "s", "LIMIT", "5"), ("XTRIM", "s"),
    ]:
        both(k, r, *args)
    k.set("str", "x"), r.set("str", "x")
    for args in [("XADD", "str", "1-0", "a", "b"), ("XRANGE", "str", "-", "+"), ("XLEN", "str"),
                 ("XREAD", "STREAMS", "str", "0"), ("XGROUP", "CREATE", "str", "g", "0")]:
        assert both(k, r, *args)[1].startswith("WRONGTYPE")


def test_node_limits_from_config_set_shape_approximate_trims(clients):
    """stream-node-max-entries / -bytes set the block size, so `~` trims
    with LIMIT remove what redis-server removes (Redis's stream unit)."""
    k, r = clients
    try:
        both(k, r, "CONFIG", "SET", "stream-node-max-entries", "10")
        for _ in range(100):
            k.execute_command("XADD", "nodes", "*", "xitem", "v")
            r.execute_command("XADD", "nodes", "*", "xitem", "v")
        for _ in range(2):
            k.execute_command("XADD", "nodes", "MAXLEN", "~", "55", "LIMIT", "30", "*", "xitem", "v")
            r.execute_command("XADD", "nodes", "MAXLEN", "~", "55", "LIMIT", "30", "*", "xitem", "v")
            both(k, r, "XLEN", "nodes")
        both(k, r, "CONFIG", "SET", "stream-node-max-entries", "2")
        for _ in range(3):
            k.execute_command("XADD", "few", "*", "xitem", "v")
            r.execute_command("XADD", "few", "*", "xitem", "v")
        both(k, r, "XTRIM", "few", "MAXLEN", "~", "0", "LIMIT", "1")
        both(k, r, "XTRIM", "few", "MAXLEN", "~", "0", "LIMIT", "2")
        # Without LIMIT, `~` deletes at most a hundred blocks' worth.
        both(k, r, "CONFIG", "SET", "stream-node-max-entries", "1")
        for _ in range(102):
            k.execute_command("XADD", "capped", "*", "xitem", "v")
            r.execute_command("XADD", "capped", "*", "xitem", "v")
        assert both(k, r, "XTRIM", "capped", "MAXLEN", "~", "1") == ("ok", 100)
        both(k, r, "XLEN", "capped")
        both(k, r, "CONFIG", "SET", "stream-node-max-entries", "0", "stream-node-max-bytes", "0")
        for _ in range(300):
            k.execute_command("XADD", "one-block", "*", "f", "v")
            r.execute_command("XADD", "one-block", "*", "f", "v")
        both(k, r, "XTRIM", "one-block", "MAXLEN", "~", "10")
    finally:
        for c in (k, r):
            c.execute_command("CONFIG", "SET", "stream-node-max-entries", "100", "stream-node-max-bytes", "4096")
            c.delete("nodes", "few", "one-block", "capped")


def test_xadd_errors_have_redis_texts(clients):
    k, r = clients
    both(k, r, "XADD", "e", "5-5", "a", "b")
    assert both(k, r, "XADD", "e", "5-5", "a", "b") == (
        "err", "The ID specified in XADD is equal or smaller than the target stream top item")
    for args in [("XADD", "e", "1", "a"), ("XADD", "e", "bad-id", "a", "b"), ("XADD", "e", "MAXLEN", "-1", "*", "a", "b"),
                 ("XADD", "e", "MINID", "1", "MAXLEN", "1", "*", "a", "b"), ("XADD", "e", "LIMIT", "1", "*", "a", "b"),
                 ("XADD", "e", "18446744073709551615-18446744073709551615", "a", "b"), ("XADD", "e", "*", "a", "b"),
                 ("XRANGE", "e", "(18446744073709551615-18446744073709551615", "+"), ("XRANGE", "e", "-", "(0-0")]:
        both(k, r, *args)


@pytest.mark.parametrize("protocol", [2, 3])
def test_xread_over_several_streams_in_both_protocols(keel, ref, protocol):
    k, r = raw(keel.client(protocol=protocol)), raw(ref.client(protocol=protocol))
    for key in ["a", "b", "c", "{t}x"]:
        for i in range(1, 6):
            both(k, r, "XADD", key, f"{i}-0", "n", str(i))
    for args in [
        ("XREAD", "STREAMS", "a", "b", "c", "0", "2", "$"), ("XREAD", "COUNT", "2", "STREAMS", "a", "c", "0", "0"),
        ("XREAD", "STREAMS", "a", "nokey", "5", "0"), ("XREAD", "STREAMS", "a", "b"),
        ("XREAD", "STREAMS", "a", ">"), ("XREAD", "GROUP", "g", "c", "STREAMS", "a", "0"),
    ]:
        both(k, r, *args)


def test_consumer_groups_match_redis(clients):
    k, r = clients
    for i in range(1, 11):
        both(k, r, "XADD", "q", f"{i}-0", "job", str(i))
    for args in [
        ("XGROUP", "CREATE", "q", "g", "0"), ("XGROUP", "CREATE", "q", "g", "0"),
        ("XGROUP", "CREATE", "none", "g", "$"), ("XGROUP", "CREATE", "none", "g", "$", "MKSTREAM"),
        ("XGROUP", "CREATE", "q", "late", "$", "ENTRIESREAD", "10"), ("XGROUP", "CREATECONSUMER", "q", "g", "idle"),
        ("XREADGROUP", "GROUP", "g", "alice", "COUNT", "3", "STREAMS", "q", ">"),
        ("XREADGROUP", "GROUP", "g", "bob", "COUNT", "2", "STREAMS", "q", ">"),
        ("XREADGROUP", "GROUP", "g", "alice", "STREAMS", "q", "0"),
        ("XREADGROUP", "GROUP", "g", "alice", "COUNT", "1", "STREAMS", "q", "1-0"),
        ("XREADGROUP", "GROUP", "nope", "alice", "STREAMS", "q", ">"),
        ("XREADGROUP", "GROUP", "g", "alice", "STREAMS", "q", "$"),
        ("XACK", "q", "g", "1-0", "2-0", "9-0"), ("XPENDING", "q", "g"),
        ("XDEL", "q", "3-0"), ("XREADGROUP", "GROUP", "g", "alice", "STREAMS", "q", "0"),
        ("XCLAIM", "q", "g", "carol", "0", "4-0", "5-0", "JUSTID"),
        ("XCLAIM", "q", "g", "carol", "0", "3-0", "6-0", "FORCE", "RETRYCOUNT", "5"),
        ("XAUTOCLAIM", "q", "g", "dave", "0", "0", "COUNT", "2"),
        ("XAUTOCLAIM", "q", "g", "dave", "0", "0", "JUSTID"),
        ("XPENDING", "q", "g"), ("XINFO", "GROUPS", "q"),
        ("XGROUP", "DELCONSUMER", "q", "g", "dave"), ("XGROUP", "SETID", "q", "g", "0", "ENTRIESREAD", "0"),
        ("XINFO", "GROUPS", "q"), ("XGROUP", "DESTROY", "q", "late"), ("XGROUP", "DESTROY", "q", "late"),
        ("XGROUP", "SETID", "q", "nope", "0"), ("XPENDING", "q", "nope"), ("XINFO", "CONSUMERS", "q", "nope"),
        ("XINFO", "STREAM", "nokey"), ("XGROUP", "CREATE", "q", "g"), ("XINFO", "FOO", "q"),
        ("XCLAIM", "q", "g", "c", "x", "1-0"), ("XCLAIM", "q", "g", "c", "0", "1-0", "BOGUS"),
        ("XAUTOCLAIM", "q", "g", "c", "0", "0", "COUNT", "0"),
    ]:
        both(k, r, *args)


def test_xpending_and_xinfo_times_are_plausible(clients):
    """The fields that hold a time differ between the servers by the time
    between the calls: compared with everything else masked, then checked."""
    k, r = clients
    for c in (k, r):
        for i in range(1, 6):
            c.xadd("t", {"f": i}, id=f"{i}-0")
        c.xgroup_create("t", "g", id="0")
        c.xreadgroup("g", "alice", {"t": ">"}, count=3)
    now = int(time.time() * 1000)
    ext_k = k.execute_command("XPENDING", "t", "g", "-", "+", "10")
    ext_r = r.execute_command("XPENDING", "t", "g", "-", "+", "10")
    assert [(e[0], e[1], e[3]) for e in ext_k] == [(e[0], e[1], e[3]) for e in ext_r]
    assert all(0 <= e[2] < 5000 for e in ext_k)
    both(k, r, "XPENDING", "t", "g", "IDLE", "100000", "-", "+", "10")
    both(k, r, "XPENDING", "t", "g", "-", "+", "10", "nobody")
    info_k = k.execute_command("XINFO", "STREAM", "t", "FULL")
    info_r = r.execute_command("XINFO", "STREAM", "t", "FULL")
    mask = lambda info: [v for i, v in enumerate(info) if info[i - 1] != b"radix-tree-nodes"]
    gk, gr = info_k[-1][0], info_r[-1][0]
    pend_k, pend_r = gk[gk.index(b"pending") + 1], gr[gr.index(b"pending") + 1]
    assert [(p[0], p[1], p[3]) for p in pend_k] == [(p[0], p[1], p[3]) for p in pend_r]
    assert all(abs(p[2] - now) < 5000 for p in pend_k)
    assert mask(info_k[:-1]) == mask(info_r[:-1])
    both(k, r, "XINFO", "STREAM", "t", "FULL", "COUNT")
    cons_k = k.execute_command("XINFO", "CONSUMERS", "t", "g")
    cons_r = r.execute_command("XINFO", "CONSUMERS", "t", "g")
    assert [c[:4] for c in cons_k] == [c[:4] for c in cons_r]
    assert 0 <= cons_k[0][5] < 5000
    plain_k = k.execute_command("XINFO", "STREAM", "t")
    plain_r = r.execute_command("XINFO", "STREAM", "t")
    assert mask(plain_k) == mask(plain_r)


def reader(port, out, name, *args):
    c = raw(redis.Redis(host="127.0.0.1", port=port, protocol=2))
    try:
        out[name] = c.execute_command(*args)
    except redis.ResponseError as e:
        out[name] = ("err", str(e))
    c.close()


def test_blocking_xread_is_woken_by_another_connection(keel):
    c = keel.client()
    c.xadd("feed", {"a": 1}, id="1-0")
    c.xgroup_create("feed", "g", id="$")
    out = {}
    threads = [
        threading.Thread(target=reader, args=(keel.port, out, "new", "XREAD", "BLOCK", "0", "STREAMS", "other", "feed", "$", "$")),
        threading.Thread(target=reader, args=(keel.port, out, "group", "XREADGROUP", "GROUP", "g", "w", "BLOCK", "5000",
                                              "STREAMS", "feed", ">")),
        threading.Thread(target=reader, args=(keel.port, out, "timeout", "XREAD", "BLOCK", "50", "STREAMS", "feed", "$")),
    ]
    for t in threads:
        t.start()
    time.sleep(0.4)
    assert out == {"timeout": None}
    c.xadd("feed", {"b": 2}, id="2-0")
    for t in threads:
        t.join(5)
        assert not t.is_alive()
    assert out["new"] == [[b"feed", [[b"2-0", [b"b", b"2"]]]]]
    assert out["group"] == [[b"feed", [[b"2-0", [b"b", b"2"]]]]]
    assert c.xpending("feed", "g")["pending"] == 1


def test_a_job_queue_with_two_consumers(keel):
    """Producers add jobs, two workers take them with XREADGROUP, acknowledge
    them, and a worker that died has its jobs claimed by the other."""
    c = keel.client()
    c.xgroup_create("jobs", "workers", id="$", mkstream=True)
    for i in range(20):
        c.xadd("jobs", {"job": i})
    done = {"w1": [], "w2": []}
    for _ in range(5):
        for w in ("w1", "w2"):
            got = c.xreadgroup("workers", w, {"jobs": ">"}, count=2)
            for _, entries in got:
                for eid, fields in entries:
                    done[w].append(int(fields[b"job"]))
                    if w == "w1":
                        c.xack("jobs", "workers", eid)
    # w2 never acknowledged: w1 takes its jobs over.
    assert sorted(done["w1"] + done["w2"]) == list(range(20))
    pending = c.xpending("jobs", "workers")
    assert pending["pending"] == 10 and pending["consumers"] == [{"name": b"w2", "pending": 10}]
    cursor, claimed, deleted = c.xautoclaim("jobs", "workers", "w1", 0, count=100)
    assert len(claimed) == 10 and deleted == [] and cursor == b"0-0"
    c.xack("jobs", "workers", *[e[0] for e in claimed])
    assert c.xpending("jobs", "workers")["pending"] == 0
    info = c.xinfo_groups("jobs")[0]
    assert info["last-delivered-id"] == c.xrevrange("jobs", count=1)[0][0]
    assert info["entries-read"] == 20 and info["lag"] == 0


@pytest.mark.skipif(TARGET == "redis", reason="keel's restart after SIGKILL")
def test_streams_and_groups_survive_sigkill(tmp_path):
    server = start_keel(tmp_path, shards=4, extra_args=["--appendonly", "yes", "--appendfsync", "always"])
    try:
        c = server.client()
        for key in ("s1", "s2", "s3"):
            for i in range(150):
                c.xadd(key, {"f": i, "key": key}, maxlen=120, approximate=i % 2 == 0)
            c.xdel(key, c.xrange(key, count=1)[0][0])
            c.xgroup_create(key, "g", id="0")
            c.xreadgroup("g", "alice", {key: ">"}, count=7)
            c.xreadgroup("g", "bob", {key: ">"}, count=3, noack=True)
            c.xclaim(key, "g", "carol", 0, [c.xrange(key, count=1)[0][0]])
        c.execute_command("XSETID", "s1", "99999999999999-5", "ENTRIESADDED", "500")
        want = {k: (c.xrange(k), c.xinfo_groups(k), c.xpending_range(k, "g", "-", "+", 100),
                    c.execute_command("XINFO", "STREAM", k, "FULL"), c.xinfo_stream(k))
                for k in ("s1", "s2", "s3")}
        c.close()
        server.proc.kill()
        server.proc.wait(10)
        server.start()
        c = server.client()
        for k, (entries, groups, pend, full, info) in want.items():
            assert c.xrange(k) == entries
            assert c.xinfo_groups(k) == groups
            assert [(p["message_id"], p["consumer"], p["times_delivered"]) for p in
                    c.xpending_range(k, "g", "-", "+", 100)] == \
                [(p["message_id"], p["consumer"], p["times_delivered"]) for p in pend]
            # Delivery and seen times come back exactly as they were.
            assert c.execute_command("XINFO", "STREAM", k, "FULL")[-1] == full[-1]
            assert c.xinfo_stream(k)["last-generated-id"] == info["last-generated-id"]
        assert c.xadd("s1", {"a": 1}, id="99999999999999-*") == b"99999999999999-6"
    finally:
        _checked_stop(server)


@pytest.mark.parametrize("protocol", [2, 3])
def test_streams_from_scripts_and_transactions(keel, ref, protocol):
    """XREAD's shape reaches Lua as Redis gives it (RESP2 pairs, RESP3 map
    after redis.setresp(3)); a script may not block; inside MULTI a BLOCK
    answers at once."""
    k, r = raw(keel.client(protocol=protocol)), raw(ref.client(protocol=protocol))
    for c in (k, r):
        c.execute_command("XADD", "{s}1", "1-0", "f", "v")
        c.execute_command("XGROUP", "CREATE", "{s}1", "g", "0")
    for script in ["return redis.call('XREAD','STREAMS',KEYS[1],'0')",
                   "redis.setresp(3); return redis.call('XREAD','STREAMS',KEYS[1],'0')",
                   "return redis.call('XREADGROUP','GROUP','g','c','STREAMS',KEYS[1],'>')",
                   "return redis.call('XREAD','BLOCK','10','STREAMS',KEYS[1],'$')",
                   "return redis.call('XPENDING',KEYS[1],'g')"]:
        both(k, r, "EVAL", script, "1", "{s}1")
    replies = []
    for c in (k, r):
        p = c.pipeline(transaction=True)
        p.execute_command("XREAD", "BLOCK", "0", "STREAMS", "{s}1", "$")
        p.execute_command("XLEN", "{s}1")
        replies.append(p.execute())
    assert replies[0] == replies[1] == [None, 1]


@pytest.mark.parametrize("action", ["destroy", "del", "settype"])
def test_a_blocked_xreadgroup_learns_its_group_or_key_is_gone(keel, ref, action):
    """As redis-server answers: NOGROUP when the group is destroyed,
    UNBLOCKED when the key is deleted or replaced."""
    got = []
    for server in (keel, ref):
        c = server.client()
        c.xadd("s", {"a": 1}, id="1-0")
        c.xgroup_create("s", "g", id="$")
        out = {}
        t = threading.Thread(target=reader, args=(server.port, out, "r", "XREADGROUP", "GROUP", "g", "c",
                                                  "BLOCK", "3000", "STREAMS", "s", ">"))
        t.start()
        time.sleep(0.3)
        if action == "destroy":
            c.xgroup_destroy("s", "g")
        else:
            c.delete("s")
            if action == "settype":
                c.set("s", "x")
        t.join(5)
        assert not t.is_alive()
        got.append(out.get("r"))
    assert got[0] == got[1]
    assert got[0][0] == "err" and got[0][1].startswith("NOGROUP" if action == "destroy" else "UNBLOCKED")


@pytest.mark.parametrize("how", ["DEL", "FLUSHDB", "FLUSHALL", "SET"])
def test_blocked_xreadgroup_learns_its_stream_is_gone(keel, ref, how):
    """A blocked XREADGROUP whose stream is deleted, flushed away or replaced
    gets redis-server's error at once, from a connection on another core."""
    got = {}
    for name, server in (("keel", keel), ("redis", ref)):
        with server.raw() as c, server.raw() as waiter:
            c.call("DEL", "gone")
            c.call("XADD", "gone", "666", "f", "v")
            c.call("XGROUP", "CREATE", "gone", "g", "$")
            waiter.send("XREADGROUP", "GROUP", "g", "alice", "BLOCK", "0", "STREAMS", "gone", ">")
            time.sleep(0.2)
            c.call(*{"DEL": ("DEL", "gone"), "FLUSHDB": ("FLUSHDB",), "FLUSHALL": ("FLUSHALL",),
                     "SET": ("SET", "gone", "x")}[how])
            waiter.sock.settimeout(5)
            got[name] = waiter.read_reply()
    assert got["keel"] == got["redis"], got
    assert got["keel"][0] == "error"


def test_xreadgroup_racing_a_delete_never_waits_forever(keel):
    """XREADGROUP BLOCK sent just before another connection deletes its
    stream: whether the delete lands before the read, between its first
    try and its registration, or after it blocked, the reader is answered
    with an error, never left waiting on a group that no longer exists."""
    outcomes = set()
    with keel.raw() as c:
        for i in range(60):
            key = f"race{i}"
            c.call("XGROUP", "CREATE", key, "g", "$", "MKSTREAM")
            with keel.raw() as waiter:
                waiter.send("XREADGROUP", "GROUP", "g", "alice", "BLOCK", "0", "STREAMS", key, ">")
                c.call("DEL", key)
                waiter.sock.settimeout(10)
                r = waiter.read_reply()
            assert r[0] == "error", r
            outcomes.add(r[1].split()[0])
    assert outcomes <= {b"NOGROUP", b"UNBLOCKED"}, outcomes


def test_a_blocked_read_failing_counts_in_errorstats(keel, ref):
    """XREADGROUP woken by XGROUP DESTROY fails: INFO counts one failed
    call, one NOGROUP error and one error reply, as redis-server does."""
    got = {}
    for name, server in (("keel", keel), ("redis", ref)):
        with server.raw() as c, server.raw() as waiter:
            c.call("DEL", "es")
            c.call("XGROUP", "CREATE", "es", "g", "$", "MKSTREAM")
            c.call("CONFIG", "RESETSTAT")
            waiter.send("XREADGROUP", "GROUP", "g", "alice", "BLOCK", "0", "STREAMS", "es", ">")
            time.sleep(0.2)
            c.call("XGROUP", "DESTROY", "es", "g")
            waiter.sock.settimeout(5)
            reply = waiter.read_reply()
            text = c.call("INFO", "all")[1].decode()
        info = dict(line.split(":", 1) for line in text.split("\r\n") if ":" in line)
        got[name] = (reply[0], info["errorstat_NOGROUP"], info["total_error_replies"],
                     info["cmdstat_xreadgroup"].split(",usec=")[0],
                     info["cmdstat_xreadgroup"].split(",", 3)[3])
    assert got["keel"] == got["redis"], got
    assert got["keel"][1:3] == ("count=1", "1")

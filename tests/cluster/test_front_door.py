"""Every node is a front door (issue 12): clients connected to a backup in
another zone write through it (forwarded to the primary) and read their own
writes back at once, whatever the replication lag; a failover under that
load costs them errors for a moment, never their connection.

Built on test_failover's helpers: three nodes h1 (primary, z1), h2 (z2),
h3 (z3), 5 ms one way between zones unless a test slows a pair.
"""

from __future__ import annotations

import threading
import time

from harness import Cluster, RespError

from test_failover import (DELAY_MS, FAILOVER_BOUND, PEER_PORT, PORT, PORTS, SHARDS, ZONES, check, info, node_args,
                           report, start_cluster, until, wait_converged, wait_healthy,
                           wait_one_primary, write_topology)

# What a write through a backup may meet for a moment around a failover.
TRANSIENT = ("TRYAGAIN", "READONLY", "CLUSTERDOWN")


def repl(c: Cluster, host: str) -> dict[str, int]:
    v = info(c, host, "replication")
    return {k: int(v[k]) for k in ("writes_forwarded", "reads_local", "reads_forwarded_not_ready",
                                   "reads_forwarded_own_write", "reads_forwarded_strong")}


def start_h2_never_ready(c: Cluster) -> None:
    """Starts h1 (primary), h2 and h3, h2 with read-max-lag 1 ms: against a
    5 ms link it never counts as ready for reads."""
    topo = write_topology(c, "h1")
    c.start("h1", node_args(topo, "h1"))
    c.start("h2", node_args(topo, "h2", "--read-max-lag", "1"))
    c.start("h3", node_args(topo, "h3"))
    wait_healthy(c, "h1", term=1)


def read_your_writes(c: Cluster, host: str, rounds: int, tag: str) -> list[str]:
    """Writes then at once reads back on one connection to `host`; returns
    every read that missed the connection's own earlier write."""
    bad = []
    with c.connect(host, host, timeout=10) as conn:
        for i in range(rounds):
            k = f"{tag}:{i % 50}"
            assert conn.call("SET", k, str(i)) == "OK"
            got = conn.call("GET", k)
            if got != str(i):
                bad.append(f"GET {k} = {got!r} after SET {i}")
            n = conn.call("INCR", f"{tag}:n")
            if conn.call("GET", f"{tag}:n") != str(n):
                bad.append(f"counter read behind its INCR to {n}")
            conn.call("HSET", f"{tag}:h", "f", str(i))
            if conn.call("HGET", f"{tag}:h", "f") != str(i):
                bad.append(f"HGET after HSET {i}")
    return bad


def test_a_backup_forwards_writes_and_serves_reads_without_missing_own_writes():
    with Cluster(ZONES, delay_ms=DELAY_MS, ports=PORTS) as c:
        start_cluster(c)
        before = repl(c, "h2")
        bad = read_your_writes(c, "h2", 300, "fast")
        mid = repl(c, "h2")
        # Replication slowed to 200 ms one way (the client's link is not):
        # the client's next read arrives before its write did, and must
        # then be forwarded.
        for s in range(SHARDS):
            c.set_port_delay("h1", PEER_PORT + s, 200)
        bad += read_your_writes(c, "h2", 100, "slow")
        after = repl(c, "h2")
        for s in range(SHARDS):
            c.set_port_delay("h1", PEER_PORT + s, None)
        check(c, not bad, f"{len(bad)} reads missed the client's own write: {bad[:5]}")
        fast = {k: mid[k] - before[k] for k in mid}
        slow = {k: after[k] - mid[k] for k in after}
        report("front-door", f"fast link: {fast}; slowed link: {slow}")
        check(c, fast["writes_forwarded"] == 900, f"writes forwarded on the fast link: {fast}")
        # On a fast link the client's own write is here within a moment of
        # its reply: most such reads wait for it rather than cross zones.
        check(c, fast["reads_local"] >= 600, f"reads of own writes mostly forwarded: {fast}")
        check(c, slow["reads_forwarded_own_write"] >= 250,
              f"reads of the client's own write served before it arrived: {slow}")
        check(c, slow["reads_local"] + slow["reads_forwarded_own_write"] >= 300,
              f"reads not counted: {slow}")
        # Reads of keys the client did not just write are served here.
        with c.connect("h2", "h2") as conn:
            local0 = repl(c, "h2")["reads_local"]
            for i in range(50):
                conn.call("GET", f"fast:{i}")
            check(c, repl(c, "h2")["reads_local"] - local0 == 50, "reads of settled keys were forwarded")
        wait_converged(c, ["h1", "h2", "h3"])
        with c.connect("h1", "h1") as conn:
            check(c, conn.call("GET", "slow:n") == "100" and conn.call("GET", "fast:n") == "300",
                  "the primary lacks the forwarded INCRs")


def test_transactions_and_watch_through_a_backup_run_on_the_primary():
    with Cluster(ZONES, delay_ms=DELAY_MS, ports=PORTS) as c:
        start_cluster(c)
        with c.connect("h3", "h3") as conn:
            conn.call("SET", "tx:a", "1")
            assert conn.call("MULTI") == "OK"
            assert conn.call("INCR", "tx:a") == "QUEUED"
            assert conn.call("SET", "tx:b", "x") == "QUEUED"
            assert conn.call("GET", "tx:a") == "QUEUED"
            check(c, conn.call("EXEC") == [2, "OK", "2"], "EXEC through a backup")
            check(c, conn.call("GET", "tx:b") == "x", "read after the forwarded EXEC")
            # WATCH through a backup runs on the primary, on this client's
            # own link: a change made through another node aborts the EXEC.
            assert conn.call("WATCH", "tx:a") == "OK"
            with c.connect("h2", "h2") as other:
                check(c, other.call("INCR", "tx:a") == 3, "INCR through h2")
            assert conn.call("MULTI") == "OK"
            assert conn.call("SET", "tx:a", "9") == "QUEUED"
            check(c, conn.call("EXEC") is None, "a watching EXEC ran despite a change of its key")
            check(c, conn.call("GET", "tx:a") == "3", "the aborted transaction wrote")
            # Unchanged, the same transaction runs.
            assert conn.call("WATCH", "tx:a") == "OK"
            assert conn.call("MULTI") == "OK"
            assert conn.call("SET", "tx:a", "9") == "QUEUED"
            check(c, conn.call("EXEC") == ["OK"], "a watching EXEC with nothing changed")
            check(c, conn.call("GET", "tx:a") == "9", "read after the watched EXEC")
            # UNWATCH forgets the watches there too.
            assert conn.call("WATCH", "tx:a") == "OK"
            assert conn.call("UNWATCH") == "OK"
            with c.connect("h3", "h3") as other:
                other.call("SET", "tx:a", "10")
            assert conn.call("MULTI") == "OK"
            assert conn.call("INCR", "tx:a") == "QUEUED"
            check(c, conn.call("EXEC") == [11], "EXEC after UNWATCH")
        with c.connect("h1", "h1") as conn:
            check(c, conn.call("GET", "tx:b") == "x", "the primary lacks the transaction")


def test_blocking_pops_through_a_backup_are_woken_from_any_node():
    """BLPOP on a backup runs on the primary on a connection of its own (it
    must not hold up the shared link): a push through another backup wakes
    it, a timeout answers nil, and other clients of the same backup are not
    delayed meanwhile."""
    with Cluster(ZONES, delay_ms=DELAY_MS, ports=PORTS) as c:
        start_cluster(c)
        got: list = []
        waiter = c.connect("h2", "h2", timeout=15)
        waiter.send("BLPOP", "jobs", "10")
        time.sleep(0.3)
        with c.connect("h2", "h2") as other:
            t = time.monotonic()
            check(c, other.call("SET", "busy", "1") == "OK", "a write on h2 while a BLPOP waits")
            check(c, time.monotonic() - t < 1.0, "the write waited behind the BLPOP")
        with c.connect("h3", "h3") as pusher:
            check(c, pusher.call("RPUSH", "jobs", "job-1") == 1, "RPUSH through h3")
        got.append(waiter.read())
        check(c, got[0] == ["jobs", "job-1"], f"BLPOP through h2 answered {got[0]!r}")
        check(c, waiter.call("BLPOP", "jobs", "0.3") is None, "an expired BLPOP through h2")
        waiter.close()


def test_pubsub_reaches_subscribers_on_every_node_once():
    """PUBLISH and SPUBLISH through any node reach subscribers on every node,
    once each, as `message` and `smessage`."""
    with Cluster(ZONES, delay_ms=DELAY_MS, ports=PORTS) as c:
        start_cluster(c)
        subs = {}
        for h in ("h1", "h2", "h3"):
            conn = c.connect(h, h, timeout=5)
            check(c, conn.call("SUBSCRIBE", "news") == ["subscribe", "news", 1], f"SUBSCRIBE on {h}")
            check(c, conn.call("SSUBSCRIBE", "snews") == ["ssubscribe", "snews", 1], f"SSUBSCRIBE on {h}")
            subs[h] = conn
        time.sleep(0.3)  # the backups' relay links are up by now
        for h in ("h1", "h2", "h3"):
            with c.connect(h, h) as pub:
                n = pub.call("PUBLISH", "news", f"from {h}")
                check(c, n >= 1, f"PUBLISH through {h} reached {n}")
                n = pub.call("SPUBLISH", "snews", f"shard from {h}")
                check(c, n >= 1, f"SPUBLISH through {h} reached {n}")
        for h, conn in subs.items():
            got = sorted((m[0], m[2]) for m in (conn.read() for _ in range(6)))
            want = sorted(
                [("message", f"from {n}") for n in ("h1", "h2", "h3")]
                + [("smessage", f"shard from {n}") for n in ("h1", "h2", "h3")]
            )
            check(c, got == want, f"{h}'s subscriber got {got}")
            conn.sock.settimeout(0.5)
            try:
                extra = conn.read()
                check(c, False, f"{h}'s subscriber got a duplicate: {extra}")
            except (OSError, TimeoutError):
                pass
            conn.close()


def test_a_failover_keeps_clients_of_a_surviving_backup_connected():
    with Cluster(ZONES, delay_ms=DELAY_MS, ports=PORTS) as c:
        start_cluster(c)
        stop = threading.Event()
        acked: list[tuple[str, float]] = []
        errors: dict[str, int] = {}
        broke: list[str] = []

        def client():
            try:
                with c.connect("h3", "h3", timeout=15) as conn:
                    i = 0
                    while not stop.is_set():
                        i += 1
                        try:
                            conn.call("SET", f"fo:{i}", "v")
                            acked.append((f"fo:{i}", time.monotonic()))
                        except RespError as e:
                            word = str(e).split(" ", 1)[0]
                            if word not in TRANSIENT:
                                broke.append(str(e))
                                return
                            errors[word] = errors.get(word, 0) + 1
                            time.sleep(0.01)
            except (OSError, ConnectionError) as e:
                broke.append(repr(e))

        t = threading.Thread(target=client, daemon=True)
        t.start()
        until(c, lambda: len(acked) > 100, 10, "the client to get going")
        t_kill = time.monotonic()
        c.kill("h1")
        new, term = wait_one_primary(c, ["h2", "h3"], FAILOVER_BOUND, "a new primary")
        until(c, lambda: any(at > t_kill + 0.5 for _, at in acked[-50:]), FAILOVER_BOUND,
              "writes through h3 acknowledged again")
        time.sleep(0.5)
        stop.set()
        t.join(10)
        check(c, not broke, f"the client of h3 lost its connection or met a hard error: {broke}")
        gap = max((b - a for (_, a), (_, b) in zip(acked, acked[1:])), default=0)
        report("front-door-failover", f"new primary {new} (term {term}); {len(acked)} writes through h3 "
               f"acknowledged, transient errors {errors}, longest gap {gap:.2f}s")
        wait_converged(c, ["h2", "h3"])
        with c.connect(new, new) as conn:
            after = [k for k, at in acked if at > t_kill + 0.5]
            missing = [k for k in after if conn.call("EXISTS", k) != 1]
        check(c, not missing, f"writes acknowledged through h3 after the failover missing: {missing[:5]}")


def test_pipelined_commands_through_a_backup_keep_their_order():
    """A client pipelining through a backup gets every reply in its place:
    forwarded writes, reads that follow them, and commands run locally in
    between (PING, SELECT), with each forwarded command in the database the
    client had selected when it sent it."""
    with Cluster(ZONES, delay_ms=DELAY_MS, ports=PORTS) as c:
        start_cluster(c)
        with c.connect("h2", "h2", timeout=10) as conn:
            want = []
            for i in range(1, 201):
                conn.send("INCR", "pipe:n")
                want.append(i)
                conn.send("SET", f"pipe:{i}", f"v{i}")
                want.append("OK")
                conn.send("GET", f"pipe:{i}")  # its own write is still in flight
                want.append(f"v{i}")
                if i % 50 == 0:
                    conn.send("PING")
                    want.append("PONG")
                    conn.send("SELECT", "1")
                    want.append("OK")
                    conn.send("SET", "pipe:db1", str(i))
                    want.append("OK")
                    conn.send("SELECT", "0")
                    want.append("OK")
                    conn.send("EXISTS", "pipe:db1")
                    want.append(0)
            got = [conn.read() for _ in want]
            bad = [(n, w, g) for n, (w, g) in enumerate(zip(want, got)) if w != g]
            check(c, not bad, f"{len(bad)} replies out of place through h2, first {bad[:5]}")
            # Settled keys are then read here again.
            local0 = repl(c, "h2")["reads_local"]
            wait_converged(c, ["h1", "h2"])
            for i in range(1, 201, 10):
                conn.send("GET", f"pipe:{i}")
            got = [conn.read() for _ in range(1, 201, 10)]
            check(c, got == [f"v{i}" for i in range(1, 201, 10)], f"pipelined reads: {got[:5]}")
            check(c, repl(c, "h2")["reads_local"] - local0 == 20, "settled reads were forwarded")
        with c.connect("h1", "h1") as conn:
            check(c, conn.call("GET", "pipe:n") == "200", "the primary's counter")
            conn.call("SELECT", "1")
            check(c, conn.call("GET", "pipe:db1") == "200", "the SET sent in database 1")


def test_a_backup_whose_copy_is_not_ready_reads_from_the_nearest_ready_backup():
    """h2 and h3 share zone z2; h2 never counts as ready (read-max-lag 1 ms
    against a 5 ms link), h3 does. Reads through h2 go to h3, not across to
    the primary, carrying the client's own writes: h3 serves them only once
    it has those writes. With h3 stopped, h2's reads go to the primary."""
    zones = {"h1": "z1", "h2": "z2", "h3": "z2"}
    with Cluster(zones, delay_ms=DELAY_MS, ports=PORTS) as c:
        start_h2_never_ready(c)
        until(c, lambda: info(c, "h3", "replication").get("replica_ready") == "1", 10, "h3 ready")
        with c.connect("h1", "h1") as conn:
            for i in range(100):
                conn.call("SET", f"near:{i}", str(i))
        wait_converged(c, ["h1", "h2", "h3"])
        h2, h3 = repl(c, "h2"), info(c, "h3", "replication")
        check(c, info(c, "h2", "replication").get("replica_ready") == "0", "h2 counts as ready")
        with c.connect("h2", "h2") as conn:
            got = [conn.call("GET", f"near:{i}") for i in range(100)]
        check(c, got == [str(i) for i in range(100)], "reads through h2 via h3")
        d2 = repl(c, "h2")
        d3 = info(c, "h3", "replication")
        nearby = int(info(c, "h2", "replication")["reads_forwarded_nearby"])
        served = int(d3["reads_served_for_backups"]) - int(h3["reads_served_for_backups"])
        report("front-door-nearby", f"h2 {d2}, h3 served {served} for h2")
        check(c, d2["reads_forwarded_not_ready"] - h2["reads_forwarded_not_ready"] == 100,
              f"h2's reads not counted as not ready: {d2}")
        check(c, nearby >= 100, f"h2 sent {nearby} reads to a nearby backup")
        check(c, served == 100, f"h3 served {served} of h2's 100 reads")
        # Read-your-writes through h2 while its reads go to h3.
        bad = read_your_writes(c, "h2", 100, "nearw")
        check(c, not bad, f"{len(bad)} reads via h3 missed the client's own write: {bad[:5]}")
        # h3 silent: h2 reads from the primary instead (after h3 is suspected).
        h3_addr = f"{c.relay_addr('h3')[0]}:{PORT}"
        check(c, info(c, "h2", "cluster")["cluster_read_replicas"] == h3_addr,
              "h2's nearest ready backup is not h3")
        c.pause("h3")
        try:
            until(c, lambda: info(c, "h2", "cluster")["cluster_read_replicas"] == "", 10,
                  "h2 to stop sending reads to the paused h3")
            before = repl(c, "h2")
            with c.connect("h2", "h2", timeout=10) as conn:
                got = [conn.call("GET", f"near:{i}") for i in range(20)]
            check(c, got == [str(i) for i in range(20)], f"reads through h2 with h3 paused: {got[:3]}")
            after = repl(c, "h2")
            check(c, after["reads_forwarded_not_ready"] - before["reads_forwarded_not_ready"] == 20,
                  f"reads through h2 with h3 paused: {after}")
        finally:
            c.resume("h3")


def test_read_your_writes_holds_through_a_slow_link_and_a_failover():
    """Clients on both backups write their own keys and read them back at
    once on the same connection, and read settled keys besides, while the
    link to h3's zone is slowed and then the primary is killed. No read may
    miss the client's own acknowledged write; a write whose outcome the
    front door could not know (TRYAGAIN) makes that key's next read accept
    either value. Most reads are still served locally, and no client loses
    its connection."""
    with Cluster(ZONES, delay_ms=DELAY_MS, ports=PORTS) as c:
        start_cluster(c)
        with c.connect("h1", "h1") as conn:
            for i in range(50):
                conn.call("SET", f"settled:{i}", str(i))
        wait_converged(c, ["h1", "h2", "h3"])
        c.set_delay("z1", "z3", 40)
        stop = threading.Event()
        misses: list[str] = []
        broke: list[str] = []
        counts = {"writes": 0, "reads": 0, "transient": 0}
        lock = threading.Lock()

        def client(host: str, n: int):
            mine: dict[str, set[str]] = {}  # key -> values a read may show
            try:
                with c.connect(host, host, timeout=15) as conn:
                    i = 0
                    while not stop.is_set():
                        i += 1
                        k = f"ryw:{host}:{n}:{i % 20}"
                        try:
                            conn.call("SET", k, str(i))
                            mine[k] = {str(i)}
                            with lock:
                                counts["writes"] += 1
                        except RespError as e:
                            if str(e).split(" ", 1)[0] not in TRANSIENT:
                                broke.append(f"SET: {e}")
                                return
                            mine[k] = mine.get(k, {None}) | {str(i)}
                            with lock:
                                counts["transient"] += 1
                            time.sleep(0.02)
                            continue
                        for j in (i, i + 7, i + 13):
                            try:
                                v = conn.call("GET", f"settled:{j % 50}")
                                if v != str(j % 50):
                                    misses.append(f"settled:{j % 50} = {v!r}")
                            except RespError:
                                pass
                        try:
                            got = conn.call("GET", k)
                        except RespError as e:
                            if str(e).split(" ", 1)[0] not in TRANSIENT:
                                broke.append(f"GET: {e}")
                                return
                            continue
                        with lock:
                            counts["reads"] += 4
                        if got not in mine[k]:
                            misses.append(f"{host}: GET {k} = {got!r}, expected one of {mine[k]}")
            except (OSError, ConnectionError) as e:
                broke.append(f"{host}: {e!r}")

        before = {h: repl(c, h) for h in ("h2", "h3")}
        threads = [threading.Thread(target=client, args=(h, n), daemon=True)
                   for h in ("h2", "h3") for n in range(2)]
        for t in threads:
            t.start()
        time.sleep(3)
        mid = {h: repl(c, h) for h in ("h2", "h3")}
        c.kill("h1")
        new, term = wait_one_primary(c, ["h2", "h3"], FAILOVER_BOUND, "a new primary")
        time.sleep(3)
        stop.set()
        for t in threads:
            t.join(20)
        check(c, not broke, f"clients lost their connection or met a hard error: {broke[:5]}")
        check(c, not misses, f"{len(misses)} reads missed the client's own write: {misses[:5]}")
        served = {h: {k: mid[h][k] - before[h][k] for k in mid[h]} for h in mid}
        report("front-door-ryw", f"before the kill {served}; new primary {new} (term {term}); "
               f"{counts}")
        for h, d in served.items():
            reads = d["reads_local"] + d["reads_forwarded_own_write"] + d["reads_forwarded_not_ready"]
            check(c, reads > 0 and d["reads_local"] >= 0.6 * reads,
                  f"{h} served {d['reads_local']} of {reads} reads locally")
        check(c, counts["writes"] > 100, f"too little load: {counts}")


def test_scan_through_a_backup_sees_the_clients_own_writes():
    """SCAN right after writes through a backup whose replication link is
    slow (the client's link is not): the iteration runs on the primary (it
    started before the writes arrived here) and sees every key; once they
    have, a new iteration runs here."""
    with Cluster(ZONES, delay_ms=DELAY_MS, ports=PORTS) as c:
        start_cluster(c)
        for s in range(SHARDS):
            c.set_port_delay("h1", PEER_PORT + s, 300)
        with c.connect("h2", "h2", timeout=10) as conn:
            for i in range(30):
                conn.send("SET", f"scan:{i}", "v")
            assert [conn.read() for _ in range(30)] == ["OK"] * 30
            seen, cursor, rounds = set(), "0", 0
            while True:
                cursor, keys = conn.call("SCAN", cursor, "COUNT", "7")
                seen.update(keys)
                rounds += 1
                if cursor == "0" or rounds > 100:
                    break
            want = {f"scan:{i}" for i in range(30)}
            check(c, want <= seen, f"SCAN through h2 missed {sorted(want - seen)[:5]}")
            for s in range(SHARDS):
                c.set_port_delay("h1", PEER_PORT + s, None)
            wait_converged(c, ["h1", "h2"])
            # A local iteration sees them too (and DBSIZE agrees).
            seen, cursor = set(), "0"
            for _ in range(100):
                cursor, keys = conn.call("SCAN", cursor)
                seen.update(keys)
                if cursor == "0":
                    break
            check(c, want <= seen and conn.call("DBSIZE") == len(seen),
                  f"a SCAN served by h2 itself: {len(seen)} keys")


def test_placement_says_when_every_readable_copy_is_in_one_zone():
    """h1 (primary) and h3 share zone z1; h2, the only copy elsewhere, is not
    ready for reads (read-max-lag 1 ms against a 5 ms link): the primary's
    INFO says placement is degraded, naming the zone, until h2 is ready."""
    zones = {"h1": "z1", "h2": "z2", "h3": "z1"}
    with Cluster(zones, delay_ms=DELAY_MS, ports=PORTS) as c:
        start_h2_never_ready(c)
        until(c, lambda: info(c, "h1")["cluster_placement"].startswith("degraded: every readable copy is in zone z1"),
              10, "the primary to report every readable copy in z1")
        check(c, info(c, "h1")["cluster_read_replicas"] == "", "a primary lists read replicas")
        c.call("h2", "h2", "CONFIG", "SET", "read-max-lag", "1000")
        until(c, lambda: info(c, "h1")["cluster_placement"] == "ok", 10, "placement ok once h2 is ready")
        # Each member's serving flag reaches h1 with that member's next ping
        # (h3's may still be on its way when h2's made placement ok).
        def members():
            return [v for k, v in info(c, "h1").items() if k.startswith("member")]
        until(c, lambda: all("serving=1" in m for m in members()), 10, "every member serving, as h1 hears it")


def test_scripts_through_a_backup_run_on_the_primary_and_read_only_ones_locally():
    """EVAL through a backup runs on the primary (a script may write), and
    the client reads its script's write back at once. EVAL_RO runs on the
    backup itself (it may lag: not routed by read-your-writes yet) and
    refuses writes."""
    incr = "return redis.call('INCR', KEYS[1])"
    with Cluster(ZONES, delay_ms=DELAY_MS, ports=PORTS) as c:
        start_cluster(c)
        before = repl(c, "h3")
        with c.connect("h3", "h3") as conn:
            for i in range(1, 21):
                check(c, conn.call("EVAL", incr, 1, "s:n") == i, f"EVAL {i} through h3")
                # Read-your-writes holds for a script's write too.
                check(c, conn.call("GET", "s:n") == str(i), f"GET after EVAL {i}")
            check(c, conn.call("EVAL_RO", "return redis.call('GET', KEYS[1])", 1, "s:n") in ("20", None),
                  "EVAL_RO on the backup")
            try:
                conn.call("EVAL_RO", incr, 1, "s:n")
                check(c, False, "EVAL_RO wrote through a backup")
            except RespError as e:
                check(c, "Write commands are not allowed from read-only scripts" in str(e), str(e))
        after = repl(c, "h3")
        check(c, after["writes_forwarded"] >= before["writes_forwarded"] + 20,
              f"EVALs were not forwarded: {before} -> {after}")
        check(c, c.call("h1", "h1", "GET", "s:n") == "20", "the primary lacks the scripts' writes")
        wait_converged(c, ["h1", "h2", "h3"])

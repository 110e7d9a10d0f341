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

from test_failover import (DELAY_MS, FAILOVER_BOUND, PORTS, ZONES, check, info, report,
                           start_cluster, until, wait_converged, wait_one_primary)

# What a write through a backup may meet for a moment around a failover.
TRANSIENT = ("TRYAGAIN", "READONLY", "CLUSTERDOWN")


def repl(c: Cluster, host: str) -> dict[str, int]:
    v = info(c, host, "replication")
    return {k: int(v[k]) for k in ("writes_forwarded", "reads_local", "reads_forwarded_not_ready",
                                   "reads_forwarded_own_write", "reads_forwarded_strong")}


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
        # Replication to z2 slowed to 60 ms one way: the client's next read
        # usually arrives before its write did, and must then be forwarded.
        c.set_delay("z1", "z2", 60)
        bad += read_your_writes(c, "h2", 100, "slow")
        after = repl(c, "h2")
        c.set_delay("z1", "z2", None)
        check(c, not bad, f"{len(bad)} reads missed the client's own write: {bad[:5]}")
        fast = {k: mid[k] - before[k] for k in mid}
        slow = {k: after[k] - mid[k] for k in after}
        report("front-door", f"fast link: {fast}; slowed link: {slow}")
        check(c, fast["writes_forwarded"] == 900, f"writes forwarded on the fast link: {fast}")
        check(c, slow["reads_forwarded_own_write"] > 0, f"no read waited for its own write: {slow}")
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
    with Cluster(ZONES, delay_ms=DELAY_MS, ports=PORTS) as c:
        start_cluster(c)
        subs = {}
        for h in ("h1", "h2", "h3"):
            conn = c.connect(h, h, timeout=5)
            check(c, conn.call("SUBSCRIBE", "news") == ["subscribe", "news", 1], f"SUBSCRIBE on {h}")
            subs[h] = conn
        time.sleep(0.3)  # the backups' relay links are up by now
        for h in ("h1", "h2", "h3"):
            with c.connect(h, h) as pub:
                n = pub.call("PUBLISH", "news", f"from {h}")
                check(c, n >= 1, f"PUBLISH through {h} reached {n}")
        for h, conn in subs.items():
            got = sorted(conn.read()[2] for _ in range(3))
            check(c, got == ["from h1", "from h2", "from h3"], f"{h}'s subscriber got {got}")
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

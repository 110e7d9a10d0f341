"""The ACL set is the database's: users made on the primary reach every
backup, survive a failover and a restart, and are changed only on the
primary. Three hosts in three zones as test_failover."""

from __future__ import annotations

from harness import Cluster, RespError
from test_failover import (DELAY_MS, FAILOVER_BOUND, PORTS, ZONES, check, node_args, start_cluster, until,
                           wait_one_primary, wait_healthy)


def as_user(c: Cluster, host: str, user: str, password: str, *cmd):
    """AUTH then `cmd` on a fresh connection to `host`: the reply, or the
    error text."""
    with c.connect(host, host) as r:
        try:
            r.call("AUTH", user, password)
            return r.call(*cmd)
        except RespError as e:
            return str(e)


def test_acl_users_are_the_databases():
    with Cluster(ZONES, delay_ms=DELAY_MS, ports=PORTS) as c:
        topo = start_cluster(c, "--appendonly", "yes")
        check(c, c.call("h1", "h1", "ACL", "SETUSER", "alice", "on", ">alice-pw", "~app:*", "+@all") == "OK",
              "SETUSER alice on h1")
        check(c, c.call("h1", "h1", "SET", "app:1", "v") == "OK", "a key alice may read")
        for h in ("h2", "h3"):
            until(c, lambda h=h: as_user(c, h, "alice", "alice-pw", "GET", "app:1") == "v", 10,
                  f"alice logs in on {h} and reads app:1")
            got = as_user(c, h, "alice", "alice-pw", "GET", "other")
            check(c, got.startswith("NOPERM"), f"alice reads a key outside ~app:* on {h}: {got}")
            check(c, as_user(c, h, "alice", "wrong", "PING").startswith("WRONGPASS"), f"a wrong password on {h}")
        # Backups refuse changes, as they refuse writes.
        try:
            r = c.call("h2", "h2", "ACL", "SETUSER", "mallory", "on", ">x", "+@all")
        except RespError as e:
            r = str(e)
        check(c, r.startswith("READONLY"), f"ACL SETUSER on a backup: {r}")
        check(c, c.call("h2", "h2", "ACL", "GETUSER", "mallory") is None, "mallory was not made on h2")

        # The primary dies: the users stay, and the new primary changes them.
        c.kill("h1")
        new, term = wait_one_primary(c, ["h2", "h3"], 3 * FAILOVER_BOUND, "a new primary", not_="h1")
        other = "h3" if new == "h2" else "h2"
        check(c, as_user(c, new, "alice", "alice-pw", "GET", "app:1") == "v", f"alice on {new} after the failover")
        check(c, c.call(new, new, "ACL", "SETUSER", "carol", "on", ">carol-pw", "+ping") == "OK", "SETUSER carol")
        until(c, lambda: as_user(c, other, "carol", "carol-pw", "PING") == "PONG", 10, f"carol on {other}")
        # A deleted user is gone everywhere, and its open connections close.
        held = c.connect(other, other)
        check(c, held.call("AUTH", "alice", "alice-pw") == "OK", "alice holds a connection")
        check(c, c.call(new, new, "ACL", "DELUSER", "alice") == 1, "DELUSER alice")
        until(c, lambda: as_user(c, other, "alice", "alice-pw", "PING").startswith("WRONGPASS"), 10,
              f"alice cannot log in on {other}")

        def closed() -> bool:
            try:
                held.call("PING")
                return False
            except (ConnectionError, OSError):
                return True
        until(c, closed, 10, f"alice's connection on {other} closed")
        held.close()

        # The old primary comes back: it follows and holds the new set.
        c.start("h1", node_args(topo, "h1", "--appendonly", "yes"))
        wait_healthy(c, new, term=term, timeout=30)
        until(c, lambda: as_user(c, "h1", "carol", "carol-pw", "PING") == "PONG", 10, "carol on h1")
        check(c, as_user(c, "h1", "alice", "alice-pw", "PING").startswith("WRONGPASS"), "alice is gone on h1")

"""The sync backup of strong mode, changed online and across failovers.

Three hosts in three zones (5 ms one way between zones), `--consistency
strong --sync-backup h2` on every node (one shared configuration, as an
operator would have it). Checked: `CONFIG SET sync-backup h3` on the primary
moves strong writes' confirmation to h3 at once (with h2 stopped they are
still acknowledged), an unknown or unconnected backup is refused, an empty
value goes back to choosing one; and when h2 itself becomes primary (its
configuration naming itself), its strong writes are confirmed by the other
backup rather than waiting for a link from itself forever.
"""

from __future__ import annotations

import time

from harness import Cluster, RespError
from test_failover import (DELAY_MS, FAILOVER_BOUND, PORT, PORTS, ZONES, check, digest, info,
                           start_cluster, until, wait_one_primary)


def strong_write(c: Cluster, host: str, key: str, timeout: float = 8.0) -> bool:
    """One write acknowledged (True), or refused or cut (False)."""
    try:
        return c.call(host, host, "SET", key, "v", timeout=timeout) == "OK"
    except (RespError, ConnectionError, OSError):
        return False


def test_sync_backup_moves_online_and_survives_its_own_promotion():
    with Cluster(ZONES, delay_ms=DELAY_MS, ports=PORTS) as c:
        start_cluster(c, "--consistency", "strong", "--sync-backup", "h2", "--repl-timeout", "3")
        acked = []
        for i in range(50):
            assert strong_write(c, "h1", f"k:{i}")
            acked.append(f"k:{i}")
        check(c, info(c, "h1", "replication")["sync_backup"] == "h2", "h2 is the configured sync backup")

        # Promote h3 (a read replica so far) to sync backup, online.
        check(c, c.call("h1", "h1", "CONFIG", "SET", "sync-backup", "h3") == "OK", "CONFIG SET sync-backup h3")
        check(c, info(c, "h1", "replication")["sync_backup"] == "h3", "h3 is the sync backup now")
        check(c, c.call("h1", "h1", "CONFIG", "GET", "sync-backup") == ["sync-backup", "h3"], "CONFIG GET")
        c.pause("h2")
        try:
            for i in range(50, 80):
                check(c, strong_write(c, "h1", f"k:{i}"), f"k:{i} not acknowledged with h2 stopped")
                acked.append(f"k:{i}")
        finally:
            c.resume("h2")
        # Refused: an unknown backup, the primary itself (it never confirms
        # its own writes).
        for bad in ("nosuch", "h1"):
            try:
                r = c.call("h1", "h1", "CONFIG", "SET", "sync-backup", bad)
            except RespError as e:
                r = str(e)
            if bad == "h1":
                # Naming itself means "choose one", as the shared config does.
                check(c, r == "OK", f"sync-backup {bad}: {r}")
            else:
                check(c, "no backup named 'nosuch'" in r, f"sync-backup {bad}: {r}")
        check(c, info(c, "h1", "replication")["sync_backup"] in ("h2", "h3"), "a chosen sync backup")
        check(c, c.call("h1", "h1", "CONFIG", "SET", "sync-backup", "h2") == "OK", "back to h2")
        until(c, lambda: strong_write(c, "h1", "after-resume"), 10, "h2 confirms again after SIGCONT")
        acked.append("after-resume")

        # h2 becomes primary by a planned switchover: its configuration
        # names itself as the sync backup; its strong writes must be
        # confirmed by h3.
        h2_ip, _ = c.relay_addr("h2")
        check(c, c.call("h1", "h1", "FAILOVER", "TO", h2_ip, str(PORT), "TIMEOUT", "5000") == "OK", "FAILOVER TO h2")
        new, term = wait_one_primary(c, ["h1", "h2", "h3"], 3 * FAILOVER_BOUND, "h2 primary", not_="h1")
        check(c, new == "h2", f"{new} is primary, not h2")
        t0 = time.monotonic()
        until(c, lambda: strong_write(c, "h2", "on-h2"), 10, "a strong write acknowledged by h2")
        acked.append("on-h2")
        print(f"[sync-backup] first strong write on h2 acknowledged after {time.monotonic() - t0:.2f}s")
        check(c, info(c, "h2", "replication")["sync_backup"] in ("h1", "h3"),
              f"h2's sync backup: {info(c, 'h2', 'replication')['sync_backup']}")
        for i in range(80, 100):
            check(c, strong_write(c, "h2", f"k:{i}"), f"k:{i} on h2")
            acked.append(f"k:{i}")
        until(c, lambda: len({digest(c, h) for h in c.hosts}) == 1, 20, "all three converge")
        for h in c.hosts:
            missing = [k for k in acked if c.call(h, h, "EXISTS", k) != 1]
            check(c, not missing, f"{h} misses acknowledged writes {missing[:5]}")

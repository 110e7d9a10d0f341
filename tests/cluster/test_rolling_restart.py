"""A rolling restart (an upgrade, one node at a time) as tuning/RUNBOOK.md
describes it, under a steady write load: no acknowledged write is lost.

The cluster is test_failover.py's (three hosts in three zones, 5 ms one way,
a `[[nodes]]` topology by relay address, `--shards 2`), with
`--appendonly yes` as a production node runs, in eventual and in strong
mode. Three writers (one per host)
follow the primary through INFO cluster and record every acknowledged write.

The procedure, node by node:
1. the backups first: SIGTERM (what `systemctl stop keel` sends), start
   again on the same data directory, wait until the cluster is healthy again
   (one primary, every backup streaming every shard from it);
2. then the primary: move it with `FAILOVER TO <a restarted backup>` first,
   and restart it as a backup.

Checked: each SIGTERM ends keel cleanly (exit 0); writes go on being
acknowledged while a node is down; restarting a backup causes no election
(the term stays); a restarted node comes back from its own disk and resyncs
partially (no full sync served anywhere); at the end every node holds the
same data (`DEBUG DIGEST`) and every acknowledged write is on every node.
"""

from __future__ import annotations

import time

import pytest

from harness import Cluster
from test_failover import (
    DELAY_MS, PORT, PORTS, SHARDS, ZONES, Load, check, info, missing_on, node_args, report,
    start_cluster, stats, until, wait_converged, wait_healthy, wait_one_primary,
)

EXTRA = ("--appendonly", "yes")
STEP_BOUND = 20.0  # s: a node back and the cluster healthy again
WHILE_DOWN = 100  # writes acknowledged by the others while a node is down


def restart(c: Cluster, topo, extra, load: Load, h: str, primary: str, term: int) -> None:
    """SIGTERM `h`, let the others acknowledge writes while it is down, start
    it on its data dir and wait until it streams every shard from `primary`
    again, resynced partially (the primary serves no full sync)."""
    name = "rolling_restart"
    served = stats(c, primary)["sync_full"]
    t_stop = time.monotonic()
    rc = c.stop(h)
    check(c, rc == 0, f"keel on {h} exited with {rc} after SIGTERM (a clean stop exits 0)")
    t_down = time.monotonic()
    # What a binary swap would take; the writes meanwhile are in the primary's
    # backlog only, and the restarted node must catch up on them.
    until(c, lambda: sum(1 for a in load.acks() if a.t > t_down) >= WHILE_DOWN, STEP_BOUND,
          f"{WHILE_DOWN} writes acknowledged while {h} is down")
    during = sum(1 for a in load.acks() if a.t > t_down)
    down = time.monotonic() - t_stop
    c.start(h, node_args(topo, h, *extra))
    t_up = time.monotonic()
    wait_healthy(c, primary, term, timeout=STEP_BOUND)
    # It came back from its own disk: the primary's backlog covered the gap.
    rep = info(c, h, "replication")
    last = {s: rep.get(f"shard{s}_last_sync") for s in range(SHARDS)}
    check(c, all(v == "partial" for v in last.values()),
          f"{h} resynced {last} after its restart, expected partial resyncs from its own data")
    check(c, stats(c, primary)["sync_full"] == served,
          f"{primary} served a full sync to the restarted {h}: {stats(c, primary)}")
    report(name, f"{h} restarted: down {down:.2f}s ({during} writes acknowledged meanwhile), "
           f"streaming from {primary} {time.monotonic() - t_up:.2f}s after its start, last syncs {last}")


@pytest.mark.parametrize("consistency", ["eventual", "strong"])
def test_rolling_restart_loses_no_acknowledged_write(consistency):
    name = "rolling_restart"
    with Cluster(ZONES, delay_ms=DELAY_MS, ports=PORTS) as c:
        hosts = list(c.hosts)
        extra = (*EXTRA, "--consistency", consistency)
        topo = start_cluster(c, *extra)
        load = Load(c, hosts)
        until(c, lambda: len(load.acks()) > 100, 10, "the writers to get going")
        primary, term = "h1", 1

        # 1. The backups, one at a time: no election, the term stays.
        for h in ("h2", "h3"):
            restart(c, topo, extra, load, h, primary, term)
            check(c, info(c, primary).get("cluster_term") == str(term),
                  f"restarting the backup {h} changed the term: {info(c, primary)}")

        # 2. The primary: moved to a restarted backup first, then restarted.
        target = "h2"
        ip, _ = c.relay_addr(target)
        t0 = time.monotonic()
        r = c.call(primary, primary, "FAILOVER", "TO", ip, str(PORT))
        check(c, r == "OK", f"FAILOVER TO {target} on {primary}: {r!r}")
        new, term = wait_one_primary(c, hosts, STEP_BOUND, f"{target} primary after FAILOVER TO",
                                     not_=primary)
        check(c, new == target and term == 2, f"FAILOVER TO {target}: {new} primary of term {term}")
        wait_healthy(c, new, term, timeout=STEP_BOUND)
        report(name, f"FAILOVER TO {target}: primary of term {term} after {time.monotonic() - t0:.2f}s")
        old, primary = primary, new
        restart(c, topo, extra, load, old, primary, term)

        # Writes acknowledged after the last restart, then the check.
        t_end = time.monotonic()
        until(c, lambda: load.first_ack(t_end, by_not=None), STEP_BOUND, "writes after the last restart")
        acks = load.stop()
        check(c, len(acks) > 4 * WHILE_DOWN, f"too few writes to say anything: {load.summary()}")
        digest = wait_converged(c, hosts)
        for h, miss in missing_on(c, hosts, acks).items():
            check(c, not miss, f"{h} lacks {len(miss)} of {len(acks)} acknowledged writes: {miss[:5]}")
        by = {h: sum(1 for a in acks if a.node == h) for h in hosts}
        report(name, f"{load.summary()}; all of them on all three nodes (acknowledged by {by}), "
               f"digest {digest}")

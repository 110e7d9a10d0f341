"""Membership changes through the configuration file, on restart.

A node's cluster file records the database's member list; once it exists,
the configuration's `[[nodes]]` no longer decides who is a member. An
operator who edits `[[nodes]]` (here: adds h4) and restarts a node asks for
that change: the node applies it when it is the open primary. The usual
way is a rolling restart with the new file everywhere and a `FAILOVER TO`
one of the restarted nodes (tuning/RUNBOOK.md).

Checked: the new node h4, started with the new file, is not taken for a
member while the database's list lacks it; after h2 restarts with the new
file and becomes primary, h4 joins as a learner, copies the data, votes,
and every node lists it; a node restarted with the *old* file (h3) keeps the
database's list (h4 included) and does not undo the change.
"""

from __future__ import annotations

import time

from harness import Cluster
from test_failover import (
    BUS_PORT, DELAY_MS, PORT, PORTS, SHARDS, check, info, node_args, report, until,
    wait_converged, wait_one_primary,
)

ZONES4 = {"h1": "z1", "h2": "z2", "h3": "z3", "h4": "z3"}
BOUND = 20.0


def topology(c: Cluster, hosts, name: str):
    lines = ['primary = "h1"', ""]
    for h in hosts:
        ip, _ = c.relay_addr(h)
        lines += ["[[nodes]]", f'id = "{h}"', f'client = "{ip}:{PORT}"', f'bus = "{ip}:{BUS_PORT}"',
                  f'zone = "{c.zone(h)}"', 'region = "r1"', ""]
    path = c.dir / name
    path.write_text("\n".join(lines))
    return path


def members(c: Cluster, h: str) -> dict[str, str]:
    """name -> voter flag, from INFO cluster's member lines."""
    out = {}
    for k, v in info(c, h).items():
        if k.startswith("member") and k[6:].isdigit():
            f = dict(p.split("=", 1) for p in v.split(","))
            out[f["name"]] = f["voter"]
    return out


def test_a_node_added_to_the_configuration_joins_when_a_restarted_node_leads():
    name = "membership_config"
    with Cluster(ZONES4, delay_ms=DELAY_MS, ports=PORTS) as c:
        old = topology(c, ["h1", "h2", "h3"], "topology-3.toml")
        new = topology(c, ["h1", "h2", "h3", "h4"], "topology-4.toml")
        for h in ("h1", "h2", "h3"):
            c.start(h, node_args(old, h))
        primary, term = wait_one_primary(c, ["h1", "h2", "h3"], BOUND, "h1 primary of term 1")
        check(c, (primary, term) == ("h1", 1), f"first primary {primary} of term {term}")
        for i in range(50):
            assert c.call("h1", "h1", "SET", f"k{i}", f"v{i}") == "OK"

        # h4 starts with the new file: the database does not count it yet.
        c.start("h4", node_args(new, "h4"))
        time.sleep(1.5)
        for h in ("h1", "h2", "h3"):
            check(c, "h4" not in members(c, h), f"{h} lists h4 before any primary added it: {members(c, h)}")
            check(c, info(c, h).get("cluster_members_version") == "0", f"{h}: {info(c, h)}")

        # h2 restarts with the new file, then leads: it applies the change.
        check(c, c.stop("h2") == 0, "h2 did not stop cleanly")
        c.start("h2", node_args(new, "h2"))
        log = c.hosts["h2"].log_path
        until(c, lambda: "wait until this node is primary" in log.read_text(errors="replace"),
              BOUND, "h2 to say the configuration asks for a change")
        until(c, lambda: info(c, "h1", "replication").get("connected_slaves", "0") != "0"
              and info(c, "h2").get("cluster_primary") == "h1", BOUND, "h2 back as h1's backup")
        ip, _ = c.relay_addr("h2")
        t0 = time.monotonic()
        until(c, lambda: c.call("h1", "h1", "FAILOVER", "TO", ip, str(PORT)) == "OK", BOUND,
              "FAILOVER TO h2 accepted")
        primary, term = wait_one_primary(c, ["h1", "h2", "h3"], BOUND, "h2 primary after FAILOVER",
                                         not_="h1")
        check(c, primary == "h2", f"{primary} primary of term {term}")
        for h in ("h1", "h2", "h3", "h4"):
            until(c, lambda h=h: members(c, h).get("h4") == "1", BOUND, f"{h} to list h4 as a voter")
        took = time.monotonic() - t0
        # Three versions: h2's re-stamp of the list in its term (its first
        # change), h4 as a learner, h4 as a voter.
        check(c, info(c, "h2").get("cluster_members_version") == "3",
              f"three steps (re-stamp, learner, voter): {info(c, 'h2')}")
        until(c, lambda: info(c, "h4").get("cluster_primary") == "h2", BOUND, "h4 to follow h2")
        assert c.call("h4", "h4", "SET", "through-h4", "1") == "OK"
        digest = wait_converged(c, ["h1", "h2", "h3", "h4"])

        # h3 restarts with the old file: the database's list stays.
        check(c, c.stop("h3") == 0, "h3 did not stop cleanly")
        c.start("h3", node_args(old, "h3"))
        until(c, lambda: info(c, "h3").get("cluster_primary") == "h2", BOUND, "h3 to follow h2")
        check(c, members(c, "h3").get("h4") == "1", f"h3 forgot h4: {members(c, 'h3')}")
        time.sleep(1.0)
        for h in ("h1", "h2", "h3", "h4"):
            check(c, set(members(c, h)) == {"h1", "h2", "h3", "h4"}, f"{h}: {members(c, h)}")
            check(c, info(c, h).get("cluster_members_version") == "3", f"{h}: {info(c, h)}")
        report(name, f"h4 a voter {took:.2f}s after FAILOVER TO h2; digest {digest}; "
               f"h3 restarted with the old file keeps the list")

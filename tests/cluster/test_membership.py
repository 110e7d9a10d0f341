"""Online membership changes: nodes added, removed and replaced while the
database runs, with no acknowledged write lost.

Four hosts: h1 (z1), h2 (z2), h3 (z3) and h4 (z3), 5 ms one way between
zones, the failover tests' relays and node arguments (`--shards 2
--peer-port 16379`, bus on client port + 20000). The topology file lists
h1, h2 and h3 only (h1 the first primary). h4 is started with the same
file and its own `--node-id h4`: a node the file does not list boots as a
*joiner* (`cluster_role:joining`, refuses writes, follows nobody) until the
primary adds it.

The commands, on the primary:

    KEEL NODE ADD <id> <client host:port> <bus host:port> <zone> <region>
    KEEL NODE REMOVE <id>
    KEEL NODE REPLACE <old-id> <id> <client> <bus> <zone> <region>
    KEEL NODES

ADD makes the node a learner (it copies the data, does not vote); once it is
synced and caught up the primary promotes it to voter by itself. REPLACE
does the same and then removes the old node. INFO cluster shows
`cluster_members_version` (0 for the configured list, +1 per committed step:
a primary's re-stamp of the list in its term before its first change,
add-learner, promote, remove), `cluster_membership` (`idle` or what is
running) and `voter=0|1` on every `memberN` line. h4 is named by its relay
address (client `<relay ip>:6379`, bus `<relay ip>:26379`), as the topology
names the others.

Writers follow the primary through INFO cluster and record every
acknowledged write (test_failover.py's `Load`); at the end each one is read
back from every remaining member. The longest time between two consecutive
acknowledged writes while a node joins and while one leaves is printed
(`pytest -s`). Every wait is bounded; a timeout fails with each node's INFO
cluster and log tail.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from harness import Cluster, HarnessError, RespError, wait_for
from test_failover import (
    BUS_PORT, DELAY_MS, FAILOVER_BOUND, PORT, PORTS, Load, check, diagnostics, fields, info,
    longest_gap, missing_on, node_args, report, until, wait_converged, wait_healthy,
    wait_one_primary,
)

ZONES = {"h1": "z1", "h2": "z2", "h3": "z3", "h4": "z3"}
FIRST = ["h1", "h2", "h3"]  # the members the topology file lists
REGION = "r1"
JOIN_BOUND = 30.0  # s from ADD/REPLACE to the new node a voter on every node (small data sets)
STEP_BOUND = 20.0  # s for a removal, a restart, an election to settle
IN_PROGRESS = "a membership change is in progress"


# --------------------------------------------------------------------------
# topology, start, membership as INFO and KEEL NODES show it
# --------------------------------------------------------------------------

def write_topology_of(c: Cluster, hosts, primary: str = "h1") -> Path:
    """test_failover.write_topology for a subset of the cluster's hosts: the
    others are not in the file (they join later)."""
    lines = [f'primary = "{primary}"', ""]
    for h in hosts:
        ip, _ = c.relay_addr(h)
        lines += ["[[nodes]]", f'id = "{h}"', f'client = "{ip}:{PORT}"', f'bus = "{ip}:{BUS_PORT}"',
                  f'zone = "{c.zone(h)}"', f'region = "{REGION}"', ""]
    path = c.dir / "topology.toml"
    path.write_text("\n".join(lines))
    return path


def start_members(c: Cluster, *extra: str) -> Path:
    """h1, h2, h3 from the topology file: h1 primary of term 1, both backups
    streaming both shards from it."""
    topo = write_topology_of(c, FIRST)
    for h in FIRST:
        c.start(h, node_args(topo, h, *extra))
    wait_healthy(c, "h1", term=1, hosts=FIRST)
    return topo


def start_joiner(c: Cluster, topo: Path, h: str, *extra: str) -> None:
    """`h` with the same topology file (which does not list it): a joiner.
    It answers PING, says `cluster_role:joining` and refuses a write."""
    c.start(h, node_args(topo, h, *extra))
    until(c, lambda: info(c, h).get("cluster_role") == "joining", 10, f"{h} to say cluster_role:joining")
    err = refusal(c, h, "SET", f"joiner:{h}", "x")
    check(c, err is not None, f"the joiner {h} acknowledged a write")


def spec(c: Cluster, h: str) -> list[str]:
    """`<id> <client> <bus> <zone> <region>` of host `h`, by relay address."""
    ip, _ = c.relay_addr(h)
    return [h, f"{ip}:{PORT}", f"{ip}:{BUS_PORT}", c.zone(h), REGION]


def node_cmd(c: Cluster, on: str, *args):
    return c.call(on, on, "KEEL", "NODE", *args, timeout=5)


def refusal(c: Cluster, on: str, *args) -> str | None:
    """The error text of `args` sent to `on` (None when it did not fail)."""
    try:
        c.call(on, on, *args, timeout=5)
    except RespError as e:
        return str(e)
    return None


def members(v: dict[str, str]) -> dict[str, dict[str, str]]:
    """INFO cluster's `memberN:name=...,voter=...` lines by member name."""
    out = {}
    for k, val in v.items():
        if k.startswith("member") and k[6:].isdigit():
            f = fields(val)
            out[f.get("name", k)] = f
    return out


def wait_members(c: Cluster, hosts, voters: dict[str, str], version: int, timeout: float, what: str) -> None:
    """Every one of `hosts` lists exactly the members of `voters` with those
    `voter=` values, at `cluster_members_version` `version`; a primary among
    them shows `cluster_membership:idle` (the change is over)."""
    seen: dict[str, object] = {}

    def ok():
        good = True
        for h in hosts:
            v = info(c, h)
            got = {n: m.get("voter") for n, m in members(v).items()}
            seen[h] = (v.get("cluster_role"), v.get("cluster_members_version"), got,
                       v.get("cluster_membership"))
            if v.get("cluster_members_version") != str(version) or got != voters:
                good = False
            elif v.get("cluster_role") == "primary" and v.get("cluster_membership") != "idle":
                good = False
        return good

    try:
        wait_for(ok, timeout, 0.1, what)
    except HarnessError as e:
        raise AssertionError(f"{e}\nwanted version {version}, members {voters}; last seen "
                             f"(role, version, members, membership): {seen}\n{diagnostics(c)}") from None


def nodes_table(c: Cluster, on: str) -> dict[str, list[str]]:
    """KEEL NODES on `on`: one line per member, by id; each line must have
    the seven fields `<id> <client> <bus> <zone> <region> <kind> <state>`."""
    text = c.call(on, on, "KEEL", "NODES", timeout=5)
    check(c, isinstance(text, str), f"KEEL NODES on {on} answered {text!r}, not one bulk string")
    out = {}
    for line in text.strip().splitlines():
        parts = line.split()
        check(c, len(parts) == 7, f"KEEL NODES on {on}: line {line!r} has not 7 fields")
        out[parts[0]] = parts
    return out


def gap_within(acks, t0: float, t1: float) -> float:
    """The longest time between two consecutive acks that overlaps [t0, t1]
    (the last ack before t0 and the first after t1 count)."""
    before = [a for a in acks if a.t < t0][-1:]
    inside = [a for a in acks if t0 <= a.t <= t1]
    after = [a for a in acks if a.t > t1][:1]
    return longest_gap(before + inside + after)[0]


def writes_after(c: Cluster, load: Load, t: float, n: int = 50, timeout: float = FAILOVER_BOUND) -> None:
    until(c, lambda: sum(1 for a in load.acks() if a.t > t) >= n, timeout, f"{n} writes acknowledged afterwards")


def preload(c: Cluster, host: str, keys: int, size: int, seed: int = 7) -> None:
    """`keys` keys of `size` random bytes (lz4 cannot shrink them), pipelined."""
    rng = random.Random(seed)
    with c.connect(host, host, timeout=20) as conn:
        for at in range(0, keys, 100):
            n = min(100, keys - at)
            for i in range(at, at + n):
                conn.send("SET", f"pre:{i}", rng.randbytes(size))
            for _ in range(n):
                assert conn.read() == "OK"


# --------------------------------------------------------------------------
# a. a replica joins, another leaves, under a write load
# --------------------------------------------------------------------------

@pytest.mark.parametrize("consistency", ["eventual", "strong"])
def test_add_a_replica_and_remove_another_under_load(consistency):
    name = f"join-leave-{consistency}"
    with Cluster(ZONES, delay_ms=DELAY_MS, ports=PORTS) as c:
        extra = ("--consistency", consistency)
        topo = start_members(c, *extra)
        preload(c, "h1", 2000, 2048)  # 4 MB for h4 to copy while the writers go on
        everyone = [*FIRST, "h4"]
        for h in FIRST:
            v = info(c, h)
            check(c, v.get("cluster_members_version") == "0", f"{h}: configured list, version 0: {v}")
            check(c, all(m.get("voter") == "1" for m in members(v).values()), f"{h}: all voters: {members(v)}")
        load = Load(c, FIRST)
        until(c, lambda: len(load.acks()) > 100, 10, "the writers to get going")
        start_joiner(c, topo, "h4", *extra)

        # Join: a learner first, a voter once it holds the data.
        t_add = time.monotonic()
        r = node_cmd(c, "h1", "ADD", *spec(c, "h4"))
        check(c, r == "OK", f"KEEL NODE ADD h4 answered {r!r}")
        wait_members(c, everyone, {h: "1" for h in everyone}, 3, JOIN_BOUND, "h4 a voter on every node")
        t_joined = time.monotonic()
        v4 = info(c, "h4")
        check(c, v4.get("cluster_role") == "backup" and v4.get("cluster_primary") == "h1",
              f"h4 after joining: role {v4.get('cluster_role')}, primary {v4.get('cluster_primary')}")
        writes_after(c, load, t_joined)

        # Leave: a backup is removed (never the primary).
        primary = info(c, "h1").get("cluster_primary")
        gone = "h2" if primary != "h2" else "h3"
        rest = [h for h in everyone if h != gone]
        t_remove = time.monotonic()
        r = node_cmd(c, primary, "REMOVE", gone)
        check(c, r == "OK", f"KEEL NODE REMOVE {gone} answered {r!r}")
        wait_members(c, rest, {h: "1" for h in rest}, 4, STEP_BOUND, f"{gone} gone from every list")
        until(c, lambda: info(c, gone).get("cluster_role") == "removed", STEP_BOUND,
              f"{gone} to say cluster_role:removed")
        t_left = time.monotonic()
        err = refusal(c, gone, "SET", "after:removal", "x")
        check(c, err is not None, f"the removed {gone} acknowledged a write")
        writes_after(c, load, t_left, n=100)

        acks = load.stop()
        new, term = wait_one_primary(c, rest, STEP_BOUND, "one primary among the remaining members")
        check(c, new == primary, f"the primary moved from {primary} to {new} (term {term})")
        wait_converged(c, rest)
        for h, miss in missing_on(c, rest, acks).items():
            check(c, not miss, f"{h} lacks {len(miss)} of {len(acks)} acknowledged writes: {miss[:5]}")
        joined = t_joined - t_add
        left = t_left - t_remove
        report(name, f"{load.summary()}, all on {rest}; h4 a voter everywhere {joined:.2f}s after ADD, "
               f"longest write pause during the join {gap_within(acks, t_add, t_joined) * 1000:.0f} ms; "
               f"{gone} gone everywhere {left:.2f}s after REMOVE, longest write pause during the leave "
               f"{gap_within(acks, t_remove, t_left) * 1000:.0f} ms")


# --------------------------------------------------------------------------
# b. the primary dies in the middle of a join
# --------------------------------------------------------------------------

def test_primary_killed_while_a_node_joins_strong():
    """h4 is a learner (the add-learner step committed: h2 and h3 list it) but
    not yet a voter when h1 is SIGKILLed: its copy is slowed by a bandwidth
    limit on its link and 4 MB of random values. The new primary finishes the
    change; the old primary, restarted on the topology file that lacks h4,
    adopts the current list."""
    name = "join-primary-killed"
    with Cluster(ZONES, delay_ms=DELAY_MS, ports=PORTS) as c:
        extra = ("--consistency", "strong")
        topo = start_members(c, *extra)
        preload(c, "h1", 2000, 2048)
        wait_converged(c, FIRST)
        load = Load(c, FIRST)
        until(c, lambda: len(load.acks()) > 100, 10, "the writers to get going")
        start_joiner(c, topo, "h4", *extra)
        c.limit_bandwidth("h4", "4mbit")  # 4 MB take ~8 s to copy

        r = node_cmd(c, "h1", "ADD", *spec(c, "h4"))
        check(c, r == "OK", f"KEEL NODE ADD h4 answered {r!r}")
        learner = {"h1": "1", "h2": "1", "h3": "1", "h4": "0"}
        wait_members(c, ["h2", "h3"], learner, 2, STEP_BOUND, "h4 listed as a learner on h2 and h3")
        v1 = info(c, "h1")
        check(c, members(v1).get("h4", {}).get("voter") == "0",
              f"h4 was promoted before the kill; the test needs it mid-change: {members(v1)}")
        t_kill = time.monotonic()
        c.kill("h1")
        c.limit_bandwidth("h4", None)

        new, term = wait_one_primary(c, ["h2", "h3"], FAILOVER_BOUND, "a new primary among h2, h3", not_="h1")
        after = {"h1": "1", "h2": "1", "h3": "1", "h4": "1"}
        # The new primary re-stamps the list in its term (3), then promotes (4).
        wait_members(c, ["h2", "h3", "h4"], after, 4, JOIN_BOUND, f"h4 a voter, promoted by the new primary {new}")
        t_joined = time.monotonic()
        v4 = info(c, "h4")
        check(c, v4.get("cluster_role") == "backup" and v4.get("cluster_primary") == new,
              f"h4: role {v4.get('cluster_role')}, primary {v4.get('cluster_primary')}, expected a backup of {new}")
        writes_after(c, load, t_joined, n=100)
        acks = load.stop()
        survivors = ["h2", "h3", "h4"]
        wait_converged(c, survivors)
        for h, miss in missing_on(c, survivors, acks).items():
            check(c, not miss, f"{h} lacks {len(miss)} of {len(acks)} acknowledged writes: {miss[:5]}")

        # The old primary comes back with the file that does not list h4.
        c.start("h1", node_args(topo, "h1", *extra))
        wait_members(c, ["h1", "h2", "h3", "h4"], after, 4, STEP_BOUND, "h1 to adopt the current member list")
        wait_healthy(c, new, term, timeout=STEP_BOUND)
        v1 = info(c, "h1")
        check(c, v1.get("cluster_role") == "backup", f"h1 after its restart: {v1.get('cluster_role')}")
        wait_converged(c, ["h1", *survivors])
        miss = missing_on(c, ["h1"], acks)["h1"]
        check(c, not miss, f"h1 lacks {len(miss)} acknowledged writes after rejoining: {miss[:5]}")
        report(name, f"{load.summary()}; h1 killed with h4 a learner; {new} primary of term {term}, "
               f"h4 a voter {t_joined - t_kill:.2f}s after the kill; h1 back as a backup with h4 listed")


# --------------------------------------------------------------------------
# c. a failed node replaced
# --------------------------------------------------------------------------

def test_replace_a_failed_node_strong():
    """h3 dies; REPLACE h3 with h4 (zone z3 again): h4 joins as a learner
    marked `replaces=h3`, becomes a voter, and h3 leaves the list. The voters
    are then h1, h2, h4: with h2 killed too, h1 and h4 are a majority and the
    database keeps taking strong writes."""
    name = "replace"
    with Cluster(ZONES, delay_ms=DELAY_MS, ports=PORTS) as c:
        extra = ("--consistency", "strong")
        topo = start_members(c, *extra)
        load = Load(c, ["h1", "h2"])
        until(c, lambda: len(load.acks()) > 100, 10, "the writers to get going")
        c.kill("h3")
        writes_after(c, load, time.monotonic())
        start_joiner(c, topo, "h4", *extra)

        # h4 stopped while the change starts: it is seen as a learner that replaces h3.
        c.pause("h4")
        try:
            t_replace = time.monotonic()
            r = node_cmd(c, "h1", "REPLACE", "h3", *spec(c, "h4"))
            check(c, r == "OK", f"KEEL NODE REPLACE h3 h4 answered {r!r}")
            until(c, lambda: "h4" in nodes_table(c, "h1"), STEP_BOUND, "h4 in KEEL NODES on h1")
            row = nodes_table(c, "h1")["h4"]
            check(c, row[5] == "learner,replaces=h3", f"h4 while it copies: {row}")
            check(c, nodes_table(c, "h1")["h3"][5] == "voter", f"h3 still a voter meanwhile: {nodes_table(c, 'h1')}")
        finally:
            c.resume("h4")

        voters = {"h1": "1", "h2": "1", "h4": "1"}
        wait_members(c, ["h1", "h2", "h4"], voters, 4, JOIN_BOUND, "h4 a voter and h3 gone from every list")
        t_replaced = time.monotonic()
        table = nodes_table(c, "h1")
        check(c, sorted(table) == ["h1", "h2", "h4"] and table["h4"][5] == "voter", f"KEEL NODES on h1: {table}")
        writes_after(c, load, t_replaced)

        t_kill = time.monotonic()
        c.kill("h2")
        writes_after(c, load, t_kill, n=100)
        acks = load.stop()
        new, term = wait_one_primary(c, ["h1", "h4"], STEP_BOUND, "one primary among h1, h4")
        wait_converged(c, ["h1", "h4"])
        for h, miss in missing_on(c, ["h1", "h4"], acks).items():
            check(c, not miss, f"{h} lacks {len(miss)} of {len(acks)} acknowledged writes: {miss[:5]}")
        after_kill = [a for a in acks if a.t > t_kill]
        report(name, f"{load.summary()}; h4 replaced h3 {t_replaced - t_replace:.2f}s after REPLACE; "
               f"with h2 killed too {new} is primary of term {term} and acknowledged {len(after_kill)} writes, "
               f"longest pause after the kill {gap_within(acks, t_kill, acks[-1].t) * 1000:.0f} ms")


# --------------------------------------------------------------------------
# d. refusals, KEEL NODES, a restart of a joined node
# --------------------------------------------------------------------------

def test_refusals_nodes_listing_and_restart_of_a_joined_node():
    with Cluster(ZONES, delay_ms=DELAY_MS, ports=PORTS) as c:
        topo = start_members(c)
        start_joiner(c, topo, "h4")
        h4 = spec(c, "h4")

        def refused(on: str, *args, has=("",)) -> str:
            """The -ERR text, which must contain one of `has`."""
            err = refusal(c, on, "KEEL", "NODE", *args)
            check(c, err is not None and err.startswith("ERR"), f"KEEL NODE {args} on {on}: {err!r}, not -ERR")
            check(c, any(x in err for x in has), f"KEEL NODE {args} on {on}: {err!r} does not say any of {has}")
            return err

        names_h1 = ("h1", c.relay_addr("h1")[0])  # the primary, by id or address

        errors = {
            "on a backup": refused("h2", "ADD", *h4, has=names_h1),
            "REMOVE on a backup": refused("h3", "REMOVE", "h2", has=names_h1),
            "unknown id": refused("h1", "REMOVE", "nosuch"),
            "existing id": refused("h1", "ADD", *spec(c, "h2")),
            "bad client address": refused("h1", "ADD", "h4", "nonsense", h4[2], "z3", REGION),
            "bad bus address": refused("h1", "ADD", "h4", h4[1], f"{c.relay_addr('h4')[0]}:99999", "z3", REGION),
            "the primary itself": refused("h1", "REMOVE", "h1"),
        }
        for h in FIRST:
            v = info(c, h)
            check(c, v.get("cluster_members_version") == "0" and sorted(members(v)) == FIRST,
                  f"{h} after the refusals: version {v.get('cluster_members_version')}, members {sorted(members(v))}")
        check(c, info(c, "h1").get("cluster_membership") == "idle", f"h1: {info(c, 'h1').get('cluster_membership')}")

        # A change in progress refuses another: h4 is stopped, so it cannot
        # copy the data and stays a learner until it is resumed.
        c.pause("h4")
        try:
            r = node_cmd(c, "h1", "ADD", *h4)
            check(c, r == "OK", f"KEEL NODE ADD h4 answered {r!r}")
            until(c, lambda: "h4" in nodes_table(c, "h1"), STEP_BOUND, "h4 in KEEL NODES on h1")
            check(c, nodes_table(c, "h1")["h4"][5] == "learner", f"h4 on h1: {nodes_table(c, 'h1')['h4']}")
            errors["change in progress (ADD)"] = refused("h1", "ADD", "h5", f"{c.relay_addr('h3')[0]}:7000",
                                                         f"{c.relay_addr('h3')[0]}:7001", "z3", REGION,
                                                         has=(IN_PROGRESS,))
            errors["change in progress (REMOVE)"] = refused("h1", "REMOVE", "h3", has=(IN_PROGRESS,))
            running = info(c, "h1").get("cluster_membership")
            check(c, running not in (None, "", "idle"), f"h1 cluster_membership during the change: {running!r}")
        finally:
            c.resume("h4")
        everyone = [*FIRST, "h4"]
        wait_members(c, everyone, {h: "1" for h in everyone}, 3, JOIN_BOUND, "h4 a voter on every node")

        # KEEL NODES: one line per member, its addresses, zone, region, kind, state.
        table = nodes_table(c, "h1")
        check(c, sorted(table) == everyone, f"KEEL NODES on h1 lists {sorted(table)}")
        for h in everyone:
            want = [*spec(c, h), "voter", "myself" if h == "h1" else "ok"]
            check(c, table[h] == want, f"KEEL NODES on h1, {h}: {table[h]}, expected {want}")
        check(c, nodes_table(c, "h4")["h4"][6] == "myself", f"KEEL NODES on h4: {nodes_table(c, 'h4')}")

        with c.connect("h1", "h1") as conn:
            for i in range(200):
                assert conn.call("SET", f"k:{i}", i) == "OK"
        wait_converged(c, everyone)

        # h4 restarted with the topology file that does not list it: its
        # cluster file says it is a voter, it does not join again.
        text = (c.hosts["h4"].data_dir / "cluster").read_text()
        check(c, "h4" in text, f"h4's cluster file does not record the members: {text!r}")
        c.restart("h4")
        wait_members(c, everyone, {h: "1" for h in everyone}, 3, STEP_BOUND, "h4 back with the same list")
        wait_healthy(c, "h1", 1, hosts=everyone, timeout=STEP_BOUND)
        assert c.call("h1", "h1", "SET", "after", "restart") == "OK"
        wait_converged(c, everyone)
        check(c, c.call("h4", "h4", "GET", "after") == "restart", "h4 lacks a write made after its restart")
        report("membership-errors", "; ".join(f"{k}: {v}" for k, v in errors.items()))


# --------------------------------------------------------------------------
# e. a learner that never catches up is removed: the join is cancelled
# --------------------------------------------------------------------------

def test_a_learner_that_never_catches_up_can_be_removed():
    with Cluster(ZONES, delay_ms=DELAY_MS, ports=PORTS) as c:
        topo = start_members(c)
        start_joiner(c, topo, "h4")
        c.pause("h4")  # a new machine that died, or a wrong address
        try:
            check(c, node_cmd(c, "h1", "ADD", *spec(c, "h4")) == "OK", "KEEL NODE ADD h4")
            until(c, lambda: members(info(c, "h1")).get("h4", {}).get("voter") == "0", STEP_BOUND,
                  "h4 a learner on h1")
            # Another change waits; removing the stalled learner does not.
            err = refusal(c, "h1", "KEEL", "NODE", "REMOVE", "h3")
            check(c, err is not None and IN_PROGRESS in err, f"REMOVE h3 during the join: {err!r}")
            until(c, lambda: node_cmd(c, "h1", "REMOVE", "h4") == "OK", STEP_BOUND,
                  "REMOVE h4 accepted once the learner's step committed")
            # Re-stamp (1), learner (2), removal (3).
            wait_members(c, FIRST, {h: "1" for h in FIRST}, 3, STEP_BOUND, "h4 gone from every list")
            check(c, info(c, "h1").get("cluster_membership") == "idle", f"h1: {info(c, 'h1')}")
        finally:
            c.resume("h4")
        # h4 is no member: it serves no data, whatever it heard — removed
        # (it saw the list that added it, then the one that removed it) or
        # still waiting (it only saw the removal).
        def settled():
            v = info(c, "h4")
            return v.get("cluster_role") == "removed" or (
                v.get("cluster_role") == "joining" and v.get("cluster_members_version") == "3")
        until(c, settled, STEP_BOUND, "h4 to learn it is no member (list version 3)")
        err = refusal(c, "h4", "GET", "k")
        check(c, err is not None and err.startswith("MASTERDOWN"), f"GET on the cancelled h4: {err!r}")
        assert c.call("h1", "h1", "SET", "still", "writable") == "OK"
        report("membership-cancel", "a stalled learner removed; the database idle with h1..h3")

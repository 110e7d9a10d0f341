"""`keel --check-config FILE`: a configuration and its `[[nodes]]` topology
checked without starting anything. A good file prints a summary (members by
zone, their ports, what the loss of each zone leaves) and exits 0; a bad one
lists every problem, not only the first, and exits non-zero.

The three-zone example in tuning/three-zone/ is checked here too, so it
cannot drift from what keel accepts."""

from __future__ import annotations

import re
import socket
import subprocess
import tomllib
from pathlib import Path

import pytest

from conftest import KEEL_BIN, REPO, TARGET

pytestmark = pytest.mark.skipif(TARGET != "keel", reason="a keel flag")

THREE_ZONE = REPO / "tuning" / "three-zone"


def check(path: Path, *flags: str) -> tuple[int, str, list[str], list[str]]:
    """(exit code, whole output, problems, warnings)."""
    p = subprocess.run([KEEL_BIN, "--check-config", str(path), *flags],
                       capture_output=True, text=True, timeout=30)
    out = p.stdout + p.stderr
    problems = [l[len("problem: "):] for l in out.splitlines() if l.startswith("problem: ")]
    warnings = [l[len("warning: "):] for l in out.splitlines() if l.startswith("warning: ")]
    return p.returncode, out, problems, warnings


def node(id_, client, zone="z1", region="r1", extra=""):
    return (f'[[nodes]]\nid = "{id_}"\nclient = "{client}"\n'
            f'zone = "{zone}"\nregion = "{region}"\n{extra}\n')


def three_zones(**over) -> str:
    head = over.get("head", 'primary = "a"\nshards = 2\n')
    return head + "".join([
        node("a", over.get("a", "127.0.0.1:7001"), "z1"),
        node("b", over.get("b", "127.0.0.1:7011"), "z2"),
        node("c", over.get("c", "127.0.0.1:7021"), "z3"),
    ])


def test_a_good_topology_is_summarised_and_passes(tmp_path):
    f = tmp_path / "topo.toml"
    f.write_text(three_zones())
    rc, out, problems, warnings = check(f, "--node-id", "b", "--port", "7011")
    assert rc == 0, out
    assert problems == [] and out.rstrip().endswith(("configuration OK", "warning(s)")), out
    assert "3 member(s) (3 data, 0 arbiter), 3 zone(s)" in out
    # Members by zone, each with the ports it listens on; this node marked.
    assert re.search(r"zone z2:\n  b 127\.0\.0\.1 \(client 7011, peer 17011-17012, bus 27011, "
                     r"http 8011\) \[this node\]", out), out
    assert "a 127.0.0.1 (client 7001, peer 17001-17002, bus 27001, http 8001) [first primary]" in out
    # What each zone's loss leaves: two of three voters, a majority.
    for z, left in (("z1", "b, c"), ("z2", "a, c"), ("z3", "a, b")):
        assert f"  {z}: 2 of 3 voters remain ({left}) - a majority" in out, out


def test_the_check_starts_nothing(tmp_path):
    """No data directory is created and no port bound: the client port may
    even be held by another process while the check runs."""
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen()
    port = held.getsockname()[1]
    data = tmp_path / "not-created"
    f = tmp_path / "single.toml"
    f.write_text(f'port = {port}\ndir = "{data}"\nappendonly = "yes"\nshards = 1\nhttp-port = 0\n')
    try:
        rc, out, problems, _ = check(f)
    finally:
        held.close()
    assert rc == 0 and problems == [], out
    assert f"single node (no [[nodes]] topology, no failover), 1 shard(s)" in out
    # The default replication port is the client port + 10000, or free
    # ports picked at start when that passes 65535.
    peer = port + 10000 if port + 10000 <= 65535 else "free ports"
    assert f"client {port}, peer {peer}, http off" in out
    assert not data.exists()


def test_every_problem_is_listed_and_the_exit_code_says_so(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text(
        'primary = "x"\nshards = 2\nnode-id = "nobody"\n'
        + node("a", "127.0.0.1:7000", "z1")
        + node("a", "127.0.0.1:7100", "z2")            # duplicate id
        + node("b", "127.0.0.1:7001", "z3")            # peer 17001 = a's shard 1
        + node("c", "bad host:7", "z1")                # not HOST:PORT
        + node("d", "127.0.0.1:7200", "", "")          # no zone, no region
        + node("e", "127.0.0.1:7300", "z2", extra='colour = "red"'))  # unknown key
    rc, out, problems, warnings = check(f)
    assert rc != 0, out
    # A node-id outside [[nodes]] starts waiting to be added: said, not refused.
    assert any(w.startswith("node-id \"nobody\" is not in [[nodes]]") and "KEEL NODE ADD" in w
               for w in warnings), f"{warnings}\n{out}"
    want = [
        "2 [[nodes]] entries share the id \"a\"",
        "primary \"x\" is not in [[nodes]]",
        "node \"c\": client address \"bad host:7\" is not HOST:PORT",
        "node \"d\" has no zone",
        "node \"d\" has no region",
        "127.0.0.1:17001 is claimed twice: a's shard 1 peer port and b's shard 0 peer port",
        "[[nodes]] entry 6: unknown field `colour`",
    ]
    for w in want:
        assert any(p.startswith(w) for p in problems), f"{w!r} not in {problems}\n{out}"
    assert f"{len(problems)} problem(s)" in out


def test_ports_clash_between_a_nodes_own_listeners(tmp_path):
    # The bus of b (explicit) lands on a's HTTP port; c's bus-port flag
    # differs from what the others dial.
    f = tmp_path / "clash.toml"
    f.write_text(three_zones(b='127.0.0.1:7011"\nbus = "127.0.0.1:8001'))
    rc, out, problems, _ = check(f, "--node-id", "c", "--port", "7021", "--bus-port", "29999")
    assert rc != 0, out
    assert any("127.0.0.1:8001 is claimed twice: a's HTTP port and b's bus port" in p
               for p in problems), out
    assert any(p.startswith('node "c" listens for the bus on 29999 (bus-port) but the others dial 27021')
               for p in problems), out


def test_a_layout_that_cannot_survive_a_zone_outage_is_warned_about(tmp_path):
    f = tmp_path / "two-zones.toml"
    f.write_text('primary = "a"\nshards = 2\n' + node("a", "127.0.0.1:7001", "z1")
                 + node("b", "127.0.0.1:7011", "z1") + node("c", "127.0.0.1:7021", "z2"))
    rc, out, problems, warnings = check(f, "--node-id", "a", "--port", "7001")
    assert rc == 0 and problems == [], out
    assert any(w.startswith('losing zone "z1" leaves 1 of 3 voters, not a majority') for w in warnings), out
    assert "  z1: 1 of 3 voters remain (c) - no majority" in out
    # An arbiter in a third zone fixes it; it may not be the primary.
    f.write_text('primary = "a"\nshards = 2\n' + node("a", "127.0.0.1:7001", "z1")
                 + node("b", "127.0.0.1:7011", "z2")
                 + node("x", "127.0.0.1:7021", "z3", extra="arbiter = true"))
    rc, out, problems, warnings = check(f, "--node-id", "a", "--port", "7001")
    assert rc == 0 and problems == [] and not any("zone" in w for w in warnings), out
    assert "x 127.0.0.1 (client 7021, peer 17021-17022, bus 27021, http 8021) [arbiter]" in out
    f.write_text(f.read_text().replace('primary = "a"', 'primary = "x"'))
    rc, out, problems, _ = check(f, "--node-id", "a", "--port", "7001")
    assert rc != 0 and any("primary \"x\" is an arbiter" in p for p in problems), out


def test_unreadable_and_malformed_files_are_problems(tmp_path):
    rc, out, problems, _ = check(tmp_path / "missing.toml")
    assert rc != 0 and problems and problems[0].startswith("cannot read"), out
    f = tmp_path / "broken.toml"
    f.write_text("port = \n")
    rc, out, problems, _ = check(f)
    assert rc != 0 and problems and problems[0].startswith("not valid TOML"), out
    f.write_text('maxmemory-policy = "sometimes"\n')
    rc, out, problems, _ = check(f)
    assert rc != 0 and any("maxmemory-policy" in p for p in problems), out


def test_shards_unset_in_a_topology_is_warned_about(tmp_path):
    f = tmp_path / "topo.toml"
    f.write_text(three_zones(head='primary = "a"\n'))
    rc, out, problems, warnings = check(f, "--node-id", "a", "--port", "7001")
    assert rc == 0 and problems == [], out
    assert any(w.startswith("shards is not set") for w in warnings), out


# ---------------------------------------------------------------------------
# the shipped examples
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["keel-a.toml", "keel-b.toml", "keel-c.toml"])
def test_three_zone_example_configs_pass(name):
    rc, out, problems, warnings = check(THREE_ZONE / name)
    assert rc == 0 and problems == [], out
    # This machine may have fewer CPUs than the example's shards; nothing else.
    assert all(w.startswith("shards = 4 but keel may use") for w in warnings), out
    assert "3 member(s) (3 data, 0 arbiter), 3 zone(s), 1 region(s), 4 shard(s) per node" in out
    for z in ("eu-west-1a", "eu-west-1b", "eu-west-1c"):
        assert re.search(rf"  {z}: 2 of 3 voters remain \(.*\) - a majority", out), out


def test_three_zone_example_configs_share_one_topology():
    files = {n: tomllib.loads((THREE_ZONE / f"keel-{n}.toml").read_text()) for n in "abc"}
    topologies = {n: f["nodes"] for n, f in files.items()}
    assert topologies["a"] == topologies["b"] == topologies["c"]
    # Each file is one member: its node-id, bound to its own client address.
    for n, f in files.items():
        me = next(x for x in f["nodes"] if x["id"] == n)
        assert f["node-id"] == n and me["client"] == f"{f['bind']}:{f['port']}"
    # Apart from who the node is, the settings are the same everywhere.
    strip = lambda f: {k: v for k, v in f.items() if k not in ("node-id", "bind")}
    assert strip(files["a"]) == strip(files["b"]) == strip(files["c"])


def test_three_zone_firewall_section_opens_the_ports_the_configs_use():
    f = tomllib.loads((THREE_ZONE / "keel-a.toml").read_text())
    port, peer, shards, http = f["port"], f["peer-port"], f["shards"], f["http-port"]
    readme = (THREE_ZONE / "README.md").read_text()
    nft = (THREE_ZONE / "keel.nft").read_text()
    peers = f"{peer}-{peer + shards - 1}"
    for text in (readme, nft):
        for want in (str(port), peers, str(port + 20000), str(http)):
            assert want in text, f"{want} missing"
    # ufw spells a range with a colon.
    ufw = [l.strip() for l in readme.splitlines() if l.strip().startswith("ufw allow")]
    for want in (f"port {peer}:{peer + shards - 1} ", f"port {port + 20000} ", f"port {port} ",
                 f"port {http} "):
        assert any(want in l for l in ufw), f"no ufw rule for {want}: {ufw}"
    for member in (n["client"].split(":")[0] for n in f["nodes"]):
        assert member in nft and member in readme

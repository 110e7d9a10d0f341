"""Every link between nodes in mutual TLS (`--tls-replication yes`), over the
cluster harness: replication streams, the cluster bus, and the connections a
backup opens to the primary's client address (its replication-port query,
forwarded writes).

Three hosts in three zones as test_failover. Each node has a plain client
port (6379, which the test's own clients use) and a TLS port (6390); the
topology lists every node by its TLS port, so nodes reach each other only
in TLS, with certificates from one test CA (examples/test_certs.rs). What
is checked: data replicates and a failover elects a new primary with TLS
links alone; a peer speaking plain TCP to the bus or a replication port is
refused; a backup forwards a write over its TLS link; a node added online
(KEEL NODE ADD) joins, copies and votes over TLS links alone.
"""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

from harness import Cluster, RespError
from test_failover import (BUS_PORT, DELAY_MS, FAILOVER_BOUND, PEER_PORT, PORT, SHARDS, ZONES, check, digest,
                           info, until, wait_healthy, wait_one_primary)

TLS_PORT = 6390
PORTS = (PORT, PEER_PORT, PEER_PORT + 1, BUS_PORT, TLS_PORT)


def make_certs(c: Cluster) -> Path:
    tool = Path(c.keel_bin).parent / "examples" / "test_certs"
    assert tool.exists(), f"{tool} missing: cargo build --examples"
    d = c.dir / "certs"
    subprocess.run([str(tool), str(d)], check=True, timeout=60)
    return d


def write_topology(c: Cluster, hosts=None) -> Path:
    lines = ['primary = "h1"', ""]
    for h in hosts or c.hosts:
        ip, _ = c.relay_addr(h)
        lines += ["[[nodes]]", f'id = "{h}"', f'client = "{ip}:{TLS_PORT}"', f'bus = "{ip}:{BUS_PORT}"',
                  f'zone = "{c.zone(h)}"', 'region = "r1"', ""]
    path = c.dir / "topology.toml"
    path.write_text("\n".join(lines))
    return path


def tls_node_args(topo: Path, host: str, certs: Path) -> list[str]:
    return [str(topo), "--node-id", host, "--shards", str(SHARDS), "--peer-port", str(PEER_PORT),
            "--tls-port", str(TLS_PORT), "--tls-replication", "yes",
            "--tls-cert-file", str(certs / "server.crt"), "--tls-key-file", str(certs / "server.key"),
            "--tls-ca-cert-file", str(certs / "ca.crt")]


def plain_bytes_refused(c: Cluster, src: str, dst: str, port: int) -> bool:
    """A plain-text connection from src to dst's port gets no answer a
    plain peer could use: the TLS side closes it."""
    s = c.socket(src)
    s.settimeout(5)
    try:
        s.connect(c.addr(dst, port))
        s.sendall(b"\x00\x00\x00\x10hello from plain")
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        # A TLS alert (record type 0x15) at most; never a keel frame.
        return data == b"" or data[:1] == b"\x15"
    except (ConnectionResetError, socket.timeout):
        return True
    finally:
        s.close()


def test_a_cluster_with_tls_links_replicates_and_fails_over():
    with Cluster(ZONES, delay_ms=DELAY_MS, ports=PORTS) as c:
        certs = make_certs(c)
        topo = write_topology(c)
        for h in c.hosts:
            c.start(h, tls_node_args(topo, h, certs))
        wait_healthy(c, "h1", term=1)
        with c.connect("h1", "h1", direct=True) as r:
            for i in range(300):
                r.send("SET", f"k:{i}", f"v{i}" * 20)
            for _ in range(300):
                assert r.read() == "OK"
        until(c, lambda: len({digest(c, h) for h in c.hosts}) == 1, 20, "all three hold the same data")
        # A write through a backup is forwarded to the primary over TLS.
        with c.connect("h2", "h2", direct=True) as r:
            assert r.call("SET", "via-backup", "yes") == "OK"
        check(c, c.call("h1", "h1", "GET", "via-backup") == "yes", "the forwarded write reached h1")
        # Plain TCP to the bus and to a replication port is refused.
        before = int(info(c, "h1").get("cluster_bus_refused", "0"))
        check(c, plain_bytes_refused(c, "h3", "h1", BUS_PORT), "plain bytes on the bus got an answer")
        check(c, plain_bytes_refused(c, "h3", "h1", PEER_PORT), "plain bytes on a replication port got an answer")
        until(c, lambda: int(info(c, "h1").get("cluster_bus_refused", "0")) > before, 10,
              "h1 counts the refused bus link")
        # The primary dies: the survivors elect a new one over TLS bus links
        # and it streams to the other over TLS.
        c.kill("h1")
        new, term = wait_one_primary(c, ["h2", "h3"], 3 * FAILOVER_BOUND, "a new primary", not_="h1")
        other = "h3" if new == "h2" else "h2"
        with c.connect(new, new, direct=True) as r:
            for i in range(100):
                try:
                    r.call("SET", f"after:{i}", "x")
                except RespError as e:
                    raise AssertionError(f"write on the new primary refused: {e}") from None
        until(c, lambda: c.call(other, other, "GET", "after:99") == "x", 15, f"{other} streams from {new}")
        until(c, lambda: digest(c, new) == digest(c, other), 15, "the survivors converge")
        check(c, c.call(other, other, "GET", "k:299") == "v299" * 20, "data from before the failover kept")
        log = c.log_tail(new, 400) + c.log_tail(other, 400)
        check(c, "panicked" not in log, "a node panicked")


def test_a_node_added_online_joins_over_tls_links():
    with Cluster({**ZONES, "h4": "z3"}, delay_ms=DELAY_MS, ports=PORTS) as c:
        certs = make_certs(c)
        first = ["h1", "h2", "h3"]
        topo = write_topology(c, first)
        for h in c.hosts:
            c.start(h, tls_node_args(topo, h, certs))
        wait_healthy(c, "h1", term=1, hosts=first)
        until(c, lambda: info(c, "h4").get("cluster_role") == "joining", 10, "h4 waiting to be added")
        with c.connect("h1", "h1", direct=True) as r:
            for i in range(200):
                r.send("SET", f"k:{i}", f"v{i}")
            for _ in range(200):
                assert r.read() == "OK"
        ip, _ = c.relay_addr("h4")
        r = c.call("h1", "h1", "KEEL", "NODE", "ADD", "h4", f"{ip}:{TLS_PORT}", f"{ip}:{BUS_PORT}", "z3", "r1")
        check(c, r == "OK", f"KEEL NODE ADD h4: {r!r}")

        def voter_everywhere():
            for h in c.hosts:
                lines = [v for k, v in info(c, h).items() if k.startswith("member")]
                if not any("name=h4," in v and "voter=1" in v for v in lines):
                    return False
            return True

        until(c, voter_everywhere, 30, "h4 a voter on every node")
        until(c, lambda: c.call("h4", "h4", "GET", "k:199") == "v199", 15, "h4 holds the data")
        with c.connect("h4", "h4", direct=True) as r:
            assert r.call("SET", "via-h4", "yes") == "OK"
        check(c, c.call("h1", "h1", "GET", "via-h4") == "yes", "h4 forwards a write to h1 over TLS")
        log = c.log_tail("h4", 400)
        check(c, "panicked" not in log, "h4 panicked")

"""A three-node keel cluster whose backup `b` stands in for a single server.

Used by conftest's `keel_server` fixture for its "backup" param (id
`via-backup`): client scenarios written for one keel run unchanged through a
backup, which forwards writes, transactions, WATCH, blocking pops and PUBLISH
to the primary and serves a read itself only when it cannot miss the client's
own earlier writes (the "front door").

The cluster: one `[[nodes]]` topology file shared by the three nodes, `a`
(zone z1) the first primary, `b` (z2) and `c` (z3) its backups, all on
127.0.0.1. Every port is chosen up front (a node's topology entry names its
client and bus ports, and it is started with `--peer-port P`: shard i
replicates on P + i, so each node needs SHARDS consecutive free ports). HTTP
is off (`--http-port 0`: one port fewer to race for) unless `http=True`
(then each node's `http_port` is chosen up front too). Should a port be taken
between choosing it and the node binding it, the whole cluster is started
again on new ports (bounded).

`BackupCluster` offers what the tests use of conftest's `Server` — `port`,
`host`, `client()`, `raw()`, `flush()`, `alive()`, `log_tail()`, `name`,
`kind`, `password`, `shards` — all talking to backup `b`; `flush()` sends
FLUSHALL through `b` (the primary runs it) and then waits until every node's
DBSIZE is 0, so the next test starts from an empty keyspace everywhere.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from conftest import (HOST, KEEL_BIN, START_TIMEOUT, Server, ServerStartError, _die_with_parent,
                      _live_servers, free_port, port_free)
from respclient import RespConnection

# Shards per node: 4, as the shards4 variant, so keys of one test land on
# different shards and a backup tracks the client's writes per shard.
SHARDS = 4
NODES = (("a", "z1"), ("b", "z2"), ("c", "z3"))
PRIMARY, FRONT = "a", "b"
READY_TIMEOUT = 20.0  # s for the cluster to elect `a` and stream to both backups
FLUSH_TIMEOUT = 10.0  # s for a FLUSHALL to reach every node
START_ATTEMPTS = 3  # whole-cluster starts (new ports each time) when a port was taken


def free_port_block(n: int, avoid: set[int]) -> int:
    """The first of n consecutive ports that are free now and not in `avoid`.

    Starts from a port the OS handed out (so from its ephemeral range, like
    every other port of these tests) and checks the following ones by binding
    them; tries other starts until a whole block is free."""
    for _ in range(200):
        base = free_port()
        block = range(base, base + n)
        if base + n - 1 > 65535 or any(p in avoid for p in block):
            continue
        if all(port_free(p) for p in block):
            return base
    raise ServerStartError(f"found no {n} consecutive free ports")


def parse_info(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and ":" in line:
            k, v = line.split(":", 1)
            out[k] = v
    return out


class ClusterNode(Server):
    """One member of the cluster: fixed ports (they are in the topology file)."""

    def __init__(self, node_id: str, zone: str, workdir: Path, topology: Path, port: int, bus_port: int,
                 peer_port: int, shards: int, http_port: int = 0):
        super().__init__("keel", f"keel[via-backup node {node_id}]", workdir, [], shards)
        self.node_id, self.zone = node_id, zone
        self.topology = topology
        self.port, self.bus_port, self.peer_port = port, bus_port, peer_port
        self.http_port = http_port  # 0: HTTP off

    def argv(self) -> list[str]:
        return [KEEL_BIN, str(self.topology), "--node-id", self.node_id, "--port", str(self.port),
                "--bind", HOST, "--dir", str(self.dir), "--shards", str(self.shards),
                "--peer-port", str(self.peer_port), "--http-port", str(self.http_port)]

    def launch(self):
        log = open(self.log_path, "ab")
        log.write(f"\n=== start: {' '.join(self.argv())}\n".encode())
        log.flush()
        self.proc = subprocess.Popen(
            self.argv(), cwd=self.dir, stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        log.close()
        _live_servers.append(self)

    def call(self, *args, timeout: float = 2.0):
        with RespConnection(HOST, self.port, timeout=timeout) as c:
            return c.call(*args)

    def info(self, section: str) -> dict[str, str]:
        kind, value = self.call("INFO", section)
        if kind == "error":
            raise ConnectionError(f"INFO {section}: {value!r}")
        return parse_info(value.decode(errors="replace"))


class BackupCluster:
    """Nodes a (primary), b, c (backups); clients talk to b."""

    kind = "keel"
    host = HOST
    password = None

    def __init__(self, workdir: Path, shards: int = SHARDS, http: bool = False):
        self.dir = workdir
        self.shards = shards
        self.http = http
        self.name = f"keel[via-backup shards={shards}]"
        self.nodes: dict[str, ClusterNode] = {}
        self.attempt = 0

    @property
    def front(self) -> ClusterNode:
        return self.nodes[FRONT]

    @property
    def port(self) -> int:
        return self.front.port

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> "BackupCluster":
        last = None
        for attempt in range(1, START_ATTEMPTS + 1):
            self.attempt = attempt
            try:
                self._launch(self.dir / f"try{attempt}")
                self._wait_ready()
                return self
            except ServerStartError as e:
                last = e
                self.stop()
                if "in use" not in self.log_tail().lower():
                    break  # not a port race: do not retry
            except BaseException:
                self.stop()
                raise
        raise ServerStartError(f"{self.name} failed to start: {last}\n{self.log_tail()}")

    def _launch(self, root: Path):
        root.mkdir(parents=True, exist_ok=True)
        taken: set[int] = set()
        ports = {}
        for node_id, _zone in NODES:
            client = bus = 0
            while client in taken or client == 0:
                client = free_port()
            taken.add(client)
            while bus in taken or bus == 0:
                bus = free_port()
            taken.add(bus)
            peer = free_port_block(self.shards, taken)
            taken.update(range(peer, peer + self.shards))
            http = 0
            while self.http and (http in taken or http == 0):
                http = free_port()
            if http:
                taken.add(http)
            ports[node_id] = (client, bus, peer, http)
        lines = [f'primary = "{PRIMARY}"', ""]
        for node_id, zone in NODES:
            client, bus, _, _ = ports[node_id]
            lines += ["[[nodes]]", f'id = "{node_id}"', f'client = "{HOST}:{client}"',
                      f'bus = "{HOST}:{bus}"', f'zone = "{zone}"', ""]
        topology = root / "topology.toml"
        topology.write_text("\n".join(lines))
        self.nodes = {}
        for node_id, zone in NODES:
            d = root / node_id
            d.mkdir()
            client, bus, peer, http = ports[node_id]
            self.nodes[node_id] = ClusterNode(node_id, zone, d, topology, client, bus, peer, self.shards, http)
        for n in self.nodes.values():
            n.launch()

    def _not_ready(self) -> str | None:
        """Why the cluster is not ready yet (None: it is)."""
        for n in self.nodes.values():
            if not n.alive():
                raise ServerStartError(f"node {n.node_id} exited with code {n.proc.returncode}")
        try:
            a = self.nodes[PRIMARY]
            ci = a.info("cluster")
            if ci.get("cluster_role") != "primary":
                return f"a: cluster_role={ci.get('cluster_role')}"
            ri = a.info("replication")
            for n in self.nodes.values():
                if n.node_id == PRIMARY:
                    continue
                for s in range(self.shards):
                    link = ri.get(f"shard{s}_link_{n.node_id}", "")
                    if not link.startswith("state=online"):
                        return f"a: shard{s}_link_{n.node_id}={link!r}"
                ci = n.info("cluster")
                if ci.get("cluster_role") != "backup" or ci.get("cluster_primary") != PRIMARY:
                    return f"{n.node_id}: cluster_role={ci.get('cluster_role')} primary={ci.get('cluster_primary')}"
                ri_b = n.info("replication")
                if ri_b.get("master_link_status") != "up" or ri_b.get("replica_ready") != "1":
                    return (f"{n.node_id}: master_link_status={ri_b.get('master_link_status')} "
                            f"replica_ready={ri_b.get('replica_ready')}")
            # the front door forwards: a write through b is acknowledged by a
            reply = self.front.call("SET", "via-backup:probe", "1")
            if reply != ("simple", b"OK"):
                return f"SET through b answered {reply!r}"
            self.front.call("DEL", "via-backup:probe")
        except (OSError, ConnectionError, ValueError) as e:
            return repr(e)
        return None

    def _wait_ready(self):
        deadline = time.monotonic() + max(READY_TIMEOUT, START_TIMEOUT)
        why = "not asked yet"
        while time.monotonic() < deadline:
            why = self._not_ready()
            if why is None:
                self._wait_empty()
                return
            time.sleep(0.05)
        raise ServerStartError(f"cluster not ready within {READY_TIMEOUT}s (last: {why})")

    def stop(self) -> dict[str, int]:
        """Stops every node; returns {node id: exit code} of those that had died."""
        died = {}
        for n in reversed(self.nodes.values()):  # backups first: they never see the primary go
            code = n.stop()
            if code is not None:
                died[n.node_id] = code
        return died

    def alive(self) -> bool:
        return bool(self.nodes) and all(n.alive() for n in self.nodes.values())

    def log_tail(self, n: int = 40) -> str:
        return "\n".join(f"--- node {x.node_id} ({x.log_path}) ---\n{x.log_tail(n)}" for x in self.nodes.values())

    # -- clients (all through backup b) -------------------------------------------
    def raw(self, timeout: float = 10.0) -> RespConnection:
        return self.front.raw(timeout)

    def client(self, protocol: int = 2, **kw):
        return self.front.client(protocol, **kw)

    def flush(self):
        with self.raw() as c:
            reply = c.call("FLUSHALL")
        assert reply == ("simple", b"OK"), f"{self.name}: FLUSHALL through b answered {reply!r}"
        self._wait_empty()

    def _wait_empty(self):
        deadline = time.monotonic() + FLUSH_TIMEOUT
        sizes = {}
        while time.monotonic() < deadline:
            sizes = {}
            for n in self.nodes.values():
                try:
                    sizes[n.node_id] = n.call("DBSIZE")
                except (OSError, ConnectionError, ValueError) as e:
                    sizes[n.node_id] = repr(e)
            if all(v == ("int", 0) for v in sizes.values()):
                return
            time.sleep(0.02)
        raise AssertionError(f"{self.name}: DBSIZE not 0 on every node {FLUSH_TIMEOUT}s after FLUSHALL: {sizes}")

    def __repr__(self):
        return f"<{self.name} " + " ".join(f"{n.node_id}={n.port}" for n in self.nodes.values()) + ">"


def start_backup_cluster(workdir: Path, shards: int = SHARDS, http: bool = False) -> BackupCluster:
    return BackupCluster(workdir, shards, http).start()

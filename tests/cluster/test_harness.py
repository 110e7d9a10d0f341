"""The cluster harness itself, proved with real keel processes.

Hosts h1, h2, h3 sit in zones z1, z2, z3; h4 shares z1 with h1 so that a
same-zone path can be compared with cross-zone ones. Latency checks compare
round trips through the harness's relay against its configured delay: they test
the harness (a functional property), not keel's speed.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from harness import BASE_DIR, Cluster, HarnessError, netns_list, our_namespaces, root_network_state

ZONES = {"h1": "z1", "h2": "z2", "h3": "z3", "h4": "z1"}
DELAY_MS = 20.0
KEEL_ARGS = ["--shards", "1"]
HERE = Path(__file__).resolve().parent


def rtts_ms(conn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        assert conn.call("PING") == "PONG"
        out.append((time.perf_counter() - t0) * 1000)
    return out


def median_rtt(c: Cluster, a: str, b: str, n: int = 15, direct: bool = False) -> float:
    with c.connect(a, b, direct=direct) as conn:
        conn.call("PING")  # the relay's backend connect is not part of the sample
        return statistics.median(rtts_ms(conn, n))


CUT = 0.5  # seconds to wait for an answer that must not come (local paths answer in < 50 ms)


def connect_error(c: Cluster, a: str, b: str, timeout: float = CUT, direct: bool = False):
    """The exception a PING from a to b ends in (None if it got PONG), and how long it took."""
    t0 = time.monotonic()
    try:
        with c.connect(a, b, timeout=timeout, direct=direct) as conn:
            assert conn.call("PING") == "PONG"
        return None, time.monotonic() - t0
    except (OSError, ConnectionError) as e:
        return e, time.monotonic() - t0


@pytest.fixture(scope="class")
def cluster():
    with Cluster(ZONES, delay_ms=DELAY_MS) as c:
        for h in c.hosts:
            c.start(h, KEEL_ARGS)
        yield c


@pytest.fixture
def c(cluster):
    """The shared cluster, put back in shape after every test."""
    yield cluster
    cluster.heal()
    for h in cluster.hosts:
        cluster.limit_bandwidth(h, None)
        if cluster.is_paused(h):
            cluster.resume(h)
        if not cluster.is_running(h):
            cluster.start(h, KEEL_ARGS)
    for z in ("z2", "z3"):
        cluster.set_delay("z1", z, None)


class TestCluster:
    def test_layout(self, c):
        names = netns_list()
        assert c.bridge_ns in names
        for name, h in c.hosts.items():
            assert h.ns in names
            assert h.ns.startswith(c.prefix)
            assert c.zone(name) == ZONES[name]
            # keel runs inside its own namespace, as itself (`ip netns exec` execs).
            pid = c.pid(name)
            ident = subprocess.run(["ip", "netns", "identify", str(pid)], capture_output=True,
                                   text=True, timeout=10).stdout.strip()
            assert ident == h.ns
            assert Path(f"/proc/{pid}/comm").read_text().strip() == "keel"
            out = c.exec(name, ["ip", "-o", "-4", "addr", "show", "dev", "eth0"], check=True).stdout
            assert f"{h.ip}/24" in out and f"{h.relay_ip}/24" in out
        # Same zone: direct; across zones: the destination's relay address.
        assert c.client_addr("h1", "h4") == c.addr("h4") == (c.hosts["h4"].ip, 6379)
        assert c.client_addr("h1", "h2") == c.relay_addr("h2") == (c.hosts["h2"].relay_ip, 6379)
        assert c.client_addr("h1", "h2", 16379) == (c.hosts["h2"].relay_ip, 16379)
        assert c.delay("z1", "z2") == DELAY_MS and c.delay("z1", "z1") == 0
        # The bridge lives in its own namespace; the root namespace has no trace of it.
        root_links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True,
                                    timeout=10).stdout
        br_links = subprocess.run(["ip", "-n", c.bridge_ns, "-o", "link", "show", "master", "br0"],
                                  capture_output=True, text=True, timeout=10).stdout
        assert br_links.count("master br0") == len(c.hosts)
        for h in c.hosts.values():
            assert f": {h.port_name}@" not in root_links

    def test_ping_between_every_pair_with_redis_cli(self, c):
        for a in c.hosts:
            for b in c.hosts:
                if a != b:
                    assert c.redis_cli(a, b, "PING") == "PONG", (a, b)
        # A write on one host is read back from another host's namespace.
        assert c.redis_cli("h1", "h3", "SET", "harness:k", "v1") == "OK"
        assert c.redis_cli("h2", "h3", "GET", "harness:k") == "v1"
        # And with a raw socket from a separate process inside a namespace.
        ip, port = c.client_addr("h2", "h1")
        code = textwrap.dedent(f"""
            import socket
            s = socket.create_connection(({ip!r}, {port}), timeout=5)
            s.sendall(b"*1\\r\\n$4\\r\\nPING\\r\\n")
            print(s.recv(100).decode().strip())
        """)
        assert c.exec("h2", [sys.executable, "-c", code], check=True).stdout.strip() == "+PONG"

    def test_relay_adds_the_configured_delay_across_zones_only(self, c):
        same_zone = median_rtt(c, "h1", "h4")  # direct
        same_zone_relayed = median_rtt(c, "h4", "h1", direct=False)
        cross = {pair: median_rtt(c, *pair) for pair in [("h1", "h2"), ("h2", "h3"), ("h3", "h4")]}
        bypass = median_rtt(c, "h1", "h2", direct=True)  # direct addresses skip the relay
        print(f"median RTT ms: same zone {same_zone:.2f}, cross {cross}, bypass {bypass:.2f}")
        for pair, rtt in cross.items():
            # The delay is one way, added in each direction: a round trip pays it twice.
            assert rtt >= 2 * DELAY_MS, (pair, rtt)
        assert same_zone < DELAY_MS / 4
        assert same_zone_relayed < DELAY_MS / 4
        assert bypass < DELAY_MS / 4

    def test_relay_is_a_pipe_not_stop_and_wait(self, c):
        # 200 pipelined PINGs cross in about one round trip, not 200 of them.
        with c.connect("h1", "h2") as conn:
            conn.call("PING")
            t0 = time.perf_counter()
            conn.sock.sendall(b"*1\r\n$4\r\nPING\r\n" * 200)
            for _ in range(200):
                assert conn.read() == "PONG"
            elapsed_ms = (time.perf_counter() - t0) * 1000
        assert 2 * DELAY_MS <= elapsed_ms < 10 * DELAY_MS, elapsed_ms

    def test_set_delay_applies_to_open_connections(self, c):
        with c.connect("h1", "h2") as conn12, c.connect("h1", "h3") as conn13:
            conn12.call("PING"), conn13.call("PING")
            c.set_delay("z1", "z2", 60)
            slow = statistics.median(rtts_ms(conn12, 8))
            other = statistics.median(rtts_ms(conn13, 8))
            c.set_delay("z1", "z2", None)
            back = statistics.median(rtts_ms(conn12, 8))
        print(f"z1-z2 at 60 ms: {slow:.1f}; z1-z3: {other:.1f}; z1-z2 back: {back:.1f}")
        assert slow >= 120
        assert 2 * DELAY_MS <= other < 120
        assert 2 * DELAY_MS <= back < 120

    def test_partition_cuts_silently_and_heal_restores(self, c):
        before = c.connect("h1", "h3", timeout=CUT)  # established before the cut
        assert before.call("PING") == "PONG"
        c.partition(["h3"], ["h1", "h2", "h4"])
        assert c.cuts() == {(x, "h3") for x in ("h1", "h2", "h4")} | {("h3", x) for x in ("h1", "h2", "h4")}
        # The cut host cannot be reached, nor reach out: connects time out (no refusal,
        # no ICMP), whether through the relay or direct.
        for a, b, direct in [("h1", "h3", False), ("h1", "h3", True), ("h3", "h1", False),
                             ("h3", "h4", True), ("h2", "h3", False)]:
            err, took = connect_error(c, a, b, direct=direct)
            assert isinstance(err, TimeoutError), (a, b, direct, err)
            assert took < CUT + 1
        # Everyone else still talks, same zone and across zones.
        for a, b in [("h1", "h2"), ("h2", "h4"), ("h4", "h1"), ("h2", "h1")]:
            assert c.can_reach(a, b), (a, b)
        # An open connection stalls instead of breaking ...
        before.send("PING")
        with pytest.raises(TimeoutError):
            before.read()
        c.heal()
        assert c.cuts() == set()
        # ... and its pending reply arrives after the heal (TCP retransmits).
        before.sock.settimeout(15)
        t0 = time.monotonic()
        assert before.read() == "PONG"
        print(f"stalled connection resumed {time.monotonic() - t0:.2f}s after the heal")
        before.close()
        for a in c.hosts:
            for b in c.hosts:
                if a != b:
                    assert c.can_reach(a, b, timeout=5), (a, b)

    def test_partial_heal_and_isolate(self, c):
        c.partition(["h1"], ["h2"])
        c.partition(["h3"], ["h4"])
        assert not c.can_reach("h1", "h2", CUT) and not c.can_reach("h4", "h3", CUT)
        assert c.can_reach("h1", "h3") and c.can_reach("h2", "h4")
        c.heal(["h2"], ["h1"])
        assert c.can_reach("h1", "h2") and not c.can_reach("h3", "h4", CUT)
        c.heal()
        c.isolate("h2")
        assert not c.can_reach("h2", "h1", CUT) and not c.can_reach("h4", "h2", CUT, direct=True)
        assert c.can_reach("h1", "h3")
        c.heal()
        assert c.can_reach("h2", "h1")

    def test_pause_stops_answers_and_resume_brings_them_back(self, c):
        conn = c.connect("h1", "h2", timeout=CUT)
        assert conn.call("PING") == "PONG"
        c.pause("h2")
        assert c.is_paused("h2")
        conn.send("PING")
        with pytest.raises(TimeoutError):
            conn.read()
        assert not c.can_reach("h4", "h2", timeout=CUT, direct=True)  # the kernel accepts, nobody answers
        c.resume("h2")
        assert not c.is_paused("h2")
        conn.sock.settimeout(5)
        assert conn.read() == "PONG"  # the request sent while paused is served
        assert conn.call("PING") == "PONG"
        conn.close()
        assert c.can_reach("h3", "h2")

    def test_kill_ends_the_process_and_restart_uses_the_same_dir(self, c):
        pid = c.pid("h3")
        assert c.call("h1", "h3", "SET", "harness:kill", "x") == "OK"
        assert c.kill("h3") == -signal.SIGKILL
        assert not c.is_running("h3") and not Path(f"/proc/{pid}").exists()
        # Direct: refused. Through the relay: accepted, then reset one round trip later.
        err, _ = connect_error(c, "h1", "h3", direct=True)
        assert isinstance(err, ConnectionRefusedError), err
        err, _ = connect_error(c, "h1", "h3")
        assert isinstance(err, ConnectionError), err
        c.restart("h3")
        assert c.pid("h3") != pid
        assert c.call("h2", "h3", "PING") == "PONG"
        # stop: SIGTERM, keel shuts down by itself (bounded), its port is closed.
        rc = c.stop("h3")
        assert rc in (0, -signal.SIGTERM), rc
        assert not c.is_running("h3")
        err, _ = connect_error(c, "h1", "h3", direct=True)
        assert isinstance(err, ConnectionRefusedError), err
        c.start("h3", KEEL_ARGS)
        assert c.call("h1", "h3", "PING") == "PONG"

    def test_limit_bandwidth_with_tbf(self, c):
        value = b"x" * (512 * 1024)  # 4 Mbit
        with c.connect("h4", "h2", direct=True, timeout=20) as conn:
            c.limit_bandwidth("h2", "4mbit")
            t0 = time.perf_counter()
            assert conn.call("SET", "harness:big", value) == "OK"  # into h2
            up = time.perf_counter() - t0
            t0 = time.perf_counter()
            assert len(conn.call("GET", "harness:big")) == len(value)  # out of h2
            down = time.perf_counter() - t0
            c.limit_bandwidth("h2", None)
            t0 = time.perf_counter()
            assert conn.call("SET", "harness:big", value) == "OK"
            free = time.perf_counter() - t0
        print(f"512 KiB at 4 mbit: in {up:.2f}s, out {down:.2f}s; unlimited {free:.3f}s")
        assert up >= 0.6 and down >= 0.6  # 1.0 s at the nominal rate, minus the burst
        assert free < up / 3


def test_cleanup_after_a_failing_block_kills_everything():
    pids = []
    with pytest.raises(RuntimeError, match="boom"):
        with Cluster(["z1", "z2"]) as c:
            c.start("h1", KEEL_ARGS)
            sleeper = c.popen("h2", ["sleep", "600"])
            pids = [c.pid("h1"), sleeper.pid] + [h.relay.pid for h in c.hosts.values()]
            prefix, run_dir = c.prefix, c.dir
            raise RuntimeError("boom")
    assert not [ns for ns in netns_list() if ns.startswith(prefix)]
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists(), pid
    assert (run_dir / "h1" / "keel.log").exists()  # kept for the post-mortem
    subprocess.run(["rm", "-rf", str(run_dir)], timeout=10)


CHILD = textwrap.dedent("""
    import os, signal, subprocess, sys, threading, time
    sys.path.insert(0, {here!r})
    from harness import Cluster
    c = Cluster(["z1", "z2"])
    c.open()
    # Started from a thread that then ends: keel must outlive the thread.
    t = threading.Thread(target=c.start, args=("h1", {args!r}))
    t.start()
    t.join()
    time.sleep(0.2)
    assert c.is_running("h1") and c.call("h2", "h1", "PING") == "PONG"
    # A process the harness does not know about, detached from this one.
    subprocess.Popen(["ip", "netns", "exec", c.ns("h2"), "setsid", "sleep", "600"])
    pids = [c.pid("h1")] + [h.relay.pid for h in c.hosts.values()]
    print(c.prefix, c.dir, ",".join(map(str, pids)), flush=True)
    if sys.argv[1] == "crash":
        os.kill(os.getpid(), signal.SIGKILL)
    try:
        time.sleep(60)
    except KeyboardInterrupt:  # what the harness turns SIGTERM into
        sys.exit(143)
    finally:
        c.close()
""")


def _child(mode: str) -> tuple[subprocess.Popen, str, Path, list[int]]:
    """A separate Python process that opens a cluster and prints its prefix, dir, pids."""
    p = subprocess.Popen([sys.executable, "-c", CHILD.format(here=str(HERE), args=KEEL_ARGS), mode],
                         stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline().split()  # bounded by the pytest timeout
    assert len(line) == 3, "child did not start its cluster"
    return p, line[0], Path(line[1]), [int(x) for x in line[2].split(",")]


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_leftovers_of_a_crashed_run_are_removed_at_start():
    p, prefix, run_dir, pids = _child("crash")
    assert p.wait(timeout=10) == -signal.SIGKILL
    # keel and the relays die with the process that started them (PR_SET_PDEATHSIG) ...
    deadline = time.monotonic() + 5
    while not all(map(_gone, pids)) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert all(map(_gone, pids)), pids
    # ... but its namespaces and a detached process in them stay, until the next run.
    left = [ns for ns in netns_list() if ns.startswith(prefix)]
    assert len(left) == 3  # h1, h2, the bridge: a crash leaves them behind
    stray = [pid for ns in left for pid in
             map(int, subprocess.run(["ip", "netns", "pids", ns], capture_output=True,
                                     text=True, timeout=10).stdout.split())]
    assert stray, "the detached sleeper should still be there"
    with Cluster(["z1"]):
        assert not [ns for ns in netns_list() if ns.startswith(prefix)]
    assert all(map(_gone, stray)), stray
    subprocess.run(["rm", "-rf", str(run_dir)], timeout=10)


def test_sigterm_while_open_cleans_up():
    p, prefix, run_dir, pids = _child("wait")
    assert [ns for ns in netns_list() if ns.startswith(prefix)]
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=15) == 143
    assert not [ns for ns in netns_list() if ns.startswith(prefix)]
    assert all(map(_gone, pids)), pids
    subprocess.run(["rm", "-rf", str(run_dir)], timeout=10)


def test_bad_arguments_are_refused_before_touching_anything():
    with pytest.raises(ValueError):
        Cluster({"H 1": "z1"})
    with Cluster(["z1", "z2"]) as c:
        with pytest.raises(ValueError):
            c.partition(["h1"], ["h1", "h2"])
        with pytest.raises(HarnessError):
            c.kill("h1")  # never started
        with pytest.raises(HarnessError):
            c.zone("h9")
        # keel refusing its arguments: start() says so at once, with the log's tail.
        t0 = time.monotonic()
        with pytest.raises(HarnessError, match="exited"):
            c.start("h1", ["--no-such-flag"])
        assert time.monotonic() - t0 < 10
        assert c.exec("h2", ["cat"], input="through stdin").stdout == "through stdin"


def test_nothing_left_behind(root_state_before):
    """Runs last: every cluster of this session is gone, the root namespace untouched."""
    assert our_namespaces() == []
    assert root_network_state() == root_state_before
    # Successful runs remove their directory; the tests above removed the ones
    # they left on purpose (failure, crash).
    assert not list(BASE_DIR.glob(f"kc{os.getpid()}x*"))

"""Cluster test harness for keel: hosts as network namespaces, zones, delays, faults.

    from harness import Cluster

    with Cluster({"h1": "z1", "h2": "z2", "h3": "z3"}, delay_ms=20) as c:
        for h in c.hosts:
            c.start(h, ["--shards", "2"])
        assert c.call("h1", "h2", "PING") == "PONG"     # h1 -> h2, across zones
        c.partition(["h3"], ["h1", "h2"])               # silent drop both ways
        c.heal()

Layout (see README.md): every host is a network namespace `<prefix><host>` with
one veth `eth0` plugged into a bridge `br0` that lives in its own namespace
`<prefix>-br` (never in the root namespace: nothing here touches the machine's
real interfaces, routes or addresses, and no packet can leave the namespaces).
Host i (1-based, in the order given) has

    direct address  10.77.<run>.<i>      keel binds here; same-zone peers use it
    relay address   10.77.<run>.<100+i>  a delaying TCP relay in host i's namespace
                                         listens here on every harness port and
                                         forwards to the direct address, holding
                                         each chunk for delay(zone(src), zone(i))

`client_addr(a, b)` is b's direct address when a and b share a zone and b's
relay address otherwise, so traffic between zones gets the configured one-way
delay in each direction (a round trip costs twice the delay).

Partitions are `ip rule ... blackhole` entries inside the receiving namespace
(matched on source address and `iif eth0`, placed before the local table), so
packets are dropped silently, like a real cut link: connects time out,
established connections stall and resume after `heal()`. Bandwidth limits are
`tbf` qdiscs on both ends of a host's veth. Every wait is bounded.

Cleanup: `close()` (also on any exception, on SIGTERM/SIGHUP while the cluster
is open, and at interpreter exit) kills every process the harness started and
every process left in its namespaces, then deletes the namespaces. Processes
also carry PR_SET_PDEATHSIG so they die with the Python process even on
SIGKILL; namespaces left by a run that died that way are removed by the next
Cluster() (a run is dead when its pid is gone or belongs to another process).
"""

from __future__ import annotations

import atexit
import ctypes
import ipaddress
import json
import os
import queue
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
RELAY = HERE / "relay.py"

NS_PREFIX = "kc"  # namespaces are kc<pid>x<seq>-<host> and kc<pid>x<seq>--br
NS_RE = re.compile(r"^kc(\d+)x(\d+)-")
DEFAULT_PORTS = (6379, 16379)  # client port, and a spare for a cluster bus
BASE_DIR = Path(os.environ.get("KEEL_CLUSTER_DIR", "/tmp/keel-cluster"))
CMD_TIMEOUT = 10.0  # default bound for every helper command
HOST_RE = re.compile(r"^[a-z][a-z0-9]{0,9}$")
CLONE_NEWNET = 0x40000000

_libc = ctypes.CDLL("libc.so.6", use_errno=True)
_seq_lock = threading.Lock()
_seq = 0
_open_clusters: "set[Cluster]" = set()


class HarnessError(RuntimeError):
    pass


# --------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------

# Children get PR_SET_PDEATHSIG=SIGKILL through util-linux's setpriv (no
# preexec_fn, which is unsafe in threaded programs). The signal fires when the
# *thread* that forked the child ends, so long-lived children are forked by one
# spawner thread that lives as long as the process (see _spawn).
PDEATH = ["setpriv", "--pdeathsig", "KILL", "--"] if shutil.which("setpriv") else []


class _Spawner:
    def __init__(self):
        self.q: queue.Queue = queue.Queue()
        threading.Thread(target=self._loop, name="harness-spawner", daemon=True).start()

    def _loop(self):
        while True:
            fn, box, done = self.q.get()
            try:
                box.append((True, fn()))
            except BaseException as e:  # noqa: BLE001 — handed to the caller
                box.append((False, e))
            done.set()

    def call(self, fn, timeout: float = 10.0):
        box: list = []
        done = threading.Event()
        self.q.put((fn, box, done))
        if not done.wait(timeout):
            raise HarnessError("spawning a process timed out")
        ok, value = box[0]
        if ok:
            return value
        raise value


_spawner: _Spawner | None = None


def _spawn(argv: Sequence[str], **kw) -> subprocess.Popen:
    """Popen(PDEATH + argv) from the spawner thread: the child dies with this process."""
    global _spawner
    with _seq_lock:
        if _spawner is None:
            _spawner = _Spawner()
    return _spawner.call(lambda: subprocess.Popen(PDEATH + list(argv), **kw))


def run(cmd: Sequence[str], timeout: float = CMD_TIMEOUT, check: bool = True,
        input: bytes | None = None) -> subprocess.CompletedProcess:
    """Run a command (bounded); raise HarnessError with its output if it fails."""
    try:
        p = subprocess.run(list(cmd), input=input, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise HarnessError(f"timed out after {timeout}s: {' '.join(cmd)}") from e
    if check and p.returncode != 0:
        raise HarnessError(f"failed ({p.returncode}): {' '.join(cmd)}\n"
                           f"{p.stderr.decode(errors='replace').strip()}")
    return p


def wait_for(cond: Callable[[], object], timeout: float, interval: float = 0.05,
             what: str = "condition"):
    """Poll cond() until it returns something truthy; HarnessError after timeout.

    Other exceptions from cond() count as "not yet" (the last one is reported);
    a HarnessError from cond() gives up at once."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = cond()
            if v:
                return v
        except HarnessError:
            raise
        except Exception as e:  # noqa: BLE001 — report the last one
            last_exc = e
        if time.monotonic() >= deadline:
            raise HarnessError(f"timed out after {timeout}s waiting for {what}"
                               + (f" (last error: {last_exc!r})" if last_exc else ""))
        time.sleep(interval)


def netns_list() -> list[str]:
    p = run(["ip", "netns", "list"], check=False)
    return [line.split()[0] for line in p.stdout.decode().splitlines() if line.strip()]


def netns_pids(ns: str) -> list[int]:
    p = run(["ip", "netns", "pids", ns], check=False)
    return [int(x) for x in p.stdout.decode().split() if x.isdigit()]


def _proc_starttime(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
        return stat.rsplit(")", 1)[1].split()[19]  # field 22
    except (OSError, IndexError):
        return None


def _proc_state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().decode(errors="replace").rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def _socket_inodes(pid: int) -> set[int]:
    """Inodes of the sockets process `pid` holds open."""
    out = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return out
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            out.add(int(target[8:-1]))
    return out


def _tcp_inodes(pid: int) -> set[int]:
    """Inodes of the TCP sockets alive in the network namespace of process `pid`."""
    out = set()
    for name in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{name}") as f:
                next(f, None)
                for line in f:
                    fields = line.split()
                    if len(fields) > 9 and fields[9] != "0":
                        out.add(int(fields[9]))
        except OSError:
            pass
    return out


def _kill_ns_processes(ns: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        pids = netns_pids(ns)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if time.monotonic() >= deadline:
            raise HarnessError(f"processes {pids} in namespace {ns} survive SIGKILL")
        time.sleep(0.02)


def _delete_ns(ns: str) -> None:
    _kill_ns_processes(ns)
    run(["ip", "netns", "del", ns], check=False)


def _run_is_alive(pid: int, seq: int) -> bool:
    """Is the run that owns namespaces kc<pid>x<seq>-* still going?"""
    if pid == os.getpid():
        return any(c.seq == seq for c in _open_clusters)
    start = _proc_starttime(pid)
    if start is None:
        return False
    owner = BASE_DIR / f"{NS_PREFIX}{pid}x{seq}" / "owner"
    try:
        recorded = owner.read_text().split()[1]
    except (OSError, IndexError):
        return True  # pid alive and nothing says otherwise: leave it alone
    return recorded == start


def root_network_state() -> dict[str, str]:
    """The root namespace's links, addresses, routes and rules, to compare before/after."""
    out: dict[str, str] = {}
    if shutil.which("ip") is None:
        return out
    for what in (["link"], ["addr"], ["route"], ["rule"]):
        p = subprocess.run(["ip", "-o", *what, "show"], capture_output=True, text=True, timeout=10)
        # Counters, lifetimes and link-layer details change on their own; keep
        # the identity of each line.
        cut = {"link": " link/", "addr": " valid_lft"}.get(what[0])
        out[what[0]] = "\n".join(sorted(line.split(cut)[0] if cut else line
                                        for line in p.stdout.splitlines()))
    return out


def our_namespaces() -> list[str]:
    """Namespaces of clusters made by this process (open or left behind)."""
    if shutil.which("ip") is None:
        return []
    mine = f"{NS_PREFIX}{os.getpid()}x"
    return [ns for ns in netns_list() if ns.startswith(mine)]


def remove_stale(verbose: bool = True) -> list[str]:
    """Delete namespaces (and their processes) left behind by runs that are gone."""
    removed = []
    for ns in netns_list():
        m = NS_RE.match(ns)
        if m and not _run_is_alive(int(m.group(1)), int(m.group(2))):
            _delete_ns(ns)
            removed.append(ns)
    if removed and verbose:
        print(f"harness: removed stale namespaces {removed}", file=sys.stderr)
    # Logs of dead runs are kept a day for post-mortems, then pruned.
    if BASE_DIR.is_dir():
        for d in BASE_DIR.iterdir():
            m = re.match(r"^kc(\d+)x(\d+)$", d.name)
            try:
                old = time.time() - d.stat().st_mtime > 86400
            except OSError:
                continue
            if m and old and not _run_is_alive(int(m.group(1)), int(m.group(2))):
                shutil.rmtree(d, ignore_errors=True)
    return removed


def socket_in_ns(ns: str, family: int = socket.AF_INET, type: int = socket.SOCK_STREAM) -> socket.socket:
    """A socket created inside namespace `ns` (it stays there wherever it is used).

    A short-lived thread enters the namespace with setns(2) (per thread for a
    network namespace), creates the socket and exits; the process stays put.
    """
    result: list = []

    def body():
        try:
            fd = os.open(f"/run/netns/{ns}", os.O_RDONLY | os.O_CLOEXEC)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns({ns}): {os.strerror(err)}")
            finally:
                os.close(fd)
            result.append(socket.socket(family, type))
        except BaseException as e:  # noqa: BLE001 — handed to the caller
            result.append(e)

    t = threading.Thread(target=body, name=f"setns-{ns}", daemon=True)
    t.start()
    t.join(CMD_TIMEOUT)
    if not result:
        raise HarnessError(f"creating a socket in {ns} timed out")
    if isinstance(result[0], BaseException):
        raise result[0]
    return result[0]


# --------------------------------------------------------------------------
# a minimal RESP2 client (stdlib only)
# --------------------------------------------------------------------------

class RespError(Exception):
    """An error reply (-ERR ...)."""


class Conn:
    """One RESP connection; replies as str / int / None / list / RespError raised."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = b""

    def send(self, *args) -> None:
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            b = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(b), b))
        self.sock.sendall(b"".join(out))

    def call(self, *args):
        self.send(*args)
        return self.read()

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("connection closed by peer")
        self.buf += data

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def read(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RespError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                self._fill()
            data, self.buf = self.buf[:n], self.buf[n + 2:]
            try:
                return data.decode()
            except UnicodeDecodeError:
                return data
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise ConnectionError(f"bad RESP line {line[:80]!r}")

    def close(self) -> None:
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# --------------------------------------------------------------------------
# the cluster
# --------------------------------------------------------------------------

class Host:
    def __init__(self, name: str, index: int, zone: str, ns: str, ip: str, relay_ip: str, dir: Path):
        self.name, self.index, self.zone, self.ns = name, index, zone, ns
        self.ip, self.relay_ip, self.dir = ip, relay_ip, dir
        self.port_name = f"p{index}"  # the veth's end in the bridge namespace
        self.proc: subprocess.Popen | None = None  # keel
        self.args: list[str] = []
        self.port: int | None = None
        self.relay: subprocess.Popen | None = None
        self.relay_buf = b""
        self.bandwidth: str | None = None

    @property
    def log_path(self) -> Path:
        return self.dir / "keel.log"

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"

    def __repr__(self):
        return f"Host({self.name}, zone={self.zone}, ip={self.ip}, relay={self.relay_ip})"


class Cluster:
    """N hosts in network namespaces, labelled with zones, one keel each.

    zones: {"h1": "z1", ...} or a list of zone names (hosts become h1, h2, ...).
    delay_ms: one-way delay added in each direction between hosts of different
        zones (round trip = 2 x delay). delays: {("z1", "z2"): ms} overrides per
        zone pair (symmetric). ports: ports the relays forward (keel's client
        port is the first). keep: keep the run's directory (logs, data) even
        when the block succeeds (it is always kept after a failure).
    """

    def __init__(self, zones: dict[str, str] | Sequence[str], delay_ms: float = 20.0,
                 delays: dict[tuple[str, str], float] | None = None,
                 ports: Sequence[int] = DEFAULT_PORTS, keel_bin: str | None = None,
                 start_timeout: float | None = None, keep: bool = False):
        global _seq
        if isinstance(zones, dict):
            items = list(zones.items())
        else:
            items = [(f"h{i + 1}", z) for i, z in enumerate(zones)]
        if not 1 <= len(items) <= 99:
            raise ValueError("a cluster has 1 to 99 hosts")
        for name, _ in items:
            if not HOST_RE.match(name):
                raise ValueError(f"host name {name!r}: lowercase letters and digits, starting with a letter")
        with _seq_lock:
            _seq += 1
            self.seq = _seq
        self.prefix = f"{NS_PREFIX}{os.getpid()}x{self.seq}-"
        self.bridge_ns = self.prefix + "-br"
        self.run_index = (os.getpid() + self.seq) % 250 + 1  # 3rd octet; cosmetic,
        # every run has its own isolated bridge so runs never see each other.
        self.net = ipaddress.ip_network(f"10.77.{self.run_index}.0/24")
        self.dir = BASE_DIR / self.prefix.rstrip("-")
        self.ports = tuple(int(p) for p in ports)
        self.default_delay_ms = float(delay_ms)
        self._delays = {}
        for (za, zb), ms in (delays or {}).items():
            self._delays[frozenset((za, zb))] = float(ms)
        self.keel_bin = keel_bin or os.environ.get("KEEL_BIN") or str(REPO / "target" / "debug" / "keel")
        self.start_timeout = float(start_timeout or os.environ.get("KEEL_START_TIMEOUT", "20"))
        self.keep = keep
        self.hosts: dict[str, Host] = {}
        for i, (name, zone) in enumerate(items, start=1):
            self.hosts[name] = Host(name, i, str(zone), self.prefix + name,
                                    str(self.net[i]), str(self.net[100 + i]), self.dir / name)
        self._cuts: set[tuple[str, str]] = set()  # (src, dst): dst drops packets from src
        self._procs: list[subprocess.Popen] = []  # popen()ed helpers
        self._relay_gen = 0
        self._corrupt: dict[str, list] = {}  # relay host -> [[src ip, port, token]]
        self._port_extra: dict[str, dict[int, float]] = {}  # relay host -> {port: ms}
        self._old_handlers: dict[int, object] = {}
        self._closed = True

    # -- lifecycle ----------------------------------------------------------
    def __enter__(self) -> "Cluster":
        self.open()
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close(failed=exc_type is not None)
        return False

    def open(self) -> None:
        if os.geteuid() != 0:
            raise HarnessError("the cluster harness needs root (network namespaces)")
        if shutil.which("ip") is None or shutil.which("tc") is None:
            raise HarnessError("iproute2 (ip, tc) missing: run tests/cluster/install.sh")
        remove_stale()
        self._closed = False
        _open_clusters.add(self)
        self._install_signal_handlers()
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            (self.dir / "owner").write_text(f"{os.getpid()} {_proc_starttime(os.getpid())}\n")
            self._build_network()
            for h in self.hosts.values():
                self._start_relay(h)
        except BaseException:
            self.close(failed=True)
            raise

    def _build_network(self) -> None:
        ip = lambda ns, *a: run(["ip", "-n", ns, *a])  # noqa: E731
        run(["ip", "netns", "add", self.bridge_ns])
        ip(self.bridge_ns, "link", "set", "lo", "up")
        ip(self.bridge_ns, "link", "add", "br0", "type", "bridge")
        ip(self.bridge_ns, "link", "set", "br0", "up")
        for h in self.hosts.values():
            h.dir.mkdir(parents=True, exist_ok=True)
            h.data_dir.mkdir(exist_ok=True)
            run(["ip", "netns", "add", h.ns])
            ip(self.bridge_ns, "link", "add", h.port_name, "type", "veth",
               "peer", "name", "eth0", "netns", h.ns)
            ip(self.bridge_ns, "link", "set", h.port_name, "master", "br0")
            ip(self.bridge_ns, "link", "set", h.port_name, "up")
            ip(h.ns, "link", "set", "lo", "up")
            ip(h.ns, "addr", "add", f"{h.ip}/24", "dev", "eth0")
            ip(h.ns, "addr", "add", f"{h.relay_ip}/24", "dev", "eth0")
            ip(h.ns, "link", "set", "eth0", "up")
            # Move the local table's rule behind room for partition rules, so a
            # blackhole rule on incoming packets wins over local delivery.
            ip(h.ns, "rule", "add", "pref", "1000", "lookup", "local")
            ip(h.ns, "rule", "del", "pref", "0")

    def close(self, failed: bool = False) -> None:
        """Kill everything, delete the namespaces. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        # No SIGINT/SIGTERM/SIGHUP in the middle of cleanup: they are held and
        # delivered (and unwind as usual) once everything is gone.
        in_main = threading.current_thread() is threading.main_thread()
        held = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, held) if in_main else None
        try:
            self._cleanup(failed)
        finally:
            if old_mask is not None:
                signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)

    def _cleanup(self, failed: bool) -> None:
        errors = []
        procs = list(self._procs)
        for h in self.hosts.values():
            procs += [p for p in (h.proc, h.relay) if p is not None]
        for p in procs:
            try:
                p.kill()  # SIGKILL works on stopped (paused) processes too
            except OSError:
                pass
        for p in procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                errors.append(f"pid {p.pid} did not die")
            for f in (p.stdout, p.stderr, p.stdin):
                if f is not None:
                    f.close()
        for ns in [h.ns for h in self.hosts.values()] + [self.bridge_ns]:
            try:
                if ns in netns_list():
                    _delete_ns(ns)
            except Exception as e:  # noqa: BLE001 — keep cleaning the rest
                errors.append(f"{ns}: {e}")
        left = [ns for ns in netns_list() if ns.startswith(self.prefix)]
        _open_clusters.discard(self)
        self._restore_signal_handlers()
        if failed or self.keep:
            print(f"harness: logs and data kept in {self.dir}", file=sys.stderr)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
        if left or errors:
            raise HarnessError(f"cleanup incomplete: namespaces left {left}; {errors}")

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def handler(signum, frame):
            raise KeyboardInterrupt(f"signal {signum}")  # unwinds through close()

        for sig in (signal.SIGTERM, signal.SIGHUP):
            cur = signal.getsignal(sig)
            if cur in (signal.SIG_DFL, None):
                self._old_handlers[sig] = cur
                signal.signal(sig, handler)

    def _restore_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        if any(c._old_handlers for c in _open_clusters):
            return  # an enclosing cluster still relies on them
        for sig, old in self._old_handlers.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)
        self._old_handlers = {}

    # -- addresses and zones ------------------------------------------------
    def _h(self, host: str | Host) -> Host:
        if isinstance(host, Host):
            return host
        try:
            return self.hosts[host]
        except KeyError:
            raise HarnessError(f"no host {host!r} (have {list(self.hosts)})") from None

    def zone(self, host: str) -> str:
        return self._h(host).zone

    def ns(self, host: str) -> str:
        return self._h(host).ns

    def addr(self, host: str, port: int | None = None) -> tuple[str, int]:
        """The host's direct address (no delay from anywhere)."""
        return self._h(host).ip, port or self.ports[0]

    def relay_addr(self, host: str, port: int | None = None) -> tuple[str, int]:
        """The host's relay address: delay(zone(caller), zone(host)) each way."""
        return self._h(host).relay_ip, port or self.ports[0]

    def client_addr(self, from_host: str, to_host: str, port: int | None = None) -> tuple[str, int]:
        """Where from_host reaches to_host: direct in a zone, via the relay across zones."""
        if self.zone(from_host) == self.zone(to_host):
            return self.addr(to_host, port)
        return self.relay_addr(to_host, port)

    def delay(self, zone_a: str, zone_b: str) -> float:
        """Configured one-way delay (ms) between two zones; 0 inside a zone."""
        if zone_a == zone_b:
            return 0.0
        return self._delays.get(frozenset((zone_a, zone_b)), self.default_delay_ms)

    def set_delay(self, zone_a: str, zone_b: str, ms: float | None) -> None:
        """Change a zone pair's one-way delay (None: back to delay_ms). Applies to
        open connections too, from the next chunk read; returns when every relay
        has reloaded."""
        if zone_a == zone_b:
            raise ValueError("the delay inside a zone is always 0")
        key = frozenset((zone_a, zone_b))
        if ms is None:
            self._delays.pop(key, None)
        else:
            self._delays[key] = float(ms)
        for h in self.hosts.values():
            if h.zone in key:
                self._write_relay_config(h)
                h.relay.send_signal(signal.SIGHUP)
                self._relay_expect(h, f"RELOADED {self._relay_gen}")

    def set_port_delay(self, to_host: str, port: int, ms: float | None) -> None:
        """Add `ms` of one-way delay to cross-zone traffic reaching `to_host`
        on `port` only (None: remove): e.g. a slow replication link (the
        primary's peer port) beside fast client links. Returns when the
        relay has reloaded."""
        h = self._h(to_host)
        extra = self._port_extra.setdefault(h.name, {})
        if ms is None:
            extra.pop(port, None)
        else:
            extra[port] = float(ms)
        self._write_relay_config(h)
        h.relay.send_signal(signal.SIGHUP)
        self._relay_expect(h, f"RELOADED {self._relay_gen}")

    def corrupt_next(self, to_host: str, from_host: str, port: int) -> None:
        """Flip one byte in the next chunk (>= 16 bytes) that `to_host`'s relay
        passes from its keel back to `from_host` on `port`: a damaged frame on a
        cross-zone link (same-zone traffic does not pass a relay). Returns once
        the relay has the order."""
        h, src = self._h(to_host), self._h(from_host)
        if h.zone == src.zone:
            raise ValueError("same-zone traffic does not pass through a relay")
        self._relay_gen += 1
        token = self._relay_gen
        self._corrupt[h.name] = [[src.ip, int(port), token], [src.relay_ip, int(port), token]]
        self._write_relay_config(h)
        h.relay.send_signal(signal.SIGHUP)
        self._relay_expect(h, f"RELOADED {self._relay_gen}")

    # -- relays -------------------------------------------------------------
    def _relay_config_path(self, h: Host) -> Path:
        return self.dir / f"relay-{h.name}.json"

    def _write_relay_config(self, h: Host) -> None:
        self._relay_gen += 1
        delays = {}
        for src in self.hosts.values():
            if src is h:
                continue
            d = self.delay(src.zone, h.zone)
            delays[src.ip] = d
            delays[src.relay_ip] = d
        cfg = {"gen": self._relay_gen, "default_ms": 0, "delays_ms": delays,
               "corrupt": self._corrupt.get(h.name, []),
               "port_extra_ms": {str(p): ms for p, ms in self._port_extra.get(h.name, {}).items()}}
        path = self._relay_config_path(h)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(cfg, indent=1))
        os.replace(tmp, path)

    def _start_relay(self, h: Host) -> None:
        self._write_relay_config(h)
        log = open(h.dir / "relay.log", "ab")
        try:
            h.relay = _spawn(
                ["ip", "netns", "exec", h.ns, sys.executable, "-u", str(RELAY),
                 "--listen", h.relay_ip, "--target", h.ip,
                 "--ports", ",".join(map(str, self.ports)),
                 "--config", str(self._relay_config_path(h))],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log,
                start_new_session=True)
        finally:
            log.close()
        self._relay_expect(h, "READY")

    def _relay_expect(self, h: Host, want: str, timeout: float = CMD_TIMEOUT) -> None:
        """Read the relay's stdout lines (bounded) until `want` appears."""
        deadline = time.monotonic() + timeout
        fd = h.relay.stdout.fileno()
        while True:
            while b"\n" in h.relay_buf:
                line, h.relay_buf = h.relay_buf.split(b"\n", 1)
                if line.decode(errors="replace").strip() == want:
                    return
            left = deadline - time.monotonic()
            if left <= 0:
                raise HarnessError(f"relay of {h.name}: no {want!r} within {timeout}s "
                                   f"(see {h.dir / 'relay.log'})")
            r, _, _ = select.select([fd], [], [], left)
            if r:
                data = os.read(fd, 4096)
                if not data:
                    raise HarnessError(f"relay of {h.name} exited (rc={h.relay.wait(1)}); "
                                       f"see {h.dir / 'relay.log'}")
                h.relay_buf += data

    # -- keel processes -----------------------------------------------------
    def start(self, host: str, args: Sequence[str] = (), port: int | None = None,
              wait: bool = True) -> subprocess.Popen:
        """Start keel on `host` (bound to its direct address) with extra `args`.

        The harness adds --bind, --port (first harness port unless given) and
        --dir (the host's own data dir, kept across restarts). With wait, returns
        once keel answers PING inside its namespace (bounded by start_timeout).
        """
        h = self._h(host)
        if h.proc is not None and h.proc.poll() is None:
            raise HarnessError(f"keel already runs on {h.name} (pid {h.proc.pid})")
        if not os.access(self.keel_bin, os.X_OK):
            raise HarnessError(f"keel binary {self.keel_bin} missing: run `cargo build` or set KEEL_BIN")
        h.port = port or self.ports[0]
        h.args = list(args)
        argv = ["ip", "netns", "exec", h.ns, self.keel_bin, "--bind", h.ip, "--port", str(h.port),
                "--dir", str(h.data_dir), *h.args]
        log = open(h.log_path, "ab")
        try:
            log.write(f"\n=== {time.strftime('%H:%M:%S')} start: {' '.join(argv)}\n".encode())
            log.flush()
            # setpriv and `ip netns exec` exec (no fork): the pid is keel's own.
            h.proc = _spawn(argv, cwd=h.dir, stdin=subprocess.DEVNULL, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            log.close()
        if wait:
            self.wait_ready(host)
        return h.proc

    def wait_ready(self, host: str, timeout: float | None = None) -> None:
        h = self._h(host)
        timeout = timeout or self.start_timeout

        def ready():
            if h.proc.poll() is not None:
                raise HarnessError(f"keel on {h.name} exited with {h.proc.returncode}:\n"
                                   + self.log_tail(host))
            try:
                with self.connect(host, host, timeout=0.5, direct=True) as c:
                    return c.call("PING") == "PONG"
            except OSError:
                return False

        try:
            wait_for(ready, timeout, interval=0.05, what=f"keel on {h.name} to answer PING")
        except HarnessError as e:
            if "exited" in str(e):
                raise
            raise HarnessError(f"{e}\n{self.log_tail(host)}") from None

    def log_tail(self, host: str, lines: int = 30) -> str:
        try:
            text = self._h(host).log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def pid(self, host: str) -> int | None:
        p = self._h(host).proc
        return p.pid if p is not None and p.poll() is None else None

    def is_running(self, host: str) -> bool:
        return self.pid(host) is not None

    def kill(self, host: str, timeout: float = 10.0) -> int:
        """SIGKILL the host's keel; returns its exit status once it is reaped and
        its sockets are closed (io_uring releases them a few ms after the exit:
        until then its port would still accept connections)."""
        h = self._h(host)
        if h.proc is None:
            raise HarnessError(f"keel was never started on {h.name}")
        sockets = _socket_inodes(h.proc.pid) if h.proc.poll() is None else set()
        if h.proc.poll() is None:
            h.proc.kill()
        try:
            rc = h.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise HarnessError(f"keel on {h.name} (pid {h.proc.pid}) survived SIGKILL for {timeout}s") from None
        self._wait_sockets_closed(h, sockets, timeout)
        return rc

    def stop(self, host: str, timeout: float = 10.0) -> int:
        """SIGTERM (graceful), then SIGKILL if it is still there after `timeout`."""
        h = self._h(host)
        if h.proc is None or h.proc.poll() is not None:
            return h.proc.returncode if h.proc else 0
        sockets = _socket_inodes(h.proc.pid)
        os.kill(h.proc.pid, signal.SIGCONT)
        h.proc.terminate()
        try:
            rc = h.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return self.kill(host)
        self._wait_sockets_closed(h, sockets, timeout)
        return rc

    def _wait_sockets_closed(self, h: Host, inodes: set[int], timeout: float) -> None:
        if not inodes or h.relay is None or h.relay.poll() is not None:
            return
        # /proc/<pid>/net/* shows the namespace of <pid>: the relay lives in h's.
        wait_for(lambda: not (inodes & _tcp_inodes(h.relay.pid)), timeout, 0.002,
                 f"the sockets of the killed keel on {h.name} to close")

    def restart(self, host: str, args: Sequence[str] | None = None, wait: bool = True) -> subprocess.Popen:
        """Kill (if running) and start again on the same data dir, same args by default."""
        h = self._h(host)
        if h.proc is not None and h.proc.poll() is None:
            self.kill(host)
        return self.start(host, h.args if args is None else args, port=h.port, wait=wait)

    def pause(self, host: str, timeout: float = 5.0) -> None:
        """SIGSTOP the host's keel (the network stays up: connects still complete)."""
        pid = self._need_pid(host)
        os.kill(pid, signal.SIGSTOP)
        wait_for(lambda: _proc_state(pid) in ("T", "t"), timeout, 0.01, f"{host} to stop")

    def resume(self, host: str, timeout: float = 5.0) -> None:
        pid = self._need_pid(host)
        os.kill(pid, signal.SIGCONT)
        wait_for(lambda: _proc_state(pid) not in ("T", "t"), timeout, 0.01, f"{host} to continue")

    def is_paused(self, host: str) -> bool:
        pid = self.pid(host)
        return pid is not None and _proc_state(pid) in ("T", "t")

    def _need_pid(self, host: str) -> int:
        pid = self.pid(host)
        if pid is None:
            raise HarnessError(f"keel is not running on {host}")
        return pid

    # -- faults on the network ----------------------------------------------
    def partition(self, hosts_a: Iterable[str], hosts_b: Iterable[str]) -> None:
        """Drop every packet between any host of A and any host of B, both ways,
        direct and relayed. Silent, like a cut link. Adds to earlier cuts."""
        a = [self._h(x).name for x in hosts_a]
        b = [self._h(x).name for x in hosts_b]
        if set(a) & set(b):
            raise ValueError(f"hosts on both sides: {sorted(set(a) & set(b))}")
        new = {(x, y) for x in a for y in b} | {(y, x) for x in a for y in b}
        self._apply_cuts(self._cuts | new)

    def isolate(self, host: str) -> None:
        """Cut one host from every other host."""
        self.partition([host], [h for h in self.hosts if h != host])

    def heal(self, hosts_a: Iterable[str] | None = None, hosts_b: Iterable[str] | None = None) -> None:
        """Remove all cuts, or only those between A and B."""
        if hosts_a is None and hosts_b is None:
            self._apply_cuts(set())
            return
        a = {self._h(x).name for x in (hosts_a or self.hosts)}
        b = {self._h(x).name for x in (hosts_b or self.hosts)}
        self._apply_cuts({(s, d) for (s, d) in self._cuts
                          if not ((s in a and d in b) or (s in b and d in a))})

    def cuts(self) -> set[tuple[str, str]]:
        """Current (src, dst) pairs whose packets are dropped."""
        return set(self._cuts)

    def _apply_cuts(self, want: set[tuple[str, str]]) -> None:
        for src, dst in sorted(want - self._cuts):
            s, d = self.hosts[src], self.hosts[dst]
            for ip in (s.ip, s.relay_ip):
                run(["ip", "-n", d.ns, "rule", "add", "pref", "100", "from", ip,
                     "iif", "eth0", "blackhole"])
            self._cuts.add((src, dst))
        for src, dst in sorted(self._cuts - want):
            s, d = self.hosts[src], self.hosts[dst]
            for ip in (s.ip, s.relay_ip):
                run(["ip", "-n", d.ns, "rule", "del", "pref", "100", "from", ip,
                     "iif", "eth0", "blackhole"], check=False)
            self._cuts.discard((src, dst))

    def limit_bandwidth(self, host: str, rate: str | int | None, burst: str | None = None,
                        latency: str = "100ms") -> None:
        """Limit the host's link (both directions) with tbf; rate like "8mbit" or
        bits per second; None removes the limit."""
        h = self._h(host)
        ends = [(h.ns, "eth0"), (self.bridge_ns, h.port_name)]
        if rate is None:
            for ns, dev in ends:
                run(["tc", "-n", ns, "qdisc", "del", "dev", dev, "root"], check=False)
            h.bandwidth = None
            return
        rate_s = f"{rate}bit" if isinstance(rate, int) else str(rate)
        burst = burst or "64kb"  # >= the largest GSO segment tbf would otherwise split
        for ns, dev in ends:
            run(["tc", "-n", ns, "qdisc", "replace", "dev", dev, "root",
                 "tbf", "rate", rate_s, "burst", burst, "latency", latency])
        h.bandwidth = rate_s

    # -- running things inside hosts ------------------------------------------
    def exec(self, host: str, cmd: Sequence[str], timeout: float = CMD_TIMEOUT,
             check: bool = False, input: bytes | str | None = None) -> subprocess.CompletedProcess:
        """Run a command inside the host's namespace (bounded); text output."""
        if isinstance(input, str):
            input = input.encode()
        argv = ["ip", "netns", "exec", self.ns(host), *cmd]
        try:
            p = subprocess.run(PDEATH + argv, input=input, capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise HarnessError(f"{host}: timed out after {timeout}s: {' '.join(cmd)}") from e
        p = subprocess.CompletedProcess(p.args, p.returncode, p.stdout.decode(errors="replace"),
                                        p.stderr.decode(errors="replace"))
        if check and p.returncode != 0:
            raise HarnessError(f"{host}: failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr}")
        return p

    def popen(self, host: str, cmd: Sequence[str], **kw) -> subprocess.Popen:
        """Start a long-running command inside the host (killed at close())."""
        kw.setdefault("stdin", subprocess.DEVNULL)
        kw.setdefault("start_new_session", True)
        p = _spawn(["ip", "netns", "exec", self.ns(host), *cmd], **kw)
        self._procs.append(p)
        return p

    def redis_cli(self, from_host: str, to_host: str, *args, port: int | None = None,
                  timeout: float = CMD_TIMEOUT) -> str:
        """redis-cli run inside from_host against to_host's client_addr; stdout, stripped."""
        ip, p = self.client_addr(from_host, to_host, port)
        r = self.exec(from_host, ["redis-cli", "-h", ip, "-p", str(p), *map(str, args)],
                      timeout=timeout, check=True)
        return r.stdout.strip()

    def socket(self, host: str) -> socket.socket:
        """A TCP socket that lives in the host's namespace."""
        return socket_in_ns(self.ns(host))

    def connect(self, from_host: str, to_host: str, port: int | None = None,
                timeout: float = 5.0, direct: bool = False) -> Conn:
        """A RESP connection from inside from_host to to_host (client_addr, or the
        direct address with direct=True). `timeout` bounds the connect and every
        later read/write."""
        addr = self.addr(to_host, port) if direct else self.client_addr(from_host, to_host, port)
        s = self.socket(from_host)
        s.settimeout(timeout)
        try:
            s.connect(addr)
        except BaseException:
            s.close()
            raise
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return Conn(s)

    def call(self, from_host: str, to_host: str, *args, port: int | None = None,
             timeout: float = 5.0):
        """One command over a fresh connection from from_host to to_host."""
        with self.connect(from_host, to_host, port, timeout) as c:
            return c.call(*args)

    def can_reach(self, from_host: str, to_host: str, timeout: float = 1.0,
                  port: int | None = None, direct: bool = False) -> bool:
        """Does a PING from from_host to to_host get PONG within `timeout`?"""
        try:
            with self.connect(from_host, to_host, port, timeout, direct=direct) as c:
                return c.call("PING") == "PONG"
        except (OSError, ConnectionError, RespError):
            return False


@atexit.register
def _close_all_at_exit() -> None:
    for c in list(_open_clusters):
        try:
            c.close(failed=True)
        except Exception as e:  # noqa: BLE001
            print(f"harness: cleanup at exit: {e}", file=sys.stderr)

"""Fixtures that start keel and a reference redis-server on free loopback ports.

Environment:
  KEEL_BIN          keel binary (default <repo>/target/debug/keel)
  KEEL_TEST_TARGET  "keel" (default) or "redis": with "redis", every fixture that
                    would start keel starts a redis-server instead (same flags,
                    minus keel-only ones). Use it to self-check the harness.
  REDIS_SERVER_BIN  reference redis-server (default: redis-server on PATH)
  KEEL_START_TIMEOUT seconds to wait for a server to answer PING (default 20)

Every server gets its own port (asked from the OS), its own temp dir and a log
file; it is killed after use, also if pytest itself dies (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from respclient import RespConnection

REPO = Path(__file__).resolve().parents[2]
TARGET = os.environ.get("KEEL_TEST_TARGET", "keel").strip().lower()
KEEL_BIN = os.environ.get("KEEL_BIN") or str(REPO / "target" / "debug" / "keel")
REDIS_SERVER_BIN = os.environ.get("REDIS_SERVER_BIN") or shutil.which("redis-server") or "redis-server"
START_TIMEOUT = float(os.environ.get("KEEL_START_TIMEOUT", "20"))
HOST = "127.0.0.1"

if TARGET not in ("keel", "redis"):
    raise pytest.UsageError(f"KEEL_TEST_TARGET must be 'keel' or 'redis', not {TARGET!r}")

# Flags only keel understands; dropped when redis-server stands in for keel.
KEEL_ONLY_FLAGS = {"--shards": 1}

_live_servers: list["Server"] = []


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def port_free(port: int) -> bool:
    """Whether `port` can be bound on HOST now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def _die_with_parent():
    """preexec_fn: the child gets SIGKILL when pytest exits, however it exits."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _strip_keel_only(args: list[str]) -> list[str]:
    out, i = [], 0
    while i < len(args):
        n = KEEL_ONLY_FLAGS.get(args[i])
        if n is not None:
            i += 1 + n
            continue
        out.append(args[i])
        i += 1
    return out


class ServerStartError(Exception):
    pass


class Server:
    """One running server process (keel or redis-server)."""

    def __init__(self, kind: str, name: str, workdir: Path, extra_args: list[str], shards: int | None):
        self.kind = kind  # "keel" or "redis": what actually runs
        self.name = name  # label for messages, e.g. "keel[shards=4]"
        self.host = HOST
        self.dir = workdir
        self.extra_args = list(extra_args)
        self.shards = shards
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.log_path = workdir / "server.log"
        self.password = None
        if "--requirepass" in extra_args:
            self.password = extra_args[extra_args.index("--requirepass") + 1]

    # -- lifecycle -----------------------------------------------------------
    def argv(self) -> list[str]:
        common = ["--port", str(self.port), "--bind", HOST, "--dir", str(self.dir)]
        if self.kind == "keel":
            argv = [KEEL_BIN] + common
            if self.shards is not None:
                argv += ["--shards", str(self.shards)]
            return argv + self.extra_args
        argv = [REDIS_SERVER_BIN] + common + [
            "--save", "", "--appendonly", "no", "--daemonize", "no",
            "--protected-mode", "no", "--logfile", "",
        ]
        return argv + _strip_keel_only(self.extra_args)

    def start(self):
        if self.kind == "keel" and not os.access(KEEL_BIN, os.X_OK):
            raise ServerStartError(
                f"keel binary {KEEL_BIN} not found or not executable "
                "(build it with `cargo build`, set KEEL_BIN, or run with KEEL_TEST_TARGET=redis)")
        last = None
        for _attempt in range(5):
            self.port = free_port()
            log = open(self.log_path, "ab")
            log.write(f"\n=== start: {' '.join(self.argv())}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.argv(), cwd=self.dir, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
            log.close()
            try:
                self._wait_ready()
                _live_servers.append(self)
                return self
            except ServerStartError as e:
                last = e
                self._kill()
                if "in use" not in self.log_tail().lower():
                    break  # not a port race: do not retry
        raise ServerStartError(f"{self.name} failed to start: {last}\n--- log tail ---\n{self.log_tail()}")

    def _wait_ready(self):
        deadline = time.monotonic() + START_TIMEOUT
        last_err = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerStartError(f"exited with code {self.proc.returncode} before answering PING")
            try:
                with RespConnection(HOST, self.port, timeout=2) as c:
                    reply = c.call("PING")
                if reply == ("simple", b"PONG") or (reply[0] == "error" and reply[1].startswith(b"NOAUTH")):
                    return
                last_err = f"PING answered {reply!r}"
            except (OSError, ConnectionError, ValueError) as e:
                last_err = repr(e)
            time.sleep(0.05)
        raise ServerStartError(f"did not answer PING within {START_TIMEOUT}s (last: {last_err})")

    def _kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)

    def stop(self) -> int | None:
        """Stop the server. Returns its exit code if it had died on its own, else None."""
        died = None
        if self.proc is not None and self.proc.poll() is not None:
            died = self.proc.returncode
        self._kill()
        if self in _live_servers:
            _live_servers.remove(self)
        return died

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n: int = 40) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(lines[-n:])

    # -- clients ---------------------------------------------------------------
    def raw(self, timeout: float = 10.0) -> RespConnection:
        return RespConnection(self.host, self.port, timeout=timeout)

    def client(self, protocol: int = 2, **kw):
        import redis

        kw.setdefault("socket_timeout", 10)
        kw.setdefault("socket_connect_timeout", 5)
        if self.password is not None:
            kw.setdefault("password", self.password)
        return redis.Redis(host=self.host, port=self.port, protocol=protocol, **kw)

    def flush(self):
        with self.raw() as c:
            if self.password is not None:
                c.call("AUTH", self.password)
            # Every database: a test (MOVE, SELECT) may leave keys in another.
            reply = c.call("FLUSHALL")
            assert reply == ("simple", b"OK"), f"{self.name}: FLUSHALL answered {reply!r}"

    def __repr__(self):
        return f"<{self.name} pid={self.proc.pid if self.proc else None} port={self.port}>"


def _keel_kind() -> str:
    return "keel" if TARGET == "keel" else "redis"


def start_keel(workdir: Path, shards: int | None = 1, extra_args=()) -> Server:
    kind = _keel_kind()
    label = f"keel[shards={shards}]" if kind == "keel" else f"redis-as-keel[shards={shards}]"
    return Server(kind, label, workdir, list(extra_args), shards).start()


def start_redis(workdir: Path, extra_args=()) -> Server:
    return Server("redis", "redis(reference)", workdir, list(extra_args), None).start()


def _checked_stop(server: Server):
    died = server.stop()
    if died is not None:
        pytest.fail(f"{server.name} died during the test with exit code {died}\n"
                    f"--- log tail ---\n{server.log_tail()}", pytrace=False)


# -- fixtures ------------------------------------------------------------------

@pytest.fixture(scope="session")
def ref_redis(tmp_path_factory):
    """The reference redis-server, shared by the whole session."""
    s = start_redis(tmp_path_factory.mktemp("ref-redis"))
    yield s
    _checked_stop(s)


# The "backup" variant of keel_server: a three-node cluster whose clients talk
# to a backup (backup_cluster.py). Not among the shared fixture's params (most
# suites check things a backup answers itself: INFO, CONFIG, DEBUG, DBSIZE, ...);
# a module opts in by overriding keel_server with params [1, 4, BACKUP] and
# keel_server_variant as its body, as test_apps.py does.
BACKUP = "backup"


def keel_variant_id(param) -> str:
    return "via-backup" if param == BACKUP else f"shards{param}"


def keel_server_variant(param, tmp_path_factory):
    """Body of keel_server (a generator): keel with --shards `param`, or with
    BACKUP the cluster (yields its backup-facing BackupCluster)."""
    if param == BACKUP:
        if TARGET != "keel":
            pytest.skip("via-backup needs keel's cluster (not with KEEL_TEST_TARGET=redis)")
        from backup_cluster import start_backup_cluster  # imports conftest: not at the top

        c = start_backup_cluster(tmp_path_factory.mktemp("keel-via-backup"))
        yield c
        died = c.stop()
        if died:
            pytest.fail(f"{c.name}: node(s) died during the tests, exit codes {died}\n"
                        f"--- log tails ---\n{c.log_tail()}", pytrace=False)
        return
    s = start_keel(tmp_path_factory.mktemp(f"keel-shards{param}"), shards=param)
    yield s
    _checked_stop(s)


@pytest.fixture(scope="module", params=[1, 4], ids=keel_variant_id)
def keel_server(request, tmp_path_factory):
    """keel started with --shards 1 and with --shards 4 (module-scoped)."""
    yield from keel_server_variant(request.param, tmp_path_factory)


@pytest.fixture
def keel(keel_server):
    """A keel with an empty keyspace (FLUSHDB before the test)."""
    assert keel_server.alive(), f"{keel_server.name} is not running\n{keel_server.log_tail()}"
    keel_server.flush()
    return keel_server


@pytest.fixture
def ref(ref_redis):
    """The reference redis-server with an empty keyspace."""
    ref_redis.flush()
    return ref_redis


@pytest.fixture
def server_factory(tmp_path_factory):
    """Start extra servers inside a test: server_factory('keel', shards=2, extra=[...])."""
    started: list[Server] = []

    def make(kind: str = "keel", shards: int | None = 1, extra=()):
        d = tmp_path_factory.mktemp(f"{kind}-extra")
        s = start_keel(d, shards, extra) if kind == "keel" else start_redis(d, extra)
        started.append(s)
        return s

    yield make
    dead = [(s, s.stop()) for s in started]
    for s, code in dead:
        if code is not None:
            pytest.fail(f"{s.name} died during the test with exit code {code}\n{s.log_tail()}", pytrace=False)


def pytest_sessionfinish(session, exitstatus):
    for s in list(_live_servers):
        s.stop()


def pytest_report_header(config):
    what = f"keel binary {KEEL_BIN}" if TARGET == "keel" else "redis-server standing in for keel"
    return [f"keel tests: target={TARGET} ({what}); reference={REDIS_SERVER_BIN}"]

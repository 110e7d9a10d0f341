"""Helpers for the persistence tests (test_durability.py).

They build on conftest's Server (binary from KEEL_BIN, redis-server standing in
with KEEL_TEST_TARGET=redis, keel-only flags dropped for redis) and add what a
crash test needs: a server bound to a fixed data dir that can be SIGKILLed and
started again with the same flags, a way to run a server that is expected to
refuse to start, INFO parsing, bounded polls and finding the log files.

The server's own log (stdout+stderr) is kept outside the data dir, so that
listing or globbing the data dir only sees the server's data files.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from conftest import HOST, TARGET, Server, _die_with_parent, _keel_kind, _live_servers, free_port
from respclient import RespConnection

IS_REDIS = TARGET == "redis"

# Where keel's append-only logs are looked for (globs relative to --dir).
# KEEL_LOG_GLOB=pattern[,pattern...] overrides this if keel names them otherwise.
# (keel writes shard-NNN/log-NNNNNN.klog; the others are there in case that changes.)
KEEL_LOG_GLOBS = [g.strip() for g in os.environ.get("KEEL_LOG_GLOB", "**/*.klog,**/*.log,**/*.aof").split(",")
                  if g.strip()]
REDIS_LOG_GLOBS = ["appendonlydir/*.incr.aof"]


class Node:
    """A server tied to one data dir: start, SIGKILL, start again with the same flags.

    Every start is a new process (new port) with the same argv except the port,
    as a restart after a crash would be. The server's output of all its lives is
    appended to one log file in `log_dir`; `output_since_start()` gives the part
    written by the current (or last) life.
    """

    def __init__(self, data_dir: Path, log_dir: Path, extra_args=(), shards: int | None = None, name: str = "node"):
        self.data_dir = Path(data_dir)
        self.log_dir = Path(log_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.extra_args = list(extra_args)
        self.shards = shards
        self.kind = _keel_kind()
        self.label = f"{'keel' if self.kind == 'keel' else 'redis-as-keel'}[{name}]"
        self.log_path = self.log_dir / "server.log"
        self.server: Server | None = None
        self._log_offset = 0
        self.lives = 0

    # -- lifecycle -------------------------------------------------------------
    def _new_server(self, extra=()) -> Server:
        s = Server(self.kind, self.label, self.data_dir, self.extra_args + list(extra), self.shards)
        s.log_path = self.log_path  # keep the data dir free of our files
        return s

    def start(self, extra=()) -> Server:
        """Start a new process on the data dir; raises conftest.ServerStartError if it does not come up."""
        assert self.server is None or not self.server.alive(), f"{self.label} is already running"
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self.lives += 1
        self.server = self._new_server(extra)
        return self.server.start()

    def kill9(self) -> float:
        """SIGKILL the running process (no chance to flush anything). Returns time.monotonic() of the kill."""
        s = self.server
        assert s is not None and s.alive(), f"{self.label} is not running\n{self.output_since_start()}"
        t = time.monotonic()
        os.kill(s.proc.pid, signal.SIGKILL)
        s.proc.wait(timeout=10)
        s.stop()  # only bookkeeping now: drops it from conftest's list of live servers
        return t

    def stop(self):
        """Stop the running process, if any (SIGTERM then SIGKILL, as conftest does)."""
        if self.server is not None:
            self.server.stop()

    def argv(self, extra=()) -> list[str]:
        """The argv a start would use now (with a fresh port)."""
        s = self._new_server(extra)
        s.port = free_port()
        return s.argv()

    def output_since_start(self) -> str:
        """What the server printed (stdout+stderr) since the latest start."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self._log_offset)
                return f.read().decode(errors="replace")
        except OSError:
            return "(no log)"

    def raw(self, timeout: float = 10.0) -> RespConnection:
        assert self.server is not None
        return self.server.raw(timeout=timeout)


class ExitResult:
    def __init__(self, returncode, stdout: str, stderr: str, started: bool):
        self.returncode = returncode  # None if it did not exit (it started instead)
        self.stdout = stdout
        self.stderr = stderr
        self.started = started  # answered PING: it did not refuse to start

    @property
    def output(self) -> str:
        return self.stderr + self.stdout

    def __repr__(self):
        return (f"ExitResult(returncode={self.returncode}, started={self.started},\n"
                f"--- stderr ---\n{self.stderr[-3000:]}\n--- stdout ---\n{self.stdout[-2000:]})")


def run_expecting_refusal(argv: list[str], cwd: Path, timeout: float = 20.0) -> ExitResult:
    """Run a server that should refuse to start: wait (bounded) for it to exit.

    If it answers PING instead (it started), it is killed and the result says
    started=True. stdout and stderr are captured separately (in files, so a
    chatty server cannot block on a full pipe)."""
    port = int(argv[argv.index("--port") + 1])
    out_path, err_path = Path(cwd) / ".refusal.out", Path(cwd) / ".refusal.err"
    # These two files live in the log dir given as cwd, never in the data dir.
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                preexec_fn=_die_with_parent)
    started = False
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with RespConnection(HOST, port, timeout=1) as c:
                    if c.call("PING")[0] in ("simple", "error"):
                        started = True
                        break
            except (OSError, ConnectionError, ValueError):
                pass
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
    rc = None if started or proc.returncode == -signal.SIGKILL else proc.returncode
    res = ExitResult(rc, out_path.read_text(errors="replace"), err_path.read_text(errors="replace"), started)
    out_path.unlink(missing_ok=True)
    err_path.unlink(missing_ok=True)
    return res


# -- INFO and polling -------------------------------------------------------------

def info(conn: RespConnection, section: str = "persistence") -> dict[str, str]:
    reply = conn.call("INFO", section)
    assert reply[0] in ("bulk", "verbatim"), f"INFO {section} answered {reply!r}"
    text = reply[-1].decode(errors="replace")
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and ":" in line:
            k, v = line.split(":", 1)
            out[k.strip()] = v.strip()
    return out


def wait_until(pred, timeout: float, interval: float = 0.05, what: str = "condition"):
    """Poll pred() until it returns a truthy value (returned) or `timeout` seconds pass (AssertionError)."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = pred()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
        time.sleep(interval)


def wait_background_idle(conn: RespConnection, timeout: float = 30.0):
    """Wait until no BGSAVE / BGREWRITEAOF is running (INFO persistence fields)."""
    def idle():
        i = info(conn)
        return i.get("aof_rewrite_in_progress") == "0" and i.get("rdb_bgsave_in_progress") == "0" and i
    return wait_until(idle, timeout, what="aof_rewrite_in_progress:0 and rdb_bgsave_in_progress:0")


# -- data dir ---------------------------------------------------------------------------

def data_files(data_dir: Path) -> dict[str, int]:
    """Every regular file under data_dir (relative path -> size)."""
    out = {}
    for p in sorted(Path(data_dir).rglob("*")):
        if p.is_file():
            out[str(p.relative_to(data_dir))] = p.stat().st_size
    return out


def log_files(data_dir: Path) -> list[Path]:
    """The append-only log files in data_dir (keel: KEEL_LOG_GLOBS; redis: the incr AOFs)."""
    globs = REDIS_LOG_GLOBS if IS_REDIS else KEEL_LOG_GLOBS
    found = {p for g in globs for p in Path(data_dir).glob(g) if p.is_file()}
    return sorted(found)


def newest_log_file(data_dir: Path) -> Path:
    """The non-empty log file written last; fails with the dir listing if there is none."""
    files = [p for p in log_files(data_dir) if p.stat().st_size > 0]
    if not files:
        globs = REDIS_LOG_GLOBS if IS_REDIS else KEEL_LOG_GLOBS
        raise AssertionError(
            f"no non-empty log file matching {globs} under {data_dir} "
            f"(set KEEL_LOG_GLOB if keel names its logs otherwise); files there: {data_files(data_dir)}")
    return max(files, key=lambda p: (p.stat().st_mtime_ns, p.stat().st_size, str(p)))


def biggest_log_file(data_dir: Path) -> Path:
    files = [p for p in log_files(data_dir) if p.stat().st_size > 0]
    if not files:
        raise AssertionError(f"no non-empty log file under {data_dir}; files there: {data_files(data_dir)}")
    return max(files, key=lambda p: (p.stat().st_size, str(p)))


# -- tmpfs --------------------------------------------------------------------------------

def mount_tmpfs(path: Path, size: str) -> str | None:
    """Mount a tmpfs of `size` on path. Returns None on success, else why it could not."""
    try:
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                           capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"mount failed: {e!r}"
    if r.returncode != 0:
        return f"mount -t tmpfs failed (exit {r.returncode}): {r.stderr.strip() or r.stdout.strip()}"
    return None


def umount(path: Path):
    """Unmount; falls back to a lazy unmount so a test's teardown never leaves a mount behind."""
    r = subprocess.run(["umount", str(path)], capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, text=True, timeout=30)


def fill_disk(path: Path, limit_bytes: int) -> int:
    """Write `path` until the filesystem reports ENOSPC (at most limit_bytes). Returns bytes written.

    Chunks shrink from 64 KiB to 1 byte so that the filesystem ends up really
    full, not merely short of one big chunk."""
    import errno

    written = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for chunk in (65536, 4096, 512, 1):
            buf = b"\0" * chunk
            while written < limit_bytes:
                try:
                    n = os.write(fd, buf)
                except OSError as e:
                    if e.errno == errno.ENOSPC:
                        break
                    raise
                written += n
                if n < chunk:
                    break  # short write: full for this chunk size, try smaller ones
    finally:
        os.close(fd)
    return written

"""`keel demo`: the README's walkthrough, run as written, and the demo's edges.

The walkthrough test reads the commands and outputs between the
`<!-- demo-walkthrough:start -->` and `<!-- demo-walkthrough:end -->` marks of
README.md and replays them, so the README cannot drift from what the demo
does. In the ```console blocks there:

- `$ CMD` is a command; the lines after it, up to the next `$ ` line or the
  end of the block, are its expected output.
- `$ keel demo` (no subcommand) is the first terminal: it keeps running, in
  the background here, and its expected output is read from its stdout as
  it comes.
- A block that starts with a line other than `$ ` goes on with that first
  terminal's output; `^C` in it is Ctrl-C typed there (`keel demo` runs on
  a pseudo-terminal it controls, so the terminal turns it into SIGINT and
  echoes the `^C`, as a user's does).
- `...` in an expected line stands for any text (what differs from run to
  run); runs of spaces compare as one space.

Every other command runs in bash with its output on a pseudo-terminal, as in
a user's terminal (redis-cli formats replies as `(integer) 2` only there).
The fixed ports of the README (clients 6379-6381, HTTP 7379-7381) are
replaced by a free block found for the test (`KEEL_DEMO_PORT`), and the data
goes to a temporary directory (`KEEL_DEMO_DIR`); `keel` is the binary under
test (`KEEL_BIN`), first on PATH.
"""

from __future__ import annotations

import fcntl
import os
import pty
import random
import re
import signal
import socket
import subprocess
import time
import termios
import tomllib
from pathlib import Path

import pytest

from conftest import HOST, KEEL_BIN, REPO, port_free
from respclient import RespConnection

README = REPO / "README.md"
START, END = "<!-- demo-walkthrough:start -->", "<!-- demo-walkthrough:end -->"
README_PORTS = {6379: 0, 6380: 1, 6381: 2, 7379: 1000, 7380: 1001, 7381: 1002}
# The demo's ports from a base P: clients P..P+2, HTTP P+1000.., replication
# P+10000 + 10k (ten per node), the cluster bus P+20000..
PORT_OFFSETS = [0, 1, 2, 1000, 1001, 1002, 20000, 20001, 20002] + list(range(10000, 10030))
STEP_TIMEOUT = 60.0  # s for one README command or one block of `keel demo` output


def free_base() -> int:
    """A base port whose every demo port is free. Bases from 10000 to 12000 keep
    all of them (up to base + 20002) below the kernel's ephemeral range, where
    the other tests' ports come from."""
    for _ in range(500):
        base = random.randrange(10000, 12000)
        if all(port_free(base + off) for off in PORT_OFFSETS):
            return base
    raise RuntimeError("no free block of demo ports")


class Demo:
    """The environment of one demo: its directory, ports and the `keel demo`
    process of the first terminal."""

    def __init__(self, tmp: Path):
        self.dir = tmp / "demo"
        self.base = free_base()
        self.env = dict(os.environ)
        # `keel` on PATH is the binary under test, whatever KEEL_BIN is called.
        bin_dir = tmp / "bin"
        bin_dir.mkdir()
        (bin_dir / "keel").symlink_to(Path(KEEL_BIN).resolve())
        self.env["PATH"] = f"{bin_dir}:{self.env.get('PATH', '')}"
        self.env["KEEL_DEMO_DIR"] = str(self.dir)
        self.env["KEEL_DEMO_PORT"] = str(self.base)
        self.env.pop("XDG_STATE_HOME", None)
        self.proc: subprocess.Popen | None = None
        self.buf = b""

    def subst(self, text: str) -> str:
        """The README's fixed ports replaced by this demo's."""
        return re.sub(r"\b(6379|6380|6381|7379|7380|7381)\b",
                      lambda m: str(self.base + README_PORTS[int(m.group(1))]), text)

    def keel(self, *args: str, timeout: float = STEP_TIMEOUT) -> subprocess.CompletedProcess:
        return subprocess.run([KEEL_BIN, "demo", *args], env=self.env, capture_output=True,
                              text=True, timeout=timeout)

    def start(self):
        """`keel demo` in a terminal of its own (a pseudo-terminal it
        controls), as a user starts it: Ctrl-C there is the terminal's."""
        assert self.proc is None, "the demo is already running"
        self.buf = b""
        self.master, slave = pty.openpty()

        def controlling_tty():  # after setsid: this terminal is the session's
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.proc = subprocess.Popen([KEEL_BIN, "demo"], env=self.env, stdin=slave, stdout=slave,
                                     stderr=slave, start_new_session=True, preexec_fn=controlling_tty)
        os.close(slave)
        os.set_blocking(self.master, False)

    def _read(self) -> bool:
        """Appends what the terminal shows to the buffer; False at its end."""
        try:
            chunk = os.read(self.master, 65536)
        except BlockingIOError:
            return True
        except OSError:  # EIO: the demo closed the terminal (it exited)
            return False
        self.buf += chunk.replace(b"\r\n", b"\n")
        return bool(chunk)

    def read_lines(self, n: int, timeout: float = STEP_TIMEOUT) -> list[str]:
        """The next n lines `keel demo` prints."""
        deadline = time.monotonic() + timeout
        while self.buf.count(b"\n") < n:
            if time.monotonic() > deadline:
                raise AssertionError(f"keel demo printed only {self.buf!r} in {timeout} s")
            if not self._read():
                raise AssertionError(f"keel demo exited ({self.proc.poll()}) after {self.buf!r}")
            time.sleep(0.02)
        lines = self.buf.split(b"\n")
        self.buf = b"\n".join(lines[n:])
        return [ln.decode(errors="replace") for ln in lines[:n]]

    def interrupt(self) -> int:
        """Ctrl-C typed in the demo's terminal; its exit code. The buffer then
        holds the rest of what the terminal showed."""
        os.write(self.master, b"\x03")
        rc = self.proc.wait(timeout=STEP_TIMEOUT)
        while self._read():
            pass
        self.stop_reading()
        return rc

    def stop_reading(self):
        self.proc = None
        os.close(self.master)

    def state(self) -> dict:
        return tomllib.loads((self.dir / "demo.toml").read_text())

    def pids(self) -> dict[str, int]:
        return {n["id"]: n["pid"] for n in self.state()["nodes"]}

    def cleanup(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.stop_reading()
        if (self.dir / "demo.toml").exists():
            self.keel("stop")
            for pid in self.pids().values():
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass


def running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def run_in_terminal(cmd: str, env: dict, timeout: float = STEP_TIMEOUT) -> tuple[int, str]:
    """Runs `cmd` in bash with stdout and stderr on a pseudo-terminal; its exit
    code and output (line ends as \\n)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(["bash", "-c", cmd], env=env, stdin=subprocess.DEVNULL, stdout=slave,
                            stderr=slave, start_new_session=True)
    os.close(slave)
    out = b""
    deadline = time.monotonic() + timeout
    try:
        while True:
            if time.monotonic() > deadline:
                proc.kill()
                raise AssertionError(f"{cmd!r} did not finish in {timeout} s: {out!r}")
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every writer closed the terminal
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(master)
    rc = proc.wait(timeout=timeout)
    return rc, out.decode(errors="replace").replace("\r\n", "\n")


def matches(expected: str, actual: str) -> bool:
    """One output line against one README line: `...` is any text, runs of
    spaces are one space."""
    norm = lambda s: re.sub(r" +", " ", s.strip())
    parts = [re.escape(p) for p in norm(expected).split("...")]
    return re.fullmatch(".*?".join(parts), norm(actual)) is not None


def check_output(what: str, expected: list[str], actual: list[str]):
    ok = len(expected) == len(actual) and all(matches(e, a) for e, a in zip(expected, actual))
    assert ok, (f"{what}: the README shows\n  " + "\n  ".join(expected) +
                "\nbut the demo printed\n  " + "\n  ".join(actual))


def walkthrough() -> list[list[str]]:
    """The console blocks of the README's walkthrough, as lists of lines."""
    text = README.read_text()
    assert text.count(START) == 1 and text.count(END) == 1, "walkthrough marks missing in README.md"
    section = text.split(START, 1)[1].split(END, 1)[0]
    blocks = re.findall(r"```console\n(.*?)```", section, re.S)
    assert blocks, "no ```console block in the walkthrough"
    return [b.rstrip("\n").split("\n") for b in blocks]


def steps(block: list[str]) -> list[tuple[str | None, list[str]]]:
    """(command or None for the first terminal's output, expected lines)."""
    out: list[tuple[str | None, list[str]]] = []
    for line in block:
        if line.startswith("$ "):
            out.append((line[2:], []))
        elif line == "^C":
            out.append(("^C", []))
        else:
            if not out:
                out.append((None, []))
            out[-1][1].append(line)
    return out


@pytest.fixture
def demo(tmp_path):
    d = Demo(tmp_path)
    yield d
    d.cleanup()


def test_readme_walkthrough(demo):
    """Every command of the README's walkthrough prints what the README shows;
    Ctrl-C then stops the three nodes and `keel demo` exits 0."""
    digests: list[set[str]] = []  # per DEBUG DIGEST step: the digests printed
    ran = []
    for block in walkthrough():
        for cmd, expected in steps(block):
            expected = [demo.subst(line) for line in expected]
            if cmd == "keel demo":
                demo.start()
                check_output(cmd, expected, demo.read_lines(len(expected)))
            elif cmd is None:
                check_output("keel demo (first terminal)", expected, demo.read_lines(len(expected)))
            elif cmd == "^C":
                pids = demo.pids()
                assert demo.interrupt() == 0
                assert not any(running(p) for p in pids.values()), f"nodes left running: {pids}"
                # The terminal echoed the ^C; the demo went on from a new line.
                after = demo.buf.decode(errors="replace")
                check_output("keel demo after Ctrl-C", ["^C", *expected], after.rstrip("\n").split("\n"))
            else:
                rc, out = run_in_terminal(demo.subst(cmd), demo.env)
                assert rc == 0, f"{cmd!r} exited {rc}: {out}"
                check_output(cmd, expected, out.rstrip("\n").split("\n"))
                if "DEBUG DIGEST" in cmd:
                    digests.append(set(out.split()))
            ran.append(cmd)
    # What the walkthrough is about, beyond its text: it did fail over and back.
    assert "keel demo kill a" in ran and "keel demo restart a" in ran and "^C" in ran
    assert digests and all(len(d) == 1 for d in digests), f"nodes disagree: {digests}"


def test_port_taken_is_refused(demo):
    """A taken port: a message naming it and its use, a non-zero exit, no node
    started."""
    taken = demo.base + 1  # node b's client port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, taken))
        s.listen()
        r = demo.keel(timeout=20)
    assert r.returncode == 1, r
    assert f"port {taken} (node b's client port) is taken on 127.0.0.1" in r.stderr, r.stderr
    assert "keel demo --port" in r.stderr
    assert not (demo.dir / "demo.toml").exists()
    assert not (demo.dir / "a").exists()
    assert all(port_free(demo.base + off) for off in (0, 2, 1000, 20000))


def info(port: int, section: str) -> dict[str, str]:
    with RespConnection(HOST, port, timeout=5) as c:
        kind, value = c.call("INFO", section)
    assert kind != "error", value
    return dict(line.split(":", 1) for line in value.decode().splitlines() if ":" in line)


def call(port: int, *args):
    with RespConnection(HOST, port, timeout=5) as c:
        return c.call(*args)


def test_second_run_reuses_data_and_pause_and_stop(demo):
    """A second `keel demo` on the same directory starts from the first's data;
    `pause` freezes a node and lets it go on; `watch --count 2` prints two
    plain tables; a running demo is not started twice; `keel demo stop` stops
    every node and the supervisor then ends by itself."""
    demo.start()
    demo.read_lines(18)
    a, b = demo.base, demo.base + 1
    assert call(b, "SET", "kept", "across runs") == ("simple", b"OK")
    assert call(a, "WAIT", "2", "5000") == ("int", 2)
    digest = call(a, "DEBUG", "DIGEST")
    again = demo.keel(timeout=20)
    assert again.returncode == 1 and "a demo is already running" in again.stderr, again
    first_pids = demo.pids()
    assert demo.interrupt() == 0
    assert not any(running(p) for p in first_pids.values())

    demo.start()
    screen = demo.read_lines(18)
    assert screen[0].startswith("keel demo: three nodes on 127.0.0.1"), screen
    assert str(demo.dir) in screen[1]
    for port in (a, a + 1, a + 2):
        assert call(port, "GET", "kept") == ("bulk", b"across runs")
        assert call(port, "DEBUG", "DIGEST") == digest
    roles = [line.split()[2] for line in screen[4:7]]
    assert sorted(roles) == ["backup", "backup", "primary"], screen

    r = demo.keel("pause", "c", "2")
    assert r.returncode == 0, r
    assert r.stdout.splitlines() == ["node c paused (SIGSTOP) for 2 s", "node c resumed (SIGCONT)"]
    deadline = time.monotonic() + 20
    while info(a + 2, "replication").get("replica_ready") != "1":
        assert time.monotonic() < deadline, "c did not become ready again after the pause"
        time.sleep(0.1)
    assert call(a + 2, "GET", "kept") == ("bulk", b"across runs")

    # Two tables a second apart, in a pipe: plain text, a blank line between.
    r = demo.keel("watch", "--count", "2")
    assert r.returncode == 0, r
    tables = r.stdout.rstrip("\n").split("\n\n")
    assert len(tables) == 2 and "\x1b" not in r.stdout, r.stdout
    for t in tables:
        rows = [line.split() for line in t.splitlines()]
        assert rows[0][:4] == ["node", "zone", "port", "role"], t
        assert [row[0] for row in rows[1:]] == ["a", "b", "c"], t
        assert sorted(row[3] for row in rows[1:]) == ["backup", "backup", "primary"], t
        assert all(row[7] == "yes" for row in rows[1:]), t  # ready

    pids = demo.pids()
    r = demo.keel("stop")
    assert r.returncode == 0 and r.stdout.strip() == "stopped a, b, c", r
    assert not any(running(p) for p in pids.values())
    assert demo.proc.wait(timeout=20) == 0
    while demo._read():
        pass
    demo.stop_reading()
    tail = demo.buf.decode().splitlines()
    assert tail[-1] == "no node of the demo runs any more: the demo ends", tail


def test_commands_without_a_demo_say_how_to_start_one(demo):
    for args in (["watch", "--once"], ["kill", "a"], ["restart", "b"]):
        r = demo.keel(*args)
        assert r.returncode == 1, r
        assert f"no demo in {demo.dir}: start one with `keel demo`" in r.stderr, r.stderr

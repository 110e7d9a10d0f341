"""Restarting keel on its port (issue 13, item 1: listeners).

keel binds its client port once, without SO_REUSEPORT, and shuts the socket
down the moment it is told to stop. Clients hammering the port while keel is
stopped and started again, ten times over, must see one of two things: a
refused connection, or a connection that answers PING — never a connection
the server accepted and then reset:

* after SIGTERM (give or take the signal's delivery) until the next keel
  answers, every connection is refused;
* after SIGTERM or SIGKILL, once the next keel has answered a PING, every
  connection is served (it never shares the port with the dead process's
  sockets, whose teardown the kernel defers).

(A connection alive when the process is SIGKILLed is reset, as with any
server; those are not counted.)
"""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import HOST, KEEL_BIN, TARGET, _die_with_parent, free_port

ROUNDS = 10
PROBES = 4
# From this long after SIGTERM on, keel's socket is shut (the handler does
# it at once; the margin is for the signal's delivery on a busy machine).
GRACE = 0.05
# Pause after each served connection (refusals retry after 1 ms).
PACE = 0.003


class Probe:
    """Connects, PINGs and closes in a loop from a few threads, sorting each
    attempt by the phase it started in."""

    def __init__(self, port: int):
        self.port = port
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.phase = "starting"  # starting | up | signalled (then stopping, GRACE on)
        self.signalled_at = 0.0
        self.generation = 0
        self.served = 0
        self.refused = 0
        self.reset_while_up: list[str] = []
        self.reset_while_stopping: list[str] = []
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(PROBES)]

    def set_phase(self, phase: str) -> None:
        with self.lock:
            self.phase = phase
            self.signalled_at = time.monotonic()
            if phase == "up":
                self.generation += 1

    def run(self) -> None:
        while not self.stop.is_set():
            with self.lock:
                phase, gen = self.phase, self.generation
                if phase == "signalled" and time.monotonic() >= self.signalled_at + GRACE:
                    phase = "stopping"
            s = socket.socket()
            s.settimeout(2)
            try:
                s.connect((HOST, self.port))
            except OSError:
                with self.lock:
                    self.refused += 1
                s.close()
                time.sleep(0.001)
                continue
            try:
                s.sendall(b"*1\r\n$4\r\nPING\r\n")
                got = s.recv(64)
                if got.startswith(b"+PONG"):
                    with self.lock:
                        self.served += 1
                    # Paced: an unpaced loop spends tens of thousands of
                    # ephemeral ports (TIME_WAIT) that later tests need.
                    time.sleep(PACE)
                    continue
                failure = f"answered {got!r}"
            except OSError as e:
                failure = repr(e)
            finally:
                s.close()
            with self.lock:
                if phase == "up" and self.phase == "up" and self.generation == gen:
                    self.reset_while_up.append(failure)
                elif phase == "stopping":
                    self.reset_while_stopping.append(failure)


def start(port: int, workdir) -> subprocess.Popen:
    p = subprocess.Popen([KEEL_BIN, "--port", str(port), "--bind", HOST, "--dir", str(workdir),
                          "--shards", "2", "--http-port", "0"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         preexec_fn=_die_with_parent)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((HOST, port), 0.5) as c:
                c.sendall(b"*1\r\n$4\r\nPING\r\n")
                if c.recv(16).startswith(b"+PONG"):
                    return p
        except OSError:
            pass
        if p.poll() is not None:
            raise AssertionError(f"keel exited with {p.returncode} while starting")
        time.sleep(0.01)
    p.kill()
    raise AssertionError("keel did not answer PING within 20 s")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_clients_never_meet_an_accepted_then_reset_connection_across_restarts(sig, tmp_path):
    if TARGET != "keel":
        pytest.skip("keel's own listener")
    port = free_port()
    probe = Probe(port)
    for t in probe.threads:
        t.start()
    p = None
    try:
        for _ in range(ROUNDS):
            p = start(port, tmp_path)
            probe.set_phase("up")
            time.sleep(0.2)
            probe.set_phase("signalled")
            p.send_signal(sig)
            p.wait(timeout=10)
            probe.set_phase("starting")
    finally:
        probe.stop.set()
        for t in probe.threads:
            t.join(5)
        if p is not None and p.poll() is None:
            p.kill()
    assert probe.served > 100, f"the probes hardly got through: served {probe.served}"
    assert not probe.reset_while_up, \
        f"{len(probe.reset_while_up)} connections to a running keel were cut: {probe.reset_while_up[:3]}"
    if sig == signal.SIGTERM:
        assert not probe.reset_while_stopping, \
            (f"{len(probe.reset_while_stopping)} connections made after keel shut its socket were "
             f"accepted and reset: {probe.reset_while_stopping[:3]}")

"""redis-cli and redis-benchmark against keel, and malformed input over raw sockets.

Where the exact behaviour is Redis's own (output format, protocol error text,
closing the connection), the same input goes to the reference redis-server first
(asserting what it does, as a self-check of the test) and keel must do the same.
"""

from __future__ import annotations

import random
import re
import shutil
import socket
import subprocess
import time

import pytest

from respclient import RespConnection, encode_command

REDIS_CLI = shutil.which("redis-cli")
REDIS_BENCHMARK = shutil.which("redis-benchmark")
pytestmark = pytest.mark.skipif(not (REDIS_CLI and REDIS_BENCHMARK),
                                reason="redis-cli/redis-benchmark missing: run tests/install-deps.sh")


def cli(server, *args, stdin: bytes | None = None, timeout: float = 30) -> subprocess.CompletedProcess:
    argv = [REDIS_CLI, "-h", server.host, "-p", str(server.port), *args]
    return subprocess.run(argv, input=stdin, capture_output=True, timeout=timeout)


def both(keel, ref, fn):
    """Run fn(server) on the reference first, then keel; return (keel result, ref result)."""
    r = fn(ref)
    return fn(keel), r


# -- redis-cli -------------------------------------------------------------------

ONE_SHOT = [
    ["SET", "foo", "bar"], ["GET", "foo"], ["GET", "nokey"], ["INCR", "n"], ["INCRBY", "n", "10"],
    ["INCRBYFLOAT", "f", "1.5"], ["SET", "spaced", "hello world"], ["GET", "spaced"],
    ["MSET", "a", "1", "{t}b", "2"], ["MGET", "a", "{t}b", "nokey"], ["EXISTS", "foo", "a", "nokey"],
    ["EXPIRE", "foo", "100"], ["TTL", "foo"], ["PERSIST", "foo"], ["TTL", "foo"], ["TYPE", "foo"],
    ["HSET", "h", "f", "v"], ["TYPE", "h"], ["GET", "h"], ["BADCMD", "x"], ["GET"],
    ["ECHO", "hi there"], ["PING"], ["DEL", "a", "{t}b", "nokey"], ["DBSIZE"], ["KEYS", "sp*"],
    ["SET", "foo", "x", "EX", "0"], ["SETRANGE", "foo", "-1", "x"],
]


@pytest.mark.parametrize("mode", [[], ["--no-raw"], ["-3", "--no-raw"]], ids=["raw", "formatted", "resp3"])
def test_redis_cli_one_shot_commands_print_like_redis(keel, ref, mode):
    def run(server):
        return [(c.returncode, c.stdout, c.stderr) for c in (cli(server, *mode, *cmd) for cmd in ONE_SHOT)]

    k, r = both(keel, ref, run)
    assert r[1][1] == b"bar\n" if not mode else r[1][1] == b'"bar"\n'
    diffs = [f"redis-cli {' '.join(mode + cmd)}: keel {kout!r} != redis {rout!r}"
             for cmd, kout, rout in zip(ONE_SHOT, k, r) if kout != rout]
    assert not diffs, "\n".join(diffs)


@pytest.mark.parametrize("mode", [[], ["-3"]], ids=["resp2", "resp3"])
def test_redis_cli_interactive_session_from_stdin(keel, ref, mode):
    """redis-cli with no command reads stdin like a REPL; it sends COMMAND DOCS
    (and HELLO 3 with -3) before the first command."""
    script = b"SET a 1\nGET a\nINCR a\nGET nokey\nPING\nECHO \"two words\"\nNOSUCHCMD\nDBSIZE\n"
    k, r = both(keel, ref, lambda s: cli(s, *mode, stdin=script))
    assert r.returncode == 0
    assert r.stdout.startswith(b"OK\n1\n2\n\nPONG\ntwo words\nERR unknown command"), r.stdout
    assert (k.returncode, k.stdout, k.stderr) == (r.returncode, r.stdout, r.stderr)


@pytest.mark.parametrize("protocol", [2, 3], ids=["resp2", "resp3"])
def test_command_docs_is_well_formed(keel, ref, protocol):
    """redis-cli builds its help from COMMAND DOCS: it must be an array (RESP2) or
    map (RESP3) of command name -> doc, naming at least the common commands."""
    for s in (ref, keel):
        with s.raw() as c:
            if protocol == 3:
                c.call("HELLO", "3")
            reply = c.call("COMMAND", "DOCS")
            if protocol == 2:
                assert reply[0] == "array" and len(reply[1]) % 2 == 0, (s.name, reply[:1])
                names = {x[1].lower() for x in reply[1][0::2]}
            else:
                assert reply[0] == "map", (s.name, reply[:1])
                names = {kk[1].lower() for kk, _ in reply[1]}
            assert {b"get", b"set", b"del", b"ping", b"expire", b"scan"} <= names, (s.name, sorted(names)[:20])
            one = c.call("COMMAND", "DOCS", "get")
            assert one[0] in ("array", "map") and len(one[1]) >= 1, (s.name, one)
            count = c.call("COMMAND", "COUNT")
            assert count[0] == "int" and count[1] >= 20, (s.name, count)


def test_redis_cli_pipe_mass_insert(keel):
    n = 10_000
    data = b"".join(encode_command("SET", f"mass:{i}", f"value-{i}") for i in range(n))
    out = cli(keel, "--pipe", stdin=data, timeout=60)
    assert out.returncode == 0, out
    assert b"errors: 0, replies: %d" % n in out.stdout, out.stdout
    with keel.raw() as c:
        assert c.call("DBSIZE") == ("int", n)
        assert c.call("GET", "mass:4242") == ("bulk", b"value-4242")


# -- redis-benchmark -------------------------------------------------------------

RPS = re.compile(rb"(?:^|[\r\n])\s*(SET|GET): ([0-9.]+) requests per second")


def benchmark(server, *args, timeout=120):
    argv = [REDIS_BENCHMARK, "-h", server.host, "-p", str(server.port), *args]
    out = subprocess.run(argv, capture_output=True, timeout=timeout)
    assert out.returncode == 0, out
    found = {m.group(1).decode(): float(m.group(2)) for m in RPS.finditer(out.stdout)}
    return found, out


@pytest.mark.parametrize("args", [
    ["-t", "set,get", "-n", "20000", "-c", "50", "-P", "16", "-q"],
    ["-t", "set,get", "-n", "5000", "-c", "50", "-q"],
], ids=["pipelined-P16", "unpipelined"])
def test_redis_benchmark_completes_and_reports_rps(keel, args):
    found, out = benchmark(keel, *args)
    assert set(found) == {"SET", "GET"}, out.stdout[-500:]
    assert all(v > 0 for v in found.values()), found
    with keel.raw() as c:
        value = c.call("GET", "key:__rand_int__")  # the key redis-benchmark uses without -r
        assert value[0] == "bulk" and len(value[1]) == 3, value  # -d defaults to 3 bytes


def test_redis_benchmark_random_keys_are_written(keel):
    found, out = benchmark(keel, "-t", "set", "-n", "5000", "-c", "20", "-r", "1000", "-q")
    assert "SET" in found, out.stdout[-500:]
    with keel.raw() as c:
        size = c.call("DBSIZE")
        assert size[0] == "int" and 0 < size[1] <= 1000, size
        keys = c.call("KEYS", "key:*")
        assert keys[0] == "array" and len(keys[1]) == size[1]
        assert all(re.fullmatch(rb"key:\d{12}", k[1]) for k in keys[1]), keys[1][:5]
        value = c.call("GET", keys[1][0][1])
        assert value[0] == "bulk" and len(value[1]) == 3, value


# -- raw socket: malformed input -------------------------------------------------

def exchange(server, data: bytes, expect_close: bool, until: bytes | None = None, timeout: float = 5.0):
    """Send data; return (bytes received, closed?). Reads until the server closes
    (expect_close) or until `until` has been received, bounded by `timeout`."""
    s = socket.create_connection((server.host, server.port), timeout=timeout)
    try:
        s.sendall(data)
        got = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not expect_close and until is not None and got.endswith(until):
                return got, False
            s.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                return got, True
            if not chunk:
                return got, True
            got += chunk
        return got, False
    finally:
        s.close()


def assert_healthy(server):
    with server.raw(timeout=5) as c:
        assert c.call("PING") == ("simple", b"PONG"), f"{server.name} unhealthy"


PROTOCOL_ERRORS = [
    ("bulk-length-above-limit", b"*1\r\n$600000000\r\n", b"-ERR Protocol error: invalid bulk length\r\n"),
    ("bulk-length-not-a-number", b"*1\r\n$abc\r\n", b"-ERR Protocol error: invalid bulk length\r\n"),
    ("bulk-length-negative", b"*1\r\n$-1\r\n", b"-ERR Protocol error: invalid bulk length\r\n"),
    ("multibulk-length-too-large", b"*2147483648\r\n", b"-ERR Protocol error: invalid multibulk length\r\n"),
    ("multibulk-length-not-a-number", b"*abc\r\n", b"-ERR Protocol error: invalid multibulk length\r\n"),
    ("integer-instead-of-bulk", b"*2\r\n$3\r\nGET\r\n:12\r\n", b"-ERR Protocol error: expected '$', got ':'\r\n"),
    ("binary-garbage-instead-of-bulk", b"*1\r\n\x80\x81garbage\xfe\r\n",
     b"-ERR Protocol error: expected '$', got '\x80'\r\n"),
    ("valid-command-then-garbage", encode_command("SET", "pe", "1") + b"*1\r\nxx\r\n",
     b"+OK\r\n-ERR Protocol error: expected '$', got 'x'\r\n"),
    ("unbalanced-quotes-inline", b'"abc\r\n', b"-ERR Protocol error: unbalanced quotes in request\r\n"),
    ("inline-too-big", b"x" * 70000, b"-ERR Protocol error: too big inline request\r\n"),
    ("bulk-count-string-too-big", b"*1\r\n$" + b"9" * 70000, b"-ERR Protocol error: too big bulk count string\r\n"),
    ("mbulk-count-string-too-big", b"*1" + b"1" * 70000, b"-ERR Protocol error: too big mbulk count string\r\n"),
]


@pytest.mark.parametrize("data,expected", [c[1:] for c in PROTOCOL_ERRORS], ids=[c[0] for c in PROTOCOL_ERRORS])
def test_protocol_error_replies_and_closes_like_redis(keel, ref, data, expected):
    r = exchange(ref, data, expect_close=True)
    assert r == (expected, True), f"reference redis behaves differently than recorded: {r!r}"
    k = exchange(keel, data, expect_close=True)
    assert k == r, f"keel {k!r} != redis {r!r}"
    assert_healthy(keel)


def test_inline_commands_like_redis(keel, ref):
    data = b'PING\r\nECHO hi\r\nSET a "b c"\r\nGET a\r\n\r\n\r\n*0\r\n*-1\r\nPING\nEXISTS a nokey\r\n'
    expected = b"+PONG\r\n$2\r\nhi\r\n+OK\r\n$3\r\nb c\r\n+PONG\r\n:1\r\n"
    r = exchange(ref, data, expect_close=False, until=b":1\r\n")
    assert r == (expected, False), r
    k = exchange(keel, data, expect_close=False, until=b":1\r\n")
    assert k == r, f"keel {k!r} != redis {r!r}"


def test_half_command_then_disconnect_leaves_server_healthy(keel):
    for partial in (b"*3\r\n$3\r\nSET\r\n$4\r\nhalf\r\n$5\r\nva", b"*3\r\n$3\r\nSET\r\n", b"*3\r", b"$",
                    b"*1\r\n$600"):
        s = socket.create_connection((keel.host, keel.port), timeout=5)
        s.sendall(partial)
        s.close()
    s = socket.create_connection((keel.host, keel.port), timeout=5)
    s.sendall(b"*3\r\n$3\r\nSET\r\n$4\r\nhalf\r\n$5\r\nva")
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    s.close()  # RST instead of FIN
    assert_healthy(keel)
    with keel.raw() as c:
        assert c.call("EXISTS", "half") == ("int", 0)


def test_pipeline_of_10000_commands_in_one_send(keel):
    n = 10_000
    cmds = []
    for i in range(n):
        cmds.append(("PING",) if i % 3 == 0 else ("SET", f"p:{i}", str(i)) if i % 3 == 1 else ("GET", f"p:{i - 1}"))
    with keel.raw(timeout=30) as c:
        replies = c.pipeline(cmds)
    assert len(replies) == n
    for i, rep in enumerate(replies):
        want = ("simple", b"PONG") if i % 3 == 0 else ("simple", b"OK") if i % 3 == 1 else ("bulk", str(i - 1).encode())
        assert rep == want, f"reply #{i} to {cmds[i]} is {rep!r}"
    with keel.raw(timeout=30) as c:
        replies = c.pipeline([("PING",)] * n)
    assert replies == [("simple", b"PONG")] * n


def test_random_binary_garbage_never_hurts_the_server(keel):
    """Seeded random junk (with and without RESP-looking prefixes): whatever the
    server answers, it must not hang the connection forever or stop serving."""
    rng = random.Random(1234)
    prefixes = [b"", b"*", b"*1\r\n", b"*2\r\n$3\r\nGET\r\n", b"$", b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$"]
    for _ in range(60):
        junk = rng.choice(prefixes) + bytes(rng.randrange(256) for _ in range(rng.randint(1, 300)))
        s = socket.create_connection((keel.host, keel.port), timeout=5)
        try:
            s.sendall(junk)
            s.shutdown(socket.SHUT_WR)
            s.settimeout(5)
            try:
                while s.recv(65536):
                    pass
            except (socket.timeout, ConnectionResetError):
                pass
        finally:
            s.close()
    assert_healthy(keel)
    with keel.raw() as c:
        assert c.call("SET", "after-garbage", "ok") == ("simple", b"OK")
        assert c.call("GET", "after-garbage") == ("bulk", b"ok")

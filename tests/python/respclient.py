"""A small, strict RESP2/RESP3 client used by the differential and protocol tests.

Replies are parsed into tagged tuples so that two servers' replies can be
compared exactly, type included (a RESP2 nil bulk is not a RESP3 null, a simple
string "OK" is not a bulk string "OK"):

    ("simple", b"OK")            +OK
    ("error", b"ERR ...")        -ERR ...
    ("int", 42)                  :42
    ("bulk", b"...")             $3\r\n...
    ("nilbulk",)                 $-1
    ("nilarray",)                *-1
    ("array", [reply, ...])      *N
    ("null",)                    _            (RESP3)
    ("bool", True)               #t / #f      (RESP3)
    ("double", b"1.5")           ,1.5         (RESP3; raw text kept)
    ("bignum", 12345...)         (123...      (RESP3)
    ("verbatim", b"txt", b"..")  =15\r\ntxt:...   (RESP3)
    ("map", [(k, v), ...])       %N           (RESP3; order kept)
    ("set", [reply, ...])        ~N           (RESP3; order kept)
    ("push", [reply, ...])       >N           (RESP3; read_reply() files these
                                              in conn.pushes and returns the
                                              next real reply)
    ("attr", [(k, v), ...], reply)  |N followed by the reply it annotates
    ("blob_error", b"...")       !N           (RESP3)
"""

from __future__ import annotations

import socket
import time


class ProtocolError(Exception):
    pass


def _arg_bytes(a) -> bytes:
    if isinstance(a, bytes):
        return a
    if isinstance(a, str):
        return a.encode()
    if isinstance(a, (int, float)):
        return repr(a).encode() if isinstance(a, float) else str(a).encode()
    raise TypeError(f"cannot encode {a!r}")


def encode_command(*args) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for a in args:
        b = _arg_bytes(a)
        parts.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(parts)


class RespConnection:
    """A blocking RESP connection with a full reply parser and bounded waits."""

    def __init__(self, host: str, port: int, timeout: float = 10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.settimeout(timeout)
        self.buf = bytearray()
        self.pos = 0
        self.pushes: list = []  # RESP3 out-of-band push messages, in arrival order

    # -- I/O ---------------------------------------------------------------
    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send_raw(self, data: bytes):
        self.sock.sendall(data)

    def send(self, *args):
        self.sock.sendall(encode_command(*args))

    def _fill(self):
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise ConnectionError("connection closed by server")
        if self.pos > (1 << 20):
            del self.buf[: self.pos]
            self.pos = 0
        self.buf += chunk

    def _line(self) -> bytes:
        while True:
            i = self.buf.find(b"\r\n", self.pos)
            if i >= 0:
                line = bytes(self.buf[self.pos : i])
                self.pos = i + 2
                return line
            self._fill()

    def _exact(self, n: int) -> bytes:
        while len(self.buf) - self.pos < n + 2:
            self._fill()
        data = bytes(self.buf[self.pos : self.pos + n])
        if self.buf[self.pos + n : self.pos + n + 2] != b"\r\n":
            raise ProtocolError("bulk payload not terminated by CRLF")
        self.pos += n + 2
        return data

    def read_reply(self):
        """The next reply; RESP3 push messages met on the way go to self.pushes."""
        while True:
            reply = self.read_any()
            if reply[0] != "push":
                return reply
            self.pushes.append(reply)

    def read_any(self):
        """The next reply or push message, whichever comes first."""
        line = self._line()
        if not line:
            raise ProtocolError("empty line where a reply type was expected")
        t, rest = line[:1], line[1:]
        if t == b"+":
            return ("simple", rest)
        if t == b"-":
            return ("error", rest)
        if t == b":":
            return ("int", int(rest))
        if t == b"$":
            n = int(rest)
            if n == -1:
                return ("nilbulk",)
            return ("bulk", self._exact(n))
        if t == b"*":
            n = int(rest)
            if n == -1:
                return ("nilarray",)
            return ("array", [self.read_any() for _ in range(n)])
        if t == b"_":
            return ("null",)
        if t == b"#":
            if rest not in (b"t", b"f"):
                raise ProtocolError(f"bad boolean {rest!r}")
            return ("bool", rest == b"t")
        if t == b",":
            return ("double", rest)
        if t == b"(":
            return ("bignum", int(rest))
        if t == b"=":
            data = self._exact(int(rest))
            if data[3:4] != b":":
                raise ProtocolError(f"bad verbatim string {data[:8]!r}")
            return ("verbatim", data[:3], data[4:])
        if t == b"!":
            return ("blob_error", self._exact(int(rest)))
        if t == b"%":
            n = int(rest)
            return ("map", [(self.read_any(), self.read_any()) for _ in range(n)])
        if t == b"~":
            return ("set", [self.read_any() for _ in range(int(rest))])
        if t == b">":
            return ("push", [self.read_any() for _ in range(int(rest))])
        if t == b"|":
            n = int(rest)
            attrs = [(self.read_any(), self.read_any()) for _ in range(n)]
            return ("attr", attrs, self.read_any())
        raise ProtocolError(f"unknown reply type byte {t!r} in line {line[:60]!r}")

    def call(self, *args):
        self.send(*args)
        return self.read_reply()

    def pipeline(self, commands):
        self.sock.sendall(b"".join(encode_command(*c) for c in commands))
        return [self.read_reply() for _ in commands]

    def read_until_closed(self, timeout: float = 5.0) -> bytes:
        """Read everything the server sends until it closes the connection.

        Raises TimeoutError if the server keeps the connection open longer
        than `timeout` seconds."""
        data = bytes(self.buf[self.pos :])
        self.buf.clear()
        self.pos = 0
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"server did not close the connection; got {data[:200]!r}")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(1 << 16)
            except socket.timeout:
                raise TimeoutError(f"server did not close the connection; got {data[:200]!r}")
            except ConnectionResetError:
                return data
            if not chunk:
                return data
            data += chunk


def simple(s) -> tuple:
    return ("simple", _arg_bytes(s))


def bulk(s) -> tuple:
    return ("bulk", _arg_bytes(s))


def error_text(reply) -> str:
    assert reply[0] in ("error", "blob_error"), f"expected an error reply, got {reply!r}"
    return reply[1].decode(errors="replace")


def is_nil(reply) -> bool:
    return reply[0] in ("nilbulk", "nilarray", "null")


def fmt(reply, limit: int = 300) -> str:
    s = repr(reply)
    return s if len(s) <= limit else s[:limit] + f"...({len(s)} chars)"

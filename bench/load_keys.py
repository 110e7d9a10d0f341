#!/usr/bin/env python3
"""Load COUNT keys into a Redis-protocol server, pipelined, and check every reply.

Keys are "key:%012d" (16 bytes, as redis-benchmark's key:__rand_int__), values
are VALUE_SIZE bytes. Only SET is used, so any server that speaks RESP2 and SET
works. Usage: load_keys.py PORT [COUNT] [VALUE_SIZE] [HOST]
"""
import socket
import sys

BATCH = 5000  # commands per write: big enough to amortise syscalls, small enough for socket buffers


def main() -> int:
    port = int(sys.argv[1])
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000
    vsize = int(sys.argv[3]) if len(sys.argv) > 3 else 32
    host = sys.argv[4] if len(sys.argv) > 4 else "127.0.0.1"
    value = b"v" * vsize
    tail = b"\r\n$%d\r\n%s\r\n" % (vsize, value)
    sock = socket.create_connection((host, port), timeout=60)
    buf = b""
    for start in range(0, count, BATCH):
        n = min(BATCH, count - start)
        sock.sendall(b"".join(b"*3\r\n$3\r\nSET\r\n$16\r\nkey:%012d" % i + tail
                              for i in range(start, start + n)))
        # Every SET answers "+OK\r\n"; anything else is a failure worth stopping for.
        want = 5 * n
        while len(buf) < want:
            chunk = sock.recv(1 << 20)
            if not chunk:
                print("load_keys: server closed the connection", file=sys.stderr)
                return 1
            buf += chunk
        got, buf = buf[:want], buf[want:]
        if got != b"+OK\r\n" * n:
            print("load_keys: unexpected reply near key %d: %r" % (start, got[:80]), file=sys.stderr)
            return 1
    sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

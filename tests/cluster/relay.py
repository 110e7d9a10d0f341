#!/usr/bin/env python3
"""Delaying TCP relay of the keel cluster harness (stdlib only).

The harness starts one relay inside every host's network namespace. It listens
on the host's *relay address* (one port per forwarded port) and forwards each
accepted connection to the same port on the host's *direct address*, holding
every chunk of data, in both directions, for the one-way delay configured for
the zone of the connecting host. Chunks are timestamped when read and written
out when due, so the delay is added once per chunk without limiting throughput
(a pipe, not a stop-and-wait), and order is kept.

    relay.py --listen 10.77.3.102 --target 10.77.3.2 --ports 6379,16379 \
             --config relay-h2.json

The config file is JSON: {"gen": N, "default_ms": 0, "delays_ms": {"10.77.3.1": 20, ...},
"corrupt": [["10.77.3.1", 16379, 7], ...]} mapping a source address to a one-way
delay; each "corrupt" entry (source address, port, token) flips one byte in the
next chunk of at least 16 bytes the relay passes back to that source on that
port, once per token (a damaged frame on a real link); "port_extra_ms"
{"16379": 300, ...} adds a one-way delay on one port only (a slow replication
link beside a fast client link). On SIGHUP the relay rereads it;
the new delays apply to every chunk read from then on, also on connections that
are already open; it then prints "RELOADED <gen>" on stdout. "READY" is printed
once every port listens. Diagnostics go to stderr.

Faithful to a real link where it can be: a connection whose backend is down is
reset (RST) one round trip later rather than refused; a reset on one side is
passed on as a reset; an EOF (half-close) is passed on after the delay.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import socket
import struct
import sys
import time

CHUNK = 64 * 1024
QUEUE_CHUNKS = 256  # per direction: at most 16 MiB in flight inside the relay
CONNECT_TIMEOUT = 5.0


def log(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} relay: {msg}", file=sys.stderr, flush=True)


class Config:
    def __init__(self, path: str):
        self.path = path
        self.gen = -1
        self.delays: dict[str, float] = {}
        self.default = 0.0
        self.load()

    def load(self) -> None:
        with open(self.path, encoding="utf-8") as f:
            d = json.load(f)
        self.delays = {ip: float(ms) / 1000.0 for ip, ms in d.get("delays_ms", {}).items()}
        self.corrupt = {(ip, int(port)): token for ip, port, token in d.get("corrupt", [])}
        self.default = float(d.get("default_ms", 0)) / 1000.0
        self.port_extra = {int(p): float(ms) / 1000.0
                           for p, ms in d.get("port_extra_ms", {}).items()}
        self.gen = int(d.get("gen", 0))

    def delay(self, ip: str, port: int = 0) -> float:
        return self.delays.get(ip, self.default) + self.port_extra.get(port, 0.0)


def reset(writer: asyncio.StreamWriter | None) -> None:
    """Close with RST (SO_LINGER 0), like a peer whose host vanished."""
    if writer is None:
        return
    sock = writer.get_extra_info("socket")
    try:
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    writer.transport.abort()


async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay_of,
               mangle=lambda data: data) -> str:
    """Copy reader -> writer, each chunk held until read time + delay (and
    passed through `mangle` on its way out).

    Returns "eof" after passing on a clean EOF, "reset" when either side failed.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue(QUEUE_CHUNKS)

    async def produce():
        try:
            while True:
                data = await reader.read(CHUNK)
                await queue.put((loop.time() + delay_of(), data))
                if not data:
                    return
        except (OSError, asyncio.IncompleteReadError):
            await queue.put((loop.time() + delay_of(), None))

    producer = asyncio.create_task(produce())
    try:
        while True:
            due, data = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if data is None:
                return "reset"
            if not data:
                if writer.can_write_eof():
                    writer.write_eof()
                return "eof"
            writer.write(mangle(data))
            await writer.drain()
    except OSError:
        return "reset"
    finally:
        producer.cancel()


class Relay:
    def __init__(self, listen: str, target: str, ports: list[int], cfg: Config):
        self.listen, self.target, self.ports, self.cfg = listen, target, ports, cfg
        self.conns = 0
        self.corrupted: set = set()  # tokens already used

    async def handle(self, port: int, creader, cwriter) -> None:
        peer = cwriter.get_extra_info("peername")
        src = peer[0] if peer else "?"
        delay_of = lambda: self.cfg.delay(src, port)  # noqa: E731 — reread per chunk

        def mangle(data: bytes) -> bytes:
            token = self.cfg.corrupt.get((src, port))
            if token is None or token in self.corrupted or len(data) < 16:
                return data
            self.corrupted.add(token)
            b = bytearray(data)
            b[len(b) // 2] ^= 0x5A
            log(f"corrupted one byte of a {len(b)}-byte chunk to {src} on {port} (token {token})")
            return bytes(b)
        self.conns += 1
        swriter = None
        try:
            try:
                sreader, swriter = await asyncio.wait_for(
                    asyncio.open_connection(self.target, port, local_addr=(self.listen, 0)),
                    CONNECT_TIMEOUT)
            except (OSError, asyncio.TimeoutError) as e:
                # What a client would see one round trip later on a real link.
                await asyncio.sleep(2 * delay_of())
                log(f"{src} -> {self.target}:{port}: backend unreachable ({e!r}); reset")
                reset(cwriter)
                return
            up = asyncio.create_task(pump(creader, swriter, delay_of))
            down = asyncio.create_task(pump(sreader, cwriter, delay_of, mangle))
            pending = {up, down}
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                if any(t.result() == "reset" for t in done):
                    for t in pending:
                        t.cancel()
                    reset(cwriter)
                    reset(swriter)
                    return
            cwriter.close()
            swriter.close()
        except asyncio.CancelledError:
            reset(cwriter)
            reset(swriter)
            raise
        except Exception as e:  # keep serving other connections
            log(f"connection from {src} on {port}: {e!r}")
            reset(cwriter)
            reset(swriter)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()

        def reload():
            try:
                self.cfg.load()
                print(f"RELOADED {self.cfg.gen}", flush=True)
            except Exception as e:
                log(f"reload failed: {e!r}")
                print(f"RELOAD-FAILED {e!r}", flush=True)

        loop.add_signal_handler(signal.SIGHUP, reload)
        servers = []
        for port in self.ports:
            srv = await asyncio.start_server(
                lambda r, w, p=port: self.handle(p, r, w), self.listen, port,
                reuse_address=True, backlog=512)
            servers.append(srv)
        log(f"listening on {self.listen} ports {self.ports} -> {self.target}")
        print("READY", flush=True)
        await asyncio.gather(*(s.serve_forever() for s in servers))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--listen", required=True, help="relay address to listen on")
    ap.add_argument("--target", required=True, help="direct address to forward to")
    ap.add_argument("--ports", required=True, help="comma-separated ports (same on both sides)")
    ap.add_argument("--config", required=True, help="JSON file with the per-source delays")
    a = ap.parse_args()
    ports = [int(p) for p in a.ports.split(",") if p]
    relay = Relay(a.listen, a.target, ports, Config(a.config))
    try:
        asyncio.run(relay.run())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()

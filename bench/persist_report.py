#!/usr/bin/env python3
"""Helpers for bench/persist.sh (persistence: keel against redis-server).

  persist_report.py gen START COUNT [VALUE_SIZE]
      RESP SET commands for key:START .. key:START+COUNT-1 on stdout, for
      `redis-cli --pipe`. Values are random base64 (VALUE_SIZE bytes, default
      32), a fresh random value per key, so neither server's snapshot can
      shrink them by compression (a constant value would flatter any
      compressing snapshot format).

  persist_report.py wait PORT EXPECTED TIMEOUT GOFILE
      Start before the server (Python takes ~0.2 s to start on a small VM,
      which must not count): creates GOFILE.armed once running, waits for
      GOFILE to hold "T0 PID" (T0 the Unix time the caller took just before
      exec'ing server PID), then polls 127.0.0.1:PORT until PING answers
      +PONG and DBSIZE answers EXPECTED, retrying refused connects and
      -LOADING errors every few ms, and prints the seconds from T0 to that
      moment. Exit 1 on timeout, 2 if PID died.

  persist_report.py report --manifest FILE --commands FILE ...
      Markdown fragment for bench/RESULTS.md from persist.sh's manifest (TSV):
        fsync    SERVER MODE RUN REQUESTS CPU_TICKS CSV_FILE
        prep     SERVER KEYS LOAD_SECONDS RSS_KIB DIR_BYTES
        restart  SERVER RUN SECONDS CPU_TICKS RSS_KIB DIR_BYTES
      Figures are medians over runs.
"""
import argparse
import base64
import datetime
import os
import platform
import re
import socket
import sys
import time

from bench_common import med, read_rb, sh

TICK = os.sysconf("SC_CLK_TCK")


# --- gen ---------------------------------------------------------------------
def gen(start, count, vsize=32):
    out = sys.stdout.buffer
    raw = (vsize * 3 + 3) // 4  # bytes of randomness per value before base64
    batch = 20000
    for s in range(start, start + count, batch):
        e = min(s + batch, start + count)
        vals = base64.b64encode(os.urandom(raw * (e - s))).decode()
        step = len(vals) // (e - s)
        out.write("".join([
            f"*3\r\n$3\r\nSET\r\n${len(k)}\r\n{k}\r\n${vsize}\r\n{vals[j * step:j * step + vsize]}\r\n"
            for j, k in enumerate("key:" + str(i) for i in range(s, e))]).encode())
    out.flush()


# --- wait --------------------------------------------------------------------
def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (killed, not yet reaped by the shell) is not alive.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def read_line(sock, buf):
    while b"\r\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    line, _, rest = buf.partition(b"\r\n")
    return line, rest


def wait(port, expected, timeout, gofile):
    open(gofile + ".armed", "w").close()
    end = time.time() + 60
    while not os.path.exists(gofile):
        if time.time() > end:
            print(f"{gofile} did not appear within 60 s", file=sys.stderr)
            return 1
        time.sleep(0.0005)
    with open(gofile) as f:
        t0, pid = f.read().split()
    t0, pid = float(t0), int(pid)
    deadline = t0 + timeout
    probe = b"*1\r\n$4\r\nPING\r\n*1\r\n$6\r\nDBSIZE\r\n"
    sock = None
    last = "no answer"
    while time.time() < deadline:
        if not alive(pid):
            print(f"server pid {pid} died while loading (last answer: {last})", file=sys.stderr)
            return 2
        try:
            if sock is None:
                sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(probe)
            buf = b""
            ping, buf = read_line(sock, buf)
            size, buf = read_line(sock, buf)
            if ping == b"+PONG" and size == b":%d" % expected:
                print(f"{time.time() - t0:.3f}")
                return 0
            last = f"{ping.decode(errors='replace')} / {size.decode(errors='replace')}"
            time.sleep(0.01)
        except OSError as e:  # refused, reset, closed, timeout: try again
            last = str(e)
            if sock is not None:
                sock.close()
                sock = None
            time.sleep(0.005)
    print(f"not ready within {timeout:.0f} s (last answer: {last})", file=sys.stderr)
    return 1


# --- report ------------------------------------------------------------------
def spread(xs):
    return 100.0 * (max(xs) - min(xs)) / med(xs) if len(xs) > 1 and med(xs) else float("nan")


def fmt(x, nd=2):
    if x != x:
        return "-"
    return f"{x:,.0f}" if nd == 0 else f"{x:,.{nd}f}"


def ratio(k, r, nd=2):
    return fmt(k / r, nd) if r and r == r and k == k else "-"


def report(a):
    fs, prep, rst = {}, {}, {}
    for line in open(a.manifest):
        f = line.rstrip("\n").split("\t")
        if f[0] == "fsync":
            server, mode, n, ticks, path = f[1], f[2], int(f[4]), int(f[5]), f[6]
            rps, p50, p99 = read_rb(path)
            fs.setdefault((mode, server), []).append((ticks / TICK / n * 1e6, rps, p50, p99))
        elif f[0] == "prep":
            prep[f[1]] = (int(f[2]), float(f[3]), int(f[4]), int(f[5]))
        elif f[0] == "restart":
            rst.setdefault(f[1], []).append((float(f[3]), int(f[4]) / TICK, int(f[5]), int(f[6])))

    model = re.search(r"Model name:\s*(.+)", sh("lscpu"))
    rev = sh("git", "rev-parse", "--short", "HEAD", cwd=a.root)
    dirty = " (uncommitted changes)" if sh("git", "status", "--porcelain", cwd=a.root) else ""
    note = ""
    if os.path.realpath(a.keel_bin) != os.path.realpath(os.path.join(a.root, "target/release/keel")):
        note = f" **The keel column is `{a.keel_bin}`, not a release build of keel.**"
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out = []
    w = out.append
    w(f"<!-- bench:{a.label} begin -->")
    w(f"## {now} — {a.label}")
    w("")
    w(f"- machine: {model.group(1) if model else platform.processor()}, nproc {sh('nproc')}, "
      f"{round(os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30)} GiB, kernel {sh('uname', '-r')}")
    w(f"- redis-server: {sh(a.redis_bin, '--version')}")
    w(f"- keel: commit {rev or '?'}{dirty}, binary `{a.keel_bin}`.{note}")
    w(f"- data: {a.disk}")
    w(f"- servers pinned to CPU {a.server_cpu}, load generator to CPU {a.loadgen_cpu}; loopback; "
      f"each server run in a fresh data dir.")
    w("")
    w("Commands:")
    w("")
    w("```")
    out += [c.rstrip() for c in open(a.commands)]
    w("```")
    if fs:
        w("")
        w(f"Writes with the append-only log on (medians of {a.runs} runs, servers alternating run by run):")
        w("")
        w("| workload | server | CPU µs/op | ops/s | ops/s spread | p50 ms | p99 ms |")
        w("|---|---|---:|---:|---:|---:|---:|")
        for mode in ("everysec", "always"):
            r, k = fs.get((mode, "redis")), fs.get((mode, "keel"))
            wl = f"SET appendfsync {mode}"
            for name, s in (("redis", r), ("keel", k)):
                if s:
                    cpu, ops, p50, p99 = (med(c) for c in zip(*s))
                    sp = spread([x[1] for x in s])
                    w(f"| {wl} | {name} | {fmt(cpu)} | {fmt(ops, 0)} | "
                      f"{fmt(sp, 1) + '%' if sp == sp else '-'} | {fmt(p50, 3)} | {fmt(p99, 3)} |")
            if r and k:
                rc, ro, r50, r99 = (med(c) for c in zip(*r))
                kc, ko, k50, k99 = (med(c) for c in zip(*k))
                w(f"| {wl} | **keel/redis** | **{ratio(kc, rc)}** | **{ratio(ko, ro)}** | | "
                  f"{ratio(k50, r50)} | {ratio(k99, r99)} |")
        w("")
        w("CPU µs/op is the server's utime+stime (all its threads) over the run divided by requests "
          f"(lower is better; 1 clock tick = {1000 / TICK:.0f} ms). Spread = (max-min)/median of ops/s.")
    if rst:
        keys = next(iter(prep.values()))[0] if prep else 0
        nrun = max(len(v) for v in rst.values())
        w("")
        w(f"Restart after SIGKILL with {keys:,} keys (32-byte values) persisted as a snapshot "
          f"(BGREWRITEAOF) plus a log tail of {a.tail:,} keys; time from exec until PING answers "
          f"PONG and DBSIZE answers {keys + a.tail:,}; median of {nrun} restart(s), servers alternating, "
          f"data dir freshly copied from the killed server's (page cache warm):")
        w("")
        w("| restart | seconds | runs (s) | server CPU s | RSS after MiB | on disk MiB | bulk load s |")
        w("|---|---:|---|---:|---:|---:|---:|")
        meds = {}
        for name in ("redis", "keel"):
            s = rst.get(name)
            if not s:
                continue
            secs, cpu, rss, disk = (med(c) for c in zip(*s))
            meds[name] = (secs, cpu, rss, disk)
            load = fmt(prep[name][1], 1) if name in prep else "-"
            runs = ", ".join(f"{x[0]:.2f}" for x in s)
            w(f"| {name} | {fmt(secs)} | {runs} | {fmt(cpu)} | {fmt(rss / 1024, 0)} | "
              f"{fmt(disk / 2**20, 0)} | {load} |")
        if "redis" in meds and "keel" in meds:
            r, k = meds["redis"], meds["keel"]
            lr = ratio(prep["keel"][1], prep["redis"][1]) if "redis" in prep and "keel" in prep else "-"
            w(f"| **keel/redis** | **{ratio(k[0], r[0])}** | | {ratio(k[1], r[1])} | {ratio(k[2], r[2])} | "
              f"{ratio(k[3], r[3])} | {lr} |")
        w("")
        w("On disk: bytes in the server's --dir at the moment of the kill. Bulk load: the "
          f"{keys:,} keys sent with `redis-cli --pipe`, append-only log on (everysec), before the rewrite.")
    w("")
    w(f"<!-- bench:{a.label} end -->")
    print("\n".join(out))


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "gen":
        gen(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]) if len(sys.argv) > 4 else 32)
        return 0
    if len(sys.argv) > 1 and sys.argv[1] == "wait":
        port, expected, timeout, gofile = sys.argv[2:6]
        return wait(int(port), int(expected), float(timeout), gofile)
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd", choices=["report"])
    for opt in ("manifest", "commands", "keel-bin", "redis-bin", "root", "runs", "server-cpu",
                "loadgen-cpu", "disk", "label"):
        ap.add_argument("--" + opt, required=True)
    ap.add_argument("--tail", type=int, default=0)
    report(ap.parse_args())
    return 0


if __name__ == "__main__":
    sys.exit(main())

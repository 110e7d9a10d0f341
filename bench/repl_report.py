#!/usr/bin/env python3
"""Helpers for bench/repl.sh (replication: keel against redis-server).

  repl_report.py client PORT --mode set|setwait --conns C --seconds S [--size 32]
                 [--keys 100000] [--warmup 0.5]
      Closed-loop load from one process: C connections, each sends a SET
      (mode set) or a pipelined pair SET + WAIT 1 0 (mode setwait) and sends
      the next once every reply of the previous is in. One op is one SET (its
      latency: send to last reply). Keys key:%012d drawn from KEYS, values of
      SIZE random letters. Prints JSON: ops, secs, rps, p50/p99/max ms,
      errors (replies starting with "-"), wait_zero (WAIT replies of 0).

  repl_report.py rate PORT --rate R --seconds S [--conns 8] [--size 32] [--keys 100000]
      Open-loop load at R SETs/s: every ~1 ms the SETs due are written as one
      pipelined batch to the next of C connections, replies are read without
      waiting for them. Prints JSON: start/end (Unix time), sent, replied,
      achieved rate, most replies outstanding.

  repl_report.py sample --primary PORT [--backup PORT]... --seconds S --out FILE
      Every 100 ms: INFO replication of the primary (per link lag_ms,
      lag_records, lag_bytes; the shard's delay_us) and of each backup
      (replica_lag_ms). One JSON object per line in FILE.

  repl_report.py drain (--keel PORT | --redis PORT REPLICA_PORT) [--timeout 60]
      After a load stopped: the primary's lag at once, then the ms until every
      backup has everything (keel: every link lag_records=0; redis: the
      replica's offset equals the primary's). Prints JSON.

  repl_report.py json COUNT [--seed 1] [--start 0]
      RESP SET commands doc:N -> a 200-1000 byte JSON document (repeated
      field names, values drawn from small vocabularies and random numbers),
      for `redis-cli --pipe`.

  repl_report.py trickle PORT COUNT [--seed 2] [--start 0]
      The same documents sent one SET per round trip on one connection.

  repl_report.py report --manifest FILE --commands FILE ...
      Markdown fragment for bench/RESULTS.md from repl.sh's manifest.
"""
import argparse
import base64
import datetime
import json
import os
import platform
import random
import re
import selectors
import socket
import sys
import time

from bench_common import med, read_rb, sh

TICK = os.sysconf("SC_CLK_TCK")


def resp(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, str):
            a = a.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def pct(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    i = min(len(xs) - 1, max(0, int(round(p / 100.0 * len(xs) + 0.5)) - 1))
    return xs[i]


# --- INFO -----------------------------------------------------------------------
class Conn:
    def __init__(self, port, timeout=5):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def line(self):
        while b"\r\n" not in self.buf:
            d = self.s.recv(65536)
            if not d:
                raise ConnectionError("closed")
            self.buf += d
        l, _, self.buf = self.buf.partition(b"\r\n")
        return l

    def call(self, *args):
        self.s.sendall(resp(*args))
        l = self.line()
        if l[:1] == b"$":
            n = int(l[1:])
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                d = self.s.recv(65536)
                if not d:
                    raise ConnectionError("closed")
                self.buf += d
            v, self.buf = self.buf[:n], self.buf[n + 2:]
            return v.decode()
        if l[:1] == b"-":
            raise RuntimeError(l.decode())
        return l[1:].decode()


def parse_info(text):
    """INFO text -> {field: value}; values of a=b,c=d form become dicts."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#") or ":" not in line:
            continue
        k, _, v = line.partition(":")
        if "=" in v and "," in v:
            d = {}
            for part in v.split(","):
                a, _, b = part.partition("=")
                d[a] = b
            out[k] = d
        else:
            out[k] = v
    return out


def keel_links(info):
    """{backup_id: link dict} of shard 0 .. n of a keel primary's INFO."""
    links = {}
    for k, v in info.items():
        m = re.fullmatch(r"shard(\d+)_link_(.+)", k)
        if m and isinstance(v, dict):
            links.setdefault(m.group(2), []).append(v)
    return links


# --- client -------------------------------------------------------------------
def letters(rng, n):
    return base64.b64encode(rng.randbytes(n))[:n]


def set_cmds(keys, size, count=4096, seed=7):
    rng = random.Random(seed)
    return [resp("SET", "key:%012d" % rng.randrange(keys), letters(rng, size)) for _ in range(count)]


def client(a):
    cmds = set_cmds(a.keys, a.size)
    wait = resp("WAIT", "1", "0")
    per = 2 if a.mode == "setwait" else 1
    sel = selectors.DefaultSelector()
    conns = []
    for i in range(a.conns):
        s = socket.create_connection(("127.0.0.1", a.port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        st = {"s": s, "buf": b"", "left": 0, "t": 0.0, "i": i * 97}
        conns.append(st)
        sel.register(s, selectors.EVENT_READ, st)
    lat = []
    errors = 0
    wait_zero = 0
    err_sample = ""
    t_start = time.perf_counter()
    t_measure = t_start + a.warmup
    t_end = t_measure + a.seconds
    ops = 0

    def fire(st, now):
        c = cmds[st["i"] % len(cmds)]
        st["i"] += 1
        st["left"] = per
        st["t"] = now
        st["s"].send(c + wait if per == 2 else c)

    now = time.perf_counter()
    for st in conns:
        fire(st, now)
    active = len(conns)
    while active:
        for key, _ in sel.select(timeout=1.0):
            st = key.data
            try:
                d = st["s"].recv(65536)
            except BlockingIOError:
                continue
            if not d:
                raise SystemExit("server closed a connection")
            buf = st["buf"] + d
            while st["left"] and b"\r\n" in buf:
                l, _, buf = buf.partition(b"\r\n")
                st["left"] -= 1
                if l[:1] == b"-":
                    errors += 1
                    err_sample = err_sample or l.decode(errors="replace")
                elif l == b":0":
                    wait_zero += 1
            st["buf"] = buf
            if st["left"] == 0:
                now = time.perf_counter()
                if now >= t_measure:
                    lat.append(now - st["t"])
                    if st["t"] >= t_measure:
                        ops += 1
                if now < t_end:
                    fire(st, now)
                else:
                    sel.unregister(st["s"])
                    active -= 1
        if time.perf_counter() > t_end + 30:
            raise SystemExit("replies still missing 30 s after the end")
    secs = time.perf_counter() - t_measure
    for st in conns:
        st["s"].close()
    lat_ms = [x * 1000 for x in lat]
    print(json.dumps({
        "mode": a.mode, "conns": a.conns, "ops": ops, "secs": round(secs, 3),
        "rps": ops / secs if secs > 0 else 0.0,
        "p50": pct(lat_ms, 50), "p99": pct(lat_ms, 99), "max": max(lat_ms) if lat_ms else float("nan"),
        "errors": errors, "error_sample": err_sample, "wait_zero": wait_zero}))


# --- rate ---------------------------------------------------------------------
def rate(a):
    # Every command the same length so a batch is one slice of one buffer.
    rng = random.Random(11)
    n_pre = 65536
    cmds = [resp("SET", "key:%012d" % rng.randrange(a.keys), letters(rng, a.size)) for _ in range(n_pre)]
    size = len(cmds[0])
    assert all(len(c) == size for c in cmds)
    big = b"".join(cmds) * 2
    socks = []
    for _ in range(a.conns):
        s = socket.create_connection(("127.0.0.1", a.port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        socks.append([s, b"", 0])  # socket, unsent bytes, replies outstanding
    sent = replied = 0
    most_out = 0
    pos = 0
    rr = 0
    t0 = time.time()
    p0 = time.perf_counter()
    end = p0 + a.seconds
    while True:
        now = time.perf_counter()
        if now >= end:
            break
        due = int((now - p0) * a.rate) - sent
        if due > 0:
            due = min(due, n_pre)
            st = socks[rr % len(socks)]
            rr += 1
            st[1] += big[pos * size:(pos + due) * size]
            pos = (pos + due) % n_pre
            st[2] += due
            sent += due
        for st in socks:
            if st[1]:
                try:
                    n = st[0].send(st[1])
                    st[1] = st[1][n:]
                except BlockingIOError:
                    pass
            try:
                while True:
                    d = st[0].recv(1 << 20)
                    if not d:
                        raise SystemExit("server closed a connection")
                    k = d.count(b"\r\n")
                    st[2] -= k
                    replied += k
                    if len(d) < (1 << 20):
                        break
            except BlockingIOError:
                pass
        most_out = max(most_out, sent - replied)
        time.sleep(0.0008)
    t1 = time.time()
    secs = time.perf_counter() - p0
    # collect the rest of the replies (bounded)
    for st in socks:
        st[0].setblocking(True)
        st[0].settimeout(30)
        if st[1]:
            st[0].sendall(st[1])
        while st[2] > 0:
            d = st[0].recv(1 << 20)
            if not d:
                break
            k = d.count(b"\r\n")
            st[2] -= k
            replied += k
        st[0].close()
    print(json.dumps({"start": t0, "end": t1, "target": a.rate, "sent": sent, "replied": replied,
                      "achieved": sent / secs, "most_outstanding": most_out}))


# --- sample -------------------------------------------------------------------
def sample(a):
    prim = Conn(a.primary)
    backs = [(p, Conn(p)) for p in a.backup]
    end = time.time() + a.seconds
    nxt = time.time()
    with open(a.out, "w") as f:
        while time.time() < end and not (a.until and os.path.exists(a.until)):
            t = time.time()
            row = {"t": t}
            info = parse_info(prim.call("INFO", "replication"))
            row["links"] = {k: {x: int(v[0][x]) for x in ("lag_ms", "lag_records", "lag_bytes")}
                            for k, v in keel_links(info).items()}
            row["delay_us"] = max((int(v.get("delay_us", 0)) for k, v in info.items()
                                   if re.fullmatch(r"shard\d+", k) and isinstance(v, dict)), default=0)
            row["backups"] = {}
            for p, c in backs:
                bi = parse_info(c.call("INFO", "replication"))
                row["backups"][str(p)] = int(bi.get("replica_lag_ms", -1))
            f.write(json.dumps(row) + "\n")
            nxt += a.interval
            time.sleep(max(0.0, nxt - time.time()))


# --- drain --------------------------------------------------------------------
def drain(a):
    t0 = time.perf_counter()
    deadline = t0 + a.timeout
    if a.keel:
        c = Conn(a.keel)
        first = None
        while True:
            info = parse_info(c.call("INFO", "replication"))
            links = {k: {x: int(v[0][x]) for x in ("lag_ms", "lag_records", "lag_bytes")}
                     for k, v in keel_links(info).items()}
            delay = max((int(v.get("delay_us", 0)) for k, v in info.items()
                         if re.fullmatch(r"shard\d+", k) and isinstance(v, dict)), default=0)
            if first is None:
                first = {"links": links, "delay_us": delay}
            if links and all(l["lag_records"] == 0 for l in links.values()):
                break
            if time.perf_counter() > deadline:
                print(json.dumps({"at_end": first, "drain_ms": None, "last": links}))
                return 1
            time.sleep(0.005)
    else:
        pc, rc = Conn(a.redis[0]), Conn(a.redis[1])
        first = None
        while True:
            po = int(parse_info(pc.call("INFO", "replication"))["master_repl_offset"])
            ro = int(parse_info(rc.call("INFO", "replication"))["slave_repl_offset"])
            if first is None:
                first = {"lag_bytes": po - ro}
            if ro >= po:
                break
            if time.perf_counter() > deadline:
                print(json.dumps({"at_end": first, "drain_ms": None}))
                return 1
            time.sleep(0.005)
    print(json.dumps({"at_end": first, "drain_ms": (time.perf_counter() - t0) * 1000}))
    return 0


# --- JSON documents -------------------------------------------------------------
FIRST = ["Anna", "Ben", "Chloe", "David", "Emma", "Felix", "Grace", "Hugo", "Ines", "Jonas", "Karla",
         "Liam", "Mia", "Noah", "Olivia", "Paul", "Quinn", "Rosa", "Sam", "Tara"]
LAST = ["Müller", "Schmidt", "Garcia", "Rossi", "Dubois", "Smith", "Novak", "Kowalski", "Silva",
        "Jensen", "Tanaka", "Okafor", "Ivanova", "Nielsen", "Costa"]
CITIES = ["Berlin", "Paris", "Madrid", "Rome", "Warsaw", "Lisbon", "Vienna", "Prague", "Dublin", "Oslo"]
COUNTRIES = ["DE", "FR", "ES", "IT", "PL", "PT", "AT", "CZ", "IE", "NO"]
TAGS = ["new", "vip", "returning", "newsletter", "mobile", "web", "promo", "b2b", "gift", "priority"]
STATUS = ["pending", "paid", "shipped", "delivered", "cancelled", "refunded"]
PRODUCTS = ["keyboard", "mouse", "monitor", "laptop stand", "usb-c cable", "headset", "webcam",
            "desk lamp", "chair mat", "notebook"]


def doc(rng, i):
    n_items = rng.randint(0, 6)
    d = {
        "id": i,
        "type": "order",
        "status": rng.choice(STATUS),
        "created_at": "2026-%02d-%02dT%02d:%02d:%02dZ" % (rng.randint(1, 12), rng.randint(1, 28),
                                                       rng.randrange(24), rng.randrange(60), rng.randrange(60)),
        "customer": {
            "id": "c-%08x" % rng.getrandbits(32),
            "name": "%s %s" % (rng.choice(FIRST), rng.choice(LAST)),
            "email": "user%d@example.com" % rng.randrange(1000000),
            "address": {"city": rng.choice(CITIES), "country": rng.choice(COUNTRIES),
                        "zip": "%05d" % rng.randrange(100000)},
        },
        "tags": rng.sample(TAGS, rng.randint(0, 3)),
        "items": [{"sku": "SKU-%06d" % rng.randrange(1000000), "name": rng.choice(PRODUCTS),
                   "qty": rng.randint(1, 5), "price": round(rng.uniform(1, 500), 2)} for _ in range(n_items)],
        "total": round(rng.uniform(1, 3000), 2),
        "currency": "EUR",
        "session": "%032x" % rng.getrandbits(128),
    }
    s = json.dumps(d, separators=(",", ":"), ensure_ascii=False)
    # 200-1000 bytes: pad with a free-text note when short
    target = rng.randint(200, 1000)
    if len(s.encode()) < target:
        words = " ".join(rng.choice(PRODUCTS + TAGS + CITIES) for _ in range(target // 6))
        d["note"] = words[: max(0, target - len(s.encode()) - 10)]
        s = json.dumps(d, separators=(",", ":"), ensure_ascii=False)
    return s.encode()


def gen_json(a):
    rng = random.Random(a.seed)
    out = sys.stdout.buffer
    batch = []
    vbytes = 0
    for i in range(a.start, a.start + a.count):
        v = doc(rng, i)
        vbytes += len(v)
        batch.append(resp("SET", "doc:%d" % i, v))
        if len(batch) == 5000:
            out.write(b"".join(batch))
            batch = []
    out.write(b"".join(batch))
    out.flush()
    if a.stats:
        with open(a.stats, "w") as f:
            f.write(json.dumps({"docs": a.count, "value_bytes": vbytes}))


def trickle(a):
    rng = random.Random(a.seed)
    c = Conn(a.port)
    n = vbytes = 0
    t0 = time.perf_counter()
    for i in range(a.start, a.start + a.count):
        v = doc(rng, i)
        vbytes += len(v)
        r = c.call("SET", "doc:%d" % i, v)
        if r != "OK":
            raise SystemExit(f"SET doc:{i}: {r}")
        n += 1
    print(json.dumps({"docs": n, "secs": time.perf_counter() - t0, "value_bytes": vbytes}))


# --- report -------------------------------------------------------------------
def fmt(x, nd=2):
    if x is None or x != x:
        return "-"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{nd}f}"


def machine():
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for l in f:
                if l.startswith("model name"):
                    model = l.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
            mem = f"{kb / 1048576:.0f} GiB"
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} CPUs (nproc {sh('nproc')}), {mem}, kernel {platform.release()}"


CONFIG_NAMES = {
    "keel0": "keel, no backup",
    "keel1": "keel + 1 backup",
    "keel2": "keel + 2 backups",
    "keel2s": "keel + 2 backups, same zone (raw)",
    "redis0": "redis, no replica",
    "redis1": "redis + 1 replica",
    "redis2": "redis + 2 replicas",
}


def report(a):
    rows = []
    with open(a.manifest) as f:
        for line in f:
            line = line.rstrip("\n")
            if line:
                rows.append(line.split("\t"))
    with open(a.commands) as f:
        commands = f.read().rstrip("\n")
    redis_v = sh(a.redis_bin, "--version")
    now = a.when or datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    o = []
    p = o.append
    p(f"<!-- bench:{a.label} begin -->")
    p(f"## {now} — replication (issue 6)")
    p("")
    p(f"- machine: {machine()}; loopback; the load generator shares the two cores with the servers")
    p(f"- redis-server: {redis_v}")
    p(f"- keel: {a.keel_desc}")
    p(f"- primaries pinned to CPU {a.server_cpu}; backups/replicas and load generators to CPU {a.loadgen_cpu} "
      f"(so backups take CPU from the load generator, not from the primary); {a.runs} runs per figure "
      f"({a.strong_runs} in part 2), configurations rotating run by run; figures are medians; keel `--shards 1` everywhere")
    p(f"- data dirs on {a.disk}")
    p("")
    p("Commands:")
    p("")
    p("```")
    p(commands)
    p("```")
    p("")

    # 1. throughput
    rb = [r for r in rows if r[0] == "rb"]
    if rb:
        p("### 1. SET throughput with backups (eventual)")
        p("")
        p("CPU µs/op: the primary's utime+stime over the run / requests (1 tick = 10 ms); backups µs/op the same "
          "for all its backups/replicas together. Lag at end: the most records a backup was behind when the "
          "benchmark's last reply arrived (keel `lag_records`; redis: bytes of offset), and the ms until every "
          "backup held everything. Spread = (max-min)/median of ops/s.")
        p("")
        p("| workload | server | primary CPU µs/op | backups CPU µs/op | load gen CPU µs/op | ops/s | spread | p50 ms | p99 ms | ops/s vs no backup | CPU/op ceiling vs no backup | lag at end | drain ms | SETs per frame | wire B/SET per backup | other load (cores) |")
        p("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        tests = []
        for r in rb:
            if r[3] not in tests:
                tests.append(r[3])
        for test in tests:
            base = {}
            for cfg in CONFIG_NAMES:
                rs = [r for r in rb if r[1] == cfg and r[3] == test]
                if not rs:
                    continue
                rps, p50, p99, cpu, bcpu, lagend, drains, perframe, wire = [], [], [], [], [], [], [], [], []
                others, gen = [], []
                for r in rs:
                    _, _, run, _, n, pt, bt, csvf, drainf, infof, gt, other = r
                    others.append(float(other))
                    gen.append(int(gt) * 1e6 / TICK / int(n))
                    if cfg.startswith("keel") and cfg != "keel0":
                        try:
                            with open(infof + "-0") as f:
                                i0 = keel_links(parse_info(f.read()))
                            with open(infof + "-1") as f:
                                i1 = keel_links(parse_info(f.read()))
                            for bid in i1:
                                fr = sum(int(x["frames_raw"]) + int(x["frames_compressed"]) for x in i1[bid]) - \
                                    sum(int(x["frames_raw"]) + int(x["frames_compressed"]) for x in i0.get(bid, []))
                                wb = sum(int(x["wire_bytes"]) for x in i1[bid]) - sum(int(x["wire_bytes"]) for x in i0.get(bid, []))
                                if fr > 0:
                                    perframe.append(int(n) / fr)
                                wire.append(wb / int(n))
                        except OSError:
                            pass
                    x = read_rb(csvf)
                    n = int(n)
                    rps.append(x[0]); p50.append(x[1]); p99.append(x[2])
                    cpu.append(int(pt) * 1e6 / TICK / n)
                    bcpu.append(int(bt) * 1e6 / TICK / n if not cfg.endswith("0") else None)
                    if drainf != "-":
                        with open(drainf) as f:
                            d = json.loads(f.read())
                        drains.append(d["drain_ms"])
                        ae = d["at_end"]
                        if "links" in ae:
                            lagend.append(max((l["lag_records"] for l in ae["links"].values()), default=0))
                        else:
                            lagend.append(ae["lag_bytes"])
                m = med(rps)
                spread = 100.0 * (max(rps) - min(rps)) / m if len(rps) > 1 and m else float("nan")
                eng = "keel" if cfg.startswith("keel") else "redis"
                if cfg.endswith("0"):
                    base[eng] = m
                    base[eng + "cpu"] = med(cpu)
                    ratio = "1.00"
                    ceil = "1.00"
                else:
                    ratio = f"**{m / base[eng]:.2f}**" if eng in base else "-"
                    ceil = f"{base[eng + 'cpu'] / med(cpu):.2f}" if eng + "cpu" in base else "-"
                lag = "-"
                if lagend:
                    unit = " rec" if eng == "keel" else " B"
                    lag = f"{med(lagend):,.0f}{unit} (max {max(lagend):,.0f})"
                dr = "-"
                if drains:
                    if any(d is None for d in drains):
                        dr = "NOT DRAINED"
                    else:
                        dr = f"{med(drains):.0f} (max {max(drains):.0f})"
                p(f"| {test} | {CONFIG_NAMES[cfg]} | {fmt(med(cpu))} | {fmt(med(bcpu))} | {fmt(med(gen))} | {fmt(m)} | {fmt(spread, 0)}% | "
                  f"{fmt(med(p50), 3)} | {fmt(med(p99), 3)} | {ratio} | {ceil} | {lag} | {dr} | {fmt(med(perframe), 1)} | "
                  f"{fmt(med(wire), 1)} | {fmt(med(others))} |")
        p("")
        p("CPU/op ceiling vs no backup: the primary's CPU µs/op without backups over that with them — the "
          "throughput ratio once the primary's core is the bottleneck (with the load generator and the backups "
          "elsewhere). Other load: cores kept busy meanwhile by processes not in this run (/proc/stat busy "
          "ticks minus the servers' and the load generator's), i.e. other sessions on this shared machine.")
        p("")
        p("Per run (ops/s / primary CPU µs/op / other load in cores):")
        p("")
        for test in tests:
            for cfg in CONFIG_NAMES:
                rs = [r for r in rb if r[1] == cfg and r[3] == test]
                if rs:
                    parts = []
                    for r in rs:
                        x = read_rb(r[7])
                        parts.append(f"{x[0]:,.0f} / {int(r[5]) * 1e6 / TICK / int(r[4]):.2f} / {float(r[11]):.2f}")
                    p(f"- {test}, {CONFIG_NAMES[cfg]}: " + "; ".join(parts))
        p("")

    # 2. strong mode
    st = [r for r in rows if r[0] == "strong"]
    if st:
        p("### 2. Strong mode against redis + WAIT 1 0")
        p("")
        p(f"`bench/repl_report.py client` (one Python process on CPU {a.loadgen_cpu}, {a.strong_conns} connections, "
          f"closed loop, {a.strong_secs} s per run after 0.5 s warm-up): mode `set` sends one SET and waits for "
          "its reply; mode `setwait` sends SET and WAIT 1 0 together (a pipelined pair) and waits for both. "
          "One op = one SET; latency from send to the last reply. CPU µs/op: primary only.")
        p("")
        p("| server | durability | client | primary CPU µs/op | ops/s | spread | p50 ms | p99 ms | max ms | errors | other load (cores) |")
        p("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        order = []
        for r in st:
            if r[1] not in order:
                order.append(r[1])
        for cfg in order:
            rs = [r for r in st if r[1] == cfg]
            js = []
            cpu = []
            for r in rs:
                with open(r[3]) as f:
                    j = json.loads(f.read())
                js.append(j)
                cpu.append(int(r[4]) * 1e6 / TICK / j["ops"] if j["ops"] else None)
            rps = [j["rps"] for j in js]
            m = med(rps)
            spread = 100.0 * (max(rps) - min(rps)) / m if len(rps) > 1 and m else float("nan")
            errs = sum(j["errors"] + j["wait_zero"] for j in js)
            server, dur, client_mode = rs[0][5], rs[0][6], rs[0][7]
            p(f"| {server} | {dur} | {client_mode} | {fmt(med(cpu))} | {fmt(m)} | {fmt(spread, 0)}% | "
              f"{fmt(med([j['p50'] for j in js]), 3)} | {fmt(med([j['p99'] for j in js]), 3)} | "
              f"{fmt(max(j['max'] for j in js), 1)} | {errs} | {fmt(med([float(r[8]) for r in rs]))} |")
        p("")

    # 3. lag
    lg = [r for r in rows if r[0] == "lag"]
    if lg:
        p("### 3. Replication lag at a fixed rate (keel + 2 backups, eventual)")
        p("")
        p("`bench/repl_report.py rate` drives SETs at the target rate (pipelined batches every ~1 ms over 8 "
          "connections); `bench/repl_report.py sample` reads INFO replication of the primary and both backups "
          "every 100 ms. Primary `lag_ms`: age of the oldest record a backup has not acked (0 when caught up); "
          "`lag_records`: records not acked. Backup `replica_lag_ms`: ms since the backup last knew it held "
          "everything the primary had (it learns that from each data message or ping; pings come every 100 ms "
          "on an idle link, so an idle backup reads 0-100 ms). Over both backups; samples during the load only.")
        p("")
        p("| target | achieved SET/s | most replies outstanding | primary CPU busy | samples | primary lag_ms p50 / p99 / max | lag_records p50 / p99 / max | backup replica_lag_ms p50 / p99 / max | write delay_us max | drain after stop ms | other load (cores) |")
        p("|---|---:|---:|---:|---:|---|---|---|---:|---:|---:|")
        for r in lg:
            _, name, target, loadf, samplef, drainf, other, busy = r
            with open(loadf) as f:
                ld = json.loads(f.read())
            samples = []
            with open(samplef) as f:
                for l in f:
                    samples.append(json.loads(l))
            during = [s for s in samples if ld["start"] + 0.5 <= s["t"] <= ld["end"]]
            lms = [l["lag_ms"] for s in during for l in s["links"].values()]
            lrec = [l["lag_records"] for s in during for l in s["links"].values()]
            bl = [v for s in during for v in s["backups"].values()]
            dl = [s["delay_us"] for s in during]
            with open(drainf) as f:
                dd = json.loads(f.read())
            dr = "NOT DRAINED" if dd["drain_ms"] is None else f"{dd['drain_ms']:.0f}"

            def three(xs):
                return f"{fmt(pct(xs, 50), 0)} / {fmt(pct(xs, 99), 0)} / {fmt(max(xs) if xs else float('nan'), 0)}"
            p(f"| {name}: {int(float(target)):,}/s | {ld['achieved']:,.0f} | {ld['most_outstanding']:,} | {float(busy) * 100:.0f}% | "
              f"{len(during)} | {three(lms)} | {three(lrec)} | {three(bl)} | {max(dl) if dl else '-'} | {dr} | {other} |")
        p("")

    # 4. bytes
    by = [r for r in rows if r[0] == "bytes"]
    if by:
        p("### 4. Bytes on the links: JSON documents, compressed (other zone) and raw (same zone)")
        p("")
        p("One keel primary (zone a) with backup `b1b` in zone b (lz4 frames) and backup `b2a` in zone a (raw "
          "frames); counters are the differences of `INFO replication` before and after each phase. "
          "redis-server + replica for reference: `master_repl_offset` moved by (its stream is the RESP "
          "commands, never compressed). A dropped link resets that link's counters and its backup comes back "
          "through a full sync (a snapshot of every key), so a phase with drops counts the snapshot's bytes, "
          "not only the stream's, and its frame deltas can be off.")
        p("")
        p("| load | docs | doc bytes (values) | link | payload_bytes | wire_bytes | wire/payload | frames raw / lz4 | links dropped |")
        p("|---|---:|---:|---|---:|---:|---:|---|---:|")
        for r in by:
            _, phase, docs, vbytes, before_f, after_f, drops = r[:7]
            with open(before_f) as f:
                b = parse_info(f.read())
            with open(after_f) as f:
                aa = parse_info(f.read())
            if "master_repl_offset" in aa and not keel_links(aa):
                d = int(aa["master_repl_offset"]) - int(b["master_repl_offset"])
                p(f"| {phase} | {int(docs):,} | {int(vbytes):,} | redis stream | {d:,} | {d:,} | 1.00 | - | - |")
                continue
            la, lb = keel_links(aa), keel_links(b)
            for bid in sorted(la):
                def tot(links, key):
                    return sum(int(x[key]) for x in links.get(bid, []))
                pay = tot(la, "payload_bytes") - tot(lb, "payload_bytes")
                wire = tot(la, "wire_bytes") - tot(lb, "wire_bytes")
                fr = tot(la, "frames_raw") - tot(lb, "frames_raw")
                fc = tot(la, "frames_compressed") - tot(lb, "frames_compressed")
                comp = la[bid][0].get("compress")
                p(f"| {phase} | {int(docs):,} | {int(vbytes):,} | {bid} (compress={comp}) | {pay:,} | {wire:,} | "
                  f"**{wire / pay:.3f}** | {fr:,} / {fc:,} | {drops} |")
        p("")
    notes = [r for r in rows if r[0] == "note"]
    if notes:
        p("Checks and notes from the run:")
        p("")
        for r in notes:
            p(f"- {r[1]}")
        p("")
    p(f"<!-- bench:{a.label} end -->")
    print("\n".join(o))


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("client")
    c.add_argument("port", type=int)
    c.add_argument("--mode", choices=["set", "setwait"], default="set")
    c.add_argument("--conns", type=int, default=50)
    c.add_argument("--seconds", type=float, default=5)
    c.add_argument("--warmup", type=float, default=0.5)
    c.add_argument("--size", type=int, default=32)
    c.add_argument("--keys", type=int, default=100000)
    r = sub.add_parser("rate")
    r.add_argument("port", type=int)
    r.add_argument("--rate", type=float, required=True)
    r.add_argument("--seconds", type=float, default=10)
    r.add_argument("--conns", type=int, default=8)
    r.add_argument("--size", type=int, default=32)
    r.add_argument("--keys", type=int, default=100000)
    s = sub.add_parser("sample")
    s.add_argument("--primary", type=int, required=True)
    s.add_argument("--backup", type=int, action="append", default=[])
    s.add_argument("--seconds", type=float, required=True)
    s.add_argument("--interval", type=float, default=0.1)
    s.add_argument("--until", help="stop once this file exists (--seconds is then the most)")
    s.add_argument("--out", required=True)
    d = sub.add_parser("drain")
    d.add_argument("--keel", type=int)
    d.add_argument("--redis", type=int, nargs=2)
    d.add_argument("--timeout", type=float, default=60)
    j = sub.add_parser("json")
    j.add_argument("count", type=int)
    j.add_argument("--seed", type=int, default=1)
    j.add_argument("--start", type=int, default=0)
    j.add_argument("--stats")
    t = sub.add_parser("trickle")
    t.add_argument("port", type=int)
    t.add_argument("count", type=int)
    t.add_argument("--seed", type=int, default=2)
    t.add_argument("--start", type=int, default=0)
    rp = sub.add_parser("report")
    for k in ("manifest", "commands", "keel-bin", "redis-bin", "keel-desc", "label", "disk"):
        rp.add_argument("--" + k, required=True)
    for k in ("runs", "server-cpu", "loadgen-cpu", "strong-conns", "strong-secs", "strong-runs"):
        rp.add_argument("--" + k, required=True)
    rp.add_argument("--when", help="the run's time for the heading (default now)")
    a = ap.parse_args()
    if a.cmd == "client":
        return client(a)
    if a.cmd == "rate":
        return rate(a)
    if a.cmd == "sample":
        return sample(a)
    if a.cmd == "drain":
        return drain(a)
    if a.cmd == "json":
        return gen_json(a)
    if a.cmd == "trickle":
        return trickle(a)
    return report(a)


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Turn bench/run.sh's raw results into a Markdown section of bench/RESULTS.md.

The manifest (TSV, one line per measurement, written by run.sh):
  rb   SERVER CONFIG RUN TEST PIPELINE REQUESTS CPU_TICKS CSV_FILE   (redis-benchmark)
  mt   SERVER CONFIG RUN mix  1        0        CPU_TICKS JSON_FILE  (memtier_benchmark)
  rss  SERVER CONFIG RUN load 1        KEYS     RSS_KIB_BEFORE RSS_KIB_AFTER
Figures are medians over runs. The section between this label's markers is
replaced; a new label is appended.
"""
import argparse
import csv
import datetime
import json
import os
import platform
import re
import statistics
import subprocess

TICK = os.sysconf("SC_CLK_TCK")


def sh(*cmd, cwd=None):
    try:
        return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def read_rb(path, test):
    """rps, p50, p99 (ms) from redis-benchmark --csv (7.x prints p50/p99 columns)."""
    with open(path) as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        # A named command (e.g. HGET) is its run's only row, titled by its text.
        if row["test"].upper() == test.upper() or (len(rows) == 1 and row["test"].upper().startswith(test.upper())):
            return float(row["rps"]), float(row["p50_latency_ms"]), float(row["p99_latency_ms"])
    raise SystemExit(f"{path}: no {test} row (did redis-benchmark fail?)")


def read_mt(path):
    """ops, ops/s, p50, p99 (ms) from memtier_benchmark --json-out-file."""
    with open(path) as f:
        tot = json.load(f)["ALL STATS"]["Totals"]
    pct = tot.get("Percentile Latencies", {})
    return tot["Count"], tot["Ops/sec"], pct.get("p50.00", float("nan")), pct.get("p99.00", float("nan"))


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def spread(xs):
    """(max - min) / median, as a percentage: how much runs disagree."""
    return 100.0 * (max(xs) - min(xs)) / med(xs) if len(xs) > 1 and med(xs) else float("nan")


def fmt(x, nd=2):
    if x != x:  # NaN
        return "-"
    return f"{x:,.0f}" if nd == 0 else f"{x:.{nd}f}"


def load(manifest):
    rows = {}  # (server, config, workload) -> list of (cpu_us_per_op, ops_s, p50, p99)
    rss = {}
    cg = {}  # (server, test, pipeline) -> (requests, instructions)
    for line in open(manifest):
        f = line.rstrip("\n").split("\t")
        kind, server, config = f[0], f[1], f[2]
        if kind == "rb":
            test, pipe, n, ticks, path = f[4], int(f[5]), int(f[6]), int(f[7]), f[8]
            rps, p50, p99 = read_rb(path, test)
            key = (server, config, f"{test.upper()} -P {pipe}")
            rows.setdefault(key, []).append((ticks / TICK / n * 1e6, rps, p50, p99))
        elif kind == "mt":
            ticks, path = int(f[7]), f[8]
            n, rps, p50, p99 = read_mt(path)
            rows.setdefault((server, config, "memtier default"), []).append((ticks / TICK / n * 1e6, rps, p50, p99))
        elif kind == "rss":
            rss[server] = (int(f[6]), int(f[7]), int(f[8]))
        elif kind == "cg":
            test, pipe, n, ir = f[4], int(f[5]), int(f[6]), int(f[7])
            cg[(server, test, pipe)] = (n, ir)
    return rows, rss, cg


def summary(samples):
    cols = list(zip(*samples))
    return [med(c) for c in cols], spread(cols[1])


def render(a, rows, rss, cg):
    out = []
    w = out.append
    workloads = [k[2] for k in rows if k[:2] == ("redis", "pinned")]
    w("| workload | server | CPU µs/op | ops/s | ops/s spread | p50 ms | p99 ms |")
    w("|---|---|---:|---:|---:|---:|---:|")
    peers = [p for p in ("redis", "valkey") if any(k[:2] == (p, "pinned") for k in rows)]
    for wl in workloads:
        k = rows.get(("keel", "pinned", wl))
        for name in peers + ["keel"]:
            s = rows.get((name, "pinned", wl))
            if s:
                (cpu, ops, p50, p99), sp = summary(s)
                sps = fmt(sp, 1) + "%" if sp == sp else "-"
                w(f"| {wl} | {name} | {fmt(cpu)} | {fmt(ops, 0)} | {sps} | {fmt(p50, 3)} | {fmt(p99, 3)} |")
        for peer in peers:
            r = rows.get((peer, "pinned", wl))
            if r and k:
                (rc, ro, r50, r99), _ = summary(r)
                (kc, ko, k50, k99), _ = summary(k)
                w(f"| {wl} | **keel/{peer}** | **{fmt(kc / rc)}** | **{fmt(ko / ro)}** | | "
                  f"{fmt(k50 / r50)} | {fmt(k99 / r99)} |")
    w("")
    w("CPU µs/op is the server's utime+stime over the run divided by requests served "
      "(lower is better; 1 clock tick = %.0f ms). Spread = (max-min)/median of ops/s over runs." % (1000 / TICK))
    if rss:
        w("")
        w("| memory | RSS empty MiB | RSS loaded MiB | bytes/key over empty |")
        w("|---|---:|---:|---:|")
        for name in ("redis", "valkey", "keel"):
            if name in rss:
                keys, b, af = rss[name]
                w(f"| {name} ({keys:,} keys) | {fmt(b / 1024, 1)} | {fmt(af / 1024, 1)} | {fmt((af - b) * 1024 / keys, 1)} |")
        for peer in ("redis", "valkey"):
            if peer in rss and "keel" in rss:
                w(f"| **keel/{peer}** | | **{fmt(rss['keel'][2] / rss[peer][2])}** | |")
    if cg:
        w("")
        w("User-space instructions per request (callgrind; the Ir of a start-PING-stop run "
          "subtracted; redis-benchmark -c 10 -d 32 -r 100000):")
        w("")
        names = [n for n in ("redis", "valkey", "keel") if any(k[0] == n for k in cg)]
        w("| test | " + " | ".join(names) + " | " + " | ".join(f"keel/{p}" for p in names if p != "keel") + " |")
        w("|---|" + "---:|" * (2 * len(names) - 1))
        tests = sorted({(k[1], k[2]) for k in cg if k[1] != "base"})
        for test, pipe in tests:
            per = {}
            for n in names:
                base = cg.get((n, "base", 1), (0, 0))[1]
                got = cg.get((n, test, pipe))
                if got and got[0]:
                    per[n] = (got[1] - base) / got[0]
            cells = [fmt(per[n], 0) if n in per else "-" for n in names]
            ratios = [fmt(per["keel"] / per[p]) if "keel" in per and p in per else "-"
                      for p in names if p != "keel"]
            w(f"| {test.upper()} -P {pipe} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
    scale = sorted({k[1] for k in rows if k[0] == "keel" and k[1] != "pinned"})
    for cfg in scale:
        w("")
        w(f"Scaling: keel `--shards {cfg.removeprefix('shards')}` on CPUs {a.scale_cpus} "
          f"(load generator on the same CPUs) against keel 1 shard on CPU {a.server_cpu}:")
        w("")
        w("| workload | keel | CPU µs/op | ops/s | p50 ms | p99 ms | ops/s vs 1 shard |")
        w("|---|---|---:|---:|---:|---:|---:|")
        for wl in workloads:
            one = rows.get(("keel", "pinned", wl))
            many = rows.get(("keel", cfg, wl))
            if not many:
                continue
            (c, o, p50, p99), _ = summary(many)
            ratio = fmt(o / summary(one)[0][1]) if one else "-"
            w(f"| {wl} | {cfg} | {fmt(c)} | {fmt(o, 0)} | {fmt(p50, 3)} | {fmt(p99, 3)} | {ratio} |")
    return out


def main():
    ap = argparse.ArgumentParser()
    for opt in ("manifest", "commands", "results", "label", "keel-bin", "root", "runs",
                "server-cpu", "loadgen-cpu", "scale-cpus"):
        ap.add_argument("--" + opt, required=True)
    a = ap.parse_args()
    rows, rss, cg = load(a.manifest)

    model = re.search(r"Model name:\s*(.+)", sh("lscpu"))
    rev = sh("git", "rev-parse", "--short", "HEAD", cwd=a.root)
    dirty = " (uncommitted changes)" if sh("git", "status", "--porcelain", cwd=a.root) else ""
    keel_note = ""
    if os.path.realpath(a.keel_bin) != os.path.realpath(os.path.join(a.root, "target/release/keel")):
        keel_note = f" **The keel column is `{a.keel_bin}`, not a release build of keel.**"
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    sec = [f"<!-- bench:{a.label} begin -->",
           f"## {now} — {a.label}", "",
           f"- machine: {model.group(1) if model else platform.processor()}, {os.cpu_count()} CPUs "
           f"(nproc {sh('nproc')}), {round(os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30)} GiB, "
           f"kernel {platform.release()}",
           f"- redis-server: {sh('redis-server', '--version')}",
           f"- valkey-server: {sh(os.environ.get('VALKEY_BIN') or 'valkey-server', '--version') or 'not run'}",
           f"- keel: commit {rev or '?'}{dirty}, binary `{a.keel_bin}`.{keel_note}",
           f"- servers pinned to CPU {a.server_cpu}, load generator to CPU {a.loadgen_cpu}; "
           f"medians of {a.runs} runs, servers alternating run by run; loopback.",
           "", "Commands:", "", "```"]
    sec += [c.rstrip() for c in open(a.commands)]
    sec += ["```", ""]
    sec += render(a, rows, rss, cg)
    sec += ["", f"<!-- bench:{a.label} end -->"]
    text = "\n".join(sec) + "\n"

    old = open(a.results).read() if os.path.exists(a.results) else "# Benchmark results\n"
    old = old.replace("\nNo figures have been recorded yet.\n", "\n")  # the template's placeholder
    pat = re.compile(rf"<!-- bench:{re.escape(a.label)} begin -->.*?<!-- bench:{re.escape(a.label)} end -->\n?", re.S)
    new = pat.sub(lambda _: text, old) if pat.search(old) else old.rstrip("\n") + "\n\n" + text
    with open(a.results, "w") as f:
        f.write(new)
    print(text)


if __name__ == "__main__":
    main()

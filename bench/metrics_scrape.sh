#!/usr/bin/env bash
# What a Prometheus scrape of GET /metrics costs a loaded keel (issue 16).
#
#   bench/metrics_scrape.sh                  builds target/release/keel, runs, prints
#   BUILD=0 KEEL_BIN=path bench/metrics_scrape.sh
#
# 1. The cost of one scrape: keel (`--shards 1`, pinned to SERVER_CPU,
#    100,000 keys loaded) is scraped SCRAPES times back to back with curl;
#    keel's CPU time over them (utime+stime of /proc/PID/stat, all threads)
#    divided by SCRAPES, curl's time per scrape, the body's size.
# 2. Throughput with and without scraping: redis-benchmark -t set,get -c 50
#    -r 100000 -d 32, unpipelined (N_P1 requests per test) and -P 16 (N_P16),
#    pinned to LOADGEN_CPU; once with nothing else, once with
#    `curl /metrics` every SCRAPE_EVERY seconds in a loop (on LOADGEN_CPU
#    too, so keel's core pays only for answering). RUNS rounds; within a
#    round both modes run back to back, the order alternating round by round,
#    so a drift of the machine's speed hits both alike. Per mode: ops/s of SET
#    and GET and keel's CPU µs per request, as min / median / max over the
#    rounds, and the ratio scraping/not scraping taken round by round
#    (median and range). Each run also records the other load: cores kept busy
#    by processes that are not this run's (/proc/stat busy ticks minus
#    keel's, the load generator's and the scraper's), i.e. other sessions on a
#    shared machine.
# 3. Prints a Markdown fragment for bench/RESULTS.md on stdout (logs go to
#    stderr); it does not edit RESULTS.md.
#
# Knobs (env): RUNS=5 N_P1=300000 N_P16=2000000 SCRAPES=300 SCRAPE_EVERY=1
# KEEL_BIN=target/release/keel BUILD=1 SERVER_CPU=0 LOADGEN_CPU=1
# BENCH_TIMEOUT=600 (s, per load-generator call) KEEP=1 (keep the work dir).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
RUNS=${RUNS:-5}
N_P1=${N_P1:-300000}
N_P16=${N_P16:-2000000}
SCRAPES=${SCRAPES:-300}
SCRAPE_EVERY=${SCRAPE_EVERY:-1}
KEEL_BIN=${KEEL_BIN:-$root/target/release/keel}
BUILD=${BUILD:-1}
SERVER_CPU=${SERVER_CPU:-0}
LOADGEN_CPU=${LOADGEN_CPU:-1}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-600}
KEEP=${KEEP:-0}

log() { echo "[metrics_scrape] $*" >&2; }
die() { log "$*"; exit 1; }
source "$here/lib.sh"

command -v redis-benchmark >/dev/null || die "redis-benchmark missing (apt-get install redis-tools)"
command -v curl >/dev/null || die "curl missing"
if [ "$BUILD" = 1 ]; then
    log "cargo build --release"
    (cd "$root" && cargo build --release >&2)
fi
[ -x "$KEEL_BIN" ] || die "no keel binary at $KEEL_BIN"

work=$(mktemp -d /tmp/keel-metrics-scrape.XXXXXX)
kpid= scraper=
cleanup() {
    [ -z "$scraper" ] || kill "$scraper" 2>/dev/null || true
    if [ -n "$kpid" ]; then
        kill -TERM "$kpid" 2>/dev/null || true
        wait "$kpid" 2>/dev/null || true
    fi
    if [ "$KEEP" = 1 ]; then log "work dir kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

busy_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
tck=$(getconf CLK_TCK)

port=$(free_port)
http=$(free_port)
keel_cmd=(taskset -c "$SERVER_CPU" "$KEEL_BIN" --port "$port" --bind 127.0.0.1 --http-port "$http"
    --shards 1 --dir "$work/data" --appendonly no)
mkdir -p "$work/data"
"${keel_cmd[@]}" >"$work/keel.log" 2>&1 &
kpid=$!
for _ in $(seq 100); do
    [ "$(timeout 2 redis-cli -p "$port" ping 2>/dev/null)" = PONG ] && break
    kill -0 "$kpid" 2>/dev/null || die "keel exited: $(tail -5 "$work/keel.log")"
    sleep 0.1
done
[ "$(redis-cli -p "$port" ping)" = PONG ] || die "keel did not answer"
url="http://127.0.0.1:$http/metrics"
curl -sf -o /dev/null "$url" || die "no /metrics on $url"

bench() { # PIPELINE N -> CSV on stdout; its CPU ticks in $work/lg.time
    timeout "$BENCH_TIMEOUT" /usr/bin/time -f '%U %S' -o "$work/lg.time" \
        taskset -c "$LOADGEN_CPU" redis-benchmark -h 127.0.0.1 -p "$port" -c 50 -r 100000 -d 32 \
        -n "$2" -P "$1" -t set,get --csv
}
lg_ticks() { awk -v t="$tck" '{printf "%d", ($1 + $2) * t + 0.5}' "$work/lg.time"; }

log "loading 100000 keys"
bench 16 1000000 >/dev/null

# 1. One scrape's cost, keel otherwise idle.
log "part 1: $SCRAPES scrapes back to back"
k0=$(cpu_ticks "$kpid")
for _ in $(seq "$SCRAPES"); do
    curl -s -o /dev/null -w '%{time_total} %{size_download}\n' "$url"
done >"$work/scrapes.txt"
k1=$(cpu_ticks "$kpid")
echo "$((k1 - k0))" >"$work/scrape_ticks"
curl -s "$url" >"$work/sample.txt"

# 2. Throughput, with and without a scraper.
scrape_loop() { # appends one line per scrape to $1
    while :; do
        curl -s -o /dev/null -w '%{time_total}\n' "$url" >>"$1" || true
        sleep "$SCRAPE_EVERY"
    done
}
printf 'round\tmode\tpipeline\tset_rps\tget_rps\tkeel_ticks\trequests\tseconds\tother_cores\tscrapes\n' \
    >"$work/runs.tsv"
one() { # ROUND MODE PIPELINE N
    local round=$1 mode=$2 p=$3 n=$4 s0 s1 k0 k1 b0 b1 w0 w1 csv set get lg scrapes=0 sfile
    sfile="$work/scrape-$round-$mode-$p.txt"
    : >"$sfile"
    if [ "$mode" = scrape ]; then
        taskset -c "$LOADGEN_CPU" bash -c "$(declare -f scrape_loop); url='$url'; SCRAPE_EVERY=$SCRAPE_EVERY; scrape_loop '$sfile'" &
        scraper=$!
        s0=$(cpu_ticks "$scraper")
    fi
    b0=$(busy_ticks) k0=$(cpu_ticks "$kpid") w0=$(date +%s.%N)
    csv=$(bench "$p" "$n")
    w1=$(date +%s.%N) k1=$(cpu_ticks "$kpid") b1=$(busy_ticks)
    lg=$(lg_ticks)
    s1=0 s0=${s0:-0}
    if [ "$mode" = scrape ]; then
        # The loop's own bash; its curls are short-lived children counted
        # below through the scrape count (each a few ms of CPU at most).
        s1=$(cpu_ticks "$scraper")
        kill "$scraper" 2>/dev/null || true
        wait "$scraper" 2>/dev/null || true
        scraper=
        scrapes=$(wc -l <"$sfile")
    fi
    set=$(awk -F'"' '$2 == "SET" {print $4}' <<<"$csv")
    get=$(awk -F'"' '$2 == "GET" {print $4}' <<<"$csv")
    [ -n "$set" ] && [ -n "$get" ] || die "no figures from redis-benchmark: $csv"
    other=$(python3 -c "print(f'{max(0, $b1 - $b0 - ($k1 - $k0) - $lg - ($s1 - $s0)) / $tck / ($w1 - $w0):.2f}')")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$mode" "$p" "$set" "$get" \
        "$((k1 - k0))" "$((2 * n))" "$(python3 -c "print(f'{$w1 - $w0:.2f}')")" "$other" "$scrapes" \
        >>"$work/runs.tsv"
    log "round $round, $mode, -P $p: SET $set GET $get ops/s, keel $((k1 - k0)) ticks, other load $other cores, $scrapes scrapes"
}
for round in $(seq "$RUNS"); do
    if [ $((round % 2)) = 1 ]; then order="none scrape"; else order="scrape none"; fi
    for p in 1 16; do
        n=$N_P1
        [ "$p" = 16 ] && n=$N_P16
        for mode in $order; do one "$round" "$mode" "$p" "$n"; done
    done
done

# 3. The report.
commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=$(git -C "$root" status --porcelain --untracked-files=no 2>/dev/null | head -1)
python3 - "$work" "$tck" "$commit" "${dirty:+ (uncommitted changes in the tree)}" "$KEEL_BIN" \
    "$SERVER_CPU" "$LOADGEN_CPU" "$SCRAPE_EVERY" "$SCRAPES" "$N_P1" "$N_P16" "$RUNS" \
    "${keel_cmd[*]}" <<'PY'
import csv, datetime, os, platform, statistics, subprocess, sys

(work, tck, commit, dirty, binary, scpu, lcpu, every, scrapes, n1, n16, runs, keel_cmd) = sys.argv[1:]
tck = int(tck)
rows = list(csv.DictReader(open(f"{work}/runs.tsv"), delimiter="\t"))

def sh(cmd):
    return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()

model = sh("lscpu | awk -F: '/Model name/ {gsub(/^ +/, \"\", $2); print $2}'")
mem = sh("awk '/MemTotal/ {printf \"%.0f\", $2 / 1048576}' /proc/meminfo")
built = datetime.datetime.utcfromtimestamp(os.path.getmtime(binary)).strftime("%Y-%m-%d %H:%M UTC")
now = datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M UTC")

def mmm(xs, fmt="{:,.0f}"):
    return " / ".join(fmt.format(x) for x in (min(xs), statistics.median(xs), max(xs)))

def us_per_req(r):
    return int(r["keel_ticks"]) / tck * 1e6 / int(r["requests"])

print("<!-- bench:metrics-scrape begin -->")
print(f"## {now} — GET /metrics scraped under load (issue 16)")
print()
print(f"- machine: {model}, {os.cpu_count()} CPUs, {mem} GiB, kernel {platform.release()}; loopback; "
      "shared with other sessions' builds and tests (the other-load column), so figures are noisy: "
      "min / median / max of the rounds")
print(f"- keel: {binary}, {commit}{dirty}, built {built}; `--shards 1` pinned to CPU {scpu}, "
      f"100,000 keys loaded; redis-benchmark and the scraper pinned to CPU {lcpu}")
print(f"- {runs} rounds; in each, both modes back to back (order alternating by round) for each workload")
print()
print("Commands:")
print()
print("```")
print(keel_cmd.replace(work, "$WORK"))
print(f"taskset -c {lcpu} redis-benchmark -h 127.0.0.1 -p $PORT -c 50 -r 100000 -d 32 -n {n1} -P 1 -t set,get --csv")
print(f"taskset -c {lcpu} redis-benchmark -h 127.0.0.1 -p $PORT -c 50 -r 100000 -d 32 -n {n16} -P 16 -t set,get --csv")
print(f"# scraping: meanwhile, on CPU {lcpu}")
print(f"while :; do curl -s -o /dev/null http://127.0.0.1:$HTTP/metrics; sleep {every}; done")
print("```")
print()

# 1. one scrape
lines = [l.split() for l in open(f"{work}/scrapes.txt")]
times = [float(t) * 1000 for t, _ in lines]
size = int(lines[-1][1])
ticks = int(open(f"{work}/scrape_ticks").read())
cpu_ms = ticks / tck * 1000 / int(scrapes)
families = sum(1 for l in open(f"{work}/sample.txt") if l.startswith("# TYPE"))
samples = sum(1 for l in open(f"{work}/sample.txt") if l and not l.startswith("#"))
print("### 1. One scrape")
print()
print(f"{scrapes} scrapes back to back of an otherwise idle keel: **{cpu_ms:.3f} ms of keel CPU per scrape** "
      f"({ticks} ticks of 1/{tck} s over {scrapes}); curl's time per scrape min / median / max "
      f"{mmm(times, '{:.2f}')} ms; {size:,} bytes, {families} metric families, {samples} samples. "
      f"At one scrape every {every} s that is {cpu_ms / float(every) / 10:.3f} % of one core.")
print()

# 2. throughput
print("### 2. Throughput with and without a scrape every second")
print()
print("ops/s and keel's CPU µs per request (utime+stime over the run / requests; 1 tick = "
      f"{1000 // tck} ms): min / median / max over the rounds. Ratio: scraping / not scraping, "
      "taken round by round (same workload, back to back), median and [min, max].")
print()
print("| workload | scraping | SET ops/s | GET ops/s | keel CPU µs/req | scrapes per run | other load (cores, median) |")
print("|---|---|---:|---:|---:|---:|---:|")
by = {}
for r in rows:
    by.setdefault((r["pipeline"], r["mode"]), []).append(r)
for p in ("1", "16"):
    for mode in ("none", "scrape"):
        rs = by[(p, mode)]
        print(f"| P{p} | {'every ' + every + ' s' if mode == 'scrape' else 'no'} "
              f"| {mmm([float(r['set_rps']) for r in rs])} | {mmm([float(r['get_rps']) for r in rs])} "
              f"| {mmm([us_per_req(r) for r in rs], '{:.2f}')} "
              f"| {mmm([int(r['scrapes']) for r in rs]) if mode == 'scrape' else '-'} "
              f"| {statistics.median(float(r['other_cores']) for r in rs):.2f} |")
print()
print("| workload | SET ops/s ratio | GET ops/s ratio | CPU µs/req ratio | spread of ops/s without scraping |")
print("|---|---:|---:|---:|---:|")
for p in ("1", "16"):
    a = {r["round"]: r for r in by[(p, "scrape")]}
    b = {r["round"]: r for r in by[(p, "none")]}
    def ratio(f):
        xs = [f(a[k]) / f(b[k]) for k in sorted(a) if k in b]
        return f"{statistics.median(xs):.3f} [{min(xs):.3f}, {max(xs):.3f}]"
    base = [float(r["set_rps"]) for r in by[(p, "none")]] + [float(r["get_rps"]) for r in by[(p, "none")]]
    spread_set = [float(r["set_rps"]) for r in by[(p, "none")]]
    spread = (max(spread_set) - min(spread_set)) / statistics.median(spread_set)
    print(f"| P{p} | {ratio(lambda r: float(r['set_rps']))} | {ratio(lambda r: float(r['get_rps']))} "
          f"| {ratio(us_per_req)} | SET {spread:.0%} |")
print()
print("Per run (round, mode: SET ops/s / GET ops/s / keel CPU µs/req / other load in cores):")
print()
for p in ("1", "16"):
    parts = []
    for r in sorted(by[(p, "none")] + by[(p, "scrape")], key=lambda r: (int(r["round"]), r["mode"])):
        parts.append(f"{r['round']} {r['mode']}: {float(r['set_rps']):,.0f} / {float(r['get_rps']):,.0f} / "
                     f"{us_per_req(r):.2f} / {r['other_cores']}")
    print(f"- P{p}: " + "; ".join(parts))
print()
print("<!-- bench:metrics-scrape end -->")
PY

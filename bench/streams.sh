#!/usr/bin/env bash
# Streams, keel against redis-server (and Valkey when present), same load,
# side by side (issue 15's measure):
#   server CPU per op and ops/s for XADD (auto ids, two fields), XLEN,
#   XRANGE of 10 entries and XREADGROUP (COUNT 1, NOACK, a consumer per
#   connection) — memtier_benchmark, unpipelined, 50 connections — then the
#   memory of one stream of 1,000,000 entries (two fields each) added with
#   redis-cli --pipe.
#
#   bench/streams.sh                     builds keel (release)
#   KEEL_BIN=path N=20000 RUNS=3 bench/streams.sh
# N is requests per connection. Needs memtier_benchmark on PATH.
# Prints markdown tables on stdout.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
KEEL_BIN=${KEEL_BIN:-}
if [ -z "$KEEL_BIN" ]; then
    (cd "$root" && cargo build --release -q)
    KEEL_BIN=$root/target/release/keel
fi
N=${N:-20000} RUNS=${RUNS:-3} SERVER_CPU=${SERVER_CPU:-0} LOADGEN_CPU=${LOADGEN_CPU:-1}
VALKEY_BIN=${VALKEY_BIN:-$(command -v valkey-server || true)}
command -v memtier_benchmark >/dev/null || { echo "streams.sh: memtier_benchmark not found" >&2; exit 1; }
work=$(mktemp -d)
pid=
cleanup() { [ -z "$pid" ] || kill -9 "$pid" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ticks() { awk '{print $14+$15}' "/proc/$pid/stat"; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$pid/status"; }
used() { redis-cli -p "$port" info memory | awk -F: '/^used_memory:/ {print $2+0}'; }
hz=$(getconf CLK_TCK)

start() { # NAME
    port=$(free_port)
    case $1 in
    redis) cmd=(redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no) ;;
    valkey) cmd=("$VALKEY_BIN" --port "$port" --bind 127.0.0.1 --save '' --appendonly no) ;;
    keel) cmd=("$KEEL_BIN" --port "$port" --bind 127.0.0.1 --shards 1 --appendonly no --http-port 0 --dir "$work") ;;
    esac
    taskset -c "$SERVER_CPU" "${cmd[@]}" >"$work/$1.log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && return; sleep 0.1; done
    echo "streams.sh: $1 did not start" >&2
    exit 1
}
stop() { kill -9 "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; pid=; }

load() { # NAME COMMAND KEY-PREFIX KEY-MAX
    local t0 t1 s0 s1
    t0=$(ticks) s0=$(date +%s.%N)
    taskset -c "$LOADGEN_CPU" memtier_benchmark -s 127.0.0.1 -p "$port" -c 50 -t 1 --requests="$N" \
        --hide-histogram --command="$2" --command-key-pattern=R --key-prefix="$3" \
        --key-minimum=1 --key-maximum="$4" >"$work/mt.out" 2>&1 ||
        { cat "$work/mt.out" >&2; exit 1; }
    t1=$(ticks) s1=$(date +%s.%N)
    python3 -c "n=50*$N; print('$server', '$1', ($t1-$t0)/$hz*1e6/n, n/($s1-$s0))"
}

servers="redis keel"
[ -n "$VALKEY_BIN" ] && servers="redis valkey keel"
for server in $servers; do
    for run in $(seq "$RUNS"); do
        start "$server"
        load xadd "XADD events * sensor __key__ temp 21.5" "" 1000
        redis-cli -p "$port" xgroup create events g 0 >/dev/null
        load xlen "XLEN events" "" 1
        load xrange "XRANGE events - + COUNT 10" "" 1
        load xreadgroup "XREADGROUP GROUP g c__key__ COUNT 1 NOACK STREAMS events >" "" 50
        stop
    done
done >"$work/ops"

# Memory: one stream of 1,000,000 entries, in a fresh server.
python3 - "$work/xadds.resp" <<'PY'
import sys
with open(sys.argv[1], "wb") as f:
    for i in range(1_000_000):
        args = [b"XADD", b"big", b"%d-0" % (1_700_000_000_000 + i), b"sensor", b"%d" % (i % 1000), b"temp", b"21.5"]
        f.write(b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args))
PY
for server in $servers; do
    start "$server"
    r0=$(rss_kib) u0=$(used)
    redis-cli -p "$port" --pipe <"$work/xadds.resp" >/dev/null
    echo "$server stream $(( $(rss_kib) - r0 )) $(( $(used) - u0 ))"
    stop
done >"$work/mem"

python3 - "$work/ops" "$work/mem" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    server, test, cpu, rate = line.split()
    rows.setdefault((test, server), []).append((float(cpu), float(rate)))
tests = list(dict.fromkeys(t for t, _ in rows))
servers = list(dict.fromkeys(s for _, s in rows))
print("| command | server | server CPU µs/op | ops/s | CPU vs redis |")
print("|---|---|---:|---:|---:|")
for t in tests:
    base = statistics.median(c for c, _ in rows[(t, "redis")])
    for s in servers:
        cpu = statistics.median(c for c, _ in rows[(t, s)])
        rate = statistics.median(r for _, r in rows[(t, s)])
        print(f"| {t} | {s} | {cpu:.2f} | {rate:,.0f} | {cpu / base:.2f}× |")
print()
print("| memory | server | RSS growth KiB | used_memory growth bytes |")
print("|---|---|---:|---:|")
for line in open(sys.argv[2]):
    server, what, rss, used = line.split()
    print(f"| one stream of 1,000,000 entries | {server} | {int(rss):,} | {int(used):,} |")
PY

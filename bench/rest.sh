#!/usr/bin/env bash
# keel's REST API against the same work over RESP, on one keel (1 shard,
# pinned to SERVER_CPU; load on LOADGEN_CPU): requests/s and the server's
# CPU per command for GET, SET, a 10-command /pipeline and connection churn.
# REST load comes from examples/http_load.rs (one thread, poll(2)), RESP
# load from redis-benchmark: both outrun one server core.
#   bench/rest.sh            (builds target/release/keel and the load generator)
#   KEEL_BIN=path N=50000 CONC=50 RUNS=3 bench/rest.sh
# Prints a markdown table (medians over RUNS) on stdout.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
KEEL_BIN=${KEEL_BIN:-}
(cd "$root" && cargo build --release -q --example http_load)
LOAD=$root/target/release/examples/http_load
if [ -z "$KEEL_BIN" ]; then
    (cd "$root" && cargo build --release -q)
    KEEL_BIN=$root/target/release/keel
fi
N=${N:-50000} CONC=${CONC:-50} RUNS=${RUNS:-3} SERVER_CPU=${SERVER_CPU:-0} LOADGEN_CPU=${LOADGEN_CPU:-1}
work=$(mktemp -d)
pid=
cleanup() { [ -z "$pid" ] || kill -9 "$pid" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
http=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
taskset -c "$SERVER_CPU" "$KEEL_BIN" --port "$port" --http-port "$http" --bind 127.0.0.1 --shards 1 \
    --appendonly no --dir "$work" >"$work/keel.log" 2>&1 &
pid=$!
for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
ticks() { awk '{print $14+$15}' "/proc/$pid/stat"; }
hz=$(getconf CLK_TCK)
measure() { # NAME COMMANDS-PER-REQUEST REQUESTS CMD...
    local name=$1 per=$2 n=$3
    shift 3
    local t0 t1 s0 s1
    t0=$(ticks) s0=$(date +%s.%N)
    taskset -c "$LOADGEN_CPU" "$@" >/dev/null
    t1=$(ticks) s1=$(date +%s.%N)
    python3 -c "print('$name', ($t1-$t0)/$hz*1e6/($n*$per), $n*$per/($s1-$s0))"
}
redis-benchmark -p "$port" -t set -n 100000 -r 100000 -d 32 -P 16 -q >/dev/null 2>&1 # keys for GET
for run in $(seq "$RUNS"); do
    for mode in get set pipeline churn; do
        n=$N; [ $mode = churn ] && n=$((N / 5))
        per=1; [ $mode = pipeline ] && per=10
        measure "rest-$mode" "$per" "$n" "$LOAD" "$http" "$mode" "$n" "$CONC"
    done
    measure resp-get 1 "$N" redis-benchmark -p "$port" -t get -n "$N" -r 100000 -c "$CONC" -q
    measure resp-set 1 "$N" redis-benchmark -p "$port" -t set -n "$N" -r 100000 -d 32 -c "$CONC" -q
    measure resp-churn 1 "$((N / 5))" redis-benchmark -p "$port" -t get -n "$((N / 5))" -r 100000 -c "$CONC" -k 0 -q
    measure resp-P10 1 "$((N * 10))" redis-benchmark -p "$port" -t set,get -n "$((N * 5))" -r 100000 -d 32 -c "$CONC" -P 10 -q
done >"$work/raw"
python3 - "$work/raw" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    name, cpu, rate = line.split()
    rows.setdefault(name, []).append((float(cpu), float(rate)))
print("| workload | server CPU µs/command | commands/s |")
print("|---|---:|---:|")
for name, v in rows.items():
    print(f"| {name} | {statistics.median(c for c, _ in v):.2f} | {statistics.median(r for _, r in v):,.0f} |")
PY

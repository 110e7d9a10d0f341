# The pieces bits_hll.sh, geo.sh and streams.sh share: keel (release,
# built unless KEEL_BIN is given), redis-server and Valkey (when present)
# started one at a time on CPU SERVER_CPU, and `load` driving one command
# with memtier_benchmark from CPU LOADGEN_CPU (unpipelined, 50 connections,
# N requests each), printing "server name cpu-us-per-op ops-per-s".
# Source it after `set -euo pipefail` with `here` set to bench/; it sets
# `work`, `pid`, `port`.
root=$(dirname "$here")
KEEL_BIN=${KEEL_BIN:-}
if [ -z "$KEEL_BIN" ]; then
    (cd "$root" && cargo build --release -q)
    KEEL_BIN=$root/target/release/keel
fi
N=${N:-20000} RUNS=${RUNS:-3} SERVER_CPU=${SERVER_CPU:-0} LOADGEN_CPU=${LOADGEN_CPU:-1}
VALKEY_BIN=${VALKEY_BIN:-$(command -v valkey-server || true)}
command -v memtier_benchmark >/dev/null || { echo "$(basename "$0"): memtier_benchmark not found" >&2; exit 1; }
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
    echo "$(basename "$0"): $1 did not start" >&2
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

#!/usr/bin/env bash
# TLS against plain TCP, keel beside redis-server on its own --tls-port: the
# server's CPU time per request (utime + stime from /proc) and requests/s,
# for unpipelined GET and SET and for SET pipelined 16 deep, with
# redis-benchmark (--tls for the TLS runs) on LOADGEN_CPU and each server on
# SERVER_CPU (keel: one shard). Certificates from examples/test_certs.rs.
#   bench/tls.sh                      (builds target/release/keel)
#   KEEL_BIN=path N=100000 CONC=50 RUNS=3 bench/tls.sh
# Prints a markdown table (medians over RUNS) on stdout.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
log() { echo "tls.sh: $*" >&2; }
die() { log "$*"; exit 1; }
source "$here/lib.sh"
KEEL_BIN=${KEEL_BIN:-}
if [ -z "$KEEL_BIN" ]; then
    (cd "$root" && cargo build --release -q)
    KEEL_BIN=$root/target/release/keel
fi
(cd "$root" && cargo build --release -q --example test_certs)
N=${N:-100000} CONC=${CONC:-50} RUNS=${RUNS:-3} SERVER_CPU=${SERVER_CPU:-0} LOADGEN_CPU=${LOADGEN_CPU:-1}
REDIS_BIN=${REDIS_BIN:-redis-server}
command -v redis-benchmark >/dev/null || die "redis-benchmark missing (apt-get install redis-tools)"
work=$(mktemp -d)
pid=
cleanup() { [ -z "$pid" ] || kill -9 "$pid" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
"$root/target/release/examples/test_certs" "$work/certs"
C=$work/certs
hz=$(getconf CLK_TCK)

start() { # KIND PORT TLSPORT
    local kind=$1 port=$2 tport=$3
    local tls=(--tls-port "$tport" --tls-cert-file "$C/server.crt" --tls-key-file "$C/server.key"
        --tls-ca-cert-file "$C/ca.crt")
    if [ "$kind" = keel ]; then
        taskset -c "$SERVER_CPU" "$KEEL_BIN" --port "$port" --bind 127.0.0.1 --shards 1 --http-port 0 \
            --appendonly no --dir "$work" "${tls[@]}" >"$work/$kind.log" 2>&1 &
    else
        taskset -c "$SERVER_CPU" "$REDIS_BIN" --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
            --dir "$work" "${tls[@]}" >"$work/$kind.log" 2>&1 &
    fi
    pid=$!
    for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && return; sleep 0.1; done
    die "$kind did not start: $(tail -5 "$work/$kind.log")"
}

# One run: prints "<us per request> <requests/s>".
run() { # PORT TLS(0|1) TEST PIPELINE
    local port=$1 tls=$2 test=$3 pipe=$4 args=()
    [ "$tls" = 1 ] && args=(--tls --cacert "$C/ca.crt" --cert "$C/client.crt" --key "$C/client.key")
    local t0 t1 s0 s1
    t0=$(cpu_ticks "$pid") s0=$(date +%s.%N)
    fg taskset -c "$LOADGEN_CPU" redis-benchmark -h 127.0.0.1 -p "$port" "${args[@]}" -n "$N" -c "$CONC" \
        -P "$pipe" -t "$test" -d 64 -r 100000 -q >/dev/null
    t1=$(cpu_ticks "$pid") s1=$(date +%s.%N)
    python3 -c "print(($t1-$t0)/$hz*1e6/$N, $N/($s1-$s0))"
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo "| server | transport | test | CPU µs/request (median of $RUNS) | requests/s (median) |"
echo "|---|---|---|---|---|"
for kind in keel redis; do
    port=$(free_port) tport=$(free_port)
    start "$kind" "$port" "$tport"
    for case in "get 1" "set 1" "set 16"; do
        set -- $case
        for tls in 0 1; do
            p=$port; [ "$tls" = 1 ] && p=$tport
            out=$(for _ in $(seq "$RUNS"); do run "$p" "$tls" "$1" "$2"; done)
            us=$(echo "$out" | awk '{print $1}' | median)
            rps=$(echo "$out" | awk '{print $2}' | median)
            tr=plain; [ "$tls" = 1 ] && tr=TLS
            printf '| %s | %s | %s -P %s | %.2f | %.0f |\n' "$kind" "$tr" "${1^^}" "$2" "$us" "$rps"
        done
    done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    pid=
done

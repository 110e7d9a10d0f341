#!/bin/bash
# User-space instructions per request of one command, keel beside
# redis-server, under callgrind: the repeatable figure on a noisy machine.
# Instrumentation is switched on (callgrind_control -i) only around the
# measured load, so start-up and set-up are not counted.
#
#   bench/callgrind_cmd.sh SETUP-COMMAND MEASURED-COMMAND [KEY-MAX]
#   bench/callgrind_cmd.sh "XADD events * sensor 42 temp 21.5" \
#       "XREADGROUP GROUP g c__key__ COUNT 1 NOACK STREAMS events >" 10
#
# SETUP-COMMAND runs 2×N times per connection first (key 1 only), then
# SETUP_AFTER (a redis-cli command line, e.g. "xgroup create events g 0"),
# then MEASURED-COMMAND N times per connection over keys 1..KEY-MAX (10
# connections, unpipelined). N=2000 by default. Needs memtier_benchmark,
# valgrind and redis-server; builds keel (release) unless KEEL_BIN is set.
# Prints "server instructions-per-request".
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
setup=$1 measured=$2 keymax=${3:-1}
N=${N:-2000}
SETUP_AFTER=${SETUP_AFTER:-}
if [ -z "${KEEL_BIN:-}" ]; then
    (cd "$root" && cargo build --release -q)
    KEEL_BIN=$root/target/release/keel
fi
for tool in memtier_benchmark valgrind callgrind_control callgrind_annotate redis-server; do
    command -v "$tool" >/dev/null || { echo "$(basename "$0"): $tool not found" >&2; exit 1; }
done
work=$(mktemp -d)
pid=
cleanup() { [ -z "$pid" ] || kill -9 "$pid" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

load() { # COMMAND REQUESTS KEY-MAX
    memtier_benchmark -s 127.0.0.1 -p "$port" -c 10 -t 1 --requests="$2" --hide-histogram \
        --command="$1" --command-key-pattern=R --key-minimum=1 --key-maximum="$3" \
        >"$work/mt.out" 2>&1 || { cat "$work/mt.out" >&2; exit 1; }
}

for server in redis keel; do
    case $server in
    redis) cmd=(redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no) ;;
    keel) cmd=("$KEEL_BIN" --port "$port" --bind 127.0.0.1 --shards 1 --appendonly no --http-port 0 --dir "$work") ;;
    esac
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$work/cg.$server" \
        "${cmd[@]}" >"$work/$server.log" 2>&1 &
    pid=$!
    for _ in $(seq 120); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.5; done
    load "$setup" $((2 * N)) 1
    # shellcheck disable=SC2086 # a command line, split on purpose
    [ -z "$SETUP_AFTER" ] || redis-cli -p "$port" $SETUP_AFTER >/dev/null
    load "$measured" 10 "$keymax" # warm: first-time work (consumers...) done
    callgrind_control -i on "$pid" >/dev/null 2>&1
    load "$measured" "$N" "$keymax"
    callgrind_control -i off "$pid" >/dev/null 2>&1
    callgrind_control -d "$pid" >/dev/null 2>&1
    sleep 1
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    pid=
    total=0
    for f in "$work"/cg."$server"*; do
        [ -s "$f" ] || continue
        n=$(callgrind_annotate "$f" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
        total=$((total + ${n:-0}))
    done
    echo "$server $((total / (10 * N)))"
    rm -f "$work"/cg."$server"*
done

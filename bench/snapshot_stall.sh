#!/usr/bin/env bash
# How long a snapshot holds a shard: keel with one shard and ~1 GiB of data,
# BGSAVE while a probe pings it back to back, side by side with redis-server's
# fork-based BGSAVE on the same data.
#
#   bench/snapshot_stall.sh            KEYS=2500000 VALUE=400 (about 1 GiB)
#
# Reports, per server: the snapshot's duration, the probe's round trips
# before and during the snapshot (p50, p99.9, max, how many over 1 ms), and
# keel's own longest snapshot step (INFO persistence:
# snapshot_longest_step_us). The server runs on CPU 0, the loader and the
# probe on CPU 1. Loopback only; everything is removed at the end.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
KEYS=${KEYS:-2500000}
VALUE=${VALUE:-400}
DIR=${DIR:-/var/tmp}
KEEL_BIN=${KEEL_BIN:-$root/target/release/keel}
REDIS_SERVER_BIN=${REDIS_SERVER_BIN:-redis-server}
work=$(mktemp -d "$DIR/keel-stall.XXXXXX")
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_up() {
    for _ in $(seq 1 200); do
        redis-cli -p "$1" ping >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "server on $1 did not start" >&2
    exit 1
}

python3 - "$KEYS" "$VALUE" > "$work/load.resp" <<'PY'
import os, sys
n, size = int(sys.argv[1]), int(sys.argv[2])
out = sys.stdout.buffer
value = (b"v" * size)
chunk = []
for i in range(n):
    k = b"key:%d" % i
    chunk.append(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(k), k, size, value))
    if len(chunk) == 10000:
        out.write(b"".join(chunk)); chunk = []
out.write(b"".join(chunk))
PY

probe() {
    # probe PORT DIR: PING round trips one after the other; samples before
    # DIR/go exists are "before", those until DIR/stop exists are "during".
    python3 - "$1" "$2" <<'PY'
import os, socket, sys, time
port, d = int(sys.argv[1]), sys.argv[2]
s = socket.create_connection(("127.0.0.1", port))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
phases = {"before": [], "during": []}
phase, i = "before", 0
deadline = time.time() + 600
while time.time() < deadline:
    i += 1
    if i % 200 == 0:
        if phase == "before" and os.path.exists(d + "/go"):
            phase = "during"
        elif phase == "during" and os.path.exists(d + "/stop"):
            break
    t = time.perf_counter()
    s.sendall(b"PING\r\n")
    buf = b""
    while not buf.endswith(b"\r\n"):
        buf += s.recv(64)
    phases[phase].append((time.perf_counter() - t) * 1e6)
for name in ("before", "during"):
    r = sorted(phases[name]) or [0.0]
    q = lambda p: r[min(len(r) - 1, int(p * len(r)))]
    print(f"{len(r)} {q(0.5):.0f} {q(0.999):.0f} {r[-1]:.0f} {sum(1 for x in r if x > 1000)}")
PY
}

run() {
    local name=$1 port=$2
    shift 2
    taskset -c 0 "$@" > "$work/$name.log" 2>&1 &
    pids+=($!)
    wait_up "$port"
    taskset -c 1 redis-cli -p "$port" --pipe < "$work/load.resp" > /dev/null
    local rss
    rss=$(redis-cli -p "$port" info memory | tr -d '\r' | awk -F: '/^used_memory_rss:/{print $2}')
    # A rewrite the load started must end first: BGSAVE would be refused.
    while ! redis-cli -p "$port" info persistence | tr -d '\r' | grep -q '^rdb_bgsave_in_progress:0'; do
        sleep 0.1
    done
    rm -f "$work/go" "$work/stop"
    taskset -c 1 bash -c "$(declare -f probe); probe $port $work" > "$work/$name.probe" &
    local probe_pid=$!
    sleep 2
    local t0 t1
    t0=$(date +%s.%N)
    touch "$work/go"
    redis-cli -p "$port" bgsave > /dev/null
    while ! redis-cli -p "$port" info persistence | tr -d '\r' | grep -q '^rdb_bgsave_in_progress:0'; do
        sleep 0.02
    done
    t1=$(date +%s.%N)
    touch "$work/stop"
    wait "$probe_pid"
    local dur step
    dur=$(python3 -c "print(round($t1 - $t0, 2))")
    local pinfo
    pinfo=$(redis-cli -p "$port" info persistence | tr -d '\r')
    step=$(awk -F: '/^snapshot_longest_step_us:/{l=$2} /^snapshot_longest_step_cpu_us:/{c=$2} /^snapshot_steps:/{n=$2} /^snapshot_steps_over_1ms:/{o=$2} END{if (l != "") print l " µs wall, " c " µs CPU (" o " of " n " steps > 1 ms wall)"}' <<<"$pinfo")
    { read -r n0 p50a p999a maxa overa; read -r n1 p50b p999b maxb overb; } < "$work/$name.probe"
    echo "| $name | $((rss / 1048576)) MiB | ${dur} s | $p50a / $p999a / $maxa µs ($overa of $n0 > 1 ms) | $p50b / $p999b / $maxb µs ($overb of $n1 > 1 ms) | ${step:-n/a} |"
    redis-cli -p "$port" shutdown nosave > /dev/null 2>&1 || true
    sleep 1
}

echo "machine: $(nproc) vCPU, $(uname -r), $(lscpu | awk -F: '/Model name/{gsub(/^ +/,"",$2); print $2}'), data dir on $(df -T "$DIR" | awk 'NR==2{print $2}')"
echo "data: $KEYS keys, $VALUE-byte values; probe: PING round trips from CPU 1"
echo
echo "| server | RSS | snapshot time | probe before (p50 / p99.9 / max) | probe during snapshot | longest step (this snapshot) |"
echo "|---|---|---|---|---|---|"
kp=$(free_port)
run keel "$kp" "$KEEL_BIN" --port "$kp" --shards 1 --dir "$work/keel" --appendonly yes
rp=$(free_port)
mkdir -p "$work/redis"
run redis "$rp" "$REDIS_SERVER_BIN" --port "$rp" --dir "$work/redis" --save '' --appendonly no

#!/usr/bin/env bash
# EVALSHA on keel against redis-server (and Valkey), same load, side by side:
# server CPU per call (from /proc) and ops/s, then user-space instructions per
# call under callgrind.
#
#   bench/script.sh                   build keel (release) and run everything
#   KEEL_BIN=path bench/script.sh     use that binary, no build
#
# Workloads (redis-benchmark, unpipelined, 50 clients, 100,000 random ids):
#   evalsha-incr   EVALSHA of `INCR KEYS[1]; EXPIRE it the first time`
#   evalsha-sw     EVALSHA of @upstash/ratelimit 2.2.0's slidingWindowLimitScript
#                  (read from tests/node's installed package, byte for byte; SHA-1
#                  74740bb3..., the library's hash) with the library's shape:
#                  KEYS = "<prefix>:<id>:<window>", "<prefix>:<id>:<window-1>";
#                  ARGV = tokens, now ms, window ms, increment. Every previous-
#                  window key is loaded first (so each call reads a count).
#   incr           plain INCR on the same key space as evalsha-incr
# Every measured run starts from an empty keyspace (FLUSHALL, then the
# previous-window keys), so each server sees the same first-INCR share.
# The library's scripts begin with `#!lua flags=allow-key-locking`, which
# redis 7.0 (and Valkey 8.0) refuse: a server that refuses it gets the text
# without that first line (reported in the output).
#
# Knobs (env): TESTS="evalsha-incr evalsha-sw incr" SERVERS="redis keel1 keel"
# (keel = default shards, pinned to SCALE_CPUS with the load generator there
# too, as bench/run.sh's scaling section; add valkey for VALKEY_BIN) RUNS=3
# N=100000 CONC=50 IDS=100000 SERVER_CPU=0 LOADGEN_CPU=1 SCALE_CPUS=0,1
# BENCH_TIMEOUT=300 CALLGRIND=1 CG_N=20000 CG_SERVERS="redis keel1" KEEP=1
# (keep the work dir: logs, raw CSV, callgrind profiles).
# Prints markdown tables on stdout; logs on stderr.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
TESTS=${TESTS:-evalsha-incr evalsha-sw incr}
SERVERS=${SERVERS:-redis keel1 keel}
RUNS=${RUNS:-3}
N=${N:-100000}
CONC=${CONC:-50}
IDS=${IDS:-100000}
SERVER_CPU=${SERVER_CPU:-0}
LOADGEN_CPU=${LOADGEN_CPU:-1}
SCALE_CPUS=${SCALE_CPUS:-0,1}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-300}
VALKEY_BIN=${VALKEY_BIN:-$(command -v valkey-server || true)}
CALLGRIND=${CALLGRIND:-1}
CG_N=${CG_N:-20000}
CG_SERVERS=${CG_SERVERS:-redis keel1}

log() { echo "[script $(date +%T)] $*" >&2; }
die() { log "error: $*"; exit 1; }

for t in redis-server redis-benchmark redis-cli taskset python3 timeout sha1sum; do
    command -v $t >/dev/null || die "$t not found"
done
if [ -z "${KEEL_BIN:-}" ]; then
    log "building keel (release)"
    (cd "$root" && cargo build --release --bin keel) >&2
    KEEL_BIN=$root/target/release/keel
fi
[ -x "$KEEL_BIN" ] || die "KEEL_BIN=$KEEL_BIN is not executable"
KEEL_BIN=$(cd "$(dirname "$KEEL_BIN")" && pwd)/$(basename "$KEEL_BIN")

# --- the scripts ----------------------------------------------------------------
# The library's own script, read from the installed package (tests/node, see
# tests/install-deps.sh) rather than copied into this repository.
SW_SHA=74740bb3d7792848093cdef586b6b6037c455fd6 # SCRIPTS.singleRegion.slidingWindow.limit.hash
SW_LUA=$(mktemp /tmp/keel-sw.XXXXXX.lua)
node -e '
const t = require("fs").readFileSync(process.argv[1], "utf8")
process.stdout.write(t.match(/var slidingWindowLimitScript = `([^`]*)`/)[1])' \
    "$root/tests/node/node_modules/@upstash/ratelimit/dist/index.js" >"$SW_LUA" \
  || die "install tests/node's packages first (bash tests/install-deps.sh)"
[ "$(sha1sum <"$SW_LUA" | cut -d' ' -f1)" = "$SW_SHA" ] || die "@upstash/ratelimit's sliding-window script is not the 2.2.0 one"
INCR_LUA="local n = redis.call('INCR', KEYS[1]) if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end return n"
WINDOW_MS=60000
W=$(($(date +%s) * 1000 / WINDOW_MS))
NOW_MS=$((W * WINDOW_MS + WINDOW_MS / 2)) # one "now" for every call, mid-window: half the previous count weighs
PREFIX=@upstash/ratelimit
TOKENS=1000000 # never reached: every call takes the INCRBY path

work=$(mktemp -d /tmp/keel-script.XXXXXX)
pids=()
cleanup() {
    local rc=$? p
    rm -f "$SW_LUA"
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
    done
    if [ "${KEEP:-0}" = 1 ] || [ $rc != 0 ]; then log "work dir kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
source "$here/lib.sh"
printf '%s' "$INCR_LUA" >"$work/incr.lua"
tail -n +2 "$SW_LUA" >"$work/sw-noshebang.lua"
cat >"$work/load_prev.py" <<'PY'
import socket, sys
port, ids, prefix, prev = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3].encode(), sys.argv[4].encode()
s = socket.create_connection(("127.0.0.1", port), timeout=60)
buf = b""
for start in range(0, ids, 5000):
    n = min(5000, ids - start)
    cmds = []
    for i in range(start, start + n):
        k = b"%s:u%012d:%s" % (prefix, i, prev)
        cmds.append(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$2\r\n10\r\n" % (len(k), k))
    s.sendall(b"".join(cmds))
    while len(buf) < 5 * n:
        c = s.recv(1 << 20)
        if not c:
            sys.exit("server closed the connection")
        buf += c
    if buf[:5 * n] != b"+OK\r\n" * n:
        sys.exit("unexpected reply %r" % buf[:80])
    buf = buf[5 * n:]
PY

# --- servers (as bench/run.sh) ---------------------------------------------------
start() { # NAME CPUS PORT CMD...: start on loopback, wait (bounded) for PONG; PID in $spid
    local name=$1 cpus=$2 port=$3
    shift 3
    mkdir -p "$work/$name"
    (cd "$work/$name" && exec taskset -c "$cpus" "$@") >"$work/$name.log" 2>&1 &
    spid=$!
    pids+=("$spid")
    for _ in $(seq 150); do
        kill -0 "$spid" 2>/dev/null || { tail -20 "$work/$name.log" >&2; die "$name exited at start"; }
        [ "$(timeout 2 redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" = PONG ] && return 0
        sleep 0.2
    done
    tail -20 "$work/$name.log" >&2
    die "$name did not answer PING on port $port within 30 s"
}
stop() { # PID [SECONDS]
    local p=$1 wait=${2:-10} q rest=()
    for q in "${pids[@]}"; do [ "$q" = "$p" ] || rest+=("$q"); done
    pids=("${rest[@]}")
    kill -TERM "$p" 2>/dev/null || return 0
    for _ in $(seq $((wait * 10))); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
}
server_cmd() { # SERVER PORT: the command line in $cmd, its CPUs in $cpus
    case $1 in
    redis) cmd=(redis-server --port "$2" --bind 127.0.0.1 --save '' --appendonly no) cpus=$SERVER_CPU ;;
    valkey) cmd=("$VALKEY_BIN" --port "$2" --bind 127.0.0.1 --save '' --appendonly no) cpus=$SERVER_CPU ;;
    keel1) cmd=("$KEEL_BIN" --port "$2" --bind 127.0.0.1 --shards 1 --appendonly no --http-port 0) cpus=$SERVER_CPU ;;
    keel) cmd=("$KEEL_BIN" --port "$2" --bind 127.0.0.1 --appendonly no --http-port 0) cpus=$SCALE_CPUS ;;
    *) die "unknown server $1" ;;
    esac
}
loadgen_cpus() { [ "$1" = keel ] && echo "$SCALE_CPUS" || echo "$LOADGEN_CPU"; }

cli() { timeout 30 redis-cli -h 127.0.0.1 -p "$port" "$@"; }
# load_scripts SERVER: SCRIPT LOAD both (bytes as they are, through -x); SHAs in
# $incr_sha $sw_sha. The sliding-window script goes in whole, or without its
# shebang line where the server refuses it.
load_scripts() {
    incr_sha=$(cli -x SCRIPT LOAD <"$work/incr.lua")
    sw_sha=$(cli -x SCRIPT LOAD <"$SW_LUA" 2>&1)
    if [ "$sw_sha" = "$SW_SHA" ]; then
        echo "$1 whole" >>"$work/shebang"
    else
        log "$1 refused the shebang line ($sw_sha): loading the script without it"
        sw_sha=$(cli -x SCRIPT LOAD <"$work/sw-noshebang.lua")
        echo "$1 stripped" >>"$work/shebang"
    fi
    [[ $incr_sha =~ ^[0-9a-f]{40}$ && $sw_sha =~ ^[0-9a-f]{40}$ ]] || die "SCRIPT LOAD on $1: '$incr_sha' '$sw_sha'"
}
# reset: empty keyspace, then every previous-window key of the sliding window
# (ids as redis-benchmark writes __rand_int__: 12 digits), count 10.
reset_keys() {
    [ "$(cli FLUSHALL)" = OK ] || die "FLUSHALL failed"
    fg timeout 120 python3 "$work/load_prev.py" "$port" "$IDS" "$PREFIX" "$((W - 1))" ||
        die "loading previous-window keys failed"
}
# args_of TEST: the redis-benchmark command in $cargs
args_of() {
    case $1 in
    evalsha-incr) cargs=(EVALSHA "$incr_sha" 1 "rl:__rand_int__" 60) ;;
    evalsha-sw) cargs=(EVALSHA "$sw_sha" 2 "$PREFIX:u__rand_int__:$W" "$PREFIX:u__rand_int__:$((W - 1))"
        "$TOKENS" "$NOW_MS" "$WINDOW_MS" 1) ;;
    incr) cargs=(INCR "rl:__rand_int__") ;;
    *) die "unknown test $1" ;;
    esac
}
# check TEST: one call by hand, its reply logged (a script error fails here, not in the load)
check() {
    args_of "$1"
    local a=("${cargs[@]//__rand_int__/000000000000}") r
    r=$(cli "${a[@]}" 2>&1 | tr '\n' ' ')
    case $r in *ERR* | *NOSCRIPT* | *rror*) die "$1 on $port: $r" ;; esac
    log "  $1 -> $r"
}

echo "now_ms $NOW_MS window_ms $WINDOW_MS" >"$work/raw"
# --- 1. ops/s and server CPU per call ------------------------------------------
for s in $SERVERS; do
    [ "$s" != valkey ] || [ -n "$VALKEY_BIN" ] || { log "no valkey-server: skipped"; continue; }
    port=$(free_port)
    server_cmd "$s" "$port"
    start "$s" "$cpus" "$port" "${cmd[@]}"
    pid=$spid
    c=$(printf '%q ' "${cmd[@]}")
    c=${c//--port $port /--port \$PORT }
    echo "cmd $s taskset -c $cpus ${c% }" >>"$work/raw"
    load_scripts "$s"
    log "$s pid $pid port $port; incr $incr_sha sw $sw_sha"
    lcpus=$(loadgen_cpus "$s")
    for t in $TESTS; do
        reset_keys
        check "$t"
        for run in $(seq "$RUNS"); do
            reset_keys
            args_of "$t"
            out=$work/rb-$s-$t-$run.csv
            c0=$(cpu_ticks "$pid")
            fg timeout "$BENCH_TIMEOUT" taskset -c "$lcpus" redis-benchmark -h 127.0.0.1 -p "$port" \
                -n "$N" -c "$CONC" -r "$IDS" --csv "${cargs[@]}" >"$out" ||
                die "redis-benchmark $t against $s failed or timed out"
            c1=$(cpu_ticks "$pid")
            kill -0 "$pid" 2>/dev/null || die "$s died during $t"
            grep -q ERR "$out" && die "$t against $s: $(head -3 "$out")"
            rps=$(tail -1 "$out" | cut -d, -f2 | tr -d '"')
            echo "rb $s $t $run $N $((c1 - c0)) $rps" >>"$work/raw"
            log "$s $t run $run: $rps calls/s, $((c1 - c0)) ticks"
        done
        echo "bench $s taskset -c $lcpus redis-benchmark -h 127.0.0.1 -p \$PORT -n $N -c $CONC -r $IDS ${cargs[*]}" >>"$work/raw"
    done
    # How many scripts crossed shards (keel reports it in INFO, if it does).
    cli INFO >"$work/info-$s.txt" 2>/dev/null || true
    stop "$pid"
done

# --- 2. user-space instructions per call (callgrind) ----------------------------
# Every run: start under valgrind, SCRIPT LOAD both, load the previous-window
# keys, then (but for "base") CG_N calls with 10 clients; the base run's Ir
# is subtracted. As bench/run.sh's section 5.
if [ "$CALLGRIND" = 1 ] && command -v valgrind >/dev/null; then
    for s in $CG_SERVERS; do
        for t in base $TESTS; do
            port=$(free_port)
            server_cmd "$s" "$port"
            out=$work/cg-$s-$t.out
            start "cg-$s-$t" "$SERVER_CPU" "$port" valgrind --tool=callgrind --fair-sched=yes \
                --callgrind-out-file="$out" "${cmd[@]}"
            cgpid=$spid
            load_scripts "$s" 2>/dev/null
            reset_keys
            if [ "$t" != base ]; then
                args_of "$t"
                fg timeout "$BENCH_TIMEOUT" taskset -c "$LOADGEN_CPU" redis-benchmark -h 127.0.0.1 -p "$port" \
                    -n "$CG_N" -c 10 -r "$IDS" -q "${cargs[@]}" >/dev/null ||
                    die "redis-benchmark $t under callgrind against $s failed"
            fi
            stop "$cgpid" 120
            ir=$(awk '/^(summary|totals):/ {print $2; exit}' "$out"* 2>/dev/null | head -1)
            echo "cg $s $t $([ "$t" = base ] && echo 0 || echo "$CG_N") ${ir:-0}" >>"$work/raw"
            log "callgrind $s $t: ${ir:-?} Ir"
        done
    done
fi

# --- report ------------------------------------------------------------------------
python3 - "$work/raw" "$work/shebang" "$(getconf CLK_TCK)" <<'PY'
import statistics, sys
raw, shebang, hz = sys.argv[1], sys.argv[2], int(sys.argv[3])
rb, cg, cmds = {}, {}, []
for line in open(raw):
    f = line.split()
    if f[0] == "rb":
        s, t, n, ticks, rps = f[1], f[2], int(f[4]), int(f[5]), float(f[6])
        rb.setdefault((s, t), []).append((ticks / hz * 1e6 / n, rps))
    elif f[0] == "cg":
        cg[(f[1], f[2])] = (int(f[3]), int(f[4]))
    elif f[0] in ("cmd", "bench"):
        cmds.append(line.split(None, 2)[2].rstrip())
names = {"evalsha-incr": "EVALSHA INCR+EXPIRE", "evalsha-sw": "EVALSHA sliding window", "incr": "INCR"}
label = {"redis": "redis 7.0.15", "valkey": "valkey 8.0.1", "keel1": "keel --shards 1", "keel": "keel (default shards)"}
print("```")
print("\n".join(dict.fromkeys(cmds)))
print("```\n")
print("shebang line: " + ", ".join(l.strip() for l in dict.fromkeys(open(shebang))) + "\n")
tests = list(dict.fromkeys(t for _, t in rb))
servers = list(dict.fromkeys(s for s, _ in rb))
print("| workload | server | CPU µs/call | calls/s | instructions/call (callgrind) |")
print("|---|---|---:|---:|---:|")
def ir(s, t):
    if (s, t) not in cg or (s, "base") not in cg:
        return None
    n, total = cg[(s, t)]
    return (total - cg[(s, "base")][1]) / n
for t in tests:
    med = {}
    for s in servers:
        v = rb.get((s, t))
        if not v:
            continue
        cpu, rps = statistics.median(c for c, _ in v), statistics.median(r for _, r in v)
        med[s] = (cpu, rps, ir(s, t))
        i = med[s][2]
        print(f"| {names.get(t, t)} | {label.get(s, s)} | {cpu:.2f} | {rps:,.0f} | {'' if i is None else f'{i:,.0f}'} |")
    for s in servers:
        if s.startswith("keel") and s in med and "redis" in med:
            a, b = med[s], med["redis"]
            r = "" if a[2] is None or b[2] is None else f"**{a[2] / b[2]:.2f}**"
            print(f"| {names.get(t, t)} | **{label[s]} / redis** | **{a[0] / b[0]:.2f}** | {a[1] / b[1]:.2f} | {r} |")
print("\nPer run (CPU µs/call / calls/s):\n")
for (s, t), v in rb.items():
    print(f"- {names.get(t, t)}, {label.get(s, s)}: " + "; ".join(f"{c:.2f} / {r:,.0f}" for c, r in v))
PY

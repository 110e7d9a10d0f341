#!/usr/bin/env bash
# keel against redis-server on this machine, same load, side by side.
#
#   bench/run.sh                      build keel (release) and run everything
#   KEEL_BIN=path bench/run.sh        use that binary, no build
#   KEEL_BIN=bench/redis-as-keel.sh   self-test: redis-server in keel's place
#
# Knobs (env): TESTS="set get" (also: hset hget sadd zadd zrange lpush lpop;
# hget and zrange read what hset and zadd wrote, so list those first) RUNS=3 N=200000 (requests per unpipelined test) N_PIPE=2000000
# (per -P 16 test) KEYS=1000000 (RSS test) SERVER_CPU=0 LOADGEN_CPU=1
# SCALE_CPUS=0,1 SCALE_SHARDS=2 SCALING=1 MEMTIER=1 MEMTIER_ARGS= (extra
# memtier_benchmark flags; empty = its defaults) BENCH_TIMEOUT=300 (s, per
# load-generator call) RESULTS=bench/RESULTS.md LABEL=latest (the section of
# RESULTS that is replaced; another label appends a new section) KEEP=1 (keep
# the work dir with logs and raw CSV). VALKEY_BIN=path (default: valkey-server
# on PATH; built by hand, never committed; none = keel and redis only)
# CALLGRIND=1 (user-space instructions per request under valgrind, CG_N
# requests per test; 0 skips).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
TESTS=${TESTS:-set get}
RUNS=${RUNS:-3}
N=${N:-200000}
N_PIPE=${N_PIPE:-2000000}
KEYS=${KEYS:-1000000}
SERVER_CPU=${SERVER_CPU:-0}
LOADGEN_CPU=${LOADGEN_CPU:-1}
SCALE_CPUS=${SCALE_CPUS:-0,1}
SCALE_SHARDS=${SCALE_SHARDS:-2}
SCALING=${SCALING:-1}
MEMTIER=${MEMTIER:-1}
MEMTIER_ARGS=${MEMTIER_ARGS:-}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-300}
VALKEY_BIN=${VALKEY_BIN:-$(command -v valkey-server || true)}
CALLGRIND=${CALLGRIND:-1}
CG_N=${CG_N:-20000}
RESULTS=${RESULTS:-$here/RESULTS.md}
LABEL=${LABEL:-latest}

log() { echo "[bench $(date +%T)] $*" >&2; }
die() { log "error: $*"; exit 1; }

# --- tools -------------------------------------------------------------------
if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null; then
    [ "$(id -u)" = 0 ] || die "redis-server/redis-benchmark missing; install redis-server redis-tools"
    log "installing redis-server redis-tools"
    DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server redis-tools >/dev/null ||
        { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive \
            apt-get install -y redis-server redis-tools >/dev/null; }
fi
for t in redis-server redis-benchmark redis-cli taskset python3 timeout; do
    command -v $t >/dev/null || die "$t not found"
done
if [ -z "${KEEL_BIN:-}" ]; then
    log "building keel (release)"
    (cd "$root" && cargo build --release --bin keel) >&2 # before any trap: ^C stops cargo directly
    KEEL_BIN=$root/target/release/keel
fi
[ -x "$KEEL_BIN" ] || die "KEEL_BIN=$KEEL_BIN is not executable"
KEEL_BIN=$(cd "$(dirname "$KEEL_BIN")" && pwd)/$(basename "$KEEL_BIN")
taskset -c "$SERVER_CPU,$LOADGEN_CPU,$SCALE_CPUS" true 2>/dev/null ||
    die "CPUs $SERVER_CPU,$LOADGEN_CPU,$SCALE_CPUS not all usable here (set SERVER_CPU/LOADGEN_CPU/SCALE_CPUS)"

# --- servers -----------------------------------------------------------------
work=$(mktemp -d /tmp/keel-bench.XXXXXX)
manifest=$work/manifest.tsv
: >"$manifest"
pids=()
cleanup() {
    local rc=$? p
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
    done
    # Keep logs and raw output when asked or when something failed.
    if [ "${KEEP:-0}" = 1 ] || [ $rc != 0 ]; then log "work dir kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
source "$here/lib.sh"

# start NAME CPUS PORT CMD... : start a server on loopback, wait (bounded) for
# PONG, leave its PID in $spid. taskset execs the server, so $! is its PID.
start() {
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

# stop PID [SECONDS]: SIGTERM, then SIGKILL after SECONDS (10 by default;
# a server under valgrind needs longer to write its profile).
stop() {
    local p=$1 wait=${2:-10} q rest=()
    for q in "${pids[@]}"; do [ "$q" = "$p" ] || rest+=("$q"); done
    pids=("${rest[@]}")
    kill -TERM "$p" 2>/dev/null || return 0
    for _ in $(seq $((wait * 10))); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
}

redis_cmd() { echo redis-server --port "$1" --bind 127.0.0.1 --save "''" --appendonly no; }
start_redis() { # NAME CPUS PORT
    start "$1" "$2" "$3" redis-server --port "$3" --bind 127.0.0.1 --save '' --appendonly no --dir "$work/$1"
}
start_valkey() { # NAME CPUS PORT
    start "$1" "$2" "$3" "$VALKEY_BIN" --port "$3" --bind 127.0.0.1 --save '' --appendonly no --dir "$work/$1"
}
start_keel() { # NAME CPUS PORT SHARDS
    start "$1" "$2" "$3" "$KEEL_BIN" --port "$3" --bind 127.0.0.1 --shards "$4" --appendonly no --dir "$work/$1"
}

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

commands=$work/commands.txt
note_cmd() { grep -qxF -- "$*" "$commands" 2>/dev/null || echo "$*" >>"$commands"; }

# bench SERVER CONFIG PID PORT LOADGEN_CPUS RUN TEST PIPELINE REQUESTS
bench() {
    local server=$1 config=$2 pid=$3 port=$4 lcpus=$5 run=$6 test=$7 pipe=$8 n=$9
    local out=$work/rb-$server-$config-$run-$test-P$pipe.csv c0 c1
    local args=(-c 50 -r 100000 -d 32 -n "$n" -P "$pipe" --csv)
    # Reads of the collection types are not built-in tests: name the command.
    case $test in
    hget) args+=(HGET myhash "element:__rand_int__") ;;
    zrange) args+=(ZRANGE myzset 0 9 WITHSCORES) ;;
    *) args+=(-t "$test") ;;
    esac
    note_cmd "taskset -c $lcpus redis-benchmark -h 127.0.0.1 -p \$PORT ${args[*]}"
    c0=$(cpu_ticks "$pid")
    fg timeout "$BENCH_TIMEOUT" taskset -c "$lcpus" redis-benchmark -h 127.0.0.1 -p "$port" "${args[@]}" >"$out" ||
        die "redis-benchmark against $server ($config) failed or timed out"
    kill -0 "$pid" 2>/dev/null || die "$server ($config) died during the run"
    c1=$(cpu_ticks "$pid")
    printf 'rb\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$server" "$config" "$run" "$test" "$pipe" "$n" \
        $((c1 - c0)) "$out" >>"$manifest"
    log "$server $config run $run $test -P $pipe: $(tail -1 "$out")"
}

# --- 1. throughput, latency, CPU per op: both pinned to SERVER_CPU -----------
rport=$(free_port)
kport=$(free_port)
[ "$rport" != "$kport" ] || kport=$(free_port)
note_cmd "taskset -c $SERVER_CPU $(redis_cmd \$PORT) --dir \$DIR"
note_cmd "taskset -c $SERVER_CPU $KEEL_BIN --port \$PORT --bind 127.0.0.1 --shards 1 --appendonly no --dir \$DIR"
start_redis redis "$SERVER_CPU" "$rport"
rpid=$spid
start_keel keel "$SERVER_CPU" "$kport" 1
kpid=$spid
log "redis-server pid $rpid port $rport; keel pid $kpid port $kport"
servers="redis keel"
vpid='' vport=''
if [ -n "$VALKEY_BIN" ]; then
    vport=$(free_port)
    note_cmd "taskset -c $SERVER_CPU $VALKEY_BIN --port \$PORT --bind 127.0.0.1 --save '' --appendonly no --dir \$DIR"
    start_valkey valkey "$SERVER_CPU" "$vport"
    vpid=$spid
    servers="redis valkey keel"
    log "valkey-server pid $vpid port $vport"
fi
# server_of NAME: sets pid and port of a running server of section 1.
server_of() {
    case $1 in
    redis) pid=$rpid port=$rport ;;
    valkey) pid=$vpid port=$vport ;;
    *) pid=$kpid port=$kport ;;
    esac
}

for run in $(seq "$RUNS"); do
    # Alternate which server goes first, run by run, so drift (heat, caches,
    # neighbours) does not always favour the same one.
    # shellcheck disable=SC2086
    set -- $servers
    order=$*
    for _ in $(seq $(((run - 1) % $#))); do order="$(echo "$order" | cut -d' ' -f2-) $(echo "$order" | cut -d' ' -f1)"; done
    for pipe in 1 16; do
        n=$N
        [ "$pipe" = 1 ] || n=$N_PIPE
        for test in $TESTS; do
            for s in $order; do
                server_of "$s"
                bench "$s" pinned "$pid" "$port" "$LOADGEN_CPU" "$run" "$test" "$pipe" "$n"
            done
        done
    done
done

# --- 2. memtier_benchmark's default mix (only if installed; not in Debian) ---
if [ "$MEMTIER" = 1 ] && command -v memtier_benchmark >/dev/null; then
    note_cmd "taskset -c $LOADGEN_CPU memtier_benchmark -s 127.0.0.1 -p \$PORT --hide-histogram --json-out-file \$FILE $MEMTIER_ARGS"
    for s in $servers; do
        server_of "$s"
        out=$work/mt-$s.json
        c0=$(cpu_ticks "$pid")
        fg timeout "$BENCH_TIMEOUT" taskset -c "$LOADGEN_CPU" memtier_benchmark -s 127.0.0.1 -p "$port" \
            --hide-histogram --json-out-file "$out" $MEMTIER_ARGS >"$work/mt-$s.out" 2>&1 ||
            { tail -5 "$work/mt-$s.out" >&2; die "memtier_benchmark against $s failed or timed out"; }
        c1=$(cpu_ticks "$pid")
        printf 'mt\t%s\tpinned\t1\tmix\t1\t0\t%s\t%s\n' "$s" $((c1 - c0)) "$out" >>"$manifest"
        log "memtier $s done"
    done
else
    log "memtier_benchmark not on PATH (or MEMTIER=0): skipped"
fi
stop "$rpid"
stop "$kpid"
[ -z "$vpid" ] || stop "$vpid"

# --- 3. memory: RSS of a fresh server before and after KEYS keys -------------
[ "$KEYS" = 0 ] || note_cmd "python3 bench/load_keys.py \$PORT $KEYS 32   # SET key:%012d (16 B) -> 32 B value, pipelined"
for s in $([ "$KEYS" = 0 ] || echo $servers); do
    port=$(free_port)
    case $s in
    redis) start_redis redis-rss "$SERVER_CPU" "$port" ;;
    valkey) start_valkey valkey-rss "$SERVER_CPU" "$port" ;;
    *) start_keel keel-rss "$SERVER_CPU" "$port" 1 ;;
    esac
    before=$(rss_kib "$spid")
    fg timeout "$BENCH_TIMEOUT" python3 "$here/load_keys.py" "$port" "$KEYS" 32 || die "loading $KEYS keys into $s failed"
    sleep 1 # let the server finish any lazy work before sampling
    after=$(rss_kib "$spid")
    printf 'rss\t%s\tpinned\t1\tload\t1\t%s\t%s\t%s\n' "$s" "$KEYS" "$before" "$after" >>"$manifest"
    log "$s RSS ${before} KiB -> ${after} KiB after $KEYS keys"
    stop "$spid"
done

# --- 4. scaling: keel with more shards, not pinned to one core ---------------
if [ "$SCALING" = 1 ]; then
    port=$(free_port)
    note_cmd "taskset -c $SCALE_CPUS $KEEL_BIN --port \$PORT --bind 127.0.0.1 --shards $SCALE_SHARDS --appendonly no --dir \$DIR"
    start_keel keel-scale "$SCALE_CPUS" "$port" "$SCALE_SHARDS"
    spid2=$spid
    for run in $(seq "$RUNS"); do
        for pipe in 1 16; do
            n=$N
            [ "$pipe" = 1 ] || n=$N_PIPE
            for test in $TESTS; do
                bench keel "shards$SCALE_SHARDS" "$spid2" "$port" "$SCALE_CPUS" "$run" "$test" "$pipe" "$n"
            done
        done
    done
    stop "$spid2"
fi

# --- 5. user-space instructions per request (callgrind; repeatable) -----------
if [ "$CALLGRIND" = 1 ] && command -v valgrind >/dev/null; then
    note_cmd "valgrind --tool=callgrind --callgrind-out-file=\$OUT <server> ...; redis-benchmark -c 10 -n $CG_N -P {1,16} -t {set,get} -d 32 -r 100000; (total Ir - Ir of a start, PING, stop run) / requests"
    for s in $servers; do
        for test in base $TESTS; do
            for pipe in 1 16; do
                [ "$test" != base ] || [ "$pipe" = 1 ] || continue
                port=$(free_port)
                out=$work/cg-$s-$test-$pipe.out
                case $s in
                redis) cmd=(redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no) ;;
                valkey) cmd=("$VALKEY_BIN" --port "$port" --bind 127.0.0.1 --save '' --appendonly no) ;;
                *) cmd=("$KEEL_BIN" --port "$port" --bind 127.0.0.1 --shards 1 --appendonly no --http-port 0) ;;
                esac
                start "cg-$s-$test-$pipe" "$SERVER_CPU" "$port" valgrind --tool=callgrind --fair-sched=yes \
                    --callgrind-out-file="$out" "${cmd[@]}"
                cgpid=$spid
                # base: start, one PING, stop — what every run costs besides
                # its requests (subtracted in the report).
                [ "$test" = base ] || fg timeout "$BENCH_TIMEOUT" taskset -c "$LOADGEN_CPU" redis-benchmark -h 127.0.0.1 -p "$port" \
                    -c 10 -n "$CG_N" -P "$pipe" -t "$test" -d 32 -r 100000 -q >/dev/null ||
                    die "redis-benchmark under callgrind against $s failed"
                stop "$cgpid" 120
                ir=$(awk '/^(summary|totals):/ {print $2; exit}' "$out"* 2>/dev/null | head -1)
                printf 'cg\t%s\tpinned\t1\t%s\t%s\t%s\t%s\n' "$s" "$test" "$pipe" "$([ "$test" = base ] && echo 0 || echo "$CG_N")" "${ir:-0}" >>"$manifest"
                log "callgrind $s $test -P $pipe: ${ir:-?} Ir"
            done
        done
    done
fi

# --- report --------------------------------------------------------------------
VALKEY_BIN="$VALKEY_BIN" python3 "$here/report.py" --manifest "$manifest" --commands "$commands" --results "$RESULTS" \
    --label "$LABEL" --keel-bin "$KEEL_BIN" --root "$root" --runs "$RUNS" \
    --server-cpu "$SERVER_CPU" --loadgen-cpu "$LOADGEN_CPU" --scale-cpus "$SCALE_CPUS"
log "report written to $RESULTS (section '$LABEL')"

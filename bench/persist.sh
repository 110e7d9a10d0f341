#!/usr/bin/env bash
# Persistence: keel against redis-server on this machine, side by side.
#
#   bench/persist.sh                              target/release/keel (not built here)
#   KEEL_BIN=path bench/persist.sh                that binary
#   KEEL_BIN=bench/redis-as-keel.sh bench/persist.sh   self-test: redis-server in keel's place
#
# 1. SET with the append-only log on: redis-benchmark -t set -c 50 -d 32
#    -r 100000, appendfsync everysec (N_EVERYSEC requests) then always
#    (N_ALWAYS); ops/s, p50/p99 and the server's CPU µs per op (utime+stime of
#    /proc/PID/stat, all threads). Each run starts each server in a fresh data
#    dir; RUNS runs, servers alternating which goes first; medians.
# 2. Restart: KEYS keys (key:%d, 32-byte random values) bulk-loaded with
#    redis-cli --pipe, then BGREWRITEAOF (waited for), then TAIL_KEYS more keys
#    so the persisted state is a snapshot plus a log tail; SIGKILL (neither
#    server gets to write a final snapshot); that dir is kept as a pristine
#    copy. Each restart restores the copy, execs the server on it and times
#    exec -> PING answers PONG and DBSIZE answers KEYS+TAIL_KEYS (redis answers
#    -LOADING meanwhile; keel may refuse connections until loaded: both are
#    retried). RESTART_RUNS restarts per server, alternating; median. RSS at
#    ready and bytes in the dir are recorded too.
# 3. Prints a Markdown fragment for bench/RESULTS.md on stdout (logs go to
#    stderr); it does not edit RESULTS.md.
#
# Knobs (env): RUNS=3 N_EVERYSEC=200000 N_ALWAYS=50000 KEYS=10000000
# TAIL_KEYS=100000 RESTART_RUNS=3 RESTART_SHARDS=1 RESTART_CPUS=0 (keel's
# shards and CPUs in part 2) PARTS="fsync restart" DIR=/var/tmp (parent
# of the data dirs; must be a real disk) KEEL_BIN=target/release/keel
# REDIS_SERVER_BIN=redis-server SERVER_CPU=0 LOADGEN_CPU=1 BENCH_TIMEOUT=600
# (s, per load-generator call) REWRITE_TIMEOUT=900 RESTART_TIMEOUT=900
# CHECK_AOF=1 (refuse a server whose INFO persistence lacks aof_enabled:1)
# LABEL=persist KEEP=1 (keep the work dir: logs, raw CSV, data).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
RUNS=${RUNS:-3}
N_EVERYSEC=${N_EVERYSEC:-200000}
N_ALWAYS=${N_ALWAYS:-50000}
KEYS=${KEYS:-10000000}
TAIL_KEYS=${TAIL_KEYS:-100000}
RESTART_RUNS=${RESTART_RUNS:-3}
PARTS=${PARTS:-fsync restart}
# The data dirs must sit on a real disk: on tmpfs (or ramfs) fsync costs
# nothing, so the appendfsync figures would measure no durability at all and
# the restart would read from memory. /tmp is tmpfs on many systems; /var/tmp
# rarely is. Checked below.
DIR=${DIR:-/var/tmp}
KEEL_BIN=${KEEL_BIN:-$root/target/release/keel}
REDIS_SERVER_BIN=${REDIS_SERVER_BIN:-redis-server}
SERVER_CPU=${SERVER_CPU:-0}
KEEL_SHARDS=1
KEEL_CPUS=$SERVER_CPU
RESTART_SHARDS=${RESTART_SHARDS:-1}
RESTART_CPUS=${RESTART_CPUS:-$SERVER_CPU}
LOADGEN_CPU=${LOADGEN_CPU:-1}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-600}
REWRITE_TIMEOUT=${REWRITE_TIMEOUT:-900}
RESTART_TIMEOUT=${RESTART_TIMEOUT:-900}
CHECK_AOF=${CHECK_AOF:-1}
LABEL=${LABEL:-persist}
helper=$here/persist_report.py

log() { echo "[persist $(date +%T)] $*" >&2; }
die() { log "error: $*"; exit 1; }

# --- tools -------------------------------------------------------------------
if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null; then
    [ "$(id -u)" = 0 ] || die "redis-server/redis-benchmark missing; install redis-server redis-tools"
    log "installing redis-server redis-tools"
    DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server redis-tools >/dev/null ||
        { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive \
            apt-get install -y redis-server redis-tools >/dev/null; }
fi
for t in "$REDIS_SERVER_BIN" redis-benchmark redis-cli taskset python3 timeout du cp; do
    command -v "$t" >/dev/null || die "$t not found"
done
REDIS_SERVER_BIN=$(command -v "$REDIS_SERVER_BIN")
[ -x "$KEEL_BIN" ] || die "KEEL_BIN=$KEEL_BIN is not executable (cargo build --release --bin keel?)"
KEEL_BIN=$(cd "$(dirname "$KEEL_BIN")" && pwd)/$(basename "$KEEL_BIN")
taskset -c "$SERVER_CPU,$LOADGEN_CPU" true 2>/dev/null ||
    die "CPUs $SERVER_CPU,$LOADGEN_CPU not both usable here (set SERVER_CPU/LOADGEN_CPU)"
[ -d "$DIR" ] || die "DIR=$DIR is not a directory"
fstype=$(findmnt -no FSTYPE -T "$DIR" 2>/dev/null || stat -f -c %T "$DIR")
case $fstype in
tmpfs | ramfs) die "DIR=$DIR is on $fstype: fsync there is free, so the figures would mean nothing; use a disk-backed DIR" ;;
esac
disk="\`$DIR\` ($fstype on $(df --output=source "$DIR" | tail -1))"

# --- work dir, cleanup -------------------------------------------------------
work=$(mktemp -d "$DIR/keel-persist.XXXXXX")
data=$work/data # server dirs (large); removed even when logs are kept
mkdir -p "$data"
manifest=$work/manifest.tsv
commands=$work/commands.txt
: >"$manifest"
: >"$commands"
pids=()
cleanup() {
    local rc=$? p kids
    for p in "${pids[@]}"; do
        # and a server's own children (a redis log-rewrite fork), by parent PID
        kids=$(pgrep -P "$p" || true)
        kill -KILL "$p" $kids 2>/dev/null || true
    done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    if [ "${KEEP:-0}" = 1 ]; then
        log "work dir kept: $work"
    elif [ $rc != 0 ]; then
        rm -rf "$data"
        log "work dir kept (logs, raw output; data removed): $work"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
source "$here/lib.sh"
note_cmd() { grep -qxF -- "$*" "$commands" || echo "$*" >>"$commands"; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
dir_bytes() { du -sb "$1" | cut -f1; }
cli() { timeout 10 redis-cli -h 127.0.0.1 -p "$port" "$@"; }
info_field() { cli info persistence | tr -d '\r' | awk -F: -v k="$1" '$1 == k {print $2}'; }

# server_cmd SERVER PORT DIR FSYNC: the command line, in the array cmd
server_cmd() {
    if [ "$1" = redis ]; then
        cmd=("$REDIS_SERVER_BIN" --port "$2" --bind 127.0.0.1 --dir "$3" --appendonly yes --appendfsync "$4" --save '')
    else
        cmd=("$KEEL_BIN" --port "$2" --bind 127.0.0.1 --dir "$3" --appendonly yes --appendfsync "$4" --shards "$KEEL_SHARDS")
    fi
}
note_server() { # FSYNC
    note_cmd "taskset -c $SERVER_CPU redis-server --port \$PORT --bind 127.0.0.1 --dir \$DIR --appendonly yes --appendfsync $1 --save ''"
    note_cmd "taskset -c $SERVER_CPU $KEEL_BIN --port \$PORT --bind 127.0.0.1 --dir \$DIR --appendonly yes --appendfsync $1 --shards 1"
}

# launch SERVER DIR FSYNC [PORT]: exec the server pinned to SERVER_CPU on PORT
# or a fresh port (taskset execs it, so $! is the server's PID); sets spid,
# port, t0 (the Unix time just before the exec).
launch() {
    port=${4:-$(free_port)}
    server_cmd "$1" "$port" "$2" "$3"
    t0=$EPOCHREALTIME
    local cpus=$SERVER_CPU
    [ "$1" = keel ] && cpus=$KEEL_CPUS
    taskset -c "$cpus" "${cmd[@]}" >>"$work/$1.log" 2>&1 &
    spid=$!
    pids+=("$spid")
}
# start SERVER DIR FSYNC: launch, then wait (bounded) for PONG.
start() {
    launch "$@"
    for _ in $(seq 150); do
        kill -0 "$spid" 2>/dev/null || { tail -20 "$work/$1.log" >&2; die "$1 exited at start"; }
        [ "$(cli ping 2>/dev/null)" = PONG ] && break
        sleep 0.2
    done
    [ "$(cli ping 2>/dev/null)" = PONG ] || { tail -20 "$work/$1.log" >&2; die "$1 did not answer PING within 30 s"; }
    if [ "$CHECK_AOF" = 1 ] && [ "$(info_field aof_enabled)" != 1 ]; then
        tail -5 "$work/$1.log" >&2
        die "$1 ($([ "$1" = keel ] && echo "$KEEL_BIN" || echo "$REDIS_SERVER_BIN")) does not report aof_enabled:1 in INFO persistence: append-only log not implemented? (CHECK_AOF=0 to go on anyway)"
    fi
}
forget() {
    local q rest=()
    for q in "${pids[@]}"; do [ "$q" = "$1" ] || rest+=("$q"); done
    pids=("${rest[@]}")
}
stop() { # PID: SIGTERM, bounded wait, then SIGKILL
    forget "$1"
    kill -TERM "$1" 2>/dev/null || return 0
    for _ in $(seq 300); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}
crash() { # PID: SIGKILL, no chance to write anything more
    forget "$1"
    kill -KILL "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}
# Wait until no log rewrite is running or scheduled (bounded).
rewrite_idle() {
    local end=$((SECONDS + REWRITE_TIMEOUT))
    [ -n "$(info_field aof_rewrite_in_progress)" ] || die "no aof_rewrite_in_progress field in INFO persistence"
    while [ "$(info_field aof_rewrite_in_progress)" != 0 ] || [ "$(info_field aof_rewrite_scheduled)" = 1 ]; do
        [ $SECONDS -lt $end ] || die "log rewrite still running after $REWRITE_TIMEOUT s"
        sleep 0.2
    done
}
# pipe_load SERVER FILE COUNT: redis-cli --pipe FILE, check every reply
pipe_load() {
    local out
    out=$work/pipe-$1-$(basename "$2").out
    fg_in "$2" timeout "$BENCH_TIMEOUT" taskset -c "$LOADGEN_CPU" redis-cli -h 127.0.0.1 -p "$port" --pipe >"$out" 2>&1 ||
        { tail -5 "$out" >&2; die "redis-cli --pipe into $1 failed or timed out"; }
    grep -q "errors: 0, replies: $3\$" "$out" || { tail -5 "$out" >&2; die "redis-cli --pipe into $1: not $3 clean replies"; }
}

log "keel: $KEEL_BIN; redis: $REDIS_SERVER_BIN ($("$REDIS_SERVER_BIN" --version | awk '{print $3}')); data under $work ($fstype)"

# Fail early, not after minutes of loading, if keel has no append-only log.
mkdir -p "$data/preflight"
start keel "$data/preflight" everysec
stop "$spid"
rm -rf "$data/preflight"

# --- 1. SET with the append-only log, everysec then always ---------------------
if [[ " $PARTS " == *" fsync "* ]]; then
    for mode in everysec always; do
        n=$N_EVERYSEC
        [ $mode = everysec ] || n=$N_ALWAYS
        note_server $mode
        args=(-c 50 -n "$n" -d 32 -r 100000 -t set --csv)
        note_cmd "taskset -c $LOADGEN_CPU redis-benchmark -h 127.0.0.1 -p \$PORT ${args[*]}"
        for run in $(seq "$RUNS"); do
            # Alternate which server goes first, run by run, so drift (heat,
            # disk write-back, neighbours) does not always favour the same one.
            if [ $((run % 2)) = 1 ]; then order="redis keel"; else order="keel redis"; fi
            for s in $order; do
                d=$data/$s-$mode-$run
                mkdir -p "$d"
                start "$s" "$d" $mode
                out=$work/rb-$s-$mode-$run.csv
                c0=$(cpu_ticks "$spid")
                fg timeout "$BENCH_TIMEOUT" taskset -c "$LOADGEN_CPU" redis-benchmark -h 127.0.0.1 -p "$port" "${args[@]}" >"$out" ||
                    die "redis-benchmark against $s ($mode) failed or timed out"
                kill -0 "$spid" 2>/dev/null || die "$s ($mode) died during the run"
                c1=$(cpu_ticks "$spid")
                printf 'fsync\t%s\t%s\t%s\t%s\t%s\t%s\n' "$s" $mode "$run" "$n" $((c1 - c0)) "$out" >>"$manifest"
                log "$s appendfsync $mode run $run: $(tail -1 "$out"), $(du -sh "$d" | cut -f1) on disk"
                stop "$spid"
                rm -rf "$d"
            done
        done
    done
fi

# --- 2. restart with KEYS keys: snapshot + log tail, SIGKILL, time to ready ----
if [[ " $PARTS " == *" restart "* ]]; then
    # keel loads its shards in parallel, one thread each: with
    # RESTART_SHARDS=2 it runs as deployed (a shard per core) on both CPUs.
    # redis-server loads on one thread whatever it is given.
    KEEL_SHARDS=$RESTART_SHARDS
    KEEL_CPUS=$RESTART_CPUS
    total=$((KEYS + TAIL_KEYS))
    log "generating $KEYS + $TAIL_KEYS SET commands"
    fg taskset -c "$LOADGEN_CPU" python3 "$helper" gen 0 "$KEYS" 32 >"$work/keys.resp"
    fg taskset -c "$LOADGEN_CPU" python3 "$helper" gen "$KEYS" "$TAIL_KEYS" 32 >"$work/tail.resp"
    note_server everysec
    note_cmd "python3 bench/persist_report.py gen 0 $KEYS 32 | taskset -c $LOADGEN_CPU redis-cli -h 127.0.0.1 -p \$PORT --pipe   # SET key:%d, 32 B random value"
    note_cmd "redis-cli -h 127.0.0.1 -p \$PORT BGREWRITEAOF   # then poll INFO persistence until aof_rewrite_in_progress:0"
    note_cmd "python3 bench/persist_report.py gen $KEYS $TAIL_KEYS 32 | taskset -c $LOADGEN_CPU redis-cli -h 127.0.0.1 -p \$PORT --pipe   # the log tail"
    note_cmd "kill -KILL \$PID; then time exec .. PING=PONG and DBSIZE=$total (python3 bench/persist_report.py wait)"
    note_cmd "# keel in this part: --shards $RESTART_SHARDS, taskset -c $RESTART_CPUS (redis-server: taskset -c $SERVER_CPU)"
    for s in redis keel; do
        d=$data/$s-restart
        mkdir -p "$d"
        start $s "$d" everysec
        log "$s: loading $KEYS keys"
        l0=$EPOCHREALTIME
        pipe_load $s "$work/keys.resp" "$KEYS"
        l1=$EPOCHREALTIME
        rewrite_idle # an automatic rewrite may be running after a bulk load
        before=$(info_field aof_rewrites)
        r=$(cli bgrewriteaof) || die "BGREWRITEAOF on $s failed"
        case $r in ERR* | *error* | *Error*) die "BGREWRITEAOF on $s: $r" ;; esac
        log "$s: BGREWRITEAOF: $r"
        end=$((SECONDS + REWRITE_TIMEOUT))
        # Done when nothing is in progress and, where the server counts
        # rewrites (redis 7: aof_rewrites), the count has moved.
        while [ "$(info_field aof_rewrite_in_progress)" != 0 ] || [ "$(info_field aof_rewrite_scheduled)" = 1 ] ||
            { [ -n "$before" ] && [ "$(info_field aof_rewrites)" = "$before" ]; }; do
            [ $SECONDS -lt $end ] || die "BGREWRITEAOF on $s not finished after $REWRITE_TIMEOUT s"
            sleep 0.2
        done
        st=$(info_field aof_last_bgrewrite_status)
        [ -z "$st" ] || [ "$st" = ok ] || die "BGREWRITEAOF on $s: aof_last_bgrewrite_status:$st"
        pipe_load $s "$work/tail.resp" "$TAIL_KEYS"
        sleep 2 # appendfsync everysec: let at least one fsync pass cover the tail
        rewrite_idle
        got=$(cli dbsize)
        [ "$got" = "$total" ] || die "$s holds $got keys, expected $total"
        rss=$(rss_kib "$spid")
        bytes=$(dir_bytes "$d")
        printf 'prep\t%s\t%s\t%s\t%s\t%s\n' $s "$KEYS" "$(python3 -c "print(f'{$l1 - $l0:.3f}')")" "$rss" "$bytes" >>"$manifest"
        log "$s: loaded in $(python3 -c "print(f'{$l1 - $l0:.1f}')") s, RSS $((rss / 1024)) MiB, dir $((bytes / 1048576)) MiB:"
        (cd "$d" && find . -type f -printf '    %s\t%p\n' | sort -k2) >&2
        crash "$spid"
        mv "$d" "$d.pristine"
    done
    for run in $(seq "$RESTART_RUNS"); do
        if [ $((run % 2)) = 1 ]; then order="redis keel"; else order="keel redis"; fi
        for s in $order; do
            d=$data/$s-restart
            # The same state every time: whatever a restart writes (e.g. a
            # snapshot taken after loading) must not speed up the next one.
            rm -rf "$d"
            cp -a "$d.pristine" "$d"
            sync
            # The poller starts first (Python's own start-up is not the
            # server's), then the server is exec'd and the poller told when.
            port=$(free_port)
            go=$work/go
            rm -f "$go" "$go.armed" "$go.tmp"
            taskset -c "$LOADGEN_CPU" python3 "$helper" wait "$port" "$total" "$RESTART_TIMEOUT" "$go" >"$work/ready" &
            child=$!
            for _ in $(seq 300); do [ -e "$go.armed" ] || sleep 0.1; done
            [ -e "$go.armed" ] || die "the readiness poller did not start"
            launch "$s" "$d" everysec "$port"
            echo "$t0 $spid" >"$go.tmp"
            mv "$go.tmp" "$go"
            wait "$child" || { child=; tail -20 "$work/$s.log" >&2; die "$s: not ready after restart"; }
            child=
            secs=$(<"$work/ready")
            ticks=$(cpu_ticks "$spid")
            rss=$(rss_kib "$spid")
            bytes=$(dir_bytes "$d")
            printf 'restart\t%s\t%s\t%s\t%s\t%s\t%s\n' "$s" "$run" "$secs" "$ticks" "$rss" "$bytes" >>"$manifest"
            log "$s restart $run: ready in $secs s, CPU $((ticks * 1000 / $(getconf CLK_TCK))) ms, RSS $((rss / 1024)) MiB"
            crash "$spid"
        done
    done
    rm -rf "${data:?}"/*
fi

# --- 3. report -------------------------------------------------------------------
python3 "$helper" report --manifest "$manifest" --commands "$commands" --keel-bin "$KEEL_BIN" \
    --redis-bin "$REDIS_SERVER_BIN" --root "$root" --runs "$RUNS" --server-cpu "$SERVER_CPU" \
    --loadgen-cpu "$LOADGEN_CPU" --disk "$disk" --label "$LABEL" --tail "$TAIL_KEYS"

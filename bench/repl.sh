#!/usr/bin/env bash
# Replication: keel primaries with backups against redis-server with a
# replica, on this machine, side by side, over loopback.
#
#   bench/repl.sh                         target/release/keel (not built here)
#   KEEL_BIN=path bench/repl.sh           that binary
#
# Every keel process runs --shards 1 with its own --peer-port (a free port:
# several processes share the host), from a private copy of KEEL_BIN (a rebuild
# meanwhile cannot mix builds; the commit and the binary's sha1 are reported). Primaries are pinned to SERVER_CPU;
# backups, replicas and the load generators to LOADGEN_CPU (on a 2-CPU machine
# a backup can only take CPU from the load generator or from the primary; this
# takes it from the load generator, and the primary's CPU time per op stays
# the figure to compare).
#
# 1. SET throughput, eventual: redis-benchmark -t set -c 50 -d 32 -r 100000,
#    -P 16 (N_PIPE requests) then unpipelined (N), against keel with 0, 1 and
#    2 backups (in zones b and c, the primary in a: every link compressed, as
#    in a 3-zone deployment; BACKUP_ZONES to change), keel with 2 backups in
#    its own zone (raw frames: what lz4 costs) and redis-server with 0 and 1
#    replica (--save '' --appendonly no everywhere). Fresh servers per
#    configuration and run; RUNS runs, the order of configurations rotating.
#    Primary and backup CPU ticks (utime+stime, /proc/PID/stat); after each
#    benchmark the lag left and the time until every backup holds everything.
# 2. Strong mode: keel --consistency strong --appendonly yes --appendfsync
#    everysec (strong makes every acknowledged write wait for the log's fsync,
#    whatever appendfsync says) with one backup (same flags, same zone), and
#    redis-server + replica with --appendonly yes --appendfsync always (the
#    same local durability as keel strong) and everysec, each SET followed by
#    WAIT 1 0. One closed-loop Python client (repl_report.py client,
#    STRONG_CONNS connections, STRONG_SECS s) for all of them; also the same
#    client against a bare redis-server (no log, no replica): its ceiling.
# 3. Lag at a fixed load: keel + 2 backups as in 1, driven at LAG_FRACTION of
#    the median ops/s of part 1 (-P 16, and unpipelined) by repl_report.py
#    rate for LAG_SECS s while repl_report.py sample reads INFO replication of
#    the primary and both backups every 100 ms.
# 4. Bytes on the links: keel primary (zone a) with one backup in zone b
#    (compressed) and one in zone a (raw); JSON_DOCS JSON documents
#    (repl_report.py json) loaded with redis-cli --pipe JSON_CHUNK at a time
#    (the backups drained between), then JSON_TRICKLE more one SET per round
#    trip, then JSON_DOCS more in one pipe; payload_bytes / wire_bytes per link
#    from INFO replication, and the links the primary dropped. redis-server +
#    replica on the same loads for reference.
# Prints a Markdown fragment for bench/RESULTS.md on stdout (logs go to
# stderr); it does not edit RESULTS.md.
#
# Knobs (env): RUNS=3 N_PIPE=1000000 N=150000 PARTS="throughput strong lag
# bytes" CONFIGS="keel0 keel1 keel2 keel2s redis0 redis1" (part 1) BACKUP_ZONES="b c" STRONG_RUNS=2 STRONG_CONNS=50 STRONG_SECS=5
# LAG_FRACTION=0.5 LAG_SECS=10 LAG_RATE_PIPE= LAG_RATE_P1= (fixed rates instead
# of the fraction of part 1's) JSON_DOCS=50000 JSON_CHUNK=5000 JSON_TRICKLE=5000 DIR=/var/tmp
# (parent of the data dirs; part 2 fsyncs, so it must be a real disk)
# KEEL_BIN=target/release/keel SERVER_CPU=0 LOADGEN_CPU=1 BENCH_TIMEOUT=300
# QUIET_MAX=0.3 QUIET_WAIT=8 (before each measurement wait up to QUIET_WAIT s
# for a second in which other processes use at most QUIET_MAX cores: this
# machine may be shared; each figure records the other load during it)
# LABEL=replication KEEP=1 (keep the work dir).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
RUNS=${RUNS:-3}
N_PIPE=${N_PIPE:-1000000}
N=${N:-150000}
PARTS=${PARTS:-throughput strong lag bytes}
BACKUP_ZONES=${BACKUP_ZONES:-b c}
STRONG_RUNS=${STRONG_RUNS:-2}
STRONG_CONNS=${STRONG_CONNS:-50}
STRONG_SECS=${STRONG_SECS:-5}
LAG_FRACTION=${LAG_FRACTION:-0.5}
LAG_SECS=${LAG_SECS:-10}
LAG_RATE_PIPE=${LAG_RATE_PIPE:-}
LAG_RATE_P1=${LAG_RATE_P1:-}
JSON_DOCS=${JSON_DOCS:-50000}
JSON_TRICKLE=${JSON_TRICKLE:-5000}
JSON_CHUNK=${JSON_CHUNK:-5000}
DIR=${DIR:-/var/tmp}
KEEL_BIN=${KEEL_BIN:-$root/target/release/keel}
SERVER_CPU=${SERVER_CPU:-0}
LOADGEN_CPU=${LOADGEN_CPU:-1}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-300}
QUIET_MAX=${QUIET_MAX:-0.3}
QUIET_WAIT=${QUIET_WAIT:-8}
LABEL=${LABEL:-replication}
helper=$here/repl_report.py

log() { echo "[repl $(date +%T)] $*" >&2; }
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
    command -v "$t" >/dev/null || die "$t not found"
done
REDIS_SERVER_BIN=$(command -v redis-server)
[ -x "$KEEL_BIN" ] || die "KEEL_BIN=$KEEL_BIN is not executable (cargo build --release --bin keel?)"
KEEL_BIN=$(cd "$(dirname "$KEEL_BIN")" && pwd)/$(basename "$KEEL_BIN")
taskset -c "$SERVER_CPU,$LOADGEN_CPU" true 2>/dev/null ||
    die "CPUs $SERVER_CPU,$LOADGEN_CPU not both usable here (set SERVER_CPU/LOADGEN_CPU)"
fstype=$(findmnt -no FSTYPE -T "$DIR" 2>/dev/null || stat -f -c %T "$DIR")
case $fstype in
tmpfs | ramfs) die "DIR=$DIR is on $fstype: fsync there is free (part 2); use a disk-backed DIR" ;;
esac
disk="\`$DIR\` ($fstype on $(df --output=source "$DIR" | tail -1))"

# Which build this is: the tree's commit now, and whether the binary is older
# than that commit (others may commit while this runs).
keel_commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
[ -z "$(git -C "$root" status --porcelain --untracked-files=no 2>/dev/null)" ] || keel_commit="$keel_commit (the tree had uncommitted changes at start)"
bin_time=$(stat -c %Y "$KEEL_BIN")
commit_time=$(git -C "$root" log -1 --format=%ct 2>/dev/null || echo 0)
keel_build="binary built $(date -u -d "@$bin_time" '+%Y-%m-%d %H:%M UTC'), sha1 $(sha1sum "$KEEL_BIN" | cut -c1-12)"
[ "$bin_time" -ge "$commit_time" ] || keel_build="$keel_build, OLDER than HEAD's commit"

# --- work dir, cleanup -------------------------------------------------------
work=$(mktemp -d "$DIR/keel-repl.XXXXXX")
data=$work/data
mkdir -p "$data"
manifest=$work/manifest.tsv
commands=$work/commands.txt
: >"$manifest"
: >"$commands"
pids=()
cleanup() {
    local rc=$? p
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do
        for _ in $(seq 30); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
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
# CPU ticks of the whole machine not idle (user nice system irq softirq steal)
busy_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
# CPU ticks of this shell's waited-for children (the load generators run
# through fg, so they are counted once they exit)
# Sets CT; not to be called in $(...): a subshell has children of its own.
child_ticks() {
    local a b
    times >"$work/times"
    { read -r _ _; read -r a b; } <"$work/times"
    CT=$(python3 -c "import re,sys
t=0
for x in sys.argv[1:]:
    m=re.fullmatch(r'(\d+)m([\d.]+)s', x); t+=int(m.group(1))*60+float(m.group(2))
print(round(t*$(getconf CLK_TCK)))" "$a" "$b")
}
# other: the cores (average) used by processes that are none of this run's:
# other sessions' builds and tests share this machine.
other_load() { # BUSY0 BUSY1 OURS_TICKS T0 T1
    python3 -c "print(f'{max(0, $2 - $1 - $3) / $(getconf CLK_TCK) / ($5 - $4):.2f}')"
}
# Before a measurement: wait (at most QUIET_WAIT s) for a second in which
# other processes keep less than QUIET_MAX cores busy. Our own idle servers
# (PIDs given) are not counted.
wait_quiet() { # PID...
    local end=$((SECONDS + QUIET_WAIT)) u0 u1 o0 o1 p load
    while :; do
        u0=$(busy_ticks) o0=0
        for p in "$@"; do o0=$((o0 + $(cpu_ticks "$p"))); done
        sleep 1
        u1=$(busy_ticks) o1=0
        for p in "$@"; do o1=$((o1 + $(cpu_ticks "$p"))); done
        load=$(python3 -c "print(f'{max(0, $u1 - $u0 - ($o1 - $o0)) / $(getconf CLK_TCK):.2f}')")
        python3 -c "import sys; sys.exit(0 if $load <= $QUIET_MAX else 1)" && return 0
        if [ $SECONDS -ge $end ]; then
            log "machine still busy ($load cores used by others); measuring anyway"
            return 0
        fi
        log "machine busy ($load cores used by others); waiting"
    done
}
note_cmd() { grep -qxF -- "$*" "$commands" || echo "$*" >>"$commands"; }
note() { printf 'note\t%s\n' "$*" >>"$manifest"; log "note: $*"; }
cli() { local p=$1; shift; timeout 10 redis-cli -h 127.0.0.1 -p "$p" "$@"; }
info_field() { cli "$1" info "$2" | tr -d '\r' | awk -F: -v k="$3" '$1 == k {print $2}'; }

# launch NAME CPU CMD...: start a server (taskset execs it, so $! is its PID)
# and wait (bounded) for PONG; sets spid.
launch() {
    local name=$1 cpu=$2 port
    shift 2
    port=$(sed -n 's/.*--port \([0-9]*\).*/\1/p' <<<"$*")
    taskset -c "$cpu" "$@" >>"$work/$name.log" 2>&1 &
    spid=$!
    pids+=("$spid")
    for _ in $(seq 150); do
        kill -0 "$spid" 2>/dev/null || { tail -20 "$work/$name.log" >&2; die "$name exited at start"; }
        [ "$(cli "$port" ping 2>/dev/null)" = PONG ] && return 0
        sleep 0.1
    done
    tail -20 "$work/$name.log" >&2
    die "$name did not answer PING on $port within 15 s"
}
stop() { # PID...
    local p q rest
    for p in "$@"; do
        rest=()
        for q in "${pids[@]}"; do [ "$q" = "$p" ] || rest+=("$q"); done
        pids=("${rest[@]}")
        kill -TERM "$p" 2>/dev/null || true
    done
    for p in "$@"; do
        for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
}

# keel_cmd NAME PORT PEER_PORT ZONE [EXTRA...]: in the array cmd
keel_cmd() {
    local name=$1 port=$2 peer=$3 zone=$4
    shift 4
    mkdir -p "$data/$name"
    cmd=("$KEEL_BIN" --port "$port" --bind 127.0.0.1 --peer-port "$peer" --shards 1 --node-id "$name"
        --zone "$zone" --dir "$data/$name" "$@")
}
redis_cmd() { # NAME PORT [EXTRA...]
    local name=$1 port=$2
    shift 2
    mkdir -p "$data/$name"
    cmd=("$REDIS_SERVER_BIN" --port "$port" --bind 127.0.0.1 --save '' --dir "$data/$name" "$@")
}

# Wait until a keel primary lists every named backup online, or a redis
# primary has N online replicas.
wait_keel_links() { # PORT ID...
    local port=$1 id ok
    shift
    for _ in $(seq 150); do
        ok=1
        for id in "$@"; do
            cli "$port" info replication | tr -d '\r' | grep -q "^shard0_link_$id:state=online" || ok=0
        done
        [ $ok = 1 ] && return 0
        sleep 0.1
    done
    cli "$port" info replication >&2 || true
    die "keel on $port: backups $* not all online within 15 s"
}
wait_redis_replicas() { # PORT N
    for _ in $(seq 150); do
        [ "$(cli "$1" info replication | tr -d '\r' | grep -c '^slave[0-9]*:.*state=online')" -ge "$2" ] && return 0
        sleep 0.1
    done
    cli "$1" info replication >&2 || true
    die "redis on $1: $2 replicas not online within 15 s"
}

# A configuration of part 1, 3 or 4: start it; sets P (primary port), PPID_
# (primary pid), BPIDS (backup pids), BPORTS, ENGINE.
start_config() { # CONFIG [ZONES...]
    local cfg=$1 n i z port peer bp bpeer
    shift
    BPIDS=() BPORTS=()
    case $cfg in
    keel*)
        ENGINE=keel
        n=${cfg#keel}
        n=${n%s}
        # keelNs: N backups in the primary's own zone (raw frames)
        if [ "$cfg" != "${cfg%s}" ] && [ $# = 0 ]; then set -- $(printf 'a %.0s' $(seq "$n")); fi
        P=$(free_port) peer=$(free_port)
        keel_cmd "$cfg-p" "$P" "$peer" a --appendonly no
        note_cmd "taskset -c $SERVER_CPU $KEEL_ORIG --port \$PORT --bind 127.0.0.1 --peer-port \$PEER --shards 1 --node-id p --zone a --dir \$DIR --appendonly no"
        launch "$cfg-p" "$SERVER_CPU" "${cmd[@]}"
        PPID_=$spid
        local ids=()
        for i in $(seq "$n"); do
            z=${1:-$(echo "$BACKUP_ZONES" | awk -v i="$i" '{print $i}')}
            [ $# = 0 ] || shift
            bp=$(free_port) bpeer=$(free_port)
            keel_cmd "b$i$z" "$bp" "$bpeer" "$z" --appendonly no --replicaof "127.0.0.1 $P"
            note_cmd "taskset -c $LOADGEN_CPU $KEEL_ORIG --port \$PORT_B --bind 127.0.0.1 --peer-port \$PEER_B --shards 1 --node-id b\$I --zone \$ZONE --dir \$DIR_B --appendonly no --replicaof \"127.0.0.1 \$PORT\""
            launch "$cfg-b$i" "$LOADGEN_CPU" "${cmd[@]}"
            BPIDS+=("$spid") BPORTS+=("$bp") ids+=("b$i$z")
        done
        [ "$n" = 0 ] || wait_keel_links "$P" "${ids[@]}"
        ;;
    redis*)
        ENGINE=redis
        n=${cfg#redis}
        P=$(free_port)
        redis_cmd "$cfg-p" "$P" --appendonly no
        note_cmd "taskset -c $SERVER_CPU redis-server --port \$PORT --bind 127.0.0.1 --save '' --dir \$DIR --appendonly no"
        launch "$cfg-p" "$SERVER_CPU" "${cmd[@]}"
        PPID_=$spid
        for i in $(seq "$n"); do
            bp=$(free_port)
            redis_cmd "$cfg-r$i" "$bp" --appendonly no --replicaof 127.0.0.1 "$P"
            note_cmd "taskset -c $LOADGEN_CPU redis-server --port \$PORT_R --bind 127.0.0.1 --save '' --dir \$DIR_R --appendonly no --replicaof 127.0.0.1 \$PORT"
            launch "$cfg-r$i" "$LOADGEN_CPU" "${cmd[@]}"
            BPIDS+=("$spid") BPORTS+=("$bp")
        done
        [ "$n" = 0 ] || wait_redis_replicas "$P" "$n"
        ;;
    esac
}
stop_config() { stop "$PPID_" "${BPIDS[@]}"; rm -rf "${data:?}"/*; }
backup_ticks() {
    local t=0 p
    for p in "${BPIDS[@]}"; do t=$((t + $(cpu_ticks "$p"))); done
    echo $t
}
# drain OUT: wait until the backups hold everything; the JSON in OUT.
drain() {
    local rc=0
    if [ "$ENGINE" = keel ]; then
        fg timeout 90 python3 "$helper" drain --keel "$P" --timeout 60 >"$1" || rc=$?
    else
        fg timeout 90 python3 "$helper" drain --redis "$P" "${BPORTS[0]}" --timeout 60 >"$1" || rc=$?
    fi
    [ $rc = 0 ] || note "$cfg: backups did not catch up within 60 s after a run: $(cat "$1")"
}
# The backups must hold what the primary holds (keel: DEBUG DIGEST).
check_same() { # LABEL
    local d b bd k=0
    d=$(cli "$P" debug digest)
    for b in "${BPORTS[@]}"; do
        k=$((k + 1))
        bd=$(cli "$b" debug digest)
        if [ "$bd" != "$d" ]; then
            note "$1: backup $k DEBUG DIGEST $bd != primary $d (DBSIZE $(cli "$b" dbsize) vs $(cli "$P" dbsize))"
        fi
    done
}

# A private copy: a rebuild of target/release/keel meanwhile must not mix builds.
cp "$KEEL_BIN" "$work/keel"
KEEL_ORIG=$KEEL_BIN # (shown in the commands)
KEEL_BIN=$work/keel
log "keel: $KEEL_ORIG ($keel_commit, $keel_build); redis: $REDIS_SERVER_BIN ($("$REDIS_SERVER_BIN" --version | awk '{print $3}')); work dir $work ($fstype)"

# --- 1. SET throughput with 0/1/2 backups ------------------------------------
configs=(${CONFIGS:-keel0 keel1 keel2 keel2s redis0 redis1})
if [[ " $PARTS " == *" throughput "* ]]; then
    note_cmd "# part 1 backups: keel1/keel2: b1 --zone $(echo "$BACKUP_ZONES" | awk '{print $1}'), b2 --zone $(echo "$BACKUP_ZONES" | awk '{print $2}') (primary --zone a); keel2s: both --zone a"
    for run in $(seq "$RUNS"); do
        # rotate the order of the configurations run by run
        order=()
        for i in "${!configs[@]}"; do order+=("${configs[$(((i + run - 1) % ${#configs[@]}))]}"); done
        for cfg in "${order[@]}"; do
            start_config "$cfg"
            for test in P16 P1; do
                if [ $test = P16 ]; then n=$N_PIPE pipe=16; else n=$N pipe=1; fi
                args=(-c 50 -r 100000 -d 32 -n "$n" -P "$pipe" -t set --csv)
                note_cmd "taskset -c $LOADGEN_CPU redis-benchmark -h 127.0.0.1 -p \$PORT ${args[*]}"
                out=$work/rb-$cfg-$run-$test.csv
                [ "$ENGINE" != keel ] || cli "$P" info replication | tr -d '\r' >"$work/info-$cfg-$run-$test-0"
                wait_quiet "$PPID_" "${BPIDS[@]}"
                child_ticks; g0=$CT t0=$EPOCHREALTIME u0=$(busy_ticks)
                c0=$(cpu_ticks "$PPID_") b0=$(backup_ticks)
                fg timeout "$BENCH_TIMEOUT" taskset -c "$LOADGEN_CPU" redis-benchmark -h 127.0.0.1 -p "$P" "${args[@]}" >"$out" ||
                    die "redis-benchmark against $cfg failed or timed out"
                c1=$(cpu_ticks "$PPID_") b1=$(backup_ticks)
                u1=$(busy_ticks) t1=$EPOCHREALTIME; child_ticks; g1=$CT
                other=$(other_load "$u0" "$u1" $((c1 - c0 + b1 - b0 + g1 - g0)) "$t0" "$t1")
                for p in "$PPID_" "${BPIDS[@]}"; do kill -0 "$p" 2>/dev/null || die "$cfg: a server died during the run"; done
                dr=-
                if [ ${#BPIDS[@]} -gt 0 ]; then
                    dr=$work/drain-$cfg-$run-$test.json
                    drain "$dr"
                fi
                [ "$ENGINE" != keel ] || cli "$P" info replication | tr -d '\r' >"$work/info-$cfg-$run-$test-1"
                printf 'rb\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$cfg" "$run" "$test" "$n" $((c1 - c0)) $((b1 - b0)) "$out" "$dr" "$work/info-$cfg-$run-$test" $((g1 - g0)) "$other" >>"$manifest"
                log "$cfg run $run $test: $(tail -1 "$out") primary $((c1 - c0)) ticks, backups $((b1 - b0)), load generator $((g1 - g0)), other load $other cores; $([ "$dr" = - ] || cat "$dr")"
            done
            [ "$ENGINE" != keel ] || [ ${#BPIDS[@]} = 0 ] || check_same "$cfg run $run"
            stop_config
        done
    done
fi

# --- 2. strong mode against redis + WAIT 1 0 ----------------------------------
# strong_config NAME: start it; sets P, PPID_, BPIDS, BPORTS.
strong_config() {
    local peer bp bpeer
    BPIDS=() BPORTS=()
    P=$(free_port)
    case $1 in
    keel-strong)
        ENGINE=keel
        peer=$(free_port) bp=$(free_port) bpeer=$(free_port)
        local f=(--consistency strong --appendonly yes --appendfsync everysec)
        keel_cmd sp "$P" "$peer" a "${f[@]}" --sync-backup sb
        note_cmd "taskset -c $SERVER_CPU $KEEL_ORIG --port \$PORT --bind 127.0.0.1 --peer-port \$PEER --shards 1 --node-id sp --zone a --dir \$DIR ${f[*]} --sync-backup sb"
        launch sp "$SERVER_CPU" "${cmd[@]}"
        PPID_=$spid
        keel_cmd sb "$bp" "$bpeer" a "${f[@]}" --replicaof "127.0.0.1 $P"
        note_cmd "taskset -c $LOADGEN_CPU $KEEL_ORIG --port \$PORT_B --bind 127.0.0.1 --peer-port \$PEER_B --shards 1 --node-id sb --zone a --dir \$DIR_B ${f[*]} --replicaof \"127.0.0.1 \$PORT\""
        launch sb "$LOADGEN_CPU" "${cmd[@]}"
        BPIDS=("$spid") BPORTS=("$bp")
        wait_keel_links "$P" sb
        ;;
    redis-always | redis-everysec)
        ENGINE=redis
        local fs=${1#redis-}
        bp=$(free_port)
        redis_cmd rp "$P" --appendonly yes --appendfsync "$fs"
        note_cmd "taskset -c $SERVER_CPU redis-server --port \$PORT --bind 127.0.0.1 --save '' --dir \$DIR --appendonly yes --appendfsync $fs"
        launch rp "$SERVER_CPU" "${cmd[@]}"
        PPID_=$spid
        redis_cmd rr "$bp" --appendonly yes --appendfsync "$fs" --replicaof 127.0.0.1 "$P"
        note_cmd "taskset -c $LOADGEN_CPU redis-server --port \$PORT_R --bind 127.0.0.1 --save '' --dir \$DIR_R --appendonly yes --appendfsync $fs --replicaof 127.0.0.1 \$PORT"
        launch rr "$LOADGEN_CPU" "${cmd[@]}"
        BPIDS=("$spid") BPORTS=("$bp")
        wait_redis_replicas "$P" 1
        ;;
    redis-bare)
        ENGINE=redis
        redis_cmd rb "$P" --appendonly no
        launch rb "$SERVER_CPU" "${cmd[@]}"
        PPID_=$spid
        ;;
    esac
}
if [[ " $PARTS " == *" strong "* ]]; then
    # config, client mode, server label, durability label
    strong_runs=(
        "keel-strong set keel|strong, log fsynced + sync backup applied (appendfsync everysec given)"
        "keel-strong setwait keel|strong, as above, + WAIT 1 0"
        "redis-always setwait redis|appendfsync always + replica, WAIT 1 0"
        "redis-everysec setwait redis|appendfsync everysec + replica, WAIT 1 0"
        "redis-bare set redis|no log, no replica (the client's ceiling)"
    )
    note_cmd "taskset -c $LOADGEN_CPU python3 bench/repl_report.py client \$PORT --mode set|setwait --conns $STRONG_CONNS --seconds $STRONG_SECS"
    scfgs=(keel-strong redis-always redis-everysec redis-bare)
    for run in $(seq "$STRONG_RUNS"); do
        order=()
        for i in "${!scfgs[@]}"; do order+=("${scfgs[$(((i + run - 1) % ${#scfgs[@]}))]}"); done
        for cfg in "${order[@]}"; do
            strong_config "$cfg"
            for entry in "${strong_runs[@]}"; do
                read -r c mode rest <<<"$entry"
                [ "$c" = "$cfg" ] || continue
                server=${rest%%|*} dur=${rest#*|}
                out=$work/strong-$cfg-$mode-$run.json
                wait_quiet "$PPID_" "${BPIDS[@]}"
                child_ticks; g0=$CT t0=$EPOCHREALTIME u0=$(busy_ticks)
                c0=$(cpu_ticks "$PPID_") b0=$(backup_ticks)
                fg timeout "$BENCH_TIMEOUT" taskset -c "$LOADGEN_CPU" python3 "$helper" client "$P" --mode "$mode" \
                    --conns "$STRONG_CONNS" --seconds "$STRONG_SECS" >"$out" || die "client against $cfg ($mode) failed"
                c1=$(cpu_ticks "$PPID_") b1=$(backup_ticks)
                u1=$(busy_ticks) t1=$EPOCHREALTIME; child_ticks; g1=$CT
                other=$(other_load "$u0" "$u1" $((c1 - c0 + b1 - b0 + g1 - g0)) "$t0" "$t1")
                printf 'strong\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$cfg-$mode" "$run" "$out" $((c1 - c0)) "$server" "$dur" "$mode" "$other" >>"$manifest"
                log "strong $cfg $mode run $run: $(cat "$out"), other load $other cores"
            done
            if [ "$cfg" = keel-strong ]; then
                st=$(info_field "$P" replication strong_timeouts)
                [ "${st:-0}" = 0 ] || note "keel strong run $run: strong_timeouts:$st"
                drain "$work/drain-$cfg-$run.json"
                check_same "keel strong run $run"
            fi
            stop_config
        done
    done
fi

# --- 3. lag at a fixed rate --------------------------------------------------
median_rps() { # CONFIG TEST
    python3 - "$manifest" "$1" "$2" <<'EOF'
import csv, statistics, sys
rps = []
for line in open(sys.argv[1]):
    r = line.rstrip("\n").split("\t")
    if r[0] == "rb" and r[1] == sys.argv[2] and r[3] == sys.argv[3]:
        for row in csv.DictReader(open(r[7])):
            rps.append(float(row["rps"]))
print(int(statistics.median(rps)) if rps else "")
EOF
}
if [[ " $PARTS " == *" lag "* ]]; then
    rp=${LAG_RATE_PIPE:-$(median_rps keel2 P16)}
    r1=${LAG_RATE_P1:-$(median_rps keel2 P1)}
    [ -n "$rp" ] && [ -n "$r1" ] || die "part 3 needs part 1's keel2 figures (or LAG_RATE_PIPE and LAG_RATE_P1)"
    for level in "P16 $rp" "P1 $r1"; do
        read -r test max <<<"$level"
        target=$(python3 -c "print(int($max * $LAG_FRACTION))")
        name="$LAG_FRACTION × keel+2 backups' $test max ($max/s)"
        cfg=keel2
        start_config keel2
        note_cmd "taskset -c $LOADGEN_CPU python3 bench/repl_report.py rate \$PORT --rate \$RATE --seconds $LAG_SECS --conns 8   # RATE = $LAG_FRACTION × part 1's median ops/s"
        note_cmd "taskset -c $LOADGEN_CPU python3 bench/repl_report.py sample --primary \$PORT --backup \$PORT_B1 --backup \$PORT_B2 --out \$FILE   # from before the load until 1 s after the backups caught up"
        sf=$work/lag-$test.samples
        lf=$work/lag-$test.json
        wait_quiet "$PPID_" "${BPIDS[@]}"
        rm -f "$work/stop-sampler"
        taskset -c "$LOADGEN_CPU" python3 "$helper" sample --primary "$P" --backup "${BPORTS[0]}" --backup "${BPORTS[1]}" \
            --seconds $((LAG_SECS + 120)) --until "$work/stop-sampler" --out "$sf" &
        sampler=$!
        pids+=("$sampler")
        sleep 0.5
        child_ticks; g0=$CT t0=$EPOCHREALTIME u0=$(busy_ticks)
        c0=$(cpu_ticks "$PPID_") b0=$(backup_ticks) s0=$(cpu_ticks "$sampler")
        fg timeout "$BENCH_TIMEOUT" taskset -c "$LOADGEN_CPU" python3 "$helper" rate "$P" --rate "$target" \
            --seconds "$LAG_SECS" --conns 8 >"$lf" || die "rate client failed"
        c1=$(cpu_ticks "$PPID_") b1=$(backup_ticks) s1=$(cpu_ticks "$sampler")
        u1=$(busy_ticks) t1=$EPOCHREALTIME; child_ticks; g1=$CT
        other=$(other_load "$u0" "$u1" $((c1 - c0 + b1 - b0 + g1 - g0 + s1 - s0)) "$t0" "$t1")
        drain "$work/lag-$test-drain.json"
        sleep 1
        touch "$work/stop-sampler"
        wait "$sampler" || die "sampler failed"
        stop "$sampler"
        printf 'lag\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$target" "$lf" "$sf" "$work/lag-$test-drain.json" "$other" \
            "$(python3 -c "print(f'{($c1 - $c0) / $(getconf CLK_TCK) / ($t1 - $t0):.2f}')")" >>"$manifest"
        log "lag at $target/s: $(cat "$lf"); drain $(cat "$work/lag-$test-drain.json")"
        check_same "lag run $test"
        stop_config
    done
fi

# --- 4. bytes on compressed and raw links ----------------------------------------
# bytes_phase CFG NAME DOCS VALUE_BYTES CMD...: run CMD (a load), wait for the
# backups, record INFO replication before and after and the links the
# primary dropped meanwhile.
drop_count() {
    if [ "$ENGINE" = keel ]; then grep -c 'fell behind the backlog' "$work/$1-p.log" || true; else echo 0; fi
}
bytes_phase() {
    local cfg=$1 name=$2 docs=$3 vb=$4 k d0 d1
    shift 4
    bytes_k=$((bytes_k + 1))
    k=$bytes_k
    cli "$P" info replication | tr -d '\r' >"$work/bytes-$cfg-$k-0.info"
    d0=$(drop_count "$cfg")
    "$@"
    drain "$work/bytes-$cfg-$k-drain.json"
    d1=$(drop_count "$cfg")
    cli "$P" info replication | tr -d '\r' >"$work/bytes-$cfg-$k-1.info"
    printf 'bytes\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$docs" "$vb" "$work/bytes-$cfg-$k-0.info" "$work/bytes-$cfg-$k-1.info" $((d1 - d0)) >>"$manifest"
    [ $((d1 - d0)) = 0 ] || note "part 4, $cfg, $name: the primary dropped a backup's link $((d1 - d0)) time(s) ('the backup fell behind the backlog'); the backup came back through a full sync"
}
pipe_file() { # FILE COUNT
    fg_in "$1" timeout "$BENCH_TIMEOUT" taskset -c "$LOADGEN_CPU" redis-cli -h 127.0.0.1 -p "$P" --pipe \
        >"$work/pipe.out" 2>&1 || die "redis-cli --pipe into $cfg failed"
    grep -q "errors: 0, replies: $2\$" "$work/pipe.out" || { tail -3 "$work/pipe.out" >&2; die "pipe into $cfg: not clean"; }
}
pipe_chunks() { # the backups drained between chunks
    local i
    for i in $(seq 0 $((n_chunks - 1))); do
        pipe_file "$work/json-$i.resp" "$JSON_CHUNK"
        drain "$work/bytes-chunk-drain.json"
    done
}
trickle() {
    fg timeout "$BENCH_TIMEOUT" taskset -c "$LOADGEN_CPU" python3 "$helper" trickle "$P" "$JSON_TRICKLE" --seed 2 \
        --start "$JSON_DOCS" >"$work/trickle.json" || die "trickle into $cfg failed"
}
value_bytes() { python3 -c "import json; print(json.load(open('$work/json.stats'))['value_bytes'])"; }
if [[ " $PARTS " == *" bytes "* ]]; then
    n_chunks=$(((JSON_DOCS + JSON_CHUNK - 1) / JSON_CHUNK))
    JSON_DOCS=$((n_chunks * JSON_CHUNK))
    log "generating 2 x $JSON_DOCS + $JSON_TRICKLE JSON documents"
    vb_chunks=0
    for i in $(seq 0 $((n_chunks - 1))); do
        fg python3 "$helper" json "$JSON_CHUNK" --seed $((10 + i)) --start $((i * JSON_CHUNK)) --stats "$work/json.stats" >"$work/json-$i.resp"
        vb_chunks=$((vb_chunks + $(value_bytes)))
    done
    fg python3 "$helper" json "$JSON_TRICKLE" --seed 2 --start "$JSON_DOCS" --stats "$work/json.stats" >/dev/null
    vb_trickle=$(value_bytes)
    big_start=$((JSON_DOCS + JSON_TRICKLE))
    fg python3 "$helper" json "$JSON_DOCS" --seed 1 --start "$big_start" --stats "$work/json.stats" >"$work/json-big.resp"
    vb_big=$(value_bytes)
    note_cmd "python3 bench/repl_report.py json $JSON_CHUNK --seed \$((10 + I)) --start \$((I * $JSON_CHUNK)) | taskset -c $LOADGEN_CPU redis-cli -h 127.0.0.1 -p \$PORT --pipe   # I = 0..$((n_chunks - 1)), backups drained between"
    note_cmd "taskset -c $LOADGEN_CPU python3 bench/repl_report.py trickle \$PORT $JSON_TRICKLE --seed 2 --start $JSON_DOCS"
    note_cmd "python3 bench/repl_report.py json $JSON_DOCS --seed 1 --start $big_start | taskset -c $LOADGEN_CPU redis-cli -h 127.0.0.1 -p \$PORT --pipe   # one pipe"
    note_cmd "# part 4: keel backups b1b --zone b and b2a --zone a (primary --zone a); redis-server + 1 replica as in part 1"
    for cfg in keel2 redis1; do
        if [ $cfg = keel2 ]; then start_config keel2 b a; else start_config redis1; fi
        bytes_k=0
        bytes_phase "$cfg" "redis-cli --pipe, $JSON_CHUNK docs at a time" "$JSON_DOCS" "$vb_chunks" pipe_chunks
        bytes_phase "$cfg" "one SET per round trip" "$JSON_TRICKLE" "$vb_trickle" trickle
        bytes_phase "$cfg" "one redis-cli --pipe of $JSON_DOCS docs" "$JSON_DOCS" "$vb_big" pipe_file "$work/json-big.resp" "$JSON_DOCS"
        log "bytes $cfg: $(grep -E '_link_|^slave' "$work/bytes-$cfg-3-1.info" | grep -v _why | tr '\n' ' ')"
        [ $cfg != keel2 ] || check_same "bytes run"
        stop_config
    done
fi

# Links the primaries dropped for falling behind the backlog, anywhere.
for f in "$work"/*-p.log; do
    [ -e "$f" ] || continue
    k=$(grep -c 'fell behind the backlog' "$f" || true)
    [ "$k" = 0 ] || note "$(basename "$f" .log): $k replication link(s) dropped, 'the backup fell behind the backlog' (at $(grep 'fell behind the backlog' "$f" | cut -c12-19 | sort -u | tr '\n' ' ')UTC)"
done

# --- report --------------------------------------------------------------------
python3 "$helper" report --manifest "$manifest" --commands "$commands" --keel-bin "$KEEL_BIN" \
    --redis-bin "$REDIS_SERVER_BIN" --keel-desc "$KEEL_ORIG, $keel_commit, $keel_build" --label "$LABEL" --disk "$disk" --runs "$RUNS" \
    --server-cpu "$SERVER_CPU" --loadgen-cpu "$LOADGEN_CPU" --strong-conns "$STRONG_CONNS" --strong-secs "$STRONG_SECS" --strong-runs "$STRONG_RUNS" |
    tee "$work/fragment.md"
log "done ($SECONDS s)"

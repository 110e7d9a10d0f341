#!/usr/bin/env bash
# Membership changes on loopback: the time a new replica takes to become a
# voter per GB of data (KEEL NODE ADD), and the longest write pause while a
# node joins and while one leaves (KEEL NODE REMOVE), under one steady writer;
# then the same data and writer on redis-server, where a fresh replica sent
# REPLICAOF gives the time to a ready replica and the pause while it joins.
# A thin wrapper around bench/membership.py (see its header for the steps).
#
#   bench/membership.sh                         1 GB of values (builds target/release/keel)
#   GB=0.25 bench/membership.sh                 less data
#   KEEL_BIN=path VALUE_SIZE=4096 SHARDS=2 PACE=0.001 bench/membership.sh
#   REDIS=0 bench/membership.sh                 keel only
#
# Knobs (env): GB (payload of values, 10^9 bytes; default 1), VALUE_SIZE
# (bytes per value, default 1024), SHARDS (per node, default 2), PACE (s
# between the writer's SETs, default 0.001), KEEL_BIN (that binary, no
# build), DIR (parent of the work dir, default /var/tmp), KEEP=1 (keep the
# work dir: data dirs and logs; it is kept anyway when the run fails),
# REDIS=0 (no redis-server comparison), REDIS_BIN (default redis-server;
# run with its defaults plus --save "" --appendonly no).
# Needs about 3 x GB x 1.5 of memory (three nodes hold the data; redis runs
# after keel has stopped, four processes, as much) and as much disk.
# Figures and a Markdown fragment go to stdout.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
log() { echo "membership.sh: $*" >&2; }
die() { log "$*"; exit 1; }
source "$here/lib.sh"
command -v python3 >/dev/null || die "python3 not found"
GB=${GB:-1} VALUE_SIZE=${VALUE_SIZE:-1024} SHARDS=${SHARDS:-2} PACE=${PACE:-0.001} DIR=${DIR:-/var/tmp}
if [ -z "${KEEL_BIN:-}" ]; then
    log "cargo build --release"
    (cd "$root" && fg cargo build --release -q) || die "cargo build --release failed"
    KEEL_BIN=$root/target/release/keel
fi
[ -x "$KEEL_BIN" ] || die "KEEL_BIN=$KEEL_BIN is not executable"
redis=()
if [ "${REDIS:-1}" = 0 ]; then
    redis=(--no-redis)
else
    REDIS_BIN=${REDIS_BIN:-redis-server}
    command -v "$REDIS_BIN" >/dev/null || die "$REDIS_BIN not found (REDIS=0 skips the comparison)"
    redis=(--redis "$(command -v "$REDIS_BIN")")
    log "redis: $("$REDIS_BIN" --version)"
fi
work=$(mktemp -d "$DIR/keel-membership.XXXXXX")
log "keel: $KEEL_BIN ($(sha1sum "$KEEL_BIN" | cut -c1-12)); work dir $work"
rc=0
fg python3 "$here/membership.py" --keel "$KEEL_BIN" --work "$work" --gb "$GB" --value-size "$VALUE_SIZE" \
    --shards "$SHARDS" --pace "$PACE" "${redis[@]}" || rc=$?
if [ $rc != 0 ]; then
    die "membership.py exited with $rc; logs in $work/*/keel.log, $work/*/redis.log"
fi
[ "${KEEP:-}" = 1 ] && log "work dir kept: $work" || rm -rf "$work"

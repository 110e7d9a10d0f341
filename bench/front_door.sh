#!/usr/bin/env bash
# Every node is a front door (issue 12): CPU per read on a backup vs the
# primary, the cost of forwarding a write, the share of reads a backup serves
# itself under a 1:10 write:read load (with a read-your-writes check), and
# the bytes between backup and primary per read. Three keel processes on
# loopback beside redis-server; a thin wrapper around bench/front_door.py
# (see its header for how each figure is measured).
#
#   bench/front_door.sh                     everything (~6 min)
#   bench/front_door.sh --quick             smaller steps, one repetition (~2 min)
#   KEEL_BIN=path bench/front_door.sh ...   that binary, no build
#   bench/front_door.sh --no-redis --load python --base-port 7401
#
# Builds keel (`cargo build --release`, honouring CARGO_TARGET_DIR) unless
# KEEL_BIN is given, copies the binary into the work dir (a rebuild meanwhile
# cannot change what is measured), installs what is missing (redis-server,
# redis-tools, iproute2, util-linux) and runs the Python. Step 3 uses memtier_benchmark when it is on
# PATH (it is not a Debian package and is not installed here), else a load
# generator of front_door.py; the fragment says which. The Markdown fragment
# for bench/RESULTS.md goes to stdout and to $WORK/fragment.md, every figure
# to $WORK/front_door.json (`python3 bench/front_door.py --report FILE`
# prints the fragment again); the servers' logs stay in $WORK.
#
# Ports: keel 7301, 7311, 7321 (cluster) and 7361 (alone), each with its
# replication ports (+10000, +10001), cluster bus (+20000) and HTTP (+1000);
# redis-server 7331, 7341, 7351 and 7371. --base-port moves them all.
#
# Knobs (env): KEEL_BIN= KEEL_DESC= (how the report names that binary; default
# its path, the tree's commit and the binary's sha1) DIR=/var/tmp (parent of
# the work dir).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
DIR=${DIR:-/var/tmp}

log() { echo "[front_door.sh $(date +%T)] $*" >&2; }
die() { log "error: $*"; exit 1; }
source "$here/lib.sh"

sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
command -v python3 >/dev/null || die "python3 not found"

# --- tools -------------------------------------------------------------------
need=()
command -v redis-server >/dev/null || need+=(redis-server)
{ command -v redis-cli && command -v redis-benchmark; } >/dev/null || need+=(redis-tools)
command -v ss >/dev/null || need+=(iproute2)
{ command -v taskset && command -v setpriv; } >/dev/null || need+=(util-linux)
if ((${#need[@]})); then
    log "installing ${need[*]}"
    # Keep Debian's postinst from starting a system redis on 6379.
    policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
        $sudo chmod +x /usr/sbin/policy-rc.d
        policy=1
    fi
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null ||
        { $sudo apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive \
            $sudo apt-get install -y -qq "${need[@]}" >/dev/null; }
    [ $policy = 0 ] || $sudo rm -f /usr/sbin/policy-rc.d
fi
for t in redis-server redis-benchmark ss taskset; do
    command -v "$t" >/dev/null || die "$t not found"
done
command -v memtier_benchmark >/dev/null && log "step 3 load: $(command -v memtier_benchmark)" ||
    log "memtier_benchmark not on PATH: step 3 uses front_door.py's own load generator"

# --- keel --------------------------------------------------------------------
work=$(mktemp -d "$DIR/keel-front-door.XXXXXX")
# What the build is made of: the committed sources and any uncommitted change
# to them, before and after the build (others may commit or edit meanwhile).
sources=(src shards Cargo.toml Cargo.lock build.rs)
tree_state() {
    git -C "$root" rev-parse "${sources[@]/#/HEAD:}" 2>/dev/null | tr '\n' ' '
    git -C "$root" status --porcelain --untracked-files=no -- "${sources[@]}" 2>/dev/null
}
if [ -z "${KEEL_BIN:-}" ]; then
    commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
    before=$(tree_state)
    log "cargo build --release"
    (cd "$root" && fg cargo build --release) || die "cargo build --release failed"
    target_dir=${CARGO_TARGET_DIR:-target}
    [[ $target_dir = /* ]] || target_dir=$root/$target_dir
    cp -p "$target_dir/release/keel" "$work/keel"
    note=
    [ -z "$(git -C "$root" status --porcelain --untracked-files=no -- "${sources[@]}" 2>/dev/null)" ] ||
        note=" with uncommitted changes to its sources"
    [ "$before" = "$(tree_state)" ] || note=" (its sources changed during the build: the binary may mix both)"
    KEEL_DESC=${KEEL_DESC:-"commit $commit$note, \`cargo build --release\`, binary sha1 $(sha1sum "$work/keel" | cut -c1-12), built $(date -u -r "$work/keel" '+%Y-%m-%d %H:%M UTC')"}
else
    [ -x "$KEEL_BIN" ] || die "KEEL_BIN=$KEEL_BIN is not executable"
    cp -p "$KEEL_BIN" "$work/keel"
    KEEL_DESC=${KEEL_DESC:-"$KEEL_BIN, binary sha1 $(sha1sum "$work/keel" | cut -c1-12), built $(date -u -r "$work/keel" '+%Y-%m-%d %H:%M UTC')"}
fi
log "keel: $work/keel ($(sha1sum "$work/keel" | cut -c1-12)); work dir $work"

# --- run ---------------------------------------------------------------------
rc=0
fg env KEEL_BIN="$work/keel" KEEL_DESC="$KEEL_DESC" FRONT_DOOR_INVOCATION="bench/front_door.sh${*:+ $*}" \
    python3 "$here/front_door.py" --work "$work" --json "$work/front_door.json" "$@" >"$work/fragment.md" || rc=$?
cat "$work/fragment.md"
[ $rc = 0 ] || die "front_door.py exited with $rc (work dir $work)"
log "done ($SECONDS s); results in $work (front_door.json, fragment.md, servers' logs)"

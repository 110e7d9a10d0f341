#!/usr/bin/env bash
# Failover (issue 11): keel's own failover against Redis + Sentinel on the
# network-namespace harness of tests/cluster. A thin wrapper around
# bench/failover.py (see its header for the scenarios and the figures).
#
#   bench/failover.sh                                   all scenarios (~45 min)
#   bench/failover.sh --scenario kill-strong --rounds 5 one part again
#   bench/failover.sh --scenario pauses --minutes 3
#   KEEL_BIN=path bench/failover.sh ...                 that binary, no build
#
# Builds keel (`cargo build --release`) unless KEEL_BIN is given, copies the
# binary into the work dir (a rebuild meanwhile cannot change what is
# measured), installs what is missing (iproute2, setpriv, redis-cli through
# tests/cluster/install.sh; redis-server), and runs the Python as root
# (network namespaces). The Markdown fragment for bench/RESULTS.md goes to
# stdout and to $WORK/fragment.md; every round is saved in $WORK/failover.json
# (`python3 bench/failover.py --report FILE...` prints the fragment again);
# logs of failed rounds stay in $KEEL_CLUSTER_DIR (default /tmp/keel-cluster).
#
# Knobs (env): KEEL_BIN= KEEL_DESC= (how the report names that binary; default
# its path, the tree's commit and the binary's sha1) DIR=/var/tmp (parent of the work dir) KEEP=1 (keep the
# work dir even on success; it is always kept, it holds the results).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
DIR=${DIR:-/var/tmp}

log() { echo "[failover.sh $(date +%T)] $*" >&2; }
die() { log "error: $*"; exit 1; }
source "$here/lib.sh"

sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
command -v python3 >/dev/null || die "python3 not found"

# --- tools -------------------------------------------------------------------
bash "$root/tests/cluster/install.sh"
if ! command -v redis-server >/dev/null; then
    log "installing redis-server redis-tools"
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y redis-server redis-tools >/dev/null ||
        { $sudo apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive \
            $sudo apt-get install -y redis-server redis-tools >/dev/null; }
fi
for t in redis-server redis-cli ip tc setpriv; do
    command -v "$t" >/dev/null || die "$t not found"
done

# --- keel --------------------------------------------------------------------
work=$(mktemp -d "$DIR/keel-failover.XXXXXX")
# What the build is made of: the committed sources (src, shards, Cargo.*,
# build.rs) and any uncommitted change to them, before and after the build
# (others may commit or edit meanwhile; a commit touching only tests is fine).
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
    KEEL_BIN=$root/target/release/keel
    cp -p "$KEEL_BIN" "$work/keel"
    note=
    [ -z "$(git -C "$root" status --porcelain --untracked-files=no -- "${sources[@]}" 2>/dev/null)" ] ||
        note=" with uncommitted changes to its sources"
    [ "$before" = "$(tree_state)" ] || note=" (its sources changed during the build: the binary may mix both)"
    KEEL_DESC=${KEEL_DESC:-"commit $commit$note, \`cargo build --release\`, binary sha1 $(sha1sum "$work/keel" | cut -c1-12), built $(date -u -r "$work/keel" '+%Y-%m-%d %H:%M UTC')"}
fi
[ -x "$KEEL_BIN" ] || die "KEEL_BIN=$KEEL_BIN is not executable"
[ -e "$work/keel" ] || cp -p "$KEEL_BIN" "$work/keel"
log "keel: $KEEL_BIN ($(sha1sum "$KEEL_BIN" | cut -c1-12)), copied to $work/keel; work dir $work"

# --- run ---------------------------------------------------------------------
rc=0
fg $sudo env KEEL_BIN="$work/keel" FAILOVER_INVOCATION="bench/failover.sh $*" \
    ${KEEL_CLUSTER_DIR:+KEEL_CLUSTER_DIR="$KEEL_CLUSTER_DIR"} ${KEEL_DESC:+KEEL_DESC="$KEEL_DESC"} \
    python3 "$here/failover.py" --json "$work/failover.json" "$@" >"$work/fragment.md" || rc=$?
cat "$work/fragment.md"
[ $rc = 0 ] || die "failover.py exited with $rc (work dir $work)"
log "done ($SECONDS s); results in $work (failover.json, fragment.md)"

#!/usr/bin/env bash
# Memory of the collection types, keel against redis-server: 100,000 hashes
# of 10 fields and 100,000 sorted sets of 10 members (issue 3's measure),
# each loaded with redis-cli --pipe into a fresh server, one shard.
#
#   bench/types_memory.sh                 uses target/release/keel (builds it)
#   KEEL_BIN=path bench/types_memory.sh   that binary
#
# Prints, per load and server, RSS before and after and INFO used_memory.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
KEEL_BIN=${KEEL_BIN:-}
if [ -z "$KEEL_BIN" ]; then
    (cd "$root" && cargo build --release -q)
    KEEL_BIN=$root/target/release/keel
fi
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

python3 - "$work" <<'PY'
import sys
work = sys.argv[1]
def resp(args):
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)
with open(f"{work}/hashes.resp", "wb") as f:
    for i in range(100000):
        a = [b"HSET", b"user:%d" % i]
        for j in range(10):
            a += [b"field%d" % j, b"value-%d-%d" % (i, j)]
        f.write(resp(a))
with open(f"{work}/zsets.resp", "wb") as f:
    for i in range(100000):
        a = [b"ZADD", b"board:%d" % i]
        for j in range(10):
            a += [b"%d" % (j * 7 + i % 13), b"player%d" % j]
        f.write(resp(a))
PY

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rss() { awk '/VmRSS/{print $2}' "/proc/$1/status"; }
wait_ping() { for _ in $(seq 100); do redis-cli -p "$1" ping >/dev/null 2>&1 && return; sleep 0.1; done; echo "no PING on $1" >&2; exit 1; }

for load in hashes zsets; do
    for server in redis keel; do
        port=$(free_port)
        if [ "$server" = redis ]; then
            redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
                --dir "$work" >/dev/null 2>&1 &
        else
            "$KEEL_BIN" --bind 127.0.0.1 --port "$port" --shards 1 --dir "$work" >/dev/null 2>&1 &
        fi
        pid=$!
        pids+=("$pid")
        wait_ping "$port"
        before=$(rss "$pid")
        redis-cli -p "$port" --pipe <"$work/$load.resp" >/dev/null
        after=$(rss "$pid")
        used=$(redis-cli -p "$port" info memory | awk -F: '/^used_memory:/{print $2}' | tr -d '\r')
        printf '%-7s %-5s RSS %7d KB -> %7d KB (+%6d KB)  used_memory %d\n' \
            "$load" "$server" "$before" "$after" "$((after - before))" "$used"
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
done

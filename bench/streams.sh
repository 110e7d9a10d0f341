#!/usr/bin/env bash
# Streams, keel against redis-server (and Valkey when present), same load,
# side by side (issue 15's measure):
#   server CPU per op and ops/s for XADD (auto ids, two fields), XLEN,
#   XRANGE of 10 entries and XREADGROUP (COUNT 1, NOACK, a consumer per
#   connection) — memtier_benchmark, unpipelined, 50 connections — then the
#   memory of one stream of 1,000,000 entries (two fields each) added with
#   redis-cli --pipe.
#
#   bench/streams.sh                     builds keel (release)
#   KEEL_BIN=path N=20000 RUNS=3 bench/streams.sh
# N is requests per connection. Needs memtier_benchmark on PATH.
# Prints markdown tables on stdout.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/memtier_lib.sh
. "$here/memtier_lib.sh"

servers="redis keel"
[ -n "$VALKEY_BIN" ] && servers="redis valkey keel"
for server in $servers; do
    for run in $(seq "$RUNS"); do
        start "$server"
        load xadd "XADD events * sensor __key__ temp 21.5" "" 1000
        redis-cli -p "$port" xgroup create events g 0 >/dev/null
        load xlen "XLEN events" "" 1
        load xrange "XRANGE events - + COUNT 10" "" 1
        load xreadgroup "XREADGROUP GROUP g c__key__ COUNT 1 NOACK STREAMS events >" "" 50
        stop
    done
done >"$work/ops"

# Memory: one stream of 1,000,000 entries, in a fresh server.
python3 - "$work/xadds.resp" <<'PY'
import sys
with open(sys.argv[1], "wb") as f:
    for i in range(1_000_000):
        args = [b"XADD", b"big", b"%d-0" % (1_700_000_000_000 + i), b"sensor", b"%d" % (i % 1000), b"temp", b"21.5"]
        f.write(b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args))
PY
for server in $servers; do
    start "$server"
    r0=$(rss_kib) u0=$(used)
    redis-cli -p "$port" --pipe <"$work/xadds.resp" >/dev/null
    echo "$server stream $(( $(rss_kib) - r0 )) $(( $(used) - u0 ))"
    stop
done >"$work/mem"

python3 - "$work/ops" "$work/mem" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    server, test, cpu, rate = line.split()
    rows.setdefault((test, server), []).append((float(cpu), float(rate)))
tests = list(dict.fromkeys(t for t, _ in rows))
servers = list(dict.fromkeys(s for _, s in rows))
print("| command | server | server CPU µs/op | ops/s | CPU vs redis |")
print("|---|---|---:|---:|---:|")
for t in tests:
    base = statistics.median(c for c, _ in rows[(t, "redis")])
    for s in servers:
        cpu = statistics.median(c for c, _ in rows[(t, s)])
        rate = statistics.median(r for _, r in rows[(t, s)])
        print(f"| {t} | {s} | {cpu:.2f} | {rate:,.0f} | {cpu / base:.2f}× |")
print()
print("| memory | server | RSS growth KiB | used_memory growth bytes |")
print("|---|---|---:|---:|")
for line in open(sys.argv[2]):
    server, what, rss, used = line.split()
    print(f"| one stream of 1,000,000 entries | {server} | {int(rss):,} | {int(used):,} |")
PY

#!/usr/bin/env bash
# Bitmaps and HyperLogLog, keel against redis-server (and Valkey when
# present), same load, side by side (issue 15's measure):
#   server CPU per op and ops/s for SETBIT, BITCOUNT, PFADD and PFCOUNT
#   (memtier_benchmark, unpipelined, 50 connections, random offsets over a
#   100M-bit bitmap and random elements into one HyperLogLog), then memory
#   of one 100M-bit bitmap and of 100,000 small HyperLogLogs.
#
#   bench/bits_hll.sh                    builds keel (release)
#   KEEL_BIN=path N=20000 RUNS=3 bench/bits_hll.sh
# N is requests per connection. Needs memtier_benchmark on PATH (redis-
# benchmark cannot send a random number as a bare argument: its
# __rand_int__ is zero-padded, which SETBIT refuses as an offset).
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
        load setbit "SETBIT bitmap __key__ 1" "" 99999999
        load getbit "GETBIT bitmap __key__" "" 99999999
        load bitcount "BITCOUNT bitmap 0 4095" "" 1
        load pfadd "PFADD hll __key__" "user:" 10000000
        load pfcount "PFCOUNT hll" "" 1
        stop
    done
done >"$work/ops"

# Memory: one 100M-bit bitmap (its last bit set), and 100,000 HyperLogLogs
# of 100 elements each (sparse), each in a fresh server.
python3 - "$work/hlls.resp" <<'PY'
import sys
with open(sys.argv[1], "wb") as f:
    for i in range(100_000):
        args = [b"PFADD", b"hll:%d" % i] + [b"e%d" % (i * 7 + j) for j in range(100)]
        f.write(b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args))
PY
for server in $servers; do
    start "$server"
    r0=$(rss_kib) u0=$(used)
    redis-cli -p "$port" setbit big 99999999 1 >/dev/null
    echo "$server bitmap $(( $(rss_kib) - r0 )) $(( $(used) - u0 ))"
    stop
    start "$server"
    r0=$(rss_kib) u0=$(used)
    redis-cli -p "$port" --pipe <"$work/hlls.resp" >/dev/null
    echo "$server hlls $(( $(rss_kib) - r0 )) $(( $(used) - u0 ))"
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
    label = {"bitmap": "one 100M-bit bitmap", "hlls": "100,000 HLLs of 100 elements"}[what]
    print(f"| {label} | {server} | {int(rss):,} | {int(used):,} |")
PY

#!/usr/bin/env bash
# Geo, keel against redis-server (and Valkey when present), same load, side
# by side (issue 15's measure): a store locator over 1,000,000 places spread
# over a 10° x 10° square (about one per square kilometre).
#   server CPU per op and ops/s (memtier_benchmark, unpipelined, 50
#   connections) for GEOADD of random members, GEOSEARCH of the 10 nearest
#   within 5 km of a random member, GEOPOS and GEODIST of random members;
#   then the memory of the 1,000,000 members.
#
#   bench/geo.sh                    builds keel (release)
#   KEEL_BIN=path N=20000 RUNS=3 bench/geo.sh
# N is requests per connection. Needs memtier_benchmark on PATH.
# Prints markdown tables on stdout.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/memtier_lib.sh
. "$here/memtier_lib.sh"

# The places: GEOADD places lon lat m:<i>, 1,000 per command.
python3 - "$work/places.resp" <<'PY'
import random, sys
rng = random.Random(7)
with open(sys.argv[1], "wb") as f:
    for start in range(1, 1_000_001, 1000):
        args = [b"GEOADD", b"places"]
        for i in range(start, start + 1000):
            args += [b"%.6f" % rng.uniform(10, 20), b"%.6f" % rng.uniform(35, 45), b"m:%d" % i]
        f.write(b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args))
PY
places() { redis-cli -p "$port" --pipe <"$work/places.resp" >/dev/null; }

servers="redis keel"
[ -n "$VALKEY_BIN" ] && servers="redis valkey keel"
for server in $servers; do
    for run in $(seq "$RUNS"); do
        start "$server"
        places
        load geoadd "GEOADD places 15.087269 37.502669 __key__" "new:" 10000000
        load geosearch "GEOSEARCH places FROMMEMBER __key__ BYRADIUS 5 km ASC COUNT 10" "m:" 1000000
        load geopos "GEOPOS places __key__" "m:" 1000000
        load geodist "GEODIST places __key__ m:1 km" "m:" 1000000
        stop
    done
done >"$work/ops"

for server in $servers; do
    start "$server"
    r0=$(rss_kib) u0=$(used)
    places
    echo "$server places $(( $(rss_kib) - r0 )) $(( $(used) - u0 ))"
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
print("| memory of 1,000,000 geo members | server | RSS growth KiB | used_memory growth bytes |")
print("|---|---|---:|---:|")
base = None
for line in open(sys.argv[2]):
    server, what, rss, used = line.split()
    print(f"| places | {server} | {int(rss):,} | {int(used):,} |")
PY

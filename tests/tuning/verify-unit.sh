#!/usr/bin/env bash
# Checks the files in tuning/: the systemd unit (systemd-analyze verify), the
# sysctl file (every key exists on this kernel) and the example config (parses
# as TOML). Usage: tests/tuning/verify-unit.sh [path/to/keel-binary]
# Exits non-zero on any problem; prints "N passed, N failed" last.
set -uo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
tuning=$root/tuning
pass=0
fail=0
ok() { echo "ok: $*"; pass=$((pass + 1)); }
bad() { echo "FAIL: $*"; fail=$((fail + 1)); }

# systemd-analyze ships in Debian's systemd package. Installing it without
# systemd as PID 1 is harmless on Debian 12 (postinst skips what needs a
# running manager), but only do it when missing, as root.
if ! command -v systemd-analyze >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing systemd for systemd-analyze"
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends systemd >/dev/null ||
            { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive \
                apt-get install -y --no-install-recommends systemd >/dev/null; }
    fi
    command -v systemd-analyze >/dev/null || { echo "FAIL: systemd-analyze unavailable"; exit 1; }
fi

# verify rejects a unit whose ExecStart binary does not exist, and the unit
# names /usr/local/bin/keel. So verify a copy that points at a real keel build
# (argument, else target/release, else target/debug); nothing else changes.
bin=${1:-}
if [ -z "$bin" ]; then
    for b in "$root/target/release/keel" "$root/target/debug/keel"; do
        [ -x "$b" ] && { bin=$b; break; }
    done
fi
if [ -z "$bin" ] || [ ! -x "$bin" ]; then
    echo "FAIL: no keel binary to point ExecStart at: run 'cargo build' or pass a path"
    exit 1
fi
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
grep -q '^ExecStart=/usr/local/bin/keel ' "$tuning/keel.service" ||
    bad "keel.service: ExecStart no longer starts /usr/local/bin/keel"
sed "s|^ExecStart=/usr/local/bin/keel |ExecStart=$bin |" "$tuning/keel.service" >"$tmp/keel.service"

# verify exits 0 on unknown keys and unparsable values (it only warns), so any
# line that names our unit counts as a failure. Lines about other units come
# from this host's own unit files and are shown but not held against us.
out=$(systemd-analyze verify --man=no "$tmp/keel.service" 2>&1)
rc=$?
ours=$(grep -E "keel\.service" <<<"$out" || true)
others=$(grep -vE "keel\.service" <<<"$out" | grep -v '^$' || true)
[ -n "$others" ] && printf 'note (not keel.service):\n%s\n' "$others"
if [ $rc -ne 0 ] || [ -n "$ours" ]; then
    bad "systemd-analyze verify keel.service (rc=$rc):"$'\n'"$ours"
else
    ok "systemd-analyze verify keel.service"
fi

# Settings the tuning notes rely on must stay in the unit.
for want in '^Type=notify$' '^LimitMEMLOCK=' '^LimitNOFILE=' '^Restart=on-failure$' \
    '^RestartSec=' '^User=keel$' '^StateDirectory=keel$' '^TimeoutStopSec=' \
    '^SystemCallFilter=.*io_uring_setup'; do
    grep -qE "$want" "$tuning/keel.service" && ok "unit has $want" || bad "unit lacks $want"
done
# A deny-list filter could drop io_uring or sched_setaffinity: refuse any.
if grep -qE '^SystemCallFilter=~' "$tuning/keel.service"; then
    bad "unit has a SystemCallFilter deny list (~...): check it keeps io_uring_* and @resources"
else
    ok "no SystemCallFilter deny list"
fi

# sysctl: "key = value" lines whose key exists on this kernel ("-key" may be
# missing: it only exists on newer kernels).
while read -r key; do
    name=${key#-}
    if [ -e "/proc/sys/${name//.//}" ]; then
        ok "sysctl $name exists"
    elif [ "$key" != "$name" ]; then
        ok "sysctl $name absent here, optional"
    else
        bad "sysctl $name unknown here"
    fi
done < <(grep -vE '^\s*(#|;|$)' "$tuning/99-keel.conf" | sed -E 's/^\s*(-?[^= ]+)\s*=.*/\1/')

# The example config must at least be valid TOML.
if python3 -c 'import sys, tomllib; tomllib.load(open(sys.argv[1], "rb"))' "$tuning/keel.toml.example"; then
    ok "keel.toml.example parses as TOML"
else
    bad "keel.toml.example is not valid TOML"
fi

# keel itself must accept the example (its loader refuses unknown keys): start
# it on a free loopback port with a scratch dir, wait (bounded) for PONG, stop.
if command -v redis-cli >/dev/null; then
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    "$bin" --config "$tuning/keel.toml.example" --bind 127.0.0.1 --port "$port" --dir "$tmp" \
        >"$tmp/keel.log" 2>&1 &
    kpid=$!
    up=
    for _ in $(seq 50); do
        kill -0 "$kpid" 2>/dev/null || break
        [ "$(timeout 2 redis-cli -p "$port" ping 2>/dev/null)" = PONG ] && { up=1; break; }
        sleep 0.2
    done
    kill -TERM "$kpid" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$kpid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$kpid" 2>/dev/null
    wait "$kpid" 2>/dev/null
    if [ -n "$up" ]; then
        ok "keel starts with keel.toml.example"
    else
        bad "keel did not start with keel.toml.example:"$'\n'"$(tail -5 "$tmp/keel.log")"
    fi
else
    echo "note: redis-cli missing, keel.toml.example not tried with keel"
fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]

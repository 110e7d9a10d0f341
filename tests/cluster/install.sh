#!/usr/bin/env bash
# Idempotent install of what tests/cluster needs on a Debian machine: iproute2
# (ip, tc), util-linux (setpriv), redis-tools (redis-cli). Quick and silent when
# everything is there. Python 3 and pytest come from tests/install-deps.sh.
#
#   bash tests/cluster/install.sh          # install what is missing
#   bash tests/cluster/install.sh --check  # also prove namespaces, veth, bridge work
set -euo pipefail

need=()
{ command -v ip && command -v tc; } >/dev/null 2>&1 || need+=(iproute2)
command -v setpriv >/dev/null 2>&1 || need+=(util-linux)
command -v redis-cli >/dev/null 2>&1 || need+=(redis-tools)
if ((${#need[@]})); then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if [ "${1:-}" = "--check" ]; then
    [ "$(id -u)" -eq 0 ] || { echo "tests/cluster needs root" >&2; exit 1; }
    ns="kccheck$$"
    trap 'ip netns del "$ns-a" 2>/dev/null || true; ip netns del "$ns-b" 2>/dev/null || true' EXIT
    ip netns add "$ns-a"
    ip netns add "$ns-b"
    ip -n "$ns-b" link add br0 type bridge
    ip -n "$ns-b" link add p1 type veth peer name eth0 netns "$ns-a"
    ip -n "$ns-b" link set p1 master br0
    ip -n "$ns-a" rule add pref 1000 lookup local
    ip -n "$ns-a" rule del pref 0
    ip -n "$ns-a" rule add pref 100 from 10.77.0.9 iif eth0 blackhole
    tc -n "$ns-a" qdisc replace dev eth0 root tbf rate 1mbit burst 64kb latency 100ms
    echo "tests/cluster: network namespaces, veth, bridge, ip rules and tbf work"
fi

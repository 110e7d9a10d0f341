#!/usr/bin/env bash
# Idempotent install of what tests/python needs, on a Debian machine with
# Python 3 + pip already present. Quick when everything is installed already.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PY="${PYTHON:-python3}"

need_apt=()
# prometheus: test_grafana_dashboard.py runs the dashboard's queries on it.
# curl: the README's demo walkthrough (test_demo.py) asks /health with it.
for bin in redis-server:redis-server redis-cli:redis-tools redis-benchmark:redis-tools \
    prometheus:prometheus curl:curl; do
    command -v "${bin%%:*}" >/dev/null 2>&1 || need_apt+=("${bin##*:}")
done
if ((${#need_apt[@]})); then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    # Keep Debian's postinst from starting a system redis on port 6379 (or a
    # system Prometheus).
    policy_created=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
        $sudo chmod +x /usr/sbin/policy-rc.d
        policy_created=1
    fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_apt[@]}" >/dev/null
    [ "$policy_created" -eq 0 ] || $sudo rm -f /usr/sbin/policy-rc.d
fi

# If a system redis service is running anyway, stop it (tests never use fixed
# ports, but a stray daemon on 6379 confuses people running redis-cli by hand).
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet redis-server 2>/dev/null; then
    systemctl stop redis-server || true
    systemctl disable redis-server >/dev/null 2>&1 || true
elif [ -x /etc/init.d/redis-server ] && /etc/init.d/redis-server status >/dev/null 2>&1; then
    /etc/init.d/redis-server stop >/dev/null 2>&1 || true
fi

# Python packages: skip pip entirely when the requirements are already met.
if ! "$PY" - "$here/requirements.txt" <<'PYEOF' 2>/dev/null
import sys
from importlib.metadata import version, PackageNotFoundError
try:
    from packaging.requirements import Requirement
except ImportError:
    from pip._vendor.packaging.requirements import Requirement
for line in open(sys.argv[1]):
    line = line.split("#")[0].strip()
    if not line:
        continue
    req = Requirement(line)
    try:
        if not req.specifier.contains(version(req.name), prereleases=True):
            sys.exit(1)
    except PackageNotFoundError:
        sys.exit(1)
PYEOF
then
    "$PY" -m pip install -q --disable-pip-version-check -r "$here/requirements.txt"
fi

# Node.js client tests (tests/node): `npm ci` only when node_modules is missing or
# older than package-lock.json (npm writes node_modules/.package-lock.json).
node_dir="$here/node"
if [ -f "$node_dir/package-lock.json" ]; then
    if ! command -v npm >/dev/null 2>&1; then
        echo "install-deps: npm not found (Node.js >= 20 is needed for tests/node)" >&2
        exit 1
    fi
    if [ ! -f "$node_dir/node_modules/.package-lock.json" ] ||
       [ "$node_dir/package-lock.json" -nt "$node_dir/node_modules/.package-lock.json" ] ||
       [ "$node_dir/package.json" -nt "$node_dir/node_modules/.package-lock.json" ]; then
        npm ci --prefix "$node_dir" --no-audit --no-fund --loglevel=error
    fi
    echo "node $(node --version)"
fi

# Network namespaces, veth, tc and setpriv for the cluster harness.
bash "$here/cluster/install.sh"

redis-server --version
"$PY" -c 'import redis, pytest; print("redis-py", redis.__version__, "pytest", pytest.__version__)'

#!/usr/bin/env bash
# Runs every test of keel: installs what the tests need (idempotently: Debian's
# redis-server and redis-tools, redis-py and pytest from PyPI, the Node
# clients from npm), builds, then runs the Rust unit and integration tests,
# the systemd unit check, the Node client tests, the cluster harness's tests
# (network namespaces), and the Python suites against
# real clients and a reference redis-server (last, so its summary closes).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash tests/install-deps.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -q -- -D warnings
cargo build --workspace --all-targets
cargo test --workspace
bash tests/tuning/verify-unit.sh target/debug/keel
bash tests/node/run.sh
# The cluster harness (network namespaces; needs root): its own pytest.ini.
python3 -m pytest -q tests/cluster
python3 -m pytest -q tests/python

#!/usr/bin/env bash
# Runs the Node.js client tests (ioredis, node-redis, async-ratelimiter) against
# keel: every *.test.js file starts its own server (see server.js), so the files
# run one after another. Exits non-zero if any test fails.
#   KEEL_BIN=...              keel binary (default <repo>/target/debug/keel)
#   KEEL_TEST_TARGET=redis    run against a redis-server instead (self-check)
# Dependencies: `npm ci --prefix tests/node` (tests/install-deps.sh does it).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
if [ ! -d node_modules/ioredis ]; then
    echo "tests/node: node_modules missing; run: npm ci --prefix tests/node" >&2
    exit 2
fi
exec node --test --test-reporter=spec --test-concurrency=1 --test-timeout=120000 "$@" ./*.test.js

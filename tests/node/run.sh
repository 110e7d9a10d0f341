#!/usr/bin/env bash
# Runs the Node.js client tests (ioredis, node-redis, async-ratelimiter) against
# keel: every *.test.js file starts its own server (see server.js), so the files
# run one after another. Then, against keel, the files in BACKUP_FILES run
# again through a backup of a three-node keel cluster (KEEL_TEST_TARGET=backup,
# see cluster.js). Exits non-zero if any test fails.
#   KEEL_BIN=...              keel binary (default <repo>/target/debug/keel)
#   KEEL_TEST_TARGET=redis    run against a redis-server instead (self-check;
#                             no backup run)
#   KEEL_TEST_TARGET=backup   the backup run only
# Extra arguments go to `node --test` (e.g. --test-name-pattern=...).
# Dependencies: `npm ci --prefix tests/node` (tests/install-deps.sh does it).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
if [ ! -d node_modules/ioredis ]; then
    echo "tests/node: node_modules missing; run: npm ci --prefix tests/node" >&2
    exit 2
fi
# Files whose tests hold through a backup (the front door forwards what must
# run on the primary); all of them, today.
BACKUP_FILES=(./apps.test.js ./node-redis.test.js)
target="$(printf '%s' "${KEEL_TEST_TARGET:-keel}" | tr -d '[:space:]' | tr '[:upper:]' '[:lower:]')"

run() {
    node --test --test-reporter=spec --test-concurrency=1 --test-timeout=120000 "$@"
}

status=0
if [ "$target" != backup ]; then
    run "$@" ./*.test.js || status=$?
fi
if [ "$target" = keel ] || [ "$target" = backup ]; then
    echo "== tests/node through backup b of a three-node keel cluster (KEEL_TEST_TARGET=backup)"
    KEEL_TEST_TARGET=backup run "$@" "${BACKUP_FILES[@]}" || status=$?
fi
exit "$status"

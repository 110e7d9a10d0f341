#!/usr/bin/env bash
# Runs each fuzz target of tests/fuzz/ for a bounded time: rounds of
# property tests with growing case counts and a new seed each round, until
# the target's time is spent (a round started in time runs to its end).
#
#   tests/fuzz.sh [seconds-per-target] [target...]
#
# Targets: resp records repl_frames bus rest_json dump commands (default:
# all), 60 s each by default. FUZZ_SEED sets the first round's seed
# (default: the time); each failure prints the smallest input found, the
# command that replays it, and is saved under proptest-regressions/fuzz/.
# Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

per="${1:-60}"
shift || true
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
    targets=(resp records repl_frames bus rest_json dump commands acl)
fi
seed="${FUZZ_SEED:-$(date +%s)}"

# Built once and copied: edits and builds made meanwhile do not change what
# runs. (Run from the package root: the regressions files are relative.)
built="$(cargo test --test fuzz --no-run 2>&1 | sed -n 's/.*Executable .*(\(.*fuzz-[0-9a-f]*\)).*/\1/p' | tail -1)"
if [ ! -x "$built" ]; then
    echo "fuzz.sh: could not build the fuzz targets (cargo test --test fuzz --no-run)" >&2
    exit 2
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
bin="$work/fuzz"
log="$work/log"
cp "$built" "$bin"
for t in "${targets[@]}"; do
    if [ ! -f "tests/fuzz/$t.rs" ]; then
        echo "fuzz.sh: no target '$t' (tests/fuzz/$t.rs)" >&2
        exit 2
    fi
    end=$((SECONDS + per))
    cases=256
    rounds=0
    total=0
    while [ "$SECONDS" -lt "$end" ]; do
        if ! KEEL_FUZZ_CASES="$cases" PROPTEST_RNG_SEED="$seed" "$bin" -q "$t::" >"$log" 2>&1; then
            cat "$log"
            echo "fuzz.sh: target $t FAILED at seed $seed, $cases cases; replay with:" >&2
            echo "  KEEL_FUZZ_CASES=$cases PROPTEST_RNG_SEED=$seed cargo test --test fuzz -- $t::" >&2
            exit 1
        fi
        total=$((total + cases))
        rounds=$((rounds + 1))
        seed=$((seed + 1))
        # Longer rounds as time allows, but short enough to end near the bound.
        if [ "$cases" -lt 16384 ]; then
            cases=$((cases * 2))
        fi
    done
    echo "fuzz.sh: $t: $rounds rounds, $total cases per property, no failure"
done

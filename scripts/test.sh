#!/usr/bin/env bash
# The whole test suite: set-up, formatting, lint, type check, then every test.
# Ends with one line "ext4ts tests: N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1
. scripts/env.sh
set -e
deno fmt --check
deno lint
deno task check
set +e
log=$(mktemp)
NO_COLOR=1 deno task test "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
deno run --allow-read scripts/test_durations.ts "$log" || true
summary=$(grep -E '^(ok|FAILED) \| [0-9]+ passed' "$log" | tail -n 1)
passed=$(sed -E 's/.*\| ([0-9]+) passed.*/\1/' <<<"$summary")
failed=$(sed -E 's/.*\| ([0-9]+) failed.*/\1/' <<<"$summary")
rm -f "$log"
if [ -z "$summary" ]; then
  echo "ext4ts tests: the test runner printed no summary (exit $rc)"
  exit 1
fi
echo "ext4ts tests: ${passed:-0} passed, ${failed:-0} failed"
exit "$rc"

#!/bin/sh
# test.sh - build from a clean tree and run every test; the README's test command.
set -eu
cd "$(dirname "$0")/.."
scripts/deps.sh
[ -x configure ] || autoreconf -fi
[ -f Makefile ] || ./configure --enable-werror
status=0
make -j"$(nproc)" >/dev/null
make -j"$(nproc)" check || status=$?
# The unit suites' own summaries, then one plain closing line.
grep -h "Checks:" tests/*.log || true
awk '/^# PASS:/ {p = $3} /^# FAIL:/ {f = $3} /^# ERROR:/ {e = $3}
     END {printf "%d passed, %d failed\n", p, f + e}' test-suite.log
exit "$status"

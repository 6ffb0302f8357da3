# SPDX-License-Identifier: MIT
# lib.sh - shared helpers for the shell tests (sourced, not run).
set -u
: "${top_srcdir:=$(cd "$(dirname "$0")/.." && pwd)}"
: "${top_builddir:=$top_srcdir}"
: "${PYTHON3:=/usr/bin/python3}"
ATROUS="$top_builddir/src/atrous"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/atrousd-test.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
FAILS=0
PASSES=0

ok() { PASSES=$((PASSES + 1)); echo "ok - $*"; }
not_ok() { FAILS=$((FAILS + 1)); echo "not ok - $*"; }

# check DESCRIPTION COMMAND...: the command must succeed
check() { local d=$1; shift; if "$@"; then ok "$d"; else not_ok "$d"; fi; }

# require WHAT COMMAND...: the command must succeed, or the test cannot run:
# under CI that is a failure, elsewhere a skip.
require() {
	local what=$1; shift
	if "$@" >/dev/null 2>&1; then return 0; fi
	if [ -n "${CI:-}" ]; then echo "not ok - $what missing (required under CI)"; exit 1; fi
	echo "SKIP: $what not installed"; exit 77
}

need_numpy() { require "numpy for $PYTHON3" "$PYTHON3" -c 'import numpy'; }

finish() {
	echo "$PASSES passed, $FAILS failed"
	[ "$FAILS" -eq 0 ]
}

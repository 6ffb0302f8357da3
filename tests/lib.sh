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

# Python with NumPy is required; under CI its absence is a failure, not a skip.
need_numpy() {
	if "$PYTHON3" -c 'import numpy' 2>/dev/null; then return 0; fi
	if [ -n "${CI:-}" ]; then echo "not ok - $PYTHON3 has no numpy (required under CI)"; exit 1; fi
	echo "SKIP: $PYTHON3 has no numpy"; exit 77
}

finish() {
	echo "$PASSES passed, $FAILS failed"
	[ "$FAILS" -eq 0 ]
}

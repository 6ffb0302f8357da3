#!/bin/sh
# SPDX-License-Identifier: MIT
# test.sh - build from a clean tree and run every test; the README's test command.
#
# 1. make check: unit suites and integration tests, built with -Werror.
# 2. make distcheck --enable-sanitizers: the same tests from the release
#    tarball under AddressSanitizer (leaks on) and UBSan; any report fails.
# 3. valgrind memcheck over the unit suites, and over the daemon through
#    every end of a request (tests/valgrind_daemon.py).
# 4. make fuzz: each libFuzzer target for FUZZ_SECONDS (default 60).
# 5. tests/load: short load and overload runs with wrk, and impatient
#    clients (resets, FINs, short deadlines) beside patient ones.
# Set ATROUSD_SKIP=sanitizers,valgrind,fuzz,load to skip stages locally.
set -eu
cd "$(dirname "$0")/.."
scripts/deps.sh --test
[ -x configure ] || autoreconf -fi
[ -f Makefile ] || ./configure --enable-werror
jobs=$(nproc)
passed=0
failed=0
skip() { case ",${ATROUSD_SKIP:-}," in *",$1,"*) echo "($1: skipped by ATROUSD_SKIP)"; return 0;; esac; return 1; }
stage() { # NAME STATUS
	if [ "$2" -eq 0 ]; then passed=$((passed + 1)); echo "stage $1: ok"
	else failed=$((failed + 1)); echo "stage $1: FAILED"; fi
}

# What a failing test printed: its failed checks and the end of its log.
failed_logs() { # BUILDDIR
	for trs in "$1"/tests/*.trs; do
		[ -f "$trs" ] && grep -qE "^:test-result: (FAIL|ERROR)" "$trs" || continue
		l=${trs%.trs}.log
		echo "---- $l"
		grep -E "^not ok|Traceback|Error|Sanitizer|runtime error" "$l" | head -20 || true
		tail -15 "$l"
	done
}

make -j"$jobs" >/dev/null
st=0
make -j"$jobs" check || st=$?
grep -h "Checks:" tests/*.log || true
awk '/^# PASS:/ {p = $3} /^# FAIL:/ {f = $3} /^# ERROR:/ {e = $3}
     END {printf "make check: %d passed, %d failed\n", p, f + e}' test-suite.log
[ "$st" -eq 0 ] || failed_logs .
stage check "$st"

if ! skip sanitizers; then
	log=$(mktemp)
	st=0
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		make -j"$jobs" distcheck DISTCHECK_CONFIGURE_FLAGS="--enable-sanitizers --enable-werror" \
		>"$log" 2>&1 || st=$?
	if [ "$st" -eq 0 ]; then
		awk '/^# PASS:/ {p = $3} END {printf "sanitizer distcheck: %d passed, 0 failed\n", p}' "$log"
	else
		grep -E "^(FAIL|ERROR):|runtime error|Sanitizer|not ok" "$log" | head -40 || true
		tail -20 "$log"
		failed_logs atrousd-*/_build/sub
	fi
	rm -f "$log" atrousd-*.tar.gz
	stage sanitizers "$st"
fi

if ! skip valgrind; then
	st=0
	for t in $(ls tests/check_* | grep -v '\.'); do
		if CK_FORK=no ATROUSD_QUICK=1 valgrind -q --error-exitcode=99 --leak-check=full \
			--errors-for-leak-kinds=definite,indirect "$t" >"$t.valgrind" 2>&1; then
			echo "valgrind $t: $(grep -h Checks "$t.valgrind")"
		else
			st=1
			echo "valgrind $t: FAILED"
			tail -30 "$t.valgrind"
		fi
	done
	# The daemon itself, through every end of a request.
	if "${PYTHON3:-/usr/bin/python3}" tests/valgrind_daemon.py >tests/valgrind_daemon.log 2>&1; then
		echo "valgrind daemon: $(tail -1 tests/valgrind_daemon.log)"
	else
		st=1
		echo "valgrind daemon: FAILED"
		tail -40 tests/valgrind_daemon.log
	fi
	stage valgrind "$st"
fi

if ! skip fuzz; then
	st=0
	make fuzz FUZZ_SECONDS="${FUZZ_SECONDS:-60}" || st=$?
	stage fuzz "$st"
fi

if ! skip load; then
	st=0
	"${PYTHON3:-/usr/bin/python3}" tests/load/load.py --short || st=$?
	stage load "$st"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]

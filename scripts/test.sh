#!/bin/sh
# test.sh - build from a clean tree and run every test; the README's test command.
#
# 1. make check: the unit suites and the integration tests, built with -Werror.
# 2. make distcheck with --enable-sanitizers: the same tests again from the
#    release tarball, in a separate build, under AddressSanitizer (leak
#    detection on) and UndefinedBehaviorSanitizer (any report fails).
set -eu
cd "$(dirname "$0")/.."
scripts/deps.sh
[ -x configure ] || autoreconf -fi
[ -f Makefile ] || ./configure --enable-werror
jobs=$(nproc)
status=0
make -j"$jobs" >/dev/null
make -j"$jobs" check || status=$?
grep -h "Checks:" tests/*.log || true
awk '/^# PASS:/ {p = $3} /^# FAIL:/ {f = $3} /^# ERROR:/ {e = $3}
     END {printf "make check: %d passed, %d failed\n", p, f + e}' test-suite.log
passed=$(awk '/^# PASS:/ {print $3}' test-suite.log)
failed=$(awk '/^# FAIL:/ {f = $3} /^# ERROR:/ {e = $3} END {print f + e}' test-suite.log)

if [ "$status" -eq 0 ] && [ "${ATROUSD_SKIP_SANITIZERS:-}" != 1 ]; then
	export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0
	export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
	san_log=$(mktemp)
	if make -j"$jobs" distcheck \
		DISTCHECK_CONFIGURE_FLAGS="--enable-sanitizers --enable-werror" >"$san_log" 2>&1; then
		san_pass=$(awk '/^# PASS:/ {p = $3} END {print p + 0}' "$san_log")
		echo "sanitizer distcheck: $san_pass passed, 0 failed"
		passed=$((passed + san_pass))
	else
		status=1
		failed=$((failed + 1))
		grep -E "^(FAIL|ERROR):|runtime error|Sanitizer|not ok" "$san_log" | head -40 || true
		tail -20 "$san_log"
		echo "sanitizer distcheck failed"
	fi
	rm -f "$san_log" atrousd-*.tar.gz
fi
echo "$passed passed, $failed failed"
exit "$status"

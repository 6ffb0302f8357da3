#!/bin/sh
# SPDX-License-Identifier: MIT
# man.sh - the man pages render without groff warnings, and the keys in
# atrousd.conf(5) and conf/atrousd.conf are exactly the option table's.
. "$(dirname "$0")/lib.sh"
ATROUSD="$top_builddir/src/atrousd"
require groff command -v groff
for page in atrousd.8 atrousd.conf.5 atrous.1; do
	out=$(groff -man -ww -z "$top_srcdir/docs/$page" 2>&1)
	check "$page renders without warnings" [ -z "$out" ]
	[ -z "$out" ] || echo "$out"
done
sed -n '/^\.\\" BEGIN KEYS/,/^\.\\" END KEYS/p' "$top_srcdir/docs/atrousd.conf.5" |
	sed '1d;$d' >"$WORK/man-keys"
"$ATROUSD" --print-man-keys >"$WORK/table-keys"
check "atrousd.conf(5) lists exactly the option table's keys and defaults" \
	cmp -s "$WORK/man-keys" "$WORK/table-keys"
"$ATROUSD" --print-sample-config >"$WORK/sample"
check "conf/atrousd.conf is the option table's sample" cmp -s "$WORK/sample" "$top_srcdir/conf/atrousd.conf"
"$ATROUSD" --help >"$WORK/help"
missing=$(sed -n 's/.*Flag: \\fB\\-\\-\(.*\)\\fR\./\1/p' "$WORK/table-keys" | sed 's/\\-/-/g' |
	while read -r flag; do grep -q -- "--$flag " "$WORK/help" || echo "$flag"; done)
nflags=$(grep -c "Flag:" "$WORK/table-keys")
check "--help lists every key's flag ($nflags)" sh -c '[ -z "$1" ] && [ "$2" -gt 10 ]' _ "$missing" "$nflags"
check "atrousd --check-config accepts the shipped file" "$ATROUSD" --config "$top_srcdir/conf/atrousd.conf" --check-config
"$ATROUSD" --config "$top_srcdir/conf/atrousd.conf" --check-config --max-queue 0 >/dev/null 2>"$WORK/err"
check "--check-config refuses max_queue 0 with exit 1" sh -c "[ $? -eq 1 ] && grep -q max_queue '$WORK/err'"
finish

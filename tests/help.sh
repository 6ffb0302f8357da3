#!/bin/sh
# SPDX-License-Identifier: MIT
# help.sh - the programs' --help comes from the tables that dispatch them:
# every command of atrous and every action of atrousd is listed, works, and
# has its place in the man page.
. "$(dirname "$0")/lib.sh"
ATROUSD="$top_builddir/src/atrousd"
"$ATROUS" --help >"$WORK/atrous-help"
cmds=$(sed -n '/^Commands:/,/^$/p' "$WORK/atrous-help" | sed '1d;$d' | awk '{print $1}')
check "atrous --help lists conv2d, run, import and bench" \
	sh -c '[ "$(echo $1)" = "conv2d run import bench" ]' _ "$cmds"
for c in $cmds; do
	"$ATROUS" "$c" --help >"$WORK/cmd-help"
	check "atrous $c --help exits 0 and matches its part of atrous --help" \
		grep -qF "$(head -1 "$WORK/cmd-help")" "$WORK/atrous-help"
	check "atrous.1 describes $c" grep -q "^\.B.* $c\$\|^\.B $c\$\|atrous $c" "$top_srcdir/docs/atrous.1"
	for f in $(grep -o -- "^  --[a-z-]*" "$WORK/cmd-help" | sed 's/^  --//'); do
		[ "$f" = help ] && continue
		check "atrous.1 names $c's --$f" grep -q -- "\\\\-\\\\-$(echo "$f" | sed 's/-/\\\\-/g')" \
			"$top_srcdir/docs/atrous.1"
	done
	"$ATROUS" "$c" --no-such-flag 2>"$WORK/err"
	rc=$?
	check "atrous $c refuses an unknown flag with exit 2, naming it" \
		sh -c '[ "$1" -eq 2 ] && grep -q -- "--no-such-flag" "$2"' _ "$rc" "$WORK/err"
done
"$ATROUS" frobnicate 2>"$WORK/err"
rc=$?
check "an unknown command exits 2" [ "$rc" -eq 2 ]
check "... naming it" grep -q "unknown command 'frobnicate'" "$WORK/err"

"$ATROUSD" --help >"$WORK/atrousd-help"
actions=$(sed -n '/^Actions:/,$p' "$WORK/atrousd-help" | grep -o -- "--[a-z-]*" | sed 's/^--//')
check "atrousd --help lists six actions" sh -c '[ "$(echo "$1" | wc -w)" -eq 6 ]' _ "$actions"
for a in $actions; do
	check "atrousd.8 describes --$a" grep -q -- "\\\\-\\\\-$(echo "$a" | sed 's/-/\\\\-/g')" \
		"$top_srcdir/docs/atrousd.8"
done
for a in help version print-sample-config print-man-keys; do
	check "atrousd --$a exits 0 with output" sh -c '"$1" "--$2" | grep -q .' _ "$ATROUSD" "$a"
done
finish

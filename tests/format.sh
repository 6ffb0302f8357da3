#!/bin/sh
# SPDX-License-Identifier: MIT
# format.sh - every C source must match .clang-format exactly.
. "$(dirname "$0")/lib.sh"
: "${CLANG_FORMAT:=$(command -v clang-format || true)}"
require clang-format test -n "$CLANG_FORMAT"
cd "$top_srcdir" || exit 1
for f in src/*.c src/*.h tests/*.c tests/*.h; do
	[ -e "$f" ] || continue
	if "$CLANG_FORMAT" --style=file "$f" | cmp -s - "$f"; then
		ok "$f formatted"
	else
		not_ok "$f differs from clang-format (run: clang-format -i $f)"
	fi
done
finish

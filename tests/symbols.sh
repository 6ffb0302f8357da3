#!/bin/sh
# SPDX-License-Identifier: MIT
# symbols.sh - every global symbol of the internal libraries carries its
# module's prefix (tensor_*, conv_*, ...), so names say where they live.
. "$(dirname "$0")/lib.sh"
LIBS="$top_builddir/src/.libs/libcore.a $top_builddir/src/.libs/libserve.a"
for lib in $LIBS; do
	if ! command -v nm >/dev/null || [ ! -f "$lib" ]; then
		echo "not ok - nm or $lib missing"; exit 1
	fi
done
# module -> allowed prefixes (a module may also own a plural registry)
prefixes() {
	case "$1" in
	error) echo "err_" ;;
	model) echo "model_" ;;
	models) echo "models_" ;;
	api) echo "api_ reply_" ;;
	layer | shape) echo "conv_" ;; # a conv layer; TensorFlow's rules for one
	*) echo "$1_" ;;
	esac
}
bad=""
count=0
# shellcheck disable=SC2086
nm --defined-only -g -A $LIBS | grep " " | while read -r file _ sym; do echo "$file $sym"; done |
	sed 's/^[^:]*:lib[a-z]*_la-\([a-z]*\)\.o:[^ ]*/\1/' >"$WORK/syms"
while read -r module sym; do
	case "$sym" in __*) continue ;; esac # the compiler's own (sanitizers)
	count=$((count + 1))
	ok=0
	for p in $(prefixes "$module"); do
		case "$sym" in "$p"*) ok=1 ;; esac
	done
	[ "$ok" -eq 1 ] || bad="$bad $module:$sym"
done <"$WORK/syms"
check "$(wc -l <"$WORK/syms") global symbols, each with its module's prefix" [ -z "$bad" ]
[ -z "$bad" ] || echo "# unprefixed:$bad"
finish

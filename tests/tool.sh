#!/bin/sh
# SPDX-License-Identifier: MIT
# tool.sh - the atrous command line: usage and data errors, exit codes, no
# output left behind on failure, and results against NumPy.
. "$(dirname "$0")/lib.sh"
need_numpy

"$PYTHON3" - "$WORK" <<'PY'
import sys, numpy as np
w = sys.argv[1]
r = np.random.default_rng(1)
np.save(w + "/x.npy", r.standard_normal((1, 5, 5, 3)).astype(np.float32))
np.save(w + "/x3.npy", r.standard_normal((5, 5, 3)).astype(np.float32))
np.save(w + "/f.npy", r.standard_normal((3, 3, 3, 2)).astype(np.float32))
np.save(w + "/f4.npy", r.standard_normal((3, 3, 4, 2)).astype(np.float32))
np.save(w + "/be.npy", r.standard_normal((3, 3, 3, 2)).astype(">f4"))
np.save(w + "/i32.npy", np.ones((3, 3, 3, 2), dtype=np.int32))
np.save(w + "/b.npy", r.standard_normal(2).astype(np.float32))
np.save(w + "/b5.npy", r.standard_normal(5).astype(np.float32))
open(w + "/trunc.npy", "wb").write(open(w + "/f.npy", "rb").read()[:-7])
PY

OUT="$WORK/y.npy"
# expect STATUS MESSAGE-SUBSTRING ARGS...: exit status, stderr text, no output file
expect() {
	want=$1 msg=$2; shift 2
	rm -f "$OUT"
	"$ATROUS" "$@" >"$WORK/stdout" 2>"$WORK/stderr"
	got=$?
	if [ "$got" -ne "$want" ]; then not_ok "atrous $* exited $got, wanted $want"; return; fi
	if ! grep -qF -- "$msg" "$WORK/stderr"; then
		not_ok "atrous $*: stderr lacks '$msg': $(cat "$WORK/stderr")"; return
	fi
	if [ "$(wc -l <"$WORK/stderr")" -ne 1 ]; then not_ok "atrous $*: stderr is not one line"; return; fi
	if [ -e "$OUT" ] || ls "$WORK" | grep -q tmp; then not_ok "atrous $* left an output file"; return; fi
	ok "atrous $* -> $want ($msg)"
}
X="--value $WORK/x.npy"
F="--filters $WORK/f.npy"

expect 2 "missing command"
expect 2 "unknown command 'deconv'" deconv
expect 2 "needs --value" conv2d $X $F --rate 2 --padding SAME
expect 2 "--rate 'two'" conv2d $X $F --rate two --padding SAME --output "$OUT"
expect 2 "--rate '2,'" conv2d $X $F --rate 2, --padding SAME --output "$OUT"
expect 2 'padding must be "SAME" or "VALID", got "same"' conv2d $X $F --rate 2 --padding same --output "$OUT"
expect 2 'activation must be "none" or "relu"' conv2d $X $F --rate 2 --padding SAME --activation tanh --output "$OUT"
expect 2 "unexpected argument 'extra'" conv2d $X $F --rate 2 --padding SAME --output "$OUT" extra
expect 1 "rate must be >= 1, got 0" conv2d $X $F --rate 0 --padding SAME --output "$OUT"
expect 1 "rate must be >= 1, got [2, -1]" conv2d $X $F --rate 2,-1 --padding SAME --output "$OUT"
expect 1 "filters in_channels 4 != value channels 3" conv2d $X --filters "$WORK/f4.npy" --rate 2 --padding SAME --output "$OUT"
expect 1 "VALID output height would be negative" conv2d $X $F --rate 3 --padding VALID --output "$OUT"
expect 1 "value must be rank 4" conv2d --value "$WORK/x3.npy" $F --rate 1 --padding SAME --output "$OUT"
expect 1 "be.npy: dtype '>f4' is big-endian" conv2d $X --filters "$WORK/be.npy" --rate 1 --padding SAME --output "$OUT"
expect 1 "i32.npy: dtype '<i4' is not float32" conv2d $X --filters "$WORK/i32.npy" --rate 1 --padding SAME --output "$OUT"
expect 1 "trunc.npy: header shape needs 216 data bytes but the file has 209" conv2d $X --filters "$WORK/trunc.npy" --rate 1 --padding SAME --output "$OUT"
expect 1 "nothere.npy: No such file" conv2d --value "$WORK/nothere.npy" $F --rate 1 --padding SAME --output "$OUT"
expect 1 "bias shape [5] != [2]" conv2d $X $F --bias "$WORK/b5.npy" --rate 1 --padding SAME --output "$OUT"
expect 1 "$WORK/nodir/y.npy" conv2d $X $F --rate 1 --padding SAME --output "$WORK/nodir/y.npy"

check "atrous --help prints usage" sh -c '"$0" --help | grep -q "atrous conv2d:" && "$0" --help | grep -q -- "--value FILE"' "$ATROUS"
check "atrous --version prints the version" sh -c '"$0" --version | grep -qE "^atrous [0-9]+\.[0-9]+\.[0-9]+$"' "$ATROUS"
check "atrous conv2d with bias and relu succeeds" "$ATROUS" conv2d $X $F --bias "$WORK/b.npy" --activation relu --rate 2 --padding SAME --output "$OUT"
check "the output is float32 [1,5,5,2] and non-negative" "$PYTHON3" -c "
import numpy as np, sys
y = np.load('$OUT')
sys.exit(not (y.dtype == np.float32 and y.shape == (1, 5, 5, 2) and (y >= 0).all()))"
check "atrous conv2d matches the NumPy reference" "$PYTHON3" "$top_srcdir/tests/numpy_ref.py" "$ATROUS" "$WORK"
finish

#!/bin/sh
# SPDX-License-Identifier: MIT
# run_model.sh - `atrous run` on the demo model agrees with the daemon's
# NumPy reference, and refuses bad input with exit 1 and no output.
. "$(dirname "$0")/lib.sh"
need_numpy
M="$top_srcdir/conf/models/demo"
check "atrous run on the demo model" "$ATROUS" run --model "$M" \
	--value "$top_srcdir/conf/demo/aspp_input.npy" --output "$WORK/y.npy"
check "the result matches the NumPy ASPP reference" "$PYTHON3" -c "
import sys, numpy as np
sys.path.insert(0, '$top_srcdir/tests')
from numpy_ref import aspp_ref
ld = lambda n: np.load('$M/' + n)
x = np.load('$top_srcdir/conf/demo/aspp_input.npy')
br = [{'f': ld('b0.npy'), 'rate': 1, 'b': ld('b0_bias.npy'), 'relu': True},
      {'f': ld('b1.npy'), 'rate': 2, 'relu': True}, {'f': ld('b2.npy'), 'rate': 4, 'relu': True}]
ref = aspp_ref(x, br, {'f': ld('pool.npy'), 'b': ld('pool_bias.npy'), 'relu': True},
               {'f': ld('proj.npy'), 'b': ld('proj_bias.npy'), 'relu': True})
y = np.load('$WORK/y.npy')
sys.exit(not (y.shape == ref.shape and np.abs(y - ref).max() <= 1e-4 * max(1, np.abs(ref).max())))"
"$ATROUS" run --model "$M" --value "$top_srcdir/conf/demo/value.npy" --output "$WORK/z.npy" 2>"$WORK/err"
rc=$?
check "a value with the wrong channels exits 1" [ "$rc" -eq 1 ]
check "... naming the mismatch" grep -q "in_channels 8 != value channels 3" "$WORK/err"
check "... and writes nothing" [ ! -e "$WORK/z.npy" ]
"$ATROUS" run --model "$WORK/none" --value "$top_srcdir/conf/demo/value.npy" --output "$WORK/z.npy" 2>"$WORK/err"
check "a missing model exits 1 naming model.json" sh -c "[ $? -eq 1 ] && grep -q 'model.json' '$WORK/err'"
"$ATROUS" run --value x.npy 2>/dev/null
check "run without --model is a usage error (2)" [ $? -eq 2 ]
finish

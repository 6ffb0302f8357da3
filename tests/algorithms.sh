#!/bin/sh
# SPDX-License-Identifier: MIT
# algorithms.sh - auto, im2col, fast and direct through the daemon, the ASPP
# fold, transformed weights and their budget (see algorithms.py).
. "$(dirname "$0")/lib.sh"
need_numpy
exec "$PYTHON3" "$top_srcdir/tests/algorithms.py"

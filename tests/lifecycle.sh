#!/bin/sh
# SPDX-License-Identifier: MIT
# lifecycle.sh - clients that leave, deadlines, nginx giving up, shutdown
# abandoning work (see lifecycle.py).
. "$(dirname "$0")/lib.sh"
need_numpy
exec "$PYTHON3" "$top_srcdir/tests/lifecycle.py"

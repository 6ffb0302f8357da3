#!/bin/sh
# SPDX-License-Identifier: MIT
# ops.sh - metrics, systemd integration and nginx scale-out (see ops.py).
. "$(dirname "$0")/lib.sh"
need_numpy
exec "$PYTHON3" "$top_srcdir/tests/ops.py"

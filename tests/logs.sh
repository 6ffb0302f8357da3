#!/bin/sh
# SPDX-License-Identifier: MIT
# logs.sh - every line of the daemon's log, as text and as JSON (see logs.py).
. "$(dirname "$0")/lib.sh"
need_numpy
exec "$PYTHON3" "$top_srcdir/tests/logs.py"

#!/bin/sh
# SPDX-License-Identifier: MIT
# hostile.sh - hostile input over raw sockets (see hostile.py).
. "$(dirname "$0")/lib.sh"
need_numpy
exec "$PYTHON3" "$top_srcdir/tests/hostile.py"

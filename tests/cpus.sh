#!/bin/sh
# SPDX-License-Identifier: MIT
# cpus.sh - the worker count under taskset and a cgroup CPU quota (see cpus.py).
. "$(dirname "$0")/lib.sh"
need_numpy
require taskset command -v taskset
exec "$PYTHON3" "$top_srcdir/tests/cpus.py"

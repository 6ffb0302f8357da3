#!/bin/sh
# SPDX-License-Identifier: MIT
# layers.sh - libcore knows nothing of JSON or HTTP, calls go one way, and no
# two source files call each other (see tests/layers.py).
. "$(dirname "$0")/lib.sh"
require nm command -v nm
export top_srcdir top_builddir
exec "$PYTHON3" "$top_srcdir/tests/layers.py"

#!/bin/sh
# SPDX-License-Identifier: MIT
# kserve.sh - stored models and the KServe v2 protocol (see kserve.py).
. "$(dirname "$0")/lib.sh"
need_numpy
exec "$PYTHON3" "$top_srcdir/tests/kserve.py"

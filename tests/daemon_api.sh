#!/bin/sh
# SPDX-License-Identifier: MIT
# daemon_api.sh - the native HTTP API against the real daemon (see daemon_api.py).
. "$(dirname "$0")/lib.sh"
need_numpy
exec "$PYTHON3" "$top_srcdir/tests/daemon_api.py"

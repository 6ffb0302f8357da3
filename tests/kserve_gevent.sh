#!/bin/sh
# SPDX-License-Identifier: MIT
# kserve_gevent.sh - tritonclient.http's call pattern over geventhttpclient.
. "$(dirname "$0")/lib.sh"
need_numpy
require python3-geventhttpclient "$PYTHON3" -c 'import geventhttpclient'
exec "$PYTHON3" "$top_srcdir/tests/kserve_gevent.py"

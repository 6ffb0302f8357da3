#!/bin/sh
# kserve_gevent.sh - tritonclient.http's call pattern over geventhttpclient.
. "$(dirname "$0")/lib.sh"
need_numpy
if ! "$PYTHON3" -c 'import geventhttpclient' 2>/dev/null; then
	if [ -n "${CI:-}" ]; then echo "not ok - python3-geventhttpclient missing under CI"; exit 1; fi
	echo "SKIP: python3-geventhttpclient not installed"; exit 77
fi
exec "$PYTHON3" "$top_srcdir/tests/kserve_gevent.py"

#!/bin/sh
# SPDX-License-Identifier: MIT
# dashboard.sh - every Grafana panel's query on a real Prometheus (see dashboard.py).
. "$(dirname "$0")/lib.sh"
need_numpy
require prometheus command -v prometheus
exec "$PYTHON3" "$top_srcdir/tests/dashboard.py"

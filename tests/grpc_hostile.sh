#!/bin/sh
# SPDX-License-Identifier: MIT
# grpc_hostile.sh - hostile HTTP/2 and gRPC framing (see grpc_hostile.py).
. "$(dirname "$0")/lib.sh"
require "h2 (hyperframe, hpack) and grpcio for $PYTHON3" "$PYTHON3" -c 'import hyperframe, hpack, grpc'
exec "$PYTHON3" "$top_srcdir/tests/grpc_hostile.py"

#!/bin/sh
# SPDX-License-Identifier: MIT
# kserve_grpc.sh - KServe v2 over gRPC with grpcio clients (see kserve_grpc.py).
. "$(dirname "$0")/lib.sh"
need_numpy
require "grpcio and grpc_tools for $PYTHON3" "$PYTHON3" -c 'import grpc, grpc_tools'
exec "$PYTHON3" "$top_srcdir/tests/kserve_grpc.py"

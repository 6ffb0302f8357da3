#!/bin/sh
# SPDX-License-Identifier: MIT
# onnx_import.sh - ONNX models exported by PyTorch, imported and served (see
# onnx_import.py).
. "$(dirname "$0")/lib.sh"
need_numpy
require "python3-torch, python3-torchvision and python3-onnx for $PYTHON3" \
	"$PYTHON3" -c 'import torch, torchvision, onnx'
exec "$PYTHON3" "$top_srcdir/tests/onnx_import.py"

#!/bin/sh
# SPDX-License-Identifier: MIT
# import_doc.sh - docs/import.md runs as written (see import_doc.py).
. "$(dirname "$0")/lib.sh"
need_numpy
require "python3-torch and python3-torchvision for $PYTHON3" "$PYTHON3" -c 'import torch, torchvision'
require curl command -v curl
exec "$PYTHON3" "$top_srcdir/tests/import_doc.py"

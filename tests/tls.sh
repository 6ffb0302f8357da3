#!/bin/sh
# SPDX-License-Identifier: MIT
# tls.sh - HTTPS, mutual TLS, certificate reload, the admin plaintext policy
# (see tls.py).
. "$(dirname "$0")/lib.sh"
need_numpy
require openssl command -v openssl
require curl command -v curl
require "ip (iproute2) and unshare" sh -c 'command -v ip && command -v unshare'
require "network namespaces (root)" unshare -n true
exec "$PYTHON3" "$top_srcdir/tests/tls.py"

#!/bin/sh
# SPDX-License-Identifier: MIT
# deps.sh - install what atrousd needs on Debian 12 (as root).
#
#   scripts/deps.sh         build and run: compiler, autotools, the libraries,
#                           protobuf-c and onnx.proto (the ONNX reader), GnuTLS,
#                           nghttp2 (the gRPC listener),
#                           procps (the unit's ExecReload runs /bin/kill), curl
#   scripts/deps.sh --test  the above and every tool the tests start: libcheck,
#                           NumPy, geventhttpclient, clang (libFuzzer), valgrind,
#                           clang-format, groff, Prometheus, nginx, systemd, wrk,
#                           PyTorch, torchvision and onnx (models to import),
#                           openssl (test certificates), iproute2 (a test
#                           address in a network namespace), grpcio and its
#                           tools (gRPC clients generated from our .proto), h2
#                           (hand-made HTTP/2 frames)
#
# Without root it only reports what is missing.  Each package here is there
# because a build step, the installed unit or a test runs something from it;
# a minimal Debian root (debootstrap --variant=minbase) has none of them.
set -eu
RUN="build-essential autoconf automake libtool pkg-config
     libmicrohttpd-dev libjansson-dev libopenblas-dev libinih-dev libsystemd-dev
     libprotobuf-c-dev protobuf-c-compiler libonnx-dev libgnutls28-dev libnghttp2-dev
     procps curl"
TEST="check python3 python3-numpy python3-geventhttpclient clang-format clang
      libclang-rt-14-dev valgrind groff-base prometheus nginx-light systemd wrk
      python3-torch python3-torchvision python3-onnx openssl iproute2 util-linux
      python3-grpcio python3-grpc-tools python3-h2"
case "${1:-}" in
--test) PKGS="$RUN $TEST" ;;
"") PKGS="$RUN" ;;
*) echo "usage: scripts/deps.sh [--test]" >&2; exit 2 ;;
esac
missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
		missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
	echo "deps.sh: missing packages:$missing (run as root to install)" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing

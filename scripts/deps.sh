#!/bin/sh
# deps.sh - install what atrousd needs to build and test on Debian 12 (as root).
# Without root it only reports what is missing.
set -eu
PKGS="build-essential autoconf automake libtool pkg-config
      libmicrohttpd-dev libjansson-dev libopenblas-dev libinih-dev check
      libsystemd-dev python3-numpy python3-geventhttpclient clang-format curl
      groff-base prometheus nginx-light systemd valgrind clang libclang-rt-14-dev wrk"
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

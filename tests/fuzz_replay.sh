#!/bin/sh
# SPDX-License-Identifier: MIT
# fuzz_replay.sh - every fuzz target replays its seed corpus and the inputs
# that once crashed it (tests/fuzz/regressions/), without libFuzzer.
. "$(dirname "$0")/lib.sh"
for t in tensor_json kserve model config onnx grpc; do
	check "fuzz target $t replays its seeds and regressions" \
		"$top_builddir/tests/fuzz_replay_$t" "$top_srcdir/tests/fuzz/seeds/$t" \
		"$top_srcdir/tests/fuzz/regressions/$t"
done
finish

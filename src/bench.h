/* SPDX-License-Identifier: MIT */
/* bench.h - in-process kernel benchmarks for `atrous bench`: the seed's
 * examples and DeepLab ASPP heads on the worker pool, beside the OpenBLAS
 * sgemm ceiling measured in the same run.  Prints figures; asserts nothing. */
#ifndef ATROUSD_BENCH_H
#define ATROUSD_BENCH_H

#include <stdio.h>

#include "shape.h"

struct bench_options {
	int threads;         /* workers (0: online CPUs) */
	int repeats;         /* timed runs per case (best and median reported) */
	const char *only;    /* run only the case with this name, or NULL */
	int json;            /* one JSON object per line instead of a table */
	enum conv_algo algo; /* for every layer (CONV_ALGO_AUTO: each layer's choice) */
	int unfolded;        /* ASPP: broadcast image pooling, no fold into the projection */
};

/* Time jansson's json_loadb and json_dumps on the JSON file at path, the
 * baseline for the daemon's own codec; prints milliseconds. */
int bench_jansson(const char *path, int repeats, FILE *out, char *err);

/* Run the benchmarks, printing to out; 0 or -errno. */
int bench_run(const struct bench_options *o, FILE *out, char *err);

#endif

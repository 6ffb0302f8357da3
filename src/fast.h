/* SPDX-License-Identifier: MIT */
/* fast.h - minimal filtering (Winograd) for 3x3 atrous convolutions.
 *
 * A stride-1 convolution at rate r is r x r ordinary convolutions on the
 * phase grids x[a::r, b::r].  Along each axis every phase grid gets a 1-D
 * scheme chosen by its size: a grid of one row reads only the centre tap
 * (S1), a grid of two the 3-multiply algorithm (S2), longer ones F(m,3) tiles
 * with m = 2, 3 or 4.  A 2-D tile is a pair of schemes; the tiles of one
 * pair, over every phase and image, share their transformed weights
 * U = G w G^T, so their T_r x T_c elementwise products are as many GEMMs
 * [tiles x C] . [C x K] (gemm.h, the weights packed for its kernel when
 * transformed) over every tile of a stage (as many as FAST_STAGE_BYTES of
 * transformed input and products hold); layers with small weights run
 * fused, each task a range of tiles through all three steps.
 *
 *	struct fast_weights *fw;               // per layer, thread-safe cache
 *	fast_weights_new(&fw, filters, err);
 *	fast_plan_new(&p, &args, fw, err);
 *	fast_plan_run(p, in, out, runner);
 *	fast_plan_free(p);
 *	fast_weights_free(fw);
 *
 * Accuracy: the transforms add rounding that grows with the tile; F(4,3)
 * uses the points 0, +-1/2, +-3/2 (the smallest error of the sets tried),
 * and the products are summed in blocks of 128 channels (GEMM_KC).
 * FAST_ERROR_SCALE is the factor by which the unit tests widen
 * the direct summation bound, for every scheme pair.
 */
#ifndef ATROUSD_FAST_H
#define ATROUSD_FAST_H

#include <stddef.h>
#include <stdint.h>

#include "par.h"
#include "shape.h"
#include "tensor.h"

enum fast_scheme { FAST_S1, FAST_S2, FAST_F2, FAST_F3, FAST_F4, FAST_NSCHEMES };

/* The per-element error bound of a plan's results, as a multiple of the
 * direct summation bound: every element of check_fast's cases stays within
 * it (the worst measured: 1.14 times the direct bound, at 5 channels). */
#define FAST_ERROR_SCALE 4.0

/* Transformed weights of one layer, computed in double the first time a
 * scheme pair is needed and kept until fast_weights_free; thread-safe. */
struct fast_weights;

int fast_weights_new(struct fast_weights **out, const struct tensor *filters, char *err);
void fast_weights_free(struct fast_weights *fw);

/* Bytes of transformed weights a cache holds. */
size_t fast_weights_bytes(const struct fast_weights *fw);

/* Process-wide budget of transformed weights (bytes; 0 means none may be
 * made: every layer runs the region plan).  Default FAST_DEFAULT_BUDGET. */
#define FAST_DEFAULT_BUDGET ((size_t)1024 << 20)
void fast_set_budget(size_t bytes);
size_t fast_total_bytes(void);

/* Layers whose transformed weights take at most this many bytes run fused
 * (each task a range of tiles through every step, one pass over the pool);
 * larger ones in stages of three passes.  Tests set 0 to run every layer
 * in stages. */
#define FAST_FUSED_WEIGHTS ((size_t)2 << 20)
void fast_set_fused_limit(size_t bytes);

/* A stage's transformed input and products take at most this many bytes
 * (FAST_STAGE_BYTES); tests set a few tiles' worth to cut layers into
 * many stages.  0 restores the default. */
void fast_set_stage_limit(size_t bytes);

/* Called once per cache with a sentence when the budget refuses it. */
void fast_set_warn(void (*warn)(const char *msg));

/* What a plan computes: geometry as conv.c has checked it. */
struct fast_args {
	int64_t n, h, w, c, k; /* value [n, h, w, c], filters [3, 3, c, k] */
	int64_t oh, ow, rh, rw, pt, pl;
	enum conv_act act;
	const float *filters, *bias; /* borrowed; bias may be NULL */
	int64_t out_off, out_stride;
};

struct fast_plan;

/* Plan the fast path for a; fw NULL transforms the weights in each run
 * (inline filters: at most 32 MiB, held only while the layer runs).
 * Returns 0 with *out set, or -errno (-E2BIG: the transformed weights would
 * pass the budget or the inline limit; the caller falls back). */
int fast_plan_new(struct fast_plan **out, const struct fast_args *a, struct fast_weights *fw,
                  char *err);
void fast_plan_free(struct fast_plan *p);

/* Estimated cost in multiply-add equivalents, GEMM and transforms together
 * (and the weight transform when inline), without building the plan. */
double fast_cost(const struct fast_args *a, int inline_weights);

/* Run the plan on the pool (three passes per stage); 0, -ENOMEM or
 * -ECANCELED (the output is then incomplete). */
int fast_plan_run(const struct fast_plan *p, const float *in, float *out,
                  const struct par_runner *runner);

#endif

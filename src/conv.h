/* SPDX-License-Identifier: MIT */
/* conv.h - tf.nn.atrous_conv2d, exactly: NHWC value, HWIO filters, stride 1.
 *
 *	struct conv_spec s = {.rate_h = 2, .rate_w = 2, .padding = CONV_SAME};
 *	struct conv_plan *p;
 *	if (conv_plan_new(&p, value->dim, filters, bias, &s, NULL, NULL, err) < 0) ...;
 *	conv_plan_output_shape(p, odim);        // allocate out with odim
 *	conv_plan_run(p, value->data, out->data, runner);
 *	conv_plan_free(p);
 *
 * The plan splits the output into regions inside which the set of filter taps
 * that read real input (not zero padding) is constant, and runs one im2col +
 * cblas_sgemm per region tile over those taps only.  Tiles bound the im2col
 * scratch by CONV_SCRATCH_BYTES (or one output pixel's row when larger).
 */
#ifndef ATROUSD_CONV_H
#define ATROUSD_CONV_H

#include <stdint.h>

#include "fast.h"
#include "par.h"
#include "shape.h"
#include "tensor.h"

/* Scratch budget of one task (im2col tile plus GEMM result tile). */
#define CONV_SCRATCH_BYTES ((size_t)8 << 20)

/* Multiply-adds of one GEMM call between two looks at the cancellation flag
 * (par_cancelled): about 1-2 ms of one core.  Larger products are cut. */
#define CONV_CANCEL_MACS ((int64_t)64 << 20)

/* Where the plan writes its output: channel offset and pixel stride (in floats)
 * inside a wider NHWC tensor, so that concatenation costs nothing. */
struct conv_out_layout {
	int64_t channel_offset;
	int64_t pixel_stride;
	/* Add into the output instead of writing it; no bias, no activation
	 * (the caller finishes with conv_bias_act). */
	int accumulate;
	/* Leave out the centre tap (odd kernels, SAME padding): the caller
	 * computes it for all pixels at once (ASPP branch fusion). */
	int skip_center;
};

struct conv_plan;

/* Plans below this many nominal FLOPs run on one worker (no fan-out). */
#define CONV_PARALLEL_MIN_FLOPS 2e7

/* Convolutions up to this many nominal FLOPs with output channels in whole
 * vectors of DIRECT_VL run the direct kernel ("direct"), unless im2col is
 * asked for. */
#define CONV_DIRECT_MAX_FLOPS 3e7
#define DIRECT_VL             8

/* CONV_ALGO_AUTO runs minimal filtering when its estimated cost is at most
 * CONV_FAST_GAIN of the region plan's, or CONV_FAST_DIRECT_GAIN of it where
 * the direct kernel would run instead (which does less besides its
 * multiply-adds than the regions do: the chain's second layer, at 0.63 of
 * the region cost, took 12% less time with minimal filtering than with the
 * direct kernel). */
#define CONV_FAST_GAIN        0.8
#define CONV_FAST_DIRECT_GAIN 0.7

/* Plan a convolution of a value of shape vdim; filters and bias are borrowed and
 * must outlive the plan.  layout NULL means a dense output of the plan's shape.
 * spec->algo chooses the algorithm; fw (NULL for inline filters) holds the
 * layer's transformed weights for minimal filtering. */
int conv_plan_new(struct conv_plan **out, const int64_t vdim[4], const struct tensor *filters,
                  const struct tensor *bias, const struct conv_spec *spec,
                  const struct conv_out_layout *layout, struct fast_weights *fw, char *err);

/* The algorithm a plan runs: "fast", "direct" or "im2col". */
const char *conv_plan_algorithm(const struct conv_plan *p);

/* Free a plan; NULL is allowed. */
void conv_plan_free(struct conv_plan *p);

/* The output shape of a plan. */
void conv_plan_output_shape(const struct conv_plan *p, int64_t odim[4]);

/* Multiply-adds x 2 actually computed (useful) and of the dense definition. */
void conv_plan_flops(const struct conv_plan *p, double *useful, double *nominal);

/* Does the plan run minimal filtering or the direct kernel?  Such a plan
 * runs only whole (conv_plan_run); the task interface below is the region
 * plan's. */
int conv_plan_is_fast(const struct conv_plan *p);

/* Number of independent tasks, and the scratch bytes one task needs. */
size_t conv_plan_ntasks(const struct conv_plan *p);
size_t conv_plan_scratch(const struct conv_plan *p);

/* Run task i of a region plan with a private scratch area. */
void conv_plan_run_task(const struct conv_plan *p, size_t i, const float *in, float *out,
                        void *scratch);

/* Run the plan: in is the value's data, out the output's; 0 or -errno. */
int conv_plan_run(const struct conv_plan *p, const float *in, float *out,
                  const struct par_runner *runner);

/* dst[i] = act(dst[i] + bias[i]) for i < n (bias may be NULL), vectorised;
 * ReLU keeps NaN so that an overflowed result is still reported. */
void conv_bias_act(float *dst, const float *bias, int64_t n, enum conv_act act);

#endif

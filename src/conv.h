/* conv.h - tf.nn.atrous_conv2d, exactly: NHWC value, HWIO filters, stride 1.
 *
 *	struct conv_spec s = {.rate_h = 2, .rate_w = 2, .padding = CONV_SAME};
 *	struct conv_plan *p;
 *	if (conv_plan_new(&p, value->dim, filters, bias, &s, NULL, err) < 0) ...;
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

#include "par.h"
#include "tensor.h"

/* Scratch budget of one task (im2col tile plus GEMM result tile). */
#define CONV_SCRATCH_BYTES ((size_t)8 << 20)
/* Largest rate accepted (TensorFlow's rate is an int32). */
#define CONV_MAX_RATE INT32_MAX

enum conv_padding { CONV_SAME, CONV_VALID };
enum conv_act { CONV_ACT_NONE, CONV_ACT_RELU };

struct conv_spec {
	int64_t rate_h, rate_w;
	enum conv_padding padding;
	enum conv_act act;
};

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

/* A convolution layer: its weights (owned) and settings. */
struct conv_layer {
	struct tensor *filters, *bias;
	struct conv_spec spec;
};

/* Plans below this many nominal FLOPs run on one worker (no fan-out). */
#define CONV_PARALLEL_MIN_FLOPS 2e7

/* Parse "SAME" or "VALID" (case-sensitive, as TensorFlow). */
int conv_parse_padding(const char *s, enum conv_padding *out, char *err);

/* Parse "none" or "relu". */
int conv_parse_activation(const char *s, enum conv_act *out, char *err);

/* Check a layer on its own: filters rank 4 without a zero dimension, rate in
 * 1..CONV_MAX_RATE, known padding, bias of the filters' out_channels. */
int conv_check_layer(const struct tensor *filters, const struct tensor *bias,
                     const struct conv_spec *spec, char *err);

/* Validate shapes (conv_check_layer, then against the value) and compute the
 * output shape [N, OH, OW, O]. */
int conv_output_shape(const int64_t vdim[4], const struct tensor *filters,
                      const struct tensor *bias, const struct conv_spec *spec, int64_t odim[4],
                      char *err);

/* Plan a convolution of a value of shape vdim; filters and bias are borrowed and
 * must outlive the plan.  layout NULL means a dense output of the plan's shape. */
int conv_plan_new(struct conv_plan **out, const int64_t vdim[4], const struct tensor *filters,
                  const struct tensor *bias, const struct conv_spec *spec,
                  const struct conv_out_layout *layout, char *err);

/* Free a plan; NULL is allowed. */
void conv_plan_free(struct conv_plan *p);

/* The output shape of a plan. */
void conv_plan_output_shape(const struct conv_plan *p, int64_t odim[4]);

/* Multiply-adds x 2 actually computed (useful) and of the dense definition. */
void conv_plan_flops(const struct conv_plan *p, double *useful, double *nominal);

/* Number of independent tasks, and the scratch bytes one task needs. */
size_t conv_plan_ntasks(const struct conv_plan *p);
size_t conv_plan_scratch(const struct conv_plan *p);

/* Run task i of the plan with a private scratch area. */
void conv_plan_run_task(const struct conv_plan *p, size_t i, const float *in, float *out,
                        void *scratch);

/* Run the plan: in is the value's data, out the output's; 0 or -errno. */
int conv_plan_run(const struct conv_plan *p, const float *in, float *out,
                  const struct par_runner *runner);

/* dst[i] = act(dst[i] + bias[i]) for i < n (bias may be NULL), vectorised;
 * ReLU keeps NaN so that an overflowed result is still reported. */
void conv_bias_act(float *dst, const float *bias, int64_t n, enum conv_act act);

/* Run a layer on in into a new tensor; adds its useful and nominal FLOPs. */
int conv_layer_run(const struct conv_layer *c, const struct tensor *in,
                   const struct par_runner *runner, struct tensor **out, double *useful,
                   double *nominal, char *err);

/* Free a layer's weights. */
void conv_layer_clear(struct conv_layer *c);

/* Plan, allocate the output and run in one call; *out is owned by the caller. */
int conv_atrous2d(const struct tensor *value, const struct tensor *filters,
                  const struct tensor *bias, const struct conv_spec *spec,
                  const struct par_runner *runner, struct tensor **out, char *err);

#endif

/* SPDX-License-Identifier: MIT */
/* shape.h - TensorFlow's rules for one atrous_conv2d, apart from how it is
 * computed: padding and activation names, the effective kernel, output sizes
 * and padding, and the argument checks, with errors that name the values.
 *
 *	struct conv_geom g;
 *	if (conv_geometry(value->dim, filters, bias, &spec, &g, err) < 0) ...;
 *	// g.odim is [N, OH, OW, O]; g.pad_top, g.pad_left as TensorFlow pads
 *
 * This module knows tensors and nothing of plans (conv.h) or requests.
 */
#ifndef ATROUSD_SHAPE_H
#define ATROUSD_SHAPE_H

#include <stdint.h>

#include "tensor.h"

/* Largest rate accepted (TensorFlow's rate is an int32). */
#define CONV_MAX_RATE INT32_MAX

enum conv_padding { CONV_SAME, CONV_VALID };
enum conv_act { CONV_ACT_NONE, CONV_ACT_RELU };
/* How a layer is computed: the cost model's choice, the region plan
 * (im2col + GEMM), or minimal filtering where it applies (fast.h). */
enum conv_algo { CONV_ALGO_AUTO, CONV_ALGO_IM2COL, CONV_ALGO_FAST };

struct conv_spec {
	int64_t rate_h, rate_w;
	enum conv_padding padding;
	enum conv_act act;
	enum conv_algo algo;
};

/* Where a convolution of a given value and filters reads and writes. */
struct conv_geom {
	int64_t odim[4];           /* [N, OH, OW, O] */
	int64_t pad_top, pad_left; /* SAME: the smaller half; VALID: 0 */
};

/* Parse "SAME" or "VALID" (case-sensitive, as TensorFlow). */
int conv_parse_padding(const char *s, enum conv_padding *out, char *err);

/* Parse "none" or "relu". */
int conv_parse_activation(const char *s, enum conv_act *out, char *err);

/* Parse "auto", "im2col" or "fast"; conv_algo_name is the inverse. */
int conv_parse_algorithm(const char *s, enum conv_algo *out, char *err);
const char *conv_algo_name(enum conv_algo a);

/* Check a layer on its own: filters rank 4 without a zero dimension, rate in
 * 1..CONV_MAX_RATE, known padding, bias of the filters' out_channels. */
int conv_check_layer(const struct tensor *filters, const struct tensor *bias,
                     const struct conv_spec *spec, char *err);

/* Validate shapes (conv_check_layer, then against the value [N,H,W,C]) and
 * compute the output shape and padding. */
int conv_geometry(const int64_t vdim[4], const struct tensor *filters, const struct tensor *bias,
                  const struct conv_spec *spec, struct conv_geom *g, char *err);

/* conv_geometry's output shape alone. */
int conv_output_shape(const int64_t vdim[4], const struct tensor *filters,
                      const struct tensor *bias, const struct conv_spec *spec, int64_t odim[4],
                      char *err);

#endif

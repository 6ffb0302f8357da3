/* SPDX-License-Identifier: MIT */
/* layer.h - a convolution layer: its weights and settings, run through a
 * plan into a new tensor.
 *
 *	struct conv_layer c = {.filters = f, .bias = b, .spec = spec};
 *	conv_layer_run(&c, value, runner, &out, &useful, &nominal, err);
 *	conv_layer_clear(&c);   // frees the weights
 */
#ifndef ATROUSD_LAYER_H
#define ATROUSD_LAYER_H

#include "conv.h"
#include "par.h"
#include "shape.h"
#include "tensor.h"

/* A convolution layer: its weights (owned) and settings. */
struct conv_layer {
	struct tensor *filters, *bias;
	struct conv_spec spec;
};

/* Run a layer on in into a new tensor; adds its useful and nominal FLOPs.
 * Plans below CONV_PARALLEL_MIN_FLOPS run on the calling thread. */
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

/* SPDX-License-Identifier: MIT */
/* layer.h - a convolution layer: its weights and settings, run through a
 * plan into a new tensor.
 *
 *	struct conv_layer c = {.filters = f, .bias = b, .spec = spec};
 *	conv_layer_prepare(&c, err);    // stored layers: a cache for fast.h
 *	conv_layer_run(&c, value, runner, &out, &stats, err);
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
	struct fast_weights *fast; /* transformed weights (stored 3x3 layers) */
};

/* What running layers did: FLOPs (useful: the taps that read input;
 * nominal: the dense definition) and the algorithm of each layer, in order,
 * separated by ',' ("fast", "im2col"; an ASPP layer's branches joined by
 * '+').  Zero-initialise. */
#define GRAPH_ALGO_TEXT 256
struct graph_stats {
	double useful_flops, nominal_flops;
	char algorithms[GRAPH_ALGO_TEXT];
};

/* Append an algorithm name to stats, after sep when the text is not empty
 * (a full text ends in "..." instead). */
void conv_note_algorithm(struct graph_stats *st, char sep, const char *name);

/* Give a stored layer its cache of transformed weights (3x3 filters only;
 * others need none).  Layers without one transform per request. */
int conv_layer_prepare(struct conv_layer *c, char *err);

/* Run a layer on in into a new tensor; adds its FLOPs and algorithm to st.
 * Plans below CONV_PARALLEL_MIN_FLOPS run on the calling thread. */
int conv_layer_run(const struct conv_layer *c, const struct tensor *in,
                   const struct par_runner *runner, struct tensor **out, struct graph_stats *st,
                   char *err);

/* Free a layer's weights and cache. */
void conv_layer_clear(struct conv_layer *c);

/* Plan, allocate the output and run in one call; *out is owned by the caller. */
int conv_atrous2d(const struct tensor *value, const struct tensor *filters,
                  const struct tensor *bias, const struct conv_spec *spec,
                  const struct par_runner *runner, struct tensor **out, char *err);

#endif

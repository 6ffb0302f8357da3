/* SPDX-License-Identifier: MIT */
/* graph.h - the layers atrousd runs: atrous convolution, ASPP, sequences.
 *
 *	struct graph *g;
 *	graph_new(&g, 2, err);                    // two empty layers, owned
 *	graph_layer(g, 0)->type = GRAPH_CONV;     // fill each (graphjson.h does
 *	graph_layer(g, 0)->conv = layer;          // it from JSON)
 *	graph_output_shape(g, vdim, max_out, odim, err);   // 400 / 413 before work
 *	graph_run(g, value, runner, &out, &stats, err);
 *	graph_free(g);
 *
 * ASPP follows DeepLab: the output channels are image pooling's (if present)
 * then each branch's in request order; image pooling is the spatial mean, a
 * 1x1 convolution (+bias, activation) and a broadcast; an optional 1x1
 * projection follows the concatenation.  Branches use SAME padding.
 */
#ifndef ATROUSD_GRAPH_H
#define ATROUSD_GRAPH_H

#include <stddef.h>
#include <stdint.h>

#include "aspp.h"
#include "layer.h"
#include "par.h"
#include "tensor.h"

struct graph;

enum graph_layer_type { GRAPH_CONV, GRAPH_ASPP };

/* One layer; the graph owns its weights. */
struct graph_layer {
	enum graph_layer_type type;
	struct conv_layer conv; /* GRAPH_CONV */
	struct aspp aspp;       /* GRAPH_ASPP */
};

/* A graph of n zeroed layers (freeing it before they are filled is safe). */
int graph_new(struct graph **out, size_t n, char *err);

/* Number of layers, and layer i (i < graph_size). */
size_t graph_size(const struct graph *g);
struct graph_layer *graph_layer(struct graph *g, size_t i);

/* Input channels the graph expects. */
int64_t graph_in_channels(const struct graph *g);

/* Output channels the graph produces. */
int64_t graph_out_channels(const struct graph *g);

/* Check that each layer's input channels match the previous layer's output
 * (independent of spatial size); *out_c gets the final channel count. */
int graph_check_channels(const struct graph *g, int64_t *out_c, char *err);

/* Validate a value shape [N,H,W,C] through every layer; odim gets the output
 * shape.  Any intermediate or final tensor above max_elements is -E2BIG. */
int graph_output_shape(const struct graph *g, const int64_t vdim[4], int64_t max_elements,
                       int64_t odim[4], char *err);

/* Run the graph on value (rank 4); *out is owned by the caller. */
int graph_run(const struct graph *g, const struct tensor *value, const struct par_runner *runner,
              struct tensor **out, struct graph_stats *stats, char *err);

/* Give a stored graph's 3x3 layers their caches of transformed weights
 * (filled by the first requests that run them minimal-filtered). */
int graph_prepare(struct graph *g, char *err);

/* Bytes of transformed weights the graph's caches hold now. */
size_t graph_fast_bytes(const struct graph *g);

/* Free a graph and its weights; NULL is allowed. */
void graph_free(struct graph *g);

#endif

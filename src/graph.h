/* graph.h - the layers atrousd runs: atrous convolution, ASPP, sequences.
 *
 *	struct graph *g;
 *	graph_parse_layers(&g, layers_json, getter, ctx, err);  // validates, owns weights
 *	graph_output_shape(g, vdim, odim, max_out, err);          // 400 / 413 before work
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

#include <jansson.h>
#include <stdint.h>

#include "conv.h"
#include "par.h"
#include "tensor.h"

struct graph;

/* Resolves a tensor-valued JSON field (inline tensor, or {"npy": file} for
 * stored models) into a new tensor owned by the caller. */
typedef int (*graph_tensor_fn)(void *ctx, json_t *v, const char *field, struct tensor **out,
                               char *err);

struct graph_stats {
	double useful_flops, nominal_flops;
};

/* Build a graph from one layer object of a request body: its "type", or
 * default_type when absent ("atrous_conv2d" or "aspp"); the keys "value" and
 * "output_encoding" are tolerated beside the layer's own. */
int graph_parse_layer(struct graph **out, json_t *layer, const char *default_type,
                      graph_tensor_fn getter, void *ctx, char *err);

/* Build a sequential graph from a non-empty array of layer objects. */
int graph_parse_layers(struct graph **out, json_t *layers, graph_tensor_fn getter, void *ctx,
                       char *err);

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

/* Free a graph and its weights; NULL is allowed. */
void graph_free(struct graph *g);

#endif

/* SPDX-License-Identifier: MIT */
/* graphjson.h - layers from JSON: request bodies and model.json.
 *
 *	struct graph *g;
 *	graphjson_layers(&g, layers_json, getter, ctx, err);  // validates, owns weights
 *
 * Tensor-valued fields ("filters", "bias") are resolved by the caller's
 * getter: inline tensors for requests, {"npy": file} for stored models.
 */
#ifndef ATROUSD_GRAPHJSON_H
#define ATROUSD_GRAPHJSON_H

#include <jansson.h>

#include "buf.h"
#include "graph.h"
#include "tensor.h"

/* Resolves a tensor-valued JSON field into a new tensor owned by the caller. */
typedef int (*graphjson_tensor_fn)(void *ctx, json_t *v, const char *field, struct tensor **out,
                                   char *err);

/* Build a graph from one layer object of a request body: its "type", or
 * default_type when absent ("atrous_conv2d" or "aspp"); the keys "value" and
 * "output_encoding" are tolerated beside the layer's own. */
int graphjson_layer(struct graph **out, json_t *layer, const char *default_type,
                    graphjson_tensor_fn getter, void *ctx, char *err);

/* Build a sequential graph from a non-empty array of layer objects. */
int graphjson_layers(struct graph **out, json_t *layers, graphjson_tensor_fn getter, void *ctx,
                     char *err);

/* Saves tensor t under a file name made from hint ("l0_filters"); writes
 * the name it used (relative to the model folder) into file. */
typedef int (*graphjson_save_fn)(void *ctx, const struct tensor *t, const char *hint, char *file,
                                 size_t len, char *err);

/* Append the "layers" array of g as model.json writes it, each tensor as
 * {"npy": FILE} through save. */
int graphjson_write(struct buf *b, const struct graph *g, graphjson_save_fn save, void *ctx,
                    char *err);

#endif

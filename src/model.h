/* SPDX-License-Identifier: MIT */
/* model.h - one stored model: MODELS/NAME/model.json (+ .npy files) or an
 * uploaded body, loaded and validated into a graph with its input and
 * output names, counted references and per-model statistics.
 *
 *	struct model *m;
 *	model_load_dir("/var/lib/atrousd/models/deeplab", "deeplab", 0, &m, err);
 *	graph_run(model_graph(m), ...);
 *	model_unref(m);
 *
 * The served set of models is models.h.
 */
#ifndef ATROUSD_MODEL_H
#define ATROUSD_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "graph.h"

#define MODEL_NAME_MAX 64

struct model;

/* Cumulative per-model statistics, in the shape of Triton's extension. */
struct model_stat {
	uint64_t count, ns;
};

struct model_stats {
	struct model_stat success, fail, queue, compute_input, compute_infer, compute_output;
	uint64_t inference_count, execution_count;
	uint64_t last_inference_ms; /* since the epoch */
};

/* Is name a valid model name: [A-Za-z0-9_.-]{1,64}, not starting with '.'? */
int model_name_ok(const char *name);

/* Load one model from dir: model.json, else model.onnx or 1/model.onnx (as
 * Triton lays out a repository); errors name the model, file and field. */
int model_load_dir(const char *dir, const char *name, int64_t max_elements, struct model **out,
                   char *err);

/* Build a model from the bytes of an ONNX file (its edges are NCHW). */
int model_load_onnx(const char *name, const void *data, size_t len, int64_t max_elements,
                    struct model **out, char *err);

/* Build a model from a model.json body with inline tensors (an upload). */
int model_load_body(const char *name, const char *body, size_t len, int64_t max_elements,
                    struct model **out, char *err);

/* Borrowed views of a model. */
const char *model_name(const struct model *m);
const char *model_input_name(const struct model *m);
int model_nchw(const struct model *m); /* the model's inputs and outputs are NCHW */
const char *model_output_name(const struct model *m);
int64_t model_in_channels(const struct model *m);
int64_t model_out_channels(const struct model *m);
const struct graph *model_graph(const struct model *m);
struct model_stats *model_stats(struct model *m);

/* Add one finished request to the model's statistics (thread-safe). */
void model_record(struct model *m, int ok, uint64_t total_ns, uint64_t queue_ns, uint64_t input_ns,
                  uint64_t infer_ns, uint64_t output_ns, uint64_t batch);

/* Copy the statistics atomically enough for reporting. */
void model_stats_read(struct model *m, struct model_stats *out);

/* Take another reference; returns m. */
struct model *model_ref(struct model *m);

/* Drop a reference; frees the model with the last one. */
void model_unref(struct model *m);

#endif

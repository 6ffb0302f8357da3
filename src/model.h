/* model.h - stored models: a directory of MODELS/NAME/model.json (+ .npy
 * files), loaded, validated, reloaded and persisted atomically.
 *
 *	struct models *ms;
 *	models_new(&ms, "/var/lib/atrousd/models", err);
 *	models_reload(ms, &report);          // build the whole set, then swap
 *	struct model *m = models_get(ms, "deeplab");   // counted reference
 *	graph_run(model_graph(m), ...);
 *	model_unref(m);
 *
 * A model that fails to load is logged and skipped; on reload it keeps its
 * previous version.  Requests hold a reference, so a reload or a delete never
 * pulls a model out from under a running request.
 */
#ifndef ATROUSD_MODEL_H
#define ATROUSD_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "graph.h"

#define MODEL_NAME_MAX 64

struct model;
struct models;

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

/* Load one model from dir/model.json; errors name the model, file and field. */
int model_load_dir(const char *dir, const char *name, int64_t max_elements, struct model **out,
                   char *err);

/* Build a model from a model.json body with inline tensors (an upload). */
int model_load_body(const char *name, const char *body, size_t len, int64_t max_elements,
                    struct model **out, char *err);

/* Borrowed views of a model. */
const char *model_name(const struct model *m);
const char *model_input_name(const struct model *m);
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

/* A registry over dir (may be NULL or "" for none); nothing is loaded yet. */
int models_new(struct models **out, const char *dir, int64_t max_elements, char *err);

/* Call fn(arg, name) before each model folder is loaded (e.g. to ask the
 * service manager for more start-up time). */
void models_set_progress(struct models *ms, void (*fn)(void *arg, const char *name), void *arg);

/* Load every model folder; the new set replaces the old at once.  failed
 * counts folders that did not load (their old version, if any, stays). */
int models_reload(struct models *ms, size_t *loaded, size_t *failed);

/* A counted reference to the named model, or NULL. */
struct model *models_get(struct models *ms, const char *name);

/* Number of models served now. */
size_t models_count(struct models *ms);

/* Call fn for each model in name order, with a counted reference held. */
void models_foreach(struct models *ms, void (*fn)(void *arg, struct model *m), void *arg);

/* Validate an upload, persist it atomically under dir/name, then serve it.
 * *created is 1 when the name was new. */
int models_put(struct models *ms, const char *name, const char *body, size_t len, int *created,
               char *err);

/* Remove a model from disk (atomically) and from the served set. */
int models_delete(struct models *ms, const char *name, char *err);

/* Free the registry (models still referenced by requests live on). */
void models_free(struct models *ms);

#endif

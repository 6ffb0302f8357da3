/* SPDX-License-Identifier: MIT */
/* models.h - the served set: every model folder of a directory, reloaded as
 * a whole, with uploads and deletes persisted atomically.
 *
 *	struct models *ms;
 *	models_new(&ms, "/var/lib/atrousd/models", max_elements, err);
 *	models_reload(ms, &loaded, &failed);          // build the whole set, then swap
 *	struct model *m = models_get(ms, "deeplab");  // counted reference
 *	...
 *	model_unref(m);
 *
 * A model that fails to load is logged and skipped; on reload it keeps its
 * previous version.  Requests hold a reference, so a reload or a delete never
 * pulls a model out from under a running request.
 */
#ifndef ATROUSD_MODELS_H
#define ATROUSD_MODELS_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"
#include "store.h"

struct models;

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

/* Triton's repository load: with no files, load (or reload) the folder
 * dir/name as it is; with files, stage them, load the model from the staged
 * folder, and install it as dir/name atomically.  A model that fails to
 * load changes nothing: its previous version keeps serving.  Clears an
 * unload.  *created is 1 when the folder was new. */
int models_load(struct models *ms, const char *name, const struct store_file *files, size_t n,
                int *created, char *err);

/* Stop serving a model and skip it in reloads until it is loaded again (its
 * folder stays); -ENOENT when it is not served. */
int models_unload(struct models *ms, const char *name, char *err);

/* One row of the repository index. */
struct models_entry {
	const char *name;
	int ready;          /* served */
	const char *reason; /* when not served: the load error, "unloaded", ... */
};

/* Call fn for every model folder and every served model, in name order. */
int models_index(struct models *ms, void (*fn)(void *arg, const struct models_entry *e), void *arg);

/* Remove a model from disk (atomically) and from the served set. */
int models_delete(struct models *ms, const char *name, char *err);

/* Free the registry (models still referenced by requests live on). */
void models_free(struct models *ms);

#endif

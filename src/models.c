/* SPDX-License-Identifier: MIT */
/* models.c - the served set of models: load every folder of the model
 * directory, swap the new set in at once; uploads, repository loads,
 * unloads and deletes, each persisted atomically (store.c) before the set
 * changes; and what the repository index reports for folders not served. */
#include "autoconfig.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "log.h"
#include "models.h"
#include "store.h"

struct models {
	char *dir; /* NULL: no model directory */
	int64_t max_elements;
	pthread_mutex_t lock;  /* the set pointer and its contents */
	pthread_mutex_t write; /* serialises reload, put and delete */
	unsigned deleted;      /* names the folders set aside by deletes (under write) */
	struct model **set;    /* sorted by name, each holding a reference */
	size_t n;
	struct status *status; /* folders not served and why (under write) */
	size_t nstatus;
	void (*progress)(void *arg, const char *name);
	void *progress_arg;
};

/* Why a folder is not served: it failed to load, or was unloaded. */
struct status {
	char name[MODEL_NAME_MAX + 1];
	int unloaded;
	char reason[ERR_LEN];
};

void models_set_progress(struct models *ms, void (*fn)(void *arg, const char *name), void *arg)
{
	ms->progress = fn;
	ms->progress_arg = arg;
}

int models_new(struct models **out, const char *dir, int64_t max_elements, char *err)
{
	struct models *ms = calloc(1, sizeof(*ms));

	*out = NULL;
	if (ms == NULL)
		return err_set(err, -ENOMEM, "out of memory");
	if (dir != NULL && dir[0] != '\0' && (ms->dir = strdup(dir)) == NULL) {
		free(ms);
		return err_set(err, -ENOMEM, "out of memory");
	}
	ms->max_elements = max_elements;
	pthread_mutex_init(&ms->lock, NULL);
	pthread_mutex_init(&ms->write, NULL);
	*out = ms;
	return 0;
}

static int by_name(const void *a, const void *b)
{
	return strcmp(model_name(*(struct model *const *)a), model_name(*(struct model *const *)b));
}

static int name_cmp(const void *key, const void *elem)
{
	return strcmp(key, model_name(*(struct model *const *)elem));
}

static struct model *find(struct model **set, size_t n, const char *name)
{
	struct model **hit = n > 0 ? bsearch(name, set, n, sizeof(*set), name_cmp) : NULL;

	return hit ? *hit : NULL;
}

struct model *models_get(struct models *ms, const char *name)
{
	struct model *m;

	pthread_mutex_lock(&ms->lock);
	m = find(ms->set, ms->n, name);
	if (m != NULL)
		model_ref(m);
	pthread_mutex_unlock(&ms->lock);
	return m;
}

size_t models_count(struct models *ms)
{
	size_t n;

	pthread_mutex_lock(&ms->lock);
	n = ms->n;
	pthread_mutex_unlock(&ms->lock);
	return n;
}

void models_foreach(struct models *ms, void (*fn)(void *arg, struct model *m), void *arg)
{
	struct model **copy;
	size_t i, n;

	pthread_mutex_lock(&ms->lock);
	n = ms->n;
	copy = calloc(n ? n : 1, sizeof(*copy));
	for (i = 0; copy && i < n; i++)
		copy[i] = model_ref(ms->set[i]);
	pthread_mutex_unlock(&ms->lock);
	if (copy == NULL)
		return;
	for (i = 0; i < n; i++) {
		fn(arg, copy[i]);
		model_unref(copy[i]);
	}
	free(copy);
}

/* Replace the served set; the old one's references are dropped. */
static void swap_set(struct models *ms, struct model **set, size_t n)
{
	struct model **old;
	size_t i, oldn;

	if (n > 1)
		qsort(set, n, sizeof(*set), by_name);
	pthread_mutex_lock(&ms->lock);
	old = ms->set;
	oldn = ms->n;
	ms->set = set;
	ms->n = n;
	pthread_mutex_unlock(&ms->lock);
	for (i = 0; i < oldn; i++)
		model_unref(old[i]);
	free(old);
}

/* The status entry of name, added when add is set (NULL on no memory). */
static struct status *status_of(struct models *ms, const char *name, int add)
{
	struct status *st;
	size_t i;

	for (i = 0; i < ms->nstatus; i++)
		if (strcmp(ms->status[i].name, name) == 0)
			return &ms->status[i];
	if (!add)
		return NULL;
	st = realloc(ms->status, (ms->nstatus + 1) * sizeof(*st));
	if (st == NULL)
		return NULL;
	ms->status = st;
	st = &ms->status[ms->nstatus++];
	memset(st, 0, sizeof(*st));
	snprintf(st->name, sizeof(st->name), "%s", name);
	return st;
}

static void status_clear(struct models *ms, const char *name)
{
	struct status *st = status_of(ms, name, 0);

	if (st != NULL)
		*st = ms->status[--ms->nstatus];
}

static void status_failed(struct models *ms, const char *name, const char *why)
{
	struct status *st = status_of(ms, name, 1);

	if (st != NULL)
		snprintf(st->reason, sizeof(st->reason), "%s", why);
}

/* Serve m in place of any model of its name (m's reference moves in). */
static int set_replace(struct models *ms, struct model *m, char *err)
{
	struct model **set;
	size_t i, n = 0;

	pthread_mutex_lock(&ms->lock);
	set = calloc(ms->n + 1, sizeof(*set));
	for (i = 0; set && i < ms->n; i++)
		if (strcmp(model_name(ms->set[i]), model_name(m)) != 0)
			set[n++] = model_ref(ms->set[i]);
	pthread_mutex_unlock(&ms->lock);
	if (set == NULL) {
		model_unref(m);
		return err_set(err, -ENOMEM, "out of memory");
	}
	set[n++] = m;
	swap_set(ms, set, n);
	status_clear(ms, model_name(m));
	return 0;
}

/* Stop serving name; 0, or -ENOENT when it is not served. */
static int set_remove(struct models *ms, const char *name, char *err)
{
	struct model **set;
	size_t i, n = 0;
	int found = 0;

	pthread_mutex_lock(&ms->lock);
	set = calloc(ms->n ? ms->n : 1, sizeof(*set));
	for (i = 0; set && i < ms->n; i++) {
		if (strcmp(model_name(ms->set[i]), name) != 0)
			set[n++] = model_ref(ms->set[i]);
		else
			found = 1;
	}
	pthread_mutex_unlock(&ms->lock);
	if (set == NULL)
		return err_set(err, -ENOMEM, "out of memory");
	if (!found) {
		free(set);
		return err_set(err, -ENOENT, "no model named \"%s\"", name);
	}
	swap_set(ms, set, n);
	return 0;
}

/* A folder entry of the model directory that may hold a model. */
static int is_model_folder(const struct models *ms, const char *entry, char *path)
{
	struct stat st;

	snprintf(path, PATH_MAX, "%s/%s", ms->dir, entry);
	return entry[0] != '.' && stat(path, &st) == 0 && S_ISDIR(st.st_mode) &&
	       model_name_ok(entry);
}

/* Finish replacements a crash interrupted, before the folders are read. */
static void recover(struct models *ms)
{
	struct dirent *e;
	char **names = NULL;
	size_t n = 0, i;
	DIR *d = opendir(ms->dir);

	while (d != NULL && (e = readdir(d)) != NULL) {
		char **nn;

		if (strncmp(e->d_name, ".replaced-", 10) != 0)
			continue;
		nn = realloc(names, (n + 1) * sizeof(*nn));
		if (nn == NULL)
			break;
		names = nn;
		if ((names[n] = strdup(e->d_name)) != NULL)
			n++;
	}
	if (d != NULL)
		closedir(d);
	for (i = 0; i < n; i++) {
		store_recover(ms->dir, names[i]);
		free(names[i]);
	}
	free(names);
}

int models_reload(struct models *ms, size_t *loaded, size_t *failed)
{
	struct model **set = NULL, *m;
	size_t n = 0, cap = 0;
	struct dirent *e;
	char err[ERR_LEN], path[PATH_MAX];
	const struct status *st;
	DIR *d;

	*loaded = *failed = 0;
	if (ms->dir == NULL)
		return 0;
	pthread_mutex_lock(&ms->write);
	recover(ms);
	d = opendir(ms->dir);
	if (d == NULL) {
		int rc = -errno;

		pthread_mutex_unlock(&ms->write);
		log_error("models_dir %s: %s", ms->dir, strerror(-rc));
		return rc;
	}
	while ((e = readdir(d)) != NULL) {
		if (strncmp(e->d_name, ".replaced-", 10) == 0)
			continue; /* handled by recover() before */
		if (strncmp(e->d_name, ".upload-", 8) == 0 ||
		    strncmp(e->d_name, ".deleted-", 9) == 0) {
			snprintf(path, sizeof(path), "%s/%s", ms->dir, e->d_name);
			store_remove(path); /* left by an interrupted upload or delete */
			continue;
		}
		if (!is_model_folder(ms, e->d_name, path)) {
			if (e->d_name[0] != '.' && !model_name_ok(e->d_name))
				log_warn("models_dir: skipping \"%s\": not a valid model name",
				         e->d_name);
			continue;
		}
		st = status_of(ms, e->d_name, 0);
		if (st != NULL && st->unloaded)
			continue; /* unloaded by request: loaded again by request */
		if (ms->progress != NULL)
			ms->progress(ms->progress_arg, e->d_name);
		if (model_load_dir(path, e->d_name, ms->max_elements, &m, err) < 0) {
			log_error("%s", err);
			status_failed(ms, e->d_name, err);
			(*failed)++;
			m = models_get(ms, e->d_name); /* keep the previous version */
			if (m == NULL)
				continue;
		} else {
			status_clear(ms, e->d_name);
		}
		if (n == cap) {
			struct model **ns = realloc(set, (cap = cap ? cap * 2 : 16) * sizeof(*set));

			if (ns == NULL) {
				model_unref(m);
				break;
			}
			set = ns;
		}
		set[n++] = m;
	}
	closedir(d);
	swap_set(ms, set, n);
	*loaded = n;
	pthread_mutex_unlock(&ms->write);
	return 0;
}

int models_put(struct models *ms, const char *name, const char *body, size_t len, int *created,
               char *err)
{
	struct store_file f = { "model.json", body, len };
	char tmp[PATH_MAX];
	struct model *m;
	int rc;

	if (ms->dir == NULL)
		return err_set(err, -EROFS,
		               "no models_dir is configured: uploads cannot be stored");
	rc = model_load_body(name, body, len, ms->max_elements, &m, err);
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&ms->write);
	rc = store_stage(ms->dir, &f, 1, tmp, err);
	if (rc == 0)
		rc = store_install(ms->dir, name, tmp, created, err);
	if (rc == 0)
		rc = set_replace(ms, m, err);
	else
		model_unref(m);
	pthread_mutex_unlock(&ms->write);
	return rc;
}

/* A message about the staged folder speaks of the files as sent: drop the
 * folder's path ("model m: /srv/.upload-x/1/model.onnx: ..." becomes
 * "model m: 1/model.onnx: ..."). */
static void unstage_message(char *err, const char *tmp)
{
	size_t n = strlen(tmp);
	char *p = strstr(err, tmp);

	if (p != NULL && p[n] == '/')
		memmove(p, p + n + 1, strlen(p + n + 1) + 1);
}

int models_load(struct models *ms, const char *name, const struct store_file *files, size_t n,
                int *created, char *err)
{
	char path[PATH_MAX], tmp[PATH_MAX];
	struct model *m = NULL;
	int rc;

	*created = 0;
	if (ms->dir == NULL)
		return err_set(err, -EROFS, "no models_dir is configured: models cannot be loaded");
	pthread_mutex_lock(&ms->write);
	if (n == 0) {
		/* Load (or reload) the folder as it is. */
		if (!is_model_folder(ms, name, path)) {
			pthread_mutex_unlock(&ms->write);
			return err_set(err, -ENOENT, "no model folder \"%s\" in the repository",
			               name);
		}
		rc = model_load_dir(path, name, ms->max_elements, &m, err);
	} else {
		/* Stage the files, load them from the staged folder, install. */
		rc = store_stage(ms->dir, files, n, tmp, err);
		if (rc == 0) {
			rc = model_load_dir(tmp, name, ms->max_elements, &m, err);
			if (rc < 0) {
				unstage_message(err, tmp);
				store_remove(tmp);
			}
		}
		if (rc == 0 && (rc = store_install(ms->dir, name, tmp, created, err)) < 0) {
			model_unref(m);
			m = NULL;
		}
	}
	/* On failure the previous version, if any, keeps serving. */
	if (rc == 0)
		rc = set_replace(ms, m, err);
	else if (n == 0)
		status_failed(ms, name, err);
	pthread_mutex_unlock(&ms->write);
	return rc;
}

int models_unload(struct models *ms, const char *name, char *err)
{
	struct status *st;
	int rc;

	pthread_mutex_lock(&ms->write);
	rc = set_remove(ms, name, err);
	if (rc == 0) {
		st = status_of(ms, name, 1);
		if (st != NULL) {
			st->unloaded = 1;
			snprintf(st->reason, sizeof(st->reason), "unloaded");
		}
	}
	pthread_mutex_unlock(&ms->write);
	return rc;
}

int models_delete(struct models *ms, const char *name, char *err)
{
	char target[PATH_MAX], aside[PATH_MAX];
	struct model *m;
	int rc;

	m = models_get(ms, name);
	if (m == NULL)
		return err_set(err, -ENOENT, "no model named \"%s\"", name);
	model_unref(m);
	pthread_mutex_lock(&ms->write);
	snprintf(target, sizeof(target), "%s/%s", ms->dir, name);
	snprintf(aside, sizeof(aside), "%s/.deleted-%s-%ld-%u", ms->dir, name, (long)getpid(),
	         ms->deleted++);
	rc = rename(target, aside) < 0 ? -errno : store_fsync_dir(ms->dir);
	if (rc < 0) {
		pthread_mutex_unlock(&ms->write);
		return err_set(err, rc, "model %s: cannot delete: %s", name, strerror(-rc));
	}
	store_remove(aside);
	rc = set_remove(ms, name, err);
	status_clear(ms, name);
	pthread_mutex_unlock(&ms->write);
	return rc == -ENOENT ? 0 : rc; /* a racing unload already removed it */
}

static int by_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Add name to a list of strdup'd names unless it is there. */
static int add_name(char ***names, size_t *n, const char *name)
{
	char **nn;
	size_t i;

	for (i = 0; i < *n; i++)
		if (strcmp((*names)[i], name) == 0)
			return 0;
	nn = realloc(*names, (*n + 1) * sizeof(*nn));
	if (nn == NULL)
		return -ENOMEM;
	*names = nn;
	nn[*n] = strdup(name);
	if (nn[*n] == NULL)
		return -ENOMEM;
	(*n)++;
	return 0;
}

int models_index(struct models *ms, void (*fn)(void *arg, const struct models_entry *e), void *arg)
{
	char **names = NULL, path[PATH_MAX];
	size_t n = 0, i;
	struct dirent *d;
	DIR *dir;
	int rc = 0;

	pthread_mutex_lock(&ms->write);
	dir = ms->dir ? opendir(ms->dir) : NULL;
	while (dir != NULL && rc == 0 && (d = readdir(dir)) != NULL)
		if (is_model_folder(ms, d->d_name, path))
			rc = add_name(&names, &n, d->d_name);
	if (dir != NULL)
		closedir(dir);
	pthread_mutex_lock(&ms->lock);
	for (i = 0; rc == 0 && i < ms->n; i++)
		rc = add_name(&names, &n, model_name(ms->set[i]));
	pthread_mutex_unlock(&ms->lock);
	if (rc == 0 && n > 1)
		qsort(names, n, sizeof(*names), by_str);
	for (i = 0; i < n; i++) {
		struct model *m = rc == 0 ? models_get(ms, names[i]) : NULL;
		const struct status *st = status_of(ms, names[i], 0);
		struct models_entry e = { names[i], m != NULL, "" };

		if (m == NULL)
			e.reason = st != NULL ? st->reason : "not loaded";
		if (rc == 0)
			fn(arg, &e);
		model_unref(m);
		free(names[i]);
	}
	free(names);
	pthread_mutex_unlock(&ms->write);
	return rc < 0 ? -ENOMEM : 0;
}

void models_free(struct models *ms)
{
	if (ms == NULL)
		return;
	swap_set(ms, NULL, 0);
	pthread_mutex_destroy(&ms->lock);
	pthread_mutex_destroy(&ms->write);
	free(ms->status);
	free(ms->dir);
	free(ms);
}

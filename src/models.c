/* SPDX-License-Identifier: MIT */
/* models.c - the served set of models: load every folder of the model
 * directory, swap the new set in at once, and persist uploads and deletions
 * atomically (temporary file or folder, fsync, rename, fsync of the parent). */
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

struct models {
	char *dir; /* NULL: no model directory */
	int64_t max_elements;
	pthread_mutex_t lock;  /* the set pointer and its contents */
	pthread_mutex_t write; /* serialises reload, put and delete */
	unsigned deleted;      /* names the folders set aside by deletes (under write) */
	struct model **set;    /* sorted by name, each holding a reference */
	size_t n;
	void (*progress)(void *arg, const char *name);
	void *progress_arg;
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

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return flag == FTW_DP ? rmdir(path) : unlink(path);
}

static void rm_tree(const char *path)
{
	if (nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
		log_warn("cannot remove %s: %s", path, strerror(errno));
}

int models_reload(struct models *ms, size_t *loaded, size_t *failed)
{
	struct model **set = NULL, *m;
	size_t n = 0, cap = 0;
	struct dirent *e;
	char err[ERR_LEN], path[PATH_MAX];
	DIR *d;

	*loaded = *failed = 0;
	if (ms->dir == NULL)
		return 0;
	pthread_mutex_lock(&ms->write);
	d = opendir(ms->dir);
	if (d == NULL) {
		int rc = -errno;

		pthread_mutex_unlock(&ms->write);
		log_error("models_dir %s: %s", ms->dir, strerror(-rc));
		return rc;
	}
	while ((e = readdir(d)) != NULL) {
		struct stat st;

		snprintf(path, sizeof(path), "%s/%s", ms->dir, e->d_name);
		if (strncmp(e->d_name, ".upload-", 8) == 0 ||
		    strncmp(e->d_name, ".deleted-", 9) == 0) {
			rm_tree(path); /* left by an interrupted upload or delete */
			continue;
		}
		if (e->d_name[0] == '.' || stat(path, &st) < 0 || !S_ISDIR(st.st_mode))
			continue;
		if (!model_name_ok(e->d_name)) {
			log_warn("models_dir: skipping \"%s\": not a valid model name", e->d_name);
			continue;
		}
		if (ms->progress != NULL)
			ms->progress(ms->progress_arg, e->d_name);
		if (model_load_dir(path, e->d_name, ms->max_elements, &m, err) < 0) {
			log_error("%s", err);
			(*failed)++;
			m = models_get(ms, e->d_name); /* keep the previous version */
			if (m == NULL)
				continue;
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

static int fsync_path(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_DIRECTORY), rc = 0;

	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		rc = -errno;
	close(fd);
	return rc;
}

static int write_file_synced(const char *path, const char *body, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600), rc = 0;
	size_t off = 0;

	if (fd < 0)
		return -errno;
	while (off < len && rc == 0) {
		ssize_t w = write(fd, body + off, len - off);

		if (w < 0 && errno != EINTR)
			rc = -errno;
		else if (w > 0)
			off += (size_t)w;
	}
	if (rc == 0 && fsync(fd) < 0)
		rc = -errno;
	if (close(fd) < 0 && rc == 0)
		rc = -errno;
	return rc;
}

/* snprintf that reports truncation as -ENAMETOOLONG. */
static int pathf(char *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int pathf(char *out, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(out, PATH_MAX, fmt, ap);
	va_end(ap);
	return n < 0 || n >= PATH_MAX ? -ENAMETOOLONG : 0;
}

/* Write dir/name/model.json so that a crash leaves the old or the new. */
static int persist(const char *dir, const char *name, const char *body, size_t len, int *created)
{
	char target[PATH_MAX], tmp[PATH_MAX], file[PATH_MAX];
	struct stat st;
	int rc;

	if (pathf(target, "%s/%s", dir, name) < 0)
		return -ENAMETOOLONG;
	if (stat(target, &st) == 0 && S_ISDIR(st.st_mode)) {
		/* Existing folder: replace model.json by rename. */
		*created = 0;
		if (pathf(tmp, "%s/.model.json.%ld", target, (long)getpid()) < 0 ||
		    pathf(file, "%s/model.json", target) < 0)
			return -ENAMETOOLONG;
		unlink(tmp);
		rc = write_file_synced(tmp, body, len);
		if (rc == 0 && rename(tmp, file) < 0)
			rc = -errno;
		if (rc < 0)
			unlink(tmp);
		return rc == 0 ? fsync_path(target) : rc;
	}
	/* New model: build the folder aside, then rename it into place. */
	*created = 1;
	if (pathf(tmp, "%s/.upload-XXXXXX", dir) < 0)
		return -ENAMETOOLONG;
	if (mkdtemp(tmp) == NULL)
		return -errno;
	if (pathf(file, "%s/model.json", tmp) < 0) {
		rm_tree(tmp);
		return -ENAMETOOLONG;
	}
	rc = write_file_synced(file, body, len);
	if (rc == 0)
		rc = fsync_path(tmp);
	if (rc == 0 && rename(tmp, target) < 0)
		rc = -errno;
	if (rc < 0) {
		rm_tree(tmp);
		return rc;
	}
	return fsync_path(dir);
}

int models_put(struct models *ms, const char *name, const char *body, size_t len, int *created,
               char *err)
{
	struct model *m, **set;
	size_t i, n = 0;
	int rc;

	if (ms->dir == NULL)
		return err_set(err, -EROFS,
		               "no models_dir is configured: uploads cannot be stored");
	rc = model_load_body(name, body, len, ms->max_elements, &m, err);
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&ms->write);
	rc = persist(ms->dir, name, body, len, created);
	if (rc < 0) {
		pthread_mutex_unlock(&ms->write);
		model_unref(m);
		return err_set(err, rc, "model %s: cannot store: %s", name, strerror(-rc));
	}
	pthread_mutex_lock(&ms->lock);
	set = calloc(ms->n + 1, sizeof(*set));
	for (i = 0; set && i < ms->n; i++)
		if (strcmp(model_name(ms->set[i]), name) != 0)
			set[n++] = model_ref(ms->set[i]);
	pthread_mutex_unlock(&ms->lock);
	if (set == NULL) {
		pthread_mutex_unlock(&ms->write);
		model_unref(m);
		return err_set(err, -ENOMEM, "out of memory");
	}
	set[n++] = m;
	swap_set(ms, set, n);
	pthread_mutex_unlock(&ms->write);
	return 0;
}

int models_delete(struct models *ms, const char *name, char *err)
{
	char target[PATH_MAX], aside[PATH_MAX];
	struct model **set, *m;
	size_t i, n = 0;
	int rc;

	m = models_get(ms, name);
	if (m == NULL)
		return err_set(err, -ENOENT, "no model named \"%s\"", name);
	model_unref(m);
	pthread_mutex_lock(&ms->write);
	snprintf(target, sizeof(target), "%s/%s", ms->dir, name);
	snprintf(aside, sizeof(aside), "%s/.deleted-%s-%ld-%u", ms->dir, name, (long)getpid(),
	         ms->deleted++);
	rc = rename(target, aside) < 0 ? -errno : fsync_path(ms->dir);
	if (rc < 0) {
		pthread_mutex_unlock(&ms->write);
		return err_set(err, rc, "model %s: cannot delete: %s", name, strerror(-rc));
	}
	rm_tree(aside);
	pthread_mutex_lock(&ms->lock);
	set = calloc(ms->n ? ms->n : 1, sizeof(*set));
	for (i = 0; set && i < ms->n; i++)
		if (strcmp(model_name(ms->set[i]), name) != 0)
			set[n++] = model_ref(ms->set[i]);
	pthread_mutex_unlock(&ms->lock);
	if (set != NULL)
		swap_set(ms, set, n);
	pthread_mutex_unlock(&ms->write);
	return 0;
}

void models_free(struct models *ms)
{
	if (ms == NULL)
		return;
	swap_set(ms, NULL, 0);
	pthread_mutex_destroy(&ms->lock);
	pthread_mutex_destroy(&ms->write);
	free(ms->dir);
	free(ms);
}

/* model.c - model loading, validation, the served set, atomic persistence. */
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
#include <time.h>
#include <unistd.h>

#include "codec.h"
#include "error.h"
#include "log.h"
#include "model.h"
#include "npy.h"

/* Largest model.json read from disk. */
#define MODEL_JSON_MAX ((size_t)1 << 30)

struct model {
	char name[MODEL_NAME_MAX + 1];
	char in_name[64], out_name[64];
	int64_t in_c, out_c;
	struct graph *graph;
	int refs; /* atomic */
	struct model_stats st;
};

struct models {
	char *dir; /* NULL: no model directory */
	int64_t max_elements;
	pthread_mutex_t lock;  /* the set pointer and its contents */
	pthread_mutex_t write; /* serialises reload, put and delete */
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

int model_name_ok(const char *name)
{
	size_t i, n = strlen(name);

	if (n == 0 || n > MODEL_NAME_MAX || name[0] == '.')
		return 0;
	for (i = 0; i < n; i++) {
		char c = name[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '.' || c == '-'))
			return 0;
	}
	return 1;
}

const char *model_name(const struct model *m)
{
	return m->name;
}

const char *model_input_name(const struct model *m)
{
	return m->in_name;
}

const char *model_output_name(const struct model *m)
{
	return m->out_name;
}

int64_t model_in_channels(const struct model *m)
{
	return m->in_c;
}

int64_t model_out_channels(const struct model *m)
{
	return m->out_c;
}

const struct graph *model_graph(const struct model *m)
{
	return m->graph;
}

struct model_stats *model_stats(struct model *m)
{
	return &m->st;
}

static void stat_add(struct model_stat *s, uint64_t ns)
{
	__atomic_add_fetch(&s->count, 1, __ATOMIC_RELAXED);
	__atomic_add_fetch(&s->ns, ns, __ATOMIC_RELAXED);
}

void model_record(struct model *m, int ok, uint64_t total_ns, uint64_t queue_ns, uint64_t input_ns,
                  uint64_t infer_ns, uint64_t output_ns, uint64_t batch)
{
	struct timespec now;

	if (!ok) {
		stat_add(&m->st.fail, total_ns);
		return;
	}
	stat_add(&m->st.success, total_ns);
	stat_add(&m->st.queue, queue_ns);
	stat_add(&m->st.compute_input, input_ns);
	stat_add(&m->st.compute_infer, infer_ns);
	stat_add(&m->st.compute_output, output_ns);
	__atomic_add_fetch(&m->st.inference_count, batch, __ATOMIC_RELAXED);
	__atomic_add_fetch(&m->st.execution_count, 1, __ATOMIC_RELAXED);
	clock_gettime(CLOCK_REALTIME, &now);
	__atomic_store_n(&m->st.last_inference_ms,
	                 (uint64_t)now.tv_sec * 1000u + (uint64_t)now.tv_nsec / 1000000u,
	                 __ATOMIC_RELAXED);
}

void model_stats_read(struct model *m, struct model_stats *out)
{
	const uint64_t *src = (const uint64_t *)&m->st;
	uint64_t *dst = (uint64_t *)out;
	size_t i;

	for (i = 0; i < sizeof(*out) / sizeof(uint64_t); i++)
		dst[i] = __atomic_load_n(&src[i], __ATOMIC_RELAXED);
}

void model_unref(struct model *m)
{
	if (m == NULL || __atomic_sub_fetch(&m->refs, 1, __ATOMIC_ACQ_REL) > 0)
		return;
	graph_free(m->graph);
	free(m);
}

static struct model *model_ref(struct model *m)
{
	__atomic_add_fetch(&m->refs, 1, __ATOMIC_RELAXED);
	return m;
}

struct load_ctx {
	struct codec_doc *doc;
	const char *dir; /* NULL for uploads */
};

/* dir/rel, refusing absolute paths, ".." and symlinks that leave dir. */
static int resolve(const char *dir, const char *rel, char *out, char *err)
{
	char path[PATH_MAX], real_dir[PATH_MAX];
	const char *p;

	if (rel[0] == '\0' || rel[0] == '/')
		return err_set(err, -EINVAL,
		               "npy path \"%.64s\" must be relative to the model folder", rel);
	for (p = rel; p != NULL; p = strchr(p, '/') ? strchr(p, '/') + 1 : NULL)
		if (strncmp(p, "..", 2) == 0 && (p[2] == '/' || p[2] == '\0'))
			return err_set(err, -EINVAL, "npy path \"%.64s\" escapes the model folder",
			               rel);
	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, rel) >= sizeof(path))
		return err_set(err, -ENAMETOOLONG, "npy path too long");
	if (realpath(dir, real_dir) == NULL)
		return err_set(err, -errno, "%s: %s", dir, strerror(errno));
	if (realpath(path, out) == NULL)
		return err_set(err, -errno, "%s: %s", rel, strerror(errno));
	if (strncmp(out, real_dir, strlen(real_dir)) != 0 || out[strlen(real_dir)] != '/')
		return err_set(err, -EINVAL, "npy path \"%.64s\" escapes the model folder", rel);
	return 0;
}

static int load_tensor(void *arg, json_t *v, const char *field, struct tensor **out, char *err)
{
	struct load_ctx *ctx = arg;
	json_t *npy = json_is_object(v) ? json_object_get(v, "npy") : NULL;
	char path[PATH_MAX];
	int rc;

	if (npy == NULL)
		return codec_doc_take_tensor(ctx->doc, v, field, out, err);
	if (!json_is_string(npy) || json_object_size(v) != 1)
		rc = err_set(err, -EINVAL, "{\"npy\": FILE} takes one string");
	else if (ctx->dir == NULL)
		rc = err_set(err, -EINVAL, "uploaded models must inline their tensors");
	else
		rc = resolve(ctx->dir, json_string_value(npy), path, err);
	if (rc == 0)
		rc = npy_load(path, out, err);
	if (rc < 0)
		err_prefix(err, "\"%s\"", field);
	return rc;
}

static int copy_name(json_t *obj, const char *def, char *dst, size_t len, const char *what,
                     char *err)
{
	json_t *v = json_is_object(obj) ? json_object_get(obj, "name") : NULL;

	if (v == NULL) {
		snprintf(dst, len, "%s", def);
		return 0;
	}
	if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) >= len)
		return err_set(err, -EINVAL, "%s.name must be a string of 1 to %zu characters",
		               what, len - 1);
	snprintf(dst, len, "%s", json_string_value(v));
	return 0;
}

static int build(const char *name, const char *body, size_t len, const char *dir,
                 int64_t max_elements, struct model **out, char *err)
{
	static const char *const keys[] = { "input", "output", "layers", "description" };
	struct load_ctx ctx = { NULL, dir };
	struct model *m;
	json_t *root, *in, *outp, *v;
	const char *key;
	size_t i;
	int rc;

	*out = NULL;
	m = calloc(1, sizeof(*m));
	if (m == NULL)
		return err_set(err, -ENOMEM, "out of memory");
	snprintf(m->name, sizeof(m->name), "%s", name);
	m->refs = 1;
	rc = codec_doc_parse(body, len, max_elements, &ctx.doc, err);
	if (rc < 0)
		goto fail;
	root = codec_doc_root(ctx.doc);
	json_object_foreach(root, key, v)
	{
		for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
			if (strcmp(key, keys[i]) == 0)
				break;
		if (i == sizeof(keys) / sizeof(keys[0])) {
			rc = err_set(err, -EINVAL, "unknown key \"%.64s\"", key);
			goto fail;
		}
	}
	in = json_object_get(root, "input");
	outp = json_object_get(root, "output");
	if ((in != NULL && !json_is_object(in)) || (outp != NULL && !json_is_object(outp))) {
		rc = err_set(err, -EINVAL, "\"input\" and \"output\" must be objects");
		goto fail;
	}
	rc = copy_name(in, "input", m->in_name, sizeof(m->in_name), "input", err);
	if (rc == 0)
		rc = copy_name(outp, "output", m->out_name, sizeof(m->out_name), "output", err);
	if (rc == 0)
		rc = graph_parse_layers(&m->graph, json_object_get(root, "layers"), load_tensor,
		                        &ctx, err);
	if (rc == 0)
		rc = graph_check_channels(m->graph, &m->out_c, err);
	if (rc < 0)
		goto fail;
	m->in_c = graph_in_channels(m->graph);
	v = in ? json_object_get(in, "channels") : NULL;
	if (v != NULL && (!json_is_integer(v) || json_integer_value(v) != m->in_c)) {
		rc = err_set(err, -EINVAL,
		             "input.channels must equal the first layer's in_channels %lld",
		             (long long)m->in_c);
		goto fail;
	}
	codec_doc_free(ctx.doc);
	*out = m;
	return 0;
fail:
	codec_doc_free(ctx.doc);
	graph_free(m->graph);
	free(m);
	return rc;
}

static int read_file(const char *path, char **buf, size_t *len, char *err)
{
	struct stat st;
	size_t got = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return err_set(err, -errno, "%s", strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (size_t)st.st_size > MODEL_JSON_MAX) {
		close(fd);
		return err_set(err, -EINVAL, "not a regular file of at most %zu bytes",
		               MODEL_JSON_MAX);
	}
	*buf = malloc((size_t)st.st_size + 1);
	if (*buf == NULL) {
		close(fd);
		return err_set(err, -ENOMEM, "out of memory");
	}
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, *buf + got, (size_t)st.st_size - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	*len = got;
	return 0;
}

int model_load_dir(const char *dir, const char *name, int64_t max_elements, struct model **out,
                   char *err)
{
	char path[PATH_MAX];
	char *body = NULL;
	size_t len = 0;
	int rc;

	snprintf(path, sizeof(path), "%s/model.json", dir);
	rc = read_file(path, &body, &len, err);
	if (rc == 0)
		rc = build(name, body, len, dir, max_elements, out, err);
	free(body);
	if (rc < 0)
		err_prefix(err, "model %s: %s", name, path);
	return rc;
}

int model_load_body(const char *name, const char *body, size_t len, int64_t max_elements,
                    struct model **out, char *err)
{
	int rc = build(name, body, len, NULL, max_elements, out, err);

	if (rc < 0)
		err_prefix(err, "model %s", name);
	return rc;
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
	return strcmp((*(struct model *const *)a)->name, (*(struct model *const *)b)->name);
}

static struct model *find(struct model **set, size_t n, const char *name)
{
	struct model key, *kp = &key, **hit;

	if (n == 0)
		return NULL;
	snprintf(key.name, sizeof(key.name), "%s", name);
	hit = bsearch(&kp, set, n, sizeof(*set), by_name);
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
	(void)st;
	(void)ftw;
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
		if (strcmp(ms->set[i]->name, name) != 0)
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
	static unsigned serial;
	char target[PATH_MAX], aside[PATH_MAX];
	struct model **set, *m;
	size_t i, n = 0;

	m = models_get(ms, name);
	if (m == NULL)
		return err_set(err, -ENOENT, "no model named \"%s\"", name);
	model_unref(m);
	pthread_mutex_lock(&ms->write);
	snprintf(target, sizeof(target), "%s/%s", ms->dir, name);
	snprintf(aside, sizeof(aside), "%s/.deleted-%s-%ld-%u", ms->dir, name, (long)getpid(),
	         serial++);
	if (rename(target, aside) < 0 || fsync_path(ms->dir) < 0) {
		int rc = -errno;

		pthread_mutex_unlock(&ms->write);
		return err_set(err, rc, "model %s: cannot delete: %s", name, strerror(-rc));
	}
	rm_tree(aside);
	pthread_mutex_lock(&ms->lock);
	set = calloc(ms->n ? ms->n : 1, sizeof(*set));
	for (i = 0; set && i < ms->n; i++)
		if (strcmp(ms->set[i]->name, name) != 0)
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

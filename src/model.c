/* SPDX-License-Identifier: MIT */
/* model.c - one stored model: model.json and its .npy files loaded and
 * validated into a graph, with its reference count and statistics.  The
 * served set is in models.c. */
#include "autoconfig.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "codec.h"
#include "error.h"
#include "log.h"
#include "graphjson.h"
#include "model.h"
#include "npy.h"
#include "onnx.h"

/* Largest model.json read from disk. */
#define MODEL_JSON_MAX ((size_t)1 << 30)

struct model {
	char name[MODEL_NAME_MAX + 1];
	char in_name[64], out_name[64];
	int64_t in_c, out_c;
	int nchw; /* the edges are NCHW (ONNX); the graph runs NHWC */
	struct graph *graph;
	int refs; /* atomic */
	struct model_stats st;
};

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

int model_nchw(const struct model *m)
{
	return m->nchw;
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

struct model *model_ref(struct model *m)
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
	static const char *const keys[] = { "input",       "output", "layers",
		                            "description", "layout", NULL };
	struct load_ctx ctx = { NULL, dir };
	struct model *m;
	json_t *root, *in, *outp, *v;
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
	rc = codec_check_keys(root, keys, NULL, err);
	if (rc < 0)
		goto fail;
	in = json_object_get(root, "input");
	outp = json_object_get(root, "output");
	if ((in != NULL && !json_is_object(in)) || (outp != NULL && !json_is_object(outp))) {
		rc = err_set(err, -EINVAL, "\"input\" and \"output\" must be objects");
		goto fail;
	}
	v = json_object_get(root, "layout");
	if (v != NULL && (!json_is_string(v) || (strcmp(json_string_value(v), "NHWC") != 0 &&
	                                         strcmp(json_string_value(v), "NCHW") != 0))) {
		rc = err_set(err, -EINVAL, "\"layout\" must be \"NHWC\" or \"NCHW\"");
		goto fail;
	}
	m->nchw = v != NULL && strcmp(json_string_value(v), "NCHW") == 0;
	rc = copy_name(in, "input", m->in_name, sizeof(m->in_name), "input", err);
	if (rc == 0)
		rc = copy_name(outp, "output", m->out_name, sizeof(m->out_name), "output", err);
	if (rc == 0)
		rc = graphjson_layers(&m->graph, json_object_get(root, "layers"), load_tensor, &ctx,
		                      err);
	if (rc == 0)
		rc = graph_check_channels(m->graph, &m->out_c, err);
	if (rc == 0)
		rc = graph_prepare(m->graph, err);
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

int model_load_onnx(const char *name, const void *data, size_t len, int64_t max_elements,
                    struct model **out, char *err)
{
	struct onnx_model om;
	struct model *m;
	int rc;

	*out = NULL;
	m = calloc(1, sizeof(*m));
	if (m == NULL)
		return err_set(err, -ENOMEM, "out of memory");
	rc = onnx_import(data, len, max_elements, &om, err);
	if (rc < 0) {
		free(m);
		return rc;
	}
	snprintf(m->name, sizeof(m->name), "%s", name);
	snprintf(m->in_name, sizeof(m->in_name), "%s", om.input);
	snprintf(m->out_name, sizeof(m->out_name), "%s", om.output);
	m->refs = 1;
	m->nchw = 1;
	m->graph = om.graph;
	m->in_c = om.in_channels;
	rc = graph_check_channels(m->graph, &m->out_c, err);
	if (rc == 0)
		rc = graph_prepare(m->graph, err);
	if (rc < 0) {
		graph_free(m->graph);
		free(m);
		return rc;
	}
	*out = m;
	return 0;
}

/* The files a model folder may hold, in the order they are looked for. */
static const char *const model_files[] = { "model.json", "model.onnx", "1/model.onnx" };

int model_load_dir(const char *dir, const char *name, int64_t max_elements, struct model **out,
                   char *err)
{
	char path[PATH_MAX];
	char *body = NULL;
	size_t len = 0, i;
	int rc = -ENOENT;

	*out = NULL;
	for (i = 0; i < sizeof(model_files) / sizeof(model_files[0]) && rc == -ENOENT; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, model_files[i]);
		rc = read_file(path, &body, &len, err);
	}
	if (rc == -ENOENT) {
		err_set(err, rc, "no model.json, model.onnx or 1/model.onnx");
		snprintf(path, sizeof(path), "%s", dir);
	} else if (rc == 0 && i == 1) {
		rc = build(name, body, len, dir, max_elements, out, err);
	} else if (rc == 0) {
		rc = model_load_onnx(name, body, len, max_elements, out, err);
	}
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

/* SPDX-License-Identifier: MIT */
/* repo.c - the repository endpoints: bodies checked like any request, files
 * decoded from base64, the model store doing the rest. */
#include "autoconfig.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "error.h"
#include "log.h"
#include "repo.h"

/* The body as a JSON object with only the allowed keys; an empty body is {}. */
static int parse_body(const char *body, size_t len, const char *const *keys, struct codec_doc **doc,
                      json_t **root, char *err)
{
	static const char empty[] = "{}";
	int rc;

	*doc = NULL;
	if (len == 0) {
		body = empty;
		len = 2;
	}
	rc = codec_doc_parse(body, len, 0, doc, err);
	if (rc < 0)
		return rc;
	*root = codec_doc_root(*doc);
	if (!json_is_object(*root))
		return err_set(err, -EINVAL, "the body must be a JSON object");
	return codec_check_keys(*root, keys, NULL, err);
}

struct index_ctx {
	struct buf *b;
	int ready_only, n;
};

static void index_row(void *arg, const struct models_entry *e)
{
	struct index_ctx *c = arg;

	if (c->ready_only && !e->ready)
		return;
	buf_puts(c->b, c->n++ ? ",{\"name\":" : "{\"name\":");
	buf_json_string(c->b, e->name);
	buf_printf(c->b, ",\"version\":\"1\",\"state\":\"%s\"", e->ready ? "READY" : "UNAVAILABLE");
	if (!e->ready) {
		buf_puts(c->b, ",\"reason\":");
		buf_json_string(c->b, e->reason);
	}
	buf_puts(c->b, "}");
}

void repo_index(struct models *ms, const char *body, size_t len, struct reply *r)
{
	static const char *const keys[] = { "ready", NULL };
	struct codec_doc *doc;
	struct index_ctx c = { NULL, 0, 0 };
	struct buf b = { 0 };
	char err[ERR_LEN];
	json_t *root, *ready;
	int rc = parse_body(body, len, keys, &doc, &root, err);

	if (rc == 0) {
		ready = json_object_get(root, "ready");
		if (ready != NULL && !json_is_boolean(ready))
			rc = err_set(err, -EINVAL, "\"ready\" must be true or false");
		c.ready_only = json_is_true(ready);
	}
	codec_doc_free(doc);
	if (rc < 0) {
		reply_error(r, reply_status_of(rc), "%s", err);
		return;
	}
	c.b = &b;
	buf_puts(&b, "[");
	if (models_index(ms, index_row, &c) < 0) {
		buf_free(&b);
		reply_error(r, 503, "out of memory");
		return;
	}
	buf_puts(&b, "]\n");
	reply_buf(r, 200, &b);
}

/* The files of a load request: every "file:PATH" parameter, base64. */
struct files {
	struct store_file f[REPO_MAX_FILES];
	size_t n;
};

static void files_free(struct files *fs)
{
	size_t i;

	for (i = 0; i < fs->n; i++) {
		free((void *)fs->f[i].path);
		free((void *)fs->f[i].data);
	}
	fs->n = 0;
}

static int add_file(struct files *fs, const char *key, json_t *v, char *err)
{
	const char *path = key + 5, *s = json_string_value(v);
	size_t len = json_string_length(v);
	unsigned char *data;
	char *copy;
	long long n;

	if (s == NULL)
		return err_set(err, -EINVAL, "parameter \"%.64s\" must be a base64 string", key);
	if (!store_path_ok(path))
		return err_set(err, -EINVAL,
		               "parameter \"%.64s\": a model file is NAME or DIR/NAME of "
		               "[A-Za-z0-9_.-], not starting with '.'",
		               key);
	if (fs->n == REPO_MAX_FILES)
		return err_set(err, -E2BIG, "more than %d files", REPO_MAX_FILES);
	data = malloc(len / 4 * 3 + 3);
	copy = strdup(path); /* the key dies with the request's JSON */
	if (data == NULL || copy == NULL) {
		free(data);
		free(copy);
		return err_set(err, -ENOMEM, "out of memory");
	}
	n = codec_base64_decode(s, len, data);
	if (n < 0) {
		free(data);
		free(copy);
		return err_set(err, -EINVAL, "parameter \"%.64s\" is not valid base64", key);
	}
	fs->f[fs->n++] = (struct store_file){ copy, data, (size_t)n };
	return 0;
}

/* {"parameters": {"config": "<JSON object>", "file:...": "<base64>"}} */
static int load_files(json_t *root, struct files *fs, char *err)
{
	json_t *params = json_object_get(root, "parameters"), *config, *v, *parsed;
	const char *key;
	int rc = 0;

	if (params == NULL)
		return 0;
	if (!json_is_object(params))
		return err_set(err, -EINVAL, "\"parameters\" must be an object");
	json_object_foreach (params, key, v) {
		if (strncmp(key, "file:", 5) == 0)
			rc = add_file(fs, key, v, err);
		else if (strcmp(key, "config") != 0)
			rc = err_set(err, -EINVAL,
			             "unknown parameter \"%.64s\" (expected \"config\" and "
			             "\"file:PATH\")",
			             key);
		if (rc < 0)
			return rc;
	}
	config = json_object_get(params, "config");
	if (fs->n > 0 && config == NULL)
		return err_set(err, -EINVAL, "a \"file:\" parameter requires \"config\"");
	if (config == NULL)
		return 0;
	/* The model itself carries its names and shapes: the configuration
	 * must be a JSON object, and is not otherwise read. */
	parsed = json_is_string(config) ? json_loads(json_string_value(config), 0, NULL) : NULL;
	rc = json_is_object(parsed) ? 0
	                            : err_set(err, -EINVAL,
	                                      "\"config\" must be a string holding "
	                                      "a JSON object");
	json_decref(parsed);
	if (rc == 0 && fs->n == 0)
		rc = err_set(err, -EINVAL,
		             "\"config\" without files: atrousd has no configuration "
		             "to override; send the model files with it, or neither");
	return rc;
}

void repo_load(struct models *ms, const char *name, const char *body, size_t len, struct reply *r)
{
	static const char *const keys[] = { "parameters", NULL };
	struct files *fs = calloc(1, sizeof(*fs));
	struct codec_doc *doc = NULL;
	char err[ERR_LEN];
	json_t *root;
	int rc, created = 0;

	if (fs == NULL) {
		reply_error(r, 503, "out of memory");
		return;
	}
	rc = parse_body(body, len, keys, &doc, &root, err);
	if (rc == 0)
		rc = load_files(root, fs, err);
	codec_doc_free(doc);
	if (rc == 0)
		rc = models_load(ms, name, fs->f, fs->n, &created, err);
	if (rc < 0) {
		log_warn("repository load of %s refused: %s", name, err);
		reply_error(r, reply_status_of(rc), "failed to load '%s': %s", name, err);
	} else {
		log_info("model %s loaded%s", name,
		         fs->n == 0 ? " from its folder"
		         : created  ? " (new)"
		                    : " (replaced)");
		reply_model(r, 200, name, "state", "READY");
	}
	files_free(fs);
	free(fs);
}

void repo_unload(struct models *ms, const char *name, const char *body, size_t len, struct reply *r)
{
	static const char *const keys[] = { "parameters", NULL };
	struct codec_doc *doc;
	char err[ERR_LEN];
	json_t *root, *params;
	int rc = parse_body(body, len, keys, &doc, &root, err);

	/* unload_dependents has no meaning here: a model depends on no other. */
	params = rc == 0 ? json_object_get(root, "parameters") : NULL;
	if (params != NULL && !json_is_object(params))
		rc = err_set(err, -EINVAL, "\"parameters\" must be an object");
	codec_doc_free(doc);
	if (rc == 0)
		rc = models_unload(ms, name, err);
	if (rc < 0) {
		reply_error(r, reply_status_of(rc), "failed to unload '%s': %s", name, err);
		return;
	}
	log_info("model %s unloaded", name);
	reply_model(r, 200, name, "state", "UNAVAILABLE");
}

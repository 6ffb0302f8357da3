/* SPDX-License-Identifier: MIT */
/* api.c - native endpoints: decode with codec, run the graph, encode, time. */
#include "autoconfig.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>

#include "api.h"
#include "buf.h"
#include "codec.h"
#include "error.h"
#include "graphjson.h"
#include "kserve.h"
#include "log.h"
#include "metrics.h"
#include "models.h"
#include "pool.h"
#include "reply.h"
#include "repo.h"
#include "tensor.h"

struct api {
	const struct config *cfg;
	const struct par_runner *runner;
	struct pool *pool;
	struct models *models;
	struct metrics *metrics;
	char *admin_token; /* NULL: admin API disabled */
	int state;         /* enum api_state, atomic */
};

uint64_t api_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int take_tensor(void *ctx, json_t *v, const char *field, struct tensor **out, char *err)
{
	return codec_doc_take_tensor(ctx, v, field, out, err);
}

/* Decode the body into a graph, an input value and the reply encoding. */
static int decode(struct api *a, enum endpoint ep, const char *body, size_t len, struct graph **g,
                  struct tensor **value, enum codec_enc *enc, char *err)
{
	static const char *const root_keys[] = { "value", "layers", "output_encoding", "timeout_us",
		                                 NULL };
	struct codec_doc *doc = NULL;
	json_t *root, *v;
	char shape[160];
	int rc;

	*g = NULL;
	*value = NULL;
	rc = codec_doc_parse(body, len, (int64_t)a->cfg->max_elements, &doc, err);
	if (rc < 0)
		return rc;
	root = codec_doc_root(doc);
	*enc = CODEC_FLAT;
	v = json_object_get(root, "output_encoding");
	if (v != NULL && (rc = codec_parse_encoding(json_string_value(v), enc, err)) < 0)
		goto done;
	rc = codec_check_timeout(json_object_get(root, "timeout_us"), "timeout_us", err);
	if (rc < 0)
		goto done;
	if (ep == EP_SEQUENTIAL) {
		rc = codec_check_keys(root, root_keys, NULL, err);
		if (rc == 0)
			rc = graphjson_layers(g, json_object_get(root, "layers"), take_tensor, doc,
			                      err);
	} else {
		rc = graphjson_layer(g, root, ep == EP_ASPP ? "aspp" : "atrous_conv2d", take_tensor,
		                     doc, err);
	}
	if (rc < 0)
		goto done;
	rc = codec_doc_take_tensor(doc, json_object_get(root, "value"), "value", value, err);
	if (rc == 0 && (*value)->rank != 4)
		rc = err_set(err, -EINVAL, "value must be rank 4 (NHWC), got shape %s",
		             tensor_shape_str((*value)->rank, (*value)->dim, shape, sizeof(shape)));
done:
	codec_doc_free(doc);
	if (rc < 0) {
		graph_free(*g);
		tensor_free(*value);
		*g = NULL;
		*value = NULL;
	}
	return rc;
}

static uint64_t us(uint64_t ns)
{
	return ns / 1000;
}

/* Server-Timing value from stage durations in ns, as milliseconds with three
 * decimals. */
static void server_timing(char *dst, size_t len, uint64_t decode, uint64_t queue, uint64_t compute,
                          uint64_t encode)
{
	static const char *const name[4] = { "decode;dur=", ", queue;dur=", ", compute;dur=",
		                             ", encode;dur=" };
	const uint64_t ns[4] = { decode, queue, compute, encode };
	char *p = dst;
	int i;

	/* Each part is at most 14 + 24 bytes. */
	for (i = 0; i < 4 && (size_t)(p - dst) + 40 < len; i++) {
		memcpy(p, name[i], strlen(name[i]));
		p += strlen(name[i]);
		p += buf_fmt_dec(p, ns[i] / 1000, 3);
	}
	*p = '\0';
}

/* The stage boundaries of one computation (CLOCK_MONOTONIC ns). */
struct stages {
	uint64_t start, enqueue; /* request line, handed to the pool */
	uint64_t begin, decoded, computed, encoded;
};

/* The timing fields shared by native replies ("timing") and KServe replies
 * ("parameters"), without braces. */
static void put_stages(struct buf *b, const struct stages *s, double flops)
{
	buf_puts(b, "\"decode_us\":");
	buf_dec(b, us(s->decoded - s->begin), 0);
	buf_puts(b, ",\"queue_us\":");
	buf_dec(b, us(s->begin - s->enqueue), 0);
	buf_puts(b, ",\"compute_us\":");
	buf_dec(b, us(s->computed - s->decoded), 0);
	buf_puts(b, ",\"encode_us\":");
	buf_dec(b, us(s->encoded - s->computed), 0);
	buf_puts(b, ",\"total_us\":");
	buf_dec(b, us(s->encoded - s->start), 0);
	buf_puts(b, ",\"flops\":");
	buf_dec(b, (uint64_t)flops, 0);
}

/* The algorithm of each layer (graph_stats' text): a JSON array of its
 * ','-separated items, or one string (KServe parameters hold scalars). */
static void put_algorithms(struct buf *b, const struct graph_stats *st, int array)
{
	const char *p = st->algorithms;

	buf_puts(b, array ? ",\"algorithms\":[\"" : ",\"algorithms\":\"");
	for (; *p != '\0'; p++) {
		if (*p == ',' && array)
			buf_puts(b, "\",\"");
		else
			buf_add(b, p, 1); /* [a-z0-9+,.] only */
	}
	buf_puts(b, array ? "\"]" : "\"");
}

/* A computation succeeded: its Server-Timing header and its metrics. */
static void record_stages(struct api *a, struct reply *r, const struct stages *s, const char *model,
                          double flops)
{
	server_timing(r->server_timing, sizeof(r->server_timing), s->decoded - s->begin,
	              s->begin - s->enqueue, s->computed - s->decoded, s->encoded - s->computed);
	metrics_compute(a->metrics, model, s->begin - s->enqueue, s->decoded - s->begin,
	                s->computed - s->decoded, s->encoded - s->computed, flops);
	snprintf(r->model, sizeof(r->model), "%s", model);
	r->queue_us = us(s->begin - s->enqueue);
	r->compute_us = us(s->computed - s->decoded);
}

static void native(struct api *a, enum endpoint ep, const char *body, size_t len,
                   const struct api_times *t, struct reply *r)
{
	struct stages sg = { t->start, t->enqueue, api_now_ns(), 0, 0, 0 };
	struct graph_stats st = { 0 };
	struct tensor *value = NULL, *out = NULL;
	struct graph *g = NULL;
	struct buf b = { 0 };
	enum codec_enc enc;
	unsigned long long milli;
	uint64_t ns;
	int64_t odim[4];
	char err[ERR_LEN];
	int rc;

	rc = decode(a, ep, body, len, &g, &value, &enc, err);
	if (rc == 0)
		rc = graph_output_shape(g, value->dim, (int64_t)a->cfg->max_output_elements, odim,
		                        err);
	sg.decoded = api_now_ns();
	if (rc == 0)
		rc = graph_run(g, value, a->runner, &out, &st, err);
	sg.computed = api_now_ns();
	if (rc == 0)
		rc = codec_check_finite(out, err);
	if (rc < 0) {
		reply_error(r, reply_status_of(rc), "%s", err);
		goto done;
	}
	buf_puts(&b, "{\"output\":");
	codec_put_tensor(&b, out, enc, a->runner);
	sg.encoded = api_now_ns();
	/* GFLOP/s with three decimals = flops / ns, in integer arithmetic. */
	ns = sg.computed > sg.decoded ? sg.computed - sg.decoded : 1;
	milli = (unsigned long long)(st.useful_flops * 1000.0 / (double)ns);
	buf_puts(&b, ",\"timing\":{");
	put_stages(&b, &sg, st.useful_flops);
	put_algorithms(&b, &st, 1);
	buf_puts(&b, ",\"gflops\":");
	buf_dec(&b, milli, 3);
	buf_puts(&b, "}}\n");
	if (buf_ok(&b) < 0) {
		buf_free(&b);
		reply_error(r, 503, "out of memory while encoding the reply");
		goto done;
	}
	reply_clear(r);
	r->status = 200;
	r->content_type = "application/json";
	r->body = buf_take(&b, &r->len);
	record_stages(a, r, &sg, endpoint_label(ep), st.useful_flops);
done:
	tensor_free(out);
	tensor_free(value);
	graph_free(g);
}

static void infer(struct api *a, const struct api_request *rq, struct reply *r)
{
	struct stages sg = { rq->t.start, rq->t.enqueue, api_now_ns(), 0, 0, 0 };
	struct kserve_request req = { 0 };
	struct graph_stats st = { 0 };
	struct tensor *out = NULL;
	struct buf data = { 0 }, b = { 0 }, params = { 0 };
	struct model *m;
	char err[ERR_LEN];
	int64_t odim[4];
	size_t json_len;
	int rc;

	m = models_get(a->models, rq->route->model);
	if (m == NULL) {
		reply_error(r, 404, "unknown model \"%s\"", rq->route->model);
		return;
	}
	snprintf(r->model, sizeof(r->model), "%s", model_name(m));
	rc = kserve_decode(m, rq->body, rq->len, rq->header_len, rq->padded,
	                   (int64_t)a->cfg->max_elements, &req, err);
	if (rc == 0 && model_nchw(m))
		rc = tensor_relayout(&req.input, 1, err); /* the graph runs NHWC */
	if (rc == 0)
		rc = graph_output_shape(model_graph(m), req.input->dim,
		                        (int64_t)a->cfg->max_output_elements, odim, err);
	sg.decoded = api_now_ns();
	if (rc == 0)
		rc = graph_run(model_graph(m), req.input, a->runner, &out, &st, err);
	sg.computed = api_now_ns();
	if (rc == 0)
		rc = codec_check_finite(out, err);
	if (rc < 0) {
		if (req.has_id) {
			err_prefix(err, "[request id: %.64s]", req.id);
			snprintf(r->request_id, sizeof(r->request_id), "%.63s", req.id);
		}
		reply_error(r, reply_status_of(rc), "%s", err);
		model_record(m, 0, api_now_ns() - rq->t.start, 0, 0, 0, 0, 0);
		goto done;
	}
	if (model_nchw(m) && tensor_relayout(&out, 0, err) < 0) {
		reply_error(r, reply_status_of(-ENOMEM), "%s", err);
		model_record(m, 0, api_now_ns() - rq->t.start, 0, 0, 0, 0, 0);
		goto done;
	}
	kserve_encode_data(&data, &req, out, a->runner);
	sg.encoded = api_now_ns();
	buf_puts(&params, "{");
	put_stages(&params, &sg, st.useful_flops);
	put_algorithms(&params, &st, 0);
	buf_add(&params, "}", 2); /* with its NUL: a C string */
	kserve_encode(&b, &json_len, m, &req, out, buf_ok(&params) == 0 ? params.data : "{}",
	              &data);
	reply_buf(r, 200, &b);
	if (req.has_id)
		snprintf(r->request_id, sizeof(r->request_id), "%.63s", req.id);
	if (r->status == 200 && req.binary_output) {
		r->content_type = "application/octet-stream";
		snprintf(r->infer_header_len, sizeof(r->infer_header_len), "%zu", json_len);
	}
	if (r->status == 200)
		record_stages(a, r, &sg, model_name(m), st.useful_flops);
	model_record(m, r->status == 200, api_now_ns() - rq->t.start, sg.begin - sg.enqueue,
	             sg.decoded - sg.begin, sg.computed - sg.decoded, sg.encoded - sg.computed,
	             (uint64_t)req.input->dim[0]);
done:
	buf_free(&data);
	buf_free(&params);
	tensor_free(out);
	kserve_request_clear(&req);
	model_unref(m);
}

static void admin(struct api *a, const struct api_request *rq, struct reply *r)
{
	const char *name = rq->route->model;
	struct buf b = { 0 };
	char err[ERR_LEN];
	size_t loaded, failed;
	int rc, created = 0;

	switch (rq->route->ep) {
	case EP_MODEL_PUT:
		rc = models_put(a->models, name, rq->body, rq->len, &created, err);
		if (rc < 0) {
			reply_error(r, reply_status_of(rc), "%s", err);
			return;
		}
		log_info("model %s %s by upload", name, created ? "created" : "replaced");
		reply_model(r, created ? 201 : 200, name, "status",
		            created ? "created" : "replaced");
		return;
	case EP_MODEL_DELETE:
		rc = models_delete(a->models, name, err);
		if (rc < 0) {
			reply_error(r, reply_status_of(rc), "%s", err);
			return;
		}
		log_info("model %s deleted", name);
		reply_model(r, 200, name, "status", "deleted");
		return;
	case EP_REPO_INDEX: repo_index(a->models, rq->body, rq->len, r); return;
	case EP_REPO_LOAD: repo_load(a->models, name, rq->body, rq->len, r); return;
	case EP_REPO_UNLOAD: repo_unload(a->models, name, rq->body, rq->len, r); return;
	default:
		rc = api_reload(a, "reload", &loaded, &failed);
		if (rc < 0) {
			reply_error(r, 500, "reload failed: %s", strerror(-rc));
			return;
		}
		buf_printf(&b, "{\"loaded\":%zu,\"failed\":%zu}\n", loaded, failed);
		reply_buf(r, 200, &b);
		return;
	}
}

uint64_t api_expected_ns(struct api *a, const struct route *rt)
{
	return rt->ep == EP_INFER ? metrics_mean_compute_ns(a->metrics, rt->model) : 0;
}

void api_abandoned(struct api *a, const struct route *rt, enum metrics_abandon why,
                   uint64_t used_ns)
{
	uint64_t mean = metrics_mean_compute_ns(
	        a->metrics, rt->ep == EP_INFER ? rt->model : endpoint_label(rt->ep));

	metrics_abandoned(a->metrics, rt->ep, why, mean > used_ns ? mean - used_ns : 0);
}

void api_deadline_text(char *out, size_t len, const struct route *rt, uint64_t timeout_us,
                       uint64_t start_ns, uint64_t deadline_ns, uint64_t queued_us,
                       uint64_t expected_ns)
{
	uint64_t now = api_now_ns();

	if (expected_ns != 0 && now < deadline_ns)
		snprintf(out, len,
		         "deadline of %llu us cannot be met: %llu us left after %llu us (queued "
		         "%llu us), and model \"%s\" computes in %llu us on average",
		         (unsigned long long)timeout_us, (unsigned long long)us(deadline_ns - now),
		         (unsigned long long)us(now - start_ns), (unsigned long long)queued_us,
		         rt->model, (unsigned long long)us(expected_ns));
	else
		snprintf(out, len, "deadline of %llu us exceeded after %llu us (queued %llu us)",
		         (unsigned long long)timeout_us, (unsigned long long)us(now - start_ns),
		         (unsigned long long)queued_us);
}

void api_run(struct api *a, const struct api_request *rq, struct reply *r)
{
	switch (rq->route->ep) {
	case EP_CONV:
	case EP_ASPP:
	case EP_SEQUENTIAL: native(a, rq->route->ep, rq->body, rq->len, &rq->t, r); return;
	case EP_INFER: infer(a, rq, r); return;
	case EP_MODEL_PUT:
	case EP_MODEL_DELETE:
	case EP_REPO_INDEX:
	case EP_REPO_LOAD:
	case EP_REPO_UNLOAD:
	case EP_RELOAD: admin(a, rq, r); return;
	default:
		reply_error(r, 500, "endpoint %s does not run on a worker",
		            endpoint_label(rq->route->ep));
	}
}

struct stats_ctx {
	struct buf *b;
	int n;
};

/* Each model's transformed-weights bytes for /metrics (names copied: a
 * reload may free a model before the page is written). */
struct fast_list {
	struct metrics_model_bytes *v;
	char (*names)[MODEL_NAME_MAX + 1];
	size_t n, cap;
};

static void fast_one(void *arg, struct model *m)
{
	struct fast_list *l = arg;

	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 16;
		struct metrics_model_bytes *v = realloc(l->v, cap * sizeof(*v));
		char(*names)[MODEL_NAME_MAX + 1];

		if (v == NULL)
			return;
		l->v = v;
		names = realloc(l->names, cap * sizeof(*names));
		if (names == NULL)
			return;
		l->names = names;
		l->cap = cap;
	}
	snprintf(l->names[l->n], sizeof(l->names[l->n]), "%s", model_name(m));
	l->v[l->n].bytes = graph_fast_bytes(model_graph(m));
	l->n++;
}

static void fast_list_free(struct fast_list *l)
{
	free(l->v);
	free(l->names);
}

static void stat_one(void *arg, struct model *m)
{
	struct stats_ctx *c = arg;

	if (c->n++)
		buf_puts(c->b, ",");
	kserve_model_stat(c->b, m);
}

void api_quick(struct api *a, const struct route *rt, struct reply *r)
{
	int state = __atomic_load_n(&a->state, __ATOMIC_ACQUIRE);
	struct stats_ctx sc;
	struct model *m = NULL;
	struct buf b = { 0 };

	switch (rt->ep) {
	case EP_LIVE: reply_text(r, 200, "{\"live\":true}\n"); return;
	case EP_READY:
		if (state == API_READY) {
			reply_text(r, 200, "{\"ready\":true}\n");
			return;
		}
		reply_text(r, 503,
		           state == API_STARTING
		                   ? "{\"ready\":false,\"error\":\"starting\"}\n"
		                   : "{\"ready\":false,\"error\":\"shutting down\"}\n");
		r->retry_after = (int)a->cfg->retry_after;
		return;
	case EP_SERVER_META:
		kserve_server_metadata(&b);
		reply_buf(r, 200, &b);
		return;
	case EP_METRICS: {
		struct pool_counts pc = a->pool ? pool_counts(a->pool) : (struct pool_counts){ 0 };
		struct metrics_gauges g = { .queue_depth = pc.queued,
			                    .workers = a->pool ? pool_workers(a->pool) : 0,
			                    .workers_busy = pc.running,
			                    .models_loaded = models_count(a->models),
			                    .fast_budget = (size_t)a->cfg->fast_weights_budget,
			                    .buffer_cache = tensor_cache_bytes(),
			                    .buffer_cache_limit = (size_t)a->cfg->buffer_cache };
		struct fast_list fl = { 0 };
		size_t i;

		models_foreach(a->models, fast_one, &fl);
		for (i = 0; i < fl.n; i++)
			fl.v[i].model = fl.names[i];
		g.fast = fl.v;
		g.nfast = fl.n;
		metrics_render(a->metrics, &b, &g);
		fast_list_free(&fl);
		reply_buf(r, 200, &b);
		r->content_type = METRICS_CONTENT_TYPE;
		return;
	}
	case EP_STATS_ALL:
		buf_puts(&b, "{\"model_stats\":[");
		sc.b = &b;
		sc.n = 0;
		models_foreach(a->models, stat_one, &sc);
		buf_puts(&b, "]}\n");
		reply_buf(r, 200, &b);
		return;
	default: break;
	}
	m = models_get(a->models, rt->model);
	if (m == NULL) {
		reply_error(r, 404, "unknown model \"%s\"", rt->model);
		return;
	}
	if (rt->ep == EP_MODEL_META) {
		kserve_model_metadata(&b, m);
	} else if (rt->ep == EP_MODEL_READY) {
		buf_puts(&b, "{\"name\":");
		buf_json_string(&b, model_name(m));
		buf_puts(&b, ",\"ready\":true}\n");
	} else {
		buf_puts(&b, "{\"model_stats\":[");
		kserve_model_stat(&b, m);
		buf_puts(&b, "]}\n");
	}
	model_unref(m);
	reply_buf(r, 200, &b);
}

static int load_token(struct api *a, char *err)
{
	char buf[512];
	ssize_t n;
	int fd;

	a->admin_token = NULL;
	if (a->cfg->admin_token_file[0] == '\0')
		return 0;
	fd = open(a->cfg->admin_token_file, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return err_set(err, -errno, "admin_token_file %s: %s", a->cfg->admin_token_file,
		               strerror(errno));
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n < 0)
		return err_set(err, -EIO, "admin_token_file %s: cannot read",
		               a->cfg->admin_token_file);
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
		n--;
	buf[n] = '\0';
	if (n < 16)
		return err_set(err, -EINVAL,
		               "admin_token_file %s: the token must have at least 16 characters",
		               a->cfg->admin_token_file);
	a->admin_token = strdup(buf);
	memset(buf, 0, sizeof(buf));
	return a->admin_token ? 0 : err_set(err, -ENOMEM, "out of memory");
}

/* Compare in time independent of where the strings differ. */
static int same_secret(const char *given, size_t glen, const char *secret)
{
	size_t slen = strlen(secret), i;
	unsigned char diff = (unsigned char)(glen != slen);

	for (i = 0; i < slen; i++)
		diff |= (unsigned char)(secret[i] ^ (i < glen ? given[i] : 0));
	return diff == 0;
}

int api_authorize(struct api *a, const char *authorization, struct reply *r)
{
	if (a->admin_token == NULL) {
		reply_error(r, 403, "the admin API is disabled: no admin_token_file is configured");
		return -EPERM;
	}
	if (authorization != NULL && strncmp(authorization, "Bearer ", 7) == 0 &&
	    same_secret(authorization + 7, strlen(authorization + 7), a->admin_token))
		return 0;
	reply_error(r, 401, "%s",
	            authorization ? "wrong admin token"
	                          : "missing admin token (Authorization: Bearer ...)");
	r->www_authenticate = "Bearer realm=\"atrousd\"";
	return -EACCES;
}

int api_new(struct api **out, const struct config *cfg, struct pool *pool, struct models *models,
            struct metrics *metrics, char *err)
{
	struct api *a = calloc(1, sizeof(*a));
	int rc;

	*out = NULL;
	if (a == NULL)
		return err_set(err, -ENOMEM, "out of memory");
	/* jansson seeds its hash function on first use, racily: seed it here,
	 * before the HTTP threads can parse anything. */
	json_object_seed(0);
	a->cfg = cfg;
	a->pool = pool;
	a->runner = pool ? pool_runner(pool) : NULL;
	a->models = models;
	a->metrics = metrics;
	a->state = API_STARTING;
	rc = load_token(a, err);
	if (rc < 0) {
		free(a);
		return rc;
	}
	*out = a;
	return 0;
}

void api_free(struct api *a)
{
	if (a == NULL)
		return;
	if (a->admin_token != NULL) {
		memset(a->admin_token, 0, strlen(a->admin_token));
		free(a->admin_token);
	}
	free(a);
}

void api_set_state(struct api *a, enum api_state state)
{
	__atomic_store_n(&a->state, (int)state, __ATOMIC_RELEASE);
}

int api_draining(const struct api *a)
{
	return __atomic_load_n(&a->state, __ATOMIC_ACQUIRE) == API_DRAINING;
}

int api_ready(const struct api *a)
{
	return __atomic_load_n(&a->state, __ATOMIC_ACQUIRE) == API_READY;
}

int api_has_model(struct api *a, const char *name)
{
	struct model *m = models_get(a->models, name);
	int served = m != NULL;

	model_unref(m);
	return served;
}

struct metrics *api_metrics(struct api *a)
{
	return a->metrics;
}

int api_reload(struct api *a, const char *why, size_t *loaded, size_t *failed)
{
	int rc = models_reload(a->models, loaded, failed);

	metrics_reload(a->metrics, rc == 0 && *failed == 0);
	if (rc < 0)
		log_error("%s: cannot reload the models: %s", why, strerror(-rc));
	else
		log_info("%s: %zu model(s) served, %zu failed to load", why, *loaded, *failed);
	return rc;
}

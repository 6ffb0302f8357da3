/* api.c - native endpoints: decode with codec, run the graph, encode, time. */
#include "autoconfig.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api.h"
#include "buf.h"
#include "codec.h"
#include "error.h"
#include "graph.h"

uint64_t api_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void reply_clear(struct reply *r)
{
	free(r->body);
	r->body = NULL;
	r->len = 0;
}

void reply_error(struct reply *r, int status, const char *fmt, ...)
{
	char msg[ERR_LEN];
	struct buf b = { 0 };
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	buf_puts(&b, "{\"error\":");
	buf_json_string(&b, msg);
	buf_puts(&b, "}\n");
	reply_clear(r);
	r->status = status;
	r->content_type = "application/json";
	if (buf_ok(&b) == 0) {
		r->body = buf_take(&b, &r->len);
	} else {
		buf_free(&b);
		r->status = 500;
	}
}

int api_status_of(int rc)
{
	switch (rc) {
	case -E2BIG: return 413;
	case -EDOM: return 422;
	case -ENOMEM: return 503;
	case -ENOENT: return 404;
	default: return 400;
	}
}

static int take_tensor(void *ctx, json_t *v, const char *field, struct tensor **out, char *err)
{
	return codec_doc_take_tensor(ctx, v, field, out, err);
}

static int check_root_keys(json_t *root, char *err)
{
	static const char *const keys[] = { "value", "layers", "output_encoding" };
	const char *key;
	json_t *v;
	size_t i;

	json_object_foreach(root, key, v)
	{
		for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
			if (strcmp(key, keys[i]) == 0)
				break;
		if (i == sizeof(keys) / sizeof(keys[0]))
			return err_set(err, -EINVAL, "unknown key \"%.64s\"", key);
	}
	return 0;
}

/* Decode the body into a graph, an input value and the reply encoding. */
static int decode(struct api *a, enum api_endpoint ep, const char *body, size_t len,
                  struct graph **g, struct tensor **value, enum codec_enc *enc, char *err)
{
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
	if (ep == EP_SEQUENTIAL) {
		rc = check_root_keys(root, err);
		if (rc == 0)
			rc = graph_parse_layers(g, json_object_get(root, "layers"), take_tensor,
			                        doc, err);
	} else {
		rc = graph_parse_layer(g, root, ep == EP_ASPP ? "aspp" : "atrous_conv2d",
		                       take_tensor, doc, err);
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

static long long us(uint64_t ns)
{
	return (long long)(ns / 1000);
}

void api_compute(struct api *a, enum api_endpoint ep, const char *body, size_t len,
                 const struct api_times *t, struct reply *r)
{
	uint64_t t_begin = api_now_ns(), t_decoded, t_computed, t_encoded;
	struct graph_stats st = { 0, 0 };
	struct tensor *value = NULL, *out = NULL;
	struct graph *g = NULL;
	struct buf b = { 0 };
	enum codec_enc enc;
	int64_t odim[4];
	char err[ERR_LEN];
	double compute_s;
	int rc;

	rc = decode(a, ep, body, len, &g, &value, &enc, err);
	if (rc == 0)
		rc = graph_output_shape(g, value->dim, (int64_t)a->cfg->max_output_elements, odim,
		                        err);
	t_decoded = api_now_ns();
	if (rc == 0)
		rc = graph_run(g, value, a->runner, &out, &st, err);
	t_computed = api_now_ns();
	if (rc == 0)
		rc = codec_check_finite(out, err);
	if (rc < 0) {
		reply_error(r, api_status_of(rc), "%s", err);
		goto done;
	}
	buf_puts(&b, "{\"output\":");
	codec_put_tensor(&b, out, enc);
	t_encoded = api_now_ns();
	compute_s = (double)(t_computed - t_decoded) / 1e9;
	buf_printf(&b,
	           ",\"timing\":{\"decode_us\":%lld,\"queue_us\":%lld,\"compute_us\":%lld,"
	           "\"encode_us\":%lld,\"total_us\":%lld,\"flops\":%.0f,\"gflops\":%.3f}}\n",
	           us(t_decoded - t_begin), us(t_begin - t->enqueue), us(t_computed - t_decoded),
	           us(t_encoded - t_computed), us(t_encoded - t->start), st.useful_flops,
	           compute_s > 0 ? st.useful_flops / compute_s / 1e9 : 0.0);
	if (buf_ok(&b) < 0) {
		buf_free(&b);
		reply_error(r, 503, "out of memory while encoding the reply");
		goto done;
	}
	reply_clear(r);
	r->status = 200;
	r->content_type = "application/json";
	r->body = buf_take(&b, &r->len);
	snprintf(r->server_timing, sizeof(r->server_timing),
	         "decode;dur=%.3f, queue;dur=%.3f, compute;dur=%.3f, encode;dur=%.3f",
	         (double)(t_decoded - t_begin) / 1e6, (double)(t_begin - t->enqueue) / 1e6,
	         (double)(t_computed - t_decoded) / 1e6, (double)(t_encoded - t_computed) / 1e6);
done:
	tensor_free(out);
	tensor_free(value);
	graph_free(g);
}

void api_health(struct api *a, enum api_endpoint ep, struct reply *r)
{
	int state = __atomic_load_n(&a->state, __ATOMIC_ACQUIRE);
	const char *text;

	reply_clear(r);
	if (ep == EP_LIVE) {
		r->status = 200;
		text = "{\"live\":true}\n";
	} else if (state == API_READY) {
		r->status = 200;
		text = "{\"ready\":true}\n";
	} else {
		r->status = 503;
		r->retry_after = (int)a->cfg->retry_after;
		text = state == API_STARTING ? "{\"ready\":false,\"error\":\"starting\"}\n"
		                             : "{\"ready\":false,\"error\":\"shutting down\"}\n";
	}
	r->content_type = "application/json";
	r->body = strdup(text);
	r->len = r->body ? strlen(text) : 0;
}

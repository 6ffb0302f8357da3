/* SPDX-License-Identifier: MIT */
/* graphjson.c - layers from JSON objects: keys checked, tensors resolved by
 * the caller's getter, TensorFlow's argument checks applied per layer. */
#include "autoconfig.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "error.h"
#include "graphjson.h"

static int parse_rate(json_t *v, struct conv_spec *s, char *err)
{
	if (json_is_integer(v)) {
		s->rate_h = s->rate_w = json_integer_value(v);
	} else if (json_is_array(v) && json_array_size(v) == 2 &&
	           json_is_integer(json_array_get(v, 0)) && json_is_integer(json_array_get(v, 1))) {
		s->rate_h = json_integer_value(json_array_get(v, 0));
		s->rate_w = json_integer_value(json_array_get(v, 1));
	} else {
		return err_set(err, -EINVAL, "\"rate\" must be an integer >= 1 or [rh, rw]");
	}
	return 0; /* its range is checked with the layer (conv_check_layer) */
}

enum clayer_kind { KIND_CONV, KIND_BRANCH, KIND_ONE_BY_ONE };

/* Parse {"filters", "rate", "padding", "bias", "activation"} as kind allows. */
static int parse_clayer(struct conv_layer *c, json_t *obj, enum clayer_kind kind,
                        const char *const *extra, graphjson_tensor_fn getter, void *ctx, char *err)
{
	static const char *const conv_keys[] = { "type", "filters",    "rate",      "padding",
		                                 "bias", "activation", "algorithm", NULL };
	static const char *const branch_keys[] = { "filters",    "rate",      "padding", "bias",
		                                   "activation", "algorithm", NULL };
	static const char *const one_keys[] = { "filters", "bias", "activation", NULL };
	json_t *v;
	char shape[160];
	int rc;

	memset(c, 0, sizeof(*c));
	c->spec.rate_h = c->spec.rate_w = 1;
	c->spec.padding = CONV_SAME;
	if (!json_is_object(obj))
		return err_set(err, -EINVAL, "must be an object");
	rc = codec_check_keys(obj,
	                      kind == KIND_CONV     ? conv_keys
	                      : kind == KIND_BRANCH ? branch_keys
	                                            : one_keys,
	                      kind == KIND_CONV ? extra : NULL, err);
	if (rc < 0)
		return rc;
	v = json_object_get(obj, "rate");
	if (v == NULL && kind != KIND_ONE_BY_ONE)
		return err_set(err, -EINVAL, "missing \"rate\"");
	if (v != NULL && (rc = parse_rate(v, &c->spec, err)) < 0)
		return rc;
	v = json_object_get(obj, "padding");
	if (v == NULL && kind == KIND_CONV)
		return err_set(err, -EINVAL, "missing \"padding\"");
	if (v != NULL) {
		if (!json_is_string(v))
			return err_set(err, -EINVAL, "\"padding\" must be \"SAME\" or \"VALID\"");
		rc = conv_parse_padding(json_string_value(v), &c->spec.padding, err);
		if (rc < 0)
			return rc;
		if (kind == KIND_BRANCH && c->spec.padding != CONV_SAME)
			return err_set(err, -EINVAL, "ASPP branches use \"SAME\" padding");
	}
	v = json_object_get(obj, "activation");
	if (v != NULL) {
		if (!json_is_string(v))
			return err_set(err, -EINVAL, "\"activation\" must be \"none\" or \"relu\"");
		rc = conv_parse_activation(json_string_value(v), &c->spec.act, err);
		if (rc < 0)
			return rc;
	}
	v = json_object_get(obj, "algorithm");
	if (v != NULL) {
		if (!json_is_string(v))
			return err_set(err, -EINVAL,
			               "\"algorithm\" must be \"auto\", \"im2col\" or \"fast\"");
		rc = conv_parse_algorithm(json_string_value(v), &c->spec.algo, err);
		if (rc < 0)
			return rc;
	}
	rc = getter(ctx, json_object_get(obj, "filters"), "filters", &c->filters, err);
	if (rc < 0)
		return rc;
	v = json_object_get(obj, "bias");
	if (v != NULL && (rc = getter(ctx, v, "bias", &c->bias, err)) < 0)
		return rc;
	rc = conv_check_layer(c->filters, c->bias, &c->spec, err);
	if (rc < 0)
		return rc;
	if (kind == KIND_ONE_BY_ONE && (c->filters->dim[0] != 1 || c->filters->dim[1] != 1))
		return err_set(err, -EINVAL, "filters must be 1x1, got shape %s",
		               tensor_shape_str(4, c->filters->dim, shape, sizeof(shape)));
	return 0;
}

static int parse_sub(struct conv_layer **out, json_t *obj, const char *name,
                     graphjson_tensor_fn getter, void *ctx, char *err)
{
	int rc;

	*out = NULL;
	if (obj == NULL)
		return 0;
	*out = calloc(1, sizeof(**out));
	if (*out == NULL)
		return err_set(err, -ENOMEM, "out of memory");
	rc = parse_clayer(*out, obj, KIND_ONE_BY_ONE, NULL, getter, ctx, err);
	if (rc < 0)
		err_prefix(err, "%s", name);
	return rc;
}

static int parse_aspp(struct graph_layer *l, json_t *obj, const char *const *extra,
                      graphjson_tensor_fn getter, void *ctx, char *err)
{
	static const char *const keys[] = { "type", "branches", "image_pooling", "projection",
		                            NULL };
	json_t *br = json_object_get(obj, "branches");
	size_t i;
	int rc;

	rc = codec_check_keys(obj, keys, extra, err);
	if (rc < 0)
		return rc;
	if (!json_is_array(br) || json_array_size(br) == 0)
		return err_set(err, -EINVAL, "\"branches\" must be a non-empty array");
	l->aspp.branches = calloc(json_array_size(br), sizeof(*l->aspp.branches));
	if (l->aspp.branches == NULL)
		return err_set(err, -ENOMEM, "out of memory");
	for (i = 0; i < json_array_size(br); i++) {
		l->aspp.nbranches = i + 1;
		rc = parse_clayer(&l->aspp.branches[i], json_array_get(br, i), KIND_BRANCH, NULL,
		                  getter, ctx, err);
		if (rc < 0) {
			err_prefix(err, "branches[%zu]", i);
			return rc;
		}
	}
	rc = aspp_prepare(&l->aspp, err);
	if (rc < 0)
		return rc;
	rc = parse_sub(&l->aspp.pool, json_object_get(obj, "image_pooling"), "image_pooling",
	               getter, ctx, err);
	if (rc == 0)
		rc = parse_sub(&l->aspp.proj, json_object_get(obj, "projection"), "projection",
		               getter, ctx, err);
	return rc;
}

static int parse_one(struct graph_layer *l, json_t *obj, const char *default_type,
                     const char *const *extra, graphjson_tensor_fn getter, void *ctx, char *err)
{
	json_t *type;
	const char *name;

	if (!json_is_object(obj))
		return err_set(err, -EINVAL, "a layer must be an object");
	type = json_object_get(obj, "type");
	if (type != NULL && !json_is_string(type))
		return err_set(err, -EINVAL, "\"type\" must be \"atrous_conv2d\" or \"aspp\"");
	name = type ? json_string_value(type) : default_type;
	if (strcmp(name, "atrous_conv2d") == 0) {
		l->type = GRAPH_CONV;
		return parse_clayer(&l->conv, obj, KIND_CONV, extra, getter, ctx, err);
	}
	if (strcmp(name, "aspp") == 0) {
		l->type = GRAPH_ASPP;
		return parse_aspp(l, obj, extra, getter, ctx, err);
	}
	return err_set(err, -EINVAL,
	               "unknown layer type \"%.64s\" (expected \"atrous_conv2d\" or \"aspp\")",
	               name);
}

int graphjson_layer(struct graph **out, json_t *layer, const char *default_type,
                    graphjson_tensor_fn getter, void *ctx, char *err)
{
	static const char *const request_keys[] = { "value", "output_encoding", "timeout_us",
		                                    NULL };
	struct graph *g;
	int rc;

	*out = NULL;
	rc = graph_new(&g, 1, err);
	if (rc < 0)
		return rc;
	rc = parse_one(graph_layer(g, 0), layer, default_type, request_keys, getter, ctx, err);
	if (rc < 0) {
		graph_free(g);
		return rc;
	}
	*out = g;
	return 0;
}

int graphjson_layers(struct graph **out, json_t *layers, graphjson_tensor_fn getter, void *ctx,
                     char *err)
{
	struct graph *g;
	size_t i;
	int rc;

	*out = NULL;
	if (!json_is_array(layers) || json_array_size(layers) == 0)
		return err_set(err, -EINVAL, "\"layers\" must be a non-empty array");
	rc = graph_new(&g, json_array_size(layers), err);
	if (rc < 0)
		return rc;
	for (i = 0; i < json_array_size(layers); i++) {
		rc = parse_one(graph_layer(g, i), json_array_get(layers, i), "atrous_conv2d", NULL,
		               getter, ctx, err);
		if (rc < 0) {
			err_prefix(err, "layers[%zu]", i);
			graph_free(g);
			return rc;
		}
	}
	*out = g;
	return 0;
}

/* "field":{"npy":"FILE"} through save. */
static int put_tensor(struct buf *b, const char *field, const struct tensor *t, const char *hint,
                      graphjson_save_fn save, void *ctx, char *err)
{
	char file[256];
	int rc = save(ctx, t, hint, file, sizeof(file), err);

	if (rc < 0)
		return rc;
	buf_printf(b, "\"%s\":{\"npy\":", field);
	buf_json_string(b, file);
	buf_puts(b, "}");
	return 0;
}

/* One convolution's keys; with_spec adds rate and padding (1x1 pooling and
 * projection layers have neither). */
static int put_clayer(struct buf *b, const struct conv_layer *c, const char *hint, int with_spec,
                      graphjson_save_fn save, void *ctx, char *err)
{
	char h[64];
	int rc;

	snprintf(h, sizeof(h), "%s_filters", hint);
	rc = put_tensor(b, "filters", c->filters, h, save, ctx, err);
	if (rc == 0 && c->bias != NULL) {
		snprintf(h, sizeof(h), "%s_bias", hint);
		buf_puts(b, ",");
		rc = put_tensor(b, "bias", c->bias, h, save, ctx, err);
	}
	if (rc < 0)
		return rc;
	if (with_spec)
		buf_printf(b, ",\"rate\":[%lld,%lld],\"padding\":\"%s\"", (long long)c->spec.rate_h,
		           (long long)c->spec.rate_w,
		           c->spec.padding == CONV_SAME ? "SAME" : "VALID");
	buf_printf(b, ",\"activation\":\"%s\"", c->spec.act == CONV_ACT_RELU ? "relu" : "none");
	return 0;
}

static int put_aspp(struct buf *b, const struct aspp *a, const char *hint, graphjson_save_fn save,
                    void *ctx, char *err)
{
	char h[64];
	size_t k;
	int rc = 0;

	buf_puts(b, "{\"type\":\"aspp\"");
	if (a->pool != NULL) {
		snprintf(h, sizeof(h), "%s_pool", hint);
		buf_puts(b, ",\"image_pooling\":{");
		rc = put_clayer(b, a->pool, h, 0, save, ctx, err);
		buf_puts(b, "}");
	}
	buf_puts(b, ",\"branches\":[");
	for (k = 0; k < a->nbranches && rc == 0; k++) {
		snprintf(h, sizeof(h), "%s_b%zu", hint, k);
		buf_puts(b, k ? ",{" : "{");
		rc = put_clayer(b, &a->branches[k], h, 1, save, ctx, err);
		buf_puts(b, "}");
	}
	buf_puts(b, "]");
	if (rc == 0 && a->proj != NULL) {
		snprintf(h, sizeof(h), "%s_proj", hint);
		buf_puts(b, ",\"projection\":{");
		rc = put_clayer(b, a->proj, h, 0, save, ctx, err);
		buf_puts(b, "}");
	}
	buf_puts(b, "}");
	return rc;
}

int graphjson_write(struct buf *b, const struct graph *g, graphjson_save_fn save, void *ctx,
                    char *err)
{
	char hint[32];
	size_t i;
	int rc = 0;

	buf_puts(b, "[");
	for (i = 0; i < graph_size(g) && rc == 0; i++) {
		const struct graph_layer *l = graph_layer((struct graph *)g, i);

		snprintf(hint, sizeof(hint), "l%zu", i);
		if (i > 0)
			buf_puts(b, ",\n  ");
		if (l->type == GRAPH_ASPP) {
			rc = put_aspp(b, &l->aspp, hint, save, ctx, err);
			continue;
		}
		buf_puts(b, "{\"type\":\"atrous_conv2d\",");
		rc = put_clayer(b, &l->conv, hint, 1, save, ctx, err);
		buf_puts(b, "}");
	}
	buf_puts(b, "]");
	if (rc == 0 && buf_ok(b) < 0)
		rc = err_set(err, -ENOMEM, "out of memory");
	return rc;
}

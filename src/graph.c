/* graph.c - layers from JSON (conv, ASPP), channel and shape checks, and
 * running sequences of them. */
#include "autoconfig.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aspp.h"
#include "error.h"
#include "graph.h"

enum layer_type { LAYER_CONV, LAYER_ASPP };

struct layer {
	enum layer_type type;
	struct conv_layer conv; /* LAYER_CONV */
	struct aspp aspp;       /* LAYER_ASPP */
};

struct graph {
	struct layer *layers;
	size_t n;
};

static void layer_clear(struct layer *l)
{
	conv_layer_clear(&l->conv);
	aspp_clear(&l->aspp);
}

void graph_free(struct graph *g)
{
	size_t i;

	if (g == NULL)
		return;
	for (i = 0; i < g->n; i++)
		layer_clear(&g->layers[i]);
	free(g->layers);
	free(g);
}

static int in_list(const char *key, const char *const *list)
{
	for (; list && *list; list++)
		if (strcmp(key, *list) == 0)
			return 1;
	return 0;
}

static int check_keys(json_t *obj, const char *const *allowed, const char *const *extra, char *err)
{
	const char *key;
	json_t *v;

	json_object_foreach(obj, key, v)
	{
		if (!in_list(key, allowed) && !in_list(key, extra))
			return err_set(err, -EINVAL, "unknown key \"%.64s\"", key);
	}
	return 0;
}

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
                        const char *const *extra, graph_tensor_fn getter, void *ctx, char *err)
{
	static const char *const conv_keys[] = { "type", "filters",    "rate", "padding",
		                                 "bias", "activation", NULL };
	static const char *const branch_keys[] = { "filters", "rate",       "padding",
		                                   "bias",    "activation", NULL };
	static const char *const one_keys[] = { "filters", "bias", "activation", NULL };
	json_t *v;
	char shape[160];
	int rc;

	memset(c, 0, sizeof(*c));
	c->spec.rate_h = c->spec.rate_w = 1;
	c->spec.padding = CONV_SAME;
	if (!json_is_object(obj))
		return err_set(err, -EINVAL, "must be an object");
	rc = check_keys(obj,
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

static int parse_sub(struct conv_layer **out, json_t *obj, const char *name, graph_tensor_fn getter,
                     void *ctx, char *err)
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

static int parse_aspp(struct layer *l, json_t *obj, const char *const *extra,
                      graph_tensor_fn getter, void *ctx, char *err)
{
	static const char *const keys[] = { "type", "branches", "image_pooling", "projection",
		                            NULL };
	json_t *br = json_object_get(obj, "branches");
	size_t i;
	int rc;

	rc = check_keys(obj, keys, extra, err);
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

static int parse_one(struct layer *l, json_t *obj, const char *default_type,
                     const char *const *extra, graph_tensor_fn getter, void *ctx, char *err)
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
		l->type = LAYER_CONV;
		return parse_clayer(&l->conv, obj, KIND_CONV, extra, getter, ctx, err);
	}
	if (strcmp(name, "aspp") == 0) {
		l->type = LAYER_ASPP;
		return parse_aspp(l, obj, extra, getter, ctx, err);
	}
	return err_set(err, -EINVAL,
	               "unknown layer type \"%.64s\" (expected \"atrous_conv2d\" or \"aspp\")",
	               name);
}

static int graph_alloc(struct graph **out, size_t n, char *err)
{
	struct graph *g = calloc(1, sizeof(*g));

	if (g != NULL)
		g->layers = calloc(n, sizeof(*g->layers));
	if (g == NULL || g->layers == NULL) {
		free(g);
		return err_set(err, -ENOMEM, "out of memory");
	}
	*out = g;
	return 0;
}

int graph_parse_layer(struct graph **out, json_t *layer, const char *default_type,
                      graph_tensor_fn getter, void *ctx, char *err)
{
	static const char *const request_keys[] = { "value", "output_encoding", NULL };
	struct graph *g;
	int rc;

	*out = NULL;
	rc = graph_alloc(&g, 1, err);
	if (rc < 0)
		return rc;
	g->n = 1;
	rc = parse_one(&g->layers[0], layer, default_type, request_keys, getter, ctx, err);
	if (rc < 0) {
		graph_free(g);
		return rc;
	}
	*out = g;
	return 0;
}

int graph_parse_layers(struct graph **out, json_t *layers, graph_tensor_fn getter, void *ctx,
                       char *err)
{
	struct graph *g;
	size_t i;
	int rc;

	*out = NULL;
	if (!json_is_array(layers) || json_array_size(layers) == 0)
		return err_set(err, -EINVAL, "\"layers\" must be a non-empty array");
	rc = graph_alloc(&g, json_array_size(layers), err);
	if (rc < 0)
		return rc;
	for (i = 0; i < json_array_size(layers); i++) {
		g->n = i + 1;
		rc = parse_one(&g->layers[i], json_array_get(layers, i), "atrous_conv2d", NULL,
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

int64_t graph_in_channels(const struct graph *g)
{
	const struct layer *l = &g->layers[0];

	return l->type == LAYER_CONV ? l->conv.filters->dim[2]
	                             : l->aspp.branches[0].filters->dim[2];
}

int64_t graph_out_channels(const struct graph *g)
{
	const struct layer *l = &g->layers[g->n - 1];

	if (l->type == LAYER_CONV)
		return l->conv.filters->dim[3];
	return l->aspp.proj ? l->aspp.proj->filters->dim[3] : aspp_concat_channels(&l->aspp);
}

static int need_channels(const struct conv_layer *c, int64_t have, const char *what, char *err)
{
	if (c->filters->dim[2] != have)
		return err_set(err, -EINVAL, "%s: filters in_channels %lld != input channels %lld",
		               what, (long long)c->filters->dim[2], (long long)have);
	return 0;
}

int graph_check_channels(const struct graph *g, int64_t *out_c, char *err)
{
	int64_t c = graph_in_channels(g);
	char what[64];
	size_t i, k;
	int rc = 0;

	for (i = 0; i < g->n && rc == 0; i++) {
		const struct layer *l = &g->layers[i];

		if (l->type == LAYER_CONV) {
			rc = need_channels(&l->conv, c, "filters", err);
			c = l->conv.filters->dim[3];
		} else {
			for (k = 0; k < l->aspp.nbranches && rc == 0; k++) {
				snprintf(what, sizeof(what), "branches[%zu]", k);
				rc = need_channels(&l->aspp.branches[k], c, what, err);
			}
			if (rc == 0 && l->aspp.pool)
				rc = need_channels(l->aspp.pool, c, "image_pooling", err);
			c = aspp_concat_channels(&l->aspp);
			if (rc == 0 && l->aspp.proj) {
				rc = need_channels(l->aspp.proj, c, "projection", err);
				c = l->aspp.proj->filters->dim[3];
			}
		}
		if (rc < 0)
			err_prefix(err, "layers[%zu]", i);
	}
	*out_c = c;
	return rc;
}

static int check_size(const int64_t d[4], int64_t max_elements, const char *what, char *err)
{
	size_t count;
	int rc = tensor_shape_count(4, d, max_elements, &count, err);

	if (rc < 0)
		err_prefix(err, "%s", what);
	return rc;
}

int graph_output_shape(const struct graph *g, const int64_t vdim[4], int64_t max_elements,
                       int64_t odim[4], char *err)
{
	int64_t cur[4];
	size_t i;
	int rc;

	memcpy(cur, vdim, sizeof(cur));
	for (i = 0; i < g->n; i++) {
		const struct layer *l = &g->layers[i];

		if (l->type == LAYER_CONV)
			rc = conv_output_shape(cur, l->conv.filters, l->conv.bias, &l->conv.spec,
			                       odim, err);
		else
			rc = aspp_output_shape(&l->aspp, cur, max_elements, odim, err);
		if (rc == 0)
			rc = check_size(odim, max_elements, "output", err);
		if (rc < 0) {
			if (g->n > 1)
				err_prefix(err, "layers[%zu]", i);
			return rc;
		}
		memcpy(cur, odim, sizeof(cur));
	}
	return 0;
}

int graph_run(const struct graph *g, const struct tensor *value, const struct par_runner *runner,
              struct tensor **out, struct graph_stats *stats, char *err)
{
	struct graph_stats st = { 0, 0 };
	const struct tensor *cur = value;
	struct tensor *next = NULL;
	size_t i;
	int rc = 0;

	*out = NULL;
	for (i = 0; i < g->n; i++) {
		const struct layer *l = &g->layers[i];

		rc = l->type == LAYER_CONV
		             ? conv_layer_run(&l->conv, cur, runner, &next, &st.useful_flops,
		                              &st.nominal_flops, err)
		             : aspp_run(&l->aspp, cur, runner, &next, &st.useful_flops,
		                        &st.nominal_flops, err);
		if (cur != value)
			tensor_free((struct tensor *)cur);
		if (rc < 0) {
			if (g->n > 1)
				err_prefix(err, "layers[%zu]", i);
			return rc;
		}
		cur = next;
	}
	*out = (struct tensor *)cur;
	if (stats != NULL)
		*stats = st;
	return 0;
}

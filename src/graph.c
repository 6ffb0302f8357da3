/* graph.c - parsing, shape checking and running of conv / ASPP / sequences. */
#include "autoconfig.h"

#include <cblas.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "graph.h"

enum layer_type { LAYER_CONV, LAYER_ASPP };

struct clayer {
	struct tensor *filters, *bias;
	struct conv_spec spec;
};

struct layer {
	enum layer_type type;
	struct clayer conv;      /* LAYER_CONV */
	struct clayer *branches; /* LAYER_ASPP */
	size_t nbranches;
	struct clayer *pool, *proj; /* optional */
	/* Branch fusion: every branch's centre tap (odd kernels) packed as one
	 * [C, sum of branch outputs] matrix, or NULL when a kernel is even. */
	struct tensor *center;
};

struct graph {
	struct layer *layers;
	size_t n;
};

static void clayer_clear(struct clayer *c)
{
	if (c == NULL)
		return;
	tensor_free(c->filters);
	tensor_free(c->bias);
	c->filters = c->bias = NULL;
}

static void layer_clear(struct layer *l)
{
	size_t i;

	clayer_clear(&l->conv);
	for (i = 0; i < l->nbranches; i++)
		clayer_clear(&l->branches[i]);
	free(l->branches);
	clayer_clear(l->pool);
	clayer_clear(l->proj);
	tensor_free(l->center);
	free(l->pool);
	free(l->proj);
	memset(l, 0, sizeof(*l));
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
	if (s->rate_h < 1 || s->rate_w < 1) {
		if (s->rate_h == s->rate_w)
			return err_set(err, -EINVAL, "rate must be >= 1, got %lld",
			               (long long)s->rate_h);
		return err_set(err, -EINVAL, "rate must be >= 1, got [%lld, %lld]",
		               (long long)s->rate_h, (long long)s->rate_w);
	}
	if (s->rate_h > CONV_MAX_RATE || s->rate_w > CONV_MAX_RATE)
		return err_set(err, -EINVAL, "rate exceeds the maximum %d", CONV_MAX_RATE);
	return 0;
}

enum clayer_kind { KIND_CONV, KIND_BRANCH, KIND_ONE_BY_ONE };

/* Parse {"filters", "rate", "padding", "bias", "activation"} as kind allows. */
static int parse_clayer(struct clayer *c, json_t *obj, enum clayer_kind kind,
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
	if (c->filters->rank != 4)
		return err_set(
		        err, -EINVAL,
		        "filters must be rank 4 [kh, kw, in_channels, out_channels], got shape %s",
		        tensor_shape_str(c->filters->rank, c->filters->dim, shape, sizeof(shape)));
	if (c->filters->count == 0)
		return err_set(err, -EINVAL, "filters shape %s has a zero dimension",
		               tensor_shape_str(4, c->filters->dim, shape, sizeof(shape)));
	if (kind == KIND_ONE_BY_ONE && (c->filters->dim[0] != 1 || c->filters->dim[1] != 1))
		return err_set(err, -EINVAL, "filters must be 1x1, got shape %s",
		               tensor_shape_str(4, c->filters->dim, shape, sizeof(shape)));
	v = json_object_get(obj, "bias");
	if (v != NULL) {
		rc = getter(ctx, v, "bias", &c->bias, err);
		if (rc < 0)
			return rc;
		if (c->bias->rank != 1 || c->bias->dim[0] != c->filters->dim[3])
			return err_set(
			        err, -EINVAL, "bias shape %s != [%lld] (filters out_channels)",
			        tensor_shape_str(c->bias->rank, c->bias->dim, shape, sizeof(shape)),
			        (long long)c->filters->dim[3]);
	}
	return 0;
}

static int parse_sub(struct clayer **out, json_t *obj, const char *name, graph_tensor_fn getter,
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

/* Pack the branches' centre taps side by side when every kernel is odd and
 * they share the input channel count (checked again at run time). */
static int pack_centers(struct layer *l, char *err)
{
	int64_t c = l->branches[0].filters->dim[2], nf = 0, off = 0, ch, o;
	int64_t dim[2];
	size_t b;

	for (b = 0; b < l->nbranches; b++) {
		const struct tensor *f = l->branches[b].filters;

		if (f->dim[0] % 2 == 0 || f->dim[1] % 2 == 0 || f->dim[2] != c)
			return 0; /* not fusable: each branch runs whole */
		nf += f->dim[3];
	}
	dim[0] = c;
	dim[1] = nf;
	if (tensor_new_uninit(&l->center, 2, dim, err) < 0)
		return -ENOMEM;
	for (b = 0; b < l->nbranches; b++) {
		const struct tensor *f = l->branches[b].filters;
		int64_t kw = f->dim[1], ob = f->dim[3];
		const float *w = f->data + ((f->dim[0] / 2) * kw + kw / 2) * c * ob;

		for (ch = 0; ch < c; ch++)
			for (o = 0; o < ob; o++)
				l->center->data[ch * nf + off + o] = w[ch * ob + o];
		off += ob;
	}
	return 0;
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
	l->branches = calloc(json_array_size(br), sizeof(*l->branches));
	if (l->branches == NULL)
		return err_set(err, -ENOMEM, "out of memory");
	for (i = 0; i < json_array_size(br); i++) {
		l->nbranches = i + 1;
		rc = parse_clayer(&l->branches[i], json_array_get(br, i), KIND_BRANCH, NULL, getter,
		                  ctx, err);
		if (rc < 0) {
			err_prefix(err, "branches[%zu]", i);
			return rc;
		}
	}
	rc = pack_centers(l, err);
	if (rc < 0)
		return rc;
	rc = parse_sub(&l->pool, json_object_get(obj, "image_pooling"), "image_pooling", getter,
	               ctx, err);
	if (rc == 0)
		rc = parse_sub(&l->proj, json_object_get(obj, "projection"), "projection", getter,
		               ctx, err);
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

	return l->type == LAYER_CONV ? l->conv.filters->dim[2] : l->branches[0].filters->dim[2];
}

static int64_t aspp_concat_channels(const struct layer *l)
{
	int64_t c = l->pool ? l->pool->filters->dim[3] : 0;
	size_t i;

	for (i = 0; i < l->nbranches; i++)
		c += l->branches[i].filters->dim[3];
	return c;
}

int64_t graph_out_channels(const struct graph *g)
{
	const struct layer *l = &g->layers[g->n - 1];

	if (l->type == LAYER_CONV)
		return l->conv.filters->dim[3];
	return l->proj ? l->proj->filters->dim[3] : aspp_concat_channels(l);
}

static int need_channels(const struct clayer *c, int64_t have, const char *what, char *err)
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
			for (k = 0; k < l->nbranches && rc == 0; k++) {
				snprintf(what, sizeof(what), "branches[%zu]", k);
				rc = need_channels(&l->branches[k], c, what, err);
			}
			if (rc == 0 && l->pool)
				rc = need_channels(l->pool, c, "image_pooling", err);
			c = aspp_concat_channels(l);
			if (rc == 0 && l->proj) {
				rc = need_channels(l->proj, c, "projection", err);
				c = l->proj->filters->dim[3];
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

static int aspp_shape(const struct layer *l, const int64_t vdim[4], int64_t max_elements,
                      int64_t odim[4], char *err)
{
	int64_t bd[4], pd[4] = { vdim[0], 1, 1, vdim[3] };
	size_t i;
	int rc;

	if (l->pool != NULL) {
		rc = conv_output_shape(pd, l->pool->filters, l->pool->bias, &l->pool->spec, bd,
		                       err);
		if (rc < 0) {
			err_prefix(err, "image_pooling");
			return rc;
		}
	}
	for (i = 0; i < l->nbranches; i++) {
		rc = conv_output_shape(vdim, l->branches[i].filters, l->branches[i].bias,
		                       &l->branches[i].spec, bd, err);
		if (rc < 0) {
			err_prefix(err, "branches[%zu]", i);
			return rc;
		}
	}
	odim[0] = vdim[0];
	odim[1] = vdim[1];
	odim[2] = vdim[2];
	odim[3] = aspp_concat_channels(l);
	rc = check_size(odim, max_elements, "ASPP concatenation", err);
	if (rc < 0 || l->proj == NULL)
		return rc;
	memcpy(bd, odim, sizeof(bd));
	rc = conv_output_shape(bd, l->proj->filters, l->proj->bias, &l->proj->spec, odim, err);
	if (rc < 0)
		err_prefix(err, "projection");
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
			rc = aspp_shape(l, cur, max_elements, odim, err);
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

/* Run one convolution into a new tensor (or into a slice of out). */
static int run_conv(const struct clayer *c, const struct tensor *in,
                    const struct par_runner *runner, struct tensor **out, struct graph_stats *st,
                    char *err)
{
	struct conv_plan *p;
	struct tensor *y = NULL;
	double useful, nominal;
	int64_t odim[4];
	int rc;

	rc = conv_plan_new(&p, in->dim, c->filters, c->bias, &c->spec, NULL, err);
	if (rc < 0)
		return rc;
	conv_plan_output_shape(p, odim);
	rc = tensor_new_uninit(&y, 4, odim, err);
	if (rc == 0) {
		conv_plan_flops(p, &useful, &nominal);
		st->useful_flops += useful;
		st->nominal_flops += nominal;
		rc = conv_plan_run(p, in->data, y->data,
		                   nominal < GRAPH_PARALLEL_MIN_FLOPS ? NULL : runner);
		if (rc < 0)
			err_set(err, rc, "out of memory");
	}
	conv_plan_free(p);
	if (rc < 0) {
		tensor_free(y);
		return rc;
	}
	*out = y;
	return 0;
}

/* All branch plans of an ASPP layer run as one task set. */
struct multi {
	struct conv_plan **plans;
	size_t nplans;
	const float *in;
	float *out;
};

static void multi_task(void *arg, size_t i, void *scratch)
{
	const struct multi *m = arg;
	size_t k;

	for (k = 0; k < m->nplans; k++) {
		size_t n = conv_plan_ntasks(m->plans[k]);

		if (i < n) {
			conv_plan_run_task(m->plans[k], i, m->in, m->out, scratch);
			return;
		}
		i -= n;
	}
}

/* Spatial mean, 1x1 conv, broadcast into channels [0, Op) of concat. */
static int image_pooling(const struct clayer *pl, const struct tensor *in, struct tensor *concat,
                         struct graph_stats *st, char *err)
{
	int64_t n = in->dim[0], hw = in->dim[1] * in->dim[2], c = in->dim[3];
	int64_t pd[4] = { n, 1, 1, c }, b, px, k;
	struct tensor *pooled, *y = NULL;
	double *acc;
	int rc;

	if (hw == 0 || n == 0)
		return 0;
	rc = tensor_new(&pooled, 4, pd, err);
	if (rc < 0)
		return rc;
	acc = calloc((size_t)c, sizeof(double));
	if (acc == NULL) {
		tensor_free(pooled);
		return err_set(err, -ENOMEM, "out of memory");
	}
	for (b = 0; b < n; b++) {
		const float *src = in->data + b * hw * c;

		memset(acc, 0, (size_t)c * sizeof(double));
		for (px = 0; px < hw; px++)
			for (k = 0; k < c; k++)
				acc[k] += src[px * c + k];
		for (k = 0; k < c; k++)
			pooled->data[b * c + k] = (float)(acc[k] / (double)hw);
	}
	free(acc);
	rc = run_conv(pl, pooled, NULL, &y, st, err);
	tensor_free(pooled);
	if (rc < 0)
		return rc;
	for (b = 0; b < n; b++)
		for (px = 0; px < hw; px++)
			memcpy(concat->data + (b * hw + px) * concat->dim[3],
			       y->data + b * y->dim[3], (size_t)y->dim[3] * sizeof(float));
	tensor_free(y);
	return 0;
}

static int64_t max_branch_out(const struct layer *l)
{
	int64_t m = 0;
	size_t b;

	for (b = 0; b < l->nbranches; b++)
		if (l->branches[b].filters->dim[3] > m)
			m = l->branches[b].filters->dim[3];
	return m;
}

/* Pixels per task of the fused centre GEMM and of the finishing pass. */
#define FUSED_TILE 128

/* Branch fusion, phase 1: every branch's centre tap for a tile of pixels as
 * one GEMM (A is the input itself, N the sum of the branch outputs), written
 * into the branches' channels of the concatenation. */
struct fused {
	const struct layer *l;
	const float *in;
	float *out;
	int64_t pixels, c, nf, ldc, off;
};

static void center_task(void *arg, size_t t, void *scratch)
{
	const struct fused *f = arg;
	int64_t p0 = (int64_t)t * FUSED_TILE;
	int64_t m = f->pixels - p0 < FUSED_TILE ? f->pixels - p0 : FUSED_TILE;

	(void)scratch;
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)f->nf, (int)f->c, 1.0f,
	            f->in + p0 * f->c, (int)f->c, f->l->center->data, (int)f->nf, 0.0f,
	            f->out + p0 * f->ldc + f->off, (int)f->ldc);
}

/* Phase 3: bias and activation of every branch, once all taps are summed. */
static void finish_task(void *arg, size_t t, void *scratch)
{
	const struct fused *f = arg;
	int64_t p0 = (int64_t)t * FUSED_TILE;
	int64_t p1 = p0 + FUSED_TILE < f->pixels ? p0 + FUSED_TILE : f->pixels, px, off;
	size_t b;

	(void)scratch;
	for (px = p0; px < p1; px++) {
		off = f->off;
		for (b = 0; b < f->l->nbranches; b++) {
			const struct clayer *br = &f->l->branches[b];

			conv_bias_act(f->out + px * f->ldc + off, br->bias ? br->bias->data : NULL,
			              br->filters->dim[3], br->spec.act);
			off += br->filters->dim[3];
		}
	}
}

static int run_aspp(const struct layer *l, const struct tensor *in, const struct par_runner *runner,
                    struct tensor **out, struct graph_stats *st, char *err)
{
	int64_t cd[4] = { in->dim[0], in->dim[1], in->dim[2], aspp_concat_channels(l) };
	struct multi m = { 0 };
	struct tensor *concat = NULL;
	struct fused fused;
	size_t i, ntasks = 0, scratch = 0, tiles;
	double nominal_total = 0;
	int64_t off;
	int rc, use_fusion;

	rc = tensor_new_uninit(&concat, 4, cd, err);
	if (rc < 0)
		return rc;
	off = 0;
	if (l->pool != NULL) {
		rc = image_pooling(l->pool, in, concat, st, err);
		if (rc < 0)
			goto done;
		off = l->pool->filters->dim[3];
	}
	m.plans = calloc(l->nbranches, sizeof(*m.plans));
	if (m.plans == NULL) {
		rc = err_set(err, -ENOMEM, "out of memory");
		goto done;
	}
	m.in = in->data;
	m.out = concat->data;
	fused = (struct fused){ l,
		                in->data,
		                concat->data,
		                cd[0] * cd[1] * cd[2],
		                in->dim[3],
		                l->center ? l->center->dim[1] : 0,
		                cd[3],
		                off };
	/* Fusion saves the centre's im2col copy (C floats a pixel) and costs two
	 * passes over each branch's output (about 2 x O floats): it pays when
	 * the input is much wider than the branches (measured: OS16, C 2048 and
	 * O 256, gains; OS8, C 256, loses 5 %). */
	use_fusion = l->center != NULL && l->center->dim[0] == in->dim[3] && fused.pixels > 0 &&
	             in->dim[3] >= GRAPH_FUSION_RATIO * max_branch_out(l);
	tiles = (size_t)((fused.pixels + FUSED_TILE - 1) / FUSED_TILE);
	for (i = 0; i < l->nbranches; i++) {
		const struct tensor *f = l->branches[i].filters;
		struct conv_out_layout lay = { .channel_offset = off,
			                       .pixel_stride = cd[3],
			                       .accumulate = use_fusion,
			                       .skip_center = use_fusion };
		double useful, nominal;

		off += f->dim[3];
		if (use_fusion) {
			/* Counted whole here; the plan below leaves the centre out. */
			nominal = 2.0 * (double)fused.pixels * (double)(f->dim[0] * f->dim[1]) *
			          (double)f->dim[2] * (double)f->dim[3];
			st->nominal_flops += nominal;
			nominal_total += nominal;
			if (f->dim[0] == 1 && f->dim[1] == 1)
				continue; /* all centre: phase 1 computes it */
		}
		rc = conv_plan_new(&m.plans[m.nplans], in->dim, f, l->branches[i].bias,
		                   &l->branches[i].spec, &lay, err);
		if (rc < 0) {
			err_prefix(err, "branches[%zu]", i);
			goto done;
		}
		ntasks += conv_plan_ntasks(m.plans[m.nplans]);
		if (conv_plan_scratch(m.plans[m.nplans]) > scratch)
			scratch = conv_plan_scratch(m.plans[m.nplans]);
		conv_plan_flops(m.plans[m.nplans], &useful, &nominal);
		m.nplans++;
		st->useful_flops += useful;
		if (!use_fusion) {
			st->nominal_flops += nominal;
			nominal_total += nominal;
		}
	}
	if (nominal_total < GRAPH_PARALLEL_MIN_FLOPS)
		runner = NULL;
	if (use_fusion) {
		st->useful_flops += 2.0 * (double)fused.pixels * (double)fused.c * (double)fused.nf;
		rc = par_run(runner, tiles, 64, center_task, &fused);
	}
	if (rc == 0)
		rc = par_run(runner, ntasks, scratch, multi_task, &m);
	if (rc == 0 && use_fusion)
		rc = par_run(runner, tiles, 64, finish_task, &fused);
	if (rc < 0) {
		err_set(err, rc, "out of memory");
		goto done;
	}
	if (l->proj != NULL) {
		rc = run_conv(l->proj, concat, runner, out, st, err);
		if (rc < 0)
			err_prefix(err, "projection");
	} else {
		*out = concat;
		concat = NULL;
	}
done:
	for (i = 0; i < m.nplans; i++)
		conv_plan_free(m.plans[i]);
	free(m.plans);
	tensor_free(concat);
	return rc;
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

		rc = l->type == LAYER_CONV ? run_conv(&l->conv, cur, runner, &next, &st, err)
		                           : run_aspp(l, cur, runner, &next, &st, err);
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

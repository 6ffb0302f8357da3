/* SPDX-License-Identifier: MIT */
/* graph.c - sequences of layers (conv, ASPP): building, channel and shape
 * checks, and running them. */
#include "autoconfig.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aspp.h"
#include "error.h"
#include "graph.h"

struct graph {
	struct graph_layer *layers;
	size_t n;
};

int graph_new(struct graph **out, size_t n, char *err)
{
	struct graph *g = calloc(1, sizeof(*g));

	*out = NULL;
	if (g != NULL && n > 0)
		g->layers = calloc(n, sizeof(*g->layers));
	if (g == NULL || (n > 0 && g->layers == NULL)) {
		free(g);
		return err_set(err, -ENOMEM, "out of memory");
	}
	g->n = n;
	*out = g;
	return 0;
}

size_t graph_size(const struct graph *g)
{
	return g->n;
}

struct graph_layer *graph_layer(struct graph *g, size_t i)
{
	return &g->layers[i];
}

int graph_prepare(struct graph *g, char *err)
{
	size_t i, b;
	int rc = 0;

	for (i = 0; i < g->n && rc == 0; i++) {
		struct graph_layer *l = &g->layers[i];

		if (l->type == GRAPH_CONV)
			rc = conv_layer_prepare(&l->conv, err);
		for (b = 0; l->type == GRAPH_ASPP && b < l->aspp.nbranches && rc == 0; b++)
			rc = conv_layer_prepare(&l->aspp.branches[b], err);
	}
	return rc;
}

size_t graph_fast_bytes(const struct graph *g)
{
	size_t i, b, sum = 0;

	for (i = 0; i < g->n; i++) {
		const struct graph_layer *l = &g->layers[i];

		sum += fast_weights_bytes(l->conv.fast);
		for (b = 0; l->type == GRAPH_ASPP && b < l->aspp.nbranches; b++)
			sum += fast_weights_bytes(l->aspp.branches[b].fast);
	}
	return sum;
}

void graph_free(struct graph *g)
{
	size_t i;

	if (g == NULL)
		return;
	for (i = 0; i < g->n; i++) {
		conv_layer_clear(&g->layers[i].conv);
		aspp_clear(&g->layers[i].aspp);
	}
	free(g->layers);
	free(g);
}

int64_t graph_in_channels(const struct graph *g)
{
	const struct graph_layer *l = &g->layers[0];

	return l->type == GRAPH_CONV ? l->conv.filters->dim[2]
	                             : l->aspp.branches[0].filters->dim[2];
}

int64_t graph_out_channels(const struct graph *g)
{
	const struct graph_layer *l = &g->layers[g->n - 1];

	if (l->type == GRAPH_CONV)
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
		const struct graph_layer *l = &g->layers[i];

		if (l->type == GRAPH_CONV) {
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
		const struct graph_layer *l = &g->layers[i];

		if (l->type == GRAPH_CONV)
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
	struct graph_stats st = { 0 };
	const struct tensor *cur = value;
	struct tensor *next = NULL;
	size_t i;
	int rc = 0;

	*out = NULL;
	for (i = 0; i < g->n; i++) {
		const struct graph_layer *l = &g->layers[i];

		rc = par_cancelled() ? err_set(err, -ECANCELED, "cancelled")
		     : l->type == GRAPH_CONV
		             ? conv_layer_run(&l->conv, cur, runner, &next, &st, err)
		             : aspp_run(&l->aspp, cur, runner, &next, &st, err);
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

/* SPDX-License-Identifier: MIT */
/* layer.c - a convolution layer (weights and settings) run through a plan:
 * plan, allocate the output, run, free (conv.c does the work, shape.c
 * checks the arguments). */
#include "autoconfig.h"

#include <errno.h>
#include <string.h>

#include "layer.h"
#include "error.h"

/* Plan, allocate the output and run; the plan runs on the calling thread
 * when it is below min_flops (a fan-out costs more than it saves). */
static int plan_and_run(const struct tensor *in, const struct tensor *filters,
                        const struct tensor *bias, const struct conv_spec *spec,
                        struct fast_weights *fw, const struct par_runner *runner, double min_flops,
                        struct tensor **out, struct graph_stats *st, char *err)
{
	struct conv_plan *p;
	struct tensor *y = NULL;
	double u, n;
	int64_t odim[4];
	int rc;

	*out = NULL;
	rc = conv_plan_new(&p, in->dim, filters, bias, spec, NULL, fw, err);
	if (rc < 0)
		return rc;
	conv_plan_output_shape(p, odim);
	conv_plan_flops(p, &u, &n);
	rc = tensor_new_uninit(&y, 4, odim, err);
	if (rc == 0) {
		rc = conv_plan_run(p, in->data, y->data, n < min_flops ? NULL : runner);
		if (rc < 0)
			err_set(err, rc, "convolution %s",
			        rc == -ECANCELED ? "cancelled" : "failed: out of memory");
	}
	if (rc == 0 && st != NULL)
		conv_note_algorithm(st, ',', conv_plan_algorithm(p));
	conv_plan_free(p);
	if (rc < 0) {
		tensor_free(y);
		return rc;
	}
	if (st != NULL) {
		st->useful_flops += u;
		st->nominal_flops += n;
	}
	*out = y;
	return 0;
}

void conv_note_algorithm(struct graph_stats *st, char sep, const char *name)
{
	size_t len = strlen(st->algorithms), need = strlen(name) + (len > 0);

	if (len + need + 4 > sizeof(st->algorithms)) {
		if (len + 4 <= sizeof(st->algorithms) &&
		    (len < 3 || strcmp(st->algorithms + len - 3, "...") != 0))
			strcpy(st->algorithms + len, "...");
		return;
	}
	if (len > 0)
		st->algorithms[len++] = sep;
	strcpy(st->algorithms + len, name);
}

int conv_layer_prepare(struct conv_layer *c, char *err)
{
	if (c->fast != NULL)
		return 0;
	return fast_weights_new(&c->fast, c->filters, err);
}

int conv_layer_run(const struct conv_layer *c, const struct tensor *in,
                   const struct par_runner *runner, struct tensor **out, struct graph_stats *st,
                   char *err)
{
	return plan_and_run(in, c->filters, c->bias, &c->spec, c->fast, runner,
	                    CONV_PARALLEL_MIN_FLOPS, out, st, err);
}

void conv_layer_clear(struct conv_layer *c)
{
	if (c == NULL)
		return;
	fast_weights_free(c->fast); /* it borrows the filters */
	c->fast = NULL;
	tensor_free(c->filters);
	tensor_free(c->bias);
	c->filters = c->bias = NULL;
}

int conv_atrous2d(const struct tensor *value, const struct tensor *filters,
                  const struct tensor *bias, const struct conv_spec *spec,
                  const struct par_runner *runner, struct tensor **out, char *err)
{
	char shape[160];

	*out = NULL;
	if (value->rank != 4)
		return err_set(err, -EINVAL, "value must be rank 4 (NHWC), got shape %s",
		               tensor_shape_str(value->rank, value->dim, shape, sizeof(shape)));
	return plan_and_run(value, filters, bias, spec, NULL, runner, 0, out, NULL, err);
}

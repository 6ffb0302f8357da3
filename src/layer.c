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
                        const struct par_runner *runner, double min_flops, struct tensor **out,
                        double *useful, double *nominal, char *err)
{
	struct conv_plan *p;
	struct tensor *y = NULL;
	double u, n;
	int64_t odim[4];
	int rc;

	*out = NULL;
	rc = conv_plan_new(&p, in->dim, filters, bias, spec, NULL, err);
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
	conv_plan_free(p);
	if (rc < 0) {
		tensor_free(y);
		return rc;
	}
	*useful += u;
	*nominal += n;
	*out = y;
	return 0;
}

int conv_layer_run(const struct conv_layer *c, const struct tensor *in,
                   const struct par_runner *runner, struct tensor **out, double *useful,
                   double *nominal, char *err)
{
	return plan_and_run(in, c->filters, c->bias, &c->spec, runner, CONV_PARALLEL_MIN_FLOPS, out,
	                    useful, nominal, err);
}

void conv_layer_clear(struct conv_layer *c)
{
	if (c == NULL)
		return;
	tensor_free(c->filters);
	tensor_free(c->bias);
	c->filters = c->bias = NULL;
}

int conv_atrous2d(const struct tensor *value, const struct tensor *filters,
                  const struct tensor *bias, const struct conv_spec *spec,
                  const struct par_runner *runner, struct tensor **out, char *err)
{
	double useful = 0, nominal = 0;
	char shape[160];

	*out = NULL;
	if (value->rank != 4)
		return err_set(err, -EINVAL, "value must be rank 4 (NHWC), got shape %s",
		               tensor_shape_str(value->rank, value->dim, shape, sizeof(shape)));
	return plan_and_run(value, filters, bias, spec, runner, 0, out, &useful, &nominal, err);
}

/* SPDX-License-Identifier: MIT */
/* layer.c - a convolution layer (weights and settings) run through a plan:
 * plan, allocate the output, run, free (conv.c does the work, shape.c
 * checks the arguments). */
#include "autoconfig.h"

#include <errno.h>
#include <string.h>

#include "layer.h"
#include "error.h"

int conv_layer_run(const struct conv_layer *c, const struct tensor *in,
                   const struct par_runner *runner, struct tensor **out, double *useful_total,
                   double *nominal_total, char *err)
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
		*useful_total += useful;
		*nominal_total += nominal;
		rc = conv_plan_run(p, in->data, y->data,
		                   nominal < CONV_PARALLEL_MIN_FLOPS ? NULL : runner);
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
	struct conv_plan *p = NULL;
	struct tensor *y = NULL;
	int64_t odim[4];
	char shape[160];
	int rc;

	*out = NULL;
	if (value->rank != 4)
		return err_set(err, -EINVAL, "value must be rank 4 (NHWC), got shape %s",
		               tensor_shape_str(value->rank, value->dim, shape, sizeof(shape)));
	rc = conv_plan_new(&p, value->dim, filters, bias, spec, NULL, err);
	if (rc < 0)
		return rc;
	conv_plan_output_shape(p, odim);
	rc = tensor_new_uninit(&y, 4, odim, err);
	if (rc < 0)
		goto fail;
	rc = conv_plan_run(p, value->data, y->data, runner);
	if (rc < 0) {
		err_set(err, rc, "convolution failed: out of memory");
		goto fail;
	}
	conv_plan_free(p);
	*out = y;
	return 0;
fail:
	tensor_free(y);
	conv_plan_free(p);
	return rc;
}

/* SPDX-License-Identifier: MIT */
/* shape.c - TensorFlow's shape rules and argument checks for atrous_conv2d. */
#include "autoconfig.h"

#include <errno.h>
#include <string.h>

#include "error.h"
#include "shape.h"

int conv_parse_padding(const char *s, enum conv_padding *out, char *err)
{
	if (s != NULL && strcmp(s, "SAME") == 0)
		*out = CONV_SAME;
	else if (s != NULL && strcmp(s, "VALID") == 0)
		*out = CONV_VALID;
	else
		return err_set(err, -EINVAL, "padding must be \"SAME\" or \"VALID\", got \"%.64s\"",
		               s ? s : "(null)");
	return 0;
}

int conv_parse_activation(const char *s, enum conv_act *out, char *err)
{
	if (s != NULL && strcmp(s, "none") == 0)
		*out = CONV_ACT_NONE;
	else if (s != NULL && strcmp(s, "relu") == 0)
		*out = CONV_ACT_RELU;
	else
		return err_set(err, -EINVAL,
		               "activation must be \"none\" or \"relu\", got \"%.64s\"",
		               s ? s : "(null)");
	return 0;
}

int conv_parse_algorithm(const char *s, enum conv_algo *out, char *err)
{
	enum conv_algo a;

	for (a = CONV_ALGO_AUTO; a <= CONV_ALGO_FAST; a++)
		if (s != NULL && strcmp(s, conv_algo_name(a)) == 0) {
			*out = a;
			return 0;
		}
	return err_set(err, -EINVAL,
	               "algorithm must be \"auto\", \"im2col\" or \"fast\", got \"%.64s\"",
	               s ? s : "(null)");
}

const char *conv_algo_name(enum conv_algo a)
{
	return a == CONV_ALGO_IM2COL ? "im2col" : a == CONV_ALGO_FAST ? "fast" : "auto";
}

static int out_size(const char *axis, int64_t in, int64_t k, int64_t rate,
                    enum conv_padding padding, int64_t *out, int64_t *pad_before, char *err)
{
	int64_t keff;

	if (__builtin_mul_overflow(k - 1, rate, &keff) || keff == INT64_MAX)
		return err_set(err, -EOVERFLOW,
		               "effective kernel %s (%lld - 1) * rate %lld + 1 overflows", axis,
		               (long long)k, (long long)rate);
	keff += 1;
	if (padding == CONV_SAME) {
		*out = in;
		*pad_before = (keff - 1) / 2;
		return 0;
	}
	if (in - keff + 1 < 0)
		return err_set(
		        err, -EINVAL,
		        "VALID output %s would be negative: input %s %lld - effective kernel "
		        "%s %lld + 1 = %lld",
		        axis, axis, (long long)in, axis, (long long)keff,
		        (long long)(in - keff + 1));
	*out = in - keff + 1;
	*pad_before = 0;
	return 0;
}

int conv_check_layer(const struct tensor *filters, const struct tensor *bias,
                     const struct conv_spec *s, char *err)
{
	char shape[160];

	if (filters->rank != 4)
		return err_set(
		        err, -EINVAL,
		        "filters must be rank 4 [kh, kw, in_channels, out_channels], got shape %s",
		        tensor_shape_str(filters->rank, filters->dim, shape, sizeof(shape)));
	if (filters->count == 0)
		return err_set(err, -EINVAL, "filters shape %s has a zero dimension",
		               tensor_shape_str(4, filters->dim, shape, sizeof(shape)));
	if (s->rate_h < 1 || s->rate_w < 1) {
		if (s->rate_h == s->rate_w)
			return err_set(err, -EINVAL, "rate must be >= 1, got %lld",
			               (long long)s->rate_h);
		return err_set(err, -EINVAL, "rate must be >= 1, got [%lld, %lld]",
		               (long long)s->rate_h, (long long)s->rate_w);
	}
	if (s->rate_h > CONV_MAX_RATE || s->rate_w > CONV_MAX_RATE)
		return err_set(err, -EINVAL, "rate %lld exceeds the maximum %d",
		               (long long)(s->rate_h > s->rate_w ? s->rate_h : s->rate_w),
		               CONV_MAX_RATE);
	if (s->padding != CONV_SAME && s->padding != CONV_VALID)
		return err_set(err, -EINVAL, "padding must be \"SAME\" or \"VALID\"");
	if (bias != NULL && (bias->rank != 1 || bias->dim[0] != filters->dim[3]))
		return err_set(err, -EINVAL, "bias shape %s != [%lld] (filters out_channels)",
		               tensor_shape_str(bias->rank, bias->dim, shape, sizeof(shape)),
		               (long long)filters->dim[3]);
	return 0;
}

int conv_geometry(const int64_t vdim[4], const struct tensor *filters, const struct tensor *bias,
                  const struct conv_spec *s, struct conv_geom *g, char *err)
{
	size_t count;
	int rc;

	/* TensorFlow reports a channel mismatch before a bad rate. */
	if (filters->rank == 4 && filters->count > 0 && filters->dim[2] != vdim[3])
		return err_set(err, -EINVAL, "filters in_channels %lld != value channels %lld",
		               (long long)filters->dim[2], (long long)vdim[3]);
	rc = conv_check_layer(filters, bias, s, err);
	if (rc < 0)
		return rc;
	g->odim[0] = vdim[0];
	g->odim[3] = filters->dim[3];
	rc = out_size("height", vdim[1], filters->dim[0], s->rate_h, s->padding, &g->odim[1],
	              &g->pad_top, err);
	if (rc == 0)
		rc = out_size("width", vdim[2], filters->dim[1], s->rate_w, s->padding, &g->odim[2],
		              &g->pad_left, err);
	if (rc == 0)
		rc = tensor_shape_count(4, g->odim, 0, &count, err);
	return rc;
}

int conv_output_shape(const int64_t vdim[4], const struct tensor *filters,
                      const struct tensor *bias, const struct conv_spec *s, int64_t odim[4],
                      char *err)
{
	struct conv_geom g;
	int rc = conv_geometry(vdim, filters, bias, s, &g, err);

	if (rc == 0)
		memcpy(odim, g.odim, sizeof(g.odim));
	return rc;
}

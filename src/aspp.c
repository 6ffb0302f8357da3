/* SPDX-License-Identifier: MIT */
/* aspp.c - DeepLab atrous spatial pyramid pooling on the conv kernel: image
 * pooling, branches written into their channels of one concatenation (with
 * centre-tap fusion when it pays), and the projection. */
#include "autoconfig.h"

#include <cblas.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "aspp.h"
#include "error.h"

/* The projection's rows past image pooling's channels, for the fold. */
static int prepare_fold(struct aspp *a, char *err)
{
	const struct tensor *pf;
	int64_t op, dim[4];
	int rc;

	if (a->pool == NULL || a->proj == NULL || a->proj_rest != NULL)
		return 0;
	pf = a->proj->filters;
	op = a->pool->filters->dim[3];
	if (pf->dim[2] <= op)
		return 0; /* a mismatch that aspp_output_shape reports */
	dim[0] = dim[1] = 1;
	dim[2] = pf->dim[2] - op;
	dim[3] = pf->dim[3];
	rc = tensor_new_uninit(&a->proj_rest, 4, dim, err);
	if (rc == 0)
		memcpy(a->proj_rest->data, pf->data + op * pf->dim[3],
		       a->proj_rest->count * sizeof(float));
	return rc;
}

int aspp_prepare(struct aspp *a, char *err)
{
	int64_t c = a->branches[0].filters->dim[2], nf = 0, off = 0, ch, o;
	int64_t dim[2];
	size_t b;
	int rc;

	rc = prepare_fold(a, err);
	if (rc < 0)
		return rc;
	for (b = 0; b < a->nbranches; b++) {
		const struct tensor *f = a->branches[b].filters;

		if (f->dim[0] % 2 == 0 || f->dim[1] % 2 == 0 || f->dim[2] != c)
			return 0; /* not fusable: each branch runs whole */
		nf += f->dim[3];
	}
	dim[0] = c;
	dim[1] = nf;
	rc = tensor_new_uninit(&a->center, 2, dim, err);
	if (rc < 0)
		return rc;
	for (b = 0; b < a->nbranches; b++) {
		const struct tensor *f = a->branches[b].filters;
		int64_t kw = f->dim[1], ob = f->dim[3];
		const float *w = f->data + ((f->dim[0] / 2) * kw + kw / 2) * c * ob;

		for (ch = 0; ch < c; ch++)
			for (o = 0; o < ob; o++)
				a->center->data[ch * nf + off + o] = w[ch * ob + o];
		off += ob;
	}
	return 0;
}

int64_t aspp_concat_channels(const struct aspp *a)
{
	int64_t c = a->pool ? a->pool->filters->dim[3] : 0;
	size_t i;

	for (i = 0; i < a->nbranches; i++)
		c += a->branches[i].filters->dim[3];
	return c;
}

int aspp_output_shape(const struct aspp *a, const int64_t vdim[4], int64_t max_elements,
                      int64_t odim[4], char *err)
{
	int64_t bd[4], pd[4] = { vdim[0], 1, 1, vdim[3] };
	size_t i;
	size_t count;
	int rc;

	if (a->pool != NULL) {
		rc = conv_output_shape(pd, a->pool->filters, a->pool->bias, &a->pool->spec, bd,
		                       err);
		if (rc < 0) {
			err_prefix(err, "image_pooling");
			return rc;
		}
	}
	for (i = 0; i < a->nbranches; i++) {
		rc = conv_output_shape(vdim, a->branches[i].filters, a->branches[i].bias,
		                       &a->branches[i].spec, bd, err);
		if (rc < 0) {
			err_prefix(err, "branches[%zu]", i);
			return rc;
		}
	}
	odim[0] = vdim[0];
	odim[1] = vdim[1];
	odim[2] = vdim[2];
	odim[3] = aspp_concat_channels(a);
	rc = tensor_shape_count(4, odim, max_elements, &count, err);
	if (rc < 0)
		err_prefix(err, "ASPP concatenation");
	if (rc < 0 || a->proj == NULL)
		return rc;
	memcpy(bd, odim, sizeof(bd));
	rc = conv_output_shape(bd, a->proj->filters, a->proj->bias, &a->proj->spec, odim, err);
	if (rc < 0)
		err_prefix(err, "projection");
	return rc;
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
		size_t n = conv_plan_is_fast(m->plans[k]) ? 0 : conv_plan_ntasks(m->plans[k]);

		if (i < n) {
			conv_plan_run_task(m->plans[k], i, m->in, m->out, scratch);
			return;
		}
		i -= n;
	}
}

/* Run a 1x1 sub-layer (pooling, projection): FLOPs count, its algorithm is
 * not listed (only the branches are). */
static int run_sub(const struct conv_layer *c, const struct tensor *in,
                   const struct par_runner *runner, struct tensor **out, struct graph_stats *st,
                   char *err)
{
	struct graph_stats sub = { 0 };
	int rc = conv_layer_run(c, in, runner, out, &sub, err);

	st->useful_flops += sub.useful_flops;
	st->nominal_flops += sub.nominal_flops;
	return rc;
}

/* Image pooling: spatial mean and the 1x1 layer into *pooled [N,1,1,Op];
 * broadcast into channels [0, Op) of concat unless concat is NULL. */
static int image_pooling(const struct conv_layer *pl, const struct tensor *in,
                         struct tensor *concat, struct tensor **pooled_out, struct graph_stats *st,
                         char *err)
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
	rc = run_sub(pl, pooled, NULL, &y, st, err);
	tensor_free(pooled);
	if (rc < 0)
		return rc;
	for (b = 0; b < n && concat != NULL; b++)
		for (px = 0; px < hw; px++)
			memcpy(concat->data + (b * hw + px) * concat->dim[3],
			       y->data + b * y->dim[3], (size_t)y->dim[3] * sizeof(float));
	*pooled_out = y;
	return 0;
}

/* The projection with the image-pooling branch folded in: that branch is
 * constant over H x W, so its share of the projection is a bias of each
 * image, sum_c pooled[c] * W[c][k] (in double), and the projection's GEMM
 * runs over the other channels only (the same sums, fewer of them). */
static int project_folded(const struct aspp *a, const struct tensor *concat,
                          const struct tensor *pooled, const struct par_runner *runner,
                          struct tensor **out, struct graph_stats *st, char *err)
{
	const struct tensor *pf = a->proj->filters;
	int64_t n = concat->dim[0], hw = concat->dim[1] * concat->dim[2], cc = concat->dim[3];
	int64_t op = pooled->dim[3], k = pf->dim[3], b, c, j;
	int64_t vd[4] = { 1, concat->dim[1], concat->dim[2], cc };
	int64_t od[4] = { n, concat->dim[1], concat->dim[2], k }, bd[1] = { k };
	struct tensor *bias = NULL, *y = NULL;
	struct conv_plan *p = NULL;
	double *acc = NULL, u, nom;
	int rc;

	rc = tensor_new_uninit(&bias, 1, bd, err);
	if (rc == 0)
		rc = tensor_new_uninit(&y, 4, od, err);
	if (rc == 0 && (acc = malloc((size_t)k * sizeof(double))) == NULL)
		rc = err_set(err, -ENOMEM, "out of memory");
	for (b = 0; b < n && rc == 0; b++) {
		for (j = 0; j < k; j++)
			acc[j] = a->proj->bias ? a->proj->bias->data[j] : 0.0;
		for (c = 0; c < op; c++)
			for (j = 0; j < k; j++)
				acc[j] += (double)pooled->data[b * op + c] *
				          (double)pf->data[c * k + j];
		for (j = 0; j < k; j++)
			bias->data[j] = (float)acc[j];
		rc = conv_plan_new(&p, vd, a->proj_rest, bias, &a->proj->spec, NULL, NULL, err);
		if (rc < 0)
			break;
		conv_plan_flops(p, &u, &nom);
		st->useful_flops += u + 2.0 * (double)(op * k);
		st->nominal_flops += nom + 2.0 * (double)(hw * op * k);
		rc = conv_plan_run(p, concat->data + b * hw * cc, y->data + b * hw * k,
		                   nom < CONV_PARALLEL_MIN_FLOPS ? NULL : runner);
		if (rc < 0)
			err_set(err, rc, rc == -ECANCELED ? "cancelled" : "out of memory");
		conv_plan_free(p);
	}
	free(acc);
	tensor_free(bias);
	if (rc < 0) {
		tensor_free(y);
		return rc;
	}
	*out = y;
	return 0;
}

static int64_t max_branch_out(const struct aspp *a)
{
	int64_t m = 0;
	size_t b;

	for (b = 0; b < a->nbranches; b++)
		if (a->branches[b].filters->dim[3] > m)
			m = a->branches[b].filters->dim[3];
	return m;
}

/* Pixels per task of the fused centre GEMM and of the finishing pass. */
#define FUSED_TILE 128

/* Branch fusion, phase 1: every branch's centre tap for a tile of pixels as
 * one GEMM (A is the input itself, N the sum of the branch outputs), written
 * into the branches' channels of the concatenation. */
struct fused {
	const struct aspp *a;
	const float *in;
	float *out;
	int64_t pixels, c, nf, ldc, off;
};

static void center_task(void *arg, size_t t, void *scratch)
{
	const struct fused *f = arg;
	int64_t p0 = (int64_t)t * FUSED_TILE;
	int64_t m = f->pixels - p0 < FUSED_TILE ? f->pixels - p0 : FUSED_TILE;
	int64_t per = m * f->c, cols = per > 0 ? CONV_CANCEL_MACS / per : f->nf, j;

	/* In runs of output columns (the same sums, bit for bit) with a look at
	 * the cancellation flag before each. */
	if (cols < 16)
		cols = 16;
	for (j = 0; j < f->nf && !par_cancelled(); j += cols) {
		int64_t n = f->nf - j < cols ? f->nf - j : cols;

		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)n, (int)f->c,
		            1.0f, f->in + p0 * f->c, (int)f->c, f->a->center->data + j, (int)f->nf,
		            0.0f, f->out + p0 * f->ldc + f->off + j, (int)f->ldc);
	}
}

/* Phase 3: bias and activation of every branch, once all taps are summed. */
static void finish_task(void *arg, size_t t, void *scratch)
{
	const struct fused *f = arg;
	int64_t p0 = (int64_t)t * FUSED_TILE;
	int64_t p1 = p0 + FUSED_TILE < f->pixels ? p0 + FUSED_TILE : f->pixels, px, off;
	size_t b;

	for (px = p0; px < p1; px++) {
		off = f->off;
		for (b = 0; b < f->a->nbranches; b++) {
			const struct conv_layer *br = &f->a->branches[b];

			conv_bias_act(f->out + px * f->ldc + off, br->bias ? br->bias->data : NULL,
			              br->filters->dim[3], br->spec.act);
			off += br->filters->dim[3];
		}
	}
}

/* The branches of one run, planned before any work: their plans as one task
 * set, and the fused centre GEMM when it pays. */
struct branch_exec {
	struct multi m;
	struct fused fused;
	size_t ntasks, scratch, tiles;
	int use_fusion, fast;   /* fast: branches that run whole (fast, direct) */
	double useful, nominal; /* of the branches; nominal decides the fan-out */
};

/* Fusion saves the centre's im2col copy (C floats a pixel) and costs two
 * passes over each branch's output (about 2 x O floats): it pays when the
 * input is much wider than the branches (measured: OS16, C 2048 and O 256,
 * gains; OS8, C 256, loses 5 %). */
static int fusion_pays(const struct aspp *a, const struct tensor *in, int64_t pixels)
{
	return a->center != NULL && a->center->dim[0] == in->dim[3] && pixels > 0 &&
	       in->dim[3] >= ASPP_FUSION_RATIO * max_branch_out(a);
}

static void branch_exec_clear(struct branch_exec *x)
{
	size_t i;

	for (i = 0; i < x->m.nplans; i++)
		conv_plan_free(x->m.plans[i]);
	free(x->m.plans);
	memset(x, 0, sizeof(*x));
}

/* Plan each branch into its channels [off, ...) of concat, fused or not. */
static int plan_each(const struct aspp *a, const struct tensor *in, struct tensor *concat,
                     int64_t off, int fusion, struct branch_exec *x, char *err)
{
	size_t i;
	int rc;

	x->m.plans = calloc(a->nbranches, sizeof(*x->m.plans));
	if (x->m.plans == NULL)
		return err_set(err, -ENOMEM, "out of memory");
	x->m.in = in->data;
	x->m.out = concat->data;
	x->fused = (struct fused){ .a = a,
		                   .in = in->data,
		                   .out = concat->data,
		                   .pixels = in->dim[0] * in->dim[1] * in->dim[2],
		                   .c = in->dim[3],
		                   .nf = a->center ? a->center->dim[1] : 0,
		                   .ldc = concat->dim[3],
		                   .off = off };
	x->use_fusion = fusion;
	x->tiles = (size_t)((x->fused.pixels + FUSED_TILE - 1) / FUSED_TILE);
	if (fusion)
		x->useful +=
		        2.0 * (double)x->fused.pixels * (double)x->fused.c * (double)x->fused.nf;
	for (i = 0; i < a->nbranches; i++) {
		const struct tensor *f = a->branches[i].filters;
		struct conv_out_layout lay = { .channel_offset = off,
			                       .pixel_stride = concat->dim[3],
			                       .accumulate = fusion,
			                       .skip_center = fusion };
		struct conv_plan *p;
		double pu, pn;

		off += f->dim[3];
		if (fusion) {
			/* Counted whole here; the plan below leaves the centre out. */
			x->nominal += 2.0 * (double)x->fused.pixels *
			              (double)(f->dim[0] * f->dim[1]) * (double)f->dim[2] *
			              (double)f->dim[3];
			if (f->dim[0] == 1 && f->dim[1] == 1)
				continue; /* all centre: the fused GEMM computes it */
		}
		rc = conv_plan_new(&p, in->dim, f, a->branches[i].bias, &a->branches[i].spec, &lay,
		                   a->branches[i].fast, err);
		if (rc < 0) {
			err_prefix(err, "branches[%zu]", i);
			return rc;
		}
		x->m.plans[x->m.nplans++] = p;
		if (conv_plan_is_fast(p)) {
			x->fast++; /* runs whole, after the others */
		} else {
			x->ntasks += conv_plan_ntasks(p);
			if (conv_plan_scratch(p) > x->scratch)
				x->scratch = conv_plan_scratch(p);
		}
		conv_plan_flops(p, &pu, &pn);
		x->useful += pu;
		if (!fusion)
			x->nominal += pn;
	}
	return 0;
}

/* Plan the branches: minimal filtering or the direct kernel where chosen;
 * the centre-tap fusion only when no branch runs either (they compute their
 * centre taps themselves). */
static int plan_branches(const struct aspp *a, const struct tensor *in, struct tensor *concat,
                         int64_t off, struct branch_exec *x, char *err)
{
	int fusion = fusion_pays(a, in, in->dim[0] * in->dim[1] * in->dim[2]);
	int rc = plan_each(a, in, concat, off, 0, x, err);

	if (rc < 0 || x->fast > 0 || !fusion)
		return rc;
	branch_exec_clear(x);
	return plan_each(a, in, concat, off, 1, x, err);
}

/* The branches' algorithms, '+' between them: a 1x1 fused into the centre
 * GEMM has no plan and counts as im2col. */
static void note_branches(const struct branch_exec *x, const struct aspp *a, struct graph_stats *st)
{
	size_t b, k = 0;

	for (b = 0; b < a->nbranches; b++) {
		const struct tensor *f = a->branches[b].filters;
		const char *name = "im2col";

		if (!(x->use_fusion && f->dim[0] == 1 && f->dim[1] == 1))
			name = conv_plan_algorithm(x->m.plans[k++]);
		conv_note_algorithm(st, b == 0 ? ',' : '+', name);
	}
}

/* Fused centres (phase 1), the branches' other taps (2), bias and activation
 * (3); without fusion, phase 2 alone writes finished branches, and the
 * minimal-filtering branches follow, each in passes of its own. */
static int run_branches(const struct branch_exec *x, const struct par_runner *runner)
{
	size_t k;
	int rc = 0;

	if (x->nominal < CONV_PARALLEL_MIN_FLOPS)
		runner = NULL;
	if (x->use_fusion)
		rc = par_run(runner, x->tiles, 64, center_task, (void *)&x->fused);
	if (rc == 0)
		rc = par_run(runner, x->ntasks, x->scratch, multi_task, (void *)&x->m);
	if (rc == 0 && x->use_fusion)
		rc = par_run(runner, x->tiles, 64, finish_task, (void *)&x->fused);
	for (k = 0; k < x->m.nplans && rc == 0; k++)
		if (conv_plan_is_fast(x->m.plans[k]))
			rc = conv_plan_run(x->m.plans[k], x->m.in, x->m.out, runner);
	return rc;
}

int aspp_run(const struct aspp *a, const struct tensor *in, const struct par_runner *runner,
             struct tensor **out, struct graph_stats *st, char *err)
{
	/* With a projection, image pooling folds into its bias: the
	 * concatenation holds the branches alone. */
	int fold = a->proj_rest != NULL;
	int64_t op = a->pool ? a->pool->filters->dim[3] : 0;
	int64_t cd[4] = { in->dim[0], in->dim[1], in->dim[2],
		          aspp_concat_channels(a) - (fold ? op : 0) };
	struct branch_exec x = { 0 };
	struct tensor *concat = NULL, *pooled = NULL;
	int64_t off = fold ? 0 : op;
	int rc;

	rc = tensor_new_uninit(&concat, 4, cd, err);
	if (rc == 0 && a->pool != NULL)
		rc = image_pooling(a->pool, in, fold ? NULL : concat, &pooled, st, err);
	if (rc == 0)
		rc = plan_branches(a, in, concat, off, &x, err);
	if (rc < 0)
		goto done;
	st->useful_flops += x.useful;
	st->nominal_flops += x.nominal;
	note_branches(&x, a, st);
	rc = run_branches(&x, runner);
	if (rc < 0) {
		err_set(err, rc, rc == -ECANCELED ? "cancelled" : "out of memory");
		goto done;
	}
	if (fold && pooled != NULL) {
		rc = project_folded(a, concat, pooled, runner, out, st, err);
		if (rc < 0)
			err_prefix(err, "projection");
	} else if (a->proj != NULL) {
		rc = run_sub(a->proj, concat, runner, out, st, err);
		if (rc < 0)
			err_prefix(err, "projection");
	} else {
		*out = concat;
		concat = NULL;
	}
done:
	branch_exec_clear(&x);
	tensor_free(pooled);
	tensor_free(concat);
	return rc;
}

void aspp_clear(struct aspp *a)
{
	size_t i;

	for (i = 0; i < a->nbranches; i++)
		conv_layer_clear(&a->branches[i]);
	free(a->branches);
	conv_layer_clear(a->pool);
	conv_layer_clear(a->proj);
	free(a->pool);
	free(a->proj);
	tensor_free(a->center);
	tensor_free(a->proj_rest);
	memset(a, 0, sizeof(*a));
}

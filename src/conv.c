/* SPDX-License-Identifier: MIT */
/* conv.c - atrous_conv2d as region-wise im2col + cblas_sgemm.
 *
 * For stride 1, output position o along one axis reads input o - pad + t*rate
 * for tap t.  The taps that land inside the input form an interval [tlo, thi]
 * which changes only near the borders, so each axis splits into a few
 * segments; their cross product gives regions with a constant tap rectangle.
 * Taps that read only zero padding are skipped: the result is the same, the
 * work is smaller, and a rate at least as large as the map degenerates into a
 * 1x1 convolution with the centre tap.  (TensorFlow's shape rules and the
 * argument checks are in shape.c.)
 */
#include "autoconfig.h"

#include <cblas.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "conv.h"
#include "error.h"
#include "fast.h"

/* Tiling policy: at least this many tiles per large region, each at least
 * this many output pixels (small regions stay whole). */
#define CONV_MIN_SPLIT 4
/* Plans below this many nominal FLOPs with more regions than this run as one
 * zero-padded region (see use_padded). */
#define CONV_PADDED_MAX_FLOPS   5e7
#define CONV_PADDED_MIN_REGIONS 9
#define CONV_MIN_TILE           128
/* The direct kernel's padded input: at most this many floats (4 MiB). */
#define DIRECT_PAD_MAX ((double)(1 << 20))

struct seg {
	int64_t start, len; /* output positions [start, start + len) */
	int64_t tlo, thi;   /* valid taps; thi < tlo when none */
};

struct task {
	int64_t n;
	size_t region;
	int64_t p0, p1; /* pixel range inside the region, row-major */
};

struct conv_plan {
	int64_t n, h, w, c; /* value */
	int64_t kh, kw, o;  /* filters [kh, kw, c, o] */
	int64_t oh, ow;     /* output spatial size */
	int64_t rh, rw;     /* rates */
	int64_t pt, pl;     /* top and left padding */
	enum conv_act act;
	const float *filters; /* borrowed */
	const float *bias;    /* borrowed, may be NULL */
	int64_t out_off, out_stride;
	int accumulate, skip_center;
	int padded;     /* one region over all taps; im2col writes zeros for padding */
	int64_t ci, cj; /* the centre tap when skip_center, else -1 */
	struct seg *rows, *cols;
	size_t nrows, ncols;
	struct task *tasks;
	size_t ntasks;
	size_t scratch; /* bytes one task needs */
	double useful, nominal;
	struct fast_plan *fast; /* minimal filtering runs instead of the regions */
	int direct;             /* the tiny-convolution kernel runs instead */
};

static int64_t div_floor(int64_t a, int64_t b)
{
	int64_t q = a / b;

	return (a % b != 0 && a < 0) ? q - 1 : q;
}

static int64_t div_ceil(int64_t a, int64_t b)
{
	int64_t q = a / b;

	return (a % b != 0 && a > 0) ? q + 1 : q;
}

/* Split one axis into segments of constant valid-tap interval. */
static int make_segs(int64_t in, int64_t out, int64_t k, int64_t rate, int64_t pad,
                     struct seg **segs, size_t *nseg)
{
	struct seg *v = NULL;
	size_t n = 0, cap = 0;
	int64_t o;

	for (o = 0; o < out; o++) {
		int64_t lo = div_ceil(pad - o, rate), hi = div_floor(in - 1 - o + pad, rate);

		if (lo < 0)
			lo = 0;
		if (hi > k - 1)
			hi = k - 1;
		if (hi < lo) {
			lo = 0;
			hi = -1;
		}
		if (n > 0 && v[n - 1].tlo == lo && v[n - 1].thi == hi) {
			v[n - 1].len++;
			continue;
		}
		if (n == cap) {
			struct seg *nv;

			cap = cap ? 2 * cap : 8;
			nv = realloc(v, cap * sizeof(*v));
			if (nv == NULL) {
				free(v);
				return -ENOMEM;
			}
			v = nv;
		}
		v[n++] = (struct seg){ o, 1, lo, hi };
	}
	*segs = v;
	*nseg = n;
	return 0;
}

static int64_t taps(const struct seg *s)
{
	return s->thi >= s->tlo ? s->thi - s->tlo + 1 : 0;
}

/* Does the region's tap rectangle hold the skipped centre tap? */
static int has_center(const struct conv_plan *p, const struct seg *sr, const struct seg *sc)
{
	return p->skip_center && sr->tlo <= p->ci && p->ci <= sr->thi && sc->tlo <= p->cj &&
	       p->cj <= sc->thi;
}

/* Columns of a region's im2col row: its taps (less the centre) times C. */
static int64_t region_k(const struct conv_plan *p, const struct seg *sr, const struct seg *sc)
{
	return (taps(sr) * taps(sc) - has_center(p, sr, sc)) * p->c;
}

/* Small convolutions split into many small regions run faster as one
 * zero-padded region: one GEMM instead of dozens of tiny ones. */
static int use_padded(const struct conv_plan *p)
{
	size_t regions = p->nrows * p->ncols;

	return !p->accumulate && !p->skip_center && regions > CONV_PADDED_MIN_REGIONS &&
	       p->nominal < CONV_PADDED_MAX_FLOPS && p->oh > 0 && p->ow > 0;
}

static int plan_tasks(struct conv_plan *p, char *err)
{
	size_t cap = 0, r;
	int64_t n;

	p->scratch = 0;
	for (r = 0; r < p->nrows * p->ncols; r++) {
		const struct seg *sr = &p->rows[r / p->ncols], *sc = &p->cols[r % p->ncols];
		int64_t pixels = sr->len * sc->len, k = region_k(p, sr, sc);
		int64_t per = k + p->o, m;

		if (k > INT_MAX || p->o > INT_MAX)
			return err_set(err, -E2BIG,
			               "GEMM dimension %lld exceeds the BLAS int range",
			               (long long)(k > p->o ? k : p->o));
		m = k == 0 ? pixels : (int64_t)(CONV_SCRATCH_BYTES / sizeof(float)) / per;
		/* Large regions are cut in at least CONV_MIN_SPLIT tiles (of
		 * CONV_MIN_TILE pixels or more) so that idle workers can help. */
		if (m > (pixels + CONV_MIN_SPLIT - 1) / CONV_MIN_SPLIT)
			m = (pixels + CONV_MIN_SPLIT - 1) / CONV_MIN_SPLIT;
		if (m < CONV_MIN_TILE)
			m = CONV_MIN_TILE;
		if (m > pixels)
			m = pixels;
		if (k > 0 && (size_t)(m * per) * sizeof(float) > p->scratch)
			p->scratch = (size_t)(m * per) * sizeof(float);
		p->useful += 2.0 * (double)p->n * (double)pixels * (double)k * (double)p->o;
		if (k == 0 && p->accumulate)
			continue; /* nothing to add */
		for (n = 0; n < p->n; n++) {
			int64_t p0;

			for (p0 = 0; p0 < pixels; p0 += m) {
				if (p->ntasks == cap) {
					struct task *nt;

					cap = cap ? 2 * cap : 16;
					nt = realloc(p->tasks, cap * sizeof(*nt));
					if (nt == NULL)
						return err_set(err, -ENOMEM, "out of memory");
					p->tasks = nt;
				}
				p->tasks[p->ntasks++] =
				        (struct task){ n, r, p0,
					               p0 + m < pixels ? p0 + m : pixels };
			}
		}
	}
	return 0;
}

/* The plan's dimensions, weights and output layout from checked arguments. */
static void plan_fields(struct conv_plan *p, const int64_t vdim[4], const struct tensor *filters,
                        const struct tensor *bias, const struct conv_spec *s,
                        const struct conv_geom *g, const struct conv_out_layout *layout)
{
	p->n = vdim[0];
	p->h = vdim[1];
	p->w = vdim[2];
	p->c = vdim[3];
	p->kh = filters->dim[0];
	p->kw = filters->dim[1];
	p->o = filters->dim[3];
	p->oh = g->odim[1];
	p->ow = g->odim[2];
	p->rh = s->rate_h;
	p->rw = s->rate_w;
	p->pt = g->pad_top;
	p->pl = g->pad_left;
	p->act = s->act;
	p->filters = filters->data;
	p->bias = bias ? bias->data : NULL;
	p->out_off = layout ? layout->channel_offset : 0;
	p->out_stride = layout ? layout->pixel_stride : p->o;
	p->accumulate = layout ? layout->accumulate : 0;
	p->skip_center = layout ? layout->skip_center : 0;
	p->ci = p->skip_center ? (p->kh - 1) / 2 : -1;
	p->cj = p->skip_center ? (p->kw - 1) / 2 : -1;
	p->nominal = 2.0 * (double)p->n * (double)p->oh * (double)p->ow * (double)(p->kh * p->kw) *
	             (double)p->c * (double)p->o;
}

/* Collapse the regions into one over every tap, reading zeros for the
 * padding; useful FLOPs stay those of the taps that read input. */
static void collapse_padded(struct conv_plan *p)
{
	double useful = 0;
	size_t r;

	for (r = 0; r < p->nrows * p->ncols; r++) {
		const struct seg *sr = &p->rows[r / p->ncols], *sc = &p->cols[r % p->ncols];

		useful += 2.0 * (double)p->n * (double)(sr->len * sc->len) *
		          (double)region_k(p, sr, sc) * (double)p->o;
	}
	p->rows[0] = (struct seg){ 0, p->oh, 0, p->kh - 1 };
	p->cols[0] = (struct seg){ 0, p->ow, 0, p->kw - 1 };
	p->nrows = p->ncols = 1;
	p->padded = 1;
	p->useful = useful;
}

/* Minimal filtering applies to 3x3 kernels written whole (no accumulation,
 * no skipped centre) with rates inside the map (larger ones reduce to the
 * centre tap, which the region plan computes as a 1x1). */
static int fast_applies(const struct conv_plan *p)
{
	return p->kh == 3 && p->kw == 3 && !p->accumulate && !p->skip_center && p->n > 0 &&
	       p->oh > 0 && p->ow > 0 && p->rh <= p->h && p->rw <= p->w && p->c <= INT_MAX &&
	       p->o <= INT_MAX;
}

static struct fast_args fast_args_of(const struct conv_plan *p)
{
	return (struct fast_args){ .n = p->n,
		                   .h = p->h,
		                   .w = p->w,
		                   .c = p->c,
		                   .k = p->o,
		                   .oh = p->oh,
		                   .ow = p->ow,
		                   .rh = p->rh,
		                   .rw = p->rw,
		                   .pt = p->pt,
		                   .pl = p->pl,
		                   .act = p->act,
		                   .filters = p->filters,
		                   .bias = p->bias,
		                   .out_off = p->out_off,
		                   .out_stride = p->out_stride };
}

/* Tiny convolutions (fixed costs rule them) run the direct kernel under
 * auto: output channels in whole vectors, written whole, most taps reading
 * input (it computes them all), and a padded copy of the input of at most
 * DIRECT_PAD_MAX floats (a rate far beyond the map would pad it hugely). */
static int direct_applies(const struct conv_plan *p)
{
	double padded = (double)p->n * (double)p->c *
	                ((double)p->oh + (double)(p->kh - 1) * (double)p->rh) *
	                ((double)p->ow + (double)(p->kw - 1) * (double)p->rw);

	return !p->accumulate && !p->skip_center && p->o % DIRECT_VL == 0 && p->n > 0 &&
	       p->oh > 0 && p->ow > 0 && p->nominal <= CONV_DIRECT_MAX_FLOPS &&
	       p->useful >= p->nominal / 2 && padded <= DIRECT_PAD_MAX;
}

/* The region plan's cost in multiply-add equivalents: its GEMMs and the
 * im2col copy (one float per column of each GEMM row). */
static double region_cost(const struct conv_plan *p)
{
	return p->useful / 2 * (1.0 + 1.0 / (double)p->o);
}

/* Choose the algorithm (CONV_ALGO_AUTO: minimal filtering when the cost
 * model expects it to take at most CONV_FAST_GAIN of the region plan's
 * time, or CONV_FAST_DIRECT_GAIN where the direct kernel applies, else the
 * direct kernel where it applies) and plan the fast path; a budget refusal
 * keeps the regions or the direct kernel. */
static int plan_fast(struct conv_plan *p, enum conv_algo algo, struct fast_weights *fw, char *err)
{
	double gain = CONV_FAST_GAIN;
	struct fast_args a;
	int rc;

	if (algo == CONV_ALGO_IM2COL)
		return 0;
	if (algo == CONV_ALGO_AUTO && direct_applies(p)) {
		p->direct = 1; /* unless minimal filtering beats it */
		gain = CONV_FAST_DIRECT_GAIN;
	}
	if (!fast_applies(p))
		return 0;
	a = fast_args_of(p);
	if (algo == CONV_ALGO_AUTO && fast_cost(&a, fw == NULL) > gain * region_cost(p))
		return 0;
	rc = fast_plan_new(&p->fast, &a, fw, err);
	if (rc == -E2BIG) {
		err[0] = '\0';
		return 0; /* over the budget */
	}
	if (rc == 0)
		p->direct = 0;
	return rc;
}

int conv_plan_new(struct conv_plan **out, const int64_t vdim[4], const struct tensor *filters,
                  const struct tensor *bias, const struct conv_spec *s,
                  const struct conv_out_layout *layout, struct fast_weights *fw, char *err)
{
	struct conv_plan *p;
	struct conv_geom g;
	double useful;
	int rc;

	*out = NULL;
	rc = conv_geometry(vdim, filters, bias, s, &g, err);
	if (rc < 0)
		return rc;
	p = calloc(1, sizeof(*p));
	if (p == NULL)
		return err_set(err, -ENOMEM, "out of memory");
	plan_fields(p, vdim, filters, bias, s, &g, layout);
	if (p->skip_center && (s->padding != CONV_SAME || p->kh % 2 == 0 || p->kw % 2 == 0)) {
		rc = err_set(err, -EINVAL, "skip_center needs an odd kernel and SAME padding");
		goto fail;
	}
	if (p->out_off < 0 || p->out_stride < p->out_off + p->o) {
		rc = err_set(err, -EINVAL,
		             "output layout offset %lld stride %lld cannot hold %lld channels",
		             (long long)p->out_off, (long long)p->out_stride, (long long)p->o);
		goto fail;
	}
	if (make_segs(p->h, p->oh, p->kh, p->rh, p->pt, &p->rows, &p->nrows) < 0 ||
	    make_segs(p->w, p->ow, p->kw, p->rw, p->pl, &p->cols, &p->ncols) < 0) {
		rc = err_set(err, -ENOMEM, "out of memory");
		goto fail;
	}
	if (use_padded(p))
		collapse_padded(p);
	useful = p->useful;
	if (p->n > 0 && (rc = plan_tasks(p, err)) < 0)
		goto fail;
	if (p->padded)
		p->useful = useful; /* plan_tasks counted the padding's taps too */
	if ((rc = plan_fast(p, s->algo, fw, err)) < 0)
		goto fail;
	*out = p;
	return 0;
fail:
	conv_plan_free(p);
	return rc;
}

void conv_plan_free(struct conv_plan *p)
{
	if (p == NULL)
		return;
	free(p->rows);
	free(p->cols);
	free(p->tasks);
	fast_plan_free(p->fast);
	free(p);
}

const char *conv_plan_algorithm(const struct conv_plan *p)
{
	return p->fast ? "fast" : p->direct ? "direct" : "im2col";
}

void conv_plan_output_shape(const struct conv_plan *p, int64_t odim[4])
{
	odim[0] = p->n;
	odim[1] = p->oh;
	odim[2] = p->ow;
	odim[3] = p->o;
}

void conv_plan_flops(const struct conv_plan *p, double *useful, double *nominal)
{
	*useful = p->useful;
	*nominal = p->nominal;
}

static void run_task(void *arg, size_t ti, void *scratch);

size_t conv_plan_ntasks(const struct conv_plan *p)
{
	return p->ntasks;
}

size_t conv_plan_scratch(const struct conv_plan *p)
{
	return p->scratch;
}

int conv_plan_is_fast(const struct conv_plan *p)
{
	return p->fast != NULL || p->direct;
}

struct run_ctx {
	const struct conv_plan *p;
	const float *in;
	float *out;
};

static void run_task(void *arg, size_t ti, void *scratch)
{
	const struct run_ctx *rc = arg;

	conv_plan_run_task(rc->p, ti, rc->in, rc->out, scratch);
}

/* The region's output rows are whole rows of the output, so its pixels are
 * contiguous and a GEMM can write them in place (ldc = pixel stride). */
static int full_width(const struct conv_plan *p, const struct seg *sc)
{
	return sc->start == 0 && sc->len == p->ow;
}

/* im2col over the valid taps: row q holds (ti, tj, c) for one pixel. */
/* Copy n floats.  Rows of a few channels (a network's first layer) are
 * copied inline: a libc call per tap would cost more than the copy. */
static inline void copy_floats(float *dst, const float *src, int64_t n)
{
	int64_t i = 0;

	if (n > 16) {
		memcpy(dst, src, (size_t)n * sizeof(float));
		return;
	}
	for (; i + 4 <= n; i += 4)
		memcpy(dst + i, src + i, 4 * sizeof(float));
	switch (n - i) {
	case 3: dst[i + 2] = src[i + 2]; /* fall through */
	case 2: dst[i + 1] = src[i + 1]; /* fall through */
	case 1: dst[i] = src[i];         /* fall through */
	default: break;
	}
}

static inline void zero_floats(float *dst, int64_t n)
{
	static const float zeros[16];

	if (n > 16)
		memset(dst, 0, (size_t)n * sizeof(float));
	else
		copy_floats(dst, zeros, n);
}

static void im2col(const struct conv_plan *p, const struct task *t, const struct seg *sr,
                   const struct seg *sc, const float *in, float *a, int64_t k)
{
	int64_t q, ti, tj, m = t->p1 - t->p0;

	for (q = 0; q < m; q++) {
		int64_t y = sr->start + (t->p0 + q) / sc->len,
		        x = sc->start + (t->p0 + q) % sc->len;
		float *row = a + q * k;

		for (ti = sr->tlo; ti <= sr->thi; ti++) {
			int64_t iy = y - p->pt + ti * p->rh;

			for (tj = sc->tlo; tj <= sc->thi; tj++) {
				int64_t ix = x - p->pl + tj * p->rw;

				if (ti == p->ci && tj == p->cj)
					continue; /* the centre, computed apart */
				if (iy < 0 || iy >= p->h || ix < 0 || ix >= p->w)
					zero_floats(row, p->c); /* padding (padded plans only) */
				else
					copy_floats(row,
					            in + ((t->n * p->h + iy) * p->w + ix) * p->c,
					            p->c);
				row += p->c;
			}
		}
	}
}

typedef float vf4 __attribute__((vector_size(16)));
typedef int vi4 __attribute__((vector_size(16)));

/* dst[o] = act(src[o] + bias[o]) for o < n (bias may be NULL); src may equal
 * dst.  Four lanes at a time; ReLU keeps NaN (NaN < 0 is false) so that an
 * overflowed result is still reported. */
static void bias_act(float *dst, const float *src, const float *bias, int64_t n, enum conv_act act)
{
	const vf4 zero = { 0 };
	int relu = act == CONV_ACT_RELU;
	int64_t o = 0;

	for (; o + 4 <= n; o += 4) {
		vf4 v, b;

		memcpy(&v, src + o, sizeof(v));
		if (bias != NULL) {
			memcpy(&b, bias + o, sizeof(b));
			v += b;
		}
		if (relu)
			v = (vf4)((vi4)v & ~(vi4)(v < zero));
		memcpy(dst + o, &v, sizeof(v));
	}
	for (; o < n; o++) {
		float v = src[o] + (bias ? bias[o] : 0.0f);

		dst[o] = relu && v < 0.0f ? 0.0f : v;
	}
}

/* One output pixel of the plan: its bias and activation. */
static void finish_pixel(const struct conv_plan *p, float *dst, const float *src)
{
	bias_act(dst, src, p->bias, p->o, p->act);
}

/* The output pixel at position i (row-major) of a task's region. */
static float *out_pixel(const struct conv_plan *p, const struct task *t, const struct seg *sr,
                        const struct seg *sc, float *out, int64_t i)
{
	int64_t y = sr->start + i / sc->len, x = sc->start + i % sc->len;

	return out + ((t->n * p->oh + y) * p->ow + x) * p->out_stride + p->out_off;
}

/* The GEMMs of one task: m pixels of A (leading dimension lda) times the
 * weights of some taps, into C. */
struct gemm_step {
	int64_t m, lda, ldc;
	const float *a;
	float *c;
	float beta; /* 0 for the first GEMM into scratch, else 1 */
};

/* ntaps consecutive taps (row-major over the kernel) from tap first, read
 * from column col of A; in runs of taps of at most CONV_CANCEL_MACS, with a
 * look at the cancellation flag before each (a cancelled task's output is
 * garbage that nobody reads). */
static void gemm_taps(const struct conv_plan *p, struct gemm_step *g, int64_t col, int64_t first,
                      int64_t ntaps)
{
	int64_t per = g->m * p->o * p->c, run = per > 0 ? CONV_CANCEL_MACS / per : ntaps;

	if (run < 1)
		run = 1;
	while (ntaps > 0) {
		int64_t n = ntaps < run ? ntaps : run;

		if (par_cancelled())
			return;
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)g->m, (int)p->o,
		            (int)(n * p->c), 1.0f, g->a + col, (int)g->lda,
		            p->filters + first * p->c * p->o, (int)p->o, g->beta, g->c,
		            (int)g->ldc);
		g->beta = 1.0f;
		col += n * p->c;
		first += n;
		ntaps -= n;
	}
}

/* The GEMMs of a region: one over whole filter rows when the taps' weights
 * are contiguous, else one per filter row (two around a skipped centre). */
static void region_gemms(const struct conv_plan *p, const struct seg *sr, const struct seg *sc,
                         struct gemm_step *g)
{
	int64_t r, col = 0, nj = taps(sc);

	if (nj == p->kw && !has_center(p, sr, sc)) {
		gemm_taps(p, g, 0, sr->tlo * p->kw, taps(sr) * p->kw);
		return;
	}
	for (r = sr->tlo; r <= sr->thi; r++) {
		if (r == p->ci && sc->tlo <= p->cj && p->cj <= sc->thi) {
			/* The centre is left out: the taps either side of it. */
			if (p->cj > sc->tlo)
				gemm_taps(p, g, col, r * p->kw + sc->tlo, p->cj - sc->tlo);
			col += (p->cj - sc->tlo) * p->c;
			if (p->cj < sc->thi)
				gemm_taps(p, g, col, r * p->kw + p->cj + 1, sc->thi - p->cj);
			col += (sc->thi - p->cj) * p->c;
			continue;
		}
		gemm_taps(p, g, col, r * p->kw + sc->tlo, nj);
		col += nj * p->c;
	}
}

/* A region where no tap reads input: the output is act(bias). */
static void task_no_taps(const struct conv_plan *p, const struct task *t, const struct seg *sr,
                         const struct seg *sc, float *out)
{
	int64_t i;

	if (p->accumulate)
		return;
	for (i = t->p0; i < t->p1; i++) {
		float *dst = out_pixel(p, t, sr, sc, out, i);

		memset(dst, 0, (size_t)p->o * sizeof(float));
		finish_pixel(p, dst, dst);
	}
}

/* One task of the region plan: im2col (or the input itself) and GEMMs. */
static void region_task(const struct conv_plan *p, const struct task *t, const float *in,
                        float *out, void *scratch)
{
	const struct seg *sr = &p->rows[t->region / p->ncols], *sc = &p->cols[t->region % p->ncols];
	int64_t k = region_k(p, sr, sc), m = t->p1 - t->p0, q, o;
	int64_t y0 = sr->start + t->p0 / sc->len, x0 = sc->start + t->p0 % sc->len;
	int direct_out = full_width(p, sc);
	struct gemm_step g = { .m = m, .lda = k, .a = scratch };

	if (k == 0) {
		task_no_taps(p, t, sr, sc, out);
		return;
	}
	/* A: the input rows themselves for one tap over whole rows of a
	 * same-width map, else the im2col of the region's taps. */
	if (taps(sr) == 1 && taps(sc) == 1 && direct_out && p->w == p->ow) {
		g.a = in + ((t->n * p->h + y0 - p->pt + sr->tlo * p->rh) * p->w + x0) * p->c;
		g.lda = p->c;
	} else {
		im2col(p, t, sr, sc, in, scratch, k);
	}
	/* C: the output itself when its rows are whole, else scratch. */
	g.c = direct_out ? out_pixel(p, t, sr, sc, out, t->p0) : (float *)scratch + m * k;
	g.ldc = direct_out ? p->out_stride : p->o;
	g.beta = p->accumulate && direct_out ? 1.0f : 0.0f;
	region_gemms(p, sr, sc, &g);
	if ((p->accumulate && direct_out) || par_cancelled())
		return; /* cancelled: C may be unwritten, and nobody reads it */
	for (q = 0; q < m; q++) {
		float *dst = out_pixel(p, t, sr, sc, out, t->p0 + q);
		const float *src = direct_out ? dst : g.c + q * p->o;

		if (!p->accumulate) {
			finish_pixel(p, dst, src);
			continue;
		}
		for (o = 0; o < p->o; o++)
			dst[o] += src[o];
	}
}

void conv_plan_run_task(const struct conv_plan *p, size_t ti, const float *in, float *out,
                        void *scratch)
{
	region_task(p, &p->tasks[ti], in, out, scratch);
}

void conv_bias_act(float *dst, const float *bias, int64_t n, enum conv_act act)
{
	bias_act(dst, dst, bias, n, act);
}

/* ---- the direct kernel ----
 *
 * The input is copied once with its zero padding, so every tap of every
 * output reads memory; blocks of output pixels by output channels
 * accumulate in registers (conv_direct.h).  Its code is there twice: 8
 * floats a vector (x86-64-v3 and portable clones), and on x86-64 16 for
 * processors with AVX-512, used when the output channels come in whole
 * vectors of 16. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi" /* static, inlined vector helpers */
#endif
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define DIRECT_WIDE 1
#define DK_ATTR     __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define DIRECT_WIDE 0
#define DK_ATTR
#endif

#define DK_VL      DIRECT_VL
#define DK_PX      3
#define DK_NV      4
#define DK_NAME(x) x##_8
#include "conv_direct.h"

#if DIRECT_WIDE
#define DK_VL      16
#define DK_PX      6
#define DK_NV      4
#define DK_NAME(x) x##_16
#define DK_ATTR    __attribute__((target("arch=x86-64-v4")))
#include "conv_direct.h"
#endif

/* Does this plan run 16 floats a vector? */
static int direct_wide(const struct conv_plan *p)
{
#if DIRECT_WIDE
	return p->o % 16 == 0 && __builtin_cpu_supports("x86-64-v4");
#else
	(void)p;
	return 0;
#endif
}

/* Rows of output per task when the direct kernel fans out. */
#define DIRECT_TASK_ROWS 4

struct direct_ctx {
	const struct conv_plan *p;
	const float *pad;
	int64_t hp, wp;
	float *out;
	int wide; /* 16 floats a vector */
};

static void direct_task(void *arg, size_t i, void *scratch)
{
	const struct direct_ctx *d = arg;
	int64_t rows = d->p->n * d->p->oh, r0 = (int64_t)i * DIRECT_TASK_ROWS;

	(void)scratch;
	if (r0 + DIRECT_TASK_ROWS < rows)
		rows = r0 + DIRECT_TASK_ROWS;
#if DIRECT_WIDE
	if (d->wide) {
		direct_rows_16(d->p, d->pad, d->hp, d->wp, r0, rows, d->out);
		return;
	}
#endif
	direct_rows_8(d->p, d->pad, d->hp, d->wp, r0, rows, d->out);
}

/* The direct kernel: pad once, then rows of output (on the runner's
 * workers when the caller gives one, in tasks of DIRECT_TASK_ROWS). */
static int direct_run(const struct conv_plan *p, const float *in, float *out,
                      const struct par_runner *runner)
{
	int64_t hp = p->oh + (p->kh - 1) * p->rh, wp = p->ow + (p->kw - 1) * p->rw, n, y;
	struct direct_ctx d;
	float *pad;
	int rc;

	if (par_cancelled())
		return -ECANCELED;
	pad = calloc((size_t)(p->n * hp * wp * p->c), sizeof(float));
	if (pad == NULL)
		return -ENOMEM;
	/* input column x lands in padded column pl + x; padding is never
	 * negative, and VALID's padded width is the input's */
	for (n = 0; n < p->n; n++)
		for (y = 0; y < hp; y++) {
			int64_t iy = y - p->pt, cols = wp - p->pl < p->w ? wp - p->pl : p->w;

			if (iy >= 0 && iy < p->h && cols > 0)
				memcpy(pad + ((n * hp + y) * wp + p->pl) * p->c,
				       in + ((n * p->h + iy) * p->w) * p->c,
				       (size_t)(cols * p->c) * sizeof(float));
		}
	d = (struct direct_ctx){ p, pad, hp, wp, out, direct_wide(p) };
	rc = par_run(runner, (size_t)((p->n * p->oh + DIRECT_TASK_ROWS - 1) / DIRECT_TASK_ROWS), 64,
	             direct_task, &d);
	free(pad);
	return rc;
}

int conv_plan_run(const struct conv_plan *p, const float *in, float *out,
                  const struct par_runner *runner)
{
	struct run_ctx rc = { p, in, out };

	if (p->fast != NULL)
		return fast_plan_run(p->fast, in, out, runner);
	if (p->direct)
		return direct_run(p, in, out, runner);
	return par_run(runner, p->ntasks, p->scratch, run_task, &rc);
}

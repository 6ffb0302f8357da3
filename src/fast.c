/* SPDX-License-Identifier: MIT */
/* fast.c - 3x3 atrous convolution by minimal filtering on the phase grids.
 *
 * Along one axis, output o reads input o - pad + t*rate for taps t = 0..2.
 * With s = o - pad, the phase b = s mod rate and i = floor(s / rate), o reads
 * the phase grid g_b[j] = x[b + j*rate] at j = i, i+1, i+2 (zero outside the
 * grid).  Each phase's outputs are cut into tiles of one 1-D scheme; a 2-D
 * tile is a row tile times a column tile.  A scheme reads nin grid values
 * from off past the tile's first i and computes
 *	y = AT [ (G w) (.) (BT x) ]
 * with T products; in 2-D, Y = AT_r [ U (.) (BT_r X BT_c^T) ] AT_c^T where
 * U = G_r W G_c^T.  (The matrices of F(m,3) follow from Toom-Cook at the
 * points listed below, transposed for correlation; BT rows are scaled to
 * integers and G carries the inverse scale.)
 */
#include "autoconfig.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "error.h"
#include "fast.h"
#include "gemm.h"
#include "par.h"

#define TMAX 6 /* products of the largest scheme */
#define MMAX 4 /* outputs of the largest scheme */

/* Inline filters are transformed per request only up to this size. */
#define FAST_INLINE_MAX_BYTES ((size_t)32 << 20)

struct scheme {
	int m, nin, off, t;
	float bt[TMAX][TMAX]; /* t x nin */
	double g[TMAX][3];    /* t x 3 */
	float at[MMAX][TMAX]; /* m x t */
};

/* S1: one output whose only real input is the centre's.  S2: two outputs
 * over a two-value grid: m1 = w1 (x0 + x1), m2 = (w2 - w1) x1,
 * m3 = (w0 - w1) x0, y0 = m1 + m2, y1 = m1 + m3.  F2 at 0, 1, -1, inf;
 * F3 at 0, -1, 2, 1/2, inf; F4 at 0, 1/2, -1/2, 3/2, -3/2, inf. */
static const struct scheme schemes[FAST_NSCHEMES] = {
	[FAST_S1] = { 1, 1, 1, 1, { { 1 } }, { { 0, 1, 0 } }, { { 1 } } },
	[FAST_S2] = { 2,
	              2,
	              1,
	              3,
	              { { 1, 1 }, { 0, 1 }, { 1, 0 } },
	              { { 0, 1, 0 }, { 0, -1, 1 }, { 1, -1, 0 } },
	              { { 1, 1, 0 }, { 1, 0, 1 } } },
	[FAST_F2] = { 2,
	              4,
	              0,
	              4,
	              { { 1, 0, -1, 0 }, { 0, 1, 1, 0 }, { 0, -1, 1, 0 }, { 0, -1, 0, 1 } },
	              { { 1, 0, 0 }, { 0.5, 0.5, 0.5 }, { 0.5, -0.5, 0.5 }, { 0, 0, 1 } },
	              { { 1, 1, 1, 0 }, { 0, 1, -1, 1 } } },
	[FAST_F3] = { 3,
	              5,
	              0,
	              5,
	              { { 2, -3, -3, 2, 0 },
	                { 0, -2, 5, -2, 0 },
	                { 0, -1, 1, 2, 0 },
	                { 0, 16, 8, -8, 0 },
	                { 0, 2, -3, -3, 2 } },
	              { { 1.0 / 2, 0, 0 },
	                { 1.0 / 9, -1.0 / 9, 1.0 / 9 },
	                { 1.0 / 18, 1.0 / 9, 2.0 / 9 },
	                { 1.0 / 9, 1.0 / 18, 1.0 / 36 },
	                { 0, 0, 1.0 / 2 } },
	              { { 1, 1, 1, 1, 0 }, { 0, -1, 2, 0.5f, 0 }, { 0, 1, 4, 0.25f, 1 } } },
	[FAST_F4] = { 4,
	              6,
	              0,
	              6,
	              { { 9, 0, -40, 0, 16, 0 },
	                { 0, 9, 18, -4, -8, 0 },
	                { 0, -9, 18, 4, -8, 0 },
	                { 0, -3, -2, 12, 8, 0 },
	                { 0, 3, -2, -12, 8, 0 },
	                { 0, 9, 0, -40, 0, 16 } },
	              { { 1.0 / 9, 0, 0 },
	                { 1.0 / 8, 1.0 / 16, 1.0 / 32 },
	                { 1.0 / 8, -1.0 / 16, 1.0 / 32 },
	                { 1.0 / 72, 1.0 / 48, 1.0 / 32 },
	                { 1.0 / 72, -1.0 / 48, 1.0 / 32 },
	                { 0, 0, 1.0 / 16 } },
	              { { 1, 1, 1, 1, 1, 0 },
	                { 0, 0.5f, -0.5f, 1.5f, -1.5f, 0 },
	                { 0, 0.25f, 0.25f, 2.25f, 2.25f, 0 },
	                { 0, 0.125f, -0.125f, 3.375f, -3.375f, 1 } } },
};

/* ---- transformed weights ---- */

struct fast_weights {
	pthread_mutex_t lock;
	const float *filters; /* borrowed: [3, 3, c, k] */
	int64_t c, k;
	float *u[FAST_NSCHEMES][FAST_NSCHEMES];
	atomic_size_t bytes; /* written under lock, read by /metrics without */
	int warned;
};

static atomic_size_t total_bytes;
static atomic_size_t budget = FAST_DEFAULT_BUDGET;
static void (*warn_fn)(const char *msg);

void fast_set_budget(size_t bytes)
{
	atomic_store(&budget, bytes);
}

size_t fast_total_bytes(void)
{
	return atomic_load(&total_bytes);
}

void fast_set_warn(void (*warn)(const char *msg))
{
	warn_fn = warn;
}

int fast_weights_new(struct fast_weights **out, const struct tensor *filters, char *err)
{
	struct fast_weights *fw;

	*out = NULL;
	if (filters->rank != 4 || filters->dim[0] != 3 || filters->dim[1] != 3)
		return 0; /* not a 3x3 layer: no cache */
	fw = calloc(1, sizeof(*fw));
	if (fw == NULL)
		return err_set(err, -ENOMEM, "out of memory");
	pthread_mutex_init(&fw->lock, NULL);
	fw->filters = filters->data;
	fw->c = filters->dim[2];
	fw->k = filters->dim[3];
	*out = fw;
	return 0;
}

void fast_weights_free(struct fast_weights *fw)
{
	int i, j;

	if (fw == NULL)
		return;
	for (i = 0; i < FAST_NSCHEMES; i++)
		for (j = 0; j < FAST_NSCHEMES; j++)
			free(fw->u[i][j]);
	atomic_fetch_sub(&total_bytes, atomic_load(&fw->bytes));
	pthread_mutex_destroy(&fw->lock);
	free(fw);
}

size_t fast_weights_bytes(const struct fast_weights *fw)
{
	return fw ? atomic_load(&fw->bytes) : 0;
}

/* Floats of one product's weights [c x k], packed for the GEMM kernel. */
static size_t prod_floats(int64_t c, int64_t k)
{
	return gemm_packed_floats(c, k);
}

static size_t pair_bytes(int sr, int sc, int64_t c, int64_t k)
{
	return (size_t)(schemes[sr].t * schemes[sc].t) * prod_floats(c, k) * sizeof(float);
}

/* Elements of the weights transformed at a time: the row transform's
 * results stay in cache, and the cancellation flag is looked at between. */
#define FAST_WEIGHT_CHUNK 2048

/* U[i][j] = G_r[i] W G_c[j]^T for every product (i, j), in double, rows
 * then columns, a chunk of W's [c][k] elements at a time, each product's
 * [c x k] stored packed for the GEMM kernel (u zeroed before: the padding
 * stays so); -ECANCELED when the request is cancelled meanwhile (u is then
 * incomplete). */
static int transform_weights(const float *w, int64_t c, int64_t k, int sr, int sc, float *u)
{
	const struct scheme *a = &schemes[sr], *b = &schemes[sc];
	int64_t ck = c * k, per = (int64_t)prod_floats(c, k), e0, e, n;
	double(*h)[3][FAST_WEIGHT_CHUNK] = malloc(TMAX * sizeof(*h));
	int i, j, x, y;

	if (h == NULL)
		return -ENOMEM;
	for (e0 = 0; e0 < ck; e0 += FAST_WEIGHT_CHUNK) {
		if (par_cancelled()) {
			free(h);
			return -ECANCELED;
		}
		n = ck - e0 < FAST_WEIGHT_CHUNK ? ck - e0 : FAST_WEIGHT_CHUNK;
		/* h[i][x] = sum_y G_r[i][y] W[y][x] */
		for (i = 0; i < a->t; i++)
			for (x = 0; x < 3; x++) {
				for (e = 0; e < n; e++)
					h[i][x][e] = 0;
				for (y = 0; y < 3; y++) {
					double g = a->g[i][y];
					const float *src = w + (y * 3 + x) * ck + e0;

					if (g != 0)
						for (e = 0; e < n; e++)
							h[i][x][e] += g * (double)src[e];
				}
			}
		/* U[i][j] = sum_x h[i][x] G_c[j][x] */
		for (i = 0; i < a->t; i++)
			for (j = 0; j < b->t; j++) {
				float *dst = u + (int64_t)(i * b->t + j) * per;
				double g0 = b->g[j][0], g1 = b->g[j][1], g2 = b->g[j][2];
				int64_t ci = e0 / k, ki = e0 % k;

				for (e = 0; e < n; e++) {
					dst[gemm_packed_at(c, ci, ki)] =
					        (float)(g0 * h[i][0][e] + g1 * h[i][1][e] +
					                g2 * h[i][2][e]);
					if (++ki == k) {
						ki = 0;
						ci++;
					}
				}
			}
	}
	free(h);
	return 0;
}

/* The pair's weights, made on first use; NULL when the budget refuses
 * (*rc -E2BIG) or the request is cancelled meanwhile (*rc -ECANCELED). */
static const float *weights_get(struct fast_weights *fw, int sr, int sc, int *rc)
{
	size_t need = pair_bytes(sr, sc, fw->c, fw->k);
	float *u;

	pthread_mutex_lock(&fw->lock);
	u = fw->u[sr][sc];
	*rc = -E2BIG;
	if (u != NULL)
		goto out;
	if (atomic_fetch_add(&total_bytes, need) + need > atomic_load(&budget)) {
		atomic_fetch_sub(&total_bytes, need);
		if (!fw->warned && warn_fn != NULL) {
			char msg[200];

			snprintf(msg, sizeof(msg),
			         "fast convolution: transformed weights of a 3x3x%lldx%lld layer "
			         "would pass the budget (%zu MiB); it runs the region plan",
			         (long long)fw->c, (long long)fw->k, atomic_load(&budget) >> 20);
			warn_fn(msg);
		}
		fw->warned = 1;
		goto out;
	}
	u = calloc(1, need);
	if (u == NULL) {
		atomic_fetch_sub(&total_bytes, need);
		goto out;
	}
	*rc = transform_weights(fw->filters, fw->c, fw->k, sr, sc, u);
	if (*rc < 0) {
		free(u);
		u = NULL;
		atomic_fetch_sub(&total_bytes, need);
		goto out;
	}
	fw->u[sr][sc] = u;
	atomic_fetch_add(&fw->bytes, need);
out:
	pthread_mutex_unlock(&fw->lock);
	return u;
}

/* ---- axes ---- */

/* A run of one scheme's outputs along one axis. */
struct atile {
	int64_t o;   /* output position of the first output */
	int64_t j;   /* phase-grid index of the first value read */
	int64_t b;   /* phase */
	int64_t lb;  /* length of the phase grid */
	int64_t len; /* outputs that exist (<= m) */
};

struct axis {
	struct atile *t[FAST_NSCHEMES];
	int64_t n[FAST_NSCHEMES];
};

static int64_t mod_floor(int64_t a, int64_t b)
{
	int64_t r = a % b;

	return r < 0 ? r + b : r;
}

static int64_t ceil_div(int64_t a, int64_t b)
{
	return (a + b - 1) / b;
}

/* One phase of an axis: its outputs, the grid index the first one reads
 * from, and the grid's length. */
struct phase {
	int64_t o0, n, i0, lb;
};

static struct phase axis_phase(int64_t in, int64_t out, int64_t rate, int64_t pad, int64_t b)
{
	struct phase ph;

	ph.o0 = mod_floor(pad + b, rate);
	ph.n = ph.o0 < out ? (out - ph.o0 + rate - 1) / rate : 0;
	ph.i0 = (ph.o0 - pad - b) / rate; /* exact */
	ph.lb = b < in ? (in - b + rate - 1) / rate : 0;
	return ph;
}

/* A phase of one value or two that a 3-tap window reads whole (with the
 * padding either side) gets a special scheme; else -1. */
static int special_scheme(const struct phase *ph)
{
	if (ph->i0 == -1 && ph->n == 1 && ph->lb == 1)
		return FAST_S1;
	if (ph->i0 == -1 && ph->n == 2 && ph->lb == 2)
		return FAST_S2;
	return -1;
}

/* The F(m,3) of an axis: the fewest products over all its other phases
 * (one scheme per axis keeps the groups, and the transformed weights, few).
 * specials 0: the phases of one or two values take it too. */
static int axis_scheme(int64_t in, int64_t out, int64_t rate, int64_t pad, int specials)
{
	int64_t cost[FAST_NSCHEMES] = { 0 }, b;
	int best = FAST_F4, s;

	for (b = 0; b < rate; b++) {
		struct phase ph = axis_phase(in, out, rate, pad, b);

		if (ph.n == 0 || (specials && special_scheme(&ph) >= 0))
			continue;
		for (s = FAST_F2; s <= FAST_F4; s++)
			cost[s] += (ph.n + schemes[s].m - 1) / schemes[s].m * schemes[s].t;
	}
	for (s = FAST_F4; s >= FAST_F2; s--)
		if (cost[s] < cost[best])
			best = s;
	return best;
}

/* Count the tiles of each scheme along an axis (t NULL) or fill them;
 * specials 0: no special schemes. */
static void axis_tiles(int64_t in, int64_t out, int64_t rate, int64_t pad, int specials,
                       struct axis *ax)
{
	int f = axis_scheme(in, out, rate, pad, specials);
	int64_t b, k;

	memset(ax->n, 0, sizeof(ax->n));
	for (b = 0; b < rate; b++) {
		struct phase ph = axis_phase(in, out, rate, pad, b);
		const struct scheme *sc;
		int s;

		if (ph.n == 0)
			continue;
		s = specials ? special_scheme(&ph) : -1;
		if (s < 0)
			s = f;
		sc = &schemes[s];
		for (k = 0; k * sc->m < ph.n; k++) {
			if (ax->t[s] != NULL)
				ax->t[s][ax->n[s]] = (struct atile){
					ph.o0 + k * sc->m * rate, ph.i0 + k * sc->m + sc->off, b,
					ph.lb, ph.n - k * sc->m < sc->m ? ph.n - k * sc->m : sc->m
				};
			ax->n[s]++;
		}
	}
}

static int axis_new(int64_t in, int64_t out, int64_t rate, int64_t pad, int specials,
                    struct axis *ax)
{
	int s;

	memset(ax, 0, sizeof(*ax));
	axis_tiles(in, out, rate, pad, specials, ax);
	for (s = 0; s < FAST_NSCHEMES; s++) {
		if (ax->n[s] == 0)
			continue;
		ax->t[s] = calloc((size_t)ax->n[s], sizeof(struct atile));
		if (ax->t[s] == NULL)
			return -ENOMEM;
	}
	axis_tiles(in, out, rate, pad, specials, ax);
	return 0;
}

static void axis_free(struct axis *ax)
{
	int s;

	for (s = 0; s < FAST_NSCHEMES; s++)
		free(ax->t[s]);
}

/* ---- plan ---- */

/* A plan runs in stages (or fused, below): the tiles of one or more groups
 * whose transformed input and products fit FAST_STAGE_BYTES together.  A
 * stage is three passes over the pool: input transforms
 * (FAST_TILES_PER_TASK tiles a task), one GEMM per product and group (every
 * tile of the stage at once, so each weight matrix is read once a stage),
 * output transforms. */
#define FAST_STAGE_BYTES    ((size_t)40 << 20)
#define FAST_TILES_PER_TASK 8
#define VL                  8 /* channels per vector in the transforms */

struct group {
	int sr, sc;
	int64_t nr, nc; /* row and column tiles */
	const float *u;
};

/* A range of one group's tiles in a stage, with its place in the stage's
 * buffer (in floats): V [products][tiles][c], then M [products][tiles][k]. */
struct seg {
	int g;
	int64_t t0, t1;
	size_t v, m;
};

struct stage {
	size_t seg0, nseg; /* its segments */
	size_t tile_tasks; /* FAST_TILES_PER_TASK tiles each, over its segments */
	size_t gemm_tasks; /* one per product of each segment */
	size_t floats;     /* buffer */
};

struct fast_plan {
	struct fast_args a;
	struct axis rows, cols;
	struct group g[FAST_NSCHEMES * FAST_NSCHEMES];
	int ng;
	struct seg *segs;
	size_t nsegs;
	struct stage *stages;
	size_t nstages, floats; /* floats: the largest stage's (or fused task's) buffer */
	size_t own;             /* inline filters: bytes each run transforms */
	int fused;              /* one pass of fused tasks, a segment each */
	int wide_in, wide_out;  /* transforms 16 floats a vector */
};

static int wide_for(int64_t n);

/* Transform work of one tile in multiply-add equivalents: each term costs
 * a vector operation per VL channels (rounded up), about as long as 2 VL
 * multiply-adds of a GEMM. */
static double tile_transform_cost(int sr, int sc, int64_t c, int64_t k)
{
	const struct scheme *a = &schemes[sr], *b = &schemes[sc];
	double cv = (double)((c + VL - 1) / VL * VL), kv = (double)((k + VL - 1) / VL * VL);

	return 2 * ((double)(a->t * b->nin * a->nin + a->t * b->t * b->nin) * cv +
	            (double)(a->m * b->t * a->t + a->m * b->m * b->t) * kv);
}

/* Each product's GEMM reads its weight matrix once, which takes about as
 * long as FAST_WEIGHT_ROWS rows of its products when the matrix is larger
 * than the cache keeps (measured on one thread, 25 products of [M x C] .
 * [C x K], from how GFLOP/s grow with M = 9 .. 144: 28 rows for 1 and 2 MiB
 * matrices, C x K 512 x 512 and 2048 x 256; a 256 KiB one, which stays in
 * cache, about 6, left out here). */
#define FAST_WEIGHT_ROWS 28

static double weight_rows(int64_t c, int64_t k)
{
	return (double)c * (double)k * sizeof(float) > (512 << 10) ? FAST_WEIGHT_ROWS : 0;
}

/* Cost of a layer cut as r and c: products, transforms and (inline
 * filters) the weights' transform; *reads gets the weights' reading. */
static double grid_cost(const struct fast_args *a, const struct axis *r, const struct axis *c,
                        int inline_weights, double *reads)
{
	double cost = 0;
	int sr, sc;

	*reads = 0;
	for (sr = 0; sr < FAST_NSCHEMES; sr++)
		for (sc = 0; sc < FAST_NSCHEMES; sc++) {
			double tiles = (double)a->n * (double)r->n[sr] * (double)c->n[sc];
			double t = schemes[sr].t * schemes[sc].t;

			if (tiles == 0)
				continue;
			cost += tiles * (t * (double)a->c * (double)a->k +
			                 tile_transform_cost(sr, sc, a->c, a->k));
			*reads += weight_rows(a->c, a->k) * t * (double)a->c * (double)a->k;
			if (inline_weights)
				cost += t * 9 * 2 * (double)a->c * (double)a->k;
		}
	return cost;
}

/* Whether rows and columns use the special schemes: a phase of one or two
 * values costs the fewest products with them, but each scheme pair is a
 * GEMM of its own per product, and a pair of few tiles pays mostly for
 * reading its weights (the OS16 head's rate-12 branch: 144 tiles as one
 * F(3,3) pair cost less than 81 F(3,3), 2 x 27 mixed and 9 S2 tiles).
 * Returns the cost of the choice without the weights' reading, which
 * compares with the region plan's (whose OpenBLAS calls pack theirs). */
static double plan_specials(const struct fast_args *a, int inline_weights, int *rows, int *cols)
{
	struct axis r[2], c[2]; /* [1]: with the special schemes */
	double best = -1, best_cost = 0;
	int i;

	memset(r, 0, sizeof(r));
	memset(c, 0, sizeof(c));
	for (i = 0; i < 2; i++) {
		axis_tiles(a->h, a->oh, a->rh, a->pt, i, &r[i]);
		axis_tiles(a->w, a->ow, a->rw, a->pl, i, &c[i]);
	}
	for (i = 0; i < 4; i++) {
		double reads,
		        cost = grid_cost(a, &r[!(i & 1)], &c[!(i & 2)], inline_weights, &reads);

		if (best < 0 || cost + reads < best) {
			best = cost + reads;
			best_cost = cost;
			*rows = !(i & 1);
			*cols = !(i & 2);
		}
	}
	return best_cost;
}

double fast_cost(const struct fast_args *a, int inline_weights)
{
	int rows, cols;

	return plan_specials(a, inline_weights, &rows, &cols);
}

static size_t tile_floats(const struct fast_plan *p, const struct group *g)
{
	return (size_t)(schemes[g->sr].t * schemes[g->sc].t) * (size_t)(p->a.c + p->a.k);
}

static int push_seg(struct fast_plan *p, size_t *cap, struct seg s)
{
	if (p->nsegs == *cap) {
		struct seg *n;

		*cap = *cap ? 2 * *cap : 8;
		n = realloc(p->segs, *cap * sizeof(*n));
		if (n == NULL)
			return -ENOMEM;
		p->segs = n;
	}
	p->segs[p->nsegs++] = s;
	return 0;
}

/* Close the stage being filled (its segments are the last ones). */
static int push_stage(struct fast_plan *p, struct stage *cur)
{
	struct stage *n = realloc(p->stages, (p->nstages + 1) * sizeof(*n));

	if (n == NULL)
		return -ENOMEM;
	p->stages = n;
	cur->seg0 = p->nsegs - cur->nseg;
	p->stages[p->nstages++] = *cur;
	memset(cur, 0, sizeof(*cur));
	return 0;
}

static atomic_size_t stage_limit = FAST_STAGE_BYTES;

void fast_set_stage_limit(size_t bytes)
{
	atomic_store(&stage_limit, bytes ? bytes : FAST_STAGE_BYTES);
}

/* Cut the groups' tiles into segments and the segments into stages. */
static int plan_stages(struct fast_plan *p)
{
	size_t cap = 0, limit = atomic_load(&stage_limit) / sizeof(float), i;
	struct stage cur = { 0 };
	int gi;

	for (gi = 0; gi < p->ng; gi++) {
		const struct group *g = &p->g[gi];
		int64_t tiles = p->a.n * g->nr * g->nc, t0 = 0, full, part;
		size_t per = tile_floats(p, g);

		/* A group larger than a stage is cut into equal parts, not
		 * full stages and a remainder: a remainder of a few tiles
		 * reads every weight matrix again for GEMMs of a few rows (the
		 * OS16 head's rate-6 branch was 141 tiles and 3). */
		full = (int64_t)(limit / per);
		if (full < 1)
			full = 1;
		part = tiles <= full ? tiles : ceil_div(tiles, ceil_div(tiles, full));
		while (t0 < tiles) {
			size_t left = cur.floats < limit ? limit - cur.floats : 0;
			int64_t room = (int64_t)(left / per), n;

			n = part < tiles - t0 ? part : tiles - t0;
			if (room < n && cur.nseg > 0) {
				if (push_stage(p, &cur) < 0)
					return -ENOMEM;
				continue;
			}
			if (push_seg(p, &cap, (struct seg){ gi, t0, t0 + n, 0, 0 }) < 0)
				return -ENOMEM;
			cur.nseg++;
			cur.floats += (size_t)n * per;
			t0 += n;
		}
	}
	if (cur.nseg > 0 && push_stage(p, &cur) < 0)
		return -ENOMEM;
	for (i = 0; i < p->nstages; i++) {
		struct stage *st = &p->stages[i];
		size_t k, off = 0;

		st->floats = 0;
		for (k = st->seg0; k < st->seg0 + st->nseg; k++) {
			struct seg *sg = &p->segs[k];
			const struct group *g = &p->g[sg->g];
			size_t cnt = (size_t)(sg->t1 - sg->t0),
			       prods = (size_t)(schemes[g->sr].t * schemes[g->sc].t);

			sg->v = off;
			off += prods * cnt * (size_t)p->a.c;
			sg->m = off;
			off += prods * cnt * (size_t)p->a.k;
			st->tile_tasks += (cnt + FAST_TILES_PER_TASK - 1) / FAST_TILES_PER_TASK;
			st->gemm_tasks += prods;
		}
		st->floats = off;
		if (off > p->floats)
			p->floats = off;
	}
	return 0;
}

/* Small layers run fused: each task takes a segment of one group's tiles
 * (FAST_FUSED_BYTES of transformed input and products at most, in whole
 * register blocks of the GEMM kernel) through all three steps in its own
 * scratch.  One pass over the pool instead of three, the buffers in L2;
 * each task reads the weights again, which at FAST_FUSED_WEIGHTS or less
 * come from cache. */
#define FAST_FUSED_BYTES ((size_t)512 << 10)

static atomic_size_t fused_limit = FAST_FUSED_WEIGHTS;

void fast_set_fused_limit(size_t bytes)
{
	atomic_store(&fused_limit, bytes);
}

static int plan_fused(struct fast_plan *p)
{
	int64_t mr = gemm_best()->mr;
	size_t cap = 0;
	int gi;

	for (gi = 0; gi < p->ng; gi++) {
		const struct group *g = &p->g[gi];
		int64_t tiles = p->a.n * g->nr * g->nc, t0, n,
		        chunk = (int64_t)(FAST_FUSED_BYTES / sizeof(float) / tile_floats(p, g)) /
		                mr * mr;
		size_t prods = (size_t)(schemes[g->sr].t * schemes[g->sc].t);

		if (chunk < mr)
			chunk = mr;
		for (t0 = 0; t0 < tiles; t0 += n) {
			n = tiles - t0 < chunk ? tiles - t0 : chunk;
			if (push_seg(p, &cap,
			             (struct seg){ gi, t0, t0 + n, 0,
			                           prods * (size_t)n * (size_t)p->a.c }) < 0)
				return -ENOMEM;
			if ((size_t)n * tile_floats(p, g) > p->floats)
				p->floats = (size_t)n * tile_floats(p, g);
		}
	}
	return 0;
}

static int plan_groups(struct fast_plan *p, struct fast_weights *fw, char *err)
{
	const struct fast_args *a = &p->a;
	size_t own = 0;
	int sr, sc, i;

	for (sr = 0; sr < FAST_NSCHEMES; sr++)
		for (sc = 0; sc < FAST_NSCHEMES; sc++)
			if (p->rows.n[sr] > 0 && p->cols.n[sc] > 0) {
				struct group *g = &p->g[p->ng++];

				g->sr = sr;
				g->sc = sc;
				g->nr = p->rows.n[sr];
				g->nc = p->cols.n[sc];
				own += pair_bytes(sr, sc, a->c, a->k);
				if (tile_floats(p, g) * sizeof(float) > FAST_STAGE_BYTES)
					return err_set(err, -E2BIG,
					               "one tile would pass the stage buffer");
			}
	if (fw == NULL && own > FAST_INLINE_MAX_BYTES)
		return err_set(err, -E2BIG, "transformed filters would take %zu MiB", own >> 20);
	if (fw == NULL) {
		p->own = own; /* transformed when the plan runs (fast_plan_run) */
	} else {
		for (i = 0; i < p->ng; i++) {
			int rc;

			p->g[i].u = weights_get(fw, p->g[i].sr, p->g[i].sc, &rc);
			if (p->g[i].u == NULL)
				return err_set(
				        err, rc,
				        rc == -ECANCELED ? "cancelled"
				        : rc == -ENOMEM
				                ? "out of memory"
				                : "transformed filters would pass the budget");
		}
	}
	p->fused = own <= atomic_load(&fused_limit);
	if ((p->fused ? plan_fused(p) : plan_stages(p)) < 0)
		return err_set(err, -ENOMEM, "out of memory");
	return 0;
}

int fast_plan_new(struct fast_plan **out, const struct fast_args *a, struct fast_weights *fw,
                  char *err)
{
	struct fast_plan *p;
	int rc, rows, cols;

	*out = NULL;
	p = calloc(1, sizeof(*p));
	if (p == NULL)
		return err_set(err, -ENOMEM, "out of memory");
	p->a = *a;
	p->wide_in = wide_for(a->c);
	p->wide_out = wide_for(a->k);
	plan_specials(a, fw == NULL, &rows, &cols);
	if (axis_new(a->h, a->oh, a->rh, a->pt, rows, &p->rows) < 0 ||
	    axis_new(a->w, a->ow, a->rw, a->pl, cols, &p->cols) < 0) {
		rc = err_set(err, -ENOMEM, "out of memory");
		goto fail;
	}
	rc = plan_groups(p, fw, err);
	if (rc < 0)
		goto fail;
	*out = p;
	return 0;
fail:
	fast_plan_free(p);
	return rc;
}

void fast_plan_free(struct fast_plan *p)
{
	if (p == NULL)
		return;
	axis_free(&p->rows);
	axis_free(&p->cols);
	free(p->segs);
	free(p->stages);
	free(p);
}

/* ---- run ---- */

/* Each scheme pair gets its own copy of the transforms, the schemes'
 * matrices constant and the loops unrolled in it.  Sanitizer builds
 * instrument every operation of those copies (minutes of compiling): they
 * run one copy instead, the same code with the schemes read at run time. */
#if defined(__SANITIZE_ADDRESS__)
#define FAST_SPECIALISE 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FAST_SPECIALISE 0
#endif
#endif
#ifndef FAST_SPECIALISE
#define FAST_SPECIALISE 1
#endif
#if FAST_SPECIALISE
#define UNROLL _Pragma("GCC unroll 6")
#else
#define UNROLL
#endif

/* The vector helpers are static and inlined: no ABI crosses them. */
#if defined(__clang__)
#pragma clang diagnostic ignored "-Wpsabi"
#elif defined(__GNUC__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define FAST_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define FAST_CLONES
#endif
#define INLINE static inline __attribute__((always_inline))

/* The tile's input rows: a pointer per grid value read, NULL outside. */
INLINE void gather(const struct fast_args *a, const struct scheme *sr, const struct scheme *sc,
                   const struct atile *tr, const struct atile *tc, int64_t n, const float *in,
                   const float *src[TMAX][TMAX])
{
	int q, s;

	for (q = 0; q < sr->nin; q++) {
		int64_t jr = tr->j + q;

		for (s = 0; s < sc->nin; s++) {
			int64_t jc = tc->j + s;

			src[q][s] = jr >= 0 && jr < tr->lb && jc >= 0 && jc < tc->lb
			                    ? in + ((n * a->h + tr->b + jr * a->rh) * a->w + tc->b +
			                            jc * a->rw) *
			                                      a->c
			                    : NULL;
		}
	}
}

/* A range of tiles of one group through one transform. */
struct tile_range {
	const struct fast_plan *p;
	const struct seg *sg;
	int64_t t0, t1;
	const float *in;
	float *buf, *out;
};

#define TILE_LOOP(body)                                                                            \
	do {                                                                                       \
		const struct group *g_ = &r->p->g[r->sg->g];                                       \
		int64_t t_, cnt_ = r->sg->t1 - r->sg->t0;                                          \
		for (t_ = r->t0; t_ < r->t1; t_++) {                                               \
			int64_t n_ = t_ / (g_->nr * g_->nc), ir_ = t_ / g_->nc % g_->nr,           \
			        ic_ = t_ % g_->nc, i_ = t_ - r->sg->t0;                            \
			const struct atile *tr_ = &r->p->rows.t[g_->sr][ir_],                      \
			                   *tc_ = &r->p->cols.t[g_->sc][ic_];                      \
			body;                                                                      \
		}                                                                                  \
		(void)cnt_;                                                                        \
	} while (0)

typedef void (*tile_fn)(const struct tile_range *r);

/* Each width's transforms: 8 floats a vector (x86-64-v3 and portable
 * clones) and, on x86-64, 16 for processors with AVX-512, used when the
 * channels the transform runs over come in sixteens. */
#define FT_VL      VL
#define FT_NAME(x) x##_8
#define FT_ATTR    FAST_CLONES
#include "fast_tx.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && FAST_SPECIALISE
#define FAST_WIDE  1
#define FT_VL      16
#define FT_NAME(x) x##_16
#define FT_ATTR    __attribute__((target("arch=x86-64-v4")))
#include "fast_tx.h"
#else
#define FAST_WIDE 0
#endif

/* Do the transforms over n channels run 16 floats a vector? */
static int wide_for(int64_t n)
{
#if FAST_WIDE
	return n % 16 == 0 && __builtin_cpu_supports("x86-64-v4");
#else
	(void)n;
	return 0;
#endif
}

/* Group g's input (out 0) or output (out 1) transform. */
static tile_fn tile_fn_of(const struct fast_plan *p, int out, const struct group *g)
{
#if FAST_WIDE
	if (out ? p->wide_out : p->wide_in)
		return (out ? out_fns_16 : in_fns_16)[g->sr][g->sc];
#endif
#if FAST_SPECIALISE
	(void)p;
	return (out ? out_fns_8 : in_fns_8)[g->sr][g->sc];
#else
	(void)p;
	(void)g;
	return out ? out_any_8 : in_any_8;
#endif
}

struct stage_run {
	const struct fast_plan *p;
	const struct stage *st;
	const float *in;
	float *buf, *out;
	int output;                                    /* the tile pass is the output transform */
	const float *u[FAST_NSCHEMES * FAST_NSCHEMES]; /* each group's weights */
};

/* Tile task i of a stage: FAST_TILES_PER_TASK tiles of one segment. */
static void tile_task(void *arg, size_t i, void *scratch)
{
	const struct stage_run *sr = arg;
	size_t k;

	(void)scratch;
	for (k = sr->st->seg0; k < sr->st->seg0 + sr->st->nseg; k++) {
		const struct seg *sg = &sr->p->segs[k];
		size_t n =
		        (size_t)(sg->t1 - sg->t0 + FAST_TILES_PER_TASK - 1) / FAST_TILES_PER_TASK;

		if (i < n) {
			const struct group *g = &sr->p->g[sg->g];
			struct tile_range r = {
				sr->p,  sg,     sg->t0 + (int64_t)i * FAST_TILES_PER_TASK,
				0,      sr->in, sr->buf,
				sr->out
			};

			r.t1 = r.t0 + FAST_TILES_PER_TASK < sg->t1 ? r.t0 + FAST_TILES_PER_TASK
			                                           : sg->t1;
			tile_fn_of(sr->p, sr->output, g)(&r);
			return;
		}
		i -= n;
	}
}

/* Product i of a segment whose transformed input and products are at buf
 * + sg->v and buf + sg->m: one GEMM over its tiles, which reads the
 * weights once (a GEMM in runs of rows would read them once a run) and
 * looks at the cancellation flag between blocks of GEMM_KC channels. */
static void seg_product(const struct stage_run *sr, const struct seg *sg, size_t i, float *buf)
{
	const struct fast_args *a = &sr->p->a;
	int64_t cnt = sg->t1 - sg->t0;
	const float *v = buf + sg->v + (int64_t)i * cnt * a->c,
	            *u = sr->u[sg->g] + (int64_t)i * (int64_t)prod_floats(a->c, a->k);
	float *m = buf + sg->m + (int64_t)i * cnt * a->k;

	gemm_run(gemm_best(), cnt, a->k, a->c, v, a->c, u, m, a->k);
}

/* GEMM task i of a stage: one product of one segment, every tile. */
static void gemm_task(void *arg, size_t i, void *scratch)
{
	const struct stage_run *sr = arg;
	size_t k;

	(void)scratch;
	/* The stage's last segments first: groups come in scheme order, so
	 * the ones of the longest schemes, whose products take longest, are
	 * last, and the workers' final tasks should be short. */
	for (k = sr->st->seg0 + sr->st->nseg; k-- > sr->st->seg0;) {
		const struct seg *sg = &sr->p->segs[k];
		const struct group *g = &sr->p->g[sg->g];
		size_t prods = (size_t)(schemes[g->sr].t * schemes[g->sc].t);

		if (i < prods) {
			seg_product(sr, sg, i, sr->buf);
			return;
		}
		i -= prods;
	}
}

/* Fused task i: segment i through the input transforms, its products and
 * the output transforms, in scratch. */
static void fused_task(void *arg, size_t i, void *scratch)
{
	const struct stage_run *sr = arg;
	const struct seg *sg = &sr->p->segs[i];
	const struct group *g = &sr->p->g[sg->g];
	struct tile_range r = { sr->p, sg, sg->t0, sg->t1, sr->in, scratch, sr->out };
	size_t prods = (size_t)(schemes[g->sr].t * schemes[g->sc].t), j;

	tile_fn_of(sr->p, 0, g)(&r);
	for (j = 0; j < prods; j++)
		seg_product(sr, sg, j, scratch);
	if (!par_cancelled())
		tile_fn_of(sr->p, 1, g)(&r);
}

/* Inline filters: the groups' weights, transformed for this run into own
 * (freed by the caller); the peak is one layer's at a time. */
static int inline_weights(const struct fast_plan *p, struct stage_run *sr, float **own)
{
	float *u;
	int i, rc;

	*own = u = calloc(1, p->own);
	if (u == NULL)
		return -ENOMEM;
	for (i = 0; i < p->ng; i++) {
		rc = transform_weights(p->a.filters, p->a.c, p->a.k, p->g[i].sr, p->g[i].sc, u);
		if (rc < 0)
			return rc;
		sr->u[i] = u;
		u += pair_bytes(p->g[i].sr, p->g[i].sc, p->a.c, p->a.k) / sizeof(float);
	}
	return 0;
}

/* Each thread keeps its stage buffer for the next run, mapped apart from
 * malloc: a fresh one of tens of MiB each run cost thousands of page faults
 * (measured: 20 000 a pass over the bench cases, up to a third of the OS8
 * head's time, depending on what glibc had done with earlier requests'
 * memory).  At most FAST_STAGE_BYTES a thread; unmapped when it exits. */
struct stage_buf {
	void *data;
	size_t bytes;
};

static pthread_key_t buf_key;
static pthread_once_t buf_once = PTHREAD_ONCE_INIT;
static int buf_key_ok;

static void buf_free(void *arg)
{
	struct stage_buf *b = arg;

	if (b->data != NULL)
		munmap(b->data, b->bytes);
	free(b);
}

static void buf_key_make(void)
{
	buf_key_ok = pthread_key_create(&buf_key, buf_free) == 0;
}

/* This thread's buffer of at least bytes, or NULL (the caller allocates
 * one for the run). */
static float *stage_buffer(size_t bytes)
{
	struct stage_buf *b;

	pthread_once(&buf_once, buf_key_make);
	if (!buf_key_ok)
		return NULL;
	b = pthread_getspecific(buf_key);
	if (b == NULL) {
		b = calloc(1, sizeof(*b));
		if (b == NULL || pthread_setspecific(buf_key, b) != 0) {
			free(b);
			return NULL;
		}
	}
	if (b->bytes < bytes) {
		void *m = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
		               0);

		if (m == MAP_FAILED)
			return NULL;
		if (b->data != NULL)
			munmap(b->data, b->bytes);
		b->data = m;
		b->bytes = bytes;
	}
	return b->data;
}

int fast_plan_run(const struct fast_plan *p, const float *in, float *out,
                  const struct par_runner *runner)
{
	struct stage_run sr = { p, NULL, in, NULL, out, 0, { NULL } };
	size_t i, bytes = p->floats ? p->floats * sizeof(float) : 1;
	float *own = NULL, *fresh = NULL;
	int rc = 0;

	for (i = 0; i < (size_t)p->ng; i++)
		sr.u[i] = p->g[i].u;
	if (p->own > 0 && (rc = inline_weights(p, &sr, &own)) < 0) {
		free(own);
		return rc;
	}
	if (p->fused) {
		rc = par_run(runner, p->nsegs, bytes, fused_task, &sr);
		free(own);
		return rc;
	}
	sr.buf = stage_buffer(bytes);
	if (sr.buf == NULL)
		sr.buf = fresh = malloc(bytes);
	if (sr.buf == NULL) {
		free(own);
		return -ENOMEM;
	}
	for (i = 0; i < p->nstages && rc == 0; i++) {
		sr.st = &p->stages[i];
		sr.output = 0;
		rc = par_run(runner, sr.st->tile_tasks, 64, tile_task, &sr);
		if (rc == 0)
			rc = par_run(runner, sr.st->gemm_tasks, 64, gemm_task, &sr);
		sr.output = 1;
		if (rc == 0)
			rc = par_run(runner, sr.st->tile_tasks, 64, tile_task, &sr);
	}
	free(fresh);
	free(own);
	return rc;
}

/* SPDX-License-Identifier: MIT */
/* gemm.h - C = A . B with B packed once, for the fast path's products.
 *
 * The fast path multiplies each request's transformed input [tiles x C]
 * by constant transformed weights [C x K].  OpenBLAS copies B into its
 * own panel layout on every call, which at batch 1 (a few hundred tiles)
 * costs a fifth of the layer's time.  Here B is kept in that layout from
 * the start: panels of nr columns, each [C][nr] (the last zero-padded),
 * and a register-blocked kernel reads A in place.  The padding columns'
 * results are dropped, but they are read: zero them.
 *
 *	const struct gemm_kernel *g = gemm_best();
 *	float *bp = malloc(gemm_packed_floats(g, k, n) * sizeof(float));
 *	bp[gemm_packed_at(g->nr, k, i, j)] = b[i][j];   // for every i, j
 *	gemm_run(g, m, n, k, a, lda, bp, c, ldc);
 *
 * Sums run over blocks of GEMM_KC rows of B, each block added to C apart:
 * float rounding then grows with sqrt(GEMM_KC), not sqrt(k), which the fast
 * path's output transforms would amplify.
 */
#ifndef ATROUSD_GEMM_H
#define ATROUSD_GEMM_H

#include <stddef.h>
#include <stdint.h>

#define GEMM_KC    128 /* rows of B summed apart */
#define GEMM_PANEL 16  /* columns of B per packed panel */

struct gemm_kernel {
	const char *name; /* "avx512", "avx2" or "generic" */
	int mr, nr;       /* rows and columns of C per register block */
	/* C's mr x nr tile (+)= A's rows . kc rows of B's panels from b (the
	 * next panel pstride floats on); full-size sums, the ones that
	 * exist stored. */
	void (*block)(const float *a, int64_t lda, const float *b, int64_t pstride, int64_t kc,
	              float *c, int64_t ldc, int mr, int nr, int add);
};

/* The fastest kernel this processor runs (chosen once per process). */
const struct gemm_kernel *gemm_best(void);

/* Every kernel this processor runs, best first; NULL-terminated. */
const struct gemm_kernel *const *gemm_kernels(void);

/* Floats of B [k x n] packed. */
static inline size_t gemm_packed_floats(int64_t k, int64_t n)
{
	return (size_t)((n + GEMM_PANEL - 1) / GEMM_PANEL * GEMM_PANEL) * (size_t)k;
}

/* Where B[i][j] of a [k x n] matrix lives in its packing. */
static inline int64_t gemm_packed_at(int64_t k, int64_t i, int64_t j)
{
	return j / GEMM_PANEL * k * GEMM_PANEL + i * GEMM_PANEL + j % GEMM_PANEL;
}

/* C [m x n] (row stride ldc) = A [m x k] (row stride lda) . B packed.
 * C is written, not added to.  Between blocks of GEMM_KC rows of B the
 * cancellation flag (par.h) is looked at: once it is raised, gemm_run
 * returns and C holds garbage. */
void gemm_run(const struct gemm_kernel *g, int64_t m, int64_t n, int64_t k, const float *a,
              int64_t lda, const float *bp, float *c, int64_t ldc);

#endif

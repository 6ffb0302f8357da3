/* SPDX-License-Identifier: MIT */
/* gemm.c - register-blocked C = A . B over a B packed in column panels.
 *
 * A block computes an mr x nr tile of C (nr: one or two panels) over kc
 * rows of B: the tile's sums stay in registers, each step broadcasts one
 * value of each of A's rows and multiplies it by one row of the panels.
 * gemm_run walks B's blocks of GEMM_KC rows; in each, GEMM_MC rows of A
 * at a time (they stay in L2) pass every column block (whose kc x nr
 * floats stay in L1), and each block's sums are added to C.  Tiles at the
 * edges are computed whole, rows of A past the last repeat it, and only
 * the results that exist are stored.
 */
#include "autoconfig.h"

#include <pthread.h>
#include <string.h>

#include "gemm.h"
#include "par.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define GEMM_X86 1
#endif

#define MRMAX   6
#define NRMAX   32
#define GEMM_MC 192 /* rows of A per pass over the column blocks (a multiple of every mr) */

/* C's tile from sums held in t (row stride NRMAX): the mr x nr that exist.
 * Inlined: a call from the AVX kernels would leave the upper halves of the
 * vector registers dirty for the SSE code after them. */
static inline __attribute__((always_inline)) void store_tile(const float *t, float *c, int64_t ldc,
                                                             int mr, int nr, int add)
{
	int i, j;

	for (i = 0; i < mr; i++)
		for (j = 0; j < nr; j++)
			c[i * ldc + j] = add ? c[i * ldc + j] + t[i * NRMAX + j] : t[i * NRMAX + j];
}

/* Rows of A, the ones past mr repeating the last (their sums are dropped). */
static inline __attribute__((always_inline)) void a_rows(const float *a, int64_t lda, int mr, int n,
                                                         const float **rows)
{
	int i;

	for (i = 0; i < n; i++)
		rows[i] = a + (i < mr ? i : mr - 1) * lda;
}

/* The kernels keep their sums in named variables (s<row><half>): an array
 * of them, indexed in a loop, was kept in memory by GCC and written back
 * on every step (the AVX2 kernel ran at 40 % of its speed). */
#define ROWS6(X) X(0) X(1) X(2) X(3) X(4) X(5)
#define ROWS2(X) X(0) X(1)

/* Portable: 2 x 16 in eight 4-wide sums (GCC vectors; with the sixteen
 * registers of SSE2, more rows would spill). */
typedef float v4 __attribute__((vector_size(16)));

static inline v4 v4_load(const float *p)
{
	v4 v;

	memcpy(&v, p, sizeof(v));
	return v;
}

static void block_generic(const float *a, int64_t lda, const float *b, int64_t pstride, int64_t kc,
                          float *c, int64_t ldc, int mr, int nr, int add)
{
	float t[MRMAX * NRMAX];
	const float *r[2];
	int64_t p;
#define G_DECL(i) v4 s##i##0 = { 0 }, s##i##1 = { 0 }, s##i##2 = { 0 }, s##i##3 = { 0 };
#define G_STEP(i)                                                                                  \
	{                                                                                          \
		float x = r[i][p];                                                                 \
		s##i##0 += x * b0;                                                                 \
		s##i##1 += x * b1;                                                                 \
		s##i##2 += x * b2;                                                                 \
		s##i##3 += x * b3;                                                                 \
	}
#define G_KEEP(i)                                                                                  \
	memcpy(t + i * NRMAX, &s##i##0, 16);                                                       \
	memcpy(t + i * NRMAX + 4, &s##i##1, 16);                                                   \
	memcpy(t + i * NRMAX + 8, &s##i##2, 16);                                                   \
	memcpy(t + i * NRMAX + 12, &s##i##3, 16);
	ROWS2(G_DECL)

	(void)pstride;
	a_rows(a, lda, mr, 2, r);
	for (p = 0; p < kc; p++, b += 16) {
		v4 b0 = v4_load(b), b1 = v4_load(b + 4), b2 = v4_load(b + 8), b3 = v4_load(b + 12);

		ROWS2(G_STEP)
	}
	ROWS2(G_KEEP)
	store_tile(t, c, ldc, mr, nr, add);
}

#ifdef GEMM_X86
/* 6 x 16 in twelve 8-wide sums. */
#define A2_DECL(i) __m256 s##i##0 = _mm256_setzero_ps(), s##i##1 = _mm256_setzero_ps();
#define A2_STEP(i)                                                                                 \
	{                                                                                          \
		__m256 x = _mm256_broadcast_ss(r[i] + p);                                          \
		s##i##0 = _mm256_fmadd_ps(x, b0, s##i##0);                                         \
		s##i##1 = _mm256_fmadd_ps(x, b1, s##i##1);                                         \
	}
#define A2_STORE(i)                                                                                \
	if (add) {                                                                                 \
		s##i##0 = _mm256_add_ps(_mm256_loadu_ps(c + i * ldc), s##i##0);                    \
		s##i##1 = _mm256_add_ps(_mm256_loadu_ps(c + i * ldc + 8), s##i##1);                \
	}                                                                                          \
	_mm256_storeu_ps(c + i * ldc, s##i##0);                                                    \
	_mm256_storeu_ps(c + i * ldc + 8, s##i##1);
#define A2_KEEP(i)                                                                                 \
	_mm256_storeu_ps(t + i * NRMAX, s##i##0);                                                  \
	_mm256_storeu_ps(t + i * NRMAX + 8, s##i##1);

__attribute__((target("avx2,fma"))) static void block_avx2(const float *a, int64_t lda,
                                                           const float *b, int64_t pstride,
                                                           int64_t kc, float *c, int64_t ldc,
                                                           int mr, int nr, int add)
{
	const float *r[6];
	int64_t p;
	ROWS6(A2_DECL)

	(void)pstride;
	a_rows(a, lda, mr, 6, r);
	for (p = 0; p < kc; p++, b += 16) {
		__m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);

		ROWS6(A2_STEP)
	}
	if (mr == 6 && nr == 16) {
		ROWS6(A2_STORE)
	} else {
		float t[MRMAX * NRMAX];

		ROWS6(A2_KEEP)
		store_tile(t, c, ldc, mr, nr, add);
	}
}

/* 6 x 32 (two panels) in twelve 16-wide sums. */
#define A5_DECL(i) __m512 s##i##0 = _mm512_setzero_ps(), s##i##1 = _mm512_setzero_ps();
#define A5_STEP(i)                                                                                 \
	{                                                                                          \
		__m512 x = _mm512_set1_ps(r[i][p]);                                                \
		s##i##0 = _mm512_fmadd_ps(x, b0, s##i##0);                                         \
		s##i##1 = _mm512_fmadd_ps(x, b1, s##i##1);                                         \
	}
#define A5_STORE(i)                                                                                \
	if (add) {                                                                                 \
		s##i##0 = _mm512_add_ps(_mm512_loadu_ps(c + i * ldc), s##i##0);                    \
		s##i##1 = _mm512_add_ps(_mm512_loadu_ps(c + i * ldc + 16), s##i##1);               \
	}                                                                                          \
	_mm512_storeu_ps(c + i * ldc, s##i##0);                                                    \
	_mm512_storeu_ps(c + i * ldc + 16, s##i##1);
#define A5_KEEP(i)                                                                                 \
	_mm512_storeu_ps(t + i * NRMAX, s##i##0);                                                  \
	_mm512_storeu_ps(t + i * NRMAX + 16, s##i##1);

__attribute__((target("avx512f"))) static void block_avx512(const float *a, int64_t lda,
                                                            const float *b, int64_t pstride,
                                                            int64_t kc, float *c, int64_t ldc,
                                                            int mr, int nr, int add)
{
	/* a lone last panel is read twice, its second sums dropped */
	const float *b2 = nr > 16 ? b + pstride : b;
	const float *r[6];
	int64_t p;
	ROWS6(A5_DECL)

	a_rows(a, lda, mr, 6, r);
	for (p = 0; p < kc; p++, b += 16, b2 += 16) {
		__m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b2);

		ROWS6(A5_STEP)
	}
	if (mr == 6 && nr == 32) {
		ROWS6(A5_STORE)
	} else {
		float t[MRMAX * NRMAX];

		ROWS6(A5_KEEP)
		store_tile(t, c, ldc, mr, nr, add);
	}
}

static const struct gemm_kernel k_avx512 = { "avx512", 6, 32, block_avx512 };
static const struct gemm_kernel k_avx2 = { "avx2", 6, 16, block_avx2 };
#endif
static const struct gemm_kernel k_generic = { "generic", 2, 16, block_generic };

static const struct gemm_kernel *kernels[4];
static pthread_once_t kernels_once = PTHREAD_ONCE_INIT;

static void kernels_find(void)
{
	int i = 0;

#ifdef GEMM_X86
	__builtin_cpu_init();
	if (__builtin_cpu_supports("avx512f"))
		kernels[i++] = &k_avx512;
	if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
		kernels[i++] = &k_avx2;
#endif
	kernels[i] = &k_generic;
}

const struct gemm_kernel *const *gemm_kernels(void)
{
	pthread_once(&kernels_once, kernels_find);
	return kernels;
}

const struct gemm_kernel *gemm_best(void)
{
	return gemm_kernels()[0];
}

void gemm_run(const struct gemm_kernel *g, int64_t m, int64_t n, int64_t k, const float *a,
              int64_t lda, const float *bp, float *c, int64_t ldc)
{
	int64_t k0, m0, j0, i0;

	if (k <= 0) {
		for (i0 = 0; i0 < m; i0++)
			memset(c + i0 * ldc, 0, (size_t)(n > 0 ? n : 0) * sizeof(float));
		return;
	}
	for (k0 = 0; k0 < k; k0 += GEMM_KC) {
		int64_t kc = k - k0 < GEMM_KC ? k - k0 : GEMM_KC;

		if (par_cancelled())
			return; /* C is garbage, and nobody reads it */

		/* GEMM_MC rows of A at a time stay in L2 while every column
		 * block passes them */
		for (m0 = 0; m0 < m; m0 += GEMM_MC) {
			int64_t m1 = m - m0 < GEMM_MC ? m : m0 + GEMM_MC;

			for (j0 = 0; j0 < n; j0 += g->nr) {
				/* panel j0 / GEMM_PANEL starts at j0 * k; its block
				 * k0 rows in */
				const float *b = bp + j0 * k + k0 * GEMM_PANEL;
				int nr = n - j0 < g->nr ? (int)(n - j0) : g->nr;

				for (i0 = m0; i0 < m1; i0 += g->mr)
					g->block(a + i0 * lda + k0, lda, b, k * GEMM_PANEL, kc,
					         c + i0 * ldc + j0, ldc,
					         m1 - i0 < g->mr ? (int)(m1 - i0) : g->mr, nr,
					         k0 > 0);
			}
		}
	}
}

/* SPDX-License-Identifier: MIT */
/* fast_tx.h - minimal filtering's input and output transforms for one
 * vector width.
 *
 * Not a header of its own: fast.c includes it once per width, after
 * defining
 *	FT_VL		floats per vector (8 or 16)
 *	FT_NAME(x)	the name of x for this width
 *	FT_ATTR		attributes of the entry points (target or clones)
 * which it undefines again.  It defines FT_NAME(in_fns) and
 * FT_NAME(out_fns), the transforms of each scheme pair (or, in sanitizer
 * builds, FT_NAME(in_any) and FT_NAME(out_any) for all of them).
 *
 * The transforms work on FT_VL channels at a time, in registers: a tile's
 * inputs (or products) for those channels, both 1-D transforms, one store
 * per result.
 */

typedef float FT_NAME(vf) __attribute__((vector_size(FT_VL * sizeof(float))));
typedef int FT_NAME(vi) __attribute__((vector_size(FT_VL * sizeof(int))));

/* The code below names its types and helpers plainly. */
#define vf          FT_NAME(vf)
#define vi          FT_NAME(vi)
#define vload       FT_NAME(vload)
#define vstore      FT_NAME(vstore)
#define vcomb       FT_NAME(vcomb)
#define input_tile  FT_NAME(input_tile)
#define output_tile FT_NAME(output_tile)

INLINE vf vload(const float *p, int n)
{
	vf v = { 0 };

	memcpy(&v, p, (size_t)n * sizeof(float));
	return v;
}

INLINE void vstore(float *p, vf v, int n)
{
	memcpy(p, &v, (size_t)n * sizeof(float));
}

/* y = sum_i coef[i] * x[i * stride] over nonzero coefficients. */
INLINE vf vcomb(const float *coef, const vf *x, int n, int stride)
{
	vf y = { 0 };
	int i;

	UNROLL
	for (i = 0; i < n; i++)
		if (coef[i] != 0)
			y += coef[i] * x[i * stride];
	return y;
}

/* Input transform of one tile: V[i][j] at v + (i * T_c + j) * ld = BT_r X
 * BT_c^T, over FT_VL channels at a time. */
INLINE void input_tile(const struct fast_args *a, const struct scheme *sr, const struct scheme *sc,
                       const struct atile *tr, const struct atile *tc, int64_t n, const float *in,
                       float *v, int64_t ld)
{
	const float *src[TMAX][TMAX];
	vf x[TMAX][TMAX], t[TMAX][TMAX];
	int64_t c0;
	int q, s, i, j;

	gather(a, sr, sc, tr, tc, n, in, src);
	for (c0 = 0; c0 < a->c; c0 += FT_VL) {
		int nv = a->c - c0 < FT_VL ? (int)(a->c - c0) : FT_VL;

		UNROLL
		for (q = 0; q < sr->nin; q++)
			UNROLL
		for (s = 0; s < sc->nin; s++)
			x[q][s] = src[q][s] == NULL ? (vf){ 0 }
			          : nv == FT_VL     ? vload(src[q][s] + c0, FT_VL)
			                            : vload(src[q][s] + c0, nv);
		UNROLL
		for (i = 0; i < sr->t; i++)
			UNROLL
		for (s = 0; s < sc->nin; s++)
			t[i][s] = vcomb(sr->bt[i], &x[0][s], sr->nin, TMAX);
		UNROLL
		for (i = 0; i < sr->t; i++)
			UNROLL
		for (j = 0; j < sc->t; j++) {
			vf r = vcomb(sc->bt[j], t[i], sc->nin, 1);

			if (nv == FT_VL)
				vstore(v + (i * sc->t + j) * ld + c0, r, FT_VL);
			else
				vstore(v + (i * sc->t + j) * ld + c0, r, nv);
		}
	}
}

/* Output transform of one tile: Y = AT_r M AT_c^T, bias and activation
 * (ReLU keeps NaN), stored at the tile's outputs that exist. */
INLINE void output_tile(const struct fast_args *a, const struct scheme *sr, const struct scheme *sc,
                        const struct atile *tr, const struct atile *tc, int64_t n, const float *m,
                        int64_t ld, float *out)
{
	const vf zero = { 0 };
	vf x[TMAX], s[TMAX][MMAX];
	int64_t k0;
	int u, v, i, j;

	for (k0 = 0; k0 < a->k; k0 += FT_VL) {
		int nv = a->k - k0 < FT_VL ? (int)(a->k - k0) : FT_VL;
		vf b = a->bias == NULL ? zero : vload(a->bias + k0, nv);

		/* Row by row, the columns' transform first: a row of products
		 * and the tile's m columns are all that is live (F(4,3) in
		 * AVX-512: 6 + 24 of the 32 registers, where the whole tile of
		 * 36 spilled).  v runs to the scheme's m, a constant, so that
		 * the rows of AT are too (their zero terms vanish). */
		UNROLL
		for (i = 0; i < sr->t; i++) {
			UNROLL
			for (j = 0; j < sc->t; j++)
				x[j] = nv == FT_VL ? vload(m + (i * sc->t + j) * ld + k0, FT_VL)
				                   : vload(m + (i * sc->t + j) * ld + k0, nv);
			UNROLL
			for (v = 0; v < sc->m; v++)
				s[i][v] = vcomb(sc->at[v], x, sc->t, 1);
		}
		/* outputs past the tile's len are not stored */
		UNROLL
		for (u = 0; u < sr->m; u++) {
			if (u >= tr->len)
				break;
			UNROLL
			for (v = 0; v < sc->m; v++) {
				float *dst;
				vf y;

				if (v >= tc->len)
					break;
				dst = out +
				      ((n * a->oh + tr->o + u * a->rh) * a->ow + tc->o +
				       v * a->rw) *
				              a->out_stride +
				      a->out_off + k0;
				y = vcomb(sr->at[u], &s[0][v], sr->t, MMAX) + b;

				if (a->act == CONV_ACT_RELU)
					y = (vf)((vi)y & ~(vi)(y < zero));
				if (nv == FT_VL)
					vstore(dst, y, FT_VL);
				else
					vstore(dst, y, nv);
			}
		}
	}
}

#if FAST_SPECIALISE
#define PAIR_FN(A, B)                                                                              \
	FT_ATTR static void FT_NAME(in_##A##_##B)(const struct tile_range *r)                      \
	{                                                                                          \
		const struct fast_args *a = &r->p->a;                                              \
		TILE_LOOP(input_tile(a, &schemes[FAST_##A], &schemes[FAST_##B], tr_, tc_, n_,      \
		                     r->in, r->buf + r->sg->v + i_ * a->c, cnt_ * a->c));          \
	}                                                                                          \
	FT_ATTR static void FT_NAME(out_##A##_##B)(const struct tile_range *r)                     \
	{                                                                                          \
		const struct fast_args *a = &r->p->a;                                              \
		TILE_LOOP(output_tile(a, &schemes[FAST_##A], &schemes[FAST_##B], tr_, tc_, n_,     \
		                      r->buf + r->sg->m + i_ * a->k, cnt_ * a->k, r->out));        \
	}

#define ROW_FNS(A) PAIR_FN(A, S1) PAIR_FN(A, S2) PAIR_FN(A, F2) PAIR_FN(A, F3) PAIR_FN(A, F4)
ROW_FNS(S1)
ROW_FNS(S2)
ROW_FNS(F2)
ROW_FNS(F3)
ROW_FNS(F4)

#define ROW_ENTRY(A, pre)                                                                          \
	{                                                                                          \
		FT_NAME(pre##A##_S1), FT_NAME(pre##A##_S2), FT_NAME(pre##A##_F2),                  \
		        FT_NAME(pre##A##_F3), FT_NAME(pre##A##_F4)                                 \
	}
static const tile_fn FT_NAME(in_fns)[FAST_NSCHEMES][FAST_NSCHEMES] = {
	ROW_ENTRY(S1, in_), ROW_ENTRY(S2, in_), ROW_ENTRY(F2, in_), ROW_ENTRY(F3, in_),
	ROW_ENTRY(F4, in_)
};
static const tile_fn FT_NAME(out_fns)[FAST_NSCHEMES][FAST_NSCHEMES] = {
	ROW_ENTRY(S1, out_), ROW_ENTRY(S2, out_), ROW_ENTRY(F2, out_), ROW_ENTRY(F3, out_),
	ROW_ENTRY(F4, out_)
};
#undef ROW_ENTRY
#undef ROW_FNS
#undef PAIR_FN
#else
FT_ATTR static void FT_NAME(in_any)(const struct tile_range *r)
{
	const struct fast_args *a = &r->p->a;

	TILE_LOOP(input_tile(a, &schemes[g_->sr], &schemes[g_->sc], tr_, tc_, n_, r->in,
	                     r->buf + r->sg->v + i_ * a->c, cnt_ * a->c));
}

FT_ATTR static void FT_NAME(out_any)(const struct tile_range *r)
{
	const struct fast_args *a = &r->p->a;

	TILE_LOOP(output_tile(a, &schemes[g_->sr], &schemes[g_->sc], tr_, tc_, n_,
	                      r->buf + r->sg->m + i_ * a->k, cnt_ * a->k, r->out));
}
#endif

#undef vf
#undef vi
#undef vload
#undef vstore
#undef vcomb
#undef input_tile
#undef output_tile
#undef FT_VL
#undef FT_NAME
#undef FT_ATTR

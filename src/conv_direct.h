/* SPDX-License-Identifier: MIT */
/* conv_direct.h - the direct kernel's code for one vector width.
 *
 * Not a header of its own: conv.c includes it once per width, after
 * defining
 *	DK_VL		floats per vector (8 or 16)
 *	DK_PX, DK_NV	output pixels and vectors of output channels per block
 *	DK_NAME(x)	the name of function x for this width
 *	DK_ATTR		attributes of the entry point (target or clones)
 * which it undefines again.  The entry point is DK_NAME(direct_rows).
 *
 * DK_PX pixels of an output row by DK_NV vectors of output channels
 * accumulate in registers over the taps and input channels (the HWIO
 * weights hold, for each tap and input channel, the output channels'
 * weights side by side); bias and activation are applied in the store.
 */

typedef float DK_NAME(dvf) __attribute__((vector_size(DK_VL * sizeof(float))));
typedef int DK_NAME(dvi) __attribute__((vector_size(DK_VL * sizeof(int))));

/* One block: npx pixels (<= DK_PX) from padded row src, nv vectors of
 * output channels from k0, taps rows [ti0, ti1) (rows of padding are
 * skipped). */
static inline __attribute__((always_inline)) void
DK_NAME(direct_block)(const struct conv_plan *p, const float *src, int64_t wp, int npx, int nv,
                      int64_t k0, int64_t ti0, int64_t ti1, float *dst)
{
	typedef DK_NAME(dvf) dvf;
	typedef DK_NAME(dvi) dvi;
	const dvf zero = { 0 };
	dvf acc[DK_PX][DK_NV];
	int64_t ti, tj, ci;
	int q, v;

	for (q = 0; q < DK_PX; q++)
		for (v = 0; v < DK_NV; v++)
			acc[q][v] = zero;
	for (ti = ti0; ti < ti1; ti++)
		for (tj = 0; tj < p->kw; tj++) {
			const float *x = src + (ti * p->rh * wp + tj * p->rw) * p->c;
			const float *w = p->filters + (ti * p->kw + tj) * p->c * p->o + k0;

			for (ci = 0; ci < p->c; ci++) {
				dvf wv[DK_NV] = { 0 };

#pragma GCC unroll 4
				for (v = 0; v < nv; v++)
					memcpy(&wv[v], w + ci * p->o + v * DK_VL, sizeof(dvf));
#pragma GCC unroll 8
				for (q = 0; q < npx; q++) {
					dvf xb = zero + x[q * p->c + ci];

#pragma GCC unroll 4
					for (v = 0; v < nv; v++)
						acc[q][v] += xb * wv[v];
				}
			}
		}
	for (q = 0; q < npx; q++)
		for (v = 0; v < nv; v++) {
			dvf y = acc[q][v];

			if (p->bias != NULL) {
				dvf b;

				memcpy(&b, p->bias + k0 + v * DK_VL, sizeof(b));
				y += b;
			}
			if (p->act == CONV_ACT_RELU)
				y = (dvf)((dvi)y & ~(dvi)(y < zero));
			memcpy(dst + q * p->out_stride + v * DK_VL, &y, sizeof(y));
		}
}

/* direct_block with npx and nv constants, so that its loops unroll. */
static inline __attribute__((always_inline)) void
DK_NAME(direct_any)(const struct conv_plan *p, const float *src, int64_t wp, int npx, int nv,
                    int64_t k0, int64_t ti0, int64_t ti1, float *dst)
{
#define DK_BLOCK(np, n) DK_NAME(direct_block)(p, src, wp, np, n, k0, ti0, ti1, dst)
#define DK_NV_CASES(np)                                                                            \
	switch (nv) {                                                                              \
	case 4: DK_BLOCK(np, 4); break;                                                            \
	case 3: DK_BLOCK(np, 3); break;                                                            \
	case 2: DK_BLOCK(np, 2); break;                                                            \
	default: DK_BLOCK(np, 1); break;                                                           \
	}
	switch (npx) {
#if DK_PX >= 6
	case 6: DK_NV_CASES(6) break;
	case 5: DK_NV_CASES(5) break;
	case 4: DK_NV_CASES(4) break;
#endif
	case 3: DK_NV_CASES(3) break;
	case 2: DK_NV_CASES(2) break;
	default: DK_NV_CASES(1) break;
	}
#undef DK_NV_CASES
#undef DK_BLOCK
}

/* Output rows [r0, r1) over all images (row r: image r / oh, row r % oh). */
DK_ATTR static void DK_NAME(direct_rows)(const struct conv_plan *p, const float *pad, int64_t hp,
                                         int64_t wp, int64_t r0, int64_t r1, float *out)
{
	int64_t r, x, k0;

	for (r = r0; r < r1; r++) {
		int64_t n = r / p->oh, y = r % p->oh;
		/* taps whose row lies in the input: pt <= y + ti*rh < pt + h */
		int64_t ti0 = p->pt > y ? (p->pt - y + p->rh - 1) / p->rh : 0;
		int64_t ti1 = p->pt + p->h - y > 0 ? (p->pt + p->h - y + p->rh - 1) / p->rh : 0;

		if (ti1 > p->kh)
			ti1 = p->kh;
		for (x = 0; x < p->ow; x += DK_PX)
			for (k0 = 0; k0 < p->o; k0 += DK_NV * DK_VL) {
				const float *src = pad + ((n * hp + y) * wp + x) * p->c;
				float *dst = out + ((n * p->oh + y) * p->ow + x) * p->out_stride +
				             p->out_off + k0;
				int npx = p->ow - x < DK_PX ? (int)(p->ow - x) : DK_PX;
				int nv = (p->o - k0) / DK_VL < DK_NV ? (int)((p->o - k0) / DK_VL)
				                                     : DK_NV;

				DK_NAME(direct_any)(p, src, wp, npx, nv, k0, ti0, ti1, dst);
			}
	}
}

#undef DK_VL
#undef DK_PX
#undef DK_NV
#undef DK_NAME
#undef DK_ATTR

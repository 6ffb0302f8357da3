/* SPDX-License-Identifier: MIT */
/* ref.c - naive direct convolution in double precision. */
#include "autoconfig.h"

#include <math.h>
#include <stdlib.h>

#include "error.h"
#include "ref.h"

void ref_fill(float *v, size_t n, uint64_t seed)
{
	uint64_t s = seed * 6364136223846793005ULL + 1442695040888963407ULL;
	size_t i;

	for (i = 0; i < n; i++) {
		s ^= s << 13;
		s ^= s >> 7;
		s ^= s << 17;
		v[i] = (float)((double)(s >> 11) / (double)(1ULL << 53) * 2.0 - 1.0);
	}
}

struct tensor *ref_tensor(int rank, int64_t a, int64_t b, int64_t c, int64_t d, uint64_t seed)
{
	int64_t dim[4] = { a, b, c, d };
	struct tensor *t;
	char err[ERR_LEN];

	if (tensor_new(&t, rank, dim, err) < 0)
		return NULL;
	ref_fill(t->data, t->count, seed);
	return t;
}

int ref_atrous2d(const float *x, const int64_t xd[4], const float *f, const int64_t fd[4],
                 const float *bias, int64_t rh, int64_t rw, int same, int relu, double **out,
                 double **mag, int64_t od[4])
{
	int64_t kh_eff = (fd[0] - 1) * rh + 1, kw_eff = (fd[1] - 1) * rw + 1;
	int64_t pt = 0, pl = 0, n, y, xx, o, i, j, c;
	double *r, *m;

	od[0] = xd[0];
	od[3] = fd[3];
	if (same) {
		od[1] = xd[1];
		od[2] = xd[2];
		pt = (kh_eff - 1) / 2;
		pl = (kw_eff - 1) / 2;
	} else {
		od[1] = xd[1] - kh_eff + 1;
		od[2] = xd[2] - kw_eff + 1;
		if (od[1] < 0 || od[2] < 0)
			return -1;
	}
	r = calloc((size_t)(od[0] * od[1] * od[2] * od[3]) + 1, sizeof(double));
	m = calloc((size_t)(od[0] * od[1] * od[2] * od[3]) + 1, sizeof(double));
	for (n = 0; n < od[0]; n++)
		for (y = 0; y < od[1]; y++)
			for (xx = 0; xx < od[2]; xx++)
				for (o = 0; o < od[3]; o++) {
					double s = bias ? bias[o] : 0.0, a = fabs(s);
					size_t idx =
					        (size_t)(((n * od[1] + y) * od[2] + xx) * od[3] +
					                 o);

					for (i = 0; i < fd[0]; i++)
						for (j = 0; j < fd[1]; j++) {
							int64_t iy = y - pt + i * rh,
							        ix = xx - pl + j * rw;

							if (iy < 0 || iy >= xd[1] || ix < 0 ||
							    ix >= xd[2])
								continue;
							for (c = 0; c < xd[3]; c++) {
								double p = (double)x[((n * xd[1] +
								                       iy) * xd[2] +
								                      ix) * xd[3] +
								                     c] *
								           (double)f[((i * fd[1] +
								                       j) * fd[2] +
								                      c) * fd[3] +
								                     o];
								s += p;
								a += fabs(p);
							}
						}
					r[idx] = relu && s < 0 ? 0.0 : s;
					m[idx] = a;
				}
	*out = r;
	if (mag)
		*mag = m;
	else
		free(m);
	return 0;
}

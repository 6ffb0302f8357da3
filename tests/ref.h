/* SPDX-License-Identifier: MIT */
/* ref.h - naive references the kernels are checked against (tests only). */
#ifndef ATROUSD_REF_H
#define ATROUSD_REF_H

#include <stddef.h>
#include <stdint.h>

#include "tensor.h"

/* Direct dilated cross-correlation in double, straight from TensorFlow's
 * definition with SAME padding split floor/ceil.  Writes out[n,oh,ow,o] and,
 * when mag is not NULL, the sum of |x*w| per output (for error bounds).
 * Returns 0, or -1 when VALID would give a negative size. */
int ref_atrous2d(const float *x, const int64_t xd[4], const float *f, const int64_t fd[4],
                 const float *bias, int64_t rh, int64_t rw, int same, int relu, double **out,
                 double **mag, int64_t od[4]);

/* Fill n floats with deterministic pseudo-random values in [-1, 1). */
void ref_fill(float *v, size_t n, uint64_t seed);

/* A tensor of the first rank of dims a, b, c, d filled by ref_fill, or NULL
 * when it cannot be made. */
struct tensor *ref_tensor(int rank, int64_t a, int64_t b, int64_t c, int64_t d, uint64_t seed);

#endif

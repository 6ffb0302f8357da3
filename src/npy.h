/* SPDX-License-Identifier: MIT */
/* npy.h - NumPy .npy files: float32, C order, header versions 1.0 to 3.0.
 *
 * Reading accepts little-endian float32 ('<f4') and converts little-endian
 * float64 ('<f8') to float32, refusing values beyond float32 range.  Anything
 * else (big-endian, Fortran order, other dtypes, truncated or over-long data,
 * a header whose shape disagrees with the file size) is refused with a message.
 */
#ifndef ATROUSD_NPY_H
#define ATROUSD_NPY_H

#include <stddef.h>

#include "tensor.h"

/* Parse an in-memory .npy image into a new tensor (owned by the caller). */
int npy_parse(const void *buf, size_t len, struct tensor **out, char *err);

/* Read a .npy file into a new tensor; errors name the file. */
int npy_load(const char *path, struct tensor **out, char *err);

/* Serialise a tensor as a version 1.0 .npy image into a new malloc'd buffer. */
int npy_encode(const struct tensor *t, void **buf, size_t *len, char *err);

/* Write a tensor to path atomically (temporary file, fsync, rename); on
 * failure no file is left at path or beside it. */
int npy_save(const char *path, const struct tensor *t, char *err);

#endif

/* SPDX-License-Identifier: MIT */
/* tensor.h - float32 tensors: shape, checked size arithmetic, aligned storage.
 *
 *	struct tensor *t;
 *	int64_t dim[4] = {1, 28, 28, 3};
 *	if (tensor_new(&t, 4, dim, err) < 0) ...;   // zero-filled, 64-byte aligned
 *	t->data[tensor_index4(t, n, y, x, c)] = 1.0f;
 *	tensor_free(t);
 *
 * Activations are NHWC and filters HWIO; the tensor itself is layout-agnostic.
 */
#ifndef ATROUSD_TENSOR_H
#define ATROUSD_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#define TENSOR_MAX_RANK 8
#define TENSOR_ALIGN    64
/* Hard ceiling on elements of any one tensor (2^36 floats = 256 GiB). */
#define TENSOR_MAX_ELEMENTS ((int64_t)1 << 36)

struct tensor {
	int rank;
	int64_t dim[TENSOR_MAX_RANK];
	size_t count; /* product of dim, 0 when any dim is 0 */
	float *data;  /* TENSOR_ALIGN-aligned; NULL only when count == 0 */
	int borrowed; /* data belongs to someone else (tensor_view) */
};

/* Number of elements of a shape: -EINVAL for a negative dim, -EOVERFLOW when
 * the product overflows 64 bits, -E2BIG when it exceeds max_elements (0 means
 * TENSOR_MAX_ELEMENTS). */
int tensor_shape_count(int rank, const int64_t *dim, int64_t max_elements, size_t *count,
                       char *err);

/* Allocate a new zero-filled tensor; owned by the caller. */
int tensor_new(struct tensor **out, int rank, const int64_t *dim, char *err);

/* Allocate a new tensor without clearing its data. */
int tensor_new_uninit(struct tensor **out, int rank, const int64_t *dim, char *err);

/* A tensor over floats owned by the caller, which keeps them alive and
 * readable up to the next multiple of TENSOR_ALIGN bytes; data must be
 * TENSOR_ALIGN-aligned.  tensor_free() leaves the data alone. */
int tensor_view(struct tensor **out, int rank, const int64_t *dim, float *data, char *err);

/* A tensor that takes ownership of data, from tensor_alloc_aligned (or
 * NULL for an empty shape) and holding the shape's elements; on failure the
 * data is freed too. */
int tensor_adopt(struct tensor **out, int rank, const int64_t *dim, float *data, char *err);

/* Give t another shape of the same element count (-EINVAL otherwise). */
int tensor_reshape(struct tensor *t, int rank, const int64_t *dim, char *err);

/* A new rank-4 tensor with in's axes permuted between NCHW and NHWC:
 * to_nhwc reads in as [N,C,H,W] and writes [N,H,W,C]; else the reverse. */
int tensor_transpose_layout(const struct tensor *in, int to_nhwc, struct tensor **out, char *err);

/* Replace *t by its transposition (tensor_transpose_layout); on failure *t
 * is left as it was. */
int tensor_relayout(struct tensor **t, int to_nhwc, char *err);

/* Free a tensor; NULL is allowed. */
void tensor_free(struct tensor *t);

/* Format a shape as "[1,28,28,3]" into buf; returns buf. */
char *tensor_shape_str(int rank, const int64_t *dim, char *buf, size_t len);

/* Allocate size bytes aligned to TENSOR_ALIGN, or NULL; release with
 * tensor_release() (or free(), which keeps nothing for reuse). */
void *tensor_alloc_aligned(size_t size);

/* Free a block of tensor_alloc_aligned (NULL is allowed), keeping a large
 * one (TENSOR_CACHE_MIN or more) for the next allocation while the cache
 * has room: pages already in memory, no page faults when written again. */
#define TENSOR_CACHE_MIN ((size_t)128 << 10)
void tensor_release(void *p);

/* Total bytes the cache of large blocks may hold (0: none), default
 * TENSOR_CACHE_DEFAULT; setting it empties the cache. */
#define TENSOR_CACHE_DEFAULT ((size_t)64 << 20)
void tensor_set_cache(size_t bytes);

/* Bytes the cache holds now; tensor_cache_drop() frees them all. */
size_t tensor_cache_bytes(void);
void tensor_cache_drop(void);

/* Flat offset of element (a, b, c, d) of a rank-4 tensor. */
static inline size_t tensor_index4(const struct tensor *t, int64_t a, int64_t b, int64_t c,
                                   int64_t d)
{
	return (size_t)(((a * t->dim[1] + b) * t->dim[2] + c) * t->dim[3] + d);
}

#endif

/* SPDX-License-Identifier: MIT */
/* tensor.c - float32 tensor allocation with overflow-checked shapes. */
#include "autoconfig.h"

#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "tensor.h"

char *tensor_shape_str(int rank, const int64_t *dim, char *buf, size_t len)
{
	size_t off = 0;
	int i;

	if (len == 0)
		return buf;
	buf[0] = '\0';
	off += (size_t)snprintf(buf, len, "[");
	for (i = 0; i < rank && off < len; i++)
		off += (size_t)snprintf(buf + off, len - off, "%s%lld", i ? "," : "",
		                        (long long)dim[i]);
	if (off < len)
		snprintf(buf + off, len - off, "]");
	return buf;
}

int tensor_shape_count(int rank, const int64_t *dim, int64_t max_elements, size_t *count, char *err)
{
	char shape[160];
	int64_t n = 1;
	int zero = 0;
	int i;

	if (rank < 0 || rank > TENSOR_MAX_RANK)
		return err_set(err, -EINVAL, "rank %d is outside 0..%d", rank, TENSOR_MAX_RANK);
	for (i = 0; i < rank; i++) {
		if (dim[i] < 0)
			return err_set(err, -EINVAL, "negative dimension %lld in shape %s",
			               (long long)dim[i],
			               tensor_shape_str(rank, dim, shape, sizeof(shape)));
		if (dim[i] == 0)
			zero = 1;
	}
	if (max_elements <= 0 || max_elements > TENSOR_MAX_ELEMENTS)
		max_elements = TENSOR_MAX_ELEMENTS;
	for (i = 0; i < rank && !zero; i++) {
		if (__builtin_mul_overflow(n, dim[i], &n))
			return err_set(err, -EOVERFLOW, "shape %s: element count overflows",
			               tensor_shape_str(rank, dim, shape, sizeof(shape)));
	}
	if (!zero && n > max_elements)
		return err_set(err, -E2BIG, "shape %s has more than %lld elements",
		               tensor_shape_str(rank, dim, shape, sizeof(shape)),
		               (long long)max_elements);
	*count = zero ? 0 : (size_t)n;
	return 0;
}

/* ---- the cache of large blocks ----
 *
 * A block of tens of MiB fresh from the kernel faults once per 4 KiB page
 * when first written, and malloc gives such blocks back when they are
 * freed: every request paid for its large tensors' pages again (measured:
 * 5 300 faults and a quarter of the OS8 head's time; glibc maps blocks
 * of 128 KiB and more apart, and the small chain's 100-400 KiB layer
 * outputs faulted a tenth of its time).  Blocks of at least
 * TENSOR_CACHE_MIN bytes are kept here when freed, up to the configured
 * total, and handed out again, best fit first, for requests of at least a
 * quarter of their size. */
#define TENSOR_CACHE_SLOTS 32

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
	void *p;
	size_t size;
} cache[TENSOR_CACHE_SLOTS];
static size_t ncache;
static atomic_size_t cache_bytes, cache_limit = TENSOR_CACHE_DEFAULT;

void tensor_set_cache(size_t bytes)
{
	atomic_store(&cache_limit, bytes);
	tensor_cache_drop();
}

size_t tensor_cache_bytes(void)
{
	return atomic_load(&cache_bytes);
}

void tensor_cache_drop(void)
{
	size_t n, i;
	void *held[TENSOR_CACHE_SLOTS];

	pthread_mutex_lock(&cache_lock);
	for (n = 0; n < ncache; n++)
		held[n] = cache[n].p;
	ncache = 0;
	atomic_store(&cache_bytes, 0);
	pthread_mutex_unlock(&cache_lock);
	for (i = 0; i < n; i++)
		free(held[i]);
}

static void *cache_take(size_t size)
{
	size_t i, best = TENSOR_CACHE_SLOTS;
	void *p = NULL;

	pthread_mutex_lock(&cache_lock);
	for (i = 0; i < ncache; i++)
		if (cache[i].size >= size && cache[i].size / 4 <= size &&
		    (best == TENSOR_CACHE_SLOTS || cache[i].size < cache[best].size))
			best = i;
	if (best < TENSOR_CACHE_SLOTS) {
		p = cache[best].p;
		atomic_fetch_sub(&cache_bytes, cache[best].size);
		cache[best] = cache[--ncache];
	}
	pthread_mutex_unlock(&cache_lock);
	return p;
}

void tensor_release(void *p)
{
	size_t size;

	if (p == NULL)
		return;
	size = malloc_usable_size(p);
	if (size >= TENSOR_CACHE_MIN) {
		pthread_mutex_lock(&cache_lock);
		if (ncache < TENSOR_CACHE_SLOTS &&
		    atomic_load(&cache_bytes) + size <= atomic_load(&cache_limit)) {
			cache[ncache].p = p;
			cache[ncache++].size = size;
			atomic_fetch_add(&cache_bytes, size);
			p = NULL;
		}
		pthread_mutex_unlock(&cache_lock);
	}
	free(p);
}

void *tensor_alloc_aligned(size_t size)
{
	void *p = NULL;

	/* Round up so that vector loops may read whole cache lines safely. */
	size = (size + TENSOR_ALIGN - 1) / TENSOR_ALIGN * TENSOR_ALIGN;
	if (size == 0)
		size = TENSOR_ALIGN;
	if (size >= TENSOR_CACHE_MIN && (p = cache_take(size)) != NULL)
		return p;
	if (posix_memalign(&p, TENSOR_ALIGN, size) != 0)
		return NULL;
	return p;
}

/* A tensor header for a checked shape, without data. */
static int header(struct tensor **out, int rank, const int64_t *dim, char *err)
{
	struct tensor *t;
	size_t count;
	int rc;

	*out = NULL;
	rc = tensor_shape_count(rank, dim, 0, &count, err);
	if (rc < 0)
		return rc;
	t = calloc(1, sizeof(*t));
	if (t == NULL)
		return err_set(err, -ENOMEM, "out of memory");
	t->rank = rank;
	memcpy(t->dim, dim, (size_t)rank * sizeof(dim[0]));
	t->count = count;
	*out = t;
	return 0;
}

int tensor_new_uninit(struct tensor **out, int rank, const int64_t *dim, char *err)
{
	int rc = header(out, rank, dim, err);

	if (rc < 0 || (*out)->count == 0)
		return rc;
	(*out)->data = tensor_alloc_aligned((*out)->count * sizeof(float));
	if ((*out)->data == NULL) {
		rc = err_set(err, -ENOMEM, "cannot allocate %zu floats", (*out)->count);
		free(*out);
		*out = NULL;
	}
	return rc;
}

int tensor_new(struct tensor **out, int rank, const int64_t *dim, char *err)
{
	int rc = tensor_new_uninit(out, rank, dim, err);

	if (rc == 0 && (*out)->count > 0)
		memset((*out)->data, 0, (*out)->count * sizeof(float));
	return rc;
}

int tensor_view(struct tensor **out, int rank, const int64_t *dim, float *data, char *err)
{
	int rc;

	*out = NULL;
	if ((uintptr_t)data % TENSOR_ALIGN != 0)
		return err_set(err, -EINVAL, "tensor view data is not %d-byte aligned",
		               TENSOR_ALIGN);
	rc = header(out, rank, dim, err);
	if (rc == 0) {
		(*out)->data = (*out)->count > 0 ? data : NULL;
		(*out)->borrowed = 1;
	}
	return rc;
}

int tensor_adopt(struct tensor **out, int rank, const int64_t *dim, float *data, char *err)
{
	int rc;

	*out = NULL;
	if ((uintptr_t)data % TENSOR_ALIGN != 0) {
		free(data);
		return err_set(err, -EINVAL, "tensor data is not %d-byte aligned", TENSOR_ALIGN);
	}
	rc = header(out, rank, dim, err);
	if (rc < 0) {
		free(data);
		return rc;
	}
	if ((*out)->count > 0)
		(*out)->data = data;
	else
		free(data);
	return 0;
}

int tensor_reshape(struct tensor *t, int rank, const int64_t *dim, char *err)
{
	char have[160], want[160];
	size_t count;
	int rc;

	rc = tensor_shape_count(rank, dim, 0, &count, err);
	if (rc < 0)
		return rc;
	if (count != t->count)
		return err_set(err, -EINVAL, "cannot reshape %s (%zu elements) to %s (%zu)",
		               tensor_shape_str(t->rank, t->dim, have, sizeof(have)), t->count,
		               tensor_shape_str(rank, dim, want, sizeof(want)), count);
	t->rank = rank;
	memcpy(t->dim, dim, (size_t)rank * sizeof(dim[0]));
	return 0;
}

/* dst[j * rows + i] = src[i * cols + j] for a rows x cols matrix, in
 * blocks so that both sides stay in cache. */
static void transpose2(float *dst, const float *src, int64_t rows, int64_t cols)
{
	const int64_t bs = 32;
	int64_t i0, j0, i, j;

	for (i0 = 0; i0 < rows; i0 += bs)
		for (j0 = 0; j0 < cols; j0 += bs)
			for (i = i0; i < i0 + bs && i < rows; i++)
				for (j = j0; j < j0 + bs && j < cols; j++)
					dst[j * rows + i] = src[i * cols + j];
}

int tensor_transpose_layout(const struct tensor *in, int to_nhwc, struct tensor **out, char *err)
{
	int64_t n = in->dim[0], hw, c, dim[4], b;
	char shape[160];
	int rc;

	*out = NULL;
	if (in->rank != 4)
		return err_set(err, -EINVAL, "a layout change needs rank 4, got shape %s",
		               tensor_shape_str(in->rank, in->dim, shape, sizeof(shape)));
	if (to_nhwc) {
		c = in->dim[1];
		hw = in->dim[2] * in->dim[3];
		dim[0] = n, dim[1] = in->dim[2], dim[2] = in->dim[3], dim[3] = c;
	} else {
		c = in->dim[3];
		hw = in->dim[1] * in->dim[2];
		dim[0] = n, dim[1] = c, dim[2] = in->dim[1], dim[3] = in->dim[2];
	}
	rc = tensor_new_uninit(out, 4, dim, err);
	if (rc < 0 || in->count == 0)
		return rc;
	/* Per image: [C, HW] <-> [HW, C]. */
	for (b = 0; b < n; b++)
		if (to_nhwc)
			transpose2((*out)->data + b * hw * c, in->data + b * hw * c, c, hw);
		else
			transpose2((*out)->data + b * hw * c, in->data + b * hw * c, hw, c);
	return 0;
}

int tensor_relayout(struct tensor **t, int to_nhwc, char *err)
{
	struct tensor *u;
	int rc = tensor_transpose_layout(*t, to_nhwc, &u, err);

	if (rc < 0)
		return rc;
	tensor_free(*t);
	*t = u;
	return 0;
}

void tensor_free(struct tensor *t)
{
	if (t == NULL)
		return;
	if (!t->borrowed)
		tensor_release(t->data);
	free(t);
}

/* SPDX-License-Identifier: MIT */
/* jscan.h - the fast path of JSON request bodies: numeric arrays become
 * tensors without one jansson value per number.
 *
 *	struct jscan js = { .max_elements = limit };
 *	jscan_body(&js, body, len, &env, err);   // env: the body with each large
 *	                                          // array replaced by a placeholder
 *	... jansson parses env; {"$tensor": i} stands for js.fast[i] ...
 *	jscan_clear(&js);
 *
 * Arrays of at least JSCAN_FAST_MIN numbers (nested to any rank up to
 * TENSOR_MAX_RANK, rectangular) are parsed exactly into float32 buffers.  The
 * scan also bounds what is left to jansson: nesting depth and value count.
 */
#ifndef ATROUSD_JSCAN_H
#define ATROUSD_JSCAN_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "tensor.h"

/* Arrays with at least this many numbers take the fast path. */
#define JSCAN_FAST_MIN 16
/* Deepest bracket nesting accepted in a body. */
#define JSCAN_MAX_DEPTH 32
/* Most JSON values left to jansson (objects, arrays, their members, small
 * arrays' numbers): bounds its memory (about 40-230 bytes per value). */
#define JSCAN_MAX_VALUES 65536
/* The key of the placeholder object standing for fast[index]. */
#define JSCAN_PLACEHOLDER_KEY "$tensor"

struct jscan {
	int64_t max_elements; /* per tensor; -E2BIG beyond */
	struct tensor **fast; /* tensors found, owned; NULL once taken */
	size_t nfast, cap;
};

/* Scan body, appending it to env with large numeric arrays replaced by
 * placeholders; 0, or -EINVAL (ragged arrays, depth), -ERANGE (a number
 * beyond float32), -E2BIG (too many elements or values) with a message. */
int jscan_body(struct jscan *js, const char *body, size_t len, struct buf *env, char *err);

/* Free the tensors not taken. */
void jscan_clear(struct jscan *js);

/* Look up an integer without parsing the body: the member at path (NULL
 * ended, e.g. {"parameters", "timeout", NULL}) from the top-level object,
 * skipping every other value.  1 with *out set when it is there as a JSON
 * integer from 0 to INT64_MAX; 0 otherwise (absent, another type, escaped
 * key, malformed text: the full parse reports what is wrong).  For the I/O
 * thread: one pass, no allocation, about a gigabyte a second. */
int jscan_find_uint(const char *body, size_t len, const char *const *path, uint64_t *out);

#endif

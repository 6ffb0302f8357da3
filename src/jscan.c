/* SPDX-License-Identifier: MIT */
/* jscan.c - numeric arrays of a JSON body parsed straight into tensors. */
#include "autoconfig.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "ftext.h"
#include "jscan.h"

#define NOT_NUMERIC 1 /* not an array of numbers: leave it to jansson */

/* State of one fast parse of a (possibly nested) numeric array. */
struct nparse {
	float *data;
	size_t count, cap, bound;
	int rank; /* -1 until the first leaf level is seen */
	int64_t dim[TENSOR_MAX_RANK];
	int seen[TENSOR_MAX_RANK];
	int64_t max_elements;
	size_t arrays; /* brackets opened */
	char *err;
};

static const char *skip_ws(const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
		p++;
	return p;
}

static int np_push(struct nparse *np, float v)
{
	if (np->count == np->cap) {
		size_t cap = np->cap ? np->cap * 2 : 1024;
		float *d;

		if ((int64_t)np->count >= np->max_elements)
			return err_set(np->err, -E2BIG, "tensor has more than %lld elements",
			               (long long)np->max_elements);
		if (cap > np->bound)
			cap = np->bound;
		if (cap > (size_t)np->max_elements)
			cap = (size_t)np->max_elements;
		d = tensor_alloc_aligned(cap * sizeof(float));
		if (d == NULL)
			return err_set(np->err, -ENOMEM, "out of memory");
		if (np->count)
			memcpy(d, np->data, np->count * sizeof(float));
		tensor_release(np->data);
		np->data = d;
		np->cap = cap;
	}
	np->data[np->count++] = v;
	return 0;
}

static int np_dim(struct nparse *np, int level, int64_t n, int leaf)
{
	if (leaf) {
		if (np->rank < 0)
			np->rank = level + 1;
		else if (np->rank != level + 1)
			return err_set(np->err, -EINVAL,
			               "ragged nested array: numbers at depth %d and %d", np->rank,
			               level + 1);
	}
	if (!np->seen[level]) {
		np->seen[level] = 1;
		np->dim[level] = n;
	} else if (np->dim[level] != n) {
		return err_set(np->err, -EINVAL,
		               "ragged nested array: %lld elements at depth %d, expected %lld",
		               (long long)n, level + 1, (long long)np->dim[level]);
	}
	return 0;
}

/* Parse the array at *pp; 0, NOT_NUMERIC, or a negative error. */
static int np_level(struct nparse *np, const char **pp, const char *end, int level)
{
	const char *p = skip_ws(*pp + 1, end);
	int64_t n = 0;
	int arrays, rc;

	np->arrays++;
	if (level >= TENSOR_MAX_RANK)
		return NOT_NUMERIC;
	if (p < end && *p == ']') {
		/* An empty array: its own level is a leaf of size 0. */
		rc = np_dim(np, level, 0, np->rank < 0 || np->rank == level + 1);
		if (rc == 0 && np->rank != level + 1)
			rc = err_set(np->err, -EINVAL,
			             "ragged nested array: empty array at depth %d", level + 1);
		*pp = p + 1;
		return rc;
	}
	if (p >= end)
		return NOT_NUMERIC;
	arrays = *p == '[';
	for (;;) {
		if (arrays) {
			if (p >= end || *p != '[')
				return NOT_NUMERIC;
			rc = np_level(np, &p, end, level + 1);
			if (rc != 0)
				return rc;
		} else {
			float v;
			const char *next;

			rc = p < end ? ftext_parse(p, end, &v, &next) : -EINVAL;
			if (rc == -EINVAL)
				return NOT_NUMERIC;
			if (rc == -ERANGE)
				return err_set(np->err, -ERANGE,
				               "number %.*s (element %zu) is beyond float32 range",
				               (int)(next - p > 40 ? 40 : next - p), p, np->count);
			rc = np_push(np, v);
			if (rc < 0)
				return rc;
			p = next;
		}
		n++;
		p = skip_ws(p, end);
		if (p < end && *p == ',') {
			p = skip_ws(p + 1, end);
			continue;
		}
		if (p < end && *p == ']')
			break;
		return NOT_NUMERIC;
	}
	rc = np_dim(np, level, n, !arrays);
	if (rc < 0)
		return rc;
	*pp = p + 1;
	return 0;
}

static int add_fast(struct jscan *js, struct tensor *t, size_t *idx)
{
	if (js->nfast == js->cap) {
		size_t cap = js->cap ? js->cap * 2 : 8;
		struct tensor **v = realloc(js->fast, cap * sizeof(*v));

		if (v == NULL)
			return -ENOMEM;
		js->fast = v;
		js->cap = cap;
	}
	*idx = js->nfast;
	js->fast[js->nfast++] = t;
	return 0;
}

/* Try the fast path at p (a '['): 0 with *next set when the array was taken
 * (a placeholder is appended to env), NOT_NUMERIC, or a negative error. */
static int scan_array(struct jscan *js, const char *p, const char *end, struct buf *env,
                      const char **next, size_t *small, char *err)
{
	struct nparse np = { 0 };
	struct tensor *t;
	const char *q = p;
	size_t idx;
	int rc;

	np.rank = -1;
	np.max_elements = js->max_elements;
	np.bound = (size_t)(end - p) / 2 + 1;
	np.err = err;
	rc = np_level(&np, &q, end, 0);
	if (rc != 0 || np.count < JSCAN_FAST_MIN) {
		free(np.data);
		if (rc == 0) {
			*next = q; /* small: jansson parses it, skip re-scanning */
			*small = np.count + np.arrays;
			return NOT_NUMERIC;
		}
		*next = p + 1;
		return rc;
	}
	rc = tensor_adopt(&t, np.rank, np.dim, np.data, err);
	if (rc < 0)
		return rc;
	if (add_fast(js, t, &idx) < 0) {
		tensor_free(t);
		return err_set(err, -ENOMEM, "out of memory");
	}
	buf_puts(env, "{\"" JSCAN_PLACEHOLDER_KEY "\":");
	buf_dec(env, idx, 0);
	buf_puts(env, "}");
	*next = q;
	return 0;
}

static const char *skip_string(const char *p, const char *end)
{
	for (p++; p < end; p++) {
		if (*p == '\\')
			p++;
		else if (*p == '"')
			return p + 1;
	}
	return end;
}

/* Copy body into env with large numeric arrays replaced by placeholders. */
int jscan_body(struct jscan *js, const char *body, size_t len, struct buf *env, char *err)
{
	const char *p = body, *end = body + len, *copied = body;
	size_t values = 0; /* JSON values left for jansson: bounds its memory */
	int depth = 0, rc;

	while (p < end) {
		switch (*p) {
		case '"': p = skip_string(p, end); continue;
		case '[': {
			const char *next = p + 1;
			size_t small = 0;

			buf_add(env, copied, (size_t)(p - copied));
			copied = p;
			rc = scan_array(js, p, end, env, &next, &small, err);
			if (rc < 0)
				return rc;
			if (rc == 0) {
				copied = p = next;
				continue;
			}
			if (next != p + 1) { /* a small numeric array, balanced */
				values += small;
				p = next;
				continue;
			}
		}
			/* fall through */
		case '{':
			if (++depth > JSCAN_MAX_DEPTH)
				return err_set(err, -EINVAL, "JSON nesting deeper than %d",
				               JSCAN_MAX_DEPTH);
			values++;
			break;
		case ']':
		case '}': depth--; break;
		case ',': values++; break;
		default: break;
		}
		if (values > JSCAN_MAX_VALUES)
			return err_set(
			        err, -E2BIG,
			        "more than %d JSON values outside tensor arrays; send large data "
			        "as numeric arrays or base64",
			        JSCAN_MAX_VALUES);
		p++;
	}
	buf_add(env, copied, (size_t)(end - copied));
	return buf_ok(env) < 0 ? err_set(err, -ENOMEM, "out of memory") : 0;
}

void jscan_clear(struct jscan *js)
{
	size_t i;

	for (i = 0; i < js->nfast; i++)
		tensor_free(js->fast[i]);
	free(js->fast);
	js->fast = NULL;
	js->nfast = js->cap = 0;
}

/* Skip one value of any kind from p; NULL when the text ends first. */
static const char *skip_value(const char *p, const char *end)
{
	int depth = 0;

	p = skip_ws(p, end);
	if (p < end && *p == '"')
		p = skip_string(p, end);
	else if (p < end && *p != '[' && *p != '{')
		while (p < end && !strchr(",]} \t\r\n", *p))
			p++;
	else
		while (p < end) {
			char ch = *p;

			if (ch == '"') {
				p = skip_string(p, end);
				continue;
			}
			p++;
			if (ch == '[' || ch == '{')
				depth++;
			else if ((ch == ']' || ch == '}') && --depth == 0)
				break;
		}
	return p < end ? p : NULL;
}

/* A JSON integer at p (no sign, fraction or exponent) up to INT64_MAX. */
static int read_uint(const char *p, const char *end, uint64_t *out)
{
	uint64_t v = 0;
	const char *d = p;

	for (; d < end && *d >= '0' && *d <= '9'; d++) {
		if (v > ((uint64_t)INT64_MAX - (uint64_t)(*d - '0')) / 10)
			return 0;
		v = v * 10 + (uint64_t)(*d - '0');
	}
	if (d == p || (d < end && strchr(".eE", *d)))
		return 0;
	*out = v;
	return 1;
}

int jscan_find_uint(const char *body, size_t len, const char *const *path, uint64_t *out)
{
	const char *p = body, *end = body + len;

	p = skip_ws(p, end);
	if (p >= end || *p != '{')
		return 0;
	for (p++;;) {
		const char *key;
		size_t klen;

		p = skip_ws(p, end);
		if (p >= end || *p != '"')
			return 0; /* the end of the object, or not JSON */
		key = p + 1;
		p = skip_string(p, end);
		klen = (size_t)(p - key) - 1;
		p = skip_ws(p, end);
		if (p >= end || *p != ':')
			return 0;
		p++;
		if (klen == strlen(path[0]) && memcmp(key, path[0], klen) == 0) {
			p = skip_ws(p, end);
			return path[1] != NULL
			               ? jscan_find_uint(p, (size_t)(end - p), path + 1, out)
			               : read_uint(p, end, out);
		}
		p = skip_value(p, end);
		if (p == NULL)
			return 0;
		p = skip_ws(p, end);
		if (p >= end || *p != ',')
			return 0;
		p++;
	}
}

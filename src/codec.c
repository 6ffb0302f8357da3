/* SPDX-License-Identifier: MIT */
/* codec.c - tensor decoding (jscan fast path + jansson envelope) and encoding. */
#include "autoconfig.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "error.h"
#include "ftext.h"
#include "jscan.h"
#include "par.h"

struct codec_doc {
	json_t *root;
	struct jscan js; /* the tensors found by the scanner */
	int64_t max_elements;
};

int codec_doc_parse(const char *body, size_t len, int64_t max_elements, struct codec_doc **out,
                    char *err)
{
	struct codec_doc *doc;
	struct buf env = { 0 };
	json_error_t jerr;
	int rc;

	*out = NULL;
	if (memchr(body, '\0', len) != NULL)
		return err_set(err, -EINVAL, "body contains a NUL byte");
	doc = calloc(1, sizeof(*doc));
	if (doc == NULL)
		return err_set(err, -ENOMEM, "out of memory");
	doc->max_elements = max_elements > 0 ? max_elements : TENSOR_MAX_ELEMENTS;
	doc->js.max_elements = doc->max_elements;
	rc = jscan_body(&doc->js, body, len, &env, err);
	if (rc < 0)
		goto fail;
	doc->root = json_loadb(env.data ? env.data : "", env.len, JSON_REJECT_DUPLICATES, &jerr);
	if (doc->root == NULL) {
		rc = jerr.text[0] ? err_set(err, -EINVAL, "invalid JSON: %s", jerr.text)
		                  : err_set(err, -ENOMEM, "out of memory while parsing JSON");
		goto fail;
	}
	if (!json_is_object(doc->root)) {
		rc = err_set(err, -EINVAL, "the body must be a JSON object");
		goto fail;
	}
	buf_free(&env);
	*out = doc;
	return 0;
fail:
	buf_free(&env);
	codec_doc_free(doc);
	return rc;
}

json_t *codec_doc_root(const struct codec_doc *doc)
{
	return doc->root;
}

void codec_doc_free(struct codec_doc *doc)
{
	if (doc == NULL)
		return;
	jscan_clear(&doc->js);
	json_decref(doc->root);
	free(doc);
}

/* The fast tensor a placeholder object refers to, taken from the doc. */
static struct tensor *take_placeholder(struct codec_doc *doc, json_t *v)
{
	json_t *idx;
	json_int_t i;
	struct tensor *t;

	if (!json_is_object(v) || json_object_size(v) != 1)
		return NULL;
	idx = json_object_get(v, JSCAN_PLACEHOLDER_KEY);
	if (!json_is_integer(idx))
		return NULL;
	i = json_integer_value(idx);
	if (i < 0 || (size_t)i >= doc->js.nfast || doc->js.fast[i] == NULL)
		return NULL;
	t = doc->js.fast[i];
	doc->js.fast[i] = NULL;
	return t;
}

static int json_to_float(json_t *v, float *out)
{
	double d;

	if (json_is_integer(v))
		d = (double)json_integer_value(v);
	else if (json_is_real(v))
		d = json_real_value(v);
	else
		return -EINVAL;
	if (d > FLT_MAX || d < -FLT_MAX) {
		/* Values within half an ulp of FLT_MAX still round to it. */
		if (isinf((float)d))
			return -ERANGE;
	}
	*out = (float)d;
	return 0;
}

/* Shape of a small nested jansson array; 0 or negative. */
static int nested_shape(json_t *v, int *rank, int64_t *dim, char *err)
{
	json_t *cur = v;

	*rank = 0;
	while (json_is_array(cur)) {
		if (*rank == TENSOR_MAX_RANK)
			return err_set(err, -EINVAL, "nested array deeper than %d",
			               TENSOR_MAX_RANK);
		dim[(*rank)++] = (int64_t)json_array_size(cur);
		if (json_array_size(cur) == 0)
			break;
		cur = json_array_get(cur, 0);
	}
	return 0;
}

static int fill_nested(json_t *v, int level, int rank, const int64_t *dim, float *out, size_t *pos,
                       char *err)
{
	size_t i, n;
	int rc;

	if (level == rank) {
		rc = json_to_float(v, &out[*pos]);
		if (rc == -ERANGE)
			return err_set(err, rc, "element %zu is beyond float32 range", *pos);
		if (rc < 0)
			return err_set(err, rc, "element %zu is not a number", *pos);
		(*pos)++;
		return 0;
	}
	if (!json_is_array(v))
		return err_set(err, -EINVAL, "ragged nested array: expected an array at depth %d",
		               level + 1);
	n = json_array_size(v);
	if ((int64_t)n != dim[level])
		return err_set(err, -EINVAL,
		               "ragged nested array: %zu elements at depth %d, expected %lld", n,
		               level + 1, (long long)dim[level]);
	for (i = 0; i < n; i++) {
		rc = fill_nested(json_array_get(v, i), level + 1, rank, dim, out, pos, err);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static int from_nested(json_t *v, int64_t max_elements, struct tensor **out, char *err)
{
	int64_t dim[TENSOR_MAX_RANK];
	struct tensor *t;
	size_t count, pos = 0;
	int rank, rc;

	rc = nested_shape(v, &rank, dim, err);
	if (rc == 0)
		rc = tensor_shape_count(rank, dim, max_elements, &count, err);
	if (rc == 0)
		rc = tensor_new_uninit(&t, rank, dim, err);
	if (rc < 0)
		return rc;
	rc = fill_nested(v, 0, rank, dim, t->data, &pos, err);
	if (rc < 0) {
		tensor_free(t);
		return rc;
	}
	*out = t;
	return 0;
}

static int parse_shape(json_t *s, int64_t max_elements, int *rank, int64_t *dim, size_t *count,
                       char *err)
{
	size_t i;

	if (!json_is_array(s))
		return err_set(err, -EINVAL, "\"shape\" must be an array of integers");
	if (json_array_size(s) > TENSOR_MAX_RANK)
		return err_set(err, -EINVAL, "\"shape\" has %zu dimensions, at most %d allowed",
		               json_array_size(s), TENSOR_MAX_RANK);
	*rank = (int)json_array_size(s);
	for (i = 0; i < json_array_size(s); i++) {
		json_t *d = json_array_get(s, i);

		if (!json_is_integer(d))
			return err_set(err, -EINVAL, "\"shape\"[%zu] is not an integer", i);
		dim[i] = json_integer_value(d);
	}
	return tensor_shape_count(*rank, dim, max_elements, count, err);
}

static int in_list(const char *key, const char *const *list)
{
	for (; list != NULL && *list != NULL; list++)
		if (strcmp(key, *list) == 0)
			return 1;
	return 0;
}

static void put_list(char *p, size_t len, const char *const *list)
{
	size_t n;

	for (; list != NULL && *list != NULL && len > 1; list++) {
		n = (size_t)snprintf(p, len, "\"%s\", ", *list);
		if (n >= len)
			return;
		p += n;
		len -= n;
	}
}

int codec_check_keys(json_t *obj, const char *const *allowed, const char *const *extra, char *err)
{
	char expected[160] = "";
	const char *key;
	json_t *v;
	size_t n;

	json_object_foreach (obj, key, v) {
		if (in_list(key, allowed) || in_list(key, extra))
			continue;
		put_list(expected, sizeof(expected), allowed);
		n = strlen(expected);
		put_list(expected + n, sizeof(expected) - n, extra);
		n = strlen(expected);
		if (n >= 2)
			expected[n - 2] = '\0'; /* the last ", " */
		return err_set(err, -EINVAL, "unknown key \"%.64s\" (expected %s)", key, expected);
	}
	return 0;
}

static int from_object(struct codec_doc *doc, json_t *v, struct tensor **out, char *err)
{
	static const char *const keys[] = { "shape", "data", "b64", NULL };
	json_t *shape = json_object_get(v, "shape"), *data = json_object_get(v, "data");
	json_t *b64 = json_object_get(v, "b64");
	struct tensor *t = NULL;
	int64_t dim[TENSOR_MAX_RANK];
	size_t count;
	int rank = 0, rc;

	rc = codec_check_keys(v, keys, NULL, err);
	if (rc < 0)
		return rc;
	if (shape == NULL)
		return err_set(err, -EINVAL, "missing \"shape\"");
	if ((data == NULL) == (b64 == NULL))
		return err_set(err, -EINVAL, "exactly one of \"data\" and \"b64\" is required");
	rc = parse_shape(shape, doc->max_elements, &rank, dim, &count, err);
	if (rc < 0)
		return rc;
	if (b64 != NULL) {
		const char *s = json_string_value(b64);
		size_t len = json_string_length(b64);
		unsigned char *bytes;
		long long n;

		if (s == NULL)
			return err_set(err, -EINVAL, "\"b64\" must be a string");
		/* Decode straight into what becomes the tensor's storage. */
		bytes = tensor_alloc_aligned(len / 4 * 3 + 3);
		if (bytes == NULL)
			return err_set(err, -ENOMEM, "out of memory");
		n = codec_base64_decode(s, len, bytes);
		if (n < 0 || n != (long long)(count * 4)) {
			free(bytes);
			if (n < 0)
				return err_set(err, -EINVAL, "\"b64\" is not valid base64");
			return err_set(err, -EINVAL, "\"b64\" holds %lld bytes, shape needs %zu", n,
			               count * 4);
		}
		rc = tensor_adopt(&t, rank, dim, (float *)(void *)bytes, err);
		if (rc < 0)
			return rc;
	} else {
		/* "data": decoded by the fast path, or else a nested array. */
		t = take_placeholder(doc, data);
		if (t == NULL && !json_is_array(data))
			return err_set(err, -EINVAL, "\"data\" must be an array of numbers");
		if (t == NULL && (rc = from_nested(data, doc->max_elements, &t, err)) < 0)
			return rc;
	}
	if (t->count != count) {
		rc = err_set(err, -EINVAL, "shape needs %zu elements, \"data\" has %zu", count,
		             t->count);
		tensor_free(t);
		return rc;
	}
	rc = tensor_reshape(t, rank, dim, err);
	if (rc < 0) {
		tensor_free(t);
		return rc;
	}
	*out = t;
	return 0;
}

int codec_doc_take_tensor(struct codec_doc *doc, json_t *v, const char *field, struct tensor **out,
                          char *err)
{
	struct tensor *t;
	int rc;

	*out = NULL;
	if (v == NULL)
		return err_set(err, -EINVAL, "missing \"%s\"", field);
	t = take_placeholder(doc, v);
	if (t != NULL) {
		*out = t;
		return 0;
	}
	if (json_is_array(v))
		rc = from_nested(v, doc->max_elements, out, err);
	else if (json_is_object(v))
		rc = from_object(doc, v, out, err);
	else
		rc = err_set(
		        err, -EINVAL,
		        "must be a nested array or an object with \"shape\" and \"data\"/\"b64\"");
	if (rc < 0)
		err_prefix(err, "\"%s\"", field);
	return rc;
}

int codec_check_timeout(json_t *v, const char *name, char *err)
{
	if (v == NULL || (json_is_integer(v) && json_integer_value(v) >= 0))
		return 0;
	return err_set(err, -EINVAL, "\"%s\" must be a whole number of microseconds (0: none)",
	               name);
}

int codec_parse_encoding(const char *s, enum codec_enc *out, char *err)
{
	if (s != NULL && strcmp(s, "flat") == 0)
		*out = CODEC_FLAT;
	else if (s != NULL && strcmp(s, "nested") == 0)
		*out = CODEC_NESTED;
	else if (s != NULL && strcmp(s, "b64") == 0)
		*out = CODEC_B64;
	else
		return err_set(err, -EINVAL,
		               "\"output_encoding\" must be \"flat\", \"nested\" or \"b64\"");
	return 0;
}

/* The finiteness scan: x - x is 0 for every finite x and NaN for a NaN or
 * an infinity, so a block's sums of it are NaN exactly when the block holds
 * one; only such a block is searched for it.  Two sums of four lanes (the
 * SSE2 vector every x86-64 has, kept in registers). */
#define FINITE_BLOCK 1024
typedef float finite_vf __attribute__((vector_size(4 * sizeof(float))));

static int block_finite(const float *v, size_t n)
{
	finite_vf a = { 0 }, b = { 0 };
	float tail = 0, lanes[4];
	size_t i;
	int k;

	for (i = 0; i + 8 <= n; i += 8) {
		finite_vf x, y;

		memcpy(&x, v + i, sizeof(x));
		memcpy(&y, v + i + 4, sizeof(y));
		a += x - x;
		b += y - y;
	}
	for (; i < n; i++)
		tail += v[i] - v[i];
	a += b;
	memcpy(lanes, &a, sizeof(lanes));
	for (k = 0; k < 4; k++)
		tail += lanes[k];
	return tail == 0;
}

int codec_check_finite(const struct tensor *t, char *err)
{
	size_t b, i, n;

	for (b = 0; b < t->count; b += FINITE_BLOCK) {
		n = t->count - b < FINITE_BLOCK ? t->count - b : FINITE_BLOCK;
		if (block_finite(t->data + b, n))
			continue;
		for (i = b; i < b + n; i++)
			if (!isfinite(t->data[i]))
				return err_set(err, -EDOM,
				               "the result contains %s at element %zu (float32 "
				               "overflow); scale the input or the filters",
				               isnan(t->data[i]) ? "NaN" : "an infinity", i);
	}
	return 0;
}

/* Elements per encoding task when a runner spreads a large array. */
#define ENCODE_CHUNK 65536

/* Write elements [i0, i1) of an array of the given dims (row-major) as JSON
 * text: nested brackets when nested, else one flat list.  Opening brackets
 * before i0 and closing ones after i1 - 1 are included when i0 == 0 and
 * i1 == count.  Returns the bytes written; dst has room for the bound. */
static size_t write_range(char *dst, const float *v, int rank, const int64_t *dim, size_t i0,
                          size_t i1, size_t count, int nested)
{
	int64_t idx[TENSOR_MAX_RANK];
	char *p = dst;
	size_t i, rest = i0;
	int k, levels = nested ? rank : 1;

	if (!nested) {
		rank = 1;
		dim = (const int64_t *)&count;
	}
	for (k = rank - 1; k >= 0; k--) {
		idx[k] = dim[k] ? (int64_t)(rest % (size_t)dim[k]) : 0;
		rest = dim[k] ? rest / (size_t)dim[k] : 0;
	}
	if (i0 == 0)
		for (k = 0; k < levels; k++)
			*p++ = '[';
	for (i = i0; i < i1; i++) {
		if (i > 0) {
			/* Close and reopen one bracket per axis that wrapped. */
			int wrapped = 0;

			for (k = rank - 1; k > 0 && idx[k] == 0; k--)
				wrapped++;
			for (k = 0; k < wrapped; k++)
				*p++ = ']';
			*p++ = ',';
			for (k = 0; k < wrapped; k++)
				*p++ = '[';
		}
		p += ftext_format(v[i], p);
		for (k = rank - 1; k >= 0; k--) {
			if (++idx[k] < dim[k])
				break;
			idx[k] = 0;
		}
	}
	if (i1 == count)
		for (k = 0; k < levels; k++)
			*p++ = ']';
	return (size_t)(p - dst);
}

struct encode_job {
	const float *v;
	int rank;
	const int64_t *dim;
	size_t count, per;
	int nested;
	char **parts;
	size_t *lens;
};

static void encode_task(void *arg, size_t t, void *scratch)
{
	struct encode_job *j = arg;
	size_t i0 = t * j->per, i1 = i0 + j->per < j->count ? i0 + j->per : j->count;

	j->parts[t] =
	        malloc((i1 - i0) * (FTEXT_MAX + 1 + 2 * TENSOR_MAX_RANK) + 2 * TENSOR_MAX_RANK);
	j->lens[t] = j->parts[t] ? write_range(j->parts[t], j->v, j->rank, j->dim, i0, i1, j->count,
	                                       j->nested)
	                         : 0;
}

static void put_values(struct buf *b, const float *v, int rank, const int64_t *dim, size_t count,
                       int nested, const struct par_runner *runner)
{
	size_t per_elem = FTEXT_MAX + 1 + 2 * TENSOR_MAX_RANK, ntasks, t;
	struct encode_job j;
	char *dst;

	if (count > (SIZE_MAX - 64) / per_elem) {
		b->broken = 1;
		return;
	}
	if (count == 0 && nested && rank > 0) {
		/* An empty tensor: nest down to the first zero dimension. */
		int k, open = 0;

		for (k = 0; k < rank && dim[k] != 0; k++)
			open++;
		for (k = 0; k <= open; k++)
			buf_puts(b, "[");
		for (k = 0; k <= open; k++)
			buf_puts(b, "]");
		return;
	}
	if (runner == NULL || count < 2 * ENCODE_CHUNK) {
		dst = buf_reserve(b, count * per_elem + 4 * TENSOR_MAX_RANK + 2);
		if (dst == NULL)
			return;
		if (count == 0) {
			memcpy(dst, "[]", 2);
			b->len += 2;
			return;
		}
		b->len += write_range(dst, v, rank, dim, 0, count, count, nested);
		return;
	}
	ntasks = (count + ENCODE_CHUNK - 1) / ENCODE_CHUNK;
	j = (struct encode_job){ v,
		                 rank,
		                 dim,
		                 count,
		                 ENCODE_CHUNK,
		                 nested,
		                 calloc(ntasks, sizeof(char *)),
		                 calloc(ntasks, sizeof(size_t)) };
	if (j.parts == NULL || j.lens == NULL || par_run(runner, ntasks, 64, encode_task, &j) < 0)
		b->broken = 1;
	for (t = 0; j.parts && t < ntasks; t++) {
		if (j.parts[t] == NULL)
			b->broken = 1;
		else
			buf_add(b, j.parts[t], j.lens[t]);
		free(j.parts[t]);
	}
	free(j.parts);
	free(j.lens);
}

void codec_put_numbers(struct buf *b, const float *v, size_t n, const struct par_runner *runner)
{
	put_values(b, v, 1, NULL, n, 0, runner);
}

void codec_put_shape(struct buf *b, const struct tensor *t)
{
	int i;

	buf_puts(b, "[");
	for (i = 0; i < t->rank; i++)
		buf_printf(b, "%s%lld", i ? "," : "", (long long)t->dim[i]);
	buf_puts(b, "]");
}

void codec_put_tensor(struct buf *b, const struct tensor *t, enum codec_enc enc,
                      const struct par_runner *runner)
{
	switch (enc) {
	case CODEC_NESTED:
		if (t->rank == 0) {
			char tmp[FTEXT_MAX];

			buf_add(b, tmp, ftext_format(t->data[0], tmp));
			break;
		}
		put_values(b, t->data, t->rank, t->dim, t->count, 1, runner);
		break;
	case CODEC_B64:
		buf_puts(b, "{\"shape\":");
		codec_put_shape(b, t);
		buf_puts(b, ",\"b64\":\"");
		codec_put_base64(b, t->data, t->count * sizeof(float));
		buf_puts(b, "\"}");
		break;
	case CODEC_FLAT:
	default:
		buf_puts(b, "{\"shape\":");
		codec_put_shape(b, t);
		buf_puts(b, ",\"data\":");
		put_values(b, t->data, 1, NULL, t->count, 0, runner);
		buf_puts(b, "}");
		break;
	}
}

static const char b64chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

void codec_put_base64(struct buf *b, const void *data, size_t n)
{
	const unsigned char *s = data;
	size_t i, full = n / 3 * 3;
	char *d;

	if ((d = buf_reserve(b, (n + 2) / 3 * 4)) == NULL)
		return;
	for (i = 0; i < full; i += 3) {
		uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];

		d[0] = b64chars[v >> 18];
		d[1] = b64chars[(v >> 12) & 63];
		d[2] = b64chars[(v >> 6) & 63];
		d[3] = b64chars[v & 63];
		d += 4;
	}
	if (n - full == 1) {
		uint32_t v = (uint32_t)s[full] << 16;

		d[0] = b64chars[v >> 18];
		d[1] = b64chars[(v >> 12) & 63];
		d[2] = d[3] = '=';
		d += 4;
	} else if (n - full == 2) {
		uint32_t v = (uint32_t)s[full] << 16 | (uint32_t)s[full + 1] << 8;

		d[0] = b64chars[v >> 18];
		d[1] = b64chars[(v >> 12) & 63];
		d[2] = b64chars[(v >> 6) & 63];
		d[3] = '=';
		d += 4;
	}
	b->len = (size_t)(d - b->data);
}

static const signed char b64rev[256] = {
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 62,
	-1, -1, -1, 63, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, -1, -1, -1, -1, -1, -1, -1, 0,
	1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22,
	23, 24, 25, -1, -1, -1, -1, -1, -1, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38,
	39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
};

long long codec_base64_decode(const char *s, size_t len, unsigned char *out)
{
	const signed char *rev = b64rev;
	size_t i, o = 0, pad = 0;

	if (len % 4 != 0)
		return -EINVAL;
	if (len >= 1 && s[len - 1] == '=')
		pad++;
	if (len >= 2 && s[len - 2] == '=')
		pad++;
	for (i = 0; i < len; i += 4) {
		int last = i + 4 == len;
		int a = rev[(unsigned char)s[i]], b = rev[(unsigned char)s[i + 1]];
		int c = last && pad == 2 ? 0 : rev[(unsigned char)s[i + 2]];
		int d = last && pad >= 1 ? 0 : rev[(unsigned char)s[i + 3]];
		uint32_t v;

		if ((a | b | c | d) < 0)
			return -EINVAL;
		v = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6 | (uint32_t)d;
		out[o++] = (unsigned char)(v >> 16);
		if (!(last && pad == 2))
			out[o++] = (unsigned char)(v >> 8);
		if (!(last && pad >= 1))
			out[o++] = (unsigned char)v;
	}
	return (long long)o;
}

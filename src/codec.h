/* SPDX-License-Identifier: MIT */
/* codec.h - JSON request bodies <-> tensors.
 *
 *	struct codec_doc *doc;
 *	if (codec_doc_parse(body, len, &lim, &doc, err) < 0) ...;   // 400/413
 *	json_t *root = codec_doc_root(doc);                         // borrowed
 *	codec_doc_take_tensor(doc, json_object_get(root, "value"), "value", &t, err);
 *	codec_doc_free(doc);
 *
 * Large numeric arrays never become jansson values: jscan parses each
 * array of at least JSCAN_FAST_MIN numbers straight into a float buffer and
 * leaves a small placeholder in the envelope that jansson then parses.
 * Tensors are accepted as nested arrays, {"shape", "data"} or {"shape", "b64"}
 * (base64 of little-endian float32).
 */
#ifndef ATROUSD_CODEC_H
#define ATROUSD_CODEC_H

#include <jansson.h>
#include <stddef.h>

#include "buf.h"
#include "par.h"
#include "tensor.h"

enum codec_enc { CODEC_FLAT, CODEC_NESTED, CODEC_B64 };

struct codec_doc;

/* Parse a JSON body; tensors above max_elements are refused with -E2BIG. */
int codec_doc_parse(const char *body, size_t len, int64_t max_elements, struct codec_doc **out,
                    char *err);

/* The parsed envelope (borrowed; lives as long as the doc). */
json_t *codec_doc_root(const struct codec_doc *doc);

/* Decode the tensor at v (any accepted encoding) into a new tensor owned by
 * the caller; field names the value in messages.  v NULL is "missing". */
int codec_doc_take_tensor(struct codec_doc *doc, json_t *v, const char *field, struct tensor **out,
                          char *err);

/* Free the document and any tensors not taken. */
void codec_doc_free(struct codec_doc *doc);

/* 0 when every key of obj is in allowed or extra (NULL-terminated lists;
 * extra may be NULL), else -EINVAL with the message
 * unknown key "K" (expected "a", "b", ...). */
int codec_check_keys(json_t *obj, const char *const *allowed, const char *const *extra, char *err);

/* A request's timeout in microseconds, checked where it is parsed (the HTTP
 * layer reads it earlier, without parsing): absent, or an integer from 0 to
 * 2^63-1; else -EINVAL naming it as name. */
int codec_check_timeout(json_t *v, const char *name, char *err);

/* Parse "flat", "nested" or "b64". */
int codec_parse_encoding(const char *s, enum codec_enc *out, char *err);

/* -EDOM with a message if t holds a NaN or infinity, else 0. */
int codec_check_finite(const struct tensor *t, char *err);

/* Append t as a JSON value in the given encoding (t must be finite); large
 * tensors are formatted in parallel through runner (NULL: serially). */
void codec_put_tensor(struct buf *b, const struct tensor *t, enum codec_enc enc,
                      const struct par_runner *runner);

/* Append t's shape as a JSON array of integers. */
void codec_put_shape(struct buf *b, const struct tensor *t);

/* Append n floats as a flat JSON array. */
void codec_put_numbers(struct buf *b, const float *v, size_t n, const struct par_runner *runner);

/* Base64 (RFC 4648, padded) of n bytes, appended to b. */
void codec_put_base64(struct buf *b, const void *data, size_t n);

/* Decode base64 text into out (room for len / 4 * 3 bytes); returns the byte
 * count, or -EINVAL for malformed text. */
long long codec_base64_decode(const char *s, size_t len, unsigned char *out);

#endif

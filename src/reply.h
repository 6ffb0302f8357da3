/* SPDX-License-Identifier: MIT */
/* reply.h - what an endpoint answers: status, body and the headers that go
 * with them, independent of libmicrohttpd (http.c sends it). */
#ifndef ATROUSD_REPLY_H
#define ATROUSD_REPLY_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

struct reply {
	int status;
	char *body; /* malloc'd, owned */
	size_t len;
	const char *content_type;
	int retry_after; /* seconds; 0 for none */
	const char *allow;
	const char *www_authenticate;
	char server_timing[160];
	char infer_header_len[24];     /* Inference-Header-Content-Length, or "" */
	char request_id[64];           /* a KServe request's id, for the log */
	char model[72];                /* the stored model or native endpoint, for the log */
	uint64_t queue_us, compute_us; /* a computation's stages, for the log */
};

/* Fill r with status and {"error": message}. */
void reply_error(struct reply *r, int status, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

/* Fill r with status and the JSON in b (taken); 503 when b ran out of memory. */
void reply_buf(struct reply *r, int status, struct buf *b);

/* Fill r with status and a copy of a constant JSON text. */
void reply_text(struct reply *r, int status, const char *text);

/* Fill r with status and {"name": name, key: value}. */
void reply_model(struct reply *r, int status, const char *name, const char *key, const char *value);

/* The HTTP status of a negative errno: -E2BIG 413, -EDOM 422, -ENOMEM 503,
 * -ENOENT 404, -EROFS 409, anything else 400. */
int reply_status_of(int rc);

/* Free the reply body. */
void reply_clear(struct reply *r);

#endif

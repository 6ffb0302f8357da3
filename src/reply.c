/* SPDX-License-Identifier: MIT */
/* reply.c - filling replies: JSON errors, bodies from buffers or text. */
#include "autoconfig.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "reply.h"

void reply_clear(struct reply *r)
{
	free(r->body);
	r->body = NULL;
	r->len = 0;
}

void reply_error(struct reply *r, int status, const char *fmt, ...)
{
	char msg[ERR_LEN];
	struct buf b = { 0 };
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	buf_puts(&b, "{\"error\":");
	buf_json_string(&b, msg);
	buf_puts(&b, "}\n");
	reply_clear(r);
	r->status = status;
	r->content_type = "application/json";
	if (buf_ok(&b) == 0) {
		r->body = buf_take(&b, &r->len);
	} else {
		buf_free(&b);
		r->status = 500;
	}
}

void reply_buf(struct reply *r, int status, struct buf *b)
{
	reply_clear(r);
	if (buf_ok(b) < 0) {
		buf_free(b);
		reply_error(r, 503, "out of memory while encoding the reply");
		return;
	}
	r->status = status;
	r->content_type = "application/json";
	r->body = buf_take(b, &r->len);
}

void reply_text(struct reply *r, int status, const char *text)
{
	reply_clear(r);
	r->status = status;
	r->content_type = "application/json";
	r->body = strdup(text);
	r->len = r->body ? strlen(text) : 0;
}

void reply_model(struct reply *r, int status, const char *name, const char *key, const char *value)
{
	struct buf b = { 0 };

	buf_puts(&b, "{\"name\":");
	buf_json_string(&b, name);
	buf_printf(&b, ",\"%s\":", key);
	buf_json_string(&b, value);
	buf_puts(&b, "}\n");
	reply_buf(r, status, &b);
}

int reply_status_of(int rc)
{
	switch (rc) {
	case -E2BIG: return 413;
	case -EDOM: return 422;
	case -ENOMEM: return 503;
	case -ENOENT: return 404;
	case -EROFS: return 409;
	default: return 400;
	}
}

/* SPDX-License-Identifier: MIT */
/* buf.c - growable byte buffer. */
#include "autoconfig.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"

char *buf_reserve(struct buf *b, size_t n)
{
	size_t cap;
	char *p;

	if (b->broken)
		return NULL;
	if (b->data != NULL && n <= b->cap - b->len)
		return b->data + b->len;
	if (b->fixed) {
		b->broken = 1;
		return NULL;
	}
	if (n > SIZE_MAX / 2 - b->len) {
		b->broken = 1;
		return NULL;
	}
	cap = b->cap ? b->cap : 256;
	while (cap - b->len < n)
		cap *= 2;
	p = realloc(b->data, cap);
	if (p == NULL) {
		b->broken = 1;
		return NULL;
	}
	b->data = p;
	b->cap = cap;
	return b->data + b->len;
}

void buf_use(struct buf *b, char *mem, size_t cap)
{
	b->data = mem;
	b->len = 0;
	b->cap = cap;
	b->broken = 0;
	b->fixed = 1;
}

void buf_add(struct buf *b, const void *p, size_t n)
{
	char *dst = buf_reserve(b, n);

	if (dst == NULL)
		return;
	memcpy(dst, p, n);
	b->len += n;
}

void buf_puts(struct buf *b, const char *s)
{
	buf_add(b, s, strlen(s));
}

size_t buf_fmt_dec(char *out, uint64_t v, int frac)
{
	char tmp[24];
	size_t n = 0, i;

	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
		if (frac > 0 && n == (size_t)frac)
			tmp[n++] = '.';
	} while (v > 0 || (frac > 0 && n <= (size_t)frac + 1));
	for (i = 0; i < n; i++)
		out[i] = tmp[n - 1 - i];
	return n;
}

void buf_dec(struct buf *b, uint64_t v, int frac)
{
	char *dst = buf_reserve(b, 24);

	if (dst != NULL)
		b->len += buf_fmt_dec(dst, v, frac);
}

void buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	char *dst;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || (dst = buf_reserve(b, (size_t)n + 1)) == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(dst, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

void buf_json_string(struct buf *b, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p;

	buf_add(b, "\"", 1);
	for (p = (const unsigned char *)s; *p; p++) {
		char esc[6] = { '\\', 'u', '0', '0', hex[*p >> 4], hex[*p & 15] };

		if (*p == '"' || *p == '\\') {
			buf_add(b, "\\", 1);
			buf_add(b, p, 1);
		} else if (*p < 0x20 || *p == 0x7f) {
			buf_add(b, esc, 6);
		} else {
			buf_add(b, p, 1);
		}
	}
	buf_add(b, "\"", 1);
}

int buf_ok(const struct buf *b)
{
	return b->broken ? -ENOMEM : 0;
}

char *buf_take(struct buf *b, size_t *len)
{
	char *p = b->data;

	*len = b->len;
	b->data = NULL;
	b->len = b->cap = 0;
	b->broken = 0;
	return p;
}

void buf_free(struct buf *b)
{
	if (!b->fixed)
		free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
	b->fixed = 0;
}

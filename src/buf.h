/* SPDX-License-Identifier: MIT */
/* buf.h - a growable byte buffer for building replies and bodies.
 *
 * Appends never fail silently: on allocation failure the buffer is marked
 * broken, further appends are ignored, and buf_ok() reports it once at the
 * end, so call sites need no per-append checks.
 */
#ifndef ATROUSD_BUF_H
#define ATROUSD_BUF_H

#include <stddef.h>
#include <stdint.h>

struct buf {
	char *data;
	size_t len, cap;
	int broken;
	int fixed; /* storage set by buf_use(): never grown nor freed here */
};

/* Ensure room for n more bytes; returns a pointer to write at, or NULL. */
char *buf_reserve(struct buf *b, size_t n);

/* Use mem (cap bytes, owned by the caller) as the storage of an empty
 * buffer; appends beyond cap break it instead of growing it. */
void buf_use(struct buf *b, char *mem, size_t cap);

/* Append n bytes. */
void buf_add(struct buf *b, const void *p, size_t n);

/* Append a NUL-terminated string. */
void buf_puts(struct buf *b, const char *s);

/* Append printf-formatted text. */
void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Append v in decimal; with frac > 0, as v / 10^frac with frac decimals
 * ("1234", 3 -> "1.234").  No printf: these run for every request. */
void buf_dec(struct buf *b, uint64_t v, int frac);

/* The same into out, which has room for 24 bytes; returns the length. */
size_t buf_fmt_dec(char *out, uint64_t v, int frac);

/* Append s as a JSON string literal (quoted and escaped). */
void buf_json_string(struct buf *b, const char *s);

/* 0 if every append succeeded, else -ENOMEM. */
int buf_ok(const struct buf *b);

/* Hand over the data (owned by the caller) and reset the buffer. */
char *buf_take(struct buf *b, size_t *len);

/* Release the data. */
void buf_free(struct buf *b);

#endif

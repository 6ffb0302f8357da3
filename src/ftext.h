/* SPDX-License-Identifier: MIT */
/* ftext.h - float32 <-> JSON number text, exact and fast.
 *
 * Parsing follows JSON's number grammar strictly and rounds correctly to
 * float32 (a fast exact path, glibc strtof otherwise).  Formatting writes the
 * shortest text (at most 9 significant digits) that parses back to the same
 * float, so text -> float -> text -> float is the identity, -0 included.
 */
#ifndef ATROUSD_FTEXT_H
#define ATROUSD_FTEXT_H

#include <stddef.h>

/* Longest text ftext_format writes, without the NUL. */
#define FTEXT_MAX 16

/* Parse one JSON number at p (p < end).  On success store it in *out, set
 * *next past it and return 0.  -EINVAL: not a JSON number (nothing consumed);
 * -ERANGE: a number whose magnitude exceeds float32's range.  Values too
 * small for float32 round to zero or a subnormal, as strtof does. */
int ftext_parse(const char *p, const char *end, float *out, const char **next);

/* Write the shortest round-tripping text of a finite f into out (no NUL);
 * returns its length.  The caller rejects NaN and infinities beforehand. */
size_t ftext_format(float f, char *out);

#endif

/* SPDX-License-Identifier: MIT */
/* error.h - the one error convention of atrousd.
 *
 * Functions that can fail return 0 on success or a negative errno-style code,
 * and write a human-readable, single-line message into a caller's buffer of
 * ERR_LEN bytes.  Bad input is data, never an assert.
 */
#ifndef ATROUSD_ERROR_H
#define ATROUSD_ERROR_H

#include <stddef.h>

#define ERR_LEN 256

/* Format a message into err (may be NULL) and return code (a negative errno). */
int err_set(char *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Prefix an existing message in err with "prefix: ", keeping it one line. */
void err_prefix(char *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif

/* SPDX-License-Identifier: MIT */
/* error.c - formatting of error messages for the 0/-errno convention. */
#include "autoconfig.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "error.h"

int err_set(char *err, int code, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL)
		return code;
	va_start(ap, fmt);
	vsnprintf(err, ERR_LEN, fmt, ap);
	va_end(ap);
	return code;
}

void err_prefix(char *err, const char *fmt, ...)
{
	char head[ERR_LEN], tail[ERR_LEN], both[2 * ERR_LEN + 2];
	va_list ap;

	if (err == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(head, sizeof(head), fmt, ap);
	va_end(ap);
	memcpy(tail, err, ERR_LEN);
	tail[ERR_LEN - 1] = '\0';
	snprintf(both, sizeof(both), "%s: %s", head, tail);
	memcpy(err, both, ERR_LEN - 1);
	err[ERR_LEN - 1] = '\0';
}

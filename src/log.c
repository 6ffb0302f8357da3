/* SPDX-License-Identifier: MIT */
/* log.c - leveled logging to stderr. */
#include "autoconfig.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "log.h"

static enum log_level current = LOG_LVL_INFO;

void log_set_level(enum log_level level)
{
	current = level;
}

int log_parse_level(const char *s, enum log_level *out)
{
	static const struct {
		const char *name;
		enum log_level level;
	} names[] = { { "error", LOG_LVL_ERROR },
		      { "warn", LOG_LVL_WARN },
		      { "info", LOG_LVL_INFO },
		      { "debug", LOG_LVL_DEBUG } };
	size_t i;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(s, names[i].name) == 0) {
			*out = names[i].level;
			return 0;
		}
	return -EINVAL;
}

int log_enabled(enum log_level level)
{
	return level <= current;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	char line[1024], *p;
	va_list ap;

	if (!log_enabled(level))
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	/* Client-supplied text must not forge extra log lines. */
	for (p = line; *p; p++)
		if ((unsigned char)*p < 0x20)
			*p = '?';
	fprintf(stderr, "<%d>%s\n", (int)level, line);
}

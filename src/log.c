/* SPDX-License-Identifier: MIT */
/* log.c - one line per message on stderr, as text or JSON. */
#include "autoconfig.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "buf.h"
#include "log.h"

static enum log_level current = LOG_LVL_INFO;
static enum log_format format = LOG_TEXT;
static int json_prefix; /* JSON lines keep "<N>" for journald */

void log_set_level(enum log_level level)
{
	current = level;
}

void log_set_format(enum log_format f)
{
	format = f;
	json_prefix = getenv("JOURNAL_STREAM") != NULL;
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

int log_parse_format(const char *s, enum log_format *out)
{
	if (strcmp(s, "text") == 0)
		*out = LOG_TEXT;
	else if (strcmp(s, "json") == 0)
		*out = LOG_JSON;
	else
		return -EINVAL;
	return 0;
}

int log_enabled(enum log_level level)
{
	return level <= current;
}

static const char *level_name(enum log_level level)
{
	switch (level) {
	case LOG_LVL_ERROR: return "error";
	case LOG_LVL_WARN: return "warn";
	case LOG_LVL_INFO: return "info";
	default: return "debug";
	}
}

/* {"ts":"2026-12-01T21:48:18.123456Z","level":"info","msg": */
static void json_head(struct buf *b, enum log_level level, const char *msg)
{
	struct timeval tv;
	struct tm tm;
	char ts[40];

	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
	if (json_prefix)
		buf_printf(b, "<%d>", (int)level);
	buf_printf(b, "{\"ts\":\"%s.%06ldZ\",\"level\":\"%s\",\"msg\":", ts, (long)tv.tv_usec,
	           level_name(level));
	buf_json_string(b, msg);
}

/* Write a finished line at once. */
static void emit(struct buf *b)
{
	buf_puts(b, "\n");
	if (buf_ok(b) == 0)
		fwrite(b->data, 1, b->len, stderr);
	buf_free(b);
}

static void text_line(enum log_level level, char *line)
{
	struct buf b = { 0 };
	char *p;

	/* Client-supplied text must not forge extra log lines. */
	for (p = line; *p; p++)
		if ((unsigned char)*p < 0x20)
			*p = '?';
	buf_printf(&b, "<%d>%s", (int)level, line);
	emit(&b);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	struct buf b = { 0 };
	char line[1024];
	va_list ap;

	if (!log_enabled(level))
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (format == LOG_TEXT) {
		text_line(level, line);
		return;
	}
	json_head(&b, level, line);
	buf_puts(&b, "}");
	emit(&b);
}

/* ,"key":"v" (null when v is NULL or empty) */
static void json_field(struct buf *b, const char *key, const char *v)
{
	buf_printf(b, ",\"%s\":", key);
	if (v == NULL || v[0] == '\0')
		buf_puts(b, "null");
	else
		buf_json_string(b, v);
}

void log_request(const struct log_request *r)
{
	struct buf b = { 0 };
	char line[1024];

	if (!log_enabled(LOG_LVL_INFO))
		return;
	snprintf(line, sizeof(line), "%s %s %d in=%zu out=%zu total_us=%llu%s%s%s%s", r->method,
	         r->path, r->status, r->bytes_in, r->bytes_out, (unsigned long long)r->total_us,
	         r->id && r->id[0] ? " id=" : "", r->id ? r->id : "",
	         r->note && r->note[0] ? " " : "", r->note ? r->note : "");
	if (format == LOG_TEXT) {
		text_line(LOG_LVL_INFO, line);
		return;
	}
	json_head(&b, LOG_LVL_INFO, line);
	json_field(&b, "method", r->method);
	json_field(&b, "path", r->path);
	json_field(&b, "id", r->id);
	buf_printf(&b, ",\"status\":%d,\"bytes_in\":%zu,\"bytes_out\":%zu,\"total_us\":%llu",
	           r->status, r->bytes_in, r->bytes_out, (unsigned long long)r->total_us);
	buf_printf(&b, ",\"queue_us\":%llu,\"compute_us\":%llu", (unsigned long long)r->queue_us,
	           (unsigned long long)r->compute_us);
	json_field(&b, "model", r->model);
	json_field(&b, "peer", r->peer);
	if (r->note != NULL && r->note[0] != '\0')
		json_field(&b, "note", r->note);
	buf_puts(&b, "}");
	emit(&b);
}

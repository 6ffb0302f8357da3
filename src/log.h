/* SPDX-License-Identifier: MIT */
/* log.h - leveled logging to stderr, one line per message, as text or JSON.
 *
 * Text: "<N>message", the syslog-style "<N>" prefix that journald turns into
 * the priority (and it adds the time).  JSON (log_format = json): one object
 * a line, {"ts": RFC 3339 with microseconds, "level", "msg"} and, for
 * requests, their fields; the "<N>" prefix is written only when stderr is
 * journald's (JOURNAL_STREAM set), which strips it, so every line a reader
 * sees is one JSON object.
 *
 * A message is formatted into at most 1023 bytes (longer ones are cut).  In
 * text, control characters (newlines included) become '?', so that text from
 * clients cannot forge lines; in JSON they are escaped as in replies.  Each
 * line is written with one fwrite.  Level and format are process-wide: set
 * them once, before threads start.
 */
#ifndef ATROUSD_LOG_H
#define ATROUSD_LOG_H

#include <stddef.h>
#include <stdint.h>

enum log_level { LOG_LVL_ERROR = 3, LOG_LVL_WARN = 4, LOG_LVL_INFO = 6, LOG_LVL_DEBUG = 7 };
enum log_format { LOG_TEXT, LOG_JSON };

/* Set the most verbose level printed. */
void log_set_level(enum log_level level);

/* Set the format (reads JOURNAL_STREAM to decide on the JSON prefix). */
void log_set_format(enum log_format format);

/* Parse "error", "warn", "info" or "debug"; 0 or -EINVAL. */
int log_parse_level(const char *s, enum log_level *out);

/* Parse "text" or "json"; 0 or -EINVAL. */
int log_parse_format(const char *s, enum log_format *out);

/* Is a message at this level printed? */
int log_enabled(enum log_level level);

/* Print one message if its level is enabled. */
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* One answered request (info level).  Strings may be NULL or "" for none
 * (null in JSON; note is left out then). */
struct log_request {
	const char *method, *path, *id, *model, *peer, *note;
	int status;
	size_t bytes_in, bytes_out;
	uint64_t total_us, queue_us, compute_us;
};

void log_request(const struct log_request *r);

#define log_error(...) log_msg(LOG_LVL_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_LVL_DEBUG, __VA_ARGS__)

#endif

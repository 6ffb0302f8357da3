/* SPDX-License-Identifier: MIT */
/* log.h - leveled logging to stderr, one line per message.
 *
 * Each message is formatted into one line of at most 1023 bytes (longer ones
 * are cut), its control characters (newlines included) replaced by '?' so
 * that text from clients cannot forge lines, and written with one fprintf
 * behind a syslog-style "<N>" prefix, which journald turns into the
 * priority (and time-stamps) when the daemon runs under systemd.  The level
 * is process-wide: set it once, before threads start.
 */
#ifndef ATROUSD_LOG_H
#define ATROUSD_LOG_H

enum log_level { LOG_LVL_ERROR = 3, LOG_LVL_WARN = 4, LOG_LVL_INFO = 6, LOG_LVL_DEBUG = 7 };

/* Set the most verbose level printed. */
void log_set_level(enum log_level level);

/* Parse "error", "warn", "info" or "debug"; 0 or -EINVAL. */
int log_parse_level(const char *s, enum log_level *out);

/* Is a message at this level printed? */
int log_enabled(enum log_level level);

/* Print one message if its level is enabled. */
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_LVL_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_LVL_DEBUG, __VA_ARGS__)

#endif

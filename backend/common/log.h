/*
 * log.h - one logfmt line per event on stderr.
 *
 *   ts=2026-11-23T22:40:01.123Z level=info svc=order-service msg="order accepted" order_id=...
 *
 * The message is quoted for you; the optional key=value tail is printed as
 * given, so pass values that need no quoting (validated ids, numbers) as
 * they are, and every other value (anything that came from outside: a
 * topic, a path, an error text) as key=%s with LOGQ(value).  Logging never
 * fails the caller.
 */
#ifndef PIZZA_LOG_H
#define PIZZA_LOG_H

#include <stdarg.h>
#include <stddef.h>

enum log_level { LOG_LEVEL_ERROR = 0, LOG_LEVEL_WARN, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG };

/*
 * Sets the service name printed as svc= and the highest level printed.
 * When stderr is the systemd journal (JOURNAL_STREAM), each line starts with
 * its syslog priority ("<4>" for a warning) so journalctl -p can filter.
 */
void log_init(const char *svc, enum log_level level);
/* Raises the level by one step per call (each -v). */
void log_verbose(void);

#define LOG_PRINTF(a, b) __attribute__((format(printf, a, b)))

/* Each takes a fixed message and an optional printf-style key=value tail (may be NULL). */
void log_error(const char *msg, const char *kv, ...) LOG_PRINTF(2, 3);
/* Like log_error but appends err="strerror(errno)". */
void log_errno(const char *msg, const char *kv, ...) LOG_PRINTF(2, 3);
void log_warn(const char *msg, const char *kv, ...) LOG_PRINTF(2, 3);
void log_info(const char *msg, const char *kv, ...) LOG_PRINTF(2, 3);
void log_debug(const char *msg, const char *kv, ...) LOG_PRINTF(2, 3);
/* Logs at error level and exits with status 1. */
void fatal(const char *msg, const char *kv, ...) LOG_PRINTF(2, 3) __attribute__((noreturn));

/*
 * Copies s into buf (size n) as a logfmt-safe quoted value: surrounding
 * double quotes, inner quotes and backslashes escaped, control bytes as '?'.
 * Truncates to fit.  Returns buf.
 */
const char *log_quote(char *buf, size_t n, const char *s);

/*
 * log_quote() of s into a buffer that lives until the end of the enclosing
 * block: for the arguments of one log call, e.g.
 *   log_warn("dead letter", "topic=%s", LOGQ(m->topic));
 */
#define LOG_QUOTE_MAX 256
#define LOGQ(s) log_quote((char[LOG_QUOTE_MAX]){ 0 }, LOG_QUOTE_MAX, (s))

#endif

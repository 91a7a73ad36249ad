#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "util.h"

static const char *log_svc = "pizza";
static enum log_level log_max = LOG_LEVEL_INFO;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static int log_journal; /* stderr is the journal: each line starts with its syslog priority */

static const char *const level_names[] = { "error", "warn", "info", "debug" };
static const int level_priorities[] = { 3, 4, 6, 7 }; /* err, warning, info, debug */

/*
 * 1 when stderr is connected to the journal: systemd sets JOURNAL_STREAM to
 * its "device:inode" (systemd.exec(5)).  Then "<4>" before a line is its
 * priority, so `journalctl -p warning` can filter.
 */
static int
stderr_is_journal(void)
{
	const char *js = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;

	return js != NULL && sscanf(js, "%llu:%llu", &dev, &ino) == 2 && fstat(2, &st) == 0 &&
	       (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void
log_init(const char *svc, enum log_level level)
{
	log_svc = svc;
	log_max = level;
	log_journal = stderr_is_journal();
}

void
log_verbose(void)
{
	if (log_max < LOG_LEVEL_DEBUG)
		log_max++;
}

const char *
log_quote(char *buf, size_t n, const char *s)
{
	size_t o = 0;

	if (n < 3) {
		if (n > 0)
			buf[0] = '\0';
		return buf;
	}
	buf[o++] = '"';
	for (; s != NULL && *s != '\0' && o + 3 < n; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\') {
			buf[o++] = '\\';
			buf[o++] = (char)c;
		} else if (c < 0x20 || c == 0x7f) {
			buf[o++] = '?';
		} else {
			buf[o++] = (char)c;
		}
	}
	buf[o++] = '"';
	buf[o] = '\0';
	return buf;
}

static void
log_emit(enum log_level level, const char *msg, const char *errstr, const char *kv, va_list ap)
{
	char ts[32], qmsg[512], tail[1024] = "", qerr[256];

	if (level > log_max)
		return;
	time_rfc3339(now_ms(), ts, sizeof(ts));
	log_quote(qmsg, sizeof(qmsg), msg);
	if (kv != NULL)
		vsnprintf(tail, sizeof(tail), kv, ap);
	pthread_mutex_lock(&log_lock);
	if (log_journal)
		fprintf(stderr, "<%d>", level_priorities[level]);
	fprintf(stderr, "ts=%s level=%s svc=%s msg=%s%s%s", ts, level_names[level], log_svc, qmsg,
	    tail[0] != '\0' ? " " : "", tail);
	if (errstr != NULL)
		fprintf(stderr, " err=%s", log_quote(qerr, sizeof(qerr), errstr));
	fputc('\n', stderr);
	fflush(stderr);
	pthread_mutex_unlock(&log_lock);
}

#define LOG_FN(name, level)                                  \
	void name(const char *msg, const char *kv, ...)      \
	{                                                    \
		va_list ap;                                  \
		va_start(ap, kv);                            \
		log_emit(level, msg, NULL, kv, ap);          \
		va_end(ap);                                  \
	}

LOG_FN(log_error, LOG_LEVEL_ERROR)
LOG_FN(log_warn, LOG_LEVEL_WARN)
LOG_FN(log_info, LOG_LEVEL_INFO)
LOG_FN(log_debug, LOG_LEVEL_DEBUG)

void
log_errno(const char *msg, const char *kv, ...)
{
	va_list ap;
	const char *e = strerror(errno);

	va_start(ap, kv);
	log_emit(LOG_LEVEL_ERROR, msg, e, kv, ap);
	va_end(ap);
}

void
fatal(const char *msg, const char *kv, ...)
{
	va_list ap;

	va_start(ap, kv);
	log_emit(LOG_LEVEL_ERROR, msg, NULL, kv, ap);
	va_end(ap);
	exit(1);
}

/*
 * util.h - small helpers every service needs: clocks, RFC 3339 times,
 * sortable unique ids, bounded string copies, name validation.
 */
#ifndef PIZZA_UTIL_H
#define PIZZA_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define PIZZA_VERSION "0.1.0"

/* Wall-clock milliseconds since the Unix epoch. */
int64_t now_ms(void);
/* Monotonic milliseconds, for deadlines and durations. */
int64_t mono_ms(void);
/* Sets *ts to ms milliseconds from now on clock: a deadline for pthread_cond_timedwait(). */
void clock_after_ms(clockid_t clock, int64_t ms, struct timespec *ts);

/* Formats ms as "YYYY-MM-DDTHH:MM:SS.mmmZ" (24 chars + NUL) into buf. Returns buf. */
char *time_rfc3339(int64_t ms, char *buf, size_t n);
/*
 * Parses exactly the form time_rfc3339() writes.  On success stores the
 * epoch milliseconds in *ms and returns 0; returns -1 on any other input.
 */
int time_parse_rfc3339(const char *s, int64_t *ms);

#define ID_LEN 26 /* ULID: 48-bit ms time + 80 random bits, Crockford base32 */
/* Writes a new time-sortable unique id (ID_LEN chars + NUL) into buf (>= ID_LEN + 1). */
void id_new(char *buf);

/* Fills buf with n random bytes from the kernel. Returns 0, or -1 on failure. */
int random_bytes(void *buf, size_t n);

/*
 * Copies the NUL-terminated src into dst of size n.  Returns 0, or -1 if it
 * did not fit (dst then holds a truncated, terminated copy).
 */
int str_copy(char *dst, size_t n, const char *src);

#define NAME_MAX_LEN 64
/*
 * True if s is a usable name for a user, worker or order id: 1 to
 * NAME_MAX_LEN characters from [A-Za-z0-9_-].  Such a name is safe as one
 * MQTT topic level (no '/', '+', '#') and in logs.
 */
int name_valid(const char *s);

/*
 * Parses a decimal integer in [min, max] from the whole of s.  Returns 0 and
 * stores it in *out, or -1 (nothing stored) on junk, overflow or range.
 */
int parse_long(const char *s, long min, long max, long *out);

/* Sleeps for ms milliseconds (restarting after signals is not done). */
void sleep_ms(int64_t ms);

/*
 * Reads a whole small file (at most max bytes) into a new NUL-terminated
 * buffer the caller frees; trailing newlines are stripped.  Returns NULL on
 * error (errno set) or if the file is larger than max.
 */
char *file_read_small(const char *path, size_t max);

#endif

/*
 * forward.h - order-service's reads forwarded to order-history, off the
 * web threads, to any of several order-history instances.
 *
 * The read endpoints are answered by order-history (api.h).  A forward
 * never holds one of the HTTP server's few threads: the request is
 * deferred (http_defer) and one thread of the forwarder's own runs every
 * forward at once with libcurl's multi interface, then answers it.  A
 * stopped or hung order-history therefore costs reads, never orders:
 *
 *   - each attempt has a short timeout (2 s), and a read all its
 *     attempts together 3 s;
 *   - at most 32 reads are in flight; past that a read is refused at once;
 *   - a circuit breaker per order-history URL: after 3 attempts in a row
 *     got no usable answer (none, or a 5xx), that URL is skipped for 5 s;
 *     then one read goes to it as a trial, and its answer closes the
 *     breaker (or opens it for 5 s more).
 *
 * Several URLs (docs/scaling.md: every order-history instance holds every
 * event): a read goes to the first URL, in the configured order, whose
 * breaker lets it through: the first one while it is healthy, so a client
 * polling an order reads one instance and never sees a stage go back
 * because two instances are a moment apart; the others are the standby.
 * An attempt that got no answer (refused, timed out) or a 5xx is retried
 * once on the next such URL, if the read's budget has 100 ms left (reads
 * are idempotent GETs); a 4xx is the answer, relayed, never retried.
 * When no URL lets a read through, it is refused at once (FORWARD_DOWN).
 *
 * Every forward carries "Authorization: Bearer <history secret>", which
 * order-history requires.  Counted in pizza_history_forwards_total
 * {outcome="answered"|"failed"|"busy"|"down"} (per read),
 * pizza_history_retries_total (reads tried again on another URL),
 * and per configured URL pizza_history_backend_up{url} (1: its breaker is
 * closed) and pizza_history_backend_failures_total{url}.
 */
#ifndef PIZZA_FORWARD_H
#define PIZZA_FORWARD_H

#include <stddef.h>

/* At most this many URLs in a list (and as many url label values in the metrics). */
#define FORWARD_MAX_URLS 8

struct forwarder;

struct forward_policy {
	long timeout_ms;  /* one attempt, connecting included */
	int max_inflight; /* reads at once */
	int trip_after;   /* attempts in a row without a usable answer that open a URL's breaker */
	long open_ms;     /* how long an open breaker refuses before a trial */
	long budget_ms;   /* one read, its retry included */
};

/* The policy above: 2 s, 32, 3, 5 s, 3 s. */
extern const struct forward_policy forward_default_policy;

enum forward_result {
	FORWARD_QUEUED, /* done() will be called, from the forwarder's thread */
	FORWARD_BUSY,   /* max_inflight forwards are in flight already */
	FORWARD_DOWN,   /* every URL's breaker is open: order-history is known not to answer */
	FORWARD_FAIL    /* out of memory */
};

/*
 * A forward's outcome: status is order-history's HTTP status (a 5xx only
 * when the retry got one too, or there was nothing to retry on), or 0 when
 * no answer came (timeout, refused connection, the forwarder stopping);
 * body is a new NUL-terminated string the callee frees (NULL with status
 * 0).  Runs on the forwarder's thread: keep it short.
 */
typedef void (*forward_done)(void *arg, long status, char *body);

/*
 * Checks a comma-separated list of order-history base URLs (e.g.
 * "http://10.0.0.1:8081,http://10.0.0.2:8081"; spaces around a comma
 * allowed): 1 to FORWARD_MAX_URLS of them, each http:// or https:// with
 * a host, no user or password, query or fragment, quote, backslash or
 * control character, none listed twice.  Returns 0, or -1 with what is
 * wrong (naming the URL) in err of n bytes.
 */
int forward_check_urls(const char *urls, char *err, size_t n);

/*
 * Starts a forwarder to the URLs of the list urls (forward_check_urls())
 * sending secret (copied; NULL: no Authorization header).  Returns NULL
 * when the list is not valid, out of memory or no thread can be started.
 */
struct forwarder *forward_start(const char *urls, const char *secret, const struct forward_policy *p);

/*
 * GETs a URL's base + path_query (path and query, already encoded).
 * Returns FORWARD_QUEUED, after which done(arg, ...) is called exactly
 * once; any other result means done() will not be called, and
 * *retry_after_s holds the seconds a client should wait before trying
 * again (>= 1).
 */
enum forward_result forward_get(
    struct forwarder *f, const char *path_query, forward_done done, void *arg, int *retry_after_s);

/* Stops the thread; forwards still in flight are done with status 0.  NULL is ignored. */
void forward_stop(struct forwarder *f);

#endif

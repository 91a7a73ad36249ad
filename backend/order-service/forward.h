/*
 * forward.h - order-service's reads forwarded to order-history, off the
 * web threads.
 *
 * The read endpoints are answered by order-history (api.h).  A forward
 * never holds one of the HTTP server's few threads: the request is
 * deferred (http_defer) and one thread of the forwarder's own runs every
 * forward at once with libcurl's multi interface, then answers it.  A
 * stopped or hung order-history therefore costs reads, never orders:
 *
 *   - each forward has a short timeout (2 s);
 *   - at most 32 are in flight; past that a read is refused at once;
 *   - a circuit breaker: after 3 forwards in a row got no answer, reads
 *     are refused at once for 5 s; then one goes through as a trial, and
 *     its answer closes the breaker (or opens it for 5 s more).
 *
 * Every forward carries "Authorization: Bearer <history secret>", which
 * order-history requires.  Counted in pizza_history_forwards_total
 * {outcome="answered"|"failed"|"busy"|"down"}.
 */
#ifndef PIZZA_FORWARD_H
#define PIZZA_FORWARD_H

struct forwarder;

struct forward_policy {
	long timeout_ms;  /* one forward, connecting included */
	int max_inflight; /* forwards at once */
	int trip_after;   /* forwards in a row without an answer that open the breaker */
	long open_ms;     /* how long the open breaker refuses before a trial */
};

/* The policy above: 2 s, 32, 3, 5 s. */
extern const struct forward_policy forward_default_policy;

enum forward_result {
	FORWARD_QUEUED, /* done() will be called, from the forwarder's thread */
	FORWARD_BUSY,   /* max_inflight forwards are in flight already */
	FORWARD_DOWN,   /* the breaker is open: order-history is known not to answer */
	FORWARD_FAIL    /* out of memory */
};

/*
 * A forward's outcome: status is order-history's HTTP status, or 0 when
 * no answer came (timeout, refused connection, the forwarder stopping);
 * body is a new NUL-terminated string the callee frees (NULL with status
 * 0).  Runs on the forwarder's thread: keep it short.
 */
typedef void (*forward_done)(void *arg, long status, char *body);

/*
 * Starts a forwarder to base_url (e.g. "http://127.0.0.1:8081") sending
 * secret (copied; NULL: no Authorization header).  Returns NULL when out
 * of memory or no thread can be started.
 */
struct forwarder *forward_start(const char *base_url, const char *secret, const struct forward_policy *p);

/*
 * GETs base_url + path_query (path and query, already encoded).  Returns
 * FORWARD_QUEUED, after which done(arg, ...) is called exactly once; any
 * other result means done() will not be called, and *retry_after_s holds
 * the seconds a client should wait before trying again (>= 1).
 */
enum forward_result forward_get(
    struct forwarder *f, const char *path_query, forward_done done, void *arg, int *retry_after_s);

/* Stops the thread; forwards still in flight are done with status 0.  NULL is ignored. */
void forward_stop(struct forwarder *f);

#endif

/*
 * httpd.h - the HTTP server every service uses (libmicrohttpd underneath).
 *
 * It reads the request body up to a limit (answering 413 past it), hands
 * one complete request to the handler, and sends what the handler filled
 * in.  Every error answer has one shape: {"error":"<code>","detail":"<text>"}.
 * The handler runs on one of the server's threads; several may run at once.
 */
#ifndef PIZZA_HTTPD_H
#define PIZZA_HTTPD_H

#include <stddef.h>

#include <jansson.h>

struct httpd;
struct MHD_Connection;

struct http_req {
	const char *method;
	const char *path; /* without the query string */
	const char *body; /* NUL-terminated; "" when there is none */
	size_t body_len;
	struct MHD_Connection *conn;
	void *upload; /* the server's per-request state (http_defer) */
};

struct http_resp {
	int status;
	char *body;               /* malloc'd, freed by httpd */
	const char *content_type; /* default application/json */
	char location[256];       /* Location header when not empty */
	const char *allow;        /* Allow header (with 405) */
	int retry_after;          /* Retry-After seconds when > 0 */
	const char *www_authenticate; /* WWW-Authenticate header (with 401) */
};

typedef void (*http_handler)(void *arg, const struct http_req *req, struct http_resp *resp);

/*
 * For a handler that answers later, from another thread (after a group
 * commit): it calls http_defer(), leaves resp unset and returns; the server
 * holds the connection, without a thread, until http_finish(d, resp) fills
 * the answer (exactly once, from any thread; resp->body is taken over).
 * A server stopping meanwhile answers 503 and http_finish() then frees
 * what is left.
 */
struct http_deferred;
struct http_deferred *http_defer(const struct http_req *req);
void http_finish(struct http_deferred *d, struct http_resp *resp);

/* A request header (case-insensitive name) or query argument; NULL when absent. */
const char *http_header(const struct http_req *req, const char *name);
const char *http_query(const struct http_req *req, const char *name);

/* Sets the response to status with the JSON body (a reference the call steals). */
void http_json(struct http_resp *resp, int status, json_t *body);
/* Sets an error response {"error":code,"detail":...}. */
void http_error(struct http_resp *resp, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/*
 * Listens on bind_addr:port (port 0 picks one; see httpd_port), with bodies
 * of at most max_body bytes (413 past it), request line and headers within
 * a 64 KiB connection buffer (431 past it), a URL of at most 8 KiB and 64
 * query arguments (414 past either, at once), and the connection limits
 * of httpd_conn_limits() at their defaults.  Returns NULL with a reason
 * in err.
 */
struct httpd *httpd_start(const char *bind_addr, int port, size_t max_body, http_handler handler, void *arg,
    char *err, size_t errlen);
/*
 * What keeps slow and idle clients from taking every connection:
 *   - budget_ms (10,000): a request's headers and body must all arrive
 *     within it, counted from when the connection became ready for that
 *     request (opened, or done answering the previous one); past it the
 *     connection is closed, however steadily the client trickles bytes.
 *     A client silent for 10 s is closed too.
 *   - per_addr (64) connections per client address and total (1,000, or
 *     fewer when the process's descriptor limit is low) in all.  A new
 *     connection past either closes, to make room, the connection of that
 *     address (or of any) that has waited longest for its request: slow
 *     and idle clients lose their place, not new ones.  Only when all are
 *     busy being answered is the new one closed.
 * Closed connections are counted in pizza_http_connections_closed_total
 * {reason="request_budget"|"per_address"|"total"} and logged at most every
 * 10 s.  Values <= 0 keep the current setting; the caps cannot be raised
 * above their defaults (tests lower them).
 */
void httpd_conn_limits(struct httpd *h, int per_addr, int total, int budget_ms);
/*
 * Limits each client address to rate requests per second on average with
 * bursts of up to burst (a token bucket); past it the answer is 429 with
 * Retry-After, before the handler runs.  rate <= 0 turns it off (the default).
 * Addresses are told apart exactly (ratelimit.h): no address can use or
 * take over another's allowance.
 */
void httpd_rate_limit(struct httpd *h, double rate, double burst);

/*
 * The route templates of h's requests, for the request metrics
 * pizza_http_requests_total{route,code} and
 * pizza_http_request_duration_seconds{route,code}: NULL-ended, such as
 * { "/v1/orders", "/v1/orders/{id}", NULL }, where a "{name}" segment
 * matches any one non-empty segment.  A path no template matches counts
 * as route="other": the labels never hold a raw path, so the series stay
 * few whatever clients send.  routes must outlive h.  Until this is
 * called (or with NULL): { "/metrics", "/healthz", NULL }.
 */
void httpd_routes(struct httpd *h, const char *const *routes);
/* The first template of routes (NULL-ended; may be NULL) that path matches, or "other". */
const char *httpd_route(const char *const *routes, const char *path);

/* The client's address as text (for logs and limits). */
const char *http_client_addr(const struct http_req *req, char *buf, size_t n);

/* The port actually listened on. */
int httpd_port(const struct httpd *h);
/* Stops listening and waits for handlers in progress. NULL is ignored. */
void httpd_stop(struct httpd *h);

#endif

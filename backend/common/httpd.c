#include "httpd.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "event.h"
#include "log.h"
#include "metrics.h"
#include "ratelimit.h"
#include "util.h"

#define HTTPD_THREADS 4
#define HTTPD_TIMEOUT_S 10 /* a client silent this long is dropped */
#define HTTPD_REQUEST_BUDGET_MS 10000 /* a whole request (headers and body) must arrive within this */
#define HTTPD_PER_IP_CONNECTIONS 64
#define HTTPD_MAX_CONNECTIONS 1000 /* in all (fewer when the descriptor limit is low) */
#define HTTPD_CONN_SLACK 64 /* libmicrohttpd's own caps sit this far above ours: see conn_started() */
#define HTTPD_SWEEP_MS 250 /* how often the request budget is checked */
#define HTTPD_MAX_URL 8192 /* bytes of path and query; 414 past it */
#define HTTPD_MAX_ARGS 64 /* query arguments; 414 past it */
#define HTTPD_LIMITER_KEYS 16384 /* client addresses the rate limiter tracks at once */

/* Why a connection was closed early, for the counter and the log. */
enum shed_reason { SHED_BUDGET, SHED_PER_ADDRESS, SHED_TOTAL, SHED_NREASONS };
static const char *const shed_names[SHED_NREASONS] = { "request_budget", "per_address", "total" };

/*
 * One open connection (libmicrohttpd's socket context), from
 * MHD_CONNECTION_NOTIFY_STARTED to _CLOSED.  Under conn_lock.  "Waiting"
 * means not busy: receiving a request, or idle between two; since is when
 * it began to wait, and the request budget runs from there.
 */
struct http_conn {
	struct http_conn *prev, *next;
	int fd;
	unsigned char addr[16];
	int64_t since;
	int busy; /* a complete request is being answered (the handler, a deferred answer, the response) */
	int shed; /* shut down by us: libmicrohttpd closes it on its next look */
};

struct httpd {
	struct MHD_Daemon *d;
	http_handler handler;
	void *arg;
	size_t max_body;
	int port;
	struct ratelimit *limiter; /* per client address (no limit until httpd_rate_limit()) */
	/* deferred answers (http_defer): guards the flags in each http_upload */
	pthread_mutex_t defer_lock;
	pthread_cond_t defer_idle;
	int deferred; /* http_defer() calls not yet matched by http_finish() */
	/* open connections and their limits (httpd_conn_limits), under conn_lock */
	pthread_mutex_t conn_lock;
	pthread_cond_t sweep_wake;
	pthread_t sweeper;
	int sweeping, stopping;
	struct http_conn *conns;
	int nconns;         /* open and not shed */
	int per_addr, total; /* our caps (libmicrohttpd refuses only past them + HTTPD_CONN_SLACK) */
	int per_addr_max, total_max; /* what httpd_start() set: the caps cannot go above */
	int64_t budget_ms;
	int shed_unlogged[SHED_NREASONS];
	int64_t shed_logged_at;
	_Atomic(const char *const *) routes; /* route templates for the request metrics (httpd_routes) */
};

/* Per-request state: the body while it arrives, then a deferred answer. */
struct http_upload {
	char *buf;
	size_t len, cap;
	int too_large;
	int started;   /* the handler's first call (the headers) has happened */
	int uri_refused; /* the URL is over HTTPD_MAX_URL bytes or HTTPD_MAX_ARGS arguments: 414 */
	struct httpd *h;
	struct MHD_Connection *conn;
	/* under h->defer_lock: */
	int deferred;  /* the handler called http_defer() and has not finished */
	int suspended; /* MHD holds the connection until http_finish() resumes it */
	int finished;  /* resp holds the answer */
	int orphaned;  /* MHD is done with the request: http_finish() frees this */
	struct http_resp resp;
	int64_t t0_us; /* when its URL arrived, for pizza_http_request_duration_seconds */
};

const char *
http_header(const struct http_req *req, const char *name)
{
	return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

const char *
http_query(const struct http_req *req, const char *name)
{
	return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
}

void
http_json(struct http_resp *resp, int status, json_t *body)
{
	free(resp->body);
	resp->status = status;
	resp->body = body != NULL ? json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
	json_decref(body);
}

void
http_error(struct http_resp *resp, int status, const char *code, const char *fmt, ...)
{
	char detail[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	http_json(resp, status, json_pack("{s:s, s:o}", "error", code, "detail", event_json_lossy(detail)));
}

/* The client address as 16 bytes (IPv4 mapped into IPv6). */
static void
client_key(struct MHD_Connection *conn, unsigned char key[16])
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	const struct sockaddr *sa = ci != NULL ? ci->client_addr : NULL;

	memset(key, 0, 16);
	if (sa != NULL && sa->sa_family == AF_INET) {
		key[10] = key[11] = 0xff;
		memcpy(key + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
	} else if (sa != NULL && sa->sa_family == AF_INET6)
		memcpy(key, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
}

/* ---- request metrics: by route template and status code ------------------------------ */

#define HTTPD_MAX_SERIES 256 /* (route, code) pairs; far more than the routes and codes there are */

static const char *const default_routes[] = { "/metrics", "/healthz", NULL };
/* From half a millisecond (a /metrics scrape) to the 10 s request budget and beyond. */
static const double request_buckets[] = { 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
	5, 10, 30 };

/* One (route, code) pair's counter and histogram, shared by every server of the process (the registry is). */
static struct {
	const char *route;
	int code;
	struct metric *count, *seconds;
} series[HTTPD_MAX_SERIES];
static int nseries;
static pthread_mutex_t series_lock = PTHREAD_MUTEX_INITIALIZER;

static int64_t
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* 1 when path matches template t segment by segment, a "{name}" segment matching any one non-empty segment. */
static int
route_match(const char *t, const char *path)
{
	while (*t != '\0' && *path != '\0') {
		size_t tl = strcspn(t + 1, "/") + 1, pl = strcspn(path + 1, "/") + 1;

		if (t[0] != '/' || path[0] != '/')
			return 0;
		if (t[1] == '{' && t[tl - 1] == '}') {
			if (pl < 2)
				return 0; /* an empty segment is no id */
		} else if (tl != pl || strncmp(t, path, tl) != 0)
			return 0;
		t += tl;
		path += pl;
	}
	return *t == '\0' && *path == '\0';
}

const char *
httpd_route(const char *const *routes, const char *path)
{
	for (int i = 0; routes != NULL && routes[i] != NULL; i++)
		if (route_match(routes[i], path))
			return routes[i];
	return "other";
}

void
httpd_routes(struct httpd *h, const char *const *routes)
{
	atomic_store(&h->routes, routes != NULL ? routes : default_routes);
}

/*
 * Counts one answered request: route is a template (a constant that
 * outlives the process's metrics), never the raw path, so the series
 * stay as few as the routes times the codes the handlers use.
 */
static void
count_request(const char *route, int code, int64_t t0_us)
{
	struct metric *count = NULL, *seconds = NULL;

	pthread_mutex_lock(&series_lock);
	for (int i = 0; i < nseries && count == NULL; i++)
		if (series[i].code == code && strcmp(series[i].route, route) == 0) {
			count = series[i].count;
			seconds = series[i].seconds;
		}
	if (count == NULL && nseries < HTTPD_MAX_SERIES) {
		char labels[160];

		snprintf(labels, sizeof(labels), "route=\"%s\",code=\"%d\"", route, code);
		count = metric_counter("pizza_http_requests_total", "HTTP requests answered, by route template and status code",
		    labels);
		seconds = metric_histogram("pizza_http_request_duration_seconds",
		    "Time from a request's URL arriving to its answer being queued, by route template and status code", labels,
		    request_buckets, (int)(sizeof(request_buckets) / sizeof(request_buckets[0])));
		series[nseries].route = route;
		series[nseries].code = code;
		series[nseries].count = count;
		series[nseries].seconds = seconds;
		nseries++;
	}
	pthread_mutex_unlock(&series_lock);
	metric_inc(count);
	metric_observe(seconds, (double)(now_us() - t0_us) / 1e6);
}

/* ---- connections: the request budget and the caps ---------------------------------- */

static pthread_once_t shed_metrics_once = PTHREAD_ONCE_INIT;
static struct metric *shed_metrics[SHED_NREASONS];

static void
shed_metrics_init(void)
{
	for (int i = 0; i < SHED_NREASONS; i++) {
		char labels[64];

		snprintf(labels, sizeof(labels), "reason=\"%s\"", shed_names[i]);
		shed_metrics[i] = metric_counter("pizza_http_connections_closed_total",
		    "HTTP connections closed by the server before their request was complete, by reason", labels);
	}
}

/*
 * Closes c: shutdown() of its socket, which libmicrohttpd sees as the
 * client going away (it closes the connection and tells conn_closed()).
 * The descriptor is still libmicrohttpd's and open: it closes it only
 * after MHD_CONNECTION_NOTIFY_CLOSED, which waits for conn_lock (held).
 */
static void
shed(struct httpd *h, struct http_conn *c, enum shed_reason why)
{
	shutdown(c->fd, SHUT_RDWR);
	c->shed = 1;
	h->nconns--;
	h->shed_unlogged[why]++;
	metric_inc(shed_metrics[why]);
}

/* The connection that has waited longest, of addr (NULL: of any), other than except; NULL if none waits.  conn_lock held. */
static struct http_conn *
longest_waiting(struct httpd *h, const unsigned char *addr, const struct http_conn *except)
{
	struct http_conn *best = NULL;

	for (struct http_conn *c = h->conns; c != NULL; c = c->next)
		if (c != except && !c->busy && !c->shed && (addr == NULL || memcmp(c->addr, addr, 16) == 0) &&
		    (best == NULL || c->since < best->since))
			best = c;
	return best;
}

/*
 * A new connection: tracked, and the caps kept.  Past the cap of its
 * address, or the total, the connection that has waited longest for its
 * request (of that address, or of any) is closed to make room: a slow or
 * idle client loses its place, not a new one.  Only when every other
 * connection is busy being answered is the new one closed instead.
 * libmicrohttpd's own limits sit HTTPD_CONN_SLACK above ours, so it
 * accepts the connection that gets here; they only refuse in the moment
 * before a closed connection is cleaned up.
 */
static void
conn_started(struct httpd *h, struct MHD_Connection *conn, void **socket_context)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
	struct http_conn *c = calloc(1, sizeof(*c)), *v;
	int same = 0;

	*socket_context = c;
	if (c == NULL || ci == NULL) {
		free(c);
		*socket_context = NULL;
		return;
	}
	c->fd = ci->connect_fd;
	client_key(conn, c->addr);
	c->since = mono_ms();
	pthread_mutex_lock(&h->conn_lock);
	c->next = h->conns;
	if (h->conns != NULL)
		h->conns->prev = c;
	h->conns = c;
	h->nconns++;
	for (struct http_conn *o = h->conns; o != NULL; o = o->next)
		same += !o->shed && memcmp(o->addr, c->addr, 16) == 0;
	if (same > h->per_addr)
		shed(h, (v = longest_waiting(h, c->addr, c)) != NULL ? v : c, SHED_PER_ADDRESS);
	if (!c->shed && h->nconns > h->total)
		shed(h, (v = longest_waiting(h, NULL, c)) != NULL ? v : c, SHED_TOTAL);
	pthread_mutex_unlock(&h->conn_lock);
}

static void
conn_closed(struct httpd *h, struct http_conn *c)
{
	if (c == NULL)
		return;
	pthread_mutex_lock(&h->conn_lock);
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		h->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	if (!c->shed)
		h->nconns--;
	pthread_mutex_unlock(&h->conn_lock);
	free(c);
}

static void
on_connection(void *cls, struct MHD_Connection *conn, void **socket_context, enum MHD_ConnectionNotificationCode toe)
{
	struct httpd *h = cls;

	if (toe == MHD_CONNECTION_NOTIFY_STARTED)
		conn_started(h, conn, socket_context);
	else if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
		conn_closed(h, *socket_context);
		*socket_context = NULL;
	}
}

/* Marks conn busy (its request is complete and being answered) or waiting again (its answer is sent). */
static void
conn_busy(struct httpd *h, struct MHD_Connection *conn, int busy)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	struct http_conn *c = ci != NULL ? ci->socket_context : NULL;

	if (c == NULL)
		return;
	pthread_mutex_lock(&h->conn_lock);
	if (!busy && c->busy)
		c->since = mono_ms(); /* the next request's budget starts now */
	c->busy = busy;
	pthread_mutex_unlock(&h->conn_lock);
}

/*
 * The sweeper: every HTTPD_SWEEP_MS, closes each connection whose request
 * has not arrived whole within the budget.  libmicrohttpd's timeout only
 * catches a silent client; this one catches a client that trickles a byte
 * now and then.  Logs what it and the caps closed, at most every 10 s.
 */
static void *
sweep(void *arg)
{
	struct httpd *h = arg;
	struct timespec until;

	pthread_mutex_lock(&h->conn_lock);
	while (!h->stopping) {
		int64_t now = mono_ms();

		for (struct http_conn *c = h->conns; c != NULL; c = c->next)
			if (!c->busy && !c->shed && now - c->since >= h->budget_ms)
				shed(h, c, SHED_BUDGET);
		if (now - h->shed_logged_at >= 10000 &&
		    h->shed_unlogged[SHED_BUDGET] + h->shed_unlogged[SHED_PER_ADDRESS] + h->shed_unlogged[SHED_TOTAL] > 0) {
			log_warn("closed slow or idle http connections", "port=%d request_budget=%d per_address=%d total=%d open=%d",
			    h->port, h->shed_unlogged[SHED_BUDGET], h->shed_unlogged[SHED_PER_ADDRESS],
			    h->shed_unlogged[SHED_TOTAL], h->nconns);
			memset(h->shed_unlogged, 0, sizeof(h->shed_unlogged));
			h->shed_logged_at = now;
		}
		clock_after_ms(CLOCK_MONOTONIC, HTTPD_SWEEP_MS, &until);
		pthread_cond_timedwait(&h->sweep_wake, &h->conn_lock, &until);
	}
	pthread_mutex_unlock(&h->conn_lock);
	return NULL;
}

void
httpd_conn_limits(struct httpd *h, int per_addr, int total, int budget_ms)
{
	pthread_mutex_lock(&h->conn_lock);
	if (per_addr > 0)
		h->per_addr = per_addr < h->per_addr_max ? per_addr : h->per_addr_max;
	if (total > 0)
		h->total = total < h->total_max ? total : h->total_max;
	if (budget_ms > 0)
		h->budget_ms = budget_ms;
	pthread_mutex_unlock(&h->conn_lock);
}

/*
 * Called by libmicrohttpd with the raw URL of each request, before it
 * parses the query: the request's state starts here, and a URL over the
 * caps is marked for a 414.  libmicrohttpd 0.9.75 parses the arguments
 * into the connection's 64 KiB of memory right after this call, and when
 * they do not fit, the 431 it queues is overwritten by its parser's next
 * state: the client waits for the idle timeout and gets no answer.  So
 * past the caps the query is cut here, before it is parsed: uri points
 * into libmicrohttpd's own writable read buffer (it writes NULs into it
 * itself while parsing), and a NUL after the '?' leaves no arguments.
 */
static void *
on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
	struct httpd *h = cls;
	struct http_upload *u = calloc(1, sizeof(*u));
	const char *q = strchr(uri, '?');
	size_t args = 0;

	if (u == NULL)
		return NULL; /* on_request makes one */
	u->h = h;
	u->conn = conn;
	u->t0_us = now_us();
	if (q != NULL && q[1] != '\0')
		for (const char *p = q; *p != '\0' && args <= HTTPD_MAX_ARGS; p++)
			args += *p == '&' || p == q;
	u->uri_refused = args > HTTPD_MAX_ARGS || strlen(uri) > HTTPD_MAX_URL;
	if (u->uri_refused && q != NULL)
		((char *)q)[1] = '\0';
	return u;
}

const char *
http_client_addr(const struct http_req *req, char *buf, size_t n)
{
	unsigned char k[16];

	client_key(req->conn, k);
	if (k[10] == 0xff && k[11] == 0xff && memcmp(k, "\0\0\0\0\0\0\0\0\0\0", 10) == 0)
		inet_ntop(AF_INET, k + 12, buf, (socklen_t)n);
	else
		inet_ntop(AF_INET6, k, buf, (socklen_t)n);
	return buf;
}

void
httpd_rate_limit(struct httpd *h, double rate, double burst)
{
	ratelimit_set(h->limiter, rate, burst);
}

/*
 * Takes one token from the client address's bucket.  Returns 0, or the
 * seconds to wait when it is empty (*rate then holds the limit, for the
 * answer).
 */
static int
rate_take(struct httpd *h, struct MHD_Connection *conn, double *rate)
{
	unsigned char key[16];
	int64_t wait_ms;

	client_key(conn, key);
	if ((wait_ms = ratelimit_take(h->limiter, key, sizeof(key), mono_ms())) == 0)
		return 0;
	*rate = ratelimit_rate(h->limiter);
	return (int)((wait_ms + 999) / 1000);
}

static enum MHD_Result
send_resp(struct MHD_Connection *conn, struct http_resp *r)
{
	struct MHD_Response *mr;
	enum MHD_Result ret;
	char retry[16];
	const char *body = r->body != NULL ? r->body : "";

	mr = MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_MUST_COPY);
	if (mr == NULL)
		return MHD_NO;
	MHD_add_response_header(mr, "Content-Type", r->content_type != NULL ? r->content_type : "application/json");
	MHD_add_response_header(mr, "Cache-Control", "no-store");
	if (r->location[0] != '\0')
		MHD_add_response_header(mr, "Location", r->location);
	if (r->allow != NULL)
		MHD_add_response_header(mr, "Allow", r->allow);
	if (r->www_authenticate != NULL)
		MHD_add_response_header(mr, "WWW-Authenticate", r->www_authenticate);
	if (r->retry_after > 0) {
		snprintf(retry, sizeof(retry), "%d", r->retry_after);
		MHD_add_response_header(mr, "Retry-After", retry);
	}
	ret = MHD_queue_response(conn, (unsigned)r->status, mr);
	MHD_destroy_response(mr);
	return ret;
}

/* Counts the request of u to url in the request metrics and sends its answer r. */
static enum MHD_Result
answer(struct httpd *h, struct http_upload *u, struct MHD_Connection *conn, const char *url, struct http_resp *r)
{
	count_request(httpd_route(atomic_load(&h->routes), url), r->status, u->t0_us);
	return send_resp(conn, r);
}

/* Appends n bytes of body to u, or marks it too large past the limit.  Returns 0, or -1 out of memory. */
static int
upload_append(const struct httpd *h, struct http_upload *u, const char *data, size_t n)
{
	if (!u->too_large && u->len + n > h->max_body)
		u->too_large = 1;
	if (u->too_large)
		return 0;
	if (u->len + n + 1 > u->cap) {
		size_t cap = u->cap ? u->cap : 1024;
		char *nb;
		while (cap < u->len + n + 1)
			cap *= 2;
		if ((nb = realloc(u->buf, cap)) == NULL)
			return -1;
		u->buf = nb;
		u->cap = cap;
	}
	memcpy(u->buf + u->len, data, n);
	u->len += n;
	u->buf[u->len] = '\0';
	return 0;
}

/* Moves the answer http_finish() left in u into resp.  defer_lock held. */
static void
take_finished(struct http_upload *u, struct http_resp *resp)
{
	*resp = u->resp;
	memset(&u->resp, 0, sizeof(u->resp));
	u->deferred = u->finished = 0;
}

static enum MHD_Result
on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method, const char *version,
    const char *upload_data, size_t *upload_data_size, void **con_cls)
{
	struct httpd *h = cls;
	struct http_upload *u = *con_cls;
	struct http_resp resp;
	struct http_req req;
	enum MHD_Result ret;
	double rate;

	(void)version;
	if (u == NULL) {
		/* on_uri() had no memory */
		if ((u = calloc(1, sizeof(*u))) == NULL)
			return MHD_NO;
		u->h = h;
		u->conn = conn;
		u->t0_us = now_us();
		*con_cls = u;
	}
	if (!u->started) {
		/* the headers are in; the body (if any) comes in the next calls */
		const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");

		u->started = 1;
		if (u->uri_refused || (cl != NULL && strtoull(cl, NULL, 10) > h->max_body))
			u->too_large = 1; /* nothing of the body is kept */
		return MHD_YES;
	}
	if (*upload_data_size > 0) {
		if (upload_append(h, u, upload_data, *upload_data_size) != 0)
			return MHD_NO;
		*upload_data_size = 0;
		return MHD_YES;
	}

	pthread_mutex_lock(&h->defer_lock);
	if (u->deferred || u->finished) {
		/* resumed by http_finish(), or by the server stopping before it came */
		memset(&resp, 0, sizeof(resp));
		if (!u->finished)
			/* u stays deferred: on_done leaves it to http_finish() */
			http_error(&resp, 503, "unavailable", "the server is shutting down; please retry");
		else
			take_finished(u, &resp);
		pthread_mutex_unlock(&h->defer_lock);
		ret = answer(h, u, conn, url, &resp);
		free(resp.body);
		return ret;
	}
	pthread_mutex_unlock(&h->defer_lock);
	/* the request is complete: from here its answer is on us, not on the request budget */
	conn_busy(h, conn, 1);
	memset(&resp, 0, sizeof(resp));
	if ((resp.retry_after = rate_take(h, conn, &rate)) > 0) {
		http_error(&resp, 429, "too_many_requests", "slow down: at most %.0f requests per second", rate);
	} else if (u->uri_refused) {
		http_error(&resp, 414, "uri_too_long", "the URL is over %d bytes or %d query arguments", HTTPD_MAX_URL,
		    HTTPD_MAX_ARGS);
	} else if (u->too_large) {
		http_error(&resp, 413, "too_large", "the request body is over the %zu byte limit", h->max_body);
	} else {
		memset(&req, 0, sizeof(req));
		req.method = method;
		req.path = url;
		req.body = u->buf != NULL ? u->buf : "";
		req.body_len = u->len;
		req.conn = conn;
		req.upload = u;
		h->handler(h->arg, &req, &resp);
		pthread_mutex_lock(&h->defer_lock);
		if (u->deferred && !u->finished) {
			/* http_finish() resumes it; MHD then calls on_request again, above */
			MHD_suspend_connection(conn);
			u->suspended = 1;
			pthread_mutex_unlock(&h->defer_lock);
			free(resp.body);
			return MHD_YES;
		}
		if (u->deferred) {
			/* finished already, before MHD held the connection */
			free(resp.body);
			take_finished(u, &resp);
		}
		pthread_mutex_unlock(&h->defer_lock);
		if (resp.status == 0)
			http_error(&resp, 500, "internal", "no response");
	}
	ret = answer(h, u, conn, url, &resp);
	free(resp.body);
	return ret;
}

struct http_deferred *
http_defer(const struct http_req *req)
{
	struct http_upload *u = req->upload;

	if (u == NULL)
		return NULL;
	pthread_mutex_lock(&u->h->defer_lock);
	u->deferred = 1;
	u->h->deferred++;
	pthread_mutex_unlock(&u->h->defer_lock);
	return (struct http_deferred *)u;
}

void
http_finish(struct http_deferred *d, struct http_resp *resp)
{
	struct http_upload *u = (struct http_upload *)d;
	struct httpd *h = u->h;

	if (resp->status == 0)
		http_error(resp, 500, "internal", "no response");
	pthread_mutex_lock(&h->defer_lock);
	if (u->orphaned) {
		/* the server stopped and answered 503 meanwhile */
		free(resp->body);
		free(u->buf);
		free(u);
	} else {
		u->resp = *resp;
		u->finished = 1;
		if (u->suspended) {
			u->suspended = 0;
			MHD_resume_connection(u->conn);
		}
	}
	if (--h->deferred == 0)
		pthread_cond_broadcast(&h->defer_idle);
	pthread_mutex_unlock(&h->defer_lock);
	memset(resp, 0, sizeof(*resp));
}

static void
on_done(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe)
{
	struct http_upload *u = *con_cls;
	struct httpd *h = cls;

	(void)toe;
	conn_busy(h, conn, 0);
	if (u == NULL)
		return;
	*con_cls = NULL;
	pthread_mutex_lock(&h->defer_lock);
	if (u->deferred && !u->finished) {
		/* http_finish() has yet to come: it frees u */
		u->orphaned = 1;
		u->suspended = 0;
		pthread_mutex_unlock(&h->defer_lock);
		return;
	}
	pthread_mutex_unlock(&h->defer_lock);
	free(u->resp.body);
	free(u->buf);
	free(u);
}

/*
 * libmicrohttpd's messages.  Those about one client's connection going
 * away (which every connection the limits close produces, thousands a
 * second under a slowloris) are debug; the rest are warnings.
 */
static void
on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	static const char *const per_client[] = { "closed by remote side", "connection closure", "has been disconnected",
		"connection limit", NULL };
	char msg[512], q[600];

	(void)cls;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	msg[strcspn(msg, "\n")] = '\0';
	for (int i = 0; per_client[i] != NULL; i++)
		if (strstr(msg, per_client[i]) != NULL) {
			log_debug("http server", "detail=%s", log_quote(q, sizeof(q), msg));
			return;
		}
	log_warn("http server", "detail=%s", log_quote(q, sizeof(q), msg));
}

struct httpd *
httpd_start(const char *bind_addr, int port, size_t max_body, http_handler handler, void *arg, char *err,
    size_t errlen)
{
	struct sockaddr_in sa;
	struct httpd *h;
	const union MHD_DaemonInfo *info;
	struct rlimit rl;

	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)port);
	if (inet_pton(AF_INET, bind_addr, &sa.sin_addr) != 1) {
		snprintf(err, errlen, "'%s' is not an IPv4 address to listen on", bind_addr);
		return NULL;
	}
	if ((h = calloc(1, sizeof(*h))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	h->handler = handler;
	h->arg = arg;
	h->max_body = max_body;
	atomic_init(&h->routes, default_routes);
	if ((h->limiter = ratelimit_new(0, 1, HTTPD_LIMITER_KEYS)) == NULL) {
		free(h);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	pthread_mutex_init(&h->defer_lock, NULL);
	pthread_cond_init(&h->defer_idle, NULL);
	pthread_mutex_init(&h->conn_lock, NULL);
	{
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&h->sweep_wake, &ca);
		pthread_condattr_destroy(&ca);
	}
	pthread_once(&shed_metrics_once, shed_metrics_init);
	/* each connection is a descriptor: leave the rest of the process 128 and the slack */
	h->total_max = HTTPD_MAX_CONNECTIONS;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
	    rl.rlim_cur < (rlim_t)(HTTPD_MAX_CONNECTIONS + HTTPD_CONN_SLACK + 128))
		h->total_max = rl.rlim_cur > HTTPD_CONN_SLACK + 128 + 16 ? (int)rl.rlim_cur - HTTPD_CONN_SLACK - 128 : 16;
	h->total = h->total_max;
	h->per_addr = h->per_addr_max = HTTPD_PER_IP_CONNECTIONS;
	h->budget_ms = HTTPD_REQUEST_BUDGET_MS;
	h->d = MHD_start_daemon(MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ERROR_LOG | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ITC,
	    (uint16_t)port, NULL, NULL, on_request, h, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL,
	    MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa, MHD_OPTION_THREAD_POOL_SIZE, (unsigned)HTTPD_THREADS,
	    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)HTTPD_TIMEOUT_S, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
	    (size_t)64 * 1024, MHD_OPTION_CONNECTION_LIMIT, (unsigned)(h->total_max + HTTPD_CONN_SLACK),
	    MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)(HTTPD_PER_IP_CONNECTIONS + HTTPD_CONN_SLACK / 4),
	    MHD_OPTION_NOTIFY_CONNECTION, on_connection, h, MHD_OPTION_URI_LOG_CALLBACK, on_uri, h,
	    MHD_OPTION_NOTIFY_COMPLETED, on_done, h, MHD_OPTION_END);
	if (h->d == NULL) {
		snprintf(err, errlen, "cannot listen on %s:%d (port in use?)", bind_addr, port);
		goto fail;
	}
	info = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
	h->port = info != NULL ? info->port : port;
	if (pthread_create(&h->sweeper, NULL, sweep, h) != 0) {
		snprintf(err, errlen, "cannot start a thread");
		MHD_stop_daemon(h->d);
		goto fail;
	}
	h->sweeping = 1;
	return h;
fail:
	pthread_mutex_destroy(&h->defer_lock);
	pthread_cond_destroy(&h->defer_idle);
	pthread_mutex_destroy(&h->conn_lock);
	pthread_cond_destroy(&h->sweep_wake);
	ratelimit_free(h->limiter);
	free(h);
	return NULL;
}

int
httpd_port(const struct httpd *h)
{
	return h->port;
}

void
httpd_stop(struct httpd *h)
{
	struct timespec until;
	MHD_socket listen_fd;
	int waiting;

	if (h == NULL)
		return;
	/* deferred answers come from another thread (the order committer): let them arrive */
	listen_fd = MHD_quiesce_daemon(h->d); /* no new connections; the listening socket is ours to close now */
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += HTTPD_TIMEOUT_S;
	pthread_mutex_lock(&h->defer_lock);
	while (h->deferred > 0 && pthread_cond_timedwait(&h->defer_idle, &h->defer_lock, &until) == 0)
		;
	pthread_mutex_unlock(&h->defer_lock);
	pthread_mutex_lock(&h->conn_lock);
	h->stopping = 1;
	pthread_cond_signal(&h->sweep_wake);
	pthread_mutex_unlock(&h->conn_lock);
	if (h->sweeping)
		pthread_join(h->sweeper, NULL);
	MHD_stop_daemon(h->d); /* closes every connection: conn_closed() frees each */
	if (listen_fd != MHD_INVALID_SOCKET)
		close(listen_fd);
	pthread_mutex_lock(&h->defer_lock);
	waiting = h->deferred;
	pthread_mutex_unlock(&h->defer_lock);
	if (waiting > 0) {
		/* a late http_finish() still needs h: keep it (the process is stopping anyway) */
		log_warn("http server stopped with answers still to come", "count=%d", waiting);
		return;
	}
	pthread_mutex_destroy(&h->defer_lock);
	pthread_cond_destroy(&h->defer_idle);
	pthread_mutex_destroy(&h->conn_lock);
	pthread_cond_destroy(&h->sweep_wake);
	ratelimit_free(h->limiter);
	free(h);
}

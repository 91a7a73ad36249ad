#include "httpd.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "event.h"
#include "log.h"
#include "ratelimit.h"
#include "util.h"

#define HTTPD_THREADS 4
#define HTTPD_TIMEOUT_S 10 /* a client silent this long is dropped (slowloris) */
#define HTTPD_PER_IP_CONNECTIONS 64
#define HTTPD_LIMITER_KEYS 16384 /* client addresses the rate limiter tracks at once */

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
};

/* Per-request state: the body while it arrives, then a deferred answer. */
struct http_upload {
	char *buf;
	size_t len, cap;
	int too_large;
	struct httpd *h;
	struct MHD_Connection *conn;
	/* under h->defer_lock: */
	int deferred;  /* the handler called http_defer() and has not finished */
	int suspended; /* MHD holds the connection until http_finish() resumes it */
	int finished;  /* resp holds the answer */
	int orphaned;  /* MHD is done with the request: http_finish() frees this */
	struct http_resp resp;
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
		const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
		if ((u = calloc(1, sizeof(*u))) == NULL)
			return MHD_NO;
		u->h = h;
		u->conn = conn;
		*con_cls = u;
		if (cl != NULL && strtoull(cl, NULL, 10) > h->max_body)
			u->too_large = 1;
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
		ret = send_resp(conn, &resp);
		free(resp.body);
		return ret;
	}
	pthread_mutex_unlock(&h->defer_lock);
	memset(&resp, 0, sizeof(resp));
	if ((resp.retry_after = rate_take(h, conn, &rate)) > 0) {
		http_error(&resp, 429, "too_many_requests", "slow down: at most %.0f requests per second", rate);
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
	ret = send_resp(conn, &resp);
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

	(void)conn;
	(void)toe;
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

static void
on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	char msg[512], q[600];

	(void)cls;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	msg[strcspn(msg, "\n")] = '\0';
	log_warn("http server", "detail=%s", log_quote(q, sizeof(q), msg));
}

struct httpd *
httpd_start(const char *bind_addr, int port, size_t max_body, http_handler handler, void *arg, char *err,
    size_t errlen)
{
	struct sockaddr_in sa;
	struct httpd *h;
	const union MHD_DaemonInfo *info;

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
	if ((h->limiter = ratelimit_new(0, 1, HTTPD_LIMITER_KEYS)) == NULL) {
		free(h);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	pthread_mutex_init(&h->defer_lock, NULL);
	pthread_cond_init(&h->defer_idle, NULL);
	h->d = MHD_start_daemon(MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ERROR_LOG | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ITC, (uint16_t)port, NULL, NULL, on_request,
	    h, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa, MHD_OPTION_THREAD_POOL_SIZE, (unsigned)HTTPD_THREADS,
	    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)HTTPD_TIMEOUT_S, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
	    (size_t)64 * 1024, MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)HTTPD_PER_IP_CONNECTIONS, MHD_OPTION_NOTIFY_COMPLETED, on_done, h, MHD_OPTION_END);
	if (h->d == NULL) {
		snprintf(err, errlen, "cannot listen on %s:%d (port in use?)", bind_addr, port);
		goto fail;
	}
	info = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
	h->port = info != NULL ? info->port : port;
	return h;
fail:
	pthread_mutex_destroy(&h->defer_lock);
	pthread_cond_destroy(&h->defer_idle);
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
	MHD_stop_daemon(h->d);
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
	ratelimit_free(h->limiter);
	free(h);
}

#include "httpd.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <microhttpd.h>

#include "event.h"
#include "log.h"

#define HTTPD_THREADS 4
#define HTTPD_TIMEOUT_S 10 /* a client silent this long is dropped (slowloris) */

struct httpd {
	struct MHD_Daemon *d;
	http_handler handler;
	void *arg;
	size_t max_body;
	int port;
};

/* Per-connection state while the body arrives. */
struct http_upload {
	char *buf;
	size_t len, cap;
	int too_large;
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
	http_json(resp, status, json_pack("{s:s, s:o}", "error", code, "detail", json_string_lossy(detail)));
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
	if (r->retry_after > 0) {
		snprintf(retry, sizeof(retry), "%d", r->retry_after);
		MHD_add_response_header(mr, "Retry-After", retry);
	}
	ret = MHD_queue_response(conn, (unsigned)r->status, mr);
	MHD_destroy_response(mr);
	return ret;
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

	(void)version;
	if (u == NULL) {
		const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
		if ((u = calloc(1, sizeof(*u))) == NULL)
			return MHD_NO;
		*con_cls = u;
		if (cl != NULL && strtoull(cl, NULL, 10) > h->max_body)
			u->too_large = 1;
		return MHD_YES;
	}
	if (*upload_data_size > 0) {
		size_t n = *upload_data_size;
		if (!u->too_large && u->len + n > h->max_body)
			u->too_large = 1;
		if (!u->too_large) {
			if (u->len + n + 1 > u->cap) {
				size_t cap = u->cap ? u->cap : 1024;
				char *nb;
				while (cap < u->len + n + 1)
					cap *= 2;
				if ((nb = realloc(u->buf, cap)) == NULL)
					return MHD_NO;
				u->buf = nb;
				u->cap = cap;
			}
			memcpy(u->buf + u->len, upload_data, n);
			u->len += n;
			u->buf[u->len] = '\0';
		}
		*upload_data_size = 0;
		return MHD_YES;
	}

	memset(&resp, 0, sizeof(resp));
	if (u->too_large) {
		http_error(&resp, 413, "too_large", "the request body is over the %zu byte limit", h->max_body);
	} else {
		memset(&req, 0, sizeof(req));
		req.method = method;
		req.path = url;
		req.body = u->buf != NULL ? u->buf : "";
		req.body_len = u->len;
		req.conn = conn;
		h->handler(h->arg, &req, &resp);
		if (resp.status == 0)
			http_error(&resp, 500, "internal", "no response");
	}
	ret = send_resp(conn, &resp);
	free(resp.body);
	return ret;
}

static void
on_done(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe)
{
	struct http_upload *u = *con_cls;

	(void)cls;
	(void)conn;
	(void)toe;
	if (u != NULL) {
		free(u->buf);
		free(u);
		*con_cls = NULL;
	}
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
	h->d = MHD_start_daemon(MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ERROR_LOG, (uint16_t)port, NULL, NULL, on_request,
	    h, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa, MHD_OPTION_THREAD_POOL_SIZE, (unsigned)HTTPD_THREADS,
	    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)HTTPD_TIMEOUT_S, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
	    (size_t)64 * 1024, MHD_OPTION_NOTIFY_COMPLETED, on_done, NULL, MHD_OPTION_END);
	if (h->d == NULL) {
		snprintf(err, errlen, "cannot listen on %s:%d (port in use?)", bind_addr, port);
		free(h);
		return NULL;
	}
	info = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
	h->port = info != NULL ? info->port : port;
	return h;
}

int
httpd_port(const struct httpd *h)
{
	return h->port;
}

void
httpd_stop(struct httpd *h)
{
	if (h == NULL)
		return;
	MHD_stop_daemon(h->d);
	free(h);
}

#include "svc.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "db.h"
#include "httpd.h"
#include "log.h"
#include "metrics.h"
#include "util.h"

volatile sig_atomic_t svc_quit;
static const char *svc_name = "pizza"; /* svc_parse()'s, for pizza_build_info */

/*
 * The service manager's notification socket.  The protocol is systemd's
 * documented and stable one (sd_notify(3), "NOTIFY_SOCKET" in systemd.exec(5)):
 * newline-separated VAR=value lines in one datagram to the AF_UNIX socket
 * named by $NOTIFY_SOCKET, a path or, with a leading '@', an abstract name.
 * It is a few lines, so libsystemd is not linked for it.
 */
static struct {
	int fd;                /* -1: no NOTIFY_SOCKET, nothing is sent */
	struct sockaddr_un addr;
	socklen_t addrlen;
	int64_t watchdog_ms;   /* WATCHDOG=1 this often; 0: no watchdog */
	int64_t last_watchdog;
	int warned, stopping, connected;
	char url[256];         /* the broker's, for STATUS= */
} notify = { .fd = -1 };

/* Reads $NOTIFY_SOCKET, $WATCHDOG_USEC and $WATCHDOG_PID; logs what it cannot use. */
static void
notify_init(void)
{
	const char *path = getenv("NOTIFY_SOCKET"), *usec = getenv("WATCHDOG_USEC"), *wpid = getenv("WATCHDOG_PID");
	size_t n;
	long v;

	if (path == NULL || path[0] == '\0')
		return;
	n = strlen(path);
	if ((path[0] != '/' && path[0] != '@') || n >= sizeof(notify.addr.sun_path)) {
		log_warn("NOTIFY_SOCKET is not a unix socket path or abstract name; not notifying the service manager",
		    "value=%s", LOGQ(path));
		return;
	}
	memset(&notify.addr, 0, sizeof(notify.addr));
	notify.addr.sun_family = AF_UNIX;
	memcpy(notify.addr.sun_path, path, n);
	if (path[0] == '@')
		notify.addr.sun_path[0] = '\0'; /* abstract: the length says where the name ends */
	notify.addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (path[0] == '/'));
	if ((notify.fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) < 0) {
		log_errno("cannot open a socket for NOTIFY_SOCKET; not notifying the service manager", NULL);
		return;
	}
	/* the watchdog is for us only when WATCHDOG_PID, if set, names this process */
	if (usec != NULL && parse_long(usec, 1, LONG_MAX, &v) == 0) {
		long pid;
		if (wpid == NULL || (parse_long(wpid, 1, LONG_MAX, &pid) == 0 && pid == (long)getpid()))
			notify.watchdog_ms = v / 2000 > 0 ? v / 2000 : 1;
	} else if (usec != NULL)
		log_warn("WATCHDOG_USEC is not a number of microseconds; no watchdog", "value=%s", LOGQ(usec));
}

/* Sends one datagram of VAR=value lines, formatted like printf. */
static void notify_send(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void
notify_send(const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	if (notify.fd < 0)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* never blocks the main loop: a manager that does not read loses a ping, not the service */
	if (sendto(notify.fd, msg, strlen(msg), MSG_NOSIGNAL | MSG_DONTWAIT, (struct sockaddr *)&notify.addr,
		notify.addrlen) < 0 &&
	    !notify.warned) {
		notify.warned = 1;
		log_errno("cannot notify the service manager (NOTIFY_SOCKET)", NULL);
	}
}

void
svc_ready(const char *kv, ...)
{
	char tail[1024] = "";
	va_list ap;

	if (kv != NULL) {
		va_start(ap, kv);
		vsnprintf(tail, sizeof(tail), kv, ap);
		va_end(ap);
	}
	log_info("ready", "%s", tail);
	notify.connected = 1;
	notify.last_watchdog = mono_ms();
	notify_send("READY=1\nSTATUS=ready: connected to %s, subscribed", notify.url);
}

void
svc_tick(struct mq *mq)
{
	int connected;

	if (notify.fd < 0)
		return;
	if (svc_quit) {
		svc_stopping();
		return;
	}
	if (notify.watchdog_ms > 0 && mono_ms() - notify.last_watchdog >= notify.watchdog_ms) {
		notify.last_watchdog = mono_ms();
		notify_send("WATCHDOG=1");
	}
	if ((connected = mq_is_connected(mq)) != notify.connected) {
		notify.connected = connected;
		if (connected)
			notify_send("STATUS=ready: connected to %s again", notify.url);
		else
			notify_send("STATUS=broker connection lost; reconnecting to %s", notify.url);
	}
}

void
svc_stopping(void)
{
	if (notify.stopping)
		return;
	notify.stopping = 1;
	notify_send("STOPPING=1\nSTATUS=shutting down");
}

static void
on_signal(int sig)
{
	(void)sig;
	svc_quit = 1;
}

void
svc_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
}

void
svc_parse(const char *svc, const char *summary, const struct opt *opts, const struct svc_opts *so,
    int argc, char **argv)
{
	char usage[128], err[256];

	svc_name = svc;
	snprintf(usage, sizeof(usage), "%s [options]", svc);
	switch (config_parse(usage, summary, opts, argc, argv, NULL, err, sizeof(err))) {
	case CONFIG_OK:
		break;
	case CONFIG_EXIT:
		exit(0);
	case CONFIG_ERROR:
		fprintf(stderr, "%s: %s\n", svc, err);
		exit(2);
	}
	{
		static const char *const names[] = { "error", "warn", "info", "debug" };
		int level = -1;

		for (int i = 0; i < 4; i++)
			if (strcmp(so->log_level, names[i]) == 0)
				level = i;
		if (level < 0) {
			fprintf(stderr, "%s: --log-level: '%s' is not one of error, warn, info, debug\n", svc, so->log_level);
			exit(2);
		}
		if (so->verbose > 0)
			level = LOG_LEVEL_DEBUG;
		log_init(svc, (enum log_level)level);
	}
	notify_init();
}

struct mq *
svc_mq_new(const struct svc_opts *so, mq_handler handler, void *arg)
{
	struct mq_config cfg;
	char url[256];
	char *password = NULL;
	const char *env;
	struct mq *mq;

	memset(&cfg, 0, sizeof(cfg));
	if (so->url != NULL)
		str_copy(url, sizeof(url), so->url);
	else {
		long port = 1883;
		if ((env = getenv("PIZZA_MQTT_PORT")) != NULL && env[0] != '\0' &&
		    parse_long(env, 1, 65535, &port) != 0)
			fatal("PIZZA_MQTT_PORT is not a port number", "value=%s", LOGQ(env));
		snprintf(url, sizeof(url), "tcp://127.0.0.1:%ld", port);
	}
	if (so->password_file != NULL) {
		if ((password = file_read_small(so->password_file, 1024)) == NULL)
			fatal("cannot read the MQTT password file", "path=%s err=%s", LOGQ(so->password_file),
			    LOGQ(strerror(errno)));
	} else if ((env = getenv("PIZZA_MQTT_PASSWORD")) != NULL) {
		password = strdup(env);
	}
	cfg.url = url;
	str_copy(notify.url, sizeof(notify.url), url);
	cfg.client_id = so->client_id;
	cfg.username = so->user;
	cfg.password = password;
	cfg.clean_start = 0;
	cfg.cafile = so->cafile;
	cfg.certfile = so->certfile;
	cfg.keyfile = so->keyfile;
	cfg.session_expiry_s = (unsigned)so->session_expiry_s;
	mq = mq_new(&cfg, handler, arg);
	free(password);
	if (mq == NULL)
		fatal("cannot create the MQTT client", "url=%s", LOGQ(url));
	return mq;
}

void
svc_mq_connect(struct mq *mq, const struct svc_opts *so)
{
	char err[512];

	notify_send("STATUS=connecting to the broker at %s and subscribing", notify.url);
	if (mq_connect(mq, (int)so->connect_timeout_ms, err, sizeof(err)) != 0) {
		char q[600];
		log_error("cannot start", "err=%s", log_quote(q, sizeof(q), err));
		notify_send("STATUS=cannot start: %s", err);
		mq_free(mq);
		exit(1);
	}
}

static double
reconnects(void *arg)
{
	return (double)mq_reconnects(arg);
}

/* Read when /metrics is rendered: mq keeps the state its connect and connection-lost callbacks set. */
static double
broker_connected(void *arg)
{
	return mq_is_connected(arg);
}

void
svc_metrics(struct mq *mq)
{
	metrics_process(svc_name, PIZZA_VERSION);
	metric_gauge_fn("pizza_broker_connected", "1 while this service is connected to the broker, 0 while it is not",
	    NULL, broker_connected, mq);
	metric_counter_fn("pizza_mqtt_reconnects_total", "Times the connection to the broker was lost and re-made", NULL,
	    reconnects, mq);
}

int
svc_ops_handle(const struct http_req *req, struct http_resp *resp, struct mq *mq, svc_probe probe, void *store)
{
	if (strcmp(req->path, "/metrics") == 0) {
		char *text = metrics_render();
		if (text == NULL) {
			http_error(resp, 503, "unavailable", "out of memory");
			return 1;
		}
		resp->status = 200;
		resp->body = text;
		resp->content_type = "text/plain; version=0.0.4; charset=utf-8";
		return 1;
	}
	if (strcmp(req->path, "/healthz") == 0) {
		/* writable: a real write commits now (a full disk fails it; a write lock alone does not) */
		int connected = mq_is_connected(mq), writable = probe == NULL || probe(store) == 0;

		http_json(resp, connected && writable ? 200 : 503,
		    json_pack("{s:s, s:s, s:s}", "status", connected && writable ? "ok" : "unhealthy", "mqtt",
			connected ? "connected" : "disconnected", "store",
			probe == NULL ? "none" : writable ? "writable" : "not writable"));
		return 1;
	}
	return 0;
}

struct ops {
	struct mq *mq;
	svc_probe probe;
	void *store;
};

static void
ops_only(void *arg, const struct http_req *req, struct http_resp *resp)
{
	struct ops *o = arg;

	if (!svc_ops_handle(req, resp, o->mq, o->probe, o->store))
		http_error(resp, 404, "not_found", "this port serves /metrics and /healthz only");
}

struct httpd *
svc_ops_start(const char *bind, long port, struct mq *mq, svc_probe probe, void *store)
{
	static struct ops o;
	struct httpd *h;
	char err[256];

	if (port <= 0)
		return NULL;
	o.mq = mq;
	o.probe = probe;
	o.store = store;
	if ((h = httpd_start(bind, (int)port, 1024, ops_only, &o, err, sizeof(err))) == NULL)
		fatal("cannot start the metrics port", "err=%s", LOGQ(err));
	return h;
}

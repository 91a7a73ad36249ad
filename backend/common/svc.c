#include "svc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "httpd.h"
#include "log.h"
#include "metrics.h"
#include "util.h"

volatile sig_atomic_t svc_quit;

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

	if (mq_connect(mq, (int)so->connect_timeout_ms, err, sizeof(err)) != 0) {
		char q[600];
		log_error("cannot start", "err=%s", log_quote(q, sizeof(q), err));
		mq_free(mq);
		exit(1);
	}
}

static double
reconnects(void *arg)
{
	return (double)mq_reconnects(arg);
}

void
svc_metrics(struct mq *mq)
{
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

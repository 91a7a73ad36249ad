/*
 * svc.h - what every long-running service shares: the MQTT connection
 * options, signal handling, and the main loop's sleep.
 */
#ifndef PIZZA_SVC_H
#define PIZZA_SVC_H

#include <signal.h>
#include <stdint.h>

#include "config.h"
#include "log.h"
#include "mq.h"

struct svc_opts {
	const char *url;
	const char *user;
	const char *password_file;
	const char *client_id;
	const char *cafile, *certfile, *keyfile;
	long session_expiry_s;
	long connect_timeout_ms;
	int verbose;
	const char *log_level;
};

/* The options every service takes, for its struct opt table. */
#define SVC_OPTS(o, user_default, client_default)                                                  \
	{ "mqtt-url", 0, OPT_STR, "PIZZA_MQTT_URL", NULL,                                          \
	    "broker URL, tcp:// or mqtts://; default tcp://127.0.0.1:$PIZZA_MQTT_PORT (1883)", &(o)->url, 0, 0 },        \
	    { "mqtt-user", 0, OPT_STR, "PIZZA_MQTT_USER", user_default, "broker user name",        \
		&(o)->user, 0, 0 },                                                                \
	    { "mqtt-password-file", 0, OPT_STR, "PIZZA_MQTT_PASSWORD_FILE", NULL,                  \
		"file holding the broker password (or set PIZZA_MQTT_PASSWORD)",                   \
		&(o)->password_file, 0, 0 },                                                       \
	    { "cafile", 0, OPT_STR, "PIZZA_MQTT_CAFILE", NULL,                                     \
		"CA certificate that must sign the broker's (for mqtts:// URLs)", &(o)->cafile, 0, 0 }, \
	    { "certfile", 0, OPT_STR, "PIZZA_MQTT_CERTFILE", NULL, "client certificate for TLS (optional)", \
		&(o)->certfile, 0, 0 },                                                            \
	    { "keyfile", 0, OPT_STR, "PIZZA_MQTT_KEYFILE", NULL, "client certificate's key (optional)", \
		&(o)->keyfile, 0, 0 },                                                             \
	    { "client-id", 0, OPT_STR, "PIZZA_CLIENT_ID", client_default,                          \
		"MQTT client id; keep it stable so the broker keeps the session", &(o)->client_id, \
		0, 0 },                                                                            \
	    { "session-expiry", 0, OPT_DURATION_S, "PIZZA_SESSION_EXPIRY_S", "1h",                 \
		"how long the broker keeps our session and queued messages while we are away",     \
		&(o)->session_expiry_s, 0, 4294967295L },                                          \
	    { "connect-timeout", 0, OPT_DURATION_MS, "PIZZA_CONNECT_TIMEOUT_MS", "5s",             \
		"how long to wait for the broker at start", &(o)->connect_timeout_ms, 100, 600000 }, \
	    { "log-level", 0, OPT_STR, "PIZZA_LOG_LEVEL", "info", "error, warn, info or debug",    \
		&(o)->log_level, 0, 0 },                                                           \
	{                                                                                          \
		"verbose", 'v', OPT_COUNT, NULL, NULL, "more logging (debug; same as --log-level debug)", \
		    &(o)->verbose, 0, 0                                                            \
	}

/* The options of a service's /metrics and /healthz port, for its struct opt table. */
#define SVC_METRICS_OPTS(port, bind)                                                                \
	{ "metrics-port", 0, OPT_INT, "PIZZA_METRICS_PORT", "0", "port for GET /metrics and /healthz (0: none)", \
	    (port), 0, 65535 },                                                                         \
	{                                                                                                  \
		"metrics-bind", 0, OPT_STR, "PIZZA_METRICS_BIND", "127.0.0.1", "address the metrics port listens on", \
		    (bind), 0, 0                                                                          \
	}

/* Set by SIGINT/SIGTERM. The main loop checks it. */
extern volatile sig_atomic_t svc_quit;

/* Installs the SIGINT/SIGTERM handlers and ignores SIGPIPE. */
void svc_signals(void);

/*
 * Parses argv with opts, sets up logging as svc, and exits the process
 * (0 after --help/--version, 2 with a one-line error on bad arguments).
 */
void svc_parse(const char *svc, const char *summary, const struct opt *opts, const struct svc_opts *so,
    int argc, char **argv);

/*
 * Creates a persistent-session client from the common options (reading
 * the password) with handler, declares nothing.  Exits with a clear
 * message on failure.
 */
struct mq *svc_mq_new(const struct svc_opts *so, mq_handler handler, void *arg);

/*
 * Connects (telling the service manager what it waits for); on failure logs
 * the reason and exits 1.
 */
void svc_mq_connect(struct mq *mq, const struct svc_opts *so);

/*
 * The service manager (systemd, Type=notify): when $NOTIFY_SOCKET names a
 * unix socket, svc_parse() opens it and these send it the documented
 * datagrams (sd_notify(3)); without it they only log.  A failed send is
 * logged once and never fails the service.
 *
 * svc_ready() logs msg="ready" with the printf-style key=value tail kv (as
 * log_info) and then sends READY=1: call it once, after svc_mq_connect()
 * (connected, every subscription acknowledged) and after the service's HTTP
 * ports listen, so the log line and systemd never disagree.
 */
void svc_ready(const char *kv, ...) LOG_PRINTF(1, 2);

/*
 * Call from the main loop at least every second: sends WATCHDOG=1 every
 * half of $WATCHDOG_USEC (when set, for this process), a STATUS= line when
 * the broker connection is lost or back, and STOPPING=1 once svc_quit is set.
 */
void svc_tick(struct mq *mq);

/* Sends STOPPING=1 (once; later calls do nothing): call when the main loop ends. */
void svc_stopping(void);

struct httpd;
struct http_req;
struct http_resp;

/*
 * Registers the metrics every service has: the process's own and its
 * build (metrics_process() with svc_parse()'s name), whether mq is
 * connected to the broker, and its reconnects.  Call once after svc_mq_new().
 */
void svc_metrics(struct mq *mq);

/*
 * A store's health probe: 0 when it can write now (a real write, committed),
 * -1 when not.  Every store module has one (hstore_probe(), ...).
 */
typedef int (*svc_probe)(void *store);

/*
 * Answers GET /metrics (Prometheus text) and GET /healthz (200 only while
 * connected to the broker and, when probe is not NULL, probe(store) says
 * the store can write; else 503).  Returns 1 if req was one of those, 0
 * otherwise.
 */
int svc_ops_handle(const struct http_req *req, struct http_resp *resp, struct mq *mq, svc_probe probe, void *store);

/*
 * For services without an HTTP API: a small server on bind:port answering
 * only /metrics and /healthz.  NULL when port is 0; exits with a clear
 * message when it cannot listen.
 */
struct httpd *svc_ops_start(const char *bind, long port, struct mq *mq, svc_probe probe, void *store);

#endif

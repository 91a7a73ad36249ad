/*
 * order-history - a fanout consumer.  Plain subscriptions to
 * pizza/orders/placed, every status topic, pizza/orders/callbacks and every
 * device's delivery receipts (the rows[] table below); keeps each user's orders and every status with its
 * time in its store (store.c), and answers the read API for order-service
 * (which sends the history secret).  Each event is stored before its
 * message is acknowledged, and stored once.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <stdlib.h>

#include <openssl/crypto.h>

#include "consume.h"
#include "device.h"
#include "httpd.h"
#include "event.h"
#include "log.h"
#include "metrics.h"
#include "mq.h"
#include "sign.h"
#include "store.h"
#include "svc.h"
#include "topic.h"
#include "util.h"

#define SVC "order-history"

static struct {
	struct svc_opts so;
	const char *db_path;
	long http_port;
	const char *http_bind;
	const char *history_secret_file;
} cfg;

static struct mq *mq;
static struct history_store *store;
static char *history_secret; /* the read API wants it: order-service is its only client */

/* What the store did: events stored by type, reads by query and result, failures. */
enum read_query { READ_ORDER, READ_USER_ORDERS, READ_NQUERIES };
enum read_result { READ_OK, READ_NOT_FOUND, READ_FAILED, READ_NRESULTS };
static struct metric *m_stored[EVENT_CALLBACK_DELIVERY + 1], *m_reads[READ_NQUERIES][READ_NRESULTS],
    *m_write_errors, *m_read_errors;

static void
history_metrics(void)
{
	static const char *const queries[READ_NQUERIES] = { "order", "user_orders" };
	static const char *const results[READ_NRESULTS] = { "ok", "not_found", "failed" };
	static const enum event_type types[] = { EVENT_ORDER_PLACED, EVENT_ORDER_STATUS, EVENT_CALLBACK_DELIVERY };
	char labels[96];

	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		snprintf(labels, sizeof(labels), "type=\"%s\"", event_type_name(types[i]));
		m_stored[types[i]] = metric_counter("pizza_history_events_stored_total",
		    "Events written to the history, by type (duplicates are not: see pizza_duplicates_dropped_total)", labels);
	}
	for (int q = 0; q < READ_NQUERIES; q++)
		for (int r = 0; r < READ_NRESULTS; r++) {
			snprintf(labels, sizeof(labels), "query=\"%s\",result=\"%s\"", queries[q], results[r]);
			m_reads[q][r] = metric_counter("pizza_history_reads_total",
			    "Read API queries answered from the store, by query (one order, a user's orders) and result", labels);
		}
	m_write_errors = metric_counter("pizza_history_store_errors_total",
	    "Store operations that failed (the event is left for the broker to deliver again; the read is answered 503)",
	    "op=\"write\"");
	m_read_errors = metric_counter("pizza_history_store_errors_total",
	    "Store operations that failed (the event is left for the broker to deliver again; the read is answered 503)",
	    "op=\"read\"");
}

/* What on_http() answers, for the request metrics. */
static const char *const routes[] = { "/v1/orders/{id}", "/v1/users/{user}/orders", "/metrics", "/healthz", NULL };

/* Every event this service consumes goes the same way: stored once, or left for the broker to deliver again. */
static enum consume_result
on_event(void *arg, struct consume_msg *c)
{
	(void)arg;
	switch (hstore_apply(store, c->ev)) {
	case HSTORE_OK:
		log_debug("stored", "order_id=%s type=%s", c->ev->order_id, event_type_name(c->ev->type));
		if (c->ev->type >= EVENT_ORDER_PLACED && c->ev->type <= EVENT_CALLBACK_DELIVERY)
			metric_inc(m_stored[c->ev->type]);
		return CONSUME_DONE;
	case HSTORE_DUP:
		return CONSUME_DUPLICATE;
	default:
		metric_inc(m_write_errors);
		return CONSUME_RETRY; /* a full disk, a locked file: never acknowledged unstored */
	}
}

/* A device's delivery receipt: "delivered to <user>/<device>" in the order's timeline, at our clock. */
static enum consume_result
on_receipt(void *arg, struct consume_msg *c)
{
	char user[NAME_MAX_LEN + 1], device[NAME_MAX_LEN + 1];
	struct device_receipt r;

	(void)arg;
	if (device_receipt_from(c->m->topic, c->m->payload, c->m->len, user, device, &r, c->reason,
		sizeof(c->reason)) != 0)
		return CONSUME_INVALID;
	switch (hstore_receipt(store, user, device, r.event_id, r.order_id, now_ms())) {
	case HSTORE_OK:
		log_debug("receipt stored", "order_id=%s user_id=%s device=%s", r.order_id, user, device);
		return CONSUME_DONE;
	case HSTORE_DUP:
		return CONSUME_DUPLICATE;
	default:
		return CONSUME_RETRY;
	}
}

/* What order-history consumes: every topic that carries part of an order's timeline. */
static const struct consume_row rows[] = {
	{ TOPIC_PLACED, 1, 0, EVENT_ORDER_PLACED, on_event },
	{ TOPIC_ALL_STATUS, 1, MQ_RETAIN_NEW_ONLY, EVENT_ORDER_STATUS, on_event },
	{ TOPIC_CALLBACKS, 1, 0, EVENT_CALLBACK_DELIVERY, on_event },
	{ TOPIC_ALL_RECEIPTS, 1, 0, CONSUME_RAW, on_receipt },
};

/* Copies the id between prefix and suffix in path into id; 0 on success. */
static int
path_id(const char *path, const char *prefix, const char *suffix, char *id)
{
	size_t pl = strlen(prefix), sl = strlen(suffix), n = strlen(path);

	if (n <= pl + sl || strncmp(path, prefix, pl) != 0 || strcmp(path + n - sl, suffix) != 0 ||
	    n - pl - sl > NAME_MAX_LEN)
		return -1;
	memcpy(id, path + pl, n - pl - sl);
	id[n - pl - sl] = '\0';
	return name_valid(id) ? 0 : -1;
}

/*
 * 1 when req carries "Authorization: Bearer <history secret>".  Compared
 * in constant time, whatever the lengths: HMACs of both under the secret.
 */
static int
authorized(const struct http_req *req)
{
	const char *h = http_header(req, "Authorization");
	char want[65], got[65];

	if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0)
		return 0;
	if (sign_hmac_sha256_hex(history_secret, history_secret, strlen(history_secret), NULL, 0, want) != 0 ||
	    sign_hmac_sha256_hex(history_secret, h + 7, strlen(h + 7), NULL, 0, got) != 0)
		return 0;
	return CRYPTO_memcmp(want, got, 64) == 0;
}

/*
 * GET /v1/orders/<id> and GET /v1/users/<id>/orders?limit=&before=, for
 * order-service only (the history secret); /metrics and /healthz for
 * anyone.
 */
static void
on_http(void *arg, const struct http_req *req, struct http_resp *resp)
{
	char id[NAME_MAX_LEN + 1];
	int is_order = path_id(req->path, "/v1/orders/", "", id) == 0;
	int is_user = !is_order && path_id(req->path, "/v1/users/", "/orders", id) == 0;

	(void)arg;
	if (strcmp(req->method, "GET") == 0 && svc_ops_handle(req, resp, mq, hstore_probe, store))
		return;
	if (!authorized(req)) {
		http_error(resp, 401, "unauthorized",
		    "this API is order-service's: send Authorization: Bearer <history secret>");
		resp->www_authenticate = "Bearer realm=\"order-history\"";
		return;
	}
	if (!is_order && !is_user) {
		http_error(resp, 404, "not_found", "no such resource: %s %s", req->method, req->path);
		return;
	}
	if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0) {
		http_error(resp, 405, "method_not_allowed", "%s is not allowed on %s (allowed: GET, HEAD)", req->method,
		    req->path);
		resp->allow = "GET, HEAD";
		return;
	}
	if (is_order) {
		json_t *o;
		switch (hstore_order(store, id, &o)) {
		case HSTORE_OK:
			metric_inc(m_reads[READ_ORDER][READ_OK]);
			http_json(resp, 200, o);
			break;
		case HSTORE_NOT_FOUND:
			metric_inc(m_reads[READ_ORDER][READ_NOT_FOUND]);
			http_error(resp, 404, "not_found", "no order %s", id);
			break;
		default:
			metric_inc(m_reads[READ_ORDER][READ_FAILED]);
			metric_inc(m_read_errors);
			http_error(resp, 503, "unavailable", "the history could not be read; try again");
		}
		return;
	}
	{
		const char *ls = http_query(req, "limit"), *before = http_query(req, "before");
		long limit = 20;
		json_t *orders, *last;

		if (ls != NULL && parse_long(ls, 1, 100, &limit) != 0) {
			http_error(resp, 400, "invalid_query", "limit must be a whole number from 1 to 100");
			return;
		}
		if (before != NULL && !name_valid(before)) {
			http_error(resp, 400, "invalid_query", "before must be an order id");
			return;
		}
		/* one more than asked tells whether there is a next page */
		if (hstore_user_orders(store, id, (int)limit + 1, before, &orders) != HSTORE_OK) {
			metric_inc(m_reads[READ_USER_ORDERS][READ_FAILED]);
			metric_inc(m_read_errors);
			http_error(resp, 503, "unavailable", "the history could not be read; try again");
			return;
		}
		metric_inc(m_reads[READ_USER_ORDERS][READ_OK]);
		last = NULL;
		if (json_array_size(orders) > (size_t)limit) {
			json_array_remove(orders, (size_t)limit);
			last = json_array_get(orders, (size_t)limit - 1);
		}
		http_json(resp, 200,
		    json_pack("{s:s, s:o, s:O}", "user_id", id, "orders", orders, "next_before",
			last != NULL ? json_object_get(last, "order_id") : json_null()));
	}
}

int
main(int argc, char **argv)
{
	const struct opt opts[] = {
		SVC_OPTS(&cfg.so, "order-history", "order-history"),
		{ "db", 0, OPT_STR, "PIZZA_HISTORY_DB", "order-history.db",
		    "the history's database: a SQLite file, or a postgresql:// URL shared by several instances "
		    "(each with its own --client-id)",
		    &cfg.db_path, 0, 0 },
		{ "http-port", 0, OPT_INT, "PIZZA_HISTORY_HTTP_PORT", "8081", "HTTP port of the read API (0: none)",
		    &cfg.http_port, 0, 65535 },
		{ "http-bind", 0, OPT_STR, "PIZZA_HISTORY_HTTP_BIND", "127.0.0.1", "address the read API listens on",
		    &cfg.http_bind, 0, 0 },
		{ "history-secret-file", 0, OPT_STR, "PIZZA_HISTORY_SECRET_FILE", NULL,
		    "file with the secret the read API wants from order-service (or set PIZZA_HISTORY_SECRET)",
		    &cfg.history_secret_file, 0, 0 },
		{ NULL, 0, 0, NULL, NULL, NULL, NULL, 0, 0 },
	};
	const char *env;
	struct httpd *http = NULL;
	struct consumer *consumer;
	char err[256], dblabel[256];

	svc_parse(SVC, "Fanout consumer: keeps every user's orders and their timelines.", opts, &cfg.so, argc, argv);
	svc_signals();
	if (cfg.history_secret_file != NULL) {
		if ((history_secret = file_read_small(cfg.history_secret_file, 4096)) == NULL)
			fatal("cannot read the history secret file", "path=%s", LOGQ(cfg.history_secret_file));
	} else if ((env = getenv("PIZZA_HISTORY_SECRET")) != NULL && env[0] != '\0')
		history_secret = strdup(env);
	if (cfg.http_port > 0 && (history_secret == NULL || strlen(history_secret) < 16))
		fatal("the read API needs a history secret of at least 16 characters, the same as order-service's: set "
		      "--history-secret-file or PIZZA_HISTORY_SECRET (or --http-port 0)",
		    NULL);
	hstore_label(cfg.db_path, dblabel, sizeof(dblabel)); /* a URL's password is never logged */
	if ((store = hstore_open(cfg.db_path)) == NULL)
		fatal("cannot open the history database", "db=%s", LOGQ(dblabel));
	if ((consumer = consume_new(SVC, rows, sizeof(rows) / sizeof(rows[0]), NULL)) == NULL)
		fatal("out of memory", NULL);
	mq = svc_mq_new(&cfg.so, consume_message, consumer);
	svc_metrics(mq);
	history_metrics();
	if (consume_attach(consumer, mq) != 0)
		fatal("cannot declare the subscriptions", NULL);
	svc_mq_connect(mq, &cfg.so);
	if (cfg.http_port > 0 &&
	    (http = httpd_start(cfg.http_bind, (int)cfg.http_port, 1024, on_http, NULL, err, sizeof(err))) == NULL)
		fatal("cannot start the HTTP read API", "err=%s", LOGQ(err));
	if (http != NULL)
		httpd_routes(http, routes);
	svc_ready("db=%s http=%s:%d", LOGQ(dblabel), LOGQ(cfg.http_bind), http != NULL ? httpd_port(http) : 0);

	while (!svc_quit) {
		svc_tick(mq);
		sleep_ms(200);
	}
	svc_stopping();
	httpd_stop(http);

	log_info("shutting down", "orders=%lld", (long long)hstore_count(store, HSTORE_ORDERS));
	mq_disconnect(mq, 2000);
	mq_free(mq);
	consume_free(consumer);
	hstore_close(store);
	free(history_secret);
	return 0;
}

/*
 * notifier - a fanout consumer.  Sees every OrderPlaced (plain
 * subscription) and every OrderStatus; when an order reaches ready it
 * publishes one PickupAlert to pizza/users/<user>/alerts (QoS 1, with a
 * message expiry).
 *
 * One alert per order, across redeliveries and restarts: the decision is
 * recorded in SQLite (alerts, keyed by order id) in the same transaction
 * as the alert itself goes into the outbox, before the status message is
 * acknowledged.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>

#include "db.h"
#include "deadletter.h"
#include "delivery.h"
#include "event.h"
#include "httpd.h"
#include "log.h"
#include "menu.h"
#include "metrics.h"
#include "netcheck.h"
#include "mq.h"
#include "outbox.h"
#include "svc.h"
#include "topic.h"
#include "util.h"

#define SVC "notifier"

#define NOTIFIER_SCHEMA                                                                     \
	OUTBOX_SCHEMA                                                                       \
	"CREATE TABLE IF NOT EXISTS orders (order_id TEXT PRIMARY KEY, user_id TEXT NOT NULL," \
	"  items TEXT NOT NULL, callback_url TEXT, placed_ms INTEGER NOT NULL);"            \
	"CREATE TABLE IF NOT EXISTS alerts (order_id TEXT PRIMARY KEY, user_id TEXT NOT NULL," \
	"  event_id TEXT NOT NULL, ready_ms INTEGER NOT NULL);"                          \
	DELIVERY_SCHEMA

static struct {
	struct svc_opts so;
	const char *db_path;
	long alert_expiry_s;
	long outbox_retry_ms;
	const char *callback_secret_file;
	long cb_attempts, cb_base_ms, cb_cap_ms, cb_timeout_ms;
	const char *callback_allow;
	long metrics_port;
	const char *metrics_bind;
} cfg;

static struct metric *m_alerts, *m_duplicates;

static struct mq *mq;
static struct db *db;
static struct outbox *outbox;

/* Runs one INSERT OR IGNORE already bound in st. Returns rows inserted (0 or 1), or -1. */
static int
insert_step(sqlite3_stmt *st, const char *order_id)
{
	int rc = sqlite3_step(st) == SQLITE_DONE ? db_changes(db) : -1;

	if (rc < 0)
		log_error("database error", "order_id=%s err=\"%s\"", order_id, db_errmsg(db));
	db_done(db, st);
	return rc;
}

static int
on_placed(const struct event *ev)
{
	char items[EVENT_MAX_ITEMS * (EVENT_SKU_MAX + 8) + 1] = "";
	size_t o = 0;
	sqlite3_stmt *st;
	int rc = -1;

	/* "2 x margherita, 1 x funghi", for the alert's text */
	for (size_t i = 0; i < ev->n_items && o < sizeof(items); i++)
		o += (size_t)snprintf(items + o, sizeof(items) - o, "%s%d x %s", i ? ", " : "", ev->items[i].qty,
		    ev->items[i].sku);
	db_lock(db);
	st = db_prepare(db, "INSERT OR IGNORE INTO orders(order_id, user_id, items, callback_url, placed_ms) "
			    "VALUES (?, ?, ?, ?, ?)");
	if (st != NULL) {
		sqlite3_bind_text(st, 1, ev->order_id, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, ev->user_id, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 3, items, -1, SQLITE_STATIC);
		if (ev->callback_url[0] != '\0')
			sqlite3_bind_text(st, 4, ev->callback_url, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 5, ev->at_ms);
		rc = insert_step(st, ev->order_id);
	}
	db_unlock(db);
	if (rc >= 0)
		log_debug("order seen", "order_id=%s user_id=%s", ev->order_id, ev->user_id);
	return rc < 0 ? -1 : 0;
}

/*
 * What OrderPlaced told us about the order: the alert's human text (naming
 * the pizza) and the callback URL, if any ("" when none or not seen).
 */
static void
order_facts(const struct event *st, char *text, size_t n, char *url, size_t urln)
{
	sqlite3_stmt *q = db_prepare(db, "SELECT items, callback_url FROM orders WHERE order_id = ?");
	const char *items = NULL, *cb = NULL;

	if (q != NULL) {
		sqlite3_bind_text(q, 1, st->order_id, -1, SQLITE_STATIC);
		if (sqlite3_step(q) == SQLITE_ROW) {
			items = (const char *)sqlite3_column_text(q, 0);
			cb = (const char *)sqlite3_column_text(q, 1);
		}
	}
	if (items != NULL && items[0] != '\0')
		snprintf(text, n, "Your order is ready for pickup: %s.", items);
	else
		snprintf(text, n, "Your order is ready for pickup.");
	snprintf(url, urln, "%s", cb != NULL ? cb : "");
	db_done(db, q);
}

static int
on_ready(const struct event *st)
{
	struct event alert;
	char topic[TOPIC_MAX], *json = NULL, url[EVENT_URL_MAX + 1];
	int rc = -1, inserted = -1;
	sqlite3_stmt *ins;

	if (event_init(&alert, EVENT_PICKUP_ALERT, st->order_id, st->user_id) != 0 ||
	    topic_alerts(topic, sizeof(topic), st->user_id) != 0)
		return -1;
	db_lock(db);
	order_facts(st, alert.message, sizeof(alert.message), url, sizeof(url));
	if ((json = event_encode(&alert)) == NULL || db_begin(db) != 0)
		goto out;
	/* the alerts row is the "sent once" record; only a new row queues an alert */
	ins = db_prepare(db, "INSERT OR IGNORE INTO alerts(order_id, user_id, event_id, ready_ms) VALUES (?, ?, ?, ?)");
	if (ins != NULL) {
		sqlite3_bind_text(ins, 1, alert.order_id, -1, SQLITE_STATIC);
		sqlite3_bind_text(ins, 2, alert.user_id, -1, SQLITE_STATIC);
		sqlite3_bind_text(ins, 3, alert.event_id, -1, SQLITE_STATIC);
		sqlite3_bind_int64(ins, 4, st->at_ms);
		inserted = insert_step(ins, st->order_id);
	}
	if (inserted < 0 ||
	    (inserted == 1 && outbox_add(db, topic, json, strlen(json), 1, 0, (unsigned)cfg.alert_expiry_s) != 0) ||
	    (inserted == 1 && url[0] != '\0' && delivery_add(db, st, url) != 0)) {
		db_rollback(db);
		goto out;
	}
	if (db_commit(db) != 0) {
		db_rollback(db);
		goto out;
	}
	rc = 0;
	if (inserted == 1) {
		metric_inc(m_alerts);
		log_info("pickup alert queued", "order_id=%s user_id=%s", st->order_id, st->user_id);
	} else {
		metric_inc(m_duplicates);
		log_debug("pickup alert already sent", "order_id=%s", st->order_id);
	}
out:
	db_unlock(db);
	free(json);
	if (rc == 0)
		outbox_flush(outbox);
	return rc;
}

static void
on_message(void *arg, const struct mq_message *m)
{
	struct event ev;
	char err[256];
	int rc = 0;

	(void)arg;
	if (event_decode(m->payload, m->len, &ev, err, sizeof(err)) != 0) {
		deadletter_send(mq, SVC, m->topic, m->payload, m->len, err);
		return;
	}
	if (ev.type == EVENT_ORDER_PLACED && strcmp(m->topic, TOPIC_PLACED) == 0)
		for (int attempt = 0; (rc = on_placed(&ev)) != 0 && attempt < 3; attempt++)
			sleep_ms(20 << attempt); /* a store failure may pass */
	else if (ev.type == EVENT_ORDER_STATUS && topic_parse(m->topic, NULL, NULL) == TOPIC_KIND_STATUS) {
		char user[NAME_MAX_LEN + 1], order[NAME_MAX_LEN + 1];

		topic_parse(m->topic, user, order);
		if (strcmp(user, ev.user_id) != 0 || strcmp(order, ev.order_id) != 0) {
			deadletter_send(mq, SVC, m->topic, m->payload, m->len, "event ids do not match its topic");
			return;
		}
		if (ev.status == STATUS_READY)
			for (int attempt = 0; (rc = on_ready(&ev)) != 0 && attempt < 3; attempt++)
				sleep_ms(20 << attempt);
	} else {
		snprintf(err, sizeof(err), "unexpected %s on %s", event_type_name(ev.type), m->topic);
		deadletter_send(mq, SVC, m->topic, m->payload, m->len, err);
		return;
	}
	if (rc != 0)
		deadletter_send(mq, SVC, m->topic, m->payload, m->len, "could not be stored (database error)");
}

static double
backlog(void *arg)
{
	return (double)outbox_backlog(arg);
}

int
main(int argc, char **argv)
{
	const struct opt opts[] = {
		SVC_OPTS(&cfg.so, "notifier", "notifier"),
		{ "db", 0, OPT_STR, "PIZZA_NOTIFIER_DB", "notifier.db", "SQLite file for alerts and the outbox",
		    &cfg.db_path, 0, 0 },
		{ "alert-expiry", 0, OPT_INT, "PIZZA_ALERT_EXPIRY_S", "3600",
		    "seconds an undelivered pickup alert waits for an offline phone", &cfg.alert_expiry_s, 1, 604800 },
		{ "outbox-retry-ms", 0, OPT_INT, "PIZZA_OUTBOX_RETRY_MS", "10000",
		    "re-publish alerts the broker has not acknowledged after this long", &cfg.outbox_retry_ms, 100,
		    3600000 },
		{ "callback-secret-file", 0, OPT_STR, "PIZZA_CALLBACK_SECRET_FILE", NULL,
		    "file holding the secret that signs callbacks (or set PIZZA_CALLBACK_SECRET)",
		    &cfg.callback_secret_file, 0, 0 },
		{ "callback-attempts", 0, OPT_INT, "PIZZA_CALLBACK_ATTEMPTS", "8", "attempts per callback before it fails",
		    &cfg.cb_attempts, 1, EVENT_MAX_ATTEMPTS },
		{ "callback-backoff-ms", 0, OPT_INT, "PIZZA_CALLBACK_BACKOFF_MS", "1000",
		    "wait after the first failed attempt; doubles each time, with jitter", &cfg.cb_base_ms, 1, 3600000 },
		{ "callback-backoff-max-ms", 0, OPT_INT, "PIZZA_CALLBACK_BACKOFF_MAX_MS", "300000",
		    "longest wait between attempts", &cfg.cb_cap_ms, 1, 86400000 },
		{ "callback-timeout-ms", 0, OPT_INT, "PIZZA_CALLBACK_TIMEOUT_MS", "5000",
		    "how long one attempt may take before it counts as failed", &cfg.cb_timeout_ms, 100, 60000 },
		{ "metrics-port", 0, OPT_INT, "PIZZA_METRICS_PORT", "0",
		    "port for GET /metrics and /healthz (0: none)", &cfg.metrics_port, 0, 65535 },
		{ "metrics-bind", 0, OPT_STR, "PIZZA_METRICS_BIND", "127.0.0.1", "address the metrics port listens on",
		    &cfg.metrics_bind, 0, 0 },
		{ "callback-allow", 0, OPT_STR, "PIZZA_CALLBACK_ALLOW", NULL,
		    "hosts, addresses or CIDR ranges callbacks may reach although private or local (comma-separated)",
		    &cfg.callback_allow, 0, 0 },
		{ NULL, 0, 0, NULL, NULL, NULL, NULL, 0, 0 },
	};
	struct delivery_policy policy;
	struct allowlist *allow;
	struct httpd *ops;
	char err[256];
	struct deliverer *deliverer;
	char *secret = NULL;
	const char *env;

	svc_parse(SVC, "Fanout consumer: sends each user one pickup alert when an order is ready.", opts,
	    &cfg.so, argc, argv);
	svc_signals();
	if (cfg.callback_secret_file != NULL) {
		if ((secret = file_read_small(cfg.callback_secret_file, 4096)) == NULL)
			fatal("cannot read the callback secret file", "path=%s", cfg.callback_secret_file);
	} else if ((env = getenv("PIZZA_CALLBACK_SECRET")) != NULL && env[0] != '\0')
		secret = strdup(env);
	if (secret == NULL || strlen(secret) < 16)
		fatal("callbacks need a signing secret of at least 16 characters: set PIZZA_CALLBACK_SECRET or "
		      "--callback-secret-file", NULL);
	if ((allow = allowlist_parse(cfg.callback_allow, err, sizeof(err))) == NULL) {
		fprintf(stderr, "%s: --callback-allow: %s\n", SVC, err);
		return 2;
	}
	curl_global_init(CURL_GLOBAL_DEFAULT);
	if ((db = db_open(cfg.db_path, NOTIFIER_SCHEMA)) == NULL)
		fatal("cannot open the notifier database", "path=%s", cfg.db_path);
	mq = svc_mq_new(&cfg.so, on_message, NULL);
	if ((outbox = outbox_new(db, mq, cfg.outbox_retry_ms)) == NULL)
		fatal("out of memory", NULL);
	svc_metrics(mq);
	m_alerts = metric_counter("pizza_alerts_sent_total", "Pickup alerts queued (one per order)", NULL);
	m_duplicates = metric_counter("pizza_duplicates_dropped_total", "Redelivered events dropped as already handled",
	    "topic=\"" TOPIC_ALL_STATUS "\"");
	metric_gauge_fn("pizza_outbox_backlog", "Outbox messages the broker has not acknowledged yet", NULL, backlog, outbox);
	mq_subscribe(mq, TOPIC_PLACED, 1, 0);
	mq_subscribe(mq, TOPIC_ALL_STATUS, 1, MQ_RETAIN_NEW_ONLY);
	svc_mq_connect(mq, &cfg.so);
	ops = svc_ops_start(cfg.metrics_bind, cfg.metrics_port, mq, db);
	policy.max_attempts = (int)cfg.cb_attempts;
	policy.base_ms = cfg.cb_base_ms;
	policy.cap_ms = cfg.cb_cap_ms;
	policy.timeout_ms = cfg.cb_timeout_ms;
	if ((deliverer = deliverer_start(db, outbox, &policy, secret, allow)) == NULL)
		fatal("cannot start the callback deliverer", NULL);
	log_info("ready", "db=%s", cfg.db_path);

	while (!svc_quit) {
		outbox_flush(outbox);
		sleep_ms(200);
	}

	httpd_stop(ops);
	deliverer_stop(deliverer);
	log_info("shutting down", "outbox_backlog=%lld", (long long)outbox_backlog(outbox));
	outbox_flush(outbox);
	mq_disconnect(mq, 2000);
	mq_free(mq);
	outbox_free(outbox);
	db_close(db);
	free(secret);
	allowlist_free(allow);
	curl_global_cleanup();
	return 0;
}

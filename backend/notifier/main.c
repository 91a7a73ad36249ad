/*
 * notifier - a fanout consumer.  Takes every OrderReady (plain
 * subscription to pizza/orders/ready: the executors' ready, with the
 * order's items and callback URL) and publishes one PickupAlert to
 * pizza/users/<user>/alerts (QoS 1, with a message expiry); an order that
 * came with a callback URL gets its callback too.
 *
 * One alert per order, across redeliveries and restarts: the decision is
 * recorded in the store (store.h: the alerts row, keyed by order id) in
 * the same transaction as the alert itself goes into the outbox, before
 * the OrderReady is acknowledged.  What is consumed and who handles
 * it: rows[] below.
 *
 * Delivery receipts (docs/events.md, "Devices and delivery receipts"): a
 * device that said hello gets each later alert of its user kept pending
 * until its receipt; every hello, and every reconnect of the notifier
 * itself, sends what is still pending again to the device's own topic.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "consume.h"
#include "delivery.h"
#include "device.h"
#include "event.h"
#include "httpd.h"
#include "log.h"
#include "metrics.h"
#include "mq.h"
#include "netcheck.h"
#include "store.h"
#include "svc.h"
#include "topic.h"
#include "util.h"

#define SVC "notifier"

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

static struct metric *m_alerts, *m_receipts, *m_resent;

static struct notifier_store *store;

/*
 * The alert for ready (an OrderReady, or a ready OrderStatus) into alert,
 * naming items ("" when unknown), and its topic.  Returns 0, or -1 if it
 * cannot be built (it never could).
 */
static int
alert_build(const struct event *ready, const char *items, struct event *alert, char *topic, size_t n)
{
	if (event_init(alert, EVENT_PICKUP_ALERT, ready->order_id, ready->user_id) != 0 ||
	    topic_alerts(topic, n, ready->user_id) != 0)
		return -1;
	if (items[0] == '\0')
		snprintf(alert->message, sizeof(alert->message), "Your order is ready for pickup.");
	else if (snprintf(alert->message, sizeof(alert->message), "Your order is ready for pickup: %s.", items) >=
	    (int)sizeof(alert->message))
		log_debug("alert text cut to fit", "order_id=%s", ready->order_id); /* a long order; the alert still goes */
	return 0;
}

/*
 * One PickupAlert per order for ready (and its callback, when callback_url
 * is not ""), recorded and queued in one store transaction.
 */
static enum consume_result
alert_queue(struct consume_msg *c, const struct event *ready, const char *items, const char *callback_url)
{
	struct nstore_alert a;
	struct event alert;
	char topic[TOPIC_MAX], *json = NULL, *body = NULL;
	enum consume_result r = CONSUME_INVALID;
	enum nstore_result sr;

	if (alert_build(ready, items, &alert, topic, sizeof(topic)) != 0 || (json = event_encode(&alert)) == NULL ||
	    (callback_url[0] != '\0' && (body = delivery_body(ready)) == NULL)) {
		snprintf(c->reason, sizeof(c->reason), "cannot build the pickup alert");
		goto out;
	}
	a = (struct nstore_alert){ .order_id = ready->order_id, .user_id = ready->user_id, .event_id = alert.event_id,
		.ready_ms = ready->at_ms, .msg = { topic, json, strlen(json), 1, (unsigned)cfg.alert_expiry_s },
		.callback_url = callback_url, .callback_body = body };
	if ((sr = nstore_queue_alert(store, &a)) == NSTORE_OK) {
		metric_inc(m_alerts);
		log_info("pickup alert queued", "order_id=%s user_id=%s", ready->order_id, ready->user_id);
		r = CONSUME_DONE;
	} else if (sr == NSTORE_DUP) {
		log_debug("pickup alert already sent", "order_id=%s", ready->order_id);
		r = CONSUME_DUPLICATE;
	} else
		r = CONSUME_RETRY;
out:
	free(json);
	free(body);
	if (r == CONSUME_DONE || r == CONSUME_DUPLICATE)
		nstore_flush(store);
	return r;
}

/* On OrderReady, which carries the order's items and callback URL: the alert and the callback. */
static enum consume_result
on_ready(void *arg, struct consume_msg *c)
{
	char items[NSTORE_ITEMS_MAX + 1];

	(void)arg;
	nstore_items_text(c->ev, items, sizeof(items));
	return alert_queue(c, c->ev, items, c->ev->callback_url);
}

/*
 * The upgrade: what a session of the version before OrderReady still
 * holds on its retired subscriptions (rows[] below) is handled as that
 * version did, so an order that became ready across the upgrade keeps its
 * alert and callback.  An OrderPlaced keeps the items and callback URL in
 * the store's orders table; a ready status takes them from there.
 */
static enum consume_result
on_legacy_placed(void *arg, struct consume_msg *c)
{
	(void)arg;
	switch (nstore_put_order(store, c->ev)) {
	case NSTORE_OK:
		return CONSUME_DONE;
	case NSTORE_DUP:
		return CONSUME_DUPLICATE;
	default:
		return CONSUME_RETRY; /* never acknowledged unstored */
	}
}

static enum consume_result
on_legacy_status(void *arg, struct consume_msg *c)
{
	struct nstore_order order;

	(void)arg;
	if (c->ev->status != STATUS_READY)
		return CONSUME_DONE;
	/* NSTORE_NOT_FOUND: a ready whose OrderPlaced this store never saw gets a plain alert */
	if (nstore_order(store, c->ev->order_id, &order) == NSTORE_FAIL)
		return CONSUME_RETRY;
	log_info("ready from an older version's subscription", "order_id=%s", c->ev->order_id);
	return alert_queue(c, c->ev, order.items, order.callback_url);
}

/*
 * A device's hello (on every connect): it is one of its user's devices
 * from now on, and gets again every alert still waiting for its receipt.
 */
static enum consume_result
on_hello(void *arg, struct consume_msg *c)
{
	char user[NAME_MAX_LEN + 1], device[NAME_MAX_LEN + 1], named[NAME_MAX_LEN + 1];
	int resent = 0;

	(void)arg;
	if (topic_parse_device(c->m->topic, user, device) != TOPIC_KIND_DEVICE_HELLO) {
		snprintf(c->reason, sizeof(c->reason), "the topic's user or device name is not valid");
		return CONSUME_INVALID;
	}
	if (device_hello_decode(c->m->payload, c->m->len, named, c->reason, sizeof(c->reason)) != 0)
		return CONSUME_INVALID;
	if (strcmp(named, device) != 0) {
		snprintf(c->reason, sizeof(c->reason), "device: '%s' is not the topic's device '%s'", named, device);
		return CONSUME_INVALID;
	}
	if (nstore_hello(store, user, device, now_ms(), &resent) != NSTORE_OK)
		return CONSUME_RETRY;
	log_info("device hello", "user_id=%s device=%s resent=%d", user, device, resent);
	if (resent > 0) {
		metric_add(m_resent, resent);
		nstore_flush(store);
	}
	return CONSUME_DONE;
}

/* A device's receipt for an alert it showed: that (alert, device) is delivered, at our time. */
static enum consume_result
on_receipt(void *arg, struct consume_msg *c)
{
	char user[NAME_MAX_LEN + 1], device[NAME_MAX_LEN + 1];
	struct device_receipt r;

	(void)arg;
	if (device_receipt_from(c->m->topic, c->m->payload, c->m->len, user, device, &r, c->reason,
		sizeof(c->reason)) != 0)
		return CONSUME_INVALID;
	switch (nstore_receipt(store, user, device, r.event_id, r.order_id, now_ms())) {
	case NSTORE_OK:
		metric_inc(m_receipts);
		log_debug("delivery receipt", "user_id=%s device=%s order_id=%s", user, device, r.order_id);
		return CONSUME_DONE;
	case NSTORE_DUP:
		return CONSUME_DUPLICATE;
	case NSTORE_NOT_FOUND:
		snprintf(c->reason, sizeof(c->reason), "no alert %s of order %s was sent to user %s", r.event_id,
		    r.order_id, user);
		return CONSUME_INVALID;
	default:
		return CONSUME_RETRY;
	}
}

/* What the notifier consumes, and who handles it. */
static const struct consume_row rows[] = {
	{ TOPIC_READY, 1, 0, EVENT_ORDER_READY, on_ready },
	{ TOPIC_ALL_HELLO, 1, 0, CONSUME_RAW, on_hello },
	{ TOPIC_ALL_RECEIPTS, 1, 0, CONSUME_RAW, on_receipt },
	/* until OrderReady carried the order, every OrderPlaced and every status came here */
	{ TOPIC_PLACED, 1, MQ_RETIRED, EVENT_ORDER_PLACED, on_legacy_placed },
	{ TOPIC_ALL_STATUS, 1, MQ_RETIRED, EVENT_ORDER_STATUS, on_legacy_status },
};

/*
 * The main loop's device work: after the connection to the broker came
 * back (a crashed broker may have lost what it queued for offline devices),
 * every pending device alert is sent again; once a minute, expired ones
 * are forgotten.
 */
static void
devices_tick(struct mq *mq)
{
	static unsigned reconnects;
	static int64_t next_expiry;
	int resent = 0;

	if (mq_reconnects(mq) != reconnects && mq_is_connected(mq) &&
	    nstore_resend_all(store, now_ms(), &resent) == NSTORE_OK) {
		reconnects = mq_reconnects(mq);
		log_info("reconnected: pending device alerts sent again", "resent=%d", resent);
		metric_add(m_resent, resent);
	}
	if (mono_ms() >= next_expiry) {
		nstore_expire(store, now_ms());
		next_expiry = mono_ms() + 60000;
	}
}

/*
 * The secret that signs callbacks, from --callback-secret-file or
 * PIZZA_CALLBACK_SECRET, as a new string.  Exits when there is none (or
 * it is too short to be one).
 */
static char *
callback_secret(void)
{
	char *secret = NULL;
	const char *env;

	if (cfg.callback_secret_file != NULL) {
		if ((secret = file_read_small(cfg.callback_secret_file, 4096)) == NULL)
			fatal("cannot read the callback secret file", "path=%s", LOGQ(cfg.callback_secret_file));
	} else if ((env = getenv("PIZZA_CALLBACK_SECRET")) != NULL && env[0] != '\0')
		secret = strdup(env);
	if (secret == NULL || strlen(secret) < 16)
		fatal("callbacks need a signing secret of at least 16 characters: set PIZZA_CALLBACK_SECRET or "
		      "--callback-secret-file", NULL);
	return secret;
}

static double
backlog(void *arg)
{
	return (double)nstore_backlog(arg);
}

static double
pending(void *arg)
{
	return (double)nstore_pending(arg, now_ms());
}

int
main(int argc, char **argv)
{
	const struct opt opts[] = {
		SVC_OPTS(&cfg.so, "notifier", "notifier"),
		{ "db", 0, OPT_STR, "PIZZA_NOTIFIER_DB", "notifier.db",
		    "the database for alerts and the outbox: a SQLite file, or a postgresql:// URL shared by several "
		    "instances (each with its own --client-id)",
		    &cfg.db_path, 0, 0 },
		{ "alert-expiry", 0, OPT_DURATION_S, "PIZZA_ALERT_EXPIRY_S", "1h",
		    "how long an undelivered pickup alert waits for an offline phone", &cfg.alert_expiry_s, 1, 604800 },
		{ "outbox-retry", 0, OPT_DURATION_MS, "PIZZA_OUTBOX_RETRY_MS", "10s",
		    "re-publish alerts the broker has not acknowledged after this long", &cfg.outbox_retry_ms, 100,
		    3600000 },
		{ "callback-secret-file", 0, OPT_STR, "PIZZA_CALLBACK_SECRET_FILE", NULL,
		    "file holding the secret that signs callbacks (or set PIZZA_CALLBACK_SECRET)",
		    &cfg.callback_secret_file, 0, 0 },
		{ "callback-attempts", 0, OPT_INT, "PIZZA_CALLBACK_ATTEMPTS", "8", "attempts per callback before it fails",
		    &cfg.cb_attempts, 1, EVENT_MAX_ATTEMPTS },
		{ "callback-backoff", 0, OPT_DURATION_MS, "PIZZA_CALLBACK_BACKOFF_MS", "1s",
		    "wait after the first failed attempt; doubles each time, with jitter", &cfg.cb_base_ms, 1, 3600000 },
		{ "callback-backoff-max", 0, OPT_DURATION_MS, "PIZZA_CALLBACK_BACKOFF_MAX_MS", "5m",
		    "longest wait between attempts", &cfg.cb_cap_ms, 1, 86400000 },
		{ "callback-timeout", 0, OPT_DURATION_MS, "PIZZA_CALLBACK_TIMEOUT_MS", "5s",
		    "how long one attempt may take before it counts as failed", &cfg.cb_timeout_ms, 100, 60000 },
		SVC_METRICS_OPTS(&cfg.metrics_port, &cfg.metrics_bind),
		{ "callback-allow", 0, OPT_STR, "PIZZA_CALLBACK_ALLOW", NULL,
		    "hosts, addresses or CIDR ranges callbacks may reach although private or local (comma-separated)",
		    &cfg.callback_allow, 0, 0 },
		OPT_ALIAS_OF("outbox-retry-ms", "outbox-retry"),
		OPT_ALIAS_OF("callback-backoff-ms", "callback-backoff"),
		OPT_ALIAS_OF("callback-backoff-max-ms", "callback-backoff-max"),
		OPT_ALIAS_OF("callback-timeout-ms", "callback-timeout"),
		{ NULL, 0, 0, NULL, NULL, NULL, NULL, 0, 0 },
	};
	struct delivery_policy policy;
	struct allowlist *allow;
	struct httpd *ops;
	char err[256], dblabel[256];
	struct deliverer *deliverer;
	struct consumer *consumer;
	struct mq *mq;
	char *secret;

	svc_parse(SVC, "Fanout consumer: sends each user one pickup alert when an order is ready.", opts,
	    &cfg.so, argc, argv);
	svc_signals();
	secret = callback_secret();
	if ((allow = allowlist_parse(cfg.callback_allow, err, sizeof(err))) == NULL) {
		fprintf(stderr, "%s: --callback-allow: %s\n", SVC, err);
		return 2;
	}
	curl_global_init(CURL_GLOBAL_DEFAULT);
	if ((consumer = consume_new(SVC, rows, sizeof(rows) / sizeof(rows[0]), NULL)) == NULL)
		fatal("out of memory", NULL);
	mq = svc_mq_new(&cfg.so, consume_message, consumer);
	if (consume_attach(consumer, mq) != 0)
		fatal("cannot declare the subscriptions", NULL);
	/* the store publishes through mq; nothing arrives before svc_mq_connect() */
	nstore_label(cfg.db_path, dblabel, sizeof(dblabel)); /* a URL's password is never logged */
	if ((store = nstore_open(cfg.db_path, mq, cfg.outbox_retry_ms)) == NULL)
		fatal("cannot open the notifier database", "db=%s", LOGQ(dblabel));
	/* a delivery another instance holds is left to it for longer than one attempt can take */
	nstore_claim_ms(store, 2 * cfg.cb_timeout_ms + 5000);
	svc_metrics(mq);
	m_alerts = metric_counter("pizza_alerts_sent_total",
	    "Pickup alerts committed for sending: one per order that reached ready, stored with its outbox message in one "
	    "transaction (the outbox publishes it until the broker acknowledges; pizza_outbox_backlog counts those not yet "
	    "acknowledged)",
	    NULL);
	metric_gauge_fn("pizza_outbox_backlog", "Outbox messages the broker has not acknowledged yet", NULL, backlog, store);
	m_receipts = metric_counter("pizza_receipts_total", "Delivery receipts taken: a device showed an alert", NULL);
	m_resent = metric_counter("pizza_alerts_resent_total",
	    "Pending alerts sent again to a device's own topic (after its hello or the notifier's reconnect)", NULL);
	metric_gauge_fn("pizza_device_alerts_pending", "Alerts waiting for a device's receipt, not expired", NULL, pending,
	    store);
	svc_mq_connect(mq, &cfg.so);
	ops = svc_ops_start(cfg.metrics_bind, cfg.metrics_port, mq, nstore_probe, store);
	policy.max_attempts = (int)cfg.cb_attempts;
	policy.base_ms = cfg.cb_base_ms;
	policy.cap_ms = cfg.cb_cap_ms;
	policy.timeout_ms = cfg.cb_timeout_ms;
	if ((deliverer = deliverer_start(store, &policy, secret, allow)) == NULL)
		fatal("cannot start the callback deliverer", NULL);
	svc_ready("db=%s", LOGQ(dblabel));

	while (!svc_quit) {
		devices_tick(mq);
		nstore_flush(store);
		svc_tick(mq);
		sleep_ms(200);
	}
	svc_stopping();

	httpd_stop(ops);
	deliverer_stop(deliverer);
	log_info("shutting down", "outbox_backlog=%lld", (long long)nstore_backlog(store));
	nstore_flush(store);
	mq_disconnect(mq, 2000);
	mq_free(mq);
	consume_free(consumer);
	nstore_close(store);
	free(secret);
	allowlist_free(allow);
	curl_global_cleanup();
	return 0;
}

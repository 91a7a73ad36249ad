/*
 * store.h - the notifier's store: the alerts it has sent (once per
 * order), the devices of each user and which alerts
 * each has confirmed (delivery receipts), the callback deliveries still to
 * make, and the outbox that publishes what a transaction decided.  The one place the
 * notifier keeps or reads anything: store.c picks the backend, SQLite
 * (store_sqlite.c, one instance) or PostgreSQL (store_pg.c, any number of
 * instances on one database, every outcome below still once per order).
 *
 * Every function locks the store itself: safe from paho's receive thread,
 * the callback deliverer's thread and the main loop at once.  Strings
 * passed in are borrowed for the call only; nothing is kept.
 */
#ifndef PIZZA_NOTIFIER_STORE_H
#define PIZZA_NOTIFIER_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "event.h"

struct mq;
struct notifier_store;

enum nstore_result {
	NSTORE_OK = 0,
	NSTORE_DUP,       /* had it already: nothing changed */
	NSTORE_NOT_FOUND, /* no such order or delivery: nothing changed */
	NSTORE_FAIL,      /* the database failed: nothing changed, logged */
};

/*
 * Opens (creating) the store at target: a SQLite file path, or a
 * postgresql:// (postgres://) URL.  Messages queued by the functions
 * below are published on mq by nstore_flush(), again after retry_ms while
 * the broker has not acknowledged them (on PostgreSQL retry_ms is also the
 * lease after which another instance publishes a dead one's messages); mq
 * may be NULL (nothing is then published: tests).  mq is borrowed and must
 * outlive the store.  NULL on error (logged; a bad URL scheme too).
 */
struct notifier_store *nstore_open(const char *target, struct mq *mq, int64_t retry_ms);

/* Writes target into buf as it may be logged (a URL without its password).  Returns buf. */
const char *nstore_label(const char *target, char *buf, size_t n);

/*
 * How long a delivery nstore_due() hands out is held from other instances
 * sharing the database (PostgreSQL): longer than one callback attempt
 * takes.  Default 60 s; an instance that dies mid-attempt leaves its
 * delivery to the others after that.
 */
void nstore_claim_ms(struct notifier_store *s, int64_t ms);
/* Closes the store.  NULL is ignored. */
void nstore_close(struct notifier_store *s);

/*
 * The orders table, for the upgrade only.  Before OrderReady carried the
 * items and callback URL, the notifier read every OrderPlaced and kept
 * them here for the alert.  What a session of that older version still
 * holds when this one starts (main.c's retired rows) is handled the old
 * way, so an order that became ready across the upgrade keeps its alert
 * and callback; nothing else writes the table.  It goes in the release
 * after this one.
 *
 * Records what an OrderPlaced (placed) says the alert needs: its items
 * and its callback URL.  Returns NSTORE_OK, NSTORE_DUP (the order was
 * recorded before; the first one stands) or NSTORE_FAIL.
 */
enum nstore_result nstore_put_order(struct notifier_store *s, const struct event *placed);

/* What nstore_put_order() kept of an order. */
#define NSTORE_ITEMS_MAX (EVENT_MAX_ITEMS * (EVENT_SKU_MAX + 8))
/* "2 x margherita, 1 x funghi": ev's items (OrderPlaced, OrderReady) as the alert names them, into buf (n bytes). */
void nstore_items_text(const struct event *ev, char *buf, size_t n);
struct nstore_order {
	char items[NSTORE_ITEMS_MAX + 1];     /* "2 x margherita, 1 x funghi" */
	char callback_url[EVENT_URL_MAX + 1]; /* "" when the order has none */
};

/*
 * Fills *out with what was kept of order_id.  Returns NSTORE_OK,
 * NSTORE_NOT_FOUND (no OrderPlaced seen for it) or NSTORE_FAIL; *out is
 * all empty strings unless NSTORE_OK.
 */
enum nstore_result nstore_order(struct notifier_store *s, const char *order_id, struct nstore_order *out);

/* A message to publish once the transaction that queues it commits (never retained). */
struct nstore_msg {
	const char *topic;
	const void *payload;
	size_t len;
	int qos;
	unsigned expiry_s; /* 0: none */
};

/* An order's pickup alert, and its callback if the order asked for one. */
struct nstore_alert {
	const char *order_id, *user_id;
	const char *event_id;      /* the PickupAlert's */
	int64_t ready_ms;          /* when the order became ready */
	struct nstore_msg msg;     /* the PickupAlert */
	const char *callback_url;  /* NULL or "": no callback */
	const char *callback_body; /* the callback's POST body (with a callback_url) */
};

/*
 * The "sent once" record: in one transaction, records that the order's
 * alert is sent, queues a->msg in the outbox, stores one pending device
 * delivery of it per device of the user that has said hello (kept until
 * that device's receipt, or until the alert expires: a->msg.expiry_s from
 * now) and, with a callback URL, stores a pending delivery of
 * callback_body to it (due at once).
 * Returns NSTORE_OK (all of it stored), NSTORE_DUP (this order's alert was
 * queued before: nothing changed, nothing queued) or NSTORE_FAIL (rolled
 * back: nothing changed).
 */
enum nstore_result nstore_queue_alert(struct notifier_store *s, const struct nstore_alert *a);

/*
 * A hello from device of user_id at now_ms: records the device (the
 * user's later alerts are kept pending for it) and, in the same
 * transaction, queues every alert still pending for it and not expired
 * again, to pizza/users/<user_id>/devices/<device>/alerts with the
 * original payload and what is left of its expiry.  *resent (may be NULL)
 * is how many.  Returns NSTORE_OK or NSTORE_FAIL (nothing changed or
 * queued).
 */
enum nstore_result nstore_hello(struct notifier_store *s, const char *user_id, const char *device, int64_t now_ms,
    int *resent);

/*
 * The same for every device at once (after the notifier's own connection
 * to the broker came back: a crashed broker may have lost what it had
 * queued for offline devices, and a hello sent before the notifier
 * resubscribed).  Returns NSTORE_OK or NSTORE_FAIL.
 */
enum nstore_result nstore_resend_all(struct notifier_store *s, int64_t now_ms, int *resent);

/*
 * A receipt: device of user_id has shown the alert event_id of order_id,
 * at now_ms (the notifier's clock, never the device's).  Returns NSTORE_OK
 * (the pending delivery is now delivered; also for a known alert of this
 * user the device had not been waiting for, which changes nothing),
 * NSTORE_DUP (delivered before: the first time stands), NSTORE_NOT_FOUND
 * (no alert event_id of order_id for user_id: nothing changed) or
 * NSTORE_FAIL.
 */
enum nstore_result nstore_receipt(struct notifier_store *s, const char *user_id, const char *device,
    const char *event_id, const char *order_id, int64_t now_ms);

/* Device deliveries still waiting for a receipt and not expired at now_ms, or -1 on a database error. */
int64_t nstore_pending(struct notifier_store *s, int64_t now_ms);

/*
 * Forgets device deliveries (pending or delivered) whose alert expired
 * before now_ms.  Returns how many, or -1 on a database error.
 */
int nstore_expire(struct notifier_store *s, int64_t now_ms);

/* One pending callback delivery, lent to an nstore_due() callback for the call only. */
struct nstore_delivery {
	const char *delivery_id, *order_id, *user_id, *url, *body;
	int attempts; /* attempts made so far */
};

/* Returns 0 to be handed the next due delivery, nonzero to stop. */
typedef int (*nstore_due_fn)(void *arg, const struct nstore_delivery *d);

/*
 * Calls fn for each pending delivery due at now_ms, earliest first, at
 * most limit of them, until fn returns nonzero.  On PostgreSQL each one
 * handed out is claimed for nstore_claim_ms() first (SKIP LOCKED): no other
 * instance is handed it meanwhile.  fn runs with the store
 * locked: it must be short and must not call the store.  Returns
 * NSTORE_OK or NSTORE_FAIL (the deliveries handed out so far stand).
 */
enum nstore_result nstore_due(struct notifier_store *s, int64_t now_ms, int limit, nstore_due_fn fn, void *arg);

enum nstore_delivery_state { NSTORE_PENDING = 0, NSTORE_DELIVERED, NSTORE_FAILED };

/* The outcome of one callback attempt. */
struct nstore_attempt {
	const char *delivery_id;
	int attempts;                     /* made so far, this one included */
	enum nstore_delivery_state state; /* PENDING: try again at next_ms */
	const char *last_error;           /* NULL when delivered */
	int64_t at_ms;                    /* when the attempt ended */
	int64_t next_ms;                  /* PENDING only: when to try again */
	const struct nstore_msg *announce; /* NULL, or a message to queue with the outcome */
};

/*
 * Records an attempt's outcome and, in the same transaction, queues
 * announce.  Returns NSTORE_OK, NSTORE_NOT_FOUND (no such delivery; on
 * PostgreSQL also one no longer pending: another instance finished it) or
 * NSTORE_FAIL; on either of those nothing changed and nothing was queued.
 */
enum nstore_result nstore_record_attempt(struct notifier_store *s, const struct nstore_attempt *a);

/*
 * Hands committed messages to the broker, and those unacknowledged for
 * retry_ms again.  Returns how many were handed over, or -1 on a database
 * error (they wait for the next call).  0 without an mq.
 */
int nstore_flush(struct notifier_store *s);
/* Messages the broker has not acknowledged yet, as of the last nstore_flush(). */
int64_t nstore_backlog(struct notifier_store *s);

/* 0 when the store can write now (one small write, committed), else -1: for /healthz. */
int nstore_probe(void *s);

#endif

/*
 * store.h - order-history's store: every user's orders and every status
 * with its time.  The one place order-history keeps or reads anything,
 * on a SQLite file (store_sqlite.c, the default) or on PostgreSQL
 * (store_pg.c, shared by several instances), chosen by hstore_open()'s
 * target; store.c holds what both share.
 *
 * hstore_apply() is idempotent: an OrderPlaced is kept once per order,
 * an OrderStatus once per (order, seq), whatever the redeliveries, so the
 * history holds each event exactly once.  Statuses may arrive before their
 * OrderPlaced (different topics): both are kept and joined when read.
 * Safe to call from several threads (the store locks itself).  On
 * PostgreSQL several instances may share one database: each event is
 * still kept once (INSERT ... ON CONFLICT DO NOTHING), and a lost
 * connection is made again by later calls (never waiting long), which
 * answer HSTORE_FAIL until it is back.
 */
#ifndef PIZZA_HISTORY_STORE_H
#define PIZZA_HISTORY_STORE_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "event.h"

struct history_store;

enum hstore_result {
	HSTORE_OK = 0,
	HSTORE_DUP,       /* hstore_apply(): had it already, nothing changed */
	HSTORE_NOT_FOUND, /* hstore_order(): no such order */
	HSTORE_FAIL,      /* the database failed: nothing changed, logged */
};

/*
 * Opens the store at target, creating its tables when missing:
 * "postgresql://..." or "postgres://..." is a PostgreSQL connection URL
 * (libpq's, e.g. postgresql://history@db.example/pizza?passfile=/etc/pizza/pgpass),
 * any other text without "://" a SQLite file path.  NULL on error (logged,
 * also for another URL scheme).
 */
struct history_store *hstore_open(const char *target);
/* target as it may be logged (a URL's password left out) into buf; returns buf. */
const char *hstore_label(const char *target, char *buf, size_t n);
/* Closes the store.  NULL is ignored. */
void hstore_close(struct history_store *h);

/*
 * Records an OrderPlaced, OrderStatus or CallbackDelivery event: HSTORE_OK,
 * HSTORE_DUP, or HSTORE_FAIL (also for another event type).  A callback's
 * outcome appears in the order's timeline as
 * {"status":"callback_delivered"|"callback_failed","at","attempts","detail","delivery_id"}
 * after the stages, and as the order's "callback" object.
 */
enum hstore_result hstore_apply(struct history_store *h, const struct event *ev);

/*
 * A delivery receipt: device of user_id showed the alert event_id of
 * order_id; at_ms is when this service received it (never the device's
 * clock).  The first receipt of each (order, device) is kept: HSTORE_OK,
 * HSTORE_DUP (had one: nothing changed) or HSTORE_FAIL.  It appears in the
 * order (read only when user_id is the order's user) as a timeline entry
 * {"status":"delivered","at","device","detail":"delivered to <user>/<device>"}
 * after the stages and the callback, and in the order's
 * "deliveries":[{"device","delivered_at"}], earliest first.
 */
enum hstore_result hstore_receipt(struct history_store *h, const char *user_id, const char *device,
    const char *event_id, const char *order_id, int64_t at_ms);

/*
 * One order, into *out as a new JSON object:
 *   {"order_id","user_id","items":[...],"placed_at","status","timeline":[{"status","seq","at","worker"}],
 *    "deliveries":[...]}
 * ("items"/"placed_at" are null until the OrderPlaced is seen; "status" is the
 * latest stage).  Returns HSTORE_OK, HSTORE_NOT_FOUND, or HSTORE_FAIL
 * (logged); *out is NULL unless HSTORE_OK.
 */
enum hstore_result hstore_order(struct history_store *h, const char *order_id, json_t **out);

/*
 * A user's orders, newest first, into *out as a new JSON array of
 * hstore_order() objects: at most limit, and only orders older than
 * before_order_id when it is not NULL.  Returns HSTORE_OK or HSTORE_FAIL
 * (logged; *out is then NULL).
 */
enum hstore_result hstore_user_orders(struct history_store *h, const char *user_id, int limit,
    const char *before_order_id, json_t **out);

/* 0 when the store can write now (one small write, committed), else -1: for /healthz. */
int hstore_probe(void *h);

/* Counts for tests and logs: orders or status rows stored, or -1 on error. */
enum hstore_table { HSTORE_ORDERS, HSTORE_STATUSES };
int64_t hstore_count(struct history_store *h, enum hstore_table t);

#endif

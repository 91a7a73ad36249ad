/*
 * store.h - order-history's store: every user's orders and every status
 * with its time, in one SQLite file.
 *
 * history_apply() is idempotent: an OrderPlaced is kept once per order,
 * an OrderStatus once per (order, seq), whatever the redeliveries, so the
 * history holds each event exactly once.  Statuses may arrive before their
 * OrderPlaced (different topics): both are kept and joined when read.
 * Safe to call from several threads (the store locks itself).
 */
#ifndef PIZZA_HISTORY_STORE_H
#define PIZZA_HISTORY_STORE_H

#include <stdint.h>

#include <jansson.h>

#include "event.h"

struct history;

/* Opens (creating) the store at path. NULL on error (logged). */
struct history *history_open(const char *path);
void history_close(struct history *h);

enum history_apply {
	HISTORY_APPLIED = 1,
	HISTORY_DUPLICATE = 0, /* already had it: nothing changed */
	HISTORY_ERROR = -1,    /* database error: nothing changed, logged */
};

/*
 * Records an OrderPlaced, OrderStatus or CallbackDelivery event (other
 * types: HISTORY_ERROR).  A callback's outcome appears in the order's
 * timeline as {"status":"callback_delivered"|"callback_failed","at","attempts","detail","delivery_id"}
 * after the stages, and as the order's "callback" object.
 */
enum history_apply history_apply(struct history *h, const struct event *ev);

/*
 * One order as a new JSON object:
 *   {"order_id","user_id","items":[...],"placed_at","status","timeline":[{"status","seq","at","worker"}]}
 * ("items"/"placed_at" are null until the OrderPlaced is seen; "status" is the
 * latest stage).  NULL if the order is unknown (or on error).
 */
json_t *history_order(struct history *h, const char *order_id);

/*
 * A user's orders, newest first, as a new JSON array of history_order()
 * objects: at most limit, and only orders older than before_order_id when it
 * is not NULL.  NULL on error.
 */
json_t *history_user_orders(struct history *h, const char *user_id, int limit, const char *before_order_id);

struct db;
/* The store's database, for health checks. */
struct db *history_db(struct history *h);

/* Counts for tests and metrics: orders and status rows stored. */
int64_t history_count_orders(struct history *h);
int64_t history_count_statuses(struct history *h);

#endif

/*
 * delivery.h - signed HTTP callbacks for orders that came with a callback_url.
 *
 * When such an order reaches ready, the notifier stores a delivery in the
 * same transaction as the pickup alert (delivery_add).  A worker thread of
 * its own (the deliverer) POSTs due deliveries with libcurl's multi
 * interface, many at once, so a slow or dead receiver delays nobody else:
 *
 *   POST <callback_url>
 *   Content-Type: application/json
 *   Pizza-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">
 *   Pizza-Delivery: <delivery id, the same on every attempt>
 *
 *   {"type":"OrderReady","order_id":…,"user_id":…,"status":"ready","at":…}
 *
 * A destination the address policy refuses (netcheck.h) fails at once.
 * A 2xx answer delivers it.  Anything else (another status, a timeout, a
 * refused connection) is retried after delivery_backoff_ms(), up to
 * max_attempts; then the delivery is failed.  Either outcome is published as
 * a CallbackDelivery event (through the outbox) for the order's timeline.
 * Pending deliveries live in SQLite, so a restart forgets none.
 */
#ifndef PIZZA_DELIVERY_H
#define PIZZA_DELIVERY_H

#include <stdint.h>

#include "db.h"
#include "event.h"
#include "outbox.h"

#define DELIVERY_SCHEMA                                                                                  \
	"CREATE TABLE IF NOT EXISTS deliveries (delivery_id TEXT PRIMARY KEY, order_id TEXT NOT NULL UNIQUE," \
	"  user_id TEXT NOT NULL, url TEXT NOT NULL, body TEXT NOT NULL,"                                 \
	"  attempts INTEGER NOT NULL DEFAULT 0, next_ms INTEGER NOT NULL,"                                \
	"  state TEXT NOT NULL DEFAULT 'pending', last_error TEXT,"                                       \
	"  created_ms INTEGER NOT NULL, done_ms INTEGER);"                                                \
	"CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries(state, next_ms);"

struct delivery_policy {
	int max_attempts;   /* attempts in all, first included */
	int64_t base_ms;    /* wait after the first failure, before jitter */
	int64_t cap_ms;     /* longest wait, before jitter */
	int64_t timeout_ms; /* per attempt, connect + answer */
};

/*
 * The wait after the failures-th failed attempt (1 = after the first):
 * min(cap, base * 2^(failures-1)), scaled by jitter01 in [0, 1) into
 * [50%, 100%) of that ("equal jitter"), so receivers recovering together are
 * not hit together.
 */
int64_t delivery_backoff_ms(const struct delivery_policy *p, int failures, double jitter01);

/*
 * Stores a delivery to url for the order that status (a ready OrderStatus)
 * finished.  Call with db locked inside the caller's transaction.  Returns
 * 0, or -1 on a database error (logged).
 */
int delivery_add(struct db *db, const struct event *status, const char *url);

struct deliverer;

struct allowlist;

/*
 * Starts the worker thread.  secret signs every delivery; allow lists the
 * private destinations callbacks may still reach (see netcheck.h; checked on
 * every address connected to).  NULL on failure.
 */
struct deliverer *deliverer_start(struct db *db, struct outbox *outbox, const struct delivery_policy *p,
    const char *secret, const struct allowlist *allow);
/* Stops the worker, abandoning attempts in flight (they stay pending and are retried on the next start). */
void deliverer_stop(struct deliverer *d);

#endif

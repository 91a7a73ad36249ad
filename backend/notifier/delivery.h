/*
 * delivery.h - signed HTTP callbacks for orders that came with a callback_url.
 *
 * When such an order reaches ready, the notifier stores a delivery of
 * delivery_body() in the same transaction as the pickup alert
 * (nstore_queue_alert(), store.h).  A worker thread of
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
 * Pending deliveries live in the store, so a restart forgets none.
 */
#ifndef PIZZA_DELIVERY_H
#define PIZZA_DELIVERY_H

#include <stdint.h>

#include "event.h"
#include "store.h"

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
 * The POST body announcing that status (an OrderReady, or a ready OrderStatus) finished its
 * order, as a new string the caller frees:
 *   {"type":"OrderReady","order_id":…,"user_id":…,"status":"ready","at":…}
 * NULL when out of memory.
 */
char *delivery_body(const struct event *status);

struct deliverer;

struct allowlist;

/*
 * Starts the worker thread, which takes due deliveries from store s and
 * records every outcome there.  s and allow are borrowed and must outlive
 * the deliverer; secret (signing every delivery) is copied.  allow lists
 * the private destinations callbacks may still reach (see netcheck.h;
 * checked on every address connected to).  NULL on failure.
 */
struct deliverer *deliverer_start(struct notifier_store *s, const struct delivery_policy *p, const char *secret,
    const struct allowlist *allow);
/* Stops the worker, abandoning attempts in flight (they stay pending and are retried on the next start). */
void deliverer_stop(struct deliverer *d);

#endif

/*
 * supervise.h - order supervision: order-service follows every order
 * (the kitchen's accepted and ready) and publishes it again when it
 * stalls, so a lost OrderPlaced, a dead executor or a broker restart
 * cannot leave it unfinished (docs/reliability.md).
 *
 * An order no executor accepted within the accept deadline, or that is
 * not ready within the ready deadline after an executor accepted it, has
 * its original OrderPlaced published again (through the outbox), and its
 * clock restarts; this repeats until it is ready.  While executors are
 * taking orders, the accept deadline counts from the orders they take, not
 * the clock: an order is stalled once every executor taking orders has
 * taken some placed an accept deadline after it (a backlog is not a loss).
 *
 * Metrics: pizza_orders_completed_total, pizza_order_ready_seconds,
 * pizza_orders_republished_total.
 */
#ifndef PIZZA_SUPERVISE_H
#define PIZZA_SUPERVISE_H

#include <stdint.h>

#include "event.h"
#include "store.h"

/* Executors supervision follows by name (an accepted status's worker); the one silent longest makes room. */
#define SUPERVISE_TAKERS 64

/* Orders published again per pass at most; the rest wait for the next pass. */
#define SUPERVISE_BATCH 500
/* How often supervise_tick() looks, and how long a connection must have been up first. */
#define SUPERVISE_EVERY_MS 500
#define SUPERVISE_SETTLE_MS 2000

struct supervisor;

/*
 * Creates the supervisor of the orders in store (borrowed), which kicks
 * outbox (borrowed, over the same store) after a republish, for the main
 * loop to publish: an order with no accepted status after accept_ms, or
 * not ready ready_ms after it was accepted, is published again.  Registers
 * the metrics (once per process).  NULL out of memory.
 */
struct supervisor *supervise_new(struct order_store *store, struct outbox *outbox, int64_t accept_ms, int64_t ready_ms);
/* Frees sv (not the store or the outbox).  NULL is ignored. */
void supervise_free(struct supervisor *sv);

/*
 * Records an OrderStatus (status->type EVENT_ORDER_STATUS, already
 * validated): moves its order forward to status->seq, and counts an order
 * reaching ready.  Returns the store's verdict: OSTORE_OK (moved forward),
 * OSTORE_DUP (it was that far: nothing changed), OSTORE_NOT_FOUND (an order
 * this store never recorded) or OSTORE_FAIL (nothing recorded; logged).
 * Called on paho's receive thread: one short transaction.
 */
enum ostore_result supervise_progress(struct supervisor *sv, const struct event *status);

/*
 * One supervision pass at wall-clock time now: publishes again every
 * stalled order (at most SUPERVISE_BATCH), logs "order stalled; publishing
 * it again" and counts each once it is committed, then kicks the outbox.
 * Returns how many were published again, or -1 (store failure, logged:
 * nothing was, and the next pass tries again).
 */
int supervise_run(struct supervisor *sv, int64_t now);

/*
 * The main loop's call: runs supervise_run() at most every
 * SUPERVISE_EVERY_MS, and only on a connection up for SUPERVISE_SETTLE_MS
 * (connected_for_ms, from mq_connected_for(): -1 while disconnected).
 * Right after a reconnect the statuses queued for us while we were away
 * are still arriving; supervising then would republish orders that did
 * progress.
 */
void supervise_tick(struct supervisor *sv, int64_t connected_for_ms);

#endif

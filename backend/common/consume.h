/*
 * consume.h - the one consumer skeleton every service is built on.
 *
 * A service says what it consumes in one table, one row per subscription:
 *
 *   static const struct consume_row rows[] = {
 *       { TOPIC_PLACED, 1, 0, EVENT_ORDER_PLACED, on_placed },
 *       { TOPIC_ALL_STATUS, 1, MQ_RETAIN_NEW_ONLY, EVENT_ORDER_STATUS, on_status },
 *   };
 *
 * consume_attach() subscribes from the table, so what is subscribed and what
 * is dispatched can never disagree.  For every message the skeleton finds
 * the row whose filter matches its topic, and for an event row decodes it
 * with event_decode(), checks it is the row's event type and that the ids
 * the topic names (pizza/users/<user>/orders/<order>/...) are the event's.
 * What fails those checks is dead-lettered with the reason and acknowledged:
 * it would fail the same way every time.  Then the handler runs and its
 * result decides:
 *
 *   CONSUME_DONE       acted on and stored: acknowledged.
 *   CONSUME_DUPLICATE  had it already (a redelivery): acknowledged, counted.
 *   CONSUME_INVALID    refused (reason in c->reason): dead-lettered, acknowledged.
 *   CONSUME_RETRY      valid, but could not be stored now (a full disk, a
 *                      database error): NOT acknowledged.  mq_redeliver()
 *                      drops the connection before paho can send the
 *                      PUBACK; the broker delivers the message again once
 *                      paho has reconnected (about a second later), and
 *                      again, until the store takes it.  Nothing sleeps on
 *                      paho's thread, and a valid event is never
 *                      dead-lettered for a failure of ours.  Messages paho
 *                      had read before the drop are not handled (they come
 *                      again too): an order request without an idempotency
 *                      key must not be placed twice.
 *
 * A row with MQ_RETIRED in its flags is a subscription an earlier version
 * held: consume_attach() has it unsubscribed at every connect (mq.h), and
 * what its persistent session still delivers goes to the row's handler,
 * which acts on it as that version did, so nothing queued across an
 * upgrade is lost.  A retired row without a handler has what still comes
 * acknowledged and dropped (counted as consumed, logged at debug).
 *
 * Metrics, per row (label topic="<filter>"): pizza_events_consumed_total,
 * pizza_duplicates_dropped_total, pizza_deadletters_total and
 * pizza_events_redelivered_total (CONSUME_RETRY), registered once by
 * consume_new() and counted without locks.
 *
 * Threads: consume_message() runs on paho's receive thread, as every
 * handler does: handlers are short, never sleep, and do slow work elsewhere.
 */
#ifndef PIZZA_CONSUME_H
#define PIZZA_CONSUME_H

#include <stddef.h>

#include "event.h"
#include "mq.h"
#include "util.h"

enum consume_result {
	CONSUME_DONE = 0,
	CONSUME_DUPLICATE,
	CONSUME_INVALID,
	CONSUME_RETRY,
};

/* The event type of a row whose messages are not events (order requests): no decoding, no checks. */
#define CONSUME_RAW 0

/* One message as a handler sees it. */
struct consume_msg {
	const struct mq_message *m;
	const struct event *ev;      /* decoded and checked; NULL on a CONSUME_RAW row */
	char user[NAME_MAX_LEN + 1]; /* from the topic, "" when it names none */
	char order[NAME_MAX_LEN + 1];
	char reason[256];            /* the handler's reason for CONSUME_INVALID */
};

typedef enum consume_result (*consume_fn)(void *arg, struct consume_msg *c);

struct consume_row {
	const char *filter; /* subscription filter, "$share/<group>/..." for competing consumers */
	int qos;
	int flags;          /* MQ_NO_LOCAL, MQ_RETAIN_NEW_ONLY, MQ_NO_RETAINED */
	int type;           /* the enum event_type expected here, or CONSUME_RAW */
	consume_fn handler;
};

struct consumer;

/*
 * Creates the consumer of service svc (a name for dead letters) over rows
 * (n of them, borrowed: keep the table static), whose handlers get arg.
 * Registers the rows' metrics.  NULL out of memory.
 */
struct consumer *consume_new(const char *svc, const struct consume_row *rows, size_t n, void *arg);
void consume_free(struct consumer *c);

/* The mq_handler to create the service's connection with: mq_new(..., consume_message, consumer). */
void consume_message(void *consumer, const struct mq_message *m);

/*
 * Declares every row's subscription on mq (before mq_connect()) and
 * remembers mq for dead letters and redeliveries.  Returns 0, or -1 (logged)
 * if one could not be declared.
 */
int consume_attach(struct consumer *c, struct mq *mq);

/* Stops taking messages of the row with this filter (graceful shutdown).  Returns 0 or -1. */
int consume_stop(struct consumer *c, const char *filter);

#endif

/*
 * stages.h - the executor's stage machine and timer queue.
 *
 * An order taken by an executor walks accepted -> prep -> bake -> oven ->
 * ready.  Each status is published when the order enters it; the order
 * stays in accepted, prep, bake and oven for that stage's duration (0 is
 * allowed), and is done once ready is published.  The queue hands out the
 * next status that is due; nothing here sleeps or publishes, so the main
 * loop owns all timing.  Not thread-safe: the executor locks around it.
 */
#ifndef PIZZA_STAGES_H
#define PIZZA_STAGES_H

#include <stddef.h>
#include <stdint.h>

#include "event.h"

struct stage_plan {
	int64_t ms[STATUS_COUNT + 1]; /* ms[s]: how long an order stays at status s (ready unused) */
};

struct job {
	char order_id[NAME_MAX_LEN + 1];
	char user_id[NAME_MAX_LEN + 1];
	enum order_status next; /* the status to publish when due */
	int64_t due_ms;         /* monotonic */
	int64_t entered_ms;     /* when the previous status was published (for stage durations) */
	int ready_status_sent;  /* ready: the broker acknowledged the phone's status; OrderReady is next */
	int ready_refusals;     /* ready: times the broker refused the phone's status (or said nothing in time) */
	int ready_attempt;      /* ready: the phone's status was handed to paho this many times */
	int parked;             /* waiting for stages_wake(); popped with it set: its wait ran out */
	void *order;            /* the caller's copy of the order (for OrderReady); freed with free() when done */
};

struct stages;

/* A queue for at most max_active orders in progress, remembering the event ids of the last remember taken. */
struct stages *stages_new(const struct stage_plan *plan, size_t max_active, size_t remember);
void stages_free(struct stages *st);

enum stages_take { STAGES_TAKEN = 0, STAGES_DUPLICATE = 1, STAGES_FULL = -1 };

/*
 * Takes the order of the OrderPlaced event_id: its first status (accepted)
 * is due at now_ms.  An event taken before (the broker delivering the same
 * message again) or an order in progress here is a DUPLICATE and changes
 * nothing.  An order finished here earlier is taken again when it comes in
 * a new event: order-service's supervision publishes a stalled order again
 * with a fresh event id, and it must complete even if every executor has
 * already walked it once (its statuses may have been lost).  order, the
 * caller's copy of what the order's ready needs (the executor always has
 * one; the queue only carries it), becomes the job's when TAKEN and is
 * freed with free() once the order is done or with the queue; otherwise it
 * stays the caller's.
 */
enum stages_take stages_take(struct stages *st, const char *order_id, const char *user_id, const char *event_id,
    void *order, int64_t now_ms);

/*
 * If a job is due at now_ms, copies it to *out and returns 1; the caller
 * publishes out->next and then calls stages_done() (published) or
 * stages_retry() (not published, try again later).  A parked job whose
 * wait ran out comes with out->parked set.  Returns 0 if nothing is due.
 */
int stages_pop_due(struct stages *st, int64_t now_ms, struct job *out);
/* Records that job->next was published at now_ms: schedules the following status, or finishes (freeing job->order). */
void stages_done(struct stages *st, const struct job *job, int64_t now_ms);
/* Puts job back, due again at due_ms. */
void stages_retry(struct stages *st, const struct job *job, int64_t due_ms);
/*
 * Puts job (popped, about to be published) back to wait for stages_wake()
 * until due_ms at most: it stays in progress (a duplicate take, the
 * capacity, the drain).  For a publish whose broker acknowledgement decides
 * what comes next; due_ms bounds the wait for a verdict that never comes
 * (paho 1.3.12 can lose a completion over a reconnect): the job is then
 * popped as it was parked, for the caller to try again.
 */
void stages_park(struct stages *st, const struct job *job, int64_t due_ms);
/*
 * Makes the job of order_id parked for its attempt ready_attempt due at
 * due_ms, with ready_status_sent and ready_refusals set as given.  Returns
 * 0, or -1 if no job of order_id is parked for that attempt (a verdict that
 * came after its wait ran out).
 */
int stages_wake(struct stages *st, const char *order_id, int ready_attempt, int64_t due_ms, int ready_status_sent,
    int ready_refusals);

/* Monotonic ms of the earliest due job, or INT64_MAX when idle. */
int64_t stages_next_due(const struct stages *st);
/* Orders in progress. */
size_t stages_active(const struct stages *st);

#endif

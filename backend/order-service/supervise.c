#include "supervise.h"

#include <pthread.h>
#include <stdlib.h>

#include "log.h"
#include "metrics.h"
#include "outbox.h"
#include "util.h"

struct supervisor {
	struct order_store *store;
	struct outbox *outbox;
	int64_t accept_ms, ready_ms;
	int64_t last_run; /* mono_ms() of the last pass, for supervise_tick() */
	/*
	 * Whether the executors are taking orders: written on paho's thread by
	 * supervise_progress(), read by the pass.  Wall-clock ms, 0 for never.
	 */
	pthread_mutex_t lock;
	int64_t last_taken_ms;   /* when an order was last accepted (or the outbox last held orders back) */
	int64_t newest_taken_ms; /* the latest placement among the orders accepted */
	struct ostore_stalled stalled[SUPERVISE_BATCH];
};

static struct metric *m_completed, *m_ready_seconds, *m_republished;

static void
register_metrics(void)
{
	m_completed = metric_counter("pizza_orders_completed_total", "Orders that reached ready", NULL);
	m_ready_seconds = metric_histogram("pizza_order_ready_seconds", "Time from an order's acceptance to ready", NULL,
	    metric_seconds_buckets, metric_seconds_nbuckets);
	m_republished = metric_counter("pizza_orders_republished_total",
	    "OrderPlaced events published again by supervision because an order stalled", NULL);
}

struct supervisor *
supervise_new(struct order_store *store, struct outbox *outbox, int64_t accept_ms, int64_t ready_ms)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	struct supervisor *sv = calloc(1, sizeof(*sv));

	if (sv == NULL)
		return NULL;
	pthread_once(&once, register_metrics);
	pthread_mutex_init(&sv->lock, NULL);
	sv->store = store;
	sv->outbox = outbox;
	sv->accept_ms = accept_ms;
	sv->ready_ms = ready_ms;
	return sv;
}

void
supervise_free(struct supervisor *sv)
{
	if (sv == NULL)
		return;
	pthread_mutex_destroy(&sv->lock);
	free(sv);
}

enum ostore_result
supervise_progress(struct supervisor *sv, const struct event *status)
{
	int64_t now = now_ms(), created_ms = 0;
	enum ostore_result rc = ostore_progress(sv->store, status->order_id, status->seq, now, &created_ms);

	if (rc == OSTORE_OK && status->seq == STATUS_ACCEPTED) {
		pthread_mutex_lock(&sv->lock);
		sv->last_taken_ms = now;
		if (created_ms > sv->newest_taken_ms)
			sv->newest_taken_ms = created_ms;
		pthread_mutex_unlock(&sv->lock);
	}
	if (rc == OSTORE_OK && status->seq == STATUS_READY) {
		metric_inc(m_completed);
		metric_observe(m_ready_seconds, (double)(now - created_ms) / 1000.0);
	}
	return rc;
}

int
supervise_run(struct supervisor *sv, int64_t now)
{
	int64_t placed_before = now - sv->accept_ms;
	size_t n;

	/*
	 * While the executors are taking orders, one not accepted yet is waiting
	 * its turn behind a backlog (a flash sale) until orders placed an accept
	 * deadline after it have been taken: only then was it lost.  Publishing
	 * every order of a backlog again would double the kitchen's work.
	 */
	pthread_mutex_lock(&sv->lock);
	if (sv->last_taken_ms > now - sv->accept_ms && sv->newest_taken_ms - sv->accept_ms < placed_before)
		placed_before = sv->newest_taken_ms - sv->accept_ms;
	pthread_mutex_unlock(&sv->lock);
	if (ostore_republish_stalled(sv->store, placed_before, now - sv->ready_ms, now, sv->stalled,
		SUPERVISE_BATCH, &n) != OSTORE_OK)
		return -1;
	for (size_t i = 0; i < n; i++) {
		const struct ostore_stalled *o = &sv->stalled[i];

		metric_inc(m_republished);
		log_warn("order stalled; publishing it again", "order_id=%s stage=%s republished=%d", o->order_id,
		    o->stage > 0 ? event_status_name((enum order_status)o->stage) : "placed", o->republished);
	}
	if (n > 0)
		/* the main loop publishes them at once */
		outbox_kick(sv->outbox);
	return (int)n;
}

void
supervise_tick(struct supervisor *sv, int64_t connected_for_ms)
{
	if (outbox_held(sv->outbox)) {
		/* the intake holds OrderPlaced back (intake_first()): nobody can take those orders yet */
		pthread_mutex_lock(&sv->lock);
		sv->last_taken_ms = now_ms();
		pthread_mutex_unlock(&sv->lock);
		return;
	}
	if (mono_ms() - sv->last_run < SUPERVISE_EVERY_MS || connected_for_ms < SUPERVISE_SETTLE_MS)
		return;
	supervise_run(sv, now_ms());
	sv->last_run = mono_ms();
}

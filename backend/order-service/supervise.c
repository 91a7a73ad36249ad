#include "supervise.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

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
	 * Which executors are taking orders, and how far each has come: written
	 * on paho's thread by supervise_progress(), read by the pass.  Wall-clock
	 * ms, 0 for never.
	 */
	pthread_mutex_t lock;
	struct taker {
		char worker[NAME_MAX_LEN + 1];
		int64_t last_ms;   /* when it last accepted an order */
		int64_t newest_ms; /* the latest placement among the orders it accepted */
	} takers[SUPERVISE_TAKERS];
	int ntakers;
	int64_t held_ms; /* when the outbox last held OrderPlaced back (intake first) */
	struct ostore_stalled stalled[SUPERVISE_BATCH];
};

/* Records that worker accepted an order placed at placed_ms.  sv->lock held. */
static void
taken(struct supervisor *sv, const char *worker, int64_t placed_ms, int64_t now)
{
	struct taker *t = NULL;

	for (int i = 0; i < sv->ntakers && t == NULL; i++)
		if (strcmp(sv->takers[i].worker, worker) == 0)
			t = &sv->takers[i];
	if (t == NULL) {
		if (sv->ntakers < SUPERVISE_TAKERS)
			t = &sv->takers[sv->ntakers++];
		else /* the one silent longest makes room */
			for (int i = 0; i < sv->ntakers; i++)
				if (t == NULL || sv->takers[i].last_ms < t->last_ms)
					t = &sv->takers[i];
		str_copy(t->worker, sizeof(t->worker), worker);
		t->newest_ms = 0;
	}
	t->last_ms = now;
	if (placed_ms > t->newest_ms)
		t->newest_ms = placed_ms;
}

/*
 * The placement time before which an order not accepted yet is stalled, at
 * now.  While executors are taking orders (one accepted within the accept
 * deadline), an order not accepted yet is waiting its turn behind a backlog
 * (a flash sale) until every such executor has taken orders placed an accept
 * deadline after it: only then was it lost (or its executor died).  With
 * none taking orders, the deadline alone counts, but not until a deadline
 * after the outbox last held orders back: those went out only then.
 * Publishing every order of a backlog again would double the kitchen's work.
 * sv->lock held.
 */
static int64_t
stalled_before(const struct supervisor *sv, int64_t now)
{
	int64_t before = now - sv->accept_ms, slowest = INT64_MAX;

	for (int i = 0; i < sv->ntakers; i++)
		if (sv->takers[i].last_ms > now - sv->accept_ms && sv->takers[i].newest_ms < slowest)
			slowest = sv->takers[i].newest_ms;
	if (slowest != INT64_MAX)
		return slowest - sv->accept_ms < before ? slowest - sv->accept_ms : before;
	return sv->held_ms > now - sv->accept_ms ? 0 : before;
}

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
		taken(sv, status->worker, created_ms, now);
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
	int64_t placed_before;
	size_t n;

	pthread_mutex_lock(&sv->lock);
	placed_before = stalled_before(sv, now);
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
		/*
		 * The intake holds OrderPlaced back (intake_first()): nobody can take those orders
		 * yet, so the accept deadline waits (stalled_before()); the ready deadline does not.
		 */
		pthread_mutex_lock(&sv->lock);
		sv->held_ms = now_ms();
		pthread_mutex_unlock(&sv->lock);
	}
	if (mono_ms() - sv->last_run < SUPERVISE_EVERY_MS || connected_for_ms < SUPERVISE_SETTLE_MS)
		return;
	supervise_run(sv, now_ms());
	sv->last_run = mono_ms();
}

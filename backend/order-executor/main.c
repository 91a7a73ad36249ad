/*
 * order-executor - a competing worker.  Takes OrderPlaced events from the
 * shared subscription $share/executors/pizza/orders/placed (each order goes
 * to one executor) and walks each through accepted, prep, bake, oven and
 * ready.  Each stage goes only to who acts on it (docs/events.md): accepted
 * to order-service's supervision (pizza/orders/accepted); prep, bake, oven
 * and ready to the phone and the history as the order's retained status;
 * ready also, with the order's items and callback, to order-service and the
 * notifier as OrderReady (pizza/orders/ready).
 *
 * Threads: the MQTT handler (rows[] below) only queues (stages_take); the
 * main loop owns every timer and publishes.  Nothing sleeps in a callback.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "consume.h"
#include "event.h"
#include "httpd.h"
#include "log.h"
#include "metrics.h"
#include "mq.h"
#include "stages.h"
#include "svc.h"
#include "topic.h"
#include "util.h"

#define SVC "order-executor"

/*
 * A ready status the broker refuses this often (over 15 s: it is tried again
 * after 1, 2, 4 and 8 s) is given up, so that OrderReady and the alert still go.
 */
#define READY_REFUSALS_MAX 5
/* How long a ready status waits for the broker's verdict before it is published again (counted as a refusal). */
#define READY_VERDICT_MS 15000

static struct {
	struct svc_opts so;
	const char *id;
	long stage_ms, ms[STATUS_COUNT + 1];
	long status_expiry_s;
	long ready_status_expiry_s;
	long retained_walk_s;
	long max_active;
	long drain_ms;
	long metrics_port;
	const char *metrics_bind;
} cfg;

static struct metric *m_taken, *m_walks, *m_stage_seconds[STATUS_COUNT + 1];

static struct mq *mq;
static struct consumer *consumer;
static struct stages *stages;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake;

/* What an executor keeps of an order until it is ready: what OrderReady carries. */
struct kitchen_order {
	size_t n_items;
	char *callback_url; /* into the same allocation; "" when none */
	struct item items[];
};

/* A new copy of placed's items and callback URL (one allocation, for free()), or NULL. */
static struct kitchen_order *
kitchen_order_new(const struct event *placed)
{
	size_t items = placed->n_items * sizeof(struct item), url = strlen(placed->callback_url) + 1;
	struct kitchen_order *o = malloc(sizeof(*o) + items + url);

	if (o == NULL)
		return NULL;
	o->n_items = placed->n_items;
	memcpy(o->items, placed->items, items);
	o->callback_url = (char *)o->items + items;
	memcpy(o->callback_url, placed->callback_url, url);
	return o;
}

/* An OrderPlaced: queue it for the main loop, which owns the timers. */
static enum consume_result
on_placed(void *arg, struct consume_msg *c)
{
	const struct event *ev = c->ev;
	struct kitchen_order *order;
	enum stages_take r;

	(void)arg;
	if ((order = kitchen_order_new(ev)) == NULL)
		return CONSUME_RETRY;
	pthread_mutex_lock(&lock);
	r = stages_take(stages, ev->order_id, ev->user_id, ev->event_id, order, mono_ms());
	pthread_cond_signal(&wake);
	pthread_mutex_unlock(&lock);
	if (r != STAGES_TAKEN)
		free(order);
	switch (r) {
	case STAGES_TAKEN:
		metric_inc(m_taken);
		log_info("order taken", "order_id=%s user_id=%s", ev->order_id, ev->user_id);
		return CONSUME_DONE;
	case STAGES_DUPLICATE:
		log_info("duplicate OrderPlaced dropped", "order_id=%s event_id=%s", ev->order_id, ev->event_id);
		return CONSUME_DUPLICATE;
	default:
		/* an executor keeps orders in memory only: order-service's supervision publishes it again */
		log_error("too many orders in progress; order not taken", "order_id=%s max=%ld", ev->order_id,
		    cfg.max_active);
		return CONSUME_DONE;
	}
}

/* What an executor consumes: its share of every order. */
static const struct consume_row rows[] = {
	{ TOPIC_EXECUTORS, 1, 0, EVENT_ORDER_PLACED, on_placed },
};

/*
 * Publishes job->next as an event of type (OrderStatus or OrderReady) to
 * topic; done, if set, hears the broker's verdict.  Returns 0 if paho took
 * it (or mq queued it), -1 if not (done is then not called).
 */
static int
publish_event(const struct job *job, enum event_type type, const char *topic, int retained, long expiry,
    mq_done done, void *done_arg)
{
	const struct kitchen_order *order = job->order;
	struct mq_publish p;
	struct event ev;
	char *json;
	int rc;

	if (event_init(&ev, type, job->order_id, job->user_id) != 0)
		return -1;
	ev.status = job->next;
	ev.seq = (int)job->next;
	str_copy(ev.worker, sizeof(ev.worker), cfg.id);
	if (type == EVENT_ORDER_READY) {
		ev.n_items = order->n_items;
		memcpy(ev.items, order->items, order->n_items * sizeof(struct item));
		str_copy(ev.callback_url, sizeof(ev.callback_url), order->callback_url);
	}
	if ((json = event_encode(&ev)) == NULL) {
		log_error("cannot encode a status", "order_id=%s type=%s", job->order_id, event_type_name(type));
		return -1;
	}
	memset(&p, 0, sizeof(p));
	p.topic = topic;
	p.payload = json;
	p.len = strlen(json);
	p.qos = 1;
	p.retained = retained;
	p.expiry_s = (unsigned)expiry;
	p.done = done;
	p.done_arg = done_arg;
	rc = mq_publish(mq, &p);
	free(json);
	return rc;
}

/* A ready status handed to paho, waiting for the broker's verdict (the job is parked meanwhile). */
struct ready_wait {
	int refusals; /* the job's ready_refusals when this status went out */
	int attempt;  /* the job's ready_attempt for this status: a late verdict on an earlier one wakes nothing */
	char order_id[NAME_MAX_LEN + 1];
};

/*
 * The broker's verdict on a phone's ready status, on paho's thread: once it
 * is acknowledged OrderReady may go; refused (or given up by paho), the
 * status is published again 1, 2, 4 and 8 s later, then given up.
 */
static void
on_ready_status_done(void *arg, int ok)
{
	struct ready_wait *w = arg;
	int64_t due = mono_ms();

	if (!ok && w->refusals + 1 < READY_REFUSALS_MAX)
		due += (int64_t)1000 << w->refusals;

	pthread_mutex_lock(&lock);
	if (stages_wake(stages, w->order_id, w->attempt, due, ok, ok ? w->refusals : w->refusals + 1) == 0)
		pthread_cond_signal(&wake);
	pthread_mutex_unlock(&lock);
	if (!ok)
		log_warn("ready status not acknowledged; publishing it again", "order_id=%s attempt=%d", w->order_id,
		    w->refusals + 1);
	free(w);
}

/* The phone's retained status for job->next; ready's with done to hear the broker's verdict. */
static int
publish_phone_status(const struct job *job, mq_done done, void *done_arg)
{
	char topic[TOPIC_MAX];
	long expiry;

	if (topic_status(topic, sizeof(topic), job->user_id, job->order_id) != 0)
		return -1;
	/*
	 * retained: a phone that subscribes late sees the current stage.  Once ready, the pickup
	 * alert and the order history carry the order: its last status stays a short while only
	 * (never longer than the others), so the broker does not hold every order of the last hour.
	 */
	expiry = job->next == STATUS_READY && cfg.ready_status_expiry_s < cfg.status_expiry_s ?
	    cfg.ready_status_expiry_s : cfg.status_expiry_s;
	return publish_event(job, EVENT_ORDER_STATUS, topic, 1, expiry, done, done_arg);
}

/*
 * Publishes job->next to who acts on it, except a ready status still to be
 * acknowledged (publish_ready_status()).  Returns 0 if paho took all of it.
 */
static int
publish_status(const struct job *job)
{
	int rc;

	if (job->next == STATUS_ACCEPTED)
		/* for order-service's supervision only: the phone already has "accepted" in its reply */
		rc = publish_event(job, EVENT_ORDER_STATUS, TOPIC_ACCEPTED, 0, 0, NULL, NULL);
	else if (job->next < STATUS_READY)
		rc = publish_phone_status(job, NULL, NULL);
	else
		/*
		 * Only once the broker has acknowledged the phone's ready (or refused it
		 * READY_REFUSALS_MAX times): the phone's retained status and the history are at
		 * ready before order-service finishes the order and the notifier alerts.  If this
		 * executor dies before, nobody hears ready and supervision has the order walked again.
		 */
		rc = publish_event(job, EVENT_ORDER_READY, TOPIC_READY, 0, 0, NULL, NULL);
	if (rc == 0 && job->next < STATUS_READY)
		log_info("status", "order_id=%s status=%s seq=%d", job->order_id, event_status_name(job->next),
		    (int)job->next);
	return rc;
}

/*
 * Hands the phone's ready status to paho for the parked job; its verdict
 * wakes the job (on_ready_status_done).  Returns 0, or -1 if paho did not
 * take it (the job stays parked: the caller wakes it).
 */
static int
publish_ready_status(const struct job *job)
{
	struct ready_wait *w = malloc(sizeof(*w));

	if (w == NULL)
		return -1;
	w->refusals = job->ready_refusals;
	w->attempt = job->ready_attempt;
	str_copy(w->order_id, sizeof(w->order_id), job->order_id);
	if (publish_phone_status(job, on_ready_status_done, w) != 0) {
		free(w);
		return -1;
	}
	log_info("status", "order_id=%s status=%s seq=%d", job->order_id, event_status_name(job->next), (int)job->next);
	return 0;
}

/* mq_walk()'s verdict, on paho's thread: counts the walks the broker made, and logs the first. */
static void
walked(void *arg, int ok)
{
	static int logged;

	(void)arg;
	if (!ok)
		return;
	metric_inc(m_walks);
	if (!logged) {
		logged = 1;
		log_info("walked the retained statuses; expired ones are freed", "every_s=%ld", cfg.retained_walk_s);
	}
}

/*
 * Every --retained-walk, the broker walks the retained statuses (mq_walk()):
 * mosquitto 2.0 frees an expired one only when a subscription walks over it,
 * so the ready statuses of phones that never come back would stay in its
 * memory for good (docs/performance.md, "Retained statuses").  The role may
 * subscribe there and receives nothing (broker-config/acl).
 */
static void
walk_retained(int64_t now, int64_t *next)
{
	if (cfg.retained_walk_s == 0 || now < *next)
		return;
	*next = now + cfg.retained_walk_s * 1000;
	mq_walk(mq, TOPIC_ALL_STATUS, walked, NULL); /* not connected: the next one */
}

/*
 * The main loop: publishes each due status.  On SIGTERM/SIGINT it stops
 * taking orders (unsubscribes) and keeps going until the orders in progress
 * are ready or drain_ms has passed; what is left then is published again by
 * the order-service's supervision.
 */
static void
run(void)
{
	struct timespec ts;
	struct job job;
	int64_t drain_until = 0, next_walk = mono_ms() + cfg.retained_walk_s * 1000;

	pthread_mutex_lock(&lock);
	for (;;) {
		int64_t now = mono_ms(), until;

		if (svc_quit && drain_until == 0) {
			drain_until = now + cfg.drain_ms;
			pthread_mutex_unlock(&lock);
			consume_stop(consumer, TOPIC_EXECUTORS);
			pthread_mutex_lock(&lock);
			log_info("draining: taking no new orders", "in_progress=%zu drain_ms=%ld", stages_active(stages),
			    cfg.drain_ms);
		}
		if (drain_until != 0 && (stages_active(stages) == 0 || now >= drain_until))
			break;

		/*
		 * mq bounds what paho holds (its publish window) and queues the rest,
		 * also while the broker is away; past its queue's limit a status
		 * waits here, in the timer heap, and is tried again a second later.
		 */
		while (stages_pop_due(stages, now, &job)) {
			int rc;

			if (job.parked) {
				/* no verdict on the ready status in time (paho can lose one over a reconnect) */
				job.parked = 0;
				job.ready_refusals++;
				log_warn("no verdict on the ready status; publishing it again", "order_id=%s attempt=%d",
				    job.order_id, job.ready_refusals);
			}
			if (job.next == STATUS_READY && !job.ready_status_sent &&
			    job.ready_refusals < READY_REFUSALS_MAX) {
				/* parked before it is handed over: the verdict may come before publish returns */
				if (job.ready_attempt++ == 0)
					metric_observe(m_stage_seconds[STATUS_OVEN],
					    (double)(mono_ms() - job.entered_ms) / 1000.0);
				stages_park(stages, &job, now + READY_VERDICT_MS);
				pthread_mutex_unlock(&lock);
				rc = publish_ready_status(&job);
				pthread_mutex_lock(&lock);
				if (rc != 0) {
					/* mq's queue is full: try again */
					stages_wake(stages, job.order_id, job.ready_attempt, now + 1000, 0,
					    job.ready_refusals);
					break;
				}
				continue;
			}
			if (job.next == STATUS_READY && !job.ready_status_sent)
				log_error("the broker refused the ready status every time; sending OrderReady so the "
					  "alert goes",
				    "order_id=%s attempts=%d", job.order_id, job.ready_refusals);
			pthread_mutex_unlock(&lock);
			rc = publish_status(&job);
			pthread_mutex_lock(&lock);
			if (rc == 0) {
				/* the stage that just ended lasted from its due time until now (ready's: when parked) */
				if (job.next > STATUS_ACCEPTED && job.next < STATUS_READY)
					metric_observe(m_stage_seconds[job.next - 1],
					    (double)(mono_ms() - job.entered_ms) / 1000.0);
				stages_done(stages, &job, mono_ms());
			} else {
				stages_retry(stages, &job, now + 1000); /* mq's queue is full: try again */
				break;
			}
		}
		pthread_mutex_unlock(&lock);
		svc_tick(mq); /* the watchdog; STOPPING=1 when the drain begins */
		walk_retained(now, &next_walk);
		pthread_mutex_lock(&lock);
		until = stages_next_due(stages);
		if (until > now + 200)
			until = now + 200; /* notice signals promptly */
		clock_after_ms(CLOCK_MONOTONIC, until - now, &ts);
		pthread_cond_timedwait(&wake, &lock, &ts);
	}
	pthread_mutex_unlock(&lock);
}

int
main(int argc, char **argv)
{
	static char default_id[NAME_MAX_LEN + 1], client_id[NAME_MAX_LEN + 32];
	const struct opt opts[] = {
		SVC_OPTS(&cfg.so, "order-executor", NULL),
		{ "id", 0, OPT_STR, "PIZZA_EXECUTOR_ID", NULL,
		    "this worker's id, shown in statuses; keep it stable: the MQTT client id (order-executor-<id>) "
		    "and so the broker session follow it (default exec-<pid>)",
		    &cfg.id, 0, 0 },
		{ "stage", 0, OPT_DURATION_MS, "PIZZA_STAGE_MS", "400ms", "how long every stage takes", &cfg.stage_ms, 0,
		    3600000 },
		{ "accepted", 0, OPT_DURATION_MS, "PIZZA_ACCEPTED_MS", "-1", "time from accepted to prep (-1: --stage)",
		    &cfg.ms[STATUS_ACCEPTED], -1, 3600000 },
		{ "prep", 0, OPT_DURATION_MS, "PIZZA_PREP_MS", "-1", "how long prep takes (-1: --stage)", &cfg.ms[STATUS_PREP],
		    -1, 3600000 },
		{ "bake", 0, OPT_DURATION_MS, "PIZZA_BAKE_MS", "-1", "how long baking takes (-1: --stage)",
		    &cfg.ms[STATUS_BAKE], -1, 3600000 },
		{ "oven", 0, OPT_DURATION_MS, "PIZZA_OVEN_MS", "-1", "how long the oven takes (-1: --stage)",
		    &cfg.ms[STATUS_OVEN], -1, 3600000 },
		{ "status-expiry", 0, OPT_DURATION_S, "PIZZA_STATUS_EXPIRY_S", "1h",
		    "how long a retained status stays on the broker", &cfg.status_expiry_s, 1, 604800 },
		{ "ready-status-expiry", 0, OPT_DURATION_S, "PIZZA_READY_STATUS_EXPIRY_S", "1m",
		    "how long the retained ready status stays on the broker (at most --status-expiry)",
		    &cfg.ready_status_expiry_s, 1, 604800 },
		{ "retained-walk", 0, OPT_DURATION_S, "PIZZA_RETAINED_WALK_S", "1m",
		    "how often the broker is asked to walk the retained statuses, which frees the expired ones (0: never)",
		    &cfg.retained_walk_s, 0, 86400 },
		{ "max-active", 0, OPT_INT, "PIZZA_EXECUTOR_MAX_ACTIVE", "100000",
		    "orders in progress at once", &cfg.max_active, 1, 10000000 },
		SVC_METRICS_OPTS(&cfg.metrics_port, &cfg.metrics_bind),
		{ "drain", 0, OPT_DURATION_MS, "PIZZA_EXECUTOR_DRAIN_MS", "30s",
		    "on SIGTERM, finish orders in progress for at most this long", &cfg.drain_ms, 0, 3600000 },
		OPT_ALIAS_OF("stage-ms", "stage"),
		OPT_ALIAS_OF("accepted-ms", "accepted"),
		OPT_ALIAS_OF("prep-ms", "prep"),
		OPT_ALIAS_OF("bake-ms", "bake"),
		OPT_ALIAS_OF("oven-ms", "oven"),
		OPT_ALIAS_OF("drain-ms", "drain"),
		{ NULL, 0, 0, NULL, NULL, NULL, NULL, 0, 0 },
	};
	struct stage_plan plan;
	pthread_condattr_t ca;
	struct httpd *ops;

	svc_parse(SVC, "Competing worker: walks each order it takes through the kitchen stages.", opts,
	    &cfg.so, argc, argv);
	if (cfg.id == NULL) {
		snprintf(default_id, sizeof(default_id), "exec-%ld", (long)getpid());
		cfg.id = default_id;
	}
	if (!name_valid(cfg.id)) {
		fprintf(stderr, "%s: --id must be 1-%d characters of A-Z a-z 0-9 _ -\n", SVC, NAME_MAX_LEN);
		return 2;
	}
	if (cfg.so.client_id == NULL) {
		snprintf(client_id, sizeof(client_id), "order-executor-%s", cfg.id);
		cfg.so.client_id = client_id;
	}
	memset(&plan, 0, sizeof(plan));
	for (int s = STATUS_ACCEPTED; s < STATUS_READY; s++)
		plan.ms[s] = cfg.ms[s] >= 0 ? cfg.ms[s] : cfg.stage_ms;

	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&wake, &ca);
	svc_signals();
	if ((stages = stages_new(&plan, (size_t)cfg.max_active, 65536)) == NULL)
		fatal("out of memory", NULL);
	if ((consumer = consume_new(SVC, rows, sizeof(rows) / sizeof(rows[0]), NULL)) == NULL)
		fatal("out of memory", NULL);
	mq = svc_mq_new(&cfg.so, consume_message, consumer);
	svc_metrics(mq);
	m_taken = metric_counter("pizza_orders_taken_total", "Orders this executor took", NULL);
	m_walks = metric_counter("pizza_retained_walks_total",
	    "Walks over the retained statuses the broker made for this executor (--retained-walk)", NULL);
	for (int s = STATUS_ACCEPTED; s < STATUS_READY; s++) {
		char labels[32];
		snprintf(labels, sizeof(labels), "stage=\"%s\"", event_status_name((enum order_status)s));
		m_stage_seconds[s] = metric_histogram("pizza_stage_duration_seconds", "Time an order spent in each stage",
		    labels, metric_seconds_buckets, metric_seconds_nbuckets);
	}
	if (consume_attach(consumer, mq) != 0)
		fatal("cannot declare the subscriptions", NULL);
	svc_mq_connect(mq, &cfg.so);
	ops = svc_ops_start(cfg.metrics_bind, cfg.metrics_port, mq, NULL, NULL);
	svc_ready("id=%s stage_ms=%ld,%ld,%ld,%ld", cfg.id, (long)plan.ms[STATUS_ACCEPTED],
	    (long)plan.ms[STATUS_PREP], (long)plan.ms[STATUS_BAKE], (long)plan.ms[STATUS_OVEN]);

	run();
	svc_stopping();

	log_info("shutting down", "in_progress=%zu", stages_active(stages));
	httpd_stop(ops);
	mq_disconnect(mq, 2000);
	mq_free(mq);
	consume_free(consumer);
	stages_free(stages);
	return 0;
}

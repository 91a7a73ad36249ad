/*
 * order-history - a fanout consumer.  Plain subscriptions to
 * pizza/orders/placed and every status topic; keeps each user's orders and
 * every status with its time in SQLite (store.c).  Each event is stored
 * before its message is acknowledged, and stored once.
 */
#include <stdio.h>
#include <string.h>

#include "deadletter.h"
#include "event.h"
#include "log.h"
#include "mq.h"
#include "store.h"
#include "svc.h"
#include "topic.h"
#include "util.h"

#define SVC "order-history"

static struct {
	struct svc_opts so;
	const char *db_path;
} cfg;

static struct mq *mq;
static struct history *history;

static void
on_message(void *arg, const struct mq_message *m)
{
	struct event ev;
	char err[256], user[NAME_MAX_LEN + 1], order[NAME_MAX_LEN + 1];
	enum history_apply r;

	(void)arg;
	if (event_decode(m->payload, m->len, &ev, err, sizeof(err)) != 0) {
		deadletter(mq, SVC, m->topic, m->payload, m->len, err);
		return;
	}
	if (ev.type == EVENT_ORDER_PLACED && strcmp(m->topic, TOPIC_PLACED) != 0) {
		deadletter(mq, SVC, m->topic, m->payload, m->len, "OrderPlaced on a topic other than " TOPIC_PLACED);
		return;
	}
	if (ev.type == EVENT_ORDER_STATUS && (topic_parse(m->topic, user, order) != TOPIC_KIND_STATUS ||
						 strcmp(user, ev.user_id) != 0 || strcmp(order, ev.order_id) != 0)) {
		deadletter(mq, SVC, m->topic, m->payload, m->len, "event ids do not match its topic");
		return;
	}
	if (ev.type != EVENT_ORDER_PLACED && ev.type != EVENT_ORDER_STATUS) {
		snprintf(err, sizeof(err), "unexpected %s on %s", event_type_name(ev.type), m->topic);
		deadletter(mq, SVC, m->topic, m->payload, m->len, err);
		return;
	}
	r = history_apply(history, &ev);
	if (r == HISTORY_ERROR)
		deadletter(mq, SVC, m->topic, m->payload, m->len, "could not be stored (database error)");
	else if (r == HISTORY_DUPLICATE)
		log_debug("duplicate dropped", "order_id=%s event_id=%s", ev.order_id, ev.event_id);
	else
		log_debug("stored", "order_id=%s type=%s", ev.order_id, event_type_name(ev.type));
}

int
main(int argc, char **argv)
{
	const struct opt opts[] = {
		SVC_OPTS(&cfg.so, "order-history", "order-history"),
		{ "db", 0, OPT_STR, "PIZZA_HISTORY_DB", "order-history.db", "SQLite file for the history",
		    &cfg.db_path, 0, 0 },
		{ NULL, 0, 0, NULL, NULL, NULL, NULL, 0, 0 },
	};

	svc_parse(SVC, "Fanout consumer: keeps every user's orders and their timelines.", opts, &cfg.so, argc, argv);
	svc_signals();
	if ((history = history_open(cfg.db_path)) == NULL)
		fatal("cannot open the history database", "path=%s", cfg.db_path);
	mq = svc_mq_new(&cfg.so, on_message, NULL);
	mq_subscribe(mq, TOPIC_PLACED, 1, 0);
	mq_subscribe(mq, TOPIC_ALL_STATUS, 1, MQ_RETAIN_NEW_ONLY);
	svc_mq_connect(mq, &cfg.so);
	log_info("ready", "db=%s", cfg.db_path);

	while (!svc_quit)
		sleep_ms(200);

	log_info("shutting down", "orders=%lld", (long long)history_count_orders(history));
	mq_disconnect(mq, 2000);
	mq_free(mq);
	history_close(history);
	return 0;
}

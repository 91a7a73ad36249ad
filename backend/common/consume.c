#include "consume.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deadletter.h"
#include "log.h"
#include "metrics.h"
#include "topic.h"

/* A row's counters, registered once: the hot path only adds. */
struct consume_stats {
	struct metric *consumed, *duplicates, *deadletters, *redelivered;
};

struct consumer {
	const char *svc;
	const struct consume_row *rows;
	size_t n;
	void *arg;
	struct mq *mq;
	struct consume_stats *stats; /* one per row */
	struct consume_stats other;  /* messages no row matches */
};

/* Registers the four counters of one row labelled with filter (without its $share prefix). */
static void
stats_new(struct consume_stats *s, const char *filter)
{
	char labels[TOPIC_MAX + 16];

	snprintf(labels, sizeof(labels), "topic=\"%s\"", topic_unshared(filter));
	s->consumed = metric_counter("pizza_events_consumed_total", "Messages handed to this service's handlers, by topic",
	    labels);
	s->duplicates = metric_counter("pizza_duplicates_dropped_total", "Redelivered events dropped as already handled",
	    labels);
	s->deadletters = metric_counter("pizza_deadletters_total", "Messages refused and sent to pizza/deadletter, by topic",
	    labels);
	s->redelivered = metric_counter("pizza_events_redelivered_total",
	    "Valid messages left unacknowledged because they could not be stored; the broker delivers them again", labels);
}

struct consumer *
consume_new(const char *svc, const struct consume_row *rows, size_t n, void *arg)
{
	struct consumer *c = calloc(1, sizeof(*c));

	if (c == NULL || (c->stats = calloc(n, sizeof(*c->stats))) == NULL) {
		free(c);
		return NULL;
	}
	c->svc = svc;
	c->rows = rows;
	c->n = n;
	c->arg = arg;
	for (size_t i = 0; i < n; i++)
		stats_new(&c->stats[i], rows[i].filter);
	stats_new(&c->other, "other");
	return c;
}

void
consume_free(struct consumer *c)
{
	if (c == NULL)
		return;
	free(c->stats);
	free(c);
}

int
consume_attach(struct consumer *c, struct mq *mq)
{
	c->mq = mq;
	for (size_t i = 0; i < c->n; i++)
		if (mq_subscribe(mq, c->rows[i].filter, c->rows[i].qos, c->rows[i].flags) != 0)
			return -1;
	return 0;
}

int
consume_stop(struct consumer *c, const char *filter)
{
	return mq_unsubscribe(c->mq, filter);
}

/* Dead-letters the message with reason and counts it. */
static void
refuse(struct consumer *c, const struct consume_stats *s, const struct mq_message *m, const char *reason)
{
	metric_inc(s->deadletters);
	deadletter_send(c->mq, c->svc, m->topic, m->payload, m->len, reason);
}

/*
 * Decodes an event row's message into ev and checks it against the row and
 * the topic.  Returns 0, or -1 with the reason in why.
 */
static int
check_event(const struct consume_row *row, struct consume_msg *cm, struct event *ev, char *why, size_t n)
{
	if (event_decode(cm->m->payload, cm->m->len, ev, why, n) != 0)
		return -1;
	if ((int)ev->type != row->type) {
		snprintf(why, n, "expected %s on %s, got %s", event_type_name((enum event_type)row->type),
		    topic_unshared(row->filter), event_type_name(ev->type));
		return -1;
	}
	if ((cm->user[0] != '\0' && strcmp(cm->user, ev->user_id) != 0) ||
	    (cm->order[0] != '\0' && strcmp(cm->order, ev->order_id) != 0)) {
		snprintf(why, n, "event ids do not match its topic");
		return -1;
	}
	return 0;
}

/* The row whose filter matches topic, or NULL. */
static const struct consume_row *
row_of(const struct consumer *c, const char *topic)
{
	for (size_t i = 0; i < c->n; i++)
		if (topic_matches(c->rows[i].filter, topic))
			return &c->rows[i];
	return NULL;
}

void
consume_message(void *consumer, const struct mq_message *m)
{
	struct consumer *c = consumer;
	const struct consume_row *row = row_of(c, m->topic);
	const struct consume_stats *s = row != NULL ? &c->stats[row - c->rows] : &c->other;
	struct consume_msg cm;
	struct event ev;
	char why[320];

	metric_inc(s->consumed);
	if (mq_dropped(c->mq)) {
		/* read before the connection was dropped: it comes again, so act on it then, not twice */
		metric_inc(s->redelivered);
		return;
	}
	if (row == NULL) {
		refuse(c, s, m, "no handler for this topic");
		return;
	}
	if (row->handler == NULL) {
		log_debug("message of a retired subscription dropped", "topic=%s", LOGQ(m->topic));
		return;
	}
	memset(&cm, 0, sizeof(cm));
	cm.m = m;
	if (topic_parse(m->topic, cm.user, cm.order) == TOPIC_KIND_OTHER) {
		cm.user[0] = cm.order[0] = '\0';
		/* a wildcard matched a level that is no valid id */
		if (strncmp(topic_unshared(row->filter), "pizza/users/", 12) == 0) {
			refuse(c, s, m, "the topic's user or order id is not valid");
			return;
		}
	}
	if (row->type != CONSUME_RAW) {
		if (check_event(row, &cm, &ev, why, sizeof(why)) != 0) {
			refuse(c, s, m, why);
			return;
		}
		cm.ev = &ev;
	}
	switch (row->handler(c->arg, &cm)) {
	case CONSUME_DONE:
		break;
	case CONSUME_DUPLICATE:
		metric_inc(s->duplicates);
		log_debug("duplicate dropped", "topic=%s", LOGQ(m->topic));
		break;
	case CONSUME_INVALID:
		refuse(c, s, m, cm.reason[0] != '\0' ? cm.reason : "refused by the handler");
		break;
	case CONSUME_RETRY:
		metric_inc(s->redelivered);
		log_warn("could not store a message; leaving it unacknowledged", "topic=%s", LOGQ(m->topic));
		mq_redeliver(c->mq);
		break;
	}
}

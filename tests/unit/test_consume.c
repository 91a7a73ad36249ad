/*
 * test_consume.c - the consumer skeleton (consume.h): dispatch by the
 * table, the checks every event passes before a handler sees it, and what
 * each handler result does (acknowledge, count, dead-letter, redeliver).
 *
 * The MQTT side is replaced by the definitions below (the linker takes them
 * before libpizza.a's mq.o and deadletter.o): they record what the
 * skeleton asked for.  A message is acknowledged unless the skeleton asks
 * mq_redeliver() (paho acknowledges when the handler returns).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consume.h"
#include "deadletter.h"
#include "metrics.h"
#include "topic.h"

/* ---- the MQTT side, recorded ---------------------------------------------- */

static struct {
	char filters[8][TOPIC_MAX];
	int qos[8], flags[8], nsubs;
	int deadletters, redelivers, dropped;
	char last_reason[320], last_dl_topic[TOPIC_MAX];
} rec;

int
mq_subscribe(struct mq *mq, const char *filter, int qos, int flags)
{
	(void)mq;
	if (rec.nsubs >= 8)
		return -1;
	snprintf(rec.filters[rec.nsubs], TOPIC_MAX, "%s", filter);
	rec.qos[rec.nsubs] = qos;
	rec.flags[rec.nsubs++] = flags;
	return 0;
}

int
mq_unsubscribe(struct mq *mq, const char *filter)
{
	(void)mq;
	(void)filter;
	return 0;
}

void
mq_redeliver(struct mq *mq)
{
	(void)mq;
	rec.redelivers++;
	rec.dropped = 1;
}

int
mq_dropped(struct mq *mq)
{
	(void)mq;
	return rec.dropped;
}

int
deadletter_send(struct mq *mq, const char *svc, const char *topic, const void *payload, size_t len, const char *reason)
{
	(void)mq;
	(void)payload;
	(void)len;
	assert_string_equal(svc, "test-svc");
	rec.deadletters++;
	snprintf(rec.last_reason, sizeof(rec.last_reason), "%s", reason);
	snprintf(rec.last_dl_topic, sizeof(rec.last_dl_topic), "%s", topic);
	return 0;
}

/* ---- handlers that record what they saw ------------------------------------ */

static struct {
	int calls;
	enum consume_result answer;
	char user[NAME_MAX_LEN + 1], order[NAME_MAX_LEN + 1];
	int had_event;
	enum event_type type;
} seen;

static enum consume_result
handler(void *arg, struct consume_msg *c)
{
	assert_ptr_equal(arg, &seen);
	seen.calls++;
	snprintf(seen.user, sizeof(seen.user), "%s", c->user);
	snprintf(seen.order, sizeof(seen.order), "%s", c->order);
	seen.had_event = c->ev != NULL;
	seen.type = c->ev != NULL ? c->ev->type : 0;
	if (seen.answer == CONSUME_INVALID)
		snprintf(c->reason, sizeof(c->reason), "the handler says no");
	return seen.answer;
}

static const struct consume_row rows[] = {
	{ TOPIC_EXECUTORS, 1, 0, EVENT_ORDER_PLACED, handler },
	{ TOPIC_ALL_STATUS, 1, MQ_RETAIN_NEW_ONLY, EVENT_ORDER_STATUS, handler },
	{ TOPIC_ALL_NEW, 1, 0, CONSUME_RAW, handler },
};

static struct consumer *consumer;

static int
setup(void **state)
{
	(void)state;
	memset(&rec, 0, sizeof(rec));
	memset(&seen, 0, sizeof(seen));
	seen.answer = CONSUME_DONE;
	return 0;
}

/* Delivers payload on topic through the skeleton of consumer c. */
static void
deliver_to(struct consumer *c, const char *topic, const char *payload)
{
	struct mq_message m;

	memset(&m, 0, sizeof(m));
	m.topic = topic;
	m.payload = payload;
	m.len = strlen(payload);
	m.qos = 1;
	consume_message(c, &m);
}

/* Delivers payload on topic through the skeleton of rows[]. */
static void
deliver(const char *topic, const char *payload)
{
	deliver_to(consumer, topic, payload);
}

/* A valid event of type t for alice's ord-1, as JSON (static buffer). */
static const char *
event_json(enum event_type t)
{
	static char buf[4096];
	struct event ev;
	char *json;

	assert_int_equal(event_init(&ev, t, "ord-1", "alice"), 0);
	if (t == EVENT_ORDER_PLACED || t == EVENT_ORDER_READY) {
		ev.n_items = 1;
		snprintf(ev.items[0].sku, sizeof(ev.items[0].sku), "margherita");
		ev.items[0].qty = 1;
	}
	if (t != EVENT_ORDER_PLACED) {
		ev.status = t == EVENT_ORDER_READY ? STATUS_READY : STATUS_PREP;
		ev.seq = (int)ev.status;
		snprintf(ev.worker, sizeof(ev.worker), "exec-1");
	}
	assert_non_null(json = event_encode(&ev));
	snprintf(buf, sizeof(buf), "%s", json);
	free(json);
	return buf;
}

/*
 * The value of name{topic="filter"} in the exposition, or -1; summed over
 * every consumer that registered it (each test's messages go to one
 * consumer only, so a difference is that consumer's).
 */
static long
metric_value(const char *name, const char *filter)
{
	char key[256], *text = metrics_render(), *p;
	long v = -1;

	assert_non_null(text);
	snprintf(key, sizeof(key), "%s{topic=\"%s\"} ", name, filter);
	for (p = text; (p = strstr(p, key)) != NULL; p += strlen(key))
		v = (v < 0 ? 0 : v) + strtol(p + strlen(key), NULL, 10);
	free(text);
	return v;
}

/* ---- tests ------------------------------------------------------------------ */

static void
test_subscribes_from_the_table(void **state)
{
	(void)state;
	assert_int_equal(consume_attach(consumer, NULL), 0);
	assert_int_equal(rec.nsubs, 3);
	assert_string_equal(rec.filters[0], TOPIC_EXECUTORS);
	assert_string_equal(rec.filters[1], TOPIC_ALL_STATUS);
	assert_int_equal(rec.flags[1], MQ_RETAIN_NEW_ONLY);
	assert_string_equal(rec.filters[2], TOPIC_ALL_NEW);
	assert_int_equal(rec.qos[2], 1);
}

static void
test_valid_events_reach_their_handler(void **state)
{
	long before = metric_value("pizza_events_consumed_total", TOPIC_PLACED);

	(void)state;
	/* the shared subscription's row takes the plain topic */
	deliver(TOPIC_PLACED, event_json(EVENT_ORDER_PLACED));
	assert_int_equal(seen.calls, 1);
	assert_true(seen.had_event);
	assert_int_equal(seen.type, EVENT_ORDER_PLACED);
	deliver("pizza/users/alice/orders/ord-1/status", event_json(EVENT_ORDER_STATUS));
	assert_int_equal(seen.calls, 2);
	assert_string_equal(seen.user, "alice");
	assert_string_equal(seen.order, "ord-1");
	assert_int_equal(rec.deadletters, 0);
	assert_int_equal(rec.redelivers, 0);
	assert_int_equal(metric_value("pizza_events_consumed_total", TOPIC_PLACED), before + 1);
}

static void
test_raw_rows_get_the_topic_user(void **state)
{
	(void)state;
	deliver("pizza/users/bob/orders/new", "{\"items\":[]}");
	assert_int_equal(seen.calls, 1);
	assert_false(seen.had_event);
	assert_string_equal(seen.user, "bob");
	assert_int_equal(rec.deadletters, 0);
}

/* What fails the skeleton's checks is dead-lettered with the reason; the handler never sees it. */
static void
test_invalid_input_is_dead_lettered(void **state)
{
	static const struct {
		const char *topic, *payload, *reason;
	} cases[] = {
		{ TOPIC_PLACED, "{not json", "JSON" },
		{ TOPIC_PLACED, NULL /* a status */, "expected OrderPlaced" },
		{ "pizza/users/bob/orders/ord-1/status", NULL /* alice's */, "event ids do not match its topic" },
		{ "pizza/users/alice/orders/ord-2/status", NULL, "event ids do not match its topic" },
		{ "pizza/users/al ice/orders/ord-1/status", NULL, "user or order id is not valid" },
		{ "pizza/somewhere/else", "{}", "no handler for this topic" },
	};
	long dl = metric_value("pizza_deadletters_total", TOPIC_ALL_STATUS);

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *payload = cases[i].payload != NULL ? cases[i].payload : event_json(EVENT_ORDER_STATUS);

		rec.deadletters = 0;
		deliver(cases[i].topic, payload);
		assert_int_equal(rec.deadletters, 1);
		assert_string_equal(rec.last_dl_topic, cases[i].topic);
		if (strstr(rec.last_reason, cases[i].reason) == NULL)
			fail_msg("case %zu: reason \"%s\" lacks \"%s\"", i, rec.last_reason, cases[i].reason);
	}
	assert_int_equal(seen.calls, 0);
	assert_int_equal(rec.redelivers, 0);
	assert_int_equal(metric_value("pizza_deadletters_total", TOPIC_ALL_STATUS), dl + 3);
}

static void
test_handler_results(void **state)
{
	const char *topic = "pizza/users/alice/orders/ord-1/status";
	long dup = metric_value("pizza_duplicates_dropped_total", TOPIC_ALL_STATUS);
	long again = metric_value("pizza_events_redelivered_total", TOPIC_ALL_STATUS);

	(void)state;
	seen.answer = CONSUME_DUPLICATE;
	deliver(topic, event_json(EVENT_ORDER_STATUS));
	assert_int_equal(metric_value("pizza_duplicates_dropped_total", TOPIC_ALL_STATUS), dup + 1);
	assert_int_equal(rec.deadletters + rec.redelivers, 0);

	seen.answer = CONSUME_INVALID;
	deliver(topic, event_json(EVENT_ORDER_STATUS));
	assert_int_equal(rec.deadletters, 1);
	assert_string_equal(rec.last_reason, "the handler says no");

	/* a valid event the handler could not store: never acknowledged, never dead-lettered */
	seen.answer = CONSUME_RETRY;
	deliver(topic, event_json(EVENT_ORDER_STATUS));
	assert_int_equal(rec.redelivers, 1);
	assert_int_equal(rec.deadletters, 1);
	assert_int_equal(metric_value("pizza_events_redelivered_total", TOPIC_ALL_STATUS), again + 1);
	assert_int_equal(seen.calls, 3);

	/* read before the drop: not handled (it comes again), not dead-lettered */
	seen.answer = CONSUME_DONE;
	deliver(topic, event_json(EVENT_ORDER_STATUS));
	deliver(TOPIC_PLACED, "{not json");
	assert_int_equal(seen.calls, 3);
	assert_int_equal(rec.deadletters, 1);
	assert_int_equal(rec.redelivers, 1);
	assert_int_equal(metric_value("pizza_events_redelivered_total", TOPIC_ALL_STATUS), again + 2);
}

/*
 * A service that moved from OrderPlaced and the statuses to OrderReady (the
 * notifier's table, cut down): what it read before are retired rows, with
 * no handler.
 */
static const struct consume_row moved_rows[] = {
	{ TOPIC_READY, 1, 0, EVENT_ORDER_READY, handler },
	{ TOPIC_PLACED, 1, MQ_RETIRED, EVENT_ORDER_PLACED, NULL },
	{ TOPIC_ALL_STATUS, 1, MQ_RETIRED, EVENT_ORDER_STATUS, NULL },
};

/*
 * A retired row is declared with its flag (mq unsubscribes it at each
 * connect); what a persistent session still delivers on it is acknowledged
 * and dropped: no handler, no dead letter, no redelivery, counted as
 * consumed, whatever it holds.  The live row next to it works as before.
 */
static void
test_retired_rows_drop_silently(void **state)
{
	struct consumer *moved = consume_new("test-svc", moved_rows, sizeof(moved_rows) / sizeof(moved_rows[0]), &seen);
	long placed = metric_value("pizza_events_consumed_total", TOPIC_PLACED);
	long status = metric_value("pizza_events_consumed_total", TOPIC_ALL_STATUS);
	long dl_placed = metric_value("pizza_deadletters_total", TOPIC_PLACED);
	long dl_status = metric_value("pizza_deadletters_total", TOPIC_ALL_STATUS);
	long dl_ready = metric_value("pizza_deadletters_total", TOPIC_READY);

	(void)state;
	assert_non_null(moved);
	assert_int_equal(consume_attach(moved, NULL), 0);
	assert_int_equal(rec.nsubs, 3);
	assert_string_equal(rec.filters[0], TOPIC_READY);
	assert_int_equal(rec.flags[0], 0);
	assert_string_equal(rec.filters[1], TOPIC_PLACED);
	assert_int_equal(rec.flags[1], MQ_RETIRED);
	assert_string_equal(rec.filters[2], TOPIC_ALL_STATUS);
	assert_int_equal(rec.flags[2], MQ_RETIRED);

	deliver_to(moved, TOPIC_PLACED, event_json(EVENT_ORDER_PLACED));
	deliver_to(moved, "pizza/users/alice/orders/ord-1/status", event_json(EVENT_ORDER_STATUS));
	/* not even checked: what would be dead-lettered on a live row is dropped too */
	deliver_to(moved, TOPIC_PLACED, "{not json");
	deliver_to(moved, "pizza/users/bob/orders/ord-1/status", event_json(EVENT_ORDER_STATUS));
	assert_int_equal(seen.calls, 0);
	assert_int_equal(rec.deadletters, 0);
	assert_int_equal(rec.redelivers, 0);
	assert_int_equal(metric_value("pizza_events_consumed_total", TOPIC_PLACED), placed + 2);
	assert_int_equal(metric_value("pizza_events_consumed_total", TOPIC_ALL_STATUS), status + 2);
	assert_int_equal(metric_value("pizza_deadletters_total", TOPIC_PLACED), dl_placed);
	assert_int_equal(metric_value("pizza_deadletters_total", TOPIC_ALL_STATUS), dl_status);

	/* the live row: an OrderReady reaches its handler; a status there is not one */
	deliver_to(moved, TOPIC_READY, event_json(EVENT_ORDER_READY));
	assert_int_equal(seen.calls, 1);
	assert_true(seen.had_event);
	assert_int_equal(seen.type, EVENT_ORDER_READY);
	deliver_to(moved, TOPIC_READY, event_json(EVENT_ORDER_STATUS));
	assert_int_equal(seen.calls, 1);
	assert_int_equal(rec.deadletters, 1);
	assert_string_equal(rec.last_dl_topic, TOPIC_READY);
	if (strstr(rec.last_reason, "expected OrderReady on " TOPIC_READY ", got OrderStatus") == NULL)
		fail_msg("reason \"%s\"", rec.last_reason);
	assert_int_equal(metric_value("pizza_deadletters_total", TOPIC_READY), dl_ready + 1);
	assert_int_equal(rec.redelivers, 0);
	consume_free(moved);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_subscribes_from_the_table, setup),
		cmocka_unit_test_setup(test_valid_events_reach_their_handler, setup),
		cmocka_unit_test_setup(test_raw_rows_get_the_topic_user, setup),
		cmocka_unit_test_setup(test_invalid_input_is_dead_lettered, setup),
		cmocka_unit_test_setup(test_handler_results, setup),
		cmocka_unit_test_setup(test_retired_rows_drop_silently, setup),
	};
	int rc;

	consumer = consume_new("test-svc", rows, sizeof(rows) / sizeof(rows[0]), &seen);
	assert_non_null(consumer);
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	consume_free(consumer);
	return rc;
}

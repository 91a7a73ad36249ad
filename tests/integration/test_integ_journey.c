/*
 * The pizza journey over a real mosquitto: one order end to end, competing
 * executors, fanout, and a phone that subscribes late.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"

static struct stack fast; /* stages of 30 ms: the whole journey in well under a second */

static int
fast_setup(void **state)
{
	(void)state;
	if (h_stack_start(&fast, "journey") != 0 || h_observer(&fast) != 0)
		return -1;
	if (h_service(&fast, "order-service", "order-service", NULL) < 0 ||
	    h_service(&fast, "order-history", "order-history", NULL) < 0 ||
	    h_service(&fast, "notifier", "notifier", NULL) < 0)
		return -1;
	for (int i = 1; i <= 3; i++) {
		char id[16];
		snprintf(id, sizeof(id), "exec-%d", i);
		if (h_service(&fast, id, "order-executor", "--id", id, "--stage-ms", "30", NULL) < 0)
			return -1;
	}
	return 0;
}

static int
fast_teardown(void **state)
{
	(void)state;
	int rc = h_stack_stop(&fast);
	return rc;
}

/*
 * phone-sim order, as a user types it: exit 0, the answer "accepted", then
 * every kitchen stage in order (prep, bake, oven, ready: the answer was the
 * accepted), then one alert.
 */
static void
test_one_order_end_to_end(void **state)
{
	char *out = NULL, *line, *save = NULL, order_id[NAME_MAX_LEN + 1] = "";
	char *const argv[] = { "phone-sim", "order", "--user", "alice", "--item", "margherita", "--json", "--timeout",
		"20", NULL };
	int seq = 0, statuses = 0, alerts = 0, rc;
	struct event ev, evs[8];

	(void)state;
	rc = h_run(&fast, h_password(&fast, "alice"), &out, argv);
	assert_int_equal(rc, 0);
	for (line = strtok_r(out, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
		char err[256];
		if (order_id[0] == '\0') { /* the first line is the order-service's answer */
			json_t *r = json_loads(line, 0, NULL);
			assert_non_null(r);
			assert_string_equal(json_string_value(json_object_get(r, "status")), "accepted");
			snprintf(order_id, sizeof(order_id), "%s", json_string_value(json_object_get(r, "order_id")));
			json_decref(r);
			seq = STATUS_ACCEPTED; /* the answer is the accepted: the statuses go on from there */
			continue;
		}
		assert_int_equal(event_decode(line, strlen(line), &ev, err, sizeof(err)), 0);
		assert_string_equal(ev.order_id, order_id);
		assert_string_equal(ev.user_id, "alice");
		if (ev.type == EVENT_ORDER_STATUS) {
			assert_int_equal(alerts, 0);       /* no status after the alert */
			assert_int_equal(ev.seq, seq + 1); /* prep, bake, oven, ready in order; no second accepted */
			seq = ev.seq;
			statuses++;
		} else {
			assert_int_equal(ev.type, EVENT_PICKUP_ALERT);
			alerts++;
		}
	}
	free(out);
	assert_int_equal(seq, STATUS_READY);
	assert_int_equal(statuses, 4);
	assert_int_equal(alerts, 1);

	/* the bus carried exactly one alert for it, even a while later */
	assert_int_equal(h_wait_events(&fast, order_id, EVENT_PICKUP_ALERT, 0, 1, 5000), 1);
	h_sleep(300);
	assert_int_equal(h_count_events(&fast, order_id, EVENT_PICKUP_ALERT, 0), 1);
	assert_int_equal(h_count_topic(&fast, "pizza/users/alice/alerts") >= 1, 1);

	/*
	 * The phone's status topic carried the four kitchen stages, once each,
	 * and no accepted: the executor told order-service alone, with one
	 * accepted on pizza/orders/accepted, and the services that act on ready
	 * one OrderReady on pizza/orders/ready naming what was ordered (an MQTT
	 * order: no callback URL).  One executor did all of it.
	 */
	assert_int_equal(h_count_events_on(&fast, TOPIC_ALL_STATUS, order_id, EVENT_ORDER_STATUS, 0), 4);
	assert_int_equal(h_count_events_on(&fast, TOPIC_ALL_STATUS, order_id, 0, STATUS_ACCEPTED), 0);
	assert_int_equal(h_events_on(&fast, TOPIC_ACCEPTED, order_id, 0, evs, 8), 1);
	assert_int_equal(evs[0].type, EVENT_ORDER_STATUS);
	assert_int_equal(evs[0].status, STATUS_ACCEPTED);
	assert_int_equal(evs[0].seq, 1);
	assert_string_equal(evs[0].user_id, "alice");
	assert_int_equal(strncmp(evs[0].worker, "exec-", 5), 0);
	assert_int_equal(h_events_on(&fast, TOPIC_READY, order_id, 0, evs + 1, 7), 1);
	assert_int_equal(evs[1].type, EVENT_ORDER_READY);
	assert_int_equal(evs[1].status, STATUS_READY);
	assert_int_equal(evs[1].seq, 5);
	assert_string_equal(evs[1].user_id, "alice");
	assert_string_equal(evs[1].worker, evs[0].worker);
	assert_int_equal(evs[1].n_items, 1);
	assert_string_equal(evs[1].items[0].sku, "margherita");
	assert_int_equal(evs[1].items[0].qty, 1);
	assert_string_equal(evs[1].callback_url, "");
	assert_int_equal(h_events_on(&fast, TOPIC_ALL_STATUS, order_id, EVENT_ORDER_STATUS, evs + 2, 6), 4);
	for (int k = 2; k < 6; k++)
		assert_string_equal(evs[k].worker, evs[0].worker);

	/* the history has the order and every kitchen stage, once (its read adds the accepted: test_integ_http) */
	assert_int_equal(h_sql_int(&fast, "order-history", "SELECT count(*) FROM orders WHERE order_id = ?", order_id), 1);
	assert_int_equal(h_sql_int(&fast, "order-history", "SELECT count(*) FROM statuses WHERE order_id = ?", order_id),
	    4);
	assert_int_equal(h_sql_int(&fast, "order-history",
			     "SELECT count(DISTINCT status) FROM statuses WHERE order_id = ? AND "
			     "status IN ('prep','bake','oven','ready')",
			     order_id),
	    4);
}

/* 30 orders, 3 executors: each order handled by exactly one, every executor takes some. */
static void
test_competing_executors(void **state)
{
	static const char *const users[] = { "alice", "bob", "carol" };
	char ids[30][NAME_MAX_LEN + 1], corr[32];
	int per_worker[4] = { 0 };

	(void)state;
	for (int i = 0; i < 30; i++) {
		snprintf(corr, sizeof(corr), "compete-%d", i);
		assert_int_equal(h_place(&fast, users[i % 3], "funghi", 1 + i % 3, corr), 0);
	}
	for (int i = 0; i < 30; i++) {
		snprintf(corr, sizeof(corr), "compete-%d", i);
		assert_int_equal(h_wait_reply(&fast, corr, ids[i], sizeof(ids[i]), 10000), 0);
	}
	for (int i = 0; i < 30; i++) {
		struct event evs[16];
		int n;

		assert_int_equal(h_wait_events(&fast, ids[i], EVENT_PICKUP_ALERT, 0, 1, 15000), 1);
		/* one journey: one accepted (to order-service), no stage twice on the phone's topic */
		assert_int_equal(h_events_on(&fast, TOPIC_ACCEPTED, ids[i], EVENT_ORDER_STATUS, evs, 16), 1);
		n = h_events_on(&fast, TOPIC_ALL_STATUS, ids[i], EVENT_ORDER_STATUS, evs + 1, 15);
		assert_int_equal(n, 4);
		for (int k = 0; k <= n; k++) {
			assert_int_equal(evs[k].seq, k + 1);
			assert_string_equal(evs[k].worker, evs[0].worker); /* one executor per order */
		}
		assert_int_equal(strncmp(evs[0].worker, "exec-", 5), 0);
		per_worker[evs[0].worker[5] - '0']++;
	}
	/* round robin: every executor got some of the 30 */
	assert_true(per_worker[1] > 0);
	assert_true(per_worker[2] > 0);
	assert_true(per_worker[3] > 0);
	assert_int_equal(per_worker[1] + per_worker[2] + per_worker[3], 30);
	h_sleep(300);
	for (int i = 0; i < 30; i++)
		assert_int_equal(h_count_events(&fast, ids[i], EVENT_PICKUP_ALERT, 0), 1);
}

/*
 * Fanout: order-history sees every OrderPlaced and the notifier every
 * OrderReady, which names what was ordered.
 */
static void
test_fanout_history_and_notifier(void **state)
{
	char ids[10][NAME_MAX_LEN + 1], corr[32];

	(void)state;
	for (int i = 0; i < 10; i++) {
		snprintf(corr, sizeof(corr), "fanout-%d", i);
		assert_int_equal(h_place(&fast, "bob", "diavola", 2, corr), 0);
	}
	for (int i = 0; i < 10; i++) {
		snprintf(corr, sizeof(corr), "fanout-%d", i);
		assert_int_equal(h_wait_reply(&fast, corr, ids[i], sizeof(ids[i]), 10000), 0);
		assert_int_equal(h_wait_events(&fast, ids[i], EVENT_PICKUP_ALERT, 0, 1, 15000), 1);
	}
	for (int i = 0; i < 10; i++) {
		struct event a;

		/* order-history stored it (it keeps every OrderPlaced) */
		for (int64_t deadline = mono_ms() + 10000;
		    h_sql_int(&fast, "order-history", "SELECT count(*) FROM orders WHERE order_id = ?", ids[i]) != 1 &&
		    mono_ms() < deadline;)
			h_sleep(20);
		assert_int_equal(h_sql_int(&fast, "order-history", "SELECT count(*) FROM orders WHERE order_id = ?", ids[i]), 1);
		/* the notifier alerted once, naming what was ordered, which only the OrderReady told it */
		assert_int_equal(
		    h_sql_int(&fast, "notifier", "SELECT count(*) FROM alerts WHERE order_id = ?", ids[i]), 1);
		assert_int_equal(h_events(&fast, ids[i], EVENT_PICKUP_ALERT, &a, 1), 1);
		assert_non_null(strstr(a.message, "2 x diavola"));
		assert_int_equal(h_events_on(&fast, TOPIC_READY, ids[i], EVENT_ORDER_READY, &a, 1), 1);
		assert_int_equal(a.n_items, 1);
		assert_string_equal(a.items[0].sku, "diavola");
		assert_int_equal(a.items[0].qty, 2);
	}
}

/* A bad request gets an error answer, places nothing, and the service goes on. */
static void
test_refused_order_gets_reason(void **state)
{
	char order_id[NAME_MAX_LEN + 1], reply[300];

	(void)state;
	assert_int_equal(h_place(&fast, "carol", "pineapple-surprise", 1, "refuse-1"), 0);
	assert_int_equal(h_wait_reply(&fast, "refuse-1", reply, sizeof(reply), 5000), 1);
	assert_string_equal(reply, "invalid_field: items[0].sku: 'pineapple-surprise' is not on the menu");
	assert_int_equal(h_place(&fast, "carol", "margherita", 0, "refuse-0"), 0);
	assert_int_equal(h_wait_reply(&fast, "refuse-0", reply, sizeof(reply), 5000), 1);
	assert_non_null(strstr(reply, "items[0].qty"));
	assert_int_equal(h_place(&fast, "carol", "margherita", 1, "refuse-2"), 0);
	assert_int_equal(h_wait_reply(&fast, "refuse-2", order_id, sizeof(order_id), 5000), 0);
	assert_int_equal(h_wait_events(&fast, order_id, EVENT_PICKUP_ALERT, 0, 1, 10000), 1);
}

static struct stack slow; /* a long oven, so an order is caught mid-way */

static int
slow_setup(void **state)
{
	(void)state;
	if (h_stack_start(&slow, "late-phone") != 0 || h_observer(&slow) != 0)
		return -1;
	if (h_service(&slow, "order-service", "order-service", NULL) < 0 ||
	    h_service(&slow, "notifier", "notifier", NULL) < 0 ||
	    h_service(&slow, "exec-1", "order-executor", "--id", "exec-1", "--stage-ms", "20", "--oven-ms", "2500", NULL) < 0)
		return -1;
	return 0;
}

static int
slow_teardown(void **state)
{
	(void)state;
	int rc = h_stack_stop(&slow);
	return rc;
}

/* A phone that subscribes while the pizza is in the oven sees "oven" at once (retained), then the rest. */
static void
test_late_phone_sees_current_status(void **state)
{
	char order_id[NAME_MAX_LEN + 1], *out = NULL, expect[160];
	char *const argv[] = { "phone-sim", "watch", "--user", "alice", "--alerts", "1", "--for", "15", NULL };
	int rc;

	(void)state;
	assert_int_equal(h_place(&slow, "alice", "margherita", 1, "late-1"), 0);
	assert_int_equal(h_wait_reply(&slow, "late-1", order_id, sizeof(order_id), 5000), 0);
	assert_int_equal(h_wait_events(&slow, order_id, EVENT_ORDER_STATUS, STATUS_OVEN, 1, 5000), 1);
	assert_int_equal(h_count_events(&slow, order_id, EVENT_ORDER_STATUS, STATUS_READY), 0);

	rc = h_run(&slow, h_password(&slow, "alice"), &out, argv);
	assert_int_equal(rc, 0);
	snprintf(expect, sizeof(expect), "order %s  oven", order_id);
	assert_non_null(strstr(out, expect));
	assert_non_null(strstr(strstr(out, expect), "(current status, retained)"));
	snprintf(expect, sizeof(expect), "order %s  ready", order_id);
	assert_non_null(strstr(out, expect));
	snprintf(expect, sizeof(expect), "order %s  PICKUP", order_id);
	assert_non_null(strstr(out, expect));
	/* what came before the phone subscribed is not replayed, only the current status */
	snprintf(expect, sizeof(expect), "order %s  bake", order_id);
	assert_null(strstr(out, expect));
	free(out);
}

/*
 * Ctrl-C while phone-sim order waits for the pizza: one line saying so and
 * the exit status a shell gives a command SIGINT stopped (130), so a
 * script can tell an interruption from a failed order (1).
 */
static void
test_interrupted_order_exits_130(void **state)
{
	char outfile[600], *out = NULL, *text;
	char *const argv[] = { "phone-sim", "order", "--user", "alice", "--item", "funghi", "--timeout", "30", NULL };
	int64_t deadline;
	pid_t pid;
	int in_oven = 0, rc;

	(void)state;
	snprintf(outfile, sizeof(outfile), "%s/interrupted.out", slow.dir);
	assert_true((pid = h_spawn(&slow, h_password(&slow, "alice"), argv, outfile)) > 0);
	/* the oven takes 2.5 s here: interrupt it there */
	for (deadline = mono_ms() + 15000; mono_ms() < deadline && !in_oven;) {
		text = file_read_small(outfile, 1 << 20);
		in_oven = text != NULL && strstr(text, "  oven ") != NULL;
		free(text);
		if (!in_oven)
			h_sleep(20);
	}
	assert_true(in_oven);
	assert_int_equal(kill(pid, SIGINT), 0);
	rc = h_collect(pid, outfile, &out, 10000);
	if (rc != 130 || strstr(out, "phone-sim order: interrupted while waiting for") == NULL)
		fail_msg("exit %d, output:\n%s", rc, out);
	free(out);
}

int
main(void)
{
	const struct CMUnitTest journey[] = {
		cmocka_unit_test(test_one_order_end_to_end),
		cmocka_unit_test(test_competing_executors),
		cmocka_unit_test(test_fanout_history_and_notifier),
		cmocka_unit_test(test_refused_order_gets_reason),
	};
	const struct CMUnitTest late[] = {
		cmocka_unit_test(test_late_phone_sees_current_status),
		cmocka_unit_test(test_interrupted_order_exits_130),
	};
	int failed = 0;

	failed += cmocka_run_group_tests_name("journey", journey, fast_setup, fast_teardown);
	failed += cmocka_run_group_tests_name("late_phone", late, slow_setup, slow_teardown);
	return failed != 0;
}

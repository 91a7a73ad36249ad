/*
 * Nothing lost: the eight failures of docs/reliability.md, each against a
 * fresh real stack.  The promise checked: every accepted order reaches ready
 * and its pickup alert reaches the phone; the phone shows each stage and the
 * alert exactly once, in order; a bad message never stops a service.
 *
 * Supervision deadlines are short here (accept 1.5 s, ready 3 s) so the
 * tests finish quickly; production defaults are in docs/reliability.md.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"
#include "util.h"

#define USERS 3
static const char *const users[USERS] = { "alice", "bob", "carol" };
static struct stack st;

static int
setup(void **state)
{
	(void)state;
	if (h_stack_start(&st, "faults") != 0 || h_observer(&st) != 0)
		return -1;
	if (h_service(&st, "order-service", "order-service", "--accept-deadline-ms", "1500", "--ready-deadline", "3000",
		NULL) < 0 ||
	    h_service(&st, "order-history", "order-history", NULL) < 0 ||
	    h_service(&st, "notifier", "notifier", NULL) < 0)
		return -1;
	for (int i = 1; i <= 3; i++) {
		char id[16];
		snprintf(id, sizeof(id), "exec-%d", i);
		if (h_service(&st, id, "order-executor", "--id", id, "--stage-ms", "150", NULL) < 0)
			return -1;
	}
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	int rc = h_stack_stop(&st);
	return rc;
}

/* Phones watching every user, started before the orders: they must each see everything once. */
struct phones {
	pid_t pid[USERS];
	char out[USERS][700];
};

/*
 * n orders will be placed round-robin over the users: each phone waits for
 * its share of alerts.  A persistent phone keeps a session on the broker, so
 * it also gets what was published while the broker itself was restarting; a
 * clean-session phone only gets the current (retained) stage after a
 * reconnect, which is what its user would see, but not every stage.
 */
static void
phones_start_as(struct phones *ph, int n, int persistent)
{
	for (int u = 0; u < USERS; u++) {
		char alerts[16];

		snprintf(alerts, sizeof(alerts), "%d", (n - u + USERS - 1) / USERS);
		char *const argv[] = { "phone-sim", "watch", "--user", (char *)users[u], "--alerts", alerts, "--for", "90",
			persistent ? "--persistent" : NULL, NULL };
		snprintf(ph->out[u], sizeof(ph->out[u]), "%s/phone-%s.out", st.dir, users[u]);
		ph->pid[u] = h_spawn(&st, h_password(&st, users[u]), argv, ph->out[u]);
	}
	h_sleep(500); /* subscribed */
}

static void
phones_start(struct phones *ph, int n)
{
	phones_start_as(ph, n, 0);
}

static int
count(const char *text, const char *needle)
{
	int n = 0;

	for (const char *p = text; (p = strstr(p, needle)) != NULL; p += strlen(needle))
		n++;
	return n;
}

/*
 * What the user saw for this order: each kitchen stage and the alert exactly
 * once, in order (the accepted was the answer to the order; the status
 * topic starts at prep).
 */
static void
assert_clean_journey(const char *out, const char *order_id)
{
	static const char *const steps[] = { "prep", "bake", "oven", "ready", "PICKUP" };
	const char *prev = out;
	char accepted[256];

	snprintf(accepted, sizeof(accepted), "order %s  accepted", order_id);
	if (count(out, accepted) != 0)
		fail_msg("order %s: 'accepted' shown as a status", order_id);
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		char needle[256];
		const char *at;

		snprintf(needle, sizeof(needle), "order %s  %s", order_id, steps[i]);
		if (count(out, needle) != 1)
			fail_msg("order %s: '%s' shown %d times", order_id, steps[i], count(out, needle));
		at = strstr(out, needle);
		if (at < prev)
			fail_msg("order %s: '%s' shown out of order", order_id, steps[i]);
		prev = at;
	}
}

static void
phones_check(struct phones *ph, char ids[][NAME_MAX_LEN + 1], int n)
{
	for (int u = 0; u < USERS; u++) {
		char *out = NULL;
		int rc = h_collect(ph->pid[u], ph->out[u], &out, 100000);

		if (rc != 0)
			fail_msg("phone of %s exited %d:\n%s", users[u], rc, out);
		for (int i = u; i < n; i += USERS)
			assert_clean_journey(out, ids[i]);
		free(out);
	}
}

/* Places n orders round-robin over the users (MQTT request/response) and collects their ids. */
static void
place(const char *tag, char ids[][NAME_MAX_LEN + 1], int n)
{
	char corr[64];

	for (int i = 0; i < n; i++) {
		snprintf(corr, sizeof(corr), "%s-%d", tag, i);
		assert_int_equal(h_place(&st, users[i % USERS], "margherita", 1, corr), 0);
	}
	for (int i = 0; i < n; i++) {
		snprintf(corr, sizeof(corr), "%s-%d", tag, i);
		if (h_wait_reply(&st, corr, ids[i], NAME_MAX_LEN + 1, 15000) != 0)
			fail_msg("no accepted answer for order %d", i);
	}
}

static void
assert_all_alerted(char ids[][NAME_MAX_LEN + 1], int n, int timeout_ms)
{
	int64_t deadline = mono_ms() + timeout_ms;

	for (int i = 0; i < n; i++) {
		int left = (int)(deadline - mono_ms());
		if (h_wait_events(&st, ids[i], EVENT_PICKUP_ALERT, 0, 1, left > 0 ? left : 1) < 1)
			fail_msg("order %s never got its pickup alert (see %s)", ids[i], st.dir);
	}
}

/*
 * The history holds each order and each of its four kitchen stages (prep,
 * bake, oven, ready: what the phone's status topic carries) exactly once
 * (waiting for it to catch up: it may still be reconnecting).
 */
static void
assert_history_exact(char ids[][NAME_MAX_LEN + 1], int n)
{
	int64_t deadline = mono_ms() + 30000;

	for (int i = 0; i < n; i++)
		while ((h_sql_int(&st, "order-history", "SELECT count(*) FROM statuses WHERE order_id = ?", ids[i]) < 4 ||
			   h_sql_int(&st, "order-history", "SELECT count(*) FROM orders WHERE order_id = ?", ids[i]) < 1) &&
		    mono_ms() < deadline)
			h_sleep(50);
	h_sleep(300);
	for (int i = 0; i < n; i++) {
		assert_int_equal(h_sql_int(&st, "order-history", "SELECT count(*) FROM orders WHERE order_id = ?", ids[i]), 1);
		assert_int_equal(h_sql_int(&st, "order-history", "SELECT count(*) FROM statuses WHERE order_id = ?", ids[i]), 4);
	}
}

/* 1. Kill -9 one of three executors while 50 orders are in its stages. */
static void
test_executor_killed_mid_order(void **state)
{
	char ids[50][NAME_MAX_LEN + 1];
	struct phones ph;

	(void)state;
	phones_start(&ph, 50);
	place("kill-exec", ids, 50);
	/* wait until exec-2 is busy with some of them, then crash it */
	assert_int_equal(h_wait_log(&st, "exec-2", "msg=\"order taken\"", 5, 10000), 0);
	h_signal(&st, "exec-2", SIGKILL);
	assert_all_alerted(ids, 50, 60000);
	assert_history_exact(ids, 50);
	phones_check(&ph, ids, 50);
}

/* 2. Kill -9 an executor and never restart it: the share queued for it still completes. */
static void
test_dead_executor_share_completes(void **state)
{
	char ids[21][NAME_MAX_LEN + 1];
	struct phones ph;

	(void)state;
	h_signal(&st, "exec-3", SIGKILL); /* its persistent session keeps receiving a third of the orders */
	phones_start(&ph, 21);
	place("dead-share", ids, 21);
	assert_all_alerted(ids, 21, 60000);
	assert_history_exact(ids, 21);
	phones_check(&ph, ids, 21);
	/* supervision did it: some orders needed publishing again */
	assert_true(h_sql_int(&st, "order-service", "SELECT count(*) FROM orders WHERE republished > 0", NULL) > 0);
}

/* 3. Restart the broker in the middle of 50 orders. */
static void
test_broker_restart_mid_stream(void **state)
{
	char ids[51][NAME_MAX_LEN + 1];
	struct phones ph;

	(void)state;
	phones_start_as(&ph, 51, 1);
	place("broker", ids, 51);
	/* executors have taken some: they told order-service on pizza/orders/accepted */
	assert_true(h_wait_events_on(&st, TOPIC_ACCEPTED, NULL, EVENT_ORDER_STATUS, STATUS_ACCEPTED, 10, 10000) >= 10);
	assert_int_equal(h_broker_restart(&st), 0);
	/* the observer is a clean session: it missed what happened while the broker was down; the phones are checked below */
	assert_true(h_wait_log(&st, "order-service", "msg=\"connected to broker\"", 2, 30000) == 0);
	for (int i = 0; i < 51; i++) {
		int64_t deadline = mono_ms() + 60000;
		while (h_sql_int(&st, "notifier", "SELECT count(*) FROM alerts WHERE order_id = ?", ids[i]) != 1 &&
		    mono_ms() < deadline)
			h_sleep(50);
		assert_int_equal(h_sql_int(&st, "notifier", "SELECT count(*) FROM alerts WHERE order_id = ?", ids[i]), 1);
	}
	phones_check(&ph, ids, 51);
	assert_history_exact(ids, 51);
}

/* 4. Kill -9 order-service right after it answered: every accepted order is published and completes. */
static void
test_order_service_killed_after_answer(void **state)
{
	char ids[30][NAME_MAX_LEN + 1];

	(void)state;
	place("kill-os", ids, 30);
	h_signal(&st, "order-service", SIGKILL);
	assert_int_equal(h_restart(&st, "order-service", SIGKILL), 0);
	assert_all_alerted(ids, 30, 60000);
	assert_history_exact(ids, 30);
}

/* 5. Kill -9 order-history during a stream of events, restart it: every event stored exactly once. */
static void
test_history_killed_and_restarted(void **state)
{
	char ids[30][NAME_MAX_LEN + 1];

	(void)state;
	place("kill-hist", ids, 15);
	assert_int_equal(h_wait_events(&st, NULL, EVENT_ORDER_STATUS, STATUS_PREP, 5, 10000) >= 5, 1);
	h_signal(&st, "order-history", SIGKILL);
	place("kill-hist-b", ids + 15, 15); /* these happen while it is down */
	h_sleep(500);
	assert_int_equal(h_restart(&st, "order-history", SIGKILL), 0);
	assert_all_alerted(ids, 30, 60000);
	h_sleep(1000);
	assert_history_exact(ids, 30);
	assert_int_equal(h_sql_int(&st, "order-history", "SELECT count(*) FROM statuses", NULL), 120);
	assert_int_equal(h_sql_int(&st, "order-history", "SELECT count(*) FROM orders", NULL), 30);
}

/* 6. A phone offline (persistent session) while its three orders complete gets the three alerts once each. */
static void
test_offline_phone_gets_missed_alerts(void **state)
{
	char ids[3][NAME_MAX_LEN + 1], *out = NULL, corr[32], needle[256];
	char *const first[] = { "phone-sim", "watch", "--user", "carol", "--persistent", "--for", "1", NULL };
	char *const again[] = { "phone-sim", "watch", "--user", "carol", "--persistent", "--alerts", "3", "--for", "20", NULL };

	(void)state;
	assert_int_equal(h_run(&st, h_password(&st, "carol"), &out, first), 0); /* the phone was here once */
	free(out);
	for (int i = 0; i < 3; i++) {
		snprintf(corr, sizeof(corr), "offline-%d", i);
		assert_int_equal(h_place(&st, "carol", "funghi", 1, corr), 0);
		assert_int_equal(h_wait_reply(&st, corr, ids[i], sizeof(ids[i]), 5000), 0);
	}
	assert_all_alerted(ids, 3, 20000);
	assert_int_equal(h_run(&st, h_password(&st, "carol"), &out, again), 0);
	for (int i = 0; i < 3; i++) {
		snprintf(needle, sizeof(needle), "order %s  PICKUP", ids[i]);
		assert_int_equal(count(out, needle), 1);
		snprintf(needle, sizeof(needle), "order %s  ready", ids[i]);
		assert_int_equal(count(out, needle), 1);
	}
	free(out);
}

/* 7. Poison on the service topics: each dead-lettered with a reason; valid orders in between complete; nothing exits. */
static void
test_poison_messages(void **state)
{
	static const char *const services[] = { "order-service", "order-history", "notifier", "exec-1", "exec-2", "exec-3" };
	char ids[4][NAME_MAX_LEN + 1], *big;
	/* an executor's accepted for an order order-service never had */
	const char *unknown_status =
	    "{\"type\":\"OrderStatus\",\"event_id\":\"01POISON00000000000000000A\",\"order_id\":\"01NOSUCHORDER000000000000A\","
	    "\"user_id\":\"alice\",\"at\":\"2026-01-01T00:00:00.000Z\",\"status\":\"accepted\",\"seq\":1,\"worker\":\"exec-x\"}";
	const char *teleported = "{\"type\":\"PizzaTeleported\",\"event_id\":\"E1\",\"order_id\":\"O1\",\"user_id\":\"alice\"}";
	size_t bigsz = 1024 * 1024;

	(void)state;
	place("poison-a", ids, 1);
	assert_int_equal(h_publish(&st, "order-service", "pizza/orders/placed", "{\"type\":\"OrderPlaced\",", 22), 0);
	place("poison-b", ids + 1, 1);
	assert_int_equal(h_publish(&st, "order-service", "pizza/orders/placed",
			     teleported, strlen(teleported)),
	    0);
	big = malloc(bigsz);
	memset(big, 'x', bigsz);
	assert_int_equal(h_publish(&st, "order-service", "pizza/orders/placed", big, bigsz), 0);
	free(big);
	place("poison-c", ids + 2, 1);
	assert_int_equal(h_publish(&st, "order-executor", TOPIC_ACCEPTED, unknown_status, strlen(unknown_status)), 0);
	place("poison-d", ids + 3, 1);
	assert_all_alerted(ids, 4, 20000);
	h_sleep(500);

	/* each reached pizza/deadletter with its reason */
	{
		int malformed = 0, unknown_type = 0, too_big = 0, unknown_order = 0;

		pthread_mutex_lock(&st.lock);
		for (size_t i = 0; i < st.nmsgs; i++) {
			const char *p = st.msgs[i].payload;
			if (strcmp(st.msgs[i].topic, "pizza/deadletter") != 0)
				continue;
			malformed += strstr(p, "\"reason\":\"malformed JSON") != NULL;
			unknown_type += strstr(p, "unknown event type 'PizzaTeleported'") != NULL;
			too_big += strstr(p, "over the 65536 byte limit") != NULL && strstr(p, "\"truncated\":false") != NULL;
			unknown_order += strstr(p, "status for an unknown order") != NULL;
		}
		pthread_mutex_unlock(&st.lock);
		assert_true(malformed >= 1);
		assert_true(unknown_type >= 1);
		assert_true(too_big >= 1);
		assert_int_equal(unknown_order, 1);
	}
	for (size_t i = 0; i < sizeof(services) / sizeof(services[0]); i++)
		if (!h_alive(&st, services[i]))
			fail_msg("%s exited", services[i]);
}

/* 8. The same OrderPlaced (same event_id) published twice by hand: one journey, one alert. */
static void
test_duplicate_order_placed(void **state)
{
	const char *ev = "{\"type\":\"OrderPlaced\",\"event_id\":\"01DUPEVENT0000000000000000\",\"order_id\":"
			 "\"01DUPORDER0000000000000000\",\"user_id\":\"bob\",\"at\":\"2026-11-23T12:00:00.000Z\","
			 "\"items\":[{\"sku\":\"funghi\",\"qty\":1}]}";
	char ids[1][NAME_MAX_LEN + 1] = { "01DUPORDER0000000000000000" };
	char *out = NULL, outfile[600];
	char *const argv[] = { "phone-sim", "watch", "--user", "bob", "--alerts", "1", "--for", "20", NULL };
	pid_t phone;

	(void)state;
	snprintf(outfile, sizeof(outfile), "%s/phone-bob-dup.out", st.dir);
	phone = h_spawn(&st, h_password(&st, "bob"), argv, outfile);
	h_sleep(500);
	assert_int_equal(h_publish(&st, "order-service", "pizza/orders/placed", ev, strlen(ev)), 0);
	assert_int_equal(h_publish(&st, "order-service", "pizza/orders/placed", ev, strlen(ev)), 0);
	assert_int_equal(h_collect(phone, outfile, &out, 30000), 0);
	assert_clean_journey(out, ids[0]);
	free(out);
	h_sleep(1000);
	assert_int_equal(h_count_events(&st, ids[0], EVENT_PICKUP_ALERT, 0), 1);
	assert_history_exact(ids, 1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_executor_killed_mid_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dead_executor_share_completes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_broker_restart_mid_stream, setup, teardown),
		cmocka_unit_test_setup_teardown(test_order_service_killed_after_answer, setup, teardown),
		cmocka_unit_test_setup_teardown(test_history_killed_and_restarted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_offline_phone_gets_missed_alerts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_poison_messages, setup, teardown),
		cmocka_unit_test_setup_teardown(test_duplicate_order_placed, setup, teardown),
	};

	if (getenv("PIZZA_TEST_FILTER") != NULL) /* e.g. PIZZA_TEST_FILTER='*broker*' to run one while debugging */
		cmocka_set_test_filter(getenv("PIZZA_TEST_FILTER"));
	return cmocka_run_group_tests_name("faults", tests, NULL, NULL);
}

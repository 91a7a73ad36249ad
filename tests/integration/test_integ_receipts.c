/*
 * Delivery receipts and devices (docs/events.md, "Devices and delivery
 * receipts"), against a real broker and the real services:
 *
 *   1. the broker is killed with kill -9 right after 100 alerts were queued
 *      for an offline persistent device, then started again: the device
 *      gets all 100, each shown once (and we measure how many the broker
 *      itself still had);
 *   2. two devices of one user, one offline during the order: each shows
 *      every stage and the alert once;
 *   3. a device's receipt shows in the order's timeline and in
 *      GET /v1/orders/{id}.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "harness.h"
#include "util.h"

static struct stack st;

static int
setup(void **state)
{
	(void)state;
	if (h_stack_start(&st, "receipts") != 0 || h_observer(&st) != 0)
		return -1;
	/* 100 orders of one user at once: above the default per-user limit (60 at once) */
	if (h_service(&st, "order-service", "order-service", "--order-rate-burst", "200", NULL) < 0 ||
	    h_service(&st, "order-history", "order-history", NULL) < 0 ||
	    h_service(&st, "notifier", "notifier", NULL) < 0 ||
	    h_service(&st, "exec-1", "order-executor", "--id", "exec-1", "--stage-ms", "0", NULL) < 0)
		return -1;
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	return h_stack_stop(&st);
}

static int
count(const char *text, const char *needle)
{
	int n = 0;

	for (const char *p = text; (p = strstr(p, needle)) != NULL; p += strlen(needle))
		n++;
	return n;
}

/* Polls a one-integer query on a service's database until it is at least want (or at most, with below). */
static int64_t
wait_sql(const char *db, const char *sql, const char *arg, int64_t want, int below, int timeout_ms)
{
	int64_t deadline = mono_ms() + timeout_ms, v;

	for (;;) {
		v = h_sql_int(&st, db, sql, arg);
		if ((below ? v >= 0 && v <= want : v >= want) || mono_ms() >= deadline)
			return v;
		h_sleep(50);
	}
}

/*
 * Starts phone-sim watch --persistent as user's device, showing at most
 * alerts alerts within for_s seconds, output into a file named after it.
 */
static pid_t
device_start(const char *user, const char *device, int alerts, int for_s, char *out, size_t n)
{
	char na[16], nf[16];

	snprintf(na, sizeof(na), "%d", alerts);
	snprintf(nf, sizeof(nf), "%d", for_s);
	char *const argv[] = { "phone-sim", "watch", "--user", (char *)user, "--persistent", "--device", (char *)device,
		"--alerts", na, "--for", nf, NULL };
	snprintf(out, n, "%s/%s-%s-%d.out", st.dir, user, device, (int)mono_ms());
	return h_spawn(&st, h_password(&st, user), argv, out);
}

/* Waits until the notifier has taken the hello number nth of user's device. */
static void
wait_hello(const char *user, const char *device, int nth)
{
	char needle[160];

	snprintf(needle, sizeof(needle), "msg=\"device hello\" user_id=%s device=%s", user, device);
	if (h_wait_log(&st, "notifier", needle, nth, 15000) != 0)
		fail_msg("the notifier never took hello %d of %s/%s", nth, user, device);
}

/* Says hello once as user's device, then goes offline (its session stays on the broker). */
static void
device_hello_then_offline(const char *user, const char *device, int nth_hello)
{
	char out[512], *text = NULL;
	pid_t pid = device_start(user, device, 0, 120, out, sizeof(out));

	assert_true(pid > 0);
	wait_hello(user, device, nth_hello);
	kill(pid, SIGTERM);
	assert_int_equal(h_collect(pid, out, &text, 10000), 0);
	free(text);
}

/* Places n orders for user, waits for every answer, copies the order ids into ids. */
static void
place_orders(const char *user, const char *tag, int n, char ids[][NAME_MAX_LEN + 1])
{
	for (int i = 0; i < n; i++) {
		char corr[64];

		snprintf(corr, sizeof(corr), "%s-%d", tag, i);
		assert_int_equal(h_place(&st, user, "margherita", 1, corr), 0);
	}
	for (int i = 0; i < n; i++) {
		char corr[64];

		snprintf(corr, sizeof(corr), "%s-%d", tag, i);
		assert_int_equal(h_wait_reply(&st, corr, ids[i], NAME_MAX_LEN + 1, 20000), 0);
	}
}

/* 1. kill -9 of the broker right after 100 alerts were queued for an offline device: all 100 arrive, once each. */
static void
test_broker_crash_loses_no_alert(void **state)
{
	static char ids[100][NAME_MAX_LEN + 1];
	char out[512], needle[160], *text = NULL;
	int resent_lines, shown_once = 0;
	pid_t pid;

	(void)state;
	device_hello_then_offline("bob", "phone", 1);
	place_orders("bob", "crash", 100, ids);
	/* every alert is pending for the device, and the broker has acknowledged every one (queued for the device) */
	assert_int_equal(wait_sql("notifier", "SELECT count(*) FROM device_alerts WHERE user_id = 'bob' AND "
					      "delivered_ms IS NULL", NULL, 100, 0, 30000),
	    100);
	assert_int_equal(wait_sql("notifier", "SELECT count(*) FROM outbox", NULL, 0, 1, 30000), 0);

	kill(st.broker, SIGKILL);
	waitpid(st.broker, NULL, 0);
	st.broker = 0;
	assert_int_equal(h_broker_start(&st), 0);

	pid = device_start("bob", "phone", 100, 60, out, sizeof(out));
	assert_true(pid > 0);
	assert_int_equal(h_collect(pid, out, &text, 90000), 0);
	for (int i = 0; i < 100; i++) {
		snprintf(needle, sizeof(needle), "order %.64s  PICKUP", ids[i]);
		if (count(text, needle) != 1)
			fail_msg("order %s: its alert shown %d times\n%s", ids[i], count(text, needle), text);
		shown_once++;
	}
	assert_int_equal(count(text, "PICKUP"), 100);
	resent_lines = count(text, "(sent again to this device)");
	print_message("broker kill -9 with 100 alerts queued for an offline device: %d/100 shown, each once; "
		      "%d came from the broker's own queue, %d were sent again by the notifier\n",
	    shown_once, 100 - resent_lines, resent_lines);
	/* the device's receipts empty the notifier's pending list */
	assert_int_equal(wait_sql("notifier", "SELECT count(*) FROM device_alerts WHERE user_id = 'bob' AND "
					      "delivered_ms IS NULL", NULL, 0, 1, 20000),
	    0);
	free(text);
}

/*
 * What the device showed of this order: each kitchen stage and the alert
 * exactly once, in order (its status topic starts at prep: the accepted was
 * the answer to the order).
 */
static void
assert_clean_journey(const char *out, const char *order_id)
{
	static const char *const steps[] = { "prep", "bake", "oven", "ready", "PICKUP" };
	const char *prev = out;
	char accepted[256];

	snprintf(accepted, sizeof(accepted), "order %s  accepted", order_id);
	if (count(out, accepted) != 0)
		fail_msg("order %s: 'accepted' shown as a status\n%s", order_id, out);
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		char needle[256];
		const char *at;

		snprintf(needle, sizeof(needle), "order %s  %s", order_id, steps[i]);
		if (count(out, needle) != 1)
			fail_msg("order %s: '%s' shown %d times\n%s", order_id, steps[i], count(out, needle), out);
		at = strstr(out, needle);
		if (at < prev)
			fail_msg("order %s: '%s' shown out of order\n%s", order_id, steps[i], out);
		prev = at;
	}
}

/* 2. Two devices of one user, both persistent, one offline during the order: each shows it all once. */
static void
test_two_devices_one_offline(void **state)
{
	char ids[1][NAME_MAX_LEN + 1], out_phone[512], out_tablet[512], *phone = NULL, *tablet = NULL;
	pid_t p, t;

	(void)state;
	device_hello_then_offline("carol", "tablet", 1);
	p = device_start("carol", "phone", 1, 60, out_phone, sizeof(out_phone));
	assert_true(p > 0);
	wait_hello("carol", "phone", 1);
	place_orders("carol", "two", 1, ids);
	assert_int_equal(h_collect(p, out_phone, &phone, 60000), 0);
	assert_clean_journey(phone, ids[0]);

	t = device_start("carol", "tablet", 1, 60, out_tablet, sizeof(out_tablet));
	assert_true(t > 0);
	assert_int_equal(h_collect(t, out_tablet, &tablet, 60000), 0);
	assert_clean_journey(tablet, ids[0]);
	/* the two devices did not knock each other off */
	assert_int_equal(h_sql_int(&st, "notifier", "SELECT count(*) FROM devices WHERE user_id = 'carol'", NULL), 2);
	free(phone);
	free(tablet);
}

/* 3. A receipt reaches the order's timeline and the HTTP read. */
static void
test_receipt_in_timeline(void **state)
{
	char ids[1][NAME_MAX_LEN + 1], out[512], url[256], auth[512], *text = NULL;
	const char *headers[] = { auth, NULL };
	struct h_reply r;
	pid_t p;

	(void)state;
	p = device_start("alice", "phone", 1, 60, out, sizeof(out));
	assert_true(p > 0);
	wait_hello("alice", "phone", 1);
	place_orders("alice", "tl", 1, ids);
	assert_int_equal(h_collect(p, out, &text, 60000), 0);
	assert_int_equal(wait_sql("order-history", "SELECT count(*) FROM receipts WHERE order_id = ?", ids[0], 1, 0, 15000),
	    1);

	snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/orders/%s", st.http_port, ids[0]);
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", h_token(&st, "alice"));
	assert_int_equal(h_http("GET", url, headers, NULL, &r), 200);
	if (strstr(r.body, "\"deliveries\":[{\"device\":\"phone\",\"delivered_at\":\"") == NULL ||
	    strstr(r.body, "\"status\":\"delivered\"") == NULL || strstr(r.body, "\"device\":\"phone\"") == NULL)
		fail_msg("no delivery to alice/phone in the order read: %s", r.body);
	h_reply_free(&r);
	free(text);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_broker_crash_loses_no_alert, setup, teardown),
		cmocka_unit_test_setup_teardown(test_two_devices_one_offline, setup, teardown),
		cmocka_unit_test_setup_teardown(test_receipt_in_timeline, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

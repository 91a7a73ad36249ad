/*
 * An order whose progress was lost completes when supervision publishes
 * it again, even though the executor already walked it once.
 *
 * The progress is lost for real: order-service is killed while the
 * executor walks the order, and its broker session, which held the
 * executor's accepted and OrderReady for it (pizza/orders/accepted and
 * pizza/orders/ready, not retained), expires (1 s), as do the phone's
 * retained statuses (1 s), so when it comes back nothing says the order
 * moved.  Supervision publishes the OrderPlaced again (with a fresh event
 * id); the executor that finished the order must take it again.  Before,
 * executors dropped it as a duplicate by order id and the order never
 * completed (issue 14: with one executor, 0 of 49 until a restart).
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

static struct stack st;

static int
setup(void **state)
{
	(void)state;
	if (h_stack_start(&st, "republish") != 0 || h_observer(&st) != 0)
		return -1;
	if (h_service(&st, "order-service", "order-service", "--session-expiry", "1", "--accept-deadline-ms", "1500",
		"--ready-deadline", "3000", NULL) < 0 ||
	    h_service(&st, "notifier", "notifier", NULL) < 0 ||
	    h_service(&st, "exec-1", "order-executor", "--id", "exec-1", "--stage-ms", "0", "--status-expiry", "1", NULL) <
		0)
		return -1;
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	return h_stack_stop(&st);
}

static void
test_lost_statuses_are_walked_again(void **state)
{
	char id[NAME_MAX_LEN + 1];
	int64_t deadline;
	int64_t stage = -1;

	(void)state;
	/* the executor holds the OrderPlaced while order-service goes away */
	h_signal(&st, "exec-1", SIGSTOP);
	assert_int_equal(h_place(&st, "alice", "margherita", 1, "lost-1"), 0);
	assert_int_equal(h_wait_reply(&st, "lost-1", id, sizeof(id), 5000), 0);
	h_sleep(300); /* the OrderPlaced has left order-service's outbox */
	h_signal(&st, "order-service", SIGKILL);
	h_signal(&st, "exec-1", SIGCONT);
	/* walked to ready, once, while nobody supervises */
	assert_int_equal(h_wait_events(&st, id, EVENT_ORDER_STATUS, STATUS_READY, 1, 10000), 1);
	assert_int_equal(h_wait_events(&st, id, EVENT_PICKUP_ALERT, 0, 1, 10000), 1);
	h_sleep(2500); /* order-service's session (with the accepted and OrderReady) and the retained statuses expire */

	assert_int_equal(h_restart(&st, "order-service", SIGKILL), 0);
	assert_int_equal(h_wait_log(&st, "order-service", "order stalled; publishing it again", 1, 15000), 0);
	deadline = mono_ms() + 15000;
	while ((stage = h_sql_int(&st, "order-service", "SELECT stage FROM orders WHERE order_id = ?", id)) != STATUS_READY &&
	    mono_ms() < deadline)
		h_sleep(100);
	assert_int_equal(stage, STATUS_READY);
	/* walked a second time: a second ready for the phone and OrderReady for order-service, and still one alert */
	assert_true(h_count_events_on(&st, TOPIC_ALL_STATUS, id, EVENT_ORDER_STATUS, STATUS_READY) >= 2);
	assert_true(h_count_events_on(&st, TOPIC_READY, id, EVENT_ORDER_READY, STATUS_READY) >= 2);
	h_sleep(500);
	assert_int_equal(h_count_events(&st, id, EVENT_PICKUP_ALERT, 0), 1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_lost_statuses_are_walked_again, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

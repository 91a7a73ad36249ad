/*
 * order-service, order-history and the notifier all on ONE PostgreSQL
 * database, as `make run STORE=postgres` runs them (issue 16).  Their
 * tables share names (orders in all three, outbox in two): each service
 * keeps its own in its own schema (order_service, order_history, notifier),
 * created if absent, for its store's connections and its outbox's.  An
 * order placed over MQTT completes with exactly one pickup alert, is read
 * back from order-history, and every row is in its service's schema, none
 * in public.
 */
#include <setjmp.h>
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
static struct h_pg pg;
static char auth[600]; /* "Authorization: Bearer <history secret>" */

static int
setup(void **state)
{
	char path[700], *secret;

	(void)state;
	if (h_stack_start(&st, "pg-all") != 0 || h_observer(&st) != 0 || h_pg_start(&st, &pg) != 0)
		return -1;
	if (h_service(&st, "order-service", "order-service", "--db", pg.url, NULL) < 0 ||
	    h_service(&st, "exec-1", "order-executor", "--id", "exec-1", "--stage-ms", "20", NULL) < 0 ||
	    h_service(&st, "order-history", "order-history", "--db", pg.url, NULL) < 0 ||
	    h_service(&st, "notifier", "notifier", "--db", pg.url, NULL) < 0)
		return -1;
	snprintf(path, sizeof(path), "%s/secrets/history.secret", st.dir);
	if ((secret = file_read_small(path, 4096)) == NULL)
		return -1;
	secret[strcspn(secret, "\r\n")] = '\0';
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", secret);
	free(secret);
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	int rc = h_stack_stop(&st);
	h_pg_stop(&pg);
	return rc;
}

static int64_t
pg_count(const char *fmt, const char *arg)
{
	char sql[400];

	snprintf(sql, sizeof(sql), fmt, arg);
	return h_pg_int(&pg, sql);
}

/* Waits until order-history answers the order as ready with its five stages (accepted .. ready); 0, or -1. */
static int
history_ready(const char *id, int timeout_ms)
{
	const char *const headers[] = { auth, NULL };
	int64_t deadline = mono_ms() + timeout_ms;
	char url[300];

	snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/orders/%s", st.history_port, id);
	do {
		struct h_reply r;
		int done = 0;

		if (h_http("GET", url, headers, NULL, &r) == 200) {
			json_t *o = json_loads(r.body, 0, NULL);
			const char *status = json_string_value(json_object_get(o, "status"));
			done = status != NULL && strcmp(status, "ready") == 0 &&
			    json_array_size(json_object_get(o, "timeline")) == 5;
			json_decref(o);
		}
		h_reply_free(&r);
		if (done)
			return 0;
		h_sleep(50);
	} while (mono_ms() < deadline);
	return -1;
}

/* Two orders through the whole pipeline, every service on the one database. */
static void
test_one_database(void **state)
{
	char ids[2][NAME_MAX_LEN + 1];

	(void)state;
	assert_int_equal(h_place(&st, "alice", "margherita", 1, "pg-all-1"), 0);
	assert_int_equal(h_place(&st, "alice", "funghi", 2, "pg-all-2"), 0);
	assert_int_equal(h_wait_reply(&st, "pg-all-1", ids[0], sizeof(ids[0]), 10000), 0);
	assert_int_equal(h_wait_reply(&st, "pg-all-2", ids[1], sizeof(ids[1]), 10000), 0);
	for (int i = 0; i < 2; i++) {
		/* the phone: told once that its pizza is ready */
		assert_int_equal(h_wait_events(&st, ids[i], EVENT_PICKUP_ALERT, 0, 1, 15000), 1);
		/* the read API: the order and all its stages */
		assert_int_equal(history_ready(ids[i], 10000), 0);
		/* each service's rows in its own schema */
		assert_int_equal(pg_count("SELECT count(*) FROM order_service.orders WHERE order_id = '%.64s'", ids[i]), 1);
		assert_int_equal(pg_count("SELECT count(*) FROM order_history.orders WHERE order_id = '%.64s'", ids[i]), 1);
		/* the kitchen's four stages as the phone saw them (the read adds the accepted of the placement) */
		assert_int_equal(pg_count("SELECT count(*) FROM order_history.statuses WHERE order_id = '%.64s'", ids[i]), 4);
		assert_int_equal(pg_count("SELECT count(*) FROM notifier.alerts WHERE order_id = '%.64s'", ids[i]), 1);
	}
	for (int i = 0; i < 2; i++)
		assert_int_equal(h_count_events(&st, ids[i], EVENT_PICKUP_ALERT, 0), 1);
	/* nothing of ours in public, where the three would collide */
	assert_int_equal(h_pg_int(&pg, "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"), 0);
	/* both outboxes drained */
	for (int64_t deadline = mono_ms() + 3000;
	     h_pg_int(&pg, "SELECT (SELECT count(*) FROM order_service.outbox) + (SELECT count(*) FROM notifier.outbox)") != 0 &&
	     mono_ms() < deadline;)
		h_sleep(100);
	assert_int_equal(
	    h_pg_int(&pg, "SELECT (SELECT count(*) FROM order_service.outbox) + (SELECT count(*) FROM notifier.outbox)"), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_one_database),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}

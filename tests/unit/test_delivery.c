/*
 * Callback deliveries (notifier/delivery.h): the retry schedule
 * (exponential, capped, with equal jitter), the body, and the deliverer
 * working on a real store (notifier/store.h) in a temporary directory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <sqlite3.h>

#include "netcheck.h"
#include "notifier/delivery.h"
#include "notifier/store.h"
#include "util.h"

static const struct delivery_policy p = { 8, 1000, 60000, 5000 };

static void
test_doubles_from_base(void **state)
{
	(void)state;
	/* jitter 0 gives the lower edge: half the nominal wait */
	assert_int_equal(delivery_backoff_ms(&p, 1, 0.0), 500);
	assert_int_equal(delivery_backoff_ms(&p, 2, 0.0), 1000);
	assert_int_equal(delivery_backoff_ms(&p, 3, 0.0), 2000);
	assert_int_equal(delivery_backoff_ms(&p, 4, 0.0), 4000);
	/* jitter just under 1 gives just under the nominal wait */
	assert_in_range(delivery_backoff_ms(&p, 1, 0.999), 990, 999);
	assert_in_range(delivery_backoff_ms(&p, 3, 0.999), 3990, 3999);
}

static void
test_capped(void **state)
{
	(void)state;
	assert_int_equal(delivery_backoff_ms(&p, 7, 0.0), 30000);
	assert_int_equal(delivery_backoff_ms(&p, 8, 0.0), 30000);
	assert_int_equal(delivery_backoff_ms(&p, 60, 0.0), 30000); /* no overflow for absurd counts */
	assert_in_range(delivery_backoff_ms(&p, 60, 0.5), 30000, 60000);
}

static void
test_jitter_spreads_within_bounds(void **state)
{
	int64_t lo = INT64_MAX, hi = 0;

	(void)state;
	for (int i = 0; i < 100; i++) {
		int64_t d = delivery_backoff_ms(&p, 3, i / 100.0);
		assert_in_range(d, 2000, 3999);
		lo = d < lo ? d : lo;
		hi = d > hi ? d : hi;
	}
	assert_true(hi - lo > 1500); /* really spread, not a constant */
	/* out-of-range jitter is clamped, never outside the window */
	assert_in_range(delivery_backoff_ms(&p, 3, -5.0), 2000, 3999);
	assert_in_range(delivery_backoff_ms(&p, 3, 7.0), 2000, 3999);
}

static void
test_schedule_total_is_bounded(void **state)
{
	int64_t worst = 0;

	(void)state;
	/* 8 attempts = 7 waits: at most 1+2+4+8+16+32+60 s = 123 s before failing for good */
	for (int f = 1; f < p.max_attempts; f++)
		worst += delivery_backoff_ms(&p, f, 0.999999);
	assert_in_range(worst, 100000, 123000);
}

static void
ready(struct event *ev, const char *order)
{
	assert_int_equal(event_init(ev, EVENT_ORDER_STATUS, order, "alice"), 0);
	ev->at_ms = INT64_C(1769860801600); /* 2026-01-31T12:00:01.600Z */
	ev->status = STATUS_READY;
	ev->seq = 5;
}

/* The body a receiver gets: what happened to which order, when; nothing else. */
static void
test_body(void **state)
{
	struct event ev;
	json_t *o;
	char *body;

	(void)state;
	ready(&ev, "01KORDER000000000000000000");
	assert_non_null(body = delivery_body(&ev));
	assert_string_equal(body, "{\"type\":\"OrderReady\",\"order_id\":\"01KORDER000000000000000000\","
				  "\"user_id\":\"alice\",\"status\":\"ready\",\"at\":\"2026-01-31T12:00:01.600Z\"}");
	assert_non_null(o = json_loads(body, 0, NULL));
	assert_int_equal(json_object_size(o), 5);
	json_decref(o);
	free(body);
}

/* The first column of the first row of sql (one text parameter) on a second connection to path, or -1. */
static int64_t
sql_int(const char *path, const char *sql, const char *arg)
{
	sqlite3 *h = NULL;
	sqlite3_stmt *st = NULL;
	int64_t v = -1;

	if (sqlite3_open(path, &h) == SQLITE_OK && sqlite3_prepare_v2(h, sql, -1, &st, NULL) == SQLITE_OK) {
		sqlite3_bind_text(st, 1, arg, -1, SQLITE_TRANSIENT);
		if (sqlite3_step(st) == SQLITE_ROW)
			v = sqlite3_column_int64(st, 0);
	}
	sqlite3_finalize(st);
	sqlite3_close(h);
	return v;
}

/*
 * The deliverer takes a due delivery from the store and records its
 * outcome there: a loopback destination is refused at connect (no
 * allowlist), which fails the delivery at once, with the refusal as its
 * error and a CallbackDelivery queued for the order's timeline.
 */
static void
test_deliverer_records_refusal(void **state)
{
	static const struct delivery_policy quick = { 4, 100, 1000, 2000 };
	char dir[64], path[128], order[ID_LEN + 1], err[128], *body;
	struct allowlist *allow;
	struct notifier_store *s;
	struct deliverer *d;
	struct event ev;

	(void)state;
	str_copy(dir, sizeof(dir), "/tmp/pizza-test-delivery-XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/notifier.db", dir);
	assert_non_null(s = nstore_open(path, NULL, 10000));
	assert_non_null(allow = allowlist_parse(NULL, err, sizeof(err)));
	id_new(order);
	ready(&ev, order);
	assert_non_null(body = delivery_body(&ev));
	assert_int_equal(nstore_queue_alert(s, &(struct nstore_alert){ .order_id = order, .user_id = "alice",
		.event_id = "01KALERTEVENT0000000000000", .ready_ms = ev.at_ms,
		.msg = { "pizza/users/alice/alerts", "{}", 2, 1, 3600 }, .callback_url = "http://127.0.0.1:9/hook",
		.callback_body = body }), NSTORE_OK);
	free(body);

	assert_non_null(d = deliverer_start(s, &quick, "0123456789abcdef-test-secret", allow));
	for (int i = 0; i < 100 && sql_int(path, "SELECT count(*) FROM deliveries WHERE order_id = ? AND state = 'failed'",
	    order) != 1; i++)
		sleep_ms(50);
	deliverer_stop(d);
	assert_int_equal(sql_int(path, "SELECT count(*) FROM deliveries WHERE order_id = ? AND state = 'failed'", order), 1);
	assert_int_equal(sql_int(path, "SELECT attempts FROM deliveries WHERE order_id = ?", order), 1);
	assert_int_equal(sql_int(path, "SELECT last_error LIKE 'refused: destination 127.0.0.1 %' FROM deliveries "
				       "WHERE order_id = ?", order), 1);
	assert_int_equal(sql_int(path, "SELECT count(*) FROM outbox WHERE topic = ?", "pizza/orders/callbacks"), 1);
	assert_int_equal(sql_int(path, "SELECT instr(CAST(payload AS TEXT), '\"outcome\":\"failed\"') > 0 FROM outbox "
				       "WHERE topic = ?", "pizza/orders/callbacks"), 1);

	nstore_close(s);
	allowlist_free(allow);
	for (const char *const *sfx = (const char *const[]){ "", "-wal", "-shm", NULL }; *sfx != NULL; sfx++) {
		char file[160];

		snprintf(file, sizeof(file), "%s%s", path, *sfx);
		unlink(file);
	}
	rmdir(dir);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_doubles_from_base),
		cmocka_unit_test(test_capped),
		cmocka_unit_test(test_jitter_spreads_within_bounds),
		cmocka_unit_test(test_schedule_total_is_bounded),
		cmocka_unit_test(test_body),
		cmocka_unit_test(test_deliverer_records_refusal),
	};
	int rc;

	curl_global_init(CURL_GLOBAL_DEFAULT);
	rc = cmocka_run_group_tests_name("delivery", tests, NULL, NULL);
	curl_global_cleanup();
	return rc;
}

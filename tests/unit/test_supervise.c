/*
 * test_supervise.c - order supervision (order-service/supervise.h) on a
 * real store in a fresh temporary directory.  Supervision only adds to the
 * outbox and kicks it (the main loop publishes), so the outbox here has no
 * broker connection: what supervision would publish stays in the outbox
 * table, where the test counts it.
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

#include <sqlite3.h>

#include "event.h"
#include "metrics.h"
#include "order-service/store.h"
#include "order-service/supervise.h"
#include "outbox.h"
#include "util.h"
#include "tmpdb.h"

#define ACCEPT_MS 10000
#define READY_MS 60000

struct fixture {
	char dir[TMPDB_DIR_MAX];
	char path[TMPDB_PATH_MAX];
	struct order_store *s;
	struct outbox *ob;
	struct supervisor *sv;
};

static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (f == NULL)
		return -1;
	if (tmpdb_make(f->dir, f->path, "supervise", "order-service.db") != 0) {
		free(f);
		return -1;
	}
	if ((f->s = ostore_open(f->path)) == NULL || (f->ob = ostore_outbox_new(f->s, NULL, 10000)) == NULL ||
	    (f->sv = supervise_new(f->s, f->ob, ACCEPT_MS, READY_MS)) == NULL)
		return -1;
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;
	supervise_free(f->sv);
	outbox_free(f->ob);
	ostore_close(f->s);
	tmpdb_remove(f->dir, f->path);
	free(f);
	return 0;
}

/* Runs sql on the store's file from a connection of the test's own; returns the first column of its first row. */
static int64_t
sql_int(const struct fixture *f, const char *sql)
{
	return tmpdb_int(f->path, sql);
}

/* OrderPlaced events in the outbox: one per order recorded, plus one per republish. */
static int64_t
published(const struct fixture *f)
{
	return sql_int(f, "SELECT count(*) FROM outbox WHERE topic = 'pizza/orders/placed'");
}

/* The value of the unlabelled metric name, as GET /metrics shows it. */
static double
metric_value(const char *name)
{
	char *text = metrics_render(), key[128], *p;
	double v;

	assert_non_null(text);
	snprintf(key, sizeof(key), "\n%s ", name);
	p = strstr(text, key);
	assert_non_null(p);
	v = strtod(p + strlen(key), NULL);
	free(text);
	return v;
}

/* Records an order placed (and last progressed) at placed_ms; its id goes to id. */
static void
place(struct fixture *f, int64_t placed_ms, char id[ID_LEN + 1])
{
	char event[128];
	struct ostore_order o;

	id_new(id);
	snprintf(event, sizeof(event), "{\"type\":\"OrderPlaced\",\"order_id\":\"%s\"}", id);
	memset(&o, 0, sizeof(o));
	o.order_id = id;
	o.user_id = "alice";
	o.items = "[{\"sku\":\"funghi\",\"qty\":1}]";
	o.via = "mqtt";
	o.created_ms = placed_ms;
	o.event = event;
	assert_int_equal(ostore_record(f->s, &o, placed_ms), OSTORE_OK);
	assert_int_equal(o.result, OSTORE_OK);
}

/* An accepted status from worker, to sv. */
static enum ostore_result
accepted_by(struct supervisor *sv, const char *id, const char *worker)
{
	struct event ev;

	assert_int_equal(event_init(&ev, EVENT_ORDER_STATUS, id, "alice"), 0);
	ev.status = STATUS_ACCEPTED;
	ev.seq = (int)STATUS_ACCEPTED;
	snprintf(ev.worker, sizeof(ev.worker), "%s", worker);
	return supervise_progress(sv, &ev);
}

static enum ostore_result
progress(struct fixture *f, const char *id, enum order_status s)
{
	struct event ev;

	assert_int_equal(event_init(&ev, EVENT_ORDER_STATUS, id, "alice"), 0);
	ev.status = s;
	ev.seq = (int)s;
	return supervise_progress(f->sv, &ev);
}

static void
test_progress_results(void **state)
{
	struct fixture *f = *state;
	char id[ID_LEN + 1], unknown[ID_LEN + 1];
	double completed = metric_value("pizza_orders_completed_total");

	place(f, now_ms(), id);
	assert_int_equal(progress(f, id, STATUS_ACCEPTED), OSTORE_OK);
	assert_int_equal(progress(f, id, STATUS_ACCEPTED), OSTORE_DUP);
	assert_int_equal(progress(f, id, STATUS_READY), OSTORE_OK);
	assert_int_equal(progress(f, id, STATUS_OVEN), OSTORE_DUP);
	assert_int_equal(progress(f, id, STATUS_READY), OSTORE_DUP);
	/* counted once, however many copies of ready arrive */
	assert_true(metric_value("pizza_orders_completed_total") == completed + 1);
	id_new(unknown);
	assert_int_equal(progress(f, unknown, STATUS_ACCEPTED), OSTORE_NOT_FOUND);
}

static void
test_stalled_order_republished_once_per_deadline(void **state)
{
	struct fixture *f = *state;
	char id[ID_LEN + 1];
	int64_t t0 = now_ms();
	double before = metric_value("pizza_orders_republished_total");

	place(f, t0, id);
	assert_int_equal(published(f), 1);
	assert_int_equal(supervise_run(f->sv, t0 + ACCEPT_MS - 1), 0);
	assert_false(outbox_wait(f->ob, 0));
	assert_int_equal(supervise_run(f->sv, t0 + ACCEPT_MS + 1), 1);
	assert_int_equal(published(f), 2);
	/* the main loop is woken to publish it */
	assert_true(outbox_wait(f->ob, 0));
	/* its clock restarted: not again until another deadline has passed */
	assert_int_equal(supervise_run(f->sv, t0 + ACCEPT_MS + 2), 0);
	assert_int_equal(supervise_run(f->sv, t0 + 2 * ACCEPT_MS), 0);
	assert_int_equal(supervise_run(f->sv, t0 + 2 * ACCEPT_MS + 2), 1);
	assert_int_equal(published(f), 3);
	assert_true(metric_value("pizza_orders_republished_total") == before + 2);

	/* once accepted, the ready deadline applies; once ready, never again */
	assert_int_equal(progress(f, id, STATUS_ACCEPTED), OSTORE_OK);
	assert_int_equal(supervise_run(f->sv, now_ms() + READY_MS - 1000), 0);
	assert_int_equal(supervise_run(f->sv, now_ms() + READY_MS + 1000), 1);
	assert_int_equal(progress(f, id, STATUS_READY), OSTORE_OK);
	assert_int_equal(supervise_run(f->sv, now_ms() + 100 * READY_MS), 0);
	assert_int_equal(published(f), 4);
	assert_true(metric_value("pizza_orders_republished_total") == before + 3);
}

/* A pass the store could not commit republishes nothing and counts nothing. */
static void
test_failed_pass_counts_nothing(void **state)
{
	struct fixture *f = *state;
	char id[ID_LEN + 1];
	int64_t t0 = now_ms();
	double before = metric_value("pizza_orders_republished_total");

	place(f, t0, id);
	assert_int_equal(sql_int(f, "DROP TABLE outbox"), -1);
	assert_int_equal(supervise_run(f->sv, t0 + ACCEPT_MS + 1), -1);
	assert_true(metric_value("pizza_orders_republished_total") == before);
	assert_int_equal(sql_int(f, "SELECT republished FROM orders"), 0);
}

/* supervise_tick(): only on a connection up for SUPERVISE_SETTLE_MS, at most every SUPERVISE_EVERY_MS. */
static void
test_tick_waits_for_a_settled_connection(void **state)
{
	struct fixture *f = *state;
	char a[ID_LEN + 1], b[ID_LEN + 1];

	place(f, now_ms() - 2 * ACCEPT_MS, a);
	supervise_tick(f->sv, -1);
	supervise_tick(f->sv, SUPERVISE_SETTLE_MS - 1);
	assert_int_equal(published(f), 1);
	supervise_tick(f->sv, SUPERVISE_SETTLE_MS);
	assert_int_equal(published(f), 2);
	/* a second stalled order waits for the next pass */
	place(f, now_ms() - 2 * ACCEPT_MS, b);
	supervise_tick(f->sv, SUPERVISE_SETTLE_MS);
	assert_int_equal(published(f), 3);
	usleep((SUPERVISE_EVERY_MS + 50) * 1000);
	supervise_tick(f->sv, SUPERVISE_SETTLE_MS);
	assert_int_equal(published(f), 4);
}

/*
 * A flash sale: orders queued behind a backlog are not lost.  While the
 * executors are taking orders, one not accepted yet is published again only
 * once orders placed an accept deadline after it have been accepted; when
 * nothing has been accepted for an accept deadline, the deadline alone
 * counts again.
 */
static void
test_backlog_is_not_stalled(void **state)
{
	struct fixture *f = *state;
	char a[ID_LEN + 1], b[ID_LEN + 1], c[ID_LEN + 1], d[ID_LEN + 1];
	int64_t t0 = now_ms() - 3 * ACCEPT_MS, now;

	place(f, t0, a);
	place(f, t0 + ACCEPT_MS / 2, b);
	place(f, t0 + ACCEPT_MS + ACCEPT_MS / 5, c);
	place(f, t0 + ACCEPT_MS + ACCEPT_MS / 2 + 1, d);
	assert_int_equal(published(f), 4);
	/* all four are older than the deadline, but the kitchen is taking the oldest: a backlog */
	assert_int_equal(progress(f, a, STATUS_ACCEPTED), OSTORE_OK);
	now = now_ms();
	assert_int_equal(supervise_run(f->sv, now), 0);
	/* c, placed 0.7 deadlines after b, taken: b is still within a deadline of it */
	assert_int_equal(progress(f, c, STATUS_ACCEPTED), OSTORE_OK);
	assert_int_equal(supervise_run(f->sv, now), 0);
	/* d, placed more than a deadline after b, taken while b was not: b was lost */
	assert_int_equal(progress(f, d, STATUS_ACCEPTED), OSTORE_OK);
	assert_int_equal(supervise_run(f->sv, now), 1);
	assert_int_equal(published(f), 5);
	assert_int_equal(sql_int(f, "SELECT republished FROM orders WHERE stage = 0"), 1);
	/* nothing taken for a deadline: b's own deadline counts again, from its republish */
	assert_int_equal(supervise_run(f->sv, now + ACCEPT_MS + 1000), 1);
	assert_int_equal(published(f), 6);
}

/*
 * Two executors, one behind the other: an order not accepted is stalled
 * only once every executor taking orders has taken some placed a deadline
 * after it (it may be queued for the one behind); an executor silent for a
 * deadline (dead, or its share lost) no longer holds the others back.
 */
static void
test_slowest_executor_counts(void **state)
{
	enum { SHORT = 1000 };
	struct fixture *f = *state;
	struct supervisor *sv = supervise_new(f->s, f->ob, SHORT, READY_MS);
	char a[ID_LEN + 1], b[ID_LEN + 1], c[ID_LEN + 1], e[ID_LEN + 1];
	int64_t t0 = now_ms() - 10 * SHORT;

	assert_non_null(sv);
	place(f, t0, a);
	place(f, t0 + 1, b);
	place(f, t0 + 3 * SHORT, c);
	place(f, t0 + 4 * SHORT, e);
	assert_int_equal(accepted_by(sv, a, "exec-1"), OSTORE_OK);
	assert_int_equal(accepted_by(sv, c, "exec-2"), OSTORE_OK);
	/* b is older than the deadline, and exec-2 took c, placed long after it; but exec-1 may have it queued */
	assert_int_equal(supervise_run(sv, now_ms()), 0);
	/* exec-1 says nothing for a deadline while exec-2 goes on: b was lost */
	usleep((SHORT + 100) * 1000);
	assert_int_equal(accepted_by(sv, e, "exec-2"), OSTORE_OK);
	assert_int_equal(supervise_run(sv, now_ms()), 1);
	assert_int_equal(sql_int(f, "SELECT republished FROM orders WHERE stage = 0"), 1);
	supervise_free(sv);
}

/* While the intake holds OrderPlaced back (a flash sale) nobody can take them: no pass, and the wait does not count. */
static void
test_held_outbox_is_not_stalled(void **state)
{
	struct fixture *f = *state;
	char a[ID_LEN + 1];

	place(f, now_ms() - 2 * ACCEPT_MS, a);
	outbox_hold(f->ob, mono_ms() + 60000);
	assert_true(outbox_held(f->ob));
	supervise_tick(f->sv, SUPERVISE_SETTLE_MS);
	assert_int_equal(published(f), 1);
	/* released: the orders are being published now, so the accept deadline counts from here */
	outbox_hold(f->ob, 0);
	assert_false(outbox_held(f->ob));
	supervise_tick(f->sv, SUPERVISE_SETTLE_MS);
	assert_int_equal(published(f), 1);
	assert_int_equal(supervise_run(f->sv, now_ms() + ACCEPT_MS + 1000), 1);
	assert_int_equal(published(f), 2);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_progress_results, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stalled_order_republished_once_per_deadline, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failed_pass_counts_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tick_waits_for_a_settled_connection, setup, teardown),
		cmocka_unit_test_setup_teardown(test_backlog_is_not_stalled, setup, teardown),
		cmocka_unit_test_setup_teardown(test_slowest_executor_counts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_held_outbox_is_not_stalled, setup, teardown),
	};

	return cmocka_run_group_tests_name("supervise", tests, NULL, NULL);
}

/*
 * test_order_store.c - order-service's store (order-service/store.h)
 * against a real SQLite file in a fresh temporary directory.  What the
 * store wrote is read back through its API, and the outbox rows (what
 * would be published) with plain SQL on the same file.
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
#include "order-service/store.h"
#include "util.h"
#include "tmpdb.h"

#define T0 INT64_C(1769860800000) /* 2026-01-31T12:00:00.000Z */

struct fixture {
	char dir[TMPDB_DIR_MAX];
	char path[TMPDB_PATH_MAX];
	struct order_store *s;
};

static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (f == NULL)
		return -1;
	if (tmpdb_make(f->dir, f->path, "ostore", "order-service.db") != 0) {
		free(f);
		return -1;
	}
	if ((f->s = ostore_open(f->path)) == NULL) {
		rmdir(f->dir);
		free(f);
		return -1;
	}
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;
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

/* OrderPlaced events waiting in the outbox. */
static int64_t
outbox_rows(const struct fixture *f)
{
	return sql_int(f, "SELECT count(*) FROM outbox WHERE topic = 'pizza/orders/placed'");
}

/* An order to record, with a fresh id (or id when not NULL) and the optional key and request hash. */
struct order {
	char id[ID_LEN + 1];
	char event[1024];
	struct ostore_order o;
};

static void
order_init(struct order *x, const char *id, const char *key, const char *hash)
{
	memset(x, 0, sizeof(*x));
	if (id != NULL)
		str_copy(x->id, sizeof(x->id), id);
	else
		id_new(x->id);
	{
		/* a real OrderPlaced, as intake stores it */
		struct event ev;
		char *json;

		assert_int_equal(event_init(&ev, EVENT_ORDER_PLACED, x->id, "alice"), 0);
		ev.n_items = 1;
		str_copy(ev.items[0].sku, sizeof(ev.items[0].sku), "margherita");
		ev.items[0].qty = 1;
		assert_non_null(json = event_encode(&ev));
		assert_int_equal(str_copy(x->event, sizeof(x->event), json), 0);
		free(json);
	}
	x->o.order_id = x->id;
	x->o.user_id = "alice";
	x->o.items = "[{\"sku\":\"margherita\",\"qty\":1}]";
	x->o.callback_url = "";
	x->o.via = "http";
	x->o.created_ms = T0;
	x->o.event = x->event;
	x->o.idem_key = key;
	x->o.request_hash = hash;
}

/* Records one order at T0 and returns its result. */
static enum ostore_result
record(struct fixture *f, struct order *x)
{
	assert_int_equal(ostore_record(f->s, &x->o, T0), OSTORE_OK);
	return x->o.result;
}

static void
test_record_queues_the_order_placed(void **state)
{
	struct fixture *f = *state;
	struct order a, b;
	char taken[ID_LEN + 1];

	order_init(&a, NULL, NULL, NULL);
	order_init(&b, NULL, NULL, NULL);
	b.o.callback_url = "https://shop.example/hook";
	a.o.next = &b.o;
	assert_int_equal(ostore_record(f->s, &a.o, T0), OSTORE_OK);
	assert_int_equal(a.o.result, OSTORE_OK);
	assert_int_equal(b.o.result, OSTORE_OK);
	assert_int_equal(outbox_rows(f), 2);
	assert_int_equal(sql_int(f, "SELECT count(*) FROM orders WHERE callback_url = 'https://shop.example/hook'"), 1);
	/* the same order id twice: only that order fails, the other of its batch is kept (a savepoint each) */
	str_copy(taken, sizeof(taken), b.id);
	order_init(&a, NULL, NULL, NULL);
	order_init(&b, taken, NULL, NULL);
	a.o.next = &b.o;
	assert_int_equal(ostore_record(f->s, &a.o, T0), OSTORE_OK);
	assert_int_equal(a.o.result, OSTORE_OK);
	assert_int_equal(b.o.result, OSTORE_FAIL);
	assert_int_equal(outbox_rows(f), 3);
	assert_int_equal(sql_int(f, "SELECT count(*) FROM orders"), 3);
}

static void
test_idempotency_key_replays_or_conflicts(void **state)
{
	struct fixture *f = *state;
	struct order first, again, other, bob;

	order_init(&first, NULL, "key-1", "hash-a");
	assert_int_equal(record(f, &first), OSTORE_OK);
	/* the same request again: the first order, nothing new */
	order_init(&again, NULL, "key-1", "hash-a");
	assert_int_equal(record(f, &again), OSTORE_REPLAYED);
	assert_string_equal(again.o.replayed_order_id, first.id);
	/* the same key with another request */
	order_init(&other, NULL, "key-1", "hash-b");
	assert_int_equal(record(f, &other), OSTORE_CONFLICT);
	/* keys are per user */
	order_init(&bob, NULL, "key-1", "hash-b");
	bob.o.user_id = "bob";
	assert_int_equal(record(f, &bob), OSTORE_OK);
	assert_int_equal(outbox_rows(f), 2);
	assert_int_equal(sql_int(f, "SELECT count(*) FROM orders"), 2);
}

static void
test_key_repeated_within_a_batch_replays_the_first(void **state)
{
	struct fixture *f = *state;
	struct order a, b;

	order_init(&a, NULL, "key-2", "hash-a");
	order_init(&b, NULL, "key-2", "hash-a");
	a.o.next = &b.o;
	assert_int_equal(ostore_record(f->s, &a.o, T0), OSTORE_OK);
	assert_int_equal(a.o.result, OSTORE_OK);
	assert_int_equal(b.o.result, OSTORE_REPLAYED);
	assert_string_equal(b.o.replayed_order_id, a.id);
	assert_int_equal(outbox_rows(f), 1);
}

static void
test_expired_keys_are_forgotten(void **state)
{
	struct fixture *f = *state;
	struct order a, b;
	int n = -1;

	order_init(&a, NULL, "key-3", "hash-a");
	assert_int_equal(record(f, &a), OSTORE_OK);
	assert_int_equal(ostore_expire_keys(f->s, T0, &n), OSTORE_OK);
	assert_int_equal(n, 0); /* recorded at T0: not before T0 */
	assert_int_equal(ostore_expire_keys(f->s, T0 + 1, &n), OSTORE_OK);
	assert_int_equal(n, 1);
	/* forgotten: the key places a new order */
	order_init(&b, NULL, "key-3", "hash-a");
	assert_int_equal(record(f, &b), OSTORE_OK);
}

static void
test_progress_forward_duplicate_unknown(void **state)
{
	struct fixture *f = *state;
	struct order a;
	char unknown[ID_LEN + 1];
	int64_t created = 0;

	order_init(&a, NULL, NULL, NULL);
	a.o.created_ms = T0 - 5000;
	assert_int_equal(record(f, &a), OSTORE_OK);
	assert_int_equal(ostore_progress(f->s, a.id, STATUS_ACCEPTED, T0 + 1, &created), OSTORE_OK);
	assert_int_equal(created, T0 - 5000);
	assert_int_equal(ostore_progress(f->s, a.id, STATUS_ACCEPTED, T0 + 2, NULL), OSTORE_DUP);
	assert_int_equal(ostore_progress(f->s, a.id, STATUS_BAKE, T0 + 3, NULL), OSTORE_OK);
	/* never backwards: an earlier stage arriving late changes nothing */
	assert_int_equal(ostore_progress(f->s, a.id, STATUS_PREP, T0 + 4, NULL), OSTORE_DUP);
	assert_int_equal(sql_int(f, "SELECT stage * 100000 + progress_ms % 100000 FROM orders"),
	    STATUS_BAKE * 100000 + (T0 + 3) % 100000);
	id_new(unknown);
	assert_int_equal(ostore_progress(f->s, unknown, STATUS_ACCEPTED, T0, NULL), OSTORE_NOT_FOUND);
}

/* A database error is OSTORE_FAIL, never mistaken for OSTORE_NOT_FOUND. */
static void
test_failure_is_not_not_found(void **state)
{
	struct fixture *f = *state;
	struct order a;
	struct ostore_stalled out[4];
	size_t n = 99;

	order_init(&a, NULL, NULL, NULL);
	assert_int_equal(record(f, &a), OSTORE_OK);
	assert_int_equal(sql_int(f, "DROP TABLE orders"), -1);
	assert_int_equal(ostore_progress(f->s, a.id, STATUS_ACCEPTED, T0, NULL), OSTORE_FAIL);
	assert_int_equal(ostore_republish_stalled(f->s, T0 + 1, T0 + 1, T0 + 1, out, 4, &n), OSTORE_FAIL);
	assert_int_equal(n, 0);
	order_init(&a, NULL, NULL, NULL);
	assert_int_equal(ostore_record(f->s, &a.o, T0), OSTORE_OK);
	assert_int_equal(a.o.result, OSTORE_FAIL);
	assert_int_equal(outbox_rows(f), 1);
}

/*
 * A batch whose COMMIT fails answers every order "failed", a replay of a key
 * first seen in the same batch included: that order was rolled back with it.
 * The COMMIT is made to fail for real: a deferred foreign key, broken by a
 * trigger, is checked only then.
 */
static void
test_failed_commit_fails_the_whole_batch(void **state)
{
	struct fixture *f = *state;
	struct order a, b;

	sql_int(f, "CREATE TABLE parent (id INTEGER PRIMARY KEY)");
	sql_int(f, "CREATE TABLE child (pid INTEGER REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED)");
	sql_int(f, "CREATE TRIGGER break_commit AFTER INSERT ON orders BEGIN INSERT INTO child VALUES (42); END");
	order_init(&a, NULL, "key-9", "hash-a");
	order_init(&b, NULL, "key-9", "hash-a");
	a.o.next = &b.o;
	assert_int_equal(ostore_record(f->s, &a.o, T0), OSTORE_FAIL);
	assert_int_equal(a.o.result, OSTORE_FAIL);
	assert_int_equal(b.o.result, OSTORE_FAIL); /* not REPLAYED: a names an order that does not exist */
	assert_int_equal(sql_int(f, "SELECT count(*) FROM orders"), 0);
	assert_int_equal(outbox_rows(f), 0);
}

static void
test_republish_stalled(void **state)
{
	struct fixture *f = *state;
	struct order placed, accepted, ready;
	struct ostore_stalled out[8];
	size_t n;

	/* recorded at T0 (their first progress) */
	order_init(&placed, NULL, NULL, NULL);
	order_init(&accepted, NULL, NULL, NULL);
	order_init(&ready, NULL, NULL, NULL);
	placed.o.next = &accepted.o;
	accepted.o.next = &ready.o;
	assert_int_equal(ostore_record(f->s, &placed.o, T0), OSTORE_OK);
	assert_int_equal(ostore_progress(f->s, accepted.id, STATUS_ACCEPTED, T0 + 100, NULL), OSTORE_OK);
	assert_int_equal(ostore_progress(f->s, ready.id, STATUS_READY, T0 + 100, NULL), OSTORE_OK);
	assert_int_equal(outbox_rows(f), 3);

	/* deadlines not passed (progress strictly before them stalls) */
	assert_int_equal(ostore_republish_stalled(f->s, T0, T0 + 100, T0 + 500, out, 8, &n), OSTORE_OK);
	assert_int_equal(n, 0);
	/* the unaccepted order stalls first */
	assert_int_equal(ostore_republish_stalled(f->s, T0 + 1, T0 + 100, T0 + 500, out, 8, &n), OSTORE_OK);
	assert_int_equal(n, 1);
	assert_string_equal(out[0].order_id, placed.id);
	assert_int_equal(out[0].stage, 0);
	assert_int_equal(out[0].republished, 1);
	assert_int_equal(outbox_rows(f), 4);
	assert_int_equal(sql_int(f, "SELECT count(*) FROM outbox WHERE CAST(payload AS TEXT) LIKE '%\"OrderPlaced\"%'"), 4);
	{
		/* the same order and items again, in an event of its own (executors drop a repeated event id) */
		char sql[400];

		snprintf(sql, sizeof(sql),
		    "SELECT count(DISTINCT json_extract(CAST(payload AS TEXT), '$.event_id')) * 10 + "
		    "count(DISTINCT json_extract(CAST(payload AS TEXT), '$.items')) FROM outbox "
		    "WHERE json_extract(CAST(payload AS TEXT), '$.order_id') = '%s'",
		    placed.id);
		assert_int_equal(sql_int(f, sql), 2 * 10 + 1);
	}
	/* its clock restarted at T0 + 500; the accepted one stalls once its ready deadline passes */
	assert_int_equal(ostore_republish_stalled(f->s, T0 + 500, T0 + 101, T0 + 600, out, 8, &n), OSTORE_OK);
	assert_int_equal(n, 1);
	assert_string_equal(out[0].order_id, accepted.id);
	assert_int_equal(out[0].stage, STATUS_ACCEPTED);
	/* both again, much later; the ready one never */
	assert_int_equal(ostore_republish_stalled(f->s, T0 + 10000, T0 + 10000, T0 + 10000, out, 8, &n), OSTORE_OK);
	assert_int_equal(n, 2);
	for (size_t i = 0; i < n; i++) {
		assert_string_not_equal(out[i].order_id, ready.id);
		assert_int_equal(out[i].republished, 2);
	}
	/* at most max per call */
	assert_int_equal(ostore_republish_stalled(f->s, T0 + 20000, T0 + 20000, T0 + 20000, out, 1, &n), OSTORE_OK);
	assert_int_equal(n, 1);
	assert_int_equal(outbox_rows(f), 3 + 1 + 1 + 2 + 1);
}

static void
test_reopen_keeps_orders(void **state)
{
	struct fixture *f = *state;
	struct order a;

	order_init(&a, NULL, "key-4", "hash-a");
	assert_int_equal(record(f, &a), OSTORE_OK);
	ostore_close(f->s);
	assert_non_null(f->s = ostore_open(f->path));
	assert_int_equal(ostore_progress(f->s, a.id, STATUS_ACCEPTED, T0 + 1, NULL), OSTORE_OK);
	order_init(&a, NULL, "key-4", "hash-a");
	assert_int_equal(record(f, &a), OSTORE_REPLAYED);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_record_queues_the_order_placed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_idempotency_key_replays_or_conflicts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_key_repeated_within_a_batch_replays_the_first, setup, teardown),
		cmocka_unit_test_setup_teardown(test_expired_keys_are_forgotten, setup, teardown),
		cmocka_unit_test_setup_teardown(test_progress_forward_duplicate_unknown, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failure_is_not_not_found, setup, teardown),
		cmocka_unit_test_setup_teardown(test_republish_stalled, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failed_commit_fails_the_whole_batch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reopen_keeps_orders, setup, teardown),
	};

	return cmocka_run_group_tests_name("order_store", tests, NULL, NULL);
}

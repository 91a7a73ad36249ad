/*
 * test_history_store.c - order-history's store (order-history/store.h)
 * against a real SQLite file in a fresh temporary directory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "order-history/store.h"
#include "util.h"
#include "tmpdb.h"

#define T0 INT64_C(1769860800000) /* 2026-01-31T12:00:00.000Z */

/* hstore_order() as an object or NULL when not found; a failure fails the test. */
static json_t *
order_of(struct history_store *h, const char *id)
{
	json_t *o;
	enum hstore_result rc = hstore_order(h, id, &o);

	if (rc == HSTORE_NOT_FOUND)
		return NULL;
	assert_int_equal(rc, HSTORE_OK);
	assert_non_null(o);
	return o;
}

/* hstore_user_orders(), which must succeed. */
static json_t *
orders_of(struct history_store *h, const char *user, int limit, const char *before)
{
	json_t *arr;

	assert_int_equal(hstore_user_orders(h, user, limit, before, &arr), HSTORE_OK);
	assert_non_null(arr);
	return arr;
}

struct fixture {
	char dir[TMPDB_DIR_MAX];
	char path[TMPDB_PATH_MAX];
	struct history_store *h;
};

static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (f == NULL)
		return -1;
	if (tmpdb_make(f->dir, f->path, "history", "history.db") != 0) {
		free(f);
		return -1;
	}
	if ((f->h = hstore_open(f->path)) == NULL) {
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
	hstore_close(f->h);
	tmpdb_remove(f->dir, f->path);
	free(f);
	return 0;
}

static void
placed(struct event *ev, const char *order, const char *user, int64_t at)
{
	assert_int_equal(event_init(ev, EVENT_ORDER_PLACED, order, user), 0);
	ev->at_ms = at;
	ev->n_items = 2;
	str_copy(ev->items[0].sku, sizeof(ev->items[0].sku), "margherita");
	ev->items[0].qty = 2;
	str_copy(ev->items[1].sku, sizeof(ev->items[1].sku), "hawaii");
	ev->items[1].qty = 1;
}

static void
status(struct event *ev, const char *order, const char *user, enum order_status s, int64_t at,
    const char *worker)
{
	assert_int_equal(event_init(ev, EVENT_ORDER_STATUS, order, user), 0);
	ev->at_ms = at;
	ev->status = s;
	ev->seq = (int)s;
	str_copy(ev->worker, sizeof(ev->worker), worker);
}

static enum hstore_result
apply_placed(struct history_store *h, const char *order, const char *user, int64_t at)
{
	struct event ev;

	placed(&ev, order, user, at);
	return hstore_apply(h, &ev);
}

static enum hstore_result
apply_status(struct history_store *h, const char *order, const char *user, enum order_status s, int64_t at,
    const char *worker)
{
	struct event ev;

	status(&ev, order, user, s, at, worker);
	return hstore_apply(h, &ev);
}

static const char *
str_member(const json_t *o, const char *key)
{
	const json_t *v = json_object_get(o, key);

	if (!json_is_string(v))
		fail_msg("member '%s' is not a string", key);
	return json_string_value(v);
}

/* e is the timeline's first entry for an order placed at placed_ms: order-service accepted it then. */
static void
assert_accepted_at(const json_t *e, int64_t placed_ms)
{
	char at[32];

	assert_non_null(e);
	assert_string_equal(str_member(e, "status"), "accepted");
	assert_true(json_is_integer(json_object_get(e, "seq")));
	assert_int_equal(json_integer_value(json_object_get(e, "seq")), 1);
	assert_string_equal(str_member(e, "at"), time_rfc3339(placed_ms, at, sizeof(at)));
	assert_string_equal(str_member(e, "worker"), "order-service");
	assert_int_equal(json_object_size(e), 4);
}

static void
assert_counts(struct history_store *h, int64_t orders, int64_t statuses)
{
	assert_true(hstore_count(h, HSTORE_ORDERS) == orders);
	assert_true(hstore_count(h, HSTORE_STATUSES) == statuses);
}

/* ---- tests ---------------------------------------------------------------- */

static void
test_empty(void **state)
{
	struct fixture *f = *state;
	json_t *arr;

	assert_counts(f->h, 0, 0);
	assert_null(order_of(f->h, "nope"));
	arr = orders_of(f->h, "alice", 10, NULL);
	assert_non_null(arr);
	assert_int_equal(json_array_size(arr), 0);
	json_decref(arr);
}

static void
test_apply_and_duplicates(void **state)
{
	struct fixture *f = *state;
	struct event ev;
	json_t *o;

	assert_int_equal(apply_placed(f->h, "ord-1", "alice", T0), HSTORE_OK);
	assert_counts(f->h, 1, 0);
	/* the same OrderPlaced redelivered, or republished with a new event_id */
	placed(&ev, "ord-1", "alice", T0 + 5);
	assert_int_equal(hstore_apply(f->h, &ev), HSTORE_DUP);
	assert_int_equal(hstore_apply(f->h, &ev), HSTORE_DUP);
	assert_counts(f->h, 1, 0);

	assert_int_equal(apply_status(f->h, "ord-1", "alice", STATUS_PREP, T0 + 10, "exec-1"), HSTORE_OK);
	assert_counts(f->h, 1, 1);
	/* redelivered with a new event_id (as a restarted executor would republish) */
	status(&ev, "ord-1", "alice", STATUS_PREP, T0 + 10, "exec-1");
	assert_int_equal(hstore_apply(f->h, &ev), HSTORE_DUP);
	assert_int_equal(hstore_apply(f->h, &ev), HSTORE_DUP);
	/* another event_id, another worker and time for the same (order, seq): still a duplicate */
	assert_int_equal(apply_status(f->h, "ord-1", "alice", STATUS_PREP, T0 + 99, "exec-2"), HSTORE_DUP);
	assert_counts(f->h, 1, 1);

	/* the first one is what is kept */
	o = order_of(f->h, "ord-1");
	assert_non_null(o);
	assert_string_equal(str_member(o, "placed_at"), "2026-01-31T12:00:00.000Z");
	assert_int_equal(json_array_size(json_object_get(o, "timeline")), 2);
	assert_accepted_at(json_array_get(json_object_get(o, "timeline"), 0), T0);
	assert_string_equal(str_member(json_array_get(json_object_get(o, "timeline"), 1), "worker"), "exec-1");
	assert_string_equal(str_member(json_array_get(json_object_get(o, "timeline"), 1), "at"),
	    "2026-01-31T12:00:00.010Z");
	json_decref(o);

	/* a different seq of the same order is new */
	assert_int_equal(apply_status(f->h, "ord-1", "alice", STATUS_BAKE, T0 + 20, "exec-1"), HSTORE_OK);
	assert_counts(f->h, 1, 2);
}

static void
test_other_types_refused(void **state)
{
	struct fixture *f = *state;
	struct event ev;

	assert_int_equal(event_init(&ev, EVENT_PICKUP_ALERT, "ord-1", "alice"), 0);
	str_copy(ev.message, sizeof(ev.message), "ready");
	assert_int_equal(hstore_apply(f->h, &ev), HSTORE_FAIL);
	assert_counts(f->h, 0, 0);
	assert_null(order_of(f->h, "ord-1"));
}

/*
 * The order as GET /v1/orders/{id} shows it.  Its timeline starts with
 * "accepted" at placed_at by order-service (the reply or the 202 said so
 * then; executors tell only order-service), then the stages the phone saw.
 */
static void
test_order_json(void **state)
{
	struct fixture *f = *state;
	json_t *o, *items, *tl;
	static const char *const want_status[] = { "accepted", "prep", "bake", "oven" };
	static const char *const want_worker[] = { "order-service", "exec-1", "exec-2", "exec-2" };

	assert_int_equal(apply_placed(f->h, "ord-1", "alice", T0), HSTORE_OK);
	/* placed, no stage yet: accepted, as the reply said */
	o = order_of(f->h, "ord-1");
	assert_non_null(o);
	assert_string_equal(str_member(o, "status"), "accepted");
	assert_true(json_is_array(json_object_get(o, "timeline")));
	assert_int_equal(json_array_size(json_object_get(o, "timeline")), 1);
	assert_accepted_at(json_array_get(json_object_get(o, "timeline"), 0), T0);
	json_decref(o);

	/* statuses arriving out of order */
	assert_int_equal(apply_status(f->h, "ord-1", "alice", STATUS_BAKE, T0 + 2000, "exec-2"), HSTORE_OK);
	assert_int_equal(apply_status(f->h, "ord-1", "alice", STATUS_OVEN, T0 + 3000, "exec-2"), HSTORE_OK);
	assert_int_equal(apply_status(f->h, "ord-1", "alice", STATUS_PREP, T0 + 1000, "exec-1"), HSTORE_OK);

	o = order_of(f->h, "ord-1");
	assert_non_null(o);
	assert_string_equal(str_member(o, "order_id"), "ord-1");
	assert_string_equal(str_member(o, "user_id"), "alice");
	assert_string_equal(str_member(o, "placed_at"), "2026-01-31T12:00:00.000Z");
	assert_string_equal(str_member(o, "status"), "oven");

	items = json_object_get(o, "items");
	assert_true(json_is_array(items));
	assert_int_equal(json_array_size(items), 2);
	assert_string_equal(str_member(json_array_get(items, 0), "sku"), "margherita");
	assert_int_equal(json_integer_value(json_object_get(json_array_get(items, 0), "qty")), 2);
	assert_string_equal(str_member(json_array_get(items, 1), "sku"), "hawaii");
	assert_int_equal(json_integer_value(json_object_get(json_array_get(items, 1), "qty")), 1);

	tl = json_object_get(o, "timeline");
	assert_true(json_is_array(tl));
	assert_int_equal(json_array_size(tl), 4);
	for (size_t i = 0; i < 4; i++) {
		const json_t *e = json_array_get(tl, i);
		char at[32];
		int64_t ms;

		assert_string_equal(str_member(e, "status"), want_status[i]);
		assert_int_equal(json_integer_value(json_object_get(e, "seq")), i + 1);
		assert_string_equal(str_member(e, "worker"), want_worker[i]);
		assert_int_equal(time_parse_rfc3339(str_member(e, "at"), &ms), 0);
		assert_true(ms == T0 + 1000 * (int64_t)i);
		assert_string_equal(str_member(e, "at"), time_rfc3339(T0 + 1000 * (int64_t)i, at, sizeof(at)));
	}
	json_decref(o);

	/* ready: every stage, five entries */
	assert_int_equal(apply_status(f->h, "ord-1", "alice", STATUS_READY, T0 + 4000, "exec-2"), HSTORE_OK);
	o = order_of(f->h, "ord-1");
	assert_string_equal(str_member(o, "status"), "ready");
	tl = json_object_get(o, "timeline");
	assert_int_equal(json_array_size(tl), 5);
	assert_accepted_at(json_array_get(tl, 0), T0);
	assert_string_equal(str_member(json_array_get(tl, 4), "status"), "ready");
	assert_int_equal(json_integer_value(json_object_get(json_array_get(tl, 4), "seq")), 5);
	json_decref(o);
	assert_counts(f->h, 1, 4);

	assert_null(order_of(f->h, "ord-2"));
}

/*
 * An executor's own accepted, stored before executors stopped publishing
 * it on the phone's topic: the timeline has its accepted entry from the
 * placement already, so the stored one is not shown again.
 */
static void
test_stored_accepted_not_shown_twice(void **state)
{
	struct fixture *f = *state;
	json_t *o, *tl;

	assert_int_equal(apply_placed(f->h, "ord-1", "alice", T0), HSTORE_OK);
	assert_int_equal(apply_status(f->h, "ord-1", "alice", STATUS_ACCEPTED, T0 + 30, "exec-1"), HSTORE_OK);
	assert_int_equal(apply_status(f->h, "ord-1", "alice", STATUS_PREP, T0 + 400, "exec-1"), HSTORE_OK);
	assert_counts(f->h, 1, 2);
	o = order_of(f->h, "ord-1");
	assert_non_null(o);
	assert_string_equal(str_member(o, "status"), "prep");
	tl = json_object_get(o, "timeline");
	assert_int_equal(json_array_size(tl), 2);
	assert_accepted_at(json_array_get(tl, 0), T0);
	assert_string_equal(str_member(json_array_get(tl, 1), "status"), "prep");
	assert_string_equal(str_member(json_array_get(tl, 1), "worker"), "exec-1");
	json_decref(o);

	/* the same with nothing after it: still one accepted, and the order reads accepted */
	assert_int_equal(apply_placed(f->h, "ord-2", "alice", T0 + 5), HSTORE_OK);
	assert_int_equal(apply_status(f->h, "ord-2", "alice", STATUS_ACCEPTED, T0 + 30, "exec-1"), HSTORE_OK);
	o = order_of(f->h, "ord-2");
	assert_non_null(o);
	assert_string_equal(str_member(o, "status"), "accepted");
	assert_int_equal(json_array_size(json_object_get(o, "timeline")), 1);
	assert_accepted_at(json_array_get(json_object_get(o, "timeline"), 0), T0 + 5);
	json_decref(o);
}

/*
 * An order known only from its statuses (its OrderPlaced not stored yet)
 * has no placement to date an accepted entry: the timeline is what the
 * statuses say.  The late OrderPlaced adds the accepted entry in front.
 */
static void
test_status_before_placed(void **state)
{
	struct fixture *f = *state;
	json_t *o, *tl;

	assert_int_equal(apply_status(f->h, "ord-9", "bob", STATUS_PREP, T0 + 100, "exec-1"), HSTORE_OK);
	assert_counts(f->h, 0, 1);
	o = order_of(f->h, "ord-9");
	assert_non_null(o);
	assert_string_equal(str_member(o, "order_id"), "ord-9");
	assert_string_equal(str_member(o, "user_id"), "bob");
	assert_true(json_is_null(json_object_get(o, "items")));
	assert_true(json_is_null(json_object_get(o, "placed_at")));
	assert_string_equal(str_member(o, "status"), "prep");
	tl = json_object_get(o, "timeline");
	assert_int_equal(json_array_size(tl), 1);
	assert_string_equal(str_member(json_array_get(tl, 0), "status"), "prep");
	assert_string_equal(str_member(json_array_get(tl, 0), "worker"), "exec-1");
	json_decref(o);

	/* an executor's stored accepted (older data) is shown when it is the only accepted there is */
	assert_int_equal(apply_status(f->h, "ord-8", "bob", STATUS_ACCEPTED, T0 + 50, "exec-2"), HSTORE_OK);
	o = order_of(f->h, "ord-8");
	assert_non_null(o);
	assert_string_equal(str_member(o, "status"), "accepted");
	tl = json_object_get(o, "timeline");
	assert_int_equal(json_array_size(tl), 1);
	assert_string_equal(str_member(json_array_get(tl, 0), "worker"), "exec-2");
	assert_string_equal(str_member(json_array_get(tl, 0), "at"), "2026-01-31T12:00:00.050Z");
	json_decref(o);

	/* the late OrderPlaced joins it */
	assert_int_equal(apply_placed(f->h, "ord-9", "bob", T0), HSTORE_OK);
	assert_counts(f->h, 1, 2);
	o = order_of(f->h, "ord-9");
	assert_non_null(o);
	assert_string_equal(str_member(o, "user_id"), "bob");
	assert_int_equal(json_array_size(json_object_get(o, "items")), 2);
	assert_string_equal(str_member(o, "placed_at"), "2026-01-31T12:00:00.000Z");
	assert_string_equal(str_member(o, "status"), "prep");
	tl = json_object_get(o, "timeline");
	assert_int_equal(json_array_size(tl), 2);
	assert_accepted_at(json_array_get(tl, 0), T0);
	assert_string_equal(str_member(json_array_get(tl, 1), "status"), "prep");
	json_decref(o);
}

static void
expect_ids(json_t *arr, char ids[][ID_LEN + 1], const int *want, size_t n)
{
	assert_non_null(arr);
	assert_true(json_is_array(arr));
	if (json_array_size(arr) != n)
		fail_msg("got %zu orders, expected %zu", json_array_size(arr), n);
	for (size_t i = 0; i < n; i++) {
		const json_t *o = json_array_get(arr, i);

		assert_string_equal(str_member(o, "order_id"), ids[want[i]]);
		assert_string_equal(str_member(o, "user_id"), "alice");
		assert_true(json_is_array(json_object_get(o, "timeline")));
	}
	json_decref(arr);
}

static void
test_user_orders(void **state)
{
	struct fixture *f = *state;
	char ids[5][ID_LEN + 1], other[2][ID_LEN + 1];
	static const int all[] = { 4, 3, 2, 1, 0 };
	static const int page1[] = { 4, 3 }, page2[] = { 2, 1 }, page3[] = { 0 };
	json_t *arr;

	/* ids from id_new() sort by time: a few ms apart so each is newer than the last */
	for (int i = 0; i < 5; i++) {
		id_new(ids[i]);
		sleep_ms(2);
		if (i < 2) {
			id_new(other[i]);
			sleep_ms(2);
		}
	}
	/* stored in scrambled order */
	static const int order[] = { 2, 0, 4, 1, 3 };
	for (int k = 0; k < 5; k++)
		assert_int_equal(apply_placed(f->h, ids[order[k]], "alice", T0 + order[k]), HSTORE_OK);
	for (int i = 0; i < 2; i++)
		assert_int_equal(apply_placed(f->h, other[i], "bob", T0), HSTORE_OK);
	assert_int_equal(apply_status(f->h, ids[4], "alice", STATUS_PREP, T0 + 50, "exec-1"), HSTORE_OK);

	/* newest first, only alice's */
	arr = orders_of(f->h, "alice", 10, NULL);
	assert_string_equal(str_member(json_array_get(arr, 0), "status"), "prep");
	assert_string_equal(str_member(json_array_get(arr, 1), "status"), "accepted");
	expect_ids(arr, ids, all, 5);

	/* limit and paging with before */
	expect_ids(orders_of(f->h, "alice", 2, NULL), ids, page1, 2);
	expect_ids(orders_of(f->h, "alice", 2, ids[3]), ids, page2, 2);
	expect_ids(orders_of(f->h, "alice", 2, ids[1]), ids, page3, 1);
	expect_ids(orders_of(f->h, "alice", 2, ids[0]), ids, NULL, 0);
	expect_ids(orders_of(f->h, "alice", 5, NULL), ids, all, 5);
	expect_ids(orders_of(f->h, "alice", 0, NULL), ids, NULL, 0);

	/* bob sees his two, newest first */
	arr = orders_of(f->h, "bob", 10, NULL);
	assert_non_null(arr);
	assert_int_equal(json_array_size(arr), 2);
	assert_string_equal(str_member(json_array_get(arr, 0), "order_id"), other[1]);
	assert_string_equal(str_member(json_array_get(arr, 1), "order_id"), other[0]);
	assert_string_equal(str_member(json_array_get(arr, 0), "user_id"), "bob");
	json_decref(arr);

	arr = orders_of(f->h, "carol", 10, NULL);
	assert_non_null(arr);
	assert_int_equal(json_array_size(arr), 0);
	json_decref(arr);
}

static enum hstore_result
apply_callback(struct history_store *h, const char *order, enum delivery_outcome outcome, int attempts, const char *detail,
    int64_t at)
{
	struct event ev;

	assert_int_equal(event_init(&ev, EVENT_CALLBACK_DELIVERY, order, "alice"), 0);
	ev.at_ms = at;
	str_copy(ev.delivery_id, sizeof(ev.delivery_id), "dlv-1");
	ev.outcome = outcome;
	ev.attempts = attempts;
	str_copy(ev.message, sizeof(ev.message), detail);
	return hstore_apply(h, &ev);
}

static void
test_callback_outcome(void **state)
{
	struct fixture *f = *state;
	json_t *o, *tl, *cb, *last;

	assert_int_equal(apply_placed(f->h, "ord-1", "alice", T0), HSTORE_OK);
	assert_int_equal(apply_status(f->h, "ord-1", "alice", STATUS_READY, T0 + 5000, "exec-1"), HSTORE_OK);
	o = order_of(f->h, "ord-1");
	assert_null(json_object_get(o, "callback")); /* none yet */
	json_decref(o);

	assert_int_equal(apply_callback(f->h, "ord-1", DELIVERY_FAILED, 8, "HTTP 503", T0 + 9000), HSTORE_OK);
	/* once per order, whatever comes later */
	assert_int_equal(apply_callback(f->h, "ord-1", DELIVERY_DELIVERED, 1, "", T0 + 9500), HSTORE_DUP);
	assert_counts(f->h, 1, 1);

	o = order_of(f->h, "ord-1");
	assert_non_null(o);
	/* the stage is still the order's status; the callback comes after the stages */
	assert_string_equal(str_member(o, "status"), "ready");
	tl = json_object_get(o, "timeline");
	assert_int_equal(json_array_size(tl), 3);
	assert_accepted_at(json_array_get(tl, 0), T0);
	assert_string_equal(str_member(json_array_get(tl, 1), "status"), "ready");
	last = json_array_get(tl, 2);
	assert_string_equal(str_member(last, "status"), "callback_failed");
	assert_string_equal(str_member(last, "at"), "2026-01-31T12:00:09.000Z");
	assert_int_equal(json_integer_value(json_object_get(last, "attempts")), 8);
	assert_string_equal(str_member(last, "detail"), "HTTP 503");
	assert_string_equal(str_member(last, "delivery_id"), "dlv-1");
	cb = json_object_get(o, "callback");
	assert_true(json_is_object(cb));
	assert_string_equal(str_member(cb, "outcome"), "failed");
	assert_int_equal(json_integer_value(json_object_get(cb, "attempts")), 8);
	assert_string_equal(str_member(cb, "detail"), "HTTP 503");
	json_decref(o);
}

static void
test_survives_reopen(void **state)
{
	struct fixture *f = *state;
	json_t *before, *after;

	assert_int_equal(apply_placed(f->h, "ord-1", "alice", T0), HSTORE_OK);
	assert_int_equal(apply_status(f->h, "ord-1", "alice", STATUS_ACCEPTED, T0 + 1, "exec-1"), HSTORE_OK);
	assert_int_equal(apply_status(f->h, "ord-1", "alice", STATUS_PREP, T0 + 2, "exec-1"), HSTORE_OK);
	before = order_of(f->h, "ord-1");
	assert_non_null(before);

	hstore_close(f->h);
	f->h = hstore_open(f->path);
	assert_non_null(f->h);

	assert_counts(f->h, 1, 2);
	after = order_of(f->h, "ord-1");
	assert_non_null(after);
	assert_true(json_equal(before, after));
	/* and it still deduplicates across the restart */
	assert_int_equal(apply_placed(f->h, "ord-1", "alice", T0), HSTORE_DUP);
	assert_int_equal(apply_status(f->h, "ord-1", "alice", STATUS_PREP, T0 + 2, "exec-9"), HSTORE_DUP);
	assert_counts(f->h, 1, 2);
	json_decref(before);
	json_decref(after);
}

/* A broken store answers "failed", never "not found" (order-history turns one into 503, the other into 404). */
static void
test_failure_is_not_not_found(void **state)
{
	struct fixture *f = *state;
	sqlite3 *other;
	json_t *o = NULL;

	assert_int_equal(apply_placed(f->h, "ord-1", "alice", T0), HSTORE_OK);
	/* another connection breaks the file under the store: a real database error, not a stub */
	assert_int_equal(sqlite3_open(f->path, &other), SQLITE_OK);
	assert_int_equal(sqlite3_exec(other, "DROP TABLE statuses", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(other);
	assert_int_equal(hstore_order(f->h, "ord-1", &o), HSTORE_FAIL);
	assert_null(o);
	assert_int_equal(hstore_order(f->h, "nope", &o), HSTORE_FAIL);
	assert_int_equal(hstore_user_orders(f->h, "alice", 10, NULL, &o), HSTORE_FAIL);
	assert_null(o);
	assert_int_equal(apply_status(f->h, "ord-1", "alice", STATUS_ACCEPTED, T0 + 10, "exec-1"), HSTORE_FAIL);
}

/* Receipts: the first per (order, device) stands; shown in order of arrival; another user's never. */
static void
test_receipts(void **state)
{
	struct fixture *f = *state;
	json_t *o, *tl, *dl, *e;

	assert_int_equal(apply_placed(f->h, "ord-1", "carol", T0), HSTORE_OK);
	assert_int_equal(apply_status(f->h, "ord-1", "carol", STATUS_READY, T0 + 2000, "exec-1"), HSTORE_OK);
	o = order_of(f->h, "ord-1");
	assert_int_equal(json_array_size(json_object_get(o, "deliveries")), 0); /* none yet, but the field is there */
	json_decref(o);

	assert_int_equal(hstore_receipt(f->h, "carol", "tablet", "evt-1", "ord-1", T0 + 9000), HSTORE_OK);
	assert_int_equal(hstore_receipt(f->h, "carol", "phone", "evt-1", "ord-1", T0 + 3000), HSTORE_OK);
	assert_int_equal(hstore_receipt(f->h, "carol", "phone", "evt-1", "ord-1", T0 + 4000), HSTORE_DUP);
	/* a receipt sent by another user naming carol's order shows nowhere */
	assert_int_equal(hstore_receipt(f->h, "mallory", "laptop", "evt-1", "ord-1", T0 + 3500), HSTORE_OK);

	o = order_of(f->h, "ord-1");
	assert_string_equal(str_member(o, "status"), "ready");
	dl = json_object_get(o, "deliveries");
	assert_int_equal(json_array_size(dl), 2);
	assert_string_equal(str_member(json_array_get(dl, 0), "device"), "phone");
	assert_string_equal(str_member(json_array_get(dl, 0), "delivered_at"), "2026-01-31T12:00:03.000Z");
	assert_string_equal(str_member(json_array_get(dl, 1), "device"), "tablet");
	tl = json_object_get(o, "timeline");
	assert_int_equal(json_array_size(tl), 4);
	assert_accepted_at(json_array_get(tl, 0), T0);
	assert_string_equal(str_member(json_array_get(tl, 1), "status"), "ready");
	e = json_array_get(tl, 2);
	assert_string_equal(str_member(e, "status"), "delivered");
	assert_string_equal(str_member(e, "at"), "2026-01-31T12:00:03.000Z");
	assert_string_equal(str_member(e, "device"), "phone");
	assert_string_equal(str_member(e, "detail"), "delivered to carol/phone");
	assert_string_equal(str_member(json_array_get(tl, 3), "detail"), "delivered to carol/tablet");
	json_decref(o);
}

/* What --db may be: a URL of another scheme or nothing is refused; a PostgreSQL URL is logged without its password. */
static void
test_targets(void **state)
{
	char buf[256];

	(void)state;
	assert_null(hstore_open("mysql://history@127.0.0.1/pizza"));
	assert_null(hstore_open(""));
	assert_string_equal(hstore_label("postgresql://history:s3cret@db.example:5433/pizza?sslmode=require", buf,
				sizeof(buf)),
	    "postgresql://history@db.example:5433/pizza");
	assert_string_equal(hstore_label("postgres://db.example/pizza?password=s3cret", buf, sizeof(buf)),
	    "postgresql://db.example/pizza");
	assert_string_equal(hstore_label("/var/lib/pizza/history.db", buf, sizeof(buf)), "/var/lib/pizza/history.db");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_targets),
		cmocka_unit_test_setup_teardown(test_empty, setup, teardown),
		cmocka_unit_test_setup_teardown(test_apply_and_duplicates, setup, teardown),
		cmocka_unit_test_setup_teardown(test_other_types_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_order_json, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stored_accepted_not_shown_twice, setup, teardown),
		cmocka_unit_test_setup_teardown(test_status_before_placed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_user_orders, setup, teardown),
		cmocka_unit_test_setup_teardown(test_callback_outcome, setup, teardown),
		cmocka_unit_test_setup_teardown(test_survives_reopen, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failure_is_not_not_found, setup, teardown),
		cmocka_unit_test_setup_teardown(test_receipts, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

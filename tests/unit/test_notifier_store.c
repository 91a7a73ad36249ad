/*
 * test_notifier_store.c - the notifier's store (notifier/store.h) against a
 * real SQLite file in a fresh temporary directory.  What the store wrote is
 * read back through a second connection, as an operator would see it; the
 * failures are real SQLite errors (a trigger that aborts an insert, a
 * dropped table), not stubs.
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

#include "notifier/store.h"
#include "util.h"
#include "tmpdb.h"

#define T0 INT64_C(1769860800000) /* 2026-01-31T12:00:00.000Z */
#define URL "https://shop.example/hooks/pizza"

struct fixture {
	char dir[TMPDB_DIR_MAX];
	char path[TMPDB_PATH_MAX];
	struct notifier_store *s;
	char order[ID_LEN + 1];
};

static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (f == NULL)
		return -1;
	if (tmpdb_make(f->dir, f->path, "nstore", "notifier.db") != 0) {
		free(f);
		return -1;
	}
	if ((f->s = nstore_open(f->path, NULL, 10000)) == NULL) {
		rmdir(f->dir);
		free(f);
		return -1;
	}
	id_new(f->order);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;
	nstore_close(f->s);
	tmpdb_remove(f->dir, f->path);
	free(f);
	return 0;
}

/* Runs sql on a second connection to the store's file. */
static void
sql_exec(const struct fixture *f, const char *sql)
{
	sqlite3 *h = NULL;

	assert_int_equal(sqlite3_open(f->path, &h), SQLITE_OK);
	sqlite3_busy_timeout(h, 5000);
	assert_int_equal(sqlite3_exec(h, sql, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(h);
}

/* The first column of the first row of sql (one optional text parameter) as an integer, read on a second connection. */
static int64_t
sql_int(const struct fixture *f, const char *sql, const char *arg)
{
	sqlite3 *h = NULL;
	sqlite3_stmt *st = NULL;
	int64_t v;

	assert_int_equal(sqlite3_open(f->path, &h), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(h, sql, -1, &st, NULL), SQLITE_OK);
	if (arg != NULL)
		sqlite3_bind_text(st, 1, arg, -1, SQLITE_TRANSIENT);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(h);
	return v;
}

/* Like sql_int() for a text column, into buf; "" for NULL. */
static const char *
sql_text(const struct fixture *f, const char *sql, const char *arg, char *buf, size_t n)
{
	sqlite3 *h = NULL;
	sqlite3_stmt *st = NULL;
	const unsigned char *t;

	assert_int_equal(sqlite3_open(f->path, &h), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(h, sql, -1, &st, NULL), SQLITE_OK);
	if (arg != NULL)
		sqlite3_bind_text(st, 1, arg, -1, SQLITE_TRANSIENT);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	t = sqlite3_column_text(st, 0);
	str_copy(buf, n, t != NULL ? (const char *)t : "");
	sqlite3_finalize(st);
	sqlite3_close(h);
	return buf;
}

static int64_t
rows(const struct fixture *f, const char *table)
{
	char sql[128];

	snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s", table);
	return sql_int(f, sql, NULL);
}

/* An OrderPlaced for f's order: 2 x margherita, 1 x hawaii, with url as its callback (NULL: none). */
static void
put_placed(struct fixture *f, const char *url, enum nstore_result expect)
{
	struct event ev;

	assert_int_equal(event_init(&ev, EVENT_ORDER_PLACED, f->order, "alice"), 0);
	ev.at_ms = T0;
	ev.n_items = 2;
	str_copy(ev.items[0].sku, sizeof(ev.items[0].sku), "margherita");
	ev.items[0].qty = 2;
	str_copy(ev.items[1].sku, sizeof(ev.items[1].sku), "hawaii");
	ev.items[1].qty = 1;
	if (url != NULL)
		str_copy(ev.callback_url, sizeof(ev.callback_url), url);
	assert_int_equal(nstore_put_order(f->s, &ev), expect);
}

/* Queues f's order's alert (with a callback to url unless NULL) as the notifier does on ready. */
static enum nstore_result
queue_alert(struct fixture *f, const char *url)
{
	static const char payload[] = "{\"type\":\"PickupAlert\"}";
	struct nstore_alert a = {
		.order_id = f->order,
		.user_id = "alice",
		.event_id = "01KALERTEVENT0000000000000",
		.ready_ms = T0 + 1600,
		.msg = { "pizza/users/alice/alerts", payload, sizeof(payload) - 1, 1, 3600 },
		.callback_url = url,
		.callback_body = url != NULL ? "{\"type\":\"OrderReady\"}" : NULL,
	};

	return nstore_queue_alert(f->s, &a);
}

/*
 * The first ready queues one alert: the alerts row and the outbox row, and
 * no delivery without a URL.  Nothing about the order is needed before:
 * OrderReady brings the items and the callback URL.
 */
static void
test_first_ready_queues_one_alert(void **state)
{
	struct fixture *f = *state;
	char buf[256];

	assert_int_equal(queue_alert(f, NULL), NSTORE_OK);
	assert_int_equal(sql_int(f, "SELECT count(*) FROM alerts WHERE order_id = ?", f->order), 1);
	assert_int_equal(sql_int(f, "SELECT ready_ms FROM alerts WHERE order_id = ?", f->order), T0 + 1600);
	assert_int_equal(rows(f, "outbox"), 1);
	assert_string_equal(sql_text(f, "SELECT topic FROM outbox", NULL, buf, sizeof(buf)), "pizza/users/alice/alerts");
	assert_string_equal(sql_text(f, "SELECT CAST(payload AS TEXT) FROM outbox", NULL, buf, sizeof(buf)),
	    "{\"type\":\"PickupAlert\"}");
	assert_int_equal(sql_int(f, "SELECT expiry_s FROM outbox", NULL), 3600);
	assert_int_equal(sql_int(f, "SELECT retained FROM outbox", NULL), 0);
	assert_int_equal(rows(f, "deliveries"), 0);
}

/* A second ready (redelivery, retained copy, second executor) changes nothing and queues nothing. */
static void
test_second_ready_is_duplicate(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(queue_alert(f, URL), NSTORE_OK);
	assert_int_equal(queue_alert(f, URL), NSTORE_DUP);
	assert_int_equal(queue_alert(f, NULL), NSTORE_DUP);
	assert_int_equal(rows(f, "alerts"), 1);
	assert_int_equal(rows(f, "outbox"), 1);
	assert_int_equal(rows(f, "deliveries"), 1);
}

struct due {
	int n;
	char id[NAME_MAX_LEN + 1];
	char url[EVENT_URL_MAX + 1];
	char body[128];
	int attempts;
	int stop_after;
};

static int
collect(void *arg, const struct nstore_delivery *d)
{
	struct due *u = arg;

	u->n++;
	str_copy(u->id, sizeof(u->id), d->delivery_id);
	str_copy(u->url, sizeof(u->url), d->url);
	str_copy(u->body, sizeof(u->body), d->body);
	u->attempts = d->attempts;
	assert_string_equal(d->user_id, "alice");
	return u->stop_after > 0 && u->n >= u->stop_after;
}

/* A callback URL makes a pending delivery, due at once, which nstore_due() hands out. */
static void
test_callback_makes_delivery(void **state)
{
	struct fixture *f = *state;
	struct due u = { 0 };
	char buf[64];

	assert_int_equal(queue_alert(f, URL), NSTORE_OK);
	assert_int_equal(rows(f, "deliveries"), 1);
	assert_string_equal(sql_text(f, "SELECT state FROM deliveries WHERE order_id = ?", f->order, buf, sizeof(buf)),
	    "pending");
	assert_int_equal(nstore_due(f->s, now_ms(), 10, collect, &u), NSTORE_OK);
	assert_int_equal(u.n, 1);
	assert_string_equal(u.url, URL);
	assert_string_equal(u.body, "{\"type\":\"OrderReady\"}");
	assert_int_equal(u.attempts, 0);
	assert_int_equal((int)strlen(u.id), ID_LEN);
	/* not due before its time */
	memset(&u, 0, sizeof(u));
	assert_int_equal(nstore_due(f->s, T0 - 1, 10, collect, &u), NSTORE_OK);
	assert_int_equal(u.n, 0);
}

/* Attempts: a retry moves next_ms; a final outcome is announced in the same transaction. */
static void
test_record_attempts(void **state)
{
	struct fixture *f = *state;
	static const char ann[] = "{\"type\":\"CallbackDelivery\"}";
	struct nstore_msg announce = { "pizza/orders/callbacks", ann, sizeof(ann) - 1, 1, 0 };
	struct due u = { 0 };
	int64_t now;
	char buf[128];

	assert_int_equal(queue_alert(f, URL), NSTORE_OK);
	now = now_ms(); /* after the delivery was queued (due at its queueing time): a millisecond may have passed */
	assert_int_equal(nstore_due(f->s, now, 10, collect, &u), NSTORE_OK);
	assert_int_equal(u.n, 1);
	assert_int_equal(nstore_record_attempt(f->s, &(struct nstore_attempt){ .delivery_id = u.id, .attempts = 1,
		.state = NSTORE_PENDING, .last_error = "the receiver answered HTTP 503", .at_ms = now,
		.next_ms = now + 60000 }), NSTORE_OK);
	assert_string_equal(sql_text(f, "SELECT last_error FROM deliveries WHERE delivery_id = ?", u.id, buf, sizeof(buf)),
	    "the receiver answered HTTP 503");
	assert_int_equal(sql_int(f, "SELECT done_ms IS NULL FROM deliveries WHERE delivery_id = ?", u.id), 1);
	assert_int_equal(rows(f, "outbox"), 1); /* the alert only: a retry announces nothing */
	memset(&u, 0, sizeof(u));
	assert_int_equal(nstore_due(f->s, now + 59999, 10, collect, &u), NSTORE_OK);
	assert_int_equal(u.n, 0);
	assert_int_equal(nstore_due(f->s, now + 60000, 10, collect, &u), NSTORE_OK);
	assert_int_equal(u.n, 1);
	assert_int_equal(u.attempts, 1);

	assert_int_equal(nstore_record_attempt(f->s, &(struct nstore_attempt){ .delivery_id = u.id, .attempts = 2,
		.state = NSTORE_DELIVERED, .at_ms = now + 60100, .announce = &announce }), NSTORE_OK);
	assert_string_equal(sql_text(f, "SELECT state FROM deliveries WHERE delivery_id = ?", u.id, buf, sizeof(buf)),
	    "delivered");
	assert_int_equal(sql_int(f, "SELECT last_error IS NULL FROM deliveries WHERE delivery_id = ?", u.id), 1);
	assert_int_equal(sql_int(f, "SELECT done_ms FROM deliveries WHERE delivery_id = ?", u.id), now + 60100);
	assert_int_equal(sql_int(f, "SELECT count(*) FROM outbox WHERE topic = ?", "pizza/orders/callbacks"), 1);
	/* done: never due again */
	memset(&u, 0, sizeof(u));
	assert_int_equal(nstore_due(f->s, now + 999999999, 10, collect, &u), NSTORE_OK);
	assert_int_equal(u.n, 0);

	/* an unknown delivery is NOT_FOUND, and its announcement is not queued */
	assert_int_equal(nstore_record_attempt(f->s, &(struct nstore_attempt){ .delivery_id = "nosuchdelivery",
		.attempts = 1, .state = NSTORE_FAILED, .at_ms = now, .announce = &announce }), NSTORE_NOT_FOUND);
	assert_int_equal(rows(f, "outbox"), 2);
}

/* nstore_due() stops when its callback says so, and hands out at most limit. */
static void
test_due_stops_and_limits(void **state)
{
	struct fixture *f = *state;
	struct due u = { .stop_after = 2 };

	for (int i = 0; i < 4; i++) {
		id_new(f->order);
		assert_int_equal(queue_alert(f, URL), NSTORE_OK);
	}
	assert_int_equal(nstore_due(f->s, now_ms(), 10, collect, &u), NSTORE_OK);
	assert_int_equal(u.n, 2);
	memset(&u, 0, sizeof(u));
	assert_int_equal(nstore_due(f->s, now_ms(), 3, collect, &u), NSTORE_OK);
	assert_int_equal(u.n, 3);
}

/*
 * A failure in the middle of the alert's transaction (the delivery row, its
 * last insert) rolls back the alerts row and the outbox row too: the next
 * ready is not a duplicate but queues the alert.
 */
static void
test_failure_rolls_back_alert(void **state)
{
	struct fixture *f = *state;

	sql_exec(f, "CREATE TRIGGER fail_delivery BEFORE INSERT ON deliveries "
		    "BEGIN SELECT RAISE(ABORT, 'disk full (test)'); END;");
	assert_int_equal(queue_alert(f, URL), NSTORE_FAIL);
	assert_int_equal(rows(f, "alerts"), 0);
	assert_int_equal(rows(f, "outbox"), 0);
	assert_int_equal(rows(f, "deliveries"), 0);

	/* the outbox insert failing rolls back the alerts row as well */
	sql_exec(f, "DROP TRIGGER fail_delivery; CREATE TRIGGER fail_outbox BEFORE INSERT ON outbox "
		    "BEGIN SELECT RAISE(ABORT, 'disk full (test)'); END;");
	assert_int_equal(queue_alert(f, NULL), NSTORE_FAIL);
	assert_int_equal(rows(f, "alerts"), 0);
	assert_int_equal(rows(f, "outbox"), 0);

	/* the store recovers: the redelivered ready is the first that counts */
	sql_exec(f, "DROP TRIGGER fail_outbox;");
	assert_int_equal(queue_alert(f, URL), NSTORE_OK);
	assert_int_equal(rows(f, "alerts"), 1);
	assert_int_equal(rows(f, "outbox"), 1);
	assert_int_equal(rows(f, "deliveries"), 1);
}

/* An attempt whose announcement cannot be queued leaves the delivery as it was. */
static void
test_failure_rolls_back_attempt(void **state)
{
	struct fixture *f = *state;
	static const char ann[] = "{\"type\":\"CallbackDelivery\"}";
	struct nstore_msg announce = { "pizza/orders/callbacks", ann, sizeof(ann) - 1, 1, 0 };
	struct due u = { 0 };
	char buf[32];

	assert_int_equal(queue_alert(f, URL), NSTORE_OK);
	assert_int_equal(nstore_due(f->s, now_ms(), 10, collect, &u), NSTORE_OK);
	sql_exec(f, "CREATE TRIGGER fail_outbox BEFORE INSERT ON outbox BEGIN SELECT RAISE(ABORT, 'disk full (test)'); END;");
	assert_int_equal(nstore_record_attempt(f->s, &(struct nstore_attempt){ .delivery_id = u.id, .attempts = 1,
		.state = NSTORE_FAILED, .last_error = "refused", .at_ms = now_ms(), .announce = &announce }), NSTORE_FAIL);
	assert_string_equal(sql_text(f, "SELECT state FROM deliveries WHERE delivery_id = ?", u.id, buf, sizeof(buf)),
	    "pending");
	assert_int_equal(sql_int(f, "SELECT attempts FROM deliveries WHERE delivery_id = ?", u.id), 0);
	assert_int_equal(rows(f, "outbox"), 1);
}

/* A database error is NSTORE_FAIL, never NSTORE_NOT_FOUND or a duplicate. */
static void
test_database_error_is_not_not_found(void **state)
{
	struct fixture *f = *state;
	struct due u = { 0 };

	sql_exec(f, "DROP TABLE deliveries;");
	assert_int_equal(nstore_due(f->s, now_ms(), 10, collect, &u), NSTORE_FAIL);
	assert_int_equal(u.n, 0);
	/* no such delivery could be read: that is a failure, not "no such delivery" */
	assert_int_equal(nstore_record_attempt(f->s, &(struct nstore_attempt){ .delivery_id = "nosuchdelivery",
		.attempts = 1, .state = NSTORE_FAILED, .at_ms = now_ms() }), NSTORE_FAIL);
	assert_int_equal(queue_alert(f, URL), NSTORE_FAIL); /* no deliveries table: rolled back */
	assert_int_equal(rows(f, "alerts"), 0);
	assert_int_equal(rows(f, "outbox"), 0);
	/* without a callback the deliveries table is not needed: the alert is not a duplicate of the failed one */
	assert_int_equal(queue_alert(f, NULL), NSTORE_OK);
	sql_exec(f, "DROP TABLE alerts;");
	id_new(f->order);
	assert_int_equal(queue_alert(f, NULL), NSTORE_FAIL);
	assert_int_equal(rows(f, "outbox"), 1);
}

/* What is stored survives a restart: the alert's "sent once" record and its pending callback. */
static void
test_reopen_keeps_alerts(void **state)
{
	struct fixture *f = *state;
	struct due u = { 0 };

	assert_int_equal(queue_alert(f, URL), NSTORE_OK);
	nstore_close(f->s);
	assert_non_null(f->s = nstore_open(f->path, NULL, 10000));
	assert_int_equal(queue_alert(f, URL), NSTORE_DUP);
	assert_int_equal(queue_alert(f, NULL), NSTORE_DUP);
	assert_int_equal(sql_int(f, "SELECT ready_ms FROM alerts WHERE order_id = ?", f->order), T0 + 1600);
	assert_int_equal(nstore_due(f->s, now_ms(), 10, collect, &u), NSTORE_OK);
	assert_int_equal(u.n, 1);
	assert_string_equal(u.url, URL);
	assert_string_equal(u.body, "{\"type\":\"OrderReady\"}");
	assert_int_equal(nstore_flush(f->s), 0); /* without an mq nothing is published */
	assert_int_equal(nstore_probe(f->s), 0); /* and it can write */
}

/* The orders table is the upgrade's only (store.h): what an older version's session still delivers. */
static void
test_order_names_items(void **state)
{
	struct fixture *f = *state;
	struct nstore_order o;
	char other[ID_LEN + 1];

	put_placed(f, URL, NSTORE_OK);
	assert_int_equal(nstore_order(f->s, f->order, &o), NSTORE_OK);
	assert_string_equal(o.items, "2 x margherita, 1 x hawaii");
	assert_string_equal(o.callback_url, URL);
	/* a redelivered OrderPlaced is a duplicate, and the first one stands */
	put_placed(f, NULL, NSTORE_DUP);
	assert_int_equal(nstore_order(f->s, f->order, &o), NSTORE_OK);
	assert_string_equal(o.callback_url, URL);
	assert_int_equal(rows(f, "orders"), 1);

	id_new(other);
	memset(&o, 'x', sizeof(o));
	assert_int_equal(nstore_order(f->s, other, &o), NSTORE_NOT_FOUND);
	assert_string_equal(o.items, "");
	assert_string_equal(o.callback_url, "");
}

/* An order without a callback URL has "" as its URL (no callback). */
static void
test_order_without_callback(void **state)
{
	struct fixture *f = *state;
	struct nstore_order o;

	put_placed(f, NULL, NSTORE_OK);
	assert_int_equal(nstore_order(f->s, f->order, &o), NSTORE_OK);
	assert_string_equal(o.callback_url, "");
	assert_int_equal(sql_int(f, "SELECT callback_url IS NULL FROM orders WHERE order_id = ?", f->order), 1);
}

/* A hello from each of alice's devices (and bob's): nothing was pending, nothing is sent. */
static void
hello_devices(struct fixture *f)
{
	int resent = -1;

	assert_int_equal(nstore_hello(f->s, "alice", "phone", now_ms(), &resent), NSTORE_OK);
	assert_int_equal(resent, 0);
	assert_int_equal(nstore_hello(f->s, "alice", "tablet", now_ms(), &resent), NSTORE_OK);
	assert_int_equal(nstore_hello(f->s, "bob", "phone", now_ms(), NULL), NSTORE_OK);
	assert_int_equal(rows(f, "devices"), 3);
	assert_int_equal(rows(f, "outbox"), 0);
}

/* An alert is pending once per device of its user that said hello, and still goes once to the user's topic. */
static void
test_alert_pending_per_device(void **state)
{
	struct fixture *f = *state;
	int64_t t;

	hello_devices(f);
	t = now_ms();
	assert_int_equal(queue_alert(f, NULL), NSTORE_OK);
	assert_int_equal(rows(f, "outbox"), 1);
	assert_int_equal(rows(f, "device_alerts"), 2);
	assert_int_equal(sql_int(f, "SELECT count(*) FROM device_alerts WHERE user_id = 'alice' AND order_id = ?", f->order),
	    2);
	assert_int_equal(nstore_pending(f->s, now_ms()), 2);
	/* it expires with the alert: an hour from when it was queued */
	assert_true(sql_int(f, "SELECT min(expires_ms) FROM device_alerts", NULL) >= t + 3600 * 1000);
	assert_true(sql_int(f, "SELECT max(expires_ms) FROM device_alerts", NULL) <= now_ms() + 3600 * 1000);
	/* a second ready adds nothing */
	assert_int_equal(queue_alert(f, NULL), NSTORE_DUP);
	assert_int_equal(rows(f, "device_alerts"), 2);
}

/* A hello sends again what is pending for that device only, to its own topic, same payload; a receipt stops it. */
static void
test_hello_resends_until_receipt(void **state)
{
	struct fixture *f = *state;
	char buf[256];
	int resent = -1;

	hello_devices(f);
	assert_int_equal(queue_alert(f, NULL), NSTORE_OK);
	sql_exec(f, "DELETE FROM outbox");
	assert_int_equal(nstore_hello(f->s, "alice", "phone", now_ms(), &resent), NSTORE_OK);
	assert_int_equal(resent, 1);
	assert_int_equal(rows(f, "outbox"), 1);
	assert_string_equal(sql_text(f, "SELECT topic FROM outbox", NULL, buf, sizeof(buf)),
	    "pizza/users/alice/devices/phone/alerts");
	assert_string_equal(sql_text(f, "SELECT CAST(payload AS TEXT) FROM outbox", NULL, buf, sizeof(buf)),
	    "{\"type\":\"PickupAlert\"}");
	assert_int_equal(sql_int(f, "SELECT qos FROM outbox", NULL), 1);
	assert_in_range(sql_int(f, "SELECT expiry_s FROM outbox", NULL), 3590, 3600);
	assert_int_equal(sql_int(f, "SELECT resends FROM device_alerts WHERE device_id = 'phone'", NULL), 1);
	assert_int_equal(sql_int(f, "SELECT resends FROM device_alerts WHERE device_id = 'tablet'", NULL), 0);

	/* the phone's receipt: delivered at the notifier's time; the next hello sends nothing */
	assert_int_equal(nstore_receipt(f->s, "alice", "phone", "01KALERTEVENT0000000000000", f->order, T0 + 5000),
	    NSTORE_OK);
	assert_int_equal(sql_int(f, "SELECT delivered_ms FROM device_alerts WHERE device_id = 'phone'", NULL), T0 + 5000);
	assert_int_equal(nstore_pending(f->s, now_ms()), 1);
	assert_int_equal(nstore_hello(f->s, "alice", "phone", now_ms(), &resent), NSTORE_OK);
	assert_int_equal(resent, 0);
	/* the same receipt again: the first time stands */
	assert_int_equal(nstore_receipt(f->s, "alice", "phone", "01KALERTEVENT0000000000000", f->order, T0 + 9000),
	    NSTORE_DUP);
	assert_int_equal(sql_int(f, "SELECT delivered_ms FROM device_alerts WHERE device_id = 'phone'", NULL), T0 + 5000);
}

/* A receipt naming no alert of this user is NOT_FOUND; one for a known alert the device was not waiting for is OK. */
static void
test_receipt_must_name_an_alert(void **state)
{
	struct fixture *f = *state;

	hello_devices(f);
	assert_int_equal(queue_alert(f, NULL), NSTORE_OK);
	assert_int_equal(nstore_receipt(f->s, "alice", "phone", "01KNOSUCHEVENT000000000000", f->order, T0),
	    NSTORE_NOT_FOUND);
	assert_int_equal(nstore_receipt(f->s, "bob", "phone", "01KALERTEVENT0000000000000", f->order, T0),
	    NSTORE_NOT_FOUND);
	assert_int_equal(nstore_receipt(f->s, "alice", "phone", "01KALERTEVENT0000000000000", "01KOTHERORDER0000000000000",
			     T0),
	    NSTORE_NOT_FOUND);
	/* a device that said hello only after the alert: nothing was pending for it, nothing changes */
	assert_int_equal(nstore_receipt(f->s, "alice", "watch", "01KALERTEVENT0000000000000", f->order, T0), NSTORE_OK);
	assert_int_equal(rows(f, "device_alerts"), 2);
	assert_int_equal(nstore_pending(f->s, now_ms()), 2);
}

/* Expired alerts are no longer pending, not sent again, and forgotten by nstore_expire(). */
static void
test_expired_not_resent(void **state)
{
	struct fixture *f = *state;
	int64_t later;
	int resent = -1;

	hello_devices(f);
	assert_int_equal(queue_alert(f, NULL), NSTORE_OK);
	later = now_ms() + 3601 * 1000;
	assert_int_equal(nstore_pending(f->s, later), 0);
	assert_int_equal(nstore_hello(f->s, "alice", "phone", later, &resent), NSTORE_OK);
	assert_int_equal(resent, 0);
	assert_int_equal(nstore_resend_all(f->s, later, &resent), NSTORE_OK);
	assert_int_equal(resent, 0);
	assert_int_equal(nstore_expire(f->s, now_ms()), 0);
	assert_int_equal(nstore_expire(f->s, later), 2);
	assert_int_equal(rows(f, "device_alerts"), 0);
}

/* After the notifier reconnects, every device's pending alerts go again, each to its own topic. */
static void
test_resend_all(void **state)
{
	struct fixture *f = *state;
	int resent = -1;

	hello_devices(f);
	assert_int_equal(queue_alert(f, NULL), NSTORE_OK);
	sql_exec(f, "DELETE FROM outbox");
	assert_int_equal(nstore_resend_all(f->s, now_ms(), &resent), NSTORE_OK);
	assert_int_equal(resent, 2);
	assert_int_equal(sql_int(f, "SELECT count(*) FROM outbox WHERE topic = 'pizza/users/alice/devices/phone/alerts'",
			     NULL),
	    1);
	assert_int_equal(sql_int(f, "SELECT count(*) FROM outbox WHERE topic = 'pizza/users/alice/devices/tablet/alerts'",
			     NULL),
	    1);
}

/* A hello whose resend cannot be queued changes nothing: the device is not recorded, nothing counted. */
static void
test_hello_failure_rolls_back(void **state)
{
	struct fixture *f = *state;
	int resent = -1;

	hello_devices(f);
	assert_int_equal(queue_alert(f, NULL), NSTORE_OK);
	sql_exec(f, "CREATE TRIGGER fail_outbox BEFORE INSERT ON outbox BEGIN SELECT RAISE(ABORT, 'disk full (test)'); END;");
	assert_int_equal(nstore_hello(f->s, "alice", "phone", now_ms(), &resent), NSTORE_FAIL);
	assert_int_equal(resent, -1);
	assert_int_equal(sql_int(f, "SELECT max(resends) FROM device_alerts", NULL), 0);
	assert_int_equal(nstore_resend_all(f->s, now_ms(), &resent), NSTORE_FAIL);
	assert_int_equal(nstore_hello(f->s, "carol", "phone", now_ms(), &resent), NSTORE_OK); /* nothing to queue */
	sql_exec(f, "DROP TRIGGER fail_outbox; DROP TABLE device_alerts;");
	assert_int_equal(nstore_receipt(f->s, "alice", "phone", "01KALERTEVENT0000000000000", f->order, T0), NSTORE_FAIL);
	assert_int_equal(nstore_pending(f->s, now_ms()), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_first_ready_queues_one_alert, setup, teardown),
		cmocka_unit_test_setup_teardown(test_second_ready_is_duplicate, setup, teardown),
		cmocka_unit_test_setup_teardown(test_callback_makes_delivery, setup, teardown),
		cmocka_unit_test_setup_teardown(test_record_attempts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_due_stops_and_limits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failure_rolls_back_alert, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failure_rolls_back_attempt, setup, teardown),
		cmocka_unit_test_setup_teardown(test_database_error_is_not_not_found, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reopen_keeps_alerts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_order_names_items, setup, teardown),
		cmocka_unit_test_setup_teardown(test_order_without_callback, setup, teardown),
		cmocka_unit_test_setup_teardown(test_alert_pending_per_device, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hello_resends_until_receipt, setup, teardown),
		cmocka_unit_test_setup_teardown(test_receipt_must_name_an_alert, setup, teardown),
		cmocka_unit_test_setup_teardown(test_expired_not_resent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_resend_all, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hello_failure_rolls_back, setup, teardown),
	};

	return cmocka_run_group_tests_name("notifier_store", tests, NULL, NULL);
}

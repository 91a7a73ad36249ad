/*
 * test_outbox.c - the transactional outbox (outbox.h) over a real SQLite
 * file in a fresh temporary directory, with MQTT replaced: the Makefile
 * links this test with --wrap=mq_publish,--wrap=mq_window_free, so the
 * outbox's publishes land in the fake broker below, which completes them
 * (PUBACK or failure) only when a test says so.
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

#include "db.h"
#include "mq.h"
#include "outbox.h"
#include "util.h"

/* ---- the fake broker ---------------------------------------------------------------- */

struct sent {
	char *topic;
	void *payload;
	size_t len;
	int qos, retained;
	unsigned expiry_s;
	mq_done done;
	void *done_arg;
	int completed;
};

static struct {
	struct sent *v;
	size_t n, cap;
	int refuse; /* mq_publish() refuses (buffer full) */
	int window; /* what mq_window_free() counts from */
} fake;

int __wrap_mq_publish(struct mq *mq, const struct mq_publish *p);
int __wrap_mq_window_free(struct mq *mq);
int __wrap_mq_window(struct mq *mq);

/* The window's size. */
int
__wrap_mq_window(struct mq *mq)
{
	(void)mq;
	return fake.window;
}

int
__wrap_mq_publish(struct mq *mq, const struct mq_publish *p)
{
	struct sent *s;

	(void)mq;
	if (fake.refuse)
		return -1;
	if (fake.n == fake.cap) {
		fake.cap = fake.cap ? fake.cap * 2 : 64;
		fake.v = realloc(fake.v, fake.cap * sizeof(*fake.v));
		if (fake.v == NULL)
			abort();
	}
	s = &fake.v[fake.n++];
	memset(s, 0, sizeof(*s));
	s->topic = strdup(p->topic);
	s->payload = malloc(p->len + 1);
	if (s->topic == NULL || s->payload == NULL)
		abort();
	memcpy(s->payload, p->payload, p->len);
	s->len = p->len;
	s->qos = p->qos;
	s->retained = p->retained;
	s->expiry_s = p->expiry_s;
	s->done = p->done;
	s->done_arg = p->done_arg;
	return 0;
}

/* Like mq's: the window minus what is in flight. */
int
__wrap_mq_window_free(struct mq *mq)
{
	int busy = 0;

	(void)mq;
	for (size_t i = 0; i < fake.n; i++)
		busy += !fake.v[i].completed;
	return fake.window - busy;
}

/* The broker answers publish i: ok 1 is a PUBACK, 0 a failure. */
static void
complete(size_t i, int ok)
{
	assert_true(i < fake.n);
	assert_false(fake.v[i].completed);
	fake.v[i].completed = 1;
	assert_non_null(fake.v[i].done);
	fake.v[i].done(fake.v[i].done_arg, ok);
}

static void
complete_all(int ok)
{
	for (size_t i = 0; i < fake.n; i++)
		if (!fake.v[i].completed)
			complete(i, ok);
}

static void
fake_reset(void)
{
	for (size_t i = 0; i < fake.n; i++) {
		free(fake.v[i].topic);
		free(fake.v[i].payload);
	}
	free(fake.v);
	memset(&fake, 0, sizeof(fake));
	fake.window = MQ_WINDOW;
}

/* ---- fixture ---------------------------------------------------------------------- */

#define RETRY_MS 60000 /* no timed re-send unless a test asks for one */

struct fixture {
	char dir[64];
	char path[128];
	struct db *db;
	struct outbox *ob;
};

/* Any non-NULL pointer: the fake never looks inside. */
#define FAKE_MQ ((struct mq *)&fake)

static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (f == NULL)
		return -1;
	fake_reset();
	str_copy(f->dir, sizeof(f->dir), "/tmp/pizza-test-outbox-XXXXXX");
	if (mkdtemp(f->dir) == NULL) {
		free(f);
		return -1;
	}
	snprintf(f->path, sizeof(f->path), "%s/outbox.db", f->dir);
	if ((f->db = db_open(f->path, OUTBOX_SCHEMA)) == NULL || (f->ob = outbox_new(f->db, FAKE_MQ, RETRY_MS)) == NULL) {
		db_close(f->db);
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
	static const char *const suffix[] = { "", "-wal", "-shm", "-journal" };

	complete_all(0); /* every completion context is freed by its callback */
	outbox_free(f->ob);
	db_close(f->db);
	fake_reset();
	for (size_t i = 0; i < sizeof(suffix) / sizeof(suffix[0]); i++) {
		char p[160];

		snprintf(p, sizeof(p), "%s%s", f->path, suffix[i]);
		unlink(p);
	}
	rmdir(f->dir);
	free(f);
	return 0;
}

/* ---- helpers ---------------------------------------------------------------------- */

/* Adds messages "t/<first>" .. "t/<first + n - 1>" in one committed transaction. */
static void
add_committed(struct db *db, int first, int n)
{
	db_lock(db);
	assert_int_equal(db_begin(db), 0);
	for (int i = first; i < first + n; i++) {
		char topic[32], payload[32];

		snprintf(topic, sizeof(topic), "t/%d", i);
		snprintf(payload, sizeof(payload), "{\"n\":%d}", i);
		assert_int_equal(outbox_add(db, topic, payload, strlen(payload), 1, 0, 0), 0);
	}
	assert_int_equal(db_commit(db), 0);
	db_unlock(db);
}

/* Rows in the outbox table. */
static int64_t
rows(struct db *db)
{
	sqlite3_stmt *st;
	int64_t n = -1;

	db_lock(db);
	st = db_prepare(db, "SELECT count(*) FROM outbox");
	assert_non_null(st);
	if (sqlite3_step(st) == SQLITE_ROW)
		n = sqlite3_column_int64(st, 0);
	db_done(db, st);
	db_unlock(db);
	return n;
}

/* Whether the row with topic is still in the table. */
static int
has_row(struct db *db, const char *topic)
{
	sqlite3_stmt *st;
	int found;

	db_lock(db);
	st = db_prepare(db, "SELECT 1 FROM outbox WHERE topic = ?");
	assert_non_null(st);
	sqlite3_bind_text(st, 1, topic, -1, SQLITE_STATIC);
	found = sqlite3_step(st) == SQLITE_ROW;
	db_done(db, st);
	db_unlock(db);
	return found;
}

/* ---- tests ------------------------------------------------------------------------ */

/* What was added is published as it was added: topic, bytes, QoS, retain flag, expiry. */
static void
test_publishes_what_was_added(void **state)
{
	struct fixture *f = *state;
	static const char bin[] = { 'a', '\0', 'b', (char)0xff };

	db_lock(f->db);
	assert_int_equal(db_begin(f->db), 0);
	assert_int_equal(outbox_add(f->db, "pizza/orders/placed", "{\"x\":1}", 7, 1, 0, 0), 0);
	assert_int_equal(outbox_add(f->db, "pizza/users/alice/orders/o1/status", bin, sizeof(bin), 1, 1, 3600), 0);
	assert_int_equal(outbox_add(f->db, "pizza/empty", "", 0, 0, 0, 7), 0);
	assert_int_equal(db_commit(f->db), 0);
	db_unlock(f->db);

	assert_int_equal(outbox_flush(f->ob), 3);
	assert_int_equal(fake.n, 3);
	/* in the order added */
	assert_string_equal(fake.v[0].topic, "pizza/orders/placed");
	assert_int_equal(fake.v[0].len, 7);
	assert_memory_equal(fake.v[0].payload, "{\"x\":1}", 7);
	assert_int_equal(fake.v[0].qos, 1);
	assert_int_equal(fake.v[0].retained, 0);
	assert_int_equal(fake.v[0].expiry_s, 0);
	assert_string_equal(fake.v[1].topic, "pizza/users/alice/orders/o1/status");
	assert_int_equal(fake.v[1].len, sizeof(bin));
	assert_memory_equal(fake.v[1].payload, bin, sizeof(bin));
	assert_int_equal(fake.v[1].retained, 1);
	assert_int_equal(fake.v[1].expiry_s, 3600);
	assert_string_equal(fake.v[2].topic, "pizza/empty");
	assert_int_equal(fake.v[2].len, 0);
	assert_int_equal(fake.v[2].qos, 0);
	assert_int_equal(fake.v[2].expiry_s, 7);
	/* each asks to be told of its outcome */
	for (size_t i = 0; i < fake.n; i++)
		assert_non_null(fake.v[i].done);
}

/* A row stays until the broker acknowledged it, is deleted after, and is never sent twice meanwhile. */
static void
test_kept_until_acknowledged(void **state)
{
	struct fixture *f = *state;

	add_committed(f->db, 1, 3);
	assert_int_equal(rows(f->db), 3);
	assert_int_equal(outbox_flush(f->ob), 3);
	assert_int_equal(rows(f->db), 3); /* handed over, not yet acknowledged */
	assert_int_equal(outbox_flush(f->ob), 0);
	assert_int_equal(fake.n, 3); /* in flight: not sent again */

	complete(0, 1);
	complete(2, 1);
	assert_int_equal(rows(f->db), 3); /* the completion only records; the flush deletes */
	assert_int_equal(outbox_flush(f->ob), 0);
	assert_int_equal(rows(f->db), 1);
	assert_false(has_row(f->db, "t/1"));
	assert_true(has_row(f->db, "t/2"));
	assert_false(has_row(f->db, "t/3"));

	complete(1, 1);
	assert_int_equal(outbox_flush(f->ob), 0);
	assert_int_equal(rows(f->db), 0);
	assert_int_equal(fake.n, 3); /* nothing was ever sent twice */

	/* later rows go out after the deleted ones, once each */
	add_committed(f->db, 4, 2);
	assert_int_equal(outbox_flush(f->ob), 2);
	assert_int_equal(fake.n, 5);
	assert_string_equal(fake.v[3].topic, "t/4");
	assert_string_equal(fake.v[4].topic, "t/5");
}

/* A message added in a transaction that rolls back is never published. */
static void
test_rolled_back_never_sent(void **state)
{
	struct fixture *f = *state;

	db_lock(f->db);
	assert_int_equal(db_begin(f->db), 0);
	assert_int_equal(outbox_add(f->db, "t/rolled-back", "x", 1, 1, 0, 0), 0);
	db_rollback(f->db);
	db_unlock(f->db);
	assert_int_equal(outbox_flush(f->ob), 0);
	assert_int_equal(fake.n, 0);
	assert_int_equal(rows(f->db), 0);
	add_committed(f->db, 1, 1);
	assert_int_equal(outbox_flush(f->ob), 1);
	assert_string_equal(fake.v[0].topic, "t/1");
}

/* A publish the broker did not take (failure completion) is sent again by the next flush. */
static void
test_failed_publish_resent(void **state)
{
	struct fixture *f = *state;

	add_committed(f->db, 1, 2);
	assert_int_equal(outbox_flush(f->ob), 2);
	complete(0, 0); /* t/1 failed */
	complete(1, 1); /* t/2 acknowledged */
	assert_int_equal(outbox_flush(f->ob), 1);
	assert_int_equal(fake.n, 3);
	assert_string_equal(fake.v[2].topic, "t/1");
	assert_memory_equal(fake.v[2].payload, "{\"n\":1}", 7);
	assert_int_equal(rows(f->db), 1);
	assert_true(has_row(f->db, "t/1"));
	complete(2, 1);
	assert_int_equal(outbox_flush(f->ob), 0);
	assert_int_equal(rows(f->db), 0);
	assert_int_equal(fake.n, 3);
}

/* A publish mq refused outright (its buffer full) stays in the table and goes out at the next flush. */
static void
test_refused_publish_kept(void **state)
{
	struct fixture *f = *state;

	add_committed(f->db, 1, 2);
	fake.refuse = 1;
	assert_int_equal(outbox_flush(f->ob), 0);
	assert_int_equal(fake.n, 0);
	assert_int_equal(rows(f->db), 2);
	fake.refuse = 0;
	assert_int_equal(outbox_flush(f->ob), 2);
	assert_int_equal(fake.n, 2);
	assert_string_equal(fake.v[0].topic, "t/1");
	assert_string_equal(fake.v[1].topic, "t/2");
	complete_all(1);
	assert_int_equal(outbox_flush(f->ob), 0);
	assert_int_equal(rows(f->db), 0);
}

/* A row handed over but never answered is sent again once retry_ms has passed, not before. */
static void
test_resent_after_retry_ms(void **state)
{
	struct fixture *f = *state;
	struct outbox *ob;
	int64_t t0 = mono_ms();

	outbox_free(f->ob);
	assert_non_null(f->ob = ob = outbox_new(f->db, FAKE_MQ, 300));
	add_committed(f->db, 1, 1);
	assert_int_equal(outbox_flush(ob), 1);
	assert_int_equal(outbox_flush(ob), 0);
	if (mono_ms() - t0 < 300)
		assert_int_equal(fake.n, 1); /* too early */
	sleep_ms(400);
	assert_int_equal(outbox_flush(ob), 1);
	assert_int_equal(fake.n, 2);
	assert_string_equal(fake.v[1].topic, "t/1");
	/* once per retry_ms, not at every flush */
	assert_int_equal(outbox_flush(ob), 0);
	assert_int_equal(fake.n, 2);
	/* an acknowledged row is gone for good: no re-send after another retry_ms */
	complete_all(1);
	assert_int_equal(outbox_flush(ob), 0);
	assert_int_equal(rows(f->db), 0);
	sleep_ms(400);
	assert_int_equal(outbox_flush(ob), 0);
	assert_int_equal(fake.n, 2);
}

/* The timed re-send takes only rows older than retry_ms: one just added goes out once. */
static void
test_young_rows_not_resent(void **state)
{
	struct fixture *f = *state;

	outbox_free(f->ob);
	assert_non_null(f->ob = outbox_new(f->db, FAKE_MQ, 300));
	add_committed(f->db, 1, 1);
	assert_int_equal(outbox_flush(f->ob), 1);
	sleep_ms(400);
	add_committed(f->db, 2, 1);
	/* t/2 goes out as new, t/1 again as unanswered for retry_ms; t/2 not twice */
	assert_int_equal(outbox_flush(f->ob), 2);
	assert_int_equal(fake.n, 3);
	assert_string_equal(fake.v[1].topic, "t/2");
	assert_string_equal(fake.v[2].topic, "t/1");
}

/*
 * No timed re-send while the broker is still answering: rows in flight
 * are waiting their turn, and sending them again would only double the
 * queue (the retry storm outbox.c describes).
 */
static void
test_no_resend_while_broker_answers(void **state)
{
	struct fixture *f = *state;

	outbox_free(f->ob);
	assert_non_null(f->ob = outbox_new(f->db, FAKE_MQ, 300));
	add_committed(f->db, 1, 2);
	assert_int_equal(outbox_flush(f->ob), 2);
	sleep_ms(400);
	complete(1, 1); /* the broker answers t/2 just now; t/1 is still in flight */
	assert_int_equal(outbox_flush(f->ob), 0);
	assert_int_equal(fake.n, 2);
	assert_true(has_row(f->db, "t/1"));
	assert_false(has_row(f->db, "t/2"));
	/* silence for retry_ms: then t/1 goes again */
	sleep_ms(400);
	assert_int_equal(outbox_flush(f->ob), 1);
	assert_int_equal(fake.n, 3);
	assert_string_equal(fake.v[2].topic, "t/1");
}

/* After a restart (a new outbox over the same file), rows never acknowledged go out again. */
static void
test_restart_resends_unacknowledged(void **state)
{
	struct fixture *f = *state;

	add_committed(f->db, 1, 3);
	assert_int_equal(outbox_flush(f->ob), 3);
	complete(1, 1);
	assert_int_equal(outbox_flush(f->ob), 0); /* t/2 deleted */
	/* the process stops with t/1 and t/3 unanswered */
	complete_all(0);
	outbox_free(f->ob);
	db_close(f->db);
	assert_non_null(f->db = db_open(f->path, OUTBOX_SCHEMA));
	assert_non_null(f->ob = outbox_new(f->db, FAKE_MQ, RETRY_MS));
	assert_int_equal(outbox_flush(f->ob), 2);
	assert_int_equal(fake.n, 5);
	assert_string_equal(fake.v[3].topic, "t/1");
	assert_string_equal(fake.v[4].topic, "t/3");
	complete_all(1);
	assert_int_equal(outbox_flush(f->ob), 0);
	assert_int_equal(rows(f->db), 0);
}

/* The backlog is the rows not yet acknowledged, counted by a flush (at most once a second). */
static void
test_backlog(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(outbox_backlog(f->ob), 0);
	add_committed(f->db, 1, 5);
	assert_int_equal(outbox_backlog(f->ob), 0); /* not counted until a flush */
	assert_int_equal(outbox_flush(f->ob), 5);
	assert_int_equal(outbox_backlog(f->ob), 5);
	complete(0, 1);
	complete(1, 1);
	complete(2, 1);
	sleep_ms(1100);
	assert_int_equal(outbox_flush(f->ob), 0);
	assert_int_equal(outbox_backlog(f->ob), 2);
	complete_all(1);
	sleep_ms(1100);
	assert_int_equal(outbox_flush(f->ob), 0);
	assert_int_equal(outbox_backlog(f->ob), 0);
}

/*
 * The outbox hands mq only what its publish window can take; the rest wait
 * in the table.  Once half the window is free again a completion wakes the
 * thread in outbox_wait(), whose flush sends the rest.
 */
static void
window_and_kick(struct fixture *f, int window)
{
	int total = window + 100;

	fake.window = window;
	add_committed(f->db, 1, total);
	assert_int_equal(outbox_flush(f->ob), window);
	assert_int_equal(fake.n, window);
	assert_int_equal(outbox_flush(f->ob), 0); /* the window is full */
	assert_int_equal(outbox_wait(f->ob, 0), 0);
	for (int i = 0; i < window / 2 - 1; i++)
		complete((size_t)i, 1);
	assert_int_equal(outbox_wait(f->ob, 0), 0); /* not half free yet */
	complete((size_t)(window / 2 - 1), 1);
	assert_int_equal(outbox_wait(f->ob, 0), 1); /* now it is */
	assert_int_equal(outbox_flush(f->ob), window / 2 < 100 ? window / 2 : 100);
	complete_all(1);
	while (outbox_flush(f->ob) > 0)
		complete_all(1);
	assert_int_equal(fake.n, total);
	for (int i = 0; i < total; i++) {
		char topic[32];

		snprintf(topic, sizeof(topic), "t/%d", i + 1);
		if (strcmp(fake.v[i].topic, topic) != 0)
			fail_msg("publish %d is %s, want %s: out of order or sent twice", i, fake.v[i].topic, topic);
	}
	assert_int_equal(outbox_flush(f->ob), 0);
	assert_int_equal(rows(f->db), 0);
}

static void
test_window_and_kick(void **state)
{
	window_and_kick(*state, MQ_WINDOW);
}

/* A client configured with a smaller window (mq_config.window): half of that one wakes the flush. */
static void
test_small_window_and_kick(void **state)
{
	window_and_kick(*state, 100);
}

static void
test_kick_and_wait(void **state)
{
	struct fixture *f = *state;
	int64_t t0;

	t0 = mono_ms();
	assert_int_equal(outbox_wait(f->ob, 50), 0);
	assert_true(mono_ms() - t0 >= 45);
	outbox_kick(f->ob);
	t0 = mono_ms();
	assert_int_equal(outbox_wait(f->ob, 5000), 1);
	assert_true(mono_ms() - t0 < 1000);
	assert_int_equal(outbox_wait(f->ob, 0), 0); /* a kick is taken once */
}

/* A failed insert (a broken table) is reported, for the caller to roll back. */
static void
test_add_failure_reported(void **state)
{
	struct fixture *f = *state;

	db_lock(f->db);
	assert_int_equal(db_exec(f->db, "DROP TABLE outbox"), 0);
	assert_int_equal(outbox_add(f->db, "t/1", "x", 1, 1, 0, 0), -1);
	assert_int_equal(db_exec(f->db, OUTBOX_SCHEMA), 0);
	db_unlock(f->db);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_publishes_what_was_added, setup, teardown),
		cmocka_unit_test_setup_teardown(test_kept_until_acknowledged, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rolled_back_never_sent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failed_publish_resent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refused_publish_kept, setup, teardown),
		cmocka_unit_test_setup_teardown(test_resent_after_retry_ms, setup, teardown),
		cmocka_unit_test_setup_teardown(test_young_rows_not_resent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_resend_while_broker_answers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restart_resends_unacknowledged, setup, teardown),
		cmocka_unit_test_setup_teardown(test_backlog, setup, teardown),
		cmocka_unit_test_setup_teardown(test_window_and_kick, setup, teardown),
		cmocka_unit_test_setup_teardown(test_small_window_and_kick, setup, teardown),
		cmocka_unit_test_setup_teardown(test_kick_and_wait, setup, teardown),
		cmocka_unit_test_setup_teardown(test_add_failure_reported, setup, teardown),
	};

	return cmocka_run_group_tests_name("outbox", tests, NULL, NULL);
}

#include "outbox.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "outbox_impl.h"
#include "util.h"

struct outbox_ack {
	struct outbox *ob;
	int64_t id;
};

int
outbox_init(struct outbox *ob, struct mq *mq, int64_t retry_ms)
{
	pthread_condattr_t ca;

	ob->mq = mq;
	ob->retry_ms = retry_ms;
	ob->last_retry = ob->last_done = mono_ms();
	pthread_mutex_init(&ob->lock, NULL);
	if (pthread_condattr_init(&ca) != 0 || pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) != 0 ||
	    pthread_cond_init(&ob->wake, &ca) != 0) {
		pthread_mutex_destroy(&ob->lock);
		return -1;
	}
	pthread_condattr_destroy(&ca);
	return 0;
}

struct outbox *
outbox_new(struct db *db, struct mq *mq, int64_t retry_ms)
{
	struct outbox *ob;

	if ((ob = calloc(1, sizeof(*ob))) == NULL)
		return NULL;
	ob->kind = OUTBOX_SQLITE;
	ob->db = db;
	if (outbox_init(ob, mq, retry_ms) != 0) {
		free(ob);
		return NULL;
	}
	return ob;
}

void
outbox_free(struct outbox *ob)
{
	if (ob == NULL)
		return;
	if (ob->ops != NULL)
		ob->ops->fini(ob);
	pthread_mutex_destroy(&ob->lock);
	pthread_cond_destroy(&ob->wake);
	free(ob->acked);
	free(ob->failed);
	free(ob);
}

int
outbox_add(struct db *db, const char *topic, const void *payload, size_t len, int qos, int retained,
    unsigned expiry_s)
{
	sqlite3_stmt *st;
	int rc;

	st = db_prepare(db, "INSERT INTO outbox(topic, payload, qos, retained, expiry_s, created_ms) "
			    "VALUES (?, ?, ?, ?, ?, ?)");
	if (st == NULL)
		return -1;
	sqlite3_bind_text(st, 1, topic, -1, SQLITE_STATIC);
	sqlite3_bind_blob(st, 2, payload, (int)len, SQLITE_STATIC);
	sqlite3_bind_int(st, 3, qos);
	sqlite3_bind_int(st, 4, retained);
	sqlite3_bind_int64(st, 5, expiry_s);
	sqlite3_bind_int64(st, 6, now_ms());
	rc = sqlite3_step(st);
	db_done(db, st);
	if (rc != SQLITE_DONE) {
		log_error("outbox insert failed", "err=%s", LOGQ(db_errmsg(db)));
		return -1;
	}
	return 0;
}

void
outbox_push_id(int64_t **arr, size_t *n, size_t *cap, int64_t id)
{
	if (*n == *cap) {
		size_t c = *cap ? *cap * 2 : 64;
		int64_t *a = realloc(*arr, c * sizeof(*a));
		if (a == NULL)
			return;
		*arr = a;
		*cap = c;
	}
	(*arr)[(*n)++] = id;
}

/* Runs on paho's thread: only records the outcome; the next flush deletes or re-sends the row. */
static void
on_done(void *arg, int ok)
{
	struct outbox_ack *a = arg;
	struct outbox *ob = a->ob;

	pthread_mutex_lock(&ob->lock);
	ob->inflight--;
	ob->last_done = mono_ms();
	if (ok)
		outbox_push_id(&ob->acked, &ob->nacked, &ob->capacked, a->id);
	else
		outbox_push_id(&ob->failed, &ob->nfailed, &ob->capfailed, a->id);
	if (ob->starved && mq_window_free(ob->mq) >= mq_window(ob->mq) / 2) {
		ob->starved = 0;
		ob->kicked = 1;
		pthread_cond_signal(&ob->wake);
	}
	pthread_mutex_unlock(&ob->lock);
	free(a);
}

static void
delete_acked(struct outbox *ob)
{
	int64_t *ids;
	size_t n;
	sqlite3_stmt *st;

	pthread_mutex_lock(&ob->lock);
	ids = ob->acked;
	n = ob->nacked;
	ob->acked = NULL;
	ob->nacked = ob->capacked = 0;
	pthread_mutex_unlock(&ob->lock);
	if (n == 0) {
		free(ids);
		return;
	}
	if ((st = db_prepare(ob->db, "DELETE FROM outbox WHERE id = ?")) != NULL) {
		db_begin(ob->db);
		for (size_t i = 0; i < n; i++) {
			sqlite3_bind_int64(st, 1, ids[i]);
			sqlite3_step(st);
			sqlite3_reset(st);
		}
		db_done(ob->db, st);
		db_commit(ob->db);
	}
	free(ids);
}

/* Loads up to max (at most OUTBOX_BATCH) rows with id > after (and, if before_ms > 0, created before it). */
static size_t
load_rows(struct outbox *ob, int64_t after, int64_t upto, int64_t before_ms, struct outbox_row *rows, int max)
{
	sqlite3_stmt *st;
	size_t n = 0;

	st = db_prepare(ob->db, "SELECT id, topic, payload, qos, retained, expiry_s FROM outbox "
				"WHERE id > ? AND id <= ? AND created_ms < ? ORDER BY id LIMIT ?");
	if (st == NULL)
		return 0;
	sqlite3_bind_int64(st, 1, after);
	sqlite3_bind_int64(st, 2, upto);
	sqlite3_bind_int64(st, 3, before_ms > 0 ? before_ms : INT64_MAX);
	if (max > OUTBOX_BATCH)
		max = OUTBOX_BATCH;
	sqlite3_bind_int(st, 4, max);
	while (n < (size_t)max && sqlite3_step(st) == SQLITE_ROW) {
		struct outbox_row *r = &rows[n];
		const void *blob = sqlite3_column_blob(st, 2);

		r->id = sqlite3_column_int64(st, 0);
		r->topic = strdup((const char *)sqlite3_column_text(st, 1));
		r->len = (size_t)sqlite3_column_bytes(st, 2);
		r->payload = malloc(r->len > 0 ? r->len : 1);
		if (r->topic == NULL || r->payload == NULL) {
			free(r->topic);
			free(r->payload);
			break;
		}
		if (r->len > 0)
			memcpy(r->payload, blob, r->len);
		r->qos = sqlite3_column_int(st, 3);
		r->retained = sqlite3_column_int(st, 4);
		r->expiry_s = (unsigned)sqlite3_column_int64(st, 5);
		n++;
	}
	db_done(ob->db, st);
	return n;
}

static int64_t
count_rows(struct outbox *ob)
{
	sqlite3_stmt *st = db_prepare(ob->db, "SELECT count(*) FROM outbox");
	int64_t n = 0;

	if (st != NULL && sqlite3_step(st) == SQLITE_ROW)
		n = sqlite3_column_int64(st, 0);
	db_done(ob->db, st);
	return n;
}

int
outbox_send_rows(struct outbox *ob, struct outbox_row *rows, size_t n)
{
	int sent = 0;

	for (size_t i = 0; i < n; i++) {
		struct mq_publish p;
		struct outbox_ack *a = malloc(sizeof(*a));

		memset(&p, 0, sizeof(p));
		p.topic = rows[i].topic;
		p.payload = rows[i].payload;
		p.len = rows[i].len;
		p.qos = rows[i].qos;
		p.retained = rows[i].retained;
		p.expiry_s = rows[i].expiry_s;
		if (a != NULL) {
			a->ob = ob;
			a->id = rows[i].id;
			p.done = on_done;
			p.done_arg = a;
		}
		if (a != NULL) {
			pthread_mutex_lock(&ob->lock);
			ob->inflight++;
			pthread_mutex_unlock(&ob->lock);
		}
		if (a != NULL && mq_publish(ob->mq, &p) == 0)
			sent++;
		else if (a != NULL) {
			/* refused: stays in the table and is sent again by the next flush */
			pthread_mutex_lock(&ob->lock);
			ob->inflight--;
			outbox_push_id(&ob->failed, &ob->nfailed, &ob->capfailed, rows[i].id);
			pthread_mutex_unlock(&ob->lock);
			free(a);
		}
		free(rows[i].topic);
		free(rows[i].payload);
	}
	return sent;
}

/* Re-sends the rows paho gave up on (those still in the table).  Called with the db locked; returns with it locked. */
static int
resend_failed(struct outbox *ob, struct outbox_row *rows)
{
	int64_t *ids;
	size_t n, k = 0;
	int sent = 0;

	pthread_mutex_lock(&ob->lock);
	ids = ob->failed;
	n = ob->nfailed;
	ob->failed = NULL;
	ob->nfailed = ob->capfailed = 0;
	pthread_mutex_unlock(&ob->lock);
	for (size_t i = 0; i < n; i++) {
		/* each id is a one-row range (id - 1, id] of rows of any age */
		if (load_rows(ob, ids[i] - 1, ids[i], 0, &rows[k], 1) == 1)
			k++;
		if (k == OUTBOX_BATCH || (i == n - 1 && k > 0)) {
			log_warn("outbox: re-sending messages the broker did not take", "count=%zu", k);
			db_unlock(ob->db);
			sent += outbox_send_rows(ob, rows, k);
			db_lock(ob->db);
			k = 0;
		}
	}
	free(ids);
	return sent;
}

int
outbox_flush(struct outbox *ob)
{
	struct outbox_row *rows;
	int64_t high, now = mono_ms();
	size_t n;
	int sent = 0, retry = 0;

	if (ob->ops != NULL)
		return ob->ops->flush(ob); /* PostgreSQL: a table the instances share, never held (outbox_hold()) */
	if (outbox_held(ob)) {
		/* nothing goes out, so nothing in flight is late: the retry scan counts from the hold's end */
		pthread_mutex_lock(&ob->lock);
		ob->last_done = ob->last_retry = now;
		pthread_mutex_unlock(&ob->lock);
		return 0;
	}
	if ((rows = calloc(OUTBOX_BATCH, sizeof(*rows))) == NULL)
		return -1;
	db_lock(ob->db);
	delete_acked(ob);
	/* new rows: claim them under the lock so two flushers never send the same ones */
	for (;;) {
		int room;

		room = mq_window_free(ob->mq);
		pthread_mutex_lock(&ob->lock);
		high = ob->high;
		ob->starved = room <= 0;
		pthread_mutex_unlock(&ob->lock);
		if (room <= 0)
			break; /* a completion kicks the next flush once half the window is free (starved) */
		n = load_rows(ob, high, INT64_MAX, 0, rows, room);
		if (n == 0)
			break;
		pthread_mutex_lock(&ob->lock);
		ob->high = rows[n - 1].id;
		pthread_mutex_unlock(&ob->lock);
		db_unlock(ob->db);
		sent += outbox_send_rows(ob, rows, n);
		db_lock(ob->db);
	}
	sent += resend_failed(ob, rows);
	/* old rows nobody holds: only possible from before a restart, or if paho lost one */
	pthread_mutex_lock(&ob->lock);
	if (now - ob->last_retry >= ob->retry_ms) {
		ob->last_retry = now;
		retry = ob->inflight == 0 || now - ob->last_done >= ob->retry_ms;
	}
	high = ob->high;
	pthread_mutex_unlock(&ob->lock);
	if (retry) {
		int64_t after = 0;
		while ((n = load_rows(ob, after, high, now_ms() - ob->retry_ms, rows, OUTBOX_BATCH)) > 0) {
			after = rows[n - 1].id;
			log_warn("outbox: re-sending unacknowledged messages", "count=%zu", n);
			db_unlock(ob->db);
			sent += outbox_send_rows(ob, rows, n);
			db_lock(ob->db);
		}
	}
	/* the gauge needs no more than one count a second; a count is a table scan */
	if (now - ob->last_count >= 1000 || retry) {
		ob->backlog = count_rows(ob);
		ob->last_count = now;
	}
	db_unlock(ob->db);
	free(rows);
	return sent;
}

void
outbox_kick(struct outbox *ob)
{
	pthread_mutex_lock(&ob->lock);
	ob->kicked = 1;
	pthread_cond_signal(&ob->wake);
	pthread_mutex_unlock(&ob->lock);
}

int
outbox_wait(struct outbox *ob, int timeout_ms)
{
	struct timespec until;
	int kicked;

	clock_after_ms(CLOCK_MONOTONIC, timeout_ms, &until);
	pthread_mutex_lock(&ob->lock);
	while (!ob->kicked && pthread_cond_timedwait(&ob->wake, &ob->lock, &until) == 0)
		;
	kicked = ob->kicked;
	ob->kicked = 0;
	pthread_mutex_unlock(&ob->lock);
	return kicked;
}

void
outbox_hold(struct outbox *ob, int64_t until_ms)
{
	if (ob->kind != OUTBOX_SQLITE)
		return;
	pthread_mutex_lock(&ob->lock);
	ob->hold_until = until_ms;
	pthread_mutex_unlock(&ob->lock);
}

int
outbox_held(struct outbox *ob)
{
	int held;

	pthread_mutex_lock(&ob->lock);
	held = ob->hold_until > mono_ms();
	pthread_mutex_unlock(&ob->lock);
	return held;
}

int64_t
outbox_backlog(struct outbox *ob)
{
	int64_t n;

	if (ob->kind != OUTBOX_SQLITE) {
		pthread_mutex_lock(&ob->lock);
		n = ob->backlog;
		pthread_mutex_unlock(&ob->lock);
		return n;
	}
	db_lock(ob->db);
	n = ob->backlog;
	db_unlock(ob->db);
	return n;
}

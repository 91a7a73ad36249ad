/*
 * store_sqlite.c - the notifier's store on SQLite (db.h) and the
 * transactional outbox (outbox.h), for one notifier instance.  The table
 * names and columns are also what operators and the integration tests
 * query (docs/debugging.md).
 */
#include "store_backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "log.h"
#include "outbox.h"
#include "topic.h"
#include "util.h"

#define NSTORE_SCHEMA                                                                                      \
	OUTBOX_SCHEMA                                                                                      \
	"CREATE TABLE IF NOT EXISTS orders (order_id TEXT PRIMARY KEY, user_id TEXT NOT NULL,"            \
	"  items TEXT NOT NULL, callback_url TEXT, placed_ms INTEGER NOT NULL);"                            \
	"CREATE TABLE IF NOT EXISTS alerts (order_id TEXT PRIMARY KEY, user_id TEXT NOT NULL,"            \
	"  event_id TEXT NOT NULL, ready_ms INTEGER NOT NULL);"                                             \
	"CREATE TABLE IF NOT EXISTS deliveries (delivery_id TEXT PRIMARY KEY, order_id TEXT NOT NULL UNIQUE," \
	"  user_id TEXT NOT NULL, url TEXT NOT NULL, body TEXT NOT NULL,"                                   \
	"  attempts INTEGER NOT NULL DEFAULT 0, next_ms INTEGER NOT NULL,"                                  \
	"  state TEXT NOT NULL DEFAULT 'pending', last_error TEXT,"                                         \
	"  created_ms INTEGER NOT NULL, done_ms INTEGER);"                                                  \
	"CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries(state, next_ms);"                        \
	"CREATE TABLE IF NOT EXISTS devices (user_id TEXT NOT NULL, device_id TEXT NOT NULL,"             \
	"  first_ms INTEGER NOT NULL, hello_ms INTEGER NOT NULL, PRIMARY KEY (user_id, device_id));"      \
	"CREATE TABLE IF NOT EXISTS device_alerts (user_id TEXT NOT NULL, device_id TEXT NOT NULL,"       \
	"  event_id TEXT NOT NULL, order_id TEXT NOT NULL, payload TEXT NOT NULL,"                        \
	"  expires_ms INTEGER NOT NULL, delivered_ms INTEGER, resends INTEGER NOT NULL DEFAULT 0,"         \
	"  PRIMARY KEY (user_id, device_id, event_id));"                                                  \
	"CREATE INDEX IF NOT EXISTS device_alerts_expiry ON device_alerts(expires_ms);"

struct sqstore {
	struct notifier_store base; /* first: store.c sees only this */
	struct db *db;
	struct outbox *outbox; /* NULL without an mq */
};

static void sq_close(struct notifier_store *ns);

static struct notifier_store *
sq_open(const char *path, struct mq *mq, int64_t retry_ms)
{
	struct sqstore *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return NULL;
	if ((s->db = db_open(path, NSTORE_SCHEMA)) == NULL)
		goto fail;
	if (mq != NULL && (s->outbox = outbox_new(s->db, mq, retry_ms)) == NULL) {
		log_error("out of memory", NULL);
		goto fail;
	}
	s->base.ops = &nstore_sqlite_ops;
	return &s->base;
fail:
	sq_close(&s->base);
	return NULL;
}

static void
sq_close(struct notifier_store *ns)
{
	struct sqstore *s = (struct sqstore *)ns;
	if (s == NULL)
		return;
	outbox_free(s->outbox);
	db_close(s->db);
	free(s);
}

static enum nstore_result
sq_put_order(struct notifier_store *ns, const struct event *placed)
{
	struct sqstore *s = (struct sqstore *)ns;
	char items[NSTORE_ITEMS_MAX + 1];
	sqlite3_stmt *st;
	int rc = -1;

	nstore_items_text(placed, items, sizeof(items));
	db_lock(s->db);
	st = db_prepare(s->db, "INSERT OR IGNORE INTO orders(order_id, user_id, items, callback_url, placed_ms) "
			       "VALUES (?, ?, ?, ?, ?)");
	if (st != NULL) {
		sqlite3_bind_text(st, 1, placed->order_id, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, placed->user_id, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 3, items, -1, SQLITE_STATIC);
		if (placed->callback_url[0] != '\0')
			sqlite3_bind_text(st, 4, placed->callback_url, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 5, placed->at_ms);
		rc = db_step_done(s->db, st, "insert order");
	}
	db_unlock(s->db);
	return rc < 0 ? NSTORE_FAIL : rc == 0 ? NSTORE_DUP : NSTORE_OK;
}

static enum nstore_result
sq_order(struct notifier_store *ns, const char *order_id, struct nstore_order *out)
{
	struct sqstore *s = (struct sqstore *)ns;
	enum nstore_result r = NSTORE_FAIL;
	sqlite3_stmt *q;
	int rc;

	out->items[0] = out->callback_url[0] = '\0';
	db_lock(s->db);
	if ((q = db_prepare(s->db, "SELECT items, callback_url FROM orders WHERE order_id = ?")) == NULL)
		goto out;
	sqlite3_bind_text(q, 1, order_id, -1, SQLITE_STATIC);
	if ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		const char *items = (const char *)sqlite3_column_text(q, 0);
		const char *cb = (const char *)sqlite3_column_text(q, 1);

		str_copy(out->items, sizeof(out->items), items != NULL ? items : "");
		str_copy(out->callback_url, sizeof(out->callback_url), cb != NULL ? cb : "");
		r = NSTORE_OK;
	} else if (rc == SQLITE_DONE)
		r = NSTORE_NOT_FOUND;
	else
		log_error("database error", "path=%s op=%s order_id=%s err=%s", LOGQ(db_path(s->db)), LOGQ("read order"),
		    order_id, LOGQ(db_errmsg(s->db)));
	db_done(s->db, q);
out:
	db_unlock(s->db);
	return r;
}

/* Queues m in the outbox: call with the lock held, inside a transaction.  0 or -1. */
static int
queue_msg(struct db *db, const struct nstore_msg *m)
{
	return outbox_add(db, m->topic, m->payload, m->len, m->qos, 0, m->expiry_s);
}

/* Stores a pending delivery for a's callback: call with the lock held, inside a transaction.  0 or -1. */
static int
add_delivery(struct db *db, const struct nstore_alert *a)
{
	char id[ID_LEN + 1];
	int64_t now = now_ms();
	sqlite3_stmt *st;

	id_new(id);
	st = db_prepare(db, "INSERT OR IGNORE INTO deliveries(delivery_id, order_id, user_id, url, body, next_ms, created_ms) "
			    "VALUES (?, ?, ?, ?, ?, ?, ?)");
	if (st == NULL)
		return -1;
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, a->order_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, a->user_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, a->callback_url, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, a->callback_body != NULL ? a->callback_body : "", -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 6, now);
	sqlite3_bind_int64(st, 7, now);
	return db_step_done(db, st, "insert callback delivery") < 0 ? -1 : 0;
}

/* Longest a device delivery is kept when its alert has no expiry: the notifier's own --alert-expiry cap. */
#define NO_EXPIRY_MS (604800LL * 1000)

/*
 * Stores a pending device delivery of a's alert for every device of its
 * user: call with the lock held, inside a transaction.  0 or -1.
 */
static int
add_device_alerts(struct db *db, const struct nstore_alert *a)
{
	int64_t expires = now_ms() + (a->msg.expiry_s > 0 ? (int64_t)a->msg.expiry_s * 1000 : NO_EXPIRY_MS);
	sqlite3_stmt *st;

	st = db_prepare(db, "INSERT OR IGNORE INTO device_alerts(user_id, device_id, event_id, order_id, payload, expires_ms) "
			    "SELECT user_id, device_id, ?, ?, ?, ? FROM devices WHERE user_id = ?");
	if (st == NULL)
		return -1;
	sqlite3_bind_text(st, 1, a->event_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, a->order_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, a->msg.payload, (int)a->msg.len, SQLITE_STATIC);
	sqlite3_bind_int64(st, 4, expires);
	sqlite3_bind_text(st, 5, a->user_id, -1, SQLITE_STATIC);
	return db_step_done(db, st, "insert device alerts") < 0 ? -1 : 0;
}

static enum nstore_result
sq_queue_alert(struct notifier_store *ns, const struct nstore_alert *a)
{
	struct sqstore *s = (struct sqstore *)ns;
	enum nstore_result r = NSTORE_FAIL;
	sqlite3_stmt *ins;
	int inserted = -1;

	db_lock(s->db);
	if (db_begin(s->db) != 0)
		goto out;
	/* the alerts row is the "sent once" record; only a new row queues an alert */
	ins = db_prepare(s->db, "INSERT OR IGNORE INTO alerts(order_id, user_id, event_id, ready_ms) VALUES (?, ?, ?, ?)");
	if (ins != NULL) {
		sqlite3_bind_text(ins, 1, a->order_id, -1, SQLITE_STATIC);
		sqlite3_bind_text(ins, 2, a->user_id, -1, SQLITE_STATIC);
		sqlite3_bind_text(ins, 3, a->event_id, -1, SQLITE_STATIC);
		sqlite3_bind_int64(ins, 4, a->ready_ms);
		inserted = db_step_done(s->db, ins, "insert alert");
	}
	if (inserted < 0 || (inserted == 1 && queue_msg(s->db, &a->msg) != 0) ||
	    (inserted == 1 && add_device_alerts(s->db, a) != 0) || (inserted == 1 && a->callback_url != NULL && a->callback_url[0] != '\0' && add_delivery(s->db, a) != 0) ||
	    db_commit(s->db) != 0) {
		db_rollback(s->db);
		goto out;
	}
	r = inserted == 1 ? NSTORE_OK : NSTORE_DUP;
out:
	db_unlock(s->db);
	return r;
}

static enum nstore_result
sq_due(struct notifier_store *ns, int64_t now, int limit, nstore_due_fn fn, void *arg)
{
	struct sqstore *s = (struct sqstore *)ns;
	enum nstore_result r = NSTORE_FAIL;
	sqlite3_stmt *st;
	int rc;

	db_lock(s->db);
	st = db_prepare(s->db, "SELECT delivery_id, order_id, user_id, url, body, attempts FROM deliveries "
			       "WHERE state = 'pending' AND next_ms <= ? ORDER BY next_ms LIMIT ?");
	if (st == NULL)
		goto out;
	sqlite3_bind_int64(st, 1, now);
	sqlite3_bind_int(st, 2, limit);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct nstore_delivery d = {
			.delivery_id = (const char *)sqlite3_column_text(st, 0),
			.order_id = (const char *)sqlite3_column_text(st, 1),
			.user_id = (const char *)sqlite3_column_text(st, 2),
			.url = (const char *)sqlite3_column_text(st, 3),
			.body = (const char *)sqlite3_column_text(st, 4),
			.attempts = sqlite3_column_int(st, 5),
		};

		if (fn(arg, &d) != 0) {
			rc = SQLITE_DONE;
			break;
		}
	}
	if (rc == SQLITE_DONE)
		r = NSTORE_OK;
	else
		log_error("database error", "path=%s op=%s err=%s", LOGQ(db_path(s->db)), LOGQ("read due deliveries"),
		    LOGQ(db_errmsg(s->db)));
	db_done(s->db, st);
out:
	db_unlock(s->db);
	return r;
}

static const char *
state_name(enum nstore_delivery_state state)
{
	return state == NSTORE_DELIVERED ? "delivered" : state == NSTORE_FAILED ? "failed" : "pending";
}

static enum nstore_result
sq_record_attempt(struct notifier_store *ns, const struct nstore_attempt *a)
{
	struct sqstore *s = (struct sqstore *)ns;
	enum nstore_result r = NSTORE_FAIL;
	int final = a->state != NSTORE_PENDING, changed = -1;
	sqlite3_stmt *st;

	db_lock(s->db);
	if (db_begin(s->db) != 0)
		goto out;
	st = db_prepare(s->db, "UPDATE deliveries SET attempts = ?, state = ?, last_error = ?, next_ms = ?, done_ms = ? "
			       "WHERE delivery_id = ?");
	if (st != NULL) {
		sqlite3_bind_int(st, 1, a->attempts);
		sqlite3_bind_text(st, 2, state_name(a->state), -1, SQLITE_STATIC);
		if (a->last_error != NULL)
			sqlite3_bind_text(st, 3, a->last_error, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 4, final ? a->at_ms : a->next_ms);
		if (final)
			sqlite3_bind_int64(st, 5, a->at_ms);
		sqlite3_bind_text(st, 6, a->delivery_id, -1, SQLITE_STATIC);
		changed = db_step_done(s->db, st, "update callback delivery");
	}
	if (changed == 0)
		r = NSTORE_NOT_FOUND;
	if (changed != 1 || (a->announce != NULL && queue_msg(s->db, a->announce) != 0) || db_commit(s->db) != 0) {
		db_rollback(s->db);
		goto out;
	}
	r = NSTORE_OK;
out:
	db_unlock(s->db);
	return r;
}

/*
 * Queues again every row st (prepared and bound, selecting user_id,
 * device_id, payload, expires_ms) yields, each to its device's alerts
 * topic with what is left of its expiry, and gives st back.  Call with
 * the lock held, inside a transaction.  Returns how many, or -1.
 */
static int
resend_rows(struct db *db, sqlite3_stmt *st, int64_t now)
{
	int n = 0, rc;

	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *user = (const char *)sqlite3_column_text(st, 0), *dev = (const char *)sqlite3_column_text(st, 1);
		const char *payload = (const char *)sqlite3_column_text(st, 2);
		int64_t left = sqlite3_column_int64(st, 3) - now;
		char topic[TOPIC_MAX];
		struct nstore_msg m = { topic, payload, (size_t)sqlite3_column_bytes(st, 2), 1,
			(unsigned)((left + 999) / 1000) };

		if (user == NULL || dev == NULL || payload == NULL ||
		    topic_device(topic, sizeof(topic), user, dev, "alerts") != 0 || queue_msg(db, &m) != 0) {
			rc = SQLITE_ERROR;
			break;
		}
		n++;
	}
	if (rc != SQLITE_DONE && rc != SQLITE_ROW)
		log_error("database error", "path=%s op=%s err=%s", LOGQ(db_path(db)), LOGQ("read pending device alerts"),
		    LOGQ(db_errmsg(db)));
	db_done(db, st);
	return rc == SQLITE_DONE ? n : -1;
}

/*
 * Queues again every alert pending and not expired at now for user_id's
 * device (both NULL: every device's), and counts the resend on each.
 * Call with the lock held, inside a transaction.  Returns how many, or -1.
 */
static int
resend_pending(struct db *db, const char *user_id, const char *device, int64_t now)
{
	sqlite3_stmt *st;
	int n = -1;

	if ((st = db_prepare(db, "SELECT user_id, device_id, payload, expires_ms FROM device_alerts "
				 "WHERE (?1 IS NULL OR user_id = ?1) AND (?2 IS NULL OR device_id = ?2) AND "
				 "delivered_ms IS NULL AND expires_ms > ?3 ORDER BY rowid")) == NULL)
		return -1;
	sqlite3_bind_text(st, 1, user_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, device, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, now);
	if ((n = resend_rows(db, st, now)) <= 0)
		return n;
	if ((st = db_prepare(db, "UPDATE device_alerts SET resends = resends + 1 WHERE (?1 IS NULL OR user_id = ?1) AND "
				 "(?2 IS NULL OR device_id = ?2) AND delivered_ms IS NULL AND expires_ms > ?3")) == NULL)
		return -1;
	sqlite3_bind_text(st, 1, user_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, device, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, now);
	return db_step_done(db, st, "count resends") < 0 ? -1 : n;
}

/* Records user_id's device (NULL: none) and resends what is pending, in one transaction. */
static enum nstore_result
hello(struct sqstore *s, const char *user_id, const char *device, int64_t now, int *resent)
{
	enum nstore_result r = NSTORE_FAIL;
	sqlite3_stmt *st;
	int n = -1;

	db_lock(s->db);
	if (db_begin(s->db) != 0)
		goto out;
	if (device == NULL)
		n = resend_pending(s->db, NULL, NULL, now);
	else if ((st = db_prepare(s->db, "INSERT INTO devices(user_id, device_id, first_ms, hello_ms) VALUES (?, ?, ?, ?) "
					 "ON CONFLICT(user_id, device_id) DO UPDATE SET hello_ms = excluded.hello_ms")) != NULL) {
		sqlite3_bind_text(st, 1, user_id, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, device, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 3, now);
		sqlite3_bind_int64(st, 4, now);
		if (db_step_done(s->db, st, "record device") == 1)
			n = resend_pending(s->db, user_id, device, now);
	}
	if (n < 0 || db_commit(s->db) != 0) {
		db_rollback(s->db);
		goto out;
	}
	if (resent != NULL)
		*resent = n;
	r = NSTORE_OK;
out:
	db_unlock(s->db);
	return r;
}

static enum nstore_result
sq_hello(struct notifier_store *ns, const char *user_id, const char *device, int64_t now, int *resent)
{
	return hello((struct sqstore *)ns, user_id, device, now, resent);
}

static enum nstore_result
sq_resend_all(struct notifier_store *ns, int64_t now, int *resent)
{
	return hello((struct sqstore *)ns, NULL, NULL, now, resent);
}

/* 1 when a row of q (prepared, with its first parameters bound by the caller) exists, 0 when none, -1 on error. */
static int
exists(struct db *db, sqlite3_stmt *q)
{
	int rc = sqlite3_step(q);

	db_done(db, q);
	if (rc == SQLITE_ROW)
		return 1;
	if (rc == SQLITE_DONE)
		return 0;
	log_error("database error", "path=%s op=%s err=%s", LOGQ(db_path(db)), LOGQ("look up a receipt's alert"),
	    LOGQ(db_errmsg(db)));
	return -1;
}

static enum nstore_result
sq_receipt(struct notifier_store *ns, const char *user_id, const char *device, const char *event_id,
    const char *order_id, int64_t now)
{
	struct sqstore *s = (struct sqstore *)ns;
	enum nstore_result r = NSTORE_FAIL;
	sqlite3_stmt *st;
	int changed, found;

	db_lock(s->db);
	st = db_prepare(s->db, "UPDATE device_alerts SET delivered_ms = ? WHERE user_id = ? AND device_id = ? AND "
			       "event_id = ? AND order_id = ? AND delivered_ms IS NULL");
	if (st == NULL)
		goto out;
	sqlite3_bind_int64(st, 1, now);
	sqlite3_bind_text(st, 2, user_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, device, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, event_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, order_id, -1, SQLITE_STATIC);
	if ((changed = db_step_done(s->db, st, "record receipt")) != 0) {
		r = changed > 0 ? NSTORE_OK : NSTORE_FAIL;
		goto out;
	}
	/* nothing pending: delivered before, an alert this device was not waiting for, or no such alert */
	st = db_prepare(s->db, "SELECT 1 FROM device_alerts WHERE user_id = ? AND device_id = ? AND event_id = ? AND "
			       "order_id = ?");
	if (st == NULL)
		goto out;
	sqlite3_bind_text(st, 1, user_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, device, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, event_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, order_id, -1, SQLITE_STATIC);
	if ((found = exists(s->db, st)) != 0) {
		r = found > 0 ? NSTORE_DUP : NSTORE_FAIL;
		goto out;
	}
	st = db_prepare(s->db, "SELECT 1 FROM alerts WHERE user_id = ? AND event_id = ? AND order_id = ?");
	if (st == NULL)
		goto out;
	sqlite3_bind_text(st, 1, user_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, event_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, order_id, -1, SQLITE_STATIC);
	found = exists(s->db, st);
	r = found > 0 ? NSTORE_OK : found == 0 ? NSTORE_NOT_FOUND : NSTORE_FAIL;
out:
	db_unlock(s->db);
	return r;
}

static int64_t
sq_pending(struct notifier_store *ns, int64_t now)
{
	struct sqstore *s = (struct sqstore *)ns;
	sqlite3_stmt *st;
	int64_t n = -1;

	db_lock(s->db);
	st = db_prepare(s->db, "SELECT count(*) FROM device_alerts WHERE delivered_ms IS NULL AND expires_ms > ?");
	if (st != NULL) {
		sqlite3_bind_int64(st, 1, now);
		if (sqlite3_step(st) == SQLITE_ROW)
			n = sqlite3_column_int64(st, 0);
	}
	db_done(s->db, st);
	db_unlock(s->db);
	return n;
}

static int
sq_expire(struct notifier_store *ns, int64_t now)
{
	struct sqstore *s = (struct sqstore *)ns;
	sqlite3_stmt *st;
	int n = -1;

	db_lock(s->db);
	if ((st = db_prepare(s->db, "DELETE FROM device_alerts WHERE expires_ms <= ?")) != NULL) {
		sqlite3_bind_int64(st, 1, now);
		n = db_step_done(s->db, st, "expire device alerts");
	}
	db_unlock(s->db);
	return n;
}

static int
sq_flush(struct notifier_store *ns)
{
	struct sqstore *s = (struct sqstore *)ns;
	return s->outbox != NULL ? outbox_flush(s->outbox) : 0;
}

static int64_t
sq_backlog(struct notifier_store *ns)
{
	struct sqstore *s = (struct sqstore *)ns;
	return s->outbox != NULL ? outbox_backlog(s->outbox) : 0;
}

static int
sq_probe(struct notifier_store *ns)
{
	return db_probe_write(((struct sqstore *)ns)->db);
}

const struct nstore_ops nstore_sqlite_ops = {
	.name = "sqlite",
	.open = sq_open,
	.close = sq_close,
	.put_order = sq_put_order,
	.order = sq_order,
	.queue_alert = sq_queue_alert,
	.hello = sq_hello,
	.resend_all = sq_resend_all,
	.receipt = sq_receipt,
	.pending = sq_pending,
	.expire = sq_expire,
	.due = sq_due,
	.record_attempt = sq_record_attempt,
	.flush = sq_flush,
	.backlog = sq_backlog,
	.probe = sq_probe,
};

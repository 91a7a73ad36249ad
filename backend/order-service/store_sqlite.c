/*
 * store_sqlite.c - order-service's store on a SQLite file (the default;
 * store_backend.h): one handle for every thread, under db_lock(), and the
 * outbox in the same file.
 */
#include "store_backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "event.h"
#include "log.h"
#include "outbox.h"
#include "topic.h"

#define OSTORE_SCHEMA                                                                            \
	OUTBOX_SCHEMA                                                                            \
	"CREATE TABLE IF NOT EXISTS orders ("                                                    \
	"  order_id TEXT PRIMARY KEY, user_id TEXT NOT NULL, items TEXT NOT NULL,"               \
	"  callback_url TEXT, via TEXT NOT NULL, created_ms INTEGER NOT NULL,"                   \
	"  event TEXT NOT NULL DEFAULT '', stage INTEGER NOT NULL DEFAULT 0,"                    \
	"  progress_ms INTEGER NOT NULL DEFAULT 0, republished INTEGER NOT NULL DEFAULT 0);"      \
	"CREATE INDEX IF NOT EXISTS orders_user ON orders(user_id, order_id);"                   \
	"CREATE TABLE IF NOT EXISTS idempotency ("                                               \
	"  user_id TEXT NOT NULL, key TEXT NOT NULL, request_hash TEXT NOT NULL,"                \
	"  order_id TEXT NOT NULL, created_ms INTEGER NOT NULL,"                                 \
	"  PRIMARY KEY (user_id, key));"                                                         \
	"CREATE TABLE IF NOT EXISTS accounts ("                                                  \
	"  user_id TEXT PRIMARY KEY, hash TEXT NOT NULL, created_ms INTEGER NOT NULL,"           \
	"  tokens_after INTEGER NOT NULL DEFAULT 0);"                                            \
	"CREATE TABLE IF NOT EXISTS devices ("                                                   \
	"  user_id TEXT NOT NULL, device TEXT NOT NULL, created_ms INTEGER NOT NULL,"            \
	"  login_ms INTEGER NOT NULL, PRIMARY KEY (user_id, device));"                           \
	"CREATE TABLE IF NOT EXISTS revoked_tokens (mac TEXT PRIMARY KEY, expiry INTEGER NOT NULL);"

static void *
sq_open(const char *path)
{
	struct db *db = db_open(path, OSTORE_SCHEMA);

	if (db == NULL)
		return NULL;
	/* stores made before supervision */
	if (db_add_column(db, "orders", "event", "event TEXT NOT NULL DEFAULT ''") != 0 ||
	    db_add_column(db, "orders", "stage", "stage INTEGER NOT NULL DEFAULT 0") != 0 ||
	    db_add_column(db, "orders", "progress_ms", "progress_ms INTEGER NOT NULL DEFAULT 0") != 0 ||
	    db_add_column(db, "orders", "republished", "republished INTEGER NOT NULL DEFAULT 0") != 0 ||
	    db_exec(db, "CREATE INDEX IF NOT EXISTS orders_open ON orders(stage, progress_ms)") != 0) {
		db_close(db);
		return NULL;
	}
	return db;
}

static void
sq_close(void *b)
{
	db_close(b);
}

static struct outbox *
sq_outbox_new(void *b, struct mq *mq, int64_t retry_ms)
{
	return outbox_new(b, mq, retry_ms);
}

static int
sq_probe(void *b)
{
	return db_probe_write(b);
}

/* Runs one kept statement without results (SAVEPOINT and friends).  Returns 0 or -1.  Db locked. */
static int
step_sql(struct db *db, const char *sql)
{
	sqlite3_stmt *st = db_prepare(db, sql);
	int rc = st != NULL && sqlite3_step(st) == SQLITE_DONE ? 0 : -1;

	db_done(db, st);
	return rc;
}

/*
 * Looks up o's idempotency key.  Returns OSTORE_OK (found: its request hash
 * copied into hash, its order into o->replayed_order_id), OSTORE_NOT_FOUND
 * or OSTORE_FAIL.  Db locked.
 */
static enum ostore_result
idem_lookup(struct db *db, struct ostore_order *o, char hash[65])
{
	sqlite3_stmt *st = db_prepare(db, "SELECT request_hash, order_id FROM idempotency WHERE user_id = ? AND key = ?");
	enum ostore_result rc = OSTORE_FAIL;

	if (st == NULL)
		return OSTORE_FAIL;
	sqlite3_bind_text(st, 1, o->user_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, o->idem_key, -1, SQLITE_STATIC);
	switch (sqlite3_step(st)) {
	case SQLITE_ROW:
		snprintf(hash, 65, "%s", (const char *)sqlite3_column_text(st, 0));
		snprintf(o->replayed_order_id, sizeof(o->replayed_order_id), "%s", (const char *)sqlite3_column_text(st, 1));
		rc = OSTORE_OK;
		break;
	case SQLITE_DONE:
		rc = OSTORE_NOT_FOUND;
		break;
	}
	db_done(db, st);
	return rc;
}

/* Returns 0 or -1 (logged).  Db locked. */
static int
idem_insert(struct db *db, const struct ostore_order *o, int64_t now)
{
	sqlite3_stmt *st = db_prepare(db, "INSERT INTO idempotency(user_id, key, request_hash, order_id, created_ms) "
					  "VALUES (?, ?, ?, ?, ?)");

	if (st == NULL)
		return -1;
	sqlite3_bind_text(st, 1, o->user_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, o->idem_key, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, o->request_hash, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, o->order_id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 5, now);
	return db_step_done(db, st, "insert idempotency key") < 0 ? -1 : 0;
}

/* Returns 0 or -1 (logged).  Db locked. */
static int
order_insert(struct db *db, const struct ostore_order *o, int64_t now)
{
	sqlite3_stmt *st = db_prepare(db, "INSERT INTO orders(order_id, user_id, items, callback_url, via, created_ms, "
					  "event, progress_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
	int rc;

	if (st == NULL)
		return -1;
	sqlite3_bind_text(st, 1, o->order_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, o->user_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, o->items, -1, SQLITE_STATIC);
	if (o->callback_url != NULL && o->callback_url[0] != '\0')
		sqlite3_bind_text(st, 4, o->callback_url, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, o->via, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 6, o->created_ms);
	sqlite3_bind_text(st, 7, o->event, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 8, now);
	if ((rc = sqlite3_step(st) == SQLITE_DONE ? 0 : -1) != 0)
		log_error("cannot record order", "order_id=%s err=%s", o->order_id, LOGQ(db_errmsg(db)));
	db_done(db, st);
	return rc;
}

/*
 * Records one order, its event and its idempotency key inside the batch's
 * transaction, under a savepoint so that a failure takes back only this
 * order.  Returns its result (OSTORE_OK, _REPLAYED, _CONFLICT, _FAIL).  Db
 * locked.
 */
static enum ostore_result
record_one(struct db *db, struct ostore_order *o, int64_t now)
{
	enum ostore_result rc = OSTORE_FAIL;

	if (step_sql(db, "SAVEPOINT intake_order") != 0)
		return OSTORE_FAIL;
	if (o->idem_key != NULL) {
		char old_hash[65];

		switch (idem_lookup(db, o, old_hash)) {
		case OSTORE_OK:
			rc = strcmp(old_hash, o->request_hash) == 0 ? OSTORE_REPLAYED : OSTORE_CONFLICT;
			goto rollback;
		case OSTORE_NOT_FOUND:
			break;
		default:
			goto rollback;
		}
		if (idem_insert(db, o, now) != 0)
			goto rollback;
	}
	if (order_insert(db, o, now) != 0 || outbox_add(db, TOPIC_PLACED, o->event, strlen(o->event), 1, 0, 0) != 0)
		goto rollback;
	return step_sql(db, "RELEASE intake_order") == 0 ? OSTORE_OK : OSTORE_FAIL;
rollback:
	step_sql(db, "ROLLBACK TO intake_order");
	step_sql(db, "RELEASE intake_order");
	return rc;
}

static enum ostore_result
sq_record(void *b, struct ostore_order *orders, int64_t now)
{
	struct db *db = b;
	struct ostore_order *o;

	db_lock(db);
	if (db_begin(db) != 0) {
		for (o = orders; o != NULL; o = o->next)
			o->result = OSTORE_FAIL;
		db_unlock(db);
		return OSTORE_FAIL;
	}
	for (o = orders; o != NULL; o = o->next)
		o->result = record_one(db, o, now);
	if (db_commit(db) != 0) {
		db_rollback(db);
		/*
		 * every answer of the batch goes: a replay or a conflict may have been
		 * decided from another order of this same batch, now rolled back
		 */
		for (o = orders; o != NULL; o = o->next)
			o->result = OSTORE_FAIL;
		db_unlock(db);
		return OSTORE_FAIL;
	}
	db_unlock(db);
	return OSTORE_OK;
}

static enum ostore_result
sq_expire_keys(void *b, int64_t before_ms, int *n)
{
	struct db *db = b;
	sqlite3_stmt *st;
	int changed = -1;

	db_lock(db);
	if ((st = db_prepare(db, "DELETE FROM idempotency WHERE created_ms < ?")) != NULL) {
		sqlite3_bind_int64(st, 1, before_ms);
		changed = db_step_done(db, st, "expire idempotency keys");
	}
	db_unlock(db);
	if (n != NULL)
		*n = changed < 0 ? 0 : changed;
	return changed < 0 ? OSTORE_FAIL : OSTORE_OK;
}

/* 1 if order_id is recorded, 0 if not, -1 on error.  Db locked. */
static int
order_exists(struct db *db, const char *order_id)
{
	sqlite3_stmt *st = db_prepare(db, "SELECT 1 FROM orders WHERE order_id = ?");
	int rc;

	if (st == NULL)
		return -1;
	sqlite3_bind_text(st, 1, order_id, -1, SQLITE_STATIC);
	switch (sqlite3_step(st)) {
	case SQLITE_ROW:
		rc = 1;
		break;
	case SQLITE_DONE:
		rc = 0;
		break;
	default:
		rc = -1;
	}
	db_done(db, st);
	return rc;
}

static enum ostore_result
sq_progress(void *b, const char *order_id, int stage, int64_t now, int64_t *created_ms)
{
	struct db *db = b;
	sqlite3_stmt *st;
	enum ostore_result rc = OSTORE_FAIL;
	int step;

	db_lock(db);
	st = db_prepare(db, "UPDATE orders SET stage = ?, progress_ms = ? WHERE order_id = ? AND stage < ? "
			       "RETURNING created_ms");
	if (st == NULL)
		goto out;
	sqlite3_bind_int(st, 1, stage);
	sqlite3_bind_int64(st, 2, now);
	sqlite3_bind_text(st, 3, order_id, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 4, stage);
	if ((step = sqlite3_step(st)) == SQLITE_ROW) {
		if (created_ms != NULL)
			*created_ms = sqlite3_column_int64(st, 0);
		/* the change is made; it is committed when the statement finishes */
		if (sqlite3_step(st) == SQLITE_DONE)
			rc = OSTORE_OK;
	} else if (step == SQLITE_DONE) {
		/* nothing moved: that far already, or unknown */
		switch (order_exists(db, order_id)) {
		case 1:
			rc = OSTORE_DUP;
			break;
		case 0:
			rc = OSTORE_NOT_FOUND;
			break;
		}
	}
	if (rc == OSTORE_FAIL)
		log_error("cannot record progress", "order_id=%s err=%s", order_id, LOGQ(db_errmsg(db)));
out:
	db_done(db, st);
	db_unlock(db);
	return rc;
}

/* Queues the stored OrderPlaced again with a fresh event id.  Returns 0, or -1.  Db locked, in a transaction. */
static int
republish_event(struct db *db, const char *stored)
{
	char *json = ostore_republished_event(stored);
	int rc;

	if (json == NULL)
		return -1;
	rc = outbox_add(db, TOPIC_PLACED, json, strlen(json), 1, 0, 0);
	free(json);
	return rc;
}

/*
 * Republishes the stalled orders ostore_republish_stalled() selects, inside
 * its transaction, filling out.  Returns how many, or -1.  Db locked.
 */
static int
republish(struct db *db, int64_t placed_before, int64_t moved_before, int64_t now, struct ostore_stalled *out,
    size_t max)
{
	sqlite3_stmt *sel, *upd;
	int n = 0;

	sel = db_prepare(db, "SELECT order_id, event, stage, republished FROM orders WHERE event != '' AND "
			     "((stage = 0 AND progress_ms < ?) OR (stage > 0 AND stage < ? AND progress_ms < ?)) LIMIT ?");
	upd = db_prepare(db, "UPDATE orders SET progress_ms = ?, republished = republished + 1 WHERE order_id = ?");
	if (sel == NULL || upd == NULL)
		goto fail;
	sqlite3_bind_int64(sel, 1, placed_before);
	sqlite3_bind_int(sel, 2, STATUS_READY);
	sqlite3_bind_int64(sel, 3, moved_before);
	sqlite3_bind_int64(sel, 4, (sqlite3_int64)max);
	while ((size_t)n < max && sqlite3_step(sel) == SQLITE_ROW) {
		const char *event = (const char *)sqlite3_column_text(sel, 1);
		struct ostore_stalled *o = &out[n];

		snprintf(o->order_id, sizeof(o->order_id), "%s", (const char *)sqlite3_column_text(sel, 0));
		o->stage = sqlite3_column_int(sel, 2);
		o->republished = sqlite3_column_int(sel, 3) + 1;
		if (republish_event(db, event) != 0)
			goto fail;
		sqlite3_bind_int64(upd, 1, now);
		sqlite3_bind_text(upd, 2, o->order_id, -1, SQLITE_STATIC);
		if (sqlite3_step(upd) != SQLITE_DONE)
			goto fail;
		sqlite3_reset(upd);
		n++;
	}
	db_done(db, sel);
	db_done(db, upd);
	return n;
fail:
	log_error("cannot republish stalled orders", "err=%s", LOGQ(db_errmsg(db)));
	db_done(db, sel);
	db_done(db, upd);
	return -1;
}

static enum ostore_result
sq_republish_stalled(void *b, int64_t placed_before, int64_t moved_before, int64_t now,
    struct ostore_stalled *out, size_t max, size_t *n)
{
	struct db *db = b;
	int found;

	*n = 0;
	db_lock(db);
	if (db_begin(db) != 0) {
		db_unlock(db);
		return OSTORE_FAIL;
	}
	if ((found = republish(db, placed_before, moved_before, now, out, max)) < 0 || db_commit(db) != 0) {
		db_rollback(db);
		db_unlock(db);
		return OSTORE_FAIL;
	}
	db_unlock(db);
	*n = (size_t)found;
	return OSTORE_OK;
}

/* ---- accounts ---------------------------------------------------------------- */

/* One instance owns a SQLite file: no other writer whose changes it must reload. */
static enum ostore_result
sq_accounts_version(void *b, int64_t *version)
{
	(void)b;
	*version = 0;
	return OSTORE_OK;
}

static enum ostore_result
sq_accounts_load(void *b, ostore_account_fn on_account, ostore_device_fn on_device,
    ostore_revoked_fn on_revoked, void *arg)
{
	struct db *db = b;
	sqlite3_stmt *a = NULL, *d = NULL, *r = NULL;
	enum ostore_result rc = OSTORE_FAIL;
	int step;

	db_lock(db);
	a = db_prepare(db, "SELECT user_id, hash, created_ms, tokens_after FROM accounts");
	d = db_prepare(db, "SELECT user_id, device, created_ms, login_ms FROM devices");
	r = db_prepare(db, "SELECT mac, expiry FROM revoked_tokens");
	if (a == NULL || d == NULL || r == NULL)
		goto out;
	while ((step = sqlite3_step(a)) == SQLITE_ROW) {
		struct ostore_account acc;
		memset(&acc, 0, sizeof(acc));
		snprintf(acc.user_id, sizeof(acc.user_id), "%s", (const char *)sqlite3_column_text(a, 0));
		snprintf(acc.hash, sizeof(acc.hash), "%s", (const char *)sqlite3_column_text(a, 1));
		acc.created_ms = sqlite3_column_int64(a, 2);
		acc.tokens_after = sqlite3_column_int64(a, 3);
		on_account(arg, &acc);
	}
	if (step != SQLITE_DONE)
		goto out;
	while ((step = sqlite3_step(d)) == SQLITE_ROW) {
		struct ostore_device dev;
		memset(&dev, 0, sizeof(dev));
		snprintf(dev.user_id, sizeof(dev.user_id), "%s", (const char *)sqlite3_column_text(d, 0));
		snprintf(dev.device, sizeof(dev.device), "%s", (const char *)sqlite3_column_text(d, 1));
		dev.created_ms = sqlite3_column_int64(d, 2);
		dev.login_ms = sqlite3_column_int64(d, 3);
		on_device(arg, &dev);
	}
	if (step != SQLITE_DONE)
		goto out;
	while ((step = sqlite3_step(r)) == SQLITE_ROW)
		on_revoked(arg, (const char *)sqlite3_column_text(r, 0), sqlite3_column_int64(r, 1));
	if (step == SQLITE_DONE)
		rc = OSTORE_OK;
out:
	if (rc != OSTORE_OK)
		log_error("cannot read the accounts", "err=%s", LOGQ(db_errmsg(db)));
	db_done(db, a);
	db_done(db, d);
	db_done(db, r);
	db_unlock(db);
	return rc;
}

/* Runs the statements of one change as one transaction: each a prepared, bound statement; the result of the first's changes. */
static enum ostore_result
change(struct db *db, sqlite3_stmt **sts, size_t n, const char *what, int dup_is_ok)
{
	enum ostore_result rc = OSTORE_OK;
	int first = -1;

	if (db_begin(db) != 0)
		rc = OSTORE_FAIL;
	for (size_t i = 0; i < n; i++) {
		int ch;
		if (rc == OSTORE_FAIL || sts[i] == NULL) {
			db_done(db, sts[i]);
			rc = OSTORE_FAIL;
			continue;
		}
		if ((ch = db_step_done(db, sts[i], what)) < 0)
			rc = OSTORE_FAIL;
		if (i == 0)
			first = ch;
	}
	if (rc == OSTORE_OK && db_commit(db) != 0)
		rc = OSTORE_FAIL;
	if (rc == OSTORE_FAIL) {
		db_rollback(db);
		return OSTORE_FAIL;
	}
	if (first == 0)
		return dup_is_ok ? OSTORE_DUP : OSTORE_NOT_FOUND;
	return OSTORE_OK;
}

static enum ostore_result
sq_account_add(void *b, const struct ostore_account *acc)
{
	struct db *db = b;
	sqlite3_stmt *st[1];
	enum ostore_result rc;

	db_lock(db);
	st[0] = db_prepare(db, "INSERT INTO accounts (user_id, hash, created_ms, tokens_after) VALUES (?, ?, ?, ?) "
				  "ON CONFLICT DO NOTHING");
	if (st[0] != NULL) {
		sqlite3_bind_text(st[0], 1, acc->user_id, -1, SQLITE_STATIC);
		sqlite3_bind_text(st[0], 2, acc->hash, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st[0], 3, acc->created_ms);
		sqlite3_bind_int64(st[0], 4, acc->tokens_after);
	}
	rc = change(db, st, 1, "insert account", 1);
	db_unlock(db);
	return rc;
}

static enum ostore_result
sq_account_passwd(void *b, const char *user, const char *hash, int64_t tokens_after)
{
	struct db *db = b;
	sqlite3_stmt *st[2];
	enum ostore_result rc;

	db_lock(db);
	st[0] = db_prepare(db, "UPDATE accounts SET hash = ?, tokens_after = ? WHERE user_id = ?");
	st[1] = db_prepare(db, "DELETE FROM devices WHERE user_id = ?");
	if (st[0] != NULL) {
		sqlite3_bind_text(st[0], 1, hash, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st[0], 2, tokens_after);
		sqlite3_bind_text(st[0], 3, user, -1, SQLITE_STATIC);
	}
	if (st[1] != NULL)
		sqlite3_bind_text(st[1], 1, user, -1, SQLITE_STATIC);
	rc = change(db, st, 2, "change password", 0);
	db_unlock(db);
	return rc;
}

static enum ostore_result
sq_account_tokens_after(void *b, const char *user, int64_t tokens_after)
{
	struct db *db = b;
	sqlite3_stmt *st[1];
	enum ostore_result rc;

	db_lock(db);
	st[0] = db_prepare(db, "UPDATE accounts SET tokens_after = ? WHERE user_id = ?");
	if (st[0] != NULL) {
		sqlite3_bind_int64(st[0], 1, tokens_after);
		sqlite3_bind_text(st[0], 2, user, -1, SQLITE_STATIC);
	}
	rc = change(db, st, 1, "revoke tokens", 0);
	db_unlock(db);
	return rc;
}

static enum ostore_result
sq_account_delete(void *b, const char *user)
{
	struct db *db = b;
	sqlite3_stmt *st[2];
	enum ostore_result rc;

	db_lock(db);
	st[0] = db_prepare(db, "DELETE FROM accounts WHERE user_id = ?");
	st[1] = db_prepare(db, "DELETE FROM devices WHERE user_id = ?");
	for (int i = 0; i < 2; i++)
		if (st[i] != NULL)
			sqlite3_bind_text(st[i], 1, user, -1, SQLITE_STATIC);
	rc = change(db, st, 2, "delete account", 0);
	db_unlock(db);
	return rc;
}

static enum ostore_result
sq_device_put(void *b, const char *user, const char *device, int64_t now)
{
	struct db *db = b;
	sqlite3_stmt *st[1];
	enum ostore_result rc;

	db_lock(db);
	st[0] = db_prepare(db, "INSERT INTO devices (user_id, device, created_ms, login_ms) VALUES (?, ?, ?, ?) "
				  "ON CONFLICT (user_id, device) DO UPDATE SET login_ms = excluded.login_ms");
	if (st[0] != NULL) {
		sqlite3_bind_text(st[0], 1, user, -1, SQLITE_STATIC);
		sqlite3_bind_text(st[0], 2, device, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st[0], 3, now);
		sqlite3_bind_int64(st[0], 4, now);
	}
	rc = change(db, st, 1, "record device", 1);
	db_unlock(db);
	return rc == OSTORE_DUP ? OSTORE_OK : rc;
}

static enum ostore_result
sq_device_delete(void *b, const char *user, const char *device)
{
	struct db *db = b;
	sqlite3_stmt *st[1];
	enum ostore_result rc;

	db_lock(db);
	st[0] = db_prepare(db, "DELETE FROM devices WHERE user_id = ? AND device = ?");
	if (st[0] != NULL) {
		sqlite3_bind_text(st[0], 1, user, -1, SQLITE_STATIC);
		sqlite3_bind_text(st[0], 2, device, -1, SQLITE_STATIC);
	}
	rc = change(db, st, 1, "revoke device", 0);
	db_unlock(db);
	return rc;
}

static enum ostore_result
sq_token_revoke(void *b, const char *mac, int64_t expiry, int64_t now)
{
	struct db *db = b;
	sqlite3_stmt *st[2];
	enum ostore_result rc;

	db_lock(db);
	st[0] = db_prepare(db, "INSERT INTO revoked_tokens (mac, expiry) VALUES (?, ?) ON CONFLICT DO NOTHING");
	st[1] = db_prepare(db, "DELETE FROM revoked_tokens WHERE expiry <= ?");
	if (st[0] != NULL) {
		sqlite3_bind_text(st[0], 1, mac, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st[0], 2, expiry);
	}
	if (st[1] != NULL)
		sqlite3_bind_int64(st[1], 1, now);
	rc = change(db, st, 2, "revoke token", 1);
	db_unlock(db);
	return rc == OSTORE_DUP ? OSTORE_OK : rc;
}

const struct ostore_ops ostore_sqlite_ops = {
	.name = "sqlite",
	.open = sq_open,
	.close = sq_close,
	.outbox_new = sq_outbox_new,
	.probe = sq_probe,
	.record = sq_record,
	.expire_keys = sq_expire_keys,
	.progress = sq_progress,
	.republish_stalled = sq_republish_stalled,
	.accounts_load = sq_accounts_load,
	.accounts_version = sq_accounts_version,
	.account_add = sq_account_add,
	.account_passwd = sq_account_passwd,
	.account_tokens_after = sq_account_tokens_after,
	.account_delete = sq_account_delete,
	.device_put = sq_device_put,
	.device_delete = sq_device_delete,
	.token_revoke = sq_token_revoke,
};

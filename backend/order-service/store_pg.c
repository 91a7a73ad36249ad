/*
 * store_pg.c - order-service's store on PostgreSQL (libpq; store_backend.h),
 * for several order-service instances sharing one database.
 *
 * What keeps N instances from doing one thing twice:
 *  - an order placed once is recorded once: the idempotency key is a
 *    unique row (user_id, key) inserted with ON CONFLICT DO NOTHING in the
 *    order's transaction; an insert that took nothing reads the row back
 *    (committed by this or another instance) to tell a replay (same
 *    request) from a conflict.  A plain duplicate INSERT would abort the
 *    whole batch's transaction.
 *  - each stalled order is supervised by one instance at a time: the
 *    supervision pass claims its rows with FOR UPDATE SKIP LOCKED and moves
 *    their progress time in the same transaction, so another instance
 *    skips them now and finds them no longer stalled after the commit.
 *  - statuses move progress forward only (stage < the new one), so every
 *    instance may apply every status: the second finds it done (DUP).
 *  - the outbox is outbox_pg.c's: rows claimed with a lease, a dead
 *    instance's rows published by another once the lease ran out.
 *  - accounts: every change bumps the one-row accounts_version in its
 *    transaction; each instance polls it (accounts_tick()) and reloads.
 *
 * The tables live in their own PostgreSQL schema, order_service (the
 * connections' search_path), so that order-history's and the notifier's
 * tables of the same names (orders, outbox) in one database stay apart.
 *
 * One connection (pgconn.h) under its mutex for every thread (the intake's
 * committer, paho's thread, the main loop, the HTTP threads), as the SQLite
 * store has one handle under its lock; the outbox has a second one of its
 * own.  A lost connection answers OSTORE_FAIL while pgconn reconnects
 * without blocking anyone for more than a quarter of a second.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "event.h"
#include "log.h"
#include "outbox.h"
#include "pgconn.h"
#include "store_backend.h"
#include "topic.h"
#include "util.h"

#define PG_SCHEMA_NAME "order_service"
/* Instances starting together would race on CREATE ... IF NOT EXISTS: one at a time (any key, the same in all). */
#define SCHEMA_LOCK_KEY "7104111116"
#define PG_SCHEMA                                                                                          \
	"BEGIN;"                                                                                           \
	"SELECT pg_advisory_xact_lock(" SCHEMA_LOCK_KEY ");"                                               \
	"CREATE SCHEMA IF NOT EXISTS " PG_SCHEMA_NAME ";"                                                  \
	"SET LOCAL search_path TO " PG_SCHEMA_NAME ";" OUTBOX_PG_SCHEMA                                    \
	"CREATE TABLE IF NOT EXISTS orders ("                                                              \
	"  order_id TEXT PRIMARY KEY, user_id TEXT NOT NULL, items TEXT NOT NULL,"                         \
	"  callback_url TEXT, via TEXT NOT NULL, created_ms BIGINT NOT NULL,"                              \
	"  event TEXT NOT NULL DEFAULT '', stage INTEGER NOT NULL DEFAULT 0,"                              \
	"  progress_ms BIGINT NOT NULL DEFAULT 0, republished INTEGER NOT NULL DEFAULT 0);"                \
	"CREATE INDEX IF NOT EXISTS orders_user ON orders(user_id, order_id);"                             \
	"CREATE INDEX IF NOT EXISTS orders_open ON orders(stage, progress_ms);"                            \
	"CREATE TABLE IF NOT EXISTS idempotency ("                                                         \
	"  user_id TEXT NOT NULL, key TEXT NOT NULL, request_hash TEXT NOT NULL,"                          \
	"  order_id TEXT NOT NULL, created_ms BIGINT NOT NULL, PRIMARY KEY (user_id, key));"               \
	"CREATE INDEX IF NOT EXISTS idempotency_created ON idempotency(created_ms);"                       \
	"CREATE TABLE IF NOT EXISTS accounts ("                                                            \
	"  user_id TEXT PRIMARY KEY, hash TEXT NOT NULL, created_ms BIGINT NOT NULL,"                      \
	"  tokens_after BIGINT NOT NULL DEFAULT 0);"                                                       \
	"CREATE TABLE IF NOT EXISTS devices ("                                                             \
	"  user_id TEXT NOT NULL, device TEXT NOT NULL, created_ms BIGINT NOT NULL,"                       \
	"  login_ms BIGINT NOT NULL, PRIMARY KEY (user_id, device));"                                      \
	"CREATE TABLE IF NOT EXISTS revoked_tokens (mac TEXT PRIMARY KEY, expiry BIGINT NOT NULL);"        \
	"CREATE TABLE IF NOT EXISTS accounts_version (id INTEGER PRIMARY KEY, version BIGINT NOT NULL);"   \
	"INSERT INTO accounts_version (id, version) VALUES (1, 0) ON CONFLICT DO NOTHING;"                 \
	"CREATE TABLE IF NOT EXISTS db_health (id INTEGER PRIMARY KEY, at_ms BIGINT NOT NULL);"            \
	"COMMIT;"

#define BUMP_VERSION "UPDATE accounts_version SET version = version + 1 WHERE id = 1"

struct pgstore {
	struct pgconn *pc;
	char *target; /* the URL with our search_path, for the outbox's connection */
};

/* An integer parameter as text. */
struct num {
	char s[24];
};

static const char *
num(struct num *n, int64_t v)
{
	snprintf(n->s, sizeof(n->s), "%lld", (long long)v);
	return n->s;
}

/* Runs sql with n text parameters (NULL: SQL NULL) on c.  The result (caller clears it). */
static PGresult *
run(PGconn *c, const char *sql, int n, const char *const *v)
{
	return PQexecParams(c, sql, n, NULL, v, NULL, NULL, 0);
}

/*
 * Runs a statement without rows; its changed row count, or -1 (logged as
 * what).  Between pgconn_begin() and pgconn_end().
 */
static int
exec_count(struct pgconn *pc, PGconn *c, const char *what, const char *sql, int n, const char *const *v)
{
	PGresult *res = run(c, sql, n, v);
	int changed = -1;

	if (PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK)
		changed = (int)strtol(PQcmdTuples(res), NULL, 10);
	else
		pgconn_failed(pc, what, res);
	PQclear(res);
	return changed;
}

/* COMMIT, which PostgreSQL answers with "ROLLBACK" for a transaction a failure aborted: 0 or -1. */
static int
commit(struct pgconn *pc, PGconn *c)
{
	PGresult *res = PQexec(c, "COMMIT");
	int rc = PQresultStatus(res) == PGRES_COMMAND_OK && strcmp(PQcmdStatus(res), "COMMIT") == 0 ? 0 : -1;

	if (rc != 0)
		pgconn_failed(pc, "commit", res);
	PQclear(res);
	return rc;
}

/* Ends a failed transaction (nothing to do when the connection is gone). */
static void
rollback(PGconn *c)
{
	if (PQstatus(c) == CONNECTION_OK && PQtransactionStatus(c) != PQTRANS_IDLE)
		PQclear(PQexec(c, "ROLLBACK"));
}

static void pg_close(void *b);

static void *
pg_open(const char *target)
{
	struct pgstore *s = calloc(1, sizeof(*s));
	PGconn *c;
	int rc;

	if (s == NULL || (s->target = pgconn_in_schema(target, PG_SCHEMA_NAME)) == NULL) {
		log_error("out of memory", NULL);
		pg_close(s);
		return NULL;
	}
	if ((s->pc = pgconn_open(s->target, "order-service", "store")) == NULL || (c = pgconn_begin(s->pc)) == NULL) {
		pg_close(s);
		return NULL;
	}
	rc = pgconn_command(s->pc, PG_SCHEMA);
	if (rc != 0)
		rollback(c);
	pgconn_end(s->pc);
	if (rc != 0) {
		pg_close(s);
		return NULL;
	}
	return s;
}

static void
pg_close(void *b)
{
	struct pgstore *s = b;

	if (s == NULL)
		return;
	pgconn_close(s->pc);
	free(s->target);
	free(s);
}

static struct outbox *
pg_outbox_new(void *b, struct mq *mq, int64_t retry_ms)
{
	return outbox_pg_new(((struct pgstore *)b)->target, mq, retry_ms);
}

static int
pg_probe(void *b)
{
	struct pgstore *s = b;
	struct num at;
	const char *v[] = { num(&at, now_ms()) };
	PGconn *c;
	PGresult *res;
	int rc;

	if ((c = pgconn_begin(s->pc)) == NULL)
		return -1;
	res = run(c, "INSERT INTO db_health (id, at_ms) VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET at_ms = EXCLUDED.at_ms",
	    1, v);
	if ((rc = PQresultStatus(res) == PGRES_COMMAND_OK ? 0 : -1) != 0)
		log_debug("store not writable", "err=%s", LOGQ(PQresultErrorMessage(res)));
	PQclear(res);
	pgconn_end(s->pc);
	return rc;
}

/* ---- orders ------------------------------------------------------------------ */

/*
 * o's idempotency key, which an insert found taken: OSTORE_REPLAYED (same
 * request; o->replayed_order_id set), OSTORE_CONFLICT or OSTORE_FAIL.
 */
static enum ostore_result
idem_taken(struct pgconn *pc, PGconn *c, struct ostore_order *o)
{
	const char *v[] = { o->user_id, o->idem_key };
	PGresult *res = run(c, "SELECT request_hash, order_id FROM idempotency WHERE user_id = $1 AND key = $2", 2, v);
	enum ostore_result rc = OSTORE_FAIL;

	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		pgconn_failed(pc, "read an idempotency key", res);
	else if (PQntuples(res) == 1) {
		snprintf(o->replayed_order_id, sizeof(o->replayed_order_id), "%s", PQgetvalue(res, 0, 1));
		rc = strcmp(PQgetvalue(res, 0, 0), o->request_hash) == 0 ? OSTORE_REPLAYED : OSTORE_CONFLICT;
	}
	/* else: taken, then gone (expired meanwhile): the client asks again */
	PQclear(res);
	return rc;
}

/*
 * Records one order, its key and its OrderPlaced under a savepoint of its
 * own inside the batch's transaction.  Its result (OSTORE_OK, _REPLAYED,
 * _CONFLICT or _FAIL).
 */
static enum ostore_result
record_one(struct pgconn *pc, PGconn *c, struct ostore_order *o, int64_t now)
{
	enum ostore_result rc = OSTORE_FAIL;
	struct num created, progress;

	if (pgconn_command(pc, "SAVEPOINT intake_order") != 0)
		return OSTORE_FAIL;
	if (o->idem_key != NULL) {
		struct num at;
		const char *v[] = { o->user_id, o->idem_key, o->request_hash, o->order_id, num(&at, now) };

		/* waits for another instance's transaction holding the same key, then finds it taken */
		switch (exec_count(pc, c, "insert idempotency key",
		    "INSERT INTO idempotency (user_id, key, request_hash, order_id, created_ms) "
		    "VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
		    5, v)) {
		case 1:
			break;
		case 0:
			rc = idem_taken(pc, c, o);
			goto rollback;
		default:
			goto rollback;
		}
	}
	{
		const char *v[] = { o->order_id, o->user_id, o->items,
			o->callback_url != NULL && o->callback_url[0] != '\0' ? o->callback_url : NULL, o->via,
			num(&created, o->created_ms), o->event, num(&progress, now) };

		if (exec_count(pc, c, "record order",
			"INSERT INTO orders (order_id, user_id, items, callback_url, via, created_ms, event, progress_ms) "
			"VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
			8, v) != 1 ||
		    outbox_pg_add(c, TOPIC_PLACED, o->event, strlen(o->event), 1, 0, 0) != 0)
			goto rollback;
	}
	return pgconn_command(pc, "RELEASE SAVEPOINT intake_order") == 0 ? OSTORE_OK : OSTORE_FAIL;
rollback:
	if (pgconn_command(pc, "ROLLBACK TO SAVEPOINT intake_order") == 0)
		pgconn_command(pc, "RELEASE SAVEPOINT intake_order");
	return rc;
}

static enum ostore_result
pg_record(void *b, struct ostore_order *orders, int64_t now)
{
	struct pgstore *s = b;
	struct ostore_order *o;
	PGconn *c;
	int ok;

	for (o = orders; o != NULL; o = o->next)
		o->result = OSTORE_FAIL;
	if ((c = pgconn_begin(s->pc)) == NULL)
		return OSTORE_FAIL;
	if ((ok = pgconn_command(s->pc, "BEGIN") == 0)) {
		for (o = orders; o != NULL; o = o->next)
			o->result = record_one(s->pc, c, o, now);
		ok = commit(s->pc, c) == 0;
	}
	if (!ok) {
		rollback(c);
		/* every answer of the batch goes: a replay may have been decided from an order now rolled back */
		for (o = orders; o != NULL; o = o->next)
			o->result = OSTORE_FAIL;
	}
	pgconn_end(s->pc);
	return ok ? OSTORE_OK : OSTORE_FAIL;
}

static enum ostore_result
pg_expire_keys(void *b, int64_t before_ms, int *n)
{
	struct pgstore *s = b;
	struct num before;
	const char *v[] = { num(&before, before_ms) };
	PGconn *c;
	int changed = -1;

	if ((c = pgconn_begin(s->pc)) != NULL) {
		changed = exec_count(s->pc, c, "expire idempotency keys", "DELETE FROM idempotency WHERE created_ms < $1", 1,
		    v);
		pgconn_end(s->pc);
	}
	if (n != NULL)
		*n = changed < 0 ? 0 : changed;
	return changed < 0 ? OSTORE_FAIL : OSTORE_OK;
}

static enum ostore_result
pg_progress(void *b, const char *order_id, int stage, int64_t now, int64_t *created_ms)
{
	struct pgstore *s = b;
	struct num st, at;
	const char *v[] = { num(&st, stage), num(&at, now), order_id };
	enum ostore_result rc = OSTORE_FAIL;
	PGresult *res;
	PGconn *c;

	if ((c = pgconn_begin(s->pc)) == NULL)
		return OSTORE_FAIL;
	/* forward only: every instance applies every status, the second finds it done */
	res = run(c, "UPDATE orders SET stage = $1, progress_ms = $2 WHERE order_id = $3 AND stage < $1 RETURNING created_ms",
	    3, v);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		pgconn_failed(s->pc, "record progress", res);
	else if (PQntuples(res) == 1) {
		if (created_ms != NULL)
			*created_ms = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
		rc = OSTORE_OK;
	} else {
		PQclear(res);
		res = run(c, "SELECT 1 FROM orders WHERE order_id = $1", 1, &v[2]);
		if (PQresultStatus(res) != PGRES_TUPLES_OK)
			pgconn_failed(s->pc, "look up an order", res);
		else
			rc = PQntuples(res) > 0 ? OSTORE_DUP : OSTORE_NOT_FOUND;
	}
	PQclear(res);
	pgconn_end(s->pc);
	return rc;
}

/* Queues the stored OrderPlaced again with a fresh event id, in the open transaction.  0 or -1. */
static int
republish_event(PGconn *c, const char *stored)
{
	char *json = ostore_republished_event(stored);
	int rc;

	if (json == NULL)
		return -1;
	rc = outbox_pg_add(c, TOPIC_PLACED, json, strlen(json), 1, 0, 0);
	free(json);
	return rc;
}

/* The stalled orders, claimed and republished inside the open transaction: how many (in out), or -1. */
static int
republish(struct pgconn *pc, PGconn *c, int64_t placed_before, int64_t moved_before, int64_t now,
    struct ostore_stalled *out, size_t max)
{
	struct num pb, ready, mb, lim, at;
	const char *v[] = { num(&pb, placed_before), num(&ready, STATUS_READY), num(&mb, moved_before),
		num(&lim, (int64_t)max) };
	PGresult *res;
	int n = 0, rows;

	/* SKIP LOCKED: another instance's pass holds its rows; it republishes them, this one the others */
	res = run(c, "SELECT order_id, event, stage, republished FROM orders WHERE event <> '' AND "
		     "((stage = 0 AND progress_ms < $1) OR (stage > 0 AND stage < $2 AND progress_ms < $3)) "
		     "LIMIT $4 FOR UPDATE SKIP LOCKED",
	    4, v);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		pgconn_failed(pc, "find stalled orders", res);
		PQclear(res);
		return -1;
	}
	rows = PQntuples(res);
	for (int i = 0; i < rows && (size_t)n < max; i++) {
		struct ostore_stalled *o = &out[n];
		const char *u[] = { num(&at, now), PQgetvalue(res, i, 0) };

		snprintf(o->order_id, sizeof(o->order_id), "%s", PQgetvalue(res, i, 0));
		o->stage = (int)strtol(PQgetvalue(res, i, 2), NULL, 10);
		o->republished = (int)strtol(PQgetvalue(res, i, 3), NULL, 10) + 1;
		if (republish_event(c, PQgetvalue(res, i, 1)) != 0 ||
		    exec_count(pc, c, "republish a stalled order",
			"UPDATE orders SET progress_ms = $1, republished = republished + 1 WHERE order_id = $2", 2, u) != 1) {
			PQclear(res);
			return -1;
		}
		n++;
	}
	PQclear(res);
	return n;
}

static enum ostore_result
pg_republish_stalled(void *b, int64_t placed_before, int64_t moved_before, int64_t now, struct ostore_stalled *out,
    size_t max, size_t *n)
{
	struct pgstore *s = b;
	PGconn *c;
	int found = -1;

	*n = 0;
	if ((c = pgconn_begin(s->pc)) == NULL)
		return OSTORE_FAIL;
	if (pgconn_command(s->pc, "BEGIN") == 0 &&
	    (found = republish(s->pc, c, placed_before, moved_before, now, out, max)) >= 0 && commit(s->pc, c) != 0)
		found = -1;
	if (found < 0) {
		rollback(c);
		log_error("cannot republish stalled orders", NULL);
	}
	pgconn_end(s->pc);
	if (found < 0)
		return OSTORE_FAIL;
	*n = (size_t)found;
	return OSTORE_OK;
}

/* ---- accounts ---------------------------------------------------------------- */

/* One query of the accounts' load: fn for each row.  0 or -1. */
static int
load_rows(struct pgconn *pc, PGconn *c, const char *sql, void (*fn)(void *ctx, PGresult *res, int row), void *ctx)
{
	PGresult *res = PQexec(c, sql);
	int rc = -1;

	if (PQresultStatus(res) == PGRES_TUPLES_OK) {
		for (int i = 0; i < PQntuples(res); i++)
			fn(ctx, res, i);
		rc = 0;
	} else
		pgconn_failed(pc, "read the accounts", res);
	PQclear(res);
	return rc;
}

struct load_ctx {
	ostore_account_fn on_account;
	ostore_device_fn on_device;
	ostore_revoked_fn on_revoked;
	void *arg;
};

static void
account_row(void *ctx, PGresult *res, int i)
{
	struct load_ctx *l = ctx;
	struct ostore_account acc;

	memset(&acc, 0, sizeof(acc));
	snprintf(acc.user_id, sizeof(acc.user_id), "%s", PQgetvalue(res, i, 0));
	snprintf(acc.hash, sizeof(acc.hash), "%s", PQgetvalue(res, i, 1));
	acc.created_ms = strtoll(PQgetvalue(res, i, 2), NULL, 10);
	acc.tokens_after = strtoll(PQgetvalue(res, i, 3), NULL, 10);
	l->on_account(l->arg, &acc);
	explicit_bzero(acc.hash, sizeof(acc.hash));
}

static void
device_row(void *ctx, PGresult *res, int i)
{
	struct load_ctx *l = ctx;
	struct ostore_device dev;

	memset(&dev, 0, sizeof(dev));
	snprintf(dev.user_id, sizeof(dev.user_id), "%s", PQgetvalue(res, i, 0));
	snprintf(dev.device, sizeof(dev.device), "%s", PQgetvalue(res, i, 1));
	dev.created_ms = strtoll(PQgetvalue(res, i, 2), NULL, 10);
	dev.login_ms = strtoll(PQgetvalue(res, i, 3), NULL, 10);
	l->on_device(l->arg, &dev);
}

static void
revoked_row(void *ctx, PGresult *res, int i)
{
	struct load_ctx *l = ctx;

	l->on_revoked(l->arg, PQgetvalue(res, i, 0), strtoll(PQgetvalue(res, i, 1), NULL, 10));
}

static enum ostore_result
pg_accounts_load(void *b, ostore_account_fn on_account, ostore_device_fn on_device, ostore_revoked_fn on_revoked,
    void *arg)
{
	struct pgstore *s = b;
	struct load_ctx l = { on_account, on_device, on_revoked, arg };
	PGconn *c;
	int ok;

	if ((c = pgconn_begin(s->pc)) == NULL)
		return OSTORE_FAIL;
	/* one snapshot: devices of the accounts read, as another instance changes them */
	ok = pgconn_command(s->pc, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY") == 0 &&
	    load_rows(s->pc, c, "SELECT user_id, hash, created_ms, tokens_after FROM accounts", account_row, &l) == 0 &&
	    load_rows(s->pc, c, "SELECT user_id, device, created_ms, login_ms FROM devices", device_row, &l) == 0 &&
	    load_rows(s->pc, c, "SELECT mac, expiry FROM revoked_tokens", revoked_row, &l) == 0 && commit(s->pc, c) == 0;
	if (!ok)
		rollback(c);
	pgconn_end(s->pc);
	return ok ? OSTORE_OK : OSTORE_FAIL;
}

static enum ostore_result
pg_accounts_version(void *b, int64_t *version)
{
	struct pgstore *s = b;
	enum ostore_result rc = OSTORE_FAIL;
	PGresult *res;
	PGconn *c;

	if ((c = pgconn_begin(s->pc)) == NULL)
		return OSTORE_FAIL;
	res = PQexec(c, "SELECT version FROM accounts_version WHERE id = 1");
	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
		*version = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
		rc = OSTORE_OK;
	} else
		pgconn_failed(s->pc, "read the accounts' version", res);
	PQclear(res);
	pgconn_end(s->pc);
	return rc;
}

/* One statement of an account change. */
struct stmt {
	const char *sql;
	int n;
	const char *v[4];
};

/*
 * Runs an account change's statements as one transaction, bumping the
 * accounts' version in it when the first one changed a row (so the other
 * instances reload).  The first's count decides: rows changed OSTORE_OK,
 * none OSTORE_DUP (dup_is_ok) or OSTORE_NOT_FOUND; a failure OSTORE_FAIL.
 */
static enum ostore_result
change(struct pgstore *s, const struct stmt *st, size_t n, const char *what, int dup_is_ok)
{
	PGconn *c;
	int first = -1, ok;

	if ((c = pgconn_begin(s->pc)) == NULL)
		return OSTORE_FAIL;
	ok = pgconn_command(s->pc, "BEGIN") == 0;
	for (size_t i = 0; ok && i < n; i++) {
		int ch = exec_count(s->pc, c, what, st[i].sql, st[i].n, st[i].v);
		ok = ch >= 0;
		if (i == 0)
			first = ch;
	}
	if (ok && first > 0)
		ok = exec_count(s->pc, c, what, BUMP_VERSION, 0, NULL) == 1;
	if (ok)
		ok = commit(s->pc, c) == 0;
	if (!ok)
		rollback(c);
	pgconn_end(s->pc);
	if (!ok)
		return OSTORE_FAIL;
	if (first == 0)
		return dup_is_ok ? OSTORE_DUP : OSTORE_NOT_FOUND;
	return OSTORE_OK;
}

static enum ostore_result
pg_account_add(void *b, const struct ostore_account *acc)
{
	struct num created, after;
	const struct stmt st[] = { { "INSERT INTO accounts (user_id, hash, created_ms, tokens_after) VALUES ($1, $2, $3, $4) "
				     "ON CONFLICT DO NOTHING",
		4, { acc->user_id, acc->hash, num(&created, acc->created_ms), num(&after, acc->tokens_after) } } };

	return change(b, st, 1, "insert account", 1);
}

static enum ostore_result
pg_account_passwd(void *b, const char *user, const char *hash, int64_t tokens_after)
{
	struct num after;
	const struct stmt st[] = {
		{ "UPDATE accounts SET hash = $1, tokens_after = $2 WHERE user_id = $3", 3,
		    { hash, num(&after, tokens_after), user } },
		{ "DELETE FROM devices WHERE user_id = $1", 1, { user } },
	};

	return change(b, st, 2, "change password", 0);
}

static enum ostore_result
pg_account_tokens_after(void *b, const char *user, int64_t tokens_after)
{
	struct num after;
	const struct stmt st[] = { { "UPDATE accounts SET tokens_after = $1 WHERE user_id = $2", 2,
		{ num(&after, tokens_after), user } } };

	return change(b, st, 1, "revoke tokens", 0);
}

static enum ostore_result
pg_account_delete(void *b, const char *user)
{
	const struct stmt st[] = {
		{ "DELETE FROM accounts WHERE user_id = $1", 1, { user } },
		{ "DELETE FROM devices WHERE user_id = $1", 1, { user } },
	};

	return change(b, st, 2, "delete account", 0);
}

static enum ostore_result
pg_device_put(void *b, const char *user, const char *device, int64_t now)
{
	struct num at;
	/* a new device bumps the version (other instances must know it for its tokens); a login's time does not */
	const struct stmt st[] = {
		{ "INSERT INTO devices (user_id, device, created_ms, login_ms) VALUES ($1, $2, $3, $3) ON CONFLICT DO NOTHING",
		    3, { user, device, num(&at, now) } },
		{ "UPDATE devices SET login_ms = $3 WHERE user_id = $1 AND device = $2", 3, { user, device, at.s } },
	};
	enum ostore_result rc = change(b, st, 2, "record device", 1);

	return rc == OSTORE_DUP ? OSTORE_OK : rc;
}

static enum ostore_result
pg_device_delete(void *b, const char *user, const char *device)
{
	const struct stmt st[] = { { "DELETE FROM devices WHERE user_id = $1 AND device = $2", 2, { user, device } } };

	return change(b, st, 1, "revoke device", 0);
}

static enum ostore_result
pg_token_revoke(void *b, const char *mac, int64_t expiry, int64_t now)
{
	struct num exp, at;
	const struct stmt st[] = {
		{ "INSERT INTO revoked_tokens (mac, expiry) VALUES ($1, $2) ON CONFLICT DO NOTHING", 2,
		    { mac, num(&exp, expiry) } },
		{ "DELETE FROM revoked_tokens WHERE expiry <= $1", 1, { num(&at, now) } },
	};
	enum ostore_result rc = change(b, st, 2, "revoke token", 1);

	return rc == OSTORE_DUP ? OSTORE_OK : rc;
}

const char *
ostore_pg_label(const char *target, char *buf, size_t n)
{
	return pgconn_label(target, buf, n);
}

const struct ostore_ops ostore_pg_ops = {
	.name = "postgresql",
	.open = pg_open,
	.close = pg_close,
	.outbox_new = pg_outbox_new,
	.probe = pg_probe,
	.record = pg_record,
	.expire_keys = pg_expire_keys,
	.progress = pg_progress,
	.republish_stalled = pg_republish_stalled,
	.accounts_load = pg_accounts_load,
	.accounts_version = pg_accounts_version,
	.account_add = pg_account_add,
	.account_passwd = pg_account_passwd,
	.account_tokens_after = pg_account_tokens_after,
	.account_delete = pg_account_delete,
	.device_put = pg_device_put,
	.device_delete = pg_device_delete,
	.token_revoke = pg_token_revoke,
};

/*
 * store_sqlite.c - order-history's store on a SQLite file (the default):
 * the statements of store_backend.h in SQLite's dialect, on the shared
 * db.c helper.  One handle for all threads, under db_lock(): paho's receive
 * thread writes, the HTTP threads read, each bracket at a time.
 */
#include <stdlib.h>

#include "db.h"
#include "log.h"
#include "store_backend.h"
#include "util.h"

#define HISTORY_SCHEMA                                                                        \
	"CREATE TABLE IF NOT EXISTS orders (order_id TEXT PRIMARY KEY, user_id TEXT NOT NULL," \
	"  items TEXT NOT NULL, callback_url TEXT, placed_ms INTEGER NOT NULL,"               \
	"  event_id TEXT NOT NULL);"                                                          \
	"CREATE INDEX IF NOT EXISTS orders_user ON orders(user_id, order_id);"                \
	"CREATE TABLE IF NOT EXISTS statuses (order_id TEXT NOT NULL, seq INTEGER NOT NULL,"  \
	"  user_id TEXT NOT NULL, status TEXT NOT NULL, at_ms INTEGER NOT NULL,"              \
	"  worker TEXT NOT NULL, event_id TEXT NOT NULL, PRIMARY KEY (order_id, seq));"      \
	"CREATE TABLE IF NOT EXISTS callbacks (order_id TEXT PRIMARY KEY, user_id TEXT NOT NULL," \
	"  delivery_id TEXT NOT NULL, outcome TEXT NOT NULL, attempts INTEGER NOT NULL,"       \
	"  detail TEXT NOT NULL, at_ms INTEGER NOT NULL, event_id TEXT NOT NULL);"             \
	"CREATE TABLE IF NOT EXISTS receipts (order_id TEXT NOT NULL, device_id TEXT NOT NULL," \
	"  user_id TEXT NOT NULL, event_id TEXT NOT NULL, at_ms INTEGER NOT NULL,"             \
	"  PRIMARY KEY (order_id, device_id));"

/* The statements of enum hstmt (string literals: db_prepare() keeps them by address). */
static const char *const sql[HS_NSTMTS] = {
	[HS_PUT_ORDER] = "INSERT OR IGNORE INTO orders(order_id, user_id, items, callback_url, placed_ms, event_id) "
			 "VALUES (?, ?, ?, ?, ?, ?)",
	[HS_PUT_STATUS] = "INSERT OR IGNORE INTO statuses(order_id, seq, user_id, status, at_ms, worker, event_id) "
			  "VALUES (?, ?, ?, ?, ?, ?, ?)",
	[HS_PUT_CALLBACK] = "INSERT OR IGNORE INTO callbacks(order_id, user_id, delivery_id, outcome, attempts, detail, "
			    "at_ms, event_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
	[HS_PUT_RECEIPT] = "INSERT OR IGNORE INTO receipts(order_id, device_id, user_id, event_id, at_ms) "
			   "VALUES (?, ?, ?, ?, ?)",
	[HS_GET_ORDER] = "SELECT user_id, items, placed_ms FROM orders WHERE order_id = ?",
	[HS_GET_STATUSES] = "SELECT status, seq, at_ms, worker, user_id FROM statuses WHERE order_id = ? ORDER BY seq",
	[HS_GET_CALLBACK] = "SELECT outcome, attempts, detail, at_ms, delivery_id FROM callbacks WHERE order_id = ?",
	[HS_GET_RECEIPTS] = "SELECT device_id, at_ms FROM receipts WHERE order_id = ? AND user_id = ? "
			    "ORDER BY at_ms, device_id",
	/* order ids are time-sortable, so id order is placement order */
	[HS_USER_ORDERS] = "SELECT order_id FROM orders WHERE user_id = ? ORDER BY order_id DESC LIMIT ?",
	[HS_USER_ORDERS_BEFORE] = "SELECT order_id FROM orders WHERE user_id = ? AND order_id < ? "
				  "ORDER BY order_id DESC LIMIT ?",
	[HS_COUNT_ORDERS] = "SELECT count(*) FROM orders",
	[HS_COUNT_STATUSES] = "SELECT count(*) FROM statuses",
};

#define MAX_COLS 8

static void *
sq_open(const char *path)
{
	return db_open(path, HISTORY_SCHEMA);
}

static void
sq_close(void *b)
{
	db_close(b);
}

/* Prepares statement s with its parameters bound; NULL on failure (logged). */
static sqlite3_stmt *
bound(struct db *db, enum hstmt s, const struct hval *v, int n)
{
	sqlite3_stmt *st = db_prepare(db, sql[s]);

	for (int k = 0; st != NULL && k < n; k++) {
		if (v[k].null)
			sqlite3_bind_null(st, k + 1);
		else if (v[k].s != NULL)
			sqlite3_bind_text(st, k + 1, v[k].s, -1, SQLITE_STATIC);
		else
			sqlite3_bind_int64(st, k + 1, v[k].i);
	}
	return st;
}

static int
sq_put(void *b, enum hstmt s, const struct hval *v, int n)
{
	struct db *db = b;
	sqlite3_stmt *st;
	int rc = -1;

	db_lock(db);
	if ((st = bound(db, s, v, n)) != NULL)
		rc = db_step_done(db, st, "store a history row");
	db_unlock(db);
	return rc < 0 ? -1 : rc > 0;
}

static int
sq_read_begin(void *b)
{
	/* one handle under one lock: nothing writes between the reads of a bracket */
	db_lock(b);
	return 0;
}

static void
sq_read_end(void *b)
{
	db_unlock(b);
}

static int
sq_select(void *b, enum hstmt s, const struct hval *v, int n, hrow_fn fn, void *arg)
{
	struct db *db = b;
	sqlite3_stmt *st;
	const char *col[MAX_COLS];
	int rc = SQLITE_DONE, rows = 0, stop = 0;

	if ((st = bound(db, s, v, n)) == NULL)
		return -1;
	while (!stop && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		int ncol = sqlite3_column_count(st);
		for (int k = 0; k < ncol && k < MAX_COLS; k++)
			col[k] = (const char *)sqlite3_column_text(st, k);
		stop = fn(arg, col) != 0;
		rows++;
	}
	if (stop || rc != SQLITE_DONE) {
		log_error("cannot read the history", "path=%s err=%s", LOGQ(db_path(db)),
		    LOGQ(stop ? "out of memory" : db_errmsg(db)));
		rows = -1;
	}
	db_done(db, st);
	return rows;
}

static int
sq_probe(void *b)
{
	return db_probe_write(b);
}

const struct hstore_ops hstore_sqlite_ops = {
	.name = "sqlite",
	.open = sq_open,
	.close = sq_close,
	.put = sq_put,
	.read_begin = sq_read_begin,
	.read_end = sq_read_end,
	.select = sq_select,
	.probe = sq_probe,
};

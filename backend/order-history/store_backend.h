/*
 * store_backend.h - what a database backend of order-history's store
 * provides (store_sqlite.c, store_pg.c).  Only store*.c include it; the
 * service sees store.h alone.
 *
 * store.c owns the logic (which statements an hstore_* call runs, and the
 * JSON it builds from their rows); a backend only runs the statements
 * below, each with its own SQL text in its own dialect, and keeps the
 * connection, its locking and its recovery.  So the two backends answer
 * the same call with the same rows, and the same JSON.
 */
#ifndef PIZZA_HISTORY_STORE_BACKEND_H
#define PIZZA_HISTORY_STORE_BACKEND_H

#include <stddef.h>
#include <stdint.h>

/* The statements, with their parameters (in order) and result columns. */
enum hstmt {
	HS_PUT_ORDER,    /* order_id, user_id, items, callback_url (may be NULL), placed_ms, event_id */
	HS_PUT_STATUS,   /* order_id, seq, user_id, status, at_ms, worker, event_id */
	HS_PUT_CALLBACK, /* order_id, user_id, delivery_id, outcome, attempts, detail, at_ms, event_id */
	HS_PUT_RECEIPT,  /* order_id, device_id, user_id, event_id, at_ms */
	HS_GET_ORDER,    /* order_id -> user_id, items, placed_ms */
	HS_GET_STATUSES, /* order_id -> status, seq, at_ms, worker, user_id; by seq */
	HS_GET_CALLBACK, /* order_id -> outcome, attempts, detail, at_ms, delivery_id */
	HS_GET_RECEIPTS, /* order_id, user_id -> device_id, at_ms; by at_ms, device_id */
	HS_USER_ORDERS,  /* user_id, limit -> order_id; newest first */
	HS_USER_ORDERS_BEFORE, /* user_id, before order_id, limit -> order_id; newest first */
	HS_COUNT_ORDERS,       /* -> count */
	HS_COUNT_STATUSES,     /* -> count */
	HS_NSTMTS
};

/* A parameter: text (s not NULL), an integer (s NULL, null 0), or SQL NULL (null 1). */
struct hval {
	const char *s;
	int64_t i;
	int null;
};

/*
 * Called with each result row: col[k] is the k-th column as text (NULL
 * for SQL NULL), borrowed for the call only.  Returns 0 to go on, -1 to
 * stop the statement (which then fails).
 */
typedef int (*hrow_fn)(void *arg, const char *const *col);

struct hstore_ops {
	const char *name; /* "sqlite", "postgresql" */
	/* Opens target (creating the schema); NULL on failure, logged. */
	void *(*open)(const char *target);
	void (*close)(void *b);
	/*
	 * Runs a HS_PUT_* statement, committed on its own: 1 when it stored a
	 * row, 0 when the row was there already (nothing changed), -1 when the
	 * database failed (logged; nothing changed).
	 */
	int (*put)(void *b, enum hstmt st, const struct hval *v, int n);
	/*
	 * Brackets reads: everything between read_begin() (0, or -1 when the
	 * database cannot be read now; no read_end() then) and read_end() sees
	 * one state of the database.
	 */
	int (*read_begin)(void *b);
	void (*read_end)(void *b);
	/* Runs a query statement inside a read bracket, fn for each row: the row count, or -1 (logged). */
	int (*select)(void *b, enum hstmt st, const struct hval *v, int n, hrow_fn fn, void *arg);
	/* One small write, committed: 0, or -1 (logged at debug). */
	int (*probe)(void *b);
};

extern const struct hstore_ops hstore_sqlite_ops;
extern const struct hstore_ops hstore_pg_ops;

/*
 * Writes target into buf as it may be logged: a PostgreSQL URL without its
 * password, a file path as it is.  Returns buf.
 */
const char *hstore_pg_label(const char *target, char *buf, size_t n);

#endif

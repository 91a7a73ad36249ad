/*
 * store_pg.c - order-history's store on PostgreSQL (libpq): the statements
 * of store_backend.h in PostgreSQL's dialect, for several order-history
 * instances sharing one database.
 *
 * Each instance keeps two connections, each used by one thread at a time
 * under its own mutex: one for writes (paho's receive thread stores every
 * event, and the health probe) and one for reads (the read API's HTTP
 * threads).  Not one per thread: the HTTP server's threads come and go, and
 * PostgreSQL's connections are few (max_connections) and costly.  Not a
 * single one: a slow read (a user's 100 orders) would then hold up the
 * acknowledgement of every event behind it.  Two keep the writer's latency
 * independent of the readers at a fixed cost of two connections per
 * instance.
 *
 * Idempotence: every write is INSERT ... ON CONFLICT DO NOTHING in its own
 * (autocommit) transaction, so a redelivered event, or the same event
 * stored by another instance, changes nothing and reports "had it"; a
 * plain duplicate INSERT would raise an error and abort the transaction.
 *
 * A lost connection (the server restarted, the network dropped it) fails
 * the call that finds it (HSTORE_FAIL: the consumer leaves the message for
 * the broker to deliver again) and is re-established by later calls
 * without holding paho's thread for long (pgconn.h).
 *
 * The tables live in their own schema, order_history (the connections'
 * search_path, pgconn_in_schema()), so that order-service's and the
 * notifier's tables of the same names (orders) in one database stay apart.
 * Tables an earlier version made in public are moved there once.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "log.h"
#include "pgconn.h"
#include "store_backend.h"
#include "util.h"

#define PG_SCHEMA_NAME "order_history"

/*
 * Two instances starting together would race on CREATE ... IF NOT EXISTS
 * (a duplicate key in the catalog): the schema is created under an advisory
 * lock, any key the same in every instance.
 */
#define SCHEMA_LOCK_KEY "7104111114"
/*
 * An earlier version kept these tables in public: moved into the schema
 * once (its statuses table tells them apart; orders only when it has
 * order-history's event_id column, not the notifier's orders).
 */
#define FROM_PUBLIC                                                                                          \
	"DO $$ BEGIN "                                                                                       \
	"IF to_regclass('public.statuses') IS NOT NULL AND to_regclass('" PG_SCHEMA_NAME ".statuses') IS NULL " \
	"THEN "                                                                                              \
	"  ALTER TABLE public.statuses SET SCHEMA " PG_SCHEMA_NAME ";"                                       \
	"  IF EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = 'public' "               \
	"      AND table_name = 'orders' AND column_name = 'event_id') "                                    \
	"  THEN ALTER TABLE public.orders SET SCHEMA " PG_SCHEMA_NAME "; END IF;"                           \
	"  IF to_regclass('public.callbacks') IS NOT NULL THEN "                                             \
	"    ALTER TABLE public.callbacks SET SCHEMA " PG_SCHEMA_NAME "; END IF;"                            \
	"  IF to_regclass('public.receipts') IS NOT NULL THEN "                                              \
	"    ALTER TABLE public.receipts SET SCHEMA " PG_SCHEMA_NAME "; END IF;"                             \
	"  RAISE NOTICE 'order-history tables moved from public to " PG_SCHEMA_NAME "';"                     \
	"END IF; END $$;"
/* COLLATE "C": order ids sort (and page) by their bytes, as in SQLite, whatever the cluster's locale. */
#define PG_SCHEMA                                                                                            \
	"BEGIN;"                                                                                             \
	"SELECT pg_advisory_xact_lock(" SCHEMA_LOCK_KEY ");"                                                 \
	"CREATE SCHEMA IF NOT EXISTS " PG_SCHEMA_NAME ";"                                                    \
	"SET LOCAL search_path TO " PG_SCHEMA_NAME ";" FROM_PUBLIC                                           \
	"CREATE TABLE IF NOT EXISTS orders (order_id TEXT COLLATE \"C\" PRIMARY KEY, user_id TEXT NOT NULL," \
	"  items TEXT NOT NULL, callback_url TEXT, placed_ms BIGINT NOT NULL, event_id TEXT NOT NULL);"      \
	"CREATE INDEX IF NOT EXISTS orders_user ON orders(user_id, order_id);"                               \
	"CREATE TABLE IF NOT EXISTS statuses (order_id TEXT NOT NULL, seq INTEGER NOT NULL,"                 \
	"  user_id TEXT NOT NULL, status TEXT NOT NULL, at_ms BIGINT NOT NULL,"                              \
	"  worker TEXT NOT NULL, event_id TEXT NOT NULL, PRIMARY KEY (order_id, seq));"                     \
	"CREATE TABLE IF NOT EXISTS callbacks (order_id TEXT PRIMARY KEY, user_id TEXT NOT NULL,"            \
	"  delivery_id TEXT NOT NULL, outcome TEXT NOT NULL, attempts INTEGER NOT NULL,"                     \
	"  detail TEXT NOT NULL, at_ms BIGINT NOT NULL, event_id TEXT NOT NULL);"                           \
	"CREATE TABLE IF NOT EXISTS receipts (order_id TEXT NOT NULL, device_id TEXT COLLATE \"C\" NOT NULL," \
	"  user_id TEXT NOT NULL, event_id TEXT NOT NULL, at_ms BIGINT NOT NULL,"                            \
	"  PRIMARY KEY (order_id, device_id));"                                                              \
	"CREATE TABLE IF NOT EXISTS db_health (id INTEGER PRIMARY KEY, at_ms BIGINT NOT NULL);"              \
	"COMMIT;"

static const char *const sql[HS_NSTMTS] = {
	[HS_PUT_ORDER] = "INSERT INTO orders(order_id, user_id, items, callback_url, placed_ms, event_id) "
			 "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
	[HS_PUT_STATUS] = "INSERT INTO statuses(order_id, seq, user_id, status, at_ms, worker, event_id) "
			  "VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
	[HS_PUT_CALLBACK] = "INSERT INTO callbacks(order_id, user_id, delivery_id, outcome, attempts, detail, at_ms, "
			    "event_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
	[HS_PUT_RECEIPT] = "INSERT INTO receipts(order_id, device_id, user_id, event_id, at_ms) "
			   "VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
	[HS_GET_ORDER] = "SELECT user_id, items, placed_ms FROM orders WHERE order_id = $1",
	[HS_GET_STATUSES] = "SELECT status, seq, at_ms, worker, user_id FROM statuses WHERE order_id = $1 ORDER BY seq",
	[HS_GET_CALLBACK] = "SELECT outcome, attempts, detail, at_ms, delivery_id FROM callbacks WHERE order_id = $1",
	[HS_GET_RECEIPTS] = "SELECT device_id, at_ms FROM receipts WHERE order_id = $1 AND user_id = $2 "
			    "ORDER BY at_ms, device_id",
	[HS_USER_ORDERS] = "SELECT order_id FROM orders WHERE user_id = $1 ORDER BY order_id DESC LIMIT $2",
	[HS_USER_ORDERS_BEFORE] = "SELECT order_id FROM orders WHERE user_id = $1 AND order_id < $2 "
				  "ORDER BY order_id DESC LIMIT $3",
	[HS_COUNT_ORDERS] = "SELECT count(*) FROM orders",
	[HS_COUNT_STATUSES] = "SELECT count(*) FROM statuses",
};

#define MAX_PARAMS 8
#define MAX_COLS 8

/*
 * The writer (paho's thread, the probe) and the reader (the HTTP threads),
 * each under its own lock (pgconn.h).  rconn is the reader's connection
 * between read_begin and read_end.
 */
struct pgstore {
	struct pgconn *w, *r;
	PGconn *rconn;
};

const char *
hstore_pg_label(const char *target, char *buf, size_t n)
{
	return pgconn_label(target, buf, n);
}

/* Runs sql with params on c.  The result (caller clears it), or NULL when out of memory. */
static PGresult *
run(PGconn *c, const char *text, const struct hval *v, int n)
{
	char ints[MAX_PARAMS][24];
	const char *vals[MAX_PARAMS];

	for (int k = 0; k < n && k < MAX_PARAMS; k++) {
		if (v[k].null)
			vals[k] = NULL;
		else if (v[k].s != NULL)
			vals[k] = v[k].s;
		else {
			snprintf(ints[k], sizeof(ints[k]), "%lld", (long long)v[k].i);
			vals[k] = ints[k];
		}
	}
	return PQexecParams(c, text, n < MAX_PARAMS ? n : MAX_PARAMS, NULL, vals, NULL, NULL, 0);
}

static void pg_close(void *b);

static void *
pg_open(const char *target)
{
	struct pgstore *s = calloc(1, sizeof(*s));
	char *url = pgconn_in_schema(target, PG_SCHEMA_NAME);
	PGconn *c;
	int rc;

	if (s == NULL || url == NULL) {
		log_error("out of memory", NULL);
		free(url);
		free(s);
		return NULL;
	}
	s->w = pgconn_open(url, "order-history", "write");
	s->r = s->w != NULL ? pgconn_open(url, "order-history", "read") : NULL;
	free(url);
	if (s->r == NULL || (c = pgconn_begin(s->w)) == NULL) {
		pg_close(s);
		return NULL;
	}
	if ((rc = pgconn_command(s->w, PG_SCHEMA)) != 0 && PQtransactionStatus(c) != PQTRANS_IDLE)
		PQclear(PQexec(c, "ROLLBACK"));
	pgconn_end(s->w);
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
	pgconn_close(s->w);
	pgconn_close(s->r);
	free(s);
}

static int
pg_put(void *b, enum hstmt st, const struct hval *v, int n)
{
	struct pgconn *pc = ((struct pgstore *)b)->w;
	PGresult *res;
	PGconn *c;
	int rc = -1;

	if ((c = pgconn_begin(pc)) == NULL)
		return -1;
	res = run(c, sql[st], v, n);
	if (PQresultStatus(res) == PGRES_COMMAND_OK)
		rc = strcmp(PQcmdTuples(res), "0") != 0; /* "1": stored; "0": the conflict, had it */
	else
		pgconn_failed(pc, "store a history row", res);
	PQclear(res);
	pgconn_end(pc);
	return rc;
}

static int
pg_read_begin(void *b)
{
	struct pgstore *s = b;

	if ((s->rconn = pgconn_begin(s->r)) == NULL)
		return -1;
	/* one snapshot for the reads of one answer, as SQLite's lock gives */
	if (pgconn_command(s->r, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY") == 0)
		return 0;
	pgconn_end(s->r);
	return -1;
}

static void
pg_read_end(void *b)
{
	struct pgstore *s = b;

	/* after a failed read the transaction is aborted: COMMIT then ends it as a rollback */
	if (PQstatus(s->rconn) == CONNECTION_OK)
		pgconn_command(s->r, "COMMIT");
	pgconn_end(s->r);
}

static int
pg_select(void *b, enum hstmt st, const struct hval *v, int n, hrow_fn fn, void *arg)
{
	struct pgstore *s = b;
	PGresult *res = run(s->rconn, sql[st], v, n);
	const char *col[MAX_COLS];
	int rows = -1;

	if (PQresultStatus(res) == PGRES_TUPLES_OK) {
		int nrows = PQntuples(res), ncols = PQnfields(res);
		for (rows = 0; rows < nrows; rows++) {
			for (int k = 0; k < ncols && k < MAX_COLS; k++)
				col[k] = PQgetisnull(res, rows, k) ? NULL : PQgetvalue(res, rows, k);
			if (fn(arg, col) != 0) {
				log_error("cannot read the history", "err=%s", "out of memory");
				rows = -1;
				break;
			}
		}
	} else
		pgconn_failed(s->r, "read the history", res);
	PQclear(res);
	return rows;
}

static int
pg_probe(void *b)
{
	struct pgconn *pc = ((struct pgstore *)b)->w;
	const struct hval v[] = { { .i = now_ms() } };
	PGresult *res;
	PGconn *c;
	int rc;

	if ((c = pgconn_begin(pc)) == NULL)
		return -1;
	res = run(c, "INSERT INTO db_health(id, at_ms) VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET at_ms = EXCLUDED.at_ms",
	    v, 1);
	if ((rc = PQresultStatus(res) == PGRES_COMMAND_OK ? 0 : -1) != 0)
		log_debug("store not writable", "err=%s", LOGQ(PQresultErrorMessage(res)));
	PQclear(res);
	pgconn_end(pc);
	return rc;
}

const struct hstore_ops hstore_pg_ops = {
	.name = "postgresql",
	.open = pg_open,
	.close = pg_close,
	.put = pg_put,
	.read_begin = pg_read_begin,
	.read_end = pg_read_end,
	.select = pg_select,
	.probe = pg_probe,
};

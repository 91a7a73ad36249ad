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
 * the broker to deliver again) and is re-established with PQresetStart()
 * and PQresetPoll(), driven by later calls, at most one attempt a second
 * and never waiting more than RESET_WAIT_MS on the caller's thread, which
 * may be paho's.
 */
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "log.h"
#include "store_backend.h"
#include "util.h"

/*
 * Two instances starting together would race on CREATE ... IF NOT EXISTS
 * (a duplicate key in the catalog): the schema is created under an advisory
 * lock, any key the same in every instance.
 */
#define SCHEMA_LOCK_KEY "7104111114"
/* COLLATE "C": order ids sort (and page) by their bytes, as in SQLite, whatever the cluster's locale. */
#define PG_SCHEMA                                                                                            \
	"BEGIN;"                                                                                             \
	"SELECT pg_advisory_xact_lock(" SCHEMA_LOCK_KEY ");"                                                 \
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
#define RESET_EVERY_MS 1000   /* between two reconnection attempts */
#define RESET_WAIT_MS 250     /* the most one call waits for a reconnection */
#define RESET_GIVE_UP_MS 5000 /* an attempt that long is dropped (libpq's connect_timeout does not apply to it) */

/* One connection and what recovers it; used under lock only. */
struct pgconn {
	pthread_mutex_t lock;
	PGconn *c;
	const char *role; /* "write" or "read", for the logs */
	const char *label;
	int resetting, lost;
	PostgresPollingStatusType pst;
	int64_t next_reset_ms, give_up_ms;
};

struct pgstore {
	struct pgconn w, r;
	char label[256];
};

const char *
hstore_pg_label(const char *target, char *buf, size_t n)
{
	PQconninfoOption *opts = PQconninfoParse(target, NULL);
	const char *user = "", *host = "", *port = "", *dbname = "";

	for (PQconninfoOption *o = opts; o != NULL && o->keyword != NULL; o++) {
		if (o->val == NULL)
			continue;
		if (strcmp(o->keyword, "user") == 0)
			user = o->val;
		else if (strcmp(o->keyword, "host") == 0)
			host = o->val;
		else if (strcmp(o->keyword, "port") == 0)
			port = o->val;
		else if (strcmp(o->keyword, "dbname") == 0)
			dbname = o->val;
	}
	if (opts == NULL)
		snprintf(buf, n, "postgresql://(unparsable URL)");
	else
		snprintf(buf, n, "postgresql://%s%s%s%s%s/%s", user, user[0] != '\0' ? "@" : "", host,
		    port[0] != '\0' ? ":" : "", port, dbname);
	PQconninfoFree(opts);
	return buf;
}

/* libpq's message without its trailing newline, for one log line. */
static const char *
errtext(const char *s, char *buf, size_t n)
{
	snprintf(buf, n, "%s", s != NULL ? s : "");
	buf[strcspn(buf, "\n")] = '\0';
	return buf;
}

/* The server's notices ("relation ... already exists, skipping") at debug, not on stderr. */
static void
on_notice(void *arg, const char *message)
{
	char e[256];

	log_debug("PostgreSQL notice", "db=%s notice=%s", LOGQ((const char *)arg), LOGQ(errtext(message, e, sizeof(e))));
}

/*
 * Connects to target with our defaults first: the URL's own parameters
 * (listed later) override them.  Returns the connection, or NULL (logged).
 */
static PGconn *
connect_to(const char *target, const char *label)
{
	static const char *const keys[] = { "connect_timeout", "application_name", "keepalives_idle",
		"keepalives_interval", "keepalives_count", "dbname", NULL };
	const char *const vals[] = { "5", "order-history", "10", "5", "3", target, NULL };
	PGconn *c = PQconnectdbParams(keys, vals, 1);
	char e[256];

	if (c == NULL || PQstatus(c) != CONNECTION_OK) {
		log_error("cannot connect to PostgreSQL", "db=%s err=%s", LOGQ(label),
		    LOGQ(errtext(c != NULL ? PQerrorMessage(c) : "out of memory", e, sizeof(e))));
		PQfinish(c);
		return NULL;
	}
	PQsetNoticeProcessor(c, on_notice, (void *)label);
	return c;
}

/* Drives a reconnection until it ends or until is reached.  0 once connected, else -1.  Under pc->lock. */
static int
reset_poll(struct pgconn *pc, int64_t until)
{
	char e[256];

	for (;;) {
		int64_t now = mono_ms();
		struct pollfd pfd;

		if (pc->pst == PGRES_POLLING_OK) {
			pc->resetting = pc->lost = 0;
			log_info("reconnected to PostgreSQL", "db=%s conn=%s", LOGQ(pc->label), pc->role);
			return 0;
		}
		if (pc->pst == PGRES_POLLING_FAILED || now >= pc->give_up_ms || (pfd.fd = PQsocket(pc->c)) < 0) {
			pc->resetting = 0;
			log_debug("PostgreSQL still unreachable", "db=%s conn=%s err=%s", LOGQ(pc->label), pc->role,
			    LOGQ(errtext(PQerrorMessage(pc->c), e, sizeof(e))));
			return -1;
		}
		if (now >= until)
			return -1; /* still connecting: the next call goes on with it */
		pfd.events = pc->pst == PGRES_POLLING_READING ? POLLIN : POLLOUT;
		if (poll(&pfd, 1, (int)(until - now)) > 0)
			pc->pst = PQresetPoll(pc->c);
	}
}

/*
 * 0 when pc's connection can take a statement now; else -1 (the caller
 * answers "failed"), having started or advanced a reconnection.  Under
 * pc->lock.
 */
static int
conn_ready(struct pgconn *pc)
{
	int64_t now = mono_ms();

	if (!pc->resetting) {
		if (PQstatus(pc->c) == CONNECTION_OK)
			return 0;
		if (!pc->lost) {
			pc->lost = 1;
			log_warn("lost the PostgreSQL connection; reconnecting (events are left for the broker meanwhile)",
			    "db=%s conn=%s", LOGQ(pc->label), pc->role);
		}
		if (now < pc->next_reset_ms)
			return -1;
		pc->next_reset_ms = now + RESET_EVERY_MS;
		if (!PQresetStart(pc->c))
			return -1;
		pc->resetting = 1;
		pc->give_up_ms = now + RESET_GIVE_UP_MS;
		pc->pst = PGRES_POLLING_WRITING; /* as libpq says to start */
	}
	return reset_poll(pc, now + RESET_WAIT_MS);
}

/* Runs sql with params on pc (ready, locked).  The result (caller clears it), or NULL when out of memory. */
static PGresult *
run(struct pgconn *pc, const char *text, const struct hval *v, int n)
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
	return PQexecParams(pc->c, text, n < MAX_PARAMS ? n : MAX_PARAMS, NULL, vals, NULL, NULL, 0);
}

/* Logs a failed statement (and a connection it found lost).  Under pc->lock. */
static void
failed(struct pgconn *pc, const char *what, const PGresult *res)
{
	char e[256];

	if (PQstatus(pc->c) != CONNECTION_OK) {
		pc->lost = 1;
		log_warn("lost the PostgreSQL connection; reconnecting (events are left for the broker meanwhile)",
		    "db=%s conn=%s err=%s", LOGQ(pc->label), pc->role, LOGQ(errtext(PQerrorMessage(pc->c), e, sizeof(e))));
		return;
	}
	log_error("PostgreSQL statement failed", "db=%s what=%s err=%s", LOGQ(pc->label), what,
	    LOGQ(errtext(res != NULL ? PQresultErrorMessage(res) : "out of memory", e, sizeof(e))));
}

static int
conn_init(struct pgconn *pc, const char *target, const char *label, const char *role)
{
	pthread_mutex_init(&pc->lock, NULL);
	pc->role = role;
	pc->label = label;
	return (pc->c = connect_to(target, label)) != NULL ? 0 : -1;
}

static void
conn_fini(struct pgconn *pc)
{
	PQfinish(pc->c);
	pthread_mutex_destroy(&pc->lock);
}

static void pg_close(void *b);

static void *
pg_open(const char *target)
{
	struct pgstore *s = calloc(1, sizeof(*s));
	PGresult *res;
	int ok;

	if (s == NULL)
		return NULL;
	hstore_pg_label(target, s->label, sizeof(s->label));
	if (conn_init(&s->w, target, s->label, "write") != 0 || conn_init(&s->r, target, s->label, "read") != 0) {
		pg_close(s);
		return NULL;
	}
	res = PQexec(s->w.c, PG_SCHEMA);
	if (!(ok = PQresultStatus(res) == PGRES_COMMAND_OK))
		failed(&s->w, "create the schema", res);
	PQclear(res);
	if (!ok) {
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
	if (s->w.role != NULL)
		conn_fini(&s->w);
	if (s->r.role != NULL)
		conn_fini(&s->r);
	free(s);
}

static int
pg_put(void *b, enum hstmt st, const struct hval *v, int n)
{
	struct pgconn *pc = &((struct pgstore *)b)->w;
	PGresult *res;
	int rc = -1;

	pthread_mutex_lock(&pc->lock);
	if (conn_ready(pc) == 0) {
		res = run(pc, sql[st], v, n);
		if (PQresultStatus(res) == PGRES_COMMAND_OK)
			rc = strcmp(PQcmdTuples(res), "0") != 0; /* "1": stored; "0": the conflict, had it */
		else
			failed(pc, "store a history row", res);
		PQclear(res);
	}
	pthread_mutex_unlock(&pc->lock);
	return rc;
}

/* Runs a statement without parameters or results on pc (locked): 0 or -1 (logged). */
static int
command(struct pgconn *pc, const char *text)
{
	PGresult *res = PQexec(pc->c, text);
	int rc = PQresultStatus(res) == PGRES_COMMAND_OK ? 0 : -1;

	if (rc != 0)
		failed(pc, text, res);
	PQclear(res);
	return rc;
}

static int
pg_read_begin(void *b)
{
	struct pgconn *pc = &((struct pgstore *)b)->r;

	pthread_mutex_lock(&pc->lock);
	/* one snapshot for the reads of one answer, as SQLite's lock gives */
	if (conn_ready(pc) == 0 && command(pc, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY") == 0)
		return 0;
	pthread_mutex_unlock(&pc->lock);
	return -1;
}

static void
pg_read_end(void *b)
{
	struct pgconn *pc = &((struct pgstore *)b)->r;

	/* after a failed read the transaction is aborted: COMMIT then ends it as a rollback */
	if (PQstatus(pc->c) == CONNECTION_OK)
		command(pc, "COMMIT");
	pthread_mutex_unlock(&pc->lock);
}

static int
pg_select(void *b, enum hstmt st, const struct hval *v, int n, hrow_fn fn, void *arg)
{
	struct pgconn *pc = &((struct pgstore *)b)->r;
	PGresult *res = run(pc, sql[st], v, n);
	const char *col[MAX_COLS];
	int rows = -1;

	if (PQresultStatus(res) == PGRES_TUPLES_OK) {
		int nrows = PQntuples(res), ncols = PQnfields(res);
		for (rows = 0; rows < nrows; rows++) {
			for (int k = 0; k < ncols && k < MAX_COLS; k++)
				col[k] = PQgetisnull(res, rows, k) ? NULL : PQgetvalue(res, rows, k);
			if (fn(arg, col) != 0) {
				log_error("cannot read the history", "db=%s err=%s", LOGQ(pc->label), "out of memory");
				rows = -1;
				break;
			}
		}
	} else
		failed(pc, "read the history", res);
	PQclear(res);
	return rows;
}

static int
pg_probe(void *b)
{
	struct pgconn *pc = &((struct pgstore *)b)->w;
	const struct hval v[] = { { .i = now_ms() } };
	PGresult *res;
	int rc = -1;

	pthread_mutex_lock(&pc->lock);
	if (conn_ready(pc) == 0) {
		res = run(pc, "INSERT INTO db_health(id, at_ms) VALUES (1, $1) "
			      "ON CONFLICT (id) DO UPDATE SET at_ms = EXCLUDED.at_ms", v, 1);
		rc = PQresultStatus(res) == PGRES_COMMAND_OK ? 0 : -1;
		if (rc != 0)
			log_debug("store not writable", "db=%s err=%s", LOGQ(pc->label),
			    LOGQ(PQresultErrorMessage(res)));
		PQclear(res);
	}
	pthread_mutex_unlock(&pc->lock);
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

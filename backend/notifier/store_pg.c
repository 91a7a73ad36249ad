/*
 * store_pg.c - the notifier's store on PostgreSQL (libpq), for several
 * notifier instances sharing one database.  Every instance sees every
 * event (plain subscriptions, docs/scaling.md); the database makes each
 * outcome happen once:
 *
 *  - one pickup alert per order: the alerts row is inserted with
 *    ON CONFLICT DO NOTHING, and only the instance whose insert took
 *    queues the alert (and the order's callback delivery and its device
 *    deliveries) in the outbox, in the same transaction.  A second
 *    instance's insert waits on the first's uncommitted row, then finds it
 *    and changes nothing (NSTORE_DUP);
 *  - one callback POST at a time: nstore_due() claims due deliveries with
 *    FOR UPDATE SKIP LOCKED by moving their next_ms a claim ahead, so no
 *    other instance is handed them while this one posts; an outcome is
 *    recorded only on a delivery still pending, so it is announced once;
 *  - orders, devices, receipts: upserts and conditional updates that leave
 *    the same rows whoever applies them, and however often.
 *
 * One connection (pgconn.h) for the store, used under its mutex by paho's
 * receive thread, the callback deliverer and the main loop, as SQLite's
 * lock serialises them; the outbox has its own.  A lost connection fails
 * the call that finds it (NSTORE_FAIL: the consumer leaves the message for
 * the broker) and is re-established by later calls without blocking them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "log.h"
#include "outbox.h"
#include "pgconn.h"
#include "store_backend.h"
#include "topic.h"
#include "util.h"

/*
 * The tables live in their own schema, notifier (the connections'
 * search_path, pgconn_in_schema()), so that order-service's and
 * order-history's tables of the same names (orders, outbox) in one database
 * stay apart.
 */
#define PG_SCHEMA_NAME "notifier"
/* Two instances starting together would race on CREATE ... IF NOT EXISTS: the schema is created under an advisory lock. */
#define SCHEMA_LOCK_KEY "7104111115"
#define PG_SCHEMA                                                                                              \
	"BEGIN;"                                                                                               \
	"SELECT pg_advisory_xact_lock(" SCHEMA_LOCK_KEY ");"                                                   \
	"CREATE SCHEMA IF NOT EXISTS " PG_SCHEMA_NAME ";"                                                      \
	"SET LOCAL search_path TO " PG_SCHEMA_NAME ";" OUTBOX_PG_SCHEMA                                        \
	"CREATE TABLE IF NOT EXISTS orders (order_id TEXT PRIMARY KEY, user_id TEXT NOT NULL,"                \
	"  items TEXT NOT NULL, callback_url TEXT, placed_ms BIGINT NOT NULL);"                               \
	"CREATE TABLE IF NOT EXISTS alerts (order_id TEXT PRIMARY KEY, user_id TEXT NOT NULL,"                \
	"  event_id TEXT NOT NULL, ready_ms BIGINT NOT NULL);"                                                \
	"CREATE TABLE IF NOT EXISTS deliveries (delivery_id TEXT PRIMARY KEY, order_id TEXT NOT NULL UNIQUE," \
	"  user_id TEXT NOT NULL, url TEXT NOT NULL, body TEXT NOT NULL,"                                     \
	"  attempts INTEGER NOT NULL DEFAULT 0, next_ms BIGINT NOT NULL,"                                     \
	"  state TEXT NOT NULL DEFAULT 'pending', last_error TEXT,"                                           \
	"  created_ms BIGINT NOT NULL, done_ms BIGINT);"                                                      \
	"CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries(state, next_ms);"                            \
	"CREATE TABLE IF NOT EXISTS devices (user_id TEXT NOT NULL, device_id TEXT NOT NULL,"                 \
	"  first_ms BIGINT NOT NULL, hello_ms BIGINT NOT NULL, PRIMARY KEY (user_id, device_id));"            \
	"CREATE TABLE IF NOT EXISTS device_alerts (user_id TEXT NOT NULL, device_id TEXT NOT NULL,"           \
	"  event_id TEXT NOT NULL, order_id TEXT NOT NULL, payload TEXT NOT NULL,"                            \
	"  expires_ms BIGINT NOT NULL, delivered_ms BIGINT, resends INTEGER NOT NULL DEFAULT 0,"              \
	"  PRIMARY KEY (user_id, device_id, event_id));"                                                      \
	"CREATE INDEX IF NOT EXISTS device_alerts_expiry ON device_alerts(expires_ms);"                       \
	"CREATE TABLE IF NOT EXISTS db_health (id INTEGER PRIMARY KEY, at_ms BIGINT NOT NULL);"               \
	"COMMIT;"

/* Longest a device delivery is kept when its alert has no expiry: the notifier's own --alert-expiry cap. */
#define NO_EXPIRY_MS (604800LL * 1000)
#define MAX_PARAMS 8

struct pgstore {
	struct notifier_store base; /* first: store.c sees only this */
	struct pgconn *pc;
	struct outbox *outbox; /* NULL without an mq */
	char *target;          /* the URL with our search_path, for both connections */
};

#define PG(ns) ((struct pgstore *)(ns))

/* A parameter: text (s not NULL), an integer (s NULL, null 0), or SQL NULL (null 1). */
struct pval {
	const char *s;
	int64_t i;
	int null;
};

#define T(v) { .s = (v) }
#define I(v) { .i = (v) }
#define TN(v) { .s = (v), .null = (v) == NULL }

/* Runs text with params on conn.  The result (caller clears it; NULL when out of memory). */
static PGresult *
run(PGconn *conn, const char *text, const struct pval *v, int n)
{
	char ints[MAX_PARAMS][24];
	const char *vals[MAX_PARAMS];

	if (n > MAX_PARAMS)
		n = MAX_PARAMS;
	for (int k = 0; k < n; k++) {
		if (v[k].null)
			vals[k] = NULL;
		else if (v[k].s != NULL)
			vals[k] = v[k].s;
		else {
			snprintf(ints[k], sizeof(ints[k]), "%lld", (long long)v[k].i);
			vals[k] = ints[k];
		}
	}
	return PQexecParams(conn, text, n, NULL, vals, NULL, NULL, 0);
}

/* Runs a write: the rows it changed, or -1 (logged as what). */
static int64_t
write_rows(struct pgstore *s, PGconn *conn, const char *what, const char *text, const struct pval *v, int n)
{
	PGresult *res = run(conn, text, v, n);
	int64_t rows = -1;

	if (PQresultStatus(res) == PGRES_COMMAND_OK)
		rows = strtoll(PQcmdTuples(res), NULL, 10);
	else
		pgconn_failed(s->pc, what, res);
	PQclear(res);
	return rows;
}

/* Runs a query: its result when it returned rows (caller clears it), else NULL (logged as what). */
static PGresult *
query(struct pgstore *s, PGconn *conn, const char *what, const char *text, const struct pval *v, int n)
{
	PGresult *res = run(conn, text, v, n);

	if (PQresultStatus(res) == PGRES_TUPLES_OK)
		return res;
	pgconn_failed(s->pc, what, res);
	PQclear(res);
	return NULL;
}

/* Ends a transaction: COMMIT when ok, else ROLLBACK.  0 when it committed. */
static int
finish(struct pgstore *s, int ok)
{
	if (ok && pgconn_command(s->pc, "COMMIT") == 0)
		return 0;
	if (ok == 0)
		pgconn_command(s->pc, "ROLLBACK");
	return -1;
}

static void pg_close(struct notifier_store *ns);

static struct notifier_store *
pg_open(const char *target, struct mq *mq, int64_t retry_ms)
{
	struct pgstore *s = calloc(1, sizeof(*s));
	PGconn *conn;
	int rc;

	if (s == NULL)
		return NULL;
	s->base.ops = &nstore_pg_ops;
	if ((s->target = pgconn_in_schema(target, PG_SCHEMA_NAME)) == NULL ||
	    (s->pc = pgconn_open(s->target, "notifier", "store")) == NULL || (conn = pgconn_begin(s->pc)) == NULL)
		goto fail;
	rc = pgconn_command(s->pc, PG_SCHEMA);
	pgconn_end(s->pc);
	if (rc != 0)
		goto fail;
	if (mq != NULL && (s->outbox = outbox_pg_new(s->target, mq, retry_ms)) == NULL)
		goto fail;
	(void)conn;
	return &s->base;
fail:
	pg_close(&s->base);
	return NULL;
}

static void
pg_close(struct notifier_store *ns)
{
	struct pgstore *s = PG(ns);

	if (s == NULL)
		return;
	outbox_free(s->outbox);
	pgconn_close(s->pc);
	free(s->target);
	free(s);
}

static enum nstore_result
pg_put_order(struct notifier_store *ns, const struct event *placed)
{
	struct pgstore *s = PG(ns);
	char items[NSTORE_ITEMS_MAX + 1];
	PGconn *conn;
	int64_t rc;

	nstore_items_text(placed, items, sizeof(items));
	const struct pval v[] = { T(placed->order_id), T(placed->user_id), T(items),
		TN(placed->callback_url[0] != '\0' ? placed->callback_url : NULL), I(placed->at_ms) };
	if ((conn = pgconn_begin(s->pc)) == NULL)
		return NSTORE_FAIL;
	rc = write_rows(s, conn, "insert order",
	    "INSERT INTO orders(order_id, user_id, items, callback_url, placed_ms) VALUES ($1, $2, $3, $4, $5) "
	    "ON CONFLICT DO NOTHING",
	    v, 5);
	pgconn_end(s->pc);
	return rc < 0 ? NSTORE_FAIL : rc == 0 ? NSTORE_DUP : NSTORE_OK;
}

static enum nstore_result
pg_order(struct notifier_store *ns, const char *order_id, struct nstore_order *out)
{
	struct pgstore *s = PG(ns);
	const struct pval v[] = { T(order_id) };
	enum nstore_result r = NSTORE_FAIL;
	PGresult *res;
	PGconn *conn;

	out->items[0] = out->callback_url[0] = '\0';
	if ((conn = pgconn_begin(s->pc)) == NULL)
		return NSTORE_FAIL;
	if ((res = query(s, conn, "read order", "SELECT items, callback_url FROM orders WHERE order_id = $1", v, 1)) !=
	    NULL) {
		if (PQntuples(res) == 1) {
			str_copy(out->items, sizeof(out->items), PQgetvalue(res, 0, 0));
			str_copy(out->callback_url, sizeof(out->callback_url), PQgetvalue(res, 0, 1));
			r = NSTORE_OK;
		} else
			r = NSTORE_NOT_FOUND;
		PQclear(res);
	}
	pgconn_end(s->pc);
	return r;
}

/* Queues m in the outbox inside the open transaction on conn.  0 or -1. */
static int
queue_msg(PGconn *conn, const struct nstore_msg *m)
{
	return outbox_pg_add(conn, m->topic, m->payload, m->len, m->qos, 0, m->expiry_s);
}

/* The rest of a new alert: its outbox message, device deliveries and callback delivery.  0 or -1.  In the transaction. */
static int
alert_rest(struct pgstore *s, PGconn *conn, const struct nstore_alert *a)
{
	int64_t now = now_ms();
	int64_t expires = now + (a->msg.expiry_s > 0 ? (int64_t)a->msg.expiry_s * 1000 : NO_EXPIRY_MS);
	char *payload, id[ID_LEN + 1];
	int rc;

	if (queue_msg(conn, &a->msg) != 0)
		return -1;
	/* the payload is a JSON text (no NUL): a TEXT parameter */
	if ((payload = strndup(a->msg.payload, a->msg.len)) == NULL)
		return -1;
	const struct pval dv[] = { T(a->event_id), T(a->order_id), T(payload), I(expires), T(a->user_id) };
	rc = write_rows(s, conn, "insert device alerts",
		 "INSERT INTO device_alerts(user_id, device_id, event_id, order_id, payload, expires_ms) "
		 "SELECT user_id, device_id, $1, $2, $3, $4 FROM devices WHERE user_id = $5 ON CONFLICT DO NOTHING",
		 dv, 5) < 0 ? -1 : 0;
	free(payload);
	if (rc != 0 || a->callback_url == NULL || a->callback_url[0] == '\0')
		return rc;
	id_new(id);
	const struct pval cv[] = { T(id), T(a->order_id), T(a->user_id), T(a->callback_url),
		T(a->callback_body != NULL ? a->callback_body : ""), I(now) };
	return write_rows(s, conn, "insert callback delivery",
		   "INSERT INTO deliveries(delivery_id, order_id, user_id, url, body, next_ms, created_ms) "
		   "VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT DO NOTHING",
		   cv, 6) < 0 ? -1 : 0;
}

static enum nstore_result
pg_queue_alert(struct notifier_store *ns, const struct nstore_alert *a)
{
	struct pgstore *s = PG(ns);
	const struct pval v[] = { T(a->order_id), T(a->user_id), T(a->event_id), I(a->ready_ms) };
	PGconn *conn;
	int64_t inserted = -1;
	int ok;

	if ((conn = pgconn_begin(s->pc)) == NULL)
		return NSTORE_FAIL;
	if (pgconn_command(s->pc, "BEGIN") != 0) {
		pgconn_end(s->pc);
		return NSTORE_FAIL;
	}
	/* the alerts row is the "sent once" record, across instances: only the insert that took queues the alert */
	inserted = write_rows(s, conn, "insert alert",
	    "INSERT INTO alerts(order_id, user_id, event_id, ready_ms) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING", v,
	    4);
	ok = inserted == 0 || (inserted == 1 && alert_rest(s, conn, a) == 0);
	ok = finish(s, ok) == 0;
	pgconn_end(s->pc);
	return !ok ? NSTORE_FAIL : inserted == 1 ? NSTORE_OK : NSTORE_DUP;
}

/*
 * Queues again every alert pending and not expired at now for user_id's
 * device (both NULL: every device's), and counts the resend on each.  In
 * the transaction.  How many, or -1.
 */
static int
resend_pending(struct pgstore *s, PGconn *conn, const char *user_id, const char *device, int64_t now)
{
	const struct pval v[] = { TN(user_id), TN(device), I(now) };
	PGresult *res;
	int n, rc = 0;

	res = query(s, conn, "read pending device alerts",
	    "SELECT user_id, device_id, payload, expires_ms FROM device_alerts "
	    "WHERE ($1::text IS NULL OR user_id = $1) AND ($2::text IS NULL OR device_id = $2) AND "
	    "delivered_ms IS NULL AND expires_ms > $3 ORDER BY expires_ms, event_id",
	    v, 3);
	if (res == NULL)
		return -1;
	n = PQntuples(res);
	for (int i = 0; i < n && rc == 0; i++) {
		char topic[TOPIC_MAX];
		int64_t left = strtoll(PQgetvalue(res, i, 3), NULL, 10) - now;
		struct nstore_msg m = { topic, PQgetvalue(res, i, 2), (size_t)PQgetlength(res, i, 2), 1,
			(unsigned)((left + 999) / 1000) };

		if (topic_device(topic, sizeof(topic), PQgetvalue(res, i, 0), PQgetvalue(res, i, 1), "alerts") != 0 ||
		    queue_msg(conn, &m) != 0)
			rc = -1;
	}
	PQclear(res);
	if (rc != 0 || n == 0)
		return rc != 0 ? -1 : 0;
	if (write_rows(s, conn, "count resends",
		"UPDATE device_alerts SET resends = resends + 1 WHERE ($1::text IS NULL OR user_id = $1) AND "
		"($2::text IS NULL OR device_id = $2) AND delivered_ms IS NULL AND expires_ms > $3",
		v, 3) < 0)
		return -1;
	return n;
}

/* Records user_id's device (NULL: none) and resends what is pending, in one transaction. */
static enum nstore_result
hello(struct pgstore *s, const char *user_id, const char *device, int64_t now, int *resent)
{
	const struct pval v[] = { TN(user_id), TN(device), I(now) };
	PGconn *conn;
	int n = -1;

	if ((conn = pgconn_begin(s->pc)) == NULL)
		return NSTORE_FAIL;
	if (pgconn_command(s->pc, "BEGIN") != 0) {
		pgconn_end(s->pc);
		return NSTORE_FAIL;
	}
	if (device == NULL)
		n = resend_pending(s, conn, NULL, NULL, now);
	else if (write_rows(s, conn, "record device",
		     "INSERT INTO devices(user_id, device_id, first_ms, hello_ms) VALUES ($1, $2, $3, $3) "
		     "ON CONFLICT (user_id, device_id) DO UPDATE SET hello_ms = GREATEST(devices.hello_ms, EXCLUDED.hello_ms)",
		     v, 3) >= 0)
		n = resend_pending(s, conn, user_id, device, now);
	if (finish(s, n >= 0) != 0)
		n = -1;
	pgconn_end(s->pc);
	if (n < 0)
		return NSTORE_FAIL;
	if (resent != NULL)
		*resent = n;
	return NSTORE_OK;
}

static enum nstore_result
pg_hello(struct notifier_store *ns, const char *user_id, const char *device, int64_t now, int *resent)
{
	return hello(PG(ns), user_id, device, now, resent);
}

static enum nstore_result
pg_resend_all(struct notifier_store *ns, int64_t now, int *resent)
{
	return hello(PG(ns), NULL, NULL, now, resent);
}

/* Rows of a query (1 or more), 0 when none, -1 on error. */
static int
count_of(struct pgstore *s, PGconn *conn, const char *what, const char *text, const struct pval *v, int n)
{
	PGresult *res = query(s, conn, what, text, v, n);
	int rows;

	if (res == NULL)
		return -1;
	rows = PQntuples(res);
	PQclear(res);
	return rows;
}

static enum nstore_result
pg_receipt(struct notifier_store *ns, const char *user_id, const char *device, const char *event_id,
    const char *order_id, int64_t now)
{
	struct pgstore *s = PG(ns);
	const struct pval v[] = { I(now), T(user_id), T(device), T(event_id), T(order_id) };
	enum nstore_result r = NSTORE_FAIL;
	PGconn *conn;
	int64_t changed;
	int found;

	if ((conn = pgconn_begin(s->pc)) == NULL)
		return NSTORE_FAIL;
	changed = write_rows(s, conn, "record receipt",
	    "UPDATE device_alerts SET delivered_ms = $1 WHERE user_id = $2 AND device_id = $3 AND event_id = $4 AND "
	    "order_id = $5 AND delivered_ms IS NULL",
	    v, 5);
	if (changed != 0) {
		r = changed > 0 ? NSTORE_OK : NSTORE_FAIL;
		goto out;
	}
	/* nothing pending: delivered before, an alert this device was not waiting for, or no such alert */
	found = count_of(s, conn, "look up a receipt's alert",
	    "SELECT 1 FROM device_alerts WHERE user_id = $2 AND device_id = $3 AND event_id = $4 AND order_id = $5 "
	    "AND $1::bigint IS NOT NULL",
	    v, 5);
	if (found != 0) {
		r = found > 0 ? NSTORE_DUP : NSTORE_FAIL;
		goto out;
	}
	found = count_of(s, conn, "look up a receipt's alert",
	    "SELECT 1 FROM alerts WHERE user_id = $2 AND event_id = $4 AND order_id = $5 AND $1::bigint IS NOT NULL "
	    "AND $3::text IS NOT NULL",
	    v, 5);
	r = found > 0 ? NSTORE_OK : found == 0 ? NSTORE_NOT_FOUND : NSTORE_FAIL;
out:
	pgconn_end(s->pc);
	return r;
}

static int64_t
pg_pending(struct notifier_store *ns, int64_t now)
{
	struct pgstore *s = PG(ns);
	const struct pval v[] = { I(now) };
	PGresult *res;
	PGconn *conn;
	int64_t n = -1;

	if ((conn = pgconn_begin(s->pc)) == NULL)
		return -1;
	if ((res = query(s, conn, "count pending device alerts",
		 "SELECT count(*) FROM device_alerts WHERE delivered_ms IS NULL AND expires_ms > $1", v, 1)) != NULL) {
		n = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
		PQclear(res);
	}
	pgconn_end(s->pc);
	return n;
}

static int
pg_expire(struct notifier_store *ns, int64_t now)
{
	struct pgstore *s = PG(ns);
	const struct pval v[] = { I(now) };
	PGconn *conn;
	int64_t n;

	if ((conn = pgconn_begin(s->pc)) == NULL)
		return -1;
	n = write_rows(s, conn, "expire device alerts", "DELETE FROM device_alerts WHERE expires_ms <= $1", v, 1);
	pgconn_end(s->pc);
	return (int)n;
}

/*
 * Claims up to limit due deliveries (moving their next_ms a claim ahead,
 * SKIP LOCKED: another instance's claim in progress is passed over) and
 * hands them to fn, earliest due first; those fn did not get to are due
 * again at once.
 */
static enum nstore_result
pg_due(struct notifier_store *ns, int64_t now, int limit, nstore_due_fn fn, void *arg)
{
	struct pgstore *s = PG(ns);
	const struct pval v[] = { I(now), I(limit), I(now + ns->claim_ms) };
	PGresult *res;
	PGconn *conn;
	int n, i;

	if ((conn = pgconn_begin(s->pc)) == NULL)
		return NSTORE_FAIL;
	res = query(s, conn, "claim due deliveries",
	    "WITH due AS (SELECT delivery_id, next_ms FROM deliveries WHERE state = 'pending' AND next_ms <= $1 "
	    "  ORDER BY next_ms LIMIT $2 FOR UPDATE SKIP LOCKED) "
	    "UPDATE deliveries d SET next_ms = $3 FROM due WHERE d.delivery_id = due.delivery_id "
	    "RETURNING d.delivery_id, d.order_id, d.user_id, d.url, d.body, d.attempts, due.next_ms",
	    v, 3);
	if (res == NULL) {
		pgconn_end(s->pc);
		return NSTORE_FAIL;
	}
	n = PQntuples(res);
	/* RETURNING has no order: hand them out by their due time (n is small: the deliverer's limit) */
	int order[n > 0 ? n : 1];
	for (i = 0; i < n; i++) {
		int j = i;
		int64_t due = strtoll(PQgetvalue(res, i, 6), NULL, 10);
		while (j > 0 && strtoll(PQgetvalue(res, order[j - 1], 6), NULL, 10) > due) {
			order[j] = order[j - 1];
			j--;
		}
		order[j] = i;
	}
	for (i = 0; i < n; i++) {
		int k = order[i];
		struct nstore_delivery d = {
			.delivery_id = PQgetvalue(res, k, 0),
			.order_id = PQgetvalue(res, k, 1),
			.user_id = PQgetvalue(res, k, 2),
			.url = PQgetvalue(res, k, 3),
			.body = PQgetvalue(res, k, 4),
			.attempts = (int)strtol(PQgetvalue(res, k, 5), NULL, 10),
		};
		if (fn(arg, &d) != 0)
			break;
	}
	/* the rest go back, due as they were: this instance is not posting them */
	for (i++; i < n; i++) {
		const struct pval rv[] = { T(PQgetvalue(res, order[i], 0)), T(PQgetvalue(res, order[i], 6)), I(now + ns->claim_ms) };
		write_rows(s, conn, "release a delivery",
		    "UPDATE deliveries SET next_ms = $2::bigint WHERE delivery_id = $1 AND state = 'pending' AND next_ms = $3",
		    rv, 3);
	}
	PQclear(res);
	pgconn_end(s->pc);
	return NSTORE_OK;
}

static const char *
state_name(enum nstore_delivery_state state)
{
	return state == NSTORE_DELIVERED ? "delivered" : state == NSTORE_FAILED ? "failed" : "pending";
}

static enum nstore_result
pg_record_attempt(struct notifier_store *ns, const struct nstore_attempt *a)
{
	struct pgstore *s = PG(ns);
	int final = a->state != NSTORE_PENDING;
	const struct pval v[] = { I(a->attempts), T(state_name(a->state)), TN(a->last_error),
		I(final ? a->at_ms : a->next_ms), { .i = a->at_ms, .null = !final }, T(a->delivery_id) };
	PGconn *conn;
	int64_t changed;
	int ok;

	if ((conn = pgconn_begin(s->pc)) == NULL)
		return NSTORE_FAIL;
	if (pgconn_command(s->pc, "BEGIN") != 0) {
		pgconn_end(s->pc);
		return NSTORE_FAIL;
	}
	/* only a delivery still pending: an outcome another instance recorded first stands, announced once */
	changed = write_rows(s, conn, "update callback delivery",
	    "UPDATE deliveries SET attempts = $1, state = $2, last_error = $3, next_ms = $4, done_ms = $5 "
	    "WHERE delivery_id = $6 AND state = 'pending'",
	    v, 6);
	ok = changed == 1 && (a->announce == NULL || queue_msg(conn, a->announce) == 0);
	if (changed == 0) {
		finish(s, 0);
		pgconn_end(s->pc);
		return NSTORE_NOT_FOUND;
	}
	ok = finish(s, ok) == 0;
	pgconn_end(s->pc);
	return ok ? NSTORE_OK : NSTORE_FAIL;
}

static int
pg_flush(struct notifier_store *ns)
{
	return PG(ns)->outbox != NULL ? outbox_flush(PG(ns)->outbox) : 0;
}

static int64_t
pg_backlog(struct notifier_store *ns)
{
	return PG(ns)->outbox != NULL ? outbox_backlog(PG(ns)->outbox) : 0;
}

static int
pg_probe(struct notifier_store *ns)
{
	struct pgstore *s = PG(ns);
	const struct pval v[] = { I(now_ms()) };
	PGconn *conn;
	int64_t rc;

	if ((conn = pgconn_begin(s->pc)) == NULL)
		return -1;
	rc = write_rows(s, conn, "probe",
	    "INSERT INTO db_health(id, at_ms) VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET at_ms = EXCLUDED.at_ms", v, 1);
	pgconn_end(s->pc);
	return rc < 0 ? -1 : 0;
}

const struct nstore_ops nstore_pg_ops = {
	.name = "postgresql",
	.open = pg_open,
	.close = pg_close,
	.put_order = pg_put_order,
	.order = pg_order,
	.queue_alert = pg_queue_alert,
	.hello = pg_hello,
	.resend_all = pg_resend_all,
	.receipt = pg_receipt,
	.pending = pg_pending,
	.expire = pg_expire,
	.due = pg_due,
	.record_attempt = pg_record_attempt,
	.flush = pg_flush,
	.backlog = pg_backlog,
	.probe = pg_probe,
};

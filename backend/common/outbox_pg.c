/*
 * outbox_pg.c - the transactional outbox on PostgreSQL, for several
 * processes sharing one outbox table (outbox.h).
 *
 * Claims instead of a high-water mark: a flush takes the rows nobody
 * holds (claimed_until_ms in the past: new rows have 0) with
 * FOR UPDATE SKIP LOCKED, so two instances flushing at once take disjoint
 * batches, and marks them claimed_by this instance until now + lease.
 * The row is deleted on the broker's PUBACK.  While paho keeps completing
 * this instance's publishes, each flush renews the lease of what it still
 * holds (a backlog in paho's queue is not a dead instance); rows paho
 * gave up on are released at once.  An instance that died (SIGKILL, a lost
 * host) renews nothing: its rows' leases run out after retry_ms and any
 * instance claims and publishes them.  Times are the database's clock, so
 * instances on hosts with different clocks agree on when a lease ends.
 *
 * A row may still be published twice (a PUBACK lost with the connection,
 * a lease that ran out under a stalled paho): consumers deduplicate by
 * event id, as with the SQLite outbox.  Order across instances is not
 * kept; within one instance rows go out in id order.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "log.h"
#include "outbox_impl.h"
#include "pgconn.h"
#include "util.h"

/* The database's clock in epoch milliseconds. */
#define DB_NOW "(extract(epoch from clock_timestamp()) * 1000)::bigint"

struct outbox_pg {
	struct pgconn *pc;
	char me[128]; /* claimed_by: host, pid and a random id, unique per process start */
};

int
outbox_pg_add(PGconn *conn, const char *topic, const void *payload, size_t len, int qos, int retained,
    unsigned expiry_s)
{
	char q[8], ex[16], at[24];
	const char *vals[6] = { topic, payload != NULL ? payload : "", q, retained ? "t" : "f", ex, at };
	int lens[6] = { 0, (int)len, 0, 0, 0, 0 };
	const int fmts[6] = { 0, 1, 0, 0, 0, 0 };
	PGresult *res;
	int rc;

	if (len > INT32_MAX) {
		log_error("outbox insert failed", "topic=%s err=%s", LOGQ(topic), "payload too large");
		return -1;
	}
	snprintf(q, sizeof(q), "%d", qos);
	snprintf(ex, sizeof(ex), "%u", expiry_s);
	snprintf(at, sizeof(at), "%lld", (long long)now_ms());
	res = PQexecParams(conn,
	    "INSERT INTO outbox(topic, payload, qos, retained, expiry_s, created_ms) VALUES ($1, $2, $3, $4, $5, $6)", 6,
	    NULL, vals, lens, fmts, 0);
	rc = PQresultStatus(res) == PGRES_COMMAND_OK ? 0 : -1;
	if (rc != 0) {
		char e[256];
		snprintf(e, sizeof(e), "%s", res != NULL ? PQresultErrorMessage(res) : PQerrorMessage(conn));
		e[strcspn(e, "\n")] = '\0';
		log_error("outbox insert failed", "topic=%s err=%s", LOGQ(topic), LOGQ(e));
	}
	PQclear(res);
	return rc;
}

/* ids as a PostgreSQL array literal "{1,2,3}": a new string, or NULL when out of memory. */
static char *
id_array(const int64_t *ids, size_t n)
{
	size_t cap = n * 21 + 3, off = 0;
	char *s = malloc(cap);

	if (s == NULL)
		return NULL;
	s[off++] = '{';
	for (size_t i = 0; i < n; i++)
		off += (size_t)snprintf(s + off, cap - off, "%s%lld", i > 0 ? "," : "", (long long)ids[i]);
	snprintf(s + off, cap - off, "}");
	return s;
}

/* Takes *arr (n ids) from ob under its lock, leaving it empty. */
static int64_t *
take_ids(struct outbox *ob, int64_t **arr, size_t *n, size_t *cap, size_t *taken)
{
	int64_t *ids;

	pthread_mutex_lock(&ob->lock);
	ids = *arr;
	*taken = *n;
	*arr = NULL;
	*n = *cap = 0;
	pthread_mutex_unlock(&ob->lock);
	return ids;
}

/* Gives ids back to *arr (a statement on them failed: the next flush tries again). */
static void
give_back(struct outbox *ob, int64_t **arr, size_t *n, size_t *cap, const int64_t *ids, size_t taken)
{
	pthread_mutex_lock(&ob->lock);
	for (size_t i = 0; i < taken; i++)
		outbox_push_id(arr, n, cap, ids[i]);
	pthread_mutex_unlock(&ob->lock);
}

/*
 * Runs text with the id array as $1 and the instance id as $2 on conn.
 * 0, or -1 (logged).
 */
static int
on_ids(struct outbox_pg *p, PGconn *conn, const char *text, const int64_t *ids, size_t n, const char *what)
{
	char *arr = id_array(ids, n);
	const char *vals[2] = { arr, p->me };
	PGresult *res;
	int rc = -1;

	if (arr == NULL)
		return -1;
	res = PQexecParams(conn, text, 2, NULL, vals, NULL, NULL, 0);
	if (PQresultStatus(res) == PGRES_COMMAND_OK)
		rc = 0;
	else
		pgconn_failed(p->pc, what, res);
	PQclear(res);
	free(arr);
	return rc;
}

/* Deletes the acknowledged rows and releases those paho gave up on.  0, or -1 when the database failed. */
static int
settle(struct outbox *ob, struct outbox_pg *p, PGconn *conn)
{
	int64_t *ids;
	size_t n;
	int rc = 0;

	ids = take_ids(ob, &ob->acked, &ob->nacked, &ob->capacked, &n);
	if (n > 0 && on_ids(p, conn, "DELETE FROM outbox WHERE id = ANY($1::bigint[]) AND $2::text IS NOT NULL", ids, n,
			 "delete published outbox rows") != 0) {
		give_back(ob, &ob->acked, &ob->nacked, &ob->capacked, ids, n);
		rc = -1;
	}
	free(ids);
	if (rc != 0)
		return rc;
	ids = take_ids(ob, &ob->failed, &ob->nfailed, &ob->capfailed, &n);
	if (n > 0) {
		log_warn("outbox: re-sending messages the broker did not take", "count=%zu", n);
		if (on_ids(p, conn, "UPDATE outbox SET claimed_until_ms = 0 WHERE id = ANY($1::bigint[]) AND claimed_by = $2",
			ids, n, "release outbox rows") != 0) {
			give_back(ob, &ob->failed, &ob->nfailed, &ob->capfailed, ids, n);
			rc = -1;
		}
	}
	free(ids);
	return rc;
}

static int
by_id(const void *a, const void *b)
{
	const struct outbox_row *x = a, *y = b;

	return (x->id > y->id) - (x->id < y->id);
}

/* Claims up to max rows nobody holds into rows[], in id order.  The count, or -1 (logged). */
static int
claim(struct outbox *ob, struct outbox_pg *p, PGconn *conn, struct outbox_row *rows, int max)
{
	char lease[24], lim[16];
	const char *vals[3] = { p->me, lease, lim };
	PGresult *res;
	int n = 0, nt;

	snprintf(lease, sizeof(lease), "%lld", (long long)ob->retry_ms);
	snprintf(lim, sizeof(lim), "%d", max);
	res = PQexecParams(conn,
	    "UPDATE outbox SET claimed_by = $1, claimed_until_ms = " DB_NOW " + $2::bigint "
	    "WHERE id IN (SELECT id FROM outbox WHERE claimed_until_ms < " DB_NOW " ORDER BY id LIMIT $3::int "
	    "FOR UPDATE SKIP LOCKED) "
	    "RETURNING id, topic, payload, qos, retained::int, expiry_s",
	    3, NULL, vals, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		pgconn_failed(p->pc, "claim outbox rows", res);
		PQclear(res);
		return -1;
	}
	nt = PQntuples(res);
	for (int i = 0; i < nt && n < max; i++) {
		struct outbox_row *r = &rows[n];
		size_t len = 0;
		unsigned char *blob = PQunescapeBytea((const unsigned char *)PQgetvalue(res, i, 2), &len);

		r->id = strtoll(PQgetvalue(res, i, 0), NULL, 10);
		r->topic = strdup(PQgetvalue(res, i, 1));
		r->payload = malloc(len > 0 ? len : 1);
		if (blob == NULL || r->topic == NULL || r->payload == NULL) {
			/* not sent: its lease runs out and it is claimed again */
			free(r->topic);
			free(r->payload);
			PQfreemem(blob);
			continue;
		}
		memcpy(r->payload, blob, len);
		PQfreemem(blob);
		r->len = len;
		r->qos = (int)strtol(PQgetvalue(res, i, 3), NULL, 10);
		r->retained = (int)strtol(PQgetvalue(res, i, 4), NULL, 10);
		r->expiry_s = (unsigned)strtoul(PQgetvalue(res, i, 5), NULL, 10);
		n++;
	}
	PQclear(res);
	qsort(rows, (size_t)n, sizeof(*rows), by_id);
	return n;
}

/*
 * Renews the lease of the rows this instance still holds while paho is
 * completing its publishes (rows queued behind a backlog are not lost).
 * Rows held while nothing completed for a lease are left to run out: paho
 * may have lost them.  0, or -1 (logged).
 */
static int
renew(struct outbox *ob, struct outbox_pg *p, PGconn *conn)
{
	char lease[24];
	const char *vals[2] = { p->me, lease };
	PGresult *res;
	int live, rc = 0;

	pthread_mutex_lock(&ob->lock);
	live = ob->inflight > 0 && mono_ms() - ob->last_done < ob->retry_ms;
	pthread_mutex_unlock(&ob->lock);
	if (!live)
		return 0;
	snprintf(lease, sizeof(lease), "%lld", (long long)ob->retry_ms);
	res = PQexecParams(conn,
	    "UPDATE outbox SET claimed_until_ms = " DB_NOW " + $2::bigint "
	    "WHERE claimed_by = $1 AND claimed_until_ms >= " DB_NOW,
	    2, NULL, vals, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		pgconn_failed(p->pc, "renew outbox leases", res);
		rc = -1;
	}
	PQclear(res);
	return rc;
}

static void
count_rows(struct outbox *ob, struct outbox_pg *p, PGconn *conn)
{
	PGresult *res = PQexec(conn, "SELECT count(*) FROM outbox");

	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
		int64_t n = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
		pthread_mutex_lock(&ob->lock);
		ob->backlog = n;
		pthread_mutex_unlock(&ob->lock);
	} else
		pgconn_failed(p->pc, "count outbox rows", res);
	PQclear(res);
}

/*
 * The connection's lock is never held across mq_publish(): paho's thread
 * may be waiting for it (a handler that flushes) while paho's own lock is
 * what mq_publish() needs.
 */
static int
pg_flush(struct outbox *ob)
{
	struct outbox_pg *p = ob->impl;
	struct outbox_row *rows;
	int64_t now = mono_ms();
	PGconn *conn;
	int sent = 0, n, rc = 0, first = 1;

	if ((rows = calloc(OUTBOX_BATCH, sizeof(*rows))) == NULL)
		return -1;
	while (rc == 0) {
		int room = mq_window_free(ob->mq);

		if ((conn = pgconn_begin(p->pc)) == NULL) {
			rc = -1;
			break;
		}
		if (first && (settle(ob, p, conn) != 0 || renew(ob, p, conn) != 0))
			rc = -1;
		if (first && rc == 0 && now - ob->last_count >= 1000) {
			count_rows(ob, p, conn);
			ob->last_count = now;
		}
		first = 0;
		pthread_mutex_lock(&ob->lock);
		ob->starved = room <= 0;
		pthread_mutex_unlock(&ob->lock);
		/* room <= 0: a completion kicks the next flush once half the window is free (starved) */
		n = rc == 0 && room > 0 ? claim(ob, p, conn, rows, room < OUTBOX_BATCH ? room : OUTBOX_BATCH) : 0;
		pgconn_end(p->pc);
		if (n <= 0) {
			rc = rc != 0 ? rc : n;
			break;
		}
		sent += outbox_send_rows(ob, rows, (size_t)n);
	}
	free(rows);
	return rc == 0 ? sent : -1;
}

static void
pg_fini(struct outbox *ob)
{
	struct outbox_pg *p = ob->impl;

	pgconn_close(p->pc);
	free(p);
}

static const struct outbox_ops pg_ops = { .flush = pg_flush, .fini = pg_fini };

struct outbox *
outbox_pg_new(const char *conninfo, struct mq *mq, int64_t retry_ms)
{
	struct outbox *ob = calloc(1, sizeof(*ob));
	struct outbox_pg *p = calloc(1, sizeof(*p));
	char host[64] = "", id[ID_LEN + 1];

	if (ob == NULL || p == NULL || (p->pc = pgconn_open(conninfo, "pizza-outbox", "outbox")) == NULL) {
		free(ob);
		free(p);
		return NULL;
	}
	gethostname(host, sizeof(host) - 1);
	id_new(id);
	snprintf(p->me, sizeof(p->me), "%.63s:%ld:%s", host, (long)getpid(), id);
	ob->kind = OUTBOX_PG;
	ob->ops = &pg_ops;
	ob->impl = p;
	if (outbox_init(ob, mq, retry_ms) != 0) {
		pgconn_close(p->pc);
		free(p);
		free(ob);
		return NULL;
	}
	log_info("outbox on PostgreSQL", "instance=%s lease_ms=%lld", LOGQ(p->me), (long long)retry_ms);
	return ob;
}

#include "intake.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "log.h"
#include "metrics.h"
#include "netcheck.h"
#include "topic.h"
#include "util.h"

static void
invalid(struct intake_result *res, const char *code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void
invalid(struct intake_result *res, const char *code, const char *fmt, ...)
{
	va_list ap;

	res->status = INTAKE_INVALID;
	res->error = code;
	va_start(ap, fmt);
	vsnprintf(res->detail, sizeof(res->detail), fmt, ap);
	va_end(ap);
}

static struct metric *m_accepted[2], *m_refused[2], *m_replayed, *m_completed, *m_ready_seconds, *m_republished,
    *m_batch;
static const double batch_buckets[] = { 1, 2, 4, 8, 16, 32, 64, 128, 256 };

/* Registers the intake's metrics (once, from intake_open). */
static void
intake_metrics(void)
{
	static const char *const vias[] = { "via=\"mqtt\"", "via=\"http\"" };

	for (int i = 0; i < 2; i++) {
		m_accepted[i] = metric_counter("pizza_orders_accepted_total", "Orders accepted and recorded", vias[i]);
		m_refused[i] = metric_counter("pizza_orders_refused_total", "Order requests refused (invalid, or not recorded)",
		    vias[i]);
	}
	m_replayed = metric_counter("pizza_orders_replayed_total",
	    "Requests answered with an earlier order because their Idempotency-Key was seen", NULL);
	m_completed = metric_counter("pizza_orders_completed_total", "Orders that reached ready", NULL);
	m_ready_seconds = metric_histogram("pizza_order_ready_seconds", "Time from an order's acceptance to ready", NULL,
	    metric_seconds_buckets, metric_seconds_nbuckets);
	m_batch = metric_histogram("pizza_intake_batch_orders",
	    "Orders recorded per transaction by the committer (group commit: the orders that arrived during the one before)",
	    NULL, batch_buckets, (int)(sizeof(batch_buckets) / sizeof(batch_buckets[0])));
	m_republished = metric_counter("pizza_orders_republished_total",
	    "OrderPlaced events published again by supervision because an order stalled", NULL);
}

static int
via_index(const char *via)
{
	return strcmp(via, "http") == 0;
}

static int
url_ok(const char *url)
{
	return strncmp(url, "http://", 7) == 0 || strncmp(url, "https://", 8) == 0;
}

int
intake_key_valid(const char *key)
{
	size_t n = 0;

	for (; key[n] != '\0'; n++)
		if (key[n] < 0x20 || key[n] > 0x7e || n >= IDEMPOTENCY_KEY_MAX)
			return 0;
	return n > 0;
}

/* The request's fingerprint for idempotency: SHA-256 of its canonical JSON, in hex. */
static int
request_hash(const json_t *request, char out[65])
{
	unsigned char md[32];
	unsigned int mdlen = 0;
	char *canon = json_dumps(request, JSON_COMPACT | JSON_SORT_KEYS);

	if (canon == NULL || EVP_Digest(canon, strlen(canon), md, &mdlen, EVP_sha256(), NULL) != 1) {
		free(canon);
		return -1;
	}
	free(canon);
	for (unsigned i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
	return 0;
}

int
intake_validate(const char *user_id, const json_t *request, struct event *ev, struct intake_result *res)
{
	char err[256], order_id[ID_LEN + 1];
	const json_t *v;

	if (!json_is_object(request)) {
		invalid(res, "invalid_field", "the request must be a JSON object");
		return -1;
	}
	if (!name_valid(user_id)) {
		invalid(res, "invalid_field", "user_id must be 1-%d characters of A-Z a-z 0-9 _ -", NAME_MAX_LEN);
		return -1;
	}
	if ((v = json_object_get(request, "user_id")) != NULL &&
	    (!json_is_string(v) || strcmp(json_string_value(v), user_id) != 0)) {
		invalid(res, "invalid_field", "user_id must be the authenticated user '%s'", user_id);
		return -1;
	}
	id_new(order_id);
	if (event_init(ev, EVENT_ORDER_PLACED, order_id, user_id) != 0) {
		invalid(res, "invalid_field", "user_id is not valid");
		return -1;
	}
	if (event_items_from_json(json_object_get(request, "items"), ev->items, &ev->n_items, err, sizeof(err)) != 0) {
		invalid(res, "invalid_field", "%s", err);
		return -1;
	}
	if ((v = json_object_get(request, "callback_url")) != NULL && !json_is_null(v)) {
		if (!json_is_string(v) || json_string_length(v) > EVENT_URL_MAX ||
		    strlen(json_string_value(v)) != json_string_length(v) || !url_ok(json_string_value(v))) {
			invalid(res, "invalid_field",
			    "callback_url must be an http:// or https:// URL of at most %d characters", EVENT_URL_MAX);
			return -1;
		}
		str_copy(ev->callback_url, sizeof(ev->callback_url), json_string_value(v));
	}
	return 0;
}

/* Looks up (user, key). Returns 1 found (hash/order copied), 0 not found, -1 error. Db locked. */
static int
idem_lookup(struct intake *in, const char *user, const char *key, char hash[65], char *order_id, size_t n)
{
	sqlite3_stmt *st = db_prepare(in->db, "SELECT request_hash, order_id FROM idempotency WHERE user_id = ? AND key = ?");
	int rc = -1;

	if (st == NULL)
		return -1;
	sqlite3_bind_text(st, 1, user, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
	switch (sqlite3_step(st)) {
	case SQLITE_ROW:
		snprintf(hash, 65, "%s", (const char *)sqlite3_column_text(st, 0));
		snprintf(order_id, n, "%s", (const char *)sqlite3_column_text(st, 1));
		rc = 1;
		break;
	case SQLITE_DONE:
		rc = 0;
		break;
	}
	db_done(in->db, st);
	return rc;
}

static int
idem_insert(struct intake *in, const struct event *ev, const char *key, const char *hash)
{
	sqlite3_stmt *st = db_prepare(in->db, "INSERT INTO idempotency(user_id, key, request_hash, order_id, created_ms) "
					      "VALUES (?, ?, ?, ?, ?)");
	int rc;

	if (st == NULL)
		return -1;
	sqlite3_bind_text(st, 1, ev->user_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, hash, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, ev->order_id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 5, now_ms());
	rc = sqlite3_step(st) == SQLITE_DONE ? 0 : -1;
	db_done(in->db, st);
	return rc;
}

int
intake_expire_keys(struct intake *in, int64_t max_age_ms)
{
	sqlite3_stmt *st;
	int n = -1;

	db_lock(in->db);
	if ((st = db_prepare(in->db, "DELETE FROM idempotency WHERE created_ms < ?")) != NULL) {
		sqlite3_bind_int64(st, 1, now_ms() - max_age_ms);
		if (sqlite3_step(st) == SQLITE_DONE)
			n = db_changes(in->db);
		db_done(in->db, st);
	}
	db_unlock(in->db);
	return n;
}

/* The order's items as the orders table keeps them: [{"sku":..,"qty":..}] (malloc'd), or NULL. */
static char *
items_json(const struct event *ev)
{
	json_t *arr = json_array();
	char *items;

	if (arr == NULL)
		return NULL;
	for (size_t i = 0; i < ev->n_items; i++)
		json_array_append_new(arr, json_pack("{s:s, s:i}", "sku", ev->items[i].sku, "qty", ev->items[i].qty));
	items = json_dumps(arr, JSON_COMPACT);
	json_decref(arr);
	return items;
}

/* One order waiting for the committer: owns everything record_one() reads. */
struct intake_pending {
	struct event ev;
	char *json, *items, *key;
	const char *via; /* a string literal */
	char hash[65];
	int rc;
	struct intake_result res;
	intake_done done;
	void *arg;
	struct intake_pending *next;
};

/* Runs one cached statement without results (SAVEPOINT and friends).  Returns 0 or -1. */
static int
step_sql(struct db *db, const char *sql)
{
	sqlite3_stmt *st = db_prepare(db, sql);
	int rc = st != NULL && sqlite3_step(st) == SQLITE_DONE ? 0 : -1;

	db_done(db, st);
	return rc;
}

/*
 * Records one order, its event and its idempotency key inside the batch's
 * transaction, under a savepoint so that a failure takes back only this
 * order.  Returns 0 (recorded), 1 (key seen with the same request: the
 * earlier order id copied into res), 2 (key seen with another request), -1
 * (database error).  Db locked.
 */
static int
record_one(struct intake *in, struct intake_pending *p)
{
	const struct event *ev = &p->ev;
	sqlite3_stmt *st = NULL;
	int rc = -1;

	if (step_sql(in->db, "SAVEPOINT intake_order") != 0)
		return -1;
	if (p->key != NULL) {
		char old_hash[65], old_order[NAME_MAX_LEN + 1];
		int found = idem_lookup(in, ev->user_id, p->key, old_hash, old_order, sizeof(old_order));

		if (found < 0)
			goto rollback;
		if (found == 1) {
			rc = strcmp(old_hash, p->hash) == 0 ? 1 : 2;
			if (rc == 1)
				str_copy(p->res.order_id, sizeof(p->res.order_id), old_order);
			goto rollback;
		}
		if (idem_insert(in, ev, p->key, p->hash) != 0)
			goto rollback;
	}
	st = db_prepare(in->db, "INSERT INTO orders(order_id, user_id, items, callback_url, via, created_ms, event, "
				"progress_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
	if (st == NULL)
		goto rollback;
	sqlite3_bind_text(st, 1, ev->order_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, ev->user_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, p->items, -1, SQLITE_STATIC);
	if (ev->callback_url[0] != '\0')
		sqlite3_bind_text(st, 4, ev->callback_url, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, p->via, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 6, ev->at_ms);
	sqlite3_bind_text(st, 7, p->json, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 8, now_ms());
	if (sqlite3_step(st) != SQLITE_DONE) {
		log_error("cannot record order", "order_id=%s err=\"%s\"", ev->order_id, db_errmsg(in->db));
		goto rollback;
	}
	if (outbox_add(in->db, TOPIC_PLACED, p->json, strlen(p->json), 1, 0, 0) != 0)
		goto rollback;
	db_done(in->db, st);
	return step_sql(in->db, "RELEASE intake_order") == 0 ? 0 : -1;
rollback:
	db_done(in->db, st);
	step_sql(in->db, "ROLLBACK TO intake_order");
	step_sql(in->db, "RELEASE intake_order");
	return rc;
}

/*
 * Records a batch (newest first, as queued) in one transaction and sets
 * each one's rc.  Returns the batch relinked oldest first.
 */
static struct intake_pending *
commit_batch(struct intake *in, struct intake_pending *batch)
{
	struct intake_pending *q, *order = NULL;

	/* oldest first: a repeated idempotency key within one batch replays the earlier request */
	while (batch != NULL) {
		q = batch->next;
		batch->next = order;
		order = batch;
		batch = q;
	}
	db_lock(in->db);
	if (db_begin(in->db) != 0) {
		for (q = order; q != NULL; q = q->next)
			q->rc = -1;
		db_unlock(in->db);
		return order;
	}
	for (q = order; q != NULL; q = q->next)
		q->rc = record_one(in, q);
	if (db_commit(in->db) != 0) {
		db_rollback(in->db);
		for (q = order; q != NULL; q = q->next)
			if (q->rc == 0)
				q->rc = -1;
	}
	db_unlock(in->db);
	return order;
}

/* Counts a finished request in the intake's metrics. */
static void
count(const struct intake_result *res, const char *via)
{
	if (res->status == INTAKE_OK && res->replayed)
		metric_inc(m_replayed);
	else if (res->status == INTAKE_OK)
		metric_inc(m_accepted[via_index(via)]);
	else
		metric_inc(m_refused[via_index(via)]);
}

/* Turns a recorded order's rc into its result, logs and counts it. */
static void
settle(struct intake_pending *p)
{
	struct intake_result *res = &p->res;

	switch (p->rc) {
	case 0:
		res->status = INTAKE_OK;
		str_copy(res->order_id, sizeof(res->order_id), p->ev.order_id);
		log_info("order accepted", "order_id=%s user_id=%s via=%s items=%zu", p->ev.order_id, p->ev.user_id,
		    p->via, p->ev.n_items);
		break;
	case 1:
		res->status = INTAKE_OK;
		res->replayed = 1;
		log_info("idempotent replay", "order_id=%s user_id=%s via=%s", res->order_id, p->ev.user_id, p->via);
		break;
	case 2:
		res->status = INTAKE_CONFLICT;
		res->error = "idempotency_conflict";
		snprintf(res->detail, sizeof(res->detail), "this Idempotency-Key was already used with a different request");
		break;
	default:
		res->status = INTAKE_INTERNAL;
		res->error = "internal";
		snprintf(res->detail, sizeof(res->detail), "the order could not be recorded; please retry");
	}
	count(res, p->via);
}

static void
pending_free(struct intake_pending *p)
{
	free(p->json);
	free(p->items);
	free(p->key);
	free(p);
}

/* Records a batch taken from the queue, then answers and frees each order in it. */
static void
run_batch(struct intake *in, struct intake_pending *batch)
{
	struct intake_pending *q, *next;
	int n = 0;

	batch = commit_batch(in, batch);
	for (q = batch; q != NULL; q = next) {
		next = q->next;
		settle(q);
		q->done(q->arg, &q->res);
		pending_free(q);
		n++;
	}
	metric_observe(m_batch, (double)n);
}

/*
 * Records everything queued, with the group lock held on entry and exit (it
 * is let go meanwhile), then publishes: at once on this thread when publish
 * is set, else by waking the main loop.
 */
static void
record_queue(struct intake *in, int publish)
{
	struct intake_pending *batch = in->queue;

	in->queue = NULL;
	in->committing = 1;
	pthread_mutex_unlock(&in->group_lock);
	run_batch(in, batch);
	if (publish)
		outbox_flush(in->outbox);
	else
		/* the main loop publishes now rather than at its next tick: the commit made it safe */
		outbox_kick(in->outbox);
	pthread_mutex_lock(&in->group_lock);
	in->committing = 0;
}

/*
 * The committer: takes every order queued since its last commit and records
 * them in one transaction (group commit), then answers each and wakes the
 * outbox once.  One transaction per request cost a file lock, a WAL write
 * and a commit each, with the request threads taking turns at the db lock:
 * 2,000-4,000 requests/s whatever the number of threads.  While a waiting
 * caller of intake_place() records the queue itself, the committer waits.
 */
static void *
committer(void *arg)
{
	struct intake *in = arg;

	pthread_mutex_lock(&in->group_lock);
	for (;;) {
		while ((in->queue == NULL || in->committing) && !in->stopping)
			pthread_cond_wait(&in->group_work, &in->group_lock);
		if (in->queue == NULL)
			break;
		record_queue(in, 0);
	}
	pthread_mutex_unlock(&in->group_lock);
	return NULL;
}

int
intake_start(struct intake *in)
{
	pthread_mutex_lock(&in->group_lock);
	in->stopping = 0;
	in->started = pthread_create(&in->group_thread, NULL, committer, in) == 0;
	pthread_mutex_unlock(&in->group_lock);
	return in->started ? 0 : -1;
}

void
intake_stop(struct intake *in)
{
	pthread_mutex_lock(&in->group_lock);
	if (!in->started || in->stopping) {
		pthread_mutex_unlock(&in->group_lock);
		return;
	}
	in->stopping = 1;
	pthread_cond_signal(&in->group_work);
	pthread_mutex_unlock(&in->group_lock);
	pthread_join(in->group_thread, NULL);
	pthread_mutex_lock(&in->group_lock);
	in->started = 0;
	pthread_mutex_unlock(&in->group_lock);
}

/*
 * Validates the request and builds what the committer records.  Returns
 * NULL with res filled when the request is refused (or cannot be prepared).
 */
static struct intake_pending *
prepare(struct intake *in, const char *user_id, const json_t *request, const char *via, const char *idem_key,
    struct intake_result *res)
{
	struct intake_pending *p;

	memset(res, 0, sizeof(*res));
	if (idem_key != NULL && !intake_key_valid(idem_key)) {
		invalid(res, "invalid_field", "the idempotency key must be 1-%d printable ASCII characters",
		    IDEMPOTENCY_KEY_MAX);
		return NULL;
	}
	if ((p = calloc(1, sizeof(*p))) == NULL)
		goto internal;
	if (intake_validate(user_id, request, &p->ev, res) != 0) {
		log_info("order refused", "user_id=%s via=%s", name_valid(user_id) ? user_id : "-", via);
		free(p);
		return NULL;
	}
	if (p->ev.callback_url[0] != '\0') {
		char why[200];
		if (netcheck_url(in->callback_allow, p->ev.callback_url, why, sizeof(why)) != 0) {
			invalid(res, "invalid_field", "%s; set PIZZA_CALLBACK_ALLOW to allow it", why);
			log_info("order refused: callback address", "user_id=%s via=%s", user_id, via);
			free(p);
			return NULL;
		}
	}
	p->via = via;
	if ((idem_key != NULL && ((p->key = strdup(idem_key)) == NULL || request_hash(request, p->hash) != 0)) ||
	    (p->json = event_encode(&p->ev)) == NULL || (p->items = items_json(&p->ev)) == NULL) {
		pending_free(p);
		goto internal;
	}
	return p;
internal:
	res->status = INTAKE_INTERNAL;
	res->error = "internal";
	snprintf(res->detail, sizeof(res->detail), "the order could not be recorded; please retry");
	return NULL;
}

/*
 * Queues p (and wakes the committer when wake is set).  Returns 0 with the
 * group lock held, or -1 when shutting down: then p has been answered
 * (INTAKE_INTERNAL, nothing recorded) and freed, and the lock is not held.
 */
static int
enqueue(struct intake *in, struct intake_pending *p, int wake)
{
	pthread_mutex_lock(&in->group_lock);
	if (!in->started || in->stopping) {
		/* shutting down: nothing recorded, and the client may retry */
		pthread_mutex_unlock(&in->group_lock);
		p->rc = -1;
		settle(p);
		p->done(p->arg, &p->res);
		pending_free(p);
		return -1;
	}
	p->next = in->queue;
	in->queue = p;
	if (wake)
		pthread_cond_signal(&in->group_work);
	return 0;
}

void
intake_place_async(struct intake *in, const char *user_id, const json_t *request, const char *via,
    const char *idem_key, intake_done done, void *arg)
{
	struct intake_result res;
	struct intake_pending *p = prepare(in, user_id, request, via, idem_key, &res);

	if (p == NULL) {
		count(&res, via);
		done(arg, &res);
		return;
	}
	p->done = done;
	p->arg = arg;
	if (enqueue(in, p, 1) == 0)
		pthread_mutex_unlock(&in->group_lock);
}

/* intake_place() waits for its own order: the answer is copied here and the flag set. */
struct waiter {
	struct intake *in;
	struct intake_result *res;
	int done;
};

static void
wake_waiter(void *arg, const struct intake_result *res)
{
	struct waiter *w = arg;

	pthread_mutex_lock(&w->in->group_lock);
	*w->res = *res;
	w->done = 1;
	pthread_cond_broadcast(&w->in->group_done);
	pthread_mutex_unlock(&w->in->group_lock);
}

/*
 * An MQTT request waits for its order anyway (the broker has its PUBACK
 * only when the handler returns), so when no commit is under way its
 * thread records the queue itself and publishes at once, as before the
 * committer: handing over to the committer and the main loop cost two
 * thread wake-ups per order on paho's receive thread, which every other
 * message to this service waits behind.
 */
void
intake_place(struct intake *in, const char *user_id, const json_t *request, const char *via, const char *idem_key,
    struct intake_result *res)
{
	struct waiter w = { in, res, 0 };
	struct intake_pending *p = prepare(in, user_id, request, via, idem_key, res);

	if (p == NULL) {
		count(res, via);
		return;
	}
	p->done = wake_waiter;
	p->arg = &w;
	if (enqueue(in, p, 0) != 0)
		return;
	/* when a batch is being recorded, the committer takes the queue (with p) after it */
	if (!in->committing) {
		record_queue(in, 1);
		if (in->queue != NULL)
			pthread_cond_signal(&in->group_work);
	}
	while (!w.done)
		pthread_cond_wait(&in->group_done, &in->group_lock);
	pthread_mutex_unlock(&in->group_lock);
}

void
intake_place_raw(struct intake *in, const char *user_id, const void *buf, size_t len, const char *via,
    const char *idem_key, struct intake_result *res)
{
	json_error_t jerr;
	json_t *req;

	memset(res, 0, sizeof(*res));
	if (len > EVENT_MAX_BYTES) {
		invalid(res, "too_large", "the request is %zu bytes; the limit is %d", len, EVENT_MAX_BYTES);
		metric_inc(m_refused[via_index(via)]);
		return;
	}
	if ((req = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr)) == NULL) {
		invalid(res, "invalid_json", "malformed JSON: %s (line %d, column %d)", jerr.text, jerr.line,
		    jerr.column);
		metric_inc(m_refused[via_index(via)]);
		return;
	}
	intake_place(in, user_id, req, via, idem_key, res);
	json_decref(req);
}

struct db *
intake_open(const char *path)
{
	struct db *db = db_open(path, INTAKE_SCHEMA);

	if (db == NULL)
		return NULL;
	intake_metrics();
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

int
intake_progress(struct intake *in, const struct event *status)
{
	sqlite3_stmt *st;
	int rc = -1;

	db_lock(in->db);
	st = db_prepare(in->db, "UPDATE orders SET stage = ?, progress_ms = ? WHERE order_id = ? AND stage < ?");
	if (st == NULL)
		goto out;
	sqlite3_bind_int(st, 1, status->seq);
	sqlite3_bind_int64(st, 2, now_ms());
	sqlite3_bind_text(st, 3, status->order_id, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 4, status->seq);
	if (sqlite3_step(st) != SQLITE_DONE)
		goto out;
	db_done(in->db, st);
	if (db_changes(in->db) == 1) {
		rc = 1;
		st = NULL;
		if (status->seq == STATUS_READY) {
			sqlite3_stmt *q = db_prepare(in->db, "SELECT created_ms FROM orders WHERE order_id = ?");
			metric_inc(m_completed);
			if (q != NULL) {
				sqlite3_bind_text(q, 1, status->order_id, -1, SQLITE_STATIC);
				if (sqlite3_step(q) == SQLITE_ROW)
					metric_observe(m_ready_seconds, (double)(now_ms() - sqlite3_column_int64(q, 0)) / 1000.0);
				db_done(in->db, q);
			}
		}
		goto out;
	}
	st = db_prepare(in->db, "SELECT 1 FROM orders WHERE order_id = ?");
	if (st == NULL)
		goto out;
	sqlite3_bind_text(st, 1, status->order_id, -1, SQLITE_STATIC);
	rc = sqlite3_step(st) == SQLITE_ROW ? 0 : 2;
out:
	db_done(in->db, st);
	db_unlock(in->db);
	return rc;
}

int
intake_supervise(struct intake *in, int64_t accept_ms, int64_t stage_ms)
{
	sqlite3_stmt *sel = NULL, *upd = NULL;
	int64_t now = now_ms();
	int n = 0;

	db_lock(in->db);
	if (db_begin(in->db) != 0)
		goto fail;
	sel = db_prepare(in->db, "SELECT order_id, event, stage, republished FROM orders WHERE event != '' AND "
				 "((stage = 0 AND progress_ms < ?) OR (stage > 0 AND stage < ? AND progress_ms < ?)) LIMIT 500");
	upd = db_prepare(in->db, "UPDATE orders SET progress_ms = ?, republished = republished + 1 WHERE order_id = ?");
	if (sel == NULL || upd == NULL)
		goto rollback;
	sqlite3_bind_int64(sel, 1, now - accept_ms);
	sqlite3_bind_int(sel, 2, STATUS_READY);
	sqlite3_bind_int64(sel, 3, now - stage_ms);
	while (sqlite3_step(sel) == SQLITE_ROW) {
		const char *id = (const char *)sqlite3_column_text(sel, 0);
		const char *event = (const char *)sqlite3_column_text(sel, 1);

		if (outbox_add(in->db, TOPIC_PLACED, event, strlen(event), 1, 0, 0) != 0)
			goto rollback;
		sqlite3_bind_int64(upd, 1, now);
		sqlite3_bind_text(upd, 2, id, -1, SQLITE_TRANSIENT);
		if (sqlite3_step(upd) != SQLITE_DONE)
			goto rollback;
		sqlite3_reset(upd);
		metric_inc(m_republished);
		log_warn("order stalled; publishing it again", "order_id=%s stage=%s republished=%d", id,
		    sqlite3_column_int(sel, 2) > 0 ? event_status_name((enum order_status)sqlite3_column_int(sel, 2)) : "placed",
		    sqlite3_column_int(sel, 3) + 1);
		n++;
	}
	db_done(in->db, sel);
	db_done(in->db, upd);
	sel = upd = NULL;
	if (db_commit(in->db) != 0)
		goto rollback;
	db_unlock(in->db);
	if (n > 0)
		outbox_flush(in->outbox);
	return n;
rollback:
	db_rollback(in->db);
fail:
	db_done(in->db, sel);
	db_done(in->db, upd);
	db_unlock(in->db);
	return -1;
}

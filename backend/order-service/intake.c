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

static struct metric *m_accepted[2], *m_refused[2], *m_replayed, *m_completed, *m_ready_seconds, *m_republished;

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
	if (items_from_json(json_object_get(request, "items"), ev->items, &ev->n_items, err, sizeof(err)) != 0) {
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
	db_done(st);
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
	db_done(st);
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
			n = sqlite3_changes(in->db->h);
		db_done(st);
	}
	db_unlock(in->db);
	return n;
}

/*
 * Records the order, its event and its idempotency key in one transaction.
 * Returns 0 (recorded), 1 (key seen with the same request: res filled as a
 * replay), 2 (key seen with another request), -1 (database error).
 */
static int
record(struct intake *in, const struct event *ev, const char *json, const char *via, const char *key,
    const char *hash, struct intake_result *res)
{
	char *items;
	json_t *arr = json_array();
	sqlite3_stmt *st = NULL;
	int rc = -1;

	if (arr == NULL)
		return -1;
	for (size_t i = 0; i < ev->n_items; i++)
		json_array_append_new(arr, json_pack("{s:s, s:i}", "sku", ev->items[i].sku, "qty", ev->items[i].qty));
	items = json_dumps(arr, JSON_COMPACT);
	json_decref(arr);
	if (items == NULL)
		return -1;
	db_lock(in->db);
	if (db_begin(in->db) != 0)
		goto out;
	if (key != NULL) {
		char old_hash[65], old_order[NAME_MAX_LEN + 1];
		int found = idem_lookup(in, ev->user_id, key, old_hash, old_order, sizeof(old_order));

		if (found < 0)
			goto rollback;
		if (found == 1) {
			rc = strcmp(old_hash, hash) == 0 ? 1 : 2;
			if (rc == 1)
				str_copy(res->order_id, sizeof(res->order_id), old_order);
			db_rollback(in->db);
			goto out;
		}
		if (idem_insert(in, ev, key, hash) != 0)
			goto rollback;
	}
	st = db_prepare(in->db, "INSERT INTO orders(order_id, user_id, items, callback_url, via, created_ms, event, "
				"progress_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
	if (st == NULL)
		goto rollback;
	sqlite3_bind_text(st, 1, ev->order_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, ev->user_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, items, -1, SQLITE_STATIC);
	if (ev->callback_url[0] != '\0')
		sqlite3_bind_text(st, 4, ev->callback_url, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, via, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 6, ev->at_ms);
	sqlite3_bind_text(st, 7, json, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 8, now_ms());
	if (sqlite3_step(st) != SQLITE_DONE) {
		log_error("cannot record order", "order_id=%s err=\"%s\"", ev->order_id, sqlite3_errmsg(in->db->h));
		goto rollback;
	}
	if (outbox_add(in->db, TOPIC_PLACED, json, strlen(json), 1, 0, 0) != 0)
		goto rollback;
	if (db_commit(in->db) != 0)
		goto rollback;
	rc = 0;
	goto out;
rollback:
	db_rollback(in->db);
out:
	db_done(st);
	db_unlock(in->db);
	free(items);
	return rc;
}

static void intake_place_counted(struct intake *in, const char *user_id, const json_t *request, const char *via,
    const char *idem_key, struct intake_result *res);

void
intake_place(struct intake *in, const char *user_id, const json_t *request, const char *via, const char *idem_key,
    struct intake_result *res)
{
	intake_place_counted(in, user_id, request, via, idem_key, res);
	if (res->status == INTAKE_OK && res->replayed)
		metric_inc(m_replayed);
	else if (res->status == INTAKE_OK)
		metric_inc(m_accepted[via_index(via)]);
	else
		metric_inc(m_refused[via_index(via)]);
}

static void
intake_place_counted(struct intake *in, const char *user_id, const json_t *request, const char *via,
    const char *idem_key, struct intake_result *res)
{
	struct event ev;
	char *json, hash[65] = "";
	int rc;

	memset(res, 0, sizeof(*res));
	if (idem_key != NULL && !intake_key_valid(idem_key)) {
		invalid(res, "invalid_field", "the idempotency key must be 1-%d printable ASCII characters",
		    IDEMPOTENCY_KEY_MAX);
		return;
	}
	if (intake_validate(user_id, request, &ev, res) != 0) {
		log_info("order refused", "user_id=%s via=%s", name_valid(user_id) ? user_id : "-", via);
		return;
	}
	if (ev.callback_url[0] != '\0') {
		char why[200];
		if (netcheck_url(in->callback_allow, ev.callback_url, why, sizeof(why)) != 0) {
			invalid(res, "invalid_field", "%s; set PIZZA_CALLBACK_ALLOW to allow it", why);
			log_info("order refused: callback address", "user_id=%s via=%s", user_id, via);
			return;
		}
	}
	if (idem_key != NULL && request_hash(request, hash) != 0)
		rc = -1;
	else if ((json = event_encode(&ev)) == NULL)
		rc = -1;
	else {
		rc = record(in, &ev, json, via, idem_key, hash, res);
		free(json);
	}
	if (rc == 1) {
		res->status = INTAKE_OK;
		res->replayed = 1;
		log_info("idempotent replay", "order_id=%s user_id=%s via=%s", res->order_id, user_id, via);
		return;
	}
	if (rc == 2) {
		res->status = INTAKE_CONFLICT;
		res->error = "idempotency_conflict";
		snprintf(res->detail, sizeof(res->detail),
		    "this Idempotency-Key was already used with a different request");
		return;
	}
	if (rc != 0) {
		res->status = INTAKE_INTERNAL;
		res->error = "internal";
		snprintf(res->detail, sizeof(res->detail), "the order could not be recorded; please retry");
		return;
	}
	res->status = INTAKE_OK;
	str_copy(res->order_id, sizeof(res->order_id), ev.order_id);
	log_info("order accepted", "order_id=%s user_id=%s via=%s items=%zu", ev.order_id, ev.user_id, via,
	    ev.n_items);
	/* publish now rather than at the next tick: the commit above already made it safe */
	outbox_flush(in->outbox);
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
	db_done(st);
	if (sqlite3_changes(in->db->h) == 1) {
		rc = 1;
		st = NULL;
		if (status->seq == STATUS_READY) {
			sqlite3_stmt *q = db_prepare(in->db, "SELECT created_ms FROM orders WHERE order_id = ?");
			metric_inc(m_completed);
			if (q != NULL) {
				sqlite3_bind_text(q, 1, status->order_id, -1, SQLITE_STATIC);
				if (sqlite3_step(q) == SQLITE_ROW)
					metric_observe(m_ready_seconds, (double)(now_ms() - sqlite3_column_int64(q, 0)) / 1000.0);
				db_done(q);
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
	db_done(st);
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
		    sqlite3_column_int(sel, 2) > 0 ? status_name((enum order_status)sqlite3_column_int(sel, 2)) : "placed",
		    sqlite3_column_int(sel, 3) + 1);
		n++;
	}
	db_done(sel);
	db_done(upd);
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
	db_done(sel);
	db_done(upd);
	db_unlock(in->db);
	return -1;
}

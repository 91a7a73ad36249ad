#include "store.h"

#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "log.h"
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

struct history_store {
	struct db *db;
};

struct history_store *
hstore_open(const char *path)
{
	struct history_store *h;

	if ((h = calloc(1, sizeof(*h))) == NULL)
		return NULL;
	if ((h->db = db_open(path, HISTORY_SCHEMA)) == NULL) {
		free(h);
		return NULL;
	}
	return h;
}

void
hstore_close(struct history_store *h)
{
	if (h == NULL)
		return;
	db_close(h->db);
	free(h);
}

static json_t *
items_json(const struct event *ev)
{
	json_t *arr = json_array();

	for (size_t i = 0; arr != NULL && i < ev->n_items; i++)
		json_array_append_new(arr, json_pack("{s:s, s:i}", "sku", ev->items[i].sku, "qty", ev->items[i].qty));
	return arr;
}

enum hstore_result
hstore_apply(struct history_store *h, const struct event *ev)
{
	sqlite3_stmt *st = NULL;
	char *items = NULL;
	enum hstore_result rc = HSTORE_FAIL;

	db_lock(h->db);
	if (ev->type == EVENT_ORDER_PLACED) {
		json_t *arr = items_json(ev);
		items = arr != NULL ? json_dumps(arr, JSON_COMPACT) : NULL;
		json_decref(arr);
		st = db_prepare(h->db, "INSERT OR IGNORE INTO orders(order_id, user_id, items, callback_url, placed_ms, "
				       "event_id) VALUES (?, ?, ?, ?, ?, ?)");
		if (st == NULL || items == NULL)
			goto out;
		sqlite3_bind_text(st, 1, ev->order_id, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, ev->user_id, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 3, items, -1, SQLITE_STATIC);
		if (ev->callback_url[0] != '\0')
			sqlite3_bind_text(st, 4, ev->callback_url, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 5, ev->at_ms);
		sqlite3_bind_text(st, 6, ev->event_id, -1, SQLITE_STATIC);
	} else if (ev->type == EVENT_ORDER_STATUS) {
		st = db_prepare(h->db, "INSERT OR IGNORE INTO statuses(order_id, seq, user_id, status, at_ms, worker, "
				       "event_id) VALUES (?, ?, ?, ?, ?, ?, ?)");
		if (st == NULL)
			goto out;
		sqlite3_bind_text(st, 1, ev->order_id, -1, SQLITE_STATIC);
		sqlite3_bind_int(st, 2, ev->seq);
		sqlite3_bind_text(st, 3, ev->user_id, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 4, event_status_name(ev->status), -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 5, ev->at_ms);
		sqlite3_bind_text(st, 6, ev->worker, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 7, ev->event_id, -1, SQLITE_STATIC);
	} else if (ev->type == EVENT_CALLBACK_DELIVERY) {
		st = db_prepare(h->db, "INSERT OR IGNORE INTO callbacks(order_id, user_id, delivery_id, outcome, attempts, "
				       "detail, at_ms, event_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
		if (st == NULL)
			goto out;
		sqlite3_bind_text(st, 1, ev->order_id, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, ev->user_id, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 3, ev->delivery_id, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 4, event_outcome_name(ev->outcome), -1, SQLITE_STATIC);
		sqlite3_bind_int(st, 5, ev->attempts);
		sqlite3_bind_text(st, 6, ev->message, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 7, ev->at_ms);
		sqlite3_bind_text(st, 8, ev->event_id, -1, SQLITE_STATIC);
	} else
		goto out;
	switch (db_step_done(h->db, st, "store event")) {
	case 1:
		rc = HSTORE_OK;
		break;
	case 0:
		rc = HSTORE_DUP;
		break;
	default:
		log_error("cannot store event", "order_id=%s type=%s", ev->order_id, event_type_name(ev->type));
	}
	st = NULL;
out:
	db_done(h->db, st);
	db_unlock(h->db);
	free(items);
	return rc;
}

enum hstore_result
hstore_receipt(struct history_store *h, const char *user_id, const char *device, const char *event_id,
    const char *order_id, int64_t at_ms)
{
	enum hstore_result rc = HSTORE_FAIL;
	sqlite3_stmt *st;

	db_lock(h->db);
	st = db_prepare(h->db, "INSERT OR IGNORE INTO receipts(order_id, device_id, user_id, event_id, at_ms) "
			       "VALUES (?, ?, ?, ?, ?)");
	if (st != NULL) {
		sqlite3_bind_text(st, 1, order_id, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, device, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 3, user_id, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 4, event_id, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 5, at_ms);
		switch (db_step_done(h->db, st, "store receipt")) {
		case 1:
			rc = HSTORE_OK;
			break;
		case 0:
			rc = HSTORE_DUP;
			break;
		default:
			break;
		}
	}
	db_unlock(h->db);
	return rc;
}

static json_t *
time_json(int64_t ms)
{
	char at[32];

	return json_string(time_rfc3339(ms, at, sizeof(at)));
}

/* 0 when a step loop ended normally (SQLITE_DONE), -1 on an error. */
static int
step_end(int rc)
{
	return rc == SQLITE_DONE ? 0 : -1;
}

/* The order's row and statuses into o (user_id, items, placed_at, timeline so far).  Db locked. */
static enum hstore_result
order_rows(struct history_store *h, const char *order_id, json_t *o, json_t *timeline)
{
	sqlite3_stmt *st;
	json_t *last = NULL;
	int rc;

	if ((st = db_prepare(h->db, "SELECT user_id, items, placed_ms FROM orders WHERE order_id = ?")) == NULL)
		return HSTORE_FAIL;
	sqlite3_bind_text(st, 1, order_id, -1, SQLITE_STATIC);
	if ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		json_object_set_new(o, "user_id", json_string((const char *)sqlite3_column_text(st, 0)));
		json_object_set_new(o, "items", json_loads((const char *)sqlite3_column_text(st, 1), 0, NULL));
		json_object_set_new(o, "placed_at", time_json(sqlite3_column_int64(st, 2)));
	} else {
		json_object_set_new(o, "items", json_null());
		json_object_set_new(o, "placed_at", json_null());
	}
	db_done(h->db, st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return HSTORE_FAIL;

	st = db_prepare(h->db, "SELECT status, seq, at_ms, worker, user_id FROM statuses WHERE order_id = ? ORDER BY seq");
	if (st == NULL)
		return HSTORE_FAIL;
	sqlite3_bind_text(st, 1, order_id, -1, SQLITE_STATIC);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		last = json_pack("{s:s, s:i, s:o, s:s}", "status", (const char *)sqlite3_column_text(st, 0), "seq",
		    sqlite3_column_int(st, 1), "at", time_json(sqlite3_column_int64(st, 2)), "worker",
		    (const char *)sqlite3_column_text(st, 3));
		json_array_append_new(timeline, last);
		if (json_object_get(o, "user_id") == NULL)
			json_object_set_new(o, "user_id", json_string((const char *)sqlite3_column_text(st, 4)));
	}
	db_done(h->db, st);
	if (step_end(rc) != 0)
		return HSTORE_FAIL;
	if (json_object_get(o, "user_id") == NULL)
		return HSTORE_NOT_FOUND; /* neither placed nor any status */
	json_object_set_new(o, "status", last != NULL ? json_incref(json_object_get(last, "status")) : json_string("placed"));
	return HSTORE_OK;
}

/* The callback's outcome, when the order came with a callback_url, into o and timeline.  Db locked. */
static enum hstore_result
order_callback(struct history_store *h, const char *order_id, json_t *o, json_t *timeline)
{
	sqlite3_stmt *st;
	int rc;

	st = db_prepare(h->db, "SELECT outcome, attempts, detail, at_ms, delivery_id FROM callbacks WHERE order_id = ?");
	if (st == NULL)
		return HSTORE_FAIL;
	sqlite3_bind_text(st, 1, order_id, -1, SQLITE_STATIC);
	if ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *outcome = (const char *)sqlite3_column_text(st, 0);
		char what[32];

		snprintf(what, sizeof(what), "callback_%s", outcome);
		json_array_append_new(timeline,
		    json_pack("{s:s, s:o, s:i, s:s, s:s}", "status", what, "at", time_json(sqlite3_column_int64(st, 3)),
			"attempts", sqlite3_column_int(st, 1), "detail", (const char *)sqlite3_column_text(st, 2),
			"delivery_id", (const char *)sqlite3_column_text(st, 4)));
		json_object_set_new(o, "callback",
		    json_pack("{s:s, s:i, s:s}", "outcome", outcome, "attempts", sqlite3_column_int(st, 1), "detail",
			(const char *)sqlite3_column_text(st, 2)));
	}
	db_done(h->db, st);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? HSTORE_OK : HSTORE_FAIL;
}

/* The receipts of the order's own user's devices into o's "deliveries" and timeline.  Db locked. */
static enum hstore_result
order_receipts(struct history_store *h, const char *order_id, json_t *o, json_t *timeline)
{
	const char *user = json_string_value(json_object_get(o, "user_id"));
	json_t *deliveries = json_array();
	sqlite3_stmt *st;
	int rc;

	if (deliveries == NULL || user == NULL ||
	    (st = db_prepare(h->db, "SELECT device_id, at_ms FROM receipts WHERE order_id = ? AND user_id = ? "
				    "ORDER BY at_ms, device_id")) == NULL) {
		json_decref(deliveries);
		return HSTORE_FAIL;
	}
	sqlite3_bind_text(st, 1, order_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, user, -1, SQLITE_STATIC);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *device = (const char *)sqlite3_column_text(st, 0);
		int64_t at = sqlite3_column_int64(st, 1);
		char detail[2 * NAME_MAX_LEN + 32];

		snprintf(detail, sizeof(detail), "delivered to %s/%s", user, device);
		json_array_append_new(deliveries, json_pack("{s:s, s:o}", "device", device, "delivered_at", time_json(at)));
		json_array_append_new(timeline, json_pack("{s:s, s:o, s:s, s:s}", "status", "delivered", "at", time_json(at),
						    "device", device, "detail", detail));
	}
	db_done(h->db, st);
	json_object_set_new(o, "deliveries", deliveries);
	return step_end(rc) == 0 ? HSTORE_OK : HSTORE_FAIL;
}

/* Builds the order object into *out.  Db locked by the caller. */
static enum hstore_result
order_locked(struct history_store *h, const char *order_id, json_t **out)
{
	json_t *o = json_object(), *timeline = json_array();
	enum hstore_result rc = HSTORE_FAIL;

	*out = NULL;
	if (o == NULL || timeline == NULL)
		goto fail;
	json_object_set_new(o, "order_id", json_string(order_id));
	if ((rc = order_rows(h, order_id, o, timeline)) != HSTORE_OK ||
	    (rc = order_callback(h, order_id, o, timeline)) != HSTORE_OK ||
	    (rc = order_receipts(h, order_id, o, timeline)) != HSTORE_OK)
		goto fail;
	json_object_set_new(o, "timeline", timeline);
	*out = o;
	return HSTORE_OK;
fail:
	json_decref(timeline);
	json_decref(o);
	return rc;
}

enum hstore_result
hstore_order(struct history_store *h, const char *order_id, json_t **out)
{
	enum hstore_result rc;

	db_lock(h->db);
	rc = order_locked(h, order_id, out);
	db_unlock(h->db);
	if (rc == HSTORE_FAIL)
		log_error("cannot read an order", "order_id=%s err=%s", order_id, LOGQ(db_errmsg(h->db)));
	return rc;
}

/* Up to limit order ids of user_id (older than before when not NULL), newest first, into ids.  Db locked. */
static int
user_order_ids(struct history_store *h, const char *user_id, int limit, const char *before, char **ids)
{
	sqlite3_stmt *st;
	int n = 0, rc = SQLITE_DONE;

	/* order ids are time-sortable, so id order is placement order */
	st = db_prepare(h->db, before != NULL
		? "SELECT order_id FROM orders WHERE user_id = ? AND order_id < ? ORDER BY order_id DESC LIMIT ?"
		: "SELECT order_id FROM orders WHERE user_id = ? ORDER BY order_id DESC LIMIT ?");
	if (st == NULL)
		return -1;
	sqlite3_bind_text(st, 1, user_id, -1, SQLITE_STATIC);
	if (before != NULL) {
		sqlite3_bind_text(st, 2, before, -1, SQLITE_STATIC);
		sqlite3_bind_int(st, 3, limit);
	} else
		sqlite3_bind_int(st, 2, limit);
	while (n < limit && (rc = sqlite3_step(st)) == SQLITE_ROW)
		if ((ids[n] = strdup((const char *)sqlite3_column_text(st, 0))) != NULL)
			n++;
	if (n < limit && rc != SQLITE_DONE)
		n = -1;
	db_done(h->db, st);
	return n;
}

enum hstore_result
hstore_user_orders(struct history_store *h, const char *user_id, int limit, const char *before_order_id, json_t **out)
{
	enum hstore_result rc = HSTORE_FAIL;
	json_t *arr = json_array();
	char **ids = calloc(limit > 0 ? (size_t)limit : 1, sizeof(*ids));
	int n = 0;

	*out = NULL;
	if (arr == NULL || ids == NULL)
		goto out;
	db_lock(h->db);
	if (limit > 0 && (n = user_order_ids(h, user_id, limit, before_order_id, ids)) < 0) {
		db_unlock(h->db);
		n = 0;
		goto out;
	}
	rc = HSTORE_OK;
	for (int i = 0; i < n && rc == HSTORE_OK; i++) {
		json_t *o;
		/* an order listed a moment ago is there: NOT_FOUND cannot happen, FAIL can */
		if ((rc = order_locked(h, ids[i], &o)) == HSTORE_OK)
			json_array_append_new(arr, o);
	}
	db_unlock(h->db);
out:
	for (int i = 0; i < n; i++)
		free(ids[i]);
	free(ids);
	if (rc != HSTORE_OK) {
		json_decref(arr);
		log_error("cannot read a user's orders", "user_id=%s", user_id);
		return HSTORE_FAIL;
	}
	*out = arr;
	return HSTORE_OK;
}

static int64_t
count(struct history_store *h, const char *sql)
{
	sqlite3_stmt *st;
	int64_t n = -1;

	db_lock(h->db);
	if ((st = db_prepare(h->db, sql)) != NULL && sqlite3_step(st) == SQLITE_ROW)
		n = sqlite3_column_int64(st, 0);
	db_done(h->db, st);
	db_unlock(h->db);
	return n;
}

int64_t
hstore_count(struct history_store *h, enum hstore_table t)
{
	return count(h, t == HSTORE_ORDERS ? "SELECT count(*) FROM orders" : "SELECT count(*) FROM statuses");
}

int
hstore_probe(void *arg)
{
	return db_probe_write(((struct history_store *)arg)->db);
}

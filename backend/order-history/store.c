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
	"  detail TEXT NOT NULL, at_ms INTEGER NOT NULL, event_id TEXT NOT NULL);"

struct history {
	struct db *db;
};

struct history *
history_open(const char *path)
{
	struct history *h;

	if ((h = calloc(1, sizeof(*h))) == NULL)
		return NULL;
	if ((h->db = db_open(path, HISTORY_SCHEMA)) == NULL) {
		free(h);
		return NULL;
	}
	return h;
}

void
history_close(struct history *h)
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

enum history_apply
history_apply(struct history *h, const struct event *ev)
{
	sqlite3_stmt *st = NULL;
	char *items = NULL;
	int rc = HISTORY_ERROR;

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
	if (sqlite3_step(st) != SQLITE_DONE) {
		log_error("cannot store event", "order_id=%s err=\"%s\"", ev->order_id, db_errmsg(h->db));
		goto out;
	}
	rc = db_changes(h->db) == 1 ? HISTORY_APPLIED : HISTORY_DUPLICATE;
out:
	db_done(h->db, st);
	db_unlock(h->db);
	free(items);
	return rc;
}

static json_t *
time_json(int64_t ms)
{
	char at[32];

	return json_string(time_rfc3339(ms, at, sizeof(at)));
}

/* Builds the order object; db locked by the caller. */
static json_t *
order_locked(struct history *h, const char *order_id)
{
	sqlite3_stmt *st;
	json_t *o = NULL, *timeline = NULL, *last = NULL;
	const char *user = NULL;

	if ((st = db_prepare(h->db, "SELECT user_id, items, placed_ms FROM orders WHERE order_id = ?")) == NULL)
		return NULL;
	sqlite3_bind_text(st, 1, order_id, -1, SQLITE_STATIC);
	o = json_object();
	json_object_set_new(o, "order_id", json_string(order_id));
	if (sqlite3_step(st) == SQLITE_ROW) {
		user = (const char *)sqlite3_column_text(st, 0);
		json_object_set_new(o, "user_id", json_string(user));
		json_object_set_new(o, "items", json_loads((const char *)sqlite3_column_text(st, 1), 0, NULL));
		json_object_set_new(o, "placed_at", time_json(sqlite3_column_int64(st, 2)));
	} else {
		json_object_set_new(o, "items", json_null());
		json_object_set_new(o, "placed_at", json_null());
	}
	db_done(h->db, st);

	timeline = json_array();
	st = db_prepare(h->db, "SELECT status, seq, at_ms, worker, user_id FROM statuses WHERE order_id = ? ORDER BY seq");
	if (st == NULL)
		goto fail;
	sqlite3_bind_text(st, 1, order_id, -1, SQLITE_STATIC);
	while (sqlite3_step(st) == SQLITE_ROW) {
		last = json_pack("{s:s, s:i, s:o, s:s}", "status", (const char *)sqlite3_column_text(st, 0), "seq",
		    sqlite3_column_int(st, 1), "at", time_json(sqlite3_column_int64(st, 2)), "worker",
		    (const char *)sqlite3_column_text(st, 3));
		json_array_append_new(timeline, last);
		if (json_object_get(o, "user_id") == NULL)
			json_object_set_new(o, "user_id", json_string((const char *)sqlite3_column_text(st, 4)));
	}
	db_done(h->db, st);
	if (json_object_get(o, "user_id") == NULL)
		goto fail; /* neither placed nor any status: unknown */
	json_object_set_new(o, "status", last != NULL ? json_incref(json_object_get(last, "status")) : json_string("placed"));

	/* the callback's outcome, when the order came with a callback_url */
	st = db_prepare(h->db, "SELECT outcome, attempts, detail, at_ms, delivery_id FROM callbacks WHERE order_id = ?");
	if (st == NULL)
		goto fail;
	sqlite3_bind_text(st, 1, order_id, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW) {
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
	json_object_set_new(o, "timeline", timeline);
	return o;
fail:
	json_decref(timeline);
	json_decref(o);
	return NULL;
}

json_t *
history_order(struct history *h, const char *order_id)
{
	json_t *o;

	db_lock(h->db);
	o = order_locked(h, order_id);
	db_unlock(h->db);
	return o;
}

json_t *
history_user_orders(struct history *h, const char *user_id, int limit, const char *before_order_id)
{
	sqlite3_stmt *st;
	json_t *arr;
	char **ids = NULL;
	int n = 0;

	if (limit < 1)
		return json_array();
	db_lock(h->db);
	/* order ids are time-sortable, so id order is placement order */
	st = db_prepare(h->db, before_order_id != NULL
		? "SELECT order_id FROM orders WHERE user_id = ? AND order_id < ? ORDER BY order_id DESC LIMIT ?"
		: "SELECT order_id FROM orders WHERE user_id = ? ORDER BY order_id DESC LIMIT ?");
	if (st == NULL || (ids = calloc((size_t)limit, sizeof(*ids))) == NULL) {
		db_done(h->db, st);
		db_unlock(h->db);
		return NULL;
	}
	sqlite3_bind_text(st, 1, user_id, -1, SQLITE_STATIC);
	if (before_order_id != NULL) {
		sqlite3_bind_text(st, 2, before_order_id, -1, SQLITE_STATIC);
		sqlite3_bind_int(st, 3, limit);
	} else
		sqlite3_bind_int(st, 2, limit);
	while (n < limit && sqlite3_step(st) == SQLITE_ROW)
		ids[n++] = strdup((const char *)sqlite3_column_text(st, 0));
	db_done(h->db, st);
	arr = json_array();
	for (int i = 0; i < n; i++) {
		if (ids[i] != NULL) {
			json_t *o = order_locked(h, ids[i]);
			if (o != NULL)
				json_array_append_new(arr, o);
		}
		free(ids[i]);
	}
	free(ids);
	db_unlock(h->db);
	return arr;
}

static int64_t
count(struct history *h, const char *sql)
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
history_count_orders(struct history *h)
{
	return count(h, "SELECT count(*) FROM orders");
}

int64_t
history_count_statuses(struct history *h)
{
	return count(h, "SELECT count(*) FROM statuses");
}

struct db *
history_db(struct history *h)
{
	return h->db;
}

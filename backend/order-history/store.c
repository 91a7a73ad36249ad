/*
 * store.c - order-history's store behind store.h: picks the backend from
 * the database target (store_sqlite.c for a file path, store_pg.c for a
 * postgresql:// URL) and holds what does not depend on it: which
 * statements each call runs (store_backend.h) and the JSON built from
 * their rows, so both backends answer alike.
 */
#include "store.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "store_backend.h"
#include "util.h"

struct history_store {
	const struct hstore_ops *ops;
	void *b;
};

/* 1 when target is a PostgreSQL connection URL. */
static int
is_pg(const char *target)
{
	return strncmp(target, "postgresql://", 13) == 0 || strncmp(target, "postgres://", 11) == 0;
}

struct history_store *
hstore_open(const char *target)
{
	struct history_store *h;

	if (target == NULL || target[0] == '\0') {
		log_error("no history database given: a SQLite file path or a postgresql:// URL", NULL);
		return NULL;
	}
	if (!is_pg(target) && strstr(target, "://") != NULL) {
		char scheme[32];

		snprintf(scheme, sizeof(scheme), "%.*s", (int)strcspn(target, ":"), target);
		log_error("unknown database URL: give a SQLite file path or a postgresql:// (postgres://) URL",
		    "scheme=%s", LOGQ(scheme));
		return NULL;
	}
	if ((h = calloc(1, sizeof(*h))) == NULL)
		return NULL;
	h->ops = is_pg(target) ? &hstore_pg_ops : &hstore_sqlite_ops;
	if ((h->b = h->ops->open(target)) == NULL) {
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
	h->ops->close(h->b);
	free(h);
}

const char *
hstore_label(const char *target, char *buf, size_t n)
{
	if (target != NULL && is_pg(target))
		return hstore_pg_label(target, buf, n);
	snprintf(buf, n, "%s", target != NULL ? target : "");
	return buf;
}

#define TEXT(v) { .s = (v) }
#define INT(v) { .i = (v) }

static json_t *
items_json(const struct event *ev)
{
	json_t *arr = json_array();

	for (size_t i = 0; arr != NULL && i < ev->n_items; i++)
		json_array_append_new(arr, json_pack("{s:s, s:i}", "sku", ev->items[i].sku, "qty", ev->items[i].qty));
	return arr;
}

/* An HS_PUT_* result as the caller's enum. */
static enum hstore_result
put_result(int rc)
{
	return rc > 0 ? HSTORE_OK : rc == 0 ? HSTORE_DUP : HSTORE_FAIL;
}

enum hstore_result
hstore_apply(struct history_store *h, const struct event *ev)
{
	enum hstore_result rc = HSTORE_FAIL;
	char *items = NULL;

	if (ev->type == EVENT_ORDER_PLACED) {
		json_t *arr = items_json(ev);
		items = arr != NULL ? json_dumps(arr, JSON_COMPACT) : NULL;
		json_decref(arr);
		if (items != NULL) {
			const struct hval v[] = { TEXT(ev->order_id), TEXT(ev->user_id), TEXT(items),
				{ .s = ev->callback_url[0] != '\0' ? ev->callback_url : NULL,
				    .null = ev->callback_url[0] == '\0' },
				INT(ev->at_ms), TEXT(ev->event_id) };
			rc = put_result(h->ops->put(h->b, HS_PUT_ORDER, v, 6));
		}
	} else if (ev->type == EVENT_ORDER_STATUS) {
		const struct hval v[] = { TEXT(ev->order_id), INT(ev->seq), TEXT(ev->user_id),
			TEXT(event_status_name(ev->status)), INT(ev->at_ms), TEXT(ev->worker), TEXT(ev->event_id) };
		rc = put_result(h->ops->put(h->b, HS_PUT_STATUS, v, 7));
	} else if (ev->type == EVENT_CALLBACK_DELIVERY) {
		const struct hval v[] = { TEXT(ev->order_id), TEXT(ev->user_id), TEXT(ev->delivery_id),
			TEXT(event_outcome_name(ev->outcome)), INT(ev->attempts), TEXT(ev->message), INT(ev->at_ms),
			TEXT(ev->event_id) };
		rc = put_result(h->ops->put(h->b, HS_PUT_CALLBACK, v, 8));
	}
	if (rc == HSTORE_FAIL)
		log_error("cannot store event", "order_id=%s type=%s", ev->order_id, event_type_name(ev->type));
	free(items);
	return rc;
}

enum hstore_result
hstore_receipt(struct history_store *h, const char *user_id, const char *device, const char *event_id,
    const char *order_id, int64_t at_ms)
{
	const struct hval v[] = { TEXT(order_id), TEXT(device), TEXT(user_id), TEXT(event_id), INT(at_ms) };

	return put_result(h->ops->put(h->b, HS_PUT_RECEIPT, v, 5));
}

/* A column holding an integer (0 for NULL: the schema has none where one is read). */
static int64_t
num(const char *s)
{
	return s != NULL ? strtoll(s, NULL, 10) : 0;
}

static json_t *
time_json(const char *ms)
{
	char at[32];

	return json_string(time_rfc3339(num(ms), at, sizeof(at)));
}

/* What the row callbacks of one order fill. */
struct order_build {
	json_t *o, *timeline, *last, *deliveries;
	const char *user;
	int accepted; /* the timeline has its "accepted" entry */
};

static int
on_order_row(void *arg, const char *const *col)
{
	struct order_build *ob = arg;

	json_object_set_new(ob->o, "user_id", json_string(col[0]));
	json_object_set_new(ob->o, "items", json_loads(col[1], 0, NULL));
	json_object_set_new(ob->o, "placed_at", time_json(col[2]));
	/*
	 * The order was accepted when it was placed: the 202 or the reply said so
	 * then.  The executor that takes it tells only order-service's
	 * supervision (docs/events.md), so the timeline's first stage is this.
	 */
	ob->last = json_pack("{s:s, s:i, s:o, s:s}", "status", "accepted", "seq", (int)STATUS_ACCEPTED, "at",
	    time_json(col[2]), "worker", "order-service");
	if (ob->last == NULL)
		return -1;
	json_array_append_new(ob->timeline, ob->last);
	ob->accepted = 1;
	return 0;
}

static int
on_status_row(void *arg, const char *const *col)
{
	struct order_build *ob = arg;

	/* an executor's accepted, stored before executors stopped sending it here */
	if (num(col[1]) == STATUS_ACCEPTED && ob->accepted)
		return 0;
	ob->last = json_pack("{s:s, s:i, s:o, s:s}", "status", col[0], "seq", (int)num(col[1]), "at", time_json(col[2]),
	    "worker", col[3]);
	if (ob->last == NULL)
		return -1;
	json_array_append_new(ob->timeline, ob->last);
	if (json_object_get(ob->o, "user_id") == NULL)
		json_object_set_new(ob->o, "user_id", json_string(col[4]));
	return 0;
}

static int
on_callback_row(void *arg, const char *const *col)
{
	struct order_build *ob = arg;
	char what[32];

	snprintf(what, sizeof(what), "callback_%s", col[0]);
	json_array_append_new(ob->timeline,
	    json_pack("{s:s, s:o, s:i, s:s, s:s}", "status", what, "at", time_json(col[3]), "attempts", (int)num(col[1]),
		"detail", col[2], "delivery_id", col[4]));
	json_object_set_new(ob->o, "callback",
	    json_pack("{s:s, s:i, s:s}", "outcome", col[0], "attempts", (int)num(col[1]), "detail", col[2]));
	return 0;
}

static int
on_receipt_row(void *arg, const char *const *col)
{
	struct order_build *ob = arg;
	char detail[2 * NAME_MAX_LEN + 32];

	snprintf(detail, sizeof(detail), "delivered to %s/%s", ob->user, col[0]);
	json_array_append_new(ob->deliveries, json_pack("{s:s, s:o}", "device", col[0], "delivered_at", time_json(col[1])));
	json_array_append_new(ob->timeline,
	    json_pack("{s:s, s:o, s:s, s:s}", "status", "delivered", "at", time_json(col[1]), "device", col[0], "detail",
		detail));
	return 0;
}

/*
 * The order's row, statuses, callback and its own user's receipts into
 * ob->o.  Inside a read bracket.  HSTORE_OK, HSTORE_NOT_FOUND (neither
 * placed nor any status) or HSTORE_FAIL.
 */
static enum hstore_result
order_read(struct history_store *h, const char *order_id, struct order_build *ob)
{
	const struct hval id[] = { TEXT(order_id) };
	int n;

	json_object_set_new(ob->o, "order_id", json_string(order_id));
	if ((n = h->ops->select(h->b, HS_GET_ORDER, id, 1, on_order_row, ob)) < 0)
		return HSTORE_FAIL;
	if (n == 0) {
		json_object_set_new(ob->o, "items", json_null());
		json_object_set_new(ob->o, "placed_at", json_null());
	}
	if (h->ops->select(h->b, HS_GET_STATUSES, id, 1, on_status_row, ob) < 0)
		return HSTORE_FAIL;
	if (json_object_get(ob->o, "user_id") == NULL)
		return HSTORE_NOT_FOUND;
	json_object_set_new(ob->o, "status",
	    ob->last != NULL ? json_incref(json_object_get(ob->last, "status")) : json_string("placed"));
	if (h->ops->select(h->b, HS_GET_CALLBACK, id, 1, on_callback_row, ob) < 0)
		return HSTORE_FAIL;
	ob->user = json_string_value(json_object_get(ob->o, "user_id"));
	{
		const struct hval rv[] = { TEXT(order_id), TEXT(ob->user) };
		if (ob->user == NULL || h->ops->select(h->b, HS_GET_RECEIPTS, rv, 2, on_receipt_row, ob) < 0)
			return HSTORE_FAIL;
	}
	return HSTORE_OK;
}

/* Builds the order object into *out (NULL unless HSTORE_OK).  Inside a read bracket. */
static enum hstore_result
order_locked(struct history_store *h, const char *order_id, json_t **out)
{
	struct order_build ob = { .o = json_object(), .timeline = json_array(), .deliveries = json_array() };
	enum hstore_result rc = HSTORE_FAIL;

	*out = NULL;
	if (ob.o != NULL && ob.timeline != NULL && ob.deliveries != NULL &&
	    (rc = order_read(h, order_id, &ob)) == HSTORE_OK) {
		json_object_set_new(ob.o, "deliveries", ob.deliveries);
		json_object_set_new(ob.o, "timeline", ob.timeline);
		*out = ob.o;
		return HSTORE_OK;
	}
	json_decref(ob.deliveries);
	json_decref(ob.timeline);
	json_decref(ob.o);
	return rc;
}

enum hstore_result
hstore_order(struct history_store *h, const char *order_id, json_t **out)
{
	enum hstore_result rc = HSTORE_FAIL;

	*out = NULL;
	if (h->ops->read_begin(h->b) == 0) {
		rc = order_locked(h, order_id, out);
		h->ops->read_end(h->b);
	}
	if (rc == HSTORE_FAIL)
		log_error("cannot read an order", "order_id=%s", order_id);
	return rc;
}

/* Collects order ids into a fixed array. */
struct id_list {
	char **ids;
	int n, cap;
};

static int
on_id_row(void *arg, const char *const *col)
{
	struct id_list *l = arg;

	if (l->n >= l->cap || (l->ids[l->n] = strdup(col[0])) == NULL)
		return -1;
	l->n++;
	return 0;
}

enum hstore_result
hstore_user_orders(struct history_store *h, const char *user_id, int limit, const char *before_order_id, json_t **out)
{
	enum hstore_result rc = HSTORE_FAIL;
	json_t *arr = json_array();
	struct id_list l = { .ids = calloc(limit > 0 ? (size_t)limit : 1, sizeof(char *)), .cap = limit };

	*out = NULL;
	if (arr == NULL || l.ids == NULL || h->ops->read_begin(h->b) != 0)
		goto out;
	if (limit > 0) {
		const struct hval all[] = { TEXT(user_id), INT(limit) };
		const struct hval before[] = { TEXT(user_id), TEXT(before_order_id), INT(limit) };
		int n = before_order_id != NULL ? h->ops->select(h->b, HS_USER_ORDERS_BEFORE, before, 3, on_id_row, &l)
						: h->ops->select(h->b, HS_USER_ORDERS, all, 2, on_id_row, &l);
		if (n < 0) {
			h->ops->read_end(h->b);
			goto out;
		}
	}
	rc = HSTORE_OK;
	for (int i = 0; i < l.n && rc == HSTORE_OK; i++) {
		json_t *o;
		/* an order listed a moment ago is there (one snapshot): NOT_FOUND cannot happen, FAIL can */
		if ((rc = order_locked(h, l.ids[i], &o)) == HSTORE_OK)
			json_array_append_new(arr, o);
	}
	h->ops->read_end(h->b);
out:
	for (int i = 0; i < l.n; i++)
		free(l.ids[i]);
	free(l.ids);
	if (rc != HSTORE_OK) {
		json_decref(arr);
		log_error("cannot read a user's orders", "user_id=%s", user_id);
		return HSTORE_FAIL;
	}
	*out = arr;
	return HSTORE_OK;
}

static int
on_count_row(void *arg, const char *const *col)
{
	*(int64_t *)arg = num(col[0]);
	return 0;
}

int64_t
hstore_count(struct history_store *h, enum hstore_table t)
{
	int64_t n = -1;

	if (h->ops->read_begin(h->b) != 0)
		return -1;
	if (h->ops->select(h->b, t == HSTORE_ORDERS ? HS_COUNT_ORDERS : HS_COUNT_STATUSES, NULL, 0, on_count_row, &n) != 1)
		n = -1;
	h->ops->read_end(h->b);
	return n;
}

int
hstore_probe(void *arg)
{
	struct history_store *h = arg;

	return h->ops->probe(h->b);
}

#include "intake.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
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

static int
url_ok(const char *url)
{
	return strncmp(url, "http://", 7) == 0 || strncmp(url, "https://", 8) == 0;
}

/* Validates request into ev (an OrderPlaced for user_id). Returns 0 or fills res. */
static int
validate(const char *user_id, const json_t *request, struct event *ev, struct intake_result *res)
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

static int
record(struct intake *in, const struct event *ev, const char *json, const char *via)
{
	char topic[TOPIC_MAX], *items;
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
	str_copy(topic, sizeof(topic), TOPIC_PLACED);

	db_lock(in->db);
	if (db_begin(in->db) != 0)
		goto out;
	st = db_prepare(in->db, "INSERT INTO orders(order_id, user_id, items, callback_url, via, created_ms) "
				"VALUES (?, ?, ?, ?, ?, ?)");
	if (st == NULL)
		goto rollback;
	sqlite3_bind_text(st, 1, ev->order_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, ev->user_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, items, -1, SQLITE_STATIC);
	if (ev->callback_url[0] != '\0')
		sqlite3_bind_text(st, 4, ev->callback_url, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, via, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 6, ev->at_ms);
	if (sqlite3_step(st) != SQLITE_DONE) {
		log_error("cannot record order", "order_id=%s err=\"%s\"", ev->order_id, sqlite3_errmsg(in->db->h));
		goto rollback;
	}
	if (outbox_add(in->db, topic, json, strlen(json), 1, 0, 0) != 0)
		goto rollback;
	if (db_commit(in->db) != 0)
		goto rollback;
	rc = 0;
	goto out;
rollback:
	db_rollback(in->db);
out:
	sqlite3_finalize(st);
	db_unlock(in->db);
	free(items);
	return rc;
}

void
intake_place(struct intake *in, const char *user_id, const json_t *request, const char *via,
    struct intake_result *res)
{
	struct event ev;
	char *json;

	memset(res, 0, sizeof(*res));
	if (validate(user_id, request, &ev, res) != 0) {
		log_info("order refused", "user_id=%s via=%s", name_valid(user_id) ? user_id : "-", via);
		return;
	}
	if ((json = event_encode(&ev)) == NULL || record(in, &ev, json, via) != 0) {
		free(json);
		res->status = INTAKE_INTERNAL;
		res->error = "internal";
		snprintf(res->detail, sizeof(res->detail), "the order could not be recorded; please retry");
		return;
	}
	free(json);
	res->status = INTAKE_OK;
	str_copy(res->order_id, sizeof(res->order_id), ev.order_id);
	log_info("order accepted", "order_id=%s user_id=%s via=%s items=%zu", ev.order_id, ev.user_id, via,
	    ev.n_items);
	/* publish now rather than at the next tick: the commit above already made it safe */
	outbox_flush(in->outbox);
}

void
intake_place_raw(struct intake *in, const char *user_id, const void *buf, size_t len, const char *via,
    struct intake_result *res)
{
	json_error_t jerr;
	json_t *req;

	memset(res, 0, sizeof(*res));
	if (len > EVENT_MAX_BYTES) {
		invalid(res, "too_large", "the request is %zu bytes; the limit is %d", len, EVENT_MAX_BYTES);
		return;
	}
	if ((req = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr)) == NULL) {
		invalid(res, "invalid_json", "malformed JSON: %s (line %d, column %d)", jerr.text, jerr.line,
		    jerr.column);
		return;
	}
	intake_place(in, user_id, req, via, res);
	json_decref(req);
}

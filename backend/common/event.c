#include "event.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "menu.h"

static const char *const type_names[] = { NULL, "OrderPlaced", "OrderStatus", "PickupAlert", "CallbackDelivery",
	"OrderReady" };
static const char *const outcome_names[] = { NULL, "delivered", "failed" };
static const char *const status_names[] = { NULL, "accepted", "prep", "bake", "oven", "ready" };

const char *
event_type_name(enum event_type t)
{
	return t >= EVENT_ORDER_PLACED && t <= EVENT_ORDER_READY ? type_names[t] : NULL;
}

const char *
event_outcome_name(enum delivery_outcome o)
{
	return o >= DELIVERY_DELIVERED && o <= DELIVERY_FAILED ? outcome_names[o] : NULL;
}

const char *
event_status_name(enum order_status s)
{
	return s >= STATUS_ACCEPTED && s <= STATUS_READY ? status_names[s] : NULL;
}

enum order_status
event_status_from_name(const char *name)
{
	for (int i = STATUS_ACCEPTED; i <= STATUS_READY; i++)
		if (strcmp(status_names[i], name) == 0)
			return (enum order_status)i;
	return 0;
}

static enum event_type
type_from_name(const char *name)
{
	for (int i = EVENT_ORDER_PLACED; i <= EVENT_ORDER_READY; i++)
		if (strcmp(type_names[i], name) == 0)
			return (enum event_type)i;
	return 0;
}

static int
fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int
fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	json_t *valid = NULL;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	/* err may quote input cut inside a character (jansson's "near '...'"): keep it UTF-8 */
	if (errlen > 0 && (valid = json_string(err)) == NULL)
		for (char *p = err; *p != '\0'; p++)
			if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
				*p = '?';
	json_decref(valid);
	return -1;
}

json_t *
event_json_lossy(const char *s)
{
	json_t *j = json_string(s);
	char *copy;

	if (j != NULL || s == NULL || (copy = strdup(s)) == NULL)
		return j;
	for (char *p = copy; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
			*p = '?';
	j = json_string(copy);
	free(copy);
	return j;
}

int
event_init(struct event *ev, enum event_type t, const char *order_id, const char *user_id)
{
	memset(ev, 0, sizeof(*ev));
	if (!name_valid(order_id) || !name_valid(user_id))
		return -1;
	ev->type = t;
	id_new(ev->event_id);
	str_copy(ev->order_id, sizeof(ev->order_id), order_id);
	str_copy(ev->user_id, sizeof(ev->user_id), user_id);
	ev->at_ms = now_ms();
	return 0;
}

/* Copies the string member key of obj into out (size n); required unless optional. */
static int
get_string(const json_t *obj, const char *key, char *out, size_t n, int optional, char *err,
    size_t errlen)
{
	const json_t *v = json_object_get(obj, key);
	const char *s;

	if (v == NULL) {
		if (optional) {
			out[0] = '\0';
			return 0;
		}
		return fail(err, errlen, "missing field '%s'", key);
	}
	if (!json_is_string(v))
		return fail(err, errlen, "field '%s' must be a string", key);
	s = json_string_value(v);
	if (strlen(s) != json_string_length(v))
		return fail(err, errlen, "field '%s' contains a NUL character", key);
	if (json_string_length(v) >= n)
		return fail(err, errlen, "field '%s' is longer than %zu characters", key, n - 1);
	memcpy(out, s, json_string_length(v) + 1);
	return 0;
}

static int
get_name(const json_t *obj, const char *key, char *out, char *err, size_t errlen)
{
	if (get_string(obj, key, out, NAME_MAX_LEN + 1, 0, err, errlen) != 0)
		return -1;
	if (!name_valid(out))
		return fail(err, errlen, "field '%s' must be 1-%d characters of A-Z a-z 0-9 _ -", key,
		    NAME_MAX_LEN);
	return 0;
}

int
event_items_from_json(const json_t *arr, struct item *items, size_t *n, char *err, size_t errlen)
{
	size_t i, count;

	if (arr == NULL)
		return fail(err, errlen, "missing field 'items'");
	if (!json_is_array(arr))
		return fail(err, errlen, "field 'items' must be an array");
	count = json_array_size(arr);
	if (count == 0)
		return fail(err, errlen, "field 'items' must not be empty");
	if (count > EVENT_MAX_ITEMS)
		return fail(err, errlen, "field 'items' has more than %d entries", EVENT_MAX_ITEMS);
	for (i = 0; i < count; i++) {
		const json_t *it = json_array_get(arr, i), *qty;
		char field[32];

		if (!json_is_object(it))
			return fail(err, errlen, "items[%zu] must be an object", i);
		snprintf(field, sizeof(field), "items[%zu].sku", i);
		if (get_string(it, "sku", items[i].sku, sizeof(items[i].sku), 0, err, errlen) != 0 ||
		    menu_find(items[i].sku) == NULL) {
			if (json_is_string(json_object_get(it, "sku"))) {
				const char *sku = json_string_value(json_object_get(it, "sku"));
				int cut = (int)strnlen(sku, 40);

				/* shorten at a character boundary: err goes into JSON replies and dead letters */
				while (cut > 0 && ((unsigned char)sku[cut] & 0xc0) == 0x80)
					cut--;
				return fail(err, errlen, "%s: '%.*s' is not on the menu", field, cut, sku);
			}
			return fail(err, errlen, "%s must be a string naming a menu item", field);
		}
		qty = json_object_get(it, "qty");
		if (!json_is_integer(qty) || json_integer_value(qty) < 1 ||
		    json_integer_value(qty) > EVENT_MAX_QTY)
			return fail(err, errlen, "items[%zu].qty must be a whole number from 1 to %d", i,
			    EVENT_MAX_QTY);
		items[i].qty = (int)json_integer_value(qty);
	}
	*n = count;
	return 0;
}

/* An order's items as the decoder accepts them.  Returns 0 or -1. */
static int
items_check(const struct event *ev)
{
	if (ev->n_items < 1 || ev->n_items > EVENT_MAX_ITEMS)
		return -1;
	for (size_t i = 0; i < ev->n_items; i++)
		if (menu_find(ev->items[i].sku) == NULL || ev->items[i].qty < 1 || ev->items[i].qty > EVENT_MAX_QTY)
			return -1;
	return 0;
}

/* A status, seq and worker as the decoder accepts them.  Returns 0 or -1. */
static int
status_check(const struct event *ev)
{
	return event_status_name(ev->status) != NULL && ev->seq == (int)ev->status && name_valid(ev->worker) ? 0 : -1;
}

/* Checks the fields event_encode() is about to write, with the decoder's rules. */
static int
event_check(const struct event *ev)
{
	if (event_type_name(ev->type) == NULL || !name_valid(ev->event_id) ||
	    !name_valid(ev->order_id) || !name_valid(ev->user_id) || ev->at_ms < 0)
		return -1;
	switch (ev->type) {
	case EVENT_ORDER_PLACED:
		return items_check(ev);
	case EVENT_ORDER_STATUS:
		return status_check(ev);
	case EVENT_ORDER_READY:
		return ev->status == STATUS_READY && status_check(ev) == 0 ? items_check(ev) : -1;
	case EVENT_PICKUP_ALERT:
		return ev->message[0] != '\0' ? 0 : -1;
	case EVENT_CALLBACK_DELIVERY:
		return event_outcome_name(ev->outcome) != NULL && name_valid(ev->delivery_id) && ev->attempts >= 1 &&
			       ev->attempts <= EVENT_MAX_ATTEMPTS
		    ? 0
		    : -1;
	}
	return -1;
}

char *
event_encode(const struct event *ev)
{
	json_t *o = NULL, *items;
	char at[32];
	char *out = NULL;

	if (event_check(ev) != 0)
		return NULL;
	time_rfc3339(ev->at_ms, at, sizeof(at));
	if ((o = json_object()) == NULL)
		return NULL;
	json_object_set_new(o, "type", json_string(event_type_name(ev->type)));
	json_object_set_new(o, "event_id", json_string(ev->event_id));
	json_object_set_new(o, "order_id", json_string(ev->order_id));
	json_object_set_new(o, "user_id", json_string(ev->user_id));
	json_object_set_new(o, "at", json_string(at));
	if (ev->type == EVENT_ORDER_STATUS || ev->type == EVENT_ORDER_READY) {
		json_object_set_new(o, "status", json_string(event_status_name(ev->status)));
		json_object_set_new(o, "seq", json_integer(ev->seq));
		json_object_set_new(o, "worker", json_string(ev->worker));
	}
	if (ev->type == EVENT_ORDER_PLACED || ev->type == EVENT_ORDER_READY) {
		if ((items = json_array()) == NULL)
			goto out;
		json_object_set_new(o, "items", items);
		for (size_t i = 0; i < ev->n_items; i++)
			json_array_append_new(items,
			    json_pack("{s:s, s:i}", "sku", ev->items[i].sku, "qty", ev->items[i].qty));
		if (ev->callback_url[0] != '\0')
			json_object_set_new(o, "callback_url", json_string(ev->callback_url));
	}
	switch (ev->type) {
	case EVENT_ORDER_PLACED:
	case EVENT_ORDER_STATUS:
	case EVENT_ORDER_READY:
		break;
	case EVENT_PICKUP_ALERT:
		json_object_set_new(o, "message", json_string(ev->message));
		break;
	case EVENT_CALLBACK_DELIVERY:
		json_object_set_new(o, "delivery_id", json_string(ev->delivery_id));
		json_object_set_new(o, "outcome", json_string(event_outcome_name(ev->outcome)));
		json_object_set_new(o, "attempts", json_integer(ev->attempts));
		json_object_set_new(o, "detail", json_string(ev->message));
		break;
	}
	out = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
out:
	json_decref(o);
	return out;
}

/* OrderPlaced's own fields.  Returns 0, or -1 with err set. */
static int
decode_placed(const json_t *o, struct event *ev, char *err, size_t errlen)
{
	if (event_items_from_json(json_object_get(o, "items"), ev->items, &ev->n_items, err, errlen) != 0 ||
	    get_string(o, "callback_url", ev->callback_url, sizeof(ev->callback_url), 1, err, errlen) != 0)
		return -1;
	if (json_object_get(o, "callback_url") != NULL && strncmp(ev->callback_url, "http://", 7) != 0 &&
	    strncmp(ev->callback_url, "https://", 8) != 0)
		return fail(err, errlen, "field 'callback_url' must be an http:// or https:// URL");
	return 0;
}

/* OrderStatus's own fields: a known status, seq its stage's number, the worker.  Returns 0, or -1. */
static int
decode_status(const json_t *o, struct event *ev, char *err, size_t errlen)
{
	char status[16];
	const json_t *seq;

	if (get_string(o, "status", status, sizeof(status), 0, err, errlen) != 0)
		return -1;
	if ((ev->status = event_status_from_name(status)) == 0)
		return fail(err, errlen, "unknown status '%s'", status);
	seq = json_object_get(o, "seq");
	if (!json_is_integer(seq))
		return fail(err, errlen, "field 'seq' must be a whole number");
	if (json_integer_value(seq) != (json_int_t)ev->status)
		return fail(err, errlen, "field 'seq' is %lld but status '%s' is stage %d",
		    (long long)json_integer_value(seq), status, (int)ev->status);
	ev->seq = (int)ev->status;
	return get_name(o, "worker", ev->worker, err, errlen);
}

/* OrderReady: a ready status with the order's items and callback_url.  Returns 0, or -1. */
static int
decode_ready(const json_t *o, struct event *ev, char *err, size_t errlen)
{
	if (decode_status(o, ev, err, errlen) != 0)
		return -1;
	if (ev->status != STATUS_READY)
		return fail(err, errlen, "an OrderReady's status must be 'ready', not '%s'", event_status_name(ev->status));
	return decode_placed(o, ev, err, errlen);
}

/* PickupAlert's message, not empty.  Returns 0, or -1. */
static int
decode_alert(const json_t *o, struct event *ev, char *err, size_t errlen)
{
	if (get_string(o, "message", ev->message, sizeof(ev->message), 0, err, errlen) != 0)
		return -1;
	if (ev->message[0] == '\0')
		return fail(err, errlen, "field 'message' must not be empty");
	return 0;
}

/* CallbackDelivery's own fields.  Returns 0, or -1. */
static int
decode_callback(const json_t *o, struct event *ev, char *err, size_t errlen)
{
	char outcome[16];
	const json_t *att = json_object_get(o, "attempts");

	if (get_name(o, "delivery_id", ev->delivery_id, err, errlen) != 0 ||
	    get_string(o, "outcome", outcome, sizeof(outcome), 0, err, errlen) != 0 ||
	    get_string(o, "detail", ev->message, sizeof(ev->message), 1, err, errlen) != 0)
		return -1;
	if (strcmp(outcome, "delivered") == 0)
		ev->outcome = DELIVERY_DELIVERED;
	else if (strcmp(outcome, "failed") == 0)
		ev->outcome = DELIVERY_FAILED;
	else
		return fail(err, errlen, "unknown outcome '%s'", outcome);
	if (!json_is_integer(att) || json_integer_value(att) < 1 || json_integer_value(att) > EVENT_MAX_ATTEMPTS)
		return fail(err, errlen, "field 'attempts' must be a whole number from 1 to %d", EVENT_MAX_ATTEMPTS);
	ev->attempts = (int)json_integer_value(att);
	return 0;
}

/* The fields every event has: type, ids and time.  Returns 0, or -1. */
static int
decode_common(const json_t *o, struct event *ev, char *err, size_t errlen)
{
	char type[32], at[32];

	if (!json_is_object(o))
		return fail(err, errlen, "event must be a JSON object");
	if (get_string(o, "type", type, sizeof(type), 0, err, errlen) != 0)
		return -1;
	if ((ev->type = type_from_name(type)) == 0)
		return fail(err, errlen, "unknown event type '%s'", type);
	if (get_name(o, "event_id", ev->event_id, err, errlen) != 0 ||
	    get_name(o, "order_id", ev->order_id, err, errlen) != 0 ||
	    get_name(o, "user_id", ev->user_id, err, errlen) != 0 ||
	    get_string(o, "at", at, sizeof(at), 0, err, errlen) != 0)
		return -1;
	if (time_parse_rfc3339(at, &ev->at_ms) != 0)
		return fail(err, errlen, "field 'at' must be RFC 3339 UTC with milliseconds, like "
					 "2026-01-31T12:00:00.000Z");
	return 0;
}

int
event_decode(const void *buf, size_t len, struct event *ev, char *err, size_t errlen)
{
	json_t *o;
	json_error_t jerr;
	int rc = -1;

	memset(ev, 0, sizeof(*ev));
	if (len > EVENT_MAX_BYTES)
		return fail(err, errlen, "payload of %zu bytes is over the %d byte limit", len, EVENT_MAX_BYTES);
	if ((o = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr)) == NULL)
		return fail(err, errlen, "malformed JSON: %s (line %d, column %d)", jerr.text, jerr.line, jerr.column);
	if (decode_common(o, ev, err, errlen) == 0) {
		switch (ev->type) {
		case EVENT_ORDER_PLACED:
			rc = decode_placed(o, ev, err, errlen);
			break;
		case EVENT_ORDER_STATUS:
			rc = decode_status(o, ev, err, errlen);
			break;
		case EVENT_PICKUP_ALERT:
			rc = decode_alert(o, ev, err, errlen);
			break;
		case EVENT_CALLBACK_DELIVERY:
			rc = decode_callback(o, ev, err, errlen);
			break;
		case EVENT_ORDER_READY:
			rc = decode_ready(o, ev, err, errlen);
			break;
		}
	}
	json_decref(o);
	return rc;
}

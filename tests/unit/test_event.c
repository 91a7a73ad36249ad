/*
 * test_event.c - the event codec (event.h): encode/decode round trips, the
 * JSON a consumer sees, and every rule event_decode() enforces.
 *
 * Payloads live in tests/unit/events/{valid,invalid}/<case>.json; each
 * invalid case has a <case>.reason holding a substring of the expected
 * error.  Paths are relative to the repository root ($PIZZA_ROOT, else the
 * current directory, which is the root under `make unit`).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "event.h"
#include "util.h"

#define AT_TEXT "2026-01-31T12:00:00.000Z"
#define AT_MS INT64_C(1769860800000)

/* ---- helpers ------------------------------------------------------------ */

static void
events_path(char *buf, size_t n, const char *sub, const char *name)
{
	const char *root = getenv("PIZZA_ROOT");
	int r;

	if (root == NULL || root[0] == '\0')
		root = ".";
	if (name != NULL)
		r = snprintf(buf, n, "%s/tests/unit/events/%s/%s", root, sub, name);
	else
		r = snprintf(buf, n, "%s/tests/unit/events/%s", root, sub);
	assert_true(r > 0 && (size_t)r < n);
}

/* Reads a whole file into a new buffer (NUL-terminated for convenience); *len excludes the NUL. */
static char *
slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t cap = 0, n = 0;

	if (f == NULL)
		return NULL;
	for (;;) {
		size_t r;

		if (n + 4096 + 1 > cap) {
			char *nb;

			cap = cap == 0 ? 8192 : cap * 2;
			if ((nb = realloc(buf, cap)) == NULL) {
				free(buf);
				fclose(f);
				return NULL;
			}
			buf = nb;
		}
		r = fread(buf + n, 1, 4096, f);
		n += r;
		if (r < 4096)
			break;
	}
	fclose(f);
	buf[n] = '\0';
	*len = n;
	return buf;
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The <case> names (without .json) in events/<sub>, sorted.  Returns how many. */
static size_t
list_cases(const char *sub, char ***out)
{
	char dir[PATH_MAX];
	DIR *d;
	struct dirent *de;
	char **names = NULL;
	size_t n = 0, cap = 0;

	events_path(dir, sizeof(dir), sub, NULL);
	d = opendir(dir);
	if (d == NULL)
		fail_msg("cannot open %s (run from the repository root or set PIZZA_ROOT)", dir);
	while ((de = readdir(d)) != NULL) {
		size_t len = strlen(de->d_name);

		if (len <= 5 || strcmp(de->d_name + len - 5, ".json") != 0)
			continue;
		if (n == cap) {
			cap = cap == 0 ? 64 : cap * 2;
			names = realloc(names, cap * sizeof(*names));
			assert_non_null(names);
		}
		names[n] = strndup(de->d_name, len - 5);
		assert_non_null(names[n]);
		n++;
	}
	closedir(d);
	if (n > 0)
		qsort(names, n, sizeof(*names), cmp_str);
	*out = names;
	return n;
}

static void
free_cases(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

/* True if s is valid UTF-8 (what json_string() accepts). */
static int
utf8_valid(const char *s)
{
	json_t *j = json_string(s);

	json_decref(j);
	return j != NULL;
}

/* OrderPlaced's fields (OrderReady has them too). */
static void
assert_items_equal(const struct event *a, const struct event *b)
{
	assert_int_equal(a->n_items, b->n_items);
	for (size_t i = 0; i < a->n_items; i++) {
		assert_string_equal(a->items[i].sku, b->items[i].sku);
		assert_int_equal(a->items[i].qty, b->items[i].qty);
	}
	assert_string_equal(a->callback_url, b->callback_url);
}

/* OrderStatus's fields (OrderReady has them too). */
static void
assert_status_equal(const struct event *a, const struct event *b)
{
	assert_int_equal(a->status, b->status);
	assert_int_equal(a->seq, b->seq);
	assert_string_equal(a->worker, b->worker);
}

static void
assert_event_equal(const struct event *a, const struct event *b)
{
	assert_int_equal(a->type, b->type);
	assert_string_equal(a->event_id, b->event_id);
	assert_string_equal(a->order_id, b->order_id);
	assert_string_equal(a->user_id, b->user_id);
	assert_true(a->at_ms == b->at_ms);
	switch (a->type) {
	case EVENT_ORDER_PLACED:
		assert_items_equal(a, b);
		break;
	case EVENT_ORDER_STATUS:
		assert_status_equal(a, b);
		break;
	case EVENT_ORDER_READY:
		assert_status_equal(a, b);
		assert_items_equal(a, b);
		break;
	case EVENT_PICKUP_ALERT:
		assert_string_equal(a->message, b->message);
		break;
	case EVENT_CALLBACK_DELIVERY:
		assert_string_equal(a->delivery_id, b->delivery_id);
		assert_int_equal(a->outcome, b->outcome);
		assert_int_equal(a->attempts, b->attempts);
		assert_string_equal(a->message, b->message);
		break;
	}
}

/* Encodes ev, decodes the result and checks it is the same event; returns the JSON (caller frees). */
static char *
round_trip(const struct event *ev)
{
	struct event back;
	char err[256] = "";
	char *json = event_encode(ev);

	assert_non_null(json);
	if (event_decode(json, strlen(json), &back, err, sizeof(err)) != 0)
		fail_msg("re-decoding %s failed: %s", json, err);
	assert_event_equal(ev, &back);
	return json;
}

static int
decode_str(const char *s, struct event *ev, char *err, size_t errlen)
{
	return event_decode(s, strlen(s), ev, err, errlen);
}

static void
placed_event(struct event *ev)
{
	assert_int_equal(event_init(ev, EVENT_ORDER_PLACED, "ord-1", "alice"), 0);
	ev->at_ms = AT_MS;
	ev->n_items = 2;
	str_copy(ev->items[0].sku, sizeof(ev->items[0].sku), "margherita");
	ev->items[0].qty = 2;
	str_copy(ev->items[1].sku, sizeof(ev->items[1].sku), "diavola");
	ev->items[1].qty = 1;
}

static void
status_event(struct event *ev, enum order_status s)
{
	assert_int_equal(event_init(ev, EVENT_ORDER_STATUS, "ord-1", "alice"), 0);
	ev->at_ms = AT_MS;
	ev->status = s;
	ev->seq = (int)s;
	str_copy(ev->worker, sizeof(ev->worker), "exec-1");
}

/* The OrderReady an executor sends after ready: exec-1's ready of ord-1, with placed_event()'s items. */
static void
ready_event(struct event *ev)
{
	assert_int_equal(event_init(ev, EVENT_ORDER_READY, "ord-1", "alice"), 0);
	ev->at_ms = AT_MS;
	ev->status = STATUS_READY;
	ev->seq = STATUS_READY;
	str_copy(ev->worker, sizeof(ev->worker), "exec-1");
	ev->n_items = 2;
	str_copy(ev->items[0].sku, sizeof(ev->items[0].sku), "margherita");
	ev->items[0].qty = 2;
	str_copy(ev->items[1].sku, sizeof(ev->items[1].sku), "diavola");
	ev->items[1].qty = 1;
}

static void
alert_event(struct event *ev)
{
	assert_int_equal(event_init(ev, EVENT_PICKUP_ALERT, "ord-1", "alice"), 0);
	ev->at_ms = AT_MS;
	str_copy(ev->message, sizeof(ev->message), "Your pizza is ready for pickup");
}

/* Parses json and checks the fields every event carries. Returns the object (caller decrefs). */
static json_t *
check_common_json(const char *json, const char *type, const struct event *ev)
{
	json_error_t jerr;
	json_t *o = json_loads(json, JSON_REJECT_DUPLICATES, &jerr);

	if (o == NULL)
		fail_msg("encoder wrote invalid JSON (%s): %s", jerr.text, json);
	assert_true(json_is_object(o));
	assert_string_equal(json_string_value(json_object_get(o, "type")), type);
	assert_string_equal(json_string_value(json_object_get(o, "event_id")), ev->event_id);
	assert_string_equal(json_string_value(json_object_get(o, "order_id")), "ord-1");
	assert_string_equal(json_string_value(json_object_get(o, "user_id")), "alice");
	assert_string_equal(json_string_value(json_object_get(o, "at")), AT_TEXT);
	return o;
}

/* ---- round trips and the JSON produced ----------------------------------- */

static void
test_order_placed_round_trip(void **state)
{
	struct event ev;
	json_t *o, *items;
	char *json;

	(void)state;
	placed_event(&ev);
	json = round_trip(&ev);
	o = check_common_json(json, "OrderPlaced", &ev);
	items = json_object_get(o, "items");
	assert_true(json_is_array(items));
	assert_int_equal(json_array_size(items), 2);
	assert_string_equal(json_string_value(json_object_get(json_array_get(items, 0), "sku")), "margherita");
	assert_int_equal(json_integer_value(json_object_get(json_array_get(items, 0), "qty")), 2);
	assert_string_equal(json_string_value(json_object_get(json_array_get(items, 1), "sku")), "diavola");
	assert_int_equal(json_integer_value(json_object_get(json_array_get(items, 1), "qty")), 1);
	/* absent callback_url is left out, not written as "" */
	assert_null(json_object_get(o, "callback_url"));
	assert_null(json_object_get(o, "status"));
	assert_null(json_object_get(o, "message"));
	json_decref(o);
	free(json);
}

static void
test_order_placed_callback_round_trip(void **state)
{
	struct event ev;
	json_t *o;
	char *json;

	(void)state;
	placed_event(&ev);
	str_copy(ev.callback_url, sizeof(ev.callback_url), "https://example.com/hook?order=ord-1");
	json = round_trip(&ev);
	o = check_common_json(json, "OrderPlaced", &ev);
	assert_string_equal(json_string_value(json_object_get(o, "callback_url")),
	    "https://example.com/hook?order=ord-1");
	json_decref(o);
	free(json);
}

static void
test_order_status_round_trip(void **state)
{
	(void)state;
	for (int s = STATUS_ACCEPTED; s <= STATUS_READY; s++) {
		struct event ev;
		json_t *o;
		char *json;

		status_event(&ev, (enum order_status)s);
		json = round_trip(&ev);
		o = check_common_json(json, "OrderStatus", &ev);
		assert_string_equal(json_string_value(json_object_get(o, "status")),
		    event_status_name((enum order_status)s));
		assert_true(json_is_integer(json_object_get(o, "seq")));
		assert_int_equal(json_integer_value(json_object_get(o, "seq")), s);
		assert_string_equal(json_string_value(json_object_get(o, "worker")), "exec-1");
		assert_null(json_object_get(o, "items"));
		json_decref(o);
		free(json);
	}
}

/* OrderReady: the ready status's fields and the order's items, callback_url only when there is one. */
static void
test_order_ready_round_trip(void **state)
{
	struct event ev;
	json_t *o, *items;
	char *json;

	(void)state;
	ready_event(&ev);
	json = round_trip(&ev);
	o = check_common_json(json, "OrderReady", &ev);
	assert_string_equal(json_string_value(json_object_get(o, "status")), "ready");
	assert_true(json_is_integer(json_object_get(o, "seq")));
	assert_int_equal(json_integer_value(json_object_get(o, "seq")), 5);
	assert_string_equal(json_string_value(json_object_get(o, "worker")), "exec-1");
	items = json_object_get(o, "items");
	assert_true(json_is_array(items));
	assert_int_equal(json_array_size(items), 2);
	assert_string_equal(json_string_value(json_object_get(json_array_get(items, 0), "sku")), "margherita");
	assert_int_equal(json_integer_value(json_object_get(json_array_get(items, 0), "qty")), 2);
	assert_string_equal(json_string_value(json_object_get(json_array_get(items, 1), "sku")), "diavola");
	assert_int_equal(json_integer_value(json_object_get(json_array_get(items, 1), "qty")), 1);
	/* no callback_url: left out, not written as "" */
	assert_null(json_object_get(o, "callback_url"));
	assert_null(json_object_get(o, "message"));
	json_decref(o);
	free(json);

	ready_event(&ev);
	str_copy(ev.callback_url, sizeof(ev.callback_url), "https://example.com/hook?order=ord-1");
	json = round_trip(&ev);
	o = check_common_json(json, "OrderReady", &ev);
	assert_string_equal(json_string_value(json_object_get(o, "callback_url")),
	    "https://example.com/hook?order=ord-1");
	assert_string_equal(json_string_value(json_object_get(o, "status")), "ready");
	assert_int_equal(json_array_size(json_object_get(o, "items")), 2);
	json_decref(o);
	free(json);
}

static void
test_pickup_alert_round_trip(void **state)
{
	struct event ev;
	json_t *o;
	char *json;

	(void)state;
	alert_event(&ev);
	json = round_trip(&ev);
	o = check_common_json(json, "PickupAlert", &ev);
	assert_string_equal(json_string_value(json_object_get(o, "message")), "Your pizza is ready for pickup");
	json_decref(o);
	free(json);

	/* non-ASCII text survives */
	str_copy(ev.message, sizeof(ev.message), "Pizza fertig \xf0\x9f\x8d\x95 \xc3\xa0 bient\xc3\xb4t");
	free(round_trip(&ev));
}

static void
delivery_event(struct event *ev, enum delivery_outcome outcome)
{
	assert_int_equal(event_init(ev, EVENT_CALLBACK_DELIVERY, "ord-1", "alice"), 0);
	ev->at_ms = AT_MS;
	str_copy(ev->delivery_id, sizeof(ev->delivery_id), "dlv-1");
	ev->outcome = outcome;
	ev->attempts = outcome == DELIVERY_DELIVERED ? 1 : EVENT_MAX_ATTEMPTS;
	str_copy(ev->message, sizeof(ev->message), outcome == DELIVERY_DELIVERED ? "" : "HTTP 500");
}

static void
test_callback_delivery_round_trip(void **state)
{
	struct event ev;
	json_t *o;
	char *json;

	(void)state;
	delivery_event(&ev, DELIVERY_FAILED);
	json = round_trip(&ev);
	o = check_common_json(json, "CallbackDelivery", &ev);
	assert_string_equal(json_string_value(json_object_get(o, "delivery_id")), "dlv-1");
	assert_string_equal(json_string_value(json_object_get(o, "outcome")), "failed");
	assert_int_equal(json_integer_value(json_object_get(o, "attempts")), EVENT_MAX_ATTEMPTS);
	assert_string_equal(json_string_value(json_object_get(o, "detail")), "HTTP 500");
	json_decref(o);
	free(json);

	delivery_event(&ev, DELIVERY_DELIVERED);
	json = round_trip(&ev);
	o = check_common_json(json, "CallbackDelivery", &ev);
	assert_string_equal(json_string_value(json_object_get(o, "outcome")), "delivered");
	json_decref(o);
	free(json);

	assert_string_equal(event_outcome_name(DELIVERY_DELIVERED), "delivered");
	assert_string_equal(event_outcome_name(DELIVERY_FAILED), "failed");
	assert_null(event_outcome_name((enum delivery_outcome)0));
	assert_null(event_outcome_name((enum delivery_outcome)3));

	/* the encoder refuses what the decoder would */
	delivery_event(&ev, DELIVERY_FAILED);
	ev.attempts = 0;
	assert_null(event_encode(&ev));
	delivery_event(&ev, DELIVERY_FAILED);
	ev.attempts = EVENT_MAX_ATTEMPTS + 1;
	assert_null(event_encode(&ev));
	delivery_event(&ev, DELIVERY_FAILED);
	ev.outcome = 0;
	assert_null(event_encode(&ev));
	delivery_event(&ev, DELIVERY_FAILED);
	str_copy(ev.delivery_id, sizeof(ev.delivery_id), "d/1");
	assert_null(event_encode(&ev));
}

static void
test_at_keeps_milliseconds(void **state)
{
	struct event ev;
	json_t *o;
	char *json;

	(void)state;
	alert_event(&ev);
	ev.at_ms = AT_MS + 7;
	json = round_trip(&ev);
	o = json_loads(json, 0, NULL);
	assert_non_null(o);
	assert_string_equal(json_string_value(json_object_get(o, "at")), "2026-01-31T12:00:00.007Z");
	json_decref(o);
	free(json);
}

static void
test_event_init(void **state)
{
	struct event ev;
	int64_t before, after;

	(void)state;
	before = now_ms();
	assert_int_equal(event_init(&ev, EVENT_ORDER_STATUS, "ord-1", "alice"), 0);
	after = now_ms();
	assert_int_equal(ev.type, EVENT_ORDER_STATUS);
	assert_int_equal(strlen(ev.event_id), ID_LEN);
	assert_true(name_valid(ev.event_id));
	assert_string_equal(ev.order_id, "ord-1");
	assert_string_equal(ev.user_id, "alice");
	assert_true(ev.at_ms >= before && ev.at_ms <= after);

	assert_int_equal(event_init(&ev, EVENT_ORDER_PLACED, "ord/1", "alice"), -1);
	assert_int_equal(event_init(&ev, EVENT_ORDER_PLACED, "ord-1", ""), -1);
}

static void
test_names(void **state)
{
	(void)state;
	assert_string_equal(event_type_name(EVENT_ORDER_PLACED), "OrderPlaced");
	assert_string_equal(event_type_name(EVENT_ORDER_STATUS), "OrderStatus");
	assert_string_equal(event_type_name(EVENT_PICKUP_ALERT), "PickupAlert");
	assert_string_equal(event_type_name(EVENT_CALLBACK_DELIVERY), "CallbackDelivery");
	assert_string_equal(event_type_name(EVENT_ORDER_READY), "OrderReady");
	assert_null(event_type_name((enum event_type)0));
	assert_null(event_type_name((enum event_type)(EVENT_ORDER_READY + 1)));
	assert_string_equal(event_status_name(STATUS_ACCEPTED), "accepted");
	assert_string_equal(event_status_name(STATUS_PREP), "prep");
	assert_string_equal(event_status_name(STATUS_BAKE), "bake");
	assert_string_equal(event_status_name(STATUS_OVEN), "oven");
	assert_string_equal(event_status_name(STATUS_READY), "ready");
	assert_null(event_status_name((enum order_status)0));
	assert_null(event_status_name((enum order_status)6));
	for (int s = STATUS_ACCEPTED; s <= STATUS_READY; s++)
		assert_int_equal(event_status_from_name(event_status_name((enum order_status)s)), s);
	assert_int_equal(event_status_from_name("placed"), 0);
	assert_int_equal(event_status_from_name("Ready"), 0);
	assert_int_equal(event_status_from_name(""), 0);
}

/* ---- the encoder refuses what the decoder would refuse ------------------- */

static void
test_encode_refuses_invalid(void **state)
{
	struct event ev;

	(void)state;
	status_event(&ev, STATUS_BAKE);
	ev.seq = 2;
	assert_null(event_encode(&ev));
	status_event(&ev, STATUS_BAKE);
	ev.status = 0;
	ev.seq = 0;
	assert_null(event_encode(&ev));
	status_event(&ev, STATUS_BAKE);
	ev.worker[0] = '\0';
	assert_null(event_encode(&ev));
	status_event(&ev, STATUS_BAKE);
	str_copy(ev.worker, sizeof(ev.worker), "exec 1");
	assert_null(event_encode(&ev));
	status_event(&ev, STATUS_BAKE);
	str_copy(ev.order_id, sizeof(ev.order_id), "a/b");
	assert_null(event_encode(&ev));
	status_event(&ev, STATUS_BAKE);
	ev.event_id[0] = '\0';
	assert_null(event_encode(&ev));
	status_event(&ev, STATUS_BAKE);
	ev.at_ms = -1;
	assert_null(event_encode(&ev));
	status_event(&ev, STATUS_BAKE);
	ev.type = (enum event_type)9;
	assert_null(event_encode(&ev));

	placed_event(&ev);
	ev.n_items = 0;
	assert_null(event_encode(&ev));
	placed_event(&ev);
	ev.n_items = EVENT_MAX_ITEMS + 1;
	assert_null(event_encode(&ev));
	placed_event(&ev);
	ev.items[1].qty = 0;
	assert_null(event_encode(&ev));
	placed_event(&ev);
	ev.items[0].qty = EVENT_MAX_QTY + 1;
	assert_null(event_encode(&ev));
	placed_event(&ev);
	str_copy(ev.items[1].sku, sizeof(ev.items[1].sku), "calzone");
	assert_null(event_encode(&ev));

	/* an OrderReady is a ready status with the order's items */
	ready_event(&ev);
	ev.n_items = 0;
	assert_null(event_encode(&ev));
	ready_event(&ev);
	ev.status = STATUS_OVEN;
	ev.seq = STATUS_OVEN;
	assert_null(event_encode(&ev));
	ready_event(&ev);
	ev.seq = STATUS_OVEN;
	assert_null(event_encode(&ev));
	ready_event(&ev);
	ev.worker[0] = '\0';
	assert_null(event_encode(&ev));
	ready_event(&ev);
	str_copy(ev.items[0].sku, sizeof(ev.items[0].sku), "calzone");
	assert_null(event_encode(&ev));
	ready_event(&ev);
	ev.items[1].qty = EVENT_MAX_QTY + 1;
	assert_null(event_encode(&ev));

	alert_event(&ev);
	ev.message[0] = '\0';
	assert_null(event_encode(&ev));
}

/* ---- boundaries built in code -------------------------------------------- */

static void
test_boundaries_in_code(void **state)
{
	struct event ev;
	char *json;

	(void)state;
	/* 64-character ids */
	placed_event(&ev);
	memset(ev.order_id, 'o', NAME_MAX_LEN);
	ev.order_id[NAME_MAX_LEN] = '\0';
	memset(ev.user_id, 'u', NAME_MAX_LEN);
	ev.user_id[NAME_MAX_LEN] = '\0';
	memset(ev.event_id, 'E', NAME_MAX_LEN);
	ev.event_id[NAME_MAX_LEN] = '\0';
	free(round_trip(&ev));

	/* 20 items, qty 1 and 99 */
	placed_event(&ev);
	ev.n_items = EVENT_MAX_ITEMS;
	for (size_t i = 0; i < ev.n_items; i++) {
		str_copy(ev.items[i].sku, sizeof(ev.items[i].sku), i % 2 ? "hawaii" : "funghi");
		ev.items[i].qty = i % 2 ? EVENT_MAX_QTY : 1;
	}
	free(round_trip(&ev));

	/* a message of exactly 256 characters */
	alert_event(&ev);
	memset(ev.message, 'm', EVENT_MESSAGE_MAX);
	ev.message[EVENT_MESSAGE_MAX] = '\0';
	json = round_trip(&ev);
	free(json);

	/* a callback_url of exactly 512 characters */
	placed_event(&ev);
	memset(ev.callback_url, 'a', EVENT_URL_MAX);
	memcpy(ev.callback_url, "https://", 8);
	ev.callback_url[EVENT_URL_MAX] = '\0';
	free(round_trip(&ev));
}

static void
test_payload_size_limit(void **state)
{
	struct event ev;
	char err[256] = "";
	const char *base = "{\"type\":\"PickupAlert\",\"event_id\":\"e1\",\"order_id\":\"o1\","
			   "\"user_id\":\"u1\",\"at\":\"" AT_TEXT "\",\"message\":\"hi\"}";
	size_t blen = strlen(base);
	char *buf = malloc(EVENT_MAX_BYTES + 2);

	(void)state;
	assert_non_null(buf);
	/* a valid event padded with whitespace to exactly the limit is accepted */
	memset(buf, ' ', EVENT_MAX_BYTES + 1);
	memcpy(buf, base, blen);
	buf[EVENT_MAX_BYTES + 1] = '\0';
	if (event_decode(buf, EVENT_MAX_BYTES, &ev, err, sizeof(err)) != 0)
		fail_msg("payload of exactly EVENT_MAX_BYTES refused: %s", err);
	assert_string_equal(ev.message, "hi");
	/* one byte more is refused unread */
	assert_int_equal(event_decode(buf, EVENT_MAX_BYTES + 1, &ev, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "65537 bytes"));
	assert_non_null(strstr(err, "over the 65536 byte limit"));
	free(buf);
}

static void
test_decode_uses_len_not_nul(void **state)
{
	struct event ev;
	char err[256] = "";
	const char *s = "{\"type\":\"PickupAlert\",\"event_id\":\"e1\",\"order_id\":\"o1\","
			"\"user_id\":\"u1\",\"at\":\"" AT_TEXT "\",\"message\":\"hi\"}";
	char *buf = malloc(strlen(s) + 8);

	(void)state;
	assert_non_null(buf);
	/* the payload is not NUL-terminated: trailing bytes past len must be ignored */
	memcpy(buf, s, strlen(s));
	memcpy(buf + strlen(s), "garbage", 7);
	assert_int_equal(event_decode(buf, strlen(s), &ev, err, sizeof(err)), 0);
	assert_string_equal(ev.message, "hi");
	/* a prefix of it is not a whole event */
	assert_int_equal(event_decode(buf, strlen(s) - 1, &ev, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "malformed JSON"));
	free(buf);
}

static void
test_decoded_fields(void **state)
{
	struct event ev;
	char err[256] = "";

	(void)state;
	assert_int_equal(decode_str("{\"type\":\"OrderPlaced\",\"event_id\":\"e1\",\"order_id\":\"o1\","
				    "\"user_id\":\"u1\",\"at\":\"" AT_TEXT "\",\"items\":[{\"sku\":\"funghi\","
				    "\"qty\":3}],\"callback_url\":\"https://x.example/cb\"}",
			     &ev, err, sizeof(err)),
	    0);
	assert_int_equal(ev.type, EVENT_ORDER_PLACED);
	assert_string_equal(ev.event_id, "e1");
	assert_string_equal(ev.order_id, "o1");
	assert_string_equal(ev.user_id, "u1");
	assert_true(ev.at_ms == AT_MS);
	assert_int_equal(ev.n_items, 1);
	assert_string_equal(ev.items[0].sku, "funghi");
	assert_int_equal(ev.items[0].qty, 3);
	assert_string_equal(ev.callback_url, "https://x.example/cb");

	assert_int_equal(decode_str("{\"type\":\"OrderStatus\",\"event_id\":\"e1\",\"order_id\":\"o1\","
				    "\"user_id\":\"u1\",\"at\":\"2024-02-29T23:59:59.999Z\",\"status\":\"oven\","
				    "\"seq\":4,\"worker\":\"w-1\"}",
			     &ev, err, sizeof(err)),
	    0);
	assert_int_equal(ev.type, EVENT_ORDER_STATUS);
	assert_int_equal(ev.status, STATUS_OVEN);
	assert_int_equal(ev.seq, 4);
	assert_string_equal(ev.worker, "w-1");
	assert_true(ev.at_ms == INT64_C(1709251199999));

	assert_int_equal(decode_str("{\"type\":\"OrderReady\",\"event_id\":\"e5\",\"order_id\":\"o1\","
				    "\"user_id\":\"u1\",\"at\":\"" AT_TEXT "\",\"status\":\"ready\",\"seq\":5,"
				    "\"worker\":\"exec-2\",\"items\":[{\"sku\":\"funghi\",\"qty\":3},"
				    "{\"sku\":\"hawaii\",\"qty\":1}],\"callback_url\":\"http://x.example/cb\"}",
			     &ev, err, sizeof(err)),
	    0);
	assert_int_equal(ev.type, EVENT_ORDER_READY);
	assert_string_equal(ev.event_id, "e5");
	assert_string_equal(ev.order_id, "o1");
	assert_string_equal(ev.user_id, "u1");
	assert_true(ev.at_ms == AT_MS);
	assert_int_equal(ev.status, STATUS_READY);
	assert_int_equal(ev.seq, 5);
	assert_string_equal(ev.worker, "exec-2");
	assert_int_equal(ev.n_items, 2);
	assert_string_equal(ev.items[0].sku, "funghi");
	assert_int_equal(ev.items[0].qty, 3);
	assert_string_equal(ev.items[1].sku, "hawaii");
	assert_int_equal(ev.items[1].qty, 1);
	assert_string_equal(ev.callback_url, "http://x.example/cb");
}

/* ---- event_items_from_json ------------------------------------------------------ */

static int
items_str(const char *json, struct item *items, size_t *n, char *err, size_t errlen)
{
	json_t *arr = json_loads(json, JSON_DECODE_ANY, NULL);
	int rc;

	assert_non_null(arr);
	rc = event_items_from_json(arr, items, n, err, errlen);
	json_decref(arr);
	return rc;
}

static void
test_items_from_json(void **state)
{
	struct item items[EVENT_MAX_ITEMS];
	size_t n = 0;
	char err[256];

	(void)state;
	assert_int_equal(items_str("[{\"sku\":\"marinara\",\"qty\":1},{\"sku\":\"pepperoni\",\"qty\":99}]", items,
			     &n, err, sizeof(err)),
	    0);
	assert_int_equal(n, 2);
	assert_string_equal(items[0].sku, "marinara");
	assert_int_equal(items[0].qty, 1);
	assert_string_equal(items[1].sku, "pepperoni");
	assert_int_equal(items[1].qty, 99);

	err[0] = '\0';
	assert_int_equal(items_str("[{\"sku\":\"marinara\",\"qty\":1},{\"sku\":\"pepperoni\",\"qty\":0}]", items,
			     &n, err, sizeof(err)),
	    -1);
	assert_non_null(strstr(err, "items[1].qty"));

	err[0] = '\0';
	assert_int_equal(items_str("[{\"sku\":\"marinara\",\"qty\":1},{\"sku\":\"marinara\",\"qty\":1},"
				   "{\"sku\":\"pizza-al-ananas\",\"qty\":1}]",
			     items, &n, err, sizeof(err)),
	    -1);
	assert_non_null(strstr(err, "items[2].sku"));
	assert_non_null(strstr(err, "pizza-al-ananas"));

	/* a long unknown sku is cut in the message, but never inside a UTF-8 character */
	for (int pad = 0; pad < 4; pad++) {
		char req[256];

		snprintf(req, sizeof(req), "[{\"sku\":\"%.*s%s\",\"qty\":1}]", pad, "xxx",
		    "\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9"
		    "\u00e9\u00e9\u00e9\u00e9\u00e9\u20ac\u20ac\u20ac");
		err[0] = '\0';
		assert_int_equal(items_str(req, items, &n, err, sizeof(err)), -1);
		assert_non_null(strstr(err, "items[0].sku"));
		if (!utf8_valid(err))
			fail_msg("error for a %d-byte prefix is not valid UTF-8: %s", pad, err);
	}

	err[0] = '\0';
	assert_int_equal(items_str("[{\"sku\":\"marinara\",\"qty\":1}, 5]", items, &n, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "items[1]"));

	err[0] = '\0';
	assert_int_equal(items_str("{\"sku\":\"marinara\",\"qty\":1}", items, &n, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "'items'"));

	err[0] = '\0';
	assert_int_equal(event_items_from_json(NULL, items, &n, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "missing field 'items'"));
}

/* ---- data-driven cases ---------------------------------------------------- */

static void
test_invalid_payloads(void **state)
{
	char **names;
	size_t n = list_cases("invalid", &names), failures = 0;

	(void)state;
	/* a missing or emptied directory must not pass silently */
	assert_true(n >= 60);
	for (size_t i = 0; i < n; i++) {
		char path[PATH_MAX], file[NAME_MAX + 1], err[512] = "";
		char *payload, *reason;
		size_t plen, rlen;
		struct event ev;

		snprintf(file, sizeof(file), "%s.json", names[i]);
		events_path(path, sizeof(path), "invalid", file);
		payload = slurp(path, &plen);
		assert_non_null(payload);
		snprintf(file, sizeof(file), "%s.reason", names[i]);
		events_path(path, sizeof(path), "invalid", file);
		if ((reason = slurp(path, &rlen)) == NULL)
			fail_msg("invalid case %s has no .reason file", names[i]);
		while (rlen > 0 && (reason[rlen - 1] == '\n' || reason[rlen - 1] == '\r'))
			reason[--rlen] = '\0';
		if (rlen == 0)
			fail_msg("invalid case %s has an empty .reason file", names[i]);

		if (event_decode(payload, plen, &ev, err, sizeof(err)) == 0) {
			print_error("invalid/%s: accepted, expected an error containing \"%s\"\n", names[i],
			    reason);
			failures++;
		} else if (strstr(err, reason) == NULL) {
			print_error("invalid/%s: error \"%s\" does not contain \"%s\"\n", names[i], err, reason);
			failures++;
		} else if (strchr(err, '\n') != NULL) {
			print_error("invalid/%s: error is not one line: \"%s\"\n", names[i], err);
			failures++;
		} else if (!utf8_valid(err)) {
			/* the reason goes into JSON (dead letters, replies): it must stay UTF-8 */
			print_error("invalid/%s: error is not valid UTF-8: \"%s\"\n", names[i], err);
			failures++;
		}
		free(payload);
		free(reason);
	}
	free_cases(names, n);
	assert_int_equal(failures, 0);
}

static void
test_valid_payloads(void **state)
{
	char **names;
	size_t n = list_cases("valid", &names), failures = 0;

	(void)state;
	assert_true(n >= 10);
	for (size_t i = 0; i < n; i++) {
		char path[PATH_MAX], file[NAME_MAX + 1], err[512] = "";
		char *payload, *json;
		size_t plen;
		struct event ev, back;

		snprintf(file, sizeof(file), "%s.json", names[i]);
		events_path(path, sizeof(path), "valid", file);
		payload = slurp(path, &plen);
		assert_non_null(payload);
		if (event_decode(payload, plen, &ev, err, sizeof(err)) != 0) {
			print_error("valid/%s: refused: %s\n", names[i], err);
			failures++;
			free(payload);
			continue;
		}
		/* what was decoded encodes again, to the same event */
		if ((json = event_encode(&ev)) == NULL) {
			print_error("valid/%s: decoded but event_encode() refused it\n", names[i]);
			failures++;
		} else if (event_decode(json, strlen(json), &back, err, sizeof(err)) != 0) {
			print_error("valid/%s: re-encoded form refused: %s\n", names[i], err);
			failures++;
		} else
			assert_event_equal(&ev, &back);
		free(json);
		free(payload);
	}
	free_cases(names, n);
	assert_int_equal(failures, 0);
}

/* Spot checks that the boundary files decode to what they say. */
static void
test_valid_boundary_files(void **state)
{
	static const struct {
		const char *name;
		size_t n_items, id_len, msg_len;
	} want[] = {
		{ "items_20", 20, 0, 0 },
		{ "ids_64", 1, 64, 0 },
		{ "message_256", 0, 0, 256 },
	};
	struct event ev;
	char err[256];

	(void)state;
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		char path[PATH_MAX], file[NAME_MAX + 1], *payload;
		size_t plen;

		snprintf(file, sizeof(file), "%s.json", want[i].name);
		events_path(path, sizeof(path), "valid", file);
		payload = slurp(path, &plen);
		assert_non_null(payload);
		assert_int_equal(event_decode(payload, plen, &ev, err, sizeof(err)), 0);
		if (want[i].n_items)
			assert_int_equal(ev.n_items, want[i].n_items);
		if (want[i].id_len) {
			assert_int_equal(strlen(ev.event_id), want[i].id_len);
			assert_int_equal(strlen(ev.order_id), want[i].id_len);
			assert_int_equal(strlen(ev.user_id), want[i].id_len);
		}
		if (want[i].msg_len)
			assert_int_equal(strlen(ev.message), want[i].msg_len);
		free(payload);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_order_placed_round_trip),
		cmocka_unit_test(test_order_placed_callback_round_trip),
		cmocka_unit_test(test_order_status_round_trip),
		cmocka_unit_test(test_order_ready_round_trip),
		cmocka_unit_test(test_pickup_alert_round_trip),
		cmocka_unit_test(test_callback_delivery_round_trip),
		cmocka_unit_test(test_at_keeps_milliseconds),
		cmocka_unit_test(test_event_init),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_encode_refuses_invalid),
		cmocka_unit_test(test_boundaries_in_code),
		cmocka_unit_test(test_payload_size_limit),
		cmocka_unit_test(test_decode_uses_len_not_nul),
		cmocka_unit_test(test_decoded_fields),
		cmocka_unit_test(test_items_from_json),
		cmocka_unit_test(test_invalid_payloads),
		cmocka_unit_test(test_valid_payloads),
		cmocka_unit_test(test_valid_boundary_files),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * The asynchronous HTTP API against the real servers: 202 at once, the same
 * journey as an MQTT order, idempotency keys, every bad-input answer, the
 * history endpoints, and signed callbacks with retries.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <pthread.h>
#include <signal.h>
#include <strings.h>

#include "harness.h"
#include "httpd.h"
#include "sign.h"
#include "token.h"
#include "util.h"

static struct stack st;

/* A callback receiver the test controls: records every POST, fails the first `fail` of them. */
static struct receiver {
	struct httpd *h;
	pthread_mutex_t lock;
	int fail;
	int hits;
	char body[8][1024];
	char sig[8][SIGN_HEADER_MAX];
	char delivery[8][NAME_MAX_LEN + 1];
	int64_t at_ms[8];
} rcv;

static void
on_callback(void *arg, const struct http_req *req, struct http_resp *resp)
{
	struct receiver *r = arg;
	const char *sig = http_header(req, "Pizza-Signature"), *del = http_header(req, "Pizza-Delivery");
	int n;

	pthread_mutex_lock(&r->lock);
	n = r->hits++;
	if (n < 8) {
		snprintf(r->body[n], sizeof(r->body[n]), "%s", req->body);
		snprintf(r->sig[n], sizeof(r->sig[n]), "%s", sig != NULL ? sig : "");
		snprintf(r->delivery[n], sizeof(r->delivery[n]), "%s", del != NULL ? del : "");
		r->at_ms[n] = mono_ms();
	}
	if (n < r->fail)
		http_error(resp, 503, "busy", "try later");
	else
		http_json(resp, 200, json_pack("{s:b}", "ok", 1));
	pthread_mutex_unlock(&r->lock);
}

static int
hits(void)
{
	int n;

	pthread_mutex_lock(&rcv.lock);
	n = rcv.hits;
	pthread_mutex_unlock(&rcv.lock);
	return n;
}

static int
setup(void **state)
{
	char err[256];

	(void)state;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	pthread_mutex_init(&rcv.lock, NULL);
	if ((rcv.h = httpd_start("127.0.0.1", 0, 4096, on_callback, &rcv, err, sizeof(err))) == NULL)
		return -1;
	if (h_stack_start(&st, "http") != 0 || h_observer(&st) != 0)
		return -1;
	/* the test's receiver is on loopback, which callbacks may not reach unless allowed */
	if (h_service(&st, "order-service", "order-service", "--callback-allow", "127.0.0.1", NULL) < 0 ||
	    h_service(&st, "order-history", "order-history", NULL) < 0 ||
	    h_service(&st, "notifier", "notifier", "--callback-backoff-ms", "200", "--callback-attempts", "4",
		"--callback-allow", "127.0.0.1", NULL) < 0 ||
	    h_service(&st, "exec-1", "order-executor", "--id", "exec-1", "--stage-ms", "20", NULL) < 0)
		return -1;
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	int rc = h_stack_stop(&st);
	httpd_stop(rcv.h);
	curl_global_cleanup();
	return rc;
}

struct reply {
	long status;
	char *body;
	char location[256];
	char allow[64];
	char ctype[128];
	int64_t ms;
};

/* The user the next calls act as (a bearer token is sent for them), or NULL for none. */
static const char *acting;

static void
as(const char *user)
{
	acting = user;
}

/* One request to order-service; headers NULL-ended (may be NULL); body may be NULL. */
static struct reply
call(const char *method, const char *path, const char *body, ...)
{
	struct reply r;
	struct h_reply hr;
	const char *headers[16];
	char url[512], auth[TOKEN_MAX + 32];
	int nh = 0;
	va_list ap;
	int64_t t0;

	memset(&r, 0, sizeof(r));
	snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", st.http_port, path);
	va_start(ap, body);
	while (nh < 14 && (headers[nh] = va_arg(ap, const char *)) != NULL)
		nh++;
	va_end(ap);
	if (acting != NULL) {
		snprintf(auth, sizeof(auth), "Authorization: Bearer %s", h_token(&st, acting));
		headers[nh++] = auth;
	}
	headers[nh] = NULL;
	t0 = mono_ms();
	r.status = h_http(method, url, headers, body, &hr);
	r.ms = mono_ms() - t0;
	h_reply_header(&hr, "Location", r.location, sizeof(r.location));
	h_reply_header(&hr, "Allow", r.allow, sizeof(r.allow));
	h_reply_header(&hr, "Content-Type", r.ctype, sizeof(r.ctype));
	r.body = hr.body; /* handed over */
	free(hr.headers);
	return r;
}

#define JSON_CT "Content-Type: application/json"

/* The answer's error code must be code, with a detail mentioning what. */
static void
assert_error(struct reply *r, long status, const char *code, const char *what)
{
	json_t *o = json_loads(r->body, 0, NULL);

	if (r->status != status || o == NULL)
		fprintf(stderr, "got HTTP %ld: %s\n", r->status, r->body);
	assert_int_equal(r->status, status);
	assert_non_null(o);
	assert_string_equal(json_string_value(json_object_get(o, "error")), code);
	assert_non_null(json_string_value(json_object_get(o, "detail")));
	if (what != NULL) {
		if (strstr(json_string_value(json_object_get(o, "detail")), what) == NULL)
			fprintf(stderr, "detail: %s\n", json_string_value(json_object_get(o, "detail")));
		assert_non_null(strstr(json_string_value(json_object_get(o, "detail")), what));
	}
	assert_non_null(strstr(r->ctype, "application/json"));
	json_decref(o);
	free(r->body);
}

static void
order_id_of(struct reply *r, char *id, size_t n)
{
	json_t *o = json_loads(r->body, 0, NULL);

	assert_non_null(json_string_value(json_object_get(o, "order_id")));
	snprintf(id, n, "%s", json_string_value(json_object_get(o, "order_id")));
	json_decref(o);
}

static void
test_post_answers_202_and_order_completes(void **state)
{
	char id[NAME_MAX_LEN + 1], loc[300];
	struct reply r;
	json_t *o, *tl;

	(void)state;
	as("alice");
	r = call("POST", "/v1/orders", "{\"user_id\":\"alice\",\"items\":[{\"sku\":\"margherita\",\"qty\":1}]}", JSON_CT, NULL);
	assert_int_equal(r.status, 202);
	order_id_of(&r, id, sizeof(id));
	snprintf(loc, sizeof(loc), "/v1/orders/%s", id);
	assert_string_equal(r.location, loc);
	o = json_loads(r.body, 0, NULL);
	assert_string_equal(json_string_value(json_object_get(o, "status")), "accepted");
	assert_string_equal(json_string_value(json_object_get(o, "status_url")), loc);
	json_decref(o);
	free(r.body);

	/*
	 * the same journey as an MQTT order: OrderPlaced, the executor's accepted
	 * to order-service, the four kitchen stages on the phone's topic (the
	 * 202 was its accepted), one alert
	 */
	assert_int_equal(h_wait_events(&st, id, EVENT_ORDER_PLACED, 0, 1, 5000), 1);
	assert_int_equal(h_wait_events(&st, id, EVENT_PICKUP_ALERT, 0, 1, 10000), 1);
	assert_int_equal(h_count_events_on(&st, TOPIC_ACCEPTED, id, EVENT_ORDER_STATUS, STATUS_ACCEPTED), 1);
	assert_int_equal(h_count_events_on(&st, TOPIC_ALL_STATUS, id, EVENT_ORDER_STATUS, 0), 4);
	assert_int_equal(h_count_events_on(&st, TOPIC_ALL_STATUS, id, EVENT_ORDER_STATUS, STATUS_ACCEPTED), 0);

	/* and the Location answers with the whole timeline */
	for (int i = 0; i < 50; i++) {
		r = call("GET", loc, NULL, NULL);
		o = json_loads(r.body, 0, NULL);
		tl = json_object_get(o, "timeline");
		if (r.status == 200 && json_array_size(tl) == 5)
			break;
		json_decref(o);
		free(r.body);
		o = NULL;
		h_sleep(100);
	}
	assert_non_null(o);
	assert_string_equal(json_string_value(json_object_get(o, "status")), "ready");
	assert_string_equal(json_string_value(json_object_get(o, "user_id")), "alice");
	/* accepted (by order-service, when it was placed), then the kitchen's four, in order */
	{
		static const char *const stages[] = { "accepted", "prep", "bake", "oven", "ready" };
		const char *placed_at = json_string_value(json_object_get(o, "placed_at"));
		json_t *first = json_array_get(tl, 0);

		assert_int_equal(json_array_size(tl), 5);
		for (size_t k = 0; k < 5; k++) {
			json_t *e = json_array_get(tl, k);
			assert_string_equal(json_string_value(json_object_get(e, "status")), stages[k]);
			assert_int_equal(json_integer_value(json_object_get(e, "seq")), (json_int_t)k + 1);
			assert_non_null(json_string_value(json_object_get(e, "at")));
		}
		assert_non_null(placed_at);
		assert_string_equal(json_string_value(json_object_get(first, "at")), placed_at);
		assert_string_equal(json_string_value(json_object_get(first, "worker")), "order-service");
		/* the kitchen's stages name the executor */
		assert_int_equal(strncmp(json_string_value(json_object_get(json_array_get(tl, 1), "worker")), "exec-", 5),
		    0);
	}
	json_decref(o);
	free(r.body);
}

static void
test_idempotency_key_replays_and_conflicts(void **state)
{
	const char *body = "{\"user_id\":\"bob\",\"items\":[{\"sku\":\"funghi\",\"qty\":2}]}";
	char first[NAME_MAX_LEN + 1], second[NAME_MAX_LEN + 1];
	struct reply r;

	(void)state;
	as("bob");
	r = call("POST", "/v1/orders", body, JSON_CT, "Idempotency-Key: retry-me-1", NULL);
	assert_int_equal(r.status, 202);
	order_id_of(&r, first, sizeof(first));
	free(r.body);
	/* the same request again (the client's retry): the same order, 202 again */
	r = call("POST", "/v1/orders", body, JSON_CT, "Idempotency-Key: retry-me-1", NULL);
	assert_int_equal(r.status, 202);
	order_id_of(&r, second, sizeof(second));
	free(r.body);
	assert_string_equal(first, second);
	/* key order in JSON does not make it another request */
	r = call("POST", "/v1/orders", "{\"items\":[{\"qty\":2,\"sku\":\"funghi\"}],\"user_id\":\"bob\"}", JSON_CT,
	    "Idempotency-Key: retry-me-1", NULL);
	assert_int_equal(r.status, 202);
	free(r.body);
	/* the same key with another body */
	r = call("POST", "/v1/orders", "{\"user_id\":\"bob\",\"items\":[{\"sku\":\"funghi\",\"qty\":3}]}", JSON_CT,
	    "Idempotency-Key: retry-me-1", NULL);
	assert_error(&r, 422, "idempotency_conflict", "Idempotency-Key");

	/* one OrderPlaced on the bus for the replays, one journey */
	assert_int_equal(h_wait_events(&st, first, EVENT_PICKUP_ALERT, 0, 1, 10000), 1);
	h_sleep(300);
	assert_int_equal(h_count_events(&st, first, EVENT_ORDER_PLACED, 0), 1);
	assert_int_equal(h_sql_int(&st, "order-service", "SELECT count(*) FROM orders WHERE user_id = 'bob'", NULL), 1);

	/* the key survives a restart of order-service */
	assert_int_equal(h_restart(&st, "order-service", SIGTERM), 0);
	r = call("POST", "/v1/orders", body, JSON_CT, "Idempotency-Key: retry-me-1", NULL);
	assert_int_equal(r.status, 202);
	order_id_of(&r, second, sizeof(second));
	free(r.body);
	assert_string_equal(first, second);
}

/* One of test_concurrent_orders's clients: POSTs body with its headers and keeps the answer. */
struct racer {
	pthread_t t;
	const char *headers[4];
	char body[200];
	long status;
	char order_id[NAME_MAX_LEN + 1];
};

static void *
race(void *arg)
{
	struct racer *rc = arg;
	struct h_reply hr;
	char url[128];
	json_t *o;

	snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/orders", st.http_port);
	rc->status = h_http("POST", url, rc->headers, rc->body, &hr);
	if ((o = json_loads(hr.body != NULL ? hr.body : "", 0, NULL)) != NULL &&
	    json_string_value(json_object_get(o, "order_id")) != NULL)
		snprintf(rc->order_id, sizeof(rc->order_id), "%s", json_string_value(json_object_get(o, "order_id")));
	json_decref(o);
	free(hr.body);
	free(hr.headers);
	return NULL;
}

/*
 * Orders arriving together are recorded together (one transaction for all
 * that arrived during the previous commit): each still gets its own answer,
 * a repeated Idempotency-Key inside one burst still makes one order, and
 * every order is published once.
 */
static void
test_concurrent_orders(void **state)
{
	enum { N = 24, SAME = 12 };
	struct racer r[N];
	char auth[TOKEN_MAX + 32];

	(void)state;
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", h_token(&st, "erin"));
	memset(r, 0, sizeof(r));
	for (int i = 0; i < N; i++) {
		r[i].headers[0] = JSON_CT;
		r[i].headers[1] = auth;
		r[i].headers[2] = i < SAME ? "Idempotency-Key: burst-1" : NULL;
		snprintf(r[i].body, sizeof(r[i].body), "{\"items\":[{\"sku\":\"margherita\",\"qty\":%d}]}",
		    i < SAME ? 1 : 1 + i % 5);
		assert_int_equal(pthread_create(&r[i].t, NULL, race, &r[i]), 0);
	}
	for (int i = 0; i < N; i++)
		pthread_join(r[i].t, NULL);
	for (int i = 0; i < N; i++) {
		assert_int_equal(r[i].status, 202);
		assert_true(name_valid(r[i].order_id));
		/* the keyed requests share one order; every other one is its own */
		for (int j = 0; j < i; j++)
			assert_true((strcmp(r[i].order_id, r[j].order_id) == 0) == (i < SAME && j < SAME));
	}
	assert_int_equal(h_sql_int(&st, "order-service", "SELECT count(*) FROM orders WHERE user_id = 'erin'", NULL),
	    1 + N - SAME);
	for (int i = SAME - 1; i < N; i++)
		assert_int_equal(h_wait_events(&st, r[i].order_id, EVENT_ORDER_PLACED, 0, 1, 10000), 1);
	h_sleep(300);
	for (int i = SAME - 1; i < N; i++)
		assert_int_equal(h_count_events(&st, r[i].order_id, EVENT_ORDER_PLACED, 0), 1);
}

static void
test_bad_input_gets_clear_errors(void **state)
{
	char big[20000];
	struct reply r;
	int64_t orders_before = h_sql_int(&st, "order-service", "SELECT count(*) FROM orders", NULL);

	(void)state;
	as("alice");
	r = call("POST", "/v1/orders", "{\"user_id\":\"alice\",", JSON_CT, NULL);
	assert_error(&r, 400, "invalid_json", "malformed JSON");
	r = call("POST", "/v1/orders", "[1,2]", JSON_CT, NULL);
	assert_error(&r, 400, "invalid_json", "object");
	r = call("POST", "/v1/orders", "{\"user_id\":\"alice\",\"items\":[{\"sku\":\"margherita\",\"qty\":1}]}",
	    "Content-Type: text/plain", NULL);
	assert_error(&r, 415, "unsupported_media_type", "application/json");
	r = call("POST", "/v1/orders", "{\"user_id\":\"alice\",\"items\":[{\"sku\":\"sushi\",\"qty\":1}]}", JSON_CT, NULL);
	assert_error(&r, 422, "invalid_field", "items[0].sku");
	r = call("POST", "/v1/orders", "{\"user_id\":\"alice\",\"items\":[{\"sku\":\"margherita\",\"qty\":100}]}", JSON_CT, NULL);
	assert_error(&r, 422, "invalid_field", "items[0].qty");
	r = call("POST", "/v1/orders", "{\"user_id\":\"alice\",\"items\":[{\"sku\":\"margherita\",\"qty\":0}]}", JSON_CT, NULL);
	assert_error(&r, 422, "invalid_field", "items[0].qty");
	r = call("POST", "/v1/orders", "{\"user_id\":\"alice\",\"items\":[{\"sku\":\"margherita\",\"qty\":\"1\"}]}", JSON_CT, NULL);
	assert_error(&r, 422, "invalid_field", "items[0].qty");
	r = call("POST", "/v1/orders", "{\"user_id\":\"alice\",\"items\":\"margherita\"}", JSON_CT, NULL);
	assert_error(&r, 422, "invalid_field", "items");
	r = call("POST", "/v1/orders", "{\"user_id\":\"alice\",\"items\":[]}", JSON_CT, NULL);
	assert_error(&r, 422, "invalid_field", "items");
	{
		char many[4096];
		size_t o = (size_t)snprintf(many, sizeof(many), "{\"user_id\":\"alice\",\"items\":[");
		for (int i = 0; i < 21; i++)
			o += (size_t)snprintf(many + o, sizeof(many) - o, "%s{\"sku\":\"funghi\",\"qty\":1}", i ? "," : "");
		snprintf(many + o, sizeof(many) - o, "]}");
		r = call("POST", "/v1/orders", many, JSON_CT, NULL);
		assert_error(&r, 422, "invalid_field", "more than 20");
	}
	r = call("POST", "/v1/orders", "{\"user_id\":\"al/ice\",\"items\":[{\"sku\":\"margherita\",\"qty\":1}]}", JSON_CT, NULL);
	assert_error(&r, 422, "invalid_field", "user_id");
	r = call("POST", "/v1/orders", "{\"user_id\":7,\"items\":[{\"sku\":\"margherita\",\"qty\":1}]}", JSON_CT, NULL);
	assert_error(&r, 422, "invalid_field", "user_id");
	r = call("POST", "/v1/orders",
	    "{\"user_id\":\"alice\",\"items\":[{\"sku\":\"margherita\",\"qty\":1}],\"callback_url\":\"ftp://x/y\"}", JSON_CT, NULL);
	assert_error(&r, 422, "invalid_field", "callback_url");
	memset(big, ' ', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	big[0] = '{';
	big[sizeof(big) - 2] = '}';
	r = call("POST", "/v1/orders", big, JSON_CT, NULL);
	assert_error(&r, 413, "too_large", "limit");
	r = call("POST", "/v1/orders", "{\"user_id\":\"alice\",\"items\":[{\"sku\":\"margherita\",\"qty\":1}]}", JSON_CT,
	    "Idempotency-Key: \x01" "bad", NULL);
	assert_int_equal(r.status, 422);
	free(r.body);
	r = call("GET", "/v1/nothing-here", NULL, NULL);
	assert_error(&r, 404, "not_found", "/v1/nothing-here");
	r = call("DELETE", "/v1/orders", NULL, NULL);
	assert_string_equal(r.allow, "POST");
	assert_error(&r, 405, "method_not_allowed", "DELETE");
	r = call("PUT", "/v1/menu", NULL, NULL);
	assert_error(&r, 405, "method_not_allowed", "PUT");
	r = call("GET", "/v1/orders/01NOSUCHORDER0000000000000", NULL, NULL);
	assert_error(&r, 404, "not_found", NULL);
	r = call("GET", "/v1/users/alice/orders?limit=1000", NULL, NULL);
	assert_error(&r, 400, "invalid_query", "limit");

	/* nothing half-created */
	h_sleep(200);
	assert_int_equal(h_sql_int(&st, "order-service", "SELECT count(*) FROM orders", NULL), orders_before);
}

static void
test_menu_lists_what_validation_accepts(void **state)
{
	struct reply r = call("GET", "/v1/menu", NULL, NULL);
	json_t *o = json_loads(r.body, 0, NULL), *items = json_object_get(o, "items"), *it;
	size_t i;

	(void)state;
	assert_int_equal(r.status, 200); /* the menu needs no token */
	assert_true(json_array_size(items) >= 3);
	as("carol");
	json_array_foreach(items, i, it) {
		char body[256];
		struct reply p;

		assert_non_null(json_string_value(json_object_get(it, "name")));
		assert_true(json_integer_value(json_object_get(it, "price_cents")) > 0);
		snprintf(body, sizeof(body), "{\"user_id\":\"carol\",\"items\":[{\"sku\":\"%s\",\"qty\":1}]}",
		    json_string_value(json_object_get(it, "sku")));
		p = call("POST", "/v1/orders", body, JSON_CT, NULL);
		assert_int_equal(p.status, 202);
		free(p.body);
	}
	json_decref(o);
	free(r.body);
}

static void
test_user_history_newest_first_with_paging(void **state)
{
	char ids[3][NAME_MAX_LEN + 1], path[128];
	struct reply r;
	json_t *o, *orders;

	(void)state;
	as("dave");
	for (int i = 0; i < 3; i++) {
		r = call("POST", "/v1/orders", "{\"user_id\":\"dave\",\"items\":[{\"sku\":\"diavola\",\"qty\":1}]}", JSON_CT, NULL);
		assert_int_equal(r.status, 202);
		order_id_of(&r, ids[i], sizeof(ids[i]));
		free(r.body);
		assert_int_equal(h_wait_events(&st, ids[i], EVENT_PICKUP_ALERT, 0, 1, 10000), 1);
	}
	h_sleep(300);
	r = call("GET", "/v1/users/dave/orders?limit=2", NULL, NULL);
	assert_int_equal(r.status, 200);
	o = json_loads(r.body, 0, NULL);
	orders = json_object_get(o, "orders");
	assert_int_equal(json_array_size(orders), 2);
	assert_string_equal(json_string_value(json_object_get(json_array_get(orders, 0), "order_id")), ids[2]);
	assert_string_equal(json_string_value(json_object_get(json_array_get(orders, 1), "order_id")), ids[1]);
	assert_string_equal(json_string_value(json_object_get(o, "next_before")), ids[1]);
	json_decref(o);
	free(r.body);
	snprintf(path, sizeof(path), "/v1/users/dave/orders?limit=2&before=%s", ids[1]);
	r = call("GET", path, NULL, NULL);
	o = json_loads(r.body, 0, NULL);
	orders = json_object_get(o, "orders");
	assert_int_equal(json_array_size(orders), 1);
	assert_string_equal(json_string_value(json_object_get(json_array_get(orders, 0), "order_id")), ids[0]);
	assert_true(json_is_null(json_object_get(o, "next_before")));
	json_decref(o);
	free(r.body);
	as("nobody-at-all");
	r = call("GET", "/v1/users/nobody-at-all/orders", NULL, NULL);
	assert_int_equal(r.status, 200);
	o = json_loads(r.body, 0, NULL);
	assert_int_equal(json_array_size(json_object_get(o, "orders")), 0);
	json_decref(o);
	free(r.body);
}

/* Reads the callback secret the stack generated. */
static const char *
secret(void)
{
	static char buf[256];
	char path[600], *s;

	snprintf(path, sizeof(path), "%s/secrets/callback.secret", st.dir);
	s = file_read_small(path, 255);
	snprintf(buf, sizeof(buf), "%s", s != NULL ? s : "");
	free(s);
	return buf;
}

static void
place_with_callback(const char *user, char *id, size_t n)
{
	char body[512];
	struct reply r;

	as(user);
	snprintf(body, sizeof(body),
	    "{\"user_id\":\"%s\",\"items\":[{\"sku\":\"funghi\",\"qty\":1}],\"callback_url\":\"http://127.0.0.1:%d/hooks/pizza\"}",
	    user, httpd_port(rcv.h));
	r = call("POST", "/v1/orders", body, JSON_CT, NULL);
	assert_int_equal(r.status, 202);
	order_id_of(&r, id, n);
	free(r.body);
}

/* A receiver gets exactly one POST, signed so that it verifies. */
static void
test_callback_signed_once(void **state)
{
	char id[NAME_MAX_LEN + 1];
	json_t *o;
	int64_t deadline;

	(void)state;
	pthread_mutex_lock(&rcv.lock);
	rcv.hits = 0;
	rcv.fail = 0;
	pthread_mutex_unlock(&rcv.lock);
	place_with_callback("erin", id, sizeof(id));
	deadline = mono_ms() + 10000;
	while (hits() < 1 && mono_ms() < deadline)
		h_sleep(20);
	h_sleep(500); /* and no second one */
	assert_int_equal(hits(), 1);
	o = json_loads(rcv.body[0], 0, NULL);
	assert_string_equal(json_string_value(json_object_get(o, "type")), "OrderReady");
	assert_string_equal(json_string_value(json_object_get(o, "order_id")), id);
	assert_string_equal(json_string_value(json_object_get(o, "user_id")), "erin");
	assert_string_equal(json_string_value(json_object_get(o, "status")), "ready");
	json_decref(o);
	assert_true(strlen(rcv.delivery[0]) > 0);
	assert_int_equal(sign_verify(secret(), rcv.sig[0], rcv.body[0], strlen(rcv.body[0]), now_ms() / 1000, 300), 0);
	/* a tampered body or another secret does not verify */
	assert_int_equal(sign_verify(secret(), rcv.sig[0], "{}", 2, now_ms() / 1000, 300), -1);
	assert_int_equal(sign_verify("not-the-secret-at-all", rcv.sig[0], rcv.body[0], strlen(rcv.body[0]), now_ms() / 1000, 300),
	    -1);
}

/* A receiver that fails twice gets the delivery on the third attempt, after a growing wait. */
static void
test_callback_retried_until_it_succeeds(void **state)
{
	char id[NAME_MAX_LEN + 1], path[128];
	struct reply r;
	json_t *o, *cb;
	int64_t deadline;

	(void)state;
	pthread_mutex_lock(&rcv.lock);
	rcv.hits = 0;
	rcv.fail = 2;
	pthread_mutex_unlock(&rcv.lock);
	place_with_callback("frank", id, sizeof(id));
	deadline = mono_ms() + 15000;
	while (hits() < 3 && mono_ms() < deadline)
		h_sleep(20);
	h_sleep(800);
	assert_int_equal(hits(), 3);
	/* the same delivery id each time, so a receiver can drop duplicates */
	assert_string_equal(rcv.delivery[0], rcv.delivery[1]);
	assert_string_equal(rcv.delivery[1], rcv.delivery[2]);
	/* backoff: base 200 ms with jitter in [50%, 100%), doubling */
	assert_true(rcv.at_ms[1] - rcv.at_ms[0] >= 100);
	assert_true(rcv.at_ms[2] - rcv.at_ms[1] >= 200);
	/* and the timeline says so */
	snprintf(path, sizeof(path), "/v1/orders/%s", id);
	for (int i = 0; i < 50; i++) {
		r = call("GET", path, NULL, NULL);
		o = json_loads(r.body, 0, NULL);
		free(r.body);
		if ((cb = json_object_get(o, "callback")) != NULL)
			break;
		json_decref(o);
		o = NULL;
		h_sleep(100);
	}
	assert_non_null(o);
	assert_string_equal(json_string_value(json_object_get(cb, "outcome")), "delivered");
	assert_int_equal(json_integer_value(json_object_get(cb, "attempts")), 3);
	json_decref(o);
}

/* A dead receiver: the delivery fails after the last attempt, visibly, and other orders are not held up. */
static void
test_callback_to_dead_receiver_fails_visibly(void **state)
{
	char body[512], id[NAME_MAX_LEN + 1], other[NAME_MAX_LEN + 1], path[128];
	struct reply r;
	json_t *o = NULL, *cb = NULL, *tl;

	(void)state;
	as("gina");
	/* port 9 (discard) on loopback: connection refused */
	snprintf(body, sizeof(body),
	    "{\"user_id\":\"gina\",\"items\":[{\"sku\":\"funghi\",\"qty\":1}],\"callback_url\":\"http://127.0.0.1:9/nobody\"}");
	r = call("POST", "/v1/orders", body, JSON_CT, NULL);
	assert_int_equal(r.status, 202);
	order_id_of(&r, id, sizeof(id));
	free(r.body);
	r = call("POST", "/v1/orders", "{\"user_id\":\"gina\",\"items\":[{\"sku\":\"funghi\",\"qty\":1}]}", JSON_CT, NULL);
	order_id_of(&r, other, sizeof(other));
	free(r.body);
	assert_int_equal(h_wait_events(&st, other, EVENT_PICKUP_ALERT, 0, 1, 5000), 1);

	snprintf(path, sizeof(path), "/v1/orders/%s", id);
	for (int i = 0; i < 100; i++) {
		r = call("GET", path, NULL, NULL);
		o = json_loads(r.body, 0, NULL);
		free(r.body);
		if ((cb = json_object_get(o, "callback")) != NULL)
			break;
		json_decref(o);
		o = NULL;
		h_sleep(100);
	}
	assert_non_null(cb);
	assert_string_equal(json_string_value(json_object_get(cb, "outcome")), "failed");
	assert_int_equal(json_integer_value(json_object_get(cb, "attempts")), 4);
	tl = json_object_get(o, "timeline");
	assert_string_equal(json_string_value(json_object_get(json_array_get(tl, json_array_size(tl) - 1), "status")),
	    "callback_failed");
	json_decref(o);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_post_answers_202_and_order_completes),
		cmocka_unit_test(test_idempotency_key_replays_and_conflicts),
		cmocka_unit_test(test_concurrent_orders),
		cmocka_unit_test(test_bad_input_gets_clear_errors),
		cmocka_unit_test(test_menu_lists_what_validation_accepts),
		cmocka_unit_test(test_user_history_newest_first_with_paging),
		cmocka_unit_test(test_callback_signed_once),
		cmocka_unit_test(test_callback_retried_until_it_succeeds),
		cmocka_unit_test(test_callback_to_dead_receiver_fails_visibly),
	};

	return cmocka_run_group_tests_name("http", tests, setup, teardown);
}

/*
 * The contracts against real traffic: a real stack serves MQTT and HTTP
 * orders (accepted and refused), a dead letter and a signed callback; every
 * message the observer saw on pizza/# and every HTTP body is then judged by a
 * real JSON Schema validator (tests/contract/validate.mjs: ajv, draft 2020-12)
 * against docs/asyncapi.yaml, docs/openapi.yaml and docs/schemas/.
 *
 * Needs Node.js and the validator's packages:
 *   apt-get install -y nodejs npm
 *   make -f Makefile -f tests/contract/contract.mk contract-deps
 * Without them the test fails (it does not skip).
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
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "httpd.h"
#include "util.h"

static struct stack stk;

/* A malformed OrderPlaced, published as order-service: each of its consumers dead-letters it. */
static const char poison[] = "{\"type\":\"OrderPlaced\",\"items\":[";
/* The correlation data of the MQTT order that is refused (its request breaks the contract on purpose). */
#define REFUSED_CORR "contract-refused"

/* ---- a callback receiver ---------------------------------------------------------------------- */

static struct receiver {
	struct httpd *h;
	pthread_mutex_t lock;
	int hits;
	char body[2048];
} rcv;

static void
on_callback(void *arg, const struct http_req *req, struct http_resp *resp)
{
	struct receiver *r = arg;

	pthread_mutex_lock(&r->lock);
	if (r->hits++ == 0)
		snprintf(r->body, sizeof(r->body), "%s", req->body);
	pthread_mutex_unlock(&r->lock);
	http_json(resp, 200, json_pack("{s:b}", "ok", 1));
}

static int
receiver_hits(char *body, size_t n)
{
	int hits;

	pthread_mutex_lock(&rcv.lock);
	hits = rcv.hits;
	if (body != NULL)
		snprintf(body, n, "%s", rcv.body);
	pthread_mutex_unlock(&rcv.lock);
	return hits;
}

/* ---- HTTP ------------------------------------------------------------------------------------- */

struct reply {
	long status;
	char *body;
	char location[256];
};

/* One request to order-service with the bearer token (may be NULL), extra headers NULL-ended. */
static struct reply
call(const char *method, const char *path, const char *token, const char *body, ...)
{
	struct reply r;
	struct h_reply hr;
	const char *headers[16];
	char url[512], auth[512];
	int nh = 0;
	va_list ap;

	memset(&r, 0, sizeof(r));
	snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", stk.http_port, path);
	va_start(ap, body);
	while (nh < 14 && (headers[nh] = va_arg(ap, const char *)) != NULL)
		nh++;
	va_end(ap);
	if (token != NULL) {
		snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
		headers[nh++] = auth;
	}
	headers[nh] = NULL;
	r.status = h_http(method, url, headers, body, &hr);
	h_reply_header(&hr, "Location", r.location, sizeof(r.location));
	r.body = hr.body; /* handed over */
	free(hr.headers);
	return r;
}

/* The HTTP bodies to judge, each with the name of its schema. */
static struct capture {
	const char *schema;
	char *body;
} captured[32];
static int ncaptured;

static void
capture(const char *schema, const char *body)
{
	assert_true(ncaptured < (int)(sizeof(captured) / sizeof(captured[0])));
	captured[ncaptured].schema = schema;
	captured[ncaptured].body = strdup(body);
	ncaptured++;
}

/* Checks the status, records the body for the validator, and frees it. */
static void
expect(struct reply *r, long status, const char *schema)
{
	if (r->status != status)
		fprintf(stderr, "expected HTTP %ld, got %ld: %s\n", status, r->status, r->body);
	assert_int_equal(r->status, status);
	capture(schema, r->body);
	free(r->body);
	r->body = NULL;
}

/* A string member of a JSON text, copied into out. */
static void
member(const char *json, const char *key, char *out, size_t n)
{
	json_t *o = json_loads(json, 0, NULL);
	const char *v = json_string_value(json_object_get(o, key));

	assert_non_null(v);
	snprintf(out, n, "%s", v);
	json_decref(o);
}

/* ---- files and the validator ------------------------------------------------------------------ */

static const char *
root(void)
{
	const char *r = getenv("PIZZA_ROOT");
	return r != NULL ? r : ".";
}

/* One JSON line {"<k1>": s1, "<k2>": <text as a JSON string>} into f. */
static void
write_line(FILE *f, const char *k1, const char *s1, const char *k2, const char *text, size_t len)
{
	json_t *t = json_stringn(text, len), *o;
	char *line;

	if (t == NULL) /* not UTF-8: it cannot be valid anyway, keep what can be kept */
		t = event_json_lossy(text);
	o = json_pack("{s:s, s:o}", k1, s1, k2, t);
	assert_non_null(o);
	line = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	assert_non_null(line);
	fprintf(f, "%s\n", line);
	free(line);
	json_decref(o);
}

static FILE *
open_in_stack(const char *name, char *path, size_t n)
{
	FILE *f;

	snprintf(path, n, "%s/%s", stk.dir, name);
	f = fopen(path, "w");
	assert_non_null(f);
	return f;
}

/*
 * Runs node tests/contract/validate.mjs <mode> <file>, its output into
 * <file>.out and onto stderr.  Returns its exit status (127: no node), with
 * the output in *out (freed by the caller).
 */
static int
validate(const char *mode, const char *file, char **out)
{
	char script[600], outfile[700];
	int64_t deadline = mono_ms() + 60000;
	int status = 0;
	pid_t pid;

	snprintf(script, sizeof(script), "%s/tests/contract/validate.mjs", root());
	snprintf(outfile, sizeof(outfile), "%s.out", file);
	fflush(NULL);
	if ((pid = fork()) == 0) {
		int fd = open(outfile, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
			close(fd);
		}
		execlp("node", "node", script, mode, file, (char *)NULL);
		fprintf(stderr, "cannot run node: install it with apt-get install -y nodejs npm\n");
		_exit(127);
	}
	assert_true(pid > 0);
	for (;;) {
		pid_t r = waitpid(pid, &status, WNOHANG);
		if (r == pid)
			break;
		if (mono_ms() > deadline) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			fail_msg("validate.mjs %s %s did not finish in 60 s", mode, file);
		}
		sleep_ms(20);
	}
	*out = file_read_small(outfile, 1 << 22);
	if (*out == NULL)
		*out = strdup("");
	fprintf(stderr, "validate.mjs %s %s:\n%s\n", mode, file, *out);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Node.js and the validator's packages are there, or the test fails saying how to get them. */
static void
require_validator(void)
{
	char path[600];
	struct stat sb;
	int rc = system("node --version >/dev/null 2>&1");

	if (rc != 0)
		fail_msg("Node.js is not installed; the contract test needs it (it does not skip):\n"
			 "  apt-get install -y nodejs npm\n"
			 "  make -f Makefile -f tests/contract/contract.mk contract-deps");
	snprintf(path, sizeof(path), "%s/tests/contract/node_modules/ajv/package.json", root());
	if (stat(path, &sb) != 0)
		fail_msg("the validator's packages are not installed (%s is missing); run:\n"
			 "  make -f Makefile -f tests/contract/contract.mk contract-deps",
		    path);
}

/* ---- the stack -------------------------------------------------------------------------------- */

static int
setup(void **state)
{
	char err[256];

	(void)state;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	pthread_mutex_init(&rcv.lock, NULL);
	if ((rcv.h = httpd_start("127.0.0.1", 0, 4096, on_callback, &rcv, err, sizeof(err))) == NULL)
		return -1;
	if (h_stack_start(&stk, "contract") != 0 || h_observer(&stk) != 0)
		return -1;
	/* the receiver is on loopback, which callbacks may not reach unless allowed */
	if (h_service(&stk, "order-service", "order-service", "--callback-allow", "127.0.0.1", NULL) < 0 ||
	    h_service(&stk, "order-history", "order-history", NULL) < 0 ||
	    h_service(&stk, "notifier", "notifier", "--callback-allow", "127.0.0.1", NULL) < 0 ||
	    h_service(&stk, "exec-1", "order-executor", "--id", "exec-1", "--stage-ms", "20", NULL) < 0)
		return -1;
	return 0;
}

static int
teardown(void **state)
{
	int rc;

	(void)state;
	rc = h_stack_stop(&stk);
	httpd_stop(rcv.h);
	for (int i = 0; i < ncaptured; i++)
		free(captured[i].body);
	curl_global_cleanup();
	return rc;
}

static int
ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), k = strlen(suffix);

	return n >= k && strcmp(s + n - k, suffix) == 0;
}

static int
wait_topic(const char *topic, int want, int timeout_ms)
{
	int64_t deadline = mono_ms() + timeout_ms;
	int n;

	while ((n = h_count_topic(&stk, topic)) < want && mono_ms() < deadline)
		h_sleep(20);
	return n;
}

/* ---- the test --------------------------------------------------------------------------------- */

static void
test_real_traffic_matches_the_contracts(void **state)
{
	char ids[2][NAME_MAX_LEN + 1], http_id[NAME_MAX_LEN + 1], reply[300], token[512], body[1024], path[700];
	char events[700], invalid[700], http[700], negative[700], cb[2048], *out = NULL;
	/*
	 * which kinds of message the capture holds: placed, status, alerts,
	 * callbacks, deadletter, new, replies, accepted, ready
	 */
	int kinds[9] = { 0 }, n_events = 0, n_invalid = 0;
	struct event ready;
	struct reply r;
	FILE *f;

	(void)state;
	require_validator();

	/* MQTT: two orders, one refused (its request breaks the contract on purpose: an unknown sku) */
	assert_int_equal(h_place(&stk, "alice", "margherita", 2, "contract-1"), 0);
	assert_int_equal(h_place(&stk, "bob", "quattro-formaggi", 1, "contract-2"), 0);
	assert_int_equal(h_place(&stk, "carol", "sushi", 1, REFUSED_CORR), 0);
	assert_int_equal(h_wait_reply(&stk, "contract-1", ids[0], sizeof(ids[0]), 10000), 0);
	assert_int_equal(h_wait_reply(&stk, "contract-2", ids[1], sizeof(ids[1]), 10000), 0);
	assert_int_equal(h_wait_reply(&stk, REFUSED_CORR, reply, sizeof(reply), 10000), 1);

	/* a malformed OrderPlaced: the executor and order-history each dead-letter it (the notifier reads none) */
	assert_int_equal(h_publish(&stk, "order-service", "pizza/orders/placed", poison, strlen(poison)), 0);

	/* HTTP: log in, place an order with a callback, and a few refusals */
	snprintf(body, sizeof(body), "{\"user_id\":\"alice\",\"password\":\"%s\"}", h_password(&stk, "alice"));
	capture("LoginRequest", body);
	r = call("POST", "/v1/login", NULL, body, NULL);
	expect(&r, 200, "LoginResponse");
	member(captured[ncaptured - 1].body, "token", token, sizeof(token));
	r = call("POST", "/v1/login", NULL, "{\"user_id\":\"alice\",\"password\":\"not-it\"}", NULL);
	expect(&r, 401, "Error");

	snprintf(body, sizeof(body),
	    "{\"items\":[{\"sku\":\"funghi\",\"qty\":1},{\"sku\":\"hawaii\",\"qty\":3}],"
	    "\"callback_url\":\"http://127.0.0.1:%d/hook\"}",
	    httpd_port(rcv.h));
	capture("OrderCreateRequest", body);
	r = call("POST", "/v1/orders", token, body, "Content-Type: application/json", "Idempotency-Key: contract-http-1",
	    NULL);
	expect(&r, 202, "OrderAccepted");
	member(captured[ncaptured - 1].body, "order_id", http_id, sizeof(http_id));
	snprintf(path, sizeof(path), "/v1/orders/%s", http_id);
	assert_string_equal(r.location, path);
	r = call("POST", "/v1/orders", token, "{\"items\":[{\"sku\":\"sushi\",\"qty\":1}]}", "Content-Type: application/json",
	    NULL);
	expect(&r, 422, "Error");
	r = call("POST", "/v1/orders", token, "{\"items\":[{\"sku\":\"funghi\",\"qty\":1}]}", "Content-Type: text/plain", NULL);
	expect(&r, 415, "Error");
	r = call("GET", path, NULL, NULL, NULL);
	expect(&r, 401, "Error");
	r = call("GET", "/v1/users/alice/orders?limit=0", token, NULL, NULL);
	expect(&r, 400, "Error");
	r = call("GET", "/v1/users/bob/orders", token, NULL, NULL);
	expect(&r, 404, "Error");
	r = call("DELETE", "/v1/menu", NULL, NULL, NULL);
	expect(&r, 405, "Error");
	r = call("GET", "/v1/menu", NULL, NULL, NULL);
	expect(&r, 200, "Menu");
	/* the test stack has no WebSockets URL: the 404 of GET /v1/config keeps the error shape */
	r = call("GET", "/v1/config", NULL, NULL, NULL);
	expect(&r, 404, "Error");

	/* every order reaches its pickup alert; the HTTP one also its callback, delivered and recorded */
	assert_int_equal(h_wait_events(&stk, ids[0], EVENT_PICKUP_ALERT, 0, 1, 15000), 1);
	assert_int_equal(h_wait_events(&stk, ids[1], EVENT_PICKUP_ALERT, 0, 1, 15000), 1);
	assert_int_equal(h_wait_events(&stk, http_id, EVENT_PICKUP_ALERT, 0, 1, 15000), 1);
	assert_true(wait_topic("pizza/orders/callbacks", 1, 15000) >= 1);
	assert_true(wait_topic("pizza/deadletter", 2, 10000) >= 2);
	assert_int_equal(receiver_hits(cb, sizeof(cb)), 1);
	capture("OrderReadyCallback", cb);
	/* the notifier had the URL from the order's OrderReady, the only one that carries one */
	assert_int_equal(h_events_on(&stk, TOPIC_READY, http_id, EVENT_ORDER_READY, &ready, 1), 1);
	snprintf(body, sizeof(body), "http://127.0.0.1:%d/hook", httpd_port(rcv.h));
	assert_string_equal(ready.callback_url, body);
	assert_int_equal(ready.n_items, 2);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(h_events_on(&stk, TOPIC_READY, ids[i], EVENT_ORDER_READY, &ready, 1), 1);
		assert_string_equal(ready.callback_url, "");
	}
	for (int64_t deadline = mono_ms() + 10000;;) {
		r = call("GET", path, token, NULL, NULL);
		if (r.status == 200 && strstr(r.body, "\"callback_delivered\"") != NULL)
			break;
		assert_true(mono_ms() < deadline);
		free(r.body);
		h_sleep(50);
	}
	expect(&r, 200, "Order");
	r = call("GET", "/v1/users/alice/orders?limit=2", token, NULL, NULL);
	expect(&r, 200, "UserOrderList");
	h_sleep(200); /* stragglers: a duplicate or a late dead letter is judged too */

	/* every observed message: the ones broken on purpose apart, the rest must all be valid */
	f = open_in_stack("events.jsonl", events, sizeof(events));
	{
		FILE *bad = open_in_stack("expected-invalid.jsonl", invalid, sizeof(invalid));

		pthread_mutex_lock(&stk.lock);
		for (size_t i = 0; i < stk.nmsgs; i++) {
			const struct h_msg *m = &stk.msgs[i];
			int broken = (strcmp(m->topic, "pizza/orders/placed") == 0 && m->len == strlen(poison) &&
					 memcmp(m->payload, poison, m->len) == 0) ||
			    (ends_with(m->topic, "/orders/new") && m->corr != NULL && strcmp(m->corr, REFUSED_CORR) == 0);

			write_line(broken ? bad : f, "topic", m->topic, "payload", m->payload, m->len);
			if (broken) {
				n_invalid++;
				continue;
			}
			n_events++;
			kinds[0] += strcmp(m->topic, "pizza/orders/placed") == 0;
			kinds[1] += ends_with(m->topic, "/status");
			kinds[2] += ends_with(m->topic, "/alerts");
			kinds[3] += strcmp(m->topic, "pizza/orders/callbacks") == 0;
			kinds[4] += strcmp(m->topic, "pizza/deadletter") == 0;
			kinds[5] += ends_with(m->topic, "/orders/new");
			kinds[6] += strstr(m->topic, "/replies/") != NULL;
			kinds[7] += strcmp(m->topic, TOPIC_ACCEPTED) == 0;
			kinds[8] += strcmp(m->topic, TOPIC_READY) == 0;
		}
		pthread_mutex_unlock(&stk.lock);
		fclose(bad);
	}
	fclose(f);
	/* the capture holds every kind of message, so a pass means something */
	for (int k = 0; k < 9; k++)
		assert_true(kinds[k] > 0);
	assert_int_equal(kinds[0], 3);      /* three orders placed, nothing published twice */
	assert_int_equal(kinds[1], 12);     /* the phone's four stages each: prep, bake, oven, ready */
	assert_int_equal(kinds[7], 3);      /* one executor's accepted each, for order-service */
	assert_int_equal(kinds[8], 3);      /* one OrderReady each, for order-service and the notifier */
	assert_int_equal(kinds[2], 3);      /* one alert each */
	assert_int_equal(kinds[4], 2);      /* the poison, by its two consumers */
	assert_int_equal(kinds[5], 2);      /* the accepted MQTT requests */
	assert_int_equal(kinds[6], 3);      /* two accepted, one refused */
	assert_int_equal(n_invalid, 2);     /* the poison and the refused request */

	assert_int_equal(validate("events", events, &out), 0);
	snprintf(body, sizeof(body), "contract: %d events valid, 0 invalid", n_events);
	assert_non_null(strstr(out, body));
	free(out);

	/* the messages broken on purpose are refused, each of them */
	assert_int_not_equal(validate("events", invalid, &out), 0);
	assert_non_null(strstr(out, "contract: 0 events valid, 2 invalid"));
	assert_non_null(strstr(out, "(OrderPlaced): payload is not valid JSON"));
	assert_non_null(strstr(out, "(PlaceOrderRequest): payload/items/0/sku must be equal to one of the allowed values"));
	free(out);

	/* HTTP bodies */
	f = open_in_stack("http.jsonl", http, sizeof(http));
	for (int i = 0; i < ncaptured; i++)
		write_line(f, "schema", captured[i].schema, "body", captured[i].body, strlen(captured[i].body));
	fclose(f);
	assert_int_equal(validate("http", http, &out), 0);
	snprintf(body, sizeof(body), "contract: %d bodies valid, 0 invalid", ncaptured);
	assert_non_null(strstr(out, body));
	free(out);

	/* negative controls: the validator can say no */
	f = open_in_stack("negative-events.jsonl", negative, sizeof(negative));
	snprintf(body, sizeof(body),
	    "{\"type\":\"OrderStatus\",\"event_id\":\"01M859RVX6A1B2C3D4E5F6G7H8\",\"order_id\":\"%s\",\"user_id\":\"alice\","
	    "\"at\":\"2026-11-23T22:52:34.527Z\",\"status\":\"prep\",\"seq\":\"2\",\"worker\":\"exec-1\"}",
	    ids[0]);
	snprintf(path, sizeof(path), "pizza/users/alice/orders/%s/status", ids[0]);
	write_line(f, "topic", path, "payload", body, strlen(body));
	fclose(f);
	assert_int_not_equal(validate("events", negative, &out), 0);
	assert_non_null(strstr(out, "contract: 0 events valid, 1 invalid"));
	assert_non_null(strstr(out, "payload/seq must be integer"));
	free(out);

	f = open_in_stack("negative-http.jsonl", negative, sizeof(negative));
	write_line(f, "schema", "Error", "body", "{\"error\":\"teapot\",\"detail\":\"short and stout\"}",
	    strlen("{\"error\":\"teapot\",\"detail\":\"short and stout\"}"));
	fclose(f);
	assert_int_not_equal(validate("http", negative, &out), 0);
	assert_non_null(strstr(out, "contract: 0 bodies valid, 1 invalid"));
	free(out);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_real_traffic_matches_the_contracts),
	};

	return cmocka_run_group_tests_name("contract", tests, setup, teardown);
}

/*
 * order-service as two instances on one broker and one private PostgreSQL
 * (issue 16), with executors, order-history and the notifier (on SQLite):
 *  - HTTP: the same Idempotency-Key sent to both instances places one order;
 *  - MQTT: the requests go to one instance of the $share group each, so each
 *    order is recorded once and answered once;
 *  - supervision: a stalled order is republished by one instance at a time;
 *  - one instance killed with orders in flight: every accepted order
 *    completes with one alert (its outbox rows published by the survivor
 *    after their lease, the outbox empty within a few seconds), and MQTT
 *    requests sent right after the kill are all answered by the survivor
 *    (the dead instance's intake connection leaves no session in the
 *    $share group for the broker to queue them in);
 *  - accounts: a user added through one instance logs in on the other at
 *    once, a token one issued is taken by the other at once, and a token
 *    revoked on one is refused by the other within about a second.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <signal.h>

#include "harness.h"
#include "util.h"

static struct stack st;
static struct h_pg pg;
static int port_b; /* svc-b's HTTP API (svc-a has st.http_port) */
static char admin_auth[400];

static int
setup(void **state)
{
	char port[16], path[700], *secret;

	(void)state;
	if (h_stack_start(&st, "pg-orders") != 0 || h_observer(&st) != 0 || h_pg_start(&st, &pg) != 0)
		return -1;
	port_b = h_free_port();
	snprintf(port, sizeof(port), "%d", port_b);
	/* short lease and deadlines: a dead instance's rows and a stalled order are taken over within the test */
	if (h_service(&st, "exec-1", "order-executor", "--id", "exec-1", "--stage-ms", "20", NULL) < 0 ||
	    h_service(&st, "exec-2", "order-executor", "--id", "exec-2", "--stage-ms", "20", NULL) < 0 ||
	    h_service(&st, "order-history", "order-history", NULL) < 0 || h_service(&st, "notifier", "notifier", NULL) < 0 ||
	    h_service(&st, "svc-a", "order-service", "--db", pg.url, "--client-id", "order-service-a", "--outbox-retry",
		"1s", "--accept-deadline", "2s", NULL) < 0 ||
	    h_service(&st, "svc-b", "order-service", "--db", pg.url, "--client-id", "order-service-b", "--http-port", port,
		"--outbox-retry", "1s", "--accept-deadline", "2s", NULL) < 0)
		return -1;
	snprintf(path, sizeof(path), "%s/secrets/admin.secret", st.dir);
	if ((secret = file_read_small(path, 255)) == NULL)
		return -1;
	secret[strcspn(secret, "\r\n")] = '\0';
	snprintf(admin_auth, sizeof(admin_auth), "Authorization: Bearer %s", secret);
	free(secret);
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	int rc = h_stack_stop(&st);
	h_pg_stop(&pg);
	return rc;
}

/* method path on port with one extra header line (may be NULL) and body; the status, the body in *out (caller frees). */
static long
call(int port, const char *method, const char *path, const char *header, const char *body, char **out)
{
	const char *const headers[] = { "Content-Type: application/json", header, NULL };
	struct h_reply r;
	char url[300];
	long status;

	snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
	status = h_http(method, url, headers, body, &r);
	if (out != NULL) {
		*out = r.body;
		r.body = NULL;
	}
	h_reply_free(&r);
	return status;
}

/* The string field name of the JSON body into out ("" when absent). */
static void
field(const char *body, const char *name, char *out, size_t n)
{
	json_t *o = json_loads(body, 0, NULL);

	snprintf(out, n, "%s", o != NULL && json_string_value(json_object_get(o, name)) != NULL ?
		json_string_value(json_object_get(o, name)) : "");
	json_decref(o);
}

static int64_t
pg_count(const char *fmt, const char *arg)
{
	char sql[400];

	snprintf(sql, sizeof(sql), fmt, arg);
	return h_pg_int(&pg, sql);
}

/* Every order completes, with exactly one pickup alert, and is recorded once in PostgreSQL. */
static void
assert_completed_once(char (*ids)[NAME_MAX_LEN + 1], int n)
{
	for (int i = 0; i < n; i++) {
		assert_int_equal(h_wait_events(&st, ids[i], EVENT_PICKUP_ALERT, 0, 1, 20000), 1);
		assert_int_equal(pg_count("SELECT count(*) FROM order_service.orders WHERE order_id = '%.64s'", ids[i]), 1);
	}
	/* a second alert would follow the first within the same moment: every order's first is in, look again */
	for (int i = 0; i < n; i++)
		assert_int_equal(h_count_events(&st, ids[i], EVENT_PICKUP_ALERT, 0), 1);
}

/* Replies the observer saw with correlation corr (the request carries it too). */
static int
replies(const char *corr)
{
	int n = 0;

	pthread_mutex_lock(&st.lock);
	for (size_t i = 0; i < st.nmsgs; i++)
		if (st.msgs[i].corr != NULL && strcmp(st.msgs[i].corr, corr) == 0 && strstr(st.msgs[i].topic, "/replies/") != NULL)
			n++;
	pthread_mutex_unlock(&st.lock);
	return n;
}

/* The sum of a metric's series on the HTTP port, or -1. */
static long
metric(int port, const char *name)
{
	char *body, *line, *save = NULL;
	long sum = -1;

	if (call(port, "GET", "/metrics", NULL, NULL, &body) == 200) {
		sum = 0;
		for (line = strtok_r(body, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
			size_t n = strlen(name);
			if (strncmp(line, name, n) == 0 && (line[n] == '{' || line[n] == ' ') && strrchr(line, ' ') != NULL)
				sum += strtol(strrchr(line, ' ') + 1, NULL, 10);
		}
	}
	free(body);
	return sum;
}

/* POSTs an order as alice to port with an Idempotency-Key; the status, the order id into id. */
static long
http_order(int port, const char *key, const char *sku, char *id, size_t n)
{
	char auth[1200], body[200], *out;
	const char *const headers[] = { "Content-Type: application/json", auth, key, NULL };
	struct h_reply r;
	char url[200];
	long status;

	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", h_token(&st, "alice"));
	snprintf(body, sizeof(body), "{\"items\":[{\"sku\":\"%s\",\"qty\":1}]}", sku);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/orders", port);
	status = h_http("POST", url, headers, body, &r);
	out = r.body;
	field(out, "order_id", id, n);
	h_reply_free(&r);
	return status;
}

/* One Idempotency-Key, one order, whichever instances the client's retries reach. */
static void
test_http_key_shared(void **state)
{
	char ids[2][NAME_MAX_LEN + 1], again[NAME_MAX_LEN + 1];

	(void)state;
	assert_int_equal(http_order(st.http_port, "Idempotency-Key: pg-key-1", "margherita", ids[0], sizeof(ids[0])), 202);
	assert_int_equal(http_order(port_b, "Idempotency-Key: pg-key-1", "margherita", again, sizeof(again)), 202);
	assert_string_equal(ids[0], again);
	/* the other way round */
	assert_int_equal(http_order(port_b, "Idempotency-Key: pg-key-2", "funghi", ids[1], sizeof(ids[1])), 202);
	assert_int_equal(http_order(st.http_port, "Idempotency-Key: pg-key-2", "funghi", again, sizeof(again)), 202);
	assert_string_equal(ids[1], again);
	/* the same key with another request: refused by the instance that did not record it */
	assert_int_equal(http_order(st.http_port, "Idempotency-Key: pg-key-2", "margherita", again, sizeof(again)), 422);
	assert_int_equal(pg_count("SELECT count(*) FROM order_service.idempotency WHERE key LIKE '%s'", "pg-key-%"), 2);
	assert_completed_once(ids, 2);
}

/* MQTT requests: each goes to one instance, recorded once and answered once. */
static void
test_mqtt_once(void **state)
{
	char ids[8][NAME_MAX_LEN + 1], corr[32];
	int64_t before = h_pg_int(&pg, "SELECT count(*) FROM order_service.orders WHERE via = 'mqtt'");

	(void)state;
	for (int i = 0; i < 8; i++) {
		snprintf(corr, sizeof(corr), "pg-mqtt-%d", i);
		assert_int_equal(h_place(&st, "alice", "margherita", 1, corr), 0);
	}
	for (int i = 0; i < 8; i++) {
		snprintf(corr, sizeof(corr), "pg-mqtt-%d", i);
		assert_int_equal(h_wait_reply(&st, corr, ids[i], sizeof(ids[0]), 10000), 0);
	}
	assert_completed_once(ids, 8);
	for (int i = 0; i < 8; i++) {
		snprintf(corr, sizeof(corr), "pg-mqtt-%d", i);
		assert_int_equal(replies(corr), 1);
	}
	assert_int_equal(h_pg_int(&pg, "SELECT count(*) FROM order_service.orders WHERE via = 'mqtt'") - before, 8);
	/* the broker shared them out: both instances placed some */
	assert_true(metric(st.http_port, "pizza_orders_accepted_total") > 0);
	assert_true(metric(port_b, "pizza_orders_accepted_total") > 0);
}

/* How many times needle, not followed by a digit, is in the named process's log. */
static int
log_count(const char *name, const char *needle)
{
	int n = 0;

	for (int i = 0; i < st.nprocs; i++)
		if (strcmp(st.procs[i].name, name) == 0) {
			char *text = file_read_small(st.procs[i].log, 1 << 24), *p = text;
			while (p != NULL && (p = strstr(p, needle)) != NULL) {
				p += strlen(needle);
				n += *p < '0' || *p > '9';
			}
			free(text);
		}
	return n;
}

/* No executor takes the orders: each stalled order is published again by one instance at a time. */
static void
test_supervised_once(void **state)
{
	char ids[3][NAME_MAX_LEN + 1], needle[3][200], one[3][220], two[3][220];
	int n1[3], n2[3];

	(void)state;
	h_signal(&st, "exec-1", SIGSTOP);
	h_signal(&st, "exec-2", SIGSTOP);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(http_order(i % 2 ? port_b : st.http_port, NULL, "funghi", ids[i], sizeof(ids[i])), 202);
		snprintf(needle[i], sizeof(needle[i]), "order_id=%s stage=placed republished=", ids[i]);
	}
	/* both instances pass every 0.5 s; the accept deadline is 2 s: each order goes out again twice within 6 s */
	for (int i = 0; i < 3; i++) {
		int64_t deadline = mono_ms() + 10000;

		/* republished=1, then republished=2, between both instances: never the same order twice at once */
		snprintf(one[i], sizeof(one[i]), "%.190s1", needle[i]);
		snprintf(two[i], sizeof(two[i]), "%.190s2", needle[i]);
		while (log_count("svc-a", two[i]) + log_count("svc-b", two[i]) < 1 && mono_ms() < deadline)
			h_sleep(50);
	}
	for (int i = 0; i < 3; i++) {
		n1[i] = log_count("svc-a", one[i]) + log_count("svc-b", one[i]);
		n2[i] = log_count("svc-a", two[i]) + log_count("svc-b", two[i]);
	}
	h_signal(&st, "exec-1", SIGCONT);
	h_signal(&st, "exec-2", SIGCONT);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(n1[i], 1);
		assert_int_equal(n2[i], 1);
	}
	assert_completed_once(ids, 3);
}

/*
 * One instance killed with orders in flight: the survivor publishes what it
 * left, within the 1 s lease and a flush or two, supervises everything, and
 * answers every MQTT request sent after the kill.
 */
static void
test_instance_killed(void **state)
{
	char ids[20][NAME_MAX_LEN + 1], corr[32];
	int64_t killed, drained;

	(void)state;
	for (int i = 0; i < 6; i++)
		assert_int_equal(http_order(st.http_port, NULL, "margherita", ids[i], sizeof(ids[i])), 202);
	for (int i = 6; i < 10; i++) {
		snprintf(corr, sizeof(corr), "pg-kill-%d", i);
		assert_int_equal(h_place(&st, "alice", "funghi", 1, corr), 0);
	}
	for (int i = 6; i < 10; i++) {
		snprintf(corr, sizeof(corr), "pg-kill-%d", i);
		assert_int_equal(h_wait_reply(&st, corr, ids[i], sizeof(ids[0]), 10000), 0);
	}
	h_signal(&st, "svc-a", SIGKILL);
	killed = mono_ms();
	/* a phone ordering now: every request answered by the survivor, none queued for the dead one */
	for (int i = 10; i < 20; i++) {
		snprintf(corr, sizeof(corr), "pg-after-%d", i);
		assert_int_equal(h_place(&st, "alice", "funghi", 1, corr), 0);
	}
	for (int i = 10; i < 20; i++) {
		snprintf(corr, sizeof(corr), "pg-after-%d", i);
		assert_int_equal(h_wait_reply(&st, corr, ids[i], sizeof(ids[0]), 4000), 0);
	}
	print_message("10 MQTT requests after the kill answered within %lld ms\n", (long long)(mono_ms() - killed));
	/* nothing left behind in the shared outbox: the 1 s lease, a flush (0.2 s), a PUBACK, a flush */
	while (h_pg_int(&pg, "SELECT count(*) FROM order_service.outbox") != 0 && mono_ms() - killed < 4000)
		h_sleep(100);
	drained = mono_ms() - killed;
	assert_int_equal(h_pg_int(&pg, "SELECT count(*) FROM order_service.outbox"), 0);
	print_message("shared outbox empty %lld ms after the kill\n", (long long)drained);
	assert_completed_once(ids, 20);
	assert_int_equal(h_restart(&st, "svc-a", SIGKILL), 0);
}

/* Waits until method path on port answers want (the change reached it); the milliseconds it took, or -1. */
static int64_t
wait_status(int port, const char *method, const char *path, const char *header, const char *body, long want,
    int timeout_ms, char **out)
{
	int64_t start = mono_ms();

	do {
		char *got = NULL;
		if (call(port, method, path, header, body, &got) == want) {
			if (out != NULL)
				*out = got;
			else
				free(got);
			return mono_ms() - start;
		}
		free(got);
		h_sleep(50);
	} while (mono_ms() - start < timeout_ms);
	return -1;
}

/*
 * A user added through A logs in on B at once, and B takes a token A issued
 * at once; a token revoked on A is refused by B within about a second.
 */
static void
test_accounts_follow(void **state)
{
	const char *login = "{\"user_id\":\"pgcarol\",\"password\":\"carol-pg-password-1\"}";
	char *out = NULL, token[1200], auth[1300], body[1400];
	int64_t took;

	(void)state;
	assert_int_equal(call(st.http_port, "POST", "/v1/admin/users", admin_auth, login, NULL), 201);
	/* at once: B's copy has not caught up on its own yet (it looks every 0.2 s), the miss makes it */
	assert_int_equal(call(port_b, "POST", "/v1/login", NULL, login, &out), 200);
	field(out, "token", token, sizeof(token));
	free(out);
	assert_true(strlen(token) > 0);
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
	/* B took it: an order as pgcarol */
	assert_int_equal(call(port_b, "POST", "/v1/orders", auth, "{\"items\":[{\"sku\":\"margherita\",\"qty\":1}]}", NULL),
	    202);
	/* a token A issued to a user A added a moment ago: B takes it at once */
	{
		const char *dave = "{\"user_id\":\"pgdave\",\"password\":\"dave-pg-password-1\"}";
		char dave_token[1200], dave_auth[1300];

		assert_int_equal(call(st.http_port, "POST", "/v1/admin/users", admin_auth, dave, NULL), 201);
		assert_int_equal(call(st.http_port, "POST", "/v1/login", NULL, dave, &out), 200);
		field(out, "token", dave_token, sizeof(dave_token));
		free(out);
		snprintf(dave_auth, sizeof(dave_auth), "Authorization: Bearer %s", dave_token);
		assert_int_equal(call(port_b, "POST", "/v1/orders", dave_auth,
				     "{\"items\":[{\"sku\":\"margherita\",\"qty\":1}]}", NULL),
		    202);
	}
	/* revoked on A: A refuses it at once, B within about a second */
	snprintf(body, sizeof(body), "{\"token\":\"%s\"}", token);
	assert_int_equal(call(st.http_port, "POST", "/v1/admin/tokens/revoke", admin_auth, body, NULL), 204);
	assert_int_equal(call(st.http_port, "POST", "/v1/orders", auth, "{\"items\":[{\"sku\":\"margherita\",\"qty\":1}]}",
			     NULL),
	    401);
	took = wait_status(port_b, "POST", "/v1/orders", auth, "{\"items\":[{\"sku\":\"margherita\",\"qty\":1}]}", 401,
	    2500, NULL);
	assert_true(took >= 0);
	print_message("token revoked on A refused by B after %lld ms\n", (long long)took);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_http_key_shared),
		cmocka_unit_test(test_mqtt_once),
		cmocka_unit_test(test_supervised_once),
		cmocka_unit_test(test_instance_killed),
		cmocka_unit_test(test_accounts_follow),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}

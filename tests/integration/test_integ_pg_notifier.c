/*
 * The notifier as two instances on one broker and one private PostgreSQL
 * (issue 16): each holds plain persistent subscriptions of its own client
 * id, so both see every OrderStatus; the store makes the outcomes unique.
 * Every order gets one pickup alert (one alert event id on the broker) and
 * one callback POST, whichever instance got there first.  One instance
 * killed mid-run: the other alerts every order, and outbox rows a dead
 * instance had claimed are published by the survivor once their lease ran
 * out.  PostgreSQL restarted: both reconnect and nothing is lost.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <signal.h>

#include "harness.h"
#include "httpd.h"
#include "token.h"
#include "util.h"

#define MAX_ORDERS 32

static struct stack st;
static struct h_pg pg;
static int placed;
static char ids[MAX_ORDERS][NAME_MAX_LEN + 1];

/* The callback receiver: counts the POSTs each order got, and keeps each one's delivery id. */
static struct receiver {
	struct httpd *h;
	pthread_mutex_t lock;
	int hits[MAX_ORDERS];
	char delivery[MAX_ORDERS][NAME_MAX_LEN + 1];
	int mixed; /* a second POST for an order came with another delivery id */
} rcv;

static void
on_callback(void *arg, const struct http_req *req, struct http_resp *resp)
{
	struct receiver *r = arg;
	const char *del = http_header(req, "Pizza-Delivery");
	json_t *o = json_loads(req->body != NULL ? req->body : "", 0, NULL);
	const char *id = json_string_value(json_object_get(o, "order_id"));

	pthread_mutex_lock(&r->lock);
	for (int i = 0; id != NULL && i < placed; i++) {
		if (strcmp(ids[i], id) != 0)
			continue;
		if (r->hits[i]++ == 0)
			snprintf(r->delivery[i], sizeof(r->delivery[i]), "%s", del != NULL ? del : "");
		else if (del == NULL || strcmp(del, r->delivery[i]) != 0)
			r->mixed = 1;
	}
	pthread_mutex_unlock(&r->lock);
	json_decref(o);
	http_json(resp, 200, json_pack("{s:b}", "ok", 1));
}

static int
hits(int i)
{
	int n;

	pthread_mutex_lock(&rcv.lock);
	n = rcv.hits[i];
	pthread_mutex_unlock(&rcv.lock);
	return n;
}

/* Starts one notifier instance on PostgreSQL with its own client id. */
static int
notifier(const char *name)
{
	return h_service(&st, name, "notifier", "--db", pg.url, "--client-id", name, "--callback-allow", "127.0.0.1",
	    "--outbox-retry", "2s", "--callback-timeout", "500ms", NULL);
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
	if (h_stack_start(&st, "pg-notifier") != 0 || h_observer(&st) != 0 || h_pg_start(&st, &pg) != 0)
		return -1;
	if (h_service(&st, "order-service", "order-service", "--callback-allow", "127.0.0.1", NULL) < 0 ||
	    h_service(&st, "exec-1", "order-executor", "--id", "exec-1", "--stage-ms", "20", NULL) < 0 ||
	    notifier("notifier-1") < 0 || notifier("notifier-2") < 0)
		return -1;
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	int rc = h_stack_stop(&st);
	h_pg_stop(&pg);
	httpd_stop(rcv.h);
	curl_global_cleanup();
	return rc;
}

/* Places n orders as alice over HTTP, each with a callback to the receiver, and records their ids. */
static void
place(int n)
{
	char url[200], auth[TOKEN_MAX + 32], body[400];
	const char *const headers[] = { "Content-Type: application/json", auth, NULL };

	snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/orders", st.http_port);
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", h_token(&st, "alice"));
	snprintf(body, sizeof(body),
	    "{\"user_id\":\"alice\",\"items\":[{\"sku\":\"funghi\",\"qty\":1}],"
	    "\"callback_url\":\"http://127.0.0.1:%d/hooks/pizza\"}",
	    httpd_port(rcv.h));
	for (int i = 0; i < n; i++) {
		struct h_reply r;
		json_t *o;

		assert_true(placed < MAX_ORDERS);
		assert_int_equal(h_http("POST", url, headers, body, &r), 202);
		o = json_loads(r.body, 0, NULL);
		assert_non_null(json_string_value(json_object_get(o, "order_id")));
		pthread_mutex_lock(&rcv.lock);
		snprintf(ids[placed], sizeof(ids[0]), "%s", json_string_value(json_object_get(o, "order_id")));
		placed++;
		pthread_mutex_unlock(&rcv.lock);
		json_decref(o);
		h_reply_free(&r);
	}
}

/*
 * Every order from first on gets its pickup alert (one alert event id,
 * however often the broker carried it) and its callback, once: the other
 * instance's copy of each event changed nothing.
 */
static void
assert_once_each(int first)
{
	struct event ev[4];

	for (int i = first; i < placed; i++) {
		int64_t deadline = mono_ms() + 15000;
		int n;

		assert_true(h_wait_events(&st, ids[i], EVENT_PICKUP_ALERT, 0, 1, 15000) >= 1);
		while (hits(i) < 1 && mono_ms() < deadline)
			h_sleep(20);
		assert_int_equal(hits(i), 1);
		n = h_events(&st, ids[i], EVENT_PICKUP_ALERT, ev, 4);
		for (int k = 1; k < n; k++)
			assert_string_equal(ev[k].event_id, ev[0].event_id);
	}
	h_sleep(500); /* and no second alert or POST from the other instance */
	for (int i = first; i < placed; i++) {
		char sql[300];

		assert_int_equal(hits(i), 1);
		snprintf(sql, sizeof(sql), "SELECT count(*) FROM notifier.alerts WHERE order_id = '%.64s'", ids[i]);
		assert_int_equal(h_pg_int(&pg, sql), 1);
		snprintf(sql, sizeof(sql), "SELECT count(*) FROM notifier.deliveries WHERE order_id = '%.64s' AND state = 'delivered'",
		    ids[i]);
		assert_int_equal(h_pg_int(&pg, sql), 1);
	}
	assert_int_equal(h_pg_int(&pg, "SELECT count(*) FROM notifier.alerts"), placed);
	assert_false(rcv.mixed);
}

static void
test_two_instances_alert_each_order_once(void **state)
{
	(void)state;
	place(6);
	assert_once_each(0);
}

/*
 * One instance killed with orders in flight: every order still gets one
 * alert and its callback.  An outbox row claimed by an instance that died
 * before publishing it (made here, claimed by "dead" for 3 s) is published
 * by the survivor once the lease ran out, and not before.
 */
static void
test_one_instance_killed(void **state)
{
	int before = placed;
	int64_t t0;

	(void)state;
	assert_true(h_pg_int(&pg, "INSERT INTO notifier.outbox(topic, payload, qos, retained, expiry_s, created_ms, claimed_by, "
				  "claimed_until_ms) VALUES ('pizza/users/zed/alerts', convert_to('{\"left\":\"by the dead\"}', "
				  "'UTF8'), 1, false, 60, 0, 'dead', "
				  "(extract(epoch from clock_timestamp()) * 1000)::bigint + 3000) RETURNING id") > 0);
	t0 = mono_ms();
	place(3);
	h_signal(&st, "notifier-1", SIGKILL);
	place(3);
	assert_once_each(before);
	/* the dead instance's row: published after its lease (3 s), by notifier-2 */
	while (h_count_topic(&st, "pizza/users/zed/alerts") < 1 && mono_ms() - t0 < 15000)
		h_sleep(50);
	assert_int_equal(h_count_topic(&st, "pizza/users/zed/alerts"), 1);
	assert_true(mono_ms() - t0 >= 2500);
	assert_int_equal(h_pg_int(&pg, "SELECT count(*) FROM notifier.outbox WHERE claimed_by = 'dead'"), 0);
	assert_int_equal(h_restart(&st, "notifier-1", SIGKILL), 0);
}

/* PostgreSQL restarted under both instances: they reconnect, and orders placed then get one alert each. */
static void
test_postgres_restart(void **state)
{
	int before = placed;

	(void)state;
	assert_int_equal(h_pg_restart(&pg), 0);
	place(3);
	assert_once_each(before);
	assert_int_equal(h_wait_log(&st, "notifier-1", "msg=\"reconnected to PostgreSQL\"", 1, 10000), 0);
	assert_int_equal(h_wait_log(&st, "notifier-2", "msg=\"reconnected to PostgreSQL\"", 1, 10000), 0);
	assert_int_equal(h_pg_int(&pg, "SELECT count(*) FROM notifier.outbox"), 0);
}

/* A bad --db is one clear line and a non-zero exit. */
static void
test_bad_db_url_refused(void **state)
{
	char *out = NULL, secret[600];
	char *const argv[] = { "notifier", "--callback-secret-file", secret, "--db", "mysql://n@127.0.0.1/pizza", NULL };
	char *const argv2[] = { "notifier", "--callback-secret-file", secret, "--db",
		"postgresql://pizza:not-the-password@127.0.0.1:1/pizza", NULL };

	(void)state;
	snprintf(secret, sizeof(secret), "%s/secrets/callback.secret", st.dir);
	assert_int_not_equal(h_run(&st, NULL, &out, argv), 0);
	assert_non_null(strstr(out, "unknown database URL"));
	free(out);
	assert_int_not_equal(h_run(&st, NULL, &out, argv2), 0);
	assert_non_null(strstr(out, "cannot connect to PostgreSQL"));
	assert_null(strstr(out, "not-the-password")); /* the URL is logged without its password */
	free(out);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_two_instances_alert_each_order_once),
		cmocka_unit_test(test_one_instance_killed),
		cmocka_unit_test(test_postgres_restart),
		cmocka_unit_test(test_bad_db_url_refused),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}

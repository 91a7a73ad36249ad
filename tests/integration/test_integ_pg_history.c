/*
 * order-history as two instances on one broker and one private PostgreSQL
 * (issue 16): each instance holds plain persistent subscriptions of its own
 * client id, so both receive every event; the store keeps each event once
 * (ON CONFLICT DO NOTHING) and either instance answers any read with the
 * same body.  One instance killed: the other stores and answers
 * everything, and the killed one comes back to a queue of duplicates only.
 * PostgreSQL restarted: both reconnect, and nothing placed meanwhile is lost.
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
static int port2;           /* history-2's read API (history-1 has st.history_port) */
static char auth[600];      /* "Authorization: Bearer <history secret>" */
static int placed;          /* orders placed so far, all alice's */
static char ids[32][NAME_MAX_LEN + 1];

static int
setup(void **state)
{
	char path[700], port[16], *secret;

	(void)state;
	if (h_stack_start(&st, "pg-history") != 0 || h_observer(&st) != 0 || h_pg_start(&st, &pg) != 0)
		return -1;
	port2 = h_free_port();
	snprintf(port, sizeof(port), "%d", port2);
	if (h_service(&st, "order-service", "order-service", NULL) < 0 ||
	    h_service(&st, "exec-1", "order-executor", "--id", "exec-1", "--stage-ms", "20", NULL) < 0 ||
	    h_service(&st, "history-1", "order-history", "--db", pg.url, "--client-id", "order-history-1", NULL) < 0 ||
	    h_service(&st, "history-2", "order-history", "--db", pg.url, "--client-id", "order-history-2", "--http-port",
		port, NULL) < 0)
		return -1;
	snprintf(path, sizeof(path), "%s/secrets/history.secret", st.dir);
	if ((secret = file_read_small(path, 4096)) == NULL)
		return -1;
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", secret);
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

/* GET path from the read API on port, with the history secret.  The status; the body in *body (caller frees). */
static long
get(int port, const char *path, char **body)
{
	const char *const headers[] = { auth, NULL };
	struct h_reply r;
	char url[300];
	long status;

	snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
	status = h_http("GET", url, headers, NULL, &r);
	*body = r.body;
	r.body = NULL;
	h_reply_free(&r);
	return status;
}

/* Waits until the order read from port is ready with its five stages (accepted .. ready); its body, or NULL. */
static char *
wait_ready(int port, const char *id, int timeout_ms)
{
	int64_t deadline = mono_ms() + timeout_ms;
	char path[200];

	snprintf(path, sizeof(path), "/v1/orders/%s", id);
	do {
		char *body;
		/* 404 before the first event, 503 while the store reconnects: asked again */
		if (get(port, path, &body) == 200) {
			json_t *o = json_loads(body, 0, NULL);
			int done = o != NULL && strcmp(json_string_value(json_object_get(o, "status")), "ready") == 0 &&
			    json_array_size(json_object_get(o, "timeline")) == 5 &&
			    json_is_array(json_object_get(o, "items"));
			json_decref(o);
			if (done)
				return body;
		}
		free(body);
		h_sleep(50);
	} while (mono_ms() < deadline);
	return NULL;
}

/* Places n orders as alice over MQTT and records their ids. */
static void
place(int n)
{
	for (int i = 0; i < n; i++) {
		char corr[32];
		snprintf(corr, sizeof(corr), "pg-%d", placed);
		assert_int_equal(h_place(&st, "alice", "margherita", 1, corr), 0);
		assert_int_equal(h_wait_reply(&st, corr, ids[placed], sizeof(ids[0]), 10000), 0);
		placed++;
	}
}

/* The sum of a metric's series (every label set) on the read API's port, or -1. */
static long
metric(int port, const char *name)
{
	char url[200], *line, *save = NULL;
	struct h_reply r;
	long sum = -1;

	snprintf(url, sizeof(url), "http://127.0.0.1:%d/metrics", port);
	if (h_http("GET", url, NULL, NULL, &r) == 200) {
		sum = 0;
		for (line = strtok_r(r.body, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
			size_t n = strlen(name);
			if (strncmp(line, name, n) == 0 && (line[n] == '{' || line[n] == ' ') && strrchr(line, ' ') != NULL)
				sum += strtol(strrchr(line, ' ') + 1, NULL, 10);
		}
	}
	h_reply_free(&r);
	return sum;
}

/* Waits until the metric's sum over the ports (port2 0: one) is at least want; returns its last value. */
static long
wait_metric(int port_a, int port_b, const char *name, long want, int timeout_ms)
{
	int64_t deadline = mono_ms() + timeout_ms;
	long v;

	while ((v = metric(port_a, name) + (port_b > 0 ? metric(port_b, name) : 0)) < want && mono_ms() < deadline)
		h_sleep(50);
	return v;
}

/* Every order placed so far is in PostgreSQL exactly once, with exactly its four kitchen statuses (prep .. ready). */
static void
assert_stored_once(void)
{
	char sql[300];

	for (int i = 0; i < placed; i++) {
		snprintf(sql, sizeof(sql), "SELECT count(*) FROM order_history.orders WHERE order_id = '%.64s'", ids[i]);
		assert_int_equal(h_pg_int(&pg, sql), 1);
		snprintf(sql, sizeof(sql), "SELECT count(*) FROM order_history.statuses WHERE order_id = '%.64s'", ids[i]);
		assert_int_equal(h_pg_int(&pg, sql), 4);
	}
	assert_int_equal(h_pg_int(&pg, "SELECT count(*) FROM order_history.orders"), placed);
	assert_int_equal(h_pg_int(&pg, "SELECT count(*) FROM order_history.statuses"), 4 * placed);
}

/* Waits until both instances show every order from first on ready; then they answer each, and alice's list, alike. */
static void
assert_read_alike(int first)
{
	char *a, *b;

	for (int i = first; i < placed; i++) {
		assert_non_null(a = wait_ready(st.history_port, ids[i], 15000));
		assert_non_null(b = wait_ready(port2, ids[i], 15000));
		assert_string_equal(a, b);
		free(a);
		free(b);
	}
	assert_int_equal(get(st.history_port, "/v1/users/alice/orders?limit=100", &a), 200);
	assert_int_equal(get(port2, "/v1/users/alice/orders?limit=100", &b), 200);
	assert_string_equal(a, b);
	free(a);
	free(b);
}

/* Orders flow with both instances up: each event is stored once, whichever instance got there first. */
static void
test_two_instances_store_each_event_once(void **state)
{
	(void)state;
	place(4);
	assert_read_alike(0);
	assert_stored_once();
	/*
	 * both instances received all 20 events (an OrderPlaced and the four
	 * kitchen statuses each): one stored each, the other found it stored
	 */
	assert_int_equal(wait_metric(st.history_port, port2, "pizza_history_events_stored_total", 5L * placed, 5000),
	    5L * placed);
	assert_true(wait_metric(st.history_port, port2, "pizza_duplicates_dropped_total", 5L * placed, 5000) >=
	    5L * placed);
}

/* One instance killed: orders placed meanwhile are stored and readable from the other; it comes back to duplicates. */
static void
test_one_instance_killed(void **state)
{
	int before = placed;
	char *a, *b, path[200];

	(void)state;
	h_signal(&st, "history-1", SIGKILL);
	place(3);
	for (int i = before; i < placed; i++) {
		assert_non_null(a = wait_ready(port2, ids[i], 15000));
		free(a);
	}
	assert_stored_once();

	/* back with its persistent session: the broker kept those 15 events for it, all stored already */
	assert_int_equal(h_restart(&st, "history-1", SIGKILL), 0);
	assert_true(wait_metric(st.history_port, 0, "pizza_duplicates_dropped_total", 5L * (placed - before), 15000) >=
	    5L * (placed - before));
	assert_int_equal(metric(st.history_port, "pizza_history_events_stored_total"), 0);
	assert_stored_once();
	for (int i = before; i < placed; i++) {
		snprintf(path, sizeof(path), "/v1/orders/%s", ids[i]);
		assert_int_equal(get(st.history_port, path, &a), 200);
		assert_int_equal(get(port2, path, &b), 200);
		assert_string_equal(a, b);
		free(a);
		free(b);
	}
}

/* PostgreSQL restarted under the instances: they reconnect, and what is placed meanwhile is stored once. */
static void
test_postgres_restart(void **state)
{
	int before = placed;

	(void)state;
	assert_int_equal(h_pg_restart(&pg), 0);
	place(2);
	assert_read_alike(before);
	assert_stored_once();
	/* both wrote after the restart (each got every event), so both found their connection lost and made a new one */
	assert_int_equal(h_wait_log(&st, "history-1", "msg=\"reconnected to PostgreSQL\"", 1, 10000), 0);
	assert_int_equal(h_wait_log(&st, "history-2", "msg=\"reconnected to PostgreSQL\"", 1, 10000), 0);
}

/* A bad --db is one clear line and a non-zero exit, never a SQLite file named like a URL. */
static void
test_bad_db_url_refused(void **state)
{
	char *out = NULL;
	char *const argv[] = { "order-history", "--http-port", "0", "--db", "mysql://history@127.0.0.1/pizza", NULL };
	char *const argv2[] = { "order-history", "--http-port", "0", "--db",
		"postgresql://pizza:not-the-password@127.0.0.1:1/pizza", NULL };

	(void)state;
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
		cmocka_unit_test(test_two_instances_store_each_event_once),
		cmocka_unit_test(test_one_instance_killed),
		cmocka_unit_test(test_postgres_restart),
		cmocka_unit_test(test_bad_db_url_refused),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}

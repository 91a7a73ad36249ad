/*
 * order-service reads from any of several order-history instances (issue
 * 16, docs/scaling.md): two order-history instances, each on its own
 * SQLite file with its own client id and HTTP port, both holding every
 * event; order-service given both URLs in --history-url.  A user's reads
 * (GET /v1/orders/{id}, GET /v1/users/{u}/orders) answer 200 with the
 * same bodies while either instance lives: SIGKILL the one that answered
 * and not one read in between gets a 503.  Both killed: 503 with
 * Retry-After.  One restarted: 200 again, the same body.  A bad URL list
 * is refused at start in one line naming the option.
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
#include <sys/wait.h>

#include "harness.h"
#include "util.h"

#define READS 20 /* reads made after each kill */

static struct stack st;
static int port2;        /* history-2's read API (history-1 has st.history_port) */
static char urls[200];   /* order-service's --history-url */
static char hauth[600];  /* "Authorization: Bearer <history secret>", to ask an instance directly */

static int
setup(void **state)
{
	char port[16], path[700], *secret;

	(void)state;
	if (h_stack_start(&st, "history-failover") != 0 || h_observer(&st) != 0)
		return -1;
	port2 = h_free_port();
	snprintf(port, sizeof(port), "%d", port2);
	/* history-1 first in the list: the one a healthy forwarder asks */
	snprintf(urls, sizeof(urls), "http://127.0.0.1:%d,http://127.0.0.1:%d", st.history_port, port2);
	/* each its own --db (data/<name>.db), client id and port; the last --history-url is the one taken */
	if (h_service(&st, "history-1", "order-history", "--client-id", "order-history-1", NULL) < 0 ||
	    h_service(&st, "history-2", "order-history", "--client-id", "order-history-2", "--http-port", port, NULL) <
		0 ||
	    h_service(&st, "order-service", "order-service", "--history-url", urls, NULL) < 0 ||
	    h_service(&st, "exec-1", "order-executor", "--id", "exec-1", "--stage-ms", "20", NULL) < 0)
		return -1;
	snprintf(path, sizeof(path), "%s/secrets/history.secret", st.dir);
	if ((secret = file_read_small(path, 4096)) == NULL)
		return -1;
	snprintf(hauth, sizeof(hauth), "Authorization: Bearer %s", secret);
	free(secret);
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	return h_stack_stop(&st);
}

/* GET path from port with the auth header line; fills *r (caller frees with h_reply_free()).  The status. */
static long
get(int port, const char *auth, const char *path, struct h_reply *r)
{
	const char *const headers[] = { auth, NULL };
	char url[300];

	snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
	return h_http("GET", url, headers, NULL, r);
}

/* alice's read through order-service (her bearer token), as her phone makes it. */
static long
read_as_alice(const char *path, struct h_reply *r)
{
	char auth[600];

	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", h_token(&st, "alice"));
	return get(st.http_port, auth, path, r);
}

/* 1 when body is an order that is ready with its five stages. */
static int
is_ready(const char *body)
{
	json_t *o = json_loads(body, 0, NULL);
	const char *status = json_string_value(json_object_get(o, "status"));
	int ready = status != NULL && strcmp(status, "ready") == 0 && json_array_size(json_object_get(o, "timeline")) == 5;

	json_decref(o);
	return ready;
}

/* Waits until port (with auth) answers path 200 with a ready order; that body (caller frees), or NULL. */
static char *
wait_ready(int port, const char *auth, const char *path, int timeout_ms)
{
	int64_t deadline = mono_ms() + timeout_ms;

	do {
		struct h_reply r;

		if (get(port, auth, path, &r) == 200 && is_ready(r.body)) {
			char *body = r.body;

			r.body = NULL;
			h_reply_free(&r);
			return body;
		}
		h_reply_free(&r);
		h_sleep(50);
	} while (mono_ms() < deadline);
	return NULL;
}

/* The value of the series line "name{labels}" on order-service's /metrics, or -1 when absent. */
static long
metric(const char *series)
{
	char url[200], line[300], *p;
	struct h_reply r;
	long v = -1;

	/* a sample line, not the HELP or TYPE line that also names the metric */
	snprintf(line, sizeof(line), "\n%s ", series);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/metrics", st.http_port);
	if (h_http("GET", url, NULL, NULL, &r) == 200 && (p = strstr(r.body, line)) != NULL)
		v = strtol(p + strlen(line), NULL, 10);
	h_reply_free(&r);
	return v;
}

/* pizza_history_backend_up for the URL of port. */
static long
backend_up(int port)
{
	char series[200];

	snprintf(series, sizeof(series), "pizza_history_backend_up{url=\"http://127.0.0.1:%d\"}", port);
	return metric(series);
}

static void
test_reads_survive_one_history_instance(void **state)
{
	char corr[] = "failover-1", id[NAME_MAX_LEN + 1], order_path[200], alice_auth[600];
	char *order, *list, *direct;
	struct h_reply r;

	(void)state;
	assert_int_equal(h_place(&st, "alice", "margherita", 1, corr), 0);
	assert_int_equal(h_wait_reply(&st, corr, id, sizeof(id), 10000), 0);
	snprintf(order_path, sizeof(order_path), "/v1/orders/%s", id);
	snprintf(alice_auth, sizeof(alice_auth), "Authorization: Bearer %s", h_token(&st, "alice"));

	/* both instances hold the whole order, and order-service answers what they hold */
	direct = wait_ready(st.history_port, hauth, order_path, 15000);
	assert_non_null(direct);
	free(direct);
	direct = wait_ready(port2, hauth, order_path, 15000);
	assert_non_null(direct);
	order = wait_ready(st.http_port, alice_auth, order_path, 15000);
	assert_non_null(order);
	assert_string_equal(order, direct);
	free(direct);
	assert_int_equal(read_as_alice("/v1/users/alice/orders", &r), 200);
	list = r.body;
	r.body = NULL;
	h_reply_free(&r);
	assert_non_null(strstr(list, id));
	assert_int_equal(backend_up(st.history_port), 1);
	assert_int_equal(backend_up(port2), 1);
	assert_int_equal(metric("pizza_history_retries_total"), 0);

	/* the instance order-service asks first dies: every read still answers, the same */
	h_signal(&st, "history-1", SIGKILL);
	for (int i = 0; i < READS; i++) {
		const char *path = i % 2 == 0 ? order_path : "/v1/users/alice/orders";
		long status = read_as_alice(path, &r);

		if (status != 200)
			fail_msg("read %d of %s after history-1 died: %ld %s", i, path, status, r.body);
		assert_string_equal(r.body, i % 2 == 0 ? order : list);
		h_reply_free(&r);
	}
	/* operators see which one is down, and that reads were retried on the other */
	assert_int_equal(backend_up(st.history_port), 0);
	assert_int_equal(backend_up(port2), 1);
	if (metric("pizza_history_retries_total") < 1)
		fail_msg("no retry counted in pizza_history_retries_total");
	assert_int_equal(h_wait_log(&st, "order-service", "order history is not answering; reads skip it", 1, 5000), 0);

	/* both dead: 503 with Retry-After, at once or after the forwards fail */
	h_signal(&st, "history-2", SIGKILL);
	for (int i = 0; i < READS / 2; i++) {
		const char *path = i % 2 == 0 ? order_path : "/v1/users/alice/orders";
		char retry_after[32];
		long status = read_as_alice(path, &r);

		if (status != 503)
			fail_msg("read %d of %s with both dead: %ld, want 503", i, path, status);
		h_reply_header(&r, "Retry-After", retry_after, sizeof(retry_after));
		if (atoi(retry_after) < 1)
			fail_msg("503 without a Retry-After: \"%s\"", retry_after);
		assert_non_null(strstr(r.body, "unavailable"));
		h_reply_free(&r);
	}
	assert_int_equal(backend_up(port2), 0);

	/* one back (its own SQLite file kept everything): reads answer again, the same body */
	assert_int_equal(h_restart(&st, "history-2", SIGKILL), 0);
	direct = wait_ready(st.http_port, alice_auth, order_path, 15000);
	assert_non_null(direct);
	assert_string_equal(direct, order);
	free(direct);
	assert_int_equal(read_as_alice("/v1/users/alice/orders", &r), 200);
	assert_string_equal(r.body, list);
	h_reply_free(&r);
	assert_int_equal(backend_up(port2), 1);
	assert_int_equal(h_wait_log(&st, "order-service", "order history answers again", 1, 5000), 0);
	free(order);
	free(list);
}

/* Runs order-service with --history-url value; its exit status, its stderr in out. */
static int
run_with_urls(const char *value, char *out, size_t n)
{
	char cmd[1200], db[500];
	FILE *p;
	size_t len;
	int rc;

	snprintf(db, sizeof(db), "%s/data/bad-urls.db", st.dir);
	snprintf(cmd, sizeof(cmd), "'%s/order-service' --http-port 0 --db '%s' --mqtt-url tcp://127.0.0.1:%d "
	    "--history-url '%s' 2>&1 >/dev/null", getenv("PIZZA_BIN"), db, st.port, value);
	if ((p = popen(cmd, "r")) == NULL)
		return -1;
	len = fread(out, 1, n - 1, p);
	out[len] = '\0';
	rc = pclose(p);
	return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static void
test_bad_url_list_is_refused(void **state)
{
	static const struct {
		const char *value, *said;
	} cases[] = {
		{ "http://127.0.0.1:1,,http://127.0.0.1:2", "an empty URL in the list" },
		{ "ftp://127.0.0.1:1", "not an http:// or https:// URL" },
		{ "http://127.0.0.1:1,http://127.0.0.1:1/", "listed twice" },
		{ "http://history:s3cret@127.0.0.1:1", "a URL with a user or password" },
		{ "http://a,http://b,http://c,http://d,http://e,http://f,http://g,http://h,http://i", "more than 8 URLs" },
	};
	char out[1000];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rc = run_with_urls(cases[i].value, out, sizeof(out));

		if (rc != 2 || strstr(out, "order-service: --history-url: ") == NULL || strstr(out, cases[i].said) == NULL)
			fail_msg("--history-url '%s': exit %d, said: %s", cases[i].value, rc, out);
		/* one line, and a password in the URL is not repeated */
		assert_ptr_equal(strchr(out, '\n'), out + strlen(out) - 1);
		assert_null(strstr(out, "s3cret"));
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reads_survive_one_history_instance),
		cmocka_unit_test(test_bad_url_list_is_refused),
	};

	return cmocka_run_group_tests_name("history_failover", tests, setup, teardown);
}

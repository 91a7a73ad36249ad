/*
 * Secure by default: broker accounts and ACLs, TLS, HTTP tokens and
 * per-user access, limits, and the callback address policy, against the
 * real stack started exactly as `make run` starts it (no allowlist).
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <strings.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "harness.h"
#include "mq.h"
#include "token.h"
#include "util.h"

static struct stack st;

static int
setup(void **state)
{
	(void)state;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	if (h_stack_start(&st, "security") != 0 || h_observer(&st) != 0)
		return -1;
	if (h_service(&st, "order-service", "order-service", "--rate-limit", "20", "--rate-burst", "30", NULL) < 0 ||
	    h_service(&st, "order-history", "order-history", NULL) < 0 ||
	    h_service(&st, "notifier", "notifier", NULL) < 0 ||
	    h_service(&st, "exec-1", "order-executor", "--id", "exec-1", "--stage-ms", "20", NULL) < 0)
		return -1;
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	int rc = h_stack_stop(&st);
	curl_global_cleanup();
	return rc;
}

struct reply {
	long status;
	char body[4096];
	char headers[2048];
};

/* One request; auth is a raw Authorization header value or NULL. */
static struct reply
call(const char *method, const char *path, const char *auth, const char *body)
{
	struct reply r;
	struct h_reply hr;
	char url[512], hdr[512];
	const char *headers[] = { "Content-Type: application/json", auth != NULL ? hdr : NULL, NULL };

	memset(&r, 0, sizeof(r));
	snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", st.http_port, path);
	if (auth != NULL)
		snprintf(hdr, sizeof(hdr), "Authorization: %s", auth);
	r.status = h_http(method, url, headers, body, &hr);
	str_copy(r.body, sizeof(r.body), hr.body);
	str_copy(r.headers, sizeof(r.headers), hr.headers);
	h_reply_free(&hr);
	return r;
}

static const char *
bearer(const char *user)
{
	static char buf[TOKEN_MAX + 16];

	snprintf(buf, sizeof(buf), "Bearer %s", h_token(&st, user));
	return buf;
}

static void
error_is(const struct reply *r, long status, const char *code)
{
	char want[64];

	if (r->status != status)
		fail_msg("want HTTP %ld, got %ld: %s", status, r->status, r->body);
	snprintf(want, sizeof(want), "\"error\":\"%s\"", code);
	if (strstr(r->body, want) == NULL)
		fail_msg("want error %s, got %s", code, r->body);
}

static void
order_id_of(const struct reply *r, char *id, size_t n)
{
	json_t *o = json_loads(r->body, 0, NULL);
	const char *s = json_string_value(json_object_get(o, "order_id"));

	assert_non_null(s);
	snprintf(id, n, "%s", s);
	json_decref(o);
}

static void
test_login_gives_a_working_token(void **state)
{
	struct reply r;
	json_t *o;
	char auth[TOKEN_MAX + 16];

	(void)state;
	r = call("POST", "/v1/login", NULL, "{\"user_id\":\"alice\",\"password\":\"wrong\"}");
	error_is(&r, 401, "unauthorized");
	r = call("POST", "/v1/login", NULL, "{\"user_id\":\"notifier\",\"password\":\"whatever\"}");
	error_is(&r, 401, "unauthorized");
	{
		char body[256];
		snprintf(body, sizeof(body), "{\"user_id\":\"alice\",\"password\":\"%s\"}", h_password(&st, "alice"));
		r = call("POST", "/v1/login", NULL, body);
	}
	assert_int_equal(r.status, 200);
	o = json_loads(r.body, 0, NULL);
	snprintf(auth, sizeof(auth), "Bearer %s", json_string_value(json_object_get(o, "token")));
	assert_string_equal(json_string_value(json_object_get(o, "user_id")), "alice");
	json_decref(o);
	r = call("POST", "/v1/orders", auth, "{\"items\":[{\"sku\":\"margherita\",\"qty\":1}]}");
	assert_int_equal(r.status, 202);
}

static void
test_orders_need_a_valid_token(void **state)
{
	struct reply r;
	char forged[TOKEN_MAX + 16], expired[TOKEN_MAX + 16], tok[TOKEN_MAX];

	(void)state;
	r = call("POST", "/v1/orders", NULL, "{\"items\":[{\"sku\":\"margherita\",\"qty\":1}]}");
	error_is(&r, 401, "unauthorized");
	assert_non_null(strcasestr(r.headers, "WWW-Authenticate: Bearer"));
	r = call("GET", "/v1/users/alice/orders", NULL, NULL);
	error_is(&r, 401, "unauthorized");
	r = call("POST", "/v1/orders", "Basic YWxpY2U6eA==", "{\"items\":[{\"sku\":\"margherita\",\"qty\":1}]}");
	error_is(&r, 401, "unauthorized");
	/* signed with another secret */
	{
		struct token_claims c = { .user = "alice", .issued = now_ms() / 1000, .expiry = now_ms() / 1000 + 600 };
		assert_int_equal(token_issue("not-the-server-secret-at-all", &c, tok), 0);
	}
	snprintf(forged, sizeof(forged), "Bearer %s", tok);
	r = call("POST", "/v1/orders", forged, "{\"items\":[{\"sku\":\"margherita\",\"qty\":1}]}");
	error_is(&r, 401, "unauthorized");
	/* the right secret, but expired */
	{
		char path[600], *secret;
		snprintf(path, sizeof(path), "%s/secrets/token.secret", st.dir);
		secret = file_read_small(path, 255);
		assert_non_null(secret);
		struct token_claims c = { .user = "alice", .issued = now_ms() / 1000 - 60, .expiry = now_ms() / 1000 - 1 };
		assert_int_equal(token_issue(secret, &c, tok), 0);
		free(secret);
	}
	snprintf(expired, sizeof(expired), "Bearer %s", tok);
	r = call("POST", "/v1/orders", expired, "{\"items\":[{\"sku\":\"margherita\",\"qty\":1}]}");
	error_is(&r, 401, "unauthorized");
	/* the menu is public */
	r = call("GET", "/v1/menu", NULL, NULL);
	assert_int_equal(r.status, 200);
}

static void
test_users_see_only_their_own_orders(void **state)
{
	struct reply r;
	char id[NAME_MAX_LEN + 1], path[128];

	(void)state;
	r = call("POST", "/v1/orders", bearer("alice"), "{\"items\":[{\"sku\":\"funghi\",\"qty\":1}]}");
	assert_int_equal(r.status, 202);
	order_id_of(&r, id, sizeof(id));
	assert_int_equal(h_wait_events(&st, id, EVENT_PICKUP_ALERT, 0, 1, 10000), 1);
	snprintf(path, sizeof(path), "/v1/orders/%s", id);
	for (int i = 0; i < 50; i++) {
		r = call("GET", path, bearer("alice"), NULL);
		if (r.status == 200)
			break;
		h_sleep(100);
	}
	assert_int_equal(r.status, 200);
	/* bob: the same answer as for an order that does not exist */
	r = call("GET", path, bearer("bob"), NULL);
	error_is(&r, 404, "not_found");
	r = call("GET", "/v1/orders/01NOSUCHORDER0000000000000", bearer("bob"), NULL);
	error_is(&r, 404, "not_found");
	r = call("GET", "/v1/users/alice/orders", bearer("bob"), NULL);
	error_is(&r, 404, "not_found");
	assert_null(strstr(r.body, id));
	/* and bob cannot place an order in alice's name */
	r = call("POST", "/v1/orders", bearer("bob"), "{\"user_id\":\"alice\",\"items\":[{\"sku\":\"funghi\",\"qty\":1}]}");
	error_is(&r, 403, "forbidden");
}

static void
test_limits(void **state)
{
	struct reply r;
	char *big = malloc(20000);
	int limited = 0;

	(void)state;
	memset(big, ' ', 19999);
	big[0] = '{';
	big[19998] = '}';
	big[19999] = '\0';
	r = call("POST", "/v1/orders", bearer("carol"), big);
	error_is(&r, 413, "too_large");
	free(big);
	/* a flood from one address: 429 with Retry-After once the burst is spent */
	for (int i = 0; i < 60 && !limited; i++) {
		r = call("GET", "/v1/menu", NULL, NULL);
		limited = r.status == 429;
	}
	assert_true(limited);
	error_is(&r, 429, "too_many_requests");
	assert_non_null(strcasestr(r.headers, "Retry-After: "));
	h_sleep(1600); /* the bucket refills */
	r = call("GET", "/v1/menu", NULL, NULL);
	assert_int_equal(r.status, 200);
}

static void
test_callbacks_may_not_reach_private_addresses(void **state)
{
	static const char *const urls[] = { "http://127.0.0.1:9/x", "http://169.254.169.254/latest/meta-data/",
		"http://[::1]:8080/", "http://localhost/hook", "http://10.1.2.3/hook", "http://192.168.1.1/",
		"http://[::ffff:127.0.0.1]/", "http://0.0.0.0:80/", "http://intranet/hook", NULL };
	struct reply r;

	(void)state;
	h_sleep(1600); /* let the rate limiter refill after the flood */
	for (int i = 0; urls[i] != NULL; i++) {
		char body[512];
		snprintf(body, sizeof(body), "{\"items\":[{\"sku\":\"funghi\",\"qty\":1}],\"callback_url\":\"%s\"}", urls[i]);
		r = call("POST", "/v1/orders", bearer("dave"), body);
		if (r.status != 422 || strstr(r.body, "callback_url") == NULL)
			fail_msg("%s: want 422 naming callback_url, got %ld %s", urls[i], r.status, r.body);
	}
	/* a public address is fine to place (the delivery will simply fail here, with no network) */
	r = call("POST", "/v1/orders", bearer("dave"),
	    "{\"items\":[{\"sku\":\"funghi\",\"qty\":1}],\"callback_url\":\"https://203.0.113.10/hook\"}");
	assert_int_equal(r.status, 202);
}

/* The notifier checks the address it is about to connect to, whatever order-service accepted. */
static void
test_notifier_refuses_private_destination_at_connect(void **state)
{
	struct reply r;
	char id[NAME_MAX_LEN + 1];
	int64_t deadline;

	(void)state;
	/* an order-service that lets loopback through, as a misconfiguration would; the notifier does not */
	h_signal(&st, "order-service", SIGTERM);
	assert_true(h_service(&st, "order-service-open", "order-service", "--callback-allow", "127.0.0.1", NULL) >= 0);
	r = call("POST", "/v1/orders", bearer("erin"),
	    "{\"items\":[{\"sku\":\"funghi\",\"qty\":1}],\"callback_url\":\"http://127.0.0.1:9/hook\"}");
	assert_int_equal(r.status, 202);
	order_id_of(&r, id, sizeof(id));
	deadline = mono_ms() + 15000;
	while (h_sql_int(&st, "notifier", "SELECT count(*) FROM deliveries WHERE order_id = ? AND state = 'failed'", id) != 1 &&
	    mono_ms() < deadline)
		h_sleep(100);
	assert_int_equal(h_sql_int(&st, "notifier", "SELECT attempts FROM deliveries WHERE order_id = ?", id), 1);
	assert_int_equal(h_sql_int(&st, "notifier",
			     "SELECT count(*) FROM deliveries WHERE order_id = ? AND last_error LIKE 'refused: destination 127.0.0.1%'",
			     id),
	    1);
}

static void
test_executor_cannot_publish_alerts(void **state)
{
	const char *fake = "{\"type\":\"PickupAlert\",\"event_id\":\"01FAKEALERT000000000000000\",\"order_id\":"
			   "\"01FAKEORDER000000000000000\",\"user_id\":\"alice\",\"at\":\"2026-01-01T00:00:00.000Z\","
			   "\"message\":\"free pizza at the back door\"}";

	(void)state;
	/* MQTT 5: the broker answers a publish its ACL denies with "not authorized" and drops it */
	assert_int_equal(h_publish(&st, "order-executor", "pizza/users/alice/alerts", fake, strlen(fake)), -1);
	assert_int_equal(h_publish(&st, "notifier", "pizza/users/alice/orders/new", "{\"items\":[]}", 12), -1);
	assert_int_equal(h_publish(&st, "order-history", "pizza/orders/placed", fake, strlen(fake)), -1);
	assert_int_equal(h_publish(&st, "alice", "pizza/users/alice/alerts", fake, strlen(fake)), -1);
	/* the control: what the ACL grants goes through */
	assert_int_equal(h_publish(&st, "order-executor", "pizza/deadletter", "{}", 2), 0);
	h_sleep(500);
	assert_int_equal(h_count_events(&st, "01FAKEORDER000000000000000", 0, 0), 0);
	assert_int_equal(h_count_topic(&st, "pizza/users/alice/orders/new"), 0);
}

/* What a hijacker's connection received: counts by whose topic it was. */
struct takeover {
	pthread_mutex_t lock;
	int bobs, alices;
};

static void
takeover_seen(void *arg, const struct mq_message *m)
{
	struct takeover *t = arg;

	pthread_mutex_lock(&t->lock);
	if (strncmp(m->topic, "pizza/users/bob/", 16) == 0)
		t->bobs++;
	else if (strncmp(m->topic, "pizza/users/alice/", 18) == 0)
		t->alices++;
	pthread_mutex_unlock(&t->lock);
}

/* A persistent session of user as client_id (subscribed to the user's topics), connected. */
static struct mq *
session(const char *user, const char *client_id, mq_handler h, void *arg)
{
	struct mq_config cfg;
	char url[64], filter[128], err[256];
	struct mq *mq;

	snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", st.port);
	snprintf(filter, sizeof(filter), "pizza/users/%s/#", user);
	memset(&cfg, 0, sizeof(cfg));
	cfg.url = url;
	cfg.client_id = client_id;
	cfg.username = user;
	cfg.password = h_password(&st, user);
	cfg.clean_start = 0;
	cfg.session_expiry_s = 3600;
	assert_non_null(mq = mq_new(&cfg, h, arg));
	assert_int_equal(mq_subscribe(mq, filter, 1, 0), 0);
	if (mq_connect(mq, 5000, err, sizeof(err)) != 0)
		fail_msg("%s cannot connect: %s", user, err);
	return mq;
}

/*
 * mosquitto 2.0 lets any account take over a session by its client id
 * (it compares no usernames).  What the hijacker gets of it must be
 * nothing: the broker checks each queued message against the new
 * connection's ACL, and our dynamic-security default is to deliver nothing
 * a role does not grant.  Bob's alert queued while he is away does not
 * reach alice connecting as his client id; her own marker, published
 * after it, does (so bob's would have come first).
 */
static void
test_session_takeover_by_another_user_gets_nothing(void **state)
{
	struct takeover t = { .lock = PTHREAD_MUTEX_INITIALIZER };
	const char *alert = "{\"type\":\"PickupAlert\",\"note\":\"bob's\"}";
	struct mq *bob, *alice;
	int64_t deadline;
	int mine = 0;

	(void)state;
	bob = session("bob", "phone-bob-tablet", takeover_seen, &t);
	mq_disconnect(bob, 2000);
	mq_free(bob);
	assert_int_equal(h_publish(&st, "notifier", "pizza/users/bob/alerts", alert, strlen(alert)), 0);
	alice = session("alice", "phone-bob-tablet", takeover_seen, &t);
	assert_int_equal(h_publish(&st, "notifier", "pizza/users/alice/alerts", alert, strlen(alert)), 0);
	for (deadline = mono_ms() + 10000; mono_ms() < deadline && !mine;) {
		pthread_mutex_lock(&t.lock);
		mine = t.alices > 0;
		pthread_mutex_unlock(&t.lock);
		if (!mine)
			h_sleep(20);
	}
	mq_disconnect(alice, 2000);
	mq_free(alice);
	assert_true(mine);
	assert_int_equal(t.bobs, 0);
}

static void
test_tls(void **state)
{
	char url[64], ca[600], wrong[600], *out = NULL, cmd[900], *lsan = getenv("LSAN_OPTIONS");
	int rc;
	char *const good[] = { "phone-sim", "order", "--user", "bob", "--item", "funghi", "--mqtt-url", url, "--cafile", ca,
		"--timeout", "20", NULL };
	char *const bad[] = { "phone-sim", "order", "--user", "bob", "--item", "funghi", "--mqtt-url", url, "--cafile", wrong,
		NULL };

	(void)state;
	snprintf(url, sizeof(url), "mqtts://localhost:%d", st.tls_port);
	snprintf(ca, sizeof(ca), "%s/build/test-run/certs/ca.crt", getenv("PIZZA_ROOT") ? getenv("PIZZA_ROOT") : ".");
	snprintf(wrong, sizeof(wrong), "%s/other-ca", st.dir);
	snprintf(cmd, sizeof(cmd), "'%s/broker-config/make-certs' '%s' >/dev/null", getenv("PIZZA_ROOT") ? getenv("PIZZA_ROOT") : ".",
	    wrong);
	assert_int_equal(system(cmd), 0);
	strncat(wrong, "/ca.crt", sizeof(wrong) - strlen(wrong) - 1);
	/*
	 * Under make test-sanitize: paho's TLS thread can still be exiting when
	 * phone-sim does, which LSan reports as OpenSSL leaks.  The suppressions
	 * in tests/sanitizers/lsan.supp name the OpenSSL calls, and only a full
	 * unwind through libcrypto (no frame pointers) reaches them.
	 */
	if (lsan != NULL) {
		lsan = strdup(lsan);
		snprintf(cmd, sizeof(cmd), "%s:fast_unwind_on_malloc=0", lsan);
		setenv("LSAN_OPTIONS", cmd, 1);
	}
	assert_int_equal(h_run(&st, h_password(&st, "bob"), &out, good), 0);
	assert_non_null(strstr(out, "PICKUP"));
	free(out);
	rc = h_run(&st, h_password(&st, "bob"), &out, bad);
	if (rc != 1 || strstr(out, "certificate verify failed") == NULL)
		print_message("phone-sim with the wrong CA: exit %d, output:\n%s\n", rc, out);
	if (lsan != NULL) {
		setenv("LSAN_OPTIONS", lsan, 1);
		free(lsan);
	}
	assert_int_equal(rc, 1);
	assert_non_null(strstr(out, "certificate verify failed"));
	free(out);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_login_gives_a_working_token),
		cmocka_unit_test(test_orders_need_a_valid_token),
		cmocka_unit_test(test_users_see_only_their_own_orders),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_callbacks_may_not_reach_private_addresses),
		cmocka_unit_test(test_executor_cannot_publish_alerts),
		cmocka_unit_test(test_session_takeover_by_another_user_gets_nothing),
		cmocka_unit_test(test_tls),
		cmocka_unit_test(test_notifier_refuses_private_destination_at_connect),
	};

	return cmocka_run_group_tests_name("security", tests, setup, teardown);
}

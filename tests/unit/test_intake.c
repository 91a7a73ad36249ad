/*
 * The order intake shared by the MQTT and HTTP front doors: request
 * validation, then placing orders through a real store in a fresh
 * temporary directory.  MQTT is replaced: the Makefile links this test with
 * --wrap=mq_publish,--wrap=mq_window_free, so the outbox's publishes land
 * in the fake broker below, which acknowledges each at once.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "mq.h"
#include "netcheck.h"
#include "order-service/intake.h"
#include "order-service/store.h"
#include "outbox.h"
#include "topic.h"
#include "util.h"
#include "tmpdb.h"

/* ---- the fake broker: counts OrderPlaced publishes and acknowledges each at once ---- */

static struct {
	pthread_mutex_t lock;
	int placed;
} fake = { PTHREAD_MUTEX_INITIALIZER, 0 };

int __wrap_mq_publish(struct mq *mq, const struct mq_publish *p);
int __wrap_mq_window_free(struct mq *mq);

int
__wrap_mq_publish(struct mq *mq, const struct mq_publish *p)
{
	(void)mq;
	pthread_mutex_lock(&fake.lock);
	fake.placed += strcmp(p->topic, TOPIC_PLACED) == 0;
	pthread_mutex_unlock(&fake.lock);
	if (p->done != NULL)
		p->done(p->done_arg, 1);
	return 0;
}

int
__wrap_mq_window_free(struct mq *mq)
{
	(void)mq;
	return MQ_WINDOW;
}

int __wrap_mq_window(struct mq *mq);

int
__wrap_mq_window(struct mq *mq)
{
	(void)mq;
	return MQ_WINDOW;
}

/* OrderPlaced events published so far, and starts counting again. */
static int
published(void)
{
	int n;

	pthread_mutex_lock(&fake.lock);
	n = fake.placed;
	fake.placed = 0;
	pthread_mutex_unlock(&fake.lock);
	return n;
}

static int
check(const char *user, const char *json, struct event *ev, struct intake_result *res)
{
	json_t *req = json_loads(json, 0, NULL);
	int rc;

	memset(res, 0, sizeof(*res));
	if (req == NULL)
		return 99;
	rc = intake_validate(user, req, ev, res);
	json_decref(req);
	return rc;
}

static void
expect_invalid(const char *user, const char *json, const char *field)
{
	struct event ev;
	struct intake_result res;

	assert_int_equal(check(user, json, &ev, &res), -1);
	assert_int_equal(res.status, INTAKE_INVALID);
	assert_string_equal(res.error, "invalid_field");
	if (strstr(res.detail, field) == NULL)
		fail_msg("detail '%s' does not name '%s'", res.detail, field);
}

static void
test_valid_request_builds_order_placed(void **state)
{
	struct event ev;
	struct intake_result res;

	(void)state;
	assert_int_equal(check("alice", "{\"items\":[{\"sku\":\"margherita\",\"qty\":2},{\"sku\":\"funghi\",\"qty\":1}],"
					 "\"callback_url\":\"https://shop.example/hook\"}",
			     &ev, &res),
	    0);
	assert_int_equal(ev.type, EVENT_ORDER_PLACED);
	assert_string_equal(ev.user_id, "alice");
	assert_int_equal(strlen(ev.order_id), ID_LEN);
	assert_int_equal(ev.n_items, 2);
	assert_string_equal(ev.items[0].sku, "margherita");
	assert_int_equal(ev.items[0].qty, 2);
	assert_string_equal(ev.callback_url, "https://shop.example/hook");
	/* a matching user_id in the body is fine */
	assert_int_equal(check("alice", "{\"user_id\":\"alice\",\"items\":[{\"sku\":\"funghi\",\"qty\":1}]}", &ev, &res), 0);
	assert_string_equal(ev.callback_url, "");
}

static void
test_each_order_gets_its_own_id(void **state)
{
	struct event a, b;
	struct intake_result res;

	(void)state;
	assert_int_equal(check("bob", "{\"items\":[{\"sku\":\"funghi\",\"qty\":1}]}", &a, &res), 0);
	assert_int_equal(check("bob", "{\"items\":[{\"sku\":\"funghi\",\"qty\":1}]}", &b, &res), 0);
	assert_string_not_equal(a.order_id, b.order_id);
}

static void
test_invalid_requests_name_the_field(void **state)
{
	(void)state;
	expect_invalid("alice", "[]", "object");
	expect_invalid("alice", "{}", "items");
	expect_invalid("alice", "{\"items\":[]}", "items");
	expect_invalid("alice", "{\"items\":{}}", "items");
	expect_invalid("alice", "{\"items\":[{\"sku\":\"sushi\",\"qty\":1}]}", "items[0].sku");
	expect_invalid("alice", "{\"items\":[{\"sku\":\"funghi\",\"qty\":1},{\"sku\":\"funghi\",\"qty\":0}]}", "items[1].qty");
	expect_invalid("alice", "{\"items\":[{\"sku\":\"funghi\",\"qty\":100}]}", "items[0].qty");
	expect_invalid("alice", "{\"items\":[{\"sku\":\"funghi\",\"qty\":1.5}]}", "items[0].qty");
	expect_invalid("alice", "{\"items\":[{\"sku\":7,\"qty\":1}]}", "items[0].sku");
	expect_invalid("alice", "{\"items\":[\"funghi\"]}", "items[0]");
	expect_invalid("alice", "{\"user_id\":\"bob\",\"items\":[{\"sku\":\"funghi\",\"qty\":1}]}", "user_id");
	expect_invalid("alice", "{\"user_id\":5,\"items\":[{\"sku\":\"funghi\",\"qty\":1}]}", "user_id");
	expect_invalid("al ice", "{\"items\":[{\"sku\":\"funghi\",\"qty\":1}]}", "user_id");
	expect_invalid("", "{\"items\":[{\"sku\":\"funghi\",\"qty\":1}]}", "user_id");
	expect_invalid("alice", "{\"items\":[{\"sku\":\"funghi\",\"qty\":1}],\"callback_url\":\"ftp://x\"}", "callback_url");
	expect_invalid("alice", "{\"items\":[{\"sku\":\"funghi\",\"qty\":1}],\"callback_url\":42}", "callback_url");
	expect_invalid("alice", "{\"items\":[{\"sku\":\"funghi\",\"qty\":1}],\"callback_url\":\"javascript:alert(1)\"}",
	    "callback_url");
}

static void
test_item_count_boundary(void **state)
{
	char buf[4096];
	struct event ev;
	struct intake_result res;

	(void)state;
	for (int n = 20; n <= 21; n++) {
		size_t o = (size_t)snprintf(buf, sizeof(buf), "{\"items\":[");
		for (int i = 0; i < n; i++)
			o += (size_t)snprintf(buf + o, sizeof(buf) - o, "%s{\"sku\":\"funghi\",\"qty\":99}", i ? "," : "");
		snprintf(buf + o, sizeof(buf) - o, "]}");
		if (n == 20)
			assert_int_equal(check("alice", buf, &ev, &res), 0);
		else
			expect_invalid("alice", buf, "items");
	}
}

static void
test_long_callback_url(void **state)
{
	char url[EVENT_URL_MAX + 2], buf[EVENT_URL_MAX + 200];
	struct event ev;
	struct intake_result res;

	(void)state;
	memset(url, 'a', sizeof(url));
	memcpy(url, "https://", 8);
	url[EVENT_URL_MAX] = '\0'; /* exactly the limit */
	snprintf(buf, sizeof(buf), "{\"items\":[{\"sku\":\"funghi\",\"qty\":1}],\"callback_url\":\"%s\"}", url);
	assert_int_equal(check("alice", buf, &ev, &res), 0);
	url[EVENT_URL_MAX] = 'a';
	url[EVENT_URL_MAX + 1] = '\0'; /* one over */
	snprintf(buf, sizeof(buf), "{\"items\":[{\"sku\":\"funghi\",\"qty\":1}],\"callback_url\":\"%s\"}", url);
	expect_invalid("alice", buf, "callback_url");
}

static void
test_idempotency_keys(void **state)
{
	char longkey[IDEMPOTENCY_KEY_MAX + 2];

	(void)state;
	assert_true(intake_key_valid("a"));
	assert_true(intake_key_valid("order-2026-11-23 #1 ~!"));
	assert_false(intake_key_valid(""));
	assert_false(intake_key_valid("tab\there"));
	assert_false(intake_key_valid("caf\xc3\xa9"));
	memset(longkey, 'k', sizeof(longkey));
	longkey[IDEMPOTENCY_KEY_MAX] = '\0';
	assert_true(intake_key_valid(longkey));
	longkey[IDEMPOTENCY_KEY_MAX] = 'k';
	longkey[IDEMPOTENCY_KEY_MAX + 1] = '\0';
	assert_false(intake_key_valid(longkey));
}

struct fixture {
	char dir[TMPDB_DIR_MAX];
	char path[TMPDB_PATH_MAX];
	struct order_store *s;
	struct outbox *ob;
	struct intake *in;
};

static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (f == NULL)
		return -1;
	if (tmpdb_make(f->dir, f->path, "intake", "order-service.db") != 0) {
		free(f);
		return -1;
	}
	if ((f->s = ostore_open(f->path)) == NULL || (f->ob = ostore_outbox_new(f->s, NULL, 10000)) == NULL ||
	    (f->in = intake_new(f->s, f->ob, NULL)) == NULL)
		return -1;
	published();
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;
	intake_free(f->in);
	outbox_free(f->ob);
	ostore_close(f->s);
	tmpdb_remove(f->dir, f->path);
	free(f);
	return 0;
}

/* intake_place() of the JSON text request for alice. */
static void
place(struct intake *in, const char *json, const char *key, struct intake_result *res)
{
	json_t *req = json_loads(json, 0, NULL);

	assert_non_null(req);
	intake_place(in, "alice", req, "http", key, res);
	json_decref(req);
}

static void
test_place_records_the_order(void **state)
{
	struct fixture *f = *state;
	struct intake_result res;

	place(f->in, "{\"items\":[{\"sku\":\"margherita\",\"qty\":1}]}", NULL, &res);
	assert_int_equal(res.status, INTAKE_OK);
	assert_false(res.replayed);
	assert_int_equal(strlen(res.order_id), ID_LEN);
	/* published before intake_place() returned: a waiting caller commits and publishes itself */
	assert_int_equal(published(), 1);
	/* refused: nothing recorded */
	place(f->in, "{\"items\":[{\"sku\":\"sushi\",\"qty\":1}]}", NULL, &res);
	assert_int_equal(res.status, INTAKE_INVALID);
	outbox_flush(f->ob);
	assert_int_equal(published(), 0);
}

static void
test_place_raw_refuses_before_parsing(void **state)
{
	struct fixture *f = *state;
	struct intake_result res;
	const char *ok = "{\"items\":[{\"sku\":\"funghi\",\"qty\":2}]}";
	char *big = malloc(EVENT_MAX_BYTES + 2);

	assert_non_null(big);
	memset(big, ' ', EVENT_MAX_BYTES + 1);
	big[EVENT_MAX_BYTES + 1] = '\0';
	intake_place_raw(f->in, "alice", big, EVENT_MAX_BYTES + 1, "mqtt", NULL, &res);
	free(big);
	assert_int_equal(res.status, INTAKE_INVALID);
	assert_string_equal(res.error, "too_large");
	intake_place_raw(f->in, "alice", "{\"items\":", 9, "mqtt", NULL, &res);
	assert_int_equal(res.status, INTAKE_INVALID);
	assert_string_equal(res.error, "invalid_json");
	intake_place_raw(f->in, "alice", ok, strlen(ok), "mqtt", NULL, &res);
	assert_int_equal(res.status, INTAKE_OK);
	assert_int_equal(published(), 1);
}

static void
test_place_with_idempotency_key(void **state)
{
	struct fixture *f = *state;
	struct intake_result first, again, other;

	place(f->in, "{\"items\":[{\"sku\":\"funghi\",\"qty\":1}]}", "retry-1", &first);
	assert_int_equal(first.status, INTAKE_OK);
	/* the same request (its keys in another order) with the same key: the first order, nothing new */
	place(f->in, "{ \"items\" : [ {\"qty\":1, \"sku\":\"funghi\"} ] }", "retry-1", &again);
	assert_int_equal(again.status, INTAKE_OK);
	assert_true(again.replayed);
	assert_string_equal(again.order_id, first.order_id);
	place(f->in, "{\"items\":[{\"sku\":\"funghi\",\"qty\":2}]}", "retry-1", &other);
	assert_int_equal(other.status, INTAKE_CONFLICT);
	assert_string_equal(other.error, "idempotency_conflict");
	outbox_flush(f->ob);
	assert_int_equal(published(), 1);
	/* a key that is no key */
	place(f->in, "{\"items\":[{\"sku\":\"funghi\",\"qty\":1}]}", "tab\there", &other);
	assert_int_equal(other.status, INTAKE_INVALID);
	assert_int_equal(intake_expire_keys(f->in, -60000), 1); /* "older than a minute from now": every key */
	place(f->in, "{\"items\":[{\"sku\":\"funghi\",\"qty\":1}]}", "retry-1", &again);
	assert_int_equal(again.status, INTAKE_OK);
	assert_false(again.replayed);
	assert_string_not_equal(again.order_id, first.order_id);
	assert_int_equal(published(), 1);
}

static void
test_callback_address_policy(void **state)
{
	struct fixture *f = *state;
	struct intake_result res;
	struct intake *in;
	struct allowlist *allow;
	char err[200];

	place(f->in, "{\"items\":[{\"sku\":\"funghi\",\"qty\":1}],\"callback_url\":\"http://127.0.0.1:9/hook\"}", NULL, &res);
	assert_int_equal(res.status, INTAKE_INVALID);
	assert_non_null(strstr(res.detail, "PIZZA_CALLBACK_ALLOW"));
	assert_non_null(allow = allowlist_parse("127.0.0.1", err, sizeof(err)));
	assert_non_null(in = intake_new(f->s, f->ob, allow));
	place(in, "{\"items\":[{\"sku\":\"funghi\",\"qty\":1}],\"callback_url\":\"http://127.0.0.1:9/hook\"}", NULL, &res);
	assert_int_equal(res.status, INTAKE_OK);
	intake_free(in);
	allowlist_free(allow);
	assert_int_equal(published(), 1);
}

/* intake_place_async()'s answers, collected. */
struct answers {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int n, ok;
	char ids[64][NAME_MAX_LEN + 1];
};

static void
answered(void *arg, const struct intake_result *res)
{
	struct answers *a = arg;

	pthread_mutex_lock(&a->lock);
	if (res->status == INTAKE_OK && a->ok < 64)
		str_copy(a->ids[a->ok++], sizeof(a->ids[0]), res->order_id);
	a->n++;
	pthread_cond_signal(&a->cond);
	pthread_mutex_unlock(&a->lock);
}

static void
test_async_orders_are_group_committed(void **state)
{
	struct fixture *f = *state;
	struct answers a = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, { { 0 } } };
	json_t *req = json_loads("{\"items\":[{\"sku\":\"margherita\",\"qty\":3}]}", 0, NULL);

	assert_non_null(req);
	for (int i = 0; i < 50; i++)
		intake_place_async(f->in, "alice", req, "http", NULL, answered, &a);
	json_decref(req);
	pthread_mutex_lock(&a.lock);
	while (a.n < 50)
		pthread_cond_wait(&a.cond, &a.lock);
	pthread_mutex_unlock(&a.lock);
	assert_int_equal(a.ok, 50);
	for (int i = 1; i < 50; i++)
		assert_string_not_equal(a.ids[i], a.ids[i - 1]);
	/* the committer leaves publishing to the main loop, which it wakes */
	assert_int_equal(published(), 0);
	assert_true(outbox_wait(f->ob, 1000));
	outbox_flush(f->ob);
	assert_int_equal(published(), 50);
}

static void
test_stopped_intake_answers_internal(void **state)
{
	struct fixture *f = *state;
	struct answers a = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, { { 0 } } };
	struct intake_result res;
	json_t *req = json_loads("{\"items\":[{\"sku\":\"funghi\",\"qty\":1}]}", 0, NULL);

	intake_stop(f->in);
	intake_stop(f->in);
	intake_place(f->in, "alice", req, "mqtt", NULL, &res);
	assert_int_equal(res.status, INTAKE_INTERNAL);
	assert_string_equal(res.error, "internal");
	/* answered at once, before intake_place_async() returns */
	intake_place_async(f->in, "alice", req, "http", NULL, answered, &a);
	assert_int_equal(a.n, 1);
	assert_int_equal(a.ok, 0);
	json_decref(req);
	outbox_flush(f->ob);
	assert_int_equal(published(), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid_request_builds_order_placed),
		cmocka_unit_test(test_each_order_gets_its_own_id),
		cmocka_unit_test(test_invalid_requests_name_the_field),
		cmocka_unit_test(test_item_count_boundary),
		cmocka_unit_test(test_long_callback_url),
		cmocka_unit_test(test_idempotency_keys),
		cmocka_unit_test_setup_teardown(test_place_records_the_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_place_raw_refuses_before_parsing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_place_with_idempotency_key, setup, teardown),
		cmocka_unit_test_setup_teardown(test_callback_address_policy, setup, teardown),
		cmocka_unit_test_setup_teardown(test_async_orders_are_group_committed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stopped_intake_answers_internal, setup, teardown),
	};

	return cmocka_run_group_tests_name("intake", tests, NULL, NULL);
}

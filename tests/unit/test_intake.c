/* Order request validation, shared by the MQTT and HTTP front doors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "order-service/intake.h"

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
	};

	return cmocka_run_group_tests_name("intake_validation", tests, NULL, NULL);
}

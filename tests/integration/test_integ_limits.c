/*
 * Per-user order limits: one account flooding order requests over MQTT is
 * answered too_many_requests past its allowance, while another account's
 * orders are placed as usual; over HTTP the same user gets 429 with
 * Retry-After.  Operators see the refusals counted by reason.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"
#include "util.h"

#define FLOOD 300
#define RATE "5"
#define BURST "10"

static struct stack st;

static int
setup(void **state)
{
	(void)state;
	if (h_stack_start(&st, "limits") != 0 || h_observer(&st) != 0)
		return -1;
	if (h_service(&st, "order-service", "order-service", "--order-rate-limit", RATE, "--order-rate-burst", BURST, NULL) <
		0 ||
	    h_service(&st, "exec-1", "order-executor", "--id", "exec-1", "--stage-ms", "0", NULL) < 0)
		return -1;
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	return h_stack_stop(&st);
}

static void
test_mqtt_flood_is_limited_per_account(void **state)
{
	char corr[32], out[320], id[NAME_MAX_LEN + 1], url[128], *metrics = NULL;
	int accepted = 0, limited = 0, other = 0;
	int64_t t0, took;

	(void)state;
	t0 = mono_ms();
	for (int i = 0; i < FLOOD; i++) {
		snprintf(corr, sizeof(corr), "flood-%d", i);
		assert_int_equal(h_place(&st, "alice", "margherita", 1, corr), 0);
	}
	/* bob orders in the middle of it, and is answered as usual: within a second */
	assert_int_equal(h_place(&st, "bob", "funghi", 1, "bob-1"), 0);
	assert_int_equal(h_wait_reply(&st, "bob-1", id, sizeof(id), 1000), 0);
	for (int i = 0; i < FLOOD; i++) {
		snprintf(corr, sizeof(corr), "flood-%d", i);
		switch (h_wait_reply(&st, corr, out, sizeof(out), 10000)) {
		case 0:
			accepted++;
			break;
		case 1:
			if (strncmp(out, "too_many_requests: ", 19) == 0)
				limited++;
			else
				other++;
			break;
		default:
			fail_msg("no answer to request %d", i);
		}
	}
	took = mono_ms() - t0;
	assert_int_equal(other, 0);
	/* the burst, and what the rate refilled while the flood was answered */
	if (accepted < 10 || accepted > 10 + 5 * (int)(took / 1000 + 1))
		fail_msg("%d of %d accepted in %lld ms: want the burst of 10 plus 5 a second", accepted, FLOOD,
		    (long long)took);
	assert_int_equal(accepted + limited, FLOOD);
	/* operators see why */
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/metrics", st.http_port);
	assert_int_equal(h_http_get(url, &metrics), 200);
	snprintf(out, sizeof(out), "pizza_orders_refused_total{via=\"mqtt\",reason=\"too_many_requests\"} %d\n", limited);
	if (strstr(metrics, out) == NULL)
		fail_msg("metrics lack: %s", out);
	free(metrics);
}

static void
test_http_orders_are_limited_per_user(void **state)
{
	char url[128], auth[600];
	const char *headers[3];
	int accepted = 0, limited = 0;
	struct h_reply r;

	(void)state;
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/orders", st.http_port);
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", h_token(&st, "carol"));
	headers[0] = auth;
	headers[1] = "Content-Type: application/json";
	headers[2] = NULL;
	for (int i = 0; i < 30; i++) {
		long status = h_http("POST", url, headers, "{\"items\":[{\"sku\":\"margherita\",\"qty\":1}]}", &r);
		char retry[16];

		if (status == 202)
			accepted++;
		else if (status == 429) {
			limited++;
			assert_non_null(strstr(r.body, "\"too_many_requests\""));
			assert_true(atoi(h_reply_header(&r, "Retry-After", retry, sizeof(retry))) >= 1);
		} else
			fail_msg("POST /v1/orders answered %ld: %s", status, r.body);
		h_reply_free(&r);
	}
	assert_true(accepted >= 10 && accepted <= 10 + 5 * 3);
	assert_int_equal(accepted + limited, 30);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mqtt_flood_is_limited_per_account),
		cmocka_unit_test(test_http_orders_are_limited_per_user),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}

/*
 * test_deadletter.c - dead-letter messages (deadletter.h): base64 and the
 * JSON published to pizza/deadletter.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "deadletter.h"
#include "util.h"

static void
expect_b64(const void *in, size_t len, const char *want)
{
	char *out = deadletter_base64(in, len);

	assert_non_null(out);
	assert_string_equal(out, want);
	free(out);
}

static void
test_base64_vectors(void **state)
{
	static const unsigned char bin[] = { 0x00, 0xff, 0xfe, 0x3e, 0x3f };

	(void)state;
	/* RFC 4648 section 10 */
	expect_b64("", 0, "");
	expect_b64("f", 1, "Zg==");
	expect_b64("fo", 2, "Zm8=");
	expect_b64("foo", 3, "Zm9v");
	expect_b64("foob", 4, "Zm9vYg==");
	expect_b64("fooba", 5, "Zm9vYmE=");
	expect_b64("foobar", 6, "Zm9vYmFy");
	/* binary, including the two last alphabet characters */
	expect_b64(bin, 3, "AP/+");
	expect_b64(bin, 5, "AP/+Pj8=");
	expect_b64("\xfb\xff", 2, "+/8=");
}

/* Decodes a dead letter and checks the fields common to all. */
static json_t *
decode(const char *msg, const char *reason, size_t size)
{
	json_error_t jerr;
	json_t *o = json_loads(msg, JSON_REJECT_DUPLICATES, &jerr);
	int64_t at;

	if (o == NULL)
		fail_msg("not JSON (%s): %.200s", jerr.text, msg);
	assert_string_equal(json_string_value(json_object_get(o, "type")), "DeadLetter");
	assert_string_equal(json_string_value(json_object_get(o, "service")), "order-history");
	assert_string_equal(json_string_value(json_object_get(o, "reason")), reason);
	assert_int_equal(time_parse_rfc3339(json_string_value(json_object_get(o, "at")), &at), 0);
	assert_true(llabs((long long)(at - now_ms())) < 60000);
	assert_true(json_is_integer(json_object_get(o, "size")));
	assert_int_equal(json_integer_value(json_object_get(o, "size")), size);
	assert_true(json_is_boolean(json_object_get(o, "truncated")));
	return o;
}

static void
test_text_payload(void **state)
{
	const char *payload = "{\"type\":\"Nope\",\"text\":\"caf\xc3\xa9\"}";
	char *msg;
	json_t *o;

	(void)state;
	msg = deadletter_encode("order-history", "pizza/orders/placed", payload, strlen(payload),
	    "unknown event type 'Nope'");
	assert_non_null(msg);
	o = decode(msg, "unknown event type 'Nope'", strlen(payload));
	assert_string_equal(json_string_value(json_object_get(o, "topic")), "pizza/orders/placed");
	assert_string_equal(json_string_value(json_object_get(o, "payload")), payload);
	assert_null(json_object_get(o, "payload_base64"));
	assert_true(json_is_false(json_object_get(o, "truncated")));
	json_decref(o);
	free(msg);
}

static void
test_binary_payload(void **state)
{
	static const char with_nul[] = { 'a', '\0', 'b' };
	static const char bad_utf8[] = { 'o', 'k', (char)0xff };
	char *msg;
	json_t *o;

	(void)state;
	msg = deadletter_encode("order-history", "pizza/orders/placed", with_nul, sizeof(with_nul), "malformed JSON");
	assert_non_null(msg);
	o = decode(msg, "malformed JSON", 3);
	assert_string_equal(json_string_value(json_object_get(o, "payload_base64")), "YQBi");
	assert_null(json_object_get(o, "payload"));
	assert_true(json_is_false(json_object_get(o, "truncated")));
	json_decref(o);
	free(msg);

	/* not UTF-8: base64 too */
	msg = deadletter_encode("order-history", "pizza/orders/placed", bad_utf8, sizeof(bad_utf8), "malformed JSON");
	assert_non_null(msg);
	o = decode(msg, "malformed JSON", 3);
	assert_string_equal(json_string_value(json_object_get(o, "payload_base64")), "b2v/");
	assert_null(json_object_get(o, "payload"));
	json_decref(o);
	free(msg);
}

static void
test_no_topic_empty_payload(void **state)
{
	char *msg;
	json_t *o;

	(void)state;
	msg = deadletter_encode("order-history", NULL, "", 0, "empty");
	assert_non_null(msg);
	o = decode(msg, "empty", 0);
	assert_true(json_is_null(json_object_get(o, "topic")));
	assert_string_equal(json_string_value(json_object_get(o, "payload")), "");
	json_decref(o);
	free(msg);
}

static void
test_truncated(void **state)
{
	size_t len = DEADLETTER_MAX_PAYLOAD + 100;
	char *big = malloc(len), *msg;
	json_t *o;

	(void)state;
	assert_non_null(big);
	memset(big, 'x', len);
	msg = deadletter_encode("order-history", "pizza/orders/placed", big, len, "payload too large");
	assert_non_null(msg);
	o = decode(msg, "payload too large", len);
	assert_true(json_is_true(json_object_get(o, "truncated")));
	assert_int_equal(json_string_length(json_object_get(o, "payload")), DEADLETTER_MAX_PAYLOAD);
	json_decref(o);
	free(msg);

	/* exactly at the limit is kept whole */
	msg = deadletter_encode("order-history", "t", big, DEADLETTER_MAX_PAYLOAD, "r");
	assert_non_null(msg);
	o = decode(msg, "r", DEADLETTER_MAX_PAYLOAD);
	assert_true(json_is_false(json_object_get(o, "truncated")));
	assert_int_equal(json_string_length(json_object_get(o, "payload")), DEADLETTER_MAX_PAYLOAD);
	json_decref(o);
	free(msg);

	/* a binary payload is cut the same way before encoding */
	big[0] = '\0';
	msg = deadletter_encode("order-history", "t", big, len, "r");
	assert_non_null(msg);
	o = decode(msg, "r", len);
	assert_true(json_is_true(json_object_get(o, "truncated")));
	assert_int_equal(json_string_length(json_object_get(o, "payload_base64")),
	    (DEADLETTER_MAX_PAYLOAD + 2) / 3 * 4);
	json_decref(o);
	free(msg);
	free(big);
}

/* A reason quoting hostile bytes (invalid UTF-8) must still appear, made safe. */
static void
test_reason_with_invalid_utf8_is_kept(void **state)
{
	char *m = deadletter_encode("svc", "pizza/orders/placed", "x", 1, "near '\xff\xfe' oops");
	json_t *o;

	(void)state;
	assert_non_null(m);
	o = json_loads(m, 0, NULL);
	assert_non_null(o);
	assert_string_equal(json_string_value(json_object_get(o, "reason")), "near '?" "?' oops");
	json_decref(o);
	free(m);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reason_with_invalid_utf8_is_kept),
		cmocka_unit_test(test_base64_vectors),
		cmocka_unit_test(test_text_payload),
		cmocka_unit_test(test_binary_payload),
		cmocka_unit_test(test_no_topic_empty_payload),
		cmocka_unit_test(test_truncated),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

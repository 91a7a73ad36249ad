/* Callback signatures: known vectors, verification, tampering, clock skew. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "sign.h"

#define SECRET "whsec_test_secret_0123456789"
#define BODY "{\"type\":\"OrderReady\",\"order_id\":\"o1\"}"

/* Reference: printf '1700000000.{"type":"OrderReady","order_id":"o1"}' | openssl dgst -sha256 -hmac whsec_test_secret_0123456789 */
#define V1 "97670e28e16ef351581e4a9afa9b1be1f7cdcdb77e03a145d1caa4c220fbc6ac"

static void
test_header_format(void **state)
{
	char h[SIGN_HEADER_MAX];

	(void)state;
	assert_int_equal(sign_header(SECRET, 1700000000, BODY, strlen(BODY), h), 0);
	assert_int_equal(strncmp(h, "t=1700000000,v1=", 16), 0);
	assert_int_equal(strlen(h), 16 + 64);
	for (size_t i = 16; i < strlen(h); i++)
		assert_non_null(strchr("0123456789abcdef", h[i]));
}

static void
test_matches_openssl_reference(void **state)
{
	char h[SIGN_HEADER_MAX];

	(void)state;
	assert_int_equal(sign_header(SECRET, 1700000000, BODY, strlen(BODY), h), 0);
	assert_string_equal(h, "t=1700000000,v1=" V1);
}

/* RFC 4231 test case 2, whole and split in two parts: what bearer tokens are signed with. */
static void
test_hmac_rfc4231(void **state)
{
	const char *want = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
	char hex[65];

	(void)state;
	assert_int_equal(sign_hmac_sha256_hex("Jefe", "what do ya want for nothing?", 28, NULL, 0, hex), 0);
	assert_string_equal(hex, want);
	assert_int_equal(sign_hmac_sha256_hex("Jefe", "what do ya ", 11, "want for nothing?", 17, hex), 0);
	assert_string_equal(hex, want);
}

static void
test_verify_accepts_own_signature(void **state)
{
	char h[SIGN_HEADER_MAX];

	(void)state;
	assert_int_equal(sign_header(SECRET, 1700000000, BODY, strlen(BODY), h), 0);
	assert_int_equal(sign_verify(SECRET, h, BODY, strlen(BODY), 1700000000, 300), 0);
	assert_int_equal(sign_verify(SECRET, h, BODY, strlen(BODY), 1700000299, 300), 0);
}

static void
test_verify_refuses_tampering(void **state)
{
	char h[SIGN_HEADER_MAX], bad[SIGN_HEADER_MAX];
	const char *other = "{\"type\":\"OrderReady\",\"order_id\":\"o2\"}";

	(void)state;
	assert_int_equal(sign_header(SECRET, 1700000000, BODY, strlen(BODY), h), 0);
	assert_int_equal(sign_verify(SECRET, h, other, strlen(other), 1700000000, 300), -1);   /* body changed */
	assert_int_equal(sign_verify("another-secret-xyz", h, BODY, strlen(BODY), 1700000000, 300), -1);
	memcpy(bad, h, sizeof(bad));
	bad[2] = '2'; /* t changed: the v1 no longer matches */
	assert_int_equal(sign_verify(SECRET, bad, BODY, strlen(BODY), 2700000000LL, 300000000000LL), -1);
	memcpy(bad, h, sizeof(bad));
	bad[strlen(bad) - 1] = bad[strlen(bad) - 1] == '0' ? '1' : '0';
	assert_int_equal(sign_verify(SECRET, bad, BODY, strlen(BODY), 1700000000, 300), -1);
}

static void
test_verify_refuses_old_or_future(void **state)
{
	char h[SIGN_HEADER_MAX];

	(void)state;
	assert_int_equal(sign_header(SECRET, 1700000000, BODY, strlen(BODY), h), 0);
	assert_int_equal(sign_verify(SECRET, h, BODY, strlen(BODY), 1700000301, 300), -1); /* replayed later */
	assert_int_equal(sign_verify(SECRET, h, BODY, strlen(BODY), 1699999699, 300), -1); /* from the future */
}

static void
test_verify_refuses_malformed_headers(void **state)
{
	const char *bad[] = { "", "t=", "t=abc,v1=00", "v1=00,t=1", "t=1700000000", "t=1700000000,v1=",
		"t=1700000000,v1=zz", "t=1700000000,v0=" V1, NULL };

	(void)state;
	for (int i = 0; bad[i] != NULL; i++)
		assert_int_equal(sign_verify(SECRET, bad[i], BODY, strlen(BODY), 1700000000, 300), -1);
	assert_int_equal(sign_verify(SECRET, NULL, BODY, strlen(BODY), 1700000000, 300), -1);
}

static void
test_no_secret_no_signature(void **state)
{
	char h[SIGN_HEADER_MAX];

	(void)state;
	assert_int_equal(sign_header("", 1, BODY, strlen(BODY), h), -1);
	assert_int_equal(sign_header(NULL, 1, BODY, strlen(BODY), h), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_header_format),
		cmocka_unit_test(test_matches_openssl_reference),
		cmocka_unit_test(test_hmac_rfc4231),
		cmocka_unit_test(test_verify_accepts_own_signature),
		cmocka_unit_test(test_verify_refuses_tampering),
		cmocka_unit_test(test_verify_refuses_old_or_future),
		cmocka_unit_test(test_verify_refuses_malformed_headers),
		cmocka_unit_test(test_no_secret_no_signature),
	};

	return cmocka_run_group_tests_name("sign", tests, NULL, NULL);
}

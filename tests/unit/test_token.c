/*
 * test_token.c - HTTP bearer tokens v2 (token.h): known vectors, expiry,
 * tampering of every field, wrong secrets, malformed bodies signed with the
 * right secret (v1 ones too), hostile token text, claims left untouched on
 * failure; and the HTTP login's password check against mosquitto
 * password-file lines and hashes, built here (PBKDF2-SHA512, the $7$
 * format), by token_password_hash() and by mosquitto_passwd itself.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "sign.h"
#include "token.h"
#include "util.h"

#define SECRET "pizza-test-secret-0123"
#define ISSUED INT64_C(1700000000)
#define EXP INT64_C(1700003600)
/* Reference: printf 'v2.alice..1700000000.1700003600' | openssl dgst -sha256 -hmac pizza-test-secret-0123 */
#define ALICE_TOKEN "v2.alice..1700000000.1700003600.5a89a011fa36d800d779798a9dfde17187f7b7d8009b1c66028dba84af036497"
/* Reference: printf 'v2.alice.phone-1.1700000000.1700003600' | openssl dgst -sha256 -hmac pizza-test-secret-0123 */
#define PHONE_TOKEN                                                                                                    \
	"v2.alice.phone-1.1700000000.1700003600.d75c851bcc47a3453f955f7c68346bede7522705d6bfc8f49422721eaa94deca"
/* A v1 token as v1's token_issue() wrote it, valid under v1 until 1700000000.
 * Reference: printf 'v1.alice.1700000000' | openssl dgst -sha256 -hmac pizza-test-secret-0123 */
#define V1_TOKEN "v1.alice.1700000000.7e98049fe3564512a2c797d145764bef334c26899490b7aa1280c5e8a14f5296"

/* ---- tokens ---------------------------------------------------------------- */

/* Fails the test unless all n bytes at p are still the 'X' they were set to before a failing call of fn. */
static void
untouched(const void *p, size_t n, const char *fn)
{
	const unsigned char *b = p;

	for (size_t i = 0; i < n; i++)
		if (b[i] != 'X')
			fail_msg("%s failed but wrote byte %zu of its output", fn, i);
}

static struct token_claims
claims(const char *user, const char *device, int64_t issued, int64_t expiry)
{
	struct token_claims c;

	memset(&c, 0, sizeof(c));
	assert_int_equal(str_copy(c.user, sizeof(c.user), user), 0);
	assert_int_equal(str_copy(c.device, sizeof(c.device), device), 0);
	c.issued = issued;
	c.expiry = expiry;
	return c;
}

/*
 * token_verify() that checks what it hands back: on success the claims
 * want (when want is not NULL); on failure not one byte of *c written.
 */
static int
verify(const char *secret, const char *token, int64_t now, const struct token_claims *want)
{
	struct token_claims c;
	int rc;

	memset(&c, 'X', sizeof(c));
	rc = token_verify(secret, token, now, &c);
	if (rc == 0) {
		if (want == NULL)
			fail_msg("accepted '%s'", token);
		assert_string_equal(c.user, want->user);
		assert_string_equal(c.device, want->device);
		assert_int_equal(c.issued, want->issued);
		assert_int_equal(c.expiry, want->expiry);
	} else {
		assert_int_equal(rc, -1);
		untouched(&c, sizeof(c), "token_verify");
	}
	return rc;
}

/* body signed by hand, as only a holder of secret could, with its signature: "<body>.<hex>". */
static void
forge(const char *secret, const char *body, char *out, size_t n)
{
	char hex[65];

	assert_int_equal(sign_hmac_sha256_hex(secret, body, strlen(body), NULL, 0, hex), 0);
	snprintf(out, n, "%s.%s", body, hex);
}

static void
test_issue_known_vector(void **state)
{
	struct token_claims c = claims("alice", "", ISSUED, EXP);
	char tok[TOKEN_MAX];

	(void)state;
	assert_int_equal(token_issue(SECRET, &c, tok), 0);
	assert_string_equal(tok, ALICE_TOKEN);
	c = claims("alice", "phone-1", ISSUED, EXP);
	assert_int_equal(token_issue(SECRET, &c, tok), 0);
	assert_string_equal(tok, PHONE_TOKEN);
	/* and both check, with their claims */
	assert_int_equal(verify(SECRET, PHONE_TOKEN, ISSUED, &c), 0);
	c = claims("alice", "", ISSUED, EXP);
	assert_int_equal(verify(SECRET, ALICE_TOKEN, ISSUED, &c), 0);
}

static void
test_round_trip(void **state)
{
	static const char *const users[] = { "alice", "Bob_2", "x", "carol-the-cook" };
	static const char *const devices[] = { "", "phone-1", "d", "TABLET_9" };
	char tok[TOKEN_MAX], longname[NAME_MAX_LEN + 1];
	struct token_claims c;

	(void)state;
	for (size_t i = 0; i < sizeof(users) / sizeof(users[0]); i++)
		for (size_t j = 0; j < sizeof(devices) / sizeof(devices[0]); j++) {
			c = claims(users[i], devices[j], ISSUED, EXP);
			assert_int_equal(token_issue(SECRET, &c, tok), 0);
			assert_int_equal(verify(SECRET, tok, EXP - 1, &c), 0);
		}
	/* issued == expiry is a claim (a token that never works), and 0 is a time */
	c = claims("alice", "", 0, 0);
	assert_int_equal(token_issue(SECRET, &c, tok), 0);
	assert_int_equal(strncmp(tok, "v2.alice..0.0.", 14), 0);
	assert_int_equal(strlen(tok), 14 + 64);
	c = claims("alice", "", 0, 1);
	assert_int_equal(token_issue(SECRET, &c, tok), 0);
	assert_int_equal(verify(SECRET, tok, 0, &c), 0);
	/* the longest user and device, and the largest times, still fit TOKEN_MAX */
	memset(longname, 'n', NAME_MAX_LEN);
	longname[NAME_MAX_LEN] = '\0';
	c = claims(longname, longname, INT64_MAX, INT64_MAX);
	assert_int_equal(token_issue(SECRET, &c, tok), 0);
	assert_int_equal(strlen(tok), 3 + NAME_MAX_LEN + 1 + NAME_MAX_LEN + 1 + 19 + 1 + 19 + 1 + 64);
	assert_true(strlen(tok) < TOKEN_MAX);
	c = claims(longname, longname, 0, INT64_MAX);
	assert_int_equal(token_issue(SECRET, &c, tok), 0);
	assert_int_equal(verify(SECRET, tok, now_ms() / 1000, &c), 0);
}

/* A token works from before its issue time (clocks differ) up to the second before its expiry, never after. */
static void
test_expiry(void **state)
{
	struct token_claims c = claims("alice", "", ISSUED, EXP);

	(void)state;
	assert_int_equal(verify(SECRET, ALICE_TOKEN, 0, &c), 0);
	assert_int_equal(verify(SECRET, ALICE_TOKEN, ISSUED - 1, &c), 0);
	assert_int_equal(verify(SECRET, ALICE_TOKEN, EXP - 1, &c), 0);
	assert_int_equal(verify(SECRET, ALICE_TOKEN, EXP, NULL), -1);
	assert_int_equal(verify(SECRET, ALICE_TOKEN, EXP + 1, NULL), -1);
	assert_int_equal(verify(SECRET, ALICE_TOKEN, INT64_MAX, NULL), -1);
	assert_int_equal(verify(SECRET, PHONE_TOKEN, EXP, NULL), -1);
}

static void
test_wrong_secret(void **state)
{
	(void)state;
	assert_int_equal(verify("pizza-test-secret-0124", ALICE_TOKEN, ISSUED, NULL), -1);
	assert_int_equal(verify("another-secret-entirely", ALICE_TOKEN, ISSUED, NULL), -1);
	assert_int_equal(verify("another-secret-entirely", PHONE_TOKEN, ISSUED, NULL), -1);
	/* a secret that is a prefix of the right one, or the right one and more */
	assert_int_equal(verify("pizza-test-secret-012", ALICE_TOKEN, ISSUED, NULL), -1);
	assert_int_equal(verify(SECRET "4", ALICE_TOKEN, ISSUED, NULL), -1);
}

/* Secrets shorter than 16 bytes are refused both ways. */
static void
test_short_secret(void **state)
{
	struct token_claims c = claims("alice", "", ISSUED, EXP);
	char tok[TOKEN_MAX];

	(void)state;
	assert_int_equal(token_issue("0123456789abcdef", &c, tok), 0); /* 16: enough */
	assert_int_equal(verify("0123456789abcdef", tok, ISSUED, &c), 0);
	assert_int_equal(token_issue("0123456789abcde", &c, tok), -1);
	assert_int_equal(token_issue("", &c, tok), -1);
	assert_int_equal(token_issue(NULL, &c, tok), -1);
	forge("0123456789abcde", "v2.alice..1700000000.1700003600", tok, sizeof(tok));
	assert_int_equal(verify("0123456789abcde", tok, ISSUED, NULL), -1);
	assert_int_equal(verify("", tok, ISSUED, NULL), -1);
	assert_int_equal(verify(NULL, ALICE_TOKEN, ISSUED, NULL), -1);
}

/* token_issue() refuses claims it could not write as one unambiguous token, and leaves out alone. */
static void
test_issue_refuses_bad_input(void **state)
{
	static const char *const bad_names[] = { "al.ice", "al ice", "alice/#", "alice+", "ali\nce", "é" };
	char tok[TOKEN_MAX], longname[NAME_MAX_LEN + 2];
	struct token_claims c;

	(void)state;
	memset(longname, 'n', NAME_MAX_LEN + 1);
	longname[NAME_MAX_LEN + 1] = '\0';
	for (size_t i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++) {
		c = claims(bad_names[i], "", ISSUED, EXP); /* a dot would split the token */
		assert_int_equal(token_issue(SECRET, &c, tok), -1);
		c = claims("alice", bad_names[i], ISSUED, EXP);
		assert_int_equal(token_issue(SECRET, &c, tok), -1);
	}
	c = claims("", "", ISSUED, EXP);
	assert_int_equal(token_issue(SECRET, &c, tok), -1);
	c = claims("", "phone-1", ISSUED, EXP);
	assert_int_equal(token_issue(SECRET, &c, tok), -1);
	/* a name of NAME_MAX_LEN + 1 characters, not terminated in its array */
	c = claims("alice", "", ISSUED, EXP);
	memcpy(c.user, longname, sizeof(c.user));
	assert_int_equal(token_issue(SECRET, &c, tok), -1);
	c = claims("alice", "", ISSUED, EXP);
	memcpy(c.device, longname, sizeof(c.device));
	assert_int_equal(token_issue(SECRET, &c, tok), -1);
	/* times */
	c = claims("alice", "", -1, EXP);
	assert_int_equal(token_issue(SECRET, &c, tok), -1);
	c = claims("alice", "", -1, -1);
	assert_int_equal(token_issue(SECRET, &c, tok), -1);
	c = claims("alice", "", INT64_MIN, EXP);
	assert_int_equal(token_issue(SECRET, &c, tok), -1);
	c = claims("alice", "", EXP + 1, EXP); /* issued after it expires */
	assert_int_equal(token_issue(SECRET, &c, tok), -1);
	assert_int_equal(token_issue(SECRET, NULL, tok), -1);
	/* none of the refusals wrote out */
	memset(tok, 'X', sizeof(tok));
	c = claims("alice", "", EXP + 1, EXP);
	assert_int_equal(token_issue(SECRET, &c, tok), -1);
	untouched(tok, sizeof(tok), "token_issue");
}

/* Any change to any part of a token makes it invalid. */
static void
test_tampering(void **state)
{
	static const char *const others[] = {
		"v2.bob..1700000000.1700003600",          /* another user */
		"v2.alicf..1700000000.1700003600",
		"v2.alice.phone-1.1700000000.1700003600", /* a device added */
		"v2.alice..1700000001.1700003600",        /* issued later: after a revocation */
		"v2.alice..1600000000.1700003600",        /* issued earlier */
		"v2.alice..1700000000.1800003600",        /* a later expiry */
		"v2.alice..01700000000.1700003600",       /* same numbers, other text */
		"v2.alice..1700000000.01700003600",
		"v1.alice..1700000000.1700003600",        /* another version */
	};
	static const char *const phone_others[] = {
		"v2.alice..1700000000.1700003600",         /* the device taken away */
		"v2.alice.phone-2.1700000000.1700003600",  /* another device */
		"v2.alice.phone-1.1700000001.1700003600",
		"v2.alice.phone-1.1700000000.1700003601",
		"v2.alice.phone-1..1700000000.1700003600", /* fields moved */
		"v2.alice.phone-1.1700000000..1700003600",
		"v2.phone-1.alice.1700000000.1700003600",  /* user and device swapped */
	};
	char tok[TOKEN_MAX + 8], sig[65];
	const char *const toks[] = { ALICE_TOKEN, PHONE_TOKEN };
	size_t len;

	(void)state;
	/* every single character changed, one at a time, to a letter and to a dot */
	for (size_t t = 0; t < 2; t++) {
		len = strlen(toks[t]);
		for (size_t i = 0; i < len; i++) {
			memcpy(tok, toks[t], len + 1);
			tok[i] = tok[i] == 'a' ? 'b' : 'a';
			if (verify(SECRET, tok, ISSUED, NULL) != -1)
				fail_msg("accepted with character %zu changed: %s", i, tok);
			tok[i] = toks[t][i] == '.' ? '0' : '.';
			if (verify(SECRET, tok, ISSUED, NULL) != -1)
				fail_msg("accepted with character %zu changed: %s", i, tok);
		}
	}
	/* the same signature under other claims */
	len = strlen(ALICE_TOKEN);
	memcpy(sig, ALICE_TOKEN + len - 64, 65);
	for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++) {
		snprintf(tok, sizeof(tok), "%s.%s", others[i], sig);
		if (verify(SECRET, tok, ISSUED, NULL) != -1)
			fail_msg("accepted %s", tok);
	}
	memcpy(sig, PHONE_TOKEN + strlen(PHONE_TOKEN) - 64, 65);
	for (size_t i = 0; i < sizeof(phone_others) / sizeof(phone_others[0]); i++) {
		snprintf(tok, sizeof(tok), "%s.%s", phone_others[i], sig);
		if (verify(SECRET, tok, ISSUED, NULL) != -1)
			fail_msg("accepted %s", tok);
	}
	/* the signature in capitals, cut short, or with more after it */
	snprintf(tok, sizeof(tok), "%s", ALICE_TOKEN);
	for (size_t i = len - 64; i < len; i++)
		if (tok[i] >= 'a' && tok[i] <= 'f')
			tok[i] = (char)(tok[i] - 'a' + 'A');
	assert_int_equal(verify(SECRET, tok, ISSUED, NULL), -1);
	snprintf(tok, sizeof(tok), "%.*s", (int)len - 1, ALICE_TOKEN);
	assert_int_equal(verify(SECRET, tok, ISSUED, NULL), -1);
	snprintf(tok, sizeof(tok), "%s0", ALICE_TOKEN);
	assert_int_equal(verify(SECRET, tok, ISSUED, NULL), -1);
	snprintf(tok, sizeof(tok), "%s.", ALICE_TOKEN);
	assert_int_equal(verify(SECRET, tok, ISSUED, NULL), -1);
	snprintf(tok, sizeof(tok), "%s\n", ALICE_TOKEN);
	assert_int_equal(verify(SECRET, tok, ISSUED, NULL), -1);
}

/* Tokens signed with the right secret but not of the form token_issue() writes. */
static void
test_signed_but_malformed(void **state)
{
	static const char *const bodies[] = {
		"v1.alice.1700003600",                      /* v1: no issue time, no device */
		"v1.alice.1700000000.1700003600",
		"v1.alice..1700000000.1700003600",
		"v2.alice.1700003600",                      /* v1's fields under v2 */
		"v2.alice.1700000000.1700003600",           /* no device field */
		"v2.alice..1700003600",                     /* no issue time */
		"v2.alice...1700003600",
		"v2.alice..1700000000.",
		"v2.alice..1700000000",
		"v2.alice.phone-1.1700000000",
		"v2..phone-1.1700000000.1700003600",        /* no user */
		"v2...1700000000.1700003600",
		"v2.al ice..1700000000.1700003600",         /* not a valid name */
		"v2.alice.pho ne.1700000000.1700003600",
		"v2.alice.phone/#.1700000000.1700003600",
		"v2.alice.phone+.1700000000.1700003600",
		"v2.alice..-5.1700003600",                  /* negative times */
		"v2.alice..1700000000.-5",
		"v2.alice..-0.1700003600",
		"v2.alice..+1700000000.1700003600",         /* a sign */
		"v2.alice..1700000000.+1700003600",
		"v2.alice.. 1700000000.1700003600",         /* a space */
		"v2.alice..1700000000. 1700003600",
		"v2.alice..1700000000 .1700003600",
		"v2.alice..\t1700000000.1700003600",
		"v2.alice..01700000000.1700003600",         /* a leading zero: one text per number */
		"v2.alice..1700000000.01700003600",
		"v2.alice..00.1700003600",
		"v2.alice..17e8.1700003600",                /* not decimal */
		"v2.alice..1700000000.0x65535fff",
		"v2.alice..1700000000.1700003600.5",        /* a field more */
		"v2.alice.phone-1.x.1700000000.1700003600",
		"v2.alice..1700003601.1700003600",          /* issued after it expires */
		"v3.alice..1700000000.1700003600",          /* another version */
		"V2.alice..1700000000.1700003600",
		"v2alice..1700000000.1700003600",
		".v2.alice..1700000000.1700003600",
	};
	char tok[TOKEN_MAX + 64];

	(void)state;
	for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
		forge(SECRET, bodies[i], tok, sizeof(tok));
		if (verify(SECRET, tok, 0, NULL) != -1)
			fail_msg("accepted %s", tok);
	}
	/* a v1 token as v1 issued it, checked while it was still valid under v1 */
	assert_int_equal(verify(SECRET, V1_TOKEN, ISSUED - 1, NULL), -1);
	/* a well-formed body signed the same way works: the refusals above are about the form */
	forge(SECRET, "v2.alice..0.1700003600", tok, sizeof(tok));
	{
		struct token_claims c = claims("alice", "", 0, EXP);

		assert_int_equal(verify(SECRET, tok, 0, &c), 0);
	}
}

static void
test_hostile_text(void **state)
{
	static const char *const bad[] = {
		"", "v2", "v2.", "v2.alice", "v2.alice.", "v2.alice..", "v2.alice..1700000000",
		"v2.alice..1700000000.1700003600", "v2.alice..1700000000.1700003600.",
		"Bearer " ALICE_TOKEN, " " ALICE_TOKEN, ALICE_TOKEN " ", "v2.alice..1700000000.1700003600.zz",
		"..........", "v2.\xff\xfe..1700000000.1700003600.5a89a011fa36d800d779798a9dfde17187f7b7d8009b1c66028dba84af036497",
	};
	char *big;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (verify(SECRET, bad[i], 0, NULL) != -1)
			fail_msg("accepted '%s'", bad[i]);
	assert_int_equal(verify(SECRET, NULL, 0, NULL), -1);
	assert_int_equal(token_verify(SECRET, ALICE_TOKEN, 0, NULL), -1);
	/* long: a megabyte of a plausible token, and of digits */
	assert_non_null(big = malloc(1 << 20));
	memset(big, 'a', 1 << 20);
	memcpy(big, "v2.alice..1700000000.1700003600.", 32);
	big[(1 << 20) - 1] = '\0';
	assert_int_equal(verify(SECRET, big, 0, NULL), -1);
	memset(big, '9', 1 << 20);
	memcpy(big, "v2.alice..", 10);
	big[(1 << 20) - 1] = '\0';
	assert_int_equal(verify(SECRET, big, 0, NULL), -1);
	/* a user, then a device, one character longer than any valid name */
	memcpy(big, "v2.", 3);
	memset(big + 3, 'n', NAME_MAX_LEN + 1);
	snprintf(big + 3 + NAME_MAX_LEN + 1, 200, "..1700000000.1700003600.%.64s",
	    ALICE_TOKEN + strlen(ALICE_TOKEN) - 64);
	assert_int_equal(verify(SECRET, big, 0, NULL), -1);
	memcpy(big, "v2.alice.", 9);
	memset(big + 9, 'n', NAME_MAX_LEN + 1);
	snprintf(big + 9 + NAME_MAX_LEN + 1, 200, ".1700000000.1700003600.%.64s", ALICE_TOKEN + strlen(ALICE_TOKEN) - 64);
	assert_int_equal(verify(SECRET, big, 0, NULL), -1);
	free(big);
}

/* The largest times token_issue() can write work. */
static void
test_expiry_largest(void **state)
{
	struct token_claims c = claims("alice", "", 0, INT64_MAX);
	char tok[TOKEN_MAX + 64];

	(void)state;
	forge(SECRET, "v2.alice..0.9223372036854775807", tok, sizeof(tok));
	assert_int_equal(verify(SECRET, tok, EXP, &c), 0);
	c = claims("alice", "phone-1", INT64_MAX, INT64_MAX);
	forge(SECRET, "v2.alice.phone-1.9223372036854775807.9223372036854775807", tok, sizeof(tok));
	assert_int_equal(verify(SECRET, tok, EXP, &c), 0);
	assert_int_equal(verify(SECRET, tok, INT64_MAX, NULL), -1);
}

/*
 * A time field past what int64 holds was read by strtoll() as LLONG_MAX
 * without a check of ERANGE, so a v1 token signed with such an expiry never
 * expired instead of being refused as malformed (found by this test, issue
 * 13; only a holder of the secret could sign one).  v2 has two time fields.
 */
static void
test_expiry_overflow(void **state)
{
	char tok[TOKEN_MAX + 64];

	(void)state;
	/* Reference: printf 'v2.alice..0.99999999999999999999' | openssl dgst -sha256 -hmac pizza-test-secret-0123 */
	forge(SECRET, "v2.alice..0.99999999999999999999", tok, sizeof(tok));
	assert_string_equal(tok, "v2.alice..0.99999999999999999999."
				 "ad2a3f49c156b6dec3efe61619a3ffcf51106d3ef6fa65e441b1b8242dddcc07");
	assert_int_equal(verify(SECRET, tok, EXP, NULL), -1);
	/* Reference: printf 'v2.alice..99999999999999999999.99999999999999999999' | openssl dgst -sha256 -hmac
	 * pizza-test-secret-0123 */
	forge(SECRET, "v2.alice..99999999999999999999.99999999999999999999", tok, sizeof(tok));
	assert_string_equal(tok, "v2.alice..99999999999999999999.99999999999999999999."
				 "06653adddf0f05b7b7dd2bfcbdcf5295c9c5db3b63662934657ca983a33a0933");
	assert_int_equal(verify(SECRET, tok, EXP, NULL), -1);
	forge(SECRET, "v2.alice..0.9223372036854775808", tok, sizeof(tok)); /* INT64_MAX + 1 */
	assert_int_equal(verify(SECRET, tok, EXP, NULL), -1);
	forge(SECRET, "v2.alice..9223372036854775808.9223372036854775807", tok, sizeof(tok));
	assert_int_equal(verify(SECRET, tok, EXP, NULL), -1);
	forge(SECRET, "v2.alice..0.18446744073709551617", tok, sizeof(tok)); /* 2^64 + 1: wraps to 1 */
	assert_int_equal(verify(SECRET, tok, 0, NULL), -1);
}

/* ---- mosquitto password lines ------------------------------------------------------ */

/* Writes "user:$7$<iterations>$<salt b64>$<PBKDF2-SHA512(password) b64>" into out, as mosquitto_passwd does. */
static void
pw_line(const char *user, const char *password, long iterations, size_t hashlen, char *out, size_t n)
{
	static const unsigned char salt[12] = "pizza-salt!";
	unsigned char hash[64], salt64[32], hash64[128];

	assert_true(hashlen <= sizeof(hash));
	assert_int_equal(PKCS5_PBKDF2_HMAC(password, (int)strlen(password), salt, (int)sizeof(salt),
			     iterations > 0 && iterations < 100000 ? (int)iterations : 1, EVP_sha512(), (int)hashlen,
			     hash),
	    1);
	EVP_EncodeBlock(salt64, salt, (int)sizeof(salt));
	EVP_EncodeBlock(hash64, hash, (int)hashlen);
	snprintf(out, n, "%s:$7$%ld$%s$%s", user, iterations, salt64, hash64);
}

static void
test_password_line_built_here(void **state)
{
	char line[512], crlf[520];

	(void)state;
	pw_line("alice", "alice-dev-password", 101, 64, line, sizeof(line));
	assert_int_equal(token_password_line(line, "alice", "alice-dev-password"), 0);
	assert_int_equal(token_password_line(line, "alice", "alice-dev-passwore"), -1);
	assert_int_equal(token_password_line(line, "alice", "alice-dev-password "), -1);
	assert_int_equal(token_password_line(line, "alice", ""), -1);
	/* the line of another user, even one whose name starts the same */
	assert_int_equal(token_password_line(line, "bob", "alice-dev-password"), -1);
	assert_int_equal(token_password_line(line, "alic", "alice-dev-password"), -1);
	assert_int_equal(token_password_line(line, "alice2", "alice-dev-password"), -1);
	assert_int_equal(token_password_line(line, "", "alice-dev-password"), -1);
	/* a line as read from a file, with its end of line */
	snprintf(crlf, sizeof(crlf), "%s\r\n", line);
	assert_int_equal(token_password_line(crlf, "alice", "alice-dev-password"), 0);
	snprintf(crlf, sizeof(crlf), "%s\n", line);
	assert_int_equal(token_password_line(crlf, "alice", "alice-dev-password"), 0);
	/* another iteration count is another hash */
	pw_line("alice", "alice-dev-password", 1000, 64, line, sizeof(line));
	assert_int_equal(token_password_line(line, "alice", "alice-dev-password"), 0);
}

static void
test_password_line_malformed(void **state)
{
	char good[512], line[600];
	const char *salt, *hash;

	(void)state;
	pw_line("alice", "pw", 101, 64, good, sizeof(good));
	salt = strchr(good + strlen("alice:$7$101$"), '$') - 16; /* 12 bytes of salt are 16 base64 chars */
	hash = strrchr(good, '$') + 1;
	{
		struct {
			const char *fmt;
		} bad[] = {
			{ "alice:$6$101$%.16s$%s" },         /* another algorithm */
			{ "alice:7$101$%.16s$%s" },          /* no leading $ */
			{ "alice:$7$0$%.16s$%s" },           /* no iterations */
			{ "alice:$7$-1$%.16s$%s" },
			{ "alice:$7$abc$%.16s$%s" },
			{ "alice:$7$101$%.15s$%s" },         /* salt not base64 (length) */
			{ "alice:$7$101$!!!!%.12s$%s" },     /* salt not base64 (characters) */
			{ "alice:$7$101$%.16s$%.84s" },      /* hash cut to 63 bytes */
			{ "alice:$7$101$%.16s$" },           /* no hash */
			{ "alice:$7$101$%.16s" },
			{ "alice:$7$101" },
			{ "alice:" },
			{ "alice" },
		};

		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			snprintf(line, sizeof(line), bad[i].fmt, salt, hash);
			if (token_password_line(line, "alice", "pw") != -1)
				fail_msg("accepted '%s'", line);
		}
	}
	/* the well-formed line really matches, so the refusals above are about the format */
	snprintf(line, sizeof(line), "alice:$7$101$%.16s$%s", salt, hash);
	assert_int_equal(token_password_line(line, "alice", "pw"), 0);
	/* the user name ends at the colon: "alic" is not the user of "alice$7$..." */
	snprintf(line, sizeof(line), "alice$7$101$%.16s$%s", salt, hash);
	assert_int_equal(token_password_line(line, "alic", "pw"), -1);
	/* the smallest iteration count */
	pw_line("alice", "pw", 1, 64, line, sizeof(line));
	assert_int_equal(token_password_line(line, "alice", "pw"), 0);
	/* a hash of another length than SHA-512's */
	pw_line("alice", "pw", 101, 32, line, sizeof(line));
	assert_int_equal(token_password_line(line, "alice", "pw"), -1);
	/* a line too long to be one */
	{
		char *big = malloc(4096);

		assert_non_null(big);
		snprintf(big, 4096, "%s", good);
		memset(big + strlen(good), ' ', 2000);
		big[strlen(good) + 2000] = '\0';
		assert_int_equal(token_password_line(big, "alice", "pw"), -1);
		free(big);
	}
}

/*
 * A line asking for more than 10,000,000 iterations is refused before any
 * hashing: a login must stay cheap whatever the file says.  Ten million
 * rounds of PBKDF2-SHA512 take seconds, so a quick answer shows the cap.
 */
static void
test_password_iteration_cap(void **state)
{
	char line[512], big[520];
	int64_t t0;

	(void)state;
	pw_line("alice", "pw", 101, 64, line, sizeof(line));
	snprintf(big, sizeof(big), "alice:$7$10000001$%s", strchr(line + strlen("alice:$7$"), '$') + 1);
	t0 = mono_ms();
	assert_int_equal(token_password_line(big, "alice", "pw"), -1);
	if (mono_ms() - t0 > 1000)
		fail_msg("an over-the-cap iteration count took %lld ms: it was hashed", (long long)(mono_ms() - t0));
}

/* ---- against mosquitto_passwd itself ------------------------------------------------- */

struct pwdir {
	char dir[64];
	char file[128];
};

static int
pw_setup(void **state)
{
	struct pwdir *d = calloc(1, sizeof(*d));

	if (d == NULL)
		return -1;
	str_copy(d->dir, sizeof(d->dir), "/tmp/pizza-test-token-XXXXXX");
	if (mkdtemp(d->dir) == NULL) {
		free(d);
		return -1;
	}
	snprintf(d->file, sizeof(d->file), "%s/passwd", d->dir);
	*state = d;
	return 0;
}

static int
pw_teardown(void **state)
{
	struct pwdir *d = *state;

	unlink(d->file);
	rmdir(d->dir);
	free(d);
	return 0;
}

/* mosquitto_passwd -b [-c] file user password, without a shell (the passwords hold shell characters). */
static void
mosquitto_passwd(const char *file, int create, const char *user, const char *password)
{
	pid_t pid;
	int status;

	fflush(NULL);
	if ((pid = fork()) == 0) {
		if (create)
			execlp("mosquitto_passwd", "mosquitto_passwd", "-b", "-c", file, user, password, (char *)NULL);
		else
			execlp("mosquitto_passwd", "mosquitto_passwd", "-b", file, user, password, (char *)NULL);
		_exit(127);
	}
	assert_true(pid > 0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail_msg("mosquitto_passwd failed (status %d): is the Debian package mosquitto installed?", status);
}

static void
test_password_from_mosquitto_passwd(void **state)
{
	struct pwdir *d = *state;
	char *text;

	mosquitto_passwd(d->file, 1, "alice", "alice: $ecret \\ pw");
	assert_non_null(text = file_read_small(d->file, 4096));
	assert_int_equal(strncmp(text, "alice:$7$", 9), 0); /* the format token.h reads */
	assert_int_equal(token_password_line(text, "alice", "alice: $ecret \\ pw"), 0);
	assert_int_equal(token_password_line(text, "alice", "alice: $ecret \\ pW"), -1);
	assert_int_equal(token_password_line(text, "bob", "alice: $ecret \\ pw"), -1);
	free(text);
}

static void
test_password_file(void **state)
{
	struct pwdir *d = *state;
	char missing[160];

	mosquitto_passwd(d->file, 1, "bob", "bob-dev-password");
	mosquitto_passwd(d->file, 0, "alice", "alice-dev-password");
	mosquitto_passwd(d->file, 0, "carol", "carol-dev-password");
	mosquitto_passwd(d->file, 0, "alice2", "alice2-dev-password");
	assert_int_equal(token_password_file(d->file, "alice", "alice-dev-password"), 0);
	assert_int_equal(token_password_file(d->file, "bob", "bob-dev-password"), 0);
	assert_int_equal(token_password_file(d->file, "carol", "carol-dev-password"), 0);
	assert_int_equal(token_password_file(d->file, "alice2", "alice2-dev-password"), 0);
	/* another user's password, or a user not in the file */
	assert_int_equal(token_password_file(d->file, "alice", "bob-dev-password"), -1);
	assert_int_equal(token_password_file(d->file, "alice", "alice2-dev-password"), -1);
	assert_int_equal(token_password_file(d->file, "dave", "alice-dev-password"), -1);
	assert_int_equal(token_password_file(d->file, "alic", "alice-dev-password"), -1);
	/* a file that is not there */
	snprintf(missing, sizeof(missing), "%s/nope", d->dir);
	assert_int_equal(token_password_file(missing, "alice", "alice-dev-password"), -1);
}


/* ---- password hashes: token_password_hash() and token_password_check() -------------------- */

static void
test_password_hash_round_trip(void **state)
{
	static const char *const passwords[] = { "alice-dev-password", "pw", "alice: $ecret \\ pw", "p\xc3\xa4ss wörd" };
	char h[TOKEN_HASH_MAX], h2[TOKEN_HASH_MAX], line[TOKEN_HASH_MAX + 16];
	const char *salt;

	(void)state;
	for (size_t i = 0; i < sizeof(passwords) / sizeof(passwords[0]); i++) {
		assert_int_equal(token_password_hash(passwords[i], 101, h), 0);
		/* mosquitto_passwd's shape: $7$101$ + 16 base64 of a 12-byte salt + $ + 88 of a 64-byte hash */
		assert_int_equal(strncmp(h, "$7$101$", 7), 0);
		assert_int_equal(strlen(h), 7 + 16 + 1 + 88);
		salt = h + 7;
		assert_int_equal(salt[16], '$');
		assert_int_equal(token_password_check(h, passwords[i]), 0);
		assert_int_equal(token_password_check(h, "alice-dev-passwore"), -1);
		assert_int_equal(token_password_check(h, "pw "), -1);
		assert_int_equal(token_password_check(h, ""), -1);
		/* as a line of a password file, for that user only */
		snprintf(line, sizeof(line), "alice:%s\n", h);
		assert_int_equal(token_password_line(line, "alice", passwords[i]), 0);
		assert_int_equal(token_password_line(line, "bob", passwords[i]), -1);
	}
	/* a fresh salt each time: the same password hashes two ways, both of which check */
	assert_int_equal(token_password_hash("alice-dev-password", 101, h), 0);
	assert_int_equal(token_password_hash("alice-dev-password", 101, h2), 0);
	assert_string_not_equal(h, h2);
	assert_int_not_equal(memcmp(h + 7, h2 + 7, 16), 0);
	assert_int_equal(token_password_check(h2, "alice-dev-password"), 0);
	/* more iterations are written and used */
	assert_int_equal(token_password_hash("alice-dev-password", 20000, h), 0);
	assert_int_equal(strncmp(h, "$7$20000$", 9), 0);
	assert_int_equal(token_password_check(h, "alice-dev-password"), 0);
	assert_int_equal(token_password_check(h, "alice-dev-passworD"), -1);
	assert_int_equal(token_password_hash("pw", 1, h), 0);
	assert_int_equal(token_password_check(h, "pw"), 0);
	/* a hash's iteration count is part of it: the same salt and hash under another count fail */
	snprintf(h2, sizeof(h2), "$7$2$%s", h + 5);
	assert_int_equal(token_password_check(h2, "pw"), -1);
}

static void
test_password_hash_refuses(void **state)
{
	char h[TOKEN_HASH_MAX];

	(void)state;
	memset(h, 'X', sizeof(h));
	assert_int_equal(token_password_hash(NULL, 101, h), -1);
	assert_int_equal(token_password_hash("", 101, h), -1);
	assert_int_equal(token_password_hash("pw", 0, h), -1);
	assert_int_equal(token_password_hash("pw", -1, h), -1);
	assert_int_equal(token_password_hash("pw", 10000001, h), -1); /* more than a check would accept */
	assert_int_equal(token_password_hash("pw", LONG_MAX, h), -1);
	assert_int_equal(token_password_hash("pw", 101, NULL), -1);
	untouched(h, sizeof(h), "token_password_hash");
}

/* token_password_check() takes exactly "$7$<iterations>$<salt>$<hash>", with an end of line at most. */
static void
test_password_check_malformed(void **state)
{
	static const char *const fmts[] = {
		"$7$101$%.16s$%s$",      /* a field more */
		"$7$101$%.16s$%s$x",
		"$7$101$$%.16s$%s",      /* an empty field */
		"$7$101$%.16s$$%s",
		"$7$$101$%.16s$%s",
		"$$7$101$%.16s$%s",
		"$7$+101$%.16s$%s",      /* a sign, a space */
		"$7$ 101$%.16s$%s",
		"$7$101 $%.16s$%s",
		"$7$0101x$%.16s$%s",
		"$7$101$ %.16s$%s",
		"$7$101$%.16s$%s x",
		"$6$101$%.16s$%s",       /* another algorithm */
		"7$101$%.16s$%s",
		" $7$101$%.16s$%s",
		"$7$101$%.16s$%.87s",    /* the hash cut short */
		"$7$101$%.16s$%sAAAA",   /* or longer than SHA-512's */
		"$7$101$%.12s$%s",       /* a salt of 9 bytes, still base64: a match needs the same salt */
	};
	char h[TOKEN_HASH_MAX], bad[TOKEN_HASH_MAX + 32];
	const char *salt, *hash;

	(void)state;
	assert_int_equal(token_password_hash("pw", 101, h), 0);
	salt = h + 7;
	hash = h + 7 + 16 + 1;
	for (size_t i = 0; i < sizeof(fmts) / sizeof(fmts[0]); i++) {
		snprintf(bad, sizeof(bad), fmts[i], salt, hash);
		if (token_password_check(bad, "pw") != -1)
			fail_msg("accepted '%s'", bad);
	}
	/* the well-formed text really matches, with or without an end of line */
	snprintf(bad, sizeof(bad), "$7$101$%.16s$%s", salt, hash);
	assert_int_equal(token_password_check(bad, "pw"), 0);
	snprintf(bad, sizeof(bad), "%s\r\n", h);
	assert_int_equal(token_password_check(bad, "pw"), 0);
	snprintf(bad, sizeof(bad), "%s\n", h);
	assert_int_equal(token_password_check(bad, "pw"), 0);
	assert_int_equal(token_password_check("", "pw"), -1);
	assert_int_equal(token_password_check("$7$", "pw"), -1);
	assert_int_equal(token_password_check(NULL, "pw"), -1);
	assert_int_equal(token_password_check(h, NULL), -1);
	/* over the iteration cap: refused before any hashing (ten million rounds would take seconds) */
	{
		int64_t t0 = mono_ms();

		snprintf(bad, sizeof(bad), "$7$10000001$%s", h + 7);
		assert_int_equal(token_password_check(bad, "pw"), -1);
		snprintf(bad, sizeof(bad), "$7$99999999999999999999$%s", h + 7);
		assert_int_equal(token_password_check(bad, "pw"), -1);
		if (mono_ms() - t0 > 1000)
			fail_msg("over-the-cap iteration counts took %lld ms: they were hashed", (long long)(mono_ms() - t0));
	}
	/* a hash text too long to be one */
	{
		char *big = malloc(1 << 16);

		assert_non_null(big);
		memset(big, 'A', 1 << 16);
		memcpy(big, "$7$101$", 7);
		big[(1 << 16) - 1] = '\0';
		assert_int_equal(token_password_check(big, "pw"), -1);
		free(big);
	}
}

/* What mosquitto_passwd writes after "user:" checks with token_password_check(), and has the shape token_password_hash() writes. */
static void
test_password_check_mosquitto_passwd(void **state)
{
	struct pwdir *d = *state;
	char *text, mine[TOKEN_HASH_MAX];
	const char *hash;

	mosquitto_passwd(d->file, 1, "alice", "alice: $ecret \\ pw");
	assert_non_null(text = file_read_small(d->file, 4096));
	assert_int_equal(strncmp(text, "alice:", 6), 0);
	hash = text + 6; /* with its end of line */
	assert_int_equal(token_password_check(hash, "alice: $ecret \\ pw"), 0);
	assert_int_equal(token_password_check(hash, "alice: $ecret \\ pW"), -1);
	assert_int_equal(token_password_check(hash, "alice-dev-password"), -1);
	/* token_password_hash() at mosquitto_passwd's iteration count writes the same shape */
	{
		long iterations;
		char count[16];
		size_t n = strcspn(hash + 3, "$");

		assert_true(n > 0 && n < sizeof(count));
		memcpy(count, hash + 3, n);
		count[n] = '\0';
		assert_int_equal(parse_long(count, 1, 10000000, &iterations), 0);
		assert_int_equal(token_password_hash("alice: $ecret \\ pw", iterations, mine), 0);
		assert_int_equal(strlen(mine), strcspn(hash, "\r\n"));
		assert_int_equal(strncmp(mine, hash, 3 + n + 1), 0);
		assert_int_equal(token_password_check(mine, "alice: $ecret \\ pw"), 0);
	}
	free(text);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_issue_known_vector),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_expiry),
		cmocka_unit_test(test_wrong_secret),
		cmocka_unit_test(test_short_secret),
		cmocka_unit_test(test_issue_refuses_bad_input),
		cmocka_unit_test(test_tampering),
		cmocka_unit_test(test_signed_but_malformed),
		cmocka_unit_test(test_hostile_text),
		cmocka_unit_test(test_expiry_largest),
		cmocka_unit_test(test_expiry_overflow),
		cmocka_unit_test(test_password_line_built_here),
		cmocka_unit_test(test_password_line_malformed),
		cmocka_unit_test(test_password_iteration_cap),
		cmocka_unit_test(test_password_hash_round_trip),
		cmocka_unit_test(test_password_hash_refuses),
		cmocka_unit_test(test_password_check_malformed),
		cmocka_unit_test_setup_teardown(test_password_from_mosquitto_passwd, pw_setup, pw_teardown),
		cmocka_unit_test_setup_teardown(test_password_file, pw_setup, pw_teardown),
		cmocka_unit_test_setup_teardown(test_password_check_mosquitto_passwd, pw_setup, pw_teardown),
	};

	return cmocka_run_group_tests_name("token", tests, NULL, NULL);
}

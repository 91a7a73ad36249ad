/*
 * test_token.c - HTTP bearer tokens (token.h): a known vector, expiry,
 * tampering, wrong secrets, hostile token text, and the HTTP login's
 * password check against mosquitto password-file lines, both built here
 * (PBKDF2-SHA512, the $7$ format) and written by mosquitto_passwd itself.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

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
#define EXP INT64_C(1700000000)
/* Reference: printf 'v1.alice.1700000000' | openssl dgst -sha256 -hmac pizza-test-secret-0123 */
#define ALICE_TOKEN "v1.alice.1700000000.7e98049fe3564512a2c797d145764bef334c26899490b7aa1280c5e8a14f5296"

/* ---- tokens ---------------------------------------------------------------- */

/* token_verify() that also checks the user buffer is written on success only. */
static int
verify(const char *secret, const char *token, int64_t now, const char *want_user)
{
	char user[NAME_MAX_LEN + 1];
	int rc;

	memset(user, 'X', sizeof(user));
	rc = token_verify(secret, token, now, user);
	if (rc == 0) {
		assert_non_null(want_user);
		assert_string_equal(user, want_user);
	} else {
		for (size_t i = 0; i < sizeof(user); i++)
			if (user[i] != 'X')
				fail_msg("token_verify failed but wrote the user buffer");
	}
	return rc;
}

/* The body "v1.<user>.<expiry>" signed by hand, as only a holder of secret could. */
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
	char tok[TOKEN_MAX];

	(void)state;
	assert_int_equal(token_issue(SECRET, "alice", EXP, tok), 0);
	assert_string_equal(tok, ALICE_TOKEN);
}

static void
test_round_trip(void **state)
{
	static const char *const users[] = { "alice", "Bob_2", "x", "carol-the-cook" };
	char tok[TOKEN_MAX], longname[NAME_MAX_LEN + 1];

	(void)state;
	for (size_t i = 0; i < sizeof(users) / sizeof(users[0]); i++) {
		assert_int_equal(token_issue(SECRET, users[i], EXP, tok), 0);
		assert_int_equal(verify(SECRET, tok, EXP - 1, users[i]), 0);
	}
	/* the longest name, and the largest expiry, still fit TOKEN_MAX */
	memset(longname, 'n', NAME_MAX_LEN);
	longname[NAME_MAX_LEN] = '\0';
	assert_int_equal(token_issue(SECRET, longname, INT64_MAX, tok), 0);
	assert_true(strlen(tok) < TOKEN_MAX);
	assert_int_equal(verify(SECRET, tok, now_ms() / 1000, longname), 0);
}

/* A token works up to the second before its expiry and never after. */
static void
test_expiry(void **state)
{
	(void)state;
	assert_int_equal(verify(SECRET, ALICE_TOKEN, 0, "alice"), 0);
	assert_int_equal(verify(SECRET, ALICE_TOKEN, EXP - 1, "alice"), 0);
	assert_int_equal(verify(SECRET, ALICE_TOKEN, EXP, NULL), -1);
	assert_int_equal(verify(SECRET, ALICE_TOKEN, EXP + 1, NULL), -1);
	assert_int_equal(verify(SECRET, ALICE_TOKEN, INT64_MAX, NULL), -1);
}

static void
test_wrong_secret(void **state)
{
	(void)state;
	assert_int_equal(verify("pizza-test-secret-0124", ALICE_TOKEN, EXP - 1, NULL), -1);
	assert_int_equal(verify("another-secret-entirely", ALICE_TOKEN, EXP - 1, NULL), -1);
	/* a secret that is a prefix of the right one */
	assert_int_equal(verify("pizza-test-secret-012", ALICE_TOKEN, EXP - 1, NULL), -1);
}

/* Secrets shorter than 16 bytes are refused both ways. */
static void
test_short_secret(void **state)
{
	char tok[TOKEN_MAX];

	(void)state;
	assert_int_equal(token_issue("0123456789abcdef", "alice", EXP, tok), 0); /* 16: enough */
	assert_int_equal(verify("0123456789abcdef", tok, EXP - 1, "alice"), 0);
	assert_int_equal(token_issue("0123456789abcde", "alice", EXP, tok), -1);
	assert_int_equal(token_issue("", "alice", EXP, tok), -1);
	assert_int_equal(token_issue(NULL, "alice", EXP, tok), -1);
	forge("0123456789abcde", "v1.alice.1700000000", tok, sizeof(tok));
	assert_int_equal(verify("0123456789abcde", tok, EXP - 1, NULL), -1);
	assert_int_equal(verify(NULL, ALICE_TOKEN, EXP - 1, NULL), -1);
}

static void
test_issue_refuses_bad_input(void **state)
{
	char tok[TOKEN_MAX], longname[NAME_MAX_LEN + 2];

	(void)state;
	assert_int_equal(token_issue(SECRET, "", EXP, tok), -1);
	assert_int_equal(token_issue(SECRET, NULL, EXP, tok), -1);
	assert_int_equal(token_issue(SECRET, "al.ice", EXP, tok), -1); /* a dot would split the token */
	assert_int_equal(token_issue(SECRET, "al ice", EXP, tok), -1);
	assert_int_equal(token_issue(SECRET, "alice/#", EXP, tok), -1);
	assert_int_equal(token_issue(SECRET, "alice", -1, tok), -1);
	memset(longname, 'n', NAME_MAX_LEN + 1);
	longname[NAME_MAX_LEN + 1] = '\0';
	assert_int_equal(token_issue(SECRET, longname, EXP, tok), -1);
}

/* Any change to any part of a token makes it invalid. */
static void
test_tampering(void **state)
{
	char tok[TOKEN_MAX + 8], sig[65];
	size_t len = strlen(ALICE_TOKEN);

	(void)state;
	/* every single character changed, one at a time */
	for (size_t i = 0; i < len; i++) {
		memcpy(tok, ALICE_TOKEN, len + 1);
		tok[i] = tok[i] == 'a' ? 'b' : 'a';
		if (verify(SECRET, tok, EXP - 1, NULL) != -1)
			fail_msg("accepted with character %zu changed: %s", i, tok);
	}
	/* the same signature under another user or a later expiry */
	memcpy(sig, ALICE_TOKEN + len - 64, 65);
	snprintf(tok, sizeof(tok), "v1.bob.1700000000.%s", sig);
	assert_int_equal(verify(SECRET, tok, EXP - 1, NULL), -1);
	snprintf(tok, sizeof(tok), "v1.alice.1800000000.%s", sig);
	assert_int_equal(verify(SECRET, tok, EXP - 1, NULL), -1);
	snprintf(tok, sizeof(tok), "v1.alice.01700000000.%s", sig); /* same number, other text */
	assert_int_equal(verify(SECRET, tok, EXP - 1, NULL), -1);
	/* the signature in capitals, cut short, or with more after it */
	snprintf(tok, sizeof(tok), "%s", ALICE_TOKEN);
	for (size_t i = len - 64; i < len; i++)
		if (tok[i] >= 'a' && tok[i] <= 'f')
			tok[i] = (char)(tok[i] - 'a' + 'A');
	assert_int_equal(verify(SECRET, tok, EXP - 1, NULL), -1);
	snprintf(tok, sizeof(tok), "%.*s", (int)len - 1, ALICE_TOKEN);
	assert_int_equal(verify(SECRET, tok, EXP - 1, NULL), -1);
	snprintf(tok, sizeof(tok), "%s0", ALICE_TOKEN);
	assert_int_equal(verify(SECRET, tok, EXP - 1, NULL), -1);
	snprintf(tok, sizeof(tok), "%s.", ALICE_TOKEN);
	assert_int_equal(verify(SECRET, tok, EXP - 1, NULL), -1);
}

/* Tokens signed with the right secret but not of the form token_issue() writes. */
static void
test_signed_but_malformed(void **state)
{
	static const char *const bodies[] = {
		"v1.al ice.1700000000",  /* not a valid name */
		"v1..1700000000",        /* no user */
		"v1.alice.-5",           /* negative expiry */
		"v1.alice.+1700000000",  /* a sign */
		"v1.alice. 1700000000",  /* a space */
		"v1.alice.",             /* no expiry */
		"v1.alice.17e8",         /* not decimal */
		"v2.alice.1700000000",   /* another version */
		"V1.alice.1700000000",
	};
	char tok[TOKEN_MAX + 64];

	(void)state;
	for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
		forge(SECRET, bodies[i], tok, sizeof(tok));
		if (verify(SECRET, tok, 0, NULL) != -1)
			fail_msg("accepted %s", tok);
	}
}

static void
test_hostile_text(void **state)
{
	static const char *const bad[] = {
		"", "v1", "v1.", "v1.alice", "v1.alice.1700000000", "v1.alice.1700000000.",
		"Bearer " ALICE_TOKEN, " " ALICE_TOKEN, "v1.alice.1700000000.zz",
	};
	char *big;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (verify(SECRET, bad[i], 0, NULL) != -1)
			fail_msg("accepted '%s'", bad[i]);
	assert_int_equal(verify(SECRET, NULL, 0, NULL), -1);
	/* long: a megabyte of a plausible token */
	assert_non_null(big = malloc(1 << 20));
	memset(big, 'a', 1 << 20);
	memcpy(big, "v1.alice.1700000000.", 20);
	big[(1 << 20) - 1] = '\0';
	assert_int_equal(verify(SECRET, big, 0, NULL), -1);
	/* a user name longer than any valid one */
	memcpy(big, "v1.", 3);
	memset(big + 3, 'n', NAME_MAX_LEN + 1);
	snprintf(big + 3 + NAME_MAX_LEN + 1, 100, ".1700000000.%.64s", ALICE_TOKEN + strlen(ALICE_TOKEN) - 64);
	assert_int_equal(verify(SECRET, big, 0, NULL), -1);
	free(big);
}

/* The largest expiry token_issue() can write works. */
static void
test_expiry_largest(void **state)
{
	char tok[TOKEN_MAX + 64];

	(void)state;
	forge(SECRET, "v1.alice.9223372036854775807", tok, sizeof(tok));
	assert_int_equal(verify(SECRET, tok, EXP, "alice"), 0);
}

/*
 * An expiry field past what int64 holds was read by strtoll() as LLONG_MAX
 * without a check of ERANGE, so a token signed with such a field never
 * expired instead of being refused as malformed (found by this test, issue
 * 13; only a holder of the secret could sign one).
 */
static void
test_expiry_overflow(void **state)
{
	char tok[TOKEN_MAX + 64];

	(void)state;
	/* Reference: printf 'v1.alice.99999999999999999999' | openssl dgst -sha256 -hmac pizza-test-secret-0123 */
	forge(SECRET, "v1.alice.99999999999999999999", tok, sizeof(tok));
	assert_string_equal(tok, "v1.alice.99999999999999999999."
				 "664c44db9e0608c72e6f64f74f11ebbbe27582871d9ab3f3019085c11255c1e4");
	assert_int_equal(verify(SECRET, tok, EXP, NULL), -1);
	forge(SECRET, "v1.alice.9223372036854775808", tok, sizeof(tok));
	assert_int_equal(verify(SECRET, tok, EXP, NULL), -1);
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
		cmocka_unit_test_setup_teardown(test_password_from_mosquitto_passwd, pw_setup, pw_teardown),
		cmocka_unit_test_setup_teardown(test_password_file, pw_setup, pw_teardown),
	};

	return cmocka_run_group_tests_name("token", tests, NULL, NULL);
}

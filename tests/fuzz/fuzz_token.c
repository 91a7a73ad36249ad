/*
 * fuzz_token.c - libFuzzer target for HTTP bearer tokens, password hashes
 * and password-file lines (backend/common/token.c).
 *
 * The input, as a NUL-terminated copy, is one of:
 *   - a password-file line, when its first byte is 'a' (as in "alice:..."):
 *     token_password_line(line, "alice", "pw");
 *   - a password hash, when its first byte is '$' (as in "$7$..."):
 *     token_password_check(hash, "pw");
 *   - a password, when its first byte is 'p': the rest, hashed by
 *     token_password_hash() at 1 iteration, must check with
 *     token_password_check(), and the rest with one byte more must not;
 *   - a bearer token otherwise: token_verify() with a fixed 32-character
 *     secret at a fixed time.  A token it accepts must carry valid claims
 *     (user and device names, 0 <= issued <= expiry, now < expiry), and
 *     token_issue() of those claims must write the token back byte for
 *     byte: one text per set of claims.
 * Checks: no crash, leak or undefined behaviour (ASan, UBSan); a broken
 * property abort()s, which libFuzzer reports as a crash.
 *
 * Hashes with more than FUZZ_MAX_ITERATIONS PBKDF2 iterations are skipped:
 * a password file or account store is trusted and may ask for up to
 * 10,000,000 iterations (seconds of work each), and that is a cost, not a
 * bug.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "token.h"
#include "util.h"

#define FUZZ_SECRET "fuzz-secret-0123456789abcdefABCD" /* 32 characters; the seeds are signed with it */
#define FUZZ_NOW 1767225600                            /* 2026-01-01T00:00:00Z */
#define FUZZ_MAX_ITERATIONS 100000

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
broken(const char *what)
{
	fprintf(stderr, "fuzz_token: %s\n", what);
	abort();
}

/* The iteration count token_password_check() would use for hash ("$7$<n>$..."): what follows "$7$", or 0. */
static long
iterations_of(const char *hash)
{
	if (strncmp(hash, "$7$", 3) != 0)
		return 0;
	return strtol(hash + 3, NULL, 10);
}

static void
check_token(const char *token)
{
	struct token_claims c;
	char again[TOKEN_MAX];

	memset(&c, 0x55, sizeof(c));
	if (token_verify(FUZZ_SECRET, token, FUZZ_NOW, &c) != 0)
		return;
	if (memchr(c.user, '\0', sizeof(c.user)) == NULL || !name_valid(c.user))
		broken("an accepted token names an invalid user");
	if (memchr(c.device, '\0', sizeof(c.device)) == NULL || (c.device[0] != '\0' && !name_valid(c.device)))
		broken("an accepted token names an invalid device");
	if (c.issued < 0 || c.issued > c.expiry || c.expiry <= FUZZ_NOW)
		broken("an accepted token has times out of order or has expired");
	if (token_issue(FUZZ_SECRET, &c, again) != 0 || strcmp(again, token) != 0)
		broken("an accepted token is not what token_issue() writes for its claims");
}

static void
check_hash_round_trip(const char *password, size_t len)
{
	char hash[TOKEN_HASH_MAX], *more;

	if (len == 0) {
		if (token_password_hash(password, 1, hash) != -1)
			broken("token_password_hash() took an empty password");
		return;
	}
	if (token_password_hash(password, 1, hash) != 0)
		broken("token_password_hash() failed on a password");
	if (token_password_check(hash, password) != 0)
		broken("a password does not check against its own hash");
	if ((more = malloc(len + 2)) == NULL)
		return;
	memcpy(more, password, len);
	more[len] = 'x';
	more[len + 1] = '\0';
	if (token_password_check(hash, more) != -1)
		broken("a password with a byte more checks against the hash");
	free(more);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *copy = malloc(size + 1), *colon;

	if (copy == NULL)
		return 0;
	memcpy(copy, data, size);
	copy[size] = '\0';
	if (size > 0 && data[0] == 'a') {
		colon = strchr(copy, ':');
		if (colon == NULL || iterations_of(colon + 1) <= FUZZ_MAX_ITERATIONS)
			(void)token_password_line(copy, "alice", "pw");
	} else if (size > 0 && data[0] == '$') {
		if (iterations_of(copy) <= FUZZ_MAX_ITERATIONS)
			(void)token_password_check(copy, "pw");
	} else if (size > 0 && data[0] == 'p') {
		check_hash_round_trip(copy + 1, strlen(copy + 1));
	} else {
		check_token(copy);
	}
	free(copy);
	return 0;
}

/*
 * fuzz_token.c - libFuzzer target for HTTP bearer tokens and password-file
 * lines (backend/common/token.c).
 *
 * The input, as a NUL-terminated copy, is one of:
 *   - a password-file line, when its first byte is 'a' (as in "alice:..."):
 *     token_password_line(line, "alice", "pw");
 *   - a bearer token otherwise: token_verify() with a fixed 32-character
 *     secret at a fixed time.  A token it accepts must name a user that
 *     passes name_valid().
 * Checks: no crash, leak or undefined behaviour (ASan, UBSan); a broken
 * property abort()s, which libFuzzer reports as a crash.
 *
 * Password lines with more than FUZZ_MAX_ITERATIONS PBKDF2 iterations are
 * skipped: the line comes from the trusted password file, which may ask for
 * up to 10,000,000 iterations (seconds of work each), and that is a cost,
 * not a bug.
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

/* The iteration count token_password_line() would use (its own tokenising), or 0. */
static long
iterations_of(const char *line)
{
	char scratch[1024], *save = NULL, *f;
	const char *colon = strchr(line, ':');

	if (colon == NULL || strlen(colon + 1) >= sizeof(scratch))
		return 0;
	memcpy(scratch, colon + 1, strlen(colon + 1) + 1);
	if (strtok_r(scratch, "$", &save) == NULL || (f = strtok_r(NULL, "$", &save)) == NULL)
		return 0;
	return strtol(f, NULL, 10);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *copy = malloc(size + 1);
	char user[NAME_MAX_LEN + 1];

	if (copy == NULL)
		return 0;
	memcpy(copy, data, size);
	copy[size] = '\0';
	if (size > 0 && data[0] == 'a') {
		if (iterations_of(copy) <= FUZZ_MAX_ITERATIONS)
			(void)token_password_line(copy, "alice", "pw");
	} else {
		memset(user, 0x55, sizeof(user));
		if (token_verify(FUZZ_SECRET, copy, FUZZ_NOW, user) == 0 &&
		    (memchr(user, '\0', sizeof(user)) == NULL || !name_valid(user))) {
			fprintf(stderr, "fuzz_token: an accepted token names an invalid user\n");
			abort();
		}
	}
	free(copy);
	return 0;
}

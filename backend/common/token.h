/*
 * token.h - HTTP bearer tokens: who the caller is, on which device, since
 * when, signed by the server; and the password hashes behind a login.
 *
 *   v2.<user>.<device>.<issued>.<expiry>.<hex HMAC-SHA256 of everything before the last dot>
 *
 * Stateless: any order-service holding the secret can check one.  A token
 * names one user (and maybe one of their devices) and stops working at its
 * expiry; its issue time lets the caller refuse tokens issued before a
 * password change or a revocation.  v1 tokens (no issue time) are refused.
 */
#ifndef PIZZA_TOKEN_H
#define PIZZA_TOKEN_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

#define TOKEN_MAX (3 + NAME_MAX_LEN + 1 + NAME_MAX_LEN + 1 + 20 + 1 + 20 + 1 + 64 + 1)

struct token_claims {
	char user[NAME_MAX_LEN + 1];   /* name_valid() */
	char device[NAME_MAX_LEN + 1]; /* "" = no device, else name_valid() */
	int64_t issued;                /* unix seconds, >= 0 */
	int64_t expiry;                /* unix seconds, >= 0 */
};

/*
 * Writes "v2.<user>.<device>.<issued>.<expiry>.<hex HMAC-SHA256 of everything
 * before the last dot>" for *c into out (TOKEN_MAX bytes); device may be
 * empty.  Returns 0, or -1 (out untouched) on a bad claim (a user or device
 * that is not a name, a negative time, issued > expiry) or a secret shorter
 * than 16 bytes.
 */
int token_issue(const char *secret, const struct token_claims *c, char *out);

/*
 * Checks token (untrusted, any length) at unix time now: well formed (the
 * exact text token_issue() writes: decimal times without sign, space or
 * leading zero, within int64, issued <= expiry), signed with secret, and
 * now < expiry.  Returns 0 and fills *c (only on success); else -1 and *c
 * is untouched.  v1 tokens are refused (they carry no issue time).
 */
int token_verify(const char *secret, const char *token, int64_t now, struct token_claims *c);

/*
 * Writes a password hash in mosquitto's $7$ form
 * "$7$<iterations>$<salt b64>$<PBKDF2-SHA512 b64>" with a fresh 12-byte
 * random salt (RAND_bytes) and the given iterations (1 to 10,000,000; 101
 * as mosquitto_passwd, or more) into out (TOKEN_HASH_MAX bytes).  Returns 0,
 * or -1 (out untouched) on a NULL or empty password, iterations out of
 * range, or no randomness.
 */
#define TOKEN_HASH_MAX 160
int token_password_hash(const char *password, long iterations, char *out);

/*
 * Checks password against hash, as written by token_password_hash() or
 * mosquitto_passwd (the part of a password-file line after "user:"; an end
 * of line after it is ignored).  Returns 0 on a match, -1 otherwise (also
 * on a malformed hash or one asking for more than 10,000,000 iterations,
 * refused before any hashing).
 */
int token_password_check(const char *hash, const char *password);

/*
 * Checks password against one line of a mosquitto password file
 * ("user:$7$<iterations>$<salt base64>$<PBKDF2-SHA512 base64>", as written by
 * mosquitto_passwd) for user.  Returns 0 on a match, -1 otherwise, so the
 * HTTP login accepts exactly the passwords the broker does.
 */
int token_password_line(const char *line, const char *user, const char *password);

/* The same over a whole password file at path. Returns 0 on a match, -1 otherwise (or on a read error). */
int token_password_file(const char *path, const char *user, const char *password);

#endif

/*
 * token.h - HTTP bearer tokens: who the caller is, signed by the server.
 *
 *   v1.<user_id>.<expiry unix seconds>.<hex HMAC-SHA256 of "v1.<user_id>.<expiry>">
 *
 * Stateless: any order-service holding the secret can check one.  A token
 * names one user and stops working at its expiry.
 */
#ifndef PIZZA_TOKEN_H
#define PIZZA_TOKEN_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

#define TOKEN_MAX (3 + NAME_MAX_LEN + 1 + 20 + 1 + 64 + 1)

/* Writes a token for user_id valid until expiry into out (TOKEN_MAX bytes). Returns 0, or -1 on a bad user or secret. */
int token_issue(const char *secret, const char *user_id, int64_t expiry, char *out);

/*
 * Checks token (untrusted input, any length) at time now.  Returns 0 and
 * copies the user id into user (NAME_MAX_LEN + 1 bytes) when it is well
 * formed, signed with secret and not expired; -1 otherwise.
 */
int token_verify(const char *secret, const char *token, int64_t now, char *user);

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

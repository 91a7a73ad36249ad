/*
 * sign.h - callback signatures, the way payment providers sign webhooks.
 *
 *   Pizza-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" with the secret>
 *
 * A receiver recomputes v1 from the raw body and the t it was sent, compares
 * in constant time, and refuses a t too far from its own clock (replays).
 */
#ifndef PIZZA_SIGN_H
#define PIZZA_SIGN_H

#include <stddef.h>
#include <stdint.h>

#define SIGN_HEADER_MAX 96 /* "t=" + 20 digits + ",v1=" + 64 hex + NUL, with room */

/*
 * HMAC-SHA256 with secret of a followed by b (blen 0: a alone), as 64
 * lowercase hex digits and a NUL in hex.  Returns 0, or -1 on failure.
 * Also signs bearer tokens (token.c).
 */
int sign_hmac_sha256_hex(const char *secret, const void *a, size_t alen, const void *b, size_t blen, char hex[65]);

/*
 * Writes the header value for body (len bytes) signed at unix time t with
 * secret into out (SIGN_HEADER_MAX bytes).  Returns 0, or -1 on failure.
 */
int sign_header(const char *secret, int64_t t, const void *body, size_t len, char *out);

/*
 * Checks a header value against body: returns 0 when it is well formed, its
 * v1 matches, and |now - t| <= tolerance_s; -1 otherwise.
 */
int sign_verify(const char *secret, const char *header, const void *body, size_t len, int64_t now, int64_t tolerance_s);

#endif

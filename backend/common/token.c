#include "token.h"
#include "sign.h"

#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#define PW_SALT_LEN 12              /* bytes, as mosquitto_passwd */
#define PW_HASH_LEN 64              /* PBKDF2-SHA512 */
#define PW_MAX_ITERATIONS 10000000L /* a login must stay cheap whatever a file says */

static int
secret_ok(const char *secret)
{
	return secret != NULL && strlen(secret) >= 16;
}

int
token_issue(const char *secret, const struct token_claims *c, char *out)
{
	char body[TOKEN_MAX], hex[65];
	int n;

	/* names are read only within their arrays: an unterminated one is refused */
	if (!secret_ok(secret) || c == NULL || out == NULL || memchr(c->user, '\0', sizeof(c->user)) == NULL ||
	    memchr(c->device, '\0', sizeof(c->device)) == NULL || !name_valid(c->user) ||
	    (c->device[0] != '\0' && !name_valid(c->device)) || c->issued < 0 || c->expiry < 0 || c->issued > c->expiry)
		return -1;
	n = snprintf(body, sizeof(body), "v2.%s.%s.%" PRId64 ".%" PRId64, c->user, c->device, c->issued, c->expiry);
	if (n < 0 || (size_t)n + 1 + 64 >= sizeof(body) ||
	    sign_hmac_sha256_hex(secret, body, (size_t)n, NULL, 0, hex) != 0)
		return -1;
	memcpy(out, body, (size_t)n); /* fits: checked above */
	out[n] = '.';
	memcpy(out + n + 1, hex, sizeof(hex));
	return 0;
}

/*
 * Reads a name field at *p up to the next '.' into out (NAME_MAX_LEN + 1
 * bytes) and moves *p past the dot.  An empty field is taken only when
 * may_be_empty.  Returns 0, or -1 on anything else.
 */
static int
name_field(const char **p, char *out, int may_be_empty)
{
	const char *dot = strchr(*p, '.');
	size_t len;

	if (dot == NULL || (len = (size_t)(dot - *p)) > NAME_MAX_LEN)
		return -1;
	memcpy(out, *p, len);
	out[len] = '\0';
	if (len == 0 ? !may_be_empty : !name_valid(out))
		return -1;
	*p = dot + 1;
	return 0;
}

/*
 * Reads a decimal time field at *p up to the next '.' and moves *p past the
 * dot: digits only, no leading zero (one text per number), and a value past
 * what int64 holds is malformed, not "never expires" (strtoll() without a
 * check of ERANGE once read it as LLONG_MAX, issue 13).  Returns 0 or -1.
 */
static int
time_field(const char **p, int64_t *v)
{
	const char *s = *p;
	int64_t n = 0;

	if (*s < '0' || *s > '9' || (s[0] == '0' && s[1] != '.'))
		return -1;
	for (; *s >= '0' && *s <= '9'; s++) {
		if (n > (INT64_MAX - (*s - '0')) / 10)
			return -1;
		n = n * 10 + (*s - '0');
	}
	if (*s != '.')
		return -1;
	*v = n;
	*p = s + 1;
	return 0;
}

int
token_verify(const char *secret, const char *token, int64_t now, struct token_claims *c)
{
	struct token_claims got;
	const char *p, *sig;
	char want[65];

	if (!secret_ok(secret) || token == NULL || c == NULL || strnlen(token, TOKEN_MAX) >= TOKEN_MAX ||
	    strncmp(token, "v2.", 3) != 0)
		return -1;
	p = token + 3;
	if (name_field(&p, got.user, 0) != 0 || name_field(&p, got.device, 1) != 0 ||
	    time_field(&p, &got.issued) != 0 || time_field(&p, &got.expiry) != 0 || got.issued > got.expiry)
		return -1;
	sig = p;
	if (strlen(sig) != 64 || sign_hmac_sha256_hex(secret, token, (size_t)(sig - 1 - token), NULL, 0, want) != 0 ||
	    CRYPTO_memcmp(want, sig, 64) != 0)
		return -1;
	if (got.expiry <= now) /* it stops working at its expiry second */
		return -1;
	*c = got;
	return 0;
}

static int
b64_decode(const char *in, unsigned char *out, size_t cap, size_t *outlen)
{
	size_t len = strlen(in);
	int n;

	if (len == 0 || len % 4 != 0 || len / 4 * 3 > cap)
		return -1;
	if ((n = EVP_DecodeBlock(out, (const unsigned char *)in, (int)len)) < 0)
		return -1;
	/* EVP_DecodeBlock counts padding as bytes: at most two, at the very end */
	for (int pad = 0; pad < 2 && in[len - 1] == '='; pad++) {
		n--;
		len--;
	}
	if (in[len - 1] == '=' || n < 0)
		return -1;
	*outlen = (size_t)n;
	return 0;
}

int
token_password_hash(const char *password, long iterations, char *out)
{
	unsigned char salt[PW_SALT_LEN], hash[PW_HASH_LEN];
	char salt64[4 * ((PW_SALT_LEN + 2) / 3) + 1], hash64[4 * ((PW_HASH_LEN + 2) / 3) + 1];
	size_t plen;
	int n, rc = -1;

	if (password == NULL || (plen = strlen(password)) == 0 || plen > INT_MAX || out == NULL || iterations < 1 ||
	    iterations > PW_MAX_ITERATIONS)
		return -1;
	if (RAND_bytes(salt, (int)sizeof(salt)) != 1 ||
	    PKCS5_PBKDF2_HMAC(password, (int)plen, salt, (int)sizeof(salt), (int)iterations, EVP_sha512(),
		(int)sizeof(hash), hash) != 1)
		goto out;
	EVP_EncodeBlock((unsigned char *)salt64, salt, (int)sizeof(salt));
	EVP_EncodeBlock((unsigned char *)hash64, hash, (int)sizeof(hash));
	n = snprintf(out, TOKEN_HASH_MAX, "$7$%ld$%s$%s", iterations, salt64, hash64);
	rc = n > 0 && n < TOKEN_HASH_MAX ? 0 : -1;
out:
	OPENSSL_cleanse(hash, sizeof(hash));
	return rc;
}

int
token_password_check(const char *hash, const char *password)
{
	char copy[1024], *iter, *salt64, *hash64, *end;
	unsigned char salt[128], want[128], got[PW_HASH_LEN];
	size_t saltlen, wantlen, plen;
	long iterations;
	int rc = -1;

	if (hash == NULL || password == NULL || (plen = strlen(password)) > INT_MAX ||
	    strnlen(hash, sizeof(copy)) >= sizeof(copy))
		return -1;
	memcpy(copy, hash, strlen(hash) + 1);
	copy[strcspn(copy, "\r\n")] = '\0';
	/* exactly $7$<iterations>$<salt>$<hash> */
	if (strncmp(copy, "$7$", 3) != 0)
		return -1;
	iter = copy + 3;
	if ((end = strchr(iter, '$')) == NULL)
		return -1;
	*end = '\0';
	salt64 = end + 1;
	if ((end = strchr(salt64, '$')) == NULL)
		return -1;
	*end = '\0';
	hash64 = end + 1;
	if (strchr(hash64, '$') != NULL || *iter < '0' || *iter > '9' ||
	    parse_long(iter, 1, PW_MAX_ITERATIONS, &iterations) != 0 ||
	    b64_decode(salt64, salt, sizeof(salt), &saltlen) != 0 ||
	    b64_decode(hash64, want, sizeof(want), &wantlen) != 0 || wantlen != PW_HASH_LEN)
		return -1;
	if (PKCS5_PBKDF2_HMAC(
		password, (int)plen, salt, (int)saltlen, (int)iterations, EVP_sha512(), (int)wantlen, got) == 1)
		rc = CRYPTO_memcmp(want, got, wantlen) == 0 ? 0 : -1;
	OPENSSL_cleanse(got, sizeof(got));
	return rc;
}

int
token_password_line(const char *line, const char *user, const char *password)
{
	size_t ulen;

	if (line == NULL || user == NULL || (ulen = strlen(user)) == 0 || strncmp(line, user, ulen) != 0 ||
	    line[ulen] != ':')
		return -1;
	return token_password_check(line + ulen + 1, password);
}

int
token_password_file(const char *path, const char *user, const char *password)
{
	char *text = file_read_small(path, 4 * 1024 * 1024), *line, *save = NULL;
	int rc = -1;

	if (text == NULL)
		return -1;
	for (line = strtok_r(text, "\n", &save); line != NULL && rc != 0; line = strtok_r(NULL, "\n", &save))
		rc = token_password_line(line, user, password);
	OPENSSL_cleanse(text, strlen(text));
	free(text);
	return rc;
}

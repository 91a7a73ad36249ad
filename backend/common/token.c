#include "token.h"
#include "sign.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

int
token_issue(const char *secret, const char *user_id, int64_t expiry, char *out)
{
	char body[3 + NAME_MAX_LEN + 1 + 21], hex[65];
	int n;

	if (secret == NULL || strlen(secret) < 16 || !name_valid(user_id) || expiry < 0)
		return -1;
	n = snprintf(body, sizeof(body), "v1.%s.%" PRId64, user_id, expiry);
	if (n < 0 || (size_t)n >= sizeof(body) || sign_hmac_sha256_hex(secret, body, (size_t)n, NULL, 0, hex) != 0)
		return -1;
	snprintf(out, TOKEN_MAX, "%s.%s", body, hex);
	return 0;
}

int
token_verify(const char *secret, const char *token, int64_t now, char *user)
{
	const char *p, *dot_user, *dot_exp;
	char want[65], name[NAME_MAX_LEN + 1];
	size_t ulen, blen;
	long long exp;
	char *end;

	if (secret == NULL || strlen(secret) < 16 || token == NULL || strlen(token) >= TOKEN_MAX ||
	    strncmp(token, "v1.", 3) != 0)
		return -1;
	p = token + 3;
	if ((dot_user = strchr(p, '.')) == NULL || (ulen = (size_t)(dot_user - p)) == 0 || ulen > NAME_MAX_LEN)
		return -1;
	memcpy(name, p, ulen);
	name[ulen] = '\0';
	if (!name_valid(name))
		return -1;
	if (dot_user[1] < '0' || dot_user[1] > '9')
		return -1;
	errno = 0;
	exp = strtoll(dot_user + 1, &end, 10);
	if (*end != '.' || exp < 0 || errno == ERANGE)
		return -1; /* past what int64 holds is malformed, not "never expires" */
	dot_exp = end;
	blen = (size_t)(dot_exp - token);
	if (strlen(dot_exp + 1) != 64 || sign_hmac_sha256_hex(secret, token, blen, NULL, 0, want) != 0 ||
	    CRYPTO_memcmp(want, dot_exp + 1, 64) != 0)
		return -1;
	if ((int64_t)exp <= now) /* it stops working at its expiry second */
		return -1;
	memcpy(user, name, ulen + 1);
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
token_password_line(const char *line, const char *user, const char *password)
{
	char copy[1024], *fields[4], *save = NULL, *hash;
	unsigned char salt[128], want[128], got[128];
	size_t ulen = strlen(user), saltlen, wantlen;
	long iterations;
	int i;

	if (strncmp(line, user, ulen) != 0 || line[ulen] != ':' || strlen(line) >= sizeof(copy))
		return -1;
	snprintf(copy, sizeof(copy), "%s", line + ulen + 1);
	copy[strcspn(copy, "\r\n")] = '\0';
	/* $7$<iterations>$<salt>$<hash> */
	if (copy[0] != '$')
		return -1;
	hash = copy + 1;
	for (i = 0; i < 4; i++) {
		fields[i] = strtok_r(i == 0 ? hash : NULL, "$", &save);
		if (fields[i] == NULL)
			return -1;
	}
	if (strcmp(fields[0], "7") != 0 || parse_long(fields[1], 1, 10000000, &iterations) != 0 ||
	    b64_decode(fields[2], salt, sizeof(salt), &saltlen) != 0 ||
	    b64_decode(fields[3], want, sizeof(want), &wantlen) != 0 || wantlen != 64)
		return -1;
	if (PKCS5_PBKDF2_HMAC(password, (int)strlen(password), salt, (int)saltlen, (int)iterations, EVP_sha512(),
		(int)wantlen, got) != 1)
		return -1;
	return CRYPTO_memcmp(want, got, wantlen) == 0 ? 0 : -1;
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

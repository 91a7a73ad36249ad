#include "sign.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

static int
hmac_hex(const char *secret, int64_t t, const void *body, size_t len, char hex[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	char prefix[32];
	unsigned char *msg;
	int n = snprintf(prefix, sizeof(prefix), "%" PRId64 ".", t);

	if (n < 0 || (msg = malloc((size_t)n + len + 1)) == NULL)
		return -1;
	memcpy(msg, prefix, (size_t)n);
	if (len > 0)
		memcpy(msg + n, body, len);
	if (HMAC(EVP_sha256(), secret, (int)strlen(secret), msg, (size_t)n + len, md, &mdlen) == NULL || mdlen != 32) {
		free(msg);
		return -1;
	}
	free(msg);
	for (unsigned i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
	return 0;
}

int
sign_header(const char *secret, int64_t t, const void *body, size_t len, char *out)
{
	char hex[65];

	if (secret == NULL || secret[0] == '\0' || hmac_hex(secret, t, body, len, hex) != 0)
		return -1;
	snprintf(out, SIGN_HEADER_MAX, "t=%" PRId64 ",v1=%s", t, hex);
	return 0;
}

int
sign_verify(const char *secret, const char *header, const void *body, size_t len, int64_t now, int64_t tolerance_s)
{
	char want[65], *end;
	const char *v1;
	long long t;

	if (header == NULL || strncmp(header, "t=", 2) != 0)
		return -1;
	t = strtoll(header + 2, &end, 10);
	if (end == header + 2 || strncmp(end, ",v1=", 4) != 0)
		return -1;
	v1 = end + 4;
	if (strlen(v1) != 64 || hmac_hex(secret, (int64_t)t, body, len, want) != 0)
		return -1;
	if (CRYPTO_memcmp(want, v1, 64) != 0)
		return -1;
	if (now - t > tolerance_s || t - now > tolerance_s)
		return -1;
	return 0;
}

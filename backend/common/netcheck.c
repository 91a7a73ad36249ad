#include "netcheck.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#define ALLOW_MAX 64

struct allow_entry {
	int family; /* AF_INET, AF_INET6, or 0 for a host name */
	unsigned char addr[16];
	int prefix;
	char host[256];
};

struct allowlist {
	struct allow_entry e[ALLOW_MAX];
	int n;
};

static int
prefix_match(const unsigned char *a, const unsigned char *b, int bits)
{
	int full = bits / 8, rest = bits % 8;

	if (memcmp(a, b, (size_t)full) != 0)
		return 0;
	if (rest == 0)
		return 1;
	return ((a[full] ^ b[full]) & (0xff << (8 - rest))) == 0;
}

struct allowlist *
allowlist_parse(const char *spec, char *err, size_t errlen)
{
	struct allowlist *a = calloc(1, sizeof(*a));
	char *copy, *tok, *save = NULL;

	if (a == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if (spec == NULL || spec[0] == '\0')
		return a;
	if ((copy = strdup(spec)) == NULL) {
		free(a);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	for (tok = strtok_r(copy, ", ", &save); tok != NULL; tok = strtok_r(NULL, ", ", &save)) {
		struct allow_entry *e;
		char *slash = strchr(tok, '/');
		long bits = -1;

		if (a->n >= ALLOW_MAX) {
			snprintf(err, errlen, "more than %d allowlist entries", ALLOW_MAX);
			goto fail;
		}
		e = &a->e[a->n];
		if (slash != NULL) {
			char *end;
			*slash = '\0';
			bits = strtol(slash + 1, &end, 10);
			/* digits only: no sign, no blank; the range is checked per family below */
			if (*end != '\0' || slash[1] < '0' || slash[1] > '9' || bits > 128) {
				snprintf(err, errlen, "bad prefix length in '%s/%s'", tok, slash + 1);
				goto fail;
			}
		}
		if (inet_pton(AF_INET, tok, e->addr) == 1) {
			e->family = AF_INET;
			e->prefix = bits < 0 ? 32 : (int)bits;
			if (e->prefix > 32)
				goto badbits;
		} else if (inet_pton(AF_INET6, tok, e->addr) == 1) {
			e->family = AF_INET6;
			e->prefix = bits < 0 ? 128 : (int)bits;
			if (e->prefix > 128)
				goto badbits;
		} else if (slash == NULL && strlen(tok) < sizeof(e->host) && strchr(tok, '*') == NULL) {
			snprintf(e->host, sizeof(e->host), "%s", tok);
		} else {
			snprintf(err, errlen, "'%s' is not a host name, an address or a CIDR range", tok);
			goto fail;
		}
		a->n++;
	}
	free(copy);
	return a;
badbits:
	snprintf(err, errlen, "prefix length out of range in '%s'", tok);
fail:
	free(copy);
	free(a);
	return NULL;
}

void
allowlist_free(struct allowlist *a)
{
	free(a);
}

/* 1 for addresses a callback must not reach by default. */
static int
blocked4(const unsigned char *ip)
{
	static const struct {
		unsigned char net[4];
		int bits;
	} nets[] = {
		{ { 0, 0, 0, 0 }, 8 },        /* "this network", unspecified */
		{ { 10, 0, 0, 0 }, 8 },       /* private */
		{ { 100, 64, 0, 0 }, 10 },    /* shared address space (CGNAT) */
		{ { 127, 0, 0, 0 }, 8 },      /* loopback */
		{ { 169, 254, 0, 0 }, 16 },   /* link-local, cloud metadata */
		{ { 172, 16, 0, 0 }, 12 },    /* private */
		{ { 192, 0, 0, 0 }, 24 },     /* IETF protocol assignments */
		{ { 192, 168, 0, 0 }, 16 },   /* private */
		{ { 198, 18, 0, 0 }, 15 },    /* benchmarking */
		{ { 224, 0, 0, 0 }, 4 },      /* multicast */
		{ { 240, 0, 0, 0 }, 4 },      /* reserved, broadcast */
	};

	for (size_t i = 0; i < sizeof(nets) / sizeof(nets[0]); i++)
		if (prefix_match(ip, nets[i].net, nets[i].bits))
			return 1;
	return 0;
}

static int
blocked6(const unsigned char *ip)
{
	static const unsigned char zero[16], loop[16] = { [15] = 1 };
	static const unsigned char mapped[12] = { [10] = 0xff, [11] = 0xff };
	static const unsigned char nat64[12] = { 0x00, 0x64, 0xff, 0x9b };

	if (memcmp(ip, zero, 16) == 0 || memcmp(ip, loop, 16) == 0)
		return 1;
	if (memcmp(ip, mapped, 12) == 0 || memcmp(ip, nat64, 12) == 0)
		return blocked4(ip + 12); /* an IPv4 address in IPv6 clothing */
	if ((ip[0] & 0xfe) == 0xfc)                        /* fc00::/7 unique local */
		return 1;
	if (ip[0] == 0xfe && (ip[1] & 0xc0) == 0x80)       /* fe80::/10 link-local */
		return 1;
	if (ip[0] == 0xff)                                 /* multicast */
		return 1;
	return 0;
}

static int
listed(const struct allowlist *a, int family, const unsigned char *ip, const char *host)
{
	for (int i = 0; a != NULL && i < a->n; i++) {
		const struct allow_entry *e = &a->e[i];
		if (e->family == 0) {
			if (host != NULL && strcasecmp(e->host, host) == 0)
				return 1;
		} else if (e->family == family && prefix_match(ip, e->addr, e->prefix))
			return 1;
	}
	return 0;
}

int
netcheck_addr(const struct allowlist *a, const struct sockaddr *sa, const char *host)
{
	if (sa->sa_family == AF_INET) {
		const unsigned char *ip = (const unsigned char *)&((const struct sockaddr_in *)sa)->sin_addr;
		return !blocked4(ip) || listed(a, AF_INET, ip, host);
	}
	if (sa->sa_family == AF_INET6) {
		const unsigned char *ip = (const unsigned char *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
		if (listed(a, AF_INET6, ip, host))
			return 1;
		if (ip[10] == 0xff && ip[11] == 0xff && memcmp(ip, "\0\0\0\0\0\0\0\0\0\0", 10) == 0 &&
		    listed(a, AF_INET, ip + 12, host))
			return 1;
		return !blocked6(ip);
	}
	return 0;
}

int
netcheck_url(const struct allowlist *a, const char *url, char *err, size_t errlen)
{
	CURLU *u = curl_url();
	char *scheme = NULL, *host = NULL;
	unsigned char ip[16];
	int rc = -1;

	if (u == NULL || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
		snprintf(err, errlen, "callback_url is not a valid URL");
		goto out;
	}
	if (strcasecmp(scheme, "http") != 0 && strcasecmp(scheme, "https") != 0) {
		snprintf(err, errlen, "callback_url must use http or https");
		goto out;
	}
	/* curl keeps IPv6 literals in brackets */
	if (host[0] == '[') {
		size_t n = strlen(host);
		memmove(host, host + 1, n - 1);
		host[n - 2] = '\0';
	}
	/* "localhost." is localhost: a fully qualified name's root dot names the same host */
	if (host[0] != '\0' && host[strlen(host) - 1] == '.')
		host[strlen(host) - 1] = '\0';
	if (inet_pton(AF_INET, host, ip) == 1) {
		struct sockaddr_in sa = { .sin_family = AF_INET };
		memcpy(&sa.sin_addr, ip, 4);
		if (!netcheck_addr(a, (struct sockaddr *)&sa, host)) {
			snprintf(err, errlen, "callback_url points to a private, loopback or link-local address (%s)", host);
			goto out;
		}
	} else if (inet_pton(AF_INET6, host, ip) == 1) {
		struct sockaddr_in6 sa = { .sin6_family = AF_INET6 };
		memcpy(&sa.sin6_addr, ip, 16);
		if (!netcheck_addr(a, (struct sockaddr *)&sa, host)) {
			snprintf(err, errlen, "callback_url points to a private, loopback or link-local address (%s)", host);
			goto out;
		}
	} else {
		size_t n = strlen(host);
		int local = strcasecmp(host, "localhost") == 0 ||
		    (n > 10 && strcasecmp(host + n - 10, ".localhost") == 0) ||
		    (n > 6 && strcasecmp(host + n - 6, ".local") == 0) || strchr(host, '.') == NULL;
		if (local && !listed(a, 0, NULL, host)) {
			snprintf(err, errlen, "callback_url names a local host (%s)", host);
			goto out;
		}
	}
	rc = 0;
out:
	curl_free(scheme);
	curl_free(host);
	curl_url_cleanup(u);
	return rc;
}

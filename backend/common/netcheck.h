/*
 * netcheck.h - where callbacks may go (server-side request forgery guard).
 *
 * By default a callback may only reach public addresses: never loopback,
 * private (RFC 1918, unique local), link-local (which holds cloud metadata
 * services such as 169.254.169.254), shared (100.64/10), multicast,
 * unspecified or reserved ranges.  An allowlist (PIZZA_CALLBACK_ALLOW:
 * comma-separated host names, addresses or CIDR ranges) opens exceptions,
 * e.g. "127.0.0.1" for a local test receiver.
 *
 * Checked twice: when an order is placed (literal addresses and localhost
 * names, with no DNS lookup) and when the notifier connects (every address
 * the name resolved to, so DNS cannot be used to sneak past the first check).
 */
#ifndef PIZZA_NETCHECK_H
#define PIZZA_NETCHECK_H

#include <stddef.h>
#include <sys/socket.h>

struct allowlist;

/* Parses spec (may be NULL or "": allow nothing extra). NULL with a reason in err on a bad entry. */
struct allowlist *allowlist_parse(const char *spec, char *err, size_t errlen);
void allowlist_free(struct allowlist *a);

/* 1 if sa may be reached: a public address, or one the allowlist names (by address, range or host). */
int netcheck_addr(const struct allowlist *a, const struct sockaddr *sa, const char *host);

/*
 * Checks a callback URL without DNS: http or https, a host present, and not
 * a literal blocked address or a localhost name unless allowlisted.  Returns
 * 0, or -1 with a one-line reason in err.
 */
int netcheck_url(const struct allowlist *a, const char *url, char *err, size_t errlen);

#endif

/*
 * test_netcheck.c - the callback SSRF guard (netcheck.h): which addresses a
 * callback may reach by default, what an allowlist opens, which allowlists
 * are refused, and the URL check (literal addresses and localhost names
 * only: no test here needs DNS or a network).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "netcheck.h"

/* ---- helpers --------------------------------------------------------------- */

/* A socket address for the literal IPv4 or IPv6 address s (fails the test on anything else). */
static void
sockaddr_of(const char *s, struct sockaddr_storage *ss)
{
	struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, s, &in4->sin_addr) == 1)
		in4->sin_family = AF_INET;
	else if (inet_pton(AF_INET6, s, &in6->sin6_addr) == 1)
		in6->sin6_family = AF_INET6;
	else
		fail_msg("test bug: '%s' is not a literal address", s);
}

/* netcheck_addr() of the literal address s, reached as host (may be NULL). */
static int
allowed(const struct allowlist *a, const char *s, const char *host)
{
	struct sockaddr_storage ss;

	sockaddr_of(s, &ss);
	return netcheck_addr(a, (const struct sockaddr *)&ss, host);
}

static struct allowlist *
parse_ok(const char *spec)
{
	char err[256] = "";
	struct allowlist *a = allowlist_parse(spec, err, sizeof(err));

	if (a == NULL)
		fail_msg("allowlist '%s' refused: %s", spec != NULL ? spec : "(null)", err);
	return a;
}

struct addr_case {
	const char *addr;
	int allowed;
	const char *why;
};

static void
check_addrs(const struct allowlist *a, const char *spec, const struct addr_case *c, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int got = allowed(a, c[i].addr, NULL);

		if (got != c[i].allowed)
			fail_msg("allowlist '%s': %s (%s) is %s, want %s", spec, c[i].addr, c[i].why,
			    got ? "allowed" : "blocked", c[i].allowed ? "allowed" : "blocked");
	}
}

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* ---- default policy: public yes, everything local no ---------------------------- */

static const struct addr_case default_cases[] = {
	/* IPv4: blocked ranges, with both ends and the first address past each */
	{ "0.0.0.0", 0, "unspecified" },
	{ "0.255.255.255", 0, "this network 0/8" },
	{ "1.0.0.1", 1, "public, just past 0/8" },
	{ "9.255.255.255", 1, "public, just before 10/8" },
	{ "10.0.0.0", 0, "RFC 1918 10/8" },
	{ "10.255.255.255", 0, "RFC 1918 10/8" },
	{ "11.0.0.0", 1, "public, just past 10/8" },
	{ "100.63.255.255", 1, "public, just before 100.64/10" },
	{ "100.64.0.1", 0, "shared address space 100.64/10" },
	{ "100.127.255.255", 0, "shared address space 100.64/10" },
	{ "100.128.0.0", 1, "public, just past 100.64/10" },
	{ "127.0.0.1", 0, "loopback" },
	{ "127.255.255.254", 0, "loopback 127/8" },
	{ "169.254.169.254", 0, "cloud metadata service" },
	{ "169.254.0.1", 0, "link-local 169.254/16" },
	{ "169.255.0.1", 1, "public, just past 169.254/16" },
	{ "172.15.255.255", 1, "public, just before 172.16/12" },
	{ "172.16.0.0", 0, "RFC 1918 172.16/12" },
	{ "172.31.255.255", 0, "RFC 1918 172.16/12" },
	{ "172.32.0.0", 1, "public, just past 172.16/12" },
	{ "192.0.0.8", 0, "IETF protocol assignments 192.0.0/24" },
	{ "192.168.0.1", 0, "RFC 1918 192.168/16" },
	{ "192.168.255.255", 0, "RFC 1918 192.168/16" },
	{ "192.169.0.1", 1, "public, just past 192.168/16" },
	{ "198.18.0.1", 0, "benchmarking 198.18/15" },
	{ "198.19.255.255", 0, "benchmarking 198.18/15" },
	{ "198.20.0.0", 1, "public, just past 198.18/15" },
	{ "224.0.0.1", 0, "multicast" },
	{ "239.255.255.250", 0, "multicast (SSDP)" },
	{ "240.0.0.1", 0, "reserved 240/4" },
	{ "255.255.255.255", 0, "broadcast" },
	{ "8.8.8.8", 1, "public" },
	{ "93.184.216.34", 1, "public" },
	{ "223.255.255.255", 1, "public, just before multicast" },
	/* IPv6 */
	{ "::", 0, "unspecified" },
	{ "::1", 0, "loopback" },
	{ "fc00::1", 0, "unique local fc00::/7" },
	{ "fd12:3456:789a::1", 0, "unique local fc00::/7" },
	{ "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 0, "unique local fc00::/7" },
	{ "fe80::1", 0, "link-local fe80::/10" },
	{ "febf:ffff::1", 0, "link-local fe80::/10" },
	{ "ff02::1", 0, "multicast" },
	{ "ff0e::1", 0, "multicast" },
	{ "2001:4860:4860::8888", 1, "public" },
	{ "2606:4700:4700::1111", 1, "public" },
	/* IPv4 addresses in IPv6 clothing are judged as the IPv4 address */
	{ "::ffff:127.0.0.1", 0, "IPv4-mapped loopback" },
	{ "::ffff:10.1.2.3", 0, "IPv4-mapped RFC 1918" },
	{ "::ffff:169.254.169.254", 0, "IPv4-mapped metadata service" },
	{ "::ffff:0.0.0.0", 0, "IPv4-mapped unspecified" },
	{ "::ffff:8.8.8.8", 1, "IPv4-mapped public" },
	{ "64:ff9b::7f00:1", 0, "NAT64 of 127.0.0.1" },
	{ "64:ff9b::a9fe:a9fe", 0, "NAT64 of 169.254.169.254" },
	{ "64:ff9b::808:808", 1, "NAT64 of 8.8.8.8" },
};

static void
test_default_policy(void **state)
{
	(void)state;
	/* no allowlist at all (NULL) and an empty one behave the same */
	check_addrs(NULL, "(none)", default_cases, N(default_cases));
	{
		struct allowlist *a = parse_ok("");

		check_addrs(a, "", default_cases, N(default_cases));
		allowlist_free(a);
	}
	{
		struct allowlist *a = parse_ok(NULL);

		check_addrs(a, "(null)", default_cases, N(default_cases));
		allowlist_free(a);
	}
}

/* A host name does not open a blocked address unless the allowlist names it. */
static void
test_host_name_alone_opens_nothing(void **state)
{
	(void)state;
	assert_int_equal(allowed(NULL, "127.0.0.1", "localhost"), 0);
	assert_int_equal(allowed(NULL, "10.0.0.5", "hooks.example.com"), 0);
	assert_int_equal(allowed(NULL, "8.8.8.8", "dns.google"), 1);
}

/* Only IPv4 and IPv6 socket addresses can be reached. */
static void
test_other_families_refused(void **state)
{
	struct sockaddr_un un;

	(void)state;
	memset(&un, 0, sizeof(un));
	un.sun_family = AF_UNIX;
	snprintf(un.sun_path, sizeof(un.sun_path), "/run/pizza.sock");
	assert_int_equal(netcheck_addr(NULL, (const struct sockaddr *)&un, NULL), 0);
}

/* ---- allowlists -------------------------------------------------------------------- */

struct allow_case {
	const char *spec;
	struct addr_case cases[8];
};

static const struct allow_case allow_cases[] = {
	{ "127.0.0.1", {
		{ "127.0.0.1", 1, "listed" },
		{ "127.0.0.2", 0, "a single address lists only itself" },
		{ "::ffff:127.0.0.1", 1, "the listed IPv4 address, mapped into IPv6" },
		{ "::1", 0, "IPv6 loopback is not IPv4 loopback" },
		{ "10.0.0.1", 0, "not listed" },
		{ "8.8.8.8", 1, "public stays allowed" },
	} },
	{ "10.0.0.0/8", {
		{ "10.0.0.0", 1, "first of the range" },
		{ "10.255.255.255", 1, "last of the range" },
		{ "192.168.1.1", 0, "another private range" },
		{ "::ffff:10.9.9.9", 1, "mapped into IPv6" },
	} },
	{ "172.16.0.0/12", {
		{ "172.16.0.1", 1, "in the range" },
		{ "172.31.255.255", 1, "last of the range" },
		{ "172.32.0.0", 1, "public anyway" },
		{ "10.0.0.1", 0, "not in the range" },
	} },
	{ "10.0.0.0/9", {
		{ "10.127.255.255", 1, "last of a prefix that ends inside an octet" },
		{ "10.128.0.0", 0, "first address past it" },
	} },
	{ "192.168.1.128/25", {
		{ "192.168.1.128", 1, "first of the /25" },
		{ "192.168.1.255", 1, "last of the /25" },
		{ "192.168.1.127", 0, "just before the /25" },
	} },
	{ "0.0.0.0/0", {
		{ "127.0.0.1", 1, "/0 lists every IPv4 address" },
		{ "169.254.169.254", 1, "/0 lists every IPv4 address" },
		{ "::1", 0, "but no IPv6 one" },
	} },
	{ "::1", {
		{ "::1", 1, "listed" },
		{ "127.0.0.1", 0, "IPv4 loopback is not IPv6 loopback" },
		{ "::2", 1, "public by rule" },
	} },
	{ "fd00::/8", {
		{ "fd00::1", 1, "in the range" },
		{ "fdff::1", 1, "in the range" },
		{ "fc00::1", 0, "unique local, but outside fd00::/8" },
		{ "fe80::1", 0, "link-local" },
	} },
	{ "fe80::/10", {
		{ "fe80::1", 1, "in the range" },
		{ "febf::1", 1, "last /16 of the range" },
		{ "fd00::1", 0, "not in the range" },
	} },
	/* several entries, separated by commas and spaces */
	{ " 127.0.0.1, ::1 ,192.168.0.0/16,,", {
		{ "127.0.0.1", 1, "first entry" },
		{ "::1", 1, "second entry" },
		{ "192.168.44.1", 1, "third entry" },
		{ "10.0.0.1", 0, "not listed" },
	} },
};

static void
test_allowlist_entries(void **state)
{
	(void)state;
	for (size_t i = 0; i < N(allow_cases); i++) {
		struct allowlist *a = parse_ok(allow_cases[i].spec);
		size_t n = 0;

		while (n < N(allow_cases[i].cases) && allow_cases[i].cases[n].addr != NULL)
			n++;
		check_addrs(a, allow_cases[i].spec, allow_cases[i].cases, n);
		allowlist_free(a);
	}
}

/* A host entry opens exactly the connections made for that name (any case), whatever address it has. */
static void
test_allowlist_host_entry(void **state)
{
	struct allowlist *a = parse_ok("hooks.internal,localhost");

	(void)state;
	assert_int_equal(allowed(a, "10.0.0.5", "hooks.internal"), 1);
	assert_int_equal(allowed(a, "10.0.0.5", "HOOKS.Internal"), 1);
	assert_int_equal(allowed(a, "fd00::5", "hooks.internal"), 1);
	assert_int_equal(allowed(a, "::ffff:10.0.0.5", "hooks.internal"), 1);
	assert_int_equal(allowed(a, "127.0.0.1", "localhost"), 1);
	/* the same address reached under another name, or with no name */
	assert_int_equal(allowed(a, "10.0.0.5", "evil.example"), 0);
	assert_int_equal(allowed(a, "10.0.0.5", "hooks.internal.evil.example"), 0);
	assert_int_equal(allowed(a, "10.0.0.5", "internal"), 0);
	assert_int_equal(allowed(a, "10.0.0.5", NULL), 0);
	allowlist_free(a);
}

static void
test_allowlist_malformed(void **state)
{
	static const char *const bad[] = {
		"10.0.0.0/33",    /* prefix too long for IPv4 */
		"::/129",         /* prefix too long for IPv6 */
		"10.0.0.0/",      /* no prefix */
		"10.0.0.0/abc",   /* not a number */
		"10.0.0.0/8x",    /* trailing junk */
		"10.0.0.0/8/8",   /* two prefixes */
		"hooks.internal/24", /* a range of a host name */
		"*.example.com",  /* wildcards are not supported */
		"127.0.0.1,10.0.0.0/40", /* one bad entry spoils the list */
	};
	char err[256];

	(void)state;
	for (size_t i = 0; i < N(bad); i++) {
		struct allowlist *a;

		err[0] = '\0';
		a = allowlist_parse(bad[i], err, sizeof(err));
		if (a != NULL) {
			allowlist_free(a);
			fail_msg("allowlist '%s' accepted", bad[i]);
		}
		if (err[0] == '\0')
			fail_msg("allowlist '%s' refused without a reason", bad[i]);
	}
}

/* The reason names the entry at fault. */
static void
test_allowlist_error_names_entry(void **state)
{
	char err[256] = "";

	(void)state;
	assert_null(allowlist_parse("127.0.0.1, 10.0.0.0/33", err, sizeof(err)));
	if (strstr(err, "10.0.0.0") == NULL)
		fail_msg("reason '%s' does not name the entry", err);
	assert_null(allowlist_parse("*.example.com", err, sizeof(err)));
	if (strstr(err, "*.example.com") == NULL)
		fail_msg("reason '%s' does not name the entry", err);
}

/* At most 64 entries, and a host name of at most 255 characters. */
static void
test_allowlist_limits(void **state)
{
	char spec[64 * 16 + 32], host[300], err[256];
	struct allowlist *a;
	size_t o = 0;

	(void)state;
	for (int i = 0; i < 64; i++)
		o += (size_t)snprintf(spec + o, sizeof(spec) - o, "%s10.0.%d.1", i ? "," : "", i);
	a = parse_ok(spec);
	assert_int_equal(allowed(a, "10.0.63.1", NULL), 1);
	assert_int_equal(allowed(a, "10.0.64.1", NULL), 0);
	allowlist_free(a);
	snprintf(spec + o, sizeof(spec) - o, ",10.0.64.1");
	err[0] = '\0';
	assert_null(allowlist_parse(spec, err, sizeof(err)));
	assert_true(err[0] != '\0');

	memset(host, 'h', 255);
	host[255] = '\0';
	a = parse_ok(host);
	assert_int_equal(allowed(a, "10.0.0.1", host), 1);
	allowlist_free(a);
	memset(host, 'h', 256);
	host[256] = '\0';
	assert_null(allowlist_parse(host, err, sizeof(err)));
}

/* ---- URLs -------------------------------------------------------------------------- */

struct url_case {
	const char *url;
	const char *want; /* NULL: accepted; else a piece of the reason */
};

static void
check_urls(const struct allowlist *a, const char *spec, const struct url_case *c, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char err[256] = "";
		int rc = netcheck_url(a, c[i].url, err, sizeof(err));

		if (c[i].want == NULL && rc != 0)
			fail_msg("allowlist '%s': '%s' refused: %s", spec, c[i].url, err);
		if (c[i].want != NULL && rc != -1)
			fail_msg("allowlist '%s': '%s' accepted, want refused (%s)", spec, c[i].url, c[i].want);
		if (c[i].want != NULL && strstr(err, c[i].want) == NULL)
			fail_msg("allowlist '%s': '%s' refused with '%s', want a reason with '%s'", spec, c[i].url, err,
			    c[i].want);
	}
}

#define PRIVATE "private, loopback or link-local"
#define LOCAL "names a local host"

static const struct url_case default_urls[] = {
	{ "https://shop.example/hook", NULL },
	{ "http://shop.example:8080/hook?x=1", NULL },
	{ "HTTPS://SHOP.EXAMPLE/hook", NULL },
	{ "http://8.8.8.8/hook", NULL },
	{ "https://[2001:4860:4860::8888]:8443/hook", NULL },
	{ "http://127.0.0.1:9000/hook", PRIVATE " address (127.0.0.1)" },
	{ "http://10.1.2.3/", PRIVATE },
	{ "http://192.168.1.1/", PRIVATE },
	{ "http://172.16.0.1/", PRIVATE },
	{ "http://169.254.169.254/latest/meta-data/", PRIVATE " address (169.254.169.254)" },
	{ "http://0.0.0.0:8080/", PRIVATE },
	{ "http://[::1]:9000/", PRIVATE " address (::1)" },
	{ "http://[::]/", PRIVATE },
	{ "http://[fd00::1]/", PRIVATE },
	{ "http://[fe80::1]/", PRIVATE },
	{ "http://[::ffff:127.0.0.1]/", PRIVATE },
	{ "http://[::ffff:169.254.169.254]/", PRIVATE },
	{ "http://8.8.8.8@127.0.0.1/", PRIVATE " address (127.0.0.1)" }, /* the host is after the @ */
	/* other spellings of 127.0.0.1 that resolvers accept */
	{ "http://2130706433/", "127.0.0.1" },
	{ "http://0x7f.0.0.1/", "127.0.0.1" },
	{ "http://127.1/", "127.0.0.1" },
	{ "http://0177.0.0.1/", "127.0.0.1" },
	/* localhost names, without DNS */
	{ "http://localhost/", LOCAL " (localhost)" },
	{ "http://LocalHost:8080/", LOCAL },
	{ "http://api.localhost/", LOCAL },
	{ "http://printer.local/", LOCAL },
	{ "http://intranet/", LOCAL " (intranet)" },
	/* not a callback URL at all */
	{ "ftp://8.8.8.8/", "must use http or https" },
	{ "file:///etc/passwd", "" }, /* refused: no host, so no valid callback URL */
	{ "gopher://shop.example/", "must use http or https" },
	{ "javascript:alert(1)", "" },
	{ "not a url", "not a valid URL" },
	{ "", "not a valid URL" },
	{ "http://", "not a valid URL" },
	{ "/relative/path", "not a valid URL" },
};

static void
test_url_default(void **state)
{
	(void)state;
	check_urls(NULL, "(none)", default_urls, N(default_urls));
}

static void
test_url_allowlisted(void **state)
{
	static const char spec[] = "127.0.0.1,::1,localhost,hooks,10.0.0.0/8";
	static const struct url_case urls[] = {
		{ "http://127.0.0.1:9000/hook", NULL },
		{ "http://[::1]:9000/hook", NULL },
		{ "http://localhost:9000/hook", NULL },
		{ "http://LOCALHOST:9000/hook", NULL },
		{ "http://hooks/cb", NULL },
		{ "http://10.200.0.1/cb", NULL },
		{ "http://[::ffff:10.200.0.1]/cb", NULL },
		/* still closed */
		{ "http://127.0.0.2/", PRIVATE },
		{ "http://169.254.169.254/", PRIVATE },
		{ "http://api.localhost/", LOCAL },
		{ "http://intranet/", LOCAL },
		{ "ftp://127.0.0.1/", "must use http or https" },
	};
	struct allowlist *a = parse_ok(spec);

	(void)state;
	check_urls(a, spec, urls, N(urls));
	allowlist_free(a);
}

/* The reason fits whatever buffer it is given. */
static void
test_url_reason_truncated(void **state)
{
	char err[8];

	(void)state;
	memset(err, 'x', sizeof(err));
	assert_int_equal(netcheck_url(NULL, "http://169.254.169.254/", err, sizeof(err)), -1);
	assert_int_equal(strlen(err), sizeof(err) - 1);
}

/*
 * Two gaps found by these tests (issue 13), fixed: the notifier's
 * connect-time check of the resolved address caught both later, but each
 * broke what netcheck.h promises.
 */

/* A negative or signed prefix length is refused (it was taken as a single address, /32 or /128). */
static void
test_negative_prefix(void **state)
{
	static const char *const bad[] = { "10.0.0.0/-8", "10.0.0.0/-1", "fd00::/-3", "10.0.0.0/+8" };
	char err[256];

	(void)state;
	for (size_t i = 0; i < N(bad); i++) {
		struct allowlist *a = allowlist_parse(bad[i], err, sizeof(err));

		if (a != NULL) {
			allowlist_free(a);
			fail_msg("allowlist '%s' accepted", bad[i]);
		}
	}
}

/* A trailing dot (a fully qualified name) names the same host: a localhost name or literal is still refused. */
static void
test_trailing_dot(void **state)
{
	static const struct url_case urls[] = {
		{ "http://localhost./", LOCAL },
		{ "http://api.localhost./", LOCAL },
		{ "http://printer.local./", LOCAL },
		{ "http://127.0.0.1./", "127.0.0.1" },
	};

	(void)state;
	check_urls(NULL, "(none)", urls, N(urls));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_default_policy),
		cmocka_unit_test(test_host_name_alone_opens_nothing),
		cmocka_unit_test(test_other_families_refused),
		cmocka_unit_test(test_allowlist_entries),
		cmocka_unit_test(test_allowlist_host_entry),
		cmocka_unit_test(test_allowlist_malformed),
		cmocka_unit_test(test_allowlist_error_names_entry),
		cmocka_unit_test(test_allowlist_limits),
		cmocka_unit_test(test_url_default),
		cmocka_unit_test(test_url_allowlisted),
		cmocka_unit_test(test_url_reason_truncated),
		cmocka_unit_test(test_negative_prefix),
		cmocka_unit_test(test_trailing_dot),
	};

	return cmocka_run_group_tests_name("netcheck", tests, NULL, NULL);
}

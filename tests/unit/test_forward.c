/*
 * forward.c: order-service's reads forwarded to several order-history
 * URLs, against small in-process HTTP servers (httpd.c) that answer a
 * status the test sets, and a port nothing listens on.  The first healthy
 * URL is asked; no answer or a 5xx is retried once on the next, a 4xx is
 * relayed; each URL has its own breaker; all down is FORWARD_DOWN.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

/* the module under test, with its static functions (it is linked into order-service only) */
#include "order-service/forward.c"

#include "httpd.h"

/* attempts time out after 500 ms, a read after 1 s; a breaker opens after 3 and stays 300 ms */
static const struct forward_policy policy = { 500, 4, 3, 300, 1000 };

/* A fake order-history: answers every GET with status and {"port":N}. */
struct srv {
	struct httpd *h;
	atomic_int status;
	atomic_int hits;
	char url[64];
};

static void
srv_handle(void *arg, const struct http_req *req, struct http_resp *resp)
{
	struct srv *s = arg;
	char body[64];

	(void)req;
	s->hits++;
	snprintf(body, sizeof(body), "{\"port\":%d}", httpd_port(s->h));
	resp->status = s->status;
	resp->body = strdup(body);
}

static void
srv_start(struct srv *s, int status)
{
	char err[256];

	memset(s, 0, sizeof(*s));
	s->status = status;
	s->h = httpd_start("127.0.0.1", 0, 1024, srv_handle, s, err, sizeof(err));
	assert_non_null(s->h);
	snprintf(s->url, sizeof(s->url), "http://127.0.0.1:%d", httpd_port(s->h));
}

/* A URL on a port nothing listens on (bound, then closed): connections are refused. */
static void
dead_url(char *url, size_t n)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	close(fd);
	snprintf(url, n, "http://127.0.0.1:%d", ntohs(a.sin_port));
}

/* One read's outcome, handed over by done() on the forwarder's thread. */
struct answer {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int done;
	long status;
	char *body;
};

static void
on_done(void *arg, long status, char *body)
{
	struct answer *a = arg;

	pthread_mutex_lock(&a->lock);
	a->status = status;
	a->body = body;
	a->done = 1;
	pthread_cond_signal(&a->cond);
	pthread_mutex_unlock(&a->lock);
}

/*
 * GETs /v1/orders/x through f; returns forward_get()'s result and, when
 * queued, the status and body (caller frees) once done() came.
 */
static enum forward_result
get(struct forwarder *f, long *status, char **body, int *retry_after)
{
	struct answer a = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, NULL };
	enum forward_result r = forward_get(f, "/v1/orders/x", on_done, &a, retry_after);

	if (r != FORWARD_QUEUED)
		return r;
	pthread_mutex_lock(&a.lock);
	while (!a.done)
		pthread_cond_wait(&a.cond, &a.lock); /* the read's budget bounds it */
	pthread_mutex_unlock(&a.lock);
	*status = a.status;
	*body = a.body;
	return r;
}

/* A read that must be queued and answered: its status; the body must be from's (any when from is NULL). */
static long
read_from(struct forwarder *f, const struct srv *from)
{
	long status = -1;
	char *body = NULL, want[64];
	int retry;

	assert_int_equal(get(f, &status, &body, &retry), FORWARD_QUEUED);
	if (from != NULL) {
		snprintf(want, sizeof(want), "{\"port\":%d}", httpd_port(from->h));
		assert_non_null(body);
		assert_string_equal(body, want);
	}
	free(body);
	return status;
}

/*
 * The value of the sample "name{url="<url>"}" in the metrics, or with url
 * NULL the sum of the unlabelled "name" samples (one per forwarder this
 * test started); -1 when there is none.
 */
static long
sample(const char *name, const char *url)
{
	char line[300], *text = metrics_render(), *p;
	long v = -1;

	if (url != NULL)
		snprintf(line, sizeof(line), "\n%s{url=\"%s\"} ", name, url);
	else
		snprintf(line, sizeof(line), "\n%s ", name);
	for (p = text; p != NULL && (p = strstr(p, line)) != NULL; p += strlen(line))
		v = (v < 0 ? 0 : v) + strtol(p + strlen(line), NULL, 10);
	free(text);
	return v;
}

static struct forwarder *
start2(const char *a, const char *b)
{
	char urls[200];
	struct forwarder *f;

	snprintf(urls, sizeof(urls), "%s,%s", a, b);
	assert_non_null(f = forward_start(urls, "a-history-secret-of-16+", &policy));
	return f;
}

static void
test_url_lists(void **state)
{
	static const char *const good[] = {
		"http://127.0.0.1:8081",
		"http://a:1,http://b:2",
		" http://a:1 , https://b/history/ ",
		"HTTP://a,http://b,http://c,http://d,http://e,http://f,http://g,http://h",
		"http://a/@x",
	};
	static const struct {
		const char *urls, *said;
	} bad[] = {
		{ "", "an empty URL" },
		{ "http://a,", "an empty URL" },
		{ "http://a,,http://b", "an empty URL" },
		{ "ftp://a", "not an http:// or https:// URL" },
		{ "127.0.0.1:8081", "not an http:// or https:// URL" },
		{ "http://", "no host" },
		{ "http://:80", "no host" },
		{ "http://u:pw-xyz@a", "a URL with a user or password" },
		{ "http://a?x=1", "no query or fragment" },
		{ "http://a#f", "no query or fragment" },
		{ "http://a b", "a space, quote" },
		{ "http://a\"b", "a space, quote" },
		{ "http://a\\b", "a space, quote" },
		{ "http://a/,http://A", "listed twice" },
		{ "http://a,http://b,http://c,http://d,http://e,http://f,http://g,http://h,http://i", "more than 8" },
	};
	char err[300];

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		if (forward_check_urls(good[i], err, sizeof(err)) != 0)
			fail_msg("'%s' refused: %s", good[i], err);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		if (forward_check_urls(bad[i].urls, err, sizeof(err)) == 0 || strstr(err, bad[i].said) == NULL)
			fail_msg("'%s': want \"%s\", got \"%s\"", bad[i].urls, bad[i].said, err);
		assert_null(strstr(err, "pw-xyz")); /* a password is not repeated */
	}
	assert_null(forward_start("ftp://a", NULL, &policy));
}

static void
test_first_healthy_url_answers(void **state)
{
	struct srv a, b;
	struct forwarder *f;

	(void)state;
	srv_start(&a, 200);
	srv_start(&b, 200);
	f = start2(a.url, b.url);
	for (int i = 0; i < 5; i++)
		assert_int_equal(read_from(f, &a), 200);
	assert_int_equal(a.hits, 5);
	assert_int_equal(b.hits, 0);
	assert_int_equal(sample("pizza_history_backend_up", a.url), 1);
	assert_int_equal(sample("pizza_history_backend_up", b.url), 1);
	forward_stop(f);
	httpd_stop(a.h);
	httpd_stop(b.h);
}

static void
test_5xx_retried_on_the_next_4xx_relayed(void **state)
{
	struct srv a, b;
	struct forwarder *f;
	long retries;

	(void)state;
	srv_start(&a, 503);
	srv_start(&b, 200);
	f = start2(a.url, b.url);
	retries = sample("pizza_history_retries_total", NULL);
	assert_int_equal(read_from(f, &b), 200);
	assert_int_equal(a.hits, 1);
	assert_int_equal(b.hits, 1);
	assert_int_equal(sample("pizza_history_retries_total", NULL), retries + 1);
	assert_int_equal(sample("pizza_history_backend_failures_total", a.url), 1);
	/* a 4xx is order-history's answer: relayed, the next URL never asked */
	a.status = 404;
	assert_int_equal(read_from(f, &a), 404);
	assert_int_equal(b.hits, 1);
	assert_int_equal(sample("pizza_history_retries_total", NULL), retries + 1);
	forward_stop(f);
	httpd_stop(a.h);
	httpd_stop(b.h);
}

static void
test_failing_url_skipped_by_its_breaker_then_tried_again(void **state)
{
	struct srv a, b;
	struct forwarder *f;
	int64_t deadline;

	(void)state;
	srv_start(&a, 500);
	srv_start(&b, 200);
	f = start2(a.url, b.url);
	/* 3 reads fail on a and are answered by b; then a's breaker is open */
	for (int i = 0; i < 3; i++)
		assert_int_equal(read_from(f, &b), 200);
	assert_int_equal(a.hits, 3);
	assert_int_equal(sample("pizza_history_backend_up", a.url), 0);
	assert_int_equal(sample("pizza_history_backend_up", b.url), 1);
	assert_int_equal(read_from(f, &b), 200);
	assert_int_equal(a.hits, 3); /* skipped: not asked at all */
	/* a heals: once its open time is over, one read is its trial and closes the breaker */
	a.status = 200;
	deadline = mono_ms() + 5000;
	while (a.hits == 3 && mono_ms() < deadline)
		(void)read_from(f, NULL);
	assert_int_equal(a.hits, 4);
	assert_int_equal(sample("pizza_history_backend_up", a.url), 1);
	assert_int_equal(read_from(f, &a), 200);
	forward_stop(f);
	httpd_stop(a.h);
	httpd_stop(b.h);
}

static void
test_connection_refused_retried_then_all_down(void **state)
{
	char dead[64];
	struct srv b;
	struct forwarder *f;
	long status;
	char *body;
	int retry = 0;

	(void)state;
	dead_url(dead, sizeof(dead));
	srv_start(&b, 200);
	f = start2(dead, b.url);
	for (int i = 0; i < 4; i++)
		assert_int_equal(read_from(f, &b), 200);
	assert_int_equal(sample("pizza_history_backend_failures_total", dead), 3);
	/* b fails too: the last 5xx is the answer; after 3 more, both are skipped and reads refused at once */
	b.status = 500;
	for (int i = 0; i < 3; i++)
		assert_int_equal(read_from(f, &b), 500);
	assert_int_equal(get(f, &status, &body, &retry), FORWARD_DOWN);
	assert_true(retry >= 1);
	assert_int_equal(sample("pizza_history_backend_up", dead), 0);
	assert_int_equal(sample("pizza_history_backend_up", b.url), 0);
	forward_stop(f);
	httpd_stop(b.h);
}

static void
test_one_url_is_not_retried(void **state)
{
	struct srv a;
	struct forwarder *f;

	(void)state;
	srv_start(&a, 502);
	assert_non_null(f = forward_start(a.url, NULL, &policy));
	assert_int_equal(read_from(f, &a), 502);
	assert_int_equal(a.hits, 1);
	forward_stop(f);
	httpd_stop(a.h);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_url_lists),
		cmocka_unit_test(test_first_healthy_url_answers),
		cmocka_unit_test(test_5xx_retried_on_the_next_4xx_relayed),
		cmocka_unit_test(test_failing_url_skipped_by_its_breaker_then_tried_again),
		cmocka_unit_test(test_connection_refused_retried_then_all_down),
		cmocka_unit_test(test_one_url_is_not_retried),
	};

	log_init("test_forward", LOG_LEVEL_ERROR);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	return cmocka_run_group_tests_name("forward", tests, NULL, NULL);
}

/* metrics: Prometheus text exposition, each family as one group. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "httpd.h"
#include "metrics.h"
#include "util.h"

/* Families registered interleaved, as the consumer skeleton does per topic row. */
static void
test_families_are_grouped(void **state)
{
	struct metric *a1, *b1, *a2, *b2;
	char *text;
	const char *p, *help_a, *help_b, *last_a, *first_b;

	(void)state;
	a1 = metric_counter("t_a_total", "A things", "topic=\"x\"");
	b1 = metric_counter("t_b_total", "B things", "topic=\"x\"");
	a2 = metric_counter("t_a_total", "A things", "topic=\"y\"");
	b2 = metric_counter("t_b_total", "B things", "topic=\"y\"");
	metric_inc(a1);
	metric_add(a2, 2);
	metric_inc(b2);
	(void)b1;
	assert_non_null(text = metrics_render());

	/* one HELP and TYPE per family */
	help_a = strstr(text, "# HELP t_a_total A things\n# TYPE t_a_total counter\n");
	help_b = strstr(text, "# HELP t_b_total B things\n# TYPE t_b_total counter\n");
	assert_non_null(help_a);
	assert_non_null(help_b);
	assert_null(strstr(help_a + 1, "# HELP t_a_total"));
	assert_null(strstr(help_b + 1, "# HELP t_b_total"));
	/* every sample of a family follows its TYPE line and precedes the next family */
	assert_non_null(strstr(text, "t_a_total{topic=\"x\"} 1\nt_a_total{topic=\"y\"} 2\n# HELP t_b_total"));
	assert_non_null(strstr(text, "t_b_total{topic=\"x\"} 0\nt_b_total{topic=\"y\"} 1\n"));
	last_a = strstr(text, "t_a_total{topic=\"y\"}");
	first_b = strstr(text, "t_b_total{topic=\"x\"}");
	assert_true(help_a < last_a && last_a < help_b && help_b < first_b);
	for (p = text; (p = strstr(p, "t_a_total{")) != NULL; p++)
		assert_true(p > help_a && p < help_b);
	free(text);
}

static double
seven(void *arg)
{
	(void)arg;
	return 7;
}

static void
test_histogram_and_fn(void **state)
{
	static const double bounds[] = { 0.1, 1 };
	struct metric *h = metric_histogram("t_h_seconds", "H", NULL, bounds, 2);
	char *text;

	(void)state;
	metric_gauge_fn("t_g", "G", NULL, seven, NULL);
	metric_observe(h, 0.05);
	metric_observe(h, 0.5);
	metric_observe(h, 5);
	assert_non_null(text = metrics_render());
	assert_non_null(strstr(text, "# TYPE t_h_seconds histogram\n"
				     "t_h_seconds_bucket{le=\"0.1\"} 1\n"
				     "t_h_seconds_bucket{le=\"1\"} 2\n"
				     "t_h_seconds_bucket{le=\"+Inf\"} 3\n"
				     "t_h_seconds_sum 5.55\n"
				     "t_h_seconds_count 3\n"));
	assert_non_null(strstr(text, "# TYPE t_g gauge\nt_g 7\n"));
	free(text);
}

/* A metric's value in a page, or -1 when the series is missing. */
static double
value(const char *page, const char *series)
{
	const char *p = page;
	size_t n = strlen(series);

	while ((p = strstr(p, series)) != NULL) {
		if ((p == page || p[-1] == '\n') && p[n] == ' ')
			return strtod(p + n + 1, NULL);
		p += n;
	}
	return -1;
}

/* The process's own metrics, read from /proc/self as Prometheus's client libraries do; the build's labels escaped. */
static void
test_process_and_build_info(void **state)
{
	char *text;
	double start;

	(void)state;
	metrics_process("svc \"quoted\"", "1.2.3");
	assert_non_null(text = metrics_render());
	assert_non_null(strstr(text, "# TYPE process_cpu_seconds_total counter\n"));
	assert_non_null(strstr(text, "# TYPE process_resident_memory_bytes gauge\n"));
	assert_true(value(text, "process_resident_memory_bytes") > 100000);
	assert_true(value(text, "process_virtual_memory_bytes") >= value(text, "process_resident_memory_bytes"));
	assert_true(value(text, "process_cpu_seconds_total") >= 0);
	/* stdin, stdout, stderr at least; below the soft limit */
	assert_true(value(text, "process_open_fds") >= 3);
	assert_true(value(text, "process_max_fds") >= value(text, "process_open_fds"));
	/* started within the last hour, printed with its fraction (not 1.7e+09) */
	start = value(text, "process_start_time_seconds");
	assert_true(fabs(start - (double)now_ms() / 1000) < 3600);
	assert_null(strstr(text, "process_start_time_seconds 1.7"));
	assert_non_null(strstr(text, "pizza_build_info{service=\"svc \\\"quoted\\\"\",version=\"1.2.3\"} 1\n"));
	free(text);
}

static double
not_a_number(void *arg)
{
	(void)arg;
	return NAN;
}

/* A value that cannot be read prints as NaN, which every parser takes, never as garbage. */
static void
test_nan(void **state)
{
	char *text;

	(void)state;
	metric_gauge_fn("t_nan", "N", NULL, not_a_number, NULL);
	assert_non_null(text = metrics_render());
	assert_non_null(strstr(text, "\nt_nan NaN\n"));
	free(text);
}

/* The route label of the HTTP request metrics: a template from the table, or "other", never the path. */
static void
test_http_routes(void **state)
{
	static const char *const routes[] = { "/v1/orders", "/v1/orders/{id}", "/v1/users/{user}/orders", "/", NULL };

	(void)state;
	assert_string_equal(httpd_route(routes, "/v1/orders"), "/v1/orders");
	assert_string_equal(httpd_route(routes, "/v1/orders/01ABC"), "/v1/orders/{id}");
	assert_string_equal(httpd_route(routes, "/v1/users/alice/orders"), "/v1/users/{user}/orders");
	assert_string_equal(httpd_route(routes, "/"), "/");
	/* no id, an extra segment, a prefix, a longer name, a doubled slash: other */
	assert_string_equal(httpd_route(routes, "/v1/orders/"), "other");
	assert_string_equal(httpd_route(routes, "/v1/orders/01ABC/x"), "other");
	assert_string_equal(httpd_route(routes, "/v1/users/alice"), "other");
	assert_string_equal(httpd_route(routes, "/v1/ordersx"), "other");
	assert_string_equal(httpd_route(routes, "//"), "other");
	assert_string_equal(httpd_route(routes, "/v1/users//orders"), "other");
	assert_string_equal(httpd_route(routes, ""), "other");
	assert_string_equal(httpd_route(NULL, "/v1/orders"), "other");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_families_are_grouped),
		cmocka_unit_test(test_histogram_and_fn),
		cmocka_unit_test(test_process_and_build_info),
		cmocka_unit_test(test_nan),
		cmocka_unit_test(test_http_routes),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* metrics: Prometheus text exposition, each family as one group. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "metrics.h"

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

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_families_are_grouped),
		cmocka_unit_test(test_histogram_and_fn),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

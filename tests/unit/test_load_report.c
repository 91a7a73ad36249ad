/*
 * test_load_report.c - phone-sim load's latency percentiles and chart (load_report.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../client-sim/load_report.h"

/* 1..1000 ms, shuffled: nearest-rank percentiles are exact and known. */
static void
test_percentiles(void **state)
{
	int64_t us[1000];
	struct latency l;

	(void)state;
	for (int i = 0; i < 1000; i++)
		us[i] = (int64_t)((i * 367) % 1000 + 1) * 1000; /* a permutation of 1..1000 ms */
	latency_of(us, 1000, &l);
	assert_int_equal(l.n, 1000);
	assert_true(l.p50 == 500.0);
	assert_true(l.p90 == 900.0);
	assert_true(l.p99 == 990.0);
	assert_true(l.p999 == 999.0);
	assert_true(l.max == 1000.0);
	assert_true(l.mean == 500.5);
	/* sorted in place: the chart needs it */
	for (int i = 1; i < 1000; i++)
		assert_true(us[i - 1] <= us[i]);
}

static void
test_small_and_empty(void **state)
{
	int64_t one[] = { 2500 };
	struct latency l;

	(void)state;
	latency_of(one, 1, &l);
	assert_true(l.p50 == 2.5 && l.p99 == 2.5 && l.p999 == 2.5 && l.max == 2.5);
	latency_of(NULL, 0, &l);
	assert_int_equal(l.n, 0);
	assert_true(l.p99 == 0 && l.max == 0);
}

static void
test_json(void **state)
{
	int64_t us[] = { 1000, 2000, 3000, 4000 };
	struct latency l;
	json_t *j;

	(void)state;
	latency_of(us, 4, &l);
	j = latency_json(&l);
	assert_int_equal(json_integer_value(json_object_get(j, "n")), 4);
	assert_true(json_real_value(json_object_get(j, "p50")) == 2.0);
	assert_true(json_real_value(json_object_get(j, "max")) == 4.0);
	assert_non_null(json_object_get(j, "p999"));
	json_decref(j);
}

/* The chart is a well-formed SVG with the curve and the three marks a reader looks for. */
static void
test_svg(void **state)
{
	char path[] = "/tmp/test_load_report.XXXXXX";
	int64_t us[200];
	struct latency l;
	char buf[65536];
	size_t n;
	FILE *f;
	int fd;

	(void)state;
	for (int i = 0; i < 200; i++)
		us[i] = 1000 + i * 50;
	latency_of(us, 200, &l);
	fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(latency_svg(path, "a run", us, 200, &l), 0);
	f = fopen(path, "r");
	assert_non_null(f);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	unlink(path);
	assert_non_null(strstr(buf, "<svg "));
	assert_non_null(strstr(buf, "</svg>"));
	assert_non_null(strstr(buf, "<polyline"));
	assert_non_null(strstr(buf, "a run"));
	assert_non_null(strstr(buf, "p50 "));
	assert_non_null(strstr(buf, "p99 "));
	assert_non_null(strstr(buf, "p99.9 "));
	assert_non_null(strstr(buf, "200 orders"));
	/* an unwritable path is an error, not a crash */
	assert_int_equal(latency_svg("/nonexistent/dir/x.svg", "t", us, 200, &l), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_percentiles),
		cmocka_unit_test(test_small_and_empty),
		cmocka_unit_test(test_json),
		cmocka_unit_test(test_svg),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

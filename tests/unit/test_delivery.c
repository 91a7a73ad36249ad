/* The callback retry schedule: exponential, capped, with equal jitter. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "notifier/delivery.h"

static const struct delivery_policy p = { 8, 1000, 60000, 5000 };

static void
test_doubles_from_base(void **state)
{
	(void)state;
	/* jitter 0 gives the lower edge: half the nominal wait */
	assert_int_equal(delivery_backoff_ms(&p, 1, 0.0), 500);
	assert_int_equal(delivery_backoff_ms(&p, 2, 0.0), 1000);
	assert_int_equal(delivery_backoff_ms(&p, 3, 0.0), 2000);
	assert_int_equal(delivery_backoff_ms(&p, 4, 0.0), 4000);
	/* jitter just under 1 gives just under the nominal wait */
	assert_in_range(delivery_backoff_ms(&p, 1, 0.999), 990, 999);
	assert_in_range(delivery_backoff_ms(&p, 3, 0.999), 3990, 3999);
}

static void
test_capped(void **state)
{
	(void)state;
	assert_int_equal(delivery_backoff_ms(&p, 7, 0.0), 30000);
	assert_int_equal(delivery_backoff_ms(&p, 8, 0.0), 30000);
	assert_int_equal(delivery_backoff_ms(&p, 60, 0.0), 30000); /* no overflow for absurd counts */
	assert_in_range(delivery_backoff_ms(&p, 60, 0.5), 30000, 60000);
}

static void
test_jitter_spreads_within_bounds(void **state)
{
	int64_t lo = INT64_MAX, hi = 0;

	(void)state;
	for (int i = 0; i < 100; i++) {
		int64_t d = delivery_backoff_ms(&p, 3, i / 100.0);
		assert_in_range(d, 2000, 3999);
		lo = d < lo ? d : lo;
		hi = d > hi ? d : hi;
	}
	assert_true(hi - lo > 1500); /* really spread, not a constant */
	/* out-of-range jitter is clamped, never outside the window */
	assert_in_range(delivery_backoff_ms(&p, 3, -5.0), 2000, 3999);
	assert_in_range(delivery_backoff_ms(&p, 3, 7.0), 2000, 3999);
}

static void
test_schedule_total_is_bounded(void **state)
{
	int64_t worst = 0;

	(void)state;
	/* 8 attempts = 7 waits: at most 1+2+4+8+16+32+60 s = 123 s before failing for good */
	for (int f = 1; f < p.max_attempts; f++)
		worst += delivery_backoff_ms(&p, f, 0.999999);
	assert_in_range(worst, 100000, 123000);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_doubles_from_base),
		cmocka_unit_test(test_capped),
		cmocka_unit_test(test_jitter_spreads_within_bounds),
		cmocka_unit_test(test_schedule_total_is_bounded),
	};

	return cmocka_run_group_tests_name("delivery_backoff", tests, NULL, NULL);
}

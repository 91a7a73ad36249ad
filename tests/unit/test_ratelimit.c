/* ratelimit: exact keys, refill, bounded table without takeovers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "ratelimit.h"

static int
allowed(struct ratelimit *rl, const char *key, int64_t now)
{
	return ratelimit_take(rl, key, strlen(key), now) == 0;
}

/* A burst, then one token per 1/rate; the wait says when. */
static void
test_burst_and_refill(void **state)
{
	struct ratelimit *rl = ratelimit_new(10, 5, 100);

	(void)state;
	for (int i = 0; i < 5; i++)
		assert_true(allowed(rl, "a", 1000));
	assert_int_equal(ratelimit_take(rl, "a", 1, 1000), 101); /* 100 ms to the next token */
	assert_false(allowed(rl, "a", 1050));
	assert_true(allowed(rl, "a", 1101));
	assert_false(allowed(rl, "a", 1101));
	/* a long pause refills to the burst, never past it */
	for (int i = 0; i < 5; i++)
		assert_true(allowed(rl, "a", 100000));
	assert_false(allowed(rl, "a", 100000));
	ratelimit_free(rl);
}

/* Every key has its own bucket, whatever the hash: two keys never share or take over one. */
static void
test_keys_are_exact(void **state)
{
	struct ratelimit *rl = ratelimit_new(1, 10, 8); /* 16 slots: many keys share a home slot */
	char key[16];
	int granted = 0;

	(void)state;
	/* 8 keys alternating, 100 requests each within the same second: 10 each, no more */
	for (int round = 0; round < 100; round++)
		for (int k = 0; k < 8; k++) {
			snprintf(key, sizeof(key), "10.0.0.%d", k);
			granted += allowed(rl, key, 5000);
		}
	assert_int_equal(granted, 8 * 10);
	ratelimit_free(rl);
}

/*
 * The table is bounded: a new key takes only a slot whose bucket has
 * refilled (an idle key); while every nearby slot is busy it is refused.
 */
static void
test_full_table_refuses_then_recycles(void **state)
{
	struct ratelimit *rl = ratelimit_new(1, 2, 8);
	char key[16];
	int refused = 0;

	(void)state;
	/* far more keys than slots, each taking its whole burst at once */
	for (int k = 0; k < 200; k++) {
		snprintf(key, sizeof(key), "k%d", k);
		refused += !allowed(rl, key, 0);
		allowed(rl, key, 0);
	}
	assert_true(refused > 0);
	/* the busy keys cannot come back for more than their burst: no fresh bucket by eviction */
	assert_false(allowed(rl, "k0", 0));
	/* two seconds later every bucket has refilled: slots are recycled for new keys */
	for (int k = 200; k < 216; k++) {
		snprintf(key, sizeof(key), "k%d", k);
		assert_true(allowed(rl, key, 2000));
	}
	ratelimit_free(rl);
}

static void
test_no_limit(void **state)
{
	struct ratelimit *rl = ratelimit_new(0, 1, 8);

	(void)state;
	for (int i = 0; i < 1000; i++)
		assert_true(allowed(rl, "a", 0));
	assert_true(ratelimit_take(rl, "", 0, 0) == 0);
	ratelimit_free(rl);
	assert_int_equal(ratelimit_take(NULL, "a", 1, 0), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_burst_and_refill),
		cmocka_unit_test(test_keys_are_exact),
		cmocka_unit_test(test_full_table_refuses_then_recycles),
		cmocka_unit_test(test_no_limit),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_idset.c - the bounded id set consumers use to drop redeliveries (idset.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "idset.h"
#include "util.h"

static void
test_add_has(void **state)
{
	struct idset *s = idset_new(8);

	(void)state;
	assert_non_null(s);
	assert_int_equal(idset_size(s), 0);
	assert_int_equal(idset_has(s, "a"), 0);
	assert_int_equal(idset_add(s, "a"), 1);
	assert_int_equal(idset_has(s, "a"), 1);
	assert_int_equal(idset_has(s, "b"), 0);
	assert_int_equal(idset_has(s, "A"), 0);
	assert_int_equal(idset_has(s, "a "), 0);
	assert_int_equal(idset_size(s), 1);
	/* a duplicate add changes nothing */
	assert_int_equal(idset_add(s, "a"), 0);
	assert_int_equal(idset_size(s), 1);
	assert_int_equal(idset_add(s, "b"), 1);
	assert_int_equal(idset_size(s), 2);
	assert_int_equal(idset_has(s, "a"), 1);
	assert_int_equal(idset_has(s, "b"), 1);
	idset_free(s);
	idset_free(NULL);
}

static void
test_id_length(void **state)
{
	struct idset *s = idset_new(4);
	char id[NAME_MAX_LEN + 2];

	(void)state;
	memset(id, 'x', NAME_MAX_LEN);
	id[NAME_MAX_LEN] = '\0';
	assert_int_equal(idset_add(s, id), 1);
	assert_int_equal(idset_has(s, id), 1);
	id[NAME_MAX_LEN] = 'x';
	id[NAME_MAX_LEN + 1] = '\0';
	assert_int_equal(idset_add(s, id), -1);
	assert_int_equal(idset_has(s, id), 0);
	assert_int_equal(idset_size(s), 1);
	idset_free(s);
}

static void
test_evicts_oldest(void **state)
{
	struct idset *s = idset_new(3);

	(void)state;
	assert_int_equal(idset_add(s, "a"), 1);
	assert_int_equal(idset_add(s, "b"), 1);
	assert_int_equal(idset_add(s, "c"), 1);
	assert_int_equal(idset_size(s), 3);
	/* re-adding does not make "a" younger */
	assert_int_equal(idset_add(s, "a"), 0);
	assert_int_equal(idset_add(s, "d"), 1);
	assert_int_equal(idset_size(s), 3);
	assert_int_equal(idset_has(s, "a"), 0);
	assert_int_equal(idset_has(s, "b"), 1);
	assert_int_equal(idset_has(s, "c"), 1);
	assert_int_equal(idset_has(s, "d"), 1);
	/* a forgotten id is new again, and pushes out the next oldest */
	assert_int_equal(idset_add(s, "a"), 1);
	assert_int_equal(idset_has(s, "b"), 0);
	assert_int_equal(idset_has(s, "c"), 1);
	assert_int_equal(idset_has(s, "d"), 1);
	assert_int_equal(idset_has(s, "a"), 1);
	assert_int_equal(idset_size(s), 3);
	idset_free(s);
}

static void
test_capacity_one(void **state)
{
	struct idset *s = idset_new(1);

	(void)state;
	assert_non_null(s);
	assert_int_equal(idset_add(s, "a"), 1);
	assert_int_equal(idset_add(s, "a"), 0);
	assert_int_equal(idset_add(s, "b"), 1);
	assert_int_equal(idset_has(s, "a"), 0);
	assert_int_equal(idset_has(s, "b"), 1);
	assert_int_equal(idset_size(s), 1);
	idset_free(s);
	assert_null(idset_new(0));
}

/* Many ids through a small set: exactly the newest cap ids are remembered. */
static void
test_many(void **state)
{
	enum { CAP = 1000, N = 25000 };
	struct idset *s = idset_new(CAP);
	char id[32];

	(void)state;
	for (int i = 0; i < N; i++) {
		snprintf(id, sizeof(id), "ord-%d", i);
		assert_int_equal(idset_add(s, id), 1);
		if (i % 7 == 0)
			assert_int_equal(idset_add(s, id), 0);
		assert_int_equal(idset_size(s), i + 1 < CAP ? (size_t)i + 1 : CAP);
	}
	for (int i = 0; i < N; i++) {
		snprintf(id, sizeof(id), "ord-%d", i);
		if (idset_has(s, id) != (i >= N - CAP))
			fail_msg("%s: has=%d, expected %d", id, idset_has(s, id), i >= N - CAP);
	}
	idset_free(s);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_add_has),
		cmocka_unit_test(test_id_length),
		cmocka_unit_test(test_evicts_oldest),
		cmocka_unit_test(test_capacity_one),
		cmocka_unit_test(test_many),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

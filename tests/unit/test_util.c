/*
 * test_util.c - util.h: RFC 3339 times, sortable ids, names, numbers and
 * bounded copies.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

static const char b32[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/* ---- time ------------------------------------------------------------------ */

static void
test_time_format(void **state)
{
	char buf[32];

	(void)state;
	assert_string_equal(time_rfc3339(0, buf, sizeof(buf)), "1970-01-01T00:00:00.000Z");
	assert_string_equal(time_rfc3339(INT64_C(1769860800000), buf, sizeof(buf)), "2026-01-31T12:00:00.000Z");
	assert_string_equal(time_rfc3339(INT64_C(1709251199999), buf, sizeof(buf)), "2024-02-29T23:59:59.999Z");
	assert_string_equal(time_rfc3339(INT64_C(1769860800042), buf, sizeof(buf)), "2026-01-31T12:00:00.042Z");
	assert_int_equal(strlen(buf), 24);
	/* returns its buffer */
	assert_ptr_equal(time_rfc3339(1, buf, sizeof(buf)), buf);
}

static void
test_time_round_trip(void **state)
{
	static const int64_t ms[] = {
		0, 1, 999, 1000, INT64_C(951782400000) /* 2000-02-29 */, INT64_C(1709251199999),
		INT64_C(1769860800000), INT64_C(4102444799999) /* 2099-12-31T23:59:59.999Z */,
		INT64_C(253402300799999) /* 9999-12-31T23:59:59.999Z */,
	};
	char buf[32];

	(void)state;
	for (size_t i = 0; i < sizeof(ms) / sizeof(ms[0]); i++) {
		int64_t back = -1;

		time_rfc3339(ms[i], buf, sizeof(buf));
		if (time_parse_rfc3339(buf, &back) != 0)
			fail_msg("%s (from %lld) not parsed", buf, (long long)ms[i]);
		assert_true(back == ms[i]);
	}
	/* and now, the common case */
	{
		int64_t t = now_ms(), back = -1;

		assert_int_equal(time_parse_rfc3339(time_rfc3339(t, buf, sizeof(buf)), &back), 0);
		assert_true(back == t);
	}
}

static void
test_time_parse_accepts(void **state)
{
	int64_t ms = -1;

	(void)state;
	assert_int_equal(time_parse_rfc3339("2026-01-31T12:00:00.000Z", &ms), 0);
	assert_true(ms == INT64_C(1769860800000));
	assert_int_equal(time_parse_rfc3339("2024-02-29T00:00:00.000Z", &ms), 0); /* leap year */
	assert_int_equal(time_parse_rfc3339("2000-02-29T00:00:00.000Z", &ms), 0); /* divisible by 400 */
	assert_int_equal(time_parse_rfc3339("1970-01-01T00:00:00.000Z", &ms), 0);
	assert_true(ms == 0);
	assert_int_equal(time_parse_rfc3339("2026-12-31T23:59:59.999Z", &ms), 0);
	assert_int_equal(time_parse_rfc3339("2026-04-30T00:00:00.000Z", &ms), 0);
}

static void
test_time_parse_rejects(void **state)
{
	static const char *const bad[] = {
		"",
		"2026-01-31T12:00:00Z",          /* no milliseconds */
		"2026-01-31T12:00:00.000",       /* no Z */
		"2026-01-31T12:00:00.000+00:00", /* offset */
		"2026-01-31T12:00:00.00Z",       /* two digits of ms */
		"2026-01-31T12:00:00.0000Z",     /* four digits of ms */
		"2026-01-31 12:00:00.000Z",      /* space */
		"2026-01-31t12:00:00.000z",      /* lower case */
		"2026-13-01T12:00:00.000Z",      /* month 13 */
		"2026-00-01T12:00:00.000Z",      /* month 0 */
		"2026-01-00T12:00:00.000Z",      /* day 0 */
		"2026-01-32T12:00:00.000Z",
		"2026-02-30T12:00:00.000Z",      /* Feb 30 */
		"2025-02-29T12:00:00.000Z",      /* not a leap year */
		"2100-02-29T12:00:00.000Z",      /* centuries are not, unless divisible by 400 */
		"2026-04-31T12:00:00.000Z",
		"2026-01-31T24:00:00.000Z",
		"2026-01-31T12:60:00.000Z",
		"2026-01-31T12:00:60.000Z",      /* no leap seconds */
		"1969-12-31T23:59:59.999Z",      /* before the epoch */
		"2026-1-31T12:00:00.000Z",
		"2026-01-31T12:00:00.000Z ",
		" 2026-01-31T12:00:00.000Z",
		"2026/01/31T12:00:00.000Z",
		"2026-01-31T12:00:00,000Z",
		"2026-0a-31T12:00:00.000Z",
		"+026-01-31T12:00:00.000Z",
		"2026-01-31T-1:00:00.000Z",
		"yesterday",
	};
	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int64_t ms = 12345;

		if (time_parse_rfc3339(bad[i], &ms) != -1)
			fail_msg("'%s' was accepted", bad[i]);
		assert_true(ms == 12345); /* nothing stored */
	}
	{
		int64_t ms = 12345;

		assert_int_equal(time_parse_rfc3339(NULL, &ms), -1);
	}
}

/* ---- ids ------------------------------------------------------------------- */

static int64_t
id_time(const char *id)
{
	int64_t t = 0;

	for (int i = 0; i < 10; i++) {
		const char *p = strchr(b32, id[i]);

		assert_non_null(p);
		t = t * 32 + (p - b32);
	}
	return t;
}

static void
test_id_form(void **state)
{
	char id[ID_LEN + 8];
	int64_t before, after;

	(void)state;
	memset(id, '!', sizeof(id));
	before = now_ms();
	id_new(id);
	after = now_ms();
	assert_int_equal(strlen(id), ID_LEN);
	assert_int_equal(ID_LEN, 26);
	for (int i = 0; i < ID_LEN; i++)
		if (strchr(b32, id[i]) == NULL || id[i] == '\0')
			fail_msg("'%c' in %s is not Crockford base32", id[i], id);
	assert_true(name_valid(id));
	/* the first ten characters are the creation time in ms */
	assert_true(id_time(id) >= before && id_time(id) <= after);
}

static void
test_id_sortable(void **state)
{
	char a[ID_LEN + 1], b[ID_LEN + 1], c[ID_LEN + 1];

	(void)state;
	id_new(a);
	sleep_ms(2);
	id_new(b);
	sleep_ms(2);
	id_new(c);
	assert_true(strcmp(a, b) < 0);
	assert_true(strcmp(b, c) < 0);
	assert_true(id_time(a) < id_time(b));
}

static int
cmp_id(const void *x, const void *y)
{
	return strcmp(x, y);
}

static void
test_id_unique(void **state)
{
	enum { N = 10000 };
	char(*ids)[ID_LEN + 1] = malloc(N * sizeof(*ids));

	(void)state;
	assert_non_null(ids);
	for (int i = 0; i < N; i++)
		id_new(ids[i]);
	qsort(ids, N, sizeof(*ids), cmp_id);
	for (int i = 1; i < N; i++)
		if (strcmp(ids[i - 1], ids[i]) == 0)
			fail_msg("id %s generated twice", ids[i]);
	/* the random part is not constant: more than one value of its first character */
	{
		int first = ids[0][10], varied = 0;

		for (int i = 1; i < N && !varied; i++)
			varied = ids[i][10] != first;
		assert_true(varied);
	}
	free(ids);
}

/* ---- names, numbers, copies ------------------------------------------------ */

static void
test_name_valid(void **state)
{
	char s[NAME_MAX_LEN + 2];
	static const char *const bad[] = {
		"", "a/b", "a+b", "#", "a b", "a.b", "a:b", "\xc3\xa9t\xc3\xa9", "a\tb", "a$", "*",
	};

	(void)state;
	assert_true(name_valid("a"));
	assert_true(name_valid("Z"));
	assert_true(name_valid("0"));
	assert_true(name_valid("_"));
	assert_true(name_valid("-"));
	assert_true(name_valid("Alice_Smith-42"));
	assert_false(name_valid(NULL));
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (name_valid(bad[i]))
			fail_msg("'%s' accepted as a name", bad[i]);

	memset(s, 'x', NAME_MAX_LEN);
	s[NAME_MAX_LEN] = '\0';
	assert_true(name_valid(s)); /* 64 */
	s[NAME_MAX_LEN] = 'x';
	s[NAME_MAX_LEN + 1] = '\0';
	assert_false(name_valid(s)); /* 65 */
	s[NAME_MAX_LEN - 1] = '/';
	s[NAME_MAX_LEN] = '\0';
	assert_false(name_valid(s)); /* bad last character */
}

static void
test_parse_long(void **state)
{
	long v = 77;
	char buf[64];

	(void)state;
	assert_int_equal(parse_long("12", 0, 100, &v), 0);
	assert_int_equal(v, 12);
	assert_int_equal(parse_long("-5", -10, 10, &v), 0);
	assert_int_equal(v, -5);
	assert_int_equal(parse_long("0", 0, 0, &v), 0);
	assert_int_equal(v, 0);
	/* bounds are inclusive */
	assert_int_equal(parse_long("1", 1, 65535, &v), 0);
	assert_int_equal(parse_long("65535", 1, 65535, &v), 0);
	assert_int_equal(v, 65535);
	snprintf(buf, sizeof(buf), "%ld", LONG_MAX);
	assert_int_equal(parse_long(buf, 0, LONG_MAX, &v), 0);
	assert_true(v == LONG_MAX);
	snprintf(buf, sizeof(buf), "%ld", LONG_MIN);
	assert_int_equal(parse_long(buf, LONG_MIN, 0, &v), 0);
	assert_true(v == LONG_MIN);

	v = 77;
	assert_int_equal(parse_long("0", 1, 65535, &v), -1);
	assert_int_equal(parse_long("65536", 1, 65535, &v), -1);
	assert_int_equal(parse_long("12x", 0, 100, &v), -1);
	assert_int_equal(parse_long("x12", 0, 100, &v), -1);
	assert_int_equal(parse_long("1.5", 0, 100, &v), -1);
	assert_int_equal(parse_long("", 0, 100, &v), -1);
	assert_int_equal(parse_long(NULL, 0, 100, &v), -1);
	assert_int_equal(parse_long("12 ", 0, 100, &v), -1);
	assert_int_equal(parse_long("99999999999999999999999", 0, LONG_MAX, &v), -1);
	assert_int_equal(parse_long("-99999999999999999999999", LONG_MIN, 0, &v), -1);
	assert_int_equal(v, 77); /* nothing stored */
}

static void
test_str_copy(void **state)
{
	char d[8];

	(void)state;
	assert_int_equal(str_copy(d, sizeof(d), "pizza"), 0);
	assert_string_equal(d, "pizza");
	assert_int_equal(str_copy(d, sizeof(d), "1234567"), 0); /* exactly fits */
	assert_string_equal(d, "1234567");
	assert_int_equal(str_copy(d, sizeof(d), "12345678"), -1); /* one too many */
	assert_string_equal(d, "1234567");
	assert_int_equal(str_copy(d, sizeof(d), "a much longer string"), -1);
	assert_string_equal(d, "a much ");
	assert_int_equal(str_copy(d, sizeof(d), ""), 0);
	assert_string_equal(d, "");
	assert_int_equal(str_copy(d, 1, "x"), -1);
	assert_string_equal(d, "");
	memcpy(d, "keep", 5);
	assert_int_equal(str_copy(d, 0, "x"), -1);
	assert_string_equal(d, "keep"); /* n == 0 writes nothing */
}

static void
test_file_read_small(void **state)
{
	char path[] = "/tmp/pizza-test-util-XXXXXX";
	int fd = mkstemp(path);
	char *s;

	(void)state;
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "secret\r\n\n", 9), 9);
	close(fd);
	s = file_read_small(path, 64);
	assert_non_null(s);
	assert_string_equal(s, "secret"); /* trailing newlines stripped */
	free(s);
	s = file_read_small(path, 9);
	assert_non_null(s);
	free(s);
	assert_null(file_read_small(path, 8)); /* larger than max */
	unlink(path);
	assert_null(file_read_small(path, 64));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_time_format),
		cmocka_unit_test(test_time_round_trip),
		cmocka_unit_test(test_time_parse_accepts),
		cmocka_unit_test(test_time_parse_rejects),
		cmocka_unit_test(test_id_form),
		cmocka_unit_test(test_id_sortable),
		cmocka_unit_test(test_id_unique),
		cmocka_unit_test(test_name_valid),
		cmocka_unit_test(test_parse_long),
		cmocka_unit_test(test_str_copy),
		cmocka_unit_test(test_file_read_small),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

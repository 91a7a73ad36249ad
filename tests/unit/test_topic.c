/*
 * test_topic.c - the topic map (topic.h): builders and topic_parse().
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>

#include <string.h>

#include "topic.h"
#include "util.h"

static void
test_builders(void **state)
{
	char buf[TOPIC_MAX];

	(void)state;
	assert_int_equal(topic_status(buf, sizeof(buf), "alice", "ord-1"), 0);
	assert_string_equal(buf, "pizza/users/alice/orders/ord-1/status");
	assert_int_equal(topic_alerts(buf, sizeof(buf), "alice"), 0);
	assert_string_equal(buf, "pizza/users/alice/alerts");
	assert_int_equal(topic_new(buf, sizeof(buf), "alice"), 0);
	assert_string_equal(buf, "pizza/users/alice/orders/new");
	assert_int_equal(topic_user_all(buf, sizeof(buf), "alice"), 0);
	assert_string_equal(buf, "pizza/users/alice/#");
	assert_int_equal(topic_reply(buf, sizeof(buf), "alice", "phone-1"), 0);
	assert_string_equal(buf, "pizza/users/alice/replies/phone-1");
}

static void
test_builders_too_small(void **state)
{
	char buf[TOPIC_MAX];
	size_t need = strlen("pizza/users/alice/alerts");

	(void)state;
	/* exactly enough room for the text and its NUL */
	assert_int_equal(topic_alerts(buf, need + 1, "alice"), 0);
	assert_string_equal(buf, "pizza/users/alice/alerts");
	assert_int_equal(topic_alerts(buf, need, "alice"), -1);
	assert_int_equal(topic_status(buf, 24, "alice", "ord-1"), -1);
	assert_int_equal(topic_new(buf, 24, "alice"), -1);
	assert_int_equal(topic_user_all(buf, 5, "alice"), -1);
	assert_int_equal(topic_reply(buf, 24, "alice", "phone-1"), -1);
}

static void
test_parse_kinds(void **state)
{
	char user[NAME_MAX_LEN + 1], order[NAME_MAX_LEN + 1];

	(void)state;
	memset(user, 0, sizeof(user));
	memset(order, 0, sizeof(order));
	assert_int_equal(topic_parse("pizza/users/alice/orders/new", user, order), TOPIC_KIND_NEW);
	assert_string_equal(user, "alice");

	assert_int_equal(topic_parse("pizza/users/bob/alerts", user, order), TOPIC_KIND_ALERTS);
	assert_string_equal(user, "bob");

	assert_int_equal(topic_parse("pizza/users/carol/orders/01JABC-x_9/status", user, order), TOPIC_KIND_STATUS);
	assert_string_equal(user, "carol");
	assert_string_equal(order, "01JABC-x_9");

	/* order may be NULL */
	assert_int_equal(topic_parse("pizza/users/dave/orders/o1/status", user, NULL), TOPIC_KIND_STATUS);
	assert_string_equal(user, "dave");
}

static void
test_parse_round_trips_builders(void **state)
{
	char buf[TOPIC_MAX], user[NAME_MAX_LEN + 1], order[NAME_MAX_LEN + 1];
	char u64[NAME_MAX_LEN + 1], o64[NAME_MAX_LEN + 1];

	(void)state;
	memset(u64, 'u', NAME_MAX_LEN);
	u64[NAME_MAX_LEN] = '\0';
	memset(o64, 'O', NAME_MAX_LEN);
	o64[NAME_MAX_LEN] = '\0';
	assert_int_equal(topic_status(buf, sizeof(buf), u64, o64), 0);
	assert_int_equal(topic_parse(buf, user, order), TOPIC_KIND_STATUS);
	assert_string_equal(user, u64);
	assert_string_equal(order, o64);
	assert_int_equal(topic_alerts(buf, sizeof(buf), u64), 0);
	assert_int_equal(topic_parse(buf, user, order), TOPIC_KIND_ALERTS);
	assert_string_equal(user, u64);
	assert_int_equal(topic_new(buf, sizeof(buf), u64), 0);
	assert_int_equal(topic_parse(buf, user, order), TOPIC_KIND_NEW);
	assert_string_equal(user, u64);
}

static void
test_parse_rejects(void **state)
{
	char user[NAME_MAX_LEN + 1], order[NAME_MAX_LEN + 1];
	char long_user[128], long_order[128];
	static const char *const bad[] = {
		/* wrong prefix */
		"pizza/user/alice/alerts",
		"Pizza/users/alice/alerts",
		"xpizza/users/alice/alerts",
		"/pizza/users/alice/alerts",
		"pizza/orders/placed",
		"pizza/deadletter",
		"$share/order-service/pizza/users/alice/orders/new",
		"",
		/* invalid user id */
		"pizza/users//alerts",
		"pizza/users/+/alerts",
		"pizza/users/#",
		"pizza/users/al ice/alerts",
		"pizza/users/al.ice/alerts",
		"pizza/users/+/orders/+/status",
		/* invalid order id */
		"pizza/users/alice/orders//status",
		"pizza/users/alice/orders/+/status",
		"pizza/users/alice/orders/o 1/status",
		/* missing or extra levels */
		"pizza/users/alice",
		"pizza/users/alice/",
		"pizza/users/alice/alerts/",
		"pizza/users/alice/alerts/x",
		"pizza/users/alice/orders",
		"pizza/users/alice/orders/",
		"pizza/users/alice/orders/new/",
		"pizza/users/alice/orders/new/x",
		"pizza/users/alice/orders/o1",
		"pizza/users/alice/orders/o1/",
		"pizza/users/alice/orders/o1/status/",
		"pizza/users/alice/orders/o1/status/x",
		"pizza/users/alice/orders/o1/statuses",
		"pizza/users/alice/replies/phone-1",
		"pizza/users/alice/x/alerts",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		enum topic_kind k = topic_parse(bad[i], user, order);

		if (k != TOPIC_KIND_OTHER)
			fail_msg("'%s' parsed as kind %d", bad[i], (int)k);
	}
	/* 65-character ids */
	memset(long_user, 0, sizeof(long_user));
	memcpy(long_user, "pizza/users/", 12);
	memset(long_user + 12, 'u', NAME_MAX_LEN + 1);
	memcpy(long_user + 12 + NAME_MAX_LEN + 1, "/alerts", 8);
	assert_int_equal(topic_parse(long_user, user, order), TOPIC_KIND_OTHER);
	memset(long_order, 0, sizeof(long_order));
	memcpy(long_order, "pizza/users/u/orders/", 21);
	memset(long_order + 21, 'o', NAME_MAX_LEN + 1);
	memcpy(long_order + 21 + NAME_MAX_LEN + 1, "/status", 8);
	assert_int_equal(topic_parse(long_order, user, order), TOPIC_KIND_OTHER);
	/* one shorter is fine */
	memcpy(long_order + 21 + NAME_MAX_LEN, "/status", 8);
	assert_int_equal(topic_parse(long_order, user, order), TOPIC_KIND_STATUS);
	assert_int_equal(strlen(order), NAME_MAX_LEN);
}

/* The consumer skeleton dispatches by this: MQTT 5's matching rules (section 4.7). */
static void
test_matches(void **state)
{
	static const struct {
		const char *filter, *topic;
		int want;
	} cases[] = {
		{ TOPIC_PLACED, TOPIC_PLACED, 1 },
		{ TOPIC_PLACED, "pizza/orders/placedx", 0 },
		{ TOPIC_ALL_STATUS, "pizza/users/alice/orders/01X/status", 1 },
		{ TOPIC_ALL_STATUS, "pizza/users/alice/orders/01X/statusx", 0 },
		{ TOPIC_ALL_STATUS, "pizza/users//orders/01X/status", 1 }, /* an empty level is a level */
		{ TOPIC_ALL_NEW, "pizza/users/alice/orders/new", 1 },
		{ TOPIC_ALL_NEW, "pizza/users/alice/bob/orders/new", 0 },
		{ TOPIC_EXECUTORS, TOPIC_PLACED, 1 }, /* $share/<group>/ is not part of the filter */
		{ "pizza/#", TOPIC_PLACED, 1 },
		{ "pizza/#", "pizza", 1 }, /* # matches its parent level too */
		{ "a/b/#", "a/bc", 0 },
		{ "#", "pizza/a", 1 },
		{ "#", "$SYS/broker/uptime", 0 }, /* wildcards never match $ topics at the first level */
		{ "+/broker", "$SYS/broker", 0 },
		{ "a/+", "a/", 1 },
		{ "a/+", "a", 0 },
		{ "a/+/c", "a/b", 0 },
		{ "a/b", "a/b/c", 0 },
		{ "+", "a", 1 },
		{ "+", "a/b", 0 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (topic_matches(cases[i].filter, cases[i].topic) != cases[i].want)
			fail_msg("topic_matches(\"%s\", \"%s\") != %d", cases[i].filter, cases[i].topic, cases[i].want);
	}
	assert_string_equal(topic_unshared(TOPIC_EXECUTORS), TOPIC_PLACED);
	assert_string_equal(topic_unshared(TOPIC_PLACED), TOPIC_PLACED);
}

/* The device topics (docs/events.md, "Devices and delivery receipts"): built, parsed, and refused when malformed. */
static void
test_device_topics(void **state)
{
	static const struct {
		const char *what;
		enum topic_kind kind;
	} ok[] = {
		{ "hello", TOPIC_KIND_DEVICE_HELLO },
		{ "receipts", TOPIC_KIND_DEVICE_RECEIPTS },
		{ "alerts", TOPIC_KIND_DEVICE_ALERTS },
	};
	static const char *const bad[] = {
		"pizza/users/carol/devices/phone",         /* no kind */
		"pizza/users/carol/devices/phone/",        /* empty kind */
		"pizza/users/carol/devices/phone/status",  /* not a device kind */
		"pizza/users/carol/devices/phone/hello/x", /* an extra level */
		"pizza/users/carol/devices//hello",        /* no device */
		"pizza/users/carol/devices/+/hello",       /* a wildcard is no device */
		"pizza/users/carol/devices/ph.one/hello",  /* not a valid name */
		"pizza/users//devices/phone/hello",
		"pizza/users/carol/device/phone/hello",
	};
	char buf[TOPIC_MAX], want[TOPIC_MAX], user[NAME_MAX_LEN + 1], dev[NAME_MAX_LEN + 1], order[NAME_MAX_LEN + 1];
	char d64[NAME_MAX_LEN + 1];

	(void)state;
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		assert_int_equal(topic_device(buf, sizeof(buf), "carol", "phone-1", ok[i].what), 0);
		snprintf(want, sizeof(want), "pizza/users/carol/devices/phone-1/%s", ok[i].what);
		assert_string_equal(buf, want);
		assert_int_equal(topic_parse_device(buf, user, dev), ok[i].kind);
		assert_string_equal(user, "carol");
		assert_string_equal(dev, "phone-1");
		assert_int_equal(topic_parse(buf, user, order), ok[i].kind);
		/* the notifier's and order-history's subscriptions match exactly their kinds */
		assert_int_equal(topic_matches(TOPIC_ALL_HELLO, buf), ok[i].kind == TOPIC_KIND_DEVICE_HELLO);
		assert_int_equal(topic_matches(TOPIC_ALL_RECEIPTS, buf), ok[i].kind == TOPIC_KIND_DEVICE_RECEIPTS);
	}
	/* the longest names fit (builders only format: callers check names, as for the other topics) */
	memset(d64, 'd', NAME_MAX_LEN);
	d64[NAME_MAX_LEN] = '\0';
	assert_int_equal(topic_device(buf, sizeof(buf), d64, d64, "receipts"), 0);
	assert_int_equal(topic_parse_device(buf, user, dev), TOPIC_KIND_DEVICE_RECEIPTS);
	assert_string_equal(dev, d64);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (topic_parse_device(bad[i], user, dev) != TOPIC_KIND_OTHER || topic_parse(bad[i], user, order) != TOPIC_KIND_OTHER)
			fail_msg("accepted %s", bad[i]);
	/* a user topic is no device topic */
	assert_int_equal(topic_parse_device("pizza/users/carol/alerts", user, dev), TOPIC_KIND_OTHER);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_device_topics),
		cmocka_unit_test(test_builders),
		cmocka_unit_test(test_builders_too_small),
		cmocka_unit_test(test_parse_kinds),
		cmocka_unit_test(test_parse_round_trips_builders),
		cmocka_unit_test(test_parse_rejects),
		cmocka_unit_test(test_matches),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * The publish window of mq.h against a real broker: at most `window` QoS 1
 * publishes are in paho's hands, the rest wait in mq's queue and still
 * reach subscribers once each and in order; while the broker is away they
 * wait in mq's queue and go out after the reconnect.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"
#include "util.h"

#define TOPIC "pizza/users/alice/orders/mqtest/status"
#define WINDOW 50

static struct stack st;

/* What the subscriber saw: payloads are the numbers 1, 2, 3, ... */
static struct {
	pthread_mutex_t lock;
	int n, last, out_of_order, dup;
} sink = { PTHREAD_MUTEX_INITIALIZER, 0, 0, 0, 0 };

static int acked, refused; /* publish completions (atomics) */

static void
on_msg(void *arg, const struct mq_message *m)
{
	char buf[16];
	long v;

	(void)arg;
	snprintf(buf, sizeof(buf), "%.*s", (int)m->len, m->payload);
	if (parse_long(buf, 1, 1000000, &v) != 0)
		return;
	pthread_mutex_lock(&sink.lock);
	if (v <= sink.last)
		sink.dup++; /* QoS 1 may repeat; counted, and the check below wants none here */
	else if (v != sink.last + 1)
		sink.out_of_order++;
	if (v > sink.last) {
		sink.last = (int)v;
		sink.n++;
	}
	pthread_mutex_unlock(&sink.lock);
}

static void
on_done(void *arg, int ok)
{
	(void)arg;
	__atomic_add_fetch(ok ? &acked : &refused, 1, __ATOMIC_SEQ_CST);
}

static struct mq *
client(const char *user, const char *client_id, int window, mq_handler h)
{
	struct mq_config cfg;
	char url[64], err[512];
	struct mq *mq;

	snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", st.port);
	memset(&cfg, 0, sizeof(cfg));
	cfg.url = url;
	cfg.client_id = client_id;
	cfg.username = user;
	cfg.password = h_password(&st, user);
	cfg.clean_start = 0;        /* a persistent session (fresh broker folder, so none to resume at first)... */
	cfg.session_expiry_s = 600; /* ...whose queue survives the broker restart */
	cfg.window = window;
	if ((mq = mq_new(&cfg, h, NULL)) == NULL)
		return NULL;
	if (h == on_msg)
		mq_subscribe(mq, TOPIC, 1, 0);
	if (mq_connect(mq, 5000, err, sizeof(err)) != 0) {
		fprintf(stderr, "test: %s cannot connect: %s\n", user, err);
		mq_free(mq);
		return NULL;
	}
	return mq;
}

static void
ignore(void *arg, const struct mq_message *m)
{
	(void)arg;
	(void)m;
}

/* Publishes the numbers from..to; returns the lowest mq_window_free() seen. */
static int
publish_range(struct mq *pub, int from, int to)
{
	int lowest = WINDOW;

	for (int i = from; i <= to; i++) {
		struct mq_publish p;
		char body[16];
		int room;

		snprintf(body, sizeof(body), "%d", i);
		memset(&p, 0, sizeof(p));
		p.topic = TOPIC;
		p.payload = body;
		p.len = strlen(body);
		p.qos = 1;
		p.done = on_done;
		assert_int_equal(mq_publish(pub, &p), 0);
		if ((room = mq_window_free(pub)) < lowest)
			lowest = room;
	}
	return lowest;
}

/* Waits until n publishes were acknowledged and the subscriber has seen number last. */
static void
wait_for(int n, int last)
{
	int64_t deadline = mono_ms() + 30000;
	int seen = 0;

	while (mono_ms() < deadline) {
		pthread_mutex_lock(&sink.lock);
		seen = sink.last;
		pthread_mutex_unlock(&sink.lock);
		if (__atomic_load_n(&acked, __ATOMIC_SEQ_CST) >= n && seen >= last)
			break;
		sleep_ms(20);
	}
	assert_int_equal(__atomic_load_n(&acked, __ATOMIC_SEQ_CST), n);
	assert_int_equal(__atomic_load_n(&refused, __ATOMIC_SEQ_CST), 0);
	pthread_mutex_lock(&sink.lock);
	assert_int_equal(sink.last, last);
	assert_int_equal(sink.n, last);
	assert_int_equal(sink.out_of_order, 0);
	pthread_mutex_unlock(&sink.lock);
}

/*
 * The broker closing a connection itself (an MQTT 5 DISCONNECT: here an
 * administrative action, the account disabled through the dynamic security
 * plugin, which also refuses it to come back) is a lost connection: paho
 * 1.3.12 reports it only through its "disconnected" callback, and mq kept
 * saying it was connected, for ever since no reconnect could succeed.
 */
static void
test_broker_disconnect_is_a_lost_connection(void **state)
{
	const char *off = "{\"commands\":[{\"command\":\"disableClient\",\"username\":\"order-history\"}]}";
	const char *on = "{\"commands\":[{\"command\":\"enableClient\",\"username\":\"order-history\"}]}";
	struct mq *a;
	int64_t deadline;

	(void)state;
	assert_int_equal(h_stack_start(&st, "mq-kicked"), 0);
	assert_non_null(a = client("order-history", "mq-test-kicked", WINDOW, ignore));
	assert_true(mq_is_connected(a));
	/* order-service's account may manage the broker's accounts (broker-config/acl) */
	assert_int_equal(h_publish(&st, "order-service", "$CONTROL/dynamic-security/v1", off, strlen(off)), 0);
	for (deadline = mono_ms() + 10000; mono_ms() < deadline && mq_is_connected(a);)
		sleep_ms(10);
	assert_false(mq_is_connected(a));
	/* let back in, it reconnects by itself */
	assert_int_equal(h_publish(&st, "order-service", "$CONTROL/dynamic-security/v1", on, strlen(on)), 0);
	for (deadline = mono_ms() + 20000; mono_ms() < deadline && !mq_is_connected(a);)
		sleep_ms(10);
	assert_true(mq_is_connected(a));
	mq_free(a);
	assert_int_equal(h_stack_stop(&st), 0);
}

static void
test_window_and_queue(void **state)
{
	struct mq *sub, *pub;
	int lowest;

	(void)state;
	assert_int_equal(h_stack_start(&st, "mq"), 0);
	assert_non_null(sub = client("admin", "test-mq-sub", 0, on_msg));
	assert_non_null(pub = client("order-executor", "test-mq-pub", WINDOW, ignore));

	/* 3,000 at once: 50 go to paho, the rest queue behind them, and all arrive in order */
	lowest = publish_range(pub, 1, 3000);
	assert_true(lowest < 0); /* some waited in mq's queue */
	wait_for(3000, 3000);
	assert_int_equal(mq_window_free(pub), WINDOW);

	/* the broker away: publishes are taken and wait in mq's queue, none in paho's hands */
	h_broker_stop(&st);
	while (mq_is_connected(pub))
		sleep_ms(10);
	lowest = publish_range(pub, 3001, 3100);
	assert_int_equal(lowest, WINDOW - 100);
	assert_int_equal(__atomic_load_n(&acked, __ATOMIC_SEQ_CST), 3000);
	assert_int_equal(h_broker_start(&st), 0);
	wait_for(3100, 3100);

	/* freed with publishes still queued (the broker away): each caller hears they were given up */
	mq_disconnect(sub, 1000);
	mq_free(sub);
	h_broker_stop(&st);
	while (mq_is_connected(pub))
		sleep_ms(10);
	publish_range(pub, 3101, 3105);
	mq_free(pub);
	assert_int_equal(__atomic_load_n(&refused, __ATOMIC_SEQ_CST), 5);
	assert_int_equal(__atomic_load_n(&acked, __ATOMIC_SEQ_CST), 3100);
	assert_int_equal(h_stack_stop(&st), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_broker_disconnect_is_a_lost_connection),
		cmocka_unit_test(test_window_and_queue),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

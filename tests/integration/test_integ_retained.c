/*
 * What stays retained on the broker (issue 17): the final ready status
 * expires after order-executor's --ready-status-expiry, while an order still
 * in the kitchen keeps its current status for --status-expiry, and the
 * order's page (GET /v1/orders/{id}) still says ready once the retained
 * status is gone; the executor's walk frees expired statuses nobody looks
 * at again.
 *
 * "Retained" is what a phone sees when it subscribes: probe() subscribes as
 * the user to the order's status topic, then publishes a marker the same
 * client also receives.  mosquitto queues a subscription's retained message
 * before it handles any later PUBLISH of that client, so the marker arriving
 * first means nothing was retained: no waiting for a message that may not come.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"
#include "token.h"
#include "topic.h"
#include "util.h"

static struct stack st;

static int
setup(void **state)
{
	(void)state;
	if (h_stack_start(&st, "retained") != 0 || h_observer(&st) != 0)
		return -1;
	/* supervision must not walk the order held in the oven again while the test looks at it */
	if (h_service(&st, "order-service", "order-service", "--ready-deadline", "10m", NULL) < 0 ||
	    h_service(&st, "order-history", "order-history", NULL) < 0)
		return -1;
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	return h_stack_stop(&st);
}

/* What one probe received, written on paho's thread. */
struct probe {
	pthread_mutex_t lock;
	char marker[TOPIC_MAX];
	int marked;        /* the marker came back */
	int retained;      /* a retained status came before it */
	char status[16];   /* its status */
};

static void
on_probe(void *arg, const struct mq_message *m)
{
	struct probe *p = arg;
	struct event ev;
	char err[128];

	pthread_mutex_lock(&p->lock);
	if (strcmp(m->topic, p->marker) == 0)
		p->marked = 1;
	else if (!p->marked && m->retained && event_decode(m->payload, m->len, &ev, err, sizeof(err)) == 0) {
		p->retained = 1;
		snprintf(p->status, sizeof(p->status), "%s", event_status_name(ev.status));
	}
	pthread_mutex_unlock(&p->lock);
}

/*
 * Subscribes as user to the order's status topic, as a phone would, and
 * returns 1 with the retained status in status, 0 when none is retained, -1
 * when the probe could not run.
 */
static int
probe(const char *user, const char *order_id, char *status, size_t n)
{
	static int nprobes;
	struct probe p = { .lock = PTHREAD_MUTEX_INITIALIZER };
	struct mq_config cfg;
	struct mq_publish pub;
	struct mq *mq;
	char url[64], topic[TOPIC_MAX], cid[64], err[256];
	int64_t deadline;
	int rc = -1;

	snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", st.port);
	snprintf(cid, sizeof(cid), "test-probe-%s-%d", user, ++nprobes);
	snprintf(p.marker, sizeof(p.marker), "pizza/users/%s/devices/probe/hello", user);
	if (topic_status(topic, sizeof(topic), user, order_id) != 0)
		return -1;
	memset(&cfg, 0, sizeof(cfg));
	cfg.url = url;
	cfg.client_id = cid;
	cfg.username = user;
	cfg.password = h_password(&st, user);
	cfg.clean_start = 1;
	if ((mq = mq_new(&cfg, on_probe, &p)) == NULL)
		return -1;
	if (mq_subscribe(mq, topic, 1, 0) != 0 || mq_subscribe(mq, p.marker, 1, 0) != 0 ||
	    mq_connect(mq, 5000, err, sizeof(err)) != 0) {
		fprintf(stderr, "probe: %s\n", err);
		goto out;
	}
	memset(&pub, 0, sizeof(pub));
	pub.topic = p.marker;
	pub.payload = "{}";
	pub.len = 2;
	pub.qos = 1;
	if (mq_publish(mq, &pub) != 0)
		goto out;
	for (deadline = mono_ms() + 5000; mono_ms() < deadline;) {
		pthread_mutex_lock(&p.lock);
		if (p.marked) {
			rc = p.retained;
			snprintf(status, n, "%s", p.status);
		}
		pthread_mutex_unlock(&p.lock);
		if (rc >= 0)
			break;
		h_sleep(5);
	}
	if (rc < 0)
		fprintf(stderr, "probe: the marker never came back\n");
out:
	mq_disconnect(mq, 1000);
	mq_free(mq);
	return rc;
}

/* SIGTERM to the named executor, and waits until it is gone. */
static void
stop_executor(const char *name)
{
	h_signal(&st, name, SIGTERM);
	for (int64_t deadline = mono_ms() + 10000; h_alive(&st, name) && mono_ms() < deadline;)
		h_sleep(20);
	assert_false(h_alive(&st, name));
}

/* Places an order for user and returns its id in id (asserts it was accepted). */
static void
place(const char *user, const char *corr, char *id, size_t n)
{
	assert_int_equal(h_place(&st, user, "margherita", 1, corr), 0);
	assert_int_equal(h_wait_reply(&st, corr, id, n, 5000), 0);
}

/* GET /v1/orders/{id} as user: the "status" the order's page shows. */
static void
assert_page_says(const char *user, const char *id, const char *status)
{
	struct h_reply r;
	char url[256], auth[TOKEN_MAX + 32], want[64];
	const char *headers[] = { auth, NULL };
	int64_t deadline = mono_ms() + 5000;

	snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/orders/%s", st.http_port, id);
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", h_token(&st, user));
	snprintf(want, sizeof(want), "\"status\":\"%s\"", status);
	/* order-history stores the status as it comes: it may trail the broker by a moment */
	for (;;) {
		long code = h_http("GET", url, headers, NULL, &r);
		int ok = code == 200 && strstr(r.body, want) != NULL;

		if (ok || mono_ms() > deadline) {
			if (!ok)
				fail_msg("GET /v1/orders/%s: %ld %s (wanted %s)", id, code, r.body, want);
			h_reply_free(&r);
			return;
		}
		h_reply_free(&r);
		h_sleep(50);
	}
}

static void
test_ready_expires_a_stage_in_progress_stays(void **state)
{
	char held[NAME_MAX_LEN + 1], done[NAME_MAX_LEN + 1], status[16] = "";
	int64_t deadline;
	int rc;

	(void)state;
	/* an executor whose oven takes an hour: the order stays "oven", retained with --status-expiry */
	assert_true(h_service(&st, "exec-slow", "order-executor", "--id", "exec-slow", "--stage", "0", "--oven", "1h",
			"--drain", "0", "--ready-status-expiry", "1s", "--retained-walk", "0", NULL) >= 0);
	place("alice", "held-1", held, sizeof(held));
	assert_int_equal(h_wait_events(&st, held, EVENT_ORDER_STATUS, STATUS_OVEN, 1, 10000), 1);
	assert_int_equal(probe("alice", held, status, sizeof(status)), 1);
	assert_string_equal(status, "oven");
	h_signal(&st, "exec-slow", SIGTERM); /* gone: nothing will move that order on */

	/* an order walked to ready at once */
	assert_true(h_service(&st, "exec-fast", "order-executor", "--id", "exec-fast", "--stage", "0",
			"--ready-status-expiry", "1s", "--retained-walk", "0", NULL) >= 0);
	place("alice", "done-1", done, sizeof(done));
	assert_int_equal(h_wait_events(&st, done, EVENT_ORDER_STATUS, STATUS_READY, 1, 10000), 1);

	/* its retained ready is gone within a deadline (1 s, on mosquitto's whole-second clock) */
	deadline = mono_ms() + 10000;
	while ((rc = probe("alice", done, status, sizeof(status))) == 1 && mono_ms() < deadline) {
		assert_string_equal(status, "ready");
		h_sleep(100);
	}
	assert_int_equal(rc, 0);

	/* the order in the oven, older than that ready status, still shows where it is */
	assert_int_equal(probe("alice", held, status, sizeof(status)), 1);
	assert_string_equal(status, "oven");
	/* and the finished one's page still says ready: what the storefront reads after a reload */
	assert_page_says("alice", done, "ready");
	stop_executor("exec-fast"); /* the next tests bring their own */
}

/*
 * Has the broker refuse (deny 1) or allow again (deny 0) the executors'
 * statuses for every order of user.  The dynamic security plugin
 * disconnects the clients of a changed role: the executor reconnects.
 */
static void
deny_statuses(const char *user, int deny)
{
	char cmd[512];

	snprintf(cmd, sizeof(cmd),
	    "{\"commands\":[{\"command\":\"%s\",\"rolename\":\"svc-order-executor\",\"acltype\":\"publishClientSend\","
	    "\"topic\":\"pizza/users/%s/orders/+/status\"%s}]}",
	    deny ? "addRoleACL" : "removeRoleACL", user, deny ? ",\"allow\":false,\"priority\":100" : "");
	/* order-service's account may manage the broker's accounts (broker-config/acl) */
	assert_int_equal(h_publish(&st, "order-service", "$CONTROL/dynamic-security/v1", cmd, strlen(cmd)), 0);
}

/*
 * OrderReady (what finishes the order and brings the alert) goes only once
 * the broker has acknowledged the phone's ready status, so that the phone's
 * retained status and the history say ready first.  A status the broker
 * refuses is published again after 1, 2, 4 and 8 s; one it refuses five
 * times is given up, and OrderReady goes anyway: the alert matters more
 * than the status.  The refusal: the executor's role loses the right to publish on
 * the statuses of carol's and bob's orders.
 */
static void
test_order_ready_waits_for_the_ready_status(void **state)
{
	char held[NAME_MAX_LEN + 1], given_up[NAME_MAX_LEN + 1], needle[NAME_MAX_LEN + 64], status[16] = "";

	(void)state;
	assert_true(h_service(&st, "exec-acl", "order-executor", "--id", "exec-acl", "--stage", "0", "--drain", "0",
			"--retained-walk", "0", NULL) >= 0);
	deny_statuses("carol", 1);
	deny_statuses("bob", 1);
	place("carol", "refused-1", held, sizeof(held));
	place("bob", "refused-2", given_up, sizeof(given_up));

	/* carol's ready refused: nobody heard ready */
	snprintf(needle, sizeof(needle), "order_id=%s attempt=1", held);
	assert_int_equal(h_wait_log(&st, "exec-acl", needle, 1, 20000), 0);
	assert_int_equal(h_count_events(&st, held, EVENT_ORDER_READY, 0), 0);
	assert_int_equal(h_count_events(&st, held, EVENT_ORDER_STATUS, STATUS_READY), 0);
	/* allowed again: the next attempt goes through, then OrderReady */
	deny_statuses("carol", 0);
	assert_int_equal(h_wait_events(&st, held, EVENT_ORDER_READY, 0, 1, 20000), 1);
	assert_int_equal(h_count_events(&st, held, EVENT_ORDER_STATUS, STATUS_READY), 1);
	assert_int_equal(probe("carol", held, status, sizeof(status)), 1);
	assert_string_equal(status, "ready");
	assert_page_says("carol", held, "ready");

	/* bob's refused every time: given up after five, and OrderReady still goes, once */
	snprintf(needle, sizeof(needle), "order_id=%s attempts=5", given_up);
	assert_int_equal(h_wait_log(&st, "exec-acl", needle, 1, 60000), 0);
	assert_int_equal(h_wait_events(&st, given_up, EVENT_ORDER_READY, 0, 1, 10000), 1);
	assert_int_equal(h_count_events(&st, given_up, EVENT_ORDER_STATUS, STATUS_READY), 0);

	stop_executor("exec-acl"); /* the next test brings its own executors */
	deny_statuses("bob", 0);
	assert_int_equal(h_count_events(&st, given_up, EVENT_ORDER_READY, 0), 1);
}

/*
 * The broker's retained-message count, from $SYS: written on paho's thread.
 * mosquitto publishes the count every 10 s, and only when it changed, so a
 * value alone says nothing of when it was true.  Each pass publishes the
 * uptime first and then, after the count, messages/sent (which changes
 * every pass: this watcher receives the uptime): the count last received
 * when messages/sent comes is the count at that pass.
 */
static struct {
	pthread_mutex_t lock;
	long value;          /* the last count received */
	int64_t pass_ms;     /* mono_ms() when the current pass's uptime came */
	long settled;        /* the count at the last complete pass */
	int64_t settled_ms;  /* that pass's pass_ms */
} sys_count = { .lock = PTHREAD_MUTEX_INITIALIZER };

#define SYS_UPTIME "$SYS/broker/uptime"
#define SYS_RETAINED "$SYS/broker/retained messages/count"
#define SYS_SENT "$SYS/broker/messages/sent"

static void
on_sys(void *arg, const struct mq_message *m)
{
	char text[32];

	(void)arg;
	snprintf(text, sizeof(text), "%.*s", (int)(m->len < 31 ? m->len : 31), (const char *)m->payload);
	pthread_mutex_lock(&sys_count.lock);
	if (strcmp(m->topic, SYS_UPTIME) == 0 && !m->retained)
		sys_count.pass_ms = mono_ms();
	else if (strcmp(m->topic, SYS_RETAINED) == 0)
		sys_count.value = strtol(text, NULL, 10);
	else if (strcmp(m->topic, SYS_SENT) == 0 && !m->retained && sys_count.pass_ms > 0) {
		sys_count.settled = sys_count.value;
		sys_count.settled_ms = sys_count.pass_ms;
	}
	pthread_mutex_unlock(&sys_count.lock);
}

/*
 * The retained count at the first pass of $SYS that began after since_ms
 * (mono_ms()) and found at most at_most (any, when at_most < 0); -1 when
 * none did within timeout_ms.
 */
static long
retained_count(int64_t since_ms, long at_most, int timeout_ms)
{
	for (int64_t deadline = mono_ms() + timeout_ms; mono_ms() < deadline; h_sleep(50)) {
		long v = -1;

		pthread_mutex_lock(&sys_count.lock);
		if (sys_count.settled_ms > since_ms && (at_most < 0 || sys_count.settled <= at_most))
			v = sys_count.settled;
		pthread_mutex_unlock(&sys_count.lock);
		if (v >= 0)
			return v;
	}
	return -1;
}

/*
 * The walk (order-executor --retained-walk): mosquitto 2.0.11 frees an
 * expired retained status only when a subscription walks over it, so the
 * ready statuses of phones that never look again stay in its memory.  With
 * the walk off they are still counted well past their expiry; an executor
 * with it on has the broker free them, and receives none of the statuses
 * it walks over (its role may subscribe there, not receive: nothing comes
 * to it, so nothing is dead-lettered).
 */
static void
test_walk_frees_expired_statuses(void **state)
{
	enum { ORDERS = 5 };
	char ids[ORDERS][NAME_MAX_LEN + 1], corr[32], url[64], err[256];
	struct mq_config cfg;
	struct mq *sys;
	long before, after, walked;
	int64_t t;
	int dead0;

	(void)state;
	memset(&cfg, 0, sizeof(cfg));
	snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", st.port);
	cfg.url = url;
	cfg.client_id = "test-sys-retained";
	cfg.username = "admin";
	cfg.password = h_password(&st, "admin");
	cfg.clean_start = 1;
	assert_non_null(sys = mq_new(&cfg, on_sys, NULL));
	assert_int_equal(mq_subscribe(sys, SYS_UPTIME, 0, 0), 0);
	assert_int_equal(mq_subscribe(sys, SYS_RETAINED, 0, 0), 0);
	assert_int_equal(mq_subscribe(sys, SYS_SENT, 0, 0), 0);
	if (mq_connect(sys, 5000, err, sizeof(err)) != 0)
		fail_msg("$SYS watcher: %s", err);
	assert_true((before = retained_count(mono_ms(), -1, 25000)) >= 0);
	dead0 = h_count_topic(&st, TOPIC_DEADLETTER);

	/* orders walked to ready by an executor that does not walk the retained statuses */
	assert_true(h_service(&st, "exec-nowalk", "order-executor", "--id", "exec-nowalk", "--stage", "0",
			"--ready-status-expiry", "1s", "--retained-walk", "0", NULL) >= 0);
	for (int i = 0; i < ORDERS; i++) {
		snprintf(corr, sizeof(corr), "walk-%d", i);
		place("carol", corr, ids[i], sizeof(ids[i]));
	}
	for (int i = 0; i < ORDERS; i++)
		assert_int_equal(h_wait_events(&st, ids[i], EVENT_ORDER_STATUS, STATUS_READY, 1, 10000), 1);
	stop_executor("exec-nowalk");
	/* expired 1 s after (whole seconds), and still held at the first pass after that */
	t = mono_ms() + 2000;
	assert_true((after = retained_count(t, -1, 25000)) >= 0);
	print_message("retained: %ld before, %ld with %d expired ready statuses and no walk\n", before, after, ORDERS);
	assert_true(after >= before + ORDERS);

	/* an executor that walks every second: the broker frees them */
	assert_true(h_service(&st, "exec-walk", "order-executor", "--id", "exec-walk", "--stage", "0",
			"--retained-walk", "1s", NULL) >= 0);
	t = mono_ms();
	assert_int_equal(h_wait_log(&st, "exec-walk", "walked the retained statuses", 1, 10000), 0);
	walked = retained_count(t, after - ORDERS, 25000);
	print_message("retained after the walk: %ld\n", walked);
	assert_true(walked >= 0);
	assert_int_equal(h_wait_log(&st, "exec-walk", "refused the walk", 1, 0), -1);
	/* the walk delivered nothing to the executor: nothing refused, nothing dead-lettered */
	assert_int_equal(h_count_topic(&st, TOPIC_DEADLETTER), dead0);
	stop_executor("exec-walk");
	mq_disconnect(sys, 1000);
	mq_free(sys);
}

/* Takes the executors' role's grant for the walk away (allow 0), or gives it back (allow 1). */
static void
walk_grant(int allow)
{
	char cmd[512];

	snprintf(cmd, sizeof(cmd),
	    "{\"commands\":[{\"command\":\"%s\",\"rolename\":\"svc-order-executor\",\"acltype\":\"subscribePattern\","
	    "\"topic\":\"%s\"%s}]}",
	    allow ? "addRoleACL" : "removeRoleACL", TOPIC_ALL_STATUS, allow ? ",\"allow\":true" : "");
	assert_int_equal(h_publish(&st, "order-service", "$CONTROL/dynamic-security/v1", cmd, strlen(cmd)), 0);
}

/*
 * A broker whose roles predate the walk (no "topic subscribe" grant)
 * refuses it: the executor says so once, with what to do, and goes on
 * taking orders.
 */
static void
test_walk_refused_is_logged_once(void **state)
{
	char id[NAME_MAX_LEN + 1];

	(void)state;
	walk_grant(0);
	assert_true(h_service(&st, "exec-old-roles", "order-executor", "--id", "exec-old-roles", "--stage", "0",
			"--retained-walk", "1s", NULL) >= 0);
	assert_int_equal(h_wait_log(&st, "exec-old-roles", "refused the walk over retained messages", 1, 10000), 0);
	assert_int_equal(h_wait_log(&st, "exec-old-roles", "pizza-admin broker-init", 1, 0), 0);
	/* three more walks refused, nothing more said */
	assert_int_equal(h_wait_log(&st, "exec-old-roles", "refused the walk over retained messages", 2, 3500), -1);
	assert_int_equal(h_wait_log(&st, "exec-old-roles", "walked the retained statuses", 1, 0), -1);
	/* and the kitchen works */
	place("bob", "old-roles-1", id, sizeof(id));
	assert_int_equal(h_wait_events(&st, id, EVENT_ORDER_STATUS, STATUS_READY, 1, 10000), 1);
	stop_executor("exec-old-roles");
	walk_grant(1);
}

/* A ready expiry that is not a whole number of seconds, or 0, is refused with a line naming the option. */
static void
test_ready_expiry_option(void **state)
{
	char *out = NULL;
	char *const fraction[] = { "order-executor", "--ready-status-expiry", "1500ms", NULL };
	char *const zero[] = { "order-executor", "--ready-status-expiry", "0", NULL };

	(void)state;
	assert_int_equal(h_run(&st, NULL, &out, fraction), 2);
	assert_non_null(strstr(out, "--ready-status-expiry: '1500ms' is not a whole number of seconds"));
	free(out);
	assert_int_equal(h_run(&st, NULL, &out, zero), 2);
	assert_non_null(strstr(out, "--ready-status-expiry"));
	free(out);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_order_ready_waits_for_the_ready_status),
		cmocka_unit_test(test_ready_expires_a_stage_in_progress_stays),
		cmocka_unit_test(test_ready_expiry_option),
		cmocka_unit_test(test_walk_frees_expired_statuses),
		cmocka_unit_test(test_walk_refused_is_logged_once),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}

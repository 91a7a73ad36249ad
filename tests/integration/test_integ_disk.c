/*
 * A full disk under the consumers (order-history and the notifier keep their
 * stores on a small tmpfs that is filled to the last byte while orders flow):
 * no valid event is dead-lettered or acknowledged unstored; once space is
 * back every accepted order reaches ready in the history and its pickup
 * alert reaches the phone exactly once.
 *
 * Mounting a tmpfs needs root: as another user the test runs itself again
 * inside a user and mount namespace (unshare -rm), where it is root.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "util.h"

#define ORDERS 20
static struct stack st;
static char full[600], filler[700];

static int
setup(void **state)
{
	char db[700];

	(void)state;
	if (h_stack_start(&st, "disk") != 0 || h_observer(&st) != 0)
		return -1;
	snprintf(full, sizeof(full), "%s/full", st.dir);
	if (mkdir(full, 0700) != 0 || mount("tmpfs", full, "tmpfs", 0, "size=4m") != 0) {
		fprintf(stderr, "test: cannot mount a tmpfs on %s: %s\n", full, strerror(errno));
		return -1;
	}
	if (h_service(&st, "order-service", "order-service", "--accept-deadline-ms", "3000", "--ready-deadline",
		"5000", NULL) < 0 ||
	    h_service(&st, "exec-1", "order-executor", "--id", "exec-1", "--stage-ms", "20", NULL) < 0 ||
	    h_service(&st, "exec-2", "order-executor", "--id", "exec-2", "--stage-ms", "20", NULL) < 0)
		return -1;
	snprintf(db, sizeof(db), "%s/order-history.db", full);
	if (h_service(&st, "order-history", "order-history", "--db", db, NULL) < 0)
		return -1;
	snprintf(db, sizeof(db), "%s/notifier.db", full);
	if (h_service(&st, "notifier", "notifier", "--db", db, NULL) < 0)
		return -1;
	return 0;
}

static int
teardown(void **state)
{
	int rc;

	(void)state;
	rc = h_stack_stop(&st);
	umount2(full, MNT_DETACH);
	return rc;
}

/* Writes zeros to filler until the filesystem has no byte left. */
static void
fill_disk(void)
{
	static char zeros[65536];
	int fd;
	ssize_t n;

	snprintf(filler, sizeof(filler), "%s/filler", full);
	assert_true((fd = open(filler, O_WRONLY | O_CREAT | O_TRUNC, 0600)) >= 0);
	while ((n = write(fd, zeros, sizeof(zeros))) > 0)
		;
	while ((n = write(fd, zeros, 1)) > 0) /* the last partial block */
		;
	assert_int_equal(errno, ENOSPC);
	close(fd);
}

/* 1 when order-history's read API (asked with the history secret) shows the order ready with its five stages. */
static int
history_ready(const char *id)
{
	char url[128], path[600], auth[300], *secret;
	const char *hdrs[] = { auth, NULL };
	struct h_reply r;
	int ok;

	snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/orders/%s", st.history_port, id);
	snprintf(path, sizeof(path), "%s/secrets/history.secret", st.dir);
	secret = file_read_small(path, 200);
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", secret != NULL ? secret : "");
	free(secret);
	ok = h_http("GET", url, hdrs, NULL, &r) == 200 && strstr(r.body, "\"status\":\"ready\"") != NULL &&
	     strstr(r.body, "\"seq\":5") != NULL;
	h_reply_free(&r);
	return ok;
}

/* order-history's /healthz: its status, with the body checked against it. */
static int
health(void)
{
	char url[128], *body = NULL;
	int status;

	snprintf(url, sizeof(url), "http://127.0.0.1:%d/healthz", st.history_port);
	status = h_http_get(url, &body);
	if (status == 503)
		assert_non_null(strstr(body, "\"store\":\"not writable\""));
	else if (status == 200)
		assert_non_null(strstr(body, "\"store\":\"writable\""));
	free(body);
	return status;
}

static void
test_full_disk_loses_no_order(void **state)
{
	char ids[ORDERS][NAME_MAX_LEN + 1], corr[32];
	int64_t deadline;
	int done = 0;

	(void)state;
	fill_disk();
	for (int i = 0; i < ORDERS; i++) {
		snprintf(corr, sizeof(corr), "disk-%d", i);
		assert_int_equal(h_place(&st, i % 2 ? "alice" : "bob", "margherita", 1, corr), 0);
		assert_int_equal(h_wait_reply(&st, corr, ids[i], sizeof(ids[i]), 10000), 0);
	}
	/* every order walked by the executors, yet neither consumer could store it */
	assert_int_equal(h_wait_events(&st, NULL, EVENT_ORDER_STATUS, STATUS_READY, ORDERS, 20000), ORDERS);
	assert_int_equal(h_wait_log(&st, "order-history", "leaving it unacknowledged", 1, 10000), 0);
	assert_int_equal(h_wait_log(&st, "notifier", "leaving it unacknowledged", 1, 10000), 0);
	h_sleep(2000); /* a few redelivery rounds against the full disk */
	assert_int_equal(h_count_events(&st, NULL, EVENT_PICKUP_ALERT, 0), 0);
	assert_int_equal(h_count_topic(&st, "pizza/deadletter"), 0);
	/* the operator sees it: /healthz makes a real write, which the full disk refuses */
	assert_int_equal(health(), 503);

	/* space returns: everything that was held back is stored and acted on */
	assert_int_equal(unlink(filler), 0);
	deadline = mono_ms() + 30000;
	for (int i = 0; i < ORDERS && mono_ms() < deadline; i++)
		while (!history_ready(ids[i]) && mono_ms() < deadline)
			h_sleep(100);
	for (int i = 0; i < ORDERS; i++)
		done += history_ready(ids[i]);
	assert_int_equal(done, ORDERS);
	assert_int_equal(health(), 200);
	assert_int_equal(h_wait_events(&st, NULL, EVENT_PICKUP_ALERT, 0, ORDERS, 20000), ORDERS);
	h_sleep(1000); /* no second alert on its way */
	for (int i = 0; i < ORDERS; i++)
		assert_int_equal(h_count_events(&st, ids[i], EVENT_PICKUP_ALERT, 0), 1);
	assert_int_equal(h_count_topic(&st, "pizza/deadletter"), 0);
}

int
main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_full_disk_loses_no_order, setup, teardown),
	};

	(void)argc;
	if (geteuid() != 0 && getenv("PIZZA_DISK_TEST_NS") == NULL) {
		/* root inside a user namespace of our own, with a mount namespace to mount in */
		setenv("PIZZA_DISK_TEST_NS", "1", 1);
		execlp("unshare", "unshare", "--map-root-user", "--mount", argv[0], (char *)NULL);
		fprintf(stderr, "test_integ_disk: needs root or unshare(1) to mount a tmpfs: %s\n", strerror(errno));
		return 1;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}

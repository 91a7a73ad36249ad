/*
 * The services speak systemd's readiness protocol (Type=notify, issue 18):
 * the test binds a unix datagram socket, starts a service with
 * NOTIFY_SOCKET naming it, as systemd would, and reads what arrives, keeping
 * only datagrams whose sender (SCM_CREDENTIALS) is that service, as systemd
 * does with NotifyAccess=main.  Checked:
 *
 *   - READY=1 comes once, after a STATUS= naming what it waits for, when the
 *     service has logged msg="ready", and when it is subscribed: an
 *     OrderPlaced published the moment READY=1 arrives reaches order-history
 *     (a first session keeps nothing published before its subscription);
 *   - WATCHDOG=1 keeps coming when WATCHDOG_USEC is set;
 *   - the broker going away and coming back shows in STATUS=;
 *   - SIGTERM: STOPPING=1, then a clean exit;
 *   - a broker that never answers, or refuses the password: no READY=1, exit
 *     1, and a STATUS= saying why (what `systemctl status` shows).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cmocka.h>

#include "harness.h"
#include "log.h"
#include "util.h"

#define MAX_NOTES 256

static struct {
	struct stack s;
	int fd;             /* the notification socket the test binds */
	char sock[200];     /* its abstract name, '@' first as in NOTIFY_SOCKET */
	pid_t pid;          /* the service under test */
	char out[700];      /* its output */
	char notes[MAX_NOTES][512];
	int nnotes;
} t;

static int
setup(void **state)
{
	struct sockaddr_un a;
	socklen_t len;
	int on = 1;

	(void)state;
	memset(&t, 0, sizeof(t));
	t.fd = -1;
	if (h_stack_start(&t.s, "systemd") != 0)
		return -1;
	/* abstract, so that the name never outgrows sun_path whatever the checkout's path */
	snprintf(t.sock, sizeof(t.sock), "@pizza-test-notify-%d-%lld", (int)getpid(), (long long)mono_ms());
	memset(&a, 0, sizeof(a));
	a.sun_family = AF_UNIX;
	memcpy(a.sun_path + 1, t.sock + 1, strlen(t.sock) - 1);
	len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(t.sock));
	if ((t.fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) < 0 || bind(t.fd, (struct sockaddr *)&a, len) != 0 ||
	    setsockopt(t.fd, SOL_SOCKET, SO_PASSCRED, &on, sizeof(on)) != 0) {
		fprintf(stderr, "notify socket: %s\n", strerror(errno));
		return -1;
	}
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	if (t.pid > 0) {
		kill(t.pid, SIGKILL);
		waitpid(t.pid, NULL, 0);
	}
	if (t.fd >= 0)
		close(t.fd);
	return h_stack_stop(&t.s);
}

/*
 * Starts order-history (read API off) with NOTIFY_SOCKET and, when watchdog_usec
 * is not NULL, WATCHDOG_USEC, plus extra arguments; does not wait for it.
 * Only the service gets the variables: the broker, restarted later, must not.
 */
static void
start_history(const char *watchdog_usec, const char *url, const char *password_file)
{
	char db[600], pass[600];

	snprintf(db, sizeof(db), "%s/data/order-history.db", t.s.dir);
	snprintf(pass, sizeof(pass), "%s/secrets/order-history.pass", t.s.dir);
	snprintf(t.out, sizeof(t.out), "%s/order-history-notify.log", t.s.dir);
	char *argv[] = { "order-history", "--mqtt-user", "order-history", "--mqtt-password-file",
		(char *)(password_file != NULL ? password_file : pass), "--db", db, "--http-port", "0",
		"--connect-timeout", "1500", url != NULL ? "--mqtt-url" : NULL, (char *)url, NULL };

	setenv("NOTIFY_SOCKET", t.sock, 1);
	if (watchdog_usec != NULL)
		setenv("WATCHDOG_USEC", watchdog_usec, 1);
	t.pid = h_spawn(&t.s, NULL, argv, t.out);
	unsetenv("NOTIFY_SOCKET");
	unsetenv("WATCHDOG_USEC");
	assert_true(t.pid > 0);
}

/*
 * Reads datagrams until one from the service holds needle (recorded, like
 * every other one from it, in t.notes).  Returns its index, or -1 after
 * timeout_ms.
 */
static int
wait_note(const char *needle, int timeout_ms)
{
	int64_t deadline = mono_ms() + timeout_ms;

	for (;;) {
		int64_t left = deadline - mono_ms();
		struct pollfd p = { .fd = t.fd, .events = POLLIN };
		char buf[512], ctl[CMSG_SPACE(sizeof(struct ucred))];
		struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) - 1 };
		struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof(ctl) };
		struct cmsghdr *c;
		struct ucred cred = { 0 };
		ssize_t n;

		if (left <= 0 || poll(&p, 1, (int)left) <= 0)
			return -1;
		if ((n = recvmsg(t.fd, &m, MSG_DONTWAIT)) < 0)
			continue;
		buf[n] = '\0';
		for (c = CMSG_FIRSTHDR(&m); c != NULL; c = CMSG_NXTHDR(&m, c))
			if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS)
				memcpy(&cred, CMSG_DATA(c), sizeof(cred));
		if (cred.pid != t.pid)
			continue; /* not the service's: systemd (NotifyAccess=main) ignores it too */
		if (t.nnotes < MAX_NOTES)
			snprintf(t.notes[t.nnotes++], sizeof(t.notes[0]), "%s", buf);
		if (strstr(buf, needle) != NULL)
			return t.nnotes - 1;
	}
}

static int
count_notes(const char *needle)
{
	int k = 0;

	for (int i = 0; i < t.nnotes; i++)
		k += strstr(t.notes[i], needle) != NULL;
	return k;
}

static int
logged(const char *needle)
{
	char *log = file_read_small(t.out, 1 << 22);
	int found = log != NULL && strstr(log, needle) != NULL;

	free(log);
	return found;
}

/* Waits for the service to exit; returns its exit status (-1: killed or still running after timeout_ms). */
static int
exit_status(int timeout_ms)
{
	int64_t deadline = mono_ms() + timeout_ms;
	int st;

	while (mono_ms() < deadline) {
		if (waitpid(t.pid, &st, WNOHANG) == t.pid) {
			t.pid = 0;
			return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
		}
		sleep_ms(20);
	}
	return -1;
}

static void
test_ready_watchdog_stopping(void **state)
{
	const char *id = "01READYORDER00000000000000";
	char ev[512];
	int ready, i;

	(void)state;
	start_history("400000", NULL, NULL); /* WATCHDOG=1 every 200 ms */
	ready = wait_note("READY=1", 10000);
	if (ready < 0)
		fail_msg("no READY=1 within 10 s; see %s", t.out);
	/* the moment READY=1 arrives: logged, and subscribed (publish now, it must land) */
	snprintf(ev, sizeof(ev),
	    "{\"type\":\"OrderPlaced\",\"event_id\":\"01READYEVENT00000000000000\",\"order_id\":\"%s\","
	    "\"user_id\":\"alice\",\"at\":\"2026-11-23T12:00:00.000Z\",\"items\":[{\"sku\":\"funghi\",\"qty\":1}]}",
	    id);
	assert_int_equal(h_publish(&t.s, "order-service", "pizza/orders/placed", ev, strlen(ev)), 0);
	assert_true(logged("msg=\"ready\""));
	for (i = 0; i < 100 && h_sql_int(&t.s, "order-history", "SELECT count(*) FROM orders WHERE order_id = ?", id) < 1;
	     i++)
		sleep_ms(50);
	assert_int_equal(h_sql_int(&t.s, "order-history", "SELECT count(*) FROM orders WHERE order_id = ?", id), 1);
	/* what it waited for was said first */
	assert_true(ready > 0);
	assert_non_null(strstr(t.notes[0], "STATUS=connecting to the broker at tcp://127.0.0.1:"));
	assert_non_null(strstr(t.notes[ready], "STATUS=ready"));

	/* the watchdog: several pings within a second */
	for (i = 0; i < 3; i++)
		if (wait_note("WATCHDOG=1", 1000) < 0)
			fail_msg("WATCHDOG=1 number %d did not come within 1 s", i + 1);

	/* the broker goes and comes back: STATUS= says so */
	h_broker_stop(&t.s);
	if (wait_note("STATUS=broker connection lost", 10000) < 0)
		fail_msg("no STATUS= for the lost broker");
	assert_int_equal(h_broker_start(&t.s), 0);
	if (wait_note("again", 20000) < 0)
		fail_msg("no STATUS= for the broker back");

	/* SIGTERM: STOPPING=1, a clean exit, and READY=1 was sent exactly once */
	kill(t.pid, SIGTERM);
	if (wait_note("STOPPING=1", 5000) < 0)
		fail_msg("no STOPPING=1 after SIGTERM");
	assert_int_equal(exit_status(10000), 0);
	assert_int_equal(count_notes("READY=1"), 1);
}

/* The service said what it waited for and why it gave up, exited 1, and never sent READY=1. */
static void
assert_never_ready(void)
{
	if (wait_note("STATUS=cannot start", 10000) < 0)
		fail_msg("no STATUS=cannot start; see %s", t.out);
	assert_int_equal(exit_status(10000), 1);
	while (wait_note("READY=1", 200) >= 0)
		;
	assert_int_equal(count_notes("READY=1"), 0);
	assert_false(logged("msg=\"ready\""));
	assert_non_null(strstr(t.notes[0], "STATUS=connecting to the broker at tcp://127.0.0.1:"));
}

/* A TCP listener that never speaks MQTT: connected at the socket level, never at MQTT's. */
static void
test_silent_broker_never_ready(void **state)
{
	struct sockaddr_in a;
	socklen_t alen = sizeof(a);
	char url[64];
	int l = socket(AF_INET, SOCK_STREAM, 0);

	(void)state;
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(l, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(l, 8), 0);
	assert_int_equal(getsockname(l, (struct sockaddr *)&a, &alen), 0);
	snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", ntohs(a.sin_port));
	start_history(NULL, url, NULL);
	assert_never_ready();
	close(l);
}

/* The broker refuses the password: no READY=1, exit 1, and why in STATUS=. */
static void
test_refused_never_ready(void **state)
{
	char bad[600];
	FILE *f;

	(void)state;
	snprintf(bad, sizeof(bad), "%s/secrets/wrong.pass", t.s.dir);
	assert_non_null(f = fopen(bad, "w"));
	fputs("not-the-password\n", f);
	fclose(f);
	start_history(NULL, NULL, bad);
	assert_never_ready();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_ready_watchdog_stopping, setup, teardown),
		cmocka_unit_test_setup_teardown(test_silent_broker_never_ready, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refused_never_ready, setup, teardown),
	};

	return cmocka_run_group_tests_name("integ_systemd", tests, NULL, NULL);
}

/*
 * Listeners where docs/security.md says they are: every listening socket of
 * the broker (from broker-config/stack prepare, as make run writes it: the
 * plain, TLS and WebSockets listeners) and of every service is bound to
 * loopback (127.0.0.1, ::1, or ::ffff:127.0.0.1), never to a wildcard or
 * another address.  The sockets are read from /proc; nothing is sent to a
 * non-loopback address.
 *
 * mosquitto hands its WebSockets listener to libwebsockets, which binds by
 * interface: "listener 9001 127.0.0.1" listened on *:9001 (issue 14), the
 * interface name "lo" listens on 127.0.0.1 only.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cmocka.h>

#include "harness.h"

static struct stack st;
static int notifier_metrics, exec_metrics;

static int
setup(void **state)
{
	char np[16], ep[16];

	(void)state;
	if (h_stack_start(&st, "listeners") != 0)
		return -1;
	notifier_metrics = h_free_port();
	exec_metrics = h_free_port();
	snprintf(np, sizeof(np), "%d", notifier_metrics);
	snprintf(ep, sizeof(ep), "%d", exec_metrics);
	if (h_service(&st, "order-service", "order-service", NULL) < 0 ||
	    h_service(&st, "order-history", "order-history", NULL) < 0 ||
	    h_service(&st, "notifier", "notifier", "--metrics-port", np, NULL) < 0 ||
	    h_service(&st, "exec-1", "order-executor", "--id", "exec-1", "--metrics-port", ep, NULL) < 0)
		return -1;
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	return h_stack_stop(&st);
}

/*
 * Every listening socket of pid is on loopback, and those of the ports in
 * want[] (0-ended) are among them: a process that listens nowhere cannot
 * pass.
 */
static void
assert_loopback_only(const char *name, pid_t pid, const int *want)
{
	struct h_listen l[32];
	int n = h_listening(pid, l, 32);

	if (n < 0)
		fail_msg("%s (pid %d): cannot read its sockets", name, (int)pid);
	assert_true(n <= 32);
	for (int i = 0; i < n; i++) {
		printf("  %-14s listens on %s port %d\n", name, l[i].addr, l[i].port);
		if (!l[i].loopback)
			fail_msg("%s listens on %s port %d: reachable from other machines, not loopback only", name,
			    l[i].addr, l[i].port);
	}
	for (int k = 0; want[k] != 0; k++) {
		int found = 0;
		for (int i = 0; i < n; i++)
			found |= l[i].port == want[k];
		if (!found)
			fail_msg("%s does not listen on port %d at all", name, want[k]);
	}
}

/* The broker's three listeners and every service's HTTP port: loopback only. */
static void
test_every_listener_is_loopback(void **state)
{
	const int broker[] = { st.port, st.tls_port, st.ws_port, 0 };

	(void)state;
	assert_loopback_only("mosquitto", st.broker, broker);
	for (int i = 0; i < st.nprocs; i++) {
		const char *n = st.procs[i].name;
		int want[2] = { 0, 0 };

		if (strcmp(n, "order-service") == 0)
			want[0] = st.http_port;
		else if (strcmp(n, "order-history") == 0)
			want[0] = st.history_port;
		else if (strcmp(n, "notifier") == 0)
			want[0] = notifier_metrics;
		else if (strcmp(n, "exec-1") == 0)
			want[0] = exec_metrics;
		assert_loopback_only(n, st.procs[i].pid, want);
	}
}

/*
 * Bound by interface, the WebSockets listener still serves the storefront
 * on 127.0.0.1: a WebSocket handshake for MQTT is answered 101.
 */
static void
test_websockets_answer_on_loopback(void **state)
{
	struct sockaddr_in a;
	struct timeval tv = { 5, 0 };
	char req[512], resp[1024];
	ssize_t got = 0, r;
	int fd;

	(void)state;
	assert_true((fd = socket(AF_INET, SOCK_STREAM, 0)) >= 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_port = htons((uint16_t)st.ws_port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	snprintf(req, sizeof(req),
	    "GET /mqtt HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
	    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
	    "Sec-WebSocket-Protocol: mqtt\r\n\r\n",
	    st.ws_port);
	assert_int_equal(write(fd, req, strlen(req)), (ssize_t)strlen(req));
	while (got < (ssize_t)sizeof(resp) - 1 && (r = read(fd, resp + got, sizeof(resp) - 1 - (size_t)got)) > 0) {
		got += r;
		resp[got] = '\0';
		if (strstr(resp, "\r\n\r\n") != NULL)
			break;
	}
	close(fd);
	resp[got > 0 ? got : 0] = '\0';
	if (strncmp(resp, "HTTP/1.1 101", 12) != 0)
		fail_msg("the WebSockets listener answered: %.200s", resp);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_listener_is_loopback),
		cmocka_unit_test(test_websockets_answer_on_loopback),
	};

	cmocka_set_test_filter(getenv("PIZZA_TEST_FILTER"));
	return cmocka_run_group_tests_name("listeners", tests, setup, teardown);
}

/*
 * make run's stack supervises its processes (issue 14): broker-config/stack
 * run is started in the background as make run starts it, on free ports in
 * a folder of its own (as make bench does).  Checked, in order, on the one
 * stack:
 *
 *   - it writes <run>/env with every port it opened and <run>/pids/NAME.pid
 *     for every process, and phone-sim finds the stack through <run>/env
 *     alone (no port in its environment);
 *   - every listening socket of its processes is on loopback;
 *   - kill -9 of an executor: the stack stays up, says which process died,
 *     how and the restart count, starts it again, and every accepted order
 *     gets exactly one pickup alert, seen once by the user's persistent phone;
 *   - kill -9 of the broker: the same;
 *   - SIGINT (a Ctrl-C): everything exits within seconds, nothing is left
 *     running, and nothing on the way out looks like a crash.
 *
 * Then a second stack, make run STORE=postgres INSTANCES=2 (issue 16): a
 * private PostgreSQL in the run folder (not as root), two instances of
 * every service on it, all running and all in <run>/env, an order placed
 * over HTTP on the second order-service completing with one pickup alert
 * and answered alike by both order-histories, and a Ctrl-C that stops all
 * of them and PostgreSQL too.
 *
 * Supervision deadlines are short (accept 1.5 s, ready 3 s, as in
 * test_integ_faults.c) so that orders an executor took with it are
 * published again quickly.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cmocka.h>

#include "harness.h"
#include "log.h"
#include "util.h"

#define USERS 3
#define PER_USER 2 /* orders per user in each of the two crashes */
#define EXECUTORS 2
static const char *const users[USERS] = { "alice", "bob", "carol" };
static const char *const procs[] = { "mosquitto", "order-service", "order-history", "notifier", "exec-1", "exec-2" };
#define NPROCS (sizeof(procs) / sizeof(procs[0]))

static struct {
	pid_t pid; /* broker-config/stack run */
	char dir[300], run[360], log[360];
	int mqtt, http, hist, tls, ws, mbase;
	struct stack s; /* for the harness's helpers: s.dir is the run folder, s.port the broker's */
	pid_t phone[USERS];
	char phone_out[USERS][500];
	char ids[2 * USERS * PER_USER][NAME_MAX_LEN + 1];
	int nids;
} t;

static const char *
root(void)
{
	const char *r = getenv("PIZZA_ROOT");
	return r != NULL ? r : ".";
}

static const char *
bindir(void)
{
	const char *b = getenv("PIZZA_BIN");
	return b != NULL ? b : "./build/bin";
}

static char *
slurp(const char *path)
{
	char *s = file_read_small(path, 1 << 24);
	return s != NULL ? s : strdup("");
}

static int
count(const char *text, const char *needle)
{
	int n = 0;

	for (const char *p = text; (p = strstr(p, needle)) != NULL; p += strlen(needle))
		n++;
	return n;
}

/* The value of NAME=value in <run>/env (quotes kept), into out; -1 when absent. */
static int
env_get(const char *name, char *out, size_t n)
{
	char path[500], *text, *line, *save = NULL;
	size_t len = strlen(name);
	int rc = -1;

	snprintf(path, sizeof(path), "%s/env", t.run);
	if ((text = file_read_small(path, 1 << 16)) == NULL)
		return -1;
	for (line = strtok_r(text, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save))
		if (strncmp(line, name, len) == 0 && line[len] == '=') {
			snprintf(out, n, "%s", line + len + 1);
			rc = 0;
			break;
		}
	free(text);
	return rc;
}

static long
env_long(const char *name)
{
	char v[64];
	long x = -1;

	if (env_get(name, v, sizeof(v)) != 0 || parse_long(v, 0, 1L << 30, &x) != 0)
		return -1;
	return x;
}

/* The pid in <run>/pids/NAME.pid, or 0. */
static pid_t
pid_of(const char *name)
{
	char path[600], *text;
	long pid = 0;

	snprintf(path, sizeof(path), "%s/pids/%s.pid", t.run, name);
	if ((text = file_read_small(path, 64)) != NULL && parse_long(text, 1, 1L << 30, &pid) != 0)
		pid = 0;
	free(text);
	return (pid_t)pid;
}

static int
alive(pid_t pid)
{
	return pid > 0 && kill(pid, 0) == 0;
}

/* Any process (other than this test) whose command line names the run folder: what the stack started. */
static int
leftovers(char *what, size_t n)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	int k = 0;

	what[0] = '\0';
	while (d != NULL && (e = readdir(d)) != NULL) {
		char path[300], cmd[4096];
		long pid;
		ssize_t len;
		int fd;

		if (parse_long(e->d_name, 1, 1L << 30, &pid) != 0 || pid == getpid())
			continue;
		snprintf(path, sizeof(path), "/proc/%ld/cmdline", pid);
		if ((fd = open(path, O_RDONLY)) < 0)
			continue;
		len = read(fd, cmd, sizeof(cmd) - 1);
		close(fd);
		if (len <= 0)
			continue;
		for (ssize_t i = 0; i < len; i++)
			if (cmd[i] == '\0')
				cmd[i] = ' ';
		cmd[len] = '\0';
		if (strstr(cmd, t.run) != NULL) {
			size_t used = strlen(what);
			snprintf(what + used, n - used, "%ld: %.200s\n", pid, cmd);
			k++;
		}
	}
	if (d != NULL)
		closedir(d);
	return k;
}

/* Starts argv (argv[0] a program under PIZZA_BIN) with only the run folder to find the stack by. */
static pid_t
spawn_phone(char *const argv[], const char *password, const char *outfile)
{
	char path[600];
	pid_t pid;

	snprintf(path, sizeof(path), "%s/%s", bindir(), argv[0]);
	if ((pid = fork()) == 0) {
		int fd = open(outfile, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
			close(fd);
		}
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		unsetenv("PIZZA_MQTT_URL");
		unsetenv("PIZZA_MQTT_PORT");
		unsetenv("PIZZA_HTTP_URL");
		unsetenv("PIZZA_HTTP_PORT");
		setenv("PIZZA_RUN_DIR", t.run, 1);
		setenv("PIZZA_PASSWORD", password, 1);
		close_range(3, ~0U, 0);
		execv(path, argv);
		_exit(127);
	}
	return pid;
}

/* Waits until file holds needle, or ms pass. Returns 0 or -1. */
static int
wait_file(const char *file, const char *needle, int ms)
{
	int64_t deadline = mono_ms() + ms;

	do {
		char *s = file_read_small(file, 1 << 24);
		int found = s != NULL && strstr(s, needle) != NULL;
		free(s);
		if (found)
			return 0;
		h_sleep(20);
	} while (mono_ms() < deadline);
	return -1;
}

/*
 * The first of n consecutive free ports on 127.0.0.1, below the kernel's
 * ephemeral range: a port from that range (h_free_port()) may meanwhile
 * become the local end of one of the stack's own connections to its
 * broker, and the service meant to listen on it would fail.
 */
static int
free_run(int n)
{
	int low = 32768, high, start;
	FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");

	if (f != NULL) {
		if (fscanf(f, "%d %d", &low, &high) != 2)
			low = 32768;
		fclose(f);
	}
	start = 10000 + (int)(getpid() * 37 % 9000);
	for (int base = start; base + n < low; base += n) {
		int ok = 1;
		for (int p = base; p < base + n && ok; p++) {
			struct sockaddr_in a;
			int fd = socket(AF_INET, SOCK_STREAM, 0);

			memset(&a, 0, sizeof(a));
			a.sin_family = AF_INET;
			a.sin_port = htons((uint16_t)p);
			a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
			ok = fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
			if (fd >= 0)
				close(fd);
		}
		if (ok)
			return base;
	}
	return -1;
}

static int
setenvf(const char *name, int v)
{
	char buf[16];

	snprintf(buf, sizeof(buf), "%d", v);
	return setenv(name, buf, 1);
}

/*
 * Waits until every URL in <run>/env's PIZZA_HTTP_URLS answers GET /healthz
 * with 200 (run/env is written once every process is started, not once each
 * is ready: on PostgreSQL the services first make their schemas).  Returns
 * 0, or -1 after ms.
 */
static int
healthy(int ms)
{
	int64_t deadline = mono_ms() + ms;
	char v[1000], *save = NULL, *q;

	if (env_get("PIZZA_HTTP_URLS", v, sizeof(v)) != 0 || v[0] != '\'' || (q = strchr(v + 1, '\'')) == NULL)
		return -1;
	*q = '\0';
	for (char *u = strtok_r(v + 1, " ", &save); u != NULL; u = strtok_r(NULL, " ", &save)) {
		char url[300], *body = NULL;
		int st;

		snprintf(url, sizeof(url), "%shealthz", u);
		while ((st = h_http_get(url, &body)) != 200 && mono_ms() < deadline) {
			free(body);
			body = NULL;
			h_sleep(50);
		}
		free(body);
		if (st != 200)
			return -1;
	}
	return 0;
}

/*
 * broker-config/stack run in the background, as make run starts it, on free
 * ports; waits for <run>/env and for its HTTP servers to be healthy.  instances 0: plain make run (SQLite);
 * otherwise make run STORE=postgres INSTANCES=instances.
 */
static int
stack_start(int instances)
{
	char build[600], env_file[500];
	const char *b = bindir();
	size_t bl = strlen(b);
	int pg = 0;

	memset(&t, 0, sizeof(t));
	pthread_mutex_init(&t.s.lock, NULL);
	log_init("test", LOG_LEVEL_ERROR); /* the observer losing the broker is expected here */
	snprintf(t.dir, sizeof(t.dir), "%s/build/test-run/stack-%s%d", root(), instances > 0 ? "pg-" : "", (int)getpid());
	snprintf(t.run, sizeof(t.run), "%s/run", t.dir);
	snprintf(t.log, sizeof(t.log), "%s/stack.log", t.dir);
	snprintf(env_file, sizeof(env_file), "%s/env", t.run);
	{
		char cmd[900];
		snprintf(cmd, sizeof(cmd), "rm -rf '%s' && mkdir -p '%s'", t.dir, t.dir);
		if (system(cmd) != 0)
			return -1;
	}
	/* the stack runs $BUILD/bin: the build these tests are from (build, or build-asan) */
	snprintf(build, sizeof(build), "%.*s", bl > 4 && strcmp(b + bl - 4, "/bin") == 0 ? (int)(bl - 4) : (int)bl, b);
	/*
	 * five listeners, then the metrics base: the stack takes +3 (notifier), +4, +5 (executors); with
	 * instances, order-history-i and order-service-i's HTTP ports, PostgreSQL's, and notifier-i's metrics too
	 */
	if ((t.mqtt = free_run(5 + 3 + 1 + EXECUTORS + 3 * (instances > 0 ? instances : 0))) < 0)
		return -1;
	t.http = t.mqtt + 1;
	t.hist = t.mqtt + 2;
	t.tls = t.mqtt + 3;
	t.ws = t.mqtt + 4;
	t.mbase = t.mqtt + 5;
	if (instances > 0) {
		/*
		 * the stack's rules: order-history-i on hist + i - 1, order-service-i (i > 1) after them;
		 * PostgreSQL after those, then the metrics (notifier-i, i > 1, after the executors')
		 */
		t.tls = t.mqtt + 2;
		t.ws = t.mqtt + 3;
		t.hist = t.mqtt + 4;
		pg = t.hist + 2 * instances - 1;
		t.mbase = pg + 1;
	}
	if ((t.pid = fork()) == 0) {
		char stack[600];
		int fd = open(t.log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		sigset_t none;

		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
			close(fd);
		}
		/* like a terminal's make run: SIGINT not ignored (a background parent may have), and
		 * the stack told to stop should this test die */
		signal(SIGINT, SIG_DFL);
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		setenv("PIZZA_RUN_DIR", t.run, 1);
		setenvf("PIZZA_MQTT_PORT", t.mqtt);
		setenvf("PIZZA_HTTP_PORT", t.http);
		setenvf("PIZZA_HISTORY_HTTP_PORT", t.hist);
		setenvf("PIZZA_MQTTS_PORT", t.tls);
		setenvf("PIZZA_MQTT_WS_PORT", t.ws);
		setenvf("PIZZA_METRICS_PORT_BASE", t.mbase);
		if (instances > 0) {
			/* the executors follow INSTANCES (at least 2): EXECUTORS left unset, as make run leaves it */
			unsetenv("EXECUTORS");
			setenv("STORE", "postgres", 1);
			setenvf("INSTANCES", instances);
			setenvf("PIZZA_PG_PORT", pg);
		} else {
			unsetenv("STORE");
			unsetenv("INSTANCES");
			setenvf("EXECUTORS", EXECUTORS);
		}
		setenv("PIZZA_STAGE_MS", "300", 1);
		setenv("PIZZA_ACCEPT_DEADLINE_MS", "1500", 1);
		setenv("PIZZA_READY_DEADLINE_MS", "3000", 1);
		setenv("BUILD", build, 1);
		unsetenv("PIZZA_MQTT_URL");
		close_range(3, ~0U, 0);
		snprintf(stack, sizeof(stack), "%s/broker-config/stack", root());
		execl(stack, "stack", "run", (char *)NULL);
		_exit(127);
	}
	if (t.pid < 0 || wait_file(env_file, "PIZZA_HTTP_URLS=", 30000) != 0) {
		char *log = slurp(t.log);
		fprintf(stderr, "no %s after 30 s; the stack said:\n%s\n", env_file, log);
		free(log);
		return -1;
	}
	/* the harness's helpers (observer, passwords, SQL) on this stack's run folder and broker */
	snprintf(t.s.dir, sizeof(t.s.dir), "%s", t.run);
	t.s.port = t.mqtt;
	if (healthy(30000) != 0) {
		char *log = slurp(t.log);
		fprintf(stderr, "the stack's HTTP servers did not all answer /healthz 200 within 30 s; it said:\n%s\n", log);
		free(log);
		return -1;
	}
	h_sleep(500); /* the services say ready once subscribed */
	return h_observer(&t.s);
}

static int
setup(void **state)
{
	(void)state;
	return stack_start(0);
}

static int
setup_pg(void **state)
{
	(void)state;
	return stack_start(2);
}

static int
teardown(void **state)
{
	char what[4096];
	int st;

	(void)state;
	for (int u = 0; u < USERS; u++)
		if (t.phone[u] > 0) {
			kill(t.phone[u], SIGKILL);
			waitpid(t.phone[u], NULL, 0);
		}
	if (t.pid > 0 && waitpid(t.pid, &st, WNOHANG) == 0) {
		kill(t.pid, SIGTERM);
		for (int i = 0; i < 300 && waitpid(t.pid, &st, WNOHANG) == 0; i++)
			h_sleep(100);
		if (waitpid(t.pid, &st, WNOHANG) == 0) {
			kill(t.pid, SIGKILL); /* its children get SIGTERM as their parent dies */
			waitpid(t.pid, &st, 0);
		}
	}
	if (leftovers(what, sizeof(what)) > 0)
		fprintf(stderr, "left running after the test:\n%s", what);
	return h_stack_stop(&t.s);
}

/* Sanitizer reports of any process of the stack (its log is theirs). */
static void
assert_no_sanitizer_findings(void)
{
	static const char *const marks[] = { "ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:" };
	char *log = slurp(t.log);

	for (size_t i = 0; i < sizeof(marks) / sizeof(marks[0]); i++)
		if (strstr(log, marks[i]) != NULL)
			fail_msg("sanitizer finding in %s:\n%.2000s", t.log, strstr(log, marks[i]));
	free(log);
}

/* <run>/env holds every port the stack opened, <run>/pids every process; phone-sim finds the stack by them. */
static void
test_run_env_and_pids(void **state)
{
	char v[600], url[64], out_file[600], *out;
	char *const menu[] = { "phone-sim", "history", "--user", "alice", NULL };

	(void)state;
	assert_int_equal(env_long("PIZZA_MQTT_PORT"), t.mqtt);
	assert_int_equal(env_long("PIZZA_HTTP_PORT"), t.http);
	assert_int_equal(env_long("PIZZA_HISTORY_HTTP_PORT"), t.hist);
	assert_int_equal(env_long("PIZZA_MQTTS_PORT"), t.tls);
	assert_int_equal(env_long("PIZZA_MQTT_WS_PORT"), t.ws);
	assert_int_equal(env_long("PIZZA_STACK_PID"), t.pid);
	assert_true(env_long("PIZZA_METRICS_PORT_NOTIFIER") > 0);
	assert_true(env_long("PIZZA_METRICS_PORT_EXEC_1") > 0);
	assert_true(env_long("PIZZA_METRICS_PORT_EXEC_2") > 0);
	assert_int_equal(env_get("PIZZA_RUN_DIR", v, sizeof(v)), 0);
	assert_string_equal(v, t.run);
	assert_int_equal(env_get("PIZZA_HTTP_URLS", v, sizeof(v)), 0);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/", t.http);
	assert_non_null(strstr(v, url));
	snprintf(url, sizeof(url), "http://127.0.0.1:%ld/", env_long("PIZZA_METRICS_PORT_EXEC_2"));
	assert_non_null(strstr(v, url));
	/* a shell can source it */
	{
		char cmd[900];
		snprintf(cmd, sizeof(cmd), "sh -c '. \"%s/env\" && test \"$PIZZA_MQTT_PORT\" = %d && test -n \"$PIZZA_HTTP_URLS\"'",
		    t.run, t.mqtt);
		assert_int_equal(system(cmd), 0);
	}
	for (size_t i = 0; i < NPROCS; i++)
		if (!alive(pid_of(procs[i])))
			fail_msg("%s/pids/%s.pid does not name a live process", t.run, procs[i]);
	assert_int_equal(pid_of("stack"), t.pid);
	/* phone-sim with no port in its environment: HTTP from <run>/env (MQTT is checked by the orders below) */
	snprintf(out_file, sizeof(out_file), "%s/history.out", t.dir);
	assert_int_equal(h_collect(spawn_phone(menu, h_password(&t.s, "alice"), out_file), out_file, &out, 20000), 0);
	assert_non_null(strstr(out, "ORDER"));
	free(out);
}

/* Every listening socket of every process of the stack is on loopback. */
static void
test_listeners_loopback(void **state)
{
	(void)state;
	for (size_t i = 0; i < NPROCS; i++) {
		struct h_listen l[32];
		int n = h_listening(pid_of(procs[i]), l, 32);

		if (n <= 0)
			fail_msg("%s listens nowhere, or its sockets cannot be read", procs[i]);
		for (int k = 0; k < n && k < 32; k++)
			if (!l[k].loopback)
				fail_msg("%s listens on %s port %d, not loopback only", procs[i], l[k].addr, l[k].port);
	}
}

/* Persistent phones of every user, following the stack by <run>/env: each waits for its alerts. */
static void
phones_start(void)
{
	char alerts[16];

	snprintf(alerts, sizeof(alerts), "%d", 2 * PER_USER);
	for (int u = 0; u < USERS; u++) {
		char *const argv[] = { "phone-sim", "watch", "--persistent", "--user", (char *)users[u], "--alerts", alerts,
			"--for", "120", NULL };
		snprintf(t.phone_out[u], sizeof(t.phone_out[u]), "%s/phone-%s.out", t.dir, users[u]);
		t.phone[u] = spawn_phone(argv, h_password(&t.s, users[u]), t.phone_out[u]);
		if (wait_file(t.phone_out[u], "watching pizza/users/", 10000) != 0)
			fail_msg("the phone of %s did not connect (see %s)", users[u], t.phone_out[u]);
	}
}

/*
 * Places PER_USER orders for each user with phone-sim order (each following
 * its order) and waits for each answer: their ids go to t.ids.  Returns the
 * phone-sim pids in pids[] and their output files in files[].
 */
static void
place(const char *tag, pid_t *pids, char files[][600])
{
	int first = t.nids;

	for (int i = 0; i < USERS * PER_USER; i++) {
		char *const argv[] = { "phone-sim", "order", "--user", (char *)users[i % USERS], "--item", "margherita",
			"--timeout", "60", NULL };
		snprintf(files[i], 600, "%s/order-%s-%d.out", t.dir, tag, i);
		pids[i] = spawn_phone(argv, h_password(&t.s, users[i % USERS]), files[i]);
	}
	for (int i = 0; i < USERS * PER_USER; i++) {
		char *out, *at;

		if (wait_file(files[i], "  placed  ", 15000) != 0)
			fail_msg("order %s-%d was not accepted (see %s)", tag, i, files[i]);
		out = slurp(files[i]);
		at = strstr(out, "  order ");
		assert_non_null(at);
		assert_int_equal(sscanf(at, "  order %64s", t.ids[first + i]), 1);
		free(out);
	}
	t.nids = first + USERS * PER_USER;
}

/* Every order so far has exactly one pickup alert in the notifier's store (waiting up to ms for it). */
static void
assert_alerted_once(int ms)
{
	int64_t deadline = mono_ms() + ms;

	for (int i = 0; i < t.nids; i++) {
		int64_t n;
		while ((n = h_sql_int(&t.s, "notifier", "SELECT count(*) FROM alerts WHERE order_id = ?", t.ids[i])) < 1 &&
		    mono_ms() < deadline)
			h_sleep(50);
		if (n != 1)
			fail_msg("order %s has %lld pickup alerts, not 1 (see %s)", t.ids[i], (long long)n, t.dir);
	}
}

/*
 * Kills name with SIGKILL and waits until the stack has started it again.
 * Returns how long that took (ms): the pid file names a new live process.
 */
static int64_t
kill_and_wait_restart(const char *name)
{
	pid_t old = pid_of(name), now = 0;
	int64_t t0, deadline;
	char line[200];
	char *log;

	assert_true(alive(old));
	t0 = mono_ms();
	assert_int_equal(kill(old, SIGKILL), 0);
	deadline = t0 + 10000;
	while (mono_ms() < deadline && !((now = pid_of(name)) != old && alive(now)))
		h_sleep(5);
	if (now == old || !alive(now)) {
		log = slurp(t.log);
		fail_msg("%s was not started again within 10 s; the stack said:\n%.3000s", name, log);
	}
	/* one line naming it, how it ended, and the restart count */
	snprintf(line, sizeof(line), "stack: %s (pid %d) was killed by SIGKILL after ", name, (int)old);
	assert_int_equal(wait_file(t.log, line, 2000), 0);
	log = slurp(t.log);
	assert_non_null(strstr(strstr(log, line), "(restart 1)"));
	free(log);
	assert_true(alive(t.pid));
	return mono_ms() - t0;
}

/* The user's persistent phone showed every order's pickup alert exactly once. */
static void
phones_check(void)
{
	for (int u = 0; u < USERS; u++) {
		char *out = NULL;
		int rc = h_collect(t.phone[u], t.phone_out[u], &out, 30000);

		t.phone[u] = 0;
		if (rc != 0)
			fail_msg("phone of %s exited %d:\n%s", users[u], rc, out);
		for (int i = 0; i < t.nids; i++) {
			char needle[128];
			if (strcmp(users[i % USERS], users[u]) != 0)
				continue;
			snprintf(needle, sizeof(needle), "order %s  PICKUP", t.ids[i]);
			if (count(out, needle) != 1)
				fail_msg("phone of %s showed order %s's alert %d times:\n%s", users[u], t.ids[i], count(out, needle),
				    out);
		}
		free(out);
	}
}

/* kill -9 of an executor while it holds orders: restarted; every order alerted once. */
static void
test_executor_killed_is_restarted(void **state)
{
	pid_t pids[USERS * PER_USER], others[NPROCS];
	char files[USERS * PER_USER][600];
	int64_t ms, deadline;
	int held = 0;

	(void)state;
	for (size_t i = 0; i < NPROCS; i++)
		others[i] = pid_of(procs[i]);
	phones_start();
	place("exec", pids, files);
	/* wait until exec-1 is walking one of them */
	deadline = mono_ms() + 5000;
	while (!held && mono_ms() < deadline) {
		for (int i = 0; i < t.nids && !held; i++) {
			struct event ev[8];
			int n = h_events(&t.s, t.ids[i], EVENT_ORDER_STATUS, ev, 8);
			for (int k = 0; k < n && k < 8; k++)
				held |= strcmp(ev[k].worker, "exec-1") == 0 && ev[k].status != STATUS_READY;
		}
		h_sleep(10);
	}
	assert_true(held);
	ms = kill_and_wait_restart("exec-1");
	printf("  exec-1 killed with SIGKILL: running again %lld ms later\n", (long long)ms);
	for (size_t i = 0; i < NPROCS; i++)
		if (strcmp(procs[i], "exec-1") != 0 && pid_of(procs[i]) != others[i])
			fail_msg("%s was restarted too", procs[i]);
	assert_alerted_once(30000);
	/* the clean-session phones placing them stayed connected: each saw its own pickup */
	for (int i = 0; i < USERS * PER_USER; i++) {
		char *out;
		if (h_collect(pids[i], files[i], &out, 30000) != 0)
			fail_msg("phone-sim order %d did not see its pickup:\n%s", i, out);
		free(out);
	}
}

/* kill -9 of the broker while orders are in the kitchen: restarted; every order alerted once. */
static void
test_broker_killed_is_restarted(void **state)
{
	pid_t pids[USERS * PER_USER];
	char files[USERS * PER_USER][600];
	int64_t ms;
	int first = t.nids;

	(void)state;
	/*
	 * A save point first: what mosquitto accepted after its last save is
	 * lost in a hard crash (docs/reliability.md), the phones' sessions too if
	 * they are younger than autosave_interval.  This tests the stack, not that.
	 */
	assert_int_equal(kill(pid_of("mosquitto"), SIGUSR1), 0);
	h_sleep(300);
	place("broker", pids, files);
	/* an executor took the first: it told order-service on pizza/orders/accepted */
	assert_true(
	    h_wait_events_on(&t.s, TOPIC_ACCEPTED, t.ids[first], EVENT_ORDER_STATUS, STATUS_ACCEPTED, 1, 5000) >= 1);
	ms = kill_and_wait_restart("mosquitto");
	printf("  mosquitto killed with SIGKILL: running again %lld ms later\n", (long long)ms);
	assert_alerted_once(45000);
	phones_check();
	/* the clean-session phones placing them may have missed their alert while reconnecting: not checked */
	for (int i = 0; i < USERS * PER_USER; i++) {
		kill(pids[i], SIGTERM);
		waitpid(pids[i], NULL, 0);
	}
}

/*
 * SIGINT to the stack, as a Ctrl-C: it exits 0 within 15 s, none of the n
 * processes names[] (pids[]) still runs, nothing else of the run folder
 * does, and <run>/env and the pid files are gone.
 */
static void
sigint_stops(const char *const *names, const pid_t *pids, size_t n)
{
	char what[4096], path[600];
	int64_t t0, ms;
	int st = 0;

	t0 = mono_ms();
	assert_int_equal(kill(t.pid, SIGINT), 0);
	while (waitpid(t.pid, &st, WNOHANG) == 0 && mono_ms() - t0 < 15000)
		h_sleep(10);
	ms = mono_ms() - t0;
	printf("  SIGINT: the stack exited %lld ms later\n", (long long)ms);
	if (ms >= 15000)
		fail_msg("the stack still runs 15 s after SIGINT");
	t.pid = 0;
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	for (size_t i = 0; i < n; i++) {
		if (alive(pids[i]))
			fail_msg("%s (pid %d) still runs", names[i], (int)pids[i]);
		snprintf(path, sizeof(path), "%s/pids/%s.pid", t.run, names[i]);
		if (access(path, F_OK) == 0)
			fail_msg("%s is left behind", path);
	}
	if (leftovers(what, sizeof(what)) > 0)
		fail_msg("still running:\n%s", what);
	snprintf(path, sizeof(path), "%s/env", t.run);
	assert_int_equal(access(path, F_OK), -1);
}

/* SIGINT, as a Ctrl-C: everything stops within seconds, quietly, and nothing is left running. */
static void
test_sigint_stops_everything(void **state)
{
	pid_t pids[NPROCS];
	size_t before;
	char *log;

	(void)state;
	for (size_t i = 0; i < NPROCS; i++)
		pids[i] = pid_of(procs[i]);
	log = slurp(t.log);
	before = strlen(log);
	free(log);
	sigint_stops(procs, pids, NPROCS);
	/* quietly: every service said goodbye, nothing warned, failed or was killed */
	log = slurp(t.log);
	{
		const char *after = log + before;
		static const char *const crashes[] = { "level=warn", "level=error", "Killed", "killed by", "Error",
			"exited with status", "connection to broker lost" };

		assert_int_equal(count(after, "msg=\"shutting down\""), (int)NPROCS - 1);
		for (size_t i = 0; i < sizeof(crashes) / sizeof(crashes[0]); i++)
			if (strstr(after, crashes[i]) != NULL)
				fail_msg("after SIGINT the stack printed \"%s\":\n%s", crashes[i], after);
	}
	free(log);
	assert_no_sanitizer_findings();
}

/* The uid a live process runs as (from /proc), or -1. */
static long
uid_of(pid_t pid)
{
	char path[64], *text, *at;
	long uid = -1;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	if ((text = file_read_small(path, 1 << 16)) != NULL && (at = strstr(text, "\nUid:")) != NULL)
		uid = strtol(at + 5, NULL, 10);
	free(text);
	return uid;
}

/* The argument after opt on a live process's command line, into out; -1 when absent. */
static int
arg_of(pid_t pid, const char *opt, char *out, size_t n)
{
	char path[64], cmd[8192];
	ssize_t len;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
	if ((fd = open(path, O_RDONLY)) < 0)
		return -1;
	len = read(fd, cmd, sizeof(cmd) - 1);
	close(fd);
	if (len <= 0)
		return -1;
	cmd[len] = '\0';
	for (char *a = cmd; a < cmd + len; a += strlen(a) + 1)
		if (strcmp(a, opt) == 0 && a + strlen(a) + 1 < cmd + len) {
			snprintf(out, n, "%s", a + strlen(a) + 1);
			return 0;
		}
	return -1;
}

/*
 * GET /v1/orders/id from the order-history at base (a URL ending in /),
 * with the history secret, until it answers 200 with the order ready and its
 * five stages, or ms pass.  Its body (caller frees), or NULL.
 */
static char *
history_ready(const char *base, const char *auth, const char *id, int ms)
{
	const char *const headers[] = { auth, NULL };
	int64_t deadline = mono_ms() + ms;
	char url[400];

	snprintf(url, sizeof(url), "%sv1/orders/%s", base, id);
	do {
		struct h_reply r;
		if (h_http("GET", url, headers, NULL, &r) == 200) {
			json_t *o = json_loads(r.body, 0, NULL);
			int done = o != NULL && json_is_string(json_object_get(o, "status")) &&
			    strcmp(json_string_value(json_object_get(o, "status")), "ready") == 0 &&
			    json_array_size(json_object_get(o, "timeline")) == 5;
			json_decref(o);
			if (done) {
				char *body = r.body;
				r.body = NULL;
				h_reply_free(&r);
				return body;
			}
		}
		h_reply_free(&r);
		h_sleep(50);
	} while (mono_ms() < deadline);
	return NULL;
}

/*
 * The space-separated list NAME='a b' in <run>/env: its words into buf (n
 * bytes), pointers to them in out[] (at most max).  Returns how many, or -1
 * when NAME is absent or not quoted.
 */
static int
env_list(const char *name, char *buf, size_t n, const char **out, int max)
{
	char *save = NULL, *w, *q;
	int k = 0;

	if (env_get(name, buf, n) != 0 || buf[0] != '\'' || (q = strchr(buf + 1, '\'')) == NULL)
		return -1;
	*q = '\0';
	for (w = strtok_r(buf + 1, " ", &save); w != NULL && k < max; w = strtok_r(NULL, " ", &save))
		out[k++] = w;
	return k;
}

/* The sum of a Prometheus counter (name: "\nNAME ") over the notifiers' /metrics (ports from <run>/env), or -1. */
static long
notifiers_counter(const char *const *vars, int n, const char *name)
{
	long total = 0;

	for (int i = 0; i < n; i++) {
		char url[100], *body = NULL, *at;
		long port = env_long(vars[i]);

		snprintf(url, sizeof(url), "http://127.0.0.1:%ld/metrics", port);
		if (port <= 0 || h_http_get(url, &body) != 200 || (at = strstr(body, name)) == NULL) {
			free(body);
			return -1;
		}
		total += strtol(at + strlen(name), NULL, 10);
		free(body);
	}
	return total;
}

/*
 * make run STORE=postgres INSTANCES=2: a private PostgreSQL (not as root)
 * and two instances of order-service, order-history and the notifier on
 * it, each with its own client id and port, all running and listed in
 * <run>/env; an order placed over HTTP on the second order-service
 * completes with one pickup alert (the phone's, the broker's, the
 * notifiers' counts) and both order-histories answer it with the same
 * body; a Ctrl-C stops everything, PostgreSQL included.
 */
static void
test_postgres_instances(void **state)
{
	static const char *const pg_procs[] = { "mosquitto", "postgres", "order-service-1", "order-service-2",
		"order-history-1", "order-history-2", "notifier-1", "notifier-2", "exec-1", "exec-2" };
	static const char *const with_pg[] = { "order-service-1", "order-service-2", "order-history-1", "order-history-2",
		"notifier-1", "notifier-2" };
	static const char *const notifier_ports[] = { "PIZZA_METRICS_PORT_NOTIFIER_1", "PIZZA_METRICS_PORT_NOTIFIER_2" };
	enum { NPG = sizeof(pg_procs) / sizeof(pg_procs[0]) };
	char hbuf[600], obuf[600], v[700], out_file[600], id[NAME_MAX_LEN + 1], auth[600], path[600];
	char *out, *body[2], *secret, *log;
	const char *hist[3], *front[3];
	pid_t pids[NPG];
	long alerts0;

	(void)state;
	/* <run>/env: both order-service and both history instances, the store, PostgreSQL's URL without its password */
	assert_int_equal(env_list("PIZZA_HISTORY_URLS", hbuf, sizeof(hbuf), hist, 3), 2);
	snprintf(v, sizeof(v), "http://127.0.0.1:%d/", t.hist);
	assert_string_equal(hist[0], v);
	assert_string_not_equal(hist[0], hist[1]);
	assert_int_equal(env_list("PIZZA_ORDER_URLS", obuf, sizeof(obuf), front, 3), 2);
	snprintf(v, sizeof(v), "http://127.0.0.1:%d/", t.http);
	assert_string_equal(front[0], v);
	assert_string_not_equal(front[0], front[1]);
	assert_int_equal(env_get("PIZZA_HTTP_URLS", v, sizeof(v)), 0);
	for (int i = 0; i < 2; i++) {
		assert_non_null(strstr(v, hist[i]));
		assert_non_null(strstr(v, front[i]));
	}
	assert_true(env_long(notifier_ports[0]) > 0);
	assert_true(env_long(notifier_ports[1]) > 0);
	assert_int_not_equal(env_long(notifier_ports[0]), env_long(notifier_ports[1]));
	assert_int_equal(env_get("PIZZA_STORE", v, sizeof(v)), 0);
	assert_string_equal(v, "postgres");
	assert_int_equal(env_get("PIZZA_PG_URL", v, sizeof(v)), 0);
	assert_non_null(strstr(v, "postgresql://pizza@127.0.0.1:"));
	snprintf(path, sizeof(path), "%s/secrets/pg.pass", t.run);
	assert_non_null(secret = file_read_small(path, 4096));
	assert_true(strlen(secret) >= 16);
	if (strstr(v, secret) != NULL)
		fail_msg("PIZZA_PG_URL carries the password: %s", v);
	free(secret);
	/* the start says what runs how many times */
	log = slurp(t.log);
	assert_non_null(strstr(log, "order-service, order-history and notifier on a private PostgreSQL at"));
	assert_non_null(strstr(log, "services: 2 instances each of order-service, order-history and notifier, and 2 executors"));
	assert_null(strstr(log, "PostgreSQL not yet"));
	free(log);
	for (int i = 0; i < NPG; i++) {
		pids[i] = pid_of(pg_procs[i]);
		if (!alive(pids[i]))
			fail_msg("%s/pids/%s.pid does not name a live process", t.run, pg_procs[i]);
	}
	if (getuid() == 0 && uid_of(pids[1]) == 0)
		fail_msg("PostgreSQL runs as root");
	/* every instance on PostgreSQL, each under its own client id (its name: the broker's session) */
	for (size_t i = 0; i < sizeof(with_pg) / sizeof(with_pg[0]); i++) {
		pid_t p = pid_of(with_pg[i]);
		assert_int_equal(arg_of(p, "--db", v, sizeof(v)), 0);
		if (strncmp(v, "postgresql://", 13) != 0)
			fail_msg("%s's --db is %s, not PostgreSQL", with_pg[i], v);
		assert_int_equal(arg_of(p, "--client-id", v, sizeof(v)), 0);
		assert_string_equal(v, with_pg[i]);
	}
	/* order-service-2 serves the second URL; both read from either history, the first first */
	assert_int_equal(arg_of(pid_of("order-service-2"), "--http-port", v, sizeof(v)), 0);
	{
		char want[200];
		snprintf(want, sizeof(want), "http://127.0.0.1:%.16s/", v);
		assert_string_equal(front[1], want);
		snprintf(want, sizeof(want), "%.*s,%.*s", (int)strlen(hist[0]) - 1, hist[0], (int)strlen(hist[1]) - 1, hist[1]);
		for (int i = 0; i < 2; i++) {
			assert_int_equal(arg_of(pid_of(i == 0 ? "order-service-1" : "order-service-2"), "--history-url", v, sizeof(v)), 0);
			assert_string_equal(v, want);
		}
	}

	/* an order placed over HTTP on the second order-service completes, with one pickup alert */
	assert_true((alerts0 = notifiers_counter(notifier_ports, 2, "\npizza_alerts_sent_total ")) >= 0);
	{
		char url[200];
		char *const order[] = { "phone-sim", "order", "--http", "--http-url", url, "--user", "alice", "--item",
			"margherita", "--timeout", "30", NULL };

		snprintf(url, sizeof(url), "%.*s", (int)strlen(front[1]) - 1, front[1]);
		snprintf(out_file, sizeof(out_file), "%s/order-pg.out", t.dir);
		if (h_collect(spawn_phone(order, h_password(&t.s, "alice"), out_file), out_file, &out, 30000) != 0)
			fail_msg("phone-sim order --http on %s did not complete:\n%s", url, out);
	}
	assert_non_null(strstr(out, "(HTTP 202 Accepted)"));
	assert_int_equal(count(out, "  PICKUP  "), 1);
	assert_int_equal(sscanf(strstr(out, "  order "), "  order %64s", id), 1);
	free(out);

	/* each history instance answers it, with the same body */
	snprintf(path, sizeof(path), "%s/secrets/history.secret", t.run);
	assert_non_null(secret = file_read_small(path, 4096));
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", secret);
	free(secret);
	for (int i = 0; i < 2; i++)
		if ((body[i] = history_ready(hist[i], auth, id, 10000)) == NULL)
			fail_msg("%s does not answer order %s as ready within 10 s", hist[i], id);
	assert_string_equal(body[0], body[1]);
	free(body[0]);
	free(body[1]);
	/* both notifiers have seen its ready by now: one alert on the broker, one sent between them */
	assert_int_equal(h_count_events(&t.s, id, EVENT_PICKUP_ALERT, 0), 1);
	assert_int_equal(notifiers_counter(notifier_ports, 2, "\npizza_alerts_sent_total ") - alerts0, 1);

	/* Ctrl-C: everything stops, every instance and PostgreSQL too */
	sigint_stops(pg_procs, pids, NPG);
	assert_no_sanitizer_findings();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_run_env_and_pids),
		cmocka_unit_test(test_listeners_loopback),
		cmocka_unit_test(test_executor_killed_is_restarted),
		cmocka_unit_test(test_broker_killed_is_restarted),
		cmocka_unit_test(test_sigint_stops_everything),
	};
	const struct CMUnitTest pg_tests[] = {
		cmocka_unit_test(test_postgres_instances),
	};
	int rc;

	cmocka_set_test_filter(getenv("PIZZA_TEST_FILTER"));
	rc = cmocka_run_group_tests_name("make run's stack", tests, setup, teardown);
	rc += cmocka_run_group_tests_name("make run STORE=postgres INSTANCES=2", pg_tests, setup_pg, teardown);
	return rc;
}

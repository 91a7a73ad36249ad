/*
 * What users and operators run into: the broker going away and coming back,
 * accounts and topic isolation, and the command line's errors.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <math.h>

#include <cmocka.h>

#include <jansson.h>

#include "harness.h"
#include "util.h"

static struct stack st;
static int notifier_metrics, exec_metrics;

static int
setup(void **state)
{
	char np[16], ep[16];

	(void)state;
	if (h_stack_start(&st, "operations") != 0 || h_observer(&st) != 0)
		return -1;
	notifier_metrics = h_free_port();
	exec_metrics = h_free_port();
	snprintf(np, sizeof(np), "%d", notifier_metrics);
	snprintf(ep, sizeof(ep), "%d", exec_metrics);
	if (h_service(&st, "order-service", "order-service", NULL) < 0 ||
	    h_service(&st, "order-history", "order-history", NULL) < 0 ||
	    h_service(&st, "notifier", "notifier", "--metrics-port", np, NULL) < 0 ||
	    h_service(&st, "exec-1", "order-executor", "--id", "exec-1", "--stage-ms", "20", "--metrics-port", ep, NULL) < 0 ||
	    h_service(&st, "exec-2", "order-executor", "--id", "exec-2", "--stage-ms", "20", NULL) < 0)
		return -1;
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	int rc = h_stack_stop(&st);
	return rc;
}

static int
run(const char *password, char **out, char *const argv[])
{
	return h_run(&st, password, out, argv);
}

/* Every service reconnects and resubscribes by itself after a broker restart. */
static void
test_services_reconnect_after_broker_restart(void **state)
{
	char *out = NULL;
	char *const order[] = { "phone-sim", "order", "--user", "bob", "--item", "funghi", "--timeout", "30", NULL };

	static const char *const names[] = { "order-service", "order-history", "notifier", "exec-1", "exec-2" };

	(void)state;
	assert_int_equal(h_broker_restart(&st), 0);
	/* each service notices, backs off, reconnects and resubscribes on its own */
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		assert_int_equal(h_wait_log(&st, names[i], "msg=\"connection to broker lost; reconnecting\"", 1, 5000), 0);
		assert_int_equal(h_wait_log(&st, names[i], "msg=\"connected to broker\"", 2, 30000), 0);
	}
	h_sleep(200); /* their SUBSCRIBEs are on the wire */
	assert_int_equal(run(h_password(&st, "bob"), &out, order), 0);
	assert_non_null(strstr(out, "PICKUP"));
	free(out);
}

/*
 * A phone reads only its own topics: bob subscribing to alice's subtree,
 * and to the services' topics that carry her order, gets nothing of hers.
 */
static void
test_users_are_isolated(void **state)
{
	char *out = NULL, corr[] = "iso-1", order_id[NAME_MAX_LEN + 1];
	char *const spy[] = { "phone-sim", "watch", "--user", "bob", "--json", "--for", "3", NULL };
	pid_t pid;
	int fds[2];

	(void)state;
	/* mosquitto_sub as bob on alice's topics, while alice orders */
	assert_int_equal(pipe(fds), 0);
	if ((pid = fork()) == 0) {
		char port[16];
		snprintf(port, sizeof(port), "%d", st.port);
		dup2(fds[1], 1);
		close(fds[0]);
		if (freopen("/dev/null", "w", stderr) == NULL) /* its "Timed out" at -W is expected */
			_exit(127);
		execlp("mosquitto_sub", "mosquitto_sub", "-p", port, "-u", "bob", "-P", h_password(&st, "bob"), "-t",
		    "pizza/users/alice/#", "-t", "pizza/orders/placed", "-t", "pizza/orders/accepted", "-t",
		    "pizza/orders/ready", "-W", "4", "-v", (char *)NULL);
		_exit(127);
	}
	close(fds[1]);
	h_sleep(300);
	assert_int_equal(h_place(&st, "alice", "margherita", 1, corr), 0);
	assert_int_equal(h_wait_reply(&st, corr, order_id, sizeof(order_id), 5000), 0);
	assert_int_equal(h_wait_events(&st, order_id, EVENT_PICKUP_ALERT, 0, 1, 10000), 1);
	{
		char buf[4096];
		ssize_t n, total = 0;
		while ((n = read(fds[0], buf + total, sizeof(buf) - 1 - (size_t)total)) > 0)
			total += n;
		buf[total] = '\0';
		close(fds[0]);
		assert_null(strstr(buf, order_id));
		assert_int_equal(total, 0);
	}
	/* bob's own phone sees none of alice's order either */
	assert_int_equal(run(h_password(&st, "bob"), &out, spy), 0);
	assert_null(strstr(out, order_id));
	free(out);
}

/* Alice may not publish events or place orders in bob's name. */
static void
test_phone_cannot_publish_outside_its_intake(void **state)
{
	char port[16];
	char fake[] = "{\"type\":\"OrderPlaced\",\"event_id\":\"FAKE1\",\"order_id\":\"FAKEORDER1\",\"user_id\":\"alice\","
		      "\"at\":\"2026-01-01T00:00:00.000Z\",\"items\":[{\"sku\":\"margherita\",\"qty\":1}]}";
	const char *topics[] = { "pizza/orders/placed", "pizza/users/bob/orders/new", "pizza/users/alice/alerts",
		"pizza/users/alice/orders/FAKEORDER1/status", "pizza/orders/accepted", "pizza/orders/ready",
		"pizza/deadletter" };

	(void)state;
	snprintf(port, sizeof(port), "%d", st.port);
	for (size_t i = 0; i < sizeof(topics) / sizeof(topics[0]); i++) {
		char cmd[1024];
		snprintf(cmd, sizeof(cmd), "mosquitto_pub -V mqttv5 -p %s -u alice -P '%s' -q 1 -t '%s' -m '%s' 2>/dev/null",
		    port, h_password(&st, "alice"), topics[i], fake);
		/* mosquitto_pub exits 0 either way: the broker drops a denied publish after its PUBACK */
		assert_int_equal(system(cmd), 0);
	}
	/* the allowed control: the same tool and account do reach alice's own intake */
	{
		char cmd[1024];
		snprintf(cmd, sizeof(cmd), "mosquitto_pub -V mqttv5 -p %s -u alice -P '%s' -q 1 -t pizza/users/alice/orders/new -m 'control'",
		    port, h_password(&st, "alice"));
		assert_int_equal(system(cmd), 0);
	}
	h_sleep(500);
	assert_int_equal(h_count_topic(&st, "pizza/users/alice/orders/new") >= 1, 1);
	for (size_t i = 0; i < sizeof(topics) / sizeof(topics[0]); i++) {
		pthread_mutex_lock(&st.lock);
		for (size_t k = 0; k < st.nmsgs; k++)
			assert_null(strstr(st.msgs[k].payload, "FAKEORDER1"));
		pthread_mutex_unlock(&st.lock);
	}
	assert_int_equal(h_count_events(&st, "FAKEORDER1", 0, 0), 0);
	assert_int_equal(h_sql_int(&st, "order-history", "SELECT count(*) FROM orders WHERE order_id = 'FAKEORDER1'", NULL), 0);
}

static void
test_anonymous_and_wrong_password_refused(void **state)
{
	char *out = NULL, port[16], cmd[512];
	char *const wrong[] = { "phone-sim", "order", "--user", "alice", "--item", "margherita", NULL };

	(void)state;
	snprintf(port, sizeof(port), "%d", st.port);
	snprintf(cmd, sizeof(cmd), "mosquitto_sub -p %s -t 'pizza/#' -W 2 -C 1 2>/dev/null", port);
	assert_int_not_equal(system(cmd), 0);
	/* phone-sim says which it is: bad credentials, not "unreachable" */
	assert_int_equal(run("not-alices-password", &out, wrong), 1);
	assert_non_null(strstr(out, "refused the login for 'alice': wrong user name or password"));
	free(out);
}

/* Command-line mistakes: one-line error, non-zero exit, nothing hangs. */
static void
test_cli_errors(void **state)
{
	char *out = NULL;
	char *const no_user[] = { "phone-sim", "order", "--item", "margherita", NULL };
	char *const bad_item[] = { "phone-sim", "order", "--user", "alice", "--item", "sushi", NULL };
	char *const bad_qty[] = { "phone-sim", "order", "--user", "alice", "--item", "margherita", "--qty", "0", NULL };
	char *const bad_cmd[] = { "phone-sim", "fly", NULL };
	char *const help[] = { "phone-sim", "order", "--help", NULL };
	char *const svc_bad[] = { "order-executor", "--stage-ms", "soon", NULL };
	char *const bad_level[] = { "notifier", "--log-level", "loud", NULL };

	(void)state;
	assert_int_equal(run("x", &out, no_user), 2);
	assert_string_equal(out, "phone-sim order: --user is required (see --help)\n");
	free(out);
	assert_int_equal(run("x", &out, bad_item), 2);
	free(out);
	assert_int_equal(run("x", &out, bad_qty), 2);
	free(out);
	assert_int_equal(run("x", &out, bad_cmd), 2);
	free(out);
	assert_int_equal(run("x", &out, help), 0);
	assert_non_null(strstr(out, "--item"));
	free(out);
	assert_int_equal(run(NULL, &out, svc_bad), 2);
	free(out);
	assert_int_equal(run(NULL, &out, bad_level), 2);
	assert_string_equal(out, "notifier: --log-level: 'loud' is not one of error, warn, info, debug\n");
	free(out);
}

/* Writes text to a new temporary file; returns its path (static buffer per slot). */
static const char *
temp_file(int slot, const char *text)
{
	static char paths[4][64];
	FILE *f;
	int fd;

	snprintf(paths[slot], sizeof(paths[slot]), "/tmp/pizza-load-test.XXXXXX");
	fd = mkstemp(paths[slot]);
	assert_true(fd >= 0);
	f = fdopen(fd, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	return paths[slot];
}

/*
 * phone-sim load, small and real: three phones order over MQTT and every
 * order reaches its alert; its mistakes are one-line errors with exit 2, and
 * phones that cannot log in make it stop with exit 1 instead of measuring.
 */
static void
test_load(void **state)
{
	char accounts[512], wrong[128], out_prefix[64], json_path[80], svg_path[80], *out = NULL, *end;
	const char *good, *bad_line, *bad_pw;
	json_t *j;

	(void)state;
	accounts[0] = '\0';
	for (int i = 0; i < 3; i++) {
		const char *user = (const char *[]){ "alice", "bob", "carol" }[i];
		/* one call per line: h_password() answers in a static buffer */
		snprintf(accounts + strlen(accounts), sizeof(accounts) - strlen(accounts), "%s:%s\n", user,
		    h_password(&st, user));
	}
	good = temp_file(0, accounts);
	bad_line = temp_file(1, "alice\n");
	snprintf(wrong, sizeof(wrong), "alice:not-%s\n", h_password(&st, "alice"));
	bad_pw = temp_file(2, wrong);
	snprintf(out_prefix, sizeof(out_prefix), "/tmp/pizza-load-out.%d", (int)getpid());
	snprintf(json_path, sizeof(json_path), "%s.json", out_prefix);
	snprintf(svg_path, sizeof(svg_path), "%s.svg", out_prefix);

	{
		char *const argv[] = { "phone-sim", "load", "--accounts", (char *)good, "--orders", "9", "--json", "--out",
			out_prefix, NULL };
		int rc = run(NULL, &out, argv);
		if (rc != 0)
			fprintf(stderr, "phone-sim load said:\n%s", out); /* why, in the test's log */
		assert_int_equal(rc, 0);
		/* the last line is the result */
		end = out + strlen(out);
		while (end > out && end[-1] == '\n')
			*--end = '\0';
		end = strrchr(out, '\n') != NULL ? strrchr(out, '\n') + 1 : out;
		j = json_loads(end, 0, NULL);
		assert_non_null(j);
		assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "orders"), "placed")), 9);
		assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "orders"), "completed")), 9);
		assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "orders"), "lost")), 0);
		assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "connect"), "connected")), 3);
		assert_true(json_real_value(json_object_get(json_object_get(json_object_get(j, "latency_ms"),
		    "accepted_to_alert"), "p50")) > 0);
		json_decref(j);
		free(out);
		assert_int_equal(access(json_path, R_OK), 0);
		assert_int_equal(access(svg_path, R_OK), 0);
	}
	{
		char *const argv[] = { "phone-sim", "load", "--phones", "3", NULL };
		assert_int_equal(run(NULL, &out, argv), 2);
		assert_string_equal(out, "phone-sim load: --accounts FILE (user:password lines) is required\n");
		free(out);
	}
	{
		char *const argv[] = { "phone-sim", "load", "--accounts", (char *)bad_line, NULL };
		assert_int_equal(run(NULL, &out, argv), 2);
		assert_non_null(strstr(out, ":1: expected user:password"));
		free(out);
	}
	{
		char *const argv[] = { "phone-sim", "load", "--accounts", (char *)good, "--phones", "4", NULL };
		assert_int_equal(run(NULL, &out, argv), 2);
		assert_non_null(strstr(out, "--phones 4 but"));
		free(out);
	}
	{
		char *const argv[] = { "phone-sim", "load", "--accounts", (char *)good, "--duration", "5", NULL };
		assert_int_equal(run(NULL, &out, argv), 2);
		assert_string_equal(out, "phone-sim load: --duration needs --rate or --orders\n");
		free(out);
	}
	{
		char *const argv[] = { "phone-sim", "load", "--accounts", (char *)good, "--item", "sushi", NULL };
		assert_int_equal(run(NULL, &out, argv), 2);
		assert_non_null(strstr(out, "'sushi' is not on the menu"));
		free(out);
	}
	{
		char *const argv[] = { "phone-sim", "load", "--accounts", (char *)bad_pw, "--out", out_prefix, NULL };
		assert_int_equal(run(NULL, &out, argv), 1);
		assert_non_null(strstr(out, "refused the login for 'alice'"));
		assert_non_null(strstr(out, "1 of 1 phones could not connect"));
		free(out);
	}
	unlink(good);
	unlink(bad_line);
	unlink(bad_pw);
	unlink(json_path);
	unlink(svg_path);
}

/* A service started with no broker to reach says so and exits non-zero instead of hanging. */
static void
test_service_without_broker_exits(void **state)
{
	char *out = NULL;
	char *const argv[] = { "order-executor", "--mqtt-url", "tcp://127.0.0.1:1", "--connect-timeout", "2000", NULL };
	char *const phone[] = { "phone-sim", "watch", "--user", "alice", "--mqtt-url", "tcp://127.0.0.1:1", NULL };

	(void)state;
	assert_int_equal(run(NULL, &out, argv), 1);
	assert_non_null(strstr(out, "cannot reach the broker at tcp://127.0.0.1:1"));
	free(out);
	assert_int_equal(run("x", &out, phone), 1);
	assert_non_null(strstr(out, "cannot reach the broker at tcp://127.0.0.1:1"));
	free(out);
}

/* A metric's value in a Prometheus text page, or -1 when the series is missing. */
static double
metric_value(const char *page, const char *series)
{
	const char *p = page;
	size_t n = strlen(series);

	while ((p = strstr(p, series)) != NULL) {
		if ((p == page || p[-1] == '\n') && p[n] == ' ')
			return atof(p + n + 1);
		p += n;
	}
	return -1;
}

/*
 * The text format's grouping rule: every sample of a family comes after its
 * TYPE line and before the next family's, and no family appears twice (a
 * family split in two is read twice by the reference parser, the second
 * time without its HELP and TYPE).  Fails the test naming the line.
 */
static void
assert_grouped(const char *page)
{
	char families[256][96], current[96] = "", name[96];
	int nfam = 0;

	for (const char *line = page; *line != '\0'; line = strchr(line, '\n') != NULL ? strchr(line, '\n') + 1 : "") {
		size_t len = strcspn(line, " {\n");

		if (strncmp(line, "# TYPE ", 7) == 0) {
			snprintf(name, sizeof(name), "%.*s", (int)strcspn(line + 7, " \n"), line + 7);
			for (int i = 0; i < nfam; i++)
				if (strcmp(families[i], name) == 0)
					fail_msg("family %s has a second TYPE line: it is split", name);
			assert_true(nfam < 256);
			snprintf(families[nfam++], sizeof(families[0]), "%s", name);
			snprintf(current, sizeof(current), "%s", name);
			continue;
		}
		if (line[0] == '#' || line[0] == '\n' || line[0] == '\0')
			continue;
		/* a sample: its name is the family's, or the family's plus _bucket, _sum or _count */
		snprintf(name, sizeof(name), "%.*s", (int)len, line);
		if (current[0] == '\0' || strncmp(name, current, strlen(current)) != 0 ||
		    (name[strlen(current)] != '\0' && strcmp(name + strlen(current), "_bucket") != 0 &&
			strcmp(name + strlen(current), "_sum") != 0 && strcmp(name + strlen(current), "_count") != 0))
			fail_msg("sample '%.*s' is not in its family's group (after # TYPE %s)", (int)strcspn(line, "\n"),
			    line, current[0] != '\0' ? current : "-");
	}
}

/*
 * Runs tests/integration/metrics_check.py on path: the reference parser
 * (python3-prometheus-client), its OpenMetrics parser and promtool's lint.
 * Returns its exit status with what it said (kept in the stack's folder as
 * name.check) in a new string *out.
 */
static int
metrics_check(const char *path, const char *name, char **out)
{
	char cmd[1400], said[600];
	const char *root = getenv("PIZZA_ROOT") != NULL ? getenv("PIZZA_ROOT") : ".";
	int rc;

	snprintf(said, sizeof(said), "%s/%s.check", st.dir, name);
	snprintf(cmd, sizeof(cmd), "timeout 60 %s/tests/integration/metrics_check.py '%s' > '%s' 2>&1", root, path, said);
	rc = system(cmd);
	rc = rc == -1 ? -1 : WIFEXITED(rc) ? WEXITSTATUS(rc) : 128;
	if ((*out = file_read_small(said, 1 << 20)) == NULL)
		*out = strdup("");
	return rc;
}

/*
 * The checker fails on what the tools misread (the old interleaved page
 * among them: the split family that promtool lets through) and passes a
 * good page: fixtures in tests/integration/metrics/.
 */
static void
assert_checker_can_fail(void)
{
	static const struct {
		const char *file;
		int rc;
		const char *said[3];
	} cases[] = {
		{ "good.prom", 0, { "1 page(s) pass", NULL } },
		{ "interleaved.prom", 1,
		    { "grouping: line 7: sample 'pizza_orders_accepted_total{via=\"http\"} 1' is not in its family's group",
			"reference: samples of pizza_orders_accepted_total are in 2 families",
			"openmetrics: refused: Clashing name: pizza_orders_accepted_total" } },
		{ "sample_before_type.prom", 1, { "reference: family pizza_outbox_backlog appears 2 times", NULL } },
		{ "no_help.prom", 1, { "reference: family pizza_outbox_backlog has no HELP", "promtool: exit 3", NULL } },
		{ "lint.prom", 1, { "promtool: exit 3: pizza_orders_accepted counter metrics should have \"_total\" suffix", NULL } },
	};
	const char *root = getenv("PIZZA_ROOT") != NULL ? getenv("PIZZA_ROOT") : ".";

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char path[600], *out = NULL;
		int rc;

		snprintf(path, sizeof(path), "%s/tests/integration/metrics/%s", root, cases[i].file);
		rc = metrics_check(path, cases[i].file, &out);
		if (rc != cases[i].rc)
			fail_msg("metrics_check.py %s exited %d, not %d:\n%s", cases[i].file, rc, cases[i].rc, out);
		for (int k = 0; k < 3 && cases[i].said[k] != NULL; k++)
			if (strstr(out, cases[i].said[k]) == NULL)
				fail_msg("metrics_check.py %s did not say '%s':\n%s", cases[i].file, cases[i].said[k], out);
		/* promtool alone lets the split family through: why the parsers are there */
		if (strcmp(cases[i].file, "interleaved.prom") == 0)
			assert_null(strstr(out, "promtool:"));
		free(out);
	}
}

/* A service's /metrics page, checked by every tool: the line rules, the parsers, promtool.  A new string. */
static char *
scrape(int port, const char *name)
{
	char url[128], path[600], *page = NULL, *out = NULL;
	FILE *f;

	snprintf(url, sizeof(url), "http://127.0.0.1:%d/metrics", port);
	assert_int_equal(h_http_get(url, &page), 200);
	assert_grouped(page);
	snprintf(path, sizeof(path), "%s/%s.prom", st.dir, name);
	assert_non_null(f = fopen(path, "w"));
	fputs(page, f);
	fclose(f);
	if (metrics_check(path, name, &out) != 0)
		fail_msg("%s's /metrics fails the checks:\n%s", name, out);
	free(out);
	/* what every service has: the process, the build, the broker connection */
	assert_true(metric_value(page, "process_resident_memory_bytes") > 1e6);
	assert_true(metric_value(page, "process_virtual_memory_bytes") > 1e6);
	assert_true(metric_value(page, "process_cpu_seconds_total") >= 0);
	assert_true(metric_value(page, "process_open_fds") >= 3);
	assert_true(metric_value(page, "process_max_fds") >= metric_value(page, "process_open_fds"));
	assert_true(fabs(metric_value(page, "process_start_time_seconds") - (double)now_ms() / 1000) < 3600);
	{
		char build[160];
		snprintf(build, sizeof(build), "pizza_build_info{service=\"%s\",version=\"%s\"}",
		    strncmp(name, "exec-", 5) == 0 ? "order-executor" : name, PIZZA_VERSION);
		assert_true(metric_value(page, build) == 1);
	}
	return page;
}

static void
test_metrics_and_health(void **state)
{
	char url[160], *page = NULL, order_id[NAME_MAX_LEN + 1], auth[600];
	const char *headers[] = { auth, NULL };
	struct h_reply r;
	double before;

	(void)state;
	assert_checker_can_fail();
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/metrics", st.http_port);
	assert_int_equal(h_http_get(url, &page), 200);
	before = metric_value(page, "pizza_orders_accepted_total{via=\"mqtt\"}");
	assert_true(before >= 0);
	free(page);
	assert_int_equal(h_place(&st, "carol", "funghi", 1, "metrics-1"), 0);
	assert_int_equal(h_wait_reply(&st, "metrics-1", order_id, sizeof(order_id), 5000), 0);
	assert_int_equal(h_wait_events(&st, order_id, EVENT_PICKUP_ALERT, 0, 1, 10000), 1);
	/* carol reads her order over HTTP (order-service asks order-history), and a path nobody serves */
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", h_token(&st, "carol"));
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/orders/%s", st.http_port, order_id);
	assert_int_equal(h_http("GET", url, headers, NULL, &r), 200);
	h_reply_free(&r);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/no/such/%s", st.http_port, order_id);
	assert_int_equal(h_http("GET", url, NULL, NULL, &r), 404);
	h_reply_free(&r);
	h_sleep(200);

	/* order-service: the order counted, its latency observed, the requests by route template */
	page = scrape(st.http_port, "order-service");
	assert_true(metric_value(page, "pizza_orders_accepted_total{via=\"mqtt\"}") == before + 1);
	assert_true(metric_value(page, "pizza_orders_completed_total") >= 1);
	assert_true(metric_value(page, "pizza_order_ready_seconds_count") >= 1);
	assert_true(metric_value(page, "pizza_order_ready_seconds_bucket{le=\"+Inf\"}") >= 1);
	assert_non_null(strstr(page, "# TYPE pizza_order_ready_seconds histogram"));
	assert_non_null(strstr(page, "# TYPE pizza_orders_accepted_total counter"));
	assert_true(metric_value(page, "pizza_outbox_backlog") >= 0);
	assert_true(metric_value(page, "pizza_broker_connected") == 1);
	assert_true(metric_value(page, "pizza_http_requests_total{route=\"/v1/orders/{id}\",code=\"200\"}") == 1);
	assert_true(metric_value(page, "pizza_http_requests_total{route=\"other\",code=\"404\"}") == 1);
	assert_true(metric_value(page, "pizza_http_request_duration_seconds_count{route=\"/v1/orders/{id}\",code=\"200\"}") == 1);
	assert_true(metric_value(page,
			"pizza_http_request_duration_seconds_bucket{route=\"/v1/orders/{id}\",code=\"200\",le=\"+Inf\"}") == 1);
	assert_true(metric_value(page, "pizza_http_requests_total{route=\"/metrics\",code=\"200\"}") >= 1);
	assert_null(strstr(page, order_id)); /* a raw path never becomes a label */
	free(page);
	/* order-history: what it stored, the read order-service forwarded */
	page = scrape(st.history_port, "order-history");
	assert_true(metric_value(page, "pizza_events_consumed_total{topic=\"pizza/orders/placed\"}") >= 1);
	assert_true(metric_value(page, "pizza_history_events_stored_total{type=\"OrderPlaced\"}") >= 1);
	assert_true(metric_value(page, "pizza_history_events_stored_total{type=\"OrderStatus\"}") >= 5);
	assert_true(metric_value(page, "pizza_history_reads_total{query=\"order\",result=\"ok\"}") == 1);
	assert_true(metric_value(page, "pizza_history_store_errors_total{op=\"write\"}") == 0);
	assert_true(metric_value(page, "pizza_http_requests_total{route=\"/v1/orders/{id}\",code=\"200\"}") == 1);
	assert_null(strstr(page, order_id));
	free(page);
	/* notifier, executor (a server with /metrics and /healthz only) */
	page = scrape(notifier_metrics, "notifier");
	assert_true(metric_value(page, "pizza_alerts_sent_total") >= 1);
	assert_non_null(strstr(page, "# HELP pizza_alerts_sent_total Pickup alerts committed for sending"));
	free(page);
	page = scrape(exec_metrics, "exec-1");
	assert_true(metric_value(page, "pizza_stage_duration_seconds_count{stage=\"oven\"}") >= 0);
	assert_true(metric_value(page, "pizza_mqtt_reconnects_total") >= 0);
	free(page);

	/* healthy while connected; 503 and pizza_broker_connected 0 while the broker is away; healthy again after */
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/healthz", notifier_metrics);
	assert_int_equal(h_http_get(url, &page), 200);
	assert_non_null(strstr(page, "\"store\":\"writable\""));
	free(page);
	h_broker_stop(&st);
	assert_int_equal(h_wait_log(&st, "notifier", "msg=\"connection to broker lost; reconnecting\"", 1, 5000), 0);
	assert_int_equal(h_http_get(url, &page), 503);
	assert_non_null(strstr(page, "\"mqtt\":\"disconnected\""));
	free(page);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/metrics", notifier_metrics);
	assert_int_equal(h_http_get(url, &page), 200);
	assert_true(metric_value(page, "pizza_broker_connected") == 0);
	free(page);
	assert_int_equal(h_broker_start(&st), 0);
	assert_int_equal(h_wait_log(&st, "notifier", "msg=\"connected to broker\"", 2, 20000), 0);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/healthz", notifier_metrics);
	assert_int_equal(h_http_get(url, &page), 200);
	free(page);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/metrics", notifier_metrics);
	assert_int_equal(h_http_get(url, &page), 200);
	assert_true(metric_value(page, "pizza_broker_connected") == 1);
	free(page);
}

/* ---- an upgrade: subscriptions an older version left in its persistent session -------------- */

static struct stack up;

static int
upgrade_setup(void **state)
{
	char conf[sizeof(up.dir) + 20];
	FILE *f;

	(void)state;
	if (h_stack_start(&up, "upgrade") != 0)
		return -1;
	/* the broker logs each SUBSCRIBE and UNSUBSCRIBE ("<client id> [qos] <filter>"): when the notifier's acted */
	snprintf(conf, sizeof(conf), "%s/mosquitto.conf", up.dir);
	if ((f = fopen(conf, "a")) == NULL)
		return -1;
	fputs("log_type subscribe\nlog_type unsubscribe\n", f);
	fclose(f);
	if (h_broker_restart(&up) != 0 || h_observer(&up) != 0)
		return -1;
	return 0;
}

static int
upgrade_teardown(void **state)
{
	(void)state;
	return h_stack_stop(&up);
}

static void
ignore_message(void *arg, const struct mq_message *m)
{
	(void)arg;
	(void)m;
}

/*
 * Connects as the notifier's account with client_id, subscribed (QoS 1) to
 * filters as an older notifier was, in a persistent session (Clean Start
 * off, an hour's expiry) when persistent, then disconnects.  Returns 0, or
 * -1 with the reason in err when the broker refused (the subscription).
 */
static int
notifier_session(const char *client_id, int persistent, const char *const *filters, size_t n, char *err, size_t errlen)
{
	struct mq_config cfg;
	char url[64];
	struct mq *mq;
	int rc = -1;

	snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", up.port);
	memset(&cfg, 0, sizeof(cfg));
	cfg.url = url;
	cfg.client_id = client_id;
	cfg.username = "notifier";
	cfg.password = h_password(&up, "notifier");
	cfg.clean_start = !persistent;
	cfg.session_expiry_s = persistent ? 3600 : 0;
	if ((mq = mq_new(&cfg, ignore_message, NULL)) == NULL) {
		snprintf(err, errlen, "mq_new failed");
		return -1;
	}
	for (size_t i = 0; i < n; i++)
		if (mq_subscribe(mq, filters[i], 1, 0) != 0) {
			snprintf(err, errlen, "cannot declare %s", filters[i]);
			goto out;
		}
	rc = mq_connect(mq, 5000, err, errlen);
	mq_disconnect(mq, 1000);
out:
	mq_free(mq);
	return rc;
}

/* An executor's prep status for alice's order_id (its topic into topic), and the OrderPlaced of that order. */
static void
order_events(const char *order_id, char *topic, size_t tn, char *status, size_t sn, char *placed, size_t pn)
{
	assert_int_equal(topic_status(topic, tn, "alice", order_id), 0);
	snprintf(status, sn,
	    "{\"type\":\"OrderStatus\",\"event_id\":\"%.20s-prep\",\"order_id\":\"%s\",\"user_id\":\"alice\","
	    "\"at\":\"2026-11-23T12:00:01.000Z\",\"status\":\"prep\",\"seq\":2,\"worker\":\"exec-old\"}",
	    order_id, order_id);
	snprintf(placed, pn,
	    "{\"type\":\"OrderPlaced\",\"event_id\":\"%.20s-placed\",\"order_id\":\"%s\",\"user_id\":\"alice\","
	    "\"at\":\"2026-11-23T12:00:00.000Z\",\"items\":[{\"sku\":\"funghi\",\"qty\":1}]}",
	    order_id, order_id);
}

/* The notifier's /metrics page, a new string. */
static char *
upgrade_metrics(int port)
{
	char url[128], *page = NULL;

	snprintf(url, sizeof(url), "http://127.0.0.1:%d/metrics", port);
	assert_int_equal(h_http_get(url, &page), 200);
	return page;
}

/*
 * Upgrading the notifier over the persistent session of an older one,
 * which read every OrderPlaced and every status (before OrderReady).  What
 * that session collected while no notifier ran is handled as the older
 * version did: an order that became ready then gets its alert, naming the
 * items its OrderPlaced listed; nothing is dead-lettered as "no handler
 * for this topic".  The new notifier unsubscribes from both at its
 * connect, so the broker stops delivering to it what nobody acts on.  The
 * policy still grants those reads for the upgrade (broker-config/acl).
 */
static void
test_notifier_upgrade_keeps_alerts(void **state)
{
	static const char *const retired[] = { TOPIC_ALL_STATUS, TOPIC_PLACED };
	static const double consumed[] = { 2, 1 }; /* prep and ready; the OrderPlaced */
	const size_t nretired = sizeof(retired) / sizeof(retired[0]);
	char err[300], np[16], topic[TOPIC_MAX], status[600], placed[600], series[200], needle[200];
	char *page;
	int port = h_free_port();
	const char *ready_a =
	    "{\"type\":\"OrderStatus\",\"event_id\":\"01UPGRADEORDER0000-ready\",\"order_id\":\"01UPGRADEORDER00000000000A\","
	    "\"user_id\":\"alice\",\"at\":\"2026-11-23T12:00:04.000Z\",\"status\":\"ready\",\"seq\":5,\"worker\":\"exec-old\"}";
	const char *ready_b =
	    "{\"type\":\"OrderReady\",\"event_id\":\"01UPGRADEREADY00000000000B\",\"order_id\":\"01UPGRADEORDER00000000000B\","
	    "\"user_id\":\"alice\",\"at\":\"2026-11-23T12:00:05.000Z\",\"status\":\"ready\",\"seq\":5,\"worker\":\"exec-new\","
	    "\"items\":[{\"sku\":\"margherita\",\"qty\":2}]}";
	struct event alert;

	(void)state;
	/* the older notifier's session: its client id, both subscriptions, left on the broker */
	if (notifier_session("notifier", 1, retired, nretired, err, sizeof(err)) != 0)
		fail_msg("the older notifier's session: %s", err);
	/* while no notifier is connected, an order is placed and becomes ready: the older executors' statuses */
	order_events("01UPGRADEORDER00000000000A", topic, sizeof(topic), status, sizeof(status), placed,
	    sizeof(placed));
	assert_int_equal(h_publish(&up, "order-service", TOPIC_PLACED, placed, strlen(placed)), 0);
	assert_int_equal(h_publish(&up, "order-executor", topic, status, strlen(status)), 0);
	assert_int_equal(h_publish(&up, "order-executor", topic, ready_a, strlen(ready_a)), 0);

	/* the new notifier takes the session over: it unsubscribes from both */
	snprintf(np, sizeof(np), "%d", port);
	assert_true(h_service(&up, "notifier", "notifier", "--metrics-port", np, NULL) >= 0);
	for (size_t i = 0; i < nretired; i++) {
		/* an UNSUBSCRIBE's line; a SUBSCRIBE's has the QoS before the filter */
		snprintf(needle, sizeof(needle), ": notifier %s", retired[i]);
		if (h_wait_broker_log(&up, needle, 1, 10000) != 0)
			fail_msg("the broker never logged the notifier's UNSUBSCRIBE of %s (see %s/mosquitto.log)",
			    retired[i], up.dir);
	}
	/* the order that became ready across the upgrade has its alert, naming its items */
	assert_int_equal(h_wait_events(&up, "01UPGRADEORDER00000000000A", EVENT_PICKUP_ALERT, 0, 1, 10000), 1);
	assert_int_equal(h_events(&up, "01UPGRADEORDER00000000000A", EVENT_PICKUP_ALERT, &alert, 1), 1);
	assert_string_equal(alert.message, "Your order is ready for pickup: 1 x funghi.");
	/* what the session had collected was delivered and acknowledged, each once, not dead-lettered */
	for (size_t i = 0; i < nretired; i++) {
		int64_t deadline = mono_ms() + 10000;
		snprintf(series, sizeof(series), "pizza_events_consumed_total{topic=\"%s\"}", retired[i]);
		for (;;) {
			double v;
			page = upgrade_metrics(port);
			v = metric_value(page, series);
			free(page);
			if (v == consumed[i])
				break;
			if (v > consumed[i] || mono_ms() > deadline)
				fail_msg("%s is %g, not %g", series, v, consumed[i]);
			h_sleep(20);
		}
	}

	/*
	 * After the UNSUBSCRIBEs took effect (the broker logged them): another
	 * order's status and OrderPlaced, then its OrderReady.  The broker hands
	 * a subscriber its messages in the order it took them, and each was
	 * taken (acknowledged) before the next was published: had either of the
	 * first two still been delivered, the notifier would have consumed it
	 * before the OrderReady that makes the pickup alert.
	 */
	order_events("01UPGRADEORDER00000000000B", topic, sizeof(topic), status, sizeof(status), placed,
	    sizeof(placed));
	assert_int_equal(h_publish(&up, "order-executor", topic, status, strlen(status)), 0);
	assert_int_equal(h_publish(&up, "order-service", TOPIC_PLACED, placed, strlen(placed)), 0);
	assert_int_equal(h_publish(&up, "order-executor", TOPIC_READY, ready_b, strlen(ready_b)), 0);
	assert_int_equal(h_wait_events(&up, "01UPGRADEORDER00000000000B", EVENT_PICKUP_ALERT, 0, 1, 10000), 1);
	assert_int_equal(h_events(&up, "01UPGRADEORDER00000000000B", EVENT_PICKUP_ALERT, &alert, 1), 1);
	assert_string_equal(alert.message, "Your order is ready for pickup: 2 x margherita.");

	page = upgrade_metrics(port);
	for (size_t i = 0; i < nretired; i++) {
		snprintf(series, sizeof(series), "pizza_events_consumed_total{topic=\"%s\"}", retired[i]);
		assert_true(metric_value(page, series) == consumed[i]); /* the second order's never came */
		snprintf(series, sizeof(series), "pizza_deadletters_total{topic=\"%s\"}", retired[i]);
		assert_true(metric_value(page, series) == 0);
	}
	assert_true(metric_value(page, "pizza_events_consumed_total{topic=\"" TOPIC_READY "\"}") == 1);
	assert_true(metric_value(page, "pizza_events_consumed_total{topic=\"other\"}") == 0);
	assert_true(metric_value(page, "pizza_deadletters_total{topic=\"other\"}") == 0);
	free(page);
	/* one alert each, and nothing reached pizza/deadletter */
	assert_int_equal(h_count_events(&up, "01UPGRADEORDER00000000000A", EVENT_PICKUP_ALERT, 0), 1);
	assert_int_equal(h_count_topic(&up, TOPIC_DEADLETTER), 0);
	assert_int_not_equal(h_wait_log(&up, "notifier", "dead-lettered", 1, 0), 0);
}

int
main(void)
{
	const struct CMUnitTest upgrade[] = {
		cmocka_unit_test(test_notifier_upgrade_keeps_alerts),
	};
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_users_are_isolated),
		cmocka_unit_test(test_phone_cannot_publish_outside_its_intake),
		cmocka_unit_test(test_anonymous_and_wrong_password_refused),
		cmocka_unit_test(test_metrics_and_health),
		cmocka_unit_test(test_services_reconnect_after_broker_restart),
		cmocka_unit_test(test_cli_errors),
		cmocka_unit_test(test_load),
		cmocka_unit_test(test_service_without_broker_exits),
	};

	int failed = 0;

	failed += cmocka_run_group_tests_name("operations", tests, setup, teardown);
	failed += cmocka_run_group_tests_name("upgrade", upgrade, upgrade_setup, upgrade_teardown);
	return failed != 0;
}

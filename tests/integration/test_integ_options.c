/*
 * test_integ_options.c - the programs' command lines as a user meets them
 * (issue 18): one config file for every phone-sim command, durations with
 * units and the old names, --connect-timeout meaning one thing everywhere,
 * order-service's --ready-deadline and the old --stage-deadline read with
 * its old meaning, --version naming the program.  No broker: nothing here
 * connects.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

static struct stack st; /* h_run wants one; its broker port is never dialled here */
static char conf[] = "/tmp/pizza-test-options-XXXXXX";

static void
write_conf(const char *text)
{
	FILE *f = fopen(conf, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

/* Runs argv; returns its exit status with stdout and stderr in *out (caller frees). */
static int
run(char **out, char *const argv[])
{
	int rc = h_run(&st, NULL, out, argv);

	assert_non_null(*out);
	return rc;
}

/* The long option names "PROG [CMD] --help" lists, space-separated with a space at each end. */
static char *
help_options(const char *prog, const char *cmd)
{
	char *const with_cmd[] = { (char *)prog, (char *)cmd, "--help", NULL };
	char *const without[] = { (char *)prog, "--help", NULL };
	char *out, *line, *save = NULL, *names = calloc(1, 4096);
	size_t off = 1;

	assert_non_null(names);
	names[0] = ' ';
	assert_int_equal(run(&out, cmd != NULL ? with_cmd : without), 0);
	for (line = strtok_r(out, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
		char *p = line + strspn(line, " ");
		size_t n;

		if (p[0] == '-' && p[1] != '-' && p[2] == ',')
			p += 4; /* "-u, " */
		if (strncmp(p, "--", 2) != 0 || line[0] != ' ')
			continue;
		p += 2;
		n = strspn(p, "abcdefghijklmnopqrstuvwxyz-");
		if (off + n + 2 < 4096)
			off += (size_t)snprintf(names + off, 4096 - off, "%.*s ", (int)n, p);
	}
	free(out);
	return names;
}

/* The file phone-sim(1) suggests for PIZZA_CONFIG serves every command; a misspelt key is still an error. */
static void
test_phone_sim_shared_config(void **state)
{
	char *const menu[] = { "phone-sim", "menu", NULL };
	char *const load[] = { "phone-sim", "load", "--help", NULL };
	char *const history[] = { "phone-sim", "history", "--help", NULL };
	char *out;

	(void)state;
	write_conf("# alice's phone\nuser = alice\npassword = alice-dev-password\nitem = funghi\ntimeout = 2m\n"
		   "mqtt-url = tcp://127.0.0.1:1883\nphones = 3\n");
	setenv("PIZZA_CONFIG", conf, 1);
	assert_int_equal(run(&out, menu), 0);
	assert_non_null(strstr(out, "margherita"));
	assert_null(strstr(out, "unknown option"));
	free(out);
	assert_int_equal(run(&out, load), 0);
	free(out);
	assert_int_equal(run(&out, history), 0); /* history has no --mqtt-url: skipped, not refused */
	assert_null(strstr(out, "--mqtt-url"));
	assert_null(strstr(out, "--cafile"));
	free(out);

	write_conf("user = alice\nusr = bob\n");
	assert_int_equal(run(&out, menu), 2);
	{
		char want[200];

		snprintf(want, sizeof(want), "phone-sim menu: %s:2: unknown option 'usr'\n", conf);
		assert_string_equal(out, want);
	}
	free(out);
	/* a command's own option is still checked */
	write_conf("user = alice\nfor = soon\n");
	{
		char *const watch[] = { "phone-sim", "watch", "--help", NULL };

		assert_int_equal(run(&out, watch), 2);
		assert_non_null(strstr(out, ":2: 'soon' is not a duration"));
		free(out);
	}
	unsetenv("PIZZA_CONFIG");
}

/*
 * Every phone-sim command accepts a file holding every other command's
 * options: the list of them in client-sim/cli.c has kept up with the
 * tables (a new option missing there fails here, naming it).
 */
static void
test_phone_sim_every_option_shared(void **state)
{
	static const char *const cmds[] = { "order", "watch", "history", "token", "load", "menu" };
	enum { N = sizeof(cmds) / sizeof(cmds[0]) };
	char *names[N];

	(void)state;
	for (size_t i = 0; i < N; i++)
		names[i] = help_options("phone-sim", cmds[i]);
	for (size_t i = 0; i < N; i++) {
		char text[4096] = "", *out;
		size_t off = 0;
		char *const argv[] = { "phone-sim", (char *)cmds[i], "--config", conf, "--help", NULL };

		for (size_t j = 0; j < N; j++) {
			char *copy = strdup(names[j]), *w, *save = NULL;

			for (w = strtok_r(copy, " ", &save); w != NULL; w = strtok_r(NULL, " ", &save)) {
				char key[80];

				snprintf(key, sizeof(key), " %s ", w);
				if (strstr(names[i], key) != NULL || strcmp(w, "config") == 0 || strcmp(w, "help") == 0 ||
				    strcmp(w, "version") == 0)
					continue; /* its own: checked as its own */
				off += (size_t)snprintf(text + off, sizeof(text) - off, "%s = x\n", w);
			}
			free(copy);
		}
		write_conf(text);
		if (run(&out, argv) != 0)
			fail_msg("phone-sim %s refuses other commands' options:\n%s", cmds[i], out);
		free(out);
	}
	for (size_t i = 0; i < N; i++)
		free(names[i]);
}

/* Durations with units and the old -ms names, in a real service; --connect-timeout is milliseconds everywhere. */
static void
test_durations(void **state)
{
	char *const units[] = { "order-executor", "--stage", "50ms", "--drain", "2s", "--status-expiry", "10m",
		"--connect-timeout", "5s", "--help", NULL };
	char *const old[] = { "order-executor", "--stage-ms", "0", "--drain-ms", "2000", "--help", NULL };
	char *const garbage[] = { "order-executor", "--stage", "5 s", NULL };
	char *const svc_ct[] = { "order-executor", "--connect-timeout", "60", NULL };
	char *const load_ct[] = { "phone-sim", "load", "--connect-timeout", "60", NULL };
	char *const fraction[] = { "order-executor", "--status-expiry", "1500ms", NULL };
	char *out;

	(void)state;
	assert_int_equal(run(&out, units), 0);
	assert_non_null(strstr(out, "--stage DURATION"));
	assert_non_null(strstr(out, "(default 400ms; a bare number is milliseconds) [env PIZZA_STAGE_MS]"));
	assert_non_null(strstr(out, "Old names, still accepted: --stage-ms (--stage)"));
	free(out);
	assert_int_equal(run(&out, old), 0);
	free(out);
	assert_int_equal(run(&out, garbage), 2);
	assert_string_equal(out, "order-executor: --stage: '5 s' is not a duration such as 250ms, 30s, 5m, 12h or 2d "
				 "(a bare number is milliseconds)\n");
	free(out);
	assert_int_equal(run(&out, fraction), 2);
	assert_string_equal(out, "order-executor: --status-expiry: '1500ms' is not a whole number of seconds\n");
	free(out);
	/* the same bare number means the same thing to a service and to phone-sim load */
	assert_int_equal(run(&out, svc_ct), 2);
	assert_string_equal(out,
	    "order-executor: --connect-timeout: '60' is not from 100ms to 10m (a bare number is milliseconds)\n");
	free(out);
	assert_int_equal(run(&out, load_ct), 2);
	assert_string_equal(out, "phone-sim load: --connect-timeout: '60' is not from 1s to 1h (a bare number is milliseconds)\n");
	free(out);
}

/* The number of times needle occurs in hay. */
static int
occurrences(const char *hay, const char *needle)
{
	int k = 0;

	for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle))
		k++;
	return k;
}

/*
 * order-service's ready deadline, and the old --stage-deadline kept with its
 * old meaning: no stage (accepted, prep, bake, oven) advanced for this long,
 * so ready within 4 times it.  A bad --callback-allow stops order-service
 * right after it read its options, before it opens a store or dials the
 * broker, so what it printed is what it says about its options at start.
 */
#define WARN_OLD "level=warn svc=order-service msg=\"--stage-deadline is an old option: the ready deadline is 4 times " \
		 "it (accepted, prep, bake and oven each within it); set --ready-deadline instead\""
#define WARN_BOTH "level=warn svc=order-service msg=\"--stage-deadline is an old option and is ignored: " \
		  "--ready-deadline is given and wins\""
#define STOP "order-service: --callback-allow: " /* what stops it, after the warning if any */

static void
test_ready_deadline(void **state)
{
	char *const help[] = { "order-service", "--help", NULL };
	char *const old[] = { "order-service", "--stage-deadline", "10m", "--callback-allow", "10.0.0.0/99", NULL };
	char *const old_ms[] = { "order-service", "--stage-deadline-ms", "3000", "--callback-allow", "10.0.0.0/99",
		NULL };
	char *const env[] = { "order-service", "--callback-allow", "10.0.0.0/99", NULL };
	char *const both[] = { "order-service", "--stage-deadline", "10m", "--ready-deadline", "45m",
		"--callback-allow", "10.0.0.0/99", NULL };
	char *const new_only[] = { "order-service", "--ready-deadline", "45m", "--callback-allow", "10.0.0.0/99",
		NULL };
	char *const too_short[] = { "order-service", "--ready-deadline", "50ms", NULL };
	char *const old_too_short[] = { "order-service", "--stage-deadline", "99", NULL };
	char *out;

	(void)state;
	assert_int_equal(run(&out, help), 0);
	assert_non_null(strstr(out, "--ready-deadline DURATION"));
	assert_non_null(strstr(out, "publish an order again if it is not ready this long after an executor accepted it "
				    "(keep it above the kitchen's whole time: accepted + prep + bake + oven; -1: 2m, or 4 "
				    "times --stage-deadline when only that is given) (default -1; a bare number is "
				    "milliseconds) [env PIZZA_READY_DEADLINE_MS]"));
	assert_non_null(strstr(out, "--stage-deadline DURATION"));
	assert_non_null(strstr(out, "the old form: publish an order again if no stage advanced for this long; read as "
				    "--ready-deadline of 4 times it (accepted, prep, bake, oven), with a warning; "
				    "--ready-deadline wins when both are given (-1: not given) (default -1; a bare number "
				    "is milliseconds) [env PIZZA_STAGE_DEADLINE_MS]"));
	assert_non_null(strstr(out, "--stage-deadline-ms (--stage-deadline)"));
	free(out);

	/* the old option alone: one warning naming --ready-deadline, and 4 times it */
	assert_int_equal(run(&out, old), 2);
	assert_int_equal(occurrences(out, "level=warn"), 1);
	assert_non_null(strstr(out, WARN_OLD " stage_deadline_ms=600000 ready_deadline_ms=2400000\n" STOP));
	free(out);
	assert_int_equal(run(&out, old_ms), 2);
	assert_int_equal(occurrences(out, "level=warn"), 1);
	assert_non_null(strstr(out, WARN_OLD " stage_deadline_ms=3000 ready_deadline_ms=12000\n" STOP));
	free(out);
	setenv("PIZZA_STAGE_DEADLINE_MS", "3000", 1);
	assert_int_equal(run(&out, env), 2);
	assert_int_equal(occurrences(out, "level=warn"), 1);
	assert_non_null(strstr(out, WARN_OLD " stage_deadline_ms=3000 ready_deadline_ms=12000\n" STOP));
	free(out);
	unsetenv("PIZZA_STAGE_DEADLINE_MS");
	{
		/* a deployment's config file from before: "stage-deadline = 10m" with a 16 minute kitchen */
		char *const file[] = { "order-service", "--config", conf, "--callback-allow", "10.0.0.0/99", NULL };

		write_conf("stage-deadline = 10m\n");
		assert_int_equal(run(&out, file), 2);
		assert_int_equal(occurrences(out, "level=warn"), 1);
		assert_non_null(strstr(out, WARN_OLD " stage_deadline_ms=600000 ready_deadline_ms=2400000\n" STOP));
		free(out);
	}

	/* both: --ready-deadline wins, and the warning says the old one is ignored */
	assert_int_equal(run(&out, both), 2);
	assert_int_equal(occurrences(out, "level=warn"), 1);
	assert_non_null(strstr(out, WARN_BOTH " stage_deadline_ms=600000 ready_deadline_ms=2700000\n" STOP));
	free(out);

	/* the new option alone, or neither: nothing to warn about, only the line that stops it */
	assert_int_equal(run(&out, new_only), 2);
	assert_int_equal(strncmp(out, STOP, strlen(STOP)), 0);
	assert_int_equal(occurrences(out, "\n"), 1);
	free(out);
	assert_int_equal(run(&out, env), 2);
	assert_int_equal(strncmp(out, STOP, strlen(STOP)), 0);
	assert_int_equal(occurrences(out, "\n"), 1);
	free(out);

	/* -1 says "not given"; any other value under 100ms is refused, as before */
	assert_int_equal(run(&out, too_short), 2);
	assert_string_equal(out, "order-service: --ready-deadline (or PIZZA_READY_DEADLINE_MS): 50ms is below 100ms\n");
	free(out);
	assert_int_equal(run(&out, old_too_short), 2);
	assert_string_equal(out, "order-service: --stage-deadline (or PIZZA_STAGE_DEADLINE_MS): 99ms is below 100ms\n");
	free(out);
}

/* --version names the program, for a service and for every phone-sim command. */
static void
test_version(void **state)
{
	char *const svc[] = { "order-executor", "--version", NULL };
	char *const sim[] = { "phone-sim", "--version", NULL };
	char *const cmd[] = { "phone-sim", "order", "--version", NULL };
	char *out;

	(void)state;
	assert_int_equal(run(&out, svc), 0);
	assert_string_equal(out, "order-executor " PIZZA_VERSION "\n");
	free(out);
	assert_int_equal(run(&out, sim), 0);
	assert_string_equal(out, "phone-sim " PIZZA_VERSION "\n");
	free(out);
	assert_int_equal(run(&out, cmd), 0);
	assert_string_equal(out, "phone-sim " PIZZA_VERSION "\n");
	free(out);
}

static int
setup(void **state)
{
	int fd = mkstemp(conf);

	(void)state;
	if (fd < 0)
		return -1;
	close(fd);
	unsetenv("PIZZA_CONFIG");
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	unlink(conf);
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_phone_sim_shared_config),
		cmocka_unit_test(test_phone_sim_every_option_shared),
		cmocka_unit_test(test_durations),
		cmocka_unit_test(test_ready_deadline),
		cmocka_unit_test(test_version),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}

/*
 * test_config.c - table-driven options (config.h): default < environment <
 * flag, the flag forms, and the errors a user gets for bad input.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "util.h"

#define ENV_NAME "PIZZA_TEST_CFG_NAME"
#define ENV_PORT "PIZZA_TEST_CFG_PORT"
#define ENV_DEBUG "PIZZA_TEST_CFG_DEBUG"

static const char *o_name;
static const char *o_topic;
static long o_port;
static int o_debug;
static int o_verbose;

static const struct opt opts[] = {
	{ "name", 'n', OPT_STR, ENV_NAME, "pizza", "service name", &o_name, 0, 0 },
	{ "topic", 0, OPT_STR, NULL, NULL, "a topic (no default)", &o_topic, 0, 0 },
	{ "port", 'p', OPT_INT, ENV_PORT, "1883", "broker port", &o_port, 1, 65535 },
	{ "debug", 'd', OPT_FLAG, ENV_DEBUG, NULL, "debug mode", &o_debug, 0, 0 },
	{ "verbose", 'v', OPT_COUNT, NULL, NULL, "more logging", &o_verbose, 0, 0 },
	{ NULL, 0, OPT_STR, NULL, NULL, NULL, NULL, 0, 0 },
};

#define MAX_ARGS 16

static char err[256];

/* The durations' table (dopts, below) writes these. */
static long d_stage, d_prep, d_expiry, d_ttl;

static enum config_result dparse_args(const char *const *shared, ...);

/*
 * Runs config_parse (config_parse_shared with shared) on table with "prog"
 * followed by the NULL-ended arguments in ap.
 */
static enum config_result
vparse(const struct opt *table, const char *const *shared, int *npos, va_list ap)
{
	char *argv[MAX_ARGS + 1];
	int argc = 0;
	const char *a;

	argv[argc++] = (char *)"prog";
	while ((a = va_arg(ap, const char *)) != NULL) {
		assert_true(argc < MAX_ARGS);
		argv[argc++] = (char *)a;
	}
	argv[argc] = NULL;
	memset(err, 0, sizeof(err));
	/* leftovers from an earlier parse must not leak through */
	o_name = o_topic = (const char *)"stale";
	o_port = -7;
	o_debug = o_verbose = 42;
	d_stage = d_prep = d_expiry = d_ttl = -7;
	if (shared == NULL)
		return config_parse("prog [options]", "A test program.", table, argc, argv, npos, err, sizeof(err));
	return config_parse_shared("prog [options]", "A test program.", table, shared, argc, argv, npos, err,
	    sizeof(err));
}

/* Runs config_parse on opts with "prog" followed by the NULL-ended arguments. */
static enum config_result
parse_args(int *npos, ...)
{
	enum config_result rc;
	va_list ap;

	va_start(ap, npos);
	rc = vparse(opts, NULL, npos, ap);
	va_end(ap);
	return rc;
}

#define PARSE(...) parse_args(NULL, __VA_ARGS__, (const char *)NULL)

static void
assert_err_contains(const char *want)
{
	if (strstr(err, want) == NULL)
		fail_msg("error \"%s\" does not contain \"%s\"", err, want);
	assert_null(strchr(err, '\n'));
}

static int
setup_env(void **state)
{
	(void)state;
	unsetenv(ENV_NAME);
	unsetenv(ENV_PORT);
	unsetenv(ENV_DEBUG);
	return 0;
}

static void
test_defaults(void **state)
{
	(void)state;
	assert_int_equal(parse_args(NULL, (const char *)NULL), CONFIG_OK);
	assert_string_equal(o_name, "pizza");
	assert_null(o_topic); /* OPT_STR without a default stays NULL */
	assert_int_equal(o_port, 1883);
	assert_int_equal(o_debug, 0);
	assert_int_equal(o_verbose, 0);
}

static void
test_env_overrides_default(void **state)
{
	(void)state;
	setenv(ENV_NAME, "from-env", 1);
	setenv(ENV_PORT, "8883", 1);
	setenv(ENV_DEBUG, "yes", 1);
	assert_int_equal(parse_args(NULL, (const char *)NULL), CONFIG_OK);
	assert_string_equal(o_name, "from-env");
	assert_int_equal(o_port, 8883);
	assert_int_equal(o_debug, 1);

	/* an empty variable counts as unset */
	setenv(ENV_NAME, "", 1);
	setenv(ENV_PORT, "", 1);
	assert_int_equal(parse_args(NULL, (const char *)NULL), CONFIG_OK);
	assert_string_equal(o_name, "pizza");
	assert_int_equal(o_port, 1883);
}

static void
test_env_flag_values(void **state)
{
	static const char *const on[] = { "1", "true", "TRUE", "yes", "Yes" };
	static const char *const off[] = { "0", "false", "no", "NO" };

	(void)state;
	for (size_t i = 0; i < sizeof(on) / sizeof(on[0]); i++) {
		setenv(ENV_DEBUG, on[i], 1);
		assert_int_equal(parse_args(NULL, (const char *)NULL), CONFIG_OK);
		assert_int_equal(o_debug, 1);
	}
	for (size_t i = 0; i < sizeof(off) / sizeof(off[0]); i++) {
		setenv(ENV_DEBUG, off[i], 1);
		assert_int_equal(parse_args(NULL, (const char *)NULL), CONFIG_OK);
		assert_int_equal(o_debug, 0);
	}
	setenv(ENV_DEBUG, "maybe", 1);
	assert_int_equal(parse_args(NULL, (const char *)NULL), CONFIG_ERROR);
	assert_err_contains(ENV_DEBUG);
	assert_err_contains("maybe");
}

static void
test_flag_overrides_env(void **state)
{
	(void)state;
	setenv(ENV_NAME, "from-env", 1);
	setenv(ENV_PORT, "8883", 1);
	assert_int_equal(PARSE("--port", "9000", "--name", "from-flag"), CONFIG_OK);
	assert_int_equal(o_port, 9000);
	assert_string_equal(o_name, "from-flag");
	/* the last use of a flag wins */
	assert_int_equal(PARSE("--port", "9000", "--port", "9001"), CONFIG_OK);
	assert_int_equal(o_port, 9001);
}

static void
test_equals_form(void **state)
{
	(void)state;
	assert_int_equal(PARSE("--port=1234", "--name=a=b", "--topic="), CONFIG_OK);
	assert_int_equal(o_port, 1234);
	assert_string_equal(o_name, "a=b"); /* only the first '=' splits */
	assert_non_null(o_topic);
	assert_string_equal(o_topic, "");
}

static void
test_short_flags(void **state)
{
	(void)state;
	assert_int_equal(PARSE("-p", "42", "-n", "short", "-d"), CONFIG_OK);
	assert_int_equal(o_port, 42);
	assert_string_equal(o_name, "short");
	assert_int_equal(o_debug, 1);
	/* short flags do not bundle or take attached values */
	assert_int_equal(PARSE("-p42"), CONFIG_ERROR);
	assert_err_contains("-p42");
}

static void
test_int_errors(void **state)
{
	(void)state;
	assert_int_equal(PARSE("--port", "1"), CONFIG_OK);
	assert_int_equal(o_port, 1);
	assert_int_equal(PARSE("--port", "65535"), CONFIG_OK);
	assert_int_equal(o_port, 65535);

	assert_int_equal(PARSE("--port", "0"), CONFIG_ERROR);
	assert_err_contains("--port");
	assert_err_contains("'0'");
	assert_err_contains("1 to 65535");

	assert_int_equal(PARSE("--port", "65536"), CONFIG_ERROR);
	assert_err_contains("--port");
	assert_err_contains("'65536'");

	assert_int_equal(PARSE("-p", "12x"), CONFIG_ERROR);
	assert_err_contains("--port");
	assert_err_contains("'12x'");

	assert_int_equal(PARSE("--port="), CONFIG_ERROR);
	assert_err_contains("--port");

	assert_int_equal(PARSE("--port", "99999999999999999999999"), CONFIG_ERROR);
	assert_err_contains("--port");

	/* a bad environment value names the variable */
	setenv(ENV_PORT, "junk", 1);
	assert_int_equal(parse_args(NULL, (const char *)NULL), CONFIG_ERROR);
	assert_err_contains(ENV_PORT);
	assert_err_contains("'junk'");
	/* even when a flag would override it */
	assert_int_equal(PARSE("--port", "10"), CONFIG_ERROR);
	assert_err_contains(ENV_PORT);
}

static void
test_unknown_option(void **state)
{
	(void)state;
	assert_int_equal(PARSE("--nope"), CONFIG_ERROR);
	assert_err_contains("unknown option");
	assert_err_contains("'--nope'");
	assert_int_equal(PARSE("--nope=3"), CONFIG_ERROR);
	assert_err_contains("'--nope'");
	assert_int_equal(PARSE("-x"), CONFIG_ERROR);
	assert_err_contains("'-x'");
	/* a prefix of a long name is not that option */
	assert_int_equal(PARSE("--por", "1"), CONFIG_ERROR);
	assert_err_contains("'--por'");
	assert_int_equal(PARSE("--portx", "1"), CONFIG_ERROR);
	assert_err_contains("'--portx'");
}

static void
test_missing_value(void **state)
{
	(void)state;
	assert_int_equal(PARSE("--port"), CONFIG_ERROR);
	assert_err_contains("--port needs a value");
	assert_int_equal(PARSE("-v", "-n"), CONFIG_ERROR);
	assert_err_contains("--name needs a value");
}

static void
test_flag_and_count(void **state)
{
	(void)state;
	assert_int_equal(PARSE("--debug"), CONFIG_OK);
	assert_int_equal(o_debug, 1);
	assert_int_equal(o_verbose, 0);
	assert_int_equal(PARSE("-v"), CONFIG_OK);
	assert_int_equal(o_verbose, 1);
	assert_int_equal(o_debug, 0);
	assert_int_equal(PARSE("-v", "-v"), CONFIG_OK);
	assert_int_equal(o_verbose, 2);
	assert_int_equal(PARSE("-v", "--verbose", "-v"), CONFIG_OK);
	assert_int_equal(o_verbose, 3);
	/* flags take no value */
	assert_int_equal(PARSE("--debug=1"), CONFIG_ERROR);
	assert_err_contains("--debug takes no value");
	assert_int_equal(PARSE("--verbose=2"), CONFIG_ERROR);
	assert_err_contains("--verbose");
	/* a flag does not swallow the next argument */
	assert_int_equal(PARSE("--debug", "--port", "5"), CONFIG_OK);
	assert_int_equal(o_debug, 1);
	assert_int_equal(o_port, 5);
}

/* Runs a parse of table with stdout sent to a temporary file; returns what was printed (caller frees). */
static char *
capture_stdout(const struct opt *table, enum config_result *rc, const char *arg)
{
	char path[] = "/tmp/pizza-test-config-XXXXXX";
	int fd = mkstemp(path), saved;
	char *out;

	assert_true(fd >= 0);
	fflush(stdout);
	saved = dup(STDOUT_FILENO);
	assert_true(saved >= 0);
	assert_true(dup2(fd, STDOUT_FILENO) >= 0);
	*rc = table == opts ? PARSE(arg) : dparse_args(NULL, arg, (const char *)NULL);
	fflush(stdout);
	dup2(saved, STDOUT_FILENO);
	close(saved);
	close(fd);
	out = file_read_small(path, 65536);
	unlink(path);
	assert_non_null(out);
	return out;
}

static void
test_help_and_version(void **state)
{
	enum config_result rc;
	char *out;

	(void)state;
	out = capture_stdout(opts, &rc, "--help");
	assert_int_equal(rc, CONFIG_EXIT);
	assert_non_null(strstr(out, "usage: prog [options]"));
	assert_non_null(strstr(out, "A test program."));
	assert_non_null(strstr(out, "--port"));
	assert_non_null(strstr(out, "(default 1883)"));
	assert_non_null(strstr(out, "[env " ENV_PORT "]"));
	assert_non_null(strstr(out, "-v, --verbose"));
	assert_non_null(strstr(out, "--help"));
	free(out);

	out = capture_stdout(opts, &rc, "-h");
	assert_int_equal(rc, CONFIG_EXIT);
	assert_non_null(strstr(out, "usage: prog [options]"));
	free(out);

	out = capture_stdout(opts, &rc, "--version");
	assert_int_equal(rc, CONFIG_EXIT);
	assert_string_equal(out, "prog " PIZZA_VERSION);
	free(out);
}

static void
test_positional(void **state)
{
	int npos = -1;

	(void)state;
	/* refused without npos */
	assert_int_equal(PARSE("-v", "file.txt"), CONFIG_ERROR);
	assert_err_contains("unexpected argument 'file.txt'");
	assert_int_equal(PARSE("-"), CONFIG_ERROR);
	assert_err_contains("'-'");
	assert_int_equal(PARSE("--", "-v"), CONFIG_ERROR);
	assert_err_contains("'-v'");
	/* "--" alone at the end is fine */
	assert_int_equal(PARSE("-v", "--"), CONFIG_OK);
	assert_int_equal(o_verbose, 1);

	/* with npos: the index of the first positional; parsing stops there */
	assert_int_equal(parse_args(&npos, "-v", "file.txt", "-v", (const char *)NULL), CONFIG_OK);
	assert_int_equal(npos, 2);
	assert_int_equal(o_verbose, 1);
	assert_int_equal(parse_args(&npos, "--", "-v", (const char *)NULL), CONFIG_OK);
	assert_int_equal(npos, 2);
	assert_int_equal(o_verbose, 0);
	assert_int_equal(parse_args(&npos, "-p", "7", (const char *)NULL), CONFIG_OK);
	assert_int_equal(npos, 3); /* none: argc */
	assert_int_equal(o_port, 7);
}

/* Creates the empty file the XXXXXX template path names, and writes its name there. */
static void
make_temp(char *path)
{
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	close(fd);
}

static void
write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

/* The config file sits between the defaults and the environment. */
static void
test_config_file_precedence(void **state)
{
	char path[] = "/tmp/pizza-test-config-XXXXXX";

	(void)state;
	make_temp(path);
	write_file(path, "# a comment\n\n  name = from-file   # trailing comment\nport=2000\ndebug = true\nverbose = 2\n");
	assert_int_equal(PARSE("--config", path), CONFIG_OK);
	assert_string_equal(o_name, "from-file");
	assert_int_equal(o_port, 2000);
	assert_int_equal(o_debug, 1);
	assert_int_equal(o_verbose, 2);
	setenv(ENV_PORT, "3000", 1);
	assert_int_equal(PARSE("--config", path), CONFIG_OK);
	assert_int_equal(o_port, 3000); /* environment beats the file */
	assert_int_equal(PARSE("--config", path, "--port", "4000"), CONFIG_OK);
	assert_int_equal(o_port, 4000); /* a flag beats both */
	unsetenv(ENV_PORT);
	setenv("PIZZA_CONFIG", path, 1);
	assert_int_equal(PARSE("--name=flag"), CONFIG_OK);
	assert_string_equal(o_name, "flag");
	assert_int_equal(o_port, 2000); /* $PIZZA_CONFIG names the file too */
	unsetenv("PIZZA_CONFIG");
	unlink(path);
}

static void
test_config_file_errors(void **state)
{
	char path[] = "/tmp/pizza-test-config-XXXXXX";

	(void)state;
	make_temp(path);
	write_file(path, "name = ok\ncolour = blue\n");
	assert_int_equal(PARSE("--config", path), CONFIG_ERROR);
	assert_err_contains(":2: unknown option 'colour'");
	write_file(path, "port = 99999\n");
	assert_int_equal(PARSE("--config", path), CONFIG_ERROR);
	assert_err_contains(":1: '99999' is not a whole number from 1 to 65535");
	write_file(path, "just words\n");
	assert_int_equal(PARSE("--config", path), CONFIG_ERROR);
	assert_err_contains("expected 'name = value'");
	unlink(path);
	assert_int_equal(PARSE("--config", "/nonexistent/pizza.conf"), CONFIG_ERROR);
	assert_err_contains("cannot read config file /nonexistent/pizza.conf");
}

/*
 * Strings set from a config file stay valid after a later parse and after a
 * failed one (the file's text used to be freed under them; the sanitizer
 * run of this test reads freed memory on that code).
 */
static void
test_config_strings_outlive_parses(void **state)
{
	char a[] = "/tmp/pizza-test-config-XXXXXX", b[] = "/tmp/pizza-test-config-XXXXXX";
	int fa = mkstemp(a), fb = mkstemp(b);
	const char *first;

	(void)state;
	assert_true(fa >= 0 && fb >= 0);
	close(fa);
	close(fb);
	write_file(a, "name = alpha\n");
	write_file(b, "name = beta\ncolour = blue\n");
	assert_int_equal(PARSE("--config", a), CONFIG_OK);
	first = o_name;
	assert_string_equal(first, "alpha");
	/* fails at line 2, after line 1 set name */
	assert_int_equal(PARSE("--config", b), CONFIG_ERROR);
	assert_string_equal(o_name, "beta");
	assert_string_equal(first, "alpha");
	unlink(a);
	unlink(b);
}

/* ---- durations, old names, a config file shared by several commands ---- */

#define ENV_STAGE "PIZZA_TEST_CFG_STAGE_MS"

static const struct opt dopts[] = {
	{ "stage", 0, OPT_DURATION_MS, ENV_STAGE, "400ms", "every stage", &d_stage, 0, 3600000 },
	{ "prep", 0, OPT_DURATION_MS, NULL, "-1", "prep (-1: --stage)", &d_prep, -1, 3600000 },
	{ "session-expiry-with-a-long-name", 0, OPT_DURATION_S, NULL, "1h", "session expiry", &d_expiry, 0,
	    4294967295L },
	{ "ttl", 0, OPT_DURATION_H, NULL, "48", "remembered", &d_ttl, 24, 24 * 365 },
	OPT_ALIAS_OF("stage-ms", "stage"),
	OPT_ALIAS_OF("prep-ms", "prep"),
	{ "verbose", 'v', OPT_COUNT, NULL, NULL, "more logging", &o_verbose, 0, 0 },
	{ NULL, 0, OPT_STR, NULL, NULL, NULL, NULL, 0, 0 },
};

/* config_parse_shared() (config_parse() when shared is NULL) on dopts with "prog" and the NULL-ended arguments. */
static enum config_result
dparse_args(const char *const *shared, ...)
{
	enum config_result rc;
	va_list ap;

	va_start(ap, shared);
	rc = vparse(dopts, shared, NULL, ap);
	va_end(ap);
	return rc;
}

#define DPARSE(...) dparse_args(NULL, __VA_ARGS__, (const char *)NULL)

static void
test_duration_units(void **state)
{
	(void)state;
	unsetenv(ENV_STAGE);
	assert_int_equal(dparse_args(NULL, (const char *)NULL), CONFIG_OK);
	assert_int_equal(d_stage, 400); /* the default "400ms" */
	assert_int_equal(d_prep, -1);
	assert_int_equal(d_expiry, 3600); /* "1h" in seconds */
	assert_int_equal(d_ttl, 48);

	assert_int_equal(DPARSE("--stage", "250ms"), CONFIG_OK);
	assert_int_equal(d_stage, 250);
	assert_int_equal(DPARSE("--stage", "30s"), CONFIG_OK);
	assert_int_equal(d_stage, 30000);
	assert_int_equal(DPARSE("--stage=5m"), CONFIG_OK);
	assert_int_equal(d_stage, 300000);
	assert_int_equal(DPARSE("--stage", "1h"), CONFIG_OK);
	assert_int_equal(d_stage, 3600000);
	assert_int_equal(DPARSE("--stage", "0"), CONFIG_OK);
	assert_int_equal(d_stage, 0);
	assert_int_equal(DPARSE("--session-expiry-with-a-long-name", "12h"), CONFIG_OK);
	assert_int_equal(d_expiry, 43200);
	assert_int_equal(DPARSE("--session-expiry-with-a-long-name", "2000ms"), CONFIG_OK);
	assert_int_equal(d_expiry, 2);
	assert_int_equal(DPARSE("--ttl", "2d"), CONFIG_OK);
	assert_int_equal(d_ttl, 48);
	assert_int_equal(DPARSE("--ttl", "1440m"), CONFIG_OK);
	assert_int_equal(d_ttl, 24);
	assert_int_equal(DPARSE("--prep", "-1"), CONFIG_OK); /* a sentinel below zero still works */
	assert_int_equal(d_prep, -1);
}

/* A bare number keeps each option's old unit, from a flag, the environment and a file. */
static void
test_duration_bare_numbers(void **state)
{
	char path[] = "/tmp/pizza-test-config-XXXXXX";

	(void)state;
	make_temp(path);
	assert_int_equal(DPARSE("--stage", "200", "--session-expiry-with-a-long-name", "30", "--ttl", "72"), CONFIG_OK);
	assert_int_equal(d_stage, 200);
	assert_int_equal(d_expiry, 30);
	assert_int_equal(d_ttl, 72);
	setenv(ENV_STAGE, "150", 1);
	assert_int_equal(dparse_args(NULL, (const char *)NULL), CONFIG_OK);
	assert_int_equal(d_stage, 150);
	setenv(ENV_STAGE, "2s", 1);
	assert_int_equal(dparse_args(NULL, (const char *)NULL), CONFIG_OK);
	assert_int_equal(d_stage, 2000);
	unsetenv(ENV_STAGE);
	write_file(path, "stage = 90\nsession-expiry-with-a-long-name = 5m\nttl = 30\n");
	assert_int_equal(DPARSE("--config", path), CONFIG_OK);
	assert_int_equal(d_stage, 90);
	assert_int_equal(d_expiry, 300);
	assert_int_equal(d_ttl, 30);
	unlink(path);
}

/* Every bad duration is one line naming the option (as typed) and the value. */
static void
test_duration_errors(void **state)
{
	static const char *const garbage[] = { "5x", "1.5s", "30 s", " 30s", "s", "-", "", "+5s", "5S", "5sec", "0x10",
		"1e3" };
	static const struct {
		const char *flag, *value, *error;
	} bad[] = {
		/* out of range, with the range in units a reader can check */
		{ "--stage", "2h", "--stage: '2h' is not from 0 to 1h" },
		/* a bare number out of range says which unit it was read in (an old value in another unit, say) */
		{ "--stage", "3600001", "--stage: '3600001' is not from 0 to 1h (a bare number is milliseconds)" },
		{ "--ttl", "12h", "--ttl: '12h' is not from 1d to 365d" },
		{ "--prep", "-2", "--prep: '-2' is not from -1 to 1h" },
		/* overflow: of the number, and of the number times its unit */
		{ "--stage", "99999999999999999999999ms", "--stage: '99999999999999999999999ms' is not from 0 to 1h" },
		{ "--stage", "9223372036854775807d", "'9223372036854775807d' is not from 0 to 1h" },
		{ "--session-expiry-with-a-long-name", "4294967296s", "'4294967296s' is not from 0 to 4294967295s" },
		/* not a whole number of the option's unit */
		{ "--session-expiry-with-a-long-name", "1500ms",
		    "--session-expiry-with-a-long-name: '1500ms' is not a whole number of seconds" },
		{ "--ttl", "90m", "--ttl: '90m' is not a whole number of hours" },
		/* an old name is named as typed */
		{ "--stage-ms", "soon", "--stage-ms: 'soon' is not a duration" },
	};
	char path[] = "/tmp/pizza-test-config-XXXXXX";

	(void)state;
	make_temp(path);
	for (size_t i = 0; i < sizeof(garbage) / sizeof(garbage[0]); i++) {
		assert_int_equal(DPARSE("--stage", garbage[i]), CONFIG_ERROR);
		assert_err_contains("--stage: '");
		assert_err_contains("is not a duration such as 250ms, 30s, 5m, 12h or 2d (a bare number is milliseconds)");
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(DPARSE(bad[i].flag, bad[i].value), CONFIG_ERROR);
		assert_err_contains(bad[i].error);
	}
	assert_int_equal(DPARSE("--stage", "2h"), CONFIG_ERROR);
	assert_null(strstr(err, "bare")); /* said only of bare numbers */
	assert_int_equal(DPARSE("--stage-ms=soon"), CONFIG_ERROR);
	assert_err_contains("--stage-ms: 'soon'");
	/* the environment and the file name themselves */
	setenv(ENV_STAGE, "later", 1);
	assert_int_equal(dparse_args(NULL, (const char *)NULL), CONFIG_ERROR);
	assert_err_contains(ENV_STAGE ": 'later' is not a duration");
	unsetenv(ENV_STAGE);
	write_file(path, "# durations\nstage = 1 h\n");
	assert_int_equal(DPARSE("--config", path), CONFIG_ERROR);
	assert_err_contains(":2: '1 h' is not a duration");
	assert_int_equal(DPARSE("--stage"), CONFIG_ERROR);
	assert_err_contains("--stage needs a value");
	unlink(path);
}

/* An old name sets the option it stands for, from a flag and a file; --help lists it apart. */
static void
test_aliases(void **state)
{
	char path[] = "/tmp/pizza-test-config-XXXXXX";

	(void)state;
	make_temp(path);
	assert_int_equal(DPARSE("--stage-ms", "200"), CONFIG_OK);
	assert_int_equal(d_stage, 200);
	assert_int_equal(DPARSE("--prep-ms=1s", "--stage", "5"), CONFIG_OK);
	assert_int_equal(d_prep, 1000);
	assert_int_equal(d_stage, 5);
	/* the last use wins, whichever name it used */
	assert_int_equal(DPARSE("--stage", "1", "--stage-ms", "2"), CONFIG_OK);
	assert_int_equal(d_stage, 2);
	write_file(path, "stage-ms = 300\n");
	assert_int_equal(DPARSE("--config", path), CONFIG_OK);
	assert_int_equal(d_stage, 300);
	unlink(path);
	/* an alias is a name, not a prefix */
	assert_int_equal(DPARSE("--stage-m", "2"), CONFIG_ERROR);
	assert_err_contains("unknown option '--stage-m'");
}

/* A file shared by several commands: another command's key is skipped, a misspelt one is still an error. */
static void
test_config_file_shared(void **state)
{
	static const char *const shared[] = { "user", "item", "stage", NULL };
	char path[] = "/tmp/pizza-test-config-XXXXXX";

	(void)state;
	make_temp(path);
	write_file(path, "user = alice\nitem = funghi\nstage = 2s\n");
	assert_int_equal(dparse_args(shared, "--config", path, (const char *)NULL), CONFIG_OK);
	assert_int_equal(d_stage, 2000); /* an own key is still read */
	/* without the list the same file is refused at its first foreign key */
	assert_int_equal(dparse_args(NULL, "--config", path, (const char *)NULL), CONFIG_ERROR);
	assert_err_contains(":1: unknown option 'user'");
	write_file(path, "user = alice\nusr = bob\n");
	assert_int_equal(dparse_args(shared, "--config", path, (const char *)NULL), CONFIG_ERROR);
	assert_err_contains(":2: unknown option 'usr'");
	/* an own key with a bad value is not skipped because another command knows the name */
	write_file(path, "stage = soon\n");
	assert_int_equal(dparse_args(shared, "--config", path, (const char *)NULL), CONFIG_ERROR);
	assert_err_contains(":1: 'soon' is not a duration");
	/* and a foreign key never reaches the command line */
	assert_int_equal(dparse_args(shared, "--user", "alice", (const char *)NULL), CONFIG_ERROR);
	assert_err_contains("unknown option '--user'");
	unlink(path);
}

/* Help says each duration's unit, hides the old names from the option list, and keeps one column. */
static void
test_duration_help(void **state)
{
	static const char *const helps[] = { "every stage", "prep (-1: --stage)", "session expiry", "remembered",
		"more logging", "read 'option = value' lines first", "print this help and exit" };
	enum config_result rc;
	char *out = capture_stdout(dopts, &rc, "--help"), *line, *save = NULL;
	long col = -1;

	(void)state;
	assert_int_equal(rc, CONFIG_EXIT);
	assert_non_null(strstr(out, "    --stage DURATION"));
	assert_non_null(strstr(out, "every stage (default 400ms; a bare number is milliseconds) [env " ENV_STAGE "]"));
	assert_non_null(strstr(out, "session expiry (default 1h; a bare number is seconds)"));
	assert_non_null(strstr(out, "remembered (default 48; a bare number is hours)"));
	assert_non_null(strstr(out, "A DURATION is a whole number with a unit: 250ms, 30s, 5m, 12h or 2d."));
	assert_non_null(strstr(out, "Old names, still accepted: --stage-ms (--stage), --prep-ms (--prep)."));
	/* no option line starts with an old name (test-install reads option lines this way) */
	assert_null(strstr(out, "\n      --stage-ms"));
	assert_null(strstr(out, "\n      --prep-ms"));
	/* every help text starts in one column, after the longest flag */
	for (line = strtok_r(out, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save))
		for (size_t i = 0; i < sizeof(helps) / sizeof(helps[0]); i++) {
			const char *at = strstr(line, helps[i]);

			if (at == NULL || strncmp(line, "  ", 2) != 0)
				continue;
			if (col < 0)
				col = at - line;
			else if (at - line != col)
				fail_msg("help text at column %ld, not %ld: %s", (long)(at - line), col, line);
		}
	assert_int_equal(col, (long)strlen("  ") + (long)strlen("    --session-expiry-with-a-long-name DURATION") + 2);
	free(out);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_defaults, setup_env),
		cmocka_unit_test_setup(test_config_file_precedence, setup_env),
		cmocka_unit_test_setup(test_config_file_errors, setup_env),
		cmocka_unit_test_setup(test_config_strings_outlive_parses, setup_env),
		cmocka_unit_test_setup(test_env_overrides_default, setup_env),
		cmocka_unit_test_setup(test_env_flag_values, setup_env),
		cmocka_unit_test_setup(test_flag_overrides_env, setup_env),
		cmocka_unit_test_setup(test_equals_form, setup_env),
		cmocka_unit_test_setup(test_short_flags, setup_env),
		cmocka_unit_test_setup(test_int_errors, setup_env),
		cmocka_unit_test_setup(test_unknown_option, setup_env),
		cmocka_unit_test_setup(test_missing_value, setup_env),
		cmocka_unit_test_setup(test_flag_and_count, setup_env),
		cmocka_unit_test_setup(test_help_and_version, setup_env),
		cmocka_unit_test_setup(test_positional, setup_env),
		cmocka_unit_test_setup(test_duration_units, setup_env),
		cmocka_unit_test_setup(test_duration_bare_numbers, setup_env),
		cmocka_unit_test_setup(test_duration_errors, setup_env),
		cmocka_unit_test_setup(test_aliases, setup_env),
		cmocka_unit_test_setup(test_config_file_shared, setup_env),
		cmocka_unit_test_setup(test_duration_help, setup_env),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

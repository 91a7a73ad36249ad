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

/* Runs config_parse on "prog" followed by the NULL-ended arguments. */
static enum config_result
parse_args(int *npos, ...)
{
	char *argv[MAX_ARGS + 1];
	int argc = 0;
	va_list ap;
	const char *a;

	argv[argc++] = (char *)"prog";
	va_start(ap, npos);
	while ((a = va_arg(ap, const char *)) != NULL) {
		assert_true(argc < MAX_ARGS);
		argv[argc++] = (char *)a;
	}
	va_end(ap);
	argv[argc] = NULL;
	memset(err, 0, sizeof(err));
	/* leftovers from an earlier parse must not leak through */
	o_name = o_topic = (const char *)"stale";
	o_port = -7;
	o_debug = o_verbose = 42;
	return config_parse("prog [options]", "A test program.", opts, argc, argv, npos, err, sizeof(err));
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

/* Runs a parse with stdout sent to a temporary file; returns what was printed (caller frees). */
static char *
capture_stdout(enum config_result *rc, const char *arg)
{
	char path[] = "/tmp/pizza-test-config-XXXXXX";
	int fd = mkstemp(path), saved;
	char *out;

	assert_true(fd >= 0);
	fflush(stdout);
	saved = dup(STDOUT_FILENO);
	assert_true(saved >= 0);
	assert_true(dup2(fd, STDOUT_FILENO) >= 0);
	*rc = PARSE(arg);
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
	out = capture_stdout(&rc, "--help");
	assert_int_equal(rc, CONFIG_EXIT);
	assert_non_null(strstr(out, "usage: prog [options]"));
	assert_non_null(strstr(out, "A test program."));
	assert_non_null(strstr(out, "--port"));
	assert_non_null(strstr(out, "(default 1883)"));
	assert_non_null(strstr(out, "[env " ENV_PORT "]"));
	assert_non_null(strstr(out, "-v, --verbose"));
	assert_non_null(strstr(out, "--help"));
	free(out);

	out = capture_stdout(&rc, "-h");
	assert_int_equal(rc, CONFIG_EXIT);
	assert_non_null(strstr(out, "usage: prog [options]"));
	free(out);

	out = capture_stdout(&rc, "--version");
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
	int fd = mkstemp(path);

	(void)state;
	assert_true(fd >= 0);
	close(fd);
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
	int fd = mkstemp(path);

	(void)state;
	assert_true(fd >= 0);
	close(fd);
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
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * config.h - table-driven command-line and environment configuration.
 *
 * Each program describes its options once, in an array of struct opt ended
 * by an entry with name == NULL.  config_parse() applies, in increasing
 * precedence: the default, the config file, the environment variable, then
 * the flag.  It prints --help and --version from the same table.
 *
 * The config file is named by --config FILE (or $PIZZA_CONFIG); each line
 * is "option-name = value" with the long option's name ("stage = 200ms"),
 * '#' starts a comment, and a flag option takes true/false.  An unknown
 * name or a bad value is an error naming the file and line.
 *
 * Durations carry their unit: 250ms, 30s, 5m, 12h, 2d.  A bare number is
 * in the option's own unit (the kind says which), so the numbers that
 * worked before units existed still mean what they meant.
 */
#ifndef PIZZA_CONFIG_H
#define PIZZA_CONFIG_H

#include <stddef.h>

enum opt_kind {
	OPT_STR,  /* dest is const char **; points into argv, environ or the default */
	OPT_INT,  /* dest is long *; checked against [min, max] */
	OPT_FLAG, /* dest is int *; set to 1 by the flag, or by env "1"/"true"/"yes" */
	OPT_COUNT, /* dest is int *; incremented by each use (like -v -v) */
	/*
	 * Durations: dest is long *, in milliseconds, seconds or hours, which is
	 * also what a bare number means; min and max are in that unit.  A value
	 * that is not a whole number of it ("1500ms" for seconds) is an error.
	 */
	OPT_DURATION_MS,
	OPT_DURATION_S,
	OPT_DURATION_H,
	OPT_ALIAS /* an old name, accepted and not listed in --help: help names the option it stands for */
};

/* An old name, still accepted, for the option of the same table called name. */
#define OPT_ALIAS_OF(old, name) { (old), 0, OPT_ALIAS, NULL, NULL, (name), NULL, 0, 0 }

struct opt {
	const char *name; /* long flag, without the dashes */
	char short_name;  /* 0 for none */
	enum opt_kind kind;
	const char *env;  /* environment variable, or NULL */
	const char *def;  /* default as text, or NULL (OPT_STR stays NULL) */
	const char *help;
	void *dest;
	long min, max;    /* OPT_INT and the durations only */
};

enum config_result {
	CONFIG_OK = 0,
	CONFIG_EXIT = 1,   /* --help or --version printed to stdout: exit 0 */
	CONFIG_ERROR = -1  /* err holds a one-line reason: exit 2 */
};

/*
 * Parses argv against opts.  Positional arguments are not allowed unless
 * npos is not NULL, in which case the first non-option index is stored there
 * (and parsing stops at the first positional argument).
 * usage is the one-line synopsis printed by --help, e.g. "order-executor [options]".
 */
enum config_result config_parse(const char *usage, const char *summary, const struct opt *opts,
    int argc, char **argv, int *npos, char *err, size_t errlen);

/*
 * config_parse() for one command of a program whose commands share one
 * config file: a key of the file that opts do not know but shared (a
 * NULL-ended list: every option name of the program's commands) holds is
 * skipped, so one file serves every command; a key in neither is still an
 * error naming the file and line.
 */
enum config_result config_parse_shared(const char *usage, const char *summary, const struct opt *opts,
    const char *const *shared, int argc, char **argv, int *npos, char *err, size_t errlen);

/* Prints the help text for opts to stdout. */
void config_help(const char *usage, const char *summary, const struct opt *opts);

#endif

/*
 * config.h - table-driven command-line and environment configuration.
 *
 * Each program describes its options once, in an array of struct opt ended
 * by an entry with name == NULL.  config_parse() applies, in increasing
 * precedence: the default, the config file, the environment variable, then
 * the flag.  It prints --help and --version from the same table.
 *
 * The config file is named by --config FILE (or $PIZZA_CONFIG); each line
 * is "option-name = value" with the long option's name ("stage-ms = 200"),
 * '#' starts a comment, and a flag option takes true/false.  An unknown
 * name or a bad value is an error naming the file and line.
 */
#ifndef PIZZA_CONFIG_H
#define PIZZA_CONFIG_H

#include <stddef.h>

enum opt_kind {
	OPT_STR,  /* dest is const char **; points into argv, environ or the default */
	OPT_INT,  /* dest is long *; checked against [min, max] */
	OPT_FLAG, /* dest is int *; set to 1 by the flag, or by env "1"/"true"/"yes" */
	OPT_COUNT /* dest is int *; incremented by each use (like -v -v) */
};

struct opt {
	const char *name; /* long flag, without the dashes */
	char short_name;  /* 0 for none */
	enum opt_kind kind;
	const char *env;  /* environment variable, or NULL */
	const char *def;  /* default as text, or NULL (OPT_STR stays NULL) */
	const char *help;
	void *dest;
	long min, max;    /* OPT_INT only */
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

/* Prints the help text for opts to stdout. */
void config_help(const char *usage, const char *summary, const struct opt *opts);

#endif

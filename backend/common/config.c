#include "config.h"

#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util.h"

/* The units a duration may carry, smallest first. */
static const struct {
	const char *suffix;
	long long ms;
} duration_units[] = {
	{ "ms", 1 },
	{ "s", 1000 },
	{ "m", 60 * 1000 },
	{ "h", 3600 * 1000 },
	{ "d", 86400 * 1000 },
};
#define NUNITS (sizeof(duration_units) / sizeof(duration_units[0]))

static int
is_duration(enum opt_kind k)
{
	return k == OPT_DURATION_MS || k == OPT_DURATION_S || k == OPT_DURATION_H;
}

/* A duration kind's unit in milliseconds, and its name in *name (what a bare number means). */
static long long
duration_unit(enum opt_kind k, const char **name)
{
	*name = k == OPT_DURATION_H ? "hours" : k == OPT_DURATION_S ? "seconds" : "milliseconds";
	return k == OPT_DURATION_H ? 3600 * 1000 : k == OPT_DURATION_S ? 1000 : 1;
}

enum duration_err { DUR_OK, DUR_SYNTAX, DUR_RANGE, DUR_FRACTION };

/*
 * Parses s, digits (a leading '-' allowed) and an optional unit of
 * duration_units, into *out in units of unit_ms milliseconds; a bare number
 * is already in them.  Fails without touching *out: DUR_SYNTAX for anything
 * else (spaces, "1.5s", "5x"), DUR_RANGE past a long, DUR_FRACTION when the
 * value is not a whole number of the unit.
 */
static enum duration_err
duration_parse(const char *s, long long unit_ms, long *out)
{
	const char *p = s;
	long long n = 0, per = unit_ms, ms;
	int neg = *p == '-';

	p += neg;
	if (*p < '0' || *p > '9')
		return DUR_SYNTAX;
	for (; *p >= '0' && *p <= '9'; p++)
		if (__builtin_mul_overflow(n, 10, &n) || __builtin_add_overflow(n, *p - '0', &n))
			return DUR_RANGE;
	if (*p != '\0') {
		size_t i;

		for (i = 0; i < NUNITS && strcmp(p, duration_units[i].suffix) != 0; i++)
			;
		if (i == NUNITS)
			return DUR_SYNTAX;
		per = duration_units[i].ms;
	}
	if (__builtin_mul_overflow(n, per, &ms))
		return DUR_RANGE;
	if (ms % unit_ms != 0)
		return DUR_FRACTION;
	ms /= unit_ms;
	if (ms > LONG_MAX)
		return DUR_RANGE;
	*out = neg ? -(long)ms : (long)ms;
	return DUR_OK;
}

/* v (in units of unit_ms) in the largest unit that holds it exactly ("1h", "90s"); 0 and below bare. */
static const char *
duration_str(char *buf, size_t n, long v, long long unit_ms)
{
	long long ms;

	if (v <= 0 || __builtin_mul_overflow((long long)v, unit_ms, &ms)) {
		snprintf(buf, n, "%ld", v);
		return buf;
	}
	for (size_t i = NUNITS; i-- > 0;)
		if (ms % duration_units[i].ms == 0) {
			snprintf(buf, n, "%lld%s", ms / duration_units[i].ms, duration_units[i].suffix);
			break;
		}
	return buf;
}

/* Sets a duration option from val; src names where val came from in the error. */
static int
set_duration(const struct opt *o, const char *val, const char *src, char *err, size_t errlen)
{
	const char *unit_name;
	long long unit = duration_unit(o->kind, &unit_name);
	char lo[32], hi[32];
	long v = 0;
	int bare;

	switch (duration_parse(val, unit, &v)) {
	case DUR_SYNTAX:
		snprintf(err, errlen, "%s: '%s' is not a duration such as 250ms, 30s, 5m, 12h or 2d (a bare number is %s)",
		    src, val, unit_name);
		return -1;
	case DUR_FRACTION:
		snprintf(err, errlen, "%s: '%s' is not a whole number of %s", src, val, unit_name);
		return -1;
	case DUR_RANGE:
		break;
	case DUR_OK:
		if (v >= o->min && v <= o->max) {
			*(long *)o->dest = v;
			return 0;
		}
		break;
	}
	/* a bare number out of range may be an old one in another unit: say which unit it was read in */
	bare = val[strspn(val, "-0123456789")] == '\0';
	snprintf(err, errlen, "%s: '%s' is not from %s to %s%s%s%s", src, val, duration_str(lo, sizeof(lo), o->min, unit),
	    duration_str(hi, sizeof(hi), o->max, unit), bare ? " (a bare number is " : "", bare ? unit_name : "",
	    bare ? ")" : "");
	return -1;
}

static int
set_value(const struct opt *o, const char *val, const char *src, char *err, size_t errlen)
{
	long v;

	switch (o->kind) {
	case OPT_STR:
		*(const char **)o->dest = val;
		return 0;
	case OPT_INT:
		if (parse_long(val, o->min, o->max, &v) != 0) {
			snprintf(err, errlen, "%s: '%s' is not a whole number from %ld to %ld", src, val,
			    o->min, o->max);
			return -1;
		}
		*(long *)o->dest = v;
		return 0;
	case OPT_FLAG:
		if (strcmp(val, "1") == 0 || strcasecmp(val, "true") == 0 || strcasecmp(val, "yes") == 0)
			*(int *)o->dest = 1;
		else if (strcmp(val, "0") == 0 || strcasecmp(val, "false") == 0 ||
		    strcasecmp(val, "no") == 0 || val[0] == '\0')
			*(int *)o->dest = 0;
		else {
			snprintf(err, errlen, "%s: '%s' is not one of 1/0, true/false, yes/no", src, val);
			return -1;
		}
		return 0;
	case OPT_COUNT:
		if (parse_long(val, 0, 10, &v) != 0) {
			snprintf(err, errlen, "%s: '%s' is not a number from 0 to 10", src, val);
			return -1;
		}
		*(int *)o->dest = (int)v;
		return 0;
	case OPT_DURATION_MS:
	case OPT_DURATION_S:
	case OPT_DURATION_H:
		return set_duration(o, val, src, err, errlen);
	case OPT_ALIAS:
		break; /* resolved before values are set */
	}
	snprintf(err, errlen, "%s: cannot be set", src);
	return -1;
}

/* The flag column of o's help line: "-v, --verbose", "    --stage DURATION". */
static void
help_flag(char *buf, size_t n, const struct opt *o)
{
	const char *arg = is_duration(o->kind) ? " DURATION" : o->kind == OPT_STR || o->kind == OPT_INT ? " ARG" : "";

	if (o->short_name)
		snprintf(buf, n, "-%c, --%s%s", o->short_name, o->name, arg);
	else
		snprintf(buf, n, "    --%s%s", o->name, arg);
}

void
config_help(const char *usage, const char *summary, const struct opt *opts)
{
	static const char *const builtin[][2] = {
		{ "    --config FILE", "read 'option = value' lines first [env PIZZA_CONFIG]" },
		{ "-h, --help", "print this help and exit" },
		{ "    --version", "print the program's name and version and exit" },
	};
	int width = 0, aliases = 0, durations = 0;
	char flag[128];

	/* the help column starts after the longest flag */
	for (const struct opt *o = opts; o->name != NULL; o++) {
		if (o->kind == OPT_ALIAS)
			continue;
		help_flag(flag, sizeof(flag), o);
		if ((int)strlen(flag) > width)
			width = (int)strlen(flag);
	}
	for (size_t i = 0; i < sizeof(builtin) / sizeof(builtin[0]); i++)
		if ((int)strlen(builtin[i][0]) > width)
			width = (int)strlen(builtin[i][0]);

	printf("usage: %s\n\n%s\n\noptions:\n", usage, summary);
	for (const struct opt *o = opts; o->name != NULL; o++) {
		const char *unit;

		if (o->kind == OPT_ALIAS) {
			aliases++;
			continue;
		}
		help_flag(flag, sizeof(flag), o);
		printf("  %-*s  %s", width, flag, o->help);
		if (is_duration(o->kind)) {
			durations++;
			duration_unit(o->kind, &unit);
			if (o->def != NULL)
				printf(" (default %s; a bare number is %s)", o->def, unit);
			else
				printf(" (a bare number is %s)", unit);
		} else if (o->def != NULL && o->kind != OPT_FLAG && o->kind != OPT_COUNT)
			printf(" (default %s)", o->def);
		if (o->env != NULL)
			printf(" [env %s]", o->env);
		printf("\n");
	}
	for (size_t i = 0; i < sizeof(builtin) / sizeof(builtin[0]); i++)
		printf("  %-*s  %s\n", width, builtin[i][0], builtin[i][1]);
	if (durations > 0)
		printf("\nA DURATION is a whole number with a unit: 250ms, 30s, 5m, 12h or 2d.\n");
	if (aliases > 0) {
		int k = 0;

		printf("\nOld names, still accepted:");
		for (const struct opt *o = opts; o->name != NULL; o++)
			if (o->kind == OPT_ALIAS)
				printf("%s --%s (--%s)", k++ ? "," : "", o->name, o->help);
		printf(".\n");
	}
	printf("\nPrecedence: flags, then environment, then the config file, then defaults.\n");
}

/* The entry named by the len bytes at name, as it is (an alias stays an alias); NULL if none. */
static const struct opt *
find_entry(const struct opt *opts, const char *name, size_t len)
{
	for (const struct opt *o = opts; o->name != NULL; o++)
		if (strlen(o->name) == len && strncmp(o->name, name, len) == 0)
			return o;
	return NULL;
}

/* The option a long name means, through an old name to the option it stands for.  NULL if none. */
static const struct opt *
find_long(const struct opt *opts, const char *name, size_t len)
{
	const struct opt *o = find_entry(opts, name, len);

	if (o != NULL && o->kind == OPT_ALIAS)
		o = find_entry(opts, o->help, strlen(o->help));
	return o != NULL && o->kind != OPT_ALIAS ? o : NULL;
}

/* Whether the NULL-ended list holds name. */
static int
in_list(const char *const *list, const char *name)
{
	for (; list != NULL && *list != NULL; list++)
		if (strcmp(*list, name) == 0)
			return 1;
	return 0;
}

static const struct opt *
find_short(const struct opt *opts, char c)
{
	for (const struct opt *o = opts; o->name != NULL; o++)
		if (o->short_name == c)
			return o;
	return NULL;
}

/*
 * Every config file text read, kept for the life of the process: OPT_STR
 * destinations point into them, and a caller may parse more than once
 * (or go on after a failed parse), so none is ever freed under them.
 */
struct config_text {
	struct config_text *next;
	char text[];
};
static struct config_text *config_texts;
static pthread_mutex_t config_lock = PTHREAD_MUTEX_INITIALIZER;

/* Reads path into a text kept by config_texts.  NULL if it cannot be read. */
static char *
keep_file(const char *path)
{
	char *text = file_read_small(path, 1 << 20);
	struct config_text *t;
	size_t n;

	if (text == NULL)
		return NULL;
	n = strlen(text);
	if ((t = malloc(sizeof(*t) + n + 1)) == NULL) {
		free(text);
		return NULL;
	}
	memcpy(t->text, text, n + 1);
	free(text);
	pthread_mutex_lock(&config_lock);
	t->next = config_texts;
	config_texts = t;
	pthread_mutex_unlock(&config_lock);
	return t->text;
}

/* Applies the config file at path; keys in shared that opts lack are skipped. */
static int
apply_file(const struct opt *opts, const char *const *shared, const char *path, char *err, size_t errlen)
{
	char *text = keep_file(path), *line, *save = NULL;
	int lineno = 0;

	if (text == NULL) {
		snprintf(err, errlen, "cannot read config file %s", path);
		return -1;
	}
	for (line = strtok_r(text, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
		char *eq, *k, *v, *end, src[320];
		const struct opt *o;

		lineno++;
		line[strcspn(line, "#\r")] = '\0';
		for (k = line; *k == ' ' || *k == '\t'; k++)
			;
		if (*k == '\0')
			continue;
		if ((eq = strchr(k, '=')) == NULL) {
			snprintf(err, errlen, "%s:%d: expected 'name = value'", path, lineno);
			goto fail;
		}
		for (end = eq; end > k && (end[-1] == ' ' || end[-1] == '\t'); end--)
			;
		*end = '\0';
		for (v = eq + 1; *v == ' ' || *v == '\t'; v++)
			;
		for (end = v + strlen(v); end > v && (end[-1] == ' ' || end[-1] == '\t'); end--)
			;
		*end = '\0';
		if ((o = find_long(opts, k, strlen(k))) == NULL) {
			if (in_list(shared, k))
				continue; /* another command's option */
			snprintf(err, errlen, "%s:%d: unknown option '%s'", path, lineno, k);
			goto fail;
		}
		snprintf(src, sizeof(src), "%s:%d", path, lineno);
		if (o->kind == OPT_COUNT) {
			long n;
			if (parse_long(v, 0, 10, &n) != 0) {
				snprintf(err, errlen, "%s: '%s' is not a number from 0 to 10", src, v);
				goto fail;
			}
			*(int *)o->dest = (int)n;
		} else if (set_value(o, v, src, err, errlen) != 0)
			goto fail;
	}
	return 0;
fail:
	return -1; /* text stays: options set from earlier lines point into it */
}

/* Every option to its default (OPT_STR to NULL, flags and counts to 0 without one).  Returns 0 or -1. */
static int
apply_defaults(const struct opt *opts, char *err, size_t errlen)
{
	for (const struct opt *o = opts; o->name != NULL; o++) {
		char src[96];

		if (o->kind == OPT_ALIAS)
			continue;
		if (o->kind == OPT_STR)
			*(const char **)o->dest = NULL;
		else if (o->kind == OPT_FLAG || o->kind == OPT_COUNT)
			*(int *)o->dest = 0;
		if (o->def != NULL) {
			snprintf(src, sizeof(src), "default of --%s", o->name);
			if (set_value(o, o->def, src, err, errlen) != 0)
				return -1;
		}
	}
	return 0;
}

/* The config file: --config FILE (before the first positional argument), else $PIZZA_CONFIG. */
static const char *
config_file(int argc, char **argv)
{
	const char *file = getenv("PIZZA_CONFIG");

	for (int i = 1; i < argc && argv[i][0] == '-'; i++) {
		if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
			file = argv[i + 1];
		else if (strncmp(argv[i], "--config=", 9) == 0)
			file = argv[i] + 9;
	}
	return file;
}

/* Every option whose environment variable is set and not empty.  Returns 0 or -1. */
static int
apply_env(const struct opt *opts, char *err, size_t errlen)
{
	for (const struct opt *o = opts; o->name != NULL; o++) {
		const char *env;

		if (o->kind != OPT_ALIAS && o->env != NULL && (env = getenv(o->env)) != NULL && env[0] != '\0' &&
		    set_value(o, env, o->env, err, errlen) != 0)
			return -1;
	}
	return 0;
}

/*
 * The option argv[i] names (-x, --name, --name=value): its entry, and in
 * *val the value given with '=' (else NULL).  NULL with err set when unknown.
 */
static const struct opt *
flag_option(const struct opt *opts, const char *a, const char **val, char *err, size_t errlen)
{
	const struct opt *o = NULL;

	*val = NULL;
	if (a[1] == '-') {
		const char *eq = strchr(a + 2, '=');
		size_t len = eq != NULL ? (size_t)(eq - (a + 2)) : strlen(a + 2);

		if ((o = find_long(opts, a + 2, len)) == NULL) {
			snprintf(err, errlen, "unknown option '%.*s' (see --help)", (int)(len + 2), a);
			return NULL;
		}
		if (eq != NULL)
			*val = eq + 1;
	} else if (a[2] != '\0' || (o = find_short(opts, a[1])) == NULL)
		snprintf(err, errlen, "unknown option '%s' (see --help)", a);
	return o;
}

/*
 * Applies the flag at argv[*i] (and its value, taking argv[*i + 1] when it
 * needs one).  Returns 0, or -1 with err set.
 */
static int
apply_flag(const struct opt *opts, int argc, char **argv, int *i, char *err, size_t errlen)
{
	const char *val;
	const struct opt *o = flag_option(opts, argv[*i], &val, err, errlen);
	char src[96];

	if (o == NULL)
		return -1;
	/* errors name the flag as typed: an old name too */
	if (argv[*i][1] == '-')
		snprintf(src, sizeof(src), "%.*s", (int)strcspn(argv[*i], "="), argv[*i]);
	else
		snprintf(src, sizeof(src), "--%s", o->name);
	if (o->kind == OPT_FLAG || o->kind == OPT_COUNT) {
		if (val != NULL) {
			snprintf(err, errlen, "%s takes no value", src);
			return -1;
		}
		if (o->kind == OPT_FLAG)
			*(int *)o->dest = 1;
		else
			(*(int *)o->dest)++;
		return 0;
	}
	if (val == NULL) {
		if (*i + 1 >= argc) {
			snprintf(err, errlen, "%s needs a value", src);
			return -1;
		}
		val = argv[++*i];
	}
	return set_value(o, val, src, err, errlen);
}

enum config_result
config_parse(const char *usage, const char *summary, const struct opt *opts, int argc, char **argv,
    int *npos, char *err, size_t errlen)
{
	return config_parse_shared(usage, summary, opts, NULL, argc, argv, npos, err, errlen);
}

enum config_result
config_parse_shared(const char *usage, const char *summary, const struct opt *opts, const char *const *shared,
    int argc, char **argv, int *npos, char *err, size_t errlen)
{
	const char *file = config_file(argc, argv);
	int i;

	/* defaults, then the config file, then the environment, then the flags */
	if (apply_defaults(opts, err, errlen) != 0 ||
	    (file != NULL && file[0] != '\0' && apply_file(opts, shared, file, err, errlen) != 0) ||
	    apply_env(opts, err, errlen) != 0)
		return CONFIG_ERROR;
	for (i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (strcmp(a, "--") == 0) {
			i++;
			break;
		}
		if (a[0] != '-' || a[1] == '\0')
			break; /* positional */
		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			config_help(usage, summary, opts);
			return CONFIG_EXIT;
		}
		if (strcmp(a, "--version") == 0) {
			/* the program's name, not the path it was started by */
			printf("%s %s\n", strrchr(argv[0], '/') != NULL ? strrchr(argv[0], '/') + 1 : argv[0],
			    PIZZA_VERSION);
			return CONFIG_EXIT;
		}
		if (strcmp(a, "--config") == 0)
			i++; /* read above */
		else if (strncmp(a, "--config=", 9) != 0 && apply_flag(opts, argc, argv, &i, err, errlen) != 0)
			return CONFIG_ERROR;
	}
	if (npos != NULL)
		*npos = i;
	else if (i < argc) {
		snprintf(err, errlen, "unexpected argument '%s' (see --help)", argv[i]);
		return CONFIG_ERROR;
	}
	return CONFIG_OK;
}

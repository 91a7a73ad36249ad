/*
 * cli.c - what every phone-sim command does with its command line.
 */
#include <errno.h>
#include <stdio.h>

#include "cli.h"

/*
 * Every option name of every phone-sim command.  One config file
 * ($PIZZA_CONFIG) serves them all: a command skips the keys only other
 * commands use, and a key no command knows is still an error.  A new option
 * of any command belongs here too; test_integ_options checks that each
 * command accepts a file holding every other command's options.
 */
static const char *const cli_all_options[] = {
	/* what order, watch, history and token share (COMMON_OPTS) */
	"user", "password", "mqtt-url", "cafile", "certfile", "keyfile", "json", "verbose",
	/* order */
	"item", "qty", "timeout", "http", "http-url", "callback-url",
	/* watch */
	"persistent", "device", "alerts", "for",
	/* history */
	"limit",
	/* load */
	"accounts", "phones", "orders", "rate", "duration", "http-conns", "procs", "per-proc", "connect-timeout", "out",
	"connect-rate", "hold",
	NULL,
};

int
cli_parse(const char *cmd, const char *usage, const char *summary, const struct opt *opts, int argc, char **argv)
{
	char err[256], *name = argv[0];
	enum config_result rc;

	/* argv[0] is the command's name: --version names the program */
	argv[0] = program_invocation_short_name;
	rc = config_parse_shared(usage, summary, opts, cli_all_options, argc, argv, NULL, err, sizeof(err));
	argv[0] = name;
	switch (rc) {
	case CONFIG_OK:
		break;
	case CONFIG_EXIT:
		return 0;
	case CONFIG_ERROR:
		fprintf(stderr, "phone-sim %s: %s\n", cmd, err);
		return 2;
	}
	return -1;
}

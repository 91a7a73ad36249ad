/*
 * cli.c - what every phone-sim command does with its command line.
 */
#include <stdio.h>

#include "cli.h"

int
cli_parse(const char *cmd, const char *usage, const char *summary, const struct opt *opts, int argc, char **argv)
{
	char err[256];

	switch (config_parse(usage, summary, opts, argc, argv, NULL, err, sizeof(err))) {
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

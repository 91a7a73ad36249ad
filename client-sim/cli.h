/*
 * cli.h - what every phone-sim command does with its command line.
 */
#ifndef PIZZA_CLI_H
#define PIZZA_CLI_H

#include "config.h"

/*
 * Parses the options of "phone-sim CMD" against opts with config_parse();
 * usage is the synopsis --help prints.  Returns -1 when the command should
 * go on, or else the exit status to end with: 0 after --help or --version
 * (printed to stdout), 2 after bad arguments (one line "phone-sim CMD:
 * reason" printed to stderr).
 */
int cli_parse(const char *cmd, const char *usage, const char *summary, const struct opt *opts, int argc,
    char **argv);

#endif

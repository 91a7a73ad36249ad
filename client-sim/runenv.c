#include "runenv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define RUNENV_MAX (16 * 1024) /* the stack writes well under 1 KiB */

/* The variables taken from the file: the ones phone-sim reads. */
static const char *const runenv_names[] = { "PIZZA_MQTT_PORT", "PIZZA_HTTP_PORT" };

int
runenv_load(void)
{
	const char *dir = getenv("PIZZA_RUN_DIR");
	char path[4096], *text, *line, *save = NULL;
	int set = 0;

	if (snprintf(path, sizeof(path), "%s/env", dir != NULL && dir[0] != '\0' ? dir : "run") >= (int)sizeof(path))
		return 0;
	if ((text = file_read_small(path, RUNENV_MAX)) == NULL)
		return 0;
	for (line = strtok_r(text, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
		char *eq = strchr(line, '=');
		long port;

		if (line[0] == '#' || eq == NULL)
			continue;
		*eq = '\0';
		for (size_t i = 0; i < sizeof(runenv_names) / sizeof(runenv_names[0]); i++) {
			if (strcmp(line, runenv_names[i]) != 0 || getenv(line) != NULL)
				continue;
			if (parse_long(eq + 1, 1, 65535, &port) == 0 && setenv(line, eq + 1, 0) == 0)
				set++;
		}
	}
	free(text);
	return set;
}

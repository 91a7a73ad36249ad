/* log: logfmt lines, and the journal's priority prefix when stderr is the journal. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

/* Runs one warning and one info line in a child whose stderr is a file; returns the file's text. */
static char *
logged(int as_journal)
{
	char path[] = "/tmp/pizza-test-log-XXXXXX";
	int fd = mkstemp(path), status;
	pid_t pid;
	char *text;

	assert_true(fd >= 0);
	if ((pid = fork()) == 0) {
		struct stat st;
		char js[64];

		dup2(fd, 2);
		fstat(2, &st);
		snprintf(js, sizeof(js), "%llu:%llu", (unsigned long long)st.st_dev, (unsigned long long)st.st_ino);
		if (as_journal)
			setenv("JOURNAL_STREAM", js, 1);
		else
			setenv("JOURNAL_STREAM", "1:2", 1); /* another stream: a child of a unit writing elsewhere */
		log_init("t", LOG_LEVEL_INFO);
		log_warn("disk nearly full", "path=%s", LOGQ("/var/lib/x \"y\""));
		log_info("ready", NULL);
		log_debug("not shown", NULL);
		_exit(0);
	}
	assert_true(waitpid(pid, &status, 0) == pid && WIFEXITED(status));
	close(fd);
	text = file_read_small(path, 4096);
	unlink(path);
	assert_non_null(text);
	return text;
}

static void
test_journal_priorities(void **state)
{
	char *text = logged(1);

	(void)state;
	assert_true(strncmp(text, "<4>ts=", 6) == 0);
	assert_non_null(strstr(text, " level=warn svc=t msg=\"disk nearly full\" path=\"/var/lib/x \\\"y\\\"\"\n<6>ts="));
	assert_non_null(strstr(text, "level=info svc=t msg=\"ready\"")); /* the last line (file_read_small() drops its newline) */
	assert_null(strstr(text, "not shown"));
	free(text);
}

static void
test_plain_lines_elsewhere(void **state)
{
	char *text = logged(0);

	(void)state;
	assert_true(strncmp(text, "ts=", 3) == 0);
	assert_null(strchr(text, '<'));
	free(text);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_journal_priorities),
		cmocka_unit_test(test_plain_lines_elsewhere),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

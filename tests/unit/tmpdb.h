/*
 * tmpdb.h - a throwaway folder for the one SQLite file a store test uses:
 * made in setup, removed (with the file's -wal, -shm and -journal) in
 * teardown, and read from a connection of the test's own.  Include it
 * after <cmocka.h>: a query that cannot be prepared fails the test.
 */
#ifndef PIZZA_TEST_TMPDB_H
#define PIZZA_TEST_TMPDB_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <sqlite3.h>

#include "util.h"

#define TMPDB_DIR_MAX 64
#define TMPDB_PATH_MAX 128

/* Makes /tmp/pizza-test-<name>-XXXXXX into dir and the path of file in it into path.  Returns 0 or -1. */
static inline int
tmpdb_make(char dir[TMPDB_DIR_MAX], char path[TMPDB_PATH_MAX], const char *name, const char *file)
{
	snprintf(dir, TMPDB_DIR_MAX, "/tmp/pizza-test-%s-XXXXXX", name);
	if (mkdtemp(dir) == NULL)
		return -1;
	snprintf(path, TMPDB_PATH_MAX, "%s/%s", dir, file);
	return 0;
}

/* Removes the file at path with its -wal, -shm and -journal, then the folder dir. */
static inline void
tmpdb_remove(const char *dir, const char *path)
{
	static const char *const suffix[] = { "", "-wal", "-shm", "-journal" };

	for (size_t i = 0; i < sizeof(suffix) / sizeof(suffix[0]); i++) {
		char p[TMPDB_PATH_MAX + 16];

		snprintf(p, sizeof(p), "%s%s", path, suffix[i]);
		unlink(p);
	}
	rmdir(dir);
}

/*
 * Runs sql on the file at path from a connection of the test's own: the
 * first column of its first row, or -1 when it returns none.
 */
static inline int64_t
tmpdb_int(const char *path, const char *sql)
{
	sqlite3 *h;
	sqlite3_stmt *st;
	int64_t v = -1;

	assert_int_equal(sqlite3_open(path, &h), SQLITE_OK);
	sqlite3_busy_timeout(h, 5000);
	assert_int_equal(sqlite3_prepare_v2(h, sql, -1, &st, NULL), SQLITE_OK);
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(h);
	return v;
}

#endif

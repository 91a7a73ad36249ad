/*
 * db.h - a SQLite file shared by the threads of one service.
 *
 * The handle is used by paho's receive thread (message handlers, publish
 * completions) and by the main loop, so every use is bracketed by
 * db_lock()/db_unlock(), which also makes each bracket one transaction
 * when db_begin()/db_commit() are used inside it.
 */
#ifndef PIZZA_DB_H
#define PIZZA_DB_H

#include <pthread.h>

#include <sqlite3.h>

struct db {
	sqlite3 *h;
	char *path;
	pthread_mutex_t lock;
};

/*
 * Opens (creating if needed) the file at path in WAL mode and runs schema
 * (idempotent CREATE ... IF NOT EXISTS statements).  Returns NULL with a
 * logged reason on failure.
 */
struct db *db_open(const char *path, const char *schema);
void db_close(struct db *db);

void db_lock(struct db *db);
void db_unlock(struct db *db);

/* Runs sql (no results).  Returns 0, or -1 with the error logged. */
int db_exec(struct db *db, const char *sql);
int db_begin(struct db *db);
int db_commit(struct db *db);
void db_rollback(struct db *db);

/*
 * Adds column (with its declaration, e.g. "stage INTEGER NOT NULL DEFAULT 0")
 * to table unless it is there already: how stores created by an older
 * version catch up.  Returns 0, or -1 (logged).
 */
int db_add_column(struct db *db, const char *table, const char *column, const char *decl);

/*
 * Prepares sql, or lends the statement kept from an earlier call; on
 * failure logs and returns NULL.  Give it back with db_done(), never
 * sqlite3_finalize().
 */
sqlite3_stmt *db_prepare(struct db *db, const char *sql);
/* Returns a statement from db_prepare() (reset, bindings cleared).  NULL is ignored. */
void db_done(sqlite3_stmt *st);

#endif

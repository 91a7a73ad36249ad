/*
 * db.h - a SQLite file shared by the threads of one service: the helper
 * every SQLite store module (order-service/store.c, notifier/store.c,
 * order-history/store.c, the outbox) is written on.  Only store modules
 * include it; services call their store, never SQLite.
 *
 * The handle is used by paho's receive thread (message handlers, publish
 * completions) and by the main loop, so every use is bracketed by
 * db_lock()/db_unlock(), which also makes each bracket one transaction
 * when db_begin()/db_commit() are used inside it.  Every function below
 * but db_open(), db_close() and db_probe_write() expects the lock to be held.
 */
#ifndef PIZZA_DB_H
#define PIZZA_DB_H

#include <stdint.h>

#include <sqlite3.h>

struct db;

/*
 * Opens (creating if needed) the file at path in WAL mode and runs schema
 * (idempotent CREATE ... IF NOT EXISTS statements).  Returns NULL with a
 * logged reason on failure.
 */
struct db *db_open(const char *path, const char *schema);
/* Finalizes the kept statements and closes the file.  NULL is ignored. */
void db_close(struct db *db);

void db_lock(struct db *db);
void db_unlock(struct db *db);

/* Runs sql (no results).  Returns 0, or -1 with the error logged. */
int db_exec(struct db *db, const char *sql);
int db_begin(struct db *db);
int db_commit(struct db *db);
void db_rollback(struct db *db);

/* Rows changed by the last INSERT, UPDATE or DELETE. */
int db_changes(struct db *db);
/* The last error's text (borrowed, valid until the next call on db). */
const char *db_errmsg(struct db *db);
/* The file's path (borrowed, valid until db_close()). */
const char *db_path(struct db *db);

/*
 * Proves the store can write now: updates one row of a small table in a
 * transaction of its own and commits it, as a health check must (a write
 * lock alone succeeds on a full disk).  Takes the db lock itself (call
 * without it).  Returns 0, or -1 (logged at debug).
 */
int db_probe_write(struct db *db);

/*
 * Adds column (with its declaration, e.g. "stage INTEGER NOT NULL DEFAULT 0")
 * to table unless it is there already: how stores created by an older
 * version catch up.  Returns 0, or -1 (logged).
 */
int db_add_column(struct db *db, const char *table, const char *column, const char *decl);

/*
 * Prepares sql, or lends the statement kept from an earlier call with the
 * same text; on failure logs and returns NULL.  Give it back with
 * db_done(db, st), never sqlite3_finalize().  The statements are kept in
 * db itself (at most DB_STMT_CACHE; more are prepared and finalized each
 * time), found by the text's address first, so pass string literals.
 */
#define DB_STMT_CACHE 64
sqlite3_stmt *db_prepare(struct db *db, const char *sql);
/* Returns a statement from db_prepare() (reset, bindings cleared).  NULL is ignored. */
void db_done(struct db *db, sqlite3_stmt *st);

/*
 * Runs st (an INSERT, UPDATE or DELETE prepared by db_prepare()) and gives
 * it back.  Returns the rows it changed, or -1 with the error logged
 * naming what (a short description such as "insert order").
 */
int db_step_done(struct db *db, sqlite3_stmt *st, const char *what);

#endif

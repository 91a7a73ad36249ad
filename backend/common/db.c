#include "db.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"

/*
 * Prepared statements are kept and reused: preparing one costs more than
 * running it (a fifth of order-service's CPU at 600 orders/s went to
 * sqlite3_prepare_v2).  An entry is lent out by db_prepare() and returned by
 * db_done(); a statement still lent out when the same SQL is asked for
 * again (nested use) is prepared afresh and kept too, while there is room
 * (DB_STMT_CACHE), else finalized on return.  The cache belongs to its
 * handle and is guarded by the db lock its callers hold.
 */
struct db_stmt {
	const char *key; /* the caller's SQL text: found by address before strcmp */
	char *sql;
	sqlite3_stmt *st;
	int lent;
};

struct db {
	sqlite3 *h;
	char *path;
	pthread_mutex_t lock;
	struct db_stmt cache[DB_STMT_CACHE];
	int ncache;
};

#define DB_HEALTH_SCHEMA "CREATE TABLE IF NOT EXISTS db_health (id INTEGER PRIMARY KEY CHECK (id = 1), at_ms INTEGER NOT NULL);"

struct db *
db_open(const char *path, const char *schema)
{
	struct db *db;

	if ((db = calloc(1, sizeof(*db))) == NULL || (db->path = strdup(path)) == NULL) {
		free(db);
		return NULL;
	}
	pthread_mutex_init(&db->lock, NULL);
	if (sqlite3_open_v2(path, &db->h, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
		NULL) != SQLITE_OK) {
		log_error("cannot open database", "path=%s err=%s", LOGQ(path),
		    LOGQ(db->h != NULL ? sqlite3_errmsg(db->h) : "out of memory"));
		goto fail;
	}
	sqlite3_busy_timeout(db->h, 5000);
	if (db_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;") != 0 ||
	    db_exec(db, DB_HEALTH_SCHEMA) != 0 || (schema != NULL && db_exec(db, schema) != 0))
		goto fail;
	return db;
fail:
	db_close(db);
	return NULL;
}

void
db_close(struct db *db)
{
	if (db == NULL)
		return;
	for (int i = 0; i < db->ncache; i++) {
		sqlite3_finalize(db->cache[i].st);
		free(db->cache[i].sql);
	}
	sqlite3_close(db->h);
	pthread_mutex_destroy(&db->lock);
	free(db->path);
	free(db);
}

void
db_lock(struct db *db)
{
	pthread_mutex_lock(&db->lock);
}

void
db_unlock(struct db *db)
{
	pthread_mutex_unlock(&db->lock);
}

int
db_exec(struct db *db, const char *sql)
{
	char *msg = NULL;

	if (sqlite3_exec(db->h, sql, NULL, NULL, &msg) != SQLITE_OK) {
		log_error("database error", "path=%s err=%s", LOGQ(db->path), LOGQ(msg != NULL ? msg : "?"));
		sqlite3_free(msg);
		return -1;
	}
	return 0;
}

int
db_begin(struct db *db)
{
	return db_exec(db, "BEGIN IMMEDIATE");
}

int
db_commit(struct db *db)
{
	return db_exec(db, "COMMIT");
}

void
db_rollback(struct db *db)
{
	sqlite3_exec(db->h, "ROLLBACK", NULL, NULL, NULL);
}

int
db_changes(struct db *db)
{
	return sqlite3_changes(db->h);
}

const char *
db_errmsg(struct db *db)
{
	return sqlite3_errmsg(db->h);
}

const char *
db_path(struct db *db)
{
	return db->path;
}

static int
probe_locked(struct db *db)
{
	sqlite3_stmt *st;
	int rc = -1;

	if (sqlite3_exec(db->h, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
		goto out;
	if ((st = db_prepare(db, "INSERT OR REPLACE INTO db_health(id, at_ms) VALUES (1, ?)")) == NULL)
		goto rollback;
	sqlite3_bind_int64(st, 1, now_ms());
	/* not db_step_done(): a failing probe is polled, and logs at debug below */
	if (sqlite3_step(st) != SQLITE_DONE) {
		db_done(db, st);
		goto rollback;
	}
	db_done(db, st);
	if (sqlite3_exec(db->h, "COMMIT", NULL, NULL, NULL) == SQLITE_OK)
		rc = 0;
	else
rollback:
		sqlite3_exec(db->h, "ROLLBACK", NULL, NULL, NULL);
out:
	if (rc != 0)
		log_debug("store not writable", "path=%s err=%s", LOGQ(db->path), LOGQ(sqlite3_errmsg(db->h)));
	return rc;
}

int
db_probe_write(struct db *db)
{
	int rc;

	db_lock(db);
	rc = probe_locked(db);
	db_unlock(db);
	return rc;
}

int
db_add_column(struct db *db, const char *table, const char *column, const char *decl)
{
	char sql[512];
	sqlite3_stmt *st;
	int found = 0;

	snprintf(sql, sizeof(sql), "SELECT 1 FROM pragma_table_info('%s') WHERE name = ?", table);
	if (sqlite3_prepare_v2(db->h, sql, -1, &st, NULL) != SQLITE_OK) {
		log_error("database error", "path=%s err=%s", LOGQ(db->path), LOGQ(sqlite3_errmsg(db->h)));
		return -1;
	}
	sqlite3_bind_text(st, 1, column, -1, SQLITE_STATIC);
	found = sqlite3_step(st) == SQLITE_ROW;
	sqlite3_finalize(st);
	if (found)
		return 0;
	snprintf(sql, sizeof(sql), "ALTER TABLE %s ADD COLUMN %s", table, decl);
	return db_exec(db, sql);
}

/* The kept, idle entry for sql, or NULL. */
static struct db_stmt *
cache_find(struct db *db, const char *sql)
{
	for (int i = 0; i < db->ncache; i++)
		if (db->cache[i].key == sql && !db->cache[i].lent)
			return &db->cache[i];
	for (int i = 0; i < db->ncache; i++)
		if (!db->cache[i].lent && strcmp(db->cache[i].sql, sql) == 0)
			return &db->cache[i];
	return NULL;
}

sqlite3_stmt *
db_prepare(struct db *db, const char *sql)
{
	struct db_stmt *e = cache_find(db, sql);
	sqlite3_stmt *st = NULL;

	if (e != NULL) {
		e->lent = 1;
		return e->st;
	}
	if (sqlite3_prepare_v3(db->h, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL) != SQLITE_OK) {
		log_error("database error", "path=%s err=%s", LOGQ(db->path), LOGQ(sqlite3_errmsg(db->h)));
		return NULL;
	}
	if (db->ncache < DB_STMT_CACHE && (db->cache[db->ncache].sql = strdup(sql)) != NULL) {
		e = &db->cache[db->ncache++];
		e->key = sql;
		e->st = st;
		e->lent = 1;
	}
	return st;
}

void
db_done(struct db *db, sqlite3_stmt *st)
{
	if (st == NULL)
		return;
	for (int i = 0; i < db->ncache; i++)
		if (db->cache[i].st == st) {
			sqlite3_reset(st);
			sqlite3_clear_bindings(st);
			db->cache[i].lent = 0;
			return;
		}
	sqlite3_finalize(st);
}

int
db_step_done(struct db *db, sqlite3_stmt *st, const char *what)
{
	int rc = sqlite3_step(st) == SQLITE_DONE ? sqlite3_changes(db->h) : -1;

	if (rc < 0)
		log_error("database error", "path=%s op=%s err=%s", LOGQ(db->path), LOGQ(what),
		    LOGQ(sqlite3_errmsg(db->h)));
	db_done(db, st);
	return rc;
}

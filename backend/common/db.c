#include "db.h"

#include <pthread.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "log.h"

static void cache_drop(sqlite3 *h);

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
		log_error("cannot open database", "path=%s err=\"%s\"", path,
		    db->h != NULL ? sqlite3_errmsg(db->h) : "out of memory");
		goto fail;
	}
	sqlite3_busy_timeout(db->h, 5000);
	if (db_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;") != 0 ||
	    (schema != NULL && db_exec(db, schema) != 0))
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
	cache_drop(db->h);
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
		log_error("database error", "path=%s err=\"%s\"", db->path, msg != NULL ? msg : "?");
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
db_add_column(struct db *db, const char *table, const char *column, const char *decl)
{
	char sql[512];
	sqlite3_stmt *st;
	int found = 0;

	snprintf(sql, sizeof(sql), "SELECT 1 FROM pragma_table_info('%s') WHERE name = ?", table);
	if ((st = db_prepare(db, sql)) == NULL)
		return -1;
	sqlite3_bind_text(st, 1, column, -1, SQLITE_STATIC);
	found = sqlite3_step(st) == SQLITE_ROW;
	db_done(st);
	if (found)
		return 0;
	snprintf(sql, sizeof(sql), "ALTER TABLE %s ADD COLUMN %s", table, decl);
	return db_exec(db, sql);
}

/*
 * Prepared statements are kept and reused: preparing one costs more than
 * running it (a fifth of order-service's CPU at 600 orders/s went to
 * sqlite3_prepare_v2).  An entry is lent out by db_prepare() and returned by
 * db_done(); a statement still lent out when the same SQL is asked for
 * again (nested use) is prepared afresh and finalized on return.
 */
#define STMT_CACHE 64
static struct {
	sqlite3 *h;
	char *sql;
	sqlite3_stmt *st;
	int lent;
} cache[STMT_CACHE];
static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;

sqlite3_stmt *
db_prepare(struct db *db, const char *sql)
{
	sqlite3_stmt *st = NULL;
	int free_slot = -1;

	pthread_mutex_lock(&cache_lock);
	for (int i = 0; i < STMT_CACHE; i++) {
		if (cache[i].h == NULL) {
			if (free_slot < 0)
				free_slot = i;
		} else if (cache[i].h == db->h && !cache[i].lent && strcmp(cache[i].sql, sql) == 0) {
			cache[i].lent = 1;
			pthread_mutex_unlock(&cache_lock);
			return cache[i].st;
		}
	}
	if (sqlite3_prepare_v3(db->h, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL) != SQLITE_OK) {
		pthread_mutex_unlock(&cache_lock);
		log_error("database error", "path=%s err=\"%s\"", db->path, sqlite3_errmsg(db->h));
		return NULL;
	}
	if (free_slot >= 0 && (cache[free_slot].sql = strdup(sql)) != NULL) {
		cache[free_slot].h = db->h;
		cache[free_slot].st = st;
		cache[free_slot].lent = 1;
	}
	pthread_mutex_unlock(&cache_lock);
	return st;
}

void
db_done(sqlite3_stmt *st)
{
	if (st == NULL)
		return;
	pthread_mutex_lock(&cache_lock);
	for (int i = 0; i < STMT_CACHE; i++) {
		if (cache[i].st == st && cache[i].h != NULL) {
			sqlite3_reset(st);
			sqlite3_clear_bindings(st);
			cache[i].lent = 0;
			pthread_mutex_unlock(&cache_lock);
			return;
		}
	}
	pthread_mutex_unlock(&cache_lock);
	sqlite3_finalize(st);
}

/* Finalizes the statements kept for handle h (before it is closed). */
static void
cache_drop(sqlite3 *h)
{
	pthread_mutex_lock(&cache_lock);
	for (int i = 0; i < STMT_CACHE; i++) {
		if (cache[i].h == h) {
			sqlite3_finalize(cache[i].st);
			free(cache[i].sql);
			memset(&cache[i], 0, sizeof(cache[i]));
		}
	}
	pthread_mutex_unlock(&cache_lock);
}

/*
 * outbox.h - the transactional outbox: publish what a transaction decided,
 * exactly when it committed, and keep retrying until the broker has it.
 *
 * A service adds messages with outbox_add() inside the same database
 * transaction as the state change they announce, so a crash can lose
 * neither without the other.  outbox_flush() hands new rows to the broker;
 * a row is deleted only after the broker's PUBACK, and rows still
 * unacknowledged after retry_ms are sent again (consumers deduplicate).
 */
#ifndef PIZZA_OUTBOX_H
#define PIZZA_OUTBOX_H

#include <stddef.h>
#include <stdint.h>

#include "db.h"
#include "mq.h"

#define OUTBOX_SCHEMA                                                                 \
	"CREATE TABLE IF NOT EXISTS outbox ("                                         \
	"  id INTEGER PRIMARY KEY AUTOINCREMENT,"                                     \
	"  topic TEXT NOT NULL, payload BLOB NOT NULL,"                               \
	"  qos INTEGER NOT NULL, retained INTEGER NOT NULL, expiry_s INTEGER NOT NULL," \
	"  created_ms INTEGER NOT NULL);"

struct outbox;

/* Creates an outbox over db (whose schema includes OUTBOX_SCHEMA) publishing on mq. */
struct outbox *outbox_new(struct db *db, struct mq *mq, int64_t retry_ms);
void outbox_free(struct outbox *ob);

/*
 * Adds one message.  Call with the db locked, inside the caller's
 * transaction.  Returns 0, or -1 (logged) on a database error, in which
 * case the caller rolls back.
 */
int outbox_add(struct db *db, const char *topic, const void *payload, size_t len, int qos,
    int retained, unsigned expiry_s);

/*
 * Deletes acknowledged rows, publishes rows not yet handed to the broker,
 * and re-publishes rows unacknowledged for retry_ms.  Takes the db lock
 * itself (call without it).  Safe from any thread.  Returns the number
 * of messages handed to the broker, or -1 on a database error.
 */
int outbox_flush(struct outbox *ob);

/*
 * Asks the thread in outbox_wait() to flush soon: call after committing
 * rows from a thread that should not publish itself (a request thread).
 * Safe from any thread.
 */
void outbox_kick(struct outbox *ob);

/*
 * Waits up to timeout_ms for a kick: a committed row, or room again in the
 * in-flight window after a flush stopped at it (rows paho gave up on wait
 * for the caller's next timed flush).
 * Returns 1 when kicked, 0 on timeout.  The caller then calls outbox_flush().
 */
int outbox_wait(struct outbox *ob, int timeout_ms);

/* Rows not yet acknowledged by the broker (the backlog), as of the last count (at most a second old). */
int64_t outbox_backlog(struct outbox *ob);

#endif

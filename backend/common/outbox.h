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

/*
 * Holds new rows back until until_ms (mono_ms()): outbox_flush() publishes
 * nothing meanwhile (the rows wait in the table, durably, and go out in
 * order once the hold ends; the waiting thread's next timed flush).  A
 * later until_ms extends the hold, an earlier one ends it sooner.  For an
 * intake that gives orders coming in priority over the work they cause.
 * A PostgreSQL outbox is never held: its table is shared by instances that
 * each publish it, and its leases are renewed by flushing.
 */
void outbox_hold(struct outbox *ob, int64_t until_ms);
/* 1 while outbox_hold() holds rows back. */
int outbox_held(struct outbox *ob);

/* Rows not yet acknowledged by the broker (the backlog), as of the last count (at most a second old). */
int64_t outbox_backlog(struct outbox *ob);

/*
 * The outbox on PostgreSQL (outbox_pg.c, links libpq): the same contract,
 * for several processes sharing one table.  outbox_free(), outbox_flush(),
 * outbox_kick(), outbox_wait() and outbox_backlog() work on either kind.
 *
 * libpq's own typedef, repeated (allowed in C11) so that this header needs
 * no libpq include path where PostgreSQL is not used; callers of the
 * functions below include <libpq-fe.h> themselves.
 */
typedef struct pg_conn PGconn;

/* The outbox table on PostgreSQL; run it in the store's schema creation. */
#define OUTBOX_PG_SCHEMA                                                                                      \
	"CREATE TABLE IF NOT EXISTS outbox (id BIGSERIAL PRIMARY KEY, topic TEXT NOT NULL, payload BYTEA NOT NULL, " \
	"qos INT NOT NULL, retained BOOLEAN NOT NULL, expiry_s INT NOT NULL, created_ms BIGINT NOT NULL, "          \
	"claimed_by TEXT, claimed_until_ms BIGINT NOT NULL DEFAULT 0);"

/*
 * Adds one message inside the caller's open transaction on conn.  Returns
 * 0, or -1 (logged): the caller rolls back.
 */
int outbox_pg_add(PGconn *conn, const char *topic, const void *payload, size_t len, int qos, int retained,
    unsigned expiry_s);

/*
 * An outbox over the PostgreSQL database at conninfo (a postgresql:// URL
 * or a conninfo string; its own connection, re-established when lost),
 * publishing on mq.  Several processes may run one over the same table:
 * each claims a batch of rows (FOR UPDATE SKIP LOCKED, claimed_by = its
 * instance id, claimed_until_ms = now + lease), publishes them, and deletes
 * each row on its PUBACK; rows whose lease ran out (a dead instance) are
 * claimed again by anyone.  The lease is retry_ms, renewed by each flush
 * while paho is completing the instance's publishes.  A row is published
 * by one instance at a time; order across instances is not kept.  The
 * table must exist (OUTBOX_PG_SCHEMA).  NULL on error (logged).
 */
struct outbox *outbox_pg_new(const char *conninfo, struct mq *mq, int64_t retry_ms);

#endif

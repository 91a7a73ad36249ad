/*
 * outbox_impl.h - what the outbox's two kinds share (outbox.c: SQLite,
 * outbox_pg.c: PostgreSQL).  Only outbox*.c include it.
 *
 * outbox.c holds the publishing half (the in-flight count, the rows paho
 * acknowledged or gave up on, the kick) and the SQLite table; a PostgreSQL
 * outbox plugs its flush and its cleanup in through ops, so programs that
 * never call outbox_pg_new() do not link libpq.
 */
#ifndef PIZZA_OUTBOX_IMPL_H
#define PIZZA_OUTBOX_IMPL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "outbox.h"

#define OUTBOX_BATCH 256

enum outbox_kind { OUTBOX_SQLITE = 0, OUTBOX_PG };

struct outbox_ops {
	int (*flush)(struct outbox *ob); /* outbox_flush() */
	void (*fini)(struct outbox *ob); /* frees what impl holds (outbox_free() does the rest) */
};

/*
 * The outbox hands mq only what mq's publish window can take now
 * (mq_window_free()): the table is a durable queue already, so a backlog
 * of thousands waits there rather than in memory.
 */
struct outbox {
	enum outbox_kind kind;
	const struct outbox_ops *ops; /* NULL for SQLite */
	void *impl;                   /* the PostgreSQL side's own state */
	struct db *db;                /* SQLite */
	struct mq *mq;
	int64_t retry_ms;
	pthread_mutex_t lock; /* guards the fields below; never held across paho or database calls */
	int64_t high;         /* highest row id handed to the broker (SQLite) */
	int64_t *acked;       /* row ids acknowledged, waiting to be deleted */
	size_t nacked, capacked;
	int64_t last_retry;
	int64_t backlog;
	int64_t last_count;   /* mono_ms() of the last backlog count */
	/*
	 * Publishes paho holds for us.  A row in flight is not "unacknowledged"
	 * in the retry sense: under load thousands wait in paho's queue, and
	 * sending them again only doubles the queue (a retry storm, seen at
	 * 28,000 rows).  Rows come back through failed[] when paho gives up on
	 * them; the timed scan for old rows runs only when nothing is in flight
	 * (rows from before a restart) or when paho has completed nothing for
	 * retry_ms (it may have lost some).
	 */
	int64_t inflight;
	int64_t last_done; /* mono_ms() of paho's last completion */
	int64_t *failed;
	size_t nfailed, capfailed;
	/*
	 * outbox_kick() wakes outbox_wait(): a committed row, or room again in
	 * mq's publish window after a flush that had to stop at it.
	 */
	pthread_cond_t wake;
	int kicked;
	int starved; /* the last flush stopped at the window: a completion kicks */
	int64_t hold_until; /* mono_ms() until which outbox_flush() publishes nothing (outbox_hold()) */
};

struct outbox_row {
	int64_t id;
	char *topic;
	void *payload;
	size_t len;
	int qos, retained;
	unsigned expiry_s;
};

/* Sets up the shared half of a zeroed ob.  0, or -1 (nothing to free). */
int outbox_init(struct outbox *ob, struct mq *mq, int64_t retry_ms);

/* Appends id to a growing array; on allocation failure the id is dropped (the row then waits for the timed scan). */
void outbox_push_id(int64_t **arr, size_t *n, size_t *cap, int64_t id);

/*
 * Publishes rows (no lock held) and frees their topics and payloads; each
 * row's id comes back in acked[] on its PUBACK or in failed[] when paho
 * gave up on it.  Returns how many paho took.
 */
int outbox_send_rows(struct outbox *ob, struct outbox_row *rows, size_t n);

#endif

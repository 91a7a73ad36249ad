/*
 * intake.h - the one code path by which an order enters the system,
 * whichever front door (MQTT request/response, HTTP) it came through.
 *
 * intake_place() validates the request, records the order and its
 * OrderPlaced event in one SQLite transaction (the outbox), and only then
 * reports success; the event is published from the outbox, so an order
 * that was answered "accepted" is never lost by a crash after the answer.
 */
#ifndef PIZZA_INTAKE_H
#define PIZZA_INTAKE_H

#include <pthread.h>
#include <stddef.h>

#include <jansson.h>

#include "db.h"
#include "event.h"
#include "outbox.h"

#define INTAKE_SCHEMA                                                              \
	OUTBOX_SCHEMA                                                              \
	"CREATE TABLE IF NOT EXISTS orders ("                                      \
	"  order_id TEXT PRIMARY KEY, user_id TEXT NOT NULL, items TEXT NOT NULL," \
	"  callback_url TEXT, via TEXT NOT NULL, created_ms INTEGER NOT NULL,"     \
	"  event TEXT NOT NULL DEFAULT '', stage INTEGER NOT NULL DEFAULT 0,"     \
	"  progress_ms INTEGER NOT NULL DEFAULT 0, republished INTEGER NOT NULL DEFAULT 0);" \
	"CREATE INDEX IF NOT EXISTS orders_user ON orders(user_id, order_id);"    \
	"CREATE TABLE IF NOT EXISTS idempotency ("                                 \
	"  user_id TEXT NOT NULL, key TEXT NOT NULL, request_hash TEXT NOT NULL,"  \
	"  order_id TEXT NOT NULL, created_ms INTEGER NOT NULL,"                   \
	"  PRIMARY KEY (user_id, key));"

enum intake_status {
	INTAKE_OK = 0,
	INTAKE_INVALID,  /* the request is wrong: error/detail say why, nothing was recorded */
	INTAKE_INTERNAL, /* our fault (database): nothing was recorded, the client may retry */
	INTAKE_CONFLICT, /* the idempotency key was used before with another request */
};

#define IDEMPOTENCY_KEY_MAX 255

struct intake_result {
	enum intake_status status;
	char order_id[NAME_MAX_LEN + 1];
	int replayed;       /* INTAKE_OK for a repeated idempotency key: nothing new was placed */
	const char *error;  /* stable code: invalid_json, invalid_field, too_large, idempotency_conflict, internal */
	char detail[256];   /* human text naming the field */
};

struct allowlist;

struct intake_pending;

struct intake {
	struct db *db;
	struct outbox *outbox;
	const struct allowlist *callback_allow; /* exceptions to the callback address policy; may be NULL */
	/* group commit (intake.c committer()): orders waiting for the next transaction */
	pthread_mutex_t group_lock;
	pthread_cond_t group_work, group_done;
	struct intake_pending *queue;
	pthread_t group_thread;
	int started, stopping;
	int committing; /* the committer, or a waiting intake_place() caller, is recording a batch */
};

#define INTAKE_INIT                                                                                  \
	{                                                                                            \
		.group_lock = PTHREAD_MUTEX_INITIALIZER, .group_work = PTHREAD_COND_INITIALIZER,     \
		.group_done = PTHREAD_COND_INITIALIZER                                               \
	}

/*
 * Starts the committer thread that records orders (intake_start), or
 * records what is queued and stops it (intake_stop).  intake_place*() need
 * it running; db and outbox must be set first.
 */
int intake_start(struct intake *in);
void intake_stop(struct intake *in);

typedef void (*intake_done)(void *arg, const struct intake_result *res);

/*
 * Places an order for user_id (already authenticated by the front door)
 * from request, a borrowed JSON object with "items" and an optional
 * "callback_url" (and an optional "user_id" that must equal user_id).
 * via names the front door ("mqtt", "http").  idem_key, when not NULL, is
 * the client's idempotency key (printable ASCII, 1 to IDEMPOTENCY_KEY_MAX
 * characters): a repeat of the same request with the same key answers the
 * first order id again (res->replayed) and places nothing; the same key with
 * another request is INTAKE_CONFLICT.  Fills *res; on INTAKE_OK the order is
 * durably recorded and its OrderPlaced queued.
 */
void intake_place(struct intake *in, const char *user_id, const json_t *request, const char *via,
    const char *idem_key, struct intake_result *res);

/*
 * The same without waiting: done(arg, res) runs on the committer thread
 * once the order is recorded (or refused by the store), or at once, before
 * this returns, when the request is refused without reaching the store.
 */
void intake_place_async(struct intake *in, const char *user_id, const json_t *request, const char *via,
    const char *idem_key, intake_done done, void *arg);

/*
 * The same from raw bytes: refuses payloads over EVENT_MAX_BYTES and
 * malformed JSON with INTAKE_INVALID.
 */
void intake_place_raw(struct intake *in, const char *user_id, const void *buf, size_t len,
    const char *via, const char *idem_key, struct intake_result *res);

/*
 * Validates a request without recording anything: fills ev with the
 * OrderPlaced it would publish and returns 0, or returns -1 with res set
 * to INTAKE_INVALID and a detail naming the field.
 */
int intake_validate(const char *user_id, const json_t *request, struct event *ev, struct intake_result *res);

/* 1 if key is a usable idempotency key (printable ASCII, 1..IDEMPOTENCY_KEY_MAX), else 0. */
int intake_key_valid(const char *key);

/* Forgets idempotency keys older than max_age_ms. Returns how many, or -1. */
int intake_expire_keys(struct intake *in, int64_t max_age_ms);

/*
 * Opens the order store at path (creating it, and adding what older
 * versions lacked).  NULL on error (logged).
 */
struct db *intake_open(const char *path);

/*
 * Supervision: the order-service watches every order's progress and
 * publishes an order again when it stalls, so a lost OrderPlaced, a dead
 * executor or a broker restart cannot leave it unfinished.
 *
 * intake_progress() records a status: returns 1 if it moved the order
 * forward, 0 if the order already was that far (a duplicate), 2 if the
 * order is unknown here, -1 on a database error.
 */
int intake_progress(struct intake *in, const struct event *status);

/*
 * Publishes again (through the outbox, the original OrderPlaced verbatim)
 * every order not yet ready whose last progress is older than its deadline:
 * accept_ms while no executor has accepted it, stage_ms once one has.
 * Each republish restarts that order's clock.  Returns how many, or -1.
 */
int intake_supervise(struct intake *in, int64_t accept_ms, int64_t stage_ms);

#endif

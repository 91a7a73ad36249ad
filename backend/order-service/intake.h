/*
 * intake.h - the one code path by which an order enters the system,
 * whichever front door (MQTT request/response, HTTP) it came through.
 *
 * intake_place() validates the request, has the store record the order
 * and its OrderPlaced event in one transaction (the outbox), and only then
 * reports success; the event is published from the outbox, so an order
 * that was answered "accepted" is never lost by a crash after the answer.
 * Orders that arrive together are recorded in one transaction by the
 * intake's committer thread (group commit, pizza_intake_batch_orders).
 */
#ifndef PIZZA_INTAKE_H
#define PIZZA_INTAKE_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "event.h"

enum intake_status {
	INTAKE_OK = 0,
	INTAKE_INVALID,  /* the request is wrong: error/detail say why, nothing was recorded */
	INTAKE_INTERNAL, /* our fault (database): nothing was recorded, the client may retry */
	INTAKE_CONFLICT, /* the idempotency key was used before with another request */
	INTAKE_LIMITED,  /* the user is over its order limit (intake_limit()): retry_after_s, nothing recorded */
};

#define IDEMPOTENCY_KEY_MAX 255

struct intake_result {
	enum intake_status status;
	char order_id[NAME_MAX_LEN + 1];
	int replayed;       /* INTAKE_OK for a repeated idempotency key: nothing new was placed */
	const char *error;  /* stable code: invalid_json, invalid_field, too_large, idempotency_conflict,
	                       too_many_requests, internal */
	int retry_after_s;  /* INTAKE_LIMITED: when the user may order again */
	char detail[256];   /* human text naming the field */
};

struct allowlist;
struct order_store;
struct outbox;
struct intake;

/*
 * Creates the intake recording orders in store through outbox (both
 * borrowed; the outbox over the same store), checking callback addresses
 * against callback_allow (exceptions to the address policy, borrowed; may
 * be NULL), and starts its committer thread.  Registers the intake's
 * metrics (once per process).  NULL (logged) out of memory or when the
 * thread cannot start.
 */
struct intake *intake_new(struct order_store *store, struct outbox *outbox, const struct allowlist *callback_allow);

/*
 * Records what is queued, answers it, and stops the committer: every
 * intake_place*() after this is answered INTAKE_INTERNAL at once (nothing
 * recorded; the client may retry).  Idempotent.
 */
void intake_stop(struct intake *in);

/* Stops the intake if it runs and frees it.  NULL is ignored. */
void intake_free(struct intake *in);

/*
 * Limits each user to per_user orders a second on average, burst at once,
 * over both front doors together (per_user <= 0: no limit, the default).
 * Past it a request is refused with INTAKE_LIMITED before anything else is
 * looked at.  Call before traffic; later calls change the limit.
 */
void intake_limit(struct intake *in, double per_user, double burst);

/* A batch of at least this many orders: the intake is busy (intake_first()). */
#define INTAKE_BUSY_BATCH 8
/* How long one busy batch holds the outbox (ms); each busy batch extends it. */
#define INTAKE_HOLD_MS 500

/*
 * Intake first: while orders arrive faster than one commit takes (a batch
 * of INTAKE_BUSY_BATCH or more), the outbox holds their OrderPlaced back, for
 * max_ms of one busy spell at most, so that the pipeline's work does not
 * take the CPU that answering the orders needs (a flash sale).  The orders
 * are recorded and answered as ever; they go out in order once the spell
 * ends or max_ms has passed.  max_ms <= 0: never (the default).  Call
 * before traffic.
 */
void intake_first(struct intake *in, int64_t max_ms);
/* The main loop's call: logs the end of a busy spell when it ends rather than at the next order. */
void intake_tick(struct intake *in);

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
 * durably recorded and its OrderPlaced queued.  Waits for the answer: when
 * no commit is under way, the calling thread records the queue itself and
 * publishes it at once (the MQTT front door); else the committer does.
 */
void intake_place(struct intake *in, const char *user_id, const json_t *request, const char *via,
    const char *idem_key, struct intake_result *res);

/*
 * The same without waiting: done(arg, res) runs on the thread that records
 * the order (the committer, or a caller of intake_place() recording the
 * queue) once it is recorded (or refused by the store), or at once, before
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

/*
 * Forgets idempotency keys older than max_age_ms.  Returns how many, or -1
 * on a store failure (logged; nothing forgotten).
 */
int intake_expire_keys(struct intake *in, int64_t max_age_ms);

#endif

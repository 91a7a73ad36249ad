/*
 * store.h - order-service's store: every order it accepted, the
 * idempotency keys of HTTP clients, each order's progress for supervision,
 * the outbox of OrderPlaced events, and the accounts.  All of
 * order-service's SQL is in store*.c: store.c picks the backend from the
 * database target, a SQLite file (store_sqlite.c, one instance) or a
 * postgresql:// URL (store_pg.c, shared by several instances).
 *
 * An order and its OrderPlaced are recorded in one transaction (the
 * transactional outbox), so an order that was answered "accepted" is
 * published even if the process dies right after the answer.
 *
 * Times are wall-clock milliseconds (now_ms()) passed in by the caller.
 * Safe to call from several threads: each function takes the store's lock
 * itself.  Failures are logged by the store.
 */
#ifndef PIZZA_ORDER_STORE_H
#define PIZZA_ORDER_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

struct order_store;
struct outbox;
struct mq;
struct db;

enum ostore_result {
	OSTORE_OK = 0,    /* done: recorded, or moved forward */
	OSTORE_REPLAYED,  /* the idempotency key came with this request before: nothing new, the first order given back */
	OSTORE_CONFLICT,  /* the idempotency key came with another request before: nothing recorded */
	OSTORE_DUP,       /* the order was that far already: nothing changed */
	OSTORE_NOT_FOUND, /* no such order: nothing changed */
	OSTORE_FAIL,      /* database error (logged): nothing changed */
};

/*
 * Opens the store at target, a SQLite file path or a postgresql:// (or
 * postgres://) URL, creating it (its schema) and adding what stores made
 * by an older version lack.  Another URL scheme is refused.  Returns a new
 * store for ostore_close(), or NULL (logged, without a password).
 */
struct order_store *ostore_open(const char *target);

/* Writes target into buf as it may be logged: a PostgreSQL URL without its password.  Returns buf. */
const char *ostore_label(const char *target, char *buf, size_t n);

/*
 * 1 when several order-service instances may share this store (PostgreSQL):
 * the MQTT intake is then a shared subscription, and other instances'
 * account changes must be reloaded (ostore_accounts_version()).  0 on SQLite.
 */
int ostore_shared(const struct order_store *s);

/* Closes the store (free every outbox over it first).  NULL is ignored. */
void ostore_close(struct order_store *s);

/*
 * A new outbox over the store's database, publishing on mq (which it
 * borrows): what ostore_record() and ostore_republish_stalled() add goes out
 * through it (on PostgreSQL over a connection of its own, claiming rows
 * with a lease, so a dead instance's rows are published by another).  The
 * caller frees it with outbox_free() before ostore_close().  NULL on
 * failure (logged).
 */
struct outbox *ostore_outbox_new(struct order_store *s, struct mq *mq, int64_t retry_ms);

/* 0 when the store can write now (one small write, committed), else -1: for /healthz. */
int ostore_probe(void *s);

/* One order to record: the inputs are borrowed for the call. */
struct ostore_order {
	const char *order_id;
	const char *user_id;
	const char *items;        /* the items as JSON text, [{"sku":..,"qty":..}] */
	const char *callback_url; /* NULL or "": none */
	const char *via;          /* the front door, "mqtt" or "http" */
	int64_t created_ms;       /* when it was placed (the OrderPlaced's at) */
	const char *event;        /* the OrderPlaced as published, kept to publish it again */
	const char *idem_key;     /* the client's idempotency key, or NULL */
	const char *request_hash; /* the request's fingerprint, with idem_key */
	struct ostore_order *next; /* the batch's next order, or NULL */
	/* set by ostore_record() */
	enum ostore_result result;                   /* OSTORE_OK, _REPLAYED, _CONFLICT or _FAIL */
	char replayed_order_id[NAME_MAX_LEN + 1];    /* OSTORE_REPLAYED: the order the key placed first */
};

/*
 * Records a batch (orders, linked by next, in that order) in one
 * transaction, each order under a savepoint of its own so that a failure
 * takes back only that order (group commit).  For each: when it has an
 * idempotency key already recorded, result is OSTORE_REPLAYED (same
 * request_hash) or OSTORE_CONFLICT (another) and nothing is written; else
 * the order, its key and its OrderPlaced (in the outbox, for TOPIC_PLACED)
 * are written and result is OSTORE_OK.  A key repeated within the batch
 * replays its first use.  now is the order's first progress time.  Returns
 * OSTORE_OK when the transaction committed, or OSTORE_FAIL when it did not
 * (then every order that was OSTORE_OK is OSTORE_FAIL: nothing of the
 * batch is recorded).
 */
enum ostore_result ostore_record(struct order_store *s, struct ostore_order *orders, int64_t now);

/*
 * Forgets idempotency keys recorded before before_ms; *n (may be NULL)
 * says how many.  Returns OSTORE_OK or OSTORE_FAIL (nothing forgotten).
 */
enum ostore_result ostore_expire_keys(struct order_store *s, int64_t before_ms, int *n);

/*
 * Records that order_id reached stage (an enum order_status: 1 accepted
 * ... 5 ready) at now, if it was not that far yet.  Returns OSTORE_OK (moved
 * forward; *created_ms, when not NULL, is when the order was placed),
 * OSTORE_DUP (already that far or further), OSTORE_NOT_FOUND (no such
 * order) or OSTORE_FAIL.
 */
enum ostore_result ostore_progress(struct order_store *s, const char *order_id, int stage, int64_t now,
    int64_t *created_ms);

/* An order ostore_republish_stalled() published again. */
struct ostore_stalled {
	char order_id[NAME_MAX_LEN + 1];
	int stage;       /* the stage it had reached: 0 (none accepted it), or an enum order_status */
	int republished; /* times it has been published again, this one included */
};

/*
 * Publishes again (through the outbox, the original OrderPlaced verbatim,
 * in one transaction) at most max orders that are not ready and stalled:
 * not accepted, with their last progress (placement, or last republish)
 * before placed_before; or accepted, with their last stage before
 * moved_before.  Each one's progress time becomes now, so its clock
 * restarts; on PostgreSQL the rows are claimed with FOR UPDATE SKIP
 * LOCKED, so instances running it together never take the same order.  Returns OSTORE_OK with the orders in out[0 .. *n - 1] once
 * committed, or OSTORE_FAIL with *n = 0 (nothing republished).
 */
enum ostore_result ostore_republish_stalled(struct order_store *s, int64_t placed_before, int64_t moved_before,
    int64_t now, struct ostore_stalled *out, size_t max, size_t *n);

/* ---- accounts: customers, their devices, revoked tokens (accounts.h) ---- */

#define OSTORE_HASH_MAX 192 /* a password hash in mosquitto's $7$ form */

struct ostore_account {
	char user_id[NAME_MAX_LEN + 1];
	char hash[OSTORE_HASH_MAX];
	int64_t created_ms;
	int64_t tokens_after; /* unix seconds: tokens issued before are refused */
};

struct ostore_device {
	char user_id[NAME_MAX_LEN + 1];
	char device[NAME_MAX_LEN + 1];
	int64_t created_ms, login_ms;
};

typedef void (*ostore_account_fn)(void *arg, const struct ostore_account *a);
typedef void (*ostore_device_fn)(void *arg, const struct ostore_device *d);
typedef void (*ostore_revoked_fn)(void *arg, const char *mac, int64_t expiry);

/* Calls on_account for every account, on_device for every device, on_revoked for every revoked token.  OSTORE_OK or OSTORE_FAIL. */
enum ostore_result ostore_accounts_load(struct order_store *s, ostore_account_fn on_account, ostore_device_fn on_device,
    ostore_revoked_fn on_revoked, void *arg);
/*
 * The accounts' change counter: *version moves with every account, device
 * or revoked-token change committed by any instance (on SQLite, where one
 * instance owns the file, it stays 0).  Read it before
 * ostore_accounts_load(): a change committed after it moves it again.
 * OSTORE_OK or OSTORE_FAIL.
 */
enum ostore_result ostore_accounts_version(struct order_store *s, int64_t *version);
/* Adds an account: OSTORE_OK, OSTORE_DUP (one of that name exists: unchanged) or OSTORE_FAIL. */
enum ostore_result ostore_account_add(struct order_store *s, const struct ostore_account *a);
/* A new password hash and tokens_after, and the account's devices forgotten, in one transaction: OSTORE_OK, _NOT_FOUND or _FAIL. */
enum ostore_result ostore_account_passwd(struct order_store *s, const char *user, const char *hash, int64_t tokens_after);
/* Refuses the account's tokens issued before tokens_after (unix seconds): OSTORE_OK, _NOT_FOUND or _FAIL. */
enum ostore_result ostore_account_tokens_after(struct order_store *s, const char *user, int64_t tokens_after);
/* Deletes the account and its devices: OSTORE_OK, _NOT_FOUND or _FAIL. */
enum ostore_result ostore_account_delete(struct order_store *s, const char *user);
/* Records a login of the device (added on its first): OSTORE_OK or OSTORE_FAIL. */
enum ostore_result ostore_device_put(struct order_store *s, const char *user, const char *device, int64_t now);
/* Forgets the device: OSTORE_OK, _NOT_FOUND or _FAIL. */
enum ostore_result ostore_device_delete(struct order_store *s, const char *user, const char *device);
/* Records a revoked token (its signature) until its expiry, and forgets those expired by now: OSTORE_OK or _FAIL. */
enum ostore_result ostore_token_revoke(struct order_store *s, const char *mac, int64_t expiry, int64_t now);

#endif

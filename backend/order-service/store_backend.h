/*
 * store_backend.h - what a database backend of order-service's store
 * provides (store_sqlite.c, store_pg.c).  Only store*.c include it; the
 * service sees store.h alone.
 *
 * Each entry does what the store.h function of the same name says, with
 * the same results, on the backend's handle b; store.c picks the backend
 * from the --db target and forwards every call.  Unlike order-history's
 * statements-only backends, each one here holds its own transactions
 * (group commit with a savepoint per order, the supervision's claim), as
 * their locking differs: one SQLite handle under its lock, or PostgreSQL
 * rows claimed with FOR UPDATE SKIP LOCKED between instances.
 */
#ifndef PIZZA_ORDER_STORE_BACKEND_H
#define PIZZA_ORDER_STORE_BACKEND_H

#include "store.h"

struct ostore_ops {
	const char *name; /* "sqlite", "postgresql" */
	void *(*open)(const char *target);
	void (*close)(void *b);
	struct outbox *(*outbox_new)(void *b, struct mq *mq, int64_t retry_ms);
	int (*probe)(void *b);
	enum ostore_result (*record)(void *b, struct ostore_order *orders, int64_t now);
	enum ostore_result (*expire_keys)(void *b, int64_t before_ms, int *n);
	enum ostore_result (*progress)(void *b, const char *order_id, int stage, int64_t now, int64_t *created_ms);
	enum ostore_result (*republish_stalled)(void *b, int64_t placed_before, int64_t moved_before, int64_t now,
	    struct ostore_stalled *out, size_t max, size_t *n);
	enum ostore_result (*accounts_load)(void *b, ostore_account_fn on_account, ostore_device_fn on_device,
	    ostore_revoked_fn on_revoked, void *arg);
	enum ostore_result (*accounts_version)(void *b, int64_t *version);
	enum ostore_result (*account_add)(void *b, const struct ostore_account *a);
	enum ostore_result (*account_passwd)(void *b, const char *user, const char *hash, int64_t tokens_after);
	enum ostore_result (*account_tokens_after)(void *b, const char *user, int64_t tokens_after);
	enum ostore_result (*account_delete)(void *b, const char *user);
	enum ostore_result (*device_put)(void *b, const char *user, const char *device, int64_t now);
	enum ostore_result (*device_delete)(void *b, const char *user, const char *device);
	enum ostore_result (*token_revoke)(void *b, const char *mac, int64_t expiry, int64_t now);
};

extern const struct ostore_ops ostore_sqlite_ops;
extern const struct ostore_ops ostore_pg_ops;

/*
 * The stored OrderPlaced of a stalled order with a fresh event id, to
 * queue again: an executor drops the same message delivered twice (by
 * event id), but must take an order published again because it stalled,
 * even one it walked before.  A new string (free()), or NULL out of memory.
 */
char *ostore_republished_event(const char *stored);

/* Writes a PostgreSQL URL into buf as it may be logged (no password).  Returns buf. */
const char *ostore_pg_label(const char *target, char *buf, size_t n);

#endif

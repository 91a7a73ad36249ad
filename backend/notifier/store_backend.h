/*
 * store_backend.h - what a database backend of the notifier's store
 * provides (store_sqlite.c: one instance on a file; store_pg.c: several
 * instances on one PostgreSQL database).  Only store*.c include it; the
 * service sees store.h alone, whose functions store.c forwards here.
 *
 * Each operation is the store.h function of the same name, with the same
 * contract; a backend's struct starts with a struct notifier_store.
 */
#ifndef PIZZA_NOTIFIER_STORE_BACKEND_H
#define PIZZA_NOTIFIER_STORE_BACKEND_H

#include "store.h"

struct nstore_ops {
	const char *name; /* "sqlite", "postgresql" */
	/* Opens target (creating the schema); NULL on failure, logged. */
	struct notifier_store *(*open)(const char *target, struct mq *mq, int64_t retry_ms);
	void (*close)(struct notifier_store *s);
	enum nstore_result (*put_order)(struct notifier_store *s, const struct event *placed);
	enum nstore_result (*order)(struct notifier_store *s, const char *order_id, struct nstore_order *out);
	enum nstore_result (*queue_alert)(struct notifier_store *s, const struct nstore_alert *a);
	enum nstore_result (*hello)(struct notifier_store *s, const char *user_id, const char *device, int64_t now_ms,
	    int *resent);
	enum nstore_result (*resend_all)(struct notifier_store *s, int64_t now_ms, int *resent);
	enum nstore_result (*receipt)(struct notifier_store *s, const char *user_id, const char *device,
	    const char *event_id, const char *order_id, int64_t now_ms);
	int64_t (*pending)(struct notifier_store *s, int64_t now_ms);
	int (*expire)(struct notifier_store *s, int64_t now_ms);
	enum nstore_result (*due)(struct notifier_store *s, int64_t now_ms, int limit, nstore_due_fn fn, void *arg);
	enum nstore_result (*record_attempt)(struct notifier_store *s, const struct nstore_attempt *a);
	int (*flush)(struct notifier_store *s);
	int64_t (*backlog)(struct notifier_store *s);
	int (*probe)(struct notifier_store *s);
};

struct notifier_store {
	const struct nstore_ops *ops;
	int64_t claim_ms; /* nstore_claim_ms() */
};

extern const struct nstore_ops nstore_sqlite_ops;
extern const struct nstore_ops nstore_pg_ops;

#endif

/*
 * store.c - order-service's store behind store.h: picks the backend from
 * the database target (store_sqlite.c for a file path, store_pg.c for a
 * postgresql:// URL) and forwards every call to it (store_backend.h).
 */
#include "store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "event.h"
#include "log.h"
#include "store_backend.h"

struct order_store {
	const struct ostore_ops *ops;
	void *b;
};

/* 1 when target is a PostgreSQL connection URL. */
static int
is_pg(const char *target)
{
	return strncmp(target, "postgresql://", 13) == 0 || strncmp(target, "postgres://", 11) == 0;
}

struct order_store *
ostore_open(const char *target)
{
	struct order_store *s;

	if (target == NULL || target[0] == '\0') {
		log_error("no order database given: a SQLite file path or a postgresql:// URL", NULL);
		return NULL;
	}
	if (!is_pg(target) && strstr(target, "://") != NULL) {
		char scheme[32];

		snprintf(scheme, sizeof(scheme), "%.*s", (int)strcspn(target, ":"), target);
		log_error("unknown database URL: give a SQLite file path or a postgresql:// (postgres://) URL",
		    "scheme=%s", LOGQ(scheme));
		return NULL;
	}
	if ((s = calloc(1, sizeof(*s))) == NULL) {
		log_error("out of memory", NULL);
		return NULL;
	}
	s->ops = is_pg(target) ? &ostore_pg_ops : &ostore_sqlite_ops;
	if ((s->b = s->ops->open(target)) == NULL) {
		free(s);
		return NULL;
	}
	return s;
}

void
ostore_close(struct order_store *s)
{
	if (s == NULL)
		return;
	s->ops->close(s->b);
	free(s);
}

const char *
ostore_label(const char *target, char *buf, size_t n)
{
	if (target != NULL && is_pg(target))
		return ostore_pg_label(target, buf, n);
	snprintf(buf, n, "%s", target != NULL ? target : "");
	return buf;
}

char *
ostore_republished_event(const char *stored)
{
	struct event ev;
	char err[256];

	if (event_decode(stored, strlen(stored), &ev, err, sizeof(err)) != 0) {
		/* cannot happen for a row intake wrote; publish it as it is rather than never */
		log_error("stored order event unreadable; publishing it unchanged", "err=%s", LOGQ(err));
		return strdup(stored);
	}
	id_new(ev.event_id);
	return event_encode(&ev);
}

int
ostore_shared(const struct order_store *s)
{
	return s->ops == &ostore_pg_ops;
}

struct outbox *
ostore_outbox_new(struct order_store *s, struct mq *mq, int64_t retry_ms)
{
	return s->ops->outbox_new(s->b, mq, retry_ms);
}

int
ostore_probe(void *arg)
{
	struct order_store *s = arg;

	return s->ops->probe(s->b);
}

enum ostore_result
ostore_record(struct order_store *s, struct ostore_order *orders, int64_t now)
{
	return s->ops->record(s->b, orders, now);
}

enum ostore_result
ostore_expire_keys(struct order_store *s, int64_t before_ms, int *n)
{
	return s->ops->expire_keys(s->b, before_ms, n);
}

enum ostore_result
ostore_progress(struct order_store *s, const char *order_id, int stage, int64_t now, int64_t *created_ms)
{
	return s->ops->progress(s->b, order_id, stage, now, created_ms);
}

enum ostore_result
ostore_republish_stalled(struct order_store *s, int64_t placed_before, int64_t moved_before, int64_t now,
    struct ostore_stalled *out, size_t max, size_t *n)
{
	return s->ops->republish_stalled(s->b, placed_before, moved_before, now, out, max, n);
}

enum ostore_result
ostore_accounts_load(struct order_store *s, ostore_account_fn on_account, ostore_device_fn on_device,
    ostore_revoked_fn on_revoked, void *arg)
{
	return s->ops->accounts_load(s->b, on_account, on_device, on_revoked, arg);
}

enum ostore_result
ostore_accounts_version(struct order_store *s, int64_t *version)
{
	return s->ops->accounts_version(s->b, version);
}

enum ostore_result
ostore_account_add(struct order_store *s, const struct ostore_account *a)
{
	return s->ops->account_add(s->b, a);
}

enum ostore_result
ostore_account_passwd(struct order_store *s, const char *user, const char *hash, int64_t tokens_after)
{
	return s->ops->account_passwd(s->b, user, hash, tokens_after);
}

enum ostore_result
ostore_account_tokens_after(struct order_store *s, const char *user, int64_t tokens_after)
{
	return s->ops->account_tokens_after(s->b, user, tokens_after);
}

enum ostore_result
ostore_account_delete(struct order_store *s, const char *user)
{
	return s->ops->account_delete(s->b, user);
}

enum ostore_result
ostore_device_put(struct order_store *s, const char *user, const char *device, int64_t now)
{
	return s->ops->device_put(s->b, user, device, now);
}

enum ostore_result
ostore_device_delete(struct order_store *s, const char *user, const char *device)
{
	return s->ops->device_delete(s->b, user, device);
}

enum ostore_result
ostore_token_revoke(struct order_store *s, const char *mac, int64_t expiry, int64_t now)
{
	return s->ops->token_revoke(s->b, mac, expiry, now);
}

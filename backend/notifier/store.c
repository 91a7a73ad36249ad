/*
 * store.c - the notifier's store behind store.h: picks the backend from
 * the database target (store_sqlite.c for a file path, store_pg.c for a
 * postgresql:// URL) and forwards each call to it.
 */
#include "store_backend.h"

#include <stdio.h>
#include <string.h>

#include "log.h"
#include "pgconn.h"

#define DEFAULT_CLAIM_MS 60000

struct notifier_store *
nstore_open(const char *target, struct mq *mq, int64_t retry_ms)
{
	struct notifier_store *s;

	if (target == NULL || target[0] == '\0') {
		log_error("no notifier database given: a SQLite file path or a postgresql:// URL", NULL);
		return NULL;
	}
	if (!pgconn_is_url(target) && strstr(target, "://") != NULL) {
		char scheme[32];

		snprintf(scheme, sizeof(scheme), "%.*s", (int)strcspn(target, ":"), target);
		log_error("unknown database URL: give a SQLite file path or a postgresql:// (postgres://) URL",
		    "scheme=%s", LOGQ(scheme));
		return NULL;
	}
	s = (pgconn_is_url(target) ? &nstore_pg_ops : &nstore_sqlite_ops)->open(target, mq, retry_ms);
	if (s != NULL)
		s->claim_ms = DEFAULT_CLAIM_MS;
	return s;
}

void
nstore_close(struct notifier_store *s)
{
	if (s != NULL)
		s->ops->close(s);
}

const char *
nstore_label(const char *target, char *buf, size_t n)
{
	if (pgconn_is_url(target))
		return pgconn_label(target, buf, n);
	snprintf(buf, n, "%s", target != NULL ? target : "");
	return buf;
}

void
nstore_items_text(const struct event *ev, char *buf, size_t n)
{
	size_t o = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < ev->n_items && o < n; i++)
		o += (size_t)snprintf(buf + o, n - o, "%s%d x %s", i ? ", " : "", ev->items[i].qty, ev->items[i].sku);
}

void
nstore_claim_ms(struct notifier_store *s, int64_t ms)
{
	s->claim_ms = ms;
}

enum nstore_result
nstore_put_order(struct notifier_store *s, const struct event *placed)
{
	return s->ops->put_order(s, placed);
}

enum nstore_result
nstore_order(struct notifier_store *s, const char *order_id, struct nstore_order *out)
{
	return s->ops->order(s, order_id, out);
}

enum nstore_result
nstore_queue_alert(struct notifier_store *s, const struct nstore_alert *a)
{
	return s->ops->queue_alert(s, a);
}

enum nstore_result
nstore_hello(struct notifier_store *s, const char *user_id, const char *device, int64_t now_ms, int *resent)
{
	return s->ops->hello(s, user_id, device, now_ms, resent);
}

enum nstore_result
nstore_resend_all(struct notifier_store *s, int64_t now_ms, int *resent)
{
	return s->ops->resend_all(s, now_ms, resent);
}

enum nstore_result
nstore_receipt(struct notifier_store *s, const char *user_id, const char *device, const char *event_id,
    const char *order_id, int64_t now_ms)
{
	return s->ops->receipt(s, user_id, device, event_id, order_id, now_ms);
}

int64_t
nstore_pending(struct notifier_store *s, int64_t now_ms)
{
	return s->ops->pending(s, now_ms);
}

int
nstore_expire(struct notifier_store *s, int64_t now_ms)
{
	return s->ops->expire(s, now_ms);
}

enum nstore_result
nstore_due(struct notifier_store *s, int64_t now_ms, int limit, nstore_due_fn fn, void *arg)
{
	return s->ops->due(s, now_ms, limit, fn, arg);
}

enum nstore_result
nstore_record_attempt(struct notifier_store *s, const struct nstore_attempt *a)
{
	return s->ops->record_attempt(s, a);
}

int
nstore_flush(struct notifier_store *s)
{
	return s->ops->flush(s);
}

int64_t
nstore_backlog(struct notifier_store *s)
{
	return s->ops->backlog(s);
}

int
nstore_probe(void *arg)
{
	struct notifier_store *s = arg;

	return s->ops->probe(s);
}

#include "intake.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "log.h"
#include "metrics.h"
#include "netcheck.h"
#include "outbox.h"
#include "ratelimit.h"
#include "store.h"
#include "util.h"

struct intake_pending;

struct intake {
	struct order_store *store;
	struct outbox *outbox;
	const struct allowlist *callback_allow; /* exceptions to the callback address policy; may be NULL */
	/* group commit (committer()): orders waiting for the next transaction */
	pthread_mutex_t group_lock;
	pthread_cond_t group_work, group_done;
	struct intake_pending *queue;
	pthread_t group_thread;
	int started, stopping;
	int committing; /* the committer, or a waiting intake_place() caller, is recording a batch */
	struct ratelimit *per_user; /* orders per user, whichever front door (intake_limit()) */
	/* intake first (intake_first()), under hold_lock: the thread recording a batch, and intake_tick() */
	pthread_mutex_t hold_lock;
	int64_t first_ms;   /* how long a busy spell may hold OrderPlaced back; 0: never */
	int64_t busy_since; /* mono_ms() when the current busy spell began, 0 when not busy */
	int64_t last_busy;  /* mono_ms() of the spell's last busy batch */
	int64_t calm_until; /* mono_ms() before which no new spell holds anything (as long as the last one) */
};

static void
invalid(struct intake_result *res, const char *code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void
invalid(struct intake_result *res, const char *code, const char *fmt, ...)
{
	va_list ap;

	res->status = INTAKE_INVALID;
	res->error = code;
	va_start(ap, fmt);
	vsnprintf(res->detail, sizeof(res->detail), fmt, ap);
	va_end(ap);
}

/* Why a request is refused: the error codes of struct intake_result, each a label of its own. */
static const char *const reasons[] = { "invalid_json", "invalid_field", "too_large", "idempotency_conflict",
	"too_many_requests", "internal" };
#define NREASONS (sizeof(reasons) / sizeof(reasons[0]))

static struct metric *m_accepted[2], *m_refused[2][NREASONS], *m_replayed, *m_batch;
static const double batch_buckets[] = { 1, 2, 4, 8, 16, 32, 64, 128, 256 };

/* Registers the intake's metrics (once, from intake_new). */
static void
intake_metrics(void)
{
	static const char *const vias[] = { "via=\"mqtt\"", "via=\"http\"" };

	for (int i = 0; i < 2; i++) {
		m_accepted[i] = metric_counter("pizza_orders_accepted_total", "Orders accepted and recorded", vias[i]);
		for (size_t r = 0; r < NREASONS; r++) {
			char labels[96];

			snprintf(labels, sizeof(labels), "%s,reason=\"%s\"", vias[i], reasons[r]);
			m_refused[i][r] = metric_counter("pizza_orders_refused_total",
			    "Order requests refused, by front door and reason (the error code the client got)", labels);
		}
	}
	m_replayed = metric_counter("pizza_orders_replayed_total",
	    "Requests answered with an earlier order because their Idempotency-Key was seen", NULL);
	m_batch = metric_histogram("pizza_intake_batch_orders",
	    "Orders recorded per transaction by the committer (group commit: the orders that arrived during the one before)",
	    NULL, batch_buckets, (int)(sizeof(batch_buckets) / sizeof(batch_buckets[0])));
}

static int
via_index(const char *via)
{
	return strcmp(via, "http") == 0;
}

static int
url_ok(const char *url)
{
	return strncmp(url, "http://", 7) == 0 || strncmp(url, "https://", 8) == 0;
}

int
intake_key_valid(const char *key)
{
	size_t n = 0;

	for (; key[n] != '\0'; n++)
		if (key[n] < 0x20 || key[n] > 0x7e || n >= IDEMPOTENCY_KEY_MAX)
			return 0;
	return n > 0;
}

/* The request's fingerprint for idempotency: SHA-256 of its canonical JSON, in hex. */
static int
request_hash(const json_t *request, char out[65])
{
	unsigned char md[32];
	unsigned int mdlen = 0;
	char *canon = json_dumps(request, JSON_COMPACT | JSON_SORT_KEYS);

	if (canon == NULL || EVP_Digest(canon, strlen(canon), md, &mdlen, EVP_sha256(), NULL) != 1) {
		free(canon);
		return -1;
	}
	free(canon);
	for (unsigned i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
	return 0;
}

int
intake_validate(const char *user_id, const json_t *request, struct event *ev, struct intake_result *res)
{
	char err[256], order_id[ID_LEN + 1];
	const json_t *v;

	if (!json_is_object(request)) {
		invalid(res, "invalid_field", "the request must be a JSON object");
		return -1;
	}
	if (!name_valid(user_id)) {
		invalid(res, "invalid_field", "user_id must be 1-%d characters of A-Z a-z 0-9 _ -", NAME_MAX_LEN);
		return -1;
	}
	if ((v = json_object_get(request, "user_id")) != NULL &&
	    (!json_is_string(v) || strcmp(json_string_value(v), user_id) != 0)) {
		invalid(res, "invalid_field", "user_id must be the authenticated user '%s'", user_id);
		return -1;
	}
	id_new(order_id);
	if (event_init(ev, EVENT_ORDER_PLACED, order_id, user_id) != 0) {
		invalid(res, "invalid_field", "user_id is not valid");
		return -1;
	}
	if (event_items_from_json(json_object_get(request, "items"), ev->items, &ev->n_items, err, sizeof(err)) != 0) {
		invalid(res, "invalid_field", "%s", err);
		return -1;
	}
	if ((v = json_object_get(request, "callback_url")) != NULL && !json_is_null(v)) {
		if (!json_is_string(v) || json_string_length(v) > EVENT_URL_MAX ||
		    strlen(json_string_value(v)) != json_string_length(v) || !url_ok(json_string_value(v))) {
			invalid(res, "invalid_field",
			    "callback_url must be an http:// or https:// URL of at most %d characters", EVENT_URL_MAX);
			return -1;
		}
		str_copy(ev->callback_url, sizeof(ev->callback_url), json_string_value(v));
	}
	return 0;
}

/* The order's items as the orders table keeps them: [{"sku":..,"qty":..}] (malloc'd), or NULL. */
static char *
items_json(const struct event *ev)
{
	json_t *arr = json_array();
	char *items;

	if (arr == NULL)
		return NULL;
	for (size_t i = 0; i < ev->n_items; i++)
		json_array_append_new(arr, json_pack("{s:s, s:i}", "sku", ev->items[i].sku, "qty", ev->items[i].qty));
	items = json_dumps(arr, JSON_COMPACT);
	json_decref(arr);
	return items;
}

/* One order waiting for the committer: owns everything the store reads. */
struct intake_pending {
	struct event ev;
	char *json, *items, *key;
	const char *via; /* a string literal */
	char hash[65];
	struct ostore_order rec; /* what the store records, pointing into the above; its result */
	struct intake_result res;
	intake_done done;
	void *arg;
	struct intake_pending *next;
};

/*
 * Records a batch (newest first, as queued) in one transaction and sets
 * each one's rec.result.  Returns the batch relinked oldest first.
 */
static struct intake_pending *
commit_batch(struct intake *in, struct intake_pending *batch)
{
	struct intake_pending *q, *order = NULL;

	/* oldest first: a repeated idempotency key within one batch replays the earlier request */
	while (batch != NULL) {
		q = batch->next;
		batch->next = order;
		batch->rec.next = order != NULL ? &order->rec : NULL;
		order = batch;
		batch = q;
	}
	if (order != NULL)
		ostore_record(in->store, &order->rec, now_ms());
	return order;
}

/* Counts a refused request by front door and reason. */
static void
count_refused(const char *via, const char *error)
{
	size_t r = NREASONS - 1; /* internal, for a code not listed */

	for (size_t i = 0; i < NREASONS; i++)
		if (error != NULL && strcmp(error, reasons[i]) == 0)
			r = i;
	metric_inc(m_refused[via_index(via)][r]);
}

/* Counts a finished request in the intake's metrics. */
static void
count(const struct intake_result *res, const char *via)
{
	if (res->status == INTAKE_OK && res->replayed)
		metric_inc(m_replayed);
	else if (res->status == INTAKE_OK)
		metric_inc(m_accepted[via_index(via)]);
	else
		count_refused(via, res->error);
}

/* Turns a recorded order's store result into its answer, logs and counts it. */
static void
settle(struct intake_pending *p)
{
	struct intake_result *res = &p->res;

	switch (p->rec.result) {
	case OSTORE_OK:
		res->status = INTAKE_OK;
		str_copy(res->order_id, sizeof(res->order_id), p->ev.order_id);
		log_info("order accepted", "order_id=%s user_id=%s via=%s items=%zu", p->ev.order_id, p->ev.user_id,
		    p->via, p->ev.n_items);
		break;
	case OSTORE_REPLAYED:
		res->status = INTAKE_OK;
		res->replayed = 1;
		str_copy(res->order_id, sizeof(res->order_id), p->rec.replayed_order_id);
		log_info("idempotent replay", "order_id=%s user_id=%s via=%s", res->order_id, p->ev.user_id, p->via);
		break;
	case OSTORE_CONFLICT:
		res->status = INTAKE_CONFLICT;
		res->error = "idempotency_conflict";
		snprintf(res->detail, sizeof(res->detail), "this Idempotency-Key was already used with a different request");
		break;
	default: /* OSTORE_FAIL */
		res->status = INTAKE_INTERNAL;
		res->error = "internal";
		snprintf(res->detail, sizeof(res->detail), "the order could not be recorded; please retry");
	}
	count(res, p->via);
}

static void
pending_free(struct intake_pending *p)
{
	free(p->json);
	free(p->items);
	free(p->key);
	free(p);
}

/*
 * Intake first: a batch of INTAKE_BUSY_BATCH orders or more means they come
 * faster than one commit takes, so the outbox holds their OrderPlaced back
 * until INTAKE_HOLD_MS after the last such batch (the rest of the pipeline
 * would take the CPU the intake needs; the orders are recorded and wait in
 * order).  A busy spell holds for first_ms at most; then publishing goes
 * on beside the intake until the spell ends: INTAKE_HOLD_MS with no busy
 * batch.  After a spell, none starts for as long as it lasted, so that the
 * outbox is held half the time at most.
 */
/* Ends a busy spell INTAKE_HOLD_MS after its last busy batch.  hold_lock held. */
static void
end_spell(struct intake *in, int64_t now)
{
	if (in->busy_since == 0 || now - in->last_busy < INTAKE_HOLD_MS)
		return;
	log_info("intake no longer busy: publishing what was held back", "busy_ms=%lld",
	    (long long)(in->last_busy - in->busy_since));
	/* no new hold for as long as this one lasted: orders in waves must not keep the kitchen waiting */
	in->calm_until = now + (in->last_busy - in->busy_since);
	in->busy_since = 0;
}

static void
hold_if_busy(struct intake *in, int n)
{
	int64_t now = mono_ms();

	pthread_mutex_lock(&in->hold_lock);
	end_spell(in, now);
	if (in->first_ms > 0 && n >= INTAKE_BUSY_BATCH && (in->busy_since != 0 || now >= in->calm_until)) {
		if (in->busy_since == 0) {
			in->busy_since = now;
			log_info("orders arriving faster than one commit: holding OrderPlaced back",
			    "batch=%d max_ms=%lld", n, (long long)in->first_ms);
		}
		in->last_busy = now;
		outbox_hold(in->outbox, now - in->busy_since < in->first_ms ? now + INTAKE_HOLD_MS : 0);
	}
	pthread_mutex_unlock(&in->hold_lock);
}

/* Records a batch taken from the queue, then answers and frees each order in it. */
static void
run_batch(struct intake *in, struct intake_pending *batch)
{
	struct intake_pending *q, *next;
	int n = 0;

	batch = commit_batch(in, batch);
	for (q = batch; q != NULL; q = next) {
		next = q->next;
		settle(q);
		q->done(q->arg, &q->res);
		pending_free(q);
		n++;
	}
	metric_observe(m_batch, (double)n);
	hold_if_busy(in, n);
}

/*
 * Records everything queued, with the group lock held on entry and exit (it
 * is let go meanwhile), then publishes: at once on this thread when publish
 * is set, else by waking the main loop.
 */
static void
record_queue(struct intake *in, int publish)
{
	struct intake_pending *batch = in->queue;

	in->queue = NULL;
	in->committing = 1;
	pthread_mutex_unlock(&in->group_lock);
	run_batch(in, batch);
	if (publish)
		outbox_flush(in->outbox);
	else
		/* the main loop publishes now rather than at its next tick: the commit made it safe */
		outbox_kick(in->outbox);
	pthread_mutex_lock(&in->group_lock);
	in->committing = 0;
}

/*
 * The committer: takes every order queued since its last commit and records
 * them in one transaction (group commit), then answers each and wakes the
 * outbox once.  One transaction per request cost a file lock, a WAL write
 * and a commit each, with the request threads taking turns at the db lock:
 * 2,000-4,000 requests/s whatever the number of threads.  While a waiting
 * caller of intake_place() records the queue itself, the committer waits.
 */
static void *
committer(void *arg)
{
	struct intake *in = arg;

	pthread_mutex_lock(&in->group_lock);
	for (;;) {
		while ((in->queue == NULL || in->committing) && !in->stopping)
			pthread_cond_wait(&in->group_work, &in->group_lock);
		if (in->queue == NULL)
			break;
		record_queue(in, 0);
	}
	pthread_mutex_unlock(&in->group_lock);
	return NULL;
}

struct intake *
intake_new(struct order_store *store, struct outbox *outbox, const struct allowlist *callback_allow)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	struct intake *in = calloc(1, sizeof(*in));

	if (in == NULL) {
		log_error("out of memory", NULL);
		return NULL;
	}
	pthread_once(&once, intake_metrics);
	in->store = store;
	in->outbox = outbox;
	in->callback_allow = callback_allow;
	pthread_mutex_init(&in->group_lock, NULL);
	pthread_mutex_init(&in->hold_lock, NULL);
	pthread_cond_init(&in->group_work, NULL);
	pthread_cond_init(&in->group_done, NULL);
	in->started = 1;
	if (pthread_create(&in->group_thread, NULL, committer, in) != 0) {
		log_errno("cannot start the order committer thread", NULL);
		in->started = 0;
		intake_free(in);
		return NULL;
	}
	return in;
}

void
intake_first(struct intake *in, int64_t max_ms)
{
	pthread_mutex_lock(&in->hold_lock);
	in->first_ms = max_ms;
	pthread_mutex_unlock(&in->hold_lock);
}

void
intake_tick(struct intake *in)
{
	pthread_mutex_lock(&in->hold_lock);
	end_spell(in, mono_ms());
	pthread_mutex_unlock(&in->hold_lock);
}

void
intake_stop(struct intake *in)
{
	pthread_mutex_lock(&in->group_lock);
	if (!in->started || in->stopping) {
		pthread_mutex_unlock(&in->group_lock);
		return;
	}
	in->stopping = 1;
	pthread_cond_signal(&in->group_work);
	pthread_mutex_unlock(&in->group_lock);
	pthread_join(in->group_thread, NULL);
	pthread_mutex_lock(&in->group_lock);
	in->started = 0;
	pthread_mutex_unlock(&in->group_lock);
}

void
intake_free(struct intake *in)
{
	if (in == NULL)
		return;
	intake_stop(in);
	pthread_mutex_destroy(&in->group_lock);
	pthread_mutex_destroy(&in->hold_lock);
	pthread_cond_destroy(&in->group_work);
	pthread_cond_destroy(&in->group_done);
	ratelimit_free(in->per_user);
	free(in);
}

/*
 * Takes one order from user_id's allowance (intake_limit()).  Returns 0, or
 * 1 with res set to INTAKE_LIMITED when the user is over it.
 */
static int
limited(struct intake *in, const char *user_id, const char *via, struct intake_result *res)
{
	int64_t wait;

	if (in->per_user == NULL || (wait = ratelimit_take(in->per_user, user_id, strlen(user_id), mono_ms())) == 0)
		return 0;
	res->status = INTAKE_LIMITED;
	res->error = "too_many_requests";
	res->retry_after_s = (int)((wait + 999) / 1000);
	snprintf(res->detail, sizeof(res->detail), "at most %.0f orders per second for one user; retry in %d s",
	    ratelimit_rate(in->per_user), res->retry_after_s);
	log_debug("order refused: over the user's limit", "user_id=%s via=%s", name_valid(user_id) ? user_id : "-", via);
	return 1;
}

void
intake_limit(struct intake *in, double per_user, double burst)
{
	if (in->per_user == NULL)
		in->per_user = ratelimit_new(per_user, burst, 65536);
	else
		ratelimit_set(in->per_user, per_user, burst);
}

/*
 * Validates the request and builds what the committer records.  Returns
 * NULL with res filled when the request is refused (or cannot be prepared).
 */
static struct intake_pending *
prepare(struct intake *in, const char *user_id, const json_t *request, const char *via, const char *idem_key,
    struct intake_result *res)
{
	struct intake_pending *p;

	memset(res, 0, sizeof(*res));
	if (limited(in, user_id, via, res))
		return NULL;
	if (idem_key != NULL && !intake_key_valid(idem_key)) {
		invalid(res, "invalid_field", "the idempotency key must be 1-%d printable ASCII characters",
		    IDEMPOTENCY_KEY_MAX);
		return NULL;
	}
	if ((p = calloc(1, sizeof(*p))) == NULL)
		goto internal;
	if (intake_validate(user_id, request, &p->ev, res) != 0) {
		log_info("order refused", "user_id=%s via=%s", name_valid(user_id) ? user_id : "-", via);
		free(p);
		return NULL;
	}
	if (p->ev.callback_url[0] != '\0') {
		char why[200];
		if (netcheck_url(in->callback_allow, p->ev.callback_url, why, sizeof(why)) != 0) {
			invalid(res, "invalid_field", "%s; set PIZZA_CALLBACK_ALLOW to allow it", why);
			log_info("order refused: callback address", "user_id=%s via=%s", user_id, via);
			free(p);
			return NULL;
		}
	}
	p->via = via;
	if ((idem_key != NULL && ((p->key = strdup(idem_key)) == NULL || request_hash(request, p->hash) != 0)) ||
	    (p->json = event_encode(&p->ev)) == NULL || (p->items = items_json(&p->ev)) == NULL) {
		pending_free(p);
		goto internal;
	}
	p->rec.order_id = p->ev.order_id;
	p->rec.user_id = p->ev.user_id;
	p->rec.items = p->items;
	p->rec.callback_url = p->ev.callback_url;
	p->rec.via = via;
	p->rec.created_ms = p->ev.at_ms;
	p->rec.event = p->json;
	p->rec.idem_key = p->key;
	p->rec.request_hash = p->key != NULL ? p->hash : NULL;
	return p;
internal:
	res->status = INTAKE_INTERNAL;
	res->error = "internal";
	snprintf(res->detail, sizeof(res->detail), "the order could not be recorded; please retry");
	return NULL;
}

/*
 * Queues p (and wakes the committer when wake is set).  Returns 0 with the
 * group lock held, or -1 when shutting down: then p has been answered
 * (INTAKE_INTERNAL, nothing recorded) and freed, and the lock is not held.
 */
static int
enqueue(struct intake *in, struct intake_pending *p, int wake)
{
	pthread_mutex_lock(&in->group_lock);
	if (!in->started || in->stopping) {
		/* shutting down: nothing recorded, and the client may retry */
		pthread_mutex_unlock(&in->group_lock);
		p->rec.result = OSTORE_FAIL;
		settle(p);
		p->done(p->arg, &p->res);
		pending_free(p);
		return -1;
	}
	p->next = in->queue;
	in->queue = p;
	if (wake)
		pthread_cond_signal(&in->group_work);
	return 0;
}

void
intake_place_async(struct intake *in, const char *user_id, const json_t *request, const char *via,
    const char *idem_key, intake_done done, void *arg)
{
	struct intake_result res;
	struct intake_pending *p = prepare(in, user_id, request, via, idem_key, &res);

	if (p == NULL) {
		count(&res, via);
		done(arg, &res);
		return;
	}
	p->done = done;
	p->arg = arg;
	if (enqueue(in, p, 1) == 0)
		pthread_mutex_unlock(&in->group_lock);
}

/* intake_place() waits for its own order: the answer is copied here and the flag set. */
struct waiter {
	struct intake *in;
	struct intake_result *res;
	int done;
};

static void
wake_waiter(void *arg, const struct intake_result *res)
{
	struct waiter *w = arg;

	pthread_mutex_lock(&w->in->group_lock);
	*w->res = *res;
	w->done = 1;
	pthread_cond_broadcast(&w->in->group_done);
	pthread_mutex_unlock(&w->in->group_lock);
}

/*
 * An MQTT request waits for its order anyway (the broker has its PUBACK
 * only when the handler returns), so when no commit is under way its
 * thread records the queue itself and publishes at once, as before the
 * committer: handing over to the committer and the main loop cost two
 * thread wake-ups per order on paho's receive thread, which every other
 * message to this service waits behind.
 */
void
intake_place(struct intake *in, const char *user_id, const json_t *request, const char *via, const char *idem_key,
    struct intake_result *res)
{
	struct waiter w = { in, res, 0 };
	struct intake_pending *p = prepare(in, user_id, request, via, idem_key, res);

	if (p == NULL) {
		count(res, via);
		return;
	}
	p->done = wake_waiter;
	p->arg = &w;
	if (enqueue(in, p, 0) != 0)
		return;
	/* when a batch is being recorded, the committer takes the queue (with p) after it */
	if (!in->committing) {
		record_queue(in, 1);
		if (in->queue != NULL)
			pthread_cond_signal(&in->group_work);
	}
	while (!w.done)
		pthread_cond_wait(&in->group_done, &in->group_lock);
	pthread_mutex_unlock(&in->group_lock);
}

void
intake_place_raw(struct intake *in, const char *user_id, const void *buf, size_t len, const char *via,
    const char *idem_key, struct intake_result *res)
{
	json_error_t jerr;
	json_t *req;

	memset(res, 0, sizeof(*res));
	if (len > EVENT_MAX_BYTES) {
		invalid(res, "too_large", "the request is %zu bytes; the limit is %d", len, EVENT_MAX_BYTES);
		count_refused(via, res->error);
		return;
	}
	if ((req = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr)) == NULL) {
		invalid(res, "invalid_json", "malformed JSON: %s (line %d, column %d)", jerr.text, jerr.line,
		    jerr.column);
		count_refused(via, res->error);
		return;
	}
	intake_place(in, user_id, req, via, idem_key, res);
	json_decref(req);
}

int
intake_expire_keys(struct intake *in, int64_t max_age_ms)
{
	int n;

	return ostore_expire_keys(in->store, now_ms() - max_age_ms, &n) == OSTORE_OK ? n : -1;
}

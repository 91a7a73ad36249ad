#include "delivery.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>

#include "log.h"
#include "metrics.h"
#include "netcheck.h"
#include "sign.h"
#include "topic.h"
#include "util.h"

#define DELIVERY_MAX_INFLIGHT 64

struct attempt {
	CURL *easy;
	struct curl_slist *headers;
	char delivery_id[NAME_MAX_LEN + 1];
	char order_id[NAME_MAX_LEN + 1];
	char user_id[NAME_MAX_LEN + 1];
	char *body;
	int attempts; /* including this one */
	char errbuf[CURL_ERROR_SIZE];
	char host[256];
	const struct allowlist *allow;
	char refused[128]; /* set when the address policy refused the destination */
};

struct deliverer {
	struct notifier_store *store;
	struct delivery_policy p;
	char *secret;
	const struct allowlist *allow;
	pthread_t thread;
	atomic_int stop;
	CURLM *multi;
	struct attempt *inflight[DELIVERY_MAX_INFLIGHT];
	int ninflight;
	struct metric *m_delivered, *m_failed, *m_retried;
};

int64_t
delivery_backoff_ms(const struct delivery_policy *p, int failures, double jitter01)
{
	int64_t d = p->base_ms;

	for (int i = 1; i < failures && d < p->cap_ms; i++)
		d *= 2;
	if (d > p->cap_ms)
		d = p->cap_ms;
	if (jitter01 < 0)
		jitter01 = 0;
	if (jitter01 >= 1)
		jitter01 = 0.999999;
	return d / 2 + (int64_t)((double)(d - d / 2) * jitter01);
}

char *
delivery_body(const struct event *status)
{
	char at[32], *body;
	json_t *o;

	o = json_pack("{s:s, s:s, s:s, s:s, s:s}", "type", "OrderReady", "order_id", status->order_id, "user_id",
	    status->user_id, "status", "ready", "at", time_rfc3339(status->at_ms, at, sizeof(at)));
	body = o != NULL ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
	json_decref(o);
	return body;
}

static double
jitter(void)
{
	uint32_t r = 0;

	random_bytes(&r, sizeof(r));
	return (double)r / 4294967296.0;
}

static int
is_inflight(struct deliverer *d, const char *id)
{
	for (int i = 0; i < d->ninflight; i++)
		if (strcmp(d->inflight[i]->delivery_id, id) == 0)
			return 1;
	return 0;
}

static size_t
discard(char *data, size_t size, size_t n, void *arg)
{
	(void)data;
	(void)arg;
	return size * n;
}

/* Every address curl is about to connect to passes the policy first (after DNS, so no rebinding). */
static curl_socket_t
open_checked(void *arg, curlsocktype purpose, struct curl_sockaddr *addr)
{
	struct attempt *a = arg;
	char ip[INET6_ADDRSTRLEN] = "?";

	(void)purpose;
	if (!netcheck_addr(a->allow, &addr->addr, a->host)) {
		if (addr->family == AF_INET)
			inet_ntop(AF_INET, &((struct sockaddr_in *)&addr->addr)->sin_addr, ip, sizeof(ip));
		else if (addr->family == AF_INET6)
			inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&addr->addr)->sin6_addr, ip, sizeof(ip));
		snprintf(a->refused, sizeof(a->refused), "destination %s is private, loopback or link-local", ip);
		return CURL_SOCKET_BAD;
	}
	return socket(addr->family, addr->socktype, addr->protocol);
}

static void
attempt_free(struct attempt *a)
{
	if (a == NULL)
		return;
	if (a->easy != NULL)
		curl_easy_cleanup(a->easy);
	curl_slist_free_all(a->headers);
	free(a->body);
	free(a);
}

/* Starts one POST. Returns 0, or -1 (the row stays pending). */
static int
start_attempt(struct deliverer *d, const char *id, const char *order_id, const char *user_id, const char *url,
    const char *body, int attempts)
{
	struct attempt *a = calloc(1, sizeof(*a));
	char sig[SIGN_HEADER_MAX + 32], hdr[NAME_MAX_LEN + 32];

	if (a == NULL || (a->body = strdup(body)) == NULL || (a->easy = curl_easy_init()) == NULL)
		goto fail;
	str_copy(a->delivery_id, sizeof(a->delivery_id), id);
	str_copy(a->order_id, sizeof(a->order_id), order_id);
	str_copy(a->user_id, sizeof(a->user_id), user_id);
	a->attempts = attempts + 1;
	a->allow = d->allow;
	{
		CURLU *u = curl_url();
		char *h = NULL;
		if (u != NULL && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
		    curl_url_get(u, CURLUPART_HOST, &h, 0) == CURLUE_OK)
			str_copy(a->host, sizeof(a->host), h);
		curl_free(h);
		curl_url_cleanup(u);
	}
	memcpy(sig, "Pizza-Signature: ", 17);
	if (sign_header(d->secret, now_ms() / 1000, a->body, strlen(a->body), sig + 17) != 0)
		goto fail;
	snprintf(hdr, sizeof(hdr), "Pizza-Delivery: %s", id);
	a->headers = curl_slist_append(a->headers, "Content-Type: application/json");
	a->headers = curl_slist_append(a->headers, sig);
	a->headers = curl_slist_append(a->headers, hdr);
	a->headers = curl_slist_append(a->headers, "User-Agent: pizza-notifier/" PIZZA_VERSION);
	a->headers = curl_slist_append(a->headers, "Expect:"); /* no 100-continue round trip */
	curl_easy_setopt(a->easy, CURLOPT_URL, url);
	curl_easy_setopt(a->easy, CURLOPT_POSTFIELDS, a->body);
	curl_easy_setopt(a->easy, CURLOPT_HTTPHEADER, a->headers);
	curl_easy_setopt(a->easy, CURLOPT_TIMEOUT_MS, (long)d->p.timeout_ms);
	curl_easy_setopt(a->easy, CURLOPT_CONNECTTIMEOUT_MS, (long)(d->p.timeout_ms < 2000 ? d->p.timeout_ms : 2000));
	curl_easy_setopt(a->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(a->easy, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(a->easy, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(a->easy, CURLOPT_WRITEFUNCTION, discard);
	curl_easy_setopt(a->easy, CURLOPT_ERRORBUFFER, a->errbuf);
	curl_easy_setopt(a->easy, CURLOPT_PRIVATE, a);
	curl_easy_setopt(a->easy, CURLOPT_OPENSOCKETFUNCTION, open_checked);
	curl_easy_setopt(a->easy, CURLOPT_OPENSOCKETDATA, a);
	curl_easy_setopt(a->easy, CURLOPT_PROXY, ""); /* no proxy from the environment: it would hide the destination */
	if (curl_multi_add_handle(d->multi, a->easy) != CURLM_OK)
		goto fail;
	d->inflight[d->ninflight++] = a;
	log_debug("callback attempt", "order_id=%s delivery_id=%s attempt=%d", order_id, id, a->attempts);
	return 0;
fail:
	attempt_free(a);
	return -1;
}

/* nstore_due() callback: starts an attempt for one due delivery unless it is in flight; stops when full. */
static int
start_one(void *arg, const struct nstore_delivery *row)
{
	struct deliverer *d = arg;

	if (d->ninflight >= DELIVERY_MAX_INFLIGHT)
		return 1;
	if (row->delivery_id != NULL && row->order_id != NULL && row->user_id != NULL && row->url != NULL &&
	    row->body != NULL && !is_inflight(d, row->delivery_id))
		start_attempt(d, row->delivery_id, row->order_id, row->user_id, row->url, row->body, row->attempts);
	return d->ninflight >= DELIVERY_MAX_INFLIGHT;
}

/* Starts attempts for due deliveries, up to the in-flight limit (a store failure is logged; the next scan retries). */
static void
start_due(struct deliverer *d)
{
	if (d->ninflight < DELIVERY_MAX_INFLIGHT)
		nstore_due(d->store, now_ms(), DELIVERY_MAX_INFLIGHT * 2, start_one, d);
}

/*
 * The CallbackDelivery event announcing a's final outcome, encoded into a
 * new string the caller frees.  NULL on failure.
 */
static char *
outcome_event(const struct attempt *a, int ok, const char *detail)
{
	struct event ev;

	if (event_init(&ev, EVENT_CALLBACK_DELIVERY, a->order_id, a->user_id) != 0)
		return NULL;
	str_copy(ev.delivery_id, sizeof(ev.delivery_id), a->delivery_id);
	ev.outcome = ok ? DELIVERY_DELIVERED : DELIVERY_FAILED;
	ev.attempts = a->attempts;
	str_copy(ev.message, sizeof(ev.message), detail);
	return event_encode(&ev);
}

/* Records one finished attempt: delivered, retry later, or failed for good. */
static void
finish(struct deliverer *d, struct attempt *a, CURLcode cr)
{
	long status = 0;
	char detail[EVENT_MESSAGE_MAX + 1], *json = NULL;
	int ok, final;
	int64_t now = now_ms(), next = 0;
	struct nstore_msg announce = { TOPIC_CALLBACKS, NULL, 0, 1, 0 };
	struct nstore_attempt rec;

	if (cr == CURLE_OK)
		curl_easy_getinfo(a->easy, CURLINFO_RESPONSE_CODE, &status);
	ok = cr == CURLE_OK && status >= 200 && status < 300;
	if (ok)
		snprintf(detail, sizeof(detail), "HTTP %ld", status);
	else if (cr == CURLE_OK)
		snprintf(detail, sizeof(detail), "the receiver answered HTTP %ld", status);
	else if (a->refused[0] != '\0')
		snprintf(detail, sizeof(detail), "refused: %s (PIZZA_CALLBACK_ALLOW can allow it)", a->refused);
	else
		snprintf(detail, sizeof(detail), "%s", a->errbuf[0] != '\0' ? a->errbuf : curl_easy_strerror(cr));
	/* a refused destination stays refused: no point in retrying */
	final = ok || a->attempts >= d->p.max_attempts || a->refused[0] != '\0';
	if (!final)
		next = now + delivery_backoff_ms(&d->p, a->attempts, jitter());

	rec = (struct nstore_attempt){ .delivery_id = a->delivery_id, .attempts = a->attempts,
		.state = ok ? NSTORE_DELIVERED : final ? NSTORE_FAILED : NSTORE_PENDING,
		.last_error = ok ? NULL : detail, .at_ms = now, .next_ms = next };
	/* a final outcome is announced in the same transaction; if it cannot be, the row stays as it was and is tried again */
	if (!final || (json = outcome_event(a, ok, detail)) != NULL) {
		announce.payload = json;
		announce.len = json != NULL ? strlen(json) : 0;
		rec.announce = final ? &announce : NULL;
		nstore_record_attempt(d->store, &rec);
	}
	free(json);
	metric_inc(ok ? d->m_delivered : final ? d->m_failed : d->m_retried);
	if (ok)
		log_info("callback delivered", "order_id=%s delivery_id=%s attempts=%d", a->order_id, a->delivery_id,
		    a->attempts);
	else if (final)
		log_warn("callback failed for good", "order_id=%s delivery_id=%s attempts=%d detail=%s", a->order_id,
		    a->delivery_id, a->attempts, LOGQ(detail));
	else
		log_info("callback attempt failed; will retry", "order_id=%s delivery_id=%s attempt=%d retry_in_ms=%lld",
		    a->order_id, a->delivery_id, a->attempts, (long long)(next - now));
	if (final)
		nstore_flush(d->store);
}

static void *
run(void *arg)
{
	struct deliverer *d = arg;
	int64_t last_scan = 0;

	while (!d->stop) {
		int running = 0, left;
		CURLMsg *msg;

		if (mono_ms() - last_scan >= 100) {
			start_due(d);
			last_scan = mono_ms();
		}
		curl_multi_perform(d->multi, &running);
		while ((msg = curl_multi_info_read(d->multi, &left)) != NULL) {
			struct attempt *a = NULL;

			if (msg->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&a);
			curl_multi_remove_handle(d->multi, msg->easy_handle);
			finish(d, a, msg->data.result);
			for (int i = 0; i < d->ninflight; i++)
				if (d->inflight[i] == a) {
					d->inflight[i] = d->inflight[--d->ninflight];
					break;
				}
			attempt_free(a);
		}
		curl_multi_poll(d->multi, NULL, 0, 100, NULL);
	}
	for (int i = 0; i < d->ninflight; i++) {
		curl_multi_remove_handle(d->multi, d->inflight[i]->easy);
		attempt_free(d->inflight[i]);
	}
	d->ninflight = 0;
	return NULL;
}

struct deliverer *
deliverer_start(struct notifier_store *s, const struct delivery_policy *p, const char *secret,
    const struct allowlist *allow)
{
	struct deliverer *d = calloc(1, sizeof(*d));

	if (d == NULL)
		return NULL;
	d->store = s;
	d->p = *p;
	d->allow = allow;
	d->m_delivered = metric_counter("pizza_callback_deliveries_total", "Callback attempts by outcome",
	    "outcome=\"delivered\"");
	d->m_retried = metric_counter("pizza_callback_deliveries_total", "Callback attempts by outcome",
	    "outcome=\"retry\"");
	d->m_failed = metric_counter("pizza_callback_deliveries_total", "Callback attempts by outcome",
	    "outcome=\"failed\"");
	if ((d->secret = strdup(secret)) == NULL || (d->multi = curl_multi_init()) == NULL ||
	    pthread_create(&d->thread, NULL, run, d) != 0) {
		if (d->multi != NULL)
			curl_multi_cleanup(d->multi);
		free(d->secret);
		free(d);
		return NULL;
	}
	return d;
}

void
deliverer_stop(struct deliverer *d)
{
	if (d == NULL)
		return;
	d->stop = 1;
	curl_multi_wakeup(d->multi);
	pthread_join(d->thread, NULL);
	curl_multi_cleanup(d->multi);
	free(d->secret);
	free(d);
}

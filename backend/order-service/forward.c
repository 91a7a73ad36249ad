#include "forward.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "curlbuf.h"
#include "log.h"
#include "metrics.h"
#include "util.h"

#define FORWARD_MAX_BODY (4 * 1024 * 1024)
#define FORWARD_HELP "Reads forwarded to order-history by outcome (busy, down: refused at once with 503)"

const struct forward_policy forward_default_policy = { 2000, 32, 3, 5000 };

enum breaker { BREAKER_CLOSED, BREAKER_OPEN, BREAKER_TRIAL };

/* One forward, from forward_get() until done() was called. */
struct fwd {
	struct fwd *next; /* in the queue, while not yet started */
	CURL *easy;
	char *url;
	struct curlbuf body;
	forward_done done;
	void *arg;
	int trial; /* the breaker's trial: its outcome closes or opens it */
};

struct forwarder {
	char *base_url;
	struct curl_slist *headers;
	struct forward_policy p;
	CURLM *multi;
	pthread_t thread;
	atomic_int stop;
	/* under lock: */
	pthread_mutex_t lock;
	struct fwd *queue, **queue_tail; /* accepted by forward_get(), not yet given to curl */
	int inflight;                    /* queued and running */
	enum breaker breaker;
	int failures; /* in a row */
	int64_t opened_at;
	/* the thread's own */
	struct fwd **running;
	int nrunning;
	struct metric *m_answered, *m_failed, *m_busy, *m_down;
};

static void
fwd_free(struct fwd *w)
{
	if (w == NULL)
		return;
	if (w->easy != NULL)
		curl_easy_cleanup(w->easy);
	free(w->url);
	free(w->body.p);
	free(w);
}

/* The seconds until the open breaker lets a trial through (>= 1).  lock held. */
static int
open_left_s(const struct forwarder *f, int64_t now)
{
	int64_t left = f->opened_at + f->p.open_ms - now;

	return left > 0 ? (int)((left + 999) / 1000) : 1;
}

enum forward_result
forward_get(struct forwarder *f, const char *path_query, forward_done done, void *arg, int *retry_after_s)
{
	struct fwd *w = calloc(1, sizeof(*w));
	size_t n = strlen(f->base_url) + strlen(path_query) + 1;
	int64_t now = mono_ms();
	enum forward_result r = FORWARD_QUEUED;

	*retry_after_s = 1;
	if (w == NULL || (w->url = malloc(n)) == NULL) {
		free(w);
		return FORWARD_FAIL;
	}
	snprintf(w->url, n, "%s%s", f->base_url, path_query);
	w->body.max = FORWARD_MAX_BODY;
	w->done = done;
	w->arg = arg;
	pthread_mutex_lock(&f->lock);
	if (f->breaker == BREAKER_OPEN && now - f->opened_at >= f->p.open_ms) {
		/* time for one trial; everyone else is still refused until it answers */
		f->breaker = BREAKER_TRIAL;
		w->trial = 1;
	} else if (f->breaker != BREAKER_CLOSED) {
		*retry_after_s = f->breaker == BREAKER_OPEN ? open_left_s(f, now) : 1;
		r = FORWARD_DOWN;
	}
	if (r == FORWARD_QUEUED && f->inflight >= f->p.max_inflight) {
		if (w->trial)
			f->breaker = BREAKER_OPEN; /* not tried: the next read may be the trial */
		r = FORWARD_BUSY;
	}
	if (r == FORWARD_QUEUED) {
		f->inflight++;
		*f->queue_tail = w;
		f->queue_tail = &w->next;
	}
	pthread_mutex_unlock(&f->lock);
	if (r != FORWARD_QUEUED) {
		metric_inc(r == FORWARD_BUSY ? f->m_busy : f->m_down);
		free(w->url);
		free(w);
		return r;
	}
	curl_multi_wakeup(f->multi);
	return FORWARD_QUEUED;
}

/*
 * Records a forward's outcome in the breaker: an answer (any status:
 * order-history is there) closes it; no answer counts towards opening it.
 */
static void
breaker_record(struct forwarder *f, const struct fwd *w, int answered)
{
	int opened = 0;

	pthread_mutex_lock(&f->lock);
	f->inflight--;
	if (answered) {
		f->failures = 0;
		if (w->trial || f->breaker == BREAKER_OPEN)
			log_info("order history answers again; reads are forwarded", NULL);
		if (w->trial || f->breaker != BREAKER_CLOSED)
			f->breaker = BREAKER_CLOSED;
	} else {
		f->failures++;
		if (w->trial || (f->breaker == BREAKER_CLOSED && f->failures >= f->p.trip_after)) {
			opened = f->breaker != BREAKER_OPEN || w->trial;
			f->breaker = BREAKER_OPEN;
			f->opened_at = mono_ms();
		}
	}
	pthread_mutex_unlock(&f->lock);
	if (opened)
		log_warn("order history is not answering; reads are refused with 503 for a while", "url=%s open_ms=%ld",
		    LOGQ(f->base_url), f->p.open_ms);
}

/* Starts the queued forwards (the thread's). */
static void
start_queued(struct forwarder *f)
{
	struct fwd *q;

	pthread_mutex_lock(&f->lock);
	q = f->queue;
	f->queue = NULL;
	f->queue_tail = &f->queue;
	pthread_mutex_unlock(&f->lock);
	while (q != NULL) {
		struct fwd *w = q;
		CURL *c;

		q = q->next;
		w->next = NULL;
		if ((c = w->easy = curl_easy_init()) == NULL || curl_multi_add_handle(f->multi, c) != CURLM_OK) {
			/* our failure (out of memory), not order-history's: the breaker stays as it was */
			pthread_mutex_lock(&f->lock);
			f->inflight--;
			if (w->trial)
				f->breaker = BREAKER_OPEN; /* the next read is the trial */
			pthread_mutex_unlock(&f->lock);
			metric_inc(f->m_failed);
			w->done(w->arg, 0, NULL);
			fwd_free(w);
			continue;
		}
		curl_easy_setopt(c, CURLOPT_URL, w->url);
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, f->headers);
		curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, curlbuf_sink);
		curl_easy_setopt(c, CURLOPT_WRITEDATA, &w->body);
		curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, f->p.timeout_ms);
		curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, f->p.timeout_ms < 1000 ? f->p.timeout_ms : 1000L);
		curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
		curl_easy_setopt(c, CURLOPT_PROXY, ""); /* straight to order-history, whatever the environment says */
		curl_easy_setopt(c, CURLOPT_PRIVATE, w);
		f->running[f->nrunning++] = w;
	}
}

/* A forward curl is done with: answered, counted, freed. */
static void
finish(struct forwarder *f, struct fwd *w, CURLcode cr)
{
	long status = 0;

	curl_multi_remove_handle(f->multi, w->easy);
	for (int i = 0; i < f->nrunning; i++)
		if (f->running[i] == w) {
			f->running[i] = f->running[--f->nrunning];
			break;
		}
	if (cr == CURLE_OK)
		curl_easy_getinfo(w->easy, CURLINFO_RESPONSE_CODE, &status);
	breaker_record(f, w, status != 0);
	if (status == 0) {
		if (!f->stop)
			log_warn("order history did not answer", "url=%s err=%s", LOGQ(w->url),
			    LOGQ(curl_easy_strerror(cr)));
		metric_inc(f->m_failed);
		w->done(w->arg, 0, NULL);
	} else {
		metric_inc(f->m_answered);
		w->done(w->arg, status, w->body.p != NULL ? w->body.p : strdup(""));
		w->body.p = NULL;
	}
	fwd_free(w);
}

static void *
run(void *arg)
{
	struct forwarder *f = arg;

	while (!f->stop) {
		int running = 0, left;
		CURLMsg *msg;

		start_queued(f);
		curl_multi_perform(f->multi, &running);
		while ((msg = curl_multi_info_read(f->multi, &left)) != NULL) {
			struct fwd *w = NULL;

			if (msg->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&w);
			finish(f, w, msg->data.result);
		}
		curl_multi_poll(f->multi, NULL, 0, 1000, NULL);
	}
	/* stopping: everything still in flight or queued gets its answer */
	start_queued(f);
	while (f->nrunning > 0)
		finish(f, f->running[0], CURLE_ABORTED_BY_CALLBACK);
	return NULL;
}

struct forwarder *
forward_start(const char *base_url, const char *secret, const struct forward_policy *p)
{
	struct forwarder *f = calloc(1, sizeof(*f));
	char *auth = NULL;

	if (f == NULL)
		return NULL;
	f->p = *p;
	f->queue_tail = &f->queue;
	pthread_mutex_init(&f->lock, NULL);
	f->m_answered = metric_counter("pizza_history_forwards_total", FORWARD_HELP, "outcome=\"answered\"");
	f->m_failed = metric_counter("pizza_history_forwards_total", FORWARD_HELP, "outcome=\"failed\"");
	f->m_busy = metric_counter("pizza_history_forwards_total", FORWARD_HELP, "outcome=\"busy\"");
	f->m_down = metric_counter("pizza_history_forwards_total", FORWARD_HELP, "outcome=\"down\"");
	if (secret != NULL) {
		size_t n = strlen("Authorization: Bearer ") + strlen(secret) + 1;

		if ((auth = malloc(n)) == NULL)
			goto fail;
		snprintf(auth, n, "Authorization: Bearer %s", secret);
		if ((f->headers = curl_slist_append(NULL, auth)) == NULL)
			goto fail;
		explicit_bzero(auth, n);
		free(auth);
		auth = NULL;
	}
	if ((f->base_url = strdup(base_url)) == NULL ||
	    (f->running = calloc((size_t)p->max_inflight, sizeof(*f->running))) == NULL ||
	    (f->multi = curl_multi_init()) == NULL)
		goto fail;
	if (pthread_create(&f->thread, NULL, run, f) != 0)
		goto fail;
	return f;
fail:
	free(auth);
	if (f->multi != NULL)
		curl_multi_cleanup(f->multi);
	curl_slist_free_all(f->headers);
	free(f->running);
	free(f->base_url);
	pthread_mutex_destroy(&f->lock);
	free(f);
	return NULL;
}

void
forward_stop(struct forwarder *f)
{
	if (f == NULL)
		return;
	f->stop = 1;
	curl_multi_wakeup(f->multi);
	pthread_join(f->thread, NULL);
	curl_multi_cleanup(f->multi);
	curl_slist_free_all(f->headers);
	free(f->running);
	free(f->base_url);
	pthread_mutex_destroy(&f->lock);
	free(f);
}

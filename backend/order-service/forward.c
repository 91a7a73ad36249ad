#include "forward.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "curlbuf.h"
#include "log.h"
#include "metrics.h"
#include "util.h"

#define FORWARD_MAX_BODY (4 * 1024 * 1024)
#define FORWARD_MAX_URL 256     /* bytes of one base URL */
#define FORWARD_MIN_RETRY_MS 100 /* a retry needs this much of the read's budget left */
#define FORWARD_HELP "Reads forwarded to order-history by outcome (busy, down: refused at once with 503)"
#define UP_HELP "1 while reads go to this order-history URL (its circuit breaker is closed), else 0"
#define FAILED_HELP "Attempts to this order-history URL that got no answer or a 5xx"
#define RETRY_HELP "Reads tried again on another order-history URL after no answer or a 5xx"

const struct forward_policy forward_default_policy = { 2000, 32, 3, 5000, 3000 };

enum breaker { BREAKER_CLOSED, BREAKER_OPEN, BREAKER_TRIAL };

/* One order-history URL and its circuit breaker. */
struct backend {
	char *url; /* without a trailing slash */
	/* under the forwarder's lock: */
	enum breaker breaker;
	int failures; /* in a row */
	int64_t opened_at;
	struct metric *m_up, *m_failed;
};

/* One read, from forward_get() until done() was called. */
struct fwd {
	struct fwd *next; /* in the queue, while not yet started */
	CURL *easy;
	char *path_query;
	char *url; /* of the current attempt */
	struct curlbuf body;
	forward_done done;
	void *arg;
	int b;            /* the current attempt's backend */
	int trial;        /* the attempt is its backend's trial: its outcome closes or opens the breaker */
	int attempts;     /* 1, or 2 once retried */
	int64_t deadline; /* mono_ms(): the read's budget runs out */
};

struct forwarder {
	struct backend be[FORWARD_MAX_URLS];
	int nbe;
	struct curl_slist *headers;
	struct forward_policy p;
	CURLM *multi;
	pthread_t thread;
	atomic_int stop;
	/* under lock: */
	pthread_mutex_t lock;
	struct fwd *queue, **queue_tail; /* accepted by forward_get(), not yet given to curl */
	int inflight;                    /* reads queued and running */
	/* the thread's own */
	struct fwd **running;
	int nrunning;
	struct metric *m_answered, *m_failed, *m_busy, *m_down, *m_retries;
};

/*
 * Splits the list urls into at most max base URLs (trailing slashes
 * dropped), each a new string in out.  Returns how many, or -1 with err
 * set (and nothing left allocated).
 */
static int
urls_split(const char *urls, char **out, int max, char *err, size_t n)
{
	int count = 0;
	const char *p = urls != NULL ? urls : "";

	for (;;) {
		const char *end = p + strcspn(p, ","), *host;
		size_t len;
		char *u;

		while (p < end && (*p == ' ' || *p == '\t'))
			p++;
		len = (size_t)(end - p);
		while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
			len--;
		while (len > 1 && p[len - 1] == '/' && p[len - 2] != '/') /* "http://h/" but not "http://" */
			len--;
		if (len == 0) {
			snprintf(err, n, "an empty URL in the list (URLs are separated by commas)");
			goto fail;
		}
		if (len > FORWARD_MAX_URL) {
			snprintf(err, n, "a URL longer than %d bytes", FORWARD_MAX_URL);
			goto fail;
		}
		if (count == max) {
			snprintf(err, n, "more than %d URLs", max);
			goto fail;
		}
		if ((u = strndup(p, len)) == NULL) {
			snprintf(err, n, "out of memory");
			goto fail;
		}
		out[count++] = u;
		if (strncasecmp(u, "http://", 7) == 0)
			host = u + 7;
		else if (strncasecmp(u, "https://", 8) == 0)
			host = u + 8;
		else {
			snprintf(err, n, "\"%.*s\": not an http:// or https:// URL", FORWARD_MAX_URL, u);
			goto fail;
		}
		for (const unsigned char *c = (const unsigned char *)u; *c != '\0'; c++)
			if (*c <= ' ' || *c >= 0x7f || *c == '"' || *c == '\\') {
				snprintf(err, n, "a URL with a space, quote, backslash or control character");
				goto fail;
			}
		if (*host == '\0' || *host == '/' || *host == ':') {
			snprintf(err, n, "\"%s\": no host", u);
			goto fail;
		}
		if (strpbrk(host, "@") != NULL && strcspn(host, "@") < strcspn(host, "/")) {
			/* the URL not repeated: it may hold a password */
			snprintf(err, n, "a URL with a user or password (order-history takes the history secret)");
			goto fail;
		}
		if (strpbrk(u, "?#") != NULL) {
			snprintf(err, n, "\"%s\": a base URL takes no query or fragment", u);
			goto fail;
		}
		for (int i = 0; i < count - 1; i++)
			if (strcasecmp(out[i], u) == 0) {
				snprintf(err, n, "\"%s\" listed twice", u);
				goto fail;
			}
		if (*end == '\0')
			return count;
		p = end + 1;
	}
fail:
	while (count > 0)
		free(out[--count]);
	return -1;
}

int
forward_check_urls(const char *urls, char *err, size_t n)
{
	char *u[FORWARD_MAX_URLS];
	int count = urls_split(urls, u, FORWARD_MAX_URLS, err, n);

	for (int i = 0; i < count; i++)
		free(u[i]);
	return count > 0 ? 0 : -1;
}

static void
fwd_free(struct fwd *w)
{
	if (w == NULL)
		return;
	if (w->easy != NULL)
		curl_easy_cleanup(w->easy);
	free(w->path_query);
	free(w->url);
	free(w->body.p);
	free(w);
}

/* The seconds until backend b lets a trial through (>= 1).  lock held. */
static int
open_left_s(const struct forwarder *f, const struct backend *b, int64_t now)
{
	int64_t left = b->opened_at + f->p.open_ms - now;

	return b->breaker == BREAKER_OPEN && left > 0 ? (int)((left + 999) / 1000) : 1;
}

/*
 * The first backend, in the configured order and other than skip, whose
 * breaker lets an attempt through: closed, or open long enough for a
 * trial (which it then is: *trial set, the breaker in BREAKER_TRIAL).
 * Returns its index, or -1 with *retry_after_s the seconds until the
 * first trial is due.  lock held.
 */
static int
backend_pick(struct forwarder *f, int skip, int64_t now, int *trial, int *retry_after_s)
{
	int wait = 0;

	*trial = 0;
	for (int i = 0; i < f->nbe; i++) {
		struct backend *b = &f->be[i];
		int left;

		if (i == skip)
			continue;
		if (b->breaker == BREAKER_CLOSED)
			return i;
		if (b->breaker == BREAKER_OPEN && now - b->opened_at >= f->p.open_ms) {
			/* time for one trial; every other read skips this URL until it answers */
			b->breaker = BREAKER_TRIAL;
			*trial = 1;
			return i;
		}
		left = open_left_s(f, b, now);
		if (wait == 0 || left < wait)
			wait = left;
	}
	*retry_after_s = wait > 0 ? wait : 1;
	return -1;
}

/* The URL of w's attempt on backend b, in w->url.  0, or -1 out of memory. */
static int
fwd_aim(struct forwarder *f, struct fwd *w, int b, int trial)
{
	size_t n = strlen(f->be[b].url) + strlen(w->path_query) + 1;
	char *url = malloc(n);

	if (url == NULL)
		return -1;
	snprintf(url, n, "%s%s", f->be[b].url, w->path_query);
	free(w->url);
	w->url = url;
	w->b = b;
	w->trial = trial;
	return 0;
}

enum forward_result
forward_get(struct forwarder *f, const char *path_query, forward_done done, void *arg, int *retry_after_s)
{
	struct fwd *w = calloc(1, sizeof(*w));
	int64_t now = mono_ms();
	enum forward_result r = FORWARD_QUEUED;
	int b, trial;

	*retry_after_s = 1;
	if (w == NULL || (w->path_query = strdup(path_query)) == NULL) {
		free(w);
		return FORWARD_FAIL;
	}
	w->body.max = FORWARD_MAX_BODY;
	w->done = done;
	w->arg = arg;
	w->attempts = 1;
	w->deadline = now + f->p.budget_ms;
	pthread_mutex_lock(&f->lock);
	if ((b = backend_pick(f, -1, now, &trial, retry_after_s)) < 0)
		r = FORWARD_DOWN;
	else if (f->inflight >= f->p.max_inflight) {
		if (trial)
			f->be[b].breaker = BREAKER_OPEN; /* not tried: the next read may be the trial */
		r = FORWARD_BUSY;
	} else if (fwd_aim(f, w, b, trial) != 0) {
		if (trial)
			f->be[b].breaker = BREAKER_OPEN;
		r = FORWARD_FAIL;
	} else {
		f->inflight++;
		*f->queue_tail = w;
		f->queue_tail = &w->next;
	}
	pthread_mutex_unlock(&f->lock);
	if (r != FORWARD_QUEUED) {
		if (r != FORWARD_FAIL)
			metric_inc(r == FORWARD_BUSY ? f->m_busy : f->m_down);
		fwd_free(w);
		return r;
	}
	curl_multi_wakeup(f->multi);
	return FORWARD_QUEUED;
}

/*
 * Records an attempt's outcome in its backend's breaker: a usable answer
 * (any status below 500: order-history is there and can read) closes it;
 * none, or a 5xx, counts towards opening it.
 */
static void
breaker_record(struct forwarder *f, const struct fwd *w, int usable)
{
	struct backend *b = &f->be[w->b];
	int opened = 0, closed = 0;

	pthread_mutex_lock(&f->lock);
	if (usable) {
		b->failures = 0;
		closed = b->breaker != BREAKER_CLOSED;
		b->breaker = BREAKER_CLOSED;
	} else {
		b->failures++;
		if (w->trial || (b->breaker == BREAKER_CLOSED && b->failures >= f->p.trip_after)) {
			opened = b->breaker != BREAKER_OPEN;
			b->breaker = BREAKER_OPEN;
			b->opened_at = mono_ms();
		}
	}
	pthread_mutex_unlock(&f->lock);
	if (opened) {
		metric_set(b->m_up, 0);
		log_warn("order history is not answering; reads skip it for a while", "url=%s open_ms=%ld urls=%d",
		    LOGQ(b->url), f->p.open_ms, f->nbe);
	} else if (closed) {
		metric_set(b->m_up, 1);
		log_info("order history answers again; reads are forwarded to it", "url=%s", LOGQ(b->url));
	}
}

/* A trial that was never tried (our failure, not order-history's): the next read may be the trial. */
static void
trial_untried(struct forwarder *f, const struct fwd *w)
{
	if (!w->trial)
		return;
	pthread_mutex_lock(&f->lock);
	if (f->be[w->b].breaker == BREAKER_TRIAL)
		f->be[w->b].breaker = BREAKER_OPEN;
	pthread_mutex_unlock(&f->lock);
}

/* Hands w's current attempt to curl (the thread's).  0, or -1 out of memory (nothing started). */
static int
attempt_start(struct forwarder *f, struct fwd *w)
{
	long left = (long)(w->deadline - mono_ms());
	long timeout = f->p.timeout_ms < left ? f->p.timeout_ms : left;
	CURL *c;

	if (timeout < 1)
		timeout = 1;
	if ((c = w->easy = curl_easy_init()) == NULL)
		return -1;
	curl_easy_setopt(c, CURLOPT_URL, w->url);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, f->headers);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, curlbuf_sink);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &w->body);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, timeout < 1000 ? timeout : 1000L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_PROXY, ""); /* straight to order-history, whatever the environment says */
	curl_easy_setopt(c, CURLOPT_PRIVATE, w);
	if (curl_multi_add_handle(f->multi, c) != CURLM_OK) {
		curl_easy_cleanup(c);
		w->easy = NULL;
		return -1;
	}
	f->running[f->nrunning++] = w;
	return 0;
}

/* Answers the read w with status and body (taken over; NULL with 0), counts it and frees it. */
static void
fwd_done(struct forwarder *f, struct fwd *w, long status, char *body)
{
	pthread_mutex_lock(&f->lock);
	f->inflight--;
	pthread_mutex_unlock(&f->lock);
	metric_inc(status != 0 ? f->m_answered : f->m_failed);
	w->done(w->arg, status, body);
	fwd_free(w);
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

		q = q->next;
		w->next = NULL;
		if (attempt_start(f, w) != 0) {
			/* our failure (out of memory), not order-history's: the breaker stays as it was */
			trial_untried(f, w);
			fwd_done(f, w, 0, NULL);
		}
	}
}

/*
 * After an attempt without a usable answer: aims w at the next backend
 * whose breaker lets it through and starts it, when this was the first
 * attempt, the forwarder is not stopping and the budget has time left.
 * Returns 1 when retried, else 0.
 */
static int
retry(struct forwarder *f, struct fwd *w)
{
	int64_t now = mono_ms();
	int b, trial, wait, from = w->b;

	if (w->attempts > 1 || f->stop || f->nbe < 2 || w->deadline - now < FORWARD_MIN_RETRY_MS)
		return 0;
	pthread_mutex_lock(&f->lock);
	b = backend_pick(f, from, now, &trial, &wait);
	pthread_mutex_unlock(&f->lock);
	if (b < 0)
		return 0;
	w->attempts++;
	free(w->body.p);
	memset(&w->body, 0, sizeof(w->body));
	w->body.max = FORWARD_MAX_BODY;
	if (fwd_aim(f, w, b, trial) != 0 || attempt_start(f, w) != 0) {
		w->b = b;
		w->trial = trial;
		trial_untried(f, w);
		return 0;
	}
	metric_inc(f->m_retries);
	log_debug("read retried on another order history", "from=%s url=%s", LOGQ(f->be[from].url), LOGQ(w->url));
	return 1;
}

/* An attempt curl is done with: recorded, then retried or answered. */
static void
finish(struct forwarder *f, struct fwd *w, CURLcode cr)
{
	long status = 0;
	int usable;

	curl_multi_remove_handle(f->multi, w->easy);
	for (int i = 0; i < f->nrunning; i++)
		if (f->running[i] == w) {
			f->running[i] = f->running[--f->nrunning];
			break;
		}
	if (cr == CURLE_OK)
		curl_easy_getinfo(w->easy, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_cleanup(w->easy);
	w->easy = NULL;
	usable = status != 0 && status < 500;
	if (!usable && !f->stop) {
		metric_inc(f->be[w->b].m_failed);
		if (status == 0)
			log_warn("order history did not answer", "url=%s err=%s", LOGQ(w->url),
			    LOGQ(curl_easy_strerror(cr)));
		else
			log_warn("order history answered with a server error", "url=%s status=%ld", LOGQ(w->url), status);
	}
	if (cr == CURLE_ABORTED_BY_CALLBACK && f->stop)
		trial_untried(f, w); /* stopping: says nothing of order-history */
	else
		breaker_record(f, w, usable);
	if (!usable && retry(f, w))
		return;
	if (status == 0)
		fwd_done(f, w, 0, NULL);
	else {
		char *body = w->body.p != NULL ? w->body.p : strdup("");

		w->body.p = NULL;
		fwd_done(f, w, status, body);
	}
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

/* Frees what forward_start() set up (the thread stopped or never started). */
static void
forwarder_free(struct forwarder *f)
{
	if (f->multi != NULL)
		curl_multi_cleanup(f->multi);
	curl_slist_free_all(f->headers);
	free(f->running);
	for (int i = 0; i < f->nbe; i++)
		free(f->be[i].url);
	pthread_mutex_destroy(&f->lock);
	free(f);
}

struct forwarder *
forward_start(const char *urls, const char *secret, const struct forward_policy *p)
{
	struct forwarder *f = calloc(1, sizeof(*f));
	char *u[FORWARD_MAX_URLS], err[512], labels[FORWARD_MAX_URL + 16];
	int n;

	if (f == NULL)
		return NULL;
	f->p = *p;
	f->queue_tail = &f->queue;
	pthread_mutex_init(&f->lock, NULL);
	if ((n = urls_split(urls, u, FORWARD_MAX_URLS, err, sizeof(err))) < 0) {
		log_warn("bad order-history URL list", "err=%s", LOGQ(err));
		goto fail;
	}
	for (f->nbe = 0; f->nbe < n; f->nbe++) {
		struct backend *b = &f->be[f->nbe];

		b->url = u[f->nbe];
		/* the URL is checked: no quote, backslash or control character to escape */
		snprintf(labels, sizeof(labels), "url=\"%s\"", b->url);
		b->m_up = metric_gauge("pizza_history_backend_up", UP_HELP, labels);
		b->m_failed = metric_counter("pizza_history_backend_failures_total", FAILED_HELP, labels);
		metric_set(b->m_up, 1);
	}
	f->m_answered = metric_counter("pizza_history_forwards_total", FORWARD_HELP, "outcome=\"answered\"");
	f->m_failed = metric_counter("pizza_history_forwards_total", FORWARD_HELP, "outcome=\"failed\"");
	f->m_busy = metric_counter("pizza_history_forwards_total", FORWARD_HELP, "outcome=\"busy\"");
	f->m_down = metric_counter("pizza_history_forwards_total", FORWARD_HELP, "outcome=\"down\"");
	f->m_retries = metric_counter("pizza_history_retries_total", RETRY_HELP, NULL);
	if (secret != NULL) {
		size_t len = strlen("Authorization: Bearer ") + strlen(secret) + 1;
		char *auth = malloc(len);

		if (auth == NULL)
			goto fail;
		snprintf(auth, len, "Authorization: Bearer %s", secret);
		f->headers = curl_slist_append(NULL, auth);
		explicit_bzero(auth, len);
		free(auth);
		if (f->headers == NULL)
			goto fail;
	}
	if ((f->running = calloc((size_t)p->max_inflight, sizeof(*f->running))) == NULL ||
	    (f->multi = curl_multi_init()) == NULL)
		goto fail;
	if (pthread_create(&f->thread, NULL, run, f) != 0)
		goto fail;
	return f;
fail:
	forwarder_free(f);
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
	forwarder_free(f);
}

/*
 * load.c - phone-sim load: the coordinator.
 *
 *   phone-sim load --accounts FILE --phones N --orders M [--rate R] [--duration S] [--http]
 *
 * It forks shard processes holding the phones (load_shard.c), waits until
 * every phone is connected and subscribed, then places the orders: at the
 * offered rate (--rate, open loop: orders are due on the clock whether or
 * not earlier ones finished), or else each phone keeps one order open and
 * places the next when its pickup alert arrives (closed loop).  Every
 * record the phones send back is joined by order id; at the end it prints
 * a table, and writes PREFIX.json and a latency chart PREFIX.svg.
 *
 * For many phones from one machine (tests/bench/phones.py): --mqtt-url may
 * name several listeners of the broker, comma-separated, and phone i uses
 * the (i mod n)th, since loopback has only ip_local_port_range source ports
 * (~28k) per destination address and port; --connect-rate paces the
 * CONNECTs (each costs the broker a PBKDF2 check and a new session), and
 * --hold keeps the phones idle a while before the orders (keepalives).
 *
 * Exit status: 0 when every placed order reached its pickup alert; 1 when
 * any was lost or refused (or phones could not connect); 2 for bad usage.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "cli.h"
#include "config.h"
#include "curlbuf.h"
#include "load.h"
#include "load_report.h"
#include "log.h"
#include "menu.h"
#include "util.h"

#define PROG "phone-sim load"
#define SHARD_MIN 25    /* phones per process by default ... */
#define SHARD_MAX 100   /* ... and at most, once */
#define SHARDS_CHEAP 40 /* processes of SHARD_MIN are worth their memory up to this many */

enum req_state { REQ_PLACED = 1, REQ_ACCEPTED, REQ_DONE, REQ_FAILED };

struct req {
	int64_t placed_us;
	int32_t ord; /* index in agg.ords once accepted, else -1 */
	uint32_t phone;
	uint8_t state;
};

struct ord {
	char id[LOAD_ID_MAX + 1];
	int64_t accepted_us, alert_us;
	uint32_t req; /* UINT32_MAX until the answer naming it arrives */
	uint8_t statuses; /* bit seq set for each OrderStatus seen */
};

/* Everything the records say, joined.  Guarded by lock (HTTP placer threads write too). */
static struct {
	pthread_mutex_t lock;
	struct req *reqs;
	uint32_t nreqs; /* placed so far */
	struct ord *ords;
	size_t nords, cap;
	int32_t *slots; /* open-addressing hash of ords by id; -1 empty */
	size_t nslots;
	uint64_t accepted, done, refused, send_failed, duplicates, other;
	uint32_t connected, connect_failed;
	int64_t connected_last_us, first_placed_us, last_done_us;
	uint32_t *next_for_phone; /* closed loop: phones whose order finished, to place again */
	size_t nnext;
} agg = { .lock = PTHREAD_MUTEX_INITIALIZER };

static volatile sig_atomic_t quit;

static void
on_signal(int sig)
{
	(void)sig;
	quit = 1;
}

static uint64_t
hash_id(const char *s)
{
	uint64_t h = 1469598103934665603ULL;

	while (*s != '\0')
		h = (h ^ (unsigned char)*s++) * 1099511628211ULL;
	return h;
}

static void
slots_rebuild(size_t nslots)
{
	free(agg.slots);
	agg.nslots = nslots;
	if ((agg.slots = malloc(nslots * sizeof(*agg.slots))) == NULL)
		abort();
	memset(agg.slots, 0xff, nslots * sizeof(*agg.slots));
	for (size_t i = 0; i < agg.nords; i++) {
		size_t s = hash_id(agg.ords[i].id) & (nslots - 1);
		while (agg.slots[s] >= 0)
			s = (s + 1) & (nslots - 1);
		agg.slots[s] = (int32_t)i;
	}
}

/* The order with this id, created on first sight (events may overtake the answer that names it). */
static struct ord *
ord_get(const char *id)
{
	size_t s;
	struct ord *o;

	if (agg.nslots == 0 || (agg.nords + 1) * 2 > agg.nslots)
		slots_rebuild(agg.nslots == 0 ? 1024 : agg.nslots * 2);
	s = hash_id(id) & (agg.nslots - 1);
	while (agg.slots[s] >= 0) {
		if (strcmp(agg.ords[agg.slots[s]].id, id) == 0)
			return &agg.ords[agg.slots[s]];
		s = (s + 1) & (agg.nslots - 1);
	}
	if (agg.nords == agg.cap) {
		agg.cap = agg.cap == 0 ? 1024 : agg.cap * 2;
		if ((agg.ords = realloc(agg.ords, agg.cap * sizeof(*agg.ords))) == NULL)
			abort();
	}
	o = &agg.ords[agg.nords];
	memset(o, 0, sizeof(*o));
	str_copy(o->id, sizeof(o->id), id);
	o->req = UINT32_MAX;
	agg.slots[s] = (int32_t)agg.nords++;
	return o;
}

static void
maybe_done(struct ord *o)
{
	struct req *r;

	if (o->req == UINT32_MAX || o->alert_us == 0)
		return;
	r = &agg.reqs[o->req];
	if (r->state != REQ_ACCEPTED)
		return;
	r->state = REQ_DONE;
	agg.done++;
	agg.last_done_us = o->alert_us;
	agg.next_for_phone[agg.nnext++] = r->phone;
}

/* Applies one record; agg.lock held. */
static void
apply(const struct load_rec *rec)
{
	struct req *r = rec->req < agg.nreqs ? &agg.reqs[rec->req] : NULL;
	struct ord *o;

	switch (rec->kind) {
	case REC_CONNECTED:
		agg.connected++;
		agg.connected_last_us = rec->t_us;
		break;
	case REC_CONNECT_FAILED:
		agg.connect_failed++;
		break;
	case REC_PLACED:
		if (r != NULL)
			r->placed_us = rec->t_us;
		break;
	case REC_SEND_FAILED:
	case REC_REFUSED:
		if (r != NULL && r->state == REQ_PLACED) {
			r->state = REQ_FAILED;
			if (rec->kind == REC_REFUSED)
				agg.refused++;
			else
				agg.send_failed++;
		}
		break;
	case REC_ACCEPTED:
		if (r == NULL || r->state != REQ_PLACED) {
			agg.duplicates++; /* a second answer to the same request */
			break;
		}
		o = ord_get(rec->order_id);
		if (o->req != UINT32_MAX) {
			agg.duplicates++;
			break;
		}
		o->req = rec->req;
		o->accepted_us = rec->t_us;
		r->ord = (int32_t)(o - agg.ords);
		r->state = REQ_ACCEPTED;
		agg.accepted++;
		maybe_done(o);
		break;
	case REC_STATUS:
		o = ord_get(rec->order_id);
		if (rec->seq < 8 && (o->statuses & (1u << rec->seq)))
			agg.duplicates++;
		else if (rec->seq < 8)
			o->statuses |= (uint8_t)(1u << rec->seq);
		break;
	case REC_ALERT:
		o = ord_get(rec->order_id);
		if (o->alert_us != 0) {
			agg.duplicates++;
			break;
		}
		o->alert_us = rec->t_us;
		maybe_done(o);
		break;
	default:
		agg.other++;
		break;
	}
}

/* ---- HTTP placement: a few threads, each with one keep-alive connection ---- */

struct http_job {
	uint32_t phone, req;
};

static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct http_job *q;
	size_t head, tail, cap;
	int stop;
	const char *base, *sku;
	const struct load_account *accounts;
	uint32_t nphones;
	char **tokens;
	uint32_t login_next; /* next phone to log in */
	uint32_t login_failed;
	unsigned errors_shown;
} hp = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };

/* POSTs body to base+path with an optional bearer token. Returns the status, or -1 on a transport error. */
static long
http_post(CURL *c, const char *path, const char *token, const char *body, struct curlbuf *resp)
{
	char url[512], auth[320];
	struct curl_slist *h = NULL;
	long status = -1;

	snprintf(url, sizeof(url), "%s%s", hp.base, path);
	h = curl_slist_append(h, "Content-Type: application/json");
	if (token != NULL) {
		snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
		h = curl_slist_append(h, auth);
	}
	free(resp->p);
	resp->p = NULL;
	resp->len = 0;
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, resp);
	if (curl_easy_perform(c) == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	curl_slist_free_all(h);
	return status;
}

static void
http_error(const char *what, const char *user, long status, const struct curlbuf *resp)
{
	pthread_mutex_lock(&hp.lock);
	if (hp.errors_shown++ < 3) {
		json_t *j = resp->p != NULL ? json_loads(resp->p, 0, NULL) : NULL;
		const char *detail = json_string_value(json_object_get(j, "detail"));
		if (status < 0)
			fprintf(stderr, "%s: %s for %s: cannot reach %s\n", PROG, what, user, hp.base);
		else
			fprintf(stderr, "%s: %s for %s refused (HTTP %ld): %s%s\n", PROG, what, user, status,
			    detail != NULL ? detail : "", status == 429 ? " (raise order-service's --rate-limit)" : "");
		json_decref(j);
	}
	pthread_mutex_unlock(&hp.lock);
}

static void
http_login_all(CURL *c, struct curlbuf *resp)
{
	for (;;) {
		uint32_t i;
		const struct load_account *a;
		json_t *req, *j;
		char *body;
		long status;

		pthread_mutex_lock(&hp.lock);
		i = hp.login_next < hp.nphones ? hp.login_next++ : UINT32_MAX;
		pthread_mutex_unlock(&hp.lock);
		if (i == UINT32_MAX)
			return;
		a = &hp.accounts[i];
		req = json_pack("{s:s, s:s}", "user_id", a->user, "password", a->password);
		body = json_dumps(req, JSON_COMPACT);
		json_decref(req);
		status = http_post(c, "/v1/login", NULL, body, resp);
		free(body);
		j = status == 200 && resp->p != NULL ? json_loads(resp->p, 0, NULL) : NULL;
		if (json_string_value(json_object_get(j, "token")) != NULL)
			hp.tokens[i] = strdup(json_string_value(json_object_get(j, "token")));
		else {
			http_error("login", a->user, status, resp);
			pthread_mutex_lock(&hp.lock);
			hp.login_failed++;
			pthread_mutex_unlock(&hp.lock);
		}
		json_decref(j);
	}
}

static void *
http_placer(void *arg)
{
	CURL *c = curl_easy_init();
	struct curlbuf resp = { NULL, 0, 65536 };
	char body[256];

	(void)arg;
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, curlbuf_sink);
	curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	http_login_all(c, &resp);
	for (;;) {
		struct http_job job;
		struct load_rec rec;
		json_t *j;
		const char *id;
		long status;

		pthread_mutex_lock(&hp.lock);
		while (hp.head == hp.tail && !hp.stop)
			pthread_cond_wait(&hp.cond, &hp.lock);
		if (hp.head == hp.tail) {
			pthread_mutex_unlock(&hp.lock);
			break;
		}
		job = hp.q[hp.head++ % hp.cap];
		pthread_mutex_unlock(&hp.lock);

		snprintf(body, sizeof(body), "{\"user_id\":\"%s\",\"items\":[{\"sku\":\"%s\",\"qty\":1}]}",
		    hp.accounts[job.phone].user, hp.sku);
		memset(&rec, 0, sizeof(rec));
		rec.phone = job.phone;
		rec.req = job.req;
		rec.kind = REC_PLACED;
		rec.t_us = load_now_us();
		pthread_mutex_lock(&agg.lock);
		apply(&rec);
		pthread_mutex_unlock(&agg.lock);

		status = http_post(c, "/v1/orders", hp.tokens[job.phone], body, &resp);
		rec.t_us = load_now_us();
		j = status == 202 && resp.p != NULL ? json_loads(resp.p, 0, NULL) : NULL;
		id = json_string_value(json_object_get(j, "order_id"));
		if (id != NULL && strlen(id) <= LOAD_ID_MAX) {
			rec.kind = REC_ACCEPTED;
			str_copy(rec.order_id, sizeof(rec.order_id), id);
		} else {
			rec.kind = REC_REFUSED;
			http_error("order", hp.accounts[job.phone].user, status, &resp);
		}
		json_decref(j);
		pthread_mutex_lock(&agg.lock);
		apply(&rec);
		pthread_mutex_unlock(&agg.lock);
	}
	free(resp.p);
	curl_easy_cleanup(c);
	return NULL;
}

/* ---- shards ---- */

struct shard {
	pid_t pid;
	int cmd_fd, rec_fd;
	uint32_t first, count;
	struct load_cmd *backlog; /* commands the pipe could not take yet */
	size_t nback, capback;
	char inbuf[sizeof(struct load_rec) * 256];
	size_t have;
	struct rusage ru;
};

static int
start_shards(struct shard *sh, int nsh, const struct load_shard_cfg *base, uint32_t nphones)
{
	for (int i = 0; i < nsh; i++) {
		int cmd[2], rec[2];

		sh[i].first = (uint32_t)((uint64_t)nphones * (uint64_t)i / (uint64_t)nsh);
		sh[i].count = (uint32_t)((uint64_t)nphones * (uint64_t)(i + 1) / (uint64_t)nsh) - sh[i].first;
		if (pipe(cmd) != 0 || pipe(rec) != 0) {
			fprintf(stderr, "%s: pipe: %s\n", PROG, strerror(errno));
			return -1;
		}
		fcntl(rec[1], F_SETPIPE_SZ, 1 << 20); /* a burst of records must not stall paho's thread */
		fflush(NULL);
		sh[i].pid = fork();
		if (sh[i].pid < 0) {
			fprintf(stderr, "%s: fork: %s\n", PROG, strerror(errno));
			return -1;
		}
		if (sh[i].pid == 0) {
			struct load_shard_cfg c = *base;

			/* the child keeps only its own two pipe ends */
			for (int k = 0; k < i; k++) {
				close(sh[k].cmd_fd);
				close(sh[k].rec_fd);
			}
			close(cmd[1]);
			close(rec[0]);
			signal(SIGINT, SIG_IGN); /* Ctrl-C is the coordinator's to handle */
			c.first = sh[i].first;
			c.count = sh[i].count;
			/* the shards share --connect-rate by their phones */
			c.connect_rate = base->connect_rate * (double)c.count / (double)nphones;
			c.index = (uint16_t)i;
			c.cmd_fd = cmd[0];
			c.rec_fd = rec[1];
			exit(load_shard_run(&c)); /* exit, not _exit: leak checkers look at the shard too */
		}
		close(cmd[0]);
		close(rec[1]);
		sh[i].cmd_fd = cmd[1];
		sh[i].rec_fd = rec[0];
		fcntl(sh[i].cmd_fd, F_SETFL, O_NONBLOCK);
		fcntl(sh[i].rec_fd, F_SETFL, O_NONBLOCK);
	}
	return 0;
}

static void
shard_flush(struct shard *s)
{
	const size_t per_write = PIPE_BUF / sizeof(s->backlog[0]);
	size_t off = 0;

	if (s->nback == 0)
		return;
	while (off < s->nback) {
		/* at most PIPE_BUF bytes: written whole or not at all (EAGAIN), never split mid-command */
		size_t k = s->nback - off < per_write ? s->nback - off : per_write;
		ssize_t n = write(s->cmd_fd, &s->backlog[off], k * sizeof(s->backlog[0]));
		if (n <= 0)
			break;
		off += (size_t)n / sizeof(s->backlog[0]);
	}
	memmove(s->backlog, s->backlog + off, (s->nback - off) * sizeof(s->backlog[0]));
	s->nback -= off;
}

static void
shard_send(struct shard *s, uint32_t phone, uint32_t req)
{
	if (s->nback == s->capback) {
		s->capback = s->capback == 0 ? 256 : s->capback * 2;
		if ((s->backlog = realloc(s->backlog, s->capback * sizeof(*s->backlog))) == NULL)
			abort();
	}
	s->backlog[s->nback].phone = phone;
	s->backlog[s->nback].req = req;
	s->nback++;
}

/* Reads what the shards wrote, waiting at most timeout_ms. Returns the number of shards that ended. */
static int
pump(struct shard *sh, int nsh, int timeout_ms)
{
	struct pollfd pf[nsh];
	int ended = 0;

	for (int i = 0; i < nsh; i++) {
		pf[i].fd = sh[i].rec_fd;
		pf[i].events = POLLIN;
		pf[i].revents = 0;
	}
	if (poll(pf, (nfds_t)nsh, timeout_ms) <= 0)
		return 0;
	pthread_mutex_lock(&agg.lock);
	for (int i = 0; i < nsh; i++) {
		struct shard *s = &sh[i];
		ssize_t n;
		size_t whole;

		if (pf[i].revents == 0 || s->rec_fd < 0)
			continue;
		n = read(s->rec_fd, s->inbuf + s->have, sizeof(s->inbuf) - s->have);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
			close(s->rec_fd);
			s->rec_fd = -1;
			ended++;
			continue;
		}
		if (n < 0)
			continue;
		s->have += (size_t)n;
		whole = s->have / sizeof(struct load_rec);
		for (size_t k = 0; k < whole; k++) {
			struct load_rec rec;
			memcpy(&rec, s->inbuf + k * sizeof(rec), sizeof(rec));
			apply(&rec);
		}
		s->have -= whole * sizeof(struct load_rec);
		memmove(s->inbuf, s->inbuf + whole * sizeof(struct load_rec), s->have);
	}
	pthread_mutex_unlock(&agg.lock);
	return ended;
}

/* ---- accounts ---- */

static struct load_account *
read_accounts(const char *path, uint32_t *n)
{
	FILE *f = fopen(path, "r");
	struct load_account *a = NULL;
	size_t cap = 0, len = 0;
	char line[512];
	unsigned lineno = 0;

	if (f == NULL) {
		fprintf(stderr, "%s: cannot read --accounts %s: %s\n", PROG, path, strerror(errno));
		return NULL;
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		char *colon, *end = line + strcspn(line, "\r\n");
		lineno++;
		*end = '\0';
		if (line[0] == '\0' || line[0] == '#')
			continue;
		if ((colon = strchr(line, ':')) == NULL || colon == line || colon[1] == '\0') {
			fprintf(stderr, "%s: %s:%u: expected user:password\n", PROG, path, lineno);
			goto fail;
		}
		*colon = '\0';
		if (!name_valid(line)) {
			fprintf(stderr, "%s: %s:%u: '%s' is not a valid user id\n", PROG, path, lineno, line);
			goto fail;
		}
		if (len == cap) {
			cap = cap == 0 ? 1024 : cap * 2;
			if ((a = realloc(a, cap * sizeof(*a))) == NULL)
				abort();
		}
		a[len].user = strdup(line);
		a[len].password = strdup(colon + 1);
		len++;
	}
	fclose(f);
	*n = (uint32_t)len;
	return a;
fail:
	fclose(f);
	for (size_t i = 0; i < len; i++) {
		free(a[i].user);
		free(a[i].password);
	}
	free(a);
	return NULL;
}

/* ---- the run ---- */

struct opts {
	const char *accounts, *url, *cafile, *http_url, *sku, *out;
	long phones, orders, rate, duration, procs, per_proc, timeout, http_conns, connect_timeout_ms;
	long connect_rate, hold_s;
	int http, json, verbose;
	/* --mqtt-url split at its commas: phone i connects to urls[i % nurls] */
	char *urls_buf;
	const char *urls[LOAD_URLS_MAX];
	unsigned nurls;
};

static void
progress(const struct opts *o, uint32_t total, int64_t t0, int final)
{
	static int64_t last;
	int64_t now = load_now_us();
	int tty = isatty(STDOUT_FILENO);
	double secs = (double)(now - t0) / 1e6;
	uint64_t done, failed, placed;

	if (!final && now - last < (tty ? 200000 : 2000000))
		return;
	last = now;
	pthread_mutex_lock(&agg.lock);
	done = agg.done;
	failed = agg.refused + agg.send_failed;
	placed = agg.nreqs;
	pthread_mutex_unlock(&agg.lock);
	if (o->json)
		return;
	if (tty) {
		char bar[31];
		size_t fill = total > 0 ? (size_t)(30 * done / total) : 30;
		memset(bar, '#', fill);
		memset(bar + fill, '.', 30 - fill);
		bar[30] = '\0';
		printf("\r  [%s] %llu/%u done  %llu placed  %llu failed  %.0f/s  %.1fs ", bar, (unsigned long long)done,
		    total, (unsigned long long)placed, (unsigned long long)failed, secs > 0 ? (double)done / secs : 0,
		    secs);
		if (final)
			printf("\n");
	} else
		printf("load: t=%.1fs placed=%llu done=%llu/%u failed=%llu rate=%.0f/s\n", secs, (unsigned long long)placed,
		    (unsigned long long)done, total, (unsigned long long)failed, secs > 0 ? (double)done / secs : 0);
	fflush(stdout);
}

static double
cpu_s(const struct rusage *ru)
{
	return (double)ru->ru_utime.tv_sec + (double)ru->ru_utime.tv_usec / 1e6 + (double)ru->ru_stime.tv_sec +
	    (double)ru->ru_stime.tv_usec / 1e6;
}

/* What the report says, counted once from agg and from the processes' usage. */
struct summary {
	uint32_t nphones;
	int nsh;
	double connect_s;
	int interrupted;
	int64_t *acc_alert;  /* accepted -> pickup alert of each completed order, us (sorted by latency_of) */
	int64_t *placed_acc; /* placed -> accepted of the same orders, us */
	size_t n;            /* completed orders */
	uint64_t lost, missing, stray;
	struct latency la, lp;
	double secs, rate; /* first placed to last completed, and orders completed a second over it */
	double cpu;        /* seconds, this process and every shard */
	long rss_kib;      /* peak resident memory, summed likewise */
};

/* Joins every request to its order: the latencies of those completed, and what was lost, incomplete or stray. */
static void
summarize_orders(struct summary *s)
{
	s->acc_alert = malloc((agg.nreqs + 1) * sizeof(int64_t));
	s->placed_acc = malloc((agg.nreqs + 1) * sizeof(int64_t));
	for (uint32_t i = 0; i < agg.nreqs; i++) {
		const struct req *r = &agg.reqs[i];
		if (r->state == REQ_DONE) {
			const struct ord *od = &agg.ords[r->ord];
			s->acc_alert[s->n] = od->alert_us - od->accepted_us;
			s->placed_acc[s->n] = od->accepted_us - r->placed_us;
			s->n++;
			/* the phone's statuses: prep, bake, oven, ready (seq 2..5; accepted is in the reply) */
			if ((od->statuses & 0x3c) != 0x3c)
				s->missing++;
		} else if (r->state != REQ_FAILED)
			s->lost++;
	}
	for (size_t i = 0; i < agg.nords; i++)
		s->stray += agg.ords[i].req == UINT32_MAX;
	latency_of(s->acc_alert, s->n, &s->la);
	latency_of(s->placed_acc, s->n, &s->lp);
	s->secs = agg.done > 0 ? (double)(agg.last_done_us - agg.first_placed_us) / 1e6 : 0;
	s->rate = s->secs > 0 ? (double)agg.done / s->secs : 0;
}

/* Adds up the CPU time and peak memory of this process and of every shard (reaped, so sh[i].ru is filled in). */
static void
summarize_usage(struct summary *s, const struct shard *sh)
{
	struct rusage self;

	getrusage(RUSAGE_SELF, &self);
	s->cpu = cpu_s(&self);
	s->rss_kib = self.ru_maxrss;
	for (int i = 0; i < s->nsh; i++) {
		s->cpu += cpu_s(&sh[i].ru);
		s->rss_kib += sh[i].ru.ru_maxrss;
	}
}

/* The result as one JSON object: a new reference the caller decrefs. */
static json_t *
report_json(const struct opts *o, const struct summary *s, int64_t t0, const char *svg)
{
	uint32_t nphones = s->nphones;
	json_t *j;

	j = json_pack("{s:s, s:s, s:{s:i, s:i, s:i, s:i, s:s, s:i, s:s, s:b}}", "tool", "phone-sim load", "chart", svg,
	    "config", "phones", (json_int_t)nphones, "orders", (json_int_t)o->orders, "rate", (json_int_t)o->rate,
	    "duration_s", (json_int_t)o->duration, "transport", o->http ? "http" : "mqtt", "procs", (json_int_t)s->nsh,
	    "item", o->sku, "interrupted", s->interrupted);
	json_object_set_new(json_object_get(j, "config"), "listeners", json_integer((json_int_t)o->nurls));
	json_object_set_new(json_object_get(j, "config"), "connect_rate", json_integer((json_int_t)o->connect_rate));
	json_object_set_new(json_object_get(j, "config"), "hold_s", json_integer((json_int_t)o->hold_s));
	json_object_set_new(j, "connect",
	    json_pack("{s:f, s:i, s:i}", "seconds", s->connect_s, "connected", (json_int_t)agg.connected, "failed",
		(json_int_t)agg.connect_failed));
	json_object_set_new(j, "orders",
	    json_pack("{s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i}", "placed", (json_int_t)agg.nreqs, "accepted",
		(json_int_t)agg.accepted, "completed", (json_int_t)agg.done, "refused",
		(json_int_t)(agg.refused + agg.send_failed), "lost", (json_int_t)s->lost, "duplicates",
		(json_int_t)agg.duplicates, "statuses_missing", (json_int_t)s->missing, "stray", (json_int_t)s->stray));
	json_object_set_new(j, "throughput",
	    json_pack("{s:f, s:f, s:f}", "orders_per_s", s->rate, "seconds", s->secs, "wall_s",
		(double)(load_now_us() - t0) / 1e6));
	json_object_set_new(j, "latency_ms",
	    json_pack("{s:o, s:o}", "accepted_to_alert", latency_json(&s->la), "placed_to_accepted",
		latency_json(&s->lp)));
	json_object_set_new(j, "client",
	    json_pack("{s:f, s:f, s:i, s:f}", "cpu_s", s->cpu, "cpu_ms_per_phone",
		nphones > 0 ? s->cpu * 1000 / nphones : 0, "rss_kib", (json_int_t)s->rss_kib, "rss_kib_per_phone",
		nphones > 0 ? (double)s->rss_kib / nphones : 0));
	return j;
}

/* The result as a table on stdout, under title, naming the files it was written to. */
static void
report_table(const struct summary *s, const char *title, const char *path, const char *svg)
{
	uint32_t nphones = s->nphones;
	const struct latency *la = &s->la, *lp = &s->lp;

	printf("%s\n", title);
	printf("  connect     %u phones in %d process%s in %.2f s (%u failed)\n", agg.connected, s->nsh,
	    s->nsh == 1 ? "" : "es", s->connect_s, agg.connect_failed);
	printf("  orders      %u placed, %llu accepted, %llu alerted, %llu refused, %llu lost, %llu duplicates%s\n",
	    agg.nreqs, (unsigned long long)agg.accepted, (unsigned long long)agg.done,
	    (unsigned long long)(agg.refused + agg.send_failed), (unsigned long long)s->lost,
	    (unsigned long long)agg.duplicates, s->interrupted ? " (interrupted)" : "");
	if (s->missing > 0 || s->stray > 0)
		printf("  warning     %llu orders alerted with a status missing; %llu events for orders not placed here\n",
		    (unsigned long long)s->missing, (unsigned long long)s->stray);
	printf("  throughput  %.1f orders/s completed over %.2f s\n", s->rate, s->secs);
	printf("  latency     accepted -> pickup alert  p50 %.1f ms  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f\n", la->p50,
	    la->p90, la->p99, la->p999, la->max);
	printf("              placed -> accepted        p50 %.1f ms  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f\n", lp->p50,
	    lp->p90, lp->p99, lp->p999, lp->max);
	printf("  client      cpu %.1f s (%.2f ms per phone), memory %.1f MiB (%.1f KiB per phone)\n", s->cpu,
	    nphones > 0 ? s->cpu * 1000 / nphones : 0, (double)s->rss_kib / 1024,
	    nphones > 0 ? (double)s->rss_kib / nphones : 0);
	printf("  results     %s, %s\n", path, svg);
}

/*
 * Writes OUT.json and the latency chart OUT.svg, and prints the table (or
 * the JSON with --json).  Returns the exit status: 0 when every placed
 * order reached its pickup alert and nothing interrupted the run, else 1.
 */
static int
report(const struct opts *o, uint32_t nphones, int nsh, const struct shard *sh, double connect_s, int64_t t0,
    int interrupted)
{
	struct summary s;
	char path[1024], svg[1024], title[200];
	json_t *j;
	int rc;

	memset(&s, 0, sizeof(s));
	s.nphones = nphones;
	s.nsh = nsh;
	s.connect_s = connect_s;
	s.interrupted = interrupted;
	summarize_orders(&s);
	summarize_usage(&s, sh);

	snprintf(path, sizeof(path), "%s.json", o->out);
	snprintf(svg, sizeof(svg), "%s.svg", o->out);
	snprintf(title, sizeof(title), "phone-sim load: %u phones, %u orders over %s%s", nphones, agg.nreqs,
	    o->http ? "HTTP" : "MQTT", o->rate > 0 ? "" : " (closed loop)");
	if (o->rate > 0)
		snprintf(title + strlen(title), sizeof(title) - strlen(title), " at %ld/s", o->rate);
	if (latency_svg(svg, title, s.acc_alert, s.n, &s.la) != 0)
		fprintf(stderr, "%s: cannot write %s: %s\n", PROG, svg, strerror(errno));

	j = report_json(o, &s, t0, svg);
	if (json_dump_file(j, path, JSON_INDENT(2)) != 0)
		fprintf(stderr, "%s: cannot write %s\n", PROG, path);
	if (o->json) {
		json_dumpf(j, stdout, JSON_COMPACT);
		printf("\n");
	} else
		report_table(&s, title, path, svg);
	rc = (s.lost == 0 && agg.refused + agg.send_failed == 0 && !interrupted) ? 0 : 1;
	json_decref(j);
	free(s.acc_alert);
	free(s.placed_acc);
	return rc;
}

/* One run's working state, shared by the steps of run(). */
struct run {
	const struct opts *o;
	uint32_t nphones, total; /* phones, and orders to place */
	struct shard *sh;
	int nsh;
	int ended;          /* shards whose record pipe has closed */
	uint32_t *spare;    /* closed loop: swapped with agg.next_for_phone */
	pthread_t *threads; /* the HTTP placers, or NULL */
	int64_t t0;         /* when placing began */
	int64_t last_place; /* when an order was last placed */
};

/* Hands order req to its phone: the phone's shard (MQTT) or the HTTP queue. agg.lock not held. */
static void
place(struct run *run, uint32_t phone)
{
	uint32_t req;

	pthread_mutex_lock(&agg.lock);
	req = agg.nreqs++;
	agg.reqs[req].phone = phone;
	agg.reqs[req].ord = -1;
	agg.reqs[req].state = REQ_PLACED;
	agg.reqs[req].placed_us = load_now_us();
	if (agg.first_placed_us == 0)
		agg.first_placed_us = agg.reqs[req].placed_us;
	pthread_mutex_unlock(&agg.lock);
	if (run->o->http) {
		pthread_mutex_lock(&hp.lock);
		hp.q[hp.tail++ % hp.cap].phone = phone;
		hp.q[(hp.tail - 1) % hp.cap].req = req;
		pthread_cond_signal(&hp.cond);
		pthread_mutex_unlock(&hp.lock);
		return;
	}
	for (int i = 0; i < run->nsh; i++) {
		struct shard *s = &run->sh[i];

		if (phone >= s->first && phone - s->first < s->count) {
			shard_send(s, phone, req);
			return;
		}
	}
}

/*
 * Phones per process when neither --procs nor --per-proc says.  paho's cost
 * per message grows with the clients in its process (every packet polls
 * them all), while each process costs ~8 MiB.  Measured at 400 orders/s
 * with 1,000 phones: 25 a process used 1.0 ms of load-generator CPU per
 * order against 1.35 ms at 100 (docs/performance.md).  So: 25 a process
 * up to 40 processes, then fuller processes, at most 100 phones each.
 */
static uint32_t
shard_size(const struct opts *o, uint32_t nphones)
{
	uint32_t n;

	if (o->per_proc > 0)
		return (uint32_t)o->per_proc;
	n = (nphones + SHARDS_CHEAP - 1) / SHARDS_CHEAP;
	return n < SHARD_MIN ? SHARD_MIN : n > SHARD_MAX ? SHARD_MAX : n;
}

/* Sizes the run: how many shards, and room for every order in agg.  Aborts when memory runs out. */
static void
run_init(struct run *run, const struct opts *o, uint32_t nphones)
{
	uint32_t per = shard_size(o, nphones);

	memset(run, 0, sizeof(*run));
	run->o = o;
	run->nphones = nphones;
	run->total = (uint32_t)o->orders;
	run->nsh = o->procs > 0 ? (int)o->procs : (int)((nphones + per - 1) / per);
	if (run->nsh < 1)
		run->nsh = 1;
	if ((uint32_t)run->nsh > nphones)
		run->nsh = (int)nphones;
	run->sh = calloc((size_t)run->nsh, sizeof(*run->sh));
	agg.reqs = calloc(run->total + 1, sizeof(*agg.reqs));
	agg.next_for_phone = calloc(run->total + 1, sizeof(*agg.next_for_phone));
	run->spare = calloc(run->total + 1, sizeof(*run->spare));
	if (run->sh == NULL || agg.reqs == NULL || agg.next_for_phone == NULL || run->spare == NULL)
		abort();
}

/*
 * Reads records until every phone is connected and subscribed or failed,
 * the connect timeout (+5 s) passes, every shard ended or Ctrl-C; then says
 * how it went.  Returns 0 when every phone connected, else -1.
 */
static int
run_connect(struct run *run, int64_t t_start, double *connect_s)
{
	const struct opts *o = run->o;
	uint32_t nphones = run->nphones;
	int64_t pacing_us = o->connect_rate > 0 ? (int64_t)nphones * 1000000 / o->connect_rate : 0;
	int64_t deadline = t_start + pacing_us + (o->connect_timeout_ms + 5000) * 1000;

	while (!quit && agg.connected + agg.connect_failed < nphones && load_now_us() < deadline &&
	    run->ended < run->nsh)
		run->ended += pump(run->sh, run->nsh, 100);
	*connect_s = (double)(agg.connected_last_us - t_start) / 1e6;
	if (agg.connected < nphones)
		fprintf(stderr, "%s: %u of %u phones could not connect%s\n", PROG, nphones - agg.connected, nphones,
		    agg.connect_failed > 0 ? " (see above)" : " in time");
	else if (!o->json)
		printf("%s: %u phones connected and subscribed in %.2f s; placing %u orders over %s%s\n", PROG, nphones,
		    *connect_s, run->total, o->http ? "HTTP" : "MQTT", o->rate > 0 ? "" : " (each phone one at a time)");
	fflush(stdout);
	return agg.connected < nphones ? -1 : 0;
}

/*
 * Starts --http-conns placer threads and waits until every phone has
 * claimed its login: the clock starts when every phone has its token.
 * Returns 0, or -1 when some phones could not log in (said on stderr).
 */
static int
http_start(struct run *run, const struct load_account *accounts)
{
	const struct opts *o = run->o;

	hp.base = o->http_url;
	hp.sku = o->sku;
	hp.accounts = accounts;
	hp.nphones = run->nphones;
	hp.cap = run->total + 1;
	hp.q = calloc(hp.cap, sizeof(*hp.q));
	hp.tokens = calloc(run->nphones, sizeof(*hp.tokens));
	run->threads = calloc((size_t)o->http_conns, sizeof(*run->threads));
	for (long i = 0; i < o->http_conns; i++)
		pthread_create(&run->threads[i], NULL, http_placer, NULL);
	for (;;) {
		pthread_mutex_lock(&hp.lock);
		int left = hp.login_next < hp.nphones;
		pthread_mutex_unlock(&hp.lock);
		if (!left)
			break;
		usleep(10000);
	}
	if (hp.login_failed > 0) {
		fprintf(stderr, "%s: %u phones could not log in to %s\n", PROG, hp.login_failed, hp.base);
		return -1;
	}
	return 0;
}

/* Whether orders remain to be placed at now: some are left and --duration has not passed. */
static int
run_placing(const struct run *run, int64_t now)
{
	return agg.nreqs < run->total && (run->o->duration == 0 || now - run->t0 < run->o->duration * 1000000);
}

/* Open loop (--rate): places every order whose time has come, and lowers *wait_us to when the next one is due. */
static void
place_due(struct run *run, int64_t now, int64_t *wait_us)
{
	for (;;) {
		int64_t due = run->t0 + (int64_t)((double)agg.nreqs * 1e6 / (double)run->o->rate);
		if (agg.nreqs >= run->total)
			break;
		if (due > now) {
			if (due - now < *wait_us)
				*wait_us = due - now;
			break;
		}
		place(run, agg.nreqs % run->nphones);
		run->last_place = now;
	}
}

/* Closed loop: places the next order of every phone whose last one finished. */
static void
place_ready(struct run *run, int64_t now)
{
	uint32_t *ready;
	size_t k;

	/* take the list of phones whose order finished, leaving an empty one */
	pthread_mutex_lock(&agg.lock);
	k = agg.nnext;
	ready = agg.next_for_phone;
	agg.next_for_phone = run->spare;
	agg.nnext = 0;
	pthread_mutex_unlock(&agg.lock);
	run->spare = ready;
	for (size_t i = 0; i < k && agg.nreqs < run->total; i++) {
		place(run, ready[i]);
		run->last_place = now;
	}
}

/*
 * Places the orders and reads the records until every placed order is
 * resolved, --timeout passes after the last one placed, every shard has
 * ended, or Ctrl-C.  Shows progress as it goes.
 */
static void
run_orders(struct run *run)
{
	const struct opts *o = run->o;

	if (o->rate <= 0 && !quit) {
		for (uint32_t i = 0; i < run->nphones && agg.nreqs < run->total; i++)
			place(run, i);
		run->last_place = load_now_us();
	}
	while (!quit) {
		int64_t now = load_now_us(), wait_us = 50000;
		int placing = run_placing(run, now);
		uint64_t resolved;

		if (placing && o->rate > 0)
			place_due(run, now, &wait_us);
		else if (placing)
			place_ready(run, now);
		for (int i = 0; i < run->nsh; i++)
			shard_flush(&run->sh[i]);
		run->ended += pump(run->sh, run->nsh, (int)(wait_us / 1000) > 0 ? (int)(wait_us / 1000) : 1);
		progress(o, run->total, run->t0, 0);

		pthread_mutex_lock(&agg.lock);
		resolved = agg.done + agg.refused + agg.send_failed;
		pthread_mutex_unlock(&agg.lock);
		placing = run_placing(run, load_now_us());
		if (!placing && resolved == agg.nreqs)
			break;
		if (!placing && load_now_us() - run->last_place > o->timeout * 1000000)
			break; /* what is still open now is lost */
		if (run->ended == run->nsh) {
			fprintf(stderr, "%s: every phone process ended early\n", PROG);
			break;
		}
	}
}

/* Stops the HTTP placers, dropping the orders not sent yet, and joins them. */
static void
http_stop(struct run *run)
{
	if (run->threads == NULL)
		return;
	pthread_mutex_lock(&hp.lock);
	hp.stop = 1;
	hp.head = hp.tail; /* drop what was not sent yet */
	pthread_cond_broadcast(&hp.cond);
	pthread_mutex_unlock(&hp.lock);
	for (long i = 0; i < run->o->http_conns; i++)
		pthread_join(run->threads[i], NULL);
}

/*
 * Tells every shard to stop (SIGTERM if its pipe will not take it), then
 * reaps them all, filling in sh[i].ru.  All are told first: a shard takes a
 * while to say goodbye for each of its phones, and 1,000 shards stopped one
 * after the other took minutes.
 */
static void
shards_stop(struct run *run)
{
	int left = run->nsh;

	for (int i = 0; i < run->nsh; i++) {
		struct shard *s = &run->sh[i];
		struct load_cmd stop = { LOAD_CMD_STOP, 0 };

		shard_flush(s);
		fcntl(s->cmd_fd, F_SETFL, 0);
		if (write(s->cmd_fd, &stop, sizeof(stop)) != (ssize_t)sizeof(stop))
			kill(s->pid, SIGTERM);
		close(s->cmd_fd);
	}
	while (left > 0) {
		/* keep draining records so a shard blocked on a full pipe can finish */
		pump(run->sh, run->nsh, 10);
		for (int i = 0; i < run->nsh; i++) {
			struct shard *s = &run->sh[i];
			int status;

			if (s->pid > 0 && wait4(s->pid, &status, WNOHANG, &s->ru) != 0) {
				s->pid = 0;
				left--;
			}
		}
	}
}

/* Frees what run_init, http_start and the shards' buffers hold, and agg's tables. */
static void
run_free(struct run *run)
{
	for (int i = 0; i < run->nsh; i++) {
		if (run->sh[i].rec_fd >= 0)
			close(run->sh[i].rec_fd);
		free(run->sh[i].backlog);
	}
	if (hp.tokens != NULL) {
		for (uint32_t i = 0; i < run->nphones; i++)
			free(hp.tokens[i]);
	}
	free(hp.tokens);
	free(hp.q);
	free(run->threads);
	free(run->sh);
	free(agg.reqs);
	free(agg.ords);
	free(agg.slots);
	free(agg.next_for_phone);
	free(run->spare);
}

/* --hold: the phones stay connected and idle this long before the first order (what idle phones cost). */
static void
hold(struct run *run)
{
	int64_t end = load_now_us() + run->o->hold_s * 1000000;

	if (quit || run->o->hold_s <= 0)
		return;
	if (!run->o->json)
		printf("%s: holding the phones idle for %ld s\n", PROG, run->o->hold_s);
	fflush(stdout);
	while (!quit && load_now_us() < end && run->ended < run->nsh)
		run->ended += pump(run->sh, run->nsh, 100);
}

/*
 * The whole run: connect the phones in shard processes, log them in (over
 * HTTP), place the orders, stop the shards and report.  Returns the exit
 * status: 0 when every order completed, else 1.
 */
static int
run(const struct opts *o, struct load_account *accounts, uint32_t nphones)
{
	struct run r;
	struct load_shard_cfg base;
	int64_t t_start;
	double connect_s;
	int interrupted = 0, no_report = 0, rc = 1;

	run_init(&r, o, nphones);
	memset(&base, 0, sizeof(base));
	base.urls = o->urls;
	base.nurls = o->nurls;
	base.connect_rate = (double)o->connect_rate;
	base.cafile = o->cafile;
	base.sku = o->sku;
	base.accounts = accounts;
	base.connect_timeout_ms = (int)o->connect_timeout_ms;
	base.verbose = o->verbose;

	if (!o->json && o->nurls > 1)
		printf("%s: connecting %u phones in %d process%s to %u listeners (%s) ...\n", PROG, nphones, r.nsh,
		    r.nsh == 1 ? "" : "es", o->nurls, o->url);
	else if (!o->json)
		printf("%s: connecting %u phones in %d process%s to %s ...\n", PROG, nphones, r.nsh,
		    r.nsh == 1 ? "" : "es", o->url);
	fflush(stdout);
	t_start = load_now_us();
	if (start_shards(r.sh, r.nsh, &base, nphones) != 0)
		return 1;
	if (run_connect(&r, t_start, &connect_s) != 0 || (o->http && !quit && http_start(&r, accounts) != 0)) {
		quit = 1; /* nothing worth measuring: stop, without a report */
		interrupted = no_report = 1;
	}
	hold(&r);

	r.t0 = load_now_us();
	run_orders(&r);
	if (quit)
		interrupted = 1;
	if (!no_report)
		progress(o, r.total, r.t0, 1);

	http_stop(&r);
	shards_stop(&r);
	if (!no_report)
		rc = report(o, nphones, r.nsh, r.sh, connect_s, r.t0, interrupted);
	run_free(&r);
	return rc;
}

/* Checks what config_parse cannot: returns 0, or 2 with a one-line error printed. */
static int
opts_check(const struct opts *o)
{
	if (o->accounts == NULL) {
		fprintf(stderr, "%s: --accounts FILE (user:password lines) is required\n", PROG);
		return 2;
	}
	if (menu_find(o->sku) == NULL) {
		fprintf(stderr, "%s: '%s' is not on the menu (see 'phone-sim menu')\n", PROG, o->sku);
		return 2;
	}
	if (o->duration > 0 && o->rate == 0 && o->orders == 0) {
		fprintf(stderr, "%s: --duration needs --rate or --orders\n", PROG);
		return 2;
	}
	return 0;
}

/* The broker and HTTP API URLs when not given: 127.0.0.1 on $PIZZA_MQTT_PORT (1883) and $PIZZA_HTTP_PORT (8080). */
static void
opts_default_urls(struct opts *o)
{
	static char url[256], hurl[256];
	const char *env;

	if (o->url == NULL) {
		env = getenv("PIZZA_MQTT_PORT");
		snprintf(url, sizeof(url), "tcp://127.0.0.1:%s", env != NULL && env[0] != '\0' ? env : "1883");
		o->url = url;
	}
	if (o->http_url == NULL) {
		env = getenv("PIZZA_HTTP_PORT");
		snprintf(hurl, sizeof(hurl), "http://127.0.0.1:%s", env != NULL && env[0] != '\0' ? env : "8080");
		o->http_url = hurl;
	}
}

/* Splits --mqtt-url at its commas into o->urls.  Returns 0, or 2 with a one-line error printed. */
static int
opts_split_urls(struct opts *o)
{
	char *save = NULL, *u;

	if ((o->urls_buf = strdup(o->url)) == NULL)
		abort();
	for (u = strtok_r(o->urls_buf, ", ", &save); u != NULL; u = strtok_r(NULL, ", ", &save)) {
		if (o->nurls == LOAD_URLS_MAX) {
			fprintf(stderr, "%s: --mqtt-url: at most %d URLs\n", PROG, LOAD_URLS_MAX);
			return 2;
		}
		o->urls[o->nurls++] = u;
	}
	if (o->nurls == 0) {
		fprintf(stderr, "%s: --mqtt-url is empty\n", PROG);
		return 2;
	}
	return 0;
}

int
cmd_load(int argc, char **argv)
{
	struct opts o;
	const struct opt opts[] = {
		{ "accounts", 'a', OPT_STR, "PIZZA_LOAD_ACCOUNTS", NULL,
		    "file of user:password lines, one broker account per phone (make bench generates one)", &o.accounts, 0,
		    0 },
		{ "phones", 0, OPT_INT, NULL, "0", "simulated phones, each its own connection (0: one per account)",
		    &o.phones, 0, 1000000 },
		{ "orders", 0, OPT_INT, NULL, "0", "orders to place between them (0: one per phone, or rate x duration)",
		    &o.orders, 0, 100000000 },
		{ "rate", 0, OPT_INT, NULL, "0",
		    "orders per second offered, on the clock (0: closed loop, each phone one order at a time)", &o.rate, 0,
		    1000000 },
		{ "duration", 0, OPT_DURATION_S, NULL, "0", "stop placing orders after this long (0: no limit)",
		    &o.duration, 0, 86400 },
		{ "http", 0, OPT_FLAG, NULL, NULL, "place the orders with the HTTP API instead of MQTT", &o.http, 0, 0 },
		{ "http-url", 0, OPT_STR, "PIZZA_HTTP_URL", NULL,
		    "the HTTP API; default http://127.0.0.1:$PIZZA_HTTP_PORT (8080)", &o.http_url, 0, 0 },
		{ "http-conns", 0, OPT_INT, NULL, "16", "HTTP connections placing orders in parallel", &o.http_conns, 1,
		    256 },
		{ "item", 0, OPT_STR, NULL, "margherita", "what every order asks for", &o.sku, 0, 0 },
		{ "mqtt-url", 0, OPT_STR, "PIZZA_MQTT_URL", NULL,
		    "broker URL, tcp:// or mqtts://; default tcp://127.0.0.1:$PIZZA_MQTT_PORT (1883); several, "
		    "comma-separated (listeners of one broker): phone i connects to the (i mod n)th",
		    &o.url, 0, 0 },
		{ "cafile", 0, OPT_STR, "PIZZA_MQTT_CAFILE", NULL, "CA certificate that must sign the broker's (mqtts://)",
		    &o.cafile, 0, 0 },
		{ "procs", 0, OPT_INT, NULL, "0", "processes holding the phones (0: phones / --per-proc)", &o.procs, 0,
		    1000 },
		{ "per-proc", 0, OPT_INT, NULL, "0",
		    "phones per process when --procs is 0 (0: 25, or phones / 40 up to 100)", &o.per_proc, 0, 100000 },
		{ "connect-timeout", 0, OPT_DURATION_MS, NULL, "60s", "how long every phone may take to connect",
		    &o.connect_timeout_ms, 1000, 3600000 },
		{ "connect-rate", 0, OPT_INT, NULL, "0",
		    "phones starting to connect a second, over all processes (0: every phone at once)", &o.connect_rate, 0,
		    1000000 },
		{ "hold", 0, OPT_DURATION_S, NULL, "0", "keep the phones connected and idle this long before the first order",
		    &o.hold_s, 0, 86400 },
		{ "timeout", 0, OPT_DURATION_S, NULL, "30s",
		    "how long to wait after the last order is placed; what is open then is lost", &o.timeout, 1, 86400 },
		{ "out", 'o', OPT_STR, NULL, "load", "write the results to OUT.json and the latency chart to OUT.svg",
		    &o.out, 0, 0 },
		{ "json", 0, OPT_FLAG, NULL, NULL, "print the result as one JSON object instead of the table", &o.json, 0,
		    0 },
		{ "verbose", 'v', OPT_COUNT, NULL, NULL, "say more on stderr (each refused order, paho's logs)", &o.verbose,
		    0, 0 },
		{ NULL, 0, 0, NULL, NULL, NULL, NULL, 0, 0 },
	};
	struct load_account *accounts;
	uint32_t naccounts;
	int rc;

	memset(&o, 0, sizeof(o));
	if ((rc = cli_parse("load", PROG " [options]",
		 "Simulates many phones: each connects as its own user, orders, and records when each status and its pickup "
		 "alert arrive. Prints throughput, latency percentiles, orders lost and duplicates, and what the phones cost.",
		 opts, argc, argv)) >= 0)
		return rc;
	if ((rc = opts_check(&o)) != 0)
		return rc;
	if ((accounts = read_accounts(o.accounts, &naccounts)) == NULL)
		return 2;
	if (o.phones == 0)
		o.phones = naccounts;
	if (naccounts == 0 || (uint32_t)o.phones > naccounts) {
		fprintf(stderr, "%s: --phones %ld but %s has %u accounts\n", PROG, o.phones, o.accounts, naccounts);
		rc = 2;
		goto out;
	}
	if (o.orders == 0)
		o.orders = o.rate > 0 && o.duration > 0 ? o.rate * o.duration : o.phones;
	opts_default_urls(&o);
	if ((rc = opts_split_urls(&o)) != 0)
		goto out;
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGPIPE, SIG_IGN);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	rc = run(&o, accounts, (uint32_t)o.phones);
	curl_global_cleanup();
out:
	free(o.urls_buf);
	for (uint32_t i = 0; i < naccounts; i++) {
		free(accounts[i].user);
		free(accounts[i].password);
	}
	free(accounts);
	return rc;
}

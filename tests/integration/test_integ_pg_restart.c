/*
 * A broker restart under load with every service as two instances on one
 * private PostgreSQL loses nothing (issue 16, its last outcome).
 *
 * Two instances each of order-service, order-history and the notifier (one
 * database, each service in its own schema), two executors, one broker.
 * Orders stream in over HTTP (both order-service instances, an
 * Idempotency-Key per order, retried with the same key as a client would)
 * and over MQTT from phones (a request left unanswered for 3 s is sent
 * again, as a phone would: mosquitto does not restore the $share intake
 * after a restart, so a request published before order-service
 * resubscribed is lost unanswered, and was never placed).  Mid-stream the
 * broker is restarted: SIGTERM (it saves its database) and started, or
 * killed with SIGKILL after a save point (what it took since is lost).
 * Then, within a deadline:
 *  - every order answered "accepted" has exactly one pickup alert (one
 *    distinct event id), seen by a persistent observer on the broker;
 *  - every order has one row in order-service's orders, one in
 *    order-history's orders with its four kitchen statuses (prep .. ready:
 *    what the phone's status topic carries), one notifier alert;
 *    every order order-service recorded (answered or not) was alerted;
 *  - both outboxes are empty.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "harness.h"
#include "util.h"

#define USERS 3
#define MAX_ORDERS 400 /* accepted orders a test may place */
#define MAX_REQS 200   /* MQTT requests (each maybe sent several times) */
#define MAX_SEEN 2048  /* replies and alerts the observer records */
#define LOAD_MS 6000   /* how long orders stream in */
#define TICK_MS 100    /* one HTTP order and one MQTT request per tick */
#define RETRY_MS 3000  /* a phone asks again when no answer came in this long */

static const char *const users[USERS] = { "alice", "bob", "carol" };

static struct stack st;
static struct h_pg pg;
static int port_b; /* svc-b's HTTP API (svc-a has st.http_port) */

/* What the persistent observer saw: replies by correlation, pickup alerts by order. */
static struct seen {
	pthread_mutex_t lock;
	struct mq *mq;
	struct {
		char corr[64];
		char order_id[NAME_MAX_LEN + 1]; /* "" when refused */
		char error[64];
	} reply[MAX_SEEN];
	int nreply;
	struct {
		char order_id[NAME_MAX_LEN + 1];
		char event_id[NAME_MAX_LEN + 1];
	} alert[MAX_SEEN];
	int nalert;
	int overflow;
} seen = { .lock = PTHREAD_MUTEX_INITIALIZER };

/* The orders answered "accepted", over either front door (written by the stream's thread, then read by the test). */
static pthread_mutex_t ids_lock = PTHREAD_MUTEX_INITIALIZER;
static char ids[MAX_ORDERS][NAME_MAX_LEN + 1];
static int nids;

/* Records an accepted order; -1 when there are too many. */
static int
add_id(const char *id)
{
	int rc = -1;

	pthread_mutex_lock(&ids_lock);
	if (nids < MAX_ORDERS) {
		snprintf(ids[nids++], sizeof(ids[0]), "%.*s", NAME_MAX_LEN, id);
		rc = 0;
	}
	pthread_mutex_unlock(&ids_lock);
	return rc;
}

static int
accepted_so_far(void)
{
	int n;

	pthread_mutex_lock(&ids_lock);
	n = nids;
	pthread_mutex_unlock(&ids_lock);
	return n;
}

/* The observer's handler (paho's thread): keep it short. */
static void
on_seen(void *arg, const struct mq_message *m)
{
	struct seen *s = arg;

	pthread_mutex_lock(&s->lock);
	if (strstr(m->topic, "/replies/") != NULL && m->correlation != NULL) {
		if (s->nreply < MAX_SEEN && m->correlation_len < sizeof(s->reply[0].corr)) {
			json_t *o = json_loadb(m->payload, m->len, 0, NULL);
			const char *id = json_string_value(json_object_get(o, "order_id"));
			const char *err = json_string_value(json_object_get(o, "error"));

			memcpy(s->reply[s->nreply].corr, m->correlation, m->correlation_len);
			s->reply[s->nreply].corr[m->correlation_len] = '\0';
			snprintf(
			    s->reply[s->nreply].order_id, sizeof(s->reply[0].order_id), "%s", id != NULL ? id : "");
			snprintf(s->reply[s->nreply].error, sizeof(s->reply[0].error), "%s",
			    id != NULL        ? ""
				: err != NULL ? err
					      : "no order_id");
			s->nreply++;
			json_decref(o);
		} else
			s->overflow = 1;
	} else {
		struct event ev;
		char err[256];

		if (event_decode(m->payload, m->len, &ev, err, sizeof(err)) == 0 && ev.type == EVENT_PICKUP_ALERT) {
			if (s->nalert < MAX_SEEN) {
				snprintf(s->alert[s->nalert].order_id, sizeof(s->alert[0].order_id), "%s", ev.order_id);
				snprintf(s->alert[s->nalert].event_id, sizeof(s->alert[0].event_id), "%s", ev.event_id);
				s->nalert++;
			} else
				s->overflow = 1;
		}
	}
	pthread_mutex_unlock(&s->lock);
}

/*
 * The observer keeps a persistent session (Clean Start 0, an hour), like
 * the services: what is published while it reconnects after the restart is
 * queued for it, so a missing alert is missing on the broker, not here.
 */
static int
observer_start(void)
{
	struct mq_config cfg;
	char url[64], err[512] = "";

	snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", st.port);
	memset(&cfg, 0, sizeof(cfg));
	cfg.url = url;
	cfg.client_id = "restart-observer";
	cfg.username = "admin";
	cfg.password = h_password(&st, "admin");
	cfg.clean_start = 0; /* paho reconnects with the same options: a fresh broker has no session to resume */
	cfg.session_expiry_s = 3600;
	seen.nreply = seen.nalert = seen.overflow = 0;
	if ((seen.mq = mq_new(&cfg, on_seen, &seen)) == NULL ||
	    mq_subscribe(seen.mq, "pizza/users/+/alerts", 1, 0) != 0 ||
	    mq_subscribe(seen.mq, "pizza/users/+/replies/+", 1, 0) != 0 ||
	    mq_connect(seen.mq, 5000, err, sizeof(err)) != 0) {
		fprintf(stderr, "observer cannot connect: %s\n", err);
		return -1;
	}
	return 0;
}

/* The reply to correlation corr: 0 with the order id, 1 refused (error in out), -1 none yet. */
static int
reply_for(const char *corr, char *out, size_t n)
{
	int rc = -1;

	pthread_mutex_lock(&seen.lock);
	for (int i = 0; i < seen.nreply && rc < 0; i++)
		if (strcmp(seen.reply[i].corr, corr) == 0) {
			rc = seen.reply[i].order_id[0] != '\0' ? 0 : 1;
			snprintf(out, n, "%s", rc == 0 ? seen.reply[i].order_id : seen.reply[i].error);
		}
	pthread_mutex_unlock(&seen.lock);
	return rc;
}

/* The pickup alerts the observer saw for order id: how many, and how many distinct event ids. */
static int
alerts_for(const char *id, int *distinct)
{
	int n = 0;

	*distinct = 0;
	pthread_mutex_lock(&seen.lock);
	for (int i = 0; i < seen.nalert; i++) {
		int first = 1;

		if (strcmp(seen.alert[i].order_id, id) != 0)
			continue;
		n++;
		for (int j = 0; j < i; j++)
			if (strcmp(seen.alert[j].order_id, id) == 0 &&
			    strcmp(seen.alert[j].event_id, seen.alert[i].event_id) == 0)
				first = 0;
		*distinct += first;
	}
	pthread_mutex_unlock(&seen.lock);
	return n;
}

static int
setup(void **state)
{
	char port[16], hport[16];

	(void)state;
	nids = 0;
	if (h_stack_start(&st, "pg-restart") != 0 || h_pg_start(&st, &pg) != 0 || observer_start() != 0)
		return -1;
	port_b = h_free_port();
	snprintf(port, sizeof(port), "%d", port_b);
	snprintf(hport, sizeof(hport), "%d", h_free_port());
	/* short lease and deadlines, so a republish happens within the test */
	if (h_service(&st, "exec-1", "order-executor", "--id", "exec-1", "--stage-ms", "20", NULL) < 0 ||
	    h_service(&st, "exec-2", "order-executor", "--id", "exec-2", "--stage-ms", "20", NULL) < 0 ||
	    h_service(&st, "history-a", "order-history", "--db", pg.url, "--client-id", "order-history-a", NULL) < 0 ||
	    h_service(&st, "history-b", "order-history", "--db", pg.url, "--client-id", "order-history-b",
		"--http-port", hport, NULL) < 0 ||
	    h_service(&st, "notifier-a", "notifier", "--db", pg.url, "--client-id", "notifier-a", "--outbox-retry",
		"1s", NULL) < 0 ||
	    h_service(&st, "notifier-b", "notifier", "--db", pg.url, "--client-id", "notifier-b", "--outbox-retry",
		"1s", NULL) < 0 ||
	    h_service(&st, "svc-a", "order-service", "--db", pg.url, "--client-id", "order-service-a", "--outbox-retry",
		"1s", "--accept-deadline", "2s", "--ready-deadline", "3s", NULL) < 0 ||
	    h_service(&st, "svc-b", "order-service", "--db", pg.url, "--client-id", "order-service-b", "--http-port",
		port, "--outbox-retry", "1s", "--accept-deadline", "2s", "--ready-deadline", "3s", NULL) < 0)
		return -1;
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	if (seen.mq != NULL) {
		mq_disconnect(seen.mq, 500);
		mq_free(seen.mq);
		seen.mq = NULL;
	}
	int rc = h_stack_stop(&st);
	h_pg_stop(&pg);
	return rc;
}

/* How the broker goes away mid-stream. */
enum restart { RESTART_TERM, RESTART_KILL };

/*
 * From the test's main thread only: the harness starts the broker with
 * PR_SET_PDEATHSIG, which fires when the *thread* that forked it ends.
 */
static int
restart_broker(enum restart how)
{
	if (how == RESTART_TERM)
		return h_broker_restart(&st);
	kill(st.broker, SIGKILL);
	waitpid(st.broker, NULL, 0);
	st.broker = 0;
	return h_broker_start(&st);
}

/*
 * A crash loses what the broker took after its last save point (every 10 s,
 * autosave_interval): a broker up for a while has the services' sessions on
 * disk.  Saves now (SIGUSR1) and waits until the file is written.
 */
static void
broker_save(void)
{
	char path[700];
	struct stat before, now;
	int64_t deadline = mono_ms() + 5000;

	snprintf(path, sizeof(path), "%s/data/mosquitto.db", st.dir);
	if (stat(path, &before) != 0)
		memset(&before, 0, sizeof(before));
	kill(st.broker, SIGUSR1);
	while (mono_ms() < deadline) {
		if (stat(path, &now) == 0 &&
		    (now.st_mtim.tv_sec != before.st_mtim.tv_sec || now.st_mtim.tv_nsec != before.st_mtim.tv_nsec ||
			now.st_size != before.st_size))
			return;
		h_sleep(20);
	}
	fail_msg("mosquitto did not save %s after SIGUSR1", path);
}

/*
 * The stream, on a thread of its own while the test restarts the broker
 * (so it never asserts: the first problem goes into err and ends it).
 */
struct request {
	int user;
	int attempts; /* each with its own correlation, <tag>-<n>-<attempt> */
	int64_t sent_ms;
	int accepted;       /* attempts answered accepted: each is an order */
	unsigned done_mask; /* attempts whose answer was counted */
};

struct load {
	const char *tag;
	struct request reqs[MAX_REQS];
	int nreqs, nhttp, http_retries, mqtt_retries, refused;
	char err[600];
};

/* POSTs order n as user to port with its Idempotency-Key, retrying with the same key until 202; 0, or -1 with err. */
static int
http_order(struct load *l, int port, int n, const char *user)
{
	char auth[1200], key[100], url[200], id[NAME_MAX_LEN + 1];
	const char *const headers[] = { "Content-Type: application/json", auth, key, NULL };
	int64_t deadline = mono_ms() + 10000;

	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", h_token(&st, user));
	snprintf(key, sizeof(key), "Idempotency-Key: %s-http-%d", l->tag, n);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/orders", port);
	for (;;) {
		struct h_reply r;
		long status = h_http("POST", url, headers, "{\"items\":[{\"sku\":\"margherita\",\"qty\":1}]}", &r);
		json_t *o = json_loads(r.body, 0, NULL);

		snprintf(id, sizeof(id), "%s",
		    json_string_value(json_object_get(o, "order_id")) != NULL
			? json_string_value(json_object_get(o, "order_id"))
			: "");
		json_decref(o);
		if (status == 202 && id[0] != '\0') {
			h_reply_free(&r);
			return add_id(id);
		}
		if (mono_ms() > deadline) {
			snprintf(l->err, sizeof(l->err), "HTTP order %s-%d on port %d: %ld %.400s", l->tag, n, port,
			    status, r.body);
			h_reply_free(&r);
			return -1;
		}
		h_reply_free(&r);
		l->http_retries++;
		h_sleep(100);
	}
}

/* Sends request n (again) as a phone does; 0, or -1 with err. */
static int
request_send(struct load *l, int n)
{
	struct request *q = &l->reqs[n];
	char corr[64];

	snprintf(corr, sizeof(corr), "%s-%d-%d", l->tag, n, q->attempts);
	if (h_place(&st, users[q->user], "funghi", 1, corr) != 0) {
		snprintf(l->err, sizeof(l->err), "phone of %s could not send %s", users[q->user], corr);
		return -1;
	}
	q->attempts++;
	q->sent_ms = mono_ms();
	return 0;
}

/*
 * Collects the answers to request n's attempts (any attempt answered
 * accepted is an order); sends it again when its last attempt was refused
 * or went unanswered for RETRY_MS and none was accepted.  0, or -1 with err.
 */
static int
request_poll(struct load *l, int n)
{
	struct request *q = &l->reqs[n];
	char corr[64], out[200];
	int last_refused = 0;

	for (int a = 0; a < q->attempts; a++) {
		int rc;

		if (q->done_mask & (1u << a))
			continue;
		snprintf(corr, sizeof(corr), "%s-%d-%d", l->tag, n, a);
		if ((rc = reply_for(corr, out, sizeof(out))) < 0)
			continue;
		q->done_mask |= 1u << a;
		if (rc == 0) {
			q->accepted++;
			if (add_id(out) != 0) {
				snprintf(l->err, sizeof(l->err), "more than %d orders", MAX_ORDERS);
				return -1;
			}
		} else {
			l->refused++;
			print_message("request %s answered: %s\n", corr, out);
			last_refused = a == q->attempts - 1;
		}
	}
	if (q->accepted > 0 || (!last_refused && mono_ms() - q->sent_ms < RETRY_MS))
		return 0;
	if (q->attempts >= 8) {
		snprintf(l->err, sizeof(l->err), "request %s-%d: no accepted answer after 8 attempts", l->tag, n);
		return -1;
	}
	l->mqtt_retries++;
	return request_send(l, n);
}

/* LOAD_MS of orders: one HTTP order (svc-a and svc-b in turn) and one MQTT request per tick. */
static void *
stream(void *arg)
{
	struct load *l = arg;
	int64_t start = mono_ms();

	while (mono_ms() - start < LOAD_MS && l->nreqs < MAX_REQS) {
		int64_t tick = mono_ms();

		if (http_order(l, l->nhttp % 2 ? port_b : st.http_port, l->nhttp, users[l->nhttp % USERS]) != 0)
			return NULL;
		l->nhttp++;
		l->reqs[l->nreqs].user = l->nreqs % USERS;
		if (request_send(l, l->nreqs++) != 0)
			return NULL;
		for (int i = 0; i < l->nreqs; i++)
			if (request_poll(l, i) != 0)
				return NULL;
		if (mono_ms() - tick < TICK_MS)
			h_sleep((int)(TICK_MS - (mono_ms() - tick)));
	}
	return NULL;
}

static int64_t
pg_sum(const char *sql)
{
	return h_pg_int(&pg, sql);
}

/* SQL over every accepted order: "(VALUES ('id'), ...) AS v(id)"; a new string. */
static char *
ids_values(void)
{
	size_t cap = 64 + (size_t)nids * (NAME_MAX_LEN + 8), len = 0;
	char *s = malloc(cap);

	assert_non_null(s);
	len += (size_t)snprintf(s + len, cap - len, "(VALUES ");
	for (int i = 0; i < nids; i++)
		len += (size_t)snprintf(s + len, cap - len, "%s('%s')", i > 0 ? "," : "", ids[i]);
	snprintf(s + len, cap - len, ") AS v(id)");
	return s;
}

/* How many accepted orders break the rule "<count expression over v.id> = want". */
static int64_t
orders_not(const char *values, const char *count_sql, int want)
{
	size_t n = strlen(values) + strlen(count_sql) + 200;
	char *sql = malloc(n);
	int64_t v;

	assert_non_null(sql);
	snprintf(sql, n, "SELECT count(*) FROM %s WHERE (%s) <> %d", values, count_sql, want);
	v = pg_sum(sql);
	free(sql);
	return v;
}

#define Q_SVC "SELECT count(*) FROM order_service.orders o WHERE o.order_id = v.id"
#define Q_HIST "SELECT count(*) FROM order_history.orders o WHERE o.order_id = v.id"
#define Q_STAGES "SELECT count(*) FROM order_history.statuses s WHERE s.order_id = v.id"
#define Q_ALERT "SELECT count(*) FROM notifier.alerts a WHERE a.order_id = v.id"
#define Q_UNALERTED                                                     \
	"SELECT count(*) FROM order_service.orders o WHERE NOT EXISTS " \
	"(SELECT 1 FROM notifier.alerts a WHERE a.order_id = o.order_id)"
#define Q_OUTBOXES "SELECT (SELECT count(*) FROM order_service.outbox) + (SELECT count(*) FROM notifier.outbox)"

/* The broken rules, each a count of orders (or rows) off; 0 when all hold. */
struct tally {
	int64_t svc, hist, stages, alert, unalerted, outboxes;
	int no_alert, two_alerts; /* on the broker, as the observer saw them */
};

static void
tally(const char *values, struct tally *t)
{
	memset(t, 0, sizeof(*t));
	for (int i = 0; i < nids; i++) {
		int distinct;

		if (alerts_for(ids[i], &distinct) == 0)
			t->no_alert++;
		else if (distinct != 1)
			t->two_alerts++;
	}
	t->svc = orders_not(values, Q_SVC, 1);
	t->hist = orders_not(values, Q_HIST, 1);
	t->stages = orders_not(values, Q_STAGES, 4);
	t->alert = orders_not(values, Q_ALERT, 1);
	t->unalerted = pg_sum(Q_UNALERTED);
	t->outboxes = pg_sum(Q_OUTBOXES);
}

static int
tally_clean(const struct tally *t)
{
	return t->svc == 0 && t->hist == 0 && t->stages == 0 && t->alert == 0 && t->unalerted == 0 &&
	    t->outboxes == 0 && t->no_alert == 0 && t->two_alerts == 0;
}

static void
tally_print(const char *when, const struct tally *t)
{
	print_message("%s: of %d accepted orders, %d without an alert on the broker, %d with two; not exactly one row: "
		      "%lld in order-service, %lld in order-history, %lld without four statuses, %lld notifier alerts; "
		      "%lld recorded orders never alerted; %lld outbox rows\n",
	    when, nids, t->no_alert, t->two_alerts, (long long)t->svc, (long long)t->hist, (long long)t->stages,
	    (long long)t->alert, (long long)t->unalerted, (long long)t->outboxes);
}

static void
restart_under_load(const char *tag, enum restart how)
{
	static struct load l;
	static const char *const procs[] = { "svc-a", "svc-b", "history-a", "history-b", "notifier-a", "notifier-b",
		"exec-1", "exec-2" };
	int64_t start, restarted, deadline, settled;
	int pending;
	pthread_t thr;
	struct tally t;
	char *values;

	memset(&l, 0, sizeof(l));
	l.tag = tag;
	if (how == RESTART_KILL)
		broker_save();
	start = mono_ms();
	assert_int_equal(pthread_create(&thr, NULL, stream, &l), 0);
	/* the stream flows (some orders accepted over both front doors), then the broker goes */
	deadline = start + 10000;
	while (accepted_so_far() < 10 && mono_ms() < deadline)
		h_sleep(20);
	if (accepted_so_far() < 10) {
		pthread_join(thr, NULL);
		fail_msg("the stream did not start: %d orders accepted in 10 s; %s", accepted_so_far(), l.err);
	}
	restarted = mono_ms() - start;
	assert_int_equal(restart_broker(how), 0);
	print_message("%s: broker %s %lld ms into the stream, %d orders accepted by then; back after %lld ms\n", tag,
	    how == RESTART_TERM ? "stopped (SIGTERM)" : "killed (SIGKILL)", (long long)restarted, accepted_so_far(),
	    (long long)(mono_ms() - start - restarted));
	assert_int_equal(pthread_join(thr, NULL), 0);
	if (l.err[0] != '\0')
		fail_msg("%s", l.err);
	/* every phone gets an "accepted" in the end, asking again when it must */
	deadline = mono_ms() + 20000;
	do {
		pending = 0;
		for (int i = 0; i < l.nreqs; i++) {
			if (request_poll(&l, i) != 0)
				fail_msg("%s", l.err);
			pending += l.reqs[i].accepted == 0;
		}
		if (pending > 0)
			h_sleep(50);
	} while (pending > 0 && mono_ms() < deadline);
	if (pending > 0)
		fail_msg("%d of %d MQTT requests never answered accepted (see %s)", pending, l.nreqs, st.dir);
	print_message(
	    "%s: %d HTTP orders (%d retries), %d MQTT requests (%d sent again, %d refused): %d orders accepted\n", tag,
	    l.nhttp, l.http_retries, l.nreqs, l.mqtt_retries, l.refused, nids);
	for (size_t i = 0; i < sizeof(procs) / sizeof(procs[0]); i++)
		if (!h_alive(&st, procs[i]))
			fail_msg("%s exited", procs[i]);

	/* then, within a deadline: one alert each, one row each, the outboxes empty */
	values = ids_values();
	deadline = mono_ms() + 30000;
	do {
		tally(values, &t);
		if (tally_clean(&t))
			break;
		h_sleep(250);
	} while (mono_ms() < deadline);
	settled = mono_ms() - start;
	tally_print(tag, &t);
	/* a second alert would follow the first within moments: look once more after a pause */
	if (tally_clean(&t)) {
		h_sleep(1000);
		tally(values, &t);
	}
	free(values);
	if (!tally_clean(&t)) {
		tally_print("after the deadline", &t);
		fail_msg("something was lost or doubled (see %s)", st.dir);
	}
	assert_int_equal(seen.overflow, 0);
	print_message("%s: everything settled %lld ms after the stream began\n", tag, (long long)settled);
}

/* The broker stopped with SIGTERM (it saves its database) and started again, mid-stream. */
static void
test_broker_restart(void **state)
{
	(void)state;
	restart_under_load("rs-term", RESTART_TERM);
}

/* The broker killed with SIGKILL mid-stream (everything it took since its last save is gone) and started again. */
static void
test_broker_killed(void **state)
{
	(void)state;
	restart_under_load("rs-kill", RESTART_KILL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_broker_restart, setup, teardown),
		cmocka_unit_test_setup_teardown(test_broker_killed, setup, teardown),
	};

	if (getenv("PIZZA_TEST_FILTER") != NULL)
		cmocka_set_test_filter(getenv("PIZZA_TEST_FILTER"));
	return cmocka_run_group_tests_name("pg-restart", tests, NULL, NULL);
}

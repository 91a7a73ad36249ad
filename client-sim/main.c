/*
 * phone-sim - a simulated phone for the pizza backend.
 *
 *   phone-sim order --user alice --item margherita [--qty N]
 *   phone-sim watch --user alice [--persistent] [--device NAME]
 *
 * It connects as the user (its broker account), subscribes to
 * pizza/users/<user>/# and nothing else, places orders over MQTT 5
 * request/response, and prints one readable line per event.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include <curl/curl.h>

#include "cli.h"
#include "config.h"
#include "device.h"
#include "http_client.h"
#include "event.h"
#include "idset.h"
#include "inbox.h"
#include "load.h"
#include "log.h"
#include "menu.h"
#include "mq.h"
#include "runenv.h"
#include "svc.h"
#include "topic.h"
#include "util.h"

#define PROG "phone-sim"

struct common {
	const char *user;
	const char *password;
	const char *user_broker, *password_broker; /* a device's own broker account (device_login()); NULL: the user's */
	const char *url;
	const char *cafile, *certfile, *keyfile;
	int json;
	long timeout_s;
	int verbose;
};

/* Who the phone is: every command but menu and load. */
#define USER_OPTS(c)                                                                                \
	{ "user", 'u', OPT_STR, "PIZZA_USER", NULL, "the phone's user id (its broker account)", &(c)->user, 0, 0 }, \
	    { "password", 'P', OPT_STR, "PIZZA_PASSWORD", NULL, "the user's broker password",       \
		&(c)->password, 0, 0 },                                                             \
	{                                                                                           \
		"verbose", 'v', OPT_COUNT, NULL, NULL, "log connection details to stderr",         \
		    &(c)->verbose, 0, 0                                                             \
	}

/* How the phone reaches the broker: the commands that connect over MQTT. */
#define MQTT_OPTS(c)                                                                                \
	{ "mqtt-url", 0, OPT_STR, "PIZZA_MQTT_URL", NULL,                                           \
	    "broker URL, tcp:// or mqtts://; default tcp://127.0.0.1:$PIZZA_MQTT_PORT (1883)", &(c)->url, 0, 0 }, \
	    { "cafile", 0, OPT_STR, "PIZZA_MQTT_CAFILE", NULL,                                     \
		"CA certificate that must sign the broker's (mqtts://)", &(c)->cafile, 0, 0 },     \
	    { "certfile", 0, OPT_STR, "PIZZA_MQTT_CERTFILE", NULL, "client certificate for TLS (optional)", \
		&(c)->certfile, 0, 0 },                                                            \
	{                                                                                           \
		"keyfile", 0, OPT_STR, "PIZZA_MQTT_KEYFILE", NULL, "client certificate's key (optional)", \
		    &(c)->keyfile, 0, 0                                                             \
	}

/* --json for the commands that print events as they arrive. */
#define EVENTS_JSON_OPT(c)                                                                          \
	{                                                                                           \
		"json", 0, OPT_FLAG, NULL, NULL, "print the raw events, one JSON object a line", &(c)->json, 0, 0 \
	}

/* Parses a command's options; exits on --help (0) or bad arguments (2). */
static void
parse(const char *cmd, const char *summary, const struct opt *opts, struct common *c, int argc, char **argv,
    int need_password)
{
	char usage_line[64];
	int rc;

	snprintf(usage_line, sizeof(usage_line), "%s %s [options]", PROG, cmd);
	if ((rc = cli_parse(cmd, usage_line, summary, opts, argc, argv)) >= 0)
		exit(rc);
	if (c->user == NULL) {
		fprintf(stderr, "%s %s: --user is required (see --help)\n", PROG, cmd);
		exit(2);
	}
	if (!name_valid(c->user)) {
		fprintf(stderr, "%s %s: --user must be 1-%d characters of A-Z a-z 0-9 _ -\n", PROG, cmd, NAME_MAX_LEN);
		exit(2);
	}
	if (need_password && c->password == NULL) {
		fprintf(stderr, "%s %s: no password for '%s': pass --password or set PIZZA_PASSWORD\n", PROG, cmd,
		    c->user);
		exit(2);
	}
	log_init(PROG, c->verbose > 0 ? LOG_LEVEL_DEBUG : LOG_LEVEL_ERROR);
}

/* Connects as the user and subscribes to the user's topics. Exits 1 with a clear message on failure. */
static struct mq *
phone_connect(const char *cmd, const struct common *c, struct inbox *ib, const char *client_id, int persistent)
{
	struct mq_config cfg;
	char url[256], filter[TOPIC_MAX], err[512];
	const char *env;
	struct mq *mq;

	if (c->url != NULL)
		str_copy(url, sizeof(url), c->url);
	else {
		long port = 1883;
		if ((env = getenv("PIZZA_MQTT_PORT")) != NULL && env[0] != '\0' && parse_long(env, 1, 65535, &port) != 0) {
			fprintf(stderr, "%s %s: PIZZA_MQTT_PORT '%s' is not a port number\n", PROG, cmd, env);
			exit(2);
		}
		snprintf(url, sizeof(url), "tcp://127.0.0.1:%ld", port);
	}
	memset(&cfg, 0, sizeof(cfg));
	cfg.url = url;
	cfg.client_id = client_id;
	cfg.username = c->user_broker != NULL ? c->user_broker : c->user;
	cfg.password = c->password_broker != NULL ? c->password_broker : c->password;
	cfg.clean_start = !persistent;
	cfg.cafile = c->cafile;
	cfg.certfile = c->certfile;
	cfg.keyfile = c->keyfile;
	cfg.session_expiry_s = persistent ? 86400 : 0;
	if ((mq = mq_new(&cfg, inbox_handler, ib)) == NULL) {
		fprintf(stderr, "%s %s: cannot create an MQTT client for %s\n", PROG, cmd, url);
		exit(1);
	}
	if (topic_user_all(filter, sizeof(filter), c->user) != 0 || mq_subscribe(mq, filter, 1, MQ_NO_LOCAL) != 0) {
		fprintf(stderr, "%s %s: cannot subscribe to the user's topics\n", PROG, cmd);
		mq_free(mq);
		exit(1);
	}
	if (mq_connect(mq, 5000, err, sizeof(err)) != 0) {
		fprintf(stderr, "%s %s: %s\n", PROG, cmd, err);
		mq_free(mq);
		exit(1);
	}
	return mq;
}

static volatile sig_atomic_t quit;

static void
on_signal(int sig)
{
	quit = sig; /* SIGINT or SIGTERM: never 0 */
}

static const char *
clock_str(int64_t ms, char *buf, size_t n)
{
	time_t s = (time_t)(ms / 1000);
	struct tm tm;

	localtime_r(&s, &tm);
	snprintf(buf, n, "%02d:%02d:%02d.%03d", tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
	return buf;
}

/*
 * Prints one event for a person (or its raw JSON with --json).  t0 is the
 * order's placement time for the "+1.234s" column, or 0 to leave it out.
 */
static void
print_event(const struct common *c, const struct event *ev, const struct inbox_msg *m, int64_t t0)
{
	char when[16], since[24] = "";

	if (c->json) {
		printf("%s\n", m->payload);
		fflush(stdout);
		return;
	}
	clock_str(ev->at_ms, when, sizeof(when));
	if (t0 > 0)
		snprintf(since, sizeof(since), "+%.3fs", (double)(ev->at_ms - t0) / 1000.0);
	if (ev->type == EVENT_ORDER_STATUS)
		printf("%s  %-8s  order %s  %-8s  %-9s by %s%s\n", when, ev->user_id, ev->order_id,
		    event_status_name(ev->status), since, ev->worker, m->retained ? "  (current status, retained)" : "");
	else if (ev->type == EVENT_PICKUP_ALERT)
		printf("%s  %-8s  order %s  PICKUP    %-9s %s%s\n", when, ev->user_id, ev->order_id, since, ev->message,
		    topic_parse(m->topic, NULL, NULL) == TOPIC_KIND_DEVICE_ALERTS ? "  (sent again to this device)" : "");
	fflush(stdout);
}

/* Decodes an event from one of the user's topics; NULL-safe for replies and junk. */
static int
decode(const struct inbox_msg *m, struct event *ev)
{
	char err[256];
	enum topic_kind k = topic_parse(m->topic, NULL, NULL);

	if (k != TOPIC_KIND_STATUS && k != TOPIC_KIND_ALERTS && k != TOPIC_KIND_DEVICE_ALERTS)
		return -1;
	if (event_decode(m->payload, m->len, ev, err, sizeof(err)) != 0) {
		log_error("ignored a malformed event", "topic=%s reason=%s", LOGQ(m->topic), LOGQ(err));
		return -1;
	}
	return 0;
}

/*
 * Key for "seen already" sets: order id plus seq for a status; the event id
 * for an alert, which a device may get twice (the user's topic and, sent
 * again after a hello, its own).
 */
static void
seen_key(const struct event *ev, char *buf, size_t n)
{
	if (ev->type == EVENT_PICKUP_ALERT)
		snprintf(buf, n, "alert.%s", ev->event_id);
	else
		snprintf(buf, n, "%.*s.%d", NAME_MAX_LEN - 3, ev->order_id, ev->seq);
}

#define TOKEN_BUF 256

/*
 * POST /v1/login for c's user (with device dev, or NULL) at base (NULL:
 * http_base_url()).  Returns 0 with the HTTP status in *status, the parsed
 * answer in *answer (new reference, NULL when not JSON) and its text in
 * *raw (caller frees both); -1 with the reason in err when nothing was
 * answered.
 */
static int
login_post(const struct common *c, const char *base, const char *dev, long *status, json_t **answer, char **raw,
    char *err, size_t errlen)
{
	char url[512], *body;
	json_t *req = json_pack("{s:s, s:s}", "user_id", c->user, "password", c->password);
	int rc;

	if (dev != NULL)
		json_object_set_new(req, "device", json_string(dev));
	body = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	snprintf(url, sizeof(url), "%s/v1/login", base != NULL ? base : http_base_url());
	*raw = NULL;
	rc = body != NULL ? http_call("POST", url, body, NULL, status, raw, err, errlen) : -1;
	if (body == NULL)
		snprintf(err, errlen, "out of memory");
	free(body);
	*answer = rc == 0 ? json_loads(*raw, 0, NULL) : NULL;
	return rc;
}

/* Says why a login was refused: the answer's detail, else its text. */
static void
login_refused(const char *cmd, long status, json_t *answer, const char *raw)
{
	const char *detail = json_string_value(json_object_get(answer, "detail"));

	fprintf(stderr, "%s %s: login refused (HTTP %ld): %s\n", PROG, cmd, status, detail != NULL ? detail : raw);
}

/*
 * A bearer token for c's user into tok (TOKEN_BUF bytes): $PIZZA_TOKEN, or
 * a login at base (NULL: the default).  Returns 0, or -1 after printing why.
 */
static int
http_login(const char *cmd, const struct common *c, const char *base, char *tok)
{
	char err[300], *resp = NULL;
	const char *env = getenv("PIZZA_TOKEN"), *t;
	long status = 0;
	json_t *r;
	int rc = -1;

	if (env != NULL && env[0] != '\0') {
		snprintf(tok, TOKEN_BUF, "%s", env);
		return 0;
	}
	if (c->password == NULL) {
		fprintf(stderr, "%s %s: no password for '%s': pass --password or set PIZZA_PASSWORD (or PIZZA_TOKEN)\n", PROG,
		    cmd, c->user);
		return -1;
	}
	if (login_post(c, base, NULL, &status, &r, &resp, err, sizeof(err)) != 0) {
		fprintf(stderr, "%s %s: %s\n", PROG, cmd, err);
		return -1;
	}
	if (status == 200 && (t = json_string_value(json_object_get(r, "token"))) != NULL && strlen(t) < TOKEN_BUF) {
		snprintf(tok, TOKEN_BUF, "%s", t);
		rc = 0;
	} else
		login_refused(cmd, status, r, resp);
	json_decref(r);
	free(resp);
	return rc;
}

/* What POST /v1/login with a device answers: the device's own broker account. */
struct device_cred {
	char username[2 * NAME_MAX_LEN + 2];
	char password[128];
	char client_id[2 * NAME_MAX_LEN + 16];
};

/*
 * Logs the user in with device dev for a broker account of the device's
 * own (docs/http-api.md).  Returns 0 with *cred filled; 1 when there is no
 * HTTP API to ask (said on stderr: the caller connects with the user's
 * own account); -1 after printing why the login was refused.
 */
static int
device_login(const char *cmd, const struct common *c, const char *dev, struct device_cred *cred)
{
	char err[300], *resp = NULL;
	const char *u, *p, *id;
	long status = 0;
	json_t *r, *m;
	int rc = -1;

	if (c->password == NULL)
		return 1; /* a token alone cannot log a device in: the user's account it is */
	if (login_post(c, NULL, dev, &status, &r, &resp, err, sizeof(err)) != 0) {
		fprintf(stderr, "%s %s: no HTTP API to log device %s in (%s): connecting with %s's own account\n", PROG, cmd,
		    dev, err, c->user);
		return 1;
	}
	m = json_object_get(r, "mqtt");
	u = json_string_value(json_object_get(m, "username"));
	p = json_string_value(json_object_get(m, "password"));
	id = json_string_value(json_object_get(m, "client_id"));
	if (status == 200 && u != NULL && p != NULL && id != NULL && str_copy(cred->username, sizeof(cred->username), u) == 0 &&
	    str_copy(cred->password, sizeof(cred->password), p) == 0 &&
	    str_copy(cred->client_id, sizeof(cred->client_id), id) == 0)
		rc = 0;
	else if (status == 200 || status == 404) {
		/* a server without accounts, or an older one: the user's own account */
		fprintf(stderr, "%s %s: the server gives no device account: connecting with %s's own account\n", PROG, cmd,
		    c->user);
		rc = 1;
	} else
		login_refused(cmd, status, r, resp);
	json_decref(r);
	free(resp);
	return rc;
}

/*
 * POSTs the order to the HTTP API as the user and copies the order id.
 * Prints the placed line (or the 202 body with --json). Returns 0, or -1
 * with a one-line error printed.
 */
static int
http_order(const struct common *c, const char *base, const char *sku, long qty, const char *callback_url,
    char *order_id, size_t n)
{
	char url[512], err[300], when[16], tok[TOKEN_BUF], auth[TOKEN_BUF + 32];
	const char *headers[] = { auth, NULL };
	char *body, *resp = NULL;
	long status = 0;
	json_t *req, *r;
	const char *id;
	int rc = -1;

	if (http_login("order", c, base, tok) != 0)
		return -1;
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", tok);
	snprintf(url, sizeof(url), "%s/v1/orders", base != NULL ? base : http_base_url());
	req = json_pack("{s:s, s:[{s:s, s:i}]}", "user_id", c->user, "items", "sku", sku, "qty", (int)qty);
	if (callback_url != NULL)
		json_object_set_new(req, "callback_url", json_string(callback_url));
	body = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	if (!c->json)
		printf("%s  %-8s  ordering %ld x %s over HTTP ...\n", clock_str(now_ms(), when, sizeof(when)), c->user, qty,
		    sku);
	if (http_call("POST", url, body, headers, &status, &resp, err, sizeof(err)) != 0) {
		fprintf(stderr, "%s order: %s\n", PROG, err);
		free(body);
		return -1;
	}
	r = json_loads(resp, 0, NULL);
	id = json_string_value(json_object_get(r, "order_id"));
	if (status == 202 && id != NULL && name_valid(id)) {
		snprintf(order_id, n, "%s", id);
		if (c->json)
			printf("%s\n", resp);
		else
			printf("%s  %-8s  order %s  placed    (HTTP 202 Accepted)\n", clock_str(now_ms(), when, sizeof(when)),
			    c->user, order_id);
		fflush(stdout);
		rc = 0;
	} else {
		const char *detail = json_string_value(json_object_get(r, "detail"));
		fprintf(stderr, "%s order: the order was refused (HTTP %ld): %s\n", PROG, status, detail != NULL ? detail : resp);
	}
	json_decref(r);
	free(resp);
	free(body);
	return rc;
}

/*
 * Prints m if it is an event (of order_id, or of any order when NULL) not
 * printed before: each status and the alert once.  Returns 1 when what it
 * printed was a pickup alert (copied into *shown unless NULL), else 0.
 */
static int
print_new_event(const struct common *c, struct idset *seen, const struct inbox_msg *m, const char *order_id,
    int64_t t0, struct event *shown)
{
	struct event ev;
	char key[NAME_MAX_LEN + 8];

	if (decode(m, &ev) != 0 || (order_id != NULL && strcmp(ev.order_id, order_id) != 0))
		return 0;
	seen_key(&ev, key, sizeof(key));
	if (idset_add(seen, key) != 1)
		return 0;
	print_event(c, &ev, m, t0);
	if (ev.type != EVENT_PICKUP_ALERT)
		return 0;
	if (shown != NULL)
		*shown = ev;
	return 1;
}

/* Disconnects and frees a phone's client, its inbox and its "seen already" set. */
static void
phone_close(struct mq *mq, struct inbox *ib, struct idset *seen)
{
	mq_disconnect(mq, 1000);
	mq_free(mq);
	inbox_free(ib);
	idset_free(seen);
}

/*
 * Publishes the order request to the user's orders/new topic, to be
 * answered on reply_topic with correlation, and prints the "ordering" line.
 * Returns 0, or -1 with a one-line error printed.
 */
static int
mqtt_order(const struct common *c, struct mq *mq, const char *reply_topic, const char *correlation, const char *sku,
    long qty)
{
	char new_topic[TOPIC_MAX], when[16], *body;
	json_t *req = json_pack("{s:[{s:s, s:i}]}", "items", "sku", sku, "qty", (int)qty);
	struct mq_publish p;
	int rc;

	body = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	topic_new(new_topic, sizeof(new_topic), c->user);
	memset(&p, 0, sizeof(p));
	p.topic = new_topic;
	p.payload = body;
	p.len = strlen(body);
	p.qos = 1;
	p.response_topic = reply_topic;
	p.correlation = correlation;
	p.correlation_len = strlen(correlation);
	rc = mq_publish(mq, &p); /* paho copies the payload */
	free(body);
	if (rc != 0) {
		fprintf(stderr, "%s order: could not send the order\n", PROG);
		return -1;
	}
	if (!c->json)
		printf("%s  %-8s  ordering %ld x %s ...\n", clock_str(now_ms(), when, sizeof(when)), c->user, qty, sku);
	fflush(stdout);
	return 0;
}

/* One order followed from its placing to its pickup alert. */
struct follow {
	const struct common *c;
	const char *reply_topic, *correlation; /* where and how order-service answers (MQTT) */
	char order_id[NAME_MAX_LEN + 1];       /* "" until the answer names it */
	int64_t t0;                            /* when it was placed, for the "+1.234s" column */
	const char *waiting_for;               /* for the timeout message */
	struct inbox_msg *early, **early_tail; /* events that came before the order id, oldest first */
	struct idset *seen;
	int got_alert;
};

/* Notes that the order is placed (f->order_id is set): the "+1.234s" clock starts. */
static void
follow_placed(struct follow *f)
{
	f->t0 = now_ms();
	f->waiting_for = "the order's statuses and pickup alert";
}

/*
 * Before the order id is known, m is either order-service's answer to our
 * request (the order id, or why it was refused), or an event that overtook
 * it, kept to be replayed.  Takes m.  Returns 0, or -1 when the order was
 * refused (said on stderr).
 */
static int
follow_answer(struct follow *f, struct inbox_msg *m)
{
	char when[16];
	json_t *r;
	const char *id;
	int rc = 0;

	if (strcmp(m->topic, f->reply_topic) != 0 || m->correlation == NULL ||
	    strcmp(m->correlation, f->correlation) != 0) {
		*f->early_tail = m; /* keep it until we know which order is ours */
		f->early_tail = &m->next;
		return 0;
	}
	r = json_loads(m->payload, 0, NULL);
	id = json_string_value(json_object_get(r, "order_id"));
	if (id != NULL && name_valid(id)) {
		str_copy(f->order_id, sizeof(f->order_id), id);
		follow_placed(f);
		if (f->c->json)
			printf("%s\n", m->payload);
		else
			printf("%s  %-8s  order %s  placed    (order-service answered: accepted)\n",
			    clock_str(f->t0, when, sizeof(when)), f->c->user, f->order_id);
		fflush(stdout);
	} else {
		const char *detail = json_string_value(json_object_get(r, "detail"));
		fprintf(stderr, "%s order: the order was refused: %s\n", PROG, detail != NULL ? detail : m->payload);
		rc = -1;
	}
	json_decref(r);
	inbox_msg_free(m);
	return rc;
}

/* The next message: first those kept from before the order id was known, then the inbox's. NULL at the deadline. */
static struct inbox_msg *
follow_next(struct follow *f, struct inbox *ib, int64_t deadline)
{
	struct inbox_msg *m;

	if (f->order_id[0] == '\0' || f->early == NULL)
		return inbox_wait(ib, deadline);
	m = f->early;
	f->early = m->next;
	if (f->early == NULL)
		f->early_tail = &f->early;
	m->next = NULL;
	return m;
}

/*
 * Follows the order until its pickup alert, printing each status and the
 * alert once.  Returns 0 at the alert; 1 when the order was refused, time
 * ran out or Ctrl-C (said on stderr).
 */
static int
follow_order(struct follow *f, struct inbox *ib)
{
	int64_t deadline = mono_ms() + f->c->timeout_s * 1000;

	while (!quit && !f->got_alert && mono_ms() < deadline) {
		struct inbox_msg *m = follow_next(f, ib, deadline);

		if (m == NULL)
			continue;
		if (f->order_id[0] == '\0') {
			if (follow_answer(f, m) != 0)
				return 1;
			continue;
		}
		if (print_new_event(f->c, f->seen, m, f->order_id, f->t0, NULL))
			f->got_alert = 1;
		inbox_msg_free(m);
	}
	if (f->got_alert)
		return 0;
	if (quit) {
		/* as a shell reports a command killed by the signal: 130 for Ctrl-C */
		fprintf(stderr, "%s order: interrupted while waiting for %s\n", PROG, f->waiting_for);
		return 128 + (int)quit;
	}
	fprintf(stderr, "%s order: timed out after %lds waiting for %s\n", PROG, f->c->timeout_s, f->waiting_for);
	return 1;
}

/* Frees the events kept from before the order id was known. */
static void
follow_free(struct follow *f)
{
	while (f->early != NULL) {
		struct inbox_msg *n = f->early->next;
		inbox_msg_free(f->early);
		f->early = n;
	}
	f->early_tail = &f->early;
}

static int
cmd_order(int argc, char **argv)
{
	struct common c;
	const char *sku = NULL, *http_url = NULL, *callback_url = NULL;
	long qty = 1;
	int use_http = 0;
	const struct opt opts[] = {
		USER_OPTS(&c),
		MQTT_OPTS(&c),
		EVENTS_JSON_OPT(&c),
		{ "item", 0, OPT_STR, NULL, NULL, "the menu item (sku) to order; see 'phone-sim menu'", &sku, 0, 0 },
		{ "qty", 0, OPT_INT, NULL, "1", "how many", &qty, 1, EVENT_MAX_QTY },
		{ "timeout", 0, OPT_DURATION_S, "PIZZA_TIMEOUT_S", "60s", "how long to wait for the pickup alert",
		    &c.timeout_s, 1, 86400 },
		{ "http", 0, OPT_FLAG, NULL, NULL, "place the order with the HTTP API (POST /v1/orders) instead of MQTT",
		    &use_http, 0, 0 },
		{ "http-url", 0, OPT_STR, "PIZZA_HTTP_URL", NULL, "the HTTP API; default http://127.0.0.1:$PIZZA_HTTP_PORT (8080)",
		    &http_url, 0, 0 },
		{ "callback-url", 0, OPT_STR, NULL, NULL, "with --http: where to POST the signed OrderReady callback",
		    &callback_url, 0, 0 },
		{ NULL, 0, 0, NULL, NULL, NULL, NULL, 0, 0 },
	};
	char client_id[96], rand_hex[17], reply_topic[TOPIC_MAX];
	unsigned char rnd[8];
	struct inbox *ib;
	struct mq *mq;
	struct follow f;
	int rc = 1;

	memset(&c, 0, sizeof(c));
	parse("order", "Places an order (over MQTT, or HTTP with --http) and follows it over MQTT to the pickup alert.",
	    opts, &c, argc, argv, 1);
	if (sku == NULL) {
		fprintf(stderr, "%s order: --item is required (see '%s menu')\n", PROG, PROG);
		return 2;
	}
	if (menu_find(sku) == NULL) {
		fprintf(stderr, "%s order: '%s' is not on the menu (see '%s menu')\n", PROG, sku, PROG);
		return 2;
	}
	random_bytes(rnd, sizeof(rnd));
	for (int i = 0; i < 8; i++)
		snprintf(rand_hex + 2 * i, 3, "%02x", rnd[i]);
	snprintf(client_id, sizeof(client_id), "phone-%s-%.8s", c.user, rand_hex);
	topic_reply(reply_topic, sizeof(reply_topic), c.user, client_id + strlen("phone-"));

	memset(&f, 0, sizeof(f));
	f.c = &c;
	f.reply_topic = reply_topic;
	f.correlation = rand_hex;
	f.waiting_for = "the order service's answer";
	f.early_tail = &f.early;
	f.seen = idset_new(64);
	ib = inbox_new();
	mq = phone_connect("order", &c, ib, client_id, 0);

	if (use_http) {
		if (http_order(&c, http_url, sku, qty, callback_url, f.order_id, sizeof(f.order_id)) != 0)
			goto out;
		follow_placed(&f);
	} else if (callback_url != NULL) {
		fprintf(stderr, "%s order: --callback-url needs --http\n", PROG);
		rc = 2;
		goto out;
	} else if (mqtt_order(&c, mq, reply_topic, rand_hex, sku, qty) != 0)
		goto out;
	rc = follow_order(&f, ib);
out:
	follow_free(&f);
	phone_close(mq, ib, f.seen);
	return rc;
}

/*
 * Publishes QoS 1 to the device's own topic what (hello or receipts) the
 * JSON text body, and frees body.  Failures are said on stderr: a lost
 * hello or receipt means an alert may come again, never that one is lost.
 */
static void
device_say(struct mq *mq, const char *user, const char *device, const char *what, char *body)
{
	char topic[TOPIC_MAX];

	if (body == NULL || topic_device(topic, sizeof(topic), user, device, what) != 0 ||
	    mq_publish_text(mq, topic, body, 1, 0, 0) != 0)
		fprintf(stderr, "%s watch: could not send the device's %s\n", PROG, what);
	free(body);
}

static int
cmd_watch(int argc, char **argv)
{
	struct common c;
	int persistent = 0;
	long count = 0, for_s = 0;
	const char *device = NULL;
	const struct opt opts[] = {
		USER_OPTS(&c),
		MQTT_OPTS(&c),
		EVENTS_JSON_OPT(&c),
		{ "persistent", 0, OPT_FLAG, NULL, NULL,
		    "keep this device's session on the broker, so alerts sent while offline arrive on the next watch; "
		    "says hello on every connect and sends a receipt for each alert shown",
		    &persistent, 0, 0 },
		{ "device", 'd', OPT_STR, "PIZZA_DEVICE", NULL,
		    "this device's name (client id phone-<user>-<device>); default: the host name, made a valid name",
		    &device, 0, 0 },
		{ "alerts", 0, OPT_INT, NULL, "0", "exit 0 after this many pickup alerts (0: never)", &count, 0, 1000000 },
		{ "for", 0, OPT_DURATION_S, NULL, "0", "exit 0 after this long (0: until Ctrl-C)", &for_s, 0, 86400 },
		{ NULL, 0, 0, NULL, NULL, NULL, NULL, 0, 0 },
	};
	char client_id[2 * NAME_MAX_LEN + 16], dev[NAME_MAX_LEN + 1];
	struct device_cred cred;
	struct inbox *ib;
	struct mq *mq;
	struct idset *seen;
	struct event shown;
	int64_t deadline;
	long alerts = 0;
	unsigned reconnects;

	memset(&c, 0, sizeof(c));
	parse("watch", "Prints the user's order statuses and pickup alerts as they arrive.", opts, &c, argc, argv, 1);
	if (device != NULL && !name_valid(device)) {
		fprintf(stderr, "%s watch: --device must be 1-%d characters of A-Z a-z 0-9 _ -\n", PROG, NAME_MAX_LEN);
		return 2;
	}
	if (device != NULL)
		str_copy(dev, sizeof(dev), device);
	else
		device_name_default(dev, sizeof(dev));
	/* a device is one stable client id; a plain watch without --device stays a throwaway one */
	if (persistent || device != NULL)
		snprintf(client_id, sizeof(client_id), "phone-%s-%s", c.user, dev);
	else {
		unsigned char r[4];
		random_bytes(r, sizeof(r));
		snprintf(client_id, sizeof(client_id), "phone-%s-%02x%02x%02x%02x", c.user, r[0], r[1], r[2], r[3]);
	}
	/* a named device logs in for a broker account of its own (revocable), when the HTTP API answers */
	if (persistent || device != NULL) {
		switch (device_login("watch", &c, dev, &cred)) {
		case 0:
			c.user_broker = cred.username;
			c.password_broker = cred.password;
			str_copy(client_id, sizeof(client_id), cred.client_id);
			break;
		case 1:
			break; /* no HTTP API: the user's own broker account, as before */
		default:
			return 1;
		}
	}
	ib = inbox_new();
	seen = idset_new(100000);
	mq = phone_connect("watch", &c, ib, client_id, persistent);
	reconnects = mq_reconnects(mq);
	if (persistent)
		device_say(mq, c.user, dev, "hello", device_hello_encode(dev));
	if (!c.json)
		fprintf(stderr, "watching pizza/users/%s/# as device %s (Ctrl-C to stop)\n", c.user, dev);
	deadline = for_s > 0 ? mono_ms() + for_s * 1000 : INT64_MAX;
	while (!quit && mono_ms() < deadline && (count == 0 || alerts < count)) {
		struct inbox_msg *m;

		/* a hello on every reconnect too: the notifier sends again what this device has not confirmed */
		if (persistent && mq_reconnects(mq) != reconnects && mq_is_connected(mq)) {
			reconnects = mq_reconnects(mq);
			device_say(mq, c.user, dev, "hello", device_hello_encode(dev));
		}
		if ((m = inbox_wait(ib, deadline)) == NULL)
			continue;
		if (print_new_event(&c, seen, m, NULL, 0, &shown)) {
			alerts++;
			if (persistent)
				device_say(mq, c.user, dev, "receipts", device_receipt_encode(shown.event_id, shown.order_id));
		}
		inbox_msg_free(m);
	}
	phone_close(mq, ib, seen);
	return 0;
}

static void
print_history_order(const json_t *o)
{
	const char *id = json_string_value(json_object_get(o, "order_id"));
	const char *status = json_string_value(json_object_get(o, "status"));
	const char *placed = json_string_value(json_object_get(o, "placed_at"));
	const json_t *items = json_object_get(o, "items"), *tl = json_object_get(o, "timeline"), *e;
	char what[160] = "", when[16] = "-";
	int64_t t0 = 0, t;
	size_t i, off = 0;

	if (placed != NULL && time_parse_rfc3339(placed, &t0) == 0)
		clock_str(t0, when, sizeof(when));
	json_array_foreach(items, i, e) {
		if (off < sizeof(what))
			off += (size_t)snprintf(what + off, sizeof(what) - off, "%s%d x %s", i ? ", " : "",
			    (int)json_integer_value(json_object_get(e, "qty")), json_string_value(json_object_get(e, "sku")));
	}
	printf("%-26s  %-12s  %-9s  %s\n", id != NULL ? id : "?", when, status != NULL ? status : "?", what);
	json_array_foreach(tl, i, e) {
		const char *at = json_string_value(json_object_get(e, "at"));
		const char *st = json_string_value(json_object_get(e, "status"));
		const char *by = json_string_value(json_object_get(e, "worker"));
		const char *detail = json_string_value(json_object_get(e, "detail"));

		if (at == NULL || st == NULL || time_parse_rfc3339(at, &t) != 0)
			continue;
		printf("    %-20s %s  +%.3fs  %s\n", st, clock_str(t, when, sizeof(when)), t0 > 0 ? (double)(t - t0) / 1000.0 : 0.0,
		    by != NULL ? by : detail != NULL ? detail : "");
	}
}

static int
cmd_history(int argc, char **argv)
{
	struct common c;
	long limit = 10;
	const char *http_url = NULL;
	const struct opt opts[] = {
		USER_OPTS(&c),
		{ "json", 0, OPT_FLAG, NULL, NULL, "print the HTTP API's JSON answer as it is", &c.json, 0, 0 },
		{ "limit", 0, OPT_INT, NULL, "10", "how many of the newest orders", &limit, 1, 100 },
		{ "http-url", 0, OPT_STR, "PIZZA_HTTP_URL", NULL, "the HTTP API; default http://127.0.0.1:$PIZZA_HTTP_PORT (8080)",
		    &http_url, 0, 0 },
		{ NULL, 0, 0, NULL, NULL, NULL, NULL, 0, 0 },
	};
	char url[512], err[300], *resp = NULL, tok[TOKEN_BUF], auth[TOKEN_BUF + 32];
	const char *headers[] = { auth, NULL };
	long status = 0;
	json_t *r, *o;
	size_t i;

	memset(&c, 0, sizeof(c));
	parse("history", "Prints the user's newest orders and their timelines.", opts, &c, argc, argv, 0);
	if (http_login("history", &c, http_url, tok) != 0)
		return 1;
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", tok);
	snprintf(url, sizeof(url), "%s/v1/users/%s/orders?limit=%ld", http_url != NULL ? http_url : http_base_url(), c.user,
	    limit);
	if (http_call("GET", url, NULL, headers, &status, &resp, err, sizeof(err)) != 0) {
		fprintf(stderr, "%s history: %s\n", PROG, err);
		return 1;
	}
	r = json_loads(resp, 0, NULL);
	if (status != 200 || !json_is_array(json_object_get(r, "orders"))) {
		const char *detail = json_string_value(json_object_get(r, "detail"));
		fprintf(stderr, "%s history: HTTP %ld: %s\n", PROG, status, detail != NULL ? detail : resp);
		json_decref(r);
		free(resp);
		return 1;
	}
	if (c.json)
		printf("%s\n", resp);
	else {
		printf("%-26s  %-12s  %-9s  %s\n", "ORDER", "PLACED", "STATUS", "ITEMS");
		json_array_foreach(json_object_get(r, "orders"), i, o)
			print_history_order(o);
		if (json_array_size(json_object_get(r, "orders")) == 0)
			printf("(no orders for %s)\n", c.user);
	}
	json_decref(r);
	free(resp);
	return 0;
}

static int
cmd_token(int argc, char **argv)
{
	struct common c;
	const char *http_url = NULL;
	const struct opt opts[] = {
		USER_OPTS(&c),
		{ "http-url", 0, OPT_STR, "PIZZA_HTTP_URL", NULL, "the HTTP API; default http://127.0.0.1:$PIZZA_HTTP_PORT (8080)",
		    &http_url, 0, 0 },
		{ NULL, 0, 0, NULL, NULL, NULL, NULL, 0, 0 },
	};
	char tok[TOKEN_BUF];

	memset(&c, 0, sizeof(c));
	parse("token", "Logs in to the HTTP API with the user's password and prints a bearer token.", opts, &c, argc, argv,
	    1);
	unsetenv("PIZZA_TOKEN"); /* a fresh one */
	if (http_login("token", &c, http_url, tok) != 0)
		return 1;
	printf("%s\n", tok);
	return 0;
}

static int
cmd_menu(int argc, char **argv)
{
	const struct opt opts[] = { { NULL, 0, 0, NULL, NULL, NULL, NULL, 0, 0 } };
	size_t n;
	const struct menu_item *m;
	int rc;

	if ((rc = cli_parse("menu", PROG " menu", "Prints the menu.", opts, argc, argv)) >= 0)
		return rc;
	m = menu_all(&n);
	for (size_t i = 0; i < n; i++)
		printf("%-18s %-18s %3d.%02d\n", m[i].sku, m[i].name, m[i].price_cents / 100, m[i].price_cents % 100);
	return 0;
}

/* phone-sim's commands: what "phone-sim NAME" runs, and its line in the usage text. */
static const struct command {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *summary;
} commands[] = {
	{ "order", cmd_order, "place an order and follow it to the pickup alert" },
	{ "watch", cmd_watch, "print this user's statuses and alerts as they arrive" },
	{ "history", cmd_history, "print this user's orders and their timelines (HTTP API)" },
	{ "token", cmd_token, "log in to the HTTP API and print a bearer token" },
	{ "menu", cmd_menu, "print what can be ordered" },
	{ "load", cmd_load, "many phones ordering at once: throughput, latency, losses" },
};

static void
usage(FILE *f)
{
	fprintf(f, "usage: %s COMMAND [options]\n\nA simulated phone for the pizza backend.\n\ncommands:\n", PROG);
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  %-7s %s\n", commands[i].name, commands[i].summary);
	fprintf(f, "\n'%s COMMAND --help' describes each command's options.\n", PROG);
}

int
main(int argc, char **argv)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	runenv_load(); /* the ports of a running make run, unless set */

	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
		usage(stdout);
		return 0;
	}
	if (strcmp(argv[1], "--version") == 0) {
		printf("%s %s\n", PROG, PIZZA_VERSION);
		return 0;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (strcmp(argv[1], commands[i].name) == 0)
			return commands[i].run(argc - 1, argv + 1);
	}
	fprintf(stderr, "%s: unknown command '%s' (see '%s --help')\n", PROG, argv[1], PROG);
	return 2;
}

/*
 * order-service - the front door.  Takes PlaceOrder requests from phones
 * over MQTT 5 request/response (pizza/users/<user>/orders/new with a
 * Response Topic and Correlation Data) and over HTTP (api.c), records each
 * accepted order and its OrderPlaced event (intake.c, store.c), answers,
 * and publishes the event from the outbox.  It follows every order from
 * the kitchen's answers (accepted, ready) and publishes a stalled order
 * again (supervise.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>

#include "accounts.h"
#include "aclfile.h"
#include "api.h"
#include "consume.h"
#include "forward.h"
#include "intake.h"
#include "log.h"
#include "metrics.h"
#include "mq.h"
#include "netcheck.h"
#include "outbox.h"
#include "ratelimit.h"
#include "store.h"
#include "supervise.h"
#include "svc.h"
#include "topic.h"
#include "util.h"
#include "web.h"

#define SVC "order-service"
#define REPLY_EXPIRY_S 60
#define EXPIRE_EVERY_MS 60000
/*
 * --ready-deadline: its default, and its range, wide enough for what an old
 * --stage-deadline (100ms to 1d) becomes: every stage the executor reports
 * on the way to ready (accepted, prep, bake, oven) within the stage
 * deadline is ready within STAGES_TO_READY times it.
 */
#define READY_DEADLINE_DEFAULT_MS 120000
#define DEADLINE_MIN_MS 100
#define STAGE_DEADLINE_MAX_MS 86400000L
#define STAGES_TO_READY 4
#define READY_DEADLINE_MAX_MS (STAGES_TO_READY * STAGE_DEADLINE_MAX_MS)

static struct {
	struct svc_opts so;
	const char *db_path;
	long outbox_retry_ms;
	long http_port;
	const char *http_bind;
	const char *history_url;
	long idempotency_ttl_h;
	long intake_first_ms;
	long accept_deadline_ms, ready_deadline_ms;
	long stage_deadline_ms; /* the old option: -1 when not given; deadlines() reads it */
	const char *callback_allow;
	const char *token_secret_file, *password_file, *history_secret_file;
	long token_ttl_s;
	long rate_limit, rate_burst;
	long order_limit, order_burst;
	const char *web_root, *mqtt_ws_url;
	const char *acl_file, *admin_secret_file;
	int allow_signup;
	long signup_limit;
} cfg;


/* What the message handlers use, set up by start() before the broker connection. */
static struct mq *mq;
static struct mq *intake_mq; /* the shared store's intake connection, NULL otherwise */
static struct intake *intake;
static struct supervisor *supervisor;
static struct accounts *accounts; /* NULL without --acl-file */
static int shared_store;          /* PostgreSQL, shared with other instances (ostore_shared()) */

/* A reply may only go back to the requester's own reply topics. */
static int
reply_topic_ok(const char *user, const char *rt)
{
	char prefix[TOPIC_MAX];
	size_t n;

	if (topic_reply(prefix, sizeof(prefix), user, "") != 0)
		return 0;
	n = strlen(prefix);
	return strncmp(rt, prefix, n) == 0 && rt[n] != '\0' && strpbrk(rt, "+#") == NULL;
}

static void
reply(const struct mq_message *m, const struct intake_result *res)
{
	struct mq_publish p;
	json_t *o;
	char *body;

	if (res->status == INTAKE_OK)
		o = json_pack("{s:s, s:s}", "order_id", res->order_id, "status", "accepted");
	else
		o = json_pack("{s:s, s:o}", "error", res->error, "detail", event_json_lossy(res->detail));
	if (o == NULL || (body = json_dumps(o, JSON_COMPACT)) == NULL) {
		json_decref(o);
		return;
	}
	json_decref(o);
	memset(&p, 0, sizeof(p));
	p.topic = m->response_topic;
	p.payload = body;
	p.len = strlen(body);
	p.qos = 1;
	p.expiry_s = REPLY_EXPIRY_S;
	p.correlation = m->correlation;
	p.correlation_len = m->correlation_len;
	mq_publish(mq, &p);
	free(body);
}

/*
 * A PlaceOrder request from a phone: placed (waiting for its commit, so the
 * broker has its PUBACK only once the order is recorded), then answered on
 * its response topic.  A request that cannot be answered and is refused is
 * dead-lettered with the reason.  A request the store could not record is
 * answered "internal" and the client retries; without a response topic it
 * is left unacknowledged for the broker to deliver again.
 */
static enum consume_result
on_request(void *arg, struct consume_msg *c)
{
	const struct mq_message *m = c->m;
	struct intake_result res;

	(void)arg;
	if (m->retained) {
		/* a stale request left retained on the broker: never place it again */
		snprintf(c->reason, sizeof(c->reason), "retained order requests are not accepted");
		return CONSUME_INVALID;
	}
	if (m->response_topic != NULL && !reply_topic_ok(c->user, m->response_topic)) {
		snprintf(c->reason, sizeof(c->reason), "response topic must be under pizza/users/%s/replies/", c->user);
		return CONSUME_INVALID;
	}
	intake_place_raw(intake, c->user, m->payload, m->len, "mqtt", NULL, &res);
	if (res.status == INTAKE_INTERNAL && shared_store && m->response_topic == NULL) {
		/*
		 * PostgreSQL out of reach (reconnecting, about a second), and nobody
		 * to tell: the intake connection keeps no session, so a request left
		 * unacknowledged would be lost with the connection, and every other
		 * request in flight on it too.  Dead-lettered, so it is seen.
		 */
		snprintf(c->reason, sizeof(c->reason), "the order could not be recorded (database unavailable); not placed");
		return CONSUME_INVALID;
	}
	if (m->response_topic != NULL) {
		reply(m, &res);
		return CONSUME_DONE;
	}
	if (res.status == INTAKE_INTERNAL)
		return CONSUME_RETRY; /* nobody to tell, and a valid request: the broker delivers it again */
	if (res.status != INTAKE_OK) {
		snprintf(c->reason, sizeof(c->reason), "%s", res.detail);
		return CONSUME_INVALID;
	}
	return CONSUME_DONE;
}

/*
 * An executor took an order (OrderStatus accepted) or finished it
 * (OrderReady): the supervision's view of the order's progress.
 */
static enum consume_result
on_status(void *arg, struct consume_msg *c)
{
	(void)arg;
	switch (supervise_progress(supervisor, c->ev)) {
	case OSTORE_OK:
		return CONSUME_DONE;
	case OSTORE_DUP:
		return CONSUME_DUPLICATE;
	case OSTORE_NOT_FOUND:
		/* order-service records every order before it is published, so this one never was */
		snprintf(c->reason, sizeof(c->reason), "status for an unknown order");
		return CONSUME_INVALID;
	default:
		/* not recorded: left unacknowledged, the broker delivers it again */
		return CONSUME_RETRY;
	}
}

/* The broker's answer to an account change (accounts.h). */
static enum consume_result
on_control(void *arg, struct consume_msg *c)
{
	(void)arg;
	if (accounts != NULL)
		accounts_control_reply(accounts, c->m->payload, c->m->len);
	return CONSUME_DONE;
}

/*
 * Who handles what: every subscription of order-service.  Every status on
 * the phones' topics came here until the kitchen answered on topics of its
 * own (accepted and ready are all the supervision needs): that subscription
 * is retired, and what an older version's session still holds of it is
 * followed as before (a ready there finishes the order).
 */
static const struct consume_row rows[] = {
	{ TOPIC_ALL_NEW, 1, 0, CONSUME_RAW, on_request },
	{ TOPIC_ACCEPTED, 1, 0, EVENT_ORDER_STATUS, on_status },
	{ TOPIC_READY, 1, 0, EVENT_ORDER_READY, on_status },
	{ ACCOUNTS_RESPONSE_TOPIC, 0, 0, CONSUME_RAW, on_control },
	{ TOPIC_ALL_STATUS, 1, MQ_RETIRED, EVENT_ORDER_STATUS, on_status },
};

/*
 * The same with a shared store (PostgreSQL, several instances): each order
 * request goes to one instance of the group, which places and answers it
 * (a plain subscription would have every instance place it).  accepted
 * and OrderReady still reach every instance: progress only moves forward,
 * so the second finds it done.  The broker's answers to account changes reach every
 * instance too; each takes only its own (accounts.c tells them apart).
 *
 * The requests come on a second connection of their own (rows_intake),
 * with no session: Session Expiry 0, so the broker forgets it the moment
 * the instance is gone.  On the persistent connection mosquitto would keep
 * a killed instance in the $share group and queue its round-robin share of
 * the requests until it came back (1/N of the phones unanswered); without
 * a session, the live members get them all.  A request in flight at the
 * kill is lost unanswered, and the phone's timeout and retry cover it: it
 * was never answered "accepted", since the answer is sent after the commit.
 */
static const struct consume_row rows_shared[] = {
	{ TOPIC_ACCEPTED, 1, 0, EVENT_ORDER_STATUS, on_status },
	{ TOPIC_READY, 1, 0, EVENT_ORDER_READY, on_status },
	{ ACCOUNTS_RESPONSE_TOPIC, 0, 0, CONSUME_RAW, on_control },
	{ TOPIC_ALL_STATUS, 1, MQ_RETIRED, EVENT_ORDER_STATUS, on_status },
};
static const struct consume_row rows_intake[] = {
	{ "$share/order-service/" TOPIC_ALL_NEW, 1, 0, CONSUME_RAW, on_request },
};

static double
backlog(void *arg)
{
	return (double)outbox_backlog(arg);
}

static double
holding(void *arg)
{
	return (double)outbox_held(arg);
}

/* Everything main() starts, in the order it starts them; stop() undoes them in reverse. */
struct service {
	struct allowlist *allow;
	char *token_secret, *history_secret, *admin_secret;
	struct aclfile *acl;
	struct ratelimit *signup_limit;
	struct order_store *store;
	struct consumer *consumer;
	struct consumer *intake_consumer; /* rows_intake, on intake_mq */
	char intake_id[300];              /* intake_mq's client id */
	struct outbox *outbox;
	struct api api;
	struct httpd *http;
};

/* Exits with status 2 when a deadline option that was given (not -1) is below DEADLINE_MIN_MS. */
static void
deadline_check(const char *name, const char *env, long ms)
{
	if (ms >= 0 && ms < DEADLINE_MIN_MS) {
		fprintf(stderr, "%s: --%s (or %s): %ldms is below %dms\n", SVC, name, env, ms, DEADLINE_MIN_MS);
		exit(2);
	}
}

/*
 * cfg.ready_deadline_ms, the supervisor's deadline after an executor
 * accepted an order, from --ready-deadline or else the old
 * --stage-deadline, which meant "no stage advanced for this long": an order
 * whose every stage (accepted, prep, bake, oven) advanced within it is ready
 * within 4 times it.  The old option logs a warning naming the new one.
 * Exits with status 2 on a value out of range.
 */
static void
deadlines(void)
{
	deadline_check("ready-deadline", "PIZZA_READY_DEADLINE_MS", cfg.ready_deadline_ms);
	deadline_check("stage-deadline", "PIZZA_STAGE_DEADLINE_MS", cfg.stage_deadline_ms);
	if (cfg.stage_deadline_ms < 0) {
		if (cfg.ready_deadline_ms < 0)
			cfg.ready_deadline_ms = READY_DEADLINE_DEFAULT_MS;
	} else if (cfg.ready_deadline_ms < 0) {
		cfg.ready_deadline_ms = STAGES_TO_READY * cfg.stage_deadline_ms;
		log_warn("--stage-deadline is an old option: the ready deadline is 4 times it (accepted, prep, bake and "
			 "oven each within it); set --ready-deadline instead",
		    "stage_deadline_ms=%ld ready_deadline_ms=%ld", cfg.stage_deadline_ms, cfg.ready_deadline_ms);
	} else
		log_warn("--stage-deadline is an old option and is ignored: --ready-deadline is given and wins",
		    "stage_deadline_ms=%ld ready_deadline_ms=%ld", cfg.stage_deadline_ms, cfg.ready_deadline_ms);
}

/* Parses the command line, the environment and the config file into cfg; exits on an error. */
static void
parse_args(int argc, char **argv)
{
	const struct opt opts[] = {
		SVC_OPTS(&cfg.so, "order-service", "order-service"),
		{ "db", 0, OPT_STR, "PIZZA_ORDER_DB", "order-service.db",
		    "SQLite file for orders, accounts and the outbox, or a postgresql:// URL that several instances share",
		    &cfg.db_path, 0, 0 },
		{ "outbox-retry", 0, OPT_DURATION_MS, "PIZZA_OUTBOX_RETRY_MS", "10s",
		    "re-publish events the broker has not acknowledged after this long", &cfg.outbox_retry_ms,
		    100, 3600000 },
		{ "http-port", 0, OPT_INT, "PIZZA_HTTP_PORT", "8080", "HTTP API port (0: no HTTP API)", &cfg.http_port, 0,
		    65535 },
		{ "http-bind", 0, OPT_STR, "PIZZA_HTTP_BIND", "127.0.0.1", "address the HTTP API listens on",
		    &cfg.http_bind, 0, 0 },
		{ "history-url", 0, OPT_STR, "PIZZA_HISTORY_URL", "http://127.0.0.1:8081",
		    "order-history's HTTP API, which answers the read endpoints: one URL, or the URLs of several "
		    "instances (comma-separated, the first healthy one asked first)",
		    &cfg.history_url, 0, 0 },
		{ "idempotency-ttl", 0, OPT_DURATION_H, "PIZZA_IDEMPOTENCY_TTL_H", "48h",
		    "how long an Idempotency-Key is remembered (at least 24h)", &cfg.idempotency_ttl_h, 24, 24 * 365 },
		{ "intake-first", 0, OPT_DURATION_MS, "PIZZA_INTAKE_FIRST_MS", "30s",
		    "while orders arrive faster than one commit takes (a flash sale), hold their OrderPlaced back "
		    "for up to this long so that answering orders keeps the CPU; they go out in order after (0: never)",
		    &cfg.intake_first_ms, 0, 3600000 },
		{ "accept-deadline", 0, OPT_DURATION_MS, "PIZZA_ACCEPT_DEADLINE_MS", "10s",
		    "publish an order again if no executor accepted it within this long", &cfg.accept_deadline_ms, 100,
		    86400000 },
		{ "ready-deadline", 0, OPT_DURATION_MS, "PIZZA_READY_DEADLINE_MS", "-1",
		    "publish an order again if it is not ready this long after an executor accepted it (keep it above "
		    "the kitchen's whole time: accepted + prep + bake + oven; -1: 2m, or 4 times --stage-deadline when "
		    "only that is given)",
		    &cfg.ready_deadline_ms, -1, READY_DEADLINE_MAX_MS },
		{ "stage-deadline", 0, OPT_DURATION_MS, "PIZZA_STAGE_DEADLINE_MS", "-1",
		    "the old form: publish an order again if no stage advanced for this long; read as --ready-deadline "
		    "of 4 times it (accepted, prep, bake, oven), with a warning; --ready-deadline wins when both are "
		    "given (-1: not given)",
		    &cfg.stage_deadline_ms, -1, STAGE_DEADLINE_MAX_MS },
		{ "callback-allow", 0, OPT_STR, "PIZZA_CALLBACK_ALLOW", NULL,
		    "hosts, addresses or CIDR ranges callbacks may reach although private or local (comma-separated)",
		    &cfg.callback_allow, 0, 0 },
		{ "token-secret-file", 0, OPT_STR, "PIZZA_TOKEN_SECRET_FILE", NULL,
		    "file with the secret that signs HTTP bearer tokens (or set PIZZA_TOKEN_SECRET)",
		    &cfg.token_secret_file, 0, 0 },
		{ "history-secret-file", 0, OPT_STR, "PIZZA_HISTORY_SECRET_FILE", NULL,
		    "file with the secret order-history's read API wants (or set PIZZA_HISTORY_SECRET)",
		    &cfg.history_secret_file, 0, 0 },
		{ "import-users", 0, OPT_STR, "PIZZA_PASSWORD_FILE", NULL,
		    "mosquitto password file (hashed) whose customers are added to the accounts at start if missing "
		    "(the demo's and the load generator's; accounts are otherwise managed with pizza-admin)",
		    &cfg.password_file, 0, 0 },
		{ "acl-file", 0, OPT_STR, "PIZZA_ACL_FILE", NULL,
		    "the broker's ACL file (broker-config/acl): a customer's broker role; without it, no login or accounts",
		    &cfg.acl_file, 0, 0 },
		{ "admin-secret-file", 0, OPT_STR, "PIZZA_ADMIN_SECRET_FILE", NULL,
		    "file holding the secret of the admin API (/v1/admin/, pizza-admin); none: no admin API",
		    &cfg.admin_secret_file, 0, 0 },
		{ "allow-signup", 0, OPT_FLAG, "PIZZA_ALLOW_SIGNUP", NULL, "let anyone create an account (POST /v1/users)",
		    &cfg.allow_signup, 0, 0 },
		{ "signup-limit", 0, OPT_INT, "PIZZA_SIGNUP_LIMIT", "5", "sign-ups per client address per hour",
		    &cfg.signup_limit, 0, 1000000 },
		{ "token-ttl", 0, OPT_DURATION_S, "PIZZA_TOKEN_TTL_S", "12h", "how long a login token is valid", &cfg.token_ttl_s,
		    60, 2592000 },
		{ "rate-limit", 0, OPT_INT, "PIZZA_HTTP_RATE_LIMIT", "50",
		    "HTTP requests per second per client address (0: no limit)", &cfg.rate_limit, 0, 1000000 },
		{ "order-rate-limit", 0, OPT_INT, "PIZZA_ORDER_RATE_LIMIT", "20",
		    "orders per second one user may place, over MQTT and HTTP together (0: no limit)", &cfg.order_limit, 0,
		    1000000 },
		{ "order-rate-burst", 0, OPT_INT, "PIZZA_ORDER_RATE_BURST", "60", "orders one user may place at once",
		    &cfg.order_burst, 1, 10000000 },
		{ "rate-burst", 0, OPT_INT, "PIZZA_HTTP_RATE_BURST", "100", "requests a client may send at once",
		    &cfg.rate_burst, 1, 10000000 },
		{ "web-root", 0, OPT_STR, "PIZZA_WEB_ROOT", NULL,
		    "folder with the storefront served at / (web/ in the checkout; none: no static files)", &cfg.web_root,
		    0, 0 },
		{ "mqtt-ws-url", 0, OPT_STR, "PIZZA_MQTT_WS_URL", NULL,
		    "the broker's MQTT over WebSockets URL the storefront connects to (GET /v1/config)", &cfg.mqtt_ws_url,
		    0, 0 },
		OPT_ALIAS_OF("outbox-retry-ms", "outbox-retry"),
		OPT_ALIAS_OF("password-file", "import-users"),
		OPT_ALIAS_OF("accept-deadline-ms", "accept-deadline"),
		OPT_ALIAS_OF("stage-deadline-ms", "stage-deadline"),
		{ NULL, 0, 0, NULL, NULL, NULL, NULL, 0, 0 },
	};
	svc_parse(SVC, "Front door: accepts orders over MQTT request/response and HTTP, and publishes OrderPlaced.",
	    opts, &cfg.so, argc, argv);
	deadlines();
}

/*
 * A secret from file (an option) or the environment variable env: a new
 * string, or NULL when none is set.  Exits when the HTTP API is on without
 * a usable one (what names the option and variable in the message).
 */
static char *
secret_read(const char *file, const char *env, const char *what)
{
	char *secret = NULL;
	const char *v;

	if (file != NULL) {
		if ((secret = file_read_small(file, 4096)) == NULL)
			fatal("cannot read a secret file", "path=%s", LOGQ(file));
	} else if ((v = getenv(env)) != NULL && v[0] != '\0')
		secret = strdup(v);
	if (cfg.http_port > 0 && (secret == NULL || strlen(secret) < 16))
		fatal("the HTTP API needs a secret of at least 16 characters (or --http-port 0)", "set=%s", LOGQ(what));
	return secret;
}

/*
 * Accounts (logins, pizza-admin, sign-up) when --acl-file is given: loaded
 * from the store, the password file's customers added, the admin secret
 * read.  Exits on failure.
 */
static void
accounts_start(struct service *s)
{
	char err[512];

	if (cfg.acl_file == NULL) {
		if (cfg.password_file != NULL || cfg.admin_secret_file != NULL || cfg.allow_signup)
			fatal("logins and accounts need --acl-file (the broker's ACL file gives a customer's role)", NULL);
		return;
	}
	if ((s->acl = aclfile_load(cfg.acl_file, err, sizeof(err))) == NULL)
		fatal("cannot read the ACL file", "err=%s", LOGQ(err));
	if ((accounts = accounts_new(s->store, mq, s->acl, s->token_secret, cfg.token_ttl_s)) == NULL)
		fatal("cannot load the accounts", NULL);
	if (cfg.password_file != NULL && accounts_seed(accounts, cfg.password_file) < 0)
		fatal("cannot read the password file", "path=%s", LOGQ(cfg.password_file));
	if (cfg.admin_secret_file != NULL) {
		if ((s->admin_secret = file_read_small(cfg.admin_secret_file, 4096)) == NULL)
			fatal("cannot read a secret file", "path=%s", LOGQ(cfg.admin_secret_file));
		s->admin_secret[strcspn(s->admin_secret, "\r\n")] = '\0';
		if (strlen(s->admin_secret) < 16)
			fatal("the admin secret needs at least 16 characters", "path=%s", LOGQ(cfg.admin_secret_file));
	}
	if ((s->signup_limit = ratelimit_new((double)cfg.signup_limit / 3600.0, (double)cfg.signup_limit, 10000)) == NULL)
		fatal("out of memory", NULL);
}

/* Starts the HTTP API when --http-port is not 0; exits when it cannot listen. */
static void
http_start(struct service *s)
{
	char err[256];

	if (cfg.http_port == 0)
		return;
	s->api.intake = intake;
	s->api.mq = mq;
	s->api.store = s->store;
	s->api.history_url = cfg.history_url;
	s->api.history_secret = s->history_secret;
	s->api.accounts = accounts;
	s->api.admin_secret = s->admin_secret;
	s->api.allow_signup = cfg.allow_signup;
	s->api.signup_limit = s->signup_limit;
	web_init(cfg.web_root, cfg.mqtt_ws_url);
	if (api_start(&s->api) != 0)
		fatal("cannot start the forwarder to order-history", NULL);
	s->http = httpd_start(cfg.http_bind, (int)cfg.http_port, API_MAX_BODY, api_handle, &s->api, err, sizeof(err));
	if (s->http == NULL)
		fatal("cannot start the HTTP API", "err=%s", LOGQ(err));
	httpd_rate_limit(s->http, (double)cfg.rate_limit, (double)cfg.rate_burst);
	httpd_routes(s->http, api_routes);
}

/*
 * The shared store's intake connection (rows_intake): client id
 * <client-id>-intake, Session Expiry 0, so that no session outlives the
 * instance.  Exits on failure.
 */
static void
intake_connection(struct service *s)
{
	struct svc_opts so = cfg.so;

	snprintf(s->intake_id, sizeof(s->intake_id), "%s-intake", cfg.so.client_id);
	so.client_id = s->intake_id;
	so.session_expiry_s = 0;
	if ((s->intake_consumer = consume_new(SVC, rows_intake, sizeof(rows_intake) / sizeof(rows_intake[0]), NULL)) ==
	    NULL)
		fatal("out of memory", NULL);
	intake_mq = svc_mq_new(&so, consume_message, s->intake_consumer);
	if (consume_attach(s->intake_consumer, intake_mq) != 0)
		fatal("cannot declare the subscriptions", NULL);
}

/*
 * Opens the store, creates the connection with its consumer, the intake
 * and the supervisor, connects and starts the HTTP API.  Exits on failure.
 */
static void
start(struct service *s)
{
	char err[256], label[300];

	if ((s->allow = allowlist_parse(cfg.callback_allow, err, sizeof(err))) == NULL) {
		fprintf(stderr, "%s: --callback-allow: %s\n", SVC, err);
		exit(2);
	}
	if (forward_check_urls(cfg.history_url, err, sizeof(err)) != 0) {
		fprintf(stderr, "%s: --history-url: %s\n", SVC, err);
		exit(2);
	}
	s->token_secret = secret_read(cfg.token_secret_file, "PIZZA_TOKEN_SECRET",
	    "--token-secret-file or PIZZA_TOKEN_SECRET (signs bearer tokens)");
	s->history_secret = secret_read(cfg.history_secret_file, "PIZZA_HISTORY_SECRET",
	    "--history-secret-file or PIZZA_HISTORY_SECRET (order-history's, for the reads)");
	if ((s->store = ostore_open(cfg.db_path)) == NULL)
		fatal("cannot open the order database", "db=%s", LOGQ(ostore_label(cfg.db_path, label, sizeof(label))));
	if ((shared_store = ostore_shared(s->store)))
		s->consumer = consume_new(SVC, rows_shared, sizeof(rows_shared) / sizeof(rows_shared[0]), NULL);
	else
		s->consumer = consume_new(SVC, rows, sizeof(rows) / sizeof(rows[0]), NULL);
	if (s->consumer == NULL)
		fatal("out of memory", NULL);
	mq = svc_mq_new(&cfg.so, consume_message, s->consumer);
	if (consume_attach(s->consumer, mq) != 0)
		fatal("cannot declare the subscriptions", NULL);
	if (shared_store)
		intake_connection(s);
	accounts_start(s);
	if ((s->outbox = ostore_outbox_new(s->store, mq, cfg.outbox_retry_ms)) == NULL)
		fatal("cannot start the outbox", NULL);
	if ((supervisor = supervise_new(s->store, s->outbox, cfg.accept_deadline_ms, cfg.ready_deadline_ms)) == NULL)
		fatal("out of memory", NULL);
	if ((intake = intake_new(s->store, s->outbox, s->allow)) == NULL)
		fatal("cannot start the intake", NULL);
	intake_limit(intake, (double)cfg.order_limit, (double)cfg.order_burst);
	/* a shared (PostgreSQL) outbox is never held: the instances each publish it */
	intake_first(intake, shared_store ? 0 : cfg.intake_first_ms);
	svc_metrics(mq);
	metric_gauge_fn("pizza_outbox_backlog", "Outbox messages the broker has not acknowledged yet", NULL, backlog,
	    s->outbox);
	metric_gauge_fn("pizza_intake_holding", "1 while the intake holds OrderPlaced back (--intake-first)", NULL,
	    holding, s->outbox);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	svc_mq_connect(mq, &cfg.so);
	if (intake_mq != NULL)
		svc_mq_connect(intake_mq, &cfg.so);
	http_start(s);
}

/* The main loop, until SIGINT or SIGTERM. */
static void
run(struct service *s)
{
	int64_t last_expire = 0;

	while (!svc_quit) {
		/*
		 * Publishing happens here, not on the request threads: woken by each
		 * commit (outbox_kick), and every 200 ms for anything a crash or an
		 * outage left in the outbox.
		 */
		outbox_flush(s->outbox);
		intake_tick(intake);
		supervise_tick(supervisor, mq_connected_for(mq));
		if (accounts != NULL)
			accounts_tick(accounts);
		svc_tick(mq);
		if (mono_ms() - last_expire > EXPIRE_EVERY_MS) {
			intake_expire_keys(intake, cfg.idempotency_ttl_h * 3600 * 1000);
			last_expire = mono_ms();
		}
		outbox_wait(s->outbox, 200);
	}
}

static void
stop(struct service *s)
{
	/* no new MQTT requests; those being placed finish and are answered on mq */
	if (intake_mq != NULL)
		mq_disconnect(intake_mq, 1000);
	httpd_stop(s->http);
	api_stop(&s->api); /* after the server, which waited for the forwards in flight */
	/* after the HTTP server (whose requests may still be queued), before the broker goes */
	intake_stop(intake);
	outbox_hold(s->outbox, 0); /* what the intake held back goes now */
	log_info("shutting down", "outbox_backlog=%lld", (long long)outbox_backlog(s->outbox));
	outbox_flush(s->outbox);
	mq_disconnect(mq, 2000);
	accounts_free(accounts); /* no answer from the broker can come now */
	accounts = NULL;
	mq_free(mq);
	mq_free(intake_mq);
	intake_free(intake);
	supervise_free(supervisor);
	consume_free(s->consumer);
	consume_free(s->intake_consumer);
	outbox_free(s->outbox);
	ostore_close(s->store);
	allowlist_free(s->allow);
	free(s->token_secret);
	if (s->admin_secret != NULL)
		explicit_bzero(s->admin_secret, strlen(s->admin_secret));
	free(s->admin_secret);
	aclfile_free(s->acl);
	ratelimit_free(s->signup_limit);
	free(s->history_secret);
	curl_global_cleanup();
}

int
main(int argc, char **argv)
{
	struct service s;
	char http_addr[300], label[300];

	memset(&s, 0, sizeof(s));
	parse_args(argc, argv);
	svc_signals();
	start(&s);
	snprintf(http_addr, sizeof(http_addr), "%s:%d", cfg.http_bind, s.http != NULL ? httpd_port(s.http) : 0);
	svc_ready("db=%s http=%s", LOGQ(ostore_label(cfg.db_path, label, sizeof(label))), LOGQ(http_addr));
	run(&s);
	svc_stopping();
	stop(&s);
	return 0;
}

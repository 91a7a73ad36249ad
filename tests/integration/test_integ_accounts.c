/*
 * Accounts managed while the backend runs (issue 15): pizza-admin, devices,
 * revocation and self sign-up, against a real broker (mosquitto's dynamic
 * security plugin) and the real order-service, nothing restarted:
 *
 *   1. a user added with pizza-admin orders at once over MQTT and HTTP; once
 *      deleted, their live connection is closed and both front doors refuse;
 *   2. devices: each login with a device name gets its own broker account
 *      bound to its client id; a revoked device is dropped and refused, the
 *      other keeps working;
 *   3. a password change refuses the tokens issued before it and the old
 *      password;
 *   4. token revoke: one token, or every token of a user;
 *   5. sign-up: off by default; with --allow-signup a password policy,
 *      duplicates and a per-address limit;
 *   6. bad input to pizza-admin: one line saying what is wrong, non-zero exit.
 *
 * pizza-admin is the real binary, given --http-url and --admin-secret-file
 * as an operator would; what is asserted is what it prints, what a phone's
 * MQTT connection sees and what the HTTP API answers.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <MQTTAsync.h>
#include <cmocka.h>
#include <curl/curl.h>
#include <jansson.h>

#include "harness.h"
#include "token.h"
#include "topic.h"
#include "util.h"

#define WAIT_MS 10000 /* the longest any single expected event may take */

static struct stack st;

static int
setup(void **state)
{
	(void)state;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	if (h_stack_start(&st, "accounts") != 0 || h_service(&st, "order-service", "order-service", NULL) < 0)
		return -1;
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	int rc = h_stack_stop(&st);
	curl_global_cleanup();
	return rc;
}

/* ---- pizza-admin, as an operator runs it ------------------------------------ */

/*
 * Runs PIZZA_BIN/pizza-admin with args (NULL ended) and, when common, the
 * stack's --http-url and --admin-secret-file; input (may be NULL) is its
 * standard input.  Its stdout and stderr go into a new string *out.
 * Returns the exit status, or -1.  Nothing of make run's (run/env, its
 * admin secret) can leak in: PIZZA_RUN_DIR names a folder that does not exist.
 */
static int
admin_argv(const char *input, char **out, int common, const char *const *args)
{
	const char *bin = getenv("PIZZA_BIN");
	char path[600], url[64], secret[600], rundir[600], *argv[32];
	int in[2], outp[2], argc = 0, status;
	size_t len = 0, cap = 4096;
	char *buf = malloc(cap);
	pid_t pid;

	snprintf(path, sizeof(path), "%s/pizza-admin", bin != NULL ? bin : "./build/bin");
	snprintf(url, sizeof(url), "http://127.0.0.1:%d", st.http_port);
	snprintf(secret, sizeof(secret), "%s/secrets/admin.secret", st.dir);
	snprintf(rundir, sizeof(rundir), "%s/no-run-dir", st.dir);
	argv[argc++] = path;
	for (int i = 0; args[i] != NULL && argc < 26; i++)
		argv[argc++] = (char *)args[i];
	if (common) {
		argv[argc++] = (char *)"--http-url";
		argv[argc++] = url;
		argv[argc++] = (char *)"--admin-secret-file";
		argv[argc++] = secret;
	}
	argv[argc] = NULL;
	if (buf == NULL || pipe(in) != 0) {
		free(buf);
		return -1;
	}
	if (pipe(outp) != 0) {
		close(in[0]);
		close(in[1]);
		free(buf);
		return -1;
	}
	if ((pid = fork()) == 0) {
		dup2(in[0], 0);
		dup2(outp[1], 1);
		dup2(outp[1], 2);
		close_range(3, ~0U, 0);
		unsetenv("PIZZA_HTTP_URL");
		unsetenv("PIZZA_HTTP_PORT");
		unsetenv("PIZZA_ADMIN_SECRET_FILE");
		setenv("PIZZA_RUN_DIR", rundir, 1);
		execv(path, argv);
		_exit(127);
	}
	close(in[0]);
	close(outp[1]);
	if (input != NULL) {
		/* it may have exited already (bad arguments): a write error, not a SIGPIPE of the test */
		void (*was)(int) = signal(SIGPIPE, SIG_IGN);
		if (write(in[1], input, strlen(input)) < 0)
			fprintf(stderr, "pizza-admin did not take its input\n");
		signal(SIGPIPE, was);
	}
	close(in[1]);
	for (;;) {
		ssize_t r;
		if (len + 1 >= cap) {
			char *n = realloc(buf, cap * 2);
			if (n == NULL)
				break;
			buf = n;
			cap *= 2;
		}
		if ((r = read(outp[0], buf + len, cap - len - 1)) <= 0)
			break;
		len += (size_t)r;
	}
	buf[len] = '\0';
	close(outp[0]);
	waitpid(pid, &status, 0);
	*out = buf;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* pizza-admin ARGS... against the stack, stdin from input (may be NULL); fails the test unless it exits 0. */
#define ADMIN_OK(input, out, ...)                                                                    \
	do {                                                                                         \
		const char *const args_[] = { __VA_ARGS__, NULL };                                   \
		int rc_ = admin_argv((input), (out), 1, args_);                                      \
		if (rc_ != 0)                                                                        \
			fail_msg("pizza-admin %s %s: exit %d: %s", args_[0], args_[1], rc_, *(out)); \
	} while (0)

/* Adds user with password through pizza-admin user add --password-stdin. */
static void
add_user(const char *user, const char *password)
{
	char input[300], want[100], *out = NULL;

	snprintf(input, sizeof(input), "%s\n", password);
	ADMIN_OK(input, &out, "user", "add", user, "--password-stdin");
	snprintf(want, sizeof(want), "added %s\n", user);
	assert_string_equal(out, want);
	free(out);
}

/* ---- HTTP ------------------------------------------------------------------- */

struct reply {
	long status;
	char body[4096];
	char retry_after[16];
};

/* One request to order-service; token (may be NULL) goes as a bearer token. */
static struct reply
call(const char *method, const char *path, const char *token, const char *body)
{
	struct reply r;
	struct h_reply hr;
	char url[512], auth[TOKEN_MAX + 32];
	const char *headers[] = { "Content-Type: application/json", token != NULL ? auth : NULL, NULL };

	memset(&r, 0, sizeof(r));
	snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", st.http_port, path);
	if (token != NULL)
		snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
	r.status = h_http(method, url, headers, body, &hr);
	str_copy(r.body, sizeof(r.body), hr.body);
	h_reply_header(&hr, "Retry-After", r.retry_after, sizeof(r.retry_after));
	h_reply_free(&hr);
	return r;
}

static void
status_is(const struct reply *r, long want, const char *what)
{
	if (r->status != want)
		fail_msg("%s: want HTTP %ld, got %ld: %s", what, want, r->status, r->body);
}

/* The error code of an error answer is code. */
static void
error_is(const struct reply *r, long status, const char *code, const char *what)
{
	char want[64];

	status_is(r, status, what);
	snprintf(want, sizeof(want), "\"error\":\"%s\"", code);
	if (strstr(r->body, want) == NULL)
		fail_msg("%s: want error %s, got %s", what, code, r->body);
}

/* The string member name of o (borrowed), or "" when there is none. */
static const char *
field(const json_t *o, const char *name)
{
	const char *v = json_string_value(json_object_get(o, name));

	return v != NULL ? v : "";
}

/* What a login with a device answers. */
struct login {
	char token[TOKEN_MAX];
	char mqtt_user[80], mqtt_password[80], client_id[80];
};

/* POST /v1/login for user (with device, or NULL); returns its status and fills *l on a 200. */
static long
login(const char *user, const char *password, const char *device, struct login *l)
{
	json_t *req = json_pack("{s:s, s:s}", "user_id", user, "password", password), *o, *m;
	char *body;
	struct reply r;

	if (device != NULL)
		json_object_set_new(req, "device", json_string(device));
	body = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	r = call("POST", "/v1/login", NULL, body);
	free(body);
	memset(l, 0, sizeof(*l));
	if (r.status != 200)
		return r.status;
	o = json_loads(r.body, 0, NULL);
	m = json_object_get(o, "mqtt");
	str_copy(l->token, sizeof(l->token), field(o, "token"));
	str_copy(l->mqtt_user, sizeof(l->mqtt_user), field(m, "username"));
	str_copy(l->mqtt_password, sizeof(l->mqtt_password), field(m, "password"));
	str_copy(l->client_id, sizeof(l->client_id), field(m, "client_id"));
	json_decref(o);
	if (l->token[0] == '\0')
		fail_msg("login of %s answered 200 without a token: %s", user, r.body);
	return r.status;
}

/* Logs in (must succeed) and returns what came. */
static struct login
login_ok(const char *user, const char *password, const char *device)
{
	struct login l;
	long s = login(user, password, device, &l);

	if (s != 200)
		fail_msg("login of %s%s%s: want HTTP 200, got %ld", user, device != NULL ? " on " : "",
		    device != NULL ? device : "", s);
	return l;
}

/* POST /v1/orders with token: its status. */
static long
http_order(const char *token)
{
	struct reply r = call("POST", "/v1/orders", token, "{\"items\":[{\"sku\":\"margherita\",\"qty\":1}]}");

	if (r.status != 202 && r.status != 401)
		fail_msg("POST /v1/orders: unexpected HTTP %ld: %s", r.status, r.body);
	if (r.status == 202 && strstr(r.body, "\"status\":\"accepted\"") == NULL)
		fail_msg("POST /v1/orders: 202 without an accepted order: %s", r.body);
	return r.status;
}

/* ---- a phone's MQTT connection ---------------------------------------------- */

struct phone {
	struct mq *mq;
	char user[NAME_MAX_LEN + 1];
	char reply_topic[TOPIC_MAX];
	pthread_mutex_t lock;
	char corr[64];     /* the last reply's correlation data */
	char answer[1024]; /* and its payload */
};

static void
on_message(void *arg, const struct mq_message *m)
{
	struct phone *p = arg;

	if (strcmp(m->topic, p->reply_topic) != 0)
		return;
	pthread_mutex_lock(&p->lock);
	snprintf(p->corr, sizeof(p->corr), "%.*s", (int)(m->correlation_len < 63 ? m->correlation_len : 63),
	    m->correlation != NULL ? (const char *)m->correlation : "");
	snprintf(p->answer, sizeof(p->answer), "%.*s", (int)(m->len < 1023 ? m->len : 1023), m->payload);
	pthread_mutex_unlock(&p->lock);
}

/*
 * Connects to the stack's broker as username with password and client_id,
 * subscribed to the replies of user's orders.  Returns the phone, or NULL
 * with the broker's reason in err.
 */
static struct phone *
phone_connect(const char *user, const char *username, const char *password, const char *client_id, char *err, size_t n)
{
	struct phone *p = calloc(1, sizeof(*p));
	struct mq_config cfg;
	char url[64];

	assert_non_null(p);
	pthread_mutex_init(&p->lock, NULL);
	str_copy(p->user, sizeof(p->user), user);
	topic_reply(p->reply_topic, sizeof(p->reply_topic), user, client_id);
	snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", st.port);
	memset(&cfg, 0, sizeof(cfg));
	cfg.url = url;
	cfg.client_id = client_id;
	cfg.username = username;
	cfg.password = password;
	cfg.clean_start = 1;
	snprintf(err, n, "cannot subscribe");
	if ((p->mq = mq_new(&cfg, on_message, p)) == NULL || mq_subscribe(p->mq, p->reply_topic, 1, 0) != 0 ||
	    mq_connect(p->mq, 5000, err, n) != 0) {
		mq_free(p->mq);
		pthread_mutex_destroy(&p->lock);
		free(p);
		return NULL;
	}
	return p;
}

static void
phone_free(struct phone *p)
{
	if (p == NULL)
		return;
	mq_disconnect(p->mq, 500);
	mq_free(p->mq);
	pthread_mutex_destroy(&p->lock);
	free(p);
}

/* Connects (must succeed). */
static struct phone *
phone_ok(const char *user, const char *username, const char *password, const char *client_id)
{
	char err[512];
	struct phone *p = phone_connect(user, username, password, client_id, err, sizeof(err));

	if (p == NULL)
		fail_msg("%s (client id %s) cannot connect: %s", username, client_id, err);
	return p;
}

/* Connecting is refused by the broker, which says the login is not accepted. */
static void
phone_refused(const char *user, const char *username, const char *password, const char *client_id)
{
	char err[512];
	struct phone *p = phone_connect(user, username, password, client_id, err, sizeof(err));

	if (p != NULL) {
		phone_free(p);
		fail_msg("%s (client id %s) could still connect", username, client_id);
	}
	if (strstr(err, "refused the login") == NULL)
		fail_msg("%s (client id %s): want a refused login, got: %s", username, client_id, err);
}

/* Orders a margherita over MQTT request/response, as a phone does; waits for the answer and copies the order id. */
static void
phone_order(struct phone *p, const char *corr, char *order_id, size_t n)
{
	char topic[TOPIC_MAX], answer[1024] = "";
	const char *body = "{\"items\":[{\"sku\":\"margherita\",\"qty\":1}]}";
	struct mq_publish pub;
	int64_t deadline = mono_ms() + WAIT_MS;
	json_t *o;

	topic_new(topic, sizeof(topic), p->user);
	memset(&pub, 0, sizeof(pub));
	pub.topic = topic;
	pub.payload = body;
	pub.len = strlen(body);
	pub.qos = 1;
	pub.response_topic = p->reply_topic;
	pub.correlation = corr;
	pub.correlation_len = strlen(corr);
	assert_int_equal(mq_publish(p->mq, &pub), 0);
	while (answer[0] == '\0' && mono_ms() < deadline) {
		pthread_mutex_lock(&p->lock);
		if (strcmp(p->corr, corr) == 0)
			str_copy(answer, sizeof(answer), p->answer);
		pthread_mutex_unlock(&p->lock);
		if (answer[0] == '\0')
			h_sleep(10);
	}
	if (answer[0] == '\0')
		fail_msg("%s: no answer to order %s within %d ms", p->user, corr, WAIT_MS);
	o = json_loads(answer, 0, NULL);
	if (json_string_value(json_object_get(o, "order_id")) == NULL || strcmp(field(o, "status"), "accepted") != 0)
		fail_msg("%s: order %s not accepted: %s", p->user, corr, answer);
	str_copy(order_id, n, json_string_value(json_object_get(o, "order_id")));
	json_decref(o);
}

/*
 * A live connection that tells when the broker closes it.  mq (and so
 * phone-sim) is never told of a DISCONNECT the broker sends, such as the
 * dynamic security plugin's "administrative action": paho 1.3.12 calls
 * its disconnected callback but not connectionLost (eclipse-paho/
 * paho.mqtt.c#1619), and mq only logs the first.  So this client is paho's
 * own, and records both.
 */
struct live {
	MQTTAsync c;
	int state;  /* LIVE_* */
	int reason; /* the broker's reason code when it closed the connection, else -1 */
};

enum { LIVE_CONNECTING, LIVE_UP, LIVE_REFUSED, LIVE_DROPPED };

static int
live_arrived(void *ctx, char *topic, int len, MQTTAsync_message *m)
{
	(void)ctx;
	(void)len;
	MQTTAsync_freeMessage(&m);
	MQTTAsync_free(topic);
	return 1;
}

static void
live_up(void *ctx, MQTTAsync_successData5 *r)
{
	(void)r;
	__atomic_store_n(&((struct live *)ctx)->state, LIVE_UP, __ATOMIC_SEQ_CST);
}

static void
live_refused(void *ctx, MQTTAsync_failureData5 *r)
{
	(void)r;
	__atomic_store_n(&((struct live *)ctx)->state, LIVE_REFUSED, __ATOMIC_SEQ_CST);
}

static void
live_closed(void *ctx, MQTTProperties *props, enum MQTTReasonCodes rc)
{
	struct live *l = ctx;

	(void)props;
	__atomic_store_n(&l->reason, (int)rc, __ATOMIC_SEQ_CST);
	__atomic_store_n(&l->state, LIVE_DROPPED, __ATOMIC_SEQ_CST);
}

static void
live_lost(void *ctx, char *cause)
{
	(void)cause;
	__atomic_store_n(&((struct live *)ctx)->state, LIVE_DROPPED, __ATOMIC_SEQ_CST);
}

/* Waits up to ms for l's state to leave from; returns the state then. */
static int
live_wait(struct live *l, int from, int ms)
{
	int64_t deadline = mono_ms() + ms;
	int s;

	while ((s = __atomic_load_n(&l->state, __ATOMIC_SEQ_CST)) == from && mono_ms() < deadline)
		h_sleep(10);
	return s;
}

/* Connects as username/password with client_id (must succeed): a device or phone that stays online. */
static struct live *
live_connect(const char *username, const char *password, const char *client_id)
{
	MQTTAsync_createOptions co = MQTTAsync_createOptions_initializer5;
	MQTTAsync_connectOptions opts = MQTTAsync_connectOptions_initializer5;
	struct live *l = calloc(1, sizeof(*l));
	char url[64];

	assert_non_null(l);
	l->reason = -1;
	snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", st.port);
	assert_int_equal(MQTTAsync_createWithOptions(&l->c, url, client_id, MQTTCLIENT_PERSISTENCE_NONE, NULL, &co),
	    MQTTASYNC_SUCCESS);
	MQTTAsync_setCallbacks(l->c, l, live_lost, live_arrived, NULL);
	MQTTAsync_setDisconnected(l->c, l, live_closed);
	opts.keepAliveInterval = 60; /* a drop must come from the broker's action, not a missed ping */
	opts.cleanstart = 1;
	opts.username = username;
	opts.password = password;
	opts.context = l;
	opts.onSuccess5 = live_up;
	opts.onFailure5 = live_refused;
	assert_int_equal(MQTTAsync_connect(l->c, &opts), MQTTASYNC_SUCCESS);
	if (live_wait(l, LIVE_CONNECTING, WAIT_MS) != LIVE_UP)
		fail_msg("%s (client id %s) cannot stay connected", username, client_id);
	return l;
}

/* Waits until the broker has closed l's connection, saying it was an administrative action. */
static void
live_wait_dropped(struct live *l, const char *who)
{
	int s = live_wait(l, LIVE_UP, WAIT_MS);

	if (s != LIVE_DROPPED)
		fail_msg("%s: the broker did not close the live connection within %d ms", who, WAIT_MS);
	if (l->reason != MQTTREASONCODE_ADMINISTRATIVE_ACTION)
		fail_msg(
		    "%s: the connection was closed with reason %d, not administrative action (0x98)", who, l->reason);
}

static void
live_free(struct live *l)
{
	MQTTAsync_disconnectOptions d = MQTTAsync_disconnectOptions_initializer5;

	if (l == NULL)
		return;
	if (MQTTAsync_isConnected(l->c))
		MQTTAsync_disconnect(l->c, &d);
	MQTTAsync_destroy(&l->c);
	free(l);
}

/* Number of lines of text (each ending in a newline). */
static int
lines(const char *text)
{
	int n = 0;

	for (const char *c = text; *c != '\0'; c++)
		n += *c == '\n';
	return n;
}

/* text has a line that starts with word followed by a space. */
static int
has_row(const char *text, const char *word)
{
	size_t n = strlen(word);

	for (const char *l = text; l != NULL && *l != '\0'; l = strchr(l, '\n') != NULL ? strchr(l, '\n') + 1 : NULL)
		if (strncmp(l, word, n) == 0 && l[n] == ' ')
			return 1;
	return 0;
}

/* ---- 1. a user added and deleted while everything runs ------------------------ */

static void
test_user_added_orders_at_once_deleted_is_refused(void **state)
{
	const char *pw = "Pepperoni-42-crust";
	char id[NAME_MAX_LEN + 1], *out = NULL;
	struct phone *p;
	struct live *online;
	struct login l;
	int64_t t0, mqtt_ms, http_ms;

	(void)state;
	t0 = mono_ms();
	add_user("dave", pw);

	/* over MQTT, with the password just given: no restart of anything */
	p = phone_ok("dave", "dave", pw, "dave-phone-test");
	phone_order(p, "dave-1", id, sizeof(id));
	mqtt_ms = mono_ms() - t0;
	phone_free(p);
	/* over HTTP */
	l = login_ok("dave", pw, NULL);
	assert_int_equal(http_order(l.token), 202);
	http_ms = mono_ms() - t0;
	print_message("pizza-admin user add to dave's first order: %lld ms over MQTT, %lld ms over HTTP\n",
	    (long long)mqtt_ms, (long long)http_ms);
	assert_true(http_ms < 5000);
	/* nothing was restarted: order-service started once, the broker is the first one */
	assert_int_equal(h_wait_log(&st, "order-service", "msg=\"ready\"", 2, 0), -1);
	assert_true(h_alive(&st, "order-service"));
	assert_int_equal(kill(st.broker, 0), 0);

	ADMIN_OK(NULL, &out, "user", "list");
	if (!has_row(out, "dave") || !has_row(out, "USER"))
		fail_msg("pizza-admin user list does not show dave:\n%s", out);
	free(out);

	/* deleted: the live connection is closed, both front doors refuse */
	online = live_connect("dave", pw, "dave-online");
	ADMIN_OK(NULL, &out, "user", "del", "dave");
	assert_string_equal(out, "deleted dave; their connections are closed\n");
	free(out);
	live_wait_dropped(online, "dave");
	live_free(online);
	phone_refused("dave", "dave", pw, "dave-phone-test");
	assert_int_equal(login("dave", pw, NULL, &(struct login){ 0 }), 401);
	assert_int_equal(http_order(l.token), 401);

	ADMIN_OK(NULL, &out, "user", "list");
	if (has_row(out, "dave"))
		fail_msg("pizza-admin user list still shows dave:\n%s", out);
	free(out);
}

/* ---- 2. devices ------------------------------------------------------------------ */

static void
test_devices_own_credentials_revocation(void **state)
{
	const char *pw = "Quattro-Formaggi-7";
	struct login phone, tablet;
	struct phone *ph, *tb;
	struct live *online;
	char id[NAME_MAX_LEN + 1], *out = NULL;

	(void)state;
	add_user("erin", pw);
	phone = login_ok("erin", pw, "phone");
	tablet = login_ok("erin", pw, "tablet");
	assert_string_equal(phone.mqtt_user, "erin.phone");
	assert_string_equal(phone.client_id, "phone-erin-phone");
	assert_string_equal(tablet.mqtt_user, "erin.tablet");
	assert_string_equal(tablet.client_id, "phone-erin-tablet");
	assert_true(strlen(phone.mqtt_password) >= 32);
	assert_string_not_equal(phone.mqtt_password, tablet.mqtt_password);
	assert_string_not_equal(phone.token, tablet.token);

	/* each device connects with what its login answered, bound to its client id */
	ph = phone_ok("erin", phone.mqtt_user, phone.mqtt_password, phone.client_id);
	tb = phone_ok("erin", tablet.mqtt_user, tablet.mqtt_password, tablet.client_id);
	phone_refused("erin", phone.mqtt_user, phone.mqtt_password, "phone-erin-stolen");
	phone_refused("erin", tablet.mqtt_user, tablet.mqtt_password, phone.client_id);
	phone_refused("erin", phone.mqtt_user, "not-the-password", phone.client_id);
	phone_order(ph, "erin-phone-1", id, sizeof(id)); /* the refused attempts did not knock the phone off */
	phone_free(ph);
	online = live_connect(phone.mqtt_user, phone.mqtt_password, phone.client_id); /* the phone, online */

	ADMIN_OK(NULL, &out, "device", "list", "erin");
	if (!has_row(out, "phone") || !has_row(out, "tablet") || strstr(out, "phone-erin-phone\n") == NULL ||
	    strstr(out, "phone-erin-tablet\n") == NULL)
		fail_msg("pizza-admin device list erin does not show both devices:\n%s", out);
	free(out);

	/* the phone is revoked: dropped at once, refused, its token refused */
	ADMIN_OK(NULL, &out, "device", "revoke", "erin", "phone");
	assert_string_equal(out, "revoked erin/phone\n");
	free(out);
	assert_int_equal(http_order(phone.token), 401);
	live_wait_dropped(online, "erin's phone");
	live_free(online);
	phone_refused("erin", phone.mqtt_user, phone.mqtt_password, phone.client_id);

	/* the tablet keeps its connection (an order over it is answered) and its token */
	assert_int_equal(mq_reconnects(tb->mq), 0);
	phone_order(tb, "erin-tablet-1", id, sizeof(id));
	assert_int_equal(http_order(tablet.token), 202);
	ADMIN_OK(NULL, &out, "device", "list", "erin");
	if (has_row(out, "phone") || !has_row(out, "tablet"))
		fail_msg("after the revocation, device list should show the tablet only:\n%s", out);
	free(out);
	phone_free(tb);
}

/* ---- 3. a password change --------------------------------------------------------- */

static void
test_password_change_refuses_old_tokens(void **state)
{
	const char *old_pw = "Hawaiian-is-fine-1", *new_pw = "Calzone-Tuesday-99";
	struct login plain, dev, dev2, fresh;
	struct phone *p;
	char *out = NULL, input[64], id[NAME_MAX_LEN + 1];

	(void)state;
	add_user("frank", old_pw);
	plain = login_ok("frank", old_pw, NULL);
	dev = login_ok("frank", old_pw, "phone");
	assert_int_equal(http_order(plain.token), 202);
	assert_int_equal(http_order(dev.token), 202);

	snprintf(input, sizeof(input), "%s\n", new_pw);
	ADMIN_OK(input, &out, "user", "passwd", "frank", "--password-stdin");
	assert_string_equal(out, "changed the password of frank; their tokens and devices are signed out\n");
	free(out);

	/* the new password works at once (within the second of the change), for a device and for a token */
	fresh = login_ok("frank", new_pw, "phone");
	assert_int_equal(http_order(fresh.token), 202);
	dev2 = fresh;
	fresh = login_ok("frank", new_pw, NULL);
	assert_int_equal(http_order(fresh.token), 202);

	/* what came before the change is refused */
	assert_int_equal(http_order(plain.token), 401);
	assert_int_equal(http_order(dev.token), 401);
	assert_int_equal(login("frank", old_pw, NULL, &fresh), 401);
	phone_refused("frank", "frank", old_pw, "frank-test");
	phone_refused("frank", dev.mqtt_user, dev.mqtt_password, dev.client_id);

	p = phone_ok("frank", dev2.mqtt_user, dev2.mqtt_password, dev2.client_id);
	phone_order(p, "frank-1", id, sizeof(id));
	phone_free(p);
	p = phone_ok("frank", "frank", new_pw, "frank-test");
	phone_free(p);
}

/* ---- 4. token revocation ----------------------------------------------------------- */

static void
test_token_revoke_one_or_all(void **state)
{
	const char *pw = "Diavola-extra-hot-3";
	struct login a, b, again;
	char *out = NULL;

	(void)state;
	add_user("gina", pw);
	a = login_ok("gina", pw, NULL);
	b = login_ok("gina", pw, "laptop");
	assert_int_equal(http_order(a.token), 202);
	assert_int_equal(http_order(b.token), 202);

	/* one token: that one only */
	ADMIN_OK(NULL, &out, "token", "revoke", a.token);
	assert_string_equal(out, "revoked the token\n");
	free(out);
	assert_int_equal(http_order(a.token), 401);
	assert_int_equal(http_order(b.token), 202);

	/* every token of the user */
	ADMIN_OK(NULL, &out, "token", "revoke", "--user", "gina");
	assert_string_equal(out, "revoked every token of gina\n");
	free(out);
	assert_int_equal(http_order(b.token), 401);

	/* logging in again works, with and without a device */
	again = login_ok("gina", pw, NULL);
	assert_int_equal(http_order(again.token), 202);
	again = login_ok("gina", pw, "laptop");
	assert_int_equal(http_order(again.token), 202);

	/* a token that is not one, or revoked already, is refused with a clear message */
	{
		const char *const args[] = { "token", "revoke", "v2.gina..1.2.nonsense", NULL };
		const char *const twice[] = { "token", "revoke", a.token, NULL };
		assert_int_equal(admin_argv(NULL, &out, 1, args), 1);
		assert_string_equal(out,
		    "pizza-admin token revoke: not a token this server accepts (malformed, expired, of no "
		    "user, or revoked already)\n");
		free(out);
		assert_int_equal(admin_argv(NULL, &out, 1, twice), 1);
		assert_non_null(strstr(out, "not a token this server accepts"));
		free(out);
	}
}

/* ---- 5. self sign-up ---------------------------------------------------------------- */

static struct reply
signup(const char *user, const char *password)
{
	char body[256];

	snprintf(body, sizeof(body), "{\"user_id\":\"%s\",\"password\":\"%s\"}", user, password);
	return call("POST", "/v1/users", NULL, body);
}

static void
test_signup(void **state)
{
	struct reply r;
	struct login l;

	(void)state;
	/* off by default */
	r = signup("hank", "Margherita-4-ever");
	error_is(&r, 403, "forbidden", "sign-up without --allow-signup");
	assert_int_equal(login("hank", "Margherita-4-ever", NULL, &l), 401);

	/* turned on: the same broker, order-service started with --allow-signup */
	h_signal(&st, "order-service", SIGTERM);
	assert_true(h_service(&st, "order-service-signup", "order-service", "--allow-signup", NULL) >= 0);

	r = signup("hank", "short");
	error_is(&r, 422, "weak_password", "a weak password"); /* 1st from this address */
	r = signup("hank", "Margherita-4-ever");               /* 2nd */
	status_is(&r, 201, "a good sign-up");
	l = login_ok("hank", "Margherita-4-ever", NULL);
	assert_int_equal(http_order(l.token), 202);
	r = signup("hank", "Another-good-one-5"); /* 3rd */
	error_is(&r, 409, "conflict", "the same user id again");
	assert_int_equal(login("hank", "Another-good-one-5", NULL, &l), 401);
	r = signup("ivy", "Funghi-and-olives-6"); /* 4th */
	status_is(&r, 201, "the 4th sign-up");
	r = signup("jack", "Capricciosa-slice-7"); /* 5th */
	status_is(&r, 201, "the 5th sign-up");
	r = signup("kim", "Marinara-garlic-88"); /* 6th: over --signup-limit 5 per hour */
	error_is(&r, 429, "too_many_requests", "the 6th sign-up from one address");
	assert_true(atoi(r.retry_after) > 0);
	assert_int_equal(login("kim", "Marinara-garlic-88", NULL, &l), 401);
}

/* ---- 6. bad input to pizza-admin ------------------------------------------------------ */

/* pizza-admin args: exits with want and prints one line holding needle. */
static void
admin_says(int common, int want, const char *needle, const char *const *args)
{
	char *out = NULL;
	int rc = admin_argv("x\n", &out, common, args);

	if (rc != want || lines(out) != 1 || strstr(out, needle) == NULL)
		fail_msg("pizza-admin %s %s %s: want exit %d and one line with '%s', got exit %d:\n%s", args[0],
		    args[1] != NULL ? args[1] : "", args[1] != NULL && args[2] != NULL ? args[2] : "", want, needle, rc,
		    out);
	free(out);
}

static void
test_admin_bad_input(void **state)
{
	char missing[600], wrong[600], cmd[700];
	const char *const unknown_cmd[] = { "frobnicate", NULL };
	const char *const unknown_sub[] = { "user", "frobnicate", "dave", NULL };
	const char *const unknown_dev[] = { "device", "wipe", "dave", NULL };
	const char *const bad_user[] = { "user", "add", "no such/user!", "--password-stdin", NULL };
	const char *const bad_del[] = { "user", "del", "../etc", NULL };
	const char *const bad_device[] = { "device", "revoke", "dave", "a.b", NULL };
	const char *const no_secret[] = { "user", "list", "--http-url", cmd, "--admin-secret-file", missing, NULL };
	const char *const default_secret[] = { "user", "list", "--http-url", cmd, NULL };
	const char *const bad_secret[] = { "user", "list", "--http-url", cmd, "--admin-secret-file", wrong, NULL };
	const char *const bad_secret_del[] = { "user", "del", "alice", "--http-url", cmd, "--admin-secret-file", wrong,
		NULL };
	char *out = NULL;
	FILE *f;

	(void)state;
	admin_says(1, 2, "unknown command 'frobnicate'", unknown_cmd);
	admin_says(1, 2, "usage: pizza-admin user add|del|passwd USER", unknown_sub);
	admin_says(1, 2, "usage: pizza-admin device list USER", unknown_dev);
	admin_says(1, 2, "a user id is 1-64 characters", bad_user);
	admin_says(1, 2, "a user id is 1-64 characters", bad_del);
	admin_says(1, 2, "device names are 1-64 characters", bad_device);

	snprintf(cmd, sizeof(cmd), "http://127.0.0.1:%d", st.http_port);
	snprintf(missing, sizeof(missing), "%s/secrets/no-such.secret", st.dir);
	admin_says(0, 1, "cannot read the admin secret", no_secret);
	admin_says(0, 1, "give --admin-secret-file", default_secret); /* no make run here: its default is absent */

	snprintf(wrong, sizeof(wrong), "%s/secrets/wrong.secret", st.dir);
	assert_non_null(f = fopen(wrong, "w"));
	fprintf(f, "not-the-admin-secret-at-all\n");
	fclose(f);
	admin_says(0, 1, "the admin secret was refused", bad_secret);
	admin_says(0, 1, "the admin secret was refused", bad_secret_del);

	/* nothing changed: alice (a demo user) is still there */
	ADMIN_OK(NULL, &out, "user", "list");
	if (!has_row(out, "alice"))
		fail_msg("alice is gone after refused commands:\n%s", out);
	free(out);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_user_added_orders_at_once_deleted_is_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_devices_own_credentials_revocation, setup, teardown),
		cmocka_unit_test_setup_teardown(test_password_change_refuses_old_tokens, setup, teardown),
		cmocka_unit_test_setup_teardown(test_token_revoke_one_or_all, setup, teardown),
		cmocka_unit_test_setup_teardown(test_signup, setup, teardown),
		cmocka_unit_test_setup_teardown(test_admin_bad_input, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

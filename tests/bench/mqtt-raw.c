/*
 * mqtt-raw - the broker's raw ceiling, which every figure of `make bench`
 * is divided by.
 *
 *   mqtt-raw --url tcp://127.0.0.1:PORT --user bench --password-file FILE
 *       [--topic bench/raw] [--size 350] [--messages N | --duration S]
 *       [--rate R] [--window N] [--json]
 *
 * One paho publisher, one paho subscriber, one mosquitto between them:
 * MQTT 5, QoS 1 both ways, clean start, nothing else.  No JSON codec, no
 * store, no logging: whatever the pipeline does beyond moving a message is
 * what its figures lose against this one.
 *
 * The publisher keeps the broker's whole in-flight window busy (its Receive
 * Maximum, from the CONNACK), or paces itself at --rate.  Each payload opens
 * with a 24-byte header: a magic, this run's id, a sequence number and the
 * CLOCK_MONOTONIC time it was sent; the subscriber takes latency as its
 * receive time minus that (one machine, one clock).  The rest of the payload
 * is filler up to --size, the size of our events.
 *
 * Shape: the publisher runs in a child process, the subscriber in this
 * one.  Both clients in one process was measured too, interleaved with this
 * shape on the 2-core bench machine, and gave two thirds of the ceiling or
 * less (medians 10.6k against 15.6k deliveries/s).  The profile says why:
 * each publish searches paho's lists of messages in flight for a free
 * packet id (O(window)) under paho's process-wide lock, and in one process
 * that lock and paho's single receive thread serve the subscriber too.
 * --window 100 gave the same ceiling in this shape, with shorter queues.
 *
 * Exit status: 0 every message delivered; 1 a runtime failure (cannot
 * connect, refused, connection lost) or a message lost; 2 bad usage.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <MQTTAsync.h>

#define PROG "mqtt-raw"

#define NS 1000000000LL
#define HDR_MAGIC 0x31574152u /* "RAW1" as a little-endian word */
#define HDR_LEN 24            /* magic u32, run u32, seq u64, sent ns i64 */
#define MAX_SIZE (1024 * 1024)
/* 16 bytes of bookkeeping a message: 800 MB at most, over 8 minutes at 100k/s */
#define MAX_MESSAGES 50000000L
#define DEFAULT_DURATION_S 10.0
#define WARMUP_NS NS          /* the first second is warm-up ... */
#define WARMUP_MESSAGES_DIV 20 /* ... or with --messages the first 5% */
#define DRAIN_NS (10 * NS)    /* how long the subscriber may lag the last PUBACK */
#define ACK_WAIT_NS (10 * NS) /* how long the last PUBACKs may take */
#define CONNECT_TIMEOUT_S 5
#define PASSWORD_MAX 256

struct opts {
	const char *url, *user, *password_file, *topic;
	char password[PASSWORD_MAX];
	long size;
	long messages;     /* 0: run for duration_s */
	double duration_s;
	double rate;       /* messages a second; 0: as fast as the window allows */
	long window;       /* 0: the broker's Receive Maximum */
	int json;
};

/* Steps a connection goes through; conn_wait() waits for one. */
enum step { STEP_NONE, STEP_CONNECTED, STEP_SUBSCRIBED, STEP_DISCONNECTED };

/* What both clients share: a paho handle and what its callbacks reported. */
struct conn {
	MQTTAsync h;
	const char *role; /* "publisher" or "subscriber", for messages */
	const struct opts *o;
	pthread_mutex_t lock;
	pthread_cond_t cond; /* on CLOCK_MONOTONIC */
	enum step step;
	int failed;          /* set once, with reason */
	int vague;           /* ... but a lost connection may say it better */
	char reason[384];
	long receive_max;    /* the broker's Receive Maximum, from the CONNACK */
};

struct pub {
	struct conn c;
	uint32_t run;
	long window;        /* publishes allowed in flight at once */
	long outstanding;   /* handed to paho, no PUBACK yet */
	uint64_t completed; /* PUBACKs and failures seen */
};

/* What the publisher reports; plain data, so it can cross a pipe. */
struct pub_result {
	int ok;
	long sent;       /* accepted by paho */
	long window;
	long receive_max;
	int64_t t_start; /* first send, CLOCK_MONOTONIC ns */
	int64_t t_end;   /* last send */
	char reason[384];
};

struct sub {
	struct conn c;
	uint32_t run;
	long cap;           /* sequence numbers the arrays hold */
	long limit;         /* sequence numbers above this are not ours */
	int64_t *sent_ns;   /* by sequence number */
	int64_t *recv_ns;   /* by sequence number; 0: not received */
	long received;      /* distinct sequence numbers */
	long duplicates;
	long foreign;       /* messages that are not this run's */
	long expect;        /* the drain waits for this many */
};

static volatile sig_atomic_t quit;

static void
on_signal(int sig)
{
	(void)sig;
	quit = 1;
}

static int64_t
mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * NS + ts.tv_nsec;
}

static struct timespec
ns_to_ts(int64_t ns)
{
	struct timespec ts = { .tv_sec = (time_t)(ns / NS), .tv_nsec = (long)(ns % NS) };

	return ts;
}

/* Records the first failure of a connection; the caller holds c->lock. */
static void
fail_locked(struct conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
fail_locked(struct conn *c, const char *fmt, ...)
{
	va_list ap;

	if (!c->failed) {
		c->failed = 1;
		va_start(ap, fmt);
		vsnprintf(c->reason, sizeof(c->reason), fmt, ap);
		va_end(ap);
	}
	pthread_cond_broadcast(&c->cond);
}

static void
set_step(struct conn *c, enum step s)
{
	pthread_mutex_lock(&c->lock);
	c->step = s;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

static void
conn_init(struct conn *c, const char *role, const struct opts *o)
{
	pthread_condattr_t ca;

	memset(c, 0, sizeof(*c));
	c->role = role;
	c->o = o;
	pthread_mutex_init(&c->lock, NULL);
	/* deadlines on the monotonic clock, like every other time here */
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&c->cond, &ca);
	pthread_condattr_destroy(&ca);
}

/* Waits until the connection reaches step s or fails, or timeout_ns passes. Returns 0 on reaching s, -1 otherwise. */
static int
conn_wait(struct conn *c, enum step s, int64_t timeout_ns)
{
	struct timespec deadline = ns_to_ts(mono_ns() + timeout_ns);
	int rc;

	pthread_mutex_lock(&c->lock);
	while (c->step < s && !c->failed)
		if (pthread_cond_timedwait(&c->cond, &c->lock, &deadline) == ETIMEDOUT)
			break;
	rc = c->step >= s && !c->failed ? 0 : -1;
	if (rc != 0 && !c->failed)
		fail_locked(c, "no answer from the broker at %s within %lld s (%s)", c->o->url, (long long)(timeout_ns / NS),
		    c->role);
	pthread_mutex_unlock(&c->lock);
	return rc;
}

static void
on_connect_ok(void *ctx, MQTTAsync_successData5 *resp)
{
	struct conn *c = ctx;
	int rm = MQTTProperties_getNumericValue(&resp->properties, MQTTPROPERTY_CODE_RECEIVE_MAXIMUM);

	pthread_mutex_lock(&c->lock);
	/* no property means the protocol's default, 65535 */
	c->receive_max = rm > 0 && rm <= 65535 ? rm : 65535;
	c->step = STEP_CONNECTED;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

static void
on_connect_fail(void *ctx, MQTTAsync_failureData5 *resp)
{
	struct conn *c = ctx;
	/*
	 * On a refused CONNACK paho 1.3 puts the broker's reason code in
	 * resp->code; its own failures (socket, timeout) are negative codes.
	 */
	int reason = resp->reasonCode != 0 ? (int)resp->reasonCode : (resp->code > 0 ? resp->code : 0);

	pthread_mutex_lock(&c->lock);
	switch (reason) {
	/* mosquitto answers a wrong password with "not authorised" too */
	case 4:
	case 5:
	case MQTTREASONCODE_BAD_USER_NAME_OR_PASSWORD:
	case MQTTREASONCODE_NOT_AUTHORIZED:
		fail_locked(c, "the broker at %s refused the login for '%s': wrong user name or password", c->o->url,
		    c->o->user);
		break;
	case 0:
		fail_locked(c, "cannot reach the broker at %s (%s)", c->o->url,
		    resp->message != NULL ? resp->message : "connection failed");
		break;
	default:
		fail_locked(c, "the broker at %s refused the %s's connection: %s", c->o->url, c->role,
		    MQTTReasonCode_toString((enum MQTTReasonCodes)reason));
	}
	pthread_mutex_unlock(&c->lock);
}

static void
on_connlost(void *ctx, char *cause)
{
	struct conn *c = ctx;

	pthread_mutex_lock(&c->lock);
	if (c->vague)
		c->failed = 0;
	fail_locked(c, "the %s lost its connection to %s (%s)", c->role, c->o->url,
	    cause != NULL ? cause : "closed by the broker");
	pthread_mutex_unlock(&c->lock);
}

static void
on_disconnect_done(void *ctx, MQTTAsync_successData5 *resp)
{
	(void)resp;
	set_step(ctx, STEP_DISCONNECTED);
}

static void
on_disconnect_fail(void *ctx, MQTTAsync_failureData5 *resp)
{
	(void)resp;
	set_step(ctx, STEP_DISCONNECTED);
}

/*
 * Creates the client and connects it: MQTT 5, clean start, no automatic
 * reconnect (a run that reconnects measures nothing).  ma, if not NULL,
 * receives messages with ctx.  Returns 0, or -1 with c->reason set.
 */
static int
conn_open(struct conn *c, const char *client_id, MQTTAsync_messageArrived *ma, void *ctx)
{
	MQTTAsync_createOptions co = MQTTAsync_createOptions_initializer5;
	MQTTAsync_connectOptions opts = MQTTAsync_connectOptions_initializer5;
	int rc;

	/*
	 * paho refuses a publish (MQTTASYNC_MAX_BUFFERED_MESSAGES) while this
	 * many are queued but not yet written, connected or not; the window
	 * bounds our queue already.
	 */
	co.maxBufferedMessages = 65535;
	rc = MQTTAsync_createWithOptions(&c->h, c->o->url, client_id, MQTTCLIENT_PERSISTENCE_NONE, NULL, &co);
	if (rc != MQTTASYNC_SUCCESS) {
		c->h = NULL;
		snprintf(c->reason, sizeof(c->reason), "cannot create an MQTT client for %s (paho error %d%s)", c->o->url,
		    rc, rc == MQTTASYNC_BAD_PROTOCOL ? ": the URL must start with tcp://" : "");
		c->failed = 1;
		return -1;
	}
	if (ma != NULL)
		rc = MQTTAsync_setCallbacks(c->h, ctx, on_connlost, ma, NULL);
	else
		rc = MQTTAsync_setConnectionLostCallback(c->h, c, on_connlost);
	if (rc != MQTTASYNC_SUCCESS) {
		snprintf(c->reason, sizeof(c->reason), "cannot set the %s's callbacks (paho error %d)", c->role, rc);
		c->failed = 1;
		return -1;
	}
	opts.cleanstart = 1;
	opts.keepAliveInterval = 20;
	opts.username = c->o->user;
	opts.password = c->o->password;
	opts.connectTimeout = CONNECT_TIMEOUT_S;
	opts.automaticReconnect = 0;
	/* paho lowers this to the broker's Receive Maximum from the CONNACK */
	opts.maxInflight = 65535;
	opts.onSuccess5 = on_connect_ok;
	opts.onFailure5 = on_connect_fail;
	opts.context = c;
	if ((rc = MQTTAsync_connect(c->h, &opts)) != MQTTASYNC_SUCCESS) {
		snprintf(c->reason, sizeof(c->reason), "cannot start connecting to %s (paho error %d)", c->o->url, rc);
		c->failed = 1;
		return -1;
	}
	return conn_wait(c, STEP_CONNECTED, (CONNECT_TIMEOUT_S + 1) * NS);
}

/* Disconnects (letting the last acknowledgements out) and destroys the client; NULL-safe. */
static void
conn_close(struct conn *c)
{
	MQTTAsync_disconnectOptions opts = MQTTAsync_disconnectOptions_initializer5;

	if (c->h == NULL)
		return;
	if (MQTTAsync_isConnected(c->h)) {
		opts.timeout = 1000;
		opts.onSuccess5 = on_disconnect_done;
		opts.onFailure5 = on_disconnect_fail;
		opts.context = c;
		if (MQTTAsync_disconnect(c->h, &opts) == MQTTASYNC_SUCCESS) {
			struct timespec deadline = ns_to_ts(mono_ns() + 3 * NS);

			pthread_mutex_lock(&c->lock);
			while (c->step != STEP_DISCONNECTED)
				if (pthread_cond_timedwait(&c->cond, &c->lock, &deadline) == ETIMEDOUT)
					break;
			pthread_mutex_unlock(&c->lock);
		}
	}
	MQTTAsync_destroy(&c->h);
}

static void
conn_fini(struct conn *c)
{
	pthread_mutex_destroy(&c->lock);
	pthread_cond_destroy(&c->cond);
}

/* ---- publisher ---------------------------------------------------------- */

static void
on_pub_ok(void *ctx, MQTTAsync_successData5 *resp)
{
	struct pub *p = ctx;

	pthread_mutex_lock(&p->c.lock);
	p->outstanding--;
	p->completed++;
	/* an ACL refusal comes back as a PUBACK with a reason code >= 0x80 */
	if (resp->reasonCode >= 0x80)
		fail_locked(&p->c, "the broker refused a publish to %s: %s", p->c.o->topic,
		    MQTTReasonCode_toString(resp->reasonCode));
	pthread_cond_signal(&p->c.cond);
	pthread_mutex_unlock(&p->c.lock);
}

static void
on_pub_fail(void *ctx, MQTTAsync_failureData5 *resp)
{
	struct pub *p = ctx;

	pthread_mutex_lock(&p->c.lock);
	p->outstanding--;
	p->completed++;
	if (resp->reasonCode >= 0x80)
		fail_locked(&p->c, "the broker refused a publish to %s: %s", p->c.o->topic,
		    MQTTReasonCode_toString(resp->reasonCode));
	else if (!p->c.failed) {
		/* paho fails what is in flight when the connection drops, before it says so */
		fail_locked(&p->c, "a publish to %s failed (paho error %d%s%s)", p->c.o->topic, resp->code,
		    resp->message != NULL ? ": " : "", resp->message != NULL ? resp->message : "");
		p->c.vague = 1;
	}
	pthread_cond_signal(&p->c.cond);
	pthread_mutex_unlock(&p->c.lock);
}

static void
put_header(char *buf, uint32_t run, uint64_t seq, int64_t sent)
{
	uint32_t magic = HDR_MAGIC;

	memcpy(buf, &magic, 4);
	memcpy(buf + 4, &run, 4);
	memcpy(buf + 8, &seq, 8);
	memcpy(buf + 16, &sent, 8);
}

/* Sleeps until CLOCK_MONOTONIC reaches ns, or a signal asks us to stop. */
static void
sleep_until(int64_t ns)
{
	struct timespec ts = ns_to_ts(ns);

	while (!quit && clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

/*
 * Publishes the run: --messages of them, or for --duration.  Never more than
 * p->window unacknowledged at once: that is exactly what the broker lets in,
 * so the window stays full without paho queueing messages we have already
 * stamped (queued time would count as broker latency).
 */
static void
pub_loop(struct pub *p, struct pub_result *r)
{
	const struct opts *o = p->c.o;
	MQTTAsync_message msg = MQTTAsync_message_initializer;
	MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
	int64_t t0, end, due = 0, sent_at;
	struct timespec deadline;
	uint64_t before;
	char *buf;
	long seq;
	int rc;

	if ((buf = malloc((size_t)o->size)) == NULL) {
		pthread_mutex_lock(&p->c.lock);
		fail_locked(&p->c, "out of memory for a %ld-byte payload", o->size);
		pthread_mutex_unlock(&p->c.lock);
		return;
	}
	memset(buf, 'x', (size_t)o->size);
	msg.payload = buf;
	msg.payloadlen = (int)o->size;
	msg.qos = 1;
	ro.onSuccess5 = on_pub_ok;
	ro.onFailure5 = on_pub_fail;
	ro.context = p;
	/* a paced sender wakes every few tens of microseconds; the default 50 us timer slack would bunch it up */
	if (o->rate > 0)
		prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);

	t0 = mono_ns();
	end = o->messages > 0 ? INT64_MAX : t0 + (int64_t)(o->duration_s * NS);
	r->t_start = t0;
	for (seq = 0; !quit; seq++) {
		if (o->messages > 0 ? seq >= o->messages : seq >= MAX_MESSAGES)
			break;
		if (o->rate > 0) {
			due = t0 + (int64_t)((double)seq * NS / o->rate);
			if (due >= end)
				break;
			sleep_until(due);
		} else if (o->messages == 0 && mono_ns() >= end)
			break;

		pthread_mutex_lock(&p->c.lock);
		while (p->outstanding >= p->window && !p->c.failed)
			pthread_cond_wait(&p->c.cond, &p->c.lock);
		if (p->c.failed) {
			pthread_mutex_unlock(&p->c.lock);
			break;
		}
		p->outstanding++;
		pthread_mutex_unlock(&p->c.lock);

		for (;;) {
			/*
			 * Paced, the message is stamped with the time it was due,
			 * not the time it left: a publisher held up by a full window
			 * is latency a real producer would see too.
			 */
			sent_at = o->rate > 0 ? due : mono_ns();
			put_header(buf, p->run, (uint64_t)seq, sent_at);
			pthread_mutex_lock(&p->c.lock);
			before = p->completed;
			pthread_mutex_unlock(&p->c.lock);
			rc = MQTTAsync_sendMessage(p->c.h, o->topic, &msg, &ro);
			if (rc != MQTTASYNC_MAX_MESSAGES_INFLIGHT && rc != MQTTASYNC_NO_MORE_MSGIDS &&
			    rc != MQTTASYNC_MAX_BUFFERED_MESSAGES)
				break;
			/* paho still counts a slot we saw freed: wait for the next PUBACK and retry */
			deadline = ns_to_ts(mono_ns() + NS / 100);
			pthread_mutex_lock(&p->c.lock);
			while (p->completed == before && !p->c.failed)
				if (pthread_cond_timedwait(&p->c.cond, &p->c.lock, &deadline) == ETIMEDOUT)
					break;
			pthread_mutex_unlock(&p->c.lock);
		}
		if (rc != MQTTASYNC_SUCCESS) {
			pthread_mutex_lock(&p->c.lock);
			p->outstanding--;
			fail_locked(&p->c, "paho refused a publish to %s (paho error %d)", o->topic, rc);
			pthread_mutex_unlock(&p->c.lock);
			break;
		}
		r->sent++;
		r->t_end = sent_at;
	}

	/* every PUBACK in, so the subscriber's drain starts from a broker that has them all */
	deadline = ns_to_ts(mono_ns() + ACK_WAIT_NS);
	pthread_mutex_lock(&p->c.lock);
	while (p->outstanding > 0 && !p->c.failed)
		if (pthread_cond_timedwait(&p->c.cond, &p->c.lock, &deadline) == ETIMEDOUT) {
			fail_locked(&p->c, "%ld publishes still unacknowledged %lld s after the last",
			    p->outstanding, ACK_WAIT_NS / NS);
			break;
		}
	pthread_mutex_unlock(&p->c.lock);
	free(buf);
}

static int
wait_go(int fd)
{
	char b;
	ssize_t n;

	while ((n = read(fd, &b, 1)) < 0 && errno == EINTR)
		;
	return n == 1 ? 0 : -1;
}

/*
 * The whole publisher: connect, wait for go_fd to say the subscriber is
 * ready (if go_fd >= 0), publish, wait for the PUBACKs, disconnect.
 * Fills r; r->ok is 0 with r->reason on failure.
 */
static void
pub_run(const struct opts *o, uint32_t run, int go_fd, struct pub_result *r)
{
	struct pub p;
	char id[64];

	memset(r, 0, sizeof(*r));
	memset(&p, 0, sizeof(p));
	conn_init(&p.c, "publisher", o);
	p.run = run;
	snprintf(id, sizeof(id), "mqtt-raw-pub-%ld-%08" PRIx32, (long)getpid(), run);
	if (conn_open(&p.c, id, NULL, NULL) != 0)
		goto out;
	/* the broker's Receive Maximum: mosquitto's max_inflight_messages */
	p.window = p.c.receive_max;
	if (o->window > 0 && o->window < p.window)
		p.window = o->window;
	r->window = p.window;
	r->receive_max = p.c.receive_max;
	if (go_fd >= 0 && wait_go(go_fd) != 0) {
		snprintf(p.c.reason, sizeof(p.c.reason), "the subscriber gave up before the run started");
		p.c.failed = 1;
		goto out;
	}
	pub_loop(&p, r);
out:
	conn_close(&p.c);
	r->ok = !p.c.failed;
	snprintf(r->reason, sizeof(r->reason), "%s", p.c.reason);
	conn_fini(&p.c);
}

/* ---- subscriber --------------------------------------------------------- */

/* Makes room for sequence number seq; the caller holds s->c.lock. Returns 0 or -1. */
static int
sub_grow(struct sub *s, long seq)
{
	long cap = s->cap > 0 ? s->cap : 1L << 20;
	int64_t *a, *b;

	while (cap <= seq)
		cap *= 2;
	if (cap > s->limit)
		cap = s->limit;
	/* large blocks are mmap'd: glibc grows them with mremap, without copying */
	if ((a = realloc(s->sent_ns, (size_t)cap * sizeof(*a))) == NULL)
		return -1;
	s->sent_ns = a;
	if ((b = realloc(s->recv_ns, (size_t)cap * sizeof(*b))) == NULL)
		return -1;
	s->recv_ns = b;
	memset(b + s->cap, 0, (size_t)(cap - s->cap) * sizeof(*b));
	s->cap = cap;
	return 0;
}

/* paho's delivery callback: record and return, paho sends the PUBACK when we do. */
static int
on_message(void *ctx, char *topic, int topiclen, MQTTAsync_message *msg)
{
	struct sub *s = ctx;
	int64_t now = mono_ns(), sent = 0;
	uint32_t magic = 0, run = 0;
	uint64_t seq = 0;
	const char *pl = msg->payload;

	(void)topiclen;
	if (msg->payloadlen >= HDR_LEN) {
		memcpy(&magic, pl, 4);
		memcpy(&run, pl + 4, 4);
		memcpy(&seq, pl + 8, 8);
		memcpy(&sent, pl + 16, 8);
	}

	pthread_mutex_lock(&s->c.lock);
	/* a second run on the same topic, or anything else published there, is not counted */
	if (magic != HDR_MAGIC || run != s->run || seq >= (uint64_t)s->limit)
		s->foreign++;
	else if ((long)seq >= s->cap && sub_grow(s, (long)seq) != 0)
		fail_locked(&s->c, "out of memory recording message %" PRIu64, seq);
	else if (s->recv_ns[seq] != 0)
		s->duplicates++;
	else {
		s->sent_ns[seq] = sent;
		s->recv_ns[seq] = now;
		if (++s->received >= s->expect)
			pthread_cond_broadcast(&s->c.cond);
	}
	pthread_mutex_unlock(&s->c.lock);
	MQTTAsync_freeMessage(&msg);
	MQTTAsync_free(topic);
	return 1;
}

static void
on_suback(void *ctx, MQTTAsync_successData5 *resp)
{
	struct conn *c = ctx;

	pthread_mutex_lock(&c->lock);
	if (resp->reasonCode >= 0x80)
		fail_locked(c, "the broker refused the subscription to %s: %s", c->o->topic,
		    MQTTReasonCode_toString(resp->reasonCode));
	else if (resp->reasonCode != MQTTREASONCODE_GRANTED_QOS_1)
		fail_locked(c, "the broker granted QoS %d, not 1, on %s", (int)resp->reasonCode, c->o->topic);
	else
		c->step = STEP_SUBSCRIBED;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

static void
on_subfail(void *ctx, MQTTAsync_failureData5 *resp)
{
	struct conn *c = ctx;

	pthread_mutex_lock(&c->lock);
	fail_locked(c, "the subscription to %s failed: %s", c->o->topic,
	    resp->message != NULL ? resp->message : MQTTReasonCode_toString(resp->reasonCode));
	pthread_mutex_unlock(&c->lock);
}

/* Connects the subscriber and subscribes at QoS 1. Returns 0, or -1 with s->c.reason set. */
static int
sub_open(struct sub *s)
{
	MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
	char id[64];
	int rc;

	snprintf(id, sizeof(id), "mqtt-raw-sub-%ld-%08" PRIx32, (long)getpid(), s->run);
	if (conn_open(&s->c, id, on_message, s) != 0)
		return -1;
	ro.onSuccess5 = on_suback;
	ro.onFailure5 = on_subfail;
	ro.context = &s->c;
	if ((rc = MQTTAsync_subscribe(s->c.h, s->c.o->topic, 1, &ro)) != MQTTASYNC_SUCCESS) {
		pthread_mutex_lock(&s->c.lock);
		fail_locked(&s->c, "cannot subscribe to %s (paho error %d)", s->c.o->topic, rc);
		pthread_mutex_unlock(&s->c.lock);
		return -1;
	}
	return conn_wait(&s->c, STEP_SUBSCRIBED, CONNECT_TIMEOUT_S * NS);
}

/* Waits until the subscriber has every message sent, or DRAIN_NS has passed. */
static void
sub_drain(struct sub *s, long sent)
{
	struct timespec deadline = ns_to_ts(mono_ns() + DRAIN_NS);

	pthread_mutex_lock(&s->c.lock);
	s->expect = sent;
	while (s->received < sent && !s->c.failed)
		if (pthread_cond_timedwait(&s->c.cond, &s->c.lock, &deadline) == ETIMEDOUT)
			break;
	pthread_mutex_unlock(&s->c.lock);
}

/* ---- the publisher's process ------------------------------------------ */

struct child {
	pid_t pid;
	int go_fd;  /* one byte: the subscriber is ready; closed unwritten: give up */
	int res_fd; /* the child's struct pub_result */
};

/*
 * Forks the publisher.  The child connects, waits for go, publishes, sends
 * its struct pub_result back and exits; it never returns from here.  Call
 * before any other paho call: a child must not inherit paho's threads' state.
 * Returns 0, or -1 with a message printed.
 */
static int
child_start(const struct opts *o, uint32_t run, struct child *ch)
{
	int go[2], res[2];
	pid_t parent = getpid();

	if (pipe(go) != 0)
		goto fail;
	if (pipe(res) != 0) {
		close(go[0]);
		close(go[1]);
		goto fail;
	}
	fflush(NULL);
	if ((ch->pid = fork()) < 0) {
		close(go[0]);
		close(go[1]);
		close(res[0]);
		close(res[1]);
		goto fail;
	}
	if (ch->pid == 0) {
		struct pub_result r;
		ssize_t n;

		close(go[1]);
		close(res[0]);
		/* stop publishing if the parent goes away */
		prctl(PR_SET_PDEATHSIG, SIGTERM, 0UL, 0UL, 0UL);
		if (getppid() != parent)
			quit = 1;
		pub_run(o, run, go[0], &r);
		n = write(res[1], &r, sizeof(r));
		/* exit, not _exit: OpenSSL (loaded by paho) frees its globals at exit; stdio was flushed before fork */
		exit(n == (ssize_t)sizeof(r) && r.ok ? 0 : 1);
	}
	close(go[0]);
	close(res[1]);
	ch->go_fd = go[1];
	ch->res_fd = res[0];
	return 0;
fail:
	fprintf(stderr, "%s: cannot start the publisher process: %s\n", PROG, strerror(errno));
	return -1;
}

/*
 * Lets the publisher start (go) or, go being 0, tells it to give up; then
 * waits for its result and for it to exit.  A signal to us is passed on, so
 * the publisher stops and reports what it sent.  Returns 0 with r filled, or
 * -1 with a message printed (go: 1).
 */
static int
child_finish(struct child *ch, int go, struct pub_result *r)
{
	int status, killed = 0, rc = -1;
	ssize_t n = -1;

	if (go && write(ch->go_fd, "g", 1) != 1) {
		fprintf(stderr, "%s: the publisher process is gone\n", PROG);
		go = 0;
	}
	if (go)
		for (;;) {
			if (quit && !killed) {
				kill(ch->pid, SIGTERM);
				killed = 1;
			}
			if ((n = read(ch->res_fd, r, sizeof(*r))) >= 0 || errno != EINTR)
				break;
		}
	close(ch->go_fd); /* unwritten, the publisher reads end-of-file and gives up */
	close(ch->res_fd);
	while (waitpid(ch->pid, &status, 0) < 0 && errno == EINTR)
		;
	if (!go)
		return -1;
	if (n != (ssize_t)sizeof(*r))
		fprintf(stderr, "%s: the publisher process died without a result\n", PROG);
	else if (!r->ok)
		fprintf(stderr, "%s: %s\n", PROG, r->reason);
	else
		rc = 0;
	return rc;
}

/* ---- statistics --------------------------------------------------------- */

struct stats {
	long sent, received, lost, duplicates, foreign;
	long warmup;     /* messages left out of the figures below */
	long measured;   /* latency samples */
	double seconds;  /* first to last measured receipt */
	double per_s;
	double p50, p90, p99, max; /* ms */
	double send_per_s;
};

static int
cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

/* Nearest-rank percentile of the sorted v[0..n-1], in ms. */
static double
pct_ms(const int64_t *v, long n, double q)
{
	long i = (long)ceil(q * (double)n) - 1;

	if (n == 0)
		return 0;
	if (i < 0)
		i = 0;
	if (i >= n)
		i = n - 1;
	return (double)v[i] / 1e6;
}

/* Computes the figures from the subscriber's records. Returns 0, or -1 when out of memory. */
static int
compute(const struct opts *o, const struct sub *s, const struct pub_result *r, struct stats *st)
{
	long cut = 0, n = 0;
	int64_t first = INT64_MAX, last = INT64_MIN, *lat;
	long have = r->sent < s->cap ? r->sent : s->cap;

	memset(st, 0, sizeof(*st));
	st->sent = r->sent;
	st->received = s->received;
	st->lost = r->sent - s->received;
	st->duplicates = s->duplicates;
	st->foreign = s->foreign;
	if (r->t_end > r->t_start)
		st->send_per_s = (double)(r->sent - 1) / ((double)(r->t_end - r->t_start) / 1e9);

	/*
	 * Warm-up (TCP windows opening, malloc arenas, the broker's queues
	 * filling): what was sent in the first second or, with --messages, the
	 * first 5% of the messages; never more than half the run.
	 */
	if (o->messages > 0)
		cut = r->sent / WARMUP_MESSAGES_DIV;
	else
		while (cut < have && (s->recv_ns[cut] == 0 || s->sent_ns[cut] < r->t_start + WARMUP_NS))
			cut++;
	if (cut > r->sent / 2)
		cut = r->sent / 2;
	st->warmup = cut;
	if ((lat = malloc((size_t)(have > cut ? have - cut : 1) * sizeof(*lat))) == NULL)
		return -1;
	for (long i = cut; i < have; i++) {
		if (s->recv_ns[i] == 0)
			continue;
		lat[n++] = s->recv_ns[i] - s->sent_ns[i];
		if (s->recv_ns[i] < first)
			first = s->recv_ns[i];
		if (s->recv_ns[i] > last)
			last = s->recv_ns[i];
	}
	st->measured = n;
	if (n >= 2 && last > first) {
		st->seconds = (double)(last - first) / 1e9;
		st->per_s = (double)(n - 1) / st->seconds;
	}
	qsort(lat, (size_t)n, sizeof(*lat), cmp_i64);
	st->p50 = pct_ms(lat, n, 0.50);
	st->p90 = pct_ms(lat, n, 0.90);
	st->p99 = pct_ms(lat, n, 0.99);
	st->max = n > 0 ? (double)lat[n - 1] / 1e6 : 0;
	free(lat);
	return 0;
}

static void
print_human(FILE *f, const struct opts *o, const struct pub_result *r, const struct stats *st)
{
	char pace[64], win[64];

	if (o->rate > 0)
		snprintf(pace, sizeof(pace), "paced at %.0f msg/s", o->rate);
	else
		snprintf(pace, sizeof(pace), "as fast as the window allows");
	if (r->window == r->receive_max)
		snprintf(win, sizeof(win), "window %ld (the broker's Receive Maximum)", r->window);
	else
		snprintf(win, sizeof(win), "window %ld (the broker allows %ld)", r->window, r->receive_max);
	fprintf(f, "%s: %s topic %s, %ld-byte payloads, QoS 1, %s, %s\n", PROG, o->url, o->topic, o->size, win, pace);
	fprintf(f, "  sent %ld (%.0f msg/s)  received %ld  lost %ld  duplicates %ld%s%s\n", st->sent, st->send_per_s,
	    st->received, st->lost, st->duplicates, st->foreign > 0 ? "  (and messages of another run ignored)" : "",
	    quit ? "  (stopped early by a signal)" : "");
	fprintf(f, "  after a %ld-message warm-up: %ld deliveries in %.2f s = %.0f deliveries/s\n", st->warmup,
	    st->measured, st->seconds, st->per_s);
	fprintf(f, "  latency ms: p50 %.3f  p90 %.3f  p99 %.3f  max %.3f\n", st->p50, st->p90, st->p99, st->max);
}

static void
print_json(const struct opts *o, const struct pub_result *r, const struct stats *st)
{
	printf("{\"messages\":%ld,\"seconds\":%.3f,\"deliveries_per_s\":%.0f,\"p50_ms\":%.3f,\"p90_ms\":%.3f,"
	       "\"p99_ms\":%.3f,\"max_ms\":%.3f,\"lost\":%ld,\"duplicates\":%ld,\"payload_bytes\":%ld,"
	       "\"sent\":%ld,\"received\":%ld,\"warmup\":%ld,\"window\":%ld,\"rate\":%.0f}\n",
	    st->measured, st->seconds, st->per_s, st->p50, st->p90, st->p99, st->max, st->lost, st->duplicates,
	    o->size, st->sent, st->received, st->warmup, r->window, o->rate);
}

/* ---- options ------------------------------------------------------------ */

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: %s --url tcp://HOST:PORT --user USER --password-file FILE [--topic T] [--size BYTES]\n"
	    "       [--messages N | --duration S] [--rate R] [--window N] [--json]\n\n"
	    "Measures what one paho publisher -> mosquitto -> one paho subscriber can do\n"
	    "at QoS 1 (MQTT 5): deliveries a second and publish-to-receive latency.\n\n"
	    "  --url URL             the broker (tcp:// only)\n"
	    "  --user USER           broker account; it must read and write the topic\n"
	    "  --password-file FILE  the account's password, on the first line\n"
	    "  --topic T             topic to publish on (default bench/raw)\n"
	    "  --size BYTES          payload size, %d-%d (default 350, our events' size)\n"
	    "  --messages N          send N messages (at most %ld)\n"
	    "  --duration S          send for S seconds (default %.0f)\n"
	    "  --rate R              pace at R messages a second (default: as fast as possible)\n"
	    "  --window N            at most N publishes in flight (default and upper bound:\n"
	    "                        the broker's Receive Maximum)\n"
	    "  --json                print one JSON object on stdout, the summary on stderr\n\n"
	    "The first second (with --messages, the first 5%%) is warm-up and left out.\n"
	    "Exits 1 if a message is lost or the run fails, 2 on bad usage.\n",
	    PROG, HDR_LEN, MAX_SIZE, MAX_MESSAGES, DEFAULT_DURATION_S);
}

static int
parse_long(const char *s, long min, long max, long *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

static int
parse_double(const char *s, double min, double max, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno != 0 || end == s || *end != '\0' || !(v >= min && v <= max))
		return -1;
	*out = v;
	return 0;
}

/* Reads the password from the first line of path. Returns 0, or -1 with err set. */
static int
read_password(const char *path, char *buf, size_t n, char *err, size_t errlen)
{
	FILE *f;
	size_t len;

	if ((f = fopen(path, "r")) == NULL) {
		snprintf(err, errlen, "cannot read the password file %s: %s", path, strerror(errno));
		return -1;
	}
	if (fgets(buf, (int)n, f) == NULL)
		buf[0] = '\0';
	fclose(f);
	len = strcspn(buf, "\r\n");
	if (len == n - 1) {
		snprintf(err, errlen, "the password in %s is longer than %zu bytes", path, n - 2);
		return -1;
	}
	buf[len] = '\0';
	if (len == 0) {
		snprintf(err, errlen, "the password file %s is empty", path);
		return -1;
	}
	return 0;
}

/* Parses argv into o; exits 0 on --help and 2 on bad usage. */
static void
parse_args(int argc, char **argv, struct opts *o)
{
	static const struct option longopts[] = {
		{ "url", required_argument, NULL, 'u' },
		{ "user", required_argument, NULL, 'U' },
		{ "password-file", required_argument, NULL, 'p' },
		{ "topic", required_argument, NULL, 't' },
		{ "size", required_argument, NULL, 's' },
		{ "messages", required_argument, NULL, 'n' },
		{ "duration", required_argument, NULL, 'd' },
		{ "rate", required_argument, NULL, 'r' },
		{ "window", required_argument, NULL, 'w' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	char err[512];
	int ch, idx = 0, have_duration = 0;

	memset(o, 0, sizeof(*o));
	o->topic = "bench/raw";
	o->size = 350;
	o->duration_s = DEFAULT_DURATION_S;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, ":h", longopts, &idx)) != -1) {
		switch (ch) {
		case 'u':
			o->url = optarg;
			break;
		case 'U':
			o->user = optarg;
			break;
		case 'p':
			o->password_file = optarg;
			break;
		case 't':
			o->topic = optarg;
			break;
		case 's':
			if (parse_long(optarg, HDR_LEN, MAX_SIZE, &o->size) != 0)
				goto bad_value;
			break;
		case 'n':
			if (parse_long(optarg, 1, MAX_MESSAGES, &o->messages) != 0)
				goto bad_value;
			break;
		case 'd':
			if (parse_double(optarg, 0.1, 86400, &o->duration_s) != 0)
				goto bad_value;
			have_duration = 1;
			break;
		case 'r':
			if (parse_double(optarg, 1, 1e7, &o->rate) != 0)
				goto bad_value;
			break;
		case 'w':
			if (parse_long(optarg, 1, 65535, &o->window) != 0)
				goto bad_value;
			break;
		case 'j':
			o->json = 1;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		case ':':
			fprintf(stderr, "%s: %s needs a value (see --help)\n", PROG, argv[optind - 1]);
			exit(2);
		default:
			fprintf(stderr, "%s: unknown option %s (see --help)\n", PROG, argv[optind - 1]);
			exit(2);
		}
	}
	if (optind < argc) {
		fprintf(stderr, "%s: unexpected argument '%s' (see --help)\n", PROG, argv[optind]);
		exit(2);
	}
	if (o->url == NULL || o->user == NULL || o->password_file == NULL) {
		fprintf(stderr, "%s: --url, --user and --password-file are required (see --help)\n", PROG);
		exit(2);
	}
	if (strncmp(o->url, "tcp://", 6) != 0) {
		fprintf(stderr, "%s: --url must be tcp://HOST:PORT, not '%s'\n", PROG, o->url);
		exit(2);
	}
	if (o->topic[0] == '\0' || strpbrk(o->topic, "+#") != NULL || strlen(o->topic) > 1024) {
		fprintf(stderr, "%s: --topic must be a topic name without wildcards, not '%s'\n", PROG, o->topic);
		exit(2);
	}
	if (have_duration && o->messages > 0) {
		fprintf(stderr, "%s: give --messages or --duration, not both\n", PROG);
		exit(2);
	}
	if (read_password(o->password_file, o->password, sizeof(o->password), err, sizeof(err)) != 0) {
		fprintf(stderr, "%s: %s\n", PROG, err);
		exit(2);
	}
	return;
bad_value:
	fprintf(stderr, "%s: bad value '%s' for --%s (see --help for the ranges)\n", PROG, optarg, longopts[idx].name);
	exit(2);
}

int
main(int argc, char **argv)
{
	struct opts o;
	struct sub s;
	struct pub_result r;
	struct stats st;
	struct sigaction sa;
	struct child ch;
	uint32_t run;
	int rc = 1;

	parse_args(argc, argv, &o);

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);

	/* tells this run's messages from any other on the topic */
	run = (uint32_t)getpid() ^ (uint32_t)mono_ns() ^ (uint32_t)((uint64_t)mono_ns() >> 32);
	if (child_start(&o, run, &ch) != 0)
		return 1;

	memset(&s, 0, sizeof(s));
	memset(&r, 0, sizeof(r));
	conn_init(&s.c, "subscriber", &o);
	s.run = run;
	s.limit = o.messages > 0 ? o.messages : MAX_MESSAGES;
	s.expect = LONG_MAX;
	if (sub_grow(&s, o.messages > 0 ? o.messages - 1 : 0) != 0) {
		fprintf(stderr, "%s: out of memory for %ld messages' records\n", PROG, s.limit);
		child_finish(&ch, 0, &r);
		goto out;
	}
	if (sub_open(&s) != 0) {
		fprintf(stderr, "%s: %s\n", PROG, s.c.reason);
		child_finish(&ch, 0, &r);
		goto out;
	}
	if (child_finish(&ch, 1, &r) != 0)
		goto out;
	sub_drain(&s, r.sent);
	/* no callback may touch the records once the subscriber is gone */
	conn_close(&s.c);
	if (s.c.failed) {
		fprintf(stderr, "%s: %s\n", PROG, s.c.reason);
		goto out;
	}
	if (compute(&o, &s, &r, &st) != 0) {
		fprintf(stderr, "%s: out of memory sorting %ld latencies\n", PROG, s.received);
		goto out;
	}
	print_human(o.json ? stderr : stdout, &o, &r, &st);
	if (o.json)
		print_json(&o, &r, &st);
	fflush(stdout);
	if (st.lost > 0) {
		fprintf(stderr, "%s: %ld of %ld messages lost (not received %lld s after the last PUBACK)\n", PROG,
		    st.lost, st.sent, DRAIN_NS / NS);
		goto out;
	}
	rc = 0;
out:
	conn_close(&s.c);
	conn_fini(&s.c);
	free(s.sent_ns);
	free(s.recv_ns);
	return rc;
}

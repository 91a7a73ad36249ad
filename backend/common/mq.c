#include "mq.h"

#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <MQTTAsync.h>

#include "log.h"
#include "util.h"

/*
 * If paho reports no completion for this long while publishes are in its
 * hands, the window stops trusting its count (paho 1.3.12 drops some over
 * a reconnect) rather than holding the queue back for good.
 */
#define MQ_STALE_MS 5000

/* Broker connections of one process that mq_redeliver() tells apart. */
#define MQ_MAX_SOCKETS 16

struct mq_sub {
	char *filter;
	int qos;
	int flags;
};

/* A publish waiting in mq's queue for room in the window; owns its copies. */
struct mq_pending {
	struct mq_pending *next;
	struct mq_publish p; /* its pointers point into buf */
	char *buf;
};

struct mq {
	MQTTAsync client;
	struct mq_config cfg; /* the scalars; its strings are NULL (the copies below) */
	char *url, *client_id, *username, *password;
	char *cafile, *certfile, *keyfile;
	int tls;
	mq_handler handler;
	void *arg;
	struct mq_sub subs[MQ_MAX_SUBS];
	int nsubs;

	pthread_mutex_t lock;
	pthread_cond_t cond;
	int connected;     /* CONNACK seen and not lost since */
	int64_t connected_at; /* mono_ms() of that CONNACK */
	int subs_pending;  /* SUBACKs still awaited on this connection */
	int ready;         /* connected and every subscription granted */
	int failed;        /* the first connect or a subscription failed */
	unsigned reconnects;
	char reason[512];
	char tls_error[160]; /* the last TLS error OpenSSL reported */
	int sock;            /* the broker connection's socket, -1 when not known (mq_redeliver) */
	int dropped;         /* mq_redeliver() shut it down; paho has not noticed yet */
	int sock_port;       /* its local port, checked before the socket is shut down */
	/* broker connections the process had before this client (inherited, or another client's) */
	int foreign_fd[MQ_MAX_SOCKETS], foreign_port[MQ_MAX_SOCKETS], nforeign, nforeign_lost;
	int nours; /* set_nodelay(): connections not foreign */

	/* the publish window (guarded by lock) */
	int inflight;          /* QoS 1 publishes in paho's hands */
	int64_t last_done;     /* mono_ms() of paho's last completion, or of the first publish after a quiet spell */
	struct mq_pending *qhead, **qtail;
	int qlen;
	int pumping; /* queued publishes taken by pump() and not yet handed to paho: later ones wait */

	int walk_refused; /* mq_walk(): the broker refused one (logged once) */
};

/* Completion context of a publish in the window. */
struct mq_pubctx {
	struct mq *mq;
	mq_done done;
	void *arg;
	int slot; /* it holds a window slot (QoS 1) */
};

static void pump(struct mq *mq);
static int local_port(int fd);

static void
set_failure(struct mq *mq, const char *reason)
{
	pthread_mutex_lock(&mq->lock);
	if (!mq->failed) {
		mq->failed = 1;
		str_copy(mq->reason, sizeof(mq->reason), reason);
	}
	pthread_cond_broadcast(&mq->cond);
	pthread_mutex_unlock(&mq->lock);
}

static void
on_suback(void *ctx, MQTTAsync_successData5 *resp)
{
	struct mq *mq = ctx;
	char why[256];

	/* A refused subscription comes back as a SUBACK with a reason code >= 0x80. */
	if (resp->reasonCode >= 0x80) {
		snprintf(why, sizeof(why), "subscription refused by the broker: %s",
		    MQTTReasonCode_toString(resp->reasonCode));
		log_error("subscribe refused", "reason=0x%02x", (unsigned)resp->reasonCode);
		set_failure(mq, why);
		return;
	}
	pthread_mutex_lock(&mq->lock);
	if (mq->subs_pending > 0 && --mq->subs_pending == 0) {
		mq->ready = 1;
		pthread_cond_broadcast(&mq->cond);
	}
	pthread_mutex_unlock(&mq->lock);
}

static void
on_subfail(void *ctx, MQTTAsync_failureData5 *resp)
{
	struct mq *mq = ctx;
	char why[256];

	snprintf(why, sizeof(why), "subscription failed: %s",
	    resp->message != NULL ? resp->message : MQTTReasonCode_toString(resp->reasonCode));
	log_error("subscribe failed", "code=%d reason=0x%02x", resp->code, (unsigned)resp->reasonCode);
	set_failure(mq, why);
}

static void
subscribe_all(struct mq *mq)
{
	struct mq_sub subs[MQ_MAX_SUBS];
	int n;

	/* copy under the lock: mq_unsubscribe() may change the list from another thread */
	pthread_mutex_lock(&mq->lock);
	n = mq->nsubs;
	mq->subs_pending = 0;
	for (int i = 0; i < n; i++) {
		subs[i] = mq->subs[i];
		subs[i].filter = strdup(mq->subs[i].filter);
		if (!(subs[i].flags & MQ_RETIRED))
			mq->subs_pending++;
	}
	if (mq->subs_pending == 0)
		mq->ready = 1;
	pthread_cond_broadcast(&mq->cond);
	pthread_mutex_unlock(&mq->lock);

	for (int i = 0; i < n; i++) {
		MQTTAsync_responseOptions opts = MQTTAsync_responseOptions_initializer;
		int rc = MQTTASYNC_FAILURE;

		if (subs[i].flags & MQ_RETIRED) {
			/* no answer awaited: "no subscription existed" is the usual one */
			if (subs[i].filter != NULL)
				rc = MQTTAsync_unsubscribe(mq->client, subs[i].filter, &opts);
			if (rc != MQTTASYNC_SUCCESS)
				log_warn("unsubscribe not sent", "filter=%s rc=%d",
				    LOGQ(subs[i].filter != NULL ? subs[i].filter : "?"), rc);
			free(subs[i].filter);
			continue;
		}
		opts.onSuccess5 = on_suback;
		opts.onFailure5 = on_subfail;
		opts.context = mq;
		opts.subscribeOptions.noLocal = (subs[i].flags & MQ_NO_LOCAL) ? 1 : 0;
		/* MQTT 5 retain handling: 0 always send retained messages, 1 only to a new subscription, 2 never */
		if (subs[i].flags & MQ_NO_RETAINED)
			opts.subscribeOptions.retainHandling = 2;
		else if (subs[i].flags & MQ_RETAIN_NEW_ONLY)
			opts.subscribeOptions.retainHandling = 1;
		if (subs[i].filter != NULL)
			rc = MQTTAsync_subscribe(mq->client, subs[i].filter, subs[i].qos, &opts);
		if (rc != MQTTASYNC_SUCCESS) {
			log_error("subscribe not sent", "filter=%s rc=%d", LOGQ(subs[i].filter != NULL ? subs[i].filter : "?"), rc);
			set_failure(mq, "subscription could not be sent");
		}
		free(subs[i].filter);
	}
}

/* The broker's port, from the URL. */
static long
broker_port(const struct mq *mq)
{
	const char *colon = strrchr(mq->url, ':');
	long port = mq->tls ? 8883 : 1883;

	if (colon != NULL && parse_long(colon + 1, 1, 65535, &port) != 0)
		port = mq->tls ? 8883 : 1883;
	return port;
}

/* Calls fn(mq, fd, local port) for every TCP socket of this process whose peer is the broker's port. */
static void
each_broker_socket(struct mq *mq, void (*fn)(struct mq *, int, int))
{
	long port = broker_port(mq);
	DIR *d;
	struct dirent *e;

	if ((d = opendir("/proc/self/fd")) == NULL)
		return;
	while ((e = readdir(d)) != NULL) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		long fd;
		int peer_port = -1;

		if (parse_long(e->d_name, 0, 1 << 30, &fd) != 0 || getpeername((int)fd, (struct sockaddr *)&ss, &len) != 0)
			continue;
		if (ss.ss_family == AF_INET)
			peer_port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
		else if (ss.ss_family == AF_INET6)
			peer_port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
		if (peer_port == port)
			fn(mq, (int)fd, local_port((int)fd));
	}
	closedir(d);
}

/* Notes a broker connection the process had before this client made one (inherited, another client's). */
static void
note_foreign(struct mq *mq, int fd, int port)
{
	if (mq->nforeign < MQ_MAX_SOCKETS) {
		mq->foreign_fd[mq->nforeign] = fd;
		mq->foreign_port[mq->nforeign++] = port;
	} else
		mq->nforeign_lost = 1;
}

static int
foreign(const struct mq *mq, int fd, int port)
{
	for (int i = 0; i < mq->nforeign; i++)
		if (mq->foreign_fd[i] == fd && mq->foreign_port[i] == port)
			return 1;
	return mq->nforeign_lost; /* too many to tell apart: none is known to be ours */
}

/*
 * paho 1.3.12 never sets TCP_NODELAY, and has no hook to reach its socket.
 * Without it a client that publishes in answer to a message (an executor's
 * first status, the notifier's alert) writes the PUBACK, then the PUBLISH,
 * and Nagle holds the PUBLISH until the broker's delayed ACK of the PUBACK:
 * 40 ms on every such hop (measured: accepted -> alert took 90 ms with zero
 * stage durations).  So, once connected, every TCP socket of this process
 * whose peer is the broker's port gets TCP_NODELAY (the setting is
 * idempotent; only paho's sockets talk to the broker).
 */
static void
nodelay(struct mq *mq, int fd, int port)
{
	int on = 1;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
	/* ours: the one connection that was not there before this client existed (for mq_redeliver()) */
	if (!foreign(mq, fd, port)) {
		mq->sock = mq->nours++ == 0 ? fd : -1;
		mq->sock_port = mq->sock >= 0 ? port : -1;
	}
}

static void
set_nodelay(struct mq *mq)
{
	pthread_mutex_lock(&mq->lock);
	mq->dropped = 0;
	mq->nours = 0;
	mq->sock = mq->sock_port = -1;
	each_broker_socket(mq, nodelay);
	pthread_mutex_unlock(&mq->lock);
}

/* The local port of socket fd, or -1. */
static int
local_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
		return -1;
	if (ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&ss)->sin_port);
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return -1;
}

/* Called by paho on the first connect and on every automatic reconnect. */
static void
on_connected(void *ctx, char *cause)
{
	struct mq *mq = ctx;

	(void)cause;
	set_nodelay(mq);
	pthread_mutex_lock(&mq->lock);
	mq->connected = 1;
	mq->connected_at = mono_ms();
	mq->ready = 0;
	pthread_mutex_unlock(&mq->lock);
	log_info("connected to broker", "url=%s client_id=%s", LOGQ(mq->url), LOGQ(mq->client_id));
	subscribe_all(mq);
	pump(mq); /* what waited while the broker was away */
}

/* The connection is gone: paho reconnects by itself (automatic reconnect); on_connected() says when it is back. */
static void
mark_lost(struct mq *mq)
{
	pthread_mutex_lock(&mq->lock);
	mq->connected = 0;
	mq->ready = 0;
	mq->reconnects++;
	mq->sock = -1;
	pthread_mutex_unlock(&mq->lock);
}

static void
on_connlost(void *ctx, char *cause)
{
	struct mq *mq = ctx;

	mark_lost(mq);
	log_warn("connection to broker lost; reconnecting", "url=%s cause=%s", LOGQ(mq->url),
	    LOGQ(cause != NULL ? cause : "unknown"));
}

/*
 * The broker closed the connection with a DISCONNECT of its own (MQTT 5:
 * an administrative action, a session taken over, the server shutting
 * down).  paho 1.3.12 then calls only this, not on_connlost() (it clears
 * its connected flag first), but still retries the connection: without
 * marking it lost here, mq_is_connected() said 1 until the retry
 * succeeded, and forever when the broker refuses it (a revoked account).
 */
static void
on_disconnected(void *ctx, MQTTProperties *props, enum MQTTReasonCodes rc)
{
	struct mq *mq = ctx;

	(void)props;
	mark_lost(mq);
	log_warn("broker closed the connection; reconnecting", "url=%s reason=0x%02x", LOGQ(mq->url), (unsigned)rc);
}

static void
on_connect_fail(void *ctx, MQTTAsync_failureData5 *resp)
{
	struct mq *mq = ctx;
	char why[512];
	/*
	 * On a refused CONNACK paho 1.3 puts the broker's reason code in
	 * resp->code (with the message "CONNACK return code"); its own
	 * failures (socket, TLS) are negative codes.
	 */
	int reason = resp->reasonCode != 0 ? (int)resp->reasonCode : (resp->code > 0 ? resp->code : 0);

	switch (reason) {
	/* mosquitto answers a wrong password with "not authorised" too, so one message covers both */
	case 4:
	case 5:
	case MQTTREASONCODE_BAD_USER_NAME_OR_PASSWORD:
	case MQTTREASONCODE_NOT_AUTHORIZED:
		snprintf(why, sizeof(why),
		    "the broker at %s refused the login for '%s': wrong user name or password, or the account may not connect",
		    mq->url, mq->username != NULL ? mq->username : "(anonymous)");
		break;
	case MQTTREASONCODE_SUCCESS:
		pthread_mutex_lock(&mq->lock);
		if (mq->tls_error[0] != '\0')
			snprintf(why, sizeof(why), "TLS with the broker at %s failed: %s%s", mq->url, mq->tls_error,
			    strstr(mq->tls_error, "verify failed") != NULL
				? " (is the CA file the one that signed the broker's certificate, and does it name this host?)"
				: "");
		else
			snprintf(why, sizeof(why), "cannot reach the broker at %s (%s)", mq->url,
			    resp->message != NULL ? resp->message : "connection failed");
		pthread_mutex_unlock(&mq->lock);
		break;
	default:
		snprintf(why, sizeof(why), "the broker at %s refused the connection: %s", mq->url,
		    MQTTReasonCode_toString((enum MQTTReasonCodes)reason));
	}
	set_failure(mq, why);
}

static int
on_message(void *ctx, char *topic, int topiclen, MQTTAsync_message *msg)
{
	struct mq *mq = ctx;
	struct mq_message m;
	char *rtopic = NULL;
	MQTTProperty *p;

	memset(&m, 0, sizeof(m));
	m.topic = topic; /* paho NUL-terminates topicName */
	(void)topiclen;
	m.payload = msg->payload;
	m.len = msg->payloadlen > 0 ? (size_t)msg->payloadlen : 0;
	m.qos = msg->qos;
	m.retained = msg->retained;
	if ((p = MQTTProperties_getProperty(&msg->properties, MQTTPROPERTY_CODE_RESPONSE_TOPIC)) != NULL &&
	    (rtopic = malloc((size_t)p->value.data.len + 1)) != NULL) {
		memcpy(rtopic, p->value.data.data, (size_t)p->value.data.len);
		rtopic[p->value.data.len] = '\0';
		m.response_topic = rtopic;
	}
	if ((p = MQTTProperties_getProperty(&msg->properties, MQTTPROPERTY_CODE_CORRELATION_DATA)) != NULL) {
		m.correlation = p->value.data.data;
		m.correlation_len = (size_t)p->value.data.len;
	}
	mq->handler(mq->arg, &m);
	free(rtopic);
	MQTTAsync_freeMessage(&msg);
	MQTTAsync_free(topic);
	return 1;
}

/* OpenSSL's error lines, kept so a failed connect can say why (untrusted CA, wrong host...). */
static int
on_tls_error(const char *str, size_t len, void *ctx)
{
	struct mq *mq = ctx;
	const char *f = str, *end = str + len;
	int field = 0;

	/* OpenSSL's lines read "C0D6...:error:0A000086:SSL routines:<function>:<reason>:<file>:<line>:"; keep <reason> */
	for (const char *p = str; p < end && field < 5; p++)
		if (*p == ':') {
			field++;
			f = p + 1;
		}
	if (field < 5)
		f = str;
	pthread_mutex_lock(&mq->lock);
	snprintf(mq->tls_error, sizeof(mq->tls_error), "%.*s", (int)(end - f), f);
	mq->tls_error[strcspn(mq->tls_error, field >= 5 ? ":\n" : "\n")] = '\0';
	pthread_mutex_unlock(&mq->lock);
	return 0;
}

static char *
dup_or_null(const char *s)
{
	return s != NULL ? strdup(s) : NULL;
}

struct mq *
mq_new(const struct mq_config *cfg, mq_handler handler, void *arg)
{
	MQTTAsync_createOptions copts = MQTTAsync_createOptions_initializer5;
	struct mq *mq;
	int rc;

	if (cfg->url == NULL || cfg->client_id == NULL || handler == NULL)
		return NULL;
	if ((mq = calloc(1, sizeof(*mq))) == NULL)
		return NULL;
	/* the scalars by value; the strings as owned copies below, none borrowed */
	mq->cfg = *cfg;
	mq->cfg.url = mq->cfg.client_id = mq->cfg.username = mq->cfg.password = NULL;
	mq->cfg.cafile = mq->cfg.certfile = mq->cfg.keyfile = NULL;
	if (mq->cfg.window <= 0)
		mq->cfg.window = MQ_WINDOW;
	if (mq->cfg.max_buffered <= 0)
		mq->cfg.max_buffered = 10000;
	mq->sock = mq->sock_port = -1;
	mq->qtail = &mq->qhead;
	/* paho names TLS ssl://; accept the usual mqtts:// too */
	if (strncmp(cfg->url, "mqtts://", 8) == 0) {
		if ((mq->url = malloc(strlen(cfg->url))) != NULL)
			snprintf(mq->url, strlen(cfg->url), "ssl://%s", cfg->url + 8);
	} else
		mq->url = strdup(cfg->url);
	mq->tls = mq->url != NULL && (strncmp(mq->url, "ssl://", 6) == 0 || strncmp(mq->url, "wss://", 6) == 0);
	if (mq->url != NULL)
		each_broker_socket(mq, note_foreign);
	mq->cafile = dup_or_null(cfg->cafile);
	mq->certfile = dup_or_null(cfg->certfile);
	mq->keyfile = dup_or_null(cfg->keyfile);
	mq->client_id = strdup(cfg->client_id);
	mq->username = dup_or_null(cfg->username);
	mq->password = dup_or_null(cfg->password);
	mq->handler = handler;
	mq->arg = arg;
	pthread_mutex_init(&mq->lock, NULL);
	pthread_cond_init(&mq->cond, NULL);
	if (mq->url == NULL || mq->client_id == NULL)
		goto fail;

	copts.sendWhileDisconnected = 1;
	copts.maxBufferedMessages = mq->cfg.max_buffered;
	copts.deleteOldestMessages = 0;
	rc = MQTTAsync_createWithOptions(&mq->client, mq->url, mq->client_id,
	    MQTTCLIENT_PERSISTENCE_NONE, NULL, &copts);
	if (rc != MQTTASYNC_SUCCESS) {
		log_error("cannot create MQTT client", "url=%s rc=%d", LOGQ(mq->url), rc);
		goto fail;
	}
	MQTTAsync_setCallbacks(mq->client, mq, on_connlost, on_message, NULL);
	MQTTAsync_setConnected(mq->client, mq, on_connected);
	MQTTAsync_setDisconnected(mq->client, mq, on_disconnected);
	return mq;
fail:
	mq_free(mq);
	return NULL;
}

int
mq_subscribe(struct mq *mq, const char *filter, int qos, int flags)
{
	if (mq->nsubs >= MQ_MAX_SUBS || (mq->subs[mq->nsubs].filter = strdup(filter)) == NULL) {
		log_error("cannot declare subscription", "filter=%s declared=%d", LOGQ(filter), mq->nsubs);
		return -1;
	}
	mq->subs[mq->nsubs].qos = qos;
	mq->subs[mq->nsubs].flags = flags;
	mq->nsubs++;
	return 0;
}

int
mq_unsubscribe(struct mq *mq, const char *filter)
{
	MQTTAsync_responseOptions opts = MQTTAsync_responseOptions_initializer;
	int found = -1;

	pthread_mutex_lock(&mq->lock);
	for (int i = 0; i < mq->nsubs; i++)
		if (strcmp(mq->subs[i].filter, filter) == 0) {
			free(mq->subs[i].filter);
			mq->subs[i] = mq->subs[--mq->nsubs];
			found = i;
			break;
		}
	pthread_mutex_unlock(&mq->lock);
	if (found < 0)
		return -1;
	if (MQTTAsync_unsubscribe(mq->client, filter, &opts) != MQTTASYNC_SUCCESS) {
		log_warn("unsubscribe not sent", "filter=%s", LOGQ(filter));
		return -1;
	}
	return 0;
}

/* A walk handed to paho: what its SUBACK needs. */
struct mq_walkctx {
	struct mq *mq;
	char *filter;
	mq_walked done;
	void *arg;
};

static void
walk_free(struct mq_walkctx *w)
{
	free(w->filter);
	free(w);
}

static void
on_walk_suback(void *ctx, MQTTAsync_successData5 *resp)
{
	struct mq_walkctx *w = ctx;
	MQTTAsync_responseOptions unsub = MQTTAsync_responseOptions_initializer;

	(void)resp;
	/* the broker walked the retained messages before this SUBACK: leave at once */
	if (MQTTAsync_unsubscribe(w->mq->client, w->filter, &unsub) != MQTTASYNC_SUCCESS)
		log_warn("unsubscribe not sent; the next walk leaves", "filter=%s", LOGQ(w->filter));
	if (w->done != NULL)
		w->done(w->arg, 1);
	walk_free(w);
}

static void
on_walk_subfail(void *ctx, MQTTAsync_failureData5 *resp)
{
	struct mq_walkctx *w = ctx;
	int first;

	/* refused (paho hands a refusing SUBACK here), or not sent: the connection went */
	if (resp->reasonCode >= 0x80) {
		pthread_mutex_lock(&w->mq->lock);
		first = !w->mq->walk_refused;
		w->mq->walk_refused = 1;
		pthread_mutex_unlock(&w->mq->lock);
		if (first)
			log_warn("the broker refused the walk over retained messages; expired ones stay in its memory "
				 "until something subscribes over them (grant \"topic subscribe\" on the filter in the "
				 "acl file, then pizza-admin broker-init)",
			    "filter=%s reason=0x%02x", LOGQ(w->filter), (unsigned)resp->reasonCode);
	}
	if (w->done != NULL)
		w->done(w->arg, 0);
	walk_free(w);
}

int
mq_walk(struct mq *mq, const char *filter, mq_walked done, void *arg)
{
	MQTTAsync_responseOptions sub = MQTTAsync_responseOptions_initializer;
	struct mq_walkctx *w;

	if (!mq_is_connected(mq))
		return -1;
	if ((w = calloc(1, sizeof(*w))) == NULL || (w->filter = strdup(filter)) == NULL) {
		free(w);
		return -1;
	}
	w->mq = mq;
	w->done = done;
	w->arg = arg;
	sub.onSuccess5 = on_walk_suback;
	sub.onFailure5 = on_walk_subfail;
	sub.context = w;
	sub.subscribeOptions.retainHandling = 0; /* every retained message under filter: the walk */
	if (MQTTAsync_subscribe(mq->client, filter, 0, &sub) != MQTTASYNC_SUCCESS) {
		walk_free(w);
		return -1;
	}
	return 0;
}

int
mq_connect(struct mq *mq, int timeout_ms, char *err, size_t errlen)
{
	if (mq_connect_start(mq, timeout_ms, err, errlen) != 0)
		return -1;
	return mq_connect_wait(mq, timeout_ms, err, errlen);
}

int
mq_connect_start(struct mq *mq, int timeout_ms, char *err, size_t errlen)
{
	MQTTAsync_connectOptions opts = MQTTAsync_connectOptions_initializer5;
	MQTTAsync_SSLOptions ssl = MQTTAsync_SSLOptions_initializer;
	MQTTProperties props = MQTTProperties_initializer;
	MQTTProperty prop;
	int rc;

	prop.identifier = MQTTPROPERTY_CODE_SESSION_EXPIRY_INTERVAL;
	prop.value.integer4 = mq->cfg.session_expiry_s;
	MQTTProperties_add(&props, &prop);

	opts.keepAliveInterval = 20;
	opts.cleanstart = mq->cfg.clean_start;
	opts.connectProperties = &props;
	opts.username = mq->username;
	opts.password = mq->password;
	opts.automaticReconnect = 1;
	opts.minRetryInterval = 1;
	opts.maxRetryInterval = 8;
	opts.connectTimeout = timeout_ms / 1000 > 0 ? timeout_ms / 1000 : 1;
	/* paho lowers this to the broker's Receive Maximum from the CONNACK */
	opts.maxInflight = mq->cfg.max_inflight > 0 ? mq->cfg.max_inflight : 65535;
	opts.onFailure5 = on_connect_fail;
	opts.context = mq;
	if (mq->tls) {
		ssl.trustStore = mq->cafile; /* NULL: the system's CAs */
		ssl.keyStore = mq->certfile;
		ssl.privateKey = mq->keyfile;
		ssl.enableServerCertAuth = 1;
		ssl.verify = 1; /* the certificate must name the host we dialled */
		ssl.sslVersion = MQTT_SSL_VERSION_TLS_1_2;
		ssl.ssl_error_cb = on_tls_error;
		ssl.ssl_error_context = mq;
		opts.ssl = &ssl;
	}

	rc = MQTTAsync_connect(mq->client, &opts);
	MQTTProperties_free(&props);
	if (rc != MQTTASYNC_SUCCESS) {
		snprintf(err, errlen, "cannot start connecting to %s (paho error %d)", mq->url, rc);
		return -1;
	}
	return 0;
}

int
mq_connect_wait(struct mq *mq, int timeout_ms, char *err, size_t errlen)
{
	struct timespec deadline;
	int result = -1;

	clock_after_ms(CLOCK_REALTIME, timeout_ms, &deadline);
	pthread_mutex_lock(&mq->lock);
	while (!mq->ready && !mq->failed) {
		if (pthread_cond_timedwait(&mq->cond, &mq->lock, &deadline) == ETIMEDOUT)
			break;
	}
	if (mq->ready && !mq->failed) {
		result = 0;
		mq->reconnects = 0;
	} else if (mq->failed)
		snprintf(err, errlen, "%s", mq->reason);
	else
		snprintf(err, errlen, "no answer from the broker at %s within %d ms", mq->url, timeout_ms);
	pthread_mutex_unlock(&mq->lock);
	return result;
}

/* A completion of a publish in the window: frees its slot, tells the caller, sends what waited. */
static void
pub_done(struct mq_pubctx *pc, int ok)
{
	struct mq *mq = pc->mq;

	pthread_mutex_lock(&mq->lock);
	if (pc->slot && mq->inflight > 0)
		mq->inflight--;
	mq->last_done = mono_ms();
	pthread_mutex_unlock(&mq->lock);
	if (pc->done != NULL)
		pc->done(pc->arg, ok);
	free(pc);
	pump(mq);
}

static void
on_pub_ok(void *ctx, MQTTAsync_successData5 *resp)
{
	(void)resp;
	pub_done(ctx, 1);
}

static void
on_pub_fail(void *ctx, MQTTAsync_failureData5 *resp)
{
	log_warn("publish failed", "code=%d reason=0x%02x", resp->code, (unsigned)resp->reasonCode);
	pub_done(ctx, 0);
}

/*
 * Hands p to paho.  A QoS 1 publish (its window slot already taken) gets a
 * completion context that gives the slot back.  Returns 0, or -1 when paho
 * refused it (p->done is then not called).
 */
static int
send_now(struct mq *mq, const struct mq_publish *p)
{
	MQTTAsync_message msg = MQTTAsync_message_initializer;
	MQTTAsync_responseOptions opts = MQTTAsync_responseOptions_initializer;
	MQTTProperty prop;
	struct mq_pubctx *pc = NULL;
	int rc;

	msg.payload = (void *)p->payload;
	msg.payloadlen = (int)p->len;
	msg.qos = p->qos;
	msg.retained = p->retained;
	if (p->expiry_s > 0) {
		prop.identifier = MQTTPROPERTY_CODE_MESSAGE_EXPIRY_INTERVAL;
		prop.value.integer4 = p->expiry_s;
		MQTTProperties_add(&msg.properties, &prop);
	}
	if (p->response_topic != NULL) {
		prop.identifier = MQTTPROPERTY_CODE_RESPONSE_TOPIC;
		prop.value.data.data = (char *)p->response_topic;
		prop.value.data.len = (int)strlen(p->response_topic);
		MQTTProperties_add(&msg.properties, &prop);
	}
	if (p->correlation != NULL) {
		prop.identifier = MQTTPROPERTY_CODE_CORRELATION_DATA;
		prop.value.data.data = (char *)p->correlation;
		prop.value.data.len = (int)p->correlation_len;
		MQTTProperties_add(&msg.properties, &prop);
	}
	if (p->qos > 0 || p->done != NULL) {
		if ((pc = malloc(sizeof(*pc))) == NULL) {
			MQTTProperties_free(&msg.properties);
			return -1;
		}
		pc->mq = mq;
		pc->done = p->done;
		pc->arg = p->done_arg;
		pc->slot = p->qos > 0;
		opts.onSuccess5 = on_pub_ok;
		opts.onFailure5 = on_pub_fail;
		opts.context = pc;
	}
	rc = MQTTAsync_sendMessage(mq->client, p->topic, &msg, &opts);
	MQTTProperties_free(&msg.properties);
	if (rc != MQTTASYNC_SUCCESS) {
		log_error("publish refused", "topic=%s rc=%d%s", LOGQ(p->topic), rc,
		    rc == MQTTASYNC_MAX_BUFFERED_MESSAGES ? " why=offline_buffer_full" : "");
		free(pc);
		return -1;
	}
	return 0;
}

/* Whether another publish may go to paho now.  Lock held. */
static int
window_open(struct mq *mq, int64_t now)
{
	if (!mq->connected)
		return 0;
	if (mq->inflight < mq->cfg.window)
		return 1;
	if (now - mq->last_done < MQ_STALE_MS)
		return 0;
	log_warn("no publish completions for a while; not counting them any longer", "in_flight=%d", mq->inflight);
	mq->inflight = 0;
	return 1;
}

/* Takes a window slot.  Lock held. */
static void
take_slot(struct mq *mq, int64_t now)
{
	if (mq->inflight++ == 0)
		mq->last_done = now; /* staleness counts from the first publish after a quiet spell */
}

/* A deep copy of p for the queue, or NULL out of memory. */
static struct mq_pending *
pending_new(const struct mq_publish *p)
{
	size_t tl = strlen(p->topic) + 1, rl = p->response_topic != NULL ? strlen(p->response_topic) + 1 : 0;
	struct mq_pending *q = calloc(1, sizeof(*q));

	if (q == NULL || (q->buf = malloc(tl + rl + p->len + p->correlation_len + 1)) == NULL) {
		free(q);
		return NULL;
	}
	q->p = *p;
	q->p.topic = memcpy(q->buf, p->topic, tl);
	q->p.payload = memcpy(q->buf + tl, p->payload, p->len);
	if (rl > 0)
		q->p.response_topic = memcpy(q->buf + tl + p->len, p->response_topic, rl);
	if (p->correlation != NULL)
		q->p.correlation = memcpy(q->buf + tl + p->len + rl, p->correlation, p->correlation_len);
	return q;
}

/* Sends queued publishes while the window has room. */
static void
pump(struct mq *mq)
{
	for (;;) {
		struct mq_pending *q;
		int64_t now = mono_ms();
		int rc;

		pthread_mutex_lock(&mq->lock);
		if ((q = mq->qhead) == NULL || !window_open(mq, now)) {
			pthread_mutex_unlock(&mq->lock);
			return;
		}
		if ((mq->qhead = q->next) == NULL)
			mq->qtail = &mq->qhead;
		mq->qlen--;
		mq->pumping++;
		take_slot(mq, now);
		pthread_mutex_unlock(&mq->lock);
		rc = send_now(mq, &q->p);
		pthread_mutex_lock(&mq->lock);
		mq->pumping--;
		if (rc != 0)
			mq->inflight--;
		pthread_mutex_unlock(&mq->lock);
		if (rc != 0 && q->p.done != NULL)
			q->p.done(q->p.done_arg, 0); /* the caller's own retry takes it from here */
		free(q->buf);
		free(q);
	}
}

int
mq_publish(struct mq *mq, const struct mq_publish *p)
{
	struct mq_pending *q;
	int64_t now = mono_ms();
	int rc;

	if (p->qos == 0)
		return send_now(mq, p);
	pthread_mutex_lock(&mq->lock);
	/*
	 * straight to paho when nothing waits ahead of it, queued or being handed
	 * over by pump() (order is kept), and the window has room
	 */
	if (mq->qhead == NULL && mq->pumping == 0 && window_open(mq, now)) {
		take_slot(mq, now);
		pthread_mutex_unlock(&mq->lock);
		if ((rc = send_now(mq, p)) != 0) {
			pthread_mutex_lock(&mq->lock);
			mq->inflight--;
			pthread_mutex_unlock(&mq->lock);
		}
		return rc;
	}
	if (mq->qlen >= mq->cfg.max_buffered || (q = pending_new(p)) == NULL) {
		int qlen = mq->qlen;
		pthread_mutex_unlock(&mq->lock);
		log_error("publish refused", "topic=%s why=queue_full queued=%d", LOGQ(p->topic), qlen);
		return -1;
	}
	*mq->qtail = q;
	mq->qtail = &q->next;
	mq->qlen++;
	pthread_mutex_unlock(&mq->lock);
	return 0;
}

int
mq_publish_text(struct mq *mq, const char *topic, const char *text, int qos, int retained, unsigned expiry_s)
{
	struct mq_publish p;

	memset(&p, 0, sizeof(p));
	p.topic = topic;
	p.payload = text;
	p.len = strlen(text);
	p.qos = qos;
	p.retained = retained;
	p.expiry_s = expiry_s;
	return mq_publish(mq, &p);
}

int
mq_window(struct mq *mq)
{
	return mq->cfg.window; /* set once by mq_new() */
}

int
mq_window_free(struct mq *mq)
{
	int n;

	pthread_mutex_lock(&mq->lock);
	n = mq->cfg.window - mq->inflight - mq->qlen;
	pthread_mutex_unlock(&mq->lock);
	return n;
}

int
mq_dropped(struct mq *mq)
{
	int d;

	pthread_mutex_lock(&mq->lock);
	d = mq->dropped;
	pthread_mutex_unlock(&mq->lock);
	return d;
}

void
mq_redeliver(struct mq *mq)
{
	int sock, port, dropped;

	pthread_mutex_lock(&mq->lock);
	sock = mq->sock;
	port = mq->sock_port;
	dropped = mq->dropped;
	pthread_mutex_unlock(&mq->lock);
	if (dropped)
		return; /* a message read before paho noticed: its PUBACK cannot go out either */
	/* the port check: the descriptor is still the connection it was at connect time */
	if (sock >= 0 && port > 0 && local_port(sock) == port && shutdown(sock, SHUT_RDWR) == 0) {
		pthread_mutex_lock(&mq->lock);
		mq->dropped = 1;
		pthread_mutex_unlock(&mq->lock);
		log_warn("leaving a message unacknowledged; dropping the connection so the broker delivers it again",
		    "url=%s", LOGQ(mq->url));
		return;
	}
	log_error("cannot leave a message unacknowledged on this connection; exiting for a restart (the broker "
		  "delivers it again)", "url=%s", LOGQ(mq->url));
	_exit(75);
}

int
mq_is_connected(struct mq *mq)
{
	int c;

	pthread_mutex_lock(&mq->lock);
	c = mq->connected;
	pthread_mutex_unlock(&mq->lock);
	return c;
}

int64_t
mq_connected_for(struct mq *mq)
{
	int64_t ms;

	pthread_mutex_lock(&mq->lock);
	ms = mq->connected ? mono_ms() - mq->connected_at : -1;
	pthread_mutex_unlock(&mq->lock);
	return ms;
}

unsigned
mq_reconnects(struct mq *mq)
{
	unsigned n;

	pthread_mutex_lock(&mq->lock);
	n = mq->reconnects;
	pthread_mutex_unlock(&mq->lock);
	return n;
}

void
mq_disconnect(struct mq *mq, int timeout_ms)
{
	MQTTAsync_disconnectOptions opts = MQTTAsync_disconnectOptions_initializer5;
	int64_t deadline = mono_ms() + timeout_ms;

	if (mq == NULL)
		return;
	/* let queued publishes drain while we are still connected */
	while (mq_is_connected(mq) && mono_ms() < deadline) {
		MQTTAsync_token *tokens = NULL;
		int pending;

		pthread_mutex_lock(&mq->lock);
		pending = mq->qlen;
		pthread_mutex_unlock(&mq->lock);
		if (MQTTAsync_getPendingTokens(mq->client, &tokens) == MQTTASYNC_SUCCESS && tokens != NULL) {
			for (int i = 0; tokens[i] != -1; i++)
				pending++;
			MQTTAsync_free(tokens);
		}
		if (pending == 0)
			break;
		sleep_ms(10);
	}
	opts.timeout = timeout_ms;
	MQTTAsync_disconnect(mq->client, &opts);
	/* paho finishes the disconnect on its own thread; give it a moment */
	for (int i = 0; i < 50 && MQTTAsync_isConnected(mq->client); i++)
		sleep_ms(10);
}

void
mq_free(struct mq *mq)
{
	if (mq == NULL)
		return;
	if (mq->client != NULL)
		MQTTAsync_destroy(&mq->client);
	for (int i = 0; i < mq->nsubs; i++)
		free(mq->subs[i].filter);
	/* what never left the queue is given up: its caller hears so (an outbox frees its record) */
	while (mq->qhead != NULL) {
		struct mq_pending *q = mq->qhead;
		mq->qhead = q->next;
		if (q->p.done != NULL)
			q->p.done(q->p.done_arg, 0);
		free(q->buf);
		free(q);
	}
	free(mq->url);
	free(mq->cafile);
	free(mq->certfile);
	free(mq->keyfile);
	free(mq->client_id);
	free(mq->username);
	free(mq->password);
	pthread_mutex_destroy(&mq->lock);
	pthread_cond_destroy(&mq->cond);
	free(mq);
}

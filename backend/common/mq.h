/*
 * mq.h - the MQTT client every program uses: paho MQTTAsync, MQTT 5.
 *
 * One struct mq per connection.  Subscriptions are declared before
 * mq_connect() and re-issued on every (re)connect; paho reconnects by itself
 * with a doubling backoff (1 s up to 8 s) once the first connect succeeded.
 *
 * The publish window: at most mq_config.window QoS 1 publishes are in
 * paho's hands at once; the rest wait in mq's own queue, in order, and go
 * out as the broker acknowledges earlier ones (or once reconnected: while
 * the broker is away publishes wait here, not in paho's offline buffer).
 * Two paho 1.3.12 limits make this necessary: at the broker's Receive
 * Maximum paho's send thread sleeps a whole second, and paho scans its
 * whole command queue to pick each message id, so a queue of thousands
 * made every publish cost milliseconds.  The queue holds at most
 * mq_config.max_buffered; past that mq_publish() fails loudly instead of
 * dropping.
 *
 * Threads: the message handler and the publish completion callbacks run on
 * paho's receive thread, one at a time, while paho holds its global lock.
 * The PUBACK for a QoS 1 message goes out when the handler returns, so a
 * handler that must not lose work does it (quickly) before returning.
 * Every mq_* function may be called from any thread, handlers included.
 */
#ifndef PIZZA_MQ_H
#define PIZZA_MQ_H

#include <stddef.h>
#include <stdint.h>

struct mq;

struct mq_message {
	const char *topic;
	const char *payload; /* not NUL-terminated */
	size_t len;
	int qos;
	int retained;
	const char *response_topic; /* NULL if absent */
	const void *correlation;    /* NULL if absent */
	size_t correlation_len;
};

typedef void (*mq_handler)(void *arg, const struct mq_message *m);
/* ok is 1 when the broker acknowledged the publish (PUBACK for QoS 1), else 0. */
typedef void (*mq_done)(void *arg, int ok);

struct mq_config {
	const char *url;       /* tcp://host:port, or mqtts://host:port (also ssl://) for TLS */
	const char *client_id; /* stable for a persistent session */
	const char *username;  /* NULL: anonymous */
	const char *password;
	int clean_start;            /* 0: resume the broker-side session */
	unsigned session_expiry_s;  /* how long the broker keeps the session when we are gone */
	int max_buffered;           /* publishes queued (window full or disconnected); 0 means 10000 */
	int max_inflight;           /* paho's own limit of unacknowledged QoS 1 publishes; 0: the broker's Receive Maximum */
	int window;                 /* QoS 1 publishes in paho's hands at once; 0 means MQ_WINDOW */
	/* TLS, for mqtts:// (or ssl://) URLs: the broker's certificate must chain to
	 * cafile and name the URL's host; certfile/keyfile are an optional client
	 * certificate. */
	const char *cafile;
	const char *certfile;
	const char *keyfile;
};

struct mq_publish {
	const char *topic;
	const void *payload;
	size_t len;
	int qos;
	int retained;
	unsigned expiry_s;          /* message expiry interval, 0 for none */
	const char *response_topic; /* request/response, or NULL */
	const void *correlation;
	size_t correlation_len;
	mq_done done;               /* optional completion callback */
	void *done_arg;
};

/* Half the broker's Receive Maximum (max_inflight_messages 1000 in broker-config/). */
#define MQ_WINDOW 500

#define MQ_NO_LOCAL 0x1       /* do not deliver our own publishes back to us */
#define MQ_RETAIN_NEW_ONLY 0x2 /* retained messages only when the subscription is new */
#define MQ_NO_RETAINED 0x4     /* no retained messages at all: only what is published from now on */
/*
 * A filter an earlier version of this client subscribed to and this one does
 * not: UNSUBSCRIBE is sent at every connect instead, so a persistent session
 * left by the earlier version stops collecting messages nobody acts on.
 */
#define MQ_RETIRED 0x8

/*
 * Creates a client; nothing is sent yet.  Every string of cfg is copied:
 * the caller may free them on return.  Returns NULL on a bad config or out
 * of memory.
 */
struct mq *mq_new(const struct mq_config *cfg, mq_handler handler, void *arg);

/*
 * Declares a subscription, sent at every connect.  Call before mq_connect().
 * Returns 0, or -1 when MQ_MAX_SUBS are declared already or out of memory.
 */
#define MQ_MAX_SUBS 16
int mq_subscribe(struct mq *mq, const char *filter, int qos, int flags);

/*
 * Stops a declared subscription now and at later reconnects (used to stop
 * taking work before a graceful shutdown).  Returns 0, or -1 if filter was
 * not declared or the UNSUBSCRIBE could not be sent.
 */
int mq_unsubscribe(struct mq *mq, const char *filter);

/* mq_walk()'s verdict, on paho's thread: walked 1 (the broker did), or 0 (refused, or not sent). */
typedef void (*mq_walked)(void *arg, int walked);

/*
 * Has the broker walk the retained messages under filter once: a SUBSCRIBE
 * with retain handling 0, and an UNSUBSCRIBE as soon as it is granted (the
 * broker walks before it answers).  Not declared: a reconnect does not
 * subscribe again.  mosquitto 2.0 frees an expired retained message only
 * when a subscription walks over it, so a client that retains with an
 * expiry calls this now and then.  The account must be allowed to
 * subscribe to filter and not to receive there (acl file: "topic subscribe
 * FILTER"): then nothing is delivered.  A refusal is logged once.  done
 * (may be NULL) gets the verdict.  Returns 0 when the SUBSCRIBE was handed
 * to paho (done will be called), -1 when not connected, out of memory or
 * refused by paho (it will not).
 */
int mq_walk(struct mq *mq, const char *filter, mq_walked done, void *arg);

/*
 * Connects and waits (at most timeout_ms) until the broker accepted the
 * connection and every declared subscription.  Returns 0, or -1 with a
 * one-line reason in err (unreachable, bad credentials, not authorised,
 * subscription refused, timeout).  After a 0, lost connections are
 * re-established automatically.
 */
int mq_connect(struct mq *mq, int timeout_ms, char *err, size_t errlen);
/*
 * mq_connect() in two halves, for a process that opens many connections at
 * once: start sends the CONNECT and returns (-1 if paho refused to start);
 * wait then waits as mq_connect() does.
 */
int mq_connect_start(struct mq *mq, int timeout_ms, char *err, size_t errlen);
int mq_connect_wait(struct mq *mq, int timeout_ms, char *err, size_t errlen);

/*
 * Publishes p (everything in it is copied).  Returns 0 when it was handed
 * to paho or queued behind the window, -1 when it was refused (the queue
 * is full, paho refused it): the message is then not sent and p->done is
 * not called.  p->done, when set, runs once with the broker's verdict, or
 * with 0 if paho later gives the publish up.
 */
int mq_publish(struct mq *mq, const struct mq_publish *p);

/* mq_publish() of a NUL-terminated text with no completion callback, response topic or correlation. */
int mq_publish_text(struct mq *mq, const char *topic, const char *text, int qos, int retained, unsigned expiry_s);

/* The publish window's size (mq_config.window, or MQ_WINDOW). */
int mq_window(struct mq *mq);

/* Room in the publish window now: window minus publishes in flight and queued (may be <= 0). */
int mq_window_free(struct mq *mq);

/*
 * Called from inside the message handler: the message being handled must
 * not be acknowledged.  paho sends the PUBACK when the handler returns and
 * has no manual acknowledgement, so mq shuts the connection's socket down
 * first: the PUBACK cannot go out, paho reconnects by itself, and the
 * broker delivers the message again (with everything unacknowledged after
 * it) to the persistent session.  Nothing sleeps.  When the socket cannot
 * be told apart (several connections to the broker in one process), the
 * process exits with status 75 (EX_TEMPFAIL) instead, for its supervisor
 * to restart it: the broker redelivers then too.
 */
void mq_redeliver(struct mq *mq);

/*
 * 1 after mq_redeliver() dropped the connection and until paho has made a
 * new one: a message handed over meanwhile was read before the drop, will
 * not be acknowledged either, and comes again; acting on it now would act
 * twice.
 */
int mq_dropped(struct mq *mq);

/* 1 while connected to the broker. */
int mq_is_connected(struct mq *mq);
/* Milliseconds since the current connection was made, or -1 while disconnected. */
int64_t mq_connected_for(struct mq *mq);
/* Number of times the connection was lost since mq_connect(). */
unsigned mq_reconnects(struct mq *mq);

/* Waits up to timeout_ms for in-flight publishes, then disconnects cleanly. */
void mq_disconnect(struct mq *mq, int timeout_ms);
/*
 * Frees the client (disconnect first).  Publishes still in mq's queue are
 * given up: their done(arg, 0) runs first, so call it before freeing what
 * those callbacks use.  NULL is ignored.
 */
void mq_free(struct mq *mq);

#endif

/*
 * harness.h - integration tests against real parts: a private mosquitto
 * started from broker-config/ on a free port, the real service binaries,
 * real SQLite files, and an observer client that records every message on
 * pizza/# (as the admin account).
 *
 * Environment: PIZZA_ROOT (the checkout) and PIZZA_BIN (built binaries),
 * both set by `make integration`.
 */
#ifndef PIZZA_HARNESS_H
#define PIZZA_HARNESS_H

#include <netinet/in.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "event.h"
#include "mq.h"
#include "topic.h" /* TOPIC_ALL_STATUS, TOPIC_ACCEPTED, TOPIC_READY for the _on variants */

#define H_MAX_PROCS 16

struct h_msg {
	char *topic;
	char *payload;
	size_t len;
	int retained;
	int64_t mono_ms;
	char *corr; /* correlation data, NUL-terminated, or NULL */
};

struct h_proc {
	char name[64];
	pid_t pid;
	char log[640];
	char *argv[40]; /* what it was started with, for h_restart (h_service passes at most 39) */
};

struct stack {
	char dir[400];
	int port;        /* the broker's */
	int tls_port;    /* the broker's TLS listener (certificates in build/test-run/certs) */
	int ws_port;     /* the broker's MQTT over WebSockets listener (ws://127.0.0.1:<ws_port>) */
	int http_port;   /* order-service's HTTP API */
	int history_port; /* order-history's read API */
	pid_t broker;
	struct h_proc procs[H_MAX_PROCS];
	int nprocs;
	struct mq *observer;
	pthread_mutex_t lock;
	struct h_msg *msgs;
	size_t nmsgs, capmsgs;
	struct mq *phones[8];
	char phone_users[8][32];
	int nphones;
};

/* Starts a private broker in a fresh folder named after name. Returns 0 or -1. */
int h_stack_start(struct stack *s, const char *name);
/*
 * Stops everything (SIGTERM, then SIGKILL after 10 s) and frees; keeps the
 * folder for post-mortems.  Returns -1 (after printing it) if any process
 * logged a sanitizer finding (AddressSanitizer, LeakSanitizer, UBSan), else 0:
 * call it as a cmocka teardown's result.
 */
int h_stack_stop(struct stack *s);

/*
 * Starts bin (a service name under PIZZA_BIN) with the broker URL, its own
 * account and a database in the stack's folder, plus extra arguments (NULL
 * ended), and waits until it logs msg="ready".  name labels the process
 * and its log (e.g. "exec-1").  Returns the index in s->procs, or -1.
 */
int h_service(struct stack *s, const char *name, const char *bin, ...) __attribute__((sentinel));
/* Sends sig to the named process and, for SIGTERM/SIGKILL, waits for it. */
void h_signal(struct stack *s, const char *name, int sig);
/*
 * Stops the named process with sig (SIGTERM for a clean stop, SIGKILL for a
 * crash), starts it again with the same arguments and waits until it logs
 * ready again.  Returns 0 or -1.
 */
int h_restart(struct stack *s, const char *name, int sig);
/* A free TCP port on 127.0.0.1 (for a service's extra listener). */
int h_free_port(void);
/* Stops the broker (SIGTERM) and returns once it is gone; h_broker_start() starts it again on the same port. */
void h_broker_stop(struct stack *s);
int h_broker_start(struct stack *s);
/* What h_http() got back: status 0 when no answer came. */
struct h_reply {
	long status;
	char *body;    /* NUL-terminated, never NULL after h_http() */
	char *headers; /* the raw response header lines */
};

/*
 * Sends method to url (libcurl, 10 s timeout) with header lines (NULL-ended,
 * may be NULL) and body (may be NULL).  Fills *r, which the caller frees with
 * h_reply_free().  Returns r->status.
 */
long h_http(const char *method, const char *url, const char *const *headers, const char *body, struct h_reply *r);
void h_reply_free(struct h_reply *r);
/* Copies the value of response header name (case-insensitive) into out; "" when absent. */
const char *h_reply_header(const struct h_reply *r, const char *name, char *out, size_t n);

/* GETs url with the curl command, body into a new string *out; returns the HTTP status or -1. */
int h_http_get(const char *url, char **out);
/* Stops the broker with SIGTERM (it saves its database) and starts it again on the same port. */
int h_broker_restart(struct stack *s);

/* Waits until the named process's log holds needle at least count times. Returns 0 or -1 on timeout. */
int h_wait_log(struct stack *s, const char *name, const char *needle, int count, int timeout_ms);
/*
 * The same for the broker's log (<dir>/mosquitto.log, every run of it).
 * What mosquitto logs there is its configuration's log_type lines: a test
 * wanting more (e.g. "log_type unsubscribe") appends them to
 * <dir>/mosquitto.conf and restarts the broker.
 */
int h_wait_broker_log(struct stack *s, const char *needle, int count, int timeout_ms);

/* Starts the observer (admin, pizza/#). Returns 0 or -1. */
int h_observer(struct stack *s);

/* Password of a dev user (from broker-config/dev/users.txt) or service account; static buffer. */
const char *h_password(struct stack *s, const char *user);

/*
 * Places an order for user (a dev user) over MQTT request/response, as a
 * phone would, without waiting.  The reply is recorded by the observer;
 * h_wait_reply() returns its order id.
 */
int h_place(struct stack *s, const char *user, const char *sku, int qty, const char *corr);
/*
 * Waits for the reply with correlation corr.  Returns 0 with the order id
 * in out when the order was accepted, 1 with "<error>: <detail>" in out
 * when it was refused, -1 on timeout.
 */
int h_wait_reply(struct stack *s, const char *corr, char *out, size_t n, int timeout_ms);

/*
 * Number of recorded messages, on any topic, decoding to an event,
 * optionally for order_id (NULL: any), of type (0: any) and with status (0:
 * any).  The same status can travel on more than one topic (an executor's
 * accepted goes to TOPIC_ACCEPTED, prep..ready to the phone's status
 * topic): the _on variants count only messages whose topic matches filter.
 */
int h_count_events(struct stack *s, const char *order_id, enum event_type type, int status);
/* Waits until h_count_events(...) >= want. Returns the final count. */
int h_wait_events(struct stack *s, const char *order_id, enum event_type type, int status, int want, int timeout_ms);
/* Copies the recorded events for order_id of type (in arrival order) into out (max n). Returns how many. */
int h_events(struct stack *s, const char *order_id, enum event_type type, struct event *out, int n);
/*
 * The same three on the messages whose topic matches filter (MQTT
 * wildcards + and #; NULL: any topic), e.g. TOPIC_ALL_STATUS for what
 * phones are shown, TOPIC_ACCEPTED or TOPIC_READY for what the kitchen
 * tells the services.
 */
int h_count_events_on(struct stack *s, const char *filter, const char *order_id, enum event_type type, int status);
int h_wait_events_on(struct stack *s, const char *filter, const char *order_id, enum event_type type, int status,
    int want, int timeout_ms);
int h_events_on(struct stack *s, const char *filter, const char *order_id, enum event_type type, struct event *out,
    int n);
/* Number of recorded messages whose topic equals topic. */
int h_count_topic(struct stack *s, const char *topic);

/*
 * Runs argv (NULL ended; argv[0] a binary under PIZZA_BIN) with the broker
 * URL in PIZZA_MQTT_URL and password in PIZZA_PASSWORD (may be NULL),
 * capturing stdout and stderr into a new string *out.  Returns the exit status, or -1.
 */
int h_run(struct stack *s, const char *password, char **out, char *const argv[]);

/*
 * Starts argv like h_run but in the background, its stdout and stderr going
 * to a file; h_collect() waits for it and returns its exit status with the
 * output in a new string *out.
 */
pid_t h_spawn(struct stack *s, const char *password, char *const argv[], const char *outfile);
int h_collect(pid_t pid, const char *outfile, char **out, int timeout_ms);

/* 1 while the named process is running. */
int h_alive(struct stack *s, const char *name);

/* Publishes payload (QoS 1) to topic as account (a service or dev user). Returns 0 once the broker acknowledged. */
int h_publish(struct stack *s, const char *account, const char *topic, const void *payload, size_t len);

/*
 * A bearer token for user signed with the stack's token secret (static buffer).
 * The account is created first through order-service's admin API, as
 * pizza-admin does (once per stack and user), when order-service runs.
 */
const char *h_token(struct stack *s, const char *user);

/* A SQLite query on a service's database returning one integer (e.g. count(*)). */
int64_t h_sql_int(struct stack *s, const char *db, const char *sql, const char *arg);

/* Waits ms milliseconds. */
void h_sleep(int ms);

/* A listening TCP socket of a process, from /proc (nothing is sent to it). */
struct h_listen {
	char addr[INET6_ADDRSTRLEN]; /* its local address: "127.0.0.1", "::", "::ffff:127.0.0.1" */
	int port;
	int loopback; /* 1 for 127.0.0.1, ::1 and ::ffff:127.0.0.1 only */
};

/*
 * The listening TCP sockets (IPv4 and IPv6) of process pid, from its file
 * descriptors and /proc/<pid>/net/tcp{,6}: fills out[] (at most n).
 * Returns how many it has (more than n when out was too small), or -1 if
 * the process's descriptors cannot be read.
 */
int h_listening(pid_t pid, struct h_listen *out, int n);

/*
 * A private PostgreSQL for a test: Debian's initdb into <stack dir>/pg/data
 * (superuser "pizza" with a generated password, scram-sha-256 for every
 * connection), then postgres on a free port of 127.0.0.1 with its unix
 * socket in <stack dir>/pg and its log in <stack dir>/pg/postgres.log.
 * PostgreSQL refuses to run as root: a test run by root runs both as
 * "nobody" (the folder is given to it).
 */
struct h_pg {
	char dir[600];   /* <stack dir>/pg */
	char url[1400];  /* postgresql://pizza@127.0.0.1:<port>/pizza?passfile=<dir>/pgpass (no secret in it) */
	char bindir[256]; /* Debian's /usr/lib/postgresql/<version>/bin */
	int port;
	pid_t pid;
	uid_t uid; /* whom postgres runs as */
	gid_t gid;
};

/*
 * Creates the cluster and starts it, waiting (pg_isready, 20 s at most)
 * until it accepts connections.  Returns 0, or -1 after printing why
 * (PostgreSQL not installed: the apt-get line).
 */
int h_pg_start(struct stack *s, struct h_pg *pg);
/* Stops postgres (fast shutdown) and waits for it; the cluster stays for h_pg_restart() and post-mortems. */
void h_pg_stop(struct h_pg *pg);
/* Stops postgres and starts it again on the same port and data; 0 once it accepts connections again, else -1. */
int h_pg_restart(struct h_pg *pg);
/* Runs one SQL query with psql and returns its single integer result (count(*)), or -1. */
int64_t h_pg_int(struct h_pg *pg, const char *sql);

#endif

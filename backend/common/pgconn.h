/*
 * pgconn.h - one PostgreSQL connection (libpq) shared by threads under its
 * own mutex, and re-established after it is lost without blocking anyone
 * for long: the services' PostgreSQL stores and the PostgreSQL outbox.
 *
 * A lost connection (the server restarted, the network dropped it) fails
 * the pgconn_begin() that finds it, and is re-established with
 * PQresetStart() and PQresetPoll(), driven by later pgconn_begin() calls,
 * at most one attempt a second and never waiting more than a quarter of a
 * second on the caller's thread, which may be paho's.
 */
#ifndef PIZZA_PGCONN_H
#define PIZZA_PGCONN_H

#include <stddef.h>

#include <libpq-fe.h>

struct pgconn;

/*
 * Connects to target (a postgresql:// URL or a conninfo string; its own
 * parameters override our defaults: connect_timeout 5, keepalives) as
 * application app.  role names the connection in the logs ("write",
 * "outbox").  NULL on failure, logged.
 */
struct pgconn *pgconn_open(const char *target, const char *app, const char *role);
/* Closes the connection.  NULL is ignored. */
void pgconn_close(struct pgconn *pc);

/*
 * Locks pc and returns its connection when it can take a statement now;
 * else NULL with pc unlocked (a reconnection started or advanced: the
 * caller answers "failed" and tries later).  Every non-NULL answer is
 * paired with pgconn_end().
 */
PGconn *pgconn_begin(struct pgconn *pc);
void pgconn_end(struct pgconn *pc);

/* Logs a statement that failed (what: for the log), noticing a lost connection.  Between begin and end. */
void pgconn_failed(struct pgconn *pc, const char *what, const PGresult *res);

/*
 * Runs text (no parameters, no rows: BEGIN, COMMIT, a schema) on the
 * connection pgconn_begin() returned.  0, or -1 (logged by pgconn_failed()).
 */
int pgconn_command(struct pgconn *pc, const char *text);

/*
 * target (a postgresql:// URL) with the search_path set to schema as a URL
 * parameter (options=-c search_path=schema), so that every connection made
 * from it, and every reconnection, puts the service's tables in its own
 * schema: one database can hold order-service, order-history and the
 * notifier, whose tables share names (orders, outbox).  The schema is
 * created by the store (it may not exist yet when connecting).  A new
 * string (caller frees), or NULL out of memory.  A target with its own
 * options parameter has it replaced.
 */
char *pgconn_in_schema(const char *target, const char *schema);

/* 1 when target is a PostgreSQL URL (postgresql:// or postgres://). */
int pgconn_is_url(const char *target);

/*
 * Writes target into buf as it may be logged: postgresql://user@host:port/db,
 * without the password or any other parameter.  Returns buf.
 */
const char *pgconn_label(const char *target, char *buf, size_t n);

#endif

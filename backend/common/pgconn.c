/*
 * pgconn.c - a PostgreSQL connection shared under a mutex, with a
 * reconnection that never holds a thread for long (pgconn.h).
 */
#include "pgconn.h"

#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"

#define RESET_EVERY_MS 1000   /* between two reconnection attempts */
#define RESET_WAIT_MS 250     /* the most one call waits for a reconnection */
#define RESET_GIVE_UP_MS 5000 /* an attempt that long is dropped (libpq's connect_timeout does not apply to it) */

struct pgconn {
	pthread_mutex_t lock;
	PGconn *c;
	char role[16];
	char label[256];
	int resetting, lost;
	PostgresPollingStatusType pst;
	int64_t next_reset_ms, give_up_ms;
};

int
pgconn_is_url(const char *target)
{
	return target != NULL && (strncmp(target, "postgresql://", 13) == 0 || strncmp(target, "postgres://", 11) == 0);
}

char *
pgconn_in_schema(const char *target, const char *schema)
{
	static const char param[] = "options=-c%20search_path%3D";
	size_t n = strlen(target) + sizeof(param) + strlen(schema) + 2;
	char *s = malloc(n);

	if (s != NULL)
		snprintf(s, n, "%s%c%s%s", target, strchr(target, '?') != NULL ? '&' : '?', param, schema);
	return s;
}

const char *
pgconn_label(const char *target, char *buf, size_t n)
{
	PQconninfoOption *opts = PQconninfoParse(target, NULL);
	const char *user = "", *host = "", *port = "", *dbname = "";

	for (PQconninfoOption *o = opts; o != NULL && o->keyword != NULL; o++) {
		if (o->val == NULL)
			continue;
		if (strcmp(o->keyword, "user") == 0)
			user = o->val;
		else if (strcmp(o->keyword, "host") == 0)
			host = o->val;
		else if (strcmp(o->keyword, "port") == 0)
			port = o->val;
		else if (strcmp(o->keyword, "dbname") == 0)
			dbname = o->val;
	}
	if (opts == NULL)
		snprintf(buf, n, "postgresql://(unparsable URL)");
	else
		snprintf(buf, n, "postgresql://%s%s%s%s%s/%s", user, user[0] != '\0' ? "@" : "", host,
		    port[0] != '\0' ? ":" : "", port, dbname);
	PQconninfoFree(opts);
	return buf;
}

/* libpq's message without its trailing newline, for one log line. */
static const char *
errtext(const char *s, char *buf, size_t n)
{
	snprintf(buf, n, "%s", s != NULL ? s : "");
	buf[strcspn(buf, "\n")] = '\0';
	return buf;
}

/* The server's notices ("relation ... already exists, skipping") at debug, not on stderr. */
static void
on_notice(void *arg, const char *message)
{
	char e[256];

	log_debug("PostgreSQL notice", "db=%s notice=%s", LOGQ((const char *)arg), LOGQ(errtext(message, e, sizeof(e))));
}

struct pgconn *
pgconn_open(const char *target, const char *app, const char *role)
{
	static const char *const keys[] = { "connect_timeout", "application_name", "keepalives_idle",
		"keepalives_interval", "keepalives_count", "dbname", NULL };
	const char *const vals[] = { "5", app, "10", "5", "3", target, NULL };
	struct pgconn *pc = calloc(1, sizeof(*pc));
	char e[256];

	if (pc == NULL)
		return NULL;
	pgconn_label(target, pc->label, sizeof(pc->label));
	snprintf(pc->role, sizeof(pc->role), "%s", role);
	pc->c = PQconnectdbParams(keys, vals, 1);
	if (pc->c == NULL || PQstatus(pc->c) != CONNECTION_OK) {
		log_error("cannot connect to PostgreSQL", "db=%s conn=%s err=%s", LOGQ(pc->label), pc->role,
		    LOGQ(errtext(pc->c != NULL ? PQerrorMessage(pc->c) : "out of memory", e, sizeof(e))));
		PQfinish(pc->c);
		free(pc);
		return NULL;
	}
	PQsetNoticeProcessor(pc->c, on_notice, pc->label);
	pthread_mutex_init(&pc->lock, NULL);
	return pc;
}

void
pgconn_close(struct pgconn *pc)
{
	if (pc == NULL)
		return;
	PQfinish(pc->c);
	pthread_mutex_destroy(&pc->lock);
	free(pc);
}

/* Drives a reconnection until it ends or until is reached.  0 once connected, else -1.  Under pc->lock. */
static int
reset_poll(struct pgconn *pc, int64_t until)
{
	char e[256];

	for (;;) {
		int64_t now = mono_ms();
		struct pollfd pfd;

		if (pc->pst == PGRES_POLLING_OK) {
			pc->resetting = pc->lost = 0;
			log_info("reconnected to PostgreSQL", "db=%s conn=%s", LOGQ(pc->label), pc->role);
			return 0;
		}
		if (pc->pst == PGRES_POLLING_FAILED || now >= pc->give_up_ms || (pfd.fd = PQsocket(pc->c)) < 0) {
			pc->resetting = 0;
			log_debug("PostgreSQL still unreachable", "db=%s conn=%s err=%s", LOGQ(pc->label), pc->role,
			    LOGQ(errtext(PQerrorMessage(pc->c), e, sizeof(e))));
			return -1;
		}
		if (now >= until)
			return -1; /* still connecting: the next call goes on with it */
		pfd.events = pc->pst == PGRES_POLLING_READING ? POLLIN : POLLOUT;
		if (poll(&pfd, 1, (int)(until - now)) > 0)
			pc->pst = PQresetPoll(pc->c);
	}
}

/* 0 when the connection can take a statement now; else -1, having started or advanced a reconnection.  Locked. */
static int
ready(struct pgconn *pc)
{
	int64_t now = mono_ms();

	if (!pc->resetting) {
		if (PQstatus(pc->c) == CONNECTION_OK)
			return 0;
		if (!pc->lost) {
			pc->lost = 1;
			log_warn("lost the PostgreSQL connection; reconnecting", "db=%s conn=%s", LOGQ(pc->label),
			    pc->role);
		}
		if (now < pc->next_reset_ms)
			return -1;
		pc->next_reset_ms = now + RESET_EVERY_MS;
		if (!PQresetStart(pc->c))
			return -1;
		pc->resetting = 1;
		pc->give_up_ms = now + RESET_GIVE_UP_MS;
		pc->pst = PGRES_POLLING_WRITING; /* as libpq says to start */
	}
	return reset_poll(pc, now + RESET_WAIT_MS);
}

PGconn *
pgconn_begin(struct pgconn *pc)
{
	pthread_mutex_lock(&pc->lock);
	if (ready(pc) == 0)
		return pc->c;
	pthread_mutex_unlock(&pc->lock);
	return NULL;
}

void
pgconn_end(struct pgconn *pc)
{
	pthread_mutex_unlock(&pc->lock);
}

void
pgconn_failed(struct pgconn *pc, const char *what, const PGresult *res)
{
	char e[256];

	if (PQstatus(pc->c) != CONNECTION_OK) {
		if (!pc->lost)
			log_warn("lost the PostgreSQL connection; reconnecting", "db=%s conn=%s err=%s", LOGQ(pc->label),
			    pc->role, LOGQ(errtext(PQerrorMessage(pc->c), e, sizeof(e))));
		pc->lost = 1;
		return;
	}
	log_error("PostgreSQL statement failed", "db=%s what=%s err=%s", LOGQ(pc->label), LOGQ(what),
	    LOGQ(errtext(res != NULL ? PQresultErrorMessage(res) : "out of memory", e, sizeof(e))));
}

int
pgconn_command(struct pgconn *pc, const char *text)
{
	PGresult *res = PQexec(pc->c, text);
	int rc = PQresultStatus(res) == PGRES_COMMAND_OK ? 0 : -1;

	if (rc != 0)
		pgconn_failed(pc, text, res);
	PQclear(res);
	return rc;
}

/*
 * load_shard.c - one process of phones for phone-sim load.
 *
 * Each phone is its own MQTT connection, logged in as its own user and
 * subscribed to that user's subtree only, like `phone-sim watch`, but
 * without the retained statuses of earlier runs' orders: a load run
 * measures its own orders.
 * The message handler runs on paho's receive thread: it stamps the time
 * first, decodes, and writes one record to the coordinator.  The main
 * thread reads "phone P places order R" commands and publishes them.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "event.h"
#include "load.h"
#include "log.h"
#include "mq.h"
#include "topic.h"
#include "util.h"

struct phone {
	struct mq *mq;
	const struct load_shard_cfg *cfg;
	uint32_t index; /* global */
	char new_topic[TOPIC_MAX];
	char reply_topic[TOPIC_MAX];
};

int64_t
load_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void
send_rec(const struct load_shard_cfg *cfg, struct load_rec *r)
{
	const char *p = (const char *)r;
	size_t left = sizeof(*r);

	r->shard = cfg->index;
	while (left > 0) {
		ssize_t n = write(cfg->rec_fd, p, left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			_exit(1); /* the coordinator is gone: nobody to report to */
		p += n;
		left -= (size_t)n;
	}
}

/* The answer to an order request: {"order_id": ...} or an error body. */
static void
on_reply(struct phone *ph, const struct mq_message *m, struct load_rec *r)
{
	char corr[16];
	json_t *j;
	const char *id;
	long req;

	if (m->correlation == NULL || m->correlation_len == 0 || m->correlation_len >= sizeof(corr)) {
		r->kind = REC_OTHER;
		return;
	}
	memcpy(corr, m->correlation, m->correlation_len);
	corr[m->correlation_len] = '\0';
	if (parse_long(corr, 0, UINT32_MAX - 1, &req) != 0) {
		r->kind = REC_OTHER;
		return;
	}
	r->req = (uint32_t)req;
	j = json_loadb(m->payload, m->len, 0, NULL);
	id = json_string_value(json_object_get(j, "order_id"));
	if (id != NULL && strlen(id) <= LOAD_ID_MAX && name_valid(id)) {
		r->kind = REC_ACCEPTED;
		str_copy(r->order_id, sizeof(r->order_id), id);
	} else {
		r->kind = REC_REFUSED;
		if (ph->cfg->verbose)
			fprintf(stderr, "phone-sim load: order refused: %.*s\n", (int)m->len, m->payload);
	}
	json_decref(j);
}

static void
on_message(void *arg, const struct mq_message *m)
{
	struct phone *ph = arg;
	struct load_rec r;
	struct event ev;
	char err[128];

	memset(&r, 0, sizeof(r));
	r.t_us = load_now_us();
	r.phone = ph->index;
	r.kind = REC_OTHER;
	switch (topic_parse(m->topic, NULL, NULL)) {
	case TOPIC_KIND_STATUS:
	case TOPIC_KIND_ALERTS:
		if (event_decode(m->payload, m->len, &ev, err, sizeof(err)) != 0 || strlen(ev.order_id) > LOAD_ID_MAX)
			break;
		str_copy(r.order_id, sizeof(r.order_id), ev.order_id);
		if (ev.type == EVENT_ORDER_STATUS) {
			r.kind = REC_STATUS;
			r.seq = (uint8_t)ev.seq;
		} else if (ev.type == EVENT_PICKUP_ALERT)
			r.kind = REC_ALERT;
		break;
	default:
		if (strcmp(m->topic, ph->reply_topic) == 0)
			on_reply(ph, m, &r);
		break;
	}
	send_rec(ph->cfg, &r);
}

static void
place(struct phone *ph, uint32_t req, const char *body)
{
	struct mq_publish p;
	struct load_rec r;
	char corr[16];

	snprintf(corr, sizeof(corr), "%u", req);
	memset(&p, 0, sizeof(p));
	p.topic = ph->new_topic;
	p.payload = body;
	p.len = strlen(body);
	p.qos = 1;
	p.response_topic = ph->reply_topic;
	p.correlation = corr;
	p.correlation_len = strlen(corr);
	memset(&r, 0, sizeof(r));
	r.phone = ph->index;
	r.req = req;
	r.t_us = load_now_us();
	r.kind = mq_publish(ph->mq, &p) == 0 ? REC_PLACED : REC_SEND_FAILED;
	send_rec(ph->cfg, &r);
}

/* Sleeps until CLOCK_MONOTONIC reads at_us. */
static void
sleep_until(int64_t at_us)
{
	int64_t left;

	while ((left = at_us - load_now_us()) > 0) {
		struct timespec ts = { (time_t)(left / 1000000), (long)(left % 1000000) * 1000 };
		nanosleep(&ts, NULL);
	}
}

/*
 * Creates and connects every phone: all CONNECTs go out first (at
 * cfg->connect_rate a second when it is set), then the answers are awaited.
 */
static int
connect_all(const struct load_shard_cfg *cfg, struct phone *phones)
{
	char err[512], client_id[TOPIC_MAX], filter[TOPIC_MAX];
	struct mq_config mc;
	int connected = 0, failed = 0;
	int64_t t0 = load_now_us();

	for (uint32_t i = 0; i < cfg->count; i++) {
		struct phone *ph = &phones[i];
		const struct load_account *a = &cfg->accounts[cfg->first + i];

		if (cfg->connect_rate > 0)
			sleep_until(t0 + (int64_t)((double)i * 1e6 / cfg->connect_rate));

		ph->cfg = cfg;
		ph->index = cfg->first + i;
		snprintf(client_id, sizeof(client_id), "load-%s", a->user);
		topic_new(ph->new_topic, sizeof(ph->new_topic), a->user);
		topic_reply(ph->reply_topic, sizeof(ph->reply_topic), a->user, "load");
		topic_user_all(filter, sizeof(filter), a->user);
		memset(&mc, 0, sizeof(mc));
		mc.url = cfg->urls[ph->index % cfg->nurls];
		mc.client_id = client_id;
		mc.username = a->user;
		mc.password = a->password;
		mc.clean_start = 1;
		mc.cafile = cfg->cafile;
		if ((ph->mq = mq_new(&mc, on_message, ph)) == NULL || mq_subscribe(ph->mq, filter, 1, MQ_NO_LOCAL | MQ_NO_RETAINED) != 0 ||
		    mq_connect_start(ph->mq, cfg->connect_timeout_ms, err, sizeof(err)) != 0) {
			fprintf(stderr, "phone-sim load: phone %s: cannot start connecting\n", a->user);
			mq_free(ph->mq);
			ph->mq = NULL;
		}
	}
	for (uint32_t i = 0; i < cfg->count; i++) {
		struct phone *ph = &phones[i];
		struct load_rec r;

		memset(&r, 0, sizeof(r));
		r.phone = ph->index;
		if (ph->mq != NULL && mq_connect_wait(ph->mq, cfg->connect_timeout_ms, err, sizeof(err)) == 0) {
			r.kind = REC_CONNECTED;
			connected++;
		} else {
			r.kind = REC_CONNECT_FAILED;
			/* one line per shard is enough: the rest are the same story */
			if (failed++ == 0 || cfg->verbose)
				fprintf(stderr, "phone-sim load: phone %s: %s\n", cfg->accounts[ph->index].user,
				    ph->mq != NULL ? err : "no client");
		}
		r.t_us = load_now_us();
		send_rec(cfg, &r);
	}
	return connected;
}

int
load_shard_run(const struct load_shard_cfg *cfg)
{
	struct phone *phones = calloc(cfg->count, sizeof(*phones));
	struct load_cmd cmds[256];
	char *body;
	int stop = 0;
	size_t have = 0;

	if (phones == NULL)
		return 1;
	log_init("phone-sim", cfg->verbose > 1 ? LOG_LEVEL_DEBUG : LOG_LEVEL_ERROR);
	{
		json_t *req = json_pack("{s:[{s:s, s:i}]}", "items", "sku", cfg->sku, "qty", 1);
		body = json_dumps(req, JSON_COMPACT);
		json_decref(req);
	}
	connect_all(cfg, phones);

	while (!stop) {
		ssize_t n = read(cfg->cmd_fd, (char *)cmds + have, sizeof(cmds) - have);
		size_t whole;

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break; /* the coordinator closed the pipe: stop */
		have += (size_t)n;
		whole = have / sizeof(cmds[0]);
		for (size_t i = 0; i < whole; i++) {
			if (cmds[i].phone == LOAD_CMD_STOP) {
				stop = 1;
				break;
			}
			if (cmds[i].phone >= cfg->first && cmds[i].phone - cfg->first < cfg->count &&
			    phones[cmds[i].phone - cfg->first].mq != NULL)
				place(&phones[cmds[i].phone - cfg->first], cmds[i].req, body);
		}
		have -= whole * sizeof(cmds[0]);
		memmove(cmds, (char *)cmds + whole * sizeof(cmds[0]), have);
	}

	for (uint32_t i = 0; i < cfg->count; i++) {
		if (phones[i].mq != NULL)
			mq_disconnect(phones[i].mq, 100);
	}
	for (uint32_t i = 0; i < cfg->count; i++)
		mq_free(phones[i].mq);
	free(phones);
	free(body);
	return 0;
}

/*
 * load.h - phone-sim load: many phones, many orders, measured.
 *
 * Shape (docs/performance.md says why): the coordinator process holds no
 * MQTT client.  It forks shard processes, each holding a few hundred
 * phones (one paho client, account and topic each), and tells them over a
 * pipe which phone places which order; over HTTP it places the orders
 * itself.  Shards write one fixed-size record per thing a phone saw back
 * over another pipe, stamped with CLOCK_MONOTONIC (one clock for every
 * process on the machine), and the coordinator joins them per order.
 */
#ifndef PIZZA_LOAD_H
#define PIZZA_LOAD_H

#include <stdint.h>

#define LOAD_ID_MAX 31 /* order ids are 26-character ULIDs */

enum load_rec_kind {
	REC_CONNECTED = 1, /* the phone is connected and subscribed */
	REC_CONNECT_FAILED,
	REC_PLACED,      /* the phone sent order request req */
	REC_SEND_FAILED, /* paho refused the publish */
	REC_ACCEPTED,    /* order-service answered req with order_id */
	REC_REFUSED,     /* order-service answered req without an order */
	REC_STATUS,      /* OrderStatus seq for order_id */
	REC_ALERT,       /* the pickup alert for order_id */
	REC_OTHER,       /* a message the phone could not read */
};

/* Smaller than PIPE_BUF, so writes from two threads never interleave. */
struct load_rec {
	uint8_t kind;
	uint8_t seq;
	uint16_t shard;
	uint32_t phone; /* global phone index */
	uint32_t req;   /* order request number */
	uint32_t pad;
	int64_t t_us;   /* CLOCK_MONOTONIC */
	char order_id[LOAD_ID_MAX + 1];
};

#define LOAD_CMD_STOP UINT32_MAX
struct load_cmd {
	uint32_t phone; /* global index, or LOAD_CMD_STOP */
	uint32_t req;
};

struct load_account {
	char *user;
	char *password;
};

#define LOAD_URLS_MAX 64

struct load_shard_cfg {
	const char *const *urls; /* phone i (global index) connects to urls[i % nurls] */
	unsigned nurls;
	const char *cafile;
	const char *sku;
	const struct load_account *accounts; /* every account; this shard uses [first, first + count) */
	uint32_t first, count;
	uint16_t index;
	int cmd_fd, rec_fd;
	int connect_timeout_ms;
	double connect_rate; /* this shard's CONNECTs started a second; 0: all at once */
	int verbose;
};

/* Runs a shard in a forked child until told to stop; returns its exit status. */
int load_shard_run(const struct load_shard_cfg *cfg);

int64_t load_now_us(void);

/* The load command itself (phone-sim load ...). */
int cmd_load(int argc, char **argv);

#endif

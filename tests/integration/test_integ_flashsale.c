/*
 * A flash sale (docs/reliability.md, "Intake first"): orders that arrive
 * faster than one commit takes are answered first, their OrderPlaced held
 * back meanwhile, and every one completes afterwards, once, with none
 * published again by supervision.
 *
 * The burst is made certain rather than hoped for: while the clients
 * connect, the test holds order-service's database's write lock, so the
 * intake's first commit waits and every request read meanwhile queues
 * behind it; released, they are recorded together, as under a real burst.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>
#include <sqlite3.h>

#include "harness.h"
#include "token.h"
#include "util.h"

#define N 48

static struct stack st;

static int
setup(void **state)
{
	(void)state;
	if (h_stack_start(&st, "flashsale") != 0 || h_observer(&st) != 0)
		return -1;
	/* every client comes from 127.0.0.1, and three users place all the orders: no limits in the way */
	if (h_service(&st, "order-service", "order-service", "--rate-limit", "0", "--order-rate-limit", "0", NULL) < 0 ||
	    h_service(&st, "order-history", "order-history", NULL) < 0 ||
	    h_service(&st, "notifier", "notifier", NULL) < 0 ||
	    h_service(&st, "exec-1", "order-executor", "--id", "exec-1", "--stage", "0", NULL) < 0)
		return -1;
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	return h_stack_stop(&st);
}

/* One customer of the sale: POSTs one order and keeps the answer. */
struct client {
	pthread_t t;
	char auth[TOKEN_MAX + 32];
	long status;
	char order_id[NAME_MAX_LEN + 1];
};

static void *
buy(void *arg)
{
	struct client *c = arg;
	const char *headers[] = { "Content-Type: application/json", c->auth, NULL };
	struct h_reply r;
	char url[128];
	json_t *o;

	snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/orders", st.http_port);
	c->status = h_http("POST", url, headers, "{\"items\":[{\"sku\":\"margherita\",\"qty\":1}]}", &r);
	if ((o = json_loads(r.body != NULL ? r.body : "", 0, NULL)) != NULL &&
	    json_string_value(json_object_get(o, "order_id")) != NULL)
		snprintf(c->order_id, sizeof(c->order_id), "%s", json_string_value(json_object_get(o, "order_id")));
	json_decref(o);
	h_reply_free(&r);
	return NULL;
}

/*
 * Established connections to 127.0.0.1:port on its listening side, from
 * /proc/net/tcp; *unread (when not NULL) gets how many of them still hold
 * bytes the server has not read.
 */
static int
connections_to(int port, int *unread)
{
	FILE *f = fopen("/proc/net/tcp", "r");
	char line[512];
	int n = 0;

	if (unread != NULL)
		*unread = 0;
	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL) {
		unsigned local_port, state, rx_queue;

		/* "sl: local_address rem_address st tx_queue:rx_queue ...", addresses ADDR:PORT in hex */
		if (sscanf(line, "%*d: %*8x:%x %*8x:%*x %x %*x:%x", &local_port, &state, &rx_queue) != 3 ||
		    (int)local_port != port || state != 0x01)
			continue;
		n++;
		if (unread != NULL && rx_queue > 0)
			(*unread)++;
	}
	fclose(f);
	return n;
}

static void
test_flash_sale_answers_first(void **state)
{
	static struct client c[N];
	const char *users[] = { "alice", "bob", "carol" };
	char db[sizeof(st.dir) + 32];
	sqlite3 *lock;
	int64_t deadline;
	int unread;

	(void)state;
	for (int i = 0; i < N; i++)
		snprintf(c[i].auth, sizeof(c[i].auth), "Authorization: Bearer %s", h_token(&st, users[i % 3]));
	/* the sale opens while order-service cannot commit: every order waits for the first commit */
	snprintf(db, sizeof(db), "%s/data/order-service.db", st.dir);
	assert_int_equal(sqlite3_open(db, &lock), SQLITE_OK);
	assert_int_equal(sqlite3_exec(lock, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
	for (int i = 0; i < N; i++)
		assert_int_equal(pthread_create(&c[i].t, NULL, buy, &c[i]), 0);
	/*
	 * Until every client connected and libmicrohttpd read every request (the orders wait at the
	 * intake), for 3 s at most: order-service's commit gives up on a lock held for 5 s.
	 */
	for (deadline = mono_ms() + 3000;
	     (connections_to(st.http_port, &unread) < N || unread > 0) && mono_ms() < deadline;)
		h_sleep(10);
	assert_int_equal(sqlite3_exec(lock, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(lock);
	for (int i = 0; i < N; i++)
		pthread_join(c[i].t, NULL);

	/* everyone is answered; the intake held the OrderPlaced back while they came, then let them go */
	for (int i = 0; i < N; i++) {
		assert_int_equal(c[i].status, 202);
		assert_true(name_valid(c[i].order_id));
	}
	assert_int_equal(h_wait_log(&st, "order-service", "holding OrderPlaced back", 1, 10000), 0);
	assert_int_equal(h_wait_log(&st, "order-service", "intake no longer busy", 1, 10000), 0);

	/* and every order completes, once: none was taken for lost while it waited */
	for (int i = 0; i < N; i++)
		assert_int_equal(h_wait_events(&st, c[i].order_id, EVENT_PICKUP_ALERT, 0, 1, 20000), 1);
	for (int i = 0; i < N; i++)
		assert_int_equal(h_count_events(&st, c[i].order_id, EVENT_ORDER_PLACED, 0), 1);
	assert_int_equal(h_wait_log(&st, "order-service", "order stalled", 1, 0), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_flash_sale_answers_first),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}

/*
 * test_stages.c - the executor's stage machine and timer queue
 * (order-executor/stages.h), driven with fake monotonic times: nothing sleeps.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "order-executor/stages.h"

/* accepted 100 ms, prep 200, bake 300, oven 400 */
static const struct stage_plan plan = { { 0, 100, 200, 300, 400, 0 } };
static const struct stage_plan zero_plan = { { 0, 0, 0, 0, 0, 0 } };

/* Pops the job due at now, which must be order's status s due at due. */
static void
expect_pop(struct stages *st, int64_t now, const char *order, enum order_status s, int64_t due, struct job *out)
{
	memset(out, 0, sizeof(*out));
	if (!stages_pop_due(st, now, out))
		fail_msg("nothing due at %lld, expected %s %s", (long long)now, order, event_status_name(s));
	assert_string_equal(out->order_id, order);
	assert_int_equal(out->next, s);
	assert_true(out->due_ms == due);
}

static void
expect_nothing(struct stages *st, int64_t now)
{
	struct job j;

	if (stages_pop_due(st, now, &j))
		fail_msg("%s %s popped at %lld, expected nothing due", j.order_id, event_status_name(j.next),
		    (long long)now);
}

static void
test_idle(void **state)
{
	struct stages *st = stages_new(&plan, 4, 16);

	(void)state;
	assert_non_null(st);
	assert_true(stages_next_due(st) == INT64_MAX);
	assert_int_equal(stages_active(st), 0);
	expect_nothing(st, 0);
	expect_nothing(st, INT64_MAX);
	stages_free(st);
	stages_free(NULL);
}

static void
test_one_order_walks_the_plan(void **state)
{
	struct stages *st = stages_new(&plan, 4, 16);
	struct job j;

	(void)state;
	assert_non_null(st);
	assert_int_equal(stages_take(st, "ord-1", "alice", "ord-1", NULL, 1000), STAGES_TAKEN);
	assert_int_equal(stages_active(st), 1);
	/* accepted is due at once, at the take time */
	assert_true(stages_next_due(st) == 1000);
	expect_nothing(st, 999);
	expect_pop(st, 1000, "ord-1", STATUS_ACCEPTED, 1000, &j);
	assert_string_equal(j.user_id, "alice");
	stages_done(st, &j, 1000);

	/* each following status is due one stage duration after the previous was published */
	assert_true(stages_next_due(st) == 1100);
	expect_nothing(st, 1099);
	expect_pop(st, 1100, "ord-1", STATUS_PREP, 1100, &j);
	stages_done(st, &j, 1100);

	assert_true(stages_next_due(st) == 1300);
	expect_nothing(st, 1299);
	expect_pop(st, 1300, "ord-1", STATUS_BAKE, 1300, &j);
	stages_done(st, &j, 1300);

	assert_true(stages_next_due(st) == 1600);
	expect_nothing(st, 1599);
	expect_pop(st, 1600, "ord-1", STATUS_OVEN, 1600, &j);
	stages_done(st, &j, 1600);

	assert_true(stages_next_due(st) == 2000);
	expect_nothing(st, 1999);
	expect_pop(st, 2000, "ord-1", STATUS_READY, 2000, &j);
	assert_string_equal(j.user_id, "alice");
	stages_done(st, &j, 2000);

	/* ready is the last status: the order is finished */
	assert_true(stages_next_due(st) == INT64_MAX);
	assert_int_equal(stages_active(st), 0);
	expect_nothing(st, INT64_MAX);
	stages_free(st);
}

static void
test_durations_count_from_publish(void **state)
{
	struct stages *st = stages_new(&plan, 4, 16);
	struct job j;

	(void)state;
	assert_int_equal(stages_take(st, "ord-1", "alice", "ord-1", NULL, 0), STAGES_TAKEN);
	/* popped late, published later still: the stage runs from the publish time */
	expect_pop(st, 50, "ord-1", STATUS_ACCEPTED, 0, &j);
	stages_done(st, &j, 70);
	assert_true(stages_next_due(st) == 170);
	expect_pop(st, 500, "ord-1", STATUS_PREP, 170, &j);
	stages_done(st, &j, 500);
	assert_true(stages_next_due(st) == 700);
	stages_free(st);
}

static void
test_zero_durations(void **state)
{
	struct stages *st = stages_new(&zero_plan, 4, 16);
	struct job j;

	(void)state;
	assert_int_equal(stages_take(st, "ord-1", "alice", "ord-1", NULL, 42), STAGES_TAKEN);
	for (int s = STATUS_ACCEPTED; s <= STATUS_READY; s++) {
		assert_true(stages_next_due(st) == 42);
		expect_pop(st, 42, "ord-1", (enum order_status)s, 42, &j);
		stages_done(st, &j, 42);
	}
	expect_nothing(st, 42);
	assert_true(stages_next_due(st) == INT64_MAX);
	assert_int_equal(stages_active(st), 0);
	stages_free(st);
}

/*
 * Supervision publishes a stalled order again with a fresh event id: while
 * the order is in progress here it is a duplicate; once it finished here it
 * is walked again (its statuses may have been lost), and that new event
 * redelivered is a duplicate.
 */
static void
test_republish_takes_a_finished_order(void **state)
{
	struct stages *st = stages_new(&zero_plan, 4, 16);
	struct job j;

	(void)state;
	assert_int_equal(stages_take(st, "ord-1", "alice", "ev-1", NULL, 0), STAGES_TAKEN);
	assert_int_equal(stages_take(st, "ord-1", "alice", "ev-2", NULL, 0), STAGES_DUPLICATE); /* in progress */
	/* popped and being published: still in progress */
	expect_pop(st, 10, "ord-1", STATUS_ACCEPTED, 0, &j);
	assert_int_equal(stages_take(st, "ord-1", "alice", "ev-4", NULL, 10), STAGES_DUPLICATE);
	stages_retry(st, &j, 0);
	for (int s = STATUS_ACCEPTED; s <= STATUS_READY; s++) {
		expect_pop(st, 10, "ord-1", (enum order_status)s, s == STATUS_ACCEPTED ? 0 : 10, &j);
		stages_done(st, &j, 10);
	}
	assert_int_equal(stages_active(st), 0);
	assert_int_equal(stages_take(st, "ord-1", "alice", "ev-1", NULL, 20), STAGES_DUPLICATE); /* redelivered */
	assert_int_equal(stages_take(st, "ord-1", "alice", "ev-3", NULL, 20), STAGES_TAKEN);     /* republished */
	expect_pop(st, 20, "ord-1", STATUS_ACCEPTED, 20, &j);
	stages_done(st, &j, 20);
	assert_int_equal(stages_take(st, "ord-1", "alice", "ev-3", NULL, 21), STAGES_DUPLICATE);
	stages_free(st);
}

static void
test_duplicate_take(void **state)
{
	struct stages *st = stages_new(&zero_plan, 4, 16);
	struct job j;

	(void)state;
	assert_int_equal(stages_take(st, "ord-1", "alice", "ord-1", NULL, 0), STAGES_TAKEN);
	/* queued */
	assert_int_equal(stages_take(st, "ord-1", "alice", "ord-1", NULL, 1), STAGES_DUPLICATE);
	assert_int_equal(stages_active(st), 1);
	assert_true(stages_next_due(st) == 0);

	/* popped, being published */
	expect_pop(st, 5, "ord-1", STATUS_ACCEPTED, 0, &j);
	assert_int_equal(stages_take(st, "ord-1", "alice", "ord-1", NULL, 5), STAGES_DUPLICATE);
	stages_done(st, &j, 5);

	/* midway */
	expect_pop(st, 5, "ord-1", STATUS_PREP, 5, &j);
	stages_done(st, &j, 5);
	assert_int_equal(stages_take(st, "ord-1", "alice", "ord-1", NULL, 6), STAGES_DUPLICATE);

	/* finished */
	for (int s = STATUS_BAKE; s <= STATUS_READY; s++) {
		expect_pop(st, 10, "ord-1", (enum order_status)s, 5, &j);
		stages_done(st, &j, 5);
	}
	assert_int_equal(stages_active(st), 0);
	assert_int_equal(stages_take(st, "ord-1", "alice", "ord-1", NULL, 20), STAGES_DUPLICATE);
	/* the duplicate changed nothing */
	assert_int_equal(stages_active(st), 0);
	assert_true(stages_next_due(st) == INT64_MAX);
	expect_nothing(st, INT64_MAX);
	stages_free(st);
}

static void
test_capacity_full(void **state)
{
	struct stages *st = stages_new(&zero_plan, 2, 16);
	struct job j;

	(void)state;
	assert_int_equal(stages_take(st, "ord-1", "alice", "ord-1", NULL, 0), STAGES_TAKEN);
	assert_int_equal(stages_take(st, "ord-2", "bob", "ord-2", NULL, 0), STAGES_TAKEN);
	assert_int_equal(stages_take(st, "ord-3", "carol", "ord-3", NULL, 0), STAGES_FULL);
	assert_int_equal(stages_active(st), 2);
	/* a refused order was not remembered: it can be taken once there is room */
	for (int s = STATUS_ACCEPTED; s <= STATUS_READY; s++) {
		expect_pop(st, 0, "ord-1", (enum order_status)s, 0, &j);
		stages_done(st, &j, 0);
		if (s == STATUS_ACCEPTED) {
			/* ord-2's accepted is now first (same due time, ord-1 moved on) */
			expect_pop(st, 0, "ord-2", STATUS_ACCEPTED, 0, &j);
			stages_retry(st, &j, 1000);
		}
	}
	assert_int_equal(stages_active(st), 1);
	assert_int_equal(stages_take(st, "ord-3", "carol", "ord-3", NULL, 1), STAGES_TAKEN);
	assert_int_equal(stages_active(st), 2);
	assert_int_equal(stages_take(st, "ord-4", "dave", "ord-4", NULL, 1), STAGES_FULL);
	stages_free(st);
}

/*
 * While a popped job is being published (between stages_pop_due() and
 * stages_done()/stages_retry()) it is still an order in progress: it must
 * count against max_active, or a take in that window over-fills the queue.
 */
static void
test_capacity_counts_job_being_published(void **state)
{
	struct stages *st = stages_new(&zero_plan, 1, 16);
	struct job j;

	(void)state;
	assert_int_equal(stages_take(st, "ord-1", "alice", "ord-1", NULL, 0), STAGES_TAKEN);
	expect_pop(st, 0, "ord-1", STATUS_ACCEPTED, 0, &j);
	assert_int_equal(stages_active(st), 1);
	assert_int_equal(stages_take(st, "ord-2", "bob", "ord-2", NULL, 0), STAGES_FULL);
	stages_done(st, &j, 0);
	assert_int_equal(stages_active(st), 1);

	/* same through a retry */
	expect_pop(st, 0, "ord-1", STATUS_PREP, 0, &j);
	assert_int_equal(stages_take(st, "ord-2", "bob", "ord-2", NULL, 0), STAGES_FULL);
	stages_retry(st, &j, 10);
	assert_int_equal(stages_active(st), 1);
	assert_int_equal(stages_take(st, "ord-2", "bob", "ord-2", NULL, 0), STAGES_FULL);

	for (int s = STATUS_PREP; s <= STATUS_READY; s++) {
		expect_pop(st, 10, "ord-1", (enum order_status)s, 10, &j);
		stages_done(st, &j, 10);
	}
	assert_int_equal(stages_active(st), 0);
	assert_int_equal(stages_take(st, "ord-2", "bob", "ord-2", NULL, 11), STAGES_TAKEN);
	stages_free(st);
}

static void
test_interleaving(void **state)
{
	/* accepted 100, prep 200, bake 300, oven 400 */
	struct stages *st = stages_new(&plan, 8, 16);
	struct job j;
	static const struct {
		int64_t at;
		const char *order;
		enum order_status s;
	} want[] = {
		{ 0, "A", STATUS_ACCEPTED },
		{ 50, "B", STATUS_ACCEPTED },
		{ 100, "A", STATUS_PREP },
		{ 150, "B", STATUS_PREP },
		{ 210, "C", STATUS_ACCEPTED },
		{ 300, "A", STATUS_BAKE },
		{ 310, "C", STATUS_PREP },
		{ 350, "B", STATUS_BAKE },
		{ 510, "C", STATUS_BAKE },
		{ 600, "A", STATUS_OVEN },
		{ 650, "B", STATUS_OVEN },
		{ 810, "C", STATUS_OVEN },
		{ 1000, "A", STATUS_READY },
		{ 1050, "B", STATUS_READY },
		{ 1210, "C", STATUS_READY },
	};
	size_t k = 0;
	int64_t now;
	int c_taken = 0;

	(void)state;
	assert_int_equal(stages_take(st, "A", "u1", "A", NULL, 0), STAGES_TAKEN);
	assert_int_equal(stages_take(st, "B", "u2", "B", NULL, 50), STAGES_TAKEN);
	/* the main loop: jump the clock to the next due time, publish everything due */
	while ((now = stages_next_due(st)) != INT64_MAX) {
		while (stages_pop_due(st, now, &j)) {
			assert_true(k < sizeof(want) / sizeof(want[0]));
			assert_true(j.due_ms == now);
			assert_true(want[k].at == now);
			assert_string_equal(j.order_id, want[k].order);
			assert_int_equal(j.next, want[k].s);
			stages_done(st, &j, now);
			k++;
		}
		/* C arrives at 210, while A and B are between stages */
		if (!c_taken && now >= 150) {
			assert_int_equal(stages_take(st, "C", "u3", "C", NULL, 210), STAGES_TAKEN);
			assert_int_equal(stages_active(st), 3);
			assert_true(stages_next_due(st) == 210);
			c_taken = 1;
		}
	}
	assert_int_equal(k, sizeof(want) / sizeof(want[0]));
	assert_int_equal(stages_active(st), 0);
	stages_free(st);
}

/* Many orders taken in scrambled time order come out in due-time order. */
static void
test_heap_order(void **state)
{
	enum { N = 500 };
	static struct job popped[N];
	struct stages *st = stages_new(&plan, N, N);
	struct job j;
	int seen[N];
	int64_t last = INT64_MIN;
	size_t n = 0;

	(void)state;
	assert_non_null(st);
	memset(seen, 0, sizeof(seen));
	for (int i = 0; i < N; i++) {
		char id[16];
		/* a permutation of 0..N-1 (7919 is prime, coprime with N) spread over time */
		int64_t t = (int64_t)((i * 7919) % N) * 3;

		snprintf(id, sizeof(id), "o%d", i);
		assert_int_equal(stages_take(st, id, "u", id, NULL, t), STAGES_TAKEN);
	}
	assert_int_equal(stages_active(st), N);
	assert_true(stages_next_due(st) == 0);
	expect_nothing(st, -1);
	while (stages_pop_due(st, 3 * N, &j)) {
		int i = (int)strtol(j.order_id + 1, NULL, 10);

		assert_true(n < N);
		assert_true(j.due_ms >= last);
		assert_true(j.due_ms == (int64_t)((i * 7919) % N) * 3);
		assert_int_equal(j.next, STATUS_ACCEPTED);
		assert_int_equal(seen[i], 0);
		seen[i] = 1;
		last = j.due_ms;
		popped[n++] = j;
	}
	assert_int_equal(n, N);
	assert_true(stages_next_due(st) == INT64_MAX);

	/* put them back in pop order: half move on to prep, half are retried far later */
	for (size_t k = 0; k < n; k++) {
		if (k % 2 == 0)
			stages_done(st, &popped[k], popped[k].due_ms);
		else
			stages_retry(st, &popped[k], INT64_C(1000000) - (int64_t)k);
	}
	last = INT64_MIN;
	n = 0;
	while (stages_pop_due(st, INT64_MAX, &j)) {
		assert_true(j.due_ms >= last);
		assert_int_equal(j.next, n < N / 2 ? STATUS_PREP : STATUS_ACCEPTED);
		last = j.due_ms;
		n++;
	}
	assert_int_equal(n, N);
	stages_free(st);
}

static void
test_retry(void **state)
{
	struct stages *st = stages_new(&plan, 4, 16);
	struct job j, again;

	(void)state;
	assert_int_equal(stages_take(st, "ord-1", "alice", "ord-1", NULL, 100), STAGES_TAKEN);
	expect_pop(st, 100, "ord-1", STATUS_ACCEPTED, 100, &j);
	assert_true(stages_next_due(st) == INT64_MAX);
	/* not published: put back for later, same status */
	stages_retry(st, &j, 5000);
	assert_int_equal(stages_active(st), 1);
	assert_true(stages_next_due(st) == 5000);
	expect_nothing(st, 4999);
	expect_pop(st, 5000, "ord-1", STATUS_ACCEPTED, 5000, &again);
	assert_string_equal(again.user_id, "alice");
	/* retried to an earlier time than another order: it comes first */
	assert_int_equal(stages_take(st, "ord-2", "bob", "ord-2", NULL, 6000), STAGES_TAKEN);
	stages_retry(st, &again, 5500);
	assert_true(stages_next_due(st) == 5500);
	expect_pop(st, 7000, "ord-1", STATUS_ACCEPTED, 5500, &again);
	stages_done(st, &again, 7000);
	expect_pop(st, 7000, "ord-2", STATUS_ACCEPTED, 6000, &j);
	stages_done(st, &j, 7000);
	assert_true(stages_next_due(st) == 7100);
	assert_int_equal(stages_active(st), 2);
	stages_free(st);
}

/* Takes ord-1 at 100 (a zero plan) and walks it to its ready, popped into *j as its first attempt. */
static void
take_to_ready(struct stages *st, struct job *j)
{
	assert_int_equal(stages_take(st, "ord-1", "alice", "ord-1", NULL, 100), STAGES_TAKEN);
	for (int s = STATUS_ACCEPTED; s < STATUS_READY; s++) {
		expect_pop(st, 100, "ord-1", (enum order_status)s, 100, j);
		stages_done(st, j, 100);
	}
	expect_pop(st, 100, "ord-1", STATUS_READY, 100, j);
	j->ready_attempt = 1;
}

/*
 * A ready status waiting for the broker: parked, in progress, not due until
 * woken with the verdict for its attempt, or until its wait runs out.
 */
static void
test_park_until_woken(void **state)
{
	struct stages *st = stages_new(&zero_plan, 2, 16);
	struct job j, again;

	(void)state;
	take_to_ready(st, &j);
	stages_park(st, &j, 10000);
	/* parked: still in progress (duplicates, capacity), not due before its wait runs out */
	assert_int_equal(stages_active(st), 1);
	assert_true(stages_next_due(st) == 10000);
	expect_nothing(st, 9999);
	assert_int_equal(stages_take(st, "ord-1", "alice", "ord-1-again", NULL, 200), STAGES_DUPLICATE);
	assert_int_equal(stages_take(st, "ord-2", "bob", "ord-2", NULL, 200), STAGES_TAKEN);
	assert_int_equal(stages_take(st, "ord-3", "carol", "ord-3", NULL, 200), STAGES_FULL);
	/* only a parked job wakes, and only for its attempt: ord-2 is queued, not parked */
	assert_int_equal(stages_wake(st, "ord-2", 0, 300, 1, 0), -1);
	assert_int_equal(stages_wake(st, "ord-9", 1, 300, 1, 0), -1);
	assert_int_equal(stages_wake(st, "ord-1", 2, 300, 1, 0), -1);

	/* refused: due again later, with the count; it comes before ord-2 only once due */
	assert_int_equal(stages_wake(st, "ord-1", 1, 150, 0, 1), 0);
	assert_int_equal(stages_wake(st, "ord-1", 1, 150, 0, 1), -1); /* woken once */
	expect_pop(st, 150, "ord-1", STATUS_READY, 150, &again);
	assert_int_equal(again.ready_status_sent, 0);
	assert_int_equal(again.ready_refusals, 1);
	assert_int_equal(again.parked, 0);
	again.ready_attempt = 2;
	stages_park(st, &again, 20000);
	expect_pop(st, 200, "ord-2", STATUS_ACCEPTED, 200, &j);
	stages_done(st, &j, 200);

	/* acknowledged: due at once, ahead of ord-2's later stages; a late verdict on attempt 1 wakes nothing */
	assert_int_equal(stages_wake(st, "ord-1", 1, 190, 1, 1), -1);
	assert_int_equal(stages_wake(st, "ord-1", 2, 190, 1, 1), 0);
	assert_true(stages_next_due(st) == 190);
	expect_pop(st, 400, "ord-1", STATUS_READY, 190, &again);
	assert_int_equal(again.ready_status_sent, 1);
	assert_int_equal(again.ready_refusals, 1);
	assert_int_equal(again.parked, 0);
	stages_done(st, &again, 400);
	assert_int_equal(stages_active(st), 1);
	stages_free(st);
}

/* A verdict that never comes (paho lost it over a reconnect): the job comes back when its wait runs out. */
static void
test_park_wait_runs_out(void **state)
{
	struct stages *st = stages_new(&zero_plan, 2, 16);
	struct job j;

	(void)state;
	take_to_ready(st, &j);
	stages_park(st, &j, 5000);
	expect_nothing(st, 4999);
	expect_pop(st, 5000, "ord-1", STATUS_READY, 5000, &j);
	assert_int_equal(j.parked, 1); /* marked: its wait ran out */
	assert_int_equal(j.ready_attempt, 1);
	/* the verdict arriving now finds nothing to wake */
	assert_int_equal(stages_wake(st, "ord-1", 1, 5000, 1, 0), -1);
	stages_retry(st, &j, 6000);
	expect_pop(st, 6000, "ord-1", STATUS_READY, 6000, &j);
	assert_int_equal(j.parked, 0);
	stages_done(st, &j, 6000);
	assert_int_equal(stages_active(st), 0);
	stages_free(st);
}

/* A malloc'd stand-in for the executor's copy of an OrderPlaced (what stages_take() is given). */
static char *
order_new(const char *order_id)
{
	char *o = malloc(64);

	assert_non_null(o);
	snprintf(o, 64, "the order %s", order_id);
	return o;
}

/*
 * The order given to stages_take() rides with its job (job.order, the same
 * pointer at every stage and through a retry, as is ready_status_sent) and
 * is the queue's once TAKEN: freed with free() when the order finishes in
 * stages_done(), or by stages_free() while it is still in progress.  A
 * duplicate or a refused take leaves it the caller's.  Whether each is
 * freed exactly once is for the leak checkers to see: run under ASan
 * (SANITIZE=address) and valgrind.
 */
static void
test_order_owned_by_the_queue(void **state)
{
	static const char *const ids[] = { "ord-1", "ord-2", "ord-3" };
	/* when each status falls due for an order taken at 0 (plan: 100, 200, 300, 400 ms) */
	static const int64_t due[] = { 0, 0, 100, 300, 600, 1000 };
	struct stages *st = stages_new(&plan, 3, 16);
	char *orders[3], *dup, *full, *again_order;
	struct job j, again;

	(void)state;
	assert_non_null(st);
	for (int k = 0; k < 3; k++) {
		orders[k] = order_new(ids[k]);
		assert_int_equal(stages_take(st, ids[k], "alice", ids[k], orders[k], k), STAGES_TAKEN);
	}
	/* refused: the caller keeps it (freed here; had the queue kept it too, freeing the queue frees it twice) */
	dup = order_new("ord-1");
	assert_int_equal(stages_take(st, "ord-1", "alice", "ev-dup", dup, 5), STAGES_DUPLICATE);
	free(dup);
	full = order_new("ord-4");
	assert_int_equal(stages_take(st, "ord-4", "dave", "ord-4", full, 5), STAGES_FULL);
	free(full);

	/* every status of each order carries that order; ord-1 is always due first (taken at 0, ord-2 at 1, ...) */
	for (int s = STATUS_ACCEPTED; s < STATUS_READY; s++)
		for (int k = 0; k < 3; k++) {
			expect_pop(st, due[s] + k, ids[k], (enum order_status)s, due[s] + k, &j);
			assert_ptr_equal(j.order, orders[k]);
			assert_int_equal(j.ready_status_sent, 0);
			stages_done(st, &j, due[s] + k);
		}

	/* ord-1's ready: the phone's status went out, OrderReady did not; retried, the job remembers both */
	expect_pop(st, 1000, "ord-1", STATUS_READY, 1000, &j);
	assert_ptr_equal(j.order, orders[0]);
	assert_int_equal(j.ready_status_sent, 0);
	j.ready_status_sent = 1;
	stages_retry(st, &j, 1000);
	expect_pop(st, 1000, "ord-1", STATUS_READY, 1000, &again);
	assert_ptr_equal(again.order, orders[0]);
	assert_int_equal(again.ready_status_sent, 1);
	assert_string_equal((const char *)again.order, "the order ord-1");
	/* done: ord-1's order is freed by the queue */
	stages_done(st, &again, 1000);
	assert_int_equal(stages_active(st), 2);
	expect_nothing(st, 1000);

	/* republished with a new event after it finished: taken again, with a new order */
	again_order = order_new("ord-1");
	assert_int_equal(stages_take(st, "ord-1", "alice", "ev-2", again_order, 1000), STAGES_TAKEN);
	expect_pop(st, 1000, "ord-1", STATUS_ACCEPTED, 1000, &j);
	assert_ptr_equal(j.order, again_order);
	assert_int_equal(j.ready_status_sent, 0);
	stages_done(st, &j, 1000);

	/* ord-2 and ord-3 due at ready, ord-1 at prep: freeing the queue frees their orders */
	assert_int_equal(stages_active(st), 3);
	stages_free(st);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_idle),
		cmocka_unit_test(test_one_order_walks_the_plan),
		cmocka_unit_test(test_durations_count_from_publish),
		cmocka_unit_test(test_zero_durations),
		cmocka_unit_test(test_duplicate_take),
		cmocka_unit_test(test_capacity_full),
		cmocka_unit_test(test_capacity_counts_job_being_published),
		cmocka_unit_test(test_interleaving),
		cmocka_unit_test(test_heap_order),
		cmocka_unit_test(test_retry),
		cmocka_unit_test(test_park_until_woken),
		cmocka_unit_test(test_park_wait_runs_out),
		cmocka_unit_test(test_republish_takes_a_finished_order),
		cmocka_unit_test(test_order_owned_by_the_queue),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

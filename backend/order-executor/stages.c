#include "stages.h"

#include <stdlib.h>
#include <string.h>

#include "idset.h"

struct stages {
	struct stage_plan plan;
	struct job *heap; /* binary min-heap on due_ms */
	size_t n, max;
	size_t out; /* popped, not yet back through stages_done()/stages_retry() */
	char out_order[NAME_MAX_LEN + 1]; /* the order of the last one popped, while out (in progress too) */
	struct idset *seen; /* event ids of the OrderPlaced taken here (or dropped as in progress) */
};

struct stages *
stages_new(const struct stage_plan *plan, size_t max_active, size_t remember)
{
	struct stages *st;

	if ((st = calloc(1, sizeof(*st))) == NULL)
		return NULL;
	st->plan = *plan;
	st->max = max_active;
	st->heap = calloc(max_active, sizeof(*st->heap));
	st->seen = idset_new(remember > max_active ? remember : max_active);
	if (st->heap == NULL || st->seen == NULL) {
		stages_free(st);
		return NULL;
	}
	return st;
}

void
stages_free(struct stages *st)
{
	if (st == NULL)
		return;
	for (size_t i = 0; st->heap != NULL && i < st->n; i++)
		free(st->heap[i].order);
	free(st->heap);
	idset_free(st->seen);
	free(st);
}

static void
swap(struct job *a, struct job *b)
{
	struct job t = *a;
	*a = *b;
	*b = t;
}

/* Moves heap[i] up while it is due before its parent. */
static void
sift_up(struct stages *st, size_t i)
{
	while (i > 0 && st->heap[(i - 1) / 2].due_ms > st->heap[i].due_ms) {
		swap(&st->heap[(i - 1) / 2], &st->heap[i]);
		i = (i - 1) / 2;
	}
}

static void
push(struct stages *st, const struct job *j)
{
	st->heap[st->n] = *j;
	sift_up(st, st->n++);
}

/* Moves heap[i] down while a child is due before it. */
static void
sift_down(struct stages *st, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		if (l < st->n && st->heap[l].due_ms < st->heap[m].due_ms)
			m = l;
		if (r < st->n && st->heap[r].due_ms < st->heap[m].due_ms)
			m = r;
		if (m == i)
			return;
		swap(&st->heap[i], &st->heap[m]);
		i = m;
	}
}

static void
pop(struct stages *st, struct job *out)
{
	*out = st->heap[0];
	st->heap[0] = st->heap[--st->n];
	sift_down(st, 0);
}

/* 1 if order_id is in progress here: in the heap, or popped and being published. */
static int
in_progress(const struct stages *st, const char *order_id)
{
	if (st->out > 0 && strcmp(st->out_order, order_id) == 0)
		return 1;
	for (size_t i = 0; i < st->n; i++)
		if (strcmp(st->heap[i].order_id, order_id) == 0)
			return 1;
	return 0;
}

enum stages_take
stages_take(struct stages *st, const char *order_id, const char *user_id, const char *event_id, void *order,
    int64_t now_ms)
{
	struct job j;

	if (idset_has(st->seen, event_id))
		return STAGES_DUPLICATE; /* the same message again: a broker redelivery */
	if (in_progress(st, order_id)) {
		idset_add(st->seen, event_id);
		return STAGES_DUPLICATE;
	}
	if (st->n + st->out >= st->max)
		return STAGES_FULL;
	memset(&j, 0, sizeof(j));
	if (str_copy(j.order_id, sizeof(j.order_id), order_id) != 0 ||
	    str_copy(j.user_id, sizeof(j.user_id), user_id) != 0)
		return STAGES_FULL;
	idset_add(st->seen, event_id);
	j.next = STATUS_ACCEPTED;
	j.due_ms = now_ms;
	j.order = order;
	push(st, &j);
	return STAGES_TAKEN;
}

int
stages_pop_due(struct stages *st, int64_t now_ms, struct job *out)
{
	if (st->n == 0 || st->heap[0].due_ms > now_ms)
		return 0;
	pop(st, out); /* a parked one stays marked: its wait for a verdict ran out */
	st->out++;
	str_copy(st->out_order, sizeof(st->out_order), out->order_id); /* the executor has one out at a time */
	return 1;
}

void
stages_done(struct stages *st, const struct job *job, int64_t now_ms)
{
	struct job j = *job;

	j.parked = 0;
	if (st->out > 0)
		st->out--;
	if (j.next >= STATUS_READY) {
		free(j.order);
		return; /* finished; its event id stays in seen so a redelivery is dropped */
	}
	j.due_ms = now_ms + st->plan.ms[j.next];
	j.entered_ms = now_ms;
	j.next++;
	push(st, &j);
}

void
stages_retry(struct stages *st, const struct job *job, int64_t due_ms)
{
	struct job j = *job;

	j.parked = 0;
	if (st->out > 0)
		st->out--;
	j.due_ms = due_ms;
	push(st, &j);
}

void
stages_park(struct stages *st, const struct job *job, int64_t due_ms)
{
	struct job j = *job;

	if (st->out > 0)
		st->out--;
	j.parked = 1;
	j.due_ms = due_ms;
	push(st, &j);
}

int
stages_wake(struct stages *st, const char *order_id, int ready_attempt, int64_t due_ms, int ready_status_sent,
    int ready_refusals)
{
	for (size_t i = 0; i < st->n; i++) {
		struct job *j = &st->heap[i];

		if (!j->parked || j->ready_attempt != ready_attempt || strcmp(j->order_id, order_id) != 0)
			continue;
		j->parked = 0;
		j->ready_status_sent = ready_status_sent;
		j->ready_refusals = ready_refusals;
		j->due_ms = due_ms;
		sift_up(st, i);
		sift_down(st, i);
		return 0;
	}
	return -1;
}

int64_t
stages_next_due(const struct stages *st)
{
	return st->n > 0 ? st->heap[0].due_ms : INT64_MAX;
}

size_t
stages_active(const struct stages *st)
{
	return st->n + st->out;
}

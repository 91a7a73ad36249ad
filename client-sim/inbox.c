#include "inbox.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util.h"

struct inbox {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct inbox_msg *head, *tail;
};

struct inbox *
inbox_new(void)
{
	struct inbox *ib = calloc(1, sizeof(*ib));
	pthread_condattr_t ca;

	if (ib == NULL)
		return NULL;
	pthread_mutex_init(&ib->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&ib->cond, &ca);
	pthread_condattr_destroy(&ca);
	return ib;
}

void
inbox_msg_free(struct inbox_msg *m)
{
	if (m == NULL)
		return;
	free(m->topic);
	free(m->payload);
	free(m->correlation);
	free(m);
}

void
inbox_free(struct inbox *ib)
{
	struct inbox_msg *m, *n;

	if (ib == NULL)
		return;
	for (m = ib->head; m != NULL; m = n) {
		n = m->next;
		inbox_msg_free(m);
	}
	pthread_mutex_destroy(&ib->lock);
	pthread_cond_destroy(&ib->cond);
	free(ib);
}

static char *
dupn(const void *p, size_t n)
{
	char *s = malloc(n + 1);

	if (s != NULL) {
		if (n > 0)
			memcpy(s, p, n);
		s[n] = '\0';
	}
	return s;
}

void
inbox_handler(void *arg, const struct mq_message *m)
{
	struct inbox *ib = arg;
	struct inbox_msg *q = calloc(1, sizeof(*q));

	if (q == NULL)
		return;
	q->topic = strdup(m->topic);
	q->payload = dupn(m->payload, m->len);
	q->len = m->len;
	q->retained = m->retained;
	if (m->correlation != NULL) {
		q->correlation = dupn(m->correlation, m->correlation_len);
		q->correlation_len = m->correlation_len;
	}
	if (q->topic == NULL || q->payload == NULL) {
		inbox_msg_free(q);
		return;
	}
	pthread_mutex_lock(&ib->lock);
	if (ib->tail != NULL)
		ib->tail->next = q;
	else
		ib->head = q;
	ib->tail = q;
	pthread_cond_signal(&ib->cond);
	pthread_mutex_unlock(&ib->lock);
}

struct inbox_msg *
inbox_wait(struct inbox *ib, int64_t deadline)
{
	struct inbox_msg *m = NULL;
	struct timespec ts;

	pthread_mutex_lock(&ib->lock);
	while (ib->head == NULL) {
		int64_t left = deadline - mono_ms();
		if (left <= 0)
			break;
		if (left > 200)
			left = 200; /* wake up to notice signals */
		clock_after_ms(CLOCK_MONOTONIC, left, &ts);
		pthread_cond_timedwait(&ib->cond, &ib->lock, &ts);
		if (ib->head == NULL)
			break; /* let the caller check its quit flag; it calls again */
	}
	if ((m = ib->head) != NULL) {
		ib->head = m->next;
		if (ib->head == NULL)
			ib->tail = NULL;
		m->next = NULL;
	}
	pthread_mutex_unlock(&ib->lock);
	return m;
}

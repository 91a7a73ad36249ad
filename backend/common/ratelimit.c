#include "ratelimit.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* Slots looked at from a key's home slot: a key lives in one of these. */
#define RATELIMIT_PROBE 16

struct rl_slot {
	unsigned char key[RATELIMIT_KEY_MAX];
	size_t len; /* 0: never used */
	double tokens;
	int64_t at_ms;
};

struct ratelimit {
	pthread_mutex_t lock;
	double rate, burst;
	struct rl_slot *slots;
	size_t nslots;
};

struct ratelimit *
ratelimit_new(double rate, double burst, size_t max_keys)
{
	struct ratelimit *rl = calloc(1, sizeof(*rl));

	if (rl == NULL)
		return NULL;
	rl->rate = rate;
	rl->burst = burst < 1 ? 1 : burst;
	rl->nslots = (max_keys < 8 ? 8 : max_keys) * 2;
	if ((rl->slots = calloc(rl->nslots, sizeof(*rl->slots))) == NULL) {
		free(rl);
		return NULL;
	}
	pthread_mutex_init(&rl->lock, NULL);
	return rl;
}

void
ratelimit_free(struct ratelimit *rl)
{
	if (rl == NULL)
		return;
	pthread_mutex_destroy(&rl->lock);
	free(rl->slots);
	free(rl);
}

void
ratelimit_set(struct ratelimit *rl, double rate, double burst)
{
	pthread_mutex_lock(&rl->lock);
	rl->rate = rate;
	rl->burst = burst < 1 ? 1 : burst;
	pthread_mutex_unlock(&rl->lock);
}

double
ratelimit_rate(struct ratelimit *rl)
{
	double r;

	pthread_mutex_lock(&rl->lock);
	r = rl->rate;
	pthread_mutex_unlock(&rl->lock);
	return r;
}

/* FNV-1a of the key. */
static uint64_t
hash(const unsigned char *key, size_t len)
{
	uint64_t h = 1469598103934665603ULL;

	for (size_t i = 0; i < len; i++)
		h = (h ^ key[i]) * 1099511628211ULL;
	return h;
}

/* A slot's bucket brought up to now. */
static void
refill(const struct ratelimit *rl, struct rl_slot *s, int64_t now)
{
	if (now > s->at_ms)
		s->tokens += (double)(now - s->at_ms) * rl->rate / 1000.0;
	if (s->tokens > rl->burst)
		s->tokens = rl->burst;
	s->at_ms = now;
}

/*
 * The slot of key: its own, else a free one, else one whose bucket has
 * refilled (taken over with a full bucket, which is what the idle key
 * had).  NULL when every slot near the key's home is busy.  Lock held.
 */
static struct rl_slot *
slot_of(struct ratelimit *rl, const unsigned char *key, size_t len, int64_t now)
{
	size_t home = (size_t)(hash(key, len) % rl->nslots);
	struct rl_slot *idle = NULL;

	for (size_t i = 0; i < RATELIMIT_PROBE; i++) {
		struct rl_slot *s = &rl->slots[(home + i) % rl->nslots];

		if (s->len == len && memcmp(s->key, key, len) == 0)
			return s;
		if (s->len == 0) {
			idle = s;
			break; /* a key is never stored past a slot that was never used */
		}
		if (idle == NULL) {
			refill(rl, s, now);
			if (s->tokens >= rl->burst)
				idle = s;
		}
	}
	if (idle != NULL) {
		memcpy(idle->key, key, len);
		idle->len = len;
		idle->tokens = rl->burst;
		idle->at_ms = now;
	}
	return idle;
}

int64_t
ratelimit_take(struct ratelimit *rl, const void *key, size_t len, int64_t now_ms)
{
	static const unsigned char empty[1];
	struct rl_slot *s;
	int64_t wait = 0;

	if (rl == NULL)
		return 0;
	if (len > RATELIMIT_KEY_MAX)
		len = RATELIMIT_KEY_MAX;
	if (len == 0) {
		key = empty; /* one byte of zero: a used slot never has len 0 */
		len = 1;
	}
	pthread_mutex_lock(&rl->lock);
	if (rl->rate <= 0)
		; /* no limit */
	else if ((s = slot_of(rl, key, len, now_ms)) == NULL) {
		/* every slot near it is busy with an active key: refused until one refills */
		wait = (int64_t)(1000.0 / rl->rate) + 1;
	} else {
		refill(rl, s, now_ms);
		if (s->tokens >= 1)
			s->tokens -= 1;
		else
			wait = (int64_t)((1 - s->tokens) * 1000.0 / rl->rate) + 1;
	}
	pthread_mutex_unlock(&rl->lock);
	return wait;
}

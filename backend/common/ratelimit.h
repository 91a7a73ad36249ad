/*
 * ratelimit.h - token buckets keyed exactly: one per client address, per
 * user, per account.
 *
 * Each key has its own bucket of burst tokens refilled at rate per second;
 * a request takes one.  Keys are compared whole (never a hash slot shared
 * by two keys, so no key can take over another's bucket), and the table is
 * bounded: a new key takes the slot of one whose bucket has refilled (an
 * idle key, whose bucket is then exactly what a new one gets), and when no
 * slot near its own is free or idle, the new key is refused until one is.
 * Thread-safe.
 */
#ifndef PIZZA_RATELIMIT_H
#define PIZZA_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>

#define RATELIMIT_KEY_MAX 64

struct ratelimit;

/*
 * A limiter of rate tokens per second, burst at most, for about max_keys
 * keys at once (the table holds twice that many slots).  rate <= 0 means
 * no limit.  NULL out of memory.
 */
struct ratelimit *ratelimit_new(double rate, double burst, size_t max_keys);
void ratelimit_free(struct ratelimit *rl);

/*
 * Takes one token from key's bucket (len bytes, at most RATELIMIT_KEY_MAX;
 * a longer key is cut).  Returns 0 when allowed, else the milliseconds
 * until a token will be there (at least 1).
 */
int64_t ratelimit_take(struct ratelimit *rl, const void *key, size_t len, int64_t now_ms);

/* Changes the limit for every key from now on (rate <= 0: none). */
void ratelimit_set(struct ratelimit *rl, double rate, double burst);
/* The limit, per second (0: none). */
double ratelimit_rate(struct ratelimit *rl);

#endif

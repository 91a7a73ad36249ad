/*
 * deadletter.h - where messages go that a service cannot use.
 *
 * A message that fails validation, is too large, or makes a handler fail is
 * published (QoS 1) to pizza/deadletter as
 *   {"type":"DeadLetter","service":...,"topic":...,"reason":...,"at":...,
 *    "payload":"<original text>" | "payload_base64":"...", "truncated":false}
 * logged, and skipped: the service goes on with the next message.
 */
#ifndef PIZZA_DEADLETTER_H
#define PIZZA_DEADLETTER_H

#include <stddef.h>

#include "mq.h"

#define DEADLETTER_MAX_PAYLOAD (1024 * 1024) /* larger originals are cut and marked truncated */

/*
 * Builds the dead-letter message (a new string the caller frees), or NULL
 * out of memory.  Exposed for tests; services call deadletter_send().
 */
char *deadletter_encode(const char *svc, const char *topic, const void *payload, size_t len,
    const char *reason);

/*
 * Logs and publishes one dead letter (the consumer skeleton, consume.c,
 * calls it and counts it).  Returns 0, or -1 if it could not be queued (logged).
 */
int deadletter_send(struct mq *mq, const char *svc, const char *topic, const void *payload, size_t len,
    const char *reason);

/* Standard base64 of buf into a new NUL-terminated string, or NULL out of memory. */
char *deadletter_base64(const void *buf, size_t len);

#endif

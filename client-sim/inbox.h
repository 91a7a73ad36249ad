/*
 * inbox.h - hands messages from paho's callback thread to phone-sim's main
 * thread: the callback copies and queues, the main thread waits and reads.
 */
#ifndef PIZZA_INBOX_H
#define PIZZA_INBOX_H

#include <stddef.h>
#include <stdint.h>

#include "mq.h"

struct inbox_msg {
	struct inbox_msg *next;
	char *topic;
	char *payload; /* NUL-terminated copy */
	size_t len;
	int retained;
	char *correlation; /* copy, NUL-terminated; NULL if none */
	size_t correlation_len;
};

struct inbox;

struct inbox *inbox_new(void);
void inbox_free(struct inbox *ib);
/* An mq_handler: arg is the inbox. */
void inbox_handler(void *arg, const struct mq_message *m);
/* Waits until a message is queued or the monotonic deadline passes. Returns a message the caller frees with inbox_msg_free, or NULL. */
struct inbox_msg *inbox_wait(struct inbox *ib, int64_t deadline_mono_ms);
void inbox_msg_free(struct inbox_msg *m);

#endif

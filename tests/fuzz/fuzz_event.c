/*
 * fuzz_event.c - libFuzzer target for the event codec (backend/common/event.c).
 *
 * Every input is decoded as an event payload off the bus.  Checks:
 *   - no crash, leak or undefined behaviour (ASan, UBSan);
 *   - when decoding succeeds, the event encodes (event_encode() != NULL),
 *     the encoding decodes again to an equal event, and encoding that gives
 *     the same bytes (decode/encode is a fixed point after one round);
 *   - when decoding fails, the reason is valid UTF-8 (it goes into dead
 *     letters and JSON replies).
 * A broken property abort()s, which libFuzzer reports as a crash.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "event.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
must_be_utf8(const char *s, const char *what)
{
	json_t *j = json_string(s);

	if (j == NULL) {
		fprintf(stderr, "fuzz_event: %s is not valid UTF-8: '%s'\n", what, s);
		abort();
	}
	json_decref(j);
}

/* Compares the fields that matter; names the first that differs, or returns NULL. */
static const char *
event_diff(const struct event *a, const struct event *b)
{
	if (a->type != b->type)
		return "type";
	if (strcmp(a->event_id, b->event_id) != 0)
		return "event_id";
	if (strcmp(a->order_id, b->order_id) != 0)
		return "order_id";
	if (strcmp(a->user_id, b->user_id) != 0)
		return "user_id";
	if (a->at_ms != b->at_ms)
		return "at_ms";
	if (a->n_items != b->n_items)
		return "n_items";
	for (size_t i = 0; i < a->n_items && i < EVENT_MAX_ITEMS; i++)
		if (strcmp(a->items[i].sku, b->items[i].sku) != 0 || a->items[i].qty != b->items[i].qty)
			return "items";
	if (strcmp(a->callback_url, b->callback_url) != 0)
		return "callback_url";
	if (a->status != b->status)
		return "status";
	if (a->seq != b->seq)
		return "seq";
	if (strcmp(a->worker, b->worker) != 0)
		return "worker";
	if (strcmp(a->message, b->message) != 0)
		return "message";
	if (strcmp(a->delivery_id, b->delivery_id) != 0)
		return "delivery_id";
	if (a->outcome != b->outcome)
		return "outcome";
	if (a->attempts != b->attempts)
		return "attempts";
	return NULL;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct event ev, again;
	char err[256], err2[256];
	char *out, *out2;
	const char *diff;

	memset(err, 0x55, sizeof(err));
	if (event_decode(data, size, &ev, err, sizeof(err)) != 0) {
		if (memchr(err, '\0', sizeof(err)) == NULL) {
			fprintf(stderr, "fuzz_event: error text is not NUL-terminated\n");
			abort();
		}
		must_be_utf8(err, "the error text");
		return 0;
	}
	if ((out = event_encode(&ev)) == NULL) {
		fprintf(stderr, "fuzz_event: a decoded event does not encode\n");
		abort();
	}
	if (event_decode(out, strlen(out), &again, err2, sizeof(err2)) != 0) {
		fprintf(stderr, "fuzz_event: the encoding of a decoded event does not decode: %s\n%s\n", err2, out);
		abort();
	}
	if ((diff = event_diff(&ev, &again)) != NULL) {
		fprintf(stderr, "fuzz_event: field '%s' changed through encode/decode\n%s\n", diff, out);
		abort();
	}
	if ((out2 = event_encode(&again)) == NULL || strcmp(out, out2) != 0) {
		fprintf(stderr, "fuzz_event: encoding is not stable:\n%s\n%s\n", out, out2 ? out2 : "(NULL)");
		abort();
	}
	free(out2);
	free(out);
	return 0;
}

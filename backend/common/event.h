/*
 * event.h - the event codec: the only place events are turned into JSON and
 * back.  Decoding is strict: every field's presence, type, length and value
 * is checked before anything is stored, so a consumer never acts on half an
 * event.  Unknown extra fields are ignored (tolerant reader), unknown types
 * and values are not.  The contract is documented in docs/events.md.
 */
#ifndef PIZZA_EVENT_H
#define PIZZA_EVENT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "util.h"

#define EVENT_MAX_BYTES (64 * 1024) /* larger payloads are refused unread */
#define EVENT_MAX_ITEMS 20
#define EVENT_MAX_QTY 99
#define EVENT_SKU_MAX 32
#define EVENT_MESSAGE_MAX 256
#define EVENT_URL_MAX 512

/*
 * OrderReady is the ready OrderStatus for the services that act on it
 * (order-service, notifier), with the order's items and callback_url: the
 * status's fields and OrderPlaced's together, on a topic no phone reads.
 */
enum event_type {
	EVENT_ORDER_PLACED = 1,
	EVENT_ORDER_STATUS,
	EVENT_PICKUP_ALERT,
	EVENT_CALLBACK_DELIVERY,
	EVENT_ORDER_READY,
};

/* How a callback delivery ended (CallbackDelivery events). */
enum delivery_outcome { DELIVERY_DELIVERED = 1, DELIVERY_FAILED };
#define EVENT_MAX_ATTEMPTS 100

/* The stages of an order, in order.  An OrderStatus's seq is its stage's number. */
enum order_status {
	STATUS_ACCEPTED = 1,
	STATUS_PREP,
	STATUS_BAKE,
	STATUS_OVEN,
	STATUS_READY,
};
#define STATUS_COUNT 5

struct item {
	char sku[EVENT_SKU_MAX + 1];
	int qty;
};

struct event {
	enum event_type type;
	char event_id[NAME_MAX_LEN + 1];
	char order_id[NAME_MAX_LEN + 1];
	char user_id[NAME_MAX_LEN + 1];
	int64_t at_ms;
	/* OrderPlaced, OrderReady */
	size_t n_items;
	struct item items[EVENT_MAX_ITEMS];
	char callback_url[EVENT_URL_MAX + 1]; /* optional: "" when absent */
	/* OrderStatus, OrderReady (status ready, seq 5) */
	enum order_status status;
	int seq;
	char worker[NAME_MAX_LEN + 1];
	/* PickupAlert; CallbackDelivery's detail (may be "") */
	char message[EVENT_MESSAGE_MAX + 1];
	/* CallbackDelivery */
	char delivery_id[NAME_MAX_LEN + 1];
	enum delivery_outcome outcome;
	int attempts;
};

/* "delivered", "failed"; NULL for an unknown value. */
const char *event_outcome_name(enum delivery_outcome o);
/* "OrderPlaced", ... ; NULL for an unknown value. */
const char *event_type_name(enum event_type t);
/* "accepted", "prep", ... ; NULL for an unknown value. */
const char *event_status_name(enum order_status s);
/* Returns the status with this name, or 0 if there is none. */
enum order_status event_status_from_name(const char *name);

/*
 * Fills ev with a new event of type t: a fresh event_id, at = now, and the
 * given order and user ids (copied; both must pass name_valid()).  The
 * caller fills the type's own fields.  Returns 0, or -1 on a bad id.
 */
int event_init(struct event *ev, enum event_type t, const char *order_id, const char *user_id);

/*
 * Encodes ev as one compact JSON object in a new NUL-terminated string the
 * caller frees.  Returns NULL if ev does not pass the same checks
 * event_decode() applies (an invalid event is never put on the bus).
 */
char *event_encode(const struct event *ev);

/*
 * Decodes and validates a payload of len bytes (not NUL-terminated).
 * Returns 0 with ev filled, or -1 with a one-line reason in err (ev is then
 * unspecified and must not be used).
 */
int event_decode(const void *buf, size_t len, struct event *ev, char *err, size_t errlen);

/*
 * Parses and validates an order's items array (borrowed reference): 1 to
 * EVENT_MAX_ITEMS objects {"sku": known menu sku, "qty": 1..EVENT_MAX_QTY}.
 * Shared by the event decoder and every order intake.  Returns 0 with
 * items[0..*n) filled, or -1 with a reason naming the field in err.
 */
int event_items_from_json(const json_t *arr, struct item *items, size_t *n, char *err, size_t errlen);

/*
 * A new JSON string for s, which may hold invalid UTF-8 (an error text
 * quoting hostile input, say): s itself when valid, else a copy with every
 * byte outside printable ASCII replaced by '?'.  Never NULL unless out of memory.
 */
json_t *event_json_lossy(const char *s);

#endif

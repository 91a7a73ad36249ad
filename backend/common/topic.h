/*
 * topic.h - the topic map, in one place.  See docs/architecture.md.
 */
#ifndef PIZZA_TOPIC_H
#define PIZZA_TOPIC_H

#include <stddef.h>

#define TOPIC_MAX 256

#define TOPIC_PLACED "pizza/orders/placed"
/*
 * The kitchen's answers to order-service and the notifier, on topics no
 * phone reads (docs/events.md): an executor took an order (an OrderStatus
 * accepted, for order-service's supervision), and an order is ready
 * (OrderReady, for order-service and the notifier).  The phone's status
 * topic carries prep, bake, oven and ready; each service receives only
 * what it acts on (docs/performance.md, "Deliveries per order").
 */
#define TOPIC_ACCEPTED "pizza/orders/accepted"
#define TOPIC_READY "pizza/orders/ready"
#define TOPIC_DEADLETTER "pizza/deadletter"
/* How each order's callback delivery ended (CallbackDelivery), for the history. */
#define TOPIC_CALLBACKS "pizza/orders/callbacks"
/* Every user's status topics, for fanout consumers. */
#define TOPIC_ALL_STATUS "pizza/users/+/orders/+/status"
/*
 * Every user's order intake, for order-service.  A plain subscription, not a
 * shared one: mosquitto 2.0.11 does not restore shared subscriptions from
 * its persistence file, so requests sent while a restarted broker waits for
 * order-service to reconnect would be dropped; a plain persistent
 * subscription queues them.  (Run one order-service per broker.)
 */
#define TOPIC_ALL_NEW "pizza/users/+/orders/new"
/* The competing executors' shared subscription. */
#define TOPIC_EXECUTORS "$share/executors/" TOPIC_PLACED

/* Builders write into buf (size n) and return 0, or -1 if it did not fit. */
int topic_status(char *buf, size_t n, const char *user_id, const char *order_id);
int topic_alerts(char *buf, size_t n, const char *user_id);
int topic_new(char *buf, size_t n, const char *user_id);
/* The subtree a phone subscribes to: pizza/users/<user_id>/# */
int topic_user_all(char *buf, size_t n, const char *user_id);
/* A reply topic for one requesting client: pizza/users/<user_id>/replies/<client> */
int topic_reply(char *buf, size_t n, const char *user_id, const char *client);
/*
 * A device's own topics: pizza/users/<user_id>/devices/<device>/<what>, what
 * being "hello", "receipts" or "alerts" (docs/events.md, "Devices and
 * delivery receipts").
 */
int topic_device(char *buf, size_t n, const char *user_id, const char *device, const char *what);
/* Every device's hello and receipts, for the notifier and order-history. */
#define TOPIC_ALL_HELLO "pizza/users/+/devices/+/hello"
#define TOPIC_ALL_RECEIPTS "pizza/users/+/devices/+/receipts"

enum topic_kind {
	TOPIC_KIND_OTHER = 0,
	TOPIC_KIND_NEW,
	TOPIC_KIND_STATUS,
	TOPIC_KIND_ALERTS,
	TOPIC_KIND_DEVICE_HELLO,    /* pizza/users/<u>/devices/<d>/hello */
	TOPIC_KIND_DEVICE_RECEIPTS, /* .../receipts */
	TOPIC_KIND_DEVICE_ALERTS,   /* .../alerts */
};

/*
 * Classifies topic and copies its user id (and order id for a status
 * topic) into the given buffers (each NAME_MAX_LEN + 1 bytes; order may be
 * NULL).  The ids are checked with name_valid(); returns TOPIC_KIND_OTHER if
 * the topic is none of the user topics or an id is not valid.  A device
 * topic's device name is checked too, and copied by topic_parse_device().
 */
enum topic_kind topic_parse(const char *topic, char *user, char *order);
/*
 * topic_parse() for a device topic: copies its user and device names (each
 * NAME_MAX_LEN + 1 bytes) and returns TOPIC_KIND_DEVICE_*, or returns
 * TOPIC_KIND_OTHER for any other topic.
 */
enum topic_kind topic_parse_device(const char *topic, char *user, char *device);

/*
 * 1 if topic matches the subscription filter (MQTT wildcards + and #; a
 * shared subscription's "$share/<group>/" prefix is skipped), else 0.
 */
int topic_matches(const char *filter, const char *topic);

/* filter without its "$share/<group>/" prefix (a pointer into filter). */
const char *topic_unshared(const char *filter);


#endif

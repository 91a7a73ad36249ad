/*
 * topic.h - the topic map, in one place.  See docs/architecture.md.
 */
#ifndef PIZZA_TOPIC_H
#define PIZZA_TOPIC_H

#include <stddef.h>

#define TOPIC_MAX 256

#define TOPIC_PLACED "pizza/orders/placed"
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

enum topic_kind { TOPIC_KIND_OTHER = 0, TOPIC_KIND_NEW, TOPIC_KIND_STATUS, TOPIC_KIND_ALERTS };

/*
 * Classifies topic and copies its user id (and order id for a status
 * topic) into the given buffers (each NAME_MAX_LEN + 1 bytes; order may be
 * NULL).  The ids are checked with name_valid(); returns TOPIC_KIND_OTHER if
 * the topic is none of the user topics or an id is not valid.
 */
enum topic_kind topic_parse(const char *topic, char *user, char *order);

/*
 * 1 if topic matches the subscription filter (MQTT wildcards + and #; a
 * shared subscription's "$share/<group>/" prefix is skipped), else 0.
 */
int topic_matches(const char *filter, const char *topic);

/* filter without its "$share/<group>/" prefix (a pointer into filter). */
const char *topic_unshared(const char *filter);


#endif

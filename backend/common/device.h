/*
 * device.h - what a device says about itself (docs/events.md, "Devices and
 * delivery receipts"): its hello, sent on every connect to
 * pizza/users/<u>/devices/<d>/hello, and a receipt for each alert it shows,
 * sent to .../receipts.  Neither is an order event (no type, no time: a
 * device's clock is never trusted), so they have their own small codec
 * here, as strict as event.c's: a JSON object of at most DEVICE_MSG_MAX
 * bytes, no duplicate keys, every field present, a string and a valid id;
 * unknown extra fields are ignored.
 */
#ifndef PIZZA_DEVICE_H
#define PIZZA_DEVICE_H

#include <stddef.h>

#include "util.h"

#define DEVICE_MSG_MAX 4096 /* larger hellos and receipts are refused unread */

/* {"device":"<device>"} as a new string the caller frees; NULL when device is not a valid name. */
char *device_hello_encode(const char *device);
/*
 * Decodes a hello of len bytes: copies its device name into device
 * (NAME_MAX_LEN + 1 bytes).  Returns 0, or -1 with a one-line reason in err.
 */
int device_hello_decode(const void *buf, size_t len, char *device, char *err, size_t errlen);

struct device_receipt {
	char event_id[NAME_MAX_LEN + 1]; /* the alert's event id */
	char order_id[NAME_MAX_LEN + 1];
};

/* {"event_id":…,"order_id":…} as a new string the caller frees; NULL when an id is not valid. */
char *device_receipt_encode(const char *event_id, const char *order_id);
/* Decodes a receipt of len bytes into *r.  Returns 0, or -1 with a one-line reason in err (*r unspecified). */
int device_receipt_decode(const void *buf, size_t len, struct device_receipt *r, char *err, size_t errlen);
/*
 * A receipt as a consumer gets it: copies the user and device names its
 * topic (pizza/users/<user>/devices/<device>/receipts) gives (each
 * NAME_MAX_LEN + 1 bytes) and decodes buf into *r.  Returns 0, or -1 with
 * a one-line reason in err.
 */
int device_receipt_from(const char *topic, const void *buf, size_t len, char *user, char *device,
    struct device_receipt *r, char *err, size_t errlen);

/*
 * A default device name from this machine's host name, made valid: lower
 * case, every character outside [a-z0-9_-] turned to '-', cut to
 * NAME_MAX_LEN; "phone" when there is no host name.  Into buf (n bytes,
 * at least NAME_MAX_LEN + 1).
 */
void device_name_default(char *buf, size_t n);

#endif

#include "device.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "topic.h"

/* The JSON object in buf, as a new reference, or NULL with the reason in err. */
static json_t *
load_object(const void *buf, size_t len, char *err, size_t errlen)
{
	json_error_t je;
	json_t *o;

	if (len > DEVICE_MSG_MAX) {
		snprintf(err, errlen, "message too large: %zu bytes (at most %d)", len, DEVICE_MSG_MAX);
		return NULL;
	}
	if ((o = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je)) == NULL) {
		snprintf(err, errlen, "malformed JSON: %s", je.text);
		return NULL;
	}
	if (!json_is_object(o)) {
		snprintf(err, errlen, "expected a JSON object");
		json_decref(o);
		return NULL;
	}
	return o;
}

/* Copies o's field name, which must be a valid id, into out (NAME_MAX_LEN + 1).  0, or -1 with err. */
static int
id_field(const json_t *o, const char *name, char *out, char *err, size_t errlen)
{
	const json_t *v = json_object_get(o, name);
	const char *s = json_string_value(v);

	if (v == NULL) {
		snprintf(err, errlen, "%s: missing", name);
		return -1;
	}
	if (s == NULL) {
		snprintf(err, errlen, "%s: expected a string", name);
		return -1;
	}
	if (json_string_length(v) > NAME_MAX_LEN || !name_valid(s)) {
		snprintf(err, errlen, "%s: expected 1-%d characters of A-Z a-z 0-9 _ -", name, NAME_MAX_LEN);
		return -1;
	}
	str_copy(out, NAME_MAX_LEN + 1, s);
	return 0;
}

char *
device_hello_encode(const char *device)
{
	json_t *o;
	char *s;

	if (!name_valid(device) || (o = json_pack("{s:s}", "device", device)) == NULL)
		return NULL;
	s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	return s;
}

int
device_hello_decode(const void *buf, size_t len, char *device, char *err, size_t errlen)
{
	json_t *o = load_object(buf, len, err, errlen);
	int rc;

	if (o == NULL)
		return -1;
	rc = id_field(o, "device", device, err, errlen);
	json_decref(o);
	return rc;
}

char *
device_receipt_encode(const char *event_id, const char *order_id)
{
	json_t *o;
	char *s;

	if (!name_valid(event_id) || !name_valid(order_id) ||
	    (o = json_pack("{s:s, s:s}", "event_id", event_id, "order_id", order_id)) == NULL)
		return NULL;
	s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	return s;
}

int
device_receipt_decode(const void *buf, size_t len, struct device_receipt *r, char *err, size_t errlen)
{
	json_t *o = load_object(buf, len, err, errlen);
	int rc;

	if (o == NULL)
		return -1;
	rc = id_field(o, "event_id", r->event_id, err, errlen) == 0 &&
		id_field(o, "order_id", r->order_id, err, errlen) == 0 ? 0 : -1;
	json_decref(o);
	return rc;
}

int
device_receipt_from(const char *topic, const void *buf, size_t len, char *user, char *device,
    struct device_receipt *r, char *err, size_t errlen)
{
	if (topic_parse_device(topic, user, device) != TOPIC_KIND_DEVICE_RECEIPTS) {
		snprintf(err, errlen, "the topic's user or device name is not valid");
		return -1;
	}
	return device_receipt_decode(buf, len, r, err, errlen);
}

void
device_name_default(char *buf, size_t n)
{
	char host[256] = "";
	size_t j = 0;

	if (gethostname(host, sizeof(host) - 1) != 0)
		host[0] = '\0';
	for (size_t i = 0; host[i] != '\0' && j < NAME_MAX_LEN && j + 1 < n; i++) {
		unsigned char ch = (unsigned char)tolower((unsigned char)host[i]);
		buf[j++] = (char)(isalnum(ch) || ch == '_' || ch == '-' ? ch : '-');
	}
	buf[j] = '\0';
	if (j == 0)
		str_copy(buf, n, "phone");
}

#include "deadletter.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "event.h"
#include "log.h"
#include "topic.h"
#include "util.h"

char *
deadletter_base64(const void *buf, size_t len)
{
	static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	const unsigned char *p = buf;
	char *out, *o;
	size_t i;

	if ((out = malloc((len + 2) / 3 * 4 + 1)) == NULL)
		return NULL;
	o = out;
	for (i = 0; i + 2 < len; i += 3) {
		*o++ = tbl[p[i] >> 2];
		*o++ = tbl[((p[i] & 3) << 4) | (p[i + 1] >> 4)];
		*o++ = tbl[((p[i + 1] & 15) << 2) | (p[i + 2] >> 6)];
		*o++ = tbl[p[i + 2] & 63];
	}
	if (i < len) {
		*o++ = tbl[p[i] >> 2];
		if (i + 1 < len) {
			*o++ = tbl[((p[i] & 3) << 4) | (p[i + 1] >> 4)];
			*o++ = tbl[(p[i + 1] & 15) << 2];
		} else {
			*o++ = tbl[(p[i] & 3) << 4];
			*o++ = '=';
		}
		*o++ = '=';
	}
	*o = '\0';
	return out;
}

char *
deadletter_encode(const char *svc, const char *topic, const void *payload, size_t len,
    const char *reason)
{
	json_t *o, *text;
	char at[32], *out = NULL;
	size_t keep = len > DEADLETTER_MAX_PAYLOAD ? DEADLETTER_MAX_PAYLOAD : len;

	if ((o = json_object()) == NULL)
		return NULL;
	json_object_set_new(o, "type", json_string("DeadLetter"));
	json_object_set_new(o, "service", json_string(svc));
	/* topics and reasons are UTF-8 by MQTT's rules; json_string refuses anything else */
	json_object_set_new(o, "topic", topic != NULL ? event_json_lossy(topic) : json_null());
	json_object_set_new(o, "reason", event_json_lossy(reason));
	json_object_set_new(o, "at", json_string(time_rfc3339(now_ms(), at, sizeof(at))));
	/* the original as text when it is valid UTF-8 without NULs, else base64 */
	text = memchr(payload, '\0', keep) == NULL ? json_stringn(payload, keep) : NULL;
	if (text != NULL)
		json_object_set_new(o, "payload", text);
	else {
		char *b64 = deadletter_base64(payload, keep);
		if (b64 == NULL)
			goto out;
		json_object_set_new(o, "payload_base64", json_string(b64));
		free(b64);
	}
	json_object_set_new(o, "size", json_integer((json_int_t)len));
	json_object_set_new(o, "truncated", json_boolean(keep < len));
	out = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
out:
	json_decref(o);
	return out;
}

int
deadletter_send(struct mq *mq, const char *svc, const char *topic, const void *payload, size_t len,
    const char *reason)
{
	char *msg;
	int rc;

	log_warn("dead-lettered a message", "topic=%s size=%zu reason=%s", LOGQ(topic != NULL ? topic : "-"), len,
	    LOGQ(reason));
	if ((msg = deadletter_encode(svc, topic, payload, len, reason)) == NULL) {
		log_error("cannot encode dead letter", NULL);
		return -1;
	}
	rc = mq_publish_text(mq, TOPIC_DEADLETTER, msg, 1, 0, 0);
	free(msg);
	return rc;
}

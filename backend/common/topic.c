#include "topic.h"

#include <stdio.h>
#include <string.h>

#include "util.h"

static int
fit(int r, size_t n)
{
	return r < 0 || (size_t)r >= n ? -1 : 0;
}

int
topic_status(char *buf, size_t n, const char *user_id, const char *order_id)
{
	return fit(snprintf(buf, n, "pizza/users/%s/orders/%s/status", user_id, order_id), n);
}

int
topic_alerts(char *buf, size_t n, const char *user_id)
{
	return fit(snprintf(buf, n, "pizza/users/%s/alerts", user_id), n);
}

int
topic_new(char *buf, size_t n, const char *user_id)
{
	return fit(snprintf(buf, n, "pizza/users/%s/orders/new", user_id), n);
}

int
topic_user_all(char *buf, size_t n, const char *user_id)
{
	return fit(snprintf(buf, n, "pizza/users/%s/#", user_id), n);
}

int
topic_reply(char *buf, size_t n, const char *user_id, const char *client)
{
	return fit(snprintf(buf, n, "pizza/users/%s/replies/%s", user_id, client), n);
}

int
topic_device(char *buf, size_t n, const char *user_id, const char *device, const char *what)
{
	return fit(snprintf(buf, n, "pizza/users/%s/devices/%s/%s", user_id, device, what), n);
}

/* Copies the level starting at *p into out (NAME_MAX_LEN + 1) and advances past its '/'. */
static int
level(const char **p, char *out)
{
	const char *s = *p, *e = strchr(s, '/');
	size_t len = e != NULL ? (size_t)(e - s) : strlen(s);
	char tmp[NAME_MAX_LEN + 1];

	if (len == 0 || len > NAME_MAX_LEN)
		return -1;
	memcpy(tmp, s, len);
	tmp[len] = '\0';
	if (!name_valid(tmp))
		return -1;
	if (out != NULL)
		memcpy(out, tmp, len + 1);
	*p = e != NULL ? e + 1 : s + len;
	return 0;
}

enum topic_kind
topic_parse(const char *topic, char *user, char *order)
{
	static const char prefix[] = "pizza/users/";
	const char *p = topic;

	if (strncmp(p, prefix, sizeof(prefix) - 1) != 0)
		return TOPIC_KIND_OTHER;
	p += sizeof(prefix) - 1;
	if (level(&p, user) != 0)
		return TOPIC_KIND_OTHER;
	if (strcmp(p, "alerts") == 0)
		return TOPIC_KIND_ALERTS;
	if (strcmp(p, "orders/new") == 0)
		return TOPIC_KIND_NEW;
	if (strncmp(p, "orders/", 7) == 0) {
		p += 7;
		if (level(&p, order) != 0 || strcmp(p, "status") != 0)
			return TOPIC_KIND_OTHER;
		return TOPIC_KIND_STATUS;
	}
	if (strncmp(p, "devices/", 8) == 0) {
		p += 8;
		if (level(&p, NULL) != 0)
			return TOPIC_KIND_OTHER;
		if (strcmp(p, "hello") == 0)
			return TOPIC_KIND_DEVICE_HELLO;
		if (strcmp(p, "receipts") == 0)
			return TOPIC_KIND_DEVICE_RECEIPTS;
		if (strcmp(p, "alerts") == 0)
			return TOPIC_KIND_DEVICE_ALERTS;
	}
	return TOPIC_KIND_OTHER;
}

enum topic_kind
topic_parse_device(const char *topic, char *user, char *device)
{
	enum topic_kind k = topic_parse(topic, user, NULL);
	const char *p;

	if (k != TOPIC_KIND_DEVICE_HELLO && k != TOPIC_KIND_DEVICE_RECEIPTS && k != TOPIC_KIND_DEVICE_ALERTS)
		return TOPIC_KIND_OTHER;
	p = strstr(topic + strlen("pizza/users/"), "/devices/") + strlen("/devices/");
	return level(&p, device) == 0 ? k : TOPIC_KIND_OTHER;
}

const char *
topic_unshared(const char *filter)
{
	const char *slash;

	if (strncmp(filter, "$share/", 7) != 0 || (slash = strchr(filter + 7, '/')) == NULL)
		return filter;
	return slash + 1;
}

int
topic_matches(const char *filter, const char *topic)
{
	const char *f = topic_unshared(filter), *t = topic;

	/* wildcards never match a topic starting with '$' at the first level ($SYS, $CONTROL) */
	if (t[0] == '$' && (f[0] == '+' || f[0] == '#'))
		return 0;
	for (;;) {
		if (f[0] == '#' && f[1] == '\0')
			return 1;
		if (f[0] == '+' && (f[1] == '/' || f[1] == '\0')) {
			t += strcspn(t, "/");
			f++;
		} else {
			size_t fl = strcspn(f, "/"), tl = strcspn(t, "/");
			if (fl != tl || strncmp(f, t, fl) != 0)
				return 0;
			f += fl;
			t += tl;
		}
		if (*f == '\0' || *t == '\0')
			break;
		f++;
		t++;
		/* "a/#" matches "a" too, and "a/" is a level of its own */
		if (*t == '\0' && *f == '#' && f[1] == '\0')
			return 1;
	}
	/* both must end together; "a/b/#" also matches "a/b" */
	return *f == '\0' && *t == '\0' ? 1 : (*t == '\0' && strcmp(f, "/#") == 0);
}

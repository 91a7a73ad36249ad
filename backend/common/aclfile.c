#include "aclfile.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ACL_LINE_MAX 512

/* ACL_SUBSCRIBE: may subscribe, receives nothing (a walk over retained messages: mq_walk()) */
enum acl_access { ACL_READ = 1, ACL_WRITE = 2, ACL_DENY = 4, ACL_SUBSCRIBE = 8 };

struct acl_rule {
	char *owner; /* the user block's name, or NULL for a pattern */
	char *topic;
	int access;
	struct acl_rule *next;
};

struct aclfile {
	struct acl_rule *rules; /* in file order */
};

static void
rules_free(struct acl_rule *r)
{
	while (r != NULL) {
		struct acl_rule *next = r->next;
		free(r->owner);
		free(r->topic);
		free(r);
		r = next;
	}
}

void
aclfile_free(struct aclfile *a)
{
	if (a == NULL)
		return;
	rules_free(a->rules);
	free(a);
}

/* 0 when every level of topic holding a '%' is exactly "%u" (patterns) or none has one (topics); else -1. */
static int
topic_ok(const char *topic, int pattern)
{
	const char *p = topic;

	if (*topic == '\0')
		return -1;
	while (p != NULL) {
		const char *end = strchr(p, '/');
		size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
		const char *pc = memchr(p, '%', len);

		if (pc != NULL && !(pattern && len == 2 && p[1] == 'u'))
			return -1;
		p = end != NULL ? end + 1 : NULL;
	}
	return 0;
}

struct aclfile *
aclfile_load(const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	struct aclfile *a = NULL;
	struct acl_rule **tail;
	char line[ACL_LINE_MAX + 2], owner[ACL_LINE_MAX] = "";
	int n = 0, have_owner = 0;

	if (f == NULL) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	if ((a = calloc(1, sizeof(*a))) == NULL)
		goto nomem;
	tail = &a->rules;
	while (fgets(line, sizeof(line), f) != NULL) {
		char kind[16], w2[ACL_LINE_MAX], w3[ACL_LINE_MAX], extra[2];
		char *s = line;
		int words, access = ACL_READ | ACL_WRITE;
		const char *topic;
		struct acl_rule *r;

		n++;
		if (strchr(line, '\n') == NULL && !feof(f)) {
			snprintf(err, errlen, "%s:%d: line longer than %d characters", path, n, ACL_LINE_MAX);
			goto fail;
		}
		while (*s == ' ' || *s == '\t')
			s++;
		if (*s == '#' || *s == '\n' || *s == '\r' || *s == '\0')
			continue;
		words = sscanf(s, "%15s %511s %511s %1s", kind, w2, w3, extra);
		if (strcmp(kind, "user") == 0 && words == 2) {
			snprintf(owner, sizeof(owner), "%s", w2);
			have_owner = 1;
			continue;
		}
		if ((strcmp(kind, "topic") != 0 && strcmp(kind, "pattern") != 0) || words < 2 || words > 3) {
			snprintf(err, errlen, "%s:%d: expected \"user NAME\", \"topic [ACCESS] TOPIC\" or \"pattern [ACCESS] TOPIC\"",
			    path, n);
			goto fail;
		}
		topic = w2;
		if (words == 3) {
			topic = w3;
			if (strcmp(w2, "read") == 0)
				access = ACL_READ;
			else if (strcmp(w2, "write") == 0)
				access = ACL_WRITE;
			else if (strcmp(w2, "deny") == 0)
				access = ACL_DENY;
			else if (strcmp(w2, "subscribe") == 0)
				access = ACL_SUBSCRIBE;
			else if (strcmp(w2, "readwrite") != 0) {
				snprintf(err, errlen, "%s:%d: access must be read, write, readwrite, subscribe or deny, not \"%s\"",
				    path, n, w2);
				goto fail;
			}
		}
		if (kind[0] == 't' && !have_owner) {
			snprintf(err, errlen, "%s:%d: a topic line must follow a \"user NAME\" line", path, n);
			goto fail;
		}
		if (topic_ok(topic, kind[0] == 'p') != 0) {
			snprintf(err, errlen, "%s:%d: %s: only %%u, as a whole level of a pattern, is supported", path, n, topic);
			goto fail;
		}
		if ((r = calloc(1, sizeof(*r))) == NULL || (r->topic = strdup(topic)) == NULL ||
		    (kind[0] == 't' && (r->owner = strdup(owner)) == NULL)) {
			rules_free(r);
			goto nomem;
		}
		r->access = access;
		*tail = r;
		tail = &r->next;
	}
	if (ferror(f)) {
		snprintf(err, errlen, "%s: read error", path);
		goto fail;
	}
	fclose(f);
	return a;
nomem:
	snprintf(err, errlen, "%s: out of memory", path);
fail:
	fclose(f);
	aclfile_free(a);
	return NULL;
}

int
aclfile_has_user(const struct aclfile *a, const char *user)
{
	for (const struct acl_rule *r = a->rules; r != NULL; r = r->next)
		if (r->owner != NULL && strcmp(r->owner, user) == 0)
			return 1;
	return 0;
}

void
aclfile_role_name(const struct aclfile *a, const char *user, char *out, size_t n)
{
	snprintf(out, n, "%s-%s", aclfile_has_user(a, user) ? "svc" : "user", user);
}

/* Appends one entry to arr; -1 out of memory. */
static int
acl_add(json_t *arr, const char *type, const char *topic, int allow)
{
	return json_array_append_new(arr, json_pack("{s:s, s:s, s:b, s:i}", "acltype", type, "topic", topic, "allow", allow,
					      "priority", allow ? 0 : 10));
}

/* topic with every "%u" level replaced by user, into out of n bytes; -1 if it does not fit. */
static int
substitute(const char *topic, const char *user, char *out, size_t n)
{
	size_t len = 0;

	for (const char *p = topic; *p != '\0';) {
		const char *piece = p;
		size_t plen = 1;
		if (p[0] == '%' && p[1] == 'u') {
			piece = user;
			plen = strlen(user);
			p += 2;
		} else
			p++;
		if (len + plen >= n)
			return -1;
		memcpy(out + len, piece, plen);
		len += plen;
	}
	out[len] = '\0';
	return 0;
}

json_t *
aclfile_dynsec_acls(const struct aclfile *a, const char *user)
{
	int own = aclfile_has_user(a, user);
	json_t *arr = json_array();

	if (arr == NULL)
		return NULL;
	for (const struct acl_rule *r = a->rules; r != NULL; r = r->next) {
		char topic[ACL_LINE_MAX + 256], shared[sizeof(topic) + 16];
		int allow = !(r->access & ACL_DENY), rc = 0;

		if (own ? r->owner == NULL || strcmp(r->owner, user) != 0 : r->owner != NULL)
			continue;
		if (substitute(r->topic, user, topic, sizeof(topic)) != 0)
			continue;
		snprintf(shared, sizeof(shared), "$share/+/%s", topic);
		if (r->access & (ACL_READ | ACL_DENY)) {
			rc |= acl_add(arr, "subscribePattern", topic, allow);
			if (topic[0] != '$')
				rc |= acl_add(arr, "subscribePattern", shared, allow);
			rc |= acl_add(arr, "publishClientReceive", topic, allow);
		}
		if (r->access & (ACL_WRITE | ACL_DENY))
			rc |= acl_add(arr, "publishClientSend", topic, allow);
		if (r->access & ACL_SUBSCRIBE) {
			/* receiving is refused outright, not left to the plugin's default */
			rc |= acl_add(arr, "subscribePattern", topic, 1);
			rc |= acl_add(arr, "publishClientReceive", topic, 0);
		}
		if (rc != 0) {
			json_decref(arr);
			return NULL;
		}
	}
	return arr;
}

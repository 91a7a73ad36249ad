/*
 * accounts.c - customers, devices and tokens (accounts.h): the copy in
 * memory, the store underneath, and the broker's dynamic security plugin.
 */
#include "accounts.h"
#include "store.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "aclfile.h"
#include "log.h"
#include "mq.h"

#define PASSWORD_ITERATIONS 10000   /* PBKDF2-SHA512 rounds of the hashes the store keeps */
#define CONFIRM_MS 5000             /* how long a change waits for the broker's confirmation */
#define PASSWORD_MIN 10
#define PASSWORD_MAX 256
#define TOKEN_FRESH_S 10            /* a token this new, for a user or device the copy lacks, catches up */
#define RELOAD_TRIES 3               /* loads a reload makes when changes made here race it: reload() */
#define VERSION_EVERY_MS 200        /* how often the store's change counter is read (accounts_tick(), the main loop's pace) */

struct device {
	char name[NAME_MAX_LEN + 1];
	int64_t created_ms, login_ms;
	struct device *next;
};

struct user {
	char name[NAME_MAX_LEN + 1];
	char hash[OSTORE_HASH_MAX];
	int64_t created_ms;
	int64_t tokens_after; /* unix seconds */
	struct device *devices;
	struct user *next; /* in its bucket */
};

struct revoked {
	char mac[65];
	int64_t expiry;
	struct revoked *next;
};

enum op_kind { OP_LOGIN, OP_ADD, OP_DELETE, OP_PASSWD, OP_REVOKE_DEVICE };

/* A change sent to the broker, waiting for its confirmation. */
struct op {
	enum op_kind kind;
	uint64_t seq;
	int64_t deadline; /* mono_ms() */
	accounts_done done;
	void *arg;
	char user[NAME_MAX_LEN + 1];
	char device[NAME_MAX_LEN + 1];
	char hash[OSTORE_HASH_MAX];
	char mqtt_password[65];
	int user_missing; /* delete, revoke: the broker had no account of that name */
	struct op *next;
};

struct accounts {
	pthread_mutex_t lock;
	pthread_mutex_t reloading; /* held over a reload and the version it sets: catch_up() */
	struct order_store *store;
	struct mq *mq;
	const struct aclfile *acl;
	const char *token_secret;
	long token_ttl_s;
	struct user **buckets;
	size_t nbuckets, nusers;
	struct revoked *revoked;
	struct op *ops;
	uint64_t seq;
	char instance[17]; /* tells this process's requests from another's */
	char dummy_hash[OSTORE_HASH_MAX]; /* checked for unknown users, so timing does not tell them apart */
	int64_t version;                  /* the store's change counter the copy was loaded at */
	int64_t next_version_ms;          /* mono_ms() of the next look at it */
	uint64_t changes;                 /* changes made to the copy here: a reload that overlaps one is not swapped in */
};

/* ---- the copy in memory ----------------------------------------------------- */

static size_t
bucket_of(const struct accounts *a, const char *name)
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a */

	for (const unsigned char *p = (const unsigned char *)name; *p != '\0'; p++)
		h = (h ^ *p) * 1099511628211ULL;
	return (size_t)(h % a->nbuckets);
}

/* Locked. */
static struct user *
user_find(const struct accounts *a, const char *name)
{
	for (struct user *u = a->buckets[bucket_of(a, name)]; u != NULL; u = u->next)
		if (strcmp(u->name, name) == 0)
			return u;
	return NULL;
}

/* Doubles the table when it holds more users than buckets.  Locked. */
static void
grow(struct accounts *a)
{
	size_t old = a->nbuckets;
	struct user **was = a->buckets, **now;

	if (a->nusers <= old || (now = calloc(old * 2, sizeof(*now))) == NULL)
		return;
	a->buckets = now;
	a->nbuckets = old * 2;
	for (size_t i = 0; i < old; i++)
		while (was[i] != NULL) {
			struct user *u = was[i];
			size_t b = bucket_of(a, u->name);
			was[i] = u->next;
			u->next = now[b];
			now[b] = u;
		}
	free(was);
}

static void
devices_free(struct device *d)
{
	while (d != NULL) {
		struct device *next = d->next;
		free(d);
		d = next;
	}
}

/* Adds or replaces user acc in memory.  Locked.  -1 out of memory. */
static int
user_put(struct accounts *a, const struct ostore_account *acc)
{
	struct user *u = user_find(a, acc->user_id);

	if (u == NULL) {
		size_t b;
		if ((u = calloc(1, sizeof(*u))) == NULL)
			return -1;
		snprintf(u->name, sizeof(u->name), "%s", acc->user_id);
		b = bucket_of(a, u->name);
		u->next = a->buckets[b];
		a->buckets[b] = u;
		a->nusers++;
		grow(a);
	}
	snprintf(u->hash, sizeof(u->hash), "%s", acc->hash);
	u->created_ms = acc->created_ms;
	u->tokens_after = acc->tokens_after;
	a->changes++;
	return 0;
}

/* Locked. */
static void
user_remove(struct accounts *a, const char *name)
{
	for (struct user **pp = &a->buckets[bucket_of(a, name)]; *pp != NULL; pp = &(*pp)->next)
		if (strcmp((*pp)->name, name) == 0) {
			struct user *u = *pp;
			*pp = u->next;
			devices_free(u->devices);
			explicit_bzero(u->hash, sizeof(u->hash));
			free(u);
			a->nusers--;
			a->changes++;
			return;
		}
}

/* Locked. */
static struct device *
device_find(const struct user *u, const char *name)
{
	for (struct device *d = u->devices; d != NULL; d = d->next)
		if (strcmp(d->name, name) == 0)
			return d;
	return NULL;
}

/* Locked. */
static void
device_put(struct user *u, const char *name, int64_t created_ms, int64_t login_ms)
{
	struct device *d = device_find(u, name);

	if (d == NULL) {
		if ((d = calloc(1, sizeof(*d))) == NULL)
			return;
		snprintf(d->name, sizeof(d->name), "%s", name);
		d->created_ms = created_ms;
		d->next = u->devices;
		u->devices = d;
	}
	d->login_ms = login_ms;
}

/* Locked. */
static void
device_remove(struct user *u, const char *name)
{
	for (struct device **pp = &u->devices; *pp != NULL; pp = &(*pp)->next)
		if (strcmp((*pp)->name, name) == 0) {
			struct device *d = *pp;
			*pp = d->next;
			free(d);
			return;
		}
}

/* Locked. */
static void
revoked_put(struct accounts *a, const char *mac, int64_t expiry)
{
	struct revoked *r = calloc(1, sizeof(*r));

	if (r == NULL)
		return;
	snprintf(r->mac, sizeof(r->mac), "%s", mac);
	r->expiry = expiry;
	r->next = a->revoked;
	a->revoked = r;
	a->changes++;
}

/* Forgets revoked tokens expired by now.  Locked. */
static void
revoked_prune(struct accounts *a, int64_t now_s)
{
	for (struct revoked **pp = &a->revoked; *pp != NULL;) {
		struct revoked *r = *pp;
		if (r->expiry <= now_s) {
			*pp = r->next;
			free(r);
		} else
			pp = &r->next;
	}
}

static void
load_account(void *arg, const struct ostore_account *acc)
{
	user_put(arg, acc);
}

static void
load_device(void *arg, const struct ostore_device *d)
{
	struct user *u = user_find(arg, d->user_id);

	if (u != NULL)
		device_put(u, d->device, d->created_ms, d->login_ms);
}

static void
load_revoked(void *arg, const char *mac, int64_t expiry)
{
	revoked_put(arg, mac, expiry);
}

/* Frees a copy of the users (buckets, n of them) and revoked tokens. */
static void
copy_free(struct user **buckets, size_t n, struct revoked *revoked)
{
	for (size_t i = 0; buckets != NULL && i < n; i++)
		while (buckets[i] != NULL) {
			struct user *u = buckets[i];
			buckets[i] = u->next;
			devices_free(u->devices);
			explicit_bzero(u, sizeof(*u));
			free(u);
		}
	free(buckets);
	while (revoked != NULL) {
		struct revoked *r = revoked;
		revoked = r->next;
		free(r);
	}
}

enum swap_result { SWAP_DONE, SWAP_RACED, SWAP_FAILED };

/*
 * Loads the store's accounts into a fresh copy and swaps it for a's:
 * SWAP_DONE, SWAP_FAILED (the store or memory; the old copy kept), or
 * SWAP_RACED: the copy changed here during the load, maybe after the load
 * read the store, and swapping would undo that change (a revocation made
 * through this instance), so the old copy is kept.  Called without the lock.
 */
static enum swap_result
load_swap(struct accounts *a)
{
	struct accounts fresh;
	struct user **old;
	struct revoked *old_revoked;
	size_t old_n;
	uint64_t changes;

	pthread_mutex_lock(&a->lock);
	changes = a->changes;
	pthread_mutex_unlock(&a->lock);
	memset(&fresh, 0, sizeof(fresh));
	fresh.nbuckets = 1024;
	if ((fresh.buckets = calloc(fresh.nbuckets, sizeof(*fresh.buckets))) == NULL)
		return SWAP_FAILED;
	if (ostore_accounts_load(a->store, load_account, load_device, load_revoked, &fresh) != OSTORE_OK) {
		copy_free(fresh.buckets, fresh.nbuckets, fresh.revoked);
		return SWAP_FAILED;
	}
	pthread_mutex_lock(&a->lock);
	if (a->changes != changes) {
		pthread_mutex_unlock(&a->lock);
		copy_free(fresh.buckets, fresh.nbuckets, fresh.revoked);
		return SWAP_RACED;
	}
	old = a->buckets;
	old_n = a->nbuckets;
	old_revoked = a->revoked;
	a->buckets = fresh.buckets;
	a->nbuckets = fresh.nbuckets;
	a->nusers = fresh.nusers;
	a->revoked = fresh.revoked;
	pthread_mutex_unlock(&a->lock);
	copy_free(old, old_n, old_revoked);
	log_debug("accounts reloaded", "users=%zu", fresh.nusers);
	return SWAP_DONE;
}

/*
 * Reloads the copy from the store, which another instance's change made
 * stale: 0, or -1 (the old copy kept; the next tick tries again).  A load
 * that raced a change made here is tried again at once, RELOAD_TRIES times
 * in all, so that a busy instance (a device login is a change) still
 * catches up.
 */
static int
reload(struct accounts *a)
{
	enum swap_result r = SWAP_RACED;

	for (int i = 0; i < RELOAD_TRIES && r == SWAP_RACED; i++)
		r = load_swap(a);
	return r == SWAP_DONE ? 0 : -1;
}

/*
 * Brings the copy up to the store's change counter if it is not seen (the
 * copy's version when the caller looked): 1 when the copy is another than
 * the one the caller looked at, reloaded here or by another thread
 * meanwhile; 0 when nothing changed or the store could not be read.  Any
 * thread: a miss on a user another instance added a moment ago catches up
 * at once rather than at the next tick.
 */
static int
catch_up(struct accounts *a, int64_t seen)
{
	int64_t v, now;
	int ok;

	/* read before the load: a change committed after it moves it again, and the next look reloads */
	if (ostore_accounts_version(a->store, &v) != OSTORE_OK || v == seen)
		return 0;
	/* one reload at a time, so that a->version always names the copy's load */
	pthread_mutex_lock(&a->reloading);
	pthread_mutex_lock(&a->lock);
	now = a->version;
	pthread_mutex_unlock(&a->lock);
	/*
	 * Another thread's reload may have got there meanwhile.  Any other
	 * difference reloads, a counter gone back too (a restored database).
	 */
	ok = now == v || reload(a) == 0;
	if (ok && now != v) {
		pthread_mutex_lock(&a->lock);
		a->version = v;
		pthread_mutex_unlock(&a->lock);
	}
	pthread_mutex_unlock(&a->reloading);
	return ok || now != seen;
}

/* The main loop's look at the change counter, every VERSION_EVERY_MS. */
static void
follow_changes(struct accounts *a)
{
	int64_t seen;

	if (mono_ms() < a->next_version_ms)
		return;
	a->next_version_ms = mono_ms() + VERSION_EVERY_MS;
	pthread_mutex_lock(&a->lock);
	seen = a->version;
	pthread_mutex_unlock(&a->lock);
	catch_up(a, seen);
}

struct accounts *
accounts_new(struct order_store *store, struct mq *mq, const struct aclfile *acl, const char *token_secret,
    long token_ttl_s)
{
	struct accounts *a = calloc(1, sizeof(*a));
	unsigned char r[8];

	if (a == NULL || (a->buckets = calloc(1024, sizeof(*a->buckets))) == NULL) {
		free(a);
		log_error("out of memory", NULL);
		return NULL;
	}
	a->nbuckets = 1024;
	pthread_mutex_init(&a->lock, NULL);
	pthread_mutex_init(&a->reloading, NULL);
	a->store = store;
	a->mq = mq;
	a->acl = acl;
	a->token_secret = token_secret;
	a->token_ttl_s = token_ttl_s;
	if (RAND_bytes(r, sizeof(r)) != 1) {
		accounts_free(a);
		return NULL;
	}
	for (size_t i = 0; i < sizeof(r); i++)
		snprintf(a->instance + 2 * i, 3, "%02x", r[i]);
	if (token_password_hash(a->instance, PASSWORD_ITERATIONS, a->dummy_hash) != 0) {
		accounts_free(a);
		return NULL;
	}
	if (ostore_accounts_version(store, &a->version) != OSTORE_OK ||
	    ostore_accounts_load(store, load_account, load_device, load_revoked, a) != OSTORE_OK) {
		accounts_free(a);
		return NULL;
	}
	a->next_version_ms = mono_ms() + VERSION_EVERY_MS;
	log_info("accounts loaded", "users=%zu", a->nusers);
	return a;
}

void
accounts_free(struct accounts *a)
{
	struct accounts_answer ans;

	if (a == NULL)
		return;
	memset(&ans, 0, sizeof(ans));
	ans.result = ACCOUNTS_UNAVAILABLE;
	while (a->ops != NULL) {
		struct op *o = a->ops;
		a->ops = o->next;
		o->done(o->arg, &ans);
		explicit_bzero(o, sizeof(*o));
		free(o);
	}
	copy_free(a->buckets, a->nbuckets, a->revoked);
	pthread_mutex_destroy(&a->lock);
	pthread_mutex_destroy(&a->reloading);
	free(a);
}

/* ---- the broker's side: commands and their confirmations -------------------- */

/* The errors that leave the broker as a change wants it (the command was idempotent). */
static int
harmless(const char *command, const char *error)
{
	return (strcmp(command, "createRole") == 0 && strcmp(error, "Role already exists") == 0) ||
	    (strcmp(command, "createClient") == 0 && strcmp(error, "Client already exists") == 0) ||
	    (strcmp(command, "deleteClient") == 0 && strcmp(error, "Client not found") == 0) ||
	    (strcmp(command, "deleteRole") == 0 && strcmp(error, "Role not found") == 0);
}

/* The broker account of a device. */
static void
device_account(const char *user, const char *device, char *out)
{
	snprintf(out, ACCOUNTS_MQTT_USER_MAX, "%s.%s", user, device);
}

static void
device_client_id(const char *user, const char *device, char *out)
{
	snprintf(out, ACCOUNTS_CLIENT_ID_MAX, "phone-%s-%s", user, device);
}

/*
 * Appends the commands that make user's broker account and role exist with
 * password.  Without set_password (an add), an account of that name the
 * broker has already keeps its password: the add's createClient fails with
 * "Client already exists" and the add answers ACCOUNTS_EXISTS.
 */
static void
ensure_user(const struct accounts *a, json_t *cmds, const char *user, const char *password, int set_password)
{
	char role[NAME_MAX_LEN + 16];
	json_t *acls = aclfile_dynsec_acls(a->acl, user);

	aclfile_role_name(a->acl, user, role, sizeof(role));
	json_array_append_new(cmds, json_pack("{s:s, s:s, s:o*}", "command", "createRole", "rolename", role, "acls", acls));
	json_array_append_new(cmds, json_pack("{s:s, s:s, s:s, s:[{s:s}]}", "command", "createClient", "username", user,
					"password", password, "roles", "rolename", role));
	if (set_password)
		json_array_append_new(cmds,
		    json_pack("{s:s, s:s, s:s}", "command", "setClientPassword", "username", user, "password", password));
}

/* Appends a deleteClient of user's device's broker account. */
static void
delete_device_account(json_t *cmds, const char *user, const char *device)
{
	char name[ACCOUNTS_MQTT_USER_MAX];

	device_account(user, device, name);
	json_array_append_new(cmds, json_pack("{s:s, s:s}", "command", "deleteClient", "username", name));
}

/*
 * Sends cmds (stolen) to the broker for op (taken over: answered and freed
 * when confirmed, or at its deadline).  Called without the lock.
 */
static void
submit(struct accounts *a, struct op *o, json_t *cmds)
{
	struct accounts_answer ans;
	struct op **pp;
	json_t *cmd, *msg;
	char *text = NULL;
	size_t i;

	pthread_mutex_lock(&a->lock);
	o->seq = ++a->seq;
	o->deadline = mono_ms() + CONFIRM_MS;
	json_array_foreach(cmds, i, cmd)
	{
		char corr[64];
		snprintf(corr, sizeof(corr), "pizza-%s-%" PRIu64 "-%zu", a->instance, o->seq, i);
		json_object_set_new(cmd, "correlationData", json_string(corr));
	}
	o->next = a->ops;
	a->ops = o;
	pthread_mutex_unlock(&a->lock);
	if ((msg = json_pack("{s:o}", "commands", cmds)) != NULL && (text = json_dumps(msg, JSON_COMPACT)) != NULL &&
	    mq_publish_text(a->mq, ACCOUNTS_CONTROL_TOPIC, text, 1, 0, 0) == 0) {
		explicit_bzero(text, strlen(text));
		free(text);
		json_decref(msg);
		return;
	}
	if (text != NULL) {
		explicit_bzero(text, strlen(text));
		free(text);
	}
	json_decref(msg);
	/* not sent: take it back and answer now, unless accounts_tick() answered and freed it meanwhile */
	pthread_mutex_lock(&a->lock);
	for (pp = &a->ops; *pp != NULL && *pp != o; pp = &(*pp)->next)
		;
	if (*pp == NULL) {
		pthread_mutex_unlock(&a->lock);
		return;
	}
	*pp = o->next;
	pthread_mutex_unlock(&a->lock);
	log_error("cannot send an account change to the broker", "user_id=%s", o->user);
	memset(&ans, 0, sizeof(ans));
	ans.result = ACCOUNTS_UNAVAILABLE;
	o->done(o->arg, &ans);
	explicit_bzero(o, sizeof(*o));
	free(o);
}

static struct op *
op_new(enum op_kind kind, const char *user, const char *device, accounts_done done, void *arg)
{
	struct op *o = calloc(1, sizeof(*o));

	if (o == NULL)
		return NULL;
	o->kind = kind;
	o->done = done;
	o->arg = arg;
	snprintf(o->user, sizeof(o->user), "%s", user);
	snprintf(o->device, sizeof(o->device), "%s", device != NULL ? device : "");
	return o;
}

static void
answer_now(accounts_done done, void *arg, enum accounts_result r)
{
	struct accounts_answer ans;

	memset(&ans, 0, sizeof(ans));
	ans.result = r;
	done(arg, &ans);
}

/* ceil(ms / 1000): the first whole second at or after ms. */
static int64_t
ceil_s(int64_t ms)
{
	return (ms + 999) / 1000;
}

/* A token for user (and device, or "") into ans, issued no earlier than not_before (unix seconds). */
static enum accounts_result
issue(const struct accounts *a, const char *user, const char *device, int64_t not_before, struct accounts_answer *ans)
{
	struct token_claims c;
	int64_t now = now_ms() / 1000;

	memset(&c, 0, sizeof(c));
	snprintf(c.user, sizeof(c.user), "%s", user);
	snprintf(c.device, sizeof(c.device), "%s", device);
	c.issued = now > not_before ? now : not_before;
	c.expiry = c.issued + a->token_ttl_s;
	if (token_issue(a->token_secret, &c, ans->token) != 0)
		return ACCOUNTS_UNAVAILABLE;
	snprintf(ans->user, sizeof(ans->user), "%s", user);
	ans->expiry = c.expiry;
	return ACCOUNTS_OK;
}

/* The change op asked for is confirmed by the broker: record it and answer.  Called without the lock. */
static void
confirmed(struct accounts *a, struct op *o)
{
	struct accounts_answer ans;
	struct ostore_account acc;
	int64_t now = now_ms();
	struct user *u;

	memset(&ans, 0, sizeof(ans));
	ans.result = ACCOUNTS_OK;
	switch (o->kind) {
	case OP_LOGIN:
		if (ostore_device_put(a->store, o->user, o->device, now) != OSTORE_OK) {
			ans.result = ACCOUNTS_UNAVAILABLE;
			break;
		}
		pthread_mutex_lock(&a->lock);
		if ((u = user_find(a, o->user)) == NULL)
			ans.result = ACCOUNTS_REFUSED; /* deleted meanwhile */
		else {
			/* no earlier than the user's last password change or token revocation, nor the device */
			int64_t not_before = u->tokens_after;
			struct device *d;
			device_put(u, o->device, now, now);
			a->changes++;
			d = device_find(u, o->device);
			if (d != NULL && ceil_s(d->created_ms) > not_before)
				not_before = ceil_s(d->created_ms);
			ans.result = issue(a, o->user, o->device, not_before, &ans);
		}
		pthread_mutex_unlock(&a->lock);
		snprintf(ans.device, sizeof(ans.device), "%s", o->device);
		device_account(o->user, o->device, ans.mqtt_user);
		device_client_id(o->user, o->device, ans.client_id);
		snprintf(ans.mqtt_password, sizeof(ans.mqtt_password), "%s", o->mqtt_password);
		if (ans.result == ACCOUNTS_OK)
			log_info("device logged in", "user_id=%s device=%s", o->user, o->device);
		break;
	case OP_ADD:
		memset(&acc, 0, sizeof(acc));
		snprintf(acc.user_id, sizeof(acc.user_id), "%s", o->user);
		snprintf(acc.hash, sizeof(acc.hash), "%s", o->hash);
		acc.created_ms = now;
		switch (ostore_account_add(a->store, &acc)) {
		case OSTORE_OK:
			pthread_mutex_lock(&a->lock);
			user_put(a, &acc);
			pthread_mutex_unlock(&a->lock);
			log_info("user added", "user_id=%s", o->user);
			break;
		case OSTORE_DUP:
			ans.result = ACCOUNTS_EXISTS;
			break;
		default:
			ans.result = ACCOUNTS_UNAVAILABLE;
		}
		explicit_bzero(&acc, sizeof(acc));
		break;
	case OP_DELETE:
		/* the store and memory forgot the user before the broker was asked */
		if (o->user_missing)
			ans.result = ACCOUNTS_NOT_FOUND;
		else
			log_info("user deleted", "user_id=%s", o->user);
		break;
	case OP_PASSWD: {
		int64_t after = ceil_s(now) + 1;
		switch (ostore_account_passwd(a->store, o->user, o->hash, after)) {
		case OSTORE_OK:
			pthread_mutex_lock(&a->lock);
			if ((u = user_find(a, o->user)) != NULL) {
				snprintf(u->hash, sizeof(u->hash), "%s", o->hash);
				u->tokens_after = after;
				a->changes++;
				devices_free(u->devices);
				u->devices = NULL;
			}
			pthread_mutex_unlock(&a->lock);
			log_info("password changed; tokens and devices signed out", "user_id=%s", o->user);
			break;
		case OSTORE_NOT_FOUND:
			ans.result = ACCOUNTS_NOT_FOUND;
			break;
		default:
			ans.result = ACCOUNTS_UNAVAILABLE;
		}
		break;
	}
	case OP_REVOKE_DEVICE:
		if (o->user_missing)
			ans.result = ACCOUNTS_NOT_FOUND;
		else
			log_info("device revoked", "user_id=%s device=%s", o->user, o->device);
		break;
	}
	o->done(o->arg, &ans);
	explicit_bzero(&ans, sizeof(ans));
}

void
accounts_control_reply(struct accounts *a, const void *payload, size_t len)
{
	json_t *msg = json_loadb(payload, len, 0, NULL), *r;
	char prefix[64];
	struct op *o = NULL;
	uint64_t seq = 0;
	int failed = 0, role_missing = 0, client_missing = 0, client_exists = 0;
	size_t i;

	snprintf(prefix, sizeof(prefix), "pizza-%s-", a->instance);
	json_array_foreach(json_object_get(msg, "responses"), i, r)
	{
		const char *corr = json_string_value(json_object_get(r, "correlationData"));
		const char *cmd = json_string_value(json_object_get(r, "command"));
		const char *err = json_string_value(json_object_get(r, "error"));
		uint64_t s;

		if (corr == NULL || strncmp(corr, prefix, strlen(prefix)) != 0 ||
		    sscanf(corr + strlen(prefix), "%" SCNu64, &s) != 1)
			continue; /* another instance's, or mosquitto_ctrl's */
		seq = s;
		if (err != NULL && cmd != NULL && !harmless(cmd, err)) {
			log_error("the broker refused an account change", "command=%s error=%s", LOGQ(cmd), LOGQ(err));
			failed = 1;
		}
		if (err != NULL && cmd != NULL && strcmp(cmd, "deleteRole") == 0 && strcmp(err, "Role not found") == 0)
			role_missing = 1;
		if (err != NULL && cmd != NULL && strcmp(cmd, "deleteClient") == 0 && strcmp(err, "Client not found") == 0)
			client_missing = 1;
		if (err != NULL && cmd != NULL && strcmp(cmd, "createClient") == 0 && strcmp(err, "Client already exists") == 0)
			client_exists = 1;
	}
	json_decref(msg);
	if (seq == 0)
		return;
	pthread_mutex_lock(&a->lock);
	for (struct op **pp = &a->ops; *pp != NULL; pp = &(*pp)->next)
		if ((*pp)->seq == seq) {
			o = *pp;
			*pp = o->next;
			break;
		}
	pthread_mutex_unlock(&a->lock);
	if (o == NULL)
		return; /* answered already (its deadline passed) */
	/* a delete's role goes last; a revoke sends one deleteClient */
	if (!(o->kind == OP_DELETE ? role_missing : client_missing))
		o->user_missing = 0; /* the broker had the account */
	if (failed)
		answer_now(o->done, o->arg, ACCOUNTS_UNAVAILABLE);
	else if (o->kind == OP_ADD && client_exists)
		/* never another's password on an account the broker has (a sign-up racing another, or one the store lacks) */
		answer_now(o->done, o->arg, ACCOUNTS_EXISTS);
	else
		confirmed(a, o);
	explicit_bzero(o, sizeof(*o));
	free(o);
}

void
accounts_tick(struct accounts *a)
{
	int64_t now = mono_ms();
	struct op *late = NULL;

	pthread_mutex_lock(&a->lock);
	for (struct op **pp = &a->ops; *pp != NULL;) {
		struct op *o = *pp;
		if (o->deadline <= now) {
			*pp = o->next;
			o->next = late;
			late = o;
		} else
			pp = &o->next;
	}
	revoked_prune(a, now_ms() / 1000);
	pthread_mutex_unlock(&a->lock);
	while (late != NULL) {
		struct op *o = late;
		late = o->next;
		log_error("the broker did not confirm an account change in time", "user_id=%s timeout_ms=%d", o->user,
		    CONFIRM_MS);
		answer_now(o->done, o->arg, ACCOUNTS_UNAVAILABLE);
		explicit_bzero(o, sizeof(*o));
		free(o);
	}
	follow_changes(a);
}

/* ---- operations -------------------------------------------------------------- */

int
accounts_seed(struct accounts *a, const char *passwd_path)
{
	char *text = file_read_small(passwd_path, 64 * 1024 * 1024), *line, *save = NULL;
	int added = 0, first;
	size_t len;

	if (text == NULL)
		return -1;
	pthread_mutex_lock(&a->lock);
	first = a->nusers == 0;
	pthread_mutex_unlock(&a->lock);
	if (!first) {
		/* pizza-admin manages them once there are any: a deleted customer is not brought back */
		explicit_bzero(text, strlen(text));
		free(text);
		return 0;
	}
	len = strlen(text); /* strtok_r() cuts it into lines: strlen() at the end would see the first */
	for (line = strtok_r(text, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
		struct ostore_account acc;
		char *colon = strchr(line, ':');
		int known;

		line[strcspn(line, "\r")] = '\0';
		if (colon == NULL || line[0] == '#')
			continue;
		*colon = '\0';
		if (!name_valid(line) || aclfile_has_user(a->acl, line) || strncmp(colon + 1, "$7$", 3) != 0)
			continue;
		pthread_mutex_lock(&a->lock);
		known = user_find(a, line) != NULL;
		pthread_mutex_unlock(&a->lock);
		if (known)
			continue;
		memset(&acc, 0, sizeof(acc));
		snprintf(acc.user_id, sizeof(acc.user_id), "%s", line);
		snprintf(acc.hash, sizeof(acc.hash), "%s", colon + 1);
		acc.created_ms = now_ms();
		if (ostore_account_add(a->store, &acc) == OSTORE_OK) {
			pthread_mutex_lock(&a->lock);
			user_put(a, &acc);
			pthread_mutex_unlock(&a->lock);
			added++;
		}
	}
	explicit_bzero(text, len);
	free(text);
	if (added > 0)
		log_info("accounts added from the password file", "path=%s users=%d", LOGQ(passwd_path), added);
	return added;
}

/* The signature part of a token (its last 64 characters), or NULL. */
static const char *
token_mac(const char *token)
{
	const char *dot = strrchr(token, '.');

	return dot != NULL && strlen(dot + 1) == 64 ? dot + 1 : NULL;
}

/* What the copy says of a token whose signature and expiry are good. */
enum token_state {
	TOKEN_KNOWN,   /* its user (and device) are there, and nothing revoked it */
	TOKEN_UNKNOWN, /* its user or device is not in the copy */
	TOKEN_REFUSED  /* revoked, or issued before a password change or before its device was added */
};

/* What the copy says of got; *seen is the copy's version the answer comes from. */
static enum token_state
token_known(struct accounts *a, const struct token_claims *got, const char *mac, int64_t *seen)
{
	const struct device *d;
	enum token_state ts;
	struct user *u;

	pthread_mutex_lock(&a->lock);
	if ((u = user_find(a, got->user)) == NULL)
		ts = TOKEN_UNKNOWN;
	else if (got->issued < u->tokens_after)
		ts = TOKEN_REFUSED;
	else if (got->device[0] == '\0')
		ts = TOKEN_KNOWN;
	else if ((d = device_find(u, got->device)) == NULL)
		ts = TOKEN_UNKNOWN;
	else /* issued before the device was (last) added: for an earlier device of that name */
		ts = got->issued >= ceil_s(d->created_ms) ? TOKEN_KNOWN : TOKEN_REFUSED;
	for (const struct revoked *r = a->revoked; ts == TOKEN_KNOWN && r != NULL; r = r->next)
		if (CRYPTO_memcmp(r->mac, mac, 64) == 0)
			ts = TOKEN_REFUSED;
	*seen = a->version;
	pthread_mutex_unlock(&a->lock);
	return ts;
}

int
accounts_authenticate(struct accounts *a, const char *token, int64_t now_s, struct token_claims *c)
{
	struct token_claims got;
	const char *mac;
	enum token_state ts;
	int64_t seen;

	if (token_verify(a->token_secret, token, now_s, &got) != 0 || (mac = token_mac(token)) == NULL)
		return -1;
	/*
	 * Signed by us for a user or device this copy lacks: issued a moment ago
	 * by another instance, for a user or device added there?  Only a fresh
	 * token can be that (the copies follow within VERSION_EVERY_MS): an old
	 * one of a deleted user or device does not cost a look at the store.
	 */
	if ((ts = token_known(a, &got, mac, &seen)) == TOKEN_UNKNOWN && got.issued + TOKEN_FRESH_S >= now_s &&
	    catch_up(a, seen))
		ts = token_known(a, &got, mac, &seen);
	if (ts != TOKEN_KNOWN)
		return -1;
	*c = got;
	return 0;
}

/*
 * 1 when the copy has user with password (*after: the user's tokens_after),
 * else 0; *seen is the copy's version the answer comes from.  The hash is
 * computed for unknown users too, so that timing does not tell which exist.
 */
static int
password_matches(struct accounts *a, const char *user, const char *password, int64_t *after, int64_t *seen)
{
	char hash[OSTORE_HASH_MAX] = "";
	struct user *u;
	int match;

	pthread_mutex_lock(&a->lock);
	if ((u = user_find(a, user)) != NULL) {
		snprintf(hash, sizeof(hash), "%s", u->hash);
		*after = u->tokens_after;
	}
	*seen = a->version;
	pthread_mutex_unlock(&a->lock);
	match = token_password_check(hash[0] != '\0' ? hash : a->dummy_hash, password) == 0;
	explicit_bzero(hash, sizeof(hash));
	return u != NULL && match; /* u only says it was found: not read after the unlock */
}

void
accounts_login(struct accounts *a, const char *user, const char *password, const char *device, accounts_done done,
    void *arg)
{
	struct accounts_answer ans;
	char role[NAME_MAX_LEN + 16], name[ACCOUNTS_MQTT_USER_MAX], cid[ACCOUNTS_CLIENT_ID_MAX];
	unsigned char r[24];
	int64_t after = 0, seen;
	struct op *o;
	json_t *cmds;

	/* refused by this copy: another instance may have added the user or set the password a moment ago */
	if (!password_matches(a, user, password, &after, &seen) &&
	    (!catch_up(a, seen) || !password_matches(a, user, password, &after, &seen))) {
		answer_now(done, arg, ACCOUNTS_REFUSED);
		return;
	}
	if (device == NULL) {
		memset(&ans, 0, sizeof(ans));
		ans.result = issue(a, user, "", after, &ans);
		done(arg, &ans);
		explicit_bzero(&ans, sizeof(ans));
		return;
	}
	if ((o = op_new(OP_LOGIN, user, device, done, arg)) == NULL || RAND_bytes(r, sizeof(r)) != 1) {
		free(o);
		answer_now(done, arg, ACCOUNTS_UNAVAILABLE);
		return;
	}
	for (size_t i = 0; i < sizeof(r); i++)
		snprintf(o->mqtt_password + 2 * i, 3, "%02x", r[i]);
	explicit_bzero(r, sizeof(r));
	aclfile_role_name(a->acl, user, role, sizeof(role));
	device_account(user, device, name);
	device_client_id(user, device, cid);
	cmds = json_pack("[{s:s, s:s, s:s, s:s, s:[{s:s}]}, {s:s, s:s, s:s}]", "command", "createClient", "username", name,
	    "password", o->mqtt_password, "clientid", cid, "roles", "rolename", role, "command", "setClientPassword",
	    "username", name, "password", o->mqtt_password);
	submit(a, o, cmds);
}

void
accounts_add(struct accounts *a, const char *user, const char *password, accounts_done done, void *arg)
{
	struct op *o;
	json_t *cmds;
	int exists;

	if (aclfile_has_user(a->acl, user)) {
		answer_now(done, arg, ACCOUNTS_RESERVED);
		return;
	}
	pthread_mutex_lock(&a->lock);
	exists = user_find(a, user) != NULL;
	pthread_mutex_unlock(&a->lock);
	if (exists) {
		answer_now(done, arg, ACCOUNTS_EXISTS);
		return;
	}
	if ((o = op_new(OP_ADD, user, NULL, done, arg)) == NULL ||
	    token_password_hash(password, PASSWORD_ITERATIONS, o->hash) != 0 || (cmds = json_array()) == NULL) {
		free(o);
		answer_now(done, arg, ACCOUNTS_UNAVAILABLE);
		return;
	}
	ensure_user(a, cmds, user, password, 0);
	submit(a, o, cmds);
}

void
accounts_delete(struct accounts *a, const char *user, accounts_done done, void *arg)
{
	char role[NAME_MAX_LEN + 16];
	struct op *o = op_new(OP_DELETE, user, NULL, done, arg);
	json_t *cmds = json_array();
	struct user *u;

	if (o == NULL || cmds == NULL || aclfile_has_user(a->acl, user)) {
		enum accounts_result r = o == NULL || cmds == NULL ? ACCOUNTS_UNAVAILABLE : ACCOUNTS_NOT_FOUND;
		free(o);
		json_decref(cmds);
		answer_now(done, arg, r);
		return;
	}
	/* refused on the HTTP side at once; then the broker's accounts, which closes their connections */
	switch (ostore_account_delete(a->store, user)) {
	case OSTORE_OK:
		break;
	case OSTORE_NOT_FOUND:
		o->user_missing = 1; /* unless the broker has it */
		break;
	default:
		free(o);
		json_decref(cmds);
		answer_now(done, arg, ACCOUNTS_UNAVAILABLE);
		return;
	}
	json_array_append_new(cmds, json_pack("{s:s, s:s}", "command", "deleteClient", "username", user));
	pthread_mutex_lock(&a->lock);
	if ((u = user_find(a, user)) != NULL)
		for (const struct device *d = u->devices; d != NULL; d = d->next)
			delete_device_account(cmds, user, d->name);
	user_remove(a, user);
	pthread_mutex_unlock(&a->lock);
	aclfile_role_name(a->acl, user, role, sizeof(role));
	/* the role goes last: its "Role not found" says the broker had no such customer */
	json_array_append_new(cmds, json_pack("{s:s, s:s}", "command", "deleteRole", "rolename", role));
	submit(a, o, cmds);
}

void
accounts_passwd(struct accounts *a, const char *user, const char *password, accounts_done done, void *arg)
{
	struct op *o;
	json_t *cmds;
	struct user *u;

	if ((o = op_new(OP_PASSWD, user, NULL, done, arg)) == NULL ||
	    token_password_hash(password, PASSWORD_ITERATIONS, o->hash) != 0 || (cmds = json_array()) == NULL) {
		free(o);
		answer_now(done, arg, ACCOUNTS_UNAVAILABLE);
		return;
	}
	ensure_user(a, cmds, user, password, 1);
	pthread_mutex_lock(&a->lock);
	if ((u = user_find(a, user)) != NULL)
		for (const struct device *d = u->devices; d != NULL; d = d->next)
			delete_device_account(cmds, user, d->name);
	pthread_mutex_unlock(&a->lock);
	if (u == NULL) {
		json_decref(cmds);
		explicit_bzero(o, sizeof(*o));
		free(o);
		answer_now(done, arg, ACCOUNTS_NOT_FOUND);
		return;
	}
	submit(a, o, cmds);
}

void
accounts_revoke_device(struct accounts *a, const char *user, const char *device, accounts_done done, void *arg)
{
	struct op *o;
	json_t *cmds;
	struct user *u;
	int found;

	pthread_mutex_lock(&a->lock);
	found = (u = user_find(a, user)) != NULL && device_find(u, device) != NULL;
	pthread_mutex_unlock(&a->lock);
	o = op_new(OP_REVOKE_DEVICE, user, device, done, arg);
	cmds = json_array();
	/*
	 * One we do not know may still have its broker account (a revoke the
	 * broker did not confirm): asked all the same, "Client not found" is 404.
	 */
	if (o != NULL && !found)
		o->user_missing = 1;
	if (o == NULL || cmds == NULL || ostore_device_delete(a->store, user, device) == OSTORE_FAIL) {
		free(o);
		json_decref(cmds);
		answer_now(done, arg, ACCOUNTS_UNAVAILABLE);
		return;
	}
	/* its tokens are refused from now on; then its broker account goes, which closes its connection */
	pthread_mutex_lock(&a->lock);
	if ((u = user_find(a, user)) != NULL)
		device_remove(u, device);
	a->changes++;
	pthread_mutex_unlock(&a->lock);
	delete_device_account(cmds, user, device);
	submit(a, o, cmds);
}

enum accounts_result
accounts_revoke_tokens(struct accounts *a, const char *user)
{
	int64_t after = ceil_s(now_ms()) + 1;
	struct user *u;

	switch (ostore_account_tokens_after(a->store, user, after)) {
	case OSTORE_OK:
		break;
	case OSTORE_NOT_FOUND:
		return ACCOUNTS_NOT_FOUND;
	default:
		return ACCOUNTS_UNAVAILABLE;
	}
	pthread_mutex_lock(&a->lock);
	if ((u = user_find(a, user)) != NULL)
		u->tokens_after = after;
	a->changes++;
	pthread_mutex_unlock(&a->lock);
	log_info("tokens revoked", "user_id=%s", user);
	return ACCOUNTS_OK;
}

enum accounts_result
accounts_revoke_token(struct accounts *a, const char *token)
{
	struct token_claims c;
	const char *mac;

	if (accounts_authenticate(a, token, now_ms() / 1000, &c) != 0 || (mac = token_mac(token)) == NULL)
		return ACCOUNTS_NOT_FOUND;
	if (ostore_token_revoke(a->store, mac, c.expiry, now_ms() / 1000) != OSTORE_OK)
		return ACCOUNTS_UNAVAILABLE;
	pthread_mutex_lock(&a->lock);
	revoked_put(a, mac, c.expiry);
	pthread_mutex_unlock(&a->lock);
	log_info("token revoked", "user_id=%s device=%s", c.user, LOGQ(c.device));
	return ACCOUNTS_OK;
}

static int
by_user_id(const void *x, const void *y)
{
	return strcmp(json_string_value(json_object_get(*(json_t *const *)x, "user_id")),
	    json_string_value(json_object_get(*(json_t *const *)y, "user_id")));
}

json_t *
accounts_list(struct accounts *a)
{
	json_t **rows, *arr = json_array();
	size_t n = 0;

	pthread_mutex_lock(&a->lock);
	if ((rows = calloc(a->nusers + 1, sizeof(*rows))) == NULL || arr == NULL) {
		pthread_mutex_unlock(&a->lock);
		free(rows);
		json_decref(arr);
		return NULL;
	}
	for (size_t b = 0; b < a->nbuckets; b++)
		for (const struct user *u = a->buckets[b]; u != NULL; u = u->next) {
			char at[32];
			int devices = 0;
			for (const struct device *d = u->devices; d != NULL; d = d->next)
				devices++;
			if ((rows[n] = json_pack("{s:s, s:s, s:i}", "user_id", u->name, "created_at",
				 time_rfc3339(u->created_ms, at, sizeof(at)), "devices", devices)) != NULL)
				n++; /* out of memory: a row less, not a NULL for by_user_id() */
		}
	pthread_mutex_unlock(&a->lock);
	qsort(rows, n, sizeof(*rows), by_user_id);
	for (size_t i = 0; i < n; i++)
		json_array_append_new(arr, rows[i]);
	free(rows);
	return json_pack("{s:o}", "users", arr);
}

json_t *
accounts_devices(struct accounts *a, const char *user)
{
	json_t *arr = json_array();
	struct user *u;

	pthread_mutex_lock(&a->lock);
	if ((u = user_find(a, user)) == NULL) {
		pthread_mutex_unlock(&a->lock);
		json_decref(arr);
		return NULL;
	}
	for (const struct device *d = u->devices; d != NULL; d = d->next) {
		char cid[ACCOUNTS_CLIENT_ID_MAX], c_at[32], l_at[32];
		device_client_id(user, d->name, cid);
		json_array_append_new(arr, json_pack("{s:s, s:s, s:s, s:s}", "device", d->name, "client_id", cid, "created_at",
					       time_rfc3339(d->created_ms, c_at, sizeof(c_at)), "last_login_at",
					       time_rfc3339(d->login_ms, l_at, sizeof(l_at))));
	}
	pthread_mutex_unlock(&a->lock);
	return json_pack("{s:o}", "devices", arr);
}

const char *
accounts_password_policy(const char *user, const char *password)
{
	size_t n = strlen(password);

	if (n < PASSWORD_MIN)
		return "the password must have at least 10 characters";
	if (n > PASSWORD_MAX)
		return "the password must have at most 256 characters";
	if (strstr(password, user) != NULL)
		return "the password must not contain the user id";
	for (size_t i = 1; i < n; i++)
		if (password[i] != password[0])
			return NULL;
	return "the password must not be one character repeated";
}

/*
 * accounts.h - customers, their devices and their tokens, managed while
 * the backend runs (pizza-admin, self sign-up, logins).
 *
 * order-service is the authority: the store keeps the accounts (password
 * hashes, devices, revoked tokens), a copy in memory answers every token
 * check, and each change is applied to the broker's accounts (mosquitto's
 * dynamic security plugin, over $CONTROL/dynamic-security/v1) before it is
 * answered, so it takes effect on both front doors at once:
 *   - a customer's own broker account is named by the user id, with the
 *     customer's password and the role the ACL file's patterns give;
 *   - a device gets an account of its own at each login with a device
 *     name: "<user>.<device>" (user ids have no dot), a generated password
 *     and the client id "phone-<user>-<device>" bound to it, the same role.
 *     Revoking the device deletes that account, which closes its connection.
 * Tokens name their device and their issue time: deleting a user, changing
 * a password or revoking a device refuses the tokens issued before.
 */
#ifndef PIZZA_ACCOUNTS_H
#define PIZZA_ACCOUNTS_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "token.h"
#include "util.h"

struct accounts;
struct aclfile;
struct mq;
struct order_store;

enum accounts_result {
	ACCOUNTS_OK = 0,
	ACCOUNTS_EXISTS,      /* add: a user of that name exists */
	ACCOUNTS_NOT_FOUND,   /* no such user or device */
	ACCOUNTS_REFUSED,     /* login: wrong user id or password */
	ACCOUNTS_RESERVED,    /* add: the name is a service or operator account */
	ACCOUNTS_UNAVAILABLE, /* the store failed or the broker did not confirm in time: maybe not applied; retry */
};

#define ACCOUNTS_MQTT_USER_MAX (2 * NAME_MAX_LEN + 2)
#define ACCOUNTS_CLIENT_ID_MAX (2 * NAME_MAX_LEN + 8)

/* What an operation answers (to its accounts_done callback). */
struct accounts_answer {
	enum accounts_result result;
	/* a login's: */
	char user[NAME_MAX_LEN + 1];
	char token[TOKEN_MAX];
	int64_t expiry; /* unix seconds */
	char device[NAME_MAX_LEN + 1];                 /* "" for a login without a device */
	char mqtt_user[ACCOUNTS_MQTT_USER_MAX];        /* the device's broker account */
	char mqtt_password[65];
	char client_id[ACCOUNTS_CLIENT_ID_MAX];
};

/* Called once per operation, from any thread (an HTTP thread or paho's). */
typedef void (*accounts_done)(void *arg, const struct accounts_answer *a);

/*
 * Loads the accounts from store (borrowed) and applies changes through mq
 * (borrowed; its consumer must route the dynamic security plugin's
 * answers, ACCOUNTS_RESPONSE_TOPIC, to accounts_control_reply()).  acl
 * (borrowed) gives each customer's role.  NULL on failure (logged).
 */
struct accounts *accounts_new(struct order_store *store, struct mq *mq, const struct aclfile *acl,
    const char *token_secret, long token_ttl_s);
/* Frees a; operations still waiting for the broker are answered ACCOUNTS_UNAVAILABLE.  NULL is ignored. */
void accounts_free(struct accounts *a);

#define ACCOUNTS_CONTROL_TOPIC "$CONTROL/dynamic-security/v1"
#define ACCOUNTS_RESPONSE_TOPIC "$CONTROL/dynamic-security/v1/response"

/* A message on ACCOUNTS_RESPONSE_TOPIC (untrusted: anything not ours is ignored). */
void accounts_control_reply(struct accounts *a, const void *payload, size_t len);
/*
 * Answers ACCOUNTS_UNAVAILABLE to operations the broker has not confirmed
 * within their time, and about once a second reads the store's change
 * counter: when another instance sharing the store (PostgreSQL) changed an
 * account, a device or a revoked token, reloads the copy in memory, so a
 * revocation made through any instance reaches every one within about a
 * second.  From the main loop.
 */
void accounts_tick(struct accounts *a);

/*
 * Adds, from a mosquitto password file (hashed lines), its customers (not
 * the accounts with their own block in the ACL file) when the store has no
 * customer yet: how the demo's and the load generator's accounts, which
 * broker-init gave the broker the first time, reach the store.  Later
 * starts add nothing, so a customer deleted with pizza-admin stays deleted.
 * Returns how many were added, or -1 when the file cannot be read.
 */
int accounts_seed(struct accounts *a, const char *passwd_path);

/*
 * Checks a bearer token: well signed, unexpired, of an existing user,
 * issued after the user's last password change or token revocation, of a
 * device that is not revoked, and not revoked itself.  Returns 0 with *c
 * filled, or -1.
 */
int accounts_authenticate(struct accounts *a, const char *token, int64_t now_s, struct token_claims *c);

/*
 * Logs user in with password.  Without a device (NULL) the answer is a
 * token; with one, the device's broker account is created (or its
 * password replaced, closing its previous connection) and the answer also
 * carries what the device needs to connect.  ACCOUNTS_REFUSED on a wrong
 * user id or password (also for a service account).
 */
void accounts_login(struct accounts *a, const char *user, const char *password, const char *device, accounts_done done,
    void *arg);
/* Adds a customer: ACCOUNTS_OK, _EXISTS, _RESERVED or _UNAVAILABLE. */
void accounts_add(struct accounts *a, const char *user, const char *password, accounts_done done, void *arg);
/* Deletes a customer, their devices and broker accounts (closing their connections): _OK, _NOT_FOUND, _UNAVAILABLE. */
void accounts_delete(struct accounts *a, const char *user, accounts_done done, void *arg);
/* Changes a password; the user's tokens and devices are signed out: _OK, _NOT_FOUND, _UNAVAILABLE. */
void accounts_passwd(struct accounts *a, const char *user, const char *password, accounts_done done, void *arg);
/* Revokes a device: its broker account is deleted (its connection closed) and its tokens refused. */
void accounts_revoke_device(struct accounts *a, const char *user, const char *device, accounts_done done, void *arg);
/* Refuses every token of user issued until now: _OK, _NOT_FOUND, _UNAVAILABLE. */
enum accounts_result accounts_revoke_tokens(struct accounts *a, const char *user);
/* Refuses one token (checked as accounts_authenticate() would, but not its revocation): _OK, _NOT_FOUND (not a valid token), _UNAVAILABLE. */
enum accounts_result accounts_revoke_token(struct accounts *a, const char *token);

/* The customers as a new {"users":[{"user_id","created_at","devices"}]} sorted by id, or NULL out of memory. */
json_t *accounts_list(struct accounts *a);
/* user's devices as a new {"devices":[{"device","client_id","created_at","last_login_at"}]}, or NULL when no such user. */
json_t *accounts_devices(struct accounts *a, const char *user);

/* NULL when password is acceptable for user, else the reason (static text). */
const char *accounts_password_policy(const char *user, const char *password);

#endif

/*
 * aclfile.h - the broker's access policy, written once as a mosquitto ACL
 * file (broker-config/acl), turned into mosquitto dynamic-security roles.
 *
 * The file is the policy a person reads and reviews; the dynamic security
 * plugin holds the accounts and changes at run time.  Two kinds of account:
 *   - one with its own "user NAME" block (the services, admin, bench): its
 *     role is that block;
 *   - any other (a customer): its role is the "pattern" lines with %u
 *     replaced by the customer's user id.
 * Supported lines: "user NAME", "topic [read|write|readwrite|subscribe|deny]
 * TOPIC", "pattern [read|write|readwrite|subscribe|deny] TOPIC" (with %u as
 * a whole level), comments and blank lines.  Anything else is an error
 * naming the line.  "subscribe" (ours, not mosquitto's) lets the account
 * subscribe but receive nothing there: a walk over retained messages
 * (mq_walk()).
 */
#ifndef PIZZA_ACLFILE_H
#define PIZZA_ACLFILE_H

#include <stddef.h>

#include <jansson.h>

struct aclfile;

/* Reads and checks the file at path.  Returns a new policy for aclfile_free(), or NULL with a one-line reason in err. */
struct aclfile *aclfile_load(const char *path, char *err, size_t errlen);
void aclfile_free(struct aclfile *a);

/* 1 when user has a block of its own (a service or operator account), else 0. */
int aclfile_has_user(const struct aclfile *a, const char *user);

/*
 * The dynamic-security ACL entries of user's role, as a new JSON array of
 * {"acltype":..,"topic":..,"allow":..,"priority":..}: "read" becomes
 * subscribePattern (for the topic and for "$share/+/" before it, since the
 * plugin sees shared subscriptions whole) and publishClientReceive, "write"
 * publishClientSend, "subscribe" subscribePattern alone, "deny" the same
 * types as read and write with allow false and a higher priority.  NULL out
 * of memory.
 */
json_t *aclfile_dynsec_acls(const struct aclfile *a, const char *user);

/* The role name of user's role: "svc-<user>" for an account with a block, "user-<user>" for a customer. */
void aclfile_role_name(const struct aclfile *a, const char *user, char *out, size_t n);

#endif

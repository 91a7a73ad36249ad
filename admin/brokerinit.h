/*
 * brokerinit.h - the broker's first accounts, written before it starts:
 * mosquitto's dynamic security plugin reads its accounts and roles from a
 * JSON file, which this writes from a mosquitto password file (hashed
 * lines, as mosquitto_passwd writes them; the plugin uses the same
 * PBKDF2-SHA512, so no password is ever needed in clear) and the ACL file
 * (aclfile.h: one role per account).
 */
#ifndef PIZZA_BROKERINIT_H
#define PIZZA_BROKERINIT_H

#include <stddef.h>

/*
 * Writes out (atomically, mode 0600): the accounts of passwd_path, each
 * with its role from acl_path, added to what out holds already (accounts
 * and roles the broker created at run time are kept).  An account with its
 * own block in the ACL file (a service) replaces its namesake and its role
 * every time; a customer goes in only when out did not exist yet, so that
 * what pizza-admin changed since is not undone.  Returns 0, or -1 with a
 * one-line reason in err (out is then unchanged).
 */
int brokerinit_write(const char *out, const char *passwd_path, const char *acl_path, char *err, size_t errlen);

#endif

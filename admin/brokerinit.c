#include "brokerinit.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "aclfile.h"
#include "util.h"

#define PASSWD_MAX (64 * 1024 * 1024)

/* Removes from arr (a JSON array of objects) every element whose key equals value. */
static void
remove_named(json_t *arr, const char *key, const char *value)
{
	for (size_t i = 0; i < json_array_size(arr);) {
		const char *v = json_string_value(json_object_get(json_array_get(arr, i), key));
		if (v != NULL && strcmp(v, value) == 0)
			json_array_remove(arr, i);
		else
			i++;
	}
}

/*
 * One "user:$7$<iterations>$<salt>$<hash>" line into a client of the
 * plugin's file: its fields, split in place.  Returns 0, or -1 when the
 * line is not of that form.
 */
static int
split_line(char *line, const char **user, long *iterations, const char **salt, const char **hash)
{
	char *colon = strchr(line, ':'), *f[4], *save = NULL;

	if (colon == NULL || colon == line || colon[1] != '$')
		return -1;
	*colon = '\0';
	for (int i = 0; i < 4; i++)
		if ((f[i] = strtok_r(i == 0 ? colon + 2 : NULL, "$", &save)) == NULL)
			return -1;
	if (strcmp(f[0], "7") != 0 || parse_long(f[1], 1, 10000000, iterations) != 0)
		return -1;
	*user = line;
	*salt = f[2];
	*hash = f[3];
	return 0;
}

int
brokerinit_write(const char *out, const char *passwd_path, const char *acl_path, char *err, size_t errlen)
{
	struct aclfile *acl = NULL;
	json_t *root = NULL, *clients, *roles;
	char *text = NULL, *line, *save = NULL, tmp[4096];
	size_t len = 0;
	int rc = -1, n = 0, closed, existed;
	FILE *f = NULL;

	if ((acl = aclfile_load(acl_path, err, errlen)) == NULL)
		return -1;
	if ((text = file_read_small(passwd_path, PASSWD_MAX)) == NULL) {
		snprintf(err, errlen, "%s: cannot read it: %s", passwd_path, strerror(errno));
		goto out;
	}
	len = strlen(text); /* strtok_r() cuts it into lines: strlen() at the end would see the first */
	if ((existed = access(out, F_OK) == 0)) {
		json_error_t jerr;
		if ((root = json_load_file(out, 0, &jerr)) == NULL || !json_is_object(root)) {
			snprintf(err, errlen, "%s: not a dynamic security file: %s (line %d)", out, jerr.text, jerr.line);
			goto out;
		}
	} else
		root = json_pack("{s:[], s:[], s:[]}", "clients", "groups", "roles");
	if (root == NULL)
		goto nomem;
	/*
	 * Deliver nothing a role does not grant, every time (the policy is ours,
	 * not the accounts'): mosquitto 2.0 lets any account take over a session
	 * by its client id, and then checks the session's queued messages, and
	 * each later one, against the new connection's ACL.  With the plugin's
	 * usual "receive: allow", a customer taking over another's session got
	 * that customer's queued alerts (tests/integration/test_integ_security.c).
	 */
	if (json_object_set_new(root, "defaultACLAccess",
		json_pack("{s:b, s:b, s:b, s:b}", "publishClientSend", 0, "publishClientReceive", 0, "subscribe", 0,
		    "unsubscribe", 1)) != 0)
		goto nomem;
	clients = json_object_get(root, "clients");
	roles = json_object_get(root, "roles");
	if (!json_is_array(clients) || !json_is_array(roles)) {
		snprintf(err, errlen, "%s: no \"clients\" or \"roles\" array", out);
		goto out;
	}
	for (line = strtok_r(text, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
		const char *user, *salt, *hash;
		char role[NAME_MAX_LEN + 16];
		long iterations;
		json_t *acls;

		n++;
		line[strcspn(line, "\r")] = '\0';
		if (line[0] == '\0' || line[0] == '#')
			continue;
		if (split_line(line, &user, &iterations, &salt, &hash) != 0) {
			snprintf(err, errlen, "%s:%d: not a hashed password line (user:$7$...): run mosquitto_passwd -U on it",
			    passwd_path, n);
			goto out;
		}
		if (!name_valid(user)) {
			snprintf(err, errlen, "%s:%d: account name must be 1-%d characters of A-Z a-z 0-9 _ -", passwd_path, n,
			    NAME_MAX_LEN);
			goto out;
		}
		/*
		 * Customers are the broker's to keep once it runs (pizza-admin changes
		 * them there): the file's only go in the first time, so a deleted or
		 * changed one is not brought back.  Service accounts follow their
		 * secrets every time.
		 */
		if (existed && !aclfile_has_user(acl, user))
			continue;
		aclfile_role_name(acl, user, role, sizeof(role));
		if ((acls = aclfile_dynsec_acls(acl, user)) == NULL)
			goto nomem;
		if (existed) {
			/* only then can it be there; a fresh file would make this quadratic in the accounts */
			remove_named(clients, "username", user);
			remove_named(roles, "rolename", role);
		}
		if (json_array_append_new(roles, json_pack("{s:s, s:o}", "rolename", role, "acls", acls)) != 0 ||
		    json_array_append_new(clients, json_pack("{s:s, s:s, s:s, s:I, s:[{s:s}]}", "username", user, "password",
							hash, "salt", salt, "iterations", (json_int_t)iterations, "roles",
							"rolename", role)) != 0)
			goto nomem;
	}
	if (snprintf(tmp, sizeof(tmp), "%s.tmp", out) >= (int)sizeof(tmp)) {
		snprintf(err, errlen, "%s: path too long", out);
		goto out;
	}
	if ((f = fopen(tmp, "w")) == NULL || fchmod(fileno(f), 0600) != 0 || json_dumpf(root, f, JSON_INDENT(1)) != 0 ||
	    fflush(f) != 0 || fsync(fileno(f)) != 0) {
		snprintf(err, errlen, "%s: cannot write it: %s", tmp, strerror(errno));
		goto out;
	}
	closed = fclose(f);
	f = NULL;
	if (closed != 0 || rename(tmp, out) != 0) {
		snprintf(err, errlen, "%s: cannot write it: %s", out, strerror(errno));
		unlink(tmp);
		goto out;
	}
	rc = 0;
	goto out;
nomem:
	snprintf(err, errlen, "out of memory");
out:
	if (f != NULL) {
		fclose(f);
		unlink(tmp);
	}
	if (text != NULL) {
		explicit_bzero(text, len);
		free(text);
	}
	json_decref(root);
	aclfile_free(acl);
	return rc;
}

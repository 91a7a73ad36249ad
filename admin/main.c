/*
 * pizza-admin - accounts of the pizza backend, managed while it runs.
 *
 *   pizza-admin user add|del|list|passwd ...    customers
 *   pizza-admin device list|revoke ...          a customer's devices
 *   pizza-admin token revoke ...                HTTP bearer tokens
 *   pizza-admin broker-init ...                 the broker's first accounts, before it starts
 *
 * Every change goes through order-service's admin API, which keeps the
 * accounts and applies each change on the broker (mosquitto's dynamic
 * security plugin) before it answers: no file to edit, nothing to restart.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "../client-sim/http_client.h"
#include "../client-sim/runenv.h"
#include "brokerinit.h"
#include "config.h"
#include "util.h"

#define PROG "pizza-admin"
#define PASSWORD_MAX 256

struct common {
	const char *http_url;
	const char *secret_file;
	int password_stdin;
};

#define COMMON_OPTS(c)                                                                                              \
	{ "http-url", 0, OPT_STR, "PIZZA_HTTP_URL", NULL,                                                           \
		"order-service's HTTP API; default http://127.0.0.1:$PIZZA_HTTP_PORT (8080, or make run's)",        \
		&(c)->http_url, 0, 0 },                                                                             \
	{                                                                                                           \
		"admin-secret-file", 0, OPT_STR, "PIZZA_ADMIN_SECRET_FILE", NULL,                                  \
		    "file holding the admin API's secret; default make run's run/secrets/admin.secret",             \
		    &(c)->secret_file, 0, 0                                                                         \
	}

/* The option of opts that arg ("--name", "--name=v", "-x") names, or NULL. */
static const struct opt *
find_opt(const struct opt *opts, const char *arg)
{
	for (const struct opt *o = opts; o->name != NULL; o++) {
		size_t n = strlen(o->name);
		if ((arg[1] == '-' && strncmp(arg + 2, o->name, n) == 0 && (arg[2 + n] == '\0' || arg[2 + n] == '=')) ||
		    (arg[1] != '-' && o->short_name != 0 && arg[1] == o->short_name && arg[2] == '\0'))
			return o;
	}
	return NULL;
}

/*
 * Parses argv for "pizza-admin WHAT" (argv[0] is WHAT's last word), with
 * options before or after the positional arguments, which end up in
 * argv[*first ..] (argv is reordered).  Between min and max positional
 * arguments are allowed.  Returns -1 to go on, else an exit status.
 */
static int
parse(const char *what, const char *usage, const char *summary, const struct opt *opts, int argc, char **argv,
    int *first, int min, int max)
{
	char err[256], **pos = calloc((size_t)argc + 1, sizeof(char *));
	int npos = 0, k = 1;

	if (pos == NULL) {
		fprintf(stderr, "%s %s: out of memory\n", PROG, what);
		return 1;
	}
	/* options first, positional arguments after them, each group in its order */
	for (int i = 1; i < argc; i++) {
		const struct opt *o = argv[i][0] == '-' && argv[i][1] != '\0' ? find_opt(opts, argv[i]) : NULL;
		if (argv[i][0] != '-' || argv[i][1] == '\0') {
			pos[npos++] = argv[i];
			continue;
		}
		argv[k++] = argv[i];
		if (o != NULL && o->kind != OPT_FLAG && o->kind != OPT_COUNT && strchr(argv[i], '=') == NULL && i + 1 < argc)
			argv[k++] = argv[++i];
	}
	for (int i = 0; i < npos; i++)
		argv[k + i] = pos[i];
	free(pos);
	*first = k;
	switch (config_parse(usage, summary, opts, k, argv, NULL, err, sizeof(err))) {
	case CONFIG_OK:
		break;
	case CONFIG_EXIT:
		return 0;
	case CONFIG_ERROR:
		fprintf(stderr, "%s %s: %s\n", PROG, what, err);
		return 2;
	}
	if (npos < min || npos > max) {
		fprintf(stderr, "%s %s: expected %s%d argument%s, got %d (see '%s %s --help')\n", PROG, what,
		    min != max ? "at most " : "", max, max == 1 ? "" : "s", npos, PROG, what);
		return 2;
	}
	return -1;
}

/* The admin secret, read from the file named by c (or make run's): a new string, or NULL with the reason printed. */
static char *
admin_secret(const char *what, const struct common *c)
{
	const char *dir = getenv("PIZZA_RUN_DIR");
	char path[4096];
	char *s;

	if (c->secret_file != NULL)
		snprintf(path, sizeof(path), "%s", c->secret_file);
	else
		snprintf(path, sizeof(path), "%s/secrets/admin.secret", dir != NULL && dir[0] != '\0' ? dir : "run");
	if ((s = file_read_small(path, 4096)) == NULL) {
		fprintf(stderr, "%s %s: cannot read the admin secret %s: %s (give --admin-secret-file)\n", PROG, what, path,
		    strerror(errno));
		return NULL;
	}
	s[strcspn(s, "\r\n")] = '\0';
	return s;
}

/*
 * Sends method path (with body, may be NULL) to the admin API.  Returns
 * the HTTP status with the answer's body in *resp (caller frees; may be
 * NULL when not wanted), or -1 after printing why nothing was answered.
 */
static long
admin_call(const char *what, const struct common *c, const char *method, const char *path, json_t *body, char **resp)
{
	char url[2048], auth[4200], err[256], *text = NULL, *secret;
	const char *headers[3];
	long status = -1;

	if ((secret = admin_secret(what, c)) == NULL)
		return -1;
	snprintf(url, sizeof(url), "%s%s", c->http_url != NULL ? c->http_url : http_base_url(), path);
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", secret);
	explicit_bzero(secret, strlen(secret));
	free(secret);
	headers[0] = auth;
	headers[1] = "Content-Type: application/json";
	headers[2] = NULL;
	if (body != NULL && (text = json_dumps(body, JSON_COMPACT)) == NULL) {
		fprintf(stderr, "%s %s: out of memory\n", PROG, what);
		goto out;
	}
	if (http_call(method, url, text, headers, &status, resp, err, sizeof(err)) != 0) {
		fprintf(stderr, "%s %s: %s\n", PROG, what, err);
		status = -1;
	}
out:
	explicit_bzero(auth, sizeof(auth));
	if (text != NULL) {
		explicit_bzero(text, strlen(text));
		free(text);
	}
	return status;
}

/* An answer that is not the one hoped for: its "detail" (or status) on one line; returns 1. */
static int
fail(const char *what, long status, const char *resp)
{
	json_t *o = json_loads(resp != NULL ? resp : "", 0, NULL);
	const char *detail = json_string_value(json_object_get(o, "detail"));

	if (status == 401)
		fprintf(stderr, "%s %s: the admin secret was refused (check --admin-secret-file)\n", PROG, what);
	else
		fprintf(stderr, "%s %s: %s (HTTP %ld)\n", PROG, what, detail != NULL ? detail : "failed", status);
	json_decref(o);
	return 1;
}

/* Reads a new password: one line from stdin with --password-stdin, else twice from the terminal without echo. */
static int
read_password(const char *what, const struct common *c, char *out)
{
	char again[PASSWORD_MAX + 2];
	struct termios old, quiet;
	FILE *tty;
	int ok;

	if (c->password_stdin) {
		if (fgets(out, PASSWORD_MAX + 2, stdin) == NULL) {
			fprintf(stderr, "%s %s: no password on standard input\n", PROG, what);
			return -1;
		}
		out[strcspn(out, "\r\n")] = '\0';
		return 0;
	}
	if ((tty = fopen("/dev/tty", "r+")) == NULL || tcgetattr(fileno(tty), &old) != 0) {
		if (tty != NULL)
			fclose(tty);
		fprintf(stderr, "%s %s: no terminal to ask the password on: give it with --password-stdin\n", PROG, what);
		return -1;
	}
	quiet = old;
	quiet.c_lflag &= ~(tcflag_t)ECHO;
	tcsetattr(fileno(tty), TCSAFLUSH, &quiet);
	fprintf(tty, "new password: ");
	ok = fgets(out, PASSWORD_MAX + 2, tty) != NULL;
	fprintf(tty, "\nagain: ");
	ok = ok && fgets(again, sizeof(again), tty) != NULL;
	fprintf(tty, "\n");
	tcsetattr(fileno(tty), TCSAFLUSH, &old);
	fclose(tty);
	if (ok) {
		out[strcspn(out, "\r\n")] = '\0';
		again[strcspn(again, "\r\n")] = '\0';
		ok = strcmp(out, again) == 0;
		if (!ok)
			fprintf(stderr, "%s %s: the two passwords differ\n", PROG, what);
	}
	explicit_bzero(again, sizeof(again));
	return ok ? 0 : -1;
}

static int
user_add_or_passwd(int add, const struct common *c, const char *user)
{
	const char *what = add ? "user add" : "user passwd";
	char password[PASSWORD_MAX + 2], path[256], *resp = NULL;
	json_t *body;
	long st;
	int rc;

	if (!name_valid(user)) {
		fprintf(stderr, "%s %s: a user id is 1-%d characters of A-Z a-z 0-9 _ -\n", PROG, what, NAME_MAX_LEN);
		return 2;
	}
	if (read_password(what, c, password) != 0)
		return 1;
	if (add) {
		body = json_pack("{s:s, s:s}", "user_id", user, "password", password);
		st = admin_call(what, c, "POST", "/v1/admin/users", body, &resp);
	} else {
		snprintf(path, sizeof(path), "/v1/admin/users/%s/password", user);
		body = json_pack("{s:s}", "password", password);
		st = admin_call(what, c, "PUT", path, body, &resp);
	}
	explicit_bzero(password, sizeof(password));
	json_decref(body);
	if (st < 0)
		rc = 1;
	else if (st == 201 || st == 204) {
		printf(add ? "added %s\n" : "changed the password of %s; their tokens and devices are signed out\n", user);
		rc = 0;
	} else
		rc = fail(what, st, resp);
	free(resp);
	return rc;
}

static int
user_list(const struct common *c)
{
	char *resp = NULL;
	long st = admin_call("user list", c, "GET", "/v1/admin/users", NULL, &resp);
	json_t *o, *u;
	size_t i;

	if (st < 0)
		return 1;
	if (st != 200) {
		int rc = fail("user list", st, resp);
		free(resp);
		return rc;
	}
	o = json_loads(resp, 0, NULL);
	free(resp);
	printf("%-32s %-25s %s\n", "USER", "CREATED", "DEVICES");
	json_array_foreach(json_object_get(o, "users"), i, u)
		printf("%-32s %-25s %lld\n", json_string_value(json_object_get(u, "user_id")),
		    json_string_value(json_object_get(u, "created_at")),
		    (long long)json_integer_value(json_object_get(u, "devices")));
	json_decref(o);
	return 0;
}

/* Sends a change; prints done when it was made, not_found (unless NULL: the API's own words) on a 404. */
static int
simple_call(const char *what, const struct common *c, const char *method, const char *path, json_t *body,
    const char *done, const char *not_found)
{
	char *resp = NULL;
	long st = admin_call(what, c, method, path, body, &resp);
	int rc;

	json_decref(body);
	if (st < 0)
		rc = 1;
	else if (st == 204 || st == 200) {
		printf("%s\n", done);
		rc = 0;
	} else if (st == 404 && not_found != NULL) {
		fprintf(stderr, "%s %s: %s\n", PROG, what, not_found);
		rc = 1;
	} else
		rc = fail(what, st, resp);
	free(resp);
	return rc;
}

static int
cmd_user(int argc, char **argv)
{
	struct common c;
	const struct opt opts[] = {
		COMMON_OPTS(&c),
		{ "password-stdin", 0, OPT_FLAG, NULL, NULL, "read the new password from standard input (add, passwd)",
		    &c.password_stdin, 0, 0 },
		{ NULL, 0, 0, NULL, NULL, NULL, NULL, 0, 0 },
	};
	const char *sub = argc > 1 ? argv[1] : "";
	char path[256], done[256];
	int first = 0, rc, want = strcmp(sub, "list") == 0 ? 0 : 1;

	memset(&c, 0, sizeof(c));
	if (strcmp(sub, "add") != 0 && strcmp(sub, "del") != 0 && strcmp(sub, "list") != 0 && strcmp(sub, "passwd") != 0) {
		fprintf(stderr, "usage: %s user add|del|passwd USER [options] | %s user list [options]\n", PROG, PROG);
		return strcmp(sub, "--help") == 0 ? 0 : 2;
	}
	if ((rc = parse("user", PROG " user add|del|passwd USER | list [options]",
		 "Adds, deletes, lists customers, or changes a password (which signs out their tokens and devices).", opts,
		 argc - 1, argv + 1, &first, want, want)) >= 0)
		return rc;
	if (strcmp(sub, "list") == 0)
		return user_list(&c);
	if (strcmp(sub, "add") == 0 || strcmp(sub, "passwd") == 0)
		return user_add_or_passwd(sub[0] == 'a', &c, argv[1 + first]);
	if (!name_valid(argv[1 + first])) {
		fprintf(stderr, "%s user del: a user id is 1-%d characters of A-Z a-z 0-9 _ -\n", PROG, NAME_MAX_LEN);
		return 2;
	}
	snprintf(path, sizeof(path), "/v1/admin/users/%s", argv[1 + first]);
	snprintf(done, sizeof(done), "deleted %s; their connections are closed", argv[1 + first]);
	return simple_call("user del", &c, "DELETE", path, NULL, done, NULL);
}

static int
cmd_device(int argc, char **argv)
{
	struct common c;
	const struct opt opts[] = { COMMON_OPTS(&c), { NULL, 0, 0, NULL, NULL, NULL, NULL, 0, 0 } };
	const char *sub = argc > 1 ? argv[1] : "";
	char path[256], done[256], *resp = NULL;
	int first = 0, rc, list = strcmp(sub, "list") == 0;
	json_t *o, *d;
	size_t i;
	long st;

	memset(&c, 0, sizeof(c));
	if (!list && strcmp(sub, "revoke") != 0) {
		fprintf(stderr, "usage: %s device list USER | %s device revoke USER DEVICE [options]\n", PROG, PROG);
		return strcmp(sub, "--help") == 0 ? 0 : 2;
	}
	if ((rc = parse(list ? "device list" : "device revoke", PROG " device list USER | revoke USER DEVICE [options]",
		 "Lists a customer's devices, or revokes one: its connection is closed and its token refused at once.", opts,
		 argc - 1, argv + 1, &first, list ? 1 : 2, list ? 1 : 2)) >= 0)
		return rc;
	if (!name_valid(argv[1 + first]) || (!list && !name_valid(argv[2 + first]))) {
		fprintf(stderr, "%s device: user ids and device names are 1-%d characters of A-Z a-z 0-9 _ -\n", PROG,
		    NAME_MAX_LEN);
		return 2;
	}
	if (!list) {
		snprintf(path, sizeof(path), "/v1/admin/users/%s/devices/%s", argv[1 + first], argv[2 + first]);
		snprintf(done, sizeof(done), "revoked %s/%s", argv[1 + first], argv[2 + first]);
		return simple_call("device revoke", &c, "DELETE", path, NULL, done, NULL);
	}
	snprintf(path, sizeof(path), "/v1/admin/users/%s/devices", argv[1 + first]);
	if ((st = admin_call("device list", &c, "GET", path, NULL, &resp)) < 0)
		return 1;
	if (st != 200) {
		rc = fail("device list", st, resp);
		free(resp);
		return rc;
	}
	o = json_loads(resp, 0, NULL);
	free(resp);
	printf("%-32s %-25s %s\n", "DEVICE", "LAST LOGIN", "CLIENT ID");
	json_array_foreach(json_object_get(o, "devices"), i, d)
		printf("%-32s %-25s %s\n", json_string_value(json_object_get(d, "device")),
		    json_string_value(json_object_get(d, "last_login_at")), json_string_value(json_object_get(d, "client_id")));
	json_decref(o);
	return 0;
}

static int
cmd_token(int argc, char **argv)
{
	struct common c;
	const char *user = NULL;
	const struct opt opts[] = {
		COMMON_OPTS(&c),
		{ "user", 'u', OPT_STR, NULL, NULL, "revoke every token of this user instead of one TOKEN", &user, 0, 0 },
		{ NULL, 0, 0, NULL, NULL, NULL, NULL, 0, 0 },
	};
	char line[1024], done[256];
	const char *token;
	int first = 0, rc;

	memset(&c, 0, sizeof(c));
	if (argc < 2 || strcmp(argv[1], "revoke") != 0) {
		fprintf(stderr, "usage: %s token revoke TOKEN|- | %s token revoke --user USER [options]\n", PROG, PROG);
		return argc > 1 && strcmp(argv[1], "--help") == 0 ? 0 : 2;
	}
	if ((rc = parse("token revoke", PROG " token revoke TOKEN|- | --user USER [options]",
		 "Revokes one bearer token (- reads it from standard input), or every token of a user.", opts, argc - 1,
		 argv + 1, &first, 0, 1)) >= 0)
		return rc;
	if ((user != NULL) == (argc - 1 - first == 1)) {
		fprintf(stderr, "%s token revoke: give one TOKEN, or --user USER\n", PROG);
		return 2;
	}
	if (user != NULL) {
		if (!name_valid(user)) {
			fprintf(stderr, "%s token revoke: a user id is 1-%d characters of A-Z a-z 0-9 _ -\n", PROG, NAME_MAX_LEN);
			return 2;
		}
		snprintf(done, sizeof(done), "revoked every token of %s", user);
		return simple_call("token revoke", &c, "POST", "/v1/admin/tokens/revoke",
		    json_pack("{s:s}", "user_id", user), done, NULL);
	}
	token = argv[1 + first];
	if (strcmp(token, "-") == 0) {
		if (fgets(line, sizeof(line), stdin) == NULL) {
			fprintf(stderr, "%s token revoke: no token on standard input\n", PROG);
			return 2;
		}
		line[strcspn(line, "\r\n")] = '\0';
		token = line;
	}
	/* the API's 404 says "no such user or device", which names neither here */
	return simple_call("token revoke", &c, "POST", "/v1/admin/tokens/revoke", json_pack("{s:s}", "token", token),
	    "revoked the token",
	    "not a token this server accepts (malformed, expired, of no user, or revoked already)");
}

static int
cmd_broker_init(int argc, char **argv)
{
	const char *out = NULL, *passwd = NULL, *acl = NULL;
	const struct opt opts[] = {
		{ "out", 'o', OPT_STR, NULL, NULL, "the dynamic security plugin's file to write (plugin_opt_config_file)",
		    &out, 0, 0 },
		{ "password-file", 0, OPT_STR, NULL, NULL, "accounts to write: a mosquitto password file, hashed", &passwd, 0,
		    0 },
		{ "acl-file", 0, OPT_STR, NULL, NULL, "the access policy (broker-config/acl): one role per account", &acl, 0,
		    0 },
		{ NULL, 0, 0, NULL, NULL, NULL, NULL, 0, 0 },
	};
	char err[512];
	int first = 0, rc;

	if ((rc = parse("broker-init", PROG " broker-init --out FILE --password-file FILE --acl-file FILE",
		 "Writes the broker's first accounts for mosquitto's dynamic security plugin, before the broker starts; "
		 "accounts the broker already holds in FILE are kept.",
		 opts, argc, argv, &first, 0, 0)) >= 0)
		return rc;
	if (out == NULL || passwd == NULL || acl == NULL) {
		fprintf(stderr, "%s broker-init: --out, --password-file and --acl-file are required\n", PROG);
		return 2;
	}
	if (brokerinit_write(out, passwd, acl, err, sizeof(err)) != 0) {
		fprintf(stderr, "%s broker-init: %s\n", PROG, err);
		return 1;
	}
	return 0;
}

static const struct command {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *summary;
} commands[] = {
	{ "user", cmd_user, "add|del|list|passwd: customers" },
	{ "device", cmd_device, "list|revoke: a customer's devices" },
	{ "token", cmd_token, "revoke: HTTP bearer tokens" },
	{ "broker-init", cmd_broker_init, "write the broker's first accounts before it starts" },
};

static void
usage(FILE *f)
{
	fprintf(f, "usage: %s COMMAND [options]\n\nManages the pizza backend's accounts while it runs.\n\ncommands:\n", PROG);
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].summary);
	fprintf(f, "\n'%s COMMAND --help' describes each command's options.\n", PROG);
}

int
main(int argc, char **argv)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
	runenv_load(); /* make run's ports, unless set */
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
		usage(stdout);
		return 0;
	}
	if (strcmp(argv[1], "--version") == 0) {
		printf("%s %s\n", PROG, PIZZA_VERSION);
		return 0;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(argv[1], commands[i].name) == 0)
			return commands[i].run(argc - 1, argv + 1);
	fprintf(stderr, "%s: unknown command '%s' (see '%s --help')\n", PROG, argv[1], PROG);
	return 2;
}

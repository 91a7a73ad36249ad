#include "api.h"
#include "store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "accounts.h"
#include "forward.h"
#include "ratelimit.h"
#include "log.h"
#include "menu.h"
#include "svc.h"
#include "token.h"
#include "util.h"
#include "web.h"


/* A read on its way to order-history: what its answer needs. */
struct read_fwd {
	struct http_deferred *d;
	char owner[NAME_MAX_LEN + 1]; /* "": the list of the caller, already checked */
	char order_id[NAME_MAX_LEN + 1];
};

/*
 * The answer to a forwarded read from order-history's (status 0: none
 * came; body is taken over).  None, or a 5xx, is a 503 with Retry-After.
 * A 200 for an order whose "user_id" is not owner becomes a 404: a user
 * cannot even learn that another user's order exists.
 */
static void
history_answer(const struct read_fwd *r, long status, char *body, struct http_resp *resp)
{
	if (status == 0) {
		free(body);
		http_error(resp, 503, "unavailable", "the order history is not answering; try again shortly");
		resp->retry_after = 2;
		return;
	}
	if (status >= 500) {
		/* every order-history tried failed the read (forward.h): the client tries again, as when none answers */
		free(body);
		http_error(resp, 503, "unavailable", "the order history cannot answer now; try again shortly");
		resp->retry_after = 2;
		return;
	}
	if (status == 401) {
		/* not the client's fault: the two services do not share the same history secret */
		log_error("order history refused our history secret; check --history-secret-file on both", NULL);
		free(body);
		http_error(resp, 503, "unavailable", "the order history cannot be read; try again later");
		resp->retry_after = 10;
		return;
	}
	if (r->owner[0] != '\0' && status == 200) {
		json_t *o = json_loads(body != NULL ? body : "", 0, NULL);
		const char *u = json_string_value(json_object_get(o, "user_id"));
		int mine = u != NULL && strcmp(u, r->owner) == 0;

		json_decref(o);
		if (!mine) {
			free(body);
			http_error(resp, 404, "not_found", "no order %s", r->order_id);
			return;
		}
	}
	resp->status = (int)status;
	resp->body = body != NULL ? body : strdup("");
}

/* forward_get()'s callback, on the forwarder's thread: the deferred answer. */
static void
forwarded(void *arg, long status, char *body)
{
	struct read_fwd *r = arg;
	struct http_resp resp;

	memset(&resp, 0, sizeof(resp));
	history_answer(r, status, body, &resp);
	http_finish(r->d, &resp);
	free(r);
}

/* Appends query argument name=value (percent-encoded) to buf of n bytes holding *len; 0, or -1 if it did not fit. */
static int
query_append(char *buf, size_t n, size_t *len, const char *name, const char *value)
{
	static const char hex[] = "0123456789ABCDEF";
	int w = snprintf(buf + *len, n - *len, "%c%s=", strchr(buf, '?') != NULL ? '&' : '?', name);

	if (w < 0 || (size_t)w >= n - *len)
		return -1;
	*len += (size_t)w;
	for (const unsigned char *p = (const unsigned char *)value; *p != '\0'; p++) {
		int plain = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
		    strchr("-._~", *p) != NULL;

		if (*len + (plain ? 1 : 3) >= n)
			return -1;
		if (plain)
			buf[(*len)++] = (char)*p;
		else {
			buf[(*len)++] = '%';
			buf[(*len)++] = hex[*p >> 4];
			buf[(*len)++] = hex[*p & 15];
		}
	}
	buf[*len] = '\0';
	return 0;
}

/*
 * Forwards a GET to order-history and relays its status and body, off
 * this thread (forward.h): the request is deferred and answered when
 * order-history's answer comes, or at once with 503 and Retry-After when
 * too many forwards are in flight or order-history is known not to answer.
 * owner (may be NULL) and order_id as for history_answer().
 */
static void
forward(struct api *api, const struct http_req *req, struct http_resp *resp, const char *owner, const char *order_id)
{
	char pq[1024];
	size_t n;
	const char *q;
	struct read_fwd *r;
	struct http_resp now;
	int retry = 1;
	enum forward_result fr;

	/* the path is a checked id path; only the query arguments the history knows, re-encoded */
	n = (size_t)snprintf(pq, sizeof(pq), "%s", req->path);
	if (n >= sizeof(pq) || ((q = http_query(req, "limit")) != NULL && query_append(pq, sizeof(pq), &n, "limit", q) != 0) ||
	    ((q = http_query(req, "before")) != NULL && query_append(pq, sizeof(pq), &n, "before", q) != 0)) {
		http_error(resp, 400, "invalid_query", "limit must be a whole number from 1 to 100, before an order id");
		return;
	}
	if ((r = calloc(1, sizeof(*r))) == NULL || (r->d = http_defer(req)) == NULL) {
		free(r);
		http_error(resp, 503, "unavailable", "the order history cannot be reached");
		resp->retry_after = 1;
		return;
	}
	str_copy(r->owner, sizeof(r->owner), owner != NULL ? owner : "");
	str_copy(r->order_id, sizeof(r->order_id), order_id != NULL ? order_id : "");
	if ((fr = forward_get(api->forwarder, pq, forwarded, r, &retry)) == FORWARD_QUEUED)
		return; /* forwarded() answers */
	/* deferred already: answered at once through http_finish() */
	memset(&now, 0, sizeof(now));
	if (fr == FORWARD_BUSY)
		http_error(&now, 503, "unavailable", "too many reads of the order history at once; try again shortly");
	else if (fr == FORWARD_DOWN)
		http_error(&now, 503, "unavailable", "the order history is not answering; try again shortly");
	else
		http_error(&now, 503, "unavailable", "the order history cannot be reached");
	now.retry_after = retry;
	http_finish(r->d, &now);
	free(r);
}

int
api_start(struct api *api)
{
	api->forwarder = forward_start(api->history_url, api->history_secret, &forward_default_policy);
	return api->forwarder != NULL ? 0 : -1;
}

void
api_stop(struct api *api)
{
	forward_stop(api->forwarder);
	api->forwarder = NULL;
}

/*
 * The caller's user from "Authorization: Bearer <token>".  Returns 0 with
 * the id in user, or -1 with a 401 already set on resp.
 */
static int
authenticate(struct api *api, const struct http_req *req, struct http_resp *resp, char *user)
{
	const char *h = http_header(req, "Authorization");
	struct token_claims c;

	if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0) {
		http_error(resp, 401, "unauthorized", "send Authorization: Bearer <token> (POST /v1/login gives one)");
		resp->www_authenticate = "Bearer realm=\"pizza\"";
		return -1;
	}
	if (api->accounts == NULL || accounts_authenticate(api->accounts, h + 7, now_ms() / 1000, &c) != 0) {
		http_error(resp, 401, "unauthorized", "the token is invalid, expired or revoked; log in again");
		resp->www_authenticate = "Bearer realm=\"pizza\", error=\"invalid_token\"";
		return -1;
	}
	memcpy(user, c.user, sizeof(c.user));
	return 0;
}

/* An accounts operation's answer as HTTP (ok_status with ok_body, stolen, when it succeeded). */
static void
accounts_http(const struct accounts_answer *a, struct http_resp *resp, int ok_status, json_t *ok_body)
{
	switch (a->result) {
	case ACCOUNTS_OK:
		if (ok_body != NULL)
			http_json(resp, ok_status, ok_body);
		else {
			resp->status = ok_status;
			resp->body = strdup("");
		}
		return;
	case ACCOUNTS_EXISTS:
		http_error(resp, 409, "conflict", "that user id is taken");
		break;
	case ACCOUNTS_RESERVED:
		http_error(resp, 409, "conflict", "that user id is reserved");
		break;
	case ACCOUNTS_NOT_FOUND:
		http_error(resp, 404, "not_found", "no such user or device");
		break;
	case ACCOUNTS_REFUSED:
		http_error(resp, 401, "unauthorized", "wrong user id or password");
		break;
	case ACCOUNTS_UNAVAILABLE:
		http_error(resp, 503, "unavailable", "the change could not be applied now; try again shortly");
		resp->retry_after = 2;
		break;
	}
	json_decref(ok_body);
}

/* accounts_login()'s callback: arg is the deferred answer. */
static void
logged_in(void *arg, const struct accounts_answer *a)
{
	struct http_resp resp;
	char exp_at[32];
	json_t *body = NULL;

	memset(&resp, 0, sizeof(resp));
	if (a->result == ACCOUNTS_OK) {
		body = json_pack("{s:s, s:s, s:s}", "user_id", a->user, "token", a->token, "expires_at",
		    time_rfc3339(a->expiry * 1000, exp_at, sizeof(exp_at)));
		if (a->device[0] != '\0') {
			json_object_set_new(body, "device", json_string(a->device));
			json_object_set_new(body, "mqtt", json_pack("{s:s, s:s, s:s}", "username", a->mqtt_user, "password",
							       a->mqtt_password, "client_id", a->client_id));
		}
	}
	accounts_http(a, &resp, 200, body);
	http_finish(arg, &resp);
}

/* Reads {"user_id", "password", ...} from the body: 0, or -1 with a 400 set. */
static int
credentials(const struct http_req *req, struct http_resp *resp, json_t **body, const char **user, const char **password)
{
	*body = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, NULL);
	*user = json_string_value(json_object_get(*body, "user_id"));
	*password = json_string_value(json_object_get(*body, "password"));
	if (*user == NULL || *password == NULL || !name_valid(*user) || strlen(*password) > 256) {
		json_decref(*body);
		*body = NULL;
		http_error(resp, 400, "invalid_json",
		    "send {\"user_id\":\"...\",\"password\":\"...\"}: a user id of 1-%d characters of A-Z a-z 0-9 _ -, "
		    "a password of at most 256",
		    NAME_MAX_LEN);
		return -1;
	}
	return 0;
}

static void
post_login(struct api *api, const struct http_req *req, struct http_resp *resp)
{
	const char *user, *password, *device;
	struct http_deferred *d;
	char client[64];
	json_t *body, *jd;

	if (api->accounts == NULL) {
		http_error(resp, 404, "not_found", "login is not enabled on this server");
		return;
	}
	if (credentials(req, resp, &body, &user, &password) != 0)
		return;
	jd = json_object_get(body, "device");
	device = json_string_value(jd);
	if (jd != NULL && (device == NULL || !name_valid(device))) {
		json_decref(body);
		http_error(resp, 422, "invalid_field", "device must be a name of 1-%d characters of A-Z a-z 0-9 _ -",
		    NAME_MAX_LEN);
		return;
	}
	if ((d = http_defer(req)) == NULL) {
		json_decref(body);
		http_error(resp, 503, "unavailable", "try again");
		resp->retry_after = 1;
		return;
	}
	log_info("login", "user_id=%s device=%s client=%s", user, LOGQ(device != NULL ? device : ""),
	    http_client_addr(req, client, sizeof(client)));
	accounts_login(api->accounts, user, password, device, logged_in, d);
	json_decref(body);
}

/* The admin API's answers that carry no body: arg is the deferred answer. */
static void
admin_done(void *arg, const struct accounts_answer *a)
{
	struct http_resp resp;

	memset(&resp, 0, sizeof(resp));
	accounts_http(a, &resp, 204, NULL);
	http_finish(arg, &resp);
}

static void
created_done(void *arg, const struct accounts_answer *a)
{
	struct http_resp resp;

	memset(&resp, 0, sizeof(resp));
	accounts_http(a, &resp, 201, json_pack("{s:b}", "created", 1));
	http_finish(arg, &resp);
}

/* Adds a user (admin, or sign-up) from {"user_id","password"}. */
static void
add_user(struct api *api, const struct http_req *req, struct http_resp *resp)
{
	const char *user, *password, *why;
	struct http_deferred *d;
	json_t *body;

	if (credentials(req, resp, &body, &user, &password) != 0)
		return;
	if ((why = accounts_password_policy(user, password)) != NULL) {
		json_decref(body);
		http_error(resp, 422, "weak_password", "%s", why);
		return;
	}
	if ((d = http_defer(req)) == NULL) {
		json_decref(body);
		http_error(resp, 503, "unavailable", "try again");
		resp->retry_after = 1;
		return;
	}
	accounts_add(api->accounts, user, password, created_done, d);
	json_decref(body);
}

/* POST /v1/users: self sign-up (--allow-signup), limited per client address. */
static void
post_signup(struct api *api, const struct http_req *req, struct http_resp *resp)
{
	char addr[64];
	int64_t wait;

	if (!api->allow_signup || api->accounts == NULL) {
		http_error(resp, 403, "forbidden", "sign-up is turned off on this server; ask its operator for an account");
		return;
	}
	http_client_addr(req, addr, sizeof(addr));
	if (api->signup_limit != NULL && (wait = ratelimit_take(api->signup_limit, addr, strlen(addr), now_ms())) > 0) {
		http_error(resp, 429, "too_many_requests", "too many sign-ups from this address; try again later");
		resp->retry_after = (int)((wait + 999) / 1000);
		return;
	}
	add_user(api, req, resp);
}

/* Whether the request carries the admin secret (compared in constant time). */
static int
is_admin(const struct api *api, const struct http_req *req)
{
	const char *h = http_header(req, "Authorization");
	size_t n;

	if (api->admin_secret == NULL || h == NULL || strncasecmp(h, "Bearer ", 7) != 0)
		return 0;
	h += 7;
	n = strlen(api->admin_secret);
	return strlen(h) == n && CRYPTO_memcmp(h, api->admin_secret, n) == 0;
}

/*
 * /v1/admin/...: pizza-admin's API.  Paths: users, users/{u},
 * users/{u}/password, users/{u}/devices, users/{u}/devices/{d}, tokens/revoke.
 */
static void
admin(struct api *api, const struct http_req *req, struct http_resp *resp)
{
	const char *rest = req->path + strlen("/v1/admin/"), *m = req->method;
	char user[NAME_MAX_LEN + 1], device[NAME_MAX_LEN + 1], tail[64];
	struct http_deferred *d;
	json_t *body, *o;
	int n;

	if (api->admin_secret == NULL || api->accounts == NULL) {
		http_error(resp, 404, "not_found", "the admin API is not enabled on this server");
		return;
	}
	if (!is_admin(api, req)) {
		http_error(resp, 401, "unauthorized", "send Authorization: Bearer <the admin secret>");
		resp->www_authenticate = "Bearer realm=\"pizza-admin\"";
		return;
	}
	user[0] = device[0] = tail[0] = '\0';
	if (strcmp(rest, "users") == 0) {
		if (strcmp(m, "GET") == 0)
			http_json(resp, 200, accounts_list(api->accounts));
		else if (strcmp(m, "POST") == 0)
			add_user(api, req, resp);
		else {
			resp->allow = "GET, POST";
			goto not_allowed;
		}
		return;
	}
	if (strcmp(rest, "tokens/revoke") == 0) {
		const char *tok, *u;
		enum accounts_result r;
		struct accounts_answer a;

		if (strcmp(m, "POST") != 0) {
			resp->allow = "POST";
			goto not_allowed;
		}
		body = json_loadb(req->body, req->body_len, 0, NULL);
		tok = json_string_value(json_object_get(body, "token"));
		u = json_string_value(json_object_get(body, "user_id"));
		if ((tok == NULL) == (u == NULL) || (u != NULL && !name_valid(u))) {
			json_decref(body);
			http_error(resp, 400, "invalid_json", "send {\"token\":\"...\"} or {\"user_id\":\"...\"}");
			return;
		}
		r = tok != NULL ? accounts_revoke_token(api->accounts, tok) : accounts_revoke_tokens(api->accounts, u);
		json_decref(body);
		memset(&a, 0, sizeof(a));
		a.result = r;
		accounts_http(&a, resp, 204, NULL);
		return;
	}
	/* users/{u}[/password | /devices[/{d}]], names as long as name_valid() allows */
	_Static_assert(NAME_MAX_LEN == 64, "the widths of the names in the sscanf() below are NAME_MAX_LEN");
	if (strncmp(rest, "users/", 6) != 0 ||
	    (n = sscanf(rest + 6, "%64[A-Za-z0-9_-]/%63[a-z]/%64[A-Za-z0-9_-]", user, tail, device)) < 1) {
		http_error(resp, 404, "not_found", "no such resource: %s %s", m, req->path);
		return;
	}
	{
		/* the path must be exactly what was read: nothing left over, no longer names */
		char again[256];
		snprintf(again, sizeof(again), "users/%s%s%s%s%s", user, n >= 2 ? "/" : "", n >= 2 ? tail : "",
		    n >= 3 ? "/" : "", n >= 3 ? device : "");
		if (strcmp(again, rest) != 0 || (n >= 2 && strcmp(tail, "password") != 0 && strcmp(tail, "devices") != 0) ||
		    (n == 3 && strcmp(tail, "devices") != 0)) {
			http_error(resp, 404, "not_found", "no such resource: %s %s", m, req->path);
			return;
		}
	}
	if (n == 1) {
		if (strcmp(m, "DELETE") != 0) {
			resp->allow = "DELETE";
			goto not_allowed;
		}
		if ((d = http_defer(req)) == NULL)
			goto busy;
		accounts_delete(api->accounts, user, admin_done, d);
	} else if (strcmp(tail, "password") == 0) {
		const char *pw, *why;
		if (strcmp(m, "PUT") != 0) {
			resp->allow = "PUT";
			goto not_allowed;
		}
		body = json_loadb(req->body, req->body_len, 0, NULL);
		if ((pw = json_string_value(json_object_get(body, "password"))) == NULL) {
			json_decref(body);
			http_error(resp, 400, "invalid_json", "send {\"password\":\"...\"}");
			return;
		}
		if ((why = accounts_password_policy(user, pw)) != NULL) {
			json_decref(body);
			http_error(resp, 422, "weak_password", "%s", why);
			return;
		}
		if ((d = http_defer(req)) == NULL) {
			json_decref(body);
			goto busy;
		}
		accounts_passwd(api->accounts, user, pw, admin_done, d);
		json_decref(body);
	} else if (n == 2) {
		if (strcmp(m, "GET") != 0) {
			resp->allow = "GET";
			goto not_allowed;
		}
		if ((o = accounts_devices(api->accounts, user)) == NULL)
			http_error(resp, 404, "not_found", "no user %s", user);
		else
			http_json(resp, 200, o);
	} else {
		if (strcmp(m, "DELETE") != 0) {
			resp->allow = "DELETE";
			goto not_allowed;
		}
		if ((d = http_defer(req)) == NULL)
			goto busy;
		accounts_revoke_device(api->accounts, user, device, admin_done, d);
	}
	return;
busy:
	http_error(resp, 503, "unavailable", "try again");
	resp->retry_after = 1;
	return;
not_allowed:
	http_error(resp, 405, "method_not_allowed", "%s is not allowed on %s (allowed: %s)", m, req->path, resp->allow);
}

static int
is_json(const char *ct)
{
	size_t n = strlen("application/json");

	return ct != NULL && strncasecmp(ct, "application/json", n) == 0 && (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ');
}

/* The answer to POST /v1/orders from the intake's result. */
static void
placed_response(const struct intake_result *res, struct http_resp *resp)
{
	switch (res->status) {
	case INTAKE_OK: {
		char status_url[128];
		snprintf(status_url, sizeof(status_url), "/v1/orders/%s", res->order_id);
		snprintf(resp->location, sizeof(resp->location), "%s", status_url);
		http_json(resp, 202,
		    json_pack("{s:s, s:s, s:s}", "order_id", res->order_id, "status", "accepted", "status_url", status_url));
		return;
	}
	case INTAKE_INVALID:
		http_error(resp, strcmp(res->error, "invalid_json") == 0 ? 400 : strcmp(res->error, "too_large") == 0 ? 413 : 422,
		    res->error, "%s", res->detail);
		return;
	case INTAKE_CONFLICT:
		http_error(resp, 422, res->error, "%s", res->detail);
		return;
	case INTAKE_INTERNAL:
		http_error(resp, 503, res->error, "%s", res->detail);
		resp->retry_after = 1;
		return;
	case INTAKE_LIMITED:
		http_error(resp, 429, res->error, "%s", res->detail);
		resp->retry_after = res->retry_after_s;
		return;
	}
}

/* intake_place_async()'s callback: arg is the deferred HTTP answer. */
static void
placed(void *arg, const struct intake_result *res)
{
	struct http_resp resp;

	memset(&resp, 0, sizeof(resp));
	placed_response(res, &resp);
	http_finish(arg, &resp);
}

static void
post_order(struct api *api, const struct http_req *req, struct http_resp *resp, const char *user)
{
	struct intake_result res;
	struct http_deferred *d;
	json_error_t jerr;
	json_t *body;
	const char *claimed, *key = http_header(req, "Idempotency-Key");

	if (!is_json(http_header(req, "Content-Type"))) {
		http_error(resp, 415, "unsupported_media_type", "send the order as Content-Type: application/json");
		return;
	}
	if ((body = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &jerr)) == NULL) {
		http_error(resp, 400, "invalid_json", "malformed JSON: %s (line %d, column %d)", jerr.text, jerr.line,
		    jerr.column);
		return;
	}
	if (!json_is_object(body)) {
		json_decref(body);
		http_error(resp, 400, "invalid_json", "the body must be a JSON object");
		return;
	}
	/* user_id may be left out; if it is there it must be the caller */
	if (json_object_get(body, "user_id") != NULL) {
		claimed = json_string_value(json_object_get(body, "user_id"));
		if (claimed == NULL || !name_valid(claimed)) {
			json_decref(body);
			http_error(resp, 422, "invalid_field", "user_id must be a string of 1-%d characters of A-Z a-z 0-9 _ -",
			    NAME_MAX_LEN);
			return;
		}
		if (strcmp(claimed, user) != 0) {
			json_decref(body);
			http_error(resp, 403, "forbidden", "you can only place orders for yourself (%s)", user);
			return;
		}
	}
	if ((d = http_defer(req)) == NULL) {
		intake_place(api->intake, user, body, "http", key, &res);
		placed_response(&res, resp);
	} else
		/* answered from the committer thread once the order is recorded (group commit) */
		intake_place_async(api->intake, user, body, "http", key, placed, d);
	json_decref(body);
}

static void
get_menu(const struct http_req *req, struct http_resp *resp)
{
	size_t n;
	const struct menu_item *m = menu_all(&n);
	json_t *items = json_array();

	(void)req;
	for (size_t i = 0; i < n; i++)
		json_array_append_new(items, json_pack("{s:s, s:s, s:i, s:s}", "sku", m[i].sku, "name", m[i].name,
						 "price_cents", m[i].price_cents, "currency", "EUR"));
	http_json(resp, 200, json_pack("{s:o, s:i}", "items", items, "max_qty", EVENT_MAX_QTY));
}

/* Matches /v1/orders/<id> and /v1/users/<id>/orders with a valid id, copied into id. */
static int
id_path(const char *path, const char *prefix, const char *suffix, char *id)
{
	size_t pl = strlen(prefix), sl = strlen(suffix), n = strlen(path);

	if (n <= pl + sl || strncmp(path, prefix, pl) != 0 || strcmp(path + n - sl, suffix) != 0 ||
	    n - pl - sl > NAME_MAX_LEN)
		return 0;
	memcpy(id, path + pl, n - pl - sl);
	id[n - pl - sl] = '\0';
	return name_valid(id);
}

/* What api_handle() below and web_handle() answer: a new route goes here too, else it counts as "other". */
const char *const api_routes[] = { "/v1/orders", "/v1/orders/{id}", "/v1/users/{user}/orders", "/v1/login",
	"/v1/users", "/v1/admin/{resource}", "/v1/menu", "/v1/config", "/", "/app.js", "/style.css", "/mqtt.min.js", "/metrics", "/healthz", NULL };

void
api_handle(void *arg, const struct http_req *req, struct http_resp *resp)
{
	struct api *api = arg;
	int get = strcmp(req->method, "GET") == 0 || strcmp(req->method, "HEAD") == 0;
	const char *allow = NULL;
	char id[NAME_MAX_LEN + 1], user[NAME_MAX_LEN + 1];

	if (get && svc_ops_handle(req, resp, api->mq, ostore_probe, api->store))
		return;
	if (strcmp(req->path, "/v1/orders") == 0) {
		if (strcmp(req->method, "POST") != 0)
			allow = "POST";
		else if (authenticate(api, req, resp, user) == 0)
			post_order(api, req, resp, user);
	} else if (strcmp(req->path, "/v1/login") == 0) {
		if (strcmp(req->method, "POST") == 0)
			post_login(api, req, resp);
		else
			allow = "POST";
	} else if (strcmp(req->path, "/v1/users") == 0) {
		if (strcmp(req->method, "POST") == 0)
			post_signup(api, req, resp);
		else
			allow = "POST";
	} else if (strncmp(req->path, "/v1/admin/", 10) == 0) {
		admin(api, req, resp);
	} else if (strcmp(req->path, "/v1/menu") == 0) {
		if (get)
			get_menu(req, resp);
		else
			allow = "GET, HEAD";
	} else if (id_path(req->path, "/v1/orders/", "", id)) {
		if (!get)
			allow = "GET, HEAD";
		else if (authenticate(api, req, resp, user) == 0)
			forward(api, req, resp, user, id);
	} else if (id_path(req->path, "/v1/users/", "/orders", id)) {
		if (!get)
			allow = "GET, HEAD";
		else if (authenticate(api, req, resp, user) == 0) {
			if (strcmp(id, user) == 0)
				forward(api, req, resp, NULL, NULL);
			else
				http_error(resp, 404, "not_found", "no such resource: %s", req->path);
		}
	} else if (!web_handle(req, resp)) {
		http_error(resp, 404, "not_found", "no such resource: %s %s", req->method, req->path);
	}
	if (allow != NULL) {
		http_error(resp, 405, "method_not_allowed", "%s is not allowed on %s (allowed: %s)", req->method, req->path,
		    allow);
		resp->allow = allow;
	}
}

#include "api.h"
#include "store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <jansson.h>

#include "curlbuf.h"
#include "log.h"
#include "menu.h"
#include "svc.h"
#include "token.h"
#include "util.h"
#include "web.h"

/* Broker accounts of the services: they are not customers and get no token. */
static const char *const service_accounts[] = { "order-service", "order-executor", "order-history", "notifier",
	"admin", NULL };

/*
 * Forwards a GET to order-history and relays its status and body.  When
 * owner is not NULL, a 200 whose "user_id" is not owner becomes a 404: a
 * user cannot even learn that another user's order exists.
 */
static void
forward(struct api *api, const struct http_req *req, struct http_resp *resp, const char *owner)
{
	char url[1024];
	const char *q;
	struct curlbuf b = { NULL, 0, 4 * 1024 * 1024 };
	CURL *c;
	CURLcode cr;
	long status = 0;
	char *limit = NULL, *before = NULL;

	if ((c = curl_easy_init()) == NULL) {
		http_error(resp, 503, "unavailable", "the order history cannot be reached");
		return;
	}
	/* only the query arguments the history knows, re-encoded */
	if ((q = http_query(req, "limit")) != NULL)
		limit = curl_easy_escape(c, q, 0);
	if ((q = http_query(req, "before")) != NULL)
		before = curl_easy_escape(c, q, 0);
	{
		size_t n = (size_t)snprintf(url, sizeof(url), "%s%s", api->history_url, req->path);
		char sep = '?';

		if (limit != NULL && n < sizeof(url)) {
			n += (size_t)snprintf(url + n, sizeof(url) - n, "%climit=%s", sep, limit);
			sep = '&';
		}
		if (before != NULL && n < sizeof(url))
			snprintf(url + n, sizeof(url) - n, "%cbefore=%s", sep, before);
	}
	curl_free(limit);
	curl_free(before);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, curlbuf_sink);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	cr = curl_easy_perform(c);
	if (cr == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_cleanup(c);
	if (cr != CURLE_OK || status == 0) {
		log_warn("order history unreachable", "url=%s err=%s", LOGQ(api->history_url), LOGQ(curl_easy_strerror(cr)));
		free(b.p);
		http_error(resp, 503, "unavailable", "the order history is not answering; try again shortly");
		resp->retry_after = 2;
		return;
	}
	if (owner != NULL && status == 200) {
		json_t *o = json_loads(b.p != NULL ? b.p : "", 0, NULL);
		const char *u = json_string_value(json_object_get(o, "user_id"));
		int mine = u != NULL && strcmp(u, owner) == 0;

		json_decref(o);
		if (!mine) {
			free(b.p);
			http_error(resp, 404, "not_found", "no order %s", req->path + strlen("/v1/orders/"));
			return;
		}
	}
	resp->status = (int)status;
	resp->body = b.p != NULL ? b.p : strdup("");
}

/*
 * The caller's user from "Authorization: Bearer <token>".  Returns 0 with
 * the id in user, or -1 with a 401 already set on resp.
 */
static int
authenticate(struct api *api, const struct http_req *req, struct http_resp *resp, char *user)
{
	const char *h = http_header(req, "Authorization");

	if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0) {
		http_error(resp, 401, "unauthorized", "send Authorization: Bearer <token> (POST /v1/login gives one)");
		resp->www_authenticate = "Bearer realm=\"pizza\"";
		return -1;
	}
	if (token_verify(api->token_secret, h + 7, now_ms() / 1000, user) != 0) {
		http_error(resp, 401, "unauthorized", "the token is invalid or expired; log in again");
		resp->www_authenticate = "Bearer realm=\"pizza\", error=\"invalid_token\"";
		return -1;
	}
	return 0;
}

static void
post_login(struct api *api, const struct http_req *req, struct http_resp *resp)
{
	json_t *body = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, NULL);
	const char *user = json_string_value(json_object_get(body, "user_id"));
	const char *password = json_string_value(json_object_get(body, "password"));
	char token[TOKEN_MAX], exp_at[32], client[64];
	int64_t exp = now_ms() / 1000 + api->token_ttl_s;
	int service = 0;

	if (api->password_file == NULL) {
		json_decref(body);
		http_error(resp, 404, "not_found", "login is not enabled on this server");
		return;
	}
	if (user == NULL || password == NULL || !name_valid(user) || strlen(password) > 256) {
		json_decref(body);
		http_error(resp, 400, "invalid_json", "send {\"user_id\":\"...\",\"password\":\"...\"}");
		return;
	}
	for (int i = 0; service_accounts[i] != NULL; i++)
		service |= strcmp(user, service_accounts[i]) == 0;
	if (service || token_password_file(api->password_file, user, password) != 0 ||
	    token_issue(api->token_secret, user, exp, token) != 0) {
		log_warn("login refused", "user_id=%s client=%s", user, http_client_addr(req, client, sizeof(client)));
		json_decref(body);
		http_error(resp, 401, "unauthorized", "wrong user id or password");
		return;
	}
	log_info("login", "user_id=%s", user);
	http_json(resp, 200,
	    json_pack("{s:s, s:s, s:s}", "user_id", user, "token", token, "expires_at",
		time_rfc3339(exp * 1000, exp_at, sizeof(exp_at))));
	json_decref(body);
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
	} else if (strcmp(req->path, "/v1/menu") == 0) {
		if (get)
			get_menu(req, resp);
		else
			allow = "GET, HEAD";
	} else if (id_path(req->path, "/v1/orders/", "", id)) {
		if (!get)
			allow = "GET, HEAD";
		else if (authenticate(api, req, resp, user) == 0)
			forward(api, req, resp, user);
	} else if (id_path(req->path, "/v1/users/", "/orders", id)) {
		if (!get)
			allow = "GET, HEAD";
		else if (authenticate(api, req, resp, user) == 0) {
			if (strcmp(id, user) == 0)
				forward(api, req, resp, NULL);
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

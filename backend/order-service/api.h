/*
 * api.h - order-service's HTTP API (docs/http-api.md).
 *
 *   POST /v1/login                  a user's password for a bearer token
 *   POST /v1/orders                 place an order: 202 at once, then asynchronous
 *   GET  /v1/orders/<order_id>      the order and its timeline    } answered by
 *   GET  /v1/users/<user_id>/orders the user's orders, newest first } order-history
 *   GET  /v1/menu                   what can be ordered
 *   GET  /metrics, /healthz         Prometheus metrics, health (no token)
 *
 * Every order endpoint needs "Authorization: Bearer <token>" (token.h), and a
 * user sees and places only their own orders: another user's order is 404,
 * as if it did not exist.  Orders go through intake_place(), the same path
 * as MQTT orders.  The read endpoints are forwarded to order-history, which
 * owns the history, without holding a web thread (forward.h): a hung
 * order-history costs reads a fast 503, never orders.
 */
#ifndef PIZZA_API_H
#define PIZZA_API_H

#include "httpd.h"
#include "intake.h"

#define API_MAX_BODY (16 * 1024) /* bytes; larger bodies get 413 */

struct forwarder;
struct mq;
struct order_store;
struct accounts;
struct ratelimit;

struct api {
	struct intake *intake;
	struct mq *mq;             /* for /healthz */
	struct order_store *store; /* for /healthz (ostore_probe()) */
	const char *history_url;   /* e.g. http://127.0.0.1:8081, or several comma-separated (forward.h) */
	const char *history_secret; /* order-history's read API wants it (Authorization: Bearer) */
	struct accounts *accounts; /* logins, tokens, the admin API's changes; NULL: no login */
	const char *admin_secret;  /* the admin API wants it (Authorization: Bearer); NULL: no admin API */
	int allow_signup;          /* POST /v1/users lets anyone create an account */
	struct ratelimit *signup_limit; /* sign-ups per client address */
	struct forwarder *forwarder; /* api_start() */
};

/*
 * Starts what the read endpoints need besides the HTTP server: the
 * forwarder to order-history (forward.h), from history_url and
 * history_secret.  Call before httpd_start().  Returns 0, or -1 out of
 * memory or threads.
 */
int api_start(struct api *api);
/* Stops the forwarder; reads still in flight are answered 503.  Call after httpd_stop(). */
void api_stop(struct api *api);

/* The route templates api_handle() answers, for the request metrics (httpd_routes()). */
extern const char *const api_routes[];

/* The http_handler for the API; arg is a struct api. */
void api_handle(void *arg, const struct http_req *req, struct http_resp *resp);

#endif

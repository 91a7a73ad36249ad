/*
 * web.h - the storefront order-service serves at / (web/ in the checkout).
 *
 *   GET /             index.html      }
 *   GET /app.js       app.js          } read from the web root at request
 *   GET /style.css    style.css       } time; a fixed list of names, so no
 *   GET /mqtt.min.js  node_modules/mqtt/dist/mqtt.min.js (make web-deps)
 *   GET /v1/config    {"mqtt_ws_url":"ws://host:port/"} (no token)
 *
 * The page is itself an MQTT client over WebSockets: it logs in with
 * POST /v1/login and connects to the broker with the same user and password.
 */
#ifndef PIZZA_WEB_H
#define PIZZA_WEB_H

#include "httpd.h"

#define WEB_MAX_FILE (2 * 1024 * 1024) /* bytes; a larger file is a 500, never a partial answer */

/*
 * Sets the folder the static files are read from (NULL: none are served) and
 * the broker's WebSockets URL /v1/config tells the page (NULL: /v1/config is
 * 404).  Both strings must outlive the server.  Call before the HTTP server starts.
 */
void web_init(const char *root, const char *mqtt_ws_url);

/*
 * Answers req if it is one of the storefront's paths: returns 1 with resp
 * filled in (the file, a 405 for a method other than GET/HEAD, or an error),
 * or 0 when the path is not the storefront's and resp is untouched.
 */
int web_handle(const struct http_req *req, struct http_resp *resp);

#endif

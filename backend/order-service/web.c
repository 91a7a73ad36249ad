#include "web.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "log.h"
#include "util.h"

/* The only files ever served: a URL path maps to a fixed name under the root. */
static const struct web_file {
	const char *path;
	const char *file;
	const char *content_type;
} files[] = {
	{ "/", "index.html", "text/html; charset=utf-8" },
	{ "/app.js", "app.js", "text/javascript; charset=utf-8" },
	{ "/style.css", "style.css", "text/css; charset=utf-8" },
	{ "/mqtt.min.js", "node_modules/mqtt/dist/mqtt.min.js", "text/javascript; charset=utf-8" },
};

static const char *web_root;
static const char *ws_url;

void
web_init(const char *root, const char *mqtt_ws_url)
{
	web_root = root != NULL && root[0] != '\0' ? root : NULL;
	ws_url = mqtt_ws_url != NULL && mqtt_ws_url[0] != '\0' ? mqtt_ws_url : NULL;
}

static void
get_config(struct http_resp *resp)
{
	char url[512];
	size_t n;

	if (ws_url == NULL) {
		http_error(resp, 404, "not_found", "no MQTT WebSockets URL is configured (--mqtt-ws-url)");
		return;
	}
	/* the page connects to exactly this; a bare ws://host:port gets its "/" */
	n = strlen(ws_url);
	snprintf(url, sizeof(url), "%s%s", ws_url, n > 0 && ws_url[n - 1] == '/' ? "" : "/");
	http_json(resp, 200, json_pack("{s:s}", "mqtt_ws_url", url));
}

/*
 * Reads the file at request time (edits show on reload).  The files are
 * text: httpd sends the body up to its first NUL.
 */
static void
get_file(const struct web_file *f, struct http_resp *resp)
{
	char path[1024];
	char *body;

	if ((size_t)snprintf(path, sizeof(path), "%s/%s", web_root, f->file) >= sizeof(path)) {
		http_error(resp, 500, "internal", "the web root path is too long");
		return;
	}
	if ((body = file_read_small(path, WEB_MAX_FILE)) == NULL) {
		int e = errno;

		log_warn("cannot read a storefront file", "path=%s err=%s", LOGQ(path), LOGQ(strerror(e)));
		if (e == ENOENT)
			http_error(resp, 404, "not_found", "%s is missing from the web root%s", f->file,
			    strcmp(f->path, "/mqtt.min.js") == 0 ? " (run make web-deps)" : "");
		else
			http_error(resp, 500, "internal", "cannot read %s", f->file);
		return;
	}
	free(resp->body);
	resp->status = 200;
	resp->body = body;
	resp->content_type = f->content_type;
}

int
web_handle(const struct http_req *req, struct http_resp *resp)
{
	int get = strcmp(req->method, "GET") == 0 || strcmp(req->method, "HEAD") == 0;
	const struct web_file *f = NULL;

	if (strcmp(req->path, "/v1/config") != 0) {
		if (web_root == NULL)
			return 0;
		for (size_t i = 0; i < sizeof(files) / sizeof(files[0]) && f == NULL; i++)
			if (strcmp(req->path, files[i].path) == 0)
				f = &files[i];
		if (f == NULL)
			return 0;
	}
	if (!get) {
		http_error(resp, 405, "method_not_allowed", "%s is not allowed on %s (allowed: GET, HEAD)", req->method,
		    req->path);
		resp->allow = "GET, HEAD";
	} else if (f == NULL)
		get_config(resp);
	else
		get_file(f, resp);
	return 1;
}

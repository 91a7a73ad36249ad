/*
 * The storefront (web/, served by order-service at /) in a real browser:
 * tests/browser/storefront.mjs drives Debian's chromium through
 * playwright-core against a stack whose kitchen is slow (700 ms a stage), so
 * a reload lands mid-order.  Needs make web-deps browser-deps first.
 * Screenshots of the desktop and phone viewports (signed out, ordering,
 * ready) go to build/screenshots/.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "util.h"

static struct stack st;

static const char *
checkout(void)
{
	const char *r = getenv("PIZZA_ROOT");
	return r != NULL ? r : ".";
}

static int
setup(void **state)
{
	char web[600], ws[64];

	(void)state;
	if (h_stack_start(&st, "browser") != 0)
		return -1;
	snprintf(web, sizeof(web), "%s/web", checkout());
	snprintf(ws, sizeof(ws), "ws://127.0.0.1:%d", st.ws_port);
	if (h_service(&st, "order-service", "order-service", "--web-root", web, "--mqtt-ws-url", ws, NULL) < 0 ||
	    h_service(&st, "order-history", "order-history", NULL) < 0 ||
	    h_service(&st, "notifier", "notifier", NULL) < 0 ||
	    h_service(&st, "exec-1", "order-executor", "--id", "exec-1", "--stage-ms", "700", NULL) < 0)
		return -1;
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	return h_stack_stop(&st);
}

/* GET path from order-service: the status, the body into *body, the Content-Type into ct. */
static int
get(const char *path, char **body, char *ct, size_t n)
{
	char url[256], cmd[400];
	FILE *p;
	int status;

	snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", st.http_port, path);
	status = h_http_get(url, body);
	ct[0] = '\0';
	snprintf(cmd, sizeof(cmd), "curl -s -m 5 -o /dev/null -w '%%{content_type}' --path-as-is '%s'", url);
	if ((p = popen(cmd, "r")) != NULL) {
		if (fgets(ct, (int)n, p) == NULL)
			ct[0] = '\0';
		pclose(p);
	}
	return status;
}

static void
test_static_files(void **state)
{
	char *body = NULL, ct[128], want[128];

	(void)state;
	assert_int_equal(get("/", &body, ct, sizeof(ct)), 200);
	assert_string_equal(ct, "text/html; charset=utf-8");
	assert_non_null(strstr(body, "<script src=\"/app.js\""));
	free(body);
	assert_int_equal(get("/app.js", &body, ct, sizeof(ct)), 200);
	assert_string_equal(ct, "text/javascript; charset=utf-8");
	free(body);
	assert_int_equal(get("/style.css", &body, ct, sizeof(ct)), 200);
	assert_string_equal(ct, "text/css; charset=utf-8");
	free(body);
	assert_int_equal(get("/mqtt.min.js", &body, ct, sizeof(ct)), 200);
	assert_true(strlen(body) > 100000);
	free(body);
	/* the broker's WebSockets URL, no token needed */
	assert_int_equal(get("/v1/config", &body, ct, sizeof(ct)), 200);
	snprintf(want, sizeof(want), "{\"mqtt_ws_url\":\"ws://127.0.0.1:%d/\"}", st.ws_port);
	assert_string_equal(body, want);
	free(body);
	/* only the four names: nothing else under the web root, nothing outside it */
	const char *refused[] = { "/index.html", "/package.json", "/node_modules/mqtt/package.json", "/../web/app.js",
		"/%2e%2e/README.md", "/web.mk", "/app.js/", NULL };
	for (int i = 0; refused[i] != NULL; i++) {
		int status = get(refused[i], &body, ct, sizeof(ct));
		if (status != 404)
			fprintf(stderr, "GET %s answered %d\n", refused[i], status);
		assert_int_equal(status, 404);
		free(body);
	}
}

static void
test_storefront_in_chromium(void **state)
{
	static const char *const shots[] = { "desktop-signed-out.png", "desktop-ordering.png", "desktop-ready.png",
		"phone-signed-out.png", "phone-ordering.png", "phone-ready.png", NULL };
	char cmd[3000], dir[600], out[600], alice[256], bob[256], path[700];
	char *text;
	struct stat sb;
	int rc;

	(void)state;
	snprintf(alice, sizeof(alice), "%s", h_password(&st, "alice"));
	snprintf(bob, sizeof(bob), "%s", h_password(&st, "bob"));
	snprintf(dir, sizeof(dir), "%s/build/screenshots", checkout());
	snprintf(out, sizeof(out), "%s/browser.out", st.dir);
	for (int i = 0; shots[i] != NULL; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, shots[i]);
		unlink(path); /* a screenshot left by an earlier run proves nothing */
	}
	snprintf(cmd, sizeof(cmd),
	    "cd '%s' && STOREFRONT_URL=http://127.0.0.1:%d/ ALICE_PASSWORD='%s' BOB_PASSWORD='%s' SCREENSHOT_DIR='%s' "
	    "timeout 180 node tests/browser/storefront.mjs > '%s' 2>&1",
	    checkout(), st.http_port, alice, bob, dir, out);
	rc = system(cmd);
	text = file_read_small(out, 1 << 20);
	fprintf(stderr, "%s\n", text != NULL ? text : "(no output)");
	assert_int_equal(rc, 0);
	assert_non_null(text);
	assert_non_null(strstr(text, " passed, 0 failed"));
	free(text);
	for (int i = 0; shots[i] != NULL; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, shots[i]);
		if (stat(path, &sb) != 0 || sb.st_size <= 10000)
			fprintf(stderr, "screenshot %s missing or nearly empty\n", path);
		assert_int_equal(stat(path, &sb), 0);
		assert_true(sb.st_size > 10000);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_static_files),
		cmocka_unit_test(test_storefront_in_chromium),
	};

	return cmocka_run_group_tests_name("browser", tests, setup, teardown);
}

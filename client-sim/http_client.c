#include "http_client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "curlbuf.h"

int
http_call(const char *method, const char *url, const char *body, const char *const *headers, long *status,
    char **resp, char *err, size_t errlen)
{
	struct curlbuf s = { NULL, 0, 8 * 1024 * 1024 };
	struct curl_slist *h = NULL;
	CURL *c = curl_easy_init();
	CURLcode rc;

	if (c == NULL) {
		snprintf(err, errlen, "cannot start an HTTP client");
		return -1;
	}
	if (body != NULL)
		h = curl_slist_append(h, "Content-Type: application/json");
	for (int i = 0; headers != NULL && headers[i] != NULL; i++)
		h = curl_slist_append(h, headers[i]);
	h = curl_slist_append(h, "Expect:");
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	if (body != NULL)
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, curlbuf_sink);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &s);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	rc = curl_easy_perform(c);
	if (rc == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	if (rc != CURLE_OK) {
		snprintf(err, errlen, "cannot reach the HTTP API at %s (%s)", url, curl_easy_strerror(rc));
		free(s.p);
		return -1;
	}
	*resp = s.p != NULL ? s.p : strdup("");
	return 0;
}

const char *
http_base_url(void)
{
	static char buf[256];
	const char *u = getenv("PIZZA_HTTP_URL"), *p = getenv("PIZZA_HTTP_PORT");

	if (u != NULL && u[0] != '\0')
		snprintf(buf, sizeof(buf), "%s", u);
	else
		snprintf(buf, sizeof(buf), "http://127.0.0.1:%s", p != NULL && p[0] != '\0' ? p : "8080");
	return buf;
}

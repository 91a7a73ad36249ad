/*
 * http_client.h - the few HTTP calls phone-sim makes (libcurl).
 */
#ifndef PIZZA_HTTP_CLIENT_H
#define PIZZA_HTTP_CLIENT_H

#include <stddef.h>

/*
 * Sends method to url with an optional JSON body and extra header lines
 * (NULL-ended, may be NULL).  On a completed exchange returns 0 with the
 * status in *status and the body in a new string *resp (caller frees);
 * otherwise -1 with a one-line reason in err.
 */
int http_call(const char *method, const char *url, const char *body, const char *const *headers, long *status,
    char **resp, char *err, size_t errlen);

/* The API's base URL: $PIZZA_HTTP_URL, or http://127.0.0.1:$PIZZA_HTTP_PORT (8080). Static buffer. */
const char *http_base_url(void);

#endif

/*
 * curlbuf.h - a libcurl write callback that collects a response body into a
 * growing NUL-terminated string, refusing bodies past a limit.
 */
#ifndef PIZZA_CURLBUF_H
#define PIZZA_CURLBUF_H

#include <stddef.h>

struct curlbuf {
	char *p;    /* NUL-terminated once anything arrived; the caller frees */
	size_t len;
	size_t max; /* larger bodies fail the transfer (CURLE_WRITE_ERROR) */
};

/* For CURLOPT_WRITEFUNCTION, with the struct curlbuf as CURLOPT_WRITEDATA. */
size_t curlbuf_sink(char *data, size_t size, size_t n, void *arg);

#endif

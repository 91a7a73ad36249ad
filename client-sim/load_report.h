/*
 * load_report.h - latency statistics and the latency chart of phone-sim load.
 */
#ifndef PIZZA_LOAD_REPORT_H
#define PIZZA_LOAD_REPORT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

struct latency {
	size_t n;
	double p50, p90, p99, p999, max, mean; /* milliseconds */
};

/* Sorts us (microseconds) in place and fills l; all zero when n is 0. */
void latency_of(int64_t *us, size_t n, struct latency *l);

/* {"n":..,"p50":..,...} in milliseconds. */
json_t *latency_json(const struct latency *l);

/*
 * Writes an SVG chart of the latency distribution: the share of orders
 * alerted within x ms (a CDF), with p50/p99/p99.9 marked.  sorted_us must
 * be sorted.  Returns 0, or -1 with errno set.
 */
int latency_svg(const char *path, const char *title, const int64_t *sorted_us, size_t n, const struct latency *l);

#endif

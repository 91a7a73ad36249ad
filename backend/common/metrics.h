/*
 * metrics.h - Prometheus metrics, text exposition format.
 *
 * Metrics are created once at start (names follow Prometheus conventions:
 * pizza_<what>_total for counters, base units such as _seconds) and
 * updated from any thread without locks (atomics).  metrics_render()
 * writes every registered metric for GET /metrics.
 */
#ifndef PIZZA_METRICS_H
#define PIZZA_METRICS_H

#include <stddef.h>

struct metric;

/*
 * Registers a metric.  labels is a fixed label set in exposition syntax
 * ("topic=\"pizza/orders/placed\"") or NULL; metrics sharing a name share
 * HELP and TYPE.  Returns NULL only out of memory (updates then do nothing).
 */
struct metric *metric_counter(const char *name, const char *help, const char *labels);
struct metric *metric_gauge(const char *name, const char *help, const char *labels);
/* A counter whose value fn(arg) reads at render time (from a count kept elsewhere). */
struct metric *metric_counter_fn(const char *name, const char *help, const char *labels, double (*fn)(void *), void *arg);
/* A gauge whose value fn(arg) computes at render time. */
struct metric *metric_gauge_fn(const char *name, const char *help, const char *labels, double (*fn)(void *), void *arg);
/* A histogram with the given upper bounds (ascending; +Inf is implied). */
struct metric *metric_histogram(const char *name, const char *help, const char *labels, const double *bounds, int n);

void metric_inc(struct metric *m);
void metric_add(struct metric *m, double v);
void metric_set(struct metric *m, double v);
void metric_observe(struct metric *m, double v);

/* Default buckets for durations in seconds, from 1 ms to 2 min. */
extern const double metric_seconds_buckets[];
extern const int metric_seconds_nbuckets;

/*
 * Registers the conventional metrics of a process, read from /proc/self
 * when rendered: process_cpu_seconds_total, process_resident_memory_bytes,
 * process_virtual_memory_bytes, process_open_fds, process_max_fds,
 * process_start_time_seconds (NaN when /proc cannot tell); and
 * pizza_build_info{service,version}, always 1.  Call once per process.
 */
void metrics_process(const char *service, const char *version);

/* The exposition text of every metric, in a new string the caller frees (NULL out of memory). */
char *metrics_render(void);

#endif

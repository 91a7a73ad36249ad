#include "metrics.h"

#include <dirent.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define METRIC_MAX_BUCKETS 24

enum metric_kind { KIND_COUNTER, KIND_GAUGE, KIND_HISTOGRAM };

struct metric {
	struct metric *next;
	enum metric_kind kind;
	char *name, *help, *labels;
	/* counters and gauges: value in micro-units so atomics suffice */
	_Atomic int64_t value;
	double (*fn)(void *);
	void *arg;
	/* histograms */
	int nbounds;
	double bounds[METRIC_MAX_BUCKETS];
	_Atomic uint64_t counts[METRIC_MAX_BUCKETS + 1];
	_Atomic int64_t sum; /* micro-units */
};

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct metric *registry, **registry_tail = &registry;

const double metric_seconds_buckets[] = { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
	60, 120 };
const int metric_seconds_nbuckets = sizeof(metric_seconds_buckets) / sizeof(metric_seconds_buckets[0]);

static struct metric *
add(enum metric_kind kind, const char *name, const char *help, const char *labels)
{
	struct metric *m = calloc(1, sizeof(*m));

	if (m == NULL)
		return NULL;
	m->kind = kind;
	m->name = strdup(name);
	m->help = strdup(help);
	m->labels = labels != NULL ? strdup(labels) : NULL;
	pthread_mutex_lock(&registry_lock);
	*registry_tail = m;
	registry_tail = &m->next;
	pthread_mutex_unlock(&registry_lock);
	return m;
}

struct metric *
metric_counter(const char *name, const char *help, const char *labels)
{
	return add(KIND_COUNTER, name, help, labels);
}

struct metric *
metric_gauge(const char *name, const char *help, const char *labels)
{
	return add(KIND_GAUGE, name, help, labels);
}

struct metric *
metric_counter_fn(const char *name, const char *help, const char *labels, double (*fn)(void *), void *arg)
{
	struct metric *m = add(KIND_COUNTER, name, help, labels);

	if (m != NULL) {
		m->fn = fn;
		m->arg = arg;
	}
	return m;
}

struct metric *
metric_gauge_fn(const char *name, const char *help, const char *labels, double (*fn)(void *), void *arg)
{
	struct metric *m = add(KIND_GAUGE, name, help, labels);

	if (m != NULL) {
		m->fn = fn;
		m->arg = arg;
	}
	return m;
}

struct metric *
metric_histogram(const char *name, const char *help, const char *labels, const double *bounds, int n)
{
	struct metric *m = add(KIND_HISTOGRAM, name, help, labels);

	if (m != NULL) {
		m->nbounds = n < METRIC_MAX_BUCKETS ? n : METRIC_MAX_BUCKETS;
		memcpy(m->bounds, bounds, (size_t)m->nbounds * sizeof(double));
	}
	return m;
}

void
metric_inc(struct metric *m)
{
	metric_add(m, 1);
}

void
metric_add(struct metric *m, double v)
{
	if (m != NULL)
		atomic_fetch_add(&m->value, (int64_t)(v * 1e6));
}

void
metric_set(struct metric *m, double v)
{
	if (m != NULL)
		atomic_store(&m->value, (int64_t)(v * 1e6));
}

void
metric_observe(struct metric *m, double v)
{
	int i;

	if (m == NULL)
		return;
	for (i = 0; i < m->nbounds && v > m->bounds[i]; i++)
		;
	atomic_fetch_add(&m->counts[i], 1);
	atomic_fetch_add(&m->sum, (int64_t)(v * 1e6));
}

struct sbuf {
	char *p;
	size_t len, cap;
	int oom;
};

static void
put(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
put(struct sbuf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	for (;;) {
		size_t room = b->cap - b->len;
		va_start(ap, fmt);
		n = vsnprintf(b->p != NULL ? b->p + b->len : NULL, b->p != NULL ? room : 0, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->oom = 1;
			return;
		}
		if (b->p != NULL && (size_t)n < room) {
			b->len += (size_t)n;
			return;
		}
		{
			size_t cap = b->cap ? b->cap * 2 : 4096;
			char *np;
			while (cap < b->len + (size_t)n + 1)
				cap *= 2;
			if ((np = realloc(b->p, cap)) == NULL) {
				b->oom = 1;
				return;
			}
			b->p = np;
			b->cap = cap;
		}
	}
}

/*
 * Prints a number the way Prometheus reads it: whole numbers as integers,
 * others with 15 significant digits (a start time in seconds keeps its
 * hundredths), NaN and infinities by their names.
 */
static void
put_num(struct sbuf *b, double v)
{
	if (isnan(v))
		put(b, "NaN");
	else if (isinf(v))
		put(b, v > 0 ? "+Inf" : "-Inf");
	else if (fabs(v) < 9e15 && v == (double)(int64_t)v)
		put(b, "%lld", (long long)v);
	else
		put(b, "%.15g", v);
}

static void
put_series(struct sbuf *b, const char *name, const char *suffix, const char *labels, const char *extra, double v)
{
	int any = (labels != NULL && labels[0] != '\0') || extra != NULL;

	put(b, "%s%s", name, suffix);
	if (any)
		put(b, "{%s%s%s}", labels != NULL ? labels : "", labels != NULL && labels[0] != '\0' && extra != NULL ? "," : "",
		    extra != NULL ? extra : "");
	put(b, " ");
	put_num(b, v);
	put(b, "\n");
}

/* The series of one metric (a histogram's buckets, sum and count). */
static void
put_metric(struct sbuf *b, struct metric *m)
{
	if (m->kind == KIND_HISTOGRAM) {
		uint64_t cum = 0;
		char le[48];
		for (int i = 0; i <= m->nbounds; i++) {
			cum += atomic_load(&m->counts[i]);
			if (i < m->nbounds)
				snprintf(le, sizeof(le), "le=\"%g\"", m->bounds[i]);
			else
				snprintf(le, sizeof(le), "le=\"+Inf\"");
			put_series(b, m->name, "_bucket", m->labels, le, (double)cum);
		}
		put_series(b, m->name, "_sum", m->labels, NULL, (double)atomic_load(&m->sum) / 1e6);
		put_series(b, m->name, "_count", m->labels, NULL, (double)cum);
	} else {
		double v = m->fn != NULL ? m->fn(m->arg) : (double)atomic_load(&m->value) / 1e6;
		put_series(b, m->name, "", m->labels, NULL, v);
	}
}

/*
 * The text format wants each family (every series of one name) as one
 * group after its HELP and TYPE: a family is printed whole where its first
 * series was registered, whatever order the rest were registered in.
 */
char *
metrics_render(void)
{
	struct sbuf b = { NULL, 0, 0, 0 };

	put(&b, "%s", "");
	pthread_mutex_lock(&registry_lock);
	for (struct metric *m = registry; m != NULL; m = m->next) {
		int first = 1;

		for (struct metric *e = registry; e != m && first; e = e->next)
			if (strcmp(e->name, m->name) == 0)
				first = 0;
		if (!first)
			continue; /* printed with its family */
		put(&b, "# HELP %s %s\n# TYPE %s %s\n", m->name, m->help, m->name,
		    m->kind == KIND_COUNTER ? "counter" : m->kind == KIND_GAUGE ? "gauge" : "histogram");
		for (struct metric *e = m; e != NULL; e = e->next)
			if (strcmp(e->name, m->name) == 0)
				put_metric(&b, e);
	}
	pthread_mutex_unlock(&registry_lock);
	if (b.oom) {
		free(b.p);
		return NULL;
	}
	return b.p;
}

/* ---- the process's own metrics, from /proc/self ------------------------------------ */

/*
 * The numbers of /proc/self/stat after the command name (which may hold
 * spaces and parentheses): out[0] is field 3 (state is skipped, so 0),
 * out[i] field i + 3.  Returns how many were read, 0 when the file cannot be.
 */
static int
proc_stat(unsigned long long *out, int n)
{
	char buf[1024], *p;
	size_t len;
	FILE *f = fopen("/proc/self/stat", "re");
	int i = 0;

	if (f == NULL)
		return 0;
	len = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[len] = '\0';
	if ((p = strrchr(buf, ')')) == NULL)
		return 0;
	p += 2; /* ") " */
	for (; i < n && *p != '\0'; i++) {
		char *end;
		out[i] = strtoull(p, &end, 10);
		if (end == p) /* the state letter */
			end = p + 1;
		p = end + strspn(end, " ");
	}
	return i;
}

/* Fields of /proc/self/stat (proc(5)), as indexes into proc_stat()'s out. */
enum { STAT_UTIME = 14 - 3, STAT_STIME = 15 - 3, STAT_STARTTIME = 22 - 3, STAT_VSIZE = 23 - 3, STAT_RSS = 24 - 3, STAT_N };

static double
proc_field(int field)
{
	unsigned long long v[STAT_N];

	return proc_stat(v, STAT_N) == STAT_N ? (double)v[field] : NAN;
}

static double
process_cpu(void *arg)
{
	(void)arg;
	return (proc_field(STAT_UTIME) + proc_field(STAT_STIME)) / (double)sysconf(_SC_CLK_TCK);
}

static double
process_rss(void *arg)
{
	(void)arg;
	return proc_field(STAT_RSS) * (double)sysconf(_SC_PAGESIZE);
}

static double
process_vsize(void *arg)
{
	(void)arg;
	return proc_field(STAT_VSIZE);
}

static double
process_open_fds(void *arg)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	(void)arg;
	if (d == NULL)
		return NAN;
	while ((e = readdir(d)) != NULL)
		n += e->d_name[0] != '.';
	closedir(d);
	return n - 1; /* not the one reading the folder */
}

static double
process_max_fds(void *arg)
{
	struct rlimit rl;

	(void)arg;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return NAN;
	return rl.rlim_cur == RLIM_INFINITY ? INFINITY : (double)rl.rlim_cur;
}

/* When the process started (set by metrics_process(): it never changes). */
static double start_time;

static double
process_start(void *arg)
{
	(void)arg;
	return start_time;
}

/* The boot time of /proc/stat plus the process's start in clock ticks after it; NaN when unknown. */
static double
read_start_time(void)
{
	char line[256];
	FILE *f;
	double btime = NAN;

	if ((f = fopen("/proc/stat", "re")) == NULL)
		return NAN;
	while (fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, "btime ", 6) == 0)
			btime = strtod(line + 6, NULL);
	fclose(f);
	return btime + proc_field(STAT_STARTTIME) / (double)sysconf(_SC_CLK_TCK);
}

static double
one(void *arg)
{
	(void)arg;
	return 1;
}

/* Copies s into buf as a label value: backslash, double quote and newline escaped.  Truncates to fit. */
static const char *
label_value(char *buf, size_t n, const char *s)
{
	size_t j = 0;

	for (; *s != '\0' && j + 3 < n; s++) {
		if (*s == '\\' || *s == '"' || *s == '\n')
			buf[j++] = '\\';
		buf[j++] = *s == '\n' ? 'n' : *s;
	}
	buf[j] = '\0';
	return buf;
}

void
metrics_process(const char *service, const char *version)
{
	char labels[256], s[96], v[96];

	start_time = read_start_time();
	metric_counter_fn("process_cpu_seconds_total", "User and system CPU time this process has used, in seconds", NULL,
	    process_cpu, NULL);
	metric_gauge_fn("process_resident_memory_bytes", "Resident memory size in bytes", NULL, process_rss, NULL);
	metric_gauge_fn("process_virtual_memory_bytes", "Virtual memory size in bytes", NULL, process_vsize, NULL);
	metric_gauge_fn("process_open_fds", "Open file descriptors", NULL, process_open_fds, NULL);
	metric_gauge_fn("process_max_fds", "The most file descriptors this process may open (its soft limit)", NULL,
	    process_max_fds, NULL);
	metric_gauge_fn("process_start_time_seconds", "When this process started, in seconds since the Unix epoch", NULL,
	    process_start, NULL);
	snprintf(labels, sizeof(labels), "service=\"%s\",version=\"%s\"", label_value(s, sizeof(s), service),
	    label_value(v, sizeof(v), version));
	metric_gauge_fn("pizza_build_info", "Always 1; its labels say which service and version this is", labels, one, NULL);
}

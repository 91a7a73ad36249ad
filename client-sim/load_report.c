/*
 * load_report.c - percentiles and a hand-written SVG chart (no plotting
 * library: a CDF is a polyline).
 */
#include "load_report.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int
cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

/* Nearest-rank percentile of a sorted array, in ms. */
static double
rank_ms(const int64_t *s, size_t n, double q)
{
	size_t k = (size_t)ceil(q * (double)n);

	if (k == 0)
		k = 1;
	return (double)s[k - 1] / 1000.0;
}

void
latency_of(int64_t *us, size_t n, struct latency *l)
{
	double sum = 0;

	memset(l, 0, sizeof(*l));
	if (n == 0)
		return;
	qsort(us, n, sizeof(*us), cmp_i64);
	for (size_t i = 0; i < n; i++)
		sum += (double)us[i];
	l->n = n;
	l->p50 = rank_ms(us, n, 0.50);
	l->p90 = rank_ms(us, n, 0.90);
	l->p99 = rank_ms(us, n, 0.99);
	l->p999 = rank_ms(us, n, 0.999);
	l->max = (double)us[n - 1] / 1000.0;
	l->mean = sum / (double)n / 1000.0;
}

static double
round3(double v)
{
	return round(v * 1000.0) / 1000.0;
}

json_t *
latency_json(const struct latency *l)
{
	return json_pack("{s:I, s:f, s:f, s:f, s:f, s:f, s:f}", "n", (json_int_t)l->n, "p50", round3(l->p50), "p90",
	    round3(l->p90), "p99", round3(l->p99), "p999", round3(l->p999), "max", round3(l->max), "mean",
	    round3(l->mean));
}

/* A "nice" axis end at or above v: 1, 2, 2.5, 5 times a power of ten. */
static double
nice_ceil(double v)
{
	double p, m;

	if (v <= 0)
		return 1;
	p = pow(10, floor(log10(v)));
	m = v / p;
	return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 2.5 ? 2.5 : m <= 5 ? 5 : 10) * p;
}

int
latency_svg(const char *path, const char *title, const int64_t *s, size_t n, const struct latency *l)
{
	const double W = 720, H = 420, L = 70, R = 30, T = 50, B = 60;
	const double pw = W - L - R, ph = H - T - B;
	/* the x axis ends past p99.9 so the body of the curve is readable; the max is written out */
	double xmax = nice_ceil(n > 0 ? l->p999 * 1.15 : 1);
	const struct {
		const char *name;
		double v, q;
	} marks[] = { { "p50", l->p50, 0.50 }, { "p99", l->p99, 0.99 }, { "p99.9", l->p999, 0.999 } };
	FILE *f = fopen(path, "w");

	if (f == NULL)
		return -1;
	fprintf(f,
	    "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" "
	    "font-family=\"sans-serif\" font-size=\"12\">\n"
	    "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
	    "<text x=\"%.0f\" y=\"22\" font-size=\"15\" font-weight=\"bold\">%s</text>\n"
	    "<text x=\"%.0f\" y=\"40\" fill=\"#555\">accepted to pickup alert, %zu orders; max %.1f ms</text>\n",
	    W, H, W, H, L, title, L, n, l->max);
	/* grid and axes */
	for (int i = 0; i <= 10; i++) {
		double y = T + ph - ph * i / 10.0, x = L + pw * i / 10.0;
		fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#eee\"/>\n", L, y, L + pw, y);
		fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#eee\"/>\n", x, T, x, T + ph);
		if (i % 2 == 0) {
			fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%d%%</text>\n", L - 6, y + 4, i * 10);
			fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%g</text>\n", x, T + ph + 18,
			    xmax * i / 10.0);
		}
	}
	fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"#333\"/>\n", L, T,
	    pw, ph);
	fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">latency (ms)</text>\n", L + pw / 2, H - 18);
	fprintf(f,
	    "<text transform=\"translate(18,%.1f) rotate(-90)\" text-anchor=\"middle\">orders alerted within</text>\n",
	    T + ph / 2);
	/* the CDF, one point per pixel column at most */
	if (n > 0) {
		fprintf(f, "<polyline fill=\"none\" stroke=\"#c0392b\" stroke-width=\"2\" points=\"%.1f,%.1f", L, T + ph);
		size_t i = 0;
		for (int px = 0; px <= (int)pw; px++) {
			double x_ms = xmax * px / pw;
			while (i < n && (double)s[i] / 1000.0 <= x_ms)
				i++;
			fprintf(f, " %.1f,%.1f", L + px, T + ph - ph * (double)i / (double)n);
		}
		fprintf(f, "\"/>\n");
	}
	for (size_t k = 0; k < sizeof(marks) / sizeof(marks[0]); k++) {
		double x = L + pw * fmin(marks[k].v / xmax, 1.0), y = T + ph - ph * marks[k].q;
		fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"#2c3e50\"/>\n", x, y);
		fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" fill=\"#2c3e50\">%s %.1f ms</text>\n", x + 6, y + 14 + 12 * (double)k,
		    marks[k].name, marks[k].v);
	}
	fprintf(f, "</svg>\n");
	if (fclose(f) != 0)
		return -1;
	return 0;
}

#include "curlbuf.h"

#include <stdlib.h>
#include <string.h>

size_t
curlbuf_sink(char *data, size_t size, size_t n, void *arg)
{
	struct curlbuf *b = arg;
	size_t add = size * n;
	char *np;

	if (b->len + add > b->max || (np = realloc(b->p, b->len + add + 1)) == NULL)
		return 0;
	memcpy(np + b->len, data, add);
	b->p = np;
	b->len += add;
	b->p[b->len] = '\0';
	return add;
}

/*
 * idset.h - a bounded set of ids (up to NAME_MAX_LEN characters) that
 * forgets the oldest when full: what consumers use to drop redeliveries.
 * Not thread-safe: the owner serialises access.
 */
#ifndef PIZZA_IDSET_H
#define PIZZA_IDSET_H

#include <stddef.h>

struct idset;

/* A set remembering at most cap ids. NULL out of memory. */
struct idset *idset_new(size_t cap);
void idset_free(struct idset *s);

/* Adds id. Returns 1 if it was new, 0 if already present (nothing changes), -1 if id is too long. */
int idset_add(struct idset *s, const char *id);
/* 1 if present, else 0. */
int idset_has(const struct idset *s, const char *id);
size_t idset_size(const struct idset *s);

#endif

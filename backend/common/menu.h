/*
 * menu.h - the menu: the one table of what can be ordered.  Validation of
 * every order (MQTT or HTTP) and any menu listing read it from here.
 */
#ifndef PIZZA_MENU_H
#define PIZZA_MENU_H

#include <stddef.h>

struct menu_item {
	const char *sku;
	const char *name;
	int price_cents;
};

/* Returns the item with this sku, or NULL if the menu has none. */
const struct menu_item *menu_find(const char *sku);
/* Returns the whole menu and stores its length in *n. */
const struct menu_item *menu_all(size_t *n);

#endif

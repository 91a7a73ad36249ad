#include "menu.h"

#include <string.h>

static const struct menu_item menu[] = {
	{ "margherita", "Margherita", 850 },
	{ "marinara", "Marinara", 750 },
	{ "funghi", "Funghi", 950 },
	{ "pepperoni", "Pepperoni", 1050 },
	{ "quattro-formaggi", "Quattro Formaggi", 1150 },
	{ "diavola", "Diavola", 1100 },
	{ "capricciosa", "Capricciosa", 1200 },
	{ "hawaii", "Hawaii", 1000 },
};

const struct menu_item *
menu_find(const char *sku)
{
	for (size_t i = 0; i < sizeof(menu) / sizeof(menu[0]); i++)
		if (strcmp(menu[i].sku, sku) == 0)
			return &menu[i];
	return NULL;
}

const struct menu_item *
menu_all(size_t *n)
{
	*n = sizeof(menu) / sizeof(menu[0]);
	return menu;
}

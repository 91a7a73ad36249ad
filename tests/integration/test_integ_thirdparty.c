/*
 * Clients the project did not write: a phone built on Eclipse paho-mqtt for
 * Python (Debian's python3-paho-mqtt), and a whole journey driven with only
 * curl, mosquitto_pub and mosquitto_sub (tests/thirdparty/journey.sh).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"

static struct stack st;

static int
setup(void **state)
{
	(void)state;
	if (h_stack_start(&st, "thirdparty") != 0 || h_observer(&st) != 0)
		return -1;
	if (h_service(&st, "order-service", "order-service", NULL) < 0 ||
	    h_service(&st, "order-history", "order-history", NULL) < 0 ||
	    h_service(&st, "notifier", "notifier", NULL) < 0 ||
	    h_service(&st, "exec-1", "order-executor", "--id", "exec-1", "--stage-ms", "30", NULL) < 0)
		return -1;
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	return h_stack_stop(&st);
}

/* Runs a script with the stack's ports and a user's credentials; output into *out. */
static int
run_script(const char *script, const char *user, char **out)
{
	char cmd[1400], path[600];
	const char *root = getenv("PIZZA_ROOT") != NULL ? getenv("PIZZA_ROOT") : ".";
	int rc;

	snprintf(path, sizeof(path), "%s/%s.out", st.dir, user);
	snprintf(cmd, sizeof(cmd),
	    "PIZZA_MQTT_PORT=%d PIZZA_HTTP_PORT=%d PIZZA_USER=%s PIZZA_PASSWORD='%s' PIZZA_OTHER_USER=bob "
	    "timeout 60 %s/%s > '%s' 2>&1",
	    st.port, st.http_port, user, h_password(&st, user), root, script, path);
	rc = system(cmd);
	*out = file_read_small(path, 1 << 20);
	if (*out == NULL)
		*out = strdup("");
	if (rc != 0)
		fprintf(stderr, "%s exited %d:\n%s\n", script, rc, *out);
	return rc;
}

static void
test_python_paho_phone(void **state)
{
	char *out = NULL, bobs[NAME_MAX_LEN + 1];

	(void)state;
	/* bob has an order whose retained status sits on the broker: alice's phone must not get it */
	assert_int_equal(h_place(&st, "bob", "diavola", 1, "bob-1"), 0);
	assert_int_equal(h_wait_reply(&st, "bob-1", bobs, sizeof(bobs), 5000), 0);
	assert_int_equal(h_wait_events(&st, bobs, EVENT_PICKUP_ALERT, 0, 1, 10000), 1);
	assert_int_equal(run_script("tests/thirdparty/phone.py", "alice", &out), 0);
	assert_null(strstr(out, bobs));
	/* its status topic carries the kitchen's stages (prep 2 .. ready 5); the answer was the accepted */
	assert_non_null(strstr(out, "seqs=[2, 3, 4, 5] alerts=1 foreign=0"));
	free(out);
}

static void
test_shell_journey(void **state)
{
	char *out = NULL;

	(void)state;
	assert_int_equal(run_script("tests/thirdparty/journey.sh", "carol", &out), 0);
	assert_non_null(strstr(out, "placed over HTTP: "));
	assert_non_null(strstr(out, "placed over MQTT: {\"order_id\":"));
	assert_null(strstr(out, "status: accepted")); /* the answer said it; the status topic starts at prep */
	assert_non_null(strstr(out, "status: prep"));
	assert_non_null(strstr(out, "status: ready"));
	assert_non_null(strstr(out, "pickup alert: Your order is ready for pickup: 1 x margherita."));
	assert_non_null(strstr(out, "timeline: ready"));
	free(out);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_python_paho_phone),
		cmocka_unit_test(test_shell_journey),
	};

	return cmocka_run_group_tests_name("thirdparty", tests, setup, teardown);
}

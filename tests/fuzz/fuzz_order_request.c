/*
 * fuzz_order_request.c - libFuzzer target for the order request path shared
 * by the MQTT and HTTP front doors (backend/order-service/intake.c).
 *
 * Every input is a request body as it arrives: parsed the way
 * intake_place_raw() parses it (payloads over EVENT_MAX_BYTES are refused
 * before parsing, as there), then validated for the authenticated user
 * "alice" with intake_validate().  Checks:
 *   - no crash, leak or undefined behaviour (ASan, UBSan);
 *   - an accepted request yields an OrderPlaced that encodes
 *     (event_encode() != NULL) and decodes back with its user and items;
 *   - a refused request is INTAKE_INVALID with an error code and a detail
 *     that is valid UTF-8 (it goes into JSON replies).
 * A broken property abort()s, which libFuzzer reports as a crash.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "event.h"
#include "order-service/intake.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct event ev, back;
	struct intake_result res;
	json_error_t jerr;
	json_t *req, *detail;
	char err[256], *out;

	if (size > EVENT_MAX_BYTES)
		return 0;
	if ((req = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &jerr)) == NULL)
		return 0;
	if (!json_is_object(req)) {
		json_decref(req);
		return 0;
	}
	memset(&res, 0, sizeof(res));
	if (intake_validate("alice", req, &ev, &res) == 0) {
		if ((out = event_encode(&ev)) == NULL) {
			fprintf(stderr, "fuzz_order_request: an accepted request gives an OrderPlaced that does not encode\n");
			abort();
		}
		if (event_decode(out, strlen(out), &back, err, sizeof(err)) != 0 || back.type != EVENT_ORDER_PLACED ||
		    strcmp(back.user_id, "alice") != 0 || back.n_items != ev.n_items ||
		    strcmp(back.callback_url, ev.callback_url) != 0) {
			fprintf(stderr, "fuzz_order_request: the OrderPlaced does not decode back: %s\n", out);
			abort();
		}
		free(out);
	} else {
		if (res.status != INTAKE_INVALID || res.error == NULL) {
			fprintf(stderr, "fuzz_order_request: refused without INTAKE_INVALID and an error code\n");
			abort();
		}
		if (memchr(res.detail, '\0', sizeof(res.detail)) == NULL) {
			fprintf(stderr, "fuzz_order_request: detail is not NUL-terminated\n");
			abort();
		}
		if ((detail = json_string(res.detail)) == NULL) {
			fprintf(stderr, "fuzz_order_request: detail is not valid UTF-8: '%s'\n", res.detail);
			abort();
		}
		json_decref(detail);
	}
	json_decref(req);
	return 0;
}

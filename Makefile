# Pizza notification backend - see README.md.
#
#   make            build every program into build/bin
#   make demo       start a private broker and the services, order a pizza, stop
#   make run        start the stack in the foreground (Ctrl-C stops it)
#   make watch      print every message on pizza/# (as admin) while make run runs
#   make test       unit tests, the API contracts, integration tests (cmocka), again
#                   under AddressSanitizer and UBSan (leak checks on), the fuzzers for
#                   a while, and make install into a scratch folder
#   make bench      measure the pipeline against the broker's own ceiling (docs/performance.md);
#                   make bench-quick is the same, smaller (make test runs it once)
#   make install    PREFIX=/usr/local DESTDIR=  binaries, man pages, units (install/README.md)
#   make deps       install the Debian packages the build and tests need
#   make SANITIZE=address,undefined BUILD=build-asan unit integration
#                   one suite under sanitizers

CC      ?= cc
SANITIZE ?=
BUILD   ?= build
PIZZA_MQTT_PORT ?= 1883
PIZZA_STAGE_MS  ?= 400
EXECUTORS ?= 2

WARN    := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wpointer-arith
CFLAGS  ?= -O2 -g
CFLAGS  += -std=c11 -D_GNU_SOURCE $(WARN) -Ibackend/common -MMD -MP
LDLIBS  := -lpaho-mqtt3as -ljansson -lsqlite3 -lmicrohttpd -lcurl -lcrypto -lpthread -lm
ifneq ($(SANITIZE),)
CFLAGS  += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
LDFLAGS += -fsanitize=$(SANITIZE)
else
# Hardening for the release build: bounds-checked libc calls, stack
# canaries, position-independent executables, read-only relocations.
CFLAGS  += -D_FORTIFY_SOURCE=2 -fstack-protector-strong -fPIE
LDFLAGS += -pie -Wl,-z,relro,-z,now
endif

# Debian packages: build, run time, tests.
DEB_PKGS := gcc make pkg-config libpaho-mqtt-dev libjansson-dev libsqlite3-dev libcmocka-dev \
            libmicrohttpd-dev libcurl4-openssl-dev libssl-dev \
            mosquitto mosquitto-clients openssl curl python3-paho-mqtt

COMMON_SRC := $(wildcard backend/common/*.c)
COMMON_OBJ := $(COMMON_SRC:%.c=$(BUILD)/%.o)
LIB        := $(BUILD)/libpizza.a

SERVICES := order-service order-executor order-history notifier
BINS     := $(SERVICES:%=$(BUILD)/bin/%) $(BUILD)/bin/phone-sim

UNIT_SRC   := $(wildcard tests/unit/test_*.c)
UNIT_BINS  := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
INTEG_SRC  := $(wildcard tests/integration/test_*.c)
INTEG_BINS := $(INTEG_SRC:tests/integration/%.c=$(BUILD)/tests/%)
HARNESS_OBJ := $(BUILD)/tests/integration/harness.o

.PHONY: all deps check-deps test test-sanitize unit integration run demo clean format certs watch
.DEFAULT_GOAL := all

all: check-deps $(BINS)

# ---- dependencies ---------------------------------------------------------
# $(call install_missing,PACKAGES): installs the Debian packages not installed
# yet when root, else prints the apt-get line and fails.
define install_missing
	@missing=""; \
	for p in $(1); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing missing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null || exit 1; \
	  else \
	    echo "missing Debian packages:$$missing"; \
	    echo "install them with:  sudo apt-get install -y$$missing"; exit 1; \
	  fi; \
	fi
endef

# $(call need_node,TARGET,WHY): Node.js and npm for TARGET (the contract
# validator, the storefront bundle, the browser test): installed from Debian
# when root, else a clear message naming WHY and the apt-get line.
define need_node
	@if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "$(1): installing Node.js and npm (Debian packages)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null || exit 1; \
	  else \
	    echo "$(1): $(2), which are not installed."; \
	    echo "install them with:  sudo apt-get install -y nodejs npm"; \
	    exit 1; \
	  fi; \
	fi
endef

check-deps:
	$(call install_missing,$(DEB_PKGS))

deps:
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(DEB_PKGS)

# ---- build ----------------------------------------------------------------
$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(LIB): $(COMMON_OBJ)
	@mkdir -p $(dir $@)
	$(AR) rcs $@ $^

define service_rule
$(BUILD)/bin/$(1): $(patsubst %.c,$(BUILD)/%.o,$(wildcard backend/$(1)/*.c)) $(LIB)
	@mkdir -p $$(dir $$@)
	$$(CC) $$(LDFLAGS) -o $$@ $$^ $$(LDLIBS)
endef
$(foreach s,$(SERVICES),$(eval $(call service_rule,$(s))))

$(BUILD)/bin/phone-sim: $(patsubst %.c,$(BUILD)/%.o,$(wildcard client-sim/*.c)) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# ---- tests ----------------------------------------------------------------
# Unit tests link the module under test from the library or a service's
# object files; anything a unit must not reach is wrapped with --wrap.
# Secondary expansion must be on before the rules that use $$(...) prerequisites.
.SECONDEXPANSION:
UNIT_EXTRA_test_history_store := $(BUILD)/backend/order-history/store.o
UNIT_EXTRA_test_stages := $(BUILD)/backend/order-executor/stages.o
UNIT_EXTRA_test_delivery := $(BUILD)/backend/notifier/delivery.o $(BUILD)/backend/notifier/store.o
UNIT_EXTRA_test_notifier_store := $(BUILD)/backend/notifier/store.o
UNIT_EXTRA_test_intake := $(BUILD)/backend/order-service/intake.o
UNIT_EXTRA_test_load_report := $(BUILD)/client-sim/load_report.o
# Per-test link flags: the outbox test replaces the MQTT side (tests/unit/test_outbox.c).
UNIT_LDFLAGS_test_outbox := -Wl,--wrap=mq_publish,--wrap=mq_window_free

$(BUILD)/tests/test_%: tests/unit/test_%.c $(LIB) $$(UNIT_EXTRA_test_%)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) $(UNIT_LDFLAGS_test_$*) -Ibackend -o $@ $< $(UNIT_EXTRA_test_$*) $(LIB) $(LDLIBS) -lcmocka

$(BUILD)/tests/test_integ_%: tests/integration/test_integ_%.c $(HARNESS_OBJ) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -Itests/integration -o $@ $< $(HARNESS_OBJ) $(LIB) $(LDLIBS) -lcmocka

$(HARNESS_OBJ): tests/integration/harness.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

unit: check-deps $(UNIT_BINS)
	@rc=0; for t in $(UNIT_BINS); do $$t || rc=1; done; exit $$rc

integration: check-deps contract-deps web-deps browser-deps $(BINS) $(INTEG_BINS)
	@rc=0; for t in $(INTEG_BINS); do PIZZA_BIN=$(CURDIR)/$(BUILD)/bin PIZZA_ROOT=$(CURDIR) $$t || rc=1; done; exit $$rc

# Sanitizer findings in a service land in its log; the harness fails the
# test when one appears (tests/integration/harness.c).
export ASAN_OPTIONS := detect_leaks=1:abort_on_error=1:strict_string_checks=1:suppressions=$(CURDIR)/tests/sanitizers/asan.supp
export UBSAN_OPTIONS := print_stacktrace=1:halt_on_error=1
export LSAN_OPTIONS := suppressions=$(CURDIR)/tests/sanitizers/lsan.supp:print_suppressions=0

test-sanitize:
	@$(MAKE) --no-print-directory SANITIZE=address,undefined BUILD=build-asan unit integration

# The fuzzers replay their corpus and regression inputs, then fuzz each
# target for FUZZ_SECONDS (10; 60 when CI=true).  See tests/fuzz/README.md.
test: unit contract-docs integration test-sanitize fuzz-replay fuzz test-install bench-quick

# ---- running --------------------------------------------------------------
# PIZZA_PORT_AUTO: when the port was not chosen by the user and 1883 is
# taken (a system mosquitto, say), the stack picks a free one and says so.
PORT_AUTO := $(if $(filter file,$(origin PIZZA_MQTT_PORT)),1,0)
PIZZA_HTTP_PORT ?= 8080
HTTP_PORT_AUTO := $(if $(filter file,$(origin PIZZA_HTTP_PORT)),1,0)
PIZZA_MQTT_WS_PORT ?= 9001
WS_PORT_AUTO := $(if $(filter file,$(origin PIZZA_MQTT_WS_PORT)),1,0)

run: all web-deps
	@PIZZA_MQTT_WS_PORT=$(PIZZA_MQTT_WS_PORT) PIZZA_MQTT_WS_PORT_AUTO=$(WS_PORT_AUTO) \
	  PIZZA_PORT_AUTO=$(PORT_AUTO) PIZZA_HTTP_PORT_AUTO=$(HTTP_PORT_AUTO) PIZZA_HTTP_PORT=$(PIZZA_HTTP_PORT) PIZZA_MQTT_PORT=$(PIZZA_MQTT_PORT) PIZZA_STAGE_MS=$(PIZZA_STAGE_MS) EXECUTORS=$(EXECUTORS) \
	  BUILD=$(BUILD) ./broker-config/stack run

demo: all web-deps
	@PIZZA_MQTT_WS_PORT=$(PIZZA_MQTT_WS_PORT) PIZZA_MQTT_WS_PORT_AUTO=$(WS_PORT_AUTO) \
	  PIZZA_PORT_AUTO=$(PORT_AUTO) PIZZA_HTTP_PORT_AUTO=$(HTTP_PORT_AUTO) PIZZA_HTTP_PORT=$(PIZZA_HTTP_PORT) PIZZA_MQTT_PORT=$(PIZZA_MQTT_PORT) PIZZA_STAGE_MS=$(PIZZA_STAGE_MS) EXECUTORS=$(EXECUTORS) \
	  BUILD=$(BUILD) ./broker-config/stack demo

# Every message on pizza/# live, as the read-only admin account of make run's broker.
watch:
	@test -s $(or $(PIZZA_RUN_DIR),run)/secrets/admin.pass || { echo "no run folder yet: start 'make run' first"; exit 1; }
	@echo "watching pizza/# on 127.0.0.1:$(PIZZA_MQTT_PORT) as admin (Ctrl-C stops)"
	@mosquitto_sub -h 127.0.0.1 -p $(PIZZA_MQTT_PORT) -u admin -P "$$(cat $(or $(PIZZA_RUN_DIR),run)/secrets/admin.pass)" \
	  -V mqttv5 -t 'pizza/#' -v -F '%I %t %p'

# A local CA and certificates for the TLS listener (make run makes them too).
certs:
	@./broker-config/make-certs $(or $(PIZZA_RUN_DIR),run)/certs

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) build-asan

include tests/fuzz/fuzz.mk
include tests/contract/contract.mk
include web/web.mk
include tests/browser/browser.mk
include install/pizza.mk
include tests/bench/bench.mk
-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

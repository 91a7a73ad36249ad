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
#   make check-deps check them (installing what is missing when root); every
#                   compilation waits for it, also under -j
#   make SANITIZE=address,undefined BUILD=build-asan unit integration
#                   one suite under sanitizers

CC      ?= cc
SANITIZE ?=
BUILD   ?= build
PIZZA_MQTT_PORT ?= 1883
PIZZA_STAGE_MS  ?= 400
EXECUTORS ?= 2

# Libraries: pkg-config's module, the Debian package that provides it.
# paho-mqtt3as has no .pc file in Debian 12: its header and library are
# looked for directly, and it is linked with -l.
PC_MODULES := jansson sqlite3 libmicrohttpd libcurl libcrypto cmocka libpq
PC_DEB_jansson       := libjansson-dev
PC_DEB_sqlite3       := libsqlite3-dev
PC_DEB_libmicrohttpd := libmicrohttpd-dev
PC_DEB_libcurl       := libcurl4-openssl-dev
PC_DEB_libcrypto     := libssl-dev
PC_DEB_cmocka        := libcmocka-dev
PC_DEB_libpq         := libpq-dev
PC_LIB_MODULES := $(filter-out cmocka libpq,$(PC_MODULES))
PC_LIB_FALLBACK := -ljansson -lsqlite3 -lmicrohttpd -lcurl -lcrypto

# Asked of pkg-config once, when a compilation first needs them (after
# check-deps may have installed the packages, not when the Makefile is
# read); if pkg-config cannot answer, the plain -l names.
PKG_CFLAGS  = $(eval PKG_CFLAGS := $$(shell pkg-config --cflags $(PC_LIB_MODULES) 2>/dev/null))$(PKG_CFLAGS)
PKG_LIBS    = $(eval PKG_LIBS := $$(or $$(shell pkg-config --libs $(PC_LIB_MODULES) 2>/dev/null),$(PC_LIB_FALLBACK)))$(PKG_LIBS)
CMOCKA_LIBS = $(eval CMOCKA_LIBS := $$(or $$(shell pkg-config --libs cmocka 2>/dev/null),-lcmocka))$(CMOCKA_LIBS)
# libpq only where it is used: order-history's PostgreSQL store (store_pg.c).
PQ_CFLAGS   = $(eval PQ_CFLAGS := $$(shell pkg-config --cflags libpq 2>/dev/null))$(PQ_CFLAGS)
PQ_LIBS     = $(eval PQ_LIBS := $$(or $$(shell pkg-config --libs libpq 2>/dev/null),-lpq))$(PQ_LIBS)

WARN    := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wpointer-arith
CFLAGS  ?= -O2 -g
CFLAGS  += -std=c11 -D_GNU_SOURCE $(WARN) -Ibackend/common -MMD -MP $(PKG_CFLAGS)
LDLIBS   = -lpaho-mqtt3as $(PKG_LIBS) -lpthread -lm
ifneq ($(SANITIZE),)
CFLAGS  += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
LDFLAGS += -fsanitize=$(SANITIZE)
else
# Hardening for the release build: bounds-checked libc calls, stack
# canaries, position-independent executables, read-only relocations.
CFLAGS  += -D_FORTIFY_SOURCE=2 -fstack-protector-strong -fPIE
LDFLAGS += -pie -Wl,-z,relro,-z,now
endif

# Debian packages: build, run time, tests.  The /metrics check wants the
# reference parser (python3-prometheus-client) and promtool, which Debian
# ships in prometheus: installing it enables a Prometheus server, so when
# check-deps installs it on a machine run by systemd it stops and disables
# that server again (nothing here uses it); without recommends, as CI
# installs, so no node exporter comes along either.
DEB_PKGS := gcc make pkg-config libpaho-mqtt-dev libjansson-dev libsqlite3-dev libcmocka-dev \
            libmicrohttpd-dev libcurl4-openssl-dev libssl-dev libpq-dev \
            mosquitto mosquitto-clients openssl curl python3-paho-mqtt postgresql \
            python3-prometheus-client prometheus

COMMON_SRC := $(wildcard backend/common/*.c)
COMMON_OBJ := $(COMMON_SRC:%.c=$(BUILD)/%.o)
LIB        := $(BUILD)/libpizza.a

SERVICES := order-service order-executor order-history notifier
BINS     := $(SERVICES:%=$(BUILD)/bin/%) $(BUILD)/bin/phone-sim $(BUILD)/bin/pizza-admin

UNIT_SRC   := $(wildcard tests/unit/test_*.c)
UNIT_BINS  := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
INTEG_SRC  := $(wildcard tests/integration/test_*.c)
INTEG_BINS := $(INTEG_SRC:tests/integration/%.c=$(BUILD)/tests/%)
HARNESS_OBJ := $(BUILD)/tests/integration/harness.o

.PHONY: all deps check-deps test test-sanitize unit integration run demo clean format certs watch
.DEFAULT_GOAL := all

all: check-deps $(BINS)

# ---- dependencies ---------------------------------------------------------
# Under -j two installs may run at once (check-deps and Node.js, say): apt
# then waits for the other's lock instead of failing at once.
APT_WAIT := -o DPkg::Lock::Timeout=600

# $(call install_missing,PACKAGES): installs the Debian packages not installed
# yet when root, else prints the apt-get line and fails.
define install_missing
	@missing=""; \
	for p in $(1); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing missing Debian packages:$$missing"; \
	    apt-get $(APT_WAIT) update -qq && DEBIAN_FRONTEND=noninteractive apt-get $(APT_WAIT) install -y -qq $$missing >/dev/null || exit 1; \
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
	    apt-get $(APT_WAIT) update -qq && DEBIAN_FRONTEND=noninteractive apt-get $(APT_WAIT) install -y -qq nodejs npm >/dev/null || exit 1; \
	  else \
	    echo "$(1): $(2), which are not installed."; \
	    echo "install them with:  sudo apt-get install -y nodejs npm"; \
	    exit 1; \
	  fi; \
	fi
endef

# A shell command printing one line per library pkg-config (or, for paho,
# the compiler) cannot find, naming its Debian package; false if one is missing.
PC_PAIRS := $(foreach m,$(PC_MODULES),$(m):$(PC_DEB_$(m)))
LIBS_CHECK = { \
	ok=1; \
	if ! command -v pkg-config >/dev/null 2>&1; then \
	  echo "missing tool pkg-config: install the Debian package pkg-config"; ok=; \
	else \
	  for p in $(PC_PAIRS); do \
	    pkg-config --exists $${p%%:*} || { echo "missing library $${p%%:*}: install the Debian package $${p\#*:}"; ok=; }; \
	  done; \
	fi; \
	if ! echo '\#include <MQTTAsync.h>' | $(CC) -E -x c - >/dev/null 2>&1 || \
	   [ "$$($(CC) -print-file-name=libpaho-mqtt3as.so)" = libpaho-mqtt3as.so ]; then \
	  echo "missing library paho-mqtt3as: install the Debian package libpaho-mqtt-dev"; ok=; \
	fi; \
	[ -n "$$ok" ]; }

# Not root: a line for each missing library, then the apt-get line for every
# missing package, and fail.  Root: install what is missing, then check the
# libraries.  Every compilation waits for this (see the build rules).
check-deps:
	@if [ "$$(id -u)" != 0 ]; then $(LIBS_CHECK) || libs_missing=1; fi; \
	missing=""; \
	for p in $(DEB_PKGS); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing missing Debian packages:$$missing"; \
	    apt-get $(APT_WAIT) update -qq && DEBIAN_FRONTEND=noninteractive apt-get $(APT_WAIT) install -y -qq --no-install-recommends $$missing >/dev/null || exit 1; \
	    case " $$missing " in *" prometheus "*) \
	      if [ -d /run/systemd/system ] && systemctl disable --now prometheus.service >/dev/null 2>&1; then \
	        echo "stopped and disabled the prometheus service its package started (only its promtool is used)"; fi;; \
	    esac; \
	    case " $$missing " in *" postgresql "*) \
	      if [ -d /run/systemd/system ] && systemctl disable --now postgresql.service >/dev/null 2>&1; then \
	        echo "stopped and disabled the system PostgreSQL its package started (the tests start their own)"; fi;; \
	    esac; \
	  else \
	    echo "missing Debian packages:$$missing"; \
	    echo "install them with:  sudo apt-get install -y$$missing"; exit 1; \
	  fi; \
	fi; \
	if [ "$$(id -u)" = 0 ]; then $(LIBS_CHECK) || exit 1; elif [ -n "$$libs_missing" ]; then exit 1; fi

deps:
	apt-get $(APT_WAIT) update -qq && DEBIAN_FRONTEND=noninteractive apt-get $(APT_WAIT) install -y -qq $(DEB_PKGS)

# ---- build ----------------------------------------------------------------
# Every rule that runs the compiler waits for check-deps (order-only: it runs
# once per make, first, and never makes a target out of date), so under -j
# nothing compiles while packages are still being checked or installed.
$(BUILD)/%.o: %.c | check-deps
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
$(BUILD)/backend/order-history/store_pg.o: CFLAGS += $(PQ_CFLAGS)
# The PostgreSQL outbox and connection are in libpizza.a but reference libpq
# only from their own objects (outbox.c reaches outbox_pg.c through function
# pointers): a program that never calls outbox_pg_new(), outbox_pg_add() or
# pgconn_*() does not pull them in and needs no -lpq.
$(BUILD)/backend/common/outbox_pg.o $(BUILD)/backend/common/pgconn.o: CFLAGS += $(PQ_CFLAGS)
# The notifier's store picks SQLite or PostgreSQL at run time (--db).
$(patsubst %.c,$(BUILD)/%.o,$(wildcard backend/notifier/store*.c)): CFLAGS += $(PQ_CFLAGS)
$(BUILD)/bin/notifier $(BUILD)/tests/test_notifier_store $(BUILD)/tests/test_delivery: LDLIBS += $(PQ_LIBS)
$(BUILD)/bin/order-history $(BUILD)/tests/test_history_store: LDLIBS += $(PQ_LIBS)
# order-service's store picks SQLite or PostgreSQL at run time (--db).
$(BUILD)/backend/order-service/store_pg.o: CFLAGS += $(PQ_CFLAGS)
$(BUILD)/bin/order-service $(BUILD)/tests/test_intake $(BUILD)/tests/test_order_store \
    $(BUILD)/tests/test_supervise: LDLIBS += $(PQ_LIBS)

$(BUILD)/bin/phone-sim: $(patsubst %.c,$(BUILD)/%.o,$(wildcard client-sim/*.c)) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# pizza-admin: accounts at run time, over order-service's admin API (HTTP like phone-sim's)
$(BUILD)/bin/pizza-admin: $(patsubst %.c,$(BUILD)/%.o,$(wildcard admin/*.c)) \
    $(BUILD)/client-sim/http_client.o $(BUILD)/client-sim/runenv.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# ---- tests ----------------------------------------------------------------
# Unit tests link the module under test from the library or a service's
# object files; anything a unit must not reach is wrapped with --wrap.
# Secondary expansion must be on before the rules that use $$(...) prerequisites.
.SECONDEXPANSION:
UNIT_EXTRA_test_history_store := $(patsubst %.c,$(BUILD)/%.o,$(wildcard backend/order-history/store*.c))
UNIT_EXTRA_test_stages := $(BUILD)/backend/order-executor/stages.o
UNIT_EXTRA_test_delivery := $(BUILD)/backend/notifier/delivery.o $(patsubst %.c,$(BUILD)/%.o,$(wildcard backend/notifier/store*.c))
UNIT_EXTRA_test_notifier_store := $(patsubst %.c,$(BUILD)/%.o,$(wildcard backend/notifier/store*.c))
OSTORE_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(wildcard backend/order-service/store*.c))
UNIT_EXTRA_test_intake := $(BUILD)/backend/order-service/intake.o $(OSTORE_OBJ)
UNIT_EXTRA_test_order_store := $(OSTORE_OBJ)
UNIT_EXTRA_test_supervise := $(BUILD)/backend/order-service/supervise.o $(OSTORE_OBJ)
UNIT_EXTRA_test_load_report := $(BUILD)/client-sim/load_report.o
# Per-test link flags: the outbox test replaces the MQTT side (tests/unit/test_outbox.c).
UNIT_LDFLAGS_test_outbox := -Wl,--wrap=mq_publish,--wrap=mq_window_free,--wrap=mq_window
UNIT_LDFLAGS_test_intake := $(UNIT_LDFLAGS_test_outbox)

$(BUILD)/tests/test_%: tests/unit/test_%.c $(LIB) $$(UNIT_EXTRA_test_%) | check-deps
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) $(UNIT_LDFLAGS_test_$*) -Ibackend -o $@ $< $(UNIT_EXTRA_test_$*) $(LIB) $(LDLIBS) $(CMOCKA_LIBS)

$(BUILD)/tests/test_integ_%: tests/integration/test_integ_%.c $(HARNESS_OBJ) $(LIB) | check-deps
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -Itests/integration -o $@ $< $(HARNESS_OBJ) $(LIB) $(LDLIBS) $(CMOCKA_LIBS)

$(HARNESS_OBJ): tests/integration/harness.c | check-deps
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

# One suite after the other (each sub-make still builds with -j).
test-sanitize:
	@$(MAKE) --no-print-directory SANITIZE=address,undefined BUILD=build-asan unit
	@$(MAKE) --no-print-directory SANITIZE=address,undefined BUILD=build-asan integration

# The fuzzers replay their corpus and regression inputs, then fuzz each
# target for FUZZ_SECONDS (10; 60 when CI=true).  See tests/fuzz/README.md.
# The steps run one after another, each in a make of its own, so that
# under -j the builds inside a step run in parallel but two steps never do:
# the integration suites, the install test and the bench each start brokers
# and services of their own.  The first failing step stops the run, unless
# make was given -k: then every step runs and test fails at the end.
TEST_STEPS := unit contract-docs integration test-sanitize fuzz-replay fuzz test-install bench-quick
test:
	@rc=0; for step in $(TEST_STEPS); do \
	  echo "== make test: $$step"; \
	  $(MAKE) --no-print-directory $$step && continue; \
	  rc=1; echo "== make test: $$step FAILED"; \
	  case "$(firstword -$(MAKEFLAGS))" in *k*) ;; *) exit 1;; esac; \
	done; exit $$rc

# ---- running --------------------------------------------------------------
# PIZZA_PORT_AUTO: when the port was not chosen by the user and 1883 is
# taken (a system mosquitto, say), the stack picks a free one and says so.
PORT_AUTO := $(if $(filter file,$(origin PIZZA_MQTT_PORT)),1,0)
PIZZA_HTTP_PORT ?= 8080
HTTP_PORT_AUTO := $(if $(filter file,$(origin PIZZA_HTTP_PORT)),1,0)
PIZZA_MQTT_WS_PORT ?= 9001
WS_PORT_AUTO := $(if $(filter file,$(origin PIZZA_MQTT_WS_PORT)),1,0)
# STORE=postgres: every store in a private PostgreSQL in the run folder;
# INSTANCES=N: N instances each of order-service, order-history and the
# notifier (postgres only) and N executors (at least 2), unless EXECUTORS is
# given (docs/operations.md).
STORE ?= sqlite
INSTANCES ?= 1
STACK_EXECUTORS = $(if $(filter file,$(origin EXECUTORS)),,EXECUTORS=$(EXECUTORS))

# exec: make's child is the stack itself, which stops everything on Ctrl-C and
# exits 0, so make stops quietly (a shell in between would die of the SIGINT
# and make would print "Interrupt").
run: all web-deps
	@PIZZA_MQTT_WS_PORT=$(PIZZA_MQTT_WS_PORT) PIZZA_MQTT_WS_PORT_AUTO=$(WS_PORT_AUTO) \
	  PIZZA_PORT_AUTO=$(PORT_AUTO) PIZZA_HTTP_PORT_AUTO=$(HTTP_PORT_AUTO) PIZZA_HTTP_PORT=$(PIZZA_HTTP_PORT) PIZZA_MQTT_PORT=$(PIZZA_MQTT_PORT) PIZZA_STAGE_MS=$(PIZZA_STAGE_MS) $(STACK_EXECUTORS) \
	  STORE=$(STORE) INSTANCES=$(INSTANCES) BUILD=$(BUILD) exec ./broker-config/stack run

demo: all web-deps
	@PIZZA_MQTT_WS_PORT=$(PIZZA_MQTT_WS_PORT) PIZZA_MQTT_WS_PORT_AUTO=$(WS_PORT_AUTO) \
	  PIZZA_PORT_AUTO=$(PORT_AUTO) PIZZA_HTTP_PORT_AUTO=$(HTTP_PORT_AUTO) PIZZA_HTTP_PORT=$(PIZZA_HTTP_PORT) PIZZA_MQTT_PORT=$(PIZZA_MQTT_PORT) PIZZA_STAGE_MS=$(PIZZA_STAGE_MS) $(STACK_EXECUTORS) \
	  STORE=$(STORE) INSTANCES=$(INSTANCES) BUILD=$(BUILD) exec ./broker-config/stack demo

# Every message on pizza/# live, as the read-only admin account of make run's
# broker: on the port make run wrote to the run folder's env (it may have had
# to choose another), unless PIZZA_MQTT_PORT is given.
watch:
	@run=$(or $(PIZZA_RUN_DIR),run); port=$(if $(filter file,$(origin PIZZA_MQTT_PORT)),,$(PIZZA_MQTT_PORT)); \
	test -s "$$run/secrets/admin.pass" || { echo "no run folder yet: start 'make run' first"; exit 1; }; \
	if [ -z "$$port" ] && [ -r "$$run/env" ]; then port=$$(sed -n 's/^PIZZA_MQTT_PORT=\([0-9]*\)$$/\1/p' "$$run/env"); fi; \
	port=$${port:-1883}; \
	echo "watching pizza/# on 127.0.0.1:$$port as admin (Ctrl-C stops)"; \
	exec mosquitto_sub -h 127.0.0.1 -p "$$port" -u admin -P "$$(cat "$$run/secrets/admin.pass")" \
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

# Rules of the included files that compile, or install with apt-get (whose
# lock does not wait in browser.mk), run after check-deps too under -j.
$(BUILD)/bench/mqtt-raw $(FUZZ_BINS) bench-deps: | check-deps
browser-deps: | check-deps contract-deps web-deps
-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

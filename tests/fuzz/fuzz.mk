# tests/fuzz/fuzz.mk - libFuzzer targets; included by the top Makefile.
# See tests/fuzz/README.md.
#
#   make fuzz-build                 build every target into build/fuzz/
#   make fuzz                       fuzz each target for FUZZ_SECONDS (10; 60 when CI=true)
#   FUZZ_SECONDS=300 make fuzz      longer
#   make fuzz-replay                run the seed corpus and the regression inputs once

FUZZ_CC      ?= clang
FUZZ_DIR     := $(BUILD)/fuzz
FUZZ_TARGETS := fuzz_event fuzz_order_request fuzz_token
FUZZ_BINS    := $(FUZZ_TARGETS:%=$(FUZZ_DIR)/%)
ifeq ($(CI),true)
FUZZ_SECONDS ?= 60
else
FUZZ_SECONDS ?= 10
endif
FUZZ_CFLAGS := -g -O1 -std=c11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined \
               -fno-sanitize-recover=undefined -Ibackend/common -Ibackend -Wall -Wextra
FUZZ_OPTS   := -max_len=70000 -timeout=5 -rss_limit_mb=2048

# The sources each target is built from, and its libraries.  The event and
# token targets take only their module and its leaves.  intake.c reaches the
# database, the outbox (and through it MQTT), the callback-address check and
# the metrics, and gains dependencies as the service grows, so the request
# target takes the whole common library rather than a list that breaks the
# build each time.  The order store's backends include the PostgreSQL one,
# hence libpq.
FUZZ_SRC_fuzz_event          := backend/common/event.c backend/common/menu.c backend/common/util.c
FUZZ_LIBS_fuzz_event         := -ljansson
FUZZ_SRC_fuzz_token          := backend/common/token.c backend/common/sign.c backend/common/util.c
FUZZ_LIBS_fuzz_token         := -lcrypto -lpthread
FUZZ_SRC_fuzz_order_request  := backend/order-service/intake.c $(wildcard backend/order-service/store*.c) \
                                $(wildcard backend/common/*.c)
FUZZ_LIBS_fuzz_order_request  = -lpaho-mqtt3as -ljansson -lsqlite3 -lmicrohttpd -lcurl -lcrypto $(PQ_LIBS) -lpthread
FUZZ_HDRS := $(wildcard backend/common/*.h backend/order-service/*.h)

.PHONY: fuzz fuzz-build fuzz-replay fuzz-check-cc

fuzz-check-cc:
	@command -v $(FUZZ_CC) >/dev/null 2>&1 || { \
	  echo "fuzz: $(FUZZ_CC) not found; install it with:  sudo apt-get install -y clang libclang-rt-14-dev"; exit 1; }

define fuzz_rule
$(FUZZ_DIR)/$(1): tests/fuzz/$(1).c $(FUZZ_SRC_$(1)) $(FUZZ_HDRS) tests/fuzz/fuzz.mk | fuzz-check-cc
	@mkdir -p $$(dir $$@)
	$$(FUZZ_CC) $$(FUZZ_CFLAGS) $$(PQ_CFLAGS) -o $$@ tests/fuzz/$(1).c $(FUZZ_SRC_$(1)) $$(FUZZ_LIBS_$(1))
endef
$(foreach t,$(FUZZ_TARGETS),$(eval $(call fuzz_rule,$(t))))

fuzz-build: $(FUZZ_BINS)

# Each target fuzzes a scratch corpus in build/fuzz/work/<target> (seeded
# from the checked-in corpus, kept between runs), also reading the
# regression inputs.  A failing input is written to build/fuzz/artifacts/.
fuzz: fuzz-build
	@mkdir -p $(FUZZ_DIR)/artifacts; rc=0; \
	for t in $(FUZZ_TARGETS); do \
	  work=$(FUZZ_DIR)/work/$$t; log=$(FUZZ_DIR)/$$t.log; mkdir -p $$work; \
	  cp tests/fuzz/corpus/$$t/* $$work/; \
	  extra=""; [ -d tests/fuzz/regressions/$$t ] && extra=tests/fuzz/regressions/$$t; \
	  echo "fuzz: $$t for $(FUZZ_SECONDS) s (log: $$log)"; \
	  if $(FUZZ_DIR)/$$t -max_total_time=$(FUZZ_SECONDS) $(FUZZ_OPTS) -print_final_stats=1 \
	       -artifact_prefix=$(FUZZ_DIR)/artifacts/$$t- $$work $$extra >$$log 2>&1; then \
	    n=$$(sed -n 's/^stat::number_of_executed_units: *//p' $$log | tail -n 1); \
	    s=$$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' $$log | tail -n 1); \
	    r=$$(sed -n 's/^stat::average_exec_per_sec: *//p' $$log | tail -n 1); \
	    echo "fuzz: $$t ran $${n:-?} execs in $${s:-?} s ($${r:-?} exec/s), 0 crashes"; \
	  else \
	    rc=1; grep -av '^#[0-9]' $$log | tail -n 40; \
	    a=$$(sed -n 's/.*Test unit written to \(.*\)$$/\1/p' $$log | tail -n 1); \
	    echo "fuzz: $$t FAILED: it found an input that crashes, leaks, hangs or breaks a check: $${a:-see $$log}"; \
	    echo "fuzz: reproduce with  $(FUZZ_DIR)/$$t $${a:-<input>}"; \
	    echo "fuzz: after fixing the bug, add that input to tests/fuzz/regressions/$$t/ (see tests/fuzz/regressions/README.md)"; \
	  fi; \
	done; exit $$rc

# Every seed and regression input, each run once (libFuzzer runs files given
# as arguments one by one and does not fuzz): fast and deterministic.
fuzz-replay: fuzz-build
	@rc=0; \
	for t in $(FUZZ_TARGETS); do \
	  files=$$(find tests/fuzz/corpus/$$t tests/fuzz/regressions/$$t -type f ! -name .gitkeep 2>/dev/null | sort); \
	  n=$$(echo "$$files" | grep -c .); \
	  if [ "$$n" = 0 ]; then echo "fuzz-replay: $$t has no inputs"; rc=1; continue; fi; \
	  log=$(FUZZ_DIR)/$$t.replay.log; \
	  if $(FUZZ_DIR)/$$t -runs=0 $(FUZZ_OPTS) $$files >$$log 2>&1; then \
	    echo "fuzz-replay: $$t ran $$n inputs, 0 crashes"; \
	  else \
	    rc=1; grep -av '^#[0-9]' $$log | tail -n 40; \
	    echo "fuzz-replay: $$t FAILED on $$(sed -n 's/^Running: //p' $$log | tail -n 1) (log: $$log)"; \
	  fi; \
	done; exit $$rc

# make bench / make bench-quick: tests/bench/bench.py drives the real stack
# (on SQLite, then on a private PostgreSQL with 1 and 2 instances of every
# service), phone-sim load, the raw-ceiling tool, wrk and nginx
# (docs/performance.md).
BENCH_PKGS := wrk nginx-light python3 postgresql

$(BUILD)/bench/mqtt-raw: tests/bench/mqtt-raw.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< -lpaho-mqtt3as -lpthread -lm

.PHONY: bench bench-quick bench-deps
bench-deps:
	$(call install_missing,$(BENCH_PKGS))

# the whole measurement: about 20 minutes on the 2-core machine
bench: all bench-deps $(BUILD)/bench/mqtt-raw
	BUILD=$(BUILD) python3 tests/bench/bench.py

# the same steps, smaller (PostgreSQL with 2 instances only, no search),
# within 100 s; make test runs it as a smoke test (numbers produced, nothing
# lost; not how fast)
bench-quick: all bench-deps $(BUILD)/bench/mqtt-raw
	BUILD=$(BUILD) python3 tests/bench/bench.py --quick

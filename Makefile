# paycell — build, test, bench, demo.
#
#   make            build/paycell, build/libpaycell.a, build/libpaycell.so
#   make test       install deps, build, run every test (unit, sanitizers,
#                   fuzz smoke, integration); last line "N passed, N failed"
#   make bench      the default benchmark (durable, single replica)
#   make bench-overload  3x capacity for 30 s on two units (issue 5), ~5 min
#   make demo       the Double-11 demo
#   make fuzz       longer fuzzing of the protocol decoder
#   make sim        the VSR simulator on random seeds until stopped
#   make chaos      faults on real processes and networks (root), history checked
#
# Release builds keep PC_ASSERT on; the asan build adds PC_ASSERT_HOT.

CC      ?= gcc
BUILD   := build
WARN    := -Wall -Wextra -Werror -Wno-unused-parameter -Wshadow -Wstrict-prototypes
CFLAGS  := -std=c11 -O2 -g -fPIC -D_GNU_SOURCE -Iinclude -I$(BUILD)/gen $(WARN) $(EXTRA_CFLAGS)
LDLIBS  := -lxxhash -lm -lssl -lcrypto
SANFLAGS := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined -DPC_DEBUG

BASE_SRC    := $(wildcard src/base/*.c)
LEDGER_SRC  := $(wildcard src/ledger/*.c)
STORAGE_SRC := $(wildcard src/storage/*.c)
NET_SRC     := $(wildcard src/net/*.c)
CLIENT_SRC  := $(wildcard src/client/*.c)
REPLICA_SRC := $(wildcard src/replica/*.c)
BENCH_SRC   := $(wildcard src/bench/*.c)
VSR_SRC     := $(wildcard src/vsr/*.c)
SIM_SRC     := $(wildcard src/sim/*.c)
CLI_SRC     := $(wildcard src/cli/*.c)
GATEWAY_SRC := $(wildcard src/gateway/*.c)
AUTH_SRC    := $(wildcard src/auth/*.c)

obj = $(patsubst src/%.c,$(1)/obj/%.o,$(2))

LIB_SRC  := $(BASE_SRC) $(NET_SRC) $(CLIENT_SRC)
CORE_SRC := $(BASE_SRC) $(LEDGER_SRC) $(STORAGE_SRC) $(NET_SRC) $(CLIENT_SRC) $(REPLICA_SRC) $(BENCH_SRC) \
            $(VSR_SRC) $(SIM_SRC) $(GATEWAY_SRC) $(AUTH_SRC)
ALL_SRC  := $(CORE_SRC) $(CLI_SRC)

UNIT_TESTS := $(patsubst tests/unit/%.c,%,$(wildcard tests/unit/test_*.c))
ITESTS     := $(patsubst tests/integration/%.c,%,$(wildcard tests/integration/*.c))

.PHONY: all deps test unit unit-asan itests fuzz bench bench-overload demo sim chaos clean
all: $(BUILD)/paycell $(BUILD)/libpaycell.a $(BUILD)/libpaycell.so $(BUILD)/example-transfer

deps:
	@bash scripts/deps.sh

# ---- release objects ----
$(BUILD)/obj/%.o: src/%.c $(wildcard src/*.h src/*/*.h include/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

# ---- sanitizer objects ----
$(BUILD)/asan/obj/%.o: src/%.c $(wildcard src/*.h src/*/*.h include/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(SANFLAGS) -c $< -o $@

# The big screen's page (GET / on the gateway) is compiled in: the source
# stays a real file, scripts/embed.sh turns it into a C array (od and sed:
# no xxd needed) that http_api.c includes.
$(BUILD)/gen/screen_html.h: src/gateway/screen.html scripts/embed.sh
	@mkdir -p $(dir $@)
	bash scripts/embed.sh screen_html $< $@
$(BUILD)/obj/gateway/http_api.o $(BUILD)/asan/obj/gateway/http_api.o: $(BUILD)/gen/screen_html.h

$(BUILD)/paycell: $(call obj,$(BUILD),$(ALL_SRC))
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS) -rdynamic

# The whole binary under ASan+UBSan: integration tests run it too.
$(BUILD)/asan/paycell: $(call obj,$(BUILD)/asan,$(ALL_SRC))
	$(CC) $(CFLAGS) $(SANFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/libpaycell.a: $(call obj,$(BUILD),$(LIB_SRC))
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/libpaycell.so: $(call obj,$(BUILD),$(LIB_SRC))
	$(CC) -shared -o $@ $^ $(LDLIBS)

# The documented client example, linked against the static library as a
# user would.
$(BUILD)/example-transfer: examples/transfer.c $(BUILD)/libpaycell.a
	$(CC) -std=c11 -O2 -Wall -Wextra -Werror -Iinclude -o $@ $< $(BUILD)/libpaycell.a $(LDLIBS)

# Each unit test links only the layers it tests (test_ledger*: base+ledger,
# test_storage*: base+storage, test_net*/test_client*: base+net+client,
# test_gateway_http*: base+net+http_api.c, with a fake gateway core in the
# test itself); the rest link the core (everything but the CLI's main).
define unit_test_rules
$(1)_TESTS := $$(filter $(1)%,$$(UNIT_TESTS))
$$(addprefix $(BUILD)/tests/,$$($(1)_TESTS)): $(BUILD)/tests/%: tests/unit/%.c tests/unit/test.h $(call obj,$(BUILD),$(2))
	@mkdir -p $$(dir $$@)
	$(CC) $(CFLAGS) -DPC_DEBUG -o $$@ $$< $(call obj,$(BUILD),$(2)) $(LDLIBS)
$$(addprefix $(BUILD)/asan/tests/,$$($(1)_TESTS)): $(BUILD)/asan/tests/%: tests/unit/%.c tests/unit/test.h $(call obj,$(BUILD)/asan,$(2))
	@mkdir -p $$(dir $$@)
	$(CC) $(CFLAGS) $(SANFLAGS) -o $$@ $$< $(call obj,$(BUILD)/asan,$(2)) $(LDLIBS)
endef
LAYERED_PREFIXES := test_ledger test_storage test_net test_client test_gateway_http
$(eval $(call unit_test_rules,test_ledger,$(BASE_SRC) $(LEDGER_SRC)))
$(eval $(call unit_test_rules,test_storage,$(BASE_SRC) $(STORAGE_SRC)))
$(eval $(call unit_test_rules,test_net,$(BASE_SRC) $(NET_SRC) $(CLIENT_SRC)))
$(eval $(call unit_test_rules,test_client,$(BASE_SRC) $(NET_SRC) $(CLIENT_SRC)))
$(eval $(call unit_test_rules,test_gateway_http,$(BASE_SRC) $(NET_SRC) src/gateway/http_api.c))
CORE_TESTS := $(filter-out $(addsuffix %,$(LAYERED_PREFIXES)),$(UNIT_TESTS))
$(addprefix $(BUILD)/tests/,$(CORE_TESTS)): $(BUILD)/tests/%: tests/unit/%.c tests/unit/test.h $(call obj,$(BUILD),$(CORE_SRC))
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -DPC_DEBUG -o $@ $< $(call obj,$(BUILD),$(CORE_SRC)) $(LDLIBS)
$(addprefix $(BUILD)/asan/tests/,$(CORE_TESTS)): $(BUILD)/asan/tests/%: tests/unit/%.c tests/unit/test.h $(call obj,$(BUILD)/asan,$(CORE_SRC))
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(SANFLAGS) -o $@ $< $(call obj,$(BUILD)/asan,$(CORE_SRC)) $(LDLIBS)

# libFuzzer target for the protocol decoder (clang).
$(BUILD)/fuzz/fuzz_protocol: tests/fuzz/fuzz_protocol.c $(BASE_SRC) $(NET_SRC)
	@mkdir -p $(dir $@)
	clang -std=c11 -O1 -g -D_GNU_SOURCE -Iinclude -fsanitize=fuzzer,address,undefined \
	    -o $@ $^ $(LDLIBS)

# libFuzzer targets for the HTTP/JSON codecs (clang): fuzz_json, fuzz_http.
FUZZ_CODECS := $(BUILD)/fuzz/fuzz_json $(BUILD)/fuzz/fuzz_http
$(FUZZ_CODECS): $(BUILD)/fuzz/%: tests/fuzz/%.c $(BASE_SRC) $(NET_SRC)
	@mkdir -p $(dir $@)
	clang -std=c11 -O1 -g -D_GNU_SOURCE -Iinclude -fsanitize=fuzzer,address,undefined \
	    -o $@ $^ $(LDLIBS)

# Integration drivers (C programs that start real replicas and clients).
$(BUILD)/itests/%: tests/integration/%.c $(wildcard tests/integration/*.h) $(call obj,$(BUILD),$(CORE_SRC))
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(call obj,$(BUILD),$(CORE_SRC)) $(LDLIBS)

# The chaos harness (tests/chaos/, docs/RELIABILITY.md): its history client,
# linked against libpaycell as a user would; and paycell-planted, the release
# objects with src/replica/unit.c rebuilt with -DPC_TEST_PLANTED_BUGS. Only
# that binary contains the planted bug (acknowledging journal writes never
# made), and even it runs the bug only under PAYCELL_TEST_UNSAFE=1.
CHAOS_BINS := $(BUILD)/chaos/chaos-client $(BUILD)/chaos/paycell-planted
$(BUILD)/chaos/chaos-client: tests/chaos/client.c $(BUILD)/libpaycell.a include/paycell.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/libpaycell.a $(LDLIBS) -lpthread
$(BUILD)/chaos/obj/replica/unit.o: src/replica/unit.c $(wildcard src/*.h src/*/*.h include/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -DPC_TEST_PLANTED_BUGS -c $< -o $@
$(BUILD)/chaos/paycell-planted: $(filter-out $(BUILD)/obj/replica/unit.o,$(call obj,$(BUILD),$(ALL_SRC))) $(BUILD)/chaos/obj/replica/unit.o
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS) -rdynamic

unit: $(addprefix $(BUILD)/tests/,$(UNIT_TESTS))
itests: $(addprefix $(BUILD)/itests/,$(ITESTS))
unit-asan: $(addprefix $(BUILD)/asan/tests/,$(UNIT_TESTS))

test: deps
	@$(MAKE) --no-print-directory -j$$(nproc) all unit unit-asan itests $(BUILD)/asan/paycell $(BUILD)/fuzz/fuzz_protocol $(FUZZ_CODECS)
	@bash tests/run.sh

fuzz: deps $(BUILD)/fuzz/fuzz_protocol
	@mkdir -p $(BUILD)/fuzz/corpus
	$(BUILD)/fuzz/fuzz_protocol -max_total_time=$${FUZZ_SECONDS:-300} $(BUILD)/fuzz/corpus

bench: deps all
	$(BUILD)/paycell bench $(BENCH_ARGS)

bench-overload: deps all
	bash scripts/overload.sh --paycell $(BUILD)/paycell $(OVERLOAD_ARGS)

demo: deps all
	$(BUILD)/paycell demo $(DEMO_ARGS)

# A chaos campaign on real processes in network namespaces (root):
# CHAOS_SECONDS (600) of load with faults, CHAOS_SEED (random).
chaos: deps all $(CHAOS_BINS)
	bash tests/chaos/chaos.sh --seconds $${CHAOS_SECONDS:-600} $${CHAOS_SEED:+--seed $$CHAOS_SEED}

# Random simulator seeds until stopped; prints every failing seed.
sim: all
	$(BUILD)/paycell sim $(SIM_ARGS)

clean:
	rm -rf $(BUILD)

# mailbench — one flat GNU Makefile.
#
#   make            build every program into bin/
#   make test       unit tests (cmocka) + integration tests (loopback only)
#   make asan       build and test with AddressSanitizer + UBSan (clang)
#   make tsan       build and test the threaded code with ThreadSanitizer (clang)
#   make report     default benchmark sweep + REPORT.md   (FULL=1: long sweep)
#   make clean
#
# Every public object goes into build/$(VARIANT)/; programs are linked into
# $(BIN) (bin/ for the normal build, build/<variant>/bin for sanitizer builds),
# and the integration tests find them through MAILBENCH_BIN.

VARIANT  ?= release
BUILD    := build/$(VARIANT)
BIN      ?= bin
CC       ?= cc
OPT      ?= -O2
SANFLAGS ?=
CFLAGS   ?=
CFLAGS   += -std=c11 -D_GNU_SOURCE $(OPT) -g -Wall -Wextra -Werror \
            -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
            -MMD -MP -Ilib -Iworkloads $(SANFLAGS)
LDFLAGS  += $(SANFLAGS)
LDLIBS   := -lev -lpthread -lm
# Every run's JSON records the revision it was built from.
GIT_REV  := $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)$(shell git diff --quiet HEAD 2>/dev/null || echo -dirty)
CFLAGS   += -DMAILBENCH_GIT_REV='"$(GIT_REV)"'

# The shared library: everything in lib/ and workloads/ except the server's main.
LIB_SRC  := $(wildcard lib/*.c) $(filter-out workloads/smtp-mock.c,$(wildcard workloads/*.c))
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
LIBA     := $(BUILD)/libmailbench.a

MODELS   := $(patsubst models/%.c,$(BIN)/summary-%,$(wildcard models/*.c))
PROGS    := $(if $(wildcard workloads/smtp-mock.c),$(BIN)/smtp-mock) $(MODELS)

TEST_SRC := $(wildcard tests/unit/test_*.c)
TESTS    := $(TEST_SRC:tests/unit/%.c=$(BUILD)/tests/%)
BENCH_SRC:= $(wildcard tests/bench/*.c)
BENCHES  := $(BENCH_SRC:tests/bench/%.c=$(BUILD)/bench/%)

.SECONDARY:
.PHONY: all deps test unit integration asan tsan report bench-deferred bench-server clean
all: deps $(PROGS)

deps:
	@scripts/install-deps

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(LIBA): $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BIN)/smtp-mock: $(BUILD)/workloads/smtp-mock.o $(LIBA)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(BIN)/summary-%: $(BUILD)/models/%.o $(LIBA)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(BUILD)/tests/%: $(BUILD)/tests/unit/%.o $(LIBA)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -lcmocka -o $@

$(BUILD)/bench/%: $(BUILD)/tests/bench/%.o $(LIBA)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

# Unit tests first (fast, no network), then the integration scripts, which
# start their own servers on 127.0.0.1 port 0 and stop them by pid.
test: all $(TESTS)
	@MAILBENCH_BIN=$(abspath $(BIN)) MAILBENCH_BUILD=$(abspath $(BUILD)) \
	    tests/run-tests $(TESTS)

unit: all $(TESTS)
	@MAILBENCH_BIN=$(abspath $(BIN)) tests/run-tests --unit-only $(TESTS)

asan:
	$(MAKE) VARIANT=asan BIN=build/asan/bin CC=clang OPT=-O1 \
	    SANFLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" test

tsan:
	$(MAKE) VARIANT=tsan BIN=build/tsan/bin CC=clang OPT=-O1 \
	    SANFLAGS="-fsanitize=thread" MAILBENCH_TSAN=1 test

bench-deferred: all $(BUILD)/bench/bench_deferred
	scripts/bench-deferred $(BUILD)/bench/bench_deferred

bench-server: all
	scripts/bench-server

report: all
	scripts/report-run $(if $(FULL),--full)

clean:
	rm -rf build bin

-include $(LIB_OBJ:.o=.d) $(TESTS:%=%.d)
-include $(wildcard $(BUILD)/models/*.d $(BUILD)/workloads/*.d $(BUILD)/tests/unit/*.d $(BUILD)/tests/bench/*.d)

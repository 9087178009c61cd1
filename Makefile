# lua-ucwa: build, test, check (sanitizers), bench, fuzz, demo, deps.
LUA      ?= lua5.4
BUSTED   ?= $(LUA) /usr/bin/busted
CC       ?= gcc
BUILD    ?= build
PKGS      = lua5.4 libcurl expat
LUA_CFLAGS := $(shell pkg-config --cflags $(PKGS))
CURL_LIBS  := $(shell pkg-config --libs libcurl expat libcrypto)
SIM_CFLAGS := $(shell pkg-config --cflags lua5.4 libmicrohttpd)
SIM_LIBS   := $(shell pkg-config --libs lua5.4 libmicrohttpd) -lm
OPT      ?= -O2 -g
WARN      = -Wall -Wextra -Werror
CFLAGS_ALL = -std=gnu11 $(OPT) $(WARN) -fPIC $(SAN)

CORE_SRC := $(sort $(wildcard src/*.c))
CORE_OBJ := $(CORE_SRC:src/%.c=$(BUILD)/obj/core/%.o)
SIM_SRC  := $(sort $(wildcard sim/*.c))
SIM_OBJ  := $(SIM_SRC:sim/%.c=$(BUILD)/obj/sim/%.o)

DEBIAN_PKGS = lua5.4 liblua5.4-dev libcurl4-openssl-dev libssl-dev lua-cjson libexpat1-dev \
  lua-busted libmicrohttpd-dev lua-expat clang libclang-rt-14-dev lua-check \
  lua-ldoc luarocks lua-cqueues lua-luv lua-socket lua-sec openssl python3 pkg-config make gcc

.PHONY: all test check bench fuzz demo deps lint rock clean schema doc

all: $(BUILD)/ucwa/core.so $(BUILD)/ucwa-sim

$(BUILD)/obj/core/%.o: src/%.c $(wildcard src/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(LUA_CFLAGS) -c $< -o $@

$(BUILD)/ucwa/core.so: $(CORE_OBJ)
	@mkdir -p $(dir $@)
	$(CC) -shared $(SAN) -o $@ $^ $(CURL_LIBS)

# The simulator's Lua modules (sim/lua/*.lua) are compiled in through a
# header generated into the build tree, never committed.
SIM_LUA  := $(sort $(wildcard sim/lua/*.lua))

$(BUILD)/gen/sim_script.h: sim/embed.lua $(SIM_LUA)
	@mkdir -p $(dir $@)
	$(LUA) sim/embed.lua $@ $(SIM_LUA)

$(BUILD)/obj/sim/%.o: sim/%.c $(wildcard sim/*.h) $(BUILD)/gen/sim_script.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(SIM_CFLAGS) -I$(BUILD)/gen -c $< -o $@

$(BUILD)/ucwa-sim: $(SIM_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(SAN) -o $@ $^ $(SIM_LIBS)

# The suite, as a user runs it.
test: all
	UCWA_BUILD=$(BUILD) $(BUSTED)

# The same suite with the C parts built under ASan + UBSan, leak detection on.
SAN_FLAGS = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
check:
	$(MAKE) BUILD=build-san SAN="$(SAN_FLAGS)" OPT="-O1 -g" all build-san/sanlua
	UCWA_BUILD=build-san UCWA_SANITIZED=1 UCWA_LUA=$(CURDIR)/build-san/sanlua \
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	LSAN_OPTIONS=suppressions=$(CURDIR)/tools/lsan.supp:print_suppressions=0 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	build-san/sanlua /usr/bin/busted

# The interpreter for `make check`, with the sanitizers linked in.
build-san/sanlua: tools/sanlua.c
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 -O1 -g $(WARN) $(SAN) $(shell pkg-config --cflags lua5.4) $< -o $@ \
	  $(shell pkg-config --libs lua5.4) -Wl,-E

bench: all
	@for f in bench/*.lua; do echo "== $$f"; UCWA_BUILD=$(BUILD) $(LUA) $$f || exit 1; done

FUZZ_TIME ?= 20
fuzz:
	$(MAKE) -C fuzz run FUZZ_TIME=$(FUZZ_TIME)

lint:
	luacheck lua spec examples bench tools sim

# Property types and collection rels, generated from the UCWA reference.
schema:
	$(LUA) tools/gen_schema.lua ../shared/ucwa-docs src/schema.h

rock:
	luarocks --lua-version 5.4 make --deps-mode=none --tree $(BUILD)/rock ucwa-scm-1.rockspec \
	  CURL_INCDIR=$$(dirname $$(dirname $$(echo /usr/include/*/curl/curl.h /usr/include/curl/curl.h | cut -d" " -f1)))
	cd /tmp && LUA_PATH="$(CURDIR)/$(BUILD)/rock/share/lua/5.4/?.lua;$(CURDIR)/$(BUILD)/rock/share/lua/5.4/?/init.lua;;" LUA_CPATH="$(CURDIR)/$(BUILD)/rock/lib/lua/5.4/?.so;;" $(LUA) -e "local u = require [[ucwa]]; assert(u.parse([[{\"rel\":\"x\"}]], [[application/json]]).rel == [[x]]); require [[ucwa.client]]; require [[ucwa.conversation]]; print([[rock ok: ]] .. package.searchpath([[ucwa.core]], package.cpath))"

demo: all
	$(LUA) examples/demo.lua

# The API reference (LDoc) in build/doc; fails on any LDoc warning.
doc:
	tools/check_docs.sh

deps:
	@if [ "$$(id -u)" = 0 ]; then apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(DEBIAN_PKGS); \
	else echo "run as root: apt-get install -y $(DEBIAN_PKGS)"; fi

clean:
	rm -rf build build-san

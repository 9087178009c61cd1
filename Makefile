# lua-ucwa: build, test, check (sanitizers), bench, soak, fuzz, demo, deps.
LUA      ?= lua5.4
BUSTED   ?= $(LUA) /usr/bin/busted
CC       ?= gcc
BUILD    ?= build
PKG_CONFIG ?= pkg-config
PKGS      = lua5.4 libcurl expat sqlite3 hiredis
# Recursive (=), not :=, so pkg-config runs when a compile needs it: in
# `make deps demo` that is after deps has installed pkg-config and the -dev
# packages, not when make reads this file.
LUA_CFLAGS = $(shell $(PKG_CONFIG) --cflags $(PKGS))
CURL_LIBS  = $(shell $(PKG_CONFIG) --libs libcurl expat libcrypto sqlite3 hiredis)
SIM_CFLAGS = $(shell $(PKG_CONFIG) --cflags lua5.4 libmicrohttpd)
SIM_LIBS   = $(shell $(PKG_CONFIG) --libs lua5.4 libmicrohttpd) -lm
# multipart/batching (src/multipart.c, in ucwa.core and in ucwa-sim): GMime and http-parser
MIME_CFLAGS = $(shell $(PKG_CONFIG) --cflags gmime-3.0)
MIME_LIBS   = $(shell $(PKG_CONFIG) --libs gmime-3.0) -lhttp_parser
OPT      ?= -O2 -g
WARN      = -Wall -Wextra -Werror
# One C dialect: C11 with the GNU/POSIX library (strdup, strcasecmp, epoll,
# timerfd); .clang-format and .editorconfig give the layout.
STD       = -std=gnu11
# The version is the rockspec's, for ucwa._VERSION and ucwa-sim --version alike.
VERSION  := $(shell sed -n 's/^version = "\([^-]*\)-.*"/\1/p' ucwa-*.rockspec)
CFLAGS_ALL = $(STD) $(OPT) $(WARN) -fPIC $(SAN) -DUCWA_VERSION='"$(VERSION)"'

CORE_SRC := $(sort $(wildcard src/*.c))
CORE_OBJ := $(CORE_SRC:src/%.c=$(BUILD)/obj/core/%.o)
SIM_SRC  := $(sort $(wildcard sim/*.c))
SIM_OBJ  := $(SIM_SRC:sim/%.c=$(BUILD)/obj/sim/%.o) $(BUILD)/obj/sim/multipart.o

DEBIAN_PKGS = lua5.4 liblua5.4-dev libcurl4-openssl-dev libssl-dev lua-cjson libexpat1-dev \
  lua-busted libmicrohttpd-dev lua-expat clang libclang-rt-14-dev lua-check libsqlite3-dev \
  lua-ldoc luarocks lua-cqueues lua-luv lua-socket lua-sec openssl python3 pkg-config make gcc lua5.1 \
  chromium \
  libgmime-3.0-dev libhttp-parser-dev \
  libhiredis-dev redis-server

.PHONY: all test check bench soak fuzz demo deps lint rock clean schema doc env install

all: $(BUILD)/ucwa/core.so $(BUILD)/ucwa-sim

$(BUILD)/obj/core/%.o: src/%.c $(wildcard src/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(LUA_CFLAGS) $(if $(filter multipart,$*),$(MIME_CFLAGS)) -c $< -o $@

# -z nodelete: GMime's library-wide state (g_mime_init, once a process) stays
# with the process; unloading ucwa.core at lua_close would strand it.
$(BUILD)/ucwa/core.so: $(CORE_OBJ)
	@mkdir -p $(dir $@)
	$(CC) -shared $(SAN) -Wl,-z,nodelete -o $@ $^ $(CURL_LIBS) $(MIME_LIBS)

# The simulator's Lua modules (sim/lua/*.lua) and its console's files
# (sim/console/*) are compiled in through a header generated into the build
# tree, never committed.
SIM_LUA  := $(sort $(wildcard sim/lua/*.lua))
SIM_CONSOLE := $(sort $(wildcard sim/console/*))

$(BUILD)/gen/sim_script.h: sim/embed.lua $(SIM_LUA) $(SIM_CONSOLE)
	@mkdir -p $(dir $@)
	$(LUA) sim/embed.lua $@ $(SIM_LUA) $(SIM_CONSOLE)

# (sim/target.c reads a batch part's target with GLib, which GMime brings.)
$(BUILD)/obj/sim/%.o: sim/%.c $(wildcard sim/*.h) $(BUILD)/gen/sim_script.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(SIM_CFLAGS) $(if $(filter target,$*),$(MIME_CFLAGS)) -I$(BUILD)/gen -c $< -o $@

# The simulator's own object of the multipart binding (host.multipart_*).
$(BUILD)/obj/sim/multipart.o: src/multipart.c src/ucwa.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(SIM_CFLAGS) $(MIME_CFLAGS) -c $< -o $@

$(BUILD)/ucwa-sim: $(SIM_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(SAN) -o $@ $^ $(SIM_LIBS) $(MIME_LIBS)

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

# The interpreter for `make check`, with the sanitizers linked in. It also
# loads ucwa.core's libraries at start (--no-as-needed): their thread-local
# storage is then static; loaded later by dlopen it is dynamic TLS, which
# LeakSanitizer's exit scan misreads and crashes on ("Tracer caught signal 11").
build-san/sanlua: tools/sanlua.c
	@mkdir -p $(dir $@)
	$(CC) $(STD) -O1 -g $(WARN) $(SAN) $(shell $(PKG_CONFIG) --cflags lua5.4) $< -o $@ \
	  $(shell $(PKG_CONFIG) --libs lua5.4) -Wl,-E -Wl,--no-as-needed $(CURL_LIBS) $(MIME_LIBS)

# The benches, and their baseline: a bare libcurl client (bench/easy_bench.c),
# a module of its own that the shipped ucwa.core does not carry.
# A thousand bots hold a thousand sockets: the descriptor limit is raised here,
# by the host, for the benches (the engine leaves it alone).
bench: all $(BUILD)/ucwa_bench.so
	@ulimit -S -n $$(ulimit -H -n) 2>/dev/null; \
	for f in bench/*.lua; do echo "== $$f"; UCWA_BUILD=$(BUILD) $(LUA) $$f || exit 1; done

$(BUILD)/ucwa_bench.so: bench/easy_bench.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(LUA_CFLAGS) -shared -o $@ $< $(CURL_LIBS)

# The soak (tools/soak.lua): 100 bots on one engine against ucwa-sim for
# SOAK_SECONDS under random faults; fails on a lost or repeated event, a bot
# not ready at the end, or RSS growth past its bound. CI runs SOAK_SECONDS=15.
SOAK_SECONDS ?= 60
soak: all
	@ulimit -S -n $$(ulimit -H -n) 2>/dev/null; \
	SOAK_SECONDS=$(SOAK_SECONDS) UCWA_BUILD=$(BUILD) $(LUA) tools/soak.lua

FUZZ_TIME ?= 20
fuzz:
	$(MAKE) -C fuzz run FUZZ_TIME=$(FUZZ_TIME)

lint:
	luacheck lua spec examples bench tools sim fuzz

# Property types and collection rels, generated from the UCWA reference.
schema:
	$(LUA) tools/gen_schema.lua ../shared/ucwa-docs src/schema.h

# What `luarocks make` installs (the rockspec is a make build): ucwa.core, the
# Lua layer and the ucwa-sim command, into the folders luarocks names.
PREFIX      ?= /usr/local
INST_LIBDIR ?= $(PREFIX)/lib/lua/5.4
INST_LUADIR ?= $(PREFIX)/share/lua/5.4
INST_BINDIR ?= $(PREFIX)/bin
install:   # after `make` (luarocks runs the build target first)
	install -d $(INST_LIBDIR)/ucwa $(INST_LUADIR)/ucwa $(INST_BINDIR)
	install -m 755 $(BUILD)/ucwa/core.so $(INST_LIBDIR)/ucwa/core.so
	install -m 644 lua/ucwa/*.lua $(INST_LUADIR)/ucwa/
	install -m 755 $(BUILD)/ucwa-sim $(INST_BINDIR)/ucwa-sim

# The rock as a user builds it (plain `luarocks make`), into build/rock, then
# used from another directory: the module, and ucwa.sim finding its ucwa-sim.
rock:
	luarocks --lua-version 5.4 make --deps-mode=none --tree $(CURDIR)/$(BUILD)/rock $(wildcard ucwa-*.rockspec)
	cd /tmp && env -u UCWA_BUILD -u UCWA_SIM PATH=/usr/bin:/bin \
	  LUA_PATH="$(CURDIR)/$(BUILD)/rock/share/lua/5.4/?.lua;$(CURDIR)/$(BUILD)/rock/share/lua/5.4/?/init.lua;;" \
	  LUA_CPATH="$(CURDIR)/$(BUILD)/rock/lib/lua/5.4/?.so;;" $(LUA) $(CURDIR)/tools/check_rock.lua

demo: all
	$(LUA) examples/demo.lua

# `eval "$$(make -s env)"`: LUA_PATH, LUA_CPATH and PATH for using the module
# and ucwa-sim from this checkout, from any directory.
env:
	@echo "export LUA_PATH='$(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua;;'" \
	  "LUA_CPATH='$(CURDIR)/$(BUILD)/?.so;;' PATH='$(CURDIR)/$(BUILD):'\"\$$PATH\""

# The API reference (LDoc) in build/doc; fails on any LDoc warning and on a
# public function (C or Lua) without an entry (tools/check_api_docs.lua).
doc: $(BUILD)/ucwa/core.so
	UCWA_BUILD=$(BUILD) LUA=$(LUA) tools/check_docs.sh

# The Debian packages, then the console's browser test's node modules
# (package-lock.json: playwright-core, which drives Debian's chromium and
# downloads no browser) into node_modules/, with the machine's Node.js and
# npm (Node.js 20 with its own npm: Debian's npm package conflicts with it).
deps:
	@if [ "$$(id -u)" = 0 ]; then apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(DEBIAN_PKGS); \
	else echo "run as root: apt-get install -y $(DEBIAN_PKGS)"; fi
	PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund

clean:
	rm -rf build build-san

# A new version in the rockspec rebuilds what prints it.
$(BUILD)/obj/core/core.o $(BUILD)/obj/sim/main.o: $(wildcard ucwa-*.rockspec)

/* libFuzzer target for ucwa-sim's request handling: routes, bodies, the
 * control API, without the network.  The simulator's Lua modules (sim/lua)
 * and the driver (sim_driver.lua: a fake host, the input's requests, the
 * checks) are compiled in through a header sim/embed.lua generates, as the
 * simulator's own are.  One lua_State per input, closed after it: each input
 * starts from a fresh simulator, so runs are reproducible and whatever an
 * input allocates is freed with it (a C leak still unbalances the input).
 * The modules are compiled once, at start-up, and each state loads their
 * bytecode (compiling them took most of an input's time).
 *
 * Coverage: the logic is Lua, which libFuzzer's instrumentation does not
 * see (the interpreter is the system's).  A line hook counts each (chunk,
 * previous line, line) step of the simulator's code in libFuzzer's extra
 * counters, so inputs that reach new Lua paths are kept.
 *
 * An error that escapes the driver is a finding: the target aborts. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

#include "sim_script.h"

#define NCOUNTERS (1 << 16)
__attribute__((used, section("__libfuzzer_extra_counters"))) static uint8_t counters[NCOUNTERS];

static uint32_t fnv(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

static void line_hook(lua_State *L, lua_Debug *ar)
{
    static int prev;
    uint32_t i;
    if (!lua_getinfo(L, "S", ar) || ar->source[0] != '=') return; /* the modules' chunks only */
    i = (fnv(ar->source) + (uint32_t)ar->currentline * 2654435761u + (uint32_t)prev * 40503u) % NCOUNTERS;
    prev = ar->currentline;
    if (counters[i] < 255) counters[i]++;
}

/* Keeps lua-cjson and lua-expat loaded between the per-input states, so
 * that each input does not dlopen and dlclose them again. */
static lua_State *keeper;

#define NSCRIPTS (sizeof sim_scripts / sizeof sim_scripts[0])

/* The modules' bytecode (lua_dump of each compiled module, debug info kept). */
static struct {
    char *code;
    size_t len, cap;
} bytecode[NSCRIPTS];

static int dump_writer(lua_State *L, const void *p, size_t n, void *ud)
{
    size_t i = *(size_t *)ud;
    (void)L;
    if (bytecode[i].len + n > bytecode[i].cap) {
        size_t cap = (bytecode[i].cap + n) * 2;
        char *nc = realloc(bytecode[i].code, cap);
        if (!nc) return 1;
        bytecode[i].code = nc;
        bytecode[i].cap = cap;
    }
    memcpy(bytecode[i].code + bytecode[i].len, p, n);
    bytecode[i].len += n;
    return 0;
}

static void chunk_name(char *buf, size_t size, size_t i)
{
    snprintf(buf, size, "=%s.lua", sim_scripts[i].name);
}

/* Compiles every module once, in the keeper state. */
static void compile_all(void)
{
    size_t i;
    for (i = 0; i < NSCRIPTS; i++) {
        char chunk[128];
        chunk_name(chunk, sizeof chunk, i);
        if (luaL_loadbuffer(keeper, sim_scripts[i].src, sim_scripts[i].len, chunk) != LUA_OK ||
            lua_dump(keeper, dump_writer, &i, 0) != 0) {
            fprintf(stderr, "fuzz_sim: %s\n", lua_tostring(keeper, -1));
            abort();
        }
        lua_pop(keeper, 1);
    }
}

static int traceback(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    if (msg == NULL) msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    luaL_traceback(L, L, msg, 1);
    return 1;
}

static void preload(lua_State *L)
{
    size_t i;
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "preload");
    for (i = 0; i < NSCRIPTS; i++) {
        char chunk[128];
        chunk_name(chunk, sizeof chunk, i);
        if (luaL_loadbufferx(L, bytecode[i].code, bytecode[i].len, chunk, "b") != LUA_OK) {
            fprintf(stderr, "fuzz_sim: %s\n", lua_tostring(L, -1));
            abort();
        }
        lua_setfield(L, -2, sim_scripts[i].name);
    }
    lua_pop(L, 2);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    keeper = luaL_newstate();
    luaL_openlibs(keeper);
    if (luaL_dostring(keeper, "require 'cjson.safe'; require 'lxp'") != LUA_OK) {
        fprintf(stderr, "fuzz_sim: %s\n", lua_tostring(keeper, -1));
        abort();
    }
    compile_all();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lua_State *L = luaL_newstate();
    if (!L) abort();
    luaL_openlibs(L);
    preload(L);
    lua_sethook(L, line_hook, LUA_MASKLINE, 0);
    lua_pushcfunction(L, traceback);
    lua_getglobal(L, "require");
    lua_pushliteral(L, "sim_driver");
    if (lua_pcall(L, 1, 1, 1) != LUA_OK) {
        fprintf(stderr, "fuzz_sim: %s\n", lua_tostring(L, -1));
        abort();
    }
    lua_getfield(L, -1, "run");
    lua_pushlstring(L, (const char *)data, size);
    if (lua_pcall(L, 1, 0, 1) != LUA_OK) {
        fprintf(stderr, "Lua error escaped from the simulator: %s\n", lua_tostring(L, -1));
        abort();
    }
    lua_close(L);
    return 0;
}

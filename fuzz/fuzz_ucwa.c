/* libFuzzer target for the parsers of ucwa.core. One source, four targets:
 * FUZZ_FN is "parse" or "parse_events", FUZZ_CT the content type. The parse
 * sources (src/parse*.c, encode.c, date.c, and error.c, auxlib.c they use)
 * are compiled in; lua-cjson is
 * loaded by require from the system's Lua 5.4 cpath.
 * Each input is also run through parse_error and, when it parses, the model's
 * properties through encode("xml"/"json"). Lua errors are caught by pcall:
 * only argument errors may raise, and the harness passes proper arguments,
 * so any raised error is reported as a crash.
 *
 * Speed and leaks: one lua_State per process (LLVMFuzzerInitialize), one
 * lua_pcall per input. libFuzzer counts mallocs and frees around every input
 * and, when they differ, re-runs it and does a full LeakSanitizer scan (a few
 * ms); after 1000 such inputs it gives up per-input leak checks for the rest
 * of the run. Lua garbage left over from an input made every input look like
 * a leak, so the targets spent their time in LSan scans (~600 runs/s). So each
 * input ends with a full collect of the (small) state: the input frees what
 * it allocated, mallocs == frees, and a C allocation that the parser really
 * loses still unbalances the input and is reported as leak-* at once.
 * -DFUZZ_GC_EVERY=N collects every N inputs instead (faster, but libFuzzer
 * then soon turns off its per-input leak checks; leaks still show at exit). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

#include "ucwa.h"
#include "fuzz_lua.h"

#ifndef FUZZ_FN
#define FUZZ_FN "parse"
#endif
#ifndef FUZZ_CT
#define FUZZ_CT "application/json"
#endif

#ifndef FUZZ_GC_EVERY
#define FUZZ_GC_EVERY 1
#endif

/* after a full collect the Lua heap may exceed its size after start-up by
 * this much (bytes); more means the module keeps objects alive across calls
 * (a registry/upvalue cache that grows), which is reported as a failure */
#ifndef FUZZ_HEAP_SLACK
#define FUZZ_HEAP_SLACK (1 << 20)
#endif

static lua_State *L;
static long heap_base; /* Lua heap in bytes after start-up */

static long lua_heap(void)
{
    return (long)lua_gc(L, LUA_GCCOUNT, 0) * 1024 + lua_gc(L, LUA_GCCOUNTB, 0);
}

/* stack slots kept for the whole run: the driver chunk and the module table */
enum { DRIVER = 1, CORE = 2 };

/* message handler: the escaped error with a traceback */
static int traceback(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    if (msg == NULL) msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    luaL_traceback(L, L, msg, 1);
    return 1;
}

/* The driver: the parse function on the input, then checks of what it gave.
 * A model is checked whole (every string valid UTF-8: the parser repairs
 * ill-formed input; properties, links and embedded tables; the properties
 * through encode and date); an event batch sender by sender and event by
 * event, each embedded resource as a model and each reason as an error
 * object, so the event targets exercise the whole event parser, not just
 * its first lines. */
static const char driver[] =
    "local core, body, fn, ct = ...\n"
    "local function strings(v, depth)\n"
    "  if type(v) == 'string' then assert(utf8.len(v), 'invalid UTF-8 in a model')\n"
    "  elseif type(v) == 'table' then\n"
    "    assert(depth < 200, 'model too deep')\n"
    "    for k, x in pairs(v) do strings(k, depth + 1); strings(x, depth + 1) end\n"
    "  end\n"
    "end\n"
    "local function model(m)\n"
    "  assert(type(m) == 'table')\n"
    "  assert(type(m.properties) == 'table' and type(m.links) == 'table' and type(m.embedded) == 'table')\n"
    "  -- the properties of a parsed body are sendable unless they hold objects/odd text\n"
    "  pcall(core.encode, m.properties, 'xml')\n"
    "  pcall(core.encode, m.properties, 'json')\n"
    "  for _, v in pairs(m.properties) do if type(v) == 'string' then core.date(v) end end\n"
    "end\n"
    "local res, err = core[fn](body, ct)\n"
    "if res == nil then\n"
    "  assert(getmetatable(err) == core.error_mt and err.code == 'ParseError', 'bad error object')\n"
    "  assert(type(err.message) == 'string' and #err.message > 0)\n"
    "  assert(tostring(err))\n"
    "else\n"
    "  strings(res, 0)\n"
    "  if fn == 'parse' then\n"
    "    model(res)\n"
    "  else\n"
    "    assert(type(res.senders) == 'table' and type(res.links) == 'table')\n"
    "    for _, s in ipairs(res.senders) do\n"
    "      assert(type(s) == 'table' and type(s.events) == 'table', 'bad sender')\n"
    "      for _, ev in ipairs(s.events) do\n"
    "        assert(type(ev) == 'table', 'bad event')\n"
    "        if ev.resource ~= nil then model(ev.resource) end\n"
    "        if type(ev.reason) == 'table' then\n"
    "          assert(getmetatable(ev.reason) == core.error_mt, 'reason is not an error object')\n"
    "          assert(type(tostring(ev.reason)) == 'string')\n"
    "        end\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "local e = core.parse_error(body, ct, 404)\n"
    "assert(getmetatable(e) == core.error_mt and type(e.code) == 'string')\n";

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    L = fuzz_lua_open(driver, sizeof driver - 1); /* DRIVER, CORE */
    ucwa_open_error(L); /* error objects first, as core.c opens them */
    ucwa_open_parse(L); /* raises (aborts) if cjson cannot be loaded */
    /* small limits so deep/large inputs exercise the limit paths */
    lua_getfield(L, CORE, "set_limits");
    lua_createtable(L, 0, 2);
    lua_pushinteger(L, 32);
    lua_setfield(L, -2, "max_depth");
    lua_pushinteger(L, 1 << 20);
    lua_setfield(L, -2, "max_body");
    lua_call(L, 1, 0);
    lua_settop(L, CORE);
    lua_gc(L, LUA_GCCOLLECT, 0);
    heap_base = lua_heap();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static unsigned long n;
    int top = lua_gettop(L);
    lua_pushcfunction(L, traceback);
    lua_pushvalue(L, DRIVER);
    lua_pushvalue(L, CORE);
    lua_pushlstring(L, (const char *)data, size);
    lua_pushliteral(L, FUZZ_FN);
    lua_pushliteral(L, FUZZ_CT);
    if (lua_pcall(L, 4, 0, top + 1) != LUA_OK) {
        fprintf(stderr, "Lua error escaped from ucwa.core: %s\n", lua_tostring(L, -1));
        abort();
    }
    if (lua_gettop(L) != top + 1) { /* only the message handler is left */
        fprintf(stderr, "Lua stack unbalanced after the driver: %d, expected %d\n", lua_gettop(L), top + 1);
        abort();
    }
    lua_settop(L, top);
    if (++n % FUZZ_GC_EVERY == 0) {
        lua_gc(L, LUA_GCCOLLECT, 0);
        if (lua_heap() > heap_base + FUZZ_HEAP_SLACK) {
            fprintf(stderr,
                    "Lua heap grows across inputs: %ld bytes after a full collect, "
                    "%ld after start-up\n",
                    lua_heap(), heap_base);
            abort();
        }
    }
    return 0;
}

/* libFuzzer target for the parsers of ucwa.core. One source, four targets:
 * FUZZ_FN is "parse" or "parse_events", FUZZ_CT the content type. The parse
 * sources (src/parse*.c, encode.c, date.c) are compiled in; lua-cjson is
 * loaded by require from the system's Lua 5.4 cpath.
 * Each input is also run through parse_error and, when it parses, the model's
 * properties through encode("xml"/"json"). Lua errors are caught by pcall:
 * only argument errors may raise, and the harness passes proper arguments,
 * so any raised error is reported as a crash. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

#include "ucwa.h"

#ifndef FUZZ_FN
#define FUZZ_FN "parse"
#endif
#ifndef FUZZ_CT
#define FUZZ_CT "application/json"
#endif

static lua_State *L;

static const char driver[] =
    "local core, body, fn, ct = ...\n"
    "local res, err = core[fn](body, ct)\n"
    "if res == nil then\n"
    "  assert(getmetatable(err) == core.error_mt and err.code == 'ParseError', 'bad error object')\n"
    "  assert(type(err.message) == 'string' and #err.message > 0)\n"
    "  assert(tostring(err))\n"
    "else\n"
    "  assert(type(res) == 'table')\n"
    "  if fn == 'parse' then\n"
    "    assert(type(res.properties) == 'table' and type(res.links) == 'table' and type(res.embedded) == 'table')\n"
    "    -- the properties of a parsed body are sendable unless they hold objects/odd text\n"
    "    pcall(core.encode, res.properties, 'xml')\n"
    "    pcall(core.encode, res.properties, 'json')\n"
    "    for _, v in pairs(res.properties) do if type(v) == 'string' then core.date(v) end end\n"
    "  else\n"
    "    assert(type(res.senders) == 'table' and type(res.links) == 'table')\n"
    "  end\n"
    "end\n"
    "local e = core.parse_error(body, ct, 404)\n"
    "assert(getmetatable(e) == core.error_mt and type(e.code) == 'string')\n";

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc; (void)argv;
    L = luaL_newstate();
    luaL_openlibs(L);
    lua_newtable(L);
    ucwa_open_parse(L);  /* raises (aborts) if cjson cannot be loaded */
    lua_setglobal(L, "core");
    if (luaL_loadbuffer(L, driver, sizeof driver - 1, "=driver") != LUA_OK) {
        fprintf(stderr, "%s\n", lua_tostring(L, -1));
        abort();
    }
    lua_setglobal(L, "driver");
    /* small limits so deep/large inputs exercise the limit paths */
    lua_getglobal(L, "core");
    lua_getfield(L, -1, "set_limits");
    lua_createtable(L, 0, 2);
    lua_pushinteger(L, 32);
    lua_setfield(L, -2, "max_depth");
    lua_pushinteger(L, 1 << 20);
    lua_setfield(L, -2, "max_body");
    lua_call(L, 1, 0);
    lua_settop(L, 0);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static unsigned long n;
    lua_getglobal(L, "driver");
    lua_getglobal(L, "core");
    lua_pushlstring(L, (const char *)data, size);
    lua_pushliteral(L, FUZZ_FN);
    lua_pushliteral(L, FUZZ_CT);
    if (lua_pcall(L, 4, 0, 0) != LUA_OK) {
        fprintf(stderr, "Lua error escaped from ucwa.core: %s\n", lua_tostring(L, -1));
        abort();
    }
    lua_settop(L, 0);
    if (++n % 1000 == 0)
        lua_gc(L, LUA_GCCOLLECT, 0);
    return 0;
}

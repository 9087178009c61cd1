/* libFuzzer target for the multipart/batching reader of ucwa.core
 * (src/multipart.c: GMime for MIME, http-parser for each part's HTTP
 * message). The input's first byte picks what is read (requests or
 * responses) and whether the Content-Type's boundary is "B" or missing; the
 * rest is the body. Every answer must be nil and a message, or a list of
 * parts each with an error message or a well-formed message table; a Lua
 * error escaping, a crash, a leak or a sanitizer report is a finding. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

#include "ucwa.h"
#include "fuzz_lua.h"

static lua_State *L;

static const char driver[] =
    "local core, body, kind, ct = ...\n"
    "local parts, err = core.multipart_parse(body, ct, kind)\n"
    "if parts == nil then assert(type(err) == 'string' and #err > 0, 'no message'); return end\n"
    "assert(type(parts) == 'table')\n"
    "for i, p in ipairs(parts) do\n"
    "  if p.error then assert(type(p.error) == 'string' and p.error:find('part ' .. i, 1, true) == 1)\n"
    "  else\n"
    "    assert(type(p.headers) == 'table' and type(p.body) == 'string')\n"
    "    for k, v in pairs(p.headers) do assert(type(k) == 'string' and k == k:lower() and type(v) == 'string') end\n"
    "    if kind == 'response' then assert(math.type(p.status) == 'integer')\n"
    "    else assert(type(p.method) == 'string' and type(p.target) == 'string') end\n"
    "  end\n"
    "end\n"
    "-- writing it again either works or raises a message (never a crash)\n"
    "local ok, e = pcall(core.multipart_build, parts, kind)\n"
    "assert(ok or type(e) == 'string', 'build raised a non-string')\n";

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    L = fuzz_lua_open(driver, sizeof driver - 1); /* the driver, the module table */
    ucwa_open_multipart(L);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int top = lua_gettop(L);
    unsigned mode = size ? data[0] : 0;
    lua_pushvalue(L, 1); /* the driver */
    lua_pushvalue(L, 2); /* the module table */
    lua_pushlstring(L, size ? (const char *)data + 1 : "", size ? size - 1 : 0);
    lua_pushstring(L, (mode & 1) ? "request" : "response");
    lua_pushstring(L, (mode & 2) ? "multipart/batching" : "multipart/batching; boundary=\"B\"");
    if (lua_pcall(L, 4, 0, 0) != LUA_OK) {
        fprintf(stderr, "Lua error escaped from the multipart reader: %s\n", lua_tostring(L, -1));
        abort();
    }
    lua_settop(L, top);
    lua_gc(L, LUA_GCCOLLECT, 0);
    return 0;
}

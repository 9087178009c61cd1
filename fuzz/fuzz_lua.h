/* What the targets that run a Lua driver over ucwa.core's C functions
 * (fuzz_ucwa.c, fuzz_multipart.c) start from: one lua_State with the
 * standard libraries, the compiled driver at stack index 1 and an empty
 * module table at 2 for the target's ucwa_open_* calls. A driver that does
 * not compile is a bug in the target: it aborts. */
#ifndef UCWA_FUZZ_LUA_H
#define UCWA_FUZZ_LUA_H

#include <stdio.h>
#include <stdlib.h>
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

static lua_State *fuzz_lua_open(const char *driver, size_t len)
{
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    if (luaL_loadbuffer(L, driver, len, "=driver") != LUA_OK) {
        fprintf(stderr, "%s\n", lua_tostring(L, -1));
        abort();
    }
    lua_newtable(L);
    return L;
}

#endif

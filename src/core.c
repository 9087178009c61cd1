/* luaopen_ucwa_core: the module table, filled in by each part of the core. */
#include "ucwa.h"

int luaopen_ucwa_core(lua_State *L)
{
    lua_newtable(L);
    ucwa_open_parse(L);
    ucwa_open_engine(L);
    ucwa_open_util(L);
    lua_pushliteral(L, "0.2.0");   /* the rockspec's version (spec/01) */
    lua_setfield(L, -2, "_VERSION");
    return 1;
}

/* luaopen_ucwa_core: the module table, filled in by each part of the core.
 * The order matters twice: error objects before anything that makes them,
 * and the parser and the engine class before the event channel, which takes
 * parse_events and parse_error as upvalues and adds a method to the engine. */
#include "ucwa.h"

#ifndef UCWA_VERSION
#error "UCWA_VERSION is set by the Makefile from the rockspec"
#endif

int luaopen_ucwa_core(lua_State *L)
{
    lua_newtable(L);
    ucwa_open_error(L);
    ucwa_open_parse(L);
    ucwa_open_loop(L);
    ucwa_open_request(L);
    ucwa_open_timer(L);
    ucwa_open_channel(L);
    ucwa_open_url(L);
    ucwa_open_dataurl(L);
    ucwa_open_multipart(L);
    ucwa_open_store_sqlite(L);
    ucwa_open_redis(L);
    lua_pushliteral(L, UCWA_VERSION); /* the rockspec's, from the Makefile (spec/01) */
    lua_setfield(L, -2, "_VERSION");
    return 1;
}

/* The parts of the ucwa.core C module: each adds its functions (and classes)
 * to the module table on top of the stack. core.c calls them, in order. */
#ifndef UCWA_H
#define UCWA_H

#include <lua.h>
#include <lauxlib.h>

void ucwa_open_error(lua_State *L);   /* error.c: error, error_mt */
void ucwa_open_parse(lua_State *L);   /* parse.c: parse, parse_events, parse_error, encode, date, set_limits, null */
void ucwa_open_loop(lua_State *L);    /* loop.c: engine (step, pollfd, events, timeout, stats, close) */
void ucwa_open_request(lua_State *L); /* request.c: eng:request */
void ucwa_open_timer(lua_State *L);   /* timer.c: eng:timer */
void ucwa_open_channel(lua_State *L); /* channel_lua.c: eng:channel (uses parse_events and parse_error) */
void ucwa_open_url(lua_State *L);     /* url.c: url_resolve, url_with_query, url_parts, url_origin */
void ucwa_open_dataurl(lua_State *L); /* dataurl.c: data_url */
void ucwa_open_multipart(lua_State *L); /* multipart.c: multipart_build, multipart_parse (also in ucwa-sim) */
void ucwa_open_store_sqlite(lua_State *L); /* store_sqlite.c: sqlite_open (the session store, docs/store.md) */
void ucwa_open_redis(lua_State *L);   /* redis.c: eng:redis (hiredis on the engine's loop) */

#endif

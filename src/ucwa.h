/* Shared declarations of the ucwa.core C module. */
#ifndef UCWA_H
#define UCWA_H

#include <lua.h>
#include <lauxlib.h>

/* Each part adds its functions to the module table on top of the stack. */
void ucwa_open_parse(lua_State *L);   /* parse, parse_events, parse_error, encode, date */
void ucwa_open_engine(lua_State *L);  /* engine, url helpers */
void ucwa_open_util(lua_State *L);    /* data_url */

#endif

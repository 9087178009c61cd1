/* Error objects: plain tables {status=, code=, subcode=, message=, ...} with
 * one metatable, so the parser, the transport, the event channel and the Lua
 * layer all make errors of one kind (Lua-cURLv3's lcerror.c is the model).
 *
 *   core.error_mt                 the metatable ("ucwa.error" in the registry)
 *   core.error(t) -> err          t itself, with that metatable
 *   tostring(err)                 "503 ServiceUnavailable/Sub: message" */
#include <string.h>

#include "ucwa.h"
#include "error.h"

const char *ucwa_status_code(int status)
{
    switch (status) {
    case 400: return "BadRequest";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "NotFound";
    case 405: return "MethodNotAllowed";
    case 406: return "NotAcceptable";
    case 408: return "Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 412: return "PreconditionFailed";
    case 413: return "EntityTooLarge";
    case 415: return "UnsupportedMediaType";
    case 428: return "PreconditionRequired";
    case 429: return "TooManyRequests";
    case 500: return "ServiceFailure";
    case 502: return "ServiceFailure";
    case 503: return "ServiceUnavailable";
    case 504: return "GatewayTimeout";
    }
    if (status >= 400 && status < 500) return "BadRequest";
    if (status >= 500 && status < 600) return "ServiceFailure";
    return "HttpError";
}

void ucwa_error_setmt(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    luaL_getmetatable(L, UCWA_ERROR_MT);
    lua_setmetatable(L, idx);
}

void ucwa_error_push(lua_State *L, int status, const char *code, const char *subcode, const char *fmt, ...)
{
    lua_createtable(L, 0, 4);
    if (status > 0) {
        lua_pushinteger(L, status);
        lua_setfield(L, -2, "status");
    }
    ucwa_set_str(L, -1, "code", code);
    ucwa_set_str(L, -1, "subcode", subcode);
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        ucwa_pushvf(L, fmt, ap);
        va_end(ap);
        lua_setfield(L, -2, "message");
    }
    luaL_setmetatable(L, UCWA_ERROR_MT);
}

/* Adds prefix .. t[k] .. suffix to the buffer when t[k] (t at index 1) is a
 * string or a number (an integer only, with int_only); returns whether it did.
 * The text is made in one stack slot right above the buffer's, where
 * luaL_addvalue wants it (a value left below would break a growing buffer). */
static int add_field(lua_State *L, luaL_Buffer *b, const char *k, const char *prefix, const char *suffix, int int_only)
{
    int t = lua_getfield(L, 1, k);
    if (t == LUA_TSTRING || (int_only ? lua_isinteger(L, -1) : t == LUA_TNUMBER)) {
        lua_pushstring(L, prefix);
        lua_insert(L, -2);
        lua_pushstring(L, suffix);
        lua_concat(L, 3);
        luaL_addvalue(b);
        return 1;
    }
    lua_pop(L, 1);
    return 0;
}

/* "status code/subcode: message", each part left out when absent; never
 * raises on odd field types (an error handler may call it). */
static int err_tostring(lua_State *L)
{
    luaL_Buffer b;
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_buffinit(L, &b);
    add_field(L, &b, "status", "", " ", 1);
    if (!add_field(L, &b, "code", "", "", 0)) luaL_addstring(&b, "Error");
    add_field(L, &b, "subcode", "/", "", 0);
    add_field(L, &b, "message", ": ", "", 0);
    luaL_pushresult(&b);
    return 1;
}

/* core.error(t): an error object from a table {status=, code=, subcode=,
 * message=, ...}. A plain table gets the metatable and is returned; an error
 * object is returned as it is; a table with another metatable is copied
 * (field by field, raw), so the constructor never changes what another
 * library made. */
static int l_error(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    if (!lua_getmetatable(L, 1)) {
        luaL_setmetatable(L, UCWA_ERROR_MT);
        return 1;
    }
    luaL_getmetatable(L, UCWA_ERROR_MT);
    if (lua_rawequal(L, -1, -2)) {
        lua_settop(L, 1);
        return 1;
    }
    lua_settop(L, 1);
    lua_newtable(L);
    lua_pushnil(L);
    while (lua_next(L, 1)) {
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, 2);
    }
    luaL_setmetatable(L, UCWA_ERROR_MT);
    return 1;
}

void ucwa_open_error(lua_State *L)
{
    luaL_newmetatable(L, UCWA_ERROR_MT);
    lua_pushcfunction(L, err_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_setfield(L, -2, "error_mt");
    lua_pushcfunction(L, l_error);
    lua_setfield(L, -2, "error");
}

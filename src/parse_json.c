/* JSON bodies into the resource model and event batches.
 *
 * lua-cjson has no C API: the body is decoded by a private cjson.safe
 * instance (its decode held as an upvalue, so the user's cjson settings are
 * untouched), and the decoded table is then reshaped in place: `rel`,
 * `_links` and `_embedded` taken out, the rest is `properties`. So the model
 * costs little more than the decode. */
#include <ctype.h>
#include <string.h>

#include "error.h"
#include "parse.h"

/* Decodes the body; pushes the decoded object, or nil + error (returns 2). */
int ucwa_json_decode(lua_State *L, const char *b, size_t len, size_t skipped)
{
    if (len == 0) return ucwa_parse_fail(L, "SyntaxError", "empty JSON body");
    if (*b != '{')
        return ucwa_parse_fail(L, "UnexpectedShape", "JSON body is not an object (starts with '%c' at byte %zu)",
                               isprint((unsigned char)*b) ? *b : '?', skipped);
    lua_pushvalue(L, lua_upvalueindex(UV_DECODE));
    if (skipped)
        lua_pushlstring(L, b, len);
    else
        lua_pushvalue(L, 1);
    lua_call(L, 1, 2);
    if (lua_type(L, -2) != LUA_TTABLE) {
        const char *msg = lua_tostring(L, -1);
        if (!msg) msg = "not an object";
        return ucwa_parse_fail(L, strstr(msg, "nested") ? "NestingTooDeep" : "SyntaxError", "invalid JSON: %s%s", msg,
                               skipped ? " (after a BOM/leading blanks)" : "");
    }
    lua_pop(L, 1);
    return 0;
}

/* Cleans decoded values in place: JSON null members are dropped (as XML
 * xsi:nil), integral numbers become integers. */
static void json_clean(lua_State *L, int t)
{
    luaL_checkstack(L, 4, "JSON nesting");
    lua_pushnil(L);
    while (lua_next(L, t)) {
        switch (lua_type(L, -1)) {
        case LUA_TNUMBER:
            if (!lua_isinteger(L, -1)) {
                lua_Number d = lua_tonumber(L, -1);
                lua_pushvalue(L, -2);
                ucwa_push_number(L, d);
                lua_rawset(L, t);
            }
            break;
        case LUA_TLIGHTUSERDATA:
            if (lua_type(L, -2) == LUA_TSTRING) { /* null member; kept in arrays */
                lua_pushvalue(L, -2);
                lua_pushnil(L);
                lua_rawset(L, t);
            }
            break;
        case LUA_TTABLE: json_clean(L, lua_gettop(L)); break;
        }
        lua_pop(L, 1);
    }
}

/* Pushes t[k] (k a UV_K_* key) when it is a table (returns 1), else a new
 * empty table (returns 0). With take, a table is also taken out of t
 * (t[k] = nil). */
static int table_field(lua_State *L, int t, int k, int take)
{
    if (ucwa_getkey(L, t, k) == LUA_TTABLE) {
        if (take) {
            ucwa_pushkey(L, k);
            lua_pushnil(L);
            lua_rawset(L, t);
        }
        return 1;
    }
    lua_pop(L, 1);
    lua_createtable(L, 0, 0);
    return 0;
}

/* In a lua_next loop over table x, key and value on top: pops the value and
 * removes the entry (lua_next allows clearing fields during the traversal). */
static void drop_entry(lua_State *L, int x)
{
    lua_pop(L, 1);
    lua_pushvalue(L, -1);
    lua_pushnil(L);
    lua_rawset(L, x);
}

/* Likewise with a string value: x[key] = {href = value}, wrapped in an array
 * when coll; pops the value. */
static void href_entry(lua_State *L, int x, int coll)
{
    lua_pushvalue(L, -2);
    lua_createtable(L, 0, 1);
    ucwa_pushkey(L, UV_K_HREF);
    lua_pushvalue(L, -4);
    lua_rawset(L, -3);
    if (coll) ucwa_wrap1(L);
    lua_rawset(L, x);
    lua_pop(L, 1);
}

/* Turns the decoded JSON object on top of the stack into a resource model,
 * in place of it. */
void ucwa_json_resource(lua_State *L)
{
    int t = lua_gettop(L), m, x;
    const char *rel = NULL;

    luaL_checkstack(L, 10, "JSON nesting");
    lua_createtable(L, 0, 5);
    m = t + 1;
    if (ucwa_getkey(L, t, UV_K_REL) == LUA_TSTRING) {
        rel = lua_tostring(L, -1);
        ucwa_setkey(L, m, UV_K_REL);
        ucwa_pushkey(L, UV_K_REL);
        lua_pushnil(L);
        lua_rawset(L, t);
    } else {
        lua_pop(L, 1);
    }

    if (table_field(L, t, UV_K_JLINKS, 1)) {
        /* short strings are interned: a key is "self" iff it is this string */
        const char *self = lua_tostring(L, lua_upvalueindex(UV_K_SELF)), *k;
        x = lua_gettop(L);
        lua_pushnil(L);
        while (lua_next(L, x)) {
            int vt = lua_type(L, -1);
            if (lua_type(L, -2) != LUA_TSTRING) {
                drop_entry(L, x);
            } else if ((k = lua_tostring(L, -2)) == self) {
                if (vt == LUA_TTABLE && ucwa_getkey(L, x + 2, UV_K_HREF) == LUA_TSTRING)
                    ucwa_setkey(L, m, UV_K_HREF);
                else if (vt == LUA_TSTRING)
                    ucwa_setkey(L, m, UV_K_HREF);
                lua_settop(L, x + 2); /* key, value (or nil in its place) */
                drop_entry(L, x);
            } else if (vt == LUA_TTABLE) {
                /* a collection rel, the schema says, given as one link */
                if (ucwa_schema_coll(rel, k) && lua_rawlen(L, -1) == 0) {
                    lua_pushvalue(L, -2);
                    lua_pushvalue(L, -2);
                    ucwa_wrap1(L);
                    lua_rawset(L, x);
                }
                lua_pop(L, 1);
            } else if (vt == LUA_TSTRING) { /* "rel": "href" */
                href_entry(L, x, ucwa_schema_coll(rel, k));
            } else {
                drop_entry(L, x);
            }
        }
    }
    ucwa_setkey(L, m, UV_K_LINKS);

    if (table_field(L, t, UV_K_JEMBEDDED, 1)) {
        x = lua_gettop(L);
        lua_pushnil(L);
        while (lua_next(L, x)) {
            const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
            if (k && lua_type(L, -1) == LUA_TTABLE) {
                lua_Integer n = (lua_Integer)lua_rawlen(L, -1), i, j = 0;
                int v = lua_gettop(L);
                if (n > 0) {
                    lua_pushvalue(L, -2);
                    lua_createtable(L, (int)n, 0);
                    for (i = 1; i <= n; i++) {
                        if (lua_rawgeti(L, v, i) == LUA_TTABLE) {
                            ucwa_json_resource(L);
                            lua_rawseti(L, -2, ++j);
                        } else {
                            lua_pop(L, 1);
                        }
                    }
                    lua_rawset(L, x);
                } else if (lua_pushnil(L), lua_next(L, v)) { /* one resource */
                    lua_pop(L, 2);
                    lua_pushvalue(L, -2);
                    lua_pushvalue(L, v);
                    ucwa_json_resource(L);
                    if (ucwa_schema_coll(rel, k)) ucwa_wrap1(L);
                    lua_rawset(L, x);
                } /* else {}: an empty collection, kept */
                lua_settop(L, v - 1);
            } else {
                drop_entry(L, x);
            }
        }
    }
    ucwa_setkey(L, m, UV_K_EMBEDDED);

    json_clean(L, t);
    lua_pushvalue(L, t);
    ucwa_setkey(L, m, UV_K_PROPERTIES);
    lua_replace(L, t);
    lua_settop(L, t);
}

/* Pushes t[k] when it is a table (returns 1); a nil one becomes a new empty
 * table, stored as t[k]. Else returns 0, the value on top. */
static int array_field(lua_State *L, int t, const char *k)
{
    switch (lua_getfield(L, t, k)) {
    case LUA_TTABLE: return 1;
    case LUA_TNIL:
        lua_pop(L, 1);
        lua_createtable(L, 0, 0);
        lua_pushvalue(L, -1);
        lua_setfield(L, t, k);
        return 1;
    }
    return 0;
}

/* The decoded JSON event batch on top → the events model, in place. */
int ucwa_json_events(lua_State *L)
{
    int t = lua_gettop(L), b, s, ev;
    lua_Integer ns, i;

    luaL_checkstack(L, 12, NULL);
    lua_createtable(L, 0, 2);
    b = t + 1;
    if (table_field(L, t, UV_K_JLINKS, 0)) {
        int x = lua_gettop(L);
        lua_pushnil(L);
        while (lua_next(L, x)) {
            if (lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TSTRING)
                href_entry(L, x, 0);
            else if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TTABLE)
                drop_entry(L, x);
            else
                lua_pop(L, 1);
        }
    }
    ucwa_setkey(L, b, UV_K_LINKS);

    if (!array_field(L, t, "sender"))
        return ucwa_parse_fail(L, "UnexpectedShape", "event batch: 'sender' is a %s, expected an array",
                               luaL_typename(L, -1));
    s = lua_gettop(L);
    ns = (lua_Integer)lua_rawlen(L, s);
    for (i = 1; i <= ns; i++) {
        lua_Integer ne, j;
        if (lua_rawgeti(L, s, i) != LUA_TTABLE)
            return ucwa_parse_fail(L, "UnexpectedShape", "event batch: sender[%d] is not an object", (int)i);
        if (!array_field(L, s + 1, "events"))
            return ucwa_parse_fail(L, "UnexpectedShape", "event batch: sender[%d].events is not an array", (int)i);
        ev = lua_gettop(L);
        ne = (lua_Integer)lua_rawlen(L, ev);
        for (j = 1; j <= ne; j++) {
            int e;
            if (lua_rawgeti(L, ev, j) != LUA_TTABLE)
                return ucwa_parse_fail(L, "UnexpectedShape", "event batch: sender[%d].events[%d] is not an object",
                                       (int)i, (int)j);
            e = lua_gettop(L);
            if (lua_getfield(L, e, "_embedded") == LUA_TTABLE) {
                lua_pushnil(L);
                if (lua_next(L, -2)) { /* the (first) embedded resource */
                    if (lua_type(L, -1) == LUA_TTABLE && lua_rawlen(L, -1) > 0) lua_rawgeti(L, -1, 1);
                    if (lua_type(L, -1) == LUA_TTABLE) {
                        ucwa_json_resource(L);
                        lua_setfield(L, e, "resource");
                    }
                }
                lua_pushnil(L);
                lua_setfield(L, e, "_embedded");
            }
            lua_settop(L, e);
            if (lua_getfield(L, e, "reason") == LUA_TTABLE) {
                json_clean(L, lua_gettop(L));
                ucwa_bag(L, -1, -1, "parameters");
                ucwa_bag(L, -1, -1, "debugInfo");
                luaL_setmetatable(L, UCWA_ERROR_MT);
            }
            lua_settop(L, ev);
        }
        lua_settop(L, s);
    }
    lua_setfield(L, b, "senders");
    lua_replace(L, t);
    lua_settop(L, t);
    return 0;
}

/* ucwa.encode(table, "json"|"xml") → body, content_type.
 * JSON through the private lua-cjson instance; XML as UCWA's <input> form:
 *   <input xmlns="http://schemas.microsoft.com/rtc/2012/03/ucwa">
 *     <property name="subject">Standup</property>
 *     <propertyList name="modalities"><item>Messaging</item></propertyList>
 *   </input>
 * Booleans are spelled True/False as in the docs' XML requests; properties
 * come sorted by name so the output is deterministic. Values that cannot be
 * sent (functions, nested objects in XML, control characters in XML, bad
 * UTF-8 in either format) are argument errors: they raise.
 * Links of the input (`_links = {message = {href = "data:..."}}`, as
 * startMessaging takes its first message) are `<link rel= href=/>` in XML,
 * after the properties, sorted by rel. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parse.h"

#define UCWA_NS "http://schemas.microsoft.com/rtc/2012/03/ucwa"

/* Length of a valid UTF-8 sequence at p (XML-allowed code point), or 0. */
static size_t utf8_len(const unsigned char *p, const unsigned char *end)
{
    unsigned c = p[0], cp;
    size_t n, i;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
        cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        cp = c & 0x07;
    } else
        return 0;
    if ((size_t)(end - p) < n) return 0;
    for (i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (p[i] & 0x3F);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)) || (cp >= 0xD800 && cp <= 0xDFFF) ||
        cp == 0xFFFE || cp == 0xFFFF)
        return 0;
    return n;
}

static void add_escaped(lua_State *L, luaL_Buffer *b, const char *s, size_t len, const char *what)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + len;
    while (p < end) {
        const unsigned char *q = p;
        /* copy a run of plain bytes at once */
        while (q < end && *q >= 0x20 && *q < 0x80 && *q != '&' && *q != '<' && *q != '>' && *q != '"') q++;
        if (q > p) luaL_addlstring(b, (const char *)p, (size_t)(q - p));
        p = q;
        if (p >= end) break;
        switch (*p) {
        case '&':
            luaL_addstring(b, "&amp;");
            p++;
            continue;
        case '<':
            luaL_addstring(b, "&lt;");
            p++;
            continue;
        case '>':
            luaL_addstring(b, "&gt;");
            p++;
            continue;
        case '"':
            luaL_addstring(b, "&quot;");
            p++;
            continue;
        case '\t':
            luaL_addstring(b, "&#9;");
            p++;
            continue;
        case '\n':
            luaL_addstring(b, "&#10;");
            p++;
            continue;
        case '\r':
            luaL_addstring(b, "&#13;");
            p++;
            continue;
        }
        if (*p < 0x20) ucwa_raise(L, "ucwa.encode: %s has control character 0x%02x, which XML cannot carry", what, *p);
        {
            size_t n = utf8_len(p, end);
            if (!n)
                ucwa_raise(L, "ucwa.encode: %s is not valid UTF-8 (byte %d)", what,
                           (int)(p - (const unsigned char *)s) + 1);
            luaL_addlstring(b, (const char *)p, n);
            p += n;
        }
    }
}

/* The scalar at the top of the stack as text: popped, its bytes in *s (kept
 * alive by the table it came from, or copied to tmp). Values may not stay on
 * the stack while a luaL_Buffer is in use. Returns 0 (nothing popped) when
 * it is not a scalar. */
static int scalar_text(lua_State *L, char tmp[64], const char **s, size_t *len, const char *what)
{
    switch (lua_type(L, -1)) {
    case LUA_TBOOLEAN:
        *s = lua_toboolean(L, -1) ? "True" : "False";
        *len = strlen(*s);
        break;
    case LUA_TNUMBER:
        if (lua_isinteger(L, -1)) {
            snprintf(tmp, 64, LUA_INTEGER_FMT, (LUAI_UACINT)lua_tointeger(L, -1));
        } else {
            lua_Number d = lua_tonumber(L, -1);
            if (d != d || d - d != 0) ucwa_raise(L, "ucwa.encode: %s is not a finite number", what);
            snprintf(tmp, 64, "%.17g", (double)d);
        }
        *s = tmp;
        *len = strlen(tmp);
        break;
    case LUA_TSTRING: *s = lua_tolstring(L, -1, len); break;
    default: return 0;
    }
    lua_pop(L, 1);
    return 1;
}

static int is_null(lua_State *L, int idx)
{
    return lua_type(L, idx) == LUA_TLIGHTUSERDATA && !lua_touserdata(L, idx);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The `_links` of the input table t as XML <link> elements, pushed as one
 * string (empty without links). Every rel and href must be a string. */
static void links_xml(lua_State *L, int t)
{
    luaL_Buffer b;
    const char **rels;
    size_t n = 0, i, len;
    int links, reltab;
    if (lua_getfield(L, t, "_links") == LUA_TNIL) {
        lua_pop(L, 1);
        lua_pushliteral(L, "");
        return;
    }
    if (lua_type(L, -1) != LUA_TTABLE) ucwa_raise(L, "ucwa.encode: _links must be a table of rel -> {href =}");
    links = lua_gettop(L);
    lua_newtable(L);
    reltab = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, links)) {
        if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TTABLE ||
            lua_getfield(L, -1, "href") != LUA_TSTRING)
            ucwa_raise(L, "ucwa.encode: _links must be a table of rel -> {href = string}");
        lua_pop(L, 2);
        lua_pushvalue(L, -1);
        lua_rawseti(L, reltab, (lua_Integer)++n);
    }
    rels = (const char **)lua_newuserdatauv(L, (n ? n : 1) * sizeof *rels, 0);
    for (i = 0; i < n; i++) {
        lua_rawgeti(L, reltab, (lua_Integer)i + 1);
        rels[i] = lua_tostring(L, -1); /* anchored in reltab */
        lua_pop(L, 1);
    }
    qsort(rels, n, sizeof *rels, cmp_str);
    /* the hrefs, in rel order, anchored in reltab after the rels */
    for (i = 0; i < n; i++) {
        lua_getfield(L, links, rels[i]);
        lua_getfield(L, -1, "href");
        lua_rawseti(L, reltab, (lua_Integer)(n + i + 1));
        lua_pop(L, 1);
    }
    luaL_buffinit(L, &b);
    for (i = 0; i < n; i++) {
        const char *href;
        lua_rawgeti(L, reltab, (lua_Integer)(n + i + 1));
        href = lua_tolstring(L, -1, &len);
        lua_pop(L, 1); /* still anchored in reltab */
        luaL_addstring(&b, "\n  <link rel=\"");
        add_escaped(L, &b, rels[i], strlen(rels[i]), "a link rel");
        luaL_addstring(&b, "\" href=\"");
        add_escaped(L, &b, href, len, rels[i]);
        luaL_addstring(&b, "\" />");
    }
    luaL_pushresult(&b);
    lua_replace(L, links); /* the string where the links table was; reltab and rels go */
    lua_settop(L, links);
}

static int encode_xml(lua_State *L)
{
    luaL_Buffer b;
    const char **keys;
    size_t nkeys = 0, i, len;
    int t = 1, keytab, links;
    char tmp[64];
    const char *s;

    /* sorted string keys, anchored in a table so the pointers stay valid;
     * values are checked before the buffer starts */
    lua_newtable(L);
    keytab = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, t)) {
        if (lua_type(L, -2) != LUA_TSTRING)
            ucwa_raise(L, "ucwa.encode: XML property names must be strings (got a %s key)", luaL_typename(L, -2));
        if (!strcmp(lua_tostring(L, -2), "_links")) {
            lua_pop(L, 1); /* written apart: links_xml */
            continue;
        }
        if (lua_type(L, -1) == LUA_TTABLE) {
            lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
            int arr = lua_gettop(L);
            lua_pushnil(L);
            while (lua_next(L, arr)) {
                if (!lua_isinteger(L, -2) || lua_tointeger(L, -2) < 1 || lua_tointeger(L, -2) > n)
                    ucwa_raise(L, "ucwa.encode: XML property '%s' is a table that is not a list",
                               lua_tostring(L, arr - 1));
                if (lua_type(L, -1) == LUA_TTABLE || (!is_null(L, -1) && lua_type(L, -1) > LUA_TSTRING) ||
                    lua_isnil(L, -1))
                    ucwa_raise(L, "ucwa.encode: XML property '%s' has a %s item", lua_tostring(L, arr - 1),
                               luaL_typename(L, -1));
                lua_pop(L, 1);
            }
        } else if (!is_null(L, -1) && lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER &&
                   lua_type(L, -1) != LUA_TBOOLEAN) {
            ucwa_raise(L, "ucwa.encode: XML property '%s' is a %s", lua_tostring(L, -2), luaL_typename(L, -1));
        }
        lua_pop(L, 1);
        lua_pushvalue(L, -1);
        lua_rawseti(L, keytab, (lua_Integer)++nkeys);
    }
    keys = (const char **)lua_newuserdatauv(L, (nkeys ? nkeys : 1) * sizeof *keys, 0);
    for (i = 0; i < nkeys; i++) {
        lua_rawgeti(L, keytab, (lua_Integer)i + 1);
        keys[i] = lua_tostring(L, -1);
        lua_pop(L, 1);
    }
    qsort(keys, nkeys, sizeof *keys, cmp_str);
    links_xml(L, t);
    links = lua_gettop(L);

    luaL_buffinit(L, &b);
    luaL_addstring(&b, "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<input xmlns=\"" UCWA_NS "\">");
    for (i = 0; i < nkeys; i++) {
        const char *k = keys[i];
        int type;
        if (!strcmp(k, "_links")) continue;
        type = lua_getfield(L, t, k);
        if (type == LUA_TTABLE) {
            lua_Integer n = (lua_Integer)lua_rawlen(L, -1), j;
            lua_pop(L, 1);
            luaL_addstring(&b, "\n  <propertyList name=\"");
            add_escaped(L, &b, k, strlen(k), "a property name");
            luaL_addstring(&b, "\">");
            for (j = 1; j <= n; j++) {
                lua_getfield(L, t, k);
                lua_rawgeti(L, -1, j);
                lua_remove(L, -2);
                if (is_null(L, -1)) {
                    lua_pop(L, 1);
                    luaL_addstring(&b,
                                   "<item xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xsi:nil=\"true\" />");
                    continue;
                }
                if (!scalar_text(L, tmp, &s, &len, k))
                    ucwa_raise(L, "ucwa.encode: item %d of XML property '%s' is not a scalar", (int)j, k);
                luaL_addstring(&b, "<item>");
                add_escaped(L, &b, s, len, k);
                luaL_addstring(&b, "</item>");
            }
            luaL_addstring(&b, "</propertyList>");
            continue;
        }
        if (is_null(L, -1)) {
            lua_pop(L, 1); /* null: left out, as a nil would be */
            continue;
        }
        if (!scalar_text(L, tmp, &s, &len, k)) ucwa_raise(L, "ucwa.encode: XML property '%s' is not a scalar", k);
        luaL_addstring(&b, "\n  <property name=\"");
        add_escaped(L, &b, k, strlen(k), "a property name");
        luaL_addstring(&b, "\">");
        add_escaped(L, &b, s, len, k);
        luaL_addstring(&b, "</property>");
    }
    s = lua_tolstring(L, links, &len);
    luaL_addlstring(&b, s, len);
    luaL_addstring(&b, "\n</input>\n");
    luaL_pushresult(&b);
    lua_pushliteral(L, "application/xml");
    return 2;
}

/* Raises when a string of the table at idx (keys and values, nested tables
 * too) is not UTF-8: cjson would send the bytes as they are, and the JSON
 * body would not be JSON. `what` names the property of the top level. */
static void check_json_utf8(lua_State *L, int idx, const char *what, int depth)
{
    if (depth > 1000) return; /* cjson refuses what is nested deeper */
    luaL_checkstack(L, 4, "ucwa.encode: nesting");
    idx = lua_absindex(L, idx);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        const char *name = what;
        size_t n, i;
        const char *s;
        if (lua_type(L, -2) == LUA_TSTRING) {
            s = lua_tolstring(L, -2, &n);
            if ((i = ucwa_utf8_valid_prefix(s, n)) < n)
                ucwa_raise(L, "ucwa.encode: a property name is not valid UTF-8 (byte %d)", (int)i + 1);
            if (!name) name = s;
        }
        if (lua_type(L, -1) == LUA_TSTRING) {
            s = lua_tolstring(L, -1, &n);
            if ((i = ucwa_utf8_valid_prefix(s, n)) < n)
                ucwa_raise(L, "ucwa.encode: %s is not valid UTF-8 (byte %d)", name ? name : "an item", (int)i + 1);
        } else if (lua_type(L, -1) == LUA_TTABLE) {
            check_json_utf8(L, -1, name, depth + 1);
        }
        lua_pop(L, 1);
    }
}

int ucwa_l_encode(lua_State *L)
{
    size_t n;
    const char *fmt;
    luaL_checktype(L, 1, LUA_TTABLE);
    fmt = luaL_optlstring(L, 2, "json", &n);
    lua_settop(L, 1);
    if (!strcmp(fmt, "xml")) return encode_xml(L);
    if (strcmp(fmt, "json")) return luaL_argerror(L, 2, "expected \"json\" or \"xml\"");
    check_json_utf8(L, 1, NULL, 0);
    lua_pushvalue(L, lua_upvalueindex(UV_ENCODE));
    lua_pushvalue(L, 1);
    lua_call(L, 1, 2);
    if (lua_type(L, -2) != LUA_TSTRING)
        return ucwa_raise(L, "ucwa.encode: %s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "cannot encode");
    lua_pop(L, 1);
    lua_pushliteral(L, "application/json");
    return 2;
}

/* ucwa.parse, ucwa.parse_events, ucwa.parse_error and the error objects.
 *
 * JSON goes through a private lua-cjson instance (cjson.safe.new(), held as an
 * upvalue: lua-cjson has no C API), then the decoded table is reshaped in
 * place into the resource model. XML goes through expat into a C tree
 * (parse_xml.c), which is then turned into the same model, typed and shaped
 * by the schema generated from the UCWA reference (schema.h). */
#include <ctype.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ucwa.h"
#include "model.h"
#include "schema.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

enum { F_NONE = 0, F_JSON = 1, F_XML = 2 };

/* t[k] = s, unless s is NULL. */
static void set_str(lua_State *L, int t, const char *k, const char *s)
{
    if (s) {
        lua_pushstring(L, s);
        lua_setfield(L, t, k);
    }
}

/* ------------------------------------------------------------------------ */
/* Error objects */

void ucwa_push_error(lua_State *L, int status, const char *code, const char *subcode, const char *message)
{
    int t;
    lua_createtable(L, 0, 4);
    t = lua_gettop(L);
    if (status > 0) {
        lua_pushinteger(L, status);
        lua_setfield(L, t, "status");
    }
    set_str(L, t, "code", code);
    set_str(L, t, "subcode", subcode);
    set_str(L, t, "message", message);
    luaL_setmetatable(L, UCWA_ERROR_MT);
}

int ucwa_parse_fail(lua_State *L, const char *subcode, const char *fmt, ...)
{
    char msg[320];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    lua_pushnil(L);
    ucwa_push_error(L, 0, "ParseError", subcode, msg);
    return 2;
}

/* Adds prefix .. t[k] .. suffix to the buffer when t[k] (t at index 1) is a
 * string or a number (an integer only, with int_only); returns whether it did.
 * The text is made in one stack slot right above the buffer's, where
 * luaL_addvalue wants it (a value left below would break a growing buffer). */
static int add_field(lua_State *L, luaL_Buffer *b, const char *k, const char *prefix, const char *suffix,
                     int int_only)
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

static int err_tostring(lua_State *L)
{
    luaL_Buffer b;
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_buffinit(L, &b);
    add_field(L, &b, "status", "", " ", 1);
    if (!add_field(L, &b, "code", "", "", 0))
        luaL_addstring(&b, "Error");
    add_field(L, &b, "subcode", "/", "", 0);
    add_field(L, &b, "message", ": ", "", 0);
    luaL_pushresult(&b);
    return 1;
}

/* core.error{status=, code=, subcode=, message=, ...}: gives the table the
 * error metatable and returns it. */
static int l_error(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    luaL_setmetatable(L, UCWA_ERROR_MT);
    return 1;
}

/* Code for an HTTP status when the body has none (ErrorCode_ref.md). */
static const char *code_for_status(int status)
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
    if (status >= 400 && status < 500)
        return "BadRequest";
    if (status >= 500 && status < 600)
        return "ServiceFailure";
    return "HttpError";
}

/* ------------------------------------------------------------------------ */
/* Schema lookups */

static int prop_cmp(const char *name, const char *rel, const ucwa_prop_type *e)
{
    int c = strcmp(name, e->name);
    return c ? c : strcmp(rel, e->rel);
}

/* The first entry of a schema table, sorted by the string member at `off` of
 * its `size`-byte entries, whose member is not below `key`. */
static inline size_t lower_bound(const void *tab, size_t n, size_t size, size_t off, const char *key)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (strcmp(*(const char *const *)((const char *)tab + mid * size + off), key) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

#define LOWER_BOUND(tab, type, member, key) \
    lower_bound((tab), NELEM(tab), sizeof(type), offsetof(type, member), (key))

/* The type of property `name` of a resource `rel` (NULL: unknown), or -1. */
static int prop_type(const char *rel, const char *name, int *item)
{
    size_t i = LOWER_BOUND(ucwa_prop_types, ucwa_prop_type, name, name);  /* first with this name */
    const ucwa_prop_type *def = NULL;
    for (; i < NELEM(ucwa_prop_types) && !strcmp(ucwa_prop_types[i].name, name); i++) {
        const ucwa_prop_type *e = &ucwa_prop_types[i];
        if (!e->rel[0])
            def = e;
        else if (rel && !strcmp(e->rel, rel)) {
            def = e;
            break;
        }
    }
    if (!def)
        return -1;
    *item = def->item;
    return def->type;
}

/* Whether links/embedded `rel` of a resource `parent` form a collection. */
static int is_collection(const char *parent, const char *rel)
{
    size_t i = LOWER_BOUND(ucwa_coll_rels, ucwa_coll_rel, rel, rel);
    for (; i < NELEM(ucwa_coll_rels) && !strcmp(ucwa_coll_rels[i].rel, rel); i++) {
        const char *p = ucwa_coll_rels[i].parent;
        if (!p[0] || (parent && !strcmp(p, parent)))
            return 1;
    }
    return 0;
}

static void check_schema_sorted(lua_State *L)
{
    size_t i;
    for (i = 1; i < NELEM(ucwa_prop_types); i++)
        if (prop_cmp(ucwa_prop_types[i].name, ucwa_prop_types[i].rel, &ucwa_prop_types[i - 1]) <= 0)
            luaL_error(L, "ucwa.core: schema.h property table not sorted at %s", ucwa_prop_types[i].name);
    for (i = 1; i < NELEM(ucwa_coll_rels); i++) {
        int c = strcmp(ucwa_coll_rels[i].rel, ucwa_coll_rels[i - 1].rel);
        if (c < 0 || (c == 0 && strcmp(ucwa_coll_rels[i].parent, ucwa_coll_rels[i - 1].parent) <= 0))
            luaL_error(L, "ucwa.core: schema.h rel table not sorted at %s", ucwa_coll_rels[i].rel);
    }
}

/* ------------------------------------------------------------------------ */
/* Arguments */

static struct ucwa_limits *limits(lua_State *L)
{
    return (struct ucwa_limits *)lua_touserdata(L, lua_upvalueindex(UV_LIMITS));
}

static int ieq(const char *a, size_t alen, const char *b)
{
    size_t blen = strlen(b);
    return alen == blen && !strncasecmp(a, b, blen);
}

static int ends_with(const char *a, size_t alen, const char *suffix)
{
    size_t n = strlen(suffix);
    return alen >= n && !strncasecmp(a + alen - n, suffix, n);
}

/* The format from a content type (parameters ignored), or from the body's
 * first byte when the content type is nil. F_NONE when not JSON/XML. */
static int body_format(lua_State *L, int idx, const char *b, size_t len)
{
    const char *ct, *end;
    size_t n;
    if (lua_isnoneornil(L, idx))
        return len == 0 ? F_NONE : *b == '{' || *b == '[' ? F_JSON : *b == '<' ? F_XML : F_NONE;
    if (lua_type(L, idx) != LUA_TSTRING)
        luaL_typeerror(L, idx, "string or nil");
    ct = lua_tolstring(L, idx, &n);
    end = ct + n;
    while (ct < end && isspace((unsigned char)*ct))
        ct++;
    n = 0;
    while (ct + n < end && ct[n] != ';' && !isspace((unsigned char)ct[n]))
        n++;
    if (ieq(ct, n, "application/json") || ieq(ct, n, "text/json") || ieq(ct, n, "json") ||
        ends_with(ct, n, "+json"))
        return F_JSON;
    if (ieq(ct, n, "application/xml") || ieq(ct, n, "text/xml") || ieq(ct, n, "xml") ||
        ends_with(ct, n, "+xml"))
        return F_XML;
    return F_NONE;
}

/* The body at index 1 without a UTF-8 BOM and leading blanks. Raises when it
 * is not a string. */
static const char *body_arg(lua_State *L, int idx, size_t *len, size_t *skipped)
{
    const char *b, *p, *end;
    if (lua_type(L, idx) != LUA_TSTRING)
        luaL_typeerror(L, idx, "string");
    b = lua_tolstring(L, idx, len);
    p = b;
    end = b + *len;
    if (end - p >= 3 && (unsigned char)p[0] == 0xEF && (unsigned char)p[1] == 0xBB &&
        (unsigned char)p[2] == 0xBF)
        p += 3;
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
        p++;
    *skipped = (size_t)(p - b);
    *len -= *skipped;
    return p;
}

static const char *ct_name(lua_State *L, int idx)
{
    return lua_type(L, idx) == LUA_TSTRING ? lua_tostring(L, idx) : "(none)";
}

/* ------------------------------------------------------------------------ */
/* Values */

#define MAX_EXACT 9007199254740992.0  /* 2^53 */

/* Integral floats become integers, as they would print in the body. */
static void push_number(lua_State *L, lua_Number d)
{
    if (d >= -MAX_EXACT && d <= MAX_EXACT && d == (lua_Number)(lua_Integer)d)
        lua_pushinteger(L, (lua_Integer)d);
    else
        lua_pushnumber(L, d);
}

/* ------------------------------------------------------------------------ */
/* JSON */

/* Decodes the body; pushes the decoded object, or nil + error (returns 2). */
static int json_decode(lua_State *L, const char *b, size_t len, size_t skipped)
{
    if (len == 0)
        return ucwa_parse_fail(L, "SyntaxError", "empty JSON body");
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
        if (!msg)
            msg = "not an object";
        return ucwa_parse_fail(L, strstr(msg, "nested") ? "NestingTooDeep" : "SyntaxError",
                               "invalid JSON: %s%s", msg, skipped ? " (after a BOM/leading blanks)" : "");
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
                push_number(L, d);
                lua_rawset(L, t);
            }
            break;
        case LUA_TLIGHTUSERDATA:
            if (lua_type(L, -2) == LUA_TSTRING) {  /* null member; kept in arrays */
                lua_pushvalue(L, -2);
                lua_pushnil(L);
                lua_rawset(L, t);
            }
            break;
        case LUA_TTABLE:
            json_clean(L, lua_gettop(L));
            break;
        }
        lua_pop(L, 1);
    }
}

/* Wraps the value on top in a one-element array. */
static void wrap1(lua_State *L)
{
    lua_createtable(L, 1, 0);
    lua_insert(L, -2);
    lua_rawseti(L, -2, 1);
}

/* Pushes t[k] when it is a table (returns 1), else a new empty table (returns 0). */
static int table_field(lua_State *L, int t, const char *k)
{
    if (lua_getfield(L, t, k) == LUA_TTABLE)
        return 1;
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
    lua_pushvalue(L, -3);
    lua_setfield(L, -2, "href");
    if (coll)
        wrap1(L);
    lua_rawset(L, x);
    lua_pop(L, 1);
}

/* Turns the decoded JSON object on top of the stack into a resource model,
 * in place of it. */
static void json_resource(lua_State *L)
{
    int t = lua_gettop(L), m, x;
    const char *rel = NULL;

    luaL_checkstack(L, 10, "JSON nesting");
    lua_createtable(L, 0, 5);
    m = t + 1;
    if (lua_getfield(L, t, "rel") == LUA_TSTRING) {
        rel = lua_tostring(L, -1);
        lua_setfield(L, m, "rel");
        lua_pushnil(L);
        lua_setfield(L, t, "rel");
    } else {
        lua_pop(L, 1);
    }

    if (table_field(L, t, "_links")) {
        x = lua_gettop(L);
        lua_pushnil(L);
        lua_setfield(L, t, "_links");
        lua_pushnil(L);
        while (lua_next(L, x)) {
            int vt = lua_type(L, -1);
            const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
            if (k && !strcmp(k, "self")) {
                if (vt == LUA_TTABLE && lua_getfield(L, -1, "href") == LUA_TSTRING)
                    lua_setfield(L, m, "href");
                else if (vt == LUA_TSTRING)
                    lua_setfield(L, m, "href");
                lua_settop(L, x + 2);  /* key, value (or nil in its place) */
                drop_entry(L, x);
            } else if (k && vt == LUA_TTABLE) {
                if (lua_rawlen(L, -1) == 0 && is_collection(rel, k)) {
                    lua_pushvalue(L, -2);
                    lua_pushvalue(L, -2);
                    wrap1(L);
                    lua_rawset(L, x);
                }
                lua_pop(L, 1);
            } else if (k && vt == LUA_TSTRING) {  /* "rel": "href" */
                href_entry(L, x, is_collection(rel, k));
            } else {
                drop_entry(L, x);
            }
        }
    }
    lua_setfield(L, m, "links");

    if (table_field(L, t, "_embedded")) {
        x = lua_gettop(L);
        lua_pushnil(L);
        lua_setfield(L, t, "_embedded");
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
                            json_resource(L);
                            lua_rawseti(L, -2, ++j);
                        } else {
                            lua_pop(L, 1);
                        }
                    }
                    lua_rawset(L, x);
                } else if (lua_pushnil(L), lua_next(L, v)) {  /* one resource */
                    lua_pop(L, 2);
                    lua_pushvalue(L, -2);
                    lua_pushvalue(L, v);
                    json_resource(L);
                    if (is_collection(rel, k))
                        wrap1(L);
                    lua_rawset(L, x);
                }  /* else {}: an empty collection, kept */
                lua_settop(L, v - 1);
            } else {
                drop_entry(L, x);
            }
        }
    }
    lua_setfield(L, m, "embedded");

    json_clean(L, t);
    lua_pushvalue(L, t);
    lua_setfield(L, m, "properties");
    lua_replace(L, t);
    lua_settop(L, t);
}

/* Pushes t[k] when it is a table (returns 1); a nil one becomes a new empty
 * table, stored as t[k]. Else returns 0, the value on top. */
static int array_field(lua_State *L, int t, const char *k)
{
    switch (lua_getfield(L, t, k)) {
    case LUA_TTABLE:
        return 1;
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
static int json_events(lua_State *L)
{
    int t = lua_gettop(L), b, s, ev;
    lua_Integer ns, i;

    luaL_checkstack(L, 12, NULL);
    lua_createtable(L, 0, 2);
    b = t + 1;
    if (table_field(L, t, "_links")) {
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
    lua_setfield(L, b, "links");

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
                if (lua_next(L, -2)) {  /* the (first) embedded resource */
                    if (lua_type(L, -1) == LUA_TTABLE && lua_rawlen(L, -1) > 0)
                        lua_rawgeti(L, -1, 1);
                    if (lua_type(L, -1) == LUA_TTABLE) {
                        json_resource(L);
                        lua_setfield(L, e, "resource");
                    }
                }
                lua_pushnil(L);
                lua_setfield(L, e, "_embedded");
            }
            lua_settop(L, e);
            if (lua_getfield(L, e, "reason") == LUA_TTABLE) {
                json_clean(L, lua_gettop(L));
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

/* ------------------------------------------------------------------------ */
/* XML tree → model */

/* The XML parser box for this call, pushed and marked to-be-closed: its
 * __close releases it (and trims big buffers) however the call ends. The
 * module's cached box is used unless a call is already using it -- a
 * finalizer run by the GC in the middle of a parse may parse too -- in which
 * case a one-off box is made (userdata first, the parser inside later). */
static struct ucwa_xml *xml_box(lua_State *L)
{
    struct ucwa_xml *x = (struct ucwa_xml *)lua_touserdata(L, lua_upvalueindex(UV_XML));
    if (x->busy) {
        x = (struct ucwa_xml *)lua_newuserdatauv(L, sizeof *x, 0);
        memset(x, 0, sizeof *x);
        x->temp = 1;
        luaL_setmetatable(L, UCWA_XML_MT);
    } else {
        lua_pushvalue(L, lua_upvalueindex(UV_XML));
    }
    x->busy = 1;
    x->max_depth = limits(L)->max_depth;
    lua_toclose(L, -1);
    return x;
}

static const xattr *xattr_of(const struct ucwa_xml *x, const xnode *n, int id)
{
    uint32_t i;
    for (i = 0; i < n->nattr; i++)
        if (x->attrs[n->attr + i].id == id)
            return &x->attrs[n->attr + i];
    return NULL;
}

static const char *xattr_str(const struct ucwa_xml *x, const xnode *n, int id)
{
    const xattr *a = xattr_of(x, n, id);
    return a ? xstr(x, a->value) : NULL;
}

static void push_text(lua_State *L, const struct ucwa_xml *x, const xnode *n)
{
    if (n->text_len && !n->has_child)
        lua_pushlstring(L, xstr(x, n->text), n->text_len);
    else
        lua_pushliteral(L, "");
}

static const char *text_of(const struct ucwa_xml *x, const xnode *n, size_t *len)
{
    if (n->text_len && !n->has_child) {
        *len = n->text_len;
        return xstr(x, n->text);
    }
    *len = 0;
    return "";
}

/* Pushes a leaf's text typed as `type` (-1: unknown: True/False → boolean). */
static void push_typed(lua_State *L, const struct ucwa_xml *x, const xnode *n, int type)
{
    size_t len;
    const char *s = text_of(x, n, &len);
    switch (type) {
    case UCWA_T_NUMBER:
        if (len && lua_stringtonumber(L, s) == len + 1) {
            if (!lua_isinteger(L, -1)) {
                lua_Number d = lua_tonumber(L, -1);
                lua_pop(L, 1);
                push_number(L, d);
            }
            return;
        }
        break;
    case UCWA_T_STRING:
    case UCWA_T_LIST:
    case UCWA_T_OBJECT:
        break;
    default:  /* UCWA_T_BOOL and unknown */
        if (ieq(s, len, "true")) {
            lua_pushboolean(L, 1);
            return;
        }
        if (ieq(s, len, "false")) {
            lua_pushboolean(L, 0);
            return;
        }
        break;
    }
    lua_pushlstring(L, s, len);
}

/* Sets tbl[key] = value on top; a second value under the same key turns the
 * entry into an array, as does a collection rel. */
static void add_rel(lua_State *L, int tbl, const char *key, int coll)
{
    if (lua_getfield(L, tbl, key) == LUA_TNIL) {
        lua_pop(L, 1);
        if (coll)
            wrap1(L);
        lua_setfield(L, tbl, key);
        return;
    }
    if (lua_rawgeti(L, -1, 1) != LUA_TNIL) {  /* already an array */
        lua_pop(L, 1);
        lua_insert(L, -2);
        lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
        lua_pop(L, 1);
        return;
    }
    lua_pop(L, 1);
    lua_createtable(L, 2, 0);
    lua_insert(L, -2);
    lua_rawseti(L, -2, 1);
    lua_insert(L, -2);
    lua_rawseti(L, -2, 2);
    lua_setfield(L, tbl, key);
}

/* An attribute's name as a Lua key: literals for the known ones (Lua caches
 * the strings of C literals by address, so they are not hashed again). */
static const char *attr_key(const struct ucwa_xml *x, const xattr *a)
{
    switch (a->id) {
    case XA_REL: return "rel";
    case XA_HREF: return "href";
    case XA_TITLE: return "title";
    case XA_NAME: return "name";
    case XA_STATUS: return "status";
    }
    return xstr(x, a->name);
}

#define KEEP_ALL (-1)  /* for push_link: no attribute has this id */

/* A link table: every attribute but the one of id `skip` (XA_REL, XA_STATUS,
 * or KEEP_ALL). */
static void push_link(lua_State *L, const struct ucwa_xml *x, const xnode *n, int skip)
{
    uint32_t i;
    lua_createtable(L, 0, (int)n->nattr);
    for (i = 0; i < n->nattr; i++) {
        const xattr *a = &x->attrs[n->attr + i];
        if (a->id == skip)
            continue;
        lua_pushlstring(L, xstr(x, a->value), a->value_len);
        lua_setfield(L, -2, attr_key(x, a));
    }
}

static void xml_resource(lua_State *L, const struct ucwa_xml *x, int32_t ni, int toplevel)
{
    const xnode *n = &x->nodes[ni];
    const char *rel = NULL;
    int np = 0, nl = 0, ne = 0, m, props, links, emb;
    int32_t c;

    luaL_checkstack(L, 12, "XML nesting");
    for (c = n->first; c >= 0; c = x->nodes[c].next) {
        const xnode *k = &x->nodes[c];
        switch (k->id) {
        case XE_PROPERTY: {
            const char *name = xattr_str(x, k, XA_NAME);
            if (name && !strcmp(name, "rel") && !k->nil && !rel) {
                size_t len;
                rel = text_of(x, k, &len);
            } else {
                np++;
            }
            break;
        }
        case XE_PROPERTYLIST: np++; break;
        case XE_LINK: nl++; break;
        case XE_RESOURCE: ne++; break;
        }
    }
    if (!rel && toplevel)
        rel = xattr_str(x, n, XA_REL);

    lua_createtable(L, 0, 5);
    m = lua_gettop(L);
    set_str(L, m, "rel", rel);
    set_str(L, m, "href", xattr_str(x, n, XA_HREF));
    lua_createtable(L, 0, np);
    props = m + 1;
    lua_createtable(L, 0, nl);
    links = m + 2;
    lua_createtable(L, 0, ne);
    emb = m + 3;

    for (c = n->first; c >= 0; c = x->nodes[c].next) {
        const xnode *k = &x->nodes[c];
        const char *name;
        int type, item = UCWA_T_STRING;
        switch (k->id) {
        case XE_PROPERTY:
            name = xattr_str(x, k, XA_NAME);
            if (!name || k->nil || !strcmp(name, "rel"))
                break;
            type = prop_type(rel, name, &item);
            if (type == UCWA_T_LIST) {
                lua_createtable(L, 1, 0);
                if (k->text_len && !k->has_child) {
                    push_typed(L, x, k, item);
                    lua_rawseti(L, -2, 1);
                }
            } else {
                push_typed(L, x, k, type);
            }
            lua_setfield(L, props, name);
            break;
        case XE_PROPERTYLIST: {
            int32_t it;
            lua_Integer i = 0;
            int cnt = 0;
            name = xattr_str(x, k, XA_NAME);
            if (!name || k->nil)
                break;
            type = prop_type(rel, name, &item);
            if (type != UCWA_T_LIST)
                item = type;  /* the schema has it as a scalar: type items alike */
            for (it = k->first; it >= 0; it = x->nodes[it].next)
                cnt++;
            lua_createtable(L, cnt, 0);
            for (it = k->first; it >= 0; it = x->nodes[it].next) {
                const xnode *ie = &x->nodes[it];
                if (ie->id != XE_ITEM)
                    continue;
                if (ie->nil)
                    lua_pushlightuserdata(L, NULL);  /* JSON null in a list */
                else
                    push_typed(L, x, ie, item);
                lua_rawseti(L, -2, ++i);
            }
            lua_setfield(L, props, name);
            break;
        }
        case XE_LINK:
            name = xattr_str(x, k, XA_REL);
            if (!name)
                break;
            push_link(L, x, k, XA_REL);
            add_rel(L, links, name, is_collection(rel, name));
            break;
        case XE_RESOURCE:
            name = xattr_str(x, k, XA_REL);
            if (!name)
                break;
            xml_resource(L, x, c, 0);
            add_rel(L, emb, name, is_collection(rel, name));
            break;
        }
    }
    lua_setfield(L, m, "embedded");
    lua_setfield(L, m, "links");
    lua_setfield(L, m, "properties");
}

/* Element-by-element conversion of a non-UCWA root (DataContract-style
 * bodies such as <optionsMetadata>), lists known from the schema. */
static void xml_generic(lua_State *L, const struct ucwa_xml *x, int32_t ni)
{
    const xnode *n = &x->nodes[ni];
    int item, type = prop_type(NULL, xstr(x, n->name), &item);
    int32_t c;
    luaL_checkstack(L, 6, "XML nesting");
    if (type == UCWA_T_LIST) {
        lua_Integer i = 0;
        lua_createtable(L, 0, 0);
        for (c = n->first; c >= 0; c = x->nodes[c].next) {
            if (x->nodes[c].nil)
                lua_pushlightuserdata(L, NULL);
            else
                xml_generic(L, x, c);
            lua_rawseti(L, -2, ++i);
        }
    } else if (!n->has_child) {
        push_typed(L, x, n, type);
    } else {
        lua_createtable(L, 0, 0);
        for (c = n->first; c >= 0; c = x->nodes[c].next) {
            if (x->nodes[c].nil)
                continue;
            xml_generic(L, x, c);
            lua_setfield(L, -2, xstr(x, x->nodes[c].name));
        }
    }
}

static void xml_model(lua_State *L, const struct ucwa_xml *x)
{
    const xnode *root = &x->nodes[0];
    if (root->id == XE_RESOURCE || root->id == XE_INPUT) {
        xml_resource(L, x, 0, 1);
        return;
    }
    lua_createtable(L, 0, 3);
    if (root->has_child)
        xml_generic(L, x, 0);
    else
        lua_createtable(L, 0, 0);
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        lua_createtable(L, 0, 0);
    }
    lua_setfield(L, -2, "properties");
    lua_createtable(L, 0, 0);
    lua_setfield(L, -2, "links");
    lua_createtable(L, 0, 0);
    lua_setfield(L, -2, "embedded");
}

/* code/subcode/message children of a <reason>/<error> element. */
static void xml_reason(lua_State *L, const struct ucwa_xml *x, int32_t ni)
{
    int32_t c;
    lua_createtable(L, 0, 3);
    for (c = x->nodes[ni].first; c >= 0; c = x->nodes[c].next) {
        const xnode *k = &x->nodes[c];
        const char *key = NULL;
        switch (k->id) {
        case XE_CODE: key = "code"; break;
        case XE_SUBCODE: key = "subcode"; break;
        case XE_MESSAGE: key = "message"; break;
        case XE_PROPERTY: key = xattr_str(x, k, XA_NAME); break;
        }
        if (key && !k->nil) {
            push_text(L, x, k);
            lua_setfield(L, -2, key);
        }
    }
    luaL_setmetatable(L, UCWA_ERROR_MT);
}

static void xml_event(lua_State *L, const struct ucwa_xml *x, int32_t ni)
{
    const xnode *n = &x->nodes[ni];
    int e, has_link = 0;
    int32_t c;

    luaL_checkstack(L, 8, NULL);
    lua_createtable(L, 0, 4);
    e = lua_gettop(L);
    lua_pushlstring(L, xstr(x, n->name), n->name_len);
    lua_setfield(L, e, "type");
    if (xattr_of(x, n, XA_REL) || xattr_of(x, n, XA_HREF)) {
        push_link(L, x, n, XA_STATUS);
        lua_setfield(L, e, "link");
        has_link = 1;
    }
    set_str(L, e, "status", xattr_str(x, n, XA_STATUS));
    for (c = n->first; c >= 0; c = x->nodes[c].next) {
        const xnode *k = &x->nodes[c];
        switch (k->id) {
        case XE_LINK:
            if (!has_link) {
                push_link(L, x, k, KEEP_ALL);
                lua_setfield(L, e, "link");
                has_link = 1;
            }
            break;
        case XE_IN:
            push_link(L, x, k, KEEP_ALL);
            lua_setfield(L, e, "in");
            break;
        case XE_RESOURCE:
            xml_resource(L, x, c, 1);
            lua_setfield(L, e, "resource");
            break;
        case XE_STATUS:
            push_text(L, x, k);
            lua_setfield(L, e, "status");
            break;
        case XE_REASON:
            xml_reason(L, x, c);
            lua_setfield(L, e, "reason");
            break;
        }
    }
}

static int xml_events(lua_State *L, const struct ucwa_xml *x)
{
    const xnode *root = &x->nodes[0];
    const char *href;
    int b, links, senders;
    lua_Integer ns = 0;
    int32_t c;

    if (root->id != XE_EVENTS)
        return ucwa_parse_fail(L, "UnexpectedShape", "XML event batch: root element is <%s>, expected <events>",
                               xstr(x, root->name));
    lua_createtable(L, 0, 2);
    b = lua_gettop(L);
    lua_createtable(L, 0, 2);
    links = b + 1;
    lua_createtable(L, 0, 0);
    senders = b + 2;
    if ((href = xattr_str(x, root, XA_HREF))) {
        lua_createtable(L, 0, 1);
        lua_pushstring(L, href);
        lua_setfield(L, -2, "href");
        lua_setfield(L, links, "self");
    }
    for (c = root->first; c >= 0; c = x->nodes[c].next) {
        const xnode *k = &x->nodes[c];
        const char *rel;
        if (k->id == XE_LINK && (rel = xattr_str(x, k, XA_REL))) {
            push_link(L, x, k, XA_REL);
            lua_setfield(L, links, rel);
        } else if (k->id == XE_SENDER) {
            int32_t ev;
            lua_Integer ne = 0;
            int sn;
            lua_createtable(L, 0, 3);
            sn = lua_gettop(L);
            set_str(L, sn, "rel", xattr_str(x, k, XA_REL));
            set_str(L, sn, "href", xattr_str(x, k, XA_HREF));
            lua_createtable(L, 0, 0);
            for (ev = k->first; ev >= 0; ev = x->nodes[ev].next) {
                xml_event(L, x, ev);
                lua_rawseti(L, -2, ++ne);
            }
            lua_setfield(L, sn, "events");
            lua_rawseti(L, senders, ++ns);
        }
    }
    lua_setfield(L, b, "senders");
    lua_setfield(L, b, "links");
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Entry points */

/* Drops big buffers after an unusually large body, keeping the parser. */
static void xml_trim(struct ucwa_xml *x)
{
    if (x->arena_cap > ((size_t)1 << 20) || x->nodes_cap > 16384 || x->attrs_cap > 32768) {
        void *p = x->parser;
        x->parser = NULL;
        ucwa_xml_free(x);
        x->parser = p;
    }
}

static int run_xml(lua_State *L, struct ucwa_xml *x, const char *b, size_t len, size_t skipped)
{
    if (ucwa_xml_run(x, b, len, skipped) < 0)
        return ucwa_parse_fail(L, x->err_subcode ? x->err_subcode : "SyntaxError", "%s", x->err);
    return 0;
}

static int check_size(lua_State *L, size_t len, size_t skipped)
{
    size_t max = limits(L)->max_body;
    if (len + skipped > max)
        return ucwa_parse_fail(L, "BodyTooLarge", "body of %zu bytes exceeds max_body (%zu bytes)",
                               len + skipped, max);
    return 0;
}

/* ucwa.parse and ucwa.parse_events (events): body, content_type → the model
 * or the event batch | nil, err */
static int parse_body(lua_State *L, int events)
{
    size_t len, skipped;
    const char *b = body_arg(L, 1, &len, &skipped);
    int fmt = body_format(L, 2, b, len);
    if (check_size(L, len, skipped))
        return 2;
    lua_settop(L, 2);
    if (fmt == F_JSON) {
        if (json_decode(L, b, len, skipped))
            return 2;
        if (!events)
            json_resource(L);
        else if (json_events(L))
            return 2;
        return 1;
    }
    if (fmt == F_XML) {
        struct ucwa_xml *x = xml_box(L);
        if (run_xml(L, x, b, len, skipped))
            return 2;
        if (!events)
            xml_model(L, x);
        else if (xml_events(L, x))
            return 2;
        return 1;
    }
    return ucwa_parse_fail(L, "UnsupportedContentType", "unsupported content type '%s' (expected JSON or XML)",
                           ct_name(L, 2));
}

/* ucwa.parse(body, content_type) → model | nil, err */
static int l_parse(lua_State *L)
{
    return parse_body(L, 0);
}

/* ucwa.parse_events(body, content_type) → batch | nil, err */
static int l_parse_events(lua_State *L)
{
    return parse_body(L, 1);
}

static const char *str_field(lua_State *L, int t, const char *k)
{
    lua_getfield(L, t, k);
    if (lua_type(L, -1) == LUA_TSTRING)
        return lua_tostring(L, -1);  /* stays on the stack */
    lua_pop(L, 1);
    return NULL;
}

/* The string code, subcode and message of the table on top (left on the stack). */
static void error_fields(lua_State *L, const char **code, const char **subcode, const char **message)
{
    int t = lua_gettop(L);
    *code = str_field(L, t, "code");
    *subcode = str_field(L, t, "subcode");
    *message = str_field(L, t, "message");
}

/* ucwa.parse_error(body, content_type, http_status) → error object.
 * Never fails: a body that is not a UCWA error gives the code of the status. */
static int l_parse_error(lua_State *L)
{
    const char *code = NULL, *subcode = NULL, *message = NULL;
    char msg[48];
    int status = (int)luaL_optinteger(L, 3, 0);
    if (!lua_isnoneornil(L, 1)) {
        size_t len, skipped;
        const char *b = body_arg(L, 1, &len, &skipped);
        int fmt = body_format(L, 2, b, len);
        lua_settop(L, 3);
        if (len == 0 || check_size(L, len, skipped)) {
            fmt = F_NONE;
            lua_settop(L, 3);
        }
        if (fmt == F_JSON) {
            if (json_decode(L, b, len, skipped) == 0)
                error_fields(L, &code, &subcode, &message);
        } else if (fmt == F_XML) {
            struct ucwa_xml *x = xml_box(L);
            if (run_xml(L, x, b, len, skipped) == 0) {
                xml_reason(L, x, 0);
                error_fields(L, &code, &subcode, &message);
            }
        }
    }
    if (!code)
        code = code_for_status(status);
    if (!message && status > 0) {
        snprintf(msg, sizeof msg, "HTTP %d", status);
        message = msg;
    }
    ucwa_push_error(L, status, code, subcode, message);
    return 1;
}

/* core.set_limits{max_body=, max_depth=} → the limits now in force. */
static int l_set_limits(lua_State *L)
{
    struct ucwa_limits *lim = limits(L);
    if (!lua_isnoneornil(L, 1)) {
        lua_Integer body = lim->max_body, depth = lim->max_depth;
        luaL_checktype(L, 1, LUA_TTABLE);
        if (lua_getfield(L, 1, "max_body") != LUA_TNIL) {
            body = luaL_checkinteger(L, -1);
            luaL_argcheck(L, body > 0 && (size_t)body <= UCWA_MAX_MAX_BODY, 1, "max_body out of range (1 .. 2^30)");
        }
        if (lua_getfield(L, 1, "max_depth") != LUA_TNIL) {
            depth = luaL_checkinteger(L, -1);
            luaL_argcheck(L, depth > 0 && depth <= UCWA_MAX_MAX_DEPTH, 1, "max_depth out of range (1 .. 1000)");
        }
        lim->max_body = (size_t)body;
        lim->max_depth = (int)depth;
        lua_getfield(L, lua_upvalueindex(UV_CJSON), "decode_max_depth");
        lua_pushinteger(L, depth);
        lua_call(L, 1, 0);
    }
    lua_createtable(L, 0, 2);
    lua_pushinteger(L, (lua_Integer)lim->max_body);
    lua_setfield(L, -2, "max_body");
    lua_pushinteger(L, lim->max_depth);
    lua_setfield(L, -2, "max_depth");
    return 1;
}

static int xml_gc(lua_State *L)
{
    ucwa_xml_free((struct ucwa_xml *)luaL_checkudata(L, 1, UCWA_XML_MT));
    return 0;
}

/* __close: the end of a call that used the box (returned or raised). */
static int xml_release(lua_State *L)
{
    struct ucwa_xml *x = (struct ucwa_xml *)luaL_checkudata(L, 1, UCWA_XML_MT);
    x->busy = 0;
    if (x->temp)
        ucwa_xml_free(x);
    else
        xml_trim(x);
    return 0;
}

static const luaL_Reg parse_funcs[] = {
    { "parse", l_parse },
    { "parse_events", l_parse_events },
    { "parse_error", l_parse_error },
    { "encode", ucwa_l_encode },
    { "date", ucwa_l_date },
    { "error", l_error },
    { "set_limits", l_set_limits },
    { NULL, NULL }
};

static void cjson_config(lua_State *L, int inst, const char *fn, int boolean, lua_Integer v)
{
    lua_getfield(L, inst, fn);
    if (boolean)
        lua_pushboolean(L, (int)v);
    else
        lua_pushinteger(L, v);
    lua_call(L, 1, 0);
}

void ucwa_open_parse(lua_State *L)
{
    int mod = lua_gettop(L), inst;
    struct ucwa_limits *lim;
    struct ucwa_xml *x;

    check_schema_sorted(L);
    luaL_checkstack(L, 12, NULL);

    /* the error metatable, shared with the Lua layer and the transport */
    luaL_newmetatable(L, UCWA_ERROR_MT);
    lua_pushcfunction(L, err_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_setfield(L, mod, "error_mt");

    /* a private lua-cjson instance: our settings never touch the user's */
    lua_getglobal(L, "require");
    lua_pushliteral(L, "cjson.safe");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, "new");
    lua_call(L, 0, 1);
    lua_remove(L, -2);
    inst = lua_gettop(L);
    cjson_config(L, inst, "decode_max_depth", 0, UCWA_DEFAULT_MAX_DEPTH);
    cjson_config(L, inst, "decode_invalid_numbers", 1, 0);
    cjson_config(L, inst, "encode_invalid_numbers", 1, 0);
    cjson_config(L, inst, "encode_keep_buffer", 1, 0);  /* re-entrant encode */
    lua_getfield(L, inst, "null");
    lua_setfield(L, mod, "null");

    lua_pushvalue(L, mod);
    lua_getfield(L, inst, "decode");   /* UV_DECODE */
    lua_getfield(L, inst, "encode");   /* UV_ENCODE */
    lim = (struct ucwa_limits *)lua_newuserdatauv(L, sizeof *lim, 0);  /* UV_LIMITS */
    lim->max_body = UCWA_DEFAULT_MAX_BODY;
    lim->max_depth = UCWA_DEFAULT_MAX_DEPTH;
    /* userdata first, C resource second: expat's parser is created lazily
     * into this zeroed box, which frees it on __gc/__close */
    x = (struct ucwa_xml *)lua_newuserdatauv(L, sizeof *x, 0);  /* UV_XML */
    memset(x, 0, sizeof *x);
    if (luaL_newmetatable(L, UCWA_XML_MT)) {
        lua_pushcfunction(L, xml_gc);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, xml_release);
        lua_setfield(L, -2, "__close");
    }
    lua_setmetatable(L, -2);
    lua_pushvalue(L, inst);            /* UV_CJSON */
    luaL_setfuncs(L, parse_funcs, UV_COUNT);
    lua_settop(L, mod);
}

/* Internal declarations of the parser of ucwa.core: parse.c (entry points,
 * limits, content types, schema lookup), parse_json.c and parse_xml.c (one
 * file per format), and encode.c / date.c, which share its upvalues and its
 * error helper. Not part of the public API. */
#ifndef UCWA_PARSE_H
#define UCWA_PARSE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "auxlib.h"

/* Upvalues shared by the parse/encode functions. */
enum {
    UV_DECODE = 1, /* private cjson.safe instance's decode */
    UV_ENCODE,     /* ... and encode */
    UV_LIMITS,     /* struct ucwa_limits userdata */
    UV_XML,        /* struct ucwa_xml userdata (the cached expat parser) */
    UV_CJSON,      /* the private cjson.safe instance (for decode_max_depth) */
    /* The keys of the model, interned once: a key pushed from an upvalue
     * costs no lookup in Lua's string cache (lua_setfield's strcmp) and goes
     * to lua_rawset, not through the metamethod path. Same order as
     * parse.c's model_keys. */
    UV_K_REL,
    UV_K_HREF,
    UV_K_TITLE,
    UV_K_NAME,
    UV_K_STATUS,
    UV_K_SELF,
    UV_K_JLINKS,    /* "_links" */
    UV_K_JEMBEDDED, /* "_embedded" */
    UV_K_LINKS,
    UV_K_EMBEDDED,
    UV_K_PROPERTIES,
    UV_COUNT = UV_K_PROPERTIES
};

/* Pushes the model key k (UV_K_*). */
static inline void ucwa_pushkey(lua_State *L, int k)
{
    lua_pushvalue(L, lua_upvalueindex(k));
}

/* t[k] = the value on top (popped), raw; t is an absolute index. */
static inline void ucwa_setkey(lua_State *L, int t, int k)
{
    ucwa_pushkey(L, k);
    lua_insert(L, -2);
    lua_rawset(L, t);
}

/* Pushes t[k], raw (t an absolute index); returns its type. */
static inline int ucwa_getkey(lua_State *L, int t, int k)
{
    ucwa_pushkey(L, k);
    return lua_rawget(L, t);
}

/* t[k] = s when s is not NULL (t an absolute index). */
static inline void ucwa_setkey_str(lua_State *L, int t, int k, const char *s)
{
    if (!s) return;
    lua_pushstring(L, s);
    ucwa_setkey(L, t, k);
}

struct ucwa_limits {
    size_t max_body; /* bytes */
    int max_depth;   /* nesting of JSON objects/arrays or XML elements */
};

#define UCWA_DEFAULT_MAX_BODY  ((size_t)16 << 20)
#define UCWA_DEFAULT_MAX_DEPTH 64
#define UCWA_MAX_MAX_BODY      ((size_t)1 << 30)
#define UCWA_MAX_MAX_DEPTH     1000

/* the limits in force (from a function with the parse upvalues) */
static inline struct ucwa_limits *ucwa_limits(lua_State *L)
{
    return (struct ucwa_limits *)lua_touserdata(L, lua_upvalueindex(UV_LIMITS));
}

/* ---- helpers (parse.c) */

/* Pushes nil and an error object {code="ParseError", subcode=, message=};
 * returns 2. */
int ucwa_parse_fail(lua_State *L, const char *subcode, const char *fmt, ...) UCWA_PRINTF(3, 4);

/* The type (UCWA_T_*) of property `name` of a resource `rel` (NULL: any) and
 * of its items (*item), or -1 when the schema does not know it. */
int ucwa_schema_prop(const char *rel, const char *name, int *item);
/* Whether links/embedded `rel` of a resource `parent` form a collection. */
int ucwa_schema_coll(const char *parent, const char *rel);

/* The length of the longest prefix of s[0..n) that is well-formed UTF-8
 * (n when all of it is). */
size_t ucwa_utf8_valid_prefix(const char *s, size_t n);

/* The property bags of an error body or an event's reason (debugInfo,
 * parameters: ErrorsAndInformationalMessages.md), bounded: at most
 * UCWA_BAG_MAX entries a bag, names of at most UCWA_BAG_NAME bytes (longer
 * ones left out), string values cut to UCWA_BAG_VALUE bytes at a character
 * boundary. */
#define UCWA_BAG_MAX   64
#define UCWA_BAG_NAME  256
#define UCWA_BAG_VALUE 4096
/* Replaces src[k] (src at index src) by a table of name -> value: from an
 * object (string keys, scalar values), an array of {name=, value=} objects,
 * or either mixed; anything else, or nothing, leaves dst[k] unset (an empty
 * bag stays an empty table). The result goes to dst[k] (dst may be src). */
void ucwa_bag(lua_State *L, int src, int dst, const char *k);
/* bag[name] = the scalar value on top (popped), within the bounds above;
 * *n counts the bag's entries. */
void ucwa_bag_put(lua_State *L, int bag, const char *name, size_t nlen, int *n);

/* Integral floats become integers, as they would print in the body. */
static inline void ucwa_push_number(lua_State *L, lua_Number d)
{
    const lua_Number max_exact = 9007199254740992.0; /* 2^53 */
    if (d >= -max_exact && d <= max_exact && d == (lua_Number)(lua_Integer)d)
        lua_pushinteger(L, (lua_Integer)d);
    else
        lua_pushnumber(L, d);
}

/* Wraps the value on top in a one-element array. */
static inline void ucwa_wrap1(lua_State *L)
{
    lua_createtable(L, 1, 0);
    lua_insert(L, -2);
    lua_rawseti(L, -2, 1);
}

/* a[0..alen) equals b, ignoring ASCII case */
static inline int ucwa_ieq(const char *a, size_t alen, const char *b)
{
    size_t blen = strlen(b);
    return alen == blen && !strncasecmp(a, b, blen);
}

/* ---- JSON (parse_json.c) */

/* Decodes the body b[0..len) (the string at stack index 1 when skipped is 0);
 * pushes the decoded object, or nil + error (returns 2). */
int ucwa_json_decode(lua_State *L, const char *b, size_t len, size_t skipped);
/* The decoded object on top into a resource model / an event batch, in place
 * of it (events: 0, or 2 with nil + error pushed). */
void ucwa_json_resource(lua_State *L);
int ucwa_json_events(lua_State *L);

/* ---- XML (parse_xml.c: expat into the tree, the box; parse_xml_model.c:
 * the tree into the model; parse_xml.h: the tree) */

#define UCWA_XML_MT "ucwa.xmlparser" /* the cached expat parser box */

struct ucwa_xml;
/* Pushes the parser box for this call, marked to-be-closed (see parse_xml.c). */
struct ucwa_xml *ucwa_xml_box(lua_State *L);
/* Pushes a new, empty box (for UV_XML), registering its metatable. */
void ucwa_xml_new_box(lua_State *L);
/* Parses b[0..len) (skipped bytes before it, for positions) into x's tree:
 * 0, or 2 with nil + error pushed. */
int ucwa_xml_parse(lua_State *L, struct ucwa_xml *x, const char *b, size_t len, size_t skipped);
/* The tree into a resource model / an event batch (0, or 2 with nil + error
 * pushed) / the error object of an error body (pushed). */
void ucwa_xml_model(lua_State *L, const struct ucwa_xml *x);
int ucwa_xml_events(lua_State *L, const struct ucwa_xml *x);
void ucwa_xml_error(lua_State *L, const struct ucwa_xml *x);

/* ---- encode.c / date.c */
int ucwa_l_encode(lua_State *L);
int ucwa_l_date(lua_State *L);

#endif

/* The parser's entry points: ucwa.parse, ucwa.parse_events, ucwa.parse_error,
 * set_limits; the limits, content types and the schema lookups both formats
 * use. The formats themselves are in parse_json.c and parse_xml.c, the error
 * objects in error.c.
 *
 * JSON goes through a private lua-cjson instance (cjson.safe.new(), held as an
 * upvalue: lua-cjson has no C API); XML through expat into a C tree. Both give
 * one model, typed and shaped by the schema generated from the UCWA reference
 * (schema.h). */
#include <ctype.h>
#include <pthread.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "error.h"
#include "parse.h"
#include "schema.h"
#include "ucwa.h"

enum { F_NONE = 0, F_JSON = 1, F_XML = 2 };

int ucwa_parse_fail(lua_State *L, const char *subcode, const char *fmt, ...)
{
    va_list ap;
    lua_pushnil(L);
    ucwa_error_push(L, 0, "ParseError", subcode, NULL);
    va_start(ap, fmt);
    ucwa_pushvf(L, fmt, ap);
    va_end(ap);
    lua_setfield(L, -2, "message");
    return 2;
}

/* ---------------------------------------------------------------- schema lookups */

static int prop_cmp(const char *name, const char *rel, const ucwa_prop_type *e)
{
    int c = strcmp(name, e->name);
    return c ? c : strcmp(rel, e->rel);
}

/* The schema tables are sorted by name; an open-addressing hash index from
 * each distinct name to its first entry makes a lookup one hash and one
 * strcmp, where a binary search took five to nine strcmp calls (the parser
 * asks once a property, link and embedded resource). Built once a process. */
#define SCHEMA_SLOTS 1024 /* a power of two, over twice the entries of either table */
_Static_assert(UCWA_NELEM(ucwa_prop_types) <= SCHEMA_SLOTS / 2 && UCWA_NELEM(ucwa_coll_rels) <= SCHEMA_SLOTS / 2,
               "schema index load factor");

typedef struct {
    uint16_t first[SCHEMA_SLOTS]; /* entry index + 1; 0: empty slot */
} schema_index;

static schema_index prop_index, coll_index;
static pthread_once_t schema_once = PTHREAD_ONCE_INIT;

/* A cheap hash of a name: its length and three of its bytes (the names are
 * distinct enough; a collision costs one more probe). */
static inline uint32_t name_hash(const char *s, size_t *len)
{
    size_t n = strlen(s);
    *len = n;
    if (!n) return 0;
    return ((uint32_t)n * 2654435761u) ^ ((uint32_t)(unsigned char)s[0] * 40503u) ^
           ((uint32_t)(unsigned char)s[n / 2] << 5) ^ ((uint32_t)(unsigned char)s[n - 1] * 97u);
}

/* the name of entry i of a table of `size`-byte entries, at member offset `off` */
#define ENTRY_NAME(tab, size, off, i) (*(const char *const *)((const char *)(tab) + (i) * (size) + (off)))

static void index_build(schema_index *ix, const void *tab, size_t n, size_t size, size_t off)
{
    size_t i;
    for (i = 0; i < n; i++) {
        const char *name = ENTRY_NAME(tab, size, off, i);
        uint32_t h;
        size_t len;
        if (i > 0 && !strcmp(name, ENTRY_NAME(tab, size, off, i - 1))) continue; /* not the first */
        for (h = name_hash(name, &len) & (SCHEMA_SLOTS - 1); ix->first[h]; h = (h + 1) & (SCHEMA_SLOTS - 1)) {
        }
        ix->first[h] = (uint16_t)(i + 1);
    }
}

/* The first entry named `key`, or n when there is none. */
static inline size_t index_find(const schema_index *ix, const void *tab, size_t n, size_t size, size_t off,
                                const char *key)
{
    uint32_t h;
    size_t len;
    for (h = name_hash(key, &len) & (SCHEMA_SLOTS - 1); ix->first[h]; h = (h + 1) & (SCHEMA_SLOTS - 1)) {
        size_t i = (size_t)ix->first[h] - 1;
        if (!strcmp(ENTRY_NAME(tab, size, off, i), key)) return i;
    }
    return n;
}

static void schema_index_build(void)
{
    index_build(&prop_index, ucwa_prop_types, UCWA_NELEM(ucwa_prop_types), sizeof(ucwa_prop_type),
                offsetof(ucwa_prop_type, name));
    index_build(&coll_index, ucwa_coll_rels, UCWA_NELEM(ucwa_coll_rels), sizeof(ucwa_coll_rel),
                offsetof(ucwa_coll_rel, rel));
}

#define INDEX_FIND(ix, tab, type, member, key)                                                                         \
    index_find(&(ix), (tab), UCWA_NELEM(tab), sizeof(type), offsetof(type, member), (key))

int ucwa_schema_prop(const char *rel, const char *name, int *item)
{
    size_t i = INDEX_FIND(prop_index, ucwa_prop_types, ucwa_prop_type, name, name); /* first with this name */
    const ucwa_prop_type *def = NULL;
    for (; i < UCWA_NELEM(ucwa_prop_types) && !strcmp(ucwa_prop_types[i].name, name); i++) {
        const ucwa_prop_type *e = &ucwa_prop_types[i];
        if (!e->rel[0])
            def = e;
        else if (rel && !strcmp(e->rel, rel)) {
            def = e;
            break;
        }
    }
    if (!def) return -1;
    *item = def->item;
    return def->type;
}

int ucwa_schema_coll(const char *parent, const char *rel)
{
    size_t i = INDEX_FIND(coll_index, ucwa_coll_rels, ucwa_coll_rel, rel, rel);
    for (; i < UCWA_NELEM(ucwa_coll_rels) && !strcmp(ucwa_coll_rels[i].rel, rel); i++) {
        const char *p = ucwa_coll_rels[i].parent;
        if (!p[0] || (parent && !strcmp(p, parent))) return 1;
    }
    return 0;
}

static void check_schema_sorted(lua_State *L)
{
    size_t i;
    for (i = 1; i < UCWA_NELEM(ucwa_prop_types); i++)
        if (prop_cmp(ucwa_prop_types[i].name, ucwa_prop_types[i].rel, &ucwa_prop_types[i - 1]) <= 0)
            luaL_error(L, "ucwa.core: schema.h property table not sorted at %s", ucwa_prop_types[i].name);
    for (i = 1; i < UCWA_NELEM(ucwa_coll_rels); i++) {
        int c = strcmp(ucwa_coll_rels[i].rel, ucwa_coll_rels[i - 1].rel);
        if (c < 0 || (c == 0 && strcmp(ucwa_coll_rels[i].parent, ucwa_coll_rels[i - 1].parent) <= 0))
            luaL_error(L, "ucwa.core: schema.h rel table not sorted at %s", ucwa_coll_rels[i].rel);
    }
}

/* ---------------------------------------------------------------- arguments and content types */

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
    if (lua_type(L, idx) != LUA_TSTRING) luaL_typeerror(L, idx, "string or nil");
    ct = lua_tolstring(L, idx, &n);
    end = ct + n;
    while (ct < end && isspace((unsigned char)*ct)) ct++;
    n = 0;
    while (ct + n < end && ct[n] != ';' && !isspace((unsigned char)ct[n])) n++;
    if (ucwa_ieq(ct, n, "application/json") || ucwa_ieq(ct, n, "text/json") || ucwa_ieq(ct, n, "json") ||
        ends_with(ct, n, "+json"))
        return F_JSON;
    if (ucwa_ieq(ct, n, "application/xml") || ucwa_ieq(ct, n, "text/xml") || ucwa_ieq(ct, n, "xml") ||
        ends_with(ct, n, "+xml"))
        return F_XML;
    return F_NONE;
}

/* The body at index 1 without a UTF-8 BOM and leading blanks. Raises when it
 * is not a string. */
static const char *body_arg(lua_State *L, int idx, size_t *len, size_t *skipped)
{
    const char *b, *p, *end;
    if (lua_type(L, idx) != LUA_TSTRING) luaL_typeerror(L, idx, "string");
    b = lua_tolstring(L, idx, len);
    p = b;
    end = b + *len;
    if (end - p >= 3 && (unsigned char)p[0] == 0xEF && (unsigned char)p[1] == 0xBB && (unsigned char)p[2] == 0xBF)
        p += 3;
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) p++;
    *skipped = (size_t)(p - b);
    *len -= *skipped;
    return p;
}

static const char *ct_name(lua_State *L, int idx)
{
    return lua_type(L, idx) == LUA_TSTRING ? lua_tostring(L, idx) : "(none)";
}

/* ---------------------------------------------------------------- invalid UTF-8 */

/* A model never holds invalid UTF-8: each ill-formed sequence of a body is
 * replaced by U+FFFD (one for each maximal subpart, as Unicode recommends
 * and browsers do) before the body is parsed, so one bad byte from a server
 * costs one character, not the batch, and whatever the bot sends on (XML
 * encode refuses invalid UTF-8) or logs is well formed. NUL and other
 * control characters are characters: JSON's \u0000 stays a NUL byte (Lua
 * strings are bytes; the C core refuses NUL wherever C would cut a string:
 * URLs, header values); XML cannot carry them, and expat refuses a body that
 * does. Bodies that are pure ASCII, the common case, cost one word-at-a-time
 * scan. */

/* the length of the valid UTF-8 sequence at s[0..n) (1..4), or -k: the
 * first k bytes are a maximal ill-formed subpart (replaced by one U+FFFD) */
static int utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    int need;
    unsigned lo = 0x80, hi = 0xBF;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF)
        need = 1;
    else if (c >= 0xE0 && c <= 0xEF) {
        need = 2;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F; /* no surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 3;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F; /* nothing past U+10FFFF */
    } else
        return -1;
    int k;
    for (k = 1; k <= need; k++) {
        if ((size_t)k >= n || s[k] < lo || s[k] > hi) return -k;
        lo = 0x80, hi = 0xBF;
    }
    return need + 1;
}

/* the offset of the first byte of s[0..n) that is not ASCII, or n */
static size_t ascii_prefix(const unsigned char *s, size_t n)
{
    size_t i = 0;
#ifdef __SSE2__
    for (; i + 64 <= n; i += 64) { /* 64 bytes a round, one branch */
        __m128i a = _mm_loadu_si128((const __m128i *)(const void *)(s + i));
        __m128i b = _mm_loadu_si128((const __m128i *)(const void *)(s + i + 16));
        __m128i c = _mm_loadu_si128((const __m128i *)(const void *)(s + i + 32));
        __m128i d = _mm_loadu_si128((const __m128i *)(const void *)(s + i + 48));
        if (_mm_movemask_epi8(_mm_or_si128(_mm_or_si128(a, b), _mm_or_si128(c, d)))) break;
    }
#endif
    for (; i + 32 <= n; i += 32) { /* 32 bytes a round: a fraction of an instruction a byte */
        uint64_t a, b, c, d;
        memcpy(&a, s + i, 8);
        memcpy(&b, s + i + 8, 8);
        memcpy(&c, s + i + 16, 8);
        memcpy(&d, s + i + 24, 8);
        if ((a | b | c | d) & 0x8080808080808080ULL) break;
    }
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        if (w & 0x8080808080808080ULL) break;
    }
    while (i < n && s[i] < 0x80) i++;
    return i;
}

/* the offset of the first ill-formed sequence, or n */
static size_t utf8_valid_prefix(const unsigned char *s, size_t n)
{
    return ucwa_utf8_valid_prefix((const char *)s, n);
}

size_t ucwa_utf8_valid_prefix(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = ascii_prefix(s, n);
    while (i < n) {
        int k = utf8_seq(s + i, n - i);
        if (k < 0) return i;
        i += (size_t)k;
        if (k == 1) i += ascii_prefix(s + i, n - i);
    }
    return n;
}

/* Whether an XML body is in UTF-8 (the only encoding repaired): not UTF-16,
 * and its declaration names no encoding or UTF-8. expat decodes the others
 * into UTF-8 itself. */
static int xml_is_utf8(const char *b, size_t len)
{
    if (len >= 2 && (((unsigned char)b[0] == 0xFE && (unsigned char)b[1] == 0xFF) ||
                     ((unsigned char)b[0] == 0xFF && (unsigned char)b[1] == 0xFE) || b[0] == 0 || b[1] == 0))
        return 0;
    if (len < 5 || memcmp(b, "<?xml", 5) != 0) return 1;
    const char *end = memchr(b, '>', len < 256 ? len : 256), *p;
    if (!end) return 1;
    for (p = b + 5; p + 8 < end; p++) {
        if (memcmp(p, "encoding", 8) != 0) continue;
        p += 8;
        while (p < end && (*p == ' ' || *p == '=' || *p == '\t')) p++;
        if (p < end && (*p == '"' || *p == '\'')) p++;
        return end - p >= 5 && (!strncasecmp(p, "utf-8", 5) || !strncasecmp(p, "utf8", 4));
    }
    return 1;
}

/* The body b[0..*len) (argument 1 of the call, after *skipped bytes of BOM
 * and blanks) with ill-formed UTF-8 replaced: when there is some, argument 1
 * is replaced by the repaired body, and that is returned (*skipped = 0). */
static const char *repair_utf8(lua_State *L, int fmt, const char *b, size_t *len, size_t *skipped)
{
    const unsigned char *s = (const unsigned char *)b;
    size_t n = *len, i = utf8_valid_prefix(s, n);
    if (i == n || (fmt == F_XML && !xml_is_utf8(b, n))) return b;
    luaL_Buffer buf;
    luaL_buffinitsize(L, &buf, n + n / 8 + 16);
    luaL_addlstring(&buf, b, i);
    while (i < n) {
        int k = utf8_seq(s + i, n - i);
        if (k < 0) {
            luaL_addstring(&buf, "\xEF\xBF\xBD"); /* U+FFFD */
            i += (size_t)-k;
        } else {
            size_t j = i + (size_t)k;
            j += utf8_valid_prefix(s + j, n - j);
            luaL_addlstring(&buf, b + i, j - i);
            i = j;
        }
    }
    luaL_pushresult(&buf);
    lua_replace(L, 1);
    *skipped = 0;
    return lua_tolstring(L, 1, len);
}

/* ---------------------------------------------------------------- entry points */

static int check_size(lua_State *L, size_t len, size_t skipped)
{
    size_t max = ucwa_limits(L)->max_body;
    if (len + skipped > max)
        return ucwa_parse_fail(L, "BodyTooLarge", "body of %zu bytes exceeds max_body (%zu bytes)", len + skipped, max);
    return 0;
}

/* ucwa.parse and ucwa.parse_events (events): body, content_type -> the model
 * or the event batch | nil, err */
static int parse_body(lua_State *L, int events)
{
    size_t len, skipped;
    const char *b = body_arg(L, 1, &len, &skipped);
    int fmt = body_format(L, 2, b, len);
    if (check_size(L, len, skipped)) return 2;
    lua_settop(L, 2);
    if (fmt != F_NONE) b = repair_utf8(L, fmt, b, &len, &skipped);
    if (fmt == F_JSON) {
        if (ucwa_json_decode(L, b, len, skipped)) return 2;
        if (!events)
            ucwa_json_resource(L);
        else if (ucwa_json_events(L))
            return 2;
        return 1;
    }
    if (fmt == F_XML) {
        struct ucwa_xml *x = ucwa_xml_box(L);
        if (ucwa_xml_parse(L, x, b, len, skipped)) return 2;
        if (!events)
            ucwa_xml_model(L, x);
        else if (ucwa_xml_events(L, x))
            return 2;
        return 1;
    }
    return ucwa_parse_fail(L, "UnsupportedContentType", "unsupported content type '%s' (expected JSON or XML)",
                           ct_name(L, 2));
}

/* ucwa.parse(body, content_type) -> model | nil, err */
static int l_parse(lua_State *L)
{
    return parse_body(L, 0);
}

/* ucwa.parse_events(body, content_type) -> batch | nil, err */
static int l_parse_events(lua_State *L)
{
    return parse_body(L, 1);
}

void ucwa_bag_put(lua_State *L, int bag, const char *name, size_t nlen, int *n)
{
    int t = lua_type(L, -1);
    if (*n >= UCWA_BAG_MAX || nlen == 0 || nlen > UCWA_BAG_NAME ||
        (t != LUA_TSTRING && t != LUA_TNUMBER && t != LUA_TBOOLEAN)) {
        lua_pop(L, 1);
        return;
    }
    if (t == LUA_TSTRING) {
        size_t vlen;
        const char *v = lua_tolstring(L, -1, &vlen);
        if (vlen > UCWA_BAG_VALUE) {
            size_t cut = UCWA_BAG_VALUE;
            while (cut > 0 && ((unsigned char)v[cut] & 0xC0) == 0x80) cut--; /* not inside a character */
            lua_pushlstring(L, v, cut);
            lua_replace(L, -2);
        }
    }
    lua_pushlstring(L, name, nlen);
    lua_insert(L, -2);
    lua_rawset(L, bag);
    ++*n;
}

void ucwa_bag(lua_State *L, int src, int dst, const char *k)
{
    int in, bag, n = 0;
    src = lua_absindex(L, src);
    dst = lua_absindex(L, dst);
    luaL_checkstack(L, 6, NULL);
    if (lua_getfield(L, src, k) != LUA_TTABLE) {
        lua_pop(L, 1);
        if (src == dst) {
            lua_pushnil(L);
            lua_setfield(L, dst, k);
        }
        return;
    }
    in = lua_gettop(L);
    lua_createtable(L, 0, 0);
    bag = in + 1;
    lua_pushnil(L);
    while (n < UCWA_BAG_MAX && lua_next(L, in)) {
        size_t nlen;
        const char *name;
        if (lua_type(L, -2) == LUA_TSTRING) { /* {"name": value} */
            name = lua_tolstring(L, -2, &nlen);
            lua_pushvalue(L, -1);
            ucwa_bag_put(L, bag, name, nlen, &n);
        } else if (lua_type(L, -1) == LUA_TTABLE) { /* [{"name": .., "value": ..}] */
            if (lua_getfield(L, -1, "name") == LUA_TSTRING) {
                name = lua_tolstring(L, -1, &nlen);
                lua_getfield(L, -2, "value");
                ucwa_bag_put(L, bag, name, nlen, &n);
            }
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    lua_settop(L, bag);
    lua_setfield(L, dst, k);
    lua_pop(L, 1);
}

static const char *str_field(lua_State *L, int t, const char *k)
{
    if (lua_getfield(L, t, k) == LUA_TSTRING) return lua_tostring(L, -1); /* stays on the stack */
    lua_pop(L, 1);
    return NULL;
}

/* ucwa.parse_error(body, content_type, http_status) -> error object.
 * Never fails: a body that is not a UCWA error gives the code of the status. */
static int l_parse_error(lua_State *L)
{
    const char *code = NULL, *subcode = NULL, *message = NULL;
    int status = (int)luaL_optinteger(L, 3, 0), t = 0;
    if (!lua_isnoneornil(L, 1)) {
        size_t len, skipped;
        const char *b = body_arg(L, 1, &len, &skipped);
        int fmt = body_format(L, 2, b, len), ok = 0;
        lua_settop(L, 3);
        if (len == 0 || check_size(L, len, skipped)) fmt = F_NONE;
        lua_settop(L, 3);
        if (fmt != F_NONE) b = repair_utf8(L, fmt, b, &len, &skipped);
        if (fmt == F_JSON) {
            ok = ucwa_json_decode(L, b, len, skipped) == 0;
        } else if (fmt == F_XML) {
            struct ucwa_xml *x = ucwa_xml_box(L);
            ok = ucwa_xml_parse(L, x, b, len, skipped) == 0;
            if (ok) ucwa_xml_error(L, x);
        }
        if (ok && lua_type(L, -1) == LUA_TTABLE) {
            t = lua_gettop(L);
            code = str_field(L, t, "code");
            subcode = str_field(L, t, "subcode");
            message = str_field(L, t, "message");
        }
    }
    if (message)
        ucwa_error_push(L, status, code ? code : ucwa_status_code(status), subcode, "%s", message);
    else if (status > 0)
        ucwa_error_push(L, status, code ? code : ucwa_status_code(status), subcode, "HTTP %d", status);
    else
        ucwa_error_push(L, status, code ? code : ucwa_status_code(status), subcode, NULL);
    if (t) {
        ucwa_bag(L, t, -1, "parameters");
        ucwa_bag(L, t, -1, "debugInfo");
    }
    return 1;
}

static const char *const limit_options[] = {"max_body", "max_depth", NULL};

/* an integer option t[k] in [1, hi] (or def) */
static lua_Integer limit(lua_State *L, const char *k, lua_Integer def, lua_Integer hi)
{
    double v = ucwa_opt_number(L, 1, 1, k, (double)def, 1, (double)hi);
    if (v != (double)(lua_Integer)v) ucwa_argerror(L, 1, "option '%s' must be an integer (got %g)", k, v);
    return (lua_Integer)v;
}

/* core.set_limits{max_body=, max_depth=} -> the limits now in force. */
static int l_set_limits(lua_State *L)
{
    struct ucwa_limits *lim = ucwa_limits(L);
    if (!lua_isnoneornil(L, 1)) {
        luaL_checktype(L, 1, LUA_TTABLE);
        ucwa_opt_check(L, 1, 1, "", limit_options);
        lua_Integer body = limit(L, "max_body", (lua_Integer)lim->max_body, (lua_Integer)UCWA_MAX_MAX_BODY);
        lua_Integer depth = limit(L, "max_depth", lim->max_depth, UCWA_MAX_MAX_DEPTH);
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

static const luaL_Reg parse_funcs[] = {
    {"parse", l_parse},
    {"parse_events", l_parse_events},
    {"parse_error", l_parse_error},
    {"encode", ucwa_l_encode},
    {"date", ucwa_l_date},
    {"set_limits", l_set_limits},
    {NULL, NULL},
};

/* the strings of UV_K_REL .. UV_K_PROPERTIES, in that order */
static const char *const model_keys[] = {"rel",     "href",      "title", "name",     "status",    "self",
                                         "_links",  "_embedded", "links", "embedded", "properties"};
_Static_assert(UCWA_NELEM(model_keys) == UV_COUNT - UV_K_REL + 1, "model_keys matches UV_K_*");

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
    check_schema_sorted(L);
    pthread_once(&schema_once, schema_index_build);
    luaL_checkstack(L, UV_COUNT + 8, NULL);

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
    cjson_config(L, inst, "encode_keep_buffer", 1, 0); /* re-entrant encode */
    lua_getfield(L, inst, "null");
    lua_setfield(L, mod, "null");

    lua_pushvalue(L, mod);
    lua_getfield(L, inst, "decode");                                                      /* UV_DECODE */
    lua_getfield(L, inst, "encode");                                                      /* UV_ENCODE */
    struct ucwa_limits *lim = (struct ucwa_limits *)lua_newuserdatauv(L, sizeof *lim, 0); /* UV_LIMITS */
    lim->max_body = UCWA_DEFAULT_MAX_BODY;
    lim->max_depth = UCWA_DEFAULT_MAX_DEPTH;
    ucwa_xml_new_box(L);    /* UV_XML */
    lua_pushvalue(L, inst); /* UV_CJSON */
    for (size_t i = 0; i < UCWA_NELEM(model_keys); i++) lua_pushstring(L, model_keys[i]); /* UV_K_* */
    luaL_setfuncs(L, parse_funcs, UV_COUNT);
    lua_settop(L, mod);
}

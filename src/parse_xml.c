/* XML bodies into the resource model and event batches, in two passes.
 *
 * 1. expat into a compact C tree (struct ucwa_xml: nodes, attributes and
 *    text in one arena). The expat handlers never call Lua: they only append
 *    to C buffers, and on any failure (out of memory, too deep, a DTD or an
 *    entity declaration) they record an error and stop the parser. So no Lua
 *    error can longjmp through expat, and a failed parse leaves no partial
 *    model behind.
 * 2. the tree into the same model as JSON's, typed and shaped by the schema
 *    generated from the UCWA reference (parse.c's lookups, schema.h).
 *
 * The parser and its buffers live in a userdata (the module's cached box,
 * upvalue UV_XML), reused from call to call. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <expat.h>

#include "error.h"
#include "parse.h"
#include "schema.h"

/* ---------------------------------------------------------------- the tree */

/* element local names the model knows */
enum xel {
    XE_OTHER,
    XE_RESOURCE,
    XE_LINK,
    XE_PROPERTY,
    XE_PROPERTYLIST,
    XE_ITEM,
    XE_EVENTS,
    XE_SENDER,
    XE_IN,
    XE_INPUT,
    XE_STATUS,
    XE_REASON,
    XE_CODE,
    XE_SUBCODE,
    XE_MESSAGE,
    XE_ERROR
};
/* attribute names the model knows */
enum xat { XA_OTHER, XA_REL, XA_HREF, XA_TITLE, XA_NAME, XA_NIL, XA_STATUS };

typedef struct {
    uint32_t name, name_len;           /* local name: arena offset, length */
    uint32_t text, text_len;           /* text of a leaf element */
    uint32_t attr, nattr;              /* first attribute index, count */
    int32_t parent, first, last, next; /* tree links (-1: none) */
    uint8_t id;                        /* enum xel */
    uint8_t nil;                       /* xsi:nil="true" */
    uint8_t has_child;
    uint8_t pad;
} xnode;

typedef struct {
    uint32_t name, name_len, value, value_len; /* arena offsets (name: XA_OTHER only) */
    uint8_t id;                                /* enum xat */
} xattr;

struct ucwa_xml {
    void *parser; /* XML_Parser, NULL when closed */
    char *arena;
    size_t arena_len, arena_cap;
    xnode *nodes;
    size_t nnodes, nodes_cap;
    xattr *attrs;
    size_t nattrs, attrs_cap;
    int32_t cur; /* open element */
    int depth, max_depth;
    long base;     /* bytes skipped before the body (BOM, blanks) */
    int failed;    /* set by a handler that stopped the parser */
    int busy;      /* in use by a call (to-be-closed slot on its stack) */
    int temp;      /* a one-off box for a re-entrant call */
    char err[200]; /* its message */
    const char *err_subcode;
};

static inline const char *xstr(const struct ucwa_xml *x, uint32_t off)
{
    return x->arena + off;
}

/* ---------------------------------------------------------------- expat into the tree (C only) */

/* expat runs without namespace processing (it costs a third of the parse):
 * element names lose their prefix, xmlns attributes are skipped, and a
 * prefixed "nil" attribute (xsi:nil) marks a nil value. */

static void xfail(struct ucwa_xml *x, const char *subcode, const char *fmt, ...)
{
    XML_Parser p = (XML_Parser)x->parser;
    int n;
    va_list ap;
    if (x->failed) return;
    x->failed = 1;
    x->err_subcode = subcode;
    va_start(ap, fmt);
    n = vsnprintf(x->err, sizeof x->err, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < sizeof x->err)
        snprintf(x->err + n, sizeof x->err - (size_t)n, " at line %lu, column %lu (byte %ld)",
                 (unsigned long)XML_GetCurrentLineNumber(p), (unsigned long)XML_GetCurrentColumnNumber(p) + 1,
                 (long)XML_GetCurrentByteIndex(p) + x->base);
    XML_StopParser(p, XML_FALSE);
}

/* Writes s[0..len) plus a NUL at offset off of the arena (at most its
 * length), which ends there after; returns 0, or -1 when out of memory. */
static int arena_write(struct ucwa_xml *x, size_t off, const char *s, size_t len)
{
    if (len > UINT32_MAX / 2 || off + len + 1 > UINT32_MAX ||
        ucwa_grow((void **)&x->arena, &x->arena_cap, off + len + 1, 1) < 0)
        return -1;
    memcpy(x->arena + off, s, len);
    x->arena[off + len] = '\0';
    x->arena_len = off + len + 1;
    return 0;
}

/* Appends s[0..len) plus a NUL to the arena; returns the offset or -1. */
static long arena_put(struct ucwa_xml *x, const char *s, size_t len)
{
    size_t off = x->arena_len;
    return arena_write(x, off, s, len) < 0 ? -1 : (long)off;
}

static const char *local_name(const char *name)
{
    const char *sep = strchr(name, ':');
    return sep ? sep + 1 : name;
}

static uint8_t elem_id(const char *n)
{
    switch (n[0]) {
    case 'c':
        if (!strcmp(n, "code")) return XE_CODE;
        break;
    case 'e':
        if (!strcmp(n, "events")) return XE_EVENTS;
        if (!strcmp(n, "error")) return XE_ERROR;
        break;
    case 'i':
        if (!strcmp(n, "item")) return XE_ITEM;
        if (!strcmp(n, "in")) return XE_IN;
        if (!strcmp(n, "input")) return XE_INPUT;
        break;
    case 'l':
        if (!strcmp(n, "link")) return XE_LINK;
        break;
    case 'm':
        if (!strcmp(n, "message")) return XE_MESSAGE;
        break;
    case 'p':
        if (!strcmp(n, "property")) return XE_PROPERTY;
        if (!strcmp(n, "propertyList")) return XE_PROPERTYLIST;
        break;
    case 'r':
        if (!strcmp(n, "resource")) return XE_RESOURCE;
        if (!strcmp(n, "reason")) return XE_REASON;
        break;
    case 's':
        if (!strcmp(n, "sender")) return XE_SENDER;
        if (!strcmp(n, "status")) return XE_STATUS;
        if (!strcmp(n, "subcode")) return XE_SUBCODE;
        break;
    }
    return XE_OTHER;
}

static uint8_t attr_id(const char *n)
{
    switch (n[0]) {
    case 'h':
        if (!strcmp(n, "href")) return XA_HREF;
        break;
    case 'n':
        if (!strcmp(n, "name")) return XA_NAME;
        break;
    case 'r':
        if (!strcmp(n, "rel")) return XA_REL;
        break;
    case 's':
        if (!strcmp(n, "status")) return XA_STATUS;
        break;
    case 't':
        if (!strcmp(n, "title")) return XA_TITLE;
        break;
    }
    return XA_OTHER;
}

static void XMLCALL on_start(void *ud, const XML_Char *name, const XML_Char **atts)
{
    struct ucwa_xml *x = ud;
    const char *ln = local_name(name);
    size_t lnlen = strlen(ln), i, na = 0;
    long off;
    xnode *n;
    int32_t idx;

    if (x->failed) return;
    if (++x->depth > x->max_depth) {
        xfail(x, "NestingTooDeep", "XML nested deeper than max_depth %d", x->max_depth);
        return;
    }
    if (x->cur >= 0) x->nodes[x->cur].has_child = 1;
    for (i = 0; atts[i]; i += 2) na++;
    if (x->nnodes >= INT32_MAX - 1 ||
        ucwa_grow((void **)&x->nodes, &x->nodes_cap, x->nnodes + 1, sizeof *x->nodes) < 0 ||
        ucwa_grow((void **)&x->attrs, &x->attrs_cap, x->nattrs + na, sizeof *x->attrs) < 0 ||
        (off = arena_put(x, ln, lnlen)) < 0) {
        xfail(x, "OutOfMemory", "out of memory");
        return;
    }
    idx = (int32_t)x->nnodes++;
    n = &x->nodes[idx];
    memset(n, 0, sizeof *n);
    n->name = (uint32_t)off;
    n->name_len = (uint32_t)lnlen;
    n->id = elem_id(ln);
    n->parent = x->cur;
    n->first = n->last = n->next = -1;
    n->attr = (uint32_t)x->nattrs;
    for (i = 0; atts[i]; i += 2) {
        const char *an = atts[i], *av = atts[i + 1];
        xattr *a;
        long aoff, voff;
        size_t anlen, avlen;
        uint8_t id;
        if (an[0] == 'x' && !strncmp(an, "xmlns", 5) && (an[5] == '\0' || an[5] == ':'))
            continue; /* namespace declarations */
        if (strchr(an, ':')) {
            /* prefixed attribute: only xsi:nil matters */
            if (!strcmp(local_name(an), "nil")) n->nil = !strcmp(av, "true") || !strcmp(av, "1");
            continue;
        }
        id = attr_id(an);
        anlen = id == XA_OTHER ? strlen(an) : 0; /* known names are not needed */
        avlen = strlen(av);
        aoff = id == XA_OTHER ? arena_put(x, an, anlen) : 0;
        voff = aoff < 0 ? -1 : arena_put(x, av, avlen);
        if (voff < 0) {
            xfail(x, "OutOfMemory", "out of memory");
            return;
        }
        a = &x->attrs[x->nattrs++];
        a->name = (uint32_t)aoff;
        a->name_len = (uint32_t)anlen;
        a->value = (uint32_t)voff;
        a->value_len = (uint32_t)avlen;
        a->id = id;
        n->nattr++;
    }
    if (x->cur >= 0) {
        xnode *p = &x->nodes[x->cur];
        if (p->last >= 0)
            x->nodes[p->last].next = idx;
        else
            p->first = idx;
        p->last = idx;
    }
    n->text = (uint32_t)x->arena_len; /* text, if any, goes here */
    x->cur = idx;
}

static void XMLCALL on_end(void *ud, const XML_Char *name)
{
    struct ucwa_xml *x = ud;
    (void)name;
    if (x->failed || x->cur < 0) return;
    x->depth--;
    x->cur = x->nodes[x->cur].parent;
}

static void XMLCALL on_text(void *ud, const XML_Char *s, int len)
{
    struct ucwa_xml *x = ud;
    xnode *n;
    size_t end;
    if (x->failed || x->cur < 0 || len <= 0) return;
    n = &x->nodes[x->cur];
    if (n->has_child) return; /* mixed content: only leaves keep text */
    /* A leaf's text is contiguous at the arena's end: nothing else is
     * appended between its start tag and its end tag. */
    end = (size_t)n->text + n->text_len;
    if (end != (n->text_len ? x->arena_len - 1 : x->arena_len)) {
        xfail(x, "SyntaxError", "internal: text not contiguous");
        return;
    }
    if (arena_write(x, end, s, (size_t)len) < 0) {
        xfail(x, "OutOfMemory", "out of memory");
        return;
    }
    n->text_len += (uint32_t)len;
}

static void XMLCALL on_doctype(void *ud, const XML_Char *name, const XML_Char *sysid, const XML_Char *pubid,
                               int has_internal)
{
    (void)name;
    (void)sysid;
    (void)pubid;
    (void)has_internal;
    xfail(ud, "DtdNotAllowed", "XML with a DTD (<!DOCTYPE>) refused");
}

static void XMLCALL on_entity(void *ud, const XML_Char *name, int is_param, const XML_Char *value, int value_len,
                              const XML_Char *base, const XML_Char *sysid, const XML_Char *pubid,
                              const XML_Char *notation)
{
    (void)is_param;
    (void)value;
    (void)value_len;
    (void)base;
    (void)sysid;
    (void)pubid;
    (void)notation;
    xfail(ud, "DtdNotAllowed", "XML entity declaration '%.40s' refused", name);
}

static int xml_run(struct ucwa_xml *x, const char *body, size_t len, size_t offset)
{
    XML_Parser p = (XML_Parser)x->parser;
    if (!p) {
        p = XML_ParserCreate(NULL);
        if (!p) {
            snprintf(x->err, sizeof x->err, "out of memory (XML_ParserCreate)");
            x->err_subcode = "OutOfMemory";
            return -1;
        }
        x->parser = p;
    } else if (!XML_ParserReset(p, NULL)) {
        snprintf(x->err, sizeof x->err, "XML_ParserReset failed");
        x->err_subcode = "OutOfMemory";
        return -1;
    }
    x->arena_len = x->nnodes = x->nattrs = 0;
    x->cur = -1;
    x->depth = 0;
    x->failed = 0;
    x->err[0] = '\0';
    x->err_subcode = NULL;
    x->base = (long)offset;
    XML_SetUserData(p, x);
    XML_SetElementHandler(p, on_start, on_end);
    XML_SetCharacterDataHandler(p, on_text);
    XML_SetStartDoctypeDeclHandler(p, on_doctype);
    XML_SetEntityDeclHandler(p, on_entity);
    XML_SetParamEntityParsing(p, XML_PARAM_ENTITY_PARSING_NEVER);

    while (len > 0 || x->nnodes == 0) {
        /* XML_Parse takes an int length: feed huge bodies in chunks */
        int chunk = len > (1u << 30) ? (1 << 30) : (int)len;
        int final = (size_t)chunk == len;
        if (XML_Parse(p, body, chunk, final) != XML_STATUS_OK) {
            if (!x->failed) {
                enum XML_Error e = XML_GetErrorCode(p);
                x->err_subcode = e == XML_ERROR_NO_MEMORY ? "OutOfMemory" : "SyntaxError";
                snprintf(x->err, sizeof x->err, "invalid XML: %s at line %lu, column %lu (byte %ld)",
                         XML_ErrorString(e), (unsigned long)XML_GetCurrentLineNumber(p),
                         (unsigned long)XML_GetCurrentColumnNumber(p) + 1,
                         (long)XML_GetCurrentByteIndex(p) + (long)offset);
            }
            return -1;
        }
        body += chunk;
        len -= (size_t)chunk;
        if (final) break;
    }
    if (x->failed) return -1;
    if (x->nnodes == 0) {
        snprintf(x->err, sizeof x->err, "invalid XML: no element");
        x->err_subcode = "SyntaxError";
        return -1;
    }
    return 0;
}

static void xml_free(struct ucwa_xml *x)
{
    if (x->parser) {
        XML_ParserFree((XML_Parser)x->parser);
        x->parser = NULL;
    }
    free(x->arena);
    free(x->nodes);
    free(x->attrs);
    x->arena = NULL;
    x->nodes = NULL;
    x->attrs = NULL;
    x->arena_len = x->arena_cap = x->nnodes = x->nodes_cap = x->nattrs = x->attrs_cap = 0;
}

/* ---------------------------------------------------------------- the parser box */

/* Drops big buffers after an unusually large body, keeping the parser. */
static void xml_trim(struct ucwa_xml *x)
{
    if (x->arena_cap > ((size_t)1 << 20) || x->nodes_cap > 16384 || x->attrs_cap > 32768) {
        void *p = x->parser;
        x->parser = NULL;
        xml_free(x);
        x->parser = p;
    }
}

static int xml_gc(lua_State *L)
{
    xml_free((struct ucwa_xml *)luaL_checkudata(L, 1, UCWA_XML_MT));
    return 0;
}

/* __close: the end of a call that used the box (returned or raised). */
static int xml_release(lua_State *L)
{
    struct ucwa_xml *x = (struct ucwa_xml *)luaL_checkudata(L, 1, UCWA_XML_MT);
    x->busy = 0;
    if (x->temp)
        xml_free(x);
    else
        xml_trim(x);
    return 0;
}

/* userdata first, C resource second: expat's parser is created lazily into
 * this zeroed box, which frees it on __gc/__close */
void ucwa_xml_new_box(lua_State *L)
{
    struct ucwa_xml *x = (struct ucwa_xml *)lua_newuserdatauv(L, sizeof *x, 0);
    memset(x, 0, sizeof *x);
    if (luaL_newmetatable(L, UCWA_XML_MT)) {
        lua_pushcfunction(L, xml_gc);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, xml_release);
        lua_setfield(L, -2, "__close");
    }
    lua_setmetatable(L, -2);
}

int ucwa_xml_parse(lua_State *L, struct ucwa_xml *x, const char *b, size_t len, size_t skipped)
{
    if (xml_run(x, b, len, skipped) < 0)
        return ucwa_parse_fail(L, x->err_subcode ? x->err_subcode : "SyntaxError", "%s", x->err);
    return 0;
}

/* ---------------------------------------------------------------- the tree into the model */

/* The XML parser box for this call, pushed and marked to-be-closed: its
 * __close releases it (and trims big buffers) however the call ends. The
 * module's cached box is used unless a call is already using it -- a
 * finalizer run by the GC in the middle of a parse may parse too -- in which
 * case a one-off box is made (userdata first, the parser inside later). */
struct ucwa_xml *ucwa_xml_box(lua_State *L)
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
    x->max_depth = ucwa_limits(L)->max_depth;
    lua_toclose(L, -1);
    return x;
}

static const xattr *xattr_of(const struct ucwa_xml *x, const xnode *n, int id)
{
    uint32_t i;
    for (i = 0; i < n->nattr; i++)
        if (x->attrs[n->attr + i].id == id) return &x->attrs[n->attr + i];
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
                ucwa_push_number(L, d);
            }
            return;
        }
        break;
    case UCWA_T_STRING:
    case UCWA_T_LIST:
    case UCWA_T_OBJECT: break;
    default: /* UCWA_T_BOOL and unknown */
        if (ucwa_ieq(s, len, "true")) {
            lua_pushboolean(L, 1);
            return;
        }
        if (ucwa_ieq(s, len, "false")) {
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
        if (coll) ucwa_wrap1(L);
        lua_setfield(L, tbl, key);
        return;
    }
    if (lua_rawgeti(L, -1, 1) != LUA_TNIL) { /* already an array */
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

#define KEEP_ALL (-1) /* for push_link: no attribute has this id */

/* A link table: every attribute but the one of id `skip` (XA_REL, XA_STATUS,
 * or KEEP_ALL). */
static void push_link(lua_State *L, const struct ucwa_xml *x, const xnode *n, int skip)
{
    uint32_t i;
    lua_createtable(L, 0, (int)n->nattr);
    for (i = 0; i < n->nattr; i++) {
        const xattr *a = &x->attrs[n->attr + i];
        if (a->id == skip) continue;
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
    if (!rel && toplevel) rel = xattr_str(x, n, XA_REL);

    lua_createtable(L, 0, 5);
    m = lua_gettop(L);
    ucwa_set_str(L, m, "rel", rel);
    ucwa_set_str(L, m, "href", xattr_str(x, n, XA_HREF));
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
            if (!name || k->nil || !strcmp(name, "rel")) break;
            type = ucwa_schema_prop(rel, name, &item);
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
            if (!name || k->nil) break;
            type = ucwa_schema_prop(rel, name, &item);
            if (type != UCWA_T_LIST) item = type; /* the schema has it as a scalar: type items alike */
            for (it = k->first; it >= 0; it = x->nodes[it].next) cnt++;
            lua_createtable(L, cnt, 0);
            for (it = k->first; it >= 0; it = x->nodes[it].next) {
                const xnode *ie = &x->nodes[it];
                if (ie->id != XE_ITEM) continue;
                if (ie->nil)
                    lua_pushlightuserdata(L, NULL); /* JSON null in a list */
                else
                    push_typed(L, x, ie, item);
                lua_rawseti(L, -2, ++i);
            }
            lua_setfield(L, props, name);
            break;
        }
        case XE_LINK:
            name = xattr_str(x, k, XA_REL);
            if (!name) break;
            push_link(L, x, k, XA_REL);
            add_rel(L, links, name, ucwa_schema_coll(rel, name));
            break;
        case XE_RESOURCE:
            name = xattr_str(x, k, XA_REL);
            if (!name) break;
            xml_resource(L, x, c, 0);
            add_rel(L, emb, name, ucwa_schema_coll(rel, name));
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
    int item, type = ucwa_schema_prop(NULL, xstr(x, n->name), &item);
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
            if (x->nodes[c].nil) continue;
            xml_generic(L, x, c);
            lua_setfield(L, -2, xstr(x, x->nodes[c].name));
        }
    }
}

void ucwa_xml_model(lua_State *L, const struct ucwa_xml *x)
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

/* A <debugInfo>/<parameters> property bag: its <property name=".."> children,
 * name -> text (xsi:nil ones left out), bounded as parse.h says. */
static void xml_bag(lua_State *L, const struct ucwa_xml *x, const xnode *bagn)
{
    int bag, n = 0;
    int32_t c;
    lua_createtable(L, 0, 0);
    bag = lua_gettop(L);
    for (c = bagn->first; c >= 0 && n < UCWA_BAG_MAX; c = x->nodes[c].next) {
        const xnode *k = &x->nodes[c];
        const xattr *a;
        if (k->id != XE_PROPERTY || k->nil || !(a = xattr_of(x, k, XA_NAME))) continue;
        push_text(L, x, k);
        ucwa_bag_put(L, bag, xstr(x, a->value), a->value_len, &n);
    }
}

/* code/subcode/message children of a <reason>/<error> element, and its
 * <debugInfo> and <parameters> bags. */
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
        case XE_OTHER:
            if (k->name_len == 9 && !memcmp(xstr(x, k->name), "debugInfo", 9))
                key = "debugInfo";
            else if (k->name_len == 10 && !memcmp(xstr(x, k->name), "parameters", 10))
                key = "parameters";
            if (key) {
                xml_bag(L, x, k);
                lua_setfield(L, -2, key);
                continue;
            }
            break;
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
    ucwa_set_str(L, e, "status", xattr_str(x, n, XA_STATUS));
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

int ucwa_xml_events(lua_State *L, const struct ucwa_xml *x)
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
            ucwa_set_str(L, sn, "rel", xattr_str(x, k, XA_REL));
            ucwa_set_str(L, sn, "href", xattr_str(x, k, XA_HREF));
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

void ucwa_xml_error(lua_State *L, const struct ucwa_xml *x)
{
    xml_reason(L, x, 0);
}

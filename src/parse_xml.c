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
 * upvalue UV_XML), reused from call to call.
 *
 * This file is pass 1 and the parser box; pass 2 is parse_xml_model.c, the
 * tree's types are in parse_xml.h. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <expat.h>

#include "parse.h"
#include "parse_xml.h"

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

/* The buffers grow in ucwa_grow; these inline checks keep the common case,
 * room to spare, out of a call. */
static inline int grow(void **p, size_t *cap, size_t need, size_t size)
{
    return need <= *cap ? 0 : ucwa_grow(p, cap, need, size);
}

/* Writes s[0..len) plus a NUL at offset off of the arena (at most its
 * length), which ends there after; returns 0, or -1 when out of memory. */
static inline int arena_write(struct ucwa_xml *x, size_t off, const char *s, size_t len)
{
    if (len > UINT32_MAX / 2 || off + len + 1 > UINT32_MAX ||
        grow((void **)&x->arena, &x->arena_cap, off + len + 1, 1) < 0)
        return -1;
    memcpy(x->arena + off, s, len);
    x->arena[off + len] = '\0';
    x->arena_len = off + len + 1;
    return 0;
}

/* Appends s[0..len) plus a NUL to the arena; returns the offset or -1. */
static inline long arena_put(struct ucwa_xml *x, const char *s, size_t len)
{
    size_t off = x->arena_len;
    return arena_write(x, off, s, len) < 0 ? -1 : (long)off;
}

/* A name's local part (after the first ':', if any); *len is its length,
 * *prefixed whether it had a prefix. One pass over the name. */
static inline const char *local_name(const char *name, size_t *len, int *prefixed)
{
    const char *p = name, *ln = name;
    while (*p && *p != ':') p++;
    *prefixed = *p == ':';
    if (*p) ln = ++p;
    while (*p) p++;
    *len = (size_t)(p - ln);
    return ln;
}

/* n[0..len) is the literal `lit` */
#define NAME_IS(n, len, lit) ((len) == sizeof(lit) - 1 && !memcmp((n), (lit), sizeof(lit) - 1))

static uint8_t elem_id(const char *n, size_t len)
{
    switch (n[0]) {
    case 'c':
        if (NAME_IS(n, len, "code")) return XE_CODE;
        break;
    case 'e':
        if (NAME_IS(n, len, "events")) return XE_EVENTS;
        if (NAME_IS(n, len, "error")) return XE_ERROR;
        break;
    case 'i':
        if (NAME_IS(n, len, "item")) return XE_ITEM;
        if (NAME_IS(n, len, "in")) return XE_IN;
        if (NAME_IS(n, len, "input")) return XE_INPUT;
        break;
    case 'l':
        if (NAME_IS(n, len, "link")) return XE_LINK;
        break;
    case 'm':
        if (NAME_IS(n, len, "message")) return XE_MESSAGE;
        break;
    case 'p':
        if (NAME_IS(n, len, "property")) return XE_PROPERTY;
        if (NAME_IS(n, len, "propertyList")) return XE_PROPERTYLIST;
        break;
    case 'r':
        if (NAME_IS(n, len, "resource")) return XE_RESOURCE;
        if (NAME_IS(n, len, "reason")) return XE_REASON;
        break;
    case 's':
        if (NAME_IS(n, len, "sender")) return XE_SENDER;
        if (NAME_IS(n, len, "status")) return XE_STATUS;
        if (NAME_IS(n, len, "subcode")) return XE_SUBCODE;
        break;
    }
    return XE_OTHER;
}

static uint8_t attr_id(const char *n, size_t len)
{
    switch (n[0]) {
    case 'h':
        if (NAME_IS(n, len, "href")) return XA_HREF;
        break;
    case 'n':
        if (NAME_IS(n, len, "name")) return XA_NAME;
        break;
    case 'r':
        if (NAME_IS(n, len, "rel")) return XA_REL;
        break;
    case 's':
        if (NAME_IS(n, len, "status")) return XA_STATUS;
        break;
    case 't':
        if (NAME_IS(n, len, "title")) return XA_TITLE;
        break;
    }
    return XA_OTHER;
}

static void XMLCALL on_start(void *ud, const XML_Char *name, const XML_Char **atts)
{
    struct ucwa_xml *x = ud;
    size_t lnlen, i, na = 0;
    int prefixed;
    const char *ln = local_name(name, &lnlen, &prefixed);
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
        grow((void **)&x->nodes, &x->nodes_cap, x->nnodes + 1, sizeof *x->nodes) < 0 ||
        grow((void **)&x->attrs, &x->attrs_cap, x->nattrs + na, sizeof *x->attrs) < 0 ||
        (off = arena_put(x, ln, lnlen)) < 0) {
        xfail(x, "OutOfMemory", "out of memory");
        return;
    }
    idx = (int32_t)x->nnodes++;
    n = &x->nodes[idx];
    memset(n, 0, sizeof *n);
    n->name = (uint32_t)off;
    n->name_len = (uint32_t)lnlen;
    n->id = elem_id(ln, lnlen);
    n->parent = x->cur;
    n->first = n->last = n->next = -1;
    n->attr = (uint32_t)x->nattrs;
    for (i = 0; atts[i]; i += 2) {
        const char *an = atts[i], *av = atts[i + 1], *aln;
        xattr *a;
        long aoff, voff;
        size_t anlen, avlen;
        int aprefixed;
        uint8_t id;
        if (an[0] == 'x' && !strncmp(an, "xmlns", 5) && (an[5] == '\0' || an[5] == ':'))
            continue; /* namespace declarations */
        aln = local_name(an, &anlen, &aprefixed);
        if (aprefixed) {
            /* prefixed attribute: only xsi:nil matters */
            if (NAME_IS(aln, anlen, "nil")) n->nil = !strcmp(av, "true") || !strcmp(av, "1");
            continue;
        }
        id = attr_id(an, anlen);
        if (id != XA_OTHER) anlen = 0; /* known names are not needed */
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

/* expat salts its hash tables against flooding with a getrandom() call each
 * parse (a system call, 1% of a parse). Instead: one getrandom() for a box's
 * first parse, then a splitmix64 sequence from that secret, as unpredictable
 * to a server. 0 when there is no secret (expat then salts as it does). */
static unsigned long next_salt(struct ucwa_xml *x)
{
    uint64_t z;
    if (!x->salt && getrandom(&x->salt, sizeof x->salt, GRND_NONBLOCK) != (ssize_t)sizeof x->salt) {
        x->salt = 0;
        return 0;
    }
    z = (x->salt += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    return z ? (unsigned long)z : 1;
}

static int xml_run(struct ucwa_xml *x, const char *body, size_t len, size_t offset)
{
    unsigned long salt;
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
    if ((salt = next_salt(x)) != 0) XML_SetHashSalt(p, salt);
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

/* XML bodies through expat into a compact C tree (struct ucwa_xml), which
 * parse.c then turns into Lua tables. The expat handlers never call Lua: they
 * only append to C buffers, and on any failure (out of memory, too deep, a DTD
 * or an entity declaration) they record an error and stop the parser. So no
 * Lua error can longjmp through expat, and a failed parse leaves no partial
 * model behind. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <expat.h>

#include "model.h"

/* expat runs without namespace processing (it costs a third of the parse):
 * element names lose their prefix, xmlns attributes are skipped, and a
 * prefixed "nil" attribute (xsi:nil) marks a nil value. */

static void xfail(struct ucwa_xml *x, const char *subcode, const char *fmt, ...)
{
    XML_Parser p = (XML_Parser)x->parser;
    int n;
    va_list ap;
    if (x->failed)
        return;
    x->failed = 1;
    x->err_subcode = subcode;
    va_start(ap, fmt);
    n = vsnprintf(x->err, sizeof x->err, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < sizeof x->err)
        snprintf(x->err + n, sizeof x->err - (size_t)n, " at line %lu, column %lu (byte %ld)",
                 (unsigned long)XML_GetCurrentLineNumber(p),
                 (unsigned long)XML_GetCurrentColumnNumber(p) + 1,
                 (long)XML_GetCurrentByteIndex(p) + x->base);
    XML_StopParser(p, XML_FALSE);
}

static int grow(void **buf, size_t *cap, size_t need, size_t size)
{
    size_t n;
    void *nb;
    if (need <= *cap)
        return 0;
    n = *cap ? *cap : 64;
    while (n < need) {
        if (n > ((size_t)1 << 40) / size)
            return -1;
        n *= 2;
    }
    nb = realloc(*buf, n * size);
    if (!nb)
        return -1;
    *buf = nb;
    *cap = n;
    return 0;
}

/* Writes s[0..len) plus a NUL at offset off of the arena (at most its
 * length), which ends there after; returns 0, or -1 when out of memory. */
static int arena_write(struct ucwa_xml *x, size_t off, const char *s, size_t len)
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
    case 'c': if (!strcmp(n, "code")) return XE_CODE; break;
    case 'e':
        if (!strcmp(n, "events")) return XE_EVENTS;
        if (!strcmp(n, "error")) return XE_ERROR;
        break;
    case 'i':
        if (!strcmp(n, "item")) return XE_ITEM;
        if (!strcmp(n, "in")) return XE_IN;
        if (!strcmp(n, "input")) return XE_INPUT;
        break;
    case 'l': if (!strcmp(n, "link")) return XE_LINK; break;
    case 'm': if (!strcmp(n, "message")) return XE_MESSAGE; break;
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
    case 'h': if (!strcmp(n, "href")) return XA_HREF; break;
    case 'n': if (!strcmp(n, "name")) return XA_NAME; break;
    case 'r': if (!strcmp(n, "rel")) return XA_REL; break;
    case 's': if (!strcmp(n, "status")) return XA_STATUS; break;
    case 't': if (!strcmp(n, "title")) return XA_TITLE; break;
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

    if (x->failed)
        return;
    if (++x->depth > x->max_depth) {
        xfail(x, "NestingTooDeep", "XML nested deeper than max_depth %d", x->max_depth);
        return;
    }
    if (x->cur >= 0)
        x->nodes[x->cur].has_child = 1;
    for (i = 0; atts[i]; i += 2)
        na++;
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
            continue;  /* namespace declarations */
        if (strchr(an, ':')) {
            /* prefixed attribute: only xsi:nil matters */
            if (!strcmp(local_name(an), "nil"))
                n->nil = !strcmp(av, "true") || !strcmp(av, "1");
            continue;
        }
        id = attr_id(an);
        anlen = id == XA_OTHER ? strlen(an) : 0;  /* known names are not needed */
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
    n->text = (uint32_t)x->arena_len;  /* text, if any, goes here */
    x->cur = idx;
}

static void XMLCALL on_end(void *ud, const XML_Char *name)
{
    struct ucwa_xml *x = ud;
    (void)name;
    if (x->failed || x->cur < 0)
        return;
    x->depth--;
    x->cur = x->nodes[x->cur].parent;
}

static void XMLCALL on_text(void *ud, const XML_Char *s, int len)
{
    struct ucwa_xml *x = ud;
    xnode *n;
    size_t end;
    if (x->failed || x->cur < 0 || len <= 0)
        return;
    n = &x->nodes[x->cur];
    if (n->has_child)
        return;  /* mixed content: only leaves keep text */
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

static void XMLCALL on_doctype(void *ud, const XML_Char *name, const XML_Char *sysid,
                               const XML_Char *pubid, int has_internal)
{
    (void)name; (void)sysid; (void)pubid; (void)has_internal;
    xfail(ud, "DtdNotAllowed", "XML with a DTD (<!DOCTYPE>) refused");
}

static void XMLCALL on_entity(void *ud, const XML_Char *name, int is_param, const XML_Char *value,
                              int value_len, const XML_Char *base, const XML_Char *sysid,
                              const XML_Char *pubid, const XML_Char *notation)
{
    (void)is_param; (void)value; (void)value_len; (void)base; (void)sysid; (void)pubid;
    (void)notation;
    xfail(ud, "DtdNotAllowed", "XML entity declaration '%.40s' refused", name);
}

int ucwa_xml_run(struct ucwa_xml *x, const char *body, size_t len, size_t offset)
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
        if (final)
            break;
    }
    if (x->failed)
        return -1;
    if (x->nnodes == 0) {
        snprintf(x->err, sizeof x->err, "invalid XML: no element");
        x->err_subcode = "SyntaxError";
        return -1;
    }
    return 0;
}

void ucwa_xml_free(struct ucwa_xml *x)
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

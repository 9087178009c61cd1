/* The tree an XML body is read into (struct ucwa_xml: nodes, attributes and
 * text in one arena), shared by its two passes: parse_xml.c (expat into the
 * tree, and the parser box it lives in) and parse_xml_model.c (the tree into
 * the resource model, event batches and error objects). Not part of the
 * public API; parse.h declares the entry points. */
#ifndef UCWA_PARSE_XML_H
#define UCWA_PARSE_XML_H

#include <stddef.h>
#include <stdint.h>

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
    uint64_t salt;   /* hash salt state (see parse_xml.c's next_salt) */
    char err[200]; /* its message */
    const char *err_subcode;
};

static inline const char *xstr(const struct ucwa_xml *x, uint32_t off)
{
    return x->arena + off;
}

#endif

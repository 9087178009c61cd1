/* Internal declarations shared by the parsing/encoding files of ucwa.core
 * (parse.c, parse_xml.c, encode.c, date.c). Not part of the public API. */
#ifndef UCWA_MODEL_H
#define UCWA_MODEL_H

#include <stddef.h>
#include <stdint.h>
#include <lua.h>
#include <lauxlib.h>

/* Metatable name of error objects (also usable from other parts of the core:
 * luaL_setmetatable(L, UCWA_ERROR_MT)). */
#define UCWA_ERROR_MT "ucwa.error"
/* Metatable name of the cached expat parser box. */
#define UCWA_XML_MT "ucwa.xmlparser"

/* Upvalues shared by the parse/encode functions. */
enum {
    UV_DECODE = 1,  /* private cjson.safe instance's decode */
    UV_ENCODE,      /* ... and encode */
    UV_LIMITS,      /* struct ucwa_limits userdata */
    UV_XML,         /* struct ucwa_xml userdata (the cached expat parser) */
    UV_CJSON,       /* the private cjson.safe instance (for decode_max_depth) */
    UV_COUNT = UV_CJSON
};

struct ucwa_limits {
    size_t max_body;  /* bytes */
    int max_depth;    /* nesting of JSON objects/arrays or XML elements */
};

#define UCWA_DEFAULT_MAX_BODY ((size_t)16 << 20)
#define UCWA_DEFAULT_MAX_DEPTH 64
#define UCWA_MAX_MAX_BODY ((size_t)1 << 30)
#define UCWA_MAX_MAX_DEPTH 1000

/* ---- XML tree (parse_xml.c) ---- */

enum xel {  /* element local names the model knows */
    XE_OTHER, XE_RESOURCE, XE_LINK, XE_PROPERTY, XE_PROPERTYLIST, XE_ITEM,
    XE_EVENTS, XE_SENDER, XE_IN, XE_INPUT, XE_STATUS, XE_REASON,
    XE_CODE, XE_SUBCODE, XE_MESSAGE, XE_ERROR
};
enum xat {  /* attribute names the model knows */
    XA_OTHER, XA_REL, XA_HREF, XA_TITLE, XA_NAME, XA_NIL, XA_STATUS
};

typedef struct {
    uint32_t name, name_len;   /* local name: arena offset, length */
    uint32_t text, text_len;   /* text of a leaf element */
    uint32_t attr, nattr;      /* first attribute index, count */
    int32_t parent, first, last, next;  /* tree links (-1: none) */
    uint8_t id;                /* enum xel */
    uint8_t nil;               /* xsi:nil="true" */
    uint8_t has_child;
    uint8_t pad;
} xnode;

typedef struct {
    uint32_t name, name_len, value, value_len;  /* arena offsets (name: XA_OTHER only) */
    uint8_t id;                                 /* enum xat */
} xattr;

struct ucwa_xml {
    void *parser;            /* XML_Parser, NULL when closed */
    char *arena; size_t arena_len, arena_cap;
    xnode *nodes; size_t nnodes, nodes_cap;
    xattr *attrs; size_t nattrs, attrs_cap;
    int32_t cur;             /* open element */
    int depth, max_depth;
    long base;               /* bytes skipped before the body (BOM, blanks) */
    int failed;              /* set by a handler that stopped the parser */
    int busy;                /* in use by a call (to-be-closed slot on its stack) */
    int temp;                /* a one-off box for a re-entrant call */
    char err[200];           /* its message */
    const char *err_subcode;
};

/* Parses body into x's tree. Returns 0 on success; else -1 with a message in
 * x->err and the subcode in x->err_subcode. Never raises, never calls Lua. */
int ucwa_xml_run(struct ucwa_xml *x, const char *body, size_t len, size_t offset);
/* Frees the parser and buffers (idempotent). */
void ucwa_xml_free(struct ucwa_xml *x);

static inline const char *xstr(const struct ucwa_xml *x, uint32_t off) { return x->arena + off; }

/* ---- helpers (parse.c) ---- */

/* Pushes nil and an error object {code="ParseError", subcode=, message=}; returns 2. */
int ucwa_parse_fail(lua_State *L, const char *subcode, const char *fmt, ...);
/* Pushes a new error object with the given fields (any may be NULL / 0). */
void ucwa_push_error(lua_State *L, int status, const char *code, const char *subcode, const char *message);

/* ---- encode.c / date.c ---- */
int ucwa_l_encode(lua_State *L);
int ucwa_l_date(lua_State *L);

#endif

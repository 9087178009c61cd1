/* multipart/batching bodies (BatchingRequests.md): MIME by GMime, the
 * application/http message in each part by http-parser. The same file is
 * compiled into ucwa.core (the client) and into ucwa-sim (the server):
 *
 *   multipart_build(parts, msgtype)         -> body, content_type
 *       msgtype "request":  parts[i] = {method=, target=, headers={name=value}, body=}
 *       msgtype "response": parts[i] = {status=, reason=, headers=, body=}
 *   multipart_parse(body, content_type, msgtype) -> parts | nil, err
 *       parts[i] = {method=, target=, path=, query=, headers=, body=} (requests) or
 *       {status=, headers=, body=} (responses), header names in lower case;
 *       a part that is not a well-formed application/http message of that
 *       msgtype is {error = "part 2: ..."}, and only that part fails.
 *
 * Nothing is split by hand: the body goes to GMime's parser behind a
 * Content-Type header line (the batch's own, from the HTTP response), each
 * part's decoded content to http-parser. Neither library calls Lua: results
 * are collected in C (in a box whose __gc frees them, so a memory error while
 * pushing cannot leak), then pushed. */
#include <string.h>
#include <gmime/gmime.h>
#include <http_parser.h>

#include "ucwa.h"

#define MULTIPART_BOX "ucwa.multipart"
#define MAX_PARTS 1000    /* a batch the client sends has at most 100 */
#define MAX_HEADERS 100   /* per embedded message */

/* What one parse holds, freed by __gc whatever happens. */
struct box {
    GMimeParserOptions *options;
    GMimeObject *root;
    GByteArray *body; /* the current embedded message's body */
    char problem[160]; /* the first thing GMime said was wrong with the whole */
};

static int box_gc(lua_State *L)
{
    struct box *b = luaL_checkudata(L, 1, MULTIPART_BOX);
    if (b->root) g_object_unref(b->root);
    if (b->options) g_mime_parser_options_free(b->options);
    if (b->body) g_byte_array_free(b->body, TRUE);
    b->root = NULL;
    b->options = NULL;
    b->body = NULL;
    return 0;
}

static struct box *new_box(lua_State *L)
{
    struct box *b = lua_newuserdatauv(L, sizeof *b, 0);
    memset(b, 0, sizeof *b);
    luaL_setmetatable(L, MULTIPART_BOX);
    return b;
}

/* GMime's library-wide state, once per process (g_mime_init is not counted). */
static void init_gmime(void)
{
    static int done;
    if (!done) {
        g_mime_init();
        done = 1;
    }
}

/* ---- http-parser: one application/http message ------------------------ */

struct span {
    size_t off, len;
};

struct message {
    const char *base; /* the part's content */
    struct span target, names[MAX_HEADERS], values[MAX_HEADERS];
    int nheaders, in_value, complete, too_many, folded;
    GByteArray *body;
};

static int on_url(http_parser *p, const char *at, size_t len)
{
    struct message *m = p->data;
    if (m->target.len && m->target.off + m->target.len == (size_t)(at - m->base))
        m->target.len += len;
    else
        m->target = (struct span){(size_t)(at - m->base), len};
    return 0;
}

/* A name or a value in pieces (only when not contiguous: never, for one
 * buffer) extends the last one. */
static int extend(struct message *m, struct span *s, const char *at, size_t len)
{
    if (s->len && s->off + s->len != (size_t)(at - m->base)) {
        m->folded = 1;
        return 1;
    }
    if (!s->len) s->off = (size_t)(at - m->base);
    s->len += len;
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    struct message *m = p->data;
    if (m->in_value || m->nheaders == 0) {
        if (m->nheaders == MAX_HEADERS) {
            m->too_many = 1;
            return 1;
        }
        m->nheaders++;
        m->names[m->nheaders - 1] = (struct span){0, 0};
        m->values[m->nheaders - 1] = (struct span){0, 0};
        m->in_value = 0;
    }
    return extend(m, &m->names[m->nheaders - 1], at, len);
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    struct message *m = p->data;
    m->in_value = 1;
    return extend(m, &m->values[m->nheaders - 1], at, len);
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    struct message *m = p->data;
    g_byte_array_append(m->body, (const guint8 *)at, (guint)len);
    return 0;
}

static int on_complete(http_parser *p)
{
    struct message *m = p->data;
    m->complete = 1;
    http_parser_pause(p, 1); /* one message a part: anything after it is refused */
    return 0;
}

/* path= and query= of a request target, by http-parser's URL parser
 * (origin form "/a?b" or absolute "https://h/a?b"); nothing when it is
 * neither. */
static void push_target_parts(lua_State *L, const char *t, size_t len)
{
    struct http_parser_url u;
    http_parser_url_init(&u);
    if (http_parser_parse_url(t, len, 0, &u) != 0) return;
    if (u.field_set & (1 << UF_PATH)) {
        lua_pushlstring(L, t + u.field_data[UF_PATH].off, u.field_data[UF_PATH].len);
        lua_setfield(L, -2, "path");
    }
    if (u.field_set & (1 << UF_QUERY)) {
        lua_pushlstring(L, t + u.field_data[UF_QUERY].off, u.field_data[UF_QUERY].len);
        lua_setfield(L, -2, "query");
    }
}

/* Parses the message in [s, s+len) (a Lua string on the stack) and pushes
 * its table, or {error=} naming part `n`. */
static void push_message(lua_State *L, struct box *b, const char *s, size_t len, int response, int n)
{
    http_parser_settings settings;
    http_parser parser;
    struct message m;
    size_t used;
    enum http_errno e;
    int i;

    memset(&settings, 0, sizeof settings);
    memset(&m, 0, sizeof m);
    settings.on_url = on_url;
    settings.on_header_field = on_header_field;
    settings.on_header_value = on_header_value;
    settings.on_body = on_body;
    settings.on_message_complete = on_complete;
    g_byte_array_set_size(b->body, 0);
    m.base = s;
    m.body = b->body;
    http_parser_init(&parser, response ? HTTP_RESPONSE : HTTP_REQUEST);
    parser.data = &m;
    used = http_parser_execute(&parser, &settings, s, len);
    e = HTTP_PARSER_ERRNO(&parser);
    if (e == HPE_OK && !m.complete && used == len)
        http_parser_execute(&parser, &settings, NULL, 0); /* the end of the part ends a body without a length */
    e = HTTP_PARSER_ERRNO(&parser);

    lua_newtable(L);
    if (m.too_many) {
        lua_pushfstring(L, "part %d: more than %d headers in its HTTP message", n, MAX_HEADERS);
    } else if (m.folded) {
        lua_pushfstring(L, "part %d: a folded header in its HTTP message", n);
    } else if (e != HPE_OK && e != HPE_PAUSED) {
        lua_pushfstring(L, "part %d: not an HTTP %s (%s at byte %d)", n, response ? "response" : "request",
                   http_errno_description(e), (int)used);
    } else if (response && (len < 5 || memcmp(s, "HTTP/", 5) != 0)) {
        /* (http-parser outside strict mode lets "HTXP/1.1" pass) */
        lua_pushfstring(L, "part %d: not an HTTP response (no HTTP/ status line)", n);
    } else if (parser.http_major != 1) {
        lua_pushfstring(L, "part %d: HTTP/%d.%d, HTTP/1.x expected", n, (int)parser.http_major, (int)parser.http_minor);
    } else if (!m.complete) {
        lua_pushfstring(L, "part %d: its HTTP %s is truncated", n, response ? "response" : "request");
    } else {
        for (i = (int)used; i < (int)len; i++) {
            if (s[i] != '\r' && s[i] != '\n') break;
        }
        if (i < (int)len) {
            lua_pushfstring(L, "part %d: data after its HTTP %s", n, response ? "response" : "request");
        } else {
            lua_pushnil(L);
        }
    }
    if (!lua_isnil(L, -1)) {
        lua_setfield(L, -2, "error");
        return;
    }
    lua_pop(L, 1);
    if (response) {
        lua_pushinteger(L, parser.status_code);
        lua_setfield(L, -2, "status");
    } else {
        lua_pushstring(L, http_method_str((enum http_method)parser.method));
        lua_setfield(L, -2, "method");
        lua_pushlstring(L, s + m.target.off, m.target.len);
        lua_setfield(L, -2, "target");
        push_target_parts(L, s + m.target.off, m.target.len);
    }
    lua_newtable(L);
    for (i = 0; i < m.nheaders; i++) {
        luaL_Buffer name;
        size_t k;
        luaL_buffinit(L, &name);
        for (k = 0; k < m.names[i].len; k++) {
            char c = s[m.names[i].off + k];
            luaL_addchar(&name, (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c);
        }
        luaL_pushresult(&name);
        lua_pushlstring(L, s + m.values[i].off, m.values[i].len);
        lua_rawset(L, -3);
    }
    lua_setfield(L, -2, "headers");
    lua_pushlstring(L, (const char *)b->body->data, b->body->len);
    lua_setfield(L, -2, "body");
}

/* ---- parse -------------------------------------------------------------- */

static void on_warning(gint64 offset, GMimeParserWarning code, const gchar *item, gpointer data)
{
    struct box *b = data;
    const char *what = NULL;
    (void)item;
    switch (code) {
    case GMIME_CRIT_MULTIPART_WITHOUT_BOUNDARY: what = "no boundary"; break;
    case GMIME_WARN_TRUNCATED_MESSAGE: what = "truncated (no closing boundary)"; break;
    case GMIME_WARN_MALFORMED_MULTIPART: what = "no parts"; break;
    case GMIME_CRIT_NESTING_OVERFLOW: what = "nested too deep"; break;
    case GMIME_CRIT_PART_WITHOUT_HEADERS_OR_CONTENT: what = "a part without headers or content"; break;
    default: return;
    }
    if (!b->problem[0] && offset >= 0)
        snprintf(b->problem, sizeof b->problem, "%s (at byte %lld)", what, (long long)offset);
    else if (!b->problem[0])
        snprintf(b->problem, sizeof b->problem, "%s", what);
}

/* The body bytes of a part, decoded from its Content-Transfer-Encoding,
 * pushed as a Lua string. */
static void push_content(lua_State *L, struct box *b, GMimePart *part)
{
    GMimeDataWrapper *w = g_mime_part_get_content(part);
    g_byte_array_set_size(b->body, 0);
    if (w) {
        GMimeStream *out = g_mime_stream_mem_new_with_byte_array(b->body);
        g_mime_stream_mem_set_owner(GMIME_STREAM_MEM(out), FALSE);
        g_mime_data_wrapper_write_to_stream(w, out);
        g_object_unref(out);
    }
    lua_pushlstring(L, (const char *)b->body->data, b->body->len);
}

static int l_multipart_parse(lua_State *L)
{
    size_t len, clen;
    const char *body = luaL_checklstring(L, 1, &len);
    const char *ctype = luaL_checklstring(L, 2, &clen);
    const char *kind = luaL_checkstring(L, 3);
    int response = strcmp(kind, "response") == 0;
    struct box *b;
    GMimeContentType *ct;
    GMimeStream *in;
    GMimeParser *parser;
    const char *boundary;
    int n, i;

    if (!response && strcmp(kind, "request") != 0)
        return luaL_argerror(L, 3, lua_pushfstring(L, "\"request\" or \"response\" expected, got \"%s\"", kind));
    init_gmime();
    if (memchr(ctype, '\n', clen) || memchr(ctype, '\r', clen) || memchr(ctype, '\0', clen)) {
        lua_pushnil(L);
        lua_pushliteral(L, "multipart/batching: a line break in the Content-Type");
        return 2;
    }
    b = new_box(L);
    b->body = g_byte_array_new();
    ct = g_mime_content_type_parse(NULL, ctype);
    if (!g_mime_content_type_is_type(ct, "multipart", "*")) {
        g_object_unref(ct);
        lua_pushnil(L);
        lua_pushfstring(L, "multipart/batching expected, got Content-Type \"%s\"", ctype);
        return 2;
    }
    boundary = g_mime_content_type_get_parameter(ct, "boundary");
    if (!boundary || !*boundary) {
        g_object_unref(ct);
        lua_pushnil(L);
        lua_pushliteral(L, "multipart/batching: the Content-Type has no boundary");
        return 2;
    }
    g_object_unref(ct);

    /* The entity GMime reads: the batch's Content-Type, then its body. */
    in = g_mime_stream_mem_new();
    g_mime_stream_write_string(in, "Content-Type: ");
    g_mime_stream_write(in, ctype, clen);
    g_mime_stream_write_string(in, "\r\n\r\n");
    g_mime_stream_write(in, body, len);
    g_mime_stream_reset(in);
    b->options = g_mime_parser_options_new();
    g_mime_parser_options_set_warning_callback(b->options, on_warning, b);
    parser = g_mime_parser_new_with_stream(in);
    g_object_unref(in);
    b->root = g_mime_parser_construct_part(parser, b->options);
    g_object_unref(parser);

    if (!b->root || !GMIME_IS_MULTIPART(b->root)) {
        lua_pushnil(L);
        lua_pushfstring(L, "multipart/batching: not a multipart body%s%s", b->problem[0] ? ": " : "", b->problem);
        return 2;
    }
    if (b->problem[0]) {
        lua_pushnil(L);
        lua_pushfstring(L, "multipart/batching: %s", b->problem);
        return 2;
    }
    n = g_mime_multipart_get_count(GMIME_MULTIPART(b->root));
    if (n > MAX_PARTS) {
        lua_pushnil(L);
        lua_pushfstring(L, "multipart/batching: %d parts, more than %d", n, MAX_PARTS);
        return 2;
    }
    lua_createtable(L, n, 0);
    for (i = 0; i < n; i++) {
        GMimeObject *part = g_mime_multipart_get_part(GMIME_MULTIPART(b->root), i);
        GMimeContentType *pct = g_mime_object_get_content_type(part);
        const char *msgtype = pct ? g_mime_content_type_get_parameter(pct, "msgtype") : NULL;
        if (!GMIME_IS_PART(part) || !g_mime_content_type_is_type(pct, "application", "http")) {
            lua_newtable(L);
            lua_pushfstring(L, "part %d: not application/http", i + 1);
            lua_setfield(L, -2, "error");
        } else if (msgtype && g_ascii_strcasecmp(msgtype, kind) != 0) {
            lua_newtable(L);
            lua_pushfstring(L, "part %d: msgtype=%s, %s expected", i + 1, msgtype, kind);
            lua_setfield(L, -2, "error");
        } else {
            size_t mlen;
            const char *msg;
            push_content(L, b, GMIME_PART(part));
            msg = lua_tolstring(L, -1, &mlen);
            push_message(L, b, msg, mlen, response, i + 1);
            lua_remove(L, -2); /* the content */
        }
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

/* ---- build -------------------------------------------------------------- */

/* A field of part table `t` that fits on one line (no header injection). */
static const char *line_field(lua_State *L, int t, const char *k, const char *def, int arg)
{
    size_t len;
    const char *s;
    lua_getfield(L, t, k);
    if (lua_isnil(L, -1) && def) {
        lua_pop(L, 1);
        return def;
    }
    s = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
    if (!s || !len || strcspn(s, "\r\n") != len)
        luaL_argerror(L, arg, lua_pushfstring(L, "%s: a string without line breaks expected", k));
    lua_pop(L, 1); /* the string stays alive in the part table */
    return s;
}

/* Writes the HTTP message of part table `t` (part number `i`) into `out`. */
static void build_message(lua_State *L, int t, int i, int response, GString *out)
{
    size_t blen = 0;
    const char *body;
    if (response) {
        lua_Integer status;
        lua_getfield(L, t, "status");
        status = lua_tointeger(L, -1);
        lua_pop(L, 1);
        if (status < 100 || status > 999)
            luaL_argerror(L, 1, lua_pushfstring(L, "part %d: status: an HTTP status expected", i));
        g_string_append_printf(out, "HTTP/1.1 %d %s\r\n", (int)status, line_field(L, t, "reason", "Answer", 1));
    } else {
        const char *method = line_field(L, t, "method", NULL, 1);
        const char *target = line_field(L, t, "target", NULL, 1);
        if (strchr(method, ' ') || strchr(target, ' '))
            luaL_argerror(L, 1, lua_pushfstring(L, "part %d: method and target: no spaces", i));
        g_string_append_printf(out, "%s %s HTTP/1.1\r\n", method, target);
    }
    lua_getfield(L, t, "headers");
    if (lua_istable(L, -1)) {
        lua_pushnil(L);
        while (lua_next(L, -2)) {
            size_t nl = 0, vl = 0;
            const char *name = lua_type(L, -2) == LUA_TSTRING ? lua_tolstring(L, -2, &nl) : NULL;
            const char *value = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &vl) : NULL;
            if (!name || !value || !nl || strcspn(name, "\r\n: ") != nl || strcspn(value, "\r\n") != vl)
                luaL_argerror(L, 1, lua_pushfstring(L, "part %d: headers: names and values without line breaks expected", i));
            if (g_ascii_strcasecmp(name, "content-length") != 0) {
                g_string_append_len(out, name, (gssize)nl);
                g_string_append(out, ": ");
                g_string_append_len(out, value, (gssize)vl);
                g_string_append(out, "\r\n");
            }
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
    lua_getfield(L, t, "body");
    body = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &blen) : NULL;
    if (body || response) g_string_append_printf(out, "Content-Length: %lu\r\n", (unsigned long)blen);
    g_string_append(out, "\r\n");
    if (body) g_string_append_len(out, body, (gssize)blen);
    lua_pop(L, 1);
}

struct build_box {
    GMimeMultipart *mp;
    GMimeFormatOptions *format;
    GByteArray *out;
    GString *msg;
};

static int build_gc(lua_State *L)
{
    struct build_box *b = luaL_checkudata(L, 1, MULTIPART_BOX ".build");
    if (b->mp) g_object_unref(b->mp);
    if (b->format) g_mime_format_options_free(b->format);
    if (b->out) g_byte_array_free(b->out, TRUE);
    if (b->msg) g_string_free(b->msg, TRUE);
    memset(b, 0, sizeof *b);
    return 0;
}

static int l_multipart_build(lua_State *L)
{
    const char *kind = luaL_checkstring(L, 2);
    int response = strcmp(kind, "response") == 0;
    struct build_box *b;
    GMimeStream *out;
    lua_Integer n, i;

    luaL_checktype(L, 1, LUA_TTABLE);
    if (!response && strcmp(kind, "request") != 0)
        return luaL_argerror(L, 2, lua_pushfstring(L, "\"request\" or \"response\" expected, got \"%s\"", kind));
    n = luaL_len(L, 1);
    if (n < 1 || n > MAX_PARTS) return luaL_argerror(L, 1, lua_pushfstring(L, "1 to %d parts expected", MAX_PARTS));
    init_gmime();
    b = lua_newuserdatauv(L, sizeof *b, 0);
    memset(b, 0, sizeof *b);
    luaL_setmetatable(L, MULTIPART_BOX ".build");
    b->mp = g_mime_multipart_new_with_subtype("batching");
    g_mime_multipart_set_boundary(b->mp, NULL); /* a random one */
    b->msg = g_string_new(NULL);
    for (i = 1; i <= n; i++) {
        GMimePart *part;
        GMimeStream *content;
        GMimeDataWrapper *w;
        if (lua_rawgeti(L, 1, i) != LUA_TTABLE)
            luaL_argerror(L, 1, lua_pushfstring(L, "part %d: a table expected", (int)i));
        g_string_truncate(b->msg, 0);
        build_message(L, lua_gettop(L), (int)i, response, b->msg);
        lua_pop(L, 1); /* the part table */
        part = g_mime_part_new_with_type("application", "http");
        g_mime_object_set_content_type_parameter(GMIME_OBJECT(part), "msgtype", kind);
        g_mime_multipart_add(b->mp, GMIME_OBJECT(part));
        g_object_unref(part); /* the multipart holds it */
        content = g_mime_stream_mem_new_with_buffer(b->msg->str, b->msg->len);
        w = g_mime_data_wrapper_new_with_stream(content, GMIME_CONTENT_ENCODING_DEFAULT);
        g_object_unref(content);
        g_mime_part_set_content(part, w);
        g_object_unref(w);
        g_mime_part_set_content_encoding(part, GMIME_CONTENT_ENCODING_BINARY);
    }
    b->format = g_mime_format_options_new();
    g_mime_format_options_set_newline_format(b->format, GMIME_NEWLINE_FORMAT_DOS);
    b->out = g_byte_array_new();
    out = g_mime_stream_mem_new_with_byte_array(b->out);
    g_mime_stream_mem_set_owner(GMIME_STREAM_MEM(out), FALSE);
    g_mime_object_write_content_to_stream(GMIME_OBJECT(b->mp), b->format, out);
    g_object_unref(out);
    lua_pushlstring(L, (const char *)b->out->data, b->out->len);
    lua_pushfstring(L, "multipart/batching; boundary=\"%s\"", g_mime_multipart_get_boundary(b->mp));
    return 2;
}

static const luaL_Reg funcs[] = {
    {"multipart_build", l_multipart_build},
    {"multipart_parse", l_multipart_parse},
    {NULL, NULL},
};

void ucwa_open_multipart(lua_State *L)
{
    luaL_newmetatable(L, MULTIPART_BOX);
    lua_pushcfunction(L, box_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    luaL_newmetatable(L, MULTIPART_BOX ".build");
    lua_pushcfunction(L, build_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    luaL_setfuncs(L, funcs, 0);
}

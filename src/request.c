/* HTTP requests on the engine.
 *
 *   local req = eng:request{ method=, url=, headers=, body=, timeout=, callback= }
 *   req:cancel()      -- the callback then gets a Cancelled error, on the next step
 *
 * The C request (ucwa_req) is one easy handle, its header slist, and the
 * response being received; libcurl's write/header/socket callbacks fill it and
 * never call Lua. The callback runs from step() with (response, nil) for any
 * HTTP status, or (nil, transport error).
 *
 * A Lua request is a userdata holding a ucwa_req; uservalues: 1 callback, 2
 * the body string (libcurl reads it in place until the transfer is done), 3
 * the engine. It is anchored in the engine while in flight.
 *
 * Header caps (libcurl's own limits say only "Out of memory"): a request
 * header line over the engine's max_header is not sent, the request is
 * queued as done and its callback gets BadRequest/HeaderTooLarge (the header
 * named, never its value); response headers over max_response_header, or a
 * line over libcurl's 100 KiB, give BadResponse/HeaderTooLarge. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "ucwa.h"
#include "error.h"
#include "request.h"

#define UCWA_REQUEST_MT "ucwa.request"

/* ---------------------------------------------------------------- libcurl callbacks (C only) */

static size_t write_cb(char *p, size_t size, size_t n, void *ud)
{
    ucwa_req *r = ud;
    size_t len = size * n;
    if (r->body.len + len > r->max_body) {
        r->too_large = 1;
        return 0; /* CURLE_WRITE_ERROR */
    }
    if (ucwa_buf_add(&r->body, p, len) != 0) return 0;
    return len;
}

static size_t header_cb(char *p, size_t size, size_t n, void *ud)
{
    ucwa_req *r = ud;
    ucwa_buf *h = &r->head;
    size_t len = size * n, i, ne;
    if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) { /* a new response (after 1xx) */
        h->len = 0;
        r->head_bytes = len;
        r->got_status = 1;
        r->head_done = 0;
        return len;
    }
    r->head_bytes += len;
    if (r->head_bytes > r->max_head) {
        r->head_too_large = 1;
        return 0; /* CURLE_WRITE_ERROR */
    }
    while (len && (p[len - 1] == '\n' || p[len - 1] == '\r')) len--;
    if (len == 0) {
        r->head_done = 1;
        return size * n;
    }
    if ((p[0] == ' ' || p[0] == '\t') && h->len) { /* obsolete line folding */
        while (len && (*p == ' ' || *p == '\t')) {
            p++;
            len--;
        }
        h->len--; /* drop the value's NUL */
        if (ucwa_buf_add(h, " ", 1) || ucwa_buf_add(h, p, len) || ucwa_buf_add(h, "", 1)) return 0;
        return size * n;
    }
    for (ne = 0; ne < len && p[ne] != ':'; ne++) {}
    if (ne == len || ne == 0) return size * n; /* not a header line */
    size_t start = h->len;
    if (ucwa_buf_add(h, p, ne) || ucwa_buf_add(h, "", 1)) return 0;
    for (i = start; i < start + ne; i++) {
        char c = h->p[i];
        if (c >= 'A' && c <= 'Z') h->p[i] = (char)(c + 32);
    }
    size_t vs = ne + 1, ve = len;
    while (vs < ve && (p[vs] == ' ' || p[vs] == '\t')) vs++;
    while (ve > vs && (p[ve - 1] == ' ' || p[ve - 1] == '\t')) ve--;
    if (ucwa_buf_add(h, p + vs, ve - vs) || ucwa_buf_add(h, "", 1)) return 0;
    return size * n;
}

/* libcurl's own socket() call, plus a note of why it failed: out of
 * descriptors libcurl only says "Couldn't connect" */
static curl_socket_t open_socket(void *ud, curlsocktype purpose, struct curl_sockaddr *a)
{
    ucwa_req *r = ud;
    (void)purpose;
    curl_socket_t s = socket(a->family, a->socktype, a->protocol);
    if (s == CURL_SOCKET_BAD && (errno == EMFILE || errno == ENFILE)) r->sock_errno = errno;
    return s;
}

/* ---------------------------------------------------------------- the C request */

/* the easy handle must be out of the multi handle already */
static void release_curl(ucwa_req *r)
{
    if (r->x.easy) {
        curl_easy_cleanup(r->x.easy);
        r->x.easy = NULL;
    }
    if (r->hdrs && !r->hdrs_lent) curl_slist_free_all(r->hdrs);
    r->hdrs = NULL;
    r->easy_set = 0;
}

/* x.done: the status and effective URL read, the easy handle freed (kept,
 * with keep_easy, for the owner's next transfer) */
static void req_done(ucwa_xfer *x)
{
    ucwa_req *r = ucwa_container_of(x, ucwa_req, x);
    char *eff = NULL;
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &r->status);
    curl_easy_getinfo(x->easy, CURLINFO_EFFECTIVE_URL, &eff);
    if (eff) r->eff_url = strdup(eff);
    /* libcurl refuses a header line of over 100 KiB (CURL_MAX_HTTP_HEADER)
     * before our header function sees it, and says "Out of memory" */
    if (x->result == CURLE_OUT_OF_MEMORY && r->got_status && !r->head_done && !r->head_too_large)
        r->head_too_large = 2;
    if (!r->keep_easy || x->result != CURLE_OK) release_curl(r);
}

void ucwa_req_free(ucwa_req *r)
{
    ucwa_work_cancel(&r->x.w);
    release_curl(r);
    ucwa_buf_free(&r->body);
    ucwa_buf_free(&r->head);
    free(r->eff_url);
    r->eff_url = NULL;
    free(r->url);
    r->url = NULL;
    free(r->refused);
    r->refused = NULL;
}

const char *ucwa_req_start(ucwa_engine *e, ucwa_req *r, const ucwa_req_spec *s)
{
    /* a kept easy handle (idle: its transfer is over) is used again: its
     * options are set anew below (for a plain GET, the per-request ones),
     * its receive buffer stays */
    CURL *c = NULL;
    struct curl_slist *old_hdrs = NULL;
    int easy_set = 0;
    if (r->keep_easy && r->x.easy && r->x.w.state != UCWA_XFER) {
        c = r->x.easy;
        /* still the handle's CURLOPT_HTTPHEADER until it is set again */
        old_hdrs = r->hdrs_lent ? NULL : r->hdrs;
        easy_set = r->easy_set;
        r->x.easy = NULL;
        r->hdrs = NULL;
    }
    ucwa_req_free(r);
    if (!c) c = curl_easy_init();
    if (!c) {
        if (!s->hdrs_lent) curl_slist_free_all(s->hdrs);
        return "curl_easy_init failed";
    }
    const ucwa_http_opts *h = &e->http;
    r->x.easy = c;
    r->x.done = req_done;
    r->x.lane_key = s->lane_key;
    r->hdrs = s->hdrs;
    r->hdrs_lent = s->hdrs_lent;
    r->max_body = h->max_body;
    r->max_head = h->max_response_header;
    r->head_bytes = 0;
    r->got_status = r->head_done = r->head_too_large = 0;
    r->too_large = 0;
    r->cancelled = 0;
    r->sock_errno = 0;
    r->status = 0;
    r->errbuf[0] = '\0';
    r->url = strdup(s->url);
    if (!r->url) {
        ucwa_req_free(r);
        return "out of memory";
    }

    CURLcode rc = CURLE_OK;
#define SET(opt, val)                                                                                                  \
    do {                                                                                                               \
        if (rc == CURLE_OK) rc = curl_easy_setopt(c, opt, val);                                                        \
    } while (0)
    const char *m = s->method;
    int plain_get = strcmp(m, "GET") == 0 && !s->has_body;
    SET(CURLOPT_URL, s->url);
    SET(CURLOPT_TIMEOUT_MS, s->timeout_ms);
    SET(CURLOPT_HTTPHEADER, r->hdrs);
    if (s->buffer_size) SET(CURLOPT_BUFFERSIZE, s->buffer_size);
    /* A kept handle's next GET (a channel's next P-GET): libcurl keeps the
     * options set before, and the rest are the engine's (fixed) or point
     * into r (the same): ~25 setopts a batch fewer on the event path. */
    if (easy_set && plain_get && rc == CURLE_OK) goto options_set;
    SET(CURLOPT_PRIVATE, (void *)&r->x);
    SET(CURLOPT_WRITEFUNCTION, write_cb);
    SET(CURLOPT_WRITEDATA, (void *)r);
    SET(CURLOPT_HEADERFUNCTION, header_cb);
    SET(CURLOPT_HEADERDATA, (void *)r);
    SET(CURLOPT_OPENSOCKETFUNCTION, open_socket);
    SET(CURLOPT_OPENSOCKETDATA, (void *)r);
    SET(CURLOPT_ERRORBUFFER, r->errbuf);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_ACCEPT_ENCODING, "");
    SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)h->max_body);
    SET(CURLOPT_USERAGENT, h->user_agent);
    SET(CURLOPT_CONNECTTIMEOUT_MS, h->connect_timeout_ms);
    SET(CURLOPT_SSL_VERIFYPEER, h->verify ? 1L : 0L);
    SET(CURLOPT_SSL_VERIFYHOST, h->verify ? 2L : 0L);
    if (h->ca_file || h->default_ca) {
        /* One CA file is the trust (ca_file, else libcurl's default bundle),
         * without libcurl's default CA directory: that lets libcurl parse the
         * file once and share the store among connections (its CA cache takes
         * a file without a directory). With both, each TLS connection parsed
         * the bundle into a store of its own: 1.6 MB and ~0.1 s of CPU a
         * connection with Debian's 145 certificates. */
        SET(CURLOPT_CAINFO, h->ca_file ? h->ca_file : h->default_ca);
        SET(CURLOPT_CAPATH, (char *)NULL);
    }
    /* Over TLS libcurl copies each request into an upload buffer (OpenSSL
     * wants the same bytes on a retried write), 64 KiB by default, kept by
     * the easy handle: every pending P-GET held one. 16 KiB (libcurl's
     * least) is one TLS record; larger requests go in pieces. */
    SET(CURLOPT_UPLOAD_BUFFERSIZE, 16384L);
    if (h->proxy) SET(CURLOPT_PROXY, h->proxy);
    if (h->resolve) SET(CURLOPT_RESOLVE, h->resolve);
    /* HTTP/1.1 also over TLS (libcurl would offer h2): one long poll per
     * connection, as UCWA servers expect */
    SET(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    if (plain_get) {
        SET(CURLOPT_HTTPGET, 1L);
    } else if (strcmp(m, "HEAD") == 0) {
        SET(CURLOPT_NOBODY, 1L);
    } else {
        if (strcmp(m, "POST") != 0) SET(CURLOPT_CUSTOMREQUEST, m);
        if (s->has_body || strcmp(m, "POST") == 0 || strcmp(m, "PUT") == 0 || strcmp(m, "PATCH") == 0) {
            SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(s->has_body ? s->body_len : 0));
            SET(CURLOPT_POSTFIELDS, s->has_body ? s->body : "");
        }
    }
options_set:
#undef SET
    curl_slist_free_all(old_hdrs); /* the handle has the new list (or is freed below) */
    if (rc != CURLE_OK) {
        ucwa_req_free(r);
        return curl_easy_strerror(rc);
    }
    r->easy_set = r->keep_easy && plain_get;
    if (ucwa_xfer_add(e, &r->x) != 0) {
        ucwa_req_free(r);
        return "curl_multi_add_handle failed";
    }
    return NULL;
}

int ucwa_req_ok(const ucwa_req *r)
{
    return !r->cancelled && !r->refused && r->x.result == CURLE_OK && r->status > 0;
}

const char *ucwa_req_header(const ucwa_req *r, const char *name)
{
    size_t i = 0;
    while (i < r->head.len) {
        const char *n = r->head.p + i;
        size_t nl = strlen(n);
        const char *v = n + nl + 1;
        if (strcasecmp(n, name) == 0) return v;
        i += nl + 1 + strlen(v) + 1;
    }
    return NULL;
}

/* ---------------------------------------------------------------- results as Lua values */

void ucwa_push_response(lua_State *L, const ucwa_req *r)
{
    lua_createtable(L, 0, 4);
    lua_pushinteger(L, r->status);
    lua_setfield(L, -2, "status");
    lua_newtable(L);
    size_t i = 0;
    while (i < r->head.len) {
        const char *n = r->head.p + i;
        size_t nl = strlen(n);
        const char *v = n + nl + 1;
        size_t vl = strlen(v);
        if (lua_getfield(L, -1, n) == LUA_TSTRING) { /* a repeated header: joined */
            lua_pushliteral(L, ", ");
            lua_pushlstring(L, v, vl);
            lua_concat(L, 3);
        } else {
            lua_pop(L, 1);
            lua_pushlstring(L, v, vl);
        }
        lua_setfield(L, -2, n);
        i += nl + 1 + vl + 1;
    }
    lua_setfield(L, -2, "headers");
    lua_pushlstring(L, r->body.p ? r->body.p : "", r->body.len);
    lua_setfield(L, -2, "body");
    lua_pushstring(L, r->eff_url ? r->eff_url : r->url);
    lua_setfield(L, -2, "url");
}

static const char *transport_code(const ucwa_req *r)
{
    if (r->cancelled) return "Cancelled";
    if (r->refused) return "BadRequest";
    if (r->head_too_large) return "BadResponse";
    if (r->too_large) return "TooLarge";
    switch (r->x.result) {
    case CURLE_OPERATION_TIMEDOUT: return "Timeout";
    case CURLE_FILESIZE_EXCEEDED: return "TooLarge";
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_SHUTDOWN_FAILED:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_CLIENTCERT:
    case CURLE_USE_SSL_FAILED: return "TlsError";
    default: return "NetworkError";
    }
}

void ucwa_push_transport_error(lua_State *L, const ucwa_req *r)
{
    const char *code = transport_code(r);
    if (r->cancelled)
        ucwa_error_push(L, 0, code, NULL, "request cancelled");
    else if (r->refused)
        ucwa_error_push(L, 0, code, "HeaderTooLarge", "%s", r->refused);
    else if (r->head_too_large == 1)
        ucwa_error_push(L, 0, code, "HeaderTooLarge", "the response headers from %s are over max_response_header (%zu bytes)",
                        r->url ? r->url : "?", r->max_head);
    else if (r->head_too_large)
        ucwa_error_push(L, 0, code, "HeaderTooLarge",
                        "a response header line from %s is over libcurl's limit (102400 bytes)", r->url ? r->url : "?");
    else if (r->too_large)
        ucwa_error_push(L, 0, code, NULL, "response body larger than max_body (%zu bytes)", r->max_body);
    else if (r->sock_errno)
        ucwa_error_push(L, 0, code, "TooManyOpenFiles",
                        "cannot open a socket: %s (the process's descriptor limit, RLIMIT_NOFILE, is reached: "
                        "raise it with ulimit -n or setrlimit, or run fewer transfers at once)",
                        strerror(r->sock_errno));
    else /* curl's messages name host and port, never headers */
        ucwa_error_push(L, 0, code, NULL, "%s", r->errbuf[0] ? r->errbuf : curl_easy_strerror(r->x.result));
    if (!r->cancelled && !r->refused) {
        lua_pushinteger(L, (lua_Integer)r->x.result);
        lua_setfield(L, -2, "curl_code");
    }
    if (r->url) {
        lua_pushstring(L, r->url);
        lua_setfield(L, -2, "url");
    }
}

/* ---------------------------------------------------------------- headers */

uint64_t ucwa_headers_lane(lua_State *L, int idx)
{
    static const char *const names[] = {"Authorization", "authorization"};
    uint64_t key = 0;
    size_t i, n;
    if (!lua_istable(L, idx)) return 0;
    for (i = 0; i < UCWA_NELEM(names) && !key; i++) {
        if (lua_getfield(L, idx, names[i]) == LUA_TSTRING) {
            const char *v = lua_tolstring(L, -1, &n);
            key = ucwa_lane_key(v, n);
        }
        lua_pop(L, 1);
    }
    return key;
}

int ucwa_header_check(const char *n, size_t nl, const char *v, size_t vl, size_t max)
{
    size_t i;
    if (nl == 0) return UCWA_BAD_NAME;
    for (i = 0; i < nl; i++) {
        unsigned char c = (unsigned char)n[i];
        if (c <= 32 || c >= 127 || c == ':') return UCWA_BAD_NAME;
    }
    for (i = 0; v && i < vl; i++)
        if (v[i] == '\r' || v[i] == '\n' || v[i] == '\0') return UCWA_BAD_VALUE;
    if (max && nl + 2 + vl > max) return UCWA_TOO_LARGE;
    return 0;
}

/* raises for argument arg (0: a plain error) after freeing sl */
static UCWA_NORETURN void bad_header(lua_State *L, int arg, struct curl_slist *sl, const char *msg)
{
    curl_slist_free_all(sl);
    if (arg > 0) luaL_argerror(L, arg, msg);
    ucwa_raise(L, "%s", msg);
}

/* Why a header line is too large: names the header (its first 100 bytes: a
 * valid name, printable) and sizes, never the value (it may be a token). */
static const char *push_too_large(lua_State *L, const char *name, size_t nl, size_t vl, size_t max)
{
    return ucwa_pushf(L, "header '%.100s%s' is %zu bytes, over max_header (%zu bytes)", name, nl > 100 ? "..." : "",
                      nl + 2 + vl, max);
}

void ucwa_header_error(lua_State *L, int arg, const char *name, size_t nl, size_t vl, size_t max, int why)
{
    /* the name of a bad name is not quoted (it may hold control characters),
     * nor is a value ever (it may be a token) */
    if (why == UCWA_BAD_NAME) bad_header(L, arg, NULL, "bad header name");
    if (why == UCWA_TOO_LARGE) bad_header(L, arg, NULL, push_too_large(L, name, nl, vl, max));
    bad_header(L, arg, NULL, ucwa_pushf(L, "header '%s': value contains CR, LF or NUL", name));
}

/* *too_large = a malloc'd copy of the message on top (popped) */
static void set_too_large(lua_State *L, char **too_large)
{
    const char *m = lua_tostring(L, -1);
    *too_large = strdup(m ? m : "header too large");
    lua_pop(L, 1);
    if (!*too_large) luaL_error(L, "out of memory");
}

void ucwa_headers(lua_State *L, int arg, int idx, struct curl_slist **out, int *has_ct, size_t max,
                  char **too_large)
{
    struct curl_slist *sl = NULL;
    size_t total = 0;
    if (has_ct) *has_ct = 0;
    if (out) *out = NULL;
    if (too_large) *too_large = NULL;
    if (lua_isnoneornil(L, idx)) return;
    idx = lua_absindex(L, idx);
    if (!lua_istable(L, idx)) bad_header(L, arg, NULL, "headers must be a table");
    luaL_Buffer b;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        if (lua_type(L, -2) != LUA_TSTRING) bad_header(L, arg, sl, "header names must be strings");
        size_t nl, vl;
        const char *n = lua_tolstring(L, -2, &nl);
        int vt = lua_type(L, -1);
        if (vt == LUA_TBOOLEAN && !lua_toboolean(L, -1)) {
            lua_pop(L, 1);
            continue;
        }
        if (vt != LUA_TSTRING && vt != LUA_TNUMBER)
            bad_header(L, arg, sl, ucwa_pushf(L, "header '%s': value must be a string", n));
        lua_pushvalue(L, -1); /* a number converted in place of the copy, not of the key's value */
        const char *v = lua_tolstring(L, -1, &vl);
        int why = ucwa_header_check(n, nl, v, vl, max);
        total += nl + 4 + vl;
        if (!why && total > UCWA_MAX_REQUEST_HEADERS) why = UCWA_TOO_LARGE + 1;
        if (why >= UCWA_TOO_LARGE && too_large) {
            curl_slist_free_all(sl);
            if (out) *out = NULL;
            if (why == UCWA_TOO_LARGE)
                push_too_large(L, n, nl, vl, max);
            else
                ucwa_pushf(L, "the request's headers are over %zu bytes in total (libcurl's limit)",
                           UCWA_MAX_REQUEST_HEADERS);
            set_too_large(L, too_large);
            lua_pop(L, 3);
            return;
        }
        if (why > UCWA_TOO_LARGE) {
            curl_slist_free_all(sl);
            bad_header(L, arg, NULL,
                       ucwa_pushf(L, "headers are over %zu bytes in total (libcurl's limit)", UCWA_MAX_REQUEST_HEADERS));
        }
        if (why) {
            curl_slist_free_all(sl);
            ucwa_header_error(L, arg, n, nl, vl, max, why);
        }
        if (has_ct && strcasecmp(n, "content-type") == 0) *has_ct = 1;
        if (out) {
            luaL_buffinit(L, &b);
            luaL_addlstring(&b, n, nl);
            if (vl) {
                luaL_addstring(&b, ": ");
                luaL_addlstring(&b, v, vl);
            } else {
                luaL_addstring(&b, ";"); /* curl's way to send an empty header */
            }
            luaL_pushresult(&b);
            struct curl_slist *nsl = curl_slist_append(sl, lua_tostring(L, -1));
            if (!nsl) bad_header(L, 0, sl, "out of memory");
            sl = nsl;
            lua_pop(L, 1);
        }
        lua_pop(L, 2);
    }
    if (out) *out = sl;
}

/* ---------------------------------------------------------------- Lua requests */

static int req_deliver(lua_State *L, int eidx, ucwa_work *w)
{
    ucwa_req *r = ucwa_container_of(w, ucwa_req, x.w);
    if (ucwa_anchored(L, eidx, r) != LUA_TUSERDATA) { /* cannot happen: anchored while pending */
        ucwa_req_free(r);
        return LUA_OK;
    }
    ucwa_unanchor(L, eidx, r);
    int obj = lua_gettop(L);
    lua_getiuservalue(L, obj, 1); /* callback */
    lua_pushnil(L);
    lua_setiuservalue(L, obj, 1);
    lua_pushnil(L);
    lua_setiuservalue(L, obj, 2); /* the body string may go now */
    if (ucwa_req_ok(r)) {
        ucwa_push_response(L, r);
        lua_pushnil(L);
    } else {
        lua_pushnil(L);
        ucwa_push_transport_error(L, r);
    }
    ucwa_req_free(r);
    return lua_pcall(L, 2, 0, 0);
}

static void req_abandon(ucwa_work *w)
{
    ucwa_req_free(ucwa_container_of(w, ucwa_req, x.w));
}

static const char *const request_options[] = {
    "method", "url", "headers", "body", "timeout", "callback", NULL,
};

/* eng:request{...} */
static int l_request(lua_State *L)
{
    ucwa_engine *e = ucwa_check_engine(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    ucwa_opt_check(L, 2, 2, "", request_options);
    const char *method = ucwa_opt_string(L, 2, 2, "method", "GET");
    size_t i, ml = strlen(method);
    for (i = 0; i < ml; i++)
        if (method[i] < 'A' || method[i] > 'Z') break;
    if (ml == 0 || i < ml) return ucwa_argerror(L, 2, "option 'method' must be an upper-case token");
    lua_getfield(L, 2, "url"); /* 3 */
    const char *url = ucwa_check_cstring(L, 3, 2, "option 'url'", NULL);
    ucwa_opt_value(L, 2, 2, "callback", LUA_TFUNCTION, 1);          /* 4 */
    int has_body = ucwa_opt_value(L, 2, 2, "body", LUA_TSTRING, 0); /* 5 */
    ucwa_opt_value(L, 2, 2, "headers", LUA_TTABLE, 0);              /* 6 */
    double timeout = ucwa_opt_number(L, 2, 2, "timeout", e->http.timeout_ms / 1000.0, 0, HUGE_VAL);

    /* userdata first, then the C resources (the header slist), which its
     * __gc frees however this ends */
    ucwa_req *r = lua_newuserdatauv(L, sizeof *r, 3); /* 7 */
    memset(r, 0, sizeof *r);
    r->x.w.deliver = req_deliver;
    r->x.w.abandon = req_abandon;
    luaL_setmetatable(L, UCWA_REQUEST_MT);
    lua_pushvalue(L, 4);
    lua_setiuservalue(L, 7, 1);
    lua_pushvalue(L, 5);
    lua_setiuservalue(L, 7, 2);
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, 7, 3);
    int has_ct = 0;
    char *refused = NULL;
    ucwa_headers(L, 2, 6, &r->hdrs, &has_ct, e->http.max_header, &refused);
    if (refused) {
        /* not sent: the callback gets BadRequest/HeaderTooLarge from the next
         * step (a 10 MB token was libcurl's misleading "Out of memory") */
        r->refused = refused;
        r->url = strdup(url);
        if (!r->url) return luaL_error(L, "out of memory");
        ucwa_work_ready(e, &r->x.w);
        ucwa_anchor(L, 1, r, 7);
        ucwa_engine_rearm(e, 0);
        lua_pushvalue(L, 7);
        return 1;
    }
    struct curl_slist *t = curl_slist_append(r->hdrs, "Expect:"); /* never 100-continue */
    if (t) r->hdrs = t;
    if (!has_ct) { /* no libcurl form default */
        t = curl_slist_append(r->hdrs, "Content-Type:");
        if (t) r->hdrs = t;
    }
    ucwa_req_spec s;
    memset(&s, 0, sizeof s);
    s.method = method;
    s.url = url;
    s.hdrs = r->hdrs; /* passed on to ucwa_req_start */
    r->hdrs = NULL;
    if (has_body) s.body = lua_tolstring(L, 5, &s.body_len);
    s.has_body = has_body;
    s.timeout_ms = ucwa_secs_to_ms(timeout);
    s.lane_key = ucwa_headers_lane(L, 6);
    const char *err = ucwa_req_start(e, r, &s);
    if (err) return luaL_error(L, "request: %s", err);
    ucwa_anchor(L, 1, r, 7);
    ucwa_engine_kick(e); /* start it now: connect, or send on a kept-alive connection */
    ucwa_engine_rearm(e, 0);
    lua_pushvalue(L, 7);
    return 1;
}

static int l_cancel(lua_State *L)
{
    ucwa_req *r = luaL_checkudata(L, 1, UCWA_REQUEST_MT);
    ucwa_engine *e = r->x.w.eng;
    if (!e || !e->multi || r->cancelled) {
        lua_pushboolean(L, 0);
        return 1;
    }
    if (r->x.w.state == UCWA_XFER) {
        ucwa_work_ready(e, &r->x.w); /* out of the multi handle, delivered next step */
        release_curl(r);
    }
    r->cancelled = 1;
    ucwa_buf_free(&r->body);
    ucwa_buf_free(&r->head);
    ucwa_engine_rearm(e, 0);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_gc(lua_State *L)
{
    ucwa_req_free(luaL_checkudata(L, 1, UCWA_REQUEST_MT));
    return 0;
}

static int l_tostring(lua_State *L)
{
    ucwa_req *r = luaL_checkudata(L, 1, UCWA_REQUEST_MT);
    int st = r->x.w.state;
    const char *state = st == UCWA_XFER ? "running" : st == UCWA_READY ? "done" : "idle";
    lua_pushfstring(L, "ucwa.request (%s): %p", state, (void *)r);
    return 1;
}

static const luaL_Reg request_methods[] = {
    {"cancel", l_cancel},
    {NULL, NULL},
};

void ucwa_open_request(lua_State *L)
{
    ucwa_class(L, UCWA_REQUEST_MT, request_methods, l_gc, l_tostring, 0);
    ucwa_class_method(L, UCWA_ENGINE_MT, "request", l_request, 0);
}

/* URL helpers on libcurl's CURLU API.
 *
 *   core.url_resolve(base, ref)        -> absolute URL | nil, err   (RFC 3986 reference resolution)
 *   core.url_with_query(url, params)   -> URL | nil, err
 *       params: name -> string|number|true (set/replace), false (remove).
 *       Other parameters (ack=...) are kept byte for byte; new ones are appended
 *       in name order with CURLU_APPENDQUERY|CURLU_URLENCODE.
 *   core.url_parts(url)   -> {scheme=, host=, port=, path=, query=} | nil, err
 *   core.url_origin(url)  -> "scheme://host:port" | nil, err
 *       http and https URLs only; scheme and host in ASCII lower case, the
 *       scheme's default port filled in: the origin a credential is bound
 *       to. No URL is parsed by hand. */
#include <stdlib.h>
#include <string.h>
#include <curl/curl.h>

#include "ucwa.h"
#include "url.h"

/* C strings end at a NUL, so a NUL inside a Lua string would cut the URL
 * short: "http://evil\0.good.com/x" would be "http://evil". Refused. */
static const char NUL_BYTE[] = "URL contains a NUL byte";

static char *dup_curl(char *s)
{
    char *r = s ? strdup(s) : NULL;
    curl_free(s);
    return r;
}

/* h's whole URL as a malloc'd copy; NULL with *err set on failure */
static char *get_url(CURLU *h, const char **err)
{
    char *s = NULL;
    CURLUcode rc = curl_url_get(h, CURLUPART_URL, &s, 0);
    if (rc != CURLUE_OK) {
        *err = curl_url_strerror(rc);
        return NULL;
    }
    char *out = dup_curl(s);
    if (!out) *err = "out of memory";
    return out;
}

char *ucwa_url_resolve(const char *base, const char *ref, const char **err)
{
    CURLU *h = curl_url();
    char *out = NULL;
    CURLUcode rc;
    if (!h) {
        *err = "out of memory";
        return NULL;
    }
    rc = curl_url_set(h, CURLUPART_URL, base, 0);
    if (rc != CURLUE_OK) {
        *err = curl_url_strerror(rc);
        goto done;
    }
    /* libcurl 7.88 mishandles "" and "#frag" (drops the last segment): do them here */
    if (ref[0] == '\0' || ref[0] == '#') {
        curl_url_set(h, CURLUPART_FRAGMENT, NULL, 0);
        if (ref[0] == '#' && ref[1]) {
            rc = curl_url_set(h, CURLUPART_FRAGMENT, ref + 1, 0);
            if (rc != CURLUE_OK) {
                *err = curl_url_strerror(rc);
                goto done;
            }
        }
    } else {
        rc = curl_url_set(h, CURLUPART_URL, ref, CURLU_URLENCODE);
        if (rc != CURLUE_OK) {
            *err = curl_url_strerror(rc);
            goto done;
        }
    }
    out = get_url(h, err);
done:
    curl_url_cleanup(h);
    return out;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* is the query segment [s, s+n) a parameter called name? */
static int seg_is(const char *s, size_t n, const char *name)
{
    size_t k = strlen(name);
    return n >= k && memcmp(s, name, k) == 0 && (n == k || s[k] == '=');
}

char *ucwa_url_with_query(lua_State *L, const char *url, int idx, const char **err)
{
    idx = lua_absindex(L, idx);
    CURLU *h = NULL;
    char *out = NULL, *q = NULL, *frag = NULL, *bare = NULL, *nq = NULL, *full = NULL;
    const char **names = NULL;
    size_t nn = 0, i;
    CURLUcode rc;

    /* names, sorted (the strings are anchored by the params table) */
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING || strlen(lua_tostring(L, -1)) != lua_rawlen(L, -1)) {
            lua_pop(L, 1);
            *err = "parameter names must be strings without NUL bytes";
            return NULL;
        }
        nn++;
    }
    names = calloc(nn ? nn : 1, sizeof *names);
    if (!names) {
        *err = "out of memory";
        return NULL;
    }
    nn = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        names[nn++] = lua_tostring(L, -1);
    }
    qsort(names, nn, sizeof *names, cmp_str);

    h = curl_url();
    if (!h) {
        *err = "out of memory";
        goto done;
    }
    rc = curl_url_set(h, CURLUPART_URL, url, 0);
    if (rc != CURLUE_OK) {
        *err = curl_url_strerror(rc);
        goto done;
    }
    if (curl_url_get(h, CURLUPART_QUERY, &q, 0) != CURLUE_OK) q = NULL;
    if (curl_url_get(h, CURLUPART_FRAGMENT, &frag, 0) != CURLUE_OK) frag = NULL;

    /* drop the segments the params replace; keep every other byte as it was */
    size_t ql = q ? strlen(q) : 0, nl = 0;
    nq = malloc(ql + 1);
    if (!nq) {
        *err = "out of memory";
        goto done;
    }
    const char *p = q ? q : "";
    while (*p) {
        const char *e = strchr(p, '&');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        int drop = 0;
        for (i = 0; i < nn && !drop; i++) drop = seg_is(p, n, names[i]);
        if (!drop && n) {
            if (nl) nq[nl++] = '&';
            memcpy(nq + nl, p, n);
            nl += n;
        }
        p += n;
        if (*p == '&') p++;
    }
    nq[nl] = '\0';
    if (q && strcmp(nq, q) != 0) {
        /* rebuild from the full string: setting CURLUPART_QUERY would re-case escapes */
        curl_url_set(h, CURLUPART_QUERY, NULL, 0);
        curl_url_set(h, CURLUPART_FRAGMENT, NULL, 0);
        rc = curl_url_get(h, CURLUPART_URL, &bare, 0);
        if (rc != CURLUE_OK) {
            *err = curl_url_strerror(rc);
            goto done;
        }
        size_t bl = strlen(bare), fl = frag ? strlen(frag) : 0;
        full = malloc(bl + nl + fl + 3);
        if (!full) {
            *err = "out of memory";
            goto done;
        }
        memcpy(full, bare, bl);
        size_t o = bl;
        if (nl) {
            full[o++] = '?';
            memcpy(full + o, nq, nl);
            o += nl;
        }
        if (frag) {
            full[o++] = '#';
            memcpy(full + o, frag, fl);
            o += fl;
        }
        full[o] = '\0';
        rc = curl_url_set(h, CURLUPART_URL, full, 0);
        if (rc != CURLUE_OK) {
            *err = curl_url_strerror(rc);
            goto done;
        }
    }

    for (i = 0; i < nn; i++) {
        lua_getfield(L, idx, names[i]);
        int t = lua_type(L, -1);
        if (t == LUA_TBOOLEAN && !lua_toboolean(L, -1)) {
            lua_pop(L, 1);
            continue;
        }
        if (t == LUA_TBOOLEAN)
            lua_pushfstring(L, "%s=true", names[i]);
        else if (lua_isinteger(L, -1))
            lua_pushfstring(L, "%s=%I", names[i], lua_tointeger(L, -1));
        else if (t == LUA_TNUMBER) {
            lua_Number d = lua_tonumber(L, -1);
            lua_Integer n;
            if (lua_numbertointeger(d, &n) && d == (lua_Number)n)
                lua_pushfstring(L, "%s=%I", names[i], n);
            else
                lua_pushfstring(L, "%s=%f", names[i], d);
        } else if (t == LUA_TSTRING) {
            size_t vl;
            const char *v = lua_tolstring(L, -1, &vl);
            if (strlen(v) != vl) {
                lua_pop(L, 1);
                *err = "parameter values must not contain NUL bytes";
                goto done;
            }
            lua_pushfstring(L, "%s=%s", names[i], v);
        } else {
            lua_pop(L, 1);
            *err = "parameter values must be strings, numbers or booleans";
            goto done;
        }
        rc = curl_url_set(h, CURLUPART_QUERY, lua_tostring(L, -1), CURLU_APPENDQUERY | CURLU_URLENCODE);
        lua_pop(L, 2);
        if (rc != CURLUE_OK) {
            *err = curl_url_strerror(rc);
            goto done;
        }
    }
    out = get_url(h, err);
done:
    free(names);
    free(nq);
    free(full);
    curl_free(q);
    curl_free(frag);
    curl_free(bare);
    if (h) curl_url_cleanup(h);
    return out;
}

/* pushes s (and frees it), or nil and "cannot <what> URL: <err>" */
static int push_url(lua_State *L, char *s, const char *what, const char *err)
{
    if (!s) {
        lua_pushnil(L);
        lua_pushfstring(L, "cannot %s URL: %s", what, err ? err : "error");
        return 2;
    }
    lua_pushstring(L, s);
    free(s);
    return 1;
}

/* a URL argument: its text, or NULL when it holds a NUL byte */
static const char *url_arg(lua_State *L, int idx)
{
    size_t n;
    const char *s = luaL_checklstring(L, idx, &n);
    return strlen(s) == n ? s : NULL;
}

static int l_url_resolve(lua_State *L)
{
    const char *base = url_arg(L, 1), *ref = url_arg(L, 2), *err = NUL_BYTE;
    char *s = base && ref ? ucwa_url_resolve(base, ref, &err) : NULL;
    return push_url(L, s, "resolve", err);
}

static int l_url_with_query(lua_State *L)
{
    const char *url = url_arg(L, 1), *err = NUL_BYTE;
    luaL_checktype(L, 2, LUA_TTABLE);
    char *s = url ? ucwa_url_with_query(L, url, 2, &err) : NULL;
    return push_url(L, s, "build", err);
}

/* ASCII lower case, in place */
static void lower(char *s)
{
    for (; *s; s++)
        if (*s >= 'A' && *s <= 'Z') *s = (char)(*s + 32);
}

/* The parts of an absolute http(s) URL, each a malloc'd string (query NULL
 * when there is none); NULL, or what is wrong with it. */
typedef struct url_parts {
    char *scheme, *host, *path, *query;
    long port;
} url_parts;

static void parts_free(url_parts *p)
{
    curl_free(p->scheme);
    curl_free(p->host);
    curl_free(p->path);
    curl_free(p->query);
    memset(p, 0, sizeof *p);
}

static const char *split_url(const char *url, url_parts *p)
{
    const char *err = NULL;
    char *port = NULL;
    CURLUcode rc;
    memset(p, 0, sizeof *p);
    CURLU *h = curl_url();
    if (!h) return "out of memory";
    rc = curl_url_set(h, CURLUPART_URL, url, 0); /* absolute, a scheme libcurl knows */
    if (rc == CURLUE_OK) rc = curl_url_get(h, CURLUPART_SCHEME, &p->scheme, 0);
    if (rc == CURLUE_OK) {
        lower(p->scheme);
        if (strcmp(p->scheme, "http") != 0 && strcmp(p->scheme, "https") != 0) err = "not an http or https URL";
    }
    if (rc == CURLUE_OK && !err) {
        /* as libcurl has it: percent escapes decoded; a non-ASCII (IDN)
         * name as given, not in punycode (7.88's CURLU_PUNYCODE fails) */
        rc = curl_url_get(h, CURLUPART_HOST, &p->host, 0);
    }
    if (rc == CURLUE_OK && !err) {
        lower(p->host);
        rc = curl_url_get(h, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT);
    }
    if (rc == CURLUE_OK && !err) {
        p->port = strtol(port, NULL, 10);
        rc = curl_url_get(h, CURLUPART_PATH, &p->path, 0);
    }
    if (rc == CURLUE_OK && !err) {
        rc = curl_url_get(h, CURLUPART_QUERY, &p->query, 0);
        if (rc == CURLUE_NO_QUERY) rc = CURLUE_OK;
    }
    if (rc != CURLUE_OK && !err) err = curl_url_strerror(rc);
    curl_free(port);
    curl_url_cleanup(h);
    if (err) parts_free(p);
    return err;
}

int ucwa_url_same_origin(const char *a, const char *b)
{
    url_parts pa, pb;
    if (split_url(a, &pa)) return 0;
    if (split_url(b, &pb)) {
        parts_free(&pa);
        return 0;
    }
    int same = strcmp(pa.scheme, pb.scheme) == 0 && strcmp(pa.host, pb.host) == 0 && pa.port == pb.port;
    parts_free(&pa);
    parts_free(&pb);
    return same;
}

/* The parts of the URL argument, or pushes nil, err and returns 0. */
static int parts_arg(lua_State *L, url_parts *p)
{
    const char *url = url_arg(L, 1), *err = NUL_BYTE;
    if (url) err = split_url(url, p);
    if (!err) return 1;
    lua_pushnil(L);
    lua_pushfstring(L, "cannot read URL: %s", err);
    return 0;
}

/* core.url_parts(url) -> {scheme=, host=, port=, path=, query=} | nil, err */
static int l_url_parts(lua_State *L)
{
    url_parts p;
    if (!parts_arg(L, &p)) return 2;
    lua_createtable(L, 0, 5);
    ucwa_set_str(L, -1, "scheme", p.scheme);
    ucwa_set_str(L, -1, "host", p.host);
    lua_pushinteger(L, p.port);
    lua_setfield(L, -2, "port");
    ucwa_set_str(L, -1, "path", p.path);
    ucwa_set_str(L, -1, "query", p.query);
    parts_free(&p);
    return 1;
}

/* core.url_origin(url) -> "scheme://host:port" | nil, err */
static int l_url_origin(lua_State *L)
{
    url_parts p;
    if (!parts_arg(L, &p)) return 2;
    ucwa_pushf(L, "%s://%s:%ld", p.scheme, p.host, p.port);
    parts_free(&p);
    return 1;
}

void ucwa_open_url(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        {"url_resolve", l_url_resolve}, {"url_with_query", l_url_with_query},
        {"url_parts", l_url_parts},     {"url_origin", l_url_origin},
        {NULL, NULL},
    };
    luaL_setfuncs(L, funcs, 0);
}

/* The event channel's batch bookkeeping (channel.c's P-GET loop uses it):
 * the links of a batch (next, resync, resume, self), whether it has events,
 * the remembered ids of the batches delivered (repeat detection), and the
 * next link's fast path (next_fast, with the origin and query libcurl
 * wrote); the full path and its same-origin check stay in on_batch. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ucwa.h"
#include "error.h"
#include "request.h"
#include "url.h"
#include "channel.h"

/* href of links[rel] (a table with href, or a string); NULL if absent */
const char *ucwa_ch_link_href(lua_State *L, int links, const char *rel)
{
    int t = lua_getfield(L, links, rel);
    const char *h = NULL;
    if (t == LUA_TTABLE) {
        if (lua_getfield(L, -1, "href") == LUA_TSTRING) h = lua_tostring(L, -1);
        lua_remove(L, -2);
    } else if (t == LUA_TSTRING) {
        h = lua_tostring(L, -1);
    }
    if (h && !*h) h = NULL; /* "" would be this very URL again: a repeat, not a next */
    if (!h) lua_pop(L, 1);
    return h; /* the string stays on the stack */
}

/* whether any sender of the batch at idx has an event */
int ucwa_ch_has_events(lua_State *L, int batch)
{
    int found = 0;
    if (lua_getfield(L, batch, "senders") == LUA_TTABLE) {
        lua_Integer n = (lua_Integer)lua_rawlen(L, -1), i;
        for (i = 1; i <= n && !found; i++) {
            if (lua_rawgeti(L, -1, i) == LUA_TTABLE) {
                if (lua_getfield(L, -1, "events") == LUA_TTABLE) found = lua_rawlen(L, -1) > 0;
                lua_pop(L, 1);
            }
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
    return found;
}

/* FNV-1a: the identity of a batch among the last SEEN_N delivered (a
 * collision can only make the channel skip a batch the server repeats) */
static uint64_t hash_id(const char *s, size_t n)
{
    uint64_t h = 14695981039346656037ULL;
    size_t i;
    for (i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return h;
}

int ucwa_ch_seen_before(const ucwa_channel *ch, uint64_t id)
{
    unsigned i;
    for (i = 0; i < ch->n_seen; i++)
        if (ch->seen[i] == id) return 1;
    return 0;
}

void ucwa_ch_remember(ucwa_channel *ch, uint64_t id)
{
    ch->seen[ch->i_seen] = id;
    ch->i_seen = (ch->i_seen + 1) % SEEN_N;
    if (ch->n_seen < SEEN_N) ch->n_seen++;
}

/* The batch's identity: its self link as the server gives it (a server
 * writes its links one way; resolving them would cost two URL parses a
 * batch), else the URL it answered. */
uint64_t ucwa_ch_batch_id(lua_State *L, int links, const ucwa_req *r)
{
    uint64_t id;
    const char *self = links ? ucwa_ch_link_href(L, links, "self") : NULL;
    if (self) {
        id = hash_id(self, lua_rawlen(L, -1));
        lua_pop(L, 1);
    } else {
        id = hash_id(r->url, strlen(r->url));
    }
    return id;
}

/* pushes the error object about a repeated batch */
void ucwa_ch_push_repeat(lua_State *L, ucwa_channel *ch, const char *url, int delivered_before)
{
    if (delivered_before)
        ucwa_error_push(L, 200, "BadResponse", "RepeatedBatch",
                        "the server sent an event batch it had sent before (not delivered again; %d in a row)",
                        ch->repeats);
    else
        ucwa_error_push(L, 200, "BadResponse", "RepeatedBatch",
                        "the server's next link does not advance (the URL just requested; %d in a row)", ch->repeats);
    ucwa_set_str(L, -1, "url", url);
}

/* frees the cached header list: the P-GET must be freed already */
void ucwa_ch_headers_clear(ucwa_channel *ch)
{
    curl_slist_free_all(ch->hdrs);
    ch->hdrs = NULL;
}

void ucwa_ch_fast_clear(ucwa_channel *ch)
{
    free(ch->fast_origin);
    free(ch->fast_query);
    ch->fast_origin = ch->fast_query = NULL;
}

/* Learns the fast path's two strings from libcurl, for ch->url and the
 * params table at idx: the URL of "/" (its origin, as libcurl writes it) and
 * that URL with the params. */
void ucwa_ch_fast_prepare(lua_State *L, ucwa_channel *ch, int idx)
{
    const char *err = NULL;
    ucwa_ch_fast_clear(ch);
    char *root = ucwa_url_resolve(ch->url, "/", &err), *withq = NULL;
    if (root) withq = ucwa_url_with_query(L, root, idx, &err);
    size_t rl = root ? strlen(root) : 0;
    if (withq && rl > 1 && root[rl - 1] == '/' && strncmp(withq, root, rl) == 0 &&
        (withq[rl] == '\0' || withq[rl] == '?')) {
        ch->fast_origin = root;
        ch->fast_origin_len = rl - 1;
        ch->fast_query = strdup(withq[rl] ? withq + rl + 1 : "");
        ch->fast_query_len = ch->fast_query ? strlen(ch->fast_query) : 0;
        if (!ch->fast_query) ucwa_ch_fast_clear(ch);
        root = NULL;
    }
    free(root);
    free(withq);
}

/* whether the query q[0..n) has a parameter of one of the params' names,
 * or an empty segment (ucwa_url_with_query drops those) */
static int query_has_param(lua_State *L, int params, const char *q, size_t n)
{
    size_t i = 0;
    if (n == 0 || q[n - 1] == '&') return 1;
    while (i < n) {
        size_t e = i, k;
        while (e < n && q[e] != '&') e++;
        if (e == i) return 1;
        for (k = i; k < e && q[k] != '='; k++) {}
        if (k > i) {
            lua_pushlstring(L, q + i, k - i);
            int t = lua_rawget(L, params);
            lua_pop(L, 1);
            if (t != LUA_TNIL) return 1;
        }
        i = e + 1;
    }
    return 0;
}

/* The ack of a query q[0..n) as Lua's ("&" .. q .. "&"):match("&ack=(%d+)&")
 * reads it (lua/ucwa/durable.lua): the first parameter "ack=<digits>".
 * Over 18 digits, ACK_UNKNOWN: Lua's tonumber would make a float of it. */
static int64_t query_ack(const char *q, size_t n)
{
    size_t i = 0;
    while (i < n) {
        size_t e = i;
        while (e < n && q[e] != '&') e++;
        if (e - i > 4 && memcmp(q + i, "ack=", 4) == 0) {
            size_t k;
            int64_t v = 0;
            for (k = i + 4; k < e && q[k] >= '0' && q[k] <= '9'; k++)
                if (k < i + 4 + 18) v = v * 10 + (q[k] - '0'); /* past 18 digits: not read */
            if (k == e) return e - i - 4 > 18 ? ACK_UNKNOWN : v;
        }
        i = e + 1;
    }
    return ACK_NONE;
}

/* The next P-GET's URL without libcurl's URL parser, for the link every
 * server sends: an absolute path ("/ucwa/.../events?ack=7") of plain URL
 * characters (unreserved, sub-delims, ':', '@', '/', '?', a '%' with two hex
 * digits), no dot segment, no fragment, no parameter the channel sets.
 * libcurl would resolve it to the origin plus the path as given, and the
 * params would append their query: that string is made here, from the
 * origin and query libcurl wrote (ucwa_ch_fast_prepare). Anything else, NULL: the
 * full path (ucwa_url_resolve, ucwa_url_with_query, the origin check).
 * *ack: the ack of the URL made (the params have none), else ACK_UNKNOWN. */
char *ucwa_ch_next_fast(lua_State *L, ucwa_channel *ch, int params, const char *href, size_t n, int64_t *ack)
{
    size_t i, qs = 0;
    *ack = ACK_UNKNOWN;
    if (!ch->fast_origin || n < 1 || href[0] != '/' || (n > 1 && href[1] == '/')) return NULL;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)href[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) continue;
        if (c == '%') {
            if (i + 2 >= n || !isxdigit((unsigned char)href[i + 1]) || !isxdigit((unsigned char)href[i + 2]))
                return NULL;
            continue;
        }
        if (c == '?' && !qs) qs = i + 1;
        if (c == '.' && !qs && href[i - 1] == '/' &&
            (i + 1 == n || href[i + 1] == '/' || href[i + 1] == '?' ||
             (href[i + 1] == '.' && (i + 2 == n || href[i + 2] == '/' || href[i + 2] == '?'))))
            return NULL; /* a dot segment: libcurl removes it */
        if (!strchr("-._~!$&'()*+,;=:@/?", c)) return NULL;
    }
    if (qs && query_has_param(L, params, href + qs, n - qs)) return NULL;
    size_t ol = ch->fast_origin_len, ql = ch->fast_query_len;
    char *out = malloc(ol + n + 1 + ql + 1), *o = out;
    if (!out) return NULL;
    memcpy(o, ch->fast_origin, ol);
    o += ol;
    memcpy(o, href, n);
    o += n;
    if (ql) {
        *o++ = qs ? '&' : '?';
        memcpy(o, ch->fast_query, ql);
        o += ql;
    }
    *o = '\0';
    *ack = qs ? query_ack(href + qs, n - qs) : ACK_NONE;
    return out;
}

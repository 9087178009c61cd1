/* The event channel: the pending-GET (P-GET) loop of UCWA, in C.
 *
 *   local ch = eng:channel{ url=, headers=, timeout=180, low=, medium=, priority=,
 *                           on_batch=, on_error=, backoff={initial=0.5, max=30},
 *                           grace=20, client_timeout=, min_interval=1,
 *                           max_bad_batches=5, max_repeats=10, hold=false }
 *   ch:start() ch:stop() ch:close() ch:url() ch:running() ch:pending()
 *   ch:set_header(name, value) ch:release()
 *
 * One P-GET at a time (the request is embedded in the channel). Responses are
 * handled from step()'s delivery phase: the next P-GET is added and sent before
 * on_batch runs; faults retry the same URL after a jittered exponential backoff
 * (the server keeps a batch until it is acked), so no batch is lost or repeated.
 *
 * Against servers that misbehave: an empty batch answered within min_interval
 * of its P-GET makes the next one wait for the rest of it (a server holds a
 * P-GET until it has events or its timeout); a batch with events whose self
 * link was delivered before is not delivered again, and a next link that does
 * not advance is not followed at once: both are RepeatedBatch faults, fatal
 * after max_repeats in a row; a response that cannot be read (ParseError,
 * NoNextLink, BadLink, TooLarge, BadResponse) is fatal after max_bad_batches
 * in a row. Every fault reaches on_error, with err.failures, the number of
 * P-GETs in a row that failed.
 * With hold = true (a session store, docs/store.md), a batch with events is
 * handed to on_batch before the next P-GET is added, and the channel holds
 * (pending() is "held") until ch:release(): the caller writes the batch
 * somewhere durable first, since the next P-GET acknowledges it. release()
 * may come from on_batch itself (a synchronous store) or later (one that
 * answers on the loop).
 * Batches are read by core.parse_events and error bodies by core.parse_error,
 * fixed when the module is opened (the upvalues of eng:channel), not options.
 *
 * Userdata = ucwa_channel; uservalues: 1 engine, 2 state table (on_batch,
 * on_error, params, and the two parse functions), 3 headers table. A running
 * channel is anchored in the engine's anchors table. */
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

#define UCWA_CHANNEL_MT "ucwa.channel"

#define CUV_ENGINE  1
#define CUV_STATE   2
#define CUV_HEADERS 3

/* The P-GET's receive buffer, bytes. libcurl's default, 16 KiB, is held by
 * every pending P-GET; most batches are a few hundred bytes, and a large one
 * costs a read() per 2 KiB instead of per 16 KiB (docs/transport.md: +4%
 * on a 64 KiB batch, +160 us on a 1 MiB one, against milliseconds to parse
 * it). */
#define UCWA_CHANNEL_BUFFER 2048

/* how many delivered batches are remembered (hashes of their self links) */
#define SEEN_N 32

typedef struct ucwa_channel {
    ucwa_req req;     /* the P-GET */
    ucwa_timer retry; /* the backoff timer, or the min_interval pause */
    ucwa_engine *eng;
    int running, closed;
    int pausing; /* retry is the min_interval pause, not a backoff */
    int hold, held; /* hold option; held: a batch was delivered, the next P-GET waits for release() */
    char *url;   /* current P-GET URL, with the params */
    double timeout, grace, client_timeout;
    double b_initial, b_max, b_cur;
    double min_interval; /* seconds */
    int64_t sent_at;     /* when the P-GET in flight was sent (ucwa_now) */
    int failures;        /* P-GETs in a row that failed, whatever the fault */
    int bad, max_bad;    /* responses in a row that could not be read */
    int repeats, max_repeats;
    int fast_empty;         /* empty batches in a row answered within min_interval */
    uint64_t seen[SEEN_N];  /* the self links of the last batches delivered with events */
    unsigned n_seen, i_seen;
    long buffer_size; /* the P-GET's receive buffer (libcurl's CURLOPT_BUFFERSIZE) */
    /* the next link's fast path (next_fast): libcurl's spelling of the
     * channel URL's origin ("http://host:port") and of the query the params
     * append to a URL without one; NULL: not known, the full path only */
    char *fast_origin, *fast_query;
    size_t fast_origin_len, fast_query_len;
} ucwa_channel;

static ucwa_channel *check_channel(lua_State *L, int idx)
{
    return luaL_checkudata(L, idx, UCWA_CHANNEL_MT);
}

static ucwa_channel *check_open_channel(lua_State *L, int idx)
{
    ucwa_channel *ch = check_channel(L, idx);
    if (ch->closed) luaL_error(L, "channel is closed");
    if (!ch->eng || !ch->eng->multi) luaL_error(L, "engine is closed");
    return ch;
}

/* ---------------------------------------------------------------- running state */

/* stop without callbacks; chidx = channel userdata */
static void channel_halt(lua_State *L, ucwa_channel *ch, int chidx)
{
    chidx = lua_absindex(L, chidx);
    ucwa_req_free(&ch->req);
    ucwa_work_cancel(&ch->retry.w);
    ch->held = 0;
    if (ch->running) {
        ch->running = 0;
        if (ch->eng && ch->eng->multi) {
            ch->eng->n_channels--;
            lua_getiuservalue(L, chidx, CUV_ENGINE);
            ucwa_unanchor(L, -1, ch);
            lua_pop(L, 1);
            ucwa_engine_rearm(ch->eng, 0);
        }
    }
}

/* the engine closes with our P-GET or retry pending: it drops the anchors */
static void engine_gone(ucwa_channel *ch)
{
    if (ch->running && ch->eng) ch->eng->n_channels--;
    ch->running = 0;
    ucwa_req_free(&ch->req);
}

static void abandon_request(ucwa_work *w)
{
    engine_gone(ucwa_container_of(w, ucwa_channel, req.x.w));
}

static void abandon_retry(ucwa_work *w)
{
    engine_gone(ucwa_container_of(w, ucwa_channel, retry.w));
}

/* ---------------------------------------------------------------- requests and retries */

static double backoff_next(ucwa_channel *ch)
{
    double d = ch->b_cur * (0.5 + 0.5 * ucwa_engine_random(ch->eng));
    ch->b_cur *= 2;
    if (ch->b_cur > ch->b_max) ch->b_cur = ch->b_max;
    return d;
}

/* adds the P-GET for ch->url; returns NULL or an error message (a static
 * string, or *too_large: a malloc'd one, when the headers are over the caps) */
static const char *issue_pget(lua_State *L, ucwa_channel *ch, int chidx, char **too_large)
{
    chidx = lua_absindex(L, chidx);
    ucwa_req_spec s;
    memset(&s, 0, sizeof s);
    lua_getiuservalue(L, chidx, CUV_HEADERS);
    /* validated when they were set; only their total can be over a cap */
    ucwa_headers(L, 0, -1, &s.hdrs, NULL, ch->eng->http.max_header, too_large);
    s.lane_key = ucwa_headers_lane(L, -1);
    lua_pop(L, 1);
    if (*too_large) return *too_large;
    s.method = "GET";
    s.url = ch->url;
    s.buffer_size = ch->buffer_size;
    double t = ch->client_timeout > 0 ? ch->client_timeout : ch->timeout > 0 ? ch->timeout + ch->grace : 0;
    s.timeout_ms = t > 0 ? ucwa_secs_to_ms(t) : ch->eng->http.timeout_ms;
    ucwa_work_cancel(&ch->retry.w);
    ch->pausing = 0;
    ch->sent_at = ucwa_now();
    const char *err = ucwa_req_start(ch->eng, &ch->req, &s);
    /* on a kept-alive connection: sent now; from step()'s delivery, once the
     * callbacks of this step have run (step kicks), so that on_batch is not
     * kept waiting for the next P-GET's send */
    if (!err && !ch->eng->in_step) ucwa_engine_kick(ch->eng);
    ucwa_engine_rearm(ch->eng, 0);
    return err;
}

/* pushes the error of an issue_pget that failed (and frees *too_large) */
static void push_issue_error(lua_State *L, ucwa_channel *ch, const char *err, char **too_large)
{
    if (*too_large)
        ucwa_error_push(L, 0, "BadRequest", "HeaderTooLarge", "P-GET not sent: %s", err);
    else
        ucwa_error_push(L, 0, "NetworkError", NULL, "P-GET not sent: %s", err);
    ucwa_set_str(L, -1, "url", ch->url);
    free(*too_large);
    *too_large = NULL;
}

/* calls state[name](args...) with nargs values on top; returns the status
 * (an error on top) */
static int call_cb(lua_State *L, int chidx, const char *name, int nargs)
{
    lua_getiuservalue(L, chidx, CUV_STATE);
    lua_getfield(L, -1, name);
    lua_remove(L, -2);
    if (!lua_isfunction(L, -1)) {
        lua_pop(L, 1 + nargs);
        return LUA_OK;
    }
    lua_insert(L, -1 - nargs);
    return lua_pcall(L, nargs, 0, 0);
}

/* The error object on top is a fault to retry: the same URL again after the
 * backoff (at least `at_least` seconds, a Retry-After), then on_error(err) with
 * err.retrying = true. If the retry cannot even be armed (out of memory), the
 * channel stops and err.fatal = true instead. */
static int retry_later(lua_State *L, ucwa_channel *ch, int chidx, double at_least)
{
    double d = backoff_next(ch);
    if (at_least > d) d = at_least > ch->b_max ? ch->b_max : at_least;
    ucwa_req_free(&ch->req);
    int fatal = ucwa_timer_arm(ch->eng, &ch->retry, d) != 0;
    ch->pausing = 0;
    if (fatal) channel_halt(L, ch, chidx);
    ucwa_engine_rearm(ch->eng, 0);
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, fatal ? "fatal" : "retrying");
    return call_cb(L, chidx, "on_error", 1);
}

/* the error on top ends the channel: on_error(err) with err.fatal = true */
static int stop_with(lua_State *L, ucwa_channel *ch, int chidx)
{
    channel_halt(L, ch, chidx);
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "fatal");
    return call_cb(L, chidx, "on_error", 1);
}

/* err.failures = the P-GETs in a row that failed, this one included */
static void count_failure(lua_State *L, ucwa_channel *ch)
{
    ch->failures++;
    lua_pushinteger(L, ch->failures);
    lua_setfield(L, -2, "failures");
}

/* The error on top is a fault that may pass (network, 5xx, 429, ...): retried
 * after the backoff, however long it lasts; each one is reported. */
static int transient(lua_State *L, ucwa_channel *ch, int chidx, double at_least)
{
    count_failure(L, ch);
    return retry_later(L, ch, chidx, at_least);
}

/* appends " (<n> in a row: the channel stopped)" to err.message (err on top) */
static void note_given_up(lua_State *L, int n)
{
    lua_getfield(L, -1, "message");
    const char *m = lua_tostring(L, -1);
    ucwa_pushf(L, "%s (%d in a row: the channel stopped)", m ? m : "fault", n);
    lua_setfield(L, -3, "message");
    lua_pop(L, 1);
}

/* The error on top is a response the channel cannot read (a batch parse_events
 * refuses, no next link, a bad link, a body or header section over the caps):
 * the same URL will most likely give the same again. Retried, reported each
 * time; after max_bad_batches in a row the channel stops (fatal). */
static int unreadable(lua_State *L, ucwa_channel *ch, int chidx)
{
    count_failure(L, ch);
    if (++ch->bad >= ch->max_bad) {
        note_given_up(L, ch->bad);
        return stop_with(L, ch, chidx);
    }
    return retry_later(L, ch, chidx, 0);
}

/* ---------------------------------------------------------------- responses */

/* pushes the error object of an HTTP error response: core.parse_error of the
 * body, with the body, its content type and the URL added */
static void push_http_error(lua_State *L, int chidx, const ucwa_req *r)
{
    const char *ctype = ucwa_req_header(r, "content-type");
    int top = lua_gettop(L);
    lua_getiuservalue(L, chidx, CUV_STATE);
    lua_getfield(L, -1, "parse_error");
    lua_pushlstring(L, r->body.p ? r->body.p : "", r->body.len);
    if (ctype)
        lua_pushstring(L, ctype);
    else
        lua_pushnil(L);
    lua_pushinteger(L, r->status);
    if (lua_pcall(L, 3, 1, 0) == LUA_OK && lua_istable(L, -1)) { /* it never fails but out of memory */
        lua_replace(L, top + 1);
        lua_settop(L, top + 1);
    } else {
        lua_settop(L, top);
        ucwa_error_push(L, (int)r->status, ucwa_status_code((int)r->status), NULL, "HTTP %ld", r->status);
    }
    lua_pushlstring(L, r->body.p ? r->body.p : "", r->body.len);
    lua_setfield(L, -2, "body");
    ucwa_set_str(L, -1, "content_type", ctype);
    ucwa_set_str(L, -1, "url", r->url);
}

/* pushes an error object about the 200 response from url */
static void push_batch_error(lua_State *L, const char *code, const char *msg, const char *url)
{
    ucwa_error_push(L, 200, code, NULL, "%s", msg);
    ucwa_set_str(L, -1, "url", url);
}

/* href of links[rel] (a table with href, or a string); NULL if absent */
static const char *link_href(lua_State *L, int links, const char *rel)
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
static int has_events(lua_State *L, int batch)
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

static int seen_before(const ucwa_channel *ch, uint64_t id)
{
    unsigned i;
    for (i = 0; i < ch->n_seen; i++)
        if (ch->seen[i] == id) return 1;
    return 0;
}

static void remember(ucwa_channel *ch, uint64_t id)
{
    ch->seen[ch->i_seen] = id;
    ch->i_seen = (ch->i_seen + 1) % SEEN_N;
    if (ch->n_seen < SEEN_N) ch->n_seen++;
}

/* The batch's identity: its self link as the server gives it (a server
 * writes its links one way; resolving them would cost two URL parses a
 * batch), else the URL it answered. */
static uint64_t batch_id(lua_State *L, int links, const ucwa_req *r)
{
    uint64_t id;
    const char *self = links ? link_href(L, links, "self") : NULL;
    if (self) {
        id = hash_id(self, lua_rawlen(L, -1));
        lua_pop(L, 1);
    } else {
        id = hash_id(r->url, strlen(r->url));
    }
    return id;
}

/* pushes the error object about a repeated batch */
static void push_repeat(lua_State *L, ucwa_channel *ch, const char *url, int delivered_before)
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

enum { REL_NEXT, REL_RESYNC, REL_RESUME };

static void fast_clear(ucwa_channel *ch)
{
    free(ch->fast_origin);
    free(ch->fast_query);
    ch->fast_origin = ch->fast_query = NULL;
}

/* Learns the fast path's two strings from libcurl, for ch->url and the
 * params table at idx: the URL of "/" (its origin, as libcurl writes it) and
 * that URL with the params. */
static void fast_prepare(lua_State *L, ucwa_channel *ch, int idx)
{
    const char *err = NULL;
    fast_clear(ch);
    char *root = ucwa_url_resolve(ch->url, "/", &err), *withq = NULL;
    if (root) withq = ucwa_url_with_query(L, root, idx, &err);
    size_t rl = root ? strlen(root) : 0;
    if (withq && rl > 1 && root[rl - 1] == '/' && strncmp(withq, root, rl) == 0 &&
        (withq[rl] == '\0' || withq[rl] == '?')) {
        ch->fast_origin = root;
        ch->fast_origin_len = rl - 1;
        ch->fast_query = strdup(withq[rl] ? withq + rl + 1 : "");
        ch->fast_query_len = ch->fast_query ? strlen(ch->fast_query) : 0;
        if (!ch->fast_query) fast_clear(ch);
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

/* The next P-GET's URL without libcurl's URL parser, for the link every
 * server sends: an absolute path ("/ucwa/.../events?ack=7") of plain URL
 * characters (unreserved, sub-delims, ':', '@', '/', '?', a '%' with two hex
 * digits), no dot segment, no fragment, no parameter the channel sets.
 * libcurl would resolve it to the origin plus the path as given, and the
 * params would append their query: that string is made here, from the
 * origin and query libcurl wrote (fast_prepare). Anything else, NULL: the
 * full path (ucwa_url_resolve, ucwa_url_with_query, the origin check). */
static char *next_fast(lua_State *L, ucwa_channel *ch, int params, const char *href, size_t n)
{
    size_t i, qs = 0;
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
    return out;
}

/* A 200: the batch parsed and checked, the next P-GET sent (or its wait
 * armed), then on_batch(batch, url); a fault found on the way is reported to
 * on_error after on_batch, so the batch is delivered whatever on_error does. */
static int on_batch(lua_State *L, ucwa_channel *ch, int chidx)
{
    ucwa_req *r = &ch->req;
    int top = lua_gettop(L);
    const char *ctype = ucwa_req_header(r, "content-type");
    lua_pushstring(L, r->url); /* top+1: this URL */
    lua_getiuservalue(L, chidx, CUV_STATE);
    lua_getfield(L, -1, "parse");
    lua_remove(L, -2);
    lua_pushlstring(L, r->body.p ? r->body.p : "", r->body.len);
    if (ctype)
        lua_pushstring(L, ctype);
    else
        lua_pushnil(L);
    int st = lua_pcall(L, 2, 2, 0);                 /* top+2: batch | nil, top+3: err */
    if (st == LUA_OK && !lua_istable(L, top + 2)) { /* parse_events' ParseError, code and subcode, with the URL */
        lua_pushvalue(L, top + 3);
        lua_pushinteger(L, 200);
        lua_setfield(L, -2, "status");
        ucwa_set_str(L, -1, "url", r->url);
        return unreadable(L, ch, chidx);
    }
    if (st != LUA_OK) { /* out of memory */
        const char *m = lua_type(L, top + 2) == LUA_TSTRING ? lua_tostring(L, top + 2) : "cannot parse";
        push_batch_error(L, "ParseError", m, r->url);
        return unreadable(L, ch, chidx);
    }
    lua_settop(L, top + 2);
    const char *href = NULL;
    int rel = REL_NEXT, links = 0;
    if (lua_getfield(L, top + 2, "links") == LUA_TTABLE) { /* top+3 */
        static const char *const rels[] = {"next", "resync", "resume"};
        links = top + 3;
        for (rel = 0; rel < (int)UCWA_NELEM(rels) && !href; rel++) href = link_href(L, links, rels[rel]);
        rel--;
    }
    if (!href) {
        push_batch_error(L, "NoNextLink", "event batch has no next, resync or resume link", r->url);
        return unreadable(L, ch, chidx);
    }
    if (strlen(href) != lua_rawlen(L, -1)) { /* C would cut it at the NUL */
        push_batch_error(L, "BadLink", "bad event link: URL contains a NUL byte", r->url);
        return unreadable(L, ch, chidx);
    }
    const char *err = NULL;
    size_t hlen = lua_rawlen(L, -1);
    lua_getiuservalue(L, chidx, CUV_STATE);
    lua_getfield(L, -1, "params");
    int params = lua_gettop(L);
    /* the origin of the response's URL is the channel's: an effective URL
     * elsewhere (a redirect) takes the full path */
    char *next = r->eff_url && strcmp(r->eff_url, r->url) != 0 ? NULL : next_fast(L, ch, params, href, hlen);
#ifdef __SANITIZE_ADDRESS__
    char *fast_url = next; /* the sanitized builds check the fast path against the full one */
    next = NULL;
#endif
    int slow = !next;
    if (!next) {
        char *abs = ucwa_url_resolve(r->eff_url ? r->eff_url : r->url, href, &err);
        if (abs) {
            next = ucwa_url_with_query(L, abs, params, &err);
            free(abs);
        }
        if (!next) {
#ifdef __SANITIZE_ADDRESS__
            free(fast_url);
#endif
            lua_pushfstring(L, "bad event link: %s", err ? err : "?");
            push_batch_error(L, "BadLink", lua_tostring(L, -1), r->url);
            return unreadable(L, ch, chidx);
        }
        /* The channel's headers carry the session's token for its origin: a link
         * elsewhere (another host, http:// from https) would send it there. */
        if (!ucwa_url_same_origin(next, ch->url)) {
            lua_pushfstring(L, "event link to another origin refused (the token of %s goes nowhere else): %s",
                            ch->url, next);
            free(next);
#ifdef __SANITIZE_ADDRESS__
            free(fast_url);
#endif
            ucwa_error_push(L, 0, "Forbidden", "UntrustedLink", "%s", lua_tostring(L, -1));
            ucwa_set_str(L, -1, "url", r->url);
            return stop_with(L, ch, chidx);
        }
#ifdef __SANITIZE_ADDRESS__
        if (fast_url && strcmp(fast_url, next) != 0) {
            fprintf(stderr, "channel: fast next link %s, libcurl's %s\n", fast_url, next);
            abort();
        }
        free(fast_url);
#endif
    }
    lua_pop(L, 2);
    ch->bad = 0;

    /* repeats and pace */
    int events = has_events(L, top + 2);
    uint64_t id = events ? batch_id(L, links, r) : 0;
    int repeat = events && seen_before(ch, id);
    int64_t elapsed = ucwa_now() - ch->sent_at;
    int fast = ch->min_interval > 0 && (double)elapsed < ch->min_interval * 1e9;
    ch->fast_empty = fast && !events ? ch->fast_empty + 1 : 0;
    /* resync and resume are answered without holding the P-GET: the first one
     * in a row is followed at once */
    int hasty = fast && !events && (rel == REL_NEXT || ch->fast_empty >= 2);
    int stuck = strcmp(next, ch->url) == 0 && (events || hasty);
    free(ch->url);
    ch->url = next;
    if (slow) { /* the fast path learnt anew for this URL */
        lua_getiuservalue(L, chidx, CUV_STATE);
        lua_getfield(L, -1, "params");
        fast_prepare(L, ch, lua_gettop(L));
        lua_pop(L, 2);
    }

    int problem = 0; /* 1: a repeat; 2: the next P-GET could not be added; 3: nor its retry */
    char *too_large = NULL;
    const char *ierr = NULL;
    if (repeat || stuck) {
        ch->repeats++;
        ch->failures++;
        problem = 1;
        if (events && !repeat) remember(ch, id); /* delivered below */
        if (ch->repeats >= ch->max_repeats) {
            channel_halt(L, ch, chidx);
        } else {
            double d = backoff_next(ch);
            if (d < ch->min_interval) d = ch->min_interval > ch->b_max ? ch->b_max : ch->min_interval;
            ucwa_req_free(r);
            if (ucwa_timer_arm(ch->eng, &ch->retry, d) != 0) channel_halt(L, ch, chidx);
            ch->pausing = 0;
        }
    } else {
        ch->failures = 0;
        ch->b_cur = ch->b_initial;
        if (events) {
            ch->repeats = 0;
            remember(ch, id);
        }
        if (hasty) { /* the rest of min_interval, then the next P-GET */
            ucwa_req_free(r);
            if (ucwa_timer_arm(ch->eng, &ch->retry, ch->min_interval - (double)elapsed / 1e9) != 0) {
                channel_halt(L, ch, chidx);
                problem = 3;
            }
            ch->pausing = 1;
        } else if (events && ch->hold) { /* the next P-GET waits for release() */
            ucwa_req_free(r);
            ch->held = 1;
        } else if ((ierr = issue_pget(L, ch, chidx, &too_large)) != NULL) { /* the next P-GET first */
            /* could not even add it: try again after backoff; the batch is still ours */
            ucwa_req_free(r);
            problem = 2;
            if (ucwa_timer_arm(ch->eng, &ch->retry, backoff_next(ch)) != 0) {
                channel_halt(L, ch, chidx);
                problem = 3;
            }
        }
    }
    ucwa_engine_rearm(ch->eng, 0);
    int halted = !ch->running; /* by us (on_batch may stop the channel itself) */
    if (!repeat && !(stuck && !events)) { /* new events are never dropped; a stuck empty batch is nothing */
        lua_pushvalue(L, top + 2);
        lua_pushvalue(L, top + 1);
        st = call_cb(L, chidx, "on_batch", 2);
        if (st != LUA_OK) {
            free(too_large);
            return st;
        }
    }
    if (!problem) return LUA_OK;
    if (problem == 1) {
        push_repeat(L, ch, lua_tostring(L, top + 1), repeat);
        lua_pushinteger(L, ch->failures);
        lua_setfield(L, -2, "failures");
        if (halted) note_given_up(L, ch->repeats);
    } else {
        push_issue_error(L, ch, ierr ? ierr : "out of memory", &too_large);
        count_failure(L, ch);
    }
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, halted ? "fatal" : "retrying");
    return call_cb(L, chidx, "on_error", 1);
}

static int on_response(lua_State *L, ucwa_channel *ch, int chidx)
{
    ucwa_req *r = &ch->req;
    /* network faults and timeouts: same URL after backoff */
    if (!ucwa_req_ok(r)) {
        ucwa_push_transport_error(L, r);
        if (r->too_large || r->head_too_large) return unreadable(L, ch, chidx);
        return transient(L, ch, chidx, 0);
    }
    if (r->status == 200) return on_batch(L, ch, chidx);

    /* A 409 PGetReplaced stops the channel like any other 409: it has one
     * P-GET at a time, so a replacement of the one it waits on is another
     * client's (its own replaced ones were stopped, and their answers unseen). */
    int retry = r->status >= 500 || r->status == 429 || r->status == 408;
    push_http_error(L, chidx, r);
    if (!retry) return stop_with(L, ch, chidx);
    const char *h = ucwa_req_header(r, "retry-after");
    double ra = h ? strtod(h, NULL) : 0;
    return transient(L, ch, chidx, ra > 0 ? ra : 0);
}

/* pushes the channel object (anchored while it runs), or returns 0 when it is
 * not running any more */
static int push_running(lua_State *L, int eidx, ucwa_channel *ch)
{
    if (ucwa_anchored(L, eidx, ch) == LUA_TUSERDATA && ch->running) return 1;
    lua_pop(L, 1);
    return 0;
}

/* deliver functions: the channel is advanced (the next P-GET or the retry
 * armed) before any callback runs, so a callback's error can go out of step() */
static int deliver_response(lua_State *L, int eidx, ucwa_work *w)
{
    ucwa_channel *ch = ucwa_container_of(w, ucwa_channel, req.x.w);
    if (!push_running(L, eidx, ch)) {
        ucwa_req_free(&ch->req);
        return LUA_OK;
    }
    return on_response(L, ch, lua_gettop(L));
}

static int deliver_retry(lua_State *L, int eidx, ucwa_work *w)
{
    ucwa_channel *ch = ucwa_container_of(w, ucwa_channel, retry.w);
    if (!push_running(L, eidx, ch)) return LUA_OK;
    int chidx = lua_gettop(L);
    char *too_large = NULL;
    const char *err = issue_pget(L, ch, chidx, &too_large);
    if (!err) return LUA_OK;
    int refused = too_large != NULL;
    push_issue_error(L, ch, err, &too_large);
    if (refused) return stop_with(L, ch, chidx); /* the same headers will not fit next time */
    return transient(L, ch, chidx, 0);
}

/* ---------------------------------------------------------------- Lua API */

static const char *const channel_options[] = {
    "url",      "headers",  "timeout", "grace",        "client_timeout",  "low",         "medium", "priority",
    "on_batch", "on_error", "backoff", "min_interval", "max_bad_batches", "max_repeats", "buffer_size", "hold",
    NULL,
};
static const char *const backoff_options[] = {"initial", "max", NULL};
static const char *const params[] = {"low", "medium", "priority"};

/* an integer option of the table at 2, in [1, 1000] */
static int opt_count(lua_State *L, const char *k, int def)
{
    double v = ucwa_opt_number(L, 2, 2, k, def, 1, 1000);
    if (v != (double)(int)v) ucwa_argerror(L, 2, "option '%s' must be an integer (got %g)", k, v);
    return (int)v;
}

/* eng:channel{...}; upvalues: core.parse_events, core.parse_error */
static int l_channel(lua_State *L)
{
    ucwa_engine *e = ucwa_check_engine(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    ucwa_opt_check(L, 2, 2, "", channel_options);
    lua_getfield(L, 2, "url"); /* 3 */
    const char *url = ucwa_check_cstring(L, 3, 2, "option 'url'", NULL);
    ucwa_opt_value(L, 2, 2, "on_batch", LUA_TFUNCTION, 1); /* 4 */
    ucwa_opt_value(L, 2, 2, "on_error", LUA_TFUNCTION, 0); /* 5 */
    ucwa_opt_value(L, 2, 2, "headers", LUA_TTABLE, 0);     /* 6 */
    ucwa_headers(L, 2, 6, NULL, NULL, e->http.max_header, NULL);
    double timeout = ucwa_opt_number(L, 2, 2, "timeout", 180, 0, 1e6);
    double grace = ucwa_opt_number(L, 2, 2, "grace", 20, 0, 1e6);
    double client_timeout = ucwa_opt_number(L, 2, 2, "client_timeout", 0, 0, 1e6);
    double min_interval = ucwa_opt_number(L, 2, 2, "min_interval", 1, 0, 3600);
    int max_bad = opt_count(L, "max_bad_batches", 5);
    int max_repeats = opt_count(L, "max_repeats", 10);
    double bufsize = ucwa_opt_number(L, 2, 2, "buffer_size", UCWA_CHANNEL_BUFFER, 1024, 512 * 1024);
    double b_initial = 0.5, b_max = 30;
    if (ucwa_opt_value(L, 2, 2, "backoff", LUA_TTABLE, 0)) {
        ucwa_opt_check(L, 2, -1, "backoff.", backoff_options);
        b_initial = ucwa_opt_number(L, 2, -1, "initial", b_initial, 0.001, 3600);
        b_max = ucwa_opt_number(L, 2, -1, "max", b_max > b_initial ? b_max : b_initial, b_initial, 3600);
    }
    lua_pop(L, 1);

    /* state: callbacks, parse functions and the query params the channel owns */
    lua_createtable(L, 0, 5); /* 7 */
    lua_pushvalue(L, 4);
    lua_setfield(L, 7, "on_batch");
    lua_pushvalue(L, 5);
    lua_setfield(L, 7, "on_error");
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_setfield(L, 7, "parse");
    lua_pushvalue(L, lua_upvalueindex(2));
    lua_setfield(L, 7, "parse_error");
    lua_createtable(L, 0, 4); /* 8: params */
    if (timeout > 0) {
        lua_pushnumber(L, timeout);
        lua_setfield(L, 8, "timeout");
    }
    size_t i;
    for (i = 0; i < UCWA_NELEM(params); i++) {
        int t = lua_getfield(L, 2, params[i]);
        if (t != LUA_TNIL && t != LUA_TBOOLEAN && t != LUA_TNUMBER && t != LUA_TSTRING)
            ucwa_argerror(L, 2, "option '%s' must be a boolean, number or string (got %s)", params[i],
                          luaL_typename(L, -1));
        lua_setfield(L, 8, params[i]);
    }
    lua_setfield(L, 7, "params");

    lua_newtable(L); /* 8: headers, a copy (set_header edits it) */
    if (!lua_isnil(L, 6)) {
        lua_pushnil(L);
        while (lua_next(L, 6)) {
            if (lua_type(L, -1) == LUA_TBOOLEAN) { /* false: not sent */
                lua_pop(L, 1);
                continue;
            }
            lua_pushvalue(L, -2);
            lua_insert(L, -2);
            lua_rawset(L, 8);
        }
    }

    /* userdata first, then the C resource (the URL), which its __gc frees */
    ucwa_channel *ch = lua_newuserdatauv(L, sizeof *ch, 3); /* 9 */
    memset(ch, 0, sizeof *ch);
    luaL_setmetatable(L, UCWA_CHANNEL_MT);
    const char *err = NULL;
    lua_getfield(L, 7, "params");
    ch->url = ucwa_url_with_query(L, url, -1, &err);
    lua_pop(L, 1);
    if (!ch->url) return ucwa_argerror(L, 2, "option 'url' is not a URL: %s", err ? err : "?");
    lua_getfield(L, 7, "params");
    fast_prepare(L, ch, lua_gettop(L));
    lua_pop(L, 1);
    ch->req.x.w.deliver = deliver_response;
    ch->req.x.w.abandon = abandon_request;
    ch->retry.w.deliver = deliver_retry;
    ch->retry.w.abandon = abandon_retry;
    ch->eng = e;
    ch->timeout = timeout;
    ch->grace = grace;
    ch->client_timeout = client_timeout;
    ch->min_interval = min_interval;
    ch->max_bad = max_bad;
    ch->max_repeats = max_repeats;
    ch->buffer_size = (long)bufsize;
    ch->hold = ucwa_opt_boolean(L, 2, 2, "hold", 0);
    ch->req.keep_easy = 1; /* one easy handle for all its P-GETs */
    ch->b_initial = ch->b_cur = b_initial;
    ch->b_max = b_max;
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, 9, CUV_ENGINE);
    lua_pushvalue(L, 7);
    lua_setiuservalue(L, 9, CUV_STATE);
    lua_pushvalue(L, 8);
    lua_setiuservalue(L, 9, CUV_HEADERS);
    return 1;
}

static int l_start(lua_State *L)
{
    ucwa_channel *ch = check_open_channel(L, 1);
    if (ch->running) return 0;
    lua_settop(L, 1);
    ch->running = 1;
    ch->b_cur = ch->b_initial;
    /* the counts of faults in a row start again; the batches delivered are
     * still remembered */
    ch->failures = ch->bad = ch->repeats = ch->fast_empty = 0;
    ch->eng->n_channels++;
    lua_getiuservalue(L, 1, CUV_ENGINE);
    ucwa_anchor(L, -1, ch, 1);
    lua_pop(L, 1);
    char *too_large = NULL;
    const char *err = issue_pget(L, ch, 1, &too_large);
    if (err) {
        channel_halt(L, ch, 1);
        lua_pushfstring(L, "channel: %s", err);
        free(too_large);
        return lua_error(L);
    }
    return 0;
}

static int l_stop(lua_State *L)
{
    channel_halt(L, check_channel(L, 1), 1);
    return 0;
}

/* close, __close and __gc: idempotent */
static int l_close(lua_State *L)
{
    ucwa_channel *ch = check_channel(L, 1);
    channel_halt(L, ch, 1);
    ch->closed = 1;
    free(ch->url);
    ch->url = NULL;
    fast_clear(ch);
    return 0;
}

static int l_url(lua_State *L)
{
    ucwa_channel *ch = check_channel(L, 1);
    if (ch->url)
        lua_pushstring(L, ch->url);
    else
        lua_pushnil(L);
    return 1;
}

static int l_running(lua_State *L)
{
    ucwa_channel *ch = check_channel(L, 1);
    lua_pushboolean(L, ch->running && ch->eng && ch->eng->multi);
    return 1;
}

/* pending(): "request" (a P-GET in flight), "backoff" (waiting to retry),
 * "pause" (waiting for min_interval after a hasty empty batch), or nil */
static int l_pending(lua_State *L)
{
    ucwa_channel *ch = check_channel(L, 1);
    if (ch->req.x.w.state != UCWA_IDLE)
        lua_pushliteral(L, "request");
    else if (ch->held && ch->running)
        lua_pushliteral(L, "held");
    else if (ch->retry.w.state != UCWA_IDLE && ch->pausing)
        lua_pushliteral(L, "pause");
    else if (ch->retry.w.state != UCWA_IDLE)
        lua_pushliteral(L, "backoff");
    else
        lua_pushnil(L);
    return 1;
}

/* release(): the held channel's next P-GET goes out (it acknowledges the
 * batch delivered last). true; false when nothing was held (or the channel
 * stopped); nil, err when it could not be added: it is retried after the
 * backoff, as after any fault. */
static int l_release(lua_State *L)
{
    ucwa_channel *ch = check_channel(L, 1);
    lua_settop(L, 1);
    if (!ch->held || !ch->running || ch->closed || !ch->eng || !ch->eng->multi) {
        ch->held = 0;
        lua_pushboolean(L, 0);
        return 1;
    }
    ch->held = 0;
    char *too_large = NULL;
    const char *err = issue_pget(L, ch, 1, &too_large);
    if (!err) {
        lua_pushboolean(L, 1);
        return 1;
    }
    lua_pushnil(L);
    push_issue_error(L, ch, err, &too_large);
    count_failure(L, ch);
    if (ucwa_timer_arm(ch->eng, &ch->retry, backoff_next(ch)) != 0) channel_halt(L, ch, 1);
    return 2;
}

/* set_header(name, value): from the next P-GET on; nil removes */
static int l_set_header(lua_State *L)
{
    ucwa_channel *ch = check_channel(L, 1);
    if (ch->closed) return luaL_error(L, "channel is closed");
    size_t nl, vl = 0;
    const char *n = luaL_checklstring(L, 2, &nl);
    const char *v = lua_isnoneornil(L, 3) ? NULL : luaL_checklstring(L, 3, &vl);
    size_t max = ch->eng && ch->eng->multi ? ch->eng->http.max_header : 0;
    int why = ucwa_header_check(n, nl, v, vl, max);
    if (why) ucwa_header_error(L, why == UCWA_BAD_NAME ? 2 : 3, n, nl, vl, max, why);
    lua_settop(L, 3);
    lua_getiuservalue(L, 1, CUV_HEADERS); /* 4 */
    /* one entry per name, whatever its case */
    lua_pushnil(L);
    while (lua_next(L, 4)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) == LUA_TSTRING && strcasecmp(lua_tostring(L, -1), n) == 0) {
            lua_pushvalue(L, -1);
            lua_pushnil(L);
            lua_rawset(L, 4); /* clearing a field during next is allowed */
        }
    }
    if (v) {
        lua_pushvalue(L, 2);
        lua_pushvalue(L, 3);
        lua_rawset(L, 4);
    }
    return 0;
}

static int l_tostring(lua_State *L)
{
    ucwa_channel *ch = check_channel(L, 1);
    const char *state = ch->closed ? "closed" : ch->running ? "running" : "stopped";
    lua_pushfstring(L, "ucwa.channel (%s): %p", state, (void *)ch);
    return 1;
}

static const luaL_Reg channel_methods[] = {
    {"start", l_start},           {"stop", l_stop}, {"url", l_url}, {"running", l_running}, {"pending", l_pending},
    {"release", l_release},
    {"set_header", l_set_header}, {NULL, NULL},
};

/* the module table on top, with parse_events and parse_error already in it */
void ucwa_open_channel(lua_State *L)
{
    ucwa_class(L, UCWA_CHANNEL_MT, channel_methods, l_close, l_tostring, UCWA_CLOSABLE);
    lua_getfield(L, -1, "parse_events");
    lua_getfield(L, -2, "parse_error");
    if (!lua_isfunction(L, -1) || !lua_isfunction(L, -2))
        luaL_error(L, "ucwa.core: the parser opens before the event channel");
    ucwa_class_method(L, UCWA_ENGINE_MT, "channel", l_channel, 2);
}

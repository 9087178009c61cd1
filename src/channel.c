/* The event channel: the pending-GET (P-GET) loop of UCWA, in C.
 *
 *   local ch = eng:channel{ url=, headers=, timeout=180, low=, medium=, priority=,
 *                           on_batch=, on_error=, backoff={initial=0.5, max=30},
 *                           grace=20, client_timeout= }
 *   ch:start() ch:stop() ch:close() ch:url() ch:running() ch:pending()
 *   ch:set_header(name, value)
 *
 * One P-GET at a time (the request is embedded in the channel). Responses are
 * handled from step()'s delivery phase: the next P-GET is added and sent before
 * on_batch runs; faults retry the same URL after a jittered exponential backoff
 * (the server keeps a batch until it is acked), so no batch is lost or repeated.
 * Batches are read by core.parse_events and error bodies by core.parse_error,
 * fixed when the module is opened (the upvalues of eng:channel), not options.
 *
 * Userdata = ucwa_channel; uservalues: 1 engine, 2 state table (on_batch,
 * on_error, params, and the two parse functions), 3 headers table. A running
 * channel is anchored in the engine's anchors table. */
#include <math.h>
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

typedef struct ucwa_channel {
    ucwa_req req;     /* the P-GET */
    ucwa_timer retry; /* the backoff timer */
    ucwa_engine *eng;
    int running, closed;
    char *url; /* current P-GET URL, with the params */
    double timeout, grace, client_timeout;
    double b_initial, b_max, b_cur;
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

/* adds the P-GET for ch->url; returns NULL or an error message */
static const char *issue_pget(lua_State *L, ucwa_channel *ch, int chidx)
{
    chidx = lua_absindex(L, chidx);
    ucwa_req_spec s;
    memset(&s, 0, sizeof s);
    lua_getiuservalue(L, chidx, CUV_HEADERS);
    ucwa_headers(L, 0, -1, &s.hdrs, NULL); /* validated when they were set */
    lua_pop(L, 1);
    s.method = "GET";
    s.url = ch->url;
    double t = ch->client_timeout > 0 ? ch->client_timeout : ch->timeout > 0 ? ch->timeout + ch->grace : 0;
    s.timeout_ms = t > 0 ? ucwa_secs_to_ms(t) : ch->eng->http.timeout_ms;
    ucwa_work_cancel(&ch->retry.w);
    const char *err = ucwa_req_start(ch->eng, &ch->req, &s);
    if (!err) ucwa_engine_kick(ch->eng); /* on a kept-alive connection: sent now */
    ucwa_engine_rearm(ch->eng, 0);
    return err;
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

/* a 200: the batch parsed, the next URL found, the next P-GET sent, then
 * on_batch(batch, url) */
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
    if (st == LUA_OK && !lua_istable(L, top + 2)) { /* parse_events' ParseError, with the URL */
        lua_pushvalue(L, top + 3);
        lua_pushinteger(L, 200);
        lua_setfield(L, -2, "status");
        ucwa_set_str(L, -1, "url", r->url);
        return retry_later(L, ch, chidx, 0);
    }
    if (st != LUA_OK) { /* out of memory */
        const char *m = lua_type(L, top + 2) == LUA_TSTRING ? lua_tostring(L, top + 2) : "cannot parse";
        push_batch_error(L, "ParseError", m, r->url);
        return retry_later(L, ch, chidx, 0);
    }
    lua_settop(L, top + 2);
    const char *href = NULL;
    if (lua_getfield(L, top + 2, "links") == LUA_TTABLE) { /* top+3 */
        static const char *const rels[] = {"next", "resync", "resume"};
        size_t i;
        for (i = 0; i < UCWA_NELEM(rels) && !href; i++) href = link_href(L, top + 3, rels[i]);
    }
    if (!href) {
        push_batch_error(L, "NoNextLink", "event batch has no next, resync or resume link", r->url);
        return retry_later(L, ch, chidx, 0);
    }
    if (strlen(href) != lua_rawlen(L, -1)) { /* C would cut it at the NUL */
        push_batch_error(L, "BadLink", "bad event link: URL contains a NUL byte", r->url);
        return retry_later(L, ch, chidx, 0);
    }
    const char *err = NULL;
    char *abs = ucwa_url_resolve(r->eff_url ? r->eff_url : r->url, href, &err);
    char *next = NULL;
    if (abs) {
        lua_getiuservalue(L, chidx, CUV_STATE);
        lua_getfield(L, -1, "params");
        next = ucwa_url_with_query(L, abs, -1, &err);
        lua_pop(L, 2);
        free(abs);
    }
    if (!next) {
        lua_pushfstring(L, "bad event link: %s", err ? err : "?");
        push_batch_error(L, "BadLink", lua_tostring(L, -1), r->url);
        return retry_later(L, ch, chidx, 0);
    }
    free(ch->url);
    ch->url = next;
    ch->b_cur = ch->b_initial;
    if (issue_pget(L, ch, chidx)) { /* the next P-GET first */
        /* could not even add it: try again after backoff; the batch is still ours */
        ucwa_req_free(r);
        if (ucwa_timer_arm(ch->eng, &ch->retry, backoff_next(ch)) != 0) channel_halt(L, ch, chidx);
    }
    lua_pushvalue(L, top + 2);
    lua_pushvalue(L, top + 1);
    return call_cb(L, chidx, "on_batch", 2);
}

static int on_response(lua_State *L, ucwa_channel *ch, int chidx)
{
    ucwa_req *r = &ch->req;
    /* network faults and timeouts: same URL after backoff */
    if (!ucwa_req_ok(r)) {
        ucwa_push_transport_error(L, r);
        return retry_later(L, ch, chidx, 0);
    }
    if (r->status == 200) return on_batch(L, ch, chidx);

    int retry = r->status >= 500 || r->status == 429 || r->status == 408;
    push_http_error(L, chidx, r);
    if (r->status == 409) { /* PGetReplaced for our current P-GET: it was replaced by our next */
        lua_getfield(L, -1, "subcode");
        retry = lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "PGetReplaced") == 0;
        lua_pop(L, 1);
    }
    if (!retry) return stop_with(L, ch, chidx);
    const char *h = ucwa_req_header(r, "retry-after");
    double ra = h ? strtod(h, NULL) : 0;
    return retry_later(L, ch, chidx, ra > 0 ? ra : 0);
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
    const char *err = issue_pget(L, ch, chidx);
    if (!err) return LUA_OK;
    ucwa_error_push(L, 0, "NetworkError", NULL, "%s", err);
    ucwa_set_str(L, -1, "url", ch->url);
    return retry_later(L, ch, chidx, 0);
}

/* ---------------------------------------------------------------- Lua API */

static const char *const channel_options[] = {
    "url",    "headers",  "timeout",  "grace",    "client_timeout", "low",
    "medium", "priority", "on_batch", "on_error", "backoff",        NULL,
};
static const char *const backoff_options[] = {"initial", "max", NULL};
static const char *const params[] = {"low", "medium", "priority"};

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
    ucwa_headers(L, 2, 6, NULL, NULL);
    double timeout = ucwa_opt_number(L, 2, 2, "timeout", 180, 0, 1e6);
    double grace = ucwa_opt_number(L, 2, 2, "grace", 20, 0, 1e6);
    double client_timeout = ucwa_opt_number(L, 2, 2, "client_timeout", 0, 0, 1e6);
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
    ch->req.x.w.deliver = deliver_response;
    ch->req.x.w.abandon = abandon_request;
    ch->retry.w.deliver = deliver_retry;
    ch->retry.w.abandon = abandon_retry;
    ch->eng = e;
    ch->timeout = timeout;
    ch->grace = grace;
    ch->client_timeout = client_timeout;
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
    ch->eng->n_channels++;
    lua_getiuservalue(L, 1, CUV_ENGINE);
    ucwa_anchor(L, -1, ch, 1);
    lua_pop(L, 1);
    const char *err = issue_pget(L, ch, 1);
    if (err) {
        channel_halt(L, ch, 1);
        return luaL_error(L, "channel: %s", err);
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

/* pending(): "request" (a P-GET in flight), "backoff" (waiting to retry), or nil */
static int l_pending(lua_State *L)
{
    ucwa_channel *ch = check_channel(L, 1);
    if (ch->req.x.w.state != UCWA_IDLE)
        lua_pushliteral(L, "request");
    else if (ch->retry.w.state != UCWA_IDLE)
        lua_pushliteral(L, "backoff");
    else
        lua_pushnil(L);
    return 1;
}

/* set_header(name, value): from the next P-GET on; nil removes */
static int l_set_header(lua_State *L)
{
    ucwa_channel *ch = check_channel(L, 1);
    if (ch->closed) return luaL_error(L, "channel is closed");
    size_t nl, vl = 0;
    const char *n = luaL_checklstring(L, 2, &nl);
    const char *v = lua_isnoneornil(L, 3) ? NULL : luaL_checklstring(L, 3, &vl);
    int why = ucwa_header_check(n, nl, v, vl);
    if (why) ucwa_header_error(L, why == UCWA_BAD_NAME ? 2 : 3, n, why);
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

/* The event channel: the pending-GET (P-GET) loop of UCWA, in C.
 *
 *   local ch = eng:channel{ url=, headers=, timeout=180, low=, medium=, priority=,
 *                           parse=, parse_error=, on_batch=, on_error=,
 *                           backoff={initial=0.5, max=30}, grace=20 }
 *   ch:start() ch:stop() ch:close() ch:url() ch:running() ch:set_header(name, value)
 *
 * One P-GET at a time (the request is embedded in the channel). Responses are
 * handled from step()'s delivery phase: the next P-GET is added and sent before
 * on_batch runs; faults retry the same URL after a jittered exponential backoff
 * (the server keeps a batch until it is acked), so no batch is lost or repeated.
 *
 * Userdata = ucwa_channel; uservalues: 1 engine, 2 options table (parse,
 * parse_error, on_batch, on_error, params), 3 headers table. A running channel
 * is anchored in the engine's anchors table. */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "engine.h"

#define CUV_ENGINE  1
#define CUV_OPTS    2
#define CUV_HEADERS 3

struct ucwa_channel {
    ucwa_req req;            /* the P-GET (w.ch = this) */
    ucwa_timer retry;        /* the backoff timer (w.ch = this) */
    ucwa_engine *eng;
    int running, closed;
    char *url;               /* current P-GET URL, with the params */
    double timeout, grace, client_timeout;
    double b_initial, b_max, b_cur;
};

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

void ucwa_channel_engine_closed(ucwa_channel *ch)
{
    /* the engine is tearing down: it unlinks our nodes and drops the anchors */
    if (ch->running && ch->eng) ch->eng->n_channels--;
    ch->running = 0;
}

/* stop without callbacks; chidx = channel userdata */
static void channel_halt(lua_State *L, ucwa_channel *ch, int chidx)
{
    chidx = lua_absindex(L, chidx);
    ucwa_req_abort(&ch->req);
    ucwa_timer_disarm(&ch->retry);
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

static double backoff_next(ucwa_channel *ch)
{
    double d = ch->b_cur * (0.5 + 0.5 * ucwa_engine_random(ch->eng));
    ch->b_cur *= 2;
    if (ch->b_cur > ch->b_max) ch->b_cur = ch->b_max;
    return d;
}

static void schedule_retry(ucwa_channel *ch, double at_least)
{
    double d = backoff_next(ch);
    if (at_least > d) d = at_least > ch->b_max ? ch->b_max : at_least;
    ucwa_req_abort(&ch->req);
    ucwa_timer_disarm(&ch->retry);
    ucwa_timer_arm(ch->eng, &ch->retry, d);
}

/* adds the P-GET for ch->url; returns NULL or an error message */
static const char *issue_pget(lua_State *L, ucwa_channel *ch, int chidx)
{
    chidx = lua_absindex(L, chidx);
    int has_ct = 0;
    lua_getiuservalue(L, chidx, CUV_HEADERS);
    struct curl_slist *sl = ucwa_headers_from_table(L, -1, &has_ct);
    lua_pop(L, 1);
    ucwa_req_spec s;
    memset(&s, 0, sizeof s);
    s.method = "GET";
    s.url = ch->url;
    s.hdrs = sl;
    double t = ch->client_timeout > 0 ? ch->client_timeout
             : ch->timeout > 0 ? ch->timeout + ch->grace : 0;
    s.timeout_ms = t > 0 ? ucwa_secs_to_ms(t) : ch->eng->default_timeout_ms;
    ucwa_timer_disarm(&ch->retry);
    ucwa_req_abort(&ch->req);
    const char *err = ucwa_req_start(ch->eng, &ch->req, &s);
    if (!err) ucwa_engine_kick(ch->eng);   /* on a kept-alive connection: sent now */
    ucwa_engine_rearm(ch->eng, 0);
    return err;
}

/* ---------------------------------------------------------------- errors */

static const char *status_code_name(long st)
{
    switch (st) {
    case 400: return "BadRequest";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "NotFound";
    case 405: return "MethodNotAllowed";
    case 408: return "Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 412: return "PreconditionFailed";
    case 413: return "EntityTooLarge";
    case 415: return "UnsupportedMediaType";
    case 429: return "TooManyRequests";
    case 500: return "ServiceFailure";
    case 502: return "BadGateway";
    case 503: return "ServiceUnavailable";
    case 504: return "GatewayTimeout";
    default: return "HttpError";
    }
}

static void set_str(lua_State *L, const char *k, const char *v)
{
    if (!v) return;
    lua_pushstring(L, v);
    lua_setfield(L, -2, k);
}

static int has_field(lua_State *L, int idx, const char *k)
{
    int t = lua_getfield(L, idx, k);
    lua_pop(L, 1);
    return t != LUA_TNIL;
}

/* pushes the error object for an HTTP error response */
static void push_http_error(lua_State *L, int eidx, int chidx, ucwa_req *r)
{
    eidx = lua_absindex(L, eidx);
    chidx = lua_absindex(L, chidx);
    const char *ctype = ucwa_req_header(r, "content-type");
    int top = lua_gettop(L);
    /* parse_error option, else core.parse_error if present */
    lua_getiuservalue(L, chidx, CUV_OPTS);
    if (lua_getfield(L, -1, "parse_error") == LUA_TNIL) {
        lua_pop(L, 1);
        lua_getiuservalue(L, eidx, UCWA_EUV_MODULE);
        if (lua_istable(L, -1)) lua_getfield(L, -1, "parse_error");
        else lua_pushnil(L);
        lua_remove(L, -2);
    }
    if (lua_isfunction(L, -1)) {
        lua_pushlstring(L, r->body.p ? r->body.p : "", r->body.len);
        if (ctype) lua_pushstring(L, ctype); else lua_pushnil(L);
        lua_pushinteger(L, r->status);
        if (lua_pcall(L, 3, 1, 0) == LUA_OK && lua_istable(L, -1)) {
            lua_replace(L, top + 1);
            lua_settop(L, top + 1);
        } else {
            lua_settop(L, top);
        }
    } else {
        lua_settop(L, top);
    }
    int made = lua_gettop(L) > top;
    if (!made) lua_newtable(L);
    if (!has_field(L, -1, "status")) {
        lua_pushinteger(L, r->status);
        lua_setfield(L, -2, "status");
    }
    if (!has_field(L, -1, "code")) set_str(L, "code", status_code_name(r->status));
    if (!has_field(L, -1, "subcode") && r->body.p && strstr(r->body.p, "PGetReplaced"))
        set_str(L, "subcode", "PGetReplaced");
    if (!has_field(L, -1, "message"))
        lua_pushfstring(L, "event channel: HTTP %d", (int)r->status), lua_setfield(L, -2, "message");
    lua_pushlstring(L, r->body.p ? r->body.p : "", r->body.len);
    lua_setfield(L, -2, "body");
    set_str(L, "content_type", ctype);
    set_str(L, "url", r->url);
    if (!made) ucwa_make_error(L, eidx);
}

/* pushes {code=, message=, status=200, url=} as an error object */
static void push_simple_error(lua_State *L, int eidx, const char *code, int msgidx, const char *url)
{
    msgidx = lua_absindex(L, msgidx);
    lua_createtable(L, 0, 4);
    set_str(L, "code", code);
    lua_pushvalue(L, msgidx);
    lua_setfield(L, -2, "message");
    lua_pushinteger(L, 200);
    lua_setfield(L, -2, "status");
    set_str(L, "url", url);
    ucwa_make_error(L, eidx);
}

/* calls opts[name](args...) with nargs values on top; returns status (error on top) */
static int call_cb(lua_State *L, int chidx, const char *name, int nargs)
{
    lua_getiuservalue(L, chidx, CUV_OPTS);
    lua_getfield(L, -1, name);
    lua_remove(L, -2);
    if (!lua_isfunction(L, -1)) {
        lua_pop(L, 1 + nargs);
        return LUA_OK;
    }
    lua_insert(L, -1 - nargs);
    return lua_pcall(L, nargs, 0, 0);
}

/* the error on top gets retrying=true / fatal=true, then on_error(err) */
static int report(lua_State *L, int chidx, int fatal)
{
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, fatal ? "fatal" : "retrying");
    return call_cb(L, chidx, "on_error", 1);
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
    if (h && !*h) h = NULL;    /* "" would be this very URL again: a repeat, not a next */
    if (!h) lua_pop(L, 1);
    return h;                  /* the string stays on the stack */
}

static int on_response(lua_State *L, int eidx, ucwa_channel *ch, int chidx)
{
    ucwa_req *r = &ch->req;
    int top = lua_gettop(L), st;

    /* network faults and timeouts: same URL after backoff */
    if (r->result != CURLE_OK || r->status <= 0) {
        ucwa_push_transport_error(L, eidx, r);
        schedule_retry(ch, 0);
        st = report(L, chidx, 0);
        goto out;
    }

    if (r->status == 200) {
        const char *ctype = ucwa_req_header(r, "content-type");
        lua_pushstring(L, r->url);                                /* top+1: this URL */
        lua_getiuservalue(L, chidx, CUV_OPTS);
        lua_getfield(L, -1, "parse");
        lua_remove(L, -2);
        lua_pushlstring(L, r->body.p ? r->body.p : "", r->body.len);
        if (ctype) lua_pushstring(L, ctype); else lua_pushnil(L);
        st = lua_pcall(L, 2, 2, 0);                               /* top+2.. */
        if (st != LUA_OK || !lua_istable(L, top + 2)) {
            int msg = st != LUA_OK ? top + 2 : top + 3;
            if (lua_type(L, msg) == LUA_TSTRING || lua_type(L, msg) == LUA_TNUMBER)
                lua_pushstring(L, lua_tostring(L, msg));   /* no __tostring: it could raise */
            else
                lua_pushliteral(L, "event batch could not be parsed");
            push_simple_error(L, eidx, "ParseError", -1, r->url);
            schedule_retry(ch, 0);
            st = report(L, chidx, 0);
            goto out;
        }
        lua_settop(L, top + 2);                                   /* top+2: batch */
        const char *href = NULL;
        if (lua_getfield(L, top + 2, "links") == LUA_TTABLE) {    /* top+3 */
            static const char *const rels[] = { "next", "resync", "resume" };
            size_t i;
            for (i = 0; i < 3 && !href; i++) href = link_href(L, top + 3, rels[i]);
        }
        if (!href) {
            lua_pushliteral(L, "event batch has no next, resync or resume link");
            push_simple_error(L, eidx, "NoNextLink", -1, r->url);
            schedule_retry(ch, 0);
            st = report(L, chidx, 0);
            goto out;
        }
        const char *err = NULL;
        char *abs = ucwa_url_resolve(r->eff_url ? r->eff_url : r->url, href, &err);
        char *next = NULL;
        if (abs) {
            lua_getiuservalue(L, chidx, CUV_OPTS);
            lua_getfield(L, -1, "params");
            next = ucwa_url_with_query(L, abs, -1, &err);
            lua_pop(L, 2);
            free(abs);
        }
        if (!next) {
            lua_pushfstring(L, "bad event link: %s", err ? err : "?");
            push_simple_error(L, eidx, "BadLink", -1, r->url);
            schedule_retry(ch, 0);
            st = report(L, chidx, 0);
            goto out;
        }
        free(ch->url);
        ch->url = next;
        ch->b_cur = ch->b_initial;
        ucwa_req_free(r);
        err = issue_pget(L, ch, chidx);               /* the next P-GET first */
        if (err) {
            /* could not even add it: try again after backoff; the batch is still ours */
            schedule_retry(ch, 0);
        }
        lua_pushvalue(L, top + 2);
        lua_pushvalue(L, top + 1);
        st = call_cb(L, chidx, "on_batch", 2);
        goto out;
    }

    int retry = r->status >= 500 || r->status == 429 || r->status == 408;
    push_http_error(L, eidx, chidx, r);
    if (r->status == 409) {                           /* PGetReplaced for our current P-GET */
        lua_getfield(L, -1, "subcode");
        retry = lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "PGetReplaced") == 0;
        lua_pop(L, 1);
    }
    if (retry) {
        double ra = 0;
        const char *h = ucwa_req_header(r, "retry-after");
        if (h) ra = strtod(h, NULL);
        schedule_retry(ch, ra > 0 ? ra : 0);
        st = report(L, chidx, 0);
    } else {
        lua_pushvalue(L, -1);
        lua_insert(L, top + 1);
        channel_halt(L, ch, chidx);
        ucwa_req_free(r);
        lua_settop(L, top + 1);
        st = report(L, chidx, 1);
    }
out:
    /* r was freed (or, on the 200 path, reused for the next P-GET) above */
    if (st != LUA_OK) return st;
    lua_settop(L, top);
    return LUA_OK;
}

int ucwa_channel_deliver(lua_State *L, int eidx, ucwa_work *w)
{
    ucwa_channel *ch = w->ch;
    int top = lua_gettop(L), st = LUA_OK;
    /* the channel object: anchored while it runs */
    lua_getiuservalue(L, eidx, UCWA_EUV_ANCHORS);
    lua_pushlightuserdata(L, ch);
    lua_rawget(L, -2);
    lua_remove(L, -2);
    int chidx = lua_gettop(L);
    if (!ch->running || !lua_isuserdata(L, chidx)) {
        ucwa_req_free(&ch->req);
        lua_settop(L, top);
        return LUA_OK;
    }
    if (w->kind == UCWA_WORK_REQ) {
        st = on_response(L, eidx, ch, chidx);
    } else {
        const char *err = issue_pget(L, ch, chidx);
        if (err) {
            lua_pushstring(L, err);
            push_simple_error(L, eidx, "NetworkError", -1, ch->url);
            schedule_retry(ch, 0);
            st = report(L, chidx, 0);
        }
    }
    if (st != LUA_OK) return st;
    lua_settop(L, top);
    return LUA_OK;
}

/* ---------------------------------------------------------------- Lua API */

static void check_header(lua_State *L, const char *n, size_t nl, const char *v, size_t vl)
{
    size_t i;
    int bad = nl == 0;
    for (i = 0; i < nl; i++) {
        unsigned char c = (unsigned char)n[i];
        if (c <= 32 || c >= 127 || c == ':') bad = 1;
    }
    if (bad) luaL_error(L, "bad header name");
    for (i = 0; v && i < vl; i++)
        if (v[i] == '\r' || v[i] == '\n' || v[i] == '\0')
            luaL_error(L, "header '%s': value contains CR, LF or NUL", n);
}

static double opt_num(lua_State *L, int t, const char *k, double def)
{
    return ucwa_opt_number(L, t, k, def, "channel: ");
}

int ucwa_engine_channel(lua_State *L)
{
    ucwa_engine *e = ucwa_check_engine(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    if (lua_getfield(L, 2, "url") != LUA_TSTRING) return luaL_error(L, "channel: 'url' must be a string");
    lua_pop(L, 1);
    if (lua_getfield(L, 2, "parse") != LUA_TFUNCTION) return luaL_error(L, "channel: 'parse' must be a function");
    lua_pop(L, 1);
    if (lua_getfield(L, 2, "on_batch") != LUA_TFUNCTION) return luaL_error(L, "channel: 'on_batch' must be a function");
    lua_pop(L, 1);
    int t = lua_getfield(L, 2, "on_error");
    if (t != LUA_TNIL && t != LUA_TFUNCTION) return luaL_error(L, "channel: 'on_error' must be a function");
    lua_pop(L, 1);
    t = lua_getfield(L, 2, "parse_error");   /* false: none, not even core.parse_error */
    if (t != LUA_TNIL && t != LUA_TFUNCTION && !(t == LUA_TBOOLEAN && !lua_toboolean(L, -1)))
        return luaL_error(L, "channel: 'parse_error' must be a function or false");
    lua_pop(L, 1);

    ucwa_channel *ch = lua_newuserdatauv(L, sizeof *ch, 3);     /* 3 */
    memset(ch, 0, sizeof *ch);
    ch->closed = 1;                          /* until fully set up */
    luaL_setmetatable(L, UCWA_CHANNEL_MT);
    ch->req.w.kind = UCWA_WORK_REQ;
    ch->req.w.ch = ch;
    ch->retry.w.kind = UCWA_WORK_TIMER;
    ch->retry.w.ch = ch;
    ch->eng = e;
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, 3, CUV_ENGINE);

    ch->timeout = opt_num(L, 2, "timeout", 180);
    ch->grace = opt_num(L, 2, "grace", 20);
    ch->client_timeout = opt_num(L, 2, "client_timeout", 0);
    ch->b_initial = 0.5;
    ch->b_max = 30;
    if (lua_getfield(L, 2, "backoff") == LUA_TTABLE) {
        ch->b_initial = opt_num(L, -1, "initial", 0.5);
        ch->b_max = opt_num(L, -1, "max", 30);
    }
    lua_pop(L, 1);
    if (!(ch->b_initial > 0.001)) ch->b_initial = 0.001;
    if (ch->b_initial > 3600) ch->b_initial = 3600;
    if (!(ch->b_max >= ch->b_initial)) ch->b_max = ch->b_initial;
    if (ch->b_max > 3600) ch->b_max = 3600;
    if (!(ch->timeout >= 0)) ch->timeout = 0;
    if (!(ch->grace >= 0)) ch->grace = 0;
    ch->b_cur = ch->b_initial;

    /* options table: callbacks and the query params the channel owns */
    lua_createtable(L, 0, 6);                                   /* 4 */
    static const char *const cbs[] = { "parse", "parse_error", "on_batch", "on_error" };
    size_t i;
    for (i = 0; i < 4; i++) {
        lua_getfield(L, 2, cbs[i]);
        lua_setfield(L, 4, cbs[i]);
    }
    lua_createtable(L, 0, 4);                                   /* 5: params */
    if (ch->timeout > 0) {
        lua_pushnumber(L, ch->timeout);
        lua_setfield(L, 5, "timeout");
    }
    static const char *const ps[] = { "low", "medium", "priority" };
    for (i = 0; i < 3; i++) {
        lua_getfield(L, 2, ps[i]);
        lua_setfield(L, 5, ps[i]);
    }
    lua_setfield(L, 4, "params");
    lua_setiuservalue(L, 3, CUV_OPTS);

    lua_newtable(L);                                            /* 4: headers */
    if (lua_getfield(L, 2, "headers") != LUA_TNIL) {            /* 5 */
        luaL_checktype(L, 5, LUA_TTABLE);
        lua_pushnil(L);
        while (lua_next(L, 5)) {
            if (lua_type(L, -2) != LUA_TSTRING) return luaL_error(L, "header names must be strings");
            if (lua_type(L, -1) != LUA_TSTRING) return luaL_error(L, "header '%s': value must be a string", lua_tostring(L, -2));
            size_t nl, vl;
            const char *n = lua_tolstring(L, -2, &nl), *v = lua_tolstring(L, -1, &vl);
            check_header(L, n, nl, v, vl);
            lua_pushvalue(L, -2);
            lua_insert(L, -2);
            lua_rawset(L, 4);
        }
    }
    lua_pop(L, 1);
    lua_setiuservalue(L, 3, CUV_HEADERS);

    lua_getfield(L, 2, "url");
    lua_getiuservalue(L, 3, CUV_OPTS);
    lua_getfield(L, -1, "params");
    const char *err = NULL;
    char *u = ucwa_url_with_query(L, lua_tostring(L, -3), -1, &err);
    lua_pop(L, 3);
    if (!u) return luaL_error(L, "channel: bad 'url': %s", err ? err : "?");
    ch->url = u;
    ch->closed = 0;
    lua_settop(L, 3);
    return 1;
}

static int l_start(lua_State *L)
{
    ucwa_channel *ch = check_open_channel(L, 1);
    if (ch->running) return 0;
    lua_settop(L, 1);
    if (ucwa_timer_reserve(ch->eng, ch->eng->n_channels + 1) != 0) return luaL_error(L, "out of memory");
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
    ucwa_channel *ch = check_channel(L, 1);
    channel_halt(L, ch, 1);
    return 0;
}

static int l_close(lua_State *L)
{
    ucwa_channel *ch = check_channel(L, 1);
    channel_halt(L, ch, 1);
    ucwa_req_free(&ch->req);
    ch->closed = 1;
    return 0;
}

static int l_gc(lua_State *L)
{
    ucwa_channel *ch = check_channel(L, 1);
    l_close(L);
    free(ch->url);
    ch->url = NULL;
    return 0;
}

static int l_url(lua_State *L)
{
    ucwa_channel *ch = check_channel(L, 1);
    if (ch->url) lua_pushstring(L, ch->url); else lua_pushnil(L);
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
    if (ch->req.state != UCWA_IDLE) lua_pushliteral(L, "request");
    else if (ch->retry.state != UCWA_IDLE) lua_pushliteral(L, "backoff");
    else lua_pushnil(L);
    return 1;
}

static int l_set_header(lua_State *L)
{
    ucwa_channel *ch = check_channel(L, 1);
    if (ch->closed) return luaL_error(L, "channel is closed");
    size_t nl, vl = 0;
    const char *n = luaL_checklstring(L, 2, &nl);
    const char *v = lua_isnoneornil(L, 3) ? NULL : luaL_checklstring(L, 3, &vl);
    check_header(L, n, nl, v, vl);
    lua_settop(L, 3);
    lua_getiuservalue(L, 1, CUV_HEADERS);                /* 4 */
    /* one entry per name, whatever its case */
    lua_pushnil(L);
    while (lua_next(L, 4)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) == LUA_TSTRING && strcasecmp(lua_tostring(L, -1), n) == 0) {
            lua_pushvalue(L, -1);
            lua_pushnil(L);
            lua_rawset(L, 4);              /* clearing a field during next is allowed */
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
    lua_pushfstring(L, "ucwa.channel (%s): %p",
                    ch->closed ? "closed" : ch->running ? "running" : "stopped", (void *)ch);
    return 1;
}

static const luaL_Reg methods[] = {
    {"start", l_start},
    {"stop", l_stop},
    {"close", l_close},
    {"url", l_url},
    {"running", l_running},
    {"pending", l_pending},
    {"set_header", l_set_header},
    {NULL, NULL}
};

void ucwa_open_channel(lua_State *L)
{
    ucwa_new_class(L, UCWA_CHANNEL_MT, methods, l_gc, l_tostring, 1);
}

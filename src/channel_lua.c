/* The event channel's Lua face: eng:channel{...} and its option reading,
 * the channel's methods (start, stop, close, url, running, pending, release,
 * set_header, __tostring) and ucwa_open_channel. The P-GET loop is
 * channel.c, the batch bookkeeping channel_batch.c (channel.h: the
 * struct and what the three share). */
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

/* The P-GET's receive buffer, bytes: libcurl's least. Its default, 16 KiB,
 * is held by every pending P-GET; most batches are a few hundred bytes, and
 * a large one costs a read() per 1 KiB instead of per 16 KiB (docs/transport.md:
 * a few hundred microseconds on a 1 MiB batch, against milliseconds to parse
 * it). 1 KiB instead of 2 KiB: -1.0 KB of heap a bot. */
#define UCWA_CHANNEL_BUFFER 1024

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
    ch->url_ack = ACK_UNKNOWN;
    lua_getfield(L, 7, "params");
    ucwa_ch_fast_prepare(L, ch, lua_gettop(L));
    lua_pop(L, 1);
    ch->req.x.w.deliver = ucwa_ch_deliver_response;
    ch->req.x.w.abandon = ucwa_ch_abandon_request;
    ch->retry.w.deliver = ucwa_ch_deliver_retry;
    ch->retry.w.abandon = ucwa_ch_abandon_retry;
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
    const char *err = ucwa_ch_issue_pget(L, ch, 1, &too_large);
    if (err) {
        ucwa_ch_halt(L, ch, 1);
        lua_pushfstring(L, "channel: %s", err);
        free(too_large);
        return lua_error(L);
    }
    return 0;
}

static int l_stop(lua_State *L)
{
    ucwa_ch_halt(L, check_channel(L, 1), 1);
    return 0;
}

/* close, __close and __gc: idempotent */
static int l_close(lua_State *L)
{
    ucwa_channel *ch = check_channel(L, 1);
    ucwa_ch_halt(L, ch, 1);
    ch->closed = 1;
    free(ch->url);
    ch->url = NULL;
    ucwa_ch_fast_clear(ch);
    ucwa_ch_headers_clear(ch);
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
    const char *err = ucwa_ch_issue_pget(L, ch, 1, &too_large);
    if (!err) {
        lua_pushboolean(L, 1);
        return 1;
    }
    lua_pushnil(L);
    ucwa_ch_push_issue_error(L, ch, err, &too_large);
    ucwa_ch_count_failure(L, ch);
    if (ucwa_timer_arm(ch->eng, &ch->retry, ucwa_ch_backoff_next(ch)) != 0) ucwa_ch_halt(L, ch, 1);
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
    ch->hdrs_stale = 1; /* the next P-GET's list is made anew */
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

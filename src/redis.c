/* A Redis connection on the engine: hiredis's async API (redisAsyncContext)
 * with its descriptor on the engine's epoll set (loop.h's watches) and its
 * timeouts on the engine's timer heap, so nothing blocks the loop.
 *
 *   local r = eng:redis{ host=, port=, timeout=5, on_close=fn(err) }
 *   r:command({"SET", "k", "v"}, fn(reply, err))  -- true, or nil, err when closed
 *   r:state()   -- "connecting", "ready" or "closed"
 *   r:pending() -- commands sent and not answered
 *   r:close()   -- pending callbacks get Cancelled; on_close is not called
 *
 * hiredis runs its callbacks (reply, connect, cleanup) from inside
 * redisAsyncHandleRead/Write, which run from step()'s poll phase: they touch
 * C state only. A reply is copied out of hiredis (it frees its own after the
 * callback) and its command queued as a work item; the Lua callback runs from
 * step()'s delivery phase, like a request's. Everything a command needs from
 * Lua (its arguments, the memory for it) is taken before hiredis is called,
 * so no Lua error ever longjmps through hiredis.
 *
 * Timeouts (hiredis 0.14 has none in its async API): one engine timer per
 * connection, armed while connecting and while a command waits, pushed back
 * by every reply. When it fires the connection is dropped: the commands
 * waiting get Timeout errors and on_close runs. Reconnecting is the caller's
 * business (ucwa.store.redis does it, with backoff).
 *
 * Userdata = rconn; uservalues: 1 engine, 2 on_close. Anchored in the engine
 * while hiredis holds its context (and until on_close has run). A command is
 * a userdata (rcmd; uservalue 1: its callback) anchored in the engine from
 * the call until its delivery: hiredis holds its address meanwhile. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/async.h>

#include "ucwa.h"
#include "error.h"
#include "loop.h"

#define UCWA_REDIS_MT "ucwa.redis"
#define RUV_ENGINE    1
#define RUV_ON_CLOSE  2
#define MAX_ARGS      (1024 * 1024)
#define REDIS_NULL    "ucwa.redis.null" /* registry: core.null, a nil inside an array */

/* why a connection ended (rconn.why) */
enum { WHY_NONE = 0, WHY_LOST, WHY_TIMEOUT, WHY_USER, WHY_ENGINE };

/* a reply, copied out of hiredis */
typedef struct rreply {
    int type;
    long long integer;
    char *str;
    size_t len;
    size_t n;
    struct rreply **el;
} rreply;

typedef struct rconn {
    redisAsyncContext *ac; /* NULL once hiredis freed it */
    ucwa_engine *eng;
    ucwa_watch watch;
    ucwa_timer timer;   /* connect / reply timeout */
    ucwa_work closed_w; /* on_close, queued when the connection is lost */
    double timeout;
    size_t pending;
    int connected;
    int why;
    char err[256]; /* what hiredis said when the connection ended */
} rconn;

typedef struct rcmd {
    ucwa_work w;
    rconn *conn; /* NULL once the reply (or the error) is in */
    rreply *reply;
    int why;        /* WHY_* when there is no reply */
    char err[256];
} rcmd;

/* ---------------------------------------------------------------- replies (C only) */

static void rreply_free(rreply *r)
{
    if (!r) return;
    for (size_t i = 0; i < r->n; i++) rreply_free(r->el[i]);
    free(r->el);
    free(r->str);
    free(r);
}

/* a deep copy, or NULL when out of memory */
static rreply *rreply_copy(const redisReply *h)
{
    rreply *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->type = h->type;
    r->integer = h->integer;
    if (h->str) {
        r->str = malloc(h->len + 1);
        if (!r->str) goto fail;
        memcpy(r->str, h->str, h->len);
        r->str[h->len] = 0;
        r->len = h->len;
    }
    if (h->type == REDIS_REPLY_ARRAY && h->elements) {
        r->el = calloc(h->elements, sizeof *r->el);
        if (!r->el) goto fail;
        for (; r->n < h->elements; r->n++)
            if (!(r->el[r->n] = rreply_copy(h->element[r->n]))) goto fail;
    }
    return r;
fail:
    rreply_free(r);
    return NULL;
}

/* ---------------------------------------------------------------- the timer */

static void arm_timer(rconn *c)
{
    if (c->eng && c->eng->multi && c->timeout > 0) ucwa_timer_arm(c->eng, &c->timer, c->timeout);
}

static void update_timer(rconn *c)
{
    if (!c->ac) {
        ucwa_work_cancel(&c->timer.w);
    } else if (!c->connected || c->pending) {
        arm_timer(c);
    } else {
        ucwa_work_cancel(&c->timer.w);
    }
}

/* ---------------------------------------------------------------- hiredis callbacks (C only) */

static void reply_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
    rcmd *cmd = privdata;
    rconn *c = cmd->conn;
    cmd->conn = NULL;
    if (c->pending) c->pending--;
    if (reply) {
        cmd->reply = rreply_copy(reply);
        if (!cmd->reply) {
            cmd->why = WHY_LOST;
            snprintf(cmd->err, sizeof cmd->err, "out of memory reading a reply");
        }
    } else {
        cmd->why = c->why ? c->why : WHY_LOST;
        snprintf(cmd->err, sizeof cmd->err, "%s", ac->err && ac->errstr[0] ? ac->errstr : c->err);
    }
    if (c->why == WHY_ENGINE || !c->eng || !c->eng->multi) {
        rreply_free(cmd->reply); /* the engine is closing: nobody to call */
        cmd->reply = NULL;
        return;
    }
    ucwa_work_ready(c->eng, &cmd->w);
    if (c->ac && !(c->ac->c.flags & (REDIS_FREEING | REDIS_DISCONNECTING))) update_timer(c);
}

static void connect_cb(const redisAsyncContext *ac, int status)
{
    rconn *c = ac->data;
    if (status == REDIS_OK) {
        c->connected = 1;
        update_timer(c);
    } else {
        snprintf(c->err, sizeof c->err, "%s", ac->errstr);
    }
}

static void set_events(rconn *c, unsigned add, unsigned del)
{
    if (!c->ac || !c->eng || !c->eng->multi || c->why == WHY_ENGINE) return;
    unsigned ev = (c->watch.eng ? c->watch.events : 0);
    ev = (ev | add) & ~del;
    ucwa_watch_set(c->eng, &c->watch, c->ac->c.fd, ev);
}

static void ev_add_read(void *p)
{
    set_events(p, UCWA_WATCH_IN, 0);
}
static void ev_del_read(void *p)
{
    set_events(p, 0, UCWA_WATCH_IN);
}
static void ev_add_write(void *p)
{
    set_events(p, UCWA_WATCH_OUT, 0);
}
static void ev_del_write(void *p)
{
    set_events(p, 0, UCWA_WATCH_OUT);
}

/* hiredis frees its context after this (every way it ends): the descriptor
 * leaves the epoll set, and a connection lost (not closed by its owner) gets
 * its on_close queued, after the failed commands' callbacks */
static void ev_cleanup(void *p)
{
    rconn *c = p;
    if (c->ac && c->ac->err && !c->err[0]) snprintf(c->err, sizeof c->err, "%s", c->ac->errstr);
    ucwa_watch_stop(&c->watch);
    ucwa_work_cancel(&c->timer.w);
    if (!c->why) c->why = WHY_LOST;
    c->ac = NULL;
    c->connected = 0;
    if ((c->why == WHY_LOST || c->why == WHY_TIMEOUT) && c->eng && c->eng->multi) ucwa_work_ready(c->eng, &c->closed_w);
}

/* the descriptor is readable or writable: from step()'s poll phase */
static void watch_ready(ucwa_watch *w, unsigned fired)
{
    rconn *c = ucwa_container_of(w, rconn, watch);
    if (c->ac && (fired & (UCWA_WATCH_OUT | UCWA_WATCH_ERR))) redisAsyncHandleWrite(c->ac);
    if (c->ac && (fired & (UCWA_WATCH_IN | UCWA_WATCH_ERR))) redisAsyncHandleRead(c->ac);
}

/* drops the context: hiredis runs the waiting callbacks (NULL replies) and
 * ev_cleanup, and frees it */
static void drop(rconn *c, int why)
{
    if (!c->ac) return;
    if (!c->why) c->why = why;
    redisAsyncFree(c->ac);
    c->ac = NULL; /* ev_cleanup did it already, unless hiredis deferred the free */
}

static void watch_abandon(ucwa_watch *w)
{
    rconn *c = ucwa_container_of(w, rconn, watch);
    c->why = WHY_ENGINE;
    drop(c, WHY_ENGINE);
}

/* ---------------------------------------------------------------- delivery (Lua) */

static void push_reply(lua_State *L, const rreply *r)
{
    switch (r->type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS: lua_pushlstring(L, r->str ? r->str : "", r->len); break;
    case REDIS_REPLY_INTEGER: lua_pushinteger(L, (lua_Integer)r->integer); break;
    case REDIS_REPLY_ARRAY:
        luaL_checkstack(L, 4, "redis reply");
        lua_createtable(L, (int)(r->n < 1000000 ? r->n : 1000000), 0);
        for (size_t i = 0; i < r->n; i++) {
            push_reply(L, r->el[i]);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        break;
    case REDIS_REPLY_ERROR: /* inside an array (EXEC, a script's table): an error object */
        ucwa_error_push(L, 0, "RedisError", NULL, "%s", r->str ? r->str : "");
        break;
    default: lua_getfield(L, LUA_REGISTRYINDEX, REDIS_NULL); break; /* nil: core.null */
    }
}

/* pcall'd: (callback, rcmd lightuserdata) -> callback, reply, err */
static int build_args(lua_State *L)
{
    rcmd *cmd = lua_touserdata(L, 2);
    lua_settop(L, 1);
    const rreply *r = cmd->reply;
    if (r && r->type == REDIS_REPLY_ERROR) {
        /* the first word of a Redis error is its kind: ERR, NOSCRIPT, WRONGTYPE, BUSY, ... */
        char kind[32];
        size_t k = 0;
        while (r->str && k < r->len && k < sizeof kind - 1 && r->str[k] != ' ') {
            kind[k] = r->str[k];
            k++;
        }
        kind[k] = 0;
        lua_pushnil(L);
        ucwa_error_push(L, 0, "RedisError", k ? kind : NULL, "%s", r->str ? r->str : "");
    } else if (r) {
        push_reply(L, r);
        lua_pushnil(L);
    } else {
        lua_pushnil(L);
        switch (cmd->why) {
        case WHY_TIMEOUT: ucwa_error_push(L, 0, "Timeout", "RedisTimeout", "Redis did not answer in time"); break;
        case WHY_USER:
            ucwa_error_push(L, 0, "Cancelled", NULL, "the Redis connection was closed before the reply");
            break;
        default:
            ucwa_error_push(L, 0, "ConnectionFailed", "RedisConnection", "Redis connection lost: %s",
                            cmd->err[0] ? cmd->err : "closed");
        }
    }
    return 3;
}

static int cmd_deliver(lua_State *L, int eidx, ucwa_work *w)
{
    rcmd *cmd = ucwa_container_of(w, rcmd, w);
    if (ucwa_anchored(L, eidx, cmd) != LUA_TUSERDATA) { /* not reached: queued commands are anchored */
        rreply_free(cmd->reply);
        cmd->reply = NULL;
        return LUA_OK;
    }
    ucwa_unanchor(L, eidx, cmd);
    lua_pushcfunction(L, build_args);
    lua_getiuservalue(L, -2, 1);
    lua_pushlightuserdata(L, cmd);
    int st = lua_pcall(L, 2, 3, 0); /* a memory error there must not leak the reply */
    rreply_free(cmd->reply);
    cmd->reply = NULL;
    if (st != LUA_OK) return st;
    return lua_pcall(L, 2, 0, 0);
}

static void cmd_abandon(ucwa_work *w)
{
    rcmd *cmd = ucwa_container_of(w, rcmd, w);
    rreply_free(cmd->reply);
    cmd->reply = NULL;
}

static int timer_deliver(lua_State *L, int eidx, ucwa_work *w)
{
    rconn *c = ucwa_container_of(w, rconn, timer.w);
    (void)L;
    (void)eidx;
    if (c->ac) {
        snprintf(c->err, sizeof c->err, "%s", c->connected ? "no reply in time" : "connect timed out");
        drop(c, WHY_TIMEOUT);
    }
    return LUA_OK;
}

static int closed_deliver(lua_State *L, int eidx, ucwa_work *w)
{
    rconn *c = ucwa_container_of(w, rconn, closed_w);
    if (ucwa_anchored(L, eidx, c) != LUA_TUSERDATA) return LUA_OK;
    ucwa_unanchor(L, eidx, c);
    int obj = lua_gettop(L);
    if (lua_getiuservalue(L, obj, RUV_ON_CLOSE) != LUA_TFUNCTION) return LUA_OK;
    if (c->why == WHY_TIMEOUT)
        ucwa_error_push(L, 0, "Timeout", "RedisTimeout", "Redis: %s", c->err);
    else
        ucwa_error_push(L, 0, "ConnectionFailed", "RedisConnection", "Redis connection lost: %s",
                        c->err[0] ? c->err : "closed");
    return lua_pcall(L, 1, 0, 0);
}

/* ---------------------------------------------------------------- Lua API */

static rconn *check_conn(lua_State *L)
{
    return luaL_checkudata(L, 1, UCWA_REDIS_MT);
}

static const char *const redis_options[] = {"host", "port", "timeout", "on_close", NULL};

/* eng:redis{ host=, port=, timeout=, on_close= } */
static int l_redis(lua_State *L)
{
    ucwa_engine *e = ucwa_check_engine(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    ucwa_opt_check(L, 2, 2, "", redis_options);
    const char *host = ucwa_opt_string(L, 2, 2, "host", "127.0.0.1");
    int port = (int)ucwa_opt_number(L, 2, 2, "port", 6379, 1, 65535);
    double timeout = ucwa_opt_number(L, 2, 2, "timeout", 5, 0.001, 1e6);
    ucwa_opt_value(L, 2, 2, "on_close", LUA_TFUNCTION, 0); /* 3 */
    rconn *c = lua_newuserdatauv(L, sizeof *c, 2);          /* 4 */
    memset(c, 0, sizeof *c);
    c->watch.fd = -1;
    c->watch.ready = watch_ready;
    c->watch.abandon = watch_abandon;
    c->timer.w.deliver = timer_deliver;
    c->closed_w.deliver = closed_deliver;
    c->timeout = timeout;
    luaL_setmetatable(L, UCWA_REDIS_MT);
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, 4, RUV_ENGINE);
    lua_pushvalue(L, 3);
    lua_setiuservalue(L, 4, RUV_ON_CLOSE);
    /* the anchor first (it can raise), hiredis second */
    ucwa_anchor(L, 1, c, 4);
    redisAsyncContext *ac = redisAsyncConnect(host, port);
    if (!ac || ac->err) {
        ucwa_unanchor(L, 1, c);
        lua_pushnil(L);
        ucwa_error_push(L, 0, "ConnectionFailed", "RedisConnection", "cannot connect to Redis at %s:%d: %s", host,
                        port, ac ? ac->errstr : "out of memory");
        if (ac) redisAsyncFree(ac);
        return 2;
    }
    c->ac = ac;
    c->eng = e;
    ac->data = c;
    ac->ev.data = c;
    ac->ev.addRead = ev_add_read;
    ac->ev.delRead = ev_del_read;
    ac->ev.addWrite = ev_add_write;
    ac->ev.delWrite = ev_del_write;
    ac->ev.cleanup = ev_cleanup;
    redisAsyncSetConnectCallback(ac, connect_cb);
    /* hiredis learns that a non-blocking connect finished from the first
     * write event */
    if (ucwa_watch_set(e, &c->watch, ac->c.fd, UCWA_WATCH_OUT) != 0) {
        int err = errno;
        ucwa_unanchor(L, 1, c);
        c->why = WHY_USER;
        redisAsyncFree(ac);
        c->ac = NULL;
        lua_pushnil(L);
        ucwa_error_push(L, 0, "ConnectionFailed", "RedisConnection", "cannot watch the Redis socket: %s",
                        strerror(err));
        return 2;
    }
    arm_timer(c);
    ucwa_engine_rearm(e, 0);
    return 1;
}

/* r:command(args, fn) */
static int l_command(lua_State *L)
{
    rconn *c = check_conn(L);
    luaL_checktype(L, 2, LUA_TTABLE);
    luaL_checktype(L, 3, LUA_TFUNCTION);
    lua_settop(L, 3);
    if (!c->ac || !c->eng || !c->eng->multi || (c->ac->c.flags & (REDIS_DISCONNECTING | REDIS_FREEING))) {
        lua_pushnil(L);
        ucwa_error_push(L, 0, "ConnectionFailed", "RedisConnection", "the Redis connection is closed%s%s",
                        c->err[0] ? ": " : "", c->err);
        return 2;
    }
    lua_Integer n = (lua_Integer)lua_rawlen(L, 2), i;
    if (n < 1) return ucwa_argerror(L, 2, "a Redis command needs at least its name");
    if (n > MAX_ARGS) return ucwa_argerror(L, 2, "a Redis command of %lld arguments is too long", (long long)n);
    /* everything from Lua first: the strings (kept alive by a table), the
     * memory; hiredis is called with nothing left that can raise */
    const char **argv = lua_newuserdatauv(L, (size_t)n * (sizeof *argv + sizeof(size_t)), 0); /* 4 */
    size_t *argl = (size_t *)(void *)(argv + n);
    lua_createtable(L, (int)n, 0); /* 5: the strings */
    for (i = 1; i <= n; i++) {
        int t = lua_rawgeti(L, 2, i);
        if (t != LUA_TSTRING && t != LUA_TNUMBER)
            return ucwa_argerror(L, 2, "Redis command argument %lld must be a string or a number (got %s)",
                                 (long long)i, luaL_typename(L, -1));
        argv[i - 1] = lua_tolstring(L, -1, &argl[i - 1]);
        lua_rawseti(L, 5, i);
    }
    /* the command: a userdata holding its callback, anchored in the engine
     * until delivered (hiredis keeps its address) */
    rcmd *cmd = lua_newuserdatauv(L, sizeof *cmd, 1); /* 6 */
    memset(cmd, 0, sizeof *cmd);
    cmd->w.deliver = cmd_deliver;
    cmd->w.abandon = cmd_abandon;
    cmd->conn = c;
    lua_pushvalue(L, 3);
    lua_setiuservalue(L, 6, 1);
    lua_getiuservalue(L, 1, RUV_ENGINE); /* 7 */
    ucwa_anchor(L, 7, cmd, 6);
    if (redisAsyncCommandArgv(c->ac, reply_cb, cmd, (int)n, argv, argl) != REDIS_OK) {
        ucwa_unanchor(L, 7, cmd);
        lua_pushnil(L);
        ucwa_error_push(L, 0, "ConnectionFailed", "RedisConnection", "Redis refused the command: %s",
                        c->ac && c->ac->errstr[0] ? c->ac->errstr : "out of memory");
        return 2;
    }
    c->pending++;
    if (c->connected && c->pending == 1) arm_timer(c);
    ucwa_engine_rearm(c->eng, 0);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_state(lua_State *L)
{
    rconn *c = check_conn(L);
    lua_pushstring(L, !c->ac ? "closed" : c->connected ? "ready" : "connecting");
    return 1;
}

static int l_pending(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)check_conn(L)->pending);
    return 1;
}

/* close, __close and __gc: the commands waiting get Cancelled (from the next
 * step), on_close is not called; idempotent */
static int l_close(lua_State *L)
{
    rconn *c = check_conn(L);
    ucwa_engine *e = c->eng;
    if (c->ac) {
        c->why = WHY_USER;
        drop(c, WHY_USER);
    }
    ucwa_work_cancel(&c->timer.w);
    ucwa_work_cancel(&c->closed_w);
    ucwa_watch_stop(&c->watch);
    if (e && e->multi && lua_getiuservalue(L, 1, RUV_ENGINE) == LUA_TUSERDATA) {
        ucwa_unanchor(L, -1, c);
        ucwa_engine_rearm(e, 0);
    }
    return 0;
}

static int l_tostring(lua_State *L)
{
    rconn *c = check_conn(L);
    lua_pushfstring(L, "ucwa.redis (%s): %p", !c->ac ? "closed" : c->connected ? "ready" : "connecting", (void *)c);
    return 1;
}

static const luaL_Reg redis_methods[] = {
    {"command", l_command},
    {"state", l_state},
    {"pending", l_pending},
    {NULL, NULL},
};

void ucwa_open_redis(lua_State *L)
{
    lua_getfield(L, -1, "null"); /* set by ucwa_open_parse */
    lua_setfield(L, LUA_REGISTRYINDEX, REDIS_NULL);
    ucwa_class(L, UCWA_REDIS_MT, redis_methods, l_close, l_tostring, UCWA_CLOSABLE);
    ucwa_class_method(L, UCWA_ENGINE_MT, "redis", l_redis, 0);
}

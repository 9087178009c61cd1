/* One-shot timers on the engine:
 *
 *   local t = eng:timer(seconds, fn)   -- fn() runs from a later step()
 *   t:cancel()                          -- true if it was still pending
 *
 * Userdata = ucwa_timer; uservalues: 1 fn (cleared once fired or cancelled),
 * 2 the engine. Anchored in the engine while armed. */
#include <string.h>

#include "ucwa.h"
#include "loop.h"

#define UCWA_TIMER_MT "ucwa.timer"

static int timer_deliver(lua_State *L, int eidx, ucwa_work *w)
{
    ucwa_timer *t = ucwa_container_of(w, ucwa_timer, w);
    if (ucwa_anchored(L, eidx, t) != LUA_TUSERDATA) return LUA_OK;
    ucwa_unanchor(L, eidx, t);
    int obj = lua_gettop(L);
    lua_getiuservalue(L, obj, 1);
    lua_pushnil(L);
    lua_setiuservalue(L, obj, 1);
    return lua_isfunction(L, -1) ? lua_pcall(L, 0, 0, 0) : LUA_OK;
}

/* eng:timer(seconds, fn); NaN and negative times are 0 (the next step) */
static int l_timer(lua_State *L)
{
    ucwa_engine *e = ucwa_check_engine(L, 1);
    double secs = luaL_checknumber(L, 2);
    luaL_checktype(L, 3, LUA_TFUNCTION);
    lua_settop(L, 3);
    ucwa_timer *t = lua_newuserdatauv(L, sizeof *t, 2);
    memset(t, 0, sizeof *t);
    t->w.deliver = timer_deliver; /* nothing to abandon: the engine drops the anchor */
    luaL_setmetatable(L, UCWA_TIMER_MT);
    lua_pushvalue(L, 3);
    lua_setiuservalue(L, 4, 1);
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, 4, 2);
    if (ucwa_timer_arm(e, t, secs) != 0) return luaL_error(L, "out of memory");
    ucwa_anchor(L, 1, t, 4);
    ucwa_engine_rearm(e, 0);
    return 1;
}

static int l_cancel(lua_State *L)
{
    ucwa_timer *t = luaL_checkudata(L, 1, UCWA_TIMER_MT);
    ucwa_engine *e = t->w.eng;
    if (!e || !e->multi) {
        lua_pushboolean(L, 0);
        return 1;
    }
    ucwa_work_cancel(&t->w);
    lua_getiuservalue(L, 1, 2);
    ucwa_unanchor(L, -1, t);
    lua_pop(L, 1);
    lua_pushnil(L);
    lua_setiuservalue(L, 1, 1);
    ucwa_engine_rearm(e, 0);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_gc(lua_State *L)
{
    ucwa_work_cancel(&((ucwa_timer *)luaL_checkudata(L, 1, UCWA_TIMER_MT))->w);
    return 0;
}

static const luaL_Reg timer_methods[] = {
    {"cancel", l_cancel},
    {NULL, NULL},
};

void ucwa_open_timer(lua_State *L)
{
    ucwa_class(L, UCWA_TIMER_MT, timer_methods, l_gc, NULL, 0);
    ucwa_class_method(L, UCWA_ENGINE_MT, "timer", l_timer, 0);
}

/* The helpers of auxlib.h: messages, classes, option readers, buffers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auxlib.h"

/* ---------------------------------------------------------------- messages */

const char *ucwa_pushvf(lua_State *L, const char *fmt, va_list ap)
{
    char small[256];
    va_list again;
    va_copy(again, ap);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    if (n < 0) {
        va_end(again);
        return lua_pushliteral(L, "(message could not be formatted)");
    }
    if ((size_t)n < sizeof small) {
        va_end(again);
        return lua_pushlstring(L, small, (size_t)n);
    }
    luaL_Buffer b;
    char *p = luaL_buffinitsize(L, &b, (size_t)n + 1);
    vsnprintf(p, (size_t)n + 1, fmt, again);
    va_end(again);
    luaL_pushresultsize(&b, (size_t)n);
    return lua_tostring(L, -1);
}

const char *ucwa_pushf(lua_State *L, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    const char *s = ucwa_pushvf(L, fmt, ap);
    va_end(ap);
    return s;
}

int ucwa_raise(lua_State *L, const char *fmt, ...)
{
    va_list ap;
    luaL_where(L, 1);
    va_start(ap, fmt);
    ucwa_pushvf(L, fmt, ap);
    va_end(ap);
    lua_concat(L, 2);
    lua_error(L);
    abort(); /* not reached: lua_error does not return */
}

int ucwa_argerror(lua_State *L, int arg, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    const char *msg = ucwa_pushvf(L, fmt, ap);
    va_end(ap);
    luaL_argerror(L, arg, msg);
    abort(); /* not reached */
}

/* ---------------------------------------------------------------- classes */

void ucwa_class(lua_State *L, const char *name, const luaL_Reg *methods, lua_CFunction gc, lua_CFunction tostring,
                int flags)
{
    luaL_newmetatable(L, name);
    lua_newtable(L);
    luaL_setfuncs(L, methods, 0);
    if (flags & UCWA_CLOSABLE) {
        lua_pushcfunction(L, gc);
        lua_setfield(L, -2, "close");
    }
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, gc);
    lua_setfield(L, -2, "__gc");
    if (flags & UCWA_CLOSABLE) {
        lua_pushcfunction(L, gc);
        lua_setfield(L, -2, "__close");
    }
    if (tostring) {
        lua_pushcfunction(L, tostring);
        lua_setfield(L, -2, "__tostring");
    }
    lua_pop(L, 1);
}

void ucwa_class_method(lua_State *L, const char *name, const char *method, lua_CFunction fn, int nup)
{
    lua_pushcclosure(L, fn, nup);
    luaL_getmetatable(L, name);
    lua_getfield(L, -1, "__index");
    lua_insert(L, -3);
    lua_pop(L, 1);
    lua_setfield(L, -2, method);
    lua_pop(L, 1);
}

/* ---------------------------------------------------------------- options */

/* Edit distance of a and b (short names: the options' own are < 32 bytes),
 * capped at 99 for longer ones. */
static int distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), i, j;
    int row[33];
    if (la > 32 || lb > 32) return 99;
    for (j = 0; j <= lb; j++) row[j] = (int)j;
    for (i = 1; i <= la; i++) {
        int diag = row[0];
        row[0] = (int)i;
        for (j = 1; j <= lb; j++) {
            int up = row[j];
            int best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

static UCWA_NORETURN void unknown_option(lua_State *L, int arg, const char *prefix, const char *k,
                                         const char *const known[])
{
    const char *best = NULL;
    int bestd = 99, i;
    for (i = 0; known[i]; i++) {
        int d = distance(k, known[i]);
        if (d < bestd) bestd = d, best = known[i];
    }
    /* a typo is a few edits away, relative to the name's length */
    if (best && bestd <= 1 + (int)strlen(best) / 4)
        ucwa_argerror(L, arg, "unknown option '%s%s' (did you mean '%s%s'?)", prefix, k, prefix, best);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (i = 0; known[i]; i++) {
        if (i) luaL_addstring(&b, ", ");
        luaL_addstring(&b, known[i]);
    }
    luaL_pushresult(&b);
    ucwa_argerror(L, arg, "unknown option '%s%s' (known: %s)", prefix, k, lua_tostring(L, -1));
}

void ucwa_opt_check(lua_State *L, int arg, int t, const char *prefix, const char *const known[])
{
    t = lua_absindex(L, t);
    lua_pushnil(L);
    while (lua_next(L, t)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING)
            ucwa_argerror(L, arg, "option names must be strings (got a %s key)", luaL_typename(L, -1));
        const char *k = lua_tostring(L, -1);
        int i;
        for (i = 0; known[i] && strcmp(known[i], k) != 0; i++) {}
        if (!known[i]) unknown_option(L, arg, prefix, k, known);
    }
}

double ucwa_opt_number(lua_State *L, int arg, int t, const char *k, double def, double lo, double hi)
{
    double v = def;
    int type = lua_getfield(L, t, k);
    if (type != LUA_TNIL) {
        if (type != LUA_TNUMBER)
            ucwa_argerror(L, arg, "option '%s' must be a number (got %s)", k, luaL_typename(L, -1));
        v = lua_tonumber(L, -1);
        if (!(v >= lo && v <= hi)) /* NaN too */
            ucwa_argerror(L, arg, "option '%s' must be between %g and %g (got %g)", k, lo, hi, v);
    }
    lua_pop(L, 1);
    return v;
}

int ucwa_opt_boolean(lua_State *L, int arg, int t, const char *k, int def)
{
    int type = lua_getfield(L, t, k), v = def;
    if (type != LUA_TNIL) {
        if (type != LUA_TBOOLEAN)
            ucwa_argerror(L, arg, "option '%s' must be a boolean (got %s)", k, luaL_typename(L, -1));
        v = lua_toboolean(L, -1);
    }
    lua_pop(L, 1);
    return v;
}

const char *ucwa_check_cstring(lua_State *L, int idx, int arg, const char *what, size_t *len)
{
    size_t n;
    if (lua_type(L, idx) != LUA_TSTRING)
        ucwa_argerror(L, arg, "%s must be a string (got %s)", what, luaL_typename(L, idx));
    const char *s = lua_tolstring(L, idx, &n);
    if (strlen(s) != n) ucwa_argerror(L, arg, "%s contains a NUL byte", what);
    if (len) *len = n;
    return s;
}

const char *ucwa_opt_string(lua_State *L, int arg, int t, const char *k, const char *def)
{
    const char *s = def;
    if (lua_getfield(L, t, k) != LUA_TNIL) {
        lua_pushfstring(L, "option '%s'", k);
        s = ucwa_check_cstring(L, -2, arg, lua_tostring(L, -1), NULL);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return s;
}

int ucwa_opt_value(lua_State *L, int arg, int t, const char *k, int type, int required)
{
    int got = lua_getfield(L, t, k);
    if (got == type) return 1;
    if (got == LUA_TNIL && !required) return 0;
    return ucwa_argerror(L, arg, "option '%s' must be a %s (got %s)", k, lua_typename(L, type), luaL_typename(L, -1));
}

/* ---------------------------------------------------------------- buffers */

int ucwa_grow(void **p, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap) return 0;
    /* first 64 items, or 256 bytes of small ones (as the buffers had before) */
    size_t n = *cap ? *cap : 256 / size > 64 ? 256 / size : 64;
    while (n < need) {
        if (n > ((size_t)1 << 40) / size) return -1;
        n *= 2;
    }
    void *q = realloc(*p, n * size);
    if (!q) return -1;
    *p = q;
    *cap = n;
    return 0;
}

int ucwa_buf_add(ucwa_buf *b, const char *s, size_t n)
{
    if (ucwa_grow((void **)&b->p, &b->cap, b->len + n + 1, 1) != 0) return -1;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

void ucwa_buf_free(ucwa_buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

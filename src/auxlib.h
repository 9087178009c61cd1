/* What every part of ucwa.core uses: the class helper, option readers, growable
 * buffers and printf-style messages. (Not "aux.h": that name is reserved on
 * Windows.)
 *
 * The dialect: C11 with the GNU/POSIX library (-std=gnu11; strdup,
 * strcasecmp, epoll, timerfd), no feature macros. Messages are formatted by
 * printf (ucwa_pushf, ucwa_raise, ucwa_argerror), checked by the compiler
 * (the format attribute); lua_pushfstring and luaL_error, whose conversions
 * are checked only at run time ("invalid option '%0'"), are kept to %s, and
 * to %I, %f and %p where Lua's own spelling of a number is wanted. */
#ifndef UCWA_AUXLIB_H
#define UCWA_AUXLIB_H

#include <stdarg.h>
#include <stddef.h>
#include <lua.h>
#include <lauxlib.h>

#if !defined(__STDC_VERSION__) || __STDC_VERSION__ < 201112L
#error "ucwa.core is C11: build with -std=gnu11 (see the Makefile)"
#endif

#define UCWA_NELEM(a) (sizeof(a) / sizeof((a)[0]))
/* the struct that holds member `m` at address p */
#define ucwa_container_of(p, type, m) ((type *)(void *)((char *)(p)-offsetof(type, m)))

#if defined(__GNUC__)
#define UCWA_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define UCWA_NORETURN     __attribute__((noreturn))
#else
#define UCWA_PRINTF(f, a)
#define UCWA_NORETURN
#endif

/* ---- messages */

/* Pushes the printf-formatted message (any length). */
const char *ucwa_pushvf(lua_State *L, const char *fmt, va_list ap);
const char *ucwa_pushf(lua_State *L, const char *fmt, ...) UCWA_PRINTF(2, 3);
/* luaL_error and luaL_argerror with printf formats. */
UCWA_NORETURN int ucwa_raise(lua_State *L, const char *fmt, ...) UCWA_PRINTF(2, 3);
UCWA_NORETURN int ucwa_argerror(lua_State *L, int arg, const char *fmt, ...) UCWA_PRINTF(3, 4);

/* ---- classes */

/* One metatable per class, registered once: `name` ("ucwa.engine"), the
 * methods in __index, `gc` as __gc and, with UCWA_CLOSABLE, also as __close
 * and the `close` method (one idempotent teardown), and __tostring. */
enum { UCWA_CLOSABLE = 1 };
void ucwa_class(lua_State *L, const char *name, const luaL_Reg *methods, lua_CFunction gc, lua_CFunction tostring,
                int flags);
/* Adds the method `fn`, with the nup upvalues on top of the stack (popped),
 * to the __index of the class `name`: how request.c, timer.c and channel.c
 * give the engine its `request`, `timer` and `channel` methods without
 * loop.c knowing them. */
void ucwa_class_method(lua_State *L, const char *name, const char *method, lua_CFunction fn, int nup);

/* ---- option tables
 * Options are a table argument (number `arg`, for the messages) at stack index
 * t. Every problem is an argument error: unknown keys (with the closest known
 * name), wrong types, values out of range, strings with a NUL byte. */

/* Raises on a key of t that is not in `known` (NULL-terminated); `prefix`
 * names a nested table in the message ("backoff."), or is "". */
void ucwa_opt_check(lua_State *L, int arg, int t, const char *prefix, const char *const known[]);
/* t[k] as a number in [lo, hi], or def when nil. */
double ucwa_opt_number(lua_State *L, int arg, int t, const char *k, double def, double lo, double hi);
/* t[k] as a boolean, or def when nil. */
int ucwa_opt_boolean(lua_State *L, int arg, int t, const char *k, int def);
/* t[k] as a string without NUL bytes, or def when nil. The string is not left
 * on the stack: it stays valid while t holds it. */
const char *ucwa_opt_string(lua_State *L, int arg, int t, const char *k, const char *def);
/* Pushes t[k]: a value of `type`, or nil (raises when required). Returns
 * whether it is not nil. */
int ucwa_opt_value(lua_State *L, int arg, int t, const char *k, int type, int required);
/* The string at stack index idx, refused (argument error naming `what`) when
 * it is not a string or holds a NUL byte: C would silently cut it there. */
const char *ucwa_check_cstring(lua_State *L, int idx, int arg, const char *what, size_t *len);

/* t[k] = s, unless s is NULL */
static inline void ucwa_set_str(lua_State *L, int t, const char *k, const char *s)
{
    if (s) {
        t = lua_absindex(L, t);
        lua_pushstring(L, s);
        lua_setfield(L, t, k);
    }
}

/* ---- growable buffers */

typedef struct ucwa_buf {
    char *p;
    size_t len, cap;
} ucwa_buf;

/* Makes room for `need` items of `size` bytes in *p (capacity *cap, in
 * items), doubling; 0, or -1 when out of memory (*p unchanged). */
int ucwa_grow(void **p, size_t *cap, size_t need, size_t size);
/* Appends n bytes and keeps a NUL after them; 0 or -1 (out of memory). */
int ucwa_buf_add(ucwa_buf *b, const char *s, size_t n);
void ucwa_buf_free(ucwa_buf *b);

#endif

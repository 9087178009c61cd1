/* The decoded path and query arguments of a request target that did not
 * come through libmicrohttpd: a part of a multipart/batching body
 * (sim/lua/batching.lua), whose path and raw query http-parser found.
 * GLib's URI functions (GLib comes with GMime) do the reading, as MHD does
 * for a request sent alone: the query split at '&' and '=', '+' a space,
 * %HH escapes decoded in names and values (an escape that is not one stays
 * as written), the last of two equal names wins.
 *
 *   host.target_decode(path, query) -> path, args | nil, err
 *       query may be nil; args = {name = value}. A path or query whose
 *       escapes do not decode to UTF-8 text (%00, %FF), or a query with a
 *       parameter and no '=', is refused with what was wrong.
 *
 * GLib calls nothing in Lua. What GLib allocates is held in a box whose
 * __gc frees it, so a memory error while pushing cannot leak. */
#include <string.h>
#include <glib.h>
#include <lua.h>
#include <lauxlib.h>

#define TARGET_BOX "ucwasim.target"

struct box {
	GBytes *path;
	char *name, *value;
};

static int box_gc(lua_State *L)
{
	struct box *b = lua_touserdata(L, 1);
	g_clear_pointer(&b->path, g_bytes_unref);
	g_clear_pointer(&b->name, g_free);
	g_clear_pointer(&b->value, g_free);
	return 0;
}

/* pushes nil and "<what>: <GLib's message>" (the message copied before Lua may raise) */
static int fail(lua_State *L, const char *what, GError *e)
{
	char msg[200];
	g_snprintf(msg, sizeof msg, "%s: %s", what, e ? e->message : "not UTF-8 text");
	g_clear_error(&e);
	lua_pushnil(L);
	lua_pushstring(L, msg);
	return 2;
}

/* host.target_decode(path, query) -> path, args | nil, err */
static int l_target_decode(lua_State *L)
{
	size_t plen, qlen = 0;
	const char *path = luaL_checklstring(L, 1, &plen);
	const char *query = luaL_optlstring(L, 2, "", &qlen);
	struct box *b = lua_newuserdatauv(L, sizeof *b, 0);
	GError *e = NULL;
	GUriParamsIter it;
	gsize n = 0;

	memset(b, 0, sizeof *b);
	luaL_setmetatable(L, TARGET_BOX);
	b->path = g_uri_unescape_bytes(path, (gssize)plen, NULL, &e);
	if (!b->path)
		return fail(L, "the path cannot be decoded", e);
	const char *s = g_bytes_get_data(b->path, &n);
	if (n && (memchr(s, '\0', n) || !g_utf8_validate(s, (gssize)n, NULL)))
		return fail(L, "the path cannot be decoded", NULL);
	lua_pushlstring(L, s, n);
	lua_newtable(L);
	g_uri_params_iter_init(&it, query, (gssize)qlen, "&",
			       G_URI_PARAMS_WWW_FORM | G_URI_PARAMS_PARSE_RELAXED);
	while (g_uri_params_iter_next(&it, &b->name, &b->value, &e)) {
		lua_pushstring(L, b->name);
		lua_pushstring(L, b->value);
		lua_rawset(L, -3);
		g_clear_pointer(&b->name, g_free);
		g_clear_pointer(&b->value, g_free);
	}
	if (e)
		return fail(L, "the query cannot be read", e);
	return 2;
}

void ucwa_open_target(lua_State *L)
{
	luaL_newmetatable(L, TARGET_BOX);
	lua_pushcfunction(L, box_gc);
	lua_setfield(L, -2, "__gc");
	lua_pop(L, 1);
	lua_pushcfunction(L, l_target_decode);
	lua_setfield(L, -2, "target_decode");
}

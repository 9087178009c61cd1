/* ucwa-sim: dispatch of a request to Lua and its answer. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include "sim.h"

/* ---- dispatch ---------------------------------------------------------- */

static enum MHD_Result collect_kv(void *cls, enum MHD_ValueKind kind, const char *key,
				  const char *value)
{
	lua_State *L = cls;
	(void)kind;
	if (!key)
		return MHD_YES;
	if (kind == MHD_HEADER_KIND) {
		/* header names are case-insensitive: store them lowercased */
		luaL_Buffer b;
		const char *p;
		luaL_buffinit(L, &b);
		for (p = key; *p; p++)
			luaL_addchar(&b, (*p >= 'A' && *p <= 'Z') ? (char)(*p + 32) : *p);
		luaL_pushresult(&b);
	} else {
		lua_pushstring(L, key);
	}
	lua_pushstring(L, value ? value : "");
	lua_rawset(L, -3);
	return MHD_YES;
}

int sim_traceback(lua_State *L)
{
	const char *msg = lua_tostring(L, 1);
	luaL_traceback(L, L, msg ? msg : "(error object)", 1);
	return 1;
}

static enum MHD_Result queue(struct req *r, struct MHD_Response *resp, unsigned status)
{
	enum MHD_Result ret = MHD_queue_response(r->conn, status, resp);
	MHD_destroy_response(resp);
	if (resp == r->resp)
		r->resp = NULL;
	return ret;
}

static enum MHD_Result plain_error(struct req *r, unsigned status, const char *json)
{
	struct MHD_Response *resp = MHD_create_response_from_buffer(
		strlen(json), (void *)json, MHD_RESPMEM_PERSISTENT);
	if (!resp)
		return MHD_NO;
	MHD_add_response_header(resp, "Content-Type", "application/json");
	return queue(r, resp, status);
}

/* Protected: (status, headers, body) -> lightuserdata response, status. */
static int build_response(lua_State *L)
{
	unsigned status;
	struct MHD_Response *resp = sim_make_response(L, 1, &status);
	lua_pushlightuserdata(L, resp);
	lua_pushinteger(L, (lua_Integer)status);
	return 2;
}

static void suspend_req(struct req *r, int box_idx)
{
	lua_State *L = sim_G.L;

	r->state = ST_SUSPENDED;
	r->box = lua_touserdata(L, box_idx);
	lua_pushvalue(L, box_idx);
	r->box_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	r->next = sim_G.suspended;
	if (sim_G.suspended)
		sim_G.suspended->prev = r;
	sim_G.suspended = r;
	sim_G.nsuspended++;
	MHD_suspend_connection(r->conn);
	sim_watch_add(r);
}

/* The client of a suspended request went away: the connection is closed
 * now, and Lua's gone(box) learns that nobody waits for that answer. */
void sim_peer_gone(struct req *r)
{
	lua_State *L = sim_G.L;
	struct box *b = r->box;
	int base;

	if (r->state != ST_SUSPENDED)
		return;
	lua_pushcfunction(L, sim_traceback);
	base = lua_gettop(L);
	lua_getfield(L, LUA_REGISTRYINDEX, "ucwa-sim.gone");
	lua_rawgeti(L, LUA_REGISTRYINDEX, r->box_ref);
	sim_resume_as(r, ST_DROP);
	if (b)
		b->r = NULL; /* respond/drop on it now answer false */
	if (lua_isfunction(L, base + 1) && lua_pcall(L, 1, 0, base) != LUA_OK)
		fprintf(stderr, "ucwa-sim: gone: %s\n", lua_tostring(L, -1));
	lua_settop(L, base - 1);
}

/* Protected part of dispatch: builds the request table and calls handle().
 * Arguments: the struct req (light userdata), url, method, version.
 * Results: the request's box, then handle()'s three results. */
static int call_handler(lua_State *L)
{
	struct req *r = lua_touserdata(L, 1);
	struct form_field *f;
	struct box *b;

	b = lua_newuserdatauv(L, sizeof *b, 0); /* index 5 */
	b->r = NULL;
	luaL_setmetatable(L, BOX_MT);
	sim_G.current = b;
	lua_getfield(L, LUA_REGISTRYINDEX, "ucwa-sim.handle");
	lua_createtable(L, 0, 10);
	lua_pushvalue(L, 3);
	lua_setfield(L, -2, "method");
	lua_pushvalue(L, 2);
	lua_setfield(L, -2, "path");
	lua_pushvalue(L, 4);
	lua_setfield(L, -2, "version");
	lua_pushinteger(L, r->lst->index);
	lua_setfield(L, -2, "listener");
	lua_newtable(L);
	MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, collect_kv, L);
	lua_setfield(L, -2, "query");
	lua_newtable(L);
	MHD_get_connection_values(r->conn, MHD_HEADER_KIND, collect_kv, L);
	lua_setfield(L, -2, "headers");
	lua_pushlstring(L, r->body ? r->body : "", r->len);
	lua_setfield(L, -2, "body");
	if (r->too_large) {
		lua_pushboolean(L, 1);
		lua_setfield(L, -2, "too_large");
	}
	if (r->pp) {
		lua_newtable(L);
		for (f = r->form; f; f = f->next) {
			lua_pushlstring(L, f->val ? f->val : "", f->len);
			lua_setfield(L, -2, f->key);
		}
		lua_setfield(L, -2, "form");
		if (r->form_bad) {
			lua_pushboolean(L, 1);
			lua_setfield(L, -2, "form_bad");
		}
		if (r->too_many_fields) {
			lua_pushboolean(L, 1);
			lua_setfield(L, -2, "too_many_fields");
		}
	}
	lua_pushvalue(L, 5);
	lua_setfield(L, -2, "box");
	b->r = r; /* valid from here until the request is answered */
	lua_call(L, 1, 3);
	return 4;
}

static enum MHD_Result dispatch(struct req *r, const char *url, const char *method,
				const char *version)
{
	static const char fail[] = "{\"code\":\"ServiceFailure\",\"message\":\"simulator error\"}";
	lua_State *L = sim_G.L;
	int top = lua_gettop(L), base;
	struct box *b;

	if (!lua_checkstack(L, 20))
		return plain_error(r, 500, fail);
	lua_pushcfunction(L, sim_traceback);
	base = lua_gettop(L);
	lua_pushcfunction(L, call_handler);
	lua_pushlightuserdata(L, r);
	lua_pushstring(L, url);
	lua_pushstring(L, method);
	lua_pushstring(L, version);
	sim_G.current = NULL;
	if (lua_pcall(L, 4, 4, base) != LUA_OK) {
		/* Lua may have kept the box: it must not reach this request again. */
		if (sim_G.current)
			sim_G.current->r = NULL;
		fprintf(stderr, "ucwa-sim: handler error: %s\n", lua_tostring(L, -1));
		lua_settop(L, top);
		return plain_error(r, 500, fail);
	}
	b = lua_touserdata(L, base + 1);
	if (lua_type(L, base + 2) == LUA_TSTRING) {
		const char *what = lua_tostring(L, base + 2);
		if (strcmp(what, "suspend") == 0) {
			suspend_req(r, base + 1);
			lua_settop(L, top);
			return MHD_YES;
		}
		b->r = NULL;
		lua_settop(L, top);
		return MHD_NO; /* "drop": close without a response */
	}
	b->r = NULL; /* answered now */
	lua_pushcfunction(L, build_response);
	lua_rotate(L, base + 2, 1); /* build_response below its 3 arguments */
	if (lua_pcall(L, 3, 2, base) != LUA_OK) {
		fprintf(stderr, "ucwa-sim: bad handler answer: %s\n", lua_tostring(L, -1));
		lua_settop(L, top);
		return plain_error(r, 500, fail);
	}
	{
		struct MHD_Response *resp = lua_touserdata(L, -2);
		unsigned status = (unsigned)lua_tointeger(L, -1);
		lua_settop(L, top);
		return queue(r, resp, status);
	}
}

/* A request that arrives while the simulator stops: 503, and the connection
 * closes (Lua is not asked, so nothing can be suspended any more). */
static enum MHD_Result refuse_stopping(struct req *r)
{
	static const char body[] = "{\"code\":\"ServiceFailure\",\"message\":\"the simulator is stopping\"}";
	struct MHD_Response *resp = MHD_create_response_from_buffer(
		sizeof body - 1, (void *)body, MHD_RESPMEM_PERSISTENT);
	if (!resp)
		return MHD_NO;
	MHD_add_response_header(resp, "Content-Type", "application/json");
	MHD_add_response_header(resp, "Connection", "close");
	return queue(r, resp, 503);
}

static int is_form(struct MHD_Connection *c)
{
	const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type");
	return ct && strncasecmp(ct, "application/x-www-form-urlencoded", 33) == 0;
}

static int is_token_route(const char *url)
{
	return strncasecmp(url, "/WebTicket/", 11) == 0;
}

/* The body cap of a route.  A form anywhere gets the token service's cap:
 * only the token service reads forms (UCWA routes answer 415). */
static size_t body_limit(struct MHD_Connection *c, const char *url)
{
	if (is_token_route(url) || is_form(c))
		return TOKEN_BODY_LIMIT;
	if (strncmp(url, "/_sim", 5) == 0)
		return CONTROL_BODY_LIMIT;
	return BODY_LIMIT;
}

/* Does the request announce a body over `limit`? */
static int announced_too_large(struct MHD_Connection *c, size_t limit)
{
	const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
	char *end;
	unsigned long long n;

	if (!cl)
		return 0;
	errno = 0;
	n = strtoull(cl, &end, 10);
	return end != cl && (errno == ERANGE || n > limit);
}

enum MHD_Result sim_on_request(void *cls, struct MHD_Connection *c, const char *url,
				  const char *method, const char *version, const char *upload,
				  size_t *upload_size, void **con_cls)
{
	struct req *r = *con_cls;

	if (!r) {
		r = calloc(1, sizeof *r);
		if (!r)
			return MHD_NO;
		r->conn = c;
		r->lst = cls;
		r->box_ref = LUA_NOREF;
		r->limit = body_limit(c, url);
		*con_cls = r;
		if (announced_too_large(c, EARLY_REFUSAL)) {
			/* answered before the body is read (MHD closes the connection after) */
			enum MHD_Result ret;
			r->too_large = 1;
			ret = sim_G.stopping ? refuse_stopping(r) : dispatch(r, url, method, version);
			if (r->state == ST_NEW)
				r->state = ST_DONE;
			return ret;
		}
		if (is_token_route(url) && is_form(c))
			r->pp = MHD_create_post_processor(c, 4096, sim_form_iter, r);
		return MHD_YES;
	}
	switch (r->state) {
	case ST_NEW:
		if (*upload_size) {
			sim_body_append(r, upload, *upload_size);
			if (r->pp && !r->form_bad && !r->too_large &&
			    MHD_post_process(r->pp, upload, *upload_size) != MHD_YES)
				r->form_bad = 1;
			*upload_size = 0;
			return MHD_YES;
		}
		if (sim_G.stopping)
			return refuse_stopping(r);
		return dispatch(r, url, method, version);
	case ST_RESPONSE:
		return queue(r, r->resp, r->status);
	case ST_DROP:
		return MHD_NO;
	case ST_DONE:
		*upload_size = 0;
		return MHD_YES;
	case ST_SUSPENDED:
	default:
		return MHD_YES;
	}
}


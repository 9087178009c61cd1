/*
 * ucwa-sim: a UCWA 2.0 server simulator.
 *
 * The C host: libmicrohttpd in the main thread (epoll, external loop), one
 * embedded lua_State that owns every resource and scenario (the modules in
 * sim/lua/, built in through sim_script.h, which the build generates; the
 * entry point is the module "server"), a self-pipe for SIGTERM/SIGINT.
 *
 * Listeners: the Lua side (server.configure) names the addresses and ports
 * to listen on, one MHD daemon each (a topology's hosts, and their plain-HTTP
 * listeners); every request tells Lua which listener it came in on.
 *
 * Each request is handed to the Lua function `handle(req)` once its body has
 * arrived (or at once, when its Content-Length is absurdly large).  It
 * answers with (status, headers, body), or with "suspend" (the
 * connection is suspended with MHD_suspend_connection, costing nothing until
 * Lua answers it through sim.respond(box, ...)), or with "drop" (the
 * connection is closed without a response).  A suspended connection is
 * watched (EPOLLRDHUP) in an epoll set of its own: when its client goes away
 * it is closed at once and Lua is told (gone(box)), instead of waiting in
 * CLOSE-WAIT until Lua answers it.  Timers live in Lua; the loop
 * asks Lua for the next deadline and sleeps in poll() until then.
 *
 * Stopping: once SIGTERM/SIGINT arrives no request reaches Lua any more (new
 * ones get 503), so none can be suspended again, and every suspended one is
 * closed before MHD_stop_daemon(), which aborts if any is left.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

#include "sim_script.h"

#ifndef UCWA_VERSION
#error "UCWA_VERSION is set by the Makefile from the rockspec (the same as ucwa._VERSION)"
#endif

/* Request bodies are capped per route: the token service and the control
 * API take small ones, UCWA resources up to 4 MiB; forms (the token
 * service's) at most FORM_FIELDS fields. */
#define BODY_LIMIT (4u * 1024u * 1024u)
#define TOKEN_BODY_LIMIT (64u * 1024u)
#define CONTROL_BODY_LIMIT (256u * 1024u)
#define FORM_FIELDS 64
/* A body announced beyond this is refused before it is read (and the
 * connection closed); smaller ones over their cap are read and dropped, and
 * answered 413 once they are in, which every client can read. */
#define EARLY_REFUSAL (64u * 1024u * 1024u)
#define MAX_LISTENERS 64
#define BOX_MT "ucwa-sim.request"

/* ST_DONE: answered before its body arrived; the rest of the body is
 * swallowed. */
enum req_state { ST_NEW, ST_SUSPENDED, ST_RESPONSE, ST_DROP, ST_DONE };

struct form_field {
	char *key;
	char *val;
	size_t len;
	struct form_field *next;
};

struct listener {
	struct MHD_Daemon *d;
	int epfd;
	unsigned port;
	int index; /* 1-based, as Lua numbers them */
	unsigned limit; /* connections */
};

struct req {
	struct MHD_Connection *conn;
	struct listener *lst;
	enum req_state state;
	char *body;
	size_t len, cap, limit;
	int too_large;
	struct MHD_PostProcessor *pp;
	int form_bad, too_many_fields;
	unsigned nfields;
	struct form_field *form;
	MHD_socket fd; /* watched for the client leaving while suspended */
	int watched;
	struct MHD_Response *resp;
	unsigned status;
	struct box *box; /* Lua handle while suspended, or NULL */
	int box_ref;
	struct req *prev, *next; /* list of suspended requests */
};

/* The Lua handle of a suspended request: a full userdata. */
struct box {
	struct req *r;
};

static struct {
	lua_State *L;
	struct listener lst[MAX_LISTENERS];
	int nlst;
	int watch_fd; /* epoll set of the suspended connections' sockets */
	struct req *suspended;
	int sigpipe[2];
	int verbose;
	int resumed; /* a connection was resumed since the last MHD_run */
	int stopping; /* SIGTERM/SIGINT: requests are refused, not dispatched */
	struct box *current; /* the box of the request being dispatched */
	size_t nsuspended;
} G;

static double now_mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* ---- requests ---------------------------------------------------------- */

static void list_remove(struct req *r)
{
	if (r->prev)
		r->prev->next = r->next;
	else if (G.suspended == r)
		G.suspended = r->next;
	if (r->next)
		r->next->prev = r->prev;
	r->prev = r->next = NULL;
}

/* Watches a suspended connection's socket for its client leaving. */
static void watch_add(struct req *r)
{
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
	struct epoll_event ev;

	if (!ci || G.watch_fd < 0)
		return;
	memset(&ev, 0, sizeof ev);
	ev.events = EPOLLRDHUP;
	ev.data.ptr = r;
	r->fd = ci->connect_fd;
	if (epoll_ctl(G.watch_fd, EPOLL_CTL_ADD, r->fd, &ev) == 0)
		r->watched = 1;
}

static void watch_del(struct req *r)
{
	if (r->watched) {
		epoll_ctl(G.watch_fd, EPOLL_CTL_DEL, r->fd, NULL);
		r->watched = 0;
	}
}

static void req_free(struct req *r)
{
	struct form_field *f, *n;

	watch_del(r);
	if (r->state == ST_SUSPENDED)
		list_remove(r);
	if (r->box) {
		r->box->r = NULL;
		r->box = NULL;
		luaL_unref(G.L, LUA_REGISTRYINDEX, r->box_ref);
	}
	if (r->pp)
		MHD_destroy_post_processor(r->pp);
	for (f = r->form; f; f = n) {
		n = f->next;
		free(f->key);
		free(f->val);
		free(f);
	}
	if (r->resp)
		MHD_destroy_response(r->resp);
	free(r->body);
	free(r);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	(void)cls;
	(void)c;
	(void)toe;
	if (*con_cls) {
		req_free(*con_cls);
		*con_cls = NULL;
	}
}

static enum MHD_Result form_iter(void *cls, enum MHD_ValueKind kind, const char *key,
				 const char *filename, const char *content_type,
				 const char *transfer_encoding, const char *data, uint64_t off,
				 size_t size)
{
	struct req *r = cls;
	struct form_field *f = r->form;
	char *nv;

	(void)kind;
	(void)filename;
	(void)content_type;
	(void)transfer_encoding;
	if (!key)
		return MHD_YES;
	/* Continuation of the field being received, or a new one. */
	if (!(f && off > 0 && strcmp(f->key, key) == 0)) {
		if (++r->nfields > FORM_FIELDS) {
			r->too_many_fields = 1;
			return MHD_NO;
		}
		f = calloc(1, sizeof *f);
		if (!f)
			return MHD_NO;
		f->key = strdup(key);
		if (!f->key) {
			free(f);
			return MHD_NO;
		}
		f->next = r->form;
		r->form = f;
	}
	if (f->len + size + 1 > r->limit)
		return MHD_NO;
	nv = realloc(f->val, f->len + size + 1);
	if (!nv)
		return MHD_NO;
	f->val = nv;
	if (size)
		memcpy(f->val + f->len, data, size);
	f->len += size;
	f->val[f->len] = '\0';
	return MHD_YES;
}

static int body_append(struct req *r, const char *data, size_t size)
{
	size_t need;
	char *nb;

	if (r->too_large || r->len + size > r->limit) {
		r->too_large = 1;
		return 0;
	}
	need = r->len + size + 1;
	if (need > r->cap) {
		size_t cap = r->cap ? r->cap : 1024;
		while (cap < need)
			cap *= 2;
		nb = realloc(r->body, cap);
		if (!nb) {
			r->too_large = 1;
			return 0;
		}
		r->body = nb;
		r->cap = cap;
	}
	memcpy(r->body + r->len, data, size);
	r->len += size;
	r->body[r->len] = '\0';
	return 1;
}

/* Percent-decoding of the path and query arguments, in place.  Like MHD's
 * own, except that %00 stays as it is: a NUL would cut the string short. */
static size_t unescape(void *cls, struct MHD_Connection *c, char *s)
{
	char *r = s, *w = s;
	(void)cls;
	(void)c;
	while (*r) {
		int hi, lo;
		if (r[0] == '%' && r[1] && r[2] &&
		    (hi = hexval(r[1])) >= 0 && (lo = hexval(r[2])) >= 0 && (hi | lo) != 0) {
			*w++ = (char)(hi * 16 + lo);
			r += 3;
		} else {
			*w++ = *r++;
		}
	}
	*w = '\0';
	return (size_t)(w - s);
}

/* ---- Lua side: responses ----------------------------------------------- */

/* Builds an MHD response from (status, headers, body) at stack index idx. */
static struct MHD_Response *make_response(lua_State *L, int idx, unsigned *status)
{
	size_t blen = 0;
	const char *body = NULL;
	struct MHD_Response *resp;

	*status = (unsigned)luaL_checkinteger(L, idx);
	if (*status < 100 || *status > 599)
		luaL_error(L, "bad HTTP status %d", (int)*status);
	if (!lua_isnoneornil(L, idx + 2))
		body = luaL_checklstring(L, idx + 2, &blen);
	if (!lua_isnoneornil(L, idx + 1))
		luaL_checktype(L, idx + 1, LUA_TTABLE);
	resp = MHD_create_response_from_buffer(blen, (void *)(body ? body : ""),
					       MHD_RESPMEM_MUST_COPY);
	if (!resp)
		luaL_error(L, "out of memory");
	if (lua_istable(L, idx + 1)) {
		lua_pushnil(L);
		while (lua_next(L, idx + 1)) {
			if (lua_type(L, -2) == LUA_TSTRING) {
				const char *k = lua_tostring(L, -2);
				if (lua_istable(L, -1)) {
					lua_Integer i, n = luaL_len(L, -1);
					for (i = 1; i <= n; i++) {
						lua_geti(L, -1, i);
						if (lua_isstring(L, -1))
							MHD_add_response_header(resp, k, lua_tostring(L, -1));
						lua_pop(L, 1);
					}
				} else if (lua_isstring(L, -1)) {
					MHD_add_response_header(resp, k, lua_tostring(L, -1));
				}
			}
			lua_pop(L, 1);
		}
	}
	return resp;
}

static struct box *check_box(lua_State *L)
{
	return luaL_checkudata(L, 1, BOX_MT);
}

/* The box's request if it still waits for an answer, else NULL. */
static struct req *suspended_req(lua_State *L)
{
	struct box *b = check_box(L);

	return b->r && b->r->state == ST_SUSPENDED ? b->r : NULL;
}

/* Takes a suspended request off the list and has MHD resume it as `state`. */
static void resume_as(struct req *r, enum req_state state)
{
	watch_del(r);
	list_remove(r);
	G.nsuspended--;
	r->state = state;
	MHD_resume_connection(r->conn);
	G.resumed = 1;
}

/* sim.respond(box, status, headers, body) -> true, or false if the request is gone */
static int l_respond(lua_State *L)
{
	struct req *r = suspended_req(L);

	if (r) {
		unsigned status;
		/* may raise a Lua error: build it before touching r */
		struct MHD_Response *resp = make_response(L, 2, &status);

		r->resp = resp;
		r->status = status;
		resume_as(r, ST_RESPONSE);
	}
	lua_pushboolean(L, r != NULL);
	return 1;
}

/* sim.drop(box): close the connection without a response. */
static int l_drop(lua_State *L)
{
	struct req *r = suspended_req(L);

	if (r)
		resume_as(r, ST_DROP);
	lua_pushboolean(L, r != NULL);
	return 1;
}

static int l_now(lua_State *L)
{
	lua_pushnumber(L, now_mono());
	return 1;
}

static int l_wallclock(lua_State *L)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	lua_pushinteger(L, (lua_Integer)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
	return 1;
}

/* Wall-clock seconds with microseconds, for latency measurements across
 * processes on one host (the control API reports when it released events). */
static int l_wall_seconds(lua_State *L)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	lua_pushnumber(L, (double)ts.tv_sec + (double)ts.tv_nsec / 1e9);
	return 1;
}

static int l_random(lua_State *L)
{
	/* n random bytes as lowercase hex, from /dev/urandom (tokens, ids). */
	lua_Integer n = luaL_checkinteger(L, 1);
	unsigned char buf[64];
	char hex[129];
	static const char digits[] = "0123456789abcdef";
	FILE *f;
	lua_Integer i;

	if (n < 1 || n > 64)
		return luaL_error(L, "random: 1..64 bytes");
	f = fopen("/dev/urandom", "rb");
	if (!f || fread(buf, 1, (size_t)n, f) != (size_t)n) {
		if (f)
			fclose(f);
		for (i = 0; i < n; i++)
			buf[i] = (unsigned char)(rand() & 0xff);
	} else {
		fclose(f);
	}
	for (i = 0; i < n; i++) {
		hex[2 * i] = digits[buf[i] >> 4];
		hex[2 * i + 1] = digits[buf[i] & 15];
	}
	lua_pushlstring(L, hex, (size_t)(2 * n));
	return 1;
}

static int l_suspended_count(lua_State *L)
{
	lua_pushinteger(L, (lua_Integer)G.nsuspended);
	return 1;
}

static unsigned open_connections(struct listener *l)
{
	const union MHD_DaemonInfo *info =
		MHD_get_daemon_info(l->d, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
	return info ? info->num_connections : 0;
}

/* Open connections, on every listener. */
static int l_connections(lua_State *L)
{
	lua_Integer total = 0;
	int i;

	for (i = 0; i < G.nlst; i++)
		total += (lua_Integer)open_connections(&G.lst[i]);
	lua_pushinteger(L, total);
	return 1;
}

static int l_log(lua_State *L)
{
	if (G.verbose)
		fprintf(stderr, "ucwa-sim: %s\n", luaL_checkstring(L, 1));
	return 0;
}

void ucwa_open_multipart(lua_State *L); /* src/multipart.c, compiled in */
void ucwa_open_target(lua_State *L);    /* sim/target.c: a batch part's target */
static const luaL_Reg sim_funcs[] = {
	{"respond", l_respond},
	{"drop", l_drop},
	{"now", l_now},
	{"wallclock", l_wallclock},
	{"wall_seconds", l_wall_seconds},
	{"random", l_random},
	{"suspended", l_suspended_count},
	{"connections", l_connections},
	{"log", l_log},
	{NULL, NULL},
};

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

static int traceback(lua_State *L)
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
	struct MHD_Response *resp = make_response(L, 1, &status);
	lua_pushlightuserdata(L, resp);
	lua_pushinteger(L, (lua_Integer)status);
	return 2;
}

static void suspend_req(struct req *r, int box_idx)
{
	lua_State *L = G.L;

	r->state = ST_SUSPENDED;
	r->box = lua_touserdata(L, box_idx);
	lua_pushvalue(L, box_idx);
	r->box_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	r->next = G.suspended;
	if (G.suspended)
		G.suspended->prev = r;
	G.suspended = r;
	G.nsuspended++;
	MHD_suspend_connection(r->conn);
	watch_add(r);
}

/* The client of a suspended request went away: the connection is closed
 * now, and Lua's gone(box) learns that nobody waits for that answer. */
static void peer_gone(struct req *r)
{
	lua_State *L = G.L;
	struct box *b = r->box;
	int base;

	if (r->state != ST_SUSPENDED)
		return;
	lua_pushcfunction(L, traceback);
	base = lua_gettop(L);
	lua_getfield(L, LUA_REGISTRYINDEX, "ucwa-sim.gone");
	lua_rawgeti(L, LUA_REGISTRYINDEX, r->box_ref);
	resume_as(r, ST_DROP);
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
	G.current = b;
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
	lua_State *L = G.L;
	int top = lua_gettop(L), base;
	struct box *b;

	if (!lua_checkstack(L, 20))
		return plain_error(r, 500, fail);
	lua_pushcfunction(L, traceback);
	base = lua_gettop(L);
	lua_pushcfunction(L, call_handler);
	lua_pushlightuserdata(L, r);
	lua_pushstring(L, url);
	lua_pushstring(L, method);
	lua_pushstring(L, version);
	G.current = NULL;
	if (lua_pcall(L, 4, 4, base) != LUA_OK) {
		/* Lua may have kept the box: it must not reach this request again. */
		if (G.current)
			G.current->r = NULL;
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

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
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
			ret = G.stopping ? refuse_stopping(r) : dispatch(r, url, method, version);
			if (r->state == ST_NEW)
				r->state = ST_DONE;
			return ret;
		}
		if (is_token_route(url) && is_form(c))
			r->pp = MHD_create_post_processor(c, 4096, form_iter, r);
		return MHD_YES;
	}
	switch (r->state) {
	case ST_NEW:
		if (*upload_size) {
			body_append(r, upload, *upload_size);
			if (r->pp && !r->form_bad && !r->too_large &&
			    MHD_post_process(r->pp, upload, *upload_size) != MHD_YES)
				r->form_bad = 1;
			*upload_size = 0;
			return MHD_YES;
		}
		if (G.stopping)
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

/* ---- main loop ----------------------------------------------------------- */

static void on_signal(int sig)
{
	int saved = errno;
	char c = (char)sig;
	if (write(G.sigpipe[1], &c, 1) < 0) {
		/* nothing to do: the pipe is full, a stop is already pending */
	}
	errno = saved;
}

static char *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	long n;

	if (!f)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
		buf = malloc((size_t)n + 1);
		if (buf && fread(buf, 1, (size_t)n, f) == (size_t)n) {
			buf[n] = '\0';
			if (len)
				*len = (size_t)n;
		} else {
			free(buf);
			buf = NULL;
		}
	}
	fclose(f);
	return buf;
}

static void usage(FILE *out)
{
	fputs(
"usage: ucwa-sim [options]\n"
"A UCWA 2.0 (Skype for Business) server simulator. Prints its autodiscover root\n"
"URL as the first line of stdout, then a line 'host NAME URL [HTTP-URL]' for each\n"
"host it serves (URLs by address) and an empty line; serves until SIGTERM/SIGINT,\n"
"then exits 0.\n"
"\n"
"  --port N               TCP port (default 0: any free port)\n"
"  --host ADDR            IPv4 address to listen on (default 127.0.0.1)\n"
"  --topology T           several hosts in one process, each on its own address:\n"
"                         a preset (pool, redirect-user, redirect-user-root,\n"
"                         redirect-root, hybrid), a JSON file, or inline JSON\n"
"                         (see sim/README.md); --host and --port are then unused\n"
"  --cert FILE            PEM certificate: serve HTTPS (needs --key)\n"
"  --key FILE             PEM private key for --cert\n"
"  --directory FILE       JSON file with users, meetings and token scopes\n"
"                         (replaces the default directory; see sim/README.md)\n"
"  --max-version N        resource version hosts honour in\n"
"                         X-MS-RequiresMinResourceVersion (default 2)\n"
"  --token-lifetime S     lifetime of password-grant tokens (default 28800)\n"
"  --anon-token-lifetime S  lifetime of anonymous meeting tokens (default 3600)\n"
"  --app-idle S           an application with no request and no pending GET\n"
"                         for S seconds expires (default 900)\n"
"  --resume-after S       a P-GET after S seconds without one gets a 'resume'\n"
"                         link instead of 'next' (default 600)\n"
"  --pget-timeout S       default P-GET timeout (default 180)\n"
"  --min-timeout S        smallest accepted 'timeout' query value (default 180;\n"
"                         smaller values are raised to it; tests use 0.1)\n"
"  --min-aggregation S    smallest accepted 'low'/'medium' value (default 5)\n"
"  --step-delay S         delay between the steps of a scenario, e.g. started ->\n"
"                         lobby -> completed (default 0.05)\n"
"  --lobby-timeout S      a join waiting in the lobby fails after S (default 900)\n"
"  --invite-timeout S     an incoming invitation not answered fails after S\n"
"                         (default 60)\n"
"  --typing-timeout S     a participant stops typing S after its last\n"
"                         setIsTyping (default 5)\n"
"  --connection-timeout S a connection idle (or stalled mid-request) for S whole\n"
"                         seconds is closed; held P-GETs are not idle (default\n"
"                         120, 0: never)\n"
"  --max-connections N    open connections per listener (default 20000, fewer\n"
"                         if the descriptor limit is lower)\n"
"  --auto-admit           admit lobby participants at once (no lobby wait)\n"
"  --no-control           disable the /_sim control API\n"
"  --script-dir DIR       load the Lua modules (server.lua, ...) from DIR\n"
"                         instead of the built-in copy (e.g. sim/lua)\n"
"  --verbose              log requests and errors to stderr\n"
"  --version              the version, then exit\n"
"  --help                 this text\n",
		out);
}

struct opts {
	const char *host;
	int port;
	const char *cert, *key;
	const char *script_dir;
	long conn_timeout; /* seconds, 0: none */
	long max_conns;    /* per listener, 0: from the descriptor limit */
};

/* A whole number in lo..hi for option `name`, or -1 (and a message). */
static long whole(const char *name, const char *v, long lo, long hi)
{
	char *end;
	long n;

	errno = 0;
	n = strtol(v, &end, 10);
	if (!*v || *end || errno || n < lo || n > hi) {
		fprintf(stderr, "ucwa-sim: bad value for --%s: '%s' (a whole number, %ld to %ld)\n", name, v,
			lo, hi);
		return -1;
	}
	return n;
}

/* Lua-side options: name -> value (string) in a table at the top of the stack. */
static int parse_args(int argc, char **argv, struct opts *o, lua_State *L)
{
	static const struct option longopts[] = {
		{"port", required_argument, 0, 'p'},
		{"host", required_argument, 0, 'H'},
		{"cert", required_argument, 0, 'c'},
		{"key", required_argument, 0, 'k'},
		{"script-dir", required_argument, 0, 's'},
		{"connection-timeout", required_argument, 0, 't'},
		{"max-connections", required_argument, 0, 'm'},
		{"verbose", no_argument, 0, 'v'},
		{"help", no_argument, 0, 'h'},
		{"version", no_argument, 0, 'V'},
		{"topology", required_argument, 0, 1},
		{"directory", required_argument, 0, 1},
		{"max-version", required_argument, 0, 1},
		{"token-lifetime", required_argument, 0, 1},
		{"anon-token-lifetime", required_argument, 0, 1},
		{"app-idle", required_argument, 0, 1},
		{"resume-after", required_argument, 0, 1},
		{"pget-timeout", required_argument, 0, 1},
		{"min-timeout", required_argument, 0, 1},
		{"min-aggregation", required_argument, 0, 1},
		{"step-delay", required_argument, 0, 1},
		{"lobby-timeout", required_argument, 0, 1},
		{"invite-timeout", required_argument, 0, 1},
		{"typing-timeout", required_argument, 0, 1},
		{"auto-admit", no_argument, 0, 2},
		{"no-control", no_argument, 0, 2},
		{0, 0, 0, 0},
	};
	int ch, idx = 0;

	while ((ch = getopt_long(argc, argv, "hv", longopts, &idx)) != -1) {
		switch (ch) {
		case 'p': {
			long p = whole("port", optarg, 0, 65535);
			if (p < 0)
				return 2;
			o->port = (int)p;
			break;
		}
		case 'H': o->host = optarg; break;
		case 'c': o->cert = optarg; break;
		case 'k': o->key = optarg; break;
		case 's': o->script_dir = optarg; break;
		case 't':
			if ((o->conn_timeout = whole("connection-timeout", optarg, 0, 86400)) < 0)
				return 2;
			break;
		case 'm':
			if ((o->max_conns = whole("max-connections", optarg, 1, 1000000)) < 0)
				return 2;
			break;
		case 'v': G.verbose = 1; break;
		case 'h': usage(stdout); return 1;
		case 'V':
			printf("ucwa-sim %s\nlibmicrohttpd %s, %s\n", UCWA_VERSION, MHD_get_version(),
			       LUA_RELEASE);
			return 1;
		case 1:
			lua_pushstring(L, optarg);
			lua_setfield(L, -2, longopts[idx].name);
			break;
		case 2:
			lua_pushboolean(L, 1);
			lua_setfield(L, -2, longopts[idx].name);
			break;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "ucwa-sim: unexpected argument %s\n", argv[optind]);
		return 2;
	}
	if ((o->cert == NULL) != (o->key == NULL)) {
		fprintf(stderr, "ucwa-sim: --cert and --key go together\n");
		return 2;
	}
	/* what Lua needs of the C options to name its listeners */
	lua_pushstring(L, o->host);
	lua_setfield(L, -2, "host");
	lua_pushinteger(L, o->port);
	lua_setfield(L, -2, "port");
	lua_pushboolean(L, o->cert != NULL);
	lua_setfield(L, -2, "tls");
	return 0;
}

static int load_scripts(lua_State *L, const char *dir)
{
	size_t i;

	if (dir) {
		lua_getglobal(L, "package");
		lua_pushfstring(L, "%s/?.lua", dir);
		lua_setfield(L, -2, "path");
		lua_pop(L, 1);
		return 0;
	}
	lua_getglobal(L, "package");
	lua_getfield(L, -1, "preload");
	for (i = 0; i < sizeof sim_scripts / sizeof sim_scripts[0]; i++) {
		char chunk[128];
		snprintf(chunk, sizeof chunk, "=%s.lua", sim_scripts[i].name);
		if (luaL_loadbuffer(L, sim_scripts[i].src, sim_scripts[i].len, chunk) != LUA_OK) {
			fprintf(stderr, "ucwa-sim: %s\n", lua_tostring(L, -1));
			lua_pop(L, 3);
			return -1;
		}
		lua_setfield(L, -2, sim_scripts[i].name);
	}
	lua_pop(L, 2);
	return 0;
}

/* Raises the descriptor limit to its hard limit; returns the limit now. */
static long raise_nofile(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return 1024;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
		getrlimit(RLIMIT_NOFILE, &rl);
	}
	return rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > 10000000 ? 10000000 : (long)rl.rlim_cur;
}

/* Calls Lua tick(): runs due timers; returns seconds to the next one, or -1. */
static double lua_tick(lua_State *L)
{
	double next = -1;
	int base;

	lua_pushcfunction(L, traceback);
	base = lua_gettop(L);
	lua_getfield(L, LUA_REGISTRYINDEX, "ucwa-sim.tick");
	if (lua_pcall(L, 0, 1, base) != LUA_OK) {
		fprintf(stderr, "ucwa-sim: timer error: %s\n", lua_tostring(L, -1));
		next = 0.01;
	} else if (lua_isnumber(L, -1)) {
		next = lua_tonumber(L, -1);
	}
	lua_settop(L, base - 1);
	return next;
}

/* One MHD run of every listener.  A listener at its connection limit has
 * taken its listening socket out of its epoll set, and puts it back only at
 * the start of a run once below the limit: then it is run again at once
 * (G.resumed), not after a sleep that no event would end. */
static void run_all(void)
{
	int i;
	for (i = 0; i < G.nlst; i++) {
		int full = open_connections(&G.lst[i]) >= G.lst[i].limit;
		MHD_run(G.lst[i].d);
		if (full)
			G.resumed = 1;
	}
}

/* Stops serving, so that MHD_stop_daemon() finds no suspended connection:
 * no new connection is accepted, no request reaches Lua any more (so none is
 * suspended again), every suspended one is closed, and MHD gets a few runs
 * to act on that and to send the answers already queued.  Then stops every
 * daemon and closes its listening socket. */
static void stop_serving(void)
{
	MHD_socket fds[MAX_LISTENERS];
	struct req *r;
	int i;

	G.stopping = 1;
	for (i = 0; i < G.nlst; i++)
		fds[i] = MHD_quiesce_daemon(G.lst[i].d);
	while ((r = G.suspended) != NULL) {
		watch_del(r);
		list_remove(r);
		G.nsuspended--;
		r->state = ST_DROP;
		MHD_resume_connection(r->conn);
	}
	for (i = 0; i < 3; i++)
		run_all();
	for (i = 0; i < G.nlst; i++) {
		MHD_stop_daemon(G.lst[i].d);
		G.lst[i].d = NULL;
		if (fds[i] != MHD_INVALID_SOCKET)
			close(fds[i]);
	}
	G.nlst = 0;
}

/* Calls server.<fn>(arg), the argument at the top of the stack, under a
 * traceback.  Returns 0 with the two results in the argument's place, or 1
 * (a Lua error) or 2 (the function answered nil, message); then the message
 * is printed and the argument popped. */
static int call_server(lua_State *L, const char *fn)
{
	int arg = lua_gettop(L);

	lua_pushcfunction(L, traceback);
	lua_getfield(L, LUA_REGISTRYINDEX, "ucwa-sim.server");
	lua_getfield(L, -1, fn);
	lua_pushvalue(L, arg);
	if (lua_pcall(L, 1, 2, arg + 1) != LUA_OK) {
		fprintf(stderr, "ucwa-sim: %s\n", lua_tostring(L, -1));
		lua_settop(L, arg - 1);
		return 1;
	}
	if (!lua_toboolean(L, -2)) {
		fprintf(stderr, "ucwa-sim: %s\n", luaL_optstring(L, -1, "cannot start"));
		lua_settop(L, arg - 1);
		return 2;
	}
	lua_remove(L, arg + 2); /* the server table */
	lua_remove(L, arg + 1); /* the traceback */
	lua_remove(L, arg);
	return 0;
}

/* Starts one MHD daemon for the listener description at the top of the
 * stack ({address=, port=, tls=}).  Returns 0, or 1 (message printed). */
static int start_listener(lua_State *L, const struct opts *o, const char *cert, const char *key,
			  long max_conns)
{
	struct listener *l;
	struct sockaddr_in sa;
	const union MHD_DaemonInfo *info;
	const char *addr;
	lua_Integer port;
	int tls;
	unsigned flags;

	if (G.nlst >= MAX_LISTENERS) {
		fprintf(stderr, "ucwa-sim: at most %d listeners\n", MAX_LISTENERS);
		return 1;
	}
	lua_getfield(L, -1, "address");
	addr = lua_tostring(L, -1);
	lua_getfield(L, -2, "port");
	port = lua_tointeger(L, -1);
	lua_getfield(L, -3, "tls");
	tls = lua_toboolean(L, -1);
	lua_pop(L, 3); /* addr stays referenced from the table */
	memset(&sa, 0, sizeof sa);
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)port);
	if (!addr || inet_pton(AF_INET, addr, &sa.sin_addr) != 1) {
		fprintf(stderr, "ucwa-sim: bad address %s\n", addr ? addr : "(none)");
		return 1;
	}
	l = &G.lst[G.nlst];
	memset(l, 0, sizeof *l);
	l->index = G.nlst + 1;
	l->limit = (unsigned)max_conns;
	flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME;
	if (G.verbose)
		flags |= MHD_USE_ERROR_LOG;
	if (tls)
		flags |= MHD_USE_TLS;
	{
		/* TLS options only when serving HTTPS; the array ends at its END item */
		struct MHD_OptionItem tls_opts[] = {
			{ MHD_OPTION_HTTPS_MEM_KEY, 0, (void *)key },
			{ MHD_OPTION_HTTPS_MEM_CERT, 0, (void *)cert },
			{ MHD_OPTION_END, 0, NULL },
		};
		l->d = MHD_start_daemon(flags, 0, NULL, NULL, on_request, l,
			MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
			MHD_OPTION_CONNECTION_LIMIT, (unsigned)max_conns,
			MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)o->conn_timeout,
			MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)4096,
			MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
			MHD_OPTION_UNESCAPE_CALLBACK, unescape, NULL,
			MHD_OPTION_ARRAY, tls ? tls_opts : &tls_opts[2],
			MHD_OPTION_END);
	}
	if (!l->d) {
		fprintf(stderr, "ucwa-sim: cannot listen on %s:%d\n", addr, (int)port);
		return 1;
	}
	info = MHD_get_daemon_info(l->d, MHD_DAEMON_INFO_BIND_PORT);
	l->port = info ? (unsigned)info->port : (unsigned)port;
	info = MHD_get_daemon_info(l->d, MHD_DAEMON_INFO_EPOLL_FD);
	l->epfd = info ? info->epoll_fd : -1;
	G.nlst++;
	lua_pop(L, 1); /* the description */
	return 0;
}

/* The peers of suspended connections that went away. */
static void check_watched(void)
{
	struct epoll_event evs[64];
	int i, n;

	do {
		n = epoll_wait(G.watch_fd, evs, 64, 0);
		for (i = 0; i < n; i++)
			peer_gone(evs[i].data.ptr);
	} while (n == 64);
}

int main(int argc, char **argv)
{
	struct opts o = {"127.0.0.1", 0, NULL, NULL, NULL, 120, 0};
	char *cert = NULL, *key = NULL;
	int rc, stop = 0, status = 0, i;
	long nofile;
	lua_State *L;

	G.sigpipe[0] = G.sigpipe[1] = -1;
	G.watch_fd = -1;
	L = luaL_newstate();
	if (!L) {
		fputs("ucwa-sim: cannot create Lua state\n", stderr);
		return 1;
	}
	G.L = L;
	luaL_openlibs(L);
	lua_newtable(L); /* options for Lua */
	rc = parse_args(argc, argv, &o, L);
	if (rc) {
		lua_close(L);
		return rc == 1 ? 0 : 2;
	}
	if (load_scripts(L, o.script_dir) != 0) {
		lua_close(L);
		return 1;
	}

	/* The sim module: host functions for Lua. */
	luaL_newmetatable(L, BOX_MT);
	lua_pop(L, 1);
	lua_newtable(L);
	luaL_setfuncs(L, sim_funcs, 0);
	ucwa_open_multipart(L); /* host.multipart_build/_parse: src/multipart.c */
	ucwa_open_target(L);    /* host.target_decode: sim/target.c */
	lua_pushboolean(L, G.verbose); /* host.verbose: log lines are built only then */
	lua_setfield(L, -2, "verbose");
	lua_getglobal(L, "package");
	lua_getfield(L, -1, "loaded");
	lua_pushvalue(L, -3);
	lua_setfield(L, -2, "ucwasim.host");
	lua_pop(L, 3); /* loaded, package, sim table */

	/* The Lua side: require "server" returns { configure=, start=, handle=,
	 * gone=, tick= }.  configure(options) checks the options and names the
	 * listeners, or answers nil and a message for a bad option (exit 2). */
	{
		int base;
		lua_pushcfunction(L, traceback);
		base = lua_gettop(L);
		lua_getglobal(L, "require");
		lua_pushstring(L, "server");
		if (lua_pcall(L, 1, 1, base) != LUA_OK) {
			fprintf(stderr, "ucwa-sim: %s\n", lua_tostring(L, -1));
			lua_close(L);
			return 1;
		}
		lua_getfield(L, -1, "handle");
		lua_setfield(L, LUA_REGISTRYINDEX, "ucwa-sim.handle");
		lua_getfield(L, -1, "tick");
		lua_setfield(L, LUA_REGISTRYINDEX, "ucwa-sim.tick");
		lua_getfield(L, -1, "gone");
		lua_setfield(L, LUA_REGISTRYINDEX, "ucwa-sim.gone");
		lua_setfield(L, LUA_REGISTRYINDEX, "ucwa-sim.server");
		lua_settop(L, base - 1); /* the options table */
	}
	rc = call_server(L, "configure"); /* the options -> listeners, nil */
	if (rc) {
		lua_close(L);
		return rc == 2 ? 2 : 1;
	}
	lua_pop(L, 1); /* the listeners table stays */

	if (o.cert) {
		if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
			fputs("ucwa-sim: this libmicrohttpd has no TLS support\n", stderr);
			lua_close(L);
			return 1;
		}
		cert = read_file(o.cert, NULL);
		key = read_file(o.key, NULL);
		if (!cert || !key) {
			fprintf(stderr, "ucwa-sim: cannot read %s\n", cert ? o.key : o.cert);
			free(cert);
			free(key);
			lua_close(L);
			return 1;
		}
	}

	nofile = raise_nofile();
	signal(SIGPIPE, SIG_IGN);
	if (pipe(G.sigpipe) != 0) {
		perror("ucwa-sim: pipe");
		status = 1;
		goto out;
	}
	fcntl(G.sigpipe[0], F_SETFL, O_NONBLOCK);
	fcntl(G.sigpipe[1], F_SETFL, O_NONBLOCK);
	fcntl(G.sigpipe[0], F_SETFD, FD_CLOEXEC);
	fcntl(G.sigpipe[1], F_SETFD, FD_CLOEXEC);
	G.watch_fd = epoll_create1(EPOLL_CLOEXEC);
	{
		struct sigaction act;
		memset(&act, 0, sizeof act);
		act.sa_handler = on_signal;
		sigemptyset(&act.sa_mask);
		sigaction(SIGTERM, &act, NULL);
		sigaction(SIGINT, &act, NULL);
	}

	{
		/* one daemon per listener; the connection limit keeps descriptors for
		 * the rest of the process whatever the limit */
		lua_Integer n = luaL_len(L, -1);
		long per = o.max_conns;
		if (n < 1)
			n = 1;
		if (!per) {
			per = (nofile - 64) / (long)n;
			if (per > 20000)
				per = 20000;
			if (per < 16)
				per = 16;
		}
		for (i = 1; i <= n; i++) {
			lua_geti(L, -1, i);
			if (start_listener(L, &o, cert, key, per)) {
				status = 1;
				goto out;
			}
		}
		lua_pop(L, 1);
	}

	/* start(ports) answers what to print: the root URL, the hosts */
	lua_createtable(L, G.nlst, 0);
	for (i = 0; i < G.nlst; i++) {
		lua_pushinteger(L, (lua_Integer)G.lst[i].port);
		lua_rawseti(L, -2, i + 1);
	}
	rc = call_server(L, "start");
	if (rc) {
		status = rc == 2 ? 2 : 1;
		goto out;
	}
	fputs(lua_tostring(L, -2), stdout);
	fflush(stdout);
	lua_pop(L, 2);

	while (!stop) {
		struct pollfd p[MAX_LISTENERS + 2];
		double lt = lua_tick(L);
		long ms = -1;

		for (i = 0; i < G.nlst; i++) {
			MHD_UNSIGNED_LONG_LONG mto;
			if (MHD_get_timeout(G.lst[i].d, &mto) == MHD_YES) {
				long m = mto > 60000 ? 60000 : (long)mto;
				if (ms < 0 || m < ms)
					ms = m;
			}
			p[i].fd = G.lst[i].epfd;
			p[i].events = POLLIN;
		}
		if (lt >= 0) {
			long lms = (long)(lt * 1000.0 + 0.999);
			if (ms < 0 || lms < ms)
				ms = lms;
		}
		if (G.resumed) {
			/* resumed connections are processed by the next MHD_run */
			G.resumed = 0;
			ms = 0;
		}
		p[G.nlst].fd = G.watch_fd;
		p[G.nlst].events = POLLIN;
		p[G.nlst + 1].fd = G.sigpipe[0];
		p[G.nlst + 1].events = POLLIN;
		if (poll(p, (nfds_t)G.nlst + 2, (int)ms) < 0 && errno != EINTR) {
			perror("ucwa-sim: poll");
			status = 1;
			break;
		}
		if (p[G.nlst + 1].revents & POLLIN)
			stop = 1;
		if (p[G.nlst].revents & POLLIN)
			check_watched();
		run_all();
	}

out:
	if (G.nlst)
		stop_serving();
	lua_close(L);
	free(cert);
	free(key);
	if (G.watch_fd >= 0)
		close(G.watch_fd);
	if (G.sigpipe[0] >= 0) {
		close(G.sigpipe[0]);
		close(G.sigpipe[1]);
	}
	return status;
}

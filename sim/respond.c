/* ucwa-sim: the Lua side, responses and the host.* functions. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "sim.h"

static double now_mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- Lua side: responses ----------------------------------------------- */

/* Builds an MHD response from (status, headers, body) at stack index idx. */
struct MHD_Response *sim_make_response(lua_State *L, int idx, unsigned *status)
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
void sim_resume_as(struct req *r, enum req_state state)
{
	sim_watch_del(r);
	sim_list_remove(r);
	sim_G.nsuspended--;
	r->state = state;
	MHD_resume_connection(r->conn);
	sim_G.resumed = 1;
}

/* sim.respond(box, status, headers, body) -> true, or false if the request is gone */
static int l_respond(lua_State *L)
{
	struct req *r = suspended_req(L);

	if (r) {
		unsigned status;
		/* may raise a Lua error: build it before touching r */
		struct MHD_Response *resp = sim_make_response(L, 2, &status);

		r->resp = resp;
		r->status = status;
		sim_resume_as(r, ST_RESPONSE);
	}
	lua_pushboolean(L, r != NULL);
	return 1;
}

/* sim.drop(box): close the connection without a response. */
static int l_drop(lua_State *L)
{
	struct req *r = suspended_req(L);

	if (r)
		sim_resume_as(r, ST_DROP);
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

/* n random bytes from the kernel (getrandom: no file opened and no 4 KB
 * buffered read of /dev/urandom for every token and id); rand() if that
 * fails. */
static void random_bytes(unsigned char *buf, size_t n)
{
	size_t got = 0;

	while (got < n) {
		ssize_t r = getrandom(buf + got, n - got, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	for (; got < n; got++)
		buf[got] = (unsigned char)(rand() & 0xff);
}

static int l_random(lua_State *L)
{
	/* n random bytes as lowercase hex (tokens, ids). */
	lua_Integer n = luaL_checkinteger(L, 1);
	unsigned char buf[64];
	char hex[129];
	static const char digits[] = "0123456789abcdef";
	lua_Integer i;

	if (n < 1 || n > 64)
		return luaL_error(L, "random: 1..64 bytes");
	random_bytes(buf, (size_t)n);
	for (i = 0; i < n; i++) {
		hex[2 * i] = digits[buf[i] >> 4];
		hex[2 * i + 1] = digits[buf[i] & 15];
	}
	lua_pushlstring(L, hex, (size_t)(2 * n));
	return 1;
}

static int l_suspended_count(lua_State *L)
{
	lua_pushinteger(L, (lua_Integer)sim_G.nsuspended);
	return 1;
}

unsigned sim_open_connections(struct listener *l)
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

	for (i = 0; i < sim_G.nlst; i++)
		total += (lua_Integer)sim_open_connections(&sim_G.lst[i]);
	lua_pushinteger(L, total);
	return 1;
}

static int l_log(lua_State *L)
{
	if (sim_G.verbose)
		fprintf(stderr, "ucwa-sim: %s\n", luaL_checkstring(L, 1));
	return 0;
}

const luaL_Reg sim_funcs[] = {
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


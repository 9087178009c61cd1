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

#include "sim.h"

struct sim_globals sim_G;

/* ---- main loop ----------------------------------------------------------- */

static void on_signal(int sig)
{
	int saved = errno;
	char c = (char)sig;
	if (write(sim_G.sigpipe[1], &c, 1) < 0) {
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
		case 'v': sim_G.verbose = 1; break;
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

	lua_pushcfunction(L, sim_traceback);
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
 * (sim_G.resumed), not after a sleep that no event would end. */
static void run_all(void)
{
	int i;
	for (i = 0; i < sim_G.nlst; i++) {
		int full = sim_open_connections(&sim_G.lst[i]) >= sim_G.lst[i].limit;
		MHD_run(sim_G.lst[i].d);
		if (full)
			sim_G.resumed = 1;
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

	sim_G.stopping = 1;
	for (i = 0; i < sim_G.nlst; i++)
		fds[i] = MHD_quiesce_daemon(sim_G.lst[i].d);
	while ((r = sim_G.suspended) != NULL) {
		sim_watch_del(r);
		sim_list_remove(r);
		sim_G.nsuspended--;
		r->state = ST_DROP;
		MHD_resume_connection(r->conn);
	}
	for (i = 0; i < 3; i++)
		run_all();
	for (i = 0; i < sim_G.nlst; i++) {
		MHD_stop_daemon(sim_G.lst[i].d);
		sim_G.lst[i].d = NULL;
		if (fds[i] != MHD_INVALID_SOCKET)
			close(fds[i]);
	}
	sim_G.nlst = 0;
}

/* Calls server.<fn>(arg), the argument at the top of the stack, under a
 * traceback.  Returns 0 with the two results in the argument's place, or 1
 * (a Lua error) or 2 (the function answered nil, message); then the message
 * is printed and the argument popped. */
static int call_server(lua_State *L, const char *fn)
{
	int arg = lua_gettop(L);

	lua_pushcfunction(L, sim_traceback);
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

	if (sim_G.nlst >= MAX_LISTENERS) {
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
	l = &sim_G.lst[sim_G.nlst];
	memset(l, 0, sizeof *l);
	l->index = sim_G.nlst + 1;
	l->limit = (unsigned)max_conns;
	flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME;
	if (sim_G.verbose)
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
		l->d = MHD_start_daemon(flags, 0, NULL, NULL, sim_on_request, l,
			MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
			MHD_OPTION_CONNECTION_LIMIT, (unsigned)max_conns,
			MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)o->conn_timeout,
			MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)4096,
			MHD_OPTION_NOTIFY_COMPLETED, sim_on_completed, NULL,
			MHD_OPTION_UNESCAPE_CALLBACK, sim_unescape, NULL,
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
	sim_G.nlst++;
	lua_pop(L, 1); /* the description */
	return 0;
}

/* The peers of suspended connections that went away. */
static void check_watched(void)
{
	struct epoll_event evs[64];
	int i, n;

	do {
		n = epoll_wait(sim_G.watch_fd, evs, 64, 0);
		for (i = 0; i < n; i++)
			sim_peer_gone(evs[i].data.ptr);
	} while (n == 64);
}

int main(int argc, char **argv)
{
	struct opts o = {"127.0.0.1", 0, NULL, NULL, NULL, 120, 0};
	char *cert = NULL, *key = NULL;
	int rc, stop = 0, status = 0, i;
	long nofile;
	lua_State *L;

	sim_G.sigpipe[0] = sim_G.sigpipe[1] = -1;
	sim_G.watch_fd = -1;
	L = luaL_newstate();
	if (!L) {
		fputs("ucwa-sim: cannot create Lua state\n", stderr);
		return 1;
	}
	sim_G.L = L;
	/* Generational GC: each request's tables and strings die young, while
	 * the state of thousands of applications lives on; incremental cycles
	 * over that whole heap cost a quarter of the CPU of 10,000 sign-ins. */
	lua_gc(L, LUA_GCGEN, 0, 0);
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
	lua_pushboolean(L, sim_G.verbose); /* host.verbose: log lines are built only then */
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
		lua_pushcfunction(L, sim_traceback);
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
	if (pipe(sim_G.sigpipe) != 0) {
		perror("ucwa-sim: pipe");
		status = 1;
		goto out;
	}
	fcntl(sim_G.sigpipe[0], F_SETFL, O_NONBLOCK);
	fcntl(sim_G.sigpipe[1], F_SETFL, O_NONBLOCK);
	fcntl(sim_G.sigpipe[0], F_SETFD, FD_CLOEXEC);
	fcntl(sim_G.sigpipe[1], F_SETFD, FD_CLOEXEC);
	sim_G.watch_fd = epoll_create1(EPOLL_CLOEXEC);
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
	lua_createtable(L, sim_G.nlst, 0);
	for (i = 0; i < sim_G.nlst; i++) {
		lua_pushinteger(L, (lua_Integer)sim_G.lst[i].port);
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

		for (i = 0; i < sim_G.nlst; i++) {
			MHD_UNSIGNED_LONG_LONG mto;
			if (MHD_get_timeout(sim_G.lst[i].d, &mto) == MHD_YES) {
				long m = mto > 60000 ? 60000 : (long)mto;
				if (ms < 0 || m < ms)
					ms = m;
			}
			p[i].fd = sim_G.lst[i].epfd;
			p[i].events = POLLIN;
		}
		if (lt >= 0) {
			long lms = (long)(lt * 1000.0 + 0.999);
			if (ms < 0 || lms < ms)
				ms = lms;
		}
		if (sim_G.resumed) {
			/* resumed connections are processed by the next MHD_run */
			sim_G.resumed = 0;
			ms = 0;
		}
		p[sim_G.nlst].fd = sim_G.watch_fd;
		p[sim_G.nlst].events = POLLIN;
		p[sim_G.nlst + 1].fd = sim_G.sigpipe[0];
		p[sim_G.nlst + 1].events = POLLIN;
		if (poll(p, (nfds_t)sim_G.nlst + 2, (int)ms) < 0 && errno != EINTR) {
			perror("ucwa-sim: poll");
			status = 1;
			break;
		}
		if (p[sim_G.nlst + 1].revents & POLLIN)
			stop = 1;
		if (p[sim_G.nlst].revents & POLLIN)
			check_watched();
		run_all();
	}

out:
	if (sim_G.nlst)
		stop_serving();
	lua_close(L);
	free(cert);
	free(key);
	if (sim_G.watch_fd >= 0)
		close(sim_G.watch_fd);
	if (sim_G.sigpipe[0] >= 0) {
		close(sim_G.sigpipe[0]);
		close(sim_G.sigpipe[1]);
	}
	return status;
}

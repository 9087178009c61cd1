/* ucwa-sim's C host, shared between its files: the request intake
 * (requests.c), the Lua side's host functions (respond.c), the dispatch to
 * Lua (dispatch.c) and the main loop, options and main() (main.c). */
#ifndef UCWA_SIM_H
#define UCWA_SIM_H

#include <stddef.h>
#include <microhttpd.h>
#include <lua.h>
#include <lauxlib.h>


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

struct sim_globals {
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
};
extern struct sim_globals sim_G;

/* requests.c */
void sim_list_remove(struct req *r);
void sim_watch_add(struct req *r);
void sim_watch_del(struct req *r);
void sim_on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
		      enum MHD_RequestTerminationCode toe);
enum MHD_Result sim_form_iter(void *cls, enum MHD_ValueKind kind, const char *key,
			      const char *filename, const char *content_type,
			      const char *transfer_encoding, const char *data, uint64_t off,
			      size_t size);
int sim_body_append(struct req *r, const char *data, size_t size);
size_t sim_unescape(void *cls, struct MHD_Connection *c, char *s);

/* respond.c */
struct MHD_Response *sim_make_response(lua_State *L, int idx, unsigned *status);
void sim_resume_as(struct req *r, enum req_state state);
unsigned sim_open_connections(struct listener *l);
extern const luaL_Reg sim_funcs[];

/* dispatch.c */
int sim_traceback(lua_State *L);
void sim_peer_gone(struct req *r);
enum MHD_Result sim_on_request(void *cls, struct MHD_Connection *c, const char *url,
			       const char *method, const char *version,
			       const char *upload_data, size_t *upload_data_size,
			       void **con_cls);

void ucwa_open_multipart(lua_State *L); /* src/multipart.c, compiled in */
void ucwa_open_target(lua_State *L);    /* sim/target.c: a batch part's target */

#endif

/* The transport of ucwa.core: a libcurl multi engine driven by epoll + timerfd,
 * shared by engine.c (engine, requests, timers), channel.c (the P-GET loop)
 * and url.c (CURLU helpers).
 *
 * Rules kept throughout:
 *  - libcurl callbacks (write, header, socket, timer) touch C state only; every
 *    Lua call happens from step()'s delivery phase, after curl has returned.
 *  - Lua objects referenced from C live in uservalues; objects with work in
 *    flight are anchored in the engine's anchors table (engine uservalue 1), so
 *    an unreachable engine is collected with everything it owns.
 *  - A node (request, timer) is linked into engine lists only while pending;
 *    every owner's __gc unlinks it, so the lists never point at freed memory. */
#ifndef UCWA_ENGINE_H
#define UCWA_ENGINE_H

#include <stddef.h>
#include <stdint.h>
#include <curl/curl.h>
#include "ucwa.h"

#define UCWA_ENGINE_MT  "ucwa.engine"
#define UCWA_REQUEST_MT "ucwa.request"
#define UCWA_TIMER_MT   "ucwa.timer"
#define UCWA_CHANNEL_MT "ucwa.channel"

/* engine uservalues */
#define UCWA_EUV_ANCHORS 1   /* table: lightuserdata(node owner) -> object */
#define UCWA_EUV_MODULE  2   /* the ucwa.core module table (core.error, core.error_mt) */
#define UCWA_EUV_FACTORY 3   /* error_factory option, or nil */

typedef struct ucwa_engine ucwa_engine;
typedef struct ucwa_channel ucwa_channel;

/* intrusive doubly linked list */
typedef struct ucwa_node { struct ucwa_node *prev, *next; } ucwa_node;

enum { UCWA_WORK_REQ = 1, UCWA_WORK_TIMER = 2 };

/* common head of everything that can sit in the engine's ready queue */
typedef struct ucwa_work {
    ucwa_node link;     /* in eng->inflight (requests) or eng->ready */
    int kind;
    ucwa_channel *ch;   /* owner when the work belongs to a channel, else NULL */
} ucwa_work;

enum { UCWA_IDLE = 0, UCWA_RUNNING, UCWA_READY };

typedef struct ucwa_buf { char *p; size_t len, cap; } ucwa_buf;

typedef struct ucwa_req {
    ucwa_work w;
    ucwa_engine *eng;         /* set while linked (RUNNING or READY) */
    int state;
    CURL *easy;
    struct curl_slist *hdrs;
    ucwa_buf body;
    ucwa_buf head;            /* "name\0value\0" pairs, names lowercased */
    size_t max_body;
    int too_large;
    int cancelled;            /* cancel() before delivery: deliver Cancelled */
    CURLcode result;
    long status;
    char *eff_url;            /* malloc'd */
    char *url;                /* malloc'd copy of the requested URL (error reports) */
    char errbuf[CURL_ERROR_SIZE];
} ucwa_req;

typedef struct ucwa_timer {
    ucwa_work w;
    ucwa_engine *eng;         /* set while armed or ready */
    int state;
    size_t heap_idx;
    int64_t deadline;         /* CLOCK_MONOTONIC ns */
    uint64_t seq;
} ucwa_timer;

struct ucwa_engine {
    CURLM *multi;             /* NULL once closed */
    int epfd, tfd, efd;       /* epoll set (pollfd), timerfd and eventfd inside it */
    int signaled;             /* efd holds a count: completions wait for step() */
    int in_step;
    int verify;
    long connect_timeout_ms;
    long default_timeout_ms;
    size_t max_body;
    int http2;
    char *user_agent, *ca_file, *proxy;   /* proxy NULL: libcurl's default (env) */
    int64_t curl_deadline;    /* -1: none */
    int64_t armed;            /* what the timerfd is armed to; -1 disarmed */
    ucwa_node inflight;       /* requests added to the multi handle */
    size_t n_inflight;
    ucwa_node ready;          /* completions and due timers, FIFO */
    size_t n_ready;
    ucwa_timer **heap;
    size_t n_heap, cap_heap;
    uint64_t seq;
    uint64_t rng;
    size_t n_channels;        /* running channels */
};

/* list helpers */
void ucwa_list_init(ucwa_node *h);
void ucwa_list_push(ucwa_node *h, ucwa_node *n);
void ucwa_list_unlink(ucwa_node *n);

int64_t ucwa_now(void);
/* seconds -> milliseconds for libcurl: NaN/negative -> 0, capped at ~11 days; a
 * positive value never rounds to 0 (0 means "no timeout" to libcurl) */
long ucwa_secs_to_ms(double secs);
/* makes room for `more` timers beyond those armed; -1 on OOM */
int ucwa_timer_reserve(ucwa_engine *e, size_t more);

/* engine */
ucwa_engine *ucwa_check_engine(lua_State *L, int idx);   /* open engine or raise */
void ucwa_engine_rearm(ucwa_engine *e, int force);
void ucwa_engine_kick(ucwa_engine *e);                  /* run curl timeouts now: sends new requests */
double ucwa_engine_random(ucwa_engine *e);              /* [0,1) */
/* number option t[k] (nil: def); raises "<who>'<k>' must be a number" otherwise */
double ucwa_opt_number(lua_State *L, int t, const char *k, double def, const char *who);

/* anchors: engine userdata at eidx */
void ucwa_anchor(lua_State *L, int eidx, void *key, int objidx);
void ucwa_unanchor(lua_State *L, int eidx, void *key);

/* requests */
typedef struct ucwa_req_spec {
    const char *method;
    const char *url;
    struct curl_slist *hdrs;  /* ownership passes to the request on success */
    const char *body;         /* must stay alive until the request completes */
    size_t body_len;
    int has_body;
    long timeout_ms;          /* 0: none */
} ucwa_req_spec;
/* 0 on success, else an error message (static string); hdrs freed on failure too */
const char *ucwa_req_start(ucwa_engine *e, ucwa_req *r, ucwa_req_spec *s);
void ucwa_req_abort(ucwa_req *r);       /* unlink + free C resources; no callback */
void ucwa_req_free(ucwa_req *r);        /* free buffers of a delivered request */
/* build a slist from the Lua table at idx (nil allowed); raises on bad names/values */
struct curl_slist *ucwa_headers_from_table(lua_State *L, int idx, int *has_ct);
/* pushes resp table (status, headers, body, url) */
void ucwa_push_response(lua_State *L, ucwa_req *r);
/* pushes the transport error object (code, message, url, curl_code) */
void ucwa_push_transport_error(lua_State *L, int eidx, ucwa_req *r);
/* turns the plain table on top into an error object (error_factory, core.error_mt,
 * core.error, or a fallback metatable with __tostring) */
void ucwa_make_error(lua_State *L, int eidx);
/* lowercase header lookup in a completed request; NULL if absent (first match) */
const char *ucwa_req_header(ucwa_req *r, const char *name);

/* timers */
void ucwa_timer_arm(ucwa_engine *e, ucwa_timer *t, double seconds);
void ucwa_timer_disarm(ucwa_timer *t);

/* channel.c */
void ucwa_new_class(lua_State *L, const char *name, const luaL_Reg *methods,
                    lua_CFunction gc, lua_CFunction tostring, int with_close);
void ucwa_open_channel(lua_State *L);              /* registers metatable; eng method added by engine */
int ucwa_engine_channel(lua_State *L);             /* eng:channel{...} */
/* from step's delivery phase (engine userdata at eidx): LUA_OK with the stack as it
 * was, or an error status with the error value on top, state already consistent */
int ucwa_channel_deliver(lua_State *L, int eidx, ucwa_work *w);
void ucwa_channel_engine_closed(ucwa_channel *ch);

/* url.c */
void ucwa_open_url(lua_State *L);                  /* url_resolve, url_with_query on the module table */
/* resolve ref against base; returns malloc'd string or NULL with *err set */
char *ucwa_url_resolve(const char *base, const char *ref, const char **err);
/* apply params table at idx (name -> string|number|boolean|false=remove) to url;
 * returns malloc'd string or NULL with *err set */
char *ucwa_url_with_query(lua_State *L, const char *url, int idx, const char **err);

#endif

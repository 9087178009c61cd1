/* The engine: one libcurl multi handle driven by epoll + a timerfd, a timer
 * heap, and a ready queue of work items (loop.c).
 *
 * The loop knows no types (luv's model): what it runs are work items, each
 * carrying its own deliver and abandon functions. Its clients -- Lua requests
 * (request.c), Lua timers (timer.c), the event channel (channel.c) -- embed
 * work items in their structs and include this header; loop.c includes none
 * of theirs.
 *
 * Rules kept throughout:
 *  - libcurl callbacks (write, header, socket, timer) touch C state only; every
 *    Lua call happens from step()'s delivery phase, after curl has returned.
 *  - Lua objects referenced from C live in uservalues; objects with work in
 *    flight are anchored in the engine's anchors table (its uservalue 1), so
 *    an unreachable engine is collected with everything it owns.
 *  - A work item is linked into the engine only while pending; its owner's
 *    __gc cancels it, so the engine never points at freed memory. */
#ifndef UCWA_LOOP_H
#define UCWA_LOOP_H

#include <stddef.h>
#include <stdint.h>
#include <curl/curl.h>

#include "auxlib.h"

#define UCWA_ENGINE_MT   "ucwa.engine"
#define UCWA_EUV_ANCHORS 1 /* engine uservalue: lightuserdata(owner) -> object */

typedef struct ucwa_engine ucwa_engine;
typedef struct ucwa_work ucwa_work;
typedef struct ucwa_watch ucwa_watch;

/* intrusive doubly linked list */
typedef struct ucwa_node {
    struct ucwa_node *prev, *next;
} ucwa_node;

/* Runs from step()'s delivery phase for an item that was ready; the item is
 * already off the queue and idle (it may be re-armed). eidx: the engine
 * userdata. Returns LUA_OK, or an error status with the error value on top,
 * the owner's state already consistent: step() raises it. Either way step()
 * resets the stack after it. */
typedef int (*ucwa_deliver_fn)(lua_State *L, int eidx, ucwa_work *w);
/* Runs when the engine closes with the item pending; the item is already idle
 * (out of the multi handle, off every list). Frees C state only, never calls
 * Lua (close() and __gc call no callbacks). May be NULL. */
typedef void (*ucwa_abandon_fn)(ucwa_work *w);

enum {
    UCWA_IDLE = 0,
    UCWA_XFER,  /* a transfer in the multi handle (ucwa_xfer) */
    UCWA_TIMER, /* armed in the timer heap (ucwa_timer) */
    UCWA_READY  /* in the ready queue, delivered by the next step() */
};

struct ucwa_work {
    ucwa_node link;   /* in the engine's transfer list (XFER) or ready queue (READY) */
    ucwa_engine *eng; /* set while not idle */
    int state;
    ucwa_deliver_fn deliver;
    ucwa_abandon_fn abandon;
};

/* A libcurl transfer: the owner sets up `easy` (CURLOPT_PRIVATE = the xfer)
 * and adds it; on completion the loop records `result`, takes the handle out
 * of the multi handle, calls `done` and queues the item. `done` (C only, no
 * Lua, outside libcurl's callbacks) reads what the owner needs and frees the
 * easy handle at once: its memory is reused by the next transfer instead of
 * piling up until delivery. */
typedef struct ucwa_xfer {
    ucwa_work w;
    CURL *easy;
    CURLcode result;
    void (*done)(struct ucwa_xfer *x);
    uint64_t lane_key; /* which connection lane (0: any; see below): set by the owner */
    int lane;          /* the lane it runs in while added, else -1 */
} ucwa_xfer;

/* Connection lanes. libcurl keeps every connection to one host:port in one
 * list and walks all of it for each new transfer (ConnectionExists), busy
 * ones included: with 10,000 P-GETs pending on one server, each request
 * walked 10,000 connections (the sign-in of 10,000 bots was quadratic). The
 * engine splits its connections into lanes, each a libcurl share with its
 * own connection cache (and TLS session cache): a transfer with a lane key
 * (a hash of its Authorization header: one bot's requests and P-GETs) runs
 * in the lane of that key, one without in the first lane with fewer than
 * UCWA_LANE_SPILL transfers (or the least busy one). A walk covers one lane. */
#define UCWA_LANES      64
#define UCWA_LANE_SPILL 32
typedef struct ucwa_lane {
    CURLSH *share; /* made when first used; NULL: the multi handle's own cache */
    size_t busy;   /* transfers added in this lane */
} ucwa_lane;

typedef struct ucwa_timer {
    ucwa_work w;
    size_t heap_idx;
    int64_t deadline; /* CLOCK_MONOTONIC ns */
    uint64_t seq;     /* equal deadlines fire in the order armed */
} ucwa_timer;

/* A descriptor watched on the engine's epoll set, for a library that does
 * its own I/O (hiredis: redis.c) -- the analogue of libcurl's socket
 * callback. `ready` runs from step()'s poll phase with the UCWA_WATCH_*
 * bits that fired: C only, never Lua (it runs before the delivery phase,
 * inside no pcall); it may queue work items for delivery, change or stop
 * its own watch or others. `abandon` runs when the engine closes with the
 * watch set, after it was stopped: C only, may be NULL. Host loops see a
 * watched descriptor through pollfd() like the engine's own sockets. */
enum { UCWA_WATCH_IN = 1, UCWA_WATCH_OUT = 2, UCWA_WATCH_ERR = 4 };
struct ucwa_watch {
    ucwa_engine *eng; /* set while watched */
    int fd;
    unsigned events; /* UCWA_WATCH_IN | UCWA_WATCH_OUT asked for */
    void (*ready)(ucwa_watch *w, unsigned fired);
    void (*abandon)(ucwa_watch *w);
};

/* What core.engine{} says about every transfer; request.c reads it. */
typedef struct ucwa_http_opts {
    int verify;
    long connect_timeout_ms;
    long timeout_ms; /* default per request; 0: none */
    size_t max_body;
    size_t max_header;          /* bytes of one request header line (name: value) */
    size_t max_response_header; /* bytes of a response's header section */
    char *user_agent, *ca_file;
    char *default_ca; /* libcurl's default CA bundle when it is a readable file (see request.c), or NULL */
    char *proxy;                /* NULL: libcurl's default (the environment); "": never */
    struct curl_slist *resolve; /* CURLOPT_RESOLVE entries ("host:port:address"), or NULL */
} ucwa_http_opts;

struct ucwa_engine {
    CURLM *multi;       /* NULL once closed */
    int epfd, tfd, efd; /* epoll set (pollfd), timerfd and eventfd inside it */
    int signaled;       /* efd holds a count: completions wait for step() */
    int in_step;
    ucwa_http_opts http;
    int64_t curl_deadline; /* -1: none */
    int64_t armed;         /* what the timerfd is armed to; -1 disarmed */
    ucwa_node xfers;       /* transfers in the multi handle */
    size_t n_xfers;
    ucwa_node ready; /* completions and due timers, FIFO */
    size_t n_ready;
    ucwa_timer **heap;
    size_t n_heap, cap_heap;
    uint64_t seq;
    uint64_t rng;
    size_t n_channels; /* running event channels: kept by channel.c, shown by stats() */
    long max_idle;     /* max_connections: idle connections kept (per lane) */
    ucwa_watch **watches; /* by descriptor: what ucwa_watch_set added */
    size_t cap_watches, n_watches;
    ucwa_lane lanes[UCWA_LANES];
};

/* time */
int64_t ucwa_now(void);
/* seconds -> milliseconds for libcurl: NaN/negative -> 0, capped at ~11 days; a
 * positive value never rounds to 0 (0 means "no timeout" to libcurl) */
long ucwa_secs_to_ms(double secs);
double ucwa_engine_random(ucwa_engine *e); /* [0,1), for jitter */

/* the open engine at idx, or raise "engine is closed" */
ucwa_engine *ucwa_check_engine(lua_State *L, int idx);

/* anchors (engine userdata at eidx): keep objects with work in flight alive */
void ucwa_anchor(lua_State *L, int eidx, void *key, int objidx);
void ucwa_unanchor(lua_State *L, int eidx, void *key);
int ucwa_anchored(lua_State *L, int eidx, void *key); /* pushes it; returns its type */

/* work items */
int ucwa_xfer_add(ucwa_engine *e, ucwa_xfer *x);                /* 0, or -1 (not added); picks its lane */
uint64_t ucwa_lane_key(const char *s, size_t n);                /* the lane key of an Authorization value */
int ucwa_timer_arm(ucwa_engine *e, ucwa_timer *t, double secs); /* 0, or -1 (out of memory) */
void ucwa_work_ready(ucwa_engine *e, ucwa_work *w);             /* an idle item, queued */
void ucwa_work_cancel(ucwa_work *w);                            /* idle again, from any state; no callback */

/* descriptor watches: set (or change) the events of w on fd; 0, or -1 with
 * errno (a closed engine: EBADF). events 0 keeps fd in the set, polled for
 * errors only. Stop before the descriptor is closed; idempotent. */
int ucwa_watch_set(ucwa_engine *e, ucwa_watch *w, int fd, unsigned events);
void ucwa_watch_stop(ucwa_watch *w);

/* runs libcurl's due timeouts and collects completions: sends requests just
 * added (on a kept-alive connection at once), outside any curl callback */
void ucwa_engine_kick(ucwa_engine *e);
/* makes pollfd() readable exactly when step() has work (see loop.c) */
void ucwa_engine_rearm(ucwa_engine *e, int force);

#endif

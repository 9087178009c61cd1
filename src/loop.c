/* The engine: a libcurl multi handle on epoll + timerfd, a timer heap and a
 * ready queue of work items (see loop.h).
 *
 *   local eng = core.engine{ verify=, ca_file=, max_body=, max_header=,
 *                            max_response_header=, user_agent=, proxy=, resolve=,
 *                            connect_timeout=, timeout=, max_connections= }
 *   eng:step(timeout) eng:pollfd() eng:events() eng:timeout() eng:stats()
 *   eng:now() eng:closed() eng:close()
 *
 * eng:request (request.c), eng:timer (timer.c), eng:channel (channel.c)
 * and eng:redis (redis.c) are added to the class by their own files. curl callbacks only touch C
 * state; Lua runs from step()'s delivery phase, one ready item at a time,
 * each popped before its deliver function runs. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>

#include "ucwa.h"
#include "loop.h"

#define MAX_EVENTS         256
#define DEFAULT_MAX_BODY   (16u * 1024u * 1024u)
#define DEFAULT_MAX_HEADER (64u * 1024u)
#define DEFAULT_UA         "lua-ucwa/0.1"

/* ---------------------------------------------------------------- helpers */

static void list_init(ucwa_node *h)
{
    h->prev = h->next = h;
}

static void list_push(ucwa_node *h, ucwa_node *n)
{
    n->prev = h->prev;
    n->next = h;
    h->prev->next = n;
    h->prev = n;
}

static void list_unlink(ucwa_node *n)
{
    if (n->next) {
        n->prev->next = n->next;
        n->next->prev = n->prev;
    }
    n->prev = n->next = NULL;
}

int64_t ucwa_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

long ucwa_secs_to_ms(double secs)
{
    if (!(secs > 0)) return 0;
    if (secs > 1e6) return 1000000000L;
    long ms = (long)(secs * 1000 + 0.5);
    return ms > 0 ? ms : 1;
}

double ucwa_engine_random(ucwa_engine *e)
{
    /* xorshift64*: jitter only, not security */
    uint64_t x = e->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    e->rng = x;
    return (double)((x * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
}

/* ---------------------------------------------------------------- anchors */

void ucwa_anchor(lua_State *L, int eidx, void *key, int objidx)
{
    eidx = lua_absindex(L, eidx);
    objidx = lua_absindex(L, objidx);
    lua_getiuservalue(L, eidx, UCWA_EUV_ANCHORS);
    lua_pushlightuserdata(L, key);
    lua_pushvalue(L, objidx);
    lua_rawset(L, -3);
    lua_pop(L, 1);
}

void ucwa_unanchor(lua_State *L, int eidx, void *key)
{
    eidx = lua_absindex(L, eidx);
    lua_getiuservalue(L, eidx, UCWA_EUV_ANCHORS);
    if (lua_istable(L, -1)) {
        lua_pushlightuserdata(L, key);
        lua_pushnil(L);
        lua_rawset(L, -3);
    }
    lua_pop(L, 1);
}

int ucwa_anchored(lua_State *L, int eidx, void *key)
{
    eidx = lua_absindex(L, eidx);
    lua_getiuservalue(L, eidx, UCWA_EUV_ANCHORS);
    lua_pushlightuserdata(L, key);
    int t = lua_rawget(L, -2);
    lua_remove(L, -2);
    return t;
}

/* ---------------------------------------------------------------- timer heap (min-heap) */

static int timer_less(ucwa_timer *a, ucwa_timer *b)
{
    return a->deadline < b->deadline || (a->deadline == b->deadline && a->seq < b->seq);
}

static void heap_swap(ucwa_engine *e, size_t i, size_t j)
{
    ucwa_timer *t = e->heap[i];
    e->heap[i] = e->heap[j];
    e->heap[j] = t;
    e->heap[i]->heap_idx = i;
    e->heap[j]->heap_idx = j;
}

static void heap_up(ucwa_engine *e, size_t i)
{
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!timer_less(e->heap[i], e->heap[p])) break;
        heap_swap(e, i, p);
        i = p;
    }
}

static void heap_down(ucwa_engine *e, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < e->n_heap && timer_less(e->heap[l], e->heap[m])) m = l;
        if (r < e->n_heap && timer_less(e->heap[r], e->heap[m])) m = r;
        if (m == i) break;
        heap_swap(e, i, m);
        i = m;
    }
}

static void heap_remove(ucwa_engine *e, ucwa_timer *t)
{
    size_t i = t->heap_idx;
    e->n_heap--;
    if (i != e->n_heap) {
        e->heap[i] = e->heap[e->n_heap];
        e->heap[i]->heap_idx = i;
        heap_down(e, i);
        heap_up(e, i);
    }
}

/* ---------------------------------------------------------------- work items */

uint64_t ucwa_lane_key(const char *s, size_t n)
{
    uint64_t h = 14695981039346656037ULL; /* FNV-1a */
    size_t i;
    for (i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return h ? h : 1;
}

/* libcurl counts busy connections against CURLMOPT_MAXCONNECTS too: with
 * more transfers than max_connections in flight, each one that ended closed
 * an idle connection (keep-alive lost past 1,024 bots). The cap is set to
 * the idle connections wanted plus the transfers in flight. */
static void set_maxconnects(ucwa_engine *e)
{
    if (e->multi) curl_multi_setopt(e->multi, CURLMOPT_MAXCONNECTS, e->max_idle + (long)e->n_xfers);
}

static CURLSH *lane_share(ucwa_lane *l)
{
    if (!l->share && (l->share = curl_share_init()) != NULL) {
        if (curl_share_setopt(l->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT) != CURLSHE_OK) {
            curl_share_cleanup(l->share);
            l->share = NULL;
        } else {
            curl_share_setopt(l->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
        }
    }
    return l->share;
}

static int lane_pick(ucwa_engine *e, uint64_t key)
{
    int i, best = 0;
    if (key) return (int)(key % UCWA_LANES);
    for (i = 0; i < UCWA_LANES; i++) {
        if (e->lanes[i].busy < UCWA_LANE_SPILL) return i;
        if (e->lanes[i].busy < e->lanes[best].busy) best = i;
    }
    return best;
}

int ucwa_xfer_add(ucwa_engine *e, ucwa_xfer *x)
{
    ucwa_work_cancel(&x->w);
    if (!e->multi) return -1;
    int lane = lane_pick(e, x->lane_key);
    curl_easy_setopt(x->easy, CURLOPT_SHARE, lane_share(&e->lanes[lane]));
    if (curl_multi_add_handle(e->multi, x->easy) != CURLM_OK) return -1;
    x->lane = lane;
    e->lanes[lane].busy++;
    x->result = CURLE_OK;
    x->w.eng = e;
    x->w.state = UCWA_XFER;
    list_push(&e->xfers, &x->w.link);
    e->n_xfers++;
    set_maxconnects(e);
    return 0;
}

int ucwa_timer_arm(ucwa_engine *e, ucwa_timer *t, double secs)
{
    ucwa_work_cancel(&t->w);
    if (ucwa_grow((void **)&e->heap, &e->cap_heap, e->n_heap + 1, sizeof *e->heap) != 0) return -1;
    if (!(secs > 0)) secs = 0;
    if (secs > 1e9) secs = 1e9;
    t->deadline = ucwa_now() + (int64_t)(secs * 1e9);
    t->seq = ++e->seq;
    t->w.eng = e;
    t->w.state = UCWA_TIMER;
    t->heap_idx = e->n_heap;
    e->heap[e->n_heap++] = t;
    heap_up(e, t->heap_idx);
    return 0;
}

void ucwa_work_ready(ucwa_engine *e, ucwa_work *w)
{
    ucwa_work_cancel(w);
    w->eng = e;
    w->state = UCWA_READY;
    list_push(&e->ready, &w->link);
    e->n_ready++;
}

void ucwa_work_cancel(ucwa_work *w)
{
    ucwa_engine *e = w->eng;
    if (e) {
        switch (w->state) {
        case UCWA_XFER: {
            ucwa_xfer *x = ucwa_container_of(w, ucwa_xfer, w);
            if (e->multi && x->easy) curl_multi_remove_handle(e->multi, x->easy);
            list_unlink(&w->link);
            e->n_xfers--;
            if (x->lane >= 0) e->lanes[x->lane].busy--;
            x->lane = -1;
            set_maxconnects(e);
            break;
        }
        case UCWA_TIMER: heap_remove(e, ucwa_container_of(w, ucwa_timer, w)); break;
        case UCWA_READY:
            list_unlink(&w->link);
            e->n_ready--;
            break;
        }
    }
    w->state = UCWA_IDLE;
    w->eng = NULL;
}

/* ---------------------------------------------------------------- descriptor watches */

int ucwa_watch_set(ucwa_engine *e, ucwa_watch *w, int fd, unsigned events)
{
    if (!e->multi) {
        errno = EBADF;
        return -1;
    }
    if (fd < 0) {
        errno = EINVAL;
        return -1;
    }
    if (w->eng && (w->eng != e || w->fd != fd)) ucwa_watch_stop(w);
    size_t old = e->cap_watches;
    if ((size_t)fd >= old) {
        if (ucwa_grow((void **)&e->watches, &e->cap_watches, (size_t)fd + 1, sizeof *e->watches) != 0) {
            errno = ENOMEM;
            return -1;
        }
        memset(e->watches + old, 0, (e->cap_watches - old) * sizeof *e->watches);
    }
    if (e->watches[fd] && e->watches[fd] != w) {
        errno = EEXIST; /* one owner a descriptor */
        return -1;
    }
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.data.fd = fd;
    if (events & UCWA_WATCH_IN) ev.events |= EPOLLIN;
    if (events & UCWA_WATCH_OUT) ev.events |= EPOLLOUT;
    if (w->eng) {
        if (w->events == events) return 0;
        if (epoll_ctl(e->epfd, EPOLL_CTL_MOD, fd, &ev) != 0) return -1;
    } else {
        if (epoll_ctl(e->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) return -1;
        e->watches[fd] = w;
        e->n_watches++;
        w->eng = e;
        w->fd = fd;
    }
    w->events = events;
    return 0;
}

void ucwa_watch_stop(ucwa_watch *w)
{
    ucwa_engine *e = w->eng;
    if (!e) return;
    if (e->epfd >= 0) epoll_ctl(e->epfd, EPOLL_CTL_DEL, w->fd, NULL);
    if ((size_t)w->fd < e->cap_watches && e->watches[w->fd] == w) e->watches[w->fd] = NULL;
    e->n_watches--;
    w->eng = NULL;
    w->events = 0;
}

/* a watched descriptor's events, or 0 when fd is not watched (a libcurl socket) */
static int run_watch(ucwa_engine *e, int fd, uint32_t evs)
{
    if (fd < 0 || (size_t)fd >= e->cap_watches || !e->watches[fd]) return 0;
    ucwa_watch *w = e->watches[fd];
    unsigned fired = 0;
    if (evs & (EPOLLIN | EPOLLHUP)) fired |= UCWA_WATCH_IN;
    if (evs & EPOLLOUT) fired |= UCWA_WATCH_OUT;
    if (evs & EPOLLERR) fired |= UCWA_WATCH_ERR;
    w->ready(w, fired);
    return 1;
}

/* ---------------------------------------------------------------- timerfd / deadlines */

/* earliest libcurl or engine timer; -1 none */
static int64_t next_deadline(ucwa_engine *e)
{
    int64_t d = e->curl_deadline;
    if (e->n_heap && (d < 0 || e->heap[0]->deadline < d)) d = e->heap[0]->deadline;
    return d;
}

/* Makes pollfd() readable exactly when step() has work:
 *  - completions waiting for delivery: the eventfd holds a count (cheap to set);
 *  - timers: the timerfd is armed no later than the next deadline. timerfd_settime
 *    is costly (a hardware timer reprogram, slow in VMs), so a deadline that moves
 *    later leaves the earlier arming in place: at most one early wake-up, after
 *    which step() re-arms. An expired timerfd stays readable until it is set again,
 *    so it is always re-set then. */
static void rearm(ucwa_engine *e, int force);

void ucwa_engine_rearm(ucwa_engine *e, int force)
{
    /* inside step() the timerfd and eventfd are left alone: deliveries that
     * add transfers set libcurl's deadline to "now" (a fresh transfer), which
     * step's kick at its end clears; arming for it would cost a
     * timerfd_settime and a spurious wake-up per batch. step() rearms once,
     * after that kick. */
    if (e->in_step) return;
    rearm(e, force);
}

static void rearm(ucwa_engine *e, int force)
{
    if (!e->multi) return;
    if (e->n_ready && !e->signaled) {
        uint64_t one = 1;
        if (write(e->efd, &one, sizeof one) == (ssize_t)sizeof one) e->signaled = 1;
    } else if (!e->n_ready && e->signaled) {
        uint64_t n;
        if (read(e->efd, &n, sizeof n) == (ssize_t)sizeof n || errno == EAGAIN) e->signaled = 0;
    }
    int64_t d = next_deadline(e);
    if (d == 0) d = 1; /* 0 would disarm; an absolute time in the past fires at once */
    if (!force) {
        if (e->armed < 0) {
            if (d < 0) return;              /* idle and disarmed */
        } else if (e->armed > ucwa_now()) { /* armed, not fired yet */
            if (d < 0 || d >= e->armed) return;
        }
    }
    struct itimerspec its;
    memset(&its, 0, sizeof its);
    if (d > 0) {
        its.it_value.tv_sec = d / 1000000000;
        its.it_value.tv_nsec = d % 1000000000;
    }
    timerfd_settime(e->tfd, TFD_TIMER_ABSTIME, &its, NULL);
    e->armed = d;
}

/* ---------------------------------------------------------------- curl callbacks (C only) */

static int sock_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    ucwa_engine *e = userp;
    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        epoll_ctl(e->epfd, EPOLL_CTL_DEL, s, NULL); /* curl forgets socketp itself */
        return 0;
    }
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.data.fd = s;
    if (what & CURL_POLL_IN) ev.events |= EPOLLIN;
    if (what & CURL_POLL_OUT) ev.events |= EPOLLOUT;
    if (socketp) {
        if (epoll_ctl(e->epfd, EPOLL_CTL_MOD, s, &ev) != 0 && errno == ENOENT)
            epoll_ctl(e->epfd, EPOLL_CTL_ADD, s, &ev);
    } else {
        if (epoll_ctl(e->epfd, EPOLL_CTL_ADD, s, &ev) != 0 && errno == EEXIST)
            epoll_ctl(e->epfd, EPOLL_CTL_MOD, s, &ev);
        curl_multi_assign(e->multi, s, (void *)e); /* marks the socket as added */
    }
    return 0;
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    ucwa_engine *e = userp;
    (void)multi;
    e->curl_deadline = timeout_ms < 0 ? -1 : ucwa_now() + (int64_t)timeout_ms * 1000000;
    return 0;
}

/* completed transfers -> ready queue (outside curl callbacks) */
static void collect_done(ucwa_engine *e)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(e->multi, &left))) {
        if (msg->msg != CURLMSG_DONE) continue;
        CURL *c = msg->easy_handle;
        CURLcode res = msg->data.result;
        ucwa_xfer *x = NULL;
        curl_easy_getinfo(c, CURLINFO_PRIVATE, (char **)&x);
        if (!x || x->easy != c || x->w.state != UCWA_XFER) continue;
        ucwa_work_ready(e, &x->w); /* out of the multi handle: msg is invalid from here */
        x->result = res;
        if (x->done) x->done(x);
    }
}

/* run curl's timeouts that are due; sends freshly added requests */
static void run_timeouts(ucwa_engine *e)
{
    int running, i;
    for (i = 0; i < 8 && e->multi && e->curl_deadline >= 0 && e->curl_deadline <= ucwa_now(); i++) {
        e->curl_deadline = -1;
        curl_multi_socket_action(e->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    }
}

void ucwa_engine_kick(ucwa_engine *e)
{
    if (!e->multi) return;
    run_timeouts(e);
    collect_done(e);
}

/* ---------------------------------------------------------------- step and the pollable API */

/* the body of step(), run under lua_pcall so that any error (a callback's, or a
 * memory error while building a response) leaves in_step cleared */
static int step_body(lua_State *L)
{
    ucwa_engine *e = lua_touserdata(L, 1);
    int wait_ms = (int)lua_tointeger(L, 2);
    /* what is already due (e.g. requests added since the last step) goes out first */
    run_timeouts(e);
    collect_done(e);
    if (e->n_ready || (e->n_heap && e->heap[0]->deadline <= ucwa_now()))
        wait_ms = 0;
    else if (wait_ms < 0 && !e->n_xfers && !e->n_heap && e->curl_deadline < 0)
        wait_ms = 0;
    rearm(e, 0); /* an expired timerfd would cut the wait short */
    struct epoll_event evs[MAX_EVENTS];
    int n = epoll_wait(e->epfd, evs, MAX_EVENTS, wait_ms), i, running;
    for (i = 0; i < n && e->multi; i++) {
        if (evs[i].data.fd == e->tfd || evs[i].data.fd == e->efd) continue; /* see rearm */
        if (run_watch(e, evs[i].data.fd, evs[i].events)) continue;
        int mask = 0;
        if (evs[i].events & (EPOLLIN | EPOLLHUP)) mask |= CURL_CSELECT_IN;
        if (evs[i].events & EPOLLOUT) mask |= CURL_CSELECT_OUT;
        if (evs[i].events & EPOLLERR) mask |= CURL_CSELECT_ERR;
        curl_multi_socket_action(e->multi, evs[i].data.fd, mask, &running);
    }
    run_timeouts(e);
    collect_done(e);
    /* due timers, in deadline order */
    int64_t now = ucwa_now();
    while (e->n_heap && e->heap[0]->deadline <= now) ucwa_work_ready(e, &e->heap[0]->w);
    /* deliver what is ready now, each item popped before its callback runs; what
     * callbacks add waits for the next step */
    size_t todo = e->n_ready, done = 0;
    lua_settop(L, 1);
    while (todo-- && e->multi && e->n_ready) {
        ucwa_work *w = (ucwa_work *)e->ready.next;
        ucwa_work_cancel(w);
        done++;
        if (w->deliver(L, 1, w) != LUA_OK) return lua_error(L);
        lua_settop(L, 1);
    }
    lua_pushinteger(L, (lua_Integer)done);
    return 1;
}

ucwa_engine *ucwa_check_engine(lua_State *L, int idx)
{
    ucwa_engine *e = luaL_checkudata(L, idx, UCWA_ENGINE_MT);
    if (!e->multi) luaL_error(L, "engine is closed");
    return e;
}

static int l_step(lua_State *L)
{
    ucwa_engine *e = ucwa_check_engine(L, 1);
    if (e->in_step) return luaL_error(L, "nested step");
    luaL_checkstack(L, 40, "ucwa step");
    int wait_ms;
    if (lua_isnoneornil(L, 2))
        wait_ms = -1;
    else {
        double t = luaL_checknumber(L, 2);
        wait_ms = !(t > 0) ? 0 : t > 2e6 ? 2000000000 : (int)(t * 1000 + 0.999);
    }
    lua_settop(L, 1);
    lua_pushcfunction(L, step_body);
    lua_pushvalue(L, 1);
    lua_pushinteger(L, wait_ms);
    e->in_step = 1;
    int st = lua_pcall(L, 2, 1, 0);
    e->in_step = 0;
    ucwa_engine_kick(e); /* sends what the callbacks added (the channels' next P-GETs) */
    ucwa_engine_rearm(e, 0);
    if (st != LUA_OK) return lua_error(L); /* the callback's error, as raised */
    return 1;
}

static int l_pollfd(lua_State *L)
{
    ucwa_engine *e = ucwa_check_engine(L, 1);
    lua_pushinteger(L, e->epfd);
    return 1;
}

static int l_events(lua_State *L)
{
    ucwa_check_engine(L, 1);
    lua_pushliteral(L, "r");
    return 1;
}

static int l_timeout(lua_State *L)
{
    ucwa_engine *e = ucwa_check_engine(L, 1);
    int64_t d = e->n_ready ? 0 : next_deadline(e);
    if (d < 0) {
        lua_pushnil(L);
        return 1;
    }
    int64_t now = ucwa_now();
    lua_pushnumber(L, d <= now ? 0.0 : (double)(d - now) / 1e9);
    return 1;
}

static int l_stats(lua_State *L)
{
    ucwa_engine *e = ucwa_check_engine(L, 1);
    lua_createtable(L, 0, 4);
    lua_pushinteger(L, (lua_Integer)e->n_xfers);
    lua_setfield(L, -2, "transfers");
    lua_pushinteger(L, (lua_Integer)e->n_heap);
    lua_setfield(L, -2, "timers");
    lua_pushinteger(L, (lua_Integer)e->n_ready);
    lua_setfield(L, -2, "ready");
    lua_pushinteger(L, (lua_Integer)e->n_channels);
    lua_setfield(L, -2, "channels");
    lua_pushinteger(L, (lua_Integer)e->n_watches);
    lua_setfield(L, -2, "watches");
    return 1;
}

/* the engine's clock: CLOCK_MONOTONIC, seconds (a pause of the process
 * counts; a change of the wall clock does not) */
static int l_now(lua_State *L)
{
    luaL_checkudata(L, 1, UCWA_ENGINE_MT);
    lua_pushnumber(L, (double)ucwa_now() / 1e9);
    return 1;
}

static int l_closed(lua_State *L)
{
    ucwa_engine *e = luaL_checkudata(L, 1, UCWA_ENGINE_MT);
    lua_pushboolean(L, e->multi == NULL);
    return 1;
}

static int l_tostring(lua_State *L)
{
    ucwa_engine *e = luaL_checkudata(L, 1, UCWA_ENGINE_MT);
    lua_pushfstring(L, "ucwa.engine (%s): %p", e->multi ? "open" : "closed", (void *)e);
    return 1;
}

/* ---------------------------------------------------------------- the engine object */

static void http_opts_free(ucwa_http_opts *h)
{
    free(h->user_agent);
    free(h->ca_file);
    free(h->default_ca);
    h->default_ca = NULL;
    free(h->proxy);
    h->user_agent = h->ca_file = h->proxy = NULL;
    curl_slist_free_all(h->resolve);
    h->resolve = NULL;
}

/* every item pending in `list`, idle and abandoned; abandon functions may
 * cancel other items of their owner, so the list is read from its head */
static void abandon_list(ucwa_node *list)
{
    while (list->next != list) {
        ucwa_work *w = (ucwa_work *)list->next;
        ucwa_work_cancel(w);
        if (w->abandon) w->abandon(w);
    }
}

static void close_fds(ucwa_engine *e)
{
    if (e->epfd >= 0) close(e->epfd);
    if (e->tfd >= 0) close(e->tfd);
    if (e->efd >= 0) close(e->efd);
    e->epfd = e->tfd = e->efd = -1;
}

/* close, __close and __gc: idempotent; no callbacks run. From a callback too:
 * step() notices and returns. */
static int l_close(lua_State *L)
{
    ucwa_engine *e = luaL_checkudata(L, 1, UCWA_ENGINE_MT);
    if (!e->multi) {
        http_opts_free(&e->http); /* also when a bad option stopped engine{} half-way */
        return 0;
    }
    for (size_t i = 0; i < e->cap_watches; i++) { /* first: their owners may queue work, abandoned below */
        ucwa_watch *w = e->watches[i];
        if (!w) continue;
        ucwa_watch_stop(w);
        if (w->abandon) w->abandon(w);
    }
    free(e->watches);
    e->watches = NULL;
    e->cap_watches = 0;
    abandon_list(&e->xfers);
    abandon_list(&e->ready);
    while (e->n_heap) {
        ucwa_work *w = &e->heap[0]->w;
        ucwa_work_cancel(w);
        if (w->abandon) w->abandon(w);
    }
    free(e->heap);
    e->heap = NULL;
    e->cap_heap = 0;
    curl_multi_cleanup(e->multi);
    e->multi = NULL;
    for (int i = 0; i < UCWA_LANES; i++) { /* after the easy handles: closes the lane's connections */
        if (e->lanes[i].share) curl_share_cleanup(e->lanes[i].share);
        e->lanes[i].share = NULL;
        e->lanes[i].busy = 0;
    }
    close_fds(e);
    http_opts_free(&e->http); /* after the easy handles: they point at the resolve list */
    /* drop the anchors: everything they held is finished */
    lua_newtable(L);
    lua_setiuservalue(L, 1, UCWA_EUV_ANCHORS);
    return 0;
}

static char *opt_strdup(lua_State *L, int t, const char *k, const char *def)
{
    const char *s = ucwa_opt_string(L, 1, t, k, def);
    char *r = s ? strdup(s) : NULL;
    if (s && !r) luaL_error(L, "out of memory");
    return r;
}

static const char *const engine_options[] = {
    "verify",          "ca_file", "max_body",        "max_header", "max_response_header", "user_agent", "proxy",
    "connect_timeout", "timeout", "max_connections", "resolve",    NULL,
};

/* Whether s is "host:port:address[,address...]" (CURLOPT_RESOLVE), with an
 * optional leading '+' (entries that may time out of libcurl's DNS cache).
 * host: a name without ':' or a bracketed IPv6 address; port 1..65535;
 * addresses: IPv4 or (bracketed) IPv6, comma separated. */
static int resolve_entry_ok(const char *s)
{
    const char *p = s;
    if (*p == '+') p++;
    if (*p == '[') {
        const char *q = strchr(p, ']');
        if (!q || q == p + 1 || q[1] != ':') return 0;
        p = q + 1;
    } else {
        const char *q = p;
        while (*q && *q != ':') {
            if ((unsigned char)*q <= ' ' || *q == '/' || *q == '@' || (unsigned char)*q >= 127) return 0;
            q++;
        }
        if (q == p || *q != ':') return 0;
        p = q;
    }
    p++; /* the ':' after the host */
    long port = 0;
    const char *d = p;
    while (*p >= '0' && *p <= '9' && port <= 65535) port = port * 10 + (*p++ - '0');
    if (p == d || *p != ':' || port < 1 || port > 65535) return 0;
    p++;
    if (!*p) return 0;
    for (; *p; p++)
        if (!strchr("0123456789abcdefABCDEF.:[],", *p)) return 0;
    return 1;
}

/* option 'resolve': an array of entries into the slist h->resolve */
static void opt_resolve(lua_State *L, ucwa_http_opts *h)
{
    if (!ucwa_opt_value(L, 1, 1, "resolve", LUA_TTABLE, 0)) {
        lua_pop(L, 1);
        return;
    }
    int t = lua_gettop(L);
    lua_Integer n = (lua_Integer)lua_rawlen(L, t), i;
    lua_pushnil(L);
    while (lua_next(L, t)) { /* only 1..n */
        lua_pop(L, 1);
        if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1 || lua_tointeger(L, -1) > n)
            ucwa_argerror(L, 1, "option 'resolve' must be an array of \"host:port:address\" strings");
    }
    for (i = 1; i <= n; i++) {
        lua_rawgeti(L, t, i);
        ucwa_pushf(L, "option 'resolve' entry %d", (int)i);
        const char *s = ucwa_check_cstring(L, -2, 1, lua_tostring(L, -1), NULL);
        if (!resolve_entry_ok(s))
            ucwa_argerror(L, 1, "option 'resolve' entry %d must be \"host:port:address\" (got \"%.100s\")", (int)i, s);
        struct curl_slist *sl = curl_slist_append(h->resolve, s);
        if (!sl) luaL_error(L, "out of memory");
        h->resolve = sl;
        lua_pop(L, 2);
    }
    lua_pop(L, 1);
}

/* core.engine{...} */
static int l_engine(lua_State *L)
{
    if (lua_isnoneornil(L, 1)) {
        lua_settop(L, 0);
        lua_newtable(L);
    }
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    ucwa_opt_check(L, 1, 1, "", engine_options);
    /* userdata first, C resources second */
    ucwa_engine *e = lua_newuserdatauv(L, sizeof *e, 1);
    memset(e, 0, sizeof *e);
    e->epfd = e->tfd = e->efd = -1;
    e->curl_deadline = -1;
    e->armed = -1;
    list_init(&e->xfers);
    list_init(&e->ready);
    luaL_setmetatable(L, UCWA_ENGINE_MT);
    lua_newtable(L);
    lua_setiuservalue(L, 2, UCWA_EUV_ANCHORS);

    ucwa_http_opts *h = &e->http;
    h->verify = ucwa_opt_boolean(L, 1, 1, "verify", 1);
    h->max_body = (size_t)ucwa_opt_number(L, 1, 1, "max_body", DEFAULT_MAX_BODY, 0, 1e15);
    /* libcurl refuses a request of over 1 MiB and a response header line of
     * over 100 KiB, both as "Out of memory": the caps sit below */
    h->max_header = (size_t)ucwa_opt_number(L, 1, 1, "max_header", DEFAULT_MAX_HEADER, 256, 512 * 1024);
    h->max_response_header =
        (size_t)ucwa_opt_number(L, 1, 1, "max_response_header", DEFAULT_MAX_HEADER, 1024, 64 * 1024 * 1024);
    h->connect_timeout_ms = ucwa_secs_to_ms(ucwa_opt_number(L, 1, 1, "connect_timeout", 10, 0, HUGE_VAL));
    h->timeout_ms = ucwa_secs_to_ms(ucwa_opt_number(L, 1, 1, "timeout", 60, 0, HUGE_VAL));
    double maxc = ucwa_opt_number(L, 1, 1, "max_connections", 1024, 0, 1e6);
    h->user_agent = opt_strdup(L, 1, "user_agent", DEFAULT_UA);
    h->ca_file = opt_strdup(L, 1, "ca_file", NULL);
    if (!h->ca_file && h->verify) { /* libcurl's default bundle, asked once (CURLINFO_CAINFO, 7.84+) */
        CURL *c = curl_easy_init();
        char *ca = NULL;
        if (c && curl_easy_getinfo(c, CURLINFO_CAINFO, &ca) == CURLE_OK && ca && access(ca, R_OK) == 0)
            h->default_ca = strdup(ca);
        if (c) curl_easy_cleanup(c);
    }
    if (lua_getfield(L, 1, "proxy") == LUA_TBOOLEAN) {
        if (lua_toboolean(L, -1)) ucwa_argerror(L, 1, "option 'proxy' must be a string or false (got true)");
        h->proxy = strdup(""); /* false: no proxy, whatever the environment says */
        if (!h->proxy) return luaL_error(L, "out of memory");
    } else {
        h->proxy = opt_strdup(L, 1, "proxy", NULL);
    }
    lua_pop(L, 1);
    opt_resolve(L, h);
    e->rng = (uint64_t)ucwa_now() ^ (uint64_t)(uintptr_t)e ^ 0x9E3779B97F4A7C15ULL;
    if (!e->rng) e->rng = 1;

    /* The host's descriptor limit (RLIMIT_NOFILE) is its business: each transfer
     * holds a socket, and a transfer that cannot get one fails with
     * TooManyOpenFiles (request.c), as the engine does here. */
    e->epfd = epoll_create1(EPOLL_CLOEXEC);
    e->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    e->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    e->multi = curl_multi_init();
    if (e->epfd < 0 || e->tfd < 0 || e->efd < 0 || !e->multi) {
        int err = errno;
        if (e->multi) curl_multi_cleanup(e->multi);
        e->multi = NULL;
        close_fds(e);
        http_opts_free(h);
        if (err == EMFILE || err == ENFILE)
            return luaL_error(L,
                              "cannot create engine: %s (the descriptor limit, RLIMIT_NOFILE, is reached: "
                              "raise it with ulimit -n or setrlimit)",
                              strerror(err));
        return luaL_error(L, "cannot create engine: %s", strerror(err));
    }
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = EPOLLIN;
    ev.data.fd = e->tfd;
    epoll_ctl(e->epfd, EPOLL_CTL_ADD, e->tfd, &ev);
    ev.data.fd = e->efd;
    epoll_ctl(e->epfd, EPOLL_CTL_ADD, e->efd, &ev);
    curl_multi_setopt(e->multi, CURLMOPT_SOCKETFUNCTION, sock_cb);
    curl_multi_setopt(e->multi, CURLMOPT_SOCKETDATA, (void *)e);
    curl_multi_setopt(e->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(e->multi, CURLMOPT_TIMERDATA, (void *)e);
    e->max_idle = (long)maxc;
    set_maxconnects(e);
    return 1;
}

static const luaL_Reg engine_methods[] = {
    {"step", l_step},   {"pollfd", l_pollfd}, {"events", l_events}, {"timeout", l_timeout},
    {"stats", l_stats}, {"closed", l_closed}, {"now", l_now}, {NULL, NULL},
};

void ucwa_open_loop(lua_State *L)
{
    static int curl_ready; /* curl_global_init done (once per process) */
    if (!curl_ready) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) luaL_error(L, "curl_global_init failed");
        curl_ready = 1;
    }
    ucwa_class(L, UCWA_ENGINE_MT, engine_methods, l_close, l_tostring, UCWA_CLOSABLE);
    lua_pushcfunction(L, l_engine);
    lua_setfield(L, -2, "engine");
}

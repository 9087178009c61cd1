/* The transport: a libcurl multi engine on epoll + timerfd.
 *
 *   local eng = core.engine{ verify=, ca_file=, max_body=, user_agent=, connect_timeout=,
 *                            timeout=, max_connections=, error_factory= }
 *   eng:request{ method=, url=, headers=, body=, timeout=, callback= }  -> request
 *   eng:timer(seconds, fn) -> timer
 *   eng:step(timeout) eng:pollfd() eng:events() eng:timeout() eng:stats() eng:close()
 *
 * curl callbacks only touch C state; Lua callbacks run from step()'s delivery
 * phase, one completion at a time, each popped before its callback runs. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/timerfd.h>

#include "engine.h"

#define MAX_EVENTS 256
#define DEFAULT_MAX_BODY (16u * 1024u * 1024u)
#define DEFAULT_UA "lua-ucwa/0.1"
#define ERROR_MT "ucwa.transport_error"

/* ---------------------------------------------------------------- helpers */

void ucwa_list_init(ucwa_node *h) { h->prev = h->next = h; }

void ucwa_list_push(ucwa_node *h, ucwa_node *n)
{
    n->prev = h->prev;
    n->next = h;
    h->prev->next = n;
    h->prev = n;
}

void ucwa_list_unlink(ucwa_node *n)
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

static int buf_append(ucwa_buf *b, const char *p, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) return -1;
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

static void buf_free(ucwa_buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

double ucwa_engine_random(ucwa_engine *e)
{
    /* xorshift64*: jitter only, not security */
    uint64_t x = e->rng;
    x ^= x >> 12; x ^= x << 25; x ^= x >> 27;
    e->rng = x;
    return (double)((x * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
}

static int curl_ready;   /* curl_global_init done (once per process) */
static int fd_raised;

static long raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return -1;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0) return -1;
    }
    return rl.rlim_cur == RLIM_INFINITY ? -1 : (long)rl.rlim_cur;
}

static int l_raise_fd_limit(lua_State *L)
{
    long n = raise_fd_limit();
    fd_raised = 1;
    if (n < 0) lua_pushnil(L); else lua_pushinteger(L, n);
    return 1;
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

/* ---------------------------------------------------------------- timers (min-heap) */

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

int ucwa_timer_reserve(ucwa_engine *e, size_t more)
{
    if (e->n_heap + more <= e->cap_heap) return 0;
    size_t cap = e->cap_heap ? e->cap_heap : 16;
    while (cap < e->n_heap + more) cap *= 2;
    ucwa_timer **h = realloc(e->heap, cap * sizeof *h);
    if (!h) return -1;
    e->heap = h;
    e->cap_heap = cap;
    return 0;
}

/* arms t (which must be idle) `seconds` from now. Room is reserved beforehand
 * (l_timer, channel start), so this cannot fail short of a broken invariant. */
void ucwa_timer_arm(ucwa_engine *e, ucwa_timer *t, double seconds)
{
    if (ucwa_timer_reserve(e, 1) != 0) abort();
    if (!(seconds > 0)) seconds = 0;
    if (seconds > 1e9) seconds = 1e9;
    t->deadline = ucwa_now() + (int64_t)(seconds * 1e9);
    t->seq = ++e->seq;
    t->eng = e;
    t->state = UCWA_RUNNING;
    t->heap_idx = e->n_heap;
    e->heap[e->n_heap++] = t;
    heap_up(e, t->heap_idx);
}

void ucwa_timer_disarm(ucwa_timer *t)
{
    ucwa_engine *e = t->eng;
    if (!e) return;
    if (t->state == UCWA_RUNNING) {
        heap_remove(e, t);
    } else if (t->state == UCWA_READY) {
        ucwa_list_unlink(&t->w.link);
        e->n_ready--;
    }
    t->state = UCWA_IDLE;
    t->eng = NULL;
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
void ucwa_engine_rearm(ucwa_engine *e, int force)
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
    if (d == 0) d = 1;            /* 0 would disarm; an absolute time in the past fires at once */
    if (!force) {
        if (e->armed < 0) {
            if (d < 0) return;                            /* idle and disarmed */
        } else if (e->armed > ucwa_now()) {               /* armed, not fired yet */
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
        epoll_ctl(e->epfd, EPOLL_CTL_DEL, s, NULL);   /* curl forgets socketp itself */
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
        curl_multi_assign(e->multi, s, (void *)e);  /* marks the socket as added */
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

static size_t write_cb(char *p, size_t size, size_t n, void *ud)
{
    ucwa_req *r = ud;
    size_t len = size * n;
    if (r->body.len + len > r->max_body) {
        r->too_large = 1;
        return 0;                       /* CURLE_WRITE_ERROR */
    }
    if (buf_append(&r->body, p, len) != 0) return 0;
    return len;
}

static size_t header_cb(char *p, size_t size, size_t n, void *ud)
{
    ucwa_req *r = ud;
    size_t len = size * n, i, ne;
    if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) {     /* a new response (after 1xx) */
        r->head.len = 0;
        return len;
    }
    while (len && (p[len - 1] == '\n' || p[len - 1] == '\r')) len--;
    if (len == 0) return size * n;
    if ((p[0] == ' ' || p[0] == '\t') && r->head.len) { /* obsolete line folding */
        while (len && (*p == ' ' || *p == '\t')) { p++; len--; }
        r->head.len--;                                   /* drop the value's NUL */
        if (buf_append(&r->head, " ", 1) || buf_append(&r->head, p, len) ||
            buf_append(&r->head, "", 1)) return 0;
        return size * n;
    }
    for (ne = 0; ne < len && p[ne] != ':'; ne++) {}
    if (ne == len || ne == 0) return size * n;          /* not a header line */
    size_t start = r->head.len;
    if (buf_append(&r->head, p, ne) || buf_append(&r->head, "", 1)) return 0;
    for (i = start; i < start + ne; i++) {
        char c = r->head.p[i];
        if (c >= 'A' && c <= 'Z') r->head.p[i] = (char)(c + 32);
    }
    size_t vs = ne + 1, ve = len;
    while (vs < ve && (p[vs] == ' ' || p[vs] == '\t')) vs++;
    while (ve > vs && (p[ve - 1] == ' ' || p[ve - 1] == '\t')) ve--;
    if (buf_append(&r->head, p + vs, ve - vs) || buf_append(&r->head, "", 1)) return 0;
    return size * n;
}

/* ---------------------------------------------------------------- requests (C side) */

/* the easy handle must be out of the multi handle already */
static void req_release_curl(ucwa_req *r)
{
    if (r->easy) {
        curl_easy_cleanup(r->easy);
        r->easy = NULL;
    }
    if (r->hdrs) {
        curl_slist_free_all(r->hdrs);
        r->hdrs = NULL;
    }
}

void ucwa_req_free(ucwa_req *r)
{
    req_release_curl(r);
    buf_free(&r->body);
    buf_free(&r->head);
    free(r->eff_url);
    r->eff_url = NULL;
    free(r->url);
    r->url = NULL;
}

void ucwa_req_abort(ucwa_req *r)
{
    ucwa_engine *e = r->eng;
    if (e) {
        if (r->state == UCWA_RUNNING) {
            if (e->multi && r->easy) curl_multi_remove_handle(e->multi, r->easy);
            ucwa_list_unlink(&r->w.link);
            e->n_inflight--;
        } else if (r->state == UCWA_READY) {
            ucwa_list_unlink(&r->w.link);
            e->n_ready--;
        }
        req_release_curl(r);
    }
    r->eng = NULL;
    r->state = UCWA_IDLE;
    ucwa_req_free(r);
}

const char *ucwa_req_start(ucwa_engine *e, ucwa_req *r, ucwa_req_spec *s)
{
    ucwa_req_free(r);
    CURL *c = curl_easy_init();
    if (!c) {
        curl_slist_free_all(s->hdrs);
        return "curl_easy_init failed";
    }
    r->easy = c;
    r->hdrs = s->hdrs;
    r->max_body = e->max_body;
    r->too_large = 0;
    r->cancelled = 0;
    r->status = 0;
    r->result = CURLE_OK;
    r->errbuf[0] = '\0';
    r->url = strdup(s->url);
    if (!r->url) { ucwa_req_free(r); return "out of memory"; }

    CURLcode rc = CURLE_OK;
#define SET(opt, val) do { if (rc == CURLE_OK) rc = curl_easy_setopt(c, opt, val); } while (0)
    SET(CURLOPT_URL, s->url);
    SET(CURLOPT_PRIVATE, (void *)r);
    SET(CURLOPT_WRITEFUNCTION, write_cb);
    SET(CURLOPT_WRITEDATA, (void *)r);
    SET(CURLOPT_HEADERFUNCTION, header_cb);
    SET(CURLOPT_HEADERDATA, (void *)r);
    SET(CURLOPT_ERRORBUFFER, r->errbuf);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_ACCEPT_ENCODING, "");
    SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)e->max_body);
    SET(CURLOPT_USERAGENT, e->user_agent);
    SET(CURLOPT_CONNECTTIMEOUT_MS, e->connect_timeout_ms);
    SET(CURLOPT_TIMEOUT_MS, s->timeout_ms);
    SET(CURLOPT_SSL_VERIFYPEER, e->verify ? 1L : 0L);
    SET(CURLOPT_SSL_VERIFYHOST, e->verify ? 2L : 0L);
    if (e->ca_file) SET(CURLOPT_CAINFO, e->ca_file);
    if (e->proxy) SET(CURLOPT_PROXY, e->proxy);
    SET(CURLOPT_HTTP_VERSION, e->http2 ? (long)CURL_HTTP_VERSION_2TLS : (long)CURL_HTTP_VERSION_1_1);
    if (r->hdrs) SET(CURLOPT_HTTPHEADER, r->hdrs);
    const char *m = s->method;
    if (strcmp(m, "GET") == 0 && !s->has_body) {
        SET(CURLOPT_HTTPGET, 1L);
    } else if (strcmp(m, "HEAD") == 0) {
        SET(CURLOPT_NOBODY, 1L);
    } else {
        if (strcmp(m, "POST") != 0) SET(CURLOPT_CUSTOMREQUEST, m);
        if (s->has_body || strcmp(m, "POST") == 0 || strcmp(m, "PUT") == 0 ||
            strcmp(m, "PATCH") == 0) {
            SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(s->has_body ? s->body_len : 0));
            SET(CURLOPT_POSTFIELDS, s->has_body ? s->body : "");
        }
    }
#undef SET
    if (rc != CURLE_OK) {
        ucwa_req_free(r);
        return curl_easy_strerror(rc);
    }
    if (curl_multi_add_handle(e->multi, c) != CURLM_OK) {
        ucwa_req_free(r);
        return "curl_multi_add_handle failed";
    }
    r->eng = e;
    r->state = UCWA_RUNNING;
    ucwa_list_push(&e->inflight, &r->w.link);
    e->n_inflight++;
    return NULL;
}

const char *ucwa_req_header(ucwa_req *r, const char *name)
{
    size_t i = 0;
    while (i < r->head.len) {
        const char *n = r->head.p + i;
        size_t nl = strlen(n);
        const char *v = n + nl + 1;
        if (strcasecmp(n, name) == 0) return v;
        i += nl + 1 + strlen(v) + 1;
    }
    return NULL;
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
        ucwa_req *r = NULL;
        curl_easy_getinfo(c, CURLINFO_PRIVATE, (char **)&r);
        if (!r || r->easy != c) continue;
        r->result = res;
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
        char *eff = NULL;
        curl_easy_getinfo(c, CURLINFO_EFFECTIVE_URL, &eff);
        if (eff) r->eff_url = strdup(eff);
        curl_multi_remove_handle(e->multi, c);   /* msg is invalid from here */
        req_release_curl(r);
        ucwa_list_unlink(&r->w.link);
        e->n_inflight--;
        r->state = UCWA_READY;
        ucwa_list_push(&e->ready, &r->w.link);
        e->n_ready++;
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

/* ---------------------------------------------------------------- Lua values for results */

void ucwa_push_response(lua_State *L, ucwa_req *r)
{
    lua_createtable(L, 0, 4);
    lua_pushinteger(L, r->status);
    lua_setfield(L, -2, "status");
    lua_newtable(L);
    size_t i = 0;
    while (i < r->head.len) {
        const char *n = r->head.p + i;
        size_t nl = strlen(n);
        const char *v = n + nl + 1;
        size_t vl = strlen(v);
        if (lua_getfield(L, -1, n) == LUA_TSTRING) {
            lua_pushliteral(L, ", ");
            lua_pushlstring(L, v, vl);
            lua_concat(L, 3);
        } else {
            lua_pop(L, 1);
            lua_pushlstring(L, v, vl);
        }
        lua_setfield(L, -2, n);
        i += nl + 1 + vl + 1;
    }
    lua_setfield(L, -2, "headers");
    lua_pushlstring(L, r->body.p ? r->body.p : "", r->body.len);
    lua_setfield(L, -2, "body");
    lua_pushstring(L, r->eff_url ? r->eff_url : r->url);
    lua_setfield(L, -2, "url");
}

static const char *error_code(ucwa_req *r)
{
    if (r->cancelled) return "Cancelled";
    if (r->too_large) return "TooLarge";
    switch (r->result) {
    case CURLE_OPERATION_TIMEDOUT: return "Timeout";
    case CURLE_FILESIZE_EXCEEDED: return "TooLarge";
    case CURLE_SSL_CONNECT_ERROR: case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_ENGINE_NOTFOUND: case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_CERTPROBLEM: case CURLE_SSL_CIPHER: case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_SSL_CACERT_BADFILE: case CURLE_SSL_SHUTDOWN_FAILED: case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_ISSUER_ERROR: case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS: case CURLE_SSL_CLIENTCERT: case CURLE_USE_SSL_FAILED:
        return "TlsError";
    default: return "NetworkError";
    }
}

void ucwa_make_error(lua_State *L, int eidx)
{
    eidx = lua_absindex(L, eidx);
    int t = lua_gettop(L);
    /* 1. the engine's error_factory(t) -> object */
    if (lua_getiuservalue(L, eidx, UCWA_EUV_FACTORY) == LUA_TFUNCTION) {
        lua_pushvalue(L, t);
        if (lua_pcall(L, 1, 1, 0) == LUA_OK && lua_istable(L, -1)) {
            lua_replace(L, t);
            return;
        }
    }
    lua_settop(L, t);
    if (lua_getiuservalue(L, eidx, UCWA_EUV_MODULE) == LUA_TTABLE) {
        /* 2. core.error_mt */
        if (lua_getfield(L, -1, "error_mt") == LUA_TTABLE) {
            lua_setmetatable(L, t);
            lua_settop(L, t);
            return;
        }
        lua_pop(L, 1);
        /* 3. core.error(t) */
        if (lua_getfield(L, -1, "error") == LUA_TFUNCTION) {
            lua_pushvalue(L, t);
            if (lua_pcall(L, 1, 1, 0) == LUA_OK && lua_istable(L, -1)) {
                lua_replace(L, t);
                lua_settop(L, t);
                return;
            }
        }
    }
    lua_settop(L, t);
    /* 4. fallback metatable with __tostring */
    luaL_setmetatable(L, ERROR_MT);
}

/* pushes sep and tostring(t[k]) for the error table t at 1, unless t[k] is nil */
static void append_field(lua_State *L, const char *k, const char *sep)
{
    if (lua_getfield(L, 1, k) != LUA_TNIL) {
        lua_pushstring(L, sep);
        luaL_tolstring(L, -2, NULL);
        lua_remove(L, -3);
    } else lua_pop(L, 1);
}

static int error_tostring(lua_State *L)
{
    int base = lua_gettop(L);
    lua_getfield(L, 1, "code");
    luaL_tolstring(L, -1, NULL);
    lua_remove(L, -2);
    append_field(L, "status", " ");
    append_field(L, "subcode", "/");
    append_field(L, "message", ": ");
    lua_concat(L, lua_gettop(L) - base);
    return 1;
}

void ucwa_push_transport_error(lua_State *L, int eidx, ucwa_req *r)
{
    eidx = lua_absindex(L, eidx);
    const char *code = error_code(r);
    lua_createtable(L, 0, 5);
    lua_pushstring(L, code);
    lua_setfield(L, -2, "code");
    if (r->cancelled)
        lua_pushliteral(L, "request cancelled");
    else if (r->too_large)
        lua_pushfstring(L, "response body larger than max_body (%I bytes)", (lua_Integer)r->max_body);
    else if (r->errbuf[0])
        lua_pushstring(L, r->errbuf);     /* curl's messages name host/port, never headers */
    else
        lua_pushstring(L, curl_easy_strerror(r->result));
    lua_setfield(L, -2, "message");
    if (!r->cancelled) {
        lua_pushinteger(L, (lua_Integer)r->result);
        lua_setfield(L, -2, "curl_code");
    }
    if (r->url) {
        lua_pushstring(L, r->url);
        lua_setfield(L, -2, "url");
    }
    ucwa_make_error(L, eidx);
}

/* headers table -> slist; raises on bad names or values (values never echoed) */
struct curl_slist *ucwa_headers_from_table(lua_State *L, int idx, int *has_ct)
{
    struct curl_slist *sl = NULL;
    *has_ct = 0;
    if (lua_isnoneornil(L, idx)) return NULL;
    idx = lua_absindex(L, idx);
    luaL_checktype(L, idx, LUA_TTABLE);
    luaL_Buffer b;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        if (lua_type(L, -2) != LUA_TSTRING) {
            curl_slist_free_all(sl);
            luaL_error(L, "header names must be strings");
        }
        size_t nl, vl;
        const char *n = lua_tolstring(L, -2, &nl);
        if (lua_type(L, -1) == LUA_TBOOLEAN && !lua_toboolean(L, -1)) { lua_pop(L, 1); continue; }
        if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER) {
            curl_slist_free_all(sl);
            luaL_error(L, "header '%s': value must be a string", n);
        }
        lua_pushvalue(L, -1);
        const char *v = lua_tolstring(L, -1, &vl);
        size_t i;
        int bad = nl == 0;
        for (i = 0; i < nl; i++) {
            unsigned char c = (unsigned char)n[i];
            if (c <= 32 || c >= 127 || c == ':') bad = 1;
        }
        if (bad) {
            curl_slist_free_all(sl);
            luaL_error(L, "bad header name");
        }
        for (i = 0; i < vl; i++)
            if (v[i] == '\r' || v[i] == '\n' || v[i] == '\0') {
                curl_slist_free_all(sl);
                luaL_error(L, "header '%s': value contains CR, LF or NUL", n);
            }
        if (strcasecmp(n, "content-type") == 0) *has_ct = 1;
        luaL_buffinit(L, &b);
        luaL_addlstring(&b, n, nl);
        if (vl) {
            luaL_addstring(&b, ": ");
            luaL_addlstring(&b, v, vl);
        } else {
            luaL_addstring(&b, ";");   /* curl's way to send an empty header */
        }
        luaL_pushresult(&b);
        struct curl_slist *nsl = curl_slist_append(sl, lua_tostring(L, -1));
        if (!nsl) {
            curl_slist_free_all(sl);
            luaL_error(L, "out of memory");
        }
        sl = nsl;
        lua_pop(L, 3);
    }
    return sl;
}

/* ---------------------------------------------------------------- engine object */

ucwa_engine *ucwa_check_engine(lua_State *L, int idx)
{
    ucwa_engine *e = luaL_checkudata(L, idx, UCWA_ENGINE_MT);
    if (!e->multi) luaL_error(L, "engine is closed");
    return e;
}

static void engine_close(lua_State *L, ucwa_engine *e, int eidx)
{
    free(e->user_agent);          /* also when a bad option stopped engine{} half-way */
    free(e->ca_file);
    free(e->proxy);
    e->user_agent = e->ca_file = e->proxy = NULL;
    if (!e->multi) return;
    ucwa_node *n, *next;
    /* requests in flight and completions not yet delivered: no callbacks at teardown */
    for (n = e->inflight.next; n != &e->inflight; n = next) {
        next = n->next;
        ucwa_req *r = (ucwa_req *)n;
        if (r->w.ch) ucwa_channel_engine_closed(r->w.ch);
        ucwa_req_abort(r);
    }
    for (n = e->ready.next; n != &e->ready; n = next) {
        next = n->next;
        ucwa_work *w = (ucwa_work *)n;
        if (w->ch) ucwa_channel_engine_closed(w->ch);
        if (w->kind == UCWA_WORK_REQ) ucwa_req_abort((ucwa_req *)w);
        else ucwa_timer_disarm((ucwa_timer *)w);
    }
    while (e->n_heap) {
        ucwa_timer *t = e->heap[0];
        if (t->w.ch) ucwa_channel_engine_closed(t->w.ch);
        ucwa_timer_disarm(t);
    }
    free(e->heap);
    e->heap = NULL;
    e->cap_heap = 0;
    curl_multi_cleanup(e->multi);
    e->multi = NULL;
    if (e->epfd >= 0) close(e->epfd);
    if (e->tfd >= 0) close(e->tfd);
    if (e->efd >= 0) close(e->efd);
    e->epfd = e->tfd = e->efd = -1;
    /* drop the anchors: everything they held is finished */
    lua_newtable(L);
    lua_setiuservalue(L, eidx, UCWA_EUV_ANCHORS);
}

static int l_engine_close(lua_State *L)
{
    ucwa_engine *e = luaL_checkudata(L, 1, UCWA_ENGINE_MT);
    engine_close(L, e, 1);        /* from a callback too: step() notices and returns */
    return 0;
}

double ucwa_opt_number(lua_State *L, int t, const char *k, double def, const char *who)
{
    double v = def;
    if (lua_getfield(L, t, k) != LUA_TNIL) {
        if (!lua_isnumber(L, -1)) luaL_error(L, "%s'%s' must be a number", who, k);
        v = lua_tonumber(L, -1);
    }
    lua_pop(L, 1);
    return v;
}

static double opt_number(lua_State *L, int t, const char *k, double def)
{
    return ucwa_opt_number(L, t, k, def, "option ");
}

static char *opt_strdup(lua_State *L, int t, const char *k, const char *def)
{
    const char *s = def;
    if (lua_getfield(L, t, k) != LUA_TNIL) {
        if (lua_type(L, -1) != LUA_TSTRING) luaL_error(L, "option '%s' must be a string", k);
        s = lua_tostring(L, -1);
    }
    char *r = s ? strdup(s) : NULL;
    lua_pop(L, 1);
    if (s && !r) luaL_error(L, "out of memory");
    return r;
}

static int l_engine_new(lua_State *L)
{
    if (lua_isnoneornil(L, 1)) { lua_settop(L, 0); lua_newtable(L); }
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    /* userdata first, C resources second */
    ucwa_engine *e = lua_newuserdatauv(L, sizeof *e, 3);
    memset(e, 0, sizeof *e);
    e->epfd = e->tfd = e->efd = -1;
    e->curl_deadline = -1;
    e->armed = -1;
    ucwa_list_init(&e->inflight);
    ucwa_list_init(&e->ready);
    luaL_setmetatable(L, UCWA_ENGINE_MT);
    lua_newtable(L);
    lua_setiuservalue(L, 2, UCWA_EUV_ANCHORS);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_setiuservalue(L, 2, UCWA_EUV_MODULE);
    if (lua_getfield(L, 1, "error_factory") != LUA_TNIL) {
        luaL_checktype(L, -1, LUA_TFUNCTION);
        lua_setiuservalue(L, 2, UCWA_EUV_FACTORY);
    } else lua_pop(L, 1);

    lua_getfield(L, 1, "verify");
    e->verify = lua_isnil(L, -1) ? 1 : lua_toboolean(L, -1);
    lua_pop(L, 1);
    double mb = opt_number(L, 1, "max_body", DEFAULT_MAX_BODY);
    if (!(mb >= 0)) luaL_error(L, "option 'max_body' must be >= 0");
    e->max_body = mb > 1e15 ? (size_t)1e15 : (size_t)mb;
    e->connect_timeout_ms = ucwa_secs_to_ms(opt_number(L, 1, "connect_timeout", 10));
    e->default_timeout_ms = ucwa_secs_to_ms(opt_number(L, 1, "timeout", 60));
    double maxc = opt_number(L, 1, "max_connections", 1024);
    if (!(maxc >= 0)) maxc = 0;
    if (maxc > 1e6) maxc = 1e6;
    e->user_agent = opt_strdup(L, 1, "user_agent", DEFAULT_UA);
    e->ca_file = opt_strdup(L, 1, "ca_file", NULL);
    lua_getfield(L, 1, "http2");
    e->http2 = lua_toboolean(L, -1);
    lua_pop(L, 1);
    if (lua_getfield(L, 1, "proxy") == LUA_TBOOLEAN && !lua_toboolean(L, -1)) {
        lua_pop(L, 1);
        e->proxy = strdup("");               /* false: no proxy, whatever the environment says */
        if (!e->proxy) return luaL_error(L, "out of memory");
    } else {
        lua_pop(L, 1);
        e->proxy = opt_strdup(L, 1, "proxy", NULL);
    }
    e->rng = (uint64_t)ucwa_now() ^ (uint64_t)(uintptr_t)e ^ 0x9E3779B97F4A7C15ULL;
    if (!e->rng) e->rng = 1;

    if (!fd_raised) { raise_fd_limit(); fd_raised = 1; }
    e->epfd = epoll_create1(EPOLL_CLOEXEC);
    e->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    e->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    e->multi = curl_multi_init();
    if (e->epfd < 0 || e->tfd < 0 || e->efd < 0 || !e->multi) {
        if (e->multi) { curl_multi_cleanup(e->multi); e->multi = NULL; }
        if (e->epfd >= 0) close(e->epfd);
        if (e->tfd >= 0) close(e->tfd);
        if (e->efd >= 0) close(e->efd);
        e->epfd = e->tfd = e->efd = -1;
        free(e->user_agent); free(e->ca_file); free(e->proxy);
        e->user_agent = e->ca_file = e->proxy = NULL;
        return luaL_error(L, "cannot create engine: %s", strerror(errno));
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
    curl_multi_setopt(e->multi, CURLMOPT_MAXCONNECTS, (long)maxc);
    return 1;
}

/* ---- requests (Lua side): userdata = ucwa_req; uv1 callback, uv2 body, uv3 engine */

static int l_request(lua_State *L)
{
    ucwa_engine *e = ucwa_check_engine(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    lua_getfield(L, 2, "method");               /* 3 */
    const char *method = luaL_optstring(L, 3, "GET");
    lua_getfield(L, 2, "url");                  /* 4 */
    if (lua_type(L, 4) != LUA_TSTRING) return luaL_error(L, "request: 'url' must be a string");
    const char *url = lua_tostring(L, 4);
    lua_getfield(L, 2, "callback");             /* 5 */
    if (!lua_isfunction(L, 5)) return luaL_error(L, "request: 'callback' must be a function");
    lua_getfield(L, 2, "body");                 /* 6 */
    if (!lua_isnil(L, 6) && lua_type(L, 6) != LUA_TSTRING)
        return luaL_error(L, "request: 'body' must be a string");
    double timeout = e->default_timeout_ms / 1000.0;
    if (lua_getfield(L, 2, "timeout") != LUA_TNIL) {   /* 7 */
        if (!lua_isnumber(L, 7)) return luaL_error(L, "request: 'timeout' must be a number");
        timeout = lua_tonumber(L, 7);
    }
    size_t i, ml = strlen(method);
    for (i = 0; i < ml; i++)
        if (method[i] < 'A' || method[i] > 'Z') return luaL_error(L, "request: bad method");
    if (ml == 0) return luaL_error(L, "request: bad method");

    ucwa_req *r = lua_newuserdatauv(L, sizeof *r, 3);   /* 8 */
    memset(r, 0, sizeof *r);
    r->w.kind = UCWA_WORK_REQ;
    luaL_setmetatable(L, UCWA_REQUEST_MT);
    lua_pushvalue(L, 5);
    lua_setiuservalue(L, 8, 1);
    lua_pushvalue(L, 6);
    lua_setiuservalue(L, 8, 2);
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, 8, 3);

    lua_getfield(L, 2, "headers");              /* 9 */
    int has_ct = 0;
    struct curl_slist *sl = ucwa_headers_from_table(L, 9, &has_ct);
    int has_body = !lua_isnil(L, 6);
    struct curl_slist *t = curl_slist_append(sl, "Expect:");
    if (t) sl = t;
    if (!has_ct) {
        t = curl_slist_append(sl, "Content-Type:");
        if (t) sl = t;
    }
    ucwa_req_spec s;
    memset(&s, 0, sizeof s);
    s.method = method;
    s.url = url;
    s.hdrs = sl;
    if (has_body) s.body = lua_tolstring(L, 6, &s.body_len);
    s.has_body = has_body;
    s.timeout_ms = ucwa_secs_to_ms(timeout);
    const char *err = ucwa_req_start(e, r, &s);
    if (err) return luaL_error(L, "request: %s", err);
    ucwa_anchor(L, 1, r, 8);
    ucwa_engine_kick(e);          /* start it now: connect, or send on a kept-alive connection */
    ucwa_engine_rearm(e, 0);
    lua_pushvalue(L, 8);
    return 1;
}

static int l_request_cancel(lua_State *L)
{
    ucwa_req *r = luaL_checkudata(L, 1, UCWA_REQUEST_MT);
    ucwa_engine *e = r->eng;
    if (!e || !e->multi || r->cancelled) { lua_pushboolean(L, 0); return 1; }
    if (r->state == UCWA_RUNNING) {
        curl_multi_remove_handle(e->multi, r->easy);
        req_release_curl(r);
        ucwa_list_unlink(&r->w.link);
        e->n_inflight--;
        r->state = UCWA_READY;
        ucwa_list_push(&e->ready, &r->w.link);
        e->n_ready++;
    }
    r->cancelled = 1;           /* delivered as a Cancelled error on the next step */
    buf_free(&r->body);
    buf_free(&r->head);
    ucwa_engine_rearm(e, 0);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_request_gc(lua_State *L)
{
    ucwa_req *r = luaL_checkudata(L, 1, UCWA_REQUEST_MT);
    ucwa_req_abort(r);
    return 0;
}

static int l_request_tostring(lua_State *L)
{
    ucwa_req *r = luaL_checkudata(L, 1, UCWA_REQUEST_MT);
    const char *st = r->state == UCWA_RUNNING ? "running" : r->state == UCWA_READY ? "done" : "idle";
    lua_pushfstring(L, "ucwa.request (%s): %p", st, (void *)r);
    return 1;
}

/* ---- timers (Lua side): userdata = ucwa_timer; uv1 fn, uv2 engine */

static int l_timer(lua_State *L)
{
    ucwa_engine *e = ucwa_check_engine(L, 1);
    double secs = luaL_checknumber(L, 2);
    luaL_checktype(L, 3, LUA_TFUNCTION);
    lua_settop(L, 3);
    if (ucwa_timer_reserve(e, e->n_channels + 1) != 0) return luaL_error(L, "out of memory");
    ucwa_timer *t = lua_newuserdatauv(L, sizeof *t, 2);
    memset(t, 0, sizeof *t);
    t->w.kind = UCWA_WORK_TIMER;
    luaL_setmetatable(L, UCWA_TIMER_MT);
    lua_pushvalue(L, 3);
    lua_setiuservalue(L, 4, 1);
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, 4, 2);
    ucwa_timer_arm(e, t, secs);
    ucwa_anchor(L, 1, t, 4);
    ucwa_engine_rearm(e, 0);
    return 1;
}

static int l_timer_cancel(lua_State *L)
{
    ucwa_timer *t = luaL_checkudata(L, 1, UCWA_TIMER_MT);
    ucwa_engine *e = t->eng;
    if (!e || !e->multi || t->state == UCWA_IDLE) { lua_pushboolean(L, 0); return 1; }
    ucwa_timer_disarm(t);
    lua_getiuservalue(L, 1, 2);
    ucwa_unanchor(L, -1, t);
    lua_pop(L, 1);
    lua_pushnil(L);
    lua_setiuservalue(L, 1, 1);
    ucwa_engine_rearm(e, 0);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_timer_gc(lua_State *L)
{
    ucwa_timer *t = luaL_checkudata(L, 1, UCWA_TIMER_MT);
    ucwa_timer_disarm(t);
    return 0;
}

/* ---- step */

/* delivers one ready item; returns with the callback's status on the stack top
 * (LUA_OK, or an error object to rethrow). eidx = engine. */
static int deliver(lua_State *L, ucwa_engine *e, int eidx)
{
    ucwa_node *n = e->ready.next;
    ucwa_work *w = (ucwa_work *)n;
    ucwa_list_unlink(n);
    e->n_ready--;
    if (w->ch) {
        if (w->kind == UCWA_WORK_REQ) { ((ucwa_req *)w)->state = UCWA_IDLE; ((ucwa_req *)w)->eng = NULL; }
        else { ((ucwa_timer *)w)->state = UCWA_IDLE; ((ucwa_timer *)w)->eng = NULL; }
        return ucwa_channel_deliver(L, eidx, w);
    }
    int top = lua_gettop(L);
    lua_getiuservalue(L, eidx, UCWA_EUV_ANCHORS);
    lua_pushlightuserdata(L, w);
    lua_rawget(L, -2);                       /* the object */
    lua_pushlightuserdata(L, w);
    lua_pushnil(L);
    lua_rawset(L, -4);                       /* unanchor */
    int obj = lua_gettop(L);
    if (w->kind == UCWA_WORK_TIMER) {
        ucwa_timer *t = (ucwa_timer *)w;
        t->state = UCWA_IDLE;
        t->eng = NULL;
        if (!lua_isuserdata(L, obj)) { lua_settop(L, top); return LUA_OK; }
        lua_getiuservalue(L, obj, 1);
        lua_pushnil(L);
        lua_setiuservalue(L, obj, 1);
        if (!lua_isfunction(L, -1)) { lua_settop(L, top); return LUA_OK; }
        int st = lua_pcall(L, 0, 0, 0);
        if (st != LUA_OK) { lua_replace(L, top + 1); lua_settop(L, top + 1); return st; }
        lua_settop(L, top);
        return LUA_OK;
    }
    ucwa_req *r = (ucwa_req *)w;
    r->state = UCWA_IDLE;
    r->eng = NULL;
    if (!lua_isuserdata(L, obj)) { ucwa_req_free(r); lua_settop(L, top); return LUA_OK; }
    lua_getiuservalue(L, obj, 1);            /* callback */
    lua_pushnil(L);
    lua_setiuservalue(L, obj, 1);
    lua_pushnil(L);
    lua_setiuservalue(L, obj, 2);            /* the body string may go now */
    if (!r->cancelled && r->result == CURLE_OK && r->status > 0) {
        ucwa_push_response(L, r);
        lua_pushnil(L);
    } else {
        lua_pushnil(L);
        ucwa_push_transport_error(L, eidx, r);
    }
    ucwa_req_free(r);
    int st = lua_pcall(L, 2, 0, 0);
    if (st != LUA_OK) { lua_replace(L, top + 1); lua_settop(L, top + 1); return st; }
    lua_settop(L, top);
    return LUA_OK;
}

/* the body of step(), run under lua_pcall so that any error (a callback's, or a
 * memory error while building a response) leaves in_step cleared */
static int step_body(lua_State *L)
{
    ucwa_engine *e = lua_touserdata(L, 1);
    int wait_ms = (int)lua_tointeger(L, 2);
    /* what is already due (e.g. requests added since the last step) goes out first */
    run_timeouts(e);
    collect_done(e);
    if (e->n_ready || (e->n_heap && e->heap[0]->deadline <= ucwa_now())) wait_ms = 0;
    else if (wait_ms < 0 && !e->n_inflight && !e->n_heap && e->curl_deadline < 0) wait_ms = 0;
    ucwa_engine_rearm(e, 0);      /* an expired timerfd would cut the wait short */
    struct epoll_event evs[MAX_EVENTS];
    int n = epoll_wait(e->epfd, evs, MAX_EVENTS, wait_ms), i, running;
    for (i = 0; i < n && e->multi; i++) {
        if (evs[i].data.fd == e->tfd || evs[i].data.fd == e->efd) continue;  /* see rearm */
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
    while (e->n_heap && e->heap[0]->deadline <= now) {
        ucwa_timer *t = e->heap[0];
        heap_remove(e, t);
        t->state = UCWA_READY;
        ucwa_list_push(&e->ready, &t->w.link);
        e->n_ready++;
    }
    /* deliver what is ready now, each item popped before its callback runs; what
     * callbacks add waits for the next step */
    size_t todo = e->n_ready, done = 0;
    lua_settop(L, 1);
    while (todo-- && e->multi && e->n_ready) {
        int st = deliver(L, e, 1);
        done++;
        if (st != LUA_OK) return lua_error(L);
    }
    lua_pushinteger(L, (lua_Integer)done);
    return 1;
}

static int l_step(lua_State *L)
{
    ucwa_engine *e = ucwa_check_engine(L, 1);
    if (e->in_step) return luaL_error(L, "nested step");
    luaL_checkstack(L, 40, "ucwa step");
    int wait_ms;
    if (lua_isnoneornil(L, 2)) wait_ms = -1;
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
    ucwa_engine_rearm(e, 0);
    if (st != LUA_OK) return lua_error(L);   /* the callback's error, as raised */
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
    if (d < 0) { lua_pushnil(L); return 1; }
    int64_t now = ucwa_now();
    lua_pushnumber(L, d <= now ? 0.0 : (double)(d - now) / 1e9);
    return 1;
}

static int l_stats(lua_State *L)
{
    ucwa_engine *e = ucwa_check_engine(L, 1);
    lua_createtable(L, 0, 4);
    lua_pushinteger(L, (lua_Integer)e->n_inflight);
    lua_setfield(L, -2, "transfers");
    lua_pushinteger(L, (lua_Integer)e->n_heap);
    lua_setfield(L, -2, "timers");
    lua_pushinteger(L, (lua_Integer)e->n_ready);
    lua_setfield(L, -2, "ready");
    lua_pushinteger(L, (lua_Integer)e->n_channels);
    lua_setfield(L, -2, "channels");
    return 1;
}

static int l_engine_closed(lua_State *L)
{
    ucwa_engine *e = luaL_checkudata(L, 1, UCWA_ENGINE_MT);
    lua_pushboolean(L, e->multi == NULL);
    return 1;
}

static int l_engine_tostring(lua_State *L)
{
    ucwa_engine *e = luaL_checkudata(L, 1, UCWA_ENGINE_MT);
    lua_pushfstring(L, "ucwa.engine (%s): %p", e->multi ? "open" : "closed", (void *)e);
    return 1;
}

/* ---- core._easy_bench(url, n): the bench's baseline, n sequential blocking GETs
 * on one easy handle (keep-alive), returns seconds. Not part of the API. */

static size_t discard_cb(char *p, size_t size, size_t n, void *ud)
{
    (void)p; (void)ud;
    return size * n;
}

static int l_easy_bench(lua_State *L)
{
    const char *url = luaL_checkstring(L, 1);
    lua_Integer i, n = luaL_checkinteger(L, 2);
    CURL *c = curl_easy_init();
    if (!c) return luaL_error(L, "curl_easy_init failed");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard_cb);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "");
    int64_t t0 = ucwa_now();
    CURLcode rc = CURLE_OK;
    for (i = 0; i < n && rc == CURLE_OK; i++) rc = curl_easy_perform(c);
    int64_t t1 = ucwa_now();
    curl_easy_cleanup(c);
    if (rc != CURLE_OK) return luaL_error(L, "easy GET failed: %s", curl_easy_strerror(rc));
    lua_pushnumber(L, (double)(t1 - t0) / 1e9);
    return 1;
}

/* ---------------------------------------------------------------- registration */

static const luaL_Reg engine_methods[] = {
    {"request", l_request},
    {"timer", l_timer},
    {"channel", ucwa_engine_channel},
    {"step", l_step},
    {"pollfd", l_pollfd},
    {"events", l_events},
    {"timeout", l_timeout},
    {"stats", l_stats},
    {"closed", l_engine_closed},
    {"close", l_engine_close},
    {NULL, NULL}
};

static const luaL_Reg request_methods[] = {
    {"cancel", l_request_cancel},
    {NULL, NULL}
};

static const luaL_Reg timer_methods[] = {
    {"cancel", l_timer_cancel},
    {NULL, NULL}
};

/* One metatable per class: methods in __index, __gc (and __close when the
 * class has a close), __tostring. */
void ucwa_new_class(lua_State *L, const char *name, const luaL_Reg *methods,
                    lua_CFunction gc, lua_CFunction tostring, int with_close)
{
    luaL_newmetatable(L, name);
    lua_newtable(L);
    luaL_setfuncs(L, methods, 0);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, gc);
    lua_setfield(L, -2, "__gc");
    if (with_close) {
        lua_pushcfunction(L, gc);
        lua_setfield(L, -2, "__close");
    }
    if (tostring) {
        lua_pushcfunction(L, tostring);
        lua_setfield(L, -2, "__tostring");
    }
    lua_pop(L, 1);
}

void ucwa_open_engine(lua_State *L)
{
    if (!curl_ready) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
            luaL_error(L, "curl_global_init failed");
        curl_ready = 1;
    }
    ucwa_new_class(L, UCWA_ENGINE_MT, engine_methods, l_engine_close, l_engine_tostring, 1);
    ucwa_new_class(L, UCWA_REQUEST_MT, request_methods, l_request_gc, l_request_tostring, 0);
    ucwa_new_class(L, UCWA_TIMER_MT, timer_methods, l_timer_gc, NULL, 0);
    luaL_newmetatable(L, ERROR_MT);
    lua_pushcfunction(L, error_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);
    ucwa_open_channel(L);

    lua_pushvalue(L, -1);                        /* the module table, as upvalue */
    lua_pushcclosure(L, l_engine_new, 1);
    lua_setfield(L, -2, "engine");
    lua_pushcfunction(L, l_raise_fd_limit);
    lua_setfield(L, -2, "raise_fd_limit");
    lua_pushcfunction(L, l_easy_bench);
    lua_setfield(L, -2, "_easy_bench");
    ucwa_open_url(L);
}

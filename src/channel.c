/* The event channel: the pending-GET (P-GET) loop of UCWA, in C.
 *
 *   local ch = eng:channel{ url=, headers=, timeout=180, low=, medium=, priority=,
 *                           on_batch=, on_error=, backoff={initial=0.5, max=30},
 *                           grace=20, client_timeout=, min_interval=1,
 *                           max_bad_batches=5, max_repeats=10, hold=false }
 *   ch:start() ch:stop() ch:close() ch:url() ch:running() ch:pending()
 *   ch:set_header(name, value) ch:release()
 *
 * One P-GET at a time (the request is embedded in the channel). Responses are
 * handled from step()'s delivery phase: the next P-GET is added and sent before
 * on_batch runs; faults retry the same URL after a jittered exponential backoff
 * (the server keeps a batch until it is acked), so no batch is lost or repeated.
 *
 * Against servers that misbehave: an empty batch answered within min_interval
 * of its P-GET makes the next one wait for the rest of it (a server holds a
 * P-GET until it has events or its timeout); a batch with events whose self
 * link was delivered before is not delivered again, and a next link that does
 * not advance is not followed at once: both are RepeatedBatch faults, fatal
 * after max_repeats in a row; a response that cannot be read (ParseError,
 * NoNextLink, BadLink, TooLarge, BadResponse) is fatal after max_bad_batches
 * in a row. Every fault reaches on_error, with err.failures, the number of
 * P-GETs in a row that failed.
 * With hold = true (a session store, docs/store.md), a batch with events is
 * handed to on_batch before the next P-GET is added, and the channel holds
 * (pending() is "held") until ch:release(): the caller writes the batch
 * somewhere durable first, since the next P-GET acknowledges it. release()
 * may come from on_batch itself (a synchronous store) or later (one that
 * answers on the loop).
 * Batches are read by core.parse_events and error bodies by core.parse_error,
 * fixed when the module is opened (the upvalues of eng:channel), not options.
 *
 * Userdata = ucwa_channel; uservalues: 1 engine, 2 state table (on_batch,
 * on_error, params, and the two parse functions), 3 headers table. A running
 * channel is anchored in the engine's anchors table.
 *
 * This file is the P-GET loop (issue, answers, backoff, hold/release);
 * channel_batch.c keeps the batch bookkeeping (links, remembered batch ids,
 * the next link's fast path), channel_lua.c the Lua API (eng:channel, the
 * methods); channel.h has the struct and what they share. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ucwa.h"
#include "error.h"
#include "request.h"
#include "url.h"
#include "channel.h"

/* ---------------------------------------------------------------- running state */

/* stop without callbacks; chidx = channel userdata */
void ucwa_ch_halt(lua_State *L, ucwa_channel *ch, int chidx)
{
    chidx = lua_absindex(L, chidx);
    ucwa_req_free(&ch->req);
    ucwa_work_cancel(&ch->retry.w);
    ch->held = 0;
    if (ch->running) {
        ch->running = 0;
        if (ch->eng && ch->eng->multi) {
            ch->eng->n_channels--;
            lua_getiuservalue(L, chidx, CUV_ENGINE);
            ucwa_unanchor(L, -1, ch);
            lua_pop(L, 1);
            ucwa_engine_rearm(ch->eng, 0);
        }
    }
}

/* the engine closes with our P-GET or retry pending: it drops the anchors */
static void engine_gone(ucwa_channel *ch)
{
    if (ch->running && ch->eng) ch->eng->n_channels--;
    ch->running = 0;
    ucwa_req_free(&ch->req);
}

void ucwa_ch_abandon_request(ucwa_work *w)
{
    engine_gone(ucwa_container_of(w, ucwa_channel, req.x.w));
}

void ucwa_ch_abandon_retry(ucwa_work *w)
{
    engine_gone(ucwa_container_of(w, ucwa_channel, retry.w));
}

/* ---------------------------------------------------------------- requests and retries */

double ucwa_ch_backoff_next(ucwa_channel *ch)
{
    double d = ch->b_cur * (0.5 + 0.5 * ucwa_engine_random(ch->eng));
    ch->b_cur *= 2;
    if (ch->b_cur > ch->b_max) ch->b_cur = ch->b_max;
    return d;
}

/* adds the P-GET for ch->url; returns NULL or an error message (a static
 * string, or *too_large: a malloc'd one, when the headers are over the caps) */
const char *ucwa_ch_issue_pget(lua_State *L, ucwa_channel *ch, int chidx, char **too_large)
{
    chidx = lua_absindex(L, chidx);
    ucwa_req_spec s;
    memset(&s, 0, sizeof s);
    struct curl_slist *old = NULL; /* the list the easy handle may still have */
    if (!ch->hdrs || ch->hdrs_stale) {
        struct curl_slist *sl = NULL;
        lua_getiuservalue(L, chidx, CUV_HEADERS);
        /* validated when they were set; only their total can be over a cap */
        ucwa_headers(L, 0, -1, &sl, NULL, ch->eng->http.max_header, too_large);
        uint64_t lane = ucwa_headers_lane(L, -1);
        lua_pop(L, 1);
        if (*too_large) return *too_large;
        old = ch->hdrs;
        ch->hdrs = sl;
        ch->hdrs_lane = lane;
        ch->hdrs_stale = 0;
    }
    s.hdrs = ch->hdrs;
    s.hdrs_lent = 1;
    s.lane_key = ch->hdrs_lane;
    s.method = "GET";
    s.url = ch->url;
    s.buffer_size = ch->buffer_size;
    double t = ch->client_timeout > 0 ? ch->client_timeout : ch->timeout > 0 ? ch->timeout + ch->grace : 0;
    s.timeout_ms = t > 0 ? ucwa_secs_to_ms(t) : ch->eng->http.timeout_ms;
    ucwa_work_cancel(&ch->retry.w);
    ch->pausing = 0;
    ch->sent_at = ucwa_now();
    const char *err = ucwa_req_start(ch->eng, &ch->req, &s);
    curl_slist_free_all(old); /* the handle has the new list now, or is gone */
    /* on a kept-alive connection: sent now; from step()'s delivery, once the
     * callbacks of this step have run (step kicks), so that on_batch is not
     * kept waiting for the next P-GET's send */
    if (!err && !ch->eng->in_step) ucwa_engine_kick(ch->eng);
    ucwa_engine_rearm(ch->eng, 0);
    return err;
}

/* pushes the error of an ucwa_ch_issue_pget that failed (and frees *too_large) */
void ucwa_ch_push_issue_error(lua_State *L, ucwa_channel *ch, const char *err, char **too_large)
{
    if (*too_large)
        ucwa_error_push(L, 0, "BadRequest", "HeaderTooLarge", "P-GET not sent: %s", err);
    else
        ucwa_error_push(L, 0, "NetworkError", NULL, "P-GET not sent: %s", err);
    ucwa_set_str(L, -1, "url", ch->url);
    free(*too_large);
    *too_large = NULL;
}

/* calls state[name](args...) with nargs values on top; returns the status
 * (an error on top) */
static int call_cb(lua_State *L, int chidx, const char *name, int nargs)
{
    lua_getiuservalue(L, chidx, CUV_STATE);
    lua_getfield(L, -1, name);
    lua_remove(L, -2);
    if (!lua_isfunction(L, -1)) {
        lua_pop(L, 1 + nargs);
        return LUA_OK;
    }
    lua_insert(L, -1 - nargs);
    return lua_pcall(L, nargs, 0, 0);
}

/* The error object on top is a fault to retry: the same URL again after the
 * backoff (at least `at_least` seconds, a Retry-After), then on_error(err) with
 * err.retrying = true. If the retry cannot even be armed (out of memory), the
 * channel stops and err.fatal = true instead. */
static int retry_later(lua_State *L, ucwa_channel *ch, int chidx, double at_least)
{
    double d = ucwa_ch_backoff_next(ch);
    if (at_least > d) d = at_least > ch->b_max ? ch->b_max : at_least;
    ucwa_req_free(&ch->req);
    int fatal = ucwa_timer_arm(ch->eng, &ch->retry, d) != 0;
    ch->pausing = 0;
    if (fatal) ucwa_ch_halt(L, ch, chidx);
    ucwa_engine_rearm(ch->eng, 0);
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, fatal ? "fatal" : "retrying");
    return call_cb(L, chidx, "on_error", 1);
}

/* the error on top ends the channel: on_error(err) with err.fatal = true */
static int stop_with(lua_State *L, ucwa_channel *ch, int chidx)
{
    ucwa_ch_halt(L, ch, chidx);
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "fatal");
    return call_cb(L, chidx, "on_error", 1);
}

/* err.failures = the P-GETs in a row that failed, this one included */
void ucwa_ch_count_failure(lua_State *L, ucwa_channel *ch)
{
    ch->failures++;
    lua_pushinteger(L, ch->failures);
    lua_setfield(L, -2, "failures");
}

/* The error on top is a fault that may pass (network, 5xx, 429, ...): retried
 * after the backoff, however long it lasts; each one is reported. */
static int transient(lua_State *L, ucwa_channel *ch, int chidx, double at_least)
{
    ucwa_ch_count_failure(L, ch);
    return retry_later(L, ch, chidx, at_least);
}

/* appends " (<n> in a row: the channel stopped)" to err.message (err on top) */
static void note_given_up(lua_State *L, int n)
{
    lua_getfield(L, -1, "message");
    const char *m = lua_tostring(L, -1);
    ucwa_pushf(L, "%s (%d in a row: the channel stopped)", m ? m : "fault", n);
    lua_setfield(L, -3, "message");
    lua_pop(L, 1);
}

/* The error on top is a response the channel cannot read (a batch parse_events
 * refuses, no next link, a bad link, a body or header section over the caps):
 * the same URL will most likely give the same again. Retried, reported each
 * time; after max_bad_batches in a row the channel stops (fatal). */
static int unreadable(lua_State *L, ucwa_channel *ch, int chidx)
{
    ucwa_ch_count_failure(L, ch);
    if (++ch->bad >= ch->max_bad) {
        note_given_up(L, ch->bad);
        return stop_with(L, ch, chidx);
    }
    return retry_later(L, ch, chidx, 0);
}

/* ---------------------------------------------------------------- responses */

/* pushes the error object of an HTTP error response: core.parse_error of the
 * body, with the body, its content type and the URL added */
static void push_http_error(lua_State *L, int chidx, const ucwa_req *r)
{
    const char *ctype = ucwa_req_header(r, "content-type");
    int top = lua_gettop(L);
    lua_getiuservalue(L, chidx, CUV_STATE);
    lua_getfield(L, -1, "parse_error");
    lua_pushlstring(L, r->body.p ? r->body.p : "", r->body.len);
    if (ctype)
        lua_pushstring(L, ctype);
    else
        lua_pushnil(L);
    lua_pushinteger(L, r->status);
    if (lua_pcall(L, 3, 1, 0) == LUA_OK && lua_istable(L, -1)) { /* it never fails but out of memory */
        lua_replace(L, top + 1);
        lua_settop(L, top + 1);
    } else {
        lua_settop(L, top);
        ucwa_error_push(L, (int)r->status, ucwa_status_code((int)r->status), NULL, "HTTP %ld", r->status);
    }
    lua_pushlstring(L, r->body.p ? r->body.p : "", r->body.len);
    lua_setfield(L, -2, "body");
    ucwa_set_str(L, -1, "content_type", ctype);
    ucwa_set_str(L, -1, "url", r->url);
}

/* pushes an error object about the 200 response from url */
static void push_batch_error(lua_State *L, const char *code, const char *msg, const char *url)
{
    ucwa_error_push(L, 200, code, NULL, "%s", msg);
    ucwa_set_str(L, -1, "url", url);
}

/* pushes v >= 0 in decimal: the session makes each event's id of it
 * ("<ack>:<position>") without formatting a number a batch */
static void push_digits(lua_State *L, int64_t v)
{
    char buf[24], *p = buf + sizeof buf;
    do {
        *--p = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    lua_pushlstring(L, p, (size_t)(buf + sizeof buf - p));
}

/* A 200: the batch parsed and checked, the next P-GET sent (or its wait
 * armed), then on_batch(batch, url); a fault found on the way is reported to
 * on_error after on_batch, so the batch is delivered whatever on_error does. */
static int on_batch(lua_State *L, ucwa_channel *ch, int chidx)
{
    ucwa_req *r = &ch->req;
    int top = lua_gettop(L);
    const char *ctype = ucwa_req_header(r, "content-type");
    lua_pushstring(L, r->url); /* top+1: this URL */
    lua_getiuservalue(L, chidx, CUV_STATE);
    lua_getfield(L, -1, "parse");
    lua_remove(L, -2);
    lua_pushlstring(L, r->body.p ? r->body.p : "", r->body.len);
    if (ctype)
        lua_pushstring(L, ctype);
    else
        lua_pushnil(L);
    int st = lua_pcall(L, 2, 2, 0);                 /* top+2: batch | nil, top+3: err */
    if (st == LUA_OK && !lua_istable(L, top + 2)) { /* parse_events' ParseError, code and subcode, with the URL */
        lua_pushvalue(L, top + 3);
        lua_pushinteger(L, 200);
        lua_setfield(L, -2, "status");
        ucwa_set_str(L, -1, "url", r->url);
        return unreadable(L, ch, chidx);
    }
    if (st != LUA_OK) { /* out of memory */
        const char *m = lua_type(L, top + 2) == LUA_TSTRING ? lua_tostring(L, top + 2) : "cannot parse";
        push_batch_error(L, "ParseError", m, r->url);
        return unreadable(L, ch, chidx);
    }
    lua_settop(L, top + 2);
    const char *href = NULL;
    int rel = REL_NEXT, links = 0;
    if (lua_getfield(L, top + 2, "links") == LUA_TTABLE) { /* top+3 */
        static const char *const rels[] = {"next", "resync", "resume"};
        links = top + 3;
        for (rel = 0; rel < (int)UCWA_NELEM(rels) && !href; rel++) href = ucwa_ch_link_href(L, links, rels[rel]);
        rel--;
    }
    if (!href) {
        push_batch_error(L, "NoNextLink", "event batch has no next, resync or resume link", r->url);
        return unreadable(L, ch, chidx);
    }
    if (strlen(href) != lua_rawlen(L, -1)) { /* C would cut it at the NUL */
        push_batch_error(L, "BadLink", "bad event link: URL contains a NUL byte", r->url);
        return unreadable(L, ch, chidx);
    }
    const char *err = NULL;
    size_t hlen = lua_rawlen(L, -1);
    lua_getiuservalue(L, chidx, CUV_STATE);
    lua_getfield(L, -1, "params");
    int params = lua_gettop(L);
    /* the origin of the response's URL is the channel's: an effective URL
     * elsewhere (a redirect) takes the full path */
    int64_t next_ack = ACK_UNKNOWN;
    char *next = r->eff_url && strcmp(r->eff_url, r->url) != 0 ? NULL
                                                                 : ucwa_ch_next_fast(L, ch, params, href, hlen, &next_ack);
#ifdef __SANITIZE_ADDRESS__
    char *fast_url = next; /* the sanitized builds check the fast path against the full one */
    next = NULL;
#endif
    int slow = !next;
    if (!next) {
        char *abs = ucwa_url_resolve(r->eff_url ? r->eff_url : r->url, href, &err);
        if (abs) {
            next = ucwa_url_with_query(L, abs, params, &err);
            free(abs);
        }
        if (!next) {
#ifdef __SANITIZE_ADDRESS__
            free(fast_url);
#endif
            lua_pushfstring(L, "bad event link: %s", err ? err : "?");
            push_batch_error(L, "BadLink", lua_tostring(L, -1), r->url);
            return unreadable(L, ch, chidx);
        }
        /* The channel's headers carry the session's token for its origin: a link
         * elsewhere (another host, http:// from https) would send it there. */
        if (!ucwa_url_same_origin(next, ch->url)) {
            lua_pushfstring(L, "event link to another origin refused (the token of %s goes nowhere else): %s",
                            ch->url, next);
            free(next);
#ifdef __SANITIZE_ADDRESS__
            free(fast_url);
#endif
            ucwa_error_push(L, 0, "Forbidden", "UntrustedLink", "%s", lua_tostring(L, -1));
            ucwa_set_str(L, -1, "url", r->url);
            return stop_with(L, ch, chidx);
        }
#ifdef __SANITIZE_ADDRESS__
        if (fast_url && strcmp(fast_url, next) != 0) {
            fprintf(stderr, "channel: fast next link %s, libcurl's %s\n", fast_url, next);
            abort();
        }
        free(fast_url);
#endif
    }
    lua_pop(L, 2);
    ch->bad = 0;

    /* repeats and pace */
    int events = ucwa_ch_has_events(L, top + 2);
    uint64_t id = events ? ucwa_ch_batch_id(L, links, r) : 0;
    int repeat = events && ucwa_ch_seen_before(ch, id);
    int64_t elapsed = ucwa_now() - ch->sent_at;
    int fast = ch->min_interval > 0 && (double)elapsed < ch->min_interval * 1e9;
    ch->fast_empty = fast && !events ? ch->fast_empty + 1 : 0;
    /* resync and resume are answered without holding the P-GET: the first one
     * in a row is followed at once */
    int hasty = fast && !events && (rel == REL_NEXT || ch->fast_empty >= 2);
    int stuck = strcmp(next, ch->url) == 0 && (events || hasty);
    int64_t ack = strcmp(r->url, ch->url) == 0 ? ch->url_ack : ACK_UNKNOWN; /* this batch's */
    free(ch->url);
    ch->url = next;
    ch->url_ack = next_ack;
    if (slow) { /* the fast path learnt anew for this URL */
        lua_getiuservalue(L, chidx, CUV_STATE);
        lua_getfield(L, -1, "params");
        ucwa_ch_fast_prepare(L, ch, lua_gettop(L));
        lua_pop(L, 2);
    }

    int problem = 0; /* 1: a repeat; 2: the next P-GET could not be added; 3: nor its retry */
    char *too_large = NULL;
    const char *ierr = NULL;
    if (repeat || stuck) {
        ch->repeats++;
        ch->failures++;
        problem = 1;
        if (events && !repeat) ucwa_ch_remember(ch, id); /* delivered below */
        if (ch->repeats >= ch->max_repeats) {
            ucwa_ch_halt(L, ch, chidx);
        } else {
            double d = ucwa_ch_backoff_next(ch);
            if (d < ch->min_interval) d = ch->min_interval > ch->b_max ? ch->b_max : ch->min_interval;
            ucwa_req_free(r);
            if (ucwa_timer_arm(ch->eng, &ch->retry, d) != 0) ucwa_ch_halt(L, ch, chidx);
            ch->pausing = 0;
        }
    } else {
        ch->failures = 0;
        ch->b_cur = ch->b_initial;
        if (events) {
            ch->repeats = 0;
            ucwa_ch_remember(ch, id);
        }
        if (hasty) { /* the rest of min_interval, then the next P-GET */
            ucwa_req_free(r);
            if (ucwa_timer_arm(ch->eng, &ch->retry, ch->min_interval - (double)elapsed / 1e9) != 0) {
                ucwa_ch_halt(L, ch, chidx);
                problem = 3;
            }
            ch->pausing = 1;
        } else if (events && ch->hold) { /* the next P-GET waits for release() */
            ucwa_req_free(r);
            ch->held = 1;
        } else if ((ierr = ucwa_ch_issue_pget(L, ch, chidx, &too_large)) != NULL) { /* the next P-GET first */
            /* could not even add it: try again after backoff; the batch is still ours */
            ucwa_req_free(r);
            problem = 2;
            if (ucwa_timer_arm(ch->eng, &ch->retry, ucwa_ch_backoff_next(ch)) != 0) {
                ucwa_ch_halt(L, ch, chidx);
                problem = 3;
            }
        }
    }
    ucwa_engine_rearm(ch->eng, 0);
    int halted = !ch->running; /* by us (on_batch may stop the channel itself) */
    if (!repeat && !(stuck && !events)) { /* new events are never dropped; a stuck empty batch is nothing */
        lua_pushvalue(L, top + 2);
        lua_pushvalue(L, top + 1);
        if (ack >= 0)
            push_digits(L, ack);
        else if (ack == ACK_NONE)
            lua_pushboolean(L, 0);
        else
            lua_pushnil(L);
        st = call_cb(L, chidx, "on_batch", 3);
        if (st != LUA_OK) {
            free(too_large);
            return st;
        }
    }
    if (!problem) return LUA_OK;
    if (problem == 1) {
        ucwa_ch_push_repeat(L, ch, lua_tostring(L, top + 1), repeat);
        lua_pushinteger(L, ch->failures);
        lua_setfield(L, -2, "failures");
        if (halted) note_given_up(L, ch->repeats);
    } else {
        ucwa_ch_push_issue_error(L, ch, ierr ? ierr : "out of memory", &too_large);
        ucwa_ch_count_failure(L, ch);
    }
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, halted ? "fatal" : "retrying");
    return call_cb(L, chidx, "on_error", 1);
}

static int on_response(lua_State *L, ucwa_channel *ch, int chidx)
{
    ucwa_req *r = &ch->req;
    /* network faults and timeouts: same URL after backoff */
    if (!ucwa_req_ok(r)) {
        ucwa_push_transport_error(L, r);
        if (r->too_large || r->head_too_large) return unreadable(L, ch, chidx);
        return transient(L, ch, chidx, 0);
    }
    if (r->status == 200) return on_batch(L, ch, chidx);

    /* A 409 PGetReplaced stops the channel like any other 409: it has one
     * P-GET at a time, so a replacement of the one it waits on is another
     * client's (its own replaced ones were stopped, and their answers unseen). */
    int retry = r->status >= 500 || r->status == 429 || r->status == 408;
    push_http_error(L, chidx, r);
    if (!retry) return stop_with(L, ch, chidx);
    const char *h = ucwa_req_header(r, "retry-after");
    double ra = h ? strtod(h, NULL) : 0;
    return transient(L, ch, chidx, ra > 0 ? ra : 0);
}

/* pushes the channel object (anchored while it runs), or returns 0 when it is
 * not running any more */
static int push_running(lua_State *L, int eidx, ucwa_channel *ch)
{
    if (ucwa_anchored(L, eidx, ch) == LUA_TUSERDATA && ch->running) return 1;
    lua_pop(L, 1);
    return 0;
}

/* deliver functions: the channel is advanced (the next P-GET or the retry
 * armed) before any callback runs, so a callback's error can go out of step() */
int ucwa_ch_deliver_response(lua_State *L, int eidx, ucwa_work *w)
{
    ucwa_channel *ch = ucwa_container_of(w, ucwa_channel, req.x.w);
    if (!push_running(L, eidx, ch)) {
        ucwa_req_free(&ch->req);
        return LUA_OK;
    }
    return on_response(L, ch, lua_gettop(L));
}

int ucwa_ch_deliver_retry(lua_State *L, int eidx, ucwa_work *w)
{
    ucwa_channel *ch = ucwa_container_of(w, ucwa_channel, retry.w);
    if (!push_running(L, eidx, ch)) return LUA_OK;
    int chidx = lua_gettop(L);
    char *too_large = NULL;
    const char *err = ucwa_ch_issue_pget(L, ch, chidx, &too_large);
    if (!err) return LUA_OK;
    int refused = too_large != NULL;
    ucwa_ch_push_issue_error(L, ch, err, &too_large);
    if (refused) return stop_with(L, ch, chidx); /* the same headers will not fit next time */
    return transient(L, ch, chidx, 0);
}

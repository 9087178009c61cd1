/* The event channel (eng:channel): what channel.c (the P-GET loop),
 * channel_batch.c (batch bookkeeping) and channel_lua.c (the Lua API)
 * share. See channel.c for the design. */
#ifndef UCWA_CHANNEL_H
#define UCWA_CHANNEL_H

#include <stdint.h>

#include "ucwa.h"
#include "request.h"

#define UCWA_CHANNEL_MT "ucwa.channel"

#define CUV_ENGINE  1
#define CUV_STATE   2
#define CUV_HEADERS 3

/* how many delivered batches are remembered (hashes of their self links) */
#define SEEN_N 32

/* url_ack: the URL has no ack; not known */
#define ACK_NONE (-1)
#define ACK_UNKNOWN (-2)

typedef struct ucwa_channel {
    ucwa_req req;     /* the P-GET */
    ucwa_timer retry; /* the backoff timer, or the min_interval pause */
    ucwa_engine *eng;
    int running, closed;
    int pausing; /* retry is the min_interval pause, not a backoff */
    int hold, held; /* hold option; held: a batch was delivered, the next P-GET waits for release() */
    char *url;   /* current P-GET URL, with the params */
    /* the ack of url (its query's first ack=<digits>), read off the next link
     * by the fast path: >= 0 that number, -1 none, -2 not known (the URL was
     * made by the full path: Lua reads it); on_batch's third argument (its
     * digits, false, nil) */
    int64_t url_ack;
    double timeout, grace, client_timeout;
    double b_initial, b_max, b_cur;
    double min_interval; /* seconds */
    int64_t sent_at;     /* when the P-GET in flight was sent (ucwa_now) */
    int failures;        /* P-GETs in a row that failed, whatever the fault */
    int bad, max_bad;    /* responses in a row that could not be read */
    int repeats, max_repeats;
    int fast_empty;         /* empty batches in a row answered within min_interval */
    uint64_t seen[SEEN_N];  /* the self links of the last batches delivered with events */
    unsigned n_seen, i_seen;
    long buffer_size; /* the P-GET's receive buffer (libcurl's CURLOPT_BUFFERSIZE) */
    /* the headers table as libcurl's list, built once (set_header makes it
     * stale), lent to each P-GET: kept until the easy handle has the next one */
    struct curl_slist *hdrs;
    uint64_t hdrs_lane;
    int hdrs_stale;
    /* the next link's fast path (next_fast): libcurl's spelling of the
     * channel URL's origin ("http://host:port") and of the query the params
     * append to a URL without one; NULL: not known, the full path only */
    char *fast_origin, *fast_query;
    size_t fast_origin_len, fast_query_len;
} ucwa_channel;

enum { REL_NEXT, REL_RESYNC, REL_RESUME };

/* channel.c: the P-GET loop */
void ucwa_ch_halt(lua_State *L, ucwa_channel *ch, int chidx);
void ucwa_ch_abandon_request(ucwa_work *w);
void ucwa_ch_abandon_retry(ucwa_work *w);
double ucwa_ch_backoff_next(ucwa_channel *ch);
const char *ucwa_ch_issue_pget(lua_State *L, ucwa_channel *ch, int chidx, char **too_large);
void ucwa_ch_push_issue_error(lua_State *L, ucwa_channel *ch, const char *err, char **too_large);
void ucwa_ch_count_failure(lua_State *L, ucwa_channel *ch);
int ucwa_ch_deliver_response(lua_State *L, int eidx, ucwa_work *w);
int ucwa_ch_deliver_retry(lua_State *L, int eidx, ucwa_work *w);

/* channel_batch.c: batch bookkeeping */
const char *ucwa_ch_link_href(lua_State *L, int links, const char *rel);
int ucwa_ch_has_events(lua_State *L, int batch);
int ucwa_ch_seen_before(const ucwa_channel *ch, uint64_t id);
void ucwa_ch_remember(ucwa_channel *ch, uint64_t id);
uint64_t ucwa_ch_batch_id(lua_State *L, int links, const ucwa_req *r);
void ucwa_ch_push_repeat(lua_State *L, ucwa_channel *ch, const char *url, int delivered_before);
char *ucwa_ch_next_fast(lua_State *L, ucwa_channel *ch, int params, const char *href, size_t n, int64_t *ack);
void ucwa_ch_fast_prepare(lua_State *L, ucwa_channel *ch, int idx);
void ucwa_ch_fast_clear(ucwa_channel *ch);
void ucwa_ch_headers_clear(ucwa_channel *ch);

#endif

/* HTTP requests on the engine (request.c): the C request that eng:request{}
 * wraps and the event channel embeds for its P-GET, the one header
 * validator, response tables and transport errors. */
#ifndef UCWA_REQUEST_H
#define UCWA_REQUEST_H

#include "loop.h"

typedef struct ucwa_req {
    ucwa_xfer x; /* x.w.deliver / x.w.abandon: set by the owner */
    struct curl_slist *hdrs;
    ucwa_buf body;
    ucwa_buf head; /* "name\0value\0" pairs, names lowercased */
    size_t max_body;
    size_t max_head;    /* the response's header section, bytes */
    size_t head_bytes;  /* ... received so far (of the last response: 1xx reset it) */
    int got_status;     /* a status line arrived */
    int head_done;      /* ... and the blank line after the headers */
    int head_too_large; /* 1: over max_head; 2: a line over libcurl's own limit */
    char *refused;      /* malloc'd: why the request was not sent (BadRequest/HeaderTooLarge) */
    int too_large;
    int cancelled;  /* cancel() before delivery: deliver Cancelled */
    int sock_errno; /* a socket could not be opened (EMFILE...) */
    long status;
    char *eff_url; /* malloc'd */
    char *url;     /* malloc'd copy of the requested URL (error reports) */
    int keep_easy; /* the owner's: the easy handle outlives the transfer, for the next one (a channel's P-GETs) */
    int easy_set;  /* the kept easy handle has every option of a GET without a body but the per-request ones */
    int hdrs_lent; /* hdrs is the owner's (a channel's cached list): not freed here */
    char errbuf[CURL_ERROR_SIZE];
} ucwa_req;

typedef struct ucwa_req_spec {
    const char *method;
    const char *url;
    struct curl_slist *hdrs; /* ownership passes to the request, also on failure */
    int hdrs_lent;           /* ... unless set: the owner keeps hdrs alive until the transfer is over */
    const char *body;        /* must stay alive until the request completes */
    size_t body_len;
    int has_body;
    long timeout_ms;   /* 0: none */
    uint64_t lane_key; /* ucwa_headers_lane of its headers (0: any lane) */
    long buffer_size;  /* libcurl's receive buffer, bytes (0: libcurl's 16 KiB) */
} ucwa_req_spec;

/* The lane key (loop.h) of the headers table at idx: of its Authorization
 * value, 0 when there is none. */
uint64_t ucwa_headers_lane(lua_State *L, int idx);

/* Starts r (idle) on e; NULL, or an error message (a static string). */
const char *ucwa_req_start(ucwa_engine *e, ucwa_req *r, const ucwa_req_spec *s);
/* whether an HTTP response arrived (any status), else a transport error */
int ucwa_req_ok(const ucwa_req *r);
/* Cancels r and frees everything it holds (idempotent). */
void ucwa_req_free(ucwa_req *r);
/* lowercase header lookup in a completed request; NULL if absent (first match) */
const char *ucwa_req_header(const ucwa_req *r, const char *name);

/* pushes {status=, headers=, body=, url=} */
void ucwa_push_response(lua_State *L, const ucwa_req *r);
/* pushes the transport error object {code=, message=, url=, curl_code=} */
void ucwa_push_transport_error(lua_State *L, const ucwa_req *r);

/* The one header validator: 0, or why name/value (value may be NULL) cannot
 * be sent; ucwa_header_error raises that (for argument arg; 0: a plain error),
 * never quoting the value: it may be a token. A header line (name: value) of
 * over `max` bytes is UCWA_TOO_LARGE (max 0: no cap). */
enum { UCWA_BAD_NAME = 1, UCWA_BAD_VALUE = 2, UCWA_TOO_LARGE = 3 };
int ucwa_header_check(const char *name, size_t nl, const char *value, size_t vl, size_t max);
UCWA_NORETURN void ucwa_header_error(lua_State *L, int arg, const char *name, size_t nl, size_t vl, size_t max,
                                     int why);

/* libcurl refuses a request whose headers pass 1 MiB ("Out of memory"); the
 * headers of one request may take this much in total */
#define UCWA_MAX_REQUEST_HEADERS ((size_t)960 * 1024)

/* Validates the headers table at idx (nil allowed; string or number values,
 * false skipped) for argument `arg`; with `out`, also builds the slist
 * (sets *has_ct when a Content-Type is given). Raises on bad names/values.
 * A line over `max` bytes (or all of them over UCWA_MAX_REQUEST_HEADERS)
 * raises too, unless `too_large` is given: then no slist is built and
 * *too_large is a malloc'd message naming the header (never its value). */
void ucwa_headers(lua_State *L, int arg, int idx, struct curl_slist **out, int *has_ct, size_t max,
                  char **too_large);

#endif

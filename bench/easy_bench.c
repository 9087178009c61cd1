/* The transport bench's baseline, kept out of the shipped module: a Lua C
 * module (ucwa_bench.so, built by `make bench` only) with
 *
 *   bench.easy_get(url, n) -> seconds
 *
 * n sequential blocking GETs on one libcurl easy handle (keep-alive), the
 * least any libcurl client can spend per request. */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <curl/curl.h>
#include <lua.h>
#include <lauxlib.h>

static size_t discard(char *p, size_t size, size_t n, void *ud)
{
    (void)p;
    (void)ud;
    return size * n;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int l_easy_get(lua_State *L)
{
    const char *url = luaL_checkstring(L, 1);
    lua_Integer i, n = luaL_checkinteger(L, 2);
    CURL *c = curl_easy_init();
    if (!c) return luaL_error(L, "curl_easy_init failed");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "");
    double t0 = now();
    CURLcode rc = CURLE_OK;
    for (i = 0; i < n && rc == CURLE_OK; i++) rc = curl_easy_perform(c);
    double t1 = now();
    curl_easy_cleanup(c);
    if (rc != CURLE_OK) return luaL_error(L, "easy GET failed: %s", curl_easy_strerror(rc));
    lua_pushnumber(L, t1 - t0);
    return 1;
}

/* bench.hold(url, n, secs) -> transfers running: n GETs of url on one bare
 * multi handle (libcurl's defaults), driven for secs; they stay pending
 * (a peer that never answers) until bench.release(). The baseline of the
 * memory a pending GET costs any libcurl client. */
static CURLM *held_multi;
static CURL **held;
static lua_Integer n_held;

static int l_release(lua_State *L)
{
    lua_Integer i;
    (void)L;
    for (i = 0; i < n_held; i++) {
        curl_multi_remove_handle(held_multi, held[i]);
        curl_easy_cleanup(held[i]);
    }
    free(held);
    held = NULL;
    n_held = 0;
    if (held_multi) curl_multi_cleanup(held_multi);
    held_multi = NULL;
    return 0;
}

static int l_hold(lua_State *L)
{
    const char *url = luaL_checkstring(L, 1);
    lua_Integer i, n = luaL_checkinteger(L, 2);
    double secs = luaL_checknumber(L, 3);
    int running = 0;
    l_release(L);
    held_multi = curl_multi_init();
    held = calloc((size_t)n, sizeof *held);
    if (!held_multi || !held) return luaL_error(L, "out of memory");
    curl_multi_setopt(held_multi, CURLMOPT_MAXCONNECTS, (long)n);
    for (i = 0; i < n; i++) {
        CURL *c = curl_easy_init();
        if (!c) return luaL_error(L, "curl_easy_init failed");
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        curl_multi_add_handle(held_multi, c);
        held[n_held++] = c;
    }
    double t0 = now();
    do {
        curl_multi_perform(held_multi, &running);
        curl_multi_poll(held_multi, NULL, 0, 50, NULL);
    } while (now() - t0 < secs);
    lua_pushinteger(L, running);
    return 1;
}

/* bench.heap() -> bytes of C heap in use (malloc'd and not freed: glibc's
 * mallinfo2 uordblks + hblkhd), bytes the allocator holds (arena + mmap) */
static int l_heap(lua_State *L)
{
    struct mallinfo2 mi = mallinfo2();
    lua_pushinteger(L, (lua_Integer)(mi.uordblks + mi.hblkhd));
    lua_pushinteger(L, (lua_Integer)(mi.arena + mi.hblkhd));
    return 2;
}

/* bench.malloc_info() -> glibc's malloc_info XML */
static int l_malloc_info(lua_State *L)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return luaL_error(L, "open_memstream failed");
    malloc_info(0, f);
    fclose(f);
    lua_pushlstring(L, buf, len);
    free(buf);
    return 1;
}

/* bench.trim(): malloc_trim(0), what free memory the allocator gives back */
static int l_trim(lua_State *L)
{
    lua_pushboolean(L, malloc_trim(0));
    return 1;
}

int luaopen_ucwa_bench(lua_State *L)
{
    static const luaL_Reg funcs[] = {{"easy_get", l_easy_get}, {"heap", l_heap}, {"malloc_info", l_malloc_info},
                                     {"trim", l_trim}, {"hold", l_hold},
                                     {"release", l_release}, {NULL, NULL}};
    luaL_newlib(L, funcs);
    return 1;
}

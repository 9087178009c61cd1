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
                                     {"trim", l_trim}, {NULL, NULL}};
    luaL_newlib(L, funcs);
    return 1;
}

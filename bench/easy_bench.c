/* The transport bench's baseline, kept out of the shipped module: a Lua C
 * module (ucwa_bench.so, built by `make bench` only) with
 *
 *   bench.easy_get(url, n) -> seconds
 *
 * n sequential blocking GETs on one libcurl easy handle (keep-alive), the
 * least any libcurl client can spend per request. */
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

int luaopen_ucwa_bench(lua_State *L)
{
    static const luaL_Reg funcs[] = {{"easy_get", l_easy_get}, {NULL, NULL}};
    luaL_newlib(L, funcs);
    return 1;
}

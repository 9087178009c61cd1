/* data: URLs (RFC 2397), as UCWA delivers message text: percent-encoded or
 * base64. Percent-decoding by libcurl, base64 by OpenSSL's EVP decoder.
 *
 * The one decoder of the project, with UCWA's rule: in a data: URL that is
 * not base64, '+' is a space, as servers send message text form-encoded
 * ("data:text/plain;charset=utf-8,Hi+Tosh%0d%0a" is "Hi Tosh\r\n"); a plus
 * sign comes as %2B. (RFC 2397 alone would keep '+'.) In base64, '+' is a
 * base64 digit. */
#include <stdlib.h>
#include <string.h>
#include <curl/curl.h>
#include <openssl/evp.h>
#include "ucwa.h"

/* core.data_url(href) -> data, mediatype | nil, err */
static int l_data_url(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    if (len < 5 || strncasecmp(s, "data:", 5) != 0) {
        luaL_pushfail(L);
        lua_pushliteral(L, "not a data: URL");
        return 2;
    }
    const char *comma = memchr(s + 5, ',', len - 5);
    if (!comma) {
        luaL_pushfail(L);
        lua_pushliteral(L, "data: URL without a comma");
        return 2;
    }
    size_t hlen = (size_t)(comma - (s + 5));
    int base64 = hlen >= 7 && strncasecmp(comma - 7, ";base64", 7) == 0;
    size_t mlen = base64 ? hlen - 7 : hlen;

    int outlen = 0;
    size_t dlen = len - (size_t)(comma + 1 - s);
    if (dlen > (size_t)0x7fffffff) return luaL_error(L, "data: URL too large");
    char *raw;
    if (base64) {
        raw = curl_easy_unescape(NULL, comma + 1, (int)dlen, &outlen);
    } else { /* '+' is a space (form encoding), before the escapes are decoded */
        char *plus = malloc(dlen + 1);
        if (!plus) return luaL_error(L, "out of memory");
        size_t i;
        for (i = 0; i < dlen; i++) plus[i] = comma[1 + i] == '+' ? ' ' : comma[1 + i];
        raw = curl_easy_unescape(NULL, plus, (int)dlen, &outlen);
        free(plus);
    }
    if (!raw) return luaL_error(L, "out of memory");
    if (!base64) {
        lua_pushlstring(L, raw, (size_t)outlen);
        curl_free(raw);
    } else {
        /* The decoder writes 3 bytes for every 4 characters, plus a block. */
        luaL_Buffer b;
        unsigned char *out = (unsigned char *)luaL_buffinitsize(L, &b, (size_t)outlen / 4 * 3 + 80);
        EVP_ENCODE_CTX *ctx = EVP_ENCODE_CTX_new();
        int n1 = 0, n2 = 0, rc = -1;
        if (ctx) {
            EVP_DecodeInit(ctx);
            rc = EVP_DecodeUpdate(ctx, out, &n1, (const unsigned char *)raw, outlen);
            if (rc >= 0) rc = EVP_DecodeFinal(ctx, out + n1, &n2);
            EVP_ENCODE_CTX_free(ctx);
        }
        curl_free(raw);
        if (rc < 0) {
            luaL_pushfail(L);
            lua_pushliteral(L, "data: URL has invalid base64");
            return 2;
        }
        luaL_pushresultsize(&b, (size_t)(n1 + n2));
    }
    if (mlen == 0)
        lua_pushliteral(L, "text/plain;charset=US-ASCII");
    else
        lua_pushlstring(L, s + 5, mlen);
    return 2;
}

void ucwa_open_dataurl(lua_State *L)
{
    lua_pushcfunction(L, l_data_url);
    lua_setfield(L, -2, "data_url");
}

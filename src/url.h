/* URL helpers on libcurl's CURLU API (url.c), for Lua and for the channel. */
#ifndef UCWA_URL_H
#define UCWA_URL_H

#include "auxlib.h"

/* resolve ref against base (RFC 3986); a malloc'd string, or NULL with *err set */
char *ucwa_url_resolve(const char *base, const char *ref, const char **err);
/* apply the params table at idx (name -> string|number|boolean, false: remove)
 * to url; a malloc'd string, or NULL with *err set */
char *ucwa_url_with_query(lua_State *L, const char *url, int idx, const char **err);

/* 1 when both are absolute http(s) URLs of one origin (scheme, host, port,
 * the default port filled in), else 0 */
int ucwa_url_same_origin(const char *a, const char *b);

#endif

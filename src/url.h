/* URL helpers on libcurl's CURLU API (url.c), for Lua and for the channel. */
#ifndef UCWA_URL_H
#define UCWA_URL_H

#include "auxlib.h"

/* resolve ref against base (RFC 3986); a malloc'd string, or NULL with *err set */
char *ucwa_url_resolve(const char *base, const char *ref, const char **err);
/* apply the params table at idx (name -> string|number|boolean, false: remove)
 * to url; a malloc'd string, or NULL with *err set */
char *ucwa_url_with_query(lua_State *L, const char *url, int idx, const char **err);

#endif

/* Error objects: the one metatable ("ucwa.error"), its __tostring, the one
 * table from HTTP status to UCWA error code, and the constructor every part
 * of the core uses. Lua sees them as core.error_mt and core.error{...}. */
#ifndef UCWA_ERROR_H
#define UCWA_ERROR_H

#include "auxlib.h"

#define UCWA_ERROR_MT "ucwa.error"

/* The UCWA code of an HTTP status when the body has none (ErrorCode_ref.md:
 * 502 is ServiceFailure, the reference has no BadGateway). */
const char *ucwa_status_code(int status);

/* Pushes a new error object {status=, code=, subcode=, message=}: status 0 and
 * NULL fields are left out; the message is printf-formatted (fmt NULL: none). */
void ucwa_error_push(lua_State *L, int status, const char *code, const char *subcode, const char *fmt, ...)
    UCWA_PRINTF(5, 6);

/* Gives the table at idx the error metatable. */
void ucwa_error_setmt(lua_State *L, int idx);

/* core.error, core.error_mt */

#endif

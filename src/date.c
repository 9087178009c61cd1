/* ucwa.date(value): UCWA dates to epoch seconds.
 *   JSON: "/Date(1234567890123)/", "/Date(1234567890123+0100)/" (milliseconds
 *         since the epoch, UTC; the offset names the sender's zone and does
 *         not move the instant, as in ASP.NET AJAX).
 *   XML:  ISO 8601 "2015-03-04T12:00:00Z", "2016-09-26T16:20:23.0485629-07:00",
 *         "2015-03-04" (midnight UTC); no zone means UTC.
 * Returns an integer when the instant is a whole second, else a float;
 * nil, err for anything else. */
#include <stdio.h>
#include <string.h>

#include "parse.h"

static int digits(const char **p, const char *end, int n, long *out)
{
    long v = 0;
    int i;
    for (i = 0; i < n; i++) {
        if (*p >= end || **p < '0' || **p > '9') return -1;
        v = v * 10 + (**p - '0');
        (*p)++;
    }
    *out = v;
    return 0;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant). */
static long long days_from_civil(long y, long m, long d)
{
    long long era, yoe, doy, doe;
    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int days_in_month(long y, long m)
{
    static const int dm[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0)) return 29;
    return dm[m - 1];
}

static int bad(lua_State *L, const char *s, size_t len)
{
    return ucwa_parse_fail(L, "BadDate", "not a UCWA date (/Date(ms)/ or ISO 8601): '%.*s'%s",
                           (int)(len > 60 ? 60 : len), s, len > 60 ? "..." : "");
}

static int aspnet(lua_State *L, const char *s, size_t len)
{
    const char *p = s, *end = s + len;
    long long ms = 0;
    int neg = 0, nd = 0;
    if (len >= 7 && !memcmp(p, "\\/Date(", 7))
        p += 7;
    else
        p += 6; /* "/Date(" */
    if (p < end && (*p == '-' || *p == '+')) neg = *p++ == '-';
    while (p < end && *p >= '0' && *p <= '9') {
        if (++nd > 17) return bad(L, s, len);
        ms = ms * 10 + (*p++ - '0');
    }
    if (!nd) return bad(L, s, len);
    if (p < end && (*p == '+' || *p == '-')) {
        long off;
        p++;
        if (digits(&p, end, 4, &off) < 0 || off / 100 > 23 || off % 100 > 59) return bad(L, s, len);
    }
    if (end - p == 2 && !memcmp(p, ")/", 2))
        ;
    else if (end - p == 3 && !memcmp(p, ")\\/", 3))
        ;
    else
        return bad(L, s, len);
    if (neg) ms = -ms;
    if (ms % 1000 == 0)
        lua_pushinteger(L, ms / 1000);
    else
        lua_pushnumber(L, (lua_Number)ms / 1000.0);
    return 1;
}

static int iso8601(lua_State *L, const char *s, size_t len)
{
    const char *p = s, *end = s + len;
    long y, mo, d, h = 0, mi = 0, sec = 0, oh = 0, om = 0;
    double frac = 0;
    int sign = 0;
    long long t;

    if (digits(&p, end, 4, &y) < 0 || p >= end || *p++ != '-' || digits(&p, end, 2, &mo) < 0 || p >= end ||
        *p++ != '-' || digits(&p, end, 2, &d) < 0)
        return bad(L, s, len);
    if (mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo)) return bad(L, s, len);
    if (p < end && (*p == 'T' || *p == 't' || *p == ' ')) {
        p++;
        if (digits(&p, end, 2, &h) < 0 || p >= end || *p++ != ':' || digits(&p, end, 2, &mi) < 0) return bad(L, s, len);
        if (p < end && *p == ':') {
            p++;
            if (digits(&p, end, 2, &sec) < 0) return bad(L, s, len);
            if (p < end && (*p == '.' || *p == ',')) {
                double scale = 0.1;
                int nd = 0;
                p++;
                while (p < end && *p >= '0' && *p <= '9') {
                    frac += (*p++ - '0') * scale;
                    scale /= 10;
                    nd++;
                }
                if (!nd) return bad(L, s, len);
            }
        }
        if (h > 24 || mi > 59 || sec > 60 || (h == 24 && (mi || sec || frac > 0))) return bad(L, s, len);
        if (p < end && (*p == 'Z' || *p == 'z')) {
            p++;
        } else if (p < end && (*p == '+' || *p == '-')) {
            sign = *p++ == '-' ? -1 : 1;
            if (digits(&p, end, 2, &oh) < 0) return bad(L, s, len);
            if (p < end && *p == ':') p++;
            if (p < end && digits(&p, end, 2, &om) < 0) return bad(L, s, len);
            if (oh > 23 || om > 59) return bad(L, s, len);
        }
    }
    if (p != end) return bad(L, s, len);
    t = days_from_civil(y, mo, d) * 86400LL + h * 3600LL + mi * 60LL + sec;
    t -= sign * (oh * 3600LL + om * 60LL);
    if (frac > 0)
        lua_pushnumber(L, (lua_Number)t + frac);
    else
        lua_pushinteger(L, (lua_Integer)t);
    return 1;
}

int ucwa_l_date(lua_State *L)
{
    size_t len;
    const char *s;
    if (lua_type(L, 1) != LUA_TSTRING) return luaL_typeerror(L, 1, "string");
    s = lua_tolstring(L, 1, &len);
    if ((len >= 6 && !memcmp(s, "/Date(", 6)) || (len >= 7 && !memcmp(s, "\\/Date(", 7))) return aspnet(L, s, len);
    return iso8601(L, s, len);
}

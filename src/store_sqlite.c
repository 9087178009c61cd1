/* The session store's SQLite half (docs/store.md): one database file, in
 * WAL mode, holding strings per identity; lua/ucwa/store.lua wraps it in the
 * store interface (callbacks, error objects).
 *
 *   local db = core.sqlite_open(path, { synchronous = "normal", busy_timeout = 5 })
 *   db:load(identity)                      -> { values = {k = v}, inbox = {{seq =, data =}} } | false
 *   db:write(identity, changes[, seq, data]) -> true   (changes: k -> string | false)
 *   db:done(identity, seq)                 -> true
 *   db:clear(identity)                     -> true
 *   db:pragma("journal_mode" | "synchronous") -> its value, as SQLite says it
 *   db:close()
 * Runtime failures return nil, err (code "StoreError", the path and SQLite's
 * message); wrong arguments raise before SQLite is touched.
 *
 * No Lua error ever longjmps out of a statement half stepped: arguments are
 * checked first, rows are copied into C memory and the statement reset
 * before anything is pushed, and a write's changes table, checked to hold
 * only strings, is walked with lua_next and lua_tolstring, which do not
 * allocate on strings. Statements are prepared once, when the file opens.
 *
 * Userdata = ucwa_sqlite; no uservalues. */
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "ucwa.h"
#include "auxlib.h"
#include "error.h"

#define UCWA_SQLITE_MT "ucwa.sqlite"

enum {
    S_BEGIN,
    S_COMMIT,
    S_ROLLBACK,
    S_KV_SET,
    S_KV_DEL,
    S_KV_ALL,
    S_INBOX_PUT,
    S_INBOX_DONE,
    S_INBOX_ALL,
    S_CLEAR_KV,
    S_CLEAR_INBOX,
    S_COUNT
};

static const char *const sql[S_COUNT] = {
    [S_BEGIN] = "BEGIN IMMEDIATE",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
    [S_KV_SET] = "INSERT INTO kv(identity, key, value) VALUES (?1, ?2, ?3) "
                 "ON CONFLICT(identity, key) DO UPDATE SET value = excluded.value",
    [S_KV_DEL] = "DELETE FROM kv WHERE identity = ?1 AND key = ?2",
    [S_KV_ALL] = "SELECT key, value FROM kv WHERE identity = ?1 ORDER BY key",
    [S_INBOX_PUT] = "INSERT INTO inbox(identity, seq, data) VALUES (?1, ?2, ?3) "
                    "ON CONFLICT(identity, seq) DO UPDATE SET data = excluded.data",
    [S_INBOX_DONE] = "DELETE FROM inbox WHERE identity = ?1 AND seq = ?2",
    [S_INBOX_ALL] = "SELECT seq, data FROM inbox WHERE identity = ?1 ORDER BY seq",
    [S_CLEAR_KV] = "DELETE FROM kv WHERE identity = ?1",
    [S_CLEAR_INBOX] = "DELETE FROM inbox WHERE identity = ?1",
};

/* user_version 1: the tables below */
static const char schema[] = "CREATE TABLE IF NOT EXISTS kv ("
                             " identity TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL,"
                             " PRIMARY KEY (identity, key)) WITHOUT ROWID;"
                             "CREATE TABLE IF NOT EXISTS inbox ("
                             " identity TEXT NOT NULL, seq INTEGER NOT NULL, data BLOB NOT NULL,"
                             " PRIMARY KEY (identity, seq)) WITHOUT ROWID;"
                             "PRAGMA user_version = 1;";

/* The levels of PRAGMA synchronous (docs/store.md and the README say what each buys). */
static const char *const sync_levels[] = {"off", "normal", "full", "extra", NULL};

typedef struct ucwa_sqlite {
    sqlite3 *db;
    sqlite3_stmt *st[S_COUNT];
    char *path; /* for messages */
} ucwa_sqlite;

static void db_close(ucwa_sqlite *s)
{
    for (int i = 0; i < S_COUNT; i++) {
        sqlite3_finalize(s->st[i]);
        s->st[i] = NULL;
    }
    if (s->db) sqlite3_close_v2(s->db);
    s->db = NULL;
    free(s->path);
    s->path = NULL;
}

static ucwa_sqlite *check_open(lua_State *L)
{
    ucwa_sqlite *s = luaL_checkudata(L, 1, UCWA_SQLITE_MT);
    if (!s->db) luaL_error(L, "store is closed");
    return s;
}

/* Returns nil, err: a StoreError saying what failed, on which file, and
 * SQLite's message (copied into `msg` before anything was pushed). */
static int push_fail(lua_State *L, const char *path, const char *what, const char *msg)
{
    lua_pushnil(L);
    ucwa_error_push(L, 0, "StoreError", NULL, "sqlite store %s: %s: %s", path ? path : "?", what, msg);
    return 2;
}

/* SQLite's message for the last failure, into a caller's buffer (the
 * database's own buffer changes with the next call, the ROLLBACK included) */
static void last_error(ucwa_sqlite *s, char *buf, size_t n)
{
    snprintf(buf, n, "%s", s->db ? sqlite3_errmsg(s->db) : "not open");
}

/* runs a statement without rows; SQLITE_DONE or the failing code */
static int exec_stmt(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_ROW ? SQLITE_DONE : rc;
}

/* core.sqlite_open(path[, opts]) */
static int l_open(lua_State *L)
{
    size_t plen;
    const char *path = ucwa_check_cstring(L, 1, 1, "path", &plen);
    const char *sync = "normal";
    double busy = 5;
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        static const char *const known[] = {"synchronous", "busy_timeout", NULL};
        ucwa_opt_check(L, 2, 2, "", known);
        sync = ucwa_opt_string(L, 2, 2, "synchronous", sync);
        busy = ucwa_opt_number(L, 2, 2, "busy_timeout", busy, 0, 3600);
    }
    int level = -1;
    for (int i = 0; sync_levels[i]; i++)
        if (strcmp(sync, sync_levels[i]) == 0) level = i;
    if (level < 0) return ucwa_argerror(L, 2, "option 'synchronous' must be off, normal, full or extra, not '%s'", sync);
    if (plen == 0) return ucwa_argerror(L, 1, "path is empty");

    ucwa_sqlite *s = lua_newuserdatauv(L, sizeof *s, 0);
    memset(s, 0, sizeof *s);
    luaL_setmetatable(L, UCWA_SQLITE_MT);
    s->path = strdup(path);
    if (!s->path) return luaL_error(L, "out of memory");

    char msg[512];
    const char *what = "open";
    int rc = sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_extended_result_codes(s->db, 1);
        sqlite3_busy_timeout(s->db, (int)(busy * 1000));
        /* journal_mode answers with a row: the mode it is in now */
        sqlite3_stmt *st = NULL;
        what = "setting WAL mode";
        rc = sqlite3_prepare_v2(s->db, "PRAGMA journal_mode = WAL", -1, &st, NULL);
        if (rc == SQLITE_OK) {
            rc = sqlite3_step(st);
            const unsigned char *mode = rc == SQLITE_ROW ? sqlite3_column_text(st, 0) : NULL;
            if (rc == SQLITE_ROW) rc = mode && strcmp((const char *)mode, "wal") == 0 ? SQLITE_OK : SQLITE_CANTOPEN;
            if (rc == SQLITE_CANTOPEN) snprintf(msg, sizeof msg, "the file cannot be put in WAL mode");
        }
        if (rc != SQLITE_OK && rc != SQLITE_CANTOPEN) last_error(s, msg, sizeof msg);
        sqlite3_finalize(st);
    } else {
        last_error(s, msg, sizeof msg);
    }
    if (rc == SQLITE_OK) {
        char pragma[64];
        snprintf(pragma, sizeof pragma, "PRAGMA synchronous = %s", sync_levels[level]);
        what = "setting synchronous";
        rc = sqlite3_exec(s->db, pragma, NULL, NULL, NULL);
        if (rc == SQLITE_OK) {
            what = "creating its tables";
            rc = sqlite3_exec(s->db, schema, NULL, NULL, NULL);
        }
        for (int i = 0; rc == SQLITE_OK && i < S_COUNT; i++) {
            what = "preparing a statement";
            rc = sqlite3_prepare_v3(s->db, sql[i], -1, SQLITE_PREPARE_PERSISTENT, &s->st[i], NULL);
        }
        if (rc != SQLITE_OK) last_error(s, msg, sizeof msg);
    }
    if (rc != SQLITE_OK) {
        db_close(s);
        return push_fail(L, path, what, msg);
    }
    return 1;
}

/* ---- load: rows copied out, then pushed */

typedef struct row {
    sqlite3_int64 seq;
    char *key, *val;
    size_t klen, vlen;
} row;

typedef struct rows {
    row *r;
    size_t n, cap;
} rows;

static void rows_free(rows *rs)
{
    for (size_t i = 0; i < rs->n; i++) {
        free(rs->r[i].key);
        free(rs->r[i].val);
    }
    free(rs->r);
    memset(rs, 0, sizeof *rs);
}

static char *copy_blob(sqlite3_stmt *st, int col, size_t *len)
{
    const void *p = sqlite3_column_blob(st, col);
    int n = sqlite3_column_bytes(st, col);
    char *c = malloc((size_t)n + 1);
    if (!c) return NULL;
    if (n > 0) memcpy(c, p, (size_t)n);
    c[n] = '\0';
    *len = (size_t)n;
    return c;
}

/* steps st (bound to the identity) to the end; keyed: column 0 is a key
 * string, else a seq integer. SQLITE_DONE, SQLITE_NOMEM or SQLite's code. */
static int collect(sqlite3_stmt *st, int keyed, rows *out)
{
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (ucwa_grow((void **)&out->r, &out->cap, out->n + 1, sizeof(row)) != 0) return SQLITE_NOMEM;
        row *r = &out->r[out->n];
        memset(r, 0, sizeof *r);
        if (keyed) {
            if (!(r->key = copy_blob(st, 0, &r->klen))) return SQLITE_NOMEM;
        } else {
            r->seq = sqlite3_column_int64(st, 0);
        }
        out->n++;
        if (!(r->val = copy_blob(st, 1, &r->vlen))) return SQLITE_NOMEM;
    }
    return rc;
}

/* push_snapshot(kv, inbox): the load's table, from the rows copied out */
static int push_snapshot(lua_State *L)
{
    const rows *kv = lua_touserdata(L, 1), *inbox = lua_touserdata(L, 2);
    lua_newtable(L);
    lua_createtable(L, 0, (int)kv->n);
    for (size_t i = 0; i < kv->n; i++) {
        lua_pushlstring(L, kv->r[i].key, kv->r[i].klen);
        lua_pushlstring(L, kv->r[i].val, kv->r[i].vlen);
        lua_rawset(L, -3);
    }
    lua_setfield(L, -2, "values");
    lua_createtable(L, (int)inbox->n, 0);
    for (size_t i = 0; i < inbox->n; i++) {
        lua_createtable(L, 0, 2);
        lua_pushinteger(L, (lua_Integer)inbox->r[i].seq);
        lua_setfield(L, -2, "seq");
        lua_pushlstring(L, inbox->r[i].val, inbox->r[i].vlen);
        lua_setfield(L, -2, "data");
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_setfield(L, -2, "inbox");
    return 1;
}

static int l_load(lua_State *L)
{
    ucwa_sqlite *s = check_open(L);
    size_t ilen;
    const char *id = ucwa_check_cstring(L, 2, 2, "identity", &ilen);
    rows kv = {0}, inbox = {0};
    char msg[512] = "out of memory";
    sqlite3_stmt *a = s->st[S_KV_ALL], *b = s->st[S_INBOX_ALL];
    /* one read transaction, so the values and the inbox agree */
    int rc = sqlite3_exec(s->db, "BEGIN", NULL, NULL, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(a, 1, id, (int)ilen, SQLITE_STATIC);
        rc = collect(a, 1, &kv);
        if (rc == SQLITE_DONE) {
            sqlite3_bind_text(b, 1, id, (int)ilen, SQLITE_STATIC);
            rc = collect(b, 0, &inbox);
        }
        if (rc != SQLITE_DONE && rc != SQLITE_NOMEM) last_error(s, msg, sizeof msg);
        sqlite3_reset(a);
        sqlite3_clear_bindings(a);
        sqlite3_reset(b);
        sqlite3_clear_bindings(b);
        sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL);
    } else {
        last_error(s, msg, sizeof msg);
    }
    if (rc != SQLITE_DONE) {
        rows_free(&kv);
        rows_free(&inbox);
        return push_fail(L, s->path, "reading", msg);
    }
    if (kv.n == 0 && inbox.n == 0) {
        lua_pushboolean(L, 0);
        return 1;
    }
    /* pushing may raise (out of memory): in a protected call, so the rows,
     * C memory, are freed whatever happens */
    lua_pushcfunction(L, push_snapshot);
    lua_pushlightuserdata(L, &kv);
    lua_pushlightuserdata(L, &inbox);
    int st = lua_pcall(L, 2, 1, 0);
    rows_free(&kv);
    rows_free(&inbox);
    if (st != LUA_OK) return lua_error(L);
    return 1;
}

/* ---- writes: one transaction each */

/* Raises unless every key of the table at idx is a string without NUL and
 * every value a string or false: checked before the transaction begins. */
static void check_changes(lua_State *L, int idx)
{
    luaL_checktype(L, idx, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        if (lua_type(L, -2) != LUA_TSTRING) ucwa_argerror(L, idx, "changes: keys must be strings");
        size_t n;
        const char *k = lua_tolstring(L, -2, &n);
        if (strlen(k) != n || n == 0) ucwa_argerror(L, idx, "changes: a key is empty or holds a NUL byte");
        int t = lua_type(L, -1);
        if (t != LUA_TSTRING && !(t == LUA_TBOOLEAN && !lua_toboolean(L, -1)))
            ucwa_argerror(L, idx, "changes['%s']: a string or false expected, got %s", k, luaL_typename(L, -1));
        lua_pop(L, 1);
    }
}

/* db:write(identity, changes[, seq, data]) */
static int l_write(lua_State *L)
{
    ucwa_sqlite *s = check_open(L);
    size_t ilen, dlen = 0;
    const char *id = ucwa_check_cstring(L, 2, 2, "identity", &ilen);
    check_changes(L, 3);
    int has_seq = !lua_isnoneornil(L, 4);
    lua_Integer seq = has_seq ? luaL_checkinteger(L, 4) : 0;
    const char *data = has_seq ? luaL_checklstring(L, 5, &dlen) : NULL;
    lua_settop(L, 5);

    char msg[512];
    int rc = exec_stmt(s->st[S_BEGIN]);
    if (rc == SQLITE_DONE && has_seq) {
        sqlite3_stmt *st = s->st[S_INBOX_PUT];
        sqlite3_bind_text(st, 1, id, (int)ilen, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)seq);
        sqlite3_bind_blob(st, 3, data, (int)dlen, SQLITE_STATIC);
        rc = exec_stmt(st);
    }
    lua_pushnil(L);
    while (rc == SQLITE_DONE && lua_next(L, 3)) {
        size_t kl, vl = 0;
        const char *k = lua_tolstring(L, -2, &kl); /* checked: strings, no conversion */
        int del = lua_type(L, -1) != LUA_TSTRING;
        const char *v = del ? NULL : lua_tolstring(L, -1, &vl);
        sqlite3_stmt *st = s->st[del ? S_KV_DEL : S_KV_SET];
        sqlite3_bind_text(st, 1, id, (int)ilen, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, k, (int)kl, SQLITE_STATIC);
        if (!del) sqlite3_bind_blob(st, 3, v, (int)vl, SQLITE_STATIC);
        rc = exec_stmt(st);
        lua_pop(L, 1);
    }
    if (rc == SQLITE_DONE) {
        lua_settop(L, 5); /* the loop may have stopped early only on a failure */
        rc = exec_stmt(s->st[S_COMMIT]);
    }
    if (rc != SQLITE_DONE) {
        last_error(s, msg, sizeof msg);
        if (!sqlite3_get_autocommit(s->db)) exec_stmt(s->st[S_ROLLBACK]);
        lua_settop(L, 5);
        return push_fail(L, s->path, "writing", msg);
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* runs one statement bound to (identity[, seq]) in its own transaction */
static int run_simple(lua_State *L, ucwa_sqlite *s, const int *which, int n, int with_seq)
{
    size_t ilen;
    const char *id = ucwa_check_cstring(L, 2, 2, "identity", &ilen);
    lua_Integer seq = with_seq ? luaL_checkinteger(L, 3) : 0;
    char msg[512];
    int rc = exec_stmt(s->st[S_BEGIN]);
    for (int i = 0; rc == SQLITE_DONE && i < n; i++) {
        sqlite3_stmt *st = s->st[which[i]];
        sqlite3_bind_text(st, 1, id, (int)ilen, SQLITE_STATIC);
        if (with_seq) sqlite3_bind_int64(st, 2, (sqlite3_int64)seq);
        rc = exec_stmt(st);
    }
    if (rc == SQLITE_DONE) rc = exec_stmt(s->st[S_COMMIT]);
    if (rc != SQLITE_DONE) {
        last_error(s, msg, sizeof msg);
        if (!sqlite3_get_autocommit(s->db)) exec_stmt(s->st[S_ROLLBACK]);
        return push_fail(L, s->path, "writing", msg);
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* db:done(identity, seq) */
static int l_done(lua_State *L)
{
    static const int which[] = {S_INBOX_DONE};
    return run_simple(L, check_open(L), which, 1, 1);
}

/* db:clear(identity) */
static int l_clear(lua_State *L)
{
    static const int which[] = {S_CLEAR_KV, S_CLEAR_INBOX};
    return run_simple(L, check_open(L), which, 2, 0);
}

/* db:pragma(name): the value of one of the pragmas the store sets */
static int l_pragma(lua_State *L)
{
    ucwa_sqlite *s = check_open(L);
    static const char *const names[] = {"journal_mode", "synchronous", "user_version", NULL};
    int i = luaL_checkoption(L, 2, NULL, names);
    char q[64], val[64] = "";
    snprintf(q, sizeof q, "PRAGMA %s", names[i]);
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->db, q, -1, &st, NULL);
    if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        const unsigned char *t = sqlite3_column_text(st, 0);
        snprintf(val, sizeof val, "%s", t ? (const char *)t : "");
        rc = SQLITE_OK;
    }
    char msg[512];
    if (rc != SQLITE_OK) last_error(s, msg, sizeof msg);
    sqlite3_finalize(st);
    if (rc != SQLITE_OK) return push_fail(L, s->path, "reading a pragma", msg);
    /* synchronous reads as a number: 0 off, 1 normal, 2 full, 3 extra */
    if (i == 1 && val[0] >= '0' && val[0] <= '3' && !val[1]) {
        lua_pushstring(L, sync_levels[val[0] - '0']);
    } else {
        lua_pushstring(L, val);
    }
    return 1;
}

static int l_gc(lua_State *L)
{
    db_close(luaL_checkudata(L, 1, UCWA_SQLITE_MT));
    return 0;
}

static int l_tostring(lua_State *L)
{
    ucwa_sqlite *s = luaL_checkudata(L, 1, UCWA_SQLITE_MT);
    if (s->db)
        lua_pushfstring(L, "ucwa.sqlite (%s)", s->path);
    else
        lua_pushliteral(L, "ucwa.sqlite (closed)");
    return 1;
}

void ucwa_open_store_sqlite(lua_State *L)
{
    static const luaL_Reg methods[] = {
        {"load", l_load}, {"write", l_write}, {"done", l_done}, {"clear", l_clear}, {"pragma", l_pragma}, {NULL, NULL},
    };
    ucwa_class(L, UCWA_SQLITE_MT, methods, l_gc, l_tostring, UCWA_CLOSABLE);
    lua_pushcfunction(L, l_open);
    lua_setfield(L, -2, "sqlite_open");
}

/* Pass 2 of the XML reader (pass 1, expat into the tree, and the parser box
 * are parse_xml.c's): the tree (parse_xml.h) into the same model as JSON's,
 * typed and shaped by the schema generated from the UCWA reference (parse.c's
 * lookups, schema.h); event batches and error bodies alike. */
#include <string.h>

#include "error.h"
#include "parse.h"
#include "parse_xml.h"
#include "schema.h"

/* ---------------------------------------------------------------- the tree into the model */

static const xattr *xattr_of(const struct ucwa_xml *x, const xnode *n, int id)
{
    uint32_t i;
    for (i = 0; i < n->nattr; i++)
        if (x->attrs[n->attr + i].id == id) return &x->attrs[n->attr + i];
    return NULL;
}

static const char *xattr_str(const struct ucwa_xml *x, const xnode *n, int id)
{
    const xattr *a = xattr_of(x, n, id);
    return a ? xstr(x, a->value) : NULL;
}

static void push_text(lua_State *L, const struct ucwa_xml *x, const xnode *n)
{
    if (n->text_len && !n->has_child)
        lua_pushlstring(L, xstr(x, n->text), n->text_len);
    else
        lua_pushliteral(L, "");
}

static const char *text_of(const struct ucwa_xml *x, const xnode *n, size_t *len)
{
    if (n->text_len && !n->has_child) {
        *len = n->text_len;
        return xstr(x, n->text);
    }
    *len = 0;
    return "";
}

/* Pushes a leaf's text typed as `type` (-1: unknown: True/False → boolean). */
static void push_typed(lua_State *L, const struct ucwa_xml *x, const xnode *n, int type)
{
    size_t len;
    const char *s = text_of(x, n, &len);
    switch (type) {
    case UCWA_T_NUMBER:
        if (len && lua_stringtonumber(L, s) == len + 1) {
            if (!lua_isinteger(L, -1)) {
                lua_Number d = lua_tonumber(L, -1);
                lua_pop(L, 1);
                ucwa_push_number(L, d);
            }
            return;
        }
        break;
    case UCWA_T_STRING:
    case UCWA_T_LIST:
    case UCWA_T_OBJECT: break;
    default: /* UCWA_T_BOOL and unknown */
        if (ucwa_ieq(s, len, "true")) {
            lua_pushboolean(L, 1);
            return;
        }
        if (ucwa_ieq(s, len, "false")) {
            lua_pushboolean(L, 0);
            return;
        }
        break;
    }
    lua_pushlstring(L, s, len);
}

/* Sets tbl[key] = value on top (key: the string key[0..klen)); a second
 * value under the same key turns the entry into an array, as does a
 * collection rel. */
static void add_rel(lua_State *L, int tbl, const char *key, size_t klen, int coll)
{
    lua_pushlstring(L, key, klen); /* value, key */
    lua_pushvalue(L, -1);
    if (lua_rawget(L, tbl) == LUA_TNIL) { /* value, key, nil */
        lua_pop(L, 1);
        lua_insert(L, -2); /* key, value */
        if (coll) ucwa_wrap1(L);
        lua_rawset(L, tbl);
        return;
    }
    /* value, key, old */
    if (lua_rawgeti(L, -1, 1) != LUA_TNIL) { /* already an array */
        lua_pop(L, 1);
        lua_rotate(L, -3, -1); /* key, old, value */
        lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
        lua_pop(L, 2);
        return;
    }
    lua_pop(L, 1);
    lua_createtable(L, 2, 0); /* value, key, old, array */
    lua_insert(L, -2);
    lua_rawseti(L, -2, 1);   /* value, key, array */
    lua_rotate(L, -3, -1);   /* key, array, value */
    lua_rawseti(L, -2, 2);
    lua_rawset(L, tbl);
}

/* Pushes an attribute's name as a Lua key: the interned upvalue for the
 * known ones. */
static void push_attr_key(lua_State *L, const struct ucwa_xml *x, const xattr *a)
{
    switch (a->id) {
    case XA_REL: ucwa_pushkey(L, UV_K_REL); return;
    case XA_HREF: ucwa_pushkey(L, UV_K_HREF); return;
    case XA_TITLE: ucwa_pushkey(L, UV_K_TITLE); return;
    case XA_NAME: ucwa_pushkey(L, UV_K_NAME); return;
    case XA_STATUS: ucwa_pushkey(L, UV_K_STATUS); return;
    }
    lua_pushlstring(L, xstr(x, a->name), a->name_len);
}

#define KEEP_ALL (-1) /* for push_link: no attribute has this id */

/* A link table: every attribute but the one of id `skip` (XA_REL, XA_STATUS,
 * or KEEP_ALL). */
static void push_link(lua_State *L, const struct ucwa_xml *x, const xnode *n, int skip)
{
    uint32_t i, keep = 0;
    const xattr *a = &x->attrs[n->attr];
    for (i = 0; i < n->nattr; i++) keep += a[i].id != skip;
    lua_createtable(L, 0, (int)keep);
    for (i = 0; i < n->nattr; i++) {
        if (a[i].id == skip) continue;
        push_attr_key(L, x, &a[i]);
        lua_pushlstring(L, xstr(x, a[i].value), a[i].value_len);
        lua_rawset(L, -3);
    }
}

static void xml_resource(lua_State *L, const struct ucwa_xml *x, int32_t ni, int toplevel)
{
    const xnode *n = &x->nodes[ni];
    const char *rel = NULL;
    int np = 0, nl = 0, ne = 0, m, props, links, emb;
    int32_t c;

    luaL_checkstack(L, 12, "XML nesting");
    for (c = n->first; c >= 0; c = x->nodes[c].next) {
        const xnode *k = &x->nodes[c];
        switch (k->id) {
        case XE_PROPERTY: {
            const char *name = xattr_str(x, k, XA_NAME);
            if (name && !strcmp(name, "rel") && !k->nil && !rel) {
                size_t len;
                rel = text_of(x, k, &len);
            } else {
                np++;
            }
            break;
        }
        case XE_PROPERTYLIST: np++; break;
        case XE_LINK: nl++; break;
        case XE_RESOURCE: ne++; break;
        }
    }
    if (!rel && toplevel) rel = xattr_str(x, n, XA_REL);

    lua_createtable(L, 0, 5);
    m = lua_gettop(L);
    ucwa_setkey_str(L, m, UV_K_REL, rel);
    ucwa_setkey_str(L, m, UV_K_HREF, xattr_str(x, n, XA_HREF));
    lua_createtable(L, 0, np);
    props = m + 1;
    lua_createtable(L, 0, nl);
    links = m + 2;
    lua_createtable(L, 0, ne);
    emb = m + 3;

    for (c = n->first; c >= 0; c = x->nodes[c].next) {
        const xnode *k = &x->nodes[c];
        const xattr *a;
        const char *name;
        int type, item = UCWA_T_STRING;
        switch (k->id) {
        case XE_PROPERTY:
            name = xattr_str(x, k, XA_NAME);
            if (!name || k->nil || !strcmp(name, "rel")) break;
            type = ucwa_schema_prop(rel, name, &item);
            if (type == UCWA_T_LIST) {
                lua_createtable(L, 1, 0);
                if (k->text_len && !k->has_child) {
                    push_typed(L, x, k, item);
                    lua_rawseti(L, -2, 1);
                }
            } else {
                push_typed(L, x, k, type);
            }
            lua_setfield(L, props, name);
            break;
        case XE_PROPERTYLIST: {
            int32_t it;
            lua_Integer i = 0;
            int cnt = 0;
            name = xattr_str(x, k, XA_NAME);
            if (!name || k->nil) break;
            type = ucwa_schema_prop(rel, name, &item);
            if (type != UCWA_T_LIST) item = type; /* the schema has it as a scalar: type items alike */
            for (it = k->first; it >= 0; it = x->nodes[it].next) cnt++;
            lua_createtable(L, cnt, 0);
            for (it = k->first; it >= 0; it = x->nodes[it].next) {
                const xnode *ie = &x->nodes[it];
                if (ie->id != XE_ITEM) continue;
                if (ie->nil)
                    lua_pushlightuserdata(L, NULL); /* JSON null in a list */
                else
                    push_typed(L, x, ie, item);
                lua_rawseti(L, -2, ++i);
            }
            lua_setfield(L, props, name);
            break;
        }
        case XE_LINK:
            if (!(a = xattr_of(x, k, XA_REL))) break;
            name = xstr(x, a->value);
            push_link(L, x, k, XA_REL);
            add_rel(L, links, name, a->value_len, ucwa_schema_coll(rel, name));
            break;
        case XE_RESOURCE:
            if (!(a = xattr_of(x, k, XA_REL))) break;
            name = xstr(x, a->value);
            xml_resource(L, x, c, 0);
            add_rel(L, emb, name, a->value_len, ucwa_schema_coll(rel, name));
            break;
        }
    }
    ucwa_setkey(L, m, UV_K_EMBEDDED);
    ucwa_setkey(L, m, UV_K_LINKS);
    ucwa_setkey(L, m, UV_K_PROPERTIES);
}

/* Element-by-element conversion of a non-UCWA root (DataContract-style
 * bodies such as <optionsMetadata>), lists known from the schema. */
static void xml_generic(lua_State *L, const struct ucwa_xml *x, int32_t ni)
{
    const xnode *n = &x->nodes[ni];
    int item, type = ucwa_schema_prop(NULL, xstr(x, n->name), &item);
    int32_t c;
    luaL_checkstack(L, 6, "XML nesting");
    if (type == UCWA_T_LIST) {
        lua_Integer i = 0;
        lua_createtable(L, 0, 0);
        for (c = n->first; c >= 0; c = x->nodes[c].next) {
            if (x->nodes[c].nil)
                lua_pushlightuserdata(L, NULL);
            else
                xml_generic(L, x, c);
            lua_rawseti(L, -2, ++i);
        }
    } else if (!n->has_child) {
        push_typed(L, x, n, type);
    } else {
        lua_createtable(L, 0, 0);
        for (c = n->first; c >= 0; c = x->nodes[c].next) {
            if (x->nodes[c].nil) continue;
            xml_generic(L, x, c);
            lua_setfield(L, -2, xstr(x, x->nodes[c].name));
        }
    }
}

void ucwa_xml_model(lua_State *L, const struct ucwa_xml *x)
{
    const xnode *root = &x->nodes[0];
    if (root->id == XE_RESOURCE || root->id == XE_INPUT) {
        xml_resource(L, x, 0, 1);
        return;
    }
    lua_createtable(L, 0, 3);
    if (root->has_child)
        xml_generic(L, x, 0);
    else
        lua_createtable(L, 0, 0);
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        lua_createtable(L, 0, 0);
    }
    lua_setfield(L, -2, "properties");
    lua_createtable(L, 0, 0);
    lua_setfield(L, -2, "links");
    lua_createtable(L, 0, 0);
    lua_setfield(L, -2, "embedded");
}

/* A <debugInfo>/<parameters> property bag: its <property name=".."> children,
 * name -> text (xsi:nil ones left out), bounded as parse.h says. */
static void xml_bag(lua_State *L, const struct ucwa_xml *x, const xnode *bagn)
{
    int bag, n = 0;
    int32_t c;
    lua_createtable(L, 0, 0);
    bag = lua_gettop(L);
    for (c = bagn->first; c >= 0 && n < UCWA_BAG_MAX; c = x->nodes[c].next) {
        const xnode *k = &x->nodes[c];
        const xattr *a;
        if (k->id != XE_PROPERTY || k->nil || !(a = xattr_of(x, k, XA_NAME))) continue;
        push_text(L, x, k);
        ucwa_bag_put(L, bag, xstr(x, a->value), a->value_len, &n);
    }
}

/* code/subcode/message children of a <reason>/<error> element, and its
 * <debugInfo> and <parameters> bags. */
static void xml_reason(lua_State *L, const struct ucwa_xml *x, int32_t ni)
{
    int32_t c;
    lua_createtable(L, 0, 3);
    for (c = x->nodes[ni].first; c >= 0; c = x->nodes[c].next) {
        const xnode *k = &x->nodes[c];
        const char *key = NULL;
        switch (k->id) {
        case XE_CODE: key = "code"; break;
        case XE_SUBCODE: key = "subcode"; break;
        case XE_MESSAGE: key = "message"; break;
        case XE_PROPERTY: key = xattr_str(x, k, XA_NAME); break;
        case XE_OTHER:
            if (k->name_len == 9 && !memcmp(xstr(x, k->name), "debugInfo", 9))
                key = "debugInfo";
            else if (k->name_len == 10 && !memcmp(xstr(x, k->name), "parameters", 10))
                key = "parameters";
            if (key) {
                xml_bag(L, x, k);
                lua_setfield(L, -2, key);
                continue;
            }
            break;
        }
        if (key && !k->nil) {
            push_text(L, x, k);
            lua_setfield(L, -2, key);
        }
    }
    luaL_setmetatable(L, UCWA_ERROR_MT);
}

static void xml_event(lua_State *L, const struct ucwa_xml *x, int32_t ni)
{
    const xnode *n = &x->nodes[ni];
    int e, has_link = 0;
    int32_t c;

    luaL_checkstack(L, 8, NULL);
    lua_createtable(L, 0, 4);
    e = lua_gettop(L);
    lua_pushlstring(L, xstr(x, n->name), n->name_len);
    lua_setfield(L, e, "type");
    if (xattr_of(x, n, XA_REL) || xattr_of(x, n, XA_HREF)) {
        push_link(L, x, n, XA_STATUS);
        lua_setfield(L, e, "link");
        has_link = 1;
    }
    ucwa_set_str(L, e, "status", xattr_str(x, n, XA_STATUS));
    for (c = n->first; c >= 0; c = x->nodes[c].next) {
        const xnode *k = &x->nodes[c];
        switch (k->id) {
        case XE_LINK:
            if (!has_link) {
                push_link(L, x, k, KEEP_ALL);
                lua_setfield(L, e, "link");
                has_link = 1;
            }
            break;
        case XE_IN:
            push_link(L, x, k, KEEP_ALL);
            lua_setfield(L, e, "in");
            break;
        case XE_RESOURCE:
            xml_resource(L, x, c, 1);
            lua_setfield(L, e, "resource");
            break;
        case XE_STATUS:
            push_text(L, x, k);
            lua_setfield(L, e, "status");
            break;
        case XE_REASON:
            xml_reason(L, x, c);
            lua_setfield(L, e, "reason");
            break;
        }
    }
}

int ucwa_xml_events(lua_State *L, const struct ucwa_xml *x)
{
    const xnode *root = &x->nodes[0];
    const char *href;
    int b, links, senders;
    lua_Integer ns = 0;
    int32_t c;

    if (root->id != XE_EVENTS)
        return ucwa_parse_fail(L, "UnexpectedShape", "XML event batch: root element is <%s>, expected <events>",
                               xstr(x, root->name));
    lua_createtable(L, 0, 2);
    b = lua_gettop(L);
    lua_createtable(L, 0, 2);
    links = b + 1;
    lua_createtable(L, 0, 0);
    senders = b + 2;
    if ((href = xattr_str(x, root, XA_HREF))) {
        lua_createtable(L, 0, 1);
        lua_pushstring(L, href);
        lua_setfield(L, -2, "href");
        lua_setfield(L, links, "self");
    }
    for (c = root->first; c >= 0; c = x->nodes[c].next) {
        const xnode *k = &x->nodes[c];
        const char *rel;
        if (k->id == XE_LINK && (rel = xattr_str(x, k, XA_REL))) {
            push_link(L, x, k, XA_REL);
            lua_setfield(L, links, rel);
        } else if (k->id == XE_SENDER) {
            int32_t ev;
            lua_Integer ne = 0;
            int sn;
            lua_createtable(L, 0, 3);
            sn = lua_gettop(L);
            ucwa_set_str(L, sn, "rel", xattr_str(x, k, XA_REL));
            ucwa_set_str(L, sn, "href", xattr_str(x, k, XA_HREF));
            lua_createtable(L, 0, 0);
            for (ev = k->first; ev >= 0; ev = x->nodes[ev].next) {
                xml_event(L, x, ev);
                lua_rawseti(L, -2, ++ne);
            }
            lua_setfield(L, sn, "events");
            lua_rawseti(L, senders, ++ns);
        }
    }
    lua_setfield(L, b, "senders");
    lua_setfield(L, b, "links");
    return 0;
}

void ucwa_xml_error(lua_State *L, const struct ucwa_xml *x)
{
    xml_reason(L, x, 0);
}

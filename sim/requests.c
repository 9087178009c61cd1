/* ucwa-sim: request intake and bodies (forms, size caps), the list of
 * suspended requests and their watch set. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "sim.h"

static int hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* ---- requests ---------------------------------------------------------- */

void sim_list_remove(struct req *r)
{
	if (r->prev)
		r->prev->next = r->next;
	else if (sim_G.suspended == r)
		sim_G.suspended = r->next;
	if (r->next)
		r->next->prev = r->prev;
	r->prev = r->next = NULL;
}

/* Watches a suspended connection's socket for its client leaving. */
void sim_watch_add(struct req *r)
{
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
	struct epoll_event ev;

	if (!ci || sim_G.watch_fd < 0)
		return;
	memset(&ev, 0, sizeof ev);
	ev.events = EPOLLRDHUP;
	ev.data.ptr = r;
	r->fd = ci->connect_fd;
	if (epoll_ctl(sim_G.watch_fd, EPOLL_CTL_ADD, r->fd, &ev) == 0)
		r->watched = 1;
}

void sim_watch_del(struct req *r)
{
	if (r->watched) {
		epoll_ctl(sim_G.watch_fd, EPOLL_CTL_DEL, r->fd, NULL);
		r->watched = 0;
	}
}

static void req_free(struct req *r)
{
	struct form_field *f, *n;

	sim_watch_del(r);
	if (r->state == ST_SUSPENDED)
		sim_list_remove(r);
	if (r->box) {
		r->box->r = NULL;
		r->box = NULL;
		luaL_unref(sim_G.L, LUA_REGISTRYINDEX, r->box_ref);
	}
	if (r->pp)
		MHD_destroy_post_processor(r->pp);
	for (f = r->form; f; f = n) {
		n = f->next;
		free(f->key);
		free(f->val);
		free(f);
	}
	if (r->resp)
		MHD_destroy_response(r->resp);
	free(r->body);
	free(r);
}

void sim_on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	(void)cls;
	(void)c;
	(void)toe;
	if (*con_cls) {
		req_free(*con_cls);
		*con_cls = NULL;
	}
}

enum MHD_Result sim_form_iter(void *cls, enum MHD_ValueKind kind, const char *key,
				 const char *filename, const char *content_type,
				 const char *transfer_encoding, const char *data, uint64_t off,
				 size_t size)
{
	struct req *r = cls;
	struct form_field *f = r->form;
	char *nv;

	(void)kind;
	(void)filename;
	(void)content_type;
	(void)transfer_encoding;
	if (!key)
		return MHD_YES;
	/* Continuation of the field being received, or a new one. */
	if (!(f && off > 0 && strcmp(f->key, key) == 0)) {
		if (++r->nfields > FORM_FIELDS) {
			r->too_many_fields = 1;
			return MHD_NO;
		}
		f = calloc(1, sizeof *f);
		if (!f)
			return MHD_NO;
		f->key = strdup(key);
		if (!f->key) {
			free(f);
			return MHD_NO;
		}
		f->next = r->form;
		r->form = f;
	}
	if (f->len + size + 1 > r->limit)
		return MHD_NO;
	nv = realloc(f->val, f->len + size + 1);
	if (!nv)
		return MHD_NO;
	f->val = nv;
	if (size)
		memcpy(f->val + f->len, data, size);
	f->len += size;
	f->val[f->len] = '\0';
	return MHD_YES;
}

int sim_body_append(struct req *r, const char *data, size_t size)
{
	size_t need;
	char *nb;

	if (r->too_large || r->len + size > r->limit) {
		r->too_large = 1;
		return 0;
	}
	need = r->len + size + 1;
	if (need > r->cap) {
		size_t cap = r->cap ? r->cap : 1024;
		while (cap < need)
			cap *= 2;
		nb = realloc(r->body, cap);
		if (!nb) {
			r->too_large = 1;
			return 0;
		}
		r->body = nb;
		r->cap = cap;
	}
	memcpy(r->body + r->len, data, size);
	r->len += size;
	r->body[r->len] = '\0';
	return 1;
}

/* Percent-decoding of the path and query arguments, in place.  Like MHD's
 * own, except that %00 stays as it is: a NUL would cut the string short. */
size_t sim_unescape(void *cls, struct MHD_Connection *c, char *s)
{
	char *r = s, *w = s;
	(void)cls;
	(void)c;
	while (*r) {
		int hi, lo;
		if (r[0] == '%' && r[1] && r[2] &&
		    (hi = hexval(r[1])) >= 0 && (lo = hexval(r[2])) >= 0 && (hi | lo) != 0) {
			*w++ = (char)(hi * 16 + lo);
			r += 3;
		} else {
			*w++ = *r++;
		}
	}
	*w = '\0';
	return (size_t)(w - s);
}


/* conn: one client connection's state, its intrusive list links, and the per-worker
 * pool that hands out connection structs without a malloc per connection.
 * Owned by one worker thread; nothing here is shared.
 */
#ifndef REUSEECHO_SRC_CONN_H
#define REUSEECHO_SRC_CONN_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "impair.h"

enum re_conn_flag {
	RE_CONN_READABLE = 1u << 0,	/* input may be queued: keep reading */
	RE_CONN_WRITABLE = 1u << 1,	/* the socket took our last send whole */
	RE_CONN_RDHUP = 1u << 2,	/* peer shut down or errored: read to EOF */
	RE_CONN_EOF = 1u << 3,		/* recv returned 0: no more input */
	RE_CONN_PAUSED = 1u << 4,	/* reading stopped: unsent bytes at the cap */
	RE_CONN_DRAIN = 1u << 5,	/* server draining: echo what is queued, then FIN */
	RE_CONN_LINGER = 1u << 6,	/* FIN sent while draining: discard input to EOF */
	RE_CONN_IN_READY = 1u << 7,	/* on the worker's ready list */
	RE_CONN_CLOSED = 1u << 8,	/* fd closed; struct freed at the end of the batch */
	RE_CONN_BULK = 1u << 9,		/* large reads: echo with splice(2), no user copy */
	RE_CONN_BUDGET = 1u << 10,	/* reading stopped: --max-buffered had no room to grow
					 * the buffer, or to keep what an echo in place could
					 * not send; retried on a timer */
	RE_CONN_SERVICE = 1u << 11,	/* not echo: discard, or chargen with RE_CONN_CHARGEN
					 * (--service, chosen at accept) */
	RE_CONN_CHARGEN = 1u << 12,
	RE_CONN_CHOSEN = 1u << 13,	/* the impairments apply to it (share, at accept) */
	RE_CONN_IMP = 1u << 14,		/* on the impaired path: `imp` is set */
	RE_CONN_IMP_END = 1u << 15,	/* close-after reached: FIN sent, input dropped to EOF */
	RE_CONN_IMP_COUNTED = 1u << 16,	/* counted in impaired_conns */
};

/* A doubly-linked intrusive list node and head. */
struct re_link {
	struct re_conn *prev;
	struct re_conn *next;
};

struct re_conn_list {
	struct re_conn *head;
	struct re_conn *tail;
};

struct re_conn {
	int fd;
	uint32_t flags;
	uint32_t last_active;		/* worker clock, ms; for the idle timeout */
	uint32_t svc_pos;		/* chargen: offset in the pattern's period */
	struct re_buf *out;		/* unsent echo bytes, NULL when none; on the impaired
					 * path also the held ones (stream range [tx, rx)) */
	struct re_imp *imp;		/* impairment state, NULL unless RE_CONN_IMP */
	struct re_link lru;		/* all open conns, least recently active first */
	struct re_link ready;		/* ready list, or the free/graveyard list */
};

/* Connection structs in slabs, recycled through a free list. */
struct re_conn_pool {
	struct re_conn *free;
	void **slabs;
	size_t nslabs;
	size_t cap_slabs;
	size_t per_slab;
};

void re_conn_pool_init(struct re_conn_pool *p, size_t per_slab);
void re_conn_pool_finish(struct re_conn_pool *p);

/* A zeroed connection with fd = -1. NULL only on ENOMEM. */
struct re_conn *re_conn_get(struct re_conn_pool *p);
void re_conn_put(struct re_conn_pool *p, struct re_conn *c);

/* Intrusive lists: `off` selects the link (offsetof(struct re_conn, lru) or ready). */
void re_conn_list_append(struct re_conn_list *l, struct re_conn *c, size_t off);
void re_conn_list_remove(struct re_conn_list *l, struct re_conn *c, size_t off);

#define RE_LRU offsetof(struct re_conn, lru)
#define RE_READY offsetof(struct re_conn, ready)

#endif

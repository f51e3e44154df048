/* conn: connection structs from per-worker slabs, and intrusive list helpers. */
#include "conn.h"

#include <stdlib.h>
#include <string.h>

/* Under AddressSanitizer a pooled (free) struct is poisoned but for its free-list
 * link, so a use of a connection after re_conn_put() is reported like a use after
 * free(): a pool would otherwise hide it. */
#if defined(__SANITIZE_ADDRESS__)
#define RE_POOL_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RE_POOL_ASAN 1
#endif
#endif
#ifdef RE_POOL_ASAN
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

/* Everything before the free-list link (ready.next, the last member). */
#define RE_CONN_POISON_LEN offsetof(struct re_conn, ready.next)
_Static_assert(offsetof(struct re_conn, ready.next) + sizeof(struct re_conn *) ==
	       sizeof(struct re_conn), "the free-list link is the struct's last member");

static void pool_push(struct re_conn_pool *p, struct re_conn *c)
{
	c->ready.next = p->free;
	p->free = c;
	POISON(c, RE_CONN_POISON_LEN);
}

static struct re_link *link_of(struct re_conn *c, size_t off)
{
	/* Through void *: the offset is that of a member, so the alignment holds. */
	return (struct re_link *)(void *)((char *)c + off);
}

void re_conn_pool_init(struct re_conn_pool *p, size_t per_slab)
{
	memset(p, 0, sizeof(*p));
	p->per_slab = per_slab ? per_slab : 256;
}

void re_conn_pool_finish(struct re_conn_pool *p)
{
	for (size_t i = 0; i < p->nslabs; i++) {
		UNPOISON(p->slabs[i], p->per_slab * sizeof(struct re_conn));
		free(p->slabs[i]);
	}
	free(p->slabs);
	memset(p, 0, sizeof(*p));
}

static int grow(struct re_conn_pool *p)
{
	struct re_conn *slab;

	if (p->nslabs == p->cap_slabs) {
		size_t ncap = p->cap_slabs ? p->cap_slabs * 2 : 16;
		void **ns = realloc(p->slabs, ncap * sizeof(*ns));

		if (ns == NULL) {
			return -1;
		}
		p->slabs = ns;
		p->cap_slabs = ncap;
	}
	slab = malloc(p->per_slab * sizeof(*slab));
	if (slab == NULL) {
		return -1;
	}
	p->slabs[p->nslabs++] = slab;
	for (size_t i = 0; i < p->per_slab; i++) {
		pool_push(p, &slab[i]);
	}
	return 0;
}

struct re_conn *re_conn_get(struct re_conn_pool *p)
{
	struct re_conn *c;

	if (p->free == NULL && grow(p) < 0) {
		return NULL;
	}
	c = p->free;
	p->free = c->ready.next;
	UNPOISON(c, RE_CONN_POISON_LEN);
	memset(c, 0, sizeof(*c));
	c->fd = -1;
	return c;
}

void re_conn_put(struct re_conn_pool *p, struct re_conn *c)
{
	pool_push(p, c);
}

void re_conn_list_append(struct re_conn_list *l, struct re_conn *c, size_t off)
{
	struct re_link *lk = link_of(c, off);

	lk->next = NULL;
	lk->prev = l->tail;
	if (l->tail != NULL) {
		link_of(l->tail, off)->next = c;
	} else {
		l->head = c;
	}
	l->tail = c;
}

void re_conn_list_remove(struct re_conn_list *l, struct re_conn *c, size_t off)
{
	struct re_link *lk = link_of(c, off);

	if (lk->prev != NULL) {
		link_of(lk->prev, off)->next = lk->next;
	} else {
		l->head = lk->next;
	}
	if (lk->next != NULL) {
		link_of(lk->next, off)->prev = lk->prev;
	} else {
		l->tail = lk->prev;
	}
	lk->prev = NULL;
	lk->next = NULL;
}

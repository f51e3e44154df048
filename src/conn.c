/* conn: connection structs from per-worker slabs, and intrusive list helpers. */
#include "conn.h"

#include <stdlib.h>
#include <string.h>

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
		slab[i].ready.next = p->free;
		p->free = &slab[i];
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
	memset(c, 0, sizeof(*c));
	c->fd = -1;
	return c;
}

void re_conn_put(struct re_conn_pool *p, struct re_conn *c)
{
	c->ready.next = p->free;
	p->free = c;
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

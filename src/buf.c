/* buf: pending-output buffers and their per-worker pool. Single-threaded by design. */
#include "buf.h"

#include <stdlib.h>
#include <string.h>

void re_buf_pool_init(struct re_buf_pool *p, uint32_t max_free)
{
	memset(p, 0, sizeof(*p));
	p->max_free = max_free;
}

void re_buf_pool_finish(struct re_buf_pool *p)
{
	while (p->free != NULL) {
		struct re_buf *b = p->free;

		p->free = b->next;
		p->allocated -= b->cap;
		free(b);
	}
	p->nfree = 0;
}

struct re_buf *re_buf_get(struct re_buf_pool *p, uint32_t cap)
{
	struct re_buf **link = &p->free;
	struct re_buf *b;

	/* The pool normally holds one size (the current --conn-buffer); after a runtime
	 * change, stale sizes are skipped and trimmed as they come back. */
	for (b = p->free; b != NULL; link = &b->next, b = b->next) {
		if (b->cap == cap) {
			*link = b->next;
			p->nfree--;
			b->next = NULL;
			b->off = 0;
			b->len = 0;
			return b;
		}
	}
	b = malloc(sizeof(*b) + cap);
	if (b == NULL) {
		return NULL;
	}
	p->allocated += cap;
	b->next = NULL;
	b->cap = cap;
	b->off = 0;
	b->len = 0;
	return b;
}

void re_buf_put(struct re_buf_pool *p, struct re_buf *b)
{
	if (b == NULL) {
		return;
	}
	if (p->nfree >= p->max_free) {
		p->allocated -= b->cap;
		free(b);
		return;
	}
	b->next = p->free;
	p->free = b;
	p->nfree++;
}

uint32_t re_buf_tail(struct re_buf *b)
{
	uint32_t tail = b->cap - b->off - b->len;

	/* Compact only when the tail has shrunk below a quarter: the copy is then paid
	 * at most once per cap/4 bytes received. */
	if (b->off > 0 && tail < b->cap / 4) {
		memmove(b->data, b->data + b->off, b->len);
		b->off = 0;
		tail = b->cap - b->len;
	}
	return tail;
}

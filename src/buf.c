/* buf: pending-output buffers, their per-worker pool, and the shared budget. Buffers
 * and pools are single-threaded by design; the budget is one atomic counter. */
#include "buf.h"

#include <errno.h>
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

	/* Only small sizes are pooled; after a runtime change, stale sizes are skipped
	 * and trimmed as they come back. */
	for (b = p->free; b != NULL && cap <= RE_BUF_POOL_MAX_CAP; link = &b->next, b = b->next) {
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
	if (p->nfree >= p->max_free || b->cap > RE_BUF_POOL_MAX_CAP) {
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

int re_buf_grow(struct re_buf_pool *p, struct re_buf **bp, uint32_t ncap)
{
	struct re_buf *b = *bp;
	struct re_buf *nb;

	if (b->off > 0) {
		memmove(b->data, b->data + b->off, b->len);
		b->off = 0;
	}
	nb = realloc(b, sizeof(*nb) + ncap);
	if (nb == NULL) {
		return -ENOMEM;
	}
	p->allocated = p->allocated - nb->cap + ncap;
	nb->cap = ncap;
	*bp = nb;
	return 0;
}

uint32_t re_buf_size_for(uint64_t need, uint32_t limit)
{
	uint64_t sz = need < RE_BUF_STEP ? RE_BUF_STEP : need;

	if (sz >= limit) {
		return limit;	/* also keeps the rounding below from wrapping */
	}
	sz = (sz + RE_BUF_STEP - 1) / RE_BUF_STEP * RE_BUF_STEP;
	return sz > limit ? limit : (uint32_t)sz;
}

uint32_t re_buf_next_size(uint32_t cap, uint32_t limit)
{
	uint64_t n = (uint64_t)cap * 2;

	if (cap >= limit) {
		return cap;
	}
	return n > limit ? limit : (uint32_t)n;
}

void re_buf_budget_init(struct re_buf_budget *b)
{
	atomic_init(&b->used, 0);
}

bool re_buf_budget_take(struct re_buf_budget *b, uint64_t n, uint64_t limit)
{
	uint64_t cur = atomic_load_explicit(&b->used, memory_order_relaxed);

	do {
		if (cur > limit || n > limit - cur) {
			return false;
		}
	} while (!atomic_compare_exchange_weak_explicit(&b->used, &cur, cur + n,
							memory_order_relaxed, memory_order_relaxed));
	return true;
}

uint64_t re_buf_budget_take_upto(struct re_buf_budget *b, uint64_t n, uint64_t limit)
{
	uint64_t cur = atomic_load_explicit(&b->used, memory_order_relaxed);
	uint64_t take;

	do {
		take = cur >= limit ? 0 : limit - cur;
		if (take > n) {
			take = n;
		}
		if (take == 0) {
			return 0;
		}
	} while (!atomic_compare_exchange_weak_explicit(&b->used, &cur, cur + take,
							memory_order_relaxed, memory_order_relaxed));
	return take;
}

void re_buf_budget_give(struct re_buf_budget *b, uint64_t n)
{
	atomic_fetch_sub_explicit(&b->used, n, memory_order_relaxed);
}

uint64_t re_buf_budget_used(const struct re_buf_budget *b)
{
	return atomic_load_explicit(&b->used, memory_order_relaxed);
}

/* buf: a connection's unsent echo bytes, the per-worker pool that recycles them, and
 * the process-wide budget that bounds them all.
 * A connection holds a buffer only while it has unsent bytes, sized to what it holds
 * (multiples of RE_BUF_STEP, grown by doubling up to --conn-buffer). Buffers and pools
 * are owned by one worker and never shared; the budget is the one shared object.
 */
#ifndef REUSEECHO_SRC_BUF_H
#define REUSEECHO_SRC_BUF_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RE_BUF_STEP 4096u		/* buffer sizes are multiples of this (a page) */
#define RE_BUF_POOL_MAX_CAP (16u * 1024u)	/* larger buffers are freed, not pooled */

/* Bytes [off, off + len) of data[] are pending; cap is the usable size. */
struct re_buf {
	struct re_buf *next;	/* pool free list link */
	uint32_t cap;
	uint32_t off;
	uint32_t len;
	char data[];
};

struct re_buf_pool {
	struct re_buf *free;
	uint32_t nfree;
	uint32_t max_free;	/* buffers kept for reuse; the rest go back to malloc */
	uint64_t allocated;	/* bytes currently allocated (in use or pooled) */
};

/* The process-wide pending-output budget: bytes that workers have taken for their
 * buffers (allocated, pooled, or held as a worker's write-through reserve). Owned by
 * the supervisor; every worker holds a pointer. Workers update it with an atomic
 * read-modify-write only when a buffer is allocated, grown or freed, never on the
 * steady-state echo path (which holds no buffer and takes nothing). The limit is not
 * stored here: it is the RCU-published --max-buffered, passed to each call. */
struct re_buf_budget {
	_Alignas(64) _Atomic uint64_t used;
	char pad[64 - sizeof(uint64_t)];	/* the counter has its cache line to itself */
};

/* Initialise a pool that keeps up to max_free idle buffers. */
void re_buf_pool_init(struct re_buf_pool *p, uint32_t max_free);

/* Free every pooled buffer. Buffers still held by connections must be put first. */
void re_buf_pool_finish(struct re_buf_pool *p);

/* An empty buffer of exactly cap bytes, reusing a pooled one of that size when there
 * is one (no malloc in steady state). NULL only on ENOMEM. */
struct re_buf *re_buf_get(struct re_buf_pool *p, uint32_t cap);

/* Return b to the pool when it is small (cap <= RE_BUF_POOL_MAX_CAP) and the pool has
 * room, else to malloc; p->allocated says which. Accepts NULL. */
void re_buf_put(struct re_buf_pool *p, struct re_buf *b);

/* Make the free tail contiguous and as large as possible: moves pending bytes to the
 * front when the tail is short. Returns the tail size. */
uint32_t re_buf_tail(struct re_buf *b);

/* Resize *b to ncap bytes (ncap >= its pending bytes), moving the pending bytes to
 * the front. Returns 0, or -ENOMEM with *b unchanged. */
int re_buf_grow(struct re_buf_pool *p, struct re_buf **b, uint32_t ncap)
	__attribute__((warn_unused_result));

/* The buffer size that holds need bytes: need rounded up to RE_BUF_STEP, at least one
 * step, at most limit (--conn-buffer). Pure. */
uint32_t re_buf_size_for(uint64_t need, uint32_t limit);

/* The next size when a full buffer of cap bytes grows: double, at most limit. Equal
 * to cap when cap has reached the limit. Pure. */
uint32_t re_buf_next_size(uint32_t cap, uint32_t limit);

void re_buf_budget_init(struct re_buf_budget *b);

/* Take exactly n bytes if used + n stays within limit; true if taken. Context: any
 * thread (atomic compare-and-swap). */
bool re_buf_budget_take(struct re_buf_budget *b, uint64_t n, uint64_t limit);

/* Take as much of n as the limit allows, possibly 0; returns the bytes taken. */
uint64_t re_buf_budget_take_upto(struct re_buf_budget *b, uint64_t n, uint64_t limit);

/* Give back n bytes taken earlier. */
void re_buf_budget_give(struct re_buf_budget *b, uint64_t n);

/* Bytes taken now (relaxed load). */
uint64_t re_buf_budget_used(const struct re_buf_budget *b);

#endif

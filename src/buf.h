/* buf: a connection's unsent echo bytes, and the per-worker pool that recycles them.
 * A connection holds a buffer only while it has unsent bytes. Owned by one worker;
 * never shared between threads.
 */
#ifndef REUSEECHO_SRC_BUF_H
#define REUSEECHO_SRC_BUF_H

#include <stddef.h>
#include <stdint.h>

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

/* Initialise a pool that keeps up to max_free idle buffers. */
void re_buf_pool_init(struct re_buf_pool *p, uint32_t max_free);

/* Free every pooled buffer. Buffers still held by connections must be put first. */
void re_buf_pool_finish(struct re_buf_pool *p);

/* An empty buffer of exactly cap bytes, reusing a pooled one of that size when there
 * is one (no malloc in steady state). NULL only on ENOMEM. */
struct re_buf *re_buf_get(struct re_buf_pool *p, uint32_t cap);

/* Return b to the pool (or to malloc when the pool is full or b's size is stale).
 * Accepts NULL. */
void re_buf_put(struct re_buf_pool *p, struct re_buf *b);

/* Make the free tail contiguous and as large as possible: moves pending bytes to the
 * front when the tail is short. Returns the tail size. */
uint32_t re_buf_tail(struct re_buf *b);

#endif

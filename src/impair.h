/* impair: the per-connection state of the impairments (delay, jitter, bandwidth,
 * close-after, reset-after) and the per-worker timer heap that wakes impaired
 * connections when held bytes come due. Pure bookkeeping on stream positions and the
 * worker's millisecond clock: no I/O, no locks. Owned by one worker thread; the bytes
 * themselves stay in the connection's buffer (struct re_buf), whose pending bytes are
 * the stream range [tx, rx).
 */
#ifndef REUSEECHO_SRC_IMPAIR_H
#define REUSEECHO_SRC_IMPAIR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Held chunks not yet due, per connection. A read that finds the ring full joins the
 * newest mark and takes its own, later, release time: bytes are then held a little
 * longer than asked, never shorter, and never reordered. */
#define RE_IMP_MARKS 32

struct re_imp_mark {
	uint64_t end;		/* stream position just past the chunk */
	uint32_t at;		/* worker ms when it may be sent */
};

struct re_imp {
	void *owner;		/* the connection (the heap hands it back) */
	uint64_t rx;		/* stream bytes taken in */
	uint64_t tx;		/* stream bytes echoed */
	uint64_t released;	/* [tx, released) is due: may be sent now */
	uint64_t credit;	/* bandwidth bucket, in byte-milliseconds */
	uint32_t credit_at;	/* last refill, worker ms */
	bool metered;		/* the bucket has been used (credit is valid) */
	uint32_t wake_at;	/* heap key while in the heap */
	int32_t heap_idx;	/* -1 when not in the heap */
	uint16_t head;		/* oldest mark */
	uint16_t nmarks;
	struct re_imp_mark marks[RE_IMP_MARKS];
};

/* Start tracking a connection that has echoed `echoed` bytes and holds `pending`
 * unsent ones (due now): stream positions start there, so a byte limit counts from
 * the connection's first byte. */
void re_imp_init(struct re_imp *m, void *owner, uint64_t echoed, uint64_t pending, uint32_t now);

/* n bytes were taken in at `now`; they are due at `at` (the caller's now + delay +
 * jitter). Keeps release times non-decreasing: never earlier than the previous
 * chunk's. With nothing held and at == now the bytes are due at once (no mark). */
void re_imp_add(struct re_imp *m, uint64_t n, uint32_t now, uint32_t at);

/* Move `released` past every mark due at `now`. */
void re_imp_release(struct re_imp *m, uint32_t now);

/* Bytes held, not yet due. */
static inline uint64_t re_imp_held(const struct re_imp *m)
{
	return m->rx - m->released;
}

/* Bytes that may be sent now: due, within `limit` echoed bytes in all (0 = none), and
 * within the bandwidth bucket (rate bytes/s, 0 = unlimited) after refilling it. */
uint64_t re_imp_sendable(struct re_imp *m, uint32_t now, uint64_t rate, uint64_t limit);

/* s bytes were sent: advance tx and spend bucket credit. */
void re_imp_sent(struct re_imp *m, uint64_t s, uint64_t rate);

/* When to look at the connection again (worker ms), or false when nothing but an
 * event can move it: the next mark's release, or the time the bucket holds the next
 * slice of due bytes. */
bool re_imp_next_wake(const struct re_imp *m, uint32_t now, uint64_t rate, uint64_t limit,
		      uint32_t *at);

/* A min-heap of impaired connections by wake time (the worker's 32-bit ms clock,
 * compared wrap-aware). */
struct re_imp_heap {
	struct re_imp **a;
	size_t n;
	size_t cap;
};

/* Insert m, or move it, to wake at `at`. Returns 0 or -ENOMEM (m unchanged). */
int re_imp_heap_set(struct re_imp_heap *h, struct re_imp *m, uint32_t at)
	__attribute__((warn_unused_result));

/* Remove m if it is in the heap. */
void re_imp_heap_remove(struct re_imp_heap *h, struct re_imp *m);

/* The earliest entry, or NULL. */
static inline struct re_imp *re_imp_heap_top(const struct re_imp_heap *h)
{
	return h->n > 0 ? h->a[0] : NULL;
}

void re_imp_heap_finish(struct re_imp_heap *h);

#endif

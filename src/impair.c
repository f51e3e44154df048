/* impair: held-byte bookkeeping, the bandwidth bucket and the wake-up heap. */
#include "impair.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Bandwidth: a connection sends in slices of 10 ms of the rate (fewer, larger sends
 * than byte by byte) and starts with one. The bucket holds at most 50 ms of the rate:
 * a worker that wakes a little late keeps the rate, and a connection that paused
 * sends at most 50 ms worth at once. */
#define BUCKET_MS 50u
#define SLICE_DIV 100u

static bool before(uint32_t a, uint32_t b)
{
	return (int32_t)(a - b) < 0;
}

void re_imp_init(struct re_imp *m, void *owner, uint64_t echoed, uint64_t pending, uint32_t now)
{
	memset(m, 0, sizeof(*m));
	m->owner = owner;
	m->tx = echoed;
	m->rx = echoed + pending;
	m->released = m->rx;
	m->credit_at = now;
	m->heap_idx = -1;
}

void re_imp_add(struct re_imp *m, uint64_t n, uint32_t now, uint32_t at)
{
	struct re_imp_mark *last = NULL;

	if (m->nmarks > 0) {
		last = &m->marks[(m->head + m->nmarks - 1) % RE_IMP_MARKS];
		if (before(at, last->at)) {
			at = last->at;	/* never overtake the chunk before */
		}
	}
	m->rx += n;
	if (last == NULL && !before(now, at)) {
		m->released = m->rx;	/* due now and nothing ahead of it */
		return;
	}
	if (last != NULL && (last->at == at || m->nmarks == RE_IMP_MARKS)) {
		last->end = m->rx;
		last->at = at;
		return;
	}
	m->marks[(m->head + m->nmarks) % RE_IMP_MARKS] = (struct re_imp_mark){ m->rx, at };
	m->nmarks++;
}

void re_imp_release(struct re_imp *m, uint32_t now)
{
	while (m->nmarks > 0 && !before(now, m->marks[m->head].at)) {
		m->released = m->marks[m->head].end;
		m->head = (uint16_t)((m->head + 1) % RE_IMP_MARKS);
		m->nmarks--;
	}
}

static uint64_t bucket_cap(uint64_t rate)
{
	uint64_t cap = rate * BUCKET_MS;	/* byte-ms: rate bytes per 1000 ms */

	return cap < 1000 ? 1000 : cap;
}

static uint64_t slice_bytes(uint64_t rate)
{
	uint64_t s = rate / SLICE_DIV;

	return s == 0 ? 1 : s;
}

static void refill(struct re_imp *m, uint32_t now, uint64_t rate)
{
	uint32_t dt = before(m->credit_at, now) ? now - m->credit_at : 0;
	uint64_t cap = bucket_cap(rate);

	if (!m->metered) {
		/* First use: one slice, so a new connection starts at the rate rather
		 * than with a burst. */
		m->metered = true;
		m->credit_at = now;
		m->credit = slice_bytes(rate) * 1000;
		return;
	}
	m->credit_at = now;
	if (dt >= 1000 || m->credit >= cap) {
		m->credit = cap;
		return;
	}
	m->credit += (uint64_t)dt * rate;
	if (m->credit > cap) {
		m->credit = cap;
	}
}

uint64_t re_imp_sendable(struct re_imp *m, uint32_t now, uint64_t rate, uint64_t limit)
{
	uint64_t n = m->released - m->tx;

	if (limit != 0) {
		uint64_t left = limit > m->tx ? limit - m->tx : 0;

		n = n < left ? n : left;
	}
	if (rate != 0 && n > 0) {
		uint64_t allowed;

		refill(m, now, rate);
		allowed = m->credit / 1000;
		n = n < allowed ? n : allowed;
	}
	return n;
}

void re_imp_sent(struct re_imp *m, uint64_t s, uint64_t rate)
{
	m->tx += s;
	if (rate != 0) {
		uint64_t cost = s * 1000;

		m->credit = m->credit > cost ? m->credit - cost : 0;
	}
}

bool re_imp_next_wake(const struct re_imp *m, uint32_t now, uint64_t rate, uint64_t limit,
		      uint32_t *at)
{
	uint64_t due = m->released - m->tx;

	if (limit != 0 && m->tx >= limit) {
		return false;
	}
	if (due > 0) {
		uint64_t want, slice = slice_bytes(rate);

		if (rate == 0) {
			return false;	/* only the socket holds it back: EPOLLOUT */
		}
		want = (due < slice ? due : slice) * 1000;
		if (m->credit >= want) {
			return false;
		}
		*at = now + (uint32_t)((want - m->credit + rate - 1) / rate);
		return true;
	}
	if (m->nmarks > 0) {
		*at = m->marks[m->head].at;
		return true;
	}
	return false;
}

/* --- the heap --------------------------------------------------------------------- */

static void place(struct re_imp_heap *h, size_t i, struct re_imp *m)
{
	h->a[i] = m;
	m->heap_idx = (int32_t)i;
}

static void sift_up(struct re_imp_heap *h, size_t i)
{
	struct re_imp *m = h->a[i];

	while (i > 0) {
		size_t p = (i - 1) / 2;

		if (!before(m->wake_at, h->a[p]->wake_at)) {
			break;
		}
		place(h, i, h->a[p]);
		i = p;
	}
	place(h, i, m);
}

static void sift_down(struct re_imp_heap *h, size_t i)
{
	struct re_imp *m = h->a[i];

	for (;;) {
		size_t c = 2 * i + 1;

		if (c >= h->n) {
			break;
		}
		if (c + 1 < h->n && before(h->a[c + 1]->wake_at, h->a[c]->wake_at)) {
			c++;
		}
		if (!before(h->a[c]->wake_at, m->wake_at)) {
			break;
		}
		place(h, i, h->a[c]);
		i = c;
	}
	place(h, i, m);
}

int re_imp_heap_set(struct re_imp_heap *h, struct re_imp *m, uint32_t at)
{
	if (m->heap_idx < 0) {
		if (h->n == h->cap) {
			size_t ncap = h->cap ? 2 * h->cap : 64;
			struct re_imp **a = realloc(h->a, ncap * sizeof(*a));

			if (a == NULL) {
				return -ENOMEM;
			}
			h->a = a;
			h->cap = ncap;
		}
		m->wake_at = at;
		place(h, h->n++, m);
		sift_up(h, h->n - 1);
		return 0;
	}
	m->wake_at = at;
	sift_up(h, (size_t)m->heap_idx);
	sift_down(h, (size_t)m->heap_idx);
	return 0;
}

void re_imp_heap_remove(struct re_imp_heap *h, struct re_imp *m)
{
	struct re_imp *last;
	size_t i;

	if (m->heap_idx < 0) {
		return;
	}
	i = (size_t)m->heap_idx;
	m->heap_idx = -1;
	if (--h->n == i) {
		return;
	}
	last = h->a[h->n];
	place(h, i, last);
	sift_up(h, i);
	sift_down(h, (size_t)last->heap_idx);
}

void re_imp_heap_finish(struct re_imp_heap *h)
{
	free(h->a);
	h->a = NULL;
	h->n = h->cap = 0;
}

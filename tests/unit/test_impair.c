/* test_impair: unit test for src/impair.c: held chunks are released in order and
 * never earlier than asked (jitter that would overtake waits instead), a full mark
 * ring holds later bytes longer rather than shorter, the bandwidth bucket's arithmetic
 * and wake times, the byte limit, and the wake-up heap's order under inserts, moves
 * and removals (against a brute-force minimum), across the 32-bit clock's wrap.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "impair.h"

#include "check.h"

static void test_hold_order(void)
{
	struct re_imp m;
	uint32_t now = 1000, at;

	re_imp_init(&m, NULL, 0, 0, now);
	re_imp_add(&m, 10, now, now + 50);	/* due at 1050 */
	re_imp_add(&m, 5, now + 1, now + 20);	/* would overtake: due at 1050 too */
	re_imp_add(&m, 7, now + 2, now + 80);	/* due at 1080 */
	CHECK(re_imp_held(&m) == 22);
	CHECK(m.nmarks == 2);			/* the overtaking chunk joined the first */
	re_imp_release(&m, 1049);
	CHECK(m.released == 0);
	CHECK(re_imp_next_wake(&m, 1049, 0, 0, &at) && at == 1050);
	re_imp_release(&m, 1050);
	CHECK(m.released == 15);
	CHECK(re_imp_sendable(&m, 1050, 0, 0) == 15);
	re_imp_sent(&m, 15, 0);
	CHECK(re_imp_next_wake(&m, 1050, 0, 0, &at) && at == 1080);
	re_imp_release(&m, 1080);
	CHECK(m.released == 22 && m.nmarks == 0);
	/* Nothing held and due now: released at once, no mark. */
	re_imp_add(&m, 3, 2000, 2000);
	CHECK(m.released == 25 && m.nmarks == 0);
	/* Pending bytes a connection held before it was impaired are due at once. */
	re_imp_init(&m, NULL, 0, 100, now);
	CHECK(re_imp_sendable(&m, now, 0, 0) == 100);
}

static void test_full_ring(void)
{
	struct re_imp m;
	uint32_t t;

	re_imp_init(&m, NULL, 0, 0, 0);
	for (t = 0; t < RE_IMP_MARKS; t++) {
		re_imp_add(&m, 1, t, t + 100);
	}
	CHECK(m.nmarks == RE_IMP_MARKS);
	/* One more: joins the newest mark, which now waits for the later time. */
	re_imp_add(&m, 1, 40, 140);
	CHECK(m.nmarks == RE_IMP_MARKS);
	re_imp_release(&m, 100 + RE_IMP_MARKS - 1);
	CHECK(m.released == RE_IMP_MARKS - 1);	/* the last mark is not due yet */
	re_imp_release(&m, 140);
	CHECK(m.released == RE_IMP_MARKS + 1);
}

static void test_bucket(void)
{
	struct re_imp m;
	uint64_t rate = 1000000;	/* bytes per second */
	uint32_t now = 0, at;
	uint64_t total = 0;

	re_imp_init(&m, NULL, 0, 0, now);
	re_imp_add(&m, 10000000, now, now);	/* 10 MB due now */
	/* A new connection starts with one slice (10 ms of the rate), no burst. */
	CHECK(re_imp_sendable(&m, now, rate, 0) == 10000);
	re_imp_sent(&m, 10000, rate);
	CHECK(re_imp_sendable(&m, now, rate, 0) == 0);
	/* Next slice in 10 ms. */
	CHECK(re_imp_next_wake(&m, now, rate, 0, &at) && at == 10);
	/* One second of waking when told to: the rate is kept within a slice. */
	total = 10000;
	while (now < 1000) {
		uint64_t n;

		CHECK(re_imp_next_wake(&m, now, rate, 0, &at));
		CHECK(at > now);
		now = at;
		n = re_imp_sendable(&m, now, rate, 0);
		CHECK(n >= 10000);
		re_imp_sent(&m, n, rate);
		total += n;
	}
	CHECK(total >= 1000000 && total <= 1020000);
	/* After a pause the bucket holds at most 50 ms of the rate. */
	now += 5000;
	CHECK(re_imp_sendable(&m, now, rate, 0) == 50000);
	/* A limit caps what is sendable, and nothing wakes a connection at its limit. */
	re_imp_init(&m, NULL, 0, 0, 0);
	re_imp_add(&m, 500, 0, 0);
	CHECK(re_imp_sendable(&m, 0, 0, 300) == 300);
	re_imp_sent(&m, 300, 0);
	CHECK(re_imp_sendable(&m, 0, 0, 300) == 0);
	CHECK(!re_imp_next_wake(&m, 0, 0, 300, &at));
	/* The limit counts from the connection's first byte: one that echoed 250
	 * bytes before the impairment met it may echo 50 more under a 300-byte limit. */
	re_imp_init(&m, NULL, 250, 0, 0);
	re_imp_add(&m, 500, 0, 0);
	CHECK(re_imp_sendable(&m, 0, 0, 300) == 50);
	re_imp_sent(&m, 50, 0);
	CHECK(m.tx == 300 && !re_imp_next_wake(&m, 0, 0, 300, &at));
	/* A low rate: one byte at a time, 100 ms apart at 10 B/s. */
	re_imp_init(&m, NULL, 0, 0, 0);
	re_imp_add(&m, 5, 0, 0);
	CHECK(re_imp_sendable(&m, 0, 10, 0) == 1);
	re_imp_sent(&m, 1, 10);
	CHECK(re_imp_next_wake(&m, 0, 10, 0, &at) && at == 100);
}

#define N 300

static uint32_t brute_min(struct re_imp *e, const int *in, uint32_t base)
{
	uint32_t best = UINT32_MAX;

	for (int i = 0; i < N; i++) {
		if (in[i] && e[i].wake_at - base < best) {
			best = e[i].wake_at - base;
		}
	}
	return best + base;
}

static void test_heap(void)
{
	static struct re_imp e[N];
	int in[N] = { 0 };
	struct re_imp_heap h = { 0 };
	uint32_t base = UINT32_MAX - 5000;	/* the clock wraps during the test */
	unsigned seed = 7;

	for (int i = 0; i < N; i++) {
		re_imp_init(&e[i], &e[i], 0, 0, 0);
	}
	for (int round = 0; round < 20000; round++) {
		int i = rand_r(&seed) % N;
		int op = rand_r(&seed) % 3;

		if (op < 2) {
			CHECK(re_imp_heap_set(&h, &e[i], base + (uint32_t)(rand_r(&seed) % 10000)) == 0);
			in[i] = 1;
		} else {
			re_imp_heap_remove(&h, &e[i]);
			in[i] = 0;
			CHECK(e[i].heap_idx == -1);
		}
		if (h.n > 0) {
			CHECK(re_imp_heap_top(&h)->wake_at == brute_min(e, in, base));
		}
	}
	/* Drain in order. */
	{
		uint32_t last = base;
		size_t n = h.n;

		for (size_t k = 0; k < n; k++) {
			struct re_imp *t = re_imp_heap_top(&h);

			CHECK(t != NULL);
			if (t == NULL) {
				return;
			}
			CHECK((int32_t)(t->wake_at - last) >= 0);
			last = t->wake_at;
			re_imp_heap_remove(&h, t);
		}
		CHECK(h.n == 0 && re_imp_heap_top(&h) == NULL);
	}
	re_imp_heap_finish(&h);
}

int main(void)
{
	test_hold_order();
	test_full_ring();
	test_bucket();
	test_heap();
	printf("impair: ok\n");
	return 0;
}

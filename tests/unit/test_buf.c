/* test_buf: unit test for src/buf.c, the pure parts of --max-buffered: buffer sizing
 * and growth steps, the pool (which sizes it keeps, what it counts as allocated),
 * re_buf_grow keeping pending bytes, and the budget's take/give arithmetic including
 * its limit edges and concurrent takers.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"

#include "check.h"

static void test_sizes(void)
{
	CHECK(re_buf_size_for(0, 262144) == 4096);
	CHECK(re_buf_size_for(1, 262144) == 4096);
	CHECK(re_buf_size_for(4096, 262144) == 4096);
	CHECK(re_buf_size_for(4097, 262144) == 8192);
	CHECK(re_buf_size_for(200000, 262144) == 200704);
	CHECK(re_buf_size_for(262144, 262144) == 262144);
	CHECK(re_buf_size_for(1u << 30, 262144) == 262144);
	/* A --conn-buffer that is not a multiple of a step is still the cap. */
	CHECK(re_buf_size_for(9000, 10000) == 10000);
	CHECK(re_buf_size_for(UINT64_MAX - 1, 10000) == 10000);

	CHECK(re_buf_next_size(4096, 262144) == 8192);
	CHECK(re_buf_next_size(131072, 262144) == 262144);
	CHECK(re_buf_next_size(200704, 262144) == 262144);
	CHECK(re_buf_next_size(262144, 262144) == 262144);
	/* After `set conn-buffer` lowered the cap, a larger buffer does not grow. */
	CHECK(re_buf_next_size(262144, 65536) == 262144);
	CHECK(re_buf_next_size(3u << 30, 0xffffffffu) == 0xffffffffu);
}

static void test_pool(void)
{
	struct re_buf_pool p;
	struct re_buf *small, *big, *again;

	re_buf_pool_init(&p, 4096 + 8192);	/* bytes */
	small = re_buf_get(&p, 4096);
	big = re_buf_get(&p, 65536);
	CHECK(small != NULL && big != NULL);
	CHECK(p.allocated == 4096 + 65536);
	re_buf_put(&p, big);	/* too large to pool: freed */
	CHECK(p.allocated == 4096 && p.nfree == 0);
	re_buf_put(&p, small);	/* pooled: still allocated */
	CHECK(p.allocated == 4096 && p.nfree == 1);
	again = re_buf_get(&p, 4096);
	CHECK(again == small && p.nfree == 0 && p.allocated == 4096);
	CHECK(again->off == 0 && again->len == 0);
	re_buf_put(&p, again);
	re_buf_put(&p, re_buf_get(&p, 8192));
	CHECK(p.free_bytes == 4096 + 8192);
	re_buf_put(&p, re_buf_get(&p, 12288));	/* no room for 12K more bytes: freed */
	CHECK(p.nfree == 2 && p.allocated == 4096 + 8192);
	again = re_buf_get(&p, 8192);		/* one out: room for 8K again, not 12K */
	re_buf_put(&p, re_buf_get(&p, 12288));
	CHECK(p.nfree == 1 && p.free_bytes == 4096);
	re_buf_put(&p, again);
	CHECK(p.nfree == 2 && p.free_bytes == 4096 + 8192);
	re_buf_put(&p, NULL);
	re_buf_pool_finish(&p);
	CHECK(p.allocated == 0 && p.nfree == 0 && p.free_bytes == 0);
}

/* A --conn-buffer change trims the sizes the pool will never be asked for again. */
static void test_pool_trim(void)
{
	struct re_buf_pool p;
	struct re_buf *a, *b, *c;

	re_buf_pool_init(&p, 1u << 20);
	a = re_buf_get(&p, 10000);	/* --conn-buffer 10000: its cap size */
	b = re_buf_get(&p, 8192);
	c = re_buf_get(&p, 4096);
	CHECK(a != NULL && b != NULL && c != NULL);
	re_buf_put(&p, a);
	re_buf_put(&p, b);
	re_buf_put(&p, c);
	CHECK(p.nfree == 3 && p.allocated == 10000 + 8192 + 4096);
	CHECK(re_buf_pool_trim(&p, 10000) == 0);	/* unchanged limit: all still usable */
	CHECK(re_buf_pool_trim(&p, 262144) == 10000);	/* 10000 is no step multiple */
	CHECK(p.nfree == 2 && p.free_bytes == 8192 + 4096 && p.allocated == 8192 + 4096);
	CHECK(re_buf_pool_trim(&p, 6000) == 8192);	/* above the new cap */
	CHECK(p.nfree == 1 && p.allocated == 4096);
	CHECK(re_buf_get(&p, 4096) == c);		/* what is left is reused */
	re_buf_put(&p, c);
	re_buf_pool_finish(&p);
	CHECK(p.allocated == 0);
}

static void test_grow(void)
{
	struct re_buf_pool p;
	struct re_buf *b;

	re_buf_pool_init(&p, 65536);
	b = re_buf_get(&p, 4096);
	CHECK(b != NULL);
	for (uint32_t i = 0; i < 4096; i++) {
		b->data[i] = (char)(i * 7);
	}
	b->off = 1000;
	b->len = 3096;
	CHECK(re_buf_grow(&p, &b, 8192) == 0);
	CHECK(b->cap == 8192 && b->off == 0 && b->len == 3096);
	CHECK(p.allocated == 8192);
	for (uint32_t i = 0; i < 3096; i++) {
		CHECK(b->data[i] == (char)((i + 1000) * 7));
	}
	CHECK(re_buf_tail(b) == 8192 - 3096);
	re_buf_put(&p, b);	/* 8K: pooled */
	re_buf_pool_finish(&p);
	CHECK(p.allocated == 0);
}

static void test_budget(void)
{
	struct re_buf_budget b;

	re_buf_budget_init(&b);
	CHECK(re_buf_budget_used(&b) == 0);
	CHECK(re_buf_budget_take(&b, 600, 1000));
	CHECK(!re_buf_budget_take(&b, 401, 1000));
	CHECK(re_buf_budget_take(&b, 400, 1000));
	CHECK(re_buf_budget_used(&b) == 1000);
	CHECK(!re_buf_budget_take(&b, 1, 1000));
	CHECK(re_buf_budget_take_upto(&b, 10, 1000) == 0);
	re_buf_budget_give(&b, 300);
	CHECK(re_buf_budget_take_upto(&b, 500, 1000) == 300);
	CHECK(re_buf_budget_used(&b) == 1000);
	/* A limit lowered below what is held: nothing more is granted, nothing wraps. */
	CHECK(!re_buf_budget_take(&b, 1, 500));
	CHECK(re_buf_budget_take_upto(&b, 1, 500) == 0);
	re_buf_budget_give(&b, 1000);
	CHECK(re_buf_budget_used(&b) == 0);
	CHECK(!re_buf_budget_take(&b, UINT64_MAX, 1000));
	CHECK(re_buf_budget_take(&b, 0, 0));
}

#define TAKERS 4
#define ROUNDS 100000

struct taker {
	struct re_buf_budget *b;
	uint64_t held_max;
	int over;
};

/* Each thread takes and gives 4096-byte steps; the total may never pass the limit. */
static void *taker_main(void *arg)
{
	struct taker *t = arg;
	uint64_t mine = 0;

	for (int i = 0; i < ROUNDS; i++) {
		if ((i & 3) != 3 && re_buf_budget_take(t->b, 4096, 40960)) {
			mine += 4096;
		} else if (mine > 0) {
			re_buf_budget_give(t->b, 4096);
			mine -= 4096;
		}
		if (re_buf_budget_used(t->b) > 40960) {
			t->over = 1;
		}
	}
	re_buf_budget_give(t->b, mine);
	return NULL;
}

static void test_budget_threads(void)
{
	struct re_buf_budget b;
	struct taker t[TAKERS];
	pthread_t th[TAKERS];

	re_buf_budget_init(&b);
	for (int i = 0; i < TAKERS; i++) {
		t[i] = (struct taker){ .b = &b };
		CHECK(pthread_create(&th[i], NULL, taker_main, &t[i]) == 0);
	}
	for (int i = 0; i < TAKERS; i++) {
		CHECK(pthread_join(th[i], NULL) == 0);
		CHECK(!t[i].over);
	}
	CHECK(re_buf_budget_used(&b) == 0);
}

int main(void)
{
	test_sizes();
	test_pool();
	test_pool_trim();
	test_grow();
	test_budget();
	test_budget_threads();
	printf("buf: all checks passed\n");
	return 0;
}

/* test_mclock: unit test for src/mclock.h, the worker's wrap-safe 32-bit timer
 * arithmetic (re_due, re_until) and the 64-bit clock it is derived from, around the
 * 2^32 ms wrap (49.7 days of uptime) and at the 2^31 ms interval limit.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "mclock.h"

#include "check.h"

static void test_due(void)
{
	CHECK(re_due(100, 100));
	CHECK(re_due(101, 100));
	CHECK(!re_due(99, 100));
	/* A deadline set just before the wrap, checked just after it. */
	CHECK(re_due(5, UINT32_MAX - 5));
	CHECK(!re_due(UINT32_MAX - 5, 5));
	/* A deadline that itself wrapped: now + 2000 computed at now = 2^32 - 1000. */
	{
		uint32_t now = UINT32_MAX - 999, at = now + 2000;

		CHECK(at == 1000);
		CHECK(!re_due(now, at));
		CHECK(!re_due(now + 1999, at));
		CHECK(re_due(now + 2000, at));
	}
	/* Intervals up to 2^31 - 1 ms are ordered right; that is the documented limit. */
	CHECK(!re_due(0, INT32_MAX));
	CHECK(re_due(INT32_MAX, 0));
}

static void test_until(void)
{
	CHECK(re_until(100, 350) == 250);
	CHECK(re_until(350, 100) == 0);
	CHECK(re_until(100, 100) == 0);
	CHECK(re_until(UINT32_MAX - 99, 150) == 250);	/* across the wrap */
	CHECK(re_until(150, UINT32_MAX - 99) == 0);	/* long past, across the wrap */
	CHECK(re_until(0, INT32_MAX) == INT32_MAX);
}

/* The 32-bit timer clock is the low half of the 64-bit one: stepping the 64-bit
 * value across a multiple of 2^32 keeps every deadline's distance. */
static void test_derived(void)
{
	const uint64_t base = (3ull << 32) - 250;	/* 250 ms before the third wrap */

	for (uint64_t t = base; t < base + 1000; t += 50) {
		uint32_t now = (uint32_t)t, at = (uint32_t)(t + 500);

		CHECK(re_until(now, at) == 500);
		CHECK(!re_due(now, at));
		CHECK(re_due((uint32_t)(t + 500), at));
	}
	{
		uint64_t a = re_mono_ms(), b = re_mono_ms();

		CHECK(a > 0 && b >= a);
	}
}

int main(void)
{
	test_due();
	test_until();
	test_derived();
	printf("mclock: all checks passed\n");
	return 0;
}

/* mclock: the monotonic millisecond clock every thread shares, and the wrap-safe
 * arithmetic on its 32-bit truncation.
 * The clock is CLOCK_MONOTONIC in milliseconds, 64 bits wide: heartbeats, stall
 * detection and the control thread compare these values directly. A worker keeps its
 * many timers (idle, accept retry, deadlines) in 32 bits to keep struct re_conn small:
 * those are the low 32 bits of the same clock, compared only through re_due() and
 * re_until(), which stay correct across the wrap every 2^32 ms (49.7 days) as long as
 * no interval exceeds 2^31 ms.
 */
#ifndef REUSEECHO_SRC_MCLOCK_H
#define REUSEECHO_SRC_MCLOCK_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

/* CLOCK_MONOTONIC in ms. CLOCK_MONOTONIC cannot fail with a valid pointer. */
static inline uint64_t re_mono_ms(void)
{
	struct timespec ts;

	(void)clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* "at is now or in the past" on the 32-bit clock. */
static inline bool re_due(uint32_t now, uint32_t at)
{
	return (int32_t)(now - at) >= 0;
}

/* Milliseconds from now until at on the 32-bit clock; 0 when due. */
static inline int32_t re_until(uint32_t now, uint32_t at)
{
	int32_t d = (int32_t)(at - now);

	return d > 0 ? d : 0;
}

#endif

/* clockshift: an LD_PRELOAD library that moves CLOCK_MONOTONIC forward, so tests can
 * run the server across the 32-bit millisecond wrap (2^32 ms, 49.7 days) in seconds.
 *
 *   REUSEECHO_CLOCKSHIFT_MS=N        add N ms to CLOCK_MONOTONIC{,_COARSE,_RAW}
 *   REUSEECHO_CLOCKSHIFT_AFTER_MS=T  only from T real ms after the process's first
 *                                    monotonic read (a jump while running); default 0
 *
 * Only calls through the dynamic symbol clock_gettime are shifted (the server's own
 * clock reads); glibc's internal timeouts keep the real clock. Test-only: never
 * installed.
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef int (*clock_gettime_fn)(clockid_t, struct timespec *);

static clock_gettime_fn real_clock_gettime;
static uint64_t shift_ns;
static uint64_t after_ns;
static _Atomic uint64_t first_ns;	/* real time of the first monotonic read; 0 = none */

static uint64_t env_ms(const char *name)
{
	const char *v = getenv(name);

	return v != NULL ? strtoull(v, NULL, 10) : 0;
}

__attribute__((constructor)) static void clockshift_init(void)
{
	void *sym = dlsym(RTLD_NEXT, "clock_gettime");

	/* POSIX guarantees a function's address survives the trip through void *. */
	memcpy(&real_clock_gettime, &sym, sizeof(real_clock_gettime));
	shift_ns = env_ms("REUSEECHO_CLOCKSHIFT_MS") * 1000000u;
	after_ns = env_ms("REUSEECHO_CLOCKSHIFT_AFTER_MS") * 1000000u;
}

int clock_gettime(clockid_t id, struct timespec *ts)
{
	uint64_t ns, first = 0;
	int r;

	if (real_clock_gettime == NULL) {
		clockshift_init();
		if (real_clock_gettime == NULL) {
			errno = ENOSYS;
			return -1;
		}
	}
	r = real_clock_gettime(id, ts);
	if (r != 0 || (id != CLOCK_MONOTONIC && id != CLOCK_MONOTONIC_COARSE &&
		       id != CLOCK_MONOTONIC_RAW)) {
		return r;
	}
	ns = (uint64_t)ts->tv_sec * 1000000000u + (uint64_t)ts->tv_nsec;
	if (atomic_compare_exchange_strong(&first_ns, &first, ns)) {
		first = ns;	/* this is the first read; else `first` now holds that one */
	}
	if (ns - first >= after_ns) {
		ns += shift_ns;
	}
	ts->tv_sec = (time_t)(ns / 1000000000u);
	ts->tv_nsec = (long)(ns % 1000000000u);
	return 0;
}

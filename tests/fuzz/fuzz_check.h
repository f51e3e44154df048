/* fuzz_check: the invariant check shared by the libFuzzer targets. A failed
 * invariant aborts, which libFuzzer reports as a crash with the input kept. */
#ifndef REUSEECHO_TESTS_FUZZ_FUZZ_CHECK_H
#define REUSEECHO_TESTS_FUZZ_FUZZ_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#define CHECK(cond)                                                                  \
	do {                                                                         \
		if (!(cond)) {                                                       \
			fprintf(stderr, "invariant failed: %s (%s:%d)\n", #cond,     \
				__FILE__, __LINE__);                                 \
			abort();                                                     \
		}                                                                    \
	} while (0)

#endif

/* check.h: the abort-on-first-failure CHECK of the C unit tests. A failed check
 * prints file:line and the condition, and exits 1 (meson counts the test failed). */
#ifndef REUSEECHO_TESTS_UNIT_CHECK_H
#define REUSEECHO_TESTS_UNIT_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#define CHECK(cond) \
	do { \
		if (!(cond)) { \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
			exit(1); \
		} \
	} while (0)

#endif

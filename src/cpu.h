/* cpu: CPU sets ("0-3,6" lists), the process's allowed CPUs, and pinning.
 * Pure helpers; any thread may call them.
 */
#ifndef REUSEECHO_SRC_CPU_H
#define REUSEECHO_SRC_CPU_H

#include <sched.h>
#include <stddef.h>

struct re_cpuset {
	cpu_set_t set;
};

/* Parse "0-3,6" (ascending or not, duplicates allowed, no spaces) into *ret.
 * Returns 0, -EINVAL (syntax) or -ERANGE (a CPU >= CPU_SETSIZE or an inverted range). */
int re_cpu_parse_list(const char *s, struct re_cpuset *ret) __attribute__((warn_unused_result));

/* Format as a compact list ("0-3,6"). Always NUL-terminates when len > 0. */
void re_cpu_format_list(const struct re_cpuset *cs, char *buf, size_t len);

/* The CPUs this process may run on (sched_getaffinity). Returns 0 or -errno. */
int re_cpu_allowed(struct re_cpuset *ret) __attribute__((warn_unused_result));

size_t re_cpu_count(const struct re_cpuset *cs);

/* The i-th CPU of cs in ascending order, wrapping round-robin (i may exceed the count).
 * cs must not be empty. */
int re_cpu_nth(const struct re_cpuset *cs, size_t i);

/* Pin the calling thread to one CPU. Returns 0 or -errno. Context: the thread itself. */
int re_cpu_pin_self(int cpu) __attribute__((warn_unused_result));

#endif

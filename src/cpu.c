/* cpu: CPU list parsing and formatting, allowed-CPU discovery, thread pinning. */
#include "cpu.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int parse_cpu_number(const char **p, long *ret)
{
	char *end;
	long v;

	if (!isdigit((unsigned char)**p)) {
		return -EINVAL;
	}
	errno = 0;
	v = strtol(*p, &end, 10);
	if (errno != 0 || v >= CPU_SETSIZE) {
		return -ERANGE;
	}
	*p = end;
	*ret = v;
	return 0;
}

int re_cpu_parse_list(const char *s, struct re_cpuset *ret)
{
	struct re_cpuset cs;
	const char *p = s;
	int r;

	CPU_ZERO(&cs.set);
	if (*p == '\0') {
		return -EINVAL;
	}
	for (;;) {
		long lo, hi;

		r = parse_cpu_number(&p, &lo);
		if (r < 0) {
			return r;
		}
		hi = lo;
		if (*p == '-') {
			p++;
			r = parse_cpu_number(&p, &hi);
			if (r < 0) {
				return r;
			}
			if (hi < lo) {
				return -ERANGE;
			}
		}
		for (long c = lo; c <= hi; c++) {
			CPU_SET((size_t)c, &cs.set);
		}
		if (*p == '\0') {
			break;
		}
		if (*p != ',') {
			return -EINVAL;
		}
		p++;
	}
	*ret = cs;
	return 0;
}

void re_cpu_format_list(const struct re_cpuset *cs, char *buf, size_t len)
{
	size_t used = 0;

	if (len == 0) {
		return;
	}
	buf[0] = '\0';
	for (int c = 0; c < CPU_SETSIZE; c++) {
		int hi = c;
		int n;

		if (!CPU_ISSET((size_t)c, &cs->set)) {
			continue;
		}
		while (hi + 1 < CPU_SETSIZE && CPU_ISSET((size_t)hi + 1, &cs->set)) {
			hi++;
		}
		if (hi == c) {
			n = snprintf(buf + used, len - used, "%s%d", used ? "," : "", c);
		} else {
			n = snprintf(buf + used, len - used, "%s%d-%d", used ? "," : "", c, hi);
		}
		if (n < 0 || (size_t)n >= len - used) {
			return;
		}
		used += (size_t)n;
		c = hi;
	}
}

int re_cpu_allowed(struct re_cpuset *ret)
{
	if (sched_getaffinity(0, sizeof(ret->set), &ret->set) < 0) {
		return -errno;
	}
	return 0;
}

size_t re_cpu_count(const struct re_cpuset *cs)
{
	return (size_t)CPU_COUNT(&cs->set);
}

int re_cpu_nth(const struct re_cpuset *cs, size_t i)
{
	size_t n = re_cpu_count(cs), k = 0;

	if (n == 0) {
		return -1;
	}
	i %= n;
	for (int c = 0; c < CPU_SETSIZE; c++) {
		if (CPU_ISSET((size_t)c, &cs->set) && k++ == i) {
			return c;
		}
	}
	return -1;
}

int re_cpu_pin_self(int cpu)
{
	cpu_set_t one;
	int r;

	CPU_ZERO(&one);
	CPU_SET((size_t)cpu, &one);
	r = pthread_setaffinity_np(pthread_self(), sizeof(one), &one);
	return -r;
}

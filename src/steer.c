/* steer: reuseport CBPF steering programs and the kernel's group-array model. */
#include "steer.h"

#include <errno.h>
#include <stdbool.h>

int re_steer_build(const uint32_t *targets, size_t n, struct sock_filter *out)
{
	size_t k = 0;

	if (n == 0 || n > RE_STEER_MAX_TARGETS) {
		return -EINVAL;
	}
	/* A = random; A %= n; then a jump table: A == i -> return targets[i]. */
	out[k++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
						(uint32_t)(SKF_AD_OFF + SKF_AD_RANDOM));
	out[k++] = (struct sock_filter)BPF_STMT(BPF_ALU | BPF_MOD | BPF_K, (uint32_t)n);
	for (size_t i = 0; i < n; i++) {
		out[k++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)i, 0, 1);
		out[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, targets[i]);
	}
	out[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, 0xffffffffu);
	return (int)k;
}

void re_steer_remove(int *group, size_t *n, size_t j)
{
	if (j >= *n) {
		return;
	}
	group[j] = group[*n - 1];
	(*n)--;
}

/* The reuseport program's jump offsets (jt/jf) are 8 bits: reach a per-CPU block
 * with BPF_JA, whose offset is 32 bits. */
int re_steer_build_cpu(const uint32_t *targets, const int *cpus, size_t n, struct sock_filter *out)
{
	int seen[RE_STEER_MAX_TARGETS];
	size_t nseen = 0;
	size_t k = 0;
	size_t ja[RE_STEER_MAX_TARGETS];	/* where each CPU's BPF_JA is */
	size_t total;

	if (n == 0 || n > RE_STEER_MAX_TARGETS) {
		return -EINVAL;
	}
	/* The distinct CPUs, in the order their first member comes. */
	for (size_t i = 0; i < n; i++) {
		bool dup = cpus[i] < 0;

		for (size_t j = 0; j < nseen && !dup; j++) {
			dup = seen[j] == cpus[i];
		}
		if (!dup) {
			seen[nseen++] = cpus[i];
		}
	}
	/* Size: load, 2 per CPU, the fallback spread, then each CPU's block. */
	total = 1 + 2 * nseen + (2 * n + 3);
	for (size_t j = 0; j < nseen; j++) {
		size_t m = 0;

		for (size_t i = 0; i < n; i++) {
			m += cpus[i] == seen[j];
		}
		total += m == 1 ? 1 : 2 * m + 3;
	}
	if (total > RE_STEER_MAX_INSNS) {
		return -E2BIG;
	}
	out[k++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
						(uint32_t)(SKF_AD_OFF + SKF_AD_CPU));
	for (size_t j = 0; j < nseen; j++) {
		out[k++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)seen[j], 0, 1);
		ja[j] = k;
		out[k++] = (struct sock_filter)BPF_STMT(BPF_JMP | BPF_JA, 0);
	}
	/* A CPU without an eligible member: spread over every target. */
	k += (size_t)re_steer_build(targets, n, out + k);
	for (size_t j = 0; j < nseen; j++) {
		uint32_t sub[RE_STEER_MAX_TARGETS];
		size_t m = 0;

		out[ja[j]].k = (uint32_t)(k - ja[j] - 1);
		for (size_t i = 0; i < n; i++) {
			if (cpus[i] == seen[j]) {
				sub[m++] = targets[i];
			}
		}
		if (m == 1) {
			out[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, sub[0]);
		} else {
			k += (size_t)re_steer_build(sub, m, out + k);
		}
	}
	return (int)k;
}

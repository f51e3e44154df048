/* steer: reuseport CBPF steering programs and the kernel's group-array model. */
#include "steer.h"

#include <errno.h>

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

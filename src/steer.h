/* steer: classic BPF programs for SO_ATTACH_REUSEPORT_CBPF that spread new
 * connections uniformly over a chosen subset of a SO_REUSEPORT group's sockets (so a
 * listener can be emptied before it closes, or a stalled worker passed over), or by
 * the CPU that processes the connection's SYN. Pure; any thread may call it.
 *
 * The program answers an index into the group's socket array; the kernel keeps that
 * array in join order, and closing a socket moves the last one into its slot. An
 * index out of range makes the kernel fall back to its own hash.
 */
#ifndef REUSEECHO_SRC_STEER_H
#define REUSEECHO_SRC_STEER_H

#include <linux/filter.h>
#include <stddef.h>
#include <stdint.h>

#define RE_STEER_MAX_TARGETS 2000	/* 2 instructions each, under BPF_MAXINSNS */
#define RE_STEER_MAX_INSNS (2 * RE_STEER_MAX_TARGETS + 3)

/* Build "pick one of targets[0..n) at random" into out (RE_STEER_MAX_INSNS entries).
 * Returns the instruction count, or -EINVAL when n is 0 or too large. */
int re_steer_build(const uint32_t *targets, size_t n, struct sock_filter *out)
	__attribute__((warn_unused_result));

/* Build "hand the connection to a target on the CPU processing it": targets[i] is a
 * group index and cpus[i] the CPU its worker is pinned to (-1: none). A connection
 * whose SYN is processed on CPU c goes to the target on c (a random one of them when
 * several share c); on a CPU no target is on, to a random one of all n. Uses
 * SKF_AD_CPU. Returns the instruction count, -EINVAL (n is 0 or too large) or -E2BIG
 * (more than RE_STEER_MAX_INSNS instructions). */
int re_steer_build_cpu(const uint32_t *targets, const int *cpus, size_t n, struct sock_filter *out)
	__attribute__((warn_unused_result));

/* The group array after the socket at index j closes: the last one moves into j. */
void re_steer_remove(int *group, size_t *n, size_t j);

#endif

/* stats: per-worker counter blocks and the RCU-protected registry that lists them.
 * A worker is the only writer of its block (plain relaxed stores, no atomic RMW),
 * but for the stall-steering counters (c.stall_*), whose only writer is the
 * supervisor.
 * The supervisor is the only registry updater; any registered QSBR thread may read.
 */
#ifndef REUSEECHO_SRC_STATS_H
#define REUSEECHO_SRC_STATS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <urcu/urcu-qsbr.h>

#include "reuseecho/stats.h"

#define RE_CACHELINE 64

/* One worker's counters plus its identity. Cache-line aligned so two workers never
 * write the same line. */
struct re_stats_block {
	struct re_stats_counters c;
	int32_t worker_id;
	int32_t cpu;		/* -1 when not pinned */
	pid_t tid;		/* 0 until the worker thread runs */
	uint32_t acceptq_len;	/* listener accept queue, sampled by the worker */
	uint32_t acceptq_max;
	uint32_t state;		/* enum re_block_state, written by the worker */
	uint64_t heartbeat_ms;	/* CLOCK_MONOTONIC ms of the worker's last loop turn */
} __attribute__((aligned(RE_CACHELINE)));

enum re_block_state {
	RE_BLOCK_STARTING = 0,
	RE_BLOCK_RUNNING,
	RE_BLOCK_RETIRING,	/* shrinking: serving its connections, not accepting */
	RE_BLOCK_DRAINING,	/* process shutdown */
};

/* A running worker's loop turns at least every RE_SAMPLE_MS; one that has not turned
 * for RE_STALL_MS is reported as stalled. */
#define RE_STALL_MS 1000

/* Cross-thread plain values (counters, heartbeat, state): C11 relaxed atomics. They
 * compile to the same plain mov as CMM_LOAD_SHARED/CMM_STORE_SHARED (volatile), but
 * are not a data race in the C11 model, so ThreadSanitizer accepts them. */
#define RE_LOAD_RELAXED(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)
#define RE_STORE_RELAXED(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELAXED)

/* Single-writer update: a relaxed load and store, which compiles to a plain add. */
#define RE_STAT_ADD(blk, field, n) \
	RE_STORE_RELAXED((blk)->c.field, RE_LOAD_RELAXED((blk)->c.field) + (uint64_t)(n))
#define RE_STAT_SUB(blk, field, n) \
	RE_STORE_RELAXED((blk)->c.field, RE_LOAD_RELAXED((blk)->c.field) - (uint64_t)(n))

/* The published set of live blocks and the folded counts of workers that left. */
struct re_stats_registry {
	struct rcu_head rcu;
	struct re_stats_block *dead;	/* removed by the publication that retired this
					 * registry: freed with it, after a grace period */
	struct re_stats_counters retired;
	size_t n;
	struct re_stats_block *blocks[];
};

/* The registry slot. Readers: rcu_dereference(stats->reg) inside a read-side section
 * (QSBR: between quiescent states). Writer: the supervisor only. */
struct re_stats {
	struct re_stats_registry *reg;
};

/* Allocate a zeroed block (cache-line aligned). NULL only on ENOMEM. Context: supervisor. */
struct re_stats_block *re_stats_block_create(int worker_id, int cpu);
void re_stats_block_destroy(struct re_stats_block *b);

/* Publish an empty registry. Returns 0 or -ENOMEM. Context: supervisor, before workers. */
int re_stats_init(struct re_stats *s) __attribute__((warn_unused_result));

/* Free the registry and every block still listed. Context: supervisor, after all
 * readers are gone (workers joined, control thread stopped). */
void re_stats_finish(struct re_stats *s);

/* Publish a registry that also lists b. Returns 0 or -ENOMEM (registry unchanged).
 * Context: supervisor (the only updater). */
int re_stats_add(struct re_stats *s, struct re_stats_block *b) __attribute__((warn_unused_result));

/* Publish a registry without b whose retired total includes b's final counts (the
 * worker that wrote b must have exited); b and the old registry are freed after a
 * grace period by call_rcu (this never blocks). Readers never see b's counts missing or counted twice.
 * Returns 0, -ENOENT (b not listed) or -ENOMEM. Context: supervisor. */
int re_stats_remove(struct re_stats *s, struct re_stats_block *b) __attribute__((warn_unused_result));

/* Read one block with relaxed loads into *out. Context: any reader. */
void re_stats_snapshot(const struct re_stats_block *b, struct re_stats_counters *out);

/* out += in, field by field. */
void re_stats_accumulate(struct re_stats_counters *out, const struct re_stats_counters *in);

/* Sum of the registry's live blocks plus its retired total.
 * Context: inside an RCU read-side section that protects reg. */
void re_stats_total(const struct re_stats_registry *reg, struct re_stats_counters *out);

/* Sum of the live blocks' `active` gauges. Context: RCU read-side (a worker between
 * quiescent states). */
uint64_t re_stats_active_total(const struct re_stats_registry *reg);

#endif

/* stats: per-worker counter blocks and their RCU-published registry.
 * Blocks are written by their worker only; the registry is replaced (never edited in
 * place) by the supervisor, and old copies are freed after a grace period.
 */
#include "stats.h"

#include "rcu.h"

#ifdef RE_TSAN
/* The happens-before token of the TSan annotations in rcu.h. */
char re_rcu_tsan_token;
#endif

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct re_stats_block *re_stats_block_create(int worker_id, int cpu)
{
	struct re_stats_block *b = aligned_alloc(RE_CACHELINE, sizeof(*b));

	if (b == NULL) {
		return NULL;
	}
	memset(b, 0, sizeof(*b));
	b->worker_id = worker_id;
	b->cpu = cpu;
	return b;
}

void re_stats_block_destroy(struct re_stats_block *b)
{
	free(b);
}

static struct re_stats_registry *registry_alloc(size_t n)
{
	struct re_stats_registry *r = calloc(1, sizeof(*r) + n * sizeof(r->blocks[0]));

	if (r != NULL) {
		r->n = n;
	}
	return r;
}

int re_stats_init(struct re_stats *s)
{
	struct re_stats_registry *r = registry_alloc(0);

	if (r == NULL) {
		return -ENOMEM;
	}
	re_rcu_assign_pointer(s->reg, r);
	return 0;
}

void re_stats_finish(struct re_stats *s)
{
	struct re_stats_registry *r = s->reg;

	if (r == NULL) {
		return;
	}
	re_rcu_barrier();	/* the registries and blocks retired before are freed */
	for (size_t i = 0; i < r->n; i++) {
		re_stats_block_destroy(r->blocks[i]);
	}
	free(r);
	s->reg = NULL;
}

static void registry_free_rcu(struct rcu_head *head)
{
	struct re_stats_registry *r = re_container_of(head, struct re_stats_registry, rcu);

	re_rcu_callback_enter(head);
	re_stats_block_destroy(r->dead);
	free(r);
}

/* Replace the published registry with next; the old one (and the block `dead` that
 * next no longer lists, if any) is freed on the call_rcu thread once every reader
 * that might hold it has passed a quiescent state. Never blocks. */
static void publish(struct re_stats *s, struct re_stats_registry *next, struct re_stats_block *dead)
{
	struct re_stats_registry *old = s->reg;

	re_rcu_assign_pointer(s->reg, next);
	old->dead = dead;
	re_rcu_call(&old->rcu, registry_free_rcu);
}

int re_stats_add(struct re_stats *s, struct re_stats_block *b)
{
	const struct re_stats_registry *cur = s->reg;
	struct re_stats_registry *next = registry_alloc(cur->n + 1);

	if (next == NULL) {
		return -ENOMEM;
	}
	next->retired = cur->retired;
	memcpy(next->blocks, cur->blocks, cur->n * sizeof(cur->blocks[0]));
	next->blocks[cur->n] = b;
	publish(s, next, NULL);
	return 0;
}

int re_stats_remove(struct re_stats *s, struct re_stats_block *b)
{
	const struct re_stats_registry *cur = s->reg;
	struct re_stats_registry *next;
	struct re_stats_counters final;
	size_t j = 0;
	int found = 0;

	for (size_t i = 0; i < cur->n; i++) {
		found |= cur->blocks[i] == b;
	}
	if (!found) {
		return -ENOENT;
	}
	next = registry_alloc(cur->n - 1);
	if (next == NULL) {
		return -ENOMEM;
	}
	for (size_t i = 0; i < cur->n; i++) {
		if (cur->blocks[i] != b) {
			next->blocks[j++] = cur->blocks[i];
		}
	}
	/* The worker has exited, so these are its final counts: fold them into the same
	 * registry that stops listing it, so a reader sees them exactly once. */
	next->retired = cur->retired;
	re_stats_snapshot(b, &final);
	/* Gauges say what is held now; a worker that left holds nothing. */
#define RE_STATS_ZERO_gauge(field) final.field = 0;
#define RE_STATS_ZERO_counter(field)
#define RE_STATS_ZERO_counter_ms(field)
#define RE_STATS_ZERO(field, kind, metric, labels, help) RE_STATS_ZERO_##kind(field)
	RE_STATS_COUNTERS(RE_STATS_ZERO)
#undef RE_STATS_ZERO
#undef RE_STATS_ZERO_counter
#undef RE_STATS_ZERO_counter_ms
#undef RE_STATS_ZERO_gauge
	re_stats_accumulate(&next->retired, &final);
	publish(s, next, b);
	return 0;
}

void re_stats_snapshot(const struct re_stats_block *b, struct re_stats_counters *out)
{
#define RE_STATS_LOAD(field, kind, metric, labels, help) out->field = RE_LOAD_RELAXED(b->c.field);
	RE_STATS_COUNTERS(RE_STATS_LOAD)
#undef RE_STATS_LOAD
}

void re_stats_accumulate(struct re_stats_counters *out, const struct re_stats_counters *in)
{
#define RE_STATS_ACC(field, kind, metric, labels, help) out->field += in->field;
	RE_STATS_COUNTERS(RE_STATS_ACC)
#undef RE_STATS_ACC
}

void re_stats_total(const struct re_stats_registry *reg, struct re_stats_counters *out)
{
	struct re_stats_counters one;

	*out = reg->retired;
	for (size_t i = 0; i < reg->n; i++) {
		re_stats_snapshot(reg->blocks[i], &one);
		re_stats_accumulate(out, &one);
	}
}

uint64_t re_stats_active_total(const struct re_stats_registry *reg)
{
	uint64_t sum = 0;

	for (size_t i = 0; i < reg->n; i++) {
		sum += RE_LOAD_RELAXED(reg->blocks[i]->c.active);
	}
	return sum;
}

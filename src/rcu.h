/* rcu: the few liburcu-qsbr operations reuseecho uses, in one place, so that a
 * ThreadSanitizer build can annotate them. liburcu 0.13 predates its TSan support;
 * without annotations TSan reports the grace-period handshake as races. The recipe
 * (shared/notes/kernel-facts.md): publish/read the pointer with an acq_rel exchange /
 * acquire load; release a token when a reader leaves its read-side section; acquire it
 * after a grace period. In normal builds these are the plain liburcu calls.
 */
#ifndef REUSEECHO_SRC_RCU_H
#define REUSEECHO_SRC_RCU_H

#include <stddef.h>
#include <urcu/urcu-qsbr.h>

/* The object that embeds member p (liburcu's caa_container_of casts from char *,
 * which clang's -Wcast-align rejects). */
#define re_container_of(p, type, member) ((type *)(void *)((char *)(p) - offsetof(type, member)))

#if defined(__SANITIZE_THREAD__)
#define RE_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define RE_TSAN 1
#endif
#endif

#ifdef RE_TSAN
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
extern char re_rcu_tsan_token;

#define re_rcu_dereference(p) __atomic_load_n(&(p), __ATOMIC_ACQUIRE)
#define re_rcu_assign_pointer(p, v) ((void)__atomic_exchange_n(&(p), (v), __ATOMIC_ACQ_REL))
#define re_rcu_reader_leave() __tsan_release(&re_rcu_tsan_token)
#define re_rcu_writer_after_gp() __tsan_acquire(&re_rcu_tsan_token)
#else
#define re_rcu_dereference(p) rcu_dereference(p)
#define re_rcu_assign_pointer(p, v) rcu_assign_pointer(p, v)
#define re_rcu_reader_leave() ((void)0)
#define re_rcu_writer_after_gp() ((void)0)
#endif

/* Reader side (QSBR): a registered thread is inside a read-side section whenever it
 * is online; a quiescent state or going offline ends it. */
static inline void re_rcu_quiescent_state(void)
{
	re_rcu_reader_leave();
	urcu_qsbr_quiescent_state();
}

static inline void re_rcu_thread_offline(void)
{
	re_rcu_reader_leave();
	urcu_qsbr_thread_offline();
}

static inline void re_rcu_thread_online(void)
{
	urcu_qsbr_thread_online();
}

/* Writer side, deferred: fn(head) runs on liburcu's call_rcu thread once every
 * reader that might hold the object has passed a quiescent state. Never blocks, so
 * the supervisor's loop uses it for every free of a published object. QSBR's
 * call_rcu needs no registration of the caller. Each callback must begin with
 * re_rcu_callback_enter(head). */
static inline void re_rcu_call(struct rcu_head *head, void (*fn)(struct rcu_head *))
{
#ifdef RE_TSAN
	__tsan_release(head);	/* what the caller wrote before queueing it */
#endif
	urcu_qsbr_call_rcu(head, fn);
}

/* At the start of each call_rcu callback: the happens-before edges from the readers
 * (the grace period) and from the thread that queued head (liburcu's queue is not
 * instrumented). */
#ifdef RE_TSAN
#define re_rcu_callback_enter(head) (re_rcu_writer_after_gp(), __tsan_acquire(head))
#else
#define re_rcu_callback_enter(head) ((void)(head))
#endif

/* Wait for every queued callback to have run (teardown: nothing leaks, nothing
 * runs after the objects' owner is gone). Blocks; only after the loop ended. */
static inline void re_rcu_barrier(void)
{
	urcu_qsbr_barrier();
}

/* Writer side: after this returns no reader holds anything unpublished before it.
 * Blocks for a grace period: not for the supervisor's loop (use re_rcu_call). */
static inline void re_rcu_synchronize(void)
{
	urcu_qsbr_synchronize_rcu();
	re_rcu_writer_after_gp();
}

#endif

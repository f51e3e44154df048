/* worker: the per-thread event loop. Owns its listener, epoll instance, connections,
 * buffers and stats block; talks to the supervisor only through its command eventfd,
 * its state word and the RCU-published runtime settings.
 *
 * Edge-triggered rules (doc/DESIGN.md §2), where each one bites:
 * - every connection is registered once with EPOLLIN|EPOLLOUT|EPOLLRDHUP|EPOLLET and
 *   never modified: readiness is tracked in conn flags instead of the interest set;
 * - write-through: data is sent straight from the scratch buffer it was received into;
 *   only the remainder the socket did not take is copied into a per-connection buffer;
 * - events carry the connection, not the fd; a closed connection is freed only at the
 *   end of the loop turn, so a stale event in the same batch sees CLOSED and is dropped
 *   even when accept4 reused the fd number;
 * - per-turn read budget and a ready list keep one streaming client from starving the
 *   others; connections stopped early are resumed from the ready list because no new
 *   edge will come for bytes already queued.
 */
#include "worker.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/filter.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cpu.h"
#include "chargen.h"
#include "impair.h"
#include "log.h"
#include "mclock.h"
#include "rcu.h"
#include "udp.h"

#define RE_MAX_EVENTS 256
#define RE_SCRATCH_SIZE (256u * 1024u)	/* larger than a typical in-flight window: a full read is rare */
#define RE_READ_BUDGET (1024u * 1024u)	/* bytes per connection per loop turn */
#define RE_ACCEPT_BUDGET 64		/* accepts per loop turn */
#define RE_UDP_BUDGET 256		/* UDP datagrams per loop turn (8 batches) */
#define RE_UDP_DRAIN_LIMIT 65536	/* bound on one re_udp_drain_input: more than a receive
					 * buffer can hold at any size */
#define RE_UDP_FLUSH_MS 1000		/* retiring UDP socket: bound on waiting for EPOLLOUT
					 * to send the replies it still queues */
#define RE_UDP_FLUSH_POLL_MS 10
#define RE_ACCEPT_RETRY_MS 100		/* after EMFILE/ENFILE: the edge will not return */
#define RE_SAMPLE_MS 250		/* accept-queue sampling and heartbeat period */
#define RE_BUF_POOL_BYTES (256u * 1024u)	/* idle buffers a worker keeps for reuse */
#define RE_CONN_SLAB 256
#define RE_LOG_EVERY_MS 10000		/* rate limit for data-path warnings */
/* Bulk echo: a connection whose reads reach RE_BULK_ON bytes is echoed with
 * splice(2) through a per-worker pipe (the kernel moves page references; no byte is
 * copied into or out of user space); one whose splices fall under RE_BULK_OFF goes
 * back to recv/send, which is cheaper for small messages. */
#define RE_HANDSHAKE_WAIT_MS 3000	/* retiring listener: bound on half-open waits */
#define RE_HANDSHAKE_POLL_MS 100	/* one sock_diag dump walks every TCP socket of the netns */
#define RE_BULK_ON (16u * 1024u)
#define RE_BULK_OFF (4u * 1024u)
/* --max-buffered: connections whose buffer could not grow are retried this often
 * while any wait, since budget freed by another worker raises no edge here. */
#define RE_BUDGET_RETRY_MS 20
/* Locality: read SO_INCOMING_CPU of one accepted connection in this many. The
 * getsockopt costs about 0.4 us, a quarter of an accept4 on loopback: sampled, it
 * costs an accept 25 ns on average. */
#define RE_LOCALITY_EVERY 16

/* The worker's lifecycle is two small state machines sharing one timer.
 *
 * The listener: OPEN → GRACE (a retire asked to close it: keep accepting for the
 * grace period) → HALF_OPEN_WAIT (keep accepting while handshakes that were half-open
 * when the grace ended may still complete into our queue) → CLOSED. A drain or stop
 * goes to CLOSED from any state.
 *
 * The worker: SERVE → RETIRE (exit once the listener is closed and the connections
 * are gone, or the drain timeout after the listener closed passed) or DRAIN (echo
 * what is queued, FIN every connection, exit when they are gone or at the drain
 * timeout) → STOP (reset everything, exit this turn). RETIRE can become DRAIN.
 *
 * `deadline` is the listener's next step while the listener is timed (GRACE,
 * HALF_OPEN_WAIT), and the end of the drain timeout once the listener is CLOSED and
 * the worker RETIREs or DRAINs; never both, since a worker arms its exit deadline
 * only when its listener is closed. */
enum lst_state {
	LST_OPEN,
	LST_GRACE,
	LST_HALF_OPEN_WAIT,
	LST_CLOSED,
};

enum wk_state {
	WK_SERVE,
	WK_RETIRE,
	WK_DRAIN,
	WK_STOP,
};

enum close_reason {
	CLOSE_EOF,
	CLOSE_ERROR,
	CLOSE_IDLE,
	CLOSE_LIMIT,
	CLOSE_DRAIN,
	CLOSE_IMPAIR,		/* close-after or reset-after */
};

struct re_worker {
	struct re_worker_params p;
	pthread_t thread;
	bool started;
	_Atomic int state;
	atomic_uint cmd;
	atomic_uint stall_ms;
	atomic_uint grace_ms;
	const struct sock_fprog *_Atomic bpf_prog;
	atomic_int bpf_result;
	atomic_uint bpf_acks;
	atomic_bool listener_closed;
	int cmd_fd;			/* created by the supervisor; the worker polls it */
	const char *err_call;
	int err;

	/* Everything below belongs to the worker thread. */
	int lfd;
	int epfd;
	char listen_tag;		/* epoll data.ptr markers for the non-conn fds */
	char cmd_tag;
	char udp_tag;
	struct re_udp *udp;		/* --udp: this worker's UDP socket; NULL = none */
	bool udp_pending;		/* an edge or a spent budget: serve UDP this turn */
	bool udp_flushing;		/* draining: input is over, only queued replies go out */
	uint32_t udp_flush_limit;	/* retiring: stop waiting for queued replies here */
	uint32_t last_udp_log;
	bool udp_logged;
	char *scratch;			/* one recv buffer for every connection */
	int pipe_r;			/* the bulk-echo pipe, empty between uses; -1 = none */
	int pipe_w;
	size_t pipe_cap;
	struct re_conn_pool conns;
	struct re_buf_pool bufs;
	struct re_conn_list lru;	/* every open connection, least recently active first */
	struct re_conn_list ready;	/* connections with work left over */
	size_t nready;
	struct re_conn *graveyard;	/* closed this turn, freed at its end */
	const struct re_runtime *rt;	/* valid until the next quiescent state */
	struct re_stats_block *st;
	uint64_t now64;			/* CLOCK_MONOTONIC ms, sampled once per turn */
	uint32_t now;			/* its low 32 bits: every timer below (re_due) */
	bool accept_pending;		/* the listener may hold more: accept next turn */
	bool accept_paused;		/* accept failed (EMFILE...): retry at accept_retry_at */
	uint32_t accept_retry_at;
	uint32_t next_sample;
	uint32_t last_accept_log;
	bool accept_logged;
	enum lst_state lst;
	enum wk_state wk;
	uint32_t deadline;		/* see enum lst_state */
	struct half_open *half_open;	/* HALF_OPEN_WAIT: requests seen when the grace ended */
	/* --max-buffered. `charged` bytes are taken from the shared budget: the pool's
	 * allocated buffers plus a write-through reserve (charged - allocated) that
	 * covers the remainder of any one read into the scratch buffer. In steady state
	 * the reserve is full and a read checks it with a plain compare: the shared
	 * counter is touched only when a buffer is allocated, grown or freed. */
	uint64_t charged;
	uint32_t pool_limit;		/* the --conn-buffer the pooled buffers were sized for */
	size_t nbudget_paused;		/* connections with RE_CONN_BUDGET */
	uint32_t budget_retry_at;
	/* Impairments: snapshots of the settings taken once per turn (the hot path
	 * tests imp_on only), the wake-up heap of impaired connections, and the
	 * generator that picks the impaired share and the jitter. */
	bool imp_on;
	bool accept_off;
	uint64_t rng;
	struct re_imp_heap imp_heap;
};

/* Sample the clock for this turn and beat: the heartbeat is the full 64-bit value
 * (the supervisor and the control thread compare it with their own re_mono_ms()). */
static void clock_tick(struct re_worker *w)
{
	w->now64 = re_mono_ms();
	w->now = (uint32_t)w->now64;
	RE_STORE_RELAXED(w->st->heartbeat_ms, w->now64);
}

static void notify_supervisor(struct re_worker *w)
{
	uint64_t one = 1;

	/* An eventfd write only fails when the counter would overflow, which a
	 * supervisor that reads it cannot let happen. */
	(void)!write(w->p.notify_fd, &one, sizeof(one));
}

static void set_state(struct re_worker *w, enum re_worker_state s)
{
	atomic_store_explicit(&w->state, (int)s, memory_order_release);
	notify_supervisor(w);
}

static void fail(struct re_worker *w, const char *call, int err)
{
	w->err_call = call;
	w->err = err;
}

/* --- the buffer budget ----------------------------------------------------------- */

/* The reserve a worker keeps so that any write-through read can keep its remainder:
 * the largest buffer one read can need. */
static uint64_t reserve_target(const struct re_worker *w)
{
	uint32_t cb = w->rt->conn_buffer;

	return re_buf_size_for(cb < RE_SCRATCH_SIZE ? cb : RE_SCRATCH_SIZE, cb);
}

static uint64_t reserve_now(const struct re_worker *w)
{
	return w->charged - w->bufs.allocated;
}

static void budget_gauge(struct re_worker *w)
{
	RE_STORE_RELAXED(w->st->c.buffer_bytes, w->charged);
}

/* Top the reserve up to its target from the shared budget, as far as it allows. */
static void budget_refill(struct re_worker *w)
{
	uint64_t have = reserve_now(w), want = reserve_target(w);

	if (have < want) {
		w->charged += re_buf_budget_take_upto(w->p.budget, want - have, w->rt->max_buffered);
		budget_gauge(w);
	}
}

/* After buffers were freed: give what exceeds the reserve back to the budget. A
 * buffer that went to the pool stays allocated and charged; nothing moves then. */
static void budget_settle(struct re_worker *w)
{
	uint64_t have = reserve_now(w), want = reserve_target(w);

	if (have > want) {
		re_buf_budget_give(w->p.budget, have - want);
		w->charged -= have - want;
		budget_gauge(w);
	}
}

/* Take n more bytes for a buffer that grows, beyond the reserve. False: no room. */
static bool budget_take(struct re_worker *w, uint64_t n)
{
	uint64_t have = reserve_now(w), want = reserve_target(w);
	uint64_t spare = have > want ? have - want : 0;

	if (spare < n) {
		if (!re_buf_budget_take(w->p.budget, n - spare, w->rt->max_buffered)) {
			return false;
		}
		w->charged += n - spare;
		budget_gauge(w);
	}
	return true;
}

/* Can a connection without a buffer read `want` bytes into the scratch buffer? Only
 * if the reserve holds the buffer its remainder could need. Steady state: one compare. */
static bool reserve_covers(struct re_worker *w, size_t want)
{
	uint64_t need = re_buf_size_for(want, w->rt->conn_buffer);

	if (reserve_now(w) >= need) {
		return true;
	}
	budget_refill(w);
	return reserve_now(w) >= need;
}

/* After `set conn-buffer`: pooled buffers of sizes no longer asked for would sit in
 * the pool, charged, forever. Free them and give their bytes back. */
static void pool_follow_limit(struct re_worker *w)
{
	if (w->rt->conn_buffer != w->pool_limit) {
		w->pool_limit = w->rt->conn_buffer;
		if (re_buf_pool_trim(&w->bufs, w->pool_limit) > 0) {
			budget_settle(w);
		}
	}
}

/* Reading stopped: the connection's unsent (or held) bytes reached --conn-buffer. The
 * bytes stay in the kernel, where TCP flow control slows the sender; the send that
 * frees space resumes the reading. */
static void backpressure_pause(struct re_worker *w, struct re_conn *c)
{
	if (!(c->flags & RE_CONN_PAUSED)) {
		c->flags |= RE_CONN_PAUSED;
		RE_STAT_ADD(w->st, backpressure_pauses, 1);
	}
}

/* Reading stopped for want of budget: a buffer that could not grow, or an echo in
 * place the socket cut short (no buffer for its remainder). Retried on the timer,
 * since room freed by another worker raises no edge here. */
static void budget_pause(struct re_worker *w, struct re_conn *c)
{
	if (!(c->flags & RE_CONN_BUDGET)) {
		c->flags |= RE_CONN_BUDGET;
		RE_STAT_ADD(w->st, budget_pauses, 1);
		if (w->nbudget_paused++ == 0) {
			w->budget_retry_at = w->now + RE_BUDGET_RETRY_MS;
		}
	}
}

static void budget_unpause(struct re_worker *w, struct re_conn *c)
{
	if (c->flags & RE_CONN_BUDGET) {
		c->flags &= ~(uint32_t)RE_CONN_BUDGET;
		w->nbudget_paused--;
	}
}

/* --- connection lifecycle ------------------------------------------------------ */

static void ready_push(struct re_worker *w, struct re_conn *c)
{
	if (!(c->flags & RE_CONN_IN_READY)) {
		c->flags |= RE_CONN_IN_READY;
		re_conn_list_append(&w->ready, c, RE_READY);
		w->nready++;
	}
}

static void touch(struct re_worker *w, struct re_conn *c)
{
	if (c->last_active != w->now) {
		c->last_active = w->now;
		re_conn_list_remove(&w->lru, c, RE_LRU);
		re_conn_list_append(&w->lru, c, RE_LRU);
	}
}

/* A close that resets the connection is counted twice: once in closed_<why> like
 * every close (so accepted == sum of closed), and once in reset_<why>. */
static void count_reset(struct re_stats_block *st, enum close_reason why)
{
	switch (why) {
	case CLOSE_EOF:
	case CLOSE_ERROR:
		RE_STAT_ADD(st, reset_error, 1);
		break;
	case CLOSE_IDLE:
		RE_STAT_ADD(st, reset_idle, 1);
		break;
	case CLOSE_LIMIT:
		RE_STAT_ADD(st, reset_limit, 1);
		break;
	case CLOSE_DRAIN:
		RE_STAT_ADD(st, reset_drain, 1);
		break;
	case CLOSE_IMPAIR:
		RE_STAT_ADD(st, reset_impair, 1);
		break;
	}
}

static void count_close(struct re_stats_block *st, enum close_reason why)
{
	switch (why) {
	case CLOSE_EOF:
		RE_STAT_ADD(st, closed_eof, 1);
		break;
	case CLOSE_ERROR:
		RE_STAT_ADD(st, closed_error, 1);
		break;
	case CLOSE_IDLE:
		RE_STAT_ADD(st, closed_idle, 1);
		break;
	case CLOSE_LIMIT:
		RE_STAT_ADD(st, closed_limit, 1);
		break;
	case CLOSE_DRAIN:
		RE_STAT_ADD(st, closed_drain, 1);
		break;
	case CLOSE_IMPAIR:
		RE_STAT_ADD(st, closed_impair, 1);
		break;
	}
}

/* SO_LINGER {1, 0}: close() sends RST at once. Used for every close that cannot be
 * graceful (limit, drain timeout, an idle connection with unread input or unsent
 * output, a buffer we could not allocate), so that each reset is deliberate and
 * counted; a finished connection is closed gracefully after its input. */
static void close_fd(int fd, bool abort)
{
	if (abort) {
		struct linger lg = { .l_onoff = 1, .l_linger = 0 };

		(void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	}
	/* On Linux the fd is released even when close() reports an error. */
	(void)close(fd);
}

static void imp_forget(struct re_worker *w, struct re_conn *c);

static void conn_close(struct re_worker *w, struct re_conn *c, enum close_reason why, bool abort)
{
	close_fd(c->fd, abort);	/* the only reference: epoll forgets it */
	c->fd = -1;
	if (c->imp != NULL) {
		imp_forget(w, c);
	}
	budget_unpause(w, c);
	if (c->flags & RE_CONN_IN_READY) {
		re_conn_list_remove(&w->ready, c, RE_READY);
		w->nready--;
	}
	c->flags = RE_CONN_CLOSED;
	re_conn_list_remove(&w->lru, c, RE_LRU);
	if (c->out != NULL) {
		re_buf_put(&w->bufs, c->out);
		c->out = NULL;
		budget_settle(w);
	}
	/* Freed at the end of the turn: a later event of this batch still points here. */
	c->ready.next = w->graveyard;
	w->graveyard = c;
	RE_STAT_SUB(w->st, active, 1);
	count_close(w->st, why);
	if (abort) {
		count_reset(w->st, why);
	}
	if (w->accept_paused) {
		w->accept_pending = true;	/* an fd was freed: retry accept now */
	}
}

static void reap(struct re_worker *w)
{
	while (w->graveyard != NULL) {
		struct re_conn *c = w->graveyard;

		w->graveyard = c->ready.next;
		re_conn_put(&w->conns, c);
	}
}

/* The socket took s of the n bytes just echoed (s < 0: send's -errno). Counts the
 * call and returns the bytes sent (EAGAIN counts as 0), or -errno for a dead peer. */
static ssize_t sent(struct re_worker *w, ssize_t s)
{
	if (s < 0) {
		if (errno != EAGAIN && errno != EWOULDBLOCK) {
			return -errno;
		}
		RE_STAT_ADD(w->st, send_eagain, 1);
		s = 0;
	}
	RE_STAT_ADD(w->st, bytes_sent, s);
	return s;
}

/* Send up to n of the pending buffer's bytes (its first n). A short send means the
 * socket buffer filled: the kernel has set SOCK_NOSPACE, so an EPOLLOUT edge follows
 * when space frees up. Returns the bytes sent (0 on EAGAIN), or -errno for a dead
 * peer; a buffer sent whole goes back to the pool. */
static ssize_t out_send(struct re_worker *w, struct re_conn *c, size_t n)
{
	struct re_buf *b = c->out;
	ssize_t s;

	do {
		s = re_net_send(c->fd, b->data + b->off, n);
		RE_STAT_ADD(w->st, send_calls, 1);
	} while (s < 0 && errno == EINTR);
	s = sent(w, s);
	if (s < 0) {
		return s;
	}
	if (s > 0) {
		touch(w, c);
		b->off += (uint32_t)s;
		b->len -= (uint32_t)s;
		if (b->len == 0) {
			re_buf_put(&w->bufs, b);
			c->out = NULL;
			budget_settle(w);
		}
	}
	if ((size_t)s < n) {
		c->flags &= ~(uint32_t)RE_CONN_WRITABLE;
	}
	return s;
}

/* Send the whole pending buffer (see out_send). 0, or -errno for a dead peer. */
static int conn_flush(struct re_worker *w, struct re_conn *c)
{
	ssize_t s = out_send(w, c, c->out->len);

	return s < 0 ? (int)s : 0;
}

/* A buffer for the len bytes of a write-through that the socket did not take, sized
 * to them; the reserve covers it (reserve_covers() before the read). The caller fills
 * b->data; the connection now waits for EPOLLOUT. NULL on ENOMEM. */
static struct re_buf *keep_rest(struct re_worker *w, struct re_conn *c, size_t len)
{
	struct re_buf *b = re_buf_get(&w->bufs, re_buf_size_for(len, w->rt->conn_buffer));

	if (b != NULL) {
		b->len = (uint32_t)len;
		c->out = b;
		c->flags &= ~(uint32_t)RE_CONN_WRITABLE;
		budget_refill(w);
	}
	return b;
}

/* Grow a full buffer one step within --conn-buffer and --max-buffered. Returns 0,
 * -ENOSPC at --conn-buffer, -EAGAIN when the budget has no room, -ENOMEM. */
static int grow_out(struct re_worker *w, struct re_conn *c)
{
	uint32_t cap = c->out->cap;
	uint32_t ncap = re_buf_next_size(cap, w->rt->conn_buffer);
	int r;

	if (ncap <= cap) {
		return -ENOSPC;
	}
	if (!budget_take(w, ncap - cap)) {
		return -EAGAIN;
	}
	r = re_buf_grow(&w->bufs, &c->out, ncap);
	if (r < 0) {
		budget_settle(w);
	}
	return r;
}

static ssize_t sys_recv(int fd, void *buf, size_t len, int flags)
{
	return (ssize_t)syscall(SYS_recvfrom, fd, buf, len, flags, NULL, NULL);
}

#define PEEK_STOPPED (-2)	/* the socket took part: the rest stays queued in the kernel */
#define PEEK_DEAD (-3)		/* send failed: the peer is gone */

/* Echo without holding a byte, for when the reserve cannot cover a remainder: peek
 * at the input, send it, and consume only what the socket took. What it did not take
 * stays in the receive queue, where TCP flow control holds the sender back. Returns
 * the bytes consumed when all were echoed, 0 at EOF, -1 with errno when recv failed,
 * PEEK_STOPPED (the connection waits for EPOLLOUT, or for room in the budget) or
 * PEEK_DEAD. */
static ssize_t peek_echo(struct re_worker *w, struct re_conn *c, size_t want)
{
	ssize_t n, s, m;

	do {
		n = sys_recv(c->fd, w->scratch, want, MSG_PEEK);
		RE_STAT_ADD(w->st, recv_calls, 1);
	} while (n < 0 && errno == EINTR);
	if (n <= 0) {
		return n;
	}
	do {
		s = re_net_send(c->fd, w->scratch, (size_t)n);
		RE_STAT_ADD(w->st, send_calls, 1);
	} while (s < 0 && errno == EINTR);
	s = sent(w, s);
	if (s < 0) {
		return PEEK_DEAD;
	}
	if (s > 0) {
		/* MSG_TRUNC on TCP discards the bytes without copying them. */
		do {
			m = sys_recv(c->fd, w->scratch, (size_t)s, MSG_TRUNC);
			RE_STAT_ADD(w->st, recv_calls, 1);
		} while (m < 0 && errno == EINTR);
		if (m != s) {
			return PEEK_DEAD;	/* cannot happen: the bytes were queued */
		}
	}
	if (s < n) {
		if (s > 0) {
			RE_STAT_ADD(w->st, bytes_received, s);
			touch(w, c);
		}
		c->flags &= ~(uint32_t)RE_CONN_WRITABLE;
		return PEEK_STOPPED;
	}
	return n;
}

/* Write-through: echo n bytes straight from the scratch buffer; keep only what the
 * socket did not take. Context: out == NULL, so WRITABLE, unless a peek_echo was cut
 * short and the budget has room again (the send then mostly takes nothing). */
static int echo_scratch(struct re_worker *w, struct re_conn *c, size_t n)
{
	struct re_buf *b;
	ssize_t s;

	do {
		s = re_net_send(c->fd, w->scratch, n);
		RE_STAT_ADD(w->st, send_calls, 1);
	} while (s < 0 && errno == EINTR);
	s = sent(w, s);
	if (s < 0 || (size_t)s == n) {
		return s < 0 ? (int)s : 0;
	}
	b = keep_rest(w, c, n - (size_t)s);
	if (b == NULL) {
		return -ENOMEM;
	}
	memcpy(b->data, w->scratch + s, n - (size_t)s);
	return 0;
}

static ssize_t sys_splice(int in, int out, size_t len)
{
	/* Raw system call for the same reason as re_net_recv: glibc's splice() is a
	 * cancellation point. */
	return (ssize_t)syscall(SYS_splice, in, NULL, out, NULL, len,
				SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
}

/* Read len bytes the pipe holds into dst (len may be 0). The pipe is empty after. */
static int pipe_take(struct re_worker *w, char *dst, size_t len)
{
	while (len > 0) {
		ssize_t n = read(w->pipe_r, dst, len);

		if (n <= 0) {
			if (n < 0 && errno == EINTR) {
				continue;
			}
			return -EIO;	/* cannot happen: the bytes are in the pipe */
		}
		dst += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Bulk write-through: n bytes were spliced from the socket into the pipe; splice
 * them back out. Whatever the socket does not take is copied into the connection's
 * buffer, so the pipe is empty again for the next connection. */
static int echo_pipe(struct re_worker *w, struct re_conn *c, size_t n)
{
	struct re_buf *b;
	ssize_t s;

	do {
		s = sys_splice(w->pipe_r, c->fd, n);
		RE_STAT_ADD(w->st, send_calls, 1);
	} while (s < 0 && errno == EINTR);
	s = sent(w, s);
	if (s < 0) {
		(void)pipe_take(w, w->scratch, n);	/* discard: the peer is gone */
		return (int)s;
	}
	if ((size_t)s == n) {
		return 0;
	}
	b = keep_rest(w, c, n - (size_t)s);
	if (b == NULL) {
		(void)pipe_take(w, w->scratch, n - (size_t)s);
		return -ENOMEM;
	}
	return pipe_take(w, b->data, n - (size_t)s);
}

static bool bulk_ok(const struct re_worker *w, const struct re_conn *c, bool lingering)
{
	return !lingering && c->out == NULL && (c->flags & RE_CONN_BULK) && w->pipe_r >= 0;
}

/* A read that returned n <= 0 (errno set when n < 0): EOF or an empty queue end the
 * reading (0), EINTR asks for another read (1), any other error closes the connection
 * (-1). */
static int read_ended(struct re_worker *w, struct re_conn *c, ssize_t n)
{
	if (n == 0) {
		c->flags |= RE_CONN_EOF;
		c->flags &= ~(uint32_t)RE_CONN_READABLE;
		return 0;
	}
	if (errno == EINTR) {
		return 1;
	}
	if (errno == EAGAIN || errno == EWOULDBLOCK) {
		c->flags &= ~(uint32_t)RE_CONN_READABLE;
		return 0;
	}
	conn_close(w, c, CLOSE_ERROR, false);
	return -1;
}

/* --- discard and chargen (RFC 863, RFC 864) ---------------------------------- */

/* Read and drop everything queued, within the turn's budget. MSG_TRUNC on TCP
 * discards the bytes without copying them. Returns 0, or -1 when the connection was
 * closed (a receive error). Sets RE_CONN_EOF at EOF. */
static int svc_drop_input(struct re_worker *w, struct re_conn *c)
{
	uint32_t budget = RE_READ_BUDGET;
	int r;

	while (c->flags & RE_CONN_READABLE) {
		ssize_t n = sys_recv(c->fd, w->scratch, RE_SCRATCH_SIZE, MSG_TRUNC);

		RE_STAT_ADD(w->st, recv_calls, 1);
		if (n > 0) {
			RE_STAT_ADD(w->st, bytes_received, n);
			touch(w, c);
			/* A short read: the queue was empty (see conn_service). */
			if ((size_t)n < RE_SCRATCH_SIZE && !(c->flags & RE_CONN_RDHUP)) {
				c->flags &= ~(uint32_t)RE_CONN_READABLE;
				break;
			}
			if ((uint32_t)n >= budget) {
				ready_push(w, c);
				RE_STAT_ADD(w->st, ready_requeues, 1);
				break;
			}
			budget -= (uint32_t)n;
			continue;
		}
		r = read_ended(w, c, n);
		if (r < 0) {
			return -1;
		}
		if (r == 0) {
			break;
		}
	}
	return 0;
}

/* Send the pattern from the connection's position while the socket takes it, within
 * the turn's budget. Nothing is buffered here: the bytes come from the shared table,
 * so what the socket does not take costs no memory. A short send means the send
 * buffer filled (SOCK_NOSPACE is set), so an EPOLLOUT edge follows when the client
 * reads: until then this connection costs no CPU. Returns 0, or -1 when the
 * connection was closed (the peer is gone). */
static int svc_chargen(struct re_worker *w, struct re_conn *c)
{
	const char *pat = re_chargen_table();
	uint32_t budget = RE_READ_BUDGET;

	while (c->flags & RE_CONN_WRITABLE) {
		ssize_t s = re_net_send(c->fd, pat + c->svc_pos, RE_CHARGEN_SPAN);

		RE_STAT_ADD(w->st, send_calls, 1);
		if (s < 0 && errno == EINTR) {
			continue;
		}
		s = sent(w, s);
		if (s < 0) {
			conn_close(w, c, CLOSE_ERROR, false);
			return -1;
		}
		if (s > 0) {
			touch(w, c);
			c->svc_pos = (uint32_t)((c->svc_pos + (size_t)s) % RE_CHARGEN_PERIOD);
		}
		if ((size_t)s < RE_CHARGEN_SPAN) {
			c->flags &= ~(uint32_t)RE_CONN_WRITABLE;
			break;
		}
		if ((uint32_t)s >= budget) {
			ready_push(w, c);
			RE_STAT_ADD(w->st, ready_requeues, 1);
			break;
		}
		budget -= (uint32_t)s;
	}
	return 0;
}

/* Serve a discard or chargen connection: drop the input, send the pattern
 * (chargen), close at the client's EOF. Draining sends FIN at once (nothing is owed
 * to the client) and reads on to EOF, so close() never resets unread input. */
static void svc_service(struct re_worker *w, struct re_conn *c)
{
	if (svc_drop_input(w, c) < 0) {
		return;
	}
	if (c->flags & RE_CONN_EOF) {
		conn_close(w, c, (c->flags & RE_CONN_DRAIN) ? CLOSE_DRAIN : CLOSE_EOF, false);
		return;
	}
	if ((c->flags & (RE_CONN_DRAIN | RE_CONN_LINGER)) == RE_CONN_DRAIN) {
		if (shutdown(c->fd, SHUT_WR) < 0) {
			conn_close(w, c, CLOSE_ERROR, false);
			return;
		}
		c->flags |= RE_CONN_LINGER;
	}
	if ((c->flags & (RE_CONN_CHARGEN | RE_CONN_LINGER)) == RE_CONN_CHARGEN) {
		(void)svc_chargen(w, c);
	}
}


/* --- impairments (delay, jitter, bandwidth, close-after, reset-after) ------------ */

/* xorshift64*: the share of new connections impaired and the jitter. Not for secrets. */
static uint64_t rng_next(struct re_worker *w)
{
	uint64_t x = w->rng;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	w->rng = x;
	return x * 0x2545F4914F6CDD1Dull;
}

/* The connection leaves the impaired path: off the heap, state freed. */
static void imp_forget(struct re_worker *w, struct re_conn *c)
{
	re_imp_heap_remove(&w->imp_heap, c->imp);
	free(c->imp);
	c->imp = NULL;
	c->flags &= ~(uint32_t)(RE_CONN_IMP | RE_CONN_IMP_END);
}

static void imp_count(struct re_worker *w, struct re_conn *c)
{
	if (!(c->flags & RE_CONN_IMP_COUNTED)) {
		c->flags |= RE_CONN_IMP_COUNTED;
		RE_STAT_ADD(w->st, impaired_conns, 1);
	}
}

/* Bytes the connection has echoed so far (written to the socket: sent once, or
 * still queued), so that close-after and reset-after count from its first byte
 * whenever the impairment met it. 0 when the kernel does not say (before 4.19). */
static uint64_t echoed_so_far(int fd)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);

	memset(&ti, 0, sizeof(ti));
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0 ||
	    len < offsetof(struct tcp_info, tcpi_bytes_retrans) + sizeof(ti.tcpi_bytes_retrans)) {
		return 0;
	}
	return ti.tcpi_bytes_sent - ti.tcpi_bytes_retrans + ti.tcpi_notsent_bytes;
}

/* A chosen connection meets an impairment: what it holds unsent is due at once,
 * everything it reads from now on goes through the hold. -1: closed (no memory). */
static int imp_start(struct re_worker *w, struct re_conn *c)
{
	struct re_imp *m = malloc(sizeof(*m));

	if (m == NULL) {
		conn_close(w, c, CLOSE_ERROR, c->out != NULL);
		return -1;
	}
	re_imp_init(m, c, echoed_so_far(c->fd), c->out != NULL ? c->out->len : 0, w->now);
	c->imp = m;
	c->flags |= RE_CONN_IMP;
	imp_count(w, c);
	return 0;
}

/* When the bytes read now are due: delay plus or minus a uniform jitter, at least now
 * (re_imp_add keeps them behind the chunk before). */
static uint32_t imp_due_at(struct re_worker *w)
{
	int64_t d = w->rt->delay_ms;
	uint32_t j = w->rt->jitter_ms;

	if (j != 0) {
		d += (int64_t)(rng_next(w) % (2 * (uint64_t)j + 1)) - (int64_t)j;
	}
	return w->now + (uint32_t)(d > 0 ? d : 0);
}

/* Echoed bytes after which the connection ends (close-after or reset-after, the
 * smaller one that is set); 0 = none. */
static uint64_t imp_limit(const struct re_runtime *rt)
{
	uint64_t a = rt->close_after, b = rt->reset_after;

	if (a == 0 || (b != 0 && b < a)) {
		return b;
	}
	return a;
}

/* Room for the next read in the connection's buffer, which holds the held and the
 * unsent bytes together, within --conn-buffer and --max-buffered. Returns the bytes,
 * -ENOSPC at --conn-buffer, -EAGAIN when the budget has no room, -ENOMEM. */
static ssize_t imp_room(struct re_worker *w, struct re_conn *c)
{
	uint32_t t;

	if (c->out == NULL) {
		/* Small first (a pooled size): a ping-pong holds a message or two; a
		 * stream grows it by doubling, as any buffer does. */
		uint32_t cap = re_buf_size_for(RE_BUF_POOL_MAX_CAP, w->rt->conn_buffer);

		if (!reserve_covers(w, cap)) {
			return -EAGAIN;
		}
		c->out = re_buf_get(&w->bufs, cap);
		if (c->out == NULL) {
			return -ENOMEM;
		}
		budget_refill(w);
	}
	t = re_buf_tail(c->out);
	if (t == 0) {
		int g = grow_out(w, c);

		if (g < 0) {
			return g;
		}
		t = re_buf_tail(c->out);
	}
	return t;
}

/* Send what is due, within the bandwidth bucket and the byte limit. Returns 0, or -1
 * when the connection was closed (the peer is gone). */
static int imp_send(struct re_worker *w, struct re_conn *c, uint64_t rate, uint64_t limit)
{
	uint64_t n = re_imp_sendable(c->imp, w->now, rate, limit);
	ssize_t s;

	if (c->out == NULL || n == 0 || !(c->flags & RE_CONN_WRITABLE)) {
		return 0;
	}
	if (n > c->out->len) {
		n = c->out->len;	/* cannot happen: [tx, rx) is in the buffer */
	}
	s = out_send(w, c, (size_t)n);
	if (s < 0) {
		conn_close(w, c, CLOSE_ERROR, false);
		return -1;
	}
	re_imp_sent(c->imp, (uint64_t)s, rate);
	return 0;
}

/* The byte limit is reached. reset-after: RST now. close-after: drop what is held
 * beyond it, send FIN, then read and drop the input to the client's EOF, so that
 * close() never resets. Returns -1 when the connection was closed. */
static int imp_end(struct re_worker *w, struct re_conn *c)
{
	const struct re_runtime *rt = w->rt;

	if (rt->reset_after != 0 && c->imp->tx >= rt->reset_after) {
		conn_close(w, c, CLOSE_IMPAIR, true);
		return -1;
	}
	if (c->out != NULL) {
		re_buf_put(&w->bufs, c->out);
		c->out = NULL;
		budget_settle(w);
	}
	re_imp_heap_remove(&w->imp_heap, c->imp);
	if (shutdown(c->fd, SHUT_WR) < 0) {
		conn_close(w, c, CLOSE_ERROR, false);
		return -1;
	}
	c->flags |= RE_CONN_IMP_END;
	return 0;
}

/* Serve an impaired connection: release what came due, send it within the bucket and
 * the limit, read more into the hold while the buffer has room (at the cap reading
 * stops and TCP flow control holds the sender), end at the limit, and arm the timer
 * for the next release. Returns false when the connection goes back to the plain
 * echo path: nothing is held and no impairment is set any more (or the server is
 * draining: what is held is due at once, and the drain rules apply). */
static bool imp_service(struct re_worker *w, struct re_conn *c)
{
	struct re_imp *m = c->imp;
	bool draining = (c->flags & RE_CONN_DRAIN) != 0;
	uint64_t rate = draining ? 0 : w->rt->bandwidth;
	uint64_t limit = imp_limit(w->rt);
	uint32_t budget = RE_READ_BUDGET, at;

	if (c->flags & RE_CONN_IMP_END) {
		if (svc_drop_input(w, c) == 0 && (c->flags & RE_CONN_EOF)) {
			conn_close(w, c, CLOSE_IMPAIR, false);
		}
		return true;
	}
	if (draining) {
		m->released = m->rx;
		m->nmarks = 0;
	}
	re_imp_release(m, w->now);
	if ((draining || !w->imp_on) && m->nmarks == 0 && m->released == m->rx) {
		imp_forget(w, c);
		return false;
	}
	for (;;) {
		ssize_t room, n;

		if (imp_send(w, c, rate, limit) < 0) {
			return true;
		}
		if (limit != 0 && m->tx >= limit) {
			if (imp_end(w, c) < 0) {
				return true;
			}
			return imp_service(w, c);	/* drop the input that is queued */
		}
		if (!(c->flags & RE_CONN_READABLE)) {
			break;
		}
		room = imp_room(w, c);
		if (room == -ENOSPC) {
			backpressure_pause(w, c);
			break;
		}
		if (room == -EAGAIN) {
			budget_pause(w, c);
			break;
		}
		if (room < 0) {
			conn_close(w, c, CLOSE_ERROR, c->out != NULL);
			return true;
		}
		c->flags &= ~(uint32_t)RE_CONN_PAUSED;
		budget_unpause(w, c);
		n = re_net_recv(c->fd, c->out->data + c->out->off + c->out->len, (size_t)room);
		RE_STAT_ADD(w->st, recv_calls, 1);
		if (n > 0) {
			uint32_t due = draining ? w->now : imp_due_at(w);

			RE_STAT_ADD(w->st, bytes_received, n);
			touch(w, c);
			c->out->len += (uint32_t)n;
			re_imp_add(m, (uint64_t)n, w->now, due);
			if (m->released != m->rx) {
				RE_STAT_ADD(w->st, impaired_delayed_bytes, n);
			}
			/* A short read: the queue was empty (see conn_service). */
			if (n < room && !(c->flags & RE_CONN_RDHUP)) {
				c->flags &= ~(uint32_t)RE_CONN_READABLE;
			} else if ((uint32_t)n >= budget) {
				ready_push(w, c);
				RE_STAT_ADD(w->st, ready_requeues, 1);
				break;
			} else {
				budget -= (uint32_t)n;
			}
			continue;
		}
		int end = read_ended(w, c, n);

		if (end < 0) {
			return true;
		}
		if (end == 0) {
			continue;	/* one more send: what is due may go before we wait */
		}
	}
	if ((c->flags & RE_CONN_EOF) && m->tx == m->rx) {
		conn_close(w, c, draining ? CLOSE_DRAIN : CLOSE_EOF, false);
		return true;
	}
	if (re_imp_next_wake(m, w->now, rate, limit, &at)) {
		if (re_imp_heap_set(&w->imp_heap, m, at) < 0) {
			conn_close(w, c, CLOSE_ERROR, true);	/* cannot wake it: held bytes lost */
		}
	} else {
		re_imp_heap_remove(&w->imp_heap, m);
	}
	return true;
}

/* The rare connections: a service other than echo, or the impaired ones. Returns
 * false when the plain echo path is to serve the connection. */
static bool conn_special(struct re_worker *w, struct re_conn *c)
{
	if (c->flags & RE_CONN_SERVICE) {
		svc_service(w, c);	/* --service discard or chargen */
		return true;
	}
	if (!(c->flags & RE_CONN_IMP)) {
		if (!w->imp_on || !(c->flags & RE_CONN_CHOSEN) ||
		    (c->flags & (RE_CONN_DRAIN | RE_CONN_LINGER | RE_CONN_EOF))) {
			return false;
		}
		if (imp_start(w, c) < 0) {
			return true;
		}
	}
	return imp_service(w, c);
}

/* Serve one connection: flush, then read and echo within the turn's budget, then
 * finish an EOF or a drain. Every exit leaves the flags saying what is left to do. */
static void conn_service(struct re_worker *w, struct re_conn *c)
{
	uint32_t budget = RE_READ_BUDGET;

	/* One predictable branch when no impairment is set and the service is echo. */
	if (__builtin_expect((c->flags & (RE_CONN_SERVICE | RE_CONN_IMP)) != 0 || w->imp_on, 0) &&
	    conn_special(w, c)) {
		return;
	}

	if (c->out != NULL && (c->flags & RE_CONN_WRITABLE) && conn_flush(w, c) < 0) {
		conn_close(w, c, CLOSE_ERROR, false);
		return;
	}
	while (c->flags & RE_CONN_READABLE) {
		bool lingering = c->flags & RE_CONN_LINGER;
		/* A splice can stop short of the queue (the pipe has a bounded number of
		 * page slots), so a short splice proves nothing: read on to EAGAIN. */
		bool spliced = false, peek = false;
		char *dst = w->scratch;
		size_t want = RE_SCRATCH_SIZE;
		ssize_t n;

		if (!lingering && c->out != NULL) {
			/* Output is pending: receive straight into the buffer's tail, up to
			 * the cap. At the cap, stop reading: the bytes stay in the kernel and
			 * TCP flow control slows the sender. No edge will announce them
			 * again, so conn_flush's caller resumes us when space frees. A full
			 * buffer below the cap grows a step when --max-buffered has room;
			 * when it has none, the same pause, retried on a timer because the
			 * room may be freed by another worker. */
			want = re_buf_tail(c->out);
			if (want == 0) {
				int g = grow_out(w, c);

				if (g == -ENOSPC) {
					backpressure_pause(w, c);
					break;
				}
				if (g < 0) {
					budget_pause(w, c);
					break;
				}
				want = re_buf_tail(c->out);
			}
			dst = c->out->data + c->out->off + c->out->len;
		} else if (!lingering) {
			if (want > w->rt->conn_buffer) {
				want = w->rt->conn_buffer;	/* so a remainder always fits the cap */
			}
			/* A read never takes more than the budget can hold if the socket
			 * does not take it all: without a covering reserve, echo in place. */
			peek = !reserve_covers(w, want);
			if (peek && !(c->flags & RE_CONN_WRITABLE)) {
				/* A peek_echo the socket cut short, still without room: wait
				 * for EPOLLOUT or for the budget timer. Once the reserve
				 * covers a read, read on into a buffer as any connection. */
				break;
			}
		}
		c->flags &= ~(uint32_t)RE_CONN_PAUSED;
		budget_unpause(w, c);
		if (peek) {
			n = peek_echo(w, c, want);
			if (n == PEEK_STOPPED) {
				budget_pause(w, c);
				break;
			}
			if (n == PEEK_DEAD) {
				conn_close(w, c, CLOSE_ERROR, false);
				return;
			}
		} else {
			spliced = bulk_ok(w, c, lingering);
			if (spliced) {
				if (want > w->pipe_cap) {
					want = w->pipe_cap;
				}
				n = sys_splice(c->fd, w->pipe_w, want);
			} else {
				n = re_net_recv(c->fd, dst, want);
			}
			RE_STAT_ADD(w->st, recv_calls, 1);
		}
		if (n > 0) {
			int r = 0;

			RE_STAT_ADD(w->st, bytes_received, n);
			touch(w, c);
			if (lingering || peek) {
				/* Lingering: FIN already sent while draining, input is discarded.
				 * Peek: already echoed whole. */
			} else if (spliced) {
				r = echo_pipe(w, c, (size_t)n);
				if ((size_t)n < RE_BULK_OFF) {
					c->flags &= ~(uint32_t)RE_CONN_BULK;
				}
			} else if (c->out == NULL) {
				if ((size_t)n >= RE_BULK_ON && w->pipe_r >= 0) {
					c->flags |= RE_CONN_BULK;
				}
				r = echo_scratch(w, c, (size_t)n);
			} else {
				c->out->len += (uint32_t)n;
				if (c->flags & RE_CONN_WRITABLE) {
					r = conn_flush(w, c);
				}
			}
			if (r < 0) {
				/* No memory for the remainder: those bytes are lost, so the
				 * client must not see a clean end. Otherwise the peer is gone. */
				conn_close(w, c, CLOSE_ERROR, r == -ENOMEM);
				return;
			}
			/* A short read means the receive queue was empty at that instant. Under
			 * EPOLLET every later arrival raises a new edge, so stopping here loses
			 * nothing and saves the recv that would only return EAGAIN. Not so
			 * after EPOLLRDHUP: the FIN's edge is spent, so read on to EOF. */
			if ((size_t)n < want && !(c->flags & RE_CONN_RDHUP) && !spliced) {
				c->flags &= ~(uint32_t)RE_CONN_READABLE;
				break;
			}
			if ((uint32_t)n >= budget) {
				ready_push(w, c);
				RE_STAT_ADD(w->st, ready_requeues, 1);
				break;
			}
			budget -= (uint32_t)n;
			continue;
		}
		int end = read_ended(w, c, n);

		if (end < 0) {
			return;
		}
		if (end == 0) {
			break;
		}
	}
	if (c->flags & RE_CONN_EOF) {
		/* Half-close: everything the client sent is echoed first; the FIN that
		 * close() sends then follows the data. Input is at EOF, so close() cannot
		 * turn into a reset. */
		if (c->out == NULL) {
			conn_close(w, c, (c->flags & RE_CONN_DRAIN) ? CLOSE_DRAIN : CLOSE_EOF, false);
		}
		return;
	}
	if ((c->flags & (RE_CONN_DRAIN | RE_CONN_LINGER | RE_CONN_READABLE)) == RE_CONN_DRAIN &&
	    c->out == NULL) {
		/* Draining and everything queued so far is echoed: send FIN, then read and
		 * discard until the client closes, so close() never resets unread input. */
		if (shutdown(c->fd, SHUT_WR) < 0) {
			conn_close(w, c, CLOSE_ERROR, false);
			return;
		}
		c->flags |= RE_CONN_LINGER;
	}
}

/* --- accepting ----------------------------------------------------------------- */

static void accept_one(struct re_worker *w, int fd)
{
	struct epoll_event ev;
	struct re_conn *c;
	const struct re_stats_registry *reg;

	RE_STAT_ADD(w->st, accepted, 1);
	if (w->p.cpu >= 0 && RE_LOAD_RELAXED(w->st->c.accepted) % RE_LOCALITY_EVERY == 1) {
		int cpu = -1;
		socklen_t len = sizeof(cpu);

		/* The CPU that processed the connection's packets (its handshake, on a
		 * fresh connection): ours when steering and IRQ affinity line up. */
		if (getsockopt(fd, SOL_SOCKET, SO_INCOMING_CPU, &cpu, &len) == 0) {
			RE_STAT_ADD(w->st, incoming_cpu_sampled, 1);
			RE_STAT_ADD(w->st, incoming_cpu_local, cpu == w->p.cpu);
		}
	}
	if (w->rt->max_conns != 0) {
		reg = re_rcu_dereference(w->p.stats->reg);
		if (re_stats_active_total(reg) >= w->rt->max_conns) {
			/* Over --max-conns: the client sees its connection reset at once. */
			close_fd(fd, true);
			RE_STAT_ADD(w->st, closed_limit, 1);
			RE_STAT_ADD(w->st, reset_limit, 1);
			return;
		}
	}
	c = re_conn_get(&w->conns);
	if (c == NULL) {
		close_fd(fd, true);
		RE_STAT_ADD(w->st, closed_error, 1);
		RE_STAT_ADD(w->st, reset_error, 1);
		return;
	}
	c->fd = fd;
	c->flags = RE_CONN_WRITABLE;
	if (w->p.service != RE_SERVICE_ECHO) {
		c->flags |= RE_CONN_SERVICE;
		if (w->p.service == RE_SERVICE_CHARGEN) {
			c->flags |= RE_CONN_CHARGEN;
		}
	}
	/* share: the impairments, now or later, apply to this connection or never. */
	if (w->rt->share >= 100 || rng_next(w) % 100 < w->rt->share) {
		c->flags |= RE_CONN_CHOSEN;
		if (w->imp_on) {
			imp_count(w, c);
		}
	}
	c->last_active = w->now;
	ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
	ev.data.ptr = c;
	if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		close_fd(fd, true);
		re_conn_put(&w->conns, c);
		RE_STAT_ADD(w->st, closed_error, 1);
		RE_STAT_ADD(w->st, reset_error, 1);
		return;
	}
	RE_STAT_ADD(w->st, active, 1);
	re_conn_list_append(&w->lru, c, RE_LRU);
	if (w->wk == WK_DRAIN) {
		c->flags |= RE_CONN_DRAIN;
		ready_push(w, c);
	}
}

static void accept_failed(struct re_worker *w, int err)
{
	bool fdlimit = err == EMFILE || err == ENFILE;

	if (fdlimit) {
		RE_STAT_ADD(w->st, accept_errors_fd, 1);
	} else {
		RE_STAT_ADD(w->st, accept_errors_other, 1);
	}
	/* Under EPOLLET a listener at the fd limit wakes once and never again, even
	 * after fds free up: retry on a timer (and whenever a connection closes). */
	w->accept_paused = true;
	w->accept_retry_at = w->now + RE_ACCEPT_RETRY_MS;
	if (!w->accept_logged || re_due(w->now, w->last_accept_log + RE_LOG_EVERY_MS)) {
		w->accept_logged = true;
		w->last_accept_log = w->now;
		re_log_warn("worker %d: accept4: %s%s", w->p.id, strerror(err),
			    fdlimit ? " (raise the fd limit or lower --max-conns)" : "");
	}
}

static void do_accept(struct re_worker *w)
{
	w->accept_pending = false;
	if (w->lfd < 0) {
		return;
	}
	/* `accept off`: the queue fills and then the kernel drops SYNs, as at an
	 * overloaded backend. A retiring listener still hands its queue over. */
	if (w->accept_off && w->lst == LST_OPEN) {
		return;
	}
	for (int i = 0; i < RE_ACCEPT_BUDGET; i++) {
		int fd = accept4(w->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd >= 0) {
			accept_one(w, fd);
			continue;
		}
		switch (errno) {
		case EAGAIN:
#if EAGAIN != EWOULDBLOCK
		case EWOULDBLOCK:
#endif
			w->accept_paused = false;
			return;
		case EINTR:
		case ECONNABORTED:	/* the client gave up while queued */
		case EPROTO:
		case ENETDOWN:
		case ENOPROTOOPT:
		case EHOSTDOWN:
		case ENONET:
		case EHOSTUNREACH:
		case ENETUNREACH:
			continue;
		default:
			accept_failed(w, errno);
			return;
		}
	}
	/* Budget spent: more may be queued and no new edge will say so. */
	w->accept_pending = true;
}

/* `accept off` also shrinks the listener's accept queue to one connection (listen()
 * on a listening socket only changes its limit), so that the kernel drops SYNs after
 * the first queued connection, as at an overloaded backend, rather than after
 * --backlog of them. `accept on`, or a retire that must hand its queue over, restores
 * --backlog. A failure changes nothing but how soon connects time out. */
static void accept_queue_limit(struct re_worker *w)
{
	bool small = w->accept_off && w->lst == LST_OPEN;

	if (w->lfd >= 0 && listen(w->lfd, small ? 0 : w->p.backlog) < 0) {
		re_log_warn("worker %d: listen (accept %s): %s", w->p.id, small ? "off" : "on",
			    strerror(errno));
	}
}

/* --- commands, timers, the loop -------------------------------------------------- */

static void close_all(struct re_worker *w, enum close_reason why, bool abort)
{
	while (w->lru.head != NULL) {
		conn_close(w, w->lru.head, why, abort);
	}
}

static void close_listener(struct re_worker *w)
{
	if (w->lfd >= 0) {
		(void)close(w->lfd);
		w->lfd = -1;
	}
}

/* Is `deadline` the listener's next step, the worker's exit, or unused? */
static bool listener_timed(const struct re_worker *w)
{
	return w->lst == LST_GRACE || w->lst == LST_HALF_OPEN_WAIT;
}

static bool exit_timed(const struct re_worker *w)
{
	return w->lst == LST_CLOSED && (w->wk == WK_RETIRE || w->wk == WK_DRAIN);
}

static void half_open_forget(struct re_worker *w)
{
	free(w->half_open);
	w->half_open = NULL;
}

static void udp_close(struct re_worker *w)
{
	re_udp_close(w->udp);
	w->udp = NULL;
	w->udp_pending = false;
	w->udp_flushing = false;
}

/* The UDP socket follows the listener (doc/DESIGN.md §6): it joined its SO_REUSEPORT
 * group right after the listener joined the TCP group, so the two groups keep one
 * order only if it also leaves in the same step. Read it empty and echo what it held
 * (one final read to EAGAIN: a datagram whose edge is still in epoll's queue counts),
 * then close it. A drain keeps it open, no longer read, until the replies the socket
 * buffer could not take yet are sent (udp_turn closes it then) or the drain timeout:
 * every member is leaving, so the order no longer matters. A retire waited for them
 * before it came here (listener_step); what is still queued now is dropped, counted. */
static void udp_to_closed(struct re_worker *w)
{
	int r;

	if (w->udp == NULL) {
		return;
	}
	r = re_udp_drain_input(w->udp, RE_UDP_DRAIN_LIMIT, w->now, w->rt->udp_rate);
	if (r > 0 && w->wk == WK_DRAIN) {
		w->udp_flushing = true;
		w->udp_pending = true;
		return;
	}
	udp_close(w);
}

/* Retiring: read the UDP socket and send its queued replies while it is still in
 * the group (new datagrams are steered away from it already). True once nothing is
 * queued, or the wait is over. */
static bool udp_flushed(struct re_worker *w)
{
	int r;

	if (w->udp == NULL) {
		return true;
	}
	r = re_udp_drain_input(w->udp, RE_UDP_DRAIN_LIMIT, w->now, w->rt->udp_rate);
	return r <= 0 || re_due(w->now, w->udp_flush_limit);
}

/* The listener is closed: take what its queue holds first (closing a listener resets
 * every connection still in its accept queue), then tell the supervisor. A retiring
 * worker's drain timeout starts now. */
static void listener_to_closed(struct re_worker *w)
{
	if (w->lfd >= 0) {
		do {
			do_accept(w);
		} while (w->accept_pending);
		close_listener(w);
	}
	udp_to_closed(w);
	half_open_forget(w);
	w->lst = LST_CLOSED;
	w->accept_paused = false;
	RE_STORE_RELAXED(w->st->acceptq_len, 0);
	if (w->wk == WK_RETIRE) {
		w->deadline = w->now + w->rt->drain_timeout_ms;
	}
	atomic_store_explicit(&w->listener_closed, true, memory_order_release);
	notify_supervisor(w);
}

static void start_drain(struct re_worker *w)
{
	uint32_t at = w->now + w->rt->drain_timeout_ms;

	RE_STORE_RELAXED(w->st->state, RE_BLOCK_DRAINING);
	if (w->wk == WK_DRAIN || w->wk == WK_STOP) {
		return;
	}
	/* A retire whose timeout already runs keeps the earlier of the two ends. */
	if (exit_timed(w) && re_due(at, w->deadline)) {
		at = w->deadline;
	}
	w->wk = WK_DRAIN;
	if (w->lst != LST_CLOSED) {
		listener_to_closed(w);
	}
	w->deadline = at;
	for (struct re_conn *c = w->lru.head; c != NULL; c = c->lru.next) {
		/* An arrival whose edge is still in epoll's queue must be echoed too:
		 * force one read on every connection. */
		c->flags |= RE_CONN_DRAIN | RE_CONN_READABLE;
		ready_push(w, c);
	}
}

/* RETIRE (exit_after) or CLOSE_LISTENER: close the listener after the grace period,
 * or at once when it is closed already (a takeover's retire-listener came first). */
static void start_retire(struct re_worker *w, bool exit_after)
{
	if (w->wk == WK_DRAIN || w->wk == WK_STOP) {
		return;
	}
	RE_STORE_RELAXED(w->st->state, RE_BLOCK_RETIRING);
	if (exit_after && w->wk == WK_SERVE) {
		w->wk = WK_RETIRE;
		if (w->lst == LST_CLOSED) {
			w->deadline = w->now + w->rt->drain_timeout_ms;
		}
	}
	switch (w->lst) {
	case LST_OPEN:
		w->lst = LST_GRACE;
		w->deadline = w->now + atomic_load_explicit(&w->grace_ms, memory_order_relaxed);
		if (w->accept_off) {
			w->accept_pending = true;	/* hand over what `accept off` held */
			accept_queue_limit(w);
		}
		break;
	case LST_GRACE:
	case LST_HALF_OPEN_WAIT:
		break;		/* already on its way */
	case LST_CLOSED:
		atomic_store_explicit(&w->listener_closed, true, memory_order_release);
		notify_supervisor(w);
		break;
	}
}

static void stop_now(struct re_worker *w)
{
	w->wk = WK_STOP;
	close_listener(w);
	udp_close(w);
	half_open_forget(w);
	w->lst = LST_CLOSED;
	close_all(w, CLOSE_DRAIN, true);
}

/* Half-open handshakes on our port (SYN_RECV, from one sock_diag query per family),
 * identified by their remote address and port. The kernel does not say which
 * listener of the group holds a request, so the caller only waits for the ones it
 * saw first: once new connections are steered away, a request that reached this
 * listener earlier and whose final ACK was lost stays until the SYN-ACK
 * retransmission (after 1 s) completes it into our queue; closing the listener
 * before that would make the kernel reset that client. Requests of the other
 * listeners come and go in microseconds. A failed query counts as none seen. */
#define RE_HALF_OPEN_MAX 64

struct half_open {
	uint32_t limit;		/* stop waiting here (worker clock) */
	size_t n;
	struct re_net_peer peer[RE_HALF_OPEN_MAX];
};

static void scan_half_open(unsigned port, struct half_open *out)
{
	if (re_net_syn_recv(port, out->peer, RE_HALF_OPEN_MAX, &out->n) < 0) {
		out->n = 0;
	}
}

/* True while any request of `first` is still half-open. */
static bool half_open_remain(unsigned port, const struct half_open *first)
{
	struct re_net_peer now[RE_HALF_OPEN_MAX];
	size_t n;

	if (first->n == 0 || re_net_syn_recv(port, now, RE_HALF_OPEN_MAX, &n) < 0) {
		return false;
	}
	for (size_t i = 0; i < n; i++) {
		for (size_t j = 0; j < first->n; j++) {
			if (memcmp(&now[i], &first->peer[j], sizeof(now[i])) == 0) {
				return true;
			}
		}
	}
	return false;
}

/* The listener's timer fired: the grace ended (scan once for half-open requests),
 * or it is time to look at them again. */
static void listener_step(struct re_worker *w)
{
	unsigned port = re_net_port(&w->p.addr);

	if (w->lst == LST_GRACE) {
		w->lst = LST_HALF_OPEN_WAIT;
		w->udp_flush_limit = w->now + RE_UDP_FLUSH_MS;
		w->half_open = malloc(sizeof(*w->half_open));
		if (w->half_open != NULL) {
			scan_half_open(port, w->half_open);
			w->half_open->limit = w->now + RE_HANDSHAKE_WAIT_MS;
		}
	}
	if (w->half_open != NULL && !re_due(w->now, w->half_open->limit) &&
	    half_open_remain(port, w->half_open)) {
		/* Keep accepting: the handshake completes into our queue or elsewhere. */
		w->deadline = w->now + RE_HANDSHAKE_POLL_MS;
		return;
	}
	if (!udp_flushed(w)) {
		/* EPOLLOUT sends them (udp_turn); look again shortly. */
		w->deadline = w->now + RE_UDP_FLUSH_POLL_MS;
		return;
	}
	listener_to_closed(w);
}

/* Attach prog to fd's SO_REUSEPORT group, or detach its program (prog NULL). */
static int group_bpf(int fd, const struct sock_fprog *prog)
{
	int zero = 0;

	if (prog != NULL) {
		return setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, prog, sizeof(*prog)) < 0
			       ? -errno : 0;
	}
	if (setsockopt(fd, SOL_SOCKET, SO_DETACH_REUSEPORT_BPF, &zero, sizeof(zero)) < 0 &&
	    errno != ENOENT) {
		return -errno;
	}
	return 0;
}

static void set_bpf(struct re_worker *w)
{
	const struct sock_fprog *prog = atomic_load_explicit(&w->bpf_prog, memory_order_acquire);
	int r = 0;

	if (w->lfd < 0) {
		r = -EBADF;
	} else {
		/* The program belongs to the whole SO_REUSEPORT group, not to this
		 * socket: attaching it through any member steers every new connection.
		 * The UDP group has the TCP group's order (udp_to_closed), so the same
		 * program, attached to it through our UDP socket, steers datagrams. */
		r = group_bpf(w->lfd, prog);
		if (w->udp != NULL) {
			int u = group_bpf(re_udp_fd(w->udp), prog);

			r = r < 0 ? r : u;	/* both tried; the first failure is reported */
		}
	}
	atomic_store_explicit(&w->bpf_result, r, memory_order_relaxed);
	atomic_fetch_add_explicit(&w->bpf_acks, 1u, memory_order_release);
	notify_supervisor(w);
}

static void handle_command(struct re_worker *w)
{
	uint64_t v;
	unsigned cmd;

	(void)!read(w->cmd_fd, &v, sizeof(v));	/* EAGAIN: already reset */
	cmd = atomic_exchange_explicit(&w->cmd, 0u, memory_order_acq_rel);
	if (cmd & RE_WORKER_CMD_STOP) {
		stop_now(w);
		return;
	}
	if (cmd & RE_WORKER_CMD_BPF) {
		set_bpf(w);
	}
	if (cmd & RE_WORKER_CMD_DRAIN) {
		start_drain(w);
	} else if (cmd & (RE_WORKER_CMD_RETIRE | RE_WORKER_CMD_CLOSE_LISTENER)) {
		start_retire(w, (cmd & RE_WORKER_CMD_RETIRE) != 0);
	}
#ifdef RE_DEBUG_HOOKS
	if (cmd & RE_WORKER_CMD_STALL) {
		unsigned ms = atomic_load_explicit(&w->stall_ms, memory_order_relaxed);
		struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000 };

		/* Deliberately stuck while QSBR-online: exactly what a hung worker does. */
		while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
		}
	}
#endif
}

static void dispatch(struct re_worker *w, const struct epoll_event *ev)
{
	struct re_conn *c;
	uint32_t e = ev->events;

	if (ev->data.ptr == &w->listen_tag) {
		do_accept(w);
		return;
	}
	if (ev->data.ptr == &w->cmd_tag) {
		handle_command(w);
		return;
	}
	if (ev->data.ptr == &w->udp_tag) {
		if (w->udp == NULL) {
			return;	/* stale: a command earlier in this batch closed it */
		}
		/* Served once per turn after the connections (udp_turn), with its own
		 * budget, however many edges this batch holds. */
		re_udp_events(w->udp, e);
		w->udp_pending = true;
		return;
	}
	c = ev->data.ptr;
	if (c->flags & RE_CONN_CLOSED) {
		return;		/* stale: closed earlier in this batch */
	}
	if (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
		c->flags |= RE_CONN_READABLE;
	}
	if (e & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
		c->flags |= RE_CONN_RDHUP;
	}
	if (e & (EPOLLOUT | EPOLLHUP | EPOLLERR)) {
		c->flags |= RE_CONN_WRITABLE;
	}
	if (!(c->flags & RE_CONN_IN_READY)) {
		conn_service(w, c);	/* else the ready pass serves it this turn */
	}
}

#ifdef RE_DEBUG_HOOKS
/* The worker id armed by re_worker_debug_close_mid_batch, -1 = none. */
static atomic_int debug_close_mid_batch_id = -1;

static bool is_conn_event(const struct re_worker *w, const struct epoll_event *ev)
{
	return ev->data.ptr != &w->listen_tag && ev->data.ptr != &w->cmd_tag &&
	       ev->data.ptr != &w->udp_tag;
}

/* Test builds: evs[0, done) are dispatched. When armed for this worker, evs[done - 1]
 * was a connection event and a later one is too, reset every connection now: the
 * later events of the batch are stale, exactly what a stop mid-batch produces. */
static void debug_close_mid_batch(struct re_worker *w, const struct epoll_event *evs, int done,
				  int n)
{
	int id = w->p.id;
	size_t open = 0, stale = 0;

	if (atomic_load_explicit(&debug_close_mid_batch_id, memory_order_relaxed) != id ||
	    !is_conn_event(w, &evs[done - 1])) {
		return;
	}
	for (int i = done; i < n; i++) {
		const struct re_conn *c = evs[i].data.ptr;

		stale += is_conn_event(w, &evs[i]) && !(c->flags & RE_CONN_CLOSED);
	}
	if (stale == 0 ||
	    !atomic_compare_exchange_strong(&debug_close_mid_batch_id, &id, -1)) {
		return;
	}
	for (const struct re_conn *c = w->lru.head; c != NULL; c = c->lru.next) {
		open++;
	}
	close_all(w, CLOSE_DRAIN, true);
	re_log_info("worker %d: debug: reset %zu connections mid-batch, %zu later events "
		    "of the batch are stale", w->p.id, open, stale);
}
#endif

void re_worker_debug_close_mid_batch(int id)
{
#ifdef RE_DEBUG_HOOKS
	atomic_store_explicit(&debug_close_mid_batch_id, id, memory_order_relaxed);
#else
	(void)id;
#endif
}

/* One UDP pass per loop turn, within RE_UDP_BUDGET datagrams. A pass that spent its
 * budget with input left stays pending: no new edge will come for datagrams already
 * queued, so the next turn polls instead of blocking (as the ready list does for
 * connections). */
static void udp_turn(struct re_worker *w)
{
	int r;

	if (!w->udp_pending || w->udp == NULL) {
		w->udp_pending = false;
		return;
	}
	if (w->udp_flushing) {
		/* Draining: budget 0 sends what is queued and reads nothing; its result
		 * only says whether input waits, which no longer matters. */
		r = re_udp_service(w->udp, 0, w->now, w->rt->udp_rate);
		w->udp_pending = false;
		if (r < 0 || re_udp_queued(w->udp) == 0) {
			udp_close(w);
		}
		return;
	}
	r = re_udp_service(w->udp, RE_UDP_BUDGET, w->now, w->rt->udp_rate);
	w->udp_pending = r > 0;
	if (r < 0 && (!w->udp_logged || re_due(w->now, w->last_udp_log + RE_LOG_EVERY_MS))) {
		w->udp_logged = true;
		w->last_udp_log = w->now;
		re_log_warn("worker %d: recvmmsg: %s", w->p.id, strerror(-r));
	}
}

/* Serve the connections that were on the ready list when the pass began; any that
 * use up their budget again go to the back for the next turn. */
static void run_ready(struct re_worker *w)
{
	size_t n = w->nready;

	while (n-- > 0 && w->ready.head != NULL) {
		struct re_conn *c = w->ready.head;

		re_conn_list_remove(&w->ready, c, RE_READY);
		c->flags &= ~(uint32_t)RE_CONN_IN_READY;
		w->nready--;
		conn_service(w, c);
	}
}

static void sample_accept_queue(struct re_worker *w)
{
	uint32_t len, max;

	if (w->lfd >= 0 && re_net_accept_queue(w->lfd, &len, &max) == 0) {
		RE_STORE_RELAXED(w->st->acceptq_len, len);
		RE_STORE_RELAXED(w->st->acceptq_max, max);
	} else if (w->lfd < 0) {
		RE_STORE_RELAXED(w->st->acceptq_len, 0);
	}
}

/* Bytes queued in the socket's receive queue that we have not read. */
static bool unread_input(int fd)
{
	int n = 0;

	return ioctl(fd, SIOCINQ, &n) == 0 && n > 0;
}

/* Budget-paused connections get no edge when another worker frees room: while any
 * wait, try them again every RE_BUDGET_RETRY_MS if a buffer step fits. */
static void retry_budget_paused(struct re_worker *w)
{
	w->budget_retry_at = w->now + RE_BUDGET_RETRY_MS;
	if (re_buf_budget_used(w->p.budget) + RE_BUF_STEP > w->rt->max_buffered &&
	    reserve_now(w) <= reserve_target(w)) {
		return;
	}
	for (struct re_conn *c = w->lru.head; c != NULL; c = c->lru.next) {
		if (c->flags & RE_CONN_BUDGET) {
			ready_push(w, c);
		}
	}
}

/* Once per turn: whether the echo path is impaired, and `accept on` after `off` (the
 * queue may hold connections whose edge was spent while accepting was off). */
static void imp_snapshot(struct re_worker *w)
{
	w->imp_on = re_runtime_impaired(w->rt);
	if (w->accept_off != w->rt->accept_off) {
		w->accept_off = w->rt->accept_off;
		w->accept_pending = !w->accept_off;
		accept_queue_limit(w);
	}
}

/* Impaired connections whose held bytes came due, or whose bucket refilled. */
static void imp_wake(struct re_worker *w)
{
	struct re_imp *m;

	while ((m = re_imp_heap_top(&w->imp_heap)) != NULL && re_due(w->now, m->wake_at)) {
		re_imp_heap_remove(&w->imp_heap, m);
		ready_push(w, m->owner);
	}
}

static void run_timers(struct re_worker *w)
{
	uint32_t idle = w->rt->idle_timeout_ms;

	imp_wake(w);
	if (w->accept_paused && re_due(w->now, w->accept_retry_at)) {
		do_accept(w);
	}
	if (idle != 0) {
		while (w->lru.head != NULL && re_due(w->now, w->lru.head->last_active + idle)) {
			struct re_conn *c = w->lru.head;

			if (c->imp != NULL &&
			    (c->imp->heap_idx >= 0 || re_imp_held(c->imp) > 0)) {
				/* Not idle: we hold its echo (a delay or the bandwidth
				 * bucket), the client waits on us. */
				touch(w, c);
				continue;
			}
			/* Graceful only when nothing is lost: with unsent output the client
			 * would see a clean end to a short echo, and with unread input
			 * close() resets anyway (the kernel's rule). Reset those on purpose
			 * and count them. */
			conn_close(w, c, CLOSE_IDLE, c->out != NULL || unread_input(c->fd));
		}
	}
	if (w->nbudget_paused > 0 && re_due(w->now, w->budget_retry_at)) {
		retry_budget_paused(w);
	}
	if (listener_timed(w) && re_due(w->now, w->deadline)) {
		listener_step(w);
	}
	if (exit_timed(w) && re_due(w->now, w->deadline)) {
		close_all(w, CLOSE_DRAIN, true);
		udp_close(w);
	}
	if (re_due(w->now, w->next_sample)) {
		sample_accept_queue(w);
		re_udp_sample(w->udp);
		w->next_sample = w->now + RE_SAMPLE_MS;
	}
}

/* Milliseconds epoll_wait may block: 0 while work is left over, else the nearest
 * timer. */
static int next_timeout(const struct re_worker *w)
{
	int32_t t;

	if (w->nready > 0 || w->accept_pending || w->udp_pending) {
		return 0;
	}
	t = re_until(w->now, w->next_sample);
	if (w->accept_paused) {
		int32_t a = re_until(w->now, w->accept_retry_at);

		t = a < t ? a : t;
	}
	if (w->rt->idle_timeout_ms != 0 && w->lru.head != NULL) {
		int32_t a = re_until(w->now, w->lru.head->last_active + w->rt->idle_timeout_ms);

		t = a < t ? a : t;
	}
	if (listener_timed(w) || exit_timed(w)) {
		int32_t a = re_until(w->now, w->deadline);

		t = a < t ? a : t;
	}
	if (w->nbudget_paused > 0) {
		int32_t a = re_until(w->now, w->budget_retry_at);

		t = a < t ? a : t;
	}
	if (w->imp_heap.n > 0) {
		int32_t a = re_until(w->now, re_imp_heap_top(&w->imp_heap)->wake_at);

		t = a < t ? a : t;
	}
	return t;
}

static void worker_loop(struct re_worker *w)
{
	struct epoll_event evs[RE_MAX_EVENTS];

	for (;;) {
		int timeout = next_timeout(w);
		int n;

		/* QSBR: a turn that will not block announces a quiescent state; one that
		 * may block goes offline for the wait, so it never delays a grace period. */
		if (timeout == 0) {
			re_rcu_quiescent_state();
		} else {
			re_rcu_thread_offline();
		}
		n = epoll_wait(w->epfd, evs, RE_MAX_EVENTS, timeout);
		if (timeout != 0) {
			re_rcu_thread_online();
		}
		/* The settings read before the wait may have been freed during it (or at
		 * the quiescent state): load them again before anything uses them, the
		 * next_timeout() of an interrupted wait included. */
		w->rt = re_rcu_dereference(*w->p.runtime);
		clock_tick(w);
		imp_snapshot(w);
		if (n < 0) {
			if (errno == EINTR) {
				continue;
			}
			fail(w, "epoll_wait", -errno);
			return;
		}
		pool_follow_limit(w);
		RE_STAT_ADD(w->st, epoll_waits, 1);
		RE_STAT_ADD(w->st, events, n);
		for (int i = 0; i < n; i++) {
			dispatch(w, &evs[i]);
#ifdef RE_DEBUG_HOOKS
			if (i + 1 < n) {
				debug_close_mid_batch(w, evs, i + 1, n);
			}
#endif
		}
		run_ready(w);
		udp_turn(w);
		if (w->accept_pending) {
			do_accept(w);
		}
		run_timers(w);
		reap(w);
		if (w->wk == WK_STOP || (exit_timed(w) && w->lru.head == NULL && w->udp == NULL)) {
			return;
		}
	}
}

static int worker_setup(struct re_worker *w)
{
	struct epoll_event ev;
	const char *call = "listen";
	char name[16];

	snprintf(name, sizeof(name), "reuseecho-w%d", w->p.id);
	(void)pthread_setname_np(pthread_self(), name);
	RE_STORE_RELAXED(w->st->tid, gettid());
	if (w->p.cpu >= 0) {
		int r = re_cpu_pin_self(w->p.cpu);

		if (r < 0) {
			fail(w, "sched_setaffinity", r);
			return r;
		}
	}
	w->lfd = re_net_listen_reuseport(&w->p.addr, w->p.backlog, &call);
	if (w->lfd < 0) {
		fail(w, call, w->lfd);
		return w->lfd;
	}
	if (w->p.udp) {
		int r = re_udp_open(&w->udp, &w->p.addr, w->p.udp_rcvbuf, w->st, &call);

		if (r < 0) {
			fail(w, call, r);
			return r;
		}
		re_udp_set_service(w->udp, w->p.service);
	}
	w->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (w->epfd < 0) {
		fail(w, "epoll_create1", -errno);
		return -errno;
	}
	ev.events = EPOLLIN | EPOLLET;
	ev.data.ptr = &w->listen_tag;
	if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->lfd, &ev) < 0) {
		fail(w, "epoll_ctl", -errno);
		return -errno;
	}
	ev.events = EPOLLIN | EPOLLET;
	ev.data.ptr = &w->cmd_tag;
	if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->cmd_fd, &ev) < 0) {
		fail(w, "epoll_ctl", -errno);
		return -errno;
	}
	if (w->udp != NULL) {
		/* Registered once, never modified: readiness is tracked in the udp state.
		 * Adding reports the current state as a first edge. */
		ev.events = EPOLLIN | EPOLLOUT | EPOLLET;
		ev.data.ptr = &w->udp_tag;
		if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, re_udp_fd(w->udp), &ev) < 0) {
			fail(w, "epoll_ctl", -errno);
			return -errno;
		}
	}
	w->scratch = malloc(RE_SCRATCH_SIZE);
	if (w->scratch == NULL) {
		fail(w, "malloc", -ENOMEM);
		return -ENOMEM;
	}
	{
		int p[2];

		/* Optional: without the pipe every echo uses recv/send. */
		if (pipe2(p, O_NONBLOCK | O_CLOEXEC) == 0) {
			int cap = fcntl(p[1], F_SETPIPE_SZ, (int)RE_SCRATCH_SIZE);

			if (cap < 0) {
				cap = fcntl(p[1], F_GETPIPE_SZ);
			}
			w->pipe_r = p[0];
			w->pipe_w = p[1];
			w->pipe_cap = cap > 0 ? (size_t)cap : 65536;
		}
	}
	return 0;
}

static void worker_teardown(struct re_worker *w)
{
	close_all(w, CLOSE_DRAIN, true);
	reap(w);
	close_listener(w);
	udp_close(w);
	if (w->epfd >= 0) {
		(void)close(w->epfd);
		w->epfd = -1;
	}
	free(w->scratch);
	w->scratch = NULL;
	half_open_forget(w);
	if (w->pipe_r >= 0) {
		(void)close(w->pipe_r);
		(void)close(w->pipe_w);
		w->pipe_r = -1;
		w->pipe_w = -1;
	}
	re_imp_heap_finish(&w->imp_heap);
	re_buf_pool_finish(&w->bufs);
	re_conn_pool_finish(&w->conns);
	/* Every buffer is freed: the reserve is all that is left of the charge. */
	if (w->charged != 0) {
		re_buf_budget_give(w->p.budget, w->charged);
		w->charged = 0;
		budget_gauge(w);
	}
}

static void *worker_main(void *arg)
{
	struct re_worker *w = arg;

	w->now64 = re_mono_ms();
	w->now = (uint32_t)w->now64;
	if (worker_setup(w) < 0) {
		worker_teardown(w);
		set_state(w, RE_WORKER_FAILED);
		return NULL;
	}
	urcu_qsbr_register_thread();
	w->rt = re_rcu_dereference(*w->p.runtime);
	w->pool_limit = w->rt->conn_buffer;
	budget_refill(w);
	sample_accept_queue(w);
	w->next_sample = w->now + RE_SAMPLE_MS;
	clock_tick(w);
	w->rng = (w->now64 ^ ((uint64_t)(w->p.id + 1) * 0x9E3779B97F4A7C15ull)) | 1;
	imp_snapshot(w);
	RE_STORE_RELAXED(w->st->state, RE_BLOCK_RUNNING);
	set_state(w, RE_WORKER_RUNNING);
	worker_loop(w);
	/* Connections left after a failure are reset here, while w->rt is still
	 * protected: closing one settles the buffer budget, which reads it. */
	close_all(w, CLOSE_DRAIN, true);
	reap(w);
	urcu_qsbr_unregister_thread();
	worker_teardown(w);
	set_state(w, w->err != 0 ? RE_WORKER_FAILED : RE_WORKER_EXITED);
	return NULL;
}

/* --- supervisor side ------------------------------------------------------------- */

struct re_worker *re_worker_create(const struct re_worker_params *params)
{
	struct re_worker *w = calloc(1, sizeof(*w));

	if (w == NULL) {
		return NULL;
	}
	w->p = *params;
	w->st = params->block;
	w->lfd = -1;
	w->epfd = -1;
	w->pipe_r = -1;
	w->pipe_w = -1;
	atomic_init(&w->state, RE_WORKER_STARTING);
	atomic_init(&w->cmd, 0u);
	atomic_init(&w->stall_ms, 0u);
	atomic_init(&w->grace_ms, 0u);
	atomic_init(&w->bpf_prog, NULL);
	atomic_init(&w->bpf_result, 0);
	atomic_init(&w->bpf_acks, 0u);
	atomic_init(&w->listener_closed, false);
	re_conn_pool_init(&w->conns, RE_CONN_SLAB);
	re_buf_pool_init(&w->bufs, RE_BUF_POOL_BYTES);
	w->cmd_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (w->cmd_fd < 0) {
		int e = errno;

		free(w);
		errno = e;
		return NULL;
	}
	return w;
}

int re_worker_start(struct re_worker *w)
{
	int r = pthread_create(&w->thread, NULL, worker_main, w);

	if (r != 0) {
		return -r;
	}
	w->started = true;
	return 0;
}

enum re_worker_state re_worker_state(const struct re_worker *w)
{
	return (enum re_worker_state)atomic_load_explicit(&w->state, memory_order_acquire);
}

const char *re_worker_err_call(const struct re_worker *w)
{
	return w->err_call ? w->err_call : "?";
}

int re_worker_err(const struct re_worker *w)
{
	return w->err;
}

int re_worker_command(struct re_worker *w, unsigned cmd)
{
	uint64_t one = 1;

	atomic_fetch_or_explicit(&w->cmd, cmd, memory_order_acq_rel);
	if (write(w->cmd_fd, &one, sizeof(one)) < 0 && errno != EAGAIN) {
		return -errno;
	}
	return 0;
}

int re_worker_retire(struct re_worker *w, unsigned grace_ms, bool exit_after)
{
	atomic_store_explicit(&w->grace_ms, grace_ms, memory_order_relaxed);
	return re_worker_command(w, exit_after ? RE_WORKER_CMD_RETIRE : RE_WORKER_CMD_CLOSE_LISTENER);
}

bool re_worker_listener_closed(const struct re_worker *w)
{
	return atomic_load_explicit(&w->listener_closed, memory_order_acquire);
}

int re_worker_set_bpf(struct re_worker *w, const struct sock_fprog *prog)
{
	atomic_store_explicit(&w->bpf_prog, prog, memory_order_release);
	return re_worker_command(w, RE_WORKER_CMD_BPF);
}

unsigned re_worker_bpf_acks(const struct re_worker *w)
{
	return atomic_load_explicit(&w->bpf_acks, memory_order_acquire);
}

int re_worker_bpf_result(const struct re_worker *w)
{
	return atomic_load_explicit(&w->bpf_result, memory_order_relaxed);
}

int re_worker_stall(struct re_worker *w, unsigned ms)
{
	atomic_store_explicit(&w->stall_ms, ms, memory_order_relaxed);
	return re_worker_command(w, RE_WORKER_CMD_STALL);
}

void re_worker_abandon(struct re_worker *w)
{
	if (w != NULL && w->started) {
		(void)pthread_detach(w->thread);
		w->started = false;
	}
}

void re_worker_destroy(struct re_worker *w)
{
	if (w == NULL) {
		return;
	}
	if (w->started) {
		(void)pthread_join(w->thread, NULL);
	}
	if (w->cmd_fd >= 0) {
		(void)close(w->cmd_fd);
	}
	free(w);
}

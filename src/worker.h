/* worker: one pinned thread with its own SO_REUSEPORT listener, its own edge-triggered
 * epoll instance, its connections, buffers and stats block.
 * The supervisor creates and starts a worker, then talks to it only through
 * re_worker_command() (an eventfd doorbell) and reads its state; everything else in
 * struct re_worker belongs to the worker thread.
 */
#ifndef REUSEECHO_SRC_WORKER_H
#define REUSEECHO_SRC_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "buf.h"
#include "config.h"
#include "conn.h"
#include "net.h"
#include "stats.h"

enum re_worker_state {
	RE_WORKER_STARTING = 0,
	RE_WORKER_RUNNING,	/* listening and serving */
	RE_WORKER_FAILED,	/* start-up or loop failure: see err_call/err */
	RE_WORKER_EXITED,	/* loop ended cleanly; the thread is about to return */
};

enum re_worker_cmd {
	RE_WORKER_CMD_DRAIN = 1u << 0,	/* shutdown: stop accepting, finish echoing, exit */
	RE_WORKER_CMD_STOP = 1u << 1,	/* reset every connection and exit now */
	RE_WORKER_CMD_RETIRE = 1u << 2,	/* shrink: close the listener (see re_worker_retire),
					 * serve established connections until they close or
					 * the drain timeout passes, then exit */
	RE_WORKER_CMD_STALL = 1u << 3,	/* test builds: block the loop (see re_worker_stall) */
	RE_WORKER_CMD_CLOSE_LISTENER = 1u << 4,	/* handover: close the listener, keep serving */
	RE_WORKER_CMD_BPF = 1u << 5,	/* attach/detach the group's steering program */
	RE_WORKER_CMD_SETTINGS = 1u << 6,	/* wake up: the runtime settings changed (every
						 * turn re-reads them; this makes the turn now) */
};

/* What the supervisor hands a worker. Read-only for the worker. */
struct re_worker_params {
	int id;
	int cpu;			/* -1: do not pin */
	struct re_addr addr;		/* concrete port */
	int backlog;
	bool udp;			/* --udp: also open a UDP echo socket on addr */
	uint32_t udp_rcvbuf;		/* --udp-rcvbuf, 0 = kernel default */
	enum re_service service;	/* --service, for every connection and datagram */
	struct re_runtime **runtime;	/* RCU-published settings slot */
	struct re_stats *stats;		/* registry (for the global connection count) */
	struct re_stats_block *block;	/* this worker's counters */
	struct re_buf_budget *budget;	/* process-wide --max-buffered accounting */
	int notify_fd;			/* supervisor's eventfd: "a worker changed state" */
};

struct re_worker;

/* Allocate a worker and its command eventfd. Returns NULL with errno set on failure.
 * Context: supervisor. */
struct re_worker *re_worker_create(const struct re_worker_params *params);

/* Start the thread. Returns 0 or -errno. Context: supervisor. */
int re_worker_start(struct re_worker *w) __attribute__((warn_unused_result));

/* Current state (acquire load). Context: supervisor. */
enum re_worker_state re_worker_state(const struct re_worker *w);

/* After RE_WORKER_FAILED: the failing call ("bind", "epoll_wait", ...) and -errno. */
const char *re_worker_err_call(const struct re_worker *w);
int re_worker_err(const struct re_worker *w);

/* Ask the worker to do cmd (a bit of enum re_worker_cmd). Returns 0 or -errno.
 * Context: supervisor. */
int re_worker_command(struct re_worker *w, unsigned cmd) __attribute__((warn_unused_result));

struct sock_fprog;

/* Retire the worker's listener without losing a connection: keep accepting for
 * grace_ms (handshakes already steered here complete into this accept queue), then
 * accept until EAGAIN and close it; re_worker_listener_closed() turns true and the
 * supervisor's doorbell rings. With exit_after, the worker then serves its
 * established connections until they close or the drain timeout passes, and exits.
 * The caller must already have steered new connections away (re_worker_set_bpf on
 * another worker). Context: supervisor. */
int re_worker_retire(struct re_worker *w, unsigned grace_ms, bool exit_after)
	__attribute__((warn_unused_result));
bool re_worker_listener_closed(const struct re_worker *w);

/* Attach prog to the SO_REUSEPORT group through this worker's listener (the program
 * is group-wide), or detach the group's program when prog is NULL. prog must stay
 * valid until re_worker_bpf_acks() has advanced; the result is then in
 * re_worker_bpf_result() (0 or -errno). Context: supervisor. */
int re_worker_set_bpf(struct re_worker *w, const struct sock_fprog *prog)
	__attribute__((warn_unused_result));
unsigned re_worker_bpf_acks(const struct re_worker *w);
int re_worker_bpf_result(const struct re_worker *w);

/* Test builds: make the worker's loop stop turning for ms milliseconds (it sleeps
 * while online), so stall detection can be tested. Context: supervisor. */
int re_worker_stall(struct re_worker *w, unsigned ms) __attribute__((warn_unused_result));

/* Test builds: the next time worker id gets an epoll batch with a connection event
 * after another connection event, it resets every connection right after the first
 * one, so the rest of the batch are stale events for closed connections; it logs how
 * many. Context: any thread (one process-wide request slot). */
void re_worker_debug_close_mid_batch(int id);

/* Join the thread (if started), close the command eventfd, free. Accepts NULL.
 * Context: supervisor, after the worker reached FAILED or EXITED (or was never
 * started). */
/* Give up on the thread without joining it (the process is about to _exit). */
void re_worker_abandon(struct re_worker *w);
void re_worker_destroy(struct re_worker *w);

#endif

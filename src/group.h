/* group: the workers and their listeners' SO_REUSEPORT group, owned by the
 * supervisor thread (nobody else calls into it).
 *
 * The model: the kernel keeps a group's sockets in an array in the order they
 * started listening; when one closes, the last one moves into its place. A CBPF
 * program attached to the group (SO_ATTACH_REUSEPORT_CBPF) answers an index into
 * that array, so knowing the order is what lets us steer new connections away from
 * a listener before it closes. With --udp the workers' UDP sockets form a second
 * group with the same order (each worker binds its UDP socket right after its
 * listener joins, one worker at a time, and closes both in one step), so this one
 * model, and one program attached to both groups, serves both. Members are our worker ids (>= 0) and, during a
 * takeover, the old instance's listeners (-1 - its worker id).
 *
 * The operations that take time — grow, shrink, retire one listener (the old side
 * of a takeover), takeover (the new side) — are state machines: start one with
 * re_group_*_start, then call re_group_step whenever the supervisor's loop wakes
 * (a worker's doorbell, the takeover's control socket, the deadline from
 * re_group_deadline). Nothing here blocks or waits.
 *
 * The group's steering program is computed in one place, re_group_program, from
 * the whole state: the members in array order, the member an operation is emptying,
 * the workers steered around because their loop stalled, and --steer. re_group_sync
 * attaches it whenever it differs from the one attached, so an operation and stall
 * avoidance never attach programs of their own that could undo each other. The
 * program belongs to the group, so it steers whatever the group's sockets receive.
 */
#ifndef REUSEECHO_SRC_GROUP_H
#define REUSEECHO_SRC_GROUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cpu.h"
#include "ctlclient.h"
#include "steer.h"
#include "worker.h"

#define RE_GROUP_START_TIMEOUT_MS 10000
/* Handover: after new connections are steered away from a listener, how long it
 * keeps accepting so handshakes already on their way complete into its queue. */
#define RE_GROUP_GRACE_MS 200
#define RE_GROUP_STEP_TIMEOUT_MS 5000

/* --- the model (pure; unit-tested against the kernel) -------------------------- */

struct re_group_model {
	int *m;			/* members in the kernel's array order */
	size_t n;
	size_t cap;
	bool valid;		/* false once a step's outcome is unknown */
};

/* A member starts listening: it takes the next index. Returns 0 or -ENOMEM (the
 * model is then invalid). */
int re_group_model_join(struct re_group_model *g, int member);
/* A member's listener closed: the last member moves into its index. */
void re_group_model_leave(struct re_group_model *g, int member);
/* Index of member, or -1. */
long re_group_model_index(const struct re_group_model *g, int member);
void re_group_model_finish(struct re_group_model *g);
/* Build into prog/fprog a program that spreads new connections over every member
 * but `member`. Returns 0, -EOPNOTSUPP (model invalid) or -EINVAL (no other member
 * or too many). */
int re_group_model_steer_away(const struct re_group_model *g, int member, struct sock_filter *prog,
			      struct sock_fprog *fprog) __attribute__((warn_unused_result));

/* --- the worker set and its operations -------------------------------------------- */

enum re_steer_mode {
	RE_STEER_HASH = 0,	/* the kernel's hash over the members (no program) */
	RE_STEER_CPU,		/* the member whose worker is on the SYN's CPU (SKF_AD_CPU) */
};

struct re_slot {
	struct re_worker *w;
	struct re_stats_block *block;	/* owned by the registry once added */
	int id;
	int cpu;
	bool retiring;			/* leaving: reaped once its thread ended */
	bool reported;			/* its failure was logged */
	bool stalled;			/* the watchdog logged a stall */
	bool avoid;			/* stalled past --stall-steer: steered around */
	int64_t avoid_since;		/* ms, CLOCK_MONOTONIC, when avoid was set */
	uint64_t steered_base;		/* steered ms of the episodes before this one */
};

enum re_group_op {
	RE_GOP_NONE = 0,
	RE_GOP_GROW,		/* add workers one at a time, each joining the group */
	RE_GOP_SHRINK,		/* retire the newest workers' listeners, one at a time */
	RE_GOP_RETIRE_LISTENER,	/* old side of a takeover: close one listener, keep serving */
	RE_GOP_TAKEOVER,	/* new side: join the old group, empty it, retire it */
};

struct re_group {
	/* Set by the owner before the first operation. */
	struct re_worker_params tmpl;	/* addr, backlog, runtime, stats, notify_fd */
	struct re_cpuset cpus;
	bool no_pin;
	bool cbpf;			/* SO_ATTACH_REUSEPORT_CBPF works here */
	bool uid_locked;		/* --user dropped root: a new listener cannot join */
	int epfd;			/* the owner's epoll: the takeover watches its socket */
	int udp_hold_fd;		/* --udp start-up: the UDP port reservation
					 * (re_net_reserve_udp), closed once the first worker
					 * has bound, before the next binds; -1 = none */
	enum re_steer_mode steer;
	bool foreign;			/* an instance taking over ours owns the program now */

	struct re_slot *slots;		/* live and retiring workers, by ascending id */
	size_t nslots;
	size_t cap;
	int next_id;			/* ids are never reused: metric series stay monotonic */
	struct re_group_model model;
	struct sock_filter prog[RE_STEER_MAX_INSNS];	/* attached or being attached */
	struct sock_fprog fprog;	/* .len 0: none (the kernel's hash) */
	struct sock_filter want[RE_STEER_MAX_INSNS];	/* re_group_sync's scratch */
	int away;			/* the member an operation empties, or RE_GROUP_NOBODY */
	struct {
		bool known;		/* the kernel holds g->prog (or no program) */
		bool pending;		/* a worker was asked to attach g->prog */
		bool failed;		/* the last attach failed: not retried until it changes */
		int id;			/* the worker asked */
		unsigned acks;		/* its ack count when asked */
		int64_t deadline;	/* warn once when the ack takes longer */
		bool late;
	} sync;

	struct {
		enum re_group_op kind;
		int step;
		int next;		/* the step after a steering program is acknowledged */
		int64_t deadline;	/* ms, CLOCK_MONOTONIC; 0 = not waiting on time */
		size_t want;		/* grow/shrink: live workers at the end */
		int from_id;		/* grow, takeover: the first worker id it spawned */
		int target;		/* the member being retired */
		unsigned lost;		/* listeners that did not close in time */
		bool exit_after;
		int result;		/* 0 or -errno once finished */
		char why[320];		/* what failed, for the reply and the log */
		/* takeover */
		const char *ctl_path;
		struct re_ctlclient cc;
		bool cc_watched;
		int *old;		/* the old instance's worker ids, in its group order */
		size_t nold;
		size_t iold;
		bool abandon;		/* the old instance stopped answering: finish */
	} op;
};

#define RE_GROUP_NOBODY INT32_MIN

/* The program the group should have now, built into prog/fprog from the whole state
 * (see the top of this file). Returns 1 (a program), 0 (none: the kernel's hash over
 * every member) or -errno. Never steers around every member: stalled workers are
 * passed over only while another member is eligible. */
int re_group_program(const struct re_group *g, struct sock_filter *prog, struct sock_fprog *fprog)
	__attribute__((warn_unused_result));
/* Attach re_group_program's answer when it differs from what is attached (through a
 * running worker that is not stalled); call on every turn of the owner's loop.
 * Returns true when the attached program is the wanted one (or cannot be). */
bool re_group_sync(struct re_group *g, int64_t now);

/* Frees what the group owns (after every worker was destroyed by the owner). */
void re_group_finish(struct re_group *g);

/* Workers that are running and not retiring. */
size_t re_group_live(const struct re_group *g);
struct re_slot *re_group_slot(struct re_group *g, int id);

/* Start an operation; only one at a time (re_group_busy). Returns 0, or -errno with
 * g->op.why set and nothing started. */
bool re_group_busy(const struct re_group *g);
int re_group_grow_start(struct re_group *g, size_t want);
int re_group_shrink_start(struct re_group *g, size_t want);
int re_group_retire_listener_start(struct re_group *g, int id);
int re_group_takeover_start(struct re_group *g, const char *ctl_path, size_t want);

/* Advance the operation as far as it goes without waiting. Returns true once it
 * finished: the result is in g->op.result/why until re_group_op_end. */
bool re_group_step(struct re_group *g, int64_t now);
/* When the operation must be stepped again at the latest (ms), or -1. */
int64_t re_group_deadline(const struct re_group *g);
/* Abandon the operation (shutdown): workers it started keep their state. */
void re_group_abort(struct re_group *g);
/* Forget the finished operation. */
void re_group_op_end(struct re_group *g);

/* The fd the takeover reads from, registered in epfd with this data.fd. */
bool re_group_owns_fd(const struct re_group *g, int fd);

const char *re_group_mechanism(const struct re_group *g, int migrate_req);

int64_t re_group_now_ms(void);

#endif

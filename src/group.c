/* group: the SO_REUSEPORT group model and the grow/shrink/retire/takeover state
 * machines. Context: the supervisor thread only. */
#include "group.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>

#include "log.h"
#include "net.h"

/* Bound on one reply from the old instance (its `listeners` list included). */
#define RE_GROUP_MAX_REPLY (64 * 1024)

enum step {
	S_DONE = 0,
	S_SPAWN,	/* grow: start the next worker */
	S_WAIT_START,	/* grow: until it listens (or failed) */
	S_PICK,		/* shrink: choose the next listener to retire */
	S_STEER,	/* steer new connections away from op.target */
	S_WAIT_BPF,	/* until the program is acknowledged, then op.next */
	S_CLOSE,	/* have op.target drain its accept queue and close it */
	S_WAIT_CLOSED,
	S_RELEASE,	/* detach the program: the kernel's hash over everyone */
	T_LISTENERS,	/* takeover: waiting for the old instance's `listeners` */
	T_OLD_NEXT,	/* takeover: the next old listener, or `retire` */
	T_RL_SEND,
	T_RL_WAIT,	/* takeover: waiting for `retire-listener`'s answer */
	T_RETIRE_SEND,
	T_RETIRE_WAIT,
};

int64_t re_group_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* --- the model ------------------------------------------------------------------- */

int re_group_model_join(struct re_group_model *g, int member)
{
	if (g->n == g->cap) {
		size_t ncap = g->cap ? g->cap * 2 : 16;
		int *nm = realloc(g->m, ncap * sizeof(*nm));

		if (nm == NULL) {
			g->valid = false;
			return -ENOMEM;
		}
		g->m = nm;
		g->cap = ncap;
	}
	g->m[g->n++] = member;
	return 0;
}

long re_group_model_index(const struct re_group_model *g, int member)
{
	for (size_t i = 0; i < g->n; i++) {
		if (g->m[i] == member) {
			return (long)i;
		}
	}
	return -1;
}

void re_group_model_leave(struct re_group_model *g, int member)
{
	long j = re_group_model_index(g, member);

	if (j >= 0) {
		re_steer_remove(g->m, &g->n, (size_t)j);
	}
}

void re_group_model_finish(struct re_group_model *g)
{
	free(g->m);
	g->m = NULL;
	g->n = 0;
	g->cap = 0;
}

int re_group_model_steer_away(const struct re_group_model *g, int member, struct sock_filter *prog,
			      struct sock_fprog *fprog)
{
	uint32_t targets[RE_STEER_MAX_TARGETS];
	size_t n = 0;
	int len;

	if (!g->valid) {
		return -EOPNOTSUPP;
	}
	for (size_t i = 0; i < g->n && n < RE_STEER_MAX_TARGETS; i++) {
		if (g->m[i] != member) {
			targets[n++] = (uint32_t)i;
		}
	}
	len = re_steer_build(targets, n, prog);
	if (len < 0) {
		return len;
	}
	memset(fprog, 0, sizeof(*fprog));	/* padding included: it reaches the kernel */
	fprog->len = (unsigned short)len;
	fprog->filter = prog;
	return 0;
}

/* --- the worker set ------------------------------------------------------------------ */

/* The first worker has bound its UDP socket: the reservation, index 0 of the UDP
 * group until now, leaves, and that worker moves into index 0 as in the TCP group.
 * This must happen before the next worker binds (re_net_reserve_udp). */
static void release_udp_hold(struct re_group *g)
{
	if (g->udp_hold_fd >= 0) {
		(void)close(g->udp_hold_fd);
		g->udp_hold_fd = -1;
	}
}

void re_group_finish(struct re_group *g)
{
	release_udp_hold(g);
	re_group_abort(g);
	free(g->slots);
	g->slots = NULL;
	g->nslots = 0;
	re_group_model_finish(&g->model);
}

size_t re_group_live(const struct re_group *g)
{
	size_t n = 0;

	for (size_t i = 0; i < g->nslots; i++) {
		n += !g->slots[i].retiring && re_worker_state(g->slots[i].w) == RE_WORKER_RUNNING;
	}
	return n;
}

struct re_slot *re_group_slot(struct re_group *g, int id)
{
	for (size_t i = 0; i < g->nslots; i++) {
		if (g->slots[i].id == id) {
			return &g->slots[i];
		}
	}
	return NULL;
}

bool re_group_owns_fd(const struct re_group *g, int fd)
{
	return g->op.cc_watched && g->op.cc.fd == fd;
}

const char *re_group_mechanism(const struct re_group *g, int migrate_req)
{
	if (g->cbpf && g->model.valid) {
		return migrate_req == 1 ? "SO_ATTACH_REUSEPORT_CBPF steering + accept-queue drain; "
					  "tcp_migrate_req=1 migrates the rest"
					: "SO_ATTACH_REUSEPORT_CBPF steering + accept-queue drain";
	}
	return migrate_req == 1 ? "tcp_migrate_req=1 (kernel migration only)"
				: "none: connections queued on a closing listener may be reset";
}

/* The allowed CPU with the fewest live workers (lowest first on ties). */
static int pick_cpu(const struct re_group *g)
{
	size_t n = re_cpu_count(&g->cpus);
	size_t best_load = SIZE_MAX;
	int best = -1;

	if (g->no_pin) {
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		int cpu = re_cpu_nth(&g->cpus, i);
		size_t load = 0;

		for (size_t k = 0; k < g->nslots; k++) {
			load += !g->slots[k].retiring && g->slots[k].cpu == cpu;
		}
		if (load < best_load) {
			best_load = load;
			best = cpu;
		}
	}
	return best;
}

/* Create, register and start one worker. Returns 0 or -errno (op.why set). */
static int spawn_one(struct re_group *g)
{
	struct re_worker_params p = g->tmpl;
	struct re_slot *sl;
	int r;

	if (g->nslots == g->cap) {
		size_t ncap = g->cap ? g->cap * 2 : 16;
		struct re_slot *ns = realloc(g->slots, ncap * sizeof(*ns));

		if (ns == NULL) {
			snprintf(g->op.why, sizeof(g->op.why), "worker: %s", strerror(ENOMEM));
			return -ENOMEM;
		}
		g->slots = ns;
		g->cap = ncap;
	}
	/* The id is spent from here on, even if this spawn fails: its stats block may
	 * already have been seen, and a later worker must not continue its series. */
	p.id = g->next_id++;
	p.cpu = pick_cpu(g);
	p.block = re_stats_block_create(p.id, p.cpu);
	if (p.block == NULL) {
		snprintf(g->op.why, sizeof(g->op.why), "worker %d: %s", p.id, strerror(ENOMEM));
		return -ENOMEM;
	}
	r = re_stats_add(p.stats, p.block);
	if (r < 0) {
		re_stats_block_destroy(p.block);
		snprintf(g->op.why, sizeof(g->op.why), "worker %d: %s", p.id, strerror(-r));
		return r;
	}
	sl = &g->slots[g->nslots];
	memset(sl, 0, sizeof(*sl));
	sl->id = p.id;
	sl->cpu = p.cpu;
	sl->block = p.block;
	sl->w = re_worker_create(&p);
	if (sl->w == NULL) {
		r = -errno;
		snprintf(g->op.why, sizeof(g->op.why), "worker %d: eventfd: %s", p.id, strerror(-r));
		if (re_stats_remove(p.stats, p.block) < 0) {
			re_log_error("worker %d: stats remove failed", p.id);
		}
		return r;
	}
	g->nslots++;
	r = re_worker_start(sl->w);
	if (r < 0) {
		/* Never started: the owner reaps it like a failed worker. */
		sl->retiring = true;
		sl->reported = true;
		snprintf(g->op.why, sizeof(g->op.why), "worker %d: pthread_create: %s", p.id, strerror(-r));
		return r;
	}
	return 0;
}

/* Ask a running worker with an open listener to attach g->fprog (none when its len
 * is 0): not one that is stalled or leaving, and of those the one whose loop turned
 * last, the likeliest to answer at once. Returns 0 (acknowledgement pending), -ESRCH
 * (nobody to ask) or -errno. */
static int ask_bpf(struct re_group *g, int64_t now)
{
	struct re_slot *best = NULL;
	uint64_t best_beat = 0;
	int r;

	for (size_t i = 0; i < g->nslots; i++) {
		struct re_slot *sl = &g->slots[i];
		uint64_t beat = RE_LOAD_RELAXED(sl->block->heartbeat_ms);

		if (sl->retiring || sl->avoid || sl->id == g->away || re_worker_listener_closed(sl->w) ||
		    re_worker_state(sl->w) != RE_WORKER_RUNNING) {
			continue;
		}
		if (best == NULL || beat > best_beat) {
			best = sl;
			best_beat = beat;
		}
	}
	if (best == NULL) {
		return -ESRCH;
	}
	g->sync.acks = re_worker_bpf_acks(best->w);
	r = re_worker_set_bpf(best->w, g->fprog.len != 0 ? &g->fprog : NULL);
	if (r < 0) {
		return r;
	}
	g->sync.pending = true;
	g->sync.id = best->id;
	g->sync.deadline = now + RE_GROUP_STEP_TIMEOUT_MS;
	g->sync.late = false;
	return 0;
}

static const struct re_slot *slot_of(const struct re_group *g, int id)
{
	for (size_t i = 0; i < g->nslots; i++) {
		if (g->slots[i].id == id) {
			return &g->slots[i];
		}
	}
	return NULL;
}

int re_group_program(const struct re_group *g, struct sock_filter *prog, struct sock_fprog *fprog)
{
	uint32_t idx[RE_STEER_MAX_TARGETS], sidx[RE_STEER_MAX_TARGETS];
	int cpu[RE_STEER_MAX_TARGETS], scpu[RE_STEER_MAX_TARGETS];
	size_t n = 0, ns = 0;
	int len;

	memset(fprog, 0, sizeof(*fprog));	/* padding included: it reaches the kernel */
	if (!g->model.valid) {
		return 0;	/* indexes unknown: only the kernel's hash is safe */
	}
	if (g->model.n > RE_STEER_MAX_TARGETS) {
		return -E2BIG;
	}
	for (size_t i = 0; i < g->model.n; i++) {
		int m = g->model.m[i];
		const struct re_slot *sl = m >= 0 ? slot_of(g, m) : NULL;

		if (m == g->away || (m >= 0 && (sl == NULL || sl->retiring))) {
			continue;
		}
		if (sl != NULL && sl->avoid) {
			sidx[ns] = (uint32_t)i;
			scpu[ns++] = sl->cpu;
			continue;
		}
		idx[n] = (uint32_t)i;
		cpu[n++] = sl != NULL ? sl->cpu : -1;	/* the old instance's: unknown */
	}
	if (n == 0) {
		/* Every eligible member stalled: never steer around all of them. */
		memcpy(idx, sidx, ns * sizeof(idx[0]));
		memcpy(cpu, scpu, ns * sizeof(cpu[0]));
		n = ns;
	}
	if (n == 0 || (g->steer == RE_STEER_HASH && n == g->model.n)) {
		return 0;
	}
	len = g->steer == RE_STEER_CPU ? re_steer_build_cpu(idx, cpu, n, prog)
				       : re_steer_build(idx, n, prog);
	if (len < 0) {
		return len;
	}
	fprog->len = (unsigned short)len;
	fprog->filter = prog;
	return 1;
}

static bool same_prog(const struct sock_fprog *a, const struct sock_fprog *b)
{
	return a->len == b->len &&
	       (a->len == 0 || memcmp(a->filter, b->filter, a->len * sizeof(*a->filter)) == 0);
}

bool re_group_sync(struct re_group *g, int64_t now)
{
	struct sock_fprog want;
	int r;

	if (!g->cbpf || g->foreign) {
		return true;
	}
	if (g->sync.pending) {
		const struct re_slot *sl = slot_of(g, g->sync.id);
		bool acked = sl != NULL && re_worker_bpf_acks(sl->w) != g->sync.acks;

		if (!acked && sl != NULL && re_worker_state(sl->w) == RE_WORKER_RUNNING) {
			if (!g->sync.late && now >= g->sync.deadline) {
				g->sync.late = true;
				re_log_warn("worker %d: steering program not attached after %d ms",
					    g->sync.id, RE_GROUP_STEP_TIMEOUT_MS);
			}
			return false;
		}
		g->sync.pending = false;
		/* Not acknowledged (it exited): what the kernel holds is unknown. A failed
		 * attach is not retried until the program changes: the kernel keeps the
		 * previous one, and asking again would fail the same way. */
		g->sync.known = acked;
		if (acked && (r = re_worker_bpf_result(sl->w)) < 0) {
			re_log_warn("worker %d: steering program (%u instructions): %s", g->sync.id,
				    g->fprog.len, strerror(-r));
		}
	}
	r = re_group_program(g, g->want, &want);
	if (r < 0) {
		re_log_warn("steering program: %s: the kernel's hash is used instead", strerror(-r));
		want.len = 0;
	}
	if (g->sync.known && same_prog(&want, &g->fprog)) {
		return true;
	}
	memcpy(g->prog, g->want, want.len * sizeof(g->prog[0]));
	g->fprog.len = want.len;
	g->fprog.filter = g->prog;
	r = ask_bpf(g, now);
	if (r < 0 && r != -ESRCH) {
		re_log_warn("steering program: asking a worker: %s", strerror(-r));
	}
	return false;
}

static bool busy_check(struct re_group *g)
{
	if (g->op.kind != RE_GOP_NONE) {
		snprintf(g->op.why, sizeof(g->op.why), "busy: a resize or handover is in progress");
		return true;
	}
	memset(&g->op, 0, sizeof(g->op));
	g->op.cc.fd = -1;
	return false;
}

bool re_group_busy(const struct re_group *g)
{
	return g->op.kind != RE_GOP_NONE;
}

int re_group_grow_start(struct re_group *g, size_t want)
{
	if (busy_check(g)) {
		return -EBUSY;
	}
	if (g->uid_locked && want > re_group_live(g)) {
		snprintf(g->op.why, sizeof(g->op.why),
			 "cannot add workers after --user dropped root: Linux lets a socket join "
			 "the SO_REUSEPORT group only with its members' uid; start with more "
			 "--threads instead");
		return -EPERM;
	}
	g->op.kind = RE_GOP_GROW;
	g->op.want = want;
	g->op.from_id = g->next_id;
	g->op.step = S_SPAWN;
	return 0;
}

int re_group_shrink_start(struct re_group *g, size_t want)
{
	if (busy_check(g)) {
		return -EBUSY;
	}
	g->op.kind = RE_GOP_SHRINK;
	g->op.want = want;
	g->op.exit_after = true;
	g->op.step = S_PICK;
	return 0;
}

int re_group_retire_listener_start(struct re_group *g, int id)
{
	struct re_slot *sl;

	if (busy_check(g)) {
		return -EBUSY;
	}
	sl = re_group_slot(g, id);
	if (sl == NULL || re_worker_listener_closed(sl->w) ||
	    re_worker_state(sl->w) != RE_WORKER_RUNNING) {
		snprintf(g->op.why, sizeof(g->op.why), "no listening worker %d", id);
		return -ENOENT;
	}
	/* The new instance has steered new connections away already: this only drains
	 * and closes, and the worker keeps serving. */
	g->op.kind = RE_GOP_RETIRE_LISTENER;
	g->op.target = id;
	g->op.exit_after = false;
	g->op.step = S_CLOSE;
	return 0;
}

int re_group_takeover_start(struct re_group *g, const char *ctl_path, size_t want)
{
	struct epoll_event ev = { .events = EPOLLIN };
	int r;

	if (busy_check(g)) {
		return -EBUSY;
	}
	re_ctlclient_init(&g->op.cc, RE_GROUP_MAX_REPLY);
	g->op.kind = RE_GOP_TAKEOVER;
	g->op.ctl_path = ctl_path;
	g->op.want = want;
	g->op.from_id = g->next_id;
	r = re_ctlclient_connect(&g->op.cc, ctl_path, 1);
	if (r == 0) {
		ev.data.fd = g->op.cc.fd;
		r = epoll_ctl(g->epfd, EPOLL_CTL_ADD, g->op.cc.fd, &ev) < 0 ? -errno : 0;
		g->op.cc_watched = r == 0;
	}
	if (r == 0) {
		r = re_ctlclient_send(&g->op.cc, "listeners");
	}
	if (r < 0) {
		snprintf(g->op.why, sizeof(g->op.why), "--takeover: connect %s: %s (is an instance "
			 "serving port %u?)", ctl_path, strerror(-r), re_net_port(&g->tmpl.addr));
		re_group_abort(g);
		return r;
	}
	g->op.step = T_LISTENERS;
	g->op.deadline = re_group_now_ms() + RE_GROUP_STEP_TIMEOUT_MS;
	return 0;
}

void re_group_abort(struct re_group *g)
{
	if (g->op.cc_watched) {
		(void)epoll_ctl(g->epfd, EPOLL_CTL_DEL, g->op.cc.fd, NULL);
		g->op.cc_watched = false;
	}
	if (g->op.kind == RE_GOP_TAKEOVER) {
		re_ctlclient_finish(&g->op.cc);
	}
	free(g->op.old);
	g->op.old = NULL;
	g->away = RE_GROUP_NOBODY;
	g->op.kind = RE_GOP_NONE;
	g->op.step = S_DONE;
}

void re_group_op_end(struct re_group *g)
{
	re_group_abort(g);
}

int64_t re_group_deadline(const struct re_group *g)
{
	return g->op.kind != RE_GOP_NONE && g->op.deadline != 0 ? g->op.deadline : -1;
}

/* The operation ends: result and why are what the owner reports. */
static bool finish(struct re_group *g, int result)
{
	g->away = RE_GROUP_NOBODY;
	g->op.result = result;
	g->op.step = S_DONE;
	g->op.deadline = 0;
	if (g->op.cc_watched) {
		(void)epoll_ctl(g->epfd, EPOLL_CTL_DEL, g->op.cc.fd, NULL);
		g->op.cc_watched = false;
	}
	return true;
}

/* A grow failed: stop every worker it started so the set stays as it was; the
 * owner reaps them (they are retiring) once their threads end. */
static bool grow_failed(struct re_group *g, int result)
{
	for (size_t i = 0; i < g->nslots; i++) {
		struct re_slot *sl = &g->slots[i];
		enum re_worker_state st = re_worker_state(sl->w);

		if (sl->id < g->op.from_id) {
			continue;	/* not this operation's */
		}
		sl->retiring = true;
		sl->reported = true;
		if (st == RE_WORKER_RUNNING || st == RE_WORKER_STARTING) {
			if (re_worker_command(sl->w, RE_WORKER_CMD_STOP) < 0) {
				re_log_error("worker %d: eventfd write failed", sl->id);
			}
		}
		re_group_model_leave(&g->model, sl->id);
	}
	return finish(g, result);
}

static int parse_listeners(struct re_group *g)
{
	const char *reply = g->op.cc.reply.data ? g->op.cc.reply.data : "";
	unsigned port = 0;
	const char *p;
	size_t cap = 0;

	if (!re_ctlclient_ok(&g->op.cc) || sscanf(reply, "OK port %u order", &port) != 1 ||
	    port != re_net_port(&g->tmpl.addr)) {
		snprintf(g->op.why, sizeof(g->op.why), "--takeover: %s answered '%.200s' to 'listeners'",
			 g->op.ctl_path, reply);
		return -EPROTO;
	}
	/* The UDP groups must match as the TCP groups do: our UDP sockets join the old
	 * instance's UDP group in step with our listeners, and the one steering program
	 * (built from the TCP order) is attached to both. An old instance without UDP
	 * leaves a UDP group of ours alone, in another order than the TCP group after
	 * the old listeners leave; one with UDP would have its UDP sockets closed with
	 * nobody to steer them around. So both must agree: "udp" after the order (an
	 * instance that never sends it serves no UDP). */
	{
		const char *u = strstr(reply, " udp");
		bool old_udp = u != NULL && (u[4] == '\0' || u[4] == '\n' || u[4] == ' ');

		if (old_udp != g->tmpl.udp) {
			snprintf(g->op.why, sizeof(g->op.why), "--takeover: the running instance %s "
				 "UDP and this one %s: start it %s --udp", old_udp ? "serves" : "does not serve",
				 g->tmpl.udp ? "would" : "would not", old_udp ? "with" : "without");
			return -EPROTO;
		}
	}
	p = strstr(reply, "order") + 5;
	g->model.valid = true;
	while (*p == ' ') {
		char *end;
		long id = strtol(p + 1, &end, 10);

		if (end == p + 1) {
			break;
		}
		if (g->op.nold == cap) {
			size_t ncap = cap ? cap * 2 : 64;
			int *no = realloc(g->op.old, ncap * sizeof(*no));

			if (no == NULL) {
				snprintf(g->op.why, sizeof(g->op.why), "--takeover: %s", strerror(ENOMEM));
				return -ENOMEM;
			}
			g->op.old = no;
			cap = ncap;
		}
		g->op.old[g->op.nold++] = (int)id;
		(void)re_group_model_join(&g->model, -1 - (int)id);
		p = end;
	}
	return 0;
}

/* Read the old instance's answer: 1 complete, 0 waiting, <0 failed (why set). */
static int takeover_recv(struct re_group *g, const char *what)
{
	int r = re_ctlclient_recv(&g->op.cc);

	if (r < 0) {
		snprintf(g->op.why, sizeof(g->op.why), "--takeover: '%s': %s", what, strerror(-r));
	}
	return r;
}

/* Once our workers have joined, a takeover never fails: they serve. When the old
 * instance stops answering, stop talking to it, say what is left to do, and finish
 * (the old listeners that were not retired keep serving beside ours). */
static void takeover_give_up(struct re_group *g, const char *what)
{
	re_log_warn("takeover: %s; the old instance still serves %zu listener%s: retire it with "
		    "reuseecho-ctl retire once it answers", what, g->op.nold - g->op.iold,
		    g->op.nold - g->op.iold == 1 ? "" : "s");
	g->model.valid = false;
	g->op.abandon = true;
	g->op.deadline = 0;
	g->op.step = S_RELEASE;
}

bool re_group_step(struct re_group *g, int64_t now)
{
	for (;;) {
		struct re_slot *sl;
		int r;

		switch ((enum step)g->op.step) {
		case S_DONE:
			return g->op.kind != RE_GOP_NONE;
		case S_SPAWN:
			if (re_group_live(g) >= g->op.want) {
				if (g->op.kind == RE_GOP_TAKEOVER) {
					g->op.step = T_OLD_NEXT;
					continue;
				}
				return finish(g, 0);
			}
			r = spawn_one(g);
			if (r < 0) {
				return grow_failed(g, r);
			}
			g->op.step = S_WAIT_START;
			g->op.deadline = now + RE_GROUP_START_TIMEOUT_MS;
			continue;
		case S_WAIT_START: {
			enum re_worker_state st;

			sl = &g->slots[g->nslots - 1];
			st = re_worker_state(sl->w);
			if (st == RE_WORKER_RUNNING) {
				/* Listening: it took the next index of the group array. */
				(void)re_group_model_join(&g->model, sl->id);
				release_udp_hold(g);
				g->op.deadline = 0;
				g->op.step = S_SPAWN;
				continue;
			}
			if (st != RE_WORKER_STARTING) {
				snprintf(g->op.why, sizeof(g->op.why), "worker %d: %s: %s", sl->id,
					 re_worker_err_call(sl->w), strerror(-re_worker_err(sl->w)));
				return grow_failed(g, re_worker_err(sl->w) ? re_worker_err(sl->w) : -EIO);
			}
			if (now >= g->op.deadline) {
				snprintf(g->op.why, sizeof(g->op.why), "worker %d did not start within %d ms",
					 sl->id, RE_GROUP_START_TIMEOUT_MS);
				return grow_failed(g, -ETIMEDOUT);
			}
			return false;
		}
		case S_PICK:
			if (re_group_live(g) <= g->op.want) {
				g->op.step = S_RELEASE;
				continue;
			}
			for (size_t i = g->nslots; i-- > 0;) {
				if (!g->slots[i].retiring &&
				    re_worker_state(g->slots[i].w) == RE_WORKER_RUNNING) {
					g->op.target = g->slots[i].id;
					break;
				}
			}
			g->op.step = S_STEER;
			g->op.next = S_CLOSE;
			continue;
		case S_STEER:
			/* The program is re_group_program's: it leaves out op.target from now
			 * on, and whatever else it already left out (stalled workers). */
			g->away = g->op.target;
			g->op.step = S_WAIT_BPF;
			g->op.deadline = now + RE_GROUP_STEP_TIMEOUT_MS;
			continue;
		case S_WAIT_BPF:
			if (!re_group_sync(g, now)) {
				if (now < g->op.deadline) {
					return false;
				}
				re_log_warn("member %d: steering program not in place after %d ms: "
					    "connections queued on it are at risk", g->op.target,
					    RE_GROUP_STEP_TIMEOUT_MS);
			}
			g->op.deadline = 0;
			g->op.step = g->op.next;
			continue;
		case S_CLOSE:
			sl = re_group_slot(g, g->op.target);
			if (sl == NULL) {
				g->op.step = g->op.kind == RE_GOP_SHRINK ? S_PICK : S_DONE;
				if (g->op.step == S_DONE) {
					return finish(g, -ENOENT);
				}
				continue;
			}
			sl->retiring = g->op.exit_after || sl->retiring;
			r = re_worker_retire(sl->w, RE_GROUP_GRACE_MS, g->op.exit_after);
			if (r < 0) {
				snprintf(g->op.why, sizeof(g->op.why), "worker %d: command failed", sl->id);
				if (g->op.kind != RE_GOP_SHRINK) {
					return finish(g, r);
				}
				g->op.lost++;
				g->op.step = S_PICK;
				continue;
			}
			g->op.step = S_WAIT_CLOSED;
			g->op.deadline = now + RE_GROUP_GRACE_MS + RE_GROUP_STEP_TIMEOUT_MS;
			continue;
		case S_WAIT_CLOSED: {
			enum re_worker_state st;

			sl = re_group_slot(g, g->op.target);
			st = sl != NULL ? re_worker_state(sl->w) : RE_WORKER_EXITED;
			if (sl != NULL && !re_worker_listener_closed(sl->w) && st != RE_WORKER_FAILED &&
			    st != RE_WORKER_EXITED) {
				if (now < g->op.deadline) {
					return false;
				}
				/* Where it is in the array now is unknown. */
				g->model.valid = false;
				g->op.lost++;
				snprintf(g->op.why, sizeof(g->op.why), "worker %d: listener did not close",
					 g->op.target);
				if (g->op.kind == RE_GOP_RETIRE_LISTENER) {
					return finish(g, -ETIMEDOUT);
				}
			} else {
				re_group_model_leave(&g->model, g->op.target);
			}
			g->op.deadline = 0;
			if (g->op.kind == RE_GOP_RETIRE_LISTENER) {
				return finish(g, 0);
			}
			g->op.step = S_PICK;
			continue;
		}
		case S_RELEASE:
			/* Nobody is being emptied: every member is eligible again (the
			 * kernel's hash when nothing else shapes the program). */
			g->away = RE_GROUP_NOBODY;
			g->op.next = g->op.kind == RE_GOP_TAKEOVER && !g->op.abandon ? T_RETIRE_SEND
										  : S_DONE;
			g->op.step = S_WAIT_BPF;
			g->op.deadline = now + RE_GROUP_STEP_TIMEOUT_MS;
			continue;
		case T_LISTENERS:
			r = takeover_recv(g, "listeners");
			if (r == 0) {
				if (now < g->op.deadline) {
					return false;
				}
				snprintf(g->op.why, sizeof(g->op.why), "--takeover: no answer to 'listeners' "
					 "from %s in %d ms", g->op.ctl_path, RE_GROUP_STEP_TIMEOUT_MS);
				r = -ETIMEDOUT;
			}
			if (r > 0) {
				r = parse_listeners(g);
			}
			if (r < 0) {
				return finish(g, r);
			}
			g->op.deadline = 0;
			g->op.step = S_SPAWN;
			continue;
		case T_OLD_NEXT:
			if (g->op.iold == g->op.nold) {
				g->op.step = S_RELEASE;
				continue;
			}
			g->op.target = -1 - g->op.old[g->op.iold];
			g->op.step = S_STEER;
			g->op.next = T_RL_SEND;
			continue;
		case T_RL_SEND: {
			char cmd[64];

			snprintf(cmd, sizeof(cmd), "retire-listener %d", g->op.old[g->op.iold]);
			r = re_ctlclient_send(&g->op.cc, cmd);
			if (r < 0) {
				snprintf(g->op.why, sizeof(g->op.why), "'%s': %s", cmd, strerror(-r));
				takeover_give_up(g, g->op.why);
				continue;
			}
			g->op.step = T_RL_WAIT;
			g->op.deadline = now + RE_GROUP_GRACE_MS + 2 * RE_GROUP_STEP_TIMEOUT_MS;
			continue;
		}
		case T_RL_WAIT:
			r = takeover_recv(g, "retire-listener");
			if (r < 0) {
				takeover_give_up(g, g->op.why);
				continue;
			}
			if (r == 0) {
				if (now < g->op.deadline) {
					return false;
				}
				takeover_give_up(g, "no answer to 'retire-listener' in time");
				continue;
			}
			if (!re_ctlclient_ok(&g->op.cc)) {
				/* Its listener's place in the array is unknown now. */
				re_log_warn("takeover: old listener %d: %.200s", g->op.old[g->op.iold],
					    g->op.cc.reply.data);
				g->model.valid = false;
			} else {
				re_group_model_leave(&g->model, g->op.target);
			}
			g->op.deadline = 0;
			g->op.iold++;
			g->op.step = T_OLD_NEXT;
			continue;
		case T_RETIRE_SEND:
			r = re_ctlclient_send(&g->op.cc, "retire");
			if (r < 0) {
				re_log_warn("takeover: 'retire': %s", strerror(-r));
				return finish(g, 0);
			}
			g->op.step = T_RETIRE_WAIT;
			g->op.deadline = now + RE_GROUP_STEP_TIMEOUT_MS;
			continue;
		case T_RETIRE_WAIT:
			r = takeover_recv(g, "retire");
			if (r == 0 && now < g->op.deadline) {
				return false;
			}
			if (r <= 0 || !re_ctlclient_ok(&g->op.cc)) {
				re_log_warn("takeover: 'retire': %.200s",
					    r > 0 ? g->op.cc.reply.data : r < 0 ? g->op.why : "no answer in time");
			}
			return finish(g, 0);
		}
	}
}

/* supervisor: start-up, signals, the worker set (spawn, pin, retire, reap), runtime
 * settings and graceful drain. Runs on the main thread and is the only RCU updater:
 * it publishes the runtime settings and the stats registry, and nobody else does.
 * The control thread reaches it through the request channel (chan.h).
 */
#include "supervisor.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <grp.h>
#include <pwd.h>
#include <time.h>
#include <unistd.h>

#include <urcu/urcu-qsbr.h>

#include "chan.h"
#include "control.h"
#include "cpu.h"
#include "group.h"
#include "kfeatures.h"
#include "log.h"
#include "net.h"
#include "notify.h"
#include "rcu.h"
#include "re_version.h"
#include "stats.h"
#include "udp.h"
#include "worker.h"

#define RE_SUP_GRACE_MS 5000	/* beyond --drain-timeout before giving up on workers */
#define RE_START_TIMEOUT_MS 10000
#define RE_UDP_PORT_TRIES 32	/* --port 0 --udp: ports tried that UDP sockets hold */

/* Where start-up is: the workers first (a grow or a takeover), then the control
 * thread, then READY. */
enum phase {
	PHASE_WORKERS,
	PHASE_CONTROL,
	PHASE_SERVING,
};

/* The runtime settings as published: freed by call_rcu after a `set`. */
struct runtime_box {
	struct re_runtime rt;	/* first: s->runtime points here */
	struct rcu_head rcu;
};

struct supervisor {
	const struct re_config *cfg;
	struct re_addr addr;
	char address[80];
	char metrics_address[80];	/* --metrics-listen as bound, "" when off */
	struct re_runtime *runtime;	/* RCU-published (the rt of a struct runtime_box) */
	struct re_stats stats;
	struct re_group g;		/* the workers, their group and its operations */
	struct re_buf_budget *budget;	/* --max-buffered accounting, shared by workers */
	struct re_stats_counters drain_base;	/* process totals when the drain began */
	int epfd;
	int sigfd;
	int notify_fd;			/* workers and control ring it on state changes */
	int ctl_fd;			/* the control thread's doorbell */
	int reserve_fd;
	struct re_chan chan;
	bool chan_ready;
	struct re_control *control;
	char control_path[108];
	struct timespec started;
	enum phase phase;
	int64_t control_deadline;	/* PHASE_CONTROL: give up on the control thread */
	struct re_request *held;	/* the request the running group operation answers */
	size_t held_from;		/* live workers when it started */
	bool draining;
	int64_t give_up;		/* draining: exit at once after this (ms) */
	bool retiring_all;		/* `retire`: exit once every worker has left */
	bool done;			/* start-up failed: leave the loop */
	int status;
	int migrate_req;		/* net.ipv4.tcp_migrate_req, -1 = absent */
	struct re_features features;
};

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Raise the soft fd limit to the hard limit: every connection is an fd. */
static void raise_nofile(const struct re_config *cfg)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0) {
		re_log_warn("getrlimit RLIMIT_NOFILE: %s", strerror(errno));
		return;
	}
	if (rl.rlim_cur < rl.rlim_max) {
		rlim_t old = rl.rlim_cur;

		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
			re_log_warn("setrlimit RLIMIT_NOFILE %ju: %s", (uintmax_t)rl.rlim_max,
				    strerror(errno));
			return;
		}
		re_log_debug("RLIMIT_NOFILE raised from %ju to %ju", (uintmax_t)old,
			     (uintmax_t)rl.rlim_cur);
	}
	if (cfg->rt.max_conns != 0 && rl.rlim_cur != RLIM_INFINITY &&
	    rl.rlim_cur < cfg->rt.max_conns + 64) {
		re_log_warn("RLIMIT_NOFILE is %ju (the hard limit): fewer than --max-conns %" PRIu64
			    " connections can be open; accept will fail with EMFILE first",
			    (uintmax_t)rl.rlim_cur, cfg->rt.max_conns);
	}
}

/* "s" unless n is 1: "1 worker", "2 workers". */
static const char *plural(size_t n)
{
	return n == 1 ? "" : "s";
}

/* Decide which CPUs workers are pinned to: --cpus must be a subset of the allowed
 * set. Returns 0, -EINVAL (logged) for a --cpus list this process cannot use (a
 * usage error: exit 2), or another -errno (logged). */
static int resolve_cpus(struct supervisor *s)
{
	struct re_cpuset allowed;
	char list[256], alist[256];
	int r = re_cpu_allowed(&allowed);

	if (r < 0) {
		re_log_error("sched_getaffinity: %s", strerror(-r));
		return r;
	}
	if (!s->cfg->cpus_set) {
		s->g.cpus = allowed;
		return 0;
	}
	for (int c = 0; c < CPU_SETSIZE; c++) {
		if (CPU_ISSET((size_t)c, &s->cfg->cpus.set) && !CPU_ISSET((size_t)c, &allowed.set)) {
			re_cpu_format_list(&s->cfg->cpus, list, sizeof(list));
			re_cpu_format_list(&allowed, alist, sizeof(alist));
			re_log_error("--cpus %s: CPU %d is not one this process may use "
				     "(allowed CPUs: %s)", list, c, alist);
			return -EINVAL;
		}
	}
	s->g.cpus = s->cfg->cpus;
	return 0;
}

/* More workers than CPUs buys nothing: say once what it costs. */
static void warn_oversubscribed(const struct supervisor *s, size_t workers, const char *how)
{
	size_t ncpu = re_cpu_count(&s->g.cpus);

	if (workers <= ncpu) {
		return;
	}
	re_log_warn("%s %zu is more than the %zu CPU%s workers may use: workers sharing a CPU "
		    "take turns on it, which adds context switches and queueing delay and no "
		    "throughput; %zu or fewer avoids it", how, workers, ncpu, plural(ncpu), ncpu);
}

static int watch(struct supervisor *s, int fd)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = fd };

	if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		re_log_error("epoll_ctl: %s", strerror(errno));
		return -1;
	}
	return 0;
}

static int setup_signals(struct supervisor *s)
{
	sigset_t all, handled;

	/* Block everything before any thread exists: workers inherit the mask, so
	 * signals reach the process only through this signalfd. */
	sigfillset(&all);
	if (pthread_sigmask(SIG_BLOCK, &all, NULL) != 0) {
		re_log_error("pthread_sigmask: %s", strerror(errno));
		return -1;
	}
	/* Belt and braces: sends use MSG_NOSIGNAL, but no SIGPIPE may ever kill us. */
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&handled);
	sigaddset(&handled, SIGTERM);
	sigaddset(&handled, SIGINT);
	sigaddset(&handled, SIGHUP);
	sigaddset(&handled, SIGQUIT);
	s->sigfd = signalfd(-1, &handled, SFD_NONBLOCK | SFD_CLOEXEC);
	if (s->sigfd < 0) {
		re_log_error("signalfd: %s", strerror(errno));
		return -1;
	}
	s->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (s->epfd < 0) {
		re_log_error("epoll_create1: %s", strerror(errno));
		return -1;
	}
	s->notify_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	s->ctl_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (s->notify_fd < 0 || s->ctl_fd < 0) {
		re_log_error("eventfd: %s", strerror(errno));
		return -1;
	}
	if (re_chan_init(&s->chan, s->notify_fd, s->ctl_fd) < 0) {
		re_log_error("pthread_mutex_init: failed");
		return -1;
	}
	s->chan_ready = true;
	return watch(s, s->sigfd) < 0 || watch(s, s->notify_fd) < 0 ? -1 : 0;
}

static int reserve_port(struct supervisor *s)
{
	int held[RE_UDP_PORT_TRIES];
	size_t nheld = 0;
	char where[160];
	int r = re_net_parse_addr(s->cfg->bind, s->cfg->port, &s->addr);

	if (r < 0) {
		re_log_error("--bind %s: not a usable address", s->cfg->bind);
		return r;
	}
	if (s->cfg->takeover) {
		/* Deliberately joining the live instance's group (see takeover()). */
		re_net_format_addr(&s->addr, s->address, sizeof(s->address));
		return 0;
	}
	/* Bound but not listening, without SO_REUSEPORT: fails with EADDRINUSE when a
	 * live instance serves the port (joining its SO_REUSEPORT group would silently
	 * take half its connections), and picks the one port for --port 0. With --udp
	 * the port must be free for UDP as well (re_net_reserve_udp); for --port 0, a
	 * port some UDP socket holds is passed over for another, the refused TCP
	 * reservations kept open meanwhile so that the kernel cannot offer them again. */
	for (;;) {
		r = re_net_reserve(&s->addr);
		if (r < 0) {
			re_net_format_addr(&s->addr, where, sizeof(where));
			re_log_error("bind %s: %s", where, strerror(-r));
			break;
		}
		s->reserve_fd = r;
		if (!s->cfg->udp) {
			break;
		}
		r = re_net_reserve_udp(&s->addr);
		if (r >= 0) {
			s->g.udp_hold_fd = r;
			break;
		}
		if (r != -EADDRINUSE || s->cfg->port != 0 || nheld == RE_UDP_PORT_TRIES) {
			re_net_format_addr(&s->addr, where, sizeof(where));
			re_log_error("bind udp %s: %s%s", where, strerror(-r),
				     r == -EADDRINUSE ? " (a UDP socket of another program or "
							"instance holds the port)" : "");
			break;
		}
		held[nheld++] = s->reserve_fd;
		s->reserve_fd = -1;
		re_net_set_port(&s->addr, 0);
	}
	while (nheld > 0) {
		(void)close(held[--nheld]);
	}
	if (r < 0) {
		return r;
	}
	re_net_format_addr(&s->addr, s->address, sizeof(s->address));
	return 0;
}

static void read_doorbell(int fd)
{
	uint64_t v;

	(void)!read(fd, &v, sizeof(v));
}

static void command_slot(struct re_slot *sl, unsigned cmd)
{
	enum re_worker_state st = re_worker_state(sl->w);

	if (st == RE_WORKER_RUNNING || st == RE_WORKER_STARTING) {
		int r = re_worker_command(sl->w, cmd);

		if (r < 0) {
			re_log_error("worker %d: eventfd write: %s", sl->id, strerror(-r));
		}
	}
}

static void command_all(struct supervisor *s, unsigned cmd)
{
	for (size_t i = 0; i < s->g.nslots; i++) {
		command_slot(&s->g.slots[i], cmd);
	}
}

/* Answer the held request (the one the group operation was working for). */
static void answer_held(struct supervisor *s, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void answer_held(struct supervisor *s, int status, const char *fmt, ...)
{
	struct re_request *r = s->held;
	va_list ap;

	if (r == NULL) {
		return;
	}
	r->status = status;
	va_start(ap, fmt);
	vsnprintf(r->reply, sizeof(r->reply), fmt, ap);
	va_end(ap);
	s->held = NULL;
	re_chan_complete(&s->chan, r);
}

static void begin_drain(struct supervisor *s, const char *why)
{
	if (s->draining) {
		return;
	}
	re_log_info("%s: draining (up to %u ms); a second signal exits at once", why,
		    s->runtime->drain_timeout_ms);
	re_notify("STOPPING=1\nSTATUS=draining (%s)", why);
	/* The supervisor is the registry's only updater: its pointer stays valid. */
	re_stats_total(s->stats.reg, &s->drain_base);
	s->draining = true;
	s->give_up = now_ms() + s->runtime->drain_timeout_ms + RE_SUP_GRACE_MS;
	if (re_group_busy(&s->g)) {
		/* Whatever the operation left half done, the drain ends it: every worker
		 * stops accepting and exits. */
		re_group_abort(&s->g);
		answer_held(s, -ESHUTDOWN, "shutting down");
	}
	command_all(s, RE_WORKER_CMD_DRAIN);
}

/* Join a worker that has left its loop, fold its counts into `retired` in the same
 * registry publication that stops listing it, and drop its slot. */
static void reap_slot(struct supervisor *s, size_t i)
{
	struct re_slot *sl = &s->g.slots[i];
	int r;

	re_worker_destroy(sl->w);
	r = re_stats_remove(&s->stats, sl->block);
	if (r < 0) {
		re_log_error("worker %d: stats remove: %s", sl->id, strerror(-r));
	}
	memmove(&s->g.slots[i], &s->g.slots[i + 1], (s->g.nslots - i - 1) * sizeof(*sl));
	s->g.nslots--;
}

/* Reap retired and failed-to-start workers whose threads ended; log failures. True
 * when, in a shutdown, every worker has left its loop. */
static bool check_workers(struct supervisor *s)
{
	size_t done = 0;
	/* Workers a running grow or takeover started are its to report (ids ascend;
	 * reaping moves slots, so not their index). */
	int mine = re_group_busy(&s->g) && (s->g.op.kind == RE_GOP_GROW ||
					    s->g.op.kind == RE_GOP_TAKEOVER) ? s->g.op.from_id : INT_MAX;

	for (size_t i = 0; i < s->g.nslots;) {
		struct re_slot *sl = &s->g.slots[i];
		enum re_worker_state st = re_worker_state(sl->w);
		bool ended = st == RE_WORKER_EXITED || st == RE_WORKER_FAILED;

		if (st == RE_WORKER_FAILED && !sl->reported && sl->id < mine) {
			re_log_error("worker %d: %s: %s", sl->id, re_worker_err_call(sl->w),
				     strerror(-re_worker_err(sl->w)));
			sl->reported = true;
			s->status = 1;
			begin_drain(s, "worker failure");
		}
		if (ended && sl->retiring && !s->draining) {
			if (st == RE_WORKER_EXITED) {
				re_log_info("worker %d retired", sl->id);
			}
			reap_slot(s, i);
			continue;
		}
		done += ended;
		i++;
	}
	if (s->retiring_all && s->g.nslots == 0) {
		return true;
	}
	return s->draining && done == s->g.nslots;
}

/* Stall avoidance for one worker: steer new connections around it while its loop
 * has not turned for --stall-steer, readmit it when it turns. The program itself is
 * re_group_program's (re_group_sync attaches it), which never steers around every
 * member. The episode and the steered time are counted in its stats block. */
static void steer_around(struct supervisor *s, struct re_slot *sl, bool avoid, int64_t now,
			 int64_t age)
{
	int64_t steered;

	if (avoid == sl->avoid) {
		if (avoid) {
			RE_STORE_RELAXED(sl->block->c.stall_steered_ms,
					 sl->steered_base + (uint64_t)(now - sl->avoid_since));
		}
		return;
	}
	sl->avoid = avoid;
	if (avoid) {
		sl->avoid_since = now;
		RE_STAT_ADD(sl->block, stall_steer_episodes, 1);
		RE_STORE_RELAXED(sl->block->c.stall_steered, 1);
		if (s->g.foreign) {
			re_log_warn("worker %d: no loop turn for %" PRId64 " ms; not steered "
				    "around: the instance taking over owns the steering", sl->id, age);
		} else {
			re_log_warn("worker %d: no loop turn for %" PRId64 " ms: new connections "
				    "go to the other workers until it turns again", sl->id, age);
		}
		return;
	}
	/* When it turned again (its heartbeat, now - age) the episode ended there;
	 * otherwise stall steering was turned off, or the worker is leaving: now. */
	steered = now - age > sl->avoid_since ? now - age - sl->avoid_since : now - sl->avoid_since;
	sl->steered_base += (uint64_t)steered;
	RE_STORE_RELAXED(sl->block->c.stall_steered_ms, sl->steered_base);
	RE_STORE_RELAXED(sl->block->c.stall_steered, 0);
	re_log_info("worker %d: readmitted after %" PRId64 " ms steered around (%s)", sl->id,
		    steered, now - age > sl->avoid_since ? "its loop turned" : "stall steering ended");
}

/* Watchdog: a running worker's loop turns at least every RE_SAMPLE_MS; log once when
 * one has not turned for RE_STALL_MS and once when it recovers. (/healthz and the
 * worker_stalled metric read the same heartbeat.) Past --stall-steer it is steered
 * around (steer_around). */
static void check_stalls(struct supervisor *s)
{
	int64_t now = now_ms();
	uint32_t steer_ms = s->runtime->stall_steer_ms;

	for (size_t i = 0; i < s->g.nslots; i++) {
		struct re_slot *sl = &s->g.slots[i];
		uint64_t beat = RE_LOAD_RELAXED(sl->block->heartbeat_ms);
		bool running = re_worker_state(sl->w) == RE_WORKER_RUNNING && beat != 0;
		int64_t age = now - (int64_t)beat;
		bool stalled = running && age > RE_STALL_MS;

		if (stalled && !sl->stalled) {
			/* A warning, not an error: an overloaded host that does not schedule
			 * the thread looks the same from here as a hung loop. */
			re_log_warn("worker %d: event loop has not turned for %" PRId64
				    " ms (stalled); its queued connections wait", sl->id, now - (int64_t)beat);
		} else if (!stalled && sl->stalled) {
			re_log_warn("worker %d: event loop turns again", sl->id);
		}
		sl->stalled = stalled;
		/* A retiring worker is out of the program anyway; one that stalled
		 * stays in its episode until it turns, as any other. */
		steer_around(s, sl, running && steer_ms != 0 && age > steer_ms, now, age);
	}
}

/* When the watchdog must look next (ms): when the first running worker's heartbeat
 * would pass --stall-steer or RE_STALL_MS. A loop that turns keeps moving this, so
 * the supervisor wakes about as often as the workers' idle period, and notices a
 * stall within a few milliseconds of the threshold. */
static int64_t next_stall_check(const struct supervisor *s, int64_t now)
{
	uint32_t steer_ms = s->runtime->stall_steer_ms;
	int64_t until = now + RE_STALL_MS / 2;

	for (size_t i = 0; i < s->g.nslots; i++) {
		const struct re_slot *sl = &s->g.slots[i];
		int64_t beat = (int64_t)RE_LOAD_RELAXED(sl->block->heartbeat_ms);
		int64_t t;

		if (beat == 0 || re_worker_state(sl->w) != RE_WORKER_RUNNING) {
			continue;
		}
		t = beat + RE_STALL_MS + 1;
		if (steer_ms != 0 && !sl->avoid) {
			t = beat + steer_ms + 1;
		}
		if (sl->stalled || sl->avoid) {
			/* Watching for the recovery: the steered time shows how long. */
			t = now + RE_STALL_MS / 4;
		}
		until = t > now && t < until ? t : until;
	}
	return until;
}

/* Test builds: REUSEECHO_DEBUG_FAIL_ALLOC=set makes every `set` meet an allocation
 * failure, so its answer can be tested. */
static bool re_debug_fail_alloc(void)
{
#ifdef RE_DEBUG_HOOKS
	const char *v = getenv("REUSEECHO_DEBUG_FAIL_ALLOC");

	return v != NULL && strcmp(v, "set") == 0;
#else
	return false;
#endif
}

static void runtime_free_rcu(struct rcu_head *head)
{
	re_rcu_callback_enter(head);
	free(re_container_of(head, struct runtime_box, rcu));
}

static struct re_runtime *runtime_alloc(const struct re_runtime *val)
{
	struct runtime_box *b = malloc(sizeof(*b));

	if (b == NULL) {
		return NULL;
	}
	b->rt = *val;
	return &b->rt;
}

/* Publish new settings; the old ones are freed after a grace period by call_rcu
 * (never waits: a stalled worker holds up the free, not the supervisor).
 * Returns 0 or -ENOMEM (nothing changed). */
static int publish_runtime(struct supervisor *s, const struct re_runtime *next_val)
{
	struct re_runtime *next = re_debug_fail_alloc() ? NULL : runtime_alloc(next_val);
	struct runtime_box *old = re_container_of(s->runtime, struct runtime_box, rt);

	if (next == NULL) {
		return -ENOMEM;
	}
	re_rcu_assign_pointer(s->runtime, next);
	re_rcu_call(&old->rcu, runtime_free_rcu);
	return 0;
}

/* The group operation behind a held request finished: answer it. */
static void op_finished(struct supervisor *s)
{
	struct re_group *g = &s->g;
	size_t live = re_group_live(g);

	switch (g->op.kind) {
	case RE_GOP_GROW:
		if (g->op.result < 0) {
			re_log_error("threads %zu: %s", g->op.want, g->op.why);
			answer_held(s, g->op.result, "%.250s", g->op.why);
			break;
		}
		re_log_info("threads: %zu -> %zu worker%s", s->held_from, live, plural(live));
		re_notify("STATUS=serving %s with %zu worker%s", s->address, live, plural(live));
		answer_held(s, 0, "threads %zu", live);
		break;
	case RE_GOP_SHRINK:
		re_log_info("threads: retired %zu listener%s by %s%s", s->held_from - live,
			    plural(s->held_from - live), re_group_mechanism(g, s->migrate_req),
			    g->op.lost ? " (some did not close in time)" : "");
		re_log_info("threads: %zu -> %zu worker%s", s->held_from, live, plural(live));
		re_notify("STATUS=serving %s with %zu worker%s", s->address, live, plural(live));
		answer_held(s, 0, "threads %zu", live);
		break;
	case RE_GOP_RETIRE_LISTENER:
		if (g->op.result < 0) {
			answer_held(s, g->op.result, "%.250s", g->op.why);
		} else {
			answer_held(s, 0, "listener %d closed", g->op.target);
		}
		break;
	case RE_GOP_TAKEOVER:
	case RE_GOP_NONE:
		break;
	}
	re_group_op_end(g);
}

static void do_threads(struct supervisor *s, struct re_request *r)
{
	size_t want = (size_t)r->cmd.value;
	size_t live = re_group_live(&s->g);
	int rc;

	if (s->draining || s->retiring_all) {
		r->status = -ESHUTDOWN;
		snprintf(r->reply, sizeof(r->reply), "shutting down");
		re_chan_complete(&s->chan, r);
		return;
	}
	if (want == live && !re_group_busy(&s->g)) {
		snprintf(r->reply, sizeof(r->reply), "threads %zu", want);
		re_chan_complete(&s->chan, r);
		return;
	}
	if (want > live) {
		warn_oversubscribed(s, want, "threads");
		rc = re_group_grow_start(&s->g, want);
	} else {
		/* Retire the newest workers first, one at a time: steer new connections
		 * away from its listener, let it drain its accept queue, close it. The
		 * worker then serves its connections until they close or the drain
		 * timeout passes, exits, and is reaped (check_workers). */
		rc = re_group_shrink_start(&s->g, want);
	}
	if (rc < 0) {
		r->status = rc;
		snprintf(r->reply, sizeof(r->reply), "%.250s", s->g.op.why);
		if (rc != -EBUSY) {
			re_log_error("threads %zu: %s", want, s->g.op.why);
		}
		re_chan_complete(&s->chan, r);
		return;
	}
	/* Answered when the operation finishes (op_finished). */
	s->held = r;
	s->held_from = live;
}

static void do_set(struct supervisor *s, struct re_request *r)
{
	struct re_runtime next = *s->runtime;
	const char *key = re_ctlproto_key_name(r->cmd.key);
	bool impair = r->cmd.key >= RE_KEY_IMPAIR;
	enum re_impair k = impair ? (enum re_impair)(r->cmd.key - RE_KEY_IMPAIR) : RE_IMP_N;

	switch (impair ? RE_KEY_IMPAIR : (enum re_ctl_key)r->cmd.key) {
	case RE_KEY_MAX_CONNS:
		next.max_conns = r->cmd.value;
		break;
	case RE_KEY_IDLE_TIMEOUT:
		next.idle_timeout_ms = (uint32_t)r->cmd.value;
		break;
	case RE_KEY_CONN_BUFFER:
		next.conn_buffer = (uint32_t)r->cmd.value;
		break;
	case RE_KEY_DRAIN_TIMEOUT:
		next.drain_timeout_ms = (uint32_t)r->cmd.value;
		break;
	case RE_KEY_MAX_BUFFERED:
		/* Lowering it below what is held frees nothing at once: buffers drain as
		 * clients read, and none grows until the total is under the new limit. */
		next.max_buffered = r->cmd.value;
		break;
	case RE_KEY_UDP_RATE:
		/* Without --udp it is kept and shown, and changes nothing. */
		next.udp_rate = (uint32_t)r->cmd.value;
		break;
	case RE_KEY_STALL_STEER:
		next.stall_steer_ms = (uint32_t)r->cmd.value;
		break;
	case RE_KEY_IMPAIR:
		re_impair_set(&next, k, r->cmd.value);
		break;
	}
	if (publish_runtime(s, &next) < 0) {
		r->status = -ENOMEM;
		snprintf(r->reply, sizeof(r->reply), "set %s: out of memory, nothing changed", key);
		re_log_error("set %s: %s", key, strerror(ENOMEM));
		return;
	}
	/* In force at the workers' next turn: make that now, not at an idle worker's
	 * next timer (a test that sets `accept off` and connects at once must not find
	 * it accepting). */
	command_all(s, RE_WORKER_CMD_SETTINGS);
	if (impair) {
		char val[32], all[160];

		/* The log also names every impairment now in force, so that nobody reads
		 * figures from an impaired instance without a trace of it in the log. */
		re_impair_format(&next, k, val, sizeof(val));
		re_impair_describe(&next, all, sizeof(all));
		snprintf(r->reply, sizeof(r->reply), "%s %s", key, val);
		re_log_info("set %s (impairments: %s)", r->reply, all);
		return;
	}
	snprintf(r->reply, sizeof(r->reply), "%s %" PRIu64 "%s", key, r->cmd.value,
		 (r->cmd.key == RE_KEY_IDLE_TIMEOUT || r->cmd.key == RE_KEY_DRAIN_TIMEOUT ||
		  r->cmd.key == RE_KEY_STALL_STEER) ? " ms" : "");
	/* The log says what the reply says, unit included ("set idle-timeout 250 ms"). */
	re_log_info("set %s", r->reply);
}

/* `listeners`: the group array as we know it, sized to need. */
static void do_listeners(struct supervisor *s, struct re_request *r)
{
	size_t used;

	if (!s->g.model.valid) {
		r->status = -EIO;
		snprintf(r->reply, sizeof(r->reply), "listener order unknown");
		return;
	}
	/* This is how a takeover begins: the new instance joins our group with this
	 * order and steers it from now on. A program of ours (stall avoidance, --steer
	 * cpu) would index a group we no longer know: attach none from here on. */
	if (!s->g.foreign) {
		s->g.foreign = true;
		re_log_info("listeners: a takeover begins; the steering program is the new "
			    "instance's from now on");
	}
	used = (size_t)snprintf(r->reply, sizeof(r->reply), "port %u order", re_net_port(&s->addr));
	for (size_t i = 0; i < s->g.model.n && used < sizeof(r->reply); i++) {
		used += (size_t)snprintf(r->reply + used, sizeof(r->reply) - used, " %d",
					 s->g.model.m[i]);
	}
	/* After the order, where an instance that does not know it stops reading. */
	if (s->cfg->udp && used < sizeof(r->reply)) {
		used += (size_t)snprintf(r->reply + used, sizeof(r->reply) - used, " udp");
	}
	if (used >= sizeof(r->reply)) {
		r->status = -E2BIG;
		snprintf(r->reply, sizeof(r->reply), "too many listeners to list");
	}
}

static void do_retire_listener(struct supervisor *s, struct re_request *r)
{
	int rc = re_group_retire_listener_start(&s->g, r->cmd.worker);

	if (rc < 0) {
		r->status = rc;
		snprintf(r->reply, sizeof(r->reply), "%.250s", s->g.op.why);
		re_chan_complete(&s->chan, r);
		return;
	}
	s->held = r;
}

static void do_retire(struct supervisor *s, struct re_request *r)
{
	if (re_group_busy(&s->g)) {
		r->status = -EBUSY;
		snprintf(r->reply, sizeof(r->reply), "busy: a resize or handover is in progress");
		return;
	}
	/* Handover end: every worker closes what listener it still has, serves out its
	 * connections, exits; then the process exits 0. */
	s->retiring_all = true;
	for (size_t i = 0; i < s->g.nslots; i++) {
		s->g.slots[i].retiring = true;
		if (re_worker_retire(s->g.slots[i].w, 0, true) < 0) {
			command_slot(&s->g.slots[i], RE_WORKER_CMD_DRAIN);
		}
	}
	re_log_info("retire: serving established connections, then exiting");
	re_notify("STOPPING=1\nSTATUS=retiring after a takeover");
	snprintf(r->reply, sizeof(r->reply), "retiring %zu worker%s", s->g.nslots,
		 plural(s->g.nslots));
}

static void handle_requests(struct supervisor *s)
{
	struct re_request *r = re_chan_take_pending(&s->chan);

	while (r != NULL) {
		struct re_request *next = r->next;

		r->status = 0;
		switch (r->cmd.verb) {
		case RE_CTL_SET:
			do_set(s, r);
			break;
		case RE_CTL_THREADS:
			do_threads(s, r);
			r = NULL;	/* answered now or when the resize ends */
			break;
		case RE_CTL_SHUTDOWN:
			snprintf(r->reply, sizeof(r->reply), "draining");
			begin_drain(s, "shutdown command");
			break;
		case RE_CTL_LISTENERS:
			do_listeners(s, r);
			break;
		case RE_CTL_RETIRE_LISTENER:
			do_retire_listener(s, r);
			r = NULL;
			break;
		case RE_CTL_RETIRE:
			do_retire(s, r);
			break;
		case RE_CTL_DEBUG_STALL: {
			struct re_slot *sl = re_group_slot(&s->g, r->cmd.worker);

			if (sl == NULL || re_worker_stall(sl->w, (unsigned)r->cmd.value) < 0) {
				r->status = -ENOENT;
				snprintf(r->reply, sizeof(r->reply), "no worker %d", r->cmd.worker);
			} else {
				snprintf(r->reply, sizeof(r->reply), "stalling worker %d for %" PRIu64 " ms",
					 r->cmd.worker, r->cmd.value);
			}
			break;
		}
		default:
			r->status = -EINVAL;
			snprintf(r->reply, sizeof(r->reply), "not a supervisor request");
			break;
		}
		if (r != NULL) {
			re_chan_complete(&s->chan, r);
		}
		r = next;
	}
}

static void exit_at_once(struct supervisor *s)
{
	for (size_t i = 0; i < s->g.nslots; i++) {
		re_worker_abandon(s->g.slots[i].w);
	}
	/* The control thread's teardown will not run: remove our socket's path here. */
	re_control_unlink_now(s->control);
	fflush(NULL);
	_exit(1);
}

static void handle_signal(struct supervisor *s)
{
	struct signalfd_siginfo si;

	while (read(s->sigfd, &si, sizeof(si)) == sizeof(si)) {
		int sig = (int)si.ssi_signo;

		if (sig == SIGHUP) {
			re_log_info("SIGHUP ignored: settings change at run time with `set`, no reload");
			continue;
		}
		if (s->draining || sig == SIGQUIT) {
			re_log_warn("%s: exiting at once, open connections are reset", strsignal(sig));
			exit_at_once(s);
		}
		begin_drain(s, strsignal(sig));
	}
}

/* Create and start the control thread; it reports RUNNING or FAILED through the
 * doorbell (PHASE_CONTROL). Returns 0, 1 when there is none to start, or -1 with
 * why set. */
static int start_control(struct supervisor *s, char *why, size_t whylen)
{
	struct re_control_params p = {
		.mode = (mode_t)s->cfg->control_mode,
		.client_timeout_ms = s->cfg->control_timeout_ms,
		.stats = &s->stats,
		.runtime = &s->runtime,
		.chan = &s->chan,
		.notify_fd = s->notify_fd,
		.version = RE_VERSION,
		.started = s->started,
		.port = re_net_port(&s->addr),
		.backlog = s->cfg->backlog,
		.udp = s->cfg->udp,
		.udp_rcvbuf = s->cfg->udp_rcvbuf,
		.service = re_chargen_service_name(s->cfg->service),
		.steer = s->cfg->steer_cpu ? "cpu" : "hash",
#ifdef RE_DEBUG_HOOKS
		.debug_hooks = true,
#endif
	};
	int r;

	snprintf(p.address, sizeof(p.address), "%s", s->address);
	p.features = s->features;
	p.replace_live = s->cfg->takeover;
	if (s->control_path[0] != '\0') {
		p.path = s->control_path;
	}
	if (s->cfg->metrics) {
		if (re_net_parse_addr(s->cfg->metrics_host, s->cfg->metrics_port, &p.metrics_addr) < 0) {
			snprintf(why, whylen, "--metrics-listen %s: not a usable address",
				 s->cfg->metrics_host);
			return -1;
		}
		p.metrics = true;
		re_net_format_addr(&p.metrics_addr, s->metrics_address, sizeof(s->metrics_address));
	}
	if (p.path == NULL && !p.metrics) {
		return 1;
	}
	s->control = re_control_create(&p);
	if (s->control == NULL) {
		snprintf(why, whylen, "control thread: %s", strerror(errno));
		return -1;
	}
	r = re_control_start(s->control);
	if (r < 0) {
		snprintf(why, whylen, "control thread: pthread_create: %s", strerror(-r));
		return -1;
	}
	return 0;
}

/* After --user: removing the control socket at exit needs write permission on its
 * directory, which root had and the user may not (/run, for one). Say so once now,
 * rather than leave the file behind silently. */
static void warn_socket_stays(const struct supervisor *s)
{
	char dir[sizeof(s->control_path)];
	char *slash;

	if (s->control_path[0] == '\0') {
		return;
	}
	snprintf(dir, sizeof(dir), "%s", s->control_path);
	slash = strrchr(dir, '/');
	if (slash == NULL) {
		snprintf(dir, sizeof(dir), ".");
	} else if (slash == dir) {
		dir[1] = '\0';
	} else {
		*slash = '\0';
	}
	if (access(dir, W_OK) < 0) {
		re_log_warn("control socket %s will be left behind at exit: %s is not writable by "
			    "--user %s (%s); use a directory the user owns (systemd: RuntimeDirectory=)",
			    s->control_path, dir, s->cfg->user, strerror(errno));
	}
}

/* --user: give up root once every socket is bound. Order matters: supplementary
 * groups, then the group, then the user (after setuid there is no right left to
 * change groups). Then prove it: setuid(0) must now fail. The control socket is
 * handed to the user first so that the user, too, can connect. */
static int drop_privileges(struct supervisor *s)
{
	struct passwd pw, *res = NULL;
	char buf[4096];
	int r = getpwnam_r(s->cfg->user, &pw, buf, sizeof(buf), &res);

	if (r != 0 || res == NULL) {
		re_log_error("--user %s: %s", s->cfg->user, r ? strerror(r) : "no such user");
		return -1;
	}
	if (s->control_path[0] != '\0' && chown(s->control_path, pw.pw_uid, pw.pw_gid) < 0) {
		re_log_warn("chown %s: %s", s->control_path, strerror(errno));
	}
	if (setgroups(1, &pw.pw_gid) < 0) {
		re_log_error("setgroups %u: %s", (unsigned)pw.pw_gid, strerror(errno));
		return -1;
	}
	if (setgid(pw.pw_gid) < 0) {
		re_log_error("setgid %u: %s", (unsigned)pw.pw_gid, strerror(errno));
		return -1;
	}
	if (setuid(pw.pw_uid) < 0) {
		re_log_error("setuid %u: %s", (unsigned)pw.pw_uid, strerror(errno));
		return -1;
	}
	if (pw.pw_uid != 0 && (setuid(0) == 0 || seteuid(0) == 0)) {
		re_log_error("--user %s: root could be regained after setuid; refusing to run",
			     s->cfg->user);
		return -1;
	}
	/* A socket joins a SO_REUSEPORT group only with its members' uid (root's). */
	s->g.uid_locked = pw.pw_uid != 0;
	re_log_info("running as %s (uid %u, gid %u)", s->cfg->user, (unsigned)pw.pw_uid,
		    (unsigned)pw.pw_gid);
	warn_socket_stays(s);
	return 0;
}

static void print_ready(const struct supervisor *s)
{
	size_t n = re_group_live(&s->g);
	const char *w = plural(n);

	printf("reuseecho: listening on %s with %zu worker%s\n", s->address, n, w);
	fflush(stdout);
	re_notify("READY=1\nSTATUS=serving %s with %zu worker%s, control %s", s->address,
		  n, w, s->control_path[0] ? s->control_path : "none");
	re_log_info("%zu worker%s on %s (pinned: %s), control %s, metrics %s, conn-buffer %u, "
		    "max-buffered %" PRIu64 ", max-conns %" PRIu64 ", idle-timeout %u ms", n, w,
		    s->address, s->cfg->no_pin ? "no" : "yes",
		    s->control_path[0] ? s->control_path : "none",
		    s->metrics_address[0] ? s->metrics_address : "off", s->runtime->conn_buffer,
		    s->runtime->max_buffered, s->runtime->max_conns, s->runtime->idle_timeout_ms);
}

/* Start-up failed: log it and leave the loop (teardown stops what started). */
static void start_failed(struct supervisor *s, const char *why)
{
	re_log_error("%s", why);
	s->status = 1;
	s->done = true;
}

/* The control thread is up (or there is none): the rest of start-up. */
static void finish_start(struct supervisor *s)
{
	/* Every worker is in the SO_REUSEPORT group now; the reservation has done its
	 * job of keeping the port ours. */
	if (s->reserve_fd >= 0) {
		(void)close(s->reserve_fd);
		s->reserve_fd = -1;
	}
	if (s->cfg->user[0] != '\0') {
		if (drop_privileges(s) < 0) {
			s->status = 1;
			s->done = true;
			return;
		}
	}
	s->phase = PHASE_SERVING;
	print_ready(s);
}

/* Start-up steps that wait (workers joining, the takeover, the control thread) are
 * stepped here from the loop, like everything else. */
static void step_start(struct supervisor *s)
{
	char why[320];

	if (s->phase == PHASE_WORKERS) {
		int r;

		if (!re_group_step(&s->g, now_ms())) {
			return;
		}
		if (s->g.op.result < 0) {
			start_failed(s, s->g.op.why);
			re_group_op_end(&s->g);
			return;
		}
		if (s->g.op.kind == RE_GOP_TAKEOVER && s->g.op.abandon) {
			re_log_warn("takeover: joined with %zu worker%s; %zu of the old instance's %zu "
				    "listener%s retired (see above)", s->g.op.want, plural(s->g.op.want),
				    s->g.op.iold, s->g.op.nold, plural(s->g.op.nold));
		} else if (s->g.op.kind == RE_GOP_TAKEOVER) {
			re_log_info("takeover: joined %zu listener%s of the old instance with %zu worker%s; "
				    "moved new connections here by %s; the old instance serves out its "
				    "connections", s->g.op.nold, plural(s->g.op.nold), s->g.op.want,
				    plural(s->g.op.want), re_group_mechanism(&s->g, s->migrate_req));
		}
		re_group_op_end(&s->g);
		r = start_control(s, why, sizeof(why));
		if (r < 0) {
			start_failed(s, why);
			return;
		}
		if (r > 0) {
			finish_start(s);
			return;
		}
		s->phase = PHASE_CONTROL;
		s->control_deadline = now_ms() + RE_START_TIMEOUT_MS;
	}
	if (s->phase == PHASE_CONTROL) {
		enum re_control_state st = re_control_state(s->control);

		if (st == RE_CONTROL_STARTING) {
			if (now_ms() >= s->control_deadline) {
				snprintf(why, sizeof(why), "control thread did not start within %d ms",
					 RE_START_TIMEOUT_MS);
				start_failed(s, why);
			}
			return;
		}
		if (st != RE_CONTROL_RUNNING) {
			start_failed(s, re_control_error(s->control));
			return;
		}
		finish_start(s);
	}
}

/* How long the loop may sleep: the watchdog's period, or less when a deadline (an
 * operation's step, start-up, the drain) is nearer. */
static int loop_timeout(const struct supervisor *s)
{
	int64_t now = now_ms();
	int64_t until = next_stall_check(s, now);
	int64_t d = re_group_deadline(&s->g);

	if (d >= 0 && d < until) {
		until = d;
	}
	if (s->phase == PHASE_CONTROL && s->control_deadline < until) {
		until = s->control_deadline;
	}
	if (s->draining && s->give_up < until) {
		until = s->give_up;
	}
	return until <= now ? 0 : (int)(until - now);
}

/* The supervisor's one event loop. Nothing in it blocks: signals, control requests,
 * the workers' doorbell and the watchdog are served within one turn. */
static void serve(struct supervisor *s)
{
	while (!s->done) {
		struct epoll_event evs[8];
		int n;

		if (s->phase != PHASE_SERVING && !s->draining) {
			step_start(s);
			if (s->done) {
				return;
			}
		} else if (re_group_busy(&s->g) && re_group_step(&s->g, now_ms())) {
			op_finished(s);
		}
		/* Stall avoidance, --steer cpu and the operations' steering: the program
		 * the group should have now, attached when it changed. */
		if (!s->draining) {
			(void)re_group_sync(&s->g, now_ms());
		}
		if (check_workers(s)) {
			return;
		}
		if (s->draining && now_ms() >= s->give_up) {
			re_log_error("workers did not finish draining in time: exiting");
			exit_at_once(s);
		}
		n = epoll_wait(s->epfd, evs, 8, loop_timeout(s));
		check_stalls(s);
		if (n < 0 && errno != EINTR) {
			re_log_error("epoll_wait: %s", strerror(errno));
			s->status = 1;
			s->draining = true;
			s->give_up = now_ms() + RE_SUP_GRACE_MS;
			command_all(s, RE_WORKER_CMD_STOP);
			continue;
		}
		for (int i = 0; i < n; i++) {
			if (evs[i].data.fd == s->sigfd) {
				handle_signal(s);
			} else if (evs[i].data.fd == s->notify_fd) {
				read_doorbell(s->notify_fd);
			}
			/* The takeover's control socket: the step below reads it. */
		}
		handle_requests(s);
		if (s->control != NULL && re_control_state(s->control) == RE_CONTROL_FAILED &&
		    s->phase == PHASE_SERVING) {
			re_log_error("control thread stopped: %s", re_control_error(s->control));
			re_control_destroy(s->control);
			s->control = NULL;
		}
	}
}

/* The drain's outcome, from the registry (live blocks and retired totals alike):
 * connections that ended during the drain, gracefully or reset at the timeout.
 * Context: after serve(), workers stopped, before teardown. */
static void log_drain_outcome(struct supervisor *s)
{
	struct re_stats_counters now;
	uint64_t closed, reset;

	if (!s->draining || s->stats.reg == NULL) {
		return;
	}
	re_stats_total(s->stats.reg, &now);
	closed = (now.closed_eof + now.closed_error + now.closed_idle + now.closed_limit +
		  now.closed_drain) -
		 (s->drain_base.closed_eof + s->drain_base.closed_error + s->drain_base.closed_idle +
		  s->drain_base.closed_limit + s->drain_base.closed_drain);
	reset = now.reset_drain - s->drain_base.reset_drain;
	re_log_info("drain: %" PRIu64 " closed, %" PRIu64 " reset at timeout", closed - reset, reset);
}

static void teardown(struct supervisor *s)
{
	command_all(s, RE_WORKER_CMD_STOP);
	for (size_t i = 0; i < s->g.nslots; i++) {
		re_worker_destroy(s->g.slots[i].w);
	}
	/* The control thread reads the registry: stop it before the registry goes. */
	re_control_destroy(s->control);
	s->control = NULL;
	if (s->held != NULL) {
		s->held->status = -ESHUTDOWN;
		free(s->held);
		s->held = NULL;
	}
	re_group_finish(&s->g);
	re_stats_finish(&s->stats);	/* waits for call_rcu's pending frees */
	if (s->runtime != NULL) {
		free(re_container_of(s->runtime, struct runtime_box, rt));
	}
	free(s->budget);
	s->budget = NULL;
	if (s->chan_ready) {
		re_chan_finish(&s->chan);
	}
	if (s->reserve_fd >= 0) {
		(void)close(s->reserve_fd);
	}
	if (s->notify_fd >= 0) {
		(void)close(s->notify_fd);
	}
	if (s->ctl_fd >= 0) {
		(void)close(s->ctl_fd);
	}
	if (s->sigfd >= 0) {
		(void)close(s->sigfd);
	}
	if (s->epfd >= 0) {
		(void)close(s->epfd);
	}
}

int re_supervisor_run(const struct re_config *cfg)
{
	struct supervisor s = {
		.cfg = cfg,
		.epfd = -1,
		.sigfd = -1,
		.notify_fd = -1,
		.ctl_fd = -1,
		.reserve_fd = -1,
	};
	unsigned n;
	int r;

	s.g.op.cc.fd = -1;
	s.g.udp_hold_fd = -1;
	clock_gettime(CLOCK_MONOTONIC, &s.started);
	raise_nofile(cfg);
	if (setup_signals(&s) < 0) {
		teardown(&s);
		return 1;
	}
	r = resolve_cpus(&s);
	if (r < 0) {
		teardown(&s);
		return r == -EINVAL ? 2 : 1;	/* --cpus names a CPU we may not use */
	}
	if (reserve_port(&s) < 0) {
		teardown(&s);
		return 1;
	}
	n = cfg->threads ? cfg->threads : (unsigned)re_cpu_count(&s.g.cpus);
	warn_oversubscribed(&s, n, "--threads");
	s.runtime = runtime_alloc(&cfg->rt);
	s.budget = aligned_alloc(64, sizeof(*s.budget));
	if (s.runtime == NULL || s.budget == NULL || re_stats_init(&s.stats) < 0) {
		re_log_error("malloc: %s", strerror(ENOMEM));
		teardown(&s);
		return 1;
	}
	re_buf_budget_init(s.budget);
	re_kfeatures_probe(&s.features);
	s.features.udp = cfg->udp;
	snprintf(s.features.service, sizeof(s.features.service), "%s",
		 re_chargen_service_name(cfg->service));
	if (cfg->service != RE_SERVICE_ECHO) {
		re_log_warn("--service %s: %s, not echo, on every connection%s",
			    s.features.service,
			    cfg->service == RE_SERVICE_DISCARD ? "input is read and dropped (RFC 863)"
			    : "the RFC 864 character pattern is sent and input dropped",
			    cfg->udp ? " and datagram" : "");
	}
	if (cfg->udp) {
		int got = re_udp_probe_rcvbuf(cfg->udp_rcvbuf);

		/* Granted sizes read back doubled; below the request means rmem_max capped
		 * it (no CAP_NET_ADMIN for SO_RCVBUFFORCE). Loss there shows in
		 * udp_receive_queue_drops_total. */
		s.features.udp_rcvbuf = got > 0 ? got : 0;
		if (got > 0 && cfg->udp_rcvbuf != 0 && (uint64_t)got < 2ull * cfg->udp_rcvbuf) {
			re_log_warn("--udp-rcvbuf %" PRIu32 ": the kernel granted %d bytes per UDP "
				    "socket (net.core.rmem_max caps it without CAP_NET_ADMIN); raise "
				    "net.core.rmem_max if datagrams are lost at the socket",
				    cfg->udp_rcvbuf, got / 2);
		}
	}
	/* REUSEECHO_DISABLE_CBPF=1 (for tests and benchmarks): show what the accept-queue
	 * hole costs without steering. */
	s.g.cbpf = s.features.cbpf && getenv("REUSEECHO_DISABLE_CBPF") == NULL;
	s.g.no_pin = cfg->no_pin;
	s.g.away = RE_GROUP_NOBODY;
	s.g.steer = cfg->steer_cpu ? RE_STEER_CPU : RE_STEER_HASH;
	if (cfg->steer_cpu && (!s.g.cbpf || !re_kfeatures_cbpf_cpu())) {
		re_log_error("--steer cpu: this kernel (%s) does not accept a SO_REUSEPORT classic "
			     "BPF program%s (Linux 4.6 or later has both for TCP); use --steer hash",
			     s.features.kernel[0] ? s.features.kernel : "unknown",
			     s.g.cbpf ? " that reads SKF_AD_CPU" : "");
		teardown(&s);
		return 1;
	}
	s.g.epfd = s.epfd;
	s.g.tmpl.addr = s.addr;
	s.g.tmpl.backlog = cfg->backlog;
	s.g.tmpl.udp = cfg->udp;
	s.g.tmpl.udp_rcvbuf = cfg->udp_rcvbuf;
	s.g.tmpl.service = cfg->service;
	if (re_impair_active(&cfg->rt)) {
		char all[160];

		re_impair_describe(&cfg->rt, all, sizeof(all));
		re_log_warn("impairments set (%s): this instance misbehaves on purpose; do not "
			    "benchmark it", all);
	}
	if (cfg->udp && !re_net_is_loopback(&s.addr)) {
		re_log_warn("--udp on %s: a UDP echo on a reachable address can reflect spoofed "
			    "traffic at third parties; bind a loopback or trusted address, or "
			    "use --udp-rate and a firewall", s.address);
	}
	s.g.tmpl.runtime = &s.runtime;
	s.g.tmpl.stats = &s.stats;
	s.g.tmpl.budget = s.budget;
	s.g.tmpl.notify_fd = s.notify_fd;
	s.migrate_req = s.features.migrate_req;
	if (!cfg->control_none) {
		if (cfg->control[0] != '\0') {
			snprintf(s.control_path, sizeof(s.control_path), "%s", cfg->control);
		} else if (re_control_default_path(re_net_port(&s.addr), s.control_path,
						   sizeof(s.control_path)) < 0) {
			re_log_error("control socket path too long");
			teardown(&s);
			return 1;
		}
	}
	if (cfg->takeover) {
		r = re_group_takeover_start(&s.g, s.control_path, n);
	} else {
		s.g.model.valid = true;
		r = re_group_grow_start(&s.g, n);
	}
	if (r < 0) {
		re_log_error("%s", s.g.op.why);
		teardown(&s);
		return 1;
	}
	s.phase = PHASE_WORKERS;
	serve(&s);
	log_drain_outcome(&s);
	teardown(&s);
	if (s.status == 0) {
		re_log_info("drained: exiting");
	}
	return s.status;
}

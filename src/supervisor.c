/* supervisor: start-up, signals, the worker set (spawn, pin, retire, reap), runtime
 * settings and graceful drain. Runs on the main thread and is the only RCU updater:
 * it publishes the runtime settings and the stats registry, and nobody else does.
 * The control thread reaches it through the request channel (chan.h).
 */
#include "supervisor.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <time.h>
#include <unistd.h>

#include <urcu/urcu-qsbr.h>

#include "chan.h"
#include "control.h"
#include "cpu.h"
#include "kfeatures.h"
#include "log.h"
#include "net.h"
#include "notify.h"
#include "rcu.h"
#include "re_version.h"
#include "stats.h"
#include "steer.h"
#include "worker.h"

#define RE_SUP_GRACE_MS 5000	/* beyond --drain-timeout before giving up on workers */
#define RE_START_TIMEOUT_MS 10000
/* Handover: after new connections are steered away from a listener, how long it
 * keeps accepting so handshakes already on their way complete into its queue. */
#define RE_HANDOVER_GRACE_MS 200
#define RE_HANDOVER_TIMEOUT_MS 5000

struct slot {
	struct re_worker *w;
	struct re_stats_block *block;	/* owned by the registry once added */
	int id;
	int cpu;
	bool retiring;
	bool reported;			/* a failure was logged */
	bool stalled;			/* the watchdog logged a stall */
};

struct supervisor {
	const struct re_config *cfg;
	struct re_addr addr;
	char address[80];
	char metrics_address[80];	/* --metrics-listen as bound, "" when off */
	struct re_cpuset cpus;		/* where workers may be pinned */
	struct re_runtime *runtime;	/* RCU-published */
	struct re_stats stats;
	struct re_buf_budget *budget;	/* --max-buffered accounting, shared by workers */
	struct re_stats_counters drain_base;	/* process totals when the drain began */
	struct slot *slots;		/* live and retiring workers, by ascending id */
	size_t nslots;
	size_t cap;
	int next_id;			/* ids are never reused: metric series stay monotonic */
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
	bool draining;
	bool retiring_all;		/* `retire`: exit once every worker has left */
	int status;
	/* The kernel's SO_REUSEPORT group array as we know it: our worker ids (>= 0)
	 * and, during a takeover, the old instance's listeners (-1 - its worker id),
	 * in index order. Workers join one at a time so the order is known. */
	int *group;
	size_t ngroup;
	size_t group_cap;
	bool group_valid;
	bool cbpf;			/* SO_ATTACH_REUSEPORT_CBPF works here */
	int migrate_req;		/* net.ipv4.tcp_migrate_req, -1 = absent */
	struct sock_filter prog[RE_STEER_MAX_INSNS];
	struct sock_fprog fprog;
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
		s->cpus = allowed;
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
	s->cpus = s->cfg->cpus;
	return 0;
}

/* More workers than CPUs buys nothing: say once what it costs. */
static void warn_oversubscribed(const struct supervisor *s, size_t workers, const char *how)
{
	size_t ncpu = re_cpu_count(&s->cpus);

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
	 * take half its connections), and picks the one port for --port 0. */
	r = re_net_reserve(&s->addr);
	if (r < 0) {
		re_net_format_addr(&s->addr, where, sizeof(where));
		re_log_error("bind %s: %s", where, strerror(-r));
		return r;
	}
	s->reserve_fd = r;
	re_net_format_addr(&s->addr, s->address, sizeof(s->address));
	return 0;
}

/* The allowed CPU with the fewest live workers (lowest first on ties): round-robin
 * at start-up, and still even after workers come and go. */
static int pick_cpu(const struct supervisor *s)
{
	size_t n = re_cpu_count(&s->cpus);
	size_t best_load = SIZE_MAX;
	int best = -1;

	if (s->cfg->no_pin) {
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		int cpu = re_cpu_nth(&s->cpus, i);
		size_t load = 0;

		for (size_t k = 0; k < s->nslots; k++) {
			load += !s->slots[k].retiring && s->slots[k].cpu == cpu;
		}
		if (load < best_load) {
			best_load = load;
			best = cpu;
		}
	}
	return best;
}

/* Create, register and start one worker. Returns its slot index or -errno (logged). */
static int spawn_one(struct supervisor *s)
{
	struct re_worker_params p = {
		.addr = s->addr,
		.backlog = s->cfg->backlog,
		.runtime = &s->runtime,
		.stats = &s->stats,
		.budget = s->budget,
		.notify_fd = s->notify_fd,
	};
	struct slot *sl;
	int r;

	if (s->nslots == s->cap) {
		size_t ncap = s->cap ? s->cap * 2 : 16;
		struct slot *ns = realloc(s->slots, ncap * sizeof(*ns));

		if (ns == NULL) {
			re_log_error("worker: %s", strerror(ENOMEM));
			return -ENOMEM;
		}
		s->slots = ns;
		s->cap = ncap;
	}
	p.id = s->next_id;
	p.cpu = pick_cpu(s);
	p.block = re_stats_block_create(p.id, p.cpu);
	if (p.block == NULL) {
		re_log_error("worker %d: %s", p.id, strerror(ENOMEM));
		return -ENOMEM;
	}
	r = re_stats_add(&s->stats, p.block);
	if (r < 0) {
		re_stats_block_destroy(p.block);
		re_log_error("worker %d: %s", p.id, strerror(-r));
		return r;
	}
	sl = &s->slots[s->nslots];
	memset(sl, 0, sizeof(*sl));
	sl->id = p.id;
	sl->cpu = p.cpu;
	sl->block = p.block;
	sl->w = re_worker_create(&p);
	if (sl->w == NULL) {
		r = -errno;
		re_log_error("worker %d: eventfd: %s", p.id, strerror(-r));
		if (re_stats_remove(&s->stats, p.block) < 0) {
			re_log_error("worker %d: stats remove failed", p.id);
		}
		return r;
	}
	s->nslots++;
	s->next_id++;
	r = re_worker_start(sl->w);
	if (r < 0) {
		re_log_error("worker %d: pthread_create: %s", p.id, strerror(-r));
		return r;
	}
	return (int)(s->nslots - 1);
}

static void read_doorbell(int fd)
{
	uint64_t v;

	(void)!read(fd, &v, sizeof(v));
}

/* Block until the notify doorbell rings or deadline (ms, CLOCK_MONOTONIC) passes.
 * A private epoll instance: the signalfd and control requests stay queued for the
 * main loop meanwhile. */
static void wait_doorbell(struct supervisor *s, int64_t deadline)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = s->notify_fd };
	int64_t left = deadline - now_ms();
	int ep, n;

	if (left <= 0) {
		return;
	}
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0) {
		return;
	}
	n = epoll_ctl(ep, EPOLL_CTL_ADD, s->notify_fd, &ev);
	if (n == 0) {
		n = epoll_wait(ep, &ev, 1, (int)left);
	}
	(void)close(ep);
	if (n > 0) {
		read_doorbell(s->notify_fd);
	}
}

/* Wait until the workers in slots [from, nslots) and the control thread (when
 * given) have left their starting state, or a deadline passes. Signals and
 * requests stay queued meanwhile. Returns 0 when all run; -1 otherwise (logged). */
static int wait_started(struct supervisor *s, size_t from, const struct re_control *ctl,
			char *why, size_t whylen)
{
	int64_t deadline = now_ms() + RE_START_TIMEOUT_MS;

	for (;;) {
		unsigned starting = 0;
		long failed = -1;

		for (size_t i = from; i < s->nslots; i++) {
			enum re_worker_state st = re_worker_state(s->slots[i].w);

			starting += st == RE_WORKER_STARTING;
			if (st != RE_WORKER_STARTING && st != RE_WORKER_RUNNING && failed < 0) {
				failed = (long)i;
			}
		}
		if (ctl != NULL && re_control_state(ctl) == RE_CONTROL_STARTING) {
			starting++;
		}
		if (starting == 0) {
			if (failed >= 0) {
				struct slot *sl = &s->slots[failed];

				snprintf(why, whylen, "worker %d: %s %s: %s", sl->id,
					 re_worker_err_call(sl->w), s->address,
					 strerror(-re_worker_err(sl->w)));
				sl->reported = true;
				return -1;
			}
			if (ctl != NULL && re_control_state(ctl) != RE_CONTROL_RUNNING) {
				snprintf(why, whylen, "%s", re_control_error(ctl));
				return -1;
			}
			return 0;
		}
		if (now_ms() >= deadline) {
			snprintf(why, whylen, "threads did not start within %d ms", RE_START_TIMEOUT_MS);
			return -1;
		}
		wait_doorbell(s, deadline);
	}
}

/* --- the SO_REUSEPORT group and listener handover ------------------------------- */

static int group_push(struct supervisor *s, int member)
{
	if (s->ngroup == s->group_cap) {
		size_t ncap = s->group_cap ? s->group_cap * 2 : 16;
		int *ng = realloc(s->group, ncap * sizeof(*ng));

		if (ng == NULL) {
			return -ENOMEM;
		}
		s->group = ng;
		s->group_cap = ncap;
	}
	s->group[s->ngroup++] = member;
	return 0;
}

static long group_index(const struct supervisor *s, int member)
{
	for (size_t i = 0; i < s->ngroup; i++) {
		if (s->group[i] == member) {
			return (long)i;
		}
	}
	return -1;
}

static struct slot *slot_by_id(struct supervisor *s, int id)
{
	for (size_t i = 0; i < s->nslots; i++) {
		if (s->slots[i].id == id) {
			return &s->slots[i];
		}
	}
	return NULL;
}

/* Spawn one worker and wait until it listens, so that listeners join the group in
 * a known order (the kernel's group array is in join order). Returns the slot
 * index or -1 (logged into why). */
static int spawn_joined(struct supervisor *s, char *why, size_t whylen)
{
	size_t from = s->nslots;
	int i = spawn_one(s);

	if (i < 0) {
		snprintf(why, whylen, "worker: %s", strerror(-i));
		return -1;
	}
	if (wait_started(s, from, NULL, why, whylen) < 0) {
		return -1;
	}
	if (group_push(s, s->slots[i].id) < 0) {
		s->group_valid = false;
	}
	return i;
}

/* Ask one of our listening, non-retiring workers (other than `except`) to attach
 * prog to the group (NULL: detach), and wait for its answer. Returns 0 or -errno. */
static int group_set_bpf(struct supervisor *s, const struct sock_fprog *prog, int except)
{
	for (size_t i = 0; i < s->nslots; i++) {
		struct slot *sl = &s->slots[i];
		int64_t deadline = now_ms() + RE_HANDOVER_TIMEOUT_MS;
		unsigned acks;
		int r;

		if (sl->retiring || sl->id == except || re_worker_listener_closed(sl->w) ||
		    re_worker_state(sl->w) != RE_WORKER_RUNNING) {
			continue;
		}
		acks = re_worker_bpf_acks(sl->w);
		r = re_worker_set_bpf(sl->w, prog);
		if (r < 0) {
			return r;
		}
		while (re_worker_bpf_acks(sl->w) == acks) {
			if (now_ms() >= deadline) {
				return -ETIMEDOUT;
			}
			wait_doorbell(s, deadline);
		}
		return re_worker_bpf_result(sl->w);
	}
	return -ESRCH;
}

/* Steer every new connection to the group members other than `member`. */
static int steer_away(struct supervisor *s, int member)
{
	uint32_t targets[RE_STEER_MAX_TARGETS];
	size_t n = 0;
	int len;

	if (!s->cbpf || !s->group_valid) {
		return -EOPNOTSUPP;
	}
	for (size_t i = 0; i < s->ngroup && n < RE_STEER_MAX_TARGETS; i++) {
		if (s->group[i] != member) {
			targets[n++] = (uint32_t)i;
		}
	}
	len = re_steer_build(targets, n, s->prog);
	if (len < 0) {
		return len;
	}
	memset(&s->fprog, 0, sizeof(s->fprog));	/* padding included: it reaches the kernel */
	s->fprog.len = (unsigned short)len;
	s->fprog.filter = s->prog;
	return group_set_bpf(s, &s->fprog, member >= 0 ? member : -1);
}

static const char *handover_mechanism(const struct supervisor *s)
{
	if (s->cbpf && s->group_valid) {
		return s->migrate_req == 1 ? "SO_ATTACH_REUSEPORT_CBPF steering + accept-queue drain; "
					     "tcp_migrate_req=1 migrates the rest"
					   : "SO_ATTACH_REUSEPORT_CBPF steering + accept-queue drain";
	}
	return s->migrate_req == 1 ? "tcp_migrate_req=1 (kernel migration only)"
				   : "none: connections queued on a closing listener may be reset";
}

/* Close worker `sl`'s listener without losing a queued connection: steer new
 * connections away, let it accept for a grace period, drain its queue, close; then
 * update the group model (the last member moves into the freed slot).
 * Returns 0, or -errno when the listener did not close in time. */
static int retire_listener(struct supervisor *s, struct slot *sl, bool exit_after)
{
	int64_t deadline;
	long idx = group_index(s, sl->id);
	int r = steer_away(s, sl->id);

	if (r < 0 && r != -EOPNOTSUPP) {
		re_log_warn("worker %d: steering away failed (%s): its queued connections are at risk",
			    sl->id, strerror(-r));
	}
	sl->retiring = exit_after || sl->retiring;
	r = re_worker_retire(sl->w, RE_HANDOVER_GRACE_MS, exit_after);
	if (r < 0) {
		return r;
	}
	deadline = now_ms() + RE_HANDOVER_GRACE_MS + RE_HANDOVER_TIMEOUT_MS;
	while (!re_worker_listener_closed(sl->w)) {
		enum re_worker_state st = re_worker_state(sl->w);

		if (st == RE_WORKER_FAILED || st == RE_WORKER_EXITED) {
			break;
		}
		if (now_ms() >= deadline) {
			s->group_valid = false;
			return -ETIMEDOUT;
		}
		wait_doorbell(s, deadline);
	}
	if (idx >= 0) {
		re_steer_remove(s->group, &s->ngroup, (size_t)idx);
	}
	return 0;
}

/* After a handover: no program, the kernel's hash over every member again. */
static void steer_release(struct supervisor *s)
{
	int r;

	if (!s->cbpf) {
		return;
	}
	r = group_set_bpf(s, NULL, -1);
	if (r < 0 && r != -ESRCH) {
		re_log_warn("detaching the steering program: %s", strerror(-r));
	}
}

static void command_slot(struct slot *sl, unsigned cmd)
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
	for (size_t i = 0; i < s->nslots; i++) {
		command_slot(&s->slots[i], cmd);
	}
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
	command_all(s, RE_WORKER_CMD_DRAIN);
}

/* Join a worker that has left its loop, fold its counts into `retired` in the same
 * registry publication that stops listing it, and drop its slot. */
static void reap_slot(struct supervisor *s, size_t i)
{
	struct slot *sl = &s->slots[i];
	int r;

	re_worker_destroy(sl->w);
	r = re_stats_remove(&s->stats, sl->block);
	if (r < 0) {
		re_log_error("worker %d: stats remove: %s", sl->id, strerror(-r));
	}
	memmove(&s->slots[i], &s->slots[i + 1], (s->nslots - i - 1) * sizeof(*sl));
	s->nslots--;
}

/* Reap retired workers that finished; log failures. True when, in a shutdown, every
 * worker has left its loop. */
static bool check_workers(struct supervisor *s)
{
	size_t done = 0;

	for (size_t i = 0; i < s->nslots;) {
		struct slot *sl = &s->slots[i];
		enum re_worker_state st = re_worker_state(sl->w);

		if (st == RE_WORKER_FAILED && !sl->reported) {
			re_log_error("worker %d: %s: %s", sl->id, re_worker_err_call(sl->w),
				     strerror(-re_worker_err(sl->w)));
			sl->reported = true;
			s->status = 1;
			begin_drain(s, "worker failure");
		}
		if (st == RE_WORKER_EXITED && sl->retiring && !s->draining) {
			re_log_info("worker %d retired", sl->id);
			reap_slot(s, i);
			continue;
		}
		done += st == RE_WORKER_EXITED || st == RE_WORKER_FAILED;
		i++;
	}
	if (s->retiring_all && s->nslots == 0) {
		return true;
	}
	return s->draining && done == s->nslots;
}

/* Watchdog: a running worker's loop turns at least every RE_SAMPLE_MS; log once when
 * one has not turned for RE_STALL_MS and once when it recovers. (/healthz and the
 * worker_stalled metric read the same heartbeat.) */
static void check_stalls(struct supervisor *s)
{
	int64_t now = now_ms();

	for (size_t i = 0; i < s->nslots; i++) {
		struct slot *sl = &s->slots[i];
		uint64_t beat = RE_LOAD_RELAXED(sl->block->heartbeat_ms);
		bool stalled = re_worker_state(sl->w) == RE_WORKER_RUNNING && beat != 0 &&
			       now - (int64_t)beat > RE_STALL_MS;

		if (stalled && !sl->stalled) {
			/* A warning, not an error: an overloaded host that does not schedule
			 * the thread looks the same from here as a hung loop. */
			re_log_warn("worker %d: event loop has not turned for %" PRId64
				    " ms (stalled); its queued connections wait", sl->id, now - (int64_t)beat);
		} else if (!stalled && sl->stalled) {
			re_log_warn("worker %d: event loop turns again", sl->id);
		}
		sl->stalled = stalled;
	}
}

static void publish_runtime(struct supervisor *s, const struct re_runtime *next_val)
{
	struct re_runtime *next = malloc(sizeof(*next));
	struct re_runtime *old = s->runtime;

	if (next == NULL) {
		return;
	}
	*next = *next_val;
	re_rcu_assign_pointer(s->runtime, next);
	re_rcu_synchronize();	/* no worker or reader holds old after this */
	free(old);
}

static size_t live_workers(const struct supervisor *s)
{
	size_t n = 0;

	for (size_t i = 0; i < s->nslots; i++) {
		n += !s->slots[i].retiring;
	}
	return n;
}

static void do_threads(struct supervisor *s, struct re_request *r)
{
	size_t want = (size_t)r->cmd.value;
	size_t live = live_workers(s);
	size_t from = s->nslots;
	char why[320];

	if (s->draining || s->retiring_all) {
		r->status = -ESHUTDOWN;
		snprintf(r->reply, sizeof(r->reply), "shutting down");
		return;
	}
	if (want > live) {
		warn_oversubscribed(s, want, "threads");
		for (size_t k = live; k < want; k++) {
			if (spawn_joined(s, why, sizeof(why)) < 0) {
				break;
			}
		}
		if (live_workers(s) < want) {
			re_log_error("threads %zu: %s", want, why);
			/* Take back whatever did start, so the set stays consistent. */
			for (size_t i = from; i < s->nslots; i++) {
				s->slots[i].retiring = true;
				command_slot(&s->slots[i], RE_WORKER_CMD_STOP);
			}
			r->status = -EIO;
			snprintf(r->reply, sizeof(r->reply), "%.250s", why);
			return;
		}
	} else if (want < live) {
		/* Retire the newest workers first, one at a time: steer new connections
		 * away from its listener, let it drain its accept queue, close it. The
		 * worker then serves its connections until they close or the drain
		 * timeout passes, exits, and is reaped (check_workers). */
		size_t excess = live - want;
		unsigned lost = 0;

		for (size_t i = s->nslots; i-- > 0 && excess > 0;) {
			if (!s->slots[i].retiring) {
				if (retire_listener(s, &s->slots[i], true) < 0) {
					lost++;
				}
				excess--;
			}
		}
		steer_release(s);
		re_log_info("threads: retired %zu listener%s by %s%s", live - want,
			    plural(live - want), handover_mechanism(s),
			    lost ? " (some did not close in time)" : "");
	}
	re_log_info("threads: %zu -> %zu worker%s", live, want, plural(want));
	re_notify("STATUS=serving %s with %zu worker%s", s->address, want, plural(want));
	snprintf(r->reply, sizeof(r->reply), "threads %zu", want);
}

static void do_set(struct supervisor *s, struct re_request *r)
{
	struct re_runtime next = *s->runtime;
	const char *key = re_ctlproto_key_name(r->cmd.key);

	switch (r->cmd.key) {
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
	}
	publish_runtime(s, &next);
	snprintf(r->reply, sizeof(r->reply), "%s %" PRIu64 "%s", key, r->cmd.value,
		 (r->cmd.key == RE_KEY_IDLE_TIMEOUT || r->cmd.key == RE_KEY_DRAIN_TIMEOUT) ? " ms" : "");
	/* The log says what the reply says, unit included ("set idle-timeout 250 ms"). */
	re_log_info("set %s", r->reply);
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
			break;
		case RE_CTL_SHUTDOWN:
			snprintf(r->reply, sizeof(r->reply), "draining");
			begin_drain(s, "shutdown command");
			break;
		case RE_CTL_LISTENERS: {
			size_t used;

			if (!s->group_valid) {
				r->status = -EIO;
				snprintf(r->reply, sizeof(r->reply), "listener order unknown");
				break;
			}
			used = (size_t)snprintf(r->reply, sizeof(r->reply), "port %u order",
						re_net_port(&s->addr));
			for (size_t i = 0; i < s->ngroup && used < sizeof(r->reply); i++) {
				used += (size_t)snprintf(r->reply + used, sizeof(r->reply) - used, " %d",
							 s->group[i]);
			}
			if (used >= sizeof(r->reply)) {
				r->status = -E2BIG;
				snprintf(r->reply, sizeof(r->reply), "too many listeners to list");
			}
			break;
		}
		case RE_CTL_RETIRE_LISTENER: {
			struct slot *sl = slot_by_id(s, r->cmd.worker);

			if (sl == NULL || re_worker_listener_closed(sl->w)) {
				r->status = -ENOENT;
				snprintf(r->reply, sizeof(r->reply), "no listening worker %d", r->cmd.worker);
				break;
			}
			/* The new instance has steered new connections away already; this
			 * only drains and closes, and the worker keeps serving. */
			if (re_worker_retire(sl->w, RE_HANDOVER_GRACE_MS, false) < 0) {
				r->status = -EIO;
				snprintf(r->reply, sizeof(r->reply), "worker %d: command failed", sl->id);
				break;
			}
			{
				int64_t deadline = now_ms() + RE_HANDOVER_GRACE_MS + RE_HANDOVER_TIMEOUT_MS;

				while (!re_worker_listener_closed(sl->w) && now_ms() < deadline) {
					wait_doorbell(s, deadline);
				}
			}
			if (!re_worker_listener_closed(sl->w)) {
				r->status = -ETIMEDOUT;
				snprintf(r->reply, sizeof(r->reply), "worker %d: listener did not close", sl->id);
				break;
			}
			{
				long idx = group_index(s, sl->id);

				if (idx >= 0) {
					re_steer_remove(s->group, &s->ngroup, (size_t)idx);
				}
			}
			snprintf(r->reply, sizeof(r->reply), "listener %d closed", sl->id);
			break;
		}
		case RE_CTL_RETIRE:
			/* Handover end: every worker closes what listener it still has,
			 * serves out its connections, exits; then the process exits 0. */
			s->retiring_all = true;
			for (size_t i = 0; i < s->nslots; i++) {
				s->slots[i].retiring = true;
				if (re_worker_retire(s->slots[i].w, 0, true) < 0) {
					command_slot(&s->slots[i], RE_WORKER_CMD_DRAIN);
				}
			}
			re_log_info("retire: serving established connections, then exiting");
			re_notify("STOPPING=1\nSTATUS=retiring after a takeover");
			snprintf(r->reply, sizeof(r->reply), "retiring %zu worker%s", s->nslots,
				 plural(s->nslots));
			break;
		case RE_CTL_DEBUG_STALL: {
			bool found = false;

			for (size_t i = 0; i < s->nslots; i++) {
				if (s->slots[i].id == r->cmd.worker) {
					found = re_worker_stall(s->slots[i].w, (unsigned)r->cmd.value) == 0;
				}
			}
			if (!found) {
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
		re_chan_complete(&s->chan, r);
		r = next;
	}
}

static void exit_at_once(struct supervisor *s)
{
	for (size_t i = 0; i < s->nslots; i++) {
		re_worker_abandon(s->slots[i].w);
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

/* --- takeover: replacing a live instance on the same port ----------------------- */

static int old_connect(const char *path)
{
	struct sockaddr_un sun;
	int fd;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun.sun_path)) {
		return -ENAMETOOLONG;
	}
	memcpy(sun.sun_path, path, strlen(path));
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		return -errno;
	}
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		int r = -errno;

		(void)close(fd);
		return r;
	}
	return fd;
}

/* One command to the old instance; its reply (without the closing empty line) in
 * reply. Returns 0 for "OK ...", -EPROTO for "ERR ...", or -errno. */
static int old_request(int fd, const char *cmd, char *reply, size_t len, int timeout_ms)
{
	char line[128];
	size_t got = 0;
	int64_t deadline = now_ms() + timeout_ms;
	int n = snprintf(line, sizeof(line), "%s\n", cmd);

	if (send(fd, line, (size_t)n, MSG_NOSIGNAL) != n) {
		return -errno ? -errno : -EIO;
	}
	reply[0] = '\0';
	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		int64_t left = deadline - now_ms();
		ssize_t k;

		if (got >= 2 && reply[got - 1] == '\n' && reply[got - 2] == '\n') {
			reply[got - 2] = '\0';
			return strncmp(reply, "OK", 2) == 0 ? 0 : -EPROTO;
		}
		if (left <= 0 || got + 1 >= len) {
			return -ETIMEDOUT;
		}
		if (poll(&pfd, 1, (int)left) <= 0) {
			continue;
		}
		k = recv(fd, reply + got, len - got - 1, 0);
		if (k <= 0) {
			return k == 0 ? -EPIPE : -errno;
		}
		got += (size_t)k;
		reply[got] = '\0';
	}
}

/* Join the old instance's SO_REUSEPORT group, then move every new connection here
 * without losing one: for each of its listeners in turn, steer new connections
 * away from it (a CBPF program on the group), have it drain its accept queue and
 * close it, and follow the group array; finally ask it to serve out its
 * connections and exit. Returns 0 or -1 with why set. */
static int takeover(struct supervisor *s, unsigned n, char *why, size_t whylen)
{
	char reply[1024];
	char cmd[64];
	int old[RE_STEER_MAX_TARGETS];
	size_t nold = 0;
	unsigned port = 0;
	char *p, *save = NULL;
	int fd, r;

	fd = old_connect(s->control_path);
	if (fd < 0) {
		snprintf(why, whylen, "--takeover: connect %s: %s (is an instance serving port %u?)",
			 s->control_path, strerror(-fd), re_net_port(&s->addr));
		return -1;
	}
	r = old_request(fd, "listeners", reply, sizeof(reply), RE_HANDOVER_TIMEOUT_MS);
	if (r < 0 || sscanf(reply, "OK port %u order", &port) != 1 || port != re_net_port(&s->addr)) {
		snprintf(why, whylen, "--takeover: %s answered '%.200s' to 'listeners'", s->control_path,
			 reply);
		(void)close(fd);
		return -1;
	}
	p = strstr(reply, "order");
	for (char *tok = strtok_r(p + 5, " ", &save); tok != NULL && nold < RE_STEER_MAX_TARGETS;
	     tok = strtok_r(NULL, " ", &save)) {
		old[nold++] = atoi(tok);
	}
	s->group_valid = true;
	for (size_t i = 0; i < nold; i++) {
		if (group_push(s, -1 - old[i]) < 0) {
			s->group_valid = false;
		}
	}
	for (unsigned i = 0; i < n; i++) {
		if (spawn_joined(s, why, whylen) < 0) {
			(void)close(fd);
			return -1;
		}
	}
	re_log_info("takeover: joined %zu listener%s of the old instance with %u worker%s; "
		    "moving new connections here by %s", nold, plural(nold), n, plural(n),
		    handover_mechanism(s));
	for (size_t i = 0; i < nold; i++) {
		long idx = group_index(s, -1 - old[i]);

		r = steer_away(s, -1 - old[i]);
		if (r < 0 && r != -EOPNOTSUPP) {
			re_log_warn("takeover: steering away from old listener %d: %s", old[i], strerror(-r));
		}
		snprintf(cmd, sizeof(cmd), "retire-listener %d", old[i]);
		r = old_request(fd, cmd, reply, sizeof(reply),
				RE_HANDOVER_GRACE_MS + 2 * RE_HANDOVER_TIMEOUT_MS);
		if (r < 0) {
			re_log_warn("takeover: old listener %d: %.200s", old[i], r == -EPROTO ? reply : strerror(-r));
			s->group_valid = false;
		} else if (idx >= 0) {
			re_steer_remove(s->group, &s->ngroup, (size_t)idx);
		}
	}
	steer_release(s);
	r = old_request(fd, "retire", reply, sizeof(reply), RE_HANDOVER_TIMEOUT_MS);
	if (r < 0) {
		re_log_warn("takeover: 'retire': %.200s", r == -EPROTO ? reply : strerror(-r));
	}
	(void)close(fd);
	/* Only our listeners are left: the model is exact again if every step was. */
	re_log_info("takeover: the old instance closed its listeners and serves out its connections");
	return 0;
}

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
		return 0;
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
	return wait_started(s, s->nslots, s->control, why, whylen);
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
	re_log_info("running as %s (uid %u, gid %u)", s->cfg->user, (unsigned)pw.pw_uid,
		    (unsigned)pw.pw_gid);
	warn_socket_stays(s);
	return 0;
}

static void print_ready(const struct supervisor *s)
{
	const char *w = plural(s->nslots);

	printf("reuseecho: listening on %s with %zu worker%s\n", s->address, s->nslots, w);
	fflush(stdout);
	re_notify("READY=1\nSTATUS=serving %s with %zu worker%s, control %s", s->address,
		  s->nslots, w, s->control_path[0] ? s->control_path : "none");
	re_log_info("%zu worker%s on %s (pinned: %s), control %s, metrics %s, conn-buffer %u, "
		    "max-buffered %" PRIu64 ", max-conns %" PRIu64 ", idle-timeout %u ms", s->nslots, w,
		    s->address, s->cfg->no_pin ? "no" : "yes",
		    s->control_path[0] ? s->control_path : "none",
		    s->metrics_address[0] ? s->metrics_address : "off", s->runtime->conn_buffer,
		    s->runtime->max_buffered, s->runtime->max_conns, s->runtime->idle_timeout_ms);
}

static void serve(struct supervisor *s)
{
	int64_t give_up = 0;

	for (;;) {
		struct epoll_event evs[4];
		int timeout = -1;
		int n;

		if (check_workers(s)) {
			return;
		}
		if (s->draining) {
			if (give_up == 0) {
				give_up = now_ms() + s->runtime->drain_timeout_ms + RE_SUP_GRACE_MS;
			}
			timeout = (int)(give_up - now_ms());
			if (timeout <= 0) {
				re_log_error("workers did not finish draining in time: exiting");
				exit_at_once(s);
			}
		}
		if (timeout < 0 || timeout > RE_STALL_MS / 2) {
			timeout = RE_STALL_MS / 2;	/* the watchdog's period */
		}
		n = epoll_wait(s->epfd, evs, 4, timeout);
		check_stalls(s);
		if (n < 0 && errno != EINTR) {
			re_log_error("epoll_wait: %s", strerror(errno));
			s->status = 1;
			s->draining = true;
			command_all(s, RE_WORKER_CMD_STOP);
			continue;
		}
		for (int i = 0; i < n; i++) {
			if (evs[i].data.fd == s->sigfd) {
				handle_signal(s);
			} else {
				read_doorbell(s->notify_fd);
			}
		}
		handle_requests(s);
		if (s->control != NULL && re_control_state(s->control) == RE_CONTROL_FAILED) {
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
	for (size_t i = 0; i < s->nslots; i++) {
		re_worker_destroy(s->slots[i].w);
	}
	/* The control thread reads the registry: stop it before the registry goes. */
	re_control_destroy(s->control);
	s->control = NULL;
	free(s->slots);
	s->slots = NULL;
	free(s->group);
	s->group = NULL;
	s->nslots = 0;
	re_stats_finish(&s->stats);
	free(s->runtime);
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
	char why[320];
	unsigned n;
	int r;

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
	n = cfg->threads ? cfg->threads : (unsigned)re_cpu_count(&s.cpus);
	warn_oversubscribed(&s, n, "--threads");
	s.runtime = malloc(sizeof(*s.runtime));
	s.budget = aligned_alloc(64, sizeof(*s.budget));
	if (s.runtime == NULL || s.budget == NULL || re_stats_init(&s.stats) < 0) {
		re_log_error("malloc: %s", strerror(ENOMEM));
		teardown(&s);
		return 1;
	}
	*s.runtime = cfg->rt;
	re_buf_budget_init(s.budget);
	re_kfeatures_probe(&s.features);
	/* REUSEECHO_DISABLE_CBPF=1 (for tests and benchmarks): show what the accept-queue
	 * hole costs without steering. */
	s.cbpf = s.features.cbpf && getenv("REUSEECHO_DISABLE_CBPF") == NULL;
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
		if (takeover(&s, n, why, sizeof(why)) < 0) {
			re_log_error("%s", why);
			teardown(&s);
			return 1;
		}
	} else {
		s.group_valid = true;
		for (unsigned i = 0; i < n; i++) {
			if (spawn_joined(&s, why, sizeof(why)) < 0) {
				re_log_error("%s", why);
				teardown(&s);
				return 1;
			}
		}
	}
	if (start_control(&s, why, sizeof(why)) < 0) {
		re_log_error("%s", why);
		teardown(&s);
		return 1;
	}
	/* Every worker is in the SO_REUSEPORT group now; the reservation has done its
	 * job of keeping the port ours. */
	if (s.reserve_fd >= 0) {
		(void)close(s.reserve_fd);
		s.reserve_fd = -1;
	}
	if (cfg->user[0] != '\0' && drop_privileges(&s) < 0) {
		teardown(&s);
		return 1;
	}
	print_ready(&s);
	serve(&s);
	log_drain_outcome(&s);
	teardown(&s);
	if (s.status == 0) {
		re_log_info("drained: exiting");
	}
	return s.status;
}

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
#include <time.h>
#include <unistd.h>

#include <urcu/urcu-qsbr.h>

#include "chan.h"
#include "control.h"
#include "cpu.h"
#include "log.h"
#include "net.h"
#include "notify.h"
#include "rcu.h"
#include "re_version.h"
#include "stats.h"
#include "worker.h"

#define RE_SUP_GRACE_MS 5000	/* beyond --drain-timeout before giving up on workers */
#define RE_START_TIMEOUT_MS 10000

struct slot {
	struct re_worker *w;
	struct re_stats_block *block;	/* owned by the registry once added */
	int id;
	int cpu;
	bool retiring;
	bool reported;			/* a failure was logged */
};

struct supervisor {
	const struct re_config *cfg;
	struct re_addr addr;
	char address[80];
	struct re_cpuset cpus;		/* where workers may be pinned */
	struct re_runtime *runtime;	/* RCU-published */
	struct re_stats stats;
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
	int status;
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

/* Decide which CPUs workers are pinned to: --cpus must be a subset of the allowed
 * set. Returns 0 or -EINVAL (logged). */
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
			re_log_error("sched_setaffinity --cpus %s: CPU %d is not in the allowed set %s: %s",
				     list, c, alist, strerror(EINVAL));
			return -EINVAL;
		}
	}
	s->cpus = s->cfg->cpus;
	return 0;
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
		{
			struct epoll_event ev;
			int ep = epoll_create1(EPOLL_CLOEXEC);
			int n;

			/* Only the notify doorbell matters here; a private epoll keeps the
			 * signalfd and requests queued for the main loop. */
			if (ep < 0) {
				snprintf(why, whylen, "epoll_create1: %s", strerror(errno));
				return -1;
			}
			ev.events = EPOLLIN;
			ev.data.fd = s->notify_fd;
			n = epoll_ctl(ep, EPOLL_CTL_ADD, s->notify_fd, &ev);
			if (n == 0) {
				n = epoll_wait(ep, &ev, 1, (int)(deadline - now_ms()));
			}
			(void)close(ep);
			if (n > 0) {
				read_doorbell(s->notify_fd);
			}
		}
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
	return s->draining && done == s->nslots;
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

	if (s->draining) {
		r->status = -ESHUTDOWN;
		snprintf(r->reply, sizeof(r->reply), "shutting down");
		return;
	}
	if (want > live) {
		for (size_t k = live; k < want; k++) {
			if (spawn_one(s) < 0) {
				break;
			}
		}
		if (wait_started(s, from, NULL, why, sizeof(why)) < 0) {
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
		/* Retire the newest workers first. Each stops accepting, serves what it
		 * has until it closes or the drain timeout passes, then exits and is
		 * reaped (check_workers). */
		size_t excess = live - want;

		for (size_t i = s->nslots; i-- > 0 && excess > 0;) {
			if (!s->slots[i].retiring) {
				s->slots[i].retiring = true;
				command_slot(&s->slots[i], RE_WORKER_CMD_RETIRE);
				excess--;
			}
		}
	}
	re_log_info("threads: %zu -> %zu workers", live, want);
	re_notify("STATUS=serving %s with %zu workers", s->address, want);
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
	}
	publish_runtime(s, &next);
	re_log_info("set %s %" PRIu64, key, r->cmd.value);
	snprintf(r->reply, sizeof(r->reply), "%s %" PRIu64 "%s", key, r->cmd.value,
		 (r->cmd.key == RE_KEY_IDLE_TIMEOUT || r->cmd.key == RE_KEY_DRAIN_TIMEOUT) ? " ms" : "");
}

static void handle_requests(struct supervisor *s)
{
	struct re_request *r = re_chan_take_todo(&s->chan);

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
			fflush(NULL);
			_exit(1);
		}
		begin_drain(s, strsignal(sig));
	}
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
	re_control_probe_features(&p.features);
	if (!s->cfg->control_none) {
		if (s->cfg->control[0] != '\0') {
			snprintf(s->control_path, sizeof(s->control_path), "%s", s->cfg->control);
		} else if (re_control_default_path(p.port, s->control_path, sizeof(s->control_path)) < 0) {
			snprintf(why, whylen, "control socket path too long");
			return -1;
		}
		p.path = s->control_path;
	}
	if (s->cfg->metrics) {
		if (re_net_parse_addr(s->cfg->metrics_host, s->cfg->metrics_port, &p.metrics_addr) < 0) {
			snprintf(why, whylen, "--metrics-listen %s: not a usable address",
				 s->cfg->metrics_host);
			return -1;
		}
		p.metrics = true;
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

static void print_ready(const struct supervisor *s)
{
	printf("reuseecho: listening on %s with %zu workers\n", s->address, s->nslots);
	fflush(stdout);
	re_notify("READY=1\nSTATUS=serving %s with %zu workers, control %s", s->address, s->nslots,
		  s->control_path[0] ? s->control_path : "none");
	re_log_info("%zu workers on %s (pinned: %s), control %s, conn-buffer %u, max-conns %" PRIu64
		    ", idle-timeout %u ms", s->nslots, s->address, s->cfg->no_pin ? "no" : "yes",
		    s->control_path[0] ? s->control_path : "none", s->runtime->conn_buffer,
		    s->runtime->max_conns, s->runtime->idle_timeout_ms);
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
				fflush(NULL);
				_exit(1);
			}
		}
		n = epoll_wait(s->epfd, evs, 4, timeout);
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
	s->nslots = 0;
	re_stats_finish(&s->stats);
	free(s->runtime);
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

	clock_gettime(CLOCK_MONOTONIC, &s.started);
	raise_nofile(cfg);
	if (setup_signals(&s) < 0 || resolve_cpus(&s) < 0 || reserve_port(&s) < 0) {
		teardown(&s);
		return 1;
	}
	n = cfg->threads ? cfg->threads : (unsigned)re_cpu_count(&s.cpus);
	s.runtime = malloc(sizeof(*s.runtime));
	if (s.runtime == NULL || re_stats_init(&s.stats) < 0) {
		re_log_error("malloc: %s", strerror(ENOMEM));
		teardown(&s);
		return 1;
	}
	*s.runtime = cfg->rt;
	for (unsigned i = 0; i < n; i++) {
		if (spawn_one(&s) < 0) {
			teardown(&s);
			return 1;
		}
	}
	if (wait_started(&s, 0, NULL, why, sizeof(why)) < 0 ||
	    start_control(&s, why, sizeof(why)) < 0) {
		re_log_error("%s", why);
		teardown(&s);
		return 1;
	}
	/* Every worker is in the SO_REUSEPORT group now; the reservation has done its
	 * job of keeping the port ours. */
	(void)close(s.reserve_fd);
	s.reserve_fd = -1;
	print_ready(&s);
	serve(&s);
	teardown(&s);
	if (s.status == 0) {
		re_log_info("drained: exiting");
	}
	return s.status;
}

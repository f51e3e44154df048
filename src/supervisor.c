/* supervisor: start-up, signals, worker lifecycle and graceful drain.
 * Runs on the main thread; the only RCU updater (runtime settings, stats registry).
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

#include "cpu.h"
#include "log.h"
#include "net.h"
#include "stats.h"
#include "worker.h"

#define RE_SUP_GRACE_MS 5000	/* beyond --drain-timeout before giving up on workers */

struct supervisor {
	const struct re_config *cfg;
	struct re_addr addr;
	struct re_cpuset cpus;		/* where workers may be pinned */
	struct re_runtime *runtime;	/* RCU-published */
	struct re_stats stats;
	struct re_worker **workers;
	unsigned nworkers;
	int epfd;
	int sigfd;
	int notify_fd;
	int reserve_fd;
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
		re_log_warn("RLIMIT_NOFILE is %ju (hard limit): fewer than --max-conns %" PRIu64
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

static int setup_signals(struct supervisor *s)
{
	sigset_t all, handled;
	struct epoll_event ev;

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
	if (s->notify_fd < 0) {
		re_log_error("eventfd: %s", strerror(errno));
		return -1;
	}
	ev.events = EPOLLIN;
	ev.data.fd = s->sigfd;
	if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->sigfd, &ev) < 0) {
		re_log_error("epoll_ctl: %s", strerror(errno));
		return -1;
	}
	ev.data.fd = s->notify_fd;
	if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->notify_fd, &ev) < 0) {
		re_log_error("epoll_ctl: %s", strerror(errno));
		return -1;
	}
	return 0;
}

static int reserve_port(struct supervisor *s)
{
	char where[160];
	int r = re_net_parse_addr(s->cfg->bind, s->cfg->port, &s->addr);

	if (r < 0) {
		re_log_error("--bind %s: not a usable address", s->cfg->bind);
		return r;
	}
	r = re_net_reserve(&s->addr);
	if (r < 0) {
		re_net_format_addr(&s->addr, where, sizeof(where));
		re_log_error("bind %s: %s", where, strerror(-r));
		return r;
	}
	s->reserve_fd = r;
	return 0;
}

static int spawn_workers(struct supervisor *s, unsigned n)
{
	s->workers = calloc(n, sizeof(*s->workers));
	if (s->workers == NULL) {
		re_log_error("calloc: %s", strerror(ENOMEM));
		return -ENOMEM;
	}
	for (unsigned i = 0; i < n; i++) {
		struct re_worker_params p = {
			.id = (int)i,
			.cpu = s->cfg->no_pin ? -1 : re_cpu_nth(&s->cpus, i),
			.addr = s->addr,
			.backlog = s->cfg->backlog,
			.runtime = &s->runtime,
			.stats = &s->stats,
			.notify_fd = s->notify_fd,
		};
		int r;

		p.block = re_stats_block_create(p.id, p.cpu);
		if (p.block == NULL) {
			re_log_error("worker %u: %s", i, strerror(ENOMEM));
			return -ENOMEM;
		}
		r = re_stats_add(&s->stats, p.block);
		if (r < 0) {
			re_stats_block_destroy(p.block);
			re_log_error("worker %u: %s", i, strerror(-r));
			return r;
		}
		s->workers[i] = re_worker_create(&p);
		if (s->workers[i] == NULL) {
			re_log_error("worker %u: eventfd: %s", i, strerror(errno));
			return -errno;
		}
		s->nworkers = i + 1;
		r = re_worker_start(s->workers[i]);
		if (r < 0) {
			re_log_error("worker %u: pthread_create: %s", i, strerror(-r));
			return r;
		}
	}
	return 0;
}

static void drain_notify(struct supervisor *s)
{
	uint64_t v;

	(void)!read(s->notify_fd, &v, sizeof(v));
}

/* Wait until no worker is STARTING. Returns 0 when all run, -1 when one failed or a
 * stop signal came first (logged). */
static int wait_started(struct supervisor *s)
{
	for (;;) {
		struct epoll_event ev;
		unsigned starting = 0;
		int failed = -1;
		int n;

		for (unsigned i = 0; i < s->nworkers; i++) {
			enum re_worker_state st = re_worker_state(s->workers[i]);

			starting += st == RE_WORKER_STARTING;
			if (st == RE_WORKER_FAILED && failed < 0) {
				failed = (int)i;
			}
		}
		if (failed >= 0 && starting == 0) {
			const struct re_worker *w = s->workers[failed];
			char where[160];

			re_net_format_addr(&s->addr, where, sizeof(where));
			re_log_error("worker %d: %s %s: %s", failed, re_worker_err_call(w), where,
				     strerror(-re_worker_err(w)));
			return -1;
		}
		if (starting == 0) {
			return 0;
		}
		n = epoll_wait(s->epfd, &ev, 1, -1);
		if (n < 0 && errno != EINTR) {
			re_log_error("epoll_wait: %s", strerror(errno));
			return -1;
		}
		if (n > 0 && ev.data.fd == s->notify_fd) {
			drain_notify(s);
		} else if (n > 0 && ev.data.fd == s->sigfd) {
			struct signalfd_siginfo si;

			if (read(s->sigfd, &si, sizeof(si)) == sizeof(si) &&
			    si.ssi_signo != SIGHUP) {
				re_log_info("%s during start-up: stopping", strsignal((int)si.ssi_signo));
				return -1;
			}
		}
	}
}

static void command_all(struct supervisor *s, unsigned cmd)
{
	for (unsigned i = 0; i < s->nworkers; i++) {
		enum re_worker_state st = re_worker_state(s->workers[i]);

		if (st == RE_WORKER_RUNNING || st == RE_WORKER_STARTING) {
			int r = re_worker_command(s->workers[i], cmd);

			if (r < 0) {
				re_log_error("worker %u: eventfd write: %s", i, strerror(-r));
			}
		}
	}
}

/* True when every worker has left its loop. Logs a worker that failed at run time
 * (once) and starts a drain of the others. */
static bool check_workers(struct supervisor *s)
{
	unsigned done = 0;

	for (unsigned i = 0; i < s->nworkers; i++) {
		struct re_worker *w = s->workers[i];
		enum re_worker_state st = re_worker_state(w);

		if (st == RE_WORKER_FAILED) {
			if (s->status == 0) {
				re_log_error("worker %u: %s: %s", i, re_worker_err_call(w),
					     strerror(-re_worker_err(w)));
				s->status = 1;
				if (!s->draining) {
					s->draining = true;
					command_all(s, RE_WORKER_CMD_DRAIN);
				}
			}
			done++;
		} else if (st == RE_WORKER_EXITED) {
			done++;
		}
	}
	return done == s->nworkers;
}

static void handle_signal(struct supervisor *s)
{
	struct signalfd_siginfo si;

	while (read(s->sigfd, &si, sizeof(si)) == sizeof(si)) {
		int sig = (int)si.ssi_signo;

		if (sig == SIGHUP) {
			re_log_info("SIGHUP ignored: settings change at run time without a reload");
			continue;
		}
		if (s->draining || sig == SIGQUIT) {
			re_log_warn("%s: exiting at once, open connections are reset", strsignal(sig));
			fflush(NULL);
			_exit(1);
		}
		re_log_info("%s: draining (up to %u ms), send it again to exit at once",
			    strsignal(sig), s->runtime->drain_timeout_ms);
		s->draining = true;
		command_all(s, RE_WORKER_CMD_DRAIN);
	}
}

static void print_ready(const struct supervisor *s)
{
	char where[160];

	re_net_format_addr(&s->addr, where, sizeof(where));
	printf("reuseecho: listening on %s with %u workers\n", where, s->nworkers);
	fflush(stdout);
	re_log_info("%u workers on %s, pinned: %s, conn-buffer %u, max-conns %" PRIu64
		    ", idle-timeout %u ms", s->nworkers, where, s->cfg->no_pin ? "no" : "yes",
		    s->runtime->conn_buffer, s->runtime->max_conns, s->runtime->idle_timeout_ms);
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
			command_all(s, RE_WORKER_CMD_STOP);
			s->draining = true;
			continue;
		}
		for (int i = 0; i < n; i++) {
			if (evs[i].data.fd == s->sigfd) {
				handle_signal(s);
			} else {
				drain_notify(s);
			}
		}
	}
}

static void teardown(struct supervisor *s)
{
	if (s->workers != NULL) {
		command_all(s, RE_WORKER_CMD_STOP);
		for (unsigned i = 0; i < s->nworkers; i++) {
			re_worker_destroy(s->workers[i]);
		}
		free(s->workers);
	}
	re_stats_finish(&s->stats);
	free(s->runtime);
	if (s->reserve_fd >= 0) {
		(void)close(s->reserve_fd);
	}
	if (s->notify_fd >= 0) {
		(void)close(s->notify_fd);
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
		.reserve_fd = -1,
	};
	unsigned n;

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
	if (spawn_workers(&s, n) < 0 || wait_started(&s) < 0) {
		teardown(&s);
		return 1;
	}
	/* Every worker is in the SO_REUSEPORT group now; the reservation has done its
	 * job of keeping the port ours (and refusing a port a live instance serves). */
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

/* control: the control thread. One epoll instance for the control socket, the
 * optional TCP metrics listener, a wake eventfd and up to RE_CONTROL_MAX_CLIENTS
 * clients. Replies are written without blocking and bounded per client, so a client
 * that never reads cannot stall this thread, the supervisor or a worker.
 * Commands are answered by ctlcmd.c; changes are sent to the supervisor over the
 * request channel, and their replies come back the same way.
 */
#include "control.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stddef.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <urcu/urcu-qsbr.h>

#include "ctlcmd.h"
#include "ctlproto.h"
#include "rcu.h"
#include "strbuf.h"

#define CLIENT_OUT_HIGH (64u * 1024u)	/* stop reading commands while this much is unsent */
#define CLIENT_OUT_MAX (32u * 1024u * 1024u)
#define CLIENT_SLOTS RE_CONTROL_MAX_CLIENTS
#define MAX_REJECTS 256			/* clients over the limit waiting for their FIN */
#define LINGER_MS 2000			/* after our FIN: wait this long for the peer's */
#define MAX_EVENTS 32

enum client_mode {
	MODE_NEW,
	MODE_LINE,
	MODE_HTTP,
};

struct client {
	bool used;
	bool tcp;		/* from the metrics listener: HTTP only */
	bool waiting;		/* a request is with the supervisor */
	bool peer_eof;
	bool closing;		/* close once the reply is flushed */
	bool fin_sent;
	enum client_mode mode;
	int fd;
	uint32_t interest;
	uint64_t gen;
	int64_t deadline;	/* idle expiry, or linger expiry after FIN */
	size_t inlen;
	char in[RE_CONTROL_MAX_HTTP + 1];
	struct re_strbuf out;
};

struct re_control {
	struct re_control_params p;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	pthread_t thread;
	bool started;
	_Atomic int state;
	atomic_bool stop;
	char err[320];

	/* Owned by the control thread. */
	int epfd;
	int lfd;
	int mfd;
	bool path_bound;
	dev_t sock_dev;
	ino_t sock_ino;
	char lfd_tag, mfd_tag, wake_tag;
	size_t nreal;		/* clients that count against the limit */
	uint64_t next_gen;
	struct re_control_counters ctr;	/* shown in stats */
	struct re_ctlcmd cmd;
	struct client clients[CLIENT_SLOTS];
	/* Clients over the limit: told "ERR busy" (or 503) at once and FIN'd, then held
	 * only as an fd until their FIN, so the refusal is never turned into a reset. */
	struct reject {
		int fd;
		int64_t deadline;
	} rejects[MAX_REJECTS];
};

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void notify_supervisor(struct re_control *c)
{
	uint64_t one = 1;

	(void)!write(c->p.notify_fd, &one, sizeof(one));
}

static void set_state(struct re_control *c, enum re_control_state s)
{
	atomic_store_explicit(&c->state, (int)s, memory_order_release);
	notify_supervisor(c);
}

/* --- client plumbing --------------------------------------------------------------- */

static void update_interest(struct re_control *c, struct client *cl)
{
	uint32_t want = EPOLLRDHUP;
	struct epoll_event ev;

	/* Stop reading while a request is out or the reply backlog is high: the input
	 * then waits in the kernel and the client is slowed by TCP/unix flow control. */
	if (cl->fin_sent || (!cl->waiting && !cl->closing && !cl->peer_eof &&
			     cl->out.len < CLIENT_OUT_HIGH)) {
		want |= EPOLLIN;
	}
	if (cl->out.len > 0) {
		want |= EPOLLOUT;
	}
	if (want == cl->interest) {
		return;
	}
	ev.events = want;
	ev.data.ptr = cl;
	if (epoll_ctl(c->epfd, EPOLL_CTL_MOD, cl->fd, &ev) == 0) {
		cl->interest = want;
	}
}

static void client_close(struct re_control *c, struct client *cl)
{
	(void)close(cl->fd);
	re_strbuf_finish(&cl->out);
	c->nreal--;
	cl->used = false;
	cl->fd = -1;
}

static void reply_err(struct client *cl, const char *reason)
{
	re_ctlcmd_err(&cl->out, reason);
}

static void http_error(struct client *cl, int status)
{
	re_ctlcmd_http_error(&cl->out, status);
	cl->closing = true;
}

/* --- commands ------------------------------------------------------------------------ */

static void submit(struct re_control *c, struct client *cl, const struct re_ctl_cmd *cmd)
{
	struct re_request *r = calloc(1, sizeof(*r));

	if (r == NULL) {
		reply_err(cl, "out of memory");
		return;
	}
	r->cmd = *cmd;
	r->client = cl;
	r->client_gen = cl->gen;
	cl->waiting = true;
	re_chan_submit(c->p.chan, r);
}

static void handle_line(struct re_control *c, struct client *cl, const char *line, size_t len)
{
	struct re_ctl_cmd cmd;

	switch (re_ctlcmd_line(&c->cmd, line, len, &cl->out, &cmd)) {
	case RE_CTLCMD_REPLIED:
		break;
	case RE_CTLCMD_CLOSE:
		cl->closing = true;
		break;
	case RE_CTLCMD_SUBMIT:
		submit(c, cl, &cmd);
		break;
	}
}

static void handle_http(struct re_control *c, struct client *cl, size_t head_len)
{
	re_ctlcmd_http(&c->cmd, cl->in, head_len, &cl->out);
	cl->closing = true;
}

/* Find the end of an HTTP head: the byte after "\r\n\r\n" or "\n\n". 0 = not yet. */
static size_t http_head_end(const char *p, size_t len)
{
	for (size_t i = 1; i < len; i++) {
		if (p[i] != '\n') {
			continue;
		}
		if (p[i - 1] == '\n') {
			return i + 1;
		}
		if (i >= 3 && p[i - 1] == '\r' && p[i - 2] == '\n' && p[i - 3] == '\r') {
			return i + 1;
		}
	}
	return 0;
}

static void consume_input(struct client *cl, size_t n)
{
	memmove(cl->in, cl->in + n, cl->inlen - n);
	cl->inlen -= n;
}

/* Run every complete command the client sent, in order, until one has to wait for
 * the supervisor or the reply backlog is high. */
static void process_input(struct re_control *c, struct client *cl)
{
	while (!cl->waiting && !cl->closing && cl->out.len < CLIENT_OUT_HIGH && cl->inlen > 0) {
		char *nl = memchr(cl->in, '\n', cl->inlen);
		size_t len;

		if (cl->mode == MODE_HTTP) {
			size_t end = http_head_end(cl->in, cl->inlen);

			if (end == 0) {
				if (cl->inlen >= RE_CONTROL_MAX_HTTP) {
					http_error(cl, 431);
				} else if (cl->peer_eof) {
					http_error(cl, 400);
				}
				return;
			}
			handle_http(c, cl, end);
			return;
		}
		if (nl == NULL) {
			if (cl->inlen > RE_CONTROL_MAX_LINE) {
				reply_err(cl, "line too long (limit 4096 bytes): closing");
				cl->closing = true;
			} else if (cl->peer_eof && cl->mode != MODE_HTTP) {
				/* A last command without "\n" before EOF still counts. */
				cl->mode = MODE_LINE;
				len = cl->inlen;
				cl->in[len] = '\0';
				handle_line(c, cl, cl->in, len);
				consume_input(cl, len);
			}
			return;
		}
		len = (size_t)(nl - cl->in);
		if (len > RE_CONTROL_MAX_LINE) {
			reply_err(cl, "line too long (limit 4096 bytes): closing");
			cl->closing = true;
			return;
		}
		if (cl->mode == MODE_NEW) {
			if (re_ctlproto_is_http(cl->in, len)) {
				cl->mode = MODE_HTTP;
				continue;
			}
			if (cl->tcp) {
				http_error(cl, 400);
				return;
			}
			cl->mode = MODE_LINE;
		}
		handle_line(c, cl, cl->in, len);
		consume_input(cl, len + 1);
	}
}

static void client_flush(struct client *cl)
{
	while (cl->out.len > 0) {
		ssize_t n = send(cl->fd, cl->out.data, cl->out.len, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0) {
			if (errno == EINTR) {
				continue;
			}
			if (errno != EAGAIN && errno != EWOULDBLOCK) {
				/* The peer is gone: drop what it will never read. */
				re_strbuf_reset(&cl->out);
				cl->closing = true;
				cl->fin_sent = true;
			}
			return;
		}
		re_strbuf_consume(&cl->out, (size_t)n);
	}
}

/* After any activity: flush, finish a close, set the next deadline and interest.
 * Returns false when the client was closed. */
static bool client_settle(struct re_control *c, struct client *cl, int64_t now)
{
	client_flush(cl);
	if (cl->out.oom) {
		/* Reply larger than CLIENT_OUT_MAX: say so and close. */
		re_strbuf_reset(&cl->out);
		reply_err(cl, "reply too large");
		cl->closing = true;
	}
	if (cl->out.len == 0 && !cl->waiting && cl->peer_eof && !cl->closing) {
		cl->closing = true;
	}
	if (cl->closing && cl->out.len == 0 && !cl->fin_sent) {
		/* Graceful close: FIN first, then read to the peer's EOF, so close()
		 * never resets the reply out of the peer's receive queue. */
		if (cl->peer_eof || shutdown(cl->fd, SHUT_WR) < 0) {
			client_close(c, cl);
			return false;
		}
		cl->fin_sent = true;
		cl->deadline = now + LINGER_MS;
	}
	update_interest(c, cl);
	return true;
}

static void client_readable(struct re_control *c, struct client *cl)
{
	for (int rounds = 0; rounds < 16; rounds++) {
		char discard[4096];
		ssize_t n;

		if (cl->fin_sent) {
			n = recv(cl->fd, discard, sizeof(discard), MSG_DONTWAIT);
			if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
				client_close(c, cl);
				return;
			}
			if (n < 0) {
				return;
			}
			continue;
		}
		if (cl->waiting || cl->closing || cl->peer_eof || cl->out.len >= CLIENT_OUT_HIGH) {
			return;
		}
		n = recv(cl->fd, cl->in + cl->inlen, RE_CONTROL_MAX_HTTP - cl->inlen, MSG_DONTWAIT);
		if (n > 0) {
			cl->inlen += (size_t)n;
			cl->deadline = mono_ms() + c->p.client_timeout_ms;
			process_input(c, cl);
			if (cl->inlen == RE_CONTROL_MAX_HTTP && !cl->closing && !cl->waiting &&
			    cl->out.len < CLIENT_OUT_HIGH) {
				reply_err(cl, "request too long: closing");
				cl->closing = true;
			}
			continue;
		}
		if (n == 0) {
			cl->peer_eof = true;
			process_input(c, cl);
			return;
		}
		if (errno != EAGAIN && errno != EINTR) {
			client_close(c, cl);
		}
		return;
	}
}

static void reject_close(struct reject *rj)
{
	(void)close(rj->fd);
	rj->fd = -1;
}

/* Over the client limit: answer at once, send FIN, and keep only the fd until the
 * client's FIN (or LINGER_MS), so that close() never resets the refusal away. */
static void reject_busy(struct re_control *c, int fd, bool tcp)
{
	static const char busy[] = "ERR busy\n\n";
	static const char busy_http[] =
		"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
		"Content-Length: 5\r\nConnection: close\r\n\r\nbusy\n";
	struct reject *rj = NULL, *oldest = NULL;
	struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP };

	/* A new socket's send buffer is empty: this short reply always fits. */
	if (tcp) {
		(void)!send(fd, busy_http, sizeof(busy_http) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
	} else {
		(void)!send(fd, busy, sizeof(busy) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
	}
	if (shutdown(fd, SHUT_WR) < 0) {
		(void)close(fd);
		return;
	}
	for (size_t k = 0; k < MAX_REJECTS; k++) {
		if (c->rejects[k].fd < 0) {
			rj = &c->rejects[k];
			break;
		}
		if (oldest == NULL || c->rejects[k].deadline < oldest->deadline) {
			oldest = &c->rejects[k];
		}
	}
	if (rj == NULL) {
		reject_close(oldest);	/* a flood: the longest-waiting one goes first */
		rj = oldest;
	}
	rj->fd = fd;
	rj->deadline = mono_ms() + LINGER_MS;
	ev.data.ptr = rj;
	if (epoll_ctl(c->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		reject_close(rj);
	}
}

static bool is_reject(const struct re_control *c, const void *ptr)
{
	return (const char *)ptr >= (const char *)c->rejects &&
	       (const char *)ptr < (const char *)(c->rejects + MAX_REJECTS);
}

/* Discard what a refused client sends until its EOF. */
static void reject_readable(struct reject *rj)
{
	char discard[4096];

	for (int i = 0; i < 16; i++) {
		ssize_t n = recv(rj->fd, discard, sizeof(discard), MSG_DONTWAIT);

		if (n > 0) {
			continue;
		}
		if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
			reject_close(rj);
		}
		return;
	}
}

static void accept_clients(struct re_control *c, int lfd, bool tcp)
{
	for (int i = 0; i < 64; i++) {
		struct epoll_event ev;
		struct client *cl = NULL;
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			return;		/* EAGAIN, or an fd limit: the next wakeup retries */
		}
		if (!tcp) {
			struct ucred cred;
			socklen_t clen = sizeof(cred);

			/* Same user or root only; a group-writable --control-mode does not
			 * widen who may steer the server. */
			if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) < 0 ||
			    (cred.uid != 0 && cred.uid != geteuid())) {
				(void)close(fd);
				continue;
			}
		}
		for (size_t k = 0; k < CLIENT_SLOTS; k++) {
			if (!c->clients[k].used) {
				cl = &c->clients[k];
				break;
			}
		}
		if (cl == NULL) {
			reject_busy(c, fd, tcp);
			continue;
		}
		memset(cl, 0, offsetof(struct client, in));
		cl->used = true;
		cl->fd = fd;
		cl->tcp = tcp;
		cl->gen = ++c->next_gen;
		cl->deadline = mono_ms() + c->p.client_timeout_ms;
		re_strbuf_init(&cl->out, CLIENT_OUT_MAX);
		c->nreal++;
		ev.events = EPOLLIN | EPOLLRDHUP;
		ev.data.ptr = cl;
		if (epoll_ctl(c->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
			client_close(c, cl);
			continue;
		}
		cl->interest = ev.events;
		(void)client_settle(c, cl, mono_ms());
	}
}

static void take_replies(struct re_control *c)
{
	struct re_request *r = re_chan_take_done(c->p.chan);

	while (r != NULL) {
		struct re_request *next = r->next;
		struct client *cl = r->client;

		/* The client may have gone (and its slot been reused) meanwhile. */
		if (cl->used && cl->gen == r->client_gen) {
			cl->waiting = false;
			if (r->status == 0) {
				re_strbuf_printf(&cl->out, "OK %s\n\n", r->reply);
			} else {
				reply_err(cl, r->reply);
			}
			process_input(c, cl);
			(void)client_settle(c, cl, mono_ms());
		}
		free(r);
		r = next;
	}
}

static void expire_clients(struct re_control *c, int64_t now)
{
	for (size_t k = 0; k < MAX_REJECTS; k++) {
		if (c->rejects[k].fd >= 0 && now >= c->rejects[k].deadline) {
			reject_close(&c->rejects[k]);
		}
	}
	for (size_t k = 0; k < CLIENT_SLOTS; k++) {
		struct client *cl = &c->clients[k];

		if (!cl->used || cl->waiting || now < cl->deadline) {
			continue;
		}
		if (cl->fin_sent || cl->closing) {
			client_close(c, cl);	/* linger over, or a reply nobody reads */
			continue;
		}
		if (cl->mode != MODE_HTTP && !cl->tcp) {
			reply_err(cl, "idle timeout: closing");
		}
		cl->closing = true;
		(void)client_settle(c, cl, now);
		if (cl->used && !cl->fin_sent) {
			client_close(c, cl);	/* could not even flush the notice */
		}
	}
}

static int next_timeout(const struct re_control *c, int64_t now)
{
	int64_t t = -1;

	for (size_t k = 0; k < MAX_REJECTS; k++) {
		if (c->rejects[k].fd >= 0 && (t < 0 || c->rejects[k].deadline < t)) {
			t = c->rejects[k].deadline;
		}
	}

	for (size_t k = 0; k < CLIENT_SLOTS; k++) {
		const struct client *cl = &c->clients[k];

		if (cl->used && !cl->waiting && (t < 0 || cl->deadline < t)) {
			t = cl->deadline;
		}
	}
	if (t < 0) {
		return -1;
	}
	return t <= now ? 0 : (int)(t - now);
}

static void control_loop(struct re_control *c)
{
	struct epoll_event evs[MAX_EVENTS];

	while (!atomic_load_explicit(&c->stop, memory_order_acquire)) {
		int64_t now = mono_ms();
		int n = epoll_wait(c->epfd, evs, MAX_EVENTS, next_timeout(c, now));

		if (n < 0 && errno != EINTR) {
			snprintf(c->err, sizeof(c->err), "epoll_wait: %s", strerror(errno));
			return;
		}
		now = mono_ms();
		for (int i = 0; i < n; i++) {
			void *ptr = evs[i].data.ptr;
			struct client *cl = ptr;

			if (ptr == &c->lfd_tag) {
				accept_clients(c, c->lfd, false);
			} else if (ptr == &c->mfd_tag) {
				accept_clients(c, c->mfd, true);
			} else if (is_reject(c, ptr)) {
				if (((struct reject *)ptr)->fd >= 0) {
					reject_readable(ptr);
				}
			} else if (ptr == &c->wake_tag) {
				uint64_t v;

				(void)!read(c->p.chan->ctl_fd, &v, sizeof(v));
			} else if (cl->used) {
				if (evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
					client_readable(c, cl);
				}
				if (cl->used) {
					(void)client_settle(c, cl, now);
				}
			}
		}
		take_replies(c);
		expire_clients(c, now);
	}
}

/* --- set-up ------------------------------------------------------------------------- */

/* Create the control socket: never unlink something that is not a socket, refuse a
 * path a live instance answers on, replace a stale one; 0600 (or --control-mode)
 * from the moment it exists, by binding under a restrictive umask. */
static int open_unix(struct re_control *c)
{
	struct sockaddr_un sun;
	struct stat st;
	mode_t old;
	int fd, r;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(c->path) >= sizeof(sun.sun_path) || c->path[0] == '\0') {
		snprintf(c->err, sizeof(c->err), "control socket %s: path too long", c->path);
		return -ENAMETOOLONG;
	}
	memcpy(sun.sun_path, c->path, strlen(c->path));
	if (lstat(c->path, &st) == 0) {
		int probe;

		if (!S_ISSOCK(st.st_mode)) {
			snprintf(c->err, sizeof(c->err),
				 "control socket %s: exists and is not a socket; not removing it", c->path);
			return -EEXIST;
		}
		if (c->p.replace_live) {
			/* Takeover: the old instance keeps its listening fd and its clients;
			 * new clients reach us. It does not unlink a path that is no longer
			 * its socket. */
			if (unlink(c->path) < 0 && errno != ENOENT) {
				r = -errno;
				snprintf(c->err, sizeof(c->err), "unlink %s: %s", c->path, strerror(-r));
				return r;
			}
			goto create;
		}
		probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (probe < 0) {
			r = -errno;
			snprintf(c->err, sizeof(c->err), "socket: %s", strerror(-r));
			return r;
		}
		r = connect(probe, (struct sockaddr *)&sun, sizeof(sun)) == 0 ? 0 : -errno;
		(void)close(probe);
		if (r == 0) {
			snprintf(c->err, sizeof(c->err),
				 "control socket %s: another live instance answers on it (use --control PATH)",
				 c->path);
			return -EADDRINUSE;
		}
		if (r != -ECONNREFUSED) {
			snprintf(c->err, sizeof(c->err), "connect %s: %s", c->path, strerror(-r));
			return r;
		}
		if (unlink(c->path) < 0 && errno != ENOENT) {
			r = -errno;
			snprintf(c->err, sizeof(c->err), "unlink stale %s: %s", c->path, strerror(-r));
			return r;
		}
	}
create:
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		r = -errno;
		snprintf(c->err, sizeof(c->err), "socket: %s", strerror(-r));
		return r;
	}
	old = umask((mode_t)(~c->p.mode & 0777));
	r = bind(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0 ? 0 : -errno;
	umask(old);
	if (r == 0 && listen(fd, 64) < 0) {
		r = -errno;
	}
	if (r == 0 && lstat(c->path, &st) == 0) {
		c->sock_dev = st.st_dev;
		c->sock_ino = st.st_ino;
		c->path_bound = true;
	}
	if (r < 0) {
		snprintf(c->err, sizeof(c->err), "bind %s: %s", c->path, strerror(-r));
		(void)close(fd);
		return r;
	}
	return fd;
}

static int open_metrics(struct re_control *c)
{
	int one = 1, r;
	int fd = socket(c->p.metrics_addr.ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	char where[160];

	re_net_format_addr(&c->p.metrics_addr, where, sizeof(where));
	if (fd < 0) {
		r = -errno;
		snprintf(c->err, sizeof(c->err), "socket: %s", strerror(-r));
		return r;
	}
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, (const struct sockaddr *)&c->p.metrics_addr.ss, c->p.metrics_addr.len) < 0 ||
	    listen(fd, 64) < 0) {
		r = -errno;
		snprintf(c->err, sizeof(c->err), "bind %s (--metrics-listen): %s", where, strerror(-r));
		(void)close(fd);
		return r;
	}
	return fd;
}

static int add_fd(struct re_control *c, int fd, void *tag)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = tag };

	if (epoll_ctl(c->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		int r = -errno;

		snprintf(c->err, sizeof(c->err), "epoll_ctl: %s", strerror(-r));
		return r;
	}
	return 0;
}

static int control_setup(struct re_control *c)
{
	c->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (c->epfd < 0) {
		snprintf(c->err, sizeof(c->err), "epoll_create1: %s", strerror(errno));
		return -1;
	}
	if (add_fd(c, c->p.chan->ctl_fd, &c->wake_tag) < 0) {
		return -1;
	}
	re_ctlcmd_init(&c->cmd, &c->p, &c->ctr);
	if (c->p.path != NULL) {
		c->lfd = open_unix(c);
		if (c->lfd < 0 || add_fd(c, c->lfd, &c->lfd_tag) < 0) {
			return -1;
		}
	}
	if (c->p.metrics) {
		c->mfd = open_metrics(c);
		if (c->mfd < 0 || add_fd(c, c->mfd, &c->mfd_tag) < 0) {
			return -1;
		}
	}
	return 0;
}

static void control_teardown(struct re_control *c)
{
	struct stat st;

	for (size_t k = 0; k < CLIENT_SLOTS; k++) {
		if (c->clients[k].used) {
			client_close(c, &c->clients[k]);
		}
	}
	for (size_t k = 0; k < MAX_REJECTS; k++) {
		if (c->rejects[k].fd >= 0) {
			reject_close(&c->rejects[k]);
		}
	}
	if (c->lfd >= 0) {
		(void)close(c->lfd);
		c->lfd = -1;
	}
	/* Remove the path only while it is still the socket we created. */
	if (c->path_bound && lstat(c->path, &st) == 0 && st.st_dev == c->sock_dev &&
	    st.st_ino == c->sock_ino) {
		(void)unlink(c->path);
	}
	c->path_bound = false;
	if (c->mfd >= 0) {
		(void)close(c->mfd);
		c->mfd = -1;
	}
	if (c->epfd >= 0) {
		(void)close(c->epfd);
		c->epfd = -1;
	}
	re_ctlcmd_finish(&c->cmd);
}

static void *control_main(void *arg)
{
	struct re_control *c = arg;

	(void)pthread_setname_np(pthread_self(), "reuseecho-ctl");
	urcu_qsbr_register_thread();
	re_rcu_thread_offline();	/* online only while copying statistics */
	if (control_setup(c) < 0) {
		control_teardown(c);
		urcu_qsbr_unregister_thread();
		set_state(c, RE_CONTROL_FAILED);
		return NULL;
	}
	set_state(c, RE_CONTROL_RUNNING);
	control_loop(c);
	control_teardown(c);
	re_rcu_thread_online();
	urcu_qsbr_unregister_thread();
	set_state(c, c->err[0] ? RE_CONTROL_FAILED : RE_CONTROL_EXITED);
	return NULL;
}

struct re_control *re_control_create(const struct re_control_params *params)
{
	struct re_control *c = calloc(1, sizeof(*c));

	if (c == NULL) {
		return NULL;
	}
	c->p = *params;
	if (params->path != NULL) {
		snprintf(c->path, sizeof(c->path), "%s", params->path);
		c->p.path = c->path;
	}
	c->epfd = -1;
	c->lfd = -1;
	c->mfd = -1;
	for (size_t k = 0; k < CLIENT_SLOTS; k++) {
		c->clients[k].fd = -1;
	}
	for (size_t k = 0; k < MAX_REJECTS; k++) {
		c->rejects[k].fd = -1;
	}
	atomic_init(&c->state, RE_CONTROL_STARTING);
	atomic_init(&c->stop, false);
	return c;
}

int re_control_start(struct re_control *c)
{
	int r = pthread_create(&c->thread, NULL, control_main, c);

	if (r != 0) {
		return -r;
	}
	c->started = true;
	return 0;
}

enum re_control_state re_control_state(const struct re_control *c)
{
	return (enum re_control_state)atomic_load_explicit(&c->state, memory_order_acquire);
}

const char *re_control_error(const struct re_control *c)
{
	return c->err;
}

void re_control_stop(struct re_control *c)
{
	uint64_t one = 1;

	if (c == NULL) {
		return;
	}
	atomic_store_explicit(&c->stop, true, memory_order_release);
	(void)!write(c->p.chan->ctl_fd, &one, sizeof(one));
}

void re_control_destroy(struct re_control *c)
{
	if (c == NULL) {
		return;
	}
	if (c->started) {
		re_control_stop(c);
		(void)pthread_join(c->thread, NULL);
	}
	free(c);
}

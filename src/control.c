/* control: the control thread's client engine. One epoll instance for the Unix admin
 * socket, the optional TCP metrics listener (--metrics-listen), a wake eventfd and the
 * clients of each, with a separate budget per listener: RE_CONTROL_MAX_CLIENTS admin
 * clients (the next one is told "ERR busy") and RE_CONTROL_MAX_TCP_CLIENTS HTTP
 * clients (the next one evicts the longest-idle one; each must send its request head
 * within RE_CONTROL_HEADER_TIMEOUT_MS). At the fd limit the admin socket accepts with
 * a reserve of descriptors; a listener that cannot accept is paused on a timer, never
 * polled in a loop. Replies are written without blocking and bounded per client, so a
 * client that never reads cannot stall this thread, the supervisor or a worker.
 * Commands are answered by ctlcmd.c; changes go to the supervisor over the request
 * channel, and their replies come back the same way.
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
#define UNIX_SLOTS RE_CONTROL_MAX_CLIENTS
#define TCP_SLOTS RE_CONTROL_MAX_TCP_CLIENTS
#define MAX_REJECTS 256			/* refused clients waiting for their FIN */
#define LINGER_MS 2000			/* after our FIN: wait this long for the peer's */
#define ACCEPT_BACKOFF_MS 100		/* a listener that cannot accept rests this long */
#define RESERVE_FDS RE_CONTROL_FD_RESERVE
#define RESERVE_RETRY_MS 1000		/* refill the reserve at most this often */
#define MAX_EVENTS 32
#define PER_TURN_COMMANDS 1		/* commands run per client per loop turn */
#define NO_DEADLINE INT64_MAX

/* A client's life. The deadline belongs to the state: READING, the idle timeout (Unix)
 * or the request-head deadline (TCP); WAITING, none (the supervisor always answers);
 * CLOSING, the time to flush the reply; LINGER, the wait for the peer's FIN. */
enum client_state {
	CL_FREE = 0,
	CL_READING,		/* reading and running commands */
	CL_WAITING,		/* a request is with the supervisor; input waits in the kernel */
	CL_CLOSING,		/* send what is left, then FIN */
	CL_LINGER,		/* FIN sent: read and drop until the peer's FIN or the deadline */
};

enum client_mode {
	MODE_NEW,
	MODE_LINE,
	MODE_HTTP,
};

/* What the peer did, as learned from events and reads (facts, not our state). */
enum {
	PEER_FIN = 1u << 0,	/* it sends no more (EPOLLRDHUP, or recv returned 0) */
	PEER_EOF_READ = 1u << 1,	/* recv returned 0: all it sent has been read */
	PEER_HUP = 1u << 2,	/* EPOLLHUP/EPOLLERR: reported whatever we ask for */
};

struct client {
	enum client_state state;
	enum client_mode mode;
	enum re_control_listener listener;
	unsigned peer;			/* PEER_* */
	int fd;
	bool watched;			/* registered with epoll (with interest) */
	bool ready;			/* held-back commands can run: no event will say so */
	uint32_t interest;
	uint64_t gen;
	int64_t deadline;
	int64_t last_active;		/* last byte in or out: eviction picks the oldest */
	uint64_t born;			/* the loop turn it was admitted in */
	size_t inlen;
	char in[RE_CONTROL_MAX_HTTP + 1];
	struct re_strbuf out;
};

struct listener {
	int fd;
	enum re_control_listener kind;
	bool paused;			/* not watched until resume_at */
	int64_t resume_at;
	struct client *slots;
	size_t nslots;
};

struct re_control {
	struct re_control_params p;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	pthread_t thread;
	bool started;
	_Atomic int state;
	atomic_bool stop;
	char err[320];
	/* Written by the control thread before path_bound is set (release); read by
	 * re_control_unlink_now from any thread. */
	atomic_bool path_bound;
	dev_t sock_dev;
	ino_t sock_ino;
	struct timespec sock_mtime;	/* with dev/ino: a file system may give a successor's
					 * socket at the same path our freed inode number */

	/* Owned by the control thread. */
	int epfd;
	char wake_tag;
	struct listener lis[RE_CONTROL_NLISTENERS];
	uint64_t next_gen;
	uint64_t turn;			/* loop turns: tells a stale event from a fresh one */
	struct re_control_counters ctr;
	struct re_ctlcmd cmd;
	/* The fd reserve: a /dev/null template and up to RESERVE_FDS copies of it, whose
	 * numbers the workers cannot take. */
	int reserve_template;
	int reserve[RESERVE_FDS];
	size_t nreserve;
	int64_t reserve_retry_at;	/* 0 = full, nothing to retry */
	struct client unix_clients[UNIX_SLOTS];
	struct client tcp_clients[TCP_SLOTS];
	/* Clients over budget: told "ERR busy" (or 503) at once and FIN'd, then held
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

/* --- the fd reserve ------------------------------------------------------------------ */

/* Top the reserve up; at the fd limit try again in RESERVE_RETRY_MS, not sooner. */
static void reserve_refill(struct re_control *c, int64_t now)
{
	while (c->reserve_template >= 0 && c->nreserve < RESERVE_FDS) {
		int fd = fcntl(c->reserve_template, F_DUPFD_CLOEXEC, 0);

		if (fd < 0) {
			c->reserve_retry_at = now + RESERVE_RETRY_MS;
			c->ctr.fd_reserve_free = (uint32_t)c->nreserve;
			return;
		}
		c->reserve[c->nreserve++] = fd;
	}
	c->reserve_retry_at = 0;
	c->ctr.fd_reserve_free = (uint32_t)c->nreserve;
}

/* Give one reserve number back to the process so that the next accept gets it.
 * Another thread may take it first; the caller's accept then fails again and may
 * take another. Returns false when the reserve is empty. */
static bool reserve_take(struct re_control *c, int64_t now)
{
	if (c->nreserve == 0) {
		return false;
	}
	(void)close(c->reserve[--c->nreserve]);
	c->ctr.fd_reserve_uses++;
	c->ctr.fd_reserve_free = (uint32_t)c->nreserve;
	if (c->reserve_retry_at == 0) {
		c->reserve_retry_at = now + RESERVE_RETRY_MS;
	}
	return true;
}

/* Close a client's fd. While the reserve is short, turn its number into a reserve
 * descriptor instead: dup3 over it closes the socket and re-reserves the number in
 * one step, so no worker's accept can take the number in between. */
static void release_fd(struct re_control *c, int fd)
{
	if (c->reserve_template >= 0 && c->nreserve < RESERVE_FDS &&
	    dup3(c->reserve_template, fd, O_CLOEXEC) == fd) {
		c->reserve[c->nreserve++] = fd;
		c->ctr.fd_reserve_free = (uint32_t)c->nreserve;
		if (c->nreserve == RESERVE_FDS) {
			c->reserve_retry_at = 0;
		}
		return;
	}
	(void)close(fd);
}

/* --- client plumbing --------------------------------------------------------------- */

static void client_enter(struct re_control *c, struct client *cl, enum client_state st,
			 int64_t now)
{
	cl->state = st;
	switch (st) {
	case CL_READING:
		/* A TCP client keeps the request-head deadline it got at accept. */
		if (cl->listener == RE_CONTROL_UNIX) {
			cl->deadline = now + c->p.client_timeout_ms;
		}
		break;
	case CL_WAITING:
		cl->deadline = NO_DEADLINE;
		break;
	case CL_CLOSING:
		cl->deadline = now + c->p.client_timeout_ms;
		break;
	case CL_LINGER:
		cl->deadline = now + LINGER_MS;
		break;
	case CL_FREE:
		break;
	}
}

/* Watch for what this state can act on. Input is watched only while it is read; the
 * peer's FIN (EPOLLRDHUP, level-triggered) is watched until it is seen once, then no
 * more, so a half-closed client whose input is not being read cannot make epoll_wait
 * return at once forever. EPOLLHUP cannot be masked: after it, a client with nothing
 * to read or write is taken out of epoll until it has (a reply from the supervisor). */
static void update_interest(struct re_control *c, struct client *cl)
{
	uint32_t want = 0;
	struct epoll_event ev;

	if (cl->state == CL_LINGER ||
	    (cl->state == CL_READING && !(cl->peer & PEER_EOF_READ) && cl->out.len < CLIENT_OUT_HIGH)) {
		want = EPOLLIN | EPOLLRDHUP;
	} else if (!(cl->peer & PEER_FIN)) {
		want = EPOLLRDHUP;
	}
	if (cl->state != CL_LINGER && cl->out.len > 0) {
		want |= EPOLLOUT;
	}
	if ((cl->peer & PEER_HUP) && !(want & (EPOLLIN | EPOLLOUT))) {
		if (cl->watched && epoll_ctl(c->epfd, EPOLL_CTL_DEL, cl->fd, NULL) == 0) {
			cl->watched = false;
		}
		return;
	}
	if (cl->watched && want == cl->interest) {
		return;
	}
	ev.events = want;
	ev.data.ptr = cl;
	if (epoll_ctl(c->epfd, cl->watched ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, cl->fd, &ev) == 0) {
		cl->watched = true;
		cl->interest = want;
	}
}

static void client_close(struct re_control *c, struct client *cl)
{
	if (cl->watched) {
		(void)epoll_ctl(c->epfd, EPOLL_CTL_DEL, cl->fd, NULL);
	}
	release_fd(c, cl->fd);
	re_strbuf_finish(&cl->out);
	c->ctr.clients[cl->listener]--;
	cl->state = CL_FREE;
	cl->watched = false;
	cl->fd = -1;
}

/* --- commands ---------------------------------------------------------------------- */

static void submit(struct re_control *c, struct client *cl, const struct re_ctl_cmd *cmd,
		   int64_t now)
{
	struct re_request *r = calloc(1, sizeof(*r));

	if (r == NULL) {
		re_ctlcmd_err(&cl->out, "out of memory");
		return;
	}
	r->cmd = *cmd;
	r->client = cl;
	r->client_gen = cl->gen;
	client_enter(c, cl, CL_WAITING, now);
	re_chan_submit(c->p.chan, r);
}

static void run_line(struct re_control *c, struct client *cl, const char *line, size_t len,
		     int64_t now)
{
	struct re_ctl_cmd cmd;

	switch (re_ctlcmd_line(&c->cmd, line, len, &cl->out, &cmd)) {
	case RE_CTLCMD_REPLIED:
		break;
	case RE_CTLCMD_CLOSE:
		client_enter(c, cl, CL_CLOSING, now);
		break;
	case RE_CTLCMD_SUBMIT:
		submit(c, cl, &cmd, now);
		break;
	}
}

static void reply_http_error(struct re_control *c, struct client *cl, int status, int64_t now)
{
	re_ctlcmd_http_error(&cl->out, status);
	client_enter(c, cl, CL_CLOSING, now);
}

static void reply_err_close(struct re_control *c, struct client *cl, const char *why,
			    int64_t now)
{
	re_ctlcmd_err(&cl->out, why);
	client_enter(c, cl, CL_CLOSING, now);
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

/* Run the next complete command the client sent (PER_TURN_COMMANDS at most), in
 * order, unless one has to wait for the supervisor, the client is closing, or the
 * reply backlog is high. The rest wait for the client's next turn (see "ready"), so
 * a client that pipelines thousands of `metrics` delays another by one reply each. */
static void process_input(struct re_control *c, struct client *cl, int64_t now)
{
	bool tcp = cl->listener == RE_CONTROL_TCP;
	int budget = PER_TURN_COMMANDS;

	while (budget > 0 && cl->state == CL_READING && cl->out.len < CLIENT_OUT_HIGH &&
	       cl->inlen > 0) {
		char *nl = memchr(cl->in, '\n', cl->inlen);
		size_t len;

		if (cl->mode == MODE_HTTP) {
			size_t end = http_head_end(cl->in, cl->inlen);

			if (end == 0) {
				if (cl->inlen >= RE_CONTROL_MAX_HTTP) {
					reply_http_error(c, cl, 431, now);
				} else if (cl->peer & PEER_EOF_READ) {
					reply_http_error(c, cl, 400, now);
				}
				return;
			}
			re_ctlcmd_http(&c->cmd, cl->in, end, &cl->out);
			cl->inlen = 0;		/* one request per connection */
			client_enter(c, cl, CL_CLOSING, now);
			return;
		}
		if (nl == NULL) {
			if (cl->inlen > RE_CONTROL_MAX_LINE) {
				reply_err_close(c, cl, "line too long (limit 4096 bytes): closing", now);
			} else if ((cl->peer & PEER_EOF_READ) && tcp) {
				reply_http_error(c, cl, 400, now);	/* TCP speaks HTTP only */
			} else if (cl->peer & PEER_EOF_READ) {
				/* A last command without "\n" before EOF still counts. */
				cl->mode = MODE_LINE;
				len = cl->inlen;
				cl->in[len] = '\0';
				cl->inlen = 0;
				run_line(c, cl, cl->in, len, now);
			}
			return;
		}
		len = (size_t)(nl - cl->in);
		if (len > RE_CONTROL_MAX_LINE) {
			reply_err_close(c, cl, "line too long (limit 4096 bytes): closing", now);
			return;
		}
		if (cl->mode == MODE_NEW) {
			if (re_ctlproto_is_http(cl->in, len)) {
				cl->mode = MODE_HTTP;
				continue;
			}
			if (tcp) {
				reply_http_error(c, cl, 400, now);
				return;
			}
			cl->mode = MODE_LINE;
		}
		run_line(c, cl, cl->in, len, now);
		consume_input(cl, len + 1);
		budget--;
	}
}

/* Send what is queued without blocking. Returns 0, or -1 when the peer is gone (the
 * caller closes). Progress counts as activity. */
static int client_flush(struct re_control *c, struct client *cl, int64_t now)
{
	bool progress = false;
	int r = 0;

	while (cl->out.len > 0) {
		ssize_t n = send(cl->fd, cl->out.data, cl->out.len, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0) {
			if (errno == EINTR) {
				continue;
			}
			if (errno != EAGAIN && errno != EWOULDBLOCK) {
				r = -1;
			}
			break;
		}
		re_strbuf_consume(&cl->out, (size_t)n);
		progress = true;
	}
	if (progress) {
		cl->last_active = now;
		if (cl->state == CL_CLOSING ||
		    (cl->state == CL_READING && cl->listener == RE_CONTROL_UNIX)) {
			cl->deadline = now + c->p.client_timeout_ms;
		}
	}
	return r;
}

/* After any activity: send, run commands the backlog held back, finish a close, and
 * watch for what the new state needs. Returns false when the client was closed. */
static bool client_settle(struct re_control *c, struct client *cl, int64_t now)
{
	if (cl->state == CL_LINGER) {
		update_interest(c, cl);
		return true;
	}
	cl->ready = false;
	if (client_flush(c, cl, now) < 0) {
		client_close(c, cl);	/* the peer is gone: drop what it will never read */
		return false;
	}
	/* Commands held back (by the per-turn budget or the reply backlog): no new input
	 * may come to trigger them, so while a round made progress and more can run, the
	 * client is "ready" and the loop comes back to it without waiting. */
	if (cl->state == CL_READING && cl->inlen > 0 && cl->out.len < CLIENT_OUT_HIGH) {
		size_t before = cl->inlen;

		process_input(c, cl, now);
		if (client_flush(c, cl, now) < 0) {
			client_close(c, cl);
			return false;
		}
		cl->ready = cl->state == CL_READING && cl->inlen > 0 && cl->inlen < before &&
			    cl->out.len < CLIENT_OUT_HIGH;
	}
	if (cl->out.oom) {
		/* Reply larger than CLIENT_OUT_MAX: say so and close. */
		re_strbuf_reset(&cl->out);
		if (cl->mode == MODE_HTTP) {
			reply_http_error(c, cl, 500, now);
		} else {
			reply_err_close(c, cl, "reply too large", now);
		}
		if (client_flush(c, cl, now) < 0) {
			client_close(c, cl);
			return false;
		}
	}
	if (cl->state == CL_READING && (cl->peer & PEER_EOF_READ) && cl->inlen == 0) {
		client_enter(c, cl, CL_CLOSING, now);
	}
	if (cl->state == CL_CLOSING && cl->out.len == 0) {
		/* Graceful close: FIN first, then read to the peer's EOF, so close() never
		 * resets the reply out of the peer's receive queue. */
		if ((cl->peer & (PEER_EOF_READ | PEER_HUP)) || shutdown(cl->fd, SHUT_WR) < 0) {
			client_close(c, cl);
			return false;
		}
		client_enter(c, cl, CL_LINGER, now);
	}
	update_interest(c, cl);
	return true;
}

static void client_readable(struct re_control *c, struct client *cl, int64_t now)
{
	for (int rounds = 0; rounds < 16; rounds++) {
		char discard[4096];
		ssize_t n;

		if (cl->state == CL_LINGER) {
			n = recv(cl->fd, discard, sizeof(discard), MSG_DONTWAIT);
			if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
				client_close(c, cl);
				return;
			}
			if (n < 0 && errno != EINTR) {
				return;
			}
			continue;
		}
		if (cl->state != CL_READING || (cl->peer & PEER_EOF_READ) ||
		    cl->out.len >= CLIENT_OUT_HIGH || cl->inlen >= RE_CONTROL_MAX_HTTP) {
			return;
		}
		n = recv(cl->fd, cl->in + cl->inlen, RE_CONTROL_MAX_HTTP - cl->inlen, MSG_DONTWAIT);
		if (n > 0) {
			cl->inlen += (size_t)n;
			cl->last_active = now;
			if (cl->listener == RE_CONTROL_UNIX) {
				cl->deadline = now + c->p.client_timeout_ms;
			}
			process_input(c, cl, now);
			if (cl->inlen == RE_CONTROL_MAX_HTTP && cl->state == CL_READING &&
			    cl->out.len < CLIENT_OUT_HIGH) {
				reply_err_close(c, cl, "request too long: closing", now);
			}
			continue;
		}
		if (n == 0) {
			cl->peer |= PEER_FIN | PEER_EOF_READ;
			process_input(c, cl, now);
			return;
		}
		if (errno == EINTR) {
			continue;
		}
		if (errno != EAGAIN && errno != EWOULDBLOCK) {
			client_close(c, cl);
		}
		return;
	}
}

static void client_event(struct re_control *c, struct client *cl, uint32_t events, int64_t now)
{
	if (events & EPOLLRDHUP) {
		cl->peer |= PEER_FIN;
	}
	if (events & (EPOLLHUP | EPOLLERR)) {
		cl->peer |= PEER_FIN | PEER_HUP;
	}
	if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
		client_readable(c, cl, now);
	}
	if (cl->state != CL_FREE) {
		(void)client_settle(c, cl, now);
	}
}

/* --- refusals -------------------------------------------------------------------------- */

static void reject_close(struct re_control *c, struct reject *rj)
{
	release_fd(c, rj->fd);
	rj->fd = -1;
}

/* Over the budget (admin socket: full; TCP: full of clients admitted this turn):
 * answer "ERR busy" or 503 at once, send FIN, and keep only the fd until the client's
 * FIN (or LINGER_MS), so that close() never resets the refusal away. */
static void reject_busy(struct re_control *c, int fd, enum re_control_listener kind, int64_t now)
{
	static const char busy[] = "ERR busy\n\n";
	static const char busy_http[] =
		"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
		"Content-Length: 5\r\nConnection: close\r\n\r\nbusy\n";
	struct reject *rj = NULL, *oldest = NULL;
	struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP };

	/* A new socket's send buffer is empty: this short reply always fits. */
	if (kind == RE_CONTROL_TCP) {
		c->ctr.refused_tcp++;
		(void)!send(fd, busy_http, sizeof(busy_http) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
	} else {
		c->ctr.refused_busy++;
		(void)!send(fd, busy, sizeof(busy) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
	}
	if (shutdown(fd, SHUT_WR) < 0) {
		release_fd(c, fd);
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
		reject_close(c, oldest);	/* a flood: the longest-waiting one goes first */
		rj = oldest;
	}
	rj->fd = fd;
	rj->deadline = now + LINGER_MS;
	ev.data.ptr = rj;
	if (epoll_ctl(c->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		reject_close(c, rj);
	}
}

static bool in_range(const void *ptr, const void *base, size_t size)
{
	return (const char *)ptr >= (const char *)base && (const char *)ptr < (const char *)base + size;
}

/* Discard what a refused client sends until its EOF (the first EPOLLRDHUP or HUP
 * ends it: a refusal is not worth more of this thread's time). */
static void reject_readable(struct re_control *c, struct reject *rj, uint32_t events)
{
	char discard[4096];

	for (int i = 0; i < 16; i++) {
		ssize_t n = recv(rj->fd, discard, sizeof(discard), MSG_DONTWAIT);

		if (n > 0) {
			continue;
		}
		if (n == 0 || (errno != EAGAIN && errno != EINTR) ||
		    (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))) {
			reject_close(c, rj);
		}
		return;
	}
}

/* --- accepting ------------------------------------------------------------------------ */

/* Stop watching a listener that cannot accept (at the fd limit its queue stays
 * readable: level-triggered epoll would return at once forever) and retry later. */
static void pause_listener(struct re_control *c, struct listener *l, int64_t now)
{
	struct epoll_event ev = { .events = 0, .data.ptr = l };

	c->ctr.accept_backoffs[l->kind]++;
	if (!l->paused && epoll_ctl(c->epfd, EPOLL_CTL_MOD, l->fd, &ev) == 0) {
		l->paused = true;
	}
	l->resume_at = now + ACCEPT_BACKOFF_MS;
}

/* The TCP budget is full: close the client idle longest (no byte in or out; the
 * older one on a tie). One admitted in this loop turn has had no chance to send its
 * request yet and is never the victim: NULL when every client is that new. */
static struct client *evict_longest_idle(struct re_control *c, struct listener *l)
{
	struct client *victim = NULL;

	for (size_t k = 0; k < l->nslots; k++) {
		struct client *cl = &l->slots[k];

		if (cl->state == CL_FREE || cl->state == CL_WAITING || cl->born == c->turn) {
			continue;
		}
		if (victim == NULL || cl->last_active < victim->last_active ||
		    (cl->last_active == victim->last_active && cl->gen < victim->gen)) {
			victim = cl;
		}
	}
	if (victim != NULL) {
		c->ctr.evicted++;
		client_close(c, victim);
	}
	return victim;
}

static void admit(struct re_control *c, struct listener *l, int fd, int64_t now)
{
	struct client *cl = NULL;

	if (l->kind == RE_CONTROL_UNIX) {
		struct ucred cred;
		socklen_t clen = sizeof(cred);

		/* Same user or root only; a group-writable --control-mode does not widen who
		 * may steer the server. */
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) < 0 ||
		    (cred.uid != 0 && cred.uid != geteuid())) {
			c->ctr.refused_peer++;
			release_fd(c, fd);
			return;
		}
	}
	for (size_t k = 0; k < l->nslots; k++) {
		if (l->slots[k].state == CL_FREE) {
			cl = &l->slots[k];
			break;
		}
	}
	if (cl == NULL && l->kind == RE_CONTROL_TCP) {
		cl = evict_longest_idle(c, l);	/* NULL: a whole budget arrived this turn */
	}
	if (cl == NULL) {
		reject_busy(c, fd, l->kind, now);
		return;
	}
	memset(cl, 0, offsetof(struct client, in));
	cl->fd = fd;
	cl->listener = l->kind;
	cl->gen = ++c->next_gen;
	cl->last_active = now;
	cl->born = c->turn;
	re_strbuf_init(&cl->out, CLIENT_OUT_MAX);
	c->ctr.accepted[l->kind]++;
	c->ctr.clients[l->kind]++;
	client_enter(c, cl, CL_READING, now);
	if (l->kind == RE_CONTROL_TCP) {
		uint32_t t = c->p.client_timeout_ms < RE_CONTROL_HEADER_TIMEOUT_MS ?
			     c->p.client_timeout_ms : RE_CONTROL_HEADER_TIMEOUT_MS;

		cl->deadline = now + t;
	}
	(void)client_settle(c, cl, now);
}

/* Accept up to a quarter of the listener's budget per loop turn, so that between two
 * turns a flood can evict only the oldest clients, never one that arrived a turn ago
 * and whose request is being read. */
static void accept_clients(struct re_control *c, struct listener *l, int64_t now)
{
	int batch = (int)(l->nslots / 4 > 0 ? l->nslots / 4 : 1);

	for (int i = 0; i < batch; i++) {
		int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd >= 0) {
			admit(c, l, fd, now);
			continue;
		}
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			return;
		}
		if (errno == EINTR || errno == ECONNABORTED) {
			continue;
		}
		if (errno == EMFILE || errno == ENFILE) {
			c->ctr.accept_fd_limit[l->kind]++;
			/* Only the admin socket spends the reserve: a scraper can retry, the
			 * operator at the limit must get in. */
			if (l->kind == RE_CONTROL_UNIX && reserve_take(c, now)) {
				continue;
			}
		}
		pause_listener(c, l, now);
		return;
	}
}

static void resume_listeners(struct re_control *c, int64_t now)
{
	for (size_t i = 0; i < RE_CONTROL_NLISTENERS; i++) {
		struct listener *l = &c->lis[i];
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = l };

		if (l->fd < 0 || !l->paused || now < l->resume_at) {
			continue;
		}
		if (epoll_ctl(c->epfd, EPOLL_CTL_MOD, l->fd, &ev) == 0) {
			l->paused = false;
		}
		accept_clients(c, l, now);
	}
}

/* --- the loop -------------------------------------------------------------------------- */

static void take_replies(struct re_control *c, int64_t now)
{
	struct re_request *r = re_chan_take_done(c->p.chan);

	while (r != NULL) {
		struct re_request *next = r->next;
		struct client *cl = r->client;

		/* The client may have gone (and its slot been reused) meanwhile. */
		if (cl->state == CL_WAITING && cl->gen == r->client_gen) {
			if (r->status == 0) {
				re_strbuf_printf(&cl->out, "OK %s\n\n", r->reply);
			} else {
				re_ctlcmd_err(&cl->out, r->reply);
			}
			client_enter(c, cl, CL_READING, now);
			process_input(c, cl, now);
			(void)client_settle(c, cl, now);
		}
		free(r);
		r = next;
	}
}

/* Give each client with runnable held-back commands its next round. */
static void run_ready(struct re_control *c, int64_t now)
{
	for (size_t i = 0; i < RE_CONTROL_NLISTENERS; i++) {
		for (size_t k = 0; k < c->lis[i].nslots; k++) {
			struct client *cl = &c->lis[i].slots[k];

			if (cl->state != CL_FREE && cl->ready) {
				(void)client_settle(c, cl, now);
			}
		}
	}
}

static void expire_client(struct re_control *c, struct client *cl, int64_t now)
{
	switch (cl->state) {
	case CL_FREE:
	case CL_WAITING:
		return;
	case CL_CLOSING:	/* a reply nobody reads */
	case CL_LINGER:		/* the peer's FIN never came */
		client_close(c, cl);
		return;
	case CL_READING:
		break;
	}
	if (cl->listener == RE_CONTROL_TCP) {
		c->ctr.header_timeouts++;	/* closed without a word, as nginx does */
		client_enter(c, cl, CL_CLOSING, now);
	} else {
		c->ctr.idle_timeouts++;
		if (cl->mode == MODE_HTTP) {
			client_enter(c, cl, CL_CLOSING, now);
		} else {
			reply_err_close(c, cl, "idle timeout: closing", now);
		}
	}
	if (client_settle(c, cl, now) && cl->state != CL_LINGER) {
		client_close(c, cl);	/* could not even flush the notice */
	}
}

static void expire_clients(struct re_control *c, int64_t now)
{
	for (size_t k = 0; k < MAX_REJECTS; k++) {
		if (c->rejects[k].fd >= 0 && now >= c->rejects[k].deadline) {
			reject_close(c, &c->rejects[k]);
		}
	}
	for (size_t i = 0; i < RE_CONTROL_NLISTENERS; i++) {
		for (size_t k = 0; k < c->lis[i].nslots; k++) {
			struct client *cl = &c->lis[i].slots[k];

			if (cl->state != CL_FREE && now >= cl->deadline) {
				expire_client(c, cl, now);
			}
		}
	}
}

static int next_timeout(const struct re_control *c, int64_t now)
{
	int64_t t = NO_DEADLINE;

	for (size_t k = 0; k < MAX_REJECTS; k++) {
		if (c->rejects[k].fd >= 0 && c->rejects[k].deadline < t) {
			t = c->rejects[k].deadline;
		}
	}
	for (size_t i = 0; i < RE_CONTROL_NLISTENERS; i++) {
		const struct listener *l = &c->lis[i];

		if (l->fd >= 0 && l->paused && l->resume_at < t) {
			t = l->resume_at;
		}
		for (size_t k = 0; k < l->nslots; k++) {
			const struct client *cl = &l->slots[k];

			if (cl->state != CL_FREE && cl->ready) {
				return 0;
			}
			if (cl->state != CL_FREE && cl->deadline < t) {
				t = cl->deadline;
			}
		}
	}
	if (c->reserve_retry_at != 0 && c->reserve_retry_at < t) {
		t = c->reserve_retry_at;
	}
	if (t == NO_DEADLINE) {
		return -1;
	}
	return t <= now ? 0 : (int)(t - now < INT_MAX ? t - now : INT_MAX);
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
		c->turn++;
		for (int i = 0; i < n; i++) {
			void *ptr = evs[i].data.ptr;

			if (ptr == &c->wake_tag) {
				uint64_t v;

				(void)!read(c->p.chan->ctl_fd, &v, sizeof(v));
			} else if (in_range(ptr, c->lis, sizeof(c->lis))) {
				accept_clients(c, ptr, now);
			} else if (in_range(ptr, c->rejects, sizeof(c->rejects))) {
				if (((struct reject *)ptr)->fd >= 0) {
					reject_readable(c, ptr, evs[i].events);
				}
			} else {
				struct client *cl = ptr;

				/* Events are fetched before this turn's accepts: an event for a
				 * client admitted in this turn belongs to the slot's previous,
				 * closed client. A closed one is FREE. */
				if (cl->state != CL_FREE && cl->born != c->turn) {
					client_event(c, cl, evs[i].events, now);
				}
			}
		}
		take_replies(c, now);
		run_ready(c, now);
		expire_clients(c, now);
		resume_listeners(c, now);
		if (c->reserve_retry_at != 0 && now >= c->reserve_retry_at) {
			reserve_refill(c, now);
		}
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
		c->sock_mtime = st.st_mtim;
		atomic_store_explicit(&c->path_bound, true, memory_order_release);
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
		c->lis[RE_CONTROL_UNIX].fd = open_unix(c);
		if (c->lis[RE_CONTROL_UNIX].fd < 0 ||
		    add_fd(c, c->lis[RE_CONTROL_UNIX].fd, &c->lis[RE_CONTROL_UNIX]) < 0) {
			return -1;
		}
		/* The reserve serves the admin socket only. Without it (no /dev/null) the
		 * admin socket still works, it just cannot accept at the fd limit. */
		c->reserve_template = open("/dev/null", O_RDONLY | O_CLOEXEC);
		c->ctr.fd_reserve_size = c->reserve_template >= 0 ? RESERVE_FDS : 0;
		reserve_refill(c, mono_ms());
	}
	if (c->p.metrics) {
		c->lis[RE_CONTROL_TCP].fd = open_metrics(c);
		if (c->lis[RE_CONTROL_TCP].fd < 0 ||
		    add_fd(c, c->lis[RE_CONTROL_TCP].fd, &c->lis[RE_CONTROL_TCP]) < 0) {
			return -1;
		}
	}
	return 0;
}

/* Is st (an lstat of our path) still the socket we bound? Device and inode alone are
 * not enough: after a takeover the successor unlinks our socket and binds its own,
 * and a file system that reuses inode numbers (ext4 does, tmpfs does not) can give it
 * ours. Its modification time is its own, though: set when bind() creates the
 * socket file, and not touched by the chown of --user (which moves the change time). */
static bool same_socket(const struct re_control *c, const struct stat *st)
{
	return st->st_dev == c->sock_dev && st->st_ino == c->sock_ino &&
	       st->st_mtim.tv_sec == c->sock_mtime.tv_sec &&
	       st->st_mtim.tv_nsec == c->sock_mtime.tv_nsec;
}

static void control_teardown(struct re_control *c)
{
	struct stat st;

	for (size_t i = 0; i < RE_CONTROL_NLISTENERS; i++) {
		struct listener *l = &c->lis[i];

		for (size_t k = 0; k < l->nslots; k++) {
			if (l->slots[k].state != CL_FREE) {
				client_close(c, &l->slots[k]);
			}
		}
	}
	for (size_t k = 0; k < MAX_REJECTS; k++) {
		if (c->rejects[k].fd >= 0) {
			reject_close(c, &c->rejects[k]);
		}
	}
	if (c->lis[RE_CONTROL_UNIX].fd >= 0) {
		(void)close(c->lis[RE_CONTROL_UNIX].fd);
		c->lis[RE_CONTROL_UNIX].fd = -1;
	}
	/* Remove the path only while it is still the socket we created. */
	if (atomic_load_explicit(&c->path_bound, memory_order_acquire) && lstat(c->path, &st) == 0 &&
	    same_socket(c, &st)) {
		(void)unlink(c->path);
	}
	if (c->lis[RE_CONTROL_TCP].fd >= 0) {
		(void)close(c->lis[RE_CONTROL_TCP].fd);
		c->lis[RE_CONTROL_TCP].fd = -1;
	}
	while (c->nreserve > 0) {
		(void)close(c->reserve[--c->nreserve]);
	}
	if (c->reserve_template >= 0) {
		(void)close(c->reserve_template);
		c->reserve_template = -1;
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
	c->reserve_template = -1;
	c->lis[RE_CONTROL_UNIX] = (struct listener){
		.fd = -1, .kind = RE_CONTROL_UNIX, .slots = c->unix_clients, .nslots = UNIX_SLOTS,
	};
	c->lis[RE_CONTROL_TCP] = (struct listener){
		.fd = -1, .kind = RE_CONTROL_TCP, .slots = c->tcp_clients, .nslots = TCP_SLOTS,
	};
	c->ctr.clients_limit[RE_CONTROL_UNIX] = params->path != NULL ? UNIX_SLOTS : 0;
	c->ctr.clients_limit[RE_CONTROL_TCP] = params->metrics ? TCP_SLOTS : 0;
	for (size_t k = 0; k < UNIX_SLOTS; k++) {
		c->unix_clients[k].fd = -1;
	}
	for (size_t k = 0; k < TCP_SLOTS; k++) {
		c->tcp_clients[k].fd = -1;
	}
	for (size_t k = 0; k < MAX_REJECTS; k++) {
		c->rejects[k].fd = -1;
	}
	atomic_init(&c->state, RE_CONTROL_STARTING);
	atomic_init(&c->stop, false);
	atomic_init(&c->path_bound, false);
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

void re_control_unlink_now(const struct re_control *c)
{
	struct stat st;

	if (c == NULL || !atomic_load_explicit(&c->path_bound, memory_order_acquire)) {
		return;
	}
	if (lstat(c->path, &st) == 0 && same_socket(c, &st)) {
		(void)unlink(c->path);
	}
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

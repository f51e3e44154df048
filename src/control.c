/* control: the control thread. One epoll instance for the control socket, the
 * optional TCP metrics listener, a wake eventfd and up to RE_CONTROL_MAX_CLIENTS
 * clients. Replies are written without blocking and bounded per client, so a client
 * that never reads cannot stall this thread, the supervisor or a worker.
 * Statistics are read as a QSBR reader (online only while copying); changes are sent
 * to the supervisor over the request channel, and their replies come back the same way.
 */
#include "control.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stddef.h>
#include <linux/filter.h>
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
#include <sys/utsname.h>
#include <unistd.h>

#include <urcu/urcu-qsbr.h>

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
	struct re_worker_view *views;
	size_t views_cap;
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

static void read_migrate_counters(struct re_features *f);

/* --- snapshot ------------------------------------------------------------------- */

static enum re_worker_run_state view_state(uint32_t st)
{
	switch (st) {
	case RE_BLOCK_DRAINING:
	case RE_BLOCK_RETIRING:
		return RE_VIEW_DRAINING;
	default:
		return RE_VIEW_RUNNING;
	}
}

/* Copy the registry into s (views owned by c). Returns 0 or -ENOMEM. Also reports
 * whether every worker is healthy for /healthz. */
static int take_snapshot(struct re_control *c, struct re_snapshot *s, bool *ret_healthy,
			 char *why, size_t whylen)
{
	const struct re_stats_registry *reg;
	int64_t now = mono_ms();
	size_t running = 0;
	bool healthy = true;
	int r = 0;

	memset(s, 0, sizeof(*s));
	s->version = c->p.version;
	s->uptime_s = (double)(now - ((int64_t)c->p.started.tv_sec * 1000 +
				      c->p.started.tv_nsec / 1000000)) / 1000.0;
	snprintf(s->address, sizeof(s->address), "%s", c->p.address);
	s->port = c->p.port;
	s->features = c->p.features;
	read_migrate_counters(&s->features);
	if (why != NULL && whylen > 0) {
		why[0] = '\0';
	}

	re_rcu_thread_online();
	reg = re_rcu_dereference(c->p.stats->reg);
	if (reg->n > c->views_cap) {
		struct re_worker_view *nv = realloc(c->views, reg->n * sizeof(*nv));

		if (nv == NULL) {
			r = -ENOMEM;
			goto out;
		}
		c->views = nv;
		c->views_cap = reg->n;
	}
	s->workers = c->views;
	s->nworkers = reg->n;
	s->retired = reg->retired;
	s->total = reg->retired;
	for (size_t i = 0; i < reg->n; i++) {
		const struct re_stats_block *b = reg->blocks[i];
		struct re_worker_view *v = &c->views[i];
		uint32_t st = RE_LOAD_RELAXED(b->state);
		uint64_t beat = RE_LOAD_RELAXED(b->heartbeat_ms);

		v->id = b->worker_id;
		v->cpu = b->cpu;
		v->tid = RE_LOAD_RELAXED(b->tid);
		v->acceptq_len = RE_LOAD_RELAXED(b->acceptq_len);
		v->acceptq_max = RE_LOAD_RELAXED(b->acceptq_max);
		v->state = view_state(st);
		re_stats_snapshot(b, &v->c);
		re_stats_accumulate(&s->total, &v->c);
		if (st == RE_BLOCK_RUNNING && beat != 0 && now - (int64_t)beat > RE_STALL_MS) {
			v->state = RE_VIEW_STALLED;
			if (healthy && why != NULL) {
				snprintf(why, whylen, "worker %d loop stalled for %" PRId64 " ms", v->id,
					 now - (int64_t)beat);
			}
			healthy = false;
		} else if (st == RE_BLOCK_DRAINING) {
			if (healthy && why != NULL) {
				snprintf(why, whylen, "shutting down");
			}
			healthy = false;
		} else if (st == RE_BLOCK_RUNNING) {
			running++;
		}
	}
out:
	re_rcu_thread_offline();
	if (running == 0 && healthy) {
		healthy = false;
		if (why != NULL) {
			snprintf(why, whylen, "no worker running");
		}
	}
	if (ret_healthy != NULL) {
		*ret_healthy = healthy;
	}
	return r;
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
	re_strbuf_printf(&cl->out, "ERR %s\n\n", reason);
}

static void http_reply(struct client *cl, int status, const char *ctype, const char *body,
		       size_t blen, bool head)
{
	const char *text;

	switch (status) {
	case 200: text = "OK"; break;
	case 400: text = "Bad Request"; break;
	case 404: text = "Not Found"; break;
	case 405: text = "Method Not Allowed"; break;
	case 414: text = "URI Too Long"; break;
	case 431: text = "Request Header Fields Too Large"; break;
	case 500: text = "Internal Server Error"; break;
	case 503: text = "Service Unavailable"; break;
	case 505: text = "HTTP Version Not Supported"; break;
	default: text = "Error"; break;
	}
	re_strbuf_printf(&cl->out,
			 "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
			 "Cache-Control: no-store\r\nConnection: close\r\n%s\r\n",
			 status, text, ctype, blen, status == 405 ? "Allow: GET, HEAD\r\n" : "");
	if (!head) {
		re_strbuf_append(&cl->out, body, blen);
	}
	cl->closing = true;
}

static void http_error(struct client *cl, int status)
{
	char body[64];
	int n = snprintf(body, sizeof(body), "error %d\n", status);

	http_reply(cl, status, "text/plain; charset=utf-8", body, (size_t)n, false);
}

/* --- commands ------------------------------------------------------------------------ */

static const char help_text[] =
	"commands (one per line; every reply ends with an empty line):\n"
	"  help                this list\n"
	"  stats               counters, human text (totals include retired workers)\n"
	"  stats json          the same as one JSON object\n"
	"  workers             per-worker table (raw cumulative values)\n"
	"  metrics             Prometheus text format 0.0.4\n"
	"  config              settings in force\n"
	"  set KEY VALUE       change max-conns, idle-timeout, conn-buffer or drain-timeout\n"
	"  threads N           grow or shrink the worker set while serving\n"
	"  features            kernel features reuseecho relies on\n"
	"  health              OK when every worker runs\n"
	"  shutdown            drain and exit, as on SIGTERM\n"
	"  listeners           (handover) SO_REUSEPORT group order of our listeners\n"
	"  retire-listener ID  (handover) close worker ID's listener without losing a\n"
	"                      queued connection; it keeps serving its connections\n"
	"  retire              (handover) stop accepting, serve established connections\n"
	"                      until they close or the drain timeout passes, then exit\n"
	"  quit                close this connection\n"
	"HTTP GET on the same socket: /metrics /stats /healthz\n";

static void format_seconds(struct re_strbuf *sb, const char *key, uint32_t ms)
{
	if (ms % 1000 == 0) {
		re_strbuf_printf(sb, "%s %u\n", key, ms / 1000);
	} else {
		re_strbuf_printf(sb, "%s %u.%03u\n", key, ms / 1000, ms % 1000);
	}
}

static void reply_config(struct re_control *c, struct client *cl)
{
	const struct re_runtime *rt;
	struct re_snapshot s;
	size_t live = 0;

	if (take_snapshot(c, &s, NULL, NULL, 0) < 0) {
		reply_err(cl, "out of memory");
		return;
	}
	for (size_t i = 0; i < s.nworkers; i++) {
		live += s.workers[i].state != RE_VIEW_DRAINING;
	}
	re_strbuf_printf(&cl->out, "threads %zu\naddress %s\nbacklog %d\n", live, c->p.address,
			 c->p.backlog);
	re_rcu_thread_online();
	rt = re_rcu_dereference(*c->p.runtime);
	re_strbuf_printf(&cl->out, "max-conns %" PRIu64 "\n", rt->max_conns);
	format_seconds(&cl->out, "idle-timeout", rt->idle_timeout_ms);
	re_strbuf_printf(&cl->out, "conn-buffer %u\n", rt->conn_buffer);
	re_strbuf_printf(&cl->out, "max-buffered %" PRIu64 "\n", rt->max_buffered);
	format_seconds(&cl->out, "drain-timeout", rt->drain_timeout_ms);
	re_rcu_thread_offline();
	re_strbuf_printf(&cl->out, "control %s\n\n", c->p.path ? c->p.path : "none");
}

typedef void (*report_fn)(const struct re_snapshot *s, struct re_strbuf *out);

static void reply_report(struct re_control *c, struct client *cl, report_fn fn)
{
	struct re_snapshot s;

	if (take_snapshot(c, &s, NULL, NULL, 0) < 0) {
		reply_err(cl, "out of memory");
		return;
	}
	fn(&s, &cl->out);
	re_strbuf_puts(&cl->out, "\n");
}

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
	char err[200];
	bool healthy;
	struct re_snapshot s;
	int r = re_ctlproto_parse_line(line, len, &cmd, err, sizeof(err));

	if (r < 0) {
		reply_err(cl, err);
		return;
	}
	if (r == 0) {
		return;		/* blank line: nothing to answer */
	}
	switch (cmd.verb) {
	case RE_CTL_HELP:
		re_strbuf_puts(&cl->out, help_text);
		re_strbuf_puts(&cl->out, "\n");
		break;
	case RE_CTL_STATS:
		reply_report(c, cl, re_report_text);
		break;
	case RE_CTL_STATS_JSON:
		reply_report(c, cl, re_report_json);
		break;
	case RE_CTL_WORKERS:
		reply_report(c, cl, re_report_workers);
		break;
	case RE_CTL_METRICS:
		reply_report(c, cl, re_report_prometheus);
		break;
	case RE_CTL_FEATURES: {
		struct re_features f = c->p.features;

		read_migrate_counters(&f);
		re_report_features(&f, &cl->out);
		re_strbuf_puts(&cl->out, "\n");
		break;
	}
	case RE_CTL_CONFIG:
		reply_config(c, cl);
		break;
	case RE_CTL_HEALTH:
		if (take_snapshot(c, &s, &healthy, err, sizeof(err)) < 0) {
			reply_err(cl, "out of memory");
		} else if (healthy) {
			re_strbuf_puts(&cl->out, "OK\n\n");
		} else {
			reply_err(cl, err);
		}
		break;
	case RE_CTL_QUIT:
		re_strbuf_puts(&cl->out, "OK bye\n\n");
		cl->closing = true;
		break;
	case RE_CTL_DEBUG_STALL:
		if (!c->p.debug_hooks) {
			reply_err(cl, "unknown command 'debug' (try 'help')");
			break;
		}
		submit(c, cl, &cmd);
		break;
	case RE_CTL_SET:
	case RE_CTL_THREADS:
	case RE_CTL_SHUTDOWN:
	case RE_CTL_LISTENERS:
	case RE_CTL_RETIRE_LISTENER:
	case RE_CTL_RETIRE:
		submit(c, cl, &cmd);
		break;
	}
}

static void handle_http(struct re_control *c, struct client *cl, size_t head_len)
{
	struct re_http_req req;
	struct re_snapshot s;
	struct re_strbuf body;
	bool healthy;
	char why[200];
	int status = re_ctlproto_parse_http(cl->in, head_len, &req);

	if (status != 0) {
		http_error(cl, status);
		return;
	}
	re_strbuf_init(&body, CLIENT_OUT_MAX);
	if (take_snapshot(c, &s, &healthy, why, sizeof(why)) < 0) {
		http_error(cl, 500);
	} else if (strcmp(req.path, "/metrics") == 0) {
		re_report_prometheus(&s, &body);
		http_reply(cl, 200, "text/plain; version=0.0.4; charset=utf-8", body.data, body.len,
			   req.head);
	} else if (strcmp(req.path, "/stats") == 0) {
		re_report_json(&s, &body);
		http_reply(cl, 200, "application/json", body.data, body.len, req.head);
	} else if (strcmp(req.path, "/healthz") == 0) {
		if (healthy) {
			re_strbuf_puts(&body, "ok\n");
		} else {
			re_strbuf_printf(&body, "unhealthy: %s\n", why);
		}
		http_reply(cl, healthy ? 200 : 503, "text/plain; charset=utf-8", body.data, body.len,
			   req.head);
	} else if (strcmp(req.path, "/") == 0) {
		re_strbuf_puts(&body, "reuseecho: /metrics /stats /healthz\n");
		http_reply(cl, 200, "text/plain; charset=utf-8", body.data, body.len, req.head);
	} else {
		http_error(cl, 404);
	}
	if (body.oom) {
		re_strbuf_reset(&cl->out);
		http_error(cl, 500);
	}
	re_strbuf_finish(&body);
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
	free(c->views);
	c->views = NULL;
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

static int read_sysctl_int(const char *path)
{
	char buf[32];
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		return -1;
	}
	n = read(fd, buf, sizeof(buf) - 1);
	(void)close(fd);
	if (n <= 0) {
		return -1;
	}
	buf[n] = '\0';
	return atoi(buf);
}

/* TcpExt TcpMigrateReqSuccess/Failure from /proc/net/netstat (a header line of names
 * followed by a line of values); -1 when the kernel has no such counters. */
static void read_migrate_counters(struct re_features *f)
{
	char buf[8192];
	char *names, *values, *save1 = NULL, *save2 = NULL;
	ssize_t n;
	int fd = open("/proc/net/netstat", O_RDONLY | O_CLOEXEC);

	f->migrate_success = -1;
	f->migrate_failure = -1;
	if (fd < 0) {
		return;
	}
	n = read(fd, buf, sizeof(buf) - 1);
	(void)close(fd);
	if (n <= 0) {
		return;
	}
	buf[n] = '\0';
	names = strstr(buf, "TcpExt:");
	if (names == NULL) {
		return;
	}
	values = strchr(names, '\n');
	if (values == NULL || strncmp(values + 1, "TcpExt:", 7) != 0) {
		return;
	}
	*values++ = '\0';
	{
		char *eol = strchr(values, '\n');

		if (eol != NULL) {
			*eol = '\0';
		}
	}
	for (char *a = strtok_r(names, " ", &save1), *b = strtok_r(values, " ", &save2);
	     a != NULL && b != NULL; a = strtok_r(NULL, " ", &save1), b = strtok_r(NULL, " ", &save2)) {
		if (strcmp(a, "TCPMigrateReqSuccess") == 0) {
			f->migrate_success = strtoll(b, NULL, 10);
		} else if (strcmp(a, "TCPMigrateReqFailure") == 0) {
			f->migrate_failure = strtoll(b, NULL, 10);
		}
	}
}

void re_control_probe_features(struct re_features *f)
{
	struct utsname u;
	int one = 1;
	int fd;

	memset(f, 0, sizeof(*f));
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0) {
		/* A program that always answers "use the kernel's hash" (an index out of
		 * range): only whether the kernel accepts it matters here. */
		struct sock_filter code[] = { BPF_STMT(BPF_RET | BPF_K, 0xffffffffu) };
		struct sock_fprog prog;

		/* memset: the padding after .len goes to the kernel too (valgrind). */
		memset(&prog, 0, sizeof(prog));
		prog.len = 1;
		prog.filter = code;

		f->reuseport = setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) == 0;
		f->cbpf = setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &prog, sizeof(prog)) == 0;
		(void)close(fd);
	}
	fd = epoll_create1(EPOLL_CLOEXEC);
	if (fd >= 0) {
		int sv[2];

		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0) {
			struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP | EPOLLET };

			f->rdhup = epoll_ctl(fd, EPOLL_CTL_ADD, sv[0], &ev) == 0;
			(void)close(sv[0]);
			(void)close(sv[1]);
		}
		(void)close(fd);
	}
	f->migrate_req = read_sysctl_int("/proc/sys/net/ipv4/tcp_migrate_req");
	if (f->cbpf && getenv("REUSEECHO_DISABLE_CBPF") == NULL) {
		snprintf(f->handover, sizeof(f->handover), "%s", f->migrate_req == 1 ? "cbpf+migrate" : "cbpf");
	} else {
		snprintf(f->handover, sizeof(f->handover), "%s", f->migrate_req == 1 ? "migrate" : "none");
	}
	read_migrate_counters(f);
	if (uname(&u) == 0) {
		snprintf(f->kernel, sizeof(f->kernel), "%.63s", u.release);
	}
}

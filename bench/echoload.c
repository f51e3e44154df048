/*
 * echoload: load generator and verifier for TCP and UDP echo servers.
 * main() parses the command line, sequences the phases and reports; each
 * loader thread owns its epoll, its share of the connections and its
 * statistics, and touches nothing else until main() reads them after join.
 *
 * Command line (a contract: scripts are written against it; keep usage() in
 * step with this block):
 *
 *   echoload [OPTIONS]
 *     --proto tcp|udp     default tcp; udp: pingpong and rate modes only
 *     --mode pingpong|stream|churn|rate|sink|source   default pingpong
 *     --host ADDR         IPv4 or IPv6 literal, default 127.0.0.1
 *     --port P            default 7007
 *     --threads N         loader threads, each with its own epoll and its
 *                         own share of the connections, default 1
 *     --conns N           connections (concurrent cycles in churn), default 50
 *     --size BYTES        message size, K/M suffixes (binary), default 64;
 *                         stream: the chunk size, default min(window, 16K)
 *     --depth D           pingpong: messages in flight per connection, default 1
 *     --window BYTES      stream: bytes in flight per connection, default 64K
 *     --rate MSGS_PER_S   rate: total scheduled message rate (required there)
 *     --close fin|rst     churn: how the client closes, default fin
 *     --duration SECONDS  measured time, decimals allowed, default 10
 *     --warmup SECONDS    unmeasured time before it, default 1 (0 allowed)
 *     --loss-timeout SECONDS  udp: an unanswered datagram is lost after it,
 *                         and frees its window slot, default auto: 10 x the
 *                         p99 latency of the last 100 ms, within [50 ms, 1 s]
 *     --expect-close      tcp: a clean EOF from the server is expected, not an
 *                         error: counted, and the connection is reopened
 *     --expect-reset      tcp: so is a reset (ECONNRESET, EPIPE)
 *     --json | --csv      machine output on stdout (one JSON object on one
 *                         line | a header line and one row, same keys)
 *     --allow-remote      permit a --host outside 127.0.0.0/8 and ::1
 *     --help, --version
 *
 *   Modes.  pingpong: each connection keeps D messages of SIZE bytes in
 *   flight; latency is send -> full echo.  stream: each connection keeps up
 *   to WINDOW bytes sent but not yet echoed, refilled in whole chunks of
 *   SIZE; a "msg" is an echoed chunk, latency is chunk sent -> chunk echoed.
 *   churn: --conns concurrent cycles of connect, send one message, read the
 *   echo, close (FIN, or RST through SO_LINGER 0); a "msg" is a cycle,
 *   latency is connect start -> echo complete.  rate: open loop; message i
 *   (i = 0, 1, ...) is scheduled at t0 + i/RATE on connection i mod CONNS;
 *   a connection has one message in flight, later ones queue and keep their
 *   scheduled time, and latency runs from that time, so a stalled server
 *   cannot hide its stall (no coordinated omission).
 *
 *   Every echoed byte is checked against a per-connection pattern.  Errors
 *   (connect failures, resets, unexpected EOF or data, connections still
 *   busy at the hard deadline) and mismatches (messages with a wrong byte)
 *   are counted over the whole run; msgs, bytes and latencies only inside
 *   the measured window (by completion time; rate: by scheduled time).
 *   After the window no new message starts, the ones in flight are drained
 *   and checked.  Connection setup (not churn) precedes the warm-up and is
 *   bounded by 5 s; the run after it by warmup + duration + 5 s.
 *
 *   Expected ends (--expect-close, --expect-reset: a server that hangs up on
 *   purpose, such as reuseecho's close-after and reset-after impairments).
 *   A clean EOF, or a reset, is then counted over the whole run with the
 *   bytes that socket echoed (their min and max), the bytes received so far
 *   having been checked like any others (a wrong one in the unfinished
 *   message is a mismatch); the messages in flight are dropped (no msg, no
 *   latency) and, before the window's end, the slot reconnects and goes on
 *   from the next message (rate: keeping its schedule; churn: the next
 *   cycle).  A failed reconnect is an error.
 *
 *   UDP (--proto udp): --conns flows, each a connected socket; a datagram
 *   of SIZE bytes carries flow id, sequence number and send time (scheduled
 *   time in rate mode) in a 24-byte header, then a pattern that flow and
 *   sequence number select.  pingpong keeps DEPTH datagrams in flight per
 *   flow; rate sends datagram i at t0 + i/RATE on flow i mod CONNS whatever
 *   is in flight.  Each datagram that comes back is classified (see the
 *   UDP section below); sent, received, lost, late, reordered, duplicated
 *   and corrupted count over the whole run, msgs and latencies (received
 *   datagrams only) inside the window.  Corrupted datagrams count as
 *   mismatches; loss, lateness, reordering and duplication do not fail a run.
 *   The hard deadline grows by --loss-timeout; after the drain, if datagrams
 *   were declared lost after the window, echoload listens one more timeout
 *   (at most 5 s) so that their answers count as late.
 *
 *   Exit status: 0 success; 1 an error or mismatch occurred, or nothing was
 *   echoed; 2 usage error (one line on stderr naming the flag).
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#if defined(__has_include)
#if __has_include("re_version.h")
#include "re_version.h"
#endif
#endif
#ifndef RE_VERSION
#define RE_VERSION "unknown"
#endif

#define NSEC_PER_SEC		1000000000ull
#define IO_MAX			(128u * 1024)	/* bytes per recv()/send() call */
#define PAT_PERIOD		65521u		/* prime: no power-of-two message repeats */
#define MAX_EVENTS		256
#define SETUP_TIMEOUT_NS	(5 * NSEC_PER_SEC)
#define DRAIN_SLACK_NS		(5 * NSEC_PER_SEC)
#define STREAM_CHUNK_DEFAULT	(16u * 1024)
#define TS_ENTRIES_MAX		(1ull << 27)	/* 1 GiB of send timestamps in all */
#define BOTTLENECK_CPU		0.90
#define UDP_HDR_LEN		24u		/* struct udp_hdr on the wire */
#define UDP_MAX_V4		65507u		/* largest UDP payload over IPv4 */
#define UDP_MAX_V6		65527u		/* ... and over IPv6 (no jumbograms) */
#define UDP_BATCH		64u		/* datagrams per recvmmsg()/sendmmsg() */
#define UDP_RING_MIN		1024u		/* datagrams tracked per flow, at least */
#define UDP_RING_MAX		(1u << 20)
#define UDP_SEQ_STRIDE		40503u		/* payload offset step per sequence number */
#define UDP_RCVBUF_DEFAULT	(208u * 1024)
#define LOSS_AUTO_MIN_NS	(50 * 1000000ull)	/* auto loss timeout: floor, */
#define LOSS_AUTO_P99_MULT	10			/* p99 multiple, */
#define LOSS_AUTO_PERIOD_NS	(100 * 1000000ull)	/* re-tuned this often */
#define LOSS_AUTO_SAMPLES	100			/* from at least this many */

/*
 * Latency histogram, HdrHistogram-like: values below 256 ns are exact; above,
 * each power of two [2^e, 2^(e+1)) is split into 128 linear sub-buckets, so a
 * bucket is at most 1/128 (< 0.8%) of the values it holds.
 */
#define HIST_SUB_BITS		7
#define HIST_BUCKETS		((64 - HIST_SUB_BITS + 1) << HIST_SUB_BITS)

enum mode { MODE_PINGPONG, MODE_STREAM, MODE_CHURN, MODE_RATE, MODE_SINK, MODE_SOURCE };
#define NMODES 6
enum output { OUT_HUMAN, OUT_JSON, OUT_CSV };
enum proto { PROTO_TCP, PROTO_UDP };
enum conn_state { CONN_IDLE, CONN_CONNECTING, CONN_OPEN, CONN_DEAD };

static const char *const mode_names[] = {
	[MODE_PINGPONG] = "pingpong",
	[MODE_STREAM] = "stream",
	[MODE_CHURN] = "churn",
	[MODE_RATE] = "rate",
	[MODE_SINK] = "sink",
	[MODE_SOURCE] = "source",
};

struct config {
	enum proto proto;
	enum mode mode;
	enum output output;
	char host[INET6_ADDRSTRLEN];
	struct sockaddr_storage addr;
	socklen_t addrlen;
	unsigned port;
	unsigned threads;
	unsigned conns;
	unsigned depth;
	uint64_t size;		/* message size; stream: chunk size */
	uint64_t window;
	double rate;
	double duration;
	double warmup;
	double loss_timeout;	/* udp: seconds before an unanswered datagram is lost;
				 * without --loss-timeout the auto timeout's cap */
	bool loss_timeout_set;	/* false: auto, 10 x recent p99 within [50 ms, 1 s] */
	bool size_set;
	bool close_rst;
	bool allow_remote;
	bool expect_close;	/* tcp: a clean EOF from the server is counted, not an error */
	bool expect_reset;	/* tcp: so is a reset */
};

/* Written only by its loader thread; main() reads it after pthread_join(). */
struct loader_stats {
	uint64_t msgs;
	uint64_t bytes;
	uint64_t errors;
	uint64_t mismatches;
	uint64_t stuck;
	uint64_t max_ns;
	/* udp, over the whole run like errors and mismatches */
	uint64_t sent;
	uint64_t received;
	uint64_t lost;
	uint64_t late;
	uint64_t reordered;
	uint64_t duplicated;
	uint64_t corrupted;
	uint64_t rx_drops;	/* datagrams the loader's own sockets dropped */
	/* tcp expected ends, over the whole run: how many, and the bytes each
	 * socket echoed before it (min starts at UINT64_MAX) */
	uint64_t closes;
	uint64_t resets;
	uint64_t close_bytes_min;
	uint64_t close_bytes_max;
	uint64_t reset_bytes_min;
	uint64_t reset_bytes_max;
	int first_err;		/* -errno of the first error, 0 if none has one */
	const char *first_what;	/* NULL until the first error */
	uint64_t hist[HIST_BUCKETS];
};

/*
 * One connection slot.  Its byte stream is pattern_at(offset); message k
 * covers stream offsets [k * unit, (k + 1) * unit).
 */
struct conn {
	int fd;
	uint32_t gen;		/* bumped per socket: stale epoll events are skipped */
	uint32_t id;		/* global number: selects pattern and rate slot */
	uint32_t seed;		/* pattern offset of stream byte 0 */
	uint8_t state;
	bool wblocked;		/* short send: wait for EPOLLOUT */
	bool msg_bad;		/* the message being received has a wrong byte */
	bool one_way;		/* sink or source: bytes go one way only */
	uint32_t ts_mask;
	uint64_t *ts;		/* per message send time (ring); churn: connect start */
	uint64_t sock_base;	/* stream offset of this socket's first byte */
	uint64_t tx_off;	/* stream bytes handed to the kernel */
	uint64_t tx_end;	/* stream bytes we want handed to the kernel */
	uint64_t rx_off;	/* stream bytes received and checked */
	uint64_t msg_end;	/* end offset of the message being received */
	uint64_t send_mark;	/* start offset of the next message not yet sent */
	uint64_t sent;		/* messages whose first byte was sent */
	uint64_t done;		/* messages fully echoed */
	uint64_t queued;	/* rate: messages added to tx_end */
	uint64_t due;		/* rate: messages whose scheduled time has come */
};

/*
 * UDP.  Every datagram starts with this header (host byte order: the loader
 * reads back what it wrote); the rest of it is the pattern from an offset
 * that flow and sequence number select, so every byte can be checked.
 */
struct udp_hdr {
	uint32_t flow;		/* global flow id */
	uint32_t size;		/* datagram length, header included */
	uint64_t seq;		/* per flow, from 0 */
	uint64_t ts;		/* send time (rate: scheduled time), CLOCK_MONOTONIC ns */
};

enum slot_state { SLOT_FREE, SLOT_OUT, SLOT_DONE, SLOT_LOST };

/* What a flow knows about sequence number @seq (ring index seq & mask). */
struct slot {
	uint64_t seq;
	uint64_t ts;
	uint8_t state;
};

/* One UDP flow: a connected socket and its sequence window. */
struct flow {
	int fd;
	uint32_t id;		/* global number: selects pattern and rate slot */
	uint32_t seed;		/* pattern offset of sequence number 0 */
	uint8_t state;		/* CONN_OPEN or CONN_DEAD */
	bool wblocked;		/* sendmmsg() met a full buffer: wait for EPOLLOUT */
	uint32_t inflight;	/* slots SLOT_OUT */
	uint64_t next_seq;	/* sequence number of the next datagram to send */
	uint64_t oldest;	/* no datagram below it is still SLOT_OUT */
	uint64_t rx_high;	/* highest sequence received intact, plus 1; 0: none */
	uint64_t due;		/* rate: datagrams whose scheduled time has come */
	struct slot *ring;
};

struct run {
	const struct config *cfg;
	pthread_barrier_t ready;	/* loaders connected */
	pthread_barrier_t go;		/* t0 published */
	pthread_mutex_t lock;
	pthread_cond_t cond;		/* signalled as each loader finishes */
	unsigned finished;		/* under lock */
	uint64_t t0;			/* written by main() between the barriers */
	bool abort;			/* ditto: nothing connected, skip the run */
};

struct loader {
	_Alignas(64) unsigned index;
	const struct config *cfg;
	struct run *run;
	pthread_t tid;
	int epfd;
	bool no_pwait2;		/* kernel lacks epoll_pwait2: millisecond waits */
	bool running;		/* set-up over: an expected end may reconnect */
	bool stopping;		/* measured window over: start nothing new */
	uint64_t one_way_acc;	/* sink/source: bytes toward the next whole --size */
	bool send_ts;		/* stamp messages as they are sent */
	uint32_t nconns;
	uint32_t live;		/* slots not dead */
	uint32_t first_id;	/* global id of conns[0] */
	uint64_t unit;		/* bytes per message */
	struct conn *conns;
	uint64_t *ts_store;
	uint8_t *rx;		/* IO_MAX bytes: received data is checked, then dropped */
	uint64_t t0;
	uint64_t m_start;
	uint64_t m_end;
	uint64_t hard;
	double ns_per_msg;	/* rate: schedule spacing */
	uint64_t sched_next;	/* rate: scheduled time of the next message */
	uint64_t sched_round;
	uint32_t sched_conn;
	/* udp */
	struct flow *flows;
	struct slot *slot_store;
	uint32_t ring_mask;
	uint64_t loss_ns;
	uint64_t next_expire;	/* earliest send time + loss_ns of a SLOT_OUT datagram */
	uint64_t next_tune;	/* auto loss timeout: when to re-tune it */
	uint64_t tune_n;	/* latencies in tune_hist */
	uint64_t *tune_hist;	/* latencies since the last tuning, warm-up included */
	size_t rx_len;		/* per receive buffer: one more than the datagram size */
	struct mmsghdr *mm;	/* UDP_BATCH entries, for receiving and for sending */
	struct iovec *iov;	/* 2 * UDP_BATCH */
	struct udp_hdr *hdrs;	/* UDP_BATCH headers being sent */
	struct loader_stats st;
};

/* Read-only after pattern_init(); any IO_MAX bytes from an offset below
 * PAT_PERIOD are contiguous, so sends and checks need no copy. */
static uint8_t pattern[PAT_PERIOD + IO_MAX];

static uint64_t now_ns(void)
{
	struct timespec ts;

	(void)clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NSEC_PER_SEC + (uint64_t)ts.tv_nsec;
}

static struct timespec ns_to_timespec(uint64_t ns)
{
	struct timespec ts = {
		.tv_sec = (time_t)(ns / NSEC_PER_SEC),
		.tv_nsec = (long)(ns % NSEC_PER_SEC),
	};

	return ts;
}

static uint64_t secs_to_ns(double s)
{
	return (uint64_t)(s * 1e9 + 0.5);
}

static void pattern_init(void)
{
	uint64_t x = 0x9e3779b97f4a7c15ull;
	size_t i;

	for (i = 0; i < PAT_PERIOD; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		pattern[i] = (uint8_t)(x >> 32);
	}
	for (i = 0; i < IO_MAX; i++) {
		pattern[PAT_PERIOD + i] = pattern[i];
	}
}

static inline const uint8_t *pattern_at(const struct conn *c, uint64_t off)
{
	return pattern + (c->seed + off) % PAT_PERIOD;
}

static inline unsigned hist_index(uint64_t v)
{
	unsigned shift;

	if (v < (2u << HIST_SUB_BITS)) {
		return (unsigned)v;
	}
	shift = (unsigned)(63 - __builtin_clzll(v)) - HIST_SUB_BITS;
	return (shift << HIST_SUB_BITS) + (unsigned)(v >> shift);
}

/* The highest value that lands in bucket @idx (HdrHistogram reports this). */
static uint64_t hist_highest(unsigned idx)
{
	unsigned shift;
	uint64_t sub;

	if (idx < (2u << HIST_SUB_BITS)) {
		return idx;
	}
	shift = (idx >> HIST_SUB_BITS) - 1;
	sub = (idx & ((1u << HIST_SUB_BITS) - 1)) | (1u << HIST_SUB_BITS);
	return ((sub + 1) << shift) - 1;
}

static inline void hist_record(struct loader_stats *st, uint64_t ns)
{
	st->hist[hist_index(ns)]++;
	if (ns > st->max_ns) {
		st->max_ns = ns;
	}
}

/* Value at percentile @p (0..100) of @hist holding @total samples, in ns. */
static uint64_t hist_percentile(const uint64_t *hist, uint64_t total, double p,
				uint64_t max_ns)
{
	double want = p / 100.0 * (double)total;
	uint64_t rank = (uint64_t)want, seen = 0, v;
	unsigned i;

	if (total == 0) {
		return 0;
	}
	if ((double)rank < want) {
		rank++;	/* ceil() without libm */
	}
	if (rank < 1) {
		rank = 1;
	}
	for (i = 0; i < HIST_BUCKETS; i++) {
		seen += hist[i];
		if (seen >= rank) {
			v = hist_highest(i);
			return v < max_ns ? v : max_ns;
		}
	}
	return max_ns;
}

/* Records the first error of this loader for main() to print, once. */
static void note_error(struct loader *t, int err, const char *what)
{
	t->st.errors++;
	if (t->st.first_what == NULL) {
		t->st.first_what = what;
		t->st.first_err = err;
	}
}

/* A per-connection error: count it, close the socket, retire the slot. */
static void conn_fail(struct loader *t, struct conn *c, int err, const char *what)
{
	note_error(t, err, what);
	if (c->fd >= 0) {
		(void)close(c->fd);
		c->fd = -1;
	}
	c->state = CONN_DEAD;
	t->live--;
}

/*
 * Creates @c's socket, registers it and starts connecting.  On success @c is
 * CONN_OPEN (loopback connects often complete at once) or CONN_CONNECTING;
 * returns -errno on failure with nothing left open.  Registered once with
 * EPOLLIN|EPOLLOUT|EPOLLET|EPOLLRDHUP: no epoll_ctl() on the data path.
 */
static int open_conn(struct loader *t, struct conn *c)
{
	const struct config *cfg = t->cfg;
	struct epoll_event ev;
	int one = 1, fd, r;

	fd = socket(cfg->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		return -errno;
	}
	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0) {
		goto fail;
	}
	if (cfg->mode == MODE_CHURN && cfg->close_rst) {
		struct linger lg = { .l_onoff = 1, .l_linger = 0 };

		if (setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) < 0) {
			goto fail;
		}
	}
	c->gen++;
	ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
	ev.data.u64 = (uint64_t)c->gen << 32 | (uint64_t)(c - t->conns);
	if (epoll_ctl(t->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		goto fail;
	}
	if (connect(fd, (const struct sockaddr *)&cfg->addr, cfg->addrlen) == 0) {
		c->state = CONN_OPEN;
	} else if (errno == EINPROGRESS) {
		c->state = CONN_CONNECTING;
	} else {
		goto fail;
	}
	c->fd = fd;
	c->wblocked = false;
	return 0;
fail:
	r = -errno;	/* before close() can clobber errno */
	(void)close(fd);
	return r;
}

static void expected_end(struct loader *t, struct conn *c, bool reset, bool may_send);

/*
 * Handles an event on a CONN_CONNECTING slot.  Returns 1 if it is now open,
 * 0 if still connecting, -1 if it failed (and was retired).  Success needs no
 * getsockopt(SO_ERROR): a failed connect always raises EPOLLERR.
 */
static int connect_done(struct loader *t, struct conn *c, uint32_t events)
{
	int err = 0;
	socklen_t len = sizeof(err);

	if (events & (EPOLLERR | EPOLLHUP)) {
		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) {
			err = errno;
		}
		if (err == ECONNRESET && t->cfg->expect_reset && t->running) {
			/* accepted, then reset before a byte was echoed */
			expected_end(t, c, true, true);
			return -1;
		}
		conn_fail(t, c, err ? -err : -ECONNREFUSED, "connect");
		return -1;
	}
	if (!(events & EPOLLOUT)) {
		return 0;
	}
	c->state = CONN_OPEN;
	return 1;
}

/*
 * Hands @c's bytes up to tx_end to the kernel.  A short send means the send
 * buffer filled up (the kernel then flags the socket so that freeing space
 * raises EPOLLOUT), so we stop there instead of paying for an EAGAIN.
 * Returns 0, or -1 if @c failed and was retired.
 */
/* sink and source: n bytes moved at now; inside the measured window they count, a
 * "message" per --size bytes (no latency: nothing comes back to time). */
static void one_way_bytes(struct loader *t, uint64_t n, uint64_t now)
{
	if (now >= t->m_start && now < t->m_end) {
		t->st.bytes += n;
		t->one_way_acc += n;
		while (t->one_way_acc >= t->unit) {
			t->one_way_acc -= t->unit;
			t->st.msgs++;
			hist_record(&t->st, 0);
		}
	}
}

/* source: check n bytes received at stream offset off against RFC 864's pattern
 * (line k: the 72 characters from 32 + k mod 95, then CRLF), computed here on its
 * own. Returns true when every byte matches. */
static bool chargen_ok(const uint8_t *p, size_t n, uint64_t off)
{
	for (size_t i = 0; i < n; i++) {
		uint64_t o = off + i;
		uint64_t line = o / 74, col = o % 74;
		uint8_t want = col == 72 ? '\r' : col == 73 ? '\n' :
			       (uint8_t)(32 + (line + col) % 95);

		if (p[i] != want) {
			return false;
		}
	}
	return true;
}

/* sink: keep sending until the socket is full, a budget of bytes per call so that the
 * thread's other connections get their turn. A socket that took the whole budget
 * raises no new EPOLLOUT edge: EPOLL_CTL_MOD re-arms it, which queues one at once
 * while it is writable. */
#define SINK_BUDGET (1u << 20)

static int sink_more(struct loader *t, struct conn *c)
{
	struct epoll_event ev = {
		.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
		.data.u64 = (uint64_t)c->gen << 32 | (uint64_t)(c - t->conns),
	};

	if (epoll_ctl(t->epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0) {
		conn_fail(t, c, -errno, "epoll_ctl");
		return -1;
	}
	return 0;
}

static int send_pending(struct loader *t, struct conn *c, uint64_t now)
{
	if (t->cfg->mode == MODE_SINK) {
		if (t->stopping) {
			return 0;
		}
		c->tx_end = c->tx_off + SINK_BUDGET;
	}
	while (c->tx_off < c->tx_end) {
		uint64_t left = c->tx_end - c->tx_off;
		size_t len = left < IO_MAX ? (size_t)left : IO_MAX;
		ssize_t n = send(c->fd, pattern_at(c, c->tx_off), len,
				 MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0) {
			if (errno == EINTR) {
				continue;
			}
			if (errno == EAGAIN) {
				c->wblocked = true;
				return 0;
			}
			if ((errno == ECONNRESET || errno == EPIPE) && t->cfg->expect_reset) {
				/* Not sent from here: the new socket's connect raises
				 * EPOLLOUT, and on_event sends then. */
				expected_end(t, c, true, false);
				return -1;
			}
			conn_fail(t, c, -errno, "send");
			return -1;
		}
		c->tx_off += (uint64_t)n;
		if (c->one_way) {
			one_way_bytes(t, (uint64_t)n, now);
		}
		if (t->send_ts) {
			while (c->send_mark < c->tx_off) {
				c->ts[c->sent & c->ts_mask] = now;
				c->sent++;
				c->send_mark += t->unit;
			}
		}
		if ((size_t)n < len) {
			c->wblocked = true;
			return 0;
		}
	}
	if (t->cfg->mode == MODE_SINK) {
		return sink_more(t, c);
	}
	return 0;
}

/* Scheduled time of message @k of the connection with global id @id. */
static inline uint64_t sched_time(const struct loader *t, uint64_t k, uint32_t id)
{
	double i = (double)k * (double)t->cfg->conns + (double)id;

	return t->t0 + (uint64_t)(i * t->ns_per_msg);
}

/* Message number c->done has fully arrived at @now: account for it and
 * queue what the mode sends next. */
static void message_done(struct loader *t, struct conn *c, uint64_t now)
{
	const struct config *cfg = t->cfg;
	uint64_t k = c->done++;
	uint64_t begin, at = now;

	switch (cfg->mode) {
	case MODE_RATE:
		begin = sched_time(t, k, c->id);
		at = begin;	/* counted by schedule: a stall cannot hide */
		break;
	case MODE_CHURN:
		begin = c->ts[0];
		break;
	default:
		begin = c->ts[k & c->ts_mask];
		break;
	}
	if (at >= t->m_start && at < t->m_end) {
		t->st.msgs++;
		t->st.bytes += t->unit;
		hist_record(&t->st, now > begin ? now - begin : 0);
	}
	if (c->msg_bad) {
		t->st.mismatches++;
		c->msg_bad = false;
	}
	c->msg_end += t->unit;
	if (cfg->mode == MODE_PINGPONG) {
		if (!t->stopping) {
			c->tx_end += t->unit;
		}
	} else if (cfg->mode == MODE_RATE) {
		if (c->due > c->queued) {
			c->queued++;
			c->tx_end += t->unit;
		}
	}
}

/* Checks @n received bytes against the pattern, message by message. */
static void check_data(struct loader *t, struct conn *c, const uint8_t *p,
		       size_t n, uint64_t now)
{
	while (n > 0) {
		uint64_t want = c->msg_end - c->rx_off;
		size_t k = want < n ? (size_t)want : n;

		if (memcmp(p, pattern_at(c, c->rx_off), k) != 0) {
			c->msg_bad = true;
		}
		c->rx_off += k;
		p += k;
		n -= k;
		if (c->rx_off == c->msg_end) {
			message_done(t, c, now);
		}
	}
}

static void start_cycle(struct loader *t, struct conn *c, bool may_send);

/* Churn: the echo is complete; close as configured and start the next cycle. */
static void end_cycle(struct loader *t, struct conn *c)
{
	(void)close(c->fd);	/* SO_LINGER 0 was set at socket time for rst */
	c->fd = -1;
	c->state = CONN_IDLE;
	if (!t->stopping) {
		start_cycle(t, c, true);
	}
}

/*
 * Reads and checks what the kernel holds for @c; *now is the time of the last
 * read.  Returns 0 if @c is still open, 1 if it was closed or replaced (error
 * or end of a churn cycle).  Edge-triggered: a short read means the receive
 * queue was empty, and a later arrival queues a new event, so we stop there
 * and save a recv() that would only say EAGAIN.  With @drain (RDHUP/HUP/ERR)
 * we read on to EOF, or a FIN behind the data would never be noticed.
 */
static int do_read(struct loader *t, struct conn *c, bool drain, uint64_t *now)
{
	uint64_t one_way_read = 0;

	for (;;) {
		ssize_t n = recv(c->fd, t->rx, IO_MAX, 0);

		if (n > 0 && c->one_way) {
			*now = now_ns();
			if (t->cfg->mode == MODE_SINK) {
				conn_fail(t, c, 0, "the server sent bytes (not a discard server)");
				return 1;
			}
			if (!chargen_ok(t->rx, (size_t)n, c->rx_off)) {
				t->st.mismatches++;
			}
			c->rx_off += (uint64_t)n;
			one_way_bytes(t, (uint64_t)n, *now);
			if ((size_t)n < IO_MAX && !drain) {
				return 0;
			}
			/* A chargen server can fill the socket as fast as we check it: read
			 * to EAGAIN and this loop may never end (nor the run at its
			 * deadline). After a budget, re-arm the socket, which queues an event
			 * at once while data is left, and let the other work run. */
			one_way_read += (uint64_t)n;
			if (!drain && one_way_read >= SINK_BUDGET) {
				return sink_more(t, c) < 0 ? 1 : 0;
			}
			continue;
		}
		if (n > 0) {
			*now = now_ns();
			if ((uint64_t)n > c->tx_off - c->rx_off) {
				conn_fail(t, c, 0, "more bytes echoed than sent");
				return 1;
			}
			check_data(t, c, t->rx, (size_t)n, *now);
			if (t->cfg->mode == MODE_CHURN && c->rx_off == c->tx_end) {
				end_cycle(t, c);
				return 1;
			}
			if ((size_t)n < IO_MAX && !drain) {
				return 0;
			}
			continue;
		}
		if (n == 0) {
			if (t->cfg->expect_close) {
				expected_end(t, c, false, true);
				return 1;
			}
			conn_fail(t, c, 0, "unexpected EOF");
			return 1;
		}
		if (errno == EINTR) {
			continue;
		}
		if (errno == EAGAIN) {
			return 0;
		}
		if (errno == ECONNRESET && t->cfg->expect_reset) {
			expected_end(t, c, true, true);
			return 1;
		}
		conn_fail(t, c, -errno, "recv");
		return 1;
	}
}

/* Churn: one connect -> send -> echo -> close cycle on slot @c.  Without
 * @may_send the message waits for the connect's EPOLLOUT event. */
static void start_cycle(struct loader *t, struct conn *c, bool may_send)
{
	int r;

	c->sock_base = 0;
	c->tx_off = 0;
	c->rx_off = 0;
	c->tx_end = t->unit;
	c->msg_end = t->unit;
	c->done = 0;
	c->msg_bad = false;
	c->ts[0] = now_ns();
	r = open_conn(t, c);
	if (r < 0) {
		conn_fail(t, c, r, "connect");
		return;
	}
	if (may_send && c->state == CONN_OPEN) {
		(void)send_pending(t, c, c->ts[0]);
	}
}

/* Stream: top the window up to whole chunks. */
static void refill(struct loader *t, struct conn *c)
{
	uint64_t end = (c->rx_off + t->cfg->window) / t->unit * t->unit;

	if (end > c->tx_end) {
		c->tx_end = end;
	}
}

static void note_end(uint64_t *count, uint64_t *min, uint64_t *max, uint64_t bytes)
{
	(*count)++;
	if (bytes < *min) {
		*min = bytes;
	}
	if (bytes > *max) {
		*max = bytes;
	}
}

/*
 * The server ended @c's socket as --expect-close (@reset false: a clean EOF,
 * every byte before it received and checked) or --expect-reset (@reset true)
 * allows.  Counts the end with the bytes this socket echoed; a wrong byte in
 * the unfinished message is a mismatch.  The messages in flight are dropped
 * (no msg, no latency).  Before the window's end the slot reconnects and goes
 * on from the next message: the byte stream and the message numbers carry on
 * (so a rate slot keeps its schedule), churn starts its next cycle, and sink
 * and source start a new stream (chargen restarts on every connection).  A
 * failed reconnect is an error.  With @may_send the new socket, if already
 * connected, gets its first bytes at once; without (called from
 * send_pending()) its connect's EPOLLOUT event makes on_event() send them.
 */
static void expected_end(struct loader *t, struct conn *c, bool reset, bool may_send)
{
	const struct config *cfg = t->cfg;
	uint64_t got = c->rx_off - c->sock_base, base;
	int r;

	if (reset) {
		note_end(&t->st.resets, &t->st.reset_bytes_min, &t->st.reset_bytes_max, got);
	} else {
		note_end(&t->st.closes, &t->st.close_bytes_min, &t->st.close_bytes_max, got);
	}
	if (c->msg_bad) {
		t->st.mismatches++;
		c->msg_bad = false;
	}
	(void)close(c->fd);
	c->fd = -1;
	c->state = CONN_IDLE;	/* not busy: the drain after the window ends with it */
	if (t->stopping) {
		return;
	}
	if (cfg->mode == MODE_CHURN) {
		start_cycle(t, c, may_send);
		return;
	}
	/* Echo modes: tx_end is a whole number of messages; what lies below it
	 * was sent or queued on the old socket, and is dropped. */
	base = c->one_way ? 0 : c->tx_end;
	c->sock_base = base;
	c->tx_off = base;
	c->rx_off = base;
	c->tx_end = base;
	c->send_mark = base;
	c->msg_end = base + t->unit;
	c->sent = base / t->unit;
	c->done = c->sent;
	c->queued = c->sent;
	r = open_conn(t, c);
	if (r < 0) {
		conn_fail(t, c, r, "reconnect");
		return;
	}
	switch (cfg->mode) {
	case MODE_PINGPONG:
		c->tx_end = base + (uint64_t)cfg->depth * t->unit;
		break;
	case MODE_STREAM:
		refill(t, c);
		break;
	case MODE_RATE:
		if (c->due > c->queued) {
			c->queued++;
			c->tx_end += t->unit;
		}
		break;
	case MODE_SINK:
		c->tx_end = SINK_BUDGET;
		break;
	default:
		break;	/* source sends nothing */
	}
	if (may_send && c->state == CONN_OPEN && c->tx_off < c->tx_end) {
		(void)send_pending(t, c, now_ns());
	}
}

static void on_event(struct loader *t, uint64_t data, uint32_t events)
{
	struct conn *c = &t->conns[(uint32_t)data];
	uint64_t now = 0;

	if ((uint32_t)(data >> 32) != c->gen || c->fd < 0) {
		return;	/* closed or replaced earlier in this batch */
	}
	if (c->state == CONN_CONNECTING && connect_done(t, c, events) <= 0) {
		return;
	}
	if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) {
		c->wblocked = false;
	}
	if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
		if (do_read(t, c, events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR), &now)) {
			return;
		}
	}
	if (t->cfg->mode == MODE_STREAM && !t->stopping) {
		refill(t, c);
	}
	if (t->cfg->mode == MODE_SINK && !t->stopping) {
		c->tx_end = c->tx_off + 1;	/* send_pending sets the real budget */
	}
	if (!c->wblocked && c->tx_off < c->tx_end) {
		(void)send_pending(t, c, now ? now : now_ns());
	}
}

/*
 * Waits for events until the absolute CLOCK_MONOTONIC @deadline at most.
 * Without epoll_pwait2 (Linux < 5.11) the wait is rounded down to whole
 * milliseconds, which polls through the last one rather than oversleep.
 */
static int wait_events(struct loader *t, struct epoll_event *evs,
		       uint64_t deadline, uint64_t now)
{
	uint64_t left = deadline > now ? deadline - now : 0;
	int n;

	if (!t->no_pwait2) {
		struct timespec ts = ns_to_timespec(left);

		n = epoll_pwait2(t->epfd, evs, MAX_EVENTS, &ts, NULL);
		if (n >= 0 || errno != ENOSYS) {
			return n < 0 && errno == EINTR ? 0 : n;
		}
		t->no_pwait2 = true;
	}
	if (left > (uint64_t)INT_MAX * 1000000) {
		left = (uint64_t)INT_MAX * 1000000;
	}
	n = epoll_wait(t->epfd, evs, MAX_EVENTS, (int)(left / 1000000));
	return n < 0 && errno == EINTR ? 0 : n;
}

/* Setup (all modes but churn): connect every slot, within SETUP_TIMEOUT_NS. */
static void connect_all(struct loader *t)
{
	struct epoll_event evs[MAX_EVENTS];
	uint64_t deadline = now_ns() + SETUP_TIMEOUT_NS;
	uint32_t pending = 0, i;

	for (i = 0; i < t->nconns; i++) {
		struct conn *c = &t->conns[i];
		int r = open_conn(t, c);

		if (r < 0) {
			conn_fail(t, c, r, "connect");
		} else if (c->state == CONN_CONNECTING) {
			pending++;
		}
	}
	while (pending > 0) {
		uint64_t now = now_ns();
		int n, j;

		if (now >= deadline) {
			break;
		}
		n = wait_events(t, evs, deadline, now);
		if (n < 0) {
			note_error(t, -errno, "epoll_wait");
			break;
		}
		for (j = 0; j < n; j++) {
			struct conn *c = &t->conns[(uint32_t)evs[j].data.u64];

			if ((uint32_t)(evs[j].data.u64 >> 32) != c->gen ||
			    c->state != CONN_CONNECTING) {
				continue;
			}
			if (connect_done(t, c, evs[j].events) != 0) {
				pending--;
			}
		}
	}
	for (i = 0; i < t->nconns; i++) {
		if (t->conns[i].state == CONN_CONNECTING) {
			conn_fail(t, &t->conns[i], -ETIMEDOUT, "connect");
		}
	}
}

/* Rate: start every message whose time has come; returns the next time. */
static uint64_t issue_due(struct loader *t, uint64_t now)
{
	while (t->sched_next < t->m_end) {
		struct conn *c;

		if (t->sched_next > now) {
			return t->sched_next;
		}
		c = &t->conns[t->sched_conn];
		c->due++;
		if (c->state == CONN_OPEN && c->queued == c->done) {
			c->queued++;
			c->tx_end += t->unit;
			if (!c->wblocked) {
				(void)send_pending(t, c, now);
			}
		}
		if (++t->sched_conn == t->nconns) {
			t->sched_conn = 0;
			t->sched_round++;
		}
		t->sched_next = sched_time(t, t->sched_round, t->first_id + t->sched_conn);
	}
	return UINT64_MAX;
}

static bool conn_busy(const struct conn *c)
{
	switch (c->state) {
	case CONN_CONNECTING:
		return true;
	case CONN_OPEN:
		/* sink and source expect no echo: nothing is owed at the end */
		return !c->one_way && (c->rx_off < c->tx_end || c->due > c->queued);
	default:
		return false;
	}
}

/* After the window: true once nothing is in flight any more. */
static bool drained(const struct loader *t)
{
	uint32_t i;

	for (i = 0; i < t->nconns; i++) {
		if (conn_busy(&t->conns[i])) {
			return false;
		}
	}
	return true;
}

static void kick(struct loader *t)
{
	const struct config *cfg = t->cfg;
	uint32_t i;

	if (cfg->mode == MODE_RATE) {
		t->sched_next = sched_time(t, 0, t->first_id);
		return;
	}
	for (i = 0; i < t->nconns; i++) {
		struct conn *c = &t->conns[i];

		if (cfg->mode == MODE_CHURN) {
			start_cycle(t, c, true);
			continue;
		}
		if (c->state != CONN_OPEN) {
			continue;
		}
		c->one_way = cfg->mode == MODE_SINK || cfg->mode == MODE_SOURCE;
		if (cfg->mode == MODE_PINGPONG) {
			c->tx_end = (uint64_t)cfg->depth * t->unit;
		} else if (cfg->mode == MODE_SINK) {
			c->tx_end = SINK_BUDGET;
		} else if (cfg->mode == MODE_SOURCE) {
			continue;	/* sends nothing: reads what arrives */
		} else {
			refill(t, c);
		}
		(void)send_pending(t, c, now_ns());
	}
}

static void run_loop(struct loader *t)
{
	struct epoll_event evs[MAX_EVENTS];
	uint64_t next_due = UINT64_MAX;

	t->running = true;
	kick(t);
	for (;;) {
		uint64_t now = now_ns(), deadline;
		int n, i;

		if (!t->stopping && now >= t->m_end) {
			t->stopping = true;
		}
		if (t->cfg->mode == MODE_RATE) {
			next_due = issue_due(t, now);
		}
		if (t->live == 0 || (t->stopping && drained(t))) {
			break;
		}
		if (now >= t->hard) {
			uint32_t j;

			for (j = 0; j < t->nconns; j++) {
				if (conn_busy(&t->conns[j])) {
					t->st.stuck++;
					note_error(t, 0, "connection still busy at the deadline");
				}
			}
			break;
		}
		deadline = t->stopping ? t->hard : t->m_end;
		if (next_due < deadline) {
			deadline = next_due;
		}
		n = wait_events(t, evs, deadline, now);
		if (n < 0) {
			note_error(t, -errno, "epoll_wait");
			break;
		}
		for (i = 0; i < n; i++) {
			on_event(t, evs[i].data.u64, evs[i].events);
		}
	}
}

/* ---- UDP ----
 *
 * Each flow is a connected UDP socket (as most UDP clients are), registered
 * EPOLLIN|EPOLLET once; EPOLLOUT is added only while a send met a full
 * buffer.  Datagrams go out and come in by sendmmsg()/recvmmsg() in batches
 * of UDP_BATCH so that the loader is not the bottleneck.  A flow remembers
 * the last ring_mask + 1 sequence numbers it sent (struct slot): a datagram
 * is received (first intact copy), corrupted (wrong length, header or
 * payload byte), duplicated (a later intact copy), reordered (received
 * intact below the highest sequence number received so far), lost (no answer
 * within --loss-timeout, or its slot was needed again, i.e. a ring's worth
 * of later datagrams went out first) or late (an answer after it was
 * declared lost, or too far behind the window to tell).  Only received
 * datagrams give latencies.
 */

static inline const uint8_t *udp_payload(const struct flow *f, uint64_t seq)
{
	uint64_t off = f->seed + (seq % PAT_PERIOD) * (uint64_t)UDP_SEQ_STRIDE;

	return pattern + off % PAT_PERIOD;
}

/* A flow error: count it, close the socket, forget what was in flight. */
static void udp_fail(struct loader *t, struct flow *f, int err, const char *what)
{
	note_error(t, err, what);
	if (f->fd >= 0) {
		(void)close(f->fd);
		f->fd = -1;
	}
	f->state = CONN_DEAD;
	f->inflight = 0;
	f->due = f->next_seq;
	t->live--;
}

/* Receive buffer the loader asks for: room for every datagram in flight
 * (the kernel charges about size + 768 bytes each), doubled. */
static int udp_rcvbuf(const struct config *cfg)
{
	uint64_t need;

	if (cfg->mode != MODE_PINGPONG) {
		return 0;
	}
	need = (uint64_t)cfg->depth * (cfg->size + 768) * 2;
	if (need <= UDP_RCVBUF_DEFAULT) {
		return 0;
	}
	return need > INT_MAX / 2 ? INT_MAX / 2 : (int)need;
}

/* Opens @f's socket, connected to the server and registered; -errno on
 * failure with nothing left open. */
static int udp_open(struct loader *t, struct flow *f)
{
	const struct config *cfg = t->cfg;
	struct epoll_event ev;
	int rcvbuf = udp_rcvbuf(cfg);
	int fd, r;

	fd = socket(cfg->addr.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		return -errno;
	}
	if (rcvbuf > 0 &&
	    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)) < 0) {
		goto fail;
	}
	if (connect(fd, (const struct sockaddr *)&cfg->addr, cfg->addrlen) < 0) {
		goto fail;
	}
	ev.events = EPOLLIN | EPOLLET;
	ev.data.u64 = (uint64_t)(f - t->flows);
	if (epoll_ctl(t->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		goto fail;
	}
	f->fd = fd;
	f->state = CONN_OPEN;
	return 0;
fail:
	r = -errno;	/* before close() can clobber errno */
	(void)close(fd);
	return r;
}

/* Asks for EPOLLOUT on @f (@want) or stops asking.  EPOLL_CTL_MOD re-checks
 * readiness, so space freed before the call still raises the event. */
static int udp_want_out(struct loader *t, struct flow *f, bool want)
{
	struct epoll_event ev = {
		.events = EPOLLIN | EPOLLET | (want ? EPOLLOUT : 0),
		.data.u64 = (uint64_t)(f - t->flows),
	};

	f->wblocked = want;
	if (epoll_ctl(t->epfd, EPOLL_CTL_MOD, f->fd, &ev) < 0) {
		udp_fail(t, f, -errno, "epoll_ctl");
		return -1;
	}
	return 0;
}

/* Datagram @seq of @f went out with time stamp @ts. */
static void udp_sent(struct loader *t, struct flow *f, uint64_t seq, uint64_t ts)
{
	struct slot *s = &f->ring[seq & t->ring_mask];

	if (s->state == SLOT_OUT) {
		/* A ring's worth of later datagrams went out first: lost. */
		s->state = SLOT_LOST;
		f->inflight--;
		t->st.lost++;
	}
	s->seq = seq;
	s->ts = ts;
	s->state = SLOT_OUT;
	f->inflight++;
	t->st.sent++;
	if (ts + t->loss_ns < t->next_expire) {
		t->next_expire = ts + t->loss_ns;
	}
}

/*
 * Sends what @f owes: pingpong, up to --depth in flight (nothing once
 * stopping); rate, every datagram whose scheduled time has come.  Returns 0,
 * or -1 if @f failed and was retired.  A full socket buffer (EAGAIN, ENOBUFS)
 * parks the flow until EPOLLOUT.
 */
static int udp_send(struct loader *t, struct flow *f, uint64_t now)
{
	const struct config *cfg = t->cfg;
	uint32_t body = (uint32_t)cfg->size - UDP_HDR_LEN;

	while (!f->wblocked) {
		uint64_t want;
		unsigned k, i;
		int n;

		if (cfg->mode == MODE_RATE) {
			want = f->due - f->next_seq;
		} else {
			want = t->stopping || f->inflight >= cfg->depth ? 0 :
			       cfg->depth - f->inflight;
		}
		if (want == 0) {
			return 0;
		}
		k = want < UDP_BATCH ? (unsigned)want : UDP_BATCH;
		for (i = 0; i < k; i++) {
			uint64_t seq = f->next_seq + i;
			struct udp_hdr *h = &t->hdrs[i];

			h->flow = f->id;
			h->size = (uint32_t)cfg->size;
			h->seq = seq;
			h->ts = cfg->mode == MODE_RATE ? sched_time(t, seq, f->id) : now;
			t->iov[2 * i] = (struct iovec){ h, UDP_HDR_LEN };
			t->iov[2 * i + 1] = (struct iovec){ (void *)udp_payload(f, seq), body };
			memset(&t->mm[i], 0, sizeof(t->mm[i]));
			t->mm[i].msg_hdr.msg_iov = &t->iov[2 * i];
			t->mm[i].msg_hdr.msg_iovlen = 2;
		}
		n = sendmmsg(f->fd, t->mm, k, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR) {
				continue;
			}
			if (errno == EAGAIN || errno == ENOBUFS) {
				return udp_want_out(t, f, true);
			}
			udp_fail(t, f, -errno, "sendmmsg");
			return -1;
		}
		for (i = 0; i < (unsigned)n; i++) {
			udp_sent(t, f, f->next_seq + i, t->hdrs[i].ts);
		}
		f->next_seq += (uint64_t)n;
	}
	return 0;
}

/* Checks one datagram of @len bytes that came back on @f at @now. */
static void udp_check(struct loader *t, struct flow *f, const uint8_t *p, size_t len,
		      uint64_t now)
{
	const struct config *cfg = t->cfg;
	struct udp_hdr hb;
	const struct udp_hdr *h = &hb;
	struct slot *s;
	uint64_t at;
	bool bad;

	/* Copied out: a receive buffer carries no alignment promise. */
	memset(&hb, 0, sizeof(hb));
	memcpy(&hb, p, len < sizeof(hb) ? len : sizeof(hb));
	if (len != cfg->size || h->flow != f->id || h->size != cfg->size ||
	    h->seq >= f->next_seq) {
		t->st.corrupted++;	/* cannot tell which datagram it was */
		return;
	}
	s = &f->ring[h->seq & t->ring_mask];
	if (s->seq != h->seq || s->state == SLOT_FREE) {
		t->st.late++;		/* behind the window: declared lost long ago */
		return;
	}
	if (h->ts != s->ts) {
		t->st.corrupted++;
		return;
	}
	bad = memcmp(p + UDP_HDR_LEN, udp_payload(f, h->seq), len - UDP_HDR_LEN) != 0;
	if (bad) {
		t->st.corrupted++;
	}
	if (s->state == SLOT_DONE) {
		t->st.duplicated += !bad;
		return;
	}
	if (s->state == SLOT_LOST) {
		t->st.late += !bad;
		return;
	}
	s->state = SLOT_DONE;	/* answered, intact or not: not lost */
	f->inflight--;
	if (bad) {
		return;
	}
	t->st.received++;
	if (h->seq + 1 < f->rx_high) {
		t->st.reordered++;
	} else {
		f->rx_high = h->seq + 1;
	}
	if (t->tune_hist != NULL) {
		t->tune_hist[hist_index(now > s->ts ? now - s->ts : 0)]++;
		t->tune_n++;
	}
	at = cfg->mode == MODE_RATE ? s->ts : now;
	if (at >= t->m_start && at < t->m_end) {
		t->st.msgs++;
		t->st.bytes += len;
		hist_record(&t->st, now > s->ts ? now - s->ts : 0);
	}
}

/*
 * Reads and checks what the kernel holds for @f.  Returns 0, or -1 if @f
 * failed (an ICMP error such as port unreachable arrives as ECONNREFUSED).
 * Edge-triggered: a batch shorter than UDP_BATCH means the queue was empty,
 * and a later datagram raises a new edge, so we stop there.
 */
static int udp_read(struct loader *t, struct flow *f)
{
	for (;;) {
		uint64_t now;
		unsigned i;
		int n;

		for (i = 0; i < UDP_BATCH; i++) {
			t->iov[i] = (struct iovec){ t->rx + i * t->rx_len, t->rx_len };
			memset(&t->mm[i], 0, sizeof(t->mm[i]));
			t->mm[i].msg_hdr.msg_iov = &t->iov[i];
			t->mm[i].msg_hdr.msg_iovlen = 1;
		}
		n = recvmmsg(f->fd, t->mm, UDP_BATCH, 0, NULL);
		if (n < 0) {
			if (errno == EINTR) {
				continue;
			}
			if (errno == EAGAIN) {
				return 0;
			}
			udp_fail(t, f, -errno, "recvmmsg");
			return -1;
		}
		now = now_ns();
		for (i = 0; i < (unsigned)n; i++) {
			size_t len = t->mm[i].msg_len;

			if (t->mm[i].msg_hdr.msg_flags & MSG_TRUNC) {
				len = t->rx_len + 1;	/* longer than sent: corrupted */
			}
			udp_check(t, f, t->rx + i * t->rx_len, len, now);
		}
		if ((unsigned)n < UDP_BATCH) {
			return 0;
		}
	}
}

/* Declares lost what has waited --loss-timeout; refills pingpong windows. */
static void udp_expire(struct loader *t, uint64_t now)
{
	uint64_t next = UINT64_MAX, span = (uint64_t)t->ring_mask + 1;
	uint32_t i;

	for (i = 0; i < t->nconns; i++) {
		struct flow *f = &t->flows[i];
		uint32_t before = f->inflight;

		if (f->state != CONN_OPEN) {
			continue;
		}
		if (f->next_seq - f->oldest > span) {
			f->oldest = f->next_seq - span;
		}
		while (f->oldest < f->next_seq) {
			struct slot *s = &f->ring[f->oldest & t->ring_mask];

			if (s->seq == f->oldest && s->state == SLOT_OUT) {
				if (s->ts + t->loss_ns > now) {
					if (s->ts + t->loss_ns < next) {
						next = s->ts + t->loss_ns;
					}
					break;
				}
				s->state = SLOT_LOST;
				f->inflight--;
				t->st.lost++;
			}
			f->oldest++;
		}
		if (f->inflight < before && t->cfg->mode == MODE_PINGPONG) {
			(void)udp_send(t, f, now);
			if (f->state == CONN_OPEN && f->oldest < f->next_seq) {
				struct slot *s = &f->ring[f->oldest & t->ring_mask];

				if (s->state == SLOT_OUT && s->ts + t->loss_ns < next) {
					next = s->ts + t->loss_ns;
				}
			}
		}
	}
	t->next_expire = next;
}

/*
 * Auto loss timeout (no --loss-timeout): every LOSS_AUTO_PERIOD_NS, from the
 * latencies received since the last tuning (LOSS_AUTO_SAMPLES at least), the
 * timeout becomes 10 x their p99, within [50 ms, 1 s].  A lost datagram then
 * holds its pingpong slot for a few round trips, not a second, and one that
 * was merely slow is still told apart: it comes back late.
 */
static void udp_tune(struct loader *t, uint64_t now)
{
	uint64_t p99, want, cap = secs_to_ns(t->cfg->loss_timeout);

	t->next_tune = now + LOSS_AUTO_PERIOD_NS;
	if (t->tune_n < LOSS_AUTO_SAMPLES) {
		return;
	}
	p99 = hist_percentile(t->tune_hist, t->tune_n, 99, UINT64_MAX);
	want = p99 * LOSS_AUTO_P99_MULT;
	want = want < LOSS_AUTO_MIN_NS ? LOSS_AUTO_MIN_NS : want > cap ? cap : want;
	memset(t->tune_hist, 0, HIST_BUCKETS * sizeof(*t->tune_hist));
	t->tune_n = 0;
	if (want != t->loss_ns) {
		t->loss_ns = want;
		t->next_expire = 0;	/* expiry times moved: rescan now */
	}
}

static void udp_on_event(struct loader *t, uint64_t data, uint32_t events)
{
	struct flow *f = &t->flows[(uint32_t)data];

	if (f->fd < 0) {
		return;	/* failed earlier in this batch */
	}
	if (f->wblocked && (events & (EPOLLOUT | EPOLLERR))) {
		if (udp_want_out(t, f, false) < 0) {
			return;
		}
	}
	if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
		if (udp_read(t, f) < 0) {
			return;
		}
	}
	(void)udp_send(t, f, now_ns());
}

/* Rate: make every datagram whose time has come due; returns the next time. */
static uint64_t udp_issue_due(struct loader *t, uint64_t now)
{
	while (t->sched_next < t->m_end) {
		struct flow *f;

		if (t->sched_next > now) {
			return t->sched_next;
		}
		f = &t->flows[t->sched_conn];
		if (f->state == CONN_OPEN) {
			f->due++;
			(void)udp_send(t, f, now);
		}
		if (++t->sched_conn == t->nconns) {
			t->sched_conn = 0;
			t->sched_round++;
		}
		t->sched_next = sched_time(t, t->sched_round, t->first_id + t->sched_conn);
	}
	return UINT64_MAX;
}

static bool udp_busy(const struct flow *f)
{
	return f->state == CONN_OPEN && (f->inflight > 0 || f->next_seq < f->due);
}

/*
 * Runs the flows until the window is over and every datagram is answered or
 * lost.  If some were declared lost after the window closed, it then listens
 * for one more loss timeout (--loss-timeout, or the automatic one's 1 s cap;
 * at most DRAIN_SLACK_NS) sending nothing, so that an answer a stall held up
 * at the very end is counted late, as it would be mid-run, not only lost.
 */
static void udp_run_loop(struct loader *t)
{
	struct epoll_event evs[MAX_EVENTS];
	uint64_t next_due = UINT64_MAX, lost_at_stop = 0, linger_end = 0;
	uint32_t i;

	if (t->cfg->mode == MODE_RATE) {
		t->sched_next = sched_time(t, 0, t->first_id);
	} else {
		uint64_t now = now_ns();

		for (i = 0; i < t->nconns; i++) {
			if (t->flows[i].state == CONN_OPEN) {
				(void)udp_send(t, &t->flows[i], now);
			}
		}
	}
	for (;;) {
		uint64_t now = now_ns(), deadline;
		bool busy = false;
		int n;

		if (!t->stopping && now >= t->m_end) {
			t->stopping = true;
			lost_at_stop = t->st.lost;
		}
		if (t->cfg->mode == MODE_RATE) {
			next_due = udp_issue_due(t, now);
		}
		if (t->tune_hist != NULL && now >= t->next_tune) {
			udp_tune(t, now);
		}
		if (now >= t->next_expire) {
			udp_expire(t, now);
		}
		for (i = 0; i < t->nconns && !busy; i++) {
			busy = udp_busy(&t->flows[i]);
		}
		if (t->live == 0) {
			break;
		}
		if (t->stopping && !busy) {
			if (t->st.lost == lost_at_stop) {
				break;
			}
			if (linger_end == 0) {
				uint64_t linger = secs_to_ns(t->cfg->loss_timeout);

				linger_end = now + (linger < DRAIN_SLACK_NS ? linger : DRAIN_SLACK_NS);
			}
			if (now >= linger_end) {
				break;
			}
		} else if (now >= t->hard) {
			for (i = 0; i < t->nconns; i++) {
				if (udp_busy(&t->flows[i])) {
					t->st.stuck++;
					note_error(t, 0, "flow still busy at the deadline");
				}
			}
			break;
		}
		deadline = linger_end != 0 ? linger_end : t->stopping ? t->hard : t->m_end;
		if (next_due < deadline) {
			deadline = next_due;
		}
		if (t->next_expire < deadline) {
			deadline = t->next_expire;
		}
		if (t->tune_hist != NULL && t->next_tune < deadline) {
			deadline = t->next_tune;
		}
		n = wait_events(t, evs, deadline, now);
		if (n < 0) {
			note_error(t, -errno, "epoll_wait");
			break;
		}
		for (int j = 0; j < n; j++) {
			udp_on_event(t, evs[j].data.u64, evs[j].events);
		}
	}
}

/*
 * Adds what @f's socket dropped for want of receive buffer (SO_MEMINFO's
 * SK_MEMINFO_DROPS) to rx_drops: a dropped answer with no other copy counts
 * as lost, and this tells how much of the loss was the loader's own.
 */
static void udp_count_drops(struct loader *t, const struct flow *f)
{
	uint32_t mem[SK_MEMINFO_VARS];
	socklen_t len = sizeof(mem);

	if (getsockopt(f->fd, SOL_SOCKET, SO_MEMINFO, mem, &len) < 0) {
		note_error(t, -errno, "getsockopt(SO_MEMINFO)");
		return;
	}
	if (len > SK_MEMINFO_DROPS * sizeof(mem[0])) {
		t->st.rx_drops += mem[SK_MEMINFO_DROPS];
	}
}

/* Setup: open and connect every flow (UDP connect() does not wait). */
static void udp_open_all(struct loader *t)
{
	uint32_t i;

	for (i = 0; i < t->nconns; i++) {
		int r = udp_open(t, &t->flows[i]);

		if (r < 0) {
			udp_fail(t, &t->flows[i], r, "socket");
		}
	}
}

static void *loader_main(void *arg)
{
	struct loader *t = arg;
	struct run *run = t->run;
	const struct config *cfg = t->cfg;
	uint32_t i;

	t->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (t->epfd < 0) {
		note_error(t, -errno, "epoll_create1");
		for (i = 0; i < t->nconns; i++) {
			t->conns[i].state = CONN_DEAD;
		}
		t->live = 0;
	} else if (cfg->proto == PROTO_UDP) {
		udp_open_all(t);
	} else if (cfg->mode != MODE_CHURN) {
		connect_all(t);
	}
	(void)pthread_barrier_wait(&run->ready);
	(void)pthread_barrier_wait(&run->go);
	t->t0 = run->t0;
	t->m_start = t->t0 + secs_to_ns(cfg->warmup);
	t->m_end = t->m_start + secs_to_ns(cfg->duration);
	t->hard = t->m_end + DRAIN_SLACK_NS + t->loss_ns;
	if (cfg->mode == MODE_RATE) {
		/* Sends are due at exact times: the default 50 us of timer slack
		 * would show up as latency measured from the schedule. */
		(void)prctl(PR_SET_TIMERSLACK, 1000ul, 0ul, 0ul, 0ul);
	}
	if (!run->abort && t->live > 0) {
		if (cfg->proto == PROTO_UDP) {
			udp_run_loop(t);
		} else {
			run_loop(t);
		}
	}
	for (i = 0; cfg->proto == PROTO_UDP && i < t->nconns; i++) {
		if (t->flows[i].fd >= 0) {
			udp_count_drops(t, &t->flows[i]);
			(void)close(t->flows[i].fd);
			t->flows[i].fd = -1;
		}
	}
	for (i = 0; cfg->proto == PROTO_TCP && i < t->nconns; i++) {
		if (t->conns[i].fd >= 0) {
			(void)close(t->conns[i].fd);
			t->conns[i].fd = -1;
		}
	}
	if (t->epfd >= 0) {
		(void)close(t->epfd);
	}
	(void)pthread_mutex_lock(&run->lock);
	run->finished++;
	(void)pthread_cond_signal(&run->cond);
	(void)pthread_mutex_unlock(&run->lock);
	return NULL;
}

static uint64_t next_pow2(uint64_t v)
{
	uint64_t p = 1;

	while (p < v) {
		p <<= 1;
	}
	return p;
}

/*
 * Send-timestamp ring entries per connection for the configured mode; UDP:
 * sequence numbers a flow tracks, at least UDP_RING_MIN, 4 windows in
 * pingpong, and in rate mode twice what a flow sends in --loss-timeout, so
 * that a slot is reused (its datagram declared lost early) only under a
 * reordering far deeper than any real path's.
 */
static uint64_t ring_len(const struct config *cfg)
{
	if (cfg->proto == PROTO_UDP) {
		double want = UDP_RING_MIN;

		if (cfg->mode == MODE_PINGPONG && 4.0 * cfg->depth > want) {
			want = 4.0 * cfg->depth;
		} else if (cfg->mode == MODE_RATE &&
			   2 * cfg->rate / cfg->conns * cfg->loss_timeout > want) {
			want = 2 * cfg->rate / cfg->conns * cfg->loss_timeout;
		}
		return want >= UDP_RING_MAX ? UDP_RING_MAX : next_pow2((uint64_t)want);
	}
	switch (cfg->mode) {
	case MODE_PINGPONG:
		return next_pow2((uint64_t)cfg->depth + 1);
	case MODE_STREAM:
		return next_pow2(cfg->window / cfg->size + 2);
	default:
		return 1;
	}
}

/* Allocates loader @t's slots for global ids [first, first + n). */
static int loader_init(struct loader *t, struct run *run, unsigned index,
		       uint32_t first, uint32_t n)
{
	const struct config *cfg = run->cfg;
	uint64_t rl = ring_len(cfg);
	uint32_t i;

	t->index = index;
	t->cfg = cfg;
	t->run = run;
	t->epfd = -1;
	t->nconns = n;
	t->live = n;
	t->first_id = first;
	t->unit = cfg->size;
	t->st.close_bytes_min = UINT64_MAX;
	t->st.reset_bytes_min = UINT64_MAX;
	t->send_ts = cfg->mode == MODE_PINGPONG || cfg->mode == MODE_STREAM;
	t->ns_per_msg = cfg->mode == MODE_RATE ? 1e9 / cfg->rate : 0;
	if (cfg->proto == PROTO_UDP) {
		t->ring_mask = (uint32_t)(rl - 1);
		t->loss_ns = secs_to_ns(cfg->loss_timeout);
		t->next_expire = UINT64_MAX;
		t->rx_len = (size_t)(cfg->size + 8) & ~(size_t)7;	/* > size, aligned */
		t->flows = calloc(n, sizeof(*t->flows));
		t->slot_store = calloc((size_t)(n * rl), sizeof(*t->slot_store));
		t->rx = aligned_alloc(8, UDP_BATCH * t->rx_len);
		t->mm = calloc(UDP_BATCH, sizeof(*t->mm));
		t->iov = calloc(2 * UDP_BATCH, sizeof(*t->iov));
		t->hdrs = calloc(UDP_BATCH, sizeof(*t->hdrs));
		if (!cfg->loss_timeout_set) {
			t->tune_hist = calloc(HIST_BUCKETS, sizeof(*t->tune_hist));
			if (t->tune_hist == NULL) {
				return -ENOMEM;
			}
		}
		if (t->flows == NULL || t->slot_store == NULL || t->rx == NULL ||
		    t->mm == NULL || t->iov == NULL || t->hdrs == NULL) {
			return -ENOMEM;
		}
		for (i = 0; i < n; i++) {
			struct flow *f = &t->flows[i];

			f->fd = -1;
			f->id = first + i;
			f->seed = (uint32_t)(((uint64_t)f->id * 2654435761u) % PAT_PERIOD);
			f->ring = t->slot_store + (size_t)i * rl;
		}
		return 0;
	}
	t->conns = calloc(n, sizeof(*t->conns));
	t->ts_store = calloc((size_t)(n * rl), sizeof(*t->ts_store));
	t->rx = malloc(IO_MAX);
	if (t->conns == NULL || t->ts_store == NULL || t->rx == NULL) {
		return -ENOMEM;
	}
	for (i = 0; i < n; i++) {
		struct conn *c = &t->conns[i];

		c->fd = -1;
		c->id = first + i;
		c->seed = (uint32_t)(((uint64_t)c->id * 2654435761u) % PAT_PERIOD);
		c->ts = t->ts_store + (size_t)i * rl;
		c->ts_mask = (uint32_t)(rl - 1);
		c->msg_end = t->unit;
	}
	return 0;
}

static void loader_finish(struct loader *t)
{
	if (t == NULL) {
		return;
	}
	free(t->conns);
	free(t->ts_store);
	free(t->rx);
	free(t->flows);
	free(t->slot_store);
	free(t->mm);
	free(t->iov);
	free(t->hdrs);
	free(t->tune_hist);
}

/* ---- command line ---- */

enum {
	OPT_MODE = 256, OPT_HOST, OPT_PORT, OPT_THREADS, OPT_CONNS, OPT_SIZE,
	OPT_DEPTH, OPT_WINDOW, OPT_RATE, OPT_CLOSE, OPT_DURATION, OPT_WARMUP,
	OPT_JSON, OPT_CSV, OPT_ALLOW_REMOTE, OPT_HELP, OPT_VERSION, OPT_PROTO,
	OPT_LOSS_TIMEOUT, OPT_EXPECT_CLOSE, OPT_EXPECT_RESET,
};

static const struct option long_opts[] = {
	{ "proto", required_argument, NULL, OPT_PROTO },
	{ "mode", required_argument, NULL, OPT_MODE },
	{ "host", required_argument, NULL, OPT_HOST },
	{ "port", required_argument, NULL, OPT_PORT },
	{ "threads", required_argument, NULL, OPT_THREADS },
	{ "conns", required_argument, NULL, OPT_CONNS },
	{ "size", required_argument, NULL, OPT_SIZE },
	{ "depth", required_argument, NULL, OPT_DEPTH },
	{ "window", required_argument, NULL, OPT_WINDOW },
	{ "rate", required_argument, NULL, OPT_RATE },
	{ "close", required_argument, NULL, OPT_CLOSE },
	{ "duration", required_argument, NULL, OPT_DURATION },
	{ "warmup", required_argument, NULL, OPT_WARMUP },
	{ "loss-timeout", required_argument, NULL, OPT_LOSS_TIMEOUT },
	{ "expect-close", no_argument, NULL, OPT_EXPECT_CLOSE },
	{ "expect-reset", no_argument, NULL, OPT_EXPECT_RESET },
	{ "json", no_argument, NULL, OPT_JSON },
	{ "csv", no_argument, NULL, OPT_CSV },
	{ "allow-remote", no_argument, NULL, OPT_ALLOW_REMOTE },
	{ "help", no_argument, NULL, OPT_HELP },
	{ "version", no_argument, NULL, OPT_VERSION },
	{ NULL, 0, NULL, 0 },
};

static void usage(FILE *f)
{
	fputs("usage: echoload [OPTIONS]\n"
	      "Load a TCP or UDP echo server and check every echoed byte.\n"
	      "\n"
	      "  --proto tcp|udp     transport (default tcp); udp: pingpong and rate only,\n"
	      "                      one connected socket per flow (--conns flows)\n"
	      "  --mode pingpong|stream|churn|rate|sink|source  workload (default pingpong;\n"
	      "                      sink: send only, for a discard server; source: read\n"
	      "                      only and verify a chargen server's pattern)\n"
	      "        pingpong: DEPTH messages in flight per connection\n"
	      "        stream:   WINDOW bytes in flight per connection, in chunks of SIZE\n"
	      "        churn:    connect, send one message, read the echo, close; repeat\n"
	      "        rate:     open loop at RATE msgs/s, latency from the scheduled time\n"
	      "  --host ADDR         IPv4 or IPv6 literal (default 127.0.0.1)\n"
	      "  --port P            server port (default 7007)\n"
	      "  --threads N         loader threads, one epoll each (default 1)\n"
	      "  --conns N           connections; churn: concurrent cycles (default 50)\n"
	      "  --size BYTES        message size, K/M suffixes (default 64;\n"
	      "                      stream: chunk size, default min(WINDOW, 16K);\n"
	      "                      udp: datagram size, 24..65507 (IPv6 65527))\n"
	      "  --depth D           pingpong: messages in flight per connection (default 1)\n"
	      "  --window BYTES      stream: bytes in flight per connection (default 64K)\n"
	      "  --rate MSGS_PER_S   rate: total message rate (required in rate mode)\n"
	      "  --close fin|rst     churn: close with FIN or with RST (default fin)\n"
	      "  --duration SECONDS  measured time, decimals allowed (default 10)\n"
	      "  --warmup SECONDS    unmeasured time before it, 0 allowed (default 1)\n"
	      "  --loss-timeout SECONDS  udp: a datagram unanswered this long is lost\n"
	      "                      and frees its window slot (default auto: 10 x the\n"
	      "                      recent p99 latency, within 50 ms..1 s)\n"
	      "  --expect-close      tcp: the server may close (clean EOF after an exact\n"
	      "                      prefix of the echo): counted, then the connection is\n"
	      "                      reopened; without it an EOF is an error\n"
	      "  --expect-reset      tcp: the server may reset (ECONNRESET, EPIPE): counted,\n"
	      "                      then the connection is reopened; without it an error\n"
	      "  --json              one JSON object on one line on stdout\n"
	      "  --csv               a CSV header line and one row on stdout\n"
	      "  --allow-remote      allow a --host outside 127.0.0.0/8 and ::1\n"
	      "  --help              show this help and exit\n"
	      "  --version           show the version and exit\n"
	      "\n"
	      "Exit status: 0 success; 1 errors, mismatches (udp: corrupted datagrams)\n"
	      "or nothing echoed; 2 usage.  UDP loss, reordering and duplicates are\n"
	      "reported, not failures.\n",
	      f);
}

static int bad_value(const char *flag, const char *value, const char *expected)
{
	fprintf(stderr, "echoload: %s: invalid value '%s' (expected %s)\n",
		flag, value, expected);
	return -EINVAL;
}

/* Parses a decimal integer in [min, max]; with @suffix, K and M multiply by
 * 1024 and 1024^2. */
static int parse_u64(const char *flag, const char *s, uint64_t min, uint64_t max,
		     bool suffix, const char *expected, uint64_t *ret_v)
{
	unsigned long long v;
	uint64_t mult = 1;
	char *end;

	if (*s < '0' || *s > '9') {
		return bad_value(flag, s, expected);
	}
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0) {
		return bad_value(flag, s, expected);
	}
	if (suffix && (*end == 'K' || *end == 'k')) {
		mult = 1024;
		end++;
	} else if (suffix && (*end == 'M' || *end == 'm')) {
		mult = 1024 * 1024;
		end++;
	}
	if (*end != '\0' || v > max / mult || v * mult < min) {
		return bad_value(flag, s, expected);
	}
	*ret_v = v * mult;
	return 0;
}

static int parse_secs(const char *flag, const char *s, double min, bool min_ok,
		      double max, const char *expected, double *ret_v)
{
	double v;
	char *end;

	if ((*s < '0' || *s > '9') && *s != '.') {
		return bad_value(flag, s, expected);
	}
	errno = 0;
	v = strtod(s, &end);
	if (errno != 0 || *end != '\0' || !isfinite(v) || v > max ||
	    v < min || (!min_ok && v == min)) {
		return bad_value(flag, s, expected);
	}
	*ret_v = v;
	return 0;
}

/* Fills cfg->addr from cfg->host and cfg->port; refuses remote hosts. */
static int resolve_host(struct config *cfg)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)&cfg->addr;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&cfg->addr;
	bool loopback;

	memset(&cfg->addr, 0, sizeof(cfg->addr));
	if (inet_pton(AF_INET, cfg->host, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)cfg->port);
		cfg->addrlen = sizeof(*sin);
		loopback = (ntohl(sin->sin_addr.s_addr) >> 24) == 127;
	} else if (inet_pton(AF_INET6, cfg->host, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)cfg->port);
		cfg->addrlen = sizeof(*sin6);
		loopback = IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr);
	} else {
		return bad_value("--host", cfg->host, "an IPv4 or IPv6 literal");
	}
	if (!loopback && !cfg->allow_remote) {
		fprintf(stderr, "echoload: --host %s: not a loopback address "
			"(pass --allow-remote to load a remote host)\n", cfg->host);
		return -EINVAL;
	}
	return 0;
}

/*
 * Parses the command line into @cfg.  Returns 0 to run, 1 when --help or
 * --version was served, -EINVAL after printing one line naming the flag.
 */
static int parse_args(int argc, char **argv, struct config *cfg)
{
	uint64_t v;
	int opt;

	*cfg = (struct config){
		.mode = MODE_PINGPONG,
		.output = OUT_HUMAN,
		.host = "127.0.0.1",
		.port = 7007,
		.threads = 1,
		.conns = 50,
		.depth = 1,
		.size = 64,
		.window = 64 * 1024,
		.duration = 10,
		.warmup = 1,
		.loss_timeout = 1,
	};
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":", long_opts, NULL)) != -1) {
		switch (opt) {
		case OPT_PROTO:
			if (strcmp(optarg, "tcp") != 0 && strcmp(optarg, "udp") != 0) {
				return bad_value("--proto", optarg, "tcp or udp");
			}
			cfg->proto = optarg[0] == 'u' ? PROTO_UDP : PROTO_TCP;
			break;
		case OPT_LOSS_TIMEOUT:
			if (parse_secs("--loss-timeout", optarg, 0, false, 3600,
				       "seconds, > 0 and <= 3600", &cfg->loss_timeout) < 0) {
				return -EINVAL;
			}
			cfg->loss_timeout_set = true;
			break;
		case OPT_MODE:
			for (v = 0; v < NMODES; v++) {
				if (strcmp(optarg, mode_names[v]) == 0) {
					break;
				}
			}
			if (v == NMODES) {
				return bad_value("--mode", optarg,
						 "pingpong, stream, churn, rate, sink or source");
			}
			cfg->mode = (enum mode)v;
			break;
		case OPT_HOST: {
			size_t len = strlen(optarg);

			if (len >= 2 && optarg[0] == '[' && optarg[len - 1] == ']' &&
			    len - 2 < sizeof(cfg->host)) {
				memcpy(cfg->host, optarg + 1, len - 2);
				cfg->host[len - 2] = '\0';
			} else if (len < sizeof(cfg->host)) {
				memcpy(cfg->host, optarg, len + 1);
			} else {
				return bad_value("--host", optarg, "an IPv4 or IPv6 literal");
			}
			break;
		}
		case OPT_PORT:
			if (parse_u64("--port", optarg, 1, 65535, false, "1..65535", &v) < 0) {
				return -EINVAL;
			}
			cfg->port = (unsigned)v;
			break;
		case OPT_THREADS:
			if (parse_u64("--threads", optarg, 1, 1024, false, "1..1024", &v) < 0) {
				return -EINVAL;
			}
			cfg->threads = (unsigned)v;
			break;
		case OPT_CONNS:
			if (parse_u64("--conns", optarg, 1, 1000000, false, "1..1000000", &v) < 0) {
				return -EINVAL;
			}
			cfg->conns = (unsigned)v;
			break;
		case OPT_SIZE:
			if (parse_u64("--size", optarg, 1, 1u << 30, true,
				      "1..1024M bytes, K/M suffixes", &cfg->size) < 0) {
				return -EINVAL;
			}
			cfg->size_set = true;
			break;
		case OPT_DEPTH:
			if (parse_u64("--depth", optarg, 1, 65536, false, "1..65536", &v) < 0) {
				return -EINVAL;
			}
			cfg->depth = (unsigned)v;
			break;
		case OPT_WINDOW:
			if (parse_u64("--window", optarg, 1, 1u << 30, true,
				      "1..1024M bytes, K/M suffixes", &cfg->window) < 0) {
				return -EINVAL;
			}
			break;
		case OPT_RATE:
			if (parse_secs("--rate", optarg, 0, false, 1e9,
				       "messages per second, > 0", &cfg->rate) < 0) {
				return -EINVAL;
			}
			break;
		case OPT_CLOSE:
			if (strcmp(optarg, "fin") != 0 && strcmp(optarg, "rst") != 0) {
				return bad_value("--close", optarg, "fin or rst");
			}
			cfg->close_rst = optarg[0] == 'r';
			break;
		case OPT_DURATION:
			if (parse_secs("--duration", optarg, 0, false, 1e6,
				       "seconds, > 0", &cfg->duration) < 0) {
				return -EINVAL;
			}
			break;
		case OPT_WARMUP:
			if (parse_secs("--warmup", optarg, 0, true, 1e6,
				       "seconds, >= 0", &cfg->warmup) < 0) {
				return -EINVAL;
			}
			break;
		case OPT_EXPECT_CLOSE:
			cfg->expect_close = true;
			break;
		case OPT_EXPECT_RESET:
			cfg->expect_reset = true;
			break;
		case OPT_JSON:
		case OPT_CSV:
			if (cfg->output != OUT_HUMAN &&
			    cfg->output != (opt == OPT_JSON ? OUT_JSON : OUT_CSV)) {
				fprintf(stderr, "echoload: %s: cannot be combined with %s\n",
					opt == OPT_JSON ? "--json" : "--csv",
					opt == OPT_JSON ? "--csv" : "--json");
				return -EINVAL;
			}
			cfg->output = opt == OPT_JSON ? OUT_JSON : OUT_CSV;
			break;
		case OPT_ALLOW_REMOTE:
			cfg->allow_remote = true;
			break;
		case OPT_HELP:
			usage(stdout);
			return 1;
		case OPT_VERSION:
			printf("echoload %s\n", RE_VERSION);
			return 1;
		case ':':
			fprintf(stderr, "echoload: %s: missing value\n", argv[optind - 1]);
			return -EINVAL;
		default:
			fprintf(stderr, "echoload: %s: unknown option (see --help)\n",
				argv[optind - 1]);
			return -EINVAL;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "echoload: %s: unexpected argument (see --help)\n", argv[optind]);
		return -EINVAL;
	}
	if (cfg->mode == MODE_RATE && cfg->rate == 0) {
		fprintf(stderr, "echoload: --rate: required in rate mode\n");
		return -EINVAL;
	}
	if (cfg->threads > cfg->conns) {
		fprintf(stderr, "echoload: --threads: %u threads but only %u --conns\n",
			cfg->threads, cfg->conns);
		return -EINVAL;
	}
	if (cfg->mode == MODE_STREAM) {
		if (!cfg->size_set) {
			cfg->size = cfg->window < STREAM_CHUNK_DEFAULT ?
				    cfg->window : STREAM_CHUNK_DEFAULT;
		} else if (cfg->size > cfg->window) {
			fprintf(stderr, "echoload: --size: chunk of %llu bytes exceeds "
				"--window %llu\n", (unsigned long long)cfg->size,
				(unsigned long long)cfg->window);
			return -EINVAL;
		}
	}
	if (cfg->proto == PROTO_UDP && (cfg->mode == MODE_STREAM || cfg->mode == MODE_CHURN ||
					cfg->mode == MODE_SINK || cfg->mode == MODE_SOURCE)) {
		fprintf(stderr, "echoload: --mode: %s is TCP only (UDP: pingpong, "
			"with a large --depth for bulk, or rate)\n", mode_names[cfg->mode]);
		return -EINVAL;
	}
	if (cfg->proto == PROTO_UDP && (cfg->expect_close || cfg->expect_reset)) {
		fprintf(stderr, "echoload: %s: only with --proto tcp (UDP has no "
			"connection to end)\n", cfg->expect_close ? "--expect-close" :
			"--expect-reset");
		return -EINVAL;
	}
	if (cfg->proto == PROTO_TCP && cfg->loss_timeout_set) {
		fprintf(stderr, "echoload: --loss-timeout: only with --proto udp\n");
		return -EINVAL;
	}
	if (cfg->proto == PROTO_UDP &&
	    ring_len(cfg) * cfg->conns * sizeof(struct slot) > TS_ENTRIES_MAX * sizeof(uint64_t)) {
		fprintf(stderr, "echoload: --conns: %u flows need over 1 GiB of "
			"sequence windows\n", cfg->conns);
		return -EINVAL;
	}
	if (cfg->proto == PROTO_TCP && ring_len(cfg) * cfg->conns > TS_ENTRIES_MAX) {
		fprintf(stderr, "echoload: %s: too many messages in flight "
			"(over 1 GiB of timestamps for %u connections)\n",
			cfg->mode == MODE_STREAM ? "--window" : "--depth", cfg->conns);
		return -EINVAL;
	}
	if (resolve_host(cfg) < 0) {
		return -EINVAL;
	}
	if (cfg->proto == PROTO_UDP) {
		uint64_t max = cfg->addr.ss_family == AF_INET6 ? UDP_MAX_V6 : UDP_MAX_V4;

		if (cfg->size < UDP_HDR_LEN || cfg->size > max) {
			fprintf(stderr, "echoload: --size: %llu bytes is not a UDP datagram "
				"echoload can send (expected %u..%llu: a %u-byte header, "
				"then payload)\n", (unsigned long long)cfg->size,
				UDP_HDR_LEN, (unsigned long long)max, UDP_HDR_LEN);
			return -EINVAL;
		}
	}
	return 0;
}

/* Soft RLIMIT_NOFILE up to the hard limit; returns the soft limit now. */
static uint64_t raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0) {
		return 1024;
	}
	if (rl.rlim_cur < rl.rlim_max) {
		rlim_t want = rl.rlim_max;

		rl.rlim_cur = want;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
			(void)getrlimit(RLIMIT_NOFILE, &rl);
		}
	}
	return rl.rlim_cur == RLIM_INFINITY ? UINT64_MAX : (uint64_t)rl.rlim_cur;
}

/* ---- report ---- */

struct result {
	uint64_t msgs;
	uint64_t bytes;
	uint64_t errors;
	uint64_t mismatches;
	uint64_t stuck;
	uint64_t max_ns;
	uint64_t sent;		/* udp, whole run */
	uint64_t received;
	uint64_t lost;
	uint64_t late;
	uint64_t reordered;
	uint64_t duplicated;
	uint64_t corrupted;
	uint64_t rx_drops;
	uint64_t closes;	/* tcp expected ends, whole run */
	uint64_t resets;
	uint64_t close_bytes_min;	/* UINT64_MAX while closes == 0 */
	uint64_t close_bytes_max;
	uint64_t reset_bytes_min;	/* UINT64_MAX while resets == 0 */
	uint64_t reset_bytes_max;
	double loss_timeout;	/* udp: the timeout in effect at the end, largest thread's */
	double pct_us[4];	/* p50, p90, p99, p99.9 */
	double cpu;
	double secs;		/* measured window as run: --duration unless stopped early */
	double ran;		/* seconds from start-up (connects included) to the end */
	bool early;		/* every loader finished before the window's end */
};

/* per second over the window as run; 0 when nothing was measured */
static double per_sec(double x, const struct result *res)
{
	return res->secs > 0 ? x / res->secs : 0;
}

#define FIELD_MAX 48

struct field {
	const char *key;
	char val[48];
	bool quoted;	/* JSON string */
	bool null;	/* not relevant to this mode: JSON null, empty CSV cell */
};

static void set_field(struct field *f, const char *key, bool quoted, bool null,
		      const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void set_field(struct field *f, const char *key, bool quoted, bool null,
		      const char *fmt, ...)
{
	va_list ap;

	f->key = key;
	f->quoted = quoted;
	f->null = null;
	va_start(ap, fmt);
	(void)vsnprintf(f->val, sizeof(f->val), fmt, ap);
	va_end(ap);
}

/* The machine-readable record: one list, so JSON and CSV keys never drift. */
static size_t make_fields(const struct config *cfg, const struct result *res,
			  struct field *f)
{
	size_t n = 0;
	double secs = res->secs;
	unsigned long long depth;
	bool udp = cfg->proto == PROTO_UDP;

	switch (cfg->mode) {
	case MODE_PINGPONG:
		depth = cfg->depth;
		break;
	case MODE_STREAM:
		depth = (cfg->window + cfg->size - 1) / cfg->size;
		break;
	default:
		depth = 1;
		break;
	}
	set_field(&f[n++], "mode", true, false, "%s", mode_names[cfg->mode]);
	set_field(&f[n++], "conns", false, false, "%u", cfg->conns);
	set_field(&f[n++], "threads", false, false, "%u", cfg->threads);
	set_field(&f[n++], "size", false, false, "%llu", (unsigned long long)cfg->size);
	set_field(&f[n++], "depth", false, false, "%llu", depth);
	set_field(&f[n++], "duration_s", false, false, "%.3f", secs);
	set_field(&f[n++], "msgs", false, false, "%llu", (unsigned long long)res->msgs);
	set_field(&f[n++], "msgs_per_s", false, false, "%.1f", per_sec((double)res->msgs, res));
	set_field(&f[n++], "mb_per_s", false, false, "%.3f", per_sec((double)res->bytes, res) / 1e6);
	set_field(&f[n++], "p50_us", false, false, "%.1f", res->pct_us[0]);
	set_field(&f[n++], "p90_us", false, false, "%.1f", res->pct_us[1]);
	set_field(&f[n++], "p99_us", false, false, "%.1f", res->pct_us[2]);
	set_field(&f[n++], "p999_us", false, false, "%.1f", res->pct_us[3]);
	set_field(&f[n++], "max_us", false, false, "%.1f", (double)res->max_ns / 1e3);
	set_field(&f[n++], "errors", false, false, "%llu", (unsigned long long)res->errors);
	set_field(&f[n++], "mismatches", false, false, "%llu",
		  (unsigned long long)res->mismatches);
	set_field(&f[n++], "loader_cpu", false, false, "%.3f", res->cpu);
	set_field(&f[n++], "bytes", false, false, "%llu", (unsigned long long)res->bytes);
	set_field(&f[n++], "window", false, cfg->mode != MODE_STREAM, "%llu",
		  (unsigned long long)cfg->window);
	set_field(&f[n++], "rate", false, cfg->mode != MODE_RATE, "%.3f", cfg->rate);
	set_field(&f[n++], "close", true, cfg->mode != MODE_CHURN, "%s",
		  cfg->close_rst ? "rst" : "fin");
	set_field(&f[n++], "warmup_s", false, false, "%.3f", cfg->warmup);
	set_field(&f[n++], "stuck", false, false, "%llu", (unsigned long long)res->stuck);
	set_field(&f[n++], "proto", true, false, "%s", udp ? "udp" : "tcp");
	set_field(&f[n++], "sent", false, !udp, "%llu", (unsigned long long)res->sent);
	set_field(&f[n++], "received", false, !udp, "%llu", (unsigned long long)res->received);
	set_field(&f[n++], "lost", false, !udp, "%llu", (unsigned long long)res->lost);
	set_field(&f[n++], "late", false, !udp, "%llu", (unsigned long long)res->late);
	set_field(&f[n++], "reordered", false, !udp, "%llu",
		  (unsigned long long)res->reordered);
	set_field(&f[n++], "duplicated", false, !udp, "%llu",
		  (unsigned long long)res->duplicated);
	set_field(&f[n++], "corrupted", false, !udp, "%llu",
		  (unsigned long long)res->corrupted);
	set_field(&f[n++], "loss_timeout_s", false, !udp, "%.3f", res->loss_timeout);
	set_field(&f[n++], "loss_timeout_auto", false, !udp, "%s",
		  cfg->loss_timeout_set ? "false" : "true");
	set_field(&f[n++], "loader_drops", false, !udp, "%llu",
		  (unsigned long long)res->rx_drops);
	set_field(&f[n++], "expected_closes", false, !cfg->expect_close, "%llu",
		  (unsigned long long)res->closes);
	set_field(&f[n++], "bytes_before_close_min", false, res->closes == 0, "%llu",
		  (unsigned long long)res->close_bytes_min);
	set_field(&f[n++], "bytes_before_close_max", false, res->closes == 0, "%llu",
		  (unsigned long long)res->close_bytes_max);
	set_field(&f[n++], "expected_resets", false, !cfg->expect_reset, "%llu",
		  (unsigned long long)res->resets);
	set_field(&f[n++], "bytes_before_reset_min", false, res->resets == 0, "%llu",
		  (unsigned long long)res->reset_bytes_min);
	set_field(&f[n++], "bytes_before_reset_max", false, res->resets == 0, "%llu",
		  (unsigned long long)res->reset_bytes_max);
	return n;
}

/* Text output: "  closes      12 expected, each after 100000 B echoed". */
static void report_ends(const char *what, uint64_t n, uint64_t min, uint64_t max)
{
	printf("  %-11s %llu expected", what, (unsigned long long)n);
	if (n > 0 && min == max) {
		printf(", each after %llu B echoed", (unsigned long long)min);
	} else if (n > 0) {
		printf(", after %llu to %llu B echoed", (unsigned long long)min,
		       (unsigned long long)max);
	}
	printf(" (whole run)\n");
}

static void report(const struct config *cfg, const struct result *res)
{
	struct field f[FIELD_MAX];
	size_t n = make_fields(cfg, res, f), i;

	if (cfg->output == OUT_JSON) {
		putchar('{');
		for (i = 0; i < n; i++) {
			printf("%s\"%s\":", i ? "," : "", f[i].key);
			if (f[i].null) {
				fputs("null", stdout);
			} else if (f[i].quoted) {
				printf("\"%s\"", f[i].val);
			} else {
				fputs(f[i].val, stdout);
			}
		}
		puts("}");
	} else if (cfg->output == OUT_CSV) {
		for (i = 0; i < n; i++) {
			printf("%s%s", i ? "," : "", f[i].key);
		}
		putchar('\n');
		for (i = 0; i < n; i++) {
			printf("%s%s", i ? "," : "", f[i].null ? "" : f[i].val);
		}
		putchar('\n');
	} else {
		printf("echoload: %s%s against %s port %u: %u %s, %u threads, size %llu B",
		       cfg->proto == PROTO_UDP ? "udp " : "", mode_names[cfg->mode], cfg->host,
		       cfg->port, cfg->conns, cfg->proto == PROTO_UDP ? "flows" : "conns",
		       cfg->threads, (unsigned long long)cfg->size);
		if (cfg->mode == MODE_PINGPONG) {
			printf(", depth %u", cfg->depth);
		} else if (cfg->mode == MODE_STREAM) {
			printf(", window %llu B", (unsigned long long)cfg->window);
		} else if (cfg->mode == MODE_RATE) {
			printf(", rate %.1f msgs/s", cfg->rate);
		} else {
			printf(", close %s", cfg->close_rst ? "rst" : "fin");
		}
		if (res->early) {
			printf("\n  duration    %.3f s (run ended early, %.3f s after start; asked "
			       "for %.3f s warm-up + %.3f s)", res->secs, res->ran, cfg->warmup,
			       cfg->duration);
		} else {
			printf("\n  duration    %.3f s (after %.3f s warm-up)", res->secs,
			       cfg->warmup);
		}
		printf("\n"
		       "  msgs        %llu (%.1f msgs/s)\n"
		       "  echoed      %llu B (%.3f MB/s)\n"
		       "  latency us  p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f\n"
		       "  errors      %llu\n"
		       "  mismatches  %llu\n"
		       "  loader CPU  %.1f%% of %u core(s)\n",
		       (unsigned long long)res->msgs, per_sec((double)res->msgs, res),
		       (unsigned long long)res->bytes, per_sec((double)res->bytes, res) / 1e6,
		       res->pct_us[0], res->pct_us[1], res->pct_us[2], res->pct_us[3],
		       (double)res->max_ns / 1e3,
		       (unsigned long long)res->errors, (unsigned long long)res->mismatches,
		       res->cpu * 100, cfg->threads);
		if (cfg->proto == PROTO_UDP) {
			printf("  datagrams   sent %llu, received %llu, lost %llu, late %llu "
			       "(loss timeout %s%.3f s; whole run)\n"
			       "  disorder    reordered %llu, duplicated %llu, corrupted %llu\n"
			       "  loader      %llu answers dropped by echoload's own sockets "
			       "(not the server's loss)\n",
			       (unsigned long long)res->sent, (unsigned long long)res->received,
			       (unsigned long long)res->lost, (unsigned long long)res->late,
			       cfg->loss_timeout_set ? "" : "auto, at the end ",
			       res->loss_timeout, (unsigned long long)res->reordered,
			       (unsigned long long)res->duplicated,
			       (unsigned long long)res->corrupted,
			       (unsigned long long)res->rx_drops);
		}
		if (cfg->expect_close) {
			report_ends("closes", res->closes, res->close_bytes_min,
				    res->close_bytes_max);
		}
		if (cfg->expect_reset) {
			report_ends("resets", res->resets, res->reset_bytes_min,
				    res->reset_bytes_max);
		}
	}
	(void)fflush(stdout);
}

/* ---- main ---- */

static double cpu_secs(void)
{
	struct rusage ru;

	if (getrusage(RUSAGE_SELF, &ru) < 0) {
		return 0;
	}
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* Sleeps until @deadline or until every loader has finished.  Returns the
 * time it woke. */
static uint64_t wait_until(struct run *run, uint64_t deadline)
{
	struct timespec ts = ns_to_timespec(deadline);
	uint64_t now;

	(void)pthread_mutex_lock(&run->lock);
	while (run->finished < run->cfg->threads && now_ns() < deadline) {
		(void)pthread_cond_timedwait(&run->cond, &run->lock, &ts);
	}
	(void)pthread_mutex_unlock(&run->lock);
	now = now_ns();
	return now < deadline ? now : deadline;
}

static int run_init(struct run *run, const struct config *cfg)
{
	pthread_condattr_t ca;
	int r;

	memset(run, 0, sizeof(*run));
	run->cfg = cfg;
	r = pthread_condattr_init(&ca);
	if (r == 0) {
		r = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	}
	if (r == 0) {
		r = pthread_cond_init(&run->cond, &ca);
	}
	if (r == 0) {
		r = pthread_mutex_init(&run->lock, NULL);
	}
	if (r == 0) {
		r = pthread_barrier_init(&run->ready, NULL, cfg->threads + 1);
	}
	if (r == 0) {
		r = pthread_barrier_init(&run->go, NULL, cfg->threads + 1);
	}
	return -r;
}

int main(int argc, char **argv)
{
	struct config cfg;
	struct run run;
	struct result res;
	struct loader *loaders;
	uint64_t *hist, nofile, live = 0, m_start, m_end, end, stopped, began = now_ns();
	double cpu0 = 0, cpu1 = 0, window_s;
	const char *first_what = NULL;
	int first_err = 0, r;
	unsigned i;

	r = parse_args(argc, argv, &cfg);
	if (r != 0) {
		return r > 0 ? 0 : 2;
	}
	(void)signal(SIGPIPE, SIG_IGN);
	nofile = raise_nofile();
	if ((uint64_t)cfg.conns + 2 * cfg.threads + 16 > nofile) {
		fprintf(stderr, "echoload: --conns: %u connections need more file "
			"descriptors than RLIMIT_NOFILE allows (%llu)\n",
			cfg.conns, (unsigned long long)nofile);
		return 2;
	}
	pattern_init();
	r = run_init(&run, &cfg);
	if (r < 0) {
		fprintf(stderr, "echoload: pthread init: %s\n", strerror(-r));
		return 1;
	}
	loaders = aligned_alloc(64, cfg.threads * sizeof(*loaders));
	hist = calloc(HIST_BUCKETS, sizeof(*hist));
	if (loaders == NULL || hist == NULL) {
		fprintf(stderr, "echoload: out of memory\n");
		return 1;
	}
	memset(loaders, 0, cfg.threads * sizeof(*loaders));
	for (i = 0; i < cfg.threads; i++) {
		uint32_t lo = (uint32_t)((uint64_t)cfg.conns * i / cfg.threads);
		uint32_t hi = (uint32_t)((uint64_t)cfg.conns * (i + 1) / cfg.threads);

		if (loader_init(&loaders[i], &run, i, lo, hi - lo) < 0) {
			fprintf(stderr, "echoload: out of memory for %u connections\n",
				cfg.conns);
			return 1;
		}
	}
	for (i = 0; i < cfg.threads; i++) {
		r = pthread_create(&loaders[i].tid, NULL, loader_main, &loaders[i]);
		if (r != 0) {
			/* Started loaders wait on the barrier; exiting ends them. */
			fprintf(stderr, "echoload: pthread_create: %s\n", strerror(r));
			return 1;
		}
	}
	(void)pthread_barrier_wait(&run.ready);
	for (i = 0; i < cfg.threads; i++) {
		live += loaders[i].live;
	}
	run.abort = live == 0;
	run.t0 = now_ns();
	(void)pthread_barrier_wait(&run.go);

	m_start = run.t0 + secs_to_ns(cfg.warmup);
	m_end = m_start + secs_to_ns(cfg.duration);
	stopped = wait_until(&run, m_start);
	end = m_start;		/* the window is empty when the run ends in the warm-up */
	if (stopped == m_start) {
		cpu0 = cpu_secs();
		end = wait_until(&run, m_end);
		stopped = end;
		cpu1 = cpu_secs();
	}
	for (i = 0; i < cfg.threads; i++) {
		(void)pthread_join(loaders[i].tid, NULL);
	}

	memset(&res, 0, sizeof(res));
	res.close_bytes_min = UINT64_MAX;
	res.reset_bytes_min = UINT64_MAX;
	window_s = (double)(end - m_start) / 1e9;
	res.secs = window_s;
	res.ran = (double)(stopped - began) / 1e9;
	res.early = stopped < m_end;
	res.cpu = window_s > 0 ? (cpu1 - cpu0) / (window_s * cfg.threads) : 0;
	for (i = 0; i < cfg.threads; i++) {
		const struct loader_stats *st = &loaders[i].st;
		unsigned b;

		res.msgs += st->msgs;
		res.bytes += st->bytes;
		res.errors += st->errors;
		res.mismatches += st->mismatches;
		res.stuck += st->stuck;
		res.sent += st->sent;
		res.received += st->received;
		res.lost += st->lost;
		res.late += st->late;
		res.reordered += st->reordered;
		res.duplicated += st->duplicated;
		res.corrupted += st->corrupted;
		res.rx_drops += st->rx_drops;
		res.closes += st->closes;
		res.resets += st->resets;
		if (st->close_bytes_min < res.close_bytes_min) {
			res.close_bytes_min = st->close_bytes_min;
		}
		if (st->close_bytes_max > res.close_bytes_max) {
			res.close_bytes_max = st->close_bytes_max;
		}
		if (st->reset_bytes_min < res.reset_bytes_min) {
			res.reset_bytes_min = st->reset_bytes_min;
		}
		if (st->reset_bytes_max > res.reset_bytes_max) {
			res.reset_bytes_max = st->reset_bytes_max;
		}
		res.mismatches += st->corrupted;	/* udp: a datagram echoed wrong */
		if ((double)loaders[i].loss_ns / 1e9 > res.loss_timeout) {
			res.loss_timeout = (double)loaders[i].loss_ns / 1e9;
		}
		if (st->max_ns > res.max_ns) {
			res.max_ns = st->max_ns;
		}
		for (b = 0; b < HIST_BUCKETS; b++) {
			hist[b] += st->hist[b];
		}
		if (first_what == NULL && st->first_what != NULL) {
			first_what = st->first_what;
			first_err = st->first_err;
		}
	}
	res.pct_us[0] = (double)hist_percentile(hist, res.msgs, 50, res.max_ns) / 1e3;
	res.pct_us[1] = (double)hist_percentile(hist, res.msgs, 90, res.max_ns) / 1e3;
	res.pct_us[2] = (double)hist_percentile(hist, res.msgs, 99, res.max_ns) / 1e3;
	res.pct_us[3] = (double)hist_percentile(hist, res.msgs, 99.9, res.max_ns) / 1e3;
	report(&cfg, &res);

	if (res.cpu >= BOTTLENECK_CPU) {
		fprintf(stderr, "echoload: warning: loader is the bottleneck "
			"(%.0f%% of its cores busy)\n", res.cpu * 100);
	}
	if (res.errors > 0) {
		fprintf(stderr, "echoload: %llu errors against %s port %u (first: %s%s%s)\n",
			(unsigned long long)res.errors, cfg.host, cfg.port, first_what,
			first_err ? ": " : "", first_err ? strerror(-first_err) : "");
	}
	if (res.mismatches > 0) {
		fprintf(stderr, "echoload: %llu %s echoed with wrong bytes\n",
			(unsigned long long)res.mismatches,
			cfg.proto == PROTO_UDP ? "datagrams" : "messages");
	}
	if (res.msgs == 0) {
		fprintf(stderr, "echoload: nothing was echoed in the measured window\n");
	}
	for (i = 0; i < cfg.threads; i++) {
		loader_finish(&loaders[i]);
	}
	free(loaders);
	free(hist);
	return res.errors > 0 || res.mismatches > 0 || res.msgs == 0 ? 1 : 0;
}

/* udp: one worker's UDP echo socket and everything it needs on the data path: the
 * SO_REUSEPORT socket, the recvmmsg/sendmmsg batch arrays, the control-message
 * buffers, the bounded queue of replies waiting for EPOLLOUT and their datagram
 * buffers. Owned by one worker thread, which alone calls these functions (the
 * counters go to that worker's stats block). Nothing here logs; errors are -errno.
 */
#ifndef REUSEECHO_SRC_UDP_H
#define REUSEECHO_SRC_UDP_H

#include <stdbool.h>
#include <stdint.h>

#include "chargen.h"
#include "net.h"
#include "stats.h"

/* Datagrams per recvmmsg/sendmmsg call. Measured with 8, 16, 32 and 64 (50 flows
 * of 64 bytes at depth 8 into one worker): system calls per datagram fell with the
 * batch (about 0.27, 0.13, 0.10, 0.04) while the CPU per datagram stayed within the
 * noise, and 64 had the worst tail latency; 32 keeps well under the 0.25 calls per
 * datagram that batching is for. */
#define RE_UDP_BATCH 32u
/* Datagrams a worker holds: one batch being echoed plus replies that found the send
 * buffer full and wait for EPOLLOUT. Beyond that, input is read and dropped
 * (counted) until output moves again: memory never grows with load. */
#define RE_UDP_SLOTS (2u * RE_UDP_BATCH)
/* Every datagram buffer holds the largest UDP payload (65,527 bytes over IPv6,
 * 65,507 over IPv4) and one byte more, so a legal datagram is never truncated. The
 * buffers are one anonymous mapping, resident only where touched: --udp added
 * 288 KiB to an idle one-worker server's RSS, 2,000 ping-pongs of 64 bytes 4 KiB
 * more, then 2,000 of 65,507 bytes 60 KiB more (one slot). */
#define RE_UDP_SLOT_SIZE 65536u

struct re_udp;

/* Open a non-blocking, close-on-exec SO_REUSEPORT (not SO_REUSEADDR: see udp.c) UDP
 * socket bound to a (dual-stack for "::", like the TCP listener), asking for the destination address of every
 * datagram (IP_PKTINFO, IPV6_RECVPKTINFO), with a receive buffer of rcvbuf bytes
 * (re_udp_set_rcvbuf; 0 keeps the kernel's default), and allocate its batch arrays. The
 * datagram buffers are one anonymous mapping that costs memory only where touched.
 * Counters go to st. On success *ret is the new object; on failure *ret_call names
 * the call that failed ("socket", "setsockopt", "bind", "mmap") and -errno is
 * returned. Context: the worker thread. */
int re_udp_open(struct re_udp **ret, const struct re_addr *a, uint32_t rcvbuf,
		struct re_stats_block *st,
		const char **ret_call) __attribute__((warn_unused_result));

/* Ask for a receive buffer of bytes (0: leave the kernel's default): SO_RCVBUFFORCE
 * where allowed (CAP_NET_ADMIN), else SO_RCVBUF, which net.core.rmem_max caps.
 * Returns the size the kernel reports back (twice the granted request: it counts its
 * bookkeeping) or -errno. */
int re_udp_set_rcvbuf(int fd, uint32_t bytes) __attribute__((warn_unused_result));
/* The same on a throwaway socket: what every worker's socket will get. */
int re_udp_probe_rcvbuf(uint32_t bytes) __attribute__((warn_unused_result));

/* Serve s instead of echo from now on: discard counts datagrams and never answers;
 * chargen answers each with 0..512 bytes of the RFC 864 pattern. The loop guard, the
 * rate limit and the counters apply as for echo. Context: the worker thread. */
void re_udp_set_service(struct re_udp *u, enum re_service s);

/* The socket, for epoll registration and handover (-1 when u is NULL). */
int re_udp_fd(const struct re_udp *u);

/* Record the readiness of an epoll event (EPOLLIN, EPOLLOUT, EPOLLERR...). The socket
 * is registered EPOLLIN|EPOLLOUT|EPOLLET once and never modified: readiness lives in
 * u until a call returns EAGAIN. Context: the worker thread. */
void re_udp_events(struct re_udp *u, uint32_t events);

/* Echo within a budget of `budget` datagrams: send queued replies while the socket
 * takes them, read batches while it is readable, echo each datagram whole to its
 * source from its destination address. now_ms is the worker's clock (wrap-safe) and
 * rate the --udp-rate in force (datagrams per second per source address, 0 = no
 * limit). Budget 0 only sends what is queued and never reads (a drain's last phase).
 * Returns 1 when the budget ran out with input left (no new edge will come for it:
 * call again next turn), 0 when nothing is left
 * to do until an edge, or -errno when recvmmsg failed in an unexpected way (readiness
 * is cleared; the worker logs it, rate-limited). Context: the worker thread. */
int re_udp_service(struct re_udp *u, unsigned budget, uint32_t now_ms, uint32_t rate)
	__attribute__((warn_unused_result));

/* Read the socket's receive queue to EAGAIN and echo everything, bounded by `limit`
 * datagrams (the receive buffer holds a finite number; the bound guards against a
 * sender that keeps it full). Replies the socket buffer cannot take yet stay queued:
 * returns how many still wait for EPOLLOUT (0: all echoed), or -errno. Used before the
 * socket is closed (drain, retire). now_ms and rate as for re_udp_service.
 * Context: the worker thread. */
int re_udp_drain_input(struct re_udp *u, unsigned limit, uint32_t now_ms, uint32_t rate)
	__attribute__((warn_unused_result));

/* Replies queued for EPOLLOUT. */
unsigned re_udp_queued(const struct re_udp *u);

/* Sample the kernel's receive-queue drop count of the socket (SO_MEMINFO) into the
 * stats block. Context: the worker thread, on its 250 ms timer. */
void re_udp_sample(struct re_udp *u);

/* Sample once more, close the socket, free everything. Queued replies are dropped
 * (counted). Accepts NULL. Context: the worker thread. */
void re_udp_close(struct re_udp *u);

#endif

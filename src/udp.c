/* udp: a worker's UDP echo path. recvmmsg a batch into slots of a fixed ring, turn
 * each datagram's header into its reply in place (the source becomes the
 * destination, the destination address from IP_PKTINFO/IPV6_PKTINFO becomes the
 * source), sendmmsg the ring's queued replies. No allocation after open, and no
 * system call per datagram beyond its share of one recvmmsg and one sendmmsg.
 * Called only by the worker thread that opened it.
 */
#include "udp.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/socket.h>
#include <unistd.h>

#include <linux/sock_diag.h>

#include "chargen.h"

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103		/* linux/udp.h, Linux 4.18 */
#endif
#ifndef UDP_GRO
#define UDP_GRO 104		/* linux/udp.h, Linux 5.0 */
#endif

/* Room for the cmsgs a datagram can carry: IP_PKTINFO or IPV6_PKTINFO (the larger)
 * and UDP_GRO, with slack for any other the kernel adds. The reply's cmsgs (the
 * source address and, for a bundle, UDP_SEGMENT) are written into the same buffer. */
#define RE_UDP_CTL_SIZE 128u

/* --udp-rate: a token bucket per source address in a fixed table (per worker: the
 * kernel spreads one address's flows over the workers by port). An address probes
 * RATE_PROBE entries from its hash; with none free it takes the one idle longest, so
 * a flood of new addresses costs no memory and only resets buckets it evicts. */
#define RATE_SLOTS 4096u		/* power of two; 4096 x 32 bytes = 128 KiB, lazily
					 * backed by calloc's zero pages */
#define RATE_PROBE 8u
#define MILLI 1000u			/* tokens are counted in thousandths of a datagram */

struct rate_entry {
	uint8_t addr[16];		/* IPv6, or v4-mapped IPv4 */
	uint64_t tokens;		/* thousandths of a datagram */
	uint32_t last_ms;		/* worker clock of the last refill */
	uint32_t used;			/* 0: a free entry */
};

struct udp_ctl {
	_Alignas(size_t) char buf[RE_UDP_CTL_SIZE];	/* cmsg_len is a size_t */
};

struct re_udp {
	int fd;
	struct re_stats_block *st;
	bool readable;
	bool writable;
	/* The ring: entries [head, head + count) (mod RE_UDP_SLOTS) are replies waiting
	 * to be sent, in arrival order. Each entry owns its iovec, name and control
	 * buffer through its own pointers, so entries can be swapped freely. */
	unsigned head;
	unsigned count;
	uint64_t kernel_drops;	/* SK_MEMINFO_DROPS at the last sample */
	uint32_t recv_size;	/* bytes a datagram may have: RE_UDP_SLOT_SIZE (test builds:
				 * REUSEECHO_DEBUG_UDP_RECV_SIZE, to make MSG_TRUNC happen) */
	uint32_t now_ms;	/* the worker's clock for this service pass */
	uint32_t rate;		/* --udp-rate for this pass, 0 = off */
	struct rate_entry *rate_tab;	/* RATE_SLOTS entries */
	enum re_service service;	/* --service: echo, or discard/chargen (RFC 863/864) */
	uint32_t cg_line;	/* chargen: the pattern line the next reply starts with */
	uint32_t cg_rand;	/* chargen: xorshift32 state for reply lengths */
	char *bufs;		/* RE_UDP_SLOTS * RE_UDP_SLOT_SIZE, mmap'd */
	struct mmsghdr msg[RE_UDP_SLOTS];
	struct iovec iov[RE_UDP_SLOTS];
	struct sockaddr_in6 name[RE_UDP_SLOTS];	/* large enough for either family */
	struct udp_ctl ctl[RE_UDP_SLOTS];
	/* Per datagram buffer (by its index in bufs, which stays with the buffer when
	 * entries are swapped): the segment size of a UDP_GRO bundle it holds, 0 for
	 * one datagram. */
	uint16_t seg_size[RE_UDP_SLOTS];
	/* Reading while the ring is full: datagrams are taken from the socket and
	 * dropped, so these headers ask for nothing but their size (and a bundle's
	 * segment size, to count its datagrams). */
	struct mmsghdr discard[RE_UDP_BATCH];
	struct udp_ctl discard_ctl[RE_UDP_BATCH];	/* only to learn a bundle's size */
};

/* Test builds: REUSEECHO_DEBUG_UDP_RECV_SIZE=N (1-65536) receives at most N bytes of
 * a datagram, so that a larger one is truncated (MSG_TRUNC), which the full-size
 * buffers make impossible for a legal datagram otherwise. */
static uint32_t debug_recv_size(void)
{
#ifdef RE_DEBUG_HOOKS
	const char *v = getenv("REUSEECHO_DEBUG_UDP_RECV_SIZE");
	long n = v != NULL ? strtol(v, NULL, 10) : 0;

	if (n > 0 && n <= (long)RE_UDP_SLOT_SIZE) {
		return (uint32_t)n;
	}
#endif
	return RE_UDP_SLOT_SIZE;
}

static int set_int(int fd, int level, int opt, int v)
{
	return setsockopt(fd, level, opt, &v, sizeof(v));
}

static int open_socket(const struct re_addr *a, const char **ret_call)
{
	int fd = socket(a->ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int r;

	if (fd < 0) {
		*ret_call = "socket";
		return -errno;
	}
	/* SO_REUSEPORT only, no SO_REUSEADDR: on UDP, two sockets that both set
	 * SO_REUSEADDR may share an address whatever their owners, so any local user
	 * could bind beside us and take datagrams; SO_REUSEPORT groups check the uid.
	 * On an IPv6 socket IPV6_RECVPKTINFO covers the v4-mapped datagrams of a
	 * dual-stack "::" too: the kernel reports their destination as a v4-mapped
	 * IPV6_PKTINFO (ip6_datagram_recv_common_ctl). */
	if (set_int(fd, SOL_SOCKET, SO_REUSEPORT, 1) < 0 ||
	    (a->ss.ss_family == AF_INET && set_int(fd, IPPROTO_IP, IP_PKTINFO, 1) < 0) ||
	    (a->ss.ss_family == AF_INET6 &&
	     (set_int(fd, IPPROTO_IPV6, IPV6_V6ONLY, 0) < 0 ||
	      set_int(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, 1) < 0))) {
		*ret_call = "setsockopt";
		goto fail;
	}
	if (bind(fd, (const struct sockaddr *)&a->ss, a->len) < 0) {
		*ret_call = "bind";
		goto fail;
	}
	return fd;
fail:
	r = -errno;	/* before close() can clobber errno */
	(void)close(fd);
	return r;
}

int re_udp_set_rcvbuf(int fd, uint32_t bytes)
{
	int v = 0;
	socklen_t len = sizeof(v);

	/* SO_RCVBUFFORCE (CAP_NET_ADMIN) may pass net.core.rmem_max; SO_RCVBUF is
	 * capped by it. The kernel doubles either for its bookkeeping. */
	if (bytes != 0 && set_int(fd, SOL_SOCKET, SO_RCVBUFFORCE, (int)bytes) < 0 &&
	    set_int(fd, SOL_SOCKET, SO_RCVBUF, (int)bytes) < 0) {
		return -errno;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, &len) < 0) {
		return -errno;
	}
	return v;
}

int re_udp_probe_rcvbuf(uint32_t bytes)
{
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	int r;

	if (fd < 0) {
		return -errno;
	}
	r = re_udp_set_rcvbuf(fd, bytes);
	(void)close(fd);
	return r;
}

int re_udp_open(struct re_udp **ret, const struct re_addr *a, uint32_t rcvbuf,
		struct re_stats_block *st, const char **ret_call)
{
	struct re_udp *u = calloc(1, sizeof(*u));
	int r;

	if (u == NULL) {
		*ret_call = "malloc";
		return -ENOMEM;
	}
	u->fd = -1;
	u->st = st;
	u->recv_size = debug_recv_size();
	u->rate_tab = calloc(RATE_SLOTS, sizeof(*u->rate_tab));
	if (u->rate_tab == NULL) {
		*ret_call = "malloc";
		re_udp_close(u);
		return -ENOMEM;
	}
	/* One mapping for every datagram buffer: a 64-byte datagram touches one page of
	 * its slot, so resident memory follows the datagram sizes actually seen. */
	u->bufs = mmap(NULL, (size_t)RE_UDP_SLOTS * RE_UDP_SLOT_SIZE, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (u->bufs == MAP_FAILED) {
		r = -errno;
		u->bufs = NULL;
		*ret_call = "mmap";
		re_udp_close(u);
		return r;
	}
	for (unsigned i = 0; i < RE_UDP_SLOTS; i++) {
		struct msghdr *h = &u->msg[i].msg_hdr;

		u->iov[i].iov_base = u->bufs + (size_t)i * RE_UDP_SLOT_SIZE;
		h->msg_iov = &u->iov[i];
		h->msg_iovlen = 1;
		h->msg_name = &u->name[i];
		h->msg_control = u->ctl[i].buf;
	}
	r = open_socket(a, ret_call);
	if (r < 0) {
		re_udp_close(u);
		return r;
	}
	u->fd = r;
	r = re_udp_set_rcvbuf(u->fd, rcvbuf);
	if (r < 0) {
		*ret_call = "setsockopt";
		re_udp_close(u);
		return r;
	}
	/* UDP_GRO: a bundle of same-size datagrams from one source (a sender using
	 * UDP_SEGMENT, or a NIC's GRO) arrives as one message and goes back as one
	 * UDP_SEGMENT send with the same boundaries: about a quarter of the CPU per
	 * datagram for such flows, and nothing changes for others (a kernel without
	 * it simply delivers datagrams one by one). */
	(void)set_int(u->fd, IPPROTO_UDP, UDP_GRO, 1);
	/* Nothing is known until the first edge; EPOLL_CTL_ADD reports the state. */
	u->writable = true;
	*ret = u;
	return 0;
}

void re_udp_set_service(struct re_udp *u, enum re_service s)
{
	u->service = s;
	/* Any nonzero seed: reply lengths need no secrecy, only spread. */
	u->cg_rand = (uint32_t)u->fd * 2654435761u | 1u;
}

int re_udp_fd(const struct re_udp *u)
{
	return u != NULL ? u->fd : -1;
}

unsigned re_udp_queued(const struct re_udp *u)
{
	return u != NULL ? u->count : 0;
}

void re_udp_events(struct re_udp *u, uint32_t events)
{
	/* EPOLLERR on an unconnected UDP socket only reports a pending error, which the
	 * next recvmmsg returns: treat it as readable. */
	if (events & (EPOLLIN | EPOLLERR)) {
		u->readable = true;
	}
	if (events & (EPOLLOUT | EPOLLERR)) {
		u->writable = true;
	}
}

/* Raw system calls, like re_net_recv: glibc's wrappers are cancellation points and
 * no thread of ours is ever cancelled. */
static int sys_recvmmsg(int fd, struct mmsghdr *v, unsigned n, int flags)
{
	return (int)syscall(SYS_recvmmsg, fd, v, n, flags, NULL);
}

static int sys_sendmmsg(int fd, struct mmsghdr *v, unsigned n)
{
	return (int)syscall(SYS_sendmmsg, fd, v, n, 0);
}

/* Source ports of the classic small services: an echo answering echo, chargen or
 * daytime would bounce datagrams between the two forever (BSD inetd refuses them
 * too); port 0 cannot be answered. */
static bool loop_port(const struct sockaddr_in6 *from)
{
	/* sin_port and sin6_port share their offset. */
	switch (ntohs(from->sin6_port)) {
	case 0:
	case 7:		/* echo */
	case 9:		/* discard */
	case 13:	/* daytime */
	case 19:	/* chargen */
	case 37:	/* time */
		return true;
	default:
		return false;
	}
}

/* The source address as 16 bytes: IPv6 as is, IPv4 v4-mapped, so one IPv4 client
 * is one key whether it reached an AF_INET or a dual-stack socket. */
static void source_key(const struct sockaddr_in6 *from, uint8_t key[16])
{
	if (from->sin6_family == AF_INET6) {
		memcpy(key, &from->sin6_addr, 16);
	} else {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)(const void *)from;

		memset(key, 0, 10);
		key[10] = 0xff;
		key[11] = 0xff;
		memcpy(key + 12, &sin->sin_addr, 4);
	}
}

static uint32_t key_hash(const uint8_t key[16])
{
	uint64_t a, b;

	memcpy(&a, key, 8);
	memcpy(&b, key + 8, 8);
	a ^= b * 0x9e3779b97f4a7c15ull;
	a ^= a >> 29;
	a *= 0xbf58476d1ce4e5b9ull;
	return (uint32_t)(a >> 32);
}

/* How many of `segs` datagrams from this source may be answered now (their tokens
 * are taken). A bucket holds one second's worth; it refills at `rate` per second. */
static unsigned rate_allow(struct re_udp *u, const struct sockaddr_in6 *from, unsigned segs)
{
	uint64_t cap = (uint64_t)u->rate * MILLI;
	struct rate_entry *e = NULL, *oldest = NULL;
	uint8_t key[16];
	uint64_t ok;
	uint32_t h;

	source_key(from, key);
	h = key_hash(key);
	for (unsigned i = 0; i < RATE_PROBE; i++) {
		struct rate_entry *x = &u->rate_tab[(h + i) & (RATE_SLOTS - 1)];

		if (x->used && memcmp(x->addr, key, 16) == 0) {
			e = x;
			break;
		}
		if (oldest == NULL || !x->used ||
		    (oldest->used && (int32_t)(x->last_ms - oldest->last_ms) < 0)) {
			oldest = x;
		}
	}
	if (e == NULL) {
		e = oldest;
		memcpy(e->addr, key, 16);
		e->used = 1;
		e->tokens = cap;
		e->last_ms = u->now_ms;
	} else {
		uint32_t dt = u->now_ms - e->last_ms;	/* wraps safely */

		/* Refill: rate tokens per second = rate thousandths per millisecond. */
		if (dt > 1000) {
			dt = 1000;	/* a full bucket at most, and no overflow */
		}
		e->tokens += (uint64_t)dt * u->rate;
		if (e->tokens > cap) {
			e->tokens = cap;
		}
		e->last_ms = u->now_ms;
	}
	/* A UDP_GRO bundle costs its datagrams. One larger than the tokens left has
	 * its first ones answered: refused whole, a bundle larger than the bucket
	 * would never be answered, at any rate its sender keeps. */
	ok = e->tokens / MILLI;
	if (ok > segs) {
		ok = segs;
	}
	e->tokens -= ok * MILLI;
	return (unsigned)ok;
}

struct rx_ctl {
	int have;		/* 4: p4, 6: p6, 0: no destination address */
	struct in_pktinfo p4;
	struct in6_pktinfo p6;
	uint16_t gso;		/* UDP_GRO: the bundle's segment size, 0 = one datagram */
};

/* True when the datagram was sent to a broadcast or multicast address: it is never
 * answered. One spoofed datagram to a subnet's broadcast address, 224.0.0.1 or
 * ff02::1 would otherwise draw a reply from every echo server on the link (the
 * "fraggle" amplification), and the reply could not leave from the address the
 * datagram was sent to anyway. IPv4: ipi_addr is the header's destination and
 * ipi_spec_dst the local address a reply would use; the kernel makes them equal
 * exactly for a local unicast destination (fib_compute_spec_dst), so they differ
 * for a subnet's broadcast address, which no address test can recognise. A
 * v4-mapped IPV6_PKTINFO carries only the header's destination: a subnet broadcast
 * there fails at sendmmsg (no local address is that source) and counts as
 * send_error. */
static bool not_unicast(const struct rx_ctl *rx)
{
	if (rx->have == 4) {
		uint32_t dst = ntohl(rx->p4.ipi_addr.s_addr);

		return IN_MULTICAST(dst) || dst == INADDR_BROADCAST ||
		       rx->p4.ipi_addr.s_addr != rx->p4.ipi_spec_dst.s_addr;
	}
	if (rx->have == 6) {
		const struct in6_addr *a = &rx->p6.ipi6_addr;

		if (IN6_IS_ADDR_V4MAPPED(a)) {
			uint32_t dst;

			memcpy(&dst, &a->s6_addr[12], sizeof(dst));
			dst = ntohl(dst);
			return IN_MULTICAST(dst) || dst == INADDR_BROADCAST;
		}
		return IN6_IS_ADDR_MULTICAST(a);
	}
	return false;
}

/* The received control messages of h that matter for the reply. */
static void parse_ctl(struct msghdr *h, struct rx_ctl *rx)
{
	rx->have = 0;
	rx->gso = 0;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(h); c != NULL; c = CMSG_NXTHDR(h, c)) {
		if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO &&
		    c->cmsg_len >= CMSG_LEN(sizeof(rx->p4))) {
			memcpy(&rx->p4, CMSG_DATA(c), sizeof(rx->p4));
			rx->have = 4;
		} else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO &&
			   c->cmsg_len >= CMSG_LEN(sizeof(rx->p6))) {
			memcpy(&rx->p6, CMSG_DATA(c), sizeof(rx->p6));
			rx->have = 6;
		} else if (c->cmsg_level == IPPROTO_UDP && c->cmsg_type == UDP_GRO &&
			   c->cmsg_len >= CMSG_LEN(sizeof(int))) {
			int g;

			memcpy(&g, CMSG_DATA(c), sizeof(g));
			rx->gso = g > 0 && g <= 65535 ? (uint16_t)g : 0;
		}
	}
}

/* Datagrams in a received message of len bytes: a UDP_GRO bundle holds segments of
 * gso bytes, the last one possibly shorter. */
static unsigned segments(unsigned len, uint16_t gso)
{
	return gso != 0 && len > gso ? (len + gso - 1u) / gso : 1u;
}

/* Write the reply's control messages into h (from rx, received with it): one
 * IP_PKTINFO or IPV6_PKTINFO that makes the reply leave from the address the
 * datagram was sent to, and UDP_SEGMENT for a bundle (gso != 0). With a wildcard bind the kernel would otherwise pick the source by route, and
 * a client that sent to another local address (or a connected client) drops it.
 * IPv4: ipi_spec_dst is the datagram's destination for local unicast. A v4-mapped
 * datagram on a dual-stack socket arrives with a v4-mapped IPV6_PKTINFO, and
 * udpv6_sendmsg hands a v4-mapped destination to udp_sendmsg, whose ip_cmsg_send
 * takes that IPV6_PKTINFO as the IPv4 source. The interface index stays 0 (routing
 * chooses), except for an IPv6 link-local destination, which needs its interface. */
static void write_reply_ctl(struct msghdr *h, const struct rx_ctl *rx, uint16_t gso)
{
	struct cmsghdr *c;
	size_t used = 0;

	h->msg_flags = 0;
	h->msg_controllen = RE_UDP_CTL_SIZE;
	c = CMSG_FIRSTHDR(h);
	if (rx->have == 4) {
		struct in_pktinfo r = { .ipi_ifindex = 0, .ipi_spec_dst = rx->p4.ipi_spec_dst };

		c->cmsg_level = IPPROTO_IP;
		c->cmsg_type = IP_PKTINFO;
		c->cmsg_len = CMSG_LEN(sizeof(r));
		memcpy(CMSG_DATA(c), &r, sizeof(r));
		used += CMSG_SPACE(sizeof(r));
	} else if (rx->have == 6) {
		struct in6_pktinfo r = { .ipi6_addr = rx->p6.ipi6_addr, .ipi6_ifindex = 0 };

		if (IN6_IS_ADDR_LINKLOCAL(&rx->p6.ipi6_addr)) {
			r.ipi6_ifindex = rx->p6.ipi6_ifindex;
		}
		c->cmsg_level = IPPROTO_IPV6;
		c->cmsg_type = IPV6_PKTINFO;
		c->cmsg_len = CMSG_LEN(sizeof(r));
		memcpy(CMSG_DATA(c), &r, sizeof(r));
		used += CMSG_SPACE(sizeof(r));
	}
	if (gso != 0) {
		/* Sent back as the same bundle: the kernel (or the NIC) cuts it into
		 * datagrams of gso bytes again, so every boundary is kept. */
		c = (struct cmsghdr *)(void *)((char *)h->msg_control + used);
		c->cmsg_level = IPPROTO_UDP;
		c->cmsg_type = UDP_SEGMENT;
		c->cmsg_len = CMSG_LEN(sizeof(gso));
		memcpy(CMSG_DATA(c), &gso, sizeof(gso));
		used += CMSG_SPACE(sizeof(gso));
	}
	h->msg_controllen = used;
}

/* The datagram buffer an entry points at (the index stays with the buffer). */
static unsigned buf_index(const struct re_udp *u, const struct mmsghdr *m)
{
	return (unsigned)(((const char *)m->msg_hdr.msg_iov->iov_base - u->bufs) / RE_UDP_SLOT_SIZE);
}

/* Datagrams an entry's reply of len bytes carries. */
static unsigned entry_segments(const struct re_udp *u, const struct mmsghdr *m, unsigned len)
{
	return segments(len, u->seg_size[buf_index(u, m)]);
}

static void advance(struct re_udp *u, unsigned n)
{
	u->head = (u->head + n) % RE_UDP_SLOTS;
	u->count -= n;
	if (u->count == 0) {
		u->head = 0;	/* the next batch gets the whole ring, unwrapped */
	}
}

/* Send queued replies while the socket takes them. sendmmsg stops at the first
 * datagram that fails and reports it on the next call (when it is first): that one
 * is dropped and counted, the rest go on. EAGAIN: the send buffer is full; the
 * kernel raises EPOLLOUT when it drains. */
static void flush(struct re_udp *u)
{
	while (u->count > 0 && u->writable) {
		unsigned n = RE_UDP_SLOTS - u->head;
		uint64_t bytes = 0, dgrams = 0;
		const struct mmsghdr *m;
		int r;

		if (n > u->count) {
			n = u->count;
		}
		r = sys_sendmmsg(u->fd, &u->msg[u->head], n);
		RE_STAT_ADD(u->st, udp_send_calls, 1);
		if (r < 0) {
			if (errno == EINTR) {
				continue;
			}
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				u->writable = false;
				return;
			}
			/* EPERM (a firewall), ENETUNREACH, EMSGSIZE, EINVAL...: this
			 * datagram (or bundle) only. */
			m = &u->msg[u->head];
			RE_STAT_ADD(u->st, udp_dropped_send_error,
				    entry_segments(u, m, (unsigned)m->msg_hdr.msg_iov->iov_len));
			advance(u, 1);
			continue;
		}
		for (int i = 0; i < r; i++) {
			m = &u->msg[u->head + (unsigned)i];
			bytes += m->msg_len;
			dgrams += entry_segments(u, m, m->msg_len);
		}
		RE_STAT_ADD(u->st, udp_datagrams_sent, dgrams);
		RE_STAT_ADD(u->st, udp_bytes_sent, bytes);
		advance(u, (unsigned)r);
	}
}

static void swap_entries(struct re_udp *u, unsigned a, unsigned b)
{
	struct mmsghdr t = u->msg[a];

	u->msg[a] = u->msg[b];
	u->msg[b] = t;
}

/* Largest UDP payload over IPv4 (the smaller of the two families). */
#define UDP_MAX_PAYLOAD 65507u

/* RFC 864 over UDP: the reply to a datagram is 0..512 bytes of the pattern, a random
 * length, starting with the next line of this socket's rotation. A UDP_GRO bundle of
 * segs datagrams is answered with a bundle of segs replies of one random length
 * (1..512: a bundle cannot hold empty datagrams), so each datagram still gets one
 * answer. Writes the reply into the entry's buffer; returns its length and sets
 * *gso (0 for one datagram). */
static unsigned chargen_reply(struct re_udp *u, struct msghdr *h, unsigned segs, uint16_t *gso)
{
	uint32_t x = u->cg_rand;
	unsigned one, len;

	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	u->cg_rand = x;
	if (segs > 1) {
		one = 1u + x % RE_CHARGEN_UDP_MAX;
		if (one * segs > UDP_MAX_PAYLOAD) {
			one = UDP_MAX_PAYLOAD / segs;
		}
		*gso = (uint16_t)one;
	} else {
		one = x % (RE_CHARGEN_UDP_MAX + 1u);
		*gso = 0;
	}
	len = one * segs;
	memcpy(h->msg_iov->iov_base,
	       re_chargen_table() + (size_t)u->cg_line * (RE_CHARGEN_LINE + 2u), len);
	u->cg_line = (u->cg_line + 1u) % RE_CHARGEN_CHARS;
	return len;
}

/* Receive up to `want` messages into the free slots after the queue, keep the ones
 * to answer (as replies, in order) and drop the rest. Returns the number received,
 * or -1 with errno; fewer than `want` means the receive queue is empty. A message
 * may be a UDP_GRO bundle: *ret_dgrams is the datagrams they held. */
static int recv_batch(struct re_udp *u, unsigned want, unsigned *ret_dgrams)
{
	unsigned tail = (u->head + u->count) % RE_UDP_SLOTS;
	unsigned keep = 0, dgrams = 0;
	uint64_t bytes = 0;
	int n;

	for (unsigned i = tail; i < tail + want; i++) {
		struct msghdr *h = &u->msg[i].msg_hdr;

		h->msg_iov->iov_len = u->recv_size;
		h->msg_namelen = sizeof(u->name[0]);
		h->msg_controllen = RE_UDP_CTL_SIZE;
		h->msg_flags = 0;
	}
	/* MSG_TRUNC: msg_len is the datagram's real size, also when it did not fit. */
	n = sys_recvmmsg(u->fd, &u->msg[tail], want, MSG_TRUNC);
	RE_STAT_ADD(u->st, udp_recv_calls, 1);
	if (n <= 0) {
		return n;
	}
	for (unsigned k = tail; k < tail + (unsigned)n; k++) {
		struct msghdr *h = &u->msg[k].msg_hdr;
		unsigned len = u->msg[k].msg_len, segs;
		uint16_t gso;
		struct rx_ctl rx;

		parse_ctl(h, &rx);
		segs = segments(len, rx.gso);
		bytes += len;
		dgrams += segs;
		if (segs > 1) {
			RE_STAT_ADD(u->st, udp_gro_datagrams, segs);
		}
		if (h->msg_flags & MSG_TRUNC) {
			RE_STAT_ADD(u->st, udp_dropped_truncated, segs);
			continue;
		}
		if (loop_port(h->msg_name)) {
			RE_STAT_ADD(u->st, udp_dropped_loop_guard, segs);
			continue;
		}
		if (not_unicast(&rx)) {
			RE_STAT_ADD(u->st, udp_dropped_not_unicast, segs);
			continue;
		}
		if (u->service == RE_SERVICE_DISCARD) {
			continue;	/* counted as received, never answered */
		}
		if (u->rate != 0) {
			unsigned ok = rate_allow(u, h->msg_name, segs);

			if (ok < segs) {
				RE_STAT_ADD(u->st, udp_dropped_rate_limit, segs - ok);
				if (ok == 0) {
					continue;
				}
				/* The bundle's first ok datagrams (segs > 1: rx.gso != 0). */
				len = ok * rx.gso;
				segs = ok;
			}
		}
		if (k != tail + keep) {
			swap_entries(u, k, tail + keep);
			h = &u->msg[tail + keep].msg_hdr;
		}
		gso = segs > 1 ? rx.gso : 0;
		if (u->service == RE_SERVICE_CHARGEN) {
			len = chargen_reply(u, h, segs, &gso);
		}
		h->msg_iov->iov_len = len;
		u->seg_size[buf_index(u, &u->msg[tail + keep])] = gso;
		write_reply_ctl(h, &rx, gso);
		keep++;
	}
	*ret_dgrams = dgrams;
	RE_STAT_ADD(u->st, udp_datagrams_received, dgrams);
	RE_STAT_ADD(u->st, udp_bytes_received, bytes);
	u->count += keep;
	return n;
}

/* The ring is full and the socket takes no replies: read and drop (counted), so the
 * loss shows where it happens and the receive queue holds fresh datagrams for when
 * output moves again. MSG_TRUNC makes msg_len the datagram's real size. */
static int discard_batch(struct re_udp *u, unsigned want, unsigned *ret_dgrams)
{
	uint64_t bytes = 0;
	unsigned dgrams = 0;
	int n;

	for (unsigned i = 0; i < want; i++) {
		memset(&u->discard[i], 0, sizeof(u->discard[i]));
		u->discard[i].msg_hdr.msg_control = u->discard_ctl[i].buf;
		u->discard[i].msg_hdr.msg_controllen = RE_UDP_CTL_SIZE;
	}
	n = sys_recvmmsg(u->fd, u->discard, want, MSG_TRUNC);
	RE_STAT_ADD(u->st, udp_recv_calls, 1);
	if (n <= 0) {
		return n;
	}
	for (int i = 0; i < n; i++) {
		struct rx_ctl rx;

		parse_ctl(&u->discard[i].msg_hdr, &rx);
		bytes += u->discard[i].msg_len;
		dgrams += segments(u->discard[i].msg_len, rx.gso);
	}
	*ret_dgrams = dgrams;
	RE_STAT_ADD(u->st, udp_datagrams_received, dgrams);
	RE_STAT_ADD(u->st, udp_bytes_received, bytes);
	RE_STAT_ADD(u->st, udp_dropped_queue_full, dgrams);
	return n;
}

int re_udp_service(struct re_udp *u, unsigned budget, uint32_t now_ms, uint32_t rate)
{
	unsigned done = 0;

	u->now_ms = now_ms;
	u->rate = rate;
	flush(u);
	while (u->readable) {
		unsigned want = RE_UDP_BATCH, dgrams = 0;
		int n;

		if (done >= budget) {
			return 1;	/* input left and no edge will announce it again */
		}
		if (want > budget - done) {
			want = budget - done;
		}
		if (u->count == RE_UDP_SLOTS) {
			n = discard_batch(u, want, &dgrams);
		} else {
			unsigned tail = (u->head + u->count) % RE_UDP_SLOTS;
			unsigned room = RE_UDP_SLOTS - u->count;

			if (room > RE_UDP_SLOTS - tail) {
				room = RE_UDP_SLOTS - tail;	/* one contiguous run */
			}
			if (want > room) {
				want = room;
			}
			n = recv_batch(u, want, &dgrams);
			flush(u);
		}
		if (n < 0) {
			if (errno == EINTR) {
				continue;
			}
			u->readable = false;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				return 0;
			}
			return -errno;
		}
		/* recvmmsg on a non-blocking socket stops early only at EAGAIN: the queue
		 * was empty at that instant, and a later arrival raises a new edge. */
		if ((unsigned)n < want) {
			u->readable = false;
		}
		/* A bundle counts as the datagrams it holds: echoing them costs about
		 * that much. */
		done += dgrams;
	}
	return 0;
}

int re_udp_drain_input(struct re_udp *u, unsigned limit, uint32_t now_ms, uint32_t rate)
{
	int r;

	/* An arrival whose edge is still in epoll's ready list counts too: read
	 * whatever the queue holds, edge or not. */
	u->readable = true;
	r = re_udp_service(u, limit, now_ms, rate);
	if (r < 0) {
		return r;
	}
	return (int)u->count;
}

void re_udp_sample(struct re_udp *u)
{
	uint32_t mi[SK_MEMINFO_VARS];
	socklen_t len = sizeof(mi);

	if (u == NULL || u->fd < 0) {
		return;
	}
	memset(mi, 0, sizeof(mi));
	if (getsockopt(u->fd, SOL_SOCKET, SO_MEMINFO, mi, &len) < 0 ||
	    len <= SK_MEMINFO_DROPS * sizeof(mi[0])) {
		return;
	}
	/* The socket's count only grows; the counter adds what is new, so it keeps
	 * growing across sockets and across the worker's retirement (its block is
	 * folded into the retired total). */
	if (mi[SK_MEMINFO_DROPS] > u->kernel_drops) {
		RE_STAT_ADD(u->st, udp_kernel_drops, mi[SK_MEMINFO_DROPS] - u->kernel_drops);
		u->kernel_drops = mi[SK_MEMINFO_DROPS];
	}
}

void re_udp_close(struct re_udp *u)
{
	if (u == NULL) {
		return;
	}
	if (u->fd >= 0) {
		re_udp_sample(u);
		(void)close(u->fd);
		u->fd = -1;
	}
	while (u->count > 0) {
		const struct mmsghdr *m = &u->msg[u->head];

		RE_STAT_ADD(u->st, udp_dropped_queue_full,
			    entry_segments(u, m, (unsigned)m->msg_hdr.msg_iov->iov_len));
		advance(u, 1);
	}
	if (u->bufs != NULL) {
		(void)munmap(u->bufs, (size_t)RE_UDP_SLOTS * RE_UDP_SLOT_SIZE);
	}
	free(u->rate_tab);
	free(u);
}

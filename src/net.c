/* net: socket helpers (addresses, listeners, port reservation). No logging here. */
#include "net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int re_net_parse_addr(const char *host, unsigned port, struct re_addr *ret)
{
	struct re_addr a;
	char tmp[128];
	const char *pct;

	memset(&a, 0, sizeof(a));
	if (port > 65535) {
		return -EINVAL;
	}
	if (inet_pton(AF_INET, host, &((struct sockaddr_in *)&a.ss)->sin_addr) == 1) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&a.ss;

		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
		a.len = sizeof(*sin);
		*ret = a;
		return 0;
	}
	pct = strchr(host, '%');
	if (strlen(host) >= sizeof(tmp)) {
		return -EINVAL;
	}
	snprintf(tmp, sizeof(tmp), "%s", host);
	if (pct != NULL) {
		tmp[pct - host] = '\0';
	}
	{
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&a.ss;

		if (inet_pton(AF_INET6, tmp, &sin6->sin6_addr) != 1) {
			return -EINVAL;
		}
		if (pct != NULL) {
			unsigned idx = if_nametoindex(pct + 1);

			if (idx == 0) {
				return -EINVAL;
			}
			sin6->sin6_scope_id = idx;
		}
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		a.len = sizeof(*sin6);
	}
	*ret = a;
	return 0;
}

unsigned re_net_port(const struct re_addr *a)
{
	if (a->ss.ss_family == AF_INET6) {
		return ntohs(((const struct sockaddr_in6 *)&a->ss)->sin6_port);
	}
	return ntohs(((const struct sockaddr_in *)&a->ss)->sin_port);
}

void re_net_set_port(struct re_addr *a, unsigned port)
{
	if (a->ss.ss_family == AF_INET6) {
		((struct sockaddr_in6 *)&a->ss)->sin6_port = htons((uint16_t)port);
	} else {
		((struct sockaddr_in *)&a->ss)->sin_port = htons((uint16_t)port);
	}
}

void re_net_format_addr(const struct re_addr *a, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN];

	if (a->ss.ss_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&a->ss;

		inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
		snprintf(buf, len, "[%s]:%u", host, re_net_port(a));
	} else {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)&a->ss;

		inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
		snprintf(buf, len, "%s:%u", host, re_net_port(a));
	}
}

bool re_net_is_v6_any(const struct re_addr *a)
{
	return a->ss.ss_family == AF_INET6 &&
	       IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)&a->ss)->sin6_addr);
}

bool re_net_is_loopback(const struct re_addr *a)
{
	if (a->ss.ss_family == AF_INET6) {
		const struct in6_addr *in6 = &((const struct sockaddr_in6 *)&a->ss)->sin6_addr;

		if (IN6_IS_ADDR_V4MAPPED(in6)) {
			return in6->s6_addr[12] == 127;
		}
		return IN6_IS_ADDR_LOOPBACK(in6);
	}
	return (ntohl(((const struct sockaddr_in *)&a->ss)->sin_addr.s_addr) >> 24) == 127;
}

/* Dual-stack for "::" regardless of net.ipv6.bindv6only; v6-only for other v6
 * addresses is implied by the address itself. */
static int set_v6only(int fd, const struct re_addr *a)
{
	int zero = 0;

	if (a->ss.ss_family != AF_INET6) {
		return 0;
	}
	return setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
}

int re_net_reserve(struct re_addr *a)
{
	struct sockaddr_storage got;
	socklen_t glen = sizeof(got);
	int one = 1, r;
	int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0) {
		return -errno;
	}
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    set_v6only(fd, a) < 0 || bind(fd, (const struct sockaddr *)&a->ss, a->len) < 0 ||
	    getsockname(fd, (struct sockaddr *)&got, &glen) < 0) {
		r = -errno;	/* before close() can clobber errno */
		(void)close(fd);
		return r;
	}
	if (got.ss_family == AF_INET6) {
		re_net_set_port(a, ntohs(((struct sockaddr_in6 *)&got)->sin6_port));
	} else {
		re_net_set_port(a, ntohs(((struct sockaddr_in *)&got)->sin_port));
	}
	return fd;
}

int re_net_reserve_udp(const struct re_addr *a)
{
	int one = 1, r;
	int fd = socket(a->ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	if (fd < 0) {
		return -errno;
	}
	/* The order matters: bind exclusively first, then allow the workers in. */
	if (set_v6only(fd, a) < 0 || bind(fd, (const struct sockaddr *)&a->ss, a->len) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) {
		r = -errno;	/* before close() can clobber errno */
		(void)close(fd);
		return r;
	}
	return fd;
}

int re_net_listen_reuseport(const struct re_addr *a, int backlog, const char **ret_call)
{
	int one = 1, r;
	int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0) {
		*ret_call = "socket";
		return -errno;
	}
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0 ||
	    set_v6only(fd, a) < 0) {
		*ret_call = "setsockopt";
		goto fail;
	}
	if (bind(fd, (const struct sockaddr *)&a->ss, a->len) < 0) {
		*ret_call = "bind";
		goto fail;
	}
	if (listen(fd, backlog) < 0) {
		*ret_call = "listen";
		goto fail;
	}
	return fd;
fail:
	r = -errno;	/* before close() can clobber errno */
	(void)close(fd);
	return r;
}

int re_net_accept_queue(int fd, uint32_t *ret_len, uint32_t *ret_max)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);

	memset(&ti, 0, sizeof(ti));
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0) {
		return -errno;
	}
	/* For a listener the kernel reports the accept queue in these two fields. */
	*ret_len = ti.tcpi_unacked;
	*ret_max = ti.tcpi_sacked;
	return 0;
}

/* One SOCK_DIAG_BY_FAMILY dump of `family` TCP sockets in SYN_RECV on local `port`. */
static int syn_recv_dump(int fd, int family, unsigned port, struct re_net_peer *out, size_t max,
			 size_t *n)
{
	struct {
		struct nlmsghdr nlh;
		struct inet_diag_req_v2 req;
	} msg;
	struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
	/* Aligned for struct nlmsghdr; a dump part is at most a page or two. */
	long buf[8192 / sizeof(long)];

	memset(&msg, 0, sizeof(msg));
	msg.nlh.nlmsg_len = sizeof(msg);
	msg.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
	msg.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	msg.nlh.nlmsg_seq = 1;
	msg.req.sdiag_family = (uint8_t)family;
	msg.req.sdiag_protocol = IPPROTO_TCP;
	/* The kernel matches request sockets (TCP_NEW_SYN_RECV) for this bit too, and
	 * compares idiag_sport itself. */
	msg.req.idiag_states = 1u << TCP_SYN_RECV;
	msg.req.id.idiag_sport = htons((uint16_t)port);
	msg.req.id.idiag_cookie[0] = INET_DIAG_NOCOOKIE;
	msg.req.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
	if (sendto(fd, &msg, sizeof(msg), 0, (struct sockaddr *)&kernel, sizeof(kernel)) < 0) {
		return -errno;
	}
	for (;;) {
		ssize_t got = recv(fd, buf, sizeof(buf), 0);
		size_t off = 0;

		if (got < 0) {
			if (errno == EINTR) {
				continue;
			}
			return -errno;
		}
		if (got == 0) {
			return -EPROTO;	/* the kernel never ends a dump without DONE */
		}
		/* NLMSG_OK/NLMSG_NEXT, without their signed/unsigned mix. */
		while ((size_t)got - off >= sizeof(struct nlmsghdr)) {
			const struct nlmsghdr *h = (const void *)((const char *)buf + off);
			const struct inet_diag_msg *d = NLMSG_DATA(h);

			if (h->nlmsg_len < sizeof(*h) || h->nlmsg_len > (size_t)got - off) {
				return -EPROTO;
			}
			off += NLMSG_ALIGN(h->nlmsg_len);
			if (h->nlmsg_type == NLMSG_DONE) {
				return 0;
			}
			if (h->nlmsg_type == NLMSG_ERROR) {
				const struct nlmsgerr *e = NLMSG_DATA(h);

				return e->error < 0 ? e->error : -EPROTO;
			}
			if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY ||
			    h->nlmsg_len < NLMSG_LENGTH(sizeof(*d))) {
				continue;
			}
			if (ntohs(d->id.idiag_sport) != port || *n >= max) {
				continue;	/* (the kernel filtered already) */
			}
			memset(&out[*n], 0, sizeof(out[*n]));
			out[*n].family = d->idiag_family;
			out[*n].port = d->id.idiag_dport;
			memcpy(out[*n].addr, d->id.idiag_dst,
			       d->idiag_family == AF_INET ? 4 : sizeof(out[*n].addr));
			(*n)++;
		}
	}
}

int re_net_syn_recv(unsigned port, struct re_net_peer *out, size_t max, size_t *ret_n)
{
	int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
	int r;

	*ret_n = 0;
	if (fd < 0) {
		return -errno;
	}
	r = syn_recv_dump(fd, AF_INET, port, out, max, ret_n);
	if (r == 0) {
		r = syn_recv_dump(fd, AF_INET6, port, out, max, ret_n);
	}
	(void)close(fd);
	return r;
}

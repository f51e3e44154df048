/* net: socket helpers (addresses, listeners, port reservation). No logging here. */
#include "net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
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

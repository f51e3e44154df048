/* net: socket helpers kept apart from the event loop: address parsing and
 * formatting, SO_REUSEPORT listeners, the port reservation, accept-queue probes.
 * Pure wrappers: they log nothing and return -errno. Any thread may call them.
 */
#ifndef REUSEECHO_SRC_NET_H
#define REUSEECHO_SRC_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

/* recv/send for the per-message path, issued as raw system calls. glibc's recv() and
 * send() are pthread cancellation points: in a multithreaded process each call
 * switches asynchronous cancellation on and off around the system call, which costs
 * about as many instructions as the rest of our per-message work (callgrind). No
 * thread of ours is ever cancelled, so that work is pure overhead. */
static inline ssize_t re_net_recv(int fd, void *buf, size_t len)
{
	return (ssize_t)syscall(SYS_recvfrom, fd, buf, len, 0, NULL, NULL);
}

static inline ssize_t re_net_send(int fd, const void *buf, size_t len)
{
	return (ssize_t)syscall(SYS_sendto, fd, buf, len, MSG_NOSIGNAL, NULL, 0);
}

struct re_addr {
	struct sockaddr_storage ss;
	socklen_t len;
};

/* Numeric IPv4/IPv6 literal (IPv6 may carry a %scope) plus port. Returns 0 or -EINVAL. */
int re_net_parse_addr(const char *host, unsigned port, struct re_addr *ret)
	__attribute__((warn_unused_result));

unsigned re_net_port(const struct re_addr *a);
void re_net_set_port(struct re_addr *a, unsigned port);

/* "1.2.3.4:7007" or "[::1]:7007". Always NUL-terminates when len > 0. */
void re_net_format_addr(const struct re_addr *a, char *buf, size_t len);

/* True for 127.0.0.0/8, ::1 and v4-mapped 127.0.0.0/8. */
bool re_net_is_loopback(const struct re_addr *a);

/* True for the IPv6 wildcard "::" (listened on dual-stack). */
bool re_net_is_v6_any(const struct re_addr *a);

/* Bind (without listening) a socket that claims addr:port for this process: it fails
 * with -EADDRINUSE when any live listener holds the port, including a SO_REUSEPORT
 * group of another instance, and picks the port when a->port is 0. Workers can still
 * bind the same port with SO_REUSEADDR while this socket is open, because a bound
 * socket that does not listen only conflicts with sockets lacking SO_REUSEADDR.
 * On success returns the fd and writes the concrete port into *a. */
int re_net_reserve(struct re_addr *a) __attribute__((warn_unused_result));

/* Hold addr:port for this process's UDP sockets (--udp). A UDP socket bound with
 * neither SO_REUSEADDR nor SO_REUSEPORT conflicts with every UDP socket on the port,
 * whatever its flags, so the bind fails with -EADDRINUSE when anyone holds it: an
 * instance is never silently added to someone else's SO_REUSEPORT group. Only after
 * that bind is SO_REUSEPORT set on the socket, so the workers' SO_REUSEPORT sockets
 * (same uid) can bind beside it. The first worker to bind forms the group with this
 * socket at index 0 and itself at 1; closing this socket then moves the worker into
 * index 0. So close it once the first worker has bound and before the second binds:
 * the UDP group is then the workers in the order they bound, like the TCP group (see
 * src/group.h). Datagrams the kernel gives this socket meanwhile are lost; none are
 * owed yet, since the server is not ready. a->port must be concrete.
 * Returns the fd or -errno. */
int re_net_reserve_udp(const struct re_addr *a) __attribute__((warn_unused_result));

/* socket + SO_REUSEADDR + SO_REUSEPORT + TCP_NODELAY (inherited by accepted sockets)
 * + bind + listen, non-blocking and close-on-exec. On failure *ret_call names the
 * call that failed ("socket", "bind", "listen", ...). Returns the fd or -errno. */
int re_net_listen_reuseport(const struct re_addr *a, int backlog, const char **ret_call)
	__attribute__((warn_unused_result));

/* Accept-queue length and limit of a listening TCP socket (TCP_INFO: tcpi_unacked,
 * tcpi_sacked). Returns 0 or -errno. */
int re_net_accept_queue(int fd, uint32_t *ret_len, uint32_t *ret_max)
	__attribute__((warn_unused_result));

/* A TCP peer: family, port (network order) and address (4 or 16 bytes, zero-padded). */
struct re_net_peer {
	uint16_t family;
	uint16_t port;
	uint8_t addr[16];
};

/* Half-open connection requests (SYN_RECV) to local TCP port `port`, IPv4 and IPv6,
 * in this network namespace, from one NETLINK_SOCK_DIAG dump per family filtered by
 * the kernel on state and source port (no table walk in user space). Stores up to max
 * peers in out[] and their count in *ret_n (more may exist when *ret_n == max).
 * Returns 0 or -errno (no sock_diag: the caller cannot see half-open requests). */
int re_net_syn_recv(unsigned port, struct re_net_peer *out, size_t max, size_t *ret_n)
	__attribute__((warn_unused_result));

#endif

/* test_net: unit test for re_net_syn_recv (src/net.c), the sock_diag query a retiring
 * worker uses to find half-open handshakes on its port. A listener with
 * TCP_DEFER_ACCEPT ignores the client's bare final ACK, so its requests stay in
 * SYN_RECV while the clients see ESTABLISHED: real half-open requests on loopback
 * without root. Checks: each client is found by its address and port, nothing of
 * another port is reported, an established connection is not, and `max` truncates.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "net.h"

#include "check.h"

#define NCLIENTS 5

static int listener(int defer, unsigned *ret_port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	CHECK(fd >= 0);
	if (defer) {
		int secs = 30;

		CHECK(setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &secs, sizeof(secs)) == 0);
	}
	CHECK(bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
	CHECK(listen(fd, 64) == 0);
	CHECK(getsockname(fd, (struct sockaddr *)&a, &len) == 0);
	*ret_port = ntohs(a.sin_port);
	return fd;
}

static int client(unsigned port, struct sockaddr_in *ret_local)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
				 .sin_port = htons((uint16_t)port) };
	socklen_t len = sizeof(*ret_local);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	CHECK(fd >= 0);
	CHECK(connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
	CHECK(getsockname(fd, (struct sockaddr *)ret_local, &len) == 0);
	return fd;
}

static int found(const struct re_net_peer *p, size_t n, const struct sockaddr_in *who)
{
	int hits = 0;

	for (size_t i = 0; i < n; i++) {
		hits += p[i].family == AF_INET && p[i].port == who->sin_port &&
			memcmp(p[i].addr, &who->sin_addr, 4) == 0;
	}
	return hits;
}

int main(void)
{
	struct re_net_peer peers[64];
	struct sockaddr_in local[NCLIENTS], plain_local;
	int cfd[NCLIENTS], plain_fd, lfd, plain_l;
	unsigned port, plain_port;
	size_t n = 0;
	int r;

	lfd = listener(1, &port);
	plain_l = listener(0, &plain_port);
	for (int i = 0; i < NCLIENTS; i++) {
		cfd[i] = client(port, &local[i]);
	}
	plain_fd = client(plain_port, &plain_local);	/* established at once */

	/* The final ACK is on its way through loopback: poll briefly (bounded). */
	for (int tries = 0; tries < 100; tries++) {
		r = re_net_syn_recv(port, peers, 64, &n);
		if (r == -EPROTONOSUPPORT || r == -ENOENT || r == -EAFNOSUPPORT) {
			printf("SKIPPED: net: no NETLINK_SOCK_DIAG for TCP here (%s)\n", strerror(-r));
			return 77;
		}
		CHECK(r == 0);
		if (n == NCLIENTS) {
			break;
		}
		nanosleep(&(struct timespec){ .tv_nsec = 10000000 }, NULL);
	}
	CHECK(n == NCLIENTS);
	for (int i = 0; i < NCLIENTS; i++) {
		CHECK(found(peers, n, &local[i]) == 1);
	}
	/* Another port: its established connection is not half-open. */
	CHECK(re_net_syn_recv(plain_port, peers, 64, &n) == 0);
	CHECK(n == 0);
	/* Truncation at max. */
	CHECK(re_net_syn_recv(port, peers, 2, &n) == 0);
	CHECK(n == 2);
	/* Data completes the deferred handshake: the requests leave SYN_RECV. */
	for (int i = 0; i < NCLIENTS; i++) {
		CHECK(write(cfd[i], "x", 1) == 1);
	}
	for (int tries = 0; tries < 100; tries++) {
		CHECK(re_net_syn_recv(port, peers, 64, &n) == 0);
		if (n == 0) {
			break;
		}
		nanosleep(&(struct timespec){ .tv_nsec = 10000000 }, NULL);
	}
	CHECK(n == 0);
	for (int i = 0; i < NCLIENTS; i++) {
		close(cfd[i]);
	}
	close(plain_fd);
	close(plain_l);
	close(lfd);
	printf("net: all checks passed\n");
	return 0;
}

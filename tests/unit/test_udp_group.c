/* One group model for the TCP and the UDP SO_REUSEPORT groups (src/group.h), checked
 * against the kernel. A worker listens on TCP, then binds its UDP socket, one worker
 * at a time, and closes both in one step; so the two groups' arrays must hold the
 * members in the same order at every moment, and one CBPF program, attached to
 * each group, must pick the same member in both. For every index k, a program that
 * answers k is attached to both groups: the connection must land on the model's
 * member k's listener and the datagram on that member's UDP socket. Covers the port
 * reservation of --udp (re_net_reserve_udp: index 0 until the first member binds),
 * join order, leaving from the middle and last, joining after a shrink, and the
 * steer-away program: a steered-away UDP socket gets no datagram.
 * Also: the reservation refuses a port any UDP socket holds, with any flags.
 * Exit 0 pass, 1 fail, 77 when this kernel has no SO_ATTACH_REUSEPORT_CBPF.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "group.h"
#include "net.h"

#include "check.h"

#define MAXM 8

static int lfd[MAXM];		/* by member id; -1 once closed */
static int ufd[MAXM];
static struct re_addr addr;	/* 127.0.0.1:port */

static void set_reuseport(int fd)
{
	int one = 1;

	CHECK(setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) == 0);
}

/* A member joins as a worker does: TCP listen, then UDP bind. */
static void join_sockets(int id)
{
	const char *call = "";

	lfd[id] = re_net_listen_reuseport(&addr, 64, &call);
	CHECK(lfd[id] >= 0);
	ufd[id] = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	CHECK(ufd[id] >= 0);
	set_reuseport(ufd[id]);
	CHECK(bind(ufd[id], (const struct sockaddr *)&addr.ss, addr.len) == 0);
}

static void join(struct re_group_model *g, int id)
{
	join_sockets(id);
	CHECK(re_group_model_join(g, id) == 0);
}

static void leave(struct re_group_model *g, int id)
{
	(void)close(lfd[id]);
	(void)close(ufd[id]);
	lfd[id] = -1;
	ufd[id] = -1;
	re_group_model_leave(g, id);
}

static int first_open(const int *fds)
{
	for (int i = 0; i < MAXM; i++) {
		if (fds[i] >= 0) {
			return fds[i];
		}
	}
	return -1;
}

/* Attach prog to both groups, through any open member of each. */
static int attach_both(const struct sock_fprog *prog)
{
	if (setsockopt(first_open(lfd), SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, prog,
		       sizeof(*prog)) < 0) {
		return -errno;
	}
	return setsockopt(first_open(ufd), SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, prog,
			  sizeof(*prog)) < 0 ? -errno : 0;
}

static int attach_index(uint32_t k)
{
	struct sock_filter ret = BPF_STMT(BPF_RET | BPF_K, k);
	struct sock_fprog prog;

	memset(&prog, 0, sizeof(prog));
	prog.len = 1;
	prog.filter = &ret;
	return attach_both(&prog);
}

/* The member whose fd (of fds) became readable, consuming what arrived; -1 if none
 * within 2 s. */
static int landed(const int *fds, int tcp)
{
	struct pollfd pfd[MAXM];
	int ids[MAXM], n = 0, got = -1;

	for (int i = 0; i < MAXM; i++) {
		if (fds[i] >= 0) {
			pfd[n].fd = fds[i];
			pfd[n].events = POLLIN;
			ids[n++] = i;
		}
	}
	if (poll(pfd, (nfds_t)n, 2000) > 0) {
		for (int j = 0; j < n; j++) {
			if (pfd[j].revents & POLLIN) {
				char b[16];
				int fd = tcp ? accept(pfd[j].fd, NULL, NULL)
					     : (int)recv(pfd[j].fd, b, sizeof(b), 0);

				if (tcp && fd >= 0) {
					(void)close(fd);
				}
				CHECK(got < 0);	/* never two members */
				got = ids[j];
			}
		}
	}
	return got;
}

static int connect_lands(void)
{
	int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int got;

	CHECK(c >= 0);
	CHECK(connect(c, (const struct sockaddr *)&addr.ss, addr.len) == 0);
	got = landed(lfd, 1);
	(void)close(c);
	return got;
}

static int datagram_lands(void)
{
	int c = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	int got;

	CHECK(c >= 0);
	CHECK(sendto(c, "d", 1, 0, (const struct sockaddr *)&addr.ss, addr.len) == 1);
	got = landed(ufd, 0);
	(void)close(c);
	return got;
}

/* Index k of the model is member m[k] in both groups. */
static void verify(const struct re_group_model *g, const char *when)
{
	for (size_t k = 0; k < g->n; k++) {
		int t, u;

		CHECK(attach_index((uint32_t)k) == 0);
		t = connect_lands();
		u = datagram_lands();
		if (t != g->m[k] || u != g->m[k]) {
			fprintf(stderr, "%s: index %zu: connection to %d, datagram to %d, model %d\n",
				when, k, t, u, g->m[k]);
			exit(1);
		}
	}
}

/* re_net_reserve_udp fails on a port held by a UDP socket with these flags. */
static void refused_beside(int reuseaddr, int reuseport)
{
	struct re_addr a;
	socklen_t len = sizeof(a.ss);
	int one = 1, r;
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	CHECK(re_net_parse_addr("127.0.0.1", 0, &a) == 0);
	CHECK(fd >= 0);
	if (reuseaddr) {
		CHECK(setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == 0);
	}
	if (reuseport) {
		set_reuseport(fd);
	}
	CHECK(bind(fd, (const struct sockaddr *)&a.ss, a.len) == 0);
	CHECK(getsockname(fd, (struct sockaddr *)&a.ss, &len) == 0);
	r = re_net_reserve_udp(&a);
	if (r >= 0) {
		fprintf(stderr, "reserved a port held with SO_REUSEADDR=%d SO_REUSEPORT=%d\n",
			reuseaddr, reuseport);
		exit(1);
	}
	CHECK(r == -EADDRINUSE);
	(void)close(fd);
}

int main(void)
{
	struct re_group_model g = { .valid = true };
	struct sock_filter prog[RE_STEER_MAX_INSNS];
	struct sock_fprog fprog;
	int tcp_hold, udp_hold, other;

	for (int i = 0; i < MAXM; i++) {
		lfd[i] = -1;
		ufd[i] = -1;
	}
	refused_beside(0, 0);
	refused_beside(1, 0);
	refused_beside(0, 1);
	refused_beside(1, 1);

	/* Start-up as the supervisor does it: both reservations, then the workers. */
	CHECK(re_net_parse_addr("127.0.0.1", 0, &addr) == 0);
	tcp_hold = re_net_reserve(&addr);
	CHECK(tcp_hold >= 0);
	udp_hold = re_net_reserve_udp(&addr);
	CHECK(udp_hold >= 0);
	/* Held: a socket of another program cannot bind, with or without SO_REUSEADDR. */
	other = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	CHECK(other >= 0);
	CHECK(bind(other, (const struct sockaddr *)&addr.ss, addr.len) < 0 && errno == EADDRINUSE);
	(void)close(other);

	join(&g, 0);
	/* Until it closes, the reservation is index 0 of the UDP group, member 0 is 1. */
	if (attach_index(0) < 0) {
		printf("SKIPPED: udp group: no SO_ATTACH_REUSEPORT_CBPF here\n");
		return 77;
	}
	ufd[MAXM - 1] = udp_hold;	/* polled as if it were a member */
	CHECK(datagram_lands() == MAXM - 1);
	CHECK(attach_index(1) == 0);
	CHECK(datagram_lands() == 0);
	ufd[MAXM - 1] = -1;
	(void)close(udp_hold);	/* after the first member bound, before the second */
	CHECK(attach_index(0) == 0);
	CHECK(datagram_lands() == 0);
	join(&g, 1);
	join(&g, 2);
	join(&g, 3);
	(void)close(tcp_hold);
	verify(&g, "joined 0 1 2 3");
	leave(&g, 1);	/* the middle: 3 moves into index 1, in both groups */
	CHECK(g.n == 3 && g.m[1] == 3);
	verify(&g, "left 1");
	leave(&g, 2);	/* the last */
	verify(&g, "left 2");
	join(&g, 4);	/* grow after the shrink */
	join(&g, 5);
	verify(&g, "joined 4 5");

	/* The program that steers away from member 3, on both groups: of 40 datagrams
	 * none reaches 3's UDP socket, and every other member gets some. */
	CHECK(re_group_model_steer_away(&g, 3, prog, &fprog) == 0);
	CHECK(attach_both(&fprog) == 0);
	{
		int count[MAXM] = { 0 };

		for (int i = 0; i < 40; i++) {
			int m = datagram_lands();

			CHECK(m >= 0);
			count[m]++;
		}
		if (count[3] != 0 || count[0] == 0 || count[4] == 0 || count[5] == 0) {
			fprintf(stderr, "steered away from 3: %d %d %d %d\n", count[0], count[3],
				count[4], count[5]);
			exit(1);
		}
	}
	for (int i = 0; i < MAXM; i++) {
		if (lfd[i] >= 0) {
			leave(&g, i);
		}
	}
	re_group_model_finish(&g);
	printf("one group model matches the kernel's TCP and UDP groups\n");
	return 0;
}

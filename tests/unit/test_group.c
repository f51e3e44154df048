/* The SO_REUSEPORT group model (src/group.c) against the kernel: real listeners on
 * 127.0.0.1 join a group; after each change, a CBPF program that answers index k
 * is attached and a connection is made for every k: the listener whose accept queue
 * receives it must be the member the model has at k. Covers join order, leaving
 * from the middle (the last member moves into the hole), leaving last, and joining
 * again after a shrink; then the steer-away program never picks the excluded member.
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

#define MAXL 8

static int lfd[MAXL];		/* by member id; -1 once closed */
static unsigned short port;
static int failures;

#define CHECK(cond, ...)                                                       \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);   \
			fprintf(stderr, __VA_ARGS__);                          \
			fputc('\n', stderr);                                   \
			failures++;                                            \
		}                                                              \
	} while (0)

static int listen_one(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
	socklen_t len = sizeof(a);
	int one = 1;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
	    bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 64) < 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &len) < 0) {
		perror("listener");
		exit(1);
	}
	port = ntohs(a.sin_port);
	return fd;
}

static int attach(const struct sock_fprog *prog)
{
	for (int i = 0; i < MAXL; i++) {
		if (lfd[i] >= 0) {
			return setsockopt(lfd[i], SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, prog,
					  sizeof(*prog)) < 0 ? -errno : 0;
		}
	}
	return -ENOENT;
}

static int attach_index(uint32_t k)
{
	struct sock_filter ret = BPF_STMT(BPF_RET | BPF_K, k);
	struct sock_fprog prog;

	memset(&prog, 0, sizeof(prog));
	prog.len = 1;
	prog.filter = &ret;
	return attach(&prog);
}

/* Connect once; return the member id whose listener got the connection, or -1. */
static int where_does_it_land(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
	struct pollfd pfd[MAXL];
	int ids[MAXL], n = 0, got = -1;
	int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (c < 0 || connect(c, (struct sockaddr *)&a, sizeof(a)) < 0) {
		perror("connect");
		exit(1);
	}
	for (int i = 0; i < MAXL; i++) {
		if (lfd[i] >= 0) {
			pfd[n].fd = lfd[i];
			pfd[n].events = POLLIN;
			ids[n++] = i;
		}
	}
	if (poll(pfd, (nfds_t)n, 2000) > 0) {
		for (int j = 0; j < n; j++) {
			if (pfd[j].revents & POLLIN) {
				int fd = accept(pfd[j].fd, NULL, NULL);

				if (fd >= 0) {
					(void)close(fd);
				}
				CHECK(got < 0, "connection queued on two listeners");
				got = ids[j];
			}
		}
	}
	(void)close(c);
	return got;
}

/* Every index of the model sends its connection to the member the model has there. */
static void verify(const struct re_group_model *g, const char *when)
{
	for (size_t k = 0; k < g->n; k++) {
		int r = attach_index((uint32_t)k);
		int got;

		CHECK(r == 0, "%s: attach: %s", when, strerror(-r));
		got = where_does_it_land();
		CHECK(got == g->m[k], "%s: index %zu went to member %d, the model says %d", when, k,
		      got, g->m[k]);
	}
}

static void join(struct re_group_model *g, int id)
{
	lfd[id] = listen_one();
	CHECK(re_group_model_join(g, id) == 0, "join %d", id);
}

static void leave(struct re_group_model *g, int id)
{
	(void)close(lfd[id]);
	lfd[id] = -1;
	re_group_model_leave(g, id);
}

int main(void)
{
	struct re_group_model g = { .valid = true };
	struct sock_filter prog[RE_STEER_MAX_INSNS];
	struct sock_fprog fprog;

	for (int i = 0; i < MAXL; i++) {
		lfd[i] = -1;
	}
	for (int i = 0; i < 4; i++) {
		join(&g, i);
	}
	if (attach_index(0) == -EINVAL || attach_index(0) == -ENOPROTOOPT) {
		printf("SKIPPED: group: no SO_ATTACH_REUSEPORT_CBPF here\n");
		return 77;
	}
	verify(&g, "joined 0 1 2 3");
	leave(&g, 1);	/* the middle: 3 moves into index 1 */
	CHECK(g.n == 3 && g.m[0] == 0 && g.m[1] == 3 && g.m[2] == 2, "model after leaving 1");
	verify(&g, "left 1");
	leave(&g, 2);	/* the last */
	CHECK(g.n == 2 && g.m[0] == 0 && g.m[1] == 3, "model after leaving 2");
	verify(&g, "left 2");
	join(&g, 4);	/* grow after the shrink: the next index */
	join(&g, 5);
	CHECK(g.n == 4 && g.m[2] == 4 && g.m[3] == 5, "model after joining 4 and 5");
	verify(&g, "joined 4 5");
	/* Steering away from member 3: 40 connections, none to 3, every other gets some. */
	CHECK(re_group_model_steer_away(&g, 3, prog, &fprog) == 0, "steer_away");
	CHECK(attach(&fprog) == 0, "attach steer-away");
	{
		int count[MAXL] = { 0 };

		for (int i = 0; i < 40; i++) {
			int m = where_does_it_land();

			if (m >= 0) {
				count[m]++;
			}
		}
		CHECK(count[3] == 0, "steered away from 3, yet it got %d of 40", count[3]);
		CHECK(count[0] > 0 && count[4] > 0 && count[5] > 0, "spread: %d %d %d", count[0],
		      count[4], count[5]);
	}
	g.valid = false;
	CHECK(re_group_model_steer_away(&g, 3, prog, &fprog) == -EOPNOTSUPP, "invalid model");
	for (int i = 0; i < MAXL; i++) {
		if (lfd[i] >= 0) {
			(void)close(lfd[i]);
		}
	}
	re_group_model_finish(&g);
	if (failures) {
		return 1;
	}
	printf("group model matches the kernel\n");
	return 0;
}

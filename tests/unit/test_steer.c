/* The group's steering program (re_group_program, re_steer_build_cpu) against the
 * model: a small classic BPF interpreter runs each program for every CPU 0-15 and a
 * range of random values, and the set of group indexes it can answer must be
 * exactly the one the state calls for:
 *   eligible = the members in the group array, less the one an operation empties
 *              (away), retiring workers and stalled ones (avoid) -- unless every
 *              eligible member is stalled: then the stalled ones (never nobody);
 *   hash     = no program when every member is eligible, else a spread over them;
 *   cpu      = the eligible members pinned to the CPU when there are any, else a
 *              spread over every eligible member.
 * Then against the kernel: two reuseport listeners with the cpu program attached, a
 * connection made from CPU k lands on the listener of the worker pinned to k (on
 * loopback the SYN is processed on the connecting CPU); skipped where fewer than two
 * CPUs are usable or SO_ATTACH_REUSEPORT_CBPF is missing (the model part still ran).
 * Exit 0 pass, 1 fail, 77 when the kernel part cannot run.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"
#include "group.h"

#define NCPU 16
#define NRAND 2520	/* a multiple of every spread size up to 10 */

static struct sock_filter prog[RE_STEER_MAX_INSNS];

/* Run prog with SKF_AD_CPU = cpu and SKF_AD_RANDOM = rnd; returns its answer. */
static uint32_t run(const struct sock_fprog *fp, uint32_t cpu, uint32_t rnd)
{
	uint32_t a = 0;
	size_t pc = 0;

	while (pc < fp->len) {
		const struct sock_filter *f = &fp->filter[pc++];

		switch (f->code) {
		case BPF_LD | BPF_W | BPF_ABS:
			CHECK(f->k == (uint32_t)(SKF_AD_OFF + SKF_AD_CPU) ||
			      f->k == (uint32_t)(SKF_AD_OFF + SKF_AD_RANDOM));
			a = f->k == (uint32_t)(SKF_AD_OFF + SKF_AD_CPU) ? cpu : rnd;
			break;
		case BPF_ALU | BPF_MOD | BPF_K:
			CHECK(f->k != 0);
			a %= f->k;
			break;
		case BPF_JMP | BPF_JEQ | BPF_K:
			pc += a == f->k ? f->jt : f->jf;
			break;
		case BPF_JMP | BPF_JA:
			pc += f->k;
			break;
		case BPF_RET | BPF_K:
			return f->k;
		default:
			CHECK(!"an opcode the steering programs do not use");
		}
	}
	CHECK(!"ran off the end of the program");
	return 0;
}

/* Bit i set: the program may answer index i for this CPU. */
static uint64_t reachable(const struct sock_fprog *fp, uint32_t cpu)
{
	uint64_t set = 0;

	for (uint32_t r = 0; r < NRAND; r++) {
		uint32_t k = run(fp, cpu, r * 7919u);

		CHECK(k < 64);
		set |= 1ull << k;
	}
	return set;
}

/* What the state calls for (see the top of this file), for one CPU. */
static uint64_t expected(const struct re_group *g, int cpu, bool *none)
{
	uint64_t elig = 0, stalled = 0, local = 0, all = 0;

	for (size_t i = 0; i < g->model.n; i++) {
		int m = g->model.m[i];
		const struct re_slot *sl = NULL;

		all |= 1ull << i;
		for (size_t k = 0; k < g->nslots; k++) {
			sl = g->slots[k].id == m ? &g->slots[k] : sl;
		}
		if (m == g->away || (m >= 0 && (sl == NULL || sl->retiring))) {
			continue;
		}
		if (sl != NULL && sl->avoid) {
			stalled |= 1ull << i;
			continue;
		}
		elig |= 1ull << i;
	}
	if (elig == 0) {
		elig = stalled;
	}
	for (size_t i = 0; i < g->model.n; i++) {
		for (size_t k = 0; k < g->nslots; k++) {
			if ((elig >> i & 1) && g->slots[k].id == g->model.m[i] && g->slots[k].cpu == cpu) {
				local |= 1ull << i;
			}
		}
	}
	*none = elig == 0 || (g->steer == RE_STEER_HASH && elig == all);
	return g->steer == RE_STEER_CPU && local != 0 ? local : elig;
}

static void verify(const struct re_group *g, const char *what)
{
	struct sock_fprog fp;
	int r = re_group_program(g, prog, &fp);
	bool none;

	CHECK(r >= 0);
	for (int cpu = 0; cpu < NCPU; cpu++) {
		uint64_t want = expected(g, cpu, &none);

		if (none) {
			if (r != 0) {
				fprintf(stderr, "%s: a program where none is wanted\n", what);
			}
			CHECK(r == 0);
			return;
		}
		CHECK(r == 1);
		if (reachable(&fp, (uint32_t)cpu) != want) {
			fprintf(stderr, "%s: cpu %d reaches %#llx, want %#llx\n", what, cpu,
				(unsigned long long)reachable(&fp, (uint32_t)cpu),
				(unsigned long long)want);
			CHECK(!"program and model disagree");
		}
	}
}

static struct re_slot slots[8];

static void setup(struct re_group *g, const int *cpus, size_t n)
{
	memset(g, 0, sizeof(*g));
	memset(slots, 0, sizeof(slots));
	g->slots = slots;
	g->nslots = n;
	g->away = RE_GROUP_NOBODY;
	g->model.valid = true;
	for (size_t i = 0; i < n; i++) {
		slots[i].id = (int)i;
		slots[i].cpu = cpus[i];
		CHECK(re_group_model_join(&g->model, (int)i) == 0);
	}
}

static void both(struct re_group *g, const char *what)
{
	char buf[128];

	g->steer = RE_STEER_HASH;
	snprintf(buf, sizeof(buf), "hash: %s", what);
	verify(g, buf);
	g->steer = RE_STEER_CPU;
	snprintf(buf, sizeof(buf), "cpu: %s", what);
	verify(g, buf);
}

static void model_checks(void)
{
	static const int four[] = { 0, 1, 2, 3 };
	static const int shared[] = { 0, 1, 0, 1, 2 };
	struct re_group g;
	struct sock_fprog fp;

	setup(&g, four, 4);
	both(&g, "four workers on four CPUs");
	slots[2].avoid = true;
	both(&g, "worker 2 stalled");
	g.away = 3;
	both(&g, "worker 2 stalled, 3 being retired");
	slots[0].avoid = true;
	slots[1].avoid = true;
	both(&g, "every eligible worker stalled");
	slots[0].avoid = slots[1].avoid = slots[2].avoid = false;
	re_group_model_leave(&g.model, 3);
	g.nslots = 3;
	g.away = RE_GROUP_NOBODY;
	both(&g, "after worker 3 left");
	re_group_model_leave(&g.model, 0);	/* 2 moves to index 0 */
	slots[0].retiring = true;
	both(&g, "after worker 0 left from the front");
	re_group_model_finish(&g.model);

	setup(&g, shared, 5);
	both(&g, "two workers per CPU");
	slots[0].avoid = true;
	both(&g, "one of CPU 0's two stalled");
	slots[2].avoid = true;
	both(&g, "both of CPU 0's stalled");
	re_group_model_finish(&g.model);

	/* A takeover: the old instance's listeners (-1 - id) first, CPUs unknown. */
	setup(&g, four, 0);
	CHECK(re_group_model_join(&g.model, -1) == 0);
	CHECK(re_group_model_join(&g.model, -2) == 0);
	g.nslots = 2;
	slots[0].id = 0;
	slots[0].cpu = 0;
	slots[1].id = 1;
	slots[1].cpu = 1;
	CHECK(re_group_model_join(&g.model, 0) == 0);
	CHECK(re_group_model_join(&g.model, 1) == 0);
	g.away = -1;
	both(&g, "takeover, emptying old listener 0");
	slots[1].avoid = true;
	both(&g, "takeover, new worker 1 stalled");
	g.model.valid = false;
	g.steer = RE_STEER_CPU;
	CHECK(re_group_program(&g, prog, &fp) == 0);	/* indexes unknown: no program */
	re_group_model_finish(&g.model);
}

/* --- against the kernel ------------------------------------------------------------ */

static unsigned short port;

static int listen_one(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
	socklen_t len = sizeof(a);
	int one = 1;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	CHECK(fd >= 0);
	CHECK(setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) == 0);
	CHECK(bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
	CHECK(listen(fd, 64) == 0);
	CHECK(getsockname(fd, (struct sockaddr *)&a, &len) == 0);
	port = ntohs(a.sin_port);
	return fd;
}

/* Connect from the CPU we run on; the index of the listener that got it. */
static int lands(const int *lfd, int n)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
	struct pollfd p[2];
	int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int where = -1;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	CHECK(c >= 0 && connect(c, (struct sockaddr *)&a, sizeof(a)) == 0);
	for (int i = 0; i < n; i++) {
		p[i].fd = lfd[i];
		p[i].events = POLLIN;
	}
	CHECK(poll(p, (nfds_t)n, 2000) == 1);
	for (int i = 0; i < n; i++) {
		if (p[i].revents & POLLIN) {
			int f = accept(lfd[i], NULL, NULL);

			CHECK(f >= 0);
			close(f);
			where = i;
		}
	}
	close(c);
	return where;
}

static int kernel_check(void)
{
	cpu_set_t allowed, one;
	int cpus[2], ncpu = 0, lfd[2];
	struct re_group g;
	struct sock_fprog fp;

	CHECK(sched_getaffinity(0, sizeof(allowed), &allowed) == 0);
	for (int c = 0; c < CPU_SETSIZE && ncpu < 2; c++) {
		if (CPU_ISSET(c, &allowed)) {
			cpus[ncpu++] = c;
		}
	}
	if (ncpu < 2) {
		printf("SKIPPED: steer: kernel check: fewer than 2 usable CPUs\n");
		return 77;
	}
	setup(&g, cpus, 2);
	g.steer = RE_STEER_CPU;
	CHECK(re_group_program(&g, prog, &fp) == 1);
	lfd[0] = listen_one();
	lfd[1] = listen_one();
	if (setsockopt(lfd[0], SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &fp, sizeof(fp)) < 0) {
		printf("SKIPPED: steer: kernel check: SO_ATTACH_REUSEPORT_CBPF: %s\n", strerror(errno));
		return 77;
	}
	for (int k = 0; k < 2; k++) {
		CPU_ZERO(&one);
		CPU_SET(cpus[k], &one);
		CHECK(sched_setaffinity(0, sizeof(one), &one) == 0);
		for (int i = 0; i < 20; i++) {
			int w = lands(lfd, 2);

			if (w != k) {
				fprintf(stderr, "connection %d from CPU %d landed on listener %d\n", i,
					cpus[k], w);
			}
			CHECK(w == k);
		}
	}
	CHECK(sched_setaffinity(0, sizeof(allowed), &allowed) == 0);
	close(lfd[0]);
	close(lfd[1]);
	re_group_model_finish(&g.model);
	return 0;
}

int main(void)
{
	uint32_t t[3] = { 4, 5, 6 };
	int c[3] = { 1, 1, -1 };

	/* Too many or none: refused, never a program that indexes nothing. */
	CHECK(re_steer_build_cpu(t, c, 0, prog) == -EINVAL);
	CHECK(re_steer_build_cpu(t, c, 3, prog) > 0);
	model_checks();
	return kernel_check();
}

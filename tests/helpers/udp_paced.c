/* udp_paced: a paced, numbered UDP stream for the lifecycle tests
 * (tests/integration/test_udp_lifecycle.py). Python on two busy cores cannot keep
 * 16,000 datagrams/s in each direction steady; this can.
 *
 *   udp_paced HOST PORT FLOWS RATE SIZE MAX_SECONDS GRACE_MS
 *
 * FLOWS connected UDP sockets (each its own source port, so the kernel's reuseport
 * hash spreads them over the workers) each send RATE datagrams/s of SIZE bytes
 * (>= 16): flow, sequence number, and a payload derived from both, so a reply is
 * checked byte for byte. It prints "running" once every flow has had a reply, sends
 * until its stdin ends (or MAX_SECONDS pass), waits up to GRACE_MS for the replies
 * still owed, and prints one JSON line: sent, received, lost (never answered),
 * duplicated, corrupted, reordered, client_drops (this side's receive queues
 * overflowed: SO_RXQ_OVFL, so a loss there is not the server's), send_eagain, and up
 * to 10 lost (flow, seq) pairs. Exit 0 unless a system call failed (2) or usage (64).
 */
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAGIC 0x52554450u	/* "RUDP" */
#define HDR 16
#define MAX_FLOWS 64
#define MAX_SIZE 1472

struct flow {
	int fd;
	uint64_t sent;		/* next sequence number */
	uint64_t received;
	uint64_t highest;	/* highest sequence received + 1 */
	uint64_t dup, reordered;
	uint32_t drops;		/* SO_RXQ_OVFL: the socket's drop count so far */
	uint8_t *seen;		/* bitmap over sequence numbers */
};

static struct flow flows[MAX_FLOWS];
static unsigned nflows, size;
static uint64_t cap;		/* sequence numbers a flow may send */
static uint64_t corrupted;

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void fill(uint8_t *b, uint32_t flow, uint64_t seq)
{
	uint32_t m = MAGIC;

	memcpy(b, &m, 4);
	memcpy(b + 4, &flow, 4);
	memcpy(b + 8, &seq, 8);
	for (unsigned i = HDR; i < size; i++) {
		b[i] = (uint8_t)(flow * 131u + seq * 7u + i);
	}
}

static void die(const char *what)
{
	fprintf(stderr, "udp_paced: %s: %s\n", what, strerror(errno));
	exit(2);
}

/* Read every datagram queued on flow f. */
static void drain(uint32_t f)
{
	struct flow *fl = &flows[f];

	for (;;) {
		uint8_t b[MAX_SIZE + 1], want[MAX_SIZE];
		union {
			struct cmsghdr h;
			char buf[CMSG_SPACE(sizeof(uint32_t))];
		} cm;
		struct iovec iov = { .iov_base = b, .iov_len = sizeof(b) };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.buf,
				     .msg_controllen = sizeof(cm.buf) };
		uint32_t m, flow;
		uint64_t seq;
		ssize_t n = recvmsg(fl->fd, &mh, MSG_DONTWAIT);

		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				return;
			}
			if (errno == EINTR || errno == ECONNREFUSED) {
				continue;	/* an ICMP error from an earlier send */
			}
			die("recvmsg");
		}
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c != NULL; c = CMSG_NXTHDR(&mh, c)) {
			if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_RXQ_OVFL) {
				memcpy(&fl->drops, CMSG_DATA(c), sizeof(fl->drops));
			}
		}
		if ((size_t)n != size) {
			corrupted++;
			continue;
		}
		memcpy(&m, b, 4);
		memcpy(&flow, b + 4, 4);
		memcpy(&seq, b + 8, 8);
		if (m != MAGIC || flow != f || seq >= fl->sent) {
			corrupted++;
			continue;
		}
		fill(want, flow, seq);
		if (memcmp(b, want, size) != 0) {
			corrupted++;
			continue;
		}
		if (fl->seen[seq / 8] & (1u << (seq % 8))) {
			fl->dup++;
			continue;
		}
		fl->seen[seq / 8] |= (uint8_t)(1u << (seq % 8));
		fl->received++;
		if (seq + 1 < fl->highest) {
			fl->reordered++;
		} else {
			fl->highest = seq + 1;
		}
	}
}

static int open_flow(const struct addrinfo *ai)
{
	int one = 1, big = 4 << 20;
	int fd = socket(ai->ai_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0) {
		die("socket");
	}
	/* A large receive queue so that this side does not drop; root may exceed
	 * net.core.rmem_max. */
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof(big)) < 0) {
		(void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
	}
	if (setsockopt(fd, SOL_SOCKET, SO_RXQ_OVFL, &one, sizeof(one)) < 0) {
		die("SO_RXQ_OVFL");
	}
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
		die("connect");
	}
	return fd;
}

int main(int argc, char **argv)
{
	struct addrinfo hints = { .ai_socktype = SOCK_DGRAM, .ai_flags = AI_NUMERICHOST };
	struct addrinfo *ai;
	struct pollfd pfd[MAX_FLOWS + 1];
	uint64_t rate, max_ns, grace_ns, start, total = 0, eagain = 0;
	bool announced = false, in_open = true;
	uint8_t b[MAX_SIZE];

	if (argc != 8) {
		fprintf(stderr, "usage: udp_paced HOST PORT FLOWS RATE SIZE MAX_SECONDS GRACE_MS\n");
		return 64;
	}
	nflows = (unsigned)strtoul(argv[3], NULL, 10);
	rate = strtoull(argv[4], NULL, 10);
	size = (unsigned)strtoul(argv[5], NULL, 10);
	max_ns = strtoull(argv[6], NULL, 10) * 1000000000u;
	grace_ns = strtoull(argv[7], NULL, 10) * 1000000u;
	if (nflows == 0 || nflows > MAX_FLOWS || rate == 0 || size < HDR || size > MAX_SIZE ||
	    getaddrinfo(argv[1], argv[2], &hints, &ai) != 0) {
		fprintf(stderr, "udp_paced: bad arguments\n");
		return 64;
	}
	cap = rate * (max_ns / 1000000000u) + 64;
	for (unsigned f = 0; f < nflows; f++) {
		flows[f].fd = open_flow(ai);
		flows[f].seen = calloc(cap / 8 + 1, 1);
		if (flows[f].seen == NULL) {
			die("calloc");
		}
		pfd[f].fd = flows[f].fd;
		pfd[f].events = POLLIN;
	}
	freeaddrinfo(ai);
	pfd[nflows].fd = 0;
	pfd[nflows].events = POLLIN;

	start = now_ns();
	for (;;) {
		uint64_t t = now_ns() - start;
		/* Datagrams due by now over all flows, evenly spaced. */
		uint64_t due = (uint64_t)((double)t * (double)(rate * nflows) / 1e9);
		struct timespec ts = { 0, 500000 };	/* pacing step: 0.5 ms */

		if (t >= max_ns || !in_open) {
			break;
		}
		while (total < due) {
			struct flow *fl = &flows[total % nflows];

			if (fl->sent >= cap) {
				break;
			}
			fill(b, (uint32_t)(total % nflows), fl->sent);
			if (send(fl->fd, b, size, MSG_DONTWAIT) < 0) {
				if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) {
					eagain++;
					break;	/* try again next step */
				}
				if (errno != ECONNREFUSED && errno != EINTR) {
					die("send");
				}
				continue;	/* an ICMP error of an earlier datagram */
			}
			fl->sent++;
			total++;
		}
		if (ppoll(pfd, nflows + 1, &ts, NULL) < 0 && errno != EINTR) {
			die("ppoll");
		}
		for (unsigned f = 0; f < nflows; f++) {
			if (pfd[f].revents) {
				drain(f);
			}
		}
		if (pfd[nflows].revents) {
			char line[64];

			/* Any input or its end stops the stream. */
			(void)!read(0, line, sizeof(line));
			in_open = false;
		}
		if (!announced) {
			unsigned ok = 0;

			for (unsigned f = 0; f < nflows; f++) {
				ok += flows[f].received > 0;
			}
			if (ok == nflows) {
				printf("running\n");
				fflush(stdout);
				announced = true;
			}
		}
	}

	/* The replies still owed: wait for them, up to the grace. */
	{
		uint64_t until = now_ns() + grace_ns;

		pfd[nflows].fd = -1;
		for (;;) {
			uint64_t got = 0, now = now_ns();
			struct timespec ts = { 0, 10000000 };

			for (unsigned f = 0; f < nflows; f++) {
				got += flows[f].received;
			}
			if (got == total || now >= until) {
				break;
			}
			if (ppoll(pfd, nflows, &ts, NULL) < 0 && errno != EINTR) {
				die("ppoll");
			}
			for (unsigned f = 0; f < nflows; f++) {
				if (pfd[f].revents) {
					drain(f);
				}
			}
		}
	}

	{
		uint64_t received = 0, dup = 0, reord = 0, drops = 0;
		unsigned nlost = 0;

		printf("{\"sent\":%llu", (unsigned long long)total);
		for (unsigned f = 0; f < nflows; f++) {
			received += flows[f].received;
			dup += flows[f].dup;
			reord += flows[f].reordered;
			drops += flows[f].drops;
		}
		printf(",\"received\":%llu,\"lost\":%llu,\"duplicated\":%llu,\"corrupted\":%llu,"
		       "\"reordered\":%llu,\"client_drops\":%llu,\"send_eagain\":%llu,\"first_lost\":[",
		       (unsigned long long)received, (unsigned long long)(total - received),
		       (unsigned long long)dup, (unsigned long long)corrupted,
		       (unsigned long long)reord, (unsigned long long)drops,
		       (unsigned long long)eagain);
		for (unsigned f = 0; f < nflows && nlost < 10; f++) {
			for (uint64_t s = 0; s < flows[f].sent && nlost < 10; s++) {
				if (!(flows[f].seen[s / 8] & (1u << (s % 8)))) {
					printf("%s[%u,%llu]", nlost ? "," : "", f, (unsigned long long)s);
					nlost++;
				}
			}
		}
		printf("],\"per_flow_sent\":[");
		for (unsigned f = 0; f < nflows; f++) {
			printf("%s%llu", f ? "," : "", (unsigned long long)flows[f].sent);
		}
		printf("]}\n");
	}
	return 0;
}

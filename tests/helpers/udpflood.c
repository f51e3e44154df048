/* udpflood: send UDP datagrams to a loopback echo as fast as sendmmsg allows, for a
 * bounded count and time, never reading the replies (the kernel drops them at this
 * socket's small receive buffer). Used by tests/integration/test_udp.py to show that
 * a UDP flood on a worker does not starve its TCP connections.
 *
 * usage: udpflood HOST PORT SIZE MAX_DATAGRAMS MAX_SECONDS
 * Prints "sent N" and exits 0; exits 1 on a socket error, 2 on bad arguments.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	struct mmsghdr msg[BATCH];
	struct iovec iov;
	static char buf[65536];
	unsigned long long max, sent = 0;
	double until;
	int fd, size, small = 4096;

	if (argc != 6) {
		fprintf(stderr, "usage: udpflood HOST PORT SIZE MAX_DATAGRAMS MAX_SECONDS\n");
		return 2;
	}
	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, argv[1], &((struct sockaddr_in *)&ss)->sin_addr) == 1) {
		((struct sockaddr_in *)&ss)->sin_family = AF_INET;
		((struct sockaddr_in *)&ss)->sin_port = htons((unsigned short)atoi(argv[2]));
		sl = sizeof(struct sockaddr_in);
	} else if (inet_pton(AF_INET6, argv[1], &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1) {
		((struct sockaddr_in6 *)&ss)->sin6_family = AF_INET6;
		((struct sockaddr_in6 *)&ss)->sin6_port = htons((unsigned short)atoi(argv[2]));
		sl = sizeof(struct sockaddr_in6);
	} else {
		fprintf(stderr, "udpflood: bad address %s\n", argv[1]);
		return 2;
	}
	size = atoi(argv[3]);
	max = strtoull(argv[4], NULL, 10);
	until = now_s() + atof(argv[5]);
	if (size < 0 || size > (int)sizeof(buf)) {
		fprintf(stderr, "udpflood: bad size\n");
		return 2;
	}
	fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)) < 0 ||
	    connect(fd, (struct sockaddr *)&ss, sl) < 0) {
		perror("udpflood: socket");
		return 1;
	}
	memset(buf, 'f', sizeof(buf));
	iov.iov_base = buf;
	iov.iov_len = (size_t)size;
	memset(msg, 0, sizeof(msg));
	for (int i = 0; i < BATCH; i++) {
		msg[i].msg_hdr.msg_iov = &iov;
		msg[i].msg_hdr.msg_iovlen = 1;
	}
	while (sent < max && now_s() < until) {
		unsigned n = max - sent < BATCH ? (unsigned)(max - sent) : BATCH;
		int r = sendmmsg(fd, msg, n, 0);

		if (r < 0) {
			if (errno == EINTR || errno == ENOBUFS) {
				continue;
			}
			perror("udpflood: sendmmsg");
			return 1;
		}
		sent += (unsigned)r;
	}
	printf("sent %llu\n", sent);
	return 0;
}

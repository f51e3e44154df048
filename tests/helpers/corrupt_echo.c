/*
 * corrupt-echo: a single-threaded TCP echo server for tests only.  It flips
 * (XOR 0xff) one byte in every N it echoes, counted across all connections,
 * so that a verifying client has something to find; --every 0 echoes
 * faithfully.  One thread owns everything; SIGTERM or SIGINT ends it (exit 0).
 *
 *   corrupt-echo [--bind ADDR] [--port P] [--every N]
 *     --bind ADDR   IPv4 or IPv6 literal, default 127.0.0.1
 *     --port P      default 0 (ephemeral); prints
 *                   "corrupt-echo: listening on ADDR:PORT" once bound
 *     --every N     flip the N-th, 2N-th, ... byte echoed, default 100000;
 *                   0 = no corruption
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF_SIZE	(64 * 1024)
#define MAX_EVENTS	64

struct client {
	int fd;
	size_t len;	/* bytes in buf still to write back */
	size_t off;	/* of which already written */
	uint8_t buf[BUF_SIZE];
};

static volatile sig_atomic_t stop;
static uint64_t every;
static uint64_t echoed;	/* bytes echoed so far, all connections */

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

/* Flips the bytes of @buf whose global position is a multiple of @every. */
static void corrupt(uint8_t *buf, size_t n)
{
	uint64_t i;

	if (every != 0) {
		for (i = every - 1 - echoed % every; i < n; i += every) {
			buf[i] ^= 0xff;
		}
	}
	echoed += n;
}

static void client_destroy(struct client *c)
{
	if (c == NULL) {
		return;
	}
	(void)close(c->fd);	/* also leaves the epoll set */
	free(c);
}

static int set_events(int epfd, struct client *c, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = c };

	return epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0 ? -errno : 0;
}

/* Writes back what is pending; returns 0 when done, 1 when the socket is
 * full (wait for EPOLLOUT), -errno on error. */
static int flush_client(struct client *c)
{
	while (c->off < c->len) {
		ssize_t n = send(c->fd, c->buf + c->off, c->len - c->off, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR) {
				continue;
			}
			return errno == EAGAIN ? 1 : -errno;
		}
		c->off += (size_t)n;
	}
	c->off = 0;
	c->len = 0;
	return 0;
}

/* Level-triggered: one read per readiness, echo it, stop reading while the
 * peer does not take our writes. */
static int on_client(int epfd, struct client *c, uint32_t events)
{
	int r;

	if (c->len > 0) {
		r = flush_client(c);
		if (r != 0) {
			return r < 0 ? r : 0;
		}
		return set_events(epfd, c, EPOLLIN);
	}
	if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
		return 0;
	}
	for (;;) {
		ssize_t n = recv(c->fd, c->buf, BUF_SIZE, 0);

		if (n == 0) {
			return -ECONNRESET;
		}
		if (n < 0) {
			if (errno == EINTR) {
				continue;
			}
			return errno == EAGAIN ? 0 : -errno;
		}
		corrupt(c->buf, (size_t)n);
		c->len = (size_t)n;
		r = flush_client(c);
		if (r < 0) {
			return r;
		}
		if (r > 0) {
			return set_events(epfd, c, EPOLLOUT);
		}
		return 0;
	}
}

static void accept_all(int epfd, int lfd)
{
	for (;;) {
		struct epoll_event ev;
		struct client *c;
		int one = 1;
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED) {
				fprintf(stderr, "corrupt-echo: accept: %s\n", strerror(errno));
			}
			return;
		}
		c = calloc(1, sizeof(*c));
		if (c == NULL) {
			(void)close(fd);
			continue;
		}
		c->fd = fd;
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		ev.events = EPOLLIN;
		ev.data.ptr = c;
		if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
			client_destroy(c);
		}
	}
}

static int listen_on(const char *host, unsigned port, char *ret_name, size_t name_len)
{
	struct sockaddr_storage ss;
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
	socklen_t len;
	int one = 1, fd, r;

	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
		len = sizeof(*sin);
	} else if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		len = sizeof(*sin6);
	} else {
		return -EINVAL;
	}
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		return -errno;
	}
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, 4096) < 0 ||
	    getsockname(fd, (struct sockaddr *)&ss, &len) < 0) {
		r = -errno;	/* before close() can clobber errno */
		(void)close(fd);
		return r;
	}
	(void)snprintf(ret_name, name_len, ss.ss_family == AF_INET6 ? "[%s]:%u" : "%s:%u",
		       host, ss.ss_family == AF_INET6 ? ntohs(sin6->sin6_port) :
		       ntohs(sin->sin_port));
	return fd;
}

static int parse_num(const char *flag, const char *s, unsigned long long max,
		     unsigned long long *ret_v)
{
	unsigned long long v;
	char *end;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (*s < '0' || *s > '9' || *end != '\0' || errno != 0 || v > max) {
		fprintf(stderr, "corrupt-echo: %s: invalid value '%s'\n", flag, s);
		return -EINVAL;
	}
	*ret_v = v;
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "bind", required_argument, NULL, 'b' },
		{ "port", required_argument, NULL, 'p' },
		{ "every", required_argument, NULL, 'e' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct epoll_event evs[MAX_EVENTS];
	struct sigaction sa;
	sigset_t block, waitmask;
	const char *host = "127.0.0.1";
	unsigned long long port = 0, v;
	char name[80];
	int lfd, epfd, opt, i, n;

	every = 100000;
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case 'b':
			host = optarg;
			break;
		case 'p':
			if (parse_num("--port", optarg, 65535, &port) < 0) {
				return 2;
			}
			break;
		case 'e':
			if (parse_num("--every", optarg, UINT64_MAX, &v) < 0) {
				return 2;
			}
			every = v;
			break;
		case 'h':
			puts("usage: corrupt-echo [--bind ADDR] [--port P] [--every N]\n"
			     "  --bind ADDR  default 127.0.0.1\n"
			     "  --port P     default 0 (ephemeral)\n"
			     "  --every N    flip every N-th echoed byte, default 100000, 0 = never");
			return 0;
		default:
			return 2;
		}
	}

	/* SIGTERM stays blocked except inside epoll_pwait(): no lost wake-up. */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	(void)sigaction(SIGTERM, &sa, NULL);
	(void)sigaction(SIGINT, &sa, NULL);
	(void)signal(SIGPIPE, SIG_IGN);
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	(void)sigprocmask(SIG_BLOCK, &block, &waitmask);
	sigdelset(&waitmask, SIGTERM);
	sigdelset(&waitmask, SIGINT);

	lfd = listen_on(host, (unsigned)port, name, sizeof(name));
	if (lfd < 0) {
		fprintf(stderr, "corrupt-echo: listen %s port %llu: %s\n", host, port,
			strerror(-lfd));
		return 1;
	}
	epfd = epoll_create1(EPOLL_CLOEXEC);
	if (epfd < 0) {
		fprintf(stderr, "corrupt-echo: epoll_create1: %s\n", strerror(errno));
		return 1;
	}
	{
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };

		if (epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &ev) < 0) {
			fprintf(stderr, "corrupt-echo: epoll_ctl: %s\n", strerror(errno));
			return 1;
		}
	}
	printf("corrupt-echo: listening on %s\n", name);
	(void)fflush(stdout);

	while (!stop) {
		n = epoll_pwait(epfd, evs, MAX_EVENTS, -1, &waitmask);
		if (n < 0) {
			if (errno == EINTR) {
				continue;
			}
			fprintf(stderr, "corrupt-echo: epoll_pwait: %s\n", strerror(errno));
			return 1;
		}
		for (i = 0; i < n; i++) {
			struct client *c = evs[i].data.ptr;

			if (c == NULL) {
				accept_all(epfd, lfd);
			} else if (on_client(epfd, c, evs[i].events) < 0) {
				client_destroy(c);
			}
		}
	}
	return 0;
}

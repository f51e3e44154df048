/* ctlclient: control-protocol client, blocking or driven by an event loop. */
#include "ctlclient.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

void re_ctlclient_init(struct re_ctlclient *c, size_t max_reply)
{
	c->fd = -1;
	re_strbuf_init(&c->in, max_reply);
	re_strbuf_init(&c->reply, max_reply);
}

void re_ctlclient_finish(struct re_ctlclient *c)
{
	if (c->fd >= 0) {
		(void)close(c->fd);
		c->fd = -1;
	}
	re_strbuf_finish(&c->in);
	re_strbuf_finish(&c->reply);
}

int re_ctlclient_connect(struct re_ctlclient *c, const char *path, int nonblock)
{
	struct sockaddr_un sun;
	int fd, r;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun.sun_path)) {
		return -ENAMETOOLONG;
	}
	memcpy(sun.sun_path, path, strlen(path));
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);
	if (fd < 0) {
		return -errno;
	}
	/* A Unix stream connect completes at once or fails (EAGAIN: backlog full). */
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		r = -errno;
		(void)close(fd);
		return r;
	}
	c->fd = fd;
	return 0;
}

static int send_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

		if (w < 0) {
			if (errno == EINTR) {
				continue;
			}
			return -errno;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int re_ctlclient_send(struct re_ctlclient *c, const char *cmd)
{
	int r = send_all(c->fd, cmd, strlen(cmd));

	return r < 0 ? r : send_all(c->fd, "\n", 1);
}

/* A reply ends at "\n\n" where the first "\n" ends its last line (or at a leading
 * "\n": the empty reply). */
static int take_reply(struct re_ctlclient *c)
{
	for (size_t i = 0; i < c->in.len; i++) {
		if (c->in.data[i] == '\n' && (i == 0 || c->in.data[i - 1] == '\n')) {
			re_strbuf_reset(&c->reply);
			re_strbuf_append(&c->reply, c->in.data, i);
			re_strbuf_consume(&c->in, i + 1);
			return c->reply.oom ? -ENOMEM : 1;
		}
	}
	return 0;
}

int re_ctlclient_recv(struct re_ctlclient *c)
{
	char buf[16384];
	ssize_t n;
	int r = take_reply(c);

	if (r != 0) {
		return r;
	}
	do {
		n = recv(c->fd, buf, sizeof(buf), 0);
	} while (n < 0 && errno == EINTR);
	if (n == 0) {
		return -EPIPE;
	}
	if (n < 0) {
		return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
	}
	re_strbuf_append(&c->in, buf, (size_t)n);
	if (c->in.oom) {
		return -ENOMEM;
	}
	return take_reply(c);
}

int re_ctlclient_roundtrip(struct re_ctlclient *c, const char *cmd, int timeout_ms)
{
	int r = re_ctlclient_send(c, cmd);

	while (r == 0) {
		struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
		int n = poll(&pfd, 1, timeout_ms);

		if (n == 0) {
			return -ETIMEDOUT;
		}
		if (n < 0) {
			if (errno == EINTR) {
				continue;
			}
			return -errno;
		}
		r = re_ctlclient_recv(c);
	}
	return r < 0 ? r : 0;
}

int re_ctlclient_ok(const struct re_ctlclient *c)
{
	return c->reply.len >= 2 && memcmp(c->reply.data, "OK", 2) == 0;
}

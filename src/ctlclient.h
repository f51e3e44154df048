/* ctlclient: the client side of the control protocol (one command line, a reply of
 * lines ended by an empty line), shared by reuseecho-ctl (blocking, through
 * re_ctlclient_roundtrip) and the takeover (non-blocking: the supervisor's loop
 * watches the fd and calls re_ctlclient_recv when it is readable).
 * Single owner, no locking.
 */
#ifndef REUSEECHO_SRC_CTLCLIENT_H
#define REUSEECHO_SRC_CTLCLIENT_H

#include <stddef.h>

#include "strbuf.h"

struct re_ctlclient {
	int fd;			/* -1 when closed */
	struct re_strbuf in;	/* received bytes not yet returned as a reply */
	struct re_strbuf reply;	/* the last complete reply, without its empty line */
};

/* max_reply bounds one reply (0: unbounded). */
void re_ctlclient_init(struct re_ctlclient *c, size_t max_reply);
/* Closes the connection if open and frees the buffers. */
void re_ctlclient_finish(struct re_ctlclient *c);

/* Connect to the control socket at path; nonblock selects a non-blocking fd.
 * Returns 0 or -errno. */
int re_ctlclient_connect(struct re_ctlclient *c, const char *path, int nonblock)
	__attribute__((warn_unused_result));

/* Send "cmd\n". A command is short, so it fits an empty socket buffer even on a
 * non-blocking fd; anything else is an error. Returns 0 or -errno. */
int re_ctlclient_send(struct re_ctlclient *c, const char *cmd) __attribute__((warn_unused_result));

/* Read what is available (one recv) and look for a complete reply. Returns 1 when
 * c->reply holds one, 0 when more is needed (non-blocking: wait for POLLIN), or
 * -errno (-EPIPE: the server closed first, -ENOMEM: reply over the bound). */
int re_ctlclient_recv(struct re_ctlclient *c) __attribute__((warn_unused_result));

/* Blocking: send cmd and wait up to timeout_ms for its reply in c->reply.
 * Returns 0 or -errno (-ETIMEDOUT). */
int re_ctlclient_roundtrip(struct re_ctlclient *c, const char *cmd, int timeout_ms)
	__attribute__((warn_unused_result));

/* True when c->reply is an "OK" reply. */
int re_ctlclient_ok(const struct re_ctlclient *c);

#endif

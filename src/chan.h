/* chan: the request channel from the control thread to the supervisor (the only
 * thread allowed to publish RCU updates, spawn or retire workers) and back.
 * Two mutex-protected queues and two eventfd doorbells; used a few times a second at
 * most, never on the data path.
 */
#ifndef REUSEECHO_SRC_CHAN_H
#define REUSEECHO_SRC_CHAN_H

#include <pthread.h>
#include <stdint.h>

#include "ctlproto.h"

/* A reply is one line; the longest is `listeners` during a takeover: the port and up
 * to 2 x 1024 members of up to 12 characters each. */
#define RE_REQUEST_REPLY_MAX (32 + 2 * 1024 * 12)

struct re_request {
	struct re_request *next;
	struct re_ctl_cmd cmd;
	void *client;		/* the requester's handle, opaque to the supervisor */
	uint64_t client_gen;
	int status;		/* 0 = OK, else -errno: reply is "ERR <reply>" */
	char reply[RE_REQUEST_REPLY_MAX];	/* one line, no newline */
};

struct re_chan {
	pthread_mutex_t lock;
	struct re_request *pending;	/* control -> supervisor, FIFO */
	struct re_request **pending_tail;
	struct re_request *done;	/* supervisor -> control, FIFO */
	struct re_request **done_tail;
	int sup_fd;			/* supervisor's doorbell (eventfd) */
	int ctl_fd;			/* control thread's doorbell (eventfd) */
};

/* Both eventfds are created and later closed by the caller (the supervisor). */
int re_chan_init(struct re_chan *ch, int sup_fd, int ctl_fd) __attribute__((warn_unused_result));
/* Frees queued requests. Context: after both threads stopped using it. */
void re_chan_finish(struct re_chan *ch);

/* Context: control thread. Takes ownership of r. */
void re_chan_submit(struct re_chan *ch, struct re_request *r);
/* Context: supervisor. Returns the queued requests in order (a list), or NULL. */
struct re_request *re_chan_take_pending(struct re_chan *ch);
/* Context: supervisor. Hands r back with status and reply set. */
void re_chan_complete(struct re_chan *ch, struct re_request *r);
/* Context: control thread. Returns the completed requests in order, or NULL. */
struct re_request *re_chan_take_done(struct re_chan *ch);

#endif

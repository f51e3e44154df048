/* control: the control thread. Serves the control socket (line protocol and HTTP GET)
 * and the optional TCP metrics listener on its own epoll instance, each with its own
 * client budget, so a slow or hostile scraper never delays the supervisor or a worker
 * and never crowds out the admin socket. Reads statistics as a QSBR
 * reader; changes go to the supervisor through the request channel.
 * The supervisor creates, starts, stops and destroys it; the thread owns its fds.
 */
#ifndef REUSEECHO_SRC_CONTROL_H
#define REUSEECHO_SRC_CONTROL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "chan.h"
#include "config.h"
#include "net.h"
#include "report.h"
#include "stats.h"

struct re_control_params {
	const char *path;		/* unix socket path, NULL = none */
	mode_t mode;			/* permission bits it is created with */
	bool replace_live;		/* takeover: replace the old instance's socket */
	bool metrics;			/* serve HTTP on metrics_addr too */
	struct re_addr metrics_addr;
	uint32_t client_timeout_ms;	/* idle control clients are closed */
	struct re_stats *stats;
	struct re_runtime **runtime;
	struct re_chan *chan;
	int notify_fd;			/* supervisor's doorbell: state changes */
	const char *version;
	struct timespec started;	/* CLOCK_MONOTONIC at start-up */
	char address[80];		/* "0.0.0.0:7007" */
	unsigned port;
	int backlog;
	bool udp;			/* --udp */
	uint32_t udp_rcvbuf;		/* --udp-rcvbuf as asked */
	const char *service;		/* --service: "echo", "discard" or "chargen" */
	const char *steer;		/* --steer: "hash" or "cpu" */
	struct re_features features;
	bool debug_hooks;		/* accept `debug stall` */
};

enum re_control_state {
	RE_CONTROL_STARTING = 0,
	RE_CONTROL_RUNNING,
	RE_CONTROL_FAILED,
	RE_CONTROL_EXITED,
};

struct re_control;

/* NULL with errno set on failure. The wake eventfd is the channel's ctl_fd.
 * Context: supervisor. */
struct re_control *re_control_create(const struct re_control_params *params);
int re_control_start(struct re_control *c) __attribute__((warn_unused_result));
enum re_control_state re_control_state(const struct re_control *c);
/* After RE_CONTROL_FAILED: a one-line description ("bind /run/x.sock: ..."). */
const char *re_control_error(const struct re_control *c);
/* Ask the thread to close everything and exit. */
void re_control_stop(struct re_control *c);
/* Join (if started) and free. Accepts NULL. */
void re_control_destroy(struct re_control *c);

/* Remove the control socket's path now, if the thread bound it and the path is still
 * that socket (same device and inode: a takeover successor may own the path by now).
 * Only lstat and unlink, on data fixed once the socket was bound: fit for the path
 * that _exit()s at once (a second signal). Accepts NULL. Context: any thread. */
void re_control_unlink_now(const struct re_control *c);

#endif

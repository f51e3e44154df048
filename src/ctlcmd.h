/* ctlcmd: the control commands. Turns one complete line of the line protocol, or one
 * complete HTTP request head, into its reply, built from a statistics snapshot (read
 * as a QSBR reader) or handed back as a request for the supervisor. Knows nothing of
 * sockets: the control engine (control.c) owns the clients and calls these.
 * Context: the control thread only (it owns the snapshot buffer and the netstat fd).
 */
#ifndef REUSEECHO_SRC_CTLCMD_H
#define REUSEECHO_SRC_CTLCMD_H

#include <stdbool.h>
#include <stddef.h>

#include "control.h"
#include "ctlproto.h"
#include "report.h"
#include "strbuf.h"

struct re_ctlcmd {
	const struct re_control_params *p;
	const struct re_control_counters *counters;	/* the engine's, shown in stats */
	int netstat_fd;			/* /proc/net/netstat, -1 = not available */
	struct re_worker_view *views;	/* snapshot buffer, grown on demand */
	size_t views_cap;
};

enum re_ctlcmd_outcome {
	RE_CTLCMD_REPLIED = 0,	/* the reply (possibly none, for a blank line) is in out */
	RE_CTLCMD_CLOSE,	/* the reply is in out; close once it is sent (quit) */
	RE_CTLCMD_SUBMIT,	/* *ret_cmd is for the supervisor; nothing is in out */
};

/* Caller-allocated; p and counters must outlive k. Opens /proc/net/netstat (a
 * failure only hides the migrate counters). Context: control thread. */
void re_ctlcmd_init(struct re_ctlcmd *k, const struct re_control_params *p,
		    const struct re_control_counters *counters);
/* Close and free what init and the commands acquired. Safe on a zeroed k. */
void re_ctlcmd_finish(struct re_ctlcmd *k);

/* Run one line (without its "\n") of the line protocol. A reply ends with the empty
 * line; a blank line gets no reply. Context: control thread. */
enum re_ctlcmd_outcome re_ctlcmd_line(struct re_ctlcmd *k, const char *line, size_t len,
				      struct re_strbuf *out, struct re_ctl_cmd *ret_cmd);

/* Answer one HTTP request head (head_len bytes, ending with its blank line) with a
 * complete "Connection: close" response. Context: control thread. */
void re_ctlcmd_http(struct re_ctlcmd *k, const char *head, size_t head_len,
		    struct re_strbuf *out);

/* "ERR <reason>" and the empty line. */
void re_ctlcmd_err(struct re_strbuf *out, const char *reason);
/* A complete error response, "error <status>" as its body. */
void re_ctlcmd_http_error(struct re_strbuf *out, int status);

#endif

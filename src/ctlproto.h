/* ctlproto: parsing of the control protocol, pure and I/O free so that libFuzzer can
 * drive it: command lines ("set max-conns 100") and HTTP/1.x request heads.
 * Any thread may call these.
 */
#ifndef REUSEECHO_SRC_CTLPROTO_H
#define REUSEECHO_SRC_CTLPROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "reuseecho/control.h"

enum re_ctl_verb {
	RE_CTL_HELP,
	RE_CTL_STATS,
	RE_CTL_STATS_JSON,
	RE_CTL_WORKERS,
	RE_CTL_METRICS,
	RE_CTL_CONFIG,
	RE_CTL_SET,
	RE_CTL_THREADS,
	RE_CTL_FEATURES,
	RE_CTL_HEALTH,
	RE_CTL_SHUTDOWN,
	RE_CTL_QUIT,
	RE_CTL_DEBUG_STALL,	/* test builds only (-Ddebug_hooks=true) */
	RE_CTL_DEBUG_CLOSE_MID_BATCH,	/* test builds only: see re_worker_debug_close_mid_batch */
	RE_CTL_LISTENERS,	/* handover: SO_REUSEPORT group order of our listeners */
	RE_CTL_RETIRE_LISTENER,	/* handover: close one worker's listener, nothing lost */
	RE_CTL_RETIRE,		/* handover: every worker serves out its connections, exit */
};

enum re_ctl_key {
	RE_KEY_MAX_CONNS,
	RE_KEY_IDLE_TIMEOUT,
	RE_KEY_CONN_BUFFER,
	RE_KEY_DRAIN_TIMEOUT,
	RE_KEY_MAX_BUFFERED,
	RE_KEY_UDP_RATE,
	RE_KEY_STALL_STEER,
	RE_KEY_IMPAIR,		/* RE_KEY_IMPAIR + enum re_impair: delay ... accept */
};

struct re_ctl_cmd {
	enum re_ctl_verb verb;
	int key;		/* RE_CTL_SET: enum re_ctl_key, or RE_KEY_IMPAIR + enum re_impair */
	uint64_t value;		/* SET: parsed value (ms for timeouts); THREADS: count;
				 * DEBUG_STALL: milliseconds */
	int worker;		/* DEBUG_STALL, DEBUG_CLOSE_MID_BATCH, RETIRE_LISTENER */
};

/* Parse one command line (without its "\n"; a trailing "\r" and surrounding blanks
 * are ignored). Returns 1 for a command in *ret, 0 for a blank line (no reply), or
 * -EINVAL with a reason for "ERR <reason>" in err. */
int re_ctlproto_parse_line(const char *line, size_t len, struct re_ctl_cmd *ret, char *err,
			   size_t errlen) __attribute__((warn_unused_result));

/* The key's name as used by `set` and `config`. */
const char *re_ctlproto_key_name(int key);

/* True when the first line of a connection looks like an HTTP/1.x request line, so
 * the connection is served as HTTP. */
bool re_ctlproto_is_http(const char *line, size_t len);

struct re_http_req {
	bool head;		/* HEAD: headers only */
	int minor;		/* HTTP/1.<minor> */
	char path[128];		/* without query string */
};

/* Parse an HTTP request head (request line + headers, up to the blank line, which
 * may be absent at the end of buf). Returns 0, or an HTTP status for the error
 * reply: 400 (malformed), 405 (not GET/HEAD), 414 (path too long), 505 (not 1.x). */
int re_ctlproto_parse_http(const char *buf, size_t len, struct re_http_req *ret)
	__attribute__((warn_unused_result));

#endif

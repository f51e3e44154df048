/* config: the command line, parsed into an immutable start-up configuration, and the
 * small runtime-tunable part that the supervisor publishes with RCU.
 * Parsing is pure (no I/O but the error text it returns): the fuzz targets call it.
 */
#ifndef REUSEECHO_SRC_CONFIG_H
#define REUSEECHO_SRC_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chargen.h"
#include "cpu.h"
#include "log.h"

#define RE_DEFAULT_PORT 7007
#define RE_DEFAULT_BACKLOG 4096
#define RE_DEFAULT_CONN_BUFFER (256u * 1024u)
#define RE_DEFAULT_DRAIN_TIMEOUT_MS 10000u
#define RE_MAX_THREADS 1024
#define RE_MAX_UDP_RATE 100000000u
/* --udp-rcvbuf: each worker's UDP socket asks for this receive buffer. The kernel's
 * default (net.core.rmem_default, 208 KiB) holds about 200 small datagrams: one burst
 * of 50 flows x 8 in flight overflows it on a busy host. 4 MiB holds thousands; it is
 * kernel memory used only while a queue is full, bounded per worker. */
#define RE_DEFAULT_UDP_RCVBUF (4u * 1024u * 1024u)
#define RE_MIN_UDP_RCVBUF (64u * 1024u)
#define RE_MAX_UDP_RCVBUF (1024u * 1024u * 1024u)
#define RE_MIN_CONN_BUFFER 4096u
#define RE_MAX_CONN_BUFFER (1024u * 1024u * 1024u)
#define RE_MAX_TIMEOUT_MS (7u * 24u * 3600u * 1000u)	/* one week */
/* --max-buffered: 512 MiB holds 2,048 connections' full default --conn-buffer, far
 * more than any echo benchmark keeps backed up at once, yet it bounds a flood of
 * non-reading clients well below the memory of a machine that serves thousands of
 * connections. */
#define RE_DEFAULT_MAX_BUFFERED (512ull * 1024u * 1024u)
#define RE_MIN_MAX_BUFFERED (1024u * 1024u)
#define RE_MAX_MAX_BUFFERED (1ull << 40)		/* 1 TiB */
#define RE_MAX_STALL_STEER_MS 600000u			/* 10 minutes */
/* An idle worker's loop turns every 250 ms: a lower --stall-steer would steer around
 * healthy idle workers. */
#define RE_MIN_STALL_STEER_MS 300u
/* --stall-steer default: a worker's loop that has not turned for this long is steered
 * around. An idle loop turns every 250 ms (the worker's sampling period); the longest
 * busy turn measured under full load on 2 shared cores was 40 ms (stream + churn,
 * 400 connections). 250 + 40 ms, with a safety factor of 1.7, keeps healthy workers
 * clear and still steers by half a second into a stall. A worker the host does not
 * schedule for longer looks stalled too; steering around it for that long costs
 * nothing but the log line and the episode. */
#define RE_STALL_STEER_DEFAULT_MS 500u

/* Settings a worker re-reads every loop turn. Published by the supervisor with
 * rcu_assign_pointer, never modified after publication. */
struct re_runtime {
	uint64_t max_conns;		/* 0 = no limit but RLIMIT_NOFILE */
	uint32_t idle_timeout_ms;	/* 0 = off */
	uint32_t conn_buffer;		/* cap on unsent echo bytes per connection */
	uint32_t drain_timeout_ms;
	uint64_t max_buffered;		/* cap on all connections' buffers together */
	uint32_t udp_rate;		/* --udp-rate: datagrams/s per source; 0 = off */
	uint32_t stall_steer_ms;	/* steer around a loop stalled this long; 0 = off
					 * (read by the supervisor only) */
	/* Impairments (TCP echo): 0 = off. See enum re_impair. */
	uint32_t delay_ms;		/* hold every echoed chunk this long... */
	uint32_t jitter_ms;		/* ...plus or minus up to this, never reordering */
	uint64_t bandwidth;		/* echoed bytes per second per connection */
	uint64_t close_after;		/* echo this many bytes, then FIN */
	uint64_t reset_after;		/* echo this many bytes, then RST */
	uint32_t share;			/* percent of new connections impaired (100) */
	bool accept_off;		/* stop accepting; listeners stay bound */
};

/* The impairment settings, in the order `config`, `features` and the stats list them.
 * A key's value is a uint64_t: ms for delay and jitter, bytes (per second) for the
 * sizes, percent for share, 1 = off / 0 = on for accept. */
enum re_impair {
	RE_IMP_DELAY,
	RE_IMP_JITTER,
	RE_IMP_BANDWIDTH,
	RE_IMP_CLOSE_AFTER,
	RE_IMP_RESET_AFTER,
	RE_IMP_SHARE,
	RE_IMP_ACCEPT,
	RE_IMP_N,
};

#define RE_MAX_IMPAIR_DELAY_MS 60000u		/* delay and jitter: a minute */
#define RE_MAX_IMPAIR_BYTES (1ull << 50)	/* bandwidth, close-after, reset-after */

/* The key's name as `set`, `config` and the flags spell it ("close-after"). */
const char *re_impair_name(enum re_impair k);

/* Parse a value for key k ("50ms", "1M", "30", "off"). Returns 0, -EINVAL or
 * -ERANGE; *hint says what is expected. */
int re_impair_parse(enum re_impair k, const char *s, uint64_t *ret, const char **hint)
	__attribute__((warn_unused_result));

uint64_t re_impair_get(const struct re_runtime *rt, enum re_impair k);
void re_impair_set(struct re_runtime *rt, enum re_impair k, uint64_t v);

/* True when k is set to something other than its default. */
bool re_impair_on(const struct re_runtime *rt, enum re_impair k);

/* Any impairment of the echo data path (delay, jitter, bandwidth, close-after,
 * reset-after) is on: connections chosen by share take the impaired path. */
bool re_runtime_impaired(const struct re_runtime *rt);

/* Anything in force that makes the instance misbehave: an impairment of the echo
 * path, or accept off (share alone changes nothing). */
bool re_impair_active(const struct re_runtime *rt);

/* k's value as the replies and `config` print it: "50 ms", "1048576", "30", "off". */
void re_impair_format(const struct re_runtime *rt, enum re_impair k, char *buf, size_t len);

/* The active impairments as one word: "none", or "delay=50ms,jitter=5ms,share=30%". */
void re_impair_describe(const struct re_runtime *rt, char *buf, size_t len);

struct re_config {
	unsigned threads;		/* 0 = one per allowed CPU */
	char bind[128];
	unsigned port;
	struct re_cpuset cpus;		/* empty = every allowed CPU */
	bool cpus_set;
	bool no_pin;
	bool steer_cpu;			/* --steer cpu (default hash) */
	int backlog;
	bool udp;			/* --udp: UDP echo beside TCP */
	uint32_t udp_rcvbuf;		/* --udp-rcvbuf: bytes asked for; 0 = kernel default */
	enum re_service service;	/* --service: fixed for the process's life */
	struct re_runtime rt;
	enum re_log_level log_level;
	bool control_none;		/* --control none */
	char control[108];		/* --control PATH; empty = the default path */
	unsigned control_mode;		/* permission bits of the control socket */
	uint32_t control_timeout_ms;	/* idle control clients are closed */
	bool takeover;			/* --takeover: replace a live instance */
	char user[64];			/* --user: drop to this user once bound; "" = stay */
	bool metrics;			/* --metrics-listen given */
	char metrics_host[64];		/* loopback unless told otherwise */
	unsigned metrics_port;
};

enum {
	RE_CONFIG_RUN = 0,	/* parsed: start the server */
	RE_CONFIG_EXIT_OK = 1,	/* --help or --version printed: exit 0 */
};

/* Fill *cfg with defaults. */
void re_config_defaults(struct re_config *cfg);

/* Parse argv. Returns RE_CONFIG_RUN, RE_CONFIG_EXIT_OK (help/version text written to
 * out), or -EINVAL with a one-line message naming the flag in err (exit status 2).
 * Context: main thread, once (getopt_long keeps global state). */
int re_config_parse(struct re_config *cfg, int argc, char **argv, char *out, size_t outlen,
		    char *err, size_t errlen) __attribute__((warn_unused_result));

/* Value parsers shared with the control socket. Each returns 0 and writes *ret, or
 * -EINVAL (not a number, junk, bad suffix) / -ERANGE (outside [min, max]). */
int re_config_parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *ret)
	__attribute__((warn_unused_result));
/* "65536", "64K", "16M", "1G" (binary multiples, case-insensitive, optional "iB"/"B"). */
int re_config_parse_size(const char *s, uint64_t min, uint64_t max, uint64_t *ret)
	__attribute__((warn_unused_result));
/* Seconds as a decimal ("1", "0.25", up to millisecond precision) or with a unit
 * suffix "ms" / "s"; result in milliseconds. */
int re_config_parse_seconds(const char *s, uint64_t max_ms, uint64_t *ret_ms)
	__attribute__((warn_unused_result));

#endif

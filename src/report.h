/* report: formats a statistics snapshot for people and tools: human text, one-line
 * JSON, Prometheus text exposition 0.0.4, and a whitespace-separated workers table.
 * Pure functions of their input (no I/O, no clock, no globals): any thread may call
 * them, and the fuzz and unit tests do.
 *
 * Output never contains an empty line (the control protocol ends a reply with one).
 */
#ifndef REUSEECHO_SRC_REPORT_H
#define REUSEECHO_SRC_REPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "config.h"
#include "reuseecho/stats.h"
#include "strbuf.h"

enum re_worker_run_state {
	RE_VIEW_RUNNING = 0,
	RE_VIEW_DRAINING = 1,	/* retiring or shutting down: no longer accepting */
	RE_VIEW_STALLED = 2,	/* loop has not turned for a second */
};

struct re_worker_view {
	int id;
	int cpu;			/* -1 = not pinned */
	pid_t tid;
	uint32_t acceptq_len;
	uint32_t acceptq_max;
	enum re_worker_run_state state;
	struct re_stats_counters c;
};

struct re_features {
	bool reuseport;			/* SO_REUSEPORT accepted by the kernel */
	bool rdhup;			/* EPOLLRDHUP supported */
	bool cbpf;			/* SO_ATTACH_REUSEPORT_CBPF accepted */
	int migrate_req;		/* net.ipv4.tcp_migrate_req, -1 = not present */
	char kernel[64];		/* uname -r */
	char handover[24];		/* how a closing listener loses nothing: "cbpf",
					 * "cbpf+migrate", "migrate" or "none" */
	int64_t migrate_success;	/* TcpExt TcpMigrateReqSuccess, -1 = absent */
	int64_t migrate_failure;	/* TcpExt TcpMigrateReqFailure, -1 = absent */
	bool udp;			/* --udp: UDP echo served (a setting, fixed at start) */
	int64_t udp_rcvbuf;		/* a UDP socket's receive buffer as the kernel reports it
					 * (SO_RCVBUF), 0 without --udp */
	char service[12];		/* --service: "echo", "discard" or "chargen" */
};

/* The control thread's own counters (it is their only writer and their reader).
 * Index [RE_CONTROL_UNIX] is the Unix admin socket, [RE_CONTROL_TCP] --metrics-listen. */
enum re_control_listener {
	RE_CONTROL_UNIX = 0,
	RE_CONTROL_TCP = 1,
	RE_CONTROL_NLISTENERS = 2,
};

struct re_control_counters {
	uint64_t clients[RE_CONTROL_NLISTENERS];	/* gauge: connected now */
	uint64_t clients_limit[RE_CONTROL_NLISTENERS];	/* gauge: each listener's budget */
	uint64_t accepted[RE_CONTROL_NLISTENERS];
	uint64_t refused_busy;		/* unix: over budget, told "ERR busy" */
	uint64_t refused_peer;		/* unix: another uid (SO_PEERCRED) */
	uint64_t refused_tcp;		/* tcp: budget full of clients admitted this turn */
	uint64_t evicted;		/* tcp: longest-idle client closed for a new one */
	uint64_t header_timeouts;	/* tcp: request head not complete in time */
	uint64_t idle_timeouts;		/* unix: idle past --control-timeout */
	uint64_t accept_fd_limit[RE_CONTROL_NLISTENERS];	/* accept4: EMFILE/ENFILE */
	uint64_t accept_backoffs[RE_CONTROL_NLISTENERS];	/* listener paused 100 ms */
	uint64_t fd_reserve_uses;	/* reserve fds given up to accept an admin client */
	uint32_t fd_reserve_free;	/* gauge: reserve fds held now */
	uint32_t fd_reserve_size;	/* gauge: reserve fds wanted */
};

struct re_snapshot {
	const char *version;
	double uptime_s;
	char address[80];		/* "0.0.0.0:7007" or "[::]:7007" */
	unsigned port;
	size_t nworkers;
	struct re_worker_view *workers;	/* nworkers entries, ordered by id */
	struct re_stats_counters total;	/* live workers + retired */
	struct re_stats_counters retired;
	struct re_features features;
	struct re_control_counters control;	/* zero when no control thread runs */
	struct re_runtime runtime;	/* the runtime settings in force: every format shows
					 * its impairments (a zeroed one reads as share 0) */
};

struct re_imbalance {
	uint64_t max_accepted;	/* over live workers */
	uint64_t min_accepted;	/* over live workers: 0 while one has accepted none */
	size_t idle_workers;	/* live workers that have accepted none yet */
	double max_min;		/* max_accepted over the fewest accepted by a live worker
				 * that accepted at least one; 1 when none did. Always
				 * finite and >= 1: a worker started by a grow has
				 * accepted nothing yet, which is not infinite imbalance */
	double cv;		/* coefficient of variation of accepted (stddev / mean) over
				 * every live worker; 0 when mean == 0 */
};

/* Accepted-connection balance over the live workers in s (retired ones are not
 * compared). These are lifetime counts: right after a resize they compare old
 * workers with new ones; alert on per-worker rates instead (see the man page).
 * With no workers: max = min = 0, max_min = 1, cv = 0. Writes *ret.
 * Context: any thread. */
void re_report_imbalance(const struct re_snapshot *s, struct re_imbalance *ret);

/* "running", "draining", "stalled" ("unknown" for any other value). Static string. */
const char *re_report_state_name(enum re_worker_run_state st);

/* The impairment settings that differ from their defaults, as people read them, in
 * enum re_impair order: "delay 50 ms, jitter 10 ms, bandwidth 1048576, share 30%,
 * accept off" (values as re_impair_format prints them, share with "%"), or "none".
 * No newline. Context: any thread. */
void re_report_impairments(const struct re_runtime *rt, struct re_strbuf *out);

/* Each appends to out (check out->oom once at the end); each line ends with "\n" and
 * none is empty. address and kernel need not be NUL-terminated in their arrays.
 * Every counter of RE_STATS_COUNTERS appears in the text, JSON and Prometheus output.
 * Context: any thread. */

/* Human summary of s->total (live + retired): a title line, a few "title: name value,
 * ..." lines, "other: field value, ..." for a counter the layout does not name yet,
 * and a balance line. The second line is "impairments: " and re_report_impairments().
 * Layout may change; scripts should use JSON or Prometheus. */
void re_report_text(const struct re_snapshot *s, struct re_strbuf *out);

/* One line, one object: version, uptime_s, address, port, workers, total{},
 * per_worker[{id, cpu (null when unpinned), tid, state, acceptq_len, acceptq_max,
 * counters...}], retired{}, imbalance{max_accepted, min_accepted, max_min,
 * idle_workers, cv}, features{so_reuseport, epollrdhup, reuseport_cbpf,
 * tcp_migrate_req (null when absent), kernel, udp, udp_rcvbuf, service},
 * impairments{active (re_impair_active), delay_ms, jitter_ms, bandwidth,
 * close_after, reset_after, share, accept ("on"|"off")}, control{}. Counter keys are
 * the X-macro field names. total is live + retired and never drops; a sum over per_worker drops when
 * a worker retires (its counts move to retired). Integers print exactly, doubles
 * with %.6g, non-finite doubles as null. */
void re_report_json(const struct re_snapshot *s, struct re_strbuf *out);

/* Text exposition format 0.0.4. Each metric name is one block: one # HELP, one
 * # TYPE, then every sample of that name. Every entry of RE_STATS_COUNTERS gives two
 * families: reuseecho_<metric>[{<labels>}], the process total (counters: s->total,
 * live + retired, never drops; gauges: the sum over live workers), and
 * reuseecho_worker_<metric>{worker="<id>"[,<labels>]} per live worker, whose series
 * simply stop when the worker retires. No series ever takes over another's counts,
 * so sum(increase()) over either family is right across resizes. Then
 * accept_queue_length and accept_queue_limit {worker}, worker_info{worker,cpu ("-"
 * unpinned),tid,state} 1, worker_stalled{worker}, workers, uptime_seconds,
 * build_info{version} 1, accept_imbalance_ratio (re_imbalance.max_min: finite, >= 1),
 * accept_imbalance_cv, feature_info{so_reuseport,epollrdhup,reuseport_cbpf,
 * tcp_migrate_req ("absent" when -1),kernel,listener_handover,service,udp} 1,
 * tcp_migrate_req_total{result} (when known), impairment_active{kind} 0|1 for every
 * kind (delay, jitter, bandwidth, close_after, reset_after, accept_off),
 * impairment_share_ratio (share / 100), then the control thread's families. */
void re_report_prometheus(const struct re_snapshot *s, struct re_strbuf *out);

/* A header line and one line per live worker, fields separated by one or more
 * spaces (columns padded for people), raw cumulative integers, no units:
 *   id cpu tid state active accepted closed bytes_in bytes_out recv_calls send_calls
 *   acceptq acceptq_max steered steer_episodes steered_ms cpu_sampled cpu_local
 * cpu is "-" when unpinned; state as re_report_state_name(); closed is the sum of
 * every connections_closed_total counter; bytes_in/bytes_out are bytes_received/
 * bytes_sent; acceptq/acceptq_max the listener queue length and limit; steered (0/1),
 * steer_episodes and steered_ms the stall avoidance (stall_steered,
 * stall_steer_episodes, stall_steered_ms); cpu_sampled/cpu_local the locality sample
 * (incoming_cpu_sampled/incoming_cpu_local). The header
 * is stable: new columns, if ever, are appended. */
void re_report_workers(const struct re_snapshot *s, struct re_strbuf *out);

/* "key value" lines, values without spaces: so_reuseport yes|no, epollrdhup yes|no,
 * reuseport_cbpf yes|no, tcp_migrate_req <n>|absent, listener_handover, udp, udp_rcvbuf,
 * service, impairments (re_impair_describe of rt: "none" or "delay=50ms,share=30%"),
 * tcp_migrate_req_success/failure (when known), kernel <uname -r>|unknown. */
void re_report_features(const struct re_features *f, const struct re_runtime *rt,
			struct re_strbuf *out);

#endif

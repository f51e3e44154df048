/* ctlcmd: the control commands: each line-protocol command and each HTTP route,
 * answered from a statistics snapshot (copied as a QSBR reader, online only while
 * copying) or handed back to the engine as a request for the supervisor.
 * Context: the control thread only.
 */
#include "ctlcmd.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kfeatures.h"
#include "rcu.h"
#include "worker.h"

#define BODY_MAX (32u * 1024u * 1024u)	/* the largest reply body (a client's cap too) */

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* --- snapshot ------------------------------------------------------------------- */

static enum re_worker_run_state view_state(uint32_t st)
{
	switch (st) {
	case RE_BLOCK_DRAINING:
	case RE_BLOCK_RETIRING:
		return RE_VIEW_DRAINING;
	default:
		return RE_VIEW_RUNNING;
	}
}

/* Copy the registry into s (views owned by c). Returns 0 or -ENOMEM. Also reports
 * whether every worker is healthy for /healthz. */
static int take_snapshot(struct re_ctlcmd *k, struct re_snapshot *s, bool *ret_healthy,
			 char *why, size_t whylen)
{
	const struct re_stats_registry *reg;
	int64_t now = mono_ms();
	size_t running = 0;
	bool healthy = true;
	int r = 0;

	memset(s, 0, sizeof(*s));
	s->version = k->p->version;
	s->uptime_s = (double)(now - ((int64_t)k->p->started.tv_sec * 1000 +
				      k->p->started.tv_nsec / 1000000)) / 1000.0;
	snprintf(s->address, sizeof(s->address), "%s", k->p->address);
	s->port = k->p->port;
	s->features = k->p->features;
	re_kfeatures_read_migrate(k->netstat_fd, &s->features);
	s->control = *k->counters;
	if (why != NULL && whylen > 0) {
		why[0] = '\0';
	}

	re_rcu_thread_online();
	s->runtime = *re_rcu_dereference(*k->p->runtime);
	reg = re_rcu_dereference(k->p->stats->reg);
	if (reg->n > k->views_cap) {
		struct re_worker_view *nv = realloc(k->views, reg->n * sizeof(*nv));

		if (nv == NULL) {
			r = -ENOMEM;
			goto out;
		}
		k->views = nv;
		k->views_cap = reg->n;
	}
	s->workers = k->views;
	s->nworkers = reg->n;
	s->retired = reg->retired;
	s->total = reg->retired;
	for (size_t i = 0; i < reg->n; i++) {
		const struct re_stats_block *b = reg->blocks[i];
		struct re_worker_view *v = &k->views[i];
		uint32_t st = RE_LOAD_RELAXED(b->state);
		uint64_t beat = RE_LOAD_RELAXED(b->heartbeat_ms);

		v->id = b->worker_id;
		v->cpu = b->cpu;
		v->tid = RE_LOAD_RELAXED(b->tid);
		v->acceptq_len = RE_LOAD_RELAXED(b->acceptq_len);
		v->acceptq_max = RE_LOAD_RELAXED(b->acceptq_max);
		v->state = view_state(st);
		re_stats_snapshot(b, &v->c);
		re_stats_accumulate(&s->total, &v->c);
		if (st == RE_BLOCK_RUNNING && beat != 0 && now - (int64_t)beat > RE_STALL_MS) {
			v->state = RE_VIEW_STALLED;
			if (healthy && why != NULL) {
				snprintf(why, whylen, "worker %d loop stalled for %" PRId64 " ms", v->id,
					 now - (int64_t)beat);
			}
			healthy = false;
		} else if (st == RE_BLOCK_DRAINING) {
			if (healthy && why != NULL) {
				snprintf(why, whylen, "shutting down");
			}
			healthy = false;
		} else if (st == RE_BLOCK_RUNNING) {
			running++;
		}
	}
out:
	re_rcu_thread_offline();
	if (running == 0 && healthy) {
		healthy = false;
		if (why != NULL) {
			snprintf(why, whylen, "no worker running");
		}
	}
	if (ret_healthy != NULL) {
		*ret_healthy = healthy;
	}
	return r;
}

void re_ctlcmd_err(struct re_strbuf *out, const char *reason)
{
	re_strbuf_printf(out, "ERR %s\n\n", reason);
}

static void http_reply(struct re_strbuf *out, int status, const char *ctype, const char *body,
		       size_t blen, bool head)
{
	const char *text;

	switch (status) {
	case 200: text = "OK"; break;
	case 400: text = "Bad Request"; break;
	case 404: text = "Not Found"; break;
	case 405: text = "Method Not Allowed"; break;
	case 414: text = "URI Too Long"; break;
	case 431: text = "Request Header Fields Too Large"; break;
	case 500: text = "Internal Server Error"; break;
	case 503: text = "Service Unavailable"; break;
	case 505: text = "HTTP Version Not Supported"; break;
	default: text = "Error"; break;
	}
	re_strbuf_printf(out,
			 "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
			 "Cache-Control: no-store\r\nConnection: close\r\n%s\r\n",
			 status, text, ctype, blen, status == 405 ? "Allow: GET, HEAD\r\n" : "");
	if (!head) {
		re_strbuf_append(out, body, blen);
	}
}

void re_ctlcmd_http_error(struct re_strbuf *out, int status)
{
	char body[64];
	int n = snprintf(body, sizeof(body), "error %d\n", status);

	http_reply(out, status, "text/plain; charset=utf-8", body, (size_t)n, false);
}

/* --- commands ------------------------------------------------------------------------ */

static const char help_text[] =
	"commands (one per line; every reply ends with an empty line):\n"
	"  help                this list\n"
	"  stats               counters, human text (totals include retired workers)\n"
	"  stats json          the same as one JSON object\n"
	"  workers             per-worker table (raw cumulative values)\n"
	"  metrics             Prometheus text format 0.0.4\n"
	"  config              settings in force\n"
	"  set KEY VALUE       change max-conns, idle-timeout, conn-buffer, max-buffered,\n"
	"                      drain-timeout, udp-rate or stall-steer; or an impairment:\n"
	"                      delay, jitter, bandwidth, close-after, reset-after, share,\n"
	"                      accept\n"
	"  threads N           grow or shrink the worker set while serving\n"
	"  features            kernel features reuseecho relies on\n"
	"  health              OK when every worker runs\n"
	"  shutdown            drain and exit, as on SIGTERM\n"
	"  listeners           (handover) SO_REUSEPORT group order of our listeners\n"
	"  retire-listener ID  (handover) close worker ID's listener without losing a\n"
	"                      queued connection; it keeps serving its connections\n"
	"  retire              (handover) stop accepting, serve established connections\n"
	"                      until they close or the drain timeout passes, then exit\n"
	"  quit                close this connection\n"
	"HTTP GET on the same socket: /metrics /stats /healthz\n";

static void format_seconds(struct re_strbuf *sb, const char *key, uint32_t ms)
{
	if (ms % 1000 == 0) {
		re_strbuf_printf(sb, "%s %u\n", key, ms / 1000);
	} else {
		re_strbuf_printf(sb, "%s %u.%03u\n", key, ms / 1000, ms % 1000);
	}
}

static void reply_config(struct re_ctlcmd *k, struct re_strbuf *out)
{
	const struct re_runtime *rt;
	struct re_snapshot s;
	size_t live = 0;

	if (take_snapshot(k, &s, NULL, NULL, 0) < 0) {
		re_ctlcmd_err(out, "out of memory");
		return;
	}
	for (size_t i = 0; i < s.nworkers; i++) {
		live += s.workers[i].state != RE_VIEW_DRAINING;
	}
	re_strbuf_printf(out, "threads %zu\naddress %s\nbacklog %d\n", live, k->p->address,
			 k->p->backlog);
	re_rcu_thread_online();
	rt = re_rcu_dereference(*k->p->runtime);
	re_strbuf_printf(out, "max-conns %" PRIu64 "\n", rt->max_conns);
	format_seconds(out, "idle-timeout", rt->idle_timeout_ms);
	re_strbuf_printf(out, "conn-buffer %u\n", rt->conn_buffer);
	re_strbuf_printf(out, "max-buffered %" PRIu64 "\n", rt->max_buffered);
	format_seconds(out, "drain-timeout", rt->drain_timeout_ms);
	re_strbuf_printf(out, "udp %s\nudp-rate %" PRIu32 "\nudp-rcvbuf %" PRIu32 "\n",
			 k->p->udp ? "on" : "off", rt->udp_rate, k->p->udp_rcvbuf);
	re_strbuf_printf(out, "service %s\n", k->p->service != NULL ? k->p->service : "echo");
	format_seconds(out, "stall-steer", rt->stall_steer_ms);
	for (int i = 0; i < RE_IMP_N; i++) {
		char val[32];

		re_impair_format(rt, (enum re_impair)i, val, sizeof(val));
		re_strbuf_printf(out, "%s %s\n", re_impair_name((enum re_impair)i), val);
	}
	re_rcu_thread_offline();
	re_strbuf_printf(out, "steer %s\n", k->p->steer != NULL ? k->p->steer : "hash");
	re_strbuf_printf(out, "control %s\n\n", k->p->path ? k->p->path : "none");
}

typedef void (*report_fn)(const struct re_snapshot *s, struct re_strbuf *out);

static void reply_report(struct re_ctlcmd *k, struct re_strbuf *out, report_fn fn)
{
	struct re_snapshot s;

	if (take_snapshot(k, &s, NULL, NULL, 0) < 0) {
		re_ctlcmd_err(out, "out of memory");
		return;
	}
	fn(&s, out);
	re_strbuf_puts(out, "\n");
}

/* Test builds: arm worker id's next multi-event batch to close every connection
 * after its first connection event (see re_worker_debug_close_mid_batch). */
static void debug_close_mid_batch(struct re_ctlcmd *k, int id, struct re_strbuf *out)
{
	const struct re_stats_registry *reg;
	bool found = false;

	re_rcu_thread_online();
	reg = re_rcu_dereference(k->p->stats->reg);
	for (size_t i = 0; i < reg->n; i++) {
		found |= reg->blocks[i]->worker_id == id;
	}
	re_rcu_thread_offline();
	if (!found) {
		char why[64];

		snprintf(why, sizeof(why), "no worker %d", id);
		re_ctlcmd_err(out, why);
		return;
	}
	re_worker_debug_close_mid_batch(id);
	re_strbuf_printf(out, "OK worker %d closes its connections mid-batch\n\n", id);
}

enum re_ctlcmd_outcome re_ctlcmd_line(struct re_ctlcmd *k, const char *line, size_t len,
				      struct re_strbuf *out, struct re_ctl_cmd *ret_cmd)
{
	struct re_ctl_cmd cmd;
	char err[200];
	bool healthy;
	struct re_snapshot s;
	int r = re_ctlproto_parse_line(line, len, &cmd, err, sizeof(err));

	if (r < 0) {
		re_ctlcmd_err(out, err);
		return RE_CTLCMD_REPLIED;
	}
	if (r == 0) {
		return RE_CTLCMD_REPLIED;	/* blank line: nothing to answer */
	}
	switch (cmd.verb) {
	case RE_CTL_HELP:
		re_strbuf_puts(out, help_text);
		re_strbuf_puts(out, "\n");
		break;
	case RE_CTL_STATS:
		reply_report(k, out, re_report_text);
		break;
	case RE_CTL_STATS_JSON:
		reply_report(k, out, re_report_json);
		break;
	case RE_CTL_WORKERS:
		reply_report(k, out, re_report_workers);
		break;
	case RE_CTL_METRICS:
		reply_report(k, out, re_report_prometheus);
		break;
	case RE_CTL_FEATURES: {
		struct re_features f = k->p->features;
		struct re_runtime rt;

		re_kfeatures_read_migrate(k->netstat_fd, &f);
		re_rcu_thread_online();
		rt = *re_rcu_dereference(*k->p->runtime);
		re_rcu_thread_offline();
		re_report_features(&f, &rt, out);
		re_strbuf_puts(out, "\n");
		break;
	}
	case RE_CTL_CONFIG:
		reply_config(k, out);
		break;
	case RE_CTL_HEALTH:
		if (take_snapshot(k, &s, &healthy, err, sizeof(err)) < 0) {
			re_ctlcmd_err(out, "out of memory");
		} else if (healthy) {
			re_strbuf_puts(out, "OK\n\n");
		} else {
			re_ctlcmd_err(out, err);
		}
		break;
	case RE_CTL_QUIT:
		re_strbuf_puts(out, "OK bye\n\n");
		return RE_CTLCMD_CLOSE;
	case RE_CTL_DEBUG_CLOSE_MID_BATCH:
		if (!k->p->debug_hooks) {
			re_ctlcmd_err(out, "unknown command 'debug' (try 'help')");
			break;
		}
		debug_close_mid_batch(k, cmd.worker, out);
		break;
	case RE_CTL_DEBUG_STALL:
		if (!k->p->debug_hooks) {
			re_ctlcmd_err(out, "unknown command 'debug' (try 'help')");
			break;
		}
		*ret_cmd = cmd;
		return RE_CTLCMD_SUBMIT;
	case RE_CTL_SET:
	case RE_CTL_THREADS:
	case RE_CTL_SHUTDOWN:
	case RE_CTL_LISTENERS:
	case RE_CTL_RETIRE_LISTENER:
	case RE_CTL_RETIRE:
		*ret_cmd = cmd;
		return RE_CTLCMD_SUBMIT;
	}
	return RE_CTLCMD_REPLIED;
}

void re_ctlcmd_http(struct re_ctlcmd *k, const char *head, size_t head_len, struct re_strbuf *out)
{
	struct re_http_req req;
	struct re_snapshot s;
	struct re_strbuf body;
	bool healthy;
	char why[200];
	int status = re_ctlproto_parse_http(head, head_len, &req);

	if (status != 0) {
		re_ctlcmd_http_error(out, status);
		return;
	}
	re_strbuf_init(&body, BODY_MAX);
	if (take_snapshot(k, &s, &healthy, why, sizeof(why)) < 0) {
		re_ctlcmd_http_error(out, 500);
	} else if (strcmp(req.path, "/metrics") == 0) {
		re_report_prometheus(&s, &body);
		http_reply(out, 200, "text/plain; version=0.0.4; charset=utf-8", body.data, body.len,
			   req.head);
	} else if (strcmp(req.path, "/stats") == 0) {
		re_report_json(&s, &body);
		http_reply(out, 200, "application/json", body.data, body.len, req.head);
	} else if (strcmp(req.path, "/healthz") == 0) {
		if (healthy) {
			re_strbuf_puts(&body, "ok\n");
		} else {
			re_strbuf_printf(&body, "unhealthy: %s\n", why);
		}
		http_reply(out, healthy ? 200 : 503, "text/plain; charset=utf-8", body.data, body.len,
			   req.head);
	} else if (strcmp(req.path, "/") == 0) {
		re_strbuf_puts(&body, "reuseecho: /metrics /stats /healthz\n");
		http_reply(out, 200, "text/plain; charset=utf-8", body.data, body.len, req.head);
	} else {
		re_ctlcmd_http_error(out, 404);
	}
	if (body.oom) {
		re_strbuf_reset(out);
		re_ctlcmd_http_error(out, 500);
	}
	re_strbuf_finish(&body);
}

void re_ctlcmd_init(struct re_ctlcmd *k, const struct re_control_params *p,
		    const struct re_control_counters *counters)
{
	int fd = re_kfeatures_open_netstat();

	memset(k, 0, sizeof(*k));
	k->p = p;
	k->counters = counters;
	k->netstat_fd = fd < 0 ? -1 : fd;
}

void re_ctlcmd_finish(struct re_ctlcmd *k)
{
	if (k->p != NULL && k->netstat_fd >= 0) {
		(void)close(k->netstat_fd);
	}
	k->netstat_fd = -1;
	free(k->views);
	k->views = NULL;
	k->views_cap = 0;
}

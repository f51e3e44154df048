/* report: renders a struct re_snapshot as human text, one-line JSON, Prometheus text
 * exposition 0.0.4, a workers table and a features list. Pure functions of their
 * input; any thread may call them. Every counter comes from RE_STATS_COUNTERS, so a
 * new counter shows up in every format without a change here.
 */
#include "report.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* s->version has no fixed size; longer strings are cut here. */
#define VERSION_MAX 64

/* One index per counter, in X-macro order. */
enum counter_index {
#define RE_REPORT_INDEX(field, kind, metric, labels, help) IDX_##field,
	RE_STATS_COUNTERS(RE_REPORT_INDEX)
#undef RE_REPORT_INDEX
	NCOUNTERS
};

/* The X-macro's kind is a bare token; pasting it here makes a typo a compile error. */
enum counter_kind {
	KIND_counter,
	KIND_gauge,
	KIND_counter_ms,	/* a counter of milliseconds: Prometheus shows seconds */
};

struct counter_desc {
	const char *field;
	const char *metric;
	const char *labels;
	const char *help;
	enum counter_kind kind;
};

static const struct counter_desc counters[NCOUNTERS] = {
#define RE_REPORT_DESC(field, kind, metric, labels, help) \
	[IDX_##field] = { #field, metric, labels, help, KIND_##kind },
	RE_STATS_COUNTERS(RE_REPORT_DESC)
#undef RE_REPORT_DESC
};

static uint64_t counter_value(const struct re_stats_counters *c, enum counter_index i)
{
	switch (i) {
#define RE_REPORT_CASE(field, kind, metric, labels, help) \
	case IDX_##field: \
		return c->field;
	RE_STATS_COUNTERS(RE_REPORT_CASE)
#undef RE_REPORT_CASE
	case NCOUNTERS:
		break;
	}
	return 0;
}

/* True when an earlier counter already has counters[i].metric: its samples were
 * emitted with that family. */
static bool family_seen(size_t i)
{
	size_t j;

	for (j = 0; j < i; j++) {
		if (strcmp(counters[j].metric, counters[i].metric) == 0) {
			return true;
		}
	}
	return false;
}

static const char *state_name(enum re_worker_run_state st)
{
	switch (st) {
	case RE_VIEW_RUNNING:
		return "running";
	case RE_VIEW_DRAINING:
		return "draining";
	case RE_VIEW_STALLED:
		return "stalled";
	}
	return "unknown";
}

/* Workers to report: none when the array is missing, whatever nworkers says. */
static size_t live_workers(const struct re_snapshot *s)
{
	return s->workers != NULL ? s->nworkers : 0;
}

const char *re_report_state_name(enum re_worker_run_state st)
{
	return state_name(st);
}

/* Newton's method from above: decreases monotonically to sqrt(x), so stop when it
 * stops decreasing. Kept here so the library needs no libm. x must be finite. */
static double square_root(double x)
{
	double r, next;
	int i;

	if (!(x > 0.0)) {
		return 0.0;
	}
	r = x > 1.0 ? x : 1.0;
	/* Each step at least halves the excess, so 1100 steps cover any double. */
	for (i = 0; i < 1100; i++) {
		next = 0.5 * (r + x / r);
		if (!(next < r)) {
			break;
		}
		r = next;
	}
	return r;
}

void re_report_imbalance(const struct re_snapshot *s, struct re_imbalance *ret)
{
	size_t i, n = live_workers(s);
	uint64_t max = 0, min = UINT64_MAX, min_nonzero = UINT64_MAX;
	double mean, d, var = 0.0, sum = 0.0;

	memset(ret, 0, sizeof(*ret));
	ret->max_min = 1.0;
	if (n == 0) {
		return;
	}
	for (i = 0; i < n; i++) {
		uint64_t a = s->workers[i].c.accepted;

		max = a > max ? a : max;
		min = a < min ? a : min;
		if (a > 0) {
			min_nonzero = a < min_nonzero ? a : min_nonzero;
		} else {
			ret->idle_workers++;
		}
		sum += (double)a;
	}
	mean = sum / (double)n;
	for (i = 0; i < n; i++) {
		d = (double)s->workers[i].c.accepted - mean;
		var += d * d;
	}
	var /= (double)n;
	ret->max_accepted = max;
	ret->min_accepted = min;
	/* A worker that has accepted nothing yet (typically one a grow just started) is
	 * left out of the ratio rather than making it infinite; cv still counts it. */
	ret->max_min = min_nonzero != UINT64_MAX ? (double)max / (double)min_nonzero : 1.0;
	ret->cv = mean > 0.0 ? square_root(var) / mean : 0.0;
}

/* ---- text helpers ---- */

/* Copy s (at most cap bytes, stops at NUL) for a line-oriented format: control bytes
 * become '?', and with no_space spaces become '_' so the value stays one field. */
static void put_clean(struct re_strbuf *out, const char *s, size_t cap, bool no_space)
{
	size_t i, n = s != NULL ? strnlen(s, cap) : 0;

	for (i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (ch < 0x20 || ch == 0x7f) {
			ch = '?';
		} else if (no_space && ch == ' ') {
			ch = '_';
		}
		re_strbuf_append(out, &ch, 1);
	}
}

/* ---- impairments ---- */

void re_report_impairments(const struct re_runtime *rt, struct re_strbuf *out)
{
	const char *sep = "";
	char val[32];
	int k;

	for (k = 0; k < RE_IMP_N; k++) {
		if (!re_impair_on(rt, (enum re_impair)k)) {
			continue;
		}
		re_impair_format(rt, (enum re_impair)k, val, sizeof(val));
		re_strbuf_printf(out, "%s%s %s%s", sep, re_impair_name((enum re_impair)k), val,
				 k == RE_IMP_SHARE ? "%" : "");
		sep = ", ";
	}
	if (sep[0] == '\0') {
		re_strbuf_puts(out, "none");
	}
}

/* The service a snapshot names; "echo" when it names none (a zeroed snapshot). */
static const char *service_of(const struct re_features *f)
{
	return f->service[0] != '\0' ? f->service : "echo";
}

static void put_duration(struct re_strbuf *out, double secs)
{
	uint64_t t, d, h, m;

	/* Negative, NaN or absurd uptimes print as 0s rather than garbage. */
	t = (secs > 0.0 && secs < 1e15) ? (uint64_t)secs : 0;
	d = t / 86400;
	h = t / 3600 % 24;
	m = t / 60 % 60;
	t %= 60;
	if (d > 0) {
		re_strbuf_printf(out, "%" PRIu64 "d%02" PRIu64 "h%02" PRIu64 "m%02" PRIu64 "s",
				 d, h, m, t);
	} else if (h > 0) {
		re_strbuf_printf(out, "%" PRIu64 "h%02" PRIu64 "m%02" PRIu64 "s", h, m, t);
	} else if (m > 0) {
		re_strbuf_printf(out, "%" PRIu64 "m%02" PRIu64 "s", m, t);
	} else {
		re_strbuf_printf(out, "%" PRIu64 "s", t);
	}
}

/* "1.2 GB (1234567890 B)", or "999 B" below a kilobyte. Decimal units. */
static void put_bytes(struct re_strbuf *out, uint64_t v)
{
	static const char *const units[] = { "kB", "MB", "GB", "TB", "PB", "EB" };
	double x = (double)v;
	size_t u = 0;

	if (v < 1000) {
		re_strbuf_printf(out, "%" PRIu64 " B", v);
		return;
	}
	x /= 1000.0;
	while (x >= 999.95 && u + 1 < sizeof(units) / sizeof(units[0])) {
		x /= 1000.0;
		u++;
	}
	re_strbuf_printf(out, "%.1f %s (%" PRIu64 " B)", x, units[u], v);
}

/* The human layout: items with the same line title share a line, in this order.
 * A counter missing here still prints, on an "other:" line, by its field name. */
struct text_item {
	const char *line;
	const char *name;
	enum counter_index idx;
	bool bytes;
};

static const struct text_item text_layout[] = {
	{ "connections", "active", IDX_active, false },
	{ "connections", "accepted", IDX_accepted, false },
	{ "closed", "eof", IDX_closed_eof, false },
	{ "closed", "error", IDX_closed_error, false },
	{ "closed", "idle", IDX_closed_idle, false },
	{ "closed", "limit", IDX_closed_limit, false },
	{ "closed", "drain", IDX_closed_drain, false },
	{ "closed", "impairment", IDX_closed_impair, false },
	{ "reset", "idle", IDX_reset_idle, false },
	{ "reset", "drain", IDX_reset_drain, false },
	{ "reset", "limit", IDX_reset_limit, false },
	{ "reset", "error", IDX_reset_error, false },
	{ "reset", "impairment", IDX_reset_impair, false },
	{ "impaired", "connections", IDX_impaired_conns, false },
	{ "impaired", "delayed", IDX_impaired_delayed_bytes, true },
	{ "traffic", "received", IDX_bytes_received, true },
	{ "traffic", "sent", IDX_bytes_sent, true },
	{ "io", "recv calls", IDX_recv_calls, false },
	{ "io", "send calls", IDX_send_calls, false },
	{ "io", "send EAGAIN", IDX_send_eagain, false },
	{ "loop", "epoll_wait", IDX_epoll_waits, false },
	{ "loop", "events", IDX_events, false },
	{ "loop", "ready requeues", IDX_ready_requeues, false },
	{ "loop", "backpressure pauses", IDX_backpressure_pauses, false },
	{ "loop", "budget pauses", IDX_budget_pauses, false },
	{ "memory", "buffered", IDX_buffer_bytes, true },
	{ "accept errors", "emfile", IDX_accept_errors_fd, false },
	{ "accept errors", "other", IDX_accept_errors_other, false },
	{ "udp", "datagrams received", IDX_udp_datagrams_received, false },
	{ "udp", "sent", IDX_udp_datagrams_sent, false },
	{ "udp", "bytes received", IDX_udp_bytes_received, true },
	{ "udp", "sent", IDX_udp_bytes_sent, true },
	{ "udp", "recvmmsg calls", IDX_udp_recv_calls, false },
	{ "udp", "sendmmsg calls", IDX_udp_send_calls, false },
	{ "udp", "in GRO bundles", IDX_udp_gro_datagrams, false },
	{ "udp dropped", "truncated", IDX_udp_dropped_truncated, false },
	{ "udp dropped", "queue full", IDX_udp_dropped_queue_full, false },
	{ "udp dropped", "send error", IDX_udp_dropped_send_error, false },
	{ "udp dropped", "loop guard", IDX_udp_dropped_loop_guard, false },
	{ "udp dropped", "not unicast", IDX_udp_dropped_not_unicast, false },
	{ "udp dropped", "rate limit", IDX_udp_dropped_rate_limit, false },
	{ "udp dropped", "kernel receive queue", IDX_udp_kernel_drops, false },
	{ "steering", "stalled steered now", IDX_stall_steered, false },
	{ "steering", "stall episodes", IDX_stall_steer_episodes, false },
	{ "steering", "steered ms", IDX_stall_steered_ms, false },
	{ "steering", "cpu sampled", IDX_incoming_cpu_sampled, false },
	{ "steering", "cpu local", IDX_incoming_cpu_local, false },
};

#define TEXT_LAYOUT_N (sizeof(text_layout) / sizeof(text_layout[0]))

static bool in_text_layout(enum counter_index idx)
{
	size_t k;

	for (k = 0; k < TEXT_LAYOUT_N; k++) {
		if (text_layout[k].idx == idx) {
			return true;
		}
	}
	return false;
}

/* One line for the control thread's own counters. */
static void text_control(const struct re_control_counters *k, struct re_strbuf *out)
{
	re_strbuf_printf(out, "control: unix clients %" PRIu64 "/%" PRIu64 ", tcp clients %" PRIu64
			 "/%" PRIu64 ", refused busy %" PRIu64 ", refused peer %" PRIu64
			 ", refused tcp %" PRIu64 ", evicted %" PRIu64 ", header timeouts %" PRIu64 ", idle timeouts %" PRIu64
			 ", fd limit %" PRIu64 ", backoffs %" PRIu64 ", fd reserve %" PRIu32 "/%" PRIu32
			 " (used %" PRIu64 ")\n",
			 k->clients[RE_CONTROL_UNIX], k->clients_limit[RE_CONTROL_UNIX],
			 k->clients[RE_CONTROL_TCP], k->clients_limit[RE_CONTROL_TCP],
			 k->refused_busy, k->refused_peer, k->refused_tcp, k->evicted,
			 k->header_timeouts, k->idle_timeouts,
			 k->accept_fd_limit[RE_CONTROL_UNIX] + k->accept_fd_limit[RE_CONTROL_TCP],
			 k->accept_backoffs[RE_CONTROL_UNIX] + k->accept_backoffs[RE_CONTROL_TCP],
			 k->fd_reserve_free, k->fd_reserve_size, k->fd_reserve_uses);
}

void re_report_text(const struct re_snapshot *s, struct re_strbuf *out)
{
	size_t k, nw = live_workers(s);
	const char *line = NULL;
	struct re_imbalance im;
	bool other = false;

	re_strbuf_puts(out, "reuseecho ");
	put_clean(out, s->version, VERSION_MAX, true);
	re_strbuf_puts(out, " up ");
	put_duration(out, s->uptime_s);
	re_strbuf_puts(out, " on ");
	put_clean(out, s->address, sizeof(s->address), false);
	re_strbuf_printf(out, ", %zu worker%s", nw, nw == 1 ? "" : "s");
	if (strcmp(service_of(&s->features), "echo") != 0) {
		/* Nobody reads a discard or chargen server's figures as echo's. */
		re_strbuf_puts(out, ", service ");
		put_clean(out, service_of(&s->features), sizeof(s->features.service), true);
	}
	/* Second line, where nobody reading the figures misses it. */
	re_strbuf_puts(out, "\nimpairments: ");
	re_report_impairments(&s->runtime, out);
	re_strbuf_puts(out, "\n");

	for (k = 0; k < TEXT_LAYOUT_N; k++) {
		const struct text_item *it = &text_layout[k];
		uint64_t v = counter_value(&s->total, it->idx);

		if (line == NULL || strcmp(line, it->line) != 0) {
			re_strbuf_printf(out, "%s%s: ", line != NULL ? "\n" : "", it->line);
			line = it->line;
		} else {
			re_strbuf_puts(out, ", ");
		}
		re_strbuf_printf(out, "%s ", it->name);
		if (it->bytes) {
			put_bytes(out, v);
		} else {
			re_strbuf_printf(out, "%" PRIu64, v);
		}
	}
	if (line != NULL) {
		re_strbuf_puts(out, "\n");
	}
	for (k = 0; k < NCOUNTERS; k++) {
		if (in_text_layout((enum counter_index)k)) {
			continue;
		}
		re_strbuf_printf(out, "%s%s %" PRIu64, other ? ", " : "other: ", counters[k].field,
				 counter_value(&s->total, (enum counter_index)k));
		other = true;
	}
	if (other) {
		re_strbuf_puts(out, "\n");
	}
	text_control(&s->control, out);

	re_report_imbalance(s, &im);
	if (nw == 0) {
		re_strbuf_puts(out, "balance: no live workers\n");
		return;
	}
	re_strbuf_printf(out, "balance: accepted max %" PRIu64 " min %" PRIu64 " max/min %.2f",
			 im.max_accepted, im.min_accepted, im.max_min);
	if (im.idle_workers > 0) {
		re_strbuf_printf(out, " (%zu worker%s without accepts left out)", im.idle_workers,
				 im.idle_workers == 1 ? "" : "s");
	}
	re_strbuf_printf(out, " cv %.3f\n", im.cv);
}

/* ---- JSON ---- */

static void json_string(struct re_strbuf *out, const char *s, size_t cap)
{
	size_t i, n = s != NULL ? strnlen(s, cap) : 0;

	re_strbuf_puts(out, "\"");
	for (i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (ch == '"' || ch == '\\') {
			re_strbuf_printf(out, "\\%c", ch);
		} else if (ch == '\n') {
			re_strbuf_puts(out, "\\n");
		} else if (ch == '\t') {
			re_strbuf_puts(out, "\\t");
		} else if (ch == '\r') {
			re_strbuf_puts(out, "\\r");
		} else if (ch < 0x20) {
			re_strbuf_printf(out, "\\u%04x", ch);
		} else {
			re_strbuf_append(out, &ch, 1);
		}
	}
	re_strbuf_puts(out, "\"");
}

/* JSON has no NaN or Infinity: those become null. */
static void json_double(struct re_strbuf *out, double v)
{
	if (isfinite(v)) {
		re_strbuf_printf(out, "%.6g", v);
	} else {
		re_strbuf_puts(out, "null");
	}
}

/* "field":value,... for every counter, without the braces. */
static void json_counters(struct re_strbuf *out, const struct re_stats_counters *c)
{
	size_t k;

	for (k = 0; k < NCOUNTERS; k++) {
		re_strbuf_printf(out, "%s\"%s\":%" PRIu64, k > 0 ? "," : "", counters[k].field,
				 counter_value(c, (enum counter_index)k));
	}
}

/* ,"control":{...}: the control thread's counters, per listener where they differ. */
static void json_control(const struct re_control_counters *k, struct re_strbuf *out)
{
	re_strbuf_printf(out, ",\"control\":{\"clients\":{\"unix\":%" PRIu64 ",\"tcp\":%" PRIu64 "},"
			 "\"clients_limit\":{\"unix\":%" PRIu64 ",\"tcp\":%" PRIu64 "},"
			 "\"clients_accepted\":{\"unix\":%" PRIu64 ",\"tcp\":%" PRIu64 "},",
			 k->clients[RE_CONTROL_UNIX], k->clients[RE_CONTROL_TCP],
			 k->clients_limit[RE_CONTROL_UNIX], k->clients_limit[RE_CONTROL_TCP],
			 k->accepted[RE_CONTROL_UNIX], k->accepted[RE_CONTROL_TCP]);
	re_strbuf_printf(out, "\"refused_busy\":%" PRIu64 ",\"refused_peer\":%" PRIu64
			 ",\"refused_tcp\":%" PRIu64 ",\"evicted\":%" PRIu64
			 ",\"header_timeouts\":%" PRIu64 ",\"idle_timeouts\":%" PRIu64 ",",
			 k->refused_busy, k->refused_peer, k->refused_tcp, k->evicted,
			 k->header_timeouts, k->idle_timeouts);
	re_strbuf_printf(out, "\"accept_fd_limit\":{\"unix\":%" PRIu64 ",\"tcp\":%" PRIu64 "},"
			 "\"accept_backoffs\":{\"unix\":%" PRIu64 ",\"tcp\":%" PRIu64 "},"
			 "\"fd_reserve_uses\":%" PRIu64 ",\"fd_reserve_free\":%" PRIu32
			 ",\"fd_reserve_size\":%" PRIu32 "}",
			 k->accept_fd_limit[RE_CONTROL_UNIX], k->accept_fd_limit[RE_CONTROL_TCP],
			 k->accept_backoffs[RE_CONTROL_UNIX], k->accept_backoffs[RE_CONTROL_TCP],
			 k->fd_reserve_uses, k->fd_reserve_free, k->fd_reserve_size);
}

/* ,"impairments":{...}: every setting with its value, 0 = off. */
static void json_impairments(const struct re_runtime *rt, struct re_strbuf *out)
{
	re_strbuf_printf(out, ",\"impairments\":{\"active\":%s,\"delay_ms\":%" PRIu32
			 ",\"jitter_ms\":%" PRIu32 ",\"bandwidth\":%" PRIu64 ",\"close_after\":%"
			 PRIu64 ",\"reset_after\":%" PRIu64 ",\"share\":%" PRIu32
			 ",\"accept\":\"%s\"}",
			 re_impair_active(rt) ? "true" : "false", rt->delay_ms, rt->jitter_ms,
			 rt->bandwidth, rt->close_after, rt->reset_after, rt->share,
			 rt->accept_off ? "off" : "on");
}

void re_report_json(const struct re_snapshot *s, struct re_strbuf *out)
{
	const struct re_features *f = &s->features;
	size_t i, nw = live_workers(s);
	struct re_imbalance im;

	re_report_imbalance(s, &im);
	re_strbuf_puts(out, "{\"version\":");
	json_string(out, s->version, VERSION_MAX);
	re_strbuf_puts(out, ",\"uptime_s\":");
	if (isfinite(s->uptime_s)) {
		re_strbuf_printf(out, "%.3f", s->uptime_s);
	} else {
		re_strbuf_puts(out, "null");
	}
	re_strbuf_puts(out, ",\"address\":");
	json_string(out, s->address, sizeof(s->address));
	re_strbuf_printf(out, ",\"port\":%u,\"workers\":%zu,\"total\":{", s->port, nw);
	json_counters(out, &s->total);
	re_strbuf_puts(out, "},\"per_worker\":[");
	for (i = 0; i < nw; i++) {
		const struct re_worker_view *w = &s->workers[i];

		re_strbuf_printf(out, "%s{\"id\":%d,\"cpu\":", i > 0 ? "," : "", w->id);
		if (w->cpu >= 0) {
			re_strbuf_printf(out, "%d", w->cpu);
		} else {
			re_strbuf_puts(out, "null");
		}
		re_strbuf_printf(out, ",\"tid\":%ld,\"state\":\"%s\",\"acceptq_len\":%" PRIu32
				 ",\"acceptq_max\":%" PRIu32 ",",
				 (long)w->tid, state_name(w->state), w->acceptq_len,
				 w->acceptq_max);
		json_counters(out, &w->c);
		re_strbuf_puts(out, "}");
	}
	re_strbuf_puts(out, "],\"retired\":{");
	json_counters(out, &s->retired);
	re_strbuf_printf(out, "},\"imbalance\":{\"max_accepted\":%" PRIu64 ",\"min_accepted\":%"
			 PRIu64 ",\"max_min\":", im.max_accepted, im.min_accepted);
	json_double(out, im.max_min);
	re_strbuf_printf(out, ",\"idle_workers\":%zu,\"cv\":", im.idle_workers);
	json_double(out, im.cv);
	re_strbuf_printf(out, "},\"features\":{\"so_reuseport\":%s,\"epollrdhup\":%s,"
			 "\"reuseport_cbpf\":%s,\"tcp_migrate_req\":",
			 f->reuseport ? "true" : "false", f->rdhup ? "true" : "false",
			 f->cbpf ? "true" : "false");
	if (f->migrate_req >= 0) {
		re_strbuf_printf(out, "%d", f->migrate_req);
	} else {
		re_strbuf_puts(out, "null");
	}
	re_strbuf_puts(out, ",\"kernel\":");
	json_string(out, f->kernel, sizeof(f->kernel));
	re_strbuf_puts(out, ",\"listener_handover\":");
	json_string(out, f->handover, sizeof(f->handover));
	re_strbuf_printf(out, ",\"udp\":%s,\"udp_rcvbuf\":%" PRId64, f->udp ? "true" : "false",
			 f->udp_rcvbuf);
	re_strbuf_puts(out, ",\"service\":");
	json_string(out, service_of(f), sizeof(f->service));
	re_strbuf_puts(out, ",\"tcp_migrate_req_success\":");
	if (f->migrate_success >= 0) {
		re_strbuf_printf(out, "%" PRId64, f->migrate_success);
	} else {
		re_strbuf_puts(out, "null");
	}
	re_strbuf_puts(out, ",\"tcp_migrate_req_failure\":");
	if (f->migrate_failure >= 0) {
		re_strbuf_printf(out, "%" PRId64, f->migrate_failure);
	} else {
		re_strbuf_puts(out, "null");
	}
	re_strbuf_puts(out, "}");
	json_impairments(&s->runtime, out);
	json_control(&s->control, out);
	re_strbuf_puts(out, "}\n");
}

/* ---- Prometheus text exposition 0.0.4 ---- */

#define PROM_PREFIX "reuseecho_"

/* Label value escaping: backslash, double quote and line feed. */
static void prom_label_value(struct re_strbuf *out, const char *s, size_t cap)
{
	size_t i, n = s != NULL ? strnlen(s, cap) : 0;

	for (i = 0; i < n; i++) {
		if (s[i] == '\\') {
			re_strbuf_puts(out, "\\\\");
		} else if (s[i] == '"') {
			re_strbuf_puts(out, "\\\"");
		} else if (s[i] == '\n') {
			re_strbuf_puts(out, "\\n");
		} else {
			re_strbuf_append(out, &s[i], 1);
		}
	}
}

/* HELP escaping: backslash and line feed only. */
static void prom_help_text(struct re_strbuf *out, const char *help)
{
	const char *p;

	for (p = help; *p != '\0'; p++) {
		if (*p == '\\') {
			re_strbuf_puts(out, "\\\\");
		} else if (*p == '\n') {
			re_strbuf_puts(out, "\\n");
		} else {
			re_strbuf_append(out, p, 1);
		}
	}
}

static void prom_family(struct re_strbuf *out, const char *name, const char *help,
			const char *type)
{
	re_strbuf_printf(out, "# HELP " PROM_PREFIX "%s ", name);
	prom_help_text(out, help);
	re_strbuf_printf(out, "\n# TYPE " PROM_PREFIX "%s %s\n", name, type);
}

static void prom_double(struct re_strbuf *out, double v)
{
	if (isnan(v)) {
		re_strbuf_puts(out, "NaN");
	} else if (isinf(v)) {
		re_strbuf_puts(out, v > 0 ? "+Inf" : "-Inf");
	} else {
		re_strbuf_printf(out, "%.6g", v);
	}
}

/* The per-worker twin of family reuseecho_<metric> is reuseecho_worker_<metric>. */
#define PROM_WORKER "worker_"

/* # HELP and # TYPE of the family of counters[k]: the process total, or with
 * per_worker its per-worker twin. */
static void prom_counter_family(struct re_strbuf *out, size_t k, bool per_worker)
{
	bool counter = counters[k].kind != KIND_gauge;
	const char *pre = per_worker ? PROM_WORKER : "";

	re_strbuf_printf(out, "# HELP " PROM_PREFIX "%s%s ", pre, counters[k].metric);
	prom_help_text(out, counters[k].help);
	if (per_worker) {
		re_strbuf_puts(out, "; per live worker, the series ends when the worker retires");
	} else if (counter) {
		re_strbuf_puts(out, "; whole process, retired workers included");
	} else {
		re_strbuf_puts(out, "; whole process");
	}
	re_strbuf_printf(out, "\n# TYPE " PROM_PREFIX "%s%s %s\n", pre, counters[k].metric,
			 counter ? "counter" : "gauge");
}

/* reuseecho_[worker_]<metric>[{[worker="<id>"][,<labels>]}] <v>: worker NULL for the
 * process-total family; no braces when there is no label at all. */
static void prom_counter_sample(struct re_strbuf *out, size_t k, const char *worker,
				uint64_t v)
{
	const char *labels = counters[k].labels;

	if (worker != NULL) {
		re_strbuf_printf(out, PROM_PREFIX PROM_WORKER "%s{worker=\"%s\"%s%s}",
				 counters[k].metric, worker, labels[0] != '\0' ? "," : "",
				 labels);
	} else if (labels[0] != '\0') {
		re_strbuf_printf(out, PROM_PREFIX "%s{%s}", counters[k].metric, labels);
	} else {
		re_strbuf_printf(out, PROM_PREFIX "%s", counters[k].metric);
	}
	if (counters[k].kind == KIND_counter_ms) {
		re_strbuf_printf(out, " %" PRIu64 ".%03u\n", v / 1000, (unsigned)(v % 1000));
	} else {
		re_strbuf_printf(out, " %" PRIu64 "\n", v);
	}
}

/* The process total of counters[k]: a counter is s->total (live + retired, so it
 * never drops when a worker leaves); a gauge is a "now" value, the sum over the live
 * workers (a retired worker holds nothing). */
static uint64_t process_value(const struct re_snapshot *s, size_t k)
{
	size_t i, nw = live_workers(s);
	uint64_t sum = 0;

	if (counters[k].kind != KIND_gauge) {
		return counter_value(&s->total, (enum counter_index)k);
	}
	for (i = 0; i < nw; i++) {
		sum += counter_value(&s->workers[i].c, (enum counter_index)k);
	}
	return sum;
}

/* One family per metric name, in first-appearance order, with all of its label sets
 * under one HELP/TYPE: the process totals (per_worker false) or the per-worker twins.
 * No series ever receives another's counts, so a sum of increase() over a family's
 * series is the family's true increase across grows and shrinks. */
static void prom_counters(const struct re_snapshot *s, struct re_strbuf *out, bool per_worker)
{
	size_t i, j, k, nw = live_workers(s);
	char worker[24];

	for (k = 0; k < NCOUNTERS; k++) {
		if (family_seen(k)) {
			continue;
		}
		prom_counter_family(out, k, per_worker);
		for (i = 0; i < (per_worker ? nw : 1); i++) {
			if (per_worker) {
				(void)snprintf(worker, sizeof(worker), "%d", s->workers[i].id);
			}
			for (j = k; j < NCOUNTERS; j++) {
				if (strcmp(counters[j].metric, counters[k].metric) != 0) {
					continue;
				}
				if (per_worker) {
					prom_counter_sample(out, j, worker,
							    counter_value(&s->workers[i].c,
									  (enum counter_index)j));
				} else {
					prom_counter_sample(out, j, NULL, process_value(s, j));
				}
			}
		}
	}
}

/* The control thread's families: no worker label; listener="unix|tcp". */
/* One family of the control thread's, one sample per listener (unix, tcp). */
static void prom_per_listener(struct re_strbuf *out, const char *name, const char *help,
			      const char *type, const uint64_t v[RE_CONTROL_NLISTENERS])
{
	static const char *const lname[RE_CONTROL_NLISTENERS] = { "unix", "tcp" };

	prom_family(out, name, help, type);
	for (size_t i = 0; i < RE_CONTROL_NLISTENERS; i++) {
		re_strbuf_printf(out, PROM_PREFIX "%s{listener=\"%s\"} %" PRIu64 "\n", name, lname[i],
				 v[i]);
	}
}

static void prom_control(const struct re_control_counters *k, struct re_strbuf *out)
{
	prom_per_listener(out, "control_clients",
			  "Control clients connected now, per listener",
			  "gauge", k->clients);
	prom_per_listener(out, "control_clients_limit",
			  "Control client budget per listener (0 = listener not open)",
			  "gauge", k->clients_limit);
	prom_per_listener(out, "control_clients_accepted_total",
			  "Control clients accepted, per listener",
			  "counter", k->accepted);
	prom_family(out, "control_clients_refused_total",
		    "Control clients refused: admin socket over budget (busy) or another uid "
		    "(peer_uid); TCP budget full of clients that arrived in the same turn (burst)",
		    "counter");
	re_strbuf_printf(out, PROM_PREFIX "control_clients_refused_total{listener=\"unix\",reason=\"busy\"} %"
			 PRIu64 "\n" PROM_PREFIX "control_clients_refused_total{listener=\"unix\","
			 "reason=\"peer_uid\"} %" PRIu64 "\n" PROM_PREFIX "control_clients_refused_total"
			 "{listener=\"tcp\",reason=\"burst\"} %" PRIu64 "\n",
			 k->refused_busy, k->refused_peer, k->refused_tcp);
	prom_family(out, "control_clients_evicted_total",
		    "HTTP clients closed because the TCP budget was full (longest idle first)",
		    "counter");
	re_strbuf_printf(out, PROM_PREFIX "control_clients_evicted_total{listener=\"tcp\"} %" PRIu64
			 "\n", k->evicted);
	prom_family(out, "control_header_timeouts_total",
		    "TCP HTTP clients closed because their request head did not arrive in time",
		    "counter");
	re_strbuf_printf(out, PROM_PREFIX "control_header_timeouts_total %" PRIu64 "\n",
			 k->header_timeouts);
	prom_family(out, "control_idle_timeouts_total",
		    "Admin socket clients closed after --control-timeout without activity", "counter");
	re_strbuf_printf(out, PROM_PREFIX "control_idle_timeouts_total %" PRIu64 "\n", k->idle_timeouts);
	prom_per_listener(out, "control_accept_fd_limit_total",
			  "Control accepts that failed at the fd limit (EMFILE/ENFILE), per listener",
			  "counter", k->accept_fd_limit);
	prom_per_listener(out, "control_accept_backoffs_total",
			  "Times a control listener stopped accepting for 100 ms (no fd to accept with)",
			  "counter", k->accept_backoffs);
	prom_family(out, "control_fd_reserve_uses_total",
		    "Reserve descriptors given up to accept an admin client at the fd limit", "counter");
	re_strbuf_printf(out, PROM_PREFIX "control_fd_reserve_uses_total %" PRIu64 "\n",
			 k->fd_reserve_uses);
	prom_family(out, "control_fd_reserve", "Descriptors the control thread holds in reserve now",
		    "gauge");
	re_strbuf_printf(out, PROM_PREFIX "control_fd_reserve %" PRIu32 "\n", k->fd_reserve_free);
	prom_family(out, "control_fd_reserve_size", "Descriptors the control thread keeps in reserve",
		    "gauge");
	re_strbuf_printf(out, PROM_PREFIX "control_fd_reserve_size %" PRIu32 "\n", k->fd_reserve_size);
}

/* Every kind always has its series, 0 or 1, so that an alert on
 * max(reuseecho_impairment_active) == 1 needs no absent() twin. */
static void prom_impairments(const struct re_runtime *rt, struct re_strbuf *out)
{
	static const struct {
		const char *kind;
		enum re_impair k;
	} kinds[] = {
		{ "delay", RE_IMP_DELAY },
		{ "jitter", RE_IMP_JITTER },
		{ "bandwidth", RE_IMP_BANDWIDTH },
		{ "close_after", RE_IMP_CLOSE_AFTER },
		{ "reset_after", RE_IMP_RESET_AFTER },
		{ "accept_off", RE_IMP_ACCEPT },
	};
	size_t i;

	prom_family(out, "impairment_active",
		    "1 while the impairment of this kind is set (--delay, --jitter, --bandwidth, "
		    "--close-after, --reset-after, --accept off): the instance misbehaves on "
		    "purpose; never benchmark it", "gauge");
	for (i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		re_strbuf_printf(out, PROM_PREFIX "impairment_active{kind=\"%s\"} %d\n",
				 kinds[i].kind, re_impair_on(rt, kinds[i].k) ? 1 : 0);
	}
	prom_family(out, "impairment_share_ratio",
		    "Share of new connections the impairments apply to (--share / 100)", "gauge");
	re_strbuf_puts(out, PROM_PREFIX "impairment_share_ratio ");
	prom_double(out, (double)rt->share / 100.0);
	re_strbuf_puts(out, "\n");
}

void re_report_prometheus(const struct re_snapshot *s, struct re_strbuf *out)
{
	const struct re_features *f = &s->features;
	size_t i, nw = live_workers(s);
	struct re_imbalance im;

	prom_counters(s, out, false);
	prom_counters(s, out, true);

	prom_family(out, "accept_queue_length",
		    "Connections waiting in the worker's listener accept queue", "gauge");
	for (i = 0; i < nw; i++) {
		re_strbuf_printf(out, PROM_PREFIX "accept_queue_length{worker=\"%d\"} %" PRIu32
				 "\n", s->workers[i].id, s->workers[i].acceptq_len);
	}
	prom_family(out, "accept_queue_limit",
		    "Accept queue limit (listen backlog) of the worker's listener", "gauge");
	for (i = 0; i < nw; i++) {
		re_strbuf_printf(out, PROM_PREFIX "accept_queue_limit{worker=\"%d\"} %" PRIu32 "\n",
				 s->workers[i].id, s->workers[i].acceptq_max);
	}
	prom_family(out, "worker_info", "Worker thread identity (value is always 1)", "gauge");
	for (i = 0; i < nw; i++) {
		const struct re_worker_view *w = &s->workers[i];

		re_strbuf_printf(out, PROM_PREFIX "worker_info{worker=\"%d\",cpu=\"", w->id);
		if (w->cpu >= 0) {
			re_strbuf_printf(out, "%d", w->cpu);
		} else {
			re_strbuf_puts(out, "-");
		}
		re_strbuf_printf(out, "\",tid=\"%ld\",state=\"%s\"} 1\n", (long)w->tid,
				 state_name(w->state));
	}
	prom_family(out, "worker_stalled",
		    "1 while the worker's event loop has not turned for a second", "gauge");
	for (i = 0; i < nw; i++) {
		re_strbuf_printf(out, PROM_PREFIX "worker_stalled{worker=\"%d\"} %d\n",
				 s->workers[i].id, s->workers[i].state == RE_VIEW_STALLED ? 1 : 0);
	}
	prom_family(out, "workers", "Live worker threads", "gauge");
	re_strbuf_printf(out, PROM_PREFIX "workers %zu\n", nw);
	prom_family(out, "uptime_seconds", "Seconds since the server started", "gauge");
	re_strbuf_puts(out, PROM_PREFIX "uptime_seconds ");
	prom_double(out, s->uptime_s);
	re_strbuf_puts(out, "\n");
	prom_family(out, "build_info", "Build information (value is always 1)", "gauge");
	re_strbuf_puts(out, PROM_PREFIX "build_info{version=\"");
	prom_label_value(out, s->version, VERSION_MAX);
	re_strbuf_puts(out, "\"} 1\n");

	re_report_imbalance(s, &im);
	prom_family(out, "accept_imbalance_ratio",
		    "Most over fewest connections accepted by a live worker, over the workers"
		    " that accepted at least one (1 when none did)",
		    "gauge");
	re_strbuf_puts(out, PROM_PREFIX "accept_imbalance_ratio ");
	prom_double(out, im.max_min);
	re_strbuf_puts(out, "\n");
	prom_family(out, "accept_imbalance_cv",
		    "Coefficient of variation of connections accepted per live worker", "gauge");
	re_strbuf_puts(out, PROM_PREFIX "accept_imbalance_cv ");
	prom_double(out, im.cv);
	re_strbuf_puts(out, "\n");

	prom_family(out, "feature_info", "Kernel features detected at start-up (value is always 1)",
		    "gauge");
	re_strbuf_printf(out, PROM_PREFIX "feature_info{so_reuseport=\"%d\",epollrdhup=\"%d\","
			 "reuseport_cbpf=\"%d\",tcp_migrate_req=\"", f->reuseport ? 1 : 0,
			 f->rdhup ? 1 : 0, f->cbpf ? 1 : 0);
	if (f->migrate_req >= 0) {
		re_strbuf_printf(out, "%d", f->migrate_req);
	} else {
		re_strbuf_puts(out, "absent");
	}
	re_strbuf_puts(out, "\",kernel=\"");
	prom_label_value(out, f->kernel, sizeof(f->kernel));
	re_strbuf_puts(out, "\",listener_handover=\"");
	prom_label_value(out, f->handover, sizeof(f->handover));
	re_strbuf_puts(out, "\",service=\"");
	prom_label_value(out, service_of(f), sizeof(f->service));
	re_strbuf_printf(out, "\",udp=\"%d\"} 1\n", f->udp ? 1 : 0);
	if (f->migrate_success >= 0 && f->migrate_failure >= 0) {
		prom_family(out, "tcp_migrate_req_total",
			    "Kernel TcpMigrateReq counters of this network namespace (TcpExt)", "counter");
		re_strbuf_printf(out, PROM_PREFIX "tcp_migrate_req_total{result=\"success\"} %" PRId64 "\n"
				 PROM_PREFIX "tcp_migrate_req_total{result=\"failure\"} %" PRId64 "\n",
				 f->migrate_success, f->migrate_failure);
	}
	prom_impairments(&s->runtime, out);
	prom_control(&s->control, out);
}

/* ---- workers table ---- */

enum {
	COL_ID,
	COL_CPU,
	COL_TID,
	COL_STATE,
	COL_ACTIVE,
	COL_ACCEPTED,
	COL_CLOSED,
	COL_BYTES_IN,
	COL_BYTES_OUT,
	COL_RECV_CALLS,
	COL_SEND_CALLS,
	COL_ACCEPTQ,
	COL_ACCEPTQ_MAX,
	COL_UDP_IN,
	COL_UDP_OUT,
	COL_UDP_DROPPED,
	COL_STEERED,
	COL_STEER_EPISODES,
	COL_STEERED_MS,
	COL_CPU_SAMPLED,
	COL_CPU_LOCAL,
	NCOLS,
};

#define CELL 24

static const char *const col_names[NCOLS] = {
	"id", "cpu", "tid", "state", "active", "accepted", "closed", "bytes_in", "bytes_out",
	"recv_calls", "send_calls", "acceptq", "acceptq_max", "udp_in", "udp_out", "udp_dropped",
	"steered", "steer_episodes", "steered_ms", "cpu_sampled", "cpu_local",
};

/* Sum of every counter in the connections_closed_total family, so a new close
 * reason is counted without a change here. */
static uint64_t closed_sum(const struct re_stats_counters *c)
{
	uint64_t sum = 0;
	size_t k;

	for (k = 0; k < NCOUNTERS; k++) {
		if (strcmp(counters[k].metric, counters[IDX_closed_eof].metric) == 0) {
			sum += counter_value(c, (enum counter_index)k);
		}
	}
	return sum;
}

/* UDP datagrams lost at a worker, by every reason: the udp_dropped_total family
 * plus the kernel's receive-queue drops. */
static uint64_t udp_dropped_sum(const struct re_stats_counters *c)
{
	uint64_t sum = c->udp_kernel_drops;
	size_t k;

	for (k = 0; k < NCOUNTERS; k++) {
		if (strcmp(counters[k].metric, counters[IDX_udp_dropped_truncated].metric) == 0) {
			sum += counter_value(c, (enum counter_index)k);
		}
	}
	return sum;
}

/* Fill one row's cells: the header when w is NULL. */
static void table_row(const struct re_worker_view *w, char cells[NCOLS][CELL])
{
	size_t k;

	if (w == NULL) {
		for (k = 0; k < NCOLS; k++) {
			(void)snprintf(cells[k], CELL, "%s", col_names[k]);
		}
		return;
	}
	(void)snprintf(cells[COL_ID], CELL, "%d", w->id);
	if (w->cpu >= 0) {
		(void)snprintf(cells[COL_CPU], CELL, "%d", w->cpu);
	} else {
		(void)snprintf(cells[COL_CPU], CELL, "-");
	}
	(void)snprintf(cells[COL_TID], CELL, "%ld", (long)w->tid);
	(void)snprintf(cells[COL_STATE], CELL, "%s", state_name(w->state));
	(void)snprintf(cells[COL_ACTIVE], CELL, "%" PRIu64, w->c.active);
	(void)snprintf(cells[COL_ACCEPTED], CELL, "%" PRIu64, w->c.accepted);
	(void)snprintf(cells[COL_CLOSED], CELL, "%" PRIu64, closed_sum(&w->c));
	(void)snprintf(cells[COL_BYTES_IN], CELL, "%" PRIu64, w->c.bytes_received);
	(void)snprintf(cells[COL_BYTES_OUT], CELL, "%" PRIu64, w->c.bytes_sent);
	(void)snprintf(cells[COL_RECV_CALLS], CELL, "%" PRIu64, w->c.recv_calls);
	(void)snprintf(cells[COL_SEND_CALLS], CELL, "%" PRIu64, w->c.send_calls);
	(void)snprintf(cells[COL_ACCEPTQ], CELL, "%" PRIu32, w->acceptq_len);
	(void)snprintf(cells[COL_ACCEPTQ_MAX], CELL, "%" PRIu32, w->acceptq_max);
	(void)snprintf(cells[COL_UDP_IN], CELL, "%" PRIu64, w->c.udp_datagrams_received);
	(void)snprintf(cells[COL_UDP_OUT], CELL, "%" PRIu64, w->c.udp_datagrams_sent);
	(void)snprintf(cells[COL_UDP_DROPPED], CELL, "%" PRIu64, udp_dropped_sum(&w->c));
	(void)snprintf(cells[COL_STEERED], CELL, "%" PRIu64, w->c.stall_steered);
	(void)snprintf(cells[COL_STEER_EPISODES], CELL, "%" PRIu64, w->c.stall_steer_episodes);
	(void)snprintf(cells[COL_STEERED_MS], CELL, "%" PRIu64, w->c.stall_steered_ms);
	(void)snprintf(cells[COL_CPU_SAMPLED], CELL, "%" PRIu64, w->c.incoming_cpu_sampled);
	(void)snprintf(cells[COL_CPU_LOCAL], CELL, "%" PRIu64, w->c.incoming_cpu_local);
}

void re_report_workers(const struct re_snapshot *s, struct re_strbuf *out)
{
	size_t nw = live_workers(s);
	char cells[NCOLS][CELL];
	int width[NCOLS] = { 0 };
	size_t i, k;

	/* Two passes: column widths first, so people see aligned columns; scripts split
	 * on whitespace and never depend on the padding. */
	for (i = 0; i <= nw; i++) {
		table_row(i == 0 ? NULL : &s->workers[i - 1], cells);
		for (k = 0; k < NCOLS; k++) {
			int n = (int)strlen(cells[k]);

			width[k] = n > width[k] ? n : width[k];
		}
	}
	for (i = 0; i <= nw; i++) {
		table_row(i == 0 ? NULL : &s->workers[i - 1], cells);
		for (k = 0; k < NCOLS; k++) {
			const char *sep = k > 0 ? " " : "";

			if (k == COL_STATE) {
				re_strbuf_printf(out, "%s%-*s", sep, width[k], cells[k]);
			} else {
				re_strbuf_printf(out, "%s%*s", sep, width[k], cells[k]);
			}
		}
		re_strbuf_puts(out, "\n");
	}
}

/* ---- features ---- */

void re_report_features(const struct re_features *f, const struct re_runtime *rt,
			struct re_strbuf *out)
{
	char imp[256];

	re_strbuf_printf(out, "so_reuseport %s\nepollrdhup %s\nreuseport_cbpf %s\n",
			 f->reuseport ? "yes" : "no", f->rdhup ? "yes" : "no",
			 f->cbpf ? "yes" : "no");
	if (f->migrate_req >= 0) {
		re_strbuf_printf(out, "tcp_migrate_req %d\n", f->migrate_req);
	} else {
		re_strbuf_puts(out, "tcp_migrate_req absent\n");
	}
	re_strbuf_puts(out, "listener_handover ");
	if (f->handover[0] != '\0') {
		put_clean(out, f->handover, sizeof(f->handover), true);
	} else {
		re_strbuf_puts(out, "none");
	}
	re_strbuf_printf(out, "\nudp %s\nudp_rcvbuf %" PRId64 "\n", f->udp ? "on" : "off",
			 f->udp_rcvbuf);
	re_strbuf_puts(out, "service ");
	put_clean(out, service_of(f), sizeof(f->service), true);
	re_impair_describe(rt, imp, sizeof(imp));
	re_strbuf_printf(out, "\nimpairments %s\n", imp);
	if (f->migrate_success >= 0 && f->migrate_failure >= 0) {
		re_strbuf_printf(out, "tcp_migrate_req_success %" PRId64 "\ntcp_migrate_req_failure %" PRId64 "\n",
				 f->migrate_success, f->migrate_failure);
	}
	re_strbuf_puts(out, "kernel ");
	if (f->kernel[0] != '\0') {
		put_clean(out, f->kernel, sizeof(f->kernel), true);
	} else {
		re_strbuf_puts(out, "unknown");
	}
	re_strbuf_puts(out, "\n");
}

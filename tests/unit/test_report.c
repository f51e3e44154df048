/* test_report: unit test for src/report.c. Builds snapshots by hand and checks every
 * output format: shape (one-line JSON that parses, one HELP/TYPE per Prometheus name,
 * no empty lines), exact known lines, per-worker sums and the imbalance figures.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report.h"

#define CHECK(cond) \
	do { \
		if (!(cond)) { \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
			exit(1); \
		} \
	} while (0)

/* Like CHECK(strstr(hay, needle)) but prints both on failure. */
#define CHECK_HAS(hay, needle) \
	do { \
		if (strstr((hay), (needle)) == NULL) { \
			fprintf(stderr, "%s:%d: missing \"%s\" in:\n%s\n", __FILE__, __LINE__, \
				(needle), (hay)); \
			exit(1); \
		} \
	} while (0)

#define CHECK_LACKS(hay, needle) \
	do { \
		if (strstr((hay), (needle)) != NULL) { \
			fprintf(stderr, "%s:%d: unexpected \"%s\" in:\n%s\n", __FILE__, __LINE__, \
				(needle), (hay)); \
			exit(1); \
		} \
	} while (0)

#define CHECK_NEAR(a, b) CHECK((a) - (b) < 1e-6 && (b) - (a) < 1e-6)

#define MAXW 8

struct fixture {
	struct re_snapshot s;
	struct re_worker_view w[MAXW];
};

typedef void report_fn(const struct re_snapshot *s, struct re_strbuf *out);

/* ---- snapshot builders ---- */

/* Give every counter of c a distinct value derived from base. */
static void fill_counters(struct re_stats_counters *c, uint64_t base)
{
	uint64_t k = 0;

#define FILL(field, kind, metric, labels, help) c->field = base + k++;
	RE_STATS_COUNTERS(FILL)
#undef FILL
}

static void add_counters(struct re_stats_counters *out, const struct re_stats_counters *in)
{
#define ADD(field, kind, metric, labels, help) out->field += in->field;
	RE_STATS_COUNTERS(ADD)
#undef ADD
}

/* n workers with the given accepted counts (other counters distinct per worker),
 * retired counters from retired_base (0 = all zero), total = sum + retired. */
static void make(struct fixture *fx, size_t n, const uint64_t *accepted, uint64_t retired_base)
{
	size_t i;

	memset(fx, 0, sizeof(*fx));
	fx->s.version = "0.1.0";
	fx->s.uptime_s = 10931.5;
	(void)snprintf(fx->s.address, sizeof(fx->s.address), "0.0.0.0:7007");
	fx->s.port = 7007;
	fx->s.nworkers = n;
	fx->s.workers = fx->w;
	fx->s.features.reuseport = true;
	fx->s.features.rdhup = true;
	fx->s.features.cbpf = true;
	fx->s.features.migrate_req = 0;
	(void)snprintf(fx->s.features.kernel, sizeof(fx->s.features.kernel), "6.1.0-18-amd64");
	fx->s.runtime.share = 100;	/* the default: no impairment */
	for (i = 0; i < n; i++) {
		struct re_worker_view *w = &fx->w[i];

		w->id = (int)i;
		w->cpu = i == 2 ? -1 : (int)i;
		w->tid = 1000 + (pid_t)i;
		w->acceptq_len = (uint32_t)i;
		w->acceptq_max = 4096;
		w->state = i == 1 ? RE_VIEW_DRAINING : RE_VIEW_RUNNING;
		fill_counters(&w->c, 100 * (i + 1));
		w->c.accepted = accepted[i];
		add_counters(&fx->s.total, &w->c);
	}
	if (retired_base != 0) {
		fill_counters(&fx->s.retired, retired_base);
		add_counters(&fx->s.total, &fx->s.retired);
	}
}

/* ---- generic checks ---- */

static char *render(report_fn *fn, const struct re_snapshot *s, struct re_strbuf *sb)
{
	re_strbuf_reset(sb);
	fn(s, sb);
	CHECK(!sb->oom);
	CHECK(sb->len > 0);
	return sb->data;
}

/* Every line ends with "\n", none is empty. */
static void check_lines(const char *out)
{
	size_t n = strlen(out);

	CHECK(n > 0);
	CHECK(out[0] != '\n');
	CHECK(out[n - 1] == '\n');
	CHECK_LACKS(out, "\n\n");
}

static size_t count_lines(const char *out)
{
	size_t n = 0;

	for (; *out != '\0'; out++) {
		n += *out == '\n';
	}
	return n;
}

static size_t count_of(const char *hay, const char *needle)
{
	size_t n = 0;

	while ((hay = strstr(hay, needle)) != NULL) {
		n++;
		hay += strlen(needle);
	}
	return n;
}

/* ---- a tiny JSON validator: returns the end of one value or NULL ---- */

static const char *json_value(const char *p, int depth);

static const char *json_ws(const char *p)
{
	while (*p == ' ' || *p == '\t' || *p == '\r') {
		p++;
	}
	return p;
}

static const char *json_string(const char *p)
{
	if (*p++ != '"') {
		return NULL;
	}
	for (; *p != '"'; p++) {
		if ((unsigned char)*p < 0x20) {
			return NULL;	/* raw control byte, including NUL and "\n" */
		}
		if (*p == '\\') {
			p++;
			if (*p == 'u') {
				int k;

				for (k = 1; k <= 4; k++) {
					if (strchr("0123456789abcdefABCDEF", p[k]) == NULL ||
					    p[k] == '\0') {
						return NULL;
					}
				}
				p += 4;
			} else if (*p == '\0' || strchr("\"\\/bfnrt", *p) == NULL) {
				return NULL;
			}
		}
	}
	return p + 1;
}

static const char *json_number(const char *p)
{
	const char *start;

	if (*p == '-') {
		p++;
	}
	if (*p == '0') {
		p++;
	} else if (*p >= '1' && *p <= '9') {
		while (*p >= '0' && *p <= '9') {
			p++;
		}
	} else {
		return NULL;
	}
	if (*p == '.') {
		start = ++p;
		while (*p >= '0' && *p <= '9') {
			p++;
		}
		if (p == start) {
			return NULL;
		}
	}
	if (*p == 'e' || *p == 'E') {
		p++;
		if (*p == '+' || *p == '-') {
			p++;
		}
		start = p;
		while (*p >= '0' && *p <= '9') {
			p++;
		}
		if (p == start) {
			return NULL;
		}
	}
	return p;
}

static const char *json_container(const char *p, int depth, char close, bool object)
{
	p = json_ws(p + 1);
	if (*p == close) {
		return p + 1;
	}
	for (;;) {
		if (object) {
			p = json_string(p);
			if (p == NULL) {
				return NULL;
			}
			p = json_ws(p);
			if (*p++ != ':') {
				return NULL;
			}
		}
		p = json_value(p, depth + 1);
		if (p == NULL) {
			return NULL;
		}
		p = json_ws(p);
		if (*p == close) {
			return p + 1;
		}
		if (*p++ != ',') {
			return NULL;
		}
	}
}

static const char *json_value(const char *p, int depth)
{
	if (depth > 32) {
		return NULL;
	}
	p = json_ws(p);
	switch (*p) {
	case '{':
		return json_container(p, depth, '}', true);
	case '[':
		return json_container(p, depth, ']', false);
	case '"':
		return json_string(p);
	case 't':
		return strncmp(p, "true", 4) == 0 ? p + 4 : NULL;
	case 'f':
		return strncmp(p, "false", 5) == 0 ? p + 5 : NULL;
	case 'n':
		return strncmp(p, "null", 4) == 0 ? p + 4 : NULL;
	default:
		return json_number(p);
	}
}

/* One line holding exactly one JSON object. */
static void check_json_shape(const char *out)
{
	const char *end;

	CHECK(out[0] == '{');
	CHECK(count_lines(out) == 1);
	end = json_value(out, 0);
	CHECK(end != NULL);
	CHECK(strcmp(end, "\n") == 0);
}

/* The values of every "key": occurrence, in order. Returns how many. */
static size_t json_all(const char *out, const char *key, uint64_t *vals, size_t max)
{
	char pat[80];
	size_t n = 0;
	const char *p = out;

	(void)snprintf(pat, sizeof(pat), "\"%s\":", key);
	while ((p = strstr(p, pat)) != NULL && n < max) {
		p += strlen(pat);
		vals[n++] = strtoull(p, NULL, 10);
	}
	return n;
}

/* ---- Prometheus structure ---- */

/* One # HELP then one # TYPE per name, names never repeat, and every sample sits
 * under the TYPE of its own name. Returns the number of families. */
static size_t check_prom_shape(const char *out)
{
	char names[128][80];
	char cur[80] = "";
	size_t nnames = 0, i;
	const char *line = out;

	while (*line != '\0') {
		const char *eol = strchr(line, '\n');
		size_t len;

		CHECK(eol != NULL);
		len = (size_t)(eol - line);
		CHECK(len > 0);
		if (strncmp(line, "# HELP ", 7) == 0) {
			const char *name = line + 7, *sp = strchr(name, ' ');
			const char *next = eol + 1;
			size_t nlen;

			CHECK(sp != NULL && sp < eol);
			nlen = (size_t)(sp - name);
			CHECK(nlen < sizeof(cur));
			memcpy(cur, name, nlen);
			cur[nlen] = '\0';
			for (i = 0; i < nnames; i++) {
				CHECK(strcmp(names[i], cur) != 0);
			}
			CHECK(nnames < 128);
			memcpy(names[nnames++], cur, nlen + 1);
			/* The TYPE line for the same name follows at once. */
			CHECK(strncmp(next, "# TYPE ", 7) == 0);
			CHECK(strncmp(next + 7, cur, nlen) == 0 && next[7 + nlen] == ' ');
			CHECK(strncmp(next + 8 + nlen, "counter\n", 8) == 0 ||
			      strncmp(next + 8 + nlen, "gauge\n", 6) == 0);
			line = strchr(next, '\n') + 1;
			continue;
		}
		CHECK(line[0] != '#');
		CHECK(cur[0] != '\0');
		CHECK(strncmp(line, cur, strlen(cur)) == 0);
		CHECK(line[strlen(cur)] == '{' || line[strlen(cur)] == ' ');
		CHECK(strncmp(line, "reuseecho_", 10) == 0);
		line = eol + 1;
	}
	return nnames;
}

/* Sum of the values of samples starting with prefix (e.g.
 * "reuseecho_worker_bytes_sent_total{worker=\"") and containing labels. */
static uint64_t prom_sum(const char *out, const char *prefix, const char *labels)
{
	const char *line = out;
	uint64_t sum = 0;

	while (*line != '\0') {
		const char *eol = strchr(line, '\n');
		const char *val = eol;
		char buf[256];
		size_t len = (size_t)(eol - line);

		CHECK(len < sizeof(buf));
		memcpy(buf, line, len);
		buf[len] = '\0';
		if (strncmp(buf, prefix, strlen(prefix)) == 0 && strstr(buf, labels) != NULL) {
			while (val > line && val[-1] != ' ') {
				val--;
			}
			sum += strtoull(val, NULL, 10);
		}
		line = eol + 1;
	}
	return sum;
}

/* ---- workers table ---- */

static const char *const header_cols[] = {
	"id", "cpu", "tid", "state", "active", "accepted", "closed", "bytes_in", "bytes_out",
	"recv_calls", "send_calls", "acceptq", "acceptq_max", "udp_in", "udp_out", "udp_dropped",
	"steered", "steer_episodes", "steered_ms", "cpu_sampled", "cpu_local",
};

#define NCOLS (sizeof(header_cols) / sizeof(header_cols[0]))

/* Split line `row` (0 = header) into at most NCOLS fields; returns the count. */
static size_t table_fields(const char *out, size_t row, char fields[][32])
{
	const char *p = out;
	size_t n = 0, i;

	for (i = 0; i < row; i++) {
		p = strchr(p, '\n');
		CHECK(p != NULL);
		p++;
	}
	for (;;) {
		size_t len = 0;

		while (*p == ' ') {
			p++;
		}
		if (*p == '\n' || *p == '\0') {
			break;
		}
		CHECK(n < NCOLS + 4);
		while (*p != ' ' && *p != '\n' && *p != '\0') {
			CHECK(len < 31);
			fields[n][len++] = *p++;
		}
		fields[n][len] = '\0';
		n++;
	}
	return n;
}

static void check_workers_table(const struct re_snapshot *s, const char *out)
{
	char f[NCOLS + 4][32];
	char want[32];
	size_t i, k;

	check_lines(out);
	CHECK(count_lines(out) == s->nworkers + 1);
	CHECK(table_fields(out, 0, f) == NCOLS);
	for (k = 0; k < NCOLS; k++) {
		CHECK(strcmp(f[k], header_cols[k]) == 0);
	}
	for (i = 0; i < s->nworkers; i++) {
		const struct re_worker_view *w = &s->workers[i];
		uint64_t closed = w->c.closed_eof + w->c.closed_error + w->c.closed_idle +
				  w->c.closed_limit + w->c.closed_drain + w->c.closed_impair;

		CHECK(table_fields(out, i + 1, f) == NCOLS);
		CHECK(strtol(f[0], NULL, 10) == w->id);
		if (w->cpu < 0) {
			CHECK(strcmp(f[1], "-") == 0);
		} else {
			CHECK(strtol(f[1], NULL, 10) == w->cpu);
		}
		CHECK(strtol(f[2], NULL, 10) == w->tid);
		CHECK(strcmp(f[3], re_report_state_name(w->state)) == 0);
		CHECK(strtoull(f[4], NULL, 10) == w->c.active);
		CHECK(strtoull(f[5], NULL, 10) == w->c.accepted);
		(void)snprintf(want, sizeof(want), "%" PRIu64, closed);
		CHECK(strcmp(f[6], want) == 0);
		CHECK(strtoull(f[7], NULL, 10) == w->c.bytes_received);
		CHECK(strtoull(f[8], NULL, 10) == w->c.bytes_sent);
		CHECK(strtoull(f[9], NULL, 10) == w->c.recv_calls);
		CHECK(strtoull(f[10], NULL, 10) == w->c.send_calls);
		CHECK(strtoul(f[11], NULL, 10) == w->acceptq_len);
		CHECK(strtoul(f[12], NULL, 10) == w->acceptq_max);
		CHECK(strtoull(f[13], NULL, 10) == w->c.udp_datagrams_received);
		CHECK(strtoull(f[14], NULL, 10) == w->c.udp_datagrams_sent);
		CHECK(strtoull(f[15], NULL, 10) ==
		      w->c.udp_dropped_truncated + w->c.udp_dropped_queue_full +
		      w->c.udp_dropped_send_error + w->c.udp_dropped_loop_guard +
		      w->c.udp_dropped_not_unicast + w->c.udp_dropped_rate_limit +
		      w->c.udp_kernel_drops);
		CHECK(strtoull(f[16], NULL, 10) == w->c.stall_steered);
		CHECK(strtoull(f[17], NULL, 10) == w->c.stall_steer_episodes);
		CHECK(strtoull(f[18], NULL, 10) == w->c.stall_steered_ms);
		CHECK(strtoull(f[19], NULL, 10) == w->c.incoming_cpu_sampled);
		CHECK(strtoull(f[20], NULL, 10) == w->c.incoming_cpu_local);
	}
}

/* ---- all formats of one snapshot ---- */

static void check_common(const struct re_snapshot *s, struct re_strbuf *sb)
{
	static report_fn *const fns[] = {
		re_report_text, re_report_json, re_report_prometheus, re_report_workers,
	};
	uint64_t vals[MAXW + 2];
	char pat[160];
	const char *out;
	char *counts;
	size_t i;

	for (i = 0; i < sizeof(fns) / sizeof(fns[0]); i++) {
		check_lines(render(fns[i], s, sb));
	}
	re_strbuf_reset(sb);
	re_report_features(&s->features, &s->runtime, sb);
	CHECK(!sb->oom);
	check_lines(sb->data);
	/* so_reuseport, epollrdhup, reuseport_cbpf, tcp_migrate_req, listener_handover,
	 * udp, udp_rcvbuf, service, impairments, kernel, and the two TcpMigrateReq
	 * counters when the kernel has them. */
	CHECK(count_lines(sb->data) ==
	      ((s->features.migrate_success >= 0 && s->features.migrate_failure >= 0) ? 12 : 10));
	CHECK(strstr(sb->data, "\nudp_rcvbuf ") != NULL);
	CHECK(strstr(sb->data, "\nservice ") != NULL);
	CHECK(count_of(sb->data, "\nimpairments ") == 1);
	CHECK(strstr(sb->data, "listener_handover ") != NULL);

	/* JSON: shape, and for every counter total == per-worker sum + retired (counted
	 * up to "imbalance": "impairments" has an "active" key too). */
	out = render(re_report_json, s, sb);
	check_json_shape(out);
	counts = strdup(out);
	CHECK(counts != NULL && strstr(counts, ",\"imbalance\":") != NULL);
	*strstr(counts, ",\"imbalance\":") = '\0';
#define JSON_SUM(field, kind, metric, labels, help) \
	do { \
		uint64_t sum = 0; \
		size_t n = json_all(counts, #field, vals, MAXW + 2), j; \
		CHECK(n == s->nworkers + 2); \
		CHECK(vals[0] == s->total.field); \
		for (j = 1; j <= s->nworkers; j++) { \
			CHECK(vals[j] == s->workers[j - 1].c.field); \
			sum += vals[j]; \
		} \
		CHECK(vals[n - 1] == s->retired.field); \
		CHECK(sum + vals[n - 1] == vals[0]); \
	} while (0);
	RE_STATS_COUNTERS(JSON_SUM)
#undef JSON_SUM
	free(counts);
	(void)snprintf(pat, sizeof(pat), "\"workers\":%zu,", s->nworkers);
	CHECK_HAS(out, pat);
	CHECK(count_of(out, "\"impairments\":{\"active\":") == 1);
	(void)snprintf(pat, sizeof(pat), ",\"share\":%" PRIu32 ",\"accept\":\"%s\"},\"control\":{",
		       s->runtime.share, s->runtime.accept_off ? "off" : "on");
	CHECK_HAS(out, pat);

	/* Prometheus: shape; per X-macro entry, one process-total sample without a
	 * worker label (counters: total, live + retired; gauges: the live sum) and a
	 * per-worker twin family whose series sum to the live workers' counts. No
	 * series anywhere carries the retired counts on their own. */
	out = render(re_report_prometheus, s, sb);
	CHECK(check_prom_shape(out) > 0);
	CHECK_LACKS(out, "worker=\"retired\"");
	CHECK_LACKS(out, "Inf");
#define PROM_SUM(field, kind, metric, labels, help) \
	do { \
		bool counter = strcmp(#kind, "counter") == 0; \
		uint64_t live = 0; \
		if (strcmp(#kind, "counter_ms") == 0) { \
			break;	/* in seconds: checked below */ \
		} \
		for (i = 0; i < s->nworkers; i++) { \
			live += s->workers[i].c.field; \
		} \
		if (labels[0] != '\0') { \
			(void)snprintf(pat, sizeof(pat), "\nreuseecho_%s{%s} %" PRIu64 "\n", \
				       metric, labels, counter ? s->total.field : live); \
		} else { \
			(void)snprintf(pat, sizeof(pat), "\nreuseecho_%s %" PRIu64 "\n", metric, \
				       counter ? s->total.field : live); \
		} \
		CHECK_HAS(out, pat); \
		(void)snprintf(pat, sizeof(pat), "reuseecho_worker_%s{worker=\"", metric); \
		CHECK(prom_sum(out, pat, labels) == live); \
		(void)snprintf(pat, sizeof(pat), "\nreuseecho_%s{worker=", metric); \
		CHECK_LACKS(out, pat); \
		(void)snprintf(pat, sizeof(pat), "# HELP reuseecho_%s ", metric); \
		CHECK(count_of(out, pat) == 1); \
		(void)snprintf(pat, sizeof(pat), "# TYPE reuseecho_%s %s\n", metric, \
			       counter ? "counter" : "gauge"); \
		CHECK(count_of(out, pat) == 1); \
		(void)snprintf(pat, sizeof(pat), "# HELP reuseecho_worker_%s ", metric); \
		CHECK(count_of(out, pat) == 1); \
		(void)snprintf(pat, sizeof(pat), "# TYPE reuseecho_worker_%s %s\n", metric, \
			       counter ? "counter" : "gauge"); \
		CHECK(count_of(out, pat) == 1); \
	} while (0);
	RE_STATS_COUNTERS(PROM_SUM)
#undef PROM_SUM
	/* A counter of milliseconds is exposed in seconds, exactly. */
	(void)snprintf(pat, sizeof(pat), "\nreuseecho_stall_steered_seconds_total %" PRIu64 ".%03u\n",
		       s->total.stall_steered_ms / 1000, (unsigned)(s->total.stall_steered_ms % 1000));
	CHECK_HAS(out, pat);
	CHECK(count_of(out, "# TYPE reuseecho_stall_steered_seconds_total counter\n") == 1);
	CHECK(count_of(out, "# TYPE reuseecho_worker_stall_steered_seconds_total counter\n") == 1);
	for (i = 0; i < s->nworkers; i++) {
		(void)snprintf(pat, sizeof(pat), "\nreuseecho_worker_stall_steered_seconds_total{"
			       "worker=\"%d\"} %" PRIu64 ".%03u\n", s->workers[i].id,
			       s->workers[i].c.stall_steered_ms / 1000,
			       (unsigned)(s->workers[i].c.stall_steered_ms % 1000));
		CHECK_HAS(out, pat);
	}
	(void)snprintf(pat, sizeof(pat), "\nreuseecho_workers %zu\n", s->nworkers);
	CHECK_HAS(out, pat);
	CHECK(count_of(out, "reuseecho_worker_info{") == s->nworkers);
	CHECK(count_of(out, "reuseecho_accept_queue_length{") == s->nworkers);
	/* Every impairment kind, set or not. */
	CHECK(count_of(out, "\nreuseecho_impairment_active{kind=\"") == 6);
	CHECK(count_of(out, "\nreuseecho_impairment_share_ratio ") == 1);

	/* Text: the impairments on the second line. */
	out = render(re_report_text, s, sb);
	CHECK(count_of(out, "\nimpairments: ") == 1);
	CHECK(strncmp(strchr(out, '\n'), "\nimpairments: ", 14) == 0);

	check_workers_table(s, render(re_report_workers, s, sb));
}

/* ---- the cases ---- */

static void test_empty(struct re_strbuf *sb)
{
	struct fixture fx;
	struct re_imbalance im;
	const char *out;

	make(&fx, 0, NULL, 0);
	check_common(&fx.s, sb);

	re_report_imbalance(&fx.s, &im);
	CHECK(im.max_accepted == 0 && im.min_accepted == 0);
	CHECK(im.max_min == 1.0);
	CHECK(im.idle_workers == 0);
	CHECK(im.cv == 0.0);

	out = render(re_report_json, &fx.s, sb);
	CHECK_HAS(out, "{\"version\":\"0.1.0\",\"uptime_s\":10931.500,"
		  "\"address\":\"0.0.0.0:7007\",\"port\":7007,\"workers\":0,"
		  "\"total\":{\"accepted\":0,");
	CHECK_HAS(out, "\"per_worker\":[],\"retired\":{\"accepted\":0,");
	CHECK_HAS(out, "\"imbalance\":{\"max_accepted\":0,\"min_accepted\":0,"
		  "\"max_min\":1,\"idle_workers\":0,\"cv\":0}");

	out = render(re_report_prometheus, &fx.s, sb);
	/* No worker: the process totals are there, the per-worker families are empty. */
	CHECK_HAS(out, "\nreuseecho_connections_accepted_total 0\n");
	CHECK_HAS(out, "# TYPE reuseecho_worker_connections_accepted_total counter\n"
		  "# HELP ");
	CHECK_HAS(out, "\nreuseecho_accept_imbalance_ratio 1\n");
	CHECK_HAS(out, "\nreuseecho_accept_imbalance_cv 0\n");
	CHECK_LACKS(out, "worker=\"0\"");

	out = render(re_report_text, &fx.s, sb);
	CHECK_HAS(out, "reuseecho 0.1.0 up 3h02m11s on 0.0.0.0:7007, 0 workers\n");
	CHECK_HAS(out, "balance: no live workers\n");

	out = render(re_report_workers, &fx.s, sb);
	CHECK(count_lines(out) == 1);

	/* A zeroed snapshot (NULL version, no workers array) must not crash. */
	memset(&fx, 0, sizeof(fx));
	fx.s.nworkers = 3;	/* with workers == NULL: treated as none */
	fx.s.features.migrate_req = -1;
	fx.s.features.migrate_success = -1;
	fx.s.features.migrate_failure = -1;
	out = render(re_report_json, &fx.s, sb);
	check_json_shape(out);
	CHECK_HAS(out, "\"tcp_migrate_req\":null,\"kernel\":\"\",\"listener_handover\":\"\","
		       "\"udp\":false,\"udp_rcvbuf\":0,\"service\":\"echo\",\"tcp_migrate_req_success\":null,\"tcp_migrate_req_failure\":null},"
		       "\"impairments\":{\"active\":false,\"delay_ms\":0,\"jitter_ms\":0,"
		       "\"bandwidth\":0,\"close_after\":0,\"reset_after\":0,\"share\":0,"
		       "\"accept\":\"on\"},\"control\":{\"clients\":{\"unix\":0,\"tcp\":0},");
	check_prom_shape(render(re_report_prometheus, &fx.s, sb));
	check_lines(render(re_report_text, &fx.s, sb));
	CHECK(count_lines(render(re_report_workers, &fx.s, sb)) == 1);
}

static void test_one(struct re_strbuf *sb)
{
	static const uint64_t acc[] = { 12 };
	struct fixture fx;
	const char *out;

	make(&fx, 1, acc, 0);
	fx.w[0].c.closed_eof = 5;
	fx.w[0].c.active = 3;
	fx.w[0].c.bytes_received = 1234567890;
	fx.w[0].acceptq_len = 2;
	memset(&fx.s.total, 0, sizeof(fx.s.total));
	add_counters(&fx.s.total, &fx.w[0].c);
	check_common(&fx.s, sb);

	out = render(re_report_prometheus, &fx.s, sb);
	CHECK_HAS(out, "\nreuseecho_worker_connections_closed_total{worker=\"0\",reason=\"eof\"} 5\n");
	CHECK_HAS(out, "\nreuseecho_connections_closed_total{reason=\"eof\"} 5\n");
	CHECK_HAS(out, "\nreuseecho_worker_connections_accepted_total{worker=\"0\"} 12\n");
	CHECK_HAS(out, "# HELP reuseecho_connections_active Connections open now; whole process\n"
		  "# TYPE reuseecho_connections_active gauge\n"
		  "reuseecho_connections_active 3\n# HELP ");
	CHECK_HAS(out, "# HELP reuseecho_worker_connections_active Connections open now; per live"
		  " worker, the series ends when the worker retires\n"
		  "# TYPE reuseecho_worker_connections_active gauge\n"
		  "reuseecho_worker_connections_active{worker=\"0\"} 3\n# HELP ");
	CHECK_HAS(out, "# TYPE reuseecho_connections_accepted_total counter\n");
	CHECK_HAS(out, "\nreuseecho_accept_queue_length{worker=\"0\"} 2\n");
	CHECK_HAS(out, "\nreuseecho_accept_queue_limit{worker=\"0\"} 4096\n");
	CHECK_HAS(out, "\nreuseecho_worker_info{worker=\"0\",cpu=\"0\",tid=\"1000\","
		  "state=\"running\"} 1\n");
	CHECK_HAS(out, "\nreuseecho_workers 1\n");
	CHECK_HAS(out, "\nreuseecho_uptime_seconds 10931.5\n");
	CHECK_HAS(out, "\nreuseecho_build_info{version=\"0.1.0\"} 1\n");
	CHECK_HAS(out, "\nreuseecho_accept_imbalance_ratio 1\n");
	CHECK_HAS(out, "\nreuseecho_feature_info{so_reuseport=\"1\",epollrdhup=\"1\","
		  "reuseport_cbpf=\"1\",tcp_migrate_req=\"0\",kernel=\"6.1.0-18-amd64\","
		  "listener_handover=\"\",service=\"echo\",udp=\"0\"} 1\n");
	/* All five close reasons sit in one family, in X-macro order. */
	CHECK(count_of(out, "# HELP reuseecho_connections_closed_total ") == 1);
	CHECK(count_of(out, "# HELP reuseecho_accept_errors_total ") == 1);
	CHECK(count_of(out, "\nreuseecho_connections_closed_total{") == 6);
	CHECK(count_of(out, "\nreuseecho_worker_connections_closed_total{") == 6);

	out = render(re_report_json, &fx.s, sb);
	CHECK_HAS(out, "\"per_worker\":[{\"id\":0,\"cpu\":0,\"tid\":1000,\"state\":\"running\","
		  "\"acceptq_len\":2,\"acceptq_max\":4096,\"accepted\":12,\"closed_eof\":5,");
	CHECK_HAS(out, "\"imbalance\":{\"max_accepted\":12,\"min_accepted\":12,"
		  "\"max_min\":1,\"idle_workers\":0,\"cv\":0}");
	CHECK_HAS(out, "\"features\":{\"so_reuseport\":true,\"epollrdhup\":true,"
		  "\"reuseport_cbpf\":true,\"tcp_migrate_req\":0,"
		  "\"kernel\":\"6.1.0-18-amd64\",\"listener_handover\":\"\",\"udp\":false,\"udp_rcvbuf\":0,"
		  "\"service\":\"echo\",\"tcp_migrate_req_success\":0,\"tcp_migrate_req_failure\":0},"
		  "\"impairments\":{\"active\":false,\"delay_ms\":0,\"jitter_ms\":0,\"bandwidth\":0,"
		  "\"close_after\":0,\"reset_after\":0,\"share\":100,\"accept\":\"on\"},\"control\":{");

	out = render(re_report_text, &fx.s, sb);
	CHECK_HAS(out, "reuseecho 0.1.0 up 3h02m11s on 0.0.0.0:7007, 1 worker\n");
	CHECK_HAS(out, "received 1.2 GB (1234567890 B)");
	CHECK_HAS(out, "balance: accepted max 12 min 12 max/min 1.00 cv 0.000\n");

	out = render(re_report_workers, &fx.s, sb);
	CHECK(count_lines(out) == 2);
}

/* " <v>" followed by ",", "\n" or " B" (a byte count) somewhere in out. */
static bool text_has_value(const char *out, uint64_t v)
{
	static const char *const ends[] = { ",", "\n", " B" };
	char num[40];
	size_t i;

	for (i = 0; i < sizeof(ends) / sizeof(ends[0]); i++) {
		(void)snprintf(num, sizeof(num), " %" PRIu64 "%s", v, ends[i]);
		if (strstr(out, num) != NULL) {
			return true;
		}
	}
	fprintf(stderr, "value %" PRIu64 " missing in:\n%s", v, out);
	return false;
}

static void test_three_retired(struct re_strbuf *sb)
{
	static const uint64_t acc[] = { 10, 20, 30 };
	struct fixture fx;
	struct re_imbalance im;
	const char *out;

	make(&fx, 3, acc, 7);
	check_common(&fx.s, sb);

	re_report_imbalance(&fx.s, &im);
	CHECK(im.max_accepted == 30 && im.min_accepted == 10);
	CHECK_NEAR(im.max_min, 3.0);
	CHECK_NEAR(im.cv, 0.408248);

	out = render(re_report_json, &fx.s, sb);
	/* retired accepted = 7 (its first counter), so 10 + 20 + 30 + 7 */
	CHECK_HAS(out, "\"total\":{\"accepted\":67,");
	CHECK_HAS(out, "\"retired\":{\"accepted\":7,\"closed_eof\":8,");
	CHECK_HAS(out, "{\"id\":2,\"cpu\":null,\"tid\":1002,\"state\":\"running\",");
	CHECK_HAS(out, "{\"id\":1,\"cpu\":1,\"tid\":1001,\"state\":\"draining\",");
	CHECK_HAS(out, "\"imbalance\":{\"max_accepted\":30,\"min_accepted\":10,"
		  "\"max_min\":3,\"idle_workers\":0,\"cv\":0.408248}");

	out = render(re_report_prometheus, &fx.s, sb);
	CHECK_HAS(out, "\nreuseecho_connections_accepted_total 67\n");
	/* closed_eof: 101 + 201 + 301 live + 8 retired */
	CHECK_HAS(out, "\nreuseecho_connections_closed_total{reason=\"eof\"} 611\n");
	CHECK_HAS(out, "\nreuseecho_worker_connections_closed_total{worker=\"1\",reason=\"eof\"} 201\n");
	CHECK_HAS(out, "\nreuseecho_worker_info{worker=\"2\",cpu=\"-\",tid=\"1002\","
		  "state=\"running\"} 1\n");
	CHECK_HAS(out, "\nreuseecho_accept_imbalance_ratio 3\n");
	CHECK_HAS(out, "\nreuseecho_accept_imbalance_cv 0.408248\n");
	/* active: 114 + 214 + 314 live; the retired fixture's value is not "open now". */
	CHECK_HAS(out, "\nreuseecho_connections_active 642\n");

	/* Text: every total appears (fill_counters made them distinct). */
	out = render(re_report_text, &fx.s, sb);
#define TEXT_HAS(field, kind, metric, labels, help) \
	CHECK(text_has_value(out, fx.s.total.field));
	RE_STATS_COUNTERS(TEXT_HAS)
#undef TEXT_HAS
	CHECK_HAS(out, "balance: accepted max 30 min 10 max/min 3.00 cv 0.408\n");

	out = render(re_report_workers, &fx.s, sb);
	CHECK(count_lines(out) == 4);
}

static void test_min_zero(struct re_strbuf *sb)
{
	static const uint64_t acc[] = { 0, 5 };
	struct fixture fx;
	struct re_imbalance im;
	const char *out;

	make(&fx, 2, acc, 0);
	check_common(&fx.s, sb);

	re_report_imbalance(&fx.s, &im);
	CHECK(im.max_accepted == 5 && im.min_accepted == 0);
	CHECK(im.max_min == 1.0);	/* the worker without accepts is left out */
	CHECK(im.idle_workers == 1);
	CHECK_NEAR(im.cv, 1.0);

	out = render(re_report_json, &fx.s, sb);
	CHECK_HAS(out, "\"max_min\":1,\"idle_workers\":1,\"cv\":1}");
	out = render(re_report_prometheus, &fx.s, sb);
	CHECK_HAS(out, "\nreuseecho_accept_imbalance_ratio 1\n");
	CHECK_HAS(out, "\nreuseecho_accept_imbalance_cv 1\n");
	out = render(re_report_text, &fx.s, sb);
	CHECK_HAS(out, "max/min 1.00 (1 worker without accepts left out) cv 1.000\n");

	/* Right after a grow: two old workers and two new ones with nothing yet, and
	 * a worker at UINT64_MAX. Finite every time. */
	{
		static const uint64_t grown[] = { 900, 0, 300, 0 };
		static const uint64_t huge[] = { UINT64_MAX, 1, 0 };

		make(&fx, 4, grown, 7);
		re_report_imbalance(&fx.s, &im);
		CHECK_NEAR(im.max_min, 3.0);
		CHECK(im.idle_workers == 2);
		CHECK_HAS(render(re_report_prometheus, &fx.s, sb),
			  "\nreuseecho_accept_imbalance_ratio 3\n");
		CHECK_HAS(render(re_report_text, &fx.s, sb), "(2 workers without accepts left out)");
		make(&fx, 3, huge, 0);
		re_report_imbalance(&fx.s, &im);
		CHECK(isfinite(im.max_min) && im.max_min > 1e18);
		CHECK_LACKS(render(re_report_prometheus, &fx.s, sb), "Inf");
	}
}

/* The block of family name: from its "# HELP name " line up to the next "# HELP"
 * (or the end), copied into buf. */
static const char *family_block(const char *out, const char *name, char *buf, size_t cap)
{
	char pat[128];
	const char *p, *end;
	size_t len;

	(void)snprintf(pat, sizeof(pat), "# HELP %s ", name);
	p = strstr(out, pat);
	CHECK(p != NULL);
	CHECK(p == out || p[-1] == '\n');
	end = strstr(p + 1, "\n# HELP ");
	len = end != NULL ? (size_t)(end - p) + 1 : strlen(p);
	CHECK(len < cap);
	memcpy(buf, p, len);
	buf[len] = '\0';
	return buf;
}

#define CHECK_BLOCK(out, name, want) \
	do { \
		char blk_[2048]; \
		const char *got_ = family_block((out), (name), blk_, sizeof(blk_)); \
		if (strcmp(got_, (want)) != 0) { \
			fprintf(stderr, "%s:%d: family %s is\n%s\nwant\n%s\n", __FILE__, \
				__LINE__, (name), got_, (want)); \
			exit(1); \
		} \
	} while (0)

/* Exact exposition after a shrink and a grow: workers 0-2 retired (their final counts
 * are in retired), 3 and 4 live since the start, 5 just started by a grow. Every
 * process-total family holds retired + live, every per-worker family only the live
 * workers' own counts; no "retired" series; the ratio leaves worker 5 out. */
static void test_exposition_exact(struct re_strbuf *sb)
{
	static const uint64_t acc[] = { 40, 10, 0 };
	struct fixture fx;
	const char *out;
	size_t i;

	make(&fx, 3, acc, 0);
	for (i = 0; i < 3; i++) {
		memset(&fx.w[i].c, 0, sizeof(fx.w[i].c));
		fx.w[i].id = 3 + (int)i;
		fx.w[i].state = RE_VIEW_RUNNING;
		fx.w[i].c.accepted = acc[i];
	}
	fx.w[0].c.closed_eof = 38;
	fx.w[0].c.closed_idle = 1;
	fx.w[0].c.active = 1;
	fx.w[0].c.bytes_sent = 4000;
	fx.w[1].c.closed_eof = 9;
	fx.w[1].c.active = 1;
	fx.w[1].c.bytes_sent = 1000;
	memset(&fx.s.retired, 0, sizeof(fx.s.retired));
	fx.s.retired.accepted = 100;
	fx.s.retired.closed_eof = 95;
	fx.s.retired.closed_idle = 5;
	fx.s.retired.bytes_sent = 10000;
	memset(&fx.s.total, 0, sizeof(fx.s.total));
	add_counters(&fx.s.total, &fx.s.retired);
	for (i = 0; i < 3; i++) {
		add_counters(&fx.s.total, &fx.w[i].c);
	}
	check_common(&fx.s, sb);

	out = render(re_report_prometheus, &fx.s, sb);
	CHECK(strncmp(out, "# HELP reuseecho_connections_accepted_total ", 44) == 0);
	CHECK_BLOCK(out, "reuseecho_connections_accepted_total",
		    "# HELP reuseecho_connections_accepted_total Connections accepted; whole"
		    " process, retired workers included\n"
		    "# TYPE reuseecho_connections_accepted_total counter\n"
		    "reuseecho_connections_accepted_total 150\n");
	CHECK_BLOCK(out, "reuseecho_connections_closed_total",
		    "# HELP reuseecho_connections_closed_total Connections closed, by reason;"
		    " whole process, retired workers included\n"
		    "# TYPE reuseecho_connections_closed_total counter\n"
		    "reuseecho_connections_closed_total{reason=\"eof\"} 142\n"
		    "reuseecho_connections_closed_total{reason=\"error\"} 0\n"
		    "reuseecho_connections_closed_total{reason=\"idle\"} 6\n"
		    "reuseecho_connections_closed_total{reason=\"limit\"} 0\n"
		    "reuseecho_connections_closed_total{reason=\"drain\"} 0\n"
		    "reuseecho_connections_closed_total{reason=\"impairment\"} 0\n");
	CHECK_BLOCK(out, "reuseecho_connections_active",
		    "# HELP reuseecho_connections_active Connections open now; whole process\n"
		    "# TYPE reuseecho_connections_active gauge\n"
		    "reuseecho_connections_active 2\n");
	CHECK_BLOCK(out, "reuseecho_bytes_sent_total",
		    "# HELP reuseecho_bytes_sent_total Bytes echoed back to clients; whole"
		    " process, retired workers included\n"
		    "# TYPE reuseecho_bytes_sent_total counter\n"
		    "reuseecho_bytes_sent_total 15000\n");
	CHECK_BLOCK(out, "reuseecho_accept_errors_total",
		    "# HELP reuseecho_accept_errors_total accept4(2) failures, by errno class;"
		    " whole process, retired workers included\n"
		    "# TYPE reuseecho_accept_errors_total counter\n"
		    "reuseecho_accept_errors_total{class=\"emfile\"} 0\n"
		    "reuseecho_accept_errors_total{class=\"other\"} 0\n");
	CHECK_BLOCK(out, "reuseecho_worker_connections_accepted_total",
		    "# HELP reuseecho_worker_connections_accepted_total Connections accepted;"
		    " per live worker, the series ends when the worker retires\n"
		    "# TYPE reuseecho_worker_connections_accepted_total counter\n"
		    "reuseecho_worker_connections_accepted_total{worker=\"3\"} 40\n"
		    "reuseecho_worker_connections_accepted_total{worker=\"4\"} 10\n"
		    "reuseecho_worker_connections_accepted_total{worker=\"5\"} 0\n");
	CHECK_BLOCK(out, "reuseecho_worker_connections_closed_total",
		    "# HELP reuseecho_worker_connections_closed_total Connections closed, by"
		    " reason; per live worker, the series ends when the worker retires\n"
		    "# TYPE reuseecho_worker_connections_closed_total counter\n"
		    "reuseecho_worker_connections_closed_total{worker=\"3\",reason=\"eof\"} 38\n"
		    "reuseecho_worker_connections_closed_total{worker=\"3\",reason=\"error\"} 0\n"
		    "reuseecho_worker_connections_closed_total{worker=\"3\",reason=\"idle\"} 1\n"
		    "reuseecho_worker_connections_closed_total{worker=\"3\",reason=\"limit\"} 0\n"
		    "reuseecho_worker_connections_closed_total{worker=\"3\",reason=\"drain\"} 0\n"
		    "reuseecho_worker_connections_closed_total{worker=\"3\",reason=\"impairment\"} 0\n"
		    "reuseecho_worker_connections_closed_total{worker=\"4\",reason=\"eof\"} 9\n"
		    "reuseecho_worker_connections_closed_total{worker=\"4\",reason=\"error\"} 0\n"
		    "reuseecho_worker_connections_closed_total{worker=\"4\",reason=\"idle\"} 0\n"
		    "reuseecho_worker_connections_closed_total{worker=\"4\",reason=\"limit\"} 0\n"
		    "reuseecho_worker_connections_closed_total{worker=\"4\",reason=\"drain\"} 0\n"
		    "reuseecho_worker_connections_closed_total{worker=\"4\",reason=\"impairment\"} 0\n"
		    "reuseecho_worker_connections_closed_total{worker=\"5\",reason=\"eof\"} 0\n"
		    "reuseecho_worker_connections_closed_total{worker=\"5\",reason=\"error\"} 0\n"
		    "reuseecho_worker_connections_closed_total{worker=\"5\",reason=\"idle\"} 0\n"
		    "reuseecho_worker_connections_closed_total{worker=\"5\",reason=\"limit\"} 0\n"
		    "reuseecho_worker_connections_closed_total{worker=\"5\",reason=\"drain\"} 0\n"
		    "reuseecho_worker_connections_closed_total{worker=\"5\",reason=\"impairment\"} 0\n");
	CHECK_BLOCK(out, "reuseecho_worker_connections_active",
		    "# HELP reuseecho_worker_connections_active Connections open now; per live"
		    " worker, the series ends when the worker retires\n"
		    "# TYPE reuseecho_worker_connections_active gauge\n"
		    "reuseecho_worker_connections_active{worker=\"3\"} 1\n"
		    "reuseecho_worker_connections_active{worker=\"4\"} 1\n"
		    "reuseecho_worker_connections_active{worker=\"5\"} 0\n");
	CHECK_BLOCK(out, "reuseecho_worker_bytes_sent_total",
		    "# HELP reuseecho_worker_bytes_sent_total Bytes echoed back to clients; per"
		    " live worker, the series ends when the worker retires\n"
		    "# TYPE reuseecho_worker_bytes_sent_total counter\n"
		    "reuseecho_worker_bytes_sent_total{worker=\"3\"} 4000\n"
		    "reuseecho_worker_bytes_sent_total{worker=\"4\"} 1000\n"
		    "reuseecho_worker_bytes_sent_total{worker=\"5\"} 0\n");
	CHECK_BLOCK(out, "reuseecho_workers",
		    "# HELP reuseecho_workers Live worker threads\n"
		    "# TYPE reuseecho_workers gauge\n"
		    "reuseecho_workers 3\n");
	CHECK_BLOCK(out, "reuseecho_accept_imbalance_ratio",
		    "# HELP reuseecho_accept_imbalance_ratio Most over fewest connections"
		    " accepted by a live worker, over the workers that accepted at least one"
		    " (1 when none did)\n"
		    "# TYPE reuseecho_accept_imbalance_ratio gauge\n"
		    "reuseecho_accept_imbalance_ratio 4\n");
	/* Every X-macro entry's metric gives exactly two families: 2 x 14 today. */
	{
		size_t fams = 0, k, j;
		static const char *const metrics[] = {
#define NAME(field, kind, metric, labels, help) metric,
			RE_STATS_COUNTERS(NAME)
#undef NAME
		};

		for (k = 0; k < sizeof(metrics) / sizeof(metrics[0]); k++) {
			for (j = 0; j < k && strcmp(metrics[j], metrics[k]) != 0; j++) {
			}
			fams += j == k;
		}
		CHECK(count_of(out, "# HELP reuseecho_worker_") == fams + 2);	/* + info, stalled */
	}
	CHECK_HAS(render(re_report_json, &fx.s, sb),
		  "\"imbalance\":{\"max_accepted\":40,\"min_accepted\":0,\"max_min\":4,"
		  "\"idle_workers\":1,\"cv\":");
}

/* Hostile strings: quotes, backslashes, newlines, a full array with no NUL. */
static void test_escaping(struct re_strbuf *sb)
{
	static const uint64_t acc[] = { 1 };
	struct fixture fx;
	const char *out;

	make(&fx, 1, acc, 0);
	(void)snprintf(fx.s.address, sizeof(fx.s.address), "a\"b\\c\nd\te\x01");
	(void)snprintf(fx.s.features.kernel, sizeof(fx.s.features.kernel), "6.1\"x\\y\nz w");
	fx.s.features.migrate_req = -1;
	fx.s.features.migrate_success = -1;
	fx.s.features.migrate_failure = -1;
	(void)snprintf(fx.s.features.handover, sizeof(fx.s.features.handover), "none");
	fx.s.features.cbpf = false;
	fx.s.version = "0.1.0\n";
	check_common(&fx.s, sb);

	out = render(re_report_json, &fx.s, sb);
	CHECK_HAS(out, "\"address\":\"a\\\"b\\\\c\\nd\\te\\u0001\"");
	CHECK_HAS(out, "\"version\":\"0.1.0\\n\"");
	CHECK_HAS(out, "\"reuseport_cbpf\":false,\"tcp_migrate_req\":null,"
		  "\"kernel\":\"6.1\\\"x\\\\y\\nz w\",\"listener_handover\":\"none\",\"udp\":false,\"udp_rcvbuf\":0,"
		  "\"service\":\"echo\",\"tcp_migrate_req_success\":null,\"tcp_migrate_req_failure\":null},"
		  "\"impairments\":{\"active\":false,");

	out = render(re_report_prometheus, &fx.s, sb);
	CHECK_HAS(out, "reuseport_cbpf=\"0\",tcp_migrate_req=\"absent\","
		  "kernel=\"6.1\\\"x\\\\y\\nz w\",listener_handover=\"none\",service=\"echo\",udp=\"0\"} 1\n");
	CHECK_HAS(out, "reuseecho_build_info{version=\"0.1.0\\n\"} 1\n");

	out = render(re_report_text, &fx.s, sb);
	CHECK(count_lines(out) == 16);	/* impairments, resets, impaired, memory, udp, steering and control lines included */
	CHECK_HAS(out, "reuseecho 0.1.0? up 3h02m11s on a\"b\\c?d?e?, 1 worker\n");

	re_strbuf_reset(sb);
	re_report_features(&fx.s.features, &fx.s.runtime, sb);
	CHECK(strcmp(sb->data, "so_reuseport yes\nepollrdhup yes\nreuseport_cbpf no\n"
		     "tcp_migrate_req absent\nlistener_handover none\nudp off\nudp_rcvbuf 0\nservice echo\n"
		     "impairments none\nkernel 6.1\"x\\y?z_w\n") == 0);

	/* Arrays filled to the brim: no terminating NUL inside them. */
	memset(fx.s.address, 'A', sizeof(fx.s.address));
	memset(fx.s.features.kernel, 'K', sizeof(fx.s.features.kernel));
	check_json_shape(render(re_report_json, &fx.s, sb));
	check_prom_shape(render(re_report_prometheus, &fx.s, sb));
	check_lines(render(re_report_text, &fx.s, sb));
	re_strbuf_reset(sb);
	re_report_features(&fx.s.features, &fx.s.runtime, sb);
	check_lines(sb->data);
}

static void test_text_durations(struct re_strbuf *sb)
{
	static const struct {
		double secs;
		const char *want;
	} cases[] = {
		{ 0.0, " up 0s on " },
		{ 59.9, " up 59s on " },
		{ 61.0, " up 1m01s on " },
		{ 3600.0, " up 1h00m00s on " },
		{ 90061.0, " up 1d01h01m01s on " },
		{ -5.0, " up 0s on " },
	};
	struct fixture fx;
	size_t i;

	make(&fx, 0, NULL, 0);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		fx.s.uptime_s = cases[i].secs;
		CHECK_HAS(render(re_report_text, &fx.s, sb), cases[i].want);
	}
	fx.s.uptime_s = NAN;
	CHECK_HAS(render(re_report_json, &fx.s, sb), "\"uptime_s\":null,");
	CHECK_HAS(render(re_report_prometheus, &fx.s, sb), "\nreuseecho_uptime_seconds NaN\n");
}

/* A bounded buffer runs out and says so instead of truncating silently. */
static void test_oom(void)
{
	static const uint64_t acc[] = { 1, 2, 3 };
	struct re_strbuf small;
	struct fixture fx;

	make(&fx, 3, acc, 1);
	re_strbuf_init(&small, 64);
	re_report_prometheus(&fx.s, &small);
	CHECK(small.oom);
	re_strbuf_finish(&small);
}

/* The control thread's counters: each value where it belongs, in every format. */
static void test_control_counters(struct re_strbuf *sb)
{
	static const uint64_t acc[] = { 5 };
	struct re_control_counters *k;
	struct fixture fx;
	const char *out;

	make(&fx, 1, acc, 0);
	k = &fx.s.control;
	k->clients[RE_CONTROL_UNIX] = 3;
	k->clients[RE_CONTROL_TCP] = 64;
	k->clients_limit[RE_CONTROL_UNIX] = 64;
	k->clients_limit[RE_CONTROL_TCP] = 65;
	k->accepted[RE_CONTROL_UNIX] = 11;
	k->accepted[RE_CONTROL_TCP] = 12;
	k->refused_busy = 13;
	k->refused_peer = 14;
	k->refused_tcp = 23;
	k->evicted = 15;
	k->header_timeouts = 16;
	k->idle_timeouts = 17;
	k->accept_fd_limit[RE_CONTROL_UNIX] = 18;
	k->accept_fd_limit[RE_CONTROL_TCP] = 19;
	k->accept_backoffs[RE_CONTROL_UNIX] = 20;
	k->accept_backoffs[RE_CONTROL_TCP] = 21;
	k->fd_reserve_uses = 22;
	k->fd_reserve_free = 7;
	k->fd_reserve_size = 8;

	out = render(re_report_json, &fx.s, sb);
	check_json_shape(out);
	CHECK_HAS(out, ",\"control\":{\"clients\":{\"unix\":3,\"tcp\":64},"
		       "\"clients_limit\":{\"unix\":64,\"tcp\":65},"
		       "\"clients_accepted\":{\"unix\":11,\"tcp\":12},\"refused_busy\":13,"
		       "\"refused_peer\":14,\"refused_tcp\":23,\"evicted\":15,\"header_timeouts\":16,"
		       "\"idle_timeouts\":17,\"accept_fd_limit\":{\"unix\":18,\"tcp\":19},"
		       "\"accept_backoffs\":{\"unix\":20,\"tcp\":21},\"fd_reserve_uses\":22,"
		       "\"fd_reserve_free\":7,\"fd_reserve_size\":8}}\n");

	out = render(re_report_prometheus, &fx.s, sb);
	CHECK(check_prom_shape(out) > 0);
	CHECK_HAS(out, "\nreuseecho_control_clients{listener=\"unix\"} 3\n"
		       "reuseecho_control_clients{listener=\"tcp\"} 64\n");
	CHECK_HAS(out, "\nreuseecho_control_clients_limit{listener=\"unix\"} 64\n"
		       "reuseecho_control_clients_limit{listener=\"tcp\"} 65\n");
	CHECK_HAS(out, "\nreuseecho_control_clients_accepted_total{listener=\"unix\"} 11\n"
		       "reuseecho_control_clients_accepted_total{listener=\"tcp\"} 12\n");
	CHECK_HAS(out, "\nreuseecho_control_clients_refused_total{listener=\"unix\",reason=\"busy\"} 13\n"
		       "reuseecho_control_clients_refused_total{listener=\"unix\",reason=\"peer_uid\"} 14\n"
		       "reuseecho_control_clients_refused_total{listener=\"tcp\",reason=\"burst\"} 23\n");
	CHECK_HAS(out, "\nreuseecho_control_clients_evicted_total{listener=\"tcp\"} 15\n");
	CHECK_HAS(out, "\nreuseecho_control_header_timeouts_total 16\n");
	CHECK_HAS(out, "\nreuseecho_control_idle_timeouts_total 17\n");
	CHECK_HAS(out, "\nreuseecho_control_accept_fd_limit_total{listener=\"unix\"} 18\n"
		       "reuseecho_control_accept_fd_limit_total{listener=\"tcp\"} 19\n");
	CHECK_HAS(out, "\nreuseecho_control_accept_backoffs_total{listener=\"unix\"} 20\n"
		       "reuseecho_control_accept_backoffs_total{listener=\"tcp\"} 21\n");
	CHECK_HAS(out, "\nreuseecho_control_fd_reserve_uses_total 22\n");
	CHECK_HAS(out, "\nreuseecho_control_fd_reserve 7\n");
	CHECK_HAS(out, "\nreuseecho_control_fd_reserve_size 8\n");
	/* No worker label on any control family. */
	CHECK_LACKS(out, "reuseecho_control_clients{worker");
	CHECK(count_of(out, "# TYPE reuseecho_control_") == 12);

	out = render(re_report_text, &fx.s, sb);
	check_lines(out);
	CHECK_HAS(out, "\ncontrol: unix clients 3/64, tcp clients 64/65, refused busy 13, "
		       "refused peer 14, refused tcp 23, evicted 15, header timeouts 16, idle timeouts 17, "
		       "fd limit 37, backoffs 41, fd reserve 7/8 (used 22)\n");
}

/* The impairment settings, exactly, in every format: none, some, all, share alone
 * (a setting that impairs nothing by itself) and accept off alone. */
static void test_impairments(struct re_strbuf *sb)
{
	static const uint64_t acc[] = { 4 };
	static const struct {
		uint32_t delay, jitter;
		uint64_t bandwidth, close_after, reset_after;
		uint32_t share;
		bool accept_off;
		bool active;
		const char *text;	/* the stats line, without "impairments: " */
		const char *feature;	/* the features value */
		const char *prom;	/* 0/1 for delay..accept_off, then the share ratio */
	} cases[] = {
		{ 0, 0, 0, 0, 0, 100, false, false, "none", "none", "0000001" },
		{ 50, 10, 0, 0, 0, 30, false, true, "delay 50 ms, jitter 10 ms, share 30%",
		  "delay=50ms,jitter=10ms,share=30%", "1100000.3" },
		{ 60000, 1, 1048576, 100000, 5000, 0, true, true,
		  "delay 60000 ms, jitter 1 ms, bandwidth 1048576, close-after 100000, "
		  "reset-after 5000, share 0%, accept off",
		  "delay=60000ms,jitter=1ms,bandwidth=1048576,close-after=100000,"
		  "reset-after=5000,share=0%,accept=off", "1111110" },
		{ 0, 0, 0, 0, 0, 30, false, false, "share 30%", "share=30%", "0000000.3" },
		{ 0, 0, 0, 0, 0, 100, true, true, "accept off", "accept=off", "0000011" },
		{ 0, 0, 0, 0, 1, 100, false, true, "reset-after 1", "reset-after=1", "0000101" },
	};
	static const char *const kinds[] = {
		"delay", "jitter", "bandwidth", "close_after", "reset_after", "accept_off",
	};
	struct fixture fx;
	char want[1024], pat[256];
	const char *out;
	size_t i, k;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct re_runtime *rt = &fx.s.runtime;

		make(&fx, 1, acc, 0);
		rt->delay_ms = cases[i].delay;
		rt->jitter_ms = cases[i].jitter;
		rt->bandwidth = cases[i].bandwidth;
		rt->close_after = cases[i].close_after;
		rt->reset_after = cases[i].reset_after;
		rt->share = cases[i].share;
		rt->accept_off = cases[i].accept_off;
		check_common(&fx.s, sb);
		CHECK(re_impair_active(rt) == cases[i].active);

		re_strbuf_reset(sb);
		re_report_impairments(rt, sb);
		CHECK(!sb->oom && strcmp(sb->data, cases[i].text) == 0);

		out = render(re_report_text, &fx.s, sb);
		(void)snprintf(want, sizeof(want), "reuseecho 0.1.0 up 3h02m11s on 0.0.0.0:7007, "
			       "1 worker\nimpairments: %s\nconnections: ", cases[i].text);
		CHECK(strncmp(out, want, strlen(want)) == 0);

		re_strbuf_reset(sb);
		re_report_features(&fx.s.features, rt, sb);
		(void)snprintf(want, sizeof(want), "\nservice echo\nimpairments %s\n",
			       cases[i].feature);
		CHECK_HAS(sb->data, want);

		out = render(re_report_json, &fx.s, sb);
		(void)snprintf(want, sizeof(want), "},\"impairments\":{\"active\":%s,\"delay_ms\":%"
			       PRIu32 ",\"jitter_ms\":%" PRIu32 ",\"bandwidth\":%" PRIu64
			       ",\"close_after\":%" PRIu64 ",\"reset_after\":%" PRIu64
			       ",\"share\":%" PRIu32 ",\"accept\":\"%s\"},\"control\":{",
			       cases[i].active ? "true" : "false", cases[i].delay, cases[i].jitter,
			       cases[i].bandwidth, cases[i].close_after, cases[i].reset_after,
			       cases[i].share, cases[i].accept_off ? "off" : "on");
		CHECK_HAS(out, want);

		out = render(re_report_prometheus, &fx.s, sb);
		(void)snprintf(want, sizeof(want), "# HELP reuseecho_impairment_active 1 while the "
			       "impairment of this kind is set (--delay, --jitter, --bandwidth, "
			       "--close-after, --reset-after, --accept off): the instance misbehaves "
			       "on purpose; never benchmark it\n"
			       "# TYPE reuseecho_impairment_active gauge\n");
		for (k = 0; k < 6; k++) {
			(void)snprintf(pat, sizeof(pat), "reuseecho_impairment_active{kind=\"%s\"} %c\n",
				       kinds[k], cases[i].prom[k]);
			(void)snprintf(want + strlen(want), sizeof(want) - strlen(want), "%s", pat);
		}
		CHECK_BLOCK(out, "reuseecho_impairment_active", want);
		(void)snprintf(want, sizeof(want), "# HELP reuseecho_impairment_share_ratio Share of "
			       "new connections the impairments apply to (--share / 100)\n"
			       "# TYPE reuseecho_impairment_share_ratio gauge\n"
			       "reuseecho_impairment_share_ratio %s\n", cases[i].prom + 6);
		CHECK_BLOCK(out, "reuseecho_impairment_share_ratio", want);
	}
}

int main(void)
{
	struct re_strbuf sb;

	re_strbuf_init(&sb, 0);
	test_empty(&sb);
	test_one(&sb);
	test_three_retired(&sb);
	test_min_zero(&sb);
	test_exposition_exact(&sb);
	test_escaping(&sb);
	test_text_durations(&sb);
	test_oom();
	test_control_counters(&sb);
	test_impairments(&sb);
	re_strbuf_finish(&sb);
	printf("report: all checks passed\n");
	return 0;
}

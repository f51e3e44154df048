/* dump_report: prints re_report_prometheus() of a sample snapshot on stdout, for
 * promtool_report.sh to lint. Usage:
 * dump_report [empty|one|three|zero-min|escape|impaired]
 * (default three). Exit 1 on a bad argument or allocation failure.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "report.h"

static void fill(struct re_stats_counters *c, uint64_t base)
{
	uint64_t k = 0;

#define FILL(field, kind, metric, labels, help) c->field = base + k++;
	RE_STATS_COUNTERS(FILL)
#undef FILL
}

static void add(struct re_stats_counters *out, const struct re_stats_counters *in)
{
#define ADD(field, kind, metric, labels, help) out->field += in->field;
	RE_STATS_COUNTERS(ADD)
#undef ADD
}

int main(int argc, char **argv)
{
	const char *which = argc > 1 ? argv[1] : "three";
	struct re_worker_view w[3];
	struct re_snapshot s;
	struct re_strbuf sb;
	size_t i, n = 3;

	memset(&s, 0, sizeof(s));
	memset(w, 0, sizeof(w));
	s.version = "0.1.0";
	s.uptime_s = 10931.25;
	(void)snprintf(s.address, sizeof(s.address), "0.0.0.0:7007");
	s.port = 7007;
	s.features.reuseport = true;
	s.features.rdhup = true;
	s.features.cbpf = true;
	s.features.migrate_req = 0;
	(void)snprintf(s.features.kernel, sizeof(s.features.kernel), "6.1.0-18-amd64");
	s.runtime.share = 100;

	if (strcmp(which, "empty") == 0) {
		n = 0;
	} else if (strcmp(which, "one") == 0) {
		n = 1;
	} else if (strcmp(which, "escape") == 0) {
		n = 2;
		s.version = "0.1.0 \"dev\"\\";
		s.features.migrate_req = -1;
		(void)snprintf(s.features.kernel, sizeof(s.features.kernel), "6.1\"x\\y\nz w");
	} else if (strcmp(which, "impaired") == 0) {
		n = 1;
		s.runtime.delay_ms = 50;
		s.runtime.jitter_ms = 10;
		s.runtime.bandwidth = 1048576;
		s.runtime.close_after = 100000;
		s.runtime.reset_after = 5000;
		s.runtime.share = 30;
		s.runtime.accept_off = true;
	} else if (strcmp(which, "zero-min") != 0 && strcmp(which, "three") != 0) {
		fprintf(stderr, "dump_report: unknown sample '%s'\n", which);
		return 1;
	}
	for (i = 0; i < n; i++) {
		w[i].id = (int)i;
		w[i].cpu = i == 2 ? -1 : (int)i;
		w[i].tid = 4242 + (pid_t)i;
		w[i].acceptq_len = (uint32_t)i;
		w[i].acceptq_max = 4096;
		w[i].state = (enum re_worker_run_state)(i % 3);
		fill(&w[i].c, 1000 * (i + 1));
		if (strcmp(which, "zero-min") == 0 && i == 0) {
			w[i].c.accepted = 0;
		}
		add(&s.total, &w[i].c);
	}
	if (strcmp(which, "three") == 0 || strcmp(which, "zero-min") == 0) {
		fill(&s.retired, 7);
		add(&s.total, &s.retired);
	}
	s.nworkers = n;
	s.workers = w;

	re_strbuf_init(&sb, 0);
	re_report_prometheus(&s, &sb);
	if (sb.oom || fwrite(sb.data, 1, sb.len, stdout) != sb.len || fflush(stdout) != 0) {
		fprintf(stderr, "dump_report: output failed\n");
		re_strbuf_finish(&sb);
		return 1;
	}
	re_strbuf_finish(&sb);
	return 0;
}

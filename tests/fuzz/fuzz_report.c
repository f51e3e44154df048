/* fuzz_report: libFuzzer target for every re_report_* function. The input is
 * consumed as a snapshot: worker count and flags, counters (biased towards 0 and
 * UINT64_MAX), ids, a raw double for the uptime, arbitrary bytes in version,
 * address and kernel (the last two filling their arrays without a NUL when long), and
 * the runtime settings whose impairments every format shows.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#include "fuzz_check.h"

#define MAX_WORKERS 8

struct input {
	const uint8_t *p;
	size_t left;
};

static void take(struct input *in, void *out, size_t n)
{
	size_t k = n < in->left ? n : in->left;

	memset(out, 0, n);
	memcpy(out, in->p, k);
	in->p += k;
	in->left -= k;
}

static uint8_t take_u8(struct input *in)
{
	uint8_t v;

	take(in, &v, 1);
	return v;
}

static uint32_t take_u32(struct input *in)
{
	uint32_t v;

	take(in, &v, sizeof(v));
	return v;
}

/* One selector byte, then maybe eight more: edge values are common. */
static uint64_t take_counter(struct input *in)
{
	uint8_t sel = take_u8(in);
	uint64_t v;

	switch (sel & 3) {
	case 0:
		return 0;
	case 1:
		return UINT64_MAX - (sel >> 2);
	case 2:
		take(in, &v, sizeof(v));
		return v;
	default:
		return sel >> 2;
	}
}

static void take_counters(struct input *in, struct re_stats_counters *c)
{
#define TAKE(field, kind, metric, labels, help) c->field = take_counter(in);
	RE_STATS_COUNTERS(TAKE)
#undef TAKE
}

/* A length byte, then that many bytes; a length >= cap fills the whole array with no
 * NUL, which report.h allows. */
static void take_array(struct input *in, char *arr, size_t cap)
{
	size_t n = take_u8(in);

	if (n > cap) {
		n = cap;
	}
	memset(arr, 0, cap);
	take(in, arr, n);
}

static void check_lines(const struct re_strbuf *sb)
{
	CHECK(!sb->oom);
	if (sb->len == 0) {
		return;
	}
	CHECK(sb->data != NULL && sb->data[sb->len] == '\0');
	CHECK(memchr(sb->data, '\0', sb->len) == NULL);	/* text, no embedded NUL */
	CHECK(sb->data[0] != '\n');
	CHECK(sb->data[sb->len - 1] == '\n');
	/* The control protocol ends a reply with an empty line: none inside. */
	CHECK(memmem(sb->data, sb->len, "\n\n", 2) == NULL);
}

/* One line; braces and brackets balance outside strings; strings are closed and hold
 * no raw control character; every counter key is present. */
static void check_json(const struct re_strbuf *sb)
{
	int depth_obj = 0, depth_arr = 0;
	bool in_str = false;

	check_lines(sb);
	CHECK(sb->len > 0);
	CHECK(memchr(sb->data, '\n', sb->len) == sb->data + sb->len - 1);
	CHECK(sb->data[0] == '{');
	for (size_t i = 0; i + 1 < sb->len; i++) {
		unsigned char c = (unsigned char)sb->data[i];

		if (in_str) {
			CHECK(c >= 0x20);
			if (c == '\\') {
				i++;
				CHECK(i + 1 < sb->len);
				CHECK(strchr("\"\\/bfnrtu", sb->data[i]) != NULL);
			} else if (c == '"') {
				in_str = false;
			}
			continue;
		}
		switch (c) {
		case '"':
			in_str = true;
			break;
		case '{':
			depth_obj++;
			break;
		case '}':
			depth_obj--;
			CHECK(depth_obj >= 0);
			break;
		case '[':
			depth_arr++;
			break;
		case ']':
			depth_arr--;
			CHECK(depth_arr >= 0);
			break;
		default:
			break;
		}
	}
	CHECK(!in_str);
	CHECK(depth_obj == 0 && depth_arr == 0);
#define KEY(field, kind, metric, labels, help) \
	CHECK(strstr(sb->data, "\"" #field "\":") != NULL);
	RE_STATS_COUNTERS(KEY)
#undef KEY
}

/* Every line is a # HELP, a # TYPE or a reuseecho_ sample; no series is labelled
 * worker="retired" (its counts would be counted twice by sum(increase())); the
 * imbalance ratio is a finite number >= 1. */
static void check_prometheus(const struct re_strbuf *sb, double want_ratio)
{
	static const char ratio[] = "reuseecho_accept_imbalance_ratio ";
	const char *p, *end;
	bool seen_ratio = false;

	check_lines(sb);
	for (p = sb->data; p < sb->data + sb->len; p = end + 1) {
		end = memchr(p, '\n', (size_t)(sb->data + sb->len - p));
		CHECK(end != NULL);
		CHECK(strncmp(p, "# HELP reuseecho_", 17) == 0 ||
		      strncmp(p, "# TYPE reuseecho_", 17) == 0 ||
		      strncmp(p, "reuseecho_", 10) == 0);
		CHECK(memmem(p, (size_t)(end - p), "worker=\"retired\"", 16) == NULL);
		if (strncmp(p, ratio, sizeof(ratio) - 1) == 0) {
			char num[64];
			size_t n = (size_t)(end - p) - (sizeof(ratio) - 1);
			double v;

			CHECK(n > 0 && n < sizeof(num));
			memcpy(num, p + sizeof(ratio) - 1, n);
			num[n] = '\0';
			v = strtod(num, NULL);
			CHECK(isfinite(v) && v >= 1.0);
			CHECK(v >= want_ratio * (1 - 1e-5) && v <= want_ratio * (1 + 1e-5));
			seen_ratio = true;
		}
	}
	CHECK(seen_ratio);
}

/* Every line has exactly nfields blank-separated fields (0: as many as the first
 * line). Returns the number of lines. */
static size_t check_fields(const struct re_strbuf *sb, size_t nfields)
{
	const char *p, *end;
	size_t lines = 0;

	check_lines(sb);
	for (p = sb->data; p < sb->data + sb->len; p = end + 1) {
		size_t n = 0;
		bool in_field = false;

		end = memchr(p, '\n', (size_t)(sb->data + sb->len - p));
		CHECK(end != NULL);
		for (const char *q = p; q < end; q++) {
			bool blank = *q == ' ' || *q == '\t';

			if (!blank && !in_field) {
				n++;
			}
			in_field = !blank;
		}
		if (nfields == 0) {
			nfields = n;
		}
		CHECK(n == nfields);
		lines++;
	}
	return lines;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct input in = { data, size };
	struct re_worker_view *w = NULL;
	struct re_imbalance imb;
	struct re_snapshot s;
	struct re_strbuf sb;
	uint8_t flags, vlen;
	char *version;
	size_t n, i;

	memset(&s, 0, sizeof(s));
	flags = take_u8(&in);
	n = take_u8(&in) % (MAX_WORKERS + 1);

	vlen = take_u8(&in);
	version = malloc((size_t)vlen + 1);	/* exact size: ASan sees an over-read */
	if (version == NULL) {
		return 0;
	}
	take(&in, version, vlen);
	version[vlen] = '\0';
	s.version = version;
	take(&in, &s.uptime_s, sizeof(s.uptime_s));	/* NaN, Inf, negative, denormal */
	take_array(&in, s.address, sizeof(s.address));
	s.port = take_u32(&in);
	s.features.reuseport = flags & 1;
	s.features.rdhup = flags & 2;
	s.features.cbpf = flags & 4;
	s.features.migrate_req = (flags & 8) ? -1 : (int32_t)take_u32(&in);
	take_array(&in, s.features.kernel, sizeof(s.features.kernel));
	take_counters(&in, &s.total);
	take_counters(&in, &s.retired);

	if (n > 0) {
		w = calloc(n, sizeof(*w));	/* exact size */
		if (w == NULL) {
			free(version);
			return 0;
		}
	}
	for (i = 0; i < n; i++) {
		w[i].id = (int)take_u32(&in);
		w[i].cpu = (flags & 16) ? -1 : (int)take_u32(&in);
		w[i].tid = (pid_t)take_u32(&in);
		w[i].acceptq_len = take_u32(&in);
		w[i].acceptq_max = take_u32(&in);
		w[i].state = (enum re_worker_run_state)(take_u8(&in) % 5);	/* 3, 4: unknown */
		take_counters(&in, &w[i].c);
	}
	s.nworkers = n;
	/* report.h: a missing array means no workers, whatever nworkers says. */
	s.workers = (flags & 32) ? NULL : w;
	if (s.workers == NULL && (flags & 64)) {
		s.nworkers = take_u8(&in);
	}
	/* Fields added after the seeds were written come last, so old seeds keep their
	 * meaning. */
	take_array(&in, s.features.handover, sizeof(s.features.handover));
	s.features.migrate_success = (flags & 128) ? -1 : (int64_t)take_counter(&in);
	s.features.migrate_failure = (int64_t)take_counter(&in);
	/* The runtime settings: any value, in range or not, formats as one field. */
	s.runtime.delay_ms = take_u32(&in);
	s.runtime.jitter_ms = take_u32(&in);
	s.runtime.bandwidth = take_counter(&in);
	s.runtime.close_after = take_counter(&in);
	s.runtime.reset_after = take_counter(&in);
	s.runtime.share = take_u32(&in);
	s.runtime.accept_off = take_u8(&in) & 1;

	re_report_imbalance(&s, &imb);
	if (s.workers == NULL || s.nworkers == 0) {
		CHECK(imb.max_accepted == 0 && imb.min_accepted == 0 && imb.max_min == 1.0 &&
		      imb.idle_workers == 0 && imb.cv == 0.0);
	} else {
		uint64_t min_nonzero = UINT64_MAX;
		size_t idle = 0;

		/* Oracle: max over the fewest accepted by a worker that accepted any. */
		for (i = 0; i < s.nworkers; i++) {
			if (s.workers[i].c.accepted == 0) {
				idle++;
			} else if (s.workers[i].c.accepted < min_nonzero) {
				min_nonzero = s.workers[i].c.accepted;
			}
		}
		CHECK(imb.min_accepted <= imb.max_accepted);
		CHECK(imb.idle_workers == idle);
		CHECK(isfinite(imb.max_min) && imb.max_min >= 1.0);
		CHECK(imb.max_min == (idle == s.nworkers ? 1.0 :
				      (double)imb.max_accepted / (double)min_nonzero));
		CHECK(isfinite(imb.cv) && imb.cv >= 0.0);
	}
	for (i = 0; i < 5; i++) {
		CHECK(re_report_state_name((enum re_worker_run_state)i) != NULL);
	}

	re_strbuf_init(&sb, 0);
	re_report_text(&s, &sb);
	check_lines(&sb);

	re_strbuf_reset(&sb);
	re_report_json(&s, &sb);
	check_json(&sb);

	re_strbuf_reset(&sb);
	re_report_prometheus(&s, &sb);
	check_prometheus(&sb, imb.max_min);

	re_strbuf_reset(&sb);
	re_report_workers(&s, &sb);
	/* A header, then one row per live worker, every row as wide as the header. */
	CHECK(check_fields(&sb, 0) == 1 + (s.workers != NULL ? s.nworkers : 0));

	re_strbuf_reset(&sb);
	re_report_features(&s.features, &s.runtime, &sb);
	CHECK(check_fields(&sb, 2) >= 5);	/* "key value" lines */

	/* A bounded buffer: appends past the cap set oom and never write beyond it. */
	re_strbuf_finish(&sb);
	re_strbuf_init(&sb, (size_t)take_u8(&in) * 16);
	re_report_prometheus(&s, &sb);
	CHECK(sb.max == 0 || sb.len <= sb.max);

	re_strbuf_finish(&sb);
	free(w);
	free(version);
	return 0;
}

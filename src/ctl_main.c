/* reuseecho-ctl: send one control command and print the reply, or show a live
 * per-worker view (`top`). Talks the line protocol of the control socket.
 * Exit status: 0 reply OK, 1 reply was ERR, 2 cannot connect or usage error.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "re_version.h"
#include "reuseecho/control.h"
#include "ctlclient.h"
#include "report.h"
#include "strbuf.h"

#define MAX_REPLY (64u * 1024u * 1024u)
#define MAX_WORKERS 4096

static const char usage_text[] =
	"Usage: reuseecho-ctl [OPTIONS] COMMAND [ARGS...]\n"
	"Send COMMAND to a running reuseecho over its control socket and print the reply.\n"
	"Options come before COMMAND: every word from COMMAND on is sent as it is.\n"
	"\n"
	"Options:\n"
	"  -c, --control PATH   control socket (default: the server's default for --port)\n"
	"  -p, --port P         find the default control socket of the instance on port P\n"
	"                       (default 7007)\n"
	"  -t, --timeout S      give up waiting for a reply after S seconds (default 10)\n"
	"  -n, --count N        top: stop after N refreshes (default: until q or Ctrl-C)\n"
	"  -h, --help           this help\n"
	"  -V, --version        print the version\n"
	"\n"
	"Commands: help, stats, stats json, workers, metrics, config, set KEY VALUE,\n"
	"threads N, features, health, shutdown, and top (a live per-worker view that\n"
	"redraws every second: q or Ctrl-C quits).\n"
	"Exit status: 0 OK, 1 the server answered ERR, 2 cannot connect or bad usage.\n";

/* One command over an open connection; its reply (without the final blank line) in
 * c->reply. Returns 0, or -1 with errno (ETIMEDOUT, EPIPE on early EOF, ...). */
static int roundtrip(struct re_ctlclient *c, const char *cmd, int timeout_ms)
{
	int r = re_ctlclient_roundtrip(c, cmd, timeout_ms);

	if (r < 0) {
		errno = -r;
		return -1;
	}
	return 0;
}

/* --- top ----------------------------------------------------------------------- */

struct wrow {
	long id;
	char cpu[16];
	char state[16];
	uint64_t active, accepted, bytes_in, bytes_out, acceptq, acceptq_max;
	uint64_t udp_in, udp_dropped;	/* datagrams; 0 from a server without the columns */
	uint64_t steered, cpu_sampled, cpu_local;
};

static int col_index(char **cols, int ncols, const char *name)
{
	for (int i = 0; i < ncols; i++) {
		if (strcmp(cols[i], name) == 0) {
			return i;
		}
	}
	return -1;
}

static int split(char *line, char **cols, int max)
{
	int n = 0;

	for (char *tok = strtok(line, " \t"); tok != NULL && n < max; tok = strtok(NULL, " \t")) {
		cols[n++] = tok;
	}
	return n;
}

/* Parse the `workers` table by its header names. Returns the row count or -1. */
static int parse_workers(char *text, struct wrow *rows, int max)
{
	char *save = NULL;
	char *line = strtok_r(text, "\n", &save);
	char *hdr[32];
	int nh, n = 0;
	int i_id, i_cpu, i_state, i_active, i_acc, i_in, i_out, i_q, i_qmax, i_uin, i_udrop;
	int i_st, i_cs, i_cl;

	if (line == NULL) {
		return -1;
	}
	nh = split(line, hdr, 32);
	i_id = col_index(hdr, nh, "id");
	i_cpu = col_index(hdr, nh, "cpu");
	i_state = col_index(hdr, nh, "state");
	i_active = col_index(hdr, nh, "active");
	i_acc = col_index(hdr, nh, "accepted");
	i_in = col_index(hdr, nh, "bytes_in");
	i_out = col_index(hdr, nh, "bytes_out");
	i_q = col_index(hdr, nh, "acceptq");
	i_qmax = col_index(hdr, nh, "acceptq_max");
	i_uin = col_index(hdr, nh, "udp_in");
	i_udrop = col_index(hdr, nh, "udp_dropped");
	i_st = col_index(hdr, nh, "steered");
	i_cs = col_index(hdr, nh, "cpu_sampled");
	i_cl = col_index(hdr, nh, "cpu_local");
	if (i_id < 0 || i_active < 0 || i_acc < 0 || i_in < 0 || i_out < 0) {
		return -1;
	}
	while ((line = strtok_r(NULL, "\n", &save)) != NULL && n < max) {
		char *cols[32];
		int nc = split(line, cols, 32);
		struct wrow *r = &rows[n];

		if (nc < nh) {
			continue;
		}
		memset(r, 0, sizeof(*r));
		r->id = strtol(cols[i_id], NULL, 10);
		snprintf(r->cpu, sizeof(r->cpu), "%s", i_cpu >= 0 ? cols[i_cpu] : "-");
		snprintf(r->state, sizeof(r->state), "%s", i_state >= 0 ? cols[i_state] : "?");
		r->active = strtoull(cols[i_active], NULL, 10);
		r->accepted = strtoull(cols[i_acc], NULL, 10);
		r->bytes_in = strtoull(cols[i_in], NULL, 10);
		r->bytes_out = strtoull(cols[i_out], NULL, 10);
		r->acceptq = i_q >= 0 ? strtoull(cols[i_q], NULL, 10) : 0;
		r->acceptq_max = i_qmax >= 0 ? strtoull(cols[i_qmax], NULL, 10) : 0;
		r->udp_in = i_uin >= 0 ? strtoull(cols[i_uin], NULL, 10) : 0;
		r->udp_dropped = i_udrop >= 0 ? strtoull(cols[i_udrop], NULL, 10) : 0;
		r->steered = i_st >= 0 ? strtoull(cols[i_st], NULL, 10) : 0;
		r->cpu_sampled = i_cs >= 0 ? strtoull(cols[i_cs], NULL, 10) : 0;
		r->cpu_local = i_cl >= 0 ? strtoull(cols[i_cl], NULL, 10) : 0;
		n++;
	}
	return n;
}

static const struct wrow *find_row(const struct wrow *rows, int n, long id)
{
	for (int i = 0; i < n; i++) {
		if (rows[i].id == id) {
			return &rows[i];
		}
	}
	return NULL;
}

/* The process totals of `stats json` ("total": live + retired workers, never drops). */
struct totals {
	uint64_t active, accepted, bytes_in, bytes_out;
	bool udp;			/* the server runs with --udp: show the UDP columns */
	uint64_t udp_in, udp_dropped;	/* datagrams received; dropped for any reason */
	char service[12];		/* --service; "echo" from a server without it */
	bool impaired;			/* "impairments.active": the header says IMPAIRED */
	struct re_runtime imp;		/* the impairment settings (others left 0) */
};

/* The UDP drop counters of a `stats json` total: every reason and the kernel's. */
static const char *const udp_drop_keys[] = {
	"udp_dropped_truncated", "udp_dropped_queue_full", "udp_dropped_send_error",
	"udp_dropped_loop_guard", "udp_dropped_not_unicast", "udp_dropped_rate_limit",
	"udp_kernel_drops",
};

/* Value of "key": inside [obj, end). Returns 0 or -1 when absent. */
static int json_u64(const char *obj, const char *end, const char *key, uint64_t *ret)
{
	char pat[64];
	const char *p;

	snprintf(pat, sizeof(pat), "\"%s\":", key);
	p = strstr(obj, pat);
	if (p == NULL || p >= end) {
		return -1;
	}
	*ret = strtoull(p + strlen(pat), NULL, 10);
	return 0;
}

/* The "impairments" object of a `stats json` reply into t; a server without it is
 * not impaired. */
static void parse_impairments(const char *js, struct totals *t)
{
	const char *obj = strstr(js, "\"impairments\":{");
	const char *end = obj != NULL ? strchr(obj, '}') : NULL;
	const char *active, *acc;
	uint64_t v;

	memset(&t->imp, 0, sizeof(t->imp));
	t->imp.share = 100;
	t->impaired = false;
	if (end == NULL) {
		return;
	}
	active = strstr(obj, "\"active\":true");
	t->impaired = active != NULL && active < end;
	if (json_u64(obj, end, "delay_ms", &v) == 0) {
		t->imp.delay_ms = (uint32_t)v;
	}
	if (json_u64(obj, end, "jitter_ms", &v) == 0) {
		t->imp.jitter_ms = (uint32_t)v;
	}
	(void)json_u64(obj, end, "bandwidth", &t->imp.bandwidth);
	(void)json_u64(obj, end, "close_after", &t->imp.close_after);
	(void)json_u64(obj, end, "reset_after", &t->imp.reset_after);
	if (json_u64(obj, end, "share", &v) == 0) {
		t->imp.share = (uint32_t)v;
	}
	acc = strstr(obj, "\"accept\":\"off\"");
	t->imp.accept_off = acc != NULL && acc < end;
}

/* Parse the "total" object of a `stats json` reply. Returns 0 or -1. */
static int parse_totals(const char *js, struct totals *t)
{
	const char *obj = strstr(js, "\"total\":{");
	const char *end = obj != NULL ? strchr(obj, '}') : NULL;

	if (end == NULL) {
		return -1;
	}
	if (json_u64(obj, end, "active", &t->active) < 0 ||
	    json_u64(obj, end, "accepted", &t->accepted) < 0 ||
	    json_u64(obj, end, "bytes_received", &t->bytes_in) < 0 ||
	    json_u64(obj, end, "bytes_sent", &t->bytes_out) < 0) {
		return -1;
	}
	t->udp = strstr(end, "\"udp\":true") != NULL;
	parse_impairments(end, t);
	snprintf(t->service, sizeof(t->service), "echo");
	{
		const char *sv = strstr(end, "\"service\":\"");
		size_t len;

		if (sv != NULL) {
			sv += strlen("\"service\":\"");
			len = strcspn(sv, "\"");
			if (len > 0 && len < sizeof(t->service)) {
				memcpy(t->service, sv, len);
				t->service[len] = '\0';
			}
		}
	}
	t->udp_in = 0;
	t->udp_dropped = 0;
	if (t->udp) {
		uint64_t v;

		if (json_u64(obj, end, "udp_datagrams_received", &t->udp_in) < 0) {
			return -1;
		}
		for (size_t k = 0; k < sizeof(udp_drop_keys) / sizeof(udp_drop_keys[0]); k++) {
			if (json_u64(obj, end, udp_drop_keys[k], &v) < 0) {
				return -1;
			}
			t->udp_dropped += v;
		}
	}
	return 0;
}

static void human_rate(char *buf, size_t len, double bps)
{
	const char *unit[] = { "B", "KB", "MB", "GB", "TB" };
	int u = 0;

	while (bps >= 1000.0 && u < 4) {
		bps /= 1000.0;
		u++;
	}
	snprintf(buf, len, "%.1f %s/s", bps, unit[u]);
}

/* (now - then) / dt, or false when there is no rate: no earlier sample, or a value
 * that went down (which a counter of one worker never does; be safe anyway). */
static bool rate(uint64_t now, uint64_t then, double dt, double *ret)
{
	if (dt <= 0 || now < then) {
		return false;
	}
	*ret = (double)(now - then) / dt;
	return true;
}

static volatile sig_atomic_t top_stop;

static void on_signal(int sig)
{
	(void)sig;
	top_stop = 1;
}

/* One frame. A worker's rates come from its own previous sample only: a worker new
 * since the last frame shows "-" until its second one, a retired worker is simply
 * gone. The "all" row comes from the process totals (live + retired), so a worker
 * retiring between two frames neither loses its last interval nor inflates it.
 * prev_tot NULL: first frame, no rates yet. Balance is over the last interval's
 * accept rates of the workers still accepting. */
static void draw(const char *path, const struct wrow *cur, int n, const struct wrow *prev, int np,
		 const struct totals *tot, const struct totals *prev_tot, double dt, bool tty)
{
	double maxr = 0, minr = INFINITY, sum = 0, sumsq = 0;
	int nrates = 0;
	char in[32], out[32], acc_s[32], uin[32], udrop[32], local[16];
	double acc, bi, bo, ui, ud;

	if (tty) {
		fputs("\033[H\033[2J", stdout);
	}
	printf("reuseecho-ctl top: %s, %d worker%s, service %s, every 1 s (q quits)\n", path,
	       n, n == 1 ? "" : "s", tot->service);
	if (tot->impaired) {
		/* Nobody reads these rates as the server's speed by mistake. */
		struct re_strbuf imp;

		re_strbuf_init(&imp, 1024);
		re_report_impairments(&tot->imp, &imp);
		printf("%sIMPAIRED: %s (not a benchmark)%s\n", tty ? "\033[7m" : "",
		       imp.oom ? "?" : imp.data, tty ? "\033[0m" : "");
		re_strbuf_finish(&imp);
	}
	printf("\n");
	printf("%4s %4s %-9s %8s %10s %14s %14s %9s %7s %6s", "id", "cpu", "state", "active",
	       "accept/s", "in", "out", "acceptq", "steered", "local");
	if (tot->udp) {
		printf(" %10s %10s", "udp in/s", "udp drop/s");
	}
	printf("\n");
	for (int i = 0; i < n; i++) {
		const struct wrow *r = &cur[i];
		const struct wrow *p = find_row(prev, np, r->id);

		if (p != NULL && rate(r->accepted, p->accepted, dt, &acc) &&
		    rate(r->bytes_in, p->bytes_in, dt, &bi) &&
		    rate(r->bytes_out, p->bytes_out, dt, &bo)) {
			snprintf(acc_s, sizeof(acc_s), "%.0f", acc);
			human_rate(in, sizeof(in), bi);
			human_rate(out, sizeof(out), bo);
			if (strcmp(r->state, "draining") != 0) {
				maxr = acc > maxr ? acc : maxr;
				minr = acc < minr ? acc : minr;
				sum += acc;
				sumsq += acc * acc;
				nrates++;
			}
		} else {
			snprintf(acc_s, sizeof(acc_s), "-");
			snprintf(in, sizeof(in), "-");
			snprintf(out, sizeof(out), "-");
		}
		/* Locality over the worker's lifetime: the share of sampled connections
		 * processed on its CPU (--steer cpu aims at 100%). */
		if (r->cpu_sampled > 0) {
			snprintf(local, sizeof(local), "%.0f%%",
				 100.0 * (double)r->cpu_local / (double)r->cpu_sampled);
		} else {
			snprintf(local, sizeof(local), "-");
		}
		printf("%4ld %4s %-9s %8" PRIu64 " %10s %14s %14s %4" PRIu64 "/%-4" PRIu64 " %7s %6s",
		       r->id, r->cpu, r->state, r->active, acc_s, in, out, r->acceptq, r->acceptq_max,
		       r->steered ? "yes" : "-", local);
		if (tot->udp) {
			if (p != NULL && rate(r->udp_in, p->udp_in, dt, &ui) &&
			    rate(r->udp_dropped, p->udp_dropped, dt, &ud)) {
				snprintf(uin, sizeof(uin), "%.0f", ui);
				snprintf(udrop, sizeof(udrop), "%.0f", ud);
			} else {
				snprintf(uin, sizeof(uin), "-");
				snprintf(udrop, sizeof(udrop), "-");
			}
			printf(" %10s %10s", uin, udrop);
		}
		printf("\n");
	}
	if (prev_tot != NULL && rate(tot->accepted, prev_tot->accepted, dt, &acc) &&
	    rate(tot->bytes_in, prev_tot->bytes_in, dt, &bi) &&
	    rate(tot->bytes_out, prev_tot->bytes_out, dt, &bo)) {
		snprintf(acc_s, sizeof(acc_s), "%.0f", acc);
		human_rate(in, sizeof(in), bi);
		human_rate(out, sizeof(out), bo);
	} else {
		snprintf(acc_s, sizeof(acc_s), "-");
		snprintf(in, sizeof(in), "-");
		snprintf(out, sizeof(out), "-");
	}
	printf("%4s %4s %-9s %8" PRIu64 " %10s %14s %14s", "all", "", "", tot->active, acc_s, in,
	       out);
	if (tot->udp) {
		if (prev_tot != NULL && rate(tot->udp_in, prev_tot->udp_in, dt, &ui) &&
		    rate(tot->udp_dropped, prev_tot->udp_dropped, dt, &ud)) {
			snprintf(uin, sizeof(uin), "%.0f", ui);
			snprintf(udrop, sizeof(udrop), "%.0f", ud);
		} else {
			snprintf(uin, sizeof(uin), "-");
			snprintf(udrop, sizeof(udrop), "-");
		}
		printf(" %9s %10s %10s", "", uin, udrop);
	}
	printf("\n");
	if (nrates == 0) {
		printf("\nbalance: no rates yet\n");
	} else if (maxr == 0) {
		printf("\nbalance: no accepts in the last interval\n");
	} else {
		double mean = sum / nrates;
		double var = sumsq / nrates - mean * mean;
		double cv = sqrt(var > 0 ? var : 0) / mean;

		if (minr > 0) {
			printf("\nbalance: accept/s max/min %.2f, cv %.3f\n", maxr / minr, cv);
		} else {
			printf("\nbalance: accept/s max/min n/a (a worker accepted none), cv %.3f\n",
			       cv);
		}
	}
	fflush(stdout);
}

static int run_top(const char *path, int timeout_ms, long count)
{
	struct re_ctlclient cc;
	struct re_strbuf *reply = &cc.reply;
	struct totals tot, prev_tot;
	struct wrow *cur = calloc(MAX_WORKERS, sizeof(*cur));
	struct wrow *prev = calloc(MAX_WORKERS, sizeof(*prev));
	struct termios saved, raw;
	bool tty = isatty(STDOUT_FILENO) && isatty(STDIN_FILENO);
	bool raw_set = false;
	struct timespec t_prev = { 0, 0 };
	int np = 0, rc = 0;
	int cr;

	re_ctlclient_init(&cc, MAX_REPLY);
	cr = re_ctlclient_connect(&cc, path, 0);
	if (cr < 0 || cur == NULL || prev == NULL) {
		fprintf(stderr, "reuseecho-ctl: connect %s: %s\n", path,
			strerror(cr < 0 ? -cr : ENOMEM));
		re_ctlclient_finish(&cc);
		free(cur);
		free(prev);
		return 2;
	}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	if (tty && tcgetattr(STDIN_FILENO, &saved) == 0) {
		raw = saved;
		raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
		raw.c_cc[VMIN] = 0;
		raw.c_cc[VTIME] = 0;
		raw_set = tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0;
		fputs("\033[?1049h\033[?25l", stdout);	/* alternate screen, hide cursor */
	}
	for (long frame = 0; !top_stop && (count <= 0 || frame < count); frame++) {
		struct timespec now;
		struct pollfd pfd = { .fd = STDIN_FILENO, .events = POLLIN };
		double dt;
		int n;

		if (roundtrip(&cc, "stats json", timeout_ms) < 0) {
			rc = 2;
			break;
		}
		if (parse_totals(reply->data ? reply->data : "", &tot) < 0) {
			rc = 1;
			break;
		}
		if (roundtrip(&cc, "workers", timeout_ms) < 0) {
			rc = 2;
			break;
		}
		clock_gettime(CLOCK_MONOTONIC, &now);
		n = parse_workers(reply->data ? reply->data : (char *)"", cur, MAX_WORKERS);
		if (n < 0) {
			rc = 1;
			break;
		}
		dt = (double)(now.tv_sec - t_prev.tv_sec) + (double)(now.tv_nsec - t_prev.tv_nsec) / 1e9;
		draw(path, cur, n, prev, frame == 0 ? 0 : np, &tot, frame == 0 ? NULL : &prev_tot, dt,
		     tty);
		memcpy(prev, cur, (size_t)n * sizeof(*cur));
		np = n;
		prev_tot = tot;
		t_prev = now;
		if (count > 0 && frame + 1 >= count) {
			break;
		}
		/* Wait a second, or less when a key comes. */
		if (poll(&pfd, tty ? 1 : 0, 1000) > 0) {
			char ch;

			if (read(STDIN_FILENO, &ch, 1) == 1 && (ch == 'q' || ch == 'Q' || ch == 3)) {
				break;
			}
		}
	}
	if (tty) {
		fputs("\033[?25h\033[?1049l", stdout);
		fflush(stdout);
		if (raw_set) {
			(void)tcsetattr(STDIN_FILENO, TCSANOW, &saved);
		}
	}
	if (rc == 2) {
		fprintf(stderr, "reuseecho-ctl: %s: %s\n", path, strerror(errno));
	}
	re_ctlclient_finish(&cc);
	free(cur);
	free(prev);
	return rc;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "control", required_argument, NULL, 'c' },
		{ "port", required_argument, NULL, 'p' },
		{ "timeout", required_argument, NULL, 't' },
		{ "count", required_argument, NULL, 'n' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	char path[108] = "";
	char cmd[RE_CONTROL_MAX_LINE + 1];
	unsigned port = RE_DEFAULT_PORT;
	uint64_t v, timeout_ms = 10000;
	long count = 0;
	struct re_ctlclient cc;
	size_t used = 0;
	int opt, r, rc;

	/* "+": options stop at the first word that is not one (the command), as with git
	 * and ip, so that `set idle-timeout -3` reaches the server as written. */
	while ((opt = getopt_long(argc, argv, "+c:p:t:n:hV", opts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			if (strlen(optarg) >= sizeof(path)) {
				fprintf(stderr, "reuseecho-ctl: --control: path too long\n");
				return 2;
			}
			snprintf(path, sizeof(path), "%s", optarg);
			break;
		case 'p':
			if (re_config_parse_uint(optarg, 1, 65535, &v) < 0) {
				fprintf(stderr, "reuseecho-ctl: --port: '%s' is not a port 1-65535\n", optarg);
				return 2;
			}
			port = (unsigned)v;
			break;
		case 't':
			if (re_config_parse_seconds(optarg, 3600000, &v) < 0 || v == 0) {
				fprintf(stderr, "reuseecho-ctl: --timeout: '%s' is not a number of seconds\n",
					optarg);
				return 2;
			}
			timeout_ms = v;
			break;
		case 'n':
			if (re_config_parse_uint(optarg, 1, 1000000000, &v) < 0) {
				fprintf(stderr, "reuseecho-ctl: --count: '%s' is not a count\n", optarg);
				return 2;
			}
			count = (long)v;
			break;
		case 'h':
			fputs(usage_text, stdout);
			return 0;
		case 'V':
			printf("reuseecho-ctl %s\n", RE_VERSION);
			return 0;
		default:
			fprintf(stderr, "reuseecho-ctl: bad usage (see --help)\n");
			return 2;
		}
	}
	if (optind >= argc) {
		fprintf(stderr, "reuseecho-ctl: missing COMMAND (see --help)\n");
		return 2;
	}
	if (path[0] == '\0' && re_control_default_path(port, path, sizeof(path)) < 0) {
		fprintf(stderr, "reuseecho-ctl: default control path too long\n");
		return 2;
	}
	if (strcmp(argv[optind], "top") == 0 && optind + 1 == argc) {
		return run_top(path, (int)timeout_ms, count);
	}
	for (int i = optind; i < argc; i++) {
		size_t l = strlen(argv[i]);

		if (used + l + 1 > RE_CONTROL_MAX_LINE || strchr(argv[i], '\n') != NULL) {
			fprintf(stderr, "reuseecho-ctl: command too long or contains a newline\n");
			return 2;
		}
		if (used > 0) {
			cmd[used++] = ' ';
		}
		memcpy(cmd + used, argv[i], l);
		used += l;
	}
	cmd[used] = '\0';
	re_ctlclient_init(&cc, MAX_REPLY);
	r = re_ctlclient_connect(&cc, path, 0);
	if (r < 0) {
		fprintf(stderr, "reuseecho-ctl: connect %s: %s\n", path, strerror(-r));
		re_ctlclient_finish(&cc);
		return 2;
	}
	if (roundtrip(&cc, cmd, (int)timeout_ms) < 0) {
		fprintf(stderr, "reuseecho-ctl: %s: %s\n", path, strerror(errno));
		rc = 2;
	} else {
		if (cc.reply.len > 0) {
			fwrite(cc.reply.data, 1, cc.reply.len, stdout);
		}
		rc = cc.reply.len >= 4 && memcmp(cc.reply.data, "ERR ", 4) == 0 ? 1 : 0;
	}
	re_ctlclient_finish(&cc);
	return rc;
}

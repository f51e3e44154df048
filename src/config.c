/* config: command-line parsing into struct re_config, and the value parsers that the
 * control socket reuses. No I/O: messages are returned in caller buffers.
 */
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "re_version.h"
#include "reuseecho/control.h"

void re_config_defaults(struct re_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->threads = 0;
	snprintf(cfg->bind, sizeof(cfg->bind), "0.0.0.0");
	cfg->port = RE_DEFAULT_PORT;
	cfg->backlog = RE_DEFAULT_BACKLOG;
	cfg->rt.max_conns = 0;
	cfg->rt.idle_timeout_ms = 0;
	cfg->rt.conn_buffer = RE_DEFAULT_CONN_BUFFER;
	cfg->rt.drain_timeout_ms = RE_DEFAULT_DRAIN_TIMEOUT_MS;
	cfg->rt.max_buffered = RE_DEFAULT_MAX_BUFFERED;
	cfg->udp_rcvbuf = RE_DEFAULT_UDP_RCVBUF;
	cfg->service = RE_SERVICE_ECHO;
	cfg->rt.stall_steer_ms = RE_STALL_STEER_DEFAULT_MS;
	cfg->rt.share = 100;
	cfg->log_level = RE_LOG_INFO;
	cfg->control_mode = 0600;
	cfg->control_timeout_ms = RE_CONTROL_DEFAULT_TIMEOUT_MS;
	snprintf(cfg->metrics_host, sizeof(cfg->metrics_host), "127.0.0.1");
}

/* Digits only: no sign, no leading blanks, no hex. strtoull alone accepts "-1". */
static int parse_digits(const char **p, uint64_t *ret)
{
	uint64_t v = 0;
	const char *s = *p;

	if (!isdigit((unsigned char)*s)) {
		return -EINVAL;
	}
	for (; isdigit((unsigned char)*s); s++) {
		unsigned d = (unsigned)(*s - '0');

		if (v > (UINT64_MAX - d) / 10) {
			return -ERANGE;
		}
		v = v * 10 + d;
	}
	*p = s;
	*ret = v;
	return 0;
}

int re_config_parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *ret)
{
	uint64_t v;
	int r = parse_digits(&s, &v);

	if (r < 0) {
		return r;
	}
	if (*s != '\0') {
		return -EINVAL;
	}
	if (v < min || v > max) {
		return -ERANGE;
	}
	*ret = v;
	return 0;
}

int re_config_parse_size(const char *s, uint64_t min, uint64_t max, uint64_t *ret)
{
	uint64_t v, mult = 1;
	int r = parse_digits(&s, &v);

	if (r < 0) {
		return r;
	}
	switch (tolower((unsigned char)*s)) {
	case '\0':
		break;
	case 'k':
		mult = 1024;
		s++;
		break;
	case 'm':
		mult = 1024 * 1024;
		s++;
		break;
	case 'g':
		mult = 1024 * 1024 * 1024;
		s++;
		break;
	case 'b':
		break;
	default:
		return -EINVAL;
	}
	if (mult > 1 && tolower((unsigned char)*s) == 'i') {
		s++;
		if (tolower((unsigned char)*s) != 'b') {
			return -EINVAL;
		}
	}
	if (tolower((unsigned char)*s) == 'b') {
		s++;
	}
	if (*s != '\0') {
		return -EINVAL;
	}
	if (v > UINT64_MAX / mult) {
		return -ERANGE;
	}
	v *= mult;
	if (v < min || v > max) {
		return -ERANGE;
	}
	*ret = v;
	return 0;
}

int re_config_parse_seconds(const char *s, uint64_t max_ms, uint64_t *ret_ms)
{
	uint64_t whole, frac = 0, scale = 1000;
	int r = parse_digits(&s, &whole);

	if (r < 0) {
		return r;
	}
	if (strcmp(s, "ms") == 0) {
		scale = 1;
		s += 2;
	} else if (*s == '.') {
		int digits = 0;

		s++;
		if (!isdigit((unsigned char)*s)) {
			return -EINVAL;
		}
		for (; isdigit((unsigned char)*s); s++, digits++) {
			if (digits < 3) {
				frac = frac * 10 + (uint64_t)(*s - '0');
			} else if (*s != '0') {
				return -EINVAL;	/* finer than a millisecond */
			}
		}
		for (; digits < 3; digits++) {
			frac *= 10;
		}
	}
	if (*s == 's' && scale == 1000) {
		s++;
	}
	if (*s != '\0') {
		return -EINVAL;
	}
	/* whole * scale + frac <= max_ms, without wrapping when max_ms is near UINT64_MAX */
	if (whole > max_ms / scale || frac > max_ms - whole * scale) {
		return -ERANGE;
	}
	whole = whole * scale + frac;
	*ret_ms = whole;
	return 0;
}

/* --- impairments ------------------------------------------------------------------ */

static const char *const impair_names[RE_IMP_N] = {
	[RE_IMP_DELAY] = "delay",
	[RE_IMP_JITTER] = "jitter",
	[RE_IMP_BANDWIDTH] = "bandwidth",
	[RE_IMP_CLOSE_AFTER] = "close-after",
	[RE_IMP_RESET_AFTER] = "reset-after",
	[RE_IMP_SHARE] = "share",
	[RE_IMP_ACCEPT] = "accept",
};

const char *re_impair_name(enum re_impair k)
{
	return (unsigned)k < RE_IMP_N ? impair_names[k] : "?";
}

int re_impair_parse(enum re_impair k, const char *s, uint64_t *ret, const char **hint)
{
	switch (k) {
	case RE_IMP_DELAY:
	case RE_IMP_JITTER:
		*hint = "0-60 s, decimal seconds or with an 'ms' suffix, e.g. 50ms; 0 = off";
		return re_config_parse_seconds(s, RE_MAX_IMPAIR_DELAY_MS, ret);
	case RE_IMP_BANDWIDTH:
		*hint = "bytes per second, K/M/G suffixes, e.g. 1M; 0 = off";
		return re_config_parse_size(s, 0, RE_MAX_IMPAIR_BYTES, ret);
	case RE_IMP_CLOSE_AFTER:
	case RE_IMP_RESET_AFTER:
		*hint = "bytes, K/M/G suffixes, e.g. 100000; 0 = off";
		return re_config_parse_size(s, 0, RE_MAX_IMPAIR_BYTES, ret);
	case RE_IMP_SHARE:
		*hint = "percent of new connections, 0-100";
		return re_config_parse_uint(s, 0, 100, ret);
	case RE_IMP_ACCEPT:
		*hint = "on or off";
		if (strcmp(s, "on") == 0 || strcmp(s, "off") == 0) {
			*ret = strcmp(s, "off") == 0;
			return 0;
		}
		return -EINVAL;
	case RE_IMP_N:
		break;
	}
	*hint = "?";
	return -EINVAL;
}

uint64_t re_impair_get(const struct re_runtime *rt, enum re_impair k)
{
	switch (k) {
	case RE_IMP_DELAY:
		return rt->delay_ms;
	case RE_IMP_JITTER:
		return rt->jitter_ms;
	case RE_IMP_BANDWIDTH:
		return rt->bandwidth;
	case RE_IMP_CLOSE_AFTER:
		return rt->close_after;
	case RE_IMP_RESET_AFTER:
		return rt->reset_after;
	case RE_IMP_SHARE:
		return rt->share;
	case RE_IMP_ACCEPT:
		return rt->accept_off;
	case RE_IMP_N:
		break;
	}
	return 0;
}

void re_impair_set(struct re_runtime *rt, enum re_impair k, uint64_t v)
{
	switch (k) {
	case RE_IMP_DELAY:
		rt->delay_ms = (uint32_t)v;
		break;
	case RE_IMP_JITTER:
		rt->jitter_ms = (uint32_t)v;
		break;
	case RE_IMP_BANDWIDTH:
		rt->bandwidth = v;
		break;
	case RE_IMP_CLOSE_AFTER:
		rt->close_after = v;
		break;
	case RE_IMP_RESET_AFTER:
		rt->reset_after = v;
		break;
	case RE_IMP_SHARE:
		rt->share = (uint32_t)v;
		break;
	case RE_IMP_ACCEPT:
		rt->accept_off = v != 0;
		break;
	case RE_IMP_N:
		break;
	}
}

bool re_impair_on(const struct re_runtime *rt, enum re_impair k)
{
	return k == RE_IMP_SHARE ? rt->share != 100 : re_impair_get(rt, k) != 0;
}

bool re_runtime_impaired(const struct re_runtime *rt)
{
	return (rt->delay_ms | rt->jitter_ms) != 0 ||
	       (rt->bandwidth | rt->close_after | rt->reset_after) != 0;
}

bool re_impair_active(const struct re_runtime *rt)
{
	return re_runtime_impaired(rt) || rt->accept_off;
}

void re_impair_format(const struct re_runtime *rt, enum re_impair k, char *buf, size_t len)
{
	uint64_t v = re_impair_get(rt, k);

	if (k == RE_IMP_DELAY || k == RE_IMP_JITTER) {
		snprintf(buf, len, "%" PRIu64 " ms", v);
	} else if (k == RE_IMP_ACCEPT) {
		snprintf(buf, len, "%s", v ? "off" : "on");
	} else {
		snprintf(buf, len, "%" PRIu64, v);
	}
}

void re_impair_describe(const struct re_runtime *rt, char *buf, size_t len)
{
	size_t used = 0;

	buf[0] = '\0';
	for (int k = 0; k < RE_IMP_N && used < len; k++) {
		uint64_t v = re_impair_get(rt, (enum re_impair)k);
		const char *sep = used > 0 ? "," : "";
		int n;

		if (!re_impair_on(rt, (enum re_impair)k)) {
			continue;
		}
		if (k == RE_IMP_DELAY || k == RE_IMP_JITTER) {
			n = snprintf(buf + used, len - used, "%s%s=%" PRIu64 "ms", sep, impair_names[k], v);
		} else if (k == RE_IMP_SHARE) {
			n = snprintf(buf + used, len - used, "%s%s=%" PRIu64 "%%", sep, impair_names[k], v);
		} else if (k == RE_IMP_ACCEPT) {
			n = snprintf(buf + used, len - used, "%saccept=off", sep);
		} else {
			n = snprintf(buf + used, len - used, "%s%s=%" PRIu64, sep, impair_names[k], v);
		}
		used += n > 0 ? (size_t)n : 0;
	}
	if (used == 0) {
		snprintf(buf, len, "none");
	}
}

static const char usage_text[] =
	"Usage: reuseecho [OPTIONS]\n"
	"A multithreaded TCP echo server (RFC 862): every byte a client sends comes back,\n"
	"unchanged and in order. Each worker thread is pinned to a CPU and owns its own\n"
	"SO_REUSEPORT listener and edge-triggered epoll instance.\n"
	"\n"
	"Options:\n"
	"  -t, --threads N          worker threads, 1-1024 (default: the number of CPUs in\n"
	"                           the process's affinity mask, or in --cpus)\n"
	"  -b, --bind ADDR          IPv4 or IPv6 literal to listen on (default 0.0.0.0;\n"
	"                           '::' listens on IPv6 and IPv4, dual-stack)\n"
	"  -p, --port P             TCP port, 0-65535 (default 7007; 0 picks one free port\n"
	"                           that every worker shares, free for UDP too with --udp;\n"
	"                           the ready line shows it)\n"
	"      --cpus LIST          pin workers round-robin over these CPUs, e.g. 0-3,6\n"
	"                           (default: every CPU the process may use)\n"
	"      --no-pin             do not pin workers to CPUs\n"
	"      --backlog N          listen(2) backlog per worker, 1-65535 (default 4096;\n"
	"                           the kernel caps it at net.core.somaxconn)\n"
	"      --max-conns N        limit on open client connections over all workers;\n"
	"                           0 = no limit but RLIMIT_NOFILE (default 0). A client\n"
	"                           over the limit is accepted and reset at once\n"
	"      --idle-timeout S     close a connection that moved no byte for S seconds\n"
	"                           (decimal, or with an 'ms' suffix); 0 = off (default\n"
	"                           0). Reset if it has unsent output or unread input\n"
	"      --conn-buffer BYTES  most unsent echo bytes held per connection before the\n"
	"                           server stops reading from it, 4K-1G, K/M/G suffixes\n"
	"                           (default 256K)\n"
	"      --max-buffered BYTES most unsent echo bytes held by all connections\n"
	"                           together; a connection that needs more stops reading\n"
	"                           until some frees, 1M-1T, K/M/G suffixes (default 512M)\n"
	"      --drain-timeout S    on SIGTERM/SIGINT, how long to finish echoing what\n"
	"                           clients already sent before resetting what is left\n"
	"                           (default 10)\n"
	"      --udp                also serve UDP echo on the same address and port\n"
	"                           (default: off; on a public address a UDP echo can\n"
	"                           reflect spoofed traffic: see the README)\n"
	"      --udp-rate PPS       answer at most PPS UDP datagrams per second from one\n"
	"                           source address; 0 = no limit (default 0)\n"
	"      --udp-rcvbuf BYTES   receive buffer each worker's UDP socket asks for\n"
	"                           (64K-1G, K/M/G; 0 = the kernel's default; default 4M)\n"
	"      --service NAME       echo, discard (RFC 863: read and drop) or chargen\n"
	"                           (RFC 864: send the character pattern as fast as the\n"
	"                           client reads), over TCP and --udp; fixed at start\n"
	"                           (default echo)\n"
	"";

/* Three strings: ISO C only promises string literals of 4095 bytes. */
static const char usage_text_steer[] =
	"      --steer MODE         how new connections are spread over the workers: hash\n"
	"                           (the kernel's SO_REUSEPORT hash) or cpu (to the worker\n"
	"                           pinned to the CPU that processes the connection's SYN,\n"
	"                           a classic BPF program; helps when NIC queues and IRQs\n"
	"                           are pinned to the workers' CPUs) (default hash)\n"
	"      --stall-steer S      steer new connections around a worker whose event loop\n"
	"                           has not turned for S seconds (decimal, or with an 'ms'\n"
	"                           suffix, 0.3-600) until it turns again; 0 = off\n"
	"                           (default 0.5)\n";

static const char usage_text_impair[] =
	"      --delay S            impairment (for testing a proxy or load balancer; TCP\n"
	"                           echo; each also `set KEY VALUE` at run time, for new\n"
	"                           and open connections): hold every echoed chunk S\n"
	"                           seconds (or 50ms); 0 = off (default)\n"
	"      --jitter S           impairment: plus or minus up to S, uniform; bytes\n"
	"                           never reorder; 0 = off (default)\n"
	"      --bandwidth BYTES    impairment: echo at most BYTES per second per\n"
	"                           connection (K/M/G); 0 = off (default)\n"
	"      --close-after BYTES  impairment: echo exactly BYTES, then close cleanly\n"
	"                           (FIN); 0 = off (default)\n"
	"      --reset-after BYTES  impairment: echo BYTES, then reset the connection\n"
	"                           (RST); 0 = off (default)\n"
	"      --share PERCENT      share of new connections the impairments apply to,\n"
	"                           chosen at accept (default 100)\n"
	"      --accept MODE        off: stop accepting; the listeners stay bound and the\n"
	"                           kernel queues, then drops, new connections; on:\n"
	"                           accept again (default on)\n";

static const char usage_text2[] =
	"      --control PATH       control socket (Unix stream, line protocol and HTTP GET),\n"
	"                           or 'none' (default: $RUNTIME_DIRECTORY, else\n"
	"                           $XDG_RUNTIME_DIR, else /run (root) or /tmp, file\n"
	"                           reuseecho-PORT.sock: the port is in the name so instances\n"
	"                           on different ports never collide and reuseecho-ctl\n"
	"                           --port P finds it)\n"
	"      --control-mode MODE  octal permission bits of the control socket, set at\n"
	"                           creation (default 0600; peers must still be the same\n"
	"                           user or root)\n"
	"      --control-timeout S  close control clients idle this long (default 30)\n"
	"      --metrics-listen [ADDR:]PORT\n"
	"                           also serve /metrics, /stats and /healthz over HTTP on\n"
	"                           TCP; ADDR defaults to 127.0.0.1 (default: off)\n"
	"      --takeover           replace the instance serving this port without losing a\n"
	"                           connection: join its SO_REUSEPORT group, steer new\n"
	"                           connections here, have it close its listeners after\n"
	"                           draining their queues (through its control socket,\n"
	"                           --control or the default path), then let it serve out\n"
	"                           its connections and exit; both must agree on --udp\n"
	"                           (default: refuse a live port)\n"
	"      --user NAME          after every listener and the control socket are bound,\n"
	"                           drop to this user and its primary group (setgroups,\n"
	"                           setgid, setuid) and check root cannot be regained\n"
	"                           (default: keep the starting user)\n"
	"      --log-level LEVEL    error, warn, info or debug (default info)\n"
	"  -V, --version            print the version and exit\n"
	"  -h, --help               print this help and exit\n"
	"\n"
	"When every worker listens, one line goes to stdout:\n"
	"  reuseecho: listening on ADDR:PORT with N workers\n"
	"Logs go to stderr. Signals: SIGTERM/SIGINT drain and exit 0; a second one exits\n"
	"at once with status 1. Exit status: 0 ok, 1 start-up or runtime failure, 2 usage.\n";

enum {
	OPT_CPUS = 256,
	OPT_NO_PIN,
	OPT_BACKLOG,
	OPT_MAX_CONNS,
	OPT_IDLE_TIMEOUT,
	OPT_CONN_BUFFER,
	OPT_MAX_BUFFERED,
	OPT_DRAIN_TIMEOUT,
	OPT_LOG_LEVEL,
	OPT_CONTROL,
	OPT_CONTROL_MODE,
	OPT_CONTROL_TIMEOUT,
	OPT_METRICS_LISTEN,
	OPT_TAKEOVER,
	OPT_USER,
	OPT_UDP,
	OPT_UDP_RATE,
	OPT_UDP_RCVBUF,
	OPT_SERVICE,
	OPT_STEER,
	OPT_STALL_STEER,
	OPT_DELAY,		/* the impairments, in enum re_impair order */
	OPT_JITTER,
	OPT_BANDWIDTH,
	OPT_CLOSE_AFTER,
	OPT_RESET_AFTER,
	OPT_SHARE,
	OPT_ACCEPT,
};

_Static_assert(OPT_ACCEPT - OPT_DELAY == RE_IMP_ACCEPT && RE_IMP_ACCEPT + 1 == RE_IMP_N,
	       "impairment flags follow enum re_impair");

static const struct option long_options[] = {
	{ "threads", required_argument, NULL, 't' },
	{ "bind", required_argument, NULL, 'b' },
	{ "port", required_argument, NULL, 'p' },
	{ "cpus", required_argument, NULL, OPT_CPUS },
	{ "no-pin", no_argument, NULL, OPT_NO_PIN },
	{ "backlog", required_argument, NULL, OPT_BACKLOG },
	{ "max-conns", required_argument, NULL, OPT_MAX_CONNS },
	{ "idle-timeout", required_argument, NULL, OPT_IDLE_TIMEOUT },
	{ "conn-buffer", required_argument, NULL, OPT_CONN_BUFFER },
	{ "max-buffered", required_argument, NULL, OPT_MAX_BUFFERED },
	{ "drain-timeout", required_argument, NULL, OPT_DRAIN_TIMEOUT },
	{ "log-level", required_argument, NULL, OPT_LOG_LEVEL },
	{ "control", required_argument, NULL, OPT_CONTROL },
	{ "control-mode", required_argument, NULL, OPT_CONTROL_MODE },
	{ "control-timeout", required_argument, NULL, OPT_CONTROL_TIMEOUT },
	{ "metrics-listen", required_argument, NULL, OPT_METRICS_LISTEN },
	{ "takeover", no_argument, NULL, OPT_TAKEOVER },
	{ "user", required_argument, NULL, OPT_USER },
	{ "udp", no_argument, NULL, OPT_UDP },
	{ "udp-rate", required_argument, NULL, OPT_UDP_RATE },
	{ "udp-rcvbuf", required_argument, NULL, OPT_UDP_RCVBUF },
	{ "service", required_argument, NULL, OPT_SERVICE },
	{ "steer", required_argument, NULL, OPT_STEER },
	{ "stall-steer", required_argument, NULL, OPT_STALL_STEER },
	{ "delay", required_argument, NULL, OPT_DELAY },
	{ "jitter", required_argument, NULL, OPT_JITTER },
	{ "bandwidth", required_argument, NULL, OPT_BANDWIDTH },
	{ "close-after", required_argument, NULL, OPT_CLOSE_AFTER },
	{ "reset-after", required_argument, NULL, OPT_RESET_AFTER },
	{ "share", required_argument, NULL, OPT_SHARE },
	{ "accept", required_argument, NULL, OPT_ACCEPT },
	{ "version", no_argument, NULL, 'V' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

/* The flag's long name for messages, found from its getopt value. */
static const char *flag_name(int opt)
{
	for (const struct option *o = long_options; o->name != NULL; o++) {
		if (o->val == opt) {
			return o->name;
		}
	}
	return "?";
}

static int bad_value(char *err, size_t errlen, int opt, const char *arg, int r,
		     const char *range)
{
	if (r == -ERANGE) {
		snprintf(err, errlen, "--%s: '%s' is out of range (%s)", flag_name(opt), arg, range);
	} else {
		snprintf(err, errlen, "--%s: '%s' is not valid (%s)", flag_name(opt), arg, range);
	}
	return -EINVAL;
}

/* Accept "1.2.3.4", "::1", "[::1]" and "fe80::1%eth0"; store without brackets. */
static int parse_bind(const char *arg, char *out, size_t outlen)
{
	char tmp[128];
	struct in6_addr a6;
	struct in_addr a4;
	size_t len = strlen(arg);
	char *pct;

	if (len == 0 || len >= sizeof(tmp)) {
		return -EINVAL;
	}
	if (arg[0] == '[') {
		if (len < 3 || arg[len - 1] != ']') {
			return -EINVAL;
		}
		memcpy(tmp, arg + 1, len - 2);
		tmp[len - 2] = '\0';
	} else {
		memcpy(tmp, arg, len + 1);
	}
	if (inet_pton(AF_INET, tmp, &a4) == 1) {
		snprintf(out, outlen, "%s", tmp);
		return 0;
	}
	pct = strchr(tmp, '%');
	if (pct != NULL) {
		char head[128];

		memcpy(head, tmp, (size_t)(pct - tmp));
		head[pct - tmp] = '\0';
		if (pct[1] == '\0' || inet_pton(AF_INET6, head, &a6) != 1) {
			return -EINVAL;
		}
	} else if (inet_pton(AF_INET6, tmp, &a6) != 1) {
		return -EINVAL;
	}
	snprintf(out, outlen, "%s", tmp);
	return 0;
}

/* "9100", ":9100", "0.0.0.0:9100", "[::1]:9100". */
static int parse_listen(const char *arg, char *host, size_t hostlen, unsigned *ret_port)
{
	const char *colon = strrchr(arg, ':');
	const char *portstr = arg;
	char tmp[64];
	uint64_t port;

	if (colon != NULL) {
		size_t hl = (size_t)(colon - arg);

		portstr = colon + 1;
		if (hl > 0) {
			if (hl >= sizeof(tmp)) {
				return -EINVAL;
			}
			memcpy(tmp, arg, hl);
			tmp[hl] = '\0';
			if (tmp[0] != '[' && strchr(tmp, ':') != NULL) {
				return -EINVAL;	/* a bare IPv6 literal needs brackets */
			}
			if (parse_bind(tmp, host, hostlen) < 0) {
				return -EINVAL;
			}
		}
	}
	if (re_config_parse_uint(portstr, 1, 65535, &port) < 0) {
		return -EINVAL;
	}
	*ret_port = (unsigned)port;
	return 0;
}

int re_config_parse(struct re_config *cfg, int argc, char **argv, char *out, size_t outlen,
		    char *err, size_t errlen)
{
	uint64_t v;
	int opt, r;

	opterr = 0;
	optind = 0;	/* 0, not 1: also resets getopt's state inside a group of short options */
	while ((opt = getopt_long(argc, argv, ":t:b:p:Vh", long_options, NULL)) != -1) {
		const char *arg = optarg;

		switch (opt) {
		case 't':
			r = re_config_parse_uint(arg, 1, RE_MAX_THREADS, &v);
			if (r < 0) {
				return bad_value(err, errlen, opt, arg, r, "an integer 1-1024");
			}
			cfg->threads = (unsigned)v;
			break;
		case 'b':
			if (parse_bind(arg, cfg->bind, sizeof(cfg->bind)) < 0) {
				return bad_value(err, errlen, opt, arg, -EINVAL,
						 "an IPv4 or IPv6 address literal");
			}
			break;
		case 'p':
			r = re_config_parse_uint(arg, 0, 65535, &v);
			if (r < 0) {
				return bad_value(err, errlen, opt, arg, r, "a port 0-65535");
			}
			cfg->port = (unsigned)v;
			break;
		case OPT_CPUS:
			r = re_cpu_parse_list(arg, &cfg->cpus);
			if (r < 0) {
				return bad_value(err, errlen, opt, arg, r,
						 "a CPU list such as 0-3,6");
			}
			cfg->cpus_set = true;
			break;
		case OPT_NO_PIN:
			cfg->no_pin = true;
			break;
		case OPT_BACKLOG:
			r = re_config_parse_uint(arg, 1, 65535, &v);
			if (r < 0) {
				return bad_value(err, errlen, opt, arg, r, "an integer 1-65535");
			}
			cfg->backlog = (int)v;
			break;
		case OPT_MAX_CONNS:
			r = re_config_parse_uint(arg, 0, 100000000, &v);
			if (r < 0) {
				return bad_value(err, errlen, opt, arg, r,
						 "an integer 0-100000000, 0 = no limit");
			}
			cfg->rt.max_conns = v;
			break;
		case OPT_IDLE_TIMEOUT:
			r = re_config_parse_seconds(arg, RE_MAX_TIMEOUT_MS, &v);
			if (r < 0) {
				return bad_value(err, errlen, opt, arg, r,
						 "seconds 0-604800, e.g. 30 or 0.5 or 250ms");
			}
			cfg->rt.idle_timeout_ms = (uint32_t)v;
			break;
		case OPT_CONN_BUFFER:
			r = re_config_parse_size(arg, RE_MIN_CONN_BUFFER, RE_MAX_CONN_BUFFER, &v);
			if (r < 0) {
				return bad_value(err, errlen, opt, arg, r,
						 "bytes 4K-1G, e.g. 65536 or 64K or 1M");
			}
			cfg->rt.conn_buffer = (uint32_t)v;
			break;
		case OPT_MAX_BUFFERED:
			r = re_config_parse_size(arg, RE_MIN_MAX_BUFFERED, RE_MAX_MAX_BUFFERED, &v);
			if (r < 0) {
				return bad_value(err, errlen, opt, arg, r,
						 "bytes 1M-1T, e.g. 64M or 2G");
			}
			cfg->rt.max_buffered = v;
			break;
		case OPT_DRAIN_TIMEOUT:
			r = re_config_parse_seconds(arg, RE_MAX_TIMEOUT_MS, &v);
			if (r < 0) {
				return bad_value(err, errlen, opt, arg, r,
						 "seconds 0-604800, e.g. 10 or 0.5");
			}
			cfg->rt.drain_timeout_ms = (uint32_t)v;
			break;
		case OPT_LOG_LEVEL:
			if (re_log_parse_level(arg, &cfg->log_level) < 0) {
				return bad_value(err, errlen, opt, arg, -EINVAL,
						 "error, warn, info or debug");
			}
			break;
		case OPT_CONTROL:
			if (strcmp(arg, "none") == 0) {
				cfg->control_none = true;
				cfg->control[0] = '\0';
				break;
			}
			if (arg[0] == '\0' || strlen(arg) >= sizeof(cfg->control)) {
				return bad_value(err, errlen, opt, arg, -EINVAL,
						 "a socket path shorter than 108 bytes, or none");
			}
			cfg->control_none = false;
			snprintf(cfg->control, sizeof(cfg->control), "%s", arg);
			break;
		case OPT_CONTROL_MODE: {
			char *end;
			unsigned long m;

			errno = 0;
			m = strtoul(arg, &end, 8);
			if (arg[0] < '0' || arg[0] > '7' || *end != '\0' || errno != 0 || m > 0777 ||
			    (m & 0600) != 0600) {
				return bad_value(err, errlen, opt, arg, -EINVAL,
						 "octal bits 0600-0777 that keep owner read and write");
			}
			cfg->control_mode = (unsigned)m;
			break;
		}
		case OPT_CONTROL_TIMEOUT:
			r = re_config_parse_seconds(arg, RE_MAX_TIMEOUT_MS, &v);
			if (r < 0 || v == 0) {
				return bad_value(err, errlen, opt, arg, r < 0 ? r : -ERANGE,
						 "seconds, more than 0");
			}
			cfg->control_timeout_ms = (uint32_t)v;
			break;
		case OPT_TAKEOVER:
			cfg->takeover = true;
			break;
		case OPT_UDP:
			cfg->udp = true;
			break;
		case OPT_UDP_RATE:
			r = re_config_parse_uint(arg, 0, RE_MAX_UDP_RATE, &v);
			if (r < 0) {
				return bad_value(err, errlen, opt, arg, r,
						 "datagrams per second 0-100000000, 0 = no limit");
			}
			cfg->rt.udp_rate = (uint32_t)v;
			break;
		case OPT_UDP_RCVBUF:
			r = strcmp(arg, "0") == 0 ? (v = 0, 0) :
			    re_config_parse_size(arg, RE_MIN_UDP_RCVBUF, RE_MAX_UDP_RCVBUF, &v);
			if (r < 0) {
				return bad_value(err, errlen, opt, arg, r,
						 "bytes 64K-1G, e.g. 4M, or 0 for the kernel's default");
			}
			cfg->udp_rcvbuf = (uint32_t)v;
			break;
		case OPT_SERVICE:
			r = re_chargen_parse_service(arg, &cfg->service);
			if (r < 0) {
				return bad_value(err, errlen, opt, arg, r, "echo, discard or chargen");
			}
			break;
		case OPT_STEER:
			if (strcmp(arg, "hash") != 0 && strcmp(arg, "cpu") != 0) {
				return bad_value(err, errlen, opt, arg, -EINVAL, "hash or cpu");
			}
			cfg->steer_cpu = strcmp(arg, "cpu") == 0;
			break;
		case OPT_STALL_STEER:
			r = re_config_parse_seconds(arg, RE_MAX_STALL_STEER_MS, &v);
			if (r == 0 && v != 0 && v < RE_MIN_STALL_STEER_MS) {
				r = -ERANGE;
			}
			if (r < 0) {
				return bad_value(err, errlen, opt, arg, r,
						 "0 = off, or seconds 0.3-600, e.g. 0.5 or 800ms");
			}
			cfg->rt.stall_steer_ms = (uint32_t)v;
			break;
		case OPT_USER:
			if (arg[0] == '\0' || strlen(arg) >= sizeof(cfg->user) ||
			    strpbrk(arg, ":/ \t\n") != NULL) {
				return bad_value(err, errlen, opt, arg, -EINVAL, "a user name");
			}
			snprintf(cfg->user, sizeof(cfg->user), "%s", arg);
			break;
		case OPT_METRICS_LISTEN:
			if (parse_listen(arg, cfg->metrics_host, sizeof(cfg->metrics_host),
					 &cfg->metrics_port) < 0) {
				return bad_value(err, errlen, opt, arg, -EINVAL,
						 "[ADDR:]PORT, e.g. 9100 or 127.0.0.1:9100 or [::1]:9100");
			}
			cfg->metrics = true;
			break;
		case 'V':
			snprintf(out, outlen, "reuseecho %s\n", RE_VERSION);
			return RE_CONFIG_EXIT_OK;
		case 'h':
			snprintf(out, outlen, "%s%s%s%s", usage_text, usage_text_steer, usage_text_impair,
				 usage_text2);
			return RE_CONFIG_EXIT_OK;
		case ':':
			snprintf(err, errlen, "%s: missing value", argv[optind - 1]);
			return -EINVAL;
		default:
			if (opt >= OPT_DELAY && opt <= OPT_ACCEPT) {
				enum re_impair k = (enum re_impair)(opt - OPT_DELAY);
				const char *hint;

				r = re_impair_parse(k, arg, &v, &hint);
				if (r < 0) {
					return bad_value(err, errlen, opt, arg, r, hint);
				}
				re_impair_set(&cfg->rt, k, v);
				break;
			}
			if (optopt > 0 && optopt < 256 && strchr("tbpVh", optopt) == NULL) {
				snprintf(err, errlen, "unknown option '-%c' (see --help)", optopt);
			} else if (optopt != 0) {
				/* A known flag given a value it does not take ("--no-pin=1"). */
				snprintf(err, errlen, "--%s: takes no value (see --help)", flag_name(optopt));
			} else {
				snprintf(err, errlen, "unknown option '%s' (see --help)",
					 argv[optind - 1]);
			}
			return -EINVAL;
		}
	}
	if (optind < argc) {
		snprintf(err, errlen, "unexpected argument '%s' (see --help)", argv[optind]);
		return -EINVAL;
	}
	if (cfg->steer_cpu && cfg->no_pin) {
		snprintf(err, errlen, "--steer cpu: needs workers pinned to CPUs (drop --no-pin)");
		return -EINVAL;
	}
	if (cfg->takeover && (cfg->port == 0 || cfg->control_none)) {
		snprintf(err, errlen, "--takeover: needs a fixed --port and the old instance's control socket");
		return -EINVAL;
	}
	return RE_CONFIG_RUN;
}

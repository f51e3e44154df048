/* ctlproto: control-protocol parsers (command lines, HTTP request heads). Pure. */
#include "ctlproto.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

int re_control_default_path(unsigned port, char *buf, size_t len)
{
	const char *dir = getenv("RUNTIME_DIRECTORY");
	int n;

	/* systemd may pass several directories separated by ':'; use the first. */
	if (dir != NULL && dir[0] == '/') {
		size_t dl = strcspn(dir, ":");

		n = snprintf(buf, len, "%.*s/reuseecho-%u.sock", (int)dl, dir, port);
	} else if ((dir = getenv("XDG_RUNTIME_DIR")) != NULL && dir[0] == '/') {
		n = snprintf(buf, len, "%s/reuseecho-%u.sock", dir, port);
	} else if (geteuid() == 0) {
		n = snprintf(buf, len, "/run/reuseecho-%u.sock", port);
	} else {
		n = snprintf(buf, len, "/tmp/reuseecho-%u-%u.sock", (unsigned)geteuid(), port);
	}
	if (n < 0 || (size_t)n >= len) {
		return -ENAMETOOLONG;
	}
	return 0;
}

static const char *const key_names[] = {
	[RE_KEY_MAX_CONNS] = "max-conns",
	[RE_KEY_IDLE_TIMEOUT] = "idle-timeout",
	[RE_KEY_CONN_BUFFER] = "conn-buffer",
	[RE_KEY_DRAIN_TIMEOUT] = "drain-timeout",
	[RE_KEY_MAX_BUFFERED] = "max-buffered",
	[RE_KEY_UDP_RATE] = "udp-rate",
	[RE_KEY_STALL_STEER] = "stall-steer",
};

const char *re_ctlproto_key_name(int key)
{
	if (key >= RE_KEY_IMPAIR) {
		return re_impair_name((enum re_impair)(key - RE_KEY_IMPAIR));
	}
	if ((unsigned)key >= sizeof(key_names) / sizeof(key_names[0])) {
		return "?";
	}
	return key_names[key];
}

static bool is_blank(char c)
{
	return c == ' ' || c == '\t';
}

#define MAX_TOKENS 5
#define MAX_TOKEN 64

/* Split into at most MAX_TOKENS blank-separated words. Returns the count, or -1 when
 * there are too many words or one is too long. */
static int tokenize(const char *s, size_t len, char tok[MAX_TOKENS][MAX_TOKEN])
{
	int n = 0;
	size_t i = 0;

	while (i < len) {
		size_t start;

		while (i < len && is_blank(s[i])) {
			i++;
		}
		if (i == len) {
			break;
		}
		start = i;
		while (i < len && !is_blank(s[i])) {
			i++;
		}
		if (n == MAX_TOKENS || i - start >= MAX_TOKEN) {
			return -1;
		}
		memcpy(tok[n], s + start, i - start);
		tok[n][i - start] = '\0';
		n++;
	}
	return n;
}

static int parse_set(char tok[MAX_TOKENS][MAX_TOKEN], int n, struct re_ctl_cmd *ret, char *err,
		     size_t errlen)
{
	uint64_t v;
	int r;

	if (n != 3) {
		snprintf(err, errlen, "usage: set KEY VALUE (keys: max-conns idle-timeout conn-buffer drain-timeout max-buffered udp-rate stall-steer delay jitter bandwidth close-after reset-after share accept)");
		return -EINVAL;
	}
	if (strcmp(tok[1], "max-conns") == 0) {
		ret->key = RE_KEY_MAX_CONNS;
		r = re_config_parse_uint(tok[2], 0, 100000000, &v);
	} else if (strcmp(tok[1], "idle-timeout") == 0) {
		ret->key = RE_KEY_IDLE_TIMEOUT;
		r = re_config_parse_seconds(tok[2], RE_MAX_TIMEOUT_MS, &v);
	} else if (strcmp(tok[1], "conn-buffer") == 0) {
		ret->key = RE_KEY_CONN_BUFFER;
		r = re_config_parse_size(tok[2], RE_MIN_CONN_BUFFER, RE_MAX_CONN_BUFFER, &v);
	} else if (strcmp(tok[1], "drain-timeout") == 0) {
		ret->key = RE_KEY_DRAIN_TIMEOUT;
		r = re_config_parse_seconds(tok[2], RE_MAX_TIMEOUT_MS, &v);
	} else if (strcmp(tok[1], "max-buffered") == 0) {
		ret->key = RE_KEY_MAX_BUFFERED;
		r = re_config_parse_size(tok[2], RE_MIN_MAX_BUFFERED, RE_MAX_MAX_BUFFERED, &v);
	} else if (strcmp(tok[1], "udp-rate") == 0) {
		ret->key = RE_KEY_UDP_RATE;
		r = re_config_parse_uint(tok[2], 0, RE_MAX_UDP_RATE, &v);
	} else if (strcmp(tok[1], "stall-steer") == 0) {
		ret->key = RE_KEY_STALL_STEER;
		r = re_config_parse_seconds(tok[2], RE_MAX_STALL_STEER_MS, &v);
		if (r == 0 && v != 0 && v < RE_MIN_STALL_STEER_MS) {
			r = -ERANGE;	/* 0 = off, else 300 ms - 600 s */
		}
	} else {
		for (int k = 0; k < RE_IMP_N; k++) {
			if (strcmp(tok[1], re_impair_name((enum re_impair)k)) == 0) {
				const char *hint;

				r = re_impair_parse((enum re_impair)k, tok[2], &v, &hint);
				if (r < 0) {
					snprintf(err, errlen, "%s: bad value '%s'%s (%s)", tok[1], tok[2],
						 r == -ERANGE ? " (out of range)" : "", hint);
					return -EINVAL;
				}
				ret->verb = RE_CTL_SET;
				ret->key = RE_KEY_IMPAIR + k;
				ret->value = v;
				return 1;
			}
		}
		snprintf(err, errlen, "unknown key '%s' (keys: max-conns idle-timeout conn-buffer drain-timeout max-buffered udp-rate stall-steer delay jitter bandwidth close-after reset-after share accept)",
			 tok[1]);
		return -EINVAL;
	}
	if (r < 0) {
		snprintf(err, errlen, "%s: bad value '%s'%s", tok[1], tok[2],
			 r == -ERANGE ? " (out of range)" : "");
		return -EINVAL;
	}
	ret->verb = RE_CTL_SET;
	ret->value = v;
	return 1;
}

int re_ctlproto_parse_line(const char *line, size_t len, struct re_ctl_cmd *ret, char *err,
			   size_t errlen)
{
	char tok[MAX_TOKENS][MAX_TOKEN];
	struct re_ctl_cmd cmd;
	uint64_t v;
	int n;

	memset(&cmd, 0, sizeof(cmd));
	if (len > 0 && line[len - 1] == '\r') {
		len--;
	}
	if (memchr(line, '\0', len) != NULL) {
		snprintf(err, errlen, "NUL byte in command");
		return -EINVAL;
	}
	n = tokenize(line, len, tok);
	if (n < 0) {
		snprintf(err, errlen, "malformed command (try 'help')");
		return -EINVAL;
	}
	if (n == 0) {
		return 0;
	}
#define ONE_WORD(name, verb_)                                                  \
	if (strcmp(tok[0], name) == 0) {                                       \
		if (n != 1) {                                                  \
			snprintf(err, errlen, "usage: %s", name);              \
			return -EINVAL;                                        \
		}                                                              \
		cmd.verb = verb_;                                              \
		*ret = cmd;                                                    \
		return 1;                                                      \
	}
	ONE_WORD("help", RE_CTL_HELP)
	ONE_WORD("workers", RE_CTL_WORKERS)
	ONE_WORD("metrics", RE_CTL_METRICS)
	ONE_WORD("config", RE_CTL_CONFIG)
	ONE_WORD("features", RE_CTL_FEATURES)
	ONE_WORD("health", RE_CTL_HEALTH)
	ONE_WORD("shutdown", RE_CTL_SHUTDOWN)
	ONE_WORD("quit", RE_CTL_QUIT)
	ONE_WORD("listeners", RE_CTL_LISTENERS)
	ONE_WORD("retire", RE_CTL_RETIRE)
#undef ONE_WORD
	if (strcmp(tok[0], "stats") == 0) {
		if (n == 1 || (n == 2 && strcmp(tok[1], "text") == 0)) {
			cmd.verb = RE_CTL_STATS;
		} else if (n == 2 && strcmp(tok[1], "json") == 0) {
			cmd.verb = RE_CTL_STATS_JSON;
		} else {
			snprintf(err, errlen, "usage: stats [json]");
			return -EINVAL;
		}
		*ret = cmd;
		return 1;
	}
	if (strcmp(tok[0], "set") == 0) {
		int r = parse_set(tok, n, &cmd, err, errlen);

		if (r == 1) {
			*ret = cmd;
		}
		return r;
	}
	if (strcmp(tok[0], "threads") == 0) {
		if (n != 2 || re_config_parse_uint(tok[1], 1, RE_MAX_THREADS, &v) < 0) {
			snprintf(err, errlen, "usage: threads N (1-%d)", RE_MAX_THREADS);
			return -EINVAL;
		}
		cmd.verb = RE_CTL_THREADS;
		cmd.value = v;
		*ret = cmd;
		return 1;
	}
	if (strcmp(tok[0], "retire-listener") == 0) {
		if (n != 2 || re_config_parse_uint(tok[1], 0, 1000000, &v) < 0) {
			snprintf(err, errlen, "usage: retire-listener WORKER");
			return -EINVAL;
		}
		cmd.verb = RE_CTL_RETIRE_LISTENER;
		cmd.worker = (int)v;
		*ret = cmd;
		return 1;
	}
	if (strcmp(tok[0], "debug") == 0 && n == 4 && strcmp(tok[1], "stall") == 0) {
		uint64_t id;

		if (re_config_parse_uint(tok[2], 0, 1000000, &id) < 0 ||
		    re_config_parse_uint(tok[3], 1, 60000, &v) < 0) {
			snprintf(err, errlen, "usage: debug stall WORKER MS (1-60000)");
			return -EINVAL;
		}
		cmd.verb = RE_CTL_DEBUG_STALL;
		cmd.worker = (int)id;
		cmd.value = v;
		*ret = cmd;
		return 1;
	}
	if (strcmp(tok[0], "debug") == 0 && n == 3 && strcmp(tok[1], "close-mid-batch") == 0) {
		if (re_config_parse_uint(tok[2], 0, 1000000, &v) < 0) {
			snprintf(err, errlen, "usage: debug close-mid-batch WORKER");
			return -EINVAL;
		}
		cmd.verb = RE_CTL_DEBUG_CLOSE_MID_BATCH;
		cmd.worker = (int)v;
		*ret = cmd;
		return 1;
	}
	snprintf(err, errlen, "unknown command '%.32s' (try 'help')", tok[0]);
	return -EINVAL;
}

bool re_ctlproto_is_http(const char *line, size_t len)
{
	size_t i = 0;

	if (len > 0 && line[len - 1] == '\r') {
		len--;
	}
	/* METHOD SP TARGET SP HTTP/1.x, method in upper case. */
	while (i < len && line[i] >= 'A' && line[i] <= 'Z') {
		i++;
	}
	if (i == 0 || i >= len || line[i] != ' ') {
		return false;
	}
	return len >= 9 && memcmp(line + len - 8, "HTTP/1.", 7) == 0 && line[len - 9] == ' ';
}

int re_ctlproto_parse_http(const char *buf, size_t len, struct re_http_req *ret)
{
	struct re_http_req req;
	const char *eol = memchr(buf, '\n', len);
	const char *sp1, *sp2, *end, *q;
	size_t llen, plen;

	memset(&req, 0, sizeof(req));
	if (eol == NULL) {
		return 400;
	}
	llen = (size_t)(eol - buf);
	if (llen > 0 && buf[llen - 1] == '\r') {
		llen--;
	}
	if (!re_ctlproto_is_http(buf, llen)) {
		return 400;
	}
	end = buf + llen;
	sp1 = memchr(buf, ' ', llen);
	sp2 = end - 9;
	if (sp1 == NULL || sp2 <= sp1) {
		return 400;
	}
	if (end[-1] != '0' && end[-1] != '1') {
		return 505;
	}
	req.minor = end[-1] - '0';
	if ((size_t)(sp1 - buf) == 3 && memcmp(buf, "GET", 3) == 0) {
		req.head = false;
	} else if ((size_t)(sp1 - buf) == 4 && memcmp(buf, "HEAD", 4) == 0) {
		req.head = true;
	} else {
		return 405;
	}
	/* Target: origin form "/path?query", or absolute form "http://host/path". */
	q = sp1 + 1;
	plen = (size_t)(sp2 - q);
	if (plen > 7 && memcmp(q, "http://", 7) == 0) {
		const char *slash = memchr(q + 7, '/', plen - 7);

		if (slash == NULL) {
			q = "/";
			plen = 1;
		} else {
			plen -= (size_t)(slash - q);
			q = slash;
		}
	}
	if (plen == 0 || q[0] != '/') {
		return 400;
	}
	for (size_t i = 0; i < plen; i++) {
		if (q[i] == '?' || q[i] == '#') {
			plen = i;
			break;
		}
		if ((unsigned char)q[i] <= ' ' || (unsigned char)q[i] == 0x7f) {
			return 400;
		}
	}
	if (plen >= sizeof(req.path)) {
		return 414;
	}
	memcpy(req.path, q, plen);
	req.path[plen] = '\0';
	*ret = req;
	return 0;
}

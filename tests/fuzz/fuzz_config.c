/* fuzz_config: libFuzzer target for the command line (re_config_parse) and the value
 * parsers it shares with the control socket (re_config_parse_uint/_size/_seconds,
 * re_cpu_parse_list, re_log_parse_level). The input is split into argv words on NUL
 * and newline bytes.
 */
#include <errno.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "cpu.h"
#include "log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#include "fuzz_check.h"

#define MAX_WORDS 32

/* glibc's getopt keeps a pointer into the previous argv (the rest of a cluster of
 * short options such as "-Vt") that "optind = 1" does not clear; only optind = 0
 * reinitialises it. re_config_parse() is documented as "once per process", so the
 * harness, which calls it again and again, resets that state itself. */
static void reset_getopt(void)
{
	char arg0[] = "reuseecho";
	char *av[] = { arg0, NULL };

	optind = 0;
	opterr = 0;
	(void)getopt(1, av, "");
}

/* Independent model of the digits-only grammar: value, or -1 (syntax) / -2 (over 64 bits). */
static int model_digits(const char *s, const char **end, unsigned __int128 *ret)
{
	unsigned __int128 v = 0;

	if (*s < '0' || *s > '9') {
		return -1;
	}
	for (; *s >= '0' && *s <= '9'; s++) {
		v = v * 10 + (unsigned)(*s - '0');
		if (v > UINT64_MAX) {
			v = (unsigned __int128)UINT64_MAX + 1;	/* saturate: "too big" */
		}
	}
	*end = s;
	*ret = v;
	return 0;
}

static void check_uint(const char *w, uint64_t min, uint64_t max)
{
	uint64_t v = 0xdeadbeef;
	unsigned __int128 m;
	const char *end;
	int r = re_config_parse_uint(w, min, max, &v);

	CHECK(r == 0 || r == -EINVAL || r == -ERANGE);
	if (model_digits(w, &end, &m) < 0) {
		CHECK(r == -EINVAL);
		return;
	}
	if (m > UINT64_MAX) {
		CHECK(r == -ERANGE);
		return;
	}
	if (*end != '\0') {
		CHECK(r == -EINVAL);
		return;
	}
	if (m < min || m > max) {
		CHECK(r == -ERANGE);
		return;
	}
	CHECK(r == 0 && v == (uint64_t)m);
}

/* Value model in 128-bit arithmetic, same grammar as config.h documents: digits, then
 * K/M/G (binary) with an optional "iB", or an optional "B", case-insensitive. */
static void check_size(const char *w, uint64_t min, uint64_t max)
{
	uint64_t v = 0xdeadbeef;
	unsigned __int128 m, mult = 1;
	const char *s;
	int r = re_config_parse_size(w, min, max, &v);

	CHECK(r == 0 || r == -EINVAL || r == -ERANGE);
	if (model_digits(w, &s, &m) < 0) {
		CHECK(r == -EINVAL);
		return;
	}
	if (m > UINT64_MAX) {
		CHECK(r == -ERANGE);
		return;
	}
	switch (*s | 0x20) {
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
	default:
		break;
	}
	if (mult > 1 && (*s | 0x20) == 'i') {
		s++;
		if ((*s | 0x20) != 'b') {
			CHECK(r == -EINVAL);
			return;
		}
	}
	if ((*s | 0x20) == 'b') {
		s++;
	}
	if (*s != '\0') {
		CHECK(r == -EINVAL);
		return;
	}
	m *= mult;
	if (m < min || m > max) {
		CHECK(r == -ERANGE);
		return;
	}
	CHECK(r == 0 && v == (uint64_t)m);
}

/* Value model in 128-bit arithmetic: "N", "N.F" (at most millisecond precision,
 * extra digits only zeros), either with an optional "s", or "Nms". */
static void check_seconds(const char *w, uint64_t max_ms)
{
	uint64_t v = 0xdeadbeef;
	unsigned __int128 whole, frac = 0, scale = 1000;
	const char *s;
	int r = re_config_parse_seconds(w, max_ms, &v);

	CHECK(r == 0 || r == -EINVAL || r == -ERANGE);
	if (model_digits(w, &s, &whole) < 0) {
		CHECK(r == -EINVAL);
		return;
	}
	if (whole > UINT64_MAX) {
		CHECK(r == -ERANGE);
		return;
	}
	if (strcmp(s, "ms") == 0) {
		scale = 1;
		s += 2;
	} else if (*s == '.') {
		int digits = 0;

		s++;
		if (*s < '0' || *s > '9') {
			CHECK(r == -EINVAL);
			return;
		}
		for (; *s >= '0' && *s <= '9'; s++, digits++) {
			if (digits < 3) {
				frac = frac * 10 + (unsigned)(*s - '0');
			} else if (*s != '0') {
				CHECK(r == -EINVAL);
				return;
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
		CHECK(r == -EINVAL);
		return;
	}
	whole = whole * scale + frac;
	if (whole > max_ms) {
		CHECK(r == -ERANGE);
		return;
	}
	CHECK(r == 0 && v == (uint64_t)whole);
}

static void check_word(const char *w)
{
	struct re_cpuset cs;
	enum re_log_level lvl;
	int r;

	check_uint(w, 0, UINT64_MAX);
	check_uint(w, 1, RE_MAX_THREADS);
	check_uint(w, 1, 65535);
	check_size(w, 0, UINT64_MAX);
	check_size(w, RE_MIN_CONN_BUFFER, RE_MAX_CONN_BUFFER);
	check_seconds(w, RE_MAX_TIMEOUT_MS);
	check_seconds(w, UINT64_MAX);
	r = re_cpu_parse_list(w, &cs);
	CHECK(r == 0 || r == -EINVAL || r == -ERANGE);
	if (r == 0) {
		CHECK(CPU_COUNT(&cs.set) > 0);
	}
	r = re_log_parse_level(w, &lvl);
	CHECK(r == 0 || r == -EINVAL);
	if (r == 0) {
		CHECK((unsigned)lvl <= RE_LOG_DEBUG);
	}
}

static void check_config(const struct re_config *cfg)
{
	CHECK(cfg->threads <= RE_MAX_THREADS);
	CHECK(strnlen(cfg->bind, sizeof(cfg->bind)) < sizeof(cfg->bind));
	CHECK(cfg->bind[0] != '\0');
	CHECK(cfg->port <= 65535);
	CHECK(cfg->backlog >= 1 && cfg->backlog <= 65535);
	CHECK(cfg->rt.max_conns <= 100000000);
	CHECK(cfg->rt.idle_timeout_ms <= RE_MAX_TIMEOUT_MS);
	CHECK(cfg->rt.drain_timeout_ms <= RE_MAX_TIMEOUT_MS);
	CHECK(cfg->rt.conn_buffer >= RE_MIN_CONN_BUFFER &&
	      cfg->rt.conn_buffer <= RE_MAX_CONN_BUFFER);
	CHECK(cfg->rt.max_buffered >= RE_MIN_MAX_BUFFERED &&
	      cfg->rt.max_buffered <= RE_MAX_MAX_BUFFERED);
	CHECK((unsigned)cfg->log_level <= RE_LOG_DEBUG);
	CHECK(strnlen(cfg->control, sizeof(cfg->control)) < sizeof(cfg->control));
	CHECK(!cfg->control_none || cfg->control[0] == '\0');
	CHECK(cfg->control_mode <= 0777 && (cfg->control_mode & 0600) == 0600);
	CHECK(cfg->control_timeout_ms > 0 && cfg->control_timeout_ms <= RE_MAX_TIMEOUT_MS);
	CHECK(strnlen(cfg->metrics_host, sizeof(cfg->metrics_host)) < sizeof(cfg->metrics_host));
	CHECK(!cfg->metrics || (cfg->metrics_port >= 1 && cfg->metrics_port <= 65535));
	CHECK(!cfg->cpus_set || CPU_COUNT(&cfg->cpus.set) > 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *words[MAX_WORDS + 2];
	char *argv[MAX_WORDS + 2];
	char out[8192], err[512];	/* main.c's sizes */
	struct re_config cfg;
	size_t i = 0, nw = 0;
	int argc, r;

	words[nw++] = strdup("reuseecho");
	while (i < size && nw < MAX_WORDS + 1) {
		size_t start = i;

		while (i < size && data[i] != '\0' && data[i] != '\n') {
			i++;
		}
		/* Exact-size heap copies: ASan sees a read past any word. */
		words[nw] = malloc(i - start + 1);
		if (words[nw] == NULL) {
			break;
		}
		memcpy(words[nw], data + start, i - start);
		words[nw][i - start] = '\0';
		nw++;
		i++;	/* the separator */
	}
	argc = (int)nw;
	memcpy(argv, words, nw * sizeof(argv[0]));	/* getopt_long permutes argv */
	argv[argc] = NULL;

	reset_getopt();
	re_config_defaults(&cfg);
	memset(out, 'Z', sizeof(out));
	memset(err, 'Z', sizeof(err));
	r = re_config_parse(&cfg, argc, argv, out, sizeof(out), err, sizeof(err));
	CHECK(r == RE_CONFIG_RUN || r == RE_CONFIG_EXIT_OK || r == -EINVAL);
	if (r == RE_CONFIG_RUN) {
		check_config(&cfg);
	} else if (r == RE_CONFIG_EXIT_OK) {
		CHECK(memchr(out, '\0', sizeof(out)) != NULL && out[0] != '\0');
	} else {
		CHECK(memchr(err, '\0', sizeof(err)) != NULL && err[0] != '\0');
	}

	for (i = 1; i < nw; i++) {
		check_word(words[i]);
	}
	for (i = 0; i < nw; i++) {
		free(words[i]);
	}
	return 0;
}

/* fuzz_ctlproto_line: libFuzzer target for re_ctlproto_parse_line().
 * The input is one connection's worth of bytes. Memory safety is checked on the
 * whole input; the reply-framing invariants on the first line, which is what the
 * control thread passes (it splits on "\n").
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "ctlproto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#include "fuzz_check.h"

/* The last enumerator of enum re_ctl_verb: update when ctlproto.h gains a verb (or
 * replace with a count enumerator if ctlproto.h grows one). */
#define LAST_VERB RE_CTL_RETIRE

/* Same size as the control thread's reply buffer, plus a small one to exercise
 * truncation. */
static const size_t errlens[] = { 200, 17 };

static void check_one(const char *line, size_t len, size_t errlen, int framed)
{
	struct re_ctl_cmd cmd;
	char err[200 + 1];
	int r;

	memset(&cmd, 0xa5, sizeof(cmd));
	memset(err, 'Z', sizeof(err));
	r = re_ctlproto_parse_line(line, len, &cmd, err, errlen);
	CHECK(r == 1 || r == 0 || r == -EINVAL);
	CHECK(err[errlen] == 'Z');	/* nothing written past errlen */
	if (r == 1) {
		CHECK((unsigned)cmd.verb <= LAST_VERB);
		switch (cmd.verb) {
		case RE_CTL_SET:
			CHECK(cmd.key >= 0 && cmd.key < RE_KEY_IMPAIR + RE_IMP_N);
			if (cmd.key >= RE_KEY_IMPAIR) {
				enum re_impair k = (enum re_impair)(cmd.key - RE_KEY_IMPAIR);

				if (k == RE_IMP_DELAY || k == RE_IMP_JITTER) {
					CHECK(cmd.value <= RE_MAX_IMPAIR_DELAY_MS);
				} else if (k == RE_IMP_SHARE) {
					CHECK(cmd.value <= 100);
				} else if (k == RE_IMP_ACCEPT) {
					CHECK(cmd.value <= 1);
				} else {
					CHECK(cmd.value <= RE_MAX_IMPAIR_BYTES);
				}
			}
			switch ((enum re_ctl_key)cmd.key) {
			case RE_KEY_MAX_CONNS:
				CHECK(cmd.value <= 100000000);
				break;
			case RE_KEY_CONN_BUFFER:
				CHECK(cmd.value >= RE_MIN_CONN_BUFFER &&
				      cmd.value <= RE_MAX_CONN_BUFFER);
				break;
			case RE_KEY_IDLE_TIMEOUT:
			case RE_KEY_DRAIN_TIMEOUT:
				CHECK(cmd.value <= RE_MAX_TIMEOUT_MS);
				break;
			case RE_KEY_MAX_BUFFERED:
				CHECK(cmd.value >= RE_MIN_MAX_BUFFERED &&
				      cmd.value <= RE_MAX_MAX_BUFFERED);
				break;
			case RE_KEY_UDP_RATE:
				CHECK(cmd.value <= RE_MAX_UDP_RATE);
				break;
			case RE_KEY_STALL_STEER:
				CHECK(cmd.value == 0 || (cmd.value >= RE_MIN_STALL_STEER_MS &&
							 cmd.value <= RE_MAX_STALL_STEER_MS));
				break;
			case RE_KEY_IMPAIR:
				break;	/* above: RE_KEY_IMPAIR + enum re_impair */
			}
			CHECK(strcmp(re_ctlproto_key_name(cmd.key), "?") != 0);
			break;
		case RE_CTL_THREADS:
			CHECK(cmd.value >= 1 && cmd.value <= RE_MAX_THREADS);
			break;
		case RE_CTL_DEBUG_STALL:
			CHECK(cmd.worker >= 0 && cmd.value >= 1 && cmd.value <= 60000);
			break;
		case RE_CTL_RETIRE_LISTENER:
			CHECK(cmd.worker >= 0);
			break;
		default:
			break;
		}
	} else if (r == -EINVAL) {
		size_t n = strnlen(err, errlen);

		CHECK(n < errlen);	/* NUL-terminated inside the buffer */
		CHECK(n > 0);		/* "ERR " needs a reason */
		if (framed) {
			/* The reply is "ERR <reason>\n\n": a newline inside would end it early
			 * and let a client forge reply lines. */
			CHECK(memchr(err, '\n', n) == NULL);
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *nl = memchr(data, '\n', size);
	size_t first = nl != NULL ? (size_t)(nl - (const char *)data) : size;
	char *line;

	/* An exact-size heap copy of the first line, so ASan sees any read past it. */
	line = malloc(first > 0 ? first : 1);
	if (line == NULL) {
		return 0;
	}
	memcpy(line, data, first);
	for (size_t i = 0; i < sizeof(errlens) / sizeof(errlens[0]); i++) {
		check_one(line, first, errlens[i], 1);
	}
	free(line);
	/* And the raw input, newlines and all: memory safety only. */
	check_one((const char *)data, size, 200, 0);
	return 0;
}

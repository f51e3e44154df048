/* chargen: the character generator pattern of RFC 864, shared read-only by every
 * worker, and the service names (echo, discard, chargen) of --service.
 *
 * The pattern is lines of 72 printable ASCII characters (32..126, 95 of them) and
 * CRLF, each line starting one character later than the one before. It repeats after
 * 95 lines (RE_CHARGEN_PERIOD bytes); the table holds one period and RE_CHARGEN_SPAN
 * bytes more, so that one send of up to RE_CHARGEN_SPAN bytes from any position in the
 * period reads contiguous memory.
 */
#ifndef REUSEECHO_SRC_CHARGEN_H
#define REUSEECHO_SRC_CHARGEN_H

#include <stddef.h>
#include <stdint.h>

enum re_service {
	RE_SERVICE_ECHO = 0,
	RE_SERVICE_DISCARD,	/* RFC 863: read and drop; UDP: never answer */
	RE_SERVICE_CHARGEN,	/* RFC 864: send the pattern, drop input */
};

#define RE_CHARGEN_LINE 72u			/* characters per line, before CRLF */
#define RE_CHARGEN_CHARS 95u			/* printable ASCII, 32..126 */
#define RE_CHARGEN_PERIOD (RE_CHARGEN_CHARS * (RE_CHARGEN_LINE + 2u))	/* 7,030 */
#define RE_CHARGEN_SPAN (64u * 1024u)		/* most bytes one send takes */
#define RE_CHARGEN_UDP_MAX 512u			/* RFC 864: a reply is 0..512 bytes */

/* The table: RE_CHARGEN_PERIOD + RE_CHARGEN_SPAN bytes, built once on first use
 * (thread-safe). Byte i of the endless pattern is table[i % RE_CHARGEN_PERIOD]. */
const char *re_chargen_table(void);

/* "echo", "discard", "chargen". */
const char *re_chargen_service_name(enum re_service s);

/* Parse a service name. Returns 0 and writes *ret, or -EINVAL. */
int re_chargen_parse_service(const char *s, enum re_service *ret)
	__attribute__((warn_unused_result));

#endif

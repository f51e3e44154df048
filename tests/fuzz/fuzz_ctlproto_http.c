/* fuzz_ctlproto_http: libFuzzer target for re_ctlproto_is_http() and
 * re_ctlproto_parse_http(). The input is a request head as the control thread
 * hands it over (possibly without the blank line at the end).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctlproto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#include "fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data;
	const char *nl = memchr(buf, '\n', size);
	size_t first = nl != NULL ? (size_t)(nl - buf) : size;
	struct re_http_req req;
	bool is_http;
	int st;

	/* The control thread asks is_http() about the first line, without its "\n". */
	(void)re_ctlproto_is_http(buf, first);
	(void)re_ctlproto_is_http(buf, size);
	/* parse_http() drops a "\r" before asking is_http(), which drops another one:
	 * "GET / HTTP/1.1\r\r\n" passes parse_http() but not the control thread's
	 * is_http(buf, first). Harmless (the control thread never gets that far), so the
	 * consistency check below uses the same double strip. */
	is_http = re_ctlproto_is_http(buf, first > 0 && buf[first - 1] == '\r' ? first - 1 : first);

	memset(&req, 0xa5, sizeof(req));
	st = re_ctlproto_parse_http(buf, size, &req);
	CHECK(st == 0 || st == 400 || st == 405 || st == 414 || st == 505);
	if (st != 0 && st != 400) {
		/* Only a request line that looked like HTTP can get past "malformed". */
		CHECK(nl != NULL && is_http);
	}
	if (st == 0) {
		size_t plen = strnlen(req.path, sizeof(req.path));

		CHECK(nl != NULL && is_http);
		CHECK(plen < sizeof(req.path));		/* NUL-terminated, fits */
		CHECK(plen >= 1 && req.path[0] == '/');
		for (size_t i = 0; i < plen; i++) {
			unsigned char c = (unsigned char)req.path[i];

			CHECK(c > ' ' && c != 0x7f);	/* no control chars, no blanks */
			CHECK(c != '?' && c != '#');	/* query and fragment cut off */
		}
		CHECK(req.minor == 0 || req.minor == 1);
		CHECK(req.head ? memcmp(buf, "HEAD ", 5) == 0 : memcmp(buf, "GET ", 4) == 0);
	}
	return 0;
}

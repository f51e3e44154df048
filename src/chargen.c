/* chargen: the RFC 864 pattern table and the --service names. */
#include "chargen.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>

static char table[RE_CHARGEN_PERIOD + RE_CHARGEN_SPAN];
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static void build_table(void)
{
	const size_t line = RE_CHARGEN_LINE + 2u;

	for (size_t i = 0; i < sizeof(table); i++) {
		size_t p = i % RE_CHARGEN_PERIOD;
		size_t l = p / line, col = p % line;

		if (col == RE_CHARGEN_LINE) {
			table[i] = '\r';
		} else if (col == RE_CHARGEN_LINE + 1u) {
			table[i] = '\n';
		} else {
			table[i] = (char)(32u + (l + col) % RE_CHARGEN_CHARS);
		}
	}
}

const char *re_chargen_table(void)
{
	(void)pthread_once(&table_once, build_table);
	return table;
}

static const char *const names[] = {
	[RE_SERVICE_ECHO] = "echo",
	[RE_SERVICE_DISCARD] = "discard",
	[RE_SERVICE_CHARGEN] = "chargen",
};

const char *re_chargen_service_name(enum re_service s)
{
	return (size_t)s < sizeof(names) / sizeof(names[0]) ? names[s] : "?";
}

int re_chargen_parse_service(const char *s, enum re_service *ret)
{
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcmp(s, names[i]) == 0) {
			*ret = (enum re_service)i;
			return 0;
		}
	}
	return -EINVAL;
}

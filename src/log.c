/* log: leveled logging to stderr, one write(2) per line so concurrent lines never mix.
 * The level is set once by main before any thread starts; reads are then race-free.
 */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static enum re_log_level max_level = RE_LOG_INFO;

static const char *const level_names[] = {
	[RE_LOG_ERROR] = "error",
	[RE_LOG_WARN] = "warn",
	[RE_LOG_INFO] = "info",
	[RE_LOG_DEBUG] = "debug",
};

void re_log_set_level(enum re_log_level level)
{
	max_level = level;
}

int re_log_parse_level(const char *s, enum re_log_level *ret_level)
{
	for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
		if (strcmp(s, level_names[i]) == 0) {
			*ret_level = (enum re_log_level)i;
			return 0;
		}
	}
	return -EINVAL;
}

const char *re_log_level_name(enum re_log_level level)
{
	if ((unsigned)level >= sizeof(level_names) / sizeof(level_names[0])) {
		return "?";
	}
	return level_names[level];
}

void re_log(enum re_log_level level, const char *fmt, ...)
{
	char line[1024];
	int saved = errno;
	int n, m;
	va_list ap;

	if (level > max_level) {
		return;
	}
	n = snprintf(line, sizeof(line), "reuseecho: %s: ", re_log_level_name(level));
	va_start(ap, fmt);
	m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (m < 0) {
		m = 0;
	}
	n += m;
	if (n > (int)sizeof(line) - 2) {
		n = (int)sizeof(line) - 2;
	}
	line[n++] = '\n';
	/* stderr is unbuffered: one write keeps the line whole; a failed log write has
	 * nowhere to be reported, so it is ignored on purpose. */
	(void)!write(STDERR_FILENO, line, (size_t)n);
	errno = saved;
}

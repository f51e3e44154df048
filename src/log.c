/* log: leveled logging to stderr, one write(2) per line so concurrent lines never mix.
 * The level is set once by main before any thread starts; reads are then race-free.
 */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static enum re_log_level max_level = RE_LOG_INFO;
static bool journal;

/* sd-daemon(3) priorities: LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG. */
static const char *const journal_prefix[] = {
	[RE_LOG_ERROR] = "<3>",
	[RE_LOG_WARN] = "<4>",
	[RE_LOG_INFO] = "<6>",
	[RE_LOG_DEBUG] = "<7>",
};

void re_log_init(void)
{
	const char *js = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;

	journal = false;
	if (js == NULL || sscanf(js, "%llu:%llu", &dev, &ino) != 2) {
		return;
	}
	if (fstat(STDERR_FILENO, &st) == 0 && (unsigned long long)st.st_dev == dev &&
	    (unsigned long long)st.st_ino == ino) {
		journal = true;
	}
}

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
	if (journal) {
		n = snprintf(line, sizeof(line), "%s", journal_prefix[level]);
	} else {
		n = snprintf(line, sizeof(line), "reuseecho: %s: ", re_log_level_name(level));
	}
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

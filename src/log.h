/* log: leveled, line-at-a-time logging to stderr.
 * Any thread may call it; each message is written with one write(2) so lines from
 * different threads never interleave. Data-path callers must rate-limit themselves.
 */
#ifndef REUSEECHO_SRC_LOG_H
#define REUSEECHO_SRC_LOG_H

enum re_log_level {
	RE_LOG_ERROR = 0,
	RE_LOG_WARN = 1,
	RE_LOG_INFO = 2,
	RE_LOG_DEBUG = 3,
};

/* Detect whether stderr is connected to the systemd journal ($JOURNAL_STREAM names
 * stderr's device:inode); if so, lines carry sd-daemon(3) "<N>" priority prefixes
 * instead of text levels. Context: main, before threads start. */
void re_log_init(void);

/* Set the most verbose level that is printed. Context: main, before threads start. */
void re_log_set_level(enum re_log_level level);

/* Parse "error", "warn", "info" or "debug". Returns 0 and writes *ret_level, or -EINVAL. */
int re_log_parse_level(const char *s, enum re_log_level *ret_level)
	__attribute__((warn_unused_result));

const char *re_log_level_name(enum re_log_level level);

/* Print "reuseecho: <level>: <message>\n" to stderr when level is enabled. Context: any. */
void re_log(enum re_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define re_log_error(...) re_log(RE_LOG_ERROR, __VA_ARGS__)
#define re_log_warn(...) re_log(RE_LOG_WARN, __VA_ARGS__)
#define re_log_info(...) re_log(RE_LOG_INFO, __VA_ARGS__)
#define re_log_debug(...) re_log(RE_LOG_DEBUG, __VA_ARGS__)

#endif

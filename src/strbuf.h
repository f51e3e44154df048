/* strbuf: a growable byte string for building replies. Single owner, no locking.
 * Allocation failure is sticky: later appends do nothing and `oom` stays set, so a
 * caller checks once at the end.
 */
#ifndef REUSEECHO_SRC_STRBUF_H
#define REUSEECHO_SRC_STRBUF_H

#include <stdbool.h>
#include <stddef.h>

struct re_strbuf {
	char *data;	/* NUL-terminated when len > 0 */
	size_t len;
	size_t cap;
	size_t max;	/* 0 = unbounded; appends past it set oom */
	bool oom;
};

void re_strbuf_init(struct re_strbuf *sb, size_t max);
void re_strbuf_finish(struct re_strbuf *sb);
void re_strbuf_reset(struct re_strbuf *sb);
void re_strbuf_append(struct re_strbuf *sb, const void *p, size_t n);
void re_strbuf_puts(struct re_strbuf *sb, const char *s);
void re_strbuf_printf(struct re_strbuf *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Drop the first n bytes (consumed output). */
void re_strbuf_consume(struct re_strbuf *sb, size_t n);

#endif

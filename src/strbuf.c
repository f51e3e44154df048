/* strbuf: growable strings for control replies. */
#include "strbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void re_strbuf_init(struct re_strbuf *sb, size_t max)
{
	memset(sb, 0, sizeof(*sb));
	sb->max = max;
}

void re_strbuf_finish(struct re_strbuf *sb)
{
	free(sb->data);
	memset(sb, 0, sizeof(*sb));
}

void re_strbuf_reset(struct re_strbuf *sb)
{
	sb->len = 0;
	sb->oom = false;
	if (sb->data != NULL) {
		sb->data[0] = '\0';
	}
}

static bool reserve(struct re_strbuf *sb, size_t extra)
{
	size_t need, ncap;
	char *nd;

	if (sb->oom) {
		return false;
	}
	need = sb->len + extra + 1;
	if (need < sb->len || (sb->max != 0 && need > sb->max + 1)) {
		sb->oom = true;
		return false;
	}
	if (need <= sb->cap) {
		return true;
	}
	ncap = sb->cap ? sb->cap : 256;
	while (ncap < need) {
		ncap *= 2;
	}
	nd = realloc(sb->data, ncap);
	if (nd == NULL) {
		sb->oom = true;
		return false;
	}
	sb->data = nd;
	sb->cap = ncap;
	return true;
}

void re_strbuf_append(struct re_strbuf *sb, const void *p, size_t n)
{
	if (!reserve(sb, n)) {
		return;
	}
	memcpy(sb->data + sb->len, p, n);
	sb->len += n;
	sb->data[sb->len] = '\0';
}

void re_strbuf_puts(struct re_strbuf *sb, const char *s)
{
	re_strbuf_append(sb, s, strlen(s));
}

void re_strbuf_printf(struct re_strbuf *sb, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || !reserve(sb, (size_t)n)) {
		if (n < 0) {
			sb->oom = true;
		}
		return;
	}
	va_start(ap, fmt);
	vsnprintf(sb->data + sb->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	sb->len += (size_t)n;
}

void re_strbuf_consume(struct re_strbuf *sb, size_t n)
{
	if (n >= sb->len) {
		sb->len = 0;
	} else {
		memmove(sb->data, sb->data + n, sb->len - n);
		sb->len -= n;
	}
	if (sb->data != NULL) {
		sb->data[sb->len] = '\0';
	}
}

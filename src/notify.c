/* notify: sd_notify wrapper; compiled to a no-op without libsystemd. */
#include "notify.h"

#include <stdarg.h>
#include <stdio.h>

#ifdef RE_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

void re_notify(const char *fmt, ...)
{
#ifdef RE_HAVE_SYSTEMD
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* Failure to notify is not fatal: systemd would time the start-up out. */
	(void)sd_notify(0, msg);
#else
	(void)fmt;
#endif
}

/* notify: service-manager notifications (sd_notify: READY=1, STOPPING=1, STATUS=).
 * Uses libsystemd when meson found it; otherwise every call is a no-op.
 * Context: supervisor.
 */
#ifndef REUSEECHO_SRC_NOTIFY_H
#define REUSEECHO_SRC_NOTIFY_H

/* Send a notification built from fmt (e.g. "READY=1\nSTATUS=..."). Does nothing when
 * not started by a service manager ($NOTIFY_SOCKET unset) or built without libsystemd. */
void re_notify(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif

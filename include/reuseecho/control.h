/* reuseecho control protocol: limits and the default socket path rule, shared by the
 * server and reuseecho-ctl.
 */
#ifndef REUSEECHO_INCLUDE_REUSEECHO_CONTROL_H
#define REUSEECHO_INCLUDE_REUSEECHO_CONTROL_H

#include <stddef.h>

#define RE_CONTROL_MAX_LINE 4096	/* a longer line gets ERR and the client is closed */
#define RE_CONTROL_MAX_HTTP 8192	/* request line + headers */
#define RE_CONTROL_MAX_CLIENTS 64	/* admin (Unix) socket clients; the next gets "ERR busy" */
#define RE_CONTROL_MAX_TCP_CLIENTS 64	/* --metrics-listen clients; the next evicts the
					 * longest-idle one */
#define RE_CONTROL_HEADER_TIMEOUT_MS 5000u	/* a TCP client's HTTP request head must
						 * arrive within this (or --control-timeout) */
#define RE_CONTROL_FD_RESERVE 8		/* descriptors held back for admin clients at EMFILE */
#define RE_CONTROL_DEFAULT_TIMEOUT_MS 30000u	/* idle control clients are closed */

/* The default control socket path for a port:
 *   $RUNTIME_DIRECTORY/reuseecho-PORT.sock   (systemd RuntimeDirectory=)
 *   else $XDG_RUNTIME_DIR/reuseecho-PORT.sock
 *   else /run/reuseecho-PORT.sock for root, /tmp/reuseecho-UID-PORT.sock otherwise.
 * The port is in the name so instances on different ports never collide, and so
 * `reuseecho-ctl --port P` finds the socket by the same rule. Returns 0, or -ENAMETOOLONG. */
int re_control_default_path(unsigned port, char *buf, size_t len);

#endif

/* supervisor: the main thread's job. Reserves the port, publishes the runtime
 * settings and the stats registry (the only RCU updater), spawns and pins the
 * workers, prints the ready line, reads signals from a signalfd and sequences the
 * graceful drain. Context: main thread only.
 */
#ifndef REUSEECHO_SRC_SUPERVISOR_H
#define REUSEECHO_SRC_SUPERVISOR_H

#include "config.h"

/* Run the server until it is told to stop. Returns the process exit status: 0 after
 * a graceful drain, 1 after a start-up or runtime failure (already logged) or a
 * second stop signal. */
int re_supervisor_run(const struct re_config *cfg) __attribute__((warn_unused_result));

#endif

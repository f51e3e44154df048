/* kfeatures: the kernel features reuseecho relies on (SO_REUSEPORT, its CBPF steering,
 * EPOLLRDHUP, net.ipv4.tcp_migrate_req) and the TcpExt migrate counters.
 * re_kfeatures_probe runs once in the supervisor at start-up. The control thread reads
 * the counters per request from a /proc/net/netstat descriptor it opened at start-up,
 * so a request needs no new descriptor when the process is at its fd limit.
 */
#ifndef REUSEECHO_SRC_KFEATURES_H
#define REUSEECHO_SRC_KFEATURES_H

#include "report.h"

/* Fill *f (zeroed first): what the kernel accepts, the sysctl, uname -r, the counters.
 * Context: supervisor, start-up. */
void re_kfeatures_probe(struct re_features *f);

/* Open /proc/net/netstat for re_kfeatures_read_migrate. Returns the fd or -errno.
 * Context: any thread; the caller owns and closes the fd. */
int re_kfeatures_open_netstat(void);

/* TcpExt TCPMigrateReqSuccess/Failure into f->migrate_success/failure, read with pread
 * from offset 0 of fd (from re_kfeatures_open_netstat); -1 for a counter the kernel
 * lacks, or both when fd < 0 or the read fails. Opens nothing. Context: any thread. */
void re_kfeatures_read_migrate(int fd, struct re_features *f);

/* Whether a SO_REUSEPORT classic BPF program may read SKF_AD_CPU (--steer cpu).
 * Context: supervisor, start-up. */
bool re_kfeatures_cbpf_cpu(void);

#endif

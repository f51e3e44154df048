/* kfeatures: probes the kernel features reuseecho relies on and reads the TcpExt
 * migrate counters. The probe runs in the supervisor at start-up; the counter reader
 * is called by the control thread with a descriptor it keeps open.
 */
#include "kfeatures.h"

#include <fcntl.h>
#include <linux/filter.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <unistd.h>
#include <errno.h>

static int read_sysctl_int(const char *path)
{
	char buf[32];
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		return -1;
	}
	n = read(fd, buf, sizeof(buf) - 1);
	(void)close(fd);
	if (n <= 0) {
		return -1;
	}
	buf[n] = '\0';
	return atoi(buf);
}

int re_kfeatures_open_netstat(void)
{
	int fd = open("/proc/net/netstat", O_RDONLY | O_CLOEXEC);

	return fd < 0 ? -errno : fd;
}

/* TcpExt TcpMigrateReqSuccess/Failure from /proc/net/netstat (a header line of names
 * followed by a line of values); -1 when the kernel has no such counters. */
void re_kfeatures_read_migrate(int fd, struct re_features *f)
{
	char buf[8192];
	char *names, *values, *save1 = NULL, *save2 = NULL;
	ssize_t n;

	f->migrate_success = -1;
	f->migrate_failure = -1;
	if (fd < 0) {
		return;
	}
	/* pread from 0: /proc seq files regenerate their text for a read at offset 0. */
	n = pread(fd, buf, sizeof(buf) - 1, 0);
	if (n <= 0) {
		return;
	}
	buf[n] = '\0';
	names = strstr(buf, "TcpExt:");
	if (names == NULL) {
		return;
	}
	values = strchr(names, '\n');
	if (values == NULL || strncmp(values + 1, "TcpExt:", 7) != 0) {
		return;
	}
	*values++ = '\0';
	{
		char *eol = strchr(values, '\n');

		if (eol != NULL) {
			*eol = '\0';
		}
	}
	for (char *a = strtok_r(names, " ", &save1), *b = strtok_r(values, " ", &save2);
	     a != NULL && b != NULL; a = strtok_r(NULL, " ", &save1), b = strtok_r(NULL, " ", &save2)) {
		if (strcmp(a, "TCPMigrateReqSuccess") == 0) {
			f->migrate_success = strtoll(b, NULL, 10);
		} else if (strcmp(a, "TCPMigrateReqFailure") == 0) {
			f->migrate_failure = strtoll(b, NULL, 10);
		}
	}
}

void re_kfeatures_probe(struct re_features *f)
{
	struct utsname u;
	int one = 1;
	int fd;

	memset(f, 0, sizeof(*f));
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0) {
		/* A program that always answers "use the kernel's hash" (an index out of
		 * range): only whether the kernel accepts it matters here. */
		struct sock_filter code[] = { BPF_STMT(BPF_RET | BPF_K, 0xffffffffu) };
		struct sock_fprog prog;

		/* memset: the padding after .len goes to the kernel too (valgrind). */
		memset(&prog, 0, sizeof(prog));
		prog.len = 1;
		prog.filter = code;

		f->reuseport = setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) == 0;
		f->cbpf = setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &prog, sizeof(prog)) == 0;
		(void)close(fd);
	}
	fd = epoll_create1(EPOLL_CLOEXEC);
	if (fd >= 0) {
		int sv[2];

		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0) {
			struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP | EPOLLET };

			f->rdhup = epoll_ctl(fd, EPOLL_CTL_ADD, sv[0], &ev) == 0;
			(void)close(sv[0]);
			(void)close(sv[1]);
		}
		(void)close(fd);
	}
	f->migrate_req = read_sysctl_int("/proc/sys/net/ipv4/tcp_migrate_req");
	if (f->cbpf && getenv("REUSEECHO_DISABLE_CBPF") == NULL) {
		snprintf(f->handover, sizeof(f->handover), "%s", f->migrate_req == 1 ? "cbpf+migrate" : "cbpf");
	} else {
		snprintf(f->handover, sizeof(f->handover), "%s", f->migrate_req == 1 ? "migrate" : "none");
	}
	fd = re_kfeatures_open_netstat();
	re_kfeatures_read_migrate(fd, f);
	if (fd >= 0) {
		(void)close(fd);
	}
	if (uname(&u) == 0) {
		snprintf(f->kernel, sizeof(f->kernel), "%.63s", u.release);
	}
}

bool re_kfeatures_cbpf_cpu(void)
{
	/* "answer the kernel's hash", after loading the CPU: accepted only where the
	 * reuseport CBPF checker knows SKF_AD_CPU. */
	struct sock_filter code[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, (uint32_t)(SKF_AD_OFF + SKF_AD_CPU)),
		BPF_STMT(BPF_RET | BPF_K, 0xffffffffu),
	};
	struct sock_fprog prog;
	int one = 1;
	bool ok;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0) {
		return false;
	}
	memset(&prog, 0, sizeof(prog));
	prog.len = 2;
	prog.filter = code;
	ok = setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) == 0 &&
	     setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &prog, sizeof(prog)) == 0;
	(void)close(fd);
	return ok;
}

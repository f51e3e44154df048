"""doc/DESIGN.md §1 invariants, checked from outside the running process:
N pinned worker threads named reuseecho-w<i>, N listeners on the port, N epoll
instances each watching exactly one listener, and no fd watched by two epolls.
With --udp: N UDP sockets on the port, each worker's epoll watching exactly one of
them beside its listener, no UDP socket in two epolls, also after a resize."""
import os
import re
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import retest  # noqa: E402
import unittest  # noqa: E402


def allowed_cpus():
    return sorted(os.sched_getaffinity(0))


def cpu_list(s):
    cpus = set()
    for part in s.split(","):
        if "-" in part:
            a, b = part.split("-")
            cpus.update(range(int(a), int(b) + 1))
        else:
            cpus.add(int(part))
    return cpus


class Architecture(unittest.TestCase):
    def check(self, nthreads, *args, pinned=True, cpus=None):
        srv = retest.Server("--threads", nthreads, *args)
        try:
            self.assertEqual(srv.workers, nthreads)
            tasks = srv.tasks()
            workers = [t for t in tasks if t[1].startswith("reuseecho-w")]
            self.assertEqual(sorted(t[1] for t in workers),
                             sorted("reuseecho-w%d" % i for i in range(nthreads)))
            allowed = cpus if cpus is not None else allowed_cpus()
            for tid, name, mask in workers:
                i = int(name[len("reuseecho-w"):])
                got = cpu_list(mask)
                if pinned:
                    self.assertEqual(got, {allowed[i % len(allowed)]},
                                     "%s pinned round-robin" % name)
                else:
                    self.assertEqual(got, set(allowed_cpus()), "%s not pinned" % name)

            targets = srv.fd_targets()
            listen_inodes = srv.listening_inodes()
            listeners = {fd for fd, t in targets.items()
                         if t.startswith("socket:[") and int(t[8:-1]) in listen_inodes}
            self.assertEqual(len(listeners), nthreads, "one listener per worker")

            epolls = [fd for fd, t in targets.items() if t == "anon_inode:[eventpoll]"]
            watched = {}
            for ep in epolls:
                tfds = [int(x) for x in re.findall(r"^tfd:\s*(\d+)", srv.fdinfo(ep), re.M)]
                watched[ep] = tfds
            worker_epolls = [ep for ep, tfds in watched.items() if listeners & set(tfds)]
            self.assertEqual(len(worker_epolls), nthreads, "one epoll per worker")
            for ep in worker_epolls:
                self.assertEqual(len(listeners & set(watched[ep])), 1,
                                 "epoll %d watches exactly one listener" % ep)
            seen = {}
            for ep, tfds in watched.items():
                for fd in tfds:
                    self.assertNotIn(fd, seen, "fd %d watched by epolls %d and %s" % (fd, ep, seen.get(fd)))
                    seen[fd] = ep
            # The listeners really are one SO_REUSEPORT group: connections spread.
            socks = [srv.connect() for _ in range(64)]
            for s in socks:
                s.sendall(b"x")
                self.assertEqual(s.recv(1), b"x")
                s.close()
        finally:
            self.assertEqual(srv.stop(), 0, srv.stderr())

    def test_one_worker(self):
        self.check(1)

    def test_round_robin_beyond_cpu_count(self):
        self.check(len(allowed_cpus()) * 2 + 1)

    def test_eight_workers(self):
        self.check(8)

    def test_cpus_list(self):
        first = allowed_cpus()[0]
        self.check(3, "--cpus", str(first), cpus=[first])

    def test_no_pin(self):
        self.check(2, "--no-pin", pinned=False)

    def check_udp(self, srv, n):
        targets = srv.fd_targets()
        udp = udp_socket_fds(srv, targets)
        listen_inodes = srv.listening_inodes()
        listeners = {fd for fd, t in targets.items()
                     if t.startswith("socket:[") and int(t[8:-1]) in listen_inodes}
        self.assertEqual(len(udp), n, "one UDP socket per worker")
        watched = {}
        for ep in (fd for fd, t in targets.items() if t == "anon_inode:[eventpoll]"):
            watched[ep] = {int(x) for x in re.findall(r"^tfd:\s*(\d+)", srv.fdinfo(ep), re.M)}
        worker_epolls = [ep for ep, tfds in watched.items() if listeners & tfds]
        self.assertEqual(len(worker_epolls), n)
        for ep in worker_epolls:
            self.assertEqual(len(udp & watched[ep]), 1,
                             "epoll %d watches exactly one UDP socket" % ep)
        seen = {}
        for ep, tfds in watched.items():
            for fd in tfds & udp:
                self.assertNotIn(fd, seen, "UDP fd %d in epolls %d and %s" % (fd, ep, seen.get(fd)))
                seen[fd] = ep
        self.assertEqual(set(seen), udp, "every UDP socket is in an epoll")

    def test_udp_socket_per_worker(self):
        ctl = os.path.join(tempfile.mkdtemp(prefix="reuseecho-arch-"), "control.sock")
        srv = retest.Server("--threads", 4, "--udp", "--control", ctl)
        try:
            self.check_udp(srv, 4)
            self.assertEqual(retest.ctl_command(ctl, "threads 2", timeout=30), "OK threads 2\n")
            retest.wait_until(lambda: len(udp_socket_fds(srv, srv.fd_targets())) == 2,
                              timeout=10, what="the retired workers' UDP sockets to close")
            self.check_udp(srv, 2)
            self.assertEqual(retest.ctl_command(ctl, "threads 3", timeout=30), "OK threads 3\n")
            self.check_udp(srv, 3)
        finally:
            self.assertEqual(srv.stop(), 0, srv.stderr())
            shutil.rmtree(os.path.dirname(ctl), ignore_errors=True)


def udp_socket_fds(srv, targets):
    """fds of the server's UDP sockets bound to its port (/proc/PID/net/udp*)."""
    inodes = set()
    for path in ("/proc/%d/net/udp" % srv.pid, "/proc/%d/net/udp6" % srv.pid):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    p = line.split()
                    if int(p[1].rsplit(":", 1)[1], 16) == srv.port:
                        inodes.add(int(p[9]))
        except FileNotFoundError:
            pass
    return {fd for fd, t in targets.items()
            if t.startswith("socket:[") and int(t[8:-1]) in inodes}


if __name__ == "__main__":
    retest.main()

"""Worker lifecycle: the retire deadline after a takeover's retire-listener, and the
runtime settings across an interrupted epoll_wait (EINTR after SIGSTOP/SIGCONT).

The EINTR test is meant for the ASan build (a use-after-free of the settings a `set`
replaced aborts the server there); in other builds it checks that the server keeps
serving. Every wait is a bounded poll; loopback only."""
import os
import shutil
import signal
import socket
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import retest  # noqa: E402
import unittest  # noqa: E402

SANITIZER_MARKS = ("AddressSanitizer", "LeakSanitizer", "UndefinedBehaviorSanitizer",
                   "runtime error:")


class Lifecycle(retest.ServerCase):
    dir_prefix = "reuseecho-life-"

    def connect(self):
        s = self.srv.connect()
        self.socks.append(s)
        return s

    def assert_clean(self, what):
        err = self.srv.stderr()
        for mark in SANITIZER_MARKS:
            self.assertNotIn(mark, err, what)

    def test_retire_after_retire_listener_keeps_drain_timeout(self):
        """A takeover closes the old listeners first (retire-listener), then retires
        the instance: the old process must still honour its --drain-timeout (1 s)
        with an idle client connected, resetting it, instead of living as long as
        the client does."""
        srv = self.start("--threads", 2, "--drain-timeout", 1)
        idle = []
        for i in range(4):		# both workers hold idle clients
            s = self.connect()
            retest.echo_check(s, b"idle %d\n" % i, timeout=10)
            idle.append(s)
        for w in (0, 1):
            self.assertEqual(retest.ctl_command(self.ctl, "retire-listener %d" % w),
                             "OK listener %d closed\n" % w)
        for i, s in enumerate(idle):	# still served after its listener closed
            retest.echo_check(s, b"served %d\n" % i, timeout=10)
        self.assertTrue(retest.ctl_command(self.ctl, "retire").startswith("OK retiring 2"))
        t0 = time.monotonic()
        rc = None
        while rc is None and time.monotonic() - t0 < retest.scaled(5.0):
            rc = srv.proc.poll()
            time.sleep(0.02)
        took = time.monotonic() - t0
        self.assertEqual(rc, 0, "old instance still alive %.1f s after retire (drain "
                         "timeout 1 s); stderr: %s" % (took, srv.stderr()))
        self.assertGreater(took, 0.8, "exited before its drain timeout")
        for s in idle:			# the drain timeout resets what is left
            s.settimeout(5)
            with self.assertRaises(ConnectionResetError):
                while s.recv(100):
                    pass
        self.assert_clean("retire")

    def test_set_during_sigstop_sigcont(self):
        """`set idle-timeout N` (a new settings object; the old one is freed after a
        grace period the offline workers do not delay), then SIGSTOP/SIGCONT, so
        that each worker's epoll_wait returns EINTR, 150 times. The loop must not
        touch the freed settings (ASan aborts on a use-after-free); the server keeps
        serving with the last value."""
        srv = self.start("--threads", 2, "--idle-timeout", 600)
        conns = [self.connect() for _ in range(4)]	# next_timeout reads idle-timeout
        for i, s in enumerate(conns):
            retest.echo_check(s, b"conn %d\n" % i, timeout=10)
        t0 = time.monotonic()
        rounds = 150
        try:
            with retest.ControlClient(self.ctl, timeout=10) as c:
                for i in range(rounds):
                    self.assertLess(time.monotonic() - t0, retest.scaled(60.0), "too slow")
                    self.assertTrue(c.cmd("set idle-timeout %d" % (600 + i)).startswith("OK"))
                    srv.send_signal(signal.SIGSTOP)
                    retest.wait_until(lambda: proc_state(srv.pid) in ("T", "t", "Z"), 5,
                                      what="stopped")
                    srv.send_signal(signal.SIGCONT)
        except (OSError, EOFError) as e:
            srv.proc.wait(10)
            self.fail("round %d: %r; server exit %s; stderr: %s"
                      % (i, e, srv.proc.returncode, srv.stderr()[-3000:]))
        self.assertTrue(srv.alive(), "server died; stderr: " + srv.stderr())
        self.assert_clean("EINTR")
        for i, s in enumerate(conns):
            retest.echo_check(s, b"after %d\n" % i, timeout=10)
        self.assertIn("idle-timeout 749\n", retest.ctl_command(self.ctl, "config"))
        self.assertEqual(srv.stop(), 0, srv.stderr())
        self.assert_clean("EINTR")


def proc_state(pid):
    with open("/proc/%d/stat" % pid) as f:
        return f.read().rsplit(")", 1)[1].split()[0]


if __name__ == "__main__":
    retest.main()

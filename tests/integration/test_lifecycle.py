"""Lifecycle: the supervisor serves signals and requests while a resize or takeover
runs (it is one event loop that never waits), a failed grow answers ERR and leaves no
phantom worker, a grow after --user is refused with a clear ERR, a takeover honours
the old instance's --drain-timeout and works with more workers than fit in 256 bytes
of `listeners` reply."""
import os
import resource
import shutil
import signal
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import retest  # noqa: E402

WRAPPER = os.environ.get("REUSEECHO_WRAPPER", "").split()
# Deadlines stretch when the server runs under a wrapper such as valgrind.
SCALE = retest.SCALE	# REUSEECHO_TEST_SCALE: 10 in the valgrind setup
# How soon a signal must be acted on, whatever the supervisor is doing.
SIGNAL_BOUND = 0.3 * SCALE


def note(fmt, *args):
    sys.stderr.write("  [measured] " + (fmt % args) + "\n")


def worker_rows(ctl):
    """The `workers` table's rows (without the header) as lists of columns."""
    lines = retest.ctl_command(ctl, "workers").splitlines()
    return [line.split() for line in lines[1:] if line.strip()]


def wait_exit(srv, timeout):
    """Wait for the server to exit; returns (status, seconds waited)."""
    t0 = time.monotonic()
    retest.wait_until(lambda: srv.proc.poll() is not None, timeout=timeout,
                      what="the server to exit")
    return srv.proc.returncode, time.monotonic() - t0


class Lifecycle(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="relife-")
        os.chmod(self.dir, 0o755)
        self.servers = []

    def tearDown(self):
        for srv in self.servers:
            srv.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def start(self, *args, name="control.sock", **kw):
        ctl = os.path.join(self.dir, name)
        srv = retest.Server("--control", ctl, *args, **kw)
        srv.ctl = ctl
        self.servers.append(srv)
        return srv

    def start_shrink(self, srv, n_from):
        """Send `threads 1` without waiting for its answer, and wait until the shrink
        is under way: some listeners closed, most still open (it retires one about
        every 200 ms). Returns the client with the request out."""
        c = retest.ControlClient(srv.ctl, timeout=30 * SCALE)
        c.send(b"threads 1\n")
        retest.wait_until(lambda: len(srv.listening_inodes()) <= n_from - 2, timeout=5 * SCALE,
                          interval=0.005, what="the shrink to start")
        self.assertGreater(len(srv.listening_inodes()), 2, "the shrink ended too soon")
        return c

    # --- defect 5: signals and requests during a shrink ---------------------------

    def test_sigquit_during_shrink_exits_at_once(self):
        srv = self.start("--threads", 16, "--no-pin")
        c = self.start_shrink(srv, 16)
        t0 = time.monotonic()
        srv.send_signal(signal.SIGQUIT)
        rc, _ = wait_exit(srv, 10 * SCALE)
        dt = time.monotonic() - t0
        c.close()
        note("SIGQUIT during threads 16 -> 1: exit %.3f s after the signal", dt)
        self.assertEqual(rc, 1)
        self.assertLess(dt, SIGNAL_BOUND, "exit took %.3f s" % dt)

    def test_two_sigterms_during_shrink_second_exits_at_once(self):
        srv = self.start("--threads", 16, "--no-pin", "--drain-timeout", 30)
        idle = srv.connect()  # keeps the drain from finishing by itself
        self.addCleanup(idle.close)
        retest.echo_check(idle, b"ping")
        c = self.start_shrink(srv, 16)
        srv.send_signal(signal.SIGTERM)
        retest.wait_until(lambda: "draining" in srv.stderr(), timeout=SIGNAL_BOUND,
                          what="the first SIGTERM to start the drain")
        t0 = time.monotonic()
        srv.send_signal(signal.SIGTERM)
        rc, _ = wait_exit(srv, 10 * SCALE)
        dt = time.monotonic() - t0
        c.close()
        note("second SIGTERM during a shrink: exit %.3f s after it", dt)
        self.assertEqual(rc, 1)
        self.assertLess(dt, SIGNAL_BOUND, "exit took %.3f s" % dt)
        self.assertIn("exiting at once", srv.stderr())

    def test_requests_during_shrink(self):
        """While a shrink runs: `set` is answered at once, a second resize is
        refused with ERR busy, and the held `threads 1` is answered once the
        retiring workers' listeners are closed."""
        srv = self.start("--threads", 8, "--no-pin")
        c = self.start_shrink(srv, 8)
        with retest.ControlClient(srv.ctl) as c2:
            t0 = time.monotonic()
            self.assertEqual(c2.cmd("set idle-timeout 0"), "OK idle-timeout 0 ms\n")
            dt = time.monotonic() - t0
            self.assertEqual(c2.cmd("threads 4"),
                             "ERR busy: a resize or handover is in progress\n")
        note("`set` during a shrink answered in %.3f s", dt)
        self.assertLess(dt, 0.1 * SCALE + 0.05)
        self.assertEqual(c.read_reply(timeout=30 * SCALE), "OK threads 1\n")
        c.close()
        # The reply means every retiring listener is closed and one worker runs; the
        # retired ones may still be finishing their event loops (draining), and
        # with no connections to serve they exit soon after.
        self.assertEqual(len(srv.listening_inodes()), 1)
        rows = worker_rows(srv.ctl)
        self.assertEqual([r[0] for r in rows if r[3] != "draining"], ["0"], rows)
        self.assertEqual(rows[0][3], "running", rows)
        retest.wait_until(lambda: len(worker_rows(srv.ctl)) == 1, timeout=5 * SCALE,
                          what="the retired workers to exit")
        self.assertEqual([(r[0], r[3]) for r in worker_rows(srv.ctl)], [("0", "running")])
        self.assertEqual(srv.stop(), 0)

    # --- defect 2: a failed grow --------------------------------------------------

    def failed_grow(self, spare):
        """Grow 1 -> 2 with only `spare` descriptors left under RLIMIT_NOFILE: it must
        answer ERR naming worker 1, leave no phantom, and never reuse id 1."""
        srv = self.start("--threads", 1, "--no-pin")
        with retest.ControlClient(srv.ctl) as c:
            # A round trip first: the supervisor has accepted this connection, so its
            # descriptor is in the count below and cannot take the spare one later.
            self.assertEqual(c.cmd("set idle-timeout 0"), "OK idle-timeout 0 ms\n")
            soft, hard = resource.prlimit(srv.pid, resource.RLIMIT_NOFILE)
            nfds = len(os.listdir("/proc/%d/fd" % srv.pid))
            resource.prlimit(srv.pid, resource.RLIMIT_NOFILE, (nfds + spare, hard))
            try:
                reply = c.cmd("threads 2", timeout=15 * SCALE)
            finally:
                resource.prlimit(srv.pid, resource.RLIMIT_NOFILE, (soft, hard))
            self.assertTrue(reply.startswith("ERR worker 1: "), reply)
            self.assertIn("Too many open files", reply)
            retest.wait_until(lambda: len(worker_rows(srv.ctl)) == 1, timeout=5 * SCALE,
                              what="the failed worker to be reaped")
            rows = worker_rows(srv.ctl)
            self.assertEqual([r[0] for r in rows], ["0"])
            self.assertEqual(rows[0][3], "running")
            # The set is consistent: a later grow works and is counted exactly, and
            # the failed worker's id stays spent (ids are never reused).
            self.assertEqual(c.cmd("threads 2", timeout=15 * SCALE), "OK threads 2\n")
            self.assertEqual([r[0] for r in worker_rows(srv.ctl)], ["0", "2"])
        self.assertIn("threads 2: worker 1:", srv.stderr())
        self.assertEqual(srv.stop(), 0)
        return reply

    def test_failed_grow_answers_err_and_leaves_no_phantom(self):
        # One fd left: the worker's command eventfd is created, then the new
        # thread's epoll instance or listener fails with EMFILE.
        reply = self.failed_grow(1)
        self.assertNotIn("eventfd", reply)

    def test_failed_grow_at_eventfd_spends_its_id(self):
        # No fd left: creating the worker (its command eventfd) fails before its
        # thread exists; id 1 is spent all the same.
        reply = self.failed_grow(0)
        self.assertTrue(reply.startswith("ERR worker 1: eventfd: "), reply)

    def test_grow_after_user_is_refused(self):
        if os.geteuid() != 0:
            self.skipTest("--user needs root")
        srv = self.start("--threads", 1, "--no-pin", "--user", "nobody")
        reply = retest.ctl_command(srv.ctl, "threads 2")
        self.assertEqual(reply, "ERR cannot add workers after --user dropped root: Linux lets "
                         "a socket join the SO_REUSEPORT group only with its members' uid; "
                         "start with more --threads instead\n")
        self.assertEqual([r[0] for r in worker_rows(srv.ctl)], ["0"])
        s = srv.connect()
        retest.echo_check(s, b"still one worker serving")
        s.close()
        self.assertEqual(srv.stop(), 0)

    # --- takeover -----------------------------------------------------------------

    def test_takeover_honours_old_drain_timeout(self):
        """Defect 1: the old instance's --drain-timeout bounds how long an idle
        keep-alive client keeps it alive after a takeover."""
        port = retest.free_tcp_port()
        old = self.start("--threads", 2, "--no-pin", "--drain-timeout", 1, port=port)
        idle = old.connect()
        self.addCleanup(idle.close)
        retest.echo_check(idle, b"keep-alive")
        new = self.start("--threads", 1, "--no-pin", "--takeover", port=port)
        t0 = time.monotonic()
        rc, _ = wait_exit(old, 10 * SCALE)
        dt = time.monotonic() - t0
        note("old instance exited %.3f s after the takeover (--drain-timeout 1)", dt)
        self.assertEqual(rc, 0)
        self.assertLess(dt, 1.0 + 1.5 * SCALE)
        s = new.connect()
        retest.echo_check(s, b"served by the new instance")
        s.close()
        self.assertEqual(new.stop(), 0)

    def test_takeover_with_idle_and_busy_clients(self):
        """Long-lived clients of the old instance: an idle one and one that never
        stops sending. Both keep being served after the takeover (the busy one's
        echoes stay exact), the old instance exits at its --drain-timeout, not when
        they choose to leave, and new connections reach the new instance."""
        import threading
        port = retest.free_tcp_port()
        old = self.start("--threads", 2, "--no-pin", "--drain-timeout", 2, port=port)
        idle = old.connect()
        self.addCleanup(idle.close)
        retest.echo_check(idle, b"keep-alive")
        busy = old.connect()
        self.addCleanup(busy.close)
        state = {"trips": 0, "after": 0, "end": None, "bad": 0}
        takeover_at = []

        def pinger():
            busy.settimeout(30 * SCALE)
            i = 0
            try:
                while True:
                    msg = b"busy %08d\n" % i
                    busy.sendall(msg)
                    got = b""
                    while len(got) < len(msg):
                        d = busy.recv(len(msg) - len(got))
                        if not d:
                            state["end"] = "eof"
                            return
                        got += d
                    if got != msg:
                        state["bad"] += 1
                    state["trips"] += 1
                    if takeover_at:
                        state["after"] += 1
                    i += 1
            except (ConnectionResetError, BrokenPipeError):
                state["end"] = "reset"
            except OSError as e:
                state["end"] = "error %s" % e

        t = threading.Thread(target=pinger, daemon=True)
        t.start()
        retest.wait_until(lambda: state["trips"] > 100, timeout=5 * SCALE,
                          what="the busy client to run")
        takeover_at.append(time.monotonic())
        new = self.start("--threads", 1, "--no-pin", "--takeover", port=port)
        rc, _ = wait_exit(old, 15 * SCALE)
        dt = time.monotonic() - takeover_at[0]
        t.join(10 * SCALE)
        note("takeover with an idle and a busy client: old exited %.3f s after the "
             "takeover began (--drain-timeout 2); busy client %d round trips after it, "
             "ended by %s", dt, state["after"], state["end"])
        self.assertEqual(rc, 0)
        self.assertFalse(t.is_alive(), "the busy client was never disconnected")
        self.assertEqual(state["bad"], 0, "an echo differed")
        self.assertGreater(state["after"], 100, "the busy client was not served on")
        self.assertIn(state["end"], ("reset", "eof"))
        self.assertGreater(dt, 1.5)
        self.assertLess(dt, 2.0 + 2.0 * SCALE)
        s = new.connect()
        retest.echo_check(s, b"served by the new instance")
        s.close()
        self.assertEqual(new.stop(), 0)

    def test_takeover_of_100_workers(self):
        """The `listeners` reply of 100 workers is longer than 256 bytes."""
        port = retest.free_tcp_port()
        old = self.start("--threads", 100, "--no-pin", port=port)
        reply = retest.ctl_command(old.ctl, "listeners")
        self.assertEqual(reply, "OK port %d order %s\n"
                         % (port, " ".join(str(i) for i in range(100))))
        t0 = time.monotonic()
        new = self.start("--threads", 1, "--no-pin", "--takeover", port=port,
                         ready_timeout=60 * SCALE)
        rc, _ = wait_exit(old, 30 * SCALE)
        note("takeover of 100 workers: old instance gone %.1f s after the start",
             time.monotonic() - t0)
        self.assertEqual(rc, 0)
        s = new.connect()
        retest.echo_check(s, b"after the takeover")
        s.close()
        self.assertEqual(new.stop(), 0)


if __name__ == "__main__":
    retest.main()

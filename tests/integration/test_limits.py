"""Connection limits: --max-conns over all workers, the fd limit (EMFILE) without a busy
loop or an edge-triggered hang, and --idle-timeout."""
import errno
import os
import resource
import select
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import retest  # noqa: E402
import unittest  # noqa: E402

WRAPPER = os.environ.get("REUSEECHO_WRAPPER", "").split()
# Deadlines stretch when the server runs under a wrapper such as valgrind.
SCALE = retest.SCALE	# REUSEECHO_TEST_SCALE: 10 in the valgrind setup


def note(fmt, *args):
    sys.stderr.write("  [measured] " + (fmt % args) + "\n")


def attempt(srv, payload, timeout=5.0):
    """Connect and echo payload. Returns the open socket when it echoed, None when the
    server reset the connection; fails on EOF or on a timeout."""
    fam = socket.AF_INET6 if ":" in srv.host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(timeout * SCALE)
    try:
        # The reset may come before connect() has looked at the socket's error.
        s.connect((srv.host, srv.port))
        s.sendall(payload)
        got = retest.recv_exact(s, len(payload))
    except (ConnectionResetError, BrokenPipeError):
        s.close()
        return None
    except BaseException:
        s.close()
        raise
    if got != payload:
        s.close()
        raise AssertionError("echo %r != %r" % (got, payload))
    return s


def ping(s, payload):
    s.sendall(payload)
    got = retest.recv_exact(s, len(payload))
    if got != payload:
        raise AssertionError("echo %r != %r" % (got, payload))


def close_all(socks):
    for s in socks:
        if s is not None:
            s.close()


class MaxConns(unittest.TestCase):
    def test_sixth_connection_is_reset(self):
        srv = retest.Server("--threads", 1, "--max-conns", 5)
        socks = []
        try:
            for i in range(5):
                s = attempt(srv, b"conn %d" % i)
                self.assertIsNotNone(s, "connection %d of 5 was reset" % i)
                socks.append(s)
            # The sixth: the kernel completes the handshake, the server accepts it and
            # closes it with SO_LINGER 0, so the client sees a reset, not an EOF.
            # (The reset may even beat connect() to the socket's error.)
            extra = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                extra.settimeout(5 * SCALE)
                t0 = time.monotonic()
                with self.assertRaises(ConnectionResetError):
                    extra.connect((srv.host, srv.port))
                    d = extra.recv(16)
                    self.fail("6th connection got %r instead of a reset" % d)
                note("6th connection reset after %.3fs", time.monotonic() - t0)
            finally:
                extra.close()
            # The five still echo.
            for i, s in enumerate(socks):
                ping(s, b"still %d" % i)
            # One closes: a new connection is served once the server saw the close.
            socks.pop(0).close()
            fresh = retest.wait_until(lambda: attempt(srv, b"fresh"), timeout=5 * SCALE,
                                      what="a connection to be served after one closed")
            socks.append(fresh)
            # Five open again: the next one is reset again.
            self.assertIsNone(attempt(srv, b"over"))
            for i, s in enumerate(socks):
                ping(s, b"again %d" % i)
        finally:
            close_all(socks)
            self.assertEqual(srv.stop(), 0, srv.stderr())

    def test_limit_is_over_all_workers(self):
        srv = retest.Server("--threads", 2, "--max-conns", 4)
        socks = []
        try:
            resets = 0
            for i in range(16):
                s = attempt(srv, b"seq %d" % i)
                if s is None:
                    resets += 1
                else:
                    socks.append(s)
                self.assertLessEqual(len(socks), 4, "more than 4 connections served")
            self.assertEqual(len(socks), 4)
            self.assertEqual(resets, 12)
            for i, s in enumerate(socks):
                ping(s, b"kept %d" % i)
        finally:
            close_all(socks)
            self.assertEqual(srv.stop(), 0, srv.stderr())


class FdLimit(unittest.TestCase):
    NOFILE = 64

    def test_emfile_neither_spins_nor_hangs(self):
        lim = self.NOFILE
        srv = retest.Server("--threads", 1, preexec_fn=lambda: resource.setrlimit(
            resource.RLIMIT_NOFILE, (lim, lim)))
        first = []
        queued = []
        try:
            for i in range(10):
                s = attempt(srv, b"first %d" % i)
                self.assertIsNotNone(s)
                first.append(s)
            # 200 nonblocking connects: the kernel completes them into the accept queue;
            # the server accepts until it runs out of fds.
            for i in range(200):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setblocking(False)
                queued.append(s)
                e = s.connect_ex((srv.host, srv.port))
                self.assertIn(e, (0, errno.EINPROGRESS), os.strerror(e))
            pending = set(queued)

            def all_connected():
                _, w, _ = select.select([], list(pending), [], 0.05)
                for s in w:
                    self.assertEqual(s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR), 0)
                    pending.discard(s)
                return not pending
            retest.wait_until(all_connected, timeout=10 * SCALE, what="200 handshakes")
            for s in queued:
                s.setblocking(True)
                s.settimeout(5 * SCALE)
            retest.wait_until(lambda: "Too many open files" in srv.stderr(), timeout=5 * SCALE,
                              what="the server to report EMFILE")
            self.assertEqual(srv.num_fds(), lim, "the server sits at its fd limit")
            self.assertTrue(srv.alive())

            # Two seconds at EMFILE with a full accept queue: nearly idle, still serving.
            c0 = srv.cpu_seconds()
            t0 = time.monotonic()
            rounds = 0
            while True:
                left = t0 + 2.0 - time.monotonic()
                if left <= 0 or rounds >= 100:
                    break
                for i, s in enumerate(first):
                    ping(s, bytes([65 + (rounds + i) % 26]))
                rounds += 1
                select.select([], [], [], min(0.2, max(0.0, t0 + 2.0 - time.monotonic())))
            cpu = srv.cpu_seconds() - c0
            wall = time.monotonic() - t0
            note("server CPU at EMFILE: %.3fs over %.2fs wall (%d ping rounds)", cpu, wall, rounds)
            self.assertGreaterEqual(rounds, 5)
            if not WRAPPER:
                self.assertLess(cpu, 0.2, "server burns CPU at EMFILE (%.2fs in %.1fs)"
                                % (cpu, wall))

            # Free fds: close the first 10 and the first 100 of the 200. The server
            # retries accept (on its timer and whenever a connection closes) and serves
            # the rest of the queue; each is closed once it echoed, freeing its fd.
            close_all(first)
            first = []
            close_all(queued[:100])
            rest = queued[100:]
            queued = rest
            t1 = time.monotonic()
            for i, s in enumerate(rest):
                msg = b"queued %d" % i
                try:
                    s.sendall(msg)
                    got = retest.recv_exact(s, len(msg))
                except socket.timeout:
                    self.fail("queued connection %d of %d not served (edge-triggered hang?)"
                              % (i, len(rest)))
                self.assertEqual(got, msg)
                s.close()
            note("100 queued connections served in %.3fs after fds were freed",
                 time.monotonic() - t1)
            queued = []
            # And the server is healthy again.
            s = attempt(srv, b"after")
            self.assertIsNotNone(s)
            s.close()
        finally:
            close_all(first)
            close_all(queued)
            self.assertEqual(srv.stop(), 0, srv.stderr())


class IdleTimeout(unittest.TestCase):
    def watch(self, socks, until):
        """select() on socks until the deadline; returns {sock: time it became readable}."""
        seen = {}
        while True:
            left = until - time.monotonic()
            if left <= 0:
                return seen
            r, _, _ = select.select([s for s in socks if s not in seen], [], [], left)
            now = time.monotonic()
            for s in r:
                seen[s] = now
            if len(seen) == len(socks):
                return seen

    def test_idle_closed_active_kept(self):
        srv = retest.Server("--threads", 1, "--idle-timeout", 1)
        socks = []
        try:
            silent = srv.connect()
            t_silent = time.monotonic()
            idle = srv.connect()
            busy = srv.connect()
            socks += [silent, idle, busy]
            ping(idle, b"i")
            t_idle = time.monotonic()
            closed = {}
            # busy sends a byte every 200 ms for 3 s and gets each one back.
            t0 = time.monotonic()
            for i in range(16):
                ping(busy, bytes([97 + i]))
                if i == 15:
                    break
                seen = self.watch([s for s in (silent, idle, busy) if s not in closed],
                                  t0 + 0.2 * (i + 1))
                self.assertNotIn(busy, seen, "the active connection got data or EOF")
                for s, when in seen.items():
                    self.assertEqual(s.recv(16), b"", "idle close is a FIN, not data or RST")
                    closed[s] = when
            t_busy = time.monotonic()
            self.assertGreaterEqual(t_busy - t0, 3.0)
            self.assertIn(silent, closed, "a connection that never sent was not closed")
            self.assertIn(idle, closed, "an idle connection was not closed")
            d_silent = closed[silent] - t_silent
            d_idle = closed[idle] - t_idle
            note("idle close after %.3fs (silent since connect: %.3fs)", d_idle, d_silent)
            self.assertGreaterEqual(d_idle, 0.9)
            self.assertLessEqual(d_idle, 3.0 * SCALE)
            self.assertGreaterEqual(d_silent, 0.9)
            self.assertLessEqual(d_silent, 3.0 * SCALE)
            # Once busy stops, it too is closed about a second after its last byte.
            busy.settimeout(5 * SCALE)
            self.assertEqual(busy.recv(16), b"")
            d_busy = time.monotonic() - t_busy
            note("active connection closed %.3fs after its last byte", d_busy)
            self.assertGreaterEqual(d_busy, 0.9)
            self.assertLessEqual(d_busy, 3.0 * SCALE)
        finally:
            close_all(socks)
            self.assertEqual(srv.stop(), 0, srv.stderr())

    def check_short(self, arg, seconds):
        srv = retest.Server("--threads", 1, "--idle-timeout", arg)
        s = None
        try:
            s = srv.connect()
            ping(s, b"x")
            t = time.monotonic()
            s.settimeout(5 * SCALE)
            self.assertEqual(s.recv(16), b"")
            d = time.monotonic() - t
            note("--idle-timeout %s: closed after %.3fs", arg, d)
            self.assertGreaterEqual(d, seconds * 0.8)
            self.assertLessEqual(d, seconds + 1.0 * SCALE)
        finally:
            if s is not None:
                s.close()
            self.assertEqual(srv.stop(), 0, srv.stderr())

    def test_milliseconds_suffix(self):
        self.check_short("250ms", 0.25)

    def test_decimal_seconds(self):
        self.check_short("0.5", 0.5)

    def test_zero_is_off(self):
        srv = retest.Server("--threads", 1, "--idle-timeout", 0)
        s = None
        try:
            s = srv.connect()
            ping(s, b"x")
            r, _, _ = select.select([s], [], [], 1.5)
            self.assertEqual(r, [], "--idle-timeout 0 closed a connection")
            ping(s, b"y")
        finally:
            if s is not None:
                s.close()
            self.assertEqual(srv.stop(), 0, srv.stderr())


if __name__ == "__main__":
    retest.main()

"""Signals: SIGTERM/SIGINT drain (echo what clients already sent, FIN, wait for their
close or --drain-timeout, exit 0), a second stop signal exits at once with 1, SIGHUP
and SIGPIPE are harmless."""
import fcntl
import os
import select
import signal
import socket
import struct
import sys
import termios
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import retest  # noqa: E402
import unittest  # noqa: E402

WRAPPER = os.environ.get("REUSEECHO_WRAPPER", "").split()
# Deadlines stretch when the server runs under a wrapper such as valgrind.
SCALE = 10.0 if WRAPPER else 1.0
MiB = 1 << 20


def note(fmt, *args):
    sys.stderr.write("  [measured] " + (fmt % args) + "\n")


def ping(s, payload):
    s.sendall(payload)
    got = retest.recv_exact(s, len(payload))
    if got != payload:
        raise AssertionError("echo %r != %r" % (got, payload))


def unsent(s):
    """Bytes still in this socket's send queue (not yet in the peer's receive queue)."""
    return struct.unpack("i", fcntl.ioctl(s.fileno(), termios.TIOCOUTQ, b"\0" * 4))[0]


TCP_CLOSE, TCP_CLOSE_WAIT = 7, 8


def tcp_state(s):
    """The kernel's TCP state of a client socket (first byte of struct tcp_info)."""
    return s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)[0]


def wait_reset(s, timeout):
    """A socket that has seen the peer's FIN stays in CLOSE_WAIT until a reset moves it to
    CLOSE (recv keeps returning b"" either way, so the state tells them apart)."""
    retest.wait_until(lambda: tcp_state(s) == TCP_CLOSE, timeout=timeout,
                      what="the connection to be reset (state %d)" % tcp_state(s))


def wait_exit(srv, timeout):
    """Wait for the server to exit; returns (status, seconds waited)."""
    t0 = time.monotonic()
    retest.wait_until(lambda: srv.proc.poll() is not None, timeout=timeout,
                      what="the server to exit")
    return srv.proc.returncode, time.monotonic() - t0


def server_queues(srv, client):
    """(send queue, receive queue) of the server's end of a client connection, from
    /proc/net/tcp: what the server has not yet sent, and what it has not yet read."""
    cport = client.getsockname()[1]
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(path) as f:
            next(f)
            for line in f:
                p = line.split()
                if (p[3] == "01" and int(p[1].rsplit(":", 1)[1], 16) == srv.port
                        and int(p[2].rsplit(":", 1)[1], 16) == cport):
                    tx, rx = p[4].split(":")
                    return int(tx, 16), int(rx, 16)
    raise AssertionError("no server socket for client port %d" % cport)


def read_all(test, socks, expect, deadline):
    """Read every socket to EOF (select loop); check each got exactly expect[i]."""
    n = len(socks)
    got = [bytearray() for _ in range(n)]
    open_ = set(range(n))
    while open_:
        test.assertLess(time.monotonic(), deadline, "drain stalled: %r"
                        % sorted((i, len(got[i])) for i in open_))
        r, _, _ = select.select([socks[i] for i in open_], [], [], 0.5)
        for s in r:
            i = socks.index(s)
            try:
                d = s.recv(256 * 1024)
            except ConnectionResetError:
                test.fail("client %d reset after %d of %d bytes" % (i, len(got[i]), len(expect[i])))
            if not d:
                open_.discard(i)
                s.close()
            else:
                got[i] += d
                test.assertLessEqual(len(got[i]), len(expect[i]), "client %d got extra bytes" % i)
    for i in range(n):
        test.assertEqual(len(got[i]), len(expect[i]), "client %d" % i)
        test.assertTrue(got[i] == expect[i], "client %d: echoed bytes differ" % i)


def proc_state(pid):
    with open("/proc/%d/stat" % pid) as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def refused(srv):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(5 * SCALE)
    try:
        s.connect((srv.host, srv.port))
        return False
    except ConnectionRefusedError:
        return True
    except ConnectionResetError:
        return False
    finally:
        s.close()


def close_all(socks):
    for s in socks:
        s.close()


class Drain(unittest.TestCase):
    def test_sigterm_echoes_everything_already_sent(self):
        n, size = 20, MiB
        srv = retest.Server("--threads", 2, "--drain-timeout", 5)
        socks = []
        try:
            socks = [srv.connect() for _ in range(n)]
            data = [retest.pattern(size, seed=i) for i in range(n)]
            for s in socks:
                s.setblocking(False)
            sent = [0] * n
            # Send everything without reading: the server echoes until our receive
            # buffers fill, buffers up to --conn-buffer, then stops reading.
            deadline = time.monotonic() + 20 * SCALE
            while min(sent) < size:
                self.assertLess(time.monotonic(), deadline, "could not send 1 MiB each: %r"
                                % sent)
                _, w, _ = select.select([], [s for i, s in enumerate(socks) if sent[i] < size],
                                        [], 0.2)
                for s in w:
                    i = socks.index(s)
                    try:
                        sent[i] += s.send(data[i][sent[i]:sent[i] + 256 * 1024])
                    except BlockingIOError:
                        pass
            # Every byte has reached the server's socket: "already sent" for certain.
            retest.wait_until(lambda: all(unsent(s) == 0 for s in socks),
                              timeout=10 * SCALE, what="the send queues to empty")
            self.assertTrue(srv.alive())

            t_sig = time.monotonic()
            srv.send_signal(signal.SIGTERM)
            # Draining: no new connections (every listener is closed) ...
            retest.wait_until(lambda: refused(srv), timeout=3 * SCALE,
                              what="new connections to be refused during the drain")
            # ... and each client gets back exactly what it sent, then EOF.
            read_all(self, socks, data, time.monotonic() + 20 * SCALE)
            rc, _ = wait_exit(srv, 10 * SCALE)
            took = time.monotonic() - t_sig
            note("drain of %d x 1 MiB: exit %d after %.3fs", n, rc, took)
            self.assertEqual(rc, 0, srv.stderr())
            self.assertLess(took, 5.0 * SCALE, "exit later than --drain-timeout")
            self.assertNotIn("error", srv.stderr())
        finally:
            close_all(socks)
            srv.kill()

    def test_sigterm_echoes_input_the_server_stopped_reading(self):
        # 1 MiB fits in the server's kernel send buffer (tcp_wmem autotuning), so the
        # test above may never make the server buffer or stop reading. Here each client
        # sends until the server has stopped reading: input waits unread in the server's
        # socket, behind a full --conn-buffer and a full send buffer.
        n, block, most = 2, 256 * 1024, 32 << 20
        srv = retest.Server("--threads", 1, "--drain-timeout", 10)
        socks = []
        try:
            socks = [srv.connect() for _ in range(n)]
            data = [bytearray() for _ in range(n)]
            def paused(s):
                """Everything sent has reached the server, which leaves some of it
                unread: the receive queue holds the same non-zero count 0.1 s apart."""
                deadline = time.monotonic() + 0.5 * SCALE
                while unsent(s) != 0:
                    if time.monotonic() > deadline:
                        return False
                    time.sleep(0.01)
                before = server_queues(srv, s)
                if before[1] == 0:
                    return False
                time.sleep(0.1)
                return server_queues(srv, s) == before

            for i, s in enumerate(socks):
                s.setblocking(False)
                off = 0
                while True:
                    self.assertLess(len(data[i]), most, "the server never stopped reading")
                    if off == len(data[i]):
                        if server_queues(srv, s)[1] > 0 and paused(s):
                            break
                        data[i] += retest.pattern(block, seed=i * 1000 + len(data[i]) // block)
                    try:
                        off += s.send(data[i][off:])
                    except BlockingIOError:
                        self.assertTrue(select.select([], [s], [], 5 * SCALE)[1],
                                        "client %d: send stalled at %d bytes" % (i, off))
                note("client %d sent %d bytes; server unsent %d, unread %d",
                     i, len(data[i]), *server_queues(srv, s))
            t_sig = time.monotonic()
            srv.send_signal(signal.SIGTERM)
            read_all(self, socks, [bytes(d) for d in data], time.monotonic() + 30 * SCALE)
            rc, _ = wait_exit(srv, 10 * SCALE)
            note("backpressured drain: exit %d after %.3fs", rc, time.monotonic() - t_sig)
            self.assertEqual(rc, 0, srv.stderr())
        finally:
            close_all(socks)
            srv.kill()

    def test_sigterm_serves_connections_still_in_the_accept_queue(self):
        # With the server stopped, the kernel completes handshakes into the accept
        # queue. SIGTERM then SIGCONT: the drain command reaches the worker while most
        # of these are still queued; closing the listener then would reset them.
        n = 300
        srv = retest.Server("--threads", 1, "--drain-timeout", 10)
        socks = []
        stopped = False
        try:
            srv.send_signal(signal.SIGSTOP)
            stopped = True
            retest.wait_until(lambda: proc_state(srv.pid) == "T", timeout=5 * SCALE,
                              what="the server to stop")
            for i in range(n):
                s = srv.connect(timeout=5 * SCALE)
                socks.append(s)
                s.sendall(b"queued %d" % i)
            srv.send_signal(signal.SIGTERM)
            srv.send_signal(signal.SIGCONT)
            stopped = False
            for i, s in enumerate(socks):
                msg = b"queued %d" % i
                s.settimeout(10 * SCALE)
                try:
                    got = retest.recv_exact(s, len(msg))
                    eof = s.recv(16)
                except ConnectionResetError:
                    self.fail("queued connection %d of %d was reset" % (i, n))
                self.assertEqual(got, msg)
                self.assertEqual(eof, b"", "connection %d: FIN after the echo" % i)
                s.close()
            rc, _ = wait_exit(srv, 10 * SCALE)
            self.assertEqual(rc, 0, srv.stderr())
        finally:
            if stopped:
                srv.send_signal(signal.SIGCONT)
            close_all(socks)
            srv.kill()

    def check_idle_clients(self, sig):
        srv = retest.Server("--threads", 2)
        socks = []
        try:
            talker = srv.connect()
            ping(talker, b"hello")
            quiet = srv.connect()       # connected, never sends
            socks = [talker, quiet]
            # Make sure the quiet one was accepted: the server holds two connections.
            retest.wait_until(lambda: sum(1 for t in srv.fd_targets().values()
                                          if t.startswith("socket:")) >= 2 + srv.workers,
                              timeout=5 * SCALE, what="both connections accepted")
            srv.send_signal(sig)
            for s in socks:
                s.settimeout(5 * SCALE)
                self.assertEqual(s.recv(16), b"", "FIN after the signal")
            # It waits for its clients (default --drain-timeout is 10 s) ...
            self.assertTrue(srv.alive())
            talker.close()
            t0 = time.monotonic()
            quiet.close()
            # ... and exits as soon as they have closed.
            rc, _ = wait_exit(srv, 5 * SCALE)
            took = time.monotonic() - t0
            note("%s: exit %d %.3fs after the last client closed", sig.name, rc, took)
            self.assertEqual(rc, 0, srv.stderr())
            self.assertLess(took, 2.0 * SCALE)
        finally:
            close_all(socks)
            srv.kill()

    def test_sigterm_idle_clients_get_fin(self):
        self.check_idle_clients(signal.SIGTERM)

    def test_sigint_like_sigterm(self):
        self.check_idle_clients(signal.SIGINT)

    def test_drain_timeout_resets_client_that_never_closes(self):
        srv = retest.Server("--threads", 1, "--drain-timeout", 1)
        s = None
        try:
            s = srv.connect()
            ping(s, b"x")
            t0 = time.monotonic()
            srv.send_signal(signal.SIGTERM)
            s.settimeout(5 * SCALE)
            self.assertEqual(s.recv(16), b"", "FIN after SIGTERM")
            self.assertEqual(tcp_state(s), TCP_CLOSE_WAIT)
            # The client neither closes nor sends: after --drain-timeout it is reset.
            rc, _ = wait_exit(srv, 5 * SCALE)
            took = time.monotonic() - t0
            note("client that never closes: exit %d %.3fs after SIGTERM (--drain-timeout 1)", rc, took)
            self.assertEqual(rc, 0, srv.stderr())
            self.assertGreaterEqual(took, 0.9, "exited before --drain-timeout")
            self.assertLess(took, 1.0 + 1.5 * SCALE)
            wait_reset(s, 2 * SCALE)
        finally:
            if s is not None:
                s.close()
            srv.kill()

    def test_drain_timeout_resets_client_that_does_not_read(self):
        srv = retest.Server("--threads", 1, "--drain-timeout", 1)
        s = None
        try:
            s = srv.connect()
            s.setblocking(False)
            total = 0
            blob = b"z" * 65536
            # Fill every buffer on the way (until the socket stays unwritable for
            # 0.3 s): the server cannot finish echoing.
            deadline = time.monotonic() + 10 * SCALE
            while True:
                self.assertLess(time.monotonic(), deadline, "buffers never filled")
                try:
                    total += s.send(blob)
                except BlockingIOError:
                    if not select.select([], [s], [], 0.3)[1]:
                        break
            t0 = time.monotonic()
            srv.send_signal(signal.SIGTERM)
            rc, _ = wait_exit(srv, 5 * SCALE)
            took = time.monotonic() - t0
            self.assertEqual(rc, 0, srv.stderr())
            self.assertGreaterEqual(took, 0.9)
            self.assertLess(took, 1.0 + 1.5 * SCALE)
            # What was echoed is a prefix of what was sent; the rest ends in a reset.
            s.setblocking(True)
            s.settimeout(5 * SCALE)
            got = 0
            with self.assertRaises(ConnectionResetError):
                for _ in range(100000):
                    d = s.recv(1 << 20)
                    if not d:
                        break
                    self.assertEqual(d, b"z" * len(d))
                    got += len(d)
            self.assertLess(got, total)
        finally:
            if s is not None:
                s.close()
            srv.kill()


class SecondSignal(unittest.TestCase):
    def check(self, first, second):
        srv = retest.Server("--threads", 2, "--drain-timeout", 30)
        s = None
        try:
            s = srv.connect()
            ping(s, b"x")
            srv.send_signal(first)
            s.settimeout(5 * SCALE)
            self.assertEqual(s.recv(16), b"", "the drain has begun")
            self.assertTrue(srv.alive())
            t0 = time.monotonic()
            srv.send_signal(second)
            rc, _ = wait_exit(srv, 5 * SCALE)
            took = time.monotonic() - t0
            note("%s then %s: exit %d after %.3fs", first.name, second.name, rc, took)
            self.assertEqual(rc, 1, srv.stderr())
            self.assertLess(took, 1.0 * SCALE)
            # _exit(1) skips the control thread's teardown; the socket is removed anyway.
            self.assertIsNotNone(srv.control_path)
            self.assertFalse(srv.control_socket_left(),
                             "exit at once left %s behind" % srv.control_path)
            # The connection is gone: anything the client sends is answered by a reset.
            self.assertEqual(tcp_state(s), TCP_CLOSE_WAIT)
            s.sendall(b"late")
            wait_reset(s, 2 * SCALE)
        finally:
            if s is not None:
                s.close()
            srv.kill()

    def test_second_sigterm_exits_at_once(self):
        self.check(signal.SIGTERM, signal.SIGTERM)

    def test_sigint_then_sigterm(self):
        self.check(signal.SIGINT, signal.SIGTERM)


class HarmlessSignals(unittest.TestCase):
    def test_sighup_and_sigpipe_do_not_kill(self):
        srv = retest.Server("--threads", 2)
        s = None
        try:
            s = srv.connect()
            ping(s, b"before")
            srv.send_signal(signal.SIGPIPE)
            srv.send_signal(signal.SIGHUP)
            # SIGHUP is logged once it has been handled; SIGPIPE was sent before it.
            retest.wait_until(lambda: "SIGHUP" in srv.stderr() or not srv.alive(),
                              timeout=5 * SCALE, what="SIGHUP to be handled")
            self.assertTrue(srv.alive(), "killed by SIGHUP/SIGPIPE: %s" % srv.stderr())
            ping(s, b"after")
            s2 = srv.connect()
            ping(s2, b"new")
            s2.close()
            srv.send_signal(signal.SIGPIPE)
            ping(s, b"again")
            self.assertTrue(srv.alive())
            s.close()
            s = None
            self.assertEqual(srv.stop(), 0, srv.stderr())
        finally:
            if s is not None:
                s.close()
            srv.kill()

    def test_sighup_during_drain_does_not_end_it(self):
        srv = retest.Server("--threads", 1, "--drain-timeout", 30)
        s = None
        try:
            s = srv.connect()
            ping(s, b"x")
            srv.send_signal(signal.SIGTERM)
            s.settimeout(5 * SCALE)
            self.assertEqual(s.recv(16), b"")
            srv.send_signal(signal.SIGHUP)
            retest.wait_until(lambda: "SIGHUP" in srv.stderr() or not srv.alive(),
                              timeout=5 * SCALE, what="SIGHUP to be handled")
            self.assertTrue(srv.alive(), "SIGHUP ended the drain: %s" % srv.stderr())
            s.close()
            s = None
            rc, _ = wait_exit(srv, 5 * SCALE)
            self.assertEqual(rc, 0, srv.stderr())
        finally:
            if s is not None:
                s.close()
            srv.kill()


if __name__ == "__main__":
    retest.main()

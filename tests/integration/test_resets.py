"""Every reset the server sends is deliberate, seen by the client as a reset, and
counted in connections_reset_total{reason} (and, like every close, in
connections_closed_total{reason}, so accepted == sum of closed still holds):
idle timeout with unread input or unsent output, the drain and retire deadlines,
--max-conns. A close that loses nothing stays graceful and counts no reset. The
drain logs its outcome with exact counts."""
import errno
import os
import re
import signal
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import retest  # noqa: E402
import unittest  # noqa: E402

CLOSED = ("closed_eof", "closed_error", "closed_idle", "closed_limit", "closed_drain")
RESETS = ("reset_idle", "reset_drain", "reset_limit", "reset_error")


TCP_CLOSE = 7


def tcp_state(s):
    return s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]


def resets(st):
    return {k: st[k] for k in RESETS}


def expect_reset(s, timeout=10.0):
    """Read until the connection is reset; EOF or a timeout is a failure."""
    s.settimeout(timeout)
    try:
        while True:
            d = s.recv(1 << 16)
            if not d:
                raise AssertionError("clean EOF where a reset was expected")
    except ConnectionResetError:
        return


def sender_until_reset(s, deadline):
    """Keep sending (never reading) until the server resets the connection."""
    s.setblocking(False)
    chunk = b"x" * 65536
    while time.monotonic() < deadline:
        try:
            s.send(chunk)
        except BlockingIOError:
            time.sleep(0.01)
        except (ConnectionResetError, BrokenPipeError):
            return True
        except OSError as e:
            if e.errno in (errno.ECONNRESET, errno.EPIPE):
                return True
            raise
    return False


class Resets(retest.ServerCase):
    dir_prefix = "reuseecho-resets-"

    @property
    def path(self):
        return self.ctl

    def stats(self):
        return retest.stats_json(self.path)["total"]

    def assert_balanced(self):
        st = self.stats()
        self.assertEqual(st["active"], 0)
        self.assertEqual(st["accepted"], sum(st[k] for k in CLOSED), st)

    def test_idle_non_reader_is_reset(self):
        srv = self.start("--threads", 1, "--idle-timeout", "0.5")
        # A client that keeps sending but never reads: the server's buffer fills,
        # it stops reading, and no byte moves. At the idle timeout its input is
        # unread, so the close cannot be graceful: a counted reset.
        s = srv.connect()
        t0 = time.monotonic()
        self.assertTrue(sender_until_reset(s, t0 + 30), "no reset within 30 s")
        s.close()
        retest.wait_until(lambda: self.stats()["active"] == 0, 10, what="closed")
        st = self.stats()
        self.assertEqual(resets(st), {"reset_idle": 1, "reset_drain": 0, "reset_limit": 0,
                                      "reset_error": 0})
        self.assertEqual(st["closed_idle"], 1)
        self.assert_balanced()
        self.assertEqual(srv.stop(), 0, srv.stderr())

    def test_idle_quiet_is_graceful(self):
        srv = self.start("--threads", 1, "--idle-timeout", "0.5")
        # Everything echoed and read, nothing pending either way: a clean FIN.
        s = srv.connect()
        retest.echo_check(s, retest.pattern(100000, 3))
        s.settimeout(10)
        self.assertEqual(s.recv(10), b"")
        s.close()
        retest.wait_until(lambda: self.stats()["closed_idle"] == 1, 10, what="idle close")
        st = self.stats()
        self.assertEqual(resets(st), {"reset_idle": 0, "reset_drain": 0, "reset_limit": 0,
                                      "reset_error": 0})
        self.assert_balanced()
        self.assertEqual(srv.stop(), 0, srv.stderr())

    def test_max_conns(self):
        srv = self.start("--threads", 2, "--max-conns", 3)
        held = [srv.connect() for _ in range(3)]
        for i, s in enumerate(held):
            retest.echo_check(s, b"held %d" % i)
        for i in range(4):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(10)
            try:
                # The reset may already be there when connect() checks SO_ERROR.
                s.connect((srv.host, srv.port))
                s.sendall(b"over")
            except ConnectionResetError:
                pass
            else:
                expect_reset(s)
            s.close()
        st = self.stats()
        self.assertEqual(st["reset_limit"], 4)
        self.assertEqual(st["closed_limit"], 4)
        self.assertEqual(st["reset_idle"] + st["reset_drain"] + st["reset_error"], 0)
        for s in held:
            retest.echo_check(s, b"still here")
            s.close()
        retest.wait_until(lambda: self.stats()["active"] == 0, 10, what="closed")
        self.assert_balanced()
        self.assertEqual(srv.stop(), 0, srv.stderr())

    def test_drain_outcome_logged(self):
        srv = self.start("--threads", 2, "--drain-timeout", "1")
        closers = [srv.connect() for _ in range(8)]
        holders = [srv.connect() for _ in range(2)]
        for i, s in enumerate(closers + holders):
            retest.echo_check(s, b"before %d" % i)
        # One connection that ends before the drain does not count in its outcome.
        early = srv.connect()
        retest.echo_check(early, b"early")
        early.close()
        retest.wait_until(lambda: self.stats()["active"] == 10, 10, what="early close")
        srv.send_signal(signal.SIGTERM)
        # The drain sends FIN to everyone; the closers answer with their own close.
        for s in closers + holders:
            s.settimeout(10)
            self.assertEqual(s.recv(10), b"")
        for s in closers:
            s.close()
        # The holders never close: reset when the drain timeout passes. They have
        # read the FIN, so recv() keeps answering EOF; the reset shows in the TCP
        # state, which leaves CLOSE_WAIT for CLOSE.
        for s in holders:
            retest.wait_until(lambda: tcp_state(s) == TCP_CLOSE, 10,
                              what="holder reset (state %d)" % tcp_state(s))
            s.close()
        rc = srv.proc.wait(20)
        err = srv.stderr()
        self.assertEqual(rc, 0, err)
        lines = re.findall(r"drain: \d+ closed, \d+ reset at timeout", err)
        self.assertEqual(lines, ["drain: 8 closed, 2 reset at timeout"], err)

    def test_retire_deadline_resets_counted(self):
        srv = self.start("--threads", 2, "--drain-timeout", "0.5")
        socks = [srv.connect() for _ in range(12)]
        for i, s in enumerate(socks):
            retest.echo_check(s, b"conn %d" % i)
        st = retest.stats_json(self.path)
        # The highest-numbered worker retires; its connections never close.
        ids = sorted(w["id"] for w in st["per_worker"])
        on_retiring = [w for w in st["per_worker"] if w["id"] == ids[-1]][0]["active"]
        self.assertGreater(on_retiring, 0, "the kernel put no connection on worker %d" % ids[-1])
        self.assertEqual(retest.ctl_command(self.path, "threads 1"), "OK threads 1\n")
        retest.wait_until(lambda: self.stats()["reset_drain"] == on_retiring, 15,
                          what="%d resets at the retire deadline" % on_retiring)
        alive = 0
        for s in socks:
            try:
                retest.echo_check(s, b"after", timeout=5)
                alive += 1
            except (ConnectionResetError, AssertionError, BrokenPipeError):
                pass
            s.close()
        self.assertEqual(alive, 12 - on_retiring)
        retest.wait_until(lambda: self.stats()["active"] == 0, 10, what="closed")
        st = self.stats()
        self.assertEqual(st["reset_drain"], on_retiring)
        self.assertEqual(st["reset_idle"] + st["reset_limit"] + st["reset_error"], 0)
        self.assert_balanced()
        self.assertEqual(srv.stop(), 0, srv.stderr())


if __name__ == "__main__":
    retest.main()

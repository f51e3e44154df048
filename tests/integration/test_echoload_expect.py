"""echoload --expect-close and --expect-reset against a server that hangs up on purpose.

The server is the HangUp class below, a small threaded TCP echo server on loopback
that echoes exactly LIMIT bytes of a connection and then either closes cleanly
(shutdown(SHUT_WR), reads the client's rest to its EOF, closes: never a reset) or
resets (waits until the client has acknowledged every byte, then close() with
SO_LINGER 0). It applies this to every EVERY-th connection it accepts; the others are
plain echo connections. It counts what it did, so echoload's expected_closes and
expected_resets can be compared with the server's own counts, exactly: a connection
ends while echoload still waits for the rest of a message (LIMIT is never a multiple
of the message size), so echoload sees every end before it exits.

With the flag: exit 0, no error, no mismatch, the end counted and each socket's bytes
exactly LIMIT (the echo up to the end is an exact prefix of what was sent), and the
load goes on over reconnected sockets. Without it: exit 1 and the end is an error.
"""
import json
import os
import socket
import struct
import subprocess
import sys
import termios
import threading
import time
import unittest
import fcntl

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import retest  # noqa: E402

EOF_WAIT = 10.0  # seconds a server thread waits for the client's EOF or ACKs


class HangUp:
    """Echo server: every EVERY-th connection is ended after LIMIT echoed bytes,
    with a FIN (how="close") or a RST (how="reset")."""

    def __init__(self, limit, how, every=1):
        self.limit, self.how, self.every = limit, how, every
        self.lock = threading.Lock()
        self.accepted = 0
        self.ended = 0          # connections ended after exactly LIMIT bytes
        self.ended_short = 0    # ... ended with fewer (the client closed first)
        self.errors = []
        self.threads = []
        self.ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(128)
        self.ls.settimeout(0.1)
        self.port = self.ls.getsockname()[1]
        self.stopping = False
        self.acceptor = threading.Thread(target=self._accept_loop, daemon=True)
        self.acceptor.start()

    def _accept_loop(self):
        while not self.stopping:
            try:
                s, _ = self.ls.accept()
            except socket.timeout:
                continue
            except OSError as e:
                if not self.stopping:
                    self.errors.append("accept: %s" % e)
                return
            with self.lock:
                n = self.accepted
                self.accepted += 1
            t = threading.Thread(target=self._serve, args=(s, n % self.every == 0), daemon=True)
            self.threads.append(t)
            t.start()

    def _serve(self, s, hang_up):
        echoed = 0
        try:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.settimeout(EOF_WAIT)
            while not hang_up or echoed < self.limit:
                data = s.recv(65536)
                if not data:
                    break
                if hang_up:
                    data = data[:self.limit - echoed]
                s.sendall(data)
                echoed += len(data)
            if not hang_up or echoed < self.limit:
                if hang_up:
                    with self.lock:
                        self.ended_short += 1
                return
            if self.how == "close":
                s.shutdown(socket.SHUT_WR)
                while s.recv(65536):
                    pass  # the client's rest, to its EOF: closing before would reset
            else:
                # Every echoed byte acknowledged (SIOCOUTQ: sent but unacked), so the
                # client holds all LIMIT bytes when the reset comes.
                deadline = time.monotonic() + EOF_WAIT
                while struct.unpack("i", fcntl.ioctl(s, termios.TIOCOUTQ, b"\0" * 4))[0]:
                    if time.monotonic() > deadline:
                        raise OSError("unacknowledged bytes after %.0f s" % EOF_WAIT)
                    time.sleep(0.001)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            with self.lock:
                self.ended += 1
        except OSError as e:
            self.errors.append("connection: %s" % e)
        finally:
            s.close()

    def stop(self):
        self.stopping = True
        self.acceptor.join(5)
        self.ls.close()
        for t in self.threads:
            t.join(EOF_WAIT + 1)


def echoload(port, *args, duration=1.0):
    argv = [retest.binary("echoload"), "--port", str(port), "--duration", str(duration),
            "--warmup", "0.2", "--json"] + [str(a) for a in args]
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True, timeout=duration + 30)
    lines = p.stdout.splitlines()
    rec = json.loads(lines[0]) if len(lines) == 1 else None
    return p, rec


class ExpectedEnds(unittest.TestCase):
    def server(self, limit, how, every=1):
        srv = HangUp(limit, how, every)
        self.addCleanup(srv.stop)
        return srv

    def finished(self, srv):
        """The server's threads done; its counts are final."""
        for t in list(srv.threads):
            t.join(EOF_WAIT + 1)
        self.assertEqual(srv.errors, [])

    def check_ends(self, how, mode_args, limit, every=1, min_msgs=1):
        srv = self.server(limit, how, every)
        flag = "--expect-close" if how == "close" else "--expect-reset"
        p, rec = echoload(srv.port, flag, *mode_args)
        self.finished(srv)
        what = "%s %s" % (flag, " ".join(mode_args))
        self.assertIsNotNone(rec, "%s: one JSON line: %r %r" % (what, p.stdout, p.stderr))
        self.assertEqual(p.returncode, 0, "%s: %s" % (what, p.stderr))
        self.assertEqual((rec["errors"], rec["mismatches"]), (0, 0), what)
        self.assertGreaterEqual(rec["msgs"], min_msgs, what)
        n, other = ("expected_closes", "expected_resets") if how == "close" else \
            ("expected_resets", "expected_closes")
        key = "close" if how == "close" else "reset"
        # The load went on over new sockets: every slot ended at least twice on
        # average (a slot that did not reconnect ends once), each end counted.
        conns = int(mode_args[mode_args.index("--conns") + 1])
        self.assertGreaterEqual(srv.ended, 2 * conns, "%s: the server ended %d connections"
                                % (what, srv.ended))
        self.assertEqual(rec[n], srv.ended, what)
        self.assertIsNone(rec[other], what)
        self.assertEqual((rec["bytes_before_%s_min" % key], rec["bytes_before_%s_max" % key]),
                         (limit, limit), what)
        return srv, rec

    def test_close_pingpong(self):
        # 1562 messages of 64 B and half of the 1563rd, then EOF; 4 slots reconnect.
        self.check_ends("close", ["--mode", "pingpong", "--conns", "4", "--size", "64"],
                        100000)

    def test_close_stream(self):
        self.check_ends("close", ["--mode", "stream", "--conns", "2", "--window", "16K",
                                  "--size", "1000"], 250500)

    def test_close_rate(self):
        # 2000 msgs/s of 100 B over 4 connections, 500/s each: a connection ends
        # after 15.5 messages, about every 31 ms, and the schedule goes on.
        self.check_ends("close", ["--mode", "rate", "--rate", "2000", "--conns", "4",
                                             "--size", "100"], 1550, min_msgs=1000)

    def test_close_churn(self):
        # Every other cycle ends after 40 of its 100 bytes; the rest complete.
        srv, rec = self.check_ends("close", ["--mode", "churn", "--conns", "4", "--size",
                                             "100"], 40, every=2)
        self.assertGreater(srv.accepted - srv.ended, 0)

    def test_reset_pingpong(self):
        self.check_ends("reset", ["--mode", "pingpong", "--conns", "4", "--size", "64",
                                  "--depth", "2"], 100000)

    def test_reset_rate(self):
        # 77.5 messages a connection: the test server's wait for the last ACK (a
        # delayed ACK, some 40 ms) must not outlast a connection's 155 ms of schedule.
        self.check_ends("reset", ["--mode", "rate", "--rate", "2000", "--conns", "4",
                                  "--size", "100"], 7750, min_msgs=1000)

    def test_reset_stream(self):
        self.check_ends("reset", ["--mode", "stream", "--conns", "2", "--window", "16K",
                                  "--size", "1000"], 250500)

    def test_reset_churn(self):
        self.check_ends("reset", ["--mode", "churn", "--conns", "4", "--size", "100"], 40,
                        every=2)

    def test_both_flags(self):
        """Both flags: a close counts as a close and not as a reset."""
        srv = self.server(100000, "close")
        p, rec = echoload(srv.port, "--expect-close", "--expect-reset", "--conns", "4")
        self.finished(srv)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual((rec["expected_closes"], rec["expected_resets"]), (srv.ended, 0))
        self.assertIsNone(rec["bytes_before_reset_min"])

    def test_without_the_flag_an_end_is_an_error(self):
        for how, first, flag in (("close", "unexpected EOF", "--expect-reset"),
                                 ("reset", None, "--expect-close"),
                                 ("reset", None, None)):
            with self.subTest(how=how, other_flag=flag):
                srv = self.server(1000, how)
                p, rec = echoload(srv.port, "--conns", "2", *([flag] if flag else []))
                self.finished(srv)
                self.assertEqual(p.returncode, 1, p.stderr)
                # Each slot is retired at its first end: one error per connection.
                self.assertEqual(rec["errors"], 2, p.stderr)
                self.assertEqual(srv.ended, 2)
                if first:
                    self.assertIn("(first: %s)" % first, p.stderr)
                if how == "reset":
                    self.assertTrue(any(s in p.stderr for s in (
                        "recv: Connection reset by peer", "send: Connection reset by peer",
                        "send: Broken pipe")), p.stderr)
                self.assertIsNone(rec["expected_closes" if flag != "--expect-close"
                                      else "expected_resets"])

    def test_text_output(self):
        srv = self.server(5000, "close")
        argv = [retest.binary("echoload"), "--port", str(srv.port), "--duration", "0.5",
                "--warmup", "0", "--conns", "2", "--size", "100", "--expect-close"]
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           universal_newlines=True, timeout=30)
        self.finished(srv)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("\n  closes      %d expected, each after 5000 B echoed (whole run)\n"
                      % srv.ended, p.stdout)
        self.assertNotIn("resets", p.stdout)

    def test_udp_refuses_the_flags(self):
        for flag in ("--expect-close", "--expect-reset"):
            p = subprocess.run([retest.binary("echoload"), "--proto", "udp", flag],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               universal_newlines=True, timeout=10)
            self.assertEqual(p.returncode, 2)
            self.assertEqual(p.stderr, "echoload: %s: only with --proto tcp (UDP has no "
                             "connection to end)\n" % flag)


if __name__ == "__main__":
    retest.main()

"""Stale events, provoked (needs -Ddebug_hooks=true; meson registers this test only
in such builds, and CI's ASan stage is one).

A stale event is a later event of the same epoll batch for a connection that an
earlier one closed. It arises only when something closes connections mid-batch (a
stop, a drain timeout), which ordinary traffic does not do on cue: `debug
close-mid-batch W` makes worker W reset every connection right after the first
connection event of a batch that holds more. The dispatch must drop those events;
under ASan the connection pool poisons freed structs, so a use after the end of the
turn is reported like a use after free(). The counters must stay exact: every reset
counted once, `active` back to 0, accepted == the sum of the closes.

Bounded in count (5 rounds of 48 clients) and time; loopback only."""
import errno
import os
import re
import shutil
import socket
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import retest  # noqa: E402
import unittest  # noqa: E402

SANITIZER_MARKS = ("AddressSanitizer", "LeakSanitizer", "UndefinedBehaviorSanitizer",
                   "runtime error:")
MID_RE = re.compile(r"worker 0: debug: reset (\d+) connections mid-batch, (\d+) later events")
CLOSED = ("closed_eof", "closed_error", "closed_idle", "closed_limit", "closed_drain")


class StaleEvents(unittest.TestCase):
    NCLIENTS = 48
    ROUNDS = 5

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="reuseecho-dbg-")
        self.ctl = os.path.join(self.dir, "control.sock")
        self.srv = retest.Server("--threads", 1, "--control", self.ctl)

    def tearDown(self):
        if self.srv.alive():
            self.srv.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def assert_clean(self, what):
        err = self.srv.stderr()
        for mark in SANITIZER_MARKS:
            self.assertNotIn(mark, err, what)

    def one_round(self, r, seen):
        """Open NCLIENTS, keep them all sending, arm the hook; returns (reset, stale)
        from its log line once it fired."""
        socks = []
        for i in range(self.NCLIENTS):
            s = self.srv.connect()
            retest.echo_check(s, b"r%d c%d\n" % (r, i), timeout=10)
            s.setblocking(False)
            socks.append(s)
        self.assertEqual(retest.ctl_command(self.ctl, "debug close-mid-batch 0"),
                         "OK worker 0 closes its connections mid-batch\n")
        msg = b"x" * 100
        deadline = time.monotonic() + retest.scaled(15.0)
        found = None
        was_reset = set()
        while found is None:
            self.assertLess(time.monotonic(), deadline, "the hook never fired; stderr: "
                            + self.srv.stderr())
            for s in socks:		# one burst: many connections ready in one batch
                if s in was_reset:
                    continue
                try:
                    s.send(msg)
                    s.recv(65536)
                except BlockingIOError:
                    pass
                except (ConnectionResetError, BrokenPipeError):
                    was_reset.add(s)	# the error is reported once
            hits = MID_RE.findall(self.srv.stderr())
            if len(hits) > seen:
                found = tuple(int(x) for x in hits[seen])
        # Every client sees the reset.
        for s in socks:
            if s in was_reset:
                s.close()
                continue
            s.setblocking(True)
            s.settimeout(retest.scaled(5.0))
            try:
                while s.recv(65536):
                    pass
                self.fail("clean EOF where a reset was expected")
            except ConnectionResetError:
                pass
            except OSError as e:
                self.assertEqual(e.errno, errno.ECONNRESET)
            s.close()
        return found

    def test_close_mid_batch_drops_stale_events(self):
        seen = 0
        total_reset = 0
        for r in range(self.ROUNDS):
            reset, stale = self.one_round(r, seen)
            seen += 1
            print("round %d: reset %d connections, %d stale events" % (r, reset, stale))
            self.assertEqual(reset, self.NCLIENTS, "round %d: connections reset" % r)
            self.assertGreaterEqual(stale, 1, "round %d: stale events" % r)
            total_reset += reset
            self.assertTrue(self.srv.alive(), self.srv.stderr())
            self.assert_clean("round %d" % r)
            retest.wait_until(lambda: retest.stats_json(self.ctl)["total"]["active"] == 0, 10,
                              what="active 0 after round %d" % r)
        # New connections reuse the freed structs and fd numbers and echo exactly.
        for i in range(8):
            s = self.srv.connect()
            retest.echo_check(s, retest.pattern(70000, i), timeout=10)
            s.close()
        def settled():
            t = retest.stats_json(self.ctl)["total"]
            return t if t["active"] == 0 and sum(t[k] for k in CLOSED) == t["accepted"] else None
        t = retest.wait_until(settled, 10, what="every connection closed and counted")
        self.assertEqual(t["accepted"], self.ROUNDS * self.NCLIENTS + 8)
        self.assertEqual(t["closed_drain"], total_reset, t)
        self.assertEqual(t["reset_drain"], total_reset, t)
        self.assertEqual(t["closed_error"], 0, t)
        self.assertEqual(t["closed_eof"], 8, t)
        self.assertEqual(self.srv.stop(), 0, self.srv.stderr())
        self.assert_clean("stop")


if __name__ == "__main__":
    retest.main()

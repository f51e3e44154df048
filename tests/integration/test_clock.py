"""The worker clock across the 32-bit millisecond wrap (2^32 ms, 49.7 days).

tests/helpers/clockshift.c (LD_PRELOAD) moves the server's CLOCK_MONOTONIC forward:
- a jump of exactly 2^32 ms while running puts every worker past its 49.7th day at
  once: the heartbeat must stay a 64-bit CLOCK_MONOTONIC value, so /healthz stays 200
  and worker_stalled 0, and echo goes on;
- a fixed shift that makes the low 32 bits of the clock wrap a few seconds after
  start: the worker's 32-bit timers (idle timeout here) stay right across the wrap.

Every wait is a bounded poll; loopback only."""
import os
import shutil
import socket
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import retest  # noqa: E402
import unittest  # noqa: E402

WRAP_MS = 1 << 32


def shifted_env(shift_ms, after_ms=None):
    lib = os.environ.get("REUSEECHO_CLOCKSHIFT_LIB")
    if not lib or not os.path.exists(lib):
        raise unittest.SkipTest("clockshift helper not built (REUSEECHO_CLOCKSHIFT_LIB)")
    env = {"LD_PRELOAD": lib, "REUSEECHO_CLOCKSHIFT_MS": str(shift_ms)}
    if after_ms is not None:
        env["REUSEECHO_CLOCKSHIFT_AFTER_MS"] = str(after_ms)
    # A sanitizer runtime insists on coming first in the library list.
    asan = os.environ.get("ASAN_OPTIONS", "")
    env["ASAN_OPTIONS"] = (asan + ":" if asan else "") + "verify_asan_link_order=0"
    return env


def health(path):
    try:
        st, _, _ = retest.http_get_unix(path, "/healthz")
        return st
    except OSError:
        return None


def stalled_series(path):
    st, _, body = retest.http_get_unix(path, "/metrics")
    if st != 200:
        return None
    out = {}
    for name, labels, value in retest.parse_prometheus(body.decode()):
        if name == "reuseecho_worker_stalled":
            out[labels["worker"]] = value
    return out


class ClockWrap(retest.ServerCase):
    dir_prefix = "reuseecho-clock-"

    def start(self, env, *args):
        self.srv = retest.Server("--threads", 2, "--control", self.ctl, *args, extra_env=env)
        return self.srv

    def uptime(self):
        return retest.stats_json(self.ctl)["uptime_s"]

    def assert_healthy_for(self, seconds, what):
        """/healthz 200 and worker_stalled 0 on every poll for `seconds`."""
        end = time.monotonic() + seconds
        polls = 0
        while time.monotonic() < end:
            self.assertEqual(health(self.ctl), 200, "%s: /healthz; stderr: %s"
                             % (what, self.srv.stderr()))
            series = stalled_series(self.ctl)
            self.assertEqual(series, {"0": 0.0, "1": 0.0}, what + ": worker_stalled")
            polls += 1
            time.sleep(0.1)
        self.assertGreater(polls, 5)

    def test_jump_past_2pow32_ms_keeps_heartbeat(self):
        """The clock jumps forward exactly 2^32 ms 1.5 s after start: every worker is
        now past the 32-bit wrap of its own uptime. /healthz stays 200, no worker reads
        stalled, echo works."""
        srv = self.start(shifted_env(WRAP_MS, after_ms=1500))
        retest.wait_until(lambda: health(self.ctl) == 200, 10, what="healthy before the jump")
        s = srv.connect()
        self.socks.append(s)
        retest.echo_check(s, b"before the jump\n", timeout=10)
        retest.wait_until(lambda: self.uptime() > WRAP_MS / 1000.0, 10, what="the clock jump")
        # Each worker beats at least every 250 ms: give the first turn after the
        # jump a second, then it must hold.
        retest.wait_until(lambda: health(self.ctl) == 200, 2,
                          what="/healthz 200 after the jump; stderr: " + srv.stderr())
        self.assert_healthy_for(retest.scaled(3.0), "after the jump")
        retest.echo_check(s, b"after the jump\n", timeout=10)
        # The watchdog may see the jump before a worker's next turn (up to 250 ms):
        # a warning then is an artefact of the jump, but each must be followed by
        # its recovery.
        err = srv.stderr()
        self.assertEqual(err.count("(stalled)"), err.count("event loop turns again"), err)
        self.assertEqual(srv.stop(), 0, srv.stderr())

    def test_timers_across_32bit_wrap(self):
        """The low 32 bits of the clock wrap 3 s after the test starts. Idle timeout
        2 s: a client that pings every 200 ms across the wrap stays open and echoes;
        one that goes idle 1 s before the wrap is closed 2 s later, after it."""
        now_ms = int(time.clock_gettime(time.CLOCK_MONOTONIC) * 1000)
        shift = (-(now_ms + 3000)) % WRAP_MS + WRAP_MS	# beyond 2^32 as well
        wrap_at = time.monotonic() + 3.0
        srv = self.start(shifted_env(shift), "--idle-timeout", 2)
        busy = srv.connect()
        self.socks.append(busy)
        idle = None
        i = 0
        while time.monotonic() < wrap_at + 3.0:
            if idle is None and time.monotonic() >= wrap_at - 1.0:
                idle = srv.connect()
                self.socks.append(idle)
                retest.echo_check(idle, b"then idle\n", timeout=5)
                idle_since = time.monotonic()
            msg = b"ping %d\n" % i
            retest.echo_check(busy, msg, timeout=5)
            self.assertEqual(health(self.ctl), 200, "healthz at ping %d" % i)
            i += 1
            time.sleep(0.2)
        self.assertIsNotNone(idle)
        # The idle one: closed by the idle timeout (EOF), about 2 s after its echo.
        idle.settimeout(retest.scaled(5.0))
        self.assertEqual(idle.recv(100), b"", "idle connection closed by the server")
        waited = time.monotonic() - idle_since
        self.assertGreater(waited, 1.5, "closed too early (the wrap broke the deadline)")
        js = retest.stats_json(self.ctl)
        self.assertEqual(js["total"]["closed_idle"], 1, js["total"])
        retest.echo_check(busy, b"still here\n", timeout=5)
        self.assertEqual(srv.stop(), 0, srv.stderr())


if __name__ == "__main__":
    retest.main()

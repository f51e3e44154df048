"""UDP truncation (debug-hooks builds only): a datagram larger than the server's
receive buffer is counted and dropped, never echoed cut short. With the server's
full 64 KiB buffers no legal datagram is truncated, so the test shrinks the buffer
with REUSEECHO_DEBUG_UDP_RECV_SIZE."""
import os
import socket
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import retest  # noqa: E402
import unittest  # noqa: E402


class UdpTruncation(retest.ServerCase):
    dir_prefix = "reuseecho-udptrunc-"

    def test_truncated_dropped(self):
        self.start("--udp", "--threads", "1",
                   extra_env={"REUSEECHO_DEBUG_UDP_RECV_SIZE": "1000"})
        c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socks.append(c)
        c.settimeout(retest.scaled(5.0))
        c.connect(("127.0.0.1", self.srv.port))
        # Interleaved: each datagram that fits must come back, each larger one must
        # not; the one after a dropped one proves the worker went on (one worker, one
        # queue, in order).
        sizes = (1000, 1001, 999, 65507, 0, 4000, 1)
        for i, n in enumerate(sizes):
            d = retest.pattern(n, seed=i)
            c.send(d)
            if n <= 1000:
                self.assertEqual(c.recv(70000), d)
        c.setblocking(False)
        with self.assertRaises(BlockingIOError):
            c.recv(70000)
        want = {"udp_datagrams_received": 7, "udp_datagrams_sent": 4,
                "udp_dropped_truncated": 3, "udp_bytes_sent": 1000 + 999 + 0 + 1}
        got = retest.wait_until(
            lambda: (lambda t: t if all(t[k] == v for k, v in want.items()) else None)(
                retest.stats_json(self.ctl)["total"]), what="counters %r" % want)
        # Bytes received counts each datagram's real size, truncated ones too.
        self.assertEqual(got["udp_bytes_received"], sum(sizes))


if __name__ == "__main__":
    retest.main()

"""UDP echo (--udp) from outside: every datagram comes back whole, as one datagram, to
its source and from the address it was sent to; the counters say exactly what
happened to each one."""
import os
import socket
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import retest  # noqa: E402
import unittest  # noqa: E402

V4_MAX = 65507
V6_MAX = 65527
SIZES_V4 = (0, 1, 1472, 8192, V4_MAX)
SIZES_V6 = (0, 1, 1472, 8192, V6_MAX)
FLOWS = 8
TIMEOUT = retest.scaled(5.0)


def udp_client(family, addr, port, bind=None):
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.settimeout(TIMEOUT)
    if bind is not None:
        s.bind(bind)
    s.connect((addr, port))
    return s


def payload(flow, seq, n):
    """n bytes that differ per flow and per datagram, so a reply crossed between
    flows or datagrams is caught."""
    head = ("%d:%d:" % (flow, seq)).encode()
    body = retest.pattern(n, seed=flow * 1000 + seq)
    return (head + body)[:n]


def udp_totals(path):
    t = retest.stats_json(path)["total"]
    return {k: v for k, v in t.items() if k.startswith("udp_")}


class UdpEcho(retest.ServerCase):
    dir_prefix = "reuseecho-udp-"

    def echo_sizes(self, family, addr, sizes):
        """Each of FLOWS connected clients sends every size, one at a time, and must
        get exactly that datagram back. Returns (datagrams, bytes)."""
        clients = [udp_client(family, addr, self.srv.port) for _ in range(FLOWS)]
        self.socks += clients
        n = nbytes = 0
        for seq, size in enumerate(sizes):
            for flow, c in enumerate(clients):
                d = payload(flow, seq, size)
                c.send(d)
                got = c.recv(V6_MAX + 1)
                self.assertEqual(len(got), size, "flow %d size %d" % (flow, size))
                self.assertEqual(got, d, "flow %d size %d: payload differs" % (flow, size))
                n += 1
                nbytes += size
        return n, nbytes

    def assert_counts(self, received, nbytes, **drops):
        want = {
            "udp_datagrams_received": received,
            "udp_bytes_received": nbytes,
            "udp_dropped_truncated": 0,
            "udp_dropped_queue_full": 0,
            "udp_dropped_send_error": 0,
            "udp_dropped_loop_guard": 0,
            "udp_dropped_rate_limit": 0,
            "udp_kernel_drops": 0,
        }
        for k, v in drops.items():
            want["udp_dropped_" + k] = v
        dropped = sum(drops.values())
        want["udp_datagrams_sent"] = received - dropped
        # The counters are read after every reply arrived: sent is final already.
        got = retest.wait_until(
            lambda: (lambda t: t if all(t[k] == v for k, v in want.items()) else None)(
                udp_totals(self.ctl)),
            what="udp counters %r" % want)
        return got

    def test_sizes_ipv4(self):
        self.start("--udp", "--threads", "2")
        n, nbytes = self.echo_sizes(socket.AF_INET, "127.0.0.1", SIZES_V4)
        got = self.assert_counts(n, nbytes)
        self.assertEqual(got["udp_bytes_sent"], nbytes)

    def test_sizes_ipv6(self):
        self.start("--udp", "--threads", "2", bind="::1")
        n, nbytes = self.echo_sizes(socket.AF_INET6, "::1", SIZES_V6)
        got = self.assert_counts(n, nbytes)
        self.assertEqual(got["udp_bytes_sent"], nbytes)

    def test_off_by_default(self):
        self.start("--threads", "1")
        c = udp_client(socket.AF_INET, "127.0.0.1", self.srv.port)
        self.socks.append(c)
        c.settimeout(retest.scaled(0.3))
        c.send(b"x")
        with self.assertRaises((socket.timeout, ConnectionRefusedError)):
            c.recv(16)
        self.assertEqual(udp_totals(self.ctl)["udp_datagrams_received"], 0)


if __name__ == "__main__":
    retest.main()

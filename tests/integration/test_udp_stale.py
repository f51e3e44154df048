"""UDP event ordering (debug-hooks builds only): a UDP edge that the worker's epoll
reports in the same batch as, and after, the command that closes the worker's UDP
socket must be ignored, not served on a socket that is gone."""
import os
import signal
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import retest  # noqa: E402
import unittest  # noqa: E402

STALL_MS = 800


class UdpStaleEvent(retest.ServerCase):
    dir_prefix = "reuseecho-udpstale-"

    def test_sigterm_then_datagram_in_one_batch(self):
        """The worker is stalled (debug stall) while SIGTERM arrives and then a
        datagram, so its next epoll batch holds the drain command first and the UDP
        edge after it: the drain reads the datagram, echoes it and closes the UDP
        socket, and the UDP edge that follows in the batch is stale. The server must
        exit 0 (before the fix: SIGSEGV on the closed socket's state)."""
        self.start("--udp", "--threads", "1")
        c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socks.append(c)
        c.settimeout(retest.scaled(5.0))
        c.connect(("127.0.0.1", self.srv.port))
        c.send(b"before")
        self.assertEqual(c.recv(100), b"before")
        r = retest.ctl_command(self.ctl, "debug stall 0 %d" % STALL_MS)
        self.assertTrue(r.startswith("OK"), r)
        # The worker reads its command, then sleeps: give it time to get there,
        # then queue the drain command and, after it, the datagram's edge.
        time.sleep(0.2)
        self.srv.proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        c.send(b"during")
        # Drained: the datagram that arrived before the drain is echoed.
        self.assertEqual(c.recv(100), b"during")
        self.srv.proc.wait(timeout=retest.scaled(10))
        self.assertEqual(self.srv.stop(), 0, self.srv.stderr())


if __name__ == "__main__":
    retest.main()

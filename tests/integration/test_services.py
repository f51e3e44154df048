"""--service discard and chargen (RFC 863, RFC 864) from outside, over real loopback
sockets: byte counts are exact, the chargen pattern is checked against one computed
here independently of the server's table, a client that stops reading costs neither
memory nor CPU, and the service shows in config, features and every stats format."""
import glob
import re
import subprocess
import threading
import os
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import retest  # noqa: E402
import unittest  # noqa: E402

MIB = 1 << 20


def chargen_expected(n):
    """The first n bytes of RFC 864's pattern, built line by line: line k is the 72
    printable characters starting at 32 + k mod 95, then CRLF."""
    out = bytearray()
    k = 0
    while len(out) < n:
        out += bytes(32 + (k + c) % 95 for c in range(72)) + b"\r\n"
        k += 1
    return bytes(out[:n])


def is_pattern_line(line):
    """True when line is one 74-byte pattern line (any rotation)."""
    if len(line) != 74 or line[72:] != b"\r\n":
        return False
    first = line[0] - 32
    return all(line[c] == 32 + (first + c) % 95 for c in range(72))


def worker_ticks(pid):
    """User + system clock ticks of the threads named reuseecho-w*, and how many."""
    total, n = 0, 0
    for d in glob.glob("/proc/%d/task/*" % pid):
        try:
            with open(d + "/comm") as f:
                comm = f.read().strip()
            with open(d + "/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        if comm.startswith("reuseecho-w"):
            total += int(fields[11]) + int(fields[12])
            n += 1
    return total, n


class Discard(retest.ServerCase):
    def test_tcp_10mib_in_nothing_out(self):
        srv = self.start("--threads", "1", "--service", "discard")
        s = srv.connect()
        self.socks.append(s)
        block = retest.pattern(64 * 1024)
        for _ in range(160):                        # 10 MiB
            s.sendall(block)
        s.shutdown(socket.SHUT_WR)
        s.settimeout(retest.scaled(10))
        self.assertEqual(s.recv(1), b"", "discard sent something, or did not close")
        t = retest.wait_until(lambda: (lambda j: j if j["total"]["closed_eof"] == 1 else None)(
            retest.stats_json(self.ctl)), what="closed_eof 1")["total"]
        self.assertEqual(t["bytes_received"], 10 * MIB)
        self.assertEqual(t["bytes_sent"], 0)
        self.assertEqual(t["accepted"], 1)
        self.assertEqual(t["active"], 0)
        self.assertEqual(t["closed_error"], 0)

    def test_udp_counted_never_answered(self):
        srv = self.start("--threads", "1", "--udp", "--service", "discard")
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socks.append(u)
        for i in range(20):
            u.sendto(b"x" * i, (srv.host, srv.port))
        retest.wait_until(lambda: retest.stats_json(self.ctl)["total"]["udp_datagrams_received"] == 20,
                          what="20 datagrams counted")
        t = retest.stats_json(self.ctl)["total"]
        self.assertEqual(t["udp_bytes_received"], sum(range(20)))
        self.assertEqual(t["udp_datagrams_sent"], 0)
        u.settimeout(retest.scaled(0.5))
        with self.assertRaises(socket.timeout):
            u.recvfrom(100)


class Chargen(retest.ServerCase):
    def test_tcp_pattern_exact_over_1mib(self):
        srv = self.start("--threads", "1", "--service", "chargen")
        s = srv.connect()
        self.socks.append(s)
        s.sendall(b"ignored input\r\n")
        got = retest.recv_exact(s, MIB)
        self.assertEqual(got, chargen_expected(MIB))
        s.close()
        self.socks.remove(s)
        t = retest.wait_until(lambda: (lambda j: j if j["total"]["active"] == 0 else None)(
            retest.stats_json(self.ctl)), what="connection closed")["total"]
        self.assertGreaterEqual(t["bytes_sent"], MIB)
        self.assertEqual(t["bytes_received"], len(b"ignored input\r\n"))

    def test_stopped_reader_costs_no_memory_or_cpu(self):
        srv = self.start("--threads", "1", "--service", "chargen")
        s = srv.connect()
        self.socks.append(s)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        self.assertEqual(retest.recv_exact(s, 74), chargen_expected(74))
        # The client stops reading: the server fills the socket, then must wait for
        # EPOLLOUT, sending nothing and spinning on nothing.
        def stalled():
            a = retest.stats_json(self.ctl)["total"]["bytes_sent"]
            time.sleep(0.2)
            b = retest.stats_json(self.ctl)["total"]["bytes_sent"]
            return a == b and a > 74
        retest.wait_until(stalled, what="the socket full")
        rss0 = srv.rss_kb()
        ticks0, nworkers = worker_ticks(srv.pid)
        self.assertEqual(nworkers, 1)
        time.sleep(2.0)
        ticks1, _ = worker_ticks(srv.pid)
        rss1 = srv.rss_kb()
        self.assertLessEqual(rss1 - rss0, 256, "RSS grew %d -> %d KiB" % (rss0, rss1))
        # 2 s of a busy loop would be 200 ticks; an idle worker's 250 ms timer a few.
        self.assertLessEqual(ticks1 - ticks0, 5, "worker used %d ticks" % (ticks1 - ticks0))
        # Reading again resumes the pattern where it stopped.
        got = retest.recv_exact(s, 256 * 1024)
        self.assertEqual(got, chargen_expected(74 + 256 * 1024)[74:])

    def test_udp_one_reply_per_datagram(self):
        srv = self.start("--threads", "1", "--udp", "--service", "chargen")
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socks.append(u)
        u.settimeout(retest.scaled(5))
        lengths = []
        for i in range(40):
            u.sendto(b"q", (srv.host, srv.port))
            d, _ = u.recvfrom(4096)
            self.assertLessEqual(len(d), 512)
            full = (len(d) // 74) * 74
            for off in range(0, full, 74):
                self.assertTrue(is_pattern_line(d[off:off + 74]), d[off:off + 74])
            # A short tail is the start of a pattern line.
            tail = d[full:]
            if tail:
                self.assertEqual(tail, chargen_expected(95 * 74 * 2)[
                    ((tail[0] - 32) * 74 if tail[0] >= 32 else 0):][:len(tail)])
            lengths.append(len(d))
        self.assertGreater(len(set(lengths)), 5, "reply lengths not random: %r" % lengths)
        t = retest.stats_json(self.ctl)["total"]
        self.assertEqual(t["udp_datagrams_received"], 40)
        self.assertEqual(t["udp_datagrams_sent"], 40)
        self.assertEqual(t["udp_bytes_sent"], sum(lengths))


class Visibility(retest.ServerCase):
    def test_config_features_stats_show_service(self):
        self.start("--threads", "1", "--service", "chargen")
        self.assertIn("service chargen\n", retest.ctl_command(self.ctl, "config"))
        self.assertIn("service chargen\n", retest.ctl_command(self.ctl, "features"))
        self.assertEqual(retest.stats_json(self.ctl)["features"]["service"], "chargen")
        text = retest.ctl_command(self.ctl, "stats")
        self.assertIn(", service chargen\n", text.splitlines(True)[0])
        st, _, body = retest.http_get_unix(self.ctl, "/metrics")
        self.assertEqual(st, 200)
        info = [lab for name, lab, _ in retest.parse_prometheus(body.decode())
                if name == "reuseecho_feature_info"]
        self.assertEqual([lab["service"] for lab in info], ["chargen"])
        self.assertIn("--service chargen", self.srv.stderr())

    def test_echo_default_shows_echo(self):
        self.start("--threads", "1")
        self.assertIn("service echo\n", retest.ctl_command(self.ctl, "config"))
        self.assertEqual(retest.stats_json(self.ctl)["features"]["service"], "echo")
        self.assertNotIn("service", retest.ctl_command(self.ctl, "stats").splitlines()[0])

    def test_bad_service_rejected(self):
        p = subprocess.run([retest.binary(), "--service", "daytime"],
                                  capture_output=True, text=True, timeout=10)
        self.assertEqual(p.returncode, 2)
        self.assertIn("--service", p.stderr)


def echoload(*args, timeout=60):
    return subprocess.run([retest.binary("echoload")] + [str(a) for a in args],
                                 capture_output=True, text=True, timeout=timeout)


def field(out, name):
    m = re.search(r"^\s*%s\s+(\d+)" % name, out, re.M)
    return int(m.group(1)) if m else None


class EcholoadModes(retest.ServerCase):
    def test_sink_against_discard(self):
        srv = self.start("--threads", "1", "--service", "discard")
        p = echoload("--host", srv.host, "--port", srv.port, "--mode", "sink", "--conns", 2,
                     "--duration", "0.5", "--warmup", "0")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual(field(p.stdout, "errors"), 0)
        echoed = field(p.stdout, "echoed")
        self.assertGreater(echoed, 1 << 20)
        # Everything echoload sent reaches the server once its connections close.
        t = retest.wait_until(lambda: (lambda j: j if j["total"]["active"] == 0 else None)(
            retest.stats_json(self.ctl)), what="sink connections closed")["total"]
        self.assertGreaterEqual(t["bytes_received"], echoed)
        self.assertEqual(t["bytes_sent"], 0)

    def test_sink_against_chargen_is_an_error(self):
        srv = self.start("--threads", "1", "--service", "chargen")
        p = echoload("--host", srv.host, "--port", srv.port, "--mode", "sink", "--conns", 1,
                     "--duration", "0.3", "--warmup", "0")
        self.assertEqual(p.returncode, 1)
        self.assertIn("not a discard server", p.stderr)

    def test_source_verifies_chargen(self):
        srv = self.start("--threads", "1", "--service", "chargen")
        p = echoload("--host", srv.host, "--port", srv.port, "--mode", "source", "--conns", 2,
                     "--duration", "0.5", "--warmup", "0")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual(field(p.stdout, "mismatches"), 0)
        self.assertGreater(field(p.stdout, "echoed"), 1 << 20)

    def test_source_fails_on_a_wrong_byte(self):
        # A chargen impostor: the real pattern with one byte changed at 10,000.
        ls = socket.socket()
        self.socks.append(ls)
        ls.bind(("127.0.0.1", 0))
        ls.listen(4)
        data = bytearray(chargen_expected(200000))
        data[10000] ^= 1

        def serve():
            c, _ = ls.accept()
            try:
                c.sendall(bytes(data))
                time.sleep(retest.scaled(1.0))
            except OSError:
                pass
            c.close()
        th = threading.Thread(target=serve, daemon=True)
        th.start()
        p = echoload("--host", "127.0.0.1", "--port", ls.getsockname()[1], "--mode", "source",
                     "--conns", 1, "--duration", "0.5", "--warmup", "0")
        th.join(retest.scaled(5))
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertGreater(field(p.stdout, "mismatches"), 0)


if __name__ == "__main__":
    retest.main()

"""doc/DESIGN.md §5 bounds under hostile control clients: garbage, over-long lines, too many
clients, clients that never read, half-sent HTTP requests and idle clients. After
each, the server must still echo and still answer `stats`."""
import json
import os
import random
import select
import shutil
import socket
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import retest  # noqa: E402
import unittest  # noqa: E402

MAX_CLIENTS = 64


class Hostile(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="reuseecho-hostile-")
        self.srv = None

    def tearDown(self):
        if self.srv is not None and self.srv.alive():
            self.srv.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def start(self, *args, control_timeout="0.5"):
        self.ctl = os.path.join(self.dir, "control.sock")
        self.srv = retest.Server("--threads", 2, "--control", self.ctl,
                                 "--control-timeout", control_timeout, *args)
        return self.srv

    def assert_serving(self):
        self.assertTrue(self.srv.alive(), self.srv.stderr())
        s = self.srv.connect()
        try:
            retest.echo_check(s, retest.pattern(10000, 7), timeout=10)
        finally:
            s.close()
        t0 = time.monotonic()
        self.assertIn("accepted", retest.ctl_command(self.ctl, "stats", timeout=5))
        return time.monotonic() - t0

    def finish(self):
        self.assert_serving()
        self.assertEqual(self.srv.stop(), 0, self.srv.stderr())

    # --- garbage ------------------------------------------------------------------

    @staticmethod
    def random_line(rng):
        alphabet = [b for b in range(256) if b != 0x0A]
        while True:
            n = rng.randint(1, 200)
            line = bytes(rng.choice(alphabet) for _ in range(n))
            if rng.random() < 0.2:
                line = line[: n // 2] + b"\0" + line[n // 2:]
            if rng.random() < 0.2:
                line += b"\r"
            core = line[:-1] if line.endswith(b"\r") else line
            if core.strip(b" \t"):
                return line   # a blank line gets no reply by design

    def test_random_bytes_as_commands(self):
        self.start()
        rng = random.Random(862)
        c = retest.ControlClient(self.ctl)
        for i in range(400):
            line = self.random_line(rng)
            try:
                c.send(line + b"\n")
                r = c.read_reply_bytes(timeout=5)
            except (EOFError, ConnectionResetError, BrokenPipeError):
                c.close()   # closing on garbage is allowed; crashing is not
                c = retest.ControlClient(self.ctl)
                continue
            self.assertTrue(r.startswith(b"ERR ") and r.count(b"\n") == 1, (line, r))
            if i % 50 == 49:
                self.assertIn("accepted", c.cmd("stats"))
                self.assert_serving()
        c.close()

        # Garbage with embedded newlines in bulk, replies unread until the end;
        # then a marker command must still be answered, after only ERR replies.
        c = retest.ControlClient(self.ctl)
        blob = bytearray()
        while len(blob) < 64 * 1024:
            blob += self.random_line(rng) + rng.choice([b"\n", b"\r\n"])
        c.send(b"help\n")           # line mode first: random bytes never look like HTTP
        c.read_reply_bytes()
        for off in range(0, len(blob), 4096):
            c.send(bytes(blob[off:off + 4096]))
        c.send(b"health\n")
        n = 0
        while True:
            r = c.read_reply_bytes(timeout=10)
            if r == b"OK\n":
                break
            self.assertTrue(r.startswith(b"ERR "), r)
            n += 1
        self.assertGreater(n, 100)
        self.assertIn("accepted", c.cmd("stats"))
        c.close()
        self.finish()

    def test_one_mib_line(self):
        self.start()
        s = retest.unix_connect(self.ctl)
        s.setblocking(False)
        payload = memoryview(b"A" * (1 << 20) + b"\n")
        sent, got, eof = 0, b"", False
        t0 = time.monotonic()
        deadline = t0 + 15
        while not eof:
            left = deadline - time.monotonic()
            self.assertGreater(left, 0, "not closed; got %r" % got[:200])
            want_w = [s] if sent < len(payload) else []
            r, w, _ = select.select([s], want_w, [], left)
            if w:
                try:
                    sent += s.send(payload[sent:sent + 65536])
                except BlockingIOError:
                    pass
                except (BrokenPipeError, ConnectionResetError):
                    sent = len(payload)     # the server closed: stop sending
            if r:
                try:
                    d = s.recv(65536)
                except BlockingIOError:
                    continue
                except ConnectionResetError:
                    break
                if not d:
                    eof = True
                got += d
        dt = time.monotonic() - t0
        s.close()
        self.assertLess(dt, 5.0, "closed only after %.2fs" % dt)
        self.assertTrue(got.startswith(b"ERR ") and got.endswith(b"\n\n") and got.count(b"\n") == 2,
                        got[:300])
        self.assertIn(b"too long", got)
        self.finish()

    # --- too many clients -----------------------------------------------------------

    def test_busy_beyond_64_clients(self):
        self.start(control_timeout="20")
        n = 100
        clients = [retest.ControlClient(self.ctl, timeout=10) for _ in range(n)]
        try:
            ok = []
            for i, c in enumerate(clients[:MAX_CLIENTS]):
                try:
                    ok.append(c.cmd("health", timeout=5) == "OK\n")
                except (EOFError, ConnectionResetError, AssertionError) as e:
                    self.fail("client %d of the first 64: %r" % (i, e))
            self.assertTrue(all(ok))
            outcome = {}
            for i, c in enumerate(clients[MAX_CLIENTS:], MAX_CLIENTS):
                data, reset = c.read_until_eof(timeout=5)
                key = data.decode(errors="replace") + (" +RST" if reset else "")
                outcome.setdefault(key, []).append(i)
            # The first 64 are still served.
            for c in clients[:MAX_CLIENTS]:
                self.assertIn("accepted", c.cmd("stats"))
        finally:
            for c in clients:
                c.close()
        retest.wait_until(lambda: "accepted" in retest.ctl_command(self.ctl, "stats"), timeout=10,
                          what="a fresh client served after the crowd left")
        self.finish()
        busy = len(outcome.get("ERR busy\n\n", []))
        summary = {k: "%d clients (%d..%d)" % (len(v), v[0], v[-1]) for k, v in outcome.items()}
        self.assertEqual(busy, max(0, n - MAX_CLIENTS),
                         "with %d clients connected at once, want exactly %d 'ERR busy'; "
                         "got %s" % (n, n - MAX_CLIENTS, summary))

    # --- clients that never read ------------------------------------------------------

    def test_pipelined_metrics_never_read(self):
        self.start("--threads", 4, control_timeout="30")
        rss0 = self.srv.rss_kb()
        flood = []
        try:
            for _ in range(20):
                c = retest.ControlClient(self.ctl)
                c.sock.setblocking(False)
                data = b"metrics\n" * 1000
                off = 0
                deadline = time.monotonic() + 10
                while off < len(data):      # the server may stop reading: don't block on it
                    self.assertLess(time.monotonic(), deadline)
                    try:
                        off += c.sock.send(data[off:])
                    except BlockingIOError:
                        select.select([], [c.sock], [], 0.1)
                flood.append(c)
            worst = 0.0
            rss_max = 0
            t_end = time.monotonic() + 3
            while time.monotonic() < t_end:
                rss = self.srv.rss_kb()
                rss_max = max(rss_max, rss)
                self.assertLess(rss, 200 * 1024, "server RSS %d KiB" % rss)
                worst = max(worst, self.assert_serving())
                time.sleep(0.2)
            self.assertLess(worst, retest.scaled(1.0), "a fresh `stats` took %.3fs" % worst)
            print("\n  flood: RSS %d -> max %d KiB, slowest fresh stats %.1f ms"
                  % (rss0, rss_max, worst * 1000), file=sys.stderr)
        finally:
            for c in flood:
                c.close()
        self.finish()

    # --- time limits --------------------------------------------------------------------

    def test_half_sent_http_closed(self):
        port = retest.free_tcp_port()
        self.start("--metrics-listen", "127.0.0.1:%d" % port)
        for what, req in (("unix, headers without blank line",
                           b"GET /metrics HTTP/1.1\r\nHost: x\r\n"),
                          ("unix, request line only", b"GET /stats HTTP/1.0\r\n"),
                          ("tcp, headers without blank line",
                           b"GET /metrics HTTP/1.1\r\nHost: x\r\n")):
            if what.startswith("tcp"):
                s = socket.create_connection(("127.0.0.1", port), timeout=5)
            else:
                s = retest.unix_connect(self.ctl)
            s.sendall(req)
            t0 = time.monotonic()
            data = b""
            try:
                while True:
                    d = s.recv(4096)
                    if not d:
                        break
                    data += d
            except ConnectionResetError:
                pass
            except socket.timeout:
                self.fail("%s: not closed within 5 s" % what)
            dt = time.monotonic() - t0
            s.close()
            self.assertEqual(data, b"", what)
            self.assertTrue(0.4 <= dt <= 3.0, "%s: closed after %.2fs (timeout 0.5)" % (what, dt))
        self.finish()

    def test_idle_client_closed(self):
        self.start()
        c = retest.ControlClient(self.ctl)
        t0 = time.monotonic()
        data, _ = c.read_until_eof(timeout=5)
        dt = time.monotonic() - t0
        c.close()
        self.assertEqual(data, b"ERR idle timeout: closing\n\n")
        self.assertTrue(0.4 <= dt <= 3.0, "silent client closed after %.2fs" % dt)

        c = retest.ControlClient(self.ctl)
        for i in range(5):       # activity keeps it open past the timeout
            if i:
                time.sleep(0.2)
            self.assertEqual(c.cmd("health"), "OK\n")
        t0 = time.monotonic()
        data, _ = c.read_until_eof(timeout=5)
        dt = time.monotonic() - t0
        c.close()
        self.assertEqual(data, b"ERR idle timeout: closing\n\n")
        self.assertTrue(0.4 <= dt <= 3.0, "client idle after a command closed after %.2fs" % dt)
        self.finish()

    def test_pipelined_replies_in_order(self):
        self.start()
        c = retest.ControlClient(self.ctl)
        cmds = ["health", "config", "set idle-timeout 0", "features", "stats json", "bogus",
                "threads 2", "workers", "", "help", "set conn-buffer 1", "stats"]
        c.send("".join(x + "\n" for x in cmds))
        checks = [
            lambda r: r == "OK\n",
            lambda r: r.startswith("threads 2\n"),
            lambda r: r == "OK idle-timeout 0 ms\n",
            lambda r: r.startswith("so_reuseport "),
            lambda r: json.loads(r)["workers"] == 2,
            lambda r: r.startswith("ERR unknown command 'bogus'"),
            lambda r: r == "OK threads 2\n",
            lambda r: r.startswith("id ") and len(r.splitlines()) == 3,
            lambda r: r.startswith("commands"),
            lambda r: r.startswith("ERR conn-buffer"),
            lambda r: "accepted" in r,
        ]
        for i, check in enumerate(checks):
            r = c.read_reply(timeout=5)
            self.assertTrue(check(r), "reply %d out of order or wrong: %r" % (i, r[:200]))
        self.assertEqual(c.buf, b"")
        c.close()
        self.finish()


if __name__ == "__main__":
    retest.main()

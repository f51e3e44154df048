"""--max-buffered from outside: the unsent echo held by all connections together stays
within the budget (server RSS measured in /proc), a connection that needs more stops
reading instead (TCP flow control holds its client back), other clients keep echoing,
and every byte is still delivered exactly once the clients read. Also the setting
itself: default, `config`, `set`, bad values."""
import os
import resource
import selectors
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import retest  # noqa: E402
import unittest  # noqa: E402

# The load test's size. 2,000 clients of 1 MiB each against 64 MiB is the issue's
# figure; the knobs let a slow machine run a smaller one (say what you ran). Fewer
# clients need a smaller budget too: the kernel's socket buffers absorb the first
# few hundred MiB, and the test insists that the budget is reached.
CLIENTS = int(os.environ.get("REUSEECHO_TEST_BUDGET_CLIENTS", "2000"))
PER_CLIENT = int(os.environ.get("REUSEECHO_TEST_BUDGET_BYTES", str(1 << 20)))
BUDGET_MB = int(os.environ.get("REUSEECHO_TEST_BUDGET_MB", "64"))
SLACK_MB = 32


def instrumented(pid):
    """True when the server runs under a sanitizer (ASan, TSan) or valgrind, whose
    shadow memory and quarantine make RSS say nothing about our buffers."""
    if os.environ.get("REUSEECHO_WRAPPER"):
        return True
    with open("/proc/%d/maps" % pid) as f:
        maps = f.read()
    return "libasan" in maps or "libtsan" in maps


def config(path):
    out = {}
    for ln in retest.ctl_command(path, "config").splitlines():
        k, _, v = ln.partition(" ")
        out[k] = v
    return out


def total(path, key):
    return retest.stats_json(path)["total"][key]


class RssSampler(threading.Thread):
    """Samples the server's VmRSS every 20 ms; keeps the maximum."""

    def __init__(self, srv):
        super().__init__(daemon=True)
        self.srv = srv
        self.max_kb = 0
        self.stop_ev = threading.Event()

    def run(self):
        while not self.stop_ev.is_set():
            try:
                self.max_kb = max(self.max_kb, self.srv.rss_kb())
            except (OSError, AttributeError):
                return
            self.stop_ev.wait(0.02)

    def stop(self):
        self.stop_ev.set()
        self.join(5)


class Budget(retest.ServerCase):
    dir_prefix = "reuseecho-budget-"

    @property
    def path(self):
        return self.ctl

    def test_setting(self):
        srv = self.start("--threads", 1)
        self.assertEqual(config(self.path)["max-buffered"], str(512 << 20))
        with retest.ControlClient(self.path) as c:
            self.assertEqual(c.cmd("set max-buffered 64M"), "OK max-buffered 67108864\n")
            for line in ("set max-buffered 0", "set max-buffered 512K", "set max-buffered 2T",
                         "set max-buffered -1", "set max-buffered 1X"):
                r = c.cmd(line)
                self.assertTrue(r.startswith("ERR max-buffered: bad value"), (line, r))
        self.assertEqual(config(self.path)["max-buffered"], str(64 << 20))
        self.assertIn("max-buffered 67108864", srv.stderr())
        self.assertEqual(srv.stop(), 0, srv.stderr())

    def test_flag(self):
        srv = self.start("--threads", 1, "--max-buffered", "2G")
        self.assertEqual(config(self.path)["max-buffered"], str(2 << 30))
        self.assertEqual(srv.stop(), 0, srv.stderr())

    def test_tiny_budget_exact(self):
        """A budget of 1M (a quarter of it the worker's reserve): a client that does
        not read still gets every byte, in order, once it reads."""
        srv = self.start("--threads", 1, "--max-buffered", "1M")
        s = srv.connect()
        s.setblocking(False)
        sent = 0
        data = retest.pattern(8 << 20, 7)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and sent < len(data):
            try:
                sent += s.send(data[sent:sent + 65536])
            except BlockingIOError:
                time.sleep(0.01)
                if total(self.path, "backpressure_pauses") + total(self.path, "budget_pauses") > 0:
                    break
        retest.wait_until(lambda: total(self.path, "backpressure_pauses") > 0, 10,
                          what="the connection's buffer at --conn-buffer")
        self.assertLessEqual(total(self.path, "buffer_bytes"), 1 << 20)
        s.setblocking(True)
        s.settimeout(30)
        got = bytearray()
        # Read everything sent so far (the rest of `data` was never sent).
        while len(got) < sent:
            d = s.recv(1 << 20)
            self.assertTrue(d, "EOF after %d of %d" % (len(got), sent))
            got += d
        self.assertEqual(bytes(got), data[:sent])
        s.close()
        retest.wait_until(lambda: total(self.path, "active") == 0, 10, what="closed")
        # Everything freed but the worker's reserve (at most one --conn-buffer) and
        # the small pooled buffers.
        self.assertLessEqual(total(self.path, "buffer_bytes"), (256 + 1024) << 10)
        self.assertEqual(srv.stop(), 0, srv.stderr())

    def test_ping_pong_path_unchanged(self):
        """A connection whose echo the socket takes whole holds no buffer and costs
        exactly one recv and one send per message: the budget adds no system call
        and no shared write to that path."""
        srv = self.start("--threads", 1)
        s = srv.connect()
        retest.echo_check(s, b"warm")
        # The client has the echo as soon as send(2) returns, a moment before the
        # worker counts that call: wait until the counters show it (and later the
        # 200 messages), then insist they stay exactly there.
        calls = ("recv_calls", "send_calls")

        def counted(at_least):
            st = retest.stats_json(self.path)["total"]
            return st if all(st[k] >= at_least.get(k, 0) for k in calls) else None

        st0 = retest.wait_until(lambda: counted({"recv_calls": 1, "send_calls": 1}),
                                what="the warm-up echo's calls to be counted")
        for i in range(200):
            msg = b"%064d" % i
            s.sendall(msg)
            self.assertEqual(retest.recv_exact(s, len(msg)), msg)
        want = {k: st0[k] + 200 for k in calls}
        retest.wait_until(lambda: counted(want), what="200 recv and send calls counted")
        for _ in range(5):
            st1 = retest.stats_json(self.path)["total"]
            self.assertEqual(st1["recv_calls"] - st0["recv_calls"], 200)
            self.assertEqual(st1["send_calls"] - st0["send_calls"], 200)
            self.assertEqual(st1["buffer_bytes"], st0["buffer_bytes"])
            time.sleep(0.02)
        s.close()
        self.assertEqual(srv.stop(), 0, srv.stderr())

    def test_room_freed_by_another_worker(self):
        """A connection paused at the budget resumes when another worker frees room,
        though no event arrives for it: its client never reads meanwhile. B pauses
        either way the budget stops a read: its buffer cannot grow, or (its worker's
        reserve short) an echo in place that its full socket cut short; both resume
        into a buffer when room frees."""
        srv = self.start("--threads", 2, "--max-buffered", "4M", "--conn-buffer", "16M",
                         "--no-pin")

        def worker_of_new(prev):
            def grown():
                cur = {w["id"]: w["active"] for w in retest.stats_json(self.path)["per_worker"]}
                new = [i for i in cur if cur[i] > prev.get(i, 0)]
                return (new[0], cur) if new else None
            return retest.wait_until(grown, 5, what="the new connection accepted")

        a = srv.connect()
        wa, seen = worker_of_new({})
        spare = []
        for _ in range(64):
            b = srv.connect()
            wb, seen = worker_of_new(seen)
            if wb != wa:
                break
            spare.append(b)
        self.assertNotEqual(wb, wa, "no connection reached the second worker")
        for x in spare:
            x.close()

        def per_worker(key):
            return {w["id"]: w[key] for w in retest.stats_json(self.path)["per_worker"]}

        def flood(s, data, what):
            s.setblocking(False)
            sent = 0
            deadline = time.monotonic() + 20
            idle_since = time.monotonic()
            while time.monotonic() - idle_since < 0.5:
                self.assertLess(time.monotonic(), deadline, "%s never blocked" % what)
                try:
                    n = s.send(data[sent:sent + 65536])
                    sent += n
                    idle_since = time.monotonic()
                except BlockingIOError:
                    time.sleep(0.01)
            return sent

        data_a = retest.pattern(48 << 20, 21)
        data_b = retest.pattern(48 << 20, 22)
        sent_a = flood(a, data_a, "client A")
        # B's own worker's count: A's connection may pause again meanwhile (the room
        # moves between the workers while B's grows), which the total would count.
        pauses0 = per_worker("budget_pauses")[wb]
        sent_b = flood(b, data_b, "client B")
        retest.wait_until(lambda: per_worker("budget_pauses")[wb] > pauses0, 10,
                          what="client B's connection paused at the budget")

        # Then B's worker settles: the client's receive window can still open a
        # little after the pause, and the EPOLLOUT that follows would resume B
        # without the budget's help. Settled: nothing moved for half a second.
        def settled():
            def snap():
                return tuple(per_worker(k)[wb] for k in
                             ("bytes_received", "bytes_sent", "buffer_bytes"))
            before = snap()
            time.sleep(0.5)
            return before if snap() == before else None

        retest.wait_until(settled, 10, what="B's worker settled")
        # B's input must still be queued at the server, or a resumed B has nothing
        # to read: its flood may have ended while the server, slow, still read on,
        # and a buffer filled exactly by the last of it pauses all the same. A
        # send the socket takes queues more; one it refuses proves the queue full.
        try:
            sent_b += b.send(data_b[sent_b:sent_b + 65536])
        except BlockingIOError:
            pass
        rx_b, _, buf_b = retest.wait_until(settled, 10, what="B's worker settled")
        # A reads everything and closes: its worker frees its buffer.
        a.setblocking(True)
        a.settimeout(30)
        got = bytearray()
        while len(got) < sent_a:
            d = a.recv(1 << 20)
            self.assertTrue(d, "A: EOF after %d" % len(got))
            got += d
        self.assertEqual(bytes(got), data_a[:sent_a])
        a.close()
        # B's worker takes the room and reads on, while B still reads nothing.
        retest.wait_until(lambda: per_worker("buffer_bytes")[wb] > buf_b and
                          per_worker("bytes_received")[wb] > rx_b, 5,
                          what="B's connection resumed by the room A's worker freed")
        b.setblocking(True)
        b.settimeout(30)
        got = bytearray()
        while len(got) < sent_b:
            d = b.recv(1 << 20)
            self.assertTrue(d, "B: EOF after %d" % len(got))
            got += d
        self.assertEqual(bytes(got), data_b[:sent_b])
        b.close()
        self.assertEqual(srv.stop(), 0, srv.stderr())

    def test_many_non_readers_bounded(self):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        need = CLIENTS + 256
        if soft < need:
            if hard != resource.RLIM_INFINITY and hard < need:
                self.skipTest("RLIMIT_NOFILE hard limit %d < %d" % (hard, need))
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
        srv = self.start("--threads", 2, "--max-buffered", "%dM" % BUDGET_MB,
                         "--control-timeout", 600)
        rss0 = srv.rss_kb()
        # Opened before the clients: retest's select() needs a descriptor below 1024.
        ctl = retest.ControlClient(self.path, timeout=10)
        self.addCleanup(ctl.close)
        pingers = [srv.connect(timeout=5) for _ in range(4)]
        for i, p in enumerate(pingers):
            retest.echo_check(p, b"warm %d" % i)
        sampler = RssSampler(srv)
        sampler.start()

        # Each client sends a window of one doubled pattern, so no two clients send
        # the same bytes and nothing is copied per client.
        base = retest.pattern(PER_CLIENT, 11)
        doubled = memoryview(base + base)

        def data_of(i):
            off = (i * 4099) % PER_CLIENT
            return doubled[off:off + PER_CLIENT]

        socks = []
        for i in range(CLIENTS):
            s = socket.create_connection((srv.host, srv.port), timeout=10)
            s.setblocking(False)
            socks.append(s)
        sent = [0] * CLIENTS
        t0 = time.monotonic()
        ping_max = 0.0
        rounds = 0

        def ping_round():
            nonlocal ping_max, rounds
            for j, p in enumerate(pingers):
                msg = b"ping %d %d" % (rounds, j)
                t = time.monotonic()
                retest.echo_check(p, msg, timeout=5)
                ping_max = max(ping_max, time.monotonic() - t)
            rounds += 1

        # Flood: send until every client is blocked by flow control (no progress
        # for a second), pinging between passes.
        last_progress = time.monotonic()
        while time.monotonic() - last_progress < 1.0:
            progress = False
            for i, s in enumerate(socks):
                if sent[i] == PER_CLIENT:
                    continue
                try:
                    n = s.send(data_of(i)[sent[i]:])
                except BlockingIOError:
                    continue
                sent[i] += n
                progress = progress or n > 0
            if progress:
                last_progress = time.monotonic()
            ping_round()
            self.assertLess(time.monotonic() - t0, 120, "flood did not settle")
        flood_s = time.monotonic() - t0
        st = ctl.json()["total"]
        flood_rss = sampler.max_kb
        # Under a sanitizer only the gauge is checked: RSS is the sanitizer's.
        rss_limit_kb = (1 << 40) if instrumented(srv.pid) else (BUDGET_MB + SLACK_MB) << 10
        print("flood: %d clients x %d B, %.1f s, %d B sent, server buffer_bytes %d, "
              "budget_pauses %d, backpressure_pauses %d, RSS max %d KiB (start %d), "
              "ping rounds %d, slowest %.3f s"
              % (CLIENTS, PER_CLIENT, flood_s, sum(sent), st["buffer_bytes"], st["budget_pauses"],
                 st["backpressure_pauses"], flood_rss, rss0, rounds, ping_max), file=sys.stderr)
        self.assertLess(flood_rss, rss_limit_kb,
                        "server RSS %d KiB over budget + slack" % flood_rss)
        self.assertLessEqual(st["buffer_bytes"], BUDGET_MB << 20)
        self.assertGreater(st["budget_pauses"], 0, "the budget was never reached")

        # Drain: every client reads its echo (and sends the rest), byte-verified.
        got = [0] * CLIENTS
        sel = selectors.DefaultSelector()
        for i, s in enumerate(socks):
            sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE, i)
        left = CLIENTS
        t1 = last_ping = time.monotonic()
        while left > 0:
            self.assertLess(time.monotonic() - t1, 180, "%d clients not done" % left)
            for key, ev in sel.select(timeout=1.0):
                i = key.data
                s = key.fileobj
                if ev & selectors.EVENT_WRITE:
                    if sent[i] < PER_CLIENT:
                        try:
                            sent[i] += s.send(data_of(i)[sent[i]:])
                        except BlockingIOError:
                            pass
                if ev & selectors.EVENT_READ:
                    try:
                        d = s.recv(1 << 18)
                    except BlockingIOError:
                        d = None
                    if d is not None:
                        self.assertTrue(d, "client %d: EOF after %d bytes" % (i, got[i]))
                        self.assertTrue(d == data_of(i)[got[i]:got[i] + len(d)],
                                        "client %d: mismatch near byte %d" % (i, got[i]))
                        got[i] += len(d)
                if got[i] == PER_CLIENT:
                    sel.unregister(s)
                    s.close()
                    left -= 1
                elif sent[i] == PER_CLIENT and key.events & selectors.EVENT_WRITE:
                    sel.modify(s, selectors.EVENT_READ, i)
            if left and time.monotonic() - last_ping > 0.2:
                ping_round()
                last_ping = time.monotonic()
        sel.close()
        sampler.stop()
        st = ctl.json()["total"]
        print("drain: %.1f s, every client received its %d B exactly; RSS max %d KiB; "
              "ping rounds %d, slowest %.3f s" % (time.monotonic() - t1, PER_CLIENT,
                                                   sampler.max_kb, rounds, ping_max),
              file=sys.stderr)
        self.assertLess(sampler.max_kb, rss_limit_kb)
        self.assertLess(ping_max, 2.0, "a ping-pong round trip took %.2f s" % ping_max)
        self.assertEqual(st["closed_error"], 0)
        self.assertEqual(st["reset_error"] + st["reset_idle"] + st["reset_limit"], 0)
        for p in pingers:
            p.close()
        retest.wait_until(lambda: total(self.path, "active") == 0, 20, what="all closed")
        self.assertEqual(srv.stop(), 0, srv.stderr())


if __name__ == "__main__":
    retest.main()

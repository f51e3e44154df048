"""UDP through the worker lifecycle (doc/DESIGN.md §6, "UDP in the group"): a paced,
numbered UDP stream (tests/helpers/udp_paced: 8 flows x 1,000 datagrams/s, every
echo checked) loses nothing while nothing happens, across `threads 4 -> 2 -> 4`,
and across a --takeover; a SIGTERM drain echoes every datagram that arrived
before it; --udp takes the port for UDP too (--port 0 gives one port for both, a
port a UDP socket holds is refused at start-up); a takeover between an instance
with --udp and one without is refused before anything changes.

Loss can also come from a kernel receive queue overflowing on a loaded machine:
every failure message carries the client's own queue drops and the server's
udp_receive_queue_drops (udp_kernel_drops), so a flake can be told from a bug.
Bounded: at most a few seconds of stream per test, loopback only."""
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import retest  # noqa: E402
import unittest  # noqa: E402

FLOWS = 8
# Datagrams/s per flow (8,000/s in all), slower under sanitizers. Modest on purpose:
# a worker not scheduled for a while on a busy machine overflows its socket's default
# receive queue (about 230 small datagrams: a quarter of a second of two flows).
RATE = int(1000 / retest.SCALE)
# A run whose loss the kernel's receive-queue drops fully explain (a worker not
# scheduled for ~60 ms on a loaded machine overflows its socket's default queue) is
# run again, once; any other loss fails at once.
ATTEMPTS = 2
# A retiring worker's UDP socket is steered around before its listener's grace
# begins: once it shows as draining, it may still read what was queued before the
# program took effect (a few datagrams, a queue's worth if it was not scheduled),
# never a stream's worth (each flow it had brings RATE a second).
STRAGGLERS = 64
SIZE = 64
NETNS_FIRST = 40000  # test_port_zero_passes_over_ports_udp_sockets_hold's 4 ports
STEP = 3000          # datagrams the server must echo between two steps of a test


def paced_binary():
    p = os.environ.get("REUSEECHO_UDP_PACED")
    if p:
        return p
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.join(os.path.dirname(os.path.dirname(here)), "build", "tests", "udp_paced")


def udp_totals(path):
    t = retest.stats_json(path)["total"]
    return {k: v for k, v in t.items() if k.startswith("udp_")}


class Stream:
    """One udp_paced run against port: started, running (every flow answered),
    finished on demand; finish() returns its JSON summary."""

    def __init__(self, port, host="127.0.0.1", flows=FLOWS, rate=RATE, grace_ms=3000):
        self.proc = subprocess.Popen(
            [paced_binary(), host, str(port), str(flows), str(rate), str(SIZE), "60",
             str(int(grace_ms * retest.SCALE))],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        buf = b""
        deadline = time.monotonic() + retest.scaled(10)
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            r, _, _ = select.select([self.proc.stdout], [], [], max(left, 0))
            if not r:
                self.proc.kill()
                raise AssertionError("udp_paced: no reply on every flow within 10 s")
            d = os.read(self.proc.stdout.fileno(), 256)
            if not d:
                raise AssertionError("udp_paced exited: %s" % self.proc.stderr.read())
            buf += d
        if buf.split(b"\n", 1)[0] != b"running":
            raise AssertionError("udp_paced said %r" % buf)

    def finish(self, timeout=30):
        out, err = self.proc.communicate(input=b"stop\n", timeout=retest.scaled(timeout))
        if self.proc.returncode != 0:
            raise AssertionError("udp_paced exited %d: %s" % (self.proc.returncode, err))
        return json.loads(out.decode().strip().splitlines()[-1])

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


class Sampler(threading.Thread):
    """Polls `stats json` every 10 ms over one control connection (so it keeps
    asking the same instance, even once a takeover's successor owns the path): per
    worker id, the (state, udp_datagrams_received) series, until stop() or until
    that instance exits."""

    def __init__(self, ctl):
        super().__init__(daemon=True)
        self.client = retest.ControlClient(ctl)
        self.series = {}
        self.done = threading.Event()
        self.error = None

    def run(self):
        try:
            while not self.done.is_set():
                try:
                    js = self.client.json()
                except (EOFError, OSError):
                    return      # the instance exited
                for w in js["per_worker"]:
                    self.series.setdefault(w["id"], []).append(
                        (w["state"], w["udp_datagrams_received"]))
                self.done.wait(0.01)
        except Exception as e:  # reported by stop()
            self.error = e
        finally:
            self.client.close()

    def stop(self):
        self.done.set()
        self.join(retest.scaled(10))
        if self.error is not None:
            raise self.error

    def received_while_retiring(self, wid):
        """Datagrams worker wid received between its first sample as draining and
        its last sample."""
        seq = self.series.get(wid, [])
        first = next((i for i, (st, _) in enumerate(seq) if st != "running"), None)
        if first is None:
            raise AssertionError("worker %d never seen retiring: %s" % (wid, seq))
        return seq[-1][1] - seq[first][1]


class UdpLifecycle(retest.ServerCase):
    dir_prefix = "reuseecho-ulife-"

    def setUp(self):
        super().setUp()
        self.streams = []
        self.others = []

    def tearDown(self):
        for st in self.streams:
            st.kill()
        for srv in self.others:
            srv.kill()
        super().tearDown()

    def stream(self, port, **kw):
        st = Stream(port, **kw)
        self.streams.append(st)
        return st

    def echoed_more(self, ctl, n=STEP):
        """Wait until the server has echoed n more datagrams than now."""
        base = udp_totals(ctl)["udp_datagrams_sent"]
        retest.wait_until(lambda: udp_totals(ctl)["udp_datagrams_sent"] >= base + n,
                          timeout=10, what="%d more datagrams echoed" % n)

    def lossless(self, run):
        """Run run() (which returns (stream result, server udp counters or None when
        they are gone, servers whose logs explain a failure)) up to ATTEMPTS times
        while its only loss is receive-queue overflow; assert it lost nothing."""
        for attempt in range(1, ATTEMPTS + 1):
            res, server, logs = run()
            why = "stream %s; server udp counters %s" % (json.dumps(res), json.dumps(server))
            sys.stderr.write("  [measured] attempt %d: %s\n" % (attempt, why))
            if res["lost"] == 0:
                break
            overflow = res["client_drops"] + (server or {}).get("udp_kernel_drops", 0)
            # Without the counters (an instance that exited), any loss may be one.
            explained = server is None or overflow == res["lost"]
            if attempt < ATTEMPTS and explained:
                sys.stderr.write("  [measured] attempt %d lost %d datagrams to receive-queue "
                                 "overflow (%d counted): running again\n"
                                 % (attempt, res["lost"], overflow))
                self.tearDown()
                self.setUp()
                continue
            why += "".join("\nserver %d log:\n%s" % (srv.pid, srv.stderr()) for srv in logs)
            break
        self.assert_lossless(res, why)
        return res

    def assert_lossless(self, res, why):
        self.assertEqual(res["lost"], 0, why)
        self.assertEqual(res["received"], res["sent"], why)
        self.assertEqual(res["duplicated"], 0, why)
        self.assertEqual(res["corrupted"], 0, why)
        self.assertGreater(res["sent"], 2 * STEP, why)

    def assert_counted(self, ctl, res):
        """The server's totals (live and retired workers) count every datagram once."""
        want = {"udp_datagrams_received": res["sent"], "udp_datagrams_sent": res["sent"],
                "udp_bytes_received": res["sent"] * SIZE, "udp_bytes_sent": res["sent"] * SIZE}
        retest.wait_until(lambda: all(udp_totals(ctl)[k] == v for k, v in want.items()),
                          timeout=5, what="udp totals %s, have %s" % (want, udp_totals(ctl)))

    # --- lossless ------------------------------------------------------------------

    def test_stream_without_changes_loses_nothing(self):
        def run():
            srv = self.start("--threads", 4, "--udp", "--no-pin")
            st = self.stream(srv.port)
            self.echoed_more(self.ctl, 2 * STEP)
            return st.finish(), udp_totals(self.ctl), (srv,)
        res = self.lossless(run)
        self.assert_counted(self.ctl, res)
        self.assertEqual(self.srv.stop(), 0)

    def test_resize_4_2_4_loses_nothing(self):
        def run():
            srv = self.start("--threads", 4, "--udp", "--no-pin")
            st = self.stream(srv.port)
            self.echoed_more(self.ctl)
            with retest.ControlClient(self.ctl, timeout=retest.scaled(30)) as c:
                sampler = Sampler(self.ctl)
                sampler.start()
                self.assertEqual(c.cmd("threads 2"), "OK threads 2\n")
                sampler.stop()
                self.retiring = {w: sampler.received_while_retiring(w) for w in (2, 3)}
                self.echoed_more(self.ctl)
                self.assertEqual(c.cmd("threads 4"), "OK threads 4\n")
                self.echoed_more(self.ctl)
            return st.finish(), udp_totals(self.ctl), (srv,)
        res = self.lossless(run)
        # Steered around: datagrams stop reaching a worker once it retires.
        sys.stderr.write("  [measured] datagrams received by workers 2 and 3 while "
                         "retiring: %s\n" % self.retiring)
        for w, n in self.retiring.items():
            self.assertLessEqual(n, STRAGGLERS, "worker %d received %d datagrams while "
                                 "retiring: not steered around" % (w, n))
        self.assert_counted(self.ctl, res)
        # Every retired worker's socket closed; the new ones serve.
        retest.wait_until(lambda: len(udp_fds(self.srv)) == 4, timeout=5, what="4 UDP sockets")
        self.assertEqual(self.srv.stop(), 0)

    def test_takeover_loses_nothing(self):
        def run():
            old = self.start("--threads", 3, "--udp", "--no-pin")
            st = self.stream(old.port)
            self.echoed_more(self.ctl)
            sampler = Sampler(self.ctl)
            sampler.start()
            new = retest.Server("--control", self.ctl, "--threads", 2, "--udp", "--no-pin",
                                "--takeover", port=old.port, ready_timeout=retest.scaled(30))
            self.others.append(new)
            retest.wait_until(lambda: not old.alive(), timeout=20,
                              what="the old instance to exit")
            self.assertEqual(old.stop(), 0, old.stderr())
            sampler.stop()
            self.retiring = {w: sampler.received_while_retiring(w) for w in range(3)}
            self.echoed_more(self.ctl)
            # The old instance's counters went with it: only the new one's kernel
            # drop count is known.
            res = st.finish()
            res["new_instance_udp"] = udp_totals(self.ctl)
            return res, None, (old, new)
        self.lossless(run)
        sys.stderr.write("  [measured] datagrams received by the old instance's workers "
                         "while retiring: %s\n" % self.retiring)
        for w, n in self.retiring.items():
            self.assertLessEqual(n, STRAGGLERS, "old worker %d received %d datagrams while "
                                 "retiring: not steered around" % (w, n))
        new = self.others[-1]
        self.assertEqual(len(udp_fds(new)), 2)
        self.assertEqual(new.stop(), 0, new.stderr())

    # --- takeover between --udp and not: refused before anything changes -----------

    def mismatch(self, old_args, new_args, want):
        old = self.start("--threads", 2, "--no-pin", *old_args)
        before = retest.ctl_command(self.ctl, "listeners")
        new = retest.Server("--control", self.ctl, "--threads", 1, "--no-pin", "--takeover",
                            *new_args, port=old.port, expect_ready=False)
        self.others.append(new)
        rc = new.proc.wait(retest.scaled(15))
        self.assertEqual(rc, 1, new.stderr())
        self.assertIn("--takeover: the running instance %s" % want, new.stderr())
        # The old instance is as it was: same listeners in the same order, serving.
        self.assertEqual(retest.ctl_command(self.ctl, "listeners"), before)
        s = old.connect()
        retest.echo_check(s, b"still served")
        s.close()
        if "--udp" in old_args:
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            u.settimeout(retest.scaled(5))
            u.sendto(b"udp still served", ("127.0.0.1", old.port))
            self.assertEqual(u.recv(100), b"udp still served")
            u.close()
        self.assertEqual(old.stop(), 0)
        return before

    def test_takeover_from_udp_without_udp_is_refused(self):
        before = self.mismatch(["--udp"], [], "serves UDP and this one would not: start it "
                               "with --udp")
        self.assertTrue(before.endswith(" udp\n"), before)

    def test_takeover_from_tcp_only_with_udp_is_refused(self):
        before = self.mismatch([], ["--udp"], "does not serve UDP and this one would: start "
                               "it without --udp")
        self.assertNotIn("udp", before)

    # --- drain --------------------------------------------------------------------

    def test_sigterm_drain_echoes_what_arrived_before(self):
        """Datagrams that reach the socket before the SIGTERM are echoed, even when
        the worker sees the drain before their edge: with a debug-hooks build the
        worker is stalled while they arrive and the signal is sent, so its next turn
        holds both, and only the drain's final read to EAGAIN finds them. Without the
        hook the same must hold, just without forcing that order."""
        srv = self.start("--threads", 1, "--udp", "--drain-timeout", 5)
        stalled = retest.ctl_command(self.ctl, "debug stall 0 600").startswith("OK")
        clients = []
        for f in range(4):
            c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            c.connect(("127.0.0.1", srv.port))
            c.settimeout(retest.scaled(5))
            clients.append(c)
            self.socks.append(c)
        n = 40      # per flow: 160 datagrams of 64 B fit the server's receive queue
        for i in range(n):
            for f, c in enumerate(clients):
                c.send(b"%02d:%06d:" % (f, i) + b"d" * 54)
        srv.send_signal(signal.SIGTERM)
        for f, c in enumerate(clients):
            got = []
            try:
                while len(got) < n:
                    got.append(c.recv(100))
            except socket.timeout:
                self.fail("flow %d: %d of %d datagrams echoed (worker stalled: %s); server "
                          "log:\n%s" % (f, len(got), n, stalled, srv.stderr()))
            self.assertEqual(sorted(got), [b"%02d:%06d:" % (f, i) + b"d" * 54 for i in range(n)])
        self.assertEqual(srv.proc.wait(retest.scaled(15)), 0, srv.stderr())
        self.assertEqual(srv.stop(), 0)
        sys.stderr.write("  [measured] drain echoed %d of %d datagrams (worker stalled: %s)\n"
                         % (n * len(clients), n * len(clients), stalled))

    # --- the port -----------------------------------------------------------------

    def test_port_zero_gives_one_port_for_both(self):
        srv = self.start("--threads", 3, "--udp", "--no-pin")
        s = srv.connect()
        retest.echo_check(s, b"tcp on the port")
        s.close()
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.settimeout(retest.scaled(5))
        self.socks.append(u)
        u.sendto(b"udp on the same port", ("127.0.0.1", srv.port))
        self.assertEqual(u.recvfrom(100), (b"udp on the same port", ("127.0.0.1", srv.port)))
        self.assertEqual(len(udp_fds(srv)), 3)
        self.assertEqual(srv.stop(), 0)

    def test_port_zero_passes_over_ports_udp_sockets_hold(self):
        """In a network namespace of its own whose ephemeral range is 4 ports, 3 of
        them held by UDP sockets: --port 0 --udp must end on the fourth, whichever
        the kernel offers first, and with all 4 held it must fail, not loop."""
        if shutil.which("unshare") is None:
            self.skipTest("needs unshare(1) (util-linux)")
        free = NETNS_FIRST + 2
        srv = self.in_netns([p for p in range(NETNS_FIRST, NETNS_FIRST + 4) if p != free])
        self.assertEqual(srv.port, free, srv.stderr())
        self.assertEqual(retest.ctl_command(self.ctl, "listeners"),
                         "OK port %d order 0 1 udp\n" % free)
        self.assertEqual(srv.stop(), 0, srv.stderr())
        srv = self.in_netns(list(range(NETNS_FIRST, NETNS_FIRST + 4)), expect_ready=False)
        self.assertEqual(srv.proc.wait(retest.scaled(10)), 1, srv.stderr())
        self.assertIn("Address already in use", srv.stderr())

    def in_netns(self, held, expect_ready=True):
        """A --port 0 --udp server in a new network namespace (lo up, ephemeral ports
        NETNS_FIRST..+3) where UDP sockets hold the ports `held` (sockets of the
        wrapper that execs the server, so they live as long as it)."""
        hold = os.path.join(self.dir, "hold.py")
        with open(hold, "w") as f:
            f.write("import fcntl, os, socket, struct, sys\n"
                    "# lo up: SIOCGIFFLAGS, then SIOCSIFFLAGS with IFF_UP (struct ifreq)\n"
                    "c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                    "ifr = fcntl.ioctl(c, 0x8913, struct.pack('16sh22x', b'lo', 0))\n"
                    "flags = struct.unpack('16sh22x', ifr)[1] | 1\n"
                    "fcntl.ioctl(c, 0x8914, struct.pack('16sh22x', b'lo', flags))\n"
                    "c.close()\n"
                    "with open('/proc/sys/net/ipv4/ip_local_port_range', 'w') as r:\n"
                    "    r.write('%d %d')\n"
                    "keep = []\n"
                    "for p in %r:\n"
                    "    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                    "    u.bind(('127.0.0.1', p))\n"
                    "    u.set_inheritable(True)\n"
                    "    keep.append(u)\n"
                    "os.execvp(sys.argv[1], sys.argv[1:])\n"
                    % (NETNS_FIRST, NETNS_FIRST + 3, held))
        saved = os.environ.get("REUSEECHO_WRAPPER")
        os.environ["REUSEECHO_WRAPPER"] = "unshare --net %s %s %s" % (sys.executable, hold,
                                                                     saved or "")
        try:
            srv = retest.Server("--control", self.ctl, "--threads", 2, "--udp",
                                expect_ready=expect_ready)
        finally:
            if saved is None:
                del os.environ["REUSEECHO_WRAPPER"]
            else:
                os.environ["REUSEECHO_WRAPPER"] = saved
        self.others.append(srv)
        return srv

    def held_port_refused(self, reuseport):
        u, port = udp_on_tcp_free_port(reuseport)
        self.socks.append(u)
        srv = retest.Server("--control", self.ctl, "--threads", 2, "--udp", port=port,
                            expect_ready=False)
        self.others.append(srv)
        self.assertEqual(srv.proc.wait(retest.scaled(10)), 1, srv.stderr())
        self.assertIn("bind udp 127.0.0.1:%d: Address already in use (a UDP socket of another "
                      "program or instance holds the port)" % port, srv.stderr())
        # Nobody joined our socket's group: it still gets every datagram.
        c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socks.append(c)
        u.settimeout(retest.scaled(5))
        for i in range(8):
            c.sendto(b"%d" % i, ("127.0.0.1", port))
            self.assertEqual(u.recv(10), b"%d" % i)

    def test_port_held_by_udp_socket_is_refused(self):
        self.held_port_refused(False)

    def test_port_held_by_reuseport_udp_socket_is_refused(self):
        """Same uid, SO_REUSEPORT: the kernel would let the workers join that socket's
        group and share its datagrams; the reservation refuses first."""
        self.held_port_refused(True)


def udp_on_tcp_free_port(reuseport):
    """A UDP socket on a port that TCP may bind now (a client's TIME_WAIT on the
    machine would refuse the TCP reservation first): (socket, port)."""
    for _ in range(50):
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        t.bind(("127.0.0.1", 0))
        port = t.getsockname()[1]
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        if reuseport:
            u.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            u.bind(("127.0.0.1", port))
        except OSError:
            u.close()
            continue
        finally:
            t.close()
        return u, port
    raise AssertionError("no port free for both TCP and UDP in 50 tries")


def udp_fds(srv):
    """fds of the server's UDP sockets bound to its port (from /proc/PID/net/udp*)."""
    inodes = set()
    for path in ("/proc/%d/net/udp" % srv.pid, "/proc/%d/net/udp6" % srv.pid):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    p = line.split()
                    if int(p[1].rsplit(":", 1)[1], 16) == srv.port:
                        inodes.add(int(p[9]))
        except FileNotFoundError:
            pass
    return {fd for fd, t in srv.fd_targets().items()
            if t.startswith("socket:[") and int(t[8:-1]) in inodes}


if __name__ == "__main__":
    retest.main()
